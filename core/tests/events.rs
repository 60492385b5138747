//! Events (through the `log` facade) and counters (`Client::stats`), against mockito
//! token endpoints and APIs: each renewal reason, failures and backoff, waits, 401
//! retries, forced renewals — and never a secret in any event.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Mutex;
use std::time::Duration;

use authcore::grant::{ClientCredentials, RefreshToken};
use authcore::{Client, ErrorKind, Options};
use common::{assert_clean, counting_endpoint, opts};

/// One captured event: level, the `event` key, every key-value, the message.
#[derive(Debug, Clone)]
struct Event {
    level: log::Level,
    name: String,
    fields: BTreeMap<String, String>,
    message: String,
}

static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        struct Fields(BTreeMap<String, String>);
        impl<'k> log::kv::VisitSource<'k> for Fields {
            fn visit_pair(
                &mut self,
                key: log::kv::Key<'k>,
                value: log::kv::Value<'k>,
            ) -> Result<(), log::kv::Error> {
                self.0.insert(key.to_string(), value.to_string());
                Ok(())
            }
        }
        let mut fields = Fields(BTreeMap::new());
        r.key_values().visit(&mut fields).unwrap();
        let message = r.args().to_string();
        // Every record of the client's crates (authcore, ureq, rustls…) is checked for
        // secrets; the test servers' own logs show what they received.
        if !r.target().starts_with("mockito") {
            assert_clean(&message);
            for v in fields.0.values() {
                assert_clean(v);
            }
        }
        if r.target() == "authcore" {
            EVENTS.lock().unwrap().push(Event {
                level: r.level(),
                name: fields.0.get("event").cloned().unwrap_or_default(),
                fields: fields.0,
                message,
            });
        }
    }
    fn flush(&self) {}
}

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Tests run in parallel and events name no test: each test runs its work under this
/// lock and takes every event emitted meanwhile.
static SERIAL: Mutex<()> = Mutex::new(());

fn capture<T>(work: impl FnOnce() -> T) -> (T, Vec<Event>) {
    install();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    EVENTS.lock().unwrap().clear();
    let out = work();
    let events = std::mem::take(&mut *EVENTS.lock().unwrap());
    (out, events)
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

fn find<'a>(events: &'a [Event], name: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name} event in {:?}", names(events)))
}

fn cc(server: &mockito::Server, options: Options) -> Client {
    Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "client-id",
            "cs+/=:secret-9f8e7d",
        )
        .scopes(["read"]),
        options,
    )
    .unwrap()
}

#[test]
fn first_token_is_requested_obtained_and_counted() {
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600,"scope":"read"}"#,
    );
    let (client, events) = capture(|| {
        let client = cc(&server, opts());
        for _ in 0..10 {
            client.token().unwrap();
        }
        client
    });
    assert_eq!(
        names(&events),
        ["token.requested", "token.obtained", "token.renewed"]
    );
    let requested = find(&events, "token.requested");
    assert_eq!(requested.level, log::Level::Debug);
    assert_eq!(requested.fields["grant"], "client_credentials");
    let host = server.host_with_port();
    assert_eq!(requested.fields["host"], host);
    assert_eq!(requested.fields["attempt"], "1");
    let obtained = find(&events, "token.obtained");
    assert_eq!(obtained.fields["lifetime_s"], "3600");
    assert_eq!(obtained.fields["scope"], "read");
    let renewed = find(&events, "token.renewed");
    assert_eq!(renewed.level, log::Level::Info);
    assert_eq!(renewed.fields["reason"], "initial");
    assert!(renewed.message.contains("initial"), "{}", renewed.message);
    // No event names a full URL: only host:port.
    for e in &events {
        assert!(!e.message.contains("http://"), "{}", e.message);
    }

    let stats = client.stats();
    assert_eq!(count.load(SeqCst), 1);
    assert_eq!(stats.token_requests(), 1);
    assert_eq!(stats.token_requests_succeeded, 1);
    assert_eq!(stats.renewals_initial, 1);
    assert_eq!(stats.renewals(), 1);
    assert_eq!(stats.cache_hits, 9);
    assert_eq!(stats.waits, 0);
}

#[test]
fn hits_from_many_threads_are_all_counted() {
    let mut server = mockito::Server::new();
    counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#,
    );
    let (client, _) = capture(|| {
        let client = cc(&server, opts());
        client.token().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                std::thread::spawn(move || {
                    for _ in 0..5000 {
                        client.token().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        client
    });
    // Counted after the threads ended (their own counters retire with them)…
    assert_eq!(client.stats().cache_hits, 20_000);
    // …and still exact once a new reader registers and folds them away.
    std::thread::scope(|s| {
        s.spawn(|| client.token().unwrap());
    });
    assert_eq!(client.stats().cache_hits, 20_001);
}

#[test]
fn a_rejected_token_is_renewed_once_and_the_request_sent_again() {
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#,
    );
    let first = std::sync::atomic::AtomicBool::new(true);
    server
        .mock("GET", "/api")
        .with_status(200)
        .with_body_from_request(move |_| b"ok".to_vec())
        .match_request(move |_| !first.swap(false, SeqCst))
        .create();
    server.mock("GET", "/api").with_status(401).create();
    let url = format!("{}/api", server.url());
    let (client, events) = capture(|| {
        let client = cc(&server, opts());
        let response = client.get(&url).unwrap();
        assert_eq!(response.status, 200);
        client
    });
    let rejected = find(&events, "token.rejected");
    assert_eq!(rejected.fields["status"], "401");
    assert_eq!(rejected.fields["dropped"], "true");
    let reasons: Vec<_> = events
        .iter()
        .filter(|e| e.name == "token.renewed")
        .map(|e| e.fields["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["initial", "rejected"]);
    let stats = client.stats();
    assert_eq!(count.load(SeqCst), 2);
    assert_eq!(stats.token_requests_succeeded, 2);
    assert_eq!(stats.renewals_initial, 1);
    assert_eq!(stats.renewals_rejected, 1);
    assert_eq!(stats.retries_after_401, 1);
}

#[test]
fn failures_are_told_and_the_backoff_refuses_without_a_request() {
    let mut server = mockito::Server::new();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    server
        .mock("POST", "/token")
        .with_status(401)
        .with_header("content-type", "application/json")
        .with_body_from_request(move |_| {
            h.fetch_add(1, SeqCst);
            br#"{"error":"invalid_client","error_description":"cs+/=:secret-9f8e7d is wrong"}"#
                .to_vec()
        })
        .create();
    let options = opts().failure_backoff(Duration::from_secs(30), Duration::from_secs(60));
    let (client, events) = capture(|| {
        let client = cc(&server, options);
        for _ in 0..4 {
            let e = client.token().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OAuth);
        }
        client
    });
    // Two requests (the first failure costs no pause), then the backoff holds.
    assert_eq!(hits.load(SeqCst), 2);
    let failed = find(&events, "token.request_failed");
    assert_eq!(failed.level, log::Level::Warn);
    assert_eq!(failed.fields["kind"], "oauth");
    assert_eq!(failed.fields["status"], "401");
    assert_eq!(failed.fields["retrying"], "false");
    let renewal = find(&events, "token.renewal_failed");
    assert_eq!(renewal.fields["reason"], "initial");
    let backoff = find(&events, "backoff.entered");
    assert_eq!(backoff.fields["failures"], "2");
    assert_eq!(backoff.fields["pause_s"], "30");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.name == "backoff.refused")
            .count(),
        2
    );
    let stats = client.stats();
    assert_eq!(stats.token_requests_refused, 2);
    assert_eq!(stats.token_requests(), 2);
    assert_eq!(stats.backoff_refusals, 2);
    // Both renewals were for a client that never had a token.
    assert_eq!(stats.renewals_initial, 2);
    assert_eq!(stats.renewals_expired, 0);
}

#[test]
fn retried_server_errors_are_debug_and_counted_as_failed() {
    let mut server = mockito::Server::new();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    server
        .mock("POST", "/token")
        .match_request(move |_| c.fetch_add(1, SeqCst) == 0)
        .with_status(503)
        .with_header("retry-after", "0")
        .create();
    server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#)
        .create();
    let (client, events) = capture(|| {
        let client = cc(&server, opts());
        client.token().unwrap();
        client
    });
    let failed = find(&events, "token.request_failed");
    assert_eq!(failed.level, log::Level::Debug);
    assert_eq!(failed.fields["retrying"], "true");
    assert_eq!(failed.fields["status"], "503");
    let attempts: Vec<_> = events
        .iter()
        .filter(|e| e.name == "token.requested")
        .map(|e| e.fields["attempt"].as_str())
        .collect();
    assert_eq!(attempts, ["1", "2"]);
    let stats = client.stats();
    assert_eq!(stats.token_requests_failed, 1);
    assert_eq!(stats.token_requests_succeeded, 1);
    assert_eq!(stats.renewals(), 1);
}

#[test]
fn forced_renewal_and_rotation_are_told_and_counted() {
    let mut server = mockito::Server::new();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let m = n.clone();
    server
        .mock("POST", "/token")
        .with_body_from_request(move |_| {
            let bodies = [
                r#"{"access_token":"at-two-6f7a8b9c0d","expires_in":3600,"refresh_token":"rt-second-8d7c6b5a"}"#,
                r#"{"access_token":"at-three-0e1f2a3b4c","expires_in":3600,"refresh_token":"rt-second-8d7c6b5a"}"#,
            ];
            bodies[m.fetch_add(1, SeqCst).min(1)].as_bytes().to_vec()
        })
        .create();
    let (client, events) = capture(|| {
        let client = Client::new(
            RefreshToken::new(
                format!("{}/token", server.url()),
                "client-id",
                "cs+/=:secret-9f8e7d",
                "rt-first-5c4b3a29",
            ),
            opts(),
        )
        .unwrap();
        let first = client.token().unwrap();
        let forced = client.refresh().unwrap();
        assert_ne!(first.access_token(), forced.access_token());
        assert_eq!(
            client.token().unwrap().access_token(),
            forced.access_token()
        );
        client
    });
    let rotations = events
        .iter()
        .filter(|e| e.name == "refresh_token.rotated")
        .count();
    // rt-first → rt-second rotates; rt-second → rt-second does not.
    assert_eq!(rotations, 1, "{:?}", names(&events));
    let reasons: Vec<_> = events
        .iter()
        .filter(|e| e.name == "token.renewed")
        .map(|e| e.fields["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["initial", "forced"]);
    let stats = client.stats();
    assert_eq!(n.load(SeqCst), 2);
    assert_eq!(stats.renewals_forced, 1);
    assert_eq!(stats.token_requests_succeeded, 2);
    assert_eq!(stats.cache_hits, 1);
}

#[test]
fn waiters_are_counted_with_their_wait_time() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_body_from_request(|_| {
            std::thread::sleep(Duration::from_millis(300));
            br#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#.to_vec()
        })
        .create();
    let (client, _) = capture(|| {
        let client = cc(&server, opts());
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (client, barrier) = (client.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    client.token().unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        client
    });
    let stats = client.stats();
    assert_eq!(stats.token_requests(), 1);
    assert_eq!(stats.renewals_initial, 1);
    // Every thread but the leader either waited for it or came after it ended.
    assert_eq!(stats.waits + stats.cache_hits, 7, "{stats:?}");
    assert!(stats.waits >= 1, "{stats:?}");
    assert!(stats.wait_time >= Duration::from_millis(100), "{stats:?}");
    assert_eq!(stats.wait_timeouts, 0);
}

#[test]
fn a_waiter_that_gives_up_is_told_and_counted() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_body_from_request(|_| {
            std::thread::sleep(Duration::from_millis(800));
            br#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#.to_vec()
        })
        .create();
    let (client, events) = capture(|| {
        let client = cc(&server, opts().wait_timeout(Duration::from_millis(100)));
        let leader = {
            let client = client.clone();
            std::thread::spawn(move || client.token().map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(200));
        let e = client.token().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        leader.join().unwrap().unwrap();
        client
    });
    let timed_out = find(&events, "wait.timed_out");
    assert_eq!(timed_out.level, log::Level::Warn);
    let stats = client.stats();
    assert_eq!(stats.waits, 1);
    assert_eq!(stats.wait_timeouts, 1);
}

#[test]
fn the_rotation_hook_is_told_whose_token_rotated() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-two-6f7a8b9c0d","expires_in":3600,"refresh_token":"rt-second-8d7c6b5a","scope":"read"}"#)
        .create();
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let client = Client::new(
        RefreshToken::new(
            format!("{}/token", server.url()),
            "client-id",
            "cs+/=:secret-9f8e7d",
            "rt-first-5c4b3a29",
        ),
        opts().on_rotation(move |r: &authcore::Rotation<'_>| {
            s.lock().unwrap().push((
                r.refresh_token.expose_secret().to_owned(),
                r.token.scope().map(str::to_owned),
                r.credential.map(|k| k.as_str().to_owned()),
            ));
        }),
    )
    .unwrap();
    // Under the capture lock: its events must not reach another test's capture.
    capture(|| client.token().unwrap());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (rt, scope, credential) = &seen[0];
    assert_eq!(rt, "rt-second-8d7c6b5a");
    assert_eq!(scope.as_deref(), Some("read"));
    let credential = credential.as_deref().unwrap();
    assert!(credential.contains("client-id"), "{credential}");
    assert_clean(credential);
}

#[test]
fn a_burst_of_sign_ins_evicts_the_oldest_with_a_warning_and_counts_it() {
    use authcore::grant::AuthorizationCode;
    use authcore::{AuthorizationCodeFlow, MAX_PENDING};
    let server = mockito::Server::new();
    let config = AuthorizationCode::new(
        format!("{}/authorize", server.url()),
        format!("{}/token", server.url()),
        "web-app",
        "cs+/=:secret-9f8e7d",
        "https://app.example/callback",
    );
    let flow = AuthorizationCodeFlow::new(config, opts()).unwrap();
    let ((), events) = capture(|| {
        for _ in 0..MAX_PENDING + 3 {
            flow.authorization_url().unwrap();
        }
    });
    let evicted: Vec<&Event> = events
        .iter()
        .filter(|e| e.name == "signin.evicted")
        .collect();
    assert_eq!(evicted.len(), 3, "{:?}", names(&events));
    assert_eq!(evicted[0].level, log::Level::Warn);
    assert_eq!(evicted[0].fields["max_pending"], MAX_PENDING.to_string());
    assert!(evicted[0].fields.contains_key("age_s"));
    assert!(evicted[0].message.contains("finish_pending"));
    assert_eq!(flow.stats().signins_evicted, 3);
    assert_eq!(flow.stats().token_requests(), 0);
}

/// A token another client saved in a shared store is adopted: told as `store.adopted`
/// (info: `-v` shows it) with its reason and the store, never as `token.renewed`, and
/// nothing is requested.
#[test]
fn a_token_adopted_from_the_store_is_told_as_adopted_not_renewed() {
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600,"scope":"read"}"#,
    );
    let dir = std::env::temp_dir().join(format!(
        "authcore-events-adopted-{}-{}",
        std::process::id(),
        server.host_with_port().replace(':', "-")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let store = std::sync::Arc::new(authcore::FileStore::new(&dir).unwrap());
    // Under the capture lock too: its events are no other test's.
    let (first, _) = capture(|| {
        let first = cc(&server, opts().store(store.clone()));
        first.token().unwrap();
        first
    });
    let (second, events) = capture(|| {
        let second = cc(&server, opts().store(store));
        let token = second.token().unwrap();
        assert_eq!(token.access_token().expose_secret(), "at-one-1a2b3c4d5e");
        second
    });
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(count.load(SeqCst), 1, "the second client requested nothing");
    let adopted: Vec<&Event> = events
        .iter()
        .filter(|e| e.level <= log::Level::Info)
        .collect();
    assert_eq!(
        adopted.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["store.adopted"],
        "{events:?}"
    );
    let e = adopted[0];
    assert_eq!(e.fields["store"], "file");
    assert_eq!(e.fields["reason"], "initial");
    let left: f64 = e.fields["expires_in_s"].parse().unwrap();
    assert!(left > 3000.0 && left <= 3600.0, "{left}");
    assert!(
        e.message
            .contains("adopted from the token store (file; reason: initial)"),
        "{}",
        e.message
    );
    assert!(!names(&events).contains(&"token.renewed"), "{events:?}");
    assert_eq!(second.stats().store_adoptions, 1);
    assert_eq!(second.stats().token_requests(), 0);
    assert_eq!(first.stats().token_requests(), 1);
}

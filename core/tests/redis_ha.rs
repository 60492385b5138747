//! `RedisStore` on the Redis deployments users run — Redis Sentinel (a master, a replica,
//! three sentinels) and Redis Cluster (three masters) — as real processes on free loopback
//! ports (`redis-server`, `redis-sentinel`, `redis-cli`, installed by
//! `tests/provision.sh`), stopped at the end of each test.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authcore::grant::{ClientCredentials, RefreshToken};
use authcore::{Client, Error, ErrorKind, RedisStore, StoreKey, StoredToken, Token, TokenStore};
use common::redis::{query, Cluster, Sentinel, MASTER_NAME};
use common::{check_error, counting_endpoint, opts};

const PASSWORD: &str = "ha-password-5e6f7a";

fn cc_client(server: &mockito::Server, client_id: &str, store: RedisStore) -> Client {
    Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), client_id, "secret"),
        opts().store(Arc::new(store)),
    )
    .unwrap()
}

fn stored(at: &str) -> StoredToken {
    StoredToken::from_token(
        &Token::new(
            at.to_owned(),
            None,
            Some(Duration::from_secs(60)),
            Instant::now(),
        ),
        None,
    )
}

/// A store error, checked for secrets, with its message.
fn store_error(result: Result<authcore::StoreLock, Error>) -> String {
    let e = result.expect_err("expected a store error");
    check_error(&e);
    assert_eq!(e.kind(), ErrorKind::Store, "{e}");
    assert!(!e.to_string().contains(PASSWORD), "{e}");
    e.to_string()
}

/// A holder whose lock lapsed can neither save nor remove, nor release the next
/// holder's lock; the next holder's token stays.
fn fencing_holds(store: &RedisStore, other: &RedisStore) {
    let key = StoreKey::custom("fenced");
    // A's renewal deadline is near: its lock lives little longer than the 2 s margin.
    let a_lock = store
        .lock(&key, Instant::now() + Duration::from_millis(300))
        .unwrap();
    let kept_out = other.lock(&key, Instant::now() + Duration::from_millis(100));
    assert_eq!(kept_out.unwrap_err().kind(), ErrorKind::Timeout);
    std::thread::sleep(Duration::from_millis(2400));
    let b_lock = other
        .lock(&key, Instant::now() + Duration::from_secs(3))
        .unwrap();
    other
        .save(&b_lock, &key, &stored("at-newer-0000000000"))
        .unwrap();
    let e = store
        .save(&a_lock, &key, &stored("at-older-1111111111"))
        .unwrap_err();
    assert!(e.to_string().contains("lock expired"), "{e}");
    assert!(store.remove(&a_lock, &key).is_err());
    drop(a_lock);
    let still_held = store.lock(&key, Instant::now() + Duration::from_millis(100));
    assert_eq!(still_held.unwrap_err().kind(), ErrorKind::Timeout);
    let kept = other.load(&b_lock, &key).unwrap().unwrap();
    assert_eq!(kept.access_token.expose_secret(), "at-newer-0000000000");
    other.remove(&b_lock, &key).unwrap();
}

#[test]
fn clients_share_one_token_through_sentinel() {
    let ha = Sentinel::start(Some(PASSWORD));
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#,
    );
    let addrs = ha.addrs();
    let sentinels: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let master = format!("redis://:{PASSWORD}@{MASTER_NAME}");
    let url = format!(
        "redis+sentinel://:{PASSWORD}@{}/{MASTER_NAME}",
        addrs.join(",")
    );
    // Both forms (constructor, URL) share: one token request for four clients.
    let store = |i: usize| {
        if i.is_multiple_of(2) {
            RedisStore::sentinel(&sentinels, &master).unwrap()
        } else {
            RedisStore::new(&url).unwrap()
        }
    };
    let debug = format!("{:?}", store(0));
    assert!(
        !debug.contains(PASSWORD) && debug.contains(MASTER_NAME),
        "{debug}"
    );
    let clients: Vec<Client> = (0..4).map(|i| cc_client(&server, "id", store(i))).collect();
    for c in &clients {
        assert_eq!(
            c.token().unwrap().access_token().expose_secret(),
            "at-one-1a2b3c4d5e"
        );
    }
    assert_eq!(count.load(SeqCst), 1);
    // The single server's key names: a server that gains sentinels keeps its tokens.
    let port = ha.master_port().unwrap();
    let keys = query(port, &format!("AUTH {PASSWORD}\r\nKEYS authcore:*"));
    assert!(keys.contains("authcore:token:"), "{keys}");

    fencing_holds(&store(0), &store(1));

    // A wrong password for the master, a master set the sentinels do not know, no
    // sentinel at all: store errors that say which, without secrets, at once.
    let key = StoreKey::custom("errors");
    let soon = || Instant::now() + Duration::from_secs(2);
    let wrong = RedisStore::sentinel(
        &sentinels,
        &format!("redis://:wrong-password-1b2c3d@{MASTER_NAME}"),
    )
    .unwrap();
    let e = store_error(wrong.lock(&key, soon()));
    assert!(
        e.contains("credentials were refused") && e.contains(MASTER_NAME),
        "{e}"
    );
    assert!(!e.contains("wrong-password"), "{e}");
    let unknown = RedisStore::sentinel(&sentinels, "no-such-master").unwrap();
    let e = store_error(unknown.lock(&key, soon()));
    assert!(e.contains("know no master named"), "{e}");
    let started = Instant::now();
    let nobody = RedisStore::sentinel(&["127.0.0.1:1", "127.0.0.1:2"], MASTER_NAME).unwrap();
    let e = store_error(nobody.lock(&key, soon()));
    assert!(e.contains("no sentinel answered"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));

    for bad in [
        RedisStore::sentinel(&[], MASTER_NAME),
        RedisStore::sentinel(&["not a host:port:x"], MASTER_NAME),
        RedisStore::sentinel(&sentinels, ""),
        RedisStore::new("redis+sentinel://127.0.0.1:26379"),
        RedisStore::new("redis+sentinel://127.0.0.1:26379/name/notadb"),
        RedisStore::with_ca_pem(&url, b"not pem"),
    ] {
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::Config);
    }
}

#[test]
fn clients_share_tokens_through_cluster() {
    let cluster = Cluster::start();
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#,
    );
    let addrs = cluster.addrs();
    let nodes: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let url = cluster.url();
    let store = |i: usize| {
        if i.is_multiple_of(2) {
            // Any one node is enough to find the others.
            RedisStore::cluster(&nodes[i % 3..=i % 3]).unwrap()
        } else {
            RedisStore::new(&url).unwrap()
        }
    };
    // Three credentials (their keys in different slots), three clients each: one token
    // request per credential.
    let clients: Vec<Client> = (0..9)
        .map(|i| cc_client(&server, &format!("id-{}", i % 3), store(i)))
        .collect();
    for c in &clients {
        assert_eq!(
            c.token().unwrap().access_token().expose_secret(),
            "at-one-1a2b3c4d5e"
        );
    }
    assert_eq!(count.load(SeqCst), 3);
    // Lock and token of a credential share a slot (the fenced scripts need it).
    let keys = cluster.keys("authcore:");
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("authcore:{") && k.ends_with("}:token")),
        "{keys:?}"
    );

    fencing_holds(&store(0), &store(1));

    let started = Instant::now();
    let nobody = RedisStore::cluster(&["127.0.0.1:1", "127.0.0.1:2"]).unwrap();
    let e = store_error(nobody.lock(
        &StoreKey::custom("errors"),
        Instant::now() + Duration::from_secs(2),
    ));
    assert!(e.contains("Redis Cluster at 127.0.0.1:1"), "{e}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    for bad in [
        RedisStore::cluster(&[]),
        RedisStore::cluster(&["redis://:a@127.0.0.1:1", "redis://:b@127.0.0.1:2"]),
        RedisStore::new("redis+cluster://"),
        RedisStore::new("redis+cluster://127.0.0.1:7000/1"),
    ] {
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::Config);
    }
}

/// What one caller saw.
enum Seen {
    Token {
        at: Instant,
        access_token: String,
        adopted: bool,
    },
    Failed {
        at: Instant,
        kind: ErrorKind,
        message: String,
    },
}

/// Calls `client.token()` every 20 ms until `stop`, recording what it saw.
fn caller(client: Client, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Seen>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(SeqCst) {
            let before = client.stats().store_adoptions;
            let result = client.token();
            let at = Instant::now();
            match result {
                Ok(token) => seen.push(Seen::Token {
                    at,
                    access_token: token.access_token().expose_secret().to_owned(),
                    adopted: client.stats().store_adoptions > before,
                }),
                Err(e) => {
                    check_error(&e);
                    seen.push(Seen::Failed {
                        at,
                        kind: e.kind(),
                        message: e.to_string(),
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    })
}

/// The master is killed (SIGKILL) while clients renew 1-second tokens in a loop:
/// client-credentials callers see no error (they renew without the store while there
/// is no master), no rotating refresh token is sent twice, and the store is shared
/// again — a token issued after the kill, saved on the new master, adopted by another
/// client — within 15 s. The figures are printed.
#[test]
fn a_failover_during_renewals() {
    let mut ha = Sentinel::start(None);
    let url = ha.url();
    let mut server = mockito::Server::new();
    // Every token issued, with when.
    let issued: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let i = Arc::clone(&issued);
    server
        .mock("POST", "/token")
        .with_body_from_request(move |_| {
            let mut issued = i.lock().unwrap();
            let at = format!("at-cc-{}", issued.len());
            issued.push((at.clone(), Instant::now()));
            format!(r#"{{"access_token":"{at}","expires_in":1}}"#).into_bytes()
        })
        .create();
    // Every refresh token received; each answered with a new one.
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let (s, i) = (Arc::clone(&sent), Arc::clone(&issued));
    server
        .mock("POST", "/refresh")
        .with_body_from_request(move |request| {
            let body = String::from_utf8_lossy(request.body().unwrap()).into_owned();
            let rt = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("refresh_token="))
                .unwrap_or_default()
                .to_owned();
            let mut sent = s.lock().unwrap();
            sent.push(rt);
            let n = sent.len();
            let at = format!("at-rt-{n}");
            i.lock().unwrap().push((at.clone(), Instant::now()));
            format!(r#"{{"access_token":"{at}","refresh_token":"rt-{n}","expires_in":1}}"#)
                .into_bytes()
        })
        .create();

    let stop = Arc::new(AtomicBool::new(false));
    let store = || Arc::new(RedisStore::new(&url).unwrap());
    let cc: Vec<_> = (0..3)
        .map(|_| {
            let c = Client::new(
                ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
                opts().store(store()),
            )
            .unwrap();
            caller(c, Arc::clone(&stop))
        })
        .collect();
    let rt: Vec<_> = (0..2)
        .map(|_| {
            let c = Client::new(
                RefreshToken::new(format!("{}/refresh", server.url()), "id", "secret", "rt-0"),
                opts().store(store()).store_key("alice"),
            )
            .unwrap();
            caller(c, Arc::clone(&stop))
        })
        .collect();

    std::thread::sleep(Duration::from_secs(3));
    // A lock taken before the kill (so a replica has it) and a save under it after: the
    // save waits for the new master and lands there.
    let (held_store, held_key) = (store(), StoreKey::custom("held across the failover"));
    let held = held_store
        .lock(&held_key, Instant::now() + Duration::from_secs(10))
        .unwrap();
    let requests_before = issued.lock().unwrap().len();
    let killed_at = Instant::now();
    let old = ha.kill_master();
    let saving = std::thread::spawn(move || {
        let saved = held_store.save(&held, &held_key, &stored("at-held-0123456789"));
        (saved, killed_at.elapsed(), held_store, held, held_key)
    });
    let new = ha.wait_for_new_master(old, Duration::from_secs(15));
    let failed_over = killed_at.elapsed();
    let (saved, saved_after, held_store, held, held_key) = saving.join().unwrap();
    saved.unwrap();
    let kept = held_store.load(&held, &held_key).unwrap().unwrap();
    assert_eq!(kept.access_token.expose_secret(), "at-held-0123456789");
    drop(held);
    // Renewals go on for a while on the new master.
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, SeqCst);
    let cc: Vec<Vec<Seen>> = cc.into_iter().map(|h| h.join().unwrap()).collect();
    let rt: Vec<Vec<Seen>> = rt.into_iter().map(|h| h.join().unwrap()).collect();

    let issued = issued.lock().unwrap().clone();
    let issued_at = |token: &str| issued.iter().find(|(t, _)| t == token).map(|(_, at)| *at);
    let failures = |seen: &[Vec<Seen>]| -> Vec<String> {
        seen.iter()
            .flatten()
            .filter_map(|s| match s {
                Seen::Failed { at, kind, message } => Some(format!(
                    "{:+.2} s {kind:?}: {message}",
                    at.saturating_duration_since(killed_at).as_secs_f64()
                )),
                Seen::Token { .. } => None,
            })
            .collect()
    };
    // Shared again: the first adoption, after the kill, of a token issued after it.
    let shared_again = cc
        .iter()
        .chain(&rt)
        .flatten()
        .filter_map(|s| match s {
            Seen::Token {
                at,
                access_token,
                adopted: true,
            } if *at > killed_at && issued_at(access_token).is_some_and(|i| i > killed_at) => {
                Some(at.duration_since(killed_at))
            }
            _ => None,
        })
        .min();
    let calls: usize = cc.iter().chain(&rt).map(Vec::len).sum();
    let (cc_failures, rt_failures) = (failures(&cc), failures(&rt));
    let sent = sent.lock().unwrap().clone();
    let twice: Vec<&String> = {
        let mut seen = HashSet::new();
        sent.iter().filter(|rt| !seen.insert(*rt)).collect()
    };
    let count = |prefix: &str, from: Instant, to: Instant| {
        issued
            .iter()
            .filter(|(t, at)| t.starts_with(prefix) && *at >= from && *at < to)
            .count()
    };
    let shared_at = killed_at + shared_again.unwrap_or(failed_over);
    println!(
        "failover: master {old} killed; sentinels named {new} after {:.2} s; store shared again after {}; \
         {calls} calls by 5 clients; caller errors: client credentials {}, refresh token {}; \
         token requests (client credentials / refresh): 3 s before the kill {} / {}, kill to shared again {} / {}, \
         after {} / {}; refresh tokens sent twice: {}; a save under a lock taken before the kill landed after {:.2} s",
        failed_over.as_secs_f64(),
        shared_again.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
        cc_failures.len(),
        rt_failures.len(),
        count("at-cc-", killed_at - Duration::from_secs(3), killed_at),
        count("at-rt-", killed_at - Duration::from_secs(3), killed_at),
        count("at-cc-", killed_at, shared_at),
        count("at-rt-", killed_at, shared_at),
        count("at-cc-", shared_at, Instant::now()),
        count("at-rt-", shared_at, Instant::now()),
        twice.len(),
        saved_after.as_secs_f64(),
    );
    let distinct: HashSet<&str> = rt_failures
        .iter()
        .map(|f| f.split_once(' ').map_or(f.as_str(), |(_, rest)| rest))
        .map(|f| f.split_once(' ').map_or(f, |(_, rest)| rest))
        .collect();
    if let (Some(first), Some(last)) = (rt_failures.first(), rt_failures.last()) {
        println!("  refresh-token callers' errors, from {first:.7} to {last:.7}: {distinct:#?}");
    }
    assert!(requests_before > 0);
    assert!(cc_failures.is_empty(), "{cc_failures:#?}");
    assert!(twice.is_empty(), "sent twice: {twice:?} of {sent:?}");
    assert!(
        rt_failures
            .iter()
            .all(|f| f.contains("Store") || f.contains("Timeout")),
        "{rt_failures:#?}"
    );
    let shared_again = shared_again.expect("the store was never shared again");
    assert!(shared_again < Duration::from_secs(15), "{shared_again:?}");
}

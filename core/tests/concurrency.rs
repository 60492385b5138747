//! The cache under concurrency: single flight, renew-ahead, invalidation by identity,
//! backoff, rotation hooks and api.video's fallback to the API key.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use authcore::grant::{ApiKey, ClientCredentials, RefreshToken};
use authcore::{Client, ErrorKind};
use common::{err, opts};

/// A token endpoint that counts requests, waits `latency`, and issues `at-<n>` tokens
/// with the given lifetime.
fn token_endpoint(
    server: &mut mockito::ServerGuard,
    latency: Duration,
    lifetime: &str,
) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let lifetime = lifetime.to_owned();
    server
        .mock("POST", "/token")
        .with_body_from_request(move |_| {
            let n = c.fetch_add(1, SeqCst) + 1;
            thread::sleep(latency);
            format!(r#"{{"access_token":"at-{n}","expires_in":{lifetime}}}"#).into_bytes()
        })
        .create();
    count
}

/// Waits (at most 10 s) until `signal` holds: how a test knows a renewal is in flight.
fn wait_until(what: &str, signal: impl Fn() -> bool) {
    let reached = (0..2000).any(|_| {
        thread::sleep(Duration::from_millis(5));
        signal()
    });
    assert!(reached, "{what} never happened");
}

fn cc_client(server: &mockito::ServerGuard, options: authcore::Options) -> Client {
    Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "client",
            "cs+/=:secret-9f8e7d",
        ),
        options,
    )
    .unwrap()
}

#[test]
fn refresh_happens_once_for_32_waiters() {
    let mut server = mockito::Server::new();
    let count = token_endpoint(&mut server, Duration::from_millis(200), "3600");
    let client = cc_client(&server, opts());
    let barrier = Arc::new(Barrier::new(32));
    let tokens: Vec<String> = (0..32)
        .map(|_| {
            let (client, barrier) = (client.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                client
                    .token()
                    .unwrap()
                    .access_token()
                    .expose_secret()
                    .to_owned()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(count.load(SeqCst), 1);
    assert!(tokens.iter().all(|t| t == "at-1"), "{tokens:?}");
}

#[test]
fn waiters_share_the_error_of_the_one_failed_renewal() {
    let mut server = mockito::Server::new();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    server
        .mock("POST", "/token")
        .with_status(401)
        .with_body_from_request(move |_| {
            c.fetch_add(1, SeqCst);
            thread::sleep(Duration::from_millis(200));
            br#"{"error":"invalid_client"}"#.to_vec()
        })
        .create();
    let client = cc_client(&server, opts());
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (client, barrier) = (client.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                client.token().map(|_| ())
            })
        })
        .collect();
    for h in handles {
        let e = err(h.join().unwrap());
        assert_eq!(e.oauth().unwrap().error, "invalid_client");
    }
    assert_eq!(count.load(SeqCst), 1);
}

#[test]
fn renew_ahead_does_not_block_callers_holding_a_valid_token() {
    let mut server = mockito::Server::new();
    let count = token_endpoint(&mut server, Duration::from_millis(300), "1");
    let client = cc_client(&server, opts());
    let first = client.token().unwrap();
    // The first token took 300 ms to arrive, so its renewal window (from 800 ms after
    // the request was sent) opens about 500 ms from now.
    thread::sleep(
        first
            .renew_at()
            .unwrap()
            .saturating_duration_since(Instant::now())
            + Duration::from_millis(10),
    );
    let leader = {
        let client = client.clone();
        thread::spawn(move || {
            client
                .token()
                .unwrap()
                .access_token()
                .expose_secret()
                .to_owned()
        })
    };
    wait_until("the leader's renewal", || count.load(SeqCst) == 2);
    // While the leader's renewal is in flight, others get the old token at once.
    for _ in 0..100 {
        let t = client.token().unwrap();
        assert_eq!(t.access_token().expose_secret(), "at-1");
    }
    assert_eq!(count.load(SeqCst), 2, "exactly one renewal in flight");
    assert_eq!(leader.join().unwrap(), "at-2");
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-2"
    );
}

#[test]
fn failed_early_renewal_still_serves_the_valid_token() {
    let mut server = mockito::Server::new();
    let first = server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-1","expires_in":1}"#)
        .expect(1)
        .create();
    let failing = server
        .mock("POST", "/token")
        .with_status(500)
        .expect(2)
        .create();
    let client = cc_client(&server, opts().max_retries(0));
    let t = client.token().unwrap();
    thread::sleep(
        t.renew_at()
            .unwrap()
            .saturating_duration_since(Instant::now())
            + Duration::from_millis(10),
    );
    let served = client.token().unwrap();
    assert!(
        served.access_token() == t.access_token(),
        "the still-valid token is served after a failed renewal"
    );
    // The first failure costs no pause: the next call tries again (and fails again)…
    assert_eq!(client.token().unwrap().access_token(), t.access_token());
    // …and inside the backoff that follows the second, the still-valid token keeps
    // being served without requests.
    assert_eq!(client.token().unwrap().access_token(), t.access_token());
    first.assert();
    failing.assert();
}

#[test]
fn fifty_concurrent_401s_cause_one_renewal() {
    let mut server = mockito::Server::new();
    let count = token_endpoint(&mut server, Duration::from_millis(20), "3600");
    let client = cc_client(&server, opts());
    let barrier = Arc::new(Barrier::new(50));
    let results: Vec<(bool, String)> = (0..50)
        .map(|_| {
            let (client, barrier) = (client.clone(), barrier.clone());
            thread::spawn(move || {
                let rejected = client.token().unwrap();
                barrier.wait();
                // Every thread reports the same rejected token at once.
                let dropped = client.invalidate(&rejected);
                barrier.wait();
                (
                    dropped,
                    client
                        .token()
                        .unwrap()
                        .access_token()
                        .expose_secret()
                        .to_owned(),
                )
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|(dropped, _)| *dropped).count(), 1);
    assert!(results.iter().all(|(_, t)| t == "at-2"), "{results:?}");
    assert_eq!(count.load(SeqCst), 2, "one initial token and one renewal");
}

#[test]
fn concurrent_401s_through_request_cause_one_renewal() {
    let mut server = mockito::Server::new();
    let count = token_endpoint(&mut server, Duration::from_millis(20), "3600");
    let rejected = server
        .mock("GET", "/api")
        .match_header("authorization", "Bearer at-1")
        .with_status(401)
        .with_header("www-authenticate", r#"Bearer error="invalid_token""#)
        .expect_at_least(1)
        .create();
    let accepted = server
        .mock("GET", "/api")
        .match_header("authorization", "Bearer at-2")
        .with_body("ok")
        .expect_at_least(1)
        .create();
    let client = cc_client(&server, opts());
    client.token().unwrap();
    let url = format!("{}/api", server.url());
    let barrier = Arc::new(Barrier::new(50));
    let statuses: Vec<u16> = (0..50)
        .map(|_| {
            let (client, barrier, url) = (client.clone(), barrier.clone(), url.clone());
            thread::spawn(move || {
                barrier.wait();
                client.get(&url).unwrap().status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(count.load(SeqCst), 2, "one initial token and one renewal");
    rejected.assert();
    accepted.assert();
}

#[test]
fn failed_renewal_backs_off_instead_of_hammering() {
    let mut server = mockito::Server::new();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    server
        .mock("POST", "/token")
        .with_status(500)
        .with_body_from_request(move |_| {
            c.fetch_add(1, SeqCst);
            b"internal error".to_vec()
        })
        .create();
    let backoff = Duration::from_millis(400);
    let client = cc_client(
        &server,
        opts().max_retries(0).failure_backoff(backoff, backoff * 4),
    );
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_millis(250) && calls < 10_000 {
        assert_eq!(err(client.token()).http_status(), Some(500));
        calls += 1;
    }
    assert!(calls > 10);
    assert_eq!(
        count.load(SeqCst),
        2,
        "{calls} calls: the first failure is retried at once, then the backoff holds"
    );
    thread::sleep(backoff);
    err(client.token());
    assert_eq!(count.load(SeqCst), 3, "after the backoff, one new attempt");
}

#[test]
fn retry_after_extends_the_backoff() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_status(429)
        .with_header("retry-after", "30")
        .expect(1)
        .create();
    let client = cc_client(&server, opts());
    for _ in 0..5 {
        let e = err(client.token());
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    }
    m.assert();
}

#[test]
fn waiting_for_a_stuck_renewal_is_bounded() {
    let mut server = mockito::Server::new();
    let count = token_endpoint(&mut server, Duration::from_millis(1500), "3600");
    let client = cc_client(&server, opts().wait_timeout(Duration::from_millis(200)));
    let leader = {
        let client = client.clone();
        thread::spawn(move || client.token().map(|_| ()))
    };
    wait_until("the leader's renewal", || count.load(SeqCst) == 1);
    let start = Instant::now();
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(start.elapsed() < Duration::from_millis(1200));
    leader.join().unwrap().unwrap();
}

/// A refresh token seen by the hook, and the access token cached at that moment.
type Announced = (String, Option<String>);

#[test]
fn rotated_refresh_token_reaches_the_hook_before_the_access_token_is_used() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/auth/api-key")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","refresh_token":"rt-first-5c4b3a29","expires_in":1}"#)
        .expect(1)
        .create();
    server
        .mock("POST", "/auth/refresh")
        .match_body(mockito::Matcher::Json(serde_json::json!({"refreshToken": "rt-first-5c4b3a29"})))
        .with_body(r#"{"access_token":"at-two-6f7a8b9c0d","refresh_token":"rt-second-8d7c6b5a","expires_in":3600}"#)
        .expect(1)
        .create();
    let cell: Arc<OnceLock<Client>> = Arc::new(OnceLock::new());
    let seen: Arc<Mutex<Vec<Announced>>> = Arc::default();
    let (cell2, seen2) = (cell.clone(), seen.clone());
    let options = opts().on_refresh_token(move |rt| {
        // What the cache holds at the moment the hook runs.
        let cached = cell2
            .get()
            .and_then(|c| c.cached_token())
            .map(|t| t.access_token().expose_secret().to_owned());
        seen2
            .lock()
            .unwrap()
            .push((rt.expose_secret().to_owned(), cached));
    });
    let client = Client::new(
        ApiKey::with_base_url(server.url(), "sk_live_apikey_0123456789"),
        options,
    )
    .unwrap();
    cell.set(client.clone()).unwrap();
    let first = client.token().unwrap();
    client.invalidate(&first);
    let second = client.token().unwrap();
    assert_eq!(second.access_token().expose_secret(), "at-two-6f7a8b9c0d");
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            ("rt-first-5c4b3a29".to_owned(), None),
            ("rt-second-8d7c6b5a".to_owned(), None),
        ],
        "each new refresh token is announced before its access token is cached"
    );
}

#[test]
fn api_video_falls_back_to_the_api_key_when_refresh_is_refused() {
    let mut server = mockito::Server::new();
    let keys = server
        .mock("POST", "/auth/api-key")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","refresh_token":"rt-first-5c4b3a29","expires_in":3600}"#)
        .expect(2)
        .create();
    let refresh = server
        .mock("POST", "/auth/refresh")
        .with_status(400)
        .with_body(r#"{"type":"https://docs.api.video/reference/invalid-refresh-token","title":"The refresh token is invalid.","status":400}"#)
        .expect(1)
        .create();
    let client = Client::new(
        ApiKey::with_base_url(server.url(), "sk_live_apikey_0123456789"),
        opts(),
    )
    .unwrap();
    let first = client.token().unwrap();
    assert!(client.invalidate(&first));
    // A second key exchange (the mock answers the same token value both times).
    client.token().unwrap();
    keys.assert();
    refresh.assert();
}

/// A refresh-token client that would retry up to 3 times if retrying were allowed.
fn refresh_client(server: &mockito::ServerGuard) -> Client {
    Client::new(
        RefreshToken::new(
            format!("{}/token", server.url()),
            "c",
            "cs+/=:secret-9f8e7d",
            "rt-first-5c4b3a29",
        ),
        opts().max_retries(3),
    )
    .unwrap()
}

#[test]
fn refused_refresh_token_requires_reauthentication() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_status(400)
        .with_body(r#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#)
        .expect(1)
        .create();
    let client = refresh_client(&server);
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::ReauthenticationRequired);
    assert_eq!(e.oauth().unwrap().error, "invalid_grant");
    m.assert();
}

#[test]
fn rotating_refresh_token_is_not_resent_after_a_server_error() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_status(503)
        .expect(1)
        .create();
    let client = refresh_client(&server);
    assert_eq!(err(client.token()).http_status(), Some(503));
    m.assert();
}

#[test]
fn client_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
    assert_send_sync::<authcore::Token>();
    assert_send_sync::<authcore::Error>();
}

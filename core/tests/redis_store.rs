//! `RedisStore` against a real `redis-server` started on a free loopback port (installed
//! by `tests/provision.sh`) and stopped at the end of each test.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authcore::grant::{ApiKey, ClientCredentials, RefreshToken};
use authcore::{Client, ErrorKind, RedisStore, StoreKey, StoredToken, Token, TokenStore};
use common::redis::Redis;
use common::{check_error, counting_endpoint, opts};

/// Every log line authcore writes during this test binary.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target() == "authcore"
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LOG.lock()
                .unwrap()
                .push(format!("{} {}", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per test binary); a test that reads the log
/// calls this before anything it wants to see logged.
fn capture_logs() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Takes the log lines written so far that contain every one of `needles` (tests run
/// in parallel: each looks for lines naming its own Redis port).
fn logged(needles: &[&str]) -> Vec<String> {
    capture_logs();
    let mut log = LOG.lock().unwrap();
    let (taken, kept) = std::mem::take(&mut *log)
        .into_iter()
        .partition(|l| needles.iter().all(|n| l.contains(n)));
    *log = kept;
    taken
}

/// A client-credentials client at `server`'s `/token`, sharing through `store`.
fn cc_client(server: &mockito::Server, store: Arc<RedisStore>) -> Client {
    Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
        opts().store(store),
    )
    .unwrap()
}

#[test]
fn clients_sharing_redis_share_one_token() {
    let redis = Redis::start(&[]);
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#,
    );
    let client = || cc_client(&server, Arc::new(RedisStore::new(&redis.url()).unwrap()));
    let clients: Vec<Client> = (0..4).map(|_| client()).collect();
    for c in &clients {
        assert_eq!(
            c.token().unwrap().access_token().expose_secret(),
            "at-one-1a2b3c4d5e"
        );
    }
    assert_eq!(count.load(SeqCst), 1);
}

#[test]
fn a_rotated_refresh_token_is_shared_through_redis() {
    let redis = Redis::start(&[]);
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/auth/api-key")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","refresh_token":"rt-first-5c4b3a29","expires_in":1}"#)
        .expect(1)
        .create();
    let refresh = server
        .mock("POST", "/auth/refresh")
        .match_body(mockito::Matcher::Json(serde_json::json!({"refreshToken": "rt-first-5c4b3a29"})))
        .with_body(r#"{"access_token":"at-two-6f7a8b9c0d","refresh_token":"rt-second-8d7c6b5a","expires_in":3600}"#)
        .expect(1)
        .create();
    let client = || {
        Client::new(
            ApiKey::with_base_url(server.url(), "sk_live_apikey_0123456789"),
            opts().store(Arc::new(RedisStore::new(&redis.url()).unwrap())),
        )
        .unwrap()
    };
    let (a, b) = (client(), client());
    a.token().unwrap();
    b.token().unwrap();
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(
        a.token().unwrap().access_token().expose_secret(),
        "at-two-6f7a8b9c0d"
    );
    assert_eq!(
        b.token().unwrap().access_token().expose_secret(),
        "at-two-6f7a8b9c0d"
    );
    refresh.assert();
}

#[test]
fn a_renewal_that_lost_its_lock_cannot_overwrite_a_newer_token() {
    let redis = Redis::start(&[]);
    let store = RedisStore::new(&redis.url()).unwrap();
    let other = RedisStore::new(&redis.url()).unwrap();
    let key = StoreKey::custom("fenced");
    let token = |at: &str| {
        StoredToken::from_token(
            &Token::new(
                at.to_owned(),
                None,
                Some(Duration::from_secs(60)),
                Instant::now(),
            ),
            None,
        )
    };
    // Both connected first, so that the short deadlines below time the lock, not the
    // connection (which a loaded machine may take longer than a millisecond to make).
    for s in [&store, &other] {
        drop(
            s.lock(
                &StoreKey::custom("warm-up"),
                Instant::now() + Duration::from_secs(5),
            )
            .unwrap(),
        );
    }
    // A takes the lock with a deadline that has already passed: its lock lives only
    // for the margin; B is kept out meanwhile.
    let a_lock = store
        .lock(&key, Instant::now() + Duration::from_millis(1))
        .unwrap();
    assert_eq!(
        other
            .lock(&key, Instant::now() + Duration::from_millis(100))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    // A's lock expires (simulated: its key removed), B renews and saves.
    assert!(redis.raw("FLUSHALL").starts_with("+OK"));
    let b_lock = other
        .lock(&key, Instant::now() + Duration::from_secs(2))
        .unwrap();
    other
        .save(&b_lock, &key, &token("at-newer-0000000000"))
        .unwrap();
    // A's late save is refused and the newer token stays.
    let e = store
        .save(&a_lock, &key, &token("at-older-1111111111"))
        .unwrap_err();
    assert!(e.to_string().contains("lock expired"), "{e}");
    drop(b_lock);
    // Two clients of one process (one store object): the lock is the holder's, not
    // the process's — A's lapsed lock cannot save or remove under C's.
    let c_lock = store
        .lock(&key, Instant::now() + Duration::from_secs(2))
        .unwrap();
    let e = store
        .save(&a_lock, &key, &token("at-older-2222222222"))
        .unwrap_err();
    assert!(e.to_string().contains("lock expired"), "{e}");
    assert!(store.remove(&a_lock, &key).is_err());
    drop(a_lock);
    // A's drop released nothing of C's: B is still kept out.
    assert_eq!(
        other
            .lock(&key, Instant::now() + Duration::from_millis(100))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    let kept = store.load(&c_lock, &key).unwrap().unwrap();
    assert_eq!(kept.access_token.expose_secret(), "at-newer-0000000000");
}

/// The rules when Redis cannot be used: client credentials (and API keys) renew
/// without it and say so once; a rotating refresh token fails with a `Store` error
/// rather than risk a double use; nothing waits past its deadline; no secret printed.
#[test]
fn a_wrong_password_or_no_redis_follows_the_rules_without_secrets() {
    capture_logs();
    let mut redis = Redis::start(&["--requirepass", "right-password-9f8e7d"]);
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":1}"#,
    );
    let url = format!(
        "redis://:cs+%2F%3D%3Asecret-9f8e7d@127.0.0.1:{}",
        redis.port
    );
    let store = Arc::new(RedisStore::new(&url).unwrap());
    assert!(!format!("{store:?}").contains("secret"), "{store:?}");
    let at = format!("127.0.0.1:{}", redis.port);
    logged(&[&at]);

    // Client credentials: served, renewed directly, the failure said once.
    let client = cc_client(&server, store.clone());
    client.token().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    client.token().unwrap();
    assert_eq!(count.load(SeqCst), 2);
    let warnings = logged(&[&at]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("credentials were refused") && warnings[0].contains("127.0.0.1"),
        "{warnings:?}"
    );
    assert!(!warnings[0].contains("9f8e7d"), "{warnings:?}");

    // A refresh token that may rotate: a clear store error, no token request.
    let refresh = server
        .mock("POST", "/refresh")
        .with_body(r#"{"access_token":"at-two-6f7a8b9c0d","refresh_token":"rt-second-8d7c6b5a"}"#)
        .expect(0)
        .create();
    let rotating = Client::new(
        RefreshToken::new(
            format!("{}/refresh", server.url()),
            "id",
            "secret",
            "rt-first-5c4b3a29",
        ),
        opts().store(store.clone()).store_key("alice"),
    )
    .unwrap();
    let e = rotating.token().unwrap_err();
    check_error(&e);
    assert_eq!(e.kind(), ErrorKind::Store, "{e}");
    assert!(e.to_string().contains("Redis at 127.0.0.1"), "{e}");

    // Redis gone: the same, at once (a refused connection), within the deadline.
    redis.stop();
    std::thread::sleep(Duration::from_millis(1100));
    let start = Instant::now();
    client.token().unwrap();
    let e = rotating.token().unwrap_err();
    check_error(&e);
    assert_eq!(e.kind(), ErrorKind::Store, "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    refresh.assert();
    assert_eq!(
        RedisStore::new("not a url").unwrap_err().kind(),
        ErrorKind::Config
    );
}

/// Redis restarted (empty) under running clients: they keep being served, and share
/// again once it is back — which the log says once each way.
#[test]
fn a_restarted_redis_is_used_again() {
    capture_logs();
    let mut redis = Redis::start(&[]);
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":1}"#,
    );
    let client = || cc_client(&server, Arc::new(RedisStore::new(&redis.url()).unwrap()));
    let (a, b) = (client(), client());
    let at = format!("127.0.0.1:{}", redis.port);
    a.token().unwrap();
    b.token().unwrap();
    assert_eq!(count.load(SeqCst), 1);
    redis.stop();
    std::thread::sleep(Duration::from_millis(1100));
    a.token().unwrap();
    b.token().unwrap();
    assert_eq!(count.load(SeqCst), 3, "each renewed by itself");
    redis.restart();
    std::thread::sleep(Duration::from_millis(1100));
    a.token().unwrap();
    b.token().unwrap();
    assert_eq!(count.load(SeqCst), 4, "shared again");
    let warnings = logged(&[&at, "renewing without it"]);
    assert_eq!(warnings.len(), 2, "once per client: {warnings:?}");
    assert_eq!(logged(&["usable again"]).len(), 2);
}

#[test]
fn rediss_trusts_the_clients_ca_bundle() {
    let (redis, pki) = Redis::start_tls();
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#,
    );
    // One store made without a CA, shared by clients that trust the throwaway CA.
    let store: Arc<dyn TokenStore> = Arc::new(RedisStore::new(&redis.url()).unwrap());
    let client = |options: authcore::Options| {
        Client::new(
            ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
            options.store(Arc::clone(&store)),
        )
        .unwrap()
    };
    let trusting = || opts().ca_bundle(&pki.files[0]);
    for _ in 0..3 {
        client(trusting()).token().unwrap();
    }
    // Three clients, three caches: only Redis can have shared the one token.
    assert_eq!(
        count.load(SeqCst),
        1,
        "the first client's token, shared through Redis"
    );
    // The store itself still trusts only the Web PKI: a client without the bundle
    // cannot use it (a client-credentials client then renews without it).
    let e = store
        .lock(
            &StoreKey::custom("tls"),
            Instant::now() + Duration::from_secs(2),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Store, "{e}");
    client(opts()).token().unwrap();
    assert_eq!(
        count.load(SeqCst),
        2,
        "no store without the CA: a token of its own"
    );
    // A bundle of another CA is not trusted for Redis either.
    let other_dir = tempfile::tempdir().unwrap();
    let other = common::redis::Pki::new(other_dir.path());
    client(opts().ca_bundle(&other.files[0])).token().unwrap();
    assert_eq!(count.load(SeqCst), 3, "another CA: the store is not usable");
    // Plain redis:// is left as it is.
    let plain = Redis::start(&[]);
    let plain_store: Arc<dyn TokenStore> = Arc::new(RedisStore::new(&plain.url()).unwrap());
    assert!(plain_store
        .trusting(pki.ca_pem.as_bytes())
        .unwrap()
        .is_none());
    // So is a store with a CA of its own.
    let own: Arc<dyn TokenStore> =
        Arc::new(RedisStore::with_ca_pem(&redis.url(), pki.ca_pem.as_bytes()).unwrap());
    assert!(own.trusting(other.ca_pem.as_bytes()).unwrap().is_none());
    // Sentinel and Cluster URLs over TLS get a trusting copy too; without TLS, none.
    for (url, copied) in [
        ("rediss+sentinel://127.0.0.1:1/mymaster", true),
        ("redis+sentinel://127.0.0.1:1/mymaster", false),
        ("rediss+cluster://127.0.0.1:1", true),
        ("redis+cluster://127.0.0.1:1", false),
    ] {
        let many = RedisStore::new(url).unwrap();
        assert_eq!(
            many.trusting(pki.ca_pem.as_bytes()).unwrap().is_some(),
            copied,
            "{url}"
        );
    }
}

#[test]
fn rediss_with_a_ca_of_our_own() {
    let (redis, pki) = Redis::start_tls();
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#,
    );
    let client = || {
        let store = RedisStore::with_ca_pem(&redis.url(), pki.ca_pem.as_bytes()).unwrap();
        cc_client(&server, Arc::new(store))
    };
    for _ in 0..3 {
        client().token().unwrap();
    }
    assert_eq!(count.load(SeqCst), 1);
    // Without the CA the server is not trusted: a store error, never a plain fallback
    // to an unverified connection.
    let untrusted = RedisStore::new(&redis.url()).unwrap();
    let e = untrusted
        .lock(
            &StoreKey::custom("tls"),
            Instant::now() + Duration::from_secs(2),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Store, "{e}");
    assert_eq!(
        RedisStore::with_ca_pem("redis://127.0.0.1:1", pki.ca_pem.as_bytes())
            .unwrap_err()
            .kind(),
        ErrorKind::Config
    );
    assert_eq!(
        RedisStore::with_ca_file(&redis.url(), "/nonexistent/ca.pem")
            .unwrap_err()
            .kind(),
        ErrorKind::Config
    );
}

/// A closed port says so, with the address: "connection refused", not a bare I/O error.
#[test]
fn a_closed_redis_port_says_connection_refused_and_where() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}")).unwrap();
    let e = store
        .lock(
            &StoreKey::custom("closed"),
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap_err();
    check_error(&e);
    assert_eq!(e.kind(), ErrorKind::Store, "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("Redis at 127.0.0.1:{port}")) && text.contains("connection refused"),
        "{text}"
    );
    assert!(!text.contains("I/O error"), "{text}");
}

/// `rediss://` at a port where Redis speaks plain RESP: the failure asks whether the
/// server speaks TLS (as HTTPS at a plain HTTP port does), and a plain `redis://` at
/// the same port works.
#[test]
fn rediss_at_a_plain_redis_port_asks_whether_it_speaks_tls() {
    let redis = Redis::start(&[]);
    let url = redis.url().replacen("redis://", "rediss://", 1);
    let store = RedisStore::new(&url).unwrap();
    let e = store
        .lock(
            &StoreKey::custom("not-tls"),
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap_err();
    check_error(&e);
    let text = e.to_string();
    assert!(
        text.contains(&format!("Redis at 127.0.0.1:{}", redis.port))
            && text.contains("is the server speaking TLS?"),
        "{text}"
    );
    // A grant that can renew without the store gets its token: the silent store is a
    // store error (told as an event), not the call's timeout.
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-past-a-silent-store-7f6e","expires_in":3600}"#,
    );
    let client = cc_client(&server, Arc::new(RedisStore::new(&url).unwrap()));
    let token = client.token().unwrap();
    assert_eq!(
        token.access_token().expose_secret(),
        "at-past-a-silent-store-7f6e"
    );
    assert_eq!(count.load(SeqCst), 1);
    let plain = RedisStore::new(&redis.url()).unwrap();
    drop(
        plain
            .lock(
                &StoreKey::custom("not-tls"),
                Instant::now() + Duration::from_secs(10),
            )
            .unwrap(),
    );
}

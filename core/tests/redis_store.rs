//! `RedisStore` against a real `redis-server` started on a free loopback port (installed
//! by `tests/provision.sh`) and stopped at the end of each test.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authcore::grant::{ApiKey, ClientCredentials};
use authcore::{Client, ErrorKind, RedisStore, StoreKey, StoredToken, Token, TokenStore};
use common::{check_error, counting_endpoint, opts};

/// A `redis-server` process of this test's own.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start(extra: &[&str]) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("authcore-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (tests/provision.sh installs it)");
        let redis = Redis { child, port, dir };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"PING\r\n");
                let mut buf = [0u8; 64];
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                if s.read(&mut buf).is_ok_and(|n| n > 0) {
                    return redis;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
    let client = || {
        Client::new(
            ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
            opts().store(Arc::new(RedisStore::new(&redis.url()).unwrap())),
        )
        .unwrap()
    };
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
    let mut raw = TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    raw.write_all(b"FLUSHALL\r\n").unwrap();
    let mut buf = [0u8; 16];
    let _ = raw.read(&mut buf);
    let b_lock = other
        .lock(&key, Instant::now() + Duration::from_secs(2))
        .unwrap();
    other.save(&key, &token("at-newer-0000000000")).unwrap();
    // A's late save is refused and the newer token stays.
    let e = store.save(&key, &token("at-older-1111111111")).unwrap_err();
    assert!(e.to_string().contains("lock expired"), "{e}");
    drop(b_lock);
    drop(a_lock);
    let kept = other.load(&key).unwrap().unwrap();
    assert_eq!(kept.access_token.expose_secret(), "at-newer-0000000000");
}

#[test]
fn a_wrong_password_or_no_redis_is_a_clear_error_without_secrets() {
    let redis = Redis::start(&["--requirepass", "right-password-9f8e7d"]);
    let mut server = mockito::Server::new();
    counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-1","expires_in":3600}"#,
    );
    let url = format!(
        "redis://:cs+%2F%3D%3Asecret-9f8e7d@127.0.0.1:{}",
        redis.port
    );
    let store = RedisStore::new(&url).unwrap();
    assert!(!format!("{store:?}").contains("secret"), "{store:?}");
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
        opts().store(Arc::new(store)),
    )
    .unwrap();
    let e = client.token().unwrap_err();
    check_error(&e);
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert!(e.to_string().contains("Redis at 127.0.0.1"), "{e}");
    drop(redis);
    let start = Instant::now();
    let e = client.token().unwrap_err();
    check_error(&e);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        RedisStore::new("not a url").unwrap_err().kind(),
        ErrorKind::Config
    );
}

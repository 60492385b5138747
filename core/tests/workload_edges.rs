//! Workloads without secrets at their edges: what an adversarial review found, kept as
//! regressions (two users behind chained exchanges, commands that leave processes
//! behind, FIFOs, expiry during a retry, refusals about another credential, keys given
//! where a path goes).
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authcore::grant::{token_type, ClientCredentials, JwtBearer, RefreshToken, TokenExchange};
use authcore::{AssertionSource, Client, MemoryStore, Options};
use base64::Engine;

fn param(body: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn opts() -> Options {
    Options::default()
        .failure_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_secs(3))
}

/// Token endpoint: refresh grant gives "at-for-<refresh_token>", exchange gives
/// "exchanged-<subject_token>".
fn endpoint(server: &mut mockito::Server) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    server
        .mock("POST", "/token")
        .with_header("content-type", "application/json")
        .with_body_from_request(move |req| {
            let body = req.utf8_lossy_body().unwrap().to_string();
            s.lock().unwrap().push(body.clone());
            let at = match param(&body, "grant_type").as_deref() {
                Some("refresh_token") => {
                    format!("at-for-{}", param(&body, "refresh_token").unwrap())
                }
                _ => match param(&body, "subject_token") {
                    Some(st) => format!("exchanged-{st}"),
                    None => "plain".to_owned(),
                },
            };
            format!(r#"{{"access_token":"{at}","token_type":"Bearer","expires_in":3600}}"#)
                .into_bytes()
        })
        .expect_at_least(0)
        .create();
    seen
}

/// Two users' subject clients (refresh tokens, no ID token), each exchanged by a
/// client sharing one store: does user B get user A's exchanged token?
#[test]
fn two_users_behind_chained_exchanges_never_share_a_token() {
    let mut server = mockito::Server::new();
    let _seen = endpoint(&mut server);
    let url = format!("{}/token", server.url());
    let store = Arc::new(MemoryStore::new());
    let exchanged = |rt: &str| {
        let subject = Client::new(RefreshToken::new(&url, "web", "s3cret", rt), opts()).unwrap();
        let grant = TokenExchange::new(
            &url,
            "exchanger",
            "ex-secret",
            AssertionSource::client(subject),
            token_type::ACCESS_TOKEN,
        )
        .audience("https://backend.example");
        let client = Client::new(grant, opts().store(store.clone())).unwrap();
        client
            .token()
            .unwrap()
            .access_token()
            .expose_secret()
            .to_owned()
    };
    let a = exchanged("rt-alice");
    let b = exchanged("rt-bob");
    eprintln!("alice got {a}, bob got {b}");
    assert_eq!(a, "exchanged-at-for-rt-alice");
    assert_eq!(
        b, "exchanged-at-for-rt-bob",
        "bob received alice's exchanged token"
    );
}

/// A command whose grandchild keeps stdout open: the call must not outlive its timeout.
#[test]
fn a_command_whose_grandchild_holds_stdout_does_not_hang_on_timeout() {
    let mut server = mockito::Server::new();
    let _seen = endpoint(&mut server);
    let url = format!("{}/token", server.url());
    let source = AssertionSource::command("sh", ["-c", "sleep 6; echo late"])
        .timeout(Duration::from_millis(300));
    let client = Client::new(JwtBearer::new(&url, source), opts()).unwrap();
    let started = Instant::now();
    let e = client.token().unwrap_err();
    let took = started.elapsed();
    eprintln!("error after {took:?}: {e}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} for a 0.3 s timeout / 3 s call"
    );
}

#[test]
fn a_command_whose_background_child_holds_stdout_does_not_hang_on_success() {
    let mut server = mockito::Server::new();
    let _seen = endpoint(&mut server);
    let url = format!("{}/token", server.url());
    let source = AssertionSource::command("sh", ["-c", "sleep 6 & echo opaque-assertion"])
        .timeout(Duration::from_millis(500));
    let client = Client::new(JwtBearer::new(&url, source), opts()).unwrap();
    let started = Instant::now();
    let r = client.token();
    let took = started.elapsed();
    eprintln!(
        "result after {took:?}: {:?}",
        r.as_ref()
            .map(|t| t.access_token().expose_secret().to_owned())
    );
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} for a 0.5 s timeout / 3 s call"
    );
}

fn jwt_with(payload: &str) -> String {
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.sig", enc(r#"{"alg":"none"}"#), enc(payload))
}

/// An assertion whose `exp` is zero or negative (long past) is never sent.
#[test]
fn a_jwt_with_a_negative_or_zero_exp_is_never_sent() {
    let mut server = mockito::Server::new();
    let seen = endpoint(&mut server);
    let url = format!("{}/token", server.url());
    for payload in [r#"{"exp":-5}"#, r#"{"exp":0}"#, r#"{"exp":-1.5}"#] {
        let client = Client::new(
            JwtBearer::new(&url, AssertionSource::literal(jwt_with(payload))),
            opts(),
        )
        .unwrap();
        let e = client.token().unwrap_err();
        assert_eq!(e.kind(), authcore::ErrorKind::Config, "{payload}: {e}");
        assert!(seen.lock().unwrap().is_empty(), "{payload} was sent");
    }
}

/// The exchanger's own secret is wrong (invalid_client): the subject client's valid
/// token is thrown away and a new one fetched, every call.
#[test]
fn a_refusal_of_the_exchanging_client_leaves_the_subject_token_alone() {
    let mut server = mockito::Server::new();
    let subject_count = Arc::new(AtomicUsize::new(0));
    let c = subject_count.clone();
    server
        .mock("POST", "/subject")
        .with_header("content-type", "application/json")
        .with_body_from_request(move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            format!(r#"{{"access_token":"sub-{n}","token_type":"Bearer","expires_in":3600}}"#)
                .into_bytes()
        })
        .expect_at_least(0)
        .create();
    server
        .mock("POST", "/exchange")
        .with_status(401)
        .with_header("content-type", "application/json")
        .with_body(r#"{"error":"invalid_client","error_description":"bad client secret"}"#)
        .expect_at_least(0)
        .create();
    let front = Client::new(
        ClientCredentials::new(format!("{}/subject", server.url()), "front", "fs"),
        opts(),
    )
    .unwrap();
    let client = Client::new(
        TokenExchange::new(
            format!("{}/exchange", server.url()),
            "exchanger",
            "WRONG",
            AssertionSource::client(front.clone()),
            token_type::ACCESS_TOKEN,
        ),
        opts(),
    )
    .unwrap();
    for _ in 0..3 {
        let _ = client.token();
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "subject client fetched {} tokens for 3 failed exchanges",
        subject_count.load(Ordering::SeqCst)
    );
    assert!(subject_count.load(Ordering::SeqCst) <= 1);
}

/// A per-call timeout of 1 s: what does the timeout message say?
#[test]
fn a_per_call_timeout_is_named_as_set() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(s);
    });
    let client = Client::new(
        authcore::grant::StaticToken::new("tok"),
        Options::default().timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let e = client
        .request_with_timeout(
            "GET",
            &format!("http://127.0.0.1:{port}/x"),
            &[],
            b"",
            Some(Duration::from_secs(1)),
        )
        .unwrap_err();
    eprintln!("per-call 1 s timeout message: {e}");
    hold.join().unwrap();
    assert!(!e.to_string().contains("30 s"), "{e}");
}

/// A JWT that expires during a 5xx retry pause is read again, never sent expired.
#[test]
fn an_assertion_that_expires_during_a_retry_pause_is_not_sent() {
    let mut server = mockito::Server::new();
    let n = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let (n2, s2, n3) = (n.clone(), sent.clone(), n.clone());
    server
        .mock("POST", "/token")
        .with_header("content-type", "application/json")
        .with_header("retry-after", "2")
        .with_status_code_from_request(move |_| {
            if n3.load(Ordering::SeqCst) == 0 {
                503
            } else {
                200
            }
        })
        .with_body_from_request(move |req| {
            let body = req.utf8_lossy_body().unwrap().to_string();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            s2.lock()
                .unwrap()
                .push((now, param(&body, "assertion").unwrap_or_default()));
            if n2.fetch_add(1, Ordering::SeqCst) == 0 {
                br#"{"error":"temporarily_unavailable"}"#.to_vec()
            } else {
                br#"{"access_token":"ok","token_type":"Bearer","expires_in":60}"#.to_vec()
            }
        })
        .expect_at_least(0)
        .create();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = now + 1;
    let jwt = jwt_with(&format!(r#"{{"exp":{exp}}}"#));
    let client = Client::new(
        JwtBearer::new(
            format!("{}/token", server.url()),
            AssertionSource::literal(jwt),
        ),
        opts().timeout(Duration::from_secs(8)),
    )
    .unwrap();
    let r = client.token();
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1, "sent once, before it expired");
    assert!(sent.iter().all(|(at, _)| *at < exp));
    // A literal cannot give another: the call fails here, saying so.
    let e = r.unwrap_err();
    assert_eq!(e.kind(), authcore::ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
}

/// A chained subject client whose cached token is a JWT past its exp (clock skew, an
/// expires_in longer than the JWT's exp): the exchange fails and the subject client is
/// never asked for a new one.
#[test]
fn a_chained_client_whose_jwt_expired_is_renewed() {
    let mut server = mockito::Server::new();
    let _seen = endpoint(&mut server);
    let subject_count = Arc::new(AtomicUsize::new(0));
    let c = subject_count.clone();
    server
        .mock("POST", "/subject")
        .with_header("content-type", "application/json")
        .with_body_from_request(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let jwt = jwt_with(&format!(r#"{{"exp":{}}}"#, now + 2));
            format!(r#"{{"access_token":"{jwt}","token_type":"Bearer","expires_in":3600}}"#)
                .into_bytes()
        })
        .expect_at_least(0)
        .create();
    let front = Client::new(
        ClientCredentials::new(format!("{}/subject", server.url()), "front", "fs"),
        opts(),
    )
    .unwrap();
    let make = || {
        Client::new(
            TokenExchange::new(
                format!("{}/token", server.url()),
                "exchanger",
                "ex",
                AssertionSource::client(front.clone()),
                token_type::ACCESS_TOKEN,
            ),
            opts(),
        )
        .unwrap()
    };
    assert!(make().token().is_ok());
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..2 {
        let r = make().token();
        eprintln!(
            "after the subject JWT's exp: {:?}",
            r.as_ref().err().map(|e| e.to_string())
        );
    }
    eprintln!("subject requests: {}", subject_count.load(Ordering::SeqCst));
    assert!(
        subject_count.load(Ordering::SeqCst) > 1,
        "the subject client was never renewed"
    );
}

/// An alias authcore never uses (userinfo), plain HTTP: does discovery fail for a client
/// without a certificate?
#[test]
fn an_unused_plain_http_alias_does_not_break_discovery() {
    let mut server = mockito::Server::new();
    let url = server.url();
    server
        .mock("GET", "/.well-known/openid-configuration")
        .with_header("content-type", "application/json")
        .with_body(format!(
            r#"{{"issuer":"{url}","token_endpoint":"{url}/token",
                "mtls_endpoint_aliases":{{"userinfo_endpoint":"http://mtls.idp.example/userinfo"}}}}"#
        ))
        .expect_at_least(0)
        .create();
    server
        .mock("GET", "/.well-known/oauth-authorization-server")
        .with_status(404)
        .expect_at_least(0)
        .create();
    let r = authcore::Metadata::discover(&url, &opts());
    eprintln!(
        "discover with an unused plain-HTTP alias: {:?}",
        r.as_ref().err().map(|e| e.to_string())
    );
    assert!(r.is_ok());
}

/// A FIFO as the assertion file: does the call keep its deadline?
#[test]
fn a_fifo_as_the_assertion_file_is_refused_at_once() {
    let mut server = mockito::Server::new();
    let _seen = endpoint(&mut server);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let client = Client::new(
        JwtBearer::new(
            format!("{}/token", server.url()),
            AssertionSource::file(&fifo),
        ),
        opts().timeout(Duration::from_secs(1)),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let started = Instant::now();
        let r = client.token().map(|_| ());
        tx.send((started.elapsed(), r.err().map(|e| e.to_string())))
            .unwrap();
    });
    let got = rx.recv_timeout(Duration::from_secs(4));
    eprintln!("within 4 s: {got:?}");
    if got.is_err() {
        // Release the reader: open for writing and close.
        std::fs::write(&fifo, "").unwrap();
        eprintln!(
            "after release: {:?}",
            rx.recv_timeout(Duration::from_secs(2))
        );
    }
    t.join().unwrap();
    assert!(
        got.is_ok(),
        "token() with a 1 s timeout still blocked after 4 s"
    );
}

/// Key PEM passed where a key path is expected (Python str, C _files, Rust): the error
/// quotes the key.
#[test]
fn a_key_given_as_pem_text_where_a_path_goes_is_not_quoted() {
    let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPRIVATEKEYMATERIALpat-0f1e2d3c4b5a\n-----END PRIVATE KEY-----\n";
    let cert = tempfile::NamedTempFile::new().unwrap();
    let e = authcore::ClientCertificate::from_pem_files(cert.path(), key).unwrap_err();
    eprintln!("error: {e}");
    assert!(
        !e.to_string().contains("PRIVATEKEYMATERIAL"),
        "the key is in the error"
    );
}

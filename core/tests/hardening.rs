//! Hardening: every call ends by its deadline, one bad response costs at most one error,
//! transient failures are not refusals, and rotated refresh tokens survive failing user
//! code. Timing cases run against real loopback servers written for the purpose.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use authcore::grant::{ApiKey, ClientCredentials, RefreshToken};
use authcore::{Client, ErrorKind, Options};
use common::{err, opts};

/// A loopback server that hands each connection to `handler` (at most `max_conns`),
/// and stops when dropped.
struct Raw {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Raw {
    fn start(max_conns: usize, handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handler = Arc::new(handler);
        let thread = thread::spawn(move || {
            let mut served = Vec::new();
            let give_up = Instant::now() + Duration::from_secs(90);
            while !stop2.load(SeqCst) && served.len() < max_conns && Instant::now() < give_up {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let h = handler.clone();
                        served.push(thread::spawn(move || h(stream)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            for t in served {
                let _ = t.join();
            }
        });
        Raw {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP request (head and body) from `stream`.
fn read_request(stream: &TcpStream) -> String {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    head + &String::from_utf8_lossy(&body)
}

fn respond(mut stream: &TcpStream, status: &str, headers: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
}

fn cc(url: &str, options: Options) -> Client {
    Client::new(
        ClientCredentials::new(format!("{url}/token"), "id", "secret"),
        options,
    )
    .unwrap()
}

#[test]
fn a_dripping_token_endpoint_times_out_at_the_deadline_and_is_dropped() {
    let closed_after = Arc::new(Mutex::new(None::<Duration>));
    let seen = closed_after.clone();
    let server = Raw::start(4, move |mut stream| {
        read_request(&stream);
        let start = Instant::now();
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n{");
        // One byte every 500 ms for up to 60 s, until the client hangs up.
        for _ in 0..120 {
            thread::sleep(Duration::from_millis(500));
            if stream.write_all(b" ").and_then(|_| stream.flush()).is_err() {
                *seen.lock().unwrap() = Some(start.elapsed());
                return;
            }
        }
    });
    let client = cc(
        &server.url,
        opts().timeout(Duration::from_secs(2)).max_retries(5),
    );
    let start = Instant::now();
    let e = err(client.token());
    let took = start.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        e.to_string().contains("timeout (2 s)"),
        "the message names the setting as it was set: {e}"
    );
    assert!(took < Duration::from_millis(2600), "took {took:?}");
    drop(server);
    let closed = closed_after
        .lock()
        .unwrap()
        .expect("the connection was dropped");
    assert!(closed < Duration::from_secs(4), "closed after {closed:?}");
}

#[test]
fn a_silent_token_endpoint_costs_one_deadline_whatever_the_retries() {
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    let server = Raw::start(20, move |stream| {
        c.fetch_add(1, SeqCst);
        read_request(&stream);
        // Never answers; holds the connection until the client gives up.
        let mut buf = [0u8; 1];
        let _ = (&stream).read(&mut buf);
    });
    let client = cc(
        &server.url,
        opts().timeout(Duration::from_millis(1500)).max_retries(10),
    );
    let start = Instant::now();
    let e = err(client.token());
    let took = start.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(took < Duration::from_millis(2100), "took {took:?}");
}

#[test]
fn a_retry_after_longer_than_the_deadline_returns_the_answer_at_once() {
    let server = Raw::start(4, |stream| {
        read_request(&stream);
        respond(
            &stream,
            "503 Service Unavailable",
            "retry-after: 5\r\ncontent-type: application/json\r\n",
            r#"{"error":"temporarily_unavailable"}"#,
        );
    });
    let client = cc(&server.url, opts().timeout(Duration::from_secs(3)));
    let start = Instant::now();
    let e = err(client.token());
    assert_eq!(e.oauth().unwrap().error, "temporarily_unavailable");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn request_deadline_covers_send_renewal_and_resend() {
    // Token endpoint and API both answer after 800 ms; the API rejects every token.
    let server = Raw::start(10, |stream| {
        let req = read_request(&stream);
        thread::sleep(Duration::from_millis(800));
        if req.starts_with("POST /token") {
            respond(
                &stream,
                "200 OK",
                "",
                r#"{"access_token":"at-slow","expires_in":3600}"#,
            );
        } else {
            respond(
                &stream,
                "401 Unauthorized",
                "www-authenticate: Bearer error=\"invalid_token\"\r\n",
                "",
            );
        }
    });
    let client = cc(&server.url, opts().timeout(Duration::from_secs(30)));
    let start = Instant::now();
    let e = err(client.request_with_timeout(
        "GET",
        &format!("{}/api", server.url),
        &[],
        &[],
        Some(Duration::from_secs(2)),
    ));
    let took = start.elapsed();
    // token 0.8 s + send 0.8 s + renewal 0.8 s > 2 s: the renewal hits the deadline.
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[test]
fn waiters_share_a_long_renewal_instead_of_timing_out_first() {
    // The leader's renewal: a 503 asking for 1 s, then a token after 1.5 s.
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let server = Raw::start(10, move |stream| {
        read_request(&stream);
        if a.fetch_add(1, SeqCst) == 0 {
            respond(&stream, "503 Service Unavailable", "retry-after: 1\r\n", "");
        } else {
            thread::sleep(Duration::from_millis(1500));
            respond(
                &stream,
                "200 OK",
                "",
                r#"{"access_token":"at-late","expires_in":3600}"#,
            );
        }
    });
    let client = cc(&server.url, opts().timeout(Duration::from_secs(5)));
    let leader = {
        let c = client.clone();
        thread::spawn(move || {
            c.token()
                .map(|t| t.access_token().expose_secret().to_owned())
        })
    };
    // The signal that the leader's renewal is in flight: its first attempt arrived.
    let in_flight = (0..2000).any(|_| {
        thread::sleep(Duration::from_millis(5));
        attempts.load(SeqCst) >= 1
    });
    assert!(in_flight, "the leader's renewal never reached the server");
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let c = client.clone();
            thread::spawn(move || {
                c.token()
                    .map(|t| t.access_token().expose_secret().to_owned())
            })
        })
        .collect();
    assert_eq!(leader.join().unwrap().unwrap(), "at-late");
    for w in waiters {
        assert_eq!(w.join().unwrap().unwrap(), "at-late");
    }
    assert_eq!(attempts.load(SeqCst), 2);
}

#[test]
fn extreme_settings_neither_panic_nor_disable_the_backoff() {
    let mut server = mockito::Server::new();
    let failing = server
        .mock("POST", "/token")
        .with_status(500)
        .expect(2)
        .create();
    let options = Options::default()
        .timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .wait_timeout(Duration::MAX)
        .failure_backoff(Duration::MAX, Duration::MAX)
        .max_retries(0)
        .default_lifetime(Some(Duration::MAX));
    let client = cc(&server.url(), options);
    err(client.token());
    err(client.token());
    // Two failures: the (clamped) backoff holds, no third request.
    for _ in 0..20 {
        assert_eq!(err(client.token()).http_status(), Some(500));
    }
    failing.assert();

    let zero = Options::default().timeout(Duration::ZERO);
    let e = Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "id", "secret"),
        zero,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[test]
fn huge_retry_counts_and_lifetimes_are_bounded() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-1","expires_in":18446744073709551615}"#)
        .create();
    let client = cc(&server.url(), opts().max_retries(u32::MAX));
    let t = client.token().unwrap();
    assert!(t.lifetime().unwrap() >= Duration::from_secs(365 * 24 * 3600));
}

#[test]
fn one_unusable_200_is_retried_inside_the_call_for_client_credentials() {
    let mut server = mockito::Server::new();
    let html = server
        .mock("POST", "/token")
        .with_header("content-type", "application/json")
        .with_body("<html><body>Service temporarily unavailable</body></html>")
        .expect(1)
        .create();
    let good = server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-1","expires_in":3600}"#)
        .expect(1)
        .create();
    let client = cc(&server.url(), opts());
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-1"
    );
    html.assert();
    good.assert();
}

fn refresh_client(url: &str, rt: &str, retries: u32) -> Client {
    Client::new(
        RefreshToken::new(format!("{url}/token"), "id", "secret", rt.to_owned()),
        opts().max_retries(retries),
    )
    .unwrap()
}

#[test]
fn an_unusable_200_is_not_retried_for_a_refresh_token_that_may_rotate() {
    let mut server = mockito::Server::new();
    let html = server
        .mock("POST", "/token")
        .match_body(mockito::Matcher::Regex(
            "refresh_token=rt-first-5c4b3a29".into(),
        ))
        .with_body("<html>oops</html>")
        .expect(1)
        .create();
    let client = refresh_client(&server.url(), "rt-first-5c4b3a29", 3);
    assert_eq!(err(client.token()).kind(), ErrorKind::InvalidResponse);
    html.assert();
}

#[test]
fn transient_refresh_failures_keep_the_refresh_token() {
    for (status, body, kind) in [
        (
            503,
            r#"{"error":"temporarily_unavailable"}"#,
            ErrorKind::OAuth,
        ),
        (500, r#"{"error":"server_error"}"#, ErrorKind::OAuth),
        (503, r#"{"error":"invalid_grant"}"#, ErrorKind::OAuth),
        (404, "<html>Not Found</html>", ErrorKind::InvalidResponse),
        (429, "", ErrorKind::RateLimited),
        (
            502,
            r#"{"title":"Bad Gateway","status":502}"#,
            ErrorKind::ApiProblem,
        ),
    ] {
        let mut server = mockito::Server::new();
        let failing = server
            .mock("POST", "/token")
            .with_status(status)
            .with_body(body)
            .expect(1)
            .create();
        let client = refresh_client(&server.url(), "rt-first-5c4b3a29", 0);
        let e = err(client.token());
        assert_eq!(e.kind(), kind, "{status} {body}: {e}");
        failing.assert();
        // The next call tries again at once, with the same refresh token.
        failing.remove();
        let ok = server
            .mock("POST", "/token")
            .match_body(mockito::Matcher::Regex(
                "refresh_token=rt-first-5c4b3a29".into(),
            ))
            .with_body(r#"{"access_token":"at-1","expires_in":3600}"#)
            .expect(1)
            .create();
        client.token().unwrap();
        ok.assert();
    }
}

#[test]
fn real_refusals_require_reauthentication() {
    for body in [
        r#"{"error":"invalid_grant"}"#,
        r#"{"error":"invalid_client"}"#,
        r#"{"error":"unauthorized_client"}"#,
    ] {
        let mut server = mockito::Server::new();
        server
            .mock("POST", "/token")
            .with_status(400)
            .with_body(body)
            .create();
        let client = refresh_client(&server.url(), "rt-first-5c4b3a29", 0);
        assert_eq!(
            err(client.token()).kind(),
            ErrorKind::ReauthenticationRequired,
            "{body}"
        );
    }
}

#[test]
fn api_video_server_error_on_refresh_keeps_the_refresh_token() {
    let mut server = mockito::Server::new();
    let key = server
        .mock("POST", "/auth/api-key")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","refresh_token":"rt-first-5c4b3a29","expires_in":3600}"#)
        .expect(1)
        .create();
    let failing = server
        .mock("POST", "/auth/refresh")
        .with_status(500)
        .with_body(r#"{"type":"https://docs.api.video/reference/server-error","title":"Internal error","status":500}"#)
        .expect(1)
        .create();
    let client = Client::new(
        ApiKey::with_base_url(server.url(), "sk_live_apikey_0123456789"),
        opts().max_retries(0),
    )
    .unwrap();
    let first = client.token().unwrap();
    assert!(client.invalidate(&first));
    assert_eq!(err(client.token()).kind(), ErrorKind::ApiProblem);
    key.assert();
    failing.assert();
    // Not back to the API key: the refresh token is tried again.
    failing.remove();
    let refresh = server
        .mock("POST", "/auth/refresh")
        .match_body(mockito::Matcher::Json(
            serde_json::json!({"refreshToken": "rt-first-5c4b3a29"}),
        ))
        .with_body(r#"{"access_token":"at-two-6f7a8b9c0d","refresh_token":"rt-second-8d7c6b5a","expires_in":3600}"#)
        .expect(1)
        .create();
    client.token().unwrap();
    refresh.assert();
}

#[test]
fn one_failure_costs_one_error_and_the_next_call_succeeds() {
    let mut server = mockito::Server::new();
    let failing = server
        .mock("POST", "/token")
        .with_status(500)
        .expect(1)
        .create();
    let client = cc(&server.url(), opts().max_retries(0));
    err(client.token());
    failing.assert();
    failing.remove();
    server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-1","expires_in":3600}"#)
        .expect(1)
        .create();
    client.token().unwrap();
}

#[test]
fn an_api_that_rejects_every_token_does_not_cost_a_token_request_per_call() {
    let mut server = mockito::Server::new();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    server
        .mock("POST", "/token")
        .with_body_from_request(move |_| {
            let n = c.fetch_add(1, SeqCst) + 1;
            format!(r#"{{"access_token":"at-{n}","expires_in":3600}}"#).into_bytes()
        })
        .create();
    server
        .mock("GET", "/api")
        .with_status(401)
        .with_header("www-authenticate", r#"Bearer error="invalid_token""#)
        .create();
    let client = cc(
        &server.url(),
        opts().failure_backoff(Duration::from_secs(5), Duration::from_secs(30)),
    );
    let url = format!("{}/api", server.url());
    for _ in 0..20 {
        assert_eq!(client.get(&url).unwrap().status, 401);
    }
    assert_eq!(
        count.load(SeqCst),
        2,
        "the first token, one renewal after the first 401, then the backoff holds"
    );
}

#[test]
fn a_failing_or_panicking_hook_loses_no_refresh_token() {
    for mode in ["error", "panic"] {
        let mut server = mockito::Server::new();
        server
            .mock("POST", "/auth/api-key")
            .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","refresh_token":"rt-first-5c4b3a29","expires_in":3600}"#)
            .expect(1)
            .create();
        let refresh = server
            .mock("POST", "/auth/refresh")
            .match_body(mockito::Matcher::Json(
                serde_json::json!({"refreshToken": "rt-first-5c4b3a29"}),
            ))
            .with_body(r#"{"access_token":"at-two-6f7a8b9c0d","refresh_token":"rt-second-8d7c6b5a","expires_in":3600}"#)
            .expect(1)
            .create();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let options = opts().on_refresh_token(move |_rt| -> Result<(), std::io::Error> {
            c.fetch_add(1, SeqCst);
            match mode {
                "panic" => panic!("the disk is on fire"),
                _ => Err(std::io::Error::other("disk full")),
            }
        });
        let client = Client::new(
            ApiKey::with_base_url(server.url(), "sk_live_apikey_0123456789"),
            options,
        )
        .unwrap();
        // The token still arrives and is cached.
        let first = client.token().unwrap();
        assert_eq!(first.access_token().expose_secret(), "at-one-1a2b3c4d5e");
        assert_eq!(client.token().unwrap().access_token(), first.access_token());
        // And the refresh token that came with it is the one used next.
        assert!(client.invalidate(&first));
        let second = client.token().unwrap();
        assert_eq!(second.access_token().expose_secret(), "at-two-6f7a8b9c0d");
        refresh.assert();
        assert_eq!(calls.load(SeqCst), 2, "{mode}");
    }
}

#[test]
fn an_unusable_200_is_retried_once_the_server_is_seen_not_to_rotate() {
    let mut server = mockito::Server::new();
    // The first refresh answer carries no new refresh token: the server keeps them.
    let first = server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-1","expires_in":3600}"#)
        .expect(1)
        .create();
    let client = refresh_client(&server.url(), "rt-first-5c4b3a29", 2);
    let t1 = client.token().unwrap();
    first.assert();
    first.remove();
    let html = server
        .mock("POST", "/token")
        .with_body("<html>oops</html>")
        .expect(1)
        .create();
    let good = server
        .mock("POST", "/token")
        .match_body(mockito::Matcher::Regex(
            "refresh_token=rt-first-5c4b3a29".into(),
        ))
        .with_body(r#"{"access_token":"at-2","expires_in":3600}"#)
        .expect(1)
        .create();
    assert!(client.invalidate(&t1));
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-2",
        "the HTML page was retried inside the call"
    );
    html.assert();
    good.assert();
}

#[test]
fn a_revocation_long_after_a_recovery_renews_at_once() {
    let mut server = mockito::Server::new();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    server
        .mock("POST", "/token")
        .with_body_from_request(move |_| {
            let n = c.fetch_add(1, SeqCst) + 1;
            format!(r#"{{"access_token":"at-{n}","expires_in":3600}}"#).into_bytes()
        })
        .create();
    let client = cc(
        &server.url(),
        opts().failure_backoff(Duration::from_millis(20), Duration::from_millis(100)),
    );
    let first = client.token().unwrap();
    assert!(client.invalidate(&first), "a first rejection renews");
    let second = client.token().unwrap();
    // The replacement works for a while (longer than the longest backoff)…
    thread::sleep(Duration::from_millis(150));
    // …then is revoked: an ordinary revocation, renewed at once, not held back as if
    // the API refused every token.
    assert!(client.invalidate(&second));
    assert_eq!(count.load(SeqCst), 2);
    client.token().unwrap();
    assert_eq!(count.load(SeqCst), 3);
}

/// A token endpoint whose name does not resolve: the error says so and names the host,
/// and the request is not retried within the call (the next call asks again).
#[test]
fn a_name_that_does_not_resolve_is_said_and_not_retried() {
    let client = cc(
        "https://no-such-host.invalid/token",
        Options::default()
            .max_retries(3)
            .timeout(Duration::from_secs(10)),
    );
    let e = client.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert!(
        e.to_string()
            .contains("could not resolve host no-such-host.invalid"),
        "{e}"
    );
    let stats = client.stats();
    assert_eq!(stats.token_requests_failed, 1, "{stats:?}");
}

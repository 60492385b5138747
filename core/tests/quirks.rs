//! Odd token responses and every error shape, through a real client.

mod common;

use std::time::Duration;

use authcore::grant::{ApiKey, ClientCredentials};
use authcore::{Client, Error, ErrorKind};
use common::{err, opts};

fn cc(server: &mockito::ServerGuard) -> Client {
    Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "client",
            "cs+/=:secret-9f8e7d",
        ),
        opts().max_retries(0),
    )
    .unwrap()
}

fn serve(status: usize, content_type: &str, body: &str) -> (mockito::ServerGuard, mockito::Mock) {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_status(status)
        .with_header("content-type", content_type)
        .with_body(body)
        .create();
    (server, m)
}

#[test]
fn tolerated_token_quirks() {
    let cases = [
        (
            r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":"3600","token_type":"bearer"}"#,
            Some(3600),
        ),
        (
            r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3599.5}"#,
            Some(3599),
        ),
        (
            r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":0}"#,
            None,
        ),
        (
            r#"{"access_token":"at-one-1a2b3c4d5e","unknown":{"nested":[1,2]},"scope":"a b"}"#,
            None,
        ),
    ];
    for (body, secs) in cases {
        let (server, _m) = serve(200, "application/json", body);
        let t = cc(&server).token().unwrap();
        assert_eq!(t.lifetime().map(|d| d.as_secs()), secs, "{body}");
        assert_eq!(t.token_type(), "Bearer");
        assert_eq!(
            t.authorization_header().expose_secret(),
            "Bearer at-one-1a2b3c4d5e"
        );
    }
}

#[test]
fn ok_status_with_error_body_is_an_oauth_error() {
    let (server, _m) = serve(
        200,
        "application/json",
        r#"{"error":"invalid_grant","error_description":"expired"}"#,
    );
    let e = err(cc(&server).token());
    assert_eq!(e.kind(), ErrorKind::OAuth);
    assert_eq!(e.oauth().unwrap().description.as_deref(), Some("expired"));
}

#[test]
fn ok_status_without_access_token_is_invalid_response() {
    let (server, _m) = serve(
        200,
        "application/json",
        r#"{"refresh_token":"rt-first-5c4b3a29","expires_in":3600}"#,
    );
    let e = err(cc(&server).token());
    assert_eq!(e.kind(), ErrorKind::InvalidResponse);
    assert!(e.to_string().contains("no access_token"), "{e}");
}

#[test]
fn html_page_labelled_json_is_invalid_response_with_snippet() {
    let (server, _m) = serve(
        502,
        "application/json",
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    );
    let e = err(cc(&server).token());
    match &e {
        Error::InvalidResponse {
            status, snippet, ..
        } => {
            assert_eq!(*status, 502);
            assert!(snippet.contains("502 Bad Gateway"), "{snippet}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn oauth_error_body_keeps_code_description_uri_and_status() {
    let (server, _m) = serve(
        401,
        "application/json",
        r#"{"error":"invalid_client","error_description":"Client authentication failed.","error_uri":"https://docs/x"}"#,
    );
    let e = err(cc(&server).token());
    let o = e.oauth().unwrap();
    assert_eq!(o.error, "invalid_client");
    assert_eq!(
        o.description.as_deref(),
        Some("Client authentication failed.")
    );
    assert_eq!(o.uri.as_deref(), Some("https://docs/x"));
    assert_eq!(o.status, Some(401));
    assert_eq!(e.kind().code(), 4);
}

#[test]
fn api_video_problem_body_is_an_api_problem() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/auth/api-key")
        .with_status(400)
        .with_body(r#"{"type":"https://docs.api.video/reference/authentication-invalid-api-key","title":"The API key is invalid.","name":"apiKey","status":400}"#)
        .create();
    let client = Client::new(
        ApiKey::with_base_url(server.url(), "sk_live_apikey_0123456789"),
        opts(),
    )
    .unwrap();
    match err(client.token()) {
        Error::ApiProblem(p) => {
            assert_eq!(p.status, 400);
            assert_eq!(p.title.as_deref(), Some("The API key is invalid."));
            assert_eq!(p.detail.as_deref(), Some("apiKey"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn vibe_error_envelope_is_an_api_problem() {
    let (server, _m) = serve(
        403,
        "application/json",
        r#"{"error":{"type":"insufficient_scope","title":"Missing scope","status":403,"detail":{"required":["reporting:read"]}}}"#,
    );
    match err(cc(&server).token()) {
        Error::ApiProblem(p) => assert_eq!(p.problem_type.as_deref(), Some("insufficient_scope")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rate_limit_reports_vendor_retry_after() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_status(429)
        .with_header("x-ratelimit-retry-after", "42")
        .with_body(r#"{"type":"https://docs.api.video/reference/too-many-requests","title":"Too many requests.","status":429}"#)
        .create();
    let e = err(cc(&server).token());
    assert_eq!(e.kind(), ErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(42)));
}

#[test]
fn transient_failures_are_retried_then_succeed() {
    let mut server = mockito::Server::new();
    let fail = server
        .mock("POST", "/token")
        .with_status(503)
        .with_header("retry-after", "0")
        .expect(2)
        .create();
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "c",
            "cs+/=:secret-9f8e7d",
        ),
        opts().max_retries(2),
    )
    .unwrap();
    // mockito serves the first matching mock until its expected hits are used up.
    let ok = server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#)
        .expect(1)
        .create();
    let r = client.token();
    fail.assert();
    ok.assert();
    assert_eq!(
        r.unwrap().access_token().expose_secret(),
        "at-one-1a2b3c4d5e"
    );
}

#[test]
fn connection_refused_is_a_transport_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::new(
        ClientCredentials::new(
            format!("http://127.0.0.1:{port}/token"),
            "c",
            "cs+/=:secret-9f8e7d",
        ),
        opts().max_retries(1),
    )
    .unwrap();
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
}

#[test]
fn slow_endpoint_is_a_timeout() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_body_from_request(|_| {
            std::thread::sleep(Duration::from_millis(1500));
            b"{}".to_vec()
        })
        .create();
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "c",
            "cs+/=:secret-9f8e7d",
        ),
        opts().timeout(Duration::from_millis(300)).max_retries(0),
    )
    .unwrap();
    assert_eq!(err(client.token()).kind(), ErrorKind::Timeout);
}

#[test]
fn oversized_body_is_rejected() {
    let big = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(10_000));
    let (server, _m) = serve(200, "application/json", &big);
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "c",
            "cs+/=:secret-9f8e7d",
        ),
        opts().max_body_bytes(1024),
    )
    .unwrap();
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::InvalidResponse);
    assert!(e.to_string().contains("1024-byte limit"), "{e}");
}

#[test]
fn request_retries_once_after_401_and_not_after_insufficient_scope() {
    let mut server = mockito::Server::new();
    let tokens = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t2 = tokens.clone();
    server
        .mock("POST", "/token")
        .with_body_from_request(move |_| {
            let n = t2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let access = [
                "at-one-1a2b3c4d5e",
                "at-two-6f7a8b9c0d",
                "at-three-0e1f2a3b4c",
            ][n.min(2)];
            format!(r#"{{"access_token":"{access}","expires_in":3600}}"#).into_bytes()
        })
        .create();
    let revoked = server
        .mock("GET", "/api/me")
        .match_header("authorization", "Bearer at-one-1a2b3c4d5e")
        .with_status(401)
        .with_header("www-authenticate", r#"Bearer error="invalid_token""#)
        .expect(1)
        .create();
    let ok = server
        .mock("GET", "/api/me")
        .match_header("authorization", "Bearer at-two-6f7a8b9c0d")
        .with_body("hello")
        .create();
    let forbidden = server
        .mock("GET", "/api/admin")
        .with_status(403)
        .with_header("www-authenticate", r#"Bearer error="insufficient_scope""#)
        .expect(1)
        .create();
    let client = cc(&server);
    let r = client
        .request(
            "GET",
            &format!("{}/api/me", server.url()),
            &[("Authorization", "Bearer forged")],
            &[],
        )
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(tokens.load(std::sync::atomic::Ordering::SeqCst), 2);
    let r = client.get(&format!("{}/api/admin", server.url())).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        tokens.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "403 must not renew"
    );
    revoked.assert();
    ok.assert();
    forbidden.assert();
}

#[test]
fn request_reads_every_www_authenticate_line() {
    let mut server = mockito::Server::new();
    let token = server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-lines-1a2b3c","expires_in":3600}"#)
        .expect(1)
        .create();
    // The Bearer challenge is on the second line: no renewal, one request.
    let api = server
        .mock("GET", "/api/scoped")
        .with_status(401)
        .with_header("www-authenticate", r#"Basic realm="other""#)
        .with_header(
            "www-authenticate",
            r#"Bearer error="insufficient_scope", scope="admin""#,
        )
        .expect(1)
        .create();
    let client = cc(&server);
    let r = client.get(&format!("{}/api/scoped", server.url())).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.challenges().len(), 2);
    assert_eq!(r.challenges()[1].param("scope"), Some("admin"));
    token.assert();
    api.assert();
}

#[test]
fn request_gives_up_after_one_retry() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#)
        .expect(2)
        .create();
    let api = server
        .mock("GET", "/api")
        .with_status(401)
        .expect(2)
        .create();
    let r = cc(&server).get(&format!("{}/api", server.url())).unwrap();
    assert_eq!(r.status, 401);
    api.assert();
}

#[test]
fn static_token_is_never_renewed() {
    let mut server = mockito::Server::new();
    let api = server
        .mock("GET", "/api")
        .match_header("authorization", "Bearer pat-0f1e2d3c4b5a")
        .with_status(401)
        .expect(1)
        .create();
    let client = Client::personal_access_token("pat-0f1e2d3c4b5a");
    assert_eq!(
        client.get(&format!("{}/api", server.url())).unwrap().status,
        401
    );
    api.assert();
    let t = client.token().unwrap();
    assert!(!client.invalidate(&t));
    assert_eq!(t.lifetime(), None);
    common::assert_clean(&format!("{client:?} {t:?}"));
}

#[test]
fn a_request_timeout_applies_to_that_request_only() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"tok-timeout-1","expires_in":3600}"#)
        .create();
    server
        .mock("GET", "/slow")
        .with_body_from_request(|_| {
            std::thread::sleep(Duration::from_millis(800));
            b"late".to_vec()
        })
        .create();
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "c",
            "cs+/=:secret-9f8e7d",
        ),
        opts().timeout(Duration::from_secs(10)),
    )
    .unwrap();
    let url = format!("{}/slow", server.url());
    let e =
        err(client.request_with_timeout("GET", &url, &[], &[], Some(Duration::from_millis(200))));
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    // The client's own deadline (10 s) still governs plain requests.
    let ok = client.get(&url).unwrap();
    assert_eq!(ok.body, b"late");
}

#[test]
fn renewal_helps_only_after_a_401_that_a_new_token_can_fix() {
    let renewable = Client::new(
        ClientCredentials::new("https://auth.example.com/token", "c", "cs+/=:secret-9f8e7d"),
        opts(),
    )
    .unwrap();
    assert!(renewable.renewal_helps(401, None));
    assert!(renewable.renewal_helps(401, Some(r#"Bearer error="invalid_token""#)));
    assert!(!renewable.renewal_helps(401, Some(r#"Bearer error="insufficient_scope""#)));
    assert!(!renewable.renewal_helps(403, None));
    assert!(!renewable.renewal_helps(200, None));
    // The header is parsed (RFC 9110 §11.6.1), not searched.
    for (challenge, helps) in [
        (r#"bearer ERROR=insufficient_scope"#, false),
        (r#"DPoP algs="ES256", error="insufficient_scope""#, false),
        (
            r#"Basic realm="x", Bearer realm="api", error="insufficient_scope""#,
            false,
        ),
        (
            r#"Bearer error="invalid_token", error_description="not insufficient_scope""#,
            true,
        ),
        (r#"Bearer error_description="insufficient_scope""#, true),
        (r#"Newauth error="insufficient_scope""#, true),
        (r#"Bearer realm="insufficient_scope""#, true),
        (r#"Bearer error="insufficient_scope_extra""#, true),
        ("Negotiate insufficient_scope==", true),
        (
            r#"Bearer error="invalid_token", Basic error="insufficient_scope""#,
            true,
        ),
    ] {
        assert_eq!(
            renewable.renewal_helps(401, Some(challenge)),
            helps,
            "{challenge}"
        );
    }
    let fixed = Client::personal_access_token("pat-value-123");
    assert!(
        !fixed.renewal_helps(401, None),
        "a static token cannot be renewed"
    );
}

#[test]
fn an_expiry_margin_applies_to_every_token_obtained() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#)
        .create();
    let client = authcore::Client::new(
        authcore::grant::ClientCredentials::new(format!("{}/token", server.url()), "id", "s"),
        opts().expiry_margin(std::time::Duration::from_secs(600)),
    )
    .unwrap();
    let token = client.token().unwrap();
    let left = token
        .expires_at()
        .unwrap()
        .saturating_duration_since(std::time::Instant::now());
    assert!(
        (2990..=3000).contains(&left.as_secs()),
        "expires in {left:?} with a 600 s margin"
    );
}

/// A token endpoint URL where nothing answers token requests (404 with a problem body,
/// an HTML page, 405): an unusable answer that says which endpoint answered what, never
/// an API problem (a refusal of the credentials); a real OAuth error at 404 stays one.
#[test]
fn a_wrong_token_endpoint_url_is_said_as_such_not_as_a_refusal() {
    for (status, content_type, body) in [
        (
            404,
            "application/json",
            r#"{"status":404,"title":"Not Found"}"#,
        ),
        (404, "text/html", "<html><body>Not Found</body></html>"),
        (405, "text/plain", "Method Not Allowed"),
    ] {
        let (server, m) = serve(status, content_type, body);
        let e = err(cc(&server).token());
        assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{status}: {e}");
        assert_eq!(e.http_status(), Some(status as u16));
        let host = server.host_with_port();
        let text = e.to_string();
        assert!(
            text.contains(&format!("the token endpoint at {host} answered {status}"))
                && text.contains("there is no token endpoint at that URL"),
            "{text}"
        );
        assert!(!text.contains("secret-9f8e7d"), "{text}");
        m.assert();
    }
    // Spring's and Keycloak's answers to an unknown path carry an "error" too: still no
    // such endpoint, not a refusal.
    for body in [
        r#"{"timestamp":"2026-12-06T12:00:00Z","status":404,"error":"Not Found","path":"/oauth/tokn"}"#,
        r#"{"error":"Unable to find matching target resource method"}"#,
        r#"{"error":"invalid_client"}"#,
    ] {
        let (server, _m) = serve(404, "application/json", body);
        let e = err(cc(&server).token());
        assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{body}: {e}");
    }
    let (server, _m) = serve(401, "application/json", r#"{"error":"invalid_client"}"#);
    assert_eq!(err(cc(&server).token()).kind(), ErrorKind::OAuth);
}

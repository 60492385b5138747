//! The development provider's HTTP control surface and protected resource.

use std::net::SocketAddr;

use authcore_cli::devserver::{Credentials, DevServer};
use serde_json::{json, Value};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn post(url: &str, body: Value) -> (u16, Value) {
    let mut r = agent().post(url).send_json(body).unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(Value::Null),
    )
}

/// A client credentials request with the credentials in the body.
fn token_response(base: &str, extra: &str) -> ureq::http::Response<ureq::Body> {
    agent()
        .post(format!("{base}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(format!(
            "grant_type=client_credentials&client_id=dev-client&client_secret=dev-secret{extra}"
        ))
        .unwrap()
}

fn token(base: &str) -> (u16, Value) {
    let mut r = token_response(base, "");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn get_api(base: &str, token: &str, path: &str) -> (u16, String) {
    let r = agent()
        .get(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), challenge)
}

#[test]
fn control_surface_drives_faults_revocation_and_counters() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let s = DevServer::start(addr, Credentials::default()).unwrap();
    let base = s.url();

    let (status, body) = post(
        &format!("{base}/_control/config"),
        json!({"lifetime_secs": 7}),
    );
    assert_eq!((status, body["lifetime_secs"].as_u64()), (200, Some(7)));
    let (_, t) = token(&base);
    assert_eq!(t["expires_in"], 7);
    assert!(t.get("refresh_token").is_none());
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get_api(&base, &access, "/api/x").0, 200);
    assert_eq!(
        get_api(&base, &access, "/api/admin").0,
        200,
        "default scopes include admin"
    );

    post(
        &format!("{base}/_control/fail"),
        json!({"count": 1, "status": 503, "retry_after": 2}),
    );
    let r = token_response(&base, "");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers().get("retry-after").unwrap(), "2");

    post(&format!("{base}/_control/malformed"), json!({"count": 1}));
    let mut r = token_response(&base, "");
    assert!(r.body_mut().read_to_string().unwrap().starts_with("<html>"));

    post(&format!("{base}/_control/revoke"), json!({}));
    let (status, challenge) = get_api(&base, &access, "/api/x");
    assert_eq!(status, 401);
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );

    let counters: Value = agent()
        .get(format!("{base}/_control/counters"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(counters["token_requests"], 3);
    assert_eq!(counters["faults_injected"], 2);
    assert_eq!(counters["tokens_issued"], 1);
    assert_eq!(counters["resource_accepted"], 2);
    assert_eq!(counters["resource_rejected_invalid"], 1);
    assert_eq!(
        counters["token_requests_by_grant"]["oauth2/client_credentials"],
        3
    );

    post(&format!("{base}/_control/reset"), json!({}));
    assert_eq!(s.counters().token_requests, 0);
    let (status, body) = post(&format!("{base}/_control/fail"), json!({"status": "x"}));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn expired_tokens_and_scopes_are_enforced() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let s = DevServer::start(addr, Credentials::default()).unwrap();
    let base = s.url();
    post(
        &format!("{base}/_control/config"),
        json!({"lifetime_secs": 1}),
    );
    let t: Value = token_response(&base, "&scope=campaigns%3Aread")
        .body_mut()
        .read_json()
        .unwrap();
    let access = t["access_token"].as_str().unwrap().to_owned();
    let (status, challenge) = get_api(&base, &access, "/api/admin");
    assert_eq!(status, 403);
    assert!(challenge.contains("insufficient_scope"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(get_api(&base, &access, "/api/x").0, 401);
    assert_eq!(s.counters().resource_rejected_expired, 1);
}

#[test]
fn non_loopback_addresses_are_refused() {
    let addr: SocketAddr = "0.0.0.0:0".parse().unwrap();
    assert!(DevServer::start(addr, Credentials::default()).is_err());
}

fn post_raw(url: &str, content_type: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = agent().post(url).header("content-type", content_type);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send(body).unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(Value::Null),
    )
}

#[test]
fn token_endpoints_insist_on_their_content_types() {
    let server = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = server.url();
    let form = "application/x-www-form-urlencoded";
    let (status, body) = post_raw(
        &format!("{base}/auth/api-key"),
        form,
        "apiKey=dev-api-key",
        &[],
    );
    assert_eq!(status, 415);
    assert_eq!(
        body["name"], "unsupported-media-type",
        "api.video problems carry name"
    );
    let (status, _) = post_raw(
        &format!("{base}/oauth/token"),
        form,
        "grant_type=client_credentials",
        &[],
    );
    assert_eq!(status, 415);
    let (status, body) = post_raw(
        &format!("{base}/oauth2/token"),
        "application/json",
        r#"{"grant_type":"client_credentials"}"#,
        &[],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("invalid_request"))
    );
    let (status, body) = post(&format!("{base}/auth/api-key"), json!({"apiKey": "wrong"}));
    assert_eq!(status, 401);
    assert_eq!(body["name"], "authentication-invalid-api-key");
}

#[test]
fn vibe_mode_wants_basic_auth_and_the_revision_header_and_answers_in_its_envelope() {
    let server = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = server.url();
    let (status, _) = post(&format!("{base}/_control/config"), json!({"vibe": true}));
    assert_eq!(status, 200);
    // Credentials in the body are refused in Vibe mode.
    let (status, body) = token(&base);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "dev-client:dev-secret"
        )
    );
    let (status, body) = post_raw(
        &format!("{base}/oauth2/token"),
        "application/x-www-form-urlencoded",
        "grant_type=client_credentials",
        &[("authorization", &basic)],
    );
    assert_eq!(status, 200);
    let at = body["access_token"].as_str().unwrap().to_owned();
    let call = |revision: Option<&str>| {
        let mut req = agent()
            .get(format!("{base}/api/resource"))
            .header("authorization", format!("Bearer {at}"));
        if let Some(r) = revision {
            req = req.header("x-vibe-revision", r);
        }
        let mut r = req.call().unwrap();
        (
            r.status().as_u16(),
            r.body_mut().read_json::<Value>().unwrap_or(Value::Null),
        )
    };
    let (status, body) = call(None);
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["type"], "invalid_request",
        "Vibe's envelope: {body}"
    );
    assert_eq!(call(Some("2025-01")).0, 200);
}

#[test]
fn reusing_a_rotated_refresh_token_revokes_its_whole_family() {
    let server = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = server.url();
    let (_, first) = post(
        &format!("{base}/auth/api-key"),
        json!({"apiKey": "dev-api-key"}),
    );
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = post(
        &format!("{base}/auth/refresh"),
        json!({"refreshToken": rt1}),
    );
    assert_eq!(status, 200);
    let at2 = second["access_token"].as_str().unwrap().to_owned();
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(get_api(&base, &at2, "/api/resource").0, 200);
    // The rotated-away token comes back: someone holds a copy it should not have.
    let (status, _) = post(
        &format!("{base}/auth/refresh"),
        json!({"refreshToken": rt1}),
    );
    assert_eq!(status, 400);
    assert_eq!(
        get_api(&base, &at2, "/api/resource").0,
        401,
        "family revoked"
    );
    let (status, _) = post(
        &format!("{base}/auth/refresh"),
        json!({"refreshToken": rt2}),
    );
    assert_eq!(
        status, 400,
        "the newest refresh token of the family is revoked too"
    );
}

#[test]
fn control_refuses_foreign_hosts_and_origins_and_settings_out_of_range() {
    let server = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = server.url();
    let counters = format!("{base}/_control/counters");
    let status = |headers: &[(&str, &str)]| {
        let mut req = agent().get(&counters);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.call().unwrap().status().as_u16()
    };
    assert_eq!(status(&[]), 200);
    assert_eq!(status(&[("origin", "http://localhost:3000")]), 200);
    assert_eq!(status(&[("origin", "https://evil.example")]), 403);
    assert_eq!(status(&[("host", "evil.example")]), 403);
    assert_eq!(status(&[("host", "127.0.0.1.nip.example:80")]), 403);
    let (status, _) = post(
        &format!("{base}/_control/config"),
        json!({"lifetime_secs": u64::MAX}),
    );
    assert_eq!(status, 400);
    let (status, _) = post(
        &format!("{base}/_control/config"),
        json!({"latency_ms": u64::MAX}),
    );
    assert_eq!(status, 400);
    let (status, body) = token(&base);
    assert_eq!(
        (status, body["expires_in"].as_u64()),
        (200, Some(3600)),
        "unchanged"
    );
}

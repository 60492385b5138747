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

/// A refresh request for `rt` at the standard endpoint, labelled for the journal.
fn refresh(base: &str, rt: &str, label: &str) -> (u16, Value) {
    post_raw(
        &format!("{base}/oauth2/token"),
        "application/x-www-form-urlencoded",
        &format!("grant_type=refresh_token&refresh_token={rt}&client_id=dev-client&client_secret=dev-secret"),
        &[("x-journal-label", label)],
    )
}

/// The claims of an HS256 JWT (its signature is not checked here).
fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS in compact form");
    let decode = |p: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap()
    };
    let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap();
    assert_eq!(header["alg"], "HS256");
    serde_json::from_slice(&decode(parts[1])).unwrap()
}

#[test]
fn users_own_their_families_and_the_journal_records_everything_by_tag() {
    use authcore_cli::devserver::{tag, Event, ResourceOutcome, TokenOutcome};
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = s.url();
    let (status, alice) = post(&format!("{base}/_control/session"), json!({"sub": "alice"}));
    assert_eq!(status, 200, "{alice}");
    let claims = jwt_claims(alice["id_token"].as_str().unwrap());
    assert_eq!(
        (&claims["sub"], &claims["aud"], &claims["iss"]),
        (&json!("alice"), &json!("dev-client"), &json!(base))
    );
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    let bob = s.session("bob", Some("campaigns:read"), None);
    assert!(
        bob.get("id_token").is_none(),
        "no openid scope, no ID token"
    );

    // The API names whose token it is.
    let at = alice["access_token"].as_str().unwrap();
    let r = agent()
        .get(format!("{base}/api/me"))
        .header("authorization", format!("Bearer {at}"))
        .header("x-journal-label", "c1")
        .call()
        .unwrap();
    assert_eq!(r.headers().get("x-sub").unwrap(), "alice");

    // Rotation keeps the subject; the ID token comes again.
    let rt = alice["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = refresh(&base, &rt, "c1");
    assert_eq!(status, 200);
    assert_eq!(
        jwt_claims(second["id_token"].as_str().unwrap())["sub"],
        "alice"
    );
    // Presented again: reuse detected.
    assert_eq!(refresh(&base, &rt, "c2").0, 400);

    // An injected refusal kills the refresh token presented.
    let bob_rt = bob["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = post(
        &format!("{base}/_control/fail"),
        json!({"count": 1, "status": 400, "error": "invalid_grant", "grant": "refresh_token"}),
    );
    assert_eq!(status, 200);
    let (status, body) = token(&base);
    assert_eq!(
        status, 200,
        "client credentials pass a refresh-only fault: {body}"
    );
    assert_eq!(refresh(&base, &bob_rt, "c3").1["error"], "invalid_grant");
    assert_eq!(refresh(&base, &bob_rt, "c3").0, 400, "dead for good");

    // A user's whole grant ends at once.
    let carol1 = s.session("carol", None, None);
    let carol2 = s.session("carol", None, None);
    let families = s.revoke_grant("carol");
    assert_eq!(families.len(), 2);
    for c in [&carol1, &carol2] {
        let rt = c["refresh_token"].as_str().unwrap();
        assert_eq!(refresh(&base, rt, "c4").0, 400);
    }
    // One access token by its tag.
    let dave = s.session("dave", None, None);
    let dave_at = dave["access_token"].as_str().unwrap();
    let (status, body) = post(
        &format!("{base}/_control/revoke_token"),
        json!({"tag": tag(dave_at)}),
    );
    assert_eq!((status, body["kind"].as_str()), (200, Some("access_token")));
    assert_eq!(get_api(&base, dave_at, "/api/x").0, 401);

    let journal = s.journal(0);
    let text = serde_json::to_string(&journal).unwrap();
    for secret in [at, rt.as_str(), bob_rt.as_str(), dave_at] {
        assert!(!text.contains(secret), "tags only, never tokens");
    }
    let seqs: Vec<u64> = journal.events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let tokens: Vec<_> = journal
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Token {
                presented,
                outcome,
                sub,
                injected,
                ..
            } => Some((
                e.label.clone(),
                presented.clone(),
                *outcome,
                sub.clone(),
                *injected,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        tokens[0],
        (
            Some("c1".into()),
            Some(tag(&rt)),
            TokenOutcome::Issued,
            Some("alice".into()),
            false
        )
    );
    assert_eq!(
        tokens[1],
        (
            Some("c2".into()),
            Some(tag(&rt)),
            TokenOutcome::ReuseDetected,
            Some("alice".into()),
            false
        )
    );
    assert_eq!(tokens[2].2, TokenOutcome::Issued, "client credentials");
    assert_eq!(tokens[2].3.as_deref(), Some("dev-client"));
    assert_eq!(
        (tokens[3].2, tokens[3].4),
        (TokenOutcome::Refused, true),
        "the injected refusal"
    );
    assert_eq!((tokens[4].2, tokens[4].4), (TokenOutcome::Refused, false));
    let resource = journal
        .events
        .iter()
        .find_map(|e| match &e.event {
            Event::Resource {
                token,
                sub,
                outcome,
                ..
            } => Some((e.label.clone(), token.clone(), sub.clone(), *outcome)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        resource,
        (
            Some("c1".into()),
            Some(tag(at)),
            Some("alice".into()),
            ResourceOutcome::Accepted
        )
    );
    assert!(journal.events.iter().any(|e| matches!(&e.event,
        Event::GrantRevoked { sub, families: f } if sub == "carol" && *f == families)));
    assert!(journal.events.iter().any(|e| matches!(&e.event,
        Event::FaultArmed { kind, count: 1, .. } if kind == "fail")));
    // Served over HTTP too, from a point on; cleared by reset.
    let last = journal.events.last().unwrap().seq;
    let mut r = agent()
        .get(format!("{base}/_control/journal?since={}", last - 1))
        .call()
        .unwrap();
    let tail: Value = r.body_mut().read_json().unwrap();
    assert_eq!(tail["events"].as_array().unwrap().len(), 1);
    s.reset();
    assert!(s.journal(0).events.is_empty());
}

#[test]
fn a_code_sign_in_belongs_to_its_login_hint() {
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = s.url();
    let code = authorize_code(
        &base,
        "client_id=dev-client&response_type=code&redirect_uri=http://127.0.0.1:9/cb&scope=openid&login_hint=erin",
    );
    let (status, body) = post_raw(
        &format!("{base}/oauth2/token"),
        "application/x-www-form-urlencoded",
        &format!("grant_type=authorization_code&code={code}&redirect_uri=http://127.0.0.1:9/cb&client_id=dev-client&client_secret=dev-secret"),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        jwt_claims(body["id_token"].as_str().unwrap())["sub"],
        "erin"
    );
}

#[test]
fn the_redirect_endpoint_leads_to_loopback_urls_only() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let s = DevServer::start(addr, Credentials::default()).unwrap();
    let base = s.url();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let redirect = |query: &str| {
        let r = agent
            .get(format!("{base}/api/redirect?{query}"))
            .call()
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), location)
    };
    let to = "http://localhost:9/api/resource";
    assert_eq!(
        redirect(&format!("to={}", urlencode(to))),
        (302, Some(to.to_owned()))
    );
    let to = "https://[::1]:8443/x?y=1";
    assert_eq!(
        redirect(&format!("status=307&to={}", urlencode(to))),
        (307, Some(to.to_owned()))
    );
    for bad in [
        "to=https%3A%2F%2Fexample.com%2F",
        "to=ftp%3A%2F%2F127.0.0.1%2F",
        "to=not-a-url",
        "",
        "status=200&to=http%3A%2F%2F127.0.0.1%2F",
    ] {
        assert_eq!(redirect(bad), (400, None), "{bad}");
    }
    let journal = s.journal(0);
    let outcomes: Vec<_> = journal
        .events
        .iter()
        .filter_map(|e| match &e.event {
            authcore_cli::devserver::Event::Resource { path, outcome, .. } => {
                Some((path.clone(), *outcome))
            }
            _ => None,
        })
        .collect();
    assert_eq!(outcomes.len(), 7);
    assert!(outcomes[..2]
        .iter()
        .all(|(p, o)| p == "/api/redirect"
            && *o == authcore_cli::devserver::ResourceOutcome::Redirected));
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The code in the redirect the authorize endpoint answers `query` with.
fn authorize_code(base: &str, query: &str) -> String {
    let no_redirects: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let r = no_redirects
        .get(format!("{base}/oauth2/authorize?{query}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 302, "{query}");
    let location = r.headers().get("location").unwrap().to_str().unwrap();
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned()
}

fn form(base: &str, body: &str) -> (u16, Value) {
    post_raw(
        &format!("{base}/oauth2/token"),
        "application/x-www-form-urlencoded",
        body,
        &[],
    )
}

#[test]
fn the_public_client_signs_in_with_pkce_or_a_device_code_and_no_secret() {
    use base64::Engine;
    use sha2::Digest;
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = s.url();
    let public = &s.credentials().public_client_id;
    assert_eq!(public, "dev-cli");
    let redirect = "http://127.0.0.1:9/cb";
    let verifier = "a-code-verifier-of-enough-length-0123456789abcdef";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let pkce = format!("code_challenge={challenge}&code_challenge_method=S256");

    // The code grant with PKCE, the client id in the body, no secret anywhere.
    let code = authorize_code(
        &base,
        &format!(
            "client_id={public}&response_type=code&redirect_uri={redirect}&scope=openid&{pkce}"
        ),
    );
    let (status, body) = form(
        &base,
        &format!("grant_type=authorization_code&code={code}&redirect_uri={redirect}&client_id={public}&code_verifier={verifier}"),
    );
    assert_eq!(status, 200, "{body}");
    let claims = jwt_claims(body["id_token"].as_str().unwrap());
    assert_eq!(
        (&claims["aud"], &claims["sub"]),
        (&json!(public), &json!("dev-user"))
    );
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, refreshed) = form(
        &base,
        &format!("grant_type=refresh_token&refresh_token={rt}&client_id={public}"),
    );
    assert_eq!(status, 200, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(get_api(&base, access, "/api/x").0, 200);

    // Without PKCE, with a secret, for client credentials, or with another client's
    // code: refused.
    let code = authorize_code(
        &base,
        &format!("client_id={public}&response_type=code&redirect_uri={redirect}"),
    );
    let (status, body) = form(
        &base,
        &format!(
            "grant_type=authorization_code&code={code}&redirect_uri={redirect}&client_id={public}"
        ),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = form(
        &base,
        &format!("grant_type=client_credentials&client_id={public}"),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = form(
        &base,
        &format!(
            "grant_type=refresh_token&refresh_token=x&client_id={public}&client_secret=dev-secret"
        ),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let code = authorize_code(
        &base,
        &format!("client_id={public}&response_type=code&redirect_uri={redirect}&{pkce}"),
    );
    let (status, body) = form(
        &base,
        &format!("grant_type=authorization_code&code={code}&redirect_uri={redirect}&client_id=dev-client&client_secret=dev-secret&code_verifier={verifier}"),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let code = authorize_code(
        &base,
        &format!("client_id=dev-client&response_type=code&redirect_uri={redirect}&{pkce}"),
    );
    let (status, body) = form(
        &base,
        &format!("grant_type=authorization_code&code={code}&redirect_uri={redirect}&client_id={public}&code_verifier={verifier}"),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // The device grant: the provider approves by itself after one pending poll.
    let (status, device) = post_raw(
        &format!("{base}/oauth2/device"),
        "application/x-www-form-urlencoded",
        &format!("client_id={public}&scope=openid"),
        &[],
    );
    assert_eq!(status, 200, "{device}");
    let device_code = device["device_code"].as_str().unwrap();
    let poll = || {
        form(
            &base,
            &format!("grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code={device_code}&client_id={public}"),
        )
    };
    assert_eq!(poll().1["error"], "authorization_pending");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let (status, body) = poll();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        jwt_claims(body["id_token"].as_str().unwrap())["aud"],
        json!(public)
    );
    let public_rt = body["refresh_token"].as_str().unwrap().to_owned();

    // Each client redeems and revokes only what was issued to it (RFC 6749 §6, RFC 8628
    // §3.4, RFC 7009 §2.1): the confidential client's device code and refresh token are
    // refused to the public client, and the public client's refresh token to the
    // confidential one; a refused refresh token stays usable by its own client.
    let (_, device) = post_raw(
        &format!("{base}/oauth2/device"),
        "application/x-www-form-urlencoded",
        "client_id=dev-client&client_secret=dev-secret&scope=openid",
        &[],
    );
    let confidential_device = device["device_code"].as_str().unwrap().to_owned();
    let (status, body) = form(
        &base,
        &format!("grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code={confidential_device}&client_id={public}"),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let code = authorize_code(
        &base,
        &format!("client_id=dev-client&response_type=code&redirect_uri={redirect}&scope=openid"),
    );
    let (status, body) = form(
        &base,
        &format!("grant_type=authorization_code&code={code}&redirect_uri={redirect}&client_id=dev-client&client_secret=dev-secret"),
    );
    assert_eq!(status, 200, "{body}");
    let confidential_rt = body["refresh_token"].as_str().unwrap().to_owned();
    for (rt, who) in [
        (&confidential_rt, format!("client_id={public}")),
        (
            &public_rt,
            "client_id=dev-client&client_secret=dev-secret".to_owned(),
        ),
    ] {
        let (status, body) = form(
            &base,
            &format!("grant_type=refresh_token&refresh_token={rt}&{who}"),
        );
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
        let (status, body) = post_raw(
            &format!("{base}/oauth2/revoke"),
            "application/x-www-form-urlencoded",
            &format!("token={rt}&{who}"),
            &[],
        );
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unauthorized_client")),
            "{body}"
        );
    }
    let (status, body) = form(
        &base,
        &format!("grant_type=refresh_token&refresh_token={public_rt}&client_id={public}"),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = form(
        &base,
        &format!("grant_type=refresh_token&refresh_token={confidential_rt}&client_id=dev-client&client_secret=dev-secret"),
    );
    assert_eq!(status, 200, "{body}");

    let metadata: Value = agent()
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert!(metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("none")));
}

#[test]
fn the_verification_uri_is_a_page_saying_the_provider_decides_by_itself() {
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = s.url();
    let (status, device) = post_raw(
        &format!("{base}/oauth2/device"),
        "application/x-www-form-urlencoded",
        "client_id=dev-cli",
        &[],
    );
    assert_eq!(status, 200, "{device}");
    let page = |url: &str| {
        let mut r = agent().get(url).call().unwrap();
        let kind = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        (
            r.status().as_u16(),
            kind,
            r.body_mut().read_to_string().unwrap(),
        )
    };
    for url in ["verification_uri", "verification_uri_complete"] {
        let (status, kind, text) = page(device[url].as_str().unwrap());
        assert_eq!(status, 200, "{url}");
        assert_eq!(kind.as_deref(), Some("text/html; charset=utf-8"));
        assert!(
            text.contains("decides every device code by itself"),
            "{text}"
        );
        assert!(text.contains("then approves it"), "{text}");
    }
    // What the page says follows the behaviour, and it never echoes the query.
    post(
        &format!("{base}/_control/config"),
        json!({"device_deny": true, "device_pending_polls": 3}),
    );
    let (_, _, text) = page(&format!(
        "{base}/device?user_code=%3Cscript%3Ex%3C%2Fscript%3E"
    ));
    assert!(
        text.contains("first 3 poll(s)") && text.contains("denies it"),
        "{text}"
    );
    assert!(!text.contains("<script>"), "{text}");
}

/// A revocation request (RFC 7009) for `token` with the caller's credentials `who`.
fn revoke_as(base: &str, token: &str, who: &str) -> (u16, Value) {
    post_raw(
        &format!("{base}/oauth2/revoke"),
        "application/x-www-form-urlencoded",
        &format!("token={}&{who}", urlencode(token)),
        &[],
    )
}

#[test]
fn a_client_revokes_only_the_access_tokens_issued_to_it() {
    use base64::Engine;
    use sha2::Digest;
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = s.url();
    let confidential = "client_id=dev-client&client_secret=dev-secret";
    let public = "client_id=dev-cli";
    // The confidential client's tokens: client credentials, and a user's session.
    let (_, t) = token(&base);
    let service = t["access_token"].as_str().unwrap().to_owned();
    let session = s.session("alice", None, None)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The public client's: a code sign-in with PKCE.
    let (redirect, verifier) = (
        "http://127.0.0.1:9/cb",
        "a-verifier-of-enough-length-0123456789abc",
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let code = authorize_code(
        &base,
        &format!("client_id=dev-cli&response_type=code&redirect_uri={redirect}&code_challenge={challenge}&code_challenge_method=S256"),
    );
    let (status, body) = form(
        &base,
        &format!("grant_type=authorization_code&code={code}&redirect_uri={redirect}&{public}&code_verifier={verifier}"),
    );
    assert_eq!(status, 200, "{body}");
    let signed_in = body["access_token"].as_str().unwrap().to_owned();

    // Another client's access token: refused, and it stays valid.
    for (access, who) in [
        (&service, public),
        (&session, public),
        (&signed_in, confidential),
    ] {
        let (status, body) = revoke_as(&base, access, who);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unauthorized_client")),
            "{who}: {body}"
        );
        assert_eq!(get_api(&base, access, "/api/x").0, 200, "{who}");
    }
    assert_eq!(s.counters().revocations, 0);
    assert!(!s
        .journal(0)
        .events
        .iter()
        .any(|e| matches!(e.event, authcore_cli::devserver::Event::Revocation { .. })));

    // Its own: revoked. An unknown token: success, as RFC 7009 §2.2 has it.
    for (access, who) in [(&service, confidential), (&signed_in, public)] {
        assert_eq!(revoke_as(&base, access, who).0, 200, "{who}");
        assert_eq!(get_api(&base, access, "/api/x").0, 401, "{who}");
    }
    assert_eq!(revoke_as(&base, "dev-at-unknown", public).0, 200);

    // In DPoP mode the confidential client may come without its secret (a public
    // client): still itself, so the session's token is its own.
    assert_eq!(
        post(&format!("{base}/_control/config"), json!({"dpop": true})).0,
        200
    );
    assert_eq!(revoke_as(&base, &session, "client_id=dev-client").0, 200);
    assert_eq!(get_api(&base, &session, "/api/x").0, 401);
}

#[test]
fn config_refuses_a_field_it_does_not_know_and_names_it() {
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = s.url();
    let config = format!("{base}/_control/config");
    let (status, body) = post(&config, json!({"lifetime_secs": 7}));
    assert_eq!((status, body["lifetime_secs"].as_u64()), (200, Some(7)));
    for (sent, field) in [
        (
            json!({"lifetime_secs": 60, "dpop_requird": true}),
            "dpop_requird",
        ),
        (json!({"lifetime": 60}), "lifetime"),
        (
            json!({"mtls_clients": [{"client_id": "x", "x5t#S256": "abc", "subject": "CN=x"}]}),
            "subject",
        ),
    ] {
        let (status, body) = post(&config, sent.clone());
        let title = body["title"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{sent}: {body}");
        assert!(
            title.contains(&format!("unknown field `{field}`")),
            "{sent}: {title}"
        );
    }
    // Nothing of a refused body was taken.
    let (status, t) = token(&base);
    assert_eq!((status, t["expires_in"].as_u64()), (200, Some(7)));
    // Known fields only, for every one of them: the whole configuration as answered is
    // taken back as it is.
    let (_, whole) = post(&config, json!({}));
    assert_eq!(post(&config, whole.clone()), (200, whole));
}

#[test]
fn a_public_client_id_with_a_failed_assertion_is_refused_not_taken_for_the_confidential_client() {
    let s = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = s.url();
    let (_, t) = token(&base);
    let service = t["access_token"].as_str().unwrap().to_owned();
    let (status, body) = revoke_as(&base, &service, "client_id=dev-cli&client_assertion=x");
    assert_eq!(status, 401, "{body}");
    assert_eq!(get_api(&base, &service, "/api/x").0, 200);
}

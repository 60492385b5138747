//! Workloads without secrets on the wire: client assertions from a source (RFC 7523
//! §2.2), read for every request and once more after a refusal, never sent expired.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use authcore::grant::{ClientCredentials, JwtBearer};
use authcore::{AssertionSource, Client, ErrorKind, Secret};
use common::{err, opts};

const TOKEN: &str = r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600}"#;
const REFUSED: &str = r#"{"error":"invalid_client","error_description":"assertion expired"}"#;

/// The form bodies the server saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

fn param(body: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A token endpoint that answers a token (or, with a 200, an error to the assertions in
/// `refused`) and records every body.
fn endpoint(server: &mut mockito::Server, refused: &'static [&'static str]) -> Seen {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    server
        .mock("POST", "/token")
        .with_header("content-type", "application/json")
        .with_body_from_request(move |request| {
            let body = String::from_utf8_lossy(request.body().unwrap()).into_owned();
            let assertion = param(&body, "client_assertion").unwrap_or_default();
            log.lock().unwrap().push(body);
            if refused.contains(&assertion.as_str()) {
                REFUSED.into()
            } else {
                TOKEN.into()
            }
        })
        .expect_at_least(0)
        .create();
    seen
}

/// A token endpoint that answers 401 `invalid_client` to the assertions in `refused`
/// (recording those requests) and a token to anything else.
fn refusing_endpoint(server: &mut mockito::Server, refused: &'static [&'static str]) -> Seen {
    let seen: Seen = Arc::default();
    // Everything else is accepted (mockito tries the newest mock first).
    endpoint(server, &[]);
    for &value in refused {
        let log = Arc::clone(&seen);
        server
            .mock("POST", "/token")
            .match_body(mockito::Matcher::UrlEncoded(
                "client_assertion".into(),
                value.into(),
            ))
            .with_status(401)
            .with_header("content-type", "application/json")
            .with_body_from_request(move |request| {
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(request.body().unwrap()).into_owned());
                REFUSED.into()
            })
            .expect_at_least(0)
            .create();
    }
    seen
}

fn assertion_client(url: &str, source: AssertionSource) -> Client {
    let grant =
        ClientCredentials::new(format!("{url}/token"), "workload", "").client_assertion(source);
    Client::new(grant, opts()).unwrap()
}

#[test]
fn the_client_assertion_comes_from_the_source_with_its_type() {
    let mut server = mockito::Server::new();
    let seen = endpoint(&mut server, &[]);
    let client = assertion_client(&server.url(), AssertionSource::literal("federated-jwt"));
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-1"
    );
    let bodies = seen.lock().unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        param(&bodies[0], "client_assertion").as_deref(),
        Some("federated-jwt")
    );
    assert_eq!(
        param(&bodies[0], "client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    assert_eq!(param(&bodies[0], "client_id").as_deref(), Some("workload"));
    assert_eq!(param(&bodies[0], "client_secret"), None);
}

#[test]
fn a_refused_assertion_is_read_again_once_and_a_new_one_sent() {
    let mut server = mockito::Server::new();
    let seen = refusing_endpoint(&mut server, &["stale"]);
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&reads);
    let source = AssertionSource::callback(move || {
        // The first read gives the stale value; the source is rewritten before the second.
        Ok(Secret::new(
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                "stale"
            } else {
                "fresh"
            },
        ))
    });
    let client = assertion_client(&server.url(), source);
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-1"
    );
    assert_eq!(reads.load(Ordering::SeqCst), 2);
    let stats = client.stats();
    assert_eq!(stats.token_requests(), 2, "{stats:?}");
    let refused = seen.lock().unwrap();
    assert_eq!(refused.len(), 1, "the stale assertion was sent once");
}

#[test]
fn an_unchanged_source_is_not_sent_twice() {
    let mut server = mockito::Server::new();
    let seen = refusing_endpoint(&mut server, &["stale"]);
    let client = assertion_client(
        &server.url(),
        AssertionSource::callback(|| Ok("stale".into())),
    );
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::OAuth);
    assert!(!e.to_string().contains("stale"), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1, "refused once, not resent");
    assert_eq!(client.stats().token_requests(), 1);
}

#[test]
fn a_missing_file_fails_clearly_and_sends_nothing() {
    let mut server = mockito::Server::new();
    let seen = endpoint(&mut server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projected-token");
    let client = assertion_client(&server.url(), AssertionSource::file(&path));
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("projected-token"), "{e}");
    assert!(seen.lock().unwrap().is_empty());
    // Written later (the kubelet caught up): the next call uses it.
    std::fs::write(&path, "projected\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-1"
    );
    let bodies = seen.lock().unwrap();
    assert_eq!(
        param(bodies.last().unwrap(), "client_assertion").as_deref(),
        Some("projected")
    );
}

#[test]
fn the_store_key_names_the_file_never_the_assertion() {
    let grant = ClientCredentials::new("https://idp.example/token", "workload", "")
        .client_assertion(AssertionSource::file("/var/run/secrets/token"));
    let store = || Arc::new(authcore::MemoryStore::new());
    let client = Client::new(grant, opts().store(store())).unwrap();
    let key = client.store_key().expect("a client credential has a key");
    let text = format!("{key:?}");
    assert!(text.contains("/var/run/secrets/token"), "{text}");
    let literal = ClientCredentials::new("https://idp.example/token", "workload", "")
        .client_assertion(AssertionSource::literal("the-secret-jwt"));
    let key = Client::new(literal, opts().store(store()))
        .unwrap()
        .store_key()
        .unwrap();
    assert!(!format!("{key:?}").contains("the-secret-jwt"));
}

// The JWT bearer grant (RFC 7523 §2.1).

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The claims of a JWT, unverified.
fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

/// A token endpoint that answers a token (or 400 `invalid_grant` to the assertions in
/// `refused`) and records every body.
fn bearer_endpoint(server: &mut mockito::Server, refused: &'static [&'static str]) -> Seen {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    server
        .mock("POST", "/token")
        .with_header("content-type", "application/json")
        .with_body_from_request(move |request| {
            let body = String::from_utf8_lossy(request.body().unwrap()).into_owned();
            log.lock().unwrap().push(body);
            TOKEN.into()
        })
        .expect_at_least(0)
        .create();
    for &value in refused {
        let log = Arc::clone(&seen);
        server
            .mock("POST", "/token")
            .match_body(mockito::Matcher::UrlEncoded(
                "assertion".into(),
                value.into(),
            ))
            .with_status(400)
            .with_header("content-type", "application/json")
            .with_body_from_request(move |request| {
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(request.body().unwrap()).into_owned());
                r#"{"error":"invalid_grant","error_description":"assertion expired"}"#.into()
            })
            .expect_at_least(0)
            .create();
    }
    seen
}

fn signing_key() -> authcore::grant::PrivateKey {
    let key = rcgen::KeyPair::generate().unwrap();
    authcore::grant::PrivateKey::from_pem(key.serialize_pem().as_bytes(), None).unwrap()
}

#[test]
fn a_jwt_bearer_grant_sends_the_assertion_from_its_source() {
    let mut server = mockito::Server::new();
    let seen = bearer_endpoint(&mut server, &[]);
    let grant = JwtBearer::new(
        format!("{}/token", server.url()),
        AssertionSource::literal("issued-elsewhere"),
    )
    .scopes(["read", "write"])
    .resources(["https://api.example/"]);
    let client = Client::new(grant, opts()).unwrap();
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-1"
    );
    let bodies = seen.lock().unwrap();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(param(body, "grant_type").as_deref(), Some(JWT_BEARER));
    assert_eq!(
        param(body, "assertion").as_deref(),
        Some("issued-elsewhere")
    );
    assert_eq!(param(body, "scope").as_deref(), Some("read write"));
    assert_eq!(
        param(body, "resource").as_deref(),
        Some("https://api.example/")
    );
    // No client authentication unless asked for.
    assert_eq!(param(body, "client_id"), None);
    assert_eq!(param(body, "client_assertion"), None);
}

#[test]
fn a_signed_jwt_bearer_assertion_names_issuer_subject_and_audience_and_is_signed_per_attempt() {
    let mut server = mockito::Server::new();
    let seen: Seen = Arc::default();
    // The first attempt meets a transient failure; the second is answered (mockito
    // takes the first mock not yet used up).
    let log = Arc::clone(&seen);
    let unavailable = server
        .mock("POST", "/token")
        .with_status(503)
        .with_body_from_request(move |request| {
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(request.body().unwrap()).into_owned());
            Vec::new()
        })
        .expect(1)
        .create();
    let log = Arc::clone(&seen);
    let ok = server
        .mock("POST", "/token")
        .with_header("content-type", "application/json")
        .with_body_from_request(move |request| {
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(request.body().unwrap()).into_owned());
            TOKEN.into()
        })
        .expect(1)
        .create();
    let token_url = format!("{}/token", server.url());
    let grant = JwtBearer::signed(&token_url, signing_key(), "svc@project.example", "user-42");
    let client = Client::new(grant, opts()).unwrap();
    client.token().unwrap();
    unavailable.assert();
    ok.assert();
    let bodies = seen.lock().unwrap();
    assert_eq!(bodies.len(), 2);
    let mut jtis = Vec::new();
    for body in bodies.iter() {
        assert_eq!(param(body, "grant_type").as_deref(), Some(JWT_BEARER));
        let c = claims(&param(body, "assertion").unwrap());
        assert_eq!(c["iss"], "svc@project.example");
        assert_eq!(c["sub"], "user-42");
        assert_eq!(c["aud"], token_url.as_str());
        assert!(c["exp"].as_u64().unwrap() > c["iat"].as_u64().unwrap());
        jtis.push(c["jti"].as_str().unwrap().to_owned());
    }
    assert_ne!(jtis[0], jtis[1], "each attempt signs its own assertion");
}

#[test]
fn a_signed_jwt_bearer_assertion_takes_another_audience() {
    let mut server = mockito::Server::new();
    let seen = bearer_endpoint(&mut server, &[]);
    let grant = JwtBearer::signed(
        format!("{}/token", server.url()),
        signing_key(),
        "svc",
        "svc",
    )
    .audience("https://issuer.example");
    Client::new(grant, opts()).unwrap().token().unwrap();
    let body = &seen.lock().unwrap()[0];
    assert_eq!(
        claims(&param(body, "assertion").unwrap())["aud"],
        "https://issuer.example"
    );
}

#[test]
fn a_refused_jwt_bearer_assertion_file_is_read_again_once() {
    let mut server = mockito::Server::new();
    let seen = bearer_endpoint(&mut server, &["stale-grant"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "stale-grant\n").unwrap();
    let grant = JwtBearer::new(
        format!("{}/token", server.url()),
        AssertionSource::file(&path),
    );
    let client = Client::new(grant, opts()).unwrap();
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::OAuth);
    assert_eq!(seen.lock().unwrap().len(), 1, "unchanged: not resent");
    // Rewritten: the next renewal sends the new one.
    std::fs::write(&path, "fresh-grant\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-1"
    );
    let bodies = seen.lock().unwrap();
    assert_eq!(
        param(bodies.last().unwrap(), "assertion").as_deref(),
        Some("fresh-grant")
    );
    assert_eq!(
        bodies
            .iter()
            .filter(|b| param(b, "assertion").as_deref() == Some("stale-grant"))
            .count(),
        1,
        "the refused assertion was sent once"
    );
}

#[test]
fn a_jwt_bearer_grant_authenticates_the_client_with_a_federated_assertion() {
    let mut server = mockito::Server::new();
    let seen = bearer_endpoint(&mut server, &[]);
    let grant = JwtBearer::new(
        format!("{}/token", server.url()),
        AssertionSource::literal("the-grant"),
    )
    .client("workload", "")
    .client_assertion(AssertionSource::literal("the-client-assertion"));
    Client::new(grant, opts()).unwrap().token().unwrap();
    let body = &seen.lock().unwrap()[0];
    assert_eq!(param(body, "assertion").as_deref(), Some("the-grant"));
    assert_eq!(param(body, "client_id").as_deref(), Some("workload"));
    assert_eq!(
        param(body, "client_assertion").as_deref(),
        Some("the-client-assertion")
    );
    assert_eq!(
        param(body, "client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
}

#[test]
fn a_jwt_bearer_grant_authenticates_the_client_with_a_secret_or_a_key() {
    let mut server = mockito::Server::new();
    let basic = server
        .mock("POST", "/token")
        .match_header("authorization", "Basic d29ya2xvYWQ6czNjcmV0")
        .with_header("content-type", "application/json")
        .with_body(TOKEN)
        .expect(1)
        .create();
    let grant = JwtBearer::new(
        format!("{}/token", server.url()),
        AssertionSource::literal("the-grant"),
    )
    .client("workload", "s3cret");
    Client::new(grant, opts()).unwrap().token().unwrap();
    basic.assert();

    let seen = bearer_endpoint(&mut server, &[]);
    let grant = JwtBearer::new(
        format!("{}/token", server.url()),
        AssertionSource::literal("the-grant"),
    )
    .client("workload", "")
    .private_key(signing_key());
    Client::new(grant, opts()).unwrap().token().unwrap();
    let body = &seen.lock().unwrap()[0];
    let c = claims(&param(body, "client_assertion").unwrap());
    assert_eq!(c["iss"], "workload");
    assert_eq!(c["sub"], "workload");
}

#[test]
fn client_authentication_without_a_client_id_is_refused_when_built() {
    let grant = JwtBearer::new(
        "https://idp.example/token",
        AssertionSource::literal("the-grant"),
    )
    .private_key(signing_key());
    let e = err(Client::new(grant, opts()));
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("client id"), "{e}");
}

#[test]
fn a_jwt_bearer_store_key_names_the_credential_never_the_assertion() {
    let store = || Arc::new(authcore::MemoryStore::new());
    let key_of = |grant: JwtBearer, user: Option<&str>| {
        let mut options = opts().store(store());
        if let Some(user) = user {
            options = options.store_key(user);
        }
        Client::new(grant, options).unwrap().store_key()
    };
    let url = "https://idp.example/token";
    let signed = key_of(
        JwtBearer::signed(url, signing_key(), "svc", "user-42"),
        None,
    )
    .expect("a signed grant has a key");
    let text = format!("{signed:?}");
    assert!(text.contains("svc") && text.contains("user-42"), "{text}");
    let other = key_of(
        JwtBearer::signed(url, signing_key(), "svc", "user-43"),
        None,
    )
    .unwrap();
    assert_ne!(signed, other, "another subject is another credential");

    let file = key_of(
        JwtBearer::new(url, AssertionSource::file("/var/run/secrets/token")),
        None,
    )
    .unwrap();
    assert!(format!("{file:?}").contains("/var/run/secrets/token"));

    // A literal names nothing but itself: shared only under a name the caller gave.
    let literal = || JwtBearer::new(url, AssertionSource::literal("the-secret-jwt"));
    assert_eq!(key_of(literal(), None), None);
    let named = key_of(literal(), Some("billing")).unwrap();
    assert!(!format!("{named:?}").contains("the-secret-jwt"));
    assert!(format!("{named:?}").contains("billing"));
}

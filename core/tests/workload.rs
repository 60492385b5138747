//! Workloads without secrets on the wire: client assertions from a source (RFC 7523
//! §2.2), read for every request and once more after a refusal, never sent expired.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use authcore::grant::ClientCredentials;
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

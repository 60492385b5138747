//! Token exchange (RFC 8693): what the request carries, the issued token type, a
//! chained subject client whose refused token is replaced by its next one, and the
//! store key.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use authcore::grant::{token_type, ClientCredentials, TokenExchange};
use authcore::{AssertionSource, AuthMethod, Client, ErrorKind, MemoryStore, Secret};
use common::{err, opts};

/// The exchanged tokens the endpoint issues, in order.
const EXCHANGED: &[&str] = &["at-two-6f7a8b9c0d", "at-three-0e1f2a3b4c", "xt-3", "xt-4"];

fn params(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn param(body: &str, name: &str) -> Option<String> {
    params(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// A token exchange endpoint: refuses (400 `invalid_grant`) a subject token in
/// `revoked`, else issues the next of [`EXCHANGED`]; records every body.
#[derive(Clone, Default)]
struct Exchange {
    seen: Arc<Mutex<Vec<String>>>,
    revoked: Arc<Mutex<HashSet<String>>>,
    issued: Arc<AtomicUsize>,
}

impl Exchange {
    fn start(server: &mut mockito::Server) -> Exchange {
        let exchange = Exchange::default();
        let (status_of, body_of) = (exchange.clone(), exchange.clone());
        server
            .mock("POST", "/exchange")
            .with_header("content-type", "application/json")
            .with_status_code_from_request(move |request| {
                let body = request.utf8_lossy_body().unwrap();
                if status_of.refuses(&body) {
                    400
                } else {
                    200
                }
            })
            .with_body_from_request(move |request| {
                let body = request.utf8_lossy_body().unwrap();
                body_of.seen.lock().unwrap().push(body.to_string());
                if body_of.refuses(&body) {
                    return br#"{"error":"invalid_grant","error_description":"the subject token is not active"}"#.to_vec();
                }
                let n = body_of.issued.fetch_add(1, Ordering::SeqCst);
                format!(
                    r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600,
                        "issued_token_type":"{}","refresh_token":"rt-first-5c4b3a29"}}"#,
                    EXCHANGED[n.min(EXCHANGED.len() - 1)],
                    token_type::ACCESS_TOKEN
                )
                .into_bytes()
            })
            .expect_at_least(0)
            .create();
        exchange
    }

    fn refuses(&self, body: &str) -> bool {
        param(body, "subject_token").is_some_and(|s| self.revoked.lock().unwrap().contains(&s))
    }

    fn revoke(&self, subject: &str) {
        self.revoked.lock().unwrap().insert(subject.to_owned());
    }

    fn subjects(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|b| param(b, "subject_token").unwrap_or_default())
            .collect()
    }
}

/// A client credentials endpoint at `/subject` that issues `tokens` in turn (the last
/// one again once they run out), counting the requests.
fn subject_endpoint(
    server: &mut mockito::Server,
    tokens: &'static [&'static str],
) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    server
        .mock("POST", "/subject")
        .with_header("content-type", "application/json")
        .with_body_from_request(move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            format!(
                r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600}}"#,
                tokens[n.min(tokens.len() - 1)]
            )
            .into_bytes()
        })
        .expect_at_least(0)
        .create();
    count
}

fn subject_client(url: &str) -> Client {
    Client::new(
        ClientCredentials::new(format!("{url}/subject"), "front", "cs+/=:secret-9f8e7d"),
        opts(),
    )
    .unwrap()
}

fn exchange_grant(url: &str, subject: AssertionSource) -> TokenExchange {
    TokenExchange::new(
        format!("{url}/exchange"),
        "front",
        "cs+/=:secret-9f8e7d",
        subject,
        token_type::ACCESS_TOKEN,
    )
}

#[test]
fn the_request_carries_every_parameter_and_the_issued_type_is_exposed() {
    let mut server = mockito::Server::new();
    let exchange = Exchange::start(&mut server);
    let grant = exchange_grant(&server.url(), AssertionSource::literal("at-one-1a2b3c4d5e"))
        .actor(
            AssertionSource::literal("pat-0f1e2d3c4b5a"),
            token_type::JWT,
        )
        .audience("https://orders.example")
        .audience("https://billing.example")
        .resources(["https://api.example/orders"])
        .scopes(["orders:read", "orders:write"])
        .requested_token_type(token_type::ACCESS_TOKEN)
        .auth_method(AuthMethod::ClientSecretPost);
    let client = Client::new(grant, opts()).unwrap();
    let token = client.token().unwrap();
    assert_eq!(token.access_token().expose_secret(), EXCHANGED[0]);
    assert_eq!(token.issued_token_type(), Some(token_type::ACCESS_TOKEN));
    assert!(
        token.refresh_token().is_none(),
        "renewal exchanges again: no refresh token is kept"
    );
    let bodies = exchange.seen.lock().unwrap();
    assert_eq!(bodies.len(), 1);
    let got = params(&bodies[0]);
    let want: Vec<(String, String)> = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", "at-one-1a2b3c4d5e"),
        ("subject_token_type", token_type::ACCESS_TOKEN),
        ("actor_token", "pat-0f1e2d3c4b5a"),
        ("actor_token_type", token_type::JWT),
        ("audience", "https://orders.example"),
        ("audience", "https://billing.example"),
        ("resource", "https://api.example/orders"),
        ("scope", "orders:read orders:write"),
        ("requested_token_type", token_type::ACCESS_TOKEN),
        ("client_id", "front"),
        ("client_secret", "cs+/=:secret-9f8e7d"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);
    common::assert_clean(&format!("{token:?} {client:?}"));
}

#[test]
fn a_chained_subject_client_is_renewed_when_the_exchange_refuses_its_token() {
    let mut server = mockito::Server::new();
    let exchange = Exchange::start(&mut server);
    let subject_requests = subject_endpoint(&mut server, &["sub-1", "sub-2"]);
    let front = subject_client(&server.url());
    let client = Client::new(
        exchange_grant(&server.url(), AssertionSource::client(front.clone())),
        opts(),
    )
    .unwrap();

    // The subject client obtains its token for the first exchange.
    let first = client.token().unwrap();
    assert_eq!(first.access_token().expose_secret(), EXCHANGED[0]);
    assert_eq!(subject_requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        front.cached_token().unwrap().access_token().expose_secret(),
        "sub-1"
    );

    // The subject's token is revoked at the server while its client still caches it:
    // the next exchange sends it, is refused, and the client's next token is sent.
    exchange.revoke("sub-1");
    let second = client.refresh().unwrap();
    assert_eq!(second.access_token().expose_secret(), EXCHANGED[1]);
    assert_eq!(second.issued_token_type(), Some(token_type::ACCESS_TOKEN));
    assert_eq!(exchange.subjects(), ["sub-1", "sub-1", "sub-2"]);
    assert_eq!(
        subject_requests.load(Ordering::SeqCst),
        2,
        "the subject client renewed once"
    );
    assert_eq!(
        front.cached_token().unwrap().access_token().expose_secret(),
        "sub-2",
        "the refused token was invalidated at its client"
    );
    let stats = client.stats();
    assert_eq!(stats.token_requests(), 3, "{stats:?}");

    // Renewed again later: the subject client's cached token is used as it is.
    let third = client.refresh().unwrap();
    assert_eq!(third.access_token().expose_secret(), EXCHANGED[2]);
    assert_eq!(exchange.subjects(), ["sub-1", "sub-1", "sub-2", "sub-2"]);
    assert_eq!(subject_requests.load(Ordering::SeqCst), 2);
}

#[test]
fn a_refused_subject_whose_client_has_no_other_fails_after_one_request() {
    let mut server = mockito::Server::new();
    let exchange = Exchange::start(&mut server);
    // The subject server answers the same (revoked) token again.
    let subject_requests = subject_endpoint(&mut server, &["sub-1"]);
    exchange.revoke("sub-1");
    let client = Client::new(
        exchange_grant(
            &server.url(),
            AssertionSource::client(subject_client(&server.url())),
        ),
        opts(),
    )
    .unwrap();
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::OAuth, "{e}");
    assert_eq!(e.oauth().unwrap().error, "invalid_grant");
    assert!(!e.to_string().contains("sub-1"), "{e}");
    assert_eq!(
        exchange.subjects(),
        ["sub-1"],
        "the same token is not resent"
    );
    assert_eq!(subject_requests.load(Ordering::SeqCst), 2);
}

#[test]
fn a_subject_file_is_read_again_for_every_exchange() {
    let mut server = mockito::Server::new();
    let exchange = Exchange::start(&mut server);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projected-token");
    std::fs::write(&path, "at-one-1a2b3c4d5e\n").unwrap();
    let client = Client::new(
        TokenExchange::new(
            format!("{}/exchange", server.url()),
            "workload",
            "",
            AssertionSource::file(&path),
            token_type::JWT,
        ),
        opts(),
    )
    .unwrap();
    client.token().unwrap();
    std::fs::write(&path, "rt-second-8d7c6b5a\n").unwrap();
    client.refresh().unwrap();
    assert_eq!(
        exchange.subjects(),
        ["at-one-1a2b3c4d5e", "rt-second-8d7c6b5a"]
    );
    let first = exchange.seen.lock().unwrap()[0].clone();
    assert_eq!(
        param(&first, "client_id").as_deref(),
        Some("workload"),
        "a public client names itself"
    );
    assert_eq!(
        param(&first, "subject_token_type").as_deref(),
        Some(token_type::JWT)
    );

    // Gone: a clear error naming the file, and nothing sent.
    std::fs::remove_file(&path).unwrap();
    let e = err(client.refresh());
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("projected-token"), "{e}");
    assert_eq!(exchange.seen.lock().unwrap().len(), 2);
}

#[test]
fn the_store_key_names_where_the_subject_comes_from_never_the_token() {
    let store = || Arc::new(MemoryStore::new());
    let key_of = |grant: TokenExchange, store_key: Option<&str>| {
        let mut options = opts().store(store());
        if let Some(name) = store_key {
            options = options.store_key(name);
        }
        Client::new(grant, options).unwrap().store_key()
    };
    let grant = |subject| exchange_grant("https://sts.example", subject);
    let file = key_of(grant(AssertionSource::file("/var/run/secrets/token")), None).unwrap();
    let text = file.to_string();
    assert!(
        text.starts_with("token_exchange https://sts.example/exchange"),
        "{text}"
    );
    assert!(text.contains("/var/run/secrets/token"), "{text}");

    let literal = key_of(grant(AssertionSource::literal("at-one-1a2b3c4d5e")), None).unwrap();
    common::assert_clean(&format!("{literal} {literal:?}"));
    let other = key_of(grant(AssertionSource::literal("at-two-6f7a8b9c0d")), None).unwrap();
    assert_ne!(literal, other, "two subjects never share a key");

    // A chained client: named by its own credential (endpoint, client id, scopes).
    let front = Client::new(
        ClientCredentials::new("https://idp.example/token", "front", "cs+/=:secret-9f8e7d")
            .scopes(["orders"]),
        opts(),
    )
    .unwrap();
    let chained = key_of(grant(AssertionSource::client(front)), None).unwrap();
    let text = chained.to_string();
    assert!(text.contains("idp.example"), "{text}");
    common::assert_clean(&format!("{chained:?}"));

    // A callback cannot be told apart from another: shared only under a name given.
    let callback = || AssertionSource::callback(|| Ok(Secret::new("x")));
    assert!(key_of(grant(callback()), None).is_none());
    let named = key_of(grant(callback()), Some("orders-service")).unwrap();
    assert_eq!(named.user(), Some("orders-service"));

    // What is asked for is part of the key.
    let audience = key_of(
        grant(AssertionSource::file("/var/run/secrets/token")).audience("https://b.example"),
        None,
    )
    .unwrap();
    assert_ne!(audience, file);
    let actor = key_of(
        grant(AssertionSource::file("/var/run/secrets/token"))
            .actor(AssertionSource::file("/var/run/actor"), token_type::JWT),
        None,
    )
    .unwrap();
    assert_ne!(actor, file);
    assert!(actor.to_string().contains("/var/run/actor"));
}

#[test]
fn a_token_from_the_store_keeps_its_issued_type() {
    let mut server = mockito::Server::new();
    let exchange = Exchange::start(&mut server);
    let store = Arc::new(MemoryStore::new());
    let client = |store: Arc<MemoryStore>| {
        Client::new(
            exchange_grant(&server.url(), AssertionSource::literal("at-one-1a2b3c4d5e")),
            opts().store(store),
        )
        .unwrap()
    };
    let first = client(Arc::clone(&store)).token().unwrap();
    let adopted = client(store).token().unwrap();
    assert_eq!(adopted.access_token(), first.access_token());
    assert_eq!(adopted.issued_token_type(), Some(token_type::ACCESS_TOKEN));
    assert_eq!(
        exchange.seen.lock().unwrap().len(),
        1,
        "adopted, not exchanged again"
    );
}

#[test]
fn a_token_type_that_is_no_uri_is_a_configuration_error() {
    let grant = TokenExchange::new(
        "https://sts.example/token",
        "front",
        "",
        AssertionSource::literal("x"),
        "",
    );
    assert_eq!(err(Client::new(grant, opts())).kind(), ErrorKind::Config);
    let grant = exchange_grant("https://sts.example", AssertionSource::literal("x"))
        .requested_token_type("access token");
    assert_eq!(err(Client::new(grant, opts())).kind(), ErrorKind::Config);
    assert_eq!(token_type::from_name("jwt"), token_type::JWT);
    assert_eq!(token_type::from_name("urn:x:y"), "urn:x:y");
}

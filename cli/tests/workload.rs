//! Workloads without secrets at the development provider: its test issuer (keys,
//! minted JWTs), client assertions from it accepted for the registered client, and the
//! JWT bearer grant (the test issuer's assertions, or ones signed by a key the config
//! trusts) — each check a server must make refused with its own error — driven by
//! authcore clients and by hand; and the `authcore token` flags that use them.

use std::net::SocketAddr;
use std::time::Duration;

use authcore::grant::{ClientCredentials, JwtBearer, PrivateKey};
use authcore::{AssertionSource, Client, ErrorKind, Options};
use authcore_cli::devserver::{tag, Behaviour, Credentials, DevServer, Event};
use serde_json::{json, Value};

fn server() -> DevServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    DevServer::start(addr, Credentials::default()).unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// A JWT minted by the provider's test issuer.
fn mint(s: &DevServer, body: Value) -> String {
    let mut response = agent()
        .post(format!("{}/_control/test_issuer/mint", s.url()))
        .send_json(body)
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.body_mut().read_json().unwrap();
    answer["jwt"].as_str().unwrap().to_owned()
}

/// A client assertion for the registered client, valid for `ttl_s`.
fn client_jwt(s: &DevServer, ttl_s: i64) -> String {
    mint(
        s,
        json!({"sub": "dev-client", "aud": s.url(), "ttl_s": ttl_s}),
    )
}

/// A form POST to the token endpoint: status and body.
fn token_request(s: &DevServer, form: &[(&str, &str)]) -> (u16, Value) {
    let mut response = agent()
        .post(format!("{}/oauth2/token", s.url()))
        .send_form(form.iter().copied())
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_json().unwrap())
}

const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn with_client_assertion(s: &DevServer, jwt: &str) -> (u16, Value) {
    token_request(
        s,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "dev-client"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", jwt),
        ],
    )
}

fn opts() -> Options {
    Options::default()
        .timeout(Duration::from_secs(10))
        .max_retries(0)
}

/// Whose token it is, as the provider's API says.
fn sub_at_api(s: &DevServer, token: &str) -> String {
    let mut response = agent()
        .get(format!("{}/api/check", s.url()))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.body_mut().read_json().unwrap();
    body["sub"].as_str().unwrap().to_owned()
}

#[test]
fn the_test_issuer_publishes_the_key_its_jwts_verify_with() {
    let s = server();
    let jwks: Value = agent()
        .get(format!("{}/_control/test_issuer/jwks", s.url()))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert!(key.get("d").is_none(), "no private member in a JWK set");
    let jwt = mint(
        &s,
        json!({"sub": "system:serviceaccount:ns:app", "aud": "https://sts.example", "ttl_s": 120}),
    );
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        key["x"].as_str().unwrap(),
        key["y"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["https://sts.example"]);
    let verified = jsonwebtoken::decode::<Value>(&jwt, &decoding, &validation).unwrap();
    assert_eq!(
        verified.claims["iss"].as_str().unwrap(),
        format!("{}/test-issuer", s.url())
    );
    assert_eq!(verified.claims["sub"], "system:serviceaccount:ns:app");
    let c = &verified.claims;
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    // Bad requests are refused, not minted.
    let status = agent()
        .post(format!("{}/_control/test_issuer/mint", s.url()))
        .send_json(json!({"sub": "x", "aud": "y", "ttl_s": 10_000_000}))
        .unwrap()
        .status();
    assert_eq!(status, 400);
}

#[test]
fn a_client_assertion_from_the_test_issuer_authenticates_the_registered_client() {
    let s = server();
    let (status, body) = with_client_assertion(&s, &client_jwt(&s, 300));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(sub_at_api(&s, token), "dev-client");
}

#[test]
fn every_check_of_a_client_assertion_refuses_with_invalid_client() {
    let s = server();
    let url = s.url();
    let cases = [
        (client_jwt(&s, -5), "expired"),
        (
            mint(&s, json!({"sub": "someone-else", "aud": url})),
            "another subject",
        ),
        (
            mint(
                &s,
                json!({"sub": "dev-client", "aud": "https://elsewhere.example"}),
            ),
            "not for this server",
        ),
        (
            mint(
                &s,
                json!({"sub": "dev-client", "aud": url, "iss": "https://evil.example"}),
            ),
            "issuer",
        ),
    ];
    for (jwt, why) in &cases {
        let (status, body) = with_client_assertion(&s, jwt);
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["error"], "invalid_client", "{why}");
        assert!(
            body["error_description"].as_str().unwrap().contains(why),
            "{why}: {body}"
        );
    }
    // A forged signature: the payload of one, the signature of another.
    let a = client_jwt(&s, 300);
    let b = mint(&s, json!({"sub": "dev-client", "aud": url, "ttl_s": 200}));
    let mut forged: Vec<&str> = a.split('.').collect();
    forged[2] = b.split('.').nth(2).unwrap();
    let (status, _) = with_client_assertion(&s, &forged.join("."));
    assert_eq!(status, 401);
    // A jti is single use.
    let jwt = client_jwt(&s, 300);
    assert_eq!(with_client_assertion(&s, &jwt).0, 200);
    let (status, body) = with_client_assertion(&s, &jwt);
    assert_eq!(status, 401);
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("already used"));
}

#[test]
fn an_authcore_client_reads_its_rewritten_assertion_file_for_each_renewal() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let first = client_jwt(&s, 300);
    std::fs::write(&path, &first).unwrap();
    let grant = ClientCredentials::new(format!("{}/oauth2/token", s.url()), "dev-client", "")
        .client_assertion(AssertionSource::file(&path));
    let client = Client::new(grant, opts()).unwrap();
    let one = client.token().unwrap();
    // The issuer rewrote the file; the next renewal sends the new one.
    let second = client_jwt(&s, 300);
    std::fs::write(&path, &second).unwrap();
    let two = client.refresh().unwrap();
    assert_ne!(one.access_token(), two.access_token());
    let sent: Vec<Option<String>> = s
        .journal(0)
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Token { assertion, .. } => Some(assertion.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![Some(tag(&first)), Some(tag(&second))]);
}

#[test]
fn an_expired_assertion_in_the_file_is_never_sent_and_the_rewritten_one_is() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, client_jwt(&s, -30)).unwrap();
    let grant = ClientCredentials::new(format!("{}/oauth2/token", s.url()), "dev-client", "")
        .client_assertion(AssertionSource::file(&path));
    let client = Client::new(grant, opts()).unwrap();
    let e = client.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("expired"), "{e}");
    assert_eq!(s.counters().token_requests, 0, "nothing was sent");
    std::fs::write(&path, client_jwt(&s, 300)).unwrap();
    let mut token = None;
    for _ in 0..50 {
        match client.token() {
            Ok(t) => {
                token = Some(t);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let token = token.expect("the rewritten assertion is used");
    assert_eq!(
        sub_at_api(&s, token.access_token().expose_secret()),
        "dev-client"
    );
    assert_eq!(s.counters().token_requests, 1);
}

#[test]
fn the_jwt_bearer_grant_takes_the_test_issuers_assertion_once() {
    let s = server();
    let jwt = mint(
        &s,
        json!({"sub": "alice", "aud": format!("{}/oauth2/token", s.url())}),
    );
    let (status, body) = token_request(
        &s,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &jwt),
            ("scope", "campaigns:read"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["scope"], "campaigns:read");
    assert_eq!(
        sub_at_api(&s, body["access_token"].as_str().unwrap()),
        "alice"
    );
    let (status, body) = token_request(&s, &[("grant_type", JWT_BEARER), ("assertion", &jwt)]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let expired = mint(&s, json!({"sub": "alice", "aud": s.url(), "ttl_s": -1}));
    let (status, body) = token_request(&s, &[("grant_type", JWT_BEARER), ("assertion", &expired)]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("expired"));
    // Client credentials presented must be right, though none are needed.
    let fresh = mint(&s, json!({"sub": "alice", "aud": s.url()}));
    let (status, body) = token_request(
        &s,
        &[
            ("grant_type", JWT_BEARER),
            ("assertion", &fresh),
            ("client_id", "dev-client"),
            ("client_secret", "wrong"),
        ],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[test]
fn an_authcore_jwt_bearer_client_with_a_federated_client_assertion_gets_the_subjects_token() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let grant_file = dir.path().join("grant");
    let client_file = dir.path().join("client");
    std::fs::write(&grant_file, mint(&s, json!({"sub": "bob", "aud": s.url()}))).unwrap();
    std::fs::write(&client_file, client_jwt(&s, 300)).unwrap();
    let grant = JwtBearer::new(
        format!("{}/oauth2/token", s.url()),
        AssertionSource::file(&grant_file),
    )
    .client("dev-client", "")
    .client_assertion(AssertionSource::file(&client_file))
    .scopes(["reporting:read"]);
    let client = Client::new(grant, opts()).unwrap();
    let token = client.token().unwrap();
    assert_eq!(sub_at_api(&s, token.access_token().expose_secret()), "bob");
    assert_eq!(token.scope(), Some("reporting:read"));
}

#[test]
fn a_jwt_bearer_grant_signed_by_a_key_the_provider_trusts() {
    let s = server();
    let pair = rcgen::KeyPair::generate().unwrap();
    let mut behaviour = Behaviour::default();
    behaviour
        .jwt_bearer_keys
        .insert("svc@project".into(), pair.public_key_pem());
    s.set_behaviour(behaviour).unwrap();
    let key = PrivateKey::from_pem(pair.serialize_pem().as_bytes(), None).unwrap();
    let signed = |issuer: &str| {
        JwtBearer::signed(
            format!("{}/oauth2/token", s.url()),
            key.clone(),
            issuer,
            "carol",
        )
    };
    let client = Client::new(signed("svc@project"), opts()).unwrap();
    let one = client.token().unwrap();
    assert_eq!(sub_at_api(&s, one.access_token().expose_secret()), "carol");
    // Every renewal signs a new assertion (a jti is single use).
    let two = client.refresh().unwrap();
    assert_ne!(one.access_token(), two.access_token());
    // An issuer the provider does not know is refused.
    let stranger = Client::new(signed("stranger"), opts()).unwrap();
    let e = stranger.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OAuth);
    assert_eq!(e.oauth().unwrap().error, "invalid_grant");
    // A config key that is not a public key is refused when set.
    let mut bad = Behaviour::default();
    bad.jwt_bearer_keys.insert("x".into(), "not a key".into());
    assert!(s.set_behaviour(bad).is_err());
}

// `authcore token` with assertions.

fn authcore() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_authcore"));
    for var in [
        "AUTHCORE_API_KEY",
        "AUTHCORE_CLIENT_SECRET",
        "AUTHCORE_REFRESH_TOKEN",
        "AUTHCORE_TOKEN",
        "AUTHCORE_CLIENT_ID",
        "AUTHCORE_ISSUER",
        "AUTHCORE_STORE_KEY",
    ] {
        c.env_remove(var);
    }
    c
}

/// The token printed, or the exit code and stderr.
fn run(command: &mut std::process::Command) -> Result<String, (i32, String)> {
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    } else {
        assert!(out.stdout.is_empty(), "nothing printed on failure");
        Err((out.status.code().unwrap_or(-1), stderr))
    }
}

fn token_url(s: &DevServer) -> String {
    format!("{}/oauth2/token", s.url())
}

#[test]
fn token_with_a_client_assertion_file_or_command() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projected");
    std::fs::write(&path, client_jwt(&s, 300)).unwrap();
    let by_file = run(authcore()
        .args([
            "token",
            "--provider",
            "client-credentials",
            "--client-id",
            "dev-client",
        ])
        .args(["--token-url", &token_url(&s)])
        .arg("--client-assertion-file")
        .arg(&path))
    .unwrap();
    assert_eq!(sub_at_api(&s, &by_file), "dev-client");
    // A command prints it (here `cat` of a fresh one).
    std::fs::write(&path, client_jwt(&s, 300)).unwrap();
    let by_command = run(authcore()
        .args([
            "token",
            "--provider",
            "client-credentials",
            "--client-id",
            "dev-client",
        ])
        .args(["--token-url", &token_url(&s)])
        .args([
            "--client-assertion-command",
            "cat",
            "--client-assertion-arg",
        ])
        .arg(&path))
    .unwrap();
    assert_eq!(sub_at_api(&s, &by_command), "dev-client");
    assert_ne!(by_file, by_command);
}

#[test]
fn token_with_a_missing_or_expired_assertion_file_exits_2_and_sends_nothing() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projected");
    let attempt = || {
        run(authcore()
            .args([
                "token",
                "--provider",
                "client-credentials",
                "--client-id",
                "dev-client",
            ])
            .args(["--token-url", &token_url(&s)])
            .arg("--client-assertion-file")
            .arg(&path))
    };
    let (code, stderr) = attempt().unwrap_err();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("projected") && stderr.contains("does not exist"),
        "{stderr}"
    );
    let expired = client_jwt(&s, -60);
    std::fs::write(&path, &expired).unwrap();
    let (code, stderr) = attempt().unwrap_err();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(!stderr.contains(&expired), "the assertion is never printed");
    assert_eq!(s.counters().token_requests, 0);
}

#[test]
fn token_by_the_jwt_bearer_grant_from_a_file_or_a_command() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grant");
    std::fs::write(&path, mint(&s, json!({"sub": "alice", "aud": s.url()}))).unwrap();
    let token = run(authcore()
        .args([
            "token",
            "--provider",
            "jwt-bearer",
            "--scope",
            "campaigns:read",
        ])
        .args(["--token-url", &token_url(&s)])
        .arg("--assertion-file")
        .arg(&path))
    .unwrap();
    assert_eq!(sub_at_api(&s, &token), "alice");
    std::fs::write(&path, mint(&s, json!({"sub": "bob", "aud": s.url()}))).unwrap();
    let client_file = dir.path().join("client");
    std::fs::write(&client_file, client_jwt(&s, 300)).unwrap();
    // With the client's own federated assertion too.
    let token = run(authcore()
        .args([
            "token",
            "--provider",
            "jwt-bearer",
            "--client-id",
            "dev-client",
        ])
        .args(["--token-url", &token_url(&s)])
        .args(["--assertion-command", "cat", "--assertion-arg"])
        .arg(&path)
        .arg("--client-assertion-file")
        .arg(&client_file))
    .unwrap();
    assert_eq!(sub_at_api(&s, &token), "bob");
    let bodies: Vec<_> = s
        .journal(0)
        .events
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Token { grant, outcome, .. } => Some((grant, outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies
        .iter()
        .all(|(g, _)| g == &format!("oauth2/{JWT_BEARER}")));
}

#[test]
fn token_by_the_jwt_bearer_grant_signed_with_a_key() {
    let s = server();
    let pair = rcgen::KeyPair::generate().unwrap();
    let mut behaviour = Behaviour::default();
    behaviour
        .jwt_bearer_keys
        .insert("svc@project".into(), pair.public_key_pem());
    s.set_behaviour(behaviour).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, pair.serialize_pem()).unwrap();
    let signed = |subject: &str| {
        let mut c = authcore();
        c.args(["token", "--provider", "jwt-bearer"])
            .args(["--token-url", &token_url(&s)])
            .arg("--signing-key")
            .arg(&key)
            .args(["--jwt-issuer", "svc@project", "--jwt-subject", subject]);
        c
    };
    let token = run(&mut signed("carol")).unwrap();
    assert_eq!(sub_at_api(&s, &token), "carol");
    // Another audience than the provider's is refused there: exit 3.
    let (code, stderr) =
        run(signed("carol").args(["--jwt-audience", "https://elsewhere.example"])).unwrap_err();
    assert_eq!(code, 3, "{stderr}");
    // No way to get an assertion: a configuration error.
    let (code, stderr) = run(authcore()
        .args(["token", "--provider", "jwt-bearer"])
        .args(["--token-url", &token_url(&s)]))
    .unwrap_err();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--assertion-file"), "{stderr}");
    // A file that is no key: named, exit 2.
    std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
    let (code, stderr) = run(authcore()
        .args(["token", "--provider", "jwt-bearer"])
        .args(["--token-url", &token_url(&s)])
        .arg("--signing-key")
        .arg(dir.path().join("bad.pem"))
        .args(["--jwt-issuer", "svc@project", "--jwt-subject", "carol"]))
    .unwrap_err();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.pem"), "{stderr}");
}

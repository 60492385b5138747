//! Token exchange (RFC 8693) against the development provider's process: the grant at
//! its OAuth token endpoint, a chained subject client whose token the provider revokes,
//! and `authcore token --provider token-exchange`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authcore::grant::{token_type, ClientCredentials, TokenExchange};
use authcore::{AssertionSource, Client, Options};
use serde_json::{json, Value};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// `authcore devserver` running as a process of its own, stopped when dropped.
struct Provider {
    child: Child,
    url: String,
}

impl Provider {
    fn start() -> Provider {
        let mut child = authcore()
            .args(["devserver", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut url = None;
        for line in BufReader::new(stdout).lines().take(64) {
            let Ok(line) = line else { break };
            if let Some(u) = line.strip_prefix("AUTHCORE_DEVSERVER_URL=") {
                url = Some(u.to_owned());
                break;
            }
            if Instant::now() > deadline {
                break;
            }
        }
        let Some(url) = url else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the devserver did not print its address");
        };
        Provider { child, url }
    }

    fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.url)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let mut r = agent().get(format!("{}{path}", self.url)).call().unwrap();
        (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let mut r = agent()
            .post(format!("{}{path}", self.url))
            .send_json(body)
            .unwrap();
        (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    /// A form request at the token endpoint.
    fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut r = agent()
            .post(self.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .send(body)
            .unwrap();
        (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    /// A client credentials token of `dev-client` for `scope`.
    fn client_token(&self, scope: &str) -> String {
        let (status, body) = self.token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", "dev-client"),
            ("client_secret", "dev-secret"),
            ("scope", scope),
        ]);
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// What the provider knows of a token (by tag).
    fn token_info(&self, token: &str) -> Value {
        let (status, info) = self.get(&format!("/_control/token?tag={}", tag(token)));
        assert_eq!(status, 200, "{info}");
        info
    }

    /// The token events of exchanges since `since`: (outcome, subject tag, access tag).
    fn exchanges(&self, since: u64) -> Vec<(String, String, Option<String>)> {
        self.journal(since)
            .iter()
            .filter(|e| e["event"] == "token" && e["grant"] == format!("oauth2/{EXCHANGE}"))
            .map(|e| {
                (
                    e["outcome"].as_str().unwrap_or_default().to_owned(),
                    e["subject"].as_str().unwrap_or_default().to_owned(),
                    e["access"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    fn journal(&self, since: u64) -> Vec<Value> {
        let (_, journal) = self.get(&format!("/_control/journal?since={since}"));
        journal["events"].as_array().cloned().unwrap_or_default()
    }

    fn last_seq(&self) -> u64 {
        self.journal(0)
            .last()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or(0)
    }

    fn api_status(&self, token: &str) -> u16 {
        agent()
            .get(format!("{}/api/orders", self.url))
            .header("authorization", format!("Bearer {token}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn authcore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_authcore"));
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

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn tag(token: &str) -> String {
    authcore_cli::devserver::tag(token)
}

#[test]
fn the_devserver_exchanges_its_own_access_tokens() {
    let p = Provider::start();
    let subject = p.client_token("campaigns:read reporting:read");
    let actor = p.client_token("admin");
    let exchange = |extra: &[(&str, &str)]| {
        let mut form = vec![
            ("grant_type", EXCHANGE),
            ("client_id", "dev-client"),
            ("client_secret", "dev-secret"),
            ("subject_token", subject.as_str()),
            ("subject_token_type", ACCESS),
        ];
        form.extend_from_slice(extra);
        p.token_request(&form)
    };
    let since = p.last_seq();
    let (status, body) = exchange(&[
        ("actor_token", actor.as_str()),
        ("actor_token_type", ACCESS),
        ("audience", "orders"),
        ("audience", "billing"),
        ("resource", "https://api.example/orders"),
        ("scope", "campaigns:read"),
        ("requested_token_type", ACCESS),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS);
    assert_eq!(body["scope"], "campaigns:read");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let exchanged = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(exchanged, subject);
    let info = p.token_info(&exchanged);
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], "dev-client");
    assert_eq!(
        info["aud"],
        json!(["orders", "billing", "https://api.example/orders"])
    );
    assert_eq!(info["act"]["sub"], "dev-client");
    assert_eq!(p.api_status(&exchanged), 200);
    let events = p.journal(since);
    let event = events
        .iter()
        .find(|e| e["event"] == "token" && e["grant"] == format!("oauth2/{EXCHANGE}"))
        .expect("the exchange is journaled");
    assert_eq!(event["outcome"], "issued");
    assert_eq!(event["subject"], tag(&subject));
    assert_eq!(event["actor"], tag(&actor));
    assert_eq!(event["access"], tag(&exchanged));
    let text = serde_json::to_string(&events).unwrap();
    for token in [&subject, &actor, &exchanged] {
        assert!(!text.contains(token.as_str()), "a token in the journal");
    }

    // By default: all of the subject's scope, no audience.
    let (status, body) = exchange(&[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "campaigns:read reporting:read");
    assert!(p
        .token_info(body["access_token"].as_str().unwrap())
        .get("aud")
        .is_none());

    // Refused or malformed requests.
    for (extra, status, error) in [
        (vec![("scope", "admin")], 400, "invalid_scope"),
        (
            vec![(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:jwt",
            )],
            400,
            "invalid_request",
        ),
        (
            vec![("actor_token", actor.as_str())],
            400,
            "invalid_request",
        ),
        (
            vec![("resource", "https://api.example/#x")],
            400,
            "invalid_target",
        ),
        (vec![("resource", "orders")], 400, "invalid_target"),
    ] {
        let (got, body) = exchange(&extra);
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{extra:?}: {body}"
        );
    }
    let (status, body) = p.token_request(&[
        ("grant_type", EXCHANGE),
        ("client_id", "dev-client"),
        ("client_secret", "dev-secret"),
        ("subject_token", subject.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = p.token_request(&[
        ("grant_type", EXCHANGE),
        ("subject_token", subject.as_str()),
        ("subject_token_type", ACCESS),
    ]);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = p.token_request(&[
        ("grant_type", EXCHANGE),
        ("client_id", "dev-client"),
        ("client_secret", "dev-secret"),
        ("subject_token", "dev-at-never-issued"),
        ("subject_token_type", ACCESS),
    ]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A revoked subject (or actor) token is refused, and the refusal names it.
    let since = p.last_seq();
    let (status, _) = p.post_json("/_control/revoke_token", json!({"tag": tag(&subject)}));
    assert_eq!(status, 200);
    let (status, body) = exchange(&[]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        p.exchanges(since),
        [("refused".to_owned(), tag(&subject), None)]
    );
    let (_, metadata) = p.get("/.well-known/oauth-authorization-server");
    assert!(metadata["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(EXCHANGE)));
}

#[test]
fn a_chained_subject_client_whose_token_is_revoked_gives_its_next() {
    let p = Provider::start();
    let options = || Options::default().timeout(Duration::from_secs(10));
    let front = Client::new(
        ClientCredentials::new(p.token_url(), "dev-client", "dev-secret")
            .scopes(["campaigns:read", "reporting:read"]),
        options(),
    )
    .unwrap();
    let client = Client::new(
        TokenExchange::new(
            p.token_url(),
            "dev-client",
            "dev-secret",
            AssertionSource::client(front.clone()),
            token_type::ACCESS_TOKEN,
        )
        .audience("orders")
        .scopes(["campaigns:read"]),
        options(),
    )
    .unwrap();

    let first = client.token().unwrap();
    assert_eq!(first.issued_token_type(), Some(token_type::ACCESS_TOKEN));
    assert_eq!(first.scope(), Some("campaigns:read"));
    let s1 = front
        .cached_token()
        .unwrap()
        .access_token()
        .expose_secret()
        .to_owned();
    let x1 = first.access_token().expose_secret().to_owned();
    assert_eq!(p.token_info(&x1)["aud"], json!(["orders"]));
    assert_eq!(p.api_status(&x1), 200);

    // The provider revokes the subject client's token, which that client still caches:
    // the next exchange is refused, the client renews, and its next token is exchanged.
    let since = p.last_seq();
    let (status, _) = p.post_json("/_control/revoke_token", json!({"tag": tag(&s1)}));
    assert_eq!(status, 200);
    let second = client.refresh().unwrap();
    let x2 = second.access_token().expose_secret().to_owned();
    let s2 = front
        .cached_token()
        .unwrap()
        .access_token()
        .expose_secret()
        .to_owned();
    assert_ne!(s1, s2, "the subject client renewed");
    assert_ne!(x1, x2);
    assert_eq!(
        p.exchanges(since),
        [
            ("refused".to_owned(), tag(&s1), None),
            ("issued".to_owned(), tag(&s2), Some(tag(&x2))),
        ]
    );
    let renewed_subject: Vec<_> = p
        .journal(since)
        .into_iter()
        .filter(|e| e["event"] == "token" && e["grant"] == "oauth2/client_credentials")
        .map(|e| e["access"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(renewed_subject, [Some(tag(&s2))], "one subject renewal");
    assert_eq!(p.api_status(&x2), 200);
    assert_eq!(p.token_info(&x2)["sub"], "dev-client");
}

/// `authcore token --provider token-exchange` at the provider, as `dev-client`.
fn exchange_command(p: &Provider) -> Command {
    let mut c = authcore();
    c.args([
        "token",
        "--provider",
        "token-exchange",
        "--token-url",
        &p.token_url(),
        "--client-id",
        "dev-client",
    ])
    .env("AUTHCORE_CLIENT_SECRET", "dev-secret");
    c
}

fn printed(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn the_cli_exchanges_a_subject_token_from_a_file_or_a_command() {
    let p = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subject-token");
    let subject = p.client_token("campaigns:read reporting:read");
    std::fs::write(&file, format!("{subject}\n")).unwrap();

    let out = exchange_command(&p)
        .arg("--subject-token-file")
        .arg(&file)
        .args(["--audience", "orders", "--scope", "campaigns:read"])
        .output()
        .unwrap();
    let exchanged = printed(&out);
    assert_ne!(exchanged, subject);
    let info = p.token_info(&exchanged);
    assert_eq!(
        (info["aud"].clone(), info["scope"].clone()),
        (json!(["orders"]), json!("campaigns:read"))
    );
    assert_eq!(p.api_status(&exchanged), 200);

    let out = exchange_command(&p)
        .args(["--subject-token-command", "cat", "--subject-token-arg"])
        .arg(&file)
        .args(["--requested-token-type", "access_token"])
        .output()
        .unwrap();
    let by_command = printed(&out);
    assert_eq!(
        p.token_info(&by_command)["scope"],
        "campaigns:read reporting:read"
    );

    // The subject token revoked: refused (exit 3), and never printed.
    p.post_json("/_control/revoke_token", json!({"tag": tag(&subject)}));
    let out = exchange_command(&p)
        .arg("--subject-token-file")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid_grant"), "{stderr}");
    assert!(!stderr.contains(&subject), "{stderr}");
    assert!(out.stdout.is_empty());

    // A missing file: a configuration error naming it (exit 2).
    let out = exchange_command(&p)
        .arg("--subject-token-file")
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

#[test]
fn the_cli_chains_a_subject_client_and_shares_the_exchanged_token_through_a_store() {
    let p = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        exchange_command(&p)
            .args([
                "--subject-client-credentials",
                "--subject-scope",
                "campaigns:read reporting:read",
                "--scope",
                "reporting:read",
                "--audience",
                "reports",
                "--store",
            ])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let since = p.last_seq();
    let first = printed(&run());
    let info = p.token_info(&first);
    assert_eq!(
        (info["aud"].clone(), info["scope"].clone()),
        (json!(["reports"]), json!("reporting:read"))
    );
    let subjects: Vec<_> = p
        .journal(since)
        .into_iter()
        .filter(|e| e["event"] == "token" && e["grant"] == "oauth2/client_credentials")
        .map(|e| e["access"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        p.exchanges(since),
        [("issued".to_owned(), subjects[0].clone(), Some(tag(&first)))]
    );
    // The next run finds the exchanged token in the store: nothing is requested.
    let second = printed(&run());
    assert_eq!(second, first);
    assert_eq!(p.exchanges(since).len(), 1);
}

#[test]
fn the_cli_refuses_exchange_options_it_cannot_use() {
    let p = Provider::start();
    // Exchange options without the exchange.
    let out = authcore()
        .args([
            "token",
            "--provider",
            "client-credentials",
            "--token-url",
            &p.token_url(),
            "--client-id",
            "dev-client",
            "--audience",
            "orders",
        ])
        .env("AUTHCORE_CLIENT_SECRET", "dev-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token-exchange"));
    // No subject, or two.
    let out = exchange_command(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--subject-token-file"));
    let out = exchange_command(&p)
        .args(["--subject-token-file", "a", "--subject-client-credentials"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(p.exchanges(0).len(), 0, "nothing was sent");
    // The help says how.
    let out = authcore().args(["token", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--subject-token-file",
        "--subject-token-command",
        "--subject-client-credentials",
        "--audience",
        "--requested-token-type",
        "token-exchange",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

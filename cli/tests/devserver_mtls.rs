//! Mutual TLS (RFC 8705) at the development provider, run as its own process in TLS
//! mode: `tls_client_auth` (a certificate from its CA with the registered subject) and
//! `self_signed_tls_client_auth` (the registered thumbprint), tokens bound to the
//! certificate (`cnf.x5t#S256` in introspection, the journal and the API's answer),
//! refused at the API on a connection without that certificate, the metadata's
//! `mtls_endpoint_aliases`, and clients without a certificate served as before.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authcore::grant::{ClientCredentials, StaticToken};
use authcore::{AuthMethod, Client, ClientCertificate, ErrorKind, Metadata, Options};
use authcore_cli::devserver::{tag, Event, Journal, ResourceOutcome};
use serde_json::{json, Value};

/// `authcore devserver --tls-dir` as a child process; killed when dropped.
struct TlsDevserver {
    child: Child,
    url: String,
    ca: PathBuf,
    _dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl TlsDevserver {
    fn start() -> TlsDevserver {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_authcore"))
            .args(["devserver", "--port", "0", "--tls-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut url = None;
        for line in BufReader::new(stdout).lines().take(100) {
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
            panic!("the devserver printed no address");
        };
        let ca = dir.path().join("ca.pem");
        let pem = std::fs::read(&ca).unwrap();
        let roots: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                    .build(),
            )
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        TlsDevserver {
            child,
            url,
            ca,
            _dir: dir,
            agent,
        }
    }

    /// `POST /_control/NAME` with a JSON body: the answer's status and JSON.
    fn control(&self, name: &str, body: Value) -> (u16, Value) {
        let mut response = self
            .agent
            .post(format!("{}/_control/{name}", self.url))
            .send_json(body)
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    fn get(&self, path: &str) -> Value {
        self.agent
            .get(format!("{}{path}", self.url))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    /// A client certificate made by the provider (issued by its CA, or self-signed),
    /// written to files: the certificate, and the answer (subject, thumbprint).
    fn client_certificate(&self, cn: &str, self_signed: bool) -> (ClientCertificate, Value) {
        let (status, answer) = self.control(
            "client_certificate",
            json!({"cn": cn, "self_signed": self_signed}),
        );
        assert_eq!(status, 200, "{answer}");
        let cert = ClientCertificate::from_pem(
            answer["certificate"].as_str().unwrap().as_bytes(),
            answer["key"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        assert_eq!(cert.thumbprint(), answer["x5t#S256"].as_str().unwrap());
        assert_eq!(cert.subject(), answer["subject"].as_str().unwrap());
        (cert, answer)
    }

    /// An HTTP agent that trusts the provider and presents the certificate of `answer`
    /// (as `client_certificate` gives it).
    fn agent_with(&self, answer: &Value) -> ureq::Agent {
        let pem = std::fs::read(&self.ca).unwrap();
        let certs = |pem: &[u8]| -> Vec<_> {
            ureq::tls::parse_pem(pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect()
        };
        let key =
            ureq::tls::PrivateKey::from_pem(answer["key"].as_str().unwrap().as_bytes()).unwrap();
        let chain = certs(answer["certificate"].as_str().unwrap().as_bytes());
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs(&pem)))
                    .client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)))
                    .build(),
            )
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    fn options(&self) -> Options {
        Options::default()
            .ca_bundle(&self.ca)
            .timeout(Duration::from_secs(10))
    }
}

impl Drop for TlsDevserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_client_auth_gets_a_bound_token_the_api_takes_only_with_that_certificate() {
    let s = TlsDevserver::start();
    let (cert, answer) = s.client_certificate("billing", false);
    assert!(cert.subject().contains("CN=billing"), "{}", cert.subject());
    let (status, _) = s.control(
        "config",
        json!({"mtls_clients": [{"client_id": "billing", "tls_client_auth_subject_dn": answer["subject"]}]}),
    );
    assert_eq!(status, 200);
    let metadata = Metadata::discover(&s.url, &s.options()).unwrap();
    assert!(metadata.tls_client_certificate_bound_access_tokens);
    assert_eq!(
        metadata.mtls_alias("token_endpoint"),
        Some(format!("{}/mtls/oauth2/token", s.url).as_str())
    );
    assert!(metadata
        .token_endpoint_auth_methods_supported
        .iter()
        .any(|m| m == "tls_client_auth"));
    let client = Client::new(
        ClientCredentials::from_metadata(&metadata, "billing", "")
            .unwrap()
            .auth_method(AuthMethod::TlsClientAuth),
        s.options().client_certificate(cert.clone()),
    )
    .unwrap();
    let token = client.token().unwrap();
    let access = token.access_token().expose_secret().to_owned();
    let response = client.get(&format!("{}/api/things", s.url)).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["sub"], "billing");
    assert_eq!(body["cnf"]["x5t#S256"], cert.thumbprint());
    let info = s.get(&format!("/_control/token?tag={}", tag(&access)));
    assert_eq!(info["cnf"]["x5t#S256"], cert.thumbprint(), "{info}");
    // The bound token on a connection without a certificate, and with another one.
    let (other, _) = s.client_certificate("someone-else", false);
    for options in [s.options(), s.options().client_certificate(other)] {
        let thief = Client::new(StaticToken::new(access.clone()), options).unwrap();
        let response = thief.get(&format!("{}/api/things", s.url)).unwrap();
        assert_eq!(response.status, 401, "{}", response.text());
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }
    let journal: Journal = serde_json::from_value(s.get("/_control/journal")).unwrap();
    let bound: Vec<_> = journal
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Token { x5t, sub, .. } => Some((x5t.clone(), sub.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        bound,
        [(
            Some(cert.thumbprint().to_owned()),
            Some("billing".to_owned())
        )]
    );
    let refused = journal
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::Resource {
                    outcome: ResourceOutcome::CertificateMismatch,
                    ..
                }
            )
        })
        .count();
    assert_eq!(refused, 2);
}

#[test]
fn self_signed_tls_client_auth_is_matched_by_thumbprint_and_other_certificates_are_refused() {
    let s = TlsDevserver::start();
    let (edge, edge_answer) = s.client_certificate("edge", true);
    let (stranger, _) = s.client_certificate("edge", true);
    // A self-signed certificate whose subject a tls_client_auth client has registered:
    // not issued by the provider's CA, so refused.
    let (status, _) = s.control(
        "config",
        json!({"mtls_clients": [
            {"client_id": "edge", "x5t#S256": edge_answer["x5t#S256"]},
            {"client_id": "pki", "tls_client_auth_subject_dn": edge_answer["subject"]},
        ]}),
    );
    assert_eq!(status, 200);
    let token_url = format!("{}/oauth2/token", s.url);
    let client = |id: &str, method: AuthMethod, cert: &ClientCertificate| {
        Client::new(
            ClientCredentials::new(&token_url, id, "").auth_method(method),
            s.options().client_certificate(cert.clone()),
        )
        .unwrap()
    };
    let token = client("edge", AuthMethod::SelfSignedTlsClientAuth, &edge)
        .token()
        .unwrap();
    let info = s.get(&format!(
        "/_control/token?tag={}",
        tag(token.access_token().expose_secret())
    ));
    assert_eq!(info["cnf"]["x5t#S256"], edge.thumbprint(), "{info}");
    assert_eq!(info["sub"], "edge");
    for (id, method, cert) in [
        ("edge", AuthMethod::SelfSignedTlsClientAuth, &stranger),
        ("pki", AuthMethod::TlsClientAuth, &edge),
    ] {
        let e = client(id, method, cert).token().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OAuth, "{e}");
        assert_eq!(e.oauth().map(|o| o.error.as_str()), Some("invalid_client"));
    }
}

#[test]
fn clients_without_a_certificate_are_served_as_before_but_not_at_the_mtls_aliases() {
    let s = TlsDevserver::start();
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/oauth2/token", s.url),
            "dev-client",
            "dev-secret",
        ),
        s.options(),
    )
    .unwrap();
    let token = client.token().unwrap();
    assert_eq!(client.get(&format!("{}/api/x", s.url)).unwrap().status, 200);
    let info = s.get(&format!(
        "/_control/token?tag={}",
        tag(token.access_token().expose_secret())
    ));
    assert!(info.get("cnf").is_none(), "unbound: {info}");
    let alias = Client::new(
        ClientCredentials::new(
            format!("{}/mtls/oauth2/token", s.url),
            "dev-client",
            "dev-secret",
        ),
        s.options(),
    )
    .unwrap();
    let e = alias.token().unwrap_err();
    assert_eq!(e.oauth().map(|o| o.error.as_str()), Some("invalid_client"));
    // A registration without a subject or thumbprint is refused.
    let (status, _) = s.control("config", json!({"mtls_clients": [{"client_id": "x"}]}));
    assert_eq!(status, 400);
}

#[test]
fn an_mtls_clients_access_token_is_revoked_by_that_client_only() {
    let s = TlsDevserver::start();
    let (cert, billing) = s.client_certificate("billing", false);
    let (_, other) = s.client_certificate("other", false);
    let (status, _) = s.control(
        "config",
        json!({"mtls_clients": [
            {"client_id": "billing", "tls_client_auth_subject_dn": billing["subject"]},
            {"client_id": "other", "tls_client_auth_subject_dn": other["subject"]},
        ]}),
    );
    assert_eq!(status, 200);
    let client = Client::new(
        ClientCredentials::new(format!("{}/oauth2/token", s.url), "billing", "")
            .auth_method(AuthMethod::TlsClientAuth)
            .revocation_url(format!("{}/oauth2/revoke", s.url)),
        s.options().client_certificate(cert),
    )
    .unwrap();
    let access = client
        .token()
        .unwrap()
        .access_token()
        .expose_secret()
        .to_owned();
    let active = || s.get(&format!("/_control/token?tag={}", tag(&access)))["active"].clone();
    // The confidential client with its secret, another mTLS client with its
    // certificate: refused (RFC 7009 §2.1), and the token stays valid.
    let revoke = format!("{}/oauth2/revoke", s.url);
    for (agent, who) in [
        (&s.agent, "client_id=dev-client&client_secret=dev-secret"),
        (&s.agent_with(&other), "client_id=other"),
    ] {
        let mut answer = agent
            .post(&revoke)
            .content_type("application/x-www-form-urlencoded")
            .send(format!("token={access}&{who}"))
            .unwrap();
        let status = answer.status().as_u16();
        let body: Value = answer.body_mut().read_json().unwrap_or(Value::Null);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unauthorized_client")),
            "{who}: {body}"
        );
        assert_eq!(active(), json!(true), "{who}");
    }
    // Its own client, authenticated by its certificate: revoked.
    client.revoke().unwrap();
    assert_eq!(active(), json!(false));
}

/// `authcore` with no credentials from the environment.
fn authcore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_authcore"));
    for var in [
        "AUTHCORE_API_KEY",
        "AUTHCORE_CLIENT_SECRET",
        "AUTHCORE_REFRESH_TOKEN",
        "AUTHCORE_TOKEN",
        "AUTHCORE_CLIENT_ID",
        "AUTHCORE_ISSUER",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn the_cli_presents_the_client_certificate_for_the_token_and_the_headers() {
    let s = TlsDevserver::start();
    let (cert, answer) = s.client_certificate("billing", false);
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    std::fs::write(&cert_file, answer["certificate"].as_str().unwrap()).unwrap();
    std::fs::write(&key_file, answer["key"].as_str().unwrap()).unwrap();
    let (status, _) = s.control(
        "config",
        json!({"mtls_clients": [{"client_id": "billing", "tls_client_auth_subject_dn": answer["subject"]}]}),
    );
    assert_eq!(status, 200);
    let run = |extra: &[&str], key: &std::path::Path| {
        authcore()
            .args(extra)
            .args(["--client-id", "billing", "--auth-method", "tls-client-auth"])
            .arg("--ca-bundle")
            .arg(&s.ca)
            .arg("--client-cert")
            .arg(&cert_file)
            .arg("--client-key")
            .arg(key)
            .output()
            .unwrap()
    };
    // At the token endpoint, and through discovery (the mTLS alias).
    let token_url = format!("{}/oauth2/token", s.url);
    for how in [
        vec![
            "token",
            "--provider",
            "client-credentials",
            "--token-url",
            &token_url,
        ],
        vec![
            "token",
            "--provider",
            "client-credentials",
            "--issuer",
            &s.url,
        ],
    ] {
        let out = run(&how, &key_file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let info = s.get(&format!("/_control/token?tag={}", tag(&token)));
        assert_eq!(info["cnf"]["x5t#S256"], cert.thumbprint(), "{info}");
    }
    let api = format!("{}/api/x", s.url);
    let out = run(
        &[
            "headers",
            "--provider",
            "client-credentials",
            "--token-url",
            &token_url,
            "--url",
            &api,
        ],
        &key_file,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = String::from_utf8(out.stdout).unwrap();
    assert!(headers.starts_with("Authorization: Bearer "), "{headers}");
    // A key that is not the certificate's: a configuration error, the key not shown.
    let (_, other) = s.client_certificate("other", false);
    let other_key = dir.path().join("other.key");
    let other_pem = other["key"].as_str().unwrap();
    std::fs::write(&other_key, other_pem).unwrap();
    let out = run(
        &[
            "token",
            "--provider",
            "client-credentials",
            "--token-url",
            &token_url,
        ],
        &other_key,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not the key of the client certificate"),
        "{stderr}"
    );
    let body: String = other_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for chunk in body.as_bytes().chunks(16) {
        assert!(
            !stderr.contains(std::str::from_utf8(chunk).unwrap()),
            "{stderr}"
        );
    }
    // tls-client-auth without a certificate: a configuration error.
    let out = authcore()
        .args([
            "token",
            "--provider",
            "client-credentials",
            "--token-url",
            &token_url,
        ])
        .args(["--client-id", "billing", "--auth-method", "tls-client-auth"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_mtls_client_does_not_redeem_the_confidential_clients_code() {
    let s = TlsDevserver::start();
    let (_, billing) = s.client_certificate("billing", false);
    let (status, _) = s.control(
        "config",
        json!({"mtls_clients": [
            {"client_id": "billing", "tls_client_auth_subject_dn": billing["subject"]},
        ]}),
    );
    assert_eq!(status, 200);
    let no_redirects: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(
                    &ureq::tls::parse_pem(&std::fs::read(&s.ca).unwrap())
                        .filter_map(|i| match i {
                            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                ))
                .build(),
        )
        .build()
        .into();
    let redirect = "http://127.0.0.1:9/cb";
    let r = no_redirects
        .get(format!(
            "{}/oauth2/authorize?client_id=dev-client&response_type=code&redirect_uri={redirect}",
            s.url
        ))
        .call()
        .unwrap();
    let location = r.headers().get("location").unwrap().to_str().unwrap();
    let code = url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let mut answer = s
        .agent_with(&billing)
        .post(format!("{}/oauth2/token", s.url))
        .content_type("application/x-www-form-urlencoded")
        .send(format!(
            "grant_type=authorization_code&code={code}&redirect_uri={redirect}&client_id=billing"
        ))
        .unwrap();
    let status = answer.status().as_u16();
    let body: Value = answer.body_mut().read_json().unwrap_or(Value::Null);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

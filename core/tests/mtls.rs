//! Mutual TLS (RFC 8705) against a real TLS server on loopback that asks for client
//! certificates from a CA made here: the certificate is presented to the token endpoint
//! (`tls_client_auth`: the client id in the body, no secret) and to the API alike; the
//! `mtls_endpoint_aliases` of discovered metadata are used only with a certificate; a
//! certificate or key that cannot be used is a configuration error that never shows the
//! key, and the certificate shows only its subject and thumbprint.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authcore::grant::ClientCredentials;
use authcore::{AuthMethod, Client, ClientCertificate, ErrorKind, Metadata};
use base64::Engine;
use common::{check_error, opts};
use sha2::{Digest, Sha256};

/// A CA, a server certificate for 127.0.0.1, and client certificates it issues.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    ca_params: rcgen::CertificateParams,
    ca_key_pem: String,
}

/// A client certificate and key, as files.
struct ClientFiles {
    cert: PathBuf,
    key: PathBuf,
    key_pem: String,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params.clone(), ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let pki = Pki {
            ca: dir.path().join("ca.pem"),
            server_cert: dir.path().join("server.pem"),
            server_key: dir.path().join("server.key"),
            dir,
            ca_params,
            ca_key_pem,
        };
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        std::fs::write(&pki.server_cert, server.pem()).unwrap();
        std::fs::write(&pki.server_key, server_key.serialize_pem()).unwrap();
        pki
    }

    /// A client certificate with this common name, issued by the CA.
    fn client(&self, name: &str) -> ClientFiles {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
        let issuer = Issuer::new(
            self.ca_params.clone(),
            KeyPair::from_pem(&self.ca_key_pem).unwrap(),
        );
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let files = ClientFiles {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, &files.key_pem).unwrap();
        files
    }
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    body: String,
    authorization: Option<String>,
    /// The `x5t#S256` of the certificate the connection presented.
    cert: Option<String>,
}

/// An HTTPS server on 127.0.0.1 that asks for a client certificate from the CA (and
/// serves clients without one too), and records every request. Answers: metadata at
/// the RFC 8414 location (with mTLS aliases under `/mtls/`), a token at `/token` and
/// `/mtls/token`, 200 at `/revoke` and `/mtls/revoke`, and at `/api` 200 with a
/// certificate, 401 without.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(pki: &Pki) -> Server {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&pki.ca).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    vec![CertificateDer::from_pem_file(&pki.server_cert).unwrap()],
                    PrivateKeyDer::from_pem_file(&pki.server_key).unwrap(),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, log, base) = (stop.clone(), seen.clone(), url.clone());
        let thread = std::thread::spawn(move || {
            let end = std::time::Instant::now() + Duration::from_secs(60);
            while !s.load(SeqCst) && std::time::Instant::now() < end {
                let Ok((tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let tls = rustls::StreamOwned::new(conn, tcp);
                serve(tls, &base, &log);
            }
        });
        Server {
            url,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Answers one request on one connection (then closes it).
fn serve(
    mut tls: rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
    base: &str,
    log: &Mutex<Vec<Seen>>,
) {
    let mut reader = BufReader::new(&mut tls);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let (mut length, mut authorization) = (0usize, None);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    authorization = Some(line["authorization:".len()..].trim().to_owned());
                }
            }
        }
    }
    let mut body = vec![0u8; length.min(64 * 1024)];
    let _ = reader.read_exact(&mut body);
    drop(reader);
    let cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(c)));
    let (status, answer) = match path.as_str() {
        "/.well-known/oauth-authorization-server" => (
            200,
            serde_json::json!({
                "issuer": base,
                "token_endpoint": format!("{base}/token"),
                "revocation_endpoint": format!("{base}/revoke"),
                "token_endpoint_auth_methods_supported": ["tls_client_auth"],
                "tls_client_certificate_bound_access_tokens": true,
                "mtls_endpoint_aliases": {
                    "token_endpoint": format!("{base}/mtls/token"),
                    "revocation_endpoint": format!("{base}/mtls/revoke"),
                    "userinfo_endpoint": 7,
                },
            })
            .to_string(),
        ),
        "/token" | "/mtls/token" => (
            200,
            r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600,"token_type":"Bearer"}"#
                .to_owned(),
        ),
        "/revoke" | "/mtls/revoke" => (200, String::new()),
        "/api" if cert.is_some() => (200, r#"{"ok":true}"#.to_owned()),
        _ => (401, r#"{"error":"invalid_token"}"#.to_owned()),
    };
    log.lock().unwrap().push(Seen {
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
        authorization,
        cert,
    });
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(answer.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn cert(files: &ClientFiles) -> ClientCertificate {
    ClientCertificate::from_pem_files(&files.cert, &files.key).unwrap()
}

fn thumbprint_of_file(path: &Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(path).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&der))
}

#[test]
fn tls_client_auth_sends_the_client_id_and_the_certificate_and_no_secret() {
    let pki = Pki::new();
    let server = Server::start(&pki);
    let files = pki.client("billing");
    let certificate = cert(&files);
    assert_eq!(certificate.thumbprint(), thumbprint_of_file(&files.cert));
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", server.url), "billing-id", "")
            .auth_method(AuthMethod::TlsClientAuth),
        opts()
            .ca_bundle(&pki.ca)
            .client_certificate(certificate.clone()),
    )
    .unwrap();
    let token = client.token().unwrap();
    assert_eq!(token.access_token().expose_secret(), "at-one-1a2b3c4d5e");
    let response = client.get(&format!("{}/api", server.url)).unwrap();
    assert_eq!(response.status, 200, "the API saw the certificate");
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let token_request = &seen[0];
    assert_eq!(token_request.path, "/token");
    assert!(
        token_request.body.contains("client_id=billing-id"),
        "{token_request:?}"
    );
    assert!(
        !token_request.body.contains("client_secret"),
        "{token_request:?}"
    );
    assert_eq!(token_request.authorization, None, "no Basic credentials");
    for s in &seen {
        assert_eq!(
            s.cert.as_deref(),
            Some(certificate.thumbprint()),
            "{} presented the certificate",
            s.path
        );
    }
}

#[test]
fn without_a_certificate_the_api_refuses_and_a_tls_client_auth_client_is_not_built() {
    let pki = Pki::new();
    let server = Server::start(&pki);
    // The mTLS methods need a certificate: refused before anything is sent.
    for method in [
        AuthMethod::TlsClientAuth,
        AuthMethod::SelfSignedTlsClientAuth,
    ] {
        let e = Client::new(
            ClientCredentials::new(format!("{}/token", server.url), "billing-id", "")
                .auth_method(method),
            opts().ca_bundle(&pki.ca),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("client certificate"), "{e}");
    }
    // A client without a certificate presents none, and this API wants one.
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", server.url), "id", "cs+/=:secret-9f8e7d"),
        opts().ca_bundle(&pki.ca),
    )
    .unwrap();
    let response = client.get(&format!("{}/api", server.url)).unwrap();
    assert_eq!(response.status, 401);
    assert!(server.seen().iter().all(|s| s.cert.is_none()));
    assert_eq!(
        AuthMethod::from_name("tls_client_auth"),
        Some(AuthMethod::TlsClientAuth)
    );
    assert_eq!(
        AuthMethod::from_name("self_signed_tls_client_auth"),
        Some(AuthMethod::SelfSignedTlsClientAuth)
    );
}

#[test]
fn discovered_mtls_aliases_are_used_only_with_a_certificate() {
    let pki = Pki::new();
    let server = Server::start(&pki);
    let files = pki.client("billing");
    let metadata = Metadata::discover(&server.url, &opts().ca_bundle(&pki.ca)).unwrap();
    assert!(metadata.tls_client_certificate_bound_access_tokens);
    assert_eq!(
        metadata.mtls_alias("token_endpoint"),
        Some(format!("{}/mtls/token", server.url).as_str())
    );
    assert_eq!(
        metadata.mtls_alias("userinfo_endpoint"),
        None,
        "not a string: left out"
    );
    let with_cert = Client::new(
        ClientCredentials::from_metadata(&metadata, "billing-id", "")
            .unwrap()
            .auth_method(AuthMethod::TlsClientAuth),
        opts().ca_bundle(&pki.ca).client_certificate(cert(&files)),
    )
    .unwrap();
    with_cert.token().unwrap();
    with_cert.revoke().unwrap();
    let without = Client::new(
        ClientCredentials::from_metadata(&metadata, "id", "cs+/=:secret-9f8e7d").unwrap(),
        opts().ca_bundle(&pki.ca),
    )
    .unwrap();
    without.token().unwrap();
    let paths: Vec<(String, bool)> = server
        .seen()
        .into_iter()
        .filter(|s| !s.path.starts_with("/.well-known"))
        .map(|s| (s.path, s.cert.is_some()))
        .collect();
    assert_eq!(
        paths,
        [
            ("/mtls/token".to_owned(), true),
            ("/mtls/revoke".to_owned(), true),
            ("/token".to_owned(), false),
        ]
    );
}

#[test]
fn a_certificate_or_key_that_cannot_be_used_is_a_configuration_error_without_the_key() {
    let pki = Pki::new();
    let billing = pki.client("billing");
    let other = pki.client("other");
    let key_body = |pem: &str| {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
    };
    let check = |e: authcore::Error, says: &str| {
        check_error(&e);
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let text = format!("{e} {e:?}");
        assert!(text.contains(says), "{text}");
        for files in [&billing, &other] {
            let body = key_body(&files.key_pem);
            for chunk in body.as_bytes().chunks(16) {
                let chunk = std::str::from_utf8(chunk).unwrap();
                assert!(!text.contains(chunk), "key material in: {text}");
            }
        }
    };
    // Another certificate's key.
    check(
        ClientCertificate::from_pem_files(&billing.cert, &other.key).unwrap_err(),
        "not the key of the client certificate",
    );
    // The key where the certificate belongs, and the other way round.
    check(
        ClientCertificate::from_pem_files(&billing.key, &billing.key).unwrap_err(),
        "holds no certificate",
    );
    check(
        ClientCertificate::from_pem_files(&billing.cert, &billing.cert).unwrap_err(),
        "holds no private key",
    );
    // A damaged key: its base64 cut short.
    let damaged = billing.key_pem.replacen("M", "!", 3);
    check(
        ClientCertificate::from_pem(
            std::fs::read(&billing.cert).unwrap().as_slice(),
            damaged.as_bytes(),
        )
        .unwrap_err(),
        "client key",
    );
    // A file that is not there is named.
    let missing = pki.dir.path().join("missing.key");
    check(
        ClientCertificate::from_pem_files(&billing.cert, &missing).unwrap_err(),
        "missing.key",
    );
    // One PEM holding both works.
    let both = pki.dir.path().join("both.pem");
    std::fs::write(
        &both,
        format!(
            "{}{}",
            std::fs::read_to_string(&billing.cert).unwrap(),
            billing.key_pem
        ),
    )
    .unwrap();
    ClientCertificate::from_pem_files(&both, &both).unwrap();
}

#[test]
fn the_certificate_shows_its_subject_and_thumbprint_never_its_key() {
    let pki = Pki::new();
    let files = pki.client("billing");
    let certificate = cert(&files);
    assert!(
        certificate.subject().contains("CN=billing"),
        "{}",
        certificate.subject()
    );
    assert!(
        certificate.subject().contains("O=Example"),
        "{}",
        certificate.subject()
    );
    let options = opts().client_certificate(certificate.clone());
    let shown = format!("{options:?} {certificate:?}");
    assert!(shown.contains("CN=billing"), "{shown}");
    assert!(shown.contains(certificate.thumbprint()), "{shown}");
    let body: String = files
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for chunk in body.as_bytes().chunks(16) {
        assert!(
            !shown.contains(std::str::from_utf8(chunk).unwrap()),
            "{shown}"
        );
    }
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[test]
fn tokens_from_a_certificate_are_filed_under_its_thumbprint() {
    let pki = Pki::new();
    let server = Server::start(&pki);
    let store = Arc::new(Recording::default());
    let files = pki.client("billing");
    let certificate = cert(&files);
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", server.url), "billing-id", "")
            .auth_method(AuthMethod::TlsClientAuth),
        opts()
            .ca_bundle(&pki.ca)
            .client_certificate(certificate.clone())
            .store(store.clone()),
    )
    .unwrap();
    client.token().unwrap();
    let keys = store.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0]
            .as_str()
            .contains(&format!("x5t#S256={}", certificate.thumbprint())),
        "{keys:?}"
    );
}

/// A memory store that records the keys it saves under.
#[derive(Default)]
struct Recording {
    inner: authcore::MemoryStore,
    keys: Mutex<Vec<authcore::StoreKey>>,
}

impl authcore::TokenStore for Recording {
    fn load(
        &self,
        lock: &authcore::StoreLock,
        key: &authcore::StoreKey,
    ) -> authcore::Result<Option<authcore::StoredToken>> {
        self.inner.load(lock, key)
    }
    fn lock(
        &self,
        key: &authcore::StoreKey,
        deadline: std::time::Instant,
    ) -> authcore::Result<authcore::StoreLock> {
        self.inner.lock(key, deadline)
    }
    fn save(
        &self,
        lock: &authcore::StoreLock,
        key: &authcore::StoreKey,
        token: &authcore::StoredToken,
    ) -> authcore::Result<()> {
        self.keys.lock().unwrap().push(key.clone());
        self.inner.save(lock, key, token)
    }
    fn remove(&self, lock: &authcore::StoreLock, key: &authcore::StoreKey) -> authcore::Result<()> {
        self.inner.remove(lock, key)
    }
}

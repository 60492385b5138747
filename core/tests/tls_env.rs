//! `SSL_CERT_FILE` is honoured: a CA named there is trusted by a client with default
//! options — and a file that cannot be used is a `Config` error naming the variable,
//! never a quiet fallback to other roots. One test in its own binary: the variables are
//! process-wide, and the trust store, once read, is kept for the process (a failure is
//! not kept, so the cases that fail run first).

mod common;

use authcore::ErrorKind;
use common::redis::Pki;
use common::tls::{client_with_default_trust, token_with_default_trust, TlsServer};

/// Client construction with `SSL_CERT_FILE` set to `value` fails with a `Config` error
/// that names the variable and says `why`.
fn refused(value: &std::path::Path, why: &str) {
    std::env::set_var("SSL_CERT_FILE", value);
    let e = common::err(client_with_default_trust("https://127.0.0.1:9"));
    assert_eq!(e.kind(), ErrorKind::Config, "{value:?}: {e}");
    let message = e.to_string();
    assert!(message.contains("SSL_CERT_FILE"), "{message}");
    assert!(message.contains(why), "{value:?}: {message}");
}

#[test]
fn the_ca_in_ssl_cert_file_is_trusted_by_default_and_a_bad_file_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    std::env::remove_var("SSL_CERT_DIR");

    refused(&dir.path().join("missing.pem"), "No such file");
    refused(dir.path(), "cannot be used");
    let text = dir.path().join("text.pem");
    std::fs::write(&text, "no certificate here\n").unwrap();
    refused(&text, "holds no certificate");
    // A key is not a certificate.
    refused(&pki.files[2], "holds no certificate");
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    refused(&broken, "not valid PEM");

    std::env::set_var("SSL_CERT_FILE", &pki.files[0]);
    let server = TlsServer::start(&pki);
    assert_eq!(token_with_default_trust(&server), "at-one-1a2b3c4d5e");
}

//! `SSL_CERT_DIR` is honoured: a CA in a directory named there is trusted by a client
//! with default options — and a directory that cannot be used is a `Config` error naming
//! the variable, never a quiet fallback to other roots. One test in its own binary: the
//! variables are process-wide, and the trust store, once read, is kept for the process
//! (a failure is not kept, so the cases that fail run first).

mod common;

use authcore::ErrorKind;
use common::redis::Pki;
use common::tls::{client_with_default_trust, token_with_default_trust, TlsServer};

/// Client construction with `SSL_CERT_DIR` set to `value` fails with a `Config` error
/// that names the variable and says `why`.
fn refused(value: &std::ffi::OsStr, why: &str) {
    std::env::set_var("SSL_CERT_DIR", value);
    let e = common::err(client_with_default_trust("https://127.0.0.1:9"));
    assert_eq!(e.kind(), ErrorKind::Config, "{value:?}: {e}");
    let message = e.to_string();
    assert!(message.contains("SSL_CERT_DIR"), "{message}");
    assert!(message.contains(why), "{value:?}: {message}");
}

#[test]
fn a_ca_in_ssl_cert_dir_is_trusted_by_default_and_a_bad_directory_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let certs = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let junk = tempfile::tempdir().unwrap();
    std::fs::write(junk.path().join("readme.txt"), "no certificate here\n").unwrap();
    std::fs::copy(&pki.files[2], junk.path().join("server.key")).unwrap();
    std::env::remove_var("SSL_CERT_FILE");

    refused(dir.path().join("missing").as_os_str(), "cannot be read");
    refused(pki.files[0].as_os_str(), "cannot be read");
    refused(empty.path().as_os_str(), "no certificate was found");
    refused(junk.path().as_os_str(), "no certificate was found");
    // One of several directories missing is enough to refuse.
    std::fs::copy(&pki.files[0], certs.path().join("throwaway-ca.pem")).unwrap();
    let both = std::env::join_paths([certs.path(), &dir.path().join("missing")]).unwrap();
    refused(&both, "cannot be read");
    // A good SSL_CERT_FILE does not make up for a bad SSL_CERT_DIR.
    std::env::set_var("SSL_CERT_FILE", &pki.files[0]);
    refused(empty.path().as_os_str(), "no certificate was found");
    std::env::remove_var("SSL_CERT_FILE");

    // A directory with the CA among files that are not certificates: those are skipped.
    std::fs::copy(&pki.files[0], junk.path().join("throwaway-ca.pem")).unwrap();
    std::env::set_var("SSL_CERT_DIR", junk.path());
    let server = TlsServer::start(&pki);
    assert_eq!(token_with_default_trust(&server), "at-one-1a2b3c4d5e");
}

//! `SSL_CERT_DIR` is honoured: a CA in a directory named there is trusted by a client
//! with default options. One test in its own binary, so that the variables are set
//! before the trust store is first read (once per process) and no other test sees them.

mod common;

use common::redis::Pki;
use common::tls::{token_with_default_trust, TlsServer};

#[test]
fn a_ca_in_ssl_cert_dir_is_trusted_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&pki.files[0], certs.path().join("throwaway-ca.pem")).unwrap();
    std::env::remove_var("SSL_CERT_FILE");
    std::env::set_var("SSL_CERT_DIR", certs.path());
    let server = TlsServer::start(&pki);
    assert_eq!(token_with_default_trust(&server), "at-one-1a2b3c4d5e");
}

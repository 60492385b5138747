//! `SSL_CERT_FILE` is honoured: a CA named there is trusted by a client with default
//! options. One test in its own binary, so that the variable is set before the trust
//! store is first read (once per process) and no other test sees it.

mod common;

use common::redis::Pki;
use common::tls::{token_with_default_trust, TlsServer};

#[test]
fn the_ca_in_ssl_cert_file_is_trusted_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    std::env::set_var("SSL_CERT_FILE", &pki.files[0]);
    std::env::remove_var("SSL_CERT_DIR");
    let server = TlsServer::start(&pki);
    assert_eq!(token_with_default_trust(&server), "at-one-1a2b3c4d5e");
}

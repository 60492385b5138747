//! TLS trust against a real TLS server on loopback with a throwaway CA made here: the
//! platform's roots by default (this CA is not among them), a CA bundle of one's own,
//! and errors that say what went wrong — an untrusted certificate, a plain-HTTP port,
//! a proxy that refuses.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use authcore::grant::ClientCredentials;
use authcore::{Client, ErrorKind, Options, Proxy};
use common::redis::Pki;
use common::tls::TlsServer;
use common::{check_error, opts};

fn client(url: &str, options: Options) -> Result<Client, authcore::Error> {
    Client::new(
        ClientCredentials::new(format!("{url}/token"), "id", "cs+/=:secret-9f8e7d"),
        options,
    )
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused_and_the_error_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = TlsServer::start(&pki);
    let e = client(&server.url, opts()).unwrap().token().unwrap_err();
    check_error(&e);
    assert_eq!(e.kind(), ErrorKind::Transport);
    let text = e.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("not trusted"), "{text}");
    assert!(text.contains("127.0.0.1"), "names the host: {text}");
}

#[test]
fn a_ca_bundle_of_ones_own_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = TlsServer::start(&pki);
    let c = client(&server.url, opts().ca_bundle(&pki.files[0])).unwrap();
    assert_eq!(
        c.token().unwrap().access_token().expose_secret(),
        "at-one-1a2b3c4d5e"
    );
    // Another CA's bundle does not vouch for this server.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::new(other_dir.path());
    let e = client(&server.url, opts().ca_bundle(&other.files[0]))
        .unwrap()
        .token()
        .unwrap_err();
    assert!(e.to_string().contains("not trusted"), "{e}");
}

#[test]
fn a_ca_bundle_that_cannot_be_used_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let e = client("https://127.0.0.1:9", opts().ca_bundle(&missing)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let e = client("https://127.0.0.1:9", opts().ca_bundle(&empty)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("no certificate"), "{e}");
}

#[test]
fn tls_to_a_plain_http_port_says_so() {
    let mut plain = mockito::Server::new();
    plain.mock("POST", "/token").with_body("{}").create();
    let url = plain.url().replace("http://", "https://");
    let e = client(&url, opts()).unwrap().token().unwrap_err();
    check_error(&e);
    let text = e.to_string();
    assert!(
        text.contains("not TLS") || text.contains("plain HTTP"),
        "{text}"
    );
    assert!(text.contains("127.0.0.1"), "{text}");
}

#[test]
fn a_proxy_that_refuses_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        if let Ok((mut s, _)) = listener.accept() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
        }
    });
    // A remote host: reached through the proxy (only the proxy, on loopback, is contacted).
    let c = client(
        "https://auth.example.invalid",
        opts().proxy(Proxy::Url(proxy)),
    )
    .unwrap();
    let e = c.token().unwrap_err();
    check_error(&e);
    let text = e.to_string();
    assert!(text.contains("proxy"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "names the proxy: {text}"
    );
    t.join().unwrap();
}

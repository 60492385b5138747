//! A TLS token endpoint on loopback for the TLS tests: rustls with a certificate from a
//! throwaway CA, answering every request with one token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use super::redis::Pki;

/// A TLS token endpoint on 127.0.0.1 with a certificate from `pki`, answering every
/// request with a token. Stops when dropped.
pub struct TlsServer {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    /// Starts it; it serves for at most 30 s and stops when dropped.
    pub fn start(pki: &Pki) -> TlsServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_file(&pki.files[1]).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&pki.files[2]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = std::time::Instant::now() + Duration::from_secs(30);
            while !s.load(SeqCst) && std::time::Instant::now() < end {
                let Ok((tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut reader = BufReader::new(&mut tls);
                let mut length = 0usize;
                let mut line = String::new();
                // The handshake happens on the first read; a client that refuses the
                // certificate ends here.
                let mut ok = true;
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => {
                            ok = false;
                            break;
                        }
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                }
                if !ok {
                    continue;
                }
                let mut body = vec![0u8; length.min(64 * 1024)];
                let _ = reader.read_exact(&mut body);
                let json = br#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600,"token_type":"Bearer"}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    json.len()
                );
                let _ = tls.write_all(head.as_bytes());
                let _ = tls.write_all(json);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        TlsServer {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client with default options (default trust) for the token endpoint at `base`.
pub fn client_with_default_trust(base: &str) -> Result<authcore::Client, authcore::Error> {
    authcore::Client::new(
        authcore::grant::ClientCredentials::new(format!("{base}/token"), "id", "secret"),
        super::opts(),
    )
}

/// The access token a client with default options (default trust) gets from `server`.
pub fn token_with_default_trust(server: &TlsServer) -> String {
    let client = client_with_default_trust(&server.url).unwrap();
    client
        .token()
        .unwrap()
        .access_token()
        .expose_secret()
        .to_owned()
}

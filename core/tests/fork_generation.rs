//! `after_fork_in_child` starts per-process state afresh even when the process id gives
//! no sign (a grandchild with its grandparent's old id). Its own test binary: bumping
//! the fork generation would disturb tests running beside it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use authcore::grant::ClientCredentials;
use authcore::Client;
use common::opts;

#[test]
fn a_new_fork_generation_does_not_wait_for_an_inherited_renewal() {
    // A token endpoint: the first request hangs for 3 s, later ones answer at once.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let server = thread::spawn(move || {
        let mut handlers = Vec::new();
        for stream in listener.incoming().take(2) {
            let stream = stream.unwrap();
            let n = s.fetch_add(1, SeqCst);
            handlers.push(thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                if n == 0 {
                    thread::sleep(Duration::from_secs(3));
                }
                let body = format!(r#"{{"access_token":"at-{n}","expires_in":3600}}"#);
                let _ = write!(
                    &stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }));
        }
        for h in handlers {
            let _ = h.join();
        }
    });
    let client = Client::new(
        ClientCredentials::new(url, "id", "secret"),
        opts().timeout(Duration::from_secs(10)),
    )
    .unwrap();
    let leader = {
        let c = client.clone();
        thread::spawn(move || {
            c.token()
                .map(|t| t.access_token().expose_secret().to_owned())
        })
    };
    // The signal that the renewal is in flight: its connection was accepted.
    let in_flight = (0..2000).any(|_| {
        thread::sleep(Duration::from_millis(5));
        served.load(SeqCst) >= 1
    });
    assert!(in_flight, "the leader's renewal never reached the server");
    // As an at-fork child handler would: the renewal in flight belongs to "the parent".
    authcore::after_fork_in_child();
    let start = Instant::now();
    let own = client.token().unwrap();
    assert_eq!(own.access_token().expose_secret(), "at-1");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "renewed on its own instead of waiting for the inherited flight: {:?}",
        start.elapsed()
    );
    assert_eq!(leader.join().unwrap().unwrap(), "at-0");
    server.join().unwrap();
}

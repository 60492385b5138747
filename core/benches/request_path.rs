//! What an authenticated request costs on top of its HTTP stack, in instructions,
//! heap allocations and system calls (deterministic, unlike requests per second on
//! shared cores).
//!
//! One binary, three roles, chosen by the first argument after `--bench`:
//! - `server`: a keep-alive HTTP server on 127.0.0.1 (its own process, so that its work
//!   is not counted), printing its port; `POST /token` answers a token, anything else
//!   `{}`;
//! - `plain PORT N`: N `GET /api` with a `Bearer` header through a plain ureq agent
//!   (no timeouts), as an application without authcore would send them;
//! - `authcore PORT N` / `dpop PORT N`: N `Client::get` (a client-credentials client;
//!   with DPoP for `dpop`).
//!
//! Each client role sends 200 warm-up requests first. Nothing is measured inside: the
//! process runs under valgrind's cachegrind (instructions) or dhat (allocations), or
//! under strace (system calls), twice with two values of N; the difference divided by
//! the difference of N is the cost of one request, without the process's start-up and
//! the first token. `core/benches/request_path.sh` does all of that, for the C and
//! Python faces too, and prints the table kept in `core/BENCHMARKS.md`.

use std::hint::black_box;
use std::time::Duration;

const TOKEN: &str =
    r#"{"access_token":"at-bench-0123456789abcdef","token_type":"Bearer","expires_in":86400}"#;
const DPOP_TOKEN: &str =
    r#"{"access_token":"at-bench-0123456789abcdef","token_type":"DPoP","expires_in":86400}"#;

fn server() {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
    let port = server.server_addr().to_ip().expect("ip").port();
    println!("{port}");
    let json = tiny_http::Header::from_bytes("content-type", "application/json").expect("h");
    for mut request in server.incoming_requests() {
        let mut body = Vec::new();
        let _ = request.as_reader().read_to_end(&mut body);
        let answer = if request.url() == "/token" {
            let dpop = request.headers().iter().any(|h| h.field.equiv("dpop"));
            if dpop {
                DPOP_TOKEN
            } else {
                TOKEN
            }
        } else {
            "{}"
        };
        let response = tiny_http::Response::from_string(answer).with_header(json.clone());
        let _ = request.respond(response);
    }
}

/// Runs `f` 200 times (the warm-up), then `n` times.
fn measure(n: u64, mut f: impl FnMut()) {
    for _ in 0..200 + n {
        f();
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let role = args.first().map(String::as_str).unwrap_or("");
    if role == "server" {
        return server();
    }
    if !["plain", "authcore", "dpop"].contains(&role) {
        println!("run by core/benches/request_path.sh (roles: server, plain, authcore, dpop)");
        return;
    }
    let port: u16 = args[1].parse().expect("port");
    let n: u64 = args[2].parse().expect("count");
    let url = format!("http://127.0.0.1:{port}/api");
    match role {
        "plain" => {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let header = "Bearer at-bench-0123456789abcdef";
            measure(n, || {
                let mut r = agent
                    .get(&url)
                    .header("authorization", header)
                    .call()
                    .expect("plain");
                black_box(r.body_mut().read_to_vec().expect("body"));
            });
        }
        _ => {
            let grant = authcore::grant::ClientCredentials::new(
                format!("http://127.0.0.1:{port}/token"),
                "bench",
                "bench-secret",
            );
            let mut options = authcore::Options::default().timeout(Duration::from_secs(30));
            if role == "dpop" {
                options = options.dpop(authcore::Dpop::generate().expect("key"));
            }
            let client = authcore::Client::new(grant, options).expect("client");
            measure(n, || {
                black_box(client.get(&url).expect("authcore"));
            });
        }
    }
}

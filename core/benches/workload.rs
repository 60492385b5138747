//! What a renewal costs when the client holds no secret. Prints numbers; asserts nothing.
//!
//! Run: `cargo bench -p authcore --bench workload` (results are kept in
//! `core/BENCHMARKS.md`).
//!
//! Each line is one client-credentials renewal (`Client::refresh`, which renews
//! whatever is cached) against a loopback token endpoint (mockito's hyper server), with
//! the client authenticated by: a secret (the baseline); a client assertion (RFC 7523
//! §2.2) from a literal, from a file read for every request, from a command run for
//! every request (`cat` of that file), from a callback; and, for the other grants, a
//! JWT bearer grant signed afresh per request (ES256, RS256) and a token exchange whose
//! subject token comes from a chained client holding a cached token. Clients are
//! interleaved: five rounds of `RENEWALS` renewals each, the median round per client (the
//! command source in a comparison of its own, see below).

use std::hint::black_box;
use std::time::Instant;

use authcore::grant::{token_type, ClientCredentials, JwtBearer, PrivateKey, TokenExchange};
use authcore::{AssertionSource, Client, Options, Secret};

const RENEWALS: u32 = 200;
const ROUNDS: usize = 5;
const TOKEN: &str =
    r#"{"access_token":"at-0123456789abcdef","token_type":"Bearer","expires_in":3600}"#;
/// An assertion of the size of a Kubernetes projected token (about 1 KB; opaque here,
/// so no expiry is read from it).
fn assertion() -> String {
    "eyJ".to_owned() + &"a".repeat(1000)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Microseconds per renewal over `RENEWALS` renewals.
fn round(client: &Client) -> f64 {
    let start = Instant::now();
    for _ in 0..RENEWALS {
        black_box(client.refresh().expect("a renewed token"));
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(RENEWALS)
}

fn main() {
    let mut server = mockito::Server::new();
    server.mock("POST", "/token").with_body(TOKEN).create();
    let token_url = format!("{}/token", server.url());
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("token");
    std::fs::write(&file, assertion()).expect("the assertion file");
    let path = file.to_str().expect("a UTF-8 path").to_owned();

    let cc = |source: Option<AssertionSource>| {
        let mut grant = ClientCredentials::new(&token_url, "bench", "secret");
        if let Some(source) = source {
            grant = ClientCredentials::new(&token_url, "bench", "").client_assertion(source);
        }
        Client::new(grant, Options::default()).expect("a client")
    };
    let key = |pem: &[u8]| PrivateKey::from_pem(pem, None).expect("a key");
    let jwt_bearer = |pem: &[u8]| {
        let grant = JwtBearer::signed(&token_url, key(pem), "bench-issuer", "bench-subject");
        Client::new(grant, Options::default()).expect("a client")
    };
    let exchange = {
        let subject = cc(None);
        subject.token().expect("the subject's token");
        let grant = TokenExchange::new(
            &token_url,
            "exchanger",
            "secret",
            AssertionSource::client(subject),
            token_type::ACCESS_TOKEN,
        );
        Client::new(grant, Options::default()).expect("a client")
    };
    let value = assertion();
    let clients: Vec<(&str, Client)> = vec![
        ("client secret (baseline)", cc(None)),
        (
            "client assertion, literal",
            cc(Some(AssertionSource::literal(value.clone()))),
        ),
        (
            "client assertion, file",
            cc(Some(AssertionSource::file(&file))),
        ),
        (
            "client assertion, callback",
            cc(Some(AssertionSource::callback(move || {
                Ok(Secret::new(value.clone()))
            }))),
        ),
        (
            "JWT bearer, signed ES256",
            jwt_bearer(include_bytes!("../fuzz/corpus/dpop_key/p256-pkcs8.pem")),
        ),
        (
            "JWT bearer, signed RS256",
            jwt_bearer(include_bytes!("../fuzz/corpus/dpop_key/rsa-pkcs8.pem")),
        ),
        ("token exchange, chained subject (cached)", exchange),
    ];
    println!("renewal, 1 thread (median of {ROUNDS} interleaved rounds of {RENEWALS} renewals):");
    compare(&clients);
    // The command source apart, against a baseline of its own: whichever client was
    // measured right after a round of it came out 30-45 µs a renewal cheaper than in any
    // other place (a callback client measured 72 µs there and 111 µs elsewhere).
    println!("the command source, apart:");
    compare(&[
        ("client secret (baseline)", cc(None)),
        (
            "client assertion, command (cat FILE)",
            cc(Some(AssertionSource::command("cat", [path.as_str()]))),
        ),
    ]);
}

/// Prints each client's median round and its difference from the first client's.
fn compare(clients: &[(&str, Client)]) {
    for (_, c) in clients {
        round(c);
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    for _ in 0..ROUNDS {
        for (i, (_, c)) in clients.iter().enumerate() {
            samples[i].push(round(c));
        }
    }
    let medians: Vec<f64> = samples.into_iter().map(median).collect();
    let base = medians[0];
    for ((name, _), m) in clients.iter().zip(&medians) {
        let extra = m - base;
        let sign = if extra < 0.0 { "-" } else { "+" };
        println!("  {name}: {m:.1} µs ({sign}{:.1} µs)", extra.abs());
    }
}

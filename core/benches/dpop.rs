//! What DPoP (RFC 9449) costs. Prints numbers; asserts nothing.
//!
//! Run: `cargo bench -p authcore --bench dpop` (results are kept in `core/BENCHMARKS.md`).
//! One section: `AUTHCORE_BENCH=keys|proofs|requests`.
//!
//! - `keys`: generating a key, per algorithm (OS random source).
//! - `proofs`: one proof as a resource request needs it (claims with `jti`, `htu`,
//!   `iat`, `ath` and a nonce; sign; encode), per algorithm.
//! - `requests`: `Client::get` against a loopback API (mockito's hyper server, which
//!   does not verify proofs: this is the client's cost) with a Bearer token and with a
//!   DPoP token of each algorithm, one thread, interleaved runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use authcore::grant::ClientCredentials;
use authcore::{Client, Dpop, DpopAlgorithm, DpopKey, Options};

const ALGORITHMS: [DpopAlgorithm; 3] = [
    DpopAlgorithm::Es256,
    DpopAlgorithm::EdDsa,
    DpopAlgorithm::Rs256,
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Key generation: the median and the slowest of `n` keys (RSA's prime search varies
/// from key to key).
fn keys() {
    for alg in ALGORITHMS {
        let n = if alg == DpopAlgorithm::Rs256 {
            20
        } else {
            2000
        };
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            black_box(DpopKey::generate(alg).expect("a key"));
            samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
        }
        let max = samples.iter().copied().fold(0.0, f64::max);
        println!(
            "key generation, {}: median {:.1} µs, slowest {:.1} µs ({n} keys)",
            alg.name(),
            median(samples),
            max
        );
    }
}

/// One resource-request proof (sign + encode): median over batches.
fn proofs() {
    let token = "at-".to_owned() + &"x".repeat(40);
    let url = "https://api.example.com/v1/items?page=2";
    for alg in ALGORITHMS {
        let key = DpopKey::generate(alg).expect("a key");
        let batch: u32 = if alg == DpopAlgorithm::Rs256 { 20 } else { 500 };
        let mut samples = Vec::new();
        for _ in 0..50 {
            let start = Instant::now();
            for _ in 0..batch {
                black_box(
                    key.proof("GET", url, Some(&token), Some("server-nonce-1"))
                        .expect("a proof"),
                );
            }
            samples.push(start.elapsed().as_nanos() as f64 / 1000.0 / f64::from(batch));
        }
        let size = key
            .proof("GET", url, Some(&token), Some("server-nonce-1"))
            .expect("a proof")
            .expose_secret()
            .len();
        println!(
            "proof (sign + encode), {}: median {:.1} µs per request ({} bytes; 50 batches of {batch})",
            alg.name(),
            median(samples),
            size
        );
    }
}

/// `Client::get` per second, Bearer against DPoP of each algorithm.
fn requests() {
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_body(
            r#"{"access_token":"at-bearer-0123456789","token_type":"Bearer","expires_in":3600}"#,
        )
        .create();
    server
        .mock("POST", "/token-dpop")
        .with_body(r#"{"access_token":"at-dpop-0123456789","token_type":"DPoP","expires_in":3600}"#)
        .create();
    server.mock("GET", "/api").with_body("{}").create();
    let url = format!("{}/api", server.url());
    let client = |path: &str, dpop: Option<DpopAlgorithm>| {
        let mut options = Options::default();
        if let Some(alg) = dpop {
            options = options.dpop(Dpop::new(DpopKey::generate(alg).expect("a key")));
        }
        let grant = ClientCredentials::new(format!("{}{path}", server.url()), "bench", "secret");
        let client = Client::new(grant, options).expect("client");
        client.token().expect("a token");
        client
    };
    let mut clients = vec![("Bearer", client("/token", None))];
    for alg in ALGORITHMS {
        clients.push((alg.name(), client("/token-dpop", Some(alg))));
    }
    let run = |client: &Client| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(1500) {
            black_box(client.get(&url).expect("a response"));
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    for (_, c) in &clients {
        run(c);
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    for _ in 0..5 {
        for (i, (_, c)) in clients.iter().enumerate() {
            rates[i].push(run(c));
        }
    }
    let rates: Vec<f64> = rates.into_iter().map(median).collect();
    let bearer = rates[0];
    let mut line = format!(
        "Client::get on loopback, 1 thread (median of 5 interleaved 1.5 s runs): Bearer {bearer:.0} req/s ({:.1} µs)",
        1e6 / bearer
    );
    for ((name, _), rate) in clients.iter().zip(&rates).skip(1) {
        line += &format!(
            ", DPoP {name} {rate:.0} req/s ({:.1} µs, {:+.1} µs)",
            1e6 / rate,
            1e6 / rate - 1e6 / bearer
        );
    }
    println!("{line}");
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmarks run with `cargo bench`");
        return;
    }
    let only = std::env::var("AUTHCORE_BENCH").unwrap_or_default();
    let all = only.is_empty();
    if all || only == "keys" {
        keys();
    }
    if all || only == "proofs" {
        proofs();
    }
    if all || only == "requests" {
        requests();
    }
}

//! Cold fleet: 16 processes start at once with an empty store (Redis, then a directory
//! for a `FileStore`); how many token requests
//! reach the provider (target 1) and how long until every process has a token.
//!
//! Run: `cargo bench -p authcore-cli --bench fleet` (needs `redis-server`; results are
//! kept in `core/BENCHMARKS.md`). Like the fleet test, this binary is its own fleet.

#[path = "../tests/support/fleet.rs"]
mod fleet;
#[path = "../../core/tests/common/redis.rs"]
#[allow(dead_code)]
mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use authcore_cli::devserver::{Behaviour, Credentials, DevServer};

const PROCESSES: usize = 16;
const ROUNDS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--member") {
        fleet::member(args.get(i + 1).map_or("", String::as_str));
        return;
    }
    for (store, latency_ms) in [("redis", 0), ("redis", 200), ("file", 0), ("file", 200)] {
        let mut requests = Vec::new();
        let mut all_ms = Vec::new();
        for _ in 0..ROUNDS {
            let redis = redis::Redis::start(&[]);
            let dir = tempfile::tempdir().unwrap();
            let store = match store {
                "redis" => redis.url(),
                _ => dir.path().display().to_string(),
            };
            let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
            let server = DevServer::start(addr, Credentials::default()).unwrap();
            server
                .set_behaviour(Behaviour {
                    latency_ms,
                    ..Behaviour::default()
                })
                .unwrap();
            let orders = fleet::Orders {
                devserver: server.url(),
                redis: store,
                start_at_ms: fleet::start_in(Duration::from_millis(1500)),
                seconds: 0.0,
                timeout_secs: 10.0,
            };
            let members: Vec<_> = (0..PROCESSES).map(|_| fleet::spawn(&orders)).collect();
            let reports: Vec<_> = members.into_iter().map(fleet::report).collect();
            assert!(reports.iter().all(|r| r.failed == 0), "{reports:?}");
            let slowest = reports
                .iter()
                .map(|r| r.first_token_ms)
                .fold(0.0_f64, f64::max);
            requests.push(server.counters().token_requests);
            all_ms.push(slowest);
        }
        all_ms.sort_by(f64::total_cmp);
        println!(
            "cold fleet, {PROCESSES} processes, {store} store, token endpoint latency {latency_ms} ms: token requests per round {requests:?}; until all have a token: median {:.1} ms, max {:.1} ms ({ROUNDS} rounds)",
            all_ms[ROUNDS / 2],
            all_ms[ROUNDS - 1]
        );
    }
}

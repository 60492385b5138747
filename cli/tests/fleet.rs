//! Fleets of real processes sharing one token through a real `redis-server` (started
//! on a free loopback port, stopped at the end) and the development provider.
//!
//! This test binary is its own fleet: run with `--member ORDERS` it is one member
//! process (see `support/fleet.rs`); otherwise it runs the tests below, one after the
//! other, and exits non-zero if any fails.

#[path = "support/fleet.rs"]
mod fleet;
#[path = "../../core/tests/common/redis.rs"]
#[allow(dead_code)]
mod redis;

use std::net::SocketAddr;
use std::panic::catch_unwind;
use std::time::{Duration, Instant};

use authcore_cli::devserver::{Behaviour, Credentials, DevServer};
use fleet::{report, spawn, start_in, Orders};
use redis::Redis;

fn devserver(behaviour: Behaviour) -> DevServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = DevServer::start(addr, Credentials::default()).unwrap();
    server.set_behaviour(behaviour).unwrap();
    server
}

fn orders(server: &DevServer, redis: &Redis, seconds: f64, timeout_secs: f64) -> Orders {
    Orders {
        devserver: server.url(),
        redis: redis.url(),
        start_at_ms: start_in(Duration::from_millis(1500)),
        seconds,
        timeout_secs,
    }
}

/// 16 processes, client credentials, tokens living 2 s, 10 s: about one token request
/// per renew-ahead period for the whole fleet (not 16 times that), no expired token sent.
fn sixteen_processes_share_one_token_through_redis() {
    let redis = Redis::start(&[]);
    let server = devserver(Behaviour {
        lifetime_secs: 2,
        ..Behaviour::default()
    });
    let orders = orders(&server, &redis, 10.0, 10.0);
    let members: Vec<_> = (0..16).map(|_| spawn(&orders)).collect();
    let reports: Vec<_> = members.into_iter().map(report).collect();
    let c = server.counters();
    let ok: u64 = reports.iter().map(|r| r.ok).sum();
    let failed: Vec<_> = reports.iter().filter(|r| r.failed > 0).collect();
    println!(
        "16 processes, 10 s, 2 s tokens: {ok} API calls, {} token requests, {} expired tokens sent",
        c.token_requests, c.resource_rejected_expired
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(c.resource_rejected_expired, 0, "{c:?}");
    // A token is renewed ahead at 80 % of its 2 s: about 10 / 1.6 ≈ 6–7 for the fleet.
    assert!(
        (5..=9).contains(&c.token_requests),
        "{} token requests: {c:?}",
        c.token_requests
    );
}

/// The process holding the Redis lock is killed (SIGKILL) in the middle of a slow
/// renewal: another gets a token once the lock expires (its holder's deadline plus a
/// margin), plus one renewal.
fn a_lock_holder_killed_mid_renewal_blocks_only_until_its_lock_expires() {
    let redis = Redis::start(&[]);
    let server = devserver(Behaviour {
        latency_ms: 3000,
        ..Behaviour::default()
    });
    // The holder's deadline is 3 s: its lock lives 3 s + 2 s.
    let mut holder = spawn(&Orders {
        start_at_ms: 0,
        ..orders(&server, &redis, 0.0, 3.0)
    });
    let taken = Instant::now();
    let start = Instant::now();
    while server.counters().token_requests == 0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.counters().token_requests, 1, "the holder's request");
    holder.kill();
    server.set_behaviour(Behaviour::default()).unwrap();
    let other = report(spawn(&Orders {
        start_at_ms: 0,
        ..orders(&server, &redis, 0.0, 15.0)
    }));
    let waited = taken.elapsed();
    println!(
        "lock holder killed: another process had a token {:.2} s after the holder took the lock",
        waited.as_secs_f64()
    );
    assert_eq!(other.failed, 0, "{other:?}");
    assert!(other.first_token_ms >= 0.0, "{other:?}");
    assert!(
        waited < Duration::from_secs(5) + Duration::from_secs(2),
        "lock TTL (5 s) plus one renewal and process start: {waited:?}"
    );
    assert_eq!(server.counters().token_requests, 2);
}

/// Redis killed and restarted (empty) under 4 running processes: every call is still
/// served, no expired token is sent, and the fleet shares again once Redis is back.
fn a_fleet_rides_out_a_redis_restart() {
    let mut redis = Redis::start(&[]);
    let server = devserver(Behaviour {
        lifetime_secs: 2,
        ..Behaviour::default()
    });
    let orders = orders(&server, &redis, 9.0, 5.0);
    let members: Vec<_> = (0..4).map(|_| spawn(&orders)).collect();
    std::thread::sleep(Duration::from_millis(1500 + 2500));
    redis.stop();
    let during_start = server.counters().token_requests;
    std::thread::sleep(Duration::from_millis(2500));
    redis.restart();
    let during = server.counters().token_requests - during_start;
    let reports: Vec<_> = members.into_iter().map(report).collect();
    let c = server.counters();
    let failed: Vec<_> = reports.iter().filter(|r| r.failed > 0).collect();
    println!(
        "Redis restarted under 4 processes: {} token requests ({during} while it was down), {} expired sent",
        c.token_requests, c.resource_rejected_expired
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(c.resource_rejected_expired, 0, "{c:?}");
    // Down for 2.5 s: each process renews by itself (about 1–2 each); shared before
    // and after (about one per 1.6 s for the fleet).
    assert!(during >= 2, "{during} while Redis was down: {c:?}");
    assert!(c.token_requests <= 16, "{c:?}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--member") {
        fleet::member(args.get(i + 1).map_or("", String::as_str));
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    let tests: [(&str, fn()); 3] = [
        (
            "sixteen_processes_share_one_token_through_redis",
            sixteen_processes_share_one_token_through_redis,
        ),
        (
            "a_lock_holder_killed_mid_renewal_blocks_only_until_its_lock_expires",
            a_lock_holder_killed_mid_renewal_blocks_only_until_its_lock_expires,
        ),
        (
            "a_fleet_rides_out_a_redis_restart",
            a_fleet_rides_out_a_redis_restart,
        ),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let outcome = catch_unwind(test);
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        failed += usize::from(outcome.is_err());
    }
    if failed > 0 {
        eprintln!("{failed} fleet test(s) failed");
        std::process::exit(1);
    }
}

//! One process of a fleet: its own `Client` (client credentials at the devserver)
//! sharing tokens through a `RedisStore`, calling the devserver's API until told to
//! stop, then printing what it saw as one JSON line. The fleet test and the fleet
//! benchmark run their own binary as members (`--member …`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authcore::grant::ClientCredentials;
use authcore::{Client, Options, RedisStore};
use serde::{Deserialize, Serialize};

/// What a member is told.
#[derive(Serialize, Deserialize)]
pub struct Orders {
    /// The devserver's base URL.
    pub devserver: String,
    /// The store: a `redis://` URL, or a directory for a `FileStore`.
    pub redis: String,
    /// Start at this wall-clock time (Unix ms), so that a fleet starts at once.
    pub start_at_ms: u64,
    /// Call the API for this long; 0: get one token and stop.
    pub seconds: f64,
    /// The deadline of each call.
    pub timeout_secs: f64,
}

/// What a member saw.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// API calls answered 200.
    pub ok: u64,
    /// Calls that failed or were answered otherwise (with the first message).
    pub failed: u64,
    /// The first failure, if any.
    pub first_failure: Option<String>,
    /// From the start time to the first token, in milliseconds.
    pub first_token_ms: f64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A start time `delay` from now, for [`Orders::start_at_ms`].
pub fn start_in(delay: Duration) -> u64 {
    unix_ms() + delay.as_millis() as u64
}

/// Runs a member with the orders in `json` and prints its report.
pub fn member(json: &str) {
    let orders: Orders = serde_json::from_str(json).expect("orders");
    let store: Arc<dyn authcore::TokenStore> = if orders.redis.starts_with("redis://") {
        Arc::new(RedisStore::new(&orders.redis).expect("redis url"))
    } else {
        Arc::new(authcore::FileStore::new(&orders.redis).expect("store directory"))
    };
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/oauth2/token", orders.devserver),
            "dev-client",
            "dev-secret",
        ),
        Options::default()
            .timeout(Duration::from_secs_f64(orders.timeout_secs))
            .store(store),
    )
    .expect("client");
    let wait = orders.start_at_ms.saturating_sub(unix_ms());
    std::thread::sleep(Duration::from_millis(wait));
    let start = Instant::now();
    let mut report = Report {
        ok: 0,
        failed: 0,
        first_failure: None,
        first_token_ms: -1.0,
    };
    let fail = |report: &mut Report, why: String| {
        report.failed += 1;
        report.first_failure.get_or_insert(why);
    };
    match client.token() {
        Ok(_) => report.first_token_ms = start.elapsed().as_secs_f64() * 1000.0,
        Err(e) => fail(&mut report, e.to_string()),
    }
    let api = format!("{}/api/videos", orders.devserver);
    let end = start + Duration::from_secs_f64(orders.seconds);
    // Bounded in count as well as in time.
    for _ in 0..200_000 {
        if Instant::now() >= end {
            break;
        }
        match client.get(&api) {
            Ok(r) if r.status == 200 => report.ok += 1,
            Ok(r) => fail(&mut report, format!("HTTP {}", r.status)),
            Err(e) => fail(&mut report, e.to_string()),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("{}", serde_json::to_string(&report).expect("report"));
}

/// A running member; killed when dropped unless its report was read (so a failing test
/// leaves no process behind).
pub struct Member(Option<Child>);

impl Member {
    /// Kills it at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts this binary as a member with `orders`.
pub fn spawn(orders: &Orders) -> Member {
    Member(Some(
        Command::new(std::env::current_exe().expect("own path"))
            .arg("--member")
            .arg(serde_json::to_string(orders).expect("orders"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a member"),
    ))
}

/// Waits for a member and reads its report.
pub fn report(mut member: Member) -> Report {
    let child = member
        .0
        .take()
        .expect("a member not yet reported or killed");
    let out = child.wait_with_output().expect("member output");
    assert!(out.status.success(), "member exited with {}", out.status);
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("member report {line:?}: {e}"))
}

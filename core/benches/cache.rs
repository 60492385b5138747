//! Benchmarks of the token lifecycle. Prints numbers; asserts nothing.
//!
//! Run: `cargo bench -p authcore --bench cache` (results are kept in `core/BENCHMARKS.md`).
//! One section: `AUTHCORE_BENCH=cached|store|herd|churn|throughput|events` (`store` needs
//! `redis-server`, which `tests/provision.sh` installs). `throughput` interleaves
//! `AUTHCORE_BENCH_RUNS` runs (default 5) and prints each run's ratio and their median.

#[path = "../tests/common/redis.rs"]
#[allow(dead_code)]
mod redis;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use authcore::grant::ClientCredentials;
use authcore::{Client, Options};

fn client_for(provider: &Provider) -> Client {
    Client::new(
        ClientCredentials::new(format!("{}/token", provider.url), "bench", "bench-secret"),
        Options::default(),
    )
    .expect("client")
}

/// A loopback provider (tiny_http, 4 workers) whose tokens carry a lifetime and whose
/// `/api` counts requests made with tokens past their server-side expiry.
struct Provider {
    url: String,
    token_requests: Arc<AtomicUsize>,
    expired_seen: Arc<AtomicUsize>,
    api_requests: Arc<AtomicUsize>,
}

fn provider(lifetime_secs: u64, latency: Duration) -> Provider {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
    let url = format!("http://{}", server.server_addr().to_ip().expect("ip"));
    let issued: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let token_requests = Arc::new(AtomicUsize::new(0));
    let expired_seen = Arc::new(AtomicUsize::new(0));
    let api_requests = Arc::new(AtomicUsize::new(0));
    for _ in 0..16 {
        let (server, issued) = (server.clone(), issued.clone());
        let (tokens, expired, api) = (
            token_requests.clone(),
            expired_seen.clone(),
            api_requests.clone(),
        );
        thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(req.as_reader(), &mut sink);
                if req.url() == "/token" {
                    let n = tokens.fetch_add(1, Relaxed) + 1;
                    thread::sleep(latency);
                    let token = format!("tok-{n}");
                    issued.lock().unwrap().insert(token.clone(), Instant::now());
                    let body = format!(
                        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{lifetime_secs}}}"#
                    );
                    let _ = req.respond(tiny_http::Response::from_string(body));
                    continue;
                }
                api.fetch_add(1, Relaxed);
                let token = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("authorization"))
                    .map(|h| h.value.as_str().trim_start_matches("Bearer ").to_owned())
                    .unwrap_or_default();
                let valid = issued
                    .lock()
                    .unwrap()
                    .get(&token)
                    .is_some_and(|at| at.elapsed() < Duration::from_secs(lifetime_secs));
                if !valid {
                    expired.fetch_add(1, Relaxed);
                }
                let _ = req.respond(tiny_http::Response::from_string("ok"));
            }
        });
    }
    Provider {
        url,
        token_requests,
        expired_seen,
        api_requests,
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    } else {
        v[n / 2]
    }
}

fn cached_fetch() {
    let p = provider(3600, Duration::ZERO);
    let client = client_for(&p);
    client.token().expect("warm");
    const BATCH: u32 = 1000;
    let mut samples = Vec::new();
    for _ in 0..2000 {
        let start = Instant::now();
        for _ in 0..BATCH {
            black_box(client.token().expect("token"));
        }
        samples.push(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    println!(
        "cached token fetch, 1 thread: median {:.1} ns/call (2000 batches of {BATCH})",
        median(samples)
    );
    for threads in [2usize, 4, 8] {
        let calls = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(Barrier::new(threads + 1));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (client, calls, barrier, stop) =
                    (client.clone(), calls.clone(), barrier.clone(), stop.clone());
                thread::spawn(move || {
                    barrier.wait();
                    let mut n = 0u64;
                    while !stop.load(Relaxed) {
                        for _ in 0..1000 {
                            black_box(client.token().expect("token"));
                        }
                        n += 1000;
                    }
                    calls.fetch_add(n, Relaxed);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        thread::sleep(Duration::from_secs(1));
        stop.store(true, Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        let total = calls.load(Relaxed) as f64;
        let per_thread_ns = start.elapsed().as_nanos() as f64 * threads as f64 / total;
        println!(
            "cached token fetch, {threads} threads: {:.1} ns/call per thread, {:.1} M calls/s total",
            per_thread_ns,
            total / start.elapsed().as_secs_f64() / 1e6
        );
    }
}

/// The single-thread cached read with and without a store (a store is never touched
/// on that path), and the cost of a renewal through a `FileStore` (lock, read, request,
/// write with fsync) next to a plain one.
fn store_costs() {
    let p = provider(3600, Duration::ZERO);
    let dir = std::env::temp_dir().join(format!("authcore-bench-store-{}", std::process::id()));
    let store = Arc::new(authcore::FileStore::new(&dir).expect("store"));
    let plain = client_for(&p);
    let stored = Client::new(
        ClientCredentials::new(format!("{}/token", p.url), "bench", "bench-secret"),
        Options::default().store(store),
    )
    .expect("client");
    let read = |client: &Client| {
        client.token().expect("warm");
        let mut samples = Vec::new();
        for _ in 0..2000 {
            let start = Instant::now();
            for _ in 0..1000 {
                black_box(client.token().expect("token"));
            }
            samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
        }
        median(samples)
    };
    // Interleaved, so that both see the same machine.
    let compare = |name: &str, stored: &Client| {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            a.push(read(&plain));
            b.push(read(stored));
        }
        println!(
            "cached token fetch, 1 thread: no store {:.1} ns/call, {name} {:.1} ns/call (median of 5 interleaved runs)",
            median(a),
            median(b)
        );
    };
    compare("FileStore", &stored);
    // A new client each time: its first token() is a renewal.
    let renew = |options: &dyn Fn() -> Options, clear: &dyn Fn()| {
        let mut samples = Vec::new();
        for _ in 0..200 {
            let client = Client::new(
                ClientCredentials::new(format!("{}/token", p.url), "bench", "bench-secret"),
                options(),
            )
            .expect("client");
            // Another process's token would be adopted: remove the stored one.
            clear();
            let start = Instant::now();
            black_box(client.token().expect("token"));
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
        median(samples)
    };
    let file_store = Arc::new(authcore::FileStore::new(&dir).expect("store"));
    let clear_files = || {
        for e in std::fs::read_dir(&dir).expect("dir").flatten() {
            if e.path().extension().is_some_and(|x| x == "json") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    };
    let redis = redis::Redis::start(&[]);
    let redis_store = Arc::new(authcore::RedisStore::new(&redis.url()).expect("redis"));
    let clear_redis = || assert!(redis.raw("FLUSHALL").starts_with("+OK"));
    println!(
        "renewal, 1 thread (median of 200): plain {:.0} µs, through a FileStore {:.0} µs (lock, read, request, write + fsync, rename, directory fsync), through a RedisStore on loopback {:.0} µs (SET NX PX, GET, request, fenced SET script, release script)",
        renew(&Options::default, &|| {}),
        renew(&|| Options::default().store(file_store.clone()), &clear_files),
        renew(&|| Options::default().store(redis_store.clone()), &clear_redis)
    );
    let through_redis = Client::new(
        ClientCredentials::new(format!("{}/token", p.url), "bench", "bench-secret"),
        Options::default().store(redis_store.clone()),
    )
    .expect("client");
    compare("RedisStore", &through_redis);
    let _ = std::fs::remove_dir_all(&dir);
}

fn herd() {
    let p = provider(3600, Duration::from_millis(50));
    let client = client_for(&p);
    let barrier = Arc::new(Barrier::new(32));
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let (client, barrier) = (client.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                client.token().is_ok()
            })
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    println!(
        "herd: 32 threads, cold cache -> {} token request(s), {ok}/32 callers got a token",
        p.token_requests.load(Relaxed)
    );
}

fn churn() {
    let p = provider(1, Duration::ZERO);
    let client = client_for(&p);
    let url = format!("{}/api", p.url);
    let errors = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(6);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, errors) = (client.clone(), url.clone(), errors.clone());
            thread::spawn(move || {
                while Instant::now() < deadline {
                    match client.get(&url) {
                        Ok(r) if r.status == 200 => {}
                        _ => {
                            errors.fetch_add(1, Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "churn: 1 s tokens, 8 threads, 6 s -> {} requests, {} sent with an expired token, {} caller errors, {} token requests",
        p.api_requests.load(Relaxed),
        p.expired_seen.load(Relaxed),
        errors.load(Relaxed),
        p.token_requests.load(Relaxed)
    );
}

/// The id the kernel gives the next task (thread) it creates. Task ids are handed out
/// in order, so the difference over a run bounds the threads created meanwhile (on the
/// whole machine: an upper bound for this process).
fn next_task_id() -> i64 {
    std::thread::spawn(|| i64::from(rustix::thread::gettid().as_raw_nonzero().get()))
        .join()
        .expect("probe thread")
}

fn throughput() {
    let p = provider(3600, Duration::ZERO);
    let client = client_for(&p);
    // The API: mockito's hyper server (serves many keep-alive connections at once, which
    // the 16-thread tiny_http provider does not do reliably with 12 pooled connections).
    let mut api = mockito::Server::new();
    api.mock("GET", "/api").with_body("{}").create();
    let url = format!("{}/api", api.url());
    let token = client.token().expect("token");
    let header = token.authorization_header().expose_secret().to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let timed: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    // Requests per second over 1.5 s with `threads` threads, and tasks created per request.
    let run = |threads: usize, f: &(dyn Fn() + Sync)| {
        let first = next_task_id();
        let start = Instant::now();
        let total = std::sync::atomic::AtomicU64::new(0);
        thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_millis(1500) {
                        f();
                        n += 1;
                    }
                    total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        let elapsed = start.elapsed().as_secs_f64();
        let created = next_task_id() - first - 1 - threads as i64;
        let n = total.load(std::sync::atomic::Ordering::Relaxed);
        (n as f64 / elapsed, created.max(0) as f64 / n.max(1) as f64)
    };
    let plain = || {
        let mut r = agent
            .get(&url)
            .header("authorization", &header)
            .call()
            .expect("plain");
        black_box(r.body_mut().read_to_vec().expect("body"));
    };
    let plain_timed = || {
        let mut r = timed
            .get(&url)
            .header("authorization", &header)
            .call()
            .expect("timed");
        black_box(r.body_mut().read_to_vec().expect("body"));
    };
    let authed = || {
        black_box(client.get(&url).expect("authcore"));
    };
    // Interleaved runs, so that each sees the machine as the others do: how many from
    // AUTHCORE_BENCH_RUNS (at least 1, default 5).
    let runs: usize = std::env::var("AUTHCORE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    for threads in [1, 4] {
        run(threads, &plain);
        run(threads, &authed);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ta, mut tb, mut tc) = (0.0, 0.0, 0.0);
        let mut ratios = Vec::new();
        for i in 0..runs {
            let (pa, t) = run(threads, &plain);
            a.push(pa);
            ta += t / runs as f64;
            let (pc, t) = run(threads, &plain_timed);
            c.push(pc);
            tc += t / runs as f64;
            let (pb, t) = run(threads, &authed);
            b.push(pb);
            tb += t / runs as f64;
            ratios.push(pb / pa);
            println!(
                "  run {}/{runs}, {threads} thread(s): plain ureq {pa:.0} req/s, plain ureq with \
                 authcore's timeouts {pc:.0} req/s, authcore {pb:.0} req/s; ratio to plain {:.3}",
                i + 1,
                pb / pa
            );
        }
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        let (pa, pb, pc) = (median(a), median(b), median(c));
        println!(
            "throughput, {threads} thread(s) (median of {runs} interleaved 1.5 s runs): plain ureq {pa:.0} req/s \
             ({ta:.3} threads created/request), plain ureq with authcore's timeouts {pc:.0} req/s ({tc:.3}), \
             authcore {pb:.0} req/s ({tb:.3}); ratio to plain per run {}, median {:.3}; to timed plain {:.3}",
            each.join(" "),
            median(ratios),
            pb / pc
        );
    }
}

fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmarks run with `cargo bench`");
        return;
    }
    let only = std::env::var("AUTHCORE_BENCH").unwrap_or_default();
    let all = only.is_empty();
    if all || only == "cached" {
        cached_fetch();
    }
    if all || only == "store" {
        store_costs();
    }
    if all || only == "herd" {
        herd();
    }
    if all || only == "churn" {
        churn();
    }
    if all || only == "throughput" {
        throughput();
    }
    if all || only == "events" {
        events();
    }
}

/// What events cost with no logger installed (this binary installs none): an event
/// exactly as authcore raises one — target, name and facts as key-values, a formatted
/// message — against an empty loop; and a renewal (a token request on loopback) for
/// scale. The cached path raises no event; its counter is in `cached`.
fn events() {
    const N: u32 = 10_000_000;
    let reason = black_box("ahead");
    let lifetime = black_box(3600.0f64);
    let mut samples = Vec::new();
    let mut empty = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..N {
            log::info!(target: "authcore", event = "token.renewed", reason = reason, lifetime_s = lifetime;
                "token renewed ({reason}), lifetime {lifetime} s");
            black_box(i);
        }
        samples.push(start.elapsed().as_nanos() as f64 / f64::from(N));
        let start = Instant::now();
        for i in 0..N {
            black_box(i);
        }
        empty.push(start.elapsed().as_nanos() as f64 / f64::from(N));
    }
    let (event, empty) = (median(samples), median(empty));
    let p = provider(3600, Duration::ZERO);
    let client = client_for(&p);
    client.token().expect("warm");
    let mut renewals = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        client.refresh().expect("renewal");
        renewals.push(start.elapsed().as_nanos() as f64 / 1000.0);
    }
    println!(
        "events with no logger: {:.2} ns per event (empty loop {:.2} ns; median of 5 runs of {N}); \
         a renewal on loopback: median {:.0} µs (200 forced renewals; it raises 3 events at info and debug)",
        event - empty,
        empty,
        median(renewals)
    );
}

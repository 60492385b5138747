//! Real processes sharing one token through `authcore token --store DIR`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use authcore_cli::devserver::{Behaviour, Credentials, DevServer};
use redis::Redis;

#[path = "../../core/tests/common/redis.rs"]
#[allow(dead_code)]
mod redis;

fn authcore(store: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_authcore"));
    c.arg("token").arg("--store").arg(store);
    for var in [
        "AUTHCORE_API_KEY",
        "AUTHCORE_CLIENT_SECRET",
        "AUTHCORE_REFRESH_TOKEN",
    ] {
        c.env_remove(var);
    }
    c
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("authcore-cli-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn fifty_invocations_make_one_token_request() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = DevServer::start(addr, Credentials::default()).unwrap();
    let dir = temp_dir("fifty");
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..50 {
        let out = authcore(&dir)
            .args([
                "--provider",
                "client-credentials",
                "--client-id",
                "dev-client",
            ])
            .args(["--token-url", &format!("{}/oauth2/token", server.url())])
            .env("AUTHCORE_CLIENT_SECRET", "dev-secret")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokens.insert(String::from_utf8(out.stdout).unwrap());
    }
    assert_eq!(server.counters().token_requests, 1);
    assert_eq!(tokens.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eight_processes_share_one_rotating_refresh_token() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = DevServer::start(addr, Credentials::default()).unwrap();
    server
        .set_behaviour(Behaviour {
            lifetime_secs: 2,
            ..Behaviour::default()
        })
        .unwrap();
    let dir = temp_dir("rotate");
    let url = server.url();
    let run_for = Duration::from_secs(6);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (dir, url) = (dir.clone(), url.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + run_for;
                let (mut ok, mut failed) = (0, Vec::new());
                while Instant::now() < end && ok + failed.len() < 2000 {
                    let out = authcore(&dir)
                        .args(["--provider", "api-video", "--base-url", &url])
                        .env("AUTHCORE_API_KEY", "dev-api-key")
                        .output()
                        .unwrap();
                    if out.status.success() {
                        ok += 1;
                    } else {
                        failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let mut calls = 0;
    for w in workers {
        let (ok, failed) = w.join().unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        calls += ok;
    }
    let c = server.counters();
    let key = c
        .token_requests_by_grant
        .get("apivideo/api_key")
        .copied()
        .unwrap_or(0);
    let refresh = c
        .token_requests_by_grant
        .get("apivideo/refresh")
        .copied()
        .unwrap_or(0);
    eprintln!("8 processes, 6 s, 2 s tokens: {calls} token calls, {key} key exchange(s), {refresh} refreshes");
    // One key exchange in all: a reused (rotated-away) refresh token would have been
    // refused, revoking the family and sending a process back to the API key.
    assert_eq!(key, 1, "{c:?}");
    // About one refresh per renew-ahead period (1.6 s of a 2 s token) over 6 s.
    assert!(
        (2..=6).contains(&refresh),
        "{refresh} refreshes for {calls} calls: {c:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_process_killed_while_holding_the_lock_blocks_nobody() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = DevServer::start(addr, Credentials::default()).unwrap();
    // Token requests take 3 s: the first process holds the store's lock that long.
    server
        .set_behaviour(Behaviour {
            latency_ms: 3000,
            ..Behaviour::default()
        })
        .unwrap();
    let dir = temp_dir("killed");
    let token_cmd = || {
        let mut c = authcore(&dir);
        c.args([
            "--provider",
            "client-credentials",
            "--client-id",
            "dev-client",
        ])
        .args(["--token-url", &format!("{}/oauth2/token", server.url())])
        .env("AUTHCORE_CLIENT_SECRET", "dev-secret");
        c
    };
    // Killed and reaped when dropped, also if an assertion below fails first.
    struct Holder(std::process::Child);
    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill(); // SIGKILL: no chance to release anything itself
            let _ = self.0.wait();
        }
    }
    let holder = Holder(token_cmd().spawn().unwrap());
    // Wait until its request reached the provider (it holds the lock by then).
    let start = Instant::now();
    while server.counters().token_requests == 0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.counters().token_requests, 1);
    drop(holder);
    server.set_behaviour(Behaviour::default()).unwrap();
    let start = Instant::now();
    let out = token_cmd().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the lock died with its holder: {:?}",
        start.elapsed()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invocations_share_one_token_through_redis() {
    let redis = Redis::start(&[]);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = DevServer::start(addr, Credentials::default()).unwrap();
    let url = redis.url();
    let mut failures = Vec::new();
    for _ in 0..20 {
        let out = Command::new(env!("CARGO_BIN_EXE_authcore"))
            .args(["token", "--store", &url, "--provider", "client-credentials"])
            .args(["--client-id", "dev-client", "--token-url"])
            .arg(format!("{}/oauth2/token", server.url()))
            .env("AUTHCORE_CLIENT_SECRET", "dev-secret")
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    drop(redis);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(server.counters().token_requests, 1);
}

#[test]
fn rediss_with_a_ca_file_and_a_wrong_password_are_handled() {
    let (redis, pki) = Redis::start_tls();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = DevServer::start(addr, Credentials::default()).unwrap();
    let token = |store: &str, ca: Option<&std::path::Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_authcore"));
        c.args([
            "token",
            "--store",
            store,
            "--provider",
            "client-credentials",
        ])
        .args(["--client-id", "dev-client", "--token-url"])
        .arg(format!("{}/oauth2/token", server.url()))
        .env("AUTHCORE_CLIENT_SECRET", "dev-secret");
        if let Some(ca) = ca {
            c.arg("--store-ca").arg(ca);
        }
        c.output().unwrap()
    };
    for _ in 0..3 {
        let out = token(&redis.url(), Some(&pki.files[0]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(server.counters().token_requests, 1, "shared over TLS");
    // Not trusted without the CA, and a wrong password: the token is still printed
    // (client credentials renew without the store), with one warning on stderr that
    // names the store but never its password.
    let wrong = redis
        .url()
        .replace("rediss://", "rediss://:cli-password-7a6b5c@");
    for (store, ca) in [
        (redis.url(), None),
        (wrong.clone(), Some(pki.files[0].as_path())),
    ] {
        let out = token(&store, ca);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!out.stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("authcore: warning: token store: Redis at 127.0.0.1"),
            "{stderr}"
        );
        assert!(!stderr.contains("cli-password"), "{stderr}");
    }
    // A rotating refresh token with the store unusable: exit 4, a clear message.
    let out = Command::new(env!("CARGO_BIN_EXE_authcore"))
        .args([
            "token",
            "--store",
            &wrong,
            "--store-key",
            "alice",
            "--store-ca",
        ])
        .arg(&pki.files[0])
        .args([
            "--provider",
            "refresh-token",
            "--client-id",
            "dev-client",
            "--token-url",
        ])
        .arg(format!("{}/oauth2/token", server.url()))
        .env("AUTHCORE_CLIENT_SECRET", "dev-secret")
        .env("AUTHCORE_REFRESH_TOKEN", "rt-never-sent-0123456789")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("token store: Redis at 127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("cli-password"), "{stderr}");
}

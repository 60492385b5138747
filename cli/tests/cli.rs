//! The `authcore` binary: token command exit codes and output, devserver start-up
//! line, and the demo.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authcore::grant::AuthorizationCode;
use authcore::AuthorizationCodeFlow;
use authcore::Options;
use authcore_cli::devserver::{Credentials, DevServer};
use authcore_cli::scenario::follow_authorize;

fn server() -> DevServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    DevServer::start(addr, Credentials::default()).unwrap()
}

fn authcore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_authcore"));
    for var in [
        "AUTHCORE_API_KEY",
        "AUTHCORE_CLIENT_SECRET",
        "AUTHCORE_REFRESH_TOKEN",
        "AUTHCORE_TOKEN",
        "AUTHCORE_CLIENT_ID",
    ] {
        c.env_remove(var);
    }
    c
}

fn resource_status(server: &DevServer, token: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(format!("{}/api/check", server.url()))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn token_prints_a_token_the_provider_accepts() {
    let s = server();
    let out = authcore()
        .args([
            "token",
            "--provider",
            "client-credentials",
            "--client-id",
            "dev-client",
            "--scope",
            "campaigns:read",
        ])
        .args(["--token-url", &format!("{}/oauth2/token", s.url())])
        .env("AUTHCORE_CLIENT_SECRET", "dev-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(resource_status(&s, &token), 200);
}

#[test]
fn token_for_api_video_at_a_base_url() {
    let s = server();
    let out = authcore()
        .args(["token", "--provider", "api-video", "--base-url", &s.url()])
        .env("AUTHCORE_API_KEY", "dev-api-key")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(resource_status(&s, &token), 200);
}

#[test]
fn rejected_credentials_exit_3_without_echoing_the_secret() {
    let s = server();
    let out = authcore()
        .args([
            "token",
            "--provider",
            "client-credentials",
            "--client-id",
            "dev-client",
        ])
        .args(["--token-url", &format!("{}/oauth2/token", s.url())])
        .env("AUTHCORE_CLIENT_SECRET", "wrong-secret-5d4c3b2a1f")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid_client"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-5d4c3b2a1f"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unreachable_endpoint_exits_4() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = authcore()
        .args([
            "token",
            "--provider",
            "client-credentials",
            "--client-id",
            "c",
        ])
        .args(["--token-url", &format!("http://127.0.0.1:{port}/token")])
        .env("AUTHCORE_CLIENT_SECRET", "s")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn missing_secret_or_plain_http_remote_is_a_config_error_exit_2() {
    let out = authcore()
        .args(["token", "--provider", "vibe", "--client-id", "c"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTHCORE_CLIENT_SECRET"));
    let out = authcore()
        .args([
            "token",
            "--provider",
            "client-credentials",
            "--client-id",
            "c",
            "--token-url",
            "http://example.com/t",
        ])
        .env("AUTHCORE_CLIENT_SECRET", "s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A fresh refresh token from a sign-in at the development provider.
fn signed_in_refresh_token(s: &DevServer) -> String {
    let base = s.url();
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let seen2 = seen.clone();
    let flow = AuthorizationCodeFlow::new(
        AuthorizationCode::new(
            format!("{base}/oauth2/authorize"),
            format!("{base}/oauth2/token"),
            "dev-client",
            "dev-secret",
            "http://127.0.0.1/cb",
        ),
        Options::default().on_refresh_token(move |rt| {
            *seen2.lock().unwrap() = Some(rt.expose_secret().to_owned())
        }),
    )
    .unwrap();
    let req = flow.authorization_url().unwrap();
    flow.finish(&follow_authorize(&req.url).unwrap(), &req.state)
        .unwrap();
    let rt = seen.lock().unwrap().clone();
    rt.expect("a refresh token")
}

#[test]
fn rotated_refresh_token_is_written_back_to_its_file() {
    let s = server();
    let base = s.url();
    let first_rt = signed_in_refresh_token(&s);
    let dir = std::env::temp_dir().join(format!("authcore-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("refresh_token");
    std::fs::write(&file, &first_rt).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = authcore()
        .args([
            "token",
            "--provider",
            "refresh-token",
            "--client-id",
            "dev-client",
        ])
        .args(["--token-url", &format!("{base}/oauth2/token")])
        .arg("--refresh-token-file")
        .arg(&file)
        .env("AUTHCORE_CLIENT_SECRET", "dev-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_ne!(rotated, first_rt);
    assert!(rotated.starts_with("dev-rt-"));
    // Replaced atomically: mode 0600 (never wider than the original), no temp file left.
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("refresh_token")]);
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(resource_status(&s, &token), 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A rotated refresh token that cannot be kept (no file to write it to, or a file that
/// cannot be rewritten) is exit 6, with the token on stdout for the caller to use.
#[test]
fn a_rotated_refresh_token_that_cannot_be_kept_exits_6_with_the_token() {
    let s = server();
    let refresh = |rt: &str, file: Option<&str>| {
        let mut c = authcore();
        c.args(["token", "--provider", "refresh-token", "--client-id"])
            .args([
                "dev-client",
                "--token-url",
                &format!("{}/oauth2/token", s.url()),
            ])
            .env("AUTHCORE_CLIENT_SECRET", "dev-secret")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match file {
            Some(path) => c.args(["--refresh-token-file", path]),
            None => c.env("AUTHCORE_REFRESH_TOKEN", rt),
        };
        let mut child = c.spawn().unwrap();
        // The file, when it is stdin, is read from the pipe.
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(rt.as_bytes());
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // From the environment, without a store: nowhere to keep the new one.
    let (code, token, stderr) = refresh(&signed_in_refresh_token(&s), None);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("could not be kept"), "{stderr}");
    assert_eq!(resource_status(&s, &token), 200);
    // A file that can be read but not replaced (no file can be created in /proc, not
    // even by root).
    if cfg!(target_os = "linux") {
        let (code, token, stderr) = refresh(&signed_in_refresh_token(&s), Some("/proc/self/fd/0"));
        assert_eq!(code, Some(6), "{stderr}");
        assert!(
            stderr.contains("could not save the rotated refresh token to /proc/self/fd/0"),
            "{stderr}"
        );
        assert_eq!(resource_status(&s, &token), 200);
    }
}

#[test]
fn devserver_prints_its_address_on_one_line_and_serves() {
    let mut child = authcore()
        .args(["devserver", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut url = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("AUTHCORE_DEVSERVER_URL=") {
            url = Some(u.to_owned());
            break;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let url = url.expect("address line");
    let counters: serde_json::Value = ureq::get(format!("{url}/_control/counters"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(counters["token_requests"], 0);
}

#[test]
fn verbose_flags_tell_renewals_then_every_request_never_a_secret() {
    let s = server();
    let url = format!("{}/oauth2/token", s.url());
    let run = |flags: &[&str]| {
        let out = client_credentials_token(&url).args(flags).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(!stderr.contains("dev-secret"), "{stderr}");
        assert!(!stderr.contains(&token), "{stderr}");
        stderr
    };
    assert_eq!(run(&[]), "", "quiet by default");
    let v = run(&["-v"]);
    assert!(
        v.contains("authcore: info [token.renewed]: token renewed (initial)"),
        "{v}"
    );
    assert!(!v.contains("token.requested"), "{v}");
    let vv = run(&["-vv"]);
    assert!(
        vv.contains("authcore: debug [token.requested]: token request: grant client_credentials"),
        "{vv}"
    );
    assert!(vv.contains("[token.obtained]"), "{vv}");
    assert!(vv.contains("[token.renewed]"), "{vv}");
    // With -v a failure's steps are warnings too, without the secret.
    let out = authcore()
        .args([
            "token",
            "--provider",
            "client-credentials",
            "--client-id",
            "dev-client",
        ])
        .args(["--token-url", &url, "--timeout", "5", "-v"])
        .env("AUTHCORE_CLIENT_SECRET", "not-the-dev-secret")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("authcore: warning: token request failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-dev-secret"), "{stderr}");
}

#[test]
fn https_with_a_ca_bundle_of_ones_own() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let s = DevServer::start_tls(addr, Credentials::default(), dir.path()).unwrap();
    assert!(s.url().starts_with("https://127.0.0.1:"));
    let url = format!("{}/oauth2/token", s.url());
    let ca = dir.path().join("ca.pem");
    // Not in the system's trust store: refused, and the message says why and where.
    let out = client_credentials_token(&url).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not trusted") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
    // With the devserver's CA as the bundle: a token.
    let out = client_credentials_token(&url)
        .arg("--ca-bundle")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.counters().token_requests, 1);
    // Through SSL_CERT_FILE, the standard way to name a trust store.
    let out = client_credentials_token(&url)
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bundle that cannot be used is a configuration error.
    let out = client_credentials_token(&url)
        .args(["--ca-bundle", "/nonexistent/ca.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ca.pem"));
}

#[test]
fn demo_runs_every_seed_scenario_and_exits_zero() {
    let out = authcore().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("MISBEHAVED"), "{stdout}");
    for who in ["api.video", "viewneo", "Vibe", "revoked", "backoff", "DPoP"] {
        assert!(stdout.contains(who), "{who} missing from:\n{stdout}");
    }
    // Each scenario ends with what its client counted, checked against the provider.
    assert_eq!(stdout.matches("counted: ").count(), 7, "{stdout}");
    assert_eq!(
        stdout.matches("the provider saw the same").count(),
        7,
        "{stdout}"
    );
}

/// A loopback listener that records the first line of each connection (a proxy's view).
fn proxy_listener() -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let end = Instant::now() + Duration::from_secs(8);
        while Instant::now() < end && lines.is_empty() {
            if let Ok((stream, _)) = listener.accept() {
                stream.set_nonblocking(false).unwrap();
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                lines.push(line.trim().to_owned());
                let _ = (&stream).write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        lines
    });
    (addr, handle)
}

fn client_credentials_token(url: &str) -> Command {
    let mut c = authcore();
    c.args([
        "token",
        "--provider",
        "client-credentials",
        "--client-id",
        "dev-client",
    ])
    .args(["--token-url", url, "--timeout", "5"])
    .env("AUTHCORE_CLIENT_SECRET", "dev-secret");
    for var in [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn environment_proxies_are_used_for_https_and_never_for_loopback() {
    let s = server();
    // A dead proxy in every variable: loopback is reached directly anyway.
    let dead = "http://127.0.0.1:9";
    let out = client_credentials_token(&format!("{}/oauth2/token", s.url()))
        .env("ALL_PROXY", dead)
        .env("HTTPS_PROXY", dead)
        .env("HTTP_PROXY", dead)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // HTTPS to a remote name goes through the environment's proxy (a CONNECT to it).
    let (proxy, seen) = proxy_listener();
    let out = client_credentials_token("https://auth.invalid/oauth2/token")
        .env("HTTPS_PROXY", &proxy)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        seen.join().unwrap(),
        vec!["CONNECT auth.invalid:443 HTTP/1.1".to_owned()]
    );

    // And through an explicit --proxy, with nothing in the environment.
    let (proxy, seen) = proxy_listener();
    let out = client_credentials_token("https://auth.invalid/oauth2/token")
        .args(["--proxy", &proxy])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        seen.join().unwrap(),
        vec!["CONNECT auth.invalid:443 HTTP/1.1".to_owned()]
    );
}

#[test]
fn devserver_refuses_a_lifetime_it_cannot_honour() {
    let out = authcore()
        .args([
            "devserver",
            "--port",
            "0",
            "--lifetime",
            "18446744073709551615",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `authcore headers` for a bearer token: one `Authorization: Bearer` line, in the form
/// `curl -H @-` reads, that the API accepts.
#[test]
fn headers_for_a_bearer_token_is_one_authorization_line() {
    let s = server();
    let out = client_credentials_headers(&s, "dev-secret")
        .args(["--url", &format!("{}/api/check", s.url())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let token = stdout
        .strip_prefix("Authorization: Bearer ")
        .expect("a bearer header")
        .trim();
    assert_eq!(resource_status(&s, token), 200);
}

fn client_credentials_headers(s: &DevServer, secret: &str) -> Command {
    let mut c = authcore();
    c.args([
        "headers",
        "--provider",
        "client-credentials",
        "--client-id",
        "dev-client",
    ])
    .args(["--token-url", &format!("{}/oauth2/token", s.url())])
    .env("AUTHCORE_CLIENT_SECRET", secret);
    c
}

/// `authcore headers` exits as `authcore token` does, and a DPoP key that cannot be
/// used is a configuration error that names the file, never its contents.
#[test]
fn headers_exit_codes_match_token_and_bad_dpop_keys_are_config_errors() {
    let s = server();
    let api = format!("{}/api/check", s.url());
    let code = |c: &mut Command| {
        let out = c.output().unwrap();
        assert!(out.stdout.is_empty(), "nothing printed on failure");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stderr) =
        code(client_credentials_headers(&s, "wrong-secret").args(["--url", &api]));
    assert_eq!(status, Some(3), "{stderr}");
    // Credentials are never sent in clear text to another machine.
    let (status, stderr) = code(
        client_credentials_headers(&s, "dev-secret").args(["--url", "http://example.com/api"]),
    );
    assert_eq!(status, Some(2), "{stderr}");
    let (status, stderr) = code(authcore().args([
        "headers",
        "--provider",
        "personal-access-token",
        "--dpop",
        "--url",
        &api,
    ]));
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("bearer token"), "{stderr}");
    // A nonce no server could send is a usage error, not a proof without it.
    let (status, stderr) = code(client_credentials_headers(&s, "dev-secret").args([
        "--dpop",
        "--url",
        &api,
        "--dpop-nonce",
        "bad\"nonce",
    ]));
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("--dpop-nonce"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let secret_part = "c2VjcmV0LWtleS1tYXRlcmlhbC0wMTIzNDU2Nzg5";
    let cases = [
        (
            "public.jwk",
            format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{secret_part}"}}"#),
        ),
        (
            "bad.pem",
            format!("-----BEGIN PRIVATE KEY-----\n{secret_part}\n-----END PRIVATE KEY-----\n"),
        ),
        ("empty", String::new()),
    ];
    for (name, text) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (status, stderr) = code(
            client_credentials_headers(&s, "dev-secret")
                .args(["--url", &api, "--dpop-key"])
                .arg(&path),
        );
        assert_eq!(status, Some(2), "{name}: {stderr}");
        assert!(stderr.contains(name), "{stderr}");
        assert!(!stderr.contains(secret_part), "{stderr}");
    }
    let (status, stderr) = code(
        client_credentials_headers(&s, "dev-secret")
            .args(["--url", &api, "--dpop-key"])
            .arg(dir.path().join("missing")),
    );
    assert_eq!(status, Some(2), "{stderr}");
    // --dpop-allow-bearer alone asks for nothing: a usage error.
    let (status, stderr) = code(client_credentials_headers(&s, "dev-secret").args([
        "--url",
        &api,
        "--dpop-allow-bearer",
    ]));
    assert_eq!(status, Some(2), "{stderr}");
    assert_eq!(
        s.counters().token_requests,
        1,
        "only the wrong secret's request"
    );
}

fn dpop_server(behaviour: authcore_cli::devserver::Behaviour) -> DevServer {
    let s = server();
    s.set_behaviour(authcore_cli::devserver::Behaviour {
        dpop: true,
        ..behaviour
    })
    .unwrap();
    s
}

/// `GET /api/check` with the header lines `authcore headers` printed, sent as they are
/// (as `curl -H @-` sends them).
fn send_headers(s: &DevServer, lines: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(format!("{}/api/check", s.url()));
    for line in lines.lines() {
        let (name, value) = line.split_once(": ").expect("Name: value");
        request = request.header(name, value);
    }
    request.call().unwrap().status().as_u16()
}

/// `authcore token --dpop` prints a DPoP-bound token (refused as a Bearer token), and
/// `authcore headers --dpop` prints it with a proof for the one request, which the API
/// accepts once; every algorithm, and a key from a PEM file.
#[test]
fn dpop_token_and_headers_against_a_dpop_provider() {
    let s = dpop_server(authcore_cli::devserver::Behaviour {
        dpop_required: true,
        ..Default::default()
    });
    let api = format!("{}/api/check", s.url());
    let keys = tempfile::tempdir().unwrap();
    let pem = keys.path().join("dpop.pem");
    std::fs::write(&pem, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let pem = pem.to_str().unwrap();
    let out = client_credentials_token(&format!("{}/oauth2/token", s.url()))
        .arg("--dpop")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kept nowhere") && stderr.contains("authcore headers"),
        "a token bound to a key that dies with the process is flagged: {stderr}"
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(
        resource_status(&s, &token),
        401,
        "a bound token is no bearer token"
    );
    // The caller holds the key: nothing to warn about.
    let out = client_credentials_token(&format!("{}/oauth2/token", s.url()))
        .args(["--dpop-key", pem])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for flags in [
        &["--dpop"][..],
        &["--dpop-alg", "eddsa"],
        &["--dpop-alg", "RS256"],
        &["--dpop-key", pem],
    ] {
        let out = client_credentials_headers(&s, "dev-secret")
            .args(["--url", &api])
            .args(flags)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = String::from_utf8(out.stdout).unwrap();
        let mut names = lines.lines().map(|l| l.split_once(' ').unwrap().0);
        assert_eq!(names.next(), Some("Authorization:"));
        assert_eq!(names.next(), Some("DPoP:"));
        assert_eq!(names.next(), None);
        assert!(lines.starts_with("Authorization: DPoP "), "{lines}");
        assert_eq!(send_headers(&s, &lines), 200, "{flags:?}");
        assert_eq!(
            send_headers(&s, &lines),
            401,
            "{flags:?}: a proof is for one request"
        );
    }
    let c = s.counters();
    assert_eq!(c.dpop_replays_rejected, 4, "{c:?}");
    assert_eq!(c.dpop_tokens_issued, 6, "{c:?}");
}

/// A provider that answers Bearer to a DPoP token request: refused (exit 5, as any
/// unusable answer) unless --dpop-allow-bearer.
#[test]
fn dpop_bearer_downgrade_exits_5_unless_allowed() {
    let s = dpop_server(authcore_cli::devserver::Behaviour {
        dpop_bearer_only: true,
        ..Default::default()
    });
    let url = format!("{}/oauth2/token", s.url());
    let out = client_credentials_token(&url)
        .arg("--dpop")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("Bearer"), "{stderr}");
    assert!(out.stdout.is_empty());
    let out = client_credentials_token(&url)
        .args(["--dpop", "--dpop-allow-bearer"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(resource_status(&s, &token), 200, "a Bearer token");
    assert_eq!(
        s.counters().token_requests,
        2,
        "the refusal was not retried"
    );
}

/// The lines of stderr that say something.
fn said(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// One failure, one line: the command's error, once. `-v` adds the failed request and
/// renewal behind it.
#[test]
fn a_failure_is_one_line_unless_verbose() {
    let s = server();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = format!("http://127.0.0.1:{closed}/token");
    let rejecting = format!("{}/oauth2/token", s.url());
    for (url, secret, code, error) in [
        (
            &refused,
            "dev-secret",
            4,
            "authcore: transport error: connection to 127.0.0.1",
        ),
        (
            &rejecting,
            "not-the-dev-secret",
            3,
            "authcore: OAuth error invalid_client (HTTP 401)",
        ),
    ] {
        let run = |flags: &[&str]| {
            let out = client_credentials_token(url)
                .args(flags)
                .env("AUTHCORE_CLIENT_SECRET", secret)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(code),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.stdout.is_empty());
            said(&out.stderr)
        };
        let quiet = run(&[]);
        assert_eq!(quiet.len(), 1, "{quiet:?}");
        assert!(quiet[0].starts_with(error), "{quiet:?}");
        let verbose = run(&["-v"]);
        assert!(verbose.len() > 1, "{verbose:?}");
        assert!(
            verbose.iter().any(|l| l.contains("token request failed")),
            "{verbose:?}"
        );
        assert!(
            verbose
                .iter()
                .any(|l| l.contains("token renewal (initial) failed")),
            "{verbose:?}"
        );
        assert!(verbose.last().unwrap().starts_with(error), "{verbose:?}");
        for line in quiet.iter().chain(&verbose) {
            assert!(!line.contains("not-the-dev-secret"), "{line}");
        }
    }
}

/// Two runs sharing a file store: the second takes the first's token from the store,
/// and `-v` says so — not "renewed (initial)", which would read as a token request.
#[test]
fn verbose_tells_a_token_adopted_from_the_store() {
    let s = server();
    let url = format!("{}/oauth2/token", s.url());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = |flags: &[&str]| {
        let out = client_credentials_token(&url)
            .arg("--store")
            .arg(&store)
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{stderr}");
        (
            String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            stderr,
        )
    };
    let (first, stderr) = run(&[]);
    assert_eq!(stderr, "");
    let (second, stderr) = run(&["-v"]);
    assert_eq!(second, first, "the same token, from the store");
    assert!(
        stderr.contains("authcore: info [store.adopted]: token adopted from the token store (file; reason: initial)"),
        "{stderr}"
    );
    assert!(!stderr.contains("renewed (initial)"), "{stderr}");
    assert!(!stderr.contains(&first), "{stderr}");
    assert_eq!(s.counters().token_requests, 1, "one token request in all");
}

/// `logout` offers what it uses; `login` keeps its own options.
#[test]
fn logout_help_lists_only_what_logout_uses() {
    let help = |command: &str| {
        let out = authcore().args([command, "--help"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let logout = help("logout");
    for flag in ["--device", "--no-browser", "--wait", "--scope", "--dpop"] {
        assert!(!logout.contains(flag), "{flag} in {logout}");
    }
    for flag in [
        "--issuer",
        "--client-id",
        "--store",
        "--store-key",
        "--client-cert",
    ] {
        assert!(logout.contains(flag), "{flag} not in {logout}");
    }
    let login = help("login");
    for flag in [
        "--device",
        "--no-browser",
        "--wait",
        "--scope",
        "--dpop",
        "--store",
    ] {
        assert!(login.contains(flag), "{flag} not in {login}");
    }
}

/// Messages name what a CLI user can do: HTTPS (no library option the CLI lacks); a
/// token URL where no token endpoint answers is said as such, exit 5, not as rejected
/// credentials (exit 3).
#[test]
fn plain_http_and_a_wrong_token_url_say_what_happened() {
    let out = client_credentials_token("http://example.com/token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let lines = said(&out.stderr);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("refusing plain HTTP to non-loopback host example.com: use https"),
        "{lines:?}"
    );
    assert!(
        !lines[0].contains("danger_allow_insecure_http"),
        "{lines:?}"
    );

    let s = server();
    let host = s.url().trim_start_matches("http://").to_owned();
    let out = client_credentials_token(&format!("{}/oauth2/no-such-endpoint", s.url()))
        .output()
        .unwrap();
    let lines = said(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            "the token endpoint at {host} answered 404 Not Found"
        )),
        "{lines:?}"
    );
    assert!(!lines[0].contains("dev-secret"), "{lines:?}");

    // A token endpoint failing with server errors is unwell, not refusing: exit 4, even
    // when its body carries an OAuth error.
    s.fail_next(authcore_cli::devserver::Fault::status(10, 503));
    let out = client_credentials_token(&format!("{}/oauth2/token", s.url()))
        .output()
        .unwrap();
    let lines = said(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    // So is a load balancer's HTML page with a 503.
    s.fail_next(authcore_cli::devserver::Fault {
        html: true,
        ..authcore_cli::devserver::Fault::status(10, 503)
    });
    let out = client_credentials_token(&format!("{}/oauth2/token", s.url()))
        .output()
        .unwrap();
    let lines = said(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("503"), "{lines:?}");
}

//! `authcore login` and `authcore logout` against the development provider: the
//! redirect listener (an idle connection, a forged callback, an abandoned sign-in),
//! where sessions live (the state directory, moved from the old cache directory), which
//! store directories are refused, what logout says, and `authcore token`'s exit 6 when
//! a rotated refresh token cannot be kept.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use authcore_cli::devserver::{Behaviour, Credentials, DevServer};
use authcore_cli::scenario::follow_authorize;

/// How long a test waits for a child or a line before it fails (never a pass/fail on
/// speed: only a bound on waiting forever).
const BOUND: Duration = Duration::from_secs(60);

fn server() -> DevServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    DevServer::start(addr, Credentials::default()).unwrap()
}

/// The command with nothing inherited that would change where it looks: no AUTHCORE_*
/// variables, and HOME and the XDG directories under `home`.
fn authcore(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_authcore"));
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("AUTHCORE_") {
            c.env_remove(&var);
        }
    }
    c.env("HOME", home)
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env("AUTHCORE_CLIENT_SECRET", "dev-secret");
    c
}

/// `authcore ARGS --issuer … --client-id dev-client [--store DIR]`.
fn with_issuer(home: &Path, s: &DevServer, store: Option<&Path>, args: &[&str]) -> Command {
    let mut c = authcore(home);
    c.args(args)
        .args(["--issuer", &s.url(), "--client-id", "dev-client"]);
    if let Some(dir) = store {
        c.arg("--store").arg(dir);
    }
    c
}

/// A child killed and reaped when dropped, also when the test fails; its stderr lines
/// arrive on a channel (read by a thread, so that waiting for one is bounded).
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut c: Command) -> Running {
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line for which `f` says something, within [`BOUND`].
    fn find<T>(&mut self, f: impl Fn(&str) -> Option<T>) -> T {
        let end = Instant::now() + BOUND;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = f(&line);
                    self.seen.push(line);
                    if let Some(v) = found {
                        return v;
                    }
                }
                Err(e) => panic!("no such line on stderr ({e:?}): {:?}", self.seen),
            }
        }
    }

    /// Its exit status within [`BOUND`] (panics if it is still running then), and the
    /// rest of its stderr.
    fn exit(&mut self) -> (ExitStatus, String) {
        let end = Instant::now() + BOUND;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < end,
                "still running after {BOUND:?}: {:?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let end = Instant::now() + BOUND;
        while let Ok(line) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }

    fn stdout(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).unwrap();
        }
        out
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser-ish GET with a bound on how long it may take: status and body.
fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(BOUND))
        .build()
        .into();
    let mut response = agent.get(url).call().unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn resource_status(s: &DevServer, token: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(format!("{}/api/check", s.url()))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

/// A started `authcore login --no-browser`: the child, the sign-in URL it printed, and
/// the port of its redirect listener.
struct Login {
    run: Running,
    url: String,
    port: u16,
}

fn start_login(home: &Path, s: &DevServer, store: Option<&Path>, wait: &str) -> Login {
    let mut run = Running::spawn(with_issuer(
        home,
        s,
        store,
        &["login", "--no-browser", "--scope", "openid", "--wait", wait],
    ));
    let url = run.find(|l| l.trim().starts_with("http").then(|| l.trim().to_owned()));
    let parsed = url::Url::parse(&url).unwrap();
    let redirect = parsed
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| url::Url::parse(&v).unwrap())
        .expect("a redirect_uri");
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    let port = redirect.port().unwrap();
    Login { run, url, port }
}

/// Signs in through the browser, headlessly: the redirect the provider answers with is
/// followed to the listener, which answers with its page; the command exits 0.
fn sign_in(home: &Path, s: &DevServer, store: Option<&Path>) {
    let mut login = start_login(home, s, store, "60");
    let (status, page) = get(&follow_authorize(&login.url).unwrap());
    assert_eq!(status, 200, "{page}");
    let (exit, stderr) = login.run.exit();
    assert!(exit.success(), "{stderr}");
}

/// `authcore token --issuer …`: exit code, stdout, stderr.
fn token(
    home: &Path,
    s: &DevServer,
    store: Option<&Path>,
    extra: &[&str],
) -> (i32, String, String) {
    let out = with_issuer(home, s, store, &["token"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn an_idle_connection_to_the_listener_never_holds_up_the_redirect() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let mut login = start_login(home.path(), &s, Some(&store), "60");
    // A connection that sends nothing (a browser's preconnect, any local process), open
    // before and during the real redirect.
    let idle = TcpStream::connect(("127.0.0.1", login.port)).unwrap();
    let (status, page) = get(&follow_authorize(&login.url).unwrap());
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in"), "{page}");
    let (exit, stderr) = login.run.exit();
    assert!(exit.success(), "{stderr}");
    drop(idle);
    let (code, at, stderr) = token(home.path(), &s, Some(&store), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(resource_status(&s, &at), 200);
}

#[test]
fn a_forged_callback_gets_400_and_the_real_redirect_still_finishes() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let mut login = start_login(home.path(), &s, Some(&store), "60");
    let base = format!("http://127.0.0.1:{}", login.port);
    // Another sign-in's callback (an attacker's code and state), one with no state, and
    // a favicon: none of them ends the login.
    let (status, page) = get(&format!("{base}/callback?code=attacker-code&state=forged"));
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("keeps waiting"), "{page}");
    assert_eq!(get(&format!("{base}/callback?code=attacker-code")).0, 400);
    assert_eq!(get(&format!("{base}/favicon.ico")).0, 404);
    assert!(login.run.running(), "{:?}", login.run.seen);
    assert_eq!(
        s.counters().token_requests,
        0,
        "no code was exchanged for the forged callbacks"
    );
    let (status, page) = get(&follow_authorize(&login.url).unwrap());
    assert_eq!(status, 200, "{page}");
    let (exit, stderr) = login.run.exit();
    assert!(exit.success(), "{stderr}");
    assert!(
        stderr.contains("did not carry this sign-in's state"),
        "{stderr}"
    );
    let (code, at, stderr) = token(home.path(), &s, Some(&store), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(resource_status(&s, &at), 200);
}

#[test]
fn an_abandoned_login_ends_after_wait_even_with_an_idle_connection_open() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let mut login = start_login(home.path(), &s, Some(&store), "2");
    let _idle = TcpStream::connect(("127.0.0.1", login.port)).unwrap();
    // A connection that sends half a request and stalls.
    let mut half = TcpStream::connect(("127.0.0.1", login.port)).unwrap();
    half.write_all(b"GET /callback?state=").unwrap();
    let (exit, stderr) = login.run.exit();
    assert_eq!(exit.code(), Some(4), "a timeout: {stderr}");
    assert!(stderr.contains("in time"), "{stderr}");
}

#[test]
fn sessions_move_from_the_cache_directory_to_the_state_directory() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let (cache, state) = (home.path().join("cache"), home.path().join("state"));
    let old = cache.join("authcore");
    // A session where an older version kept it: $XDG_CACHE_HOME/authcore.
    sign_in(home.path(), &s, Some(&old));
    let xdg = |c: &mut Command| {
        c.env("XDG_CACHE_HOME", &cache)
            .env("XDG_STATE_HOME", &state);
    };
    let run = |verbose: bool| {
        let mut c = with_issuer(home.path(), &s, None, &["token"]);
        xdg(&mut c);
        if verbose {
            c.arg("-v");
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, at, stderr) = run(true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "moved the sessions from {} to {}",
            old.display(),
            state.join("authcore").display()
        )),
        "{stderr}"
    );
    assert_eq!(resource_status(&s, &at), 200);
    assert!(!old.exists(), "moved, not copied");
    let new = state.join("authcore");
    assert_eq!(mode(&new), 0o700);
    for entry in std::fs::read_dir(&new).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    // Once: the next call reads the new place only, and finds the same token there.
    let (code, again, stderr) = run(true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("moved"), "{stderr}");
    assert_eq!(again, at, "the session came along");

    // Without the XDG variables: ~/.cache/authcore to ~/.local/state/authcore.
    let home_cache = home.path().join(".cache/authcore");
    std::fs::create_dir_all(home_cache.parent().unwrap()).unwrap();
    std::fs::rename(&new, &home_cache).unwrap();
    let (code, again, stderr) = token(home.path(), &s, None, &["-v"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again, at);
    let moved = home.path().join(".local/state/authcore");
    assert!(stderr.contains(&moved.display().to_string()), "{stderr}");
    assert!(moved.is_dir() && !home_cache.exists());

    // An old directory another user could have written to is not adopted.
    std::fs::rename(&moved, &home_cache).unwrap();
    std::fs::set_permissions(&home_cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, stderr) = token(home.path(), &s, None, &[]);
    assert_eq!(code, 3, "not signed in at the new place: {stderr}");
    assert!(
        stderr.contains("not moved") && stderr.contains("world-writable"),
        "{stderr}"
    );
    assert!(home_cache.exists(), "left alone");

    // From another file system (a cache on tmpfs): copied, then removed.
    std::fs::set_permissions(&home_cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    use std::os::unix::fs::MetadataExt;
    let here = std::fs::metadata(home.path()).unwrap().dev();
    let Some(elsewhere) = ["/dev/shm", "/run/user"]
        .iter()
        .filter_map(|d| tempfile::tempdir_in(d).ok())
        .find(|d| std::fs::metadata(d.path()).is_ok_and(|m| m.dev() != here))
    else {
        eprintln!("skipped the copy across file systems: no second file system to use");
        return;
    };
    let far_cache = elsewhere.path().join("authcore");
    std::fs::create_dir(&far_cache).unwrap();
    std::fs::set_permissions(&far_cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(&home_cache).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, far_cache.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::remove_dir_all(&home_cache).unwrap();
    std::fs::remove_dir_all(&moved).unwrap();
    let mut c = with_issuer(home.path(), &s, None, &["token", "-v"]);
    c.env("XDG_CACHE_HOME", elsewhere.path());
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("moved the sessions"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), at);
    assert!(!far_cache.exists() && moved.is_dir());
    assert_eq!(mode(&moved), 0o700);
}

#[test]
fn a_store_directory_other_users_can_write_or_own_is_refused() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let cc = |dir: &Path| {
        let out = authcore(home.path())
            .args(["token", "--provider", "client-credentials"])
            .args(["--client-id", "dev-client", "--token-url"])
            .arg(format!("{}/oauth2/token", s.url()))
            .arg("--store")
            .arg(dir)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Made by authcore: 0700, and used.
    let own = home.path().join("own");
    let (code, stderr) = cc(&own);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(mode(&own), 0o700);
    for (bits, what) in [(0o777, "world-writable"), (0o770, "group-writable")] {
        let dir = home.path().join(format!("shared-{bits:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bits)).unwrap();
        let (code, stderr) = cc(&dir);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(&dir.display().to_string()) && stderr.contains(what),
            "{stderr}"
        );
    }
    // Owned by another user: as root, a directory given away; otherwise one root owns.
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata(home.path()).unwrap().uid();
    let theirs: PathBuf = if me == 0 {
        let dir = home.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        dir
    } else if std::fs::metadata("/").unwrap().uid() != me {
        PathBuf::from("/")
    } else {
        eprintln!("skipped: not root, and no directory of another user to try");
        return;
    };
    let (code, stderr) = cc(&theirs);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&theirs.display().to_string()) && stderr.contains("owned by another user"),
        "{stderr}"
    );
}

#[test]
fn logout_removes_the_session_whatever_the_provider_can_do() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let logout = |secret: &str| {
        let out = with_issuer(home.path(), &s, Some(&store), &["logout"])
            .env("AUTHCORE_CLIENT_SECRET", secret)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Nothing signed in: said so, exit 0.
    let (code, stderr) = logout("dev-secret");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Not signed in"), "{stderr}");
    assert_eq!(s.counters().revocations, 0);

    // Revoked at the provider and removed.
    sign_in(home.path(), &s, Some(&store));
    let (_, at, _) = token(home.path(), &s, Some(&store), &[]);
    let (code, stderr) = logout("dev-secret");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("revoked at the provider"), "{stderr}");
    assert!(s.counters().revocations > 0);
    assert_eq!(resource_status(&s, &at), 401);
    assert_eq!(token(home.path(), &s, Some(&store), &[]).0, 3);

    // A provider without a revocation endpoint: removed here all the same, and said so.
    sign_in(home.path(), &s, Some(&store));
    let (_, at, _) = token(home.path(), &s, Some(&store), &[]);
    s.set_behaviour(Behaviour {
        revocation_endpoint: false,
        ..Behaviour::default()
    })
    .unwrap();
    let revocations = s.counters().revocations;
    let (code, stderr) = logout("dev-secret");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("removed from the store") && stderr.contains("no revocation endpoint"),
        "{stderr}"
    );
    assert_eq!(s.counters().revocations, revocations, "nothing sent");
    assert_eq!(resource_status(&s, &at), 200, "not revoked at the provider");
    let (code, _, stderr) = token(home.path(), &s, Some(&store), &[]);
    assert_eq!(code, 3, "the session is gone here: {stderr}");
    let (code, stderr) = logout("dev-secret");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Not signed in"), "{stderr}");

    // A provider that refuses to revoke (here: it does not know the client's secret):
    // removed here all the same, the refusal said, exit 3.
    s.set_behaviour(Behaviour::default()).unwrap();
    sign_in(home.path(), &s, Some(&store));
    let (code, stderr) = logout("not-the-dev-secret");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("removed from the store")
            && stderr.contains("could not revoke")
            && stderr.contains("invalid_client"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-dev-secret"), "{stderr}");
    assert_eq!(token(home.path(), &s, Some(&store), &[]).0, 3);
}

#[test]
fn a_rotated_refresh_token_the_store_cannot_keep_exits_6_with_the_token() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    // A session whose access token lives one second: past it, `token` must renew.
    s.set_behaviour(Behaviour {
        lifetime_secs: 1,
        ..Behaviour::default()
    })
    .unwrap();
    sign_in(home.path(), &s, Some(&store));
    let signed_in = Instant::now();
    let records: Vec<PathBuf> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    let [record] = records.as_slice() else {
        panic!("one session record: {records:?}")
    };
    // The token request is held for a while by the provider; once it has arrived (the
    // record has been read under the lock), the record's path becomes a directory, which
    // no one (root included) can rename a file over: the save after the rotation fails.
    s.set_behaviour(Behaviour {
        latency_ms: 4000,
        ..Behaviour::default()
    })
    .unwrap();
    while signed_in.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = s.counters().token_requests;
    let mut run = Running::spawn(with_issuer(home.path(), &s, Some(&store), &["token"]));
    let end = Instant::now() + BOUND;
    while s.counters().token_requests == before {
        assert!(Instant::now() < end, "no token request: {:?}", run.seen);
        assert!(run.running(), "ended before its token request");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_file(record).unwrap();
    std::fs::create_dir(record).unwrap();
    std::fs::write(record.join("blocker"), b"").unwrap();
    let (exit, stderr) = run.exit();
    let at = run.stdout().trim().to_owned();
    assert_eq!(exit.code(), Some(6), "{stderr}");
    assert!(stderr.contains("could not be kept"), "{stderr}");
    assert!(
        stderr.contains("store.save_failed") || stderr.contains("could not save"),
        "{stderr}"
    );
    assert_eq!(resource_status(&s, &at), 200, "the token printed is good");
}

#[test]
fn a_sign_in_that_cannot_be_saved_is_not_reported_as_signed_in() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    sign_in(home.path(), &s, Some(&store));
    let record = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("the session record");
    // The record's path is a directory: the next sign-in cannot be written there.
    std::fs::remove_file(&record).unwrap();
    std::fs::create_dir(&record).unwrap();
    let mut login = start_login(home.path(), &s, Some(&store), "60");
    let (status, page) = get(&follow_authorize(&login.url).unwrap());
    assert_eq!(status, 200, "{page}");
    let (exit, stderr) = login.run.exit();
    assert_eq!(exit.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("could not be saved") && !stderr.contains("Signed in;"),
        "{stderr}"
    );
}

/// A local process that keeps the redirect listener busy with idle connections (more
/// than it serves at once, each opened again as soon as the listener closes it) must not
/// keep the real redirect out until `--wait` runs out: the listener serves at most 32
/// connections at once and accepts no other until one of them ends (5 s), so the
/// browser's connection waits behind every idle one queued before it.
#[test]
fn many_idle_connections_never_hold_up_the_redirect() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let mut login = start_login(home.path(), &s, Some(&store), "20");
    let redirect = follow_authorize(&login.url).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], login.port).into();
    let connect = move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            .ok()
            .inspect(|c| c.set_nonblocking(true).unwrap())
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (opened, ready) = mpsc::channel();
    let flooder = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut conns: Vec<Option<TcpStream>> = (0..200).map(|_| connect()).collect();
            opened.send(()).unwrap();
            let end = Instant::now() + Duration::from_secs(45);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                for c in conns.iter_mut() {
                    let closed = match c {
                        Some(stream) => {
                            let mut byte = [0u8; 1];
                            !matches!(stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                        }
                        None => true,
                    };
                    if closed {
                        *c = connect();
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    ready.recv_timeout(BOUND).unwrap();
    // The browser follows the redirect now (its outcome is read from the command's exit).
    let browser = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(BOUND))
            .build()
            .into();
        agent.get(&redirect).call().map(|r| r.status().as_u16())
    });
    let (exit, stderr) = login.run.exit();
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let _ = browser.join();
    assert!(
        exit.success(),
        "the real redirect was kept out by idle connections: {stderr}"
    );
}

/// `authcore logout` when the provider cannot be reached at all (offline, or gone):
/// the session must still be removed here, as it is when the provider refuses to
/// revoke or has no revocation endpoint. Today logout first discovers the issuer, and a
/// failed discovery ends it (exit 4) with the session left in the store untouched.
#[test]
fn logout_removes_the_session_when_the_provider_cannot_be_reached() {
    let s = server();
    let issuer = s.url();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    sign_in(home.path(), &s, Some(&store));
    let snapshot = |dir: &Path| {
        let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&store);
    assert!(!before.is_empty(), "signed in: a session file");
    // The provider goes away (its port is closed).
    drop(s);
    let out = authcore(home.path())
        .args(["logout", "--issuer", &issuer, "--client-id", "dev-client"])
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let after = snapshot(&store);
    assert!(
        after != before,
        "logout (exit {:?}) left the session in the store untouched: {stderr}",
        out.status.code()
    );
}

/// What `authcore logout` says and does when the provider cannot be reached: the
/// session `login` signed in is found through the note kept beside it, removed, and
/// nothing is revoked (exit 4, as for an unreachable provider); signing out again finds
/// nothing; a profile no note names is left alone, and said so.
#[test]
fn logout_without_the_provider_says_what_it_did() {
    let s = server();
    let issuer = s.url();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    sign_in(home.path(), &s, Some(&store));
    let notes: Vec<PathBuf> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "login"))
        .collect();
    let [note] = notes.as_slice() else {
        panic!("one note of where the session is kept: {notes:?}")
    };
    assert_eq!(mode(note), 0o600);
    let text = std::fs::read_to_string(note).unwrap();
    assert!(text.contains(&format!("{issuer}/oauth2/token")), "{text}");
    // The provider goes away (its port is closed).
    drop(s);
    let logout = |extra: &[&str]| {
        let out = authcore(home.path())
            .args(["logout", "--issuer", &issuer, "--client-id", "dev-client"])
            .args(extra)
            .arg("--store")
            .arg(&store)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = logout(&[]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("removed from the store")
            && stderr.contains("could not be reached")
            && stderr.contains("nothing was revoked"),
        "{stderr}"
    );
    // Gone here: signing out again finds nothing, and says so.
    let (code, stderr) = logout(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Not signed in"), "{stderr}");
    // A profile no note names: nothing can be found without the provider, and said so.
    let (code, stderr) = logout(&["--store-key", "someone-else"]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("nothing was removed") && !stderr.contains("Not signed in"),
        "{stderr}"
    );
}

/// `authcore login --dpop` remembers beside the session that it is DPoP-bound (the key
/// itself is in the session's record): a later `authcore token` without DPoP options
/// renews it with DPoP, and refuses a provider's Bearer answer as the sign-in would have
/// (exit 5; the provider rotated the refresh token into that answer, so the session
/// then needs a new sign-in).
#[test]
fn a_dpop_login_is_renewed_with_dpop_and_a_bearer_downgrade_is_refused() {
    let s = server();
    let dpop = |bearer_only: bool| Behaviour {
        dpop: true,
        dpop_bearer_only: bearer_only,
        lifetime_secs: 1,
        ..Behaviour::default()
    };
    s.set_behaviour(dpop(false)).unwrap();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let mut run = Running::spawn(with_issuer(
        home.path(),
        &s,
        Some(&store),
        &[
            "login",
            "--no-browser",
            "--scope",
            "openid",
            "--wait",
            "60",
            "--dpop",
        ],
    ));
    let url = run.find(|l| l.trim().starts_with("http").then(|| l.trim().to_owned()));
    let (status, page) = get(&follow_authorize(&url).unwrap());
    assert_eq!(status, 200, "{page}");
    let (exit, stderr) = run.exit();
    assert!(exit.success(), "{stderr}");
    assert_eq!(s.counters().dpop_tokens_issued, 1);

    // Past the 1 s lifetime: a renewal, with DPoP, though no DPoP option is given.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, at, stderr) = token(home.path(), &s, Some(&store), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(s.counters().dpop_tokens_issued, 2);
    assert_eq!(resource_status(&s, &at), 401, "DPoP-bound: no bearer token");

    // The provider now answers Bearer: the remembered setting refuses the downgrade.
    s.set_behaviour(dpop(true)).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    // The provider spent the refresh token on that answer (it rotated it into the
    // refused response): the session is over at once (the spent refresh token is never
    // sent again), and this call and the next say to sign in again.
    let (code, out, stderr) = token(home.path(), &s, Some(&store), &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("Bearer"), "{stderr}");
    assert!(out.is_empty());
    let refreshes = s.counters().token_requests;
    let (code, out, stderr) = token(
        home.path(),
        &s,
        Some(&store),
        &["--dpop", "--dpop-allow-bearer"],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("sign in again"), "{stderr}");
    assert!(out.is_empty());
    assert_eq!(s.counters().token_requests, refreshes, "nothing sent again");
}

/// The command in "Signed in; `…` prints a fresh token." as the words a shell would
/// make of it (no shell is run).
fn printed_token_command(stderr: &str) -> Vec<String> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Signed in; `"))
        .unwrap_or_else(|| panic!("no sign-in line: {stderr}"));
    let command = line
        .trim_start_matches("Signed in; `")
        .split('`')
        .next()
        .unwrap();
    shlex::split(command).unwrap_or_else(|| panic!("not shell words: {command}"))
}

/// Runs `words` as typed (the program, then its arguments, with nothing inherited but
/// `home` and `env`): exit code, stdout, stderr.
fn run_typed(words: &[String], home: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = authcore(home);
    c.env_remove("AUTHCORE_CLIENT_SECRET");
    c.envs(env.iter().copied());
    // `authcore(home)` names the binary; the printed command must name it itself.
    let mut typed = Command::new(&words[0]);
    typed.args(&words[1..]);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => typed.env(k, v),
            None => typed.env_remove(k),
        };
    }
    let out = typed.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `authcore login` ends with the `authcore token` command that prints a fresh token of
/// the session: typed exactly as printed, it does — with every option that finds the
/// session (client id, a store directory with a space in its name, a profile) and the
/// secret's file; with the secret in the environment, it says the command needs it there.
#[test]
fn the_token_command_login_prints_works_when_typed() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("my store");
    let secret = home.path().join("client secret");
    std::fs::write(&secret, "dev-secret\n").unwrap();

    // Device login (the development provider approves the device by itself).
    let mut c = authcore(home.path());
    c.env_remove("AUTHCORE_CLIENT_SECRET")
        .args(["login", "--device", "--wait", "60", "--issuer", &s.url()])
        .args(["--client-id", "dev-client", "--store-key", "work"])
        .arg("--store")
        .arg(&store)
        .arg("--client-secret-file")
        .arg(&secret);
    let mut login = Running::spawn(c);
    let (exit, stderr) = login.exit();
    assert!(exit.success(), "{stderr}");
    let words = printed_token_command(&stderr);
    assert_eq!(words[0], env!("CARGO_BIN_EXE_authcore"), "{words:?}");
    assert!(!stderr.contains("dev-secret"), "{stderr}");
    let (code, at, err) = run_typed(&words, home.path(), &[]);
    assert_eq!(code, 0, "{words:?}: {err}");
    assert_eq!(resource_status(&s, &at), 200);

    // Browser login with the secret in the environment.
    let mut login = start_login(home.path(), &s, None, "60");
    let (status, page) = get(&follow_authorize(&login.url).unwrap());
    assert_eq!(status, 200, "{page}");
    let (exit, stderr) = login.run.exit();
    assert!(exit.success(), "{stderr}");
    assert!(
        stderr.contains("prints a fresh token (with AUTHCORE_CLIENT_SECRET set, as now)"),
        "{stderr}"
    );
    let words = printed_token_command(&stderr);
    let (code, at, err) = run_typed(
        &words,
        home.path(),
        &[("AUTHCORE_CLIENT_SECRET", "dev-secret")],
    );
    assert_eq!(code, 0, "{words:?}: {err}");
    assert_eq!(resource_status(&s, &at), 200);
}

/// A session the provider ended (its refresh token revoked) makes `authcore token` say,
/// on the error's one line, the `authcore login` command that signs in again: with the
/// session's issuer, client id, store, profile and secret file, it signs in when typed
/// (with `--device`, the way this test's user signs in) and the token command works again.
#[test]
fn the_sign_in_again_hint_is_a_command_that_signs_in() {
    let s = server();
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("a store");
    let secret = home.path().join("secret");
    std::fs::write(&secret, "dev-secret\n").unwrap();
    s.set_behaviour(Behaviour {
        lifetime_secs: 1,
        ..Behaviour::default()
    })
    .unwrap();

    let mut c = authcore(home.path());
    c.env_remove("AUTHCORE_CLIENT_SECRET")
        .args(["login", "--device", "--wait", "60", "--issuer", &s.url()])
        .args(["--client-id", "dev-client", "--store-key", "work"])
        .arg("--store")
        .arg(&store)
        .arg("--client-secret-file")
        .arg(&secret);
    let (exit, stderr) = Running::spawn(c).exit();
    assert!(exit.success(), "{stderr}");
    let token_words = printed_token_command(&stderr);

    // The provider ends the session; the access token runs out.
    s.revoke_all(true);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, _, err) = run_typed(&token_words, home.path(), &[]);
    assert_eq!(code, 3, "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one failure, one line: {lines:?}");
    let hint = lines[0]
        .split_once("; sign in again: ")
        .unwrap_or_else(|| panic!("no sign-in command: {lines:?}"))
        .1;
    assert!(!hint.contains("dev-secret"), "{hint}");
    let mut words = shlex::split(hint).unwrap_or_else(|| panic!("not shell words: {hint}"));
    assert_eq!(
        words[..2],
        [
            env!("CARGO_BIN_EXE_authcore").to_owned(),
            "login".to_owned()
        ]
    );
    words.extend(["--device".to_owned(), "--wait".to_owned(), "60".to_owned()]);
    let (code, _, err) = run_typed(&words, home.path(), &[]);
    assert_eq!(code, 0, "{words:?}: {err}");
    let (code, at, err) = run_typed(&token_words, home.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(resource_status(&s, &at), 200);
}

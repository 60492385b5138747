//! Races and compositions of the store tier found by review, each kept as a regression
//! test: a doc comment says what used to go wrong, the test asserts it no longer does.
//! Against a small tiny_http provider whose refresh tokens rotate and are refused when
//! sent twice.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use authcore::grant::{ClientCredentials, RefreshToken};
use authcore::{
    Client, ErrorKind, FileStore, MemoryStore, Options, StoreKey, StoreLock, StoredToken,
    TokenStore,
};
use common::opts;

/// A tiny provider: client credentials hand out `at-N`; refresh tokens rotate
/// (`rt-N` -> `rt-N+1`) and a refresh token sent a second time (or never issued) is
/// refused with `invalid_grant`; `/revoke` records what it revoked.
struct Provider {
    url: String,
    /// Every refresh token sent, in order.
    sent: Arc<Mutex<Vec<String>>>,
    revoked: Arc<Mutex<Vec<String>>>,
    /// Milliseconds each refresh-token request takes.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

fn provider(expires_in: u64) -> Provider {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let (s, r) = (sent.clone(), revoked.clone());
    let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let d = delay_ms.clone();
    std::thread::spawn(move || {
        let next = AtomicUsize::new(1);
        let mut live: HashSet<String> = ["rt-0".to_owned()].into_iter().collect();
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            req.as_reader().read_to_string(&mut body).unwrap();
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
            let reply = |status: u16, json: String| {
                tiny_http::Response::from_string(json)
                    .with_status_code(status)
                    .with_header(
                        "Content-Type: application/json"
                            .parse::<tiny_http::Header>()
                            .unwrap(),
                    )
            };
            let response = if req.url().starts_with("/revoke") {
                let token = form.get("token").cloned().unwrap_or_default();
                live.remove(&token);
                r.lock().unwrap().push(token);
                reply(200, "{}".into())
            } else if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
                let rt = form.get("refresh_token").cloned().unwrap_or_default();
                s.lock().unwrap().push(rt.clone());
                std::thread::sleep(Duration::from_millis(d.load(SeqCst)));
                if live.remove(&rt) {
                    let n = next.fetch_add(1, SeqCst);
                    live.insert(format!("rt-{n}"));
                    reply(
                        200,
                        format!(
                            r#"{{"access_token":"at-{n}","refresh_token":"rt-{n}","expires_in":{expires_in}}}"#
                        ),
                    )
                } else {
                    reply(400, r#"{"error":"invalid_grant"}"#.into())
                }
            } else {
                let n = next.fetch_add(1, SeqCst);
                reply(
                    200,
                    format!(r#"{{"access_token":"at-{n}","expires_in":{expires_in}}}"#),
                )
            };
            let _ = req.respond(response);
        }
    });
    Provider {
        url,
        sent,
        revoked,
        delay_ms,
    }
}

fn refresh_client(p: &Provider, rt: &str, options: Options) -> Client {
    Client::new(
        RefreshToken::new(format!("{}/token", p.url), "id", "secret", rt.to_owned())
            .revocation_url(format!("{}/revoke", p.url)),
        options,
    )
    .unwrap()
}

fn at(client: &Client) -> String {
    client
        .cached_token()
        .map(|t| t.access_token().expose_secret().to_owned())
        .unwrap_or_default()
}

/// A memory store whose `try_lock` (used by renewals ahead of expiry) blocks on a gate
/// until the test opens it, then answers "busy" (another process holds the lock).
struct GateStore {
    inner: MemoryStore,
    /// 3: not armed yet, 0: armed, 1: a renewal is inside try_lock, 2: released.
    gate: Mutex<u8>,
    changed: Condvar,
}

impl GateStore {
    fn wait_for(&self, state: u8) {
        let mut g = self.gate.lock().unwrap();
        while *g != state {
            g = self.changed.wait(g).unwrap();
        }
    }
    fn set(&self, state: u8) {
        *self.gate.lock().unwrap() = state;
        self.changed.notify_all();
    }
}

impl TokenStore for GateStore {
    fn load(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<Option<StoredToken>> {
        self.inner.load(lock, key)
    }
    fn lock(&self, key: &StoreKey, deadline: Instant) -> authcore::Result<StoreLock> {
        self.inner.lock(key, deadline)
    }
    fn try_lock(&self, key: &StoreKey, deadline: Instant) -> authcore::Result<Option<StoreLock>> {
        if *self.gate.lock().unwrap() != 0 {
            // Only the first attempt once armed is held at the gate.
            return self.inner.try_lock(key, deadline);
        }
        self.set(1);
        self.wait_for(2);
        Ok(None)
    }
    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> authcore::Result<()> {
        self.inner.save(lock, key, token)
    }
    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<()> {
        self.inner.remove(lock, key)
    }
}

fn gate_store() -> Arc<GateStore> {
    Arc::new(GateStore {
        inner: MemoryStore::new(),
        gate: Mutex::new(3),
        changed: Condvar::new(),
    })
}

/// Regression: a renewal ahead of expiry that finds the store busy "keeps" the token it
/// started with — even when an API rejected that token meanwhile. The rejected token
/// is put back as the current token and handed to the caller that waited for a new one.
#[test]
fn a_busy_store_never_brings_back_a_rejected_token() {
    let p = provider(6); // fresh for 4.8 s, valid until 5.7 s
    let store = gate_store();
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", p.url), "id", "secret"),
        opts().store(store.clone()),
    )
    .unwrap();
    let first = client.token().unwrap();
    assert_eq!(first.access_token().expose_secret(), "at-1");
    std::thread::sleep(Duration::from_millis(4900)); // stale, still valid
    store.set(0);
    let c = client.clone();
    let ahead = std::thread::spawn(move || c.token().unwrap());
    store.wait_for(1); // the ahead renewal is trying the store's lock
    assert!(client.invalidate(&first), "the API rejected at-1: dropped");
    let c = client.clone();
    let waiter = std::thread::spawn(move || c.token().unwrap());
    std::thread::sleep(Duration::from_millis(150)); // the waiter waits on the flight
    store.set(2); // another process holds the lock: the ahead renewal keeps its token
    ahead.join().unwrap();
    let got = waiter.join().unwrap();
    assert_ne!(
        got.access_token().expose_secret(),
        "at-1",
        "the caller that asked for a replacement of the rejected token got it back"
    );
    assert_ne!(
        at(&client),
        "at-1",
        "the rejected token is the cached token again"
    );
}

/// Regression: `refresh()` during a renewal ahead of expiry that found the store busy
/// returns the very token it was meant to force out.
#[test]
fn refresh_during_a_busy_ahead_renewal_yields_a_new_token() {
    let p = provider(6);
    let store = gate_store();
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", p.url), "id", "secret"),
        opts().store(store.clone()),
    )
    .unwrap();
    let first = client.token().unwrap();
    std::thread::sleep(Duration::from_millis(4900));
    store.set(0);
    let c = client.clone();
    let ahead = std::thread::spawn(move || c.token().unwrap());
    store.wait_for(1);
    let c = client.clone();
    let forced = std::thread::spawn(move || c.refresh());
    std::thread::sleep(Duration::from_millis(150));
    store.set(2);
    ahead.join().unwrap();
    let forced = forced.join().unwrap().unwrap();
    assert_ne!(
        forced.access_token().expose_secret(),
        first.access_token().expose_secret(),
        "refresh() yielded the token it was to replace"
    );
}

/// Regression: a refresh token older than the stored record's lineage (17 rotations: the
/// lineage keeps 16), passed in by a process that starts from it, wins over the store:
/// it is sent a second time, refused, and the tombstone it leaves signs out every other
/// process of the user, whose refresh token is perfectly valid.
#[test]
fn a_stale_refresh_token_passed_in_is_not_sent_twice_nor_signs_others_out() {
    let p = provider(3600);
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let options = || opts().store(store.clone()).store_key("alice");
    let a = refresh_client(&p, "rt-0", options());
    a.token().unwrap();
    for _ in 0..16 {
        a.refresh().unwrap();
    }
    assert_eq!(at(&a), "at-17");
    // A process (re)started from the refresh token it was deployed with.
    let b = refresh_client(&p, "rt-0", options());
    let b_result = b.token();
    let rt0_sends = p
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter(|r| *r == "rt-0")
        .count();
    let a_result = a.refresh();
    assert_eq!(
        rt0_sends,
        1,
        "rt-0 was sent twice (b: {:?})",
        b_result.err()
    );
    assert!(
        a_result.is_ok(),
        "a's valid session (rt-17) was signed out by b's stale token: {:?}",
        a_result.err().map(|e| e.kind())
    );
}

/// One process started from a refresh token the store never saw (a typo, an old config
/// value) is refused, and must not sign out the other processes of the user.
#[test]
fn a_foreign_refused_refresh_token_leaves_a_live_session_alone() {
    let p = provider(3600);
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let options = || opts().store(store.clone()).store_key("alice");
    let a = refresh_client(&p, "rt-0", options());
    a.token().unwrap();
    let b = refresh_client(&p, "rt-not-issued", options());
    // b's own refresh token is refused; the store holds alice's live session, which b
    // goes on with instead of signing everyone out.
    let b_token = b.token().unwrap();
    assert_eq!(b_token.access_token(), a.token().unwrap().access_token());
    let a_result = a.refresh();
    assert!(
        a_result.is_ok(),
        "a's valid session was signed out by b's refused token: {:?}",
        a_result.err().map(|e| e.kind())
    );
}

/// A memory store whose next save fails once (a Redis blip, a full disk).
struct FlakyStore {
    inner: MemoryStore,
    fail_next_save: AtomicBool,
}

impl FlakyStore {
    fn new() -> Arc<FlakyStore> {
        Arc::new(FlakyStore {
            inner: MemoryStore::new(),
            fail_next_save: AtomicBool::new(false),
        })
    }
}

impl TokenStore for FlakyStore {
    fn load(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<Option<StoredToken>> {
        self.inner.load(lock, key)
    }
    fn lock(&self, key: &StoreKey, deadline: Instant) -> authcore::Result<StoreLock> {
        self.inner.lock(key, deadline)
    }
    fn peek(
        &self,
        key: &StoreKey,
        deadline: Instant,
    ) -> Option<authcore::Result<Option<StoredToken>>> {
        self.inner.peek(key, deadline)
    }
    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> authcore::Result<()> {
        if self.fail_next_save.swap(false, SeqCst) {
            return Err(authcore::Error::Store {
                message: "save failed".into(),
            });
        }
        self.inner.save(lock, key, token)
    }
    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<()> {
        self.inner.remove(lock, key)
    }
}

/// Regression: a rotation whose save failed is "written first under the next lock" — even
/// over the tombstone another process left when it revoked the session (the unsaved
/// record's own lineage names the revoked refresh tokens). The revoked session comes
/// back for every process.
#[test]
fn an_unsaved_rotation_never_overwrites_a_revocation() {
    let p = provider(3600);
    let flaky = FlakyStore::new();
    let store: Arc<dyn TokenStore> = flaky.clone();
    let options = || opts().store(store.clone()).store_key("alice");
    let a = refresh_client(&p, "rt-0", options());
    a.token().unwrap(); // rt-0 -> rt-1, saved
    let b = refresh_client(&p, "rt-0", options());
    b.token().unwrap(); // adopts at-1 / rt-1 from the store
    assert_eq!(at(&b), "at-1");
    flaky.fail_next_save.store(true, SeqCst);
    a.refresh().unwrap(); // rt-1 -> rt-2, the save fails: kept unsaved in a
    b.revoke().unwrap(); // signs the user out: tombstone naming rt-1 and rt-0
    let after = a.refresh();
    assert!(
        after.is_err(),
        "a renewed a revoked session (and wrote it back to the store): {}",
        at(&a)
    );
    // The signed-out client says why, not as a configuration error.
    let e = b.token().unwrap_err();
    assert_eq!(
        e.kind(),
        authcore::ErrorKind::ReauthenticationRequired,
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with("reauthentication required: the session")
            && !text.contains("configuration"),
        "{text}"
    );
}

/// Regression (found by the composition test): `revoke()` whose tombstone the store
/// failed to save forgot the tokens here, and the client's next call adopted the live
/// record still in the store: the revoked access token was sent, then the revoked
/// refresh token. Now the tombstone is written first under the next lock, and the
/// revoked session is adopted back by no client.
#[test]
fn a_revocation_the_store_failed_to_save_is_never_undone() {
    let p = provider(3600);
    let flaky = FlakyStore::new();
    let store: Arc<dyn TokenStore> = flaky.clone();
    let options = || opts().store(store.clone()).store_key("alice");
    let a = refresh_client(&p, "rt-0", options());
    a.token().unwrap(); // rt-0 -> rt-1, saved
    flaky.fail_next_save.store(true, SeqCst);
    let revoked = a.revoke();
    assert!(revoked.is_err(), "the tombstone's save failed: said so");
    assert!(p.revoked.lock().unwrap().contains(&"rt-1".to_owned()));
    let sent_before = p.sent.lock().unwrap().len();
    let again = a.token();
    assert!(
        again.is_err(),
        "the revoked session was adopted back from the store: {}",
        at(&a)
    );
    assert_eq!(
        p.sent.lock().unwrap().len(),
        sent_before,
        "a revoked refresh token was sent"
    );
    // The tombstone reached the store under that lock: another process is told too.
    let b = refresh_client(&p, "rt-1", options());
    assert!(
        b.token().is_err(),
        "another process adopted the revoked session"
    );
}

/// Regression: `revoke()` spends its whole deadline waiting for a store lock another
/// process holds (a FileStore lock never lapses by itself), then sends the revocation
/// requests with no time left: nothing is revoked at the provider.
#[test]
fn revoke_behind_a_busy_file_lock_still_reaches_the_provider() {
    let p = provider(3600);
    let dir = tempfile_dir("revoke-busy");
    let store = Arc::new(FileStore::new(&dir).unwrap());
    let a = refresh_client(
        &p,
        "rt-0",
        opts()
            .store(store)
            .store_key("alice")
            .timeout(Duration::from_millis(800)),
    );
    a.token().unwrap();
    // Another process is renewing (holds the lock file).
    let lock_file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "lock"))
        .unwrap();
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_file)
        .unwrap();
    held.lock().unwrap();
    let outcome = a.revoke();
    held.unlock().unwrap();
    let revoked = p.revoked.lock().unwrap().clone();
    assert!(
        !revoked.is_empty(),
        "nothing was revoked at the provider (revoke: {:?})",
        outcome.err().map(|e| e.to_string())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "authcore-review-{name}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A refresh-token client with a store and no store key is a Config error whose message
/// names no option of one host only (C and Python callers read it too).
#[test]
fn a_refresh_token_client_with_a_store_needs_a_store_key_in_any_host() {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let e = Client::new(
        RefreshToken::new("https://id.example/token", "id", "secret", "rt-0"),
        Options::default().store(store),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        !e.to_string().contains("Options::store_key"),
        "a C or Python caller is told to set a Rust-only option: {e}"
    );
}

/// Regression: a Rust store of one's own that keeps the fields it kept before the change
/// (and fills the new ones with defaults to compile) turns a tombstone into a token:
/// an empty access token with no lifetime, fresh forever, adopted by every client.
struct FieldStore {
    inner: MemoryStore,
}

impl TokenStore for FieldStore {
    fn load(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<Option<StoredToken>> {
        Ok(self.inner.load(lock, key)?.map(|s| StoredToken {
            version: 0,
            lineage: Vec::new(),
            revoked: false,
            ..s
        }))
    }
    fn lock(&self, key: &StoreKey, deadline: Instant) -> authcore::Result<StoreLock> {
        self.inner.lock(key, deadline)
    }
    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> authcore::Result<()> {
        self.inner.save(lock, key, token)
    }
    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<()> {
        self.inner.remove(lock, key)
    }
}

#[test]
fn a_store_that_keeps_only_the_old_fields_never_serves_an_empty_token() {
    let p = provider(3600);
    let store: Arc<dyn TokenStore> = Arc::new(FieldStore {
        inner: MemoryStore::new(),
    });
    let cc = || {
        Client::new(
            ClientCredentials::new(format!("{}/token", p.url), "id", "secret")
                .revocation_url(format!("{}/revoke", p.url)),
            opts().store(store.clone()),
        )
        .unwrap()
    };
    let a = cc();
    a.token().unwrap();
    a.revoke().unwrap();
    let b = cc();
    let t = b.token().unwrap();
    assert_ne!(
        t.access_token().expose_secret(),
        "",
        "an empty access token is served"
    );
}

/// Regression: a renewal in flight that outlasts `revoke()`'s own timeout (a request with
/// a longer timeout of its own) saves a live session to the store after `revoke()`
/// returned; nothing was revoked at the provider, and every other process adopts it.
#[test]
fn a_slow_renewal_in_flight_cannot_bring_a_revoked_session_back() {
    let p = provider(1);
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let options = || {
        opts()
            .store(store.clone())
            .store_key("alice")
            .timeout(Duration::from_millis(500))
    };
    let a = refresh_client(&p, "rt-0", options());
    a.token().unwrap(); // rt-0 -> rt-1
    std::thread::sleep(Duration::from_millis(1000)); // expired
    p.delay_ms.store(1500, SeqCst);
    let sent_before = p.sent.lock().unwrap().len();
    let c = a.clone();
    let url = format!("{}/api", p.url);
    let upload = std::thread::spawn(move || {
        c.request_with_timeout("GET", &url, &[], &[], Some(Duration::from_secs(5)))
    });
    // The signal that the renewal is in flight: the provider has received rt-1.
    let in_flight = (0..2000).any(|_| {
        std::thread::sleep(Duration::from_millis(5));
        p.sent.lock().unwrap().len() > sent_before
    });
    assert!(in_flight, "the renewal never reached the provider");
    let revoked = a.revoke();
    let _ = upload.join().unwrap();
    p.delay_ms.store(0, SeqCst);
    // Another process of the same user, after revoke() returned.
    let other = refresh_client(&p, "rt-0", options());
    let after = other.token();
    assert!(
        after.is_err(),
        "revoke() returned {:?}; the provider revoked {:?}; another process then got {}",
        revoked.err().map(|e| e.kind()),
        p.revoked.lock().unwrap(),
        at(&other)
    );
}

/// Regression: `refresh()` after the cached token was dropped as rejected (`invalidate`)
/// replaces "the current token" — there is none — so the stored copy of the token the
/// API just rejected is adopted back.
#[test]
fn refresh_after_invalidate_never_adopts_the_rejected_token() {
    let p = provider(3600);
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", p.url), "id", "secret"),
        opts().store(store),
    )
    .unwrap();
    let rejected = client.token().unwrap();
    assert!(client.invalidate(&rejected));
    let forced = client.refresh().unwrap();
    assert_ne!(
        forced.access_token().expose_secret(),
        rejected.access_token().expose_secret(),
        "refresh() handed back the token the API rejected"
    );
}

/// A memory store whose lock is always busy for renewals ahead of expiry; counts tries.
struct AlwaysBusy {
    inner: MemoryStore,
    tries: AtomicUsize,
}

impl TokenStore for AlwaysBusy {
    fn load(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<Option<StoredToken>> {
        self.inner.load(lock, key)
    }
    fn lock(&self, key: &StoreKey, deadline: Instant) -> authcore::Result<StoreLock> {
        self.inner.lock(key, deadline)
    }
    fn try_lock(&self, _key: &StoreKey, _deadline: Instant) -> authcore::Result<Option<StoreLock>> {
        self.tries.fetch_add(1, SeqCst);
        Ok(None)
    }
    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> authcore::Result<()> {
        self.inner.save(lock, key, token)
    }
    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<()> {
        self.inner.remove(lock, key)
    }
}

/// Regression (load): while another process renews, every `token()` call in the renew-ahead
/// window becomes a store round trip (one try_lock each, no pause between them).
#[test]
fn a_busy_store_costs_one_lock_attempt_per_pause_not_per_call() {
    let p = provider(6);
    let store = Arc::new(AlwaysBusy {
        inner: MemoryStore::new(),
        tries: AtomicUsize::new(0),
    });
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", p.url), "id", "secret"),
        opts().store(store.clone()),
    )
    .unwrap();
    client.token().unwrap();
    std::thread::sleep(Duration::from_millis(4900));
    for _ in 0..1000 {
        client.token().unwrap();
    }
    let tries = store.tries.load(SeqCst);
    assert!(tries < 50, "{tries} lock attempts for 1000 calls");
}

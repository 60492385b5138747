//! One truth per credential: a shared store keeps every guarantee a lone client has.
//! Each test is one defect that a store, a revocation or two users used to cause,
//! against the development provider (a real HTTP server on loopback) and real stores.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authcore::grant::{ClientCredentials, RefreshToken};
use authcore::{
    Client, Error, ErrorKind, FileStore, Options, StoreKey, StoreLock, StoredToken, TokenStore,
};
use authcore_cli::devserver::{Behaviour, Credentials, DevServer};

fn server() -> DevServer {
    DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap()
}

fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("authcore-one-truth-{name}-"))
        .tempdir()
        .unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// One sign-in at the provider (authorization code, no PKCE): a new refresh-token
/// family, as a user signing in in a browser would start.
fn sign_in(server: &DevServer) -> String {
    let base = server.url();
    let agent = agent();
    let reply = agent
        .get(&format!(
            "{base}/oauth2/authorize?client_id=dev-client&response_type=code&redirect_uri=http://127.0.0.1/cb&state=s"
        ))
        .call()
        .unwrap();
    let location = reply.headers()["location"].to_str().unwrap().to_owned();
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let mut reply = agent
        .post(&format!("{base}/oauth2/token"))
        .send_form([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://127.0.0.1/cb"),
            ("client_id", "dev-client"),
            ("client_secret", "dev-secret"),
        ])
        .unwrap();
    let body: serde_json::Value = reply.body_mut().read_json().unwrap();
    body["refresh_token"].as_str().unwrap().to_owned()
}

fn refresh_client(server: &DevServer, rt: &str, options: Options) -> authcore::Result<Client> {
    Client::new(
        RefreshToken::new(
            format!("{}/oauth2/token", server.url()),
            "dev-client",
            "dev-secret",
            rt.to_owned(),
        )
        .revocation_url(format!("{}/oauth2/revoke", server.url())),
        options,
    )
}

fn api(server: &DevServer, client: &Client) -> u16 {
    client
        .get(&format!("{}/api/resource", server.url()))
        .unwrap()
        .status
}

fn lifetime(server: &DevServer, secs: u64) {
    server
        .set_behaviour(Behaviour {
            lifetime_secs: secs,
            ..Behaviour::default()
        })
        .unwrap();
}

/// A store around a real one whose operations can be made to fail, as an unreachable
/// Redis or a full disk would.
struct Faulty {
    inner: FileStore,
    /// Saves to fail from now on (counted down).
    fail_saves: AtomicU32,
    /// Every operation fails while set.
    down: AtomicBool,
}

impl Faulty {
    fn new(dir: &std::path::Path) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner: FileStore::new(dir).unwrap(),
            fail_saves: AtomicU32::new(0),
            down: AtomicBool::new(false),
        })
    }

    fn check(&self) -> authcore::Result<()> {
        if self.down.load(SeqCst) {
            return Err(Error::Store {
                message: "the test store is down".into(),
            });
        }
        Ok(())
    }
}

impl TokenStore for Faulty {
    fn load(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<Option<StoredToken>> {
        self.check()?;
        self.inner.load(lock, key)
    }
    fn lock(&self, key: &StoreKey, deadline: Instant) -> authcore::Result<StoreLock> {
        self.check()?;
        self.inner.lock(key, deadline)
    }
    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> authcore::Result<()> {
        self.check()?;
        let failing = self
            .fail_saves
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Error::Store {
                message: "the test store refused a save".into(),
            });
        }
        self.inner.save(lock, key, token)
    }
    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<()> {
        self.check()?;
        self.inner.remove(lock, key)
    }
}

/// The provider revokes the token a client holds: the store must not hand the very
/// same token back to the renewal that replaces it.
#[test]
fn a_store_does_not_undo_401_recovery() {
    let server = server();
    let dir = temp_dir("401");
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/oauth2/token", server.url()),
            "dev-client",
            "dev-secret",
        ),
        Options::default().store(Arc::new(FileStore::new(dir.path()).unwrap())),
    )
    .unwrap();
    assert_eq!(api(&server, &client), 200);
    let first = client.token().unwrap();
    server.revoke_all(false);
    assert_eq!(api(&server, &client), 200, "recovered after one renewal");
    assert_eq!(server.counters().token_requests, 2);
    let second = client.token().unwrap();
    assert_ne!(first.access_token(), second.access_token());
    // A forced renewal always yields a new token, even though the store holds a fresh
    // copy of the current one.
    let third = client.refresh().unwrap();
    assert_ne!(second.access_token(), third.access_token());
    assert_eq!(server.counters().token_requests, 3);
}

/// Two users' clients with the same token endpoint and client id share one store: each
/// keeps its own tokens, and a refresh-token client that cannot say whose tokens it
/// holds is refused a store.
#[test]
fn two_users_sharing_a_store_never_see_each_others_tokens() {
    let server = server();
    let dir = temp_dir("users");
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path()).unwrap());
    let (rt_a, rt_b) = (sign_in(&server), sign_in(&server));
    let options = |user: &str| Options::default().store(store.clone()).store_key(user);
    let alice = refresh_client(&server, &rt_a, options("alice")).unwrap();
    let bob = refresh_client(&server, &rt_b, options("bob")).unwrap();
    for _ in 0..3 {
        let (a, b) = (alice.refresh().unwrap(), bob.refresh().unwrap());
        assert_ne!(a.access_token(), b.access_token());
        assert_eq!(api(&server, &alice), 200);
        assert_eq!(api(&server, &bob), 200);
    }
    // A second client of alice's adopts alice's token, never bob's.
    let alice_again = refresh_client(&server, &rt_a, options("alice")).unwrap();
    assert_eq!(
        alice_again.token().unwrap().access_token(),
        alice.token().unwrap().access_token()
    );
    let e = refresh_client(&server, &rt_a, Options::default().store(store.clone())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("store key"), "{e}");
    assert_eq!(
        refresh_client(&server, &rt_a, options("bad\nname"))
            .unwrap_err()
            .kind(),
        ErrorKind::Config
    );
}

/// A rotated refresh token that could not be saved is kept, and written first under the
/// next lock: the store's older refresh token never overrides it (which the provider
/// would take as a reuse, and revoke the whole family).
#[test]
fn a_failed_save_never_sends_a_stale_refresh_token_later() {
    let server = server();
    let dir = temp_dir("save");
    let store = Faulty::new(dir.path());
    let rt = sign_in(&server);
    let client = refresh_client(
        &server,
        &rt,
        Options::default().store(store.clone()).store_key("alice"),
    )
    .unwrap();
    client.token().unwrap();
    store.fail_saves.store(1, SeqCst);
    client.refresh().unwrap();
    for _ in 0..5 {
        client.refresh().unwrap();
        assert_eq!(api(&server, &client), 200);
    }
    // And another process (client) sharing the store picks up the newest one.
    let other = refresh_client(
        &server,
        &rt,
        Options::default().store(store.clone()).store_key("alice"),
    )
    .unwrap();
    other.refresh().unwrap();
    assert_eq!(api(&server, &other), 200);
    assert_eq!(api(&server, &client), 200, "both still in one family");
}

/// Logout revokes at the provider even when the store cannot be reached, reports the
/// store's error, and a second call finishes the job once the store is back.
#[test]
fn revoke_with_the_store_down_still_revokes_at_the_provider() {
    let server = server();
    let dir = temp_dir("revoke");
    let store = Faulty::new(dir.path());
    let rt = sign_in(&server);
    let options = || Options::default().store(store.clone()).store_key("alice");
    let client = refresh_client(&server, &rt, options()).unwrap();
    client.token().unwrap();
    store.down.store(true, SeqCst);
    let e = client.revoke().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Store, "{e}");
    assert!(
        server.counters().revocations >= 1,
        "revoked at the provider"
    );
    // Nothing is served and nothing is sent while the store that may still hold the
    // session cannot be reached.
    let before = server.counters().token_requests;
    assert_eq!(client.token().unwrap_err().kind(), ErrorKind::Store);
    assert_eq!(server.counters().token_requests, before);
    store.down.store(false, SeqCst);
    client.revoke().unwrap();
    // The store keeps a tombstone: a client that still holds the old refresh token in
    // memory cannot bring the session back.
    let stale = refresh_client(&server, &rt, options()).unwrap();
    let before = server.counters().token_requests;
    assert_eq!(
        stale.token().unwrap_err().kind(),
        ErrorKind::ReauthenticationRequired
    );
    assert_eq!(server.counters().token_requests, before, "nothing sent");
}

/// The grant is revoked at the provider and the caller rejects its token: the next call
/// is `ReauthenticationRequired` (not the rejected token, served from the store), and the
/// refused refresh token is never sent again.
#[test]
fn a_revoked_grant_is_not_hidden_and_its_refresh_token_is_sent_once() {
    let server = server();
    let dir = temp_dir("grant");
    let rt = sign_in(&server);
    let client = refresh_client(
        &server,
        &rt,
        Options::default()
            .store(Arc::new(FileStore::new(dir.path()).unwrap()))
            .store_key("alice"),
    )
    .unwrap();
    let token = client.token().unwrap();
    server.revoke_all(true);
    assert!(client.invalidate(&token));
    let before = server.counters().token_requests;
    for _ in 0..3 {
        assert_eq!(
            client.token().unwrap_err().kind(),
            ErrorKind::ReauthenticationRequired
        );
    }
    assert_eq!(
        server.counters().token_requests,
        before + 1,
        "the refused refresh token was sent once"
    );
}

/// A renewal in flight while `revoke()` runs cannot bring the tokens back: its caller
/// is told, nothing is cached afterwards, and the token it obtained is revoked too.
#[test]
fn a_renewal_in_flight_cannot_resurrect_a_revoked_session() {
    let server = server();
    let dir = temp_dir("flight");
    let rt = sign_in(&server);
    let client = refresh_client(
        &server,
        &rt,
        Options::default()
            .store(Arc::new(FileStore::new(dir.path()).unwrap()))
            .store_key("alice"),
    )
    .unwrap();
    client.token().unwrap();
    server
        .set_behaviour(Behaviour {
            latency_ms: 600,
            ..Behaviour::default()
        })
        .unwrap();
    let before = server.counters().token_requests;
    let renewing = {
        let client = client.clone();
        std::thread::spawn(move || client.refresh())
    };
    // The signal that the renewal is in flight: the provider counts it on arrival.
    let in_flight = (0..2000).any(|_| {
        std::thread::sleep(Duration::from_millis(5));
        server.counters().token_requests > before
    });
    assert!(in_flight, "the renewal never reached the provider");
    client.revoke().unwrap();
    let outcome = renewing.join().unwrap();
    assert!(outcome.is_err(), "the renewal's token was not handed out");
    assert!(client.cached_token().is_none());
    assert_eq!(
        client.token().unwrap_err().kind(),
        ErrorKind::ReauthenticationRequired
    );
    lifetime(&server, 3600);
    // Nothing of the session works at the provider any more.
    let fresh = sign_in(&server);
    let probe = refresh_client(&server, &fresh, Options::default()).unwrap();
    assert_eq!(api(&server, &probe), 200, "the provider itself is fine");
}

/// A rotated refresh token the store could not save is reported until a save takes it
/// (what `authcore token` exits 6 on), also a sign-in's first; a refresh token of a
/// grant with a credential of its own never is.
#[test]
fn an_unsaved_refresh_token_is_reported_until_a_save_takes_it() {
    use authcore::grant::AuthorizationCode;
    use authcore::AuthorizationCodeFlow;
    let server = server();
    let dir = temp_dir("unsaved");
    let store = Faulty::new(dir.path());
    let options = |user: &str| Options::default().store(store.clone()).store_key(user);
    let rt = sign_in(&server);
    let client = refresh_client(&server, &rt, options("alice")).unwrap();
    client.token().unwrap();
    assert!(!client.has_unsaved_refresh_token());
    store.fail_saves.store(1, SeqCst);
    client.refresh().unwrap();
    assert!(client.has_unsaved_refresh_token(), "rotated, not saved");
    client.refresh().unwrap();
    assert!(
        !client.has_unsaved_refresh_token(),
        "saved with the next renewal"
    );
    assert_eq!(api(&server, &client), 200);

    // A sign-in whose first save fails: reported by the client the flow hands out.
    let base = server.url();
    let flow = AuthorizationCodeFlow::new(
        AuthorizationCode::new(
            format!("{base}/oauth2/authorize"),
            format!("{base}/oauth2/token"),
            "dev-client",
            "dev-secret",
            "http://127.0.0.1/cb",
        ),
        options("bob"),
    )
    .unwrap();
    let request = flow.authorization_url().unwrap();
    let callback = authcore_cli::scenario::follow_authorize(&request.url).unwrap();
    store.fail_saves.store(1, SeqCst);
    let bob = flow.finish(&callback, &request.state).unwrap();
    assert!(bob.has_unsaved_refresh_token(), "the sign-in was not saved");
    bob.refresh().unwrap();
    assert!(!bob.has_unsaved_refresh_token());
    let bob_again = refresh_client(&server, "not-used", options("bob")).unwrap();
    assert_eq!(api(&server, &bob_again), 200, "the session is in the store");

    // Client credentials: a failed save loses nothing.
    let cc = Client::new(
        ClientCredentials::new(format!("{base}/oauth2/token"), "dev-client", "dev-secret"),
        Options::default().store(store.clone()),
    )
    .unwrap();
    store.fail_saves.store(1, SeqCst);
    cc.token().unwrap();
    assert!(!cc.has_unsaved_refresh_token());
}

/// `sign_out` forgets the session here and in the store whatever the provider can do,
/// and says which it was: not signed in, revoked, no revocation endpoint, or why the
/// revocation failed.
#[test]
fn sign_out_forgets_the_session_whatever_the_provider_can_do() {
    use authcore::{Metadata, SignOut};
    let server = server();
    let dir = temp_dir("sign-out");
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path()).unwrap());
    let options = || Options::default().store(store.clone()).store_key("alice");
    let metadata = Metadata::discover(&server.url(), &Options::default()).unwrap();
    // A client of whatever the store holds for alice, as `authcore logout` makes one.
    let stored = || {
        Client::new(
            RefreshToken::from_metadata(&metadata, "dev-client", "dev-secret").unwrap(),
            options(),
        )
        .unwrap()
    };
    assert!(matches!(stored().sign_out(), Ok(SignOut::NotSignedIn)));
    assert_eq!(server.counters().revocations, 0, "nothing sent");

    let signed_in = |revocation_url: Option<String>| {
        let mut grant = RefreshToken::new(
            format!("{}/oauth2/token", server.url()),
            "dev-client",
            "dev-secret",
            sign_in(&server),
        );
        if let Some(url) = revocation_url {
            grant = grant.revocation_url(url);
        }
        let client = Client::new(grant, options()).unwrap();
        client.token().unwrap();
        client
    };
    let client = signed_in(Some(format!("{}/oauth2/revoke", server.url())));
    let token = client.token().unwrap();
    assert!(matches!(stored().sign_out(), Ok(SignOut::Revoked)));
    let status = agent()
        .get(&format!("{}/api/check", server.url()))
        .header(
            "authorization",
            &format!("Bearer {}", token.access_token().expose_secret()),
        )
        .call()
        .unwrap()
        .status();
    assert_eq!(status, 401, "revoked at the provider");

    let client = signed_in(None);
    assert!(matches!(
        client.sign_out(),
        Ok(SignOut::NoRevocationEndpoint)
    ));
    assert_eq!(
        stored().token().unwrap_err().kind(),
        ErrorKind::ReauthenticationRequired,
        "forgotten in the store"
    );
    assert!(matches!(stored().sign_out(), Ok(SignOut::NotSignedIn)));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("http://{}/revoke", closed.local_addr().unwrap());
    drop(closed);
    let client = signed_in(Some(unreachable));
    match client.sign_out() {
        Ok(SignOut::RevocationFailed(e)) => assert_eq!(e.kind(), ErrorKind::Transport, "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        stored().token().unwrap_err().kind(),
        ErrorKind::ReauthenticationRequired,
        "forgotten in the store all the same"
    );
}

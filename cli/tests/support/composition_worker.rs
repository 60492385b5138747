//! A worker process of the composition test (`composition.rs`): it holds real
//! `authcore::Client`s over a real store and runs the operations the controller sends
//! it over a Unix socket, one JSON line each, each on a thread of its own (so that an
//! operation may be in flight while the next one — a fork — arrives), answering with
//! one JSON line per operation.
//!
//! Mutual-TLS clients (`NewMtlsClient`) authenticate with one of the case's client
//! certificates (`tls_client_auth` or `self_signed_tls_client_auth`) and are handed
//! tokens bound to it; `Present` hands a client's token to a stranger who holds another
//! certificate (or none) and presents it at the API, as a thief would. Every record the
//! worker's store saves is reported (its key and the access token's tag) with the next
//! reply, so that the controller can tell which tokens share a record.
//!
//! A client made `reentrant` has a rotation hook that calls the same client's `token()`
//! from inside the renewal that runs it; each such call is recorded (how long it took,
//! what it returned) and handed back with the reply of the operation on that client.
//!
//! The test binary is its own worker: the controller runs it again with
//! `--exact composition_worker --ignored` and the worker's configuration in
//! `AUTHCORE_COMPOSITION_WORKER`. A worker ends when its connection closes (the
//! controller went away or dropped it), and in any case after [`MAX_LIFETIME`].

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authcore::grant::{token_type, ClientCredentials, RefreshToken, StaticToken, TokenExchange};
use authcore::{
    AssertionSource, AuthMethod, Client, ClientCertificate, Dpop, DpopAlgorithm, DpopKey, Error,
    FileStore, MemoryStore, Options, RedisStore, SignOut, StoreKey, StoreLock, StoredToken, Token,
    TokenStore,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The environment variable that carries a worker's configuration.
pub const WORKER_ENV: &str = "AUTHCORE_COMPOSITION_WORKER";
/// A worker never outlives this, whatever happens to its controller.
pub const MAX_LIFETIME: Duration = Duration::from_secs(20 * 60);

/// Which store the clients of a worker share tokens through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StoreSpec {
    /// A `MemoryStore` of the worker's own.
    Memory,
    /// A `FileStore` in this directory.
    File(PathBuf),
    /// A `RedisStore` at this URL.
    Redis(String),
}

/// What a worker is told when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The controller's socket.
    pub socket: PathBuf,
    /// This worker's number.
    pub worker: usize,
    /// The devserver's base URL.
    pub devserver: String,
    /// The store.
    pub store: StoreSpec,
    /// Each client's `Options::timeout`, in milliseconds.
    pub timeout_ms: u64,
    /// DPoP: each client holds a key of its own, and users' clients are public clients
    /// (no secret: the provider binds their refresh tokens to the key).
    #[serde(default)]
    pub dpop: bool,
    /// The CA bundle that vouches for the devserver's TLS certificate.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// The client certificates of the case, by number.
    #[serde(default)]
    pub certificates: Vec<CertificateFiles>,
    /// The client id mutual-TLS clients authenticate as.
    #[serde(default)]
    pub mtls_client_id: String,
}

/// A client certificate of the case, in PEM files the controller wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateFiles {
    /// The certificate.
    pub certificate: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Self-signed (`self_signed_tls_client_auth`) rather than issued by the
    /// devserver's CA (`tls_client_auth`).
    pub self_signed: bool,
}

/// A record a worker's store saved: its key, and the access token's tag.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    /// The store key, as text.
    pub key: String,
    /// The access token saved, by tag.
    pub access: String,
}

/// An operation, sent by the controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// A refresh-token client for `user`, starting from `refresh_token` (a new session
    /// the controller started; it only crosses the controller's socket).
    NewUserClient {
        /// The client's label (sent as `X-Journal-Label`).
        label: String,
        /// Whose session it is.
        user: String,
        /// The session's refresh token.
        refresh_token: String,
        /// With a rotation hook that calls the client's own `token()`.
        reentrant: bool,
    },
    /// A client-credentials client.
    NewServiceClient {
        /// The client's label.
        label: String,
        /// With a rotation hook that calls the client's own `token()` (never called:
        /// client credentials do not rotate).
        reentrant: bool,
    },
    /// A client-credentials client without a secret, authenticated by the client
    /// assertion in `assertion_file` (`AssertionSource::file`: read for every request).
    NewWorkloadClient {
        /// The client's label.
        label: String,
        /// The file the controller rewrites.
        assertion_file: PathBuf,
    },
    /// A client-credentials client authenticated by client certificate `certificate`
    /// (mutual TLS, RFC 8705), without a secret.
    NewMtlsClient {
        /// The client's label.
        label: String,
        /// The certificate (a number into the configuration's `certificates`).
        certificate: usize,
    },
    /// A token-exchange client whose subject token is client `subject`'s access token
    /// (`AssertionSource::client`, a chained subject).
    NewExchangeClient {
        /// The client's label.
        label: String,
        /// The subject client's label (a user's client in this worker).
        subject: String,
    },
    /// `client.token()`.
    Token(String),
    /// `client.get(API)`.
    Get(String),
    /// `client.invalidate(token in hand)`.
    Invalidate(String),
    /// `client.refresh()`.
    Refresh(String),
    /// `client.revoke()`.
    Revoke(String),
    /// `client.sign_out()`.
    SignOut(String),
    /// The token client `label` holds (the last one it was handed, else the cached one)
    /// presented at the API by a stranger holding certificate `certificate` (or none),
    /// labelled `x{label}@{pid}` in the journal.
    Present {
        /// The client whose token it is.
        label: String,
        /// The certificate the stranger's connections present.
        certificate: Option<usize>,
    },
    /// The store's next save fails (once).
    FailNextSave,
    /// fork(2): the child connects back as worker `child`, with every client inherited.
    Fork {
        /// The child's worker number.
        child: usize,
    },
}

impl Command {
    /// The label of the client an operation acts on.
    fn label(&self) -> Option<&str> {
        match self {
            Command::Token(l)
            | Command::Get(l)
            | Command::Invalidate(l)
            | Command::Refresh(l)
            | Command::Revoke(l)
            | Command::SignOut(l) => Some(l),
            Command::Present { label, .. } => Some(label),
            _ => None,
        }
    }
}

/// One line from the controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Numbers the request; its reply has the same.
    pub id: u64,
    /// The operation.
    pub command: Command,
}

/// What came of an operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Outcome {
    /// Done (a client made, a fault armed, a revocation that returned `Ok`).
    Done,
    /// `invalidate`: whether the cached token was dropped.
    Dropped(bool),
    /// A token (by its tag).
    Token(String),
    /// An API response: its status and the subject the API named.
    Response {
        /// HTTP status.
        status: u16,
        /// The `X-Sub` header.
        sub: Option<String>,
    },
    /// An error: its kind (`ErrorKind::name`) and message.
    Error {
        /// The kind.
        kind: String,
        /// The message (never a secret: authcore redacts them).
        message: String,
    },
    /// `sign_out`: how it went (`SignOut` as a snake_case name) and, when the provider
    /// did not revoke, why (kind and message).
    SignedOut {
        /// `not_signed_in`, `revoked`, `no_revocation_endpoint`, `revocation_failed`.
        outcome: String,
        /// The provider's failure, with `revocation_failed`.
        error: Option<(String, String)>,
    },
    /// `fork`: the child's process id.
    Forked(u32),
    /// The first line of every connection.
    Hello {
        /// The worker number.
        worker: usize,
        /// The process id.
        pid: u32,
    },
}

/// One line to the controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// The request's number (0 for the hello).
    pub id: u64,
    /// When the operation started and ended, µs since the Unix epoch.
    pub started_us: u64,
    /// When it ended.
    pub ended_us: u64,
    /// What came of it.
    pub outcome: Outcome,
    /// The calls a reentrant client's rotation hook made to it during the operation.
    #[serde(default)]
    pub reentries: Vec<Reentry>,
    /// The records the worker's store saved since its previous reply (any client's).
    #[serde(default)]
    pub saves: Vec<Saved>,
}

/// A call a rotation hook made to its own client's `token()` from inside the renewal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reentry {
    /// The client's label.
    pub label: String,
    /// When the call started (µs since the Unix epoch).
    pub started_us: u64,
    /// How long it took, in µs.
    pub took_us: u64,
    /// `token` if it returned a token, else the error's kind (`config`: refused at once).
    pub result: String,
    /// The token it returned, by tag.
    pub token: Option<String>,
}

/// Microseconds since the Unix epoch (the devserver's journal uses the same clock).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A store around the real one whose next `save` fails once when armed: the fault a
/// full disk or a Redis failover causes between a rotation and its save.
struct FaultyStore {
    inner: Arc<dyn TokenStore>,
    fail_next_save: AtomicBool,
    /// A store that fails every call (a `FileStore` whose directory is gone), the
    /// source of a real `Store` error (authcore's errors are made by authcore only).
    broken: FileStore,
    /// The records saved, not yet reported.
    saved: Mutex<Vec<Saved>>,
}

impl FaultyStore {
    fn injected_error(&self) -> Error {
        match self
            .broken
            .lock(&StoreKey::custom("injected"), Instant::now())
        {
            Err(e) => e,
            Ok(_) => panic!("the broken store was expected to fail"),
        }
    }
}

impl TokenStore for FaultyStore {
    fn load(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<Option<StoredToken>> {
        self.inner.load(lock, key)
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> authcore::Result<StoreLock> {
        self.inner.lock(key, deadline)
    }

    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> authcore::Result<()> {
        if self.fail_next_save.swap(false, Ordering::SeqCst) {
            return Err(self.injected_error());
        }
        self.inner.save(lock, key, token)?;
        self.saved.lock().push(Saved {
            key: key.as_str().to_owned(),
            access: authcore_cli::devserver::tag(token.access_token.expose_secret()),
        });
        Ok(())
    }

    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> authcore::Result<()> {
        self.inner.remove(lock, key)
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

struct Held {
    client: Client,
    /// The calls its reentrant hook made, not yet reported.
    reentries: Arc<Mutex<Vec<Reentry>>>,
    /// The last token `token()`/`refresh()` gave (what `invalidate` reports).
    last: Option<Arc<Token>>,
}

/// A worker's state: its clients by label, and its store.
struct Worker {
    config: WorkerConfig,
    clients: Mutex<HashMap<String, Held>>,
    store: Arc<FaultyStore>,
    pid: Mutex<u32>,
}

/// `GET {url}/api/me` with `client`, journaled by the API under `journal_label`: the
/// status and the subject the API named, or the error.
fn get_me(client: &Client, url: &str, journal_label: &str) -> Outcome {
    match client.request(
        "GET",
        &format!("{url}/api/me"),
        &[("x-journal-label", journal_label)],
        &[],
    ) {
        Ok(r) => Outcome::Response {
            status: r.status,
            sub: r.header("x-sub").map(str::to_owned),
        },
        Err(e) => kind_and_message(&e),
    }
}

fn kind_and_message(e: &Error) -> Outcome {
    Outcome::Error {
        kind: e.kind().name().to_owned(),
        message: e.to_string(),
    }
}

impl Worker {
    /// Options every connection to the devserver needs: the deadline, and the CA that
    /// vouches for its certificate.
    fn connection_options(&self) -> Options {
        let options = Options::default().timeout(Duration::from_millis(self.config.timeout_ms));
        match &self.config.ca_bundle {
            Some(ca) => options.ca_bundle(ca),
            None => options,
        }
    }

    /// Client certificate `n` of the case.
    fn certificate(&self, n: usize) -> authcore::Result<ClientCertificate> {
        let files = &self.config.certificates[n];
        ClientCertificate::from_pem_files(&files.certificate, &files.key)
    }

    fn options(&self, label: &str) -> Options {
        let options = self
            .connection_options()
            .failure_backoff(Duration::from_millis(200), Duration::from_secs(1))
            .expiry_margin(Duration::from_secs(1))
            .token_request_header("x-journal-label", label)
            .store(self.store.clone());
        if !self.config.dpop {
            return options;
        }
        // A key of the client's own, ES256 and EdDSA in turn (RS256 keys take too long
        // to make for a case's budget).
        let algorithm = if label.bytes().last().is_some_and(|b| b % 2 == 0) {
            DpopAlgorithm::Es256
        } else {
            DpopAlgorithm::EdDsa
        };
        let key = DpopKey::generate(algorithm).expect("a DPoP key");
        options.dpop(Dpop::new(key))
    }

    /// The client secret users' clients present: none (public clients) with DPoP.
    fn user_secret(&self) -> &'static str {
        if self.config.dpop {
            ""
        } else {
            "dev-secret"
        }
    }

    /// Options for client `label`, with the reentrant hook when asked: it calls the
    /// client (put in `slot` once made) from inside the renewal and logs each call.
    fn hooked_options(
        &self,
        label: &str,
        reentrant: bool,
        slot: &Arc<OnceLock<Client>>,
        log: &Arc<Mutex<Vec<Reentry>>>,
    ) -> Options {
        let options = self.options(label);
        if !reentrant {
            return options;
        }
        let (slot, log, label) = (slot.clone(), log.clone(), label.to_owned());
        options.on_rotation(move |_: &authcore::Rotation<'_>| {
            let Some(client) = slot.get() else { return };
            let started_us = unix_us();
            let started = Instant::now();
            let (result, token) = match client.token() {
                Ok(t) => (
                    "token".to_owned(),
                    Some(authcore_cli::devserver::tag(
                        t.access_token().expose_secret(),
                    )),
                ),
                Err(e) => (e.kind().name().to_owned(), None),
            };
            let took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            log.lock().push(Reentry {
                label: label.clone(),
                started_us,
                took_us,
                result,
                token,
            });
        })
    }

    /// The reentrant calls client `label` made and that were not reported yet.
    fn drain_reentries(&self, label: &str) -> Vec<Reentry> {
        let log = self.clients.lock().get(label).map(|h| h.reentries.clone());
        log.map(|l| std::mem::take(&mut *l.lock()))
            .unwrap_or_default()
    }

    fn client(&self, label: &str) -> Option<Client> {
        self.clients.lock().get(label).map(|h| h.client.clone())
    }

    fn run(&self, command: Command) -> Outcome {
        let url = &self.config.devserver;
        let token_url = format!("{url}/oauth2/token");
        let revocation_url = format!("{url}/oauth2/revoke");
        let slot: Arc<OnceLock<Client>> = Arc::default();
        let log: Arc<Mutex<Vec<Reentry>>> = Arc::default();
        // The hook holds its client (a cycle: clients live as long as the worker).
        let made = |label: String, made: authcore::Result<Client>| match made {
            Ok(client) => {
                let _ = slot.set(client.clone());
                self.clients.lock().insert(
                    label,
                    Held {
                        client,
                        reentries: log.clone(),
                        last: None,
                    },
                );
                Outcome::Done
            }
            Err(e) => kind_and_message(&e),
        };
        let with = |label: &str, f: &dyn Fn(&Client) -> Outcome| match self.client(label) {
            Some(client) => f(&client),
            None => Outcome::Error {
                kind: "no_such_client".into(),
                message: format!("no client {label} in this worker"),
            },
        };
        let keep = |label: &str, token: authcore::Result<Arc<Token>>| match token {
            Ok(token) => {
                let tag = authcore_cli::devserver::tag(token.access_token().expose_secret());
                if let Some(h) = self.clients.lock().get_mut(label) {
                    h.last = Some(token);
                }
                Outcome::Token(tag)
            }
            Err(e) => kind_and_message(&e),
        };
        match command {
            Command::NewUserClient {
                label,
                user,
                refresh_token,
                reentrant,
            } => {
                // Whose tokens these are, in the store: the user (a refresh-token client
                // with a store must say, unless its first token's ID token does).
                let grant =
                    RefreshToken::new(token_url, "dev-client", self.user_secret(), refresh_token)
                        .revocation_url(revocation_url);
                let options = self.hooked_options(&label, reentrant, &slot, &log);
                made(label.clone(), Client::new(grant, options.store_key(user)))
            }
            Command::NewServiceClient { label, reentrant } => {
                let grant = ClientCredentials::new(token_url, "dev-client", "dev-secret")
                    .revocation_url(revocation_url);
                let options = self.hooked_options(&label, reentrant, &slot, &log);
                made(label.clone(), Client::new(grant, options))
            }
            Command::NewWorkloadClient {
                label,
                assertion_file,
            } => {
                let grant = ClientCredentials::new(token_url, "dev-client", "")
                    .client_assertion(AssertionSource::file(assertion_file))
                    .revocation_url(revocation_url);
                let options = self.hooked_options(&label, false, &slot, &log);
                made(label.clone(), Client::new(grant, options))
            }
            Command::NewMtlsClient { label, certificate } => {
                let self_signed = self
                    .config
                    .certificates
                    .get(certificate)
                    .is_some_and(|c| c.self_signed);
                let method = if self_signed {
                    AuthMethod::SelfSignedTlsClientAuth
                } else {
                    AuthMethod::TlsClientAuth
                };
                let made_client = self.certificate(certificate).and_then(|cert| {
                    let grant =
                        ClientCredentials::new(token_url, self.config.mtls_client_id.as_str(), "")
                            .auth_method(method)
                            .revocation_url(revocation_url);
                    let options = self
                        .hooked_options(&label, false, &slot, &log)
                        .client_certificate(cert);
                    Client::new(grant, options)
                });
                made(label.clone(), made_client)
            }
            Command::NewExchangeClient { label, subject } => match self.client(&subject) {
                Some(subject) => {
                    let grant = TokenExchange::new(
                        token_url,
                        "dev-client",
                        "dev-secret",
                        AssertionSource::client(subject),
                        token_type::ACCESS_TOKEN,
                    )
                    .revocation_url(revocation_url);
                    let options = self.hooked_options(&label, false, &slot, &log);
                    made(label.clone(), Client::new(grant, options))
                }
                None => Outcome::Error {
                    kind: "no_such_client".into(),
                    message: format!("no client {subject} in this worker"),
                },
            },
            Command::Token(label) => with(&label, &|c| keep(&label, c.token())),
            Command::Refresh(label) => with(&label, &|c| keep(&label, c.refresh())),
            Command::Get(label) => with(&label, &|c| {
                get_me(c, url, &format!("{label}@{}", *self.pid.lock()))
            }),
            Command::Invalidate(label) => with(&label, &|c| {
                let last = self.clients.lock().get(&label).and_then(|h| h.last.clone());
                match last.or_else(|| c.cached_token()) {
                    Some(token) => Outcome::Dropped(c.invalidate(&token)),
                    None => Outcome::Dropped(false),
                }
            }),
            Command::Revoke(label) => with(&label, &|c| match c.revoke() {
                Ok(()) => Outcome::Done,
                Err(e) => kind_and_message(&e),
            }),
            Command::SignOut(label) => with(&label, &|c| match c.sign_out() {
                Ok(signed_out) => {
                    let (outcome, error) = match signed_out {
                        SignOut::NotSignedIn => ("not_signed_in", None),
                        SignOut::Revoked => ("revoked", None),
                        SignOut::NoRevocationEndpoint => ("no_revocation_endpoint", None),
                        SignOut::RevocationFailed(e) => (
                            "revocation_failed",
                            Some((e.kind().name().to_owned(), e.to_string())),
                        ),
                        _ => ("unknown", None),
                    };
                    Outcome::SignedOut {
                        outcome: outcome.to_owned(),
                        error,
                    }
                }
                Err(e) => kind_and_message(&e),
            }),
            Command::Present { label, certificate } => with(&label, &|c| {
                let last = self.clients.lock().get(&label).and_then(|h| h.last.clone());
                let Some(token) = last.or_else(|| c.cached_token()) else {
                    return Outcome::Dropped(false);
                };
                let mut options = self.connection_options();
                if let Some(n) = certificate {
                    match self.certificate(n) {
                        Ok(cert) => options = options.client_certificate(cert),
                        Err(e) => return kind_and_message(&e),
                    }
                }
                let access = token.access_token().expose_secret().to_owned();
                let stranger = match Client::new(StaticToken::new(access), options) {
                    Ok(stranger) => stranger,
                    Err(e) => return kind_and_message(&e),
                };
                let journal_label = format!(
                    "x{}@{}",
                    label.strip_prefix('c').unwrap_or(&label),
                    *self.pid.lock()
                );
                get_me(&stranger, url, &journal_label)
            }),
            Command::FailNextSave => {
                self.store.fail_next_save.store(true, Ordering::SeqCst);
                Outcome::Done
            }
            Command::Fork { .. } => unreachable!("forks are run by the connection loop"),
        }
    }
}

/// Serves one connection until it closes, then ends the process.
fn serve(worker: Arc<Worker>, stream: UnixStream) -> ! {
    let writer = Arc::new(Mutex::new(stream.try_clone().expect("socket clone")));
    let hello = Reply {
        id: 0,
        started_us: unix_us(),
        ended_us: unix_us(),
        outcome: Outcome::Hello {
            worker: worker.config.worker,
            pid: std::process::id(),
        },
        reentries: Vec::new(),
        saves: Vec::new(),
    };
    send(&writer, &hello);
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let Ok(request) = serde_json::from_str::<Request>(&line) else {
            break;
        };
        if let Command::Fork { child } = request.command {
            fork(&worker, &writer, request.id, child);
            continue;
        }
        let (worker, writer) = (worker.clone(), writer.clone());
        std::thread::spawn(move || {
            let started_us = unix_us();
            let label = request.command.label().map(str::to_owned);
            let outcome = worker.run(request.command);
            let ended_us = unix_us();
            let reentries = label.map_or_else(Vec::new, |l| worker.drain_reentries(&l));
            let saves = std::mem::take(&mut *worker.store.saved.lock());
            let reply = Reply {
                id: request.id,
                started_us,
                ended_us,
                outcome,
                reentries,
                saves,
            };
            send(&writer, &reply);
        });
    }
    std::process::exit(0)
}

fn send(writer: &Mutex<UnixStream>, reply: &Reply) {
    let mut line = serde_json::to_vec(reply).expect("reply as JSON");
    line.push(b'\n');
    let mut w = writer.lock();
    if w.write_all(&line).and_then(|()| w.flush()).is_err() {
        // The controller is gone.
        std::process::exit(0);
    }
}

/// fork(2), as a pre-forking server (gunicorn `--preload`) does with a client made in
/// its parent: the one spot that needs `unsafe`. Nothing in std makes a process that
/// inherits the parent's memory (its clients, their caches, a renewal in flight and
/// the store lock it holds), which is exactly what is under test. The worker's own
/// locks are held across the call so that no other thread of it holds them at that
/// moment; the child only runs safe Rust afterwards, as forked Rust programs do.
fn fork(worker: &Arc<Worker>, writer: &Arc<Mutex<UnixStream>>, id: u64, child: usize) {
    let started_us = unix_us();
    let pid = {
        let _clients = worker.clients.lock();
        let _writer = writer.lock();
        let _pid = worker.pid.lock();
        // SAFETY: fork has no memory-safety preconditions of its own; the child
        // continues in this thread only, with the worker's locks released below by the
        // guards it inherited (this thread held them, so none is held by a thread that
        // does not exist in the child).
        unsafe { libc::fork() }
    };
    match pid {
        0 => {
            authcore::after_fork_in_child();
            *worker.pid.lock() = std::process::id();
            let mut config = worker.config.clone();
            config.worker = child;
            let child_worker = Arc::new(Worker {
                config,
                clients: Mutex::new(std::mem::take(&mut *worker.clients.lock())),
                store: worker.store.clone(),
                pid: Mutex::new(std::process::id()),
            });
            match UnixStream::connect(&child_worker.config.socket) {
                Ok(stream) => serve(child_worker, stream),
                Err(_) => std::process::exit(0),
            }
        }
        pid if pid > 0 => send(
            writer,
            &Reply {
                id,
                started_us,
                ended_us: unix_us(),
                outcome: Outcome::Forked(pid as u32),
                reentries: Vec::new(),
                saves: Vec::new(),
            },
        ),
        _ => send(
            writer,
            &Reply {
                id,
                started_us,
                ended_us: unix_us(),
                outcome: Outcome::Error {
                    kind: "fork".into(),
                    message: std::io::Error::last_os_error().to_string(),
                },
                reentries: Vec::new(),
                saves: Vec::new(),
            },
        ),
    }
}

/// The worker's main: connects to the controller and serves it.
pub fn main(config_json: &str) -> ! {
    let config: WorkerConfig = serde_json::from_str(config_json).expect("worker configuration");
    std::thread::spawn(|| {
        std::thread::sleep(MAX_LIFETIME);
        std::process::exit(3);
    });
    let inner: Arc<dyn TokenStore> = match &config.store {
        StoreSpec::Memory => Arc::new(MemoryStore::new()),
        StoreSpec::File(dir) => Arc::new(FileStore::new(dir).expect("file store")),
        StoreSpec::Redis(url) => Arc::new(RedisStore::new(url).expect("redis store")),
    };
    let broken_dir = std::env::temp_dir().join(format!(
        "authcore-composition-broken-{}",
        std::process::id()
    ));
    let broken = FileStore::new(&broken_dir).expect("a store to break");
    std::fs::remove_dir_all(&broken_dir).expect("break the store");
    let worker = Arc::new(Worker {
        config,
        clients: Mutex::new(HashMap::new()),
        store: Arc::new(FaultyStore {
            inner,
            fail_next_save: AtomicBool::new(false),
            broken,
            saved: Mutex::new(Vec::new()),
        }),
        pid: Mutex::new(std::process::id()),
    });
    let stream = UnixStream::connect(&worker.config.socket).expect("controller socket");
    serve(worker, stream)
}

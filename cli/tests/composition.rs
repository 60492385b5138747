//! The model-based composition test: every feature next to every other.
//!
//! Random sequences of operations run over several clients (refresh-token clients of
//! named users, client-credentials clients, workload clients authenticated by a
//! federated client assertion read from a file, token-exchange clients whose subject is
//! a user's client in the same process, mutual-TLS clients authenticated by a client
//! certificate with tokens bound to it) in several worker processes that share
//! tokens through a store — a `MemoryStore` per process, a `FileStore`, a `RedisStore`
//! against a real `redis-server` — while the development provider injects faults:
//! `token`, `get`, `invalidate`, `refresh`, `revoke`, `sign_out`, a new client or user
//! (optionally with a rotation hook that calls its own client from inside the renewal), a
//! new worker, `fork` of a worker (also in the middle of a renewal), `kill -9` of a worker
//! (also the one holding the store lock mid-renewal), 5xx, slow and HTML answers,
//! refusals, revocation of a token or of a user's whole grant at the provider, a store
//! save that fails once, Redis going down and coming back empty, a new token-exchange
//! client chained to a user's client, the assertion file rewritten with a fresh JWT of
//! the provider's test issuer, or with one that has expired (the issuer fell behind), a
//! mutual-TLS client's token presented by a stranger holding another certificate or none.
//!
//! Workload clients (`Kind::Workload`: client credentials with
//! `client_assertion(AssertionSource::file(..))`, no secret) all read one assertion file
//! of the case. The provider takes each assertion once (its `jti`), as a careful one
//! does, so the controller plays a diligent issuer: before every call of a workload
//! client it writes a fresh JWT, unless `ExpireAssertion` left an expired one there
//! (then nothing is written until `RewriteAssertion`), and workload clients' calls run
//! in the foreground (one at a time, each with its own assertion); a renewal started in
//! the background for a fork or kill "mid-renewal" has read its assertion before the
//! next call writes another. `revoke()`/`sign_out()` of a workload client are not
//! drawn: when the store holds a token other than the client's own, `revoke()` sends
//! two revocation requests with the one assertion the file holds, and the provider
//! refuses the second (`invalid_client`; its own token is left unrevoked, invariant
//! 4) — a file source cannot give one call two assertions. Exchange clients
//! (`Kind::Exchange`: `TokenExchange` with `AssertionSource::client(subject)`) are made
//! by `NewExchange` on a live user's client of the same worker, and are copied with it
//! by a fork.
//!
//! Mutual-TLS clients (`Kind::Mtls(n)`: client credentials of the client id
//! [`MTLS_CLIENT_ID`], no secret, authenticated by certificate `n` of the case) need the
//! provider in TLS mode, so the case's one provider serves HTTPS to every client (its
//! throwaway CA in each client's CA bundle): one journal, one set of tokens and
//! counters, the mTLS clients in the same stores, forks and faults as all the others.
//! Each case has three certificates for that one client id: two issued by the
//! provider's CA with the same subject (`tls_client_auth`, registered by subject: both
//! authenticate, each with a key of its own) and one self-signed
//! (`self_signed_tls_client_auth`, registered by thumbprint). Every token the provider
//! issues over a connection that presented a certificate is bound to it
//! (`cnf.x5t#S256`), and the API refuses it on a connection without that certificate
//! (`certificate_mismatch`). `Present` (Bearer cases only: in DPoP cases the DPoP
//! binding refuses such a token before its certificate is looked at) hands the token a
//! mutual-TLS client holds to a stranger with another certificate of the case, the same
//! one, or none, who presents it at the API (journal label `x…`). The workers report every
//! record their stores save (key and access token), so that what shares a record is
//! seen, not guessed.
//!
//! Three fixed cases run on every run whatever the draw:
//! `workload_clients_through_an_expired_assertion`,
//! `an_exchange_client_through_a_revoked_subject_and_a_revoked_grant` and
//! `mtls_clients_with_three_certificates_of_one_client_id_in_one_store`.
//!
//! After every operation the provider's journal (`GET /_control/journal`: every token
//! request, API call and revocation, tokens by tag) and the clients' results are held
//! to the invariants (see [`Checker`]):
//!
//! 1. no refresh token is presented after it was rotated or refused;
//! 2. no call made through user X's client reaches the API as anyone else (nor is
//!    handed a token of anyone else);
//! 3. no expired token is sent;
//! 4. nothing of a grant is used after `revoke()` returned, and the grant is revoked at
//!    the provider by then;
//! 5. every error a caller gets lines up with a fault injected in its window (or is
//!    `ReauthenticationRequired` after a refusal, a grant revocation or a `revoke()`,
//!    of its own session or — a user's key holding one session — of another session of
//!    the same user sharing its store). An exchange client's error is also explained by
//!    its subject's: a fault injected in a request of the subject, and — as
//!    `ReauthenticationRequired` or an `OAuth` refusal of the exchange — the end of the
//!    subject's grant (refused, revoked at the provider with the user's whole grant, or
//!    `revoke()`/`sign_out()`). A workload client's `Config` error is explained while
//!    (or within its backoff after) the assertion file held an expired assertion;
//! 6. a revoked access token costs at most one renewal;
//! 7. once `sign_out()` returned `Ok` (whatever the provider did), no client of that
//!    session sharing the store (any worker) is served a token of it it did not already
//!    hold, and none renews it: the store's tombstone ends it for all of them;
//! 8. a rotation hook that calls its own client's `token()` from inside the renewal
//!    returns at once (within [`REENTRY_AT_ONCE_US`]): with a `Config` error, or — only
//!    while a still-fresh token is cached (a forced `refresh()`, a renewal ahead of
//!    expiry) — with that token, one the client already held; never the renewal's new
//!    token, never after a wait; and the renewal goes on (its caller's result is held to
//!    invariant 5);
//! 9. with DPoP (half the cases: every client holds a key of its own, users' clients
//!    are public clients whose refresh tokens the provider binds to the key, and in half
//!    of those the token endpoint and the API demand nonces that rotate), the provider
//!    refuses no proof — a session adopted from the store is used with the key kept
//!    with it, a forked copy never replays a `jti` — and binds every token it issues;
//! 10. no client assertion is presented twice, and none after its `exp`: the provider's
//!     counters `assertions_resent` and `assertions_expired` stay 0 (the file is read
//!     for every request; an expired JWT is refused before it is sent);
//! 11. a call through an exchange client sends at most one exchange that is refused (a
//!     revoked or dead subject token) and its subject renews at most once after it
//!     (unless faults were injected, or another call of the subject was in flight);
//! 12. a token bound to a certificate reaches the API only on a connection with that
//!     certificate: the API refuses no client's call for a certificate mismatch (the
//!     only such refusals are those of a `Present` by a stranger without the token's
//!     certificate, and each of those is refused), and every token a mutual-TLS client
//!     is handed is bound to its own certificate (any other client's: to none);
//! 13. clients with different certificates never share a store record: every record a
//!     store saves with a certificate-bound token is filed under a key that names that
//!     certificate's thumbprint (and never a byte of its private key), and no key ever
//!     holds tokens bound to two certificates, or one bound and one not.
//!
//! Invariant 2 holds exchange clients to their subject's user: every call through one
//! reaches the API as that user, every token it is handed is that user's.
//!
//! `sign_out()` counts as `revoke()` everywhere else (invariant 4 for the client itself;
//! a `ReauthenticationRequired` after it is explained), except that the provider is
//! required to have revoked the grant only when the outcome says it did.
//!
//! A failing sequence is shrunk by proptest to a minimal one; each minimal case found
//! is kept below as a named regression test (`regression_*`), with the invariant it
//! broke.
//!
//! CI mode (the default): 12 cases per store (`AUTHCORE_COMPOSITION_CASES`), each
//! store within a time budget of `AUTHCORE_COMPOSITION_SECS` (default 30 s; cases past
//! it do nothing), so the whole binary stays under 3 minutes on a 2-core machine
//! (about one minute when nothing fails):
//!
//! ```sh
//! cargo test -p authcore-cli --test composition
//! ```
//!
//! By hand, for an hour (20 minutes per store, the three at once; shrinking a failure
//! may add up to half a budget). A case takes about 2.5 s on a 2-core machine, so 1500
//! cases outlast the budget; cases past it are skipped, but each is still generated,
//! so far more cases than that only keep the machine busy:
//!
//! ```sh
//! AUTHCORE_COMPOSITION_CASES=1500 AUTHCORE_COMPOSITION_SECS=1200 \
//!     cargo test -p authcore-cli --test composition -- --nocapture --test-threads=3
//! ```
//!
//! `AUTHCORE_COMPOSITION_DPOP=off|bound|nonces` runs every case in one DPoP mode;
//! `AUTHCORE_COMPOSITION_DEBUG=1` shows the workers' standard error;
//! `AUTHCORE_COMPOSITION_USERS=1` lets only one user sign in and
//! `AUTHCORE_COMPOSITION_WITHOUT=RevokeAccess,Refuse` leaves operations out (to look
//! past a failure already known).
//!
//! Every process started (workers, their forked children, `redis-server`) is stopped
//! when its case ends, also when it fails; everything listens on 127.0.0.1 only; every
//! wait is bounded.

/// How long a reentrant call from a renewal hook may take and still count as "at once"
/// (a wait for the renewal would last until the client's deadline, 4 s).
const REENTRY_AT_ONCE_US: u64 = 2_000_000;

/// The clients' longest failure backoff (the default, 30 s), in microseconds.
const MAX_BACKOFF_US: u64 = 30_000_000;

#[path = "../../core/tests/common/redis.rs"]
#[allow(dead_code)]
mod redis;
#[path = "support/composition_worker.rs"]
mod worker;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use authcore_cli::devserver::{
    Behaviour, Credentials, DevServer, Event, Fault, JournalEvent, Malformed, MtlsClient,
    ResourceOutcome, TokenOutcome,
};
use parking_lot::{Condvar, Mutex, MutexGuard};
use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use worker::{
    unix_us, CertificateFiles, Command, Outcome, Reply, Request, Saved, StoreSpec, WorkerConfig,
};

// ---------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------

/// The users that sign in.
const USERS: [&str; 3] = ["alice", "bob", "carol"];
/// Whom the provider says a client-credentials token belongs to.
const SERVICE_SUB: &str = "dev-client";
/// The client id mutual-TLS clients authenticate as (registered at the provider for the
/// case's certificates); their tokens belong to it.
const MTLS_CLIENT_ID: &str = "dev-mtls";
/// How many client certificates a case has for [`MTLS_CLIENT_ID`]: two issued by the
/// provider's CA with one subject, then one self-signed.
const CERTIFICATES: u8 = 3;
/// Each client's deadline for one call.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(4);
/// How long an injected failure can keep answering a client's calls (its failure
/// backoff, at most 1 s, and slack for scheduling).
const BACKOFF_WINDOW_US: u64 = 1_600_000;
/// How long a Redis lock left by a killed holder lives (its deadline plus 2 s), with
/// slack.
const LOCK_TTL_US: u64 = 7_000_000;
/// Most workers (processes, forks included) in one case.
const MAX_WORKERS: usize = 6;
/// Most clients in one case.
const MAX_CLIENTS: usize = 10;

/// Which store the workers share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A `MemoryStore` in each process.
    Memory,
    /// One `FileStore` directory.
    File,
    /// One `redis-server`.
    Redis,
}

/// What a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A refresh-token client of `USERS[n]`.
    User(u8),
    /// A client-credentials client.
    Service,
    /// A client-credentials client without a secret, authenticated by a federated
    /// client assertion (a JWT of the provider's test issuer) read from the case's
    /// assertion file (`AssertionSource::file`) for every request.
    Workload,
    /// A token-exchange client (RFC 8693) of `USERS[n]`, whose subject token is the
    /// access token of a refresh-token client of that user in the same worker
    /// (`AssertionSource::client`: a chained subject).
    Exchange(u8),
    /// A client-credentials client of [`MTLS_CLIENT_ID`] without a secret, authenticated
    /// by the case's client certificate `n` (mutual TLS: `tls_client_auth` for 0 and 1,
    /// `self_signed_tls_client_auth` for 2), with tokens bound to it.
    Mtls(u8),
}

impl Kind {
    fn sub(self) -> &'static str {
        match self {
            Kind::User(u) | Kind::Exchange(u) => USERS[usize::from(u)],
            Kind::Service | Kind::Workload => SERVICE_SUB,
            Kind::Mtls(_) => MTLS_CLIENT_ID,
        }
    }

    /// The certificate the client's connections present, if any.
    fn certificate(self) -> Option<u8> {
        match self {
            Kind::Mtls(n) => Some(n),
            _ => None,
        }
    }
}

/// A client in the model: the worker it lives in, its label (shared with the copies
/// a fork makes of it) and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientM {
    /// The worker.
    pub worker: usize,
    /// `c{label}` in the journal.
    pub label: usize,
    /// What it is.
    pub kind: Kind,
    /// With a rotation hook that calls the client's own `token()` (only users rotate).
    pub reentrant: bool,
    /// An exchange client's subject: the label of a user's client in the same worker.
    pub subject: Option<usize>,
}

/// A worker in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerM {
    /// Not killed.
    pub alive: bool,
    /// The worker it was forked from.
    pub forked_from: Option<usize>,
}

/// The reference state: what exists. (What the system does is judged from the
/// journal, not predicted.)
#[derive(Debug, Clone)]
pub struct Model {
    /// The store.
    pub store: StoreKind,
    /// Lifetime of access tokens, in seconds.
    pub lifetime_secs: u64,
    /// Every worker so far.
    pub workers: Vec<WorkerM>,
    /// Every client so far.
    pub clients: Vec<ClientM>,
    /// Labels handed out.
    pub labels: usize,
    /// Redis is down.
    pub redis_down: bool,
    /// DPoP: whether the provider binds tokens to the clients' keys, and demands nonces.
    pub dpop: DpopMode,
    /// The assertion file holds an expired assertion.
    pub assertion_expired: bool,
}

/// How a case uses DPoP (RFC 9449).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopMode {
    /// Bearer tokens.
    Off,
    /// Every client holds a key of its own (users' clients are public clients, whose
    /// refresh tokens the provider binds to the key); the provider requires proofs and
    /// binds every token: a session's key must travel with it through the store.
    Bound,
    /// [`Bound`](Self::Bound), and the token endpoint and the API each demand a nonce of
    /// their own, replaced every few proofs.
    Nonces,
}

/// With [`DpopMode::Nonces`], a nonce is replaced after this many proofs accepted with it.
const NONCE_ROTATE_EVERY: u32 = 5;

impl Model {
    /// Two workers and the clients given (by worker and kind).
    pub fn new(store: StoreKind, lifetime_secs: u64, clients: &[(usize, Kind)]) -> Model {
        Model {
            store,
            lifetime_secs,
            workers: vec![
                WorkerM {
                    alive: true,
                    forked_from: None,
                };
                2
            ],
            clients: clients
                .iter()
                .enumerate()
                .map(|(label, &(worker, kind))| ClientM {
                    worker,
                    label,
                    kind,
                    reentrant: false,
                    subject: None,
                })
                .collect(),
            labels: clients.len(),
            redis_down: false,
            dpop: DpopMode::Off,
            assertion_expired: false,
        }
    }

    fn live_client(&self, c: usize) -> bool {
        self.clients
            .get(c)
            .is_some_and(|m| self.workers[m.worker].alive)
    }

    fn live_worker(&self, w: usize) -> bool {
        self.workers.get(w).is_some_and(|m| m.alive)
    }

    fn live_workers(&self) -> usize {
        self.workers.iter().filter(|w| w.alive).count()
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `token()` on client `c` (in the background: the next operations do not wait).
    Token {
        /// The client.
        c: usize,
        /// In the background.
        bg: bool,
    },
    /// An API call through client `c`.
    Get {
        /// The client.
        c: usize,
        /// In the background.
        bg: bool,
    },
    /// `invalidate` of the token client `c` holds.
    Invalidate {
        /// The client.
        c: usize,
    },
    /// `refresh()` on client `c`.
    Refresh {
        /// The client.
        c: usize,
        /// In the background.
        bg: bool,
    },
    /// `revoke()` on client `c`.
    Revoke {
        /// The client.
        c: usize,
    },
    /// `sign_out()` on client `c`.
    SignOut {
        /// The client.
        c: usize,
    },
    /// The token mutual-TLS client `c` holds presented at the API by a stranger whose
    /// connections present certificate `holder` of the case (or none).
    Present {
        /// The client whose token it is.
        c: usize,
        /// The stranger's certificate.
        holder: Option<u8>,
    },
    /// A new client in worker `w`: a new sign-in of a user, or a service.
    NewClient {
        /// The worker.
        w: usize,
        /// What it is.
        kind: Kind,
        /// With a rotation hook that calls the client's own `token()`.
        reentrant: bool,
    },
    /// A new token-exchange client in worker `w` whose subject is client `subject` (a
    /// user's client in `w`).
    NewExchange {
        /// The worker.
        w: usize,
        /// The subject client (model index).
        subject: usize,
    },
    /// The assertion file is rewritten with a fresh JWT of the test issuer.
    RewriteAssertion,
    /// The assertion file is rewritten with a JWT of the test issuer that has expired.
    ExpireAssertion,
    /// A new worker process.
    SpawnWorker,
    /// fork(2) of worker `w`, optionally while client `mid` renews (slowly).
    Fork {
        /// The worker.
        w: usize,
        /// A client of `w` renewing at that moment.
        mid: Option<usize>,
    },
    /// `kill -9` of worker `w`, optionally while client `mid` renews holding the lock.
    Kill {
        /// The worker.
        w: usize,
        /// A client of `w` renewing at that moment.
        mid: Option<usize>,
    },
    /// The next `count` token requests fail with `status`.
    ProviderFail {
        /// How many.
        count: u32,
        /// The status.
        status: u16,
    },
    /// The next `count` token requests are answered with an HTML page, status 200.
    ProviderHtml {
        /// How many.
        count: u32,
    },
    /// Token requests take `ms` longer from now on (0: no longer slow).
    ProviderSlow {
        /// Added latency.
        ms: u64,
    },
    /// The next refresh request is refused (`invalid_grant`), its refresh token dead.
    Refuse,
    /// The provider revokes the last access token client `c` was seen with.
    RevokeAccess {
        /// The client.
        c: usize,
    },
    /// The user revokes the application's access at the provider: every family.
    RevokeGrant {
        /// The user.
        user: u8,
    },
    /// Worker `w`'s store fails its next save.
    SaveFails {
        /// The worker.
        w: usize,
    },
    /// Redis stops.
    RedisDown,
    /// Redis starts again, empty.
    RedisUp,
    /// Time passes.
    Wait {
        /// How long.
        ms: u64,
    },
}

/// How many of [`USERS`] sign in (`AUTHCORE_COMPOSITION_USERS`, 1 to 3, default 3):
/// fewer users steer the search away from a failure already known between users.
fn users() -> u8 {
    u8::try_from(env_u64("AUTHCORE_COMPOSITION_USERS", 3).clamp(1, 3)).unwrap_or(3)
}

/// Operations left out (`AUTHCORE_COMPOSITION_WITHOUT=RevokeAccess,Refuse`): to look
/// past a failure already known.
fn without() -> Vec<String> {
    std::env::var("AUTHCORE_COMPOSITION_WITHOUT")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// An operation's name (its variant).
fn op_name(op: &Op) -> String {
    let debug = format!("{op:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The DPoP mode of a case: half the cases with DPoP, or only the mode
/// `AUTHCORE_COMPOSITION_DPOP` names (`off`, `bound`, `nonces`). Shrinks towards Bearer:
/// a failure that needs DPoP keeps it.
fn dpop_strategy() -> BoxedStrategy<DpopMode> {
    match std::env::var("AUTHCORE_COMPOSITION_DPOP").as_deref() {
        Ok("off") => Just(DpopMode::Off).boxed(),
        Ok("bound") => Just(DpopMode::Bound).boxed(),
        Ok("nonces") => Just(DpopMode::Nonces).boxed(),
        _ => prop_oneof![
            2 => Just(DpopMode::Off),
            1 => Just(DpopMode::Bound),
            1 => Just(DpopMode::Nonces)
        ]
        .boxed(),
    }
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => (0u8..users()).prop_map(Kind::User),
        1 => Just(Kind::Service),
        1 => Just(Kind::Workload),
        1 => (0u8..CERTIFICATES).prop_map(Kind::Mtls)
    ]
}

/// The reference state machine, per store.
pub struct Reference<S>(PhantomData<S>);

/// A store to test with.
pub trait Flavor: 'static {
    /// Which.
    const KIND: StoreKind;
}

/// The `MemoryStore` flavor.
pub struct Memory;
/// The `FileStore` flavor.
pub struct File;
/// The `RedisStore` flavor.
pub struct RedisFlavor;

impl Flavor for Memory {
    const KIND: StoreKind = StoreKind::Memory;
}
impl Flavor for File {
    const KIND: StoreKind = StoreKind::File;
}
impl Flavor for RedisFlavor {
    const KIND: StoreKind = StoreKind::Redis;
}

impl<S: Flavor> ReferenceStateMachine for Reference<S> {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        (
            prop_oneof![Just(5u64), Just(3600u64)],
            proptest::collection::vec(kind_strategy(), 3),
            0usize..2,
            proptest::collection::vec(proptest::bool::weighted(0.3), 3),
            dpop_strategy(),
        )
            .prop_map(|(lifetime, kinds, third, reentrant, dpop)| {
                let clients = [(0, kinds[0]), (1, kinds[1]), (third, kinds[2])];
                let mut model = Model::new(S::KIND, lifetime, &clients);
                for (client, reentrant) in model.clients.iter_mut().zip(reentrant) {
                    client.reentrant = reentrant;
                }
                model.dpop = dpop;
                model
            })
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        let clients: Vec<usize> = (0..state.clients.len())
            .filter(|&c| state.live_client(c))
            .collect();
        let workers: Vec<usize> = (0..state.workers.len())
            .filter(|&w| state.live_worker(w))
            .collect();
        // `select` refuses an empty list: a placeholder, never drawn from (the operations
        // that use these are offered only when the list is not empty).
        let or_placeholder = |v: &Vec<usize>| if v.is_empty() { vec![0] } else { v.clone() };
        let any_client = proptest::sample::select(or_placeholder(&clients));
        let any_worker = proptest::sample::select(or_placeholder(&workers));
        // A worker and one of its clients (for a fork or kill mid-renewal).
        let with_client: Vec<(usize, Option<usize>)> = workers
            .iter()
            .flat_map(|&w| {
                std::iter::once((w, None)).chain(
                    clients
                        .iter()
                        .filter(move |&&c| state.clients[c].worker == w)
                        .map(move |&c| (w, Some(c))),
                )
            })
            .collect();
        let mid = proptest::sample::select(if with_client.is_empty() {
            vec![(0, None)]
        } else {
            with_client
        });
        // Operations on a client exist only while a client lives (every one may be on
        // killed workers), on a worker only while one lives.
        let mut ops: Vec<(u32, BoxedStrategy<Op>)> = Vec::new();
        if !clients.is_empty() {
            ops.extend([
                (
                    8,
                    (any_client.clone(), proptest::bool::weighted(0.2))
                        .prop_map(|(c, bg)| Op::Get { c, bg })
                        .boxed(),
                ),
                (
                    3,
                    (any_client.clone(), proptest::bool::weighted(0.2))
                        .prop_map(|(c, bg)| Op::Token { c, bg })
                        .boxed(),
                ),
                (
                    2,
                    any_client
                        .clone()
                        .prop_map(|c| Op::Invalidate { c })
                        .boxed(),
                ),
                (
                    2,
                    (any_client.clone(), proptest::bool::weighted(0.3))
                        .prop_map(|(c, bg)| Op::Refresh { c, bg })
                        .boxed(),
                ),
                (1, any_client.clone().prop_map(|c| Op::Revoke { c }).boxed()),
                (
                    1,
                    any_client.clone().prop_map(|c| Op::SignOut { c }).boxed(),
                ),
                (
                    2,
                    any_client
                        .clone()
                        .prop_map(|c| Op::RevokeAccess { c })
                        .boxed(),
                ),
            ]);
            // A stranger presents a live mutual-TLS client's token.
            let bound: Vec<usize> = clients
                .iter()
                .copied()
                .filter(|&c| matches!(state.clients[c].kind, Kind::Mtls(_)))
                .collect();
            if state.dpop == DpopMode::Off && !bound.is_empty() {
                ops.push((
                    2,
                    (
                        proptest::sample::select(bound),
                        proptest::option::of(0u8..CERTIFICATES),
                    )
                        .prop_map(|(c, holder)| Op::Present { c, holder })
                        .boxed(),
                ));
            }
        }
        ops.extend([
            (
                1,
                (0u8..users())
                    .prop_map(|user| Op::RevokeGrant { user })
                    .boxed(),
            ),
            (
                2,
                prop_oneof![Just(500u16), Just(503)]
                    .prop_flat_map(|status| {
                        (1u32..4).prop_map(move |count| Op::ProviderFail { count, status })
                    })
                    .boxed(),
            ),
            (
                1,
                (1u32..3)
                    .prop_map(|count| Op::ProviderHtml { count })
                    .boxed(),
            ),
            (
                1,
                prop_oneof![Just(0u64), Just(250), Just(800)]
                    .prop_map(|ms| Op::ProviderSlow { ms })
                    .boxed(),
            ),
            (1, Just(Op::Refuse).boxed()),
            (
                1,
                prop_oneof![Just(300u64), Just(1500), Just(4000)]
                    .prop_map(|ms| Op::Wait { ms })
                    .boxed(),
            ),
        ]);
        if !workers.is_empty() {
            ops.push((
                1,
                any_worker.clone().prop_map(|w| Op::SaveFails { w }).boxed(),
            ));
        }
        if state.clients.len() < MAX_CLIENTS && !workers.is_empty() {
            ops.push((
                2,
                (
                    any_worker.clone(),
                    kind_strategy(),
                    proptest::bool::weighted(0.4),
                )
                    .prop_map(|(w, kind, reentrant)| Op::NewClient { w, kind, reentrant })
                    .boxed(),
            ));
        }
        // A user's live client, as an exchange client's subject in its worker.
        let subjects: Vec<(usize, usize)> = clients
            .iter()
            .filter(|&&c| matches!(state.clients[c].kind, Kind::User(_)))
            .map(|&c| (state.clients[c].worker, c))
            .collect();
        if state.clients.len() < MAX_CLIENTS && !subjects.is_empty() {
            ops.push((
                2,
                proptest::sample::select(subjects)
                    .prop_map(|(w, subject)| Op::NewExchange { w, subject })
                    .boxed(),
            ));
        }
        ops.push((1, Just(Op::RewriteAssertion).boxed()));
        ops.push((1, Just(Op::ExpireAssertion).boxed()));
        if state.workers.len() < MAX_WORKERS {
            ops.push((1, Just(Op::SpawnWorker).boxed()));
            if !workers.is_empty() {
                ops.push((
                    1,
                    mid.clone().prop_map(|(w, mid)| Op::Fork { w, mid }).boxed(),
                ));
            }
        }
        if workers.len() >= 2 {
            ops.push((1, mid.prop_map(|(w, mid)| Op::Kill { w, mid }).boxed()));
        }
        if state.store == StoreKind::Redis {
            ops.push((
                1,
                Just(if state.redis_down {
                    Op::RedisUp
                } else {
                    Op::RedisDown
                })
                .boxed(),
            ));
        }
        let without = without();
        ops.retain(|(_, strategy)| {
            // Names are read off a sample of each strategy's values.
            let mut runner = proptest::test_runner::TestRunner::deterministic();
            strategy
                .new_tree(&mut runner)
                .map(|t| !without.contains(&op_name(&t.current())))
                .unwrap_or(true)
        });
        proptest::strategy::Union::new_weighted(ops).boxed()
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        match *op {
            Op::NewClient { w, kind, reentrant } => {
                state.clients.push(ClientM {
                    worker: w,
                    label: state.labels,
                    kind,
                    reentrant,
                    subject: None,
                });
                state.labels += 1;
            }
            Op::NewExchange { w, subject } => {
                let of = state.clients[subject];
                let Kind::User(u) = of.kind else {
                    return state;
                };
                state.clients.push(ClientM {
                    worker: w,
                    label: state.labels,
                    kind: Kind::Exchange(u),
                    reentrant: false,
                    subject: Some(of.label),
                });
                state.labels += 1;
            }
            Op::RewriteAssertion => state.assertion_expired = false,
            Op::ExpireAssertion => state.assertion_expired = true,
            Op::SpawnWorker => state.workers.push(WorkerM {
                alive: true,
                forked_from: None,
            }),
            Op::Fork { w, .. } => {
                let child = state.workers.len();
                state.workers.push(WorkerM {
                    alive: true,
                    forked_from: Some(w),
                });
                let copies: Vec<ClientM> = state
                    .clients
                    .iter()
                    .filter(|c| c.worker == w)
                    .map(|c| ClientM {
                        worker: child,
                        ..*c
                    })
                    .collect();
                state.clients.extend(copies);
            }
            Op::Kill { w, .. } => state.workers[w].alive = false,
            Op::RedisDown => state.redis_down = true,
            Op::RedisUp => state.redis_down = false,
            _ => {}
        }
        state
    }

    fn preconditions(state: &Model, op: &Op) -> bool {
        let mid_ok = |w: usize, mid: Option<usize>| {
            mid.is_none_or(|c| state.live_client(c) && state.clients[c].worker == w)
        };
        match *op {
            Op::Token { c, .. }
            | Op::Get { c, .. }
            | Op::Invalidate { c }
            | Op::Refresh { c, .. } => state.live_client(c),
            // Not a workload client: `revoke()` may send two revocation requests (the
            // token in the store, and the client's own when it is another), both
            // authenticated with the one assertion the file holds, and a provider that
            // takes each assertion once refuses the second (see the module doc).
            Op::Revoke { c } | Op::SignOut { c } => {
                state.live_client(c) && state.clients[c].kind != Kind::Workload
            }
            // A stranger presents a mutual-TLS client's Bearer token (a DPoP-bound one is
            // refused for want of its key before its certificate is looked at).
            Op::Present { c, holder } => {
                state.live_client(c)
                    && matches!(state.clients[c].kind, Kind::Mtls(_))
                    && state.dpop == DpopMode::Off
                    && holder.is_none_or(|h| h < CERTIFICATES)
            }
            Op::NewExchange { w, subject } => {
                state.live_client(subject)
                    && state.clients[subject].worker == w
                    && matches!(state.clients[subject].kind, Kind::User(_))
                    && state.clients.len() < MAX_CLIENTS
            }
            Op::RevokeAccess { c } => c < state.clients.len(),
            Op::NewClient { w, .. } => state.live_worker(w) && state.clients.len() < MAX_CLIENTS,
            Op::SpawnWorker => state.workers.len() < MAX_WORKERS,
            Op::Fork { w, mid } => {
                state.live_worker(w) && state.workers.len() < MAX_WORKERS && mid_ok(w, mid)
            }
            Op::Kill { w, mid } => {
                state.live_worker(w) && state.live_workers() >= 2 && mid_ok(w, mid)
            }
            Op::SaveFails { w } => state.live_worker(w),
            Op::RedisDown => state.store == StoreKind::Redis && !state.redis_down,
            Op::RedisUp => state.store == StoreKind::Redis && state.redis_down,
            _ => true,
        }
    }
}

// ---------------------------------------------------------------------------------
// The system under test: a devserver, a store, worker processes
// ---------------------------------------------------------------------------------

/// Cases run one at a time (they measure time; the machine has 2 cores).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// When each store's first generated case started (its time budget counts from there).
static STARTED: [OnceLock<Instant>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
static CASES_RUN: AtomicUsize = AtomicUsize::new(0);
static CASES_SKIPPED: AtomicUsize = AtomicUsize::new(0);
static OPS_RUN: AtomicUsize = AtomicUsize::new(0);
/// `sign_out()` calls that returned, by outcome (`error` for an `Err`).
static SIGN_OUTS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
/// Calls reentrant hooks made from inside a renewal, all checked.
static REENTRIES: AtomicUsize = AtomicUsize::new(0);
/// What the workload features saw, summed over the cases: calls through workload,
/// exchange and mutual-TLS clients, the workload calls refused for an expired assertion,
/// the exchanges the provider refused, the assertions it took, the certificate-bound
/// tokens it issued, the presentations by a stranger and how many it refused, the
/// records saved with a certificate-bound token.
static WORKLOADS: Mutex<BTreeMap<&'static str, usize>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// A regression test replays its sequence whatever the budget says.
    static REPLAYING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The time budget of each store's generated cases.
fn budget() -> Duration {
    Duration::from_secs(env_u64("AUTHCORE_COMPOSITION_SECS", 30))
}

/// The proptest configuration: cases per store, shrinking bounded by the budget, no
/// persistence files (minimal cases are kept as named tests instead).
fn config() -> Config {
    Config {
        cases: u32::try_from(env_u64("AUTHCORE_COMPOSITION_CASES", 12)).unwrap_or(u32::MAX),
        max_shrink_time: u32::try_from(budget().as_millis() / 2).unwrap_or(u32::MAX),
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A connection to a worker: requests out, replies in (read by a thread of its own,
/// which also gathers the store saves every reply reports into the case's list).
struct Conn {
    writer: Mutex<UnixStream>,
    replies: Arc<(Mutex<Inbox>, Condvar)>,
}

#[derive(Default)]
struct Inbox {
    replies: HashMap<u64, Reply>,
    closed: bool,
}

impl Conn {
    fn new(stream: UnixStream, saves: Arc<Mutex<Vec<Saved>>>) -> Conn {
        let replies: Arc<(Mutex<Inbox>, Condvar)> = Arc::default();
        let reading = stream.try_clone().expect("socket clone");
        let inbox = replies.clone();
        std::thread::spawn(move || {
            let reader = BufReader::new(reading);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let Ok(mut reply) = serde_json::from_str::<Reply>(&line) else {
                    break;
                };
                saves.lock().append(&mut reply.saves);
                inbox.0.lock().replies.insert(reply.id, reply);
                inbox.1.notify_all();
            }
            inbox.0.lock().closed = true;
            inbox.1.notify_all();
        });
        Conn {
            writer: Mutex::new(stream),
            replies,
        }
    }

    fn send(&self, request: &Request) -> bool {
        let mut line = serde_json::to_vec(request).expect("request as JSON");
        line.push(b'\n');
        self.writer.lock().write_all(&line).is_ok()
    }

    /// The reply to request `id`, waiting at most `timeout`; `None` if the worker went
    /// away or took longer.
    fn wait(&self, id: u64, timeout: Duration) -> Option<Reply> {
        let end = Instant::now() + timeout;
        let (inbox, arrived) = &*self.replies;
        let mut inbox = inbox.lock();
        loop {
            if let Some(r) = inbox.replies.remove(&id) {
                return Some(r);
            }
            if inbox.closed || arrived.wait_until(&mut inbox, end).timed_out() {
                return inbox.replies.remove(&id);
            }
        }
    }
}

/// A worker process: spawned (a `Child`) or forked (a pid), and its connection.
struct WorkerHandle {
    child: Option<Child>,
    pid: u32,
    conn: Conn,
    alive: bool,
}

impl WorkerHandle {
    fn kill(&mut self) {
        if !self.alive {
            return;
        }
        self.alive = false;
        match &mut self.child {
            Some(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {
                // A forked child is not ours to wait for: its parent worker reaps it.
                let _ = Process::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// One client operation as it happened.
#[derive(Debug, Clone)]
pub struct Call {
    /// The step of the sequence.
    pub step: usize,
    /// `token`, `get`, `invalidate`, `refresh`, `revoke`, `sign_out`.
    pub what: &'static str,
    /// The client (model index), its label and worker.
    pub client: usize,
    /// Its label.
    pub label: usize,
    /// Its worker.
    pub worker: usize,
    /// The worker's process id.
    pub pid: u32,
    /// The request number.
    pub id: u64,
    /// When it was sent (µs since the epoch).
    pub sent_us: u64,
    /// The reply, once it came.
    pub reply: Option<Reply>,
    /// The worker went away before answering (killed).
    pub lost: bool,
    /// A `present`: the certificate the stranger held.
    pub holder: Option<u8>,
}

/// What the controller did to the world, with times (µs since the epoch).
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    /// Intervals when token requests were slowed (end `None`: still slow).
    pub slow: Vec<(u64, Option<u64>)>,
    /// Intervals when Redis was down.
    pub redis_down: Vec<(u64, Option<u64>)>,
    /// Kills: when, which worker, the labels it hosted.
    pub kills: Vec<(u64, usize, Vec<usize>)>,
    /// Forks: when, parent worker, the labels it hosted.
    pub forks: Vec<(u64, usize, Vec<usize>)>,
    /// Save failures armed: when, which worker.
    pub save_failures: Vec<(u64, usize)>,
    /// Intervals when the assertion file held an expired assertion.
    pub assertion_expired: Vec<(u64, Option<u64>)>,
}

struct Live {
    store: StoreKind,
    server: DevServer,
    redis: Option<redis::Redis>,
    dir: tempfile::TempDir,
    listener: UnixListener,
    workers: Vec<Option<WorkerHandle>>,
    clients: Vec<ClientM>,
    calls: Vec<Call>,
    timeline: Timeline,
    next_id: u64,
    latency_ms: u64,
    lifetime_secs: u64,
    step: usize,
    /// The last access token each client (model index) was handed, by tag.
    last_tag: HashMap<usize, String>,
    started: Instant,
    /// The case's DPoP mode.
    dpop: DpopMode,
    /// The assertion file holds an expired assertion.
    assertion_expired: bool,
    /// The case's client certificates for [`MTLS_CLIENT_ID`], by number.
    certificates: Vec<CaseCertificate>,
    /// Their registrations at the provider.
    mtls_clients: Vec<MtlsClient>,
    /// Every record the workers' stores saved, as their replies reported them.
    saves: Arc<Mutex<Vec<Saved>>>,
}

/// A client certificate of the case.
struct CaseCertificate {
    /// Its files, for the workers.
    files: CertificateFiles,
    /// Its `x5t#S256`.
    x5t: String,
    /// Its private key, in PEM (to check that no store key holds any of it).
    key_pem: String,
}

/// The system under test for one case (`None` when the time budget is spent).
pub struct System {
    live: Option<Live>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

fn debug() -> bool {
    std::env::var_os("AUTHCORE_COMPOSITION_DEBUG").is_some()
}

/// What the provider does in a case: its tokens' lifetime, its DPoP mode, the latency
/// added to token requests, and the mutual-TLS clients it knows.
fn behaviour(
    lifetime_secs: u64,
    dpop: DpopMode,
    latency_ms: u64,
    mtls_clients: &[MtlsClient],
) -> Behaviour {
    let (on, nonces) = match dpop {
        DpopMode::Off => (false, false),
        DpopMode::Bound => (true, false),
        DpopMode::Nonces => (true, true),
    };
    Behaviour {
        lifetime_secs,
        latency_ms,
        dpop: on,
        dpop_required: on,
        dpop_as_nonce: nonces,
        dpop_rs_nonce: nonces,
        dpop_nonce_rotate_every: if nonces { NONCE_ROTATE_EVERY } else { 0 },
        mtls_clients: mtls_clients.to_vec(),
        ..Behaviour::default()
    }
}

/// The case's client certificates for [`MTLS_CLIENT_ID`], made by the provider's CA
/// (or self-signed) and written to `dir`, and their registrations: the CA-issued ones
/// by their subject (`tls_client_auth`: one subject, two keys), the self-signed one by
/// its thumbprint.
fn certificates(
    server: &DevServer,
    dir: &std::path::Path,
) -> (Vec<CaseCertificate>, Vec<MtlsClient>) {
    let mut certificates = Vec::new();
    let mut registrations = Vec::new();
    for n in 0..CERTIFICATES {
        let self_signed = n == CERTIFICATES - 1;
        let made = server
            .client_certificate(MTLS_CLIENT_ID, self_signed)
            .expect("a client certificate");
        let field = |name: &str| made[name].as_str().expect(name).to_owned();
        let (certificate, key) = (
            dir.join(format!("client{n}.pem")),
            dir.join(format!("client{n}.key")),
        );
        std::fs::write(&certificate, field("certificate")).expect("write the certificate");
        std::fs::write(&key, field("key")).expect("write the key");
        let registration = if self_signed {
            Some(MtlsClient {
                client_id: MTLS_CLIENT_ID.into(),
                thumbprint: Some(field("x5t#S256")),
                ..MtlsClient::default()
            })
        } else {
            // One registration covers every CA-issued certificate with the subject.
            (n == 0).then(|| MtlsClient {
                client_id: MTLS_CLIENT_ID.into(),
                tls_client_auth_subject_dn: Some(field("subject")),
                ..MtlsClient::default()
            })
        };
        registrations.extend(registration);
        certificates.push(CaseCertificate {
            files: CertificateFiles {
                certificate,
                key,
                self_signed,
            },
            x5t: field("x5t#S256"),
            key_pem: field("key"),
        });
    }
    (certificates, registrations)
}

impl Live {
    fn start(model: &Model) -> Live {
        let dir = tempfile::Builder::new()
            .prefix("authcore-composition-")
            .tempdir()
            .expect("temporary directory");
        // TLS for every client: mutual-TLS clients need it, and share everything else.
        let server = DevServer::start_tls(
            "127.0.0.1:0".parse().unwrap(),
            Credentials::default(),
            dir.path(),
        )
        .expect("devserver");
        let (certificates, mtls_clients) = certificates(&server, dir.path());
        server
            .set_behaviour(behaviour(model.lifetime_secs, model.dpop, 0, &mtls_clients))
            .unwrap();
        let redis = (model.store == StoreKind::Redis).then(|| redis::Redis::start(&[]));
        let listener = UnixListener::bind(dir.path().join("controller.sock")).expect("socket");
        listener.set_nonblocking(true).unwrap();
        let mut live = Live {
            store: model.store,
            server,
            redis,
            dir,
            listener,
            workers: Vec::new(),
            clients: Vec::new(),
            calls: Vec::new(),
            timeline: Timeline::default(),
            next_id: 1,
            latency_ms: 0,
            lifetime_secs: model.lifetime_secs,
            step: 0,
            last_tag: HashMap::new(),
            started: Instant::now(),
            dpop: model.dpop,
            assertion_expired: false,
            certificates,
            mtls_clients,
            saves: Arc::default(),
        };
        live.write_assertion(true);
        for _ in &model.workers {
            live.spawn_worker();
        }
        for &client in &model.clients {
            live.new_client(client);
        }
        live
    }

    /// The file workload clients read their client assertion from.
    fn assertion_file(&self) -> std::path::PathBuf {
        self.dir.path().join("assertion.jwt")
    }

    /// Writes the assertion file (replaced at once: no reader sees it half written)
    /// with a JWT of the test issuer for the client, fresh or expired a minute ago.
    fn write_assertion(&mut self, fresh: bool) {
        let jwt = self
            .server
            .mint(SERVICE_SUB, if fresh { 300 } else { -60 })
            .expect("a JWT of the test issuer");
        let file = self.assertion_file();
        let next = file.with_extension("next");
        std::fs::write(&next, jwt).expect("write the assertion");
        std::fs::rename(&next, &file).expect("replace the assertion");
        let now = unix_us();
        if !fresh && !self.assertion_expired {
            self.timeline.assertion_expired.push((now, None));
        }
        if fresh && self.assertion_expired {
            if let Some(last) = self.timeline.assertion_expired.last_mut() {
                last.1 = Some(now);
            }
        }
        self.assertion_expired = !fresh;
    }

    fn store_spec(&self) -> StoreSpec {
        match self.store {
            StoreKind::Memory => StoreSpec::Memory,
            StoreKind::File => StoreSpec::File(self.dir.path().join("store")),
            StoreKind::Redis => StoreSpec::Redis(self.redis.as_ref().unwrap().url()),
        }
    }

    /// Waits for worker `worker` to connect (bounded), and returns its connection.
    fn accept(&self, worker: usize) -> (Conn, u32) {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let mut line = String::new();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    BufReader::new(stream.try_clone().unwrap())
                        .read_line(&mut line)
                        .expect("hello");
                    stream.set_read_timeout(None).unwrap();
                    let hello: Reply = serde_json::from_str(&line).expect("hello line");
                    match hello.outcome {
                        Outcome::Hello { worker: w, pid } if w == worker => {
                            return (Conn::new(stream, self.saves.clone()), pid);
                        }
                        other => panic!("expected worker {worker} to connect, got {other:?}"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < end,
                        "worker {worker} did not connect within 15 s"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    fn spawn_worker(&mut self) {
        let worker = self.workers.len();
        let config = WorkerConfig {
            socket: self.dir.path().join("controller.sock"),
            worker,
            devserver: self.server.url(),
            store: self.store_spec(),
            timeout_ms: u64::try_from(CLIENT_TIMEOUT.as_millis()).unwrap(),
            dpop: self.dpop != DpopMode::Off,
            ca_bundle: self.server.ca_file().map(std::path::Path::to_path_buf),
            certificates: self.certificates.iter().map(|c| c.files.clone()).collect(),
            mtls_client_id: MTLS_CLIENT_ID.into(),
        };
        let child = Process::new(std::env::current_exe().unwrap())
            .args([
                "composition_worker",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(worker::WORKER_ENV, serde_json::to_string(&config).unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if debug() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("worker process");
        self.workers.push(None);
        let mut child = Some(child);
        let (conn, pid) = self.accept(worker);
        self.workers[worker] = Some(WorkerHandle {
            child: child.take(),
            pid,
            conn,
            alive: true,
        });
    }

    fn worker(&self, w: usize) -> &WorkerHandle {
        self.workers[w].as_ref().expect("worker")
    }

    /// Sends a command; returns its request number.
    fn send(&mut self, w: usize, command: Command) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let sent = self.worker(w).conn.send(&Request { id, command });
        assert!(sent, "worker {w} went away");
        id
    }

    /// Sends a command and waits for its reply (bounded).
    fn run(&mut self, w: usize, command: Command) -> Reply {
        let id = self.send(w, command.clone());
        self.worker(w)
            .conn
            .wait(id, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("worker {w} did not answer {command:?} within 30 s"))
    }

    fn new_client(&mut self, client: ClientM) {
        let label = format!("c{}", client.label);
        let command = match client.kind {
            Kind::User(u) => {
                let user = USERS[usize::from(u)];
                let session = self.server.session(user, None, Some(&label));
                Command::NewUserClient {
                    label,
                    user: user.to_owned(),
                    refresh_token: session["refresh_token"].as_str().unwrap().to_owned(),
                    reentrant: client.reentrant,
                }
            }
            Kind::Service => Command::NewServiceClient {
                label,
                reentrant: client.reentrant,
            },
            Kind::Workload => Command::NewWorkloadClient {
                label,
                assertion_file: self.assertion_file(),
            },
            Kind::Exchange(_) => Command::NewExchangeClient {
                label,
                subject: format!("c{}", client.subject.expect("an exchange client's subject")),
            },
            Kind::Mtls(n) => Command::NewMtlsClient {
                label,
                certificate: usize::from(n),
            },
        };
        let reply = self.run(client.worker, command);
        assert_eq!(
            reply.outcome,
            Outcome::Done,
            "a client could not be made: {client:?}"
        );
        self.clients.push(client);
    }

    /// A client operation: sent, and waited for unless in the background.
    fn call(&mut self, what: &'static str, c: usize, bg: bool) -> usize {
        let label = format!("c{}", self.clients[c].label);
        let command = match what {
            "token" => Command::Token(label),
            "get" => Command::Get(label),
            "invalidate" => Command::Invalidate(label),
            "refresh" => Command::Refresh(label),
            "revoke" => Command::Revoke(label),
            "sign_out" => Command::SignOut(label),
            _ => unreachable!(),
        };
        self.call_command(what, c, bg, command)
    }

    /// [`call`](Self::call) with the command given.
    fn call_command(&mut self, what: &'static str, c: usize, bg: bool, command: Command) -> usize {
        let client = self.clients[c];
        // The issuer keeps the assertion fresh: a new one before every call of a
        // workload client (the provider takes each once), unless it is made to fall
        // behind (`ExpireAssertion`).
        if client.kind == Kind::Workload && !self.assertion_expired && what != "present" {
            self.write_assertion(true);
        }
        let sent_us = unix_us();
        let id = self.send(client.worker, command);
        let index = self.calls.len();
        self.calls.push(Call {
            step: self.step,
            what,
            client: c,
            label: client.label,
            worker: client.worker,
            pid: self.worker(client.worker).pid,
            id,
            sent_us,
            reply: None,
            lost: false,
            holder: None,
        });
        if !bg {
            self.collect(index);
        }
        index
    }

    /// Waits for the reply of call `index` (bounded; a killed worker's never comes).
    fn collect(&mut self, index: usize) {
        let call = &self.calls[index];
        if call.reply.is_some() || call.lost {
            return;
        }
        let (w, id) = (call.worker, call.id);
        let reply = self.worker(w).conn.wait(id, Duration::from_secs(30));
        let alive = self.worker(w).alive;
        let call = &mut self.calls[index];
        match reply {
            Some(reply) => {
                if let Outcome::Token(tag) = &reply.outcome {
                    self.last_tag.insert(call.client, tag.clone());
                }
                call.reply = Some(reply);
            }
            None if !alive => call.lost = true,
            None => panic!(
                "step {}: {} on client {} (worker {w}) did not complete within 30 s",
                call.step, call.what, call.client
            ),
        }
    }

    fn collect_all(&mut self) {
        for i in 0..self.calls.len() {
            self.collect(i);
        }
    }

    fn set_latency(&mut self, ms: u64) {
        let now = unix_us();
        if ms > 0 && self.latency_ms == 0 {
            self.timeline.slow.push((now, None));
        }
        if ms == 0 && self.latency_ms > 0 {
            if let Some(last) = self.timeline.slow.last_mut() {
                last.1 = Some(now);
            }
        }
        self.latency_ms = ms;
        self.server
            .set_behaviour(behaviour(
                self.lifetime_secs,
                self.dpop,
                ms,
                &self.mtls_clients,
            ))
            .unwrap();
    }

    /// Starts a slow renewal of client `c` in the background and waits (bounded) until
    /// the provider has received it: the moment a fork or kill hits "mid-renewal".
    fn renewal_in_flight(&mut self, c: usize) {
        let before = self.latency_ms;
        self.set_latency(1500);
        let since = self.server.journal(0).events.last().map_or(0, |e| e.seq);
        self.call("refresh", c, true);
        let label = format!("c{}", self.clients[c].label);
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            let received = self.server.journal(since).events.iter().any(|e| {
                e.label.as_deref() == Some(label.as_str())
                    && matches!(e.event, Event::TokenReceived { .. })
            });
            if received {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.set_latency(before);
    }

    fn labels_of(&self, w: usize) -> Vec<usize> {
        self.clients
            .iter()
            .filter(|c| c.worker == w)
            .map(|c| c.label)
            .collect()
    }

    fn apply(&mut self, op: &Op) {
        // A workload client's calls run one at a time: each has its own assertion.
        let fg = |c: usize| self.clients[c].kind == Kind::Workload;
        match *op {
            Op::Token { c, bg } => {
                let bg = bg && !fg(c);
                self.call("token", c, bg);
            }
            Op::Get { c, bg } => {
                let bg = bg && !fg(c);
                self.call("get", c, bg);
            }
            Op::Invalidate { c } => {
                self.call("invalidate", c, false);
            }
            Op::Refresh { c, bg } => {
                let bg = bg && !fg(c);
                self.call("refresh", c, bg);
            }
            Op::Revoke { c } => {
                self.call("revoke", c, false);
            }
            Op::SignOut { c } => {
                self.call("sign_out", c, false);
            }
            Op::Present { c, holder } => {
                let command = Command::Present {
                    label: format!("c{}", self.clients[c].label),
                    certificate: holder.map(usize::from),
                };
                let index = self.call_command("present", c, false, command);
                self.calls[index].holder = holder;
            }
            Op::NewClient { w, kind, reentrant } => {
                let label = self.clients.iter().map(|c| c.label + 1).max().unwrap_or(0);
                self.new_client(ClientM {
                    worker: w,
                    label,
                    kind,
                    reentrant,
                    subject: None,
                });
            }
            Op::NewExchange { w, subject } => {
                let label = self.clients.iter().map(|c| c.label + 1).max().unwrap_or(0);
                let of = self.clients[subject];
                let Kind::User(u) = of.kind else {
                    unreachable!("an exchange's subject is a user's client")
                };
                self.new_client(ClientM {
                    worker: w,
                    label,
                    kind: Kind::Exchange(u),
                    reentrant: false,
                    subject: Some(of.label),
                });
            }
            Op::RewriteAssertion => self.write_assertion(true),
            Op::ExpireAssertion => self.write_assertion(false),
            Op::SpawnWorker => self.spawn_worker(),
            Op::Fork { w, mid } => {
                if let Some(c) = mid {
                    self.renewal_in_flight(c);
                }
                let child = self.workers.len();
                self.workers.push(None);
                let now = unix_us();
                self.timeline.forks.push((now, w, self.labels_of(w)));
                let id = self.send(w, Command::Fork { child });
                let (conn, pid) = self.accept(child);
                let reply = self
                    .worker(w)
                    .conn
                    .wait(id, Duration::from_secs(15))
                    .expect("fork reply");
                assert_eq!(reply.outcome, Outcome::Forked(pid), "fork");
                self.workers[child] = Some(WorkerHandle {
                    child: None,
                    pid,
                    conn,
                    alive: true,
                });
                let copies: Vec<ClientM> = self
                    .clients
                    .iter()
                    .filter(|c| c.worker == w)
                    .map(|c| ClientM {
                        worker: child,
                        ..*c
                    })
                    .collect();
                self.clients.extend(copies);
            }
            Op::Kill { w, mid } => {
                if let Some(c) = mid {
                    self.renewal_in_flight(c);
                }
                let labels = self.labels_of(w);
                self.timeline.kills.push((unix_us(), w, labels));
                if let Some(handle) = self.workers[w].as_mut() {
                    handle.kill();
                }
            }
            Op::ProviderFail { count, status } => {
                self.server.fail_next(Fault::status(count, status));
            }
            Op::ProviderHtml { count } => self.server.malformed_next(count, Malformed::Html),
            Op::ProviderSlow { ms } => self.set_latency(ms),
            Op::Refuse => self.server.fail_next(Fault {
                count: 1,
                status: 400,
                retry_after: None,
                error: Some("invalid_grant".into()),
                grant: Some("refresh_token".into()),
                html: false,
            }),
            Op::RevokeAccess { c } => {
                let seen = self.last_tag.get(&c).cloned().or_else(|| {
                    let label = format!("c{}@{}", self.clients[c].label, {
                        self.workers[self.clients[c].worker]
                            .as_ref()
                            .map_or(0, |w| w.pid)
                    });
                    self.server
                        .journal(0)
                        .events
                        .iter()
                        .rev()
                        .find_map(|e| match &e.event {
                            Event::Resource { token, .. }
                                if e.label.as_deref() == Some(label.as_str()) =>
                            {
                                token.clone()
                            }
                            _ => None,
                        })
                });
                if let Some(tag) = seen {
                    self.server.revoke_token_tag(&tag);
                }
            }
            Op::RevokeGrant { user } => {
                self.server.revoke_grant(USERS[usize::from(user)]);
            }
            Op::SaveFails { w } => {
                self.timeline.save_failures.push((unix_us(), w));
                let reply = self.run(w, Command::FailNextSave);
                assert_eq!(reply.outcome, Outcome::Done);
            }
            Op::RedisDown => {
                self.timeline.redis_down.push((unix_us(), None));
                self.redis.as_mut().unwrap().stop();
            }
            Op::RedisUp => {
                self.redis.as_mut().unwrap().restart();
                if let Some(last) = self.timeline.redis_down.last_mut() {
                    last.1 = Some(unix_us());
                }
            }
            Op::Wait { ms } => std::thread::sleep(Duration::from_millis(ms)),
        }
    }

    fn stop(&mut self) {
        for handle in self.workers.iter_mut().flatten() {
            handle.kill();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The composition test, per store.
pub struct Composition<S>(PhantomData<S>);

impl<S: Flavor> StateMachineTest for Composition<S> {
    type SystemUnderTest = System;
    type Reference = Reference<S>;

    fn init_test(model: &Model) -> System {
        let guard = ONE_AT_A_TIME.lock();
        let started = *STARTED[model.store as usize].get_or_init(Instant::now);
        let replaying = REPLAYING.with(std::cell::Cell::get);
        if !replaying && started.elapsed() > budget() {
            CASES_SKIPPED.fetch_add(1, Ordering::Relaxed);
            return System {
                live: None,
                _one_at_a_time: guard,
            };
        }
        System {
            live: Some(Live::start(model)),
            _one_at_a_time: guard,
        }
    }

    fn apply(mut system: System, _model: &Model, op: Op) -> System {
        if let Some(live) = system.live.as_mut() {
            live.step += 1;
            live.apply(&op);
            OPS_RUN.fetch_add(1, Ordering::Relaxed);
        }
        system
    }

    fn check_invariants(system: &System, model: &Model) {
        if let Some(live) = &system.live {
            if let Err(violation) = Checker::new(live, model).check() {
                panic!("{violation}");
            }
        }
    }

    fn teardown(mut system: System, model: Model) {
        if let Some(live) = system.live.as_mut() {
            live.collect_all();
            let outcome = Checker::new(live, &model).check();
            live.stop();
            let n = CASES_RUN.fetch_add(1, Ordering::Relaxed) + 1;
            let mut sign_outs = SIGN_OUTS.lock();
            for call in live.calls.iter().filter(|c| c.what == "sign_out") {
                let outcome = match call.reply.as_ref().map(|r| &r.outcome) {
                    Some(Outcome::SignedOut { outcome, .. }) => outcome.clone(),
                    Some(_) => "error".to_owned(),
                    None => continue,
                };
                *sign_outs.entry(outcome).or_default() += 1;
            }
            let reentries: usize = live
                .calls
                .iter()
                .filter_map(|c| c.reply.as_ref())
                .map(|r| r.reentries.len())
                .sum();
            let reentries = REENTRIES.fetch_add(reentries, Ordering::Relaxed) + reentries;
            let mut workloads = WORKLOADS.lock();
            for call in &live.calls {
                let kind = live.clients[call.client].kind;
                let config = matches!(
                    call.reply.as_ref().map(|r| &r.outcome),
                    Some(Outcome::Error { kind, .. }) if kind == "config"
                );
                match kind {
                    Kind::Workload => {
                        *workloads.entry("workload calls").or_default() += 1;
                        if config {
                            *workloads.entry("expired refused").or_default() += 1;
                        }
                    }
                    Kind::Exchange(_) => *workloads.entry("exchange calls").or_default() += 1,
                    Kind::Mtls(_) if call.what != "present" => {
                        *workloads.entry("mtls calls").or_default() += 1;
                    }
                    _ => {}
                }
                if call.what == "present" {
                    *workloads.entry("presentations").or_default() += 1;
                    match call.reply.as_ref().map(|r| &r.outcome) {
                        Some(Outcome::Response { status: 401, .. }) => {
                            *workloads.entry("presentations refused").or_default() += 1;
                        }
                        Some(Outcome::Dropped(false)) => {
                            *workloads.entry("presentations of no token").or_default() += 1;
                        }
                        _ => {}
                    }
                }
            }
            for e in &live.server.journal(0).events {
                if let Event::Token {
                    grant,
                    outcome,
                    assertion,
                    ..
                } = &e.event
                {
                    if grant.ends_with("token-exchange") && *outcome == TokenOutcome::Refused {
                        *workloads.entry("exchanges refused").or_default() += 1;
                    }
                    if assertion.is_some() && *outcome == TokenOutcome::Issued {
                        *workloads.entry("assertions taken").or_default() += 1;
                    }
                }
                if let Event::Token { x5t: Some(_), .. } = &e.event {
                    *workloads.entry("certificate-bound tokens").or_default() += 1;
                }
            }
            let keyed = live
                .saves
                .lock()
                .iter()
                .filter(|s| s.key.contains("x5t#S256="))
                .count();
            *workloads.entry("records keyed by certificate").or_default() += keyed;
            eprintln!(
                "composition: case {n} ({:?}, {} steps, {} calls) in {:.1} s; {} operations so far, {} cases skipped (budget); sign-outs so far {:?}, reentrant calls {reentries}",
                live.store,
                live.step,
                live.calls.len(),
                live.started.elapsed().as_secs_f64(),
                OPS_RUN.load(Ordering::Relaxed),
                CASES_SKIPPED.load(Ordering::Relaxed),
                *sign_outs,
            );
            eprintln!("composition: workloads so far {:?}", *workloads);
            drop(workloads);
            drop(sign_outs);
            if let Err(violation) = outcome {
                panic!("{violation}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The invariants
// ---------------------------------------------------------------------------------

/// Judges one case: the provider's journal, the calls' results and the timeline.
pub struct Checker<'a> {
    live: &'a Live,
    model: &'a Model,
    journal: Vec<JournalEvent>,
}

/// A token request, as the journal tells it.
struct TokenRequest<'a> {
    event: &'a JournalEvent,
    received_us: u64,
    presented: Option<&'a str>,
    outcome: TokenOutcome,
    injected: bool,
}

fn overlaps(intervals: &[(u64, Option<u64>)], from: u64, to: u64) -> bool {
    intervals
        .iter()
        .any(|&(a, b)| a <= to && b.is_none_or(|b| b >= from))
}

impl<'a> Checker<'a> {
    fn new(live: &'a Live, model: &'a Model) -> Self {
        Checker {
            live,
            model,
            journal: live.server.journal(0).events,
        }
    }

    fn token_requests(&self) -> Vec<TokenRequest<'_>> {
        self.journal
            .iter()
            .filter_map(|e| match &e.event {
                Event::Token {
                    received_us,
                    presented,
                    outcome,
                    injected,
                    ..
                } => Some(TokenRequest {
                    event: e,
                    received_us: *received_us,
                    presented: presented.as_deref(),
                    outcome: *outcome,
                    injected: *injected,
                }),
                _ => None,
            })
            .collect()
    }

    /// A presentation by a stranger (`Present`): its label is `x…`.
    fn by_stranger(event: &JournalEvent) -> bool {
        event.label.as_deref().is_some_and(|l| l.starts_with('x'))
    }

    /// The certificate (`x5t#S256`) each access token the provider issued is bound to
    /// (`None`: to none), by tag.
    fn bound_to(&self) -> HashMap<&str, Option<&str>> {
        self.journal
            .iter()
            .filter_map(|e| match &e.event {
                Event::Token {
                    access: Some(a),
                    x5t,
                    ..
                } => Some((a.as_str(), x5t.as_deref())),
                Event::Session { access, .. } => Some((access.as_str(), None)),
                _ => None,
            })
            .collect()
    }

    fn label_of(event: &JournalEvent) -> Option<usize> {
        let label = event.label.as_deref()?.strip_prefix('c')?;
        label.split('@').next()?.parse().ok()
    }

    /// The process a resource event came from.
    fn pid_of(event: &JournalEvent) -> Option<u32> {
        event.label.as_deref()?.split_once('@')?.1.parse().ok()
    }

    fn kind_of_label(&self, label: usize) -> Option<Kind> {
        self.live
            .clients
            .iter()
            .find(|c| c.label == label)
            .map(|c| c.kind)
    }

    /// Families that ended, and when.
    fn dead_families(&self) -> BTreeMap<u64, u64> {
        let mut dead = BTreeMap::new();
        let mut mark = |family: u64, at: u64| {
            dead.entry(family).or_insert(at);
        };
        for e in &self.journal {
            match &e.event {
                Event::Token {
                    outcome: TokenOutcome::Refused | TokenOutcome::ReuseDetected,
                    family: Some(f),
                    ..
                } => mark(*f, e.at_us),
                Event::GrantRevoked { families, .. } => {
                    for f in families {
                        mark(*f, e.at_us);
                    }
                }
                Event::Revocation {
                    kind,
                    family: Some(f),
                    ..
                } if kind == "refresh_token" => mark(*f, e.at_us),
                _ => {}
            }
        }
        dead
    }

    /// Families a label was seen with (its session, its token requests, its API
    /// calls), and the first time each.
    fn families_of(&self, label: usize) -> BTreeMap<u64, u64> {
        let mut families = BTreeMap::new();
        for e in &self.journal {
            if Self::label_of(e) != Some(label) {
                continue;
            }
            let family = match &e.event {
                Event::Session { family, .. } => Some(*family),
                Event::Token { family, .. } | Event::Resource { family, .. } => *family,
                _ => None,
            };
            if let Some(f) = family {
                families.entry(f).or_insert(e.at_us);
            }
        }
        families
    }

    /// Who an access token was issued to, by tag.
    fn issued(&self) -> HashMap<&str, (Option<&str>, Option<u64>)> {
        let mut issued = HashMap::new();
        for e in &self.journal {
            match &e.event {
                Event::Token {
                    access: Some(a),
                    sub,
                    family,
                    ..
                } => {
                    issued.insert(a.as_str(), (sub.as_deref(), *family));
                }
                Event::Session {
                    access,
                    sub,
                    family,
                    ..
                } => {
                    issued.insert(access.as_str(), (Some(sub.as_str()), Some(*family)));
                }
                _ => {}
            }
        }
        issued
    }

    /// An exchange client's subject (model index): the client of its worker with the
    /// subject's label.
    fn subject_of(&self, c: usize) -> Option<usize> {
        let me = self.live.clients[c];
        let label = me.subject?;
        self.live
            .clients
            .iter()
            .position(|o| o.label == label && o.worker == me.worker)
    }

    /// Whether clients in workers `a` and `b` share one store: always for a file or
    /// Redis store; for `MemoryStore`s, within one process and its forks (a forked
    /// child starts with a copy).
    fn shares_store(&self, a: usize, b: usize) -> bool {
        if self.live.store != StoreKind::Memory {
            return true;
        }
        let root = |w: usize| {
            std::iter::successors(Some(w), |&w| {
                self.model.workers.get(w).and_then(|m| m.forked_from)
            })
            .last()
            .unwrap_or(w)
        };
        root(a) == root(b)
    }

    fn forked_labels_before(&self, t: u64) -> BTreeSet<usize> {
        self.live
            .timeline
            .forks
            .iter()
            .filter(|(at, _, _)| *at <= t)
            .flat_map(|(_, _, labels)| labels.iter().copied())
            .collect()
    }

    fn case(&self) -> String {
        let calls: Vec<String> = self
            .live
            .calls
            .iter()
            .map(|c| {
                format!(
                    "  step {} {} c{} (w{}, pid {}) -> {}",
                    c.step,
                    c.what,
                    c.label,
                    c.worker,
                    c.pid,
                    c.reply.as_ref().map_or_else(
                        || if c.lost {
                            "lost (killed)".into()
                        } else {
                            "pending".into()
                        },
                        |r| format!(
                            "{:?} [{:.3}..{:.3} s]{}",
                            r.outcome,
                            self.rel(r.started_us),
                            self.rel(r.ended_us),
                            if r.reentries.is_empty() {
                                String::new()
                            } else {
                                format!(" reentries {:?}", r.reentries)
                            }
                        )
                    )
                )
            })
            .collect();
        let journal: Vec<String> = self
            .journal
            .iter()
            .map(|e| {
                format!(
                    "  #{} {:.3} s {} {:?}",
                    e.seq,
                    self.rel(e.at_us),
                    e.label.as_deref().unwrap_or("-"),
                    e.event
                )
            })
            .collect();
        format!(
            "DPoP {:?}, clients {:?}\ncalls:\n{}\ntimeline {:?}\njournal:\n{}",
            self.live.dpop,
            self.live.clients,
            calls.join("\n"),
            self.live.timeline,
            journal.join("\n")
        )
    }

    fn rel(&self, us: u64) -> f64 {
        let t0 = self.journal.first().map_or(us, |e| e.at_us);
        (us as f64 - t0 as f64) / 1e6
    }

    /// All invariants; the first violation, described with the whole case.
    pub fn check(&self) -> Result<(), String> {
        type Check<'c> = fn(&Checker<'c>) -> Result<(), String>;
        let checks: [(&str, Check<'a>); 13] = [
            (
                "1. refresh token presented after rotation or refusal",
                Self::refresh_tokens_once,
            ),
            ("2. a user's client acts as another", Self::subjects),
            ("3. expired token sent", Self::no_expired),
            ("4. grant used after revoke()", Self::revoke_ends_the_grant),
            ("5. an error no fault explains", Self::errors_explained),
            (
                "6. a revoked token cost more than one renewal",
                Self::one_renewal_per_revocation,
            ),
            (
                "7. a signed-out session served from the store",
                Self::sign_out_ends_the_session_everywhere,
            ),
            (
                "8. a reentrant call from a renewal hook waited or got a token",
                Self::reentry_refused_at_once,
            ),
            (
                "9. a DPoP proof refused, or a token not bound",
                Self::dpop_proofs_accepted,
            ),
            (
                "10. an assertion presented twice or after its exp",
                Self::assertions_once_and_alive,
            ),
            (
                "11. a revoked subject token cost more than one refused exchange and one subject renewal",
                Self::one_refused_exchange_per_revoked_subject,
            ),
            (
                "12. a certificate-bound token presented or handed out without its certificate",
                Self::bound_tokens_stay_with_their_certificate,
            ),
            (
                "13. a store record shared by two certificates, or keyed without its certificate",
                Self::records_keyed_by_certificate,
            ),
        ];
        for (name, check) in checks {
            if let Err(what) = check(self) {
                return Err(format!(
                    "invariant {name}: {what}\n--- the case ---\n{}",
                    self.case()
                ));
            }
        }
        Ok(())
    }

    /// Invariant 1: No refresh token is presented after it was rotated or refused — unless the
    /// answer that rotated it never reached anyone (its requester was killed, or gave up
    /// at its deadline), or the only copy of its successor was lost with the store
    /// (Redis restarted empty; a `MemoryStore` is not shared with a forked child).
    fn refresh_tokens_once(&self) -> Result<(), String> {
        let requests = self.token_requests();
        let mut consumed: HashMap<&str, &TokenRequest<'_>> = HashMap::new();
        for r in &requests {
            let Some(x) = r.presented else { continue };
            if let Some(prev) = consumed.get(x) {
                if prev.event.at_us <= r.received_us && !self.stale_copy_excused(prev, r) {
                    return Err(format!(
                        "refresh token {x} presented by {} (#{}, {:?}) after it was {} by #{} ({})",
                        r.event.label.as_deref().unwrap_or("?"),
                        r.event.seq,
                        r.outcome,
                        if prev.outcome == TokenOutcome::Issued {
                            "rotated"
                        } else {
                            "refused"
                        },
                        prev.event.seq,
                        prev.event.label.as_deref().unwrap_or("?"),
                    ));
                }
            }
            if matches!(
                r.outcome,
                TokenOutcome::Issued | TokenOutcome::Refused | TokenOutcome::ReuseDetected
            ) {
                consumed.entry(x).or_insert(r);
            }
        }
        Ok(())
    }

    fn stale_copy_excused(&self, prev: &TokenRequest<'_>, now: &TokenRequest<'_>) -> bool {
        let t = &self.live.timeline;
        let prev_label = Self::label_of(prev.event);
        let now_label = Self::label_of(now.event);
        if prev.outcome == TokenOutcome::Issued {
            // The rotation's answer was lost: its requester was killed meanwhile…
            let killed = t.kills.iter().any(|(at, _, labels)| {
                *at >= prev.received_us
                    && *at <= prev.event.at_us + 200_000
                    && prev_label.is_some_and(|l| labels.contains(&l))
            });
            // …or had given up at its deadline.
            let gave_up = self.live.calls.iter().any(|c| {
                Some(c.label) == prev_label
                    && c.reply.as_ref().is_some_and(|r| {
                        matches!(&r.outcome, Outcome::Error { kind, .. } if kind == "timeout")
                            && r.started_us <= prev.received_us
                            && r.ended_us <= prev.event.at_us
                    })
            });
            if killed || gave_up {
                return true;
            }
        }
        // The successor lived only in a store that lost it.
        let wiped = t
            .redis_down
            .iter()
            .any(|(at, _)| *at > prev.event.at_us && *at < now.received_us);
        let forked = self.forked_labels_before(now.received_us);
        let same_holder =
            prev_label == now_label && now_label.is_some_and(|l| !forked.contains(&l));
        if wiped && !same_holder {
            return true;
        }
        // The successor was never saved: a store save was made to fail in a process that
        // hosted the rotating client (or in the one it was forked from: a fork inherits
        // the armed fault), so the successor lived only in that process's memory, and a
        // copy of the client in another process still held its predecessor.
        let lineage = |w: usize| -> Vec<usize> {
            std::iter::successors(Some(w), |&w| {
                self.model.workers.get(w).and_then(|m| m.forked_from)
            })
            .collect()
        };
        let unsaved =
            prev.outcome == TokenOutcome::Issued
                && !same_holder
                && t.save_failures.iter().any(|&(at, armed)| {
                    at <= prev.received_us
                        && self.live.clients.iter().any(|c| {
                            Some(c.label) == prev_label && lineage(c.worker).contains(&armed)
                        })
                });
        if unsaved {
            return true;
        }
        // A forked child's MemoryStore is a copy: parent and child no longer share.
        self.live.store == StoreKind::Memory
            && [prev_label, now_label]
                .iter()
                .flatten()
                .any(|l| forked.contains(l))
    }

    /// Invariant 2: Every API call through a client reaches the API as that client's user (or
    /// service), and every token handed to a client is one of its user's.
    fn subjects(&self) -> Result<(), String> {
        for e in &self.journal {
            if let Event::Resource {
                sub: Some(sub),
                token,
                ..
            } = &e.event
            {
                if let Some(kind) = Self::label_of(e).and_then(|l| self.kind_of_label(l)) {
                    if sub != kind.sub() {
                        return Err(format!(
                            "#{}: a call through {} (a client of {}) reached the API as {sub} (token {token:?})",
                            e.seq,
                            e.label.as_deref().unwrap_or("?"),
                            kind.sub()
                        ));
                    }
                }
            }
        }
        let issued = self.issued();
        for call in &self.live.calls {
            let Some(reply) = &call.reply else { continue };
            let kind = self.live.clients[call.client].kind;
            match &reply.outcome {
                Outcome::Token(tag) => {
                    let whose = issued.get(tag.as_str()).and_then(|(sub, _)| *sub);
                    if whose != Some(kind.sub()) {
                        return Err(format!(
                            "step {}: {} on c{} (a client of {}) returned token {tag}, issued to {whose:?}",
                            call.step,
                            call.what,
                            call.label,
                            kind.sub()
                        ));
                    }
                }
                Outcome::Response { status: 200, sub } if sub.as_deref() != Some(kind.sub()) => {
                    return Err(format!(
                        "step {}: get on c{} (a client of {}) was answered for {sub:?}",
                        call.step,
                        call.label,
                        kind.sub()
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Invariant 3: No expired token reaches the API (through a client: a stranger's
    /// `Present` may send one it was handed long before).
    fn no_expired(&self) -> Result<(), String> {
        match self.journal.iter().find(|e| {
            !Self::by_stranger(e)
                && matches!(
                    e.event,
                    Event::Resource {
                        outcome: ResourceOutcome::Expired,
                        ..
                    }
                )
        }) {
            Some(e) => Err(format!(
                "#{}: {} sent an expired token",
                e.seq,
                e.label.as_deref().unwrap_or("?")
            )),
            None => Ok(()),
        }
    }

    /// Invariant 4: When `revoke()` returns (whatever it returns), the grant the client held is
    /// revoked at the provider, and that client (in that process) uses nothing of it
    /// afterwards. The same for `sign_out()`, except that the provider is held to have
    /// revoked the grant only when the outcome is `revoked`.
    fn revoke_ends_the_grant(&self) -> Result<(), String> {
        let dead = self.dead_families();
        let forked = self.forked_labels_before(u64::MAX);
        for call in self
            .live
            .calls
            .iter()
            .filter(|c| c.what == "revoke" || c.what == "sign_out")
        {
            let Some(reply) = &call.reply else { continue };
            let provider_revoked = call.what == "revoke"
                || matches!(&reply.outcome, Outcome::SignedOut { outcome, .. } if outcome == "revoked");
            // The family the client used last before revoking.
            let label = call.label;
            let pid = call.pid;
            // A token request names its label but not its process: after a fork, with a
            // store each process keeps for itself (memory), a token the parent's copy of
            // the client obtained is not this process's to revoke.
            let whose_unknown = |at: u64| {
                self.live.store == StoreKind::Memory
                    && self
                        .live
                        .timeline
                        .forks
                        .iter()
                        .any(|(forked, _, labels)| *forked < at && labels.contains(&label))
            };
            // A token a call of this client returned: the family it belongs to (a token
            // adopted from the store, of a session that superseded the client's own,
            // shows in no journal event of the client's).
            let family_of_tag = |tag: &str| {
                self.journal.iter().find_map(|e| match &e.event {
                    Event::Token {
                        access: Some(a),
                        family,
                        ..
                    } if a == tag => *family,
                    Event::Session { access, family, .. } if access == tag => Some(*family),
                    _ => None,
                })
            };
            let returned = self
                .live
                .calls
                .iter()
                .filter(|c| c.label == label && c.pid == pid)
                .filter_map(|c| {
                    let r = c.reply.as_ref()?;
                    match &r.outcome {
                        Outcome::Token(tag) if r.ended_us < reply.started_us => {
                            Some((r.ended_us, family_of_tag(tag)?))
                        }
                        _ => None,
                    }
                })
                .max_by_key(|(at, _)| *at);
            let last = self
                .journal
                .iter()
                .filter(|e| e.at_us < reply.started_us)
                .filter(|e| match &e.event {
                    Event::Token { .. } => {
                        Self::label_of(e) == Some(label) && !whose_unknown(e.at_us)
                    }
                    Event::Session { .. } => Self::label_of(e) == Some(label),
                    Event::Resource { .. } => {
                        Self::label_of(e) == Some(label) && Self::pid_of(e) == Some(pid)
                    }
                    _ => false,
                })
                .filter_map(|e| {
                    match &e.event {
                        Event::Session { family, .. } => Some(*family),
                        Event::Token {
                            family,
                            outcome: TokenOutcome::Issued,
                            ..
                        }
                        | Event::Resource { family, .. } => *family,
                        _ => None,
                    }
                    .map(|f| (e.at_us, f))
                })
                .next_back();
            // Whichever came last: what the journal names, or a token a call returned.
            let last = match (last, returned) {
                (Some(j), Some(r)) => Some(if r.0 > j.0 { r.1 } else { j.1 }),
                (j, r) => j.or(r).map(|(_, f)| f),
            };
            let Some(family) = last else { continue };
            let already_dead = dead.get(&family).is_some_and(|&at| at < reply.started_us);
            if already_dead {
                continue;
            }
            let revoked = self.journal.iter().any(|e| {
                e.at_us <= reply.ended_us
                    && matches!(&e.event, Event::Revocation { family: Some(f), .. } if *f == family)
            });
            if provider_revoked && !revoked {
                return Err(format!(
                    "step {}: {}() on c{label} returned {:?}, but its grant (family {family}) was not revoked at the provider",
                    call.step, call.what, reply.outcome
                ));
            }
            // A sign-out that failed (the store could not be updated) may leave the
            // session in use; a revocation that failed leaves nothing here.
            if call.what == "sign_out" && matches!(reply.outcome, Outcome::Error { .. }) {
                continue;
            }
            // Nothing of it afterwards, from this client in this process.
            for e in self.journal.iter().filter(|e| e.at_us > reply.ended_us) {
                let used = match &e.event {
                    Event::Resource {
                        family: Some(f), ..
                    } => {
                        *f == family
                            && Self::label_of(e) == Some(label)
                            && Self::pid_of(e) == Some(pid)
                    }
                    Event::Token {
                        family: Some(f),
                        presented: Some(_),
                        ..
                    } => {
                        *f == family && Self::label_of(e) == Some(label) && !forked.contains(&label)
                    }
                    _ => false,
                };
                if used {
                    return Err(format!(
                        "#{}: c{label} used its grant (family {family}) after {}() returned at step {}",
                        e.seq, call.what, call.step
                    ));
                }
            }
        }
        Ok(())
    }

    /// Invariant 5: Every error lines up with a fault injected in its window, or is
    /// `ReauthenticationRequired` after the grant ended.
    fn errors_explained(&self) -> Result<(), String> {
        let requests = self.token_requests();
        let dead = self.dead_families();
        let t = &self.live.timeline;
        // A stranger's presentation is judged by invariant 12.
        for call in self.live.calls.iter().filter(|c| c.what != "present") {
            let Some(reply) = &call.reply else { continue };
            let error = match &reply.outcome {
                Outcome::Error { kind, message }
                | Outcome::SignedOut {
                    error: Some((kind, message)),
                    ..
                } => format!("{kind}: {message}"),
                Outcome::Response { status, .. } if *status != 200 => format!("HTTP {status}"),
                _ => continue,
            };
            let kind = match &reply.outcome {
                Outcome::Error { kind, .. }
                | Outcome::SignedOut {
                    error: Some((kind, _)),
                    ..
                } => kind.as_str(),
                _ => "http",
            };
            let from = reply.started_us.saturating_sub(BACKOFF_WINDOW_US);
            let to = reply.ended_us;
            let label = call.label;
            let me = self.live.clients[call.client];
            // An exchange client's subject: a user's client in the same worker, whose
            // faults and ended grant are the exchange client's too.
            let subject = self.subject_of(call.client);
            let subject_label = subject.map(|s| self.live.clients[s].label);
            let own_fault = requests.iter().any(|r| {
                r.injected
                    && (Self::label_of(r.event) == Some(label)
                        || (subject_label.is_some() && Self::label_of(r.event) == subject_label))
                    && r.event.at_us >= from
                    && r.received_us <= to
            });
            let any_fault = requests
                .iter()
                .any(|r| r.injected && r.event.at_us >= from && r.received_us <= to);
            let family_ended = |label: usize| {
                self.families_of(label)
                    .keys()
                    .any(|f| dead.get(f).is_some_and(|&at| at <= to))
            };
            let ended_for = |m: ClientM| {
                family_ended(m.label)
                // A user's key in a shared store holds one session: a second sign-in
                // supersedes the first for every client of that user sharing the store,
                // and when the session in the store ends (its refresh token refused),
                // each of them signs in again (README, "Many processes and many hosts").
                || self.live.clients.iter().any(|other| {
                    other.kind == m.kind
                        && matches!(other.kind, Kind::User(_))
                        && self.shares_store(other.worker, m.worker)
                        && family_ended(other.label)
                })
                || self.live.calls.iter().any(|c| {
                    // A sign-out (`revoke()`, `sign_out()`) begun before this call ended,
                    // by this client or by any client of the same user sharing its store
                    // (the store keeps the sign-out for all of them).
                    (c.what == "revoke" || c.what == "sign_out")
                        && self.live.clients[c.client].kind == m.kind
                        && self.shares_store(c.worker, m.worker)
                        && c.reply
                            .as_ref()
                            .is_some_and(|r| r.started_us <= reply.ended_us)
                })
            };
            // An exchange client's grant ends with its subject's: the subject's renewal
            // is refused (`ReauthenticationRequired`), or the exchange of its last token
            // is (`OAuth` `invalid_grant`, nothing new to send).
            let subject_ended = subject.is_some_and(|s| ended_for(self.live.clients[s]));
            let grant_ended = ended_for(me) || subject_ended;
            // A workload client's assertion file held an expired assertion: refused
            // before it is sent, with a `Config` error naming the file.
            let assertion_expired =
                me.kind == Kind::Workload && overlaps(&t.assertion_expired, from, to);
            let redis_down = overlaps(&t.redis_down, from, to);
            let killed_holder = t
                .kills
                .iter()
                .any(|(at, _, _)| *at <= to && at + LOCK_TTL_US >= reply.started_us);
            let slow = overlaps(&t.slow, from, to);
            // A save made to fail in this worker (or the one it was forked from), not yet
            // spent on an earlier store error there.
            let lineage: Vec<usize> = std::iter::successors(Some(call.worker), |&w| {
                self.model.workers.get(w).and_then(|m| m.forked_from)
            })
            .collect();
            let armed = t
                .save_failures
                .iter()
                .filter(|(at, w)| *at <= to && lineage.contains(w))
                .count();
            let spent = self
                .live
                .calls
                .iter()
                .filter(|c| lineage.contains(&c.worker))
                .filter_map(|c| c.reply.as_ref())
                .filter(|r| r.ended_us < reply.ended_us)
                .filter(|r| matches!(&r.outcome, Outcome::Error { kind, .. } if kind == "store"))
                .count();
            let save_failed = armed > spent;
            let explained = match kind {
                "reauthentication_required" => grant_ended,
                "config" if assertion_expired => true,
                "oauth" if subject_ended => true,
                "store" => redis_down || save_failed,
                "timeout" => any_fault || slow || redis_down || killed_holder,
                "http" => {
                    // A 401 for a token that replaced a rejected one, within the backoff,
                    // is given back as it is (an API that refuses every token). A token
                    // the caller invalidated counts as rejected (that is what the cache
                    // is told).
                    let rejected: BTreeSet<&str> = self
                        .journal
                        .iter()
                        .filter(|e| {
                            e.at_us >= from
                                && e.at_us <= to
                                && Self::label_of(e) == Some(label)
                                && Self::pid_of(e) == Some(call.pid)
                        })
                        .filter_map(|e| match &e.event {
                            Event::Resource {
                                outcome: ResourceOutcome::Revoked | ResourceOutcome::Unknown,
                                token: Some(tag),
                                ..
                            } => Some(tag.as_str()),
                            _ => None,
                        })
                        .collect();
                    let invalidated = self
                        .live
                        .calls
                        .iter()
                        .filter(|c| c.label == label && c.what == "invalidate")
                        .filter_map(|c| c.reply.as_ref())
                        .filter(|r| {
                            r.ended_us <= reply.ended_us
                                && r.ended_us + MAX_BACKOFF_US >= reply.started_us
                        })
                        .filter(|r| matches!(r.outcome, Outcome::Dropped(true)))
                        .count();
                    rejected.len() + invalidated >= 2
                }
                _ => own_fault || (redis_down && kind == "store"),
            };
            if !explained {
                return Err(format!(
                    "step {}: {} on c{label} (w{}) failed with {error}, and no fault explains it",
                    call.step, call.what, call.worker
                ));
            }
        }
        Ok(())
    }

    /// The families a sign-out ended: the one its client used last before it, and every
    /// one its revocation requests named.
    fn signed_out_families(&self, call: &Call, reply: &Reply) -> BTreeSet<u64> {
        let (label, pid) = (call.label, call.pid);
        let mut families: BTreeSet<u64> = self
            .journal
            .iter()
            .filter(|e| e.at_us >= reply.started_us && e.at_us <= reply.ended_us)
            .filter(|e| Self::label_of(e) == Some(label))
            .filter_map(|e| match &e.event {
                Event::Revocation {
                    family: Some(f),
                    control: false,
                    ..
                } => Some(*f),
                _ => None,
            })
            .collect();
        let last = self
            .journal
            .iter()
            .filter(|e| e.at_us < reply.started_us)
            .filter(|e| match &e.event {
                Event::Token { .. } | Event::Session { .. } => Self::label_of(e) == Some(label),
                Event::Resource { .. } => {
                    Self::label_of(e) == Some(label) && Self::pid_of(e) == Some(pid)
                }
                _ => false,
            })
            .filter_map(|e| match &e.event {
                Event::Session { family, .. } => Some(*family),
                Event::Token {
                    family,
                    outcome: TokenOutcome::Issued,
                    ..
                }
                | Event::Resource { family, .. } => *family,
                _ => None,
            })
            .next_back();
        families.extend(last);
        families
    }

    /// Invariant 7: Once `sign_out()` on client c returned `Ok` (whatever the provider
    /// did), no client of the same user sharing c's store at that moment (in any worker
    /// for a file or Redis store; in c's own process for a `MemoryStore`) is handed or
    /// sends a token of the session it ended that it did not already hold, and no token
    /// of it is issued to any of them: the tombstone in the store ends it for all. c's
    /// own process holds none afterwards (invariant 4). Redis restarting empty
    /// afterwards loses the tombstone: the check stops there.
    fn sign_out_ends_the_session_everywhere(&self) -> Result<(), String> {
        let issued = self.issued();
        // A label forked from a `MemoryStore` worker also names copies that no longer
        // share its store (their token requests carry no process id).
        let forked = self.forked_labels_before(u64::MAX);
        for call in self.live.calls.iter().filter(|c| c.what == "sign_out") {
            let Some(reply) = &call.reply else { continue };
            if !matches!(reply.outcome, Outcome::SignedOut { .. }) {
                continue;
            }
            let ended = self.signed_out_families(call, reply);
            if ended.is_empty() {
                continue;
            }
            let kind = self.live.clients[call.client].kind;
            let from = reply.ended_us;
            let until = self
                .live
                .timeline
                .redis_down
                .iter()
                .map(|&(at, _)| at)
                .filter(|&at| at >= reply.started_us)
                .min()
                .unwrap_or(u64::MAX);
            let sharing = |worker: usize| {
                if self.live.store == StoreKind::Memory {
                    worker == call.worker
                } else {
                    true
                }
            };
            // Which clients (model index) of the user share the store.
            let others: Vec<usize> = (0..self.live.clients.len())
                .filter(|&o| {
                    let m = self.live.clients[o];
                    m.kind == kind && sharing(m.worker)
                })
                .collect();
            let family_of = |tag: &str| issued.get(tag).and_then(|&(_, f)| f);
            for &o in &others {
                let m = self.live.clients[o];
                let itself = m.label == call.label && m.worker == call.worker;
                // What o held when the sign-out ended: tokens its calls begun by then
                // were handed, and tokens it sent to the API by then.
                let mut held: BTreeSet<&str> = self
                    .live
                    .calls
                    .iter()
                    .filter(|c| c.label == m.label && c.sent_us <= from)
                    .filter_map(|c| match c.reply.as_ref().map(|r| &r.outcome) {
                        Some(Outcome::Token(tag)) => Some(tag.as_str()),
                        _ => None,
                    })
                    .collect();
                held.extend(
                    self.journal
                        .iter()
                        .filter(|e| e.at_us <= from)
                        .filter_map(|e| match &e.event {
                            Event::Resource {
                                token: Some(tag), ..
                            } if Self::label_of(e) == Some(m.label) => Some(tag.as_str()),
                            _ => None,
                        }),
                );
                let pid = self.live.workers[m.worker].as_ref().map_or(0, |w| w.pid);
                // Calls of o begun after the sign-out ended.
                for later in self
                    .live
                    .calls
                    .iter()
                    .filter(|c| c.client == o && c.sent_us > from)
                {
                    let Some(r) = &later.reply else { continue };
                    if r.ended_us >= until {
                        continue;
                    }
                    if let Outcome::Token(tag) = &r.outcome {
                        let of_session = family_of(tag).is_some_and(|f| ended.contains(&f));
                        if of_session && (itself || !held.contains(tag.as_str())) {
                            return Err(format!(
                                "step {}: {} on c{} (w{}) was handed {tag}, of the session c{} signed out at step {} ({:?})",
                                later.step, later.what, m.label, m.worker, call.label, call.step, reply.outcome
                            ));
                        }
                    }
                }
                // Its API calls after the sign-out ended, outside calls begun before it.
                let busy_before = |at: u64| {
                    self.live.calls.iter().any(|c| {
                        c.client == o
                            && c.sent_us <= from
                            && c.reply.as_ref().is_none_or(|r| r.ended_us >= at)
                    })
                };
                for e in self
                    .journal
                    .iter()
                    .filter(|e| e.at_us > from && e.at_us < until)
                {
                    let mine = Self::label_of(e) == Some(m.label);
                    match &e.event {
                        Event::Resource {
                            token: Some(tag),
                            family: Some(f),
                            ..
                        } if mine
                            && Self::pid_of(e) == Some(pid)
                            && ended.contains(f)
                            && !held.contains(tag.as_str())
                            && !busy_before(e.at_us) =>
                        {
                            return Err(format!(
                                "#{}: c{} (w{}) sent {tag}, of the session c{} signed out at step {}, which it did not hold",
                                e.seq, m.label, m.worker, call.label, call.step
                            ));
                        }
                        Event::Token {
                            family: Some(f),
                            outcome: TokenOutcome::Issued,
                            ..
                        } if mine
                            && ended.contains(f)
                            && !busy_before(e.at_us)
                            && !(self.live.store == StoreKind::Memory
                                && forked.contains(&m.label)) =>
                        {
                            return Err(format!(
                                "#{}: a token of the session c{} signed out at step {} was issued to c{}",
                                e.seq, call.label, call.step, m.label
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Invariant 8: Every call a rotation hook made to its own client from inside the
    /// renewal returned at once (within [`REENTRY_AT_ONCE_US`]), and either with a
    /// `Config` error (the call would have waited for the renewal it runs in) or, when
    /// the client still had a fresh token cached (a renewal `refresh()` forces, or one
    /// ahead of expiry), with that token: one issued to the client's own subject before
    /// the hook ran, that this client already held, and not the renewal's new one.
    fn reentry_refused_at_once(&self) -> Result<(), String> {
        let issued = self.issued();
        let issued_at: HashMap<&str, u64> = self
            .journal
            .iter()
            .filter_map(|e| match &e.event {
                Event::Token {
                    access: Some(a), ..
                } => Some((a.as_str(), e.at_us)),
                Event::Session { access, .. } => Some((access.as_str(), e.at_us)),
                _ => None,
            })
            .collect();
        for call in &self.live.calls {
            let Some(reply) = &call.reply else { continue };
            let sub = self.live.clients[call.client].kind.sub();
            for r in &reply.reentries {
                let held = |tag: &str| {
                    self.live.calls.iter().any(|c| {
                        c.label == call.label
                            && c.reply.as_ref().is_some_and(|cr| {
                                cr.started_us < r.started_us
                                    && matches!(&cr.outcome, Outcome::Token(t) if t == tag)
                            })
                    }) || self.journal.iter().any(|e| {
                        e.at_us < r.started_us
                            && Self::label_of(e) == Some(call.label)
                            && matches!(&e.event, Event::Resource { token: Some(t), .. } if t == tag)
                    })
                };
                let fine = match (r.result.as_str(), r.token.as_deref()) {
                    ("config", None) => true,
                    ("token", Some(tag)) => {
                        issued.get(tag).and_then(|&(s, _)| s) == Some(sub)
                            && issued_at.get(tag).is_some_and(|&at| at < r.started_us)
                            && held(tag)
                    }
                    _ => false,
                };
                if !fine || r.took_us >= REENTRY_AT_ONCE_US {
                    return Err(format!(
                        "step {}: during {} on c{}, its rotation hook's token() returned {:?} ({:?}) after {:.3} s",
                        call.step,
                        call.what,
                        call.label,
                        r.result,
                        r.token,
                        r.took_us as f64 / 1e6
                    ));
                }
            }
        }
        Ok(())
    }

    /// Invariant 9: With DPoP, the provider refuses no proof — none invalid (a key other
    /// than the token's: a session adopted from the store without its key), none
    /// replayed (a `jti` sent twice, by a process or its forked copy), none missing, no
    /// refresh token presented without the key it is bound to — and every token it
    /// issues is bound. Nonce demands are answered, not refusals.
    fn dpop_proofs_accepted(&self) -> Result<(), String> {
        if self.live.dpop == DpopMode::Off {
            return Ok(());
        }
        for e in self.journal.iter().filter(|e| !Self::by_stranger(e)) {
            if let Event::Resource {
                outcome: outcome @ (ResourceOutcome::ProofRefused | ResourceOutcome::SchemeMismatch),
                ..
            } = &e.event
            {
                return Err(format!(
                    "#{} {}: the API answered {outcome:?}",
                    e.seq,
                    e.label.as_deref().unwrap_or("-")
                ));
            }
            if let Event::Token {
                error: Some(error), ..
            } = &e.event
            {
                if error == "invalid_dpop_proof" {
                    return Err(format!(
                        "#{} {}: the token endpoint answered invalid_dpop_proof",
                        e.seq,
                        e.label.as_deref().unwrap_or("-")
                    ));
                }
            }
        }
        let c = self.live.server.counters();
        let refused = [
            ("invalid", c.dpop_proofs_rejected),
            ("replayed", c.dpop_replays_rejected),
            ("missing", c.dpop_proofs_missing),
            (
                "refresh token without its key",
                c.dpop_refresh_binding_refused,
            ),
        ];
        if let Some((what, n)) = refused.iter().find(|(_, n)| *n > 0) {
            return Err(format!("{n} DPoP proof(s) refused: {what}; {c:?}"));
        }
        // Every token the token endpoint issued (the sign-ins the controller starts are
        // made by the provider without a client, and are not counted here), as the
        // journal read with the rest tells it: the counters are read later, and a
        // renewal in the background may have been answered in between.
        let (mut issued, mut bound) = (0, 0);
        for e in &self.journal {
            if let Event::Token {
                outcome: TokenOutcome::Issued,
                jkt,
                ..
            } = &e.event
            {
                issued += 1;
                bound += usize::from(jkt.is_some());
            }
        }
        if bound != issued {
            return Err(format!(
                "the token endpoint issued {issued} tokens, {bound} of them DPoP-bound"
            ));
        }
        Ok(())
    }

    /// Invariant 10: No client assertion is presented twice (the issuer writes a fresh
    /// one before every call of a workload client, and the file is read for every
    /// request: a value kept from an earlier read would be a second presentation), and
    /// none after its `exp` (an expired one is refused before it is sent).
    fn assertions_once_and_alive(&self) -> Result<(), String> {
        let c = self.live.server.counters();
        if c.assertions_resent > 0 || c.assertions_expired > 0 {
            return Err(format!(
                "{} assertion(s) presented again, {} after their exp",
                c.assertions_resent, c.assertions_expired
            ));
        }
        Ok(())
    }

    /// Invariant 11: A call through an exchange client sends at most one exchange that
    /// is refused (a revoked or dead subject token: the subject client is told, renews,
    /// and the exchange is sent once more), and its subject renews at most once after
    /// that refusal — unless faults were injected, or another call of the subject (or
    /// of a copy of either, after a fork) was in flight and may have renewed it.
    fn one_refused_exchange_per_revoked_subject(&self) -> Result<(), String> {
        let requests = self.token_requests();
        for call in &self.live.calls {
            let Some(subject) = self.subject_of(call.client) else {
                continue;
            };
            let Some(reply) = &call.reply else { continue };
            let (from, to) = (reply.started_us, reply.ended_us);
            let subject_label = self.live.clients[subject].label;
            let in_window = |r: &&TokenRequest<'_>| r.received_us >= from && r.event.at_us <= to;
            let refused: Vec<&TokenRequest<'_>> = requests
                .iter()
                .filter(in_window)
                .filter(|r| {
                    Self::label_of(r.event) == Some(call.label)
                        && r.outcome == TokenOutcome::Refused
                })
                .collect();
            let Some(first) = refused.first() else {
                continue;
            };
            let injected = requests.iter().filter(in_window).any(|r| r.injected);
            let busy = self.live.calls.iter().any(|other| {
                !std::ptr::eq(other, call)
                    && (other.label == subject_label || other.label == call.label)
                    && other.sent_us <= to
                    && other.reply.as_ref().is_none_or(|r| r.ended_us >= from)
            });
            if injected || busy {
                continue;
            }
            if refused.len() > 1 {
                return Err(format!(
                    "step {}: {} on c{} sent {} exchanges that were refused",
                    call.step,
                    call.what,
                    call.label,
                    refused.len()
                ));
            }
            let renewals = requests
                .iter()
                .filter(in_window)
                .filter(|r| {
                    Self::label_of(r.event) == Some(subject_label)
                        && r.received_us >= first.event.at_us
                        && r.outcome == TokenOutcome::Issued
                })
                .count();
            if renewals > 1 {
                return Err(format!(
                    "step {}: {} on c{} met a refused exchange; its subject c{subject_label} renewed {renewals} times",
                    call.step, call.what, call.label
                ));
            }
        }
        Ok(())
    }

    /// Invariant 12: A certificate-bound token reaches the API only with its certificate.
    /// The API refuses no client's request for a certificate mismatch: the only such
    /// refusals are those of strangers (`Present`), and each presentation of a token
    /// bound to a certificate the stranger does not hold is refused (one with the token's
    /// certificate, or of an unbound token, is not refused for a mismatch). Every token a
    /// mutual-TLS client is handed is bound to its own certificate; every token another
    /// client is handed, to none.
    fn bound_tokens_stay_with_their_certificate(&self) -> Result<(), String> {
        if let Some(e) = self.journal.iter().find(|e| {
            !Self::by_stranger(e)
                && matches!(
                    e.event,
                    Event::Resource {
                        outcome: ResourceOutcome::CertificateMismatch,
                        ..
                    }
                )
        }) {
            return Err(format!(
                "#{}: the API refused a call of {} for a certificate mismatch",
                e.seq,
                e.label.as_deref().unwrap_or("-")
            ));
        }
        let bound = self.bound_to();
        let x5t_of = |n: u8| self.live.certificates[usize::from(n)].x5t.as_str();
        for call in self.live.calls.iter().filter(|c| c.what == "present") {
            let Some(reply) = &call.reply else { continue };
            let stranger = format!("x{}@{}", call.label, call.pid);
            let Some((token, outcome)) = self
                .journal
                .iter()
                .filter(|e| e.at_us >= reply.started_us && e.at_us <= reply.ended_us)
                .filter(|e| e.label.as_deref() == Some(stranger.as_str()))
                .find_map(|e| match &e.event {
                    Event::Resource { token, outcome, .. } => Some((token.as_deref(), *outcome)),
                    _ => None,
                })
            else {
                // The API journals every request it accepts: an accepted presentation
                // it did not journal cannot be judged, and is not let pass.
                if let Outcome::Response { status: 200, .. } = reply.outcome {
                    return Err(format!(
                        "step {}: a stranger's presentation of c{}'s token was accepted and the API journaled no request of {stranger}",
                        call.step, call.label
                    ));
                }
                continue;
            };
            let token_x5t = token.and_then(|t| bound.get(t).copied().flatten());
            let holder_x5t = call.holder.map(x5t_of);
            let mismatch = outcome == ResourceOutcome::CertificateMismatch;
            let wrong = match token_x5t {
                Some(x5t) if holder_x5t != Some(x5t) => outcome == ResourceOutcome::Accepted,
                _ => mismatch,
            };
            if wrong {
                return Err(format!(
                    "step {}: a stranger holding certificate {:?} presented c{}'s token {token:?} (bound to {token_x5t:?}) and the API answered {outcome:?}",
                    call.step, call.holder, call.label
                ));
            }
        }
        for call in &self.live.calls {
            let Some(Outcome::Token(tag)) = call.reply.as_ref().map(|r| &r.outcome) else {
                continue;
            };
            let Some(&token_x5t) = bound.get(tag.as_str()) else {
                continue;
            };
            let own = self.live.clients[call.client]
                .kind
                .certificate()
                .map(x5t_of);
            if token_x5t != own {
                return Err(format!(
                    "step {}: {} on c{} (certificate {own:?}) was handed {tag}, bound to certificate {token_x5t:?}",
                    call.step, call.what, call.label
                ));
            }
        }
        Ok(())
    }

    /// Invariant 13: Clients with different certificates never share a store record.
    /// Every record saved with a certificate-bound token is filed under a key that names
    /// the certificate's thumbprint; no key holds tokens bound to two certificates (or
    /// one bound and one not); no key holds a byte of a certificate's private key (as a
    /// run of 16 characters of its PEM body).
    fn records_keyed_by_certificate(&self) -> Result<(), String> {
        let bound = self.bound_to();
        let saves = self.live.saves.lock().clone();
        let mut held: HashMap<&str, (Option<&str>, &str)> = HashMap::new();
        for save in &saves {
            // A tombstone or a token the journal does not name says nothing here.
            let Some(&x5t) = bound.get(save.access.as_str()) else {
                continue;
            };
            if let Some(x5t) = x5t {
                if !save.key.contains(&format!("x5t#S256={x5t}")) {
                    return Err(format!(
                        "a token bound to certificate {x5t} ({}) was saved under the key {:?}, which does not name it",
                        save.access, save.key
                    ));
                }
            }
            match held.get(save.key.as_str()) {
                Some(&(other, tag)) if other != x5t => {
                    return Err(format!(
                        "the store key {:?} held {tag} (bound to {other:?}), then {} (bound to {x5t:?})",
                        save.key, save.access
                    ));
                }
                Some(_) => {}
                None => {
                    held.insert(&save.key, (x5t, &save.access));
                }
            }
        }
        for cert in &self.live.certificates {
            let body: String = cert
                .key_pem
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect();
            for key in held.keys() {
                let leaked = key.contains("PRIVATE KEY")
                    || body
                        .as_bytes()
                        .windows(16)
                        .step_by(8)
                        .any(|w| key.contains(std::str::from_utf8(w).unwrap_or("\0")));
                if leaked {
                    return Err(format!(
                        "the store key {key:?} holds part of a client certificate's private key"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Invariant 6: An API call that met a revoked token renews once after that, not more
    /// (unless injected failures made it try again).
    fn one_renewal_per_revocation(&self) -> Result<(), String> {
        let requests = self.token_requests();
        for call in self.live.calls.iter().filter(|c| c.what == "get") {
            let Some(reply) = &call.reply else { continue };
            let (from, to) = (reply.started_us, reply.ended_us);
            // When the API first refused a revoked token to this client in this call's
            // window: renewals before it (the call's first token, or a concurrent
            // call's) are not the revocation's cost.
            let met_revoked = self
                .journal
                .iter()
                .filter(|e| {
                    e.at_us >= from
                        && e.at_us <= to
                        && Self::label_of(e) == Some(call.label)
                        && Self::pid_of(e) == Some(call.pid)
                        && matches!(
                            e.event,
                            Event::Resource {
                                outcome: ResourceOutcome::Revoked,
                                ..
                            }
                        )
                })
                .map(|e| e.at_us)
                .min();
            let Some(revoked_at) = met_revoked else {
                continue;
            };
            let mine: Vec<&TokenRequest<'_>> = requests
                .iter()
                .filter(|r| {
                    Self::label_of(r.event) == Some(call.label)
                        && r.received_us >= revoked_at
                        && r.event.at_us <= to
                })
                .collect();
            if mine.iter().any(|r| r.injected) {
                continue;
            }
            let renewals = mine
                .iter()
                .filter(|r| r.outcome == TokenOutcome::Issued)
                .count();
            if renewals > 1 {
                return Err(format!(
                    "step {}: get on c{} met a revoked token and renewed {renewals} times",
                    call.step, call.label
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------

prop_state_machine! {
    #![proptest_config(config())]

    /// Clients in several processes, each process with a `MemoryStore` of its own.
    #[test]
    fn memory_store(sequential 1..14 => Composition<Memory>);

    /// Clients in several processes sharing a `FileStore` directory.
    #[test]
    fn file_store(sequential 1..14 => Composition<File>);

    /// Clients in several processes sharing a real `redis-server`.
    #[test]
    fn redis_store(sequential 1..14 => Composition<RedisFlavor>);
}

/// Replays one sequence (a minimal case found earlier) against `S`.
fn replay<S: Flavor>(lifetime_secs: u64, clients: &[(usize, Kind)], ops: Vec<Op>) {
    replay_reentrant::<S>(lifetime_secs, clients, &[], ops);
}

/// [`replay`], with the initial clients numbered in `reentrant` made reentrant.
fn replay_reentrant<S: Flavor>(
    lifetime_secs: u64,
    clients: &[(usize, Kind)],
    reentrant: &[usize],
    ops: Vec<Op>,
) {
    replay_dpop::<S>(DpopMode::Off, lifetime_secs, clients, reentrant, ops);
}

/// [`replay_reentrant`] in a DPoP mode.
fn replay_dpop<S: Flavor>(
    dpop: DpopMode,
    lifetime_secs: u64,
    clients: &[(usize, Kind)],
    reentrant: &[usize],
    ops: Vec<Op>,
) {
    REPLAYING.with(|r| r.set(true));
    let mut model = Model::new(S::KIND, lifetime_secs, clients);
    model.dpop = dpop;
    for &c in reentrant {
        model.clients[c].reentrant = true;
    }
    let mut reference = model.clone();
    for op in &ops {
        assert!(
            <Reference<S> as ReferenceStateMachine>::preconditions(&reference, op),
            "not a valid sequence at {op:?}"
        );
        reference = <Reference<S> as ReferenceStateMachine>::apply(reference, op);
    }
    Composition::<S>::test_sequential(Config::default(), model, ops, None);
}

use Kind::{Mtls, Service, User, Workload};

/// Invariant 2 (found by `memory_store`): two users' refresh-token clients in one
/// process share one store entry (the store key names the client, not the user), so
/// bob's `refresh()` hands him alice's token.
#[test]
fn regression_two_users_in_one_store_see_each_others_tokens() {
    replay::<Memory>(
        5,
        &[(0, User(0)), (1, User(0)), (1, User(1))],
        vec![
            Op::Token { c: 1, bg: false },
            Op::Refresh { c: 2, bg: false },
        ],
    );
}

/// Invariant 5 (found by `memory_store`): the provider revoked the access token; the
/// API answers 401; the client drops the token and renews through the store — which
/// hands back the very token that was just rejected (still "fresh" by its expiry), so
/// the resend gets 401 too and the caller gets a 401 although nothing is wrong with
/// the grant. (Found as `Token c3, Get c3 in the background, RevokeAccess c3`; replayed
/// here in the order that race took.)
#[test]
fn regression_a_store_undoes_recovery_from_a_401() {
    replay::<Memory>(
        3600,
        &[(0, User(0)), (1, User(0)), (1, User(0))],
        vec![
            Op::Token { c: 0, bg: false },
            Op::RevokeAccess { c: 0 },
            Op::Get { c: 0, bg: false },
        ],
    );
}

/// Invariant 1 (found by `file_store` and `memory_store`): a refused refresh token is
/// sent again. The user revoked the application's access at the provider; the next
/// call's renewal is refused (`ReauthenticationRequired`, right), and the call after
/// that presents the same dead refresh token once more.
#[test]
fn regression_a_refused_refresh_token_is_sent_twice() {
    replay::<File>(
        5,
        &[(0, User(0)), (1, User(0)), (0, User(0))],
        vec![
            Op::RevokeGrant { user: 0 },
            Op::Get { c: 0, bg: false },
            Op::Get { c: 0, bg: false },
        ],
    );
}

/// Invariant 1 (found by `memory_store`): the same through an injected refusal of a
/// forced renewal.
#[test]
fn regression_a_refusal_then_a_call_sends_the_refused_token_again() {
    replay::<Memory>(
        5,
        &[(0, User(0)), (1, User(0)), (0, User(0))],
        vec![
            Op::Refuse,
            Op::Refresh { c: 2, bg: false },
            Op::Get { c: 2, bg: false },
        ],
    );
}

/// Invariant 4 (found by `redis_store`): alice signed in twice, in two processes
/// sharing Redis. c0's call stores its session; c1's `revoke()` revokes the stored
/// session (c0's) and forgets its own, which stays valid at the provider: a live
/// refresh token nobody holds any more.
#[test]
fn regression_revoke_leaves_the_clients_own_grant_alive() {
    replay::<RedisFlavor>(
        5,
        &[(0, User(0)), (1, User(0)), (0, User(0))],
        vec![Op::Get { c: 0, bg: false }, Op::Revoke { c: 1 }],
    );
}

/// Invariants 4 and 5 (found by `memory_store`): worker 0 forks while c0 renews; the
/// child's copy of c0 (client 3) revokes: the child inherited the store's lock held by
/// the parent's renewal, waits for it until its deadline (`Timeout`, no fault), and
/// revokes nothing at the provider.
#[test]
fn regression_a_fork_mid_renewal_keeps_the_lock_and_revoke_revokes_nothing() {
    replay::<Memory>(
        5,
        &[(0, User(0)), (1, User(0)), (1, User(0))],
        vec![Op::Fork { w: 0, mid: Some(0) }, Op::Revoke { c: 3 }],
    );
}

/// Invariant 5 (found by `file_store`): worker 1 forks while c1 renews holding the
/// `FileStore` lock; the child inherits the lock file's descriptor, so the lock stays
/// held after the parent's renewal ends, for as long as the child lives: every other
/// process's renewal waits until its deadline (`Timeout`), call after call.
#[test]
fn regression_a_fork_mid_renewal_keeps_the_file_lock_in_the_child() {
    replay::<File>(
        5,
        &[(0, User(0)), (1, User(0)), (0, Service)],
        vec![
            Op::NewClient {
                w: 0,
                kind: User(0),
                reentrant: false,
            },
            Op::Fork { w: 1, mid: Some(1) },
            Op::Get { c: 3, bg: false },
            Op::Get { c: 3, bg: false },
        ],
    );
}

/// Invariant 5 (found by `file_store` after the explicit unlock): worker 0 forks while
/// c0 renews holding the `FileStore` lock, then the parent is killed before it releases
/// it: the child's inherited copy of the lock file kept the lock for as long as the
/// child lived, and the child's own renewals timed out call after call.
#[test]
fn regression_a_fork_then_a_killed_parent_leaves_the_file_lock_to_the_child() {
    replay::<File>(
        5,
        &[(0, User(2)), (1, Service), (0, User(1))],
        vec![
            Op::Get { c: 1, bg: false },
            Op::Token { c: 1, bg: false },
            Op::Kill { w: 1, mid: None },
            Op::RevokeAccess { c: 2 },
            Op::Fork { w: 0, mid: Some(0) },
            Op::Get { c: 2, bg: false },
            Op::Get { c: 3, bg: true },
            Op::Kill { w: 0, mid: None },
            Op::Get { c: 3, bg: false },
            Op::Get { c: 3, bg: false },
            Op::Get { c: 3, bg: false },
        ],
    );
}

/// Invariant 1 (found by an hour-long `file_store` run): worker 0 forks while c0 renews
/// (the child holds the refresh token the parent is rotating); c2, another sign-in of
/// the same user in the parent, then saved its session over c0's record, whose lineage
/// named the rotated token — so the child took its copy for a token the store never saw
/// and sent it again (reuse: the family was revoked). A new record now names the
/// session it supersedes.
#[test]
fn regression_another_session_of_the_user_hid_a_rotation_from_a_forked_child() {
    replay::<File>(
        5,
        &[(0, User(0)), (1, User(0)), (0, User(0))],
        vec![
            Op::Fork { w: 0, mid: Some(0) },
            Op::Get { c: 2, bg: false },
            Op::Token { c: 3, bg: false },
        ],
    );
}

/// The worker process (run by the tests above, never on its own).
#[test]
#[ignore = "the composition test's worker process; the composition tests run it"]
fn composition_worker() {
    if let Ok(config) = std::env::var(worker::WORKER_ENV) {
        worker::main(&config);
    }
}

/// Invariant 4 in the model (found by `memory_store`): worker 0 forks, then c0 gets a
/// token in worker 0; c0's copy in the child (c3, same label) revokes with nothing of
/// it: a memory store is each process's own, so that token was never the child's to
/// revoke. The model no longer credits a token request to a process it cannot tell.
#[test]
fn a_forked_copy_revoking_is_not_charged_with_its_parents_token() {
    replay::<Memory>(
        3600,
        &[(0, Service), (1, User(0)), (0, User(0))],
        vec![
            Op::Fork { w: 0, mid: None },
            Op::Get { c: 0, bg: false },
            Op::Revoke { c: 3 },
        ],
    );
}

/// Invariant 8 as first written, "never a token" (found by `file_store`): c1's rotation
/// hook calls `token()` on c1 from inside the renewal `refresh()` forces while c1's token
/// is still fresh, and gets that cached token at once rather than a `Config` error: the
/// re-entry rule refuses only calls that would wait for the renewal. Kept to hold that
/// case to the invariant as it now reads (at once; the cached token, not the new one).
#[test]
fn regression_a_hook_in_a_forced_refresh_gets_the_cached_token() {
    replay_reentrant::<File>(
        5,
        &[(0, Service), (1, User(2)), (0, User(2))],
        &[1],
        vec![
            Op::Token { c: 1, bg: false },
            Op::Refresh { c: 1, bg: false },
        ],
    );
}

/// Invariant 7, a fixed case: alice signed in twice; c1 (worker 1) stores its session,
/// then c0 (worker 0) stores its own, which supersedes c1's there. c0 signs out; c1, whose
/// next renewal would adopt the stored session, must not be served a token of it, and c0
/// must not serve one either.
#[test]
fn sign_out_ends_the_session_for_another_process() {
    replay::<File>(
        3600,
        &[(0, User(0)), (1, User(0)), (0, Service)],
        vec![
            Op::Token { c: 1, bg: false },
            Op::Token { c: 0, bg: false },
            Op::SignOut { c: 0 },
            Op::Invalidate { c: 1 },
            Op::Token { c: 1, bg: false },
            Op::Get { c: 1, bg: false },
            Op::Token { c: 0, bg: false },
        ],
    );
}

/// Invariant 4 (found by `redis_store`): the store fails the save of `revoke()`'s
/// tombstone, so `revoke()` returns a `Store` error after revoking at the provider and
/// forgetting the tokens in the client; the client's next call adopted the live record
/// still in the store and sent the revoked access token, then the revoked refresh token.
/// Now the tombstone is kept as the client's unsaved record, written first under the
/// next lock, and no record it names is adopted meanwhile.
#[test]
fn regression_a_revoke_whose_save_failed_adopts_the_session_back() {
    replay::<File>(
        3600,
        &[(0, User(0)), (1, User(1)), (0, Service)],
        vec![
            Op::Token { c: 0, bg: false },
            Op::SaveFails { w: 0 },
            Op::Revoke { c: 0 },
            Op::Get { c: 0, bg: false },
        ],
    );
}

/// Invariant 5 (found by `file_store`, settled in the model): alice signed in twice; c1
/// stores its session, then c0 stores its own over it (a user's key holds one session).
/// The provider refuses c0's refresh token, which leaves a tombstone for alice's key;
/// c1's next renewal fails with `ReauthenticationRequired` although c1's own refresh
/// token is alive at the provider: by design, the session in the store ended for every
/// client of that user sharing it.
#[test]
fn regression_a_refusal_of_one_sign_in_ends_the_users_other_sign_in() {
    replay::<File>(
        5,
        &[(0, User(0)), (1, User(0)), (0, Service)],
        vec![
            Op::Token { c: 1, bg: false },
            Op::Token { c: 0, bg: false },
            Op::Refuse,
            Op::Refresh { c: 0, bg: false },
            Op::Refresh { c: 1, bg: false },
        ],
    );
}

/// Invariant 1 (found by `file_store` in a long run, with and without DPoP): worker 0
/// has a save failure armed; it is forked while a renewal is in flight, and the child's
/// copy of a client rotates its refresh token, whose save fails (the fork inherited the
/// armed fault): the successor lives only in that child. A second fork of worker 0
/// holds the predecessor and presents it: reuse detected. Not a fault of the client —
/// a failed save is what makes a rotated refresh token the holder's alone (README,
/// `has_unsaved_refresh_token`) — so the model excuses a stale copy after a rotation
/// whose save was made to fail.
#[test]
fn regression_a_rotation_whose_save_failed_leaves_a_forked_copy_stale() {
    for dpop in [DpopMode::Off, DpopMode::Bound] {
        replay_dpop::<File>(
            dpop,
            5,
            &[(0, User(0)), (1, User(0)), (0, User(2))],
            &[0],
            vec![
                Op::SaveFails { w: 0 },
                Op::NewClient {
                    w: 0,
                    kind: User(2),
                    reentrant: false,
                },
                Op::Fork { w: 0, mid: Some(0) },
                Op::Get { c: 6, bg: false },
                Op::Fork { w: 0, mid: Some(2) },
                Op::Token { c: 9, bg: false },
            ],
        );
    }
}

/// Invariant 9, by design: two processes hold sign-ins of the same user in one store,
/// each client with a key of its own (public clients: the provider binds each refresh
/// token to the key it was refreshed with). The second sign-in supersedes the first in
/// the store; the first client then takes the session over from the store (adopts its
/// token, then renews its refresh token) with the key kept with it (its own key would
/// be refused), and sends its API calls with that key's proofs.
#[test]
fn dpop_a_session_taken_over_from_the_store_is_renewed_with_its_key() {
    for dpop in [DpopMode::Bound, DpopMode::Nonces] {
        replay_dpop::<File>(
            dpop,
            3600,
            &[(0, User(0)), (1, User(0)), (1, Service)],
            &[],
            vec![
                Op::Refresh { c: 0, bg: false },
                Op::Refresh { c: 1, bg: false },
                // Adopted from the store (a fresh token), then renewed from it.
                Op::Refresh { c: 0, bg: false },
                Op::Refresh { c: 0, bg: false },
                Op::Get { c: 0, bg: false },
                Op::Refresh { c: 1, bg: false },
                Op::Get { c: 1, bg: false },
                Op::Get { c: 2, bg: false },
            ],
        );
    }
}

/// Invariant 6 (found by `memory_store`, a Bearer case): a background `get` of c2 got the
/// client's first token (a renewal), then met the token revoked by the provider while a
/// second `get` of c2 was in flight, and the one renewal after the 401 served both. The
/// first token's renewal fell in the call's window too and was counted as a second
/// renewal for the revocation: only renewals after the 401 are its cost.
#[test]
fn regression_a_renewal_before_the_401_is_not_the_revocations_cost() {
    replay::<Memory>(
        5,
        &[(0, User(2)), (1, Service), (1, User(2))],
        vec![
            Op::Get { c: 2, bg: true },
            Op::Get { c: 0, bg: true },
            Op::Get { c: 2, bg: false },
            Op::RevokeAccess { c: 2 },
        ],
    );
}

/// Invariants 5 and 10, a fixed case (so that every run asks it): two workload clients
/// in two processes share a `FileStore`; the issuer falls behind (the file holds an
/// expired assertion): a forced renewal fails with a `Config` error and sends nothing,
/// a call served from the store still works; once the file is rewritten, renewals work
/// again, and no assertion reaches the provider twice or expired.
#[test]
fn workload_clients_through_an_expired_assertion() {
    replay::<File>(
        5,
        &[(0, Workload), (1, Workload), (0, User(0))],
        vec![
            Op::Get { c: 0, bg: false },
            Op::Get { c: 1, bg: false },
            Op::ExpireAssertion,
            Op::Refresh { c: 0, bg: false },
            Op::Get { c: 1, bg: false },
            Op::RewriteAssertion,
            Op::Wait { ms: 1500 },
            Op::Refresh { c: 1, bg: false },
            Op::Get { c: 0, bg: false },
            Op::Invalidate { c: 0 },
            Op::Get { c: 0, bg: false },
        ],
    );
}

/// Invariants 2, 5 and 11, a fixed case: an exchange client chained to alice's client.
/// The provider revokes the subject's access token: the next exchange is refused once,
/// the subject renews once, the exchange is sent again in the same call. Then alice
/// revokes the application's access: the exchange client's next renewal fails because
/// its subject's grant ended, and nothing reaches the API as anyone else.
#[test]
fn an_exchange_client_through_a_revoked_subject_and_a_revoked_grant() {
    replay::<Memory>(
        3600,
        &[(0, User(0)), (1, Service), (0, User(1))],
        vec![
            Op::Token { c: 0, bg: false },
            Op::NewExchange { w: 0, subject: 0 },
            Op::Get { c: 3, bg: false },
            Op::RevokeAccess { c: 0 },
            Op::Refresh { c: 3, bg: false },
            Op::Get { c: 3, bg: false },
            Op::RevokeGrant { user: 0 },
            Op::Refresh { c: 3, bg: false },
            Op::Get { c: 3, bg: false },
            Op::Get { c: 2, bg: false },
        ],
    );
}

/// Invariants 12 and 13, a fixed case: three mutual-TLS clients of one client id, each
/// with a certificate of its own (two issued by the provider's CA with one subject, one
/// self-signed), in two processes sharing a `FileStore`, next to a client-credentials
/// client with a secret. Each is handed only tokens bound to its own certificate, each
/// certificate's tokens have a record of their own, and a client with the same
/// certificate in another process shares that one. Strangers holding another
/// certificate, or none, are refused the token at the API; one holding the same
/// certificate is not. The provider revokes a token (401 at the API, one renewal), a
/// save fails, a worker forks mid-renewal, a client revokes its own grant.
#[test]
fn mtls_clients_with_three_certificates_of_one_client_id_in_one_store() {
    replay::<File>(
        3600,
        &[(0, Mtls(0)), (1, Mtls(1)), (0, Mtls(2))],
        vec![
            Op::Get { c: 0, bg: false },
            Op::Get { c: 1, bg: false },
            Op::Get { c: 2, bg: false },
            Op::Present {
                c: 0,
                holder: Some(1),
            },
            Op::Present { c: 0, holder: None },
            Op::Present {
                c: 0,
                holder: Some(0),
            },
            Op::Present {
                c: 2,
                holder: Some(0),
            },
            Op::RevokeAccess { c: 1 },
            Op::Get { c: 1, bg: false },
            Op::NewClient {
                w: 1,
                kind: Mtls(0),
                reentrant: false,
            },
            Op::Token { c: 3, bg: false },
            Op::Get { c: 3, bg: false },
            Op::NewClient {
                w: 0,
                kind: Service,
                reentrant: false,
            },
            Op::Get { c: 4, bg: false },
            Op::Fork { w: 0, mid: Some(0) },
            Op::Get { c: 5, bg: false },
            Op::Get { c: 7, bg: false },
            Op::SaveFails { w: 1 },
            Op::Refresh { c: 1, bg: false },
            Op::Get { c: 1, bg: false },
            Op::Revoke { c: 2 },
            Op::Get { c: 2, bg: false },
        ],
    );
}

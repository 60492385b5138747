//! The token cache: one mutex over the state, single-flight renewal, renew-ahead,
//! backoff after failure, invalidation by identity, and a lock-free published copy of
//! the current token for readers. No I/O happens under the lock.
//!
//! Fork safety: the state lives in a [`Core`] stamped with the process id and fork
//! generation. A child
//! process that finds its parent's core (a renewal "in flight" whose leader does not
//! exist in the child, or a lock held by a parent thread at the moment of the fork)
//! starts a new core from the published token and refresh token.
//!
//! Re-entry: a renewal runs user code on its leader's thread (events, hooks, stores). A
//! call into the same cache from there that would wait for that very renewal is refused
//! at once ([`reentered`]): the renewal cannot finish before that call returns.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::clock::Deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{self, event};
use crate::fork::Stamp;
use crate::options::MAX_DURATION;
use crate::secret::Secret;
use crate::stats::{count_own, Counters, HitCounter, Reason};
use crate::store::Renewal;
use crate::token::{Freshness, Token};

/// The longest a renewal (its store lock and its token requests) may take, whatever
/// the caller's own deadline: a long upload's timeout must not become a fleet-wide
/// stall behind a dead provider.
pub(crate) const RENEWAL_BUDGET: Duration = Duration::from_secs(30);

/// How long a renewal ahead of expiry that found the store busy waits before trying
/// the store's lock again (meanwhile the still-valid token is served).
const AHEAD_RETRY: Duration = Duration::from_millis(250);

/// How long past its leader's deadline a waiter still waits for the leader's outcome:
/// the leader needs a moment to hand it over after its last attempt ends.
const WAIT_MARGIN: Duration = Duration::from_secs(1);

/// Backoff and waiting policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub wait_timeout: Option<Duration>,
}

impl Policy {
    /// The pause after the `n`th consecutive failure (n ≥ 1) of some kind: none after
    /// the first, then `backoff`, doubling up to `max_backoff`.
    fn pause_after(&self, n: u32) -> Option<Duration> {
        let doublings = n.checked_sub(2)?;
        Some(
            self.backoff
                .saturating_mul(1u32 << doublings.min(20))
                .min(self.max_backoff),
        )
    }
}

/// A renewal in progress.
#[derive(Debug, Clone, Copy)]
struct Flight {
    seq: u64,
    /// Unique in the process (and past a fork): names the flight in its leader
    /// thread's [`LEADING`].
    id: u64,
    /// Why it renews.
    reason: Reason,
    /// The leader gives up by then; waiters wait no longer than that (plus a margin).
    deadline: Instant,
}

struct State {
    current: Option<Arc<Token>>,
    refresh_token: Option<Secret>,
    flight: Option<Flight>,
    next_seq: u64,
    /// Sequence number and outcome of the last renewal that finished.
    last: Option<(u64, Result<Arc<Token>>)>,
    backoff_until: Option<Instant>,
    failures: u32,
    /// The next renewal replaces a token an API rejected.
    renewing_after_rejection: bool,
    /// The current token replaced a token an API rejected…
    current_after_rejection: bool,
    /// …when it was obtained…
    current_since: Instant,
    /// …and has been rejected itself (counted in `rejections`).
    current_rejected: bool,
    /// Consecutive rejections of tokens obtained after a rejection.
    rejections: u32,
    reject_until: Option<Instant>,
    /// A token was held at some point (renewals after that are not `initial`).
    obtained: bool,
    /// The token an API rejected, until the renewal that replaces it (which must not
    /// adopt a stored copy of it).
    rejected: Option<Arc<Token>>,
    /// A renewal ahead of expiry found the store busy: none is tried again before then.
    ahead_busy_until: Option<Instant>,
    /// Tokens of renewals that finished after a revocation began, for it to revoke too.
    orphans: Vec<Arc<Token>>,
}

impl State {
    fn new(current: Option<Arc<Token>>, refresh_token: Option<Secret>) -> Self {
        State {
            obtained: current.is_some(),
            current,
            refresh_token,
            flight: None,
            next_seq: 1,
            last: None,
            backoff_until: None,
            failures: 0,
            renewing_after_rejection: false,
            current_after_rejection: false,
            current_since: Instant::now(),
            current_rejected: false,
            rejections: 0,
            reject_until: None,
            rejected: None,
            ahead_busy_until: None,
            orphans: Vec::new(),
        }
    }

    fn in_backoff(&self, now: Instant) -> bool {
        self.backoff_until.is_some_and(|until| now < until)
    }

    /// The last renewal's failure, if the backoff it started still holds.
    fn failure_in_backoff(&self, now: Instant) -> Option<Error> {
        match &self.last {
            Some((_, Err(e))) if self.in_backoff(now) => Some(e.clone()),
            _ => None,
        }
    }

    /// The token a renewal for `reason` replaces.
    fn replacing(&self, reason: Reason) -> Option<Arc<Token>> {
        match reason {
            Reason::Rejected | Reason::Forced if self.current.is_none() => self.rejected.clone(),
            Reason::Rejected => self.rejected.clone().or_else(|| self.current.clone()),
            _ => self.current.clone(),
        }
    }

    fn ahead_busy(&self, now: Instant) -> bool {
        self.ahead_busy_until.is_some_and(|until| now < until)
    }

    fn begin_flight(&mut self, deadline: Deadline, reason: Reason) -> Flight {
        let seq = self.next_seq;
        self.next_seq += 1;
        let flight = Flight {
            seq,
            id: NEXT_FLIGHT.fetch_add(1, Ordering::Relaxed),
            reason,
            deadline: deadline.instant(),
        };
        self.flight = Some(flight);
        flight
    }
}

/// Ids of flights, never reused in a process; a child after `fork()` goes on counting
/// from its parent's number, so no flight of its own has the id of one its threads
/// still list as led in the parent.
static NEXT_FLIGHT: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The flights this thread leads: more than one when user code run by one client's
    /// renewal (an event, a hook) uses another client.
    static LEADING: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Marks this thread as the leader of a flight until dropped (also when the renewal
/// unwinds).
struct Leading(u64);

impl Leading {
    fn enter(id: u64) -> Leading {
        let _ = LEADING.try_with(|l| {
            if let Ok(mut l) = l.try_borrow_mut() {
                l.push(id);
            }
        });
        Leading(id)
    }

    /// Whether this thread leads flight `id`.
    fn here(id: u64) -> bool {
        LEADING
            .try_with(|l| l.try_borrow().is_ok_and(|l| l.contains(&id)))
            .unwrap_or(false)
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        let _ = LEADING.try_with(|l| {
            if let Ok(mut l) = l.try_borrow_mut() {
                if let Some(i) = l.iter().rposition(|id| *id == self.0) {
                    l.remove(i);
                }
            }
        });
    }
}

/// The answer to a call that would wait for a renewal led by its own thread: from
/// inside that renewal's user code (an event handler or log callback, a hook, a store),
/// which that renewal waits for in turn.
pub(crate) fn reentered() -> Error {
    Error::config(
        "called from inside an event (or hook, or store call) of this client's own token \
         renewal, on the thread that runs it: that renewal cannot finish before this call \
         returns, so the call is refused; use the client outside its own events and hooks",
    )
}

/// The mutable state of one process.
struct Core {
    stamp: Stamp,
    state: Mutex<State>,
    done: Condvar,
}

impl Core {
    fn new(state: State) -> Self {
        Core {
            stamp: Stamp::current(),
            state: Mutex::new(state),
            done: Condvar::new(),
        }
    }
}

/// What readers see without taking the lock; replaced under the lock on every change.
#[derive(Default)]
struct Published {
    token: Option<Arc<Token>>,
    refresh_token: Option<Secret>,
}

/// What [`Cache::reject`] did with a token an API refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// It was the cached token and is gone: the next call renews.
    Dropped,
    /// The cache already holds another token (or none): sending again may help.
    AlreadyReplaced,
    /// Kept: it replaced a token that was rejected too, so a new one would not help
    /// before the backoff ends.
    Kept,
}

/// The token cache.
pub(crate) struct Cache {
    published: ArcSwap<Published>,
    /// Bumped after every publication: a thread's own copy of the token is current while
    /// it carries the same number.
    generation: AtomicU64,
    /// Names this cache in threads' copies.
    id: u64,
    core: ArcSwap<Core>,
    policy: Policy,
    counters: Arc<Counters>,
    /// Bumped by every revocation (under the state lock): a renewal that started before
    /// cannot bring tokens back after it, nor save them as live.
    revocations: AtomicU64,
}

/// Ids of caches, never reused.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);
/// Caches whose token a thread keeps its own copy of (the least recently refreshed is
/// dropped first).
const THREAD_COPIES: usize = 4;

/// A thread's own copy of a cache's published token. Readers on different cores then
/// share no written cache line: the published cell and the token's reference count are
/// touched once per token per thread, not once per call.
struct ThreadCopy {
    cache: u64,
    generation: u64,
    token: Arc<Token>,
    /// This thread's cache hits for this cache.
    hits: HitCounter,
}

thread_local! {
    static COPIES: std::cell::RefCell<Vec<ThreadCopy>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Completes its flight with an error if the renewal unwinds, so waiters never hang.
struct FlightGuard<'a> {
    cache: &'a Cache,
    core: &'a Core,
    seq: u64,
    armed: bool,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let epoch = self.cache.revocations.load(Ordering::Acquire);
            let _ = self.cache.complete(
                self.core,
                self.seq,
                epoch,
                false,
                Err(Error::Transport {
                    message: "token renewal was aborted by a panic".into(),
                    source: None,
                }),
            );
        }
    }
}

impl Cache {
    pub(crate) fn new(
        policy: Policy,
        initial: Option<Token>,
        refresh_token: Option<Secret>,
        counters: Arc<Counters>,
    ) -> Self {
        let refresh_token = initial
            .as_ref()
            .and_then(|t| t.refresh_token().cloned())
            .or(refresh_token);
        let current = initial.map(Arc::new);
        Cache {
            published: ArcSwap::from_pointee(Published {
                token: current.clone(),
                refresh_token: refresh_token.clone(),
            }),
            generation: AtomicU64::new(0),
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            core: ArcSwap::from_pointee(Core::new(State::new(current, refresh_token))),
            policy,
            counters,
            revocations: AtomicU64::new(0),
        }
    }

    /// The cached token if it needs no renewal yet. Takes no lock, and writes no memory
    /// another thread reads: each thread hands out its own copy of the token while the
    /// cache's generation says it is current.
    #[inline]
    pub(crate) fn fresh(&self) -> Option<Arc<Token>> {
        self.counters.follow_fork();
        let generation = self.generation.load(Ordering::Acquire);
        COPIES
            .try_with(|copies| {
                let mut copies = copies.try_borrow_mut().ok()?;
                if let Some(copy) = copies.iter().find(|c| c.cache == self.id) {
                    if copy.generation == generation {
                        if !copy.token.fresh_now() {
                            return Some(None);
                        }
                        count_own(&copy.hits);
                        return Some(Some(Arc::clone(&copy.token)));
                    }
                }
                Some(self.copy_fresh(&mut copies, generation))
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| self.fresh_shared())
    }

    /// The published token if fresh, shared with every thread (the path when a thread
    /// cannot keep a copy, e.g. while it is being torn down).
    fn fresh_shared(&self) -> Option<Arc<Token>> {
        let published = self.published.load();
        let token = published.token.as_ref()?;
        if !token.fresh_now() {
            return None;
        }
        self.counters.hit();
        Some(Arc::clone(token))
    }

    /// Refreshes this thread's copy from the published token.
    #[cold]
    fn copy_fresh(&self, copies: &mut Vec<ThreadCopy>, generation: u64) -> Option<Arc<Token>> {
        let hits = copies
            .iter()
            .position(|c| c.cache == self.id)
            .map(|i| copies.remove(i).hits);
        let published = self.published.load();
        let token = published.token.as_ref()?;
        if !token.fresh_now() {
            return None;
        }
        if copies.len() >= THREAD_COPIES {
            copies.remove(0);
        }
        let hits = hits.unwrap_or_else(|| self.counters.new_hit_counter());
        count_own(&hits);
        let own = Arc::new((**token).clone());
        copies.push(ThreadCopy {
            cache: self.id,
            generation,
            token: Arc::clone(&own),
            hits,
        });
        Some(own)
    }

    /// The cached token, whatever its state, without renewing. Takes no lock.
    pub(crate) fn peek(&self) -> Option<Arc<Token>> {
        self.published.load().token.clone()
    }

    /// The newest refresh token known. Takes no lock.
    pub(crate) fn refresh_token(&self) -> Option<Secret> {
        self.published.load().refresh_token.clone()
    }

    /// Forgets the token and the refresh token (after a revocation): the next call
    /// renews from the grant's own credential, or needs a new sign-in.
    pub(crate) fn clear(&self) {
        let core = self.core();
        let mut st = core.state.lock();
        st.current = None;
        st.refresh_token = None;
        st.rejected = None;
        self.revocations.fetch_add(1, Ordering::AcqRel);
        self.publish(&st);
    }

    /// Whether this thread runs this cache's renewal in flight (and so is inside its user
    /// code: an event, a hook, a store call).
    pub(crate) fn renewing_here(&self) -> bool {
        let core = self.core();
        let flight = core.state.lock().flight;
        flight.is_some_and(|f| Leading::here(f.id))
    }

    /// Waits (until `deadline`) for a renewal in flight to finish, and hands over the
    /// tokens of renewals that finished after [`clear`](Self::clear): a revocation
    /// revokes them too.
    pub(crate) fn settle(&self, deadline: Deadline) -> Vec<Arc<Token>> {
        let core = self.core();
        let mut st = core.state.lock();
        while st.flight.is_some() {
            if core
                .done
                .wait_until(&mut st, deadline.instant())
                .timed_out()
            {
                break;
            }
        }
        std::mem::take(&mut st.orphans)
    }

    /// This process's core; a new one, started from the published token, in a child
    /// after `fork()`.
    fn core(&self) -> Arc<Core> {
        let core = self.core.load_full();
        if core.stamp == Stamp::current() {
            return core;
        }
        let published = self.published.load();
        let fresh = Arc::new(Core::new(State::new(
            published.token.clone(),
            published.refresh_token.clone(),
        )));
        let previous = self.core.compare_and_swap(&core, Arc::clone(&fresh));
        if Arc::ptr_eq(&previous, &core) {
            fresh
        } else {
            self.core.load_full()
        }
    }

    fn publish(&self, st: &State) {
        self.published.store(Arc::new(Published {
            token: st.current.clone(),
            refresh_token: st.refresh_token.clone(),
        }));
        // After the store: a reader that sees the new number sees the new token.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A usable token: the cached one while it is fresh, else the result of exactly one
    /// renewal shared by every caller that needs it, all within `deadline`.
    ///
    /// `renew` is called without the lock held, with the newest refresh token known.
    /// When it succeeds, the new refresh token is recorded in the cache first, then
    /// `announce` runs (user code: stores and hooks), then the token is published.
    pub(crate) fn get<R, A>(&self, deadline: Deadline, renew: R, announce: A) -> Result<Arc<Token>>
    where
        R: FnMut(&Renewal<'_>) -> Result<Option<Token>>,
        A: FnOnce(&Token, Option<&Secret>),
    {
        let core = self.core();
        let st = core.state.lock();
        let now = Instant::now();
        if let Some(token) = &st.current {
            match token.freshness(now) {
                Freshness::Fresh => {
                    self.counters.hit();
                    return Ok(Arc::clone(token));
                }
                Freshness::Stale => {
                    if st.flight.is_some() || st.in_backoff(now) || st.ahead_busy(now) {
                        self.counters.hit();
                        return Ok(Arc::clone(token));
                    }
                    let still_valid = Arc::clone(token);
                    let outcome = self.lead(&core, st, Reason::Ahead, deadline, renew, announce);
                    // An early renewal that fails must not take away a token that works.
                    return outcome.or_else(|e| {
                        if still_valid.freshness(Instant::now()) == Freshness::Expired {
                            Err(e)
                        } else {
                            Ok(still_valid)
                        }
                    });
                }
                Freshness::Expired => {}
            }
        }
        if let Some(flight) = st.flight {
            return self.wait(&core, st, flight, deadline);
        }
        if let Some(e) = st.failure_in_backoff(now) {
            return Err(self.refuse_in_backoff(st, e));
        }
        let reason = if st.renewing_after_rejection {
            Reason::Rejected
        } else if st.obtained {
            Reason::Expired
        } else {
            Reason::Initial
        };
        self.lead(&core, st, reason, deadline, renew, announce)
    }

    /// A new token whatever the state of the cached one: exactly one renewal (or the
    /// outcome of the one in flight), within `deadline`. While the failure backoff
    /// holds, the last failure comes back without a request.
    pub(crate) fn renew_now<R, A>(
        &self,
        deadline: Deadline,
        renew: R,
        announce: A,
    ) -> Result<Arc<Token>>
    where
        R: FnMut(&Renewal<'_>) -> Result<Option<Token>>,
        A: FnOnce(&Token, Option<&Secret>),
    {
        let core = self.core();
        let mut st = core.state.lock();
        if let Some(flight) = st.flight {
            if flight.reason != Reason::Ahead {
                return self.wait(&core, st, flight, deadline);
            }
            // A renewal ahead of expiry may keep the token this call must replace.
            let before = st.current.clone();
            let outcome = self.wait(&core, st, flight, deadline);
            let same = matches!((&outcome, &before), (Ok(t), Some(b)) if t.access_token() == b.access_token());
            if !same {
                return outcome;
            }
            st = core.state.lock();
            if let Some(flight) = st.flight {
                return self.wait(&core, st, flight, deadline);
            }
        }
        if let Some(e) = st.failure_in_backoff(Instant::now()) {
            return Err(self.refuse_in_backoff(st, e));
        }
        self.lead(&core, st, Reason::Forced, deadline, renew, announce)
    }

    /// Answers with the last failure while the backoff holds: counted and told once the
    /// lock is released.
    fn refuse_in_backoff(&self, st: MutexGuard<'_, State>, e: Error) -> Error {
        drop(st);
        self.counters.backoff_refusal();
        event!(debug, "backoff.refused", kind = e.kind().name();
            "the failure backoff holds: answering with the last failure ({})", e.kind().name());
        e
    }

    /// Runs one renewal as the leader of a new flight.
    fn lead<R, A>(
        &self,
        core: &Core,
        mut st: MutexGuard<'_, State>,
        reason: Reason,
        deadline: Deadline,
        mut renew: R,
        announce: A,
    ) -> Result<Arc<Token>>
    where
        R: FnMut(&Renewal<'_>) -> Result<Option<Token>>,
        A: FnOnce(&Token, Option<&Secret>),
    {
        let deadline = deadline.min(Deadline::after(RENEWAL_BUDGET));
        let flight = st.begin_flight(deadline, reason);
        let seq = flight.seq;
        // Before any user code runs (the events, hooks and store calls of `renew`).
        let _leading = Leading::enter(flight.id);
        let epoch = self.revocations.load(Ordering::Acquire);
        let mut refresh_token = st.refresh_token.clone();
        let mut replacing = st.replacing(reason);
        drop(st);
        self.counters.renewal(reason);
        let mut guard = FlightGuard {
            cache: self,
            core,
            seq,
            armed: true,
        };
        let revoked = || self.revocations.load(Ordering::Acquire) != epoch;
        let adopted = Cell::new(false);
        let mut kept = false;
        let renewed = match renew(&Renewal {
            reason,
            replacing: replacing.as_deref(),
            refresh_token: refresh_token.as_ref(),
            deadline,
            revoked: &revoked,
            adopted: &adopted,
        }) {
            // The store is busy with another process's renewal ahead of expiry: the
            // still-valid token is kept — unless it was rejected or expired meanwhile;
            // then a renewal that waits for the store.
            Ok(None) => {
                let st = core.state.lock();
                let unchanged =
                    matches!((&st.current, &replacing), (Some(c), Some(r)) if Arc::ptr_eq(c, r));
                let valid = replacing
                    .as_ref()
                    .is_some_and(|r| r.freshness(Instant::now()) != Freshness::Expired);
                if unchanged && valid {
                    kept = true;
                    Ok(None)
                } else {
                    let reason = if st.rejected.is_some() {
                        Reason::Rejected
                    } else {
                        Reason::Expired
                    };
                    replacing = st.replacing(reason);
                    refresh_token = st.refresh_token.clone();
                    drop(st);
                    renew(&Renewal {
                        reason,
                        replacing: replacing.as_deref(),
                        refresh_token: refresh_token.as_ref(),
                        deadline,
                        revoked: &revoked,
                        adopted: &adopted,
                    })
                }
            }
            other => other,
        };
        let outcome = match renewed {
            Ok(Some(token)) => Ok(Arc::new(token)),
            Ok(None) => replacing
                .clone()
                .filter(|_| kept)
                .ok_or_else(|| Error::store("the token store's lock is held by another process")),
            Err(e) => Err(e),
        };
        if let (Ok(token), false) = (&outcome, kept) {
            // A renewal that outlived a revocation hands nothing to user code.
            if !revoked() {
                if let Some(rt) = token.refresh_token() {
                    // Recorded before any user code runs: nothing a hook does can lose it.
                    let mut st = core.state.lock();
                    if !revoked() {
                        st.refresh_token = Some(rt.clone());
                        self.publish(&st);
                    }
                }
                announce(token, refresh_token.as_ref());
            }
        }
        guard.armed = false;
        if let Err(e) = &outcome {
            // Told before the backoff it may start.
            let status = e.http_status().unwrap_or(0);
            event!(warn, "token.renewal_failed", reason = reason.name(), kind = e.kind().name(), status = status;
                "token renewal ({}) failed: {e}", reason.name());
        }
        let outcome = self.complete(core, seq, epoch, kept, outcome);
        if kept {
            return outcome;
        }
        // A token adopted from the store was told as such (`store.adopted`): nothing was
        // requested, and nothing rotated here.
        if let (Ok(token), false) = (&outcome, adopted.get()) {
            let lifetime = token.lifetime().map_or(-1.0, events::secs);
            event!(info, "token.renewed", reason = reason.name(), lifetime_s = lifetime;
                "token renewed ({}), lifetime {lifetime} s", reason.name());
            let rotated = token
                .refresh_token()
                .is_some_and(|new| refresh_token.as_ref().is_some_and(|old| old != new));
            if rotated {
                event!(info, "refresh_token.rotated"; "the refresh token was rotated; the new one is kept");
            }
        }
        outcome
    }

    /// Ends flight `seq` with `outcome` (unless a revocation began since `epoch`: then
    /// the token is set aside for it and the caller told so), and returns what the
    /// flight's callers get.
    fn complete(
        &self,
        core: &Core,
        seq: u64,
        epoch: u64,
        kept: bool,
        outcome: Result<Arc<Token>>,
    ) -> Result<Arc<Token>> {
        let mut st = core.state.lock();
        let now = Instant::now();
        let mut backoff = None;
        let outcome = match outcome {
            Ok(token) if !kept && self.revocations.load(Ordering::Acquire) != epoch => {
                st.orphans.push(token);
                Err(Error::ReauthenticationRequired {
                    cause: Box::new(Error::config(
                        "the session was revoked while this renewal was in flight",
                    )),
                })
            }
            outcome => outcome,
        };
        match &outcome {
            // The token was kept (the store was busy): nothing about it changed, and no
            // renewal ahead of expiry is tried again for a moment.
            Ok(_) if kept => st.ahead_busy_until = Some(later(now, AHEAD_RETRY)),
            Ok(token) => {
                st.ahead_busy_until = None;
                if let Some(rt) = token.refresh_token() {
                    st.refresh_token = Some(rt.clone());
                }
                st.current = Some(Arc::clone(token));
                st.rejected = None;
                st.obtained = true;
                st.failures = 0;
                st.backoff_until = None;
                st.current_after_rejection = std::mem::take(&mut st.renewing_after_rejection);
                st.current_since = now;
                st.current_rejected = false;
                if !st.current_after_rejection {
                    st.rejections = 0;
                    st.reject_until = None;
                }
            }
            Err(e) => {
                if e.kind() == ErrorKind::ReauthenticationRequired {
                    // A refused refresh token is never sent again, and a token an API
                    // rejected is not served after its renewal was refused.
                    st.refresh_token = None;
                    st.rejected = None;
                }
                st.failures = st.failures.saturating_add(1);
                // The server's delay always wins; otherwise the first failure costs no
                // pause, and the exponential backoff starts with the second.
                let pause = e
                    .retry_after()
                    .or_else(|| self.policy.pause_after(st.failures));
                st.backoff_until = pause.map(|p| later(now, p));
                backoff = pause.map(|p| (st.failures, p));
            }
        }
        st.last = Some((seq, outcome.clone()));
        if st.flight.is_some_and(|f| f.seq == seq) {
            st.flight = None;
        }
        self.publish(&st);
        drop(st);
        core.done.notify_all();
        if let Some((failures, pause)) = backoff {
            let pause_s = events::secs(pause);
            event!(warn, "backoff.entered", failures = failures, pause_s = pause_s;
                "{failures} consecutive renewal failure(s): no token request for {pause_s} s");
        }
        outcome
    }

    /// Waits for `flight` to finish and shares its outcome: at most until the leader's
    /// deadline (plus a margin), and never past the caller's own deadline.
    fn wait(
        &self,
        core: &Core,
        mut st: MutexGuard<'_, State>,
        flight: Flight,
        deadline: Deadline,
    ) -> Result<Arc<Token>> {
        if Leading::here(flight.id) {
            // Waiting would wait for this very call to return.
            drop(st);
            return Err(reentered());
        }
        let started = Instant::now();
        let mut until = deadline.instant().min(later(flight.deadline, WAIT_MARGIN));
        if let Some(w) = self.policy.wait_timeout {
            until = until.min(later(started, w));
        }
        let outcome = loop {
            if let Some((done_seq, outcome)) = &st.last {
                if *done_seq >= flight.seq {
                    break Some(outcome.clone());
                }
            }
            if Instant::now() >= until || core.done.wait_until(&mut st, until).timed_out() {
                break st
                    .last
                    .as_ref()
                    .filter(|(done_seq, _)| *done_seq >= flight.seq)
                    .map(|(_, outcome)| outcome.clone());
            }
        };
        drop(st);
        let waited = started.elapsed();
        self.counters.wait(waited, outcome.is_none());
        outcome.unwrap_or_else(|| {
            let waited_s = events::secs(waited);
            event!(warn, "wait.timed_out", waited_s = waited_s;
                "gave up after waiting {waited_s} s for another caller's token renewal");
            Err(Error::Timeout {
                message: format!(
                    "waited {:.1} s for another caller's token renewal",
                    waited.as_secs_f64()
                ),
            })
        })
    }

    /// An API rejected `token` (a 401 that a renewal may fix). Drops it if it is the
    /// cached token — unless it was itself obtained because its predecessor was
    /// rejected: then the API refuses for reasons a new token does not fix, and the
    /// token is kept until the failure backoff allows another renewal. Many rejections
    /// of one token cause one renewal, not one each.
    pub(crate) fn reject(&self, token: &Token) -> Rejection {
        // By value: threads hand out their own copies of one token.
        self.reject_where(|c| std::ptr::eq(c, token) || c.access_token() == token.access_token())
    }

    /// [`reject`](Self::reject) by access token value (for hosts that hold the string).
    pub(crate) fn reject_value(&self, access_token: &str) -> Rejection {
        let probe = Secret::new(access_token);
        self.reject_where(|c| *c.access_token() == probe)
    }

    fn reject_where(&self, is_it: impl Fn(&Token) -> bool) -> Rejection {
        let core = self.core();
        let mut st = core.state.lock();
        if !st.current.as_deref().is_some_and(is_it) {
            return Rejection::AlreadyReplaced;
        }
        let now = Instant::now();
        // A rejection soon after the renewal that replaced a rejected token means the API
        // refuses for other reasons; much later it is an ordinary revocation.
        let soon = now.saturating_duration_since(st.current_since) < self.policy.max_backoff;
        if st.current_after_rejection && soon {
            if !st.current_rejected {
                st.current_rejected = true;
                st.rejections = st.rejections.saturating_add(1);
                let pause = self
                    .policy
                    .pause_after(st.rejections.saturating_add(1))
                    .unwrap_or(self.policy.backoff);
                st.reject_until = Some(later(now, pause));
                return Rejection::Kept;
            }
            if st.reject_until.is_some_and(|until| now < until) {
                return Rejection::Kept;
            }
        }
        if !soon {
            st.rejections = 0;
            st.reject_until = None;
        }
        st.rejected = st.current.take();
        st.renewing_after_rejection = true;
        self.publish(&st);
        Rejection::Dropped
    }
}

/// `at + d`, saturating far in the future instead of overflowing.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(MAX_DURATION)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_with_the_second_failure_and_is_capped() {
        let p = Policy {
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            wait_timeout: None,
        };
        assert_eq!(p.pause_after(1), None);
        assert_eq!(p.pause_after(2), Some(Duration::from_secs(1)));
        assert_eq!(p.pause_after(3), Some(Duration::from_secs(2)));
        assert_eq!(p.pause_after(7), Some(Duration::from_secs(30)));
        assert_eq!(p.pause_after(u32::MAX), Some(Duration::from_secs(30)));
        let huge = Policy {
            backoff: Duration::MAX,
            max_backoff: Duration::MAX,
            wait_timeout: None,
        };
        let now = Instant::now();
        // Never a panic, never a disabled backoff: a far-future instant.
        let until = later(now, huge.pause_after(5).unwrap());
        assert!(until > now + Duration::from_secs(3600));
    }
}

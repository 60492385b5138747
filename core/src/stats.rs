//! Counters of what a client did, always on: relaxed atomics, none on a shared cache
//! line in the hot path (each reading thread counts its cache hits in a counter of its
//! own), and [`Stats`], the snapshot hosts hand out.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// Why a renewal started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No token had been obtained yet.
    Initial,
    /// The token was still valid but in its renew-ahead window.
    Ahead,
    /// The token had expired (or was forgotten after a revocation).
    Expired,
    /// An API rejected the token (a 401).
    Rejected,
    /// The caller asked for a new token.
    Forced,
}

impl Reason {
    /// The stable name used in events.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reason::Initial => "initial",
            Reason::Ahead => "ahead",
            Reason::Expired => "expired",
            Reason::Rejected => "rejected",
            Reason::Forced => "forced",
        }
    }
}

/// How one token endpoint request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A token came back.
    Succeeded,
    /// The server refused with a 4xx answer (bad credentials, revoked refresh token…).
    Refused,
    /// Anything else: 5xx, transport failure, timeout, a body that is not a token.
    Failed,
}

/// A thread's own hit counter: written only by that thread, read by [`Counters::snapshot`].
pub(crate) type HitCounter = Arc<OwnHits>;

/// The count inside a [`HitCounter`], alone on its cache lines: two threads' counters
/// allocated side by side would otherwise share one, and each thread's count would
/// take the line from the other's core on every call. 128 bytes: a pair of lines, as
/// x86's adjacent-line prefetcher fetches them.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct OwnHits(AtomicU64);

impl std::ops::Deref for OwnHits {
    type Target = AtomicU64;

    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

/// The live counters of one client (shared by its cache, HTTP layer and store tier).
#[derive(Default)]
pub(crate) struct Counters {
    /// Hits counted outside a thread's own counter (under the cache lock, or while a
    /// thread is being torn down).
    hits: AtomicU64,
    /// Every thread's own hit counter that may still be written…
    hit_counters: Mutex<Vec<HitCounter>>,
    /// …and the sum of those no thread holds any more.
    retired_hits: AtomicU64,
    requests_succeeded: AtomicU64,
    requests_refused: AtomicU64,
    requests_failed: AtomicU64,
    renewals: [AtomicU64; 5],
    store_adoptions: AtomicU64,
    waits: AtomicU64,
    wait_nanos: AtomicU64,
    wait_timeouts: AtomicU64,
    backoff_refusals: AtomicU64,
    retries_after_401: AtomicU64,
    signins_evicted: AtomicU64,
    dpop_nonce_retries: AtomicU64,
    /// The fork generation (see [`crate::fork`]) the counts below `baseline` belong to…
    generation: AtomicU64,
    /// …and what had been counted when this process began: a forked child's counters
    /// start at zero.
    baseline: Mutex<Stats>,
}

impl Counters {
    /// Starts this process's counts at zero if it is a child forked since they were
    /// last written (the at-fork hooks of the Python package and `libauthcore`, or
    /// [`after_fork_in_child`](crate::after_fork_in_child), say so). Called before
    /// every count and every snapshot: two relaxed loads when nothing forked.
    #[inline]
    pub(crate) fn follow_fork(&self) {
        let generation = crate::fork::generation();
        if generation != self.generation.load(Relaxed) {
            self.rebase(generation);
        }
    }

    #[cold]
    fn rebase(&self, generation: u64) {
        let mut baseline = self.baseline.lock();
        if self.generation.load(Relaxed) != generation {
            *baseline = self.totals();
            self.generation.store(generation, Relaxed);
        }
    }

    /// A cache hit on the locked or shared path.
    pub(crate) fn hit(&self) {
        self.follow_fork();
        self.hits.fetch_add(1, Relaxed);
    }

    /// A new hit counter for the calling thread, registered here. Counters no thread
    /// holds any more are folded into one number first, so the list stays as long as
    /// the number of reading threads.
    #[cold]
    pub(crate) fn new_hit_counter(&self) -> HitCounter {
        self.follow_fork();
        let counter = HitCounter::default();
        let mut all = self.hit_counters.lock();
        all.retain(|c| {
            // Only this list holds it: its thread is gone and will never write it again.
            let orphan = Arc::strong_count(c) == 1;
            if orphan {
                self.retired_hits.fetch_add(c.load(Relaxed), Relaxed);
            }
            !orphan
        });
        all.push(Arc::clone(&counter));
        counter
    }

    /// One token endpoint request and how it ended.
    pub(crate) fn request(&self, outcome: Outcome) {
        self.follow_fork();
        match outcome {
            Outcome::Succeeded => &self.requests_succeeded,
            Outcome::Refused => &self.requests_refused,
            Outcome::Failed => &self.requests_failed,
        }
        .fetch_add(1, Relaxed);
    }

    /// A renewal started, for `reason`.
    pub(crate) fn renewal(&self, reason: Reason) {
        self.follow_fork();
        self.renewals[reason as usize].fetch_add(1, Relaxed);
    }

    /// A renewal ended by adopting the token another process put in the store.
    pub(crate) fn store_adoption(&self) {
        self.follow_fork();
        self.store_adoptions.fetch_add(1, Relaxed);
    }

    /// A caller waited `waited` for another caller's renewal, and whether it gave up.
    pub(crate) fn wait(&self, waited: Duration, timed_out: bool) {
        self.follow_fork();
        self.waits.fetch_add(1, Relaxed);
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(nanos, Relaxed);
        if timed_out {
            self.wait_timeouts.fetch_add(1, Relaxed);
        }
    }

    /// A caller got the last failure back because the failure backoff holds.
    pub(crate) fn backoff_refusal(&self) {
        self.follow_fork();
        self.backoff_refusals.fetch_add(1, Relaxed);
    }

    /// A request was sent again after a 401 and a renewal.
    pub(crate) fn retry_after_401(&self) {
        self.follow_fork();
        self.retries_after_401.fetch_add(1, Relaxed);
    }

    /// A pending sign-in was dropped to make room for a new one.
    pub(crate) fn signin_evicted(&self) {
        self.follow_fork();
        self.signins_evicted.fetch_add(1, Relaxed);
    }

    /// A request was sent once more with the DPoP nonce its server asked for.
    pub(crate) fn dpop_nonce_retry(&self) {
        self.follow_fork();
        self.dpop_nonce_retries.fetch_add(1, Relaxed);
    }

    /// Adds what another set of counters saw (a flow's exchange, handed to the client
    /// it makes).
    pub(crate) fn absorb(&self, delta: &Stats) {
        self.follow_fork();
        self.hits.fetch_add(delta.cache_hits, Relaxed);
        self.requests_succeeded
            .fetch_add(delta.token_requests_succeeded, Relaxed);
        self.requests_refused
            .fetch_add(delta.token_requests_refused, Relaxed);
        self.requests_failed
            .fetch_add(delta.token_requests_failed, Relaxed);
        self.dpop_nonce_retries
            .fetch_add(delta.dpop_nonce_retries, Relaxed);
    }

    /// What was counted so far in this process. Each number is exact; they are read
    /// one after the other, so a snapshot taken while other threads work is not one
    /// instant.
    pub(crate) fn snapshot(&self) -> Stats {
        self.follow_fork();
        let baseline = *self.baseline.lock();
        self.totals().minus(&baseline)
    }

    /// Everything counted, the parent's counts before a fork included.
    fn totals(&self) -> Stats {
        let own_hits: u64 = self
            .hit_counters
            .lock()
            .iter()
            .map(|c| c.load(Relaxed))
            .sum();
        let renewals = |r: Reason| self.renewals[r as usize].load(Relaxed);
        Stats {
            cache_hits: self.hits.load(Relaxed) + self.retired_hits.load(Relaxed) + own_hits,
            token_requests_succeeded: self.requests_succeeded.load(Relaxed),
            token_requests_refused: self.requests_refused.load(Relaxed),
            token_requests_failed: self.requests_failed.load(Relaxed),
            renewals_initial: renewals(Reason::Initial),
            renewals_ahead: renewals(Reason::Ahead),
            renewals_expired: renewals(Reason::Expired),
            renewals_rejected: renewals(Reason::Rejected),
            renewals_forced: renewals(Reason::Forced),
            store_adoptions: self.store_adoptions.load(Relaxed),
            waits: self.waits.load(Relaxed),
            wait_time: Duration::from_nanos(self.wait_nanos.load(Relaxed)),
            wait_timeouts: self.wait_timeouts.load(Relaxed),
            backoff_refusals: self.backoff_refusals.load(Relaxed),
            retries_after_401: self.retries_after_401.load(Relaxed),
            signins_evicted: self.signins_evicted.load(Relaxed),
            dpop_nonce_retries: self.dpop_nonce_retries.load(Relaxed),
        }
    }
}

impl Stats {
    /// These counts less `base` (each at least zero).
    fn minus(&self, base: &Stats) -> Stats {
        Stats {
            cache_hits: self.cache_hits.saturating_sub(base.cache_hits),
            token_requests_succeeded: self
                .token_requests_succeeded
                .saturating_sub(base.token_requests_succeeded),
            token_requests_refused: self
                .token_requests_refused
                .saturating_sub(base.token_requests_refused),
            token_requests_failed: self
                .token_requests_failed
                .saturating_sub(base.token_requests_failed),
            renewals_initial: self.renewals_initial.saturating_sub(base.renewals_initial),
            renewals_ahead: self.renewals_ahead.saturating_sub(base.renewals_ahead),
            renewals_expired: self.renewals_expired.saturating_sub(base.renewals_expired),
            renewals_rejected: self
                .renewals_rejected
                .saturating_sub(base.renewals_rejected),
            renewals_forced: self.renewals_forced.saturating_sub(base.renewals_forced),
            store_adoptions: self.store_adoptions.saturating_sub(base.store_adoptions),
            waits: self.waits.saturating_sub(base.waits),
            wait_time: self.wait_time.saturating_sub(base.wait_time),
            wait_timeouts: self.wait_timeouts.saturating_sub(base.wait_timeouts),
            backoff_refusals: self.backoff_refusals.saturating_sub(base.backoff_refusals),
            retries_after_401: self
                .retries_after_401
                .saturating_sub(base.retries_after_401),
            signins_evicted: self.signins_evicted.saturating_sub(base.signins_evicted),
            dpop_nonce_retries: self
                .dpop_nonce_retries
                .saturating_sub(base.dpop_nonce_retries),
        }
    }
}

/// Adds one to a counter only the calling thread writes: a plain load and store, no
/// locked instruction (others only read it).
#[inline]
pub(crate) fn count_own(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
}

/// What a client has done since it was made ([`Client::stats`](crate::Client::stats)),
/// in this process: in a child forked after the client was made, the counts start at
/// zero (the at-fork hooks of the Python package and `libauthcore` tell authcore of the
/// fork; a Rust program that forks calls [`after_fork_in_child`](crate::after_fork_in_child)).
/// Counters are always on and cost a few nanoseconds at most; clones of a client share
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls answered from the cache, without a renewal or a wait.
    pub cache_hits: u64,
    /// Token endpoint requests that returned a token (every attempt counts, retries
    /// and device-flow polls included; a flow's code exchange counts in the client it
    /// makes).
    pub token_requests_succeeded: u64,
    /// Token endpoint requests the server refused with a 4xx answer (bad credentials,
    /// a revoked refresh token, `authorization_pending` while a device flow waits).
    pub token_requests_refused: u64,
    /// Token endpoint requests that failed otherwise: a 5xx answer, a transport failure
    /// or timeout, a body that is not a token.
    pub token_requests_failed: u64,
    /// Renewals for a client that had no token yet.
    pub renewals_initial: u64,
    /// Renewals of a still-valid token in its renew-ahead window.
    pub renewals_ahead: u64,
    /// Renewals because the token had expired (or was revoked by the client).
    pub renewals_expired: u64,
    /// Renewals because an API rejected the token (a 401).
    pub renewals_rejected: u64,
    /// Renewals asked for by [`Client::refresh`](crate::Client::refresh).
    pub renewals_forced: u64,
    /// Renewals that adopted a token another process had put in the shared store
    /// (no token request).
    pub store_adoptions: u64,
    /// Calls that waited for another caller's renewal.
    pub waits: u64,
    /// Time spent in those waits, summed over callers.
    pub wait_time: Duration,
    /// Waits that ended at the caller's deadline before the renewal did.
    pub wait_timeouts: u64,
    /// Calls answered with the last failure because the failure backoff held (no
    /// request sent).
    pub backoff_refusals: u64,
    /// Requests sent again by [`Client::request`](crate::Client::request) after a 401
    /// and a renewal.
    pub retries_after_401: u64,
    /// Pending sign-ins an authorization code flow dropped, oldest first, to make room
    /// for new ones beyond its bound ([`MAX_PENDING`](crate::MAX_PENDING)); each also
    /// raised the `signin.evicted` warning. Counted by the flow
    /// ([`AuthorizationCodeFlow::stats`](crate::AuthorizationCodeFlow::stats)); always
    /// zero in a client.
    pub signins_evicted: u64,
    /// Requests sent once more with the DPoP nonce their server asked for
    /// (`use_dpop_nonce`): token requests and API requests. At most one per request;
    /// about one per server per nonce lifetime. The first attempts are counted in the
    /// token request counters too (as refused).
    pub dpop_nonce_retries: u64,
}

impl Stats {
    /// Token endpoint requests, whatever their outcome.
    pub fn token_requests(&self) -> u64 {
        self.token_requests_succeeded + self.token_requests_refused + self.token_requests_failed
    }

    /// Renewals, whatever their reason.
    pub fn renewals(&self) -> u64 {
        self.renewals_initial
            + self.renewals_ahead
            + self.renewals_expired
            + self.renewals_rejected
            + self.renewals_forced
    }

    /// The counts of `self` minus those of `earlier` (each saturating at zero).
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            cache_hits: self.cache_hits.saturating_sub(earlier.cache_hits),
            token_requests_succeeded: self
                .token_requests_succeeded
                .saturating_sub(earlier.token_requests_succeeded),
            token_requests_refused: self
                .token_requests_refused
                .saturating_sub(earlier.token_requests_refused),
            token_requests_failed: self
                .token_requests_failed
                .saturating_sub(earlier.token_requests_failed),
            renewals_initial: self
                .renewals_initial
                .saturating_sub(earlier.renewals_initial),
            renewals_ahead: self.renewals_ahead.saturating_sub(earlier.renewals_ahead),
            renewals_expired: self
                .renewals_expired
                .saturating_sub(earlier.renewals_expired),
            renewals_rejected: self
                .renewals_rejected
                .saturating_sub(earlier.renewals_rejected),
            renewals_forced: self.renewals_forced.saturating_sub(earlier.renewals_forced),
            store_adoptions: self.store_adoptions.saturating_sub(earlier.store_adoptions),
            waits: self.waits.saturating_sub(earlier.waits),
            wait_time: self.wait_time.saturating_sub(earlier.wait_time),
            wait_timeouts: self.wait_timeouts.saturating_sub(earlier.wait_timeouts),
            backoff_refusals: self
                .backoff_refusals
                .saturating_sub(earlier.backoff_refusals),
            retries_after_401: self
                .retries_after_401
                .saturating_sub(earlier.retries_after_401),
            signins_evicted: self.signins_evicted.saturating_sub(earlier.signins_evicted),
            dpop_nonce_retries: self
                .dpop_nonce_retries
                .saturating_sub(earlier.dpop_nonce_retries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_of_threads_that_are_gone_are_kept() {
        let counters = Counters::default();
        let a = counters.new_hit_counter();
        count_own(&a);
        count_own(&a);
        counters.hit();
        drop(a);
        // Registering another thread folds the orphan into the retired sum.
        let b = counters.new_hit_counter();
        count_own(&b);
        assert_eq!(counters.hit_counters.lock().len(), 1);
        assert_eq!(counters.snapshot().cache_hits, 4);
    }

    #[test]
    fn a_threads_own_count_shares_no_cache_line() {
        let a = Counters::default().new_hit_counter();
        assert_eq!(std::mem::align_of_val(&*a), 128);
        assert_eq!(std::ptr::from_ref::<AtomicU64>(&a) as usize % 128, 0);
        assert!(std::mem::size_of::<OwnHits>() >= 128);
    }

    #[test]
    fn totals_and_differences() {
        let counters = Counters::default();
        counters.request(Outcome::Succeeded);
        counters.request(Outcome::Refused);
        counters.request(Outcome::Failed);
        counters.renewal(Reason::Initial);
        counters.renewal(Reason::Forced);
        let first = counters.snapshot();
        assert_eq!(first.token_requests(), 3);
        assert_eq!(first.renewals(), 2);
        assert_eq!(first.renewals_forced, 1);
        counters.request(Outcome::Succeeded);
        counters.wait(Duration::from_millis(5), true);
        let delta = counters.snapshot().since(&first);
        assert_eq!(delta.token_requests_succeeded, 1);
        assert_eq!(delta.token_requests(), 1);
        assert_eq!(delta.waits, 1);
        assert_eq!(delta.wait_timeouts, 1);
        assert_eq!(delta.wait_time, Duration::from_millis(5));
        assert_eq!(delta.renewals(), 0);
    }
}

//! The token cache: one mutex over the state, single-flight renewal, renew-ahead,
//! backoff after failure, and invalidation by identity. No I/O happens under the lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::token::{Freshness, Token};

/// Backoff and waiting policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub wait_timeout: Duration,
}

struct State {
    current: Option<Arc<Token>>,
    refresh_token: Option<Secret>,
    /// Sequence number of the renewal in flight, if any.
    flight: Option<u64>,
    next_seq: u64,
    /// Sequence number and outcome of the last renewal that finished.
    last: Option<(u64, Result<Arc<Token>>)>,
    backoff_until: Option<Instant>,
    failures: u32,
}

impl State {
    fn in_backoff(&self, now: Instant) -> bool {
        self.backoff_until.is_some_and(|until| now < until)
    }

    fn begin_flight(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.flight = Some(seq);
        seq
    }
}

/// The token cache.
pub(crate) struct Cache {
    state: Mutex<State>,
    done: Condvar,
    policy: Policy,
}

/// Completes its flight with an error if the renewal unwinds, so waiters never hang.
struct FlightGuard<'a> {
    cache: &'a Cache,
    seq: u64,
    armed: bool,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.cache.complete(
                self.seq,
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
    ) -> Self {
        let refresh_token = initial
            .as_ref()
            .and_then(|t| t.refresh_token().cloned())
            .or(refresh_token);
        Cache {
            state: Mutex::new(State {
                current: initial.map(Arc::new),
                refresh_token,
                flight: None,
                next_seq: 1,
                last: None,
                backoff_until: None,
                failures: 0,
            }),
            done: Condvar::new(),
            policy,
        }
    }

    /// A usable token: the cached one while it is fresh, else the result of exactly one
    /// renewal shared by every caller that needs it.
    ///
    /// `renew` is called without the lock held, with the newest refresh token known.
    pub(crate) fn get<F>(&self, renew: F) -> Result<Arc<Token>>
    where
        F: FnOnce(Option<&Secret>) -> Result<Token>,
    {
        let st = self.state.lock();
        let now = Instant::now();
        if let Some(token) = &st.current {
            match token.freshness(now) {
                Freshness::Fresh => return Ok(Arc::clone(token)),
                Freshness::Stale => {
                    if st.flight.is_some() || st.in_backoff(now) {
                        return Ok(Arc::clone(token));
                    }
                    let still_valid = Arc::clone(token);
                    let outcome = self.lead(st, renew);
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
        if let Some(seq) = st.flight {
            return self.wait(st, seq);
        }
        if st.in_backoff(now) {
            if let Some((_, Err(e))) = &st.last {
                return Err(e.clone());
            }
        }
        self.lead(st, renew)
    }

    /// Runs one renewal as the leader of a new flight.
    fn lead<F>(&self, mut st: MutexGuard<'_, State>, renew: F) -> Result<Arc<Token>>
    where
        F: FnOnce(Option<&Secret>) -> Result<Token>,
    {
        let seq = st.begin_flight();
        let refresh_token = st.refresh_token.clone();
        drop(st);
        let mut guard = FlightGuard {
            cache: self,
            seq,
            armed: true,
        };
        let outcome = renew(refresh_token.as_ref()).map(Arc::new);
        guard.armed = false;
        self.complete(seq, outcome.clone());
        outcome
    }

    fn complete(&self, seq: u64, outcome: Result<Arc<Token>>) {
        let mut st = self.state.lock();
        match &outcome {
            Ok(token) => {
                if let Some(rt) = token.refresh_token() {
                    st.refresh_token = Some(rt.clone());
                }
                st.current = Some(Arc::clone(token));
                st.failures = 0;
                st.backoff_until = None;
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let exp = self
                    .policy
                    .backoff
                    .saturating_mul(1u32 << (st.failures - 1).min(16))
                    .min(self.policy.max_backoff);
                let pause = e.retry_after().map_or(exp, |ra| ra.max(exp));
                st.backoff_until = Instant::now().checked_add(pause);
            }
        }
        st.last = Some((seq, outcome));
        if st.flight == Some(seq) {
            st.flight = None;
        }
        drop(st);
        self.done.notify_all();
    }

    /// Waits, up to the deadline, for flight `seq` to finish and shares its outcome.
    fn wait(&self, mut st: MutexGuard<'_, State>, seq: u64) -> Result<Arc<Token>> {
        let deadline = Instant::now() + self.policy.wait_timeout;
        loop {
            if let Some((done_seq, outcome)) = &st.last {
                if *done_seq >= seq {
                    return outcome.clone();
                }
            }
            if self.done.wait_until(&mut st, deadline).timed_out() {
                return Err(Error::Timeout {
                    message: format!(
                        "waited {:.1} s for another thread's token renewal",
                        self.policy.wait_timeout.as_secs_f64()
                    ),
                });
            }
        }
    }

    /// Drops the cached token if it is this very token; returns whether it was.
    ///
    /// A token already replaced by a renewal is left alone, so that many requests
    /// rejected with the same token cause one renewal, not one each.
    pub(crate) fn invalidate(&self, token: &Token) -> bool {
        let mut st = self.state.lock();
        let same = st
            .current
            .as_ref()
            .is_some_and(|c| std::ptr::eq(c.as_ref(), token));
        if same {
            st.current = None;
        }
        same
    }

    /// Drops the cached token if its access token equals `access_token`.
    pub(crate) fn invalidate_value(&self, access_token: &str) -> bool {
        let probe = Secret::new(access_token);
        let mut st = self.state.lock();
        let same = st
            .current
            .as_ref()
            .is_some_and(|c| *c.access_token() == probe);
        if same {
            st.current = None;
        }
        same
    }

    /// The cached token, whatever its state, without renewing.
    pub(crate) fn peek(&self) -> Option<Arc<Token>> {
        self.state.lock().current.clone()
    }
}

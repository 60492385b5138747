//! Clocks: cheap readings for the cached-token path, and the [`Deadline`] of a call.
//!
//! Deciding whether the cached token is still fresh needs two clocks (monotonic and
//! wall, see [`Token`](crate::Token)) on every call. On Linux the coarse clocks give
//! both from the vDSO without a system call in a few nanoseconds, at the resolution of
//! the kernel tick (at most a few milliseconds); elsewhere the standard clocks are used.
//! rustix goes through the C library's `clock_gettime` (`use-libc`): its own vDSO
//! lookup crashes programs run under valgrind, which hides the vDSO.
//! Deadlines compared with them are moved [`GUARD`] earlier, so that the coarse reading
//! lagging behind the precise one can only make a token look stale sooner.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::options::MAX_DURATION;

/// How much earlier a deadline is checked than it falls, to cover the coarse clocks'
/// resolution.
const GUARD: Duration = Duration::from_millis(10);

/// Nanoseconds on the monotonic clock and since the Unix epoch on the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub mono: u64,
    pub wall: u64,
}

/// A moment on both clocks; `u64::MAX` on both means never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cutoff {
    mono: u64,
    wall: u64,
}

impl Cutoff {
    pub(crate) const NEVER: Cutoff = Cutoff {
        mono: u64::MAX,
        wall: u64::MAX,
    };

    /// The moment `at` (monotonic) / `wall`, moved [`GUARD`] earlier.
    pub(crate) fn new(at: Option<Instant>, wall: Option<SystemTime>) -> Cutoff {
        let now = now();
        let precise_now = Instant::now();
        let mono = at.map_or(u64::MAX, |at| {
            let ahead = at
                .saturating_duration_since(precise_now)
                .saturating_sub(GUARD);
            now.mono.saturating_add(nanos(ahead))
        });
        let wall = wall.map_or(u64::MAX, |w| {
            let since = w.duration_since(UNIX_EPOCH).unwrap_or_default();
            nanos(since.saturating_sub(GUARD))
        });
        Cutoff { mono, wall }
    }

    /// Whether `reading` is before this moment on both clocks.
    #[inline]
    pub(crate) fn is_after(self, reading: Reading) -> bool {
        reading.mono < self.mono && reading.wall < self.wall
    }
}

/// The moment by which a whole call (a token acquisition, or a request with its
/// renewal and resend) must be over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    /// `d` from now (clamped, so that it never overflows).
    pub(crate) fn after(d: Duration) -> Self {
        let now = Instant::now();
        Deadline(now.checked_add(d.min(MAX_DURATION)).unwrap_or(now))
    }

    /// The instant itself.
    pub(crate) fn instant(self) -> Instant {
        self.0
    }

    /// Time left, or `None` once it has passed.
    pub(crate) fn remaining(self) -> Option<Duration> {
        let left = self.0.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// The error of a call that ran out of time.
    pub(crate) fn expired(what: &str) -> Error {
        Error::Timeout {
            message: format!("{what} did not finish within the call's deadline"),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Both clocks, now.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
pub(crate) fn now() -> Reading {
    use rustix::time::{clock_gettime, ClockId};
    let ns = |t: rustix::time::Timespec| {
        u64::try_from(t.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
    };
    Reading {
        mono: ns(clock_gettime(ClockId::MonotonicCoarse)),
        wall: ns(clock_gettime(ClockId::RealtimeCoarse)),
    }
}

/// Both clocks, now.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[inline]
pub(crate) fn now() -> Reading {
    use std::sync::OnceLock;
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    Reading {
        mono: nanos(Instant::now().saturating_duration_since(base)),
        wall: nanos(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_compare_on_both_clocks() {
        let soon = Cutoff::new(
            Some(Instant::now() + Duration::from_secs(60)),
            Some(SystemTime::now() + Duration::from_secs(60)),
        );
        assert!(soon.is_after(now()));
        let wall_passed = Cutoff::new(
            Some(Instant::now() + Duration::from_secs(60)),
            Some(SystemTime::now() - Duration::from_secs(1)),
        );
        assert!(!wall_passed.is_after(now()));
        let mono_passed = Cutoff::new(
            Some(Instant::now()),
            Some(SystemTime::now() + Duration::from_secs(60)),
        );
        assert!(!mono_passed.is_after(now()));
        assert!(Cutoff::NEVER.is_after(now()));
    }
}

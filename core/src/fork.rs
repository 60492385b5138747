//! Which process, and which fork generation, state belongs to.
//!
//! Per-process state (the cache's flight and lock, the HTTP agent's pooled connections)
//! is stamped with the process id and a fork generation. A child after `fork()` sees a
//! different process id and starts that state afresh. Hosts that can hook `fork()`
//! (Python's `os.register_at_fork`, C's `pthread_atfork`) also call
//! [`after_fork_in_child`], which covers what a process id cannot tell: a grandchild
//! that happens to get the process id its grandparent had.

use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Tells authcore that this process is a child just forked from its parent. Call it
/// from an at-fork child handler (it only increments an atomic counter, so it is
/// async-signal-safe). Optional: authcore notices a new process id by itself; the
/// Python package and `libauthcore` register it for you.
pub fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// How many forks this process descends from, as the at-fork hooks counted them.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// The process and fork generation that state created now belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pid: u32,
    generation: u64,
}

impl Stamp {
    /// This process, now.
    pub(crate) fn current() -> Stamp {
        Stamp {
            pid: std::process::id(),
            generation: GENERATION.load(Ordering::Relaxed),
        }
    }
}

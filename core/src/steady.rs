//! Socket timeouts that stay the same from one request to the next.
//!
//! ureq bounds each read and write of a call by what is left of the call's deadline,
//! and sets it on the socket first (`SO_RCVTIMEO`, `SO_SNDTIMEO`) unless the socket
//! already has that very value. What is left differs by microseconds from one request
//! to the next, so every request on a pooled connection made two more system calls than
//! the same request without a deadline — more time than all of authcore's own work on
//! it. The last link of the connector chain rounds what is left down to a whole
//! [`step`](sliver): requests whose reads and writes start within one step of their own
//! start hand the socket the same value as the request before, and no system call is
//! made. A wait may end up to one step before the deadline, never after it.

use std::time::Duration;

use ureq::unversioned::transport::time::Duration as Left;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

/// The part of a call's `timeout` that waits may end early by: a thousandth of it, at
/// most 5 ms. The agent's own limit leaves the same sliver (see `agent_timeout`).
pub(crate) fn sliver(timeout: Duration) -> Duration {
    (timeout / 1000).min(Duration::from_millis(5))
}

/// The connector that wraps every connection in [`Steady`]: chained last, after the
/// TCP, proxy and TLS links, so that it sees the timeouts ureq hands to the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SteadyTimeouts {
    step: Duration,
}

impl SteadyTimeouts {
    /// Rounding what is left down to whole `step`s.
    pub(crate) fn new(step: Duration) -> Self {
        SteadyTimeouts { step }
    }
}

impl Connector<Box<dyn Transport>> for SteadyTimeouts {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| {
            Box::new(Steady {
                inner,
                step: self.step,
            }) as Box<dyn Transport>
        }))
    }
}

/// A connection whose waits are given [`steady`] timeouts.
#[derive(Debug)]
struct Steady {
    inner: Box<dyn Transport>,
    step: Duration,
}

impl Transport for Steady {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.inner
            .transmit_output(amount, steady(timeout, self.step))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.await_input(steady(timeout, self.step))
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// `timeout` with what is left rounded down to a whole number of `step`s; as it is when
/// less than one step is left, or nothing ends it.
fn steady(mut timeout: NextTimeout, step: Duration) -> NextTimeout {
    let Left::Exact(left) = timeout.after else {
        return timeout;
    };
    let (Ok(step_ns), Ok(left_ns)) = (
        u64::try_from(step.as_nanos()),
        u64::try_from(left.as_nanos()),
    ) else {
        return timeout;
    };
    if step_ns > 0 && left_ns >= step_ns {
        timeout.after = Left::Exact(Duration::from_nanos(left_ns - left_ns % step_ns));
    }
    timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(d: Duration) -> NextTimeout {
        NextTimeout {
            after: Left::Exact(d),
            ..NextTimeout::default()
        }
    }

    fn exact(t: NextTimeout) -> Duration {
        match t.after {
            Left::Exact(d) => d,
            Left::NotHappening => panic!("no timeout"),
        }
    }

    #[test]
    fn what_is_left_is_rounded_down_to_whole_steps_and_never_up() {
        let step = sliver(Duration::from_secs(30));
        assert_eq!(step, Duration::from_millis(5));
        // Two requests a few microseconds apart hand the socket the same value.
        let a = steady(left(Duration::from_micros(29_994_987)), step);
        let b = steady(left(Duration::from_micros(29_994_012)), step);
        assert_eq!(exact(a), Duration::from_millis(29_990));
        assert_eq!(a, b);
        // Never later than what is left, never a step or more earlier, never zero.
        for micros in [5_000, 5_001, 9_999, 10_000, 123_456_789, 29_995_000] {
            let d = Duration::from_micros(micros);
            let s = exact(steady(left(d), step));
            assert!(s <= d && d - s < step && !s.is_zero(), "{d:?} -> {s:?}");
        }
        // Less than a step left, or no deadline: as it is.
        let short = left(Duration::from_micros(4_999));
        assert_eq!(steady(short, step), short);
        assert_eq!(steady(NextTimeout::default(), step), NextTimeout::default());
        assert_eq!(
            steady(left(Duration::from_secs(1)), Duration::ZERO),
            left(Duration::from_secs(1))
        );
    }

    /// Records the timeouts it is given.
    #[derive(Debug, Default)]
    struct Recording(std::sync::Arc<std::sync::Mutex<Vec<NextTimeout>>>);

    impl Transport for Recording {
        fn buffers(&mut self) -> &mut dyn Buffers {
            unreachable!("not read in this test")
        }
        fn transmit_output(&mut self, _: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
            self.0.lock().unwrap().push(timeout);
            Ok(())
        }
        fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
            self.0.lock().unwrap().push(timeout);
            Ok(true)
        }
        fn is_open(&mut self) -> bool {
            true
        }
    }

    #[test]
    fn every_connection_gets_steady_timeouts_for_its_writes_and_reads() {
        let seen = Recording::default();
        let record = std::sync::Arc::clone(&seen.0);
        let mut steady = Steady {
            inner: Box::new(seen),
            step: Duration::from_millis(5),
        };
        steady
            .transmit_output(1, left(Duration::from_micros(29_994_990)))
            .unwrap();
        steady
            .await_input(left(Duration::from_micros(29_994_950)))
            .unwrap();
        steady
            .transmit_output(1, left(Duration::from_micros(29_994_991)))
            .unwrap();
        steady
            .await_input(left(Duration::from_micros(29_994_940)))
            .unwrap();
        let seen = record.lock().unwrap();
        assert_eq!(seen.len(), 4);
        assert!(
            seen.iter()
                .all(|t| exact(*t) == Duration::from_millis(29_990)),
            "{seen:?}"
        );
    }
}

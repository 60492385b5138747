//! `Stats`: what a client (or a flow) did so far, as `Client.stats()` and
//! `AuthorizationCodeFlow.stats()` hand it out.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// What a client did so far (`Client.stats()`; a flow's: `AuthorizationCodeFlow.stats()`):
/// a snapshot, counted always.
#[pyclass(frozen, module = "authcore._authcore", name = "Stats")]
pub(crate) struct Stats(authcore::Stats);

impl From<authcore::Stats> for Stats {
    fn from(stats: authcore::Stats) -> Self {
        Stats(stats)
    }
}

/// The counters' names in `Stats.as_dict()` and `repr`, in order.
const STATS_FIELDS: [&str; 17] = [
    "cache_hits",
    "token_requests_succeeded",
    "token_requests_refused",
    "token_requests_failed",
    "renewals_initial",
    "renewals_ahead",
    "renewals_expired",
    "renewals_rejected",
    "renewals_forced",
    "store_adoptions",
    "waits",
    "wait_time",
    "wait_timeouts",
    "backoff_refusals",
    "retries_after_401",
    "signins_evicted",
    "dpop_nonce_retries",
];

impl Stats {
    /// The counters in the order of `STATS_FIELDS` (`wait_time` in seconds).
    fn values(&self) -> [f64; 17] {
        let s = &self.0;
        [
            s.cache_hits as f64,
            s.token_requests_succeeded as f64,
            s.token_requests_refused as f64,
            s.token_requests_failed as f64,
            s.renewals_initial as f64,
            s.renewals_ahead as f64,
            s.renewals_expired as f64,
            s.renewals_rejected as f64,
            s.renewals_forced as f64,
            s.store_adoptions as f64,
            s.waits as f64,
            s.wait_time.as_secs_f64(),
            s.wait_timeouts as f64,
            s.backoff_refusals as f64,
            s.retries_after_401 as f64,
            s.signins_evicted as f64,
            s.dpop_nonce_retries as f64,
        ]
    }
}

#[pymethods]
impl Stats {
    /// Calls answered from the cache, without a renewal or a wait.
    #[getter]
    fn cache_hits(&self) -> u64 {
        self.0.cache_hits
    }
    /// Token endpoint requests that returned a token (every attempt, retries and
    /// device-flow polls included; a flow's exchange counts in the client it makes).
    #[getter]
    fn token_requests_succeeded(&self) -> u64 {
        self.0.token_requests_succeeded
    }
    /// Token endpoint requests the server refused with a 4xx answer.
    #[getter]
    fn token_requests_refused(&self) -> u64 {
        self.0.token_requests_refused
    }
    /// Token endpoint requests that failed otherwise (5xx, transport, timeout, a body
    /// that is not a token).
    #[getter]
    fn token_requests_failed(&self) -> u64 {
        self.0.token_requests_failed
    }
    /// Token endpoint requests, whatever their outcome.
    #[getter]
    fn token_requests(&self) -> u64 {
        self.0.token_requests()
    }
    /// Renewals for a client that had no token yet.
    #[getter]
    fn renewals_initial(&self) -> u64 {
        self.0.renewals_initial
    }
    /// Renewals of a still-valid token in its renew-ahead window.
    #[getter]
    fn renewals_ahead(&self) -> u64 {
        self.0.renewals_ahead
    }
    /// Renewals because the token had expired (or was revoked by the client).
    #[getter]
    fn renewals_expired(&self) -> u64 {
        self.0.renewals_expired
    }
    /// Renewals because an API rejected the token (a 401).
    #[getter]
    fn renewals_rejected(&self) -> u64 {
        self.0.renewals_rejected
    }
    /// Renewals asked for by `Client.refresh()`.
    #[getter]
    fn renewals_forced(&self) -> u64 {
        self.0.renewals_forced
    }
    /// Renewals, whatever their reason.
    #[getter]
    fn renewals(&self) -> u64 {
        self.0.renewals()
    }
    /// Renewals that adopted a token another process put in the shared store.
    #[getter]
    fn store_adoptions(&self) -> u64 {
        self.0.store_adoptions
    }
    /// Calls that waited for another caller's renewal.
    #[getter]
    fn waits(&self) -> u64 {
        self.0.waits
    }
    /// Seconds spent in those waits, summed over callers.
    #[getter]
    fn wait_time(&self) -> f64 {
        self.0.wait_time.as_secs_f64()
    }
    /// Waits that ended at the caller's deadline before the renewal did.
    #[getter]
    fn wait_timeouts(&self) -> u64 {
        self.0.wait_timeouts
    }
    /// Calls answered with the last failure because the failure backoff held.
    #[getter]
    fn backoff_refusals(&self) -> u64 {
        self.0.backoff_refusals
    }
    /// Requests sent again by `request` after a 401 and a renewal.
    #[getter]
    fn retries_after_401(&self) -> u64 {
        self.0.retries_after_401
    }
    /// Pending sign-ins an `AuthorizationCodeFlow` dropped beyond its bound, oldest first
    /// (each also logged as the `signin.evicted` warning). Counted by the flow's
    /// `stats()`; always 0 for a client.
    #[getter]
    fn signins_evicted(&self) -> u64 {
        self.0.signins_evicted
    }

    /// Requests sent once more with a server's DPoP nonce (RFC 9449 §8, §9): token
    /// requests refused `use_dpop_nonce`, and API requests answered 401
    /// `use_dpop_nonce` (by `request`, or as `dpop_nonce_retry` advised).
    #[getter]
    fn dpop_nonce_retries(&self) -> u64 {
        self.0.dpop_nonce_retries
    }

    /// Every counter by name (`wait_time` in seconds, the others counts), for metrics.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, value) in STATS_FIELDS.iter().zip(self.values()) {
            if *name == "wait_time" {
                d.set_item(name, value)?;
            } else {
                d.set_item(name, value as u64)?;
            }
        }
        Ok(d)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Stats>().is_ok_and(|o| o.get().0 == self.0)
    }

    fn __repr__(&self) -> String {
        let fields: Vec<String> = STATS_FIELDS
            .iter()
            .zip(self.values())
            .filter(|(_, v)| *v != 0.0)
            .map(|(name, v)| {
                if *name == "wait_time" {
                    format!("{name}={v:.3}")
                } else {
                    format!("{name}={}", v as u64)
                }
            })
            .collect();
        format!("<authcore.Stats {}>", fields.join(" "))
    }
}

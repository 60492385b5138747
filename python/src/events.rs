//! Events to Python: authcore's events (target `authcore` of the `log` facade) go to
//! the standard `logging` module's logger `authcore`, each record carrying the event's
//! name and facts as attributes (`record.event`, `record.reason`, …). Only authcore's
//! own events are passed on, never those of the libraries below it.
//!
//! The bridge is `pyo3-log`, which keeps each Python logger object but asks it for its
//! level at every event: a level set at any time is honoured. Events are raised on
//! renewals and failures, never when a cached token is handed out, so with the logger
//! disabled a call costs nothing and a renewal a few microseconds per event.
//!
//! The libraries below authcore log too (ureq: several debug lines per request). Their
//! records are turned away by one comparison of the target here, before `pyo3-log`'s
//! own filters, which cost about 2 000 instructions a record: 17 000 per request.

use log::{LevelFilter, Log, Metadata, Record};
use pyo3::prelude::*;

/// `pyo3-log`, for authcore's own events only.
struct AuthcoreOnly(pyo3_log::Logger);

/// The target of every authcore event.
const EVENTS: &str = "authcore";

/// Whether a record is one of authcore's events.
fn ours(metadata: &Metadata<'_>) -> bool {
    metadata.target() == EVENTS
}

impl Log for AuthcoreOnly {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        ours(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if ours(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Installs the bridge; called once when the module is imported. A logger another
/// Rust extension of this module's own copy installed first is left alone.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let logger = pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?
        .filter(LevelFilter::Off)
        .filter_target(EVENTS.to_owned(), LevelFilter::Debug);
    // Fails only if a logger is installed already (a second import of the same shared
    // object): that one serves.
    if log::set_boxed_logger(Box::new(AuthcoreOnly(logger))).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
    Ok(())
}

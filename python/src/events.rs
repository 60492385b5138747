//! Events to Python: authcore's events (target `authcore` of the `log` facade) go to
//! the standard `logging` module's logger `authcore`, each record carrying the event's
//! name and facts as attributes (`record.event`, `record.reason`, …). Only authcore's
//! own events are passed on, never those of the libraries below it.
//!
//! The bridge is `pyo3-log`, which keeps each Python logger object but asks it for its
//! level at every event: a level set at any time is honoured. Events are raised on
//! renewals and failures, never when a cached token is handed out, so with the logger
//! disabled a call costs nothing and a renewal a few microseconds per event.

use log::LevelFilter;
use pyo3::prelude::*;

/// Installs the bridge; called once when the module is imported. A logger another
/// Rust extension of this module's own copy installed first is left alone.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let logger = pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?
        .filter(LevelFilter::Off)
        .filter_target("authcore".to_owned(), LevelFilter::Debug);
    // Fails only if this module installed one already (a second import of the same
    // shared object): that one serves.
    let _ = logger.install();
    Ok(())
}

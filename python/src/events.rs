//! Events to Python: authcore's events (target `authcore` of the `log` facade) go to
//! the standard `logging` module's logger `authcore`, each record carrying the event's
//! name and facts as attributes of their own types (`record.event` and `record.reason`
//! are `str`, `record.attempt` and `record.status` `int`, `record.lifetime_s` `float`,
//! `record.dropped` and `record.retrying` `bool`). Only authcore's own events are passed
//! on, never those of the libraries below it (ureq logs several debug lines per
//! request): they are turned away by one comparison of the target.
//!
//! The logger's level is asked at every event, so a level set at any time is honoured.
//! Events are raised on renewals and failures, never when a cached token is handed out,
//! so with the logger disabled a call costs nothing and a renewal a few microseconds per
//! event. The package gives the logger a `logging.NullHandler`: a program that
//! configures no logging sees nothing, as the logging HOWTO asks of a library.
//!
//! The bridge is written here rather than taken from `pyo3-log`, which hands every
//! value to Python as a string.
//!
//! Ctrl-C during a call: Python runs a signal's handler in the main thread at the next
//! Python code it executes, and the logging code an event runs may be that code. A
//! `KeyboardInterrupt` (or any exception that is not an `Exception`, such as the
//! `SystemExit` of a handler) met there is kept for the call the event belongs to, which
//! raises it when it returns ([`detach`]); nothing more is logged on that thread until
//! then. Other exceptions of a filter or handler go to `sys.unraisablehook`.

use std::cell::RefCell;

use log::kv::{self, VisitSource, VisitValue};
use log::{Level, LevelFilter, Log, Metadata, Record};
use pyo3::exceptions::PyException;
use pyo3::marker::Ungil;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use pyo3::IntoPyObjectExt;

thread_local! {
    /// An interruption an event's logging code met on this thread, for the call it
    /// belongs to.
    static INTERRUPTED: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Runs `f` with the interpreter released, as `py.detach` does, then raises an
/// interruption (Ctrl-C's `KeyboardInterrupt`) that an event's logging code met
/// meanwhile on this thread: the call's outcome is dropped (a token obtained stays
/// cached) and the interruption reaches the caller rather than being lost.
pub(crate) fn detach<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Ungil,
    F: Ungil + FnOnce() -> T,
{
    let out = py.detach(f);
    match INTERRUPTED.with(|i| i.borrow_mut().take()) {
        Some(interrupt) => Err(interrupt),
        None => Ok(out),
    }
}

/// The target of every authcore event, and the name of its Python logger.
const EVENTS: &str = "authcore";

/// Whether a record is one of authcore's events.
fn ours(metadata: &Metadata<'_>) -> bool {
    metadata.target() == EVENTS
}

/// `logging.getLogger("authcore")`, looked up once (the `logging` module hands out one
/// logger object per name for the life of the process).
fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGER
        .get_or_try_init(py, || {
            py.import("logging")?
                .call_method1("getLogger", (EVENTS,))
                .map(Bound::unbind)
        })
        .map(|l| l.bind(py))
}

/// The `logging` level of a `log` level.
fn python_level(level: Level) -> u32 {
    match level {
        Level::Error => 40,
        Level::Warn => 30,
        Level::Info => 20,
        Level::Debug => 10,
        Level::Trace => 5,
    }
}

/// One value as the Python object of its type: integers, floats, booleans and strings
/// as themselves, an absent value (`None` in Rust) as `None`, anything else as its text.
struct ToPython<'py> {
    py: Python<'py>,
    value: Option<Bound<'py, PyAny>>,
}

impl<'py> ToPython<'py> {
    fn put<T: IntoPyObject<'py>>(&mut self, value: T) -> Result<(), kv::Error> {
        let value = value
            .into_bound_py_any(self.py)
            .map_err(|_| kv::Error::msg("a value Python could not take"))?;
        self.value = Some(value);
        Ok(())
    }
}

impl<'v> VisitValue<'v> for ToPython<'_> {
    fn visit_any(&mut self, value: kv::Value<'_>) -> Result<(), kv::Error> {
        self.put(value.to_string())
    }

    fn visit_null(&mut self) -> Result<(), kv::Error> {
        self.put(None::<bool>)
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
        self.put(value)
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
        self.put(value)
    }

    fn visit_u128(&mut self, value: u128) -> Result<(), kv::Error> {
        self.put(value)
    }

    fn visit_i128(&mut self, value: i128) -> Result<(), kv::Error> {
        self.put(value)
    }

    fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
        self.put(value)
    }

    fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
        self.put(value)
    }

    fn visit_str(&mut self, value: &str) -> Result<(), kv::Error> {
        self.put(value)
    }
}

/// Every key-value of a record into a dict (`extra=` of `Logger.makeRecord`).
struct Attributes<'a, 'py>(&'a Bound<'py, PyDict>);

impl<'kvs> VisitSource<'kvs> for Attributes<'_, '_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let mut converted = ToPython {
            py: self.0.py(),
            value: None,
        };
        value.visit(&mut converted)?;
        if let Some(v) = converted.value {
            self.0
                .set_item(key.as_str(), v)
                .map_err(|_| kv::Error::msg("an attribute Python could not take"))?;
        }
        Ok(())
    }
}

/// One record to the `authcore` logger, if it is enabled for the record's level.
fn emit(py: Python<'_>, record: &Record<'_>) -> PyResult<()> {
    let logger = logger(py)?;
    let level = python_level(record.level());
    if !logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
        return Ok(());
    }
    let extra = PyDict::new(py);
    // A value that cannot be converted leaves its attribute out; the record still goes.
    let _ = record.key_values().visit(&mut Attributes(&extra));
    let made = logger.call_method1(
        "makeRecord",
        (
            EVENTS,
            level,
            record.file(),
            record.line().unwrap_or_default(),
            record.args().to_string(),
            PyTuple::empty(py),
            py.None(),
            py.None(),
            extra,
        ),
    )?;
    logger.call_method1("handle", (made,))?;
    Ok(())
}

/// authcore's events to the `logging` module.
struct Bridge;

impl Log for Bridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        ours(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !ours(record.metadata()) {
            return;
        }
        // While the interpreter shuts down (a renewal on a thread of its own outliving
        // the program), the record is dropped rather than the thread stopped.
        let _ = Python::try_attach(|py| {
            // This thread's call is being interrupted: no more Python code until it
            // returns and raises the interruption.
            if INTERRUPTED.with(|i| i.borrow().is_some()) {
                return;
            }
            // An exception already set on this thread is kept for its owner.
            let pending = PyErr::take(py);
            if let Err(e) = emit(py, record) {
                if e.is_instance_of::<PyException>(py) {
                    // A filter or handler that raised: reported where Python reports
                    // what cannot be raised to a caller, never into the caller's call.
                    let context = logger(py).ok().cloned();
                    e.write_unraisable(py, context.as_ref());
                } else {
                    // Ctrl-C (or a signal handler's SystemExit): the caller's to see.
                    INTERRUPTED.with(|i| *i.borrow_mut() = Some(e));
                }
            }
            if let Some(e) = pending {
                e.restore(py);
            }
        });
    }

    fn flush(&self) {}
}

/// Installs the bridge; called once when the module is imported. A logger another
/// Rust extension of this module's own copy installed first is left alone.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    // Looked up now, while the import holds the interpreter.
    logger(py)?;
    // Fails only if a logger is installed already (a second import of the same shared
    // object): that one serves.
    static BRIDGE: Bridge = Bridge;
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
    Ok(())
}

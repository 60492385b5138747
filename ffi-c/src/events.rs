//! Events to C: authcore's events (target `authcore` of the `log` facade) handed to
//! one process-wide callback. Only authcore's own events are passed on, never those of
//! the libraries below it.

use std::cell::Cell;
use std::ffi::{c_char, c_void};

use parking_lot::RwLock;

use crate::{authcore_status, boundary, boundary_or, c_string_lossy, Failure};

/// How much authcore tells the log callback; each level includes those above it.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum authcore_log_level {
    /// Nothing: the callback is not called.
    Off = 0,
    /// Failures that cost the caller something (a hook or a save that failed).
    Error = 1,
    /// Failed renewals, backoff, waits given up, an unusable store.
    Warn = 2,
    /// Renewals (with their reason), rotations, tokens an API rejected.
    Info = 3,
    /// Every token request, answer and store use.
    Debug = 4,
    /// Everything, including what future versions add below debug.
    Trace = 5,
}

impl authcore_log_level {
    fn from_u32(level: u32) -> Option<Self> {
        [
            Self::Off,
            Self::Error,
            Self::Warn,
            Self::Info,
            Self::Debug,
            Self::Trace,
        ]
        .into_iter()
        .find(|l| *l as u32 == level)
    }

    fn filter(self) -> log::LevelFilter {
        match self {
            Self::Off => log::LevelFilter::Off,
            Self::Error => log::LevelFilter::Error,
            Self::Warn => log::LevelFilter::Warn,
            Self::Info => log::LevelFilter::Info,
            Self::Debug => log::LevelFilter::Debug,
            Self::Trace => log::LevelFilter::Trace,
        }
    }

    fn of(level: log::Level) -> Self {
        match level {
            log::Level::Error => Self::Error,
            log::Level::Warn => Self::Warn,
            log::Level::Info => Self::Info,
            log::Level::Debug => Self::Debug,
            log::Level::Trace => Self::Trace,
        }
    }
}

/// Receives one event: its level, its stable name (e.g. "token.renewed"; see the
/// README's table of events) and a one-line message with its facts. Both strings are
/// borrowed for the duration of the call and never contain a secret.
pub type authcore_log_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: authcore_log_level,
        event: *const c_char,
        message: *const c_char,
    ),
>;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, authcore_log_level, *const c_char, *const c_char),
    /// The caller's pointer, passed back as it is.
    userdata: usize,
}

/// The callback; read for every event (recursively: an event raised while another is
/// delivered on the same thread is dropped, see `DELIVERING`), replaced under the write
/// lock, which therefore waits for calls in progress.
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

thread_local! {
    /// Set while this thread is inside the callback.
    static DELIVERING: Cell<bool> = const { Cell::new(false) };
}

struct CLogger;

static LOGGER: CLogger = CLogger;

impl log::Log for CLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "authcore" || metadata.target().starts_with("authcore::")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) || DELIVERING.with(Cell::get) {
            return;
        }
        let sink = SINK.read_recursive();
        let Some(sink) = sink.as_ref() else {
            return;
        };
        let event = record
            .key_values()
            .get(log::kv::Key::from("event"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let event = c_string_lossy(event);
        let message = c_string_lossy(record.args().to_string());
        DELIVERING.with(|d| d.set(true));
        // SAFETY: the callback and its userdata are what the caller registered, valid
        // until it replaces them (which waits for this call: the read lock is held).
        unsafe {
            (sink.callback)(
                sink.userdata as *mut c_void,
                authcore_log_level::of(record.level()),
                event.as_ptr(),
                message.as_ptr(),
            )
        };
        DELIVERING.with(|d| d.set(false));
    }

    fn flush(&self) {}
}

/// Sends authcore's events at `level` and above to `callback`, for the whole process,
/// from whichever thread raises them (several at once: the callback must be
/// thread-safe). `userdata` is passed back as it is. `callback` NULL or level
/// `AUTHCORE_LOG_LEVEL_OFF` stops the events. When this returns, no call to a previous
/// callback is still in progress, so its userdata may be freed.
///
/// With no callback set an event costs one relaxed load; events are raised on renewals
/// and failures, never when a cached token is handed out.
///
/// An event is delivered on the thread that raised it, never while authcore holds a lock
/// of its own and never inside a lazy initialiser. The callback may call authcore
/// functions; events those raise on the same thread are dropped rather than delivered
/// recursively. An event of a renewal is raised on the thread that runs the renewal:
/// there, a call to that same client that would wait for that renewal
/// (`authcore_client_token` and the other token and request functions while no fresh
/// token is cached, `authcore_client_refresh`, `authcore_client_revoke`,
/// `authcore_client_sign_out`) fails at once
/// with `AUTHCORE_STATUS_CONFIG` instead of waiting for itself — hand such work to
/// another thread. Calling this function from inside the callback fails with
/// `AUTHCORE_STATUS_INVALID_ARGUMENT`, as does an unknown level.
///
/// # Safety
/// `callback` is NULL or a function that may be called with `userdata` from any thread
/// until this function is called again.
#[no_mangle]
pub unsafe extern "C" fn authcore_set_log_callback(
    level: u32,
    callback: authcore_log_fn,
    userdata: *mut c_void,
) -> authcore_status {
    boundary(|| {
        let level = authcore_log_level::from_u32(level)
            .ok_or_else(|| Failure::invalid(format!("{level} is not an authcore_log_level")))?;
        if DELIVERING.with(Cell::get) {
            return Err(Failure::invalid(
                "authcore_set_log_callback cannot be called from inside the log callback",
            ));
        }
        // Once per process; fails only if already installed, which is this logger.
        let _ = log::set_logger(&LOGGER);
        let sink = callback
            .filter(|_| level != authcore_log_level::Off)
            .map(|callback| Sink {
                callback,
                userdata: userdata as usize,
            });
        let on = sink.is_some();
        *SINK.write() = sink;
        log::set_max_level(if on {
            level.filter()
        } else {
            log::LevelFilter::Off
        });
        Ok(())
    })
}

/// A static, lowercase name of a log level ("off", "error", "warn", "info", "debug",
/// "trace"); unknown values get "unknown". Never NULL.
#[no_mangle]
pub extern "C" fn authcore_log_level_name(level: u32) -> *const c_char {
    boundary_or(c"unknown".as_ptr(), || {
        match authcore_log_level::from_u32(level) {
            Some(authcore_log_level::Off) => c"off",
            Some(authcore_log_level::Error) => c"error",
            Some(authcore_log_level::Warn) => c"warn",
            Some(authcore_log_level::Info) => c"info",
            Some(authcore_log_level::Debug) => c"debug",
            Some(authcore_log_level::Trace) => c"trace",
            None => c"unknown",
        }
        .as_ptr()
    })
}

//! libauthcore: the C ABI of [`authcore`].
//!
//! This crate translates types, errors and ownership; every behaviour (caching,
//! renewal, retries, parsing) lives in the core crate. The header `include/authcore.h`
//! is generated from these items by cbindgen.
//!
//! Conventions, which every function follows:
//! - fallible functions return an `authcore_status` and write their out-parameters only
//!   on success;
//! - every pointer argument is checked for NULL (`AUTHCORE_STATUS_NULL_ARGUMENT`) unless
//!   its documentation says it may be NULL;
//! - every body runs inside a panic boundary: a panic becomes `AUTHCORE_STATUS_PANIC`;
//! - the message of the last failure on the calling thread is available from
//!   `authcore_last_error_message`: every status-returning function sets it (to "" on
//!   success), every other function leaves it alone. One success carries a failure
//!   along: `authcore_client_sign_out` with `AUTHCORE_SIGN_OUT_REVOCATION_FAILED` leaves
//!   the provider's failure there (the session ended all the same).
#![deny(missing_docs)]
#![allow(non_camel_case_types)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use zeroize::Zeroize;

mod assertion;
mod client;
mod discovery;
mod events;
mod exchange;
mod flow;
mod options;
mod store;

pub use assertion::*;
pub use client::*;
pub use discovery::*;
pub use events::*;
pub use exchange::*;
pub use flow::*;
pub use options::*;
pub use store::*;

/// The result of every fallible authcore function.
///
/// Values 1 to 12 are the core error kinds (the same numbers as the Rust and Python
/// error kinds) and 99 a kind this library version does not know; values from 100 are
/// failures of the C interface itself. Every number keeps its meaning forever; a
/// retired number is never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum authcore_status {
    /// Success.
    Ok = 0,
    /// The client was configured wrongly (bad URL, plain HTTP to a remote host, ...).
    Config = 1,
    /// The connection failed: refused, reset, DNS, TLS.
    Transport = 2,
    /// A deadline passed.
    Timeout = 3,
    /// The token endpoint answered with an OAuth 2.0 error; see
    /// `authcore_last_error_oauth_error`.
    Oauth = 4,
    /// The endpoint answered with an API problem body.
    ApiProblem = 5,
    /// The endpoint refused because of rate limiting (HTTP 429).
    RateLimited = 6,
    /// The response could not be understood (HTML page, missing `access_token`, ...).
    InvalidResponse = 7,
    /// The `state` in an authorization callback did not match the one sent.
    StateMismatch = 8,
    /// The refresh token was refused and no other credential can obtain a new one.
    ReauthenticationRequired = 9,
    /// The shared token store could not be used (unreachable, refused the credentials,
    /// lost its lock) and renewing without it could cost a rotated refresh token.
    Store = 10,
    /// The issuer named by metadata or an authorization response is not the one
    /// configured (mix-up defence).
    IssuerMismatch = 11,
    /// The caller cancelled a wait (a device authorization).
    Cancelled = 12,
    /// A core error of a kind this library version does not know.
    Other = 99,
    /// A required pointer argument was NULL.
    NullArgument = 100,
    /// An argument was out of range or not valid UTF-8.
    InvalidArgument = 101,
    /// The caller's buffer is too small; the needed size was written.
    BufferTooSmall = 102,
    /// authcore panicked; the call did nothing observable. Please report it.
    Panic = 103,
}

impl authcore_status {
    fn from_kind(kind: authcore::ErrorKind) -> Self {
        use authcore::ErrorKind as K;
        match kind {
            K::Config => Self::Config,
            K::Transport => Self::Transport,
            K::Timeout => Self::Timeout,
            K::OAuth => Self::Oauth,
            K::ApiProblem => Self::ApiProblem,
            K::RateLimited => Self::RateLimited,
            K::InvalidResponse => Self::InvalidResponse,
            K::StateMismatch => Self::StateMismatch,
            K::ReauthenticationRequired => Self::ReauthenticationRequired,
            K::Store => Self::Store,
            K::IssuerMismatch => Self::IssuerMismatch,
            K::Cancelled => Self::Cancelled,
            _ => Self::Other,
        }
    }

    fn text(self) -> &'static CStr {
        match self {
            Self::Ok => c"ok",
            Self::Config => c"configuration error",
            Self::Transport => c"connection failed",
            Self::Timeout => c"timed out",
            Self::Oauth => c"OAuth error from the token endpoint",
            Self::ApiProblem => c"API problem response",
            Self::RateLimited => c"rate limited",
            Self::InvalidResponse => c"invalid response",
            Self::StateMismatch => c"authorization state mismatch",
            Self::ReauthenticationRequired => c"reauthentication required",
            Self::Store => c"token store unusable",
            Self::IssuerMismatch => c"issuer mismatch",
            Self::Cancelled => c"cancelled",
            Self::Other => c"other error",
            Self::NullArgument => c"NULL argument",
            Self::InvalidArgument => c"invalid argument",
            Self::BufferTooSmall => c"buffer too small",
            Self::Panic => c"internal panic",
        }
    }
}

/// A failure on its way to C: the status and what the thread-local error reports.
pub(crate) struct Failure {
    status: authcore_status,
    message: String,
    oauth: Option<(String, Option<String>)>,
    http_status: u16,
    retry_after_ms: u64,
}

impl Failure {
    pub(crate) fn new(status: authcore_status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
            oauth: None,
            http_status: 0,
            retry_after_ms: 0,
        }
    }

    pub(crate) fn null(name: &str) -> Self {
        Self::new(
            authcore_status::NullArgument,
            format!("argument `{name}` is NULL"),
        )
    }

    pub(crate) fn nul_byte() -> Self {
        Self::new(
            authcore_status::InvalidResponse,
            "the value contains a NUL byte and cannot be returned as a C string",
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(authcore_status::InvalidArgument, message)
    }
}

impl From<authcore::Error> for Failure {
    fn from(e: authcore::Error) -> Self {
        Failure {
            status: authcore_status::from_kind(e.kind()),
            message: e.to_string(),
            oauth: e.oauth().map(|o| (o.error.clone(), o.description.clone())),
            http_status: e.http_status().unwrap_or(0),
            retry_after_ms: e
                .retry_after()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        }
    }
}

/// The thread's last failure, kept as C strings so that pointers to it stay valid
/// until the next call on this thread.
#[derive(Default)]
struct LastError {
    status: u32,
    message: CString,
    oauth_error: Option<CString>,
    oauth_description: Option<CString>,
    http_status: u16,
    retry_after_ms: u64,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError::default());
}

fn c_string_lossy(s: String) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

fn record(result: Result<(), Failure>) -> authcore_status {
    let (status, last) = match result {
        Ok(()) => {
            // The hot path: a success after a success changes nothing (no allocation,
            // no write); only a success after a failure clears the record.
            let _ = LAST_ERROR.try_with(|slot| {
                if slot.borrow().status != 0 {
                    *slot.borrow_mut() = LastError::default();
                }
            });
            return authcore_status::Ok;
        }
        Err(f) => (
            f.status,
            LastError {
                status: f.status as u32,
                message: c_string_lossy(f.message),
                oauth_error: f.oauth.as_ref().map(|(e, _)| c_string_lossy(e.clone())),
                oauth_description: f.oauth.and_then(|(_, d)| d).map(c_string_lossy),
                http_status: f.http_status,
                retry_after_ms: f.retry_after_ms,
            },
        ),
    };
    // `try_with`: during thread teardown the slot may be gone; the status still returns.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = last);
    status
}

/// Runs a body that returns `Result<(), Failure>`, turning a panic into a status and
/// recording the outcome as the thread's last error.
pub(crate) fn boundary(body: impl FnOnce() -> Result<(), Failure>) -> authcore_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => record(result),
        Err(_) => record(Err(Failure::new(
            authcore_status::Panic,
            "authcore panicked; the call had no effect",
        ))),
    }
}

/// Like [`boundary`], for a body that can succeed with a failure to report alongside
/// (`Ok(Some(..))`): the call returns `AUTHCORE_STATUS_OK` and the thread's last error
/// holds that failure's details, for the caller to read when the outcome says so.
pub(crate) fn boundary_noting(
    body: impl FnOnce() -> Result<Option<Failure>, Failure>,
) -> authcore_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(Some(noted))) => {
            record(Err(noted));
            authcore_status::Ok
        }
        Ok(Ok(None)) => record(Ok(())),
        Ok(Err(f)) => record(Err(f)),
        Err(_) => record(Err(Failure::new(
            authcore_status::Panic,
            "authcore panicked; the call had no effect",
        ))),
    }
}

/// Runs an infallible body (accessors, `_free`) inside the panic boundary, returning
/// `fallback` if it panics.
pub(crate) fn boundary_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Returns `Err(Failure::null(..))` from the enclosing body when a pointer is NULL.
macro_rules! check_null {
    ($($p:ident),+ $(,)?) => {
        $(if $p.is_null() {
            return Err($crate::Failure::null(stringify!($p)));
        })+
    };
}
pub(crate) use check_null;

/// A required C string argument as `&str`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Failure::invalid(format!("argument `{name}` is not valid UTF-8")))
}

/// An optional C string argument: NULL becomes `None`.
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { arg_str(p, name) }.map(Some)
    }
}

/// Hands a string to C as an owned `char *` (free with `authcore_string_free`).
pub(crate) fn owned_c_string(s: &str) -> Result<*mut c_char, Failure> {
    c_string(s).map(CString::into_raw)
}

/// A value as a C string; a value with a NUL byte inside cannot be one.
pub(crate) fn c_string(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|e| {
        // The refused copy may hold a secret: wiped, not just freed.
        zeroize::Zeroize::zeroize(&mut e.into_vec());
        Failure::nul_byte()
    })
}

/// Writes `value` to `out` when `out` is not NULL.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn write_opt<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL and valid for writes, as the caller promises.
        unsafe { out.write(value) }
    }
}

/// A static, human-readable description of a status. Never NULL; unknown values get
/// "unknown status".
#[no_mangle]
pub extern "C" fn authcore_status_str(status: u32) -> *const c_char {
    let known = [
        authcore_status::Ok,
        authcore_status::Config,
        authcore_status::Transport,
        authcore_status::Timeout,
        authcore_status::Oauth,
        authcore_status::ApiProblem,
        authcore_status::RateLimited,
        authcore_status::InvalidResponse,
        authcore_status::StateMismatch,
        authcore_status::ReauthenticationRequired,
        authcore_status::Store,
        authcore_status::IssuerMismatch,
        authcore_status::Cancelled,
        authcore_status::Other,
        authcore_status::NullArgument,
        authcore_status::InvalidArgument,
        authcore_status::BufferTooSmall,
        authcore_status::Panic,
    ];
    known
        .iter()
        .find(|s| **s as u32 == status)
        .map_or(c"unknown status".as_ptr(), |s| s.text().as_ptr())
}

/// A short, stable, snake_case name of a status ("ok", "oauth", "null_argument", ...),
/// the same names the Rust and Python faces use for error kinds, for logs and metrics
/// that must match across hosts. It is the enumerator's name without the
/// `AUTHCORE_STATUS_` prefix, lowercased (`AUTHCORE_STATUS_API_PROBLEM` →
/// "api_problem"). For a sentence to show a person use `authcore_status_str`, and for
/// what went wrong this time `authcore_last_error_message`. Static; never NULL; unknown
/// values get "unknown".
#[no_mangle]
pub extern "C" fn authcore_status_name(status: u32) -> *const c_char {
    match status {
        0 => c"ok",
        1 => c"config",
        2 => c"transport",
        3 => c"timeout",
        4 => c"oauth",
        5 => c"api_problem",
        6 => c"rate_limited",
        7 => c"invalid_response",
        8 => c"state_mismatch",
        9 => c"reauthentication_required",
        10 => c"store",
        11 => c"issuer_mismatch",
        12 => c"cancelled",
        99 => c"other",
        100 => c"null_argument",
        101 => c"invalid_argument",
        102 => c"buffer_too_small",
        103 => c"panic",
        _ => c"unknown",
    }
    .as_ptr()
}

/// The message of the last failure on this thread. Never NULL; never contains a secret.
///
/// Exactly which calls change it: every function that returns an `authcore_status`
/// sets it — to the failure's message when it fails, to "" when it succeeds. Functions
/// that return anything else (accessors such as `authcore_token_scope` or
/// `authcore_response_status`, the `_free` functions, `authcore_status_str`,
/// `authcore_status_name`, `authcore_version` and the `authcore_last_error_*` functions
/// themselves) leave it as it is. So read it right after the call that failed, before
/// the next status-returning call on the same thread; store the pointer only until
/// then (it is valid until that next call). Each thread has its own.
#[no_mangle]
pub extern "C" fn authcore_last_error_message() -> *const c_char {
    boundary_or(c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|l| l.borrow().message.as_ptr())
            .unwrap_or(c"".as_ptr())
    })
}

/// The status of the last authcore call on this thread (`AUTHCORE_STATUS_OK` after a
/// success).
#[no_mangle]
pub extern "C" fn authcore_last_error_status() -> u32 {
    boundary_or(authcore_status::Panic as u32, || {
        LAST_ERROR.try_with(|l| l.borrow().status).unwrap_or(0)
    })
}

/// The OAuth `error` code (e.g. "invalid_client") of the last failure on this thread,
/// or NULL if it was not an OAuth error. Valid until the next authcore call on this
/// thread.
#[no_mangle]
pub extern "C" fn authcore_last_error_oauth_error() -> *const c_char {
    boundary_or(std::ptr::null(), || {
        LAST_ERROR
            .try_with(|l| {
                l.borrow()
                    .oauth_error
                    .as_ref()
                    .map_or(std::ptr::null(), |s| s.as_ptr())
            })
            .unwrap_or(std::ptr::null())
    })
}

/// The OAuth `error_description` of the last failure on this thread, or NULL if there
/// was none. Valid until the next authcore call on this thread.
#[no_mangle]
pub extern "C" fn authcore_last_error_oauth_description() -> *const c_char {
    boundary_or(std::ptr::null(), || {
        LAST_ERROR
            .try_with(|l| {
                l.borrow()
                    .oauth_description
                    .as_ref()
                    .map_or(std::ptr::null(), |s| s.as_ptr())
            })
            .unwrap_or(std::ptr::null())
    })
}

/// The HTTP status of the response behind the last failure on this thread, or 0.
#[no_mangle]
pub extern "C" fn authcore_last_error_http_status() -> u16 {
    boundary_or(0, || {
        LAST_ERROR.try_with(|l| l.borrow().http_status).unwrap_or(0)
    })
}

/// The delay the server asked for (`Retry-After`) in the last failure on this thread,
/// in milliseconds, or 0.
#[no_mangle]
pub extern "C" fn authcore_last_error_retry_after_ms() -> u64 {
    boundary_or(0, || {
        LAST_ERROR
            .try_with(|l| l.borrow().retry_after_ms)
            .unwrap_or(0)
    })
}

/// Frees a string returned by authcore through a `char **` out-parameter, first
/// overwriting it with zeros (it may hold a token). NULL does nothing.
///
/// # Safety
/// `s` is NULL or a string from authcore not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_string_free(s: *mut c_char) {
    boundary_or((), || {
        if s.is_null() {
            return;
        }
        // SAFETY: `s` came from `CString::into_raw` in this library and is freed once.
        let owned = unsafe { CString::from_raw(s) };
        owned.into_bytes_with_nul().zeroize();
    })
}

/// The library version, e.g. "0.1.0". Static; never NULL.
#[no_mangle]
pub extern "C" fn authcore_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_kind_keeps_its_number() {
        for kind in authcore::ErrorKind::ALL {
            assert_eq!(authcore_status::from_kind(kind) as u32, kind.code());
        }
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = boundary(|| panic!("boom"));
        assert_eq!(status, authcore_status::Panic);
        assert_eq!(authcore_last_error_status(), authcore_status::Panic as u32);
        // SAFETY: the pointer is a valid NUL-terminated string owned by the thread slot.
        let message = unsafe { CStr::from_ptr(authcore_last_error_message()) };
        assert!(message.to_str().unwrap().contains("panicked"));
        assert_eq!(boundary(|| Ok(())), authcore_status::Ok);
        // SAFETY: as above.
        let message = unsafe { CStr::from_ptr(authcore_last_error_message()) };
        assert!(message.to_bytes().is_empty());
    }

    #[test]
    fn status_names_match_the_core_kind_names() {
        for kind in authcore::ErrorKind::ALL {
            // SAFETY: static NUL-terminated strings.
            let name = unsafe { CStr::from_ptr(authcore_status_name(kind.code())) };
            assert_eq!(name.to_str().unwrap(), kind.name());
        }
    }

    #[test]
    fn the_header_names_the_current_range_of_core_kinds() {
        let last = authcore::ErrorKind::ALL
            .iter()
            .map(|k| k.code())
            .max()
            .unwrap();
        let header = include_str!("../../include/authcore.h");
        let said = format!("Values 1 to {last} are the core error kinds");
        assert!(header.contains(&said), "the header should say: {said}");
        assert!(authcore::ErrorKind::ALL
            .iter()
            .all(|k| (1..=last).contains(&k.code())));
    }

    #[test]
    fn status_strings_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for code in (0..=12).chain([99, 100, 101, 102, 103]) {
            // SAFETY: static NUL-terminated strings.
            let text = unsafe { CStr::from_ptr(authcore_status_str(code)) };
            assert!(seen.insert(text.to_owned()), "{code}");
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(authcore_status_str(7777)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown status");
    }
}

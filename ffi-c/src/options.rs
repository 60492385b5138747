//! `authcore_options`: client settings as a handle with setters, so that new settings
//! never change the size of anything the caller allocates.

use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

use zeroize::Zeroize;

use crate::{arg_str, authcore_status, boundary, boundary_or, check_null, Failure};

/// Client settings. Made by `authcore_options_new`, changed by the setters, passed
/// to constructors (which copy it), released by `authcore_options_free`.
pub struct authcore_options {
    pub(crate) inner: authcore::Options,
}

/// Called with the new refresh token each time the provider rotates it, before the
/// new access token is handed out, so that it can be persisted.
///
/// `refresh_token` is NUL-terminated and valid only during the call (it is zeroed
/// afterwards); copy it to keep it. The callback runs on whichever thread performed the
/// renewal and must not call back into the client being renewed (a token call would
/// wait for the renewal it is part of; freeing it is undefined).
pub type authcore_refresh_token_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, refresh_token: *const c_char)>;

/// The caller's `userdata` pointer, which the caller promises may be used from any
/// thread for as long as the client lives.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: the documented contract of `authcore_options_set_refresh_token_callback`
// requires `userdata` to be usable from any thread.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

/// Makes a settings handle with the defaults (connect timeout 5 s, overall 30 s,
/// HTTPS required except on loopback).
///
/// # Safety
/// `out` is NULL or valid for a write of a pointer.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_new(out: *mut *mut authcore_options) -> authcore_status {
    boundary(|| {
        check_null!(out);
        let handle = Box::new(authcore_options {
            inner: authcore::Options::default(),
        });
        // SAFETY: `out` is non-NULL and the caller promises it is writable.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Releases a settings handle. NULL does nothing. Clients made with it are unaffected.
///
/// # Safety
/// `options` is NULL or a handle from `authcore_options_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_free(options: *mut authcore_options) {
    boundary_or((), || {
        if !options.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(options) });
        }
    })
}

/// Applies one builder step to a handle.
///
/// # Safety
/// `options` is NULL or a live handle not used by another thread during the call.
unsafe fn update(
    options: *mut authcore_options,
    step: impl FnOnce(authcore::Options) -> Result<authcore::Options, Failure>,
) -> authcore_status {
    boundary(|| {
        check_null!(options);
        // SAFETY: non-NULL live handle, exclusively ours for the call.
        let o = unsafe { &mut *options };
        o.inner = step(std::mem::take(&mut o.inner))?;
        Ok(())
    })
}

fn positive_ms(ms: u64, what: &str) -> Result<Duration, Failure> {
    if ms == 0 {
        return Err(Failure::invalid(format!("{what} must be at least 1 ms")));
    }
    Ok(Duration::from_millis(ms))
}

/// Sets the time allowed to establish a connection, in milliseconds (> 0).
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_connect_timeout_ms(
    options: *mut authcore_options,
    ms: u64,
) -> authcore_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        update(options, |o| {
            Ok(o.connect_timeout(positive_ms(ms, "connect timeout")?))
        })
    }
}

/// Sets the time allowed for a whole request, in milliseconds (> 0).
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_timeout_ms(
    options: *mut authcore_options,
    ms: u64,
) -> authcore_status {
    // SAFETY: forwarded from the caller.
    unsafe { update(options, |o| Ok(o.timeout(positive_ms(ms, "timeout")?))) }
}

/// Sets how long a caller waits for another thread's renewal, in milliseconds (> 0).
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_wait_timeout_ms(
    options: *mut authcore_options,
    ms: u64,
) -> authcore_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        update(options, |o| {
            Ok(o.wait_timeout(positive_ms(ms, "wait timeout")?))
        })
    }
}

/// Sets how many times a failed token request is retried when that is safe.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_max_retries(
    options: *mut authcore_options,
    retries: u32,
) -> authcore_status {
    // SAFETY: forwarded from the caller.
    unsafe { update(options, |o| Ok(o.max_retries(retries))) }
}

/// Sets the largest response body read, in bytes (> 0).
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_max_body_bytes(
    options: *mut authcore_options,
    bytes: u64,
) -> authcore_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        update(options, |o| {
            if bytes == 0 {
                return Err(Failure::invalid("max body bytes must be at least 1"));
            }
            Ok(o.max_body_bytes(bytes))
        })
    }
}

/// Sets the lifetime assumed for tokens whose response states none, in seconds;
/// 0 means such tokens never expire.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_default_lifetime_secs(
    options: *mut authcore_options,
    secs: u64,
) -> authcore_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        update(options, |o| {
            Ok(o.default_lifetime((secs > 0).then(|| Duration::from_secs(secs))))
        })
    }
}

/// Sets the wait after a failed renewal: `first_ms`, doubling up to `max_ms`.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_failure_backoff_ms(
    options: *mut authcore_options,
    first_ms: u64,
    max_ms: u64,
) -> authcore_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        update(options, |o| {
            if max_ms < first_ms {
                return Err(Failure::invalid("backoff maximum is below its first step"));
            }
            Ok(o.failure_backoff(
                Duration::from_millis(first_ms),
                Duration::from_millis(max_ms),
            ))
        })
    }
}

/// Allows plain `http://` token and API URLs to non-loopback hosts. Off by default;
/// loopback addresses are always allowed. Only for tests against local fakes.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_danger_allow_insecure_http(
    options: *mut authcore_options,
    allow: bool,
) -> authcore_status {
    // SAFETY: forwarded from the caller.
    unsafe { update(options, |o| Ok(o.danger_allow_insecure_http(allow))) }
}

/// Adds a header sent with every token request (e.g. api.video's `AV-Origin-App`).
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `name` and
/// `value` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_add_token_request_header(
    options: *mut authcore_options,
    name: *const c_char,
    value: *const c_char,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises NUL-terminated strings.
        let (name, value) = unsafe { (arg_str(name, "name")?, arg_str(value, "value")?) };
        Ok(o.token_request_header(name, value))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Sets the callback told about every rotated refresh token (see
/// `authcore_refresh_token_callback`); NULL `callback` removes it. `userdata` is
/// passed back unchanged and must stay valid, and usable from any thread, for as long
/// as any client made with these options lives.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `callback`
/// is NULL or a function following the callback contract.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_refresh_token_callback(
    options: *mut authcore_options,
    callback: authcore_refresh_token_callback,
    userdata: *mut c_void,
) -> authcore_status {
    let userdata = UserData(userdata);
    let step = move |o: authcore::Options| {
        let Some(callback) = callback else {
            return Ok(o.clear_refresh_token_hook());
        };
        Ok(o.on_refresh_token(move |secret| {
            let userdata = userdata;
            let Ok(c) = CString::new(secret.expose_secret()) else {
                return;
            };
            // SAFETY: the caller promised `callback` follows the contract; the string
            // lives until after the call.
            unsafe { callback(userdata.0, c.as_ptr()) };
            c.into_bytes_with_nul().zeroize();
        }))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

//! `authcore_assertion_source`: where a short-lived credential someone else issues comes
//! from (a federated client assertion, a JWT bearer grant's assertion), read again for
//! every token request. The setters and constructors that take one copy it.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use authcore::{AssertionSource, HookError, Secret};
use zeroize::Zeroize;

use crate::{
    arg_str, authcore_options, authcore_status, boundary, boundary_or, check_null, Failure,
};

/// Where an assertion comes from. Made by one of the `authcore_assertion_source_*`
/// constructors, passed to setters and constructors (which copy it), released by
/// `authcore_assertion_source_free`. Nothing it yields is ever printed.
pub struct authcore_assertion_source {
    pub(crate) inner: AssertionSource,
}

/// Largest assertion a callback may write (a JWT is a few KiB).
pub const AUTHCORE_ASSERTION_MAX_BYTES: usize = 64 * 1024;

/// Called for every token request that needs an assertion: writes the assertion into
/// `buffer` (`capacity` bytes, `AUTHCORE_ASSERTION_MAX_BYTES`), its length into `*len`,
/// and returns 0; anything else fails the request with `AUTHCORE_STATUS_CONFIG`.
///
/// - The buffer is wiped after the call; nothing needs freeing.
/// - It may run on any thread, concurrently for different clients made with the same
///   source, and must not call back into the client it serves.
/// - It must not unwind: a C++ exception or `longjmp` out of it is undefined behaviour.
pub type authcore_assertion_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        buffer: *mut c_char,
        capacity: usize,
        len: *mut usize,
    ) -> i32,
>;

/// The caller's `userdata`, which the caller promises may be used from any thread for
/// as long as the source (and every client made with it) lives.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: the documented contract of `authcore_assertion_source_callback` requires
// `userdata` to be usable from any thread.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

/// Hands a source out through `out`.
///
/// # Safety
/// `out` is non-NULL and writable.
unsafe fn hand_out(out: *mut *mut authcore_assertion_source, inner: AssertionSource) {
    let handle = Box::into_raw(Box::new(authcore_assertion_source { inner }));
    // SAFETY: the caller checked `out` and promises it is writable.
    unsafe { out.write(handle) };
}

/// A fixed assertion, sent as it is (when it expires, every request fails: prefer a
/// file, a command or a callback for values renewed elsewhere).
///
/// # Safety
/// `value` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_assertion_source_literal(
    value: *const c_char,
    out: *mut *mut authcore_assertion_source,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises a NUL-terminated string.
        let value = unsafe { arg_str(value, "value")? };
        // SAFETY: `out` checked above.
        unsafe { hand_out(out, AssertionSource::literal(value)) };
        Ok(())
    })
}

/// A file read again for every token request (a Kubernetes projected token,
/// `AZURE_FEDERATED_TOKEN_FILE`); surrounding whitespace is trimmed. A missing or empty
/// file is `AUTHCORE_STATUS_CONFIG` naming it, when a token is requested.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_assertion_source_file(
    path: *const c_char,
    out: *mut *mut authcore_assertion_source,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises a NUL-terminated string.
        let path = unsafe { arg_str(path, "path")? };
        if path.is_empty() {
            return Err(Failure::invalid("an assertion file needs a path"));
        }
        // SAFETY: `out` checked above.
        unsafe { hand_out(out, AssertionSource::file(path)) };
        Ok(())
    })
}

/// A program run for every token request, without a shell; its standard output
/// (trimmed) is the assertion. `args` holds `nargs` NUL-terminated strings (NULL when
/// `nargs` is 0); `timeout_ms` bounds each run (0: 10 s). A non-zero exit, an empty
/// output or a timeout fails the request, naming the program (never its output).
///
/// # Safety
/// `program` is a NUL-terminated string; `args` is NULL (with `nargs` 0) or points to
/// `nargs` NUL-terminated strings; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_assertion_source_command(
    program: *const c_char,
    args: *const *const c_char,
    nargs: usize,
    timeout_ms: u64,
    out: *mut *mut authcore_assertion_source,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        if args.is_null() && nargs > 0 {
            return Err(Failure::null("args"));
        }
        // SAFETY: the caller promises a NUL-terminated string.
        let program = unsafe { arg_str(program, "program")? };
        if program.is_empty() {
            return Err(Failure::invalid("an assertion command needs a program"));
        }
        let mut list = Vec::with_capacity(nargs.min(1024));
        for i in 0..nargs {
            // SAFETY: the caller promises `nargs` readable pointers.
            let p = unsafe { *args.add(i) };
            // SAFETY: each is a NUL-terminated string, as promised.
            list.push(unsafe { arg_str(p, "args[i]")? }.to_owned());
        }
        let mut source = AssertionSource::command(program, list);
        if timeout_ms > 0 {
            source = source.timeout(Duration::from_millis(timeout_ms));
        }
        // SAFETY: `out` checked above.
        unsafe { hand_out(out, source) };
        Ok(())
    })
}

/// A callback called for every token request (see `authcore_assertion_callback`).
/// `userdata` is passed back unchanged and must stay valid, and usable from any thread,
/// for as long as the source or any client made with it lives.
///
/// # Safety
/// `callback` follows the callback contract; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_assertion_source_callback(
    callback: authcore_assertion_callback,
    userdata: *mut c_void,
    out: *mut *mut authcore_assertion_source,
) -> authcore_status {
    let userdata = UserData(userdata);
    boundary(move || {
        check_null!(out);
        let Some(callback) = callback else {
            return Err(Failure::null("callback"));
        };
        let source = AssertionSource::callback(move || {
            let userdata = userdata;
            let mut buffer = vec![0u8; AUTHCORE_ASSERTION_MAX_BYTES];
            let mut len = 0usize;
            // SAFETY: the caller promised `callback` follows the contract; the buffer
            // has `capacity` writable bytes and outlives the call.
            let rc = unsafe {
                callback(
                    userdata.0,
                    buffer.as_mut_ptr().cast::<c_char>(),
                    buffer.len(),
                    &mut len,
                )
            };
            let outcome = if rc != 0 {
                Err(HookError::from(format!("it returned {rc}")))
            } else if len > buffer.len() {
                Err(HookError::from(format!(
                    "it wrote a length of {len}, more than the buffer's {}",
                    buffer.len()
                )))
            } else {
                match std::str::from_utf8(&buffer[..len]) {
                    Ok(text) => Ok(Secret::new(text)),
                    Err(_) => Err(HookError::from("the assertion it wrote is not UTF-8")),
                }
            };
            buffer.zeroize();
            outcome
        });
        // SAFETY: `out` checked above.
        unsafe { hand_out(out, source) };
        Ok(())
    })
}

/// Another client's access token (chained token exchange): that client renews it as
/// usual; when a server refuses the token it was given, it is invalidated there and the
/// next one tried once. The source holds its own reference: `client` may be freed.
///
/// # Safety
/// `client` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_assertion_source_client(
    client: *const crate::authcore_client,
    out: *mut *mut authcore_assertion_source,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: non-NULL live handle, only read.
        let client = unsafe { (*client).inner.clone() };
        // SAFETY: `out` checked above.
        unsafe { hand_out(out, AssertionSource::client(client)) };
        Ok(())
    })
}

/// Releases a source. NULL does nothing. Clients and options made with it keep their
/// own copy.
///
/// # Safety
/// `source` is NULL or a handle from a constructor here not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_assertion_source_free(source: *mut authcore_assertion_source) {
    boundary_or((), || {
        if !source.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(source) });
        }
    })
}

/// Borrows a live source handle.
///
/// # Safety
/// `source` is non-NULL and live for `'a`.
pub(crate) unsafe fn source_ref<'a>(
    source: *const authcore_assertion_source,
) -> &'a AssertionSource {
    // SAFETY: forwarded from the caller.
    unsafe { &(*source).inner }
}

/// OAuth grants made with these options authenticate the client with a federated
/// client assertion (RFC 7523 §2.2) from `source` instead of a secret (the method
/// becomes `AUTHCORE_AUTH_METHOD_CLIENT_ASSERTION`); NULL removes it. The source is
/// copied: it may be freed afterwards.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `source` is
/// NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_client_assertion(
    options: *mut authcore_options,
    source: *const authcore_assertion_source,
) -> authcore_status {
    boundary(|| {
        check_null!(options);
        // SAFETY: non-NULL live handle, exclusively ours for the call.
        let o = unsafe { &mut *options };
        o.oauth.client_assertion = if source.is_null() {
            None
        } else {
            // SAFETY: non-NULL live handle, only read.
            Some(unsafe { source_ref(source) }.clone())
        };
        Ok(())
    })
}

//! `authcore_code_flow` (the authorization code grant: PKCE, one-time `state`) and
//! `authcore_device_flow` (the device authorization grant), each ending in an
//! `authcore_client` that renews with the refresh token.

use std::ffi::c_char;

use std::time::Duration;

use authcore::grant::{AuthorizationCode, DeviceCode, WithOAuthSettings};
use authcore::{AuthorizationCodeFlow, DeviceAuthorization, DeviceFlow};

use crate::client::{
    auth_method, authcore_stats, hand_out, oauth_or_default, options_or_default, split_scopes,
    write_stats,
};
use crate::{
    arg_str, authcore_client, authcore_metadata, authcore_options, authcore_status, boundary,
    boundary_or, check_null, opt_str, owned_c_string, Failure,
};

/// A running authorization code flow. Make the URL with
/// `authcore_code_flow_authorization_url`, keep its `state` in the user's session, send
/// the user there, then hand the callback URL and that `state` to
/// `authcore_code_flow_finish_with_state`. Safe to use from many threads once set up
/// (the `authcore_code_flow_set_*` functions are called before it is shared).
pub struct authcore_code_flow {
    inner: AuthorizationCodeFlow,
}

/// Boxes a flow into `out`.
///
/// # Safety
/// `out` is non-NULL and writable.
unsafe fn hand_out_flow(out: *mut *mut authcore_code_flow, flow: AuthorizationCodeFlow) {
    // SAFETY: the caller checked `out` and promises it is writable.
    unsafe { out.write(Box::into_raw(Box::new(authcore_code_flow { inner: flow }))) };
}

/// An authorization code flow at any OAuth 2.0 server. `scopes` is space-separated or
/// NULL; `json_body` sends JSON token requests with the credentials in the body,
/// otherwise form bodies with `auth_method`; `pkce` adds an S256 challenge (recommended).
///
/// # Safety
/// String arguments are NUL-terminated (`scopes` may be NULL); `options` is NULL or a
/// live handle; `out` is writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn authcore_code_flow_new(
    authorize_url: *const c_char,
    token_url: *const c_char,
    client_id: *const c_char,
    client_secret: *const c_char,
    redirect_uri: *const c_char,
    scopes: *const c_char,
    json_body: bool,
    auth_method: u32,
    pkce: bool,
    options: *const authcore_options,
    out: *mut *mut authcore_code_flow,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (authorize, token, id, secret, redirect, scopes) = unsafe {
            (
                arg_str(authorize_url, "authorize_url")?,
                arg_str(token_url, "token_url")?,
                arg_str(client_id, "client_id")?,
                arg_str(client_secret, "client_secret")?,
                arg_str(redirect_uri, "redirect_uri")?,
                opt_str(scopes, "scopes")?,
            )
        };
        let mut config = AuthorizationCode::new(authorize, token, id, secret, redirect)
            .scopes(split_scopes(scopes))
            .auth_method(self::auth_method(auth_method)?)
            .pkce(pkce)
            // SAFETY: the caller promises a live handle or NULL.
            .with_settings(unsafe { oauth_or_default(options) });
        if json_body {
            config = config.json_body();
        }
        // SAFETY: the caller promises a live handle or NULL.
        let flow = AuthorizationCodeFlow::new(config, unsafe { options_or_default(options) })?;
        // SAFETY: checked above.
        unsafe { hand_out_flow(out, flow) };
        Ok(())
    })
}

/// An authorization code flow at the endpoints of discovered `metadata` (PKCE on).
/// Callbacks must carry that issuer's `iss` when the server sends one (RFC 9207), else
/// `AUTHCORE_STATUS_ISSUER_MISMATCH` and no token request. `client_secret` NULL: a
/// public client.
///
/// # Safety
/// `metadata` is a live handle; string arguments are NUL-terminated (`client_secret`
/// and `scopes` may be NULL); `options` is NULL or a live handle; `out` is writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn authcore_code_flow_new_from_metadata(
    metadata: *const authcore_metadata,
    client_id: *const c_char,
    client_secret: *const c_char,
    redirect_uri: *const c_char,
    scopes: *const c_char,
    auth_method: u32,
    options: *const authcore_options,
    out: *mut *mut authcore_code_flow,
) -> authcore_status {
    boundary(|| {
        check_null!(metadata, out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (id, secret, redirect, scopes) = unsafe {
            (
                arg_str(client_id, "client_id")?,
                opt_str(client_secret, "client_secret")?,
                arg_str(redirect_uri, "redirect_uri")?,
                opt_str(scopes, "scopes")?,
            )
        };
        // SAFETY: non-NULL live handle, only read.
        let metadata = unsafe { &(*metadata).inner };
        let config =
            AuthorizationCode::from_metadata(metadata, id, secret.unwrap_or(""), redirect)?
                .scopes(split_scopes(scopes))
                .auth_method(self::auth_method(auth_method)?)
                // SAFETY: the caller promises a live handle or NULL.
                .with_settings(unsafe { oauth_or_default(options) });
        // SAFETY: the caller promises a live handle or NULL.
        let flow = AuthorizationCodeFlow::new(config, unsafe { options_or_default(options) })?;
        // SAFETY: checked above.
        unsafe { hand_out_flow(out, flow) };
        Ok(())
    })
}

/// A viewneo authorization code flow (JSON token requests). `base_url` NULL means
/// `https://cloud.viewneo.com`; `scopes` is space-separated or NULL.
///
/// # Safety
/// String arguments are NUL-terminated (`base_url` and `scopes` may be NULL);
/// `options` is NULL or a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_code_flow_new_viewneo(
    base_url: *const c_char,
    client_id: *const c_char,
    client_secret: *const c_char,
    redirect_uri: *const c_char,
    scopes: *const c_char,
    options: *const authcore_options,
    out: *mut *mut authcore_code_flow,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (base, id, secret, redirect, scopes) = unsafe {
            (
                opt_str(base_url, "base_url")?,
                arg_str(client_id, "client_id")?,
                arg_str(client_secret, "client_secret")?,
                arg_str(redirect_uri, "redirect_uri")?,
                opt_str(scopes, "scopes")?,
            )
        };
        let config = match base {
            Some(base) => AuthorizationCode::viewneo_at(base, id, secret, redirect),
            None => AuthorizationCode::viewneo(id, secret, redirect),
        }
        .scopes(split_scopes(scopes));
        // SAFETY: the caller promises a live handle or NULL.
        let flow = AuthorizationCodeFlow::new(config, unsafe { options_or_default(options) })?;
        // SAFETY: checked above.
        unsafe { hand_out_flow(out, flow) };
        Ok(())
    })
}

/// Makes the URL for one sign-in, with a fresh `state` and PKCE verifier from the OS
/// random source. `*url` receives an owned string; `*state` (if `state` is not NULL)
/// the `state` sent: keep it in the user's session and pass it to
/// `authcore_code_flow_finish_with_state`. Free both with `authcore_string_free`. Any
/// number of sign-ins may be in flight at once (each for 10 minutes by default); a flow
/// keeps at most 1024 in memory and beyond that drops the oldest, raising the
/// `signin.evicted` warning and counting it in `authcore_code_flow_stats` (sealed
/// sign-ins, `authcore_code_flow_finish_pending`, need no room and are never dropped).
///
/// # Safety
/// `flow` is a live handle; `url` is writable; `state` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_code_flow_authorization_url(
    flow: *const authcore_code_flow,
    url: *mut *mut c_char,
    state: *mut *mut c_char,
) -> authcore_status {
    // SAFETY: forwarded from the caller; `pending` is NULL.
    unsafe { authcore_code_flow_authorization_url_pending(flow, url, state, std::ptr::null_mut()) }
}

/// `authcore_code_flow_authorization_url`, and, if `pending` is not NULL, the sign-in
/// as an opaque string sealed under the flow's pending key, for a server whose callback
/// may land in another process: keep it in the user's server-side session and pass it
/// to `authcore_code_flow_finish_pending`. It holds the PKCE verifier (encrypted): never
/// send it to the browser. Free every string with `authcore_string_free` (which zeroes
/// it).
///
/// # Safety
/// `flow` is a live handle; `url` is writable; `state` and `pending` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_code_flow_authorization_url_pending(
    flow: *const authcore_code_flow,
    url: *mut *mut c_char,
    state: *mut *mut c_char,
    pending: *mut *mut c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(flow, url);
        // SAFETY: checked non-NULL; live as promised.
        let request = unsafe { &(*flow).inner }.authorization_url()?;
        // Every string is made before any is handed out, so a failure leaves nothing.
        let made = [
            Some(request.url.as_str()),
            (!state.is_null()).then_some(request.state.as_str()),
            (!pending.is_null()).then_some(request.pending.expose_secret()),
        ];
        let mut owned: [*mut c_char; 3] = [std::ptr::null_mut(); 3];
        for (slot, value) in owned.iter_mut().zip(made) {
            if let Some(value) = value {
                match owned_c_string(value) {
                    Ok(s) => *slot = s,
                    Err(e) => {
                        for s in owned {
                            // SAFETY: made by `owned_c_string` here and not handed out
                            // (NULL for the slots not made).
                            unsafe { crate::authcore_string_free(s) };
                        }
                        return Err(e);
                    }
                }
            }
        }
        // SAFETY: checked non-NULL (or skipped when NULL); writable as promised.
        unsafe {
            url.write(owned[0]);
            if !state.is_null() {
                state.write(owned[1]);
            }
            if !pending.is_null() {
                pending.write(owned[2]);
            }
        }
        Ok(())
    })
}

/// Finishes a sign-in from the URL the provider redirected the user to (the full URL,
/// or the path with its query string) and `state`, the state
/// `authcore_code_flow_authorization_url` gave for **this user's** sign-in, kept in
/// their session: it binds the sign-in to the browser that started it, so that a
/// callback link someone else obtained cannot sign this user in (login CSRF). Exchanges
/// the code and hands back a client that renews with the refresh token. An `error=`
/// callback gives `AUTHCORE_STATUS_OAUTH`; a callback whose `state` is not `state`, or
/// unknown, expired or already used, gives `AUTHCORE_STATUS_STATE_MISMATCH` and leaves
/// every other sign-in as it was; `state` NULL or empty gives `AUTHCORE_STATUS_CONFIG`.
/// No token request is made for any of these.
///
/// This replaces `authcore_code_flow_finish(flow, callback_url, out)`, which finished
/// whichever sign-in a callback named; programs built against it must be rebuilt.
///
/// # Safety
/// `flow` is a live handle; `callback_url` is NUL-terminated; `state` is NULL or
/// NUL-terminated; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_code_flow_finish_with_state(
    flow: *const authcore_code_flow,
    callback_url: *const c_char,
    state: *const c_char,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(flow, out);
        // SAFETY: the caller promises NUL-terminated strings (`state` may be NULL).
        let (callback, state) = unsafe {
            (
                arg_str(callback_url, "callback_url")?,
                opt_str(state, "state")?,
            )
        };
        // SAFETY: checked non-NULL; live as promised.
        let client = unsafe { &(*flow).inner }.finish(callback, state.unwrap_or(""))?;
        // SAFETY: checked above.
        unsafe { hand_out(out, client) };
        Ok(())
    })
}

/// `authcore_code_flow_finish_with_state` for a sign-in started in another process (or
/// before a restart), from the sealed `pending` string
/// `authcore_code_flow_authorization_url_pending` gave, kept in the user's server-side
/// session. The callback's `state` must be that sign-in's. A pending string that is
/// altered or truncated, made by a flow with another authorize URL, client id or
/// redirect URI, sealed under another pending key (see
/// `authcore_code_flow_set_pending_key`; without one it opens only in the flow that made
/// it), started more than 60 s in the future, or not made by authcore, is
/// `AUTHCORE_STATUS_CONFIG`; an expired one `AUTHCORE_STATUS_STATE_MISMATCH`. No token
/// request is made for any of these. Needs no memory in the flow: the way to serve
/// untrusted traffic.
///
/// # Safety
/// `flow` is a live handle; `callback_url` and `pending` are NUL-terminated; `out` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_code_flow_finish_pending(
    flow: *const authcore_code_flow,
    callback_url: *const c_char,
    pending: *const c_char,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(flow, out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (callback, pending) = unsafe {
            (
                arg_str(callback_url, "callback_url")?,
                arg_str(pending, "pending")?,
            )
        };
        // SAFETY: checked non-NULL; live as promised.
        let client = unsafe { &(*flow).inner }.finish_pending(callback, pending)?;
        // SAFETY: checked above.
        unsafe { hand_out(out, client) };
        Ok(())
    })
}

/// Seals the flow's exported sign-ins (`authcore_code_flow_authorization_url_pending`)
/// under `key`, `key_len` = 32 random bytes the application keeps secret (e.g. from a
/// secrets manager), so that a sign-in started by one worker process finishes in any
/// other flow with the same configuration and key. Without it, a flow seals under a
/// random key of its own and its pending sign-ins finish only in that flow. Another
/// length gives `AUTHCORE_STATUS_CONFIG`. The key is copied (the caller may wipe its
/// own copy), never printed, and zeroed when the flow is freed; sign-ins sealed under a
/// previous key no longer open. Call it before the flow is shared between threads.
///
/// # Safety
/// `flow` is a live handle not used by another thread during the call; `key` is valid
/// for reads of `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn authcore_code_flow_set_pending_key(
    flow: *mut authcore_code_flow,
    key: *const u8,
    key_len: usize,
) -> authcore_status {
    boundary(|| {
        check_null!(flow, key);
        // SAFETY: non-NULL, and the caller promises `key_len` readable bytes.
        let key = unsafe { std::slice::from_raw_parts(key, key_len) };
        // SAFETY: checked non-NULL; live and not shared during the call, as promised.
        unsafe { &mut (*flow).inner }.set_pending_key(key)?;
        Ok(())
    })
}

/// How long a sign-in may take, from its URL to its callback, in milliseconds (default
/// 600000, 10 minutes; at most a day: a longer one is cut to a day). 0 is
/// `AUTHCORE_STATUS_CONFIG` (no sign-in could finish), and the lifetime is left as it
/// was. Call it before the flow is shared between threads.
///
/// # Safety
/// `flow` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_code_flow_set_pending_lifetime(
    flow: *mut authcore_code_flow,
    lifetime_ms: u64,
) -> authcore_status {
    boundary(|| {
        check_null!(flow);
        // SAFETY: checked non-NULL; live and not shared during the call, as promised.
        unsafe { &mut (*flow).inner }.set_pending_lifetime(Duration::from_millis(lifetime_ms))?;
        Ok(())
    })
}

/// Fills `out` with the flow's counters: its code exchanges (token requests, each also
/// counted in the client it made) and `signins_evicted`, the pending sign-ins it dropped
/// beyond its bound. Pass `sizeof(authcore_stats)` as `size`, as for
/// `authcore_client_stats`.
///
/// # Safety
/// `flow` is a live handle; `out` is valid for writes of `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn authcore_code_flow_stats(
    flow: *const authcore_code_flow,
    out: *mut authcore_stats,
    size: usize,
) -> authcore_status {
    boundary(|| {
        check_null!(flow, out);
        // SAFETY: checked non-NULL; the caller promises it is live.
        let stats = unsafe { &(*flow).inner }.stats();
        // SAFETY: forwarded from the caller.
        unsafe { write_stats(stats, out, size) };
        Ok(())
    })
}

/// Releases a flow. NULL does nothing. Clients it made are unaffected.
///
/// # Safety
/// `flow` is NULL or a handle from `authcore_code_flow_new*` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_code_flow_free(flow: *mut authcore_code_flow) {
    boundary_or((), || {
        if !flow.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(flow) });
        }
    })
}

/// A device authorization client (RFC 8628), for devices without a browser. Start it
/// with `authcore_device_flow_start`. Safe to use from many threads.
pub struct authcore_device_flow {
    inner: DeviceFlow,
}

/// A started device authorization: show its user code and verification URI, then
/// `authcore_device_authorization_poll` until it gives a client. Its strings live as long
/// as it does.
pub struct authcore_device_authorization {
    inner: DeviceAuthorization,
    strings: [Option<std::ffi::CString>; 3],
}

/// Boxes a device flow into `out`.
///
/// # Safety
/// `out` is non-NULL and writable.
unsafe fn hand_out_device_flow(out: *mut *mut authcore_device_flow, flow: DeviceFlow) {
    // SAFETY: the caller checked `out` and promises it is writable.
    unsafe {
        out.write(Box::into_raw(Box::new(authcore_device_flow {
            inner: flow,
        })))
    };
}

/// A device flow at any server. `client_secret` NULL: a public client; `scopes` is
/// space-separated or NULL.
///
/// # Safety
/// String arguments are NUL-terminated (`client_secret` and `scopes` may be NULL);
/// `options` is NULL or a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_flow_new(
    device_authorization_url: *const c_char,
    token_url: *const c_char,
    client_id: *const c_char,
    client_secret: *const c_char,
    scopes: *const c_char,
    options: *const authcore_options,
    out: *mut *mut authcore_device_flow,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (device, token, id, secret, scopes) = unsafe {
            (
                arg_str(device_authorization_url, "device_authorization_url")?,
                arg_str(token_url, "token_url")?,
                arg_str(client_id, "client_id")?,
                opt_str(client_secret, "client_secret")?,
                opt_str(scopes, "scopes")?,
            )
        };
        let config = DeviceCode::new(device, token, id, secret.unwrap_or(""))
            .scopes(split_scopes(scopes))
            // SAFETY: the caller promises a live handle or NULL.
            .with_settings(unsafe { oauth_or_default(options) });
        // SAFETY: the caller promises a live handle or NULL.
        let flow = DeviceFlow::new(config, unsafe { options_or_default(options) })?;
        // SAFETY: checked above.
        unsafe { hand_out_device_flow(out, flow) };
        Ok(())
    })
}

/// A device flow at the endpoints of discovered `metadata`.
///
/// # Safety
/// `metadata` is a live handle; string arguments are NUL-terminated (`client_secret` and
/// `scopes` may be NULL); `options` is NULL or a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_flow_new_from_metadata(
    metadata: *const authcore_metadata,
    client_id: *const c_char,
    client_secret: *const c_char,
    scopes: *const c_char,
    options: *const authcore_options,
    out: *mut *mut authcore_device_flow,
) -> authcore_status {
    boundary(|| {
        check_null!(metadata, out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (id, secret, scopes) = unsafe {
            (
                arg_str(client_id, "client_id")?,
                opt_str(client_secret, "client_secret")?,
                opt_str(scopes, "scopes")?,
            )
        };
        // SAFETY: non-NULL live handle, only read.
        let metadata = unsafe { &(*metadata).inner };
        let config = DeviceCode::from_metadata(metadata, id, secret.unwrap_or(""))?
            .scopes(split_scopes(scopes))
            // SAFETY: the caller promises a live handle or NULL.
            .with_settings(unsafe { oauth_or_default(options) });
        // SAFETY: the caller promises a live handle or NULL.
        let flow = DeviceFlow::new(config, unsafe { options_or_default(options) })?;
        // SAFETY: checked above.
        unsafe { hand_out_device_flow(out, flow) };
        Ok(())
    })
}

/// Asks the server for a device code. `*out` receives the authorization to show the
/// user; free it with `authcore_device_authorization_free`.
///
/// # Safety
/// `flow` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_flow_start(
    flow: *const authcore_device_flow,
    out: *mut *mut authcore_device_authorization,
) -> authcore_status {
    boundary(|| {
        check_null!(flow, out);
        // SAFETY: checked non-NULL; live as promised.
        let auth = unsafe { &(*flow).inner }.start()?;
        let c = |s: Option<&str>| s.and_then(|s| std::ffi::CString::new(s).ok());
        let strings = [
            c(Some(&auth.user_code)),
            c(Some(&auth.verification_uri)),
            c(auth.verification_uri_complete.as_deref()),
        ];
        let handle = Box::into_raw(Box::new(authcore_device_authorization {
            inner: auth,
            strings,
        }));
        // SAFETY: checked above; writable as promised.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// The string at `index` of a live authorization, or NULL.
///
/// # Safety
/// `auth` is NULL or a live handle.
unsafe fn auth_string(auth: *const authcore_device_authorization, index: usize) -> *const c_char {
    if auth.is_null() {
        return std::ptr::null();
    }
    // SAFETY: non-NULL live handle, only read.
    unsafe { &(*auth).strings[index] }
        .as_ref()
        .map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Whole seconds of a duration of a live authorization, or 0 for NULL.
///
/// # Safety
/// `auth` is NULL or a live handle.
unsafe fn auth_secs(
    auth: *const authcore_device_authorization,
    field: impl Fn(&DeviceAuthorization) -> Duration,
) -> u64 {
    boundary_or(0, || {
        if auth.is_null() {
            0
        } else {
            // SAFETY: a live handle, only read.
            field(unsafe { &(*auth).inner }).as_secs()
        }
    })
}

/// The code the user enters (NULL for a NULL handle). Valid while `auth` lives.
///
/// # Safety
/// `auth` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_authorization_user_code(
    auth: *const authcore_device_authorization,
) -> *const c_char {
    // SAFETY: forwarded from the caller.
    boundary_or(std::ptr::null(), || unsafe { auth_string(auth, 0) })
}

/// Where the user enters it (NULL for a NULL handle). Valid while `auth` lives.
///
/// # Safety
/// `auth` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_authorization_verification_uri(
    auth: *const authcore_device_authorization,
) -> *const c_char {
    // SAFETY: forwarded from the caller.
    boundary_or(std::ptr::null(), || unsafe { auth_string(auth, 1) })
}

/// A URL with the code in it, or NULL when the server gives none. Valid while `auth`
/// lives.
///
/// # Safety
/// `auth` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_authorization_verification_uri_complete(
    auth: *const authcore_device_authorization,
) -> *const c_char {
    // SAFETY: forwarded from the caller.
    boundary_or(std::ptr::null(), || unsafe { auth_string(auth, 2) })
}

/// Seconds the codes are valid (0 for a NULL handle).
///
/// # Safety
/// `auth` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_authorization_expires_in_secs(
    auth: *const authcore_device_authorization,
) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { auth_secs(auth, |a| a.expires_in) }
}

/// Seconds between polls, as the server asked (0 for a NULL handle).
///
/// # Safety
/// `auth` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_authorization_interval_secs(
    auth: *const authcore_device_authorization,
) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { auth_secs(auth, |a| a.interval) }
}

/// Waits up to `timeout_ms` (0: until the codes expire) for the user's approval,
/// polling the token endpoint at the server's interval (`slow_down` adds 5 s). On
/// approval `*out` receives a client that renews by refresh token. Not approved yet
/// within `timeout_ms`: `AUTHCORE_STATUS_TIMEOUT` (call again); the codes expired:
/// `AUTHCORE_STATUS_TIMEOUT` too, or the server's `expired_token`
/// (`AUTHCORE_STATUS_OAUTH`); denied: `AUTHCORE_STATUS_OAUTH` (`access_denied`);
/// `authcore_device_authorization_cancel` from another thread:
/// `AUTHCORE_STATUS_CANCELLED`.
///
/// # Safety
/// `auth` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_authorization_poll(
    auth: *const authcore_device_authorization,
    timeout_ms: u64,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(auth, out);
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        // SAFETY: checked non-NULL; live as promised.
        let client = unsafe { &(*auth).inner }.wait(timeout)?;
        // SAFETY: checked above.
        unsafe { hand_out(out, client) };
        Ok::<(), Failure>(())
    })
}

/// Makes a `authcore_device_authorization_poll` in another thread return
/// `AUTHCORE_STATUS_CANCELLED` within 100 ms, and every later one at once.
///
/// # Safety
/// `auth` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_authorization_cancel(
    auth: *const authcore_device_authorization,
) -> authcore_status {
    boundary(|| {
        check_null!(auth);
        // SAFETY: checked non-NULL; live as promised.
        unsafe { &(*auth).inner }.cancel_handle().cancel();
        Ok(())
    })
}

/// Releases an authorization. NULL does nothing. Clients it made are unaffected; no
/// other thread may be polling it.
///
/// # Safety
/// `auth` is NULL or a handle from `authcore_device_flow_start` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_authorization_free(
    auth: *mut authcore_device_authorization,
) {
    boundary_or((), || {
        if !auth.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(auth) });
        }
    })
}

/// Releases a device flow. NULL does nothing. Clients and authorizations it made are
/// unaffected.
///
/// # Safety
/// `flow` is NULL or a handle from `authcore_device_flow_new*` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_device_flow_free(flow: *mut authcore_device_flow) {
    boundary_or((), || {
        if !flow.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(flow) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_auth_method_is_an_invalid_argument() {
        let mut out = std::ptr::null_mut();
        // SAFETY: valid strings and out pointer.
        let status = unsafe {
            authcore_code_flow_new(
                c"https://a.example/authorize".as_ptr(),
                c"https://a.example/token".as_ptr(),
                c"id".as_ptr(),
                c"secret".as_ptr(),
                c"http://127.0.0.1/cb".as_ptr(),
                std::ptr::null(),
                false,
                99,
                true,
                std::ptr::null(),
                &mut out,
            )
        };
        assert_eq!(status, authcore_status::InvalidArgument);
        assert!(out.is_null(), "out-parameters are written only on success");
    }
}

//! `authcore_options`: client settings as a handle with setters, so that new settings
//! never change the size of anything the caller allocates.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use zeroize::Zeroize;

use crate::{arg_str, authcore_status, boundary, boundary_or, check_null, opt_str, Failure};

/// Client settings. Made by `authcore_options_new`, changed by the setters, passed
/// to constructors (which copy it), released by `authcore_options_free`.
pub struct authcore_options {
    pub(crate) inner: authcore::Options,
    /// What OAuth grants take besides client options (resources, private key,
    /// revocation endpoint); ignored by the other constructors.
    pub(crate) oauth: authcore::grant::OAuthSettings,
    /// Whether DPoP accepts a `Bearer` answer (`authcore_options_set_dpop_allow_bearer`),
    /// kept apart so that it holds for a DPoP key set before or after it.
    dpop_allow_bearer: bool,
}

/// Called with the new refresh token each time the provider rotates it, before the
/// new access token is handed out, so that it can be persisted. Return 0 when it was
/// kept, anything else when it could not be.
///
/// - `refresh_token` points to `len` bytes followed by a NUL. `len` is the whole token:
///   a token containing a NUL byte is still handed over in full. It is valid only
///   during the call (zeroed afterwards); copy it to keep it.
/// - The new refresh token is already recorded in the client when the callback runs.
///   A non-zero return loses nothing: the token is kept in memory and used, and the
///   failure is logged. Persist it again on the next rotation.
/// - Concurrency: for one client the callback never runs twice at once (renewals are
///   single flight). Every client built from the same options handle shares the
///   callback and `userdata`, and different clients renew independently, so the
///   callback may run concurrently for different clients and must be thread-safe then.
/// - It runs on whichever thread performed the renewal, and must not call back into the
///   client being renewed (a token call would wait for the renewal it is part of;
///   freeing the client is undefined).
/// - It must not unwind: a C++ exception or `longjmp` out of it is undefined behaviour.
pub type authcore_refresh_token_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, refresh_token: *const c_char, len: usize) -> i32,
>;

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
            oauth: authcore::grant::OAuthSettings::default(),
            dpop_allow_bearer: false,
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

/// Applies one builder step to a copy of a handle's settings and keeps the copy only
/// if the step succeeds: a rejected setting leaves every earlier one as it was.
///
/// # Safety
/// `options` is NULL or a live handle not used by another thread during the call.
pub(crate) unsafe fn update(
    options: *mut authcore_options,
    step: impl FnOnce(authcore::Options) -> Result<authcore::Options, Failure>,
) -> authcore_status {
    boundary(|| {
        check_null!(options);
        // SAFETY: non-NULL live handle, exclusively ours for the call.
        let o = unsafe { &mut *options };
        o.inner = step(o.inner.clone())?;
        Ok(())
    })
}

/// [`update`] for the OAuth grant settings of a handle.
///
/// # Safety
/// `options` is NULL or a live handle not used by another thread during the call.
unsafe fn update_oauth(
    options: *mut authcore_options,
    step: impl FnOnce(authcore::grant::OAuthSettings) -> Result<authcore::grant::OAuthSettings, Failure>,
) -> authcore_status {
    boundary(|| {
        check_null!(options);
        // SAFETY: non-NULL live handle, exclusively ours for the call.
        let o = unsafe { &mut *options };
        o.oauth = step(o.oauth.clone())?;
        Ok(())
    })
}

/// Adds a resource indicator (RFC 8707): an API the token is for. OAuth grants (client
/// credentials, refresh token, code and device flows) send one `resource` parameter per
/// call of this function; clients for different resources keep different tokens.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `uri` is a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_add_resource(
    options: *mut authcore_options,
    uri: *const c_char,
) -> authcore_status {
    let step = |mut o: authcore::grant::OAuthSettings| {
        // SAFETY: the caller promises a NUL-terminated string.
        let uri = unsafe { arg_str(uri, "uri")? };
        if uri.is_empty() {
            return Err(Failure::invalid("a resource indicator is a URI, not empty"));
        }
        o.resources.push(uri.to_owned());
        Ok(o)
    };
    // SAFETY: forwarded from the caller.
    unsafe { update_oauth(options, step) }
}

/// Authenticates OAuth grants with `private_key_jwt` (RFC 7523 §2.2): `pem` is the
/// client's private key (PKCS#8, or PKCS#1 for RSA); `algorithm` is "RS256", "ES256",
/// "EdDSA" or NULL (from the key's type); `key_id` (NULL: none) names the key in the
/// assertion header. A key that cannot sign is `AUTHCORE_STATUS_CONFIG` and leaves the
/// options as they were.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `pem` is a
/// NUL-terminated string; `algorithm` and `key_id` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_private_key(
    options: *mut authcore_options,
    pem: *const c_char,
    algorithm: *const c_char,
    key_id: *const c_char,
) -> authcore_status {
    let step = |mut o: authcore::grant::OAuthSettings| {
        // SAFETY: the caller promises NUL-terminated strings (or NULL where allowed).
        let (pem, algorithm, key_id) = unsafe {
            (
                arg_str(pem, "pem")?,
                opt_str(algorithm, "algorithm")?,
                opt_str(key_id, "key_id")?,
            )
        };
        let algorithm = algorithm
            .map(authcore::grant::SigningAlgorithm::from_name)
            .transpose()?;
        let mut key = authcore::grant::PrivateKey::from_pem(pem.as_bytes(), algorithm)?;
        if let Some(kid) = key_id {
            key = key.key_id(kid);
        }
        o.private_key = Some(key);
        Ok(o)
    };
    // SAFETY: forwarded from the caller.
    unsafe { update_oauth(options, step) }
}

/// Sets the revocation endpoint (RFC 7009) of OAuth grants, for
/// `authcore_client_revoke` (clients made from discovered metadata know it already).
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `url` is a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_revocation_url(
    options: *mut authcore_options,
    url: *const c_char,
) -> authcore_status {
    let step = |mut o: authcore::grant::OAuthSettings| {
        // SAFETY: the caller promises a NUL-terminated string.
        o.revocation_url = Some(unsafe { arg_str(url, "url")? }.to_owned());
        Ok(o)
    };
    // SAFETY: forwarded from the caller.
    unsafe { update_oauth(options, step) }
}

/// Turns DPoP on (RFC 9449) with `key`, keeping the handle's Bearer-downgrade choice.
///
/// # Safety
/// `options` is NULL or a live handle not used by another thread during the call.
unsafe fn set_dpop_key(
    options: *mut authcore_options,
    key: impl FnOnce() -> Result<authcore::DpopKey, Failure>,
) -> authcore_status {
    boundary(|| {
        check_null!(options);
        let key = key()?;
        // SAFETY: non-NULL live handle, exclusively ours for the call.
        let o = unsafe { &mut *options };
        let dpop = authcore::Dpop::new(key).allow_bearer_downgrade(o.dpop_allow_bearer);
        o.inner = o.inner.clone().dpop(dpop);
        Ok(())
    })
}

/// Turns on sender-constrained tokens (DPoP, RFC 9449) with a new key for `algorithm`:
/// "ES256" (also for NULL; the default), "EdDSA" or "RS256" (case-insensitive),
/// generated now from the operating system's random source. Every token request of
/// every client and flow made from these options then carries a DPoP proof signed by
/// that key, the tokens come back bound to it (`token_type` "DPoP") and every
/// `authcore_client_request` sends `Authorization: DPoP <token>` with a fresh proof,
/// resending once with the nonce a server asks for (`use_dpop_nonce`; counted in
/// `authcore_stats.dpop_nonce_retries`). All clients made from this handle share the key
/// (and the nonces servers gave) until a DPoP setter is called again. A provider
/// that answers a `Bearer` token is refused (`AUTHCORE_STATUS_INVALID_RESPONSE`)
/// unless `authcore_options_set_dpop_allow_bearer` allows it.
///
/// A session taken from a token store keeps the key it was bound to (the store keeps
/// the key with the session), whatever key these options name.
///
/// An unknown algorithm is `AUTHCORE_STATUS_CONFIG`, a name that is not UTF-8
/// `AUTHCORE_STATUS_INVALID_ARGUMENT`; both leave the options as they were. An RSA key
/// takes a noticeable time to generate (2048 bits); prefer ES256 or EdDSA.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `algorithm`
/// is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_dpop(
    options: *mut authcore_options,
    algorithm: *const c_char,
) -> authcore_status {
    let key = || {
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let algorithm = match unsafe { opt_str(algorithm, "algorithm")? } {
            Some(name) => authcore::DpopAlgorithm::from_name(name)?,
            None => authcore::DpopAlgorithm::default(),
        };
        Ok(authcore::DpopKey::generate(algorithm)?)
    };
    // SAFETY: forwarded from the caller.
    unsafe { set_dpop_key(options, key) }
}

/// Turns on DPoP (see `authcore_options_set_dpop`) with a key of the caller's: `pem` is
/// a private key in PEM, PKCS#8 ("PRIVATE KEY": P-256, Ed25519 or RSA, unencrypted),
/// SEC1 ("EC PRIVATE KEY", P-256) or PKCS#1 ("RSA PRIVATE KEY"); the algorithm follows
/// from the key (ES256, EdDSA, RS256). The text is read during the call and not kept
/// (the key is: in the options and the clients made from them, wiped when the last of
/// them is freed); the caller may wipe its copy afterwards.
///
/// A text that is not such a key is `AUTHCORE_STATUS_CONFIG` (the message never quotes
/// it), NULL `AUTHCORE_STATUS_NULL_ARGUMENT`, a text that is not UTF-8
/// `AUTHCORE_STATUS_INVALID_ARGUMENT`; each leaves the options as they were.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `pem` is a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_dpop_key_pem(
    options: *mut authcore_options,
    pem: *const c_char,
) -> authcore_status {
    let key = || {
        // SAFETY: the caller promises a NUL-terminated string.
        let pem = unsafe { arg_str(pem, "pem")? };
        Ok(authcore::DpopKey::from_pem(pem)?)
    };
    // SAFETY: forwarded from the caller.
    unsafe { set_dpop_key(options, key) }
}

/// Turns on DPoP (see `authcore_options_set_dpop`) with a key of the caller's as a
/// private JWK (JSON text): `"kty": "EC"` with `"crv": "P-256"`, `"kty": "OKP"` with
/// `"crv": "Ed25519"`, or `"kty": "RSA"` with its primes `p` and `q`; the public
/// members must match the private ones. Other members (`kid`, `use`, ...) are ignored.
/// The text is read during the call and not kept.
///
/// A text that is not such a key is `AUTHCORE_STATUS_CONFIG` (the message never quotes
/// it), NULL `AUTHCORE_STATUS_NULL_ARGUMENT`, a text that is not UTF-8
/// `AUTHCORE_STATUS_INVALID_ARGUMENT`; each leaves the options as they were.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `jwk` is a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_dpop_key_jwk(
    options: *mut authcore_options,
    jwk: *const c_char,
) -> authcore_status {
    let key = || {
        // SAFETY: the caller promises a NUL-terminated string.
        let jwk = unsafe { arg_str(jwk, "jwk")? };
        Ok(authcore::DpopKey::from_jwk(jwk)?)
    };
    // SAFETY: forwarded from the caller.
    unsafe { set_dpop_key(options, key) }
}

/// Whether a `Bearer` token answered to a DPoP token request is accepted (and then
/// sent as a bearer token). Off by default: such an answer is
/// `AUTHCORE_STATUS_INVALID_RESPONSE`, not retried, so that a provider ignoring DPoP
/// never silently turns sender-constrained tokens into bearer tokens. Holds for the
/// DPoP key set before or after this call; without DPoP it has no effect.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_dpop_allow_bearer(
    options: *mut authcore_options,
    allow: bool,
) -> authcore_status {
    boundary(|| {
        check_null!(options);
        // SAFETY: non-NULL live handle, exclusively ours for the call.
        let o = unsafe { &mut *options };
        if let Some(dpop) = o.inner.dpop_config().cloned() {
            o.inner = o.inner.clone().dpop(dpop.allow_bearer_downgrade(allow));
        }
        o.dpop_allow_bearer = allow;
        Ok(())
    })
}

/// A duration in milliseconds: at least 1 ms, and at most `authcore::MAX_DURATION`.
fn positive_ms(ms: u64, what: &str) -> Result<Duration, Failure> {
    bounded_ms(ms, what, 1)
}

fn bounded_ms(ms: u64, what: &str, min: u64) -> Result<Duration, Failure> {
    let max = u64::try_from(authcore::MAX_DURATION.as_millis()).unwrap_or(u64::MAX);
    if ms < min || ms > max {
        return Err(Failure::invalid(format!(
            "{what} must be between {min} and {max} ms"
        )));
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

/// Sets the deadline of one whole call, in milliseconds (> 0): a token acquisition
/// (every attempt, pause and body read) or an `authcore_client_request` (first send,
/// renewal and resend). Default 30 000.
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

/// Bounds how long a caller waits for another thread's renewal, in milliseconds (> 0).
/// By default a waiter waits as long as the renewal's own deadline allows.
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
            if secs > authcore::MAX_DURATION.as_secs() * 3650 {
                return Err(Failure::invalid(
                    "default lifetime must be at most ten years",
                ));
            }
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
            let first = bounded_ms(first_ms, "backoff first step", 0)?;
            let max = bounded_ms(max_ms, "backoff maximum", 0)?;
            Ok(o.failure_backoff(first, max))
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
        let valid = authcore::is_valid_header(name, value);
        if !valid {
            return Err(Failure::invalid(format!(
                "{name:?} is not a valid HTTP header"
            )));
        }
        Ok(o.token_request_header(name, value))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Names whose tokens these are in a shared store (`user=NAME` in the store key): the
/// user, tenant or profile the client acts for. A refresh-token client given a store
/// needs it (unless its first token came with an ID token, whose `sub` names the user):
/// without it the client constructor fails with `AUTHCORE_STATUS_CONFIG`, so that two
/// users never share one stored token. It wins over the ID token's `sub`; for a code or
/// device flow that signs in many users, leave it unset. Never put a secret in it.
/// NULL is `AUTHCORE_STATUS_NULL_ARGUMENT`, a name that is not UTF-8
/// `AUTHCORE_STATUS_INVALID_ARGUMENT` (both leave the options as they were); a name that
/// is empty, longer than 255 bytes or holds a control character makes the client
/// constructor fail with `AUTHCORE_STATUS_CONFIG`.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `name` is a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_store_key(
    options: *mut authcore_options,
    name: *const c_char,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises a NUL-terminated string.
        let name = unsafe { arg_str(name, "name")? };
        Ok(o.store_key(name))
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
            // The token's bytes and a NUL, whatever the token holds.
            let mut bytes = Vec::with_capacity(secret.expose_secret().len() + 1);
            bytes.extend_from_slice(secret.expose_secret().as_bytes());
            bytes.push(0);
            let len = bytes.len() - 1;
            // SAFETY: the caller promised `callback` follows the contract; the buffer
            // lives until after the call.
            let rc = unsafe { callback(userdata.0, bytes.as_ptr().cast::<c_char>(), len) };
            bytes.zeroize();
            if rc == 0 {
                Ok(())
            } else {
                Err(format!("the refresh-token callback returned {rc}"))
            }
        }))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Sets the least margin before expiry at which a token is no longer sent, in
/// milliseconds, for APIs whose clocks run ahead (0: the default, `L/20` of a lifetime
/// `L`, at most 30 s). A token is then not sent from `max(default, margin)` before its
/// expiry (at most 90 % of its lifetime) and is renewed ahead no later. At most a day.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_expiry_margin_ms(
    options: *mut authcore_options,
    ms: u64,
) -> authcore_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        update(options, |o| {
            let margin = bounded_ms(ms, "expiry margin", 0)?;
            Ok(o.expiry_margin(margin))
        })
    }
}

/// Sets the proxy for requests to non-loopback hosts (loopback hosts are always reached
/// directly). `url` NULL: from the environment (`ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`,
/// honouring `NO_PROXY`; the default). `url` "": never a proxy. Otherwise the proxy URL
/// (`http://[user:password@]host:port`), used whatever the environment says; its
/// credentials are never printed.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `url` is NULL
/// or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_proxy(
    options: *mut authcore_options,
    url: *const c_char,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let proxy = match unsafe { opt_str(url, "url")? } {
            None => authcore::Proxy::Environment,
            Some("") => authcore::Proxy::None,
            Some(u) => {
                if !authcore::is_valid_proxy_url(u) {
                    return Err(Failure::invalid("the proxy URL is not valid"));
                }
                authcore::Proxy::Url(u.to_owned())
            }
        };
        Ok(o.proxy(proxy))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Trusts exactly the certificate authorities in the PEM file at `path` for HTTPS (an
/// identity provider behind a corporate CA) instead of the platform's trust store.
/// `path` NULL: the platform's trust store again (the default; on Linux the system
/// bundle, honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`). A file that cannot be read or
/// holds no certificate makes the client constructor fail with `AUTHCORE_STATUS_CONFIG`.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `path` is
/// NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_ca_bundle(
    options: *mut authcore_options,
    path: *const c_char,
) -> authcore_status {
    let step = |mut o: authcore::Options| {
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        match unsafe { opt_str(path, "path")? } {
            None => {
                o = o.clear_ca_bundle();
                Ok(o)
            }
            Some("") => Err(Failure::invalid("the CA bundle path is empty")),
            Some(p) => Ok(o.ca_bundle(p)),
        }
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Mutual TLS (RFC 8705): every HTTPS connection of the clients made with these
/// options presents this client certificate — to the token endpoint
/// (`AUTHCORE_AUTH_METHOD_TLS_CLIENT_AUTH`, `_SELF_SIGNED_TLS_CLIENT_AUTH`) and to the
/// APIs alike, so that tokens the provider binds to it (`cnf.x5t#S256`) are accepted
/// there; the `mtls_endpoint_aliases` of discovered metadata are then used.
///
/// `certificate_pem` is PEM text holding the certificate, then any intermediate
/// certificates; `key_pem` its private key (PKCS#8, PKCS#1 or SEC1, unencrypted), or
/// NULL when `certificate_pem` holds the key too. Both are read and checked during the
/// call; the options keep their own copy of the key (wiped when the last options handle
/// and client using it are freed), so the caller may wipe its copy afterwards.
///
/// Text that holds no certificate or no key, a key that is not the certificate's, or
/// one that cannot be used is `AUTHCORE_STATUS_CONFIG` (the message never quotes the
/// key); NULL `certificate_pem` `AUTHCORE_STATUS_NULL_ARGUMENT`, text that is not UTF-8
/// `AUTHCORE_STATUS_INVALID_ARGUMENT`; each leaves the options as they were.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call;
/// `certificate_pem` is a NUL-terminated string, `key_pem` NULL or one.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_client_certificate_pem(
    options: *mut authcore_options,
    certificate_pem: *const c_char,
    key_pem: *const c_char,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises NUL-terminated strings (the key may be NULL).
        let certificate = unsafe { arg_str(certificate_pem, "certificate_pem")? };
        // SAFETY: as above.
        let key = unsafe { opt_str(key_pem, "key_pem")? }.unwrap_or(certificate);
        let cert = authcore::ClientCertificate::from_pem(certificate.as_bytes(), key.as_bytes())?;
        Ok(o.client_certificate(cert))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Like `authcore_options_set_client_certificate_pem`, from files: `certificate_path`
/// (PEM: the certificate, then any intermediates) and `key_path` (its private key; NULL:
/// in the certificate file too), read and checked during the call. A file that cannot
/// be read is `AUTHCORE_STATUS_CONFIG` naming it. `certificate_path` NULL: no client
/// certificate (the default) again.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call;
/// `certificate_path` and `key_path` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_client_certificate_files(
    options: *mut authcore_options,
    certificate_path: *const c_char,
    key_path: *const c_char,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises NULL or NUL-terminated strings.
        let Some(certificate) = (unsafe { opt_str(certificate_path, "certificate_path")? }) else {
            return Ok(o.clear_client_certificate());
        };
        // SAFETY: as above.
        let key = unsafe { opt_str(key_path, "key_path")? }.unwrap_or(certificate);
        if certificate.is_empty() || key.is_empty() {
            return Err(Failure::invalid(
                "the client certificate or key path is empty",
            ));
        }
        let cert = authcore::ClientCertificate::from_pem_files(certificate, key)?;
        Ok(o.client_certificate(cert))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Ed25519 key of RFC 8037 Appendix A.1 (thumbprint in A.3).
    const ED25519_JWK: &std::ffi::CStr = c"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}";

    unsafe extern "C" fn keep(_: *mut c_void, _: *const c_char, _: usize) -> i32 {
        0
    }

    /// Every setter that rejects its input leaves every earlier setting as it was,
    /// the rotation callback included.
    #[test]
    fn a_rejected_setting_changes_nothing() {
        let mut o: *mut authcore_options = std::ptr::null_mut();
        // SAFETY: valid out-pointer; the handle is used by this thread only and freed.
        unsafe {
            assert_eq!(authcore_options_new(&mut o), authcore_status::Ok);
            let ok = [
                authcore_options_set_connect_timeout_ms(o, 1234),
                authcore_options_set_timeout_ms(o, 4321),
                authcore_options_set_wait_timeout_ms(o, 999),
                authcore_options_set_max_retries(o, 7),
                authcore_options_set_max_body_bytes(o, 4096),
                authcore_options_set_default_lifetime_secs(o, 60),
                authcore_options_set_failure_backoff_ms(o, 5, 50),
                authcore_options_set_danger_allow_insecure_http(o, true),
                authcore_options_add_token_request_header(
                    o,
                    c"AV-Origin-App".as_ptr(),
                    c"x:1".as_ptr(),
                ),
                authcore_options_set_refresh_token_callback(o, Some(keep), std::ptr::null_mut()),
                authcore_options_set_proxy(o, c"http://127.0.0.1:3128".as_ptr()),
                authcore_options_set_store_key(o, c"alice".as_ptr()),
                authcore_options_set_dpop_key_jwk(o, ED25519_JWK.as_ptr()),
                authcore_options_set_dpop_allow_bearer(o, true),
            ];
            assert!(ok.iter().all(|s| *s == authcore_status::Ok), "{ok:?}");
            let before = format!("{:?}", (*o).inner);
            let bad = b"\xff\xfe\0";
            let rejected = [
                authcore_options_set_connect_timeout_ms(o, 0),
                authcore_options_set_timeout_ms(o, 0),
                authcore_options_set_timeout_ms(o, u64::MAX),
                authcore_options_set_wait_timeout_ms(o, 0),
                authcore_options_set_max_body_bytes(o, 0),
                authcore_options_set_default_lifetime_secs(o, u64::MAX),
                authcore_options_set_failure_backoff_ms(o, 100, 10),
                authcore_options_set_failure_backoff_ms(o, 1, u64::MAX),
                authcore_options_add_token_request_header(o, std::ptr::null(), c"v".as_ptr()),
                authcore_options_add_token_request_header(o, c"n".as_ptr(), std::ptr::null()),
                authcore_options_add_token_request_header(o, bad.as_ptr().cast(), c"v".as_ptr()),
                authcore_options_add_token_request_header(o, c"bad name".as_ptr(), c"v".as_ptr()),
                authcore_options_add_token_request_header(o, c"n".as_ptr(), c"a\rb".as_ptr()),
                authcore_options_set_proxy(o, c"::not a url::".as_ptr()),
                authcore_options_set_proxy(o, bad.as_ptr().cast()),
                authcore_options_set_store_key(o, std::ptr::null()),
                authcore_options_set_store_key(o, bad.as_ptr().cast()),
                authcore_options_set_dpop(o, c"HS256".as_ptr()),
                authcore_options_set_dpop(o, bad.as_ptr().cast()),
                authcore_options_set_dpop_key_pem(o, c"not a key".as_ptr()),
                authcore_options_set_dpop_key_pem(o, std::ptr::null()),
                authcore_options_set_dpop_key_jwk(o, c"{}".as_ptr()),
                authcore_options_set_dpop_key_jwk(o, c"{\"kty\":\"EC\"".as_ptr()),
                authcore_options_set_dpop_key_jwk(o, bad.as_ptr().cast()),
                authcore_options_set_dpop_allow_bearer(std::ptr::null_mut(), false),
            ];
            for (i, s) in rejected.iter().enumerate() {
                assert_ne!(*s, authcore_status::Ok, "rejected call {i} succeeded");
            }
            assert_eq!(format!("{:?}", (*o).inner), before);
            assert!(before.contains("on_refresh_token: true"), "{before}");
            assert!(before.contains(r#"store_key: Some("alice")"#), "{before}");
            assert!(
                before.contains("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
                    && before.contains("allow_bearer: true"),
                "{before}"
            );
            authcore_options_free(o);
        }
    }

    /// The Bearer-downgrade choice holds for a DPoP key set before or after it.
    #[test]
    fn allowing_bearer_holds_for_keys_set_before_and_after() {
        let mut o: *mut authcore_options = std::ptr::null_mut();
        // SAFETY: valid out-pointer; the handle is used by this thread only and freed.
        unsafe {
            assert_eq!(authcore_options_new(&mut o), authcore_status::Ok);
            let allows = |o: *mut authcore_options| format!("{:?}", (*o).inner.dpop_config());
            assert_eq!(
                authcore_options_set_dpop(o, std::ptr::null()),
                authcore_status::Ok
            );
            assert!(allows(o).contains("allow_bearer: false"));
            assert_eq!(
                authcore_options_set_dpop_allow_bearer(o, true),
                authcore_status::Ok
            );
            assert!(allows(o).contains("allow_bearer: true"));
            assert_eq!(
                authcore_options_set_dpop(o, c"eddsa".as_ptr()),
                authcore_status::Ok
            );
            assert!(allows(o).contains("allow_bearer: true") && allows(o).contains("EdDsa"));
            authcore_options_free(o);
        }
    }
}

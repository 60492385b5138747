//! `authcore_client` and `authcore_response`: constructors for every grant, tokens,
//! invalidation and authenticated requests.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use authcore::grant::{
    ApiKey, ClientCredentials, Grant, JwtBearer, OAuthSettings, PrivateKey, RefreshToken,
    WithOAuthSettings,
};
use authcore::{AuthMethod, Client, Options, SignOut};
use zeroize::Zeroize;

use crate::{
    arg_str, authcore_options, authcore_status, boundary, boundary_noting, boundary_or, c_string,
    check_null, opt_str, owned_c_string, write_opt, Failure,
};

/// A token client: caches its token, renews it ahead of expiry with one request however
/// many threads ask, and recovers once from a 401. Safe to use from many threads.
pub struct authcore_client {
    pub(crate) inner: Client,
}

/// How a client authenticates itself at the token endpoint (RFC 6749 §2.3.1).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum authcore_auth_method {
    /// HTTP Basic with id and secret form-encoded first, as RFC 6749 specifies.
    ClientSecretBasic = 0,
    /// HTTP Basic with the raw id and secret, as some servers expect.
    ClientSecretBasicRaw = 1,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost = 2,
    /// A public client (no secret): `client_id` in the request body.
    None = 3,
    /// A JWT signed by the client's private key (`authcore_options_set_private_key`).
    PrivateKeyJwt = 4,
    /// A JWT someone else issues (a federated identity), read for every request
    /// (`authcore_options_set_client_assertion`).
    ClientAssertion = 5,
    /// Mutual TLS with a CA-issued certificate (RFC 8705 §2.1): `client_id` in the body,
    /// no secret; needs `authcore_options_set_client_certificate_pem` (or `_files`).
    TlsClientAuth = 6,
    /// Mutual TLS with a self-signed certificate registered at the provider (RFC 8705
    /// §2.2): `client_id` in the body, no secret; needs a client certificate as above.
    SelfSignedTlsClientAuth = 7,
}

pub(crate) fn auth_method(value: u32) -> Result<AuthMethod, Failure> {
    match value {
        0 => Ok(AuthMethod::ClientSecretBasic),
        1 => Ok(AuthMethod::ClientSecretBasicRaw),
        2 => Ok(AuthMethod::ClientSecretPost),
        3 => Ok(AuthMethod::None),
        4 => Ok(AuthMethod::PrivateKeyJwt),
        5 => Ok(AuthMethod::ClientAssertion),
        6 => Ok(AuthMethod::TlsClientAuth),
        7 => Ok(AuthMethod::SelfSignedTlsClientAuth),
        other => Err(Failure::invalid(format!(
            "auth_method {other} is not an authcore_auth_method"
        ))),
    }
}

/// The settings behind an optional options pointer (NULL = defaults).
///
/// # Safety
/// `options` is NULL or a live handle.
pub(crate) unsafe fn options_or_default(options: *const authcore_options) -> Options {
    register_fork_handler();
    if options.is_null() {
        Options::default()
    } else {
        // SAFETY: non-NULL live handle, only read.
        unsafe { (*options).inner.clone() }
    }
}

/// The OAuth grant settings behind an optional options pointer (NULL = none).
///
/// # Safety
/// `options` is NULL or a live handle.
pub(crate) unsafe fn oauth_or_default(options: *const authcore_options) -> OAuthSettings {
    if options.is_null() {
        OAuthSettings::default()
    } else {
        // SAFETY: non-NULL live handle, only read.
        unsafe { (*options).oauth.clone() }
    }
}

/// Tells the core about every `fork()` from the first client or flow on: a child then
/// starts its per-process state afresh even if it got an old process id.
fn register_fork_handler() {
    extern "C" fn child() {
        authcore::after_fork_in_child();
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `child` only increments an atomic counter, which is async-signal-safe
        // as a child handler must be; the prepare and parent handlers are none.
        // A failure (ENOMEM) leaves the process-id check, which covers almost every case.
        let _ = unsafe { libc::pthread_atfork(None, None, Some(child)) };
    });
}

/// Space-separated scopes, or none for NULL.
pub(crate) fn split_scopes(scopes: Option<&str>) -> Vec<String> {
    scopes
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Boxes a client into `out`.
///
/// # Safety
/// `out` is non-NULL and writable.
pub(crate) unsafe fn hand_out(out: *mut *mut authcore_client, client: Client) {
    let handle = Box::into_raw(Box::new(authcore_client { inner: client }));
    // SAFETY: the caller checked `out` and promises it is writable.
    unsafe { out.write(handle) };
}

/// Builds a client for `grant` with the caller's options and hands it out.
///
/// # Safety
/// `options` is NULL or a live handle; `out` is non-NULL and writable.
unsafe fn new_client_into(
    grant: impl Grant,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
) -> Result<(), Failure> {
    // SAFETY: forwarded from the caller.
    let client = Client::new(grant, unsafe { options_or_default(options) })?;
    // SAFETY: forwarded from the caller.
    unsafe { hand_out(out, client) };
    Ok(())
}

/// Borrows a live client handle.
///
/// # Safety
/// `client` is non-NULL and live for `'a`.
unsafe fn client_ref<'a>(client: *const authcore_client) -> &'a Client {
    // SAFETY: forwarded from the caller.
    unsafe { &(*client).inner }
}

/// A client that always sends one fixed token (a personal access token, e.g.
/// viewneo's). It never renews.
///
/// # Safety
/// `token` is a NUL-terminated string; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_new_personal_access_token(
    token: *const c_char,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises a NUL-terminated string.
        let token = unsafe { arg_str(token, "token")? };
        // SAFETY: checked above.
        unsafe { hand_out(out, Client::personal_access_token(token)) };
        Ok(())
    })
}

/// An api.video client: exchanges the API key for an access token and a rotating
/// refresh token at production (`sandbox` false) or the sandbox (`sandbox` true).
///
/// # Safety
/// `api_key` is a NUL-terminated string; `options` is NULL (defaults) or a live
/// handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_new_api_video(
    api_key: *const c_char,
    sandbox: bool,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises a NUL-terminated string.
        let key = unsafe { arg_str(api_key, "api_key")? };
        let grant = if sandbox {
            ApiKey::sandbox(key)
        } else {
            ApiKey::production(key)
        };
        // SAFETY: `out` checked above; the caller promises a live handle or NULL.
        unsafe { new_client_into(grant, options, out) }
    })
}

/// An api.video client against another base URL (a staging or local server).
///
/// # Safety
/// `base_url` and `api_key` are NUL-terminated strings; `options` is NULL or a live
/// handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_new_api_video_at(
    base_url: *const c_char,
    api_key: *const c_char,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (base, key) = unsafe { (arg_str(base_url, "base_url")?, arg_str(api_key, "api_key")?) };
        // SAFETY: `out` checked above; the caller promises a live handle or NULL.
        unsafe { new_client_into(ApiKey::with_base_url(base, key), options, out) }
    })
}

/// An OAuth 2.0 client credentials client. `scopes` is space-separated or NULL;
/// `auth_method` is an `authcore_auth_method`.
///
/// # Safety
/// String arguments are NUL-terminated (`scopes` may be NULL); `options` is NULL or a
/// live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_new_client_credentials(
    token_url: *const c_char,
    client_id: *const c_char,
    client_secret: *const c_char,
    scopes: *const c_char,
    auth_method: u32,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (url, id, secret, scopes) = unsafe {
            (
                arg_str(token_url, "token_url")?,
                arg_str(client_id, "client_id")?,
                arg_str(client_secret, "client_secret")?,
                opt_str(scopes, "scopes")?,
            )
        };
        let grant = ClientCredentials::new(url, id, secret)
            .scopes(split_scopes(scopes))
            .auth_method(self::auth_method(auth_method)?)
            // SAFETY: the caller promises a live handle or NULL.
            .with_settings(unsafe { oauth_or_default(options) });
        // SAFETY: `out` checked above; the caller promises a live handle or NULL.
        unsafe { new_client_into(grant, options, out) }
    })
}

/// A client credentials client at the token endpoint (and revocation endpoint) of
/// discovered `metadata`. `client_secret` NULL: none (with `private_key_jwt`).
///
/// # Safety
/// `metadata` is a live handle; string arguments are NUL-terminated (`client_secret`
/// and `scopes` may be NULL); `options` is NULL or a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_new_client_credentials_from_metadata(
    metadata: *const crate::authcore_metadata,
    client_id: *const c_char,
    client_secret: *const c_char,
    scopes: *const c_char,
    auth_method: u32,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
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
        let grant = ClientCredentials::from_metadata(metadata, id, secret.unwrap_or(""))?
            .scopes(split_scopes(scopes))
            .auth_method(self::auth_method(auth_method)?)
            // SAFETY: the caller promises a live handle or NULL.
            .with_settings(unsafe { oauth_or_default(options) });
        // SAFETY: `out` checked above; the caller promises a live handle or NULL.
        unsafe { new_client_into(grant, options, out) }
    })
}

/// The client's own authentication of a JWT bearer grant: none when `client_id` is
/// NULL, else with `client_secret` (NULL: none) by `auth_method`, or by what the options
/// set (a private key, a client assertion).
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `options` is NULL or a live handle.
unsafe fn bearer_client(
    grant: JwtBearer,
    client_id: *const c_char,
    client_secret: *const c_char,
    scopes: *const c_char,
    auth_method: u32,
    options: *const authcore_options,
) -> Result<JwtBearer, Failure> {
    // SAFETY: the caller promises NUL-terminated strings or NULL.
    let (id, secret, scopes) = unsafe {
        (
            opt_str(client_id, "client_id")?,
            opt_str(client_secret, "client_secret")?,
            opt_str(scopes, "scopes")?,
        )
    };
    let method = self::auth_method(auth_method)?;
    let mut grant = grant.scopes(split_scopes(scopes));
    if let Some(id) = id {
        grant = grant.client(id, secret.unwrap_or("")).auth_method(method);
    } else if secret.is_some() {
        return Err(Failure::invalid("a client secret needs a client_id"));
    }
    // SAFETY: the caller promises a live handle or NULL.
    Ok(grant.with_settings(unsafe { oauth_or_default(options) }))
}

/// A JWT bearer grant client (RFC 7523 §2.1): the assertion from `source` is the grant
/// (read for every token request, once more after a refusal, never sent expired).
/// `client_id` NULL: the client does not authenticate itself; else with `client_secret`
/// (NULL: none) by `auth_method`, or with the options' private key or client
/// assertion. `scopes` is space-separated or NULL. The source is copied.
///
/// # Safety
/// `token_url` is a NUL-terminated string, `client_id`, `client_secret` and `scopes`
/// NULL or NUL-terminated; `source` is a live handle; `options` is NULL or a live
/// handle; `out` is writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn authcore_client_new_jwt_bearer(
    token_url: *const c_char,
    source: *const crate::authcore_assertion_source,
    client_id: *const c_char,
    client_secret: *const c_char,
    scopes: *const c_char,
    auth_method: u32,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(source, out);
        // SAFETY: the caller promises a NUL-terminated string and a live source.
        let (url, source) = unsafe {
            (
                arg_str(token_url, "token_url")?,
                crate::assertion::source_ref(source).clone(),
            )
        };
        // SAFETY: forwarded from the caller.
        let grant = unsafe {
            bearer_client(
                JwtBearer::new(url, source),
                client_id,
                client_secret,
                scopes,
                auth_method,
                options,
            )?
        };
        // SAFETY: `out` checked above; the caller promises a live handle or NULL.
        unsafe { new_client_into(grant, options, out) }
    })
}

/// A JWT bearer grant client whose assertions are signed for every request by the
/// private key `pem` (PKCS#8, or PKCS#1 for RSA; its type decides the algorithm;
/// `key_id` NULL: no `kid`): `iss` = `issuer`, `sub` = `subject`, `aud` = `audience`
/// (NULL: the token endpoint), `exp` 60 s on, a random `jti` — the service-account key
/// pattern. Client authentication as for `authcore_client_new_jwt_bearer`.
///
/// # Safety
/// `token_url`, `pem`, `issuer` and `subject` are NUL-terminated strings; `key_id`,
/// `audience`, `client_id`, `client_secret` and `scopes` NULL or NUL-terminated;
/// `options` is NULL or a live handle; `out` is writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn authcore_client_new_jwt_bearer_signed(
    token_url: *const c_char,
    pem: *const c_char,
    key_id: *const c_char,
    issuer: *const c_char,
    subject: *const c_char,
    audience: *const c_char,
    client_id: *const c_char,
    client_secret: *const c_char,
    scopes: *const c_char,
    auth_method: u32,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises NUL-terminated strings (or NULL where allowed).
        let (url, pem, key_id, issuer, subject, audience) = unsafe {
            (
                arg_str(token_url, "token_url")?,
                arg_str(pem, "pem")?,
                opt_str(key_id, "key_id")?,
                arg_str(issuer, "issuer")?,
                arg_str(subject, "subject")?,
                opt_str(audience, "audience")?,
            )
        };
        let mut key = PrivateKey::from_pem(pem.as_bytes(), None)?;
        if let Some(kid) = key_id {
            key = key.key_id(kid);
        }
        let mut grant = JwtBearer::signed(url, key, issuer, subject);
        if let Some(aud) = audience {
            grant = grant.audience(aud);
        }
        // SAFETY: forwarded from the caller.
        let grant = unsafe {
            bearer_client(
                grant,
                client_id,
                client_secret,
                scopes,
                auth_method,
                options,
            )?
        };
        // SAFETY: `out` checked above; the caller promises a live handle or NULL.
        unsafe { new_client_into(grant, options, out) }
    })
}

/// A Vibe client: client credentials at Vibe's token endpoint with HTTP Basic.
/// `scopes` is space-separated or NULL.
///
/// # Safety
/// String arguments are NUL-terminated (`scopes` may be NULL); `options` is NULL or a
/// live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_new_vibe(
    client_id: *const c_char,
    client_secret: *const c_char,
    scopes: *const c_char,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (id, secret, scopes) = unsafe {
            (
                arg_str(client_id, "client_id")?,
                arg_str(client_secret, "client_secret")?,
                opt_str(scopes, "scopes")?,
            )
        };
        let grant = ClientCredentials::vibe(id, secret).scopes(split_scopes(scopes));
        // SAFETY: `out` checked above; the caller promises a live handle or NULL.
        unsafe { new_client_into(grant, options, out) }
    })
}

/// A client that starts from a refresh token (e.g. one saved by the refresh-token
/// callback). `json_body` sends JSON token requests with the client credentials in the
/// body (viewneo); otherwise a form body with `auth_method`.
///
/// # Safety
/// String arguments are NUL-terminated; `options` is NULL or a live handle; `out` is
/// writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn authcore_client_new_refresh_token(
    token_url: *const c_char,
    client_id: *const c_char,
    client_secret: *const c_char,
    refresh_token: *const c_char,
    json_body: bool,
    auth_method: u32,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (url, id, secret, refresh) = unsafe {
            (
                arg_str(token_url, "token_url")?,
                arg_str(client_id, "client_id")?,
                arg_str(client_secret, "client_secret")?,
                arg_str(refresh_token, "refresh_token")?,
            )
        };
        let mut grant = RefreshToken::new(url, id, secret, refresh)
            .auth_method(self::auth_method(auth_method)?)
            // SAFETY: the caller promises a live handle or NULL.
            .with_settings(unsafe { oauth_or_default(options) });
        if json_body {
            grant = grant.json_body();
        }
        // SAFETY: `out` checked above; the caller promises a live handle or NULL.
        unsafe { new_client_into(grant, options, out) }
    })
}

/// Releases a client. NULL does nothing. No other thread may be using it.
///
/// # Safety
/// `client` is NULL or a handle from an `authcore_client_new_*` function (or
/// `authcore_code_flow_finish_*`) not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_free(client: *mut authcore_client) {
    boundary_or((), || {
        if !client.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(client) });
        }
    })
}

/// A valid access token as an owned string (free it with `authcore_string_free`).
/// Blocks only when the cached token is missing or too close to expiry.
///
/// # Safety
/// `client` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_token(
    client: *const authcore_client,
    out: *mut *mut c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: checked non-NULL; the caller promises it is live.
        let token = unsafe { client_ref(client) }.token()?;
        let s = owned_c_string(token.access_token().expose_secret())?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(s) };
        Ok(())
    })
}

/// Writes a valid access token and its terminating NUL into `buf`.
///
/// `*needed` (if `needed` is not NULL) receives the size required including the NUL,
/// on success and on `AUTHCORE_STATUS_BUFFER_TOO_SMALL`; nothing else is written to
/// `buf` in that case. `buf` may be NULL when `buf_len` is 0, to ask for the size.
///
/// # Safety
/// `client` is a live handle; `buf` is valid for `buf_len` bytes; `needed` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_token_into(
    client: *const authcore_client,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> authcore_status {
    boundary(|| {
        check_null!(client);
        if buf.is_null() && buf_len > 0 {
            return Err(Failure::null("buf"));
        }
        // SAFETY: checked non-NULL; the caller promises it is live.
        let token = unsafe { client_ref(client) }.token()?;
        let bytes = token.access_token().expose_secret().as_bytes();
        if bytes.contains(&0) {
            return Err(Failure::nul_byte());
        }
        let size = bytes.len() + 1;
        // SAFETY: NULL or writable, as the caller promises.
        unsafe { write_opt(needed, size) };
        if buf_len < size {
            return Err(Failure::new(
                authcore_status::BufferTooSmall,
                format!("the token needs {size} bytes; the buffer has {buf_len}"),
            ));
        }
        // SAFETY: `buf` is valid for `buf_len >= size` bytes and does not overlap the
        // token, which authcore owns.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
            buf.add(bytes.len()).write(0);
        }
        Ok(())
    })
}

/// The `Authorization` header value for a valid token (e.g. "Bearer abc"; "DPoP abc"
/// for a DPoP-bound token, which also needs a proof per request: use
/// `authcore_client_request_headers` then), as an owned string (free it with
/// `authcore_string_free`).
///
/// # Safety
/// `client` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_authorization_header(
    client: *const authcore_client,
    out: *mut *mut c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: checked non-NULL; the caller promises it is live.
        let header = unsafe { client_ref(client) }.authorization_header()?;
        let s = owned_c_string(header.expose_secret())?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(s) };
        Ok(())
    })
}

/// Wipes a C string that will not be handed out (it may hold a token or a proof).
fn wipe(s: CString) {
    s.into_bytes_with_nul().zeroize();
}

/// The headers one request needs, for callers with their own HTTP stack, both from one
/// valid token: `*authorization_out` the `Authorization` value ("Bearer abc", or
/// "DPoP abc" for a DPoP-bound token) and `*dpop_out` the `DPoP` header value, a proof
/// made now for this `method` and `url` (with the token's hash and the nonce the URL's
/// origin last gave), or NULL for a bearer token. Send both with the request; a proof
/// is good for one request only. Pass the response to
/// `authcore_client_dpop_nonce_retry`, which remembers the server's next nonce and
/// says whether to send the request once more (with new headers from this function).
/// Blocks only when the cached token is missing or too close to expiry.
///
/// Both strings are owned by the caller: free each with `authcore_string_free`, which
/// wipes them. Nothing is written on failure: a token failure as
/// `authcore_client_token`'s, `AUTHCORE_STATUS_CONFIG` for a URL that is not an
/// `http`/`https` URL or is plain `http://` to a remote host, NULL arguments
/// `AUTHCORE_STATUS_NULL_ARGUMENT`.
///
/// # Safety
/// `client` is a live handle; `method` and `url` are NUL-terminated;
/// `authorization_out` and `dpop_out` are writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_request_headers(
    client: *const authcore_client,
    method: *const c_char,
    url: *const c_char,
    authorization_out: *mut *mut c_char,
    dpop_out: *mut *mut c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(client, authorization_out, dpop_out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (method, url) = unsafe { (arg_str(method, "method")?, arg_str(url, "url")?) };
        // SAFETY: checked non-NULL; the caller promises it is live.
        let headers = unsafe { client_ref(client) }.request_headers(method, url)?;
        let authorization = c_string(headers.authorization.expose_secret());
        let dpop = headers
            .dpop
            .as_ref()
            .map(|p| c_string(p.expose_secret()))
            .transpose();
        match (authorization, dpop) {
            (Ok(authorization), Ok(dpop)) => {
                // SAFETY: checked non-NULL; the caller promises they are writable.
                unsafe {
                    authorization_out.write(authorization.into_raw());
                    dpop_out.write(dpop.map_or(std::ptr::null_mut(), CString::into_raw));
                }
                Ok(())
            }
            (authorization, dpop) => {
                authorization.into_iter().for_each(wipe);
                dpop.into_iter().flatten().for_each(wipe);
                Err(Failure::nul_byte())
            }
        }
    })
}

/// The `DPoP` header value for one request (`method`, `url`) with the client's current
/// token (see `authcore_client_request_headers`, which also gives the `Authorization`
/// value made from the same token: prefer it, since a renewal between two calls would
/// pair a proof with another token). `*out` receives an owned string (free it with
/// `authcore_string_free`), or NULL when the token is a bearer token (no DPoP). Fails
/// as `authcore_client_request_headers` does, writing nothing.
///
/// # Safety
/// `client` is a live handle; `method` and `url` are NUL-terminated; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_dpop_proof(
    client: *const authcore_client,
    method: *const c_char,
    url: *const c_char,
    out: *mut *mut c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (method, url) = unsafe { (arg_str(method, "method")?, arg_str(url, "url")?) };
        // SAFETY: checked non-NULL; the caller promises it is live.
        let proof = unsafe { client_ref(client) }.dpop_proof(method, url)?;
        let s = match proof {
            Some(p) => owned_c_string(p.expose_secret())?,
            None => std::ptr::null_mut(),
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(s) };
        Ok(())
    })
}

/// For callers with their own HTTP stack, after each response to a request that
/// carried this client's token to `url`: remembers the response's `DPoP-Nonce` header
/// (`dpop_nonce`, NULL if it had none) for the next proofs to that origin, and returns
/// whether the server asked for a DPoP nonce (`status` 401 with a `DPoP` challenge
/// `error="use_dpop_nonce"` in `www_authenticate`, NULL if there was none; several
/// header lines joined by commas, and a nonce). Then send the request once more, with
/// new headers from `authcore_client_request_headers`, and once only: a second such
/// answer is final. Such a resend is counted in `authcore_stats.dpop_nonce_retries`.
/// `authcore_client_request` follows this rule itself.
///
/// False for a NULL client or URL, or a string argument that is not UTF-8.
///
/// # Safety
/// `client` is NULL or a live handle; `url` is NULL or NUL-terminated;
/// `www_authenticate` and `dpop_nonce` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_dpop_nonce_retry(
    client: *const authcore_client,
    url: *const c_char,
    status: u16,
    www_authenticate: *const c_char,
    dpop_nonce: *const c_char,
) -> bool {
    boundary_or(false, || {
        // SAFETY: NULL or live, as promised.
        let Some(c) = (unsafe { client.as_ref() }) else {
            return false;
        };
        // SAFETY: NULL or NUL-terminated, as promised.
        let args = unsafe {
            (
                opt_str(url, "url"),
                opt_str(www_authenticate, "www_authenticate"),
                opt_str(dpop_nonce, "dpop_nonce"),
            )
        };
        let (Ok(Some(url)), Ok(challenge), Ok(nonce)) = args else {
            return false;
        };
        c.inner.dpop_nonce_retry(url, status, challenge, nonce)
    })
}

/// The RFC 7638 thumbprint (base64url SHA-256) of the public key the client's tokens
/// are bound to: the `jkt` a server puts in the token's `cnf` claim, and the
/// `dpop_jkt` of an authorization request. That is the key of the client's session
/// (one adopted from a token store keeps its own), else the key its options named.
/// `*out` receives an owned string (free it with `authcore_string_free`), or NULL
/// for a client without DPoP. Never blocks.
///
/// # Safety
/// `client` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_dpop_thumbprint(
    client: *const authcore_client,
    out: *mut *mut c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: checked non-NULL; the caller promises it is live.
        let key = unsafe { client_ref(client) }.dpop_key();
        let s = match key {
            Some(k) => owned_c_string(k.thumbprint())?,
            None => std::ptr::null_mut(),
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(s) };
        Ok(())
    })
}

/// Revokes the client's refresh token and access token at its revocation endpoint
/// (RFC 7009; the refresh token first) and forgets both, in the client and in its
/// store. Afterwards a refresh-token client fails with
/// `AUTHCORE_STATUS_REAUTHENTICATION_REQUIRED` until the user signs in again.
/// `AUTHCORE_STATUS_CONFIG` when the client has no revocation endpoint (nothing is
/// forgotten then); a server error is returned as it is, the tokens forgotten anyway.
///
/// # Safety
/// `client` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_revoke(client: *const authcore_client) -> authcore_status {
    boundary(|| {
        check_null!(client);
        // SAFETY: non-NULL live handle.
        unsafe { client_ref(client) }.revoke()?;
        Ok(())
    })
}

/// How `authcore_client_sign_out` went. In every case the session is forgotten here and
/// in the client's store.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum authcore_sign_out {
    /// There was no session (no token in the client, none live in its store); nothing
    /// was sent to the provider.
    NotSignedIn = 0,
    /// The provider revoked the session's tokens.
    Revoked = 1,
    /// The client has no revocation endpoint: the tokens stay valid at the provider
    /// until they expire.
    NoRevocationEndpoint = 2,
    /// The provider did not revoke them (it refused, could not be reached, or answered
    /// with something unusable): the thread's last error (`authcore_last_error_status`,
    /// `authcore_last_error_message`, `authcore_last_error_oauth_error`, ...) says why.
    RevocationFailed = 3,
}

impl authcore_sign_out {
    fn name(self) -> &'static std::ffi::CStr {
        match self {
            Self::NotSignedIn => c"not_signed_in",
            Self::Revoked => c"revoked",
            Self::NoRevocationEndpoint => c"no_revocation_endpoint",
            Self::RevocationFailed => c"revocation_failed",
        }
    }
}

/// Signs the session out: forgets its tokens in the client and in its store (a revoked
/// record, as `authcore_client_revoke` leaves, so that no process renews it), whatever
/// the provider can do, then asks the provider to revoke them (RFC 7009) if the client
/// has a revocation endpoint. `*outcome` says which of these happened. A provider that
/// cannot revoke is not a failure of this call: it returns `AUTHCORE_STATUS_OK` with
/// `AUTHCORE_SIGN_OUT_REVOCATION_FAILED`, and the provider's failure is left as the
/// thread's last error (the one success that does not clear it).
///
/// Fails (and writes nothing) only when the store could not be updated
/// (`AUTHCORE_STATUS_STORE`; the session may still be stored there, and calling again
/// retries; the provider was still asked to revoke the tokens the client held), or with
/// `AUTHCORE_STATUS_CONFIG` when called from inside this client's own renewal (a
/// callback of it), which it would otherwise wait for.
///
/// # Safety
/// `client` is a live handle; `outcome` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_sign_out(
    client: *const authcore_client,
    outcome: *mut authcore_sign_out,
) -> authcore_status {
    boundary_noting(|| {
        check_null!(client, outcome);
        // SAFETY: non-NULL live handle.
        let (out, noted) = match unsafe { client_ref(client) }.sign_out()? {
            SignOut::NotSignedIn => (authcore_sign_out::NotSignedIn, None),
            SignOut::Revoked => (authcore_sign_out::Revoked, None),
            SignOut::NoRevocationEndpoint => (authcore_sign_out::NoRevocationEndpoint, None),
            SignOut::RevocationFailed(e) => {
                (authcore_sign_out::RevocationFailed, Some(Failure::from(e)))
            }
            // An outcome a later core adds and this library does not know yet.
            _ => {
                return Err(Failure::new(
                    authcore_status::Other,
                    "the session was signed out with an outcome this library does not know",
                ))
            }
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { outcome.write(out) };
        Ok(noted)
    })
}

/// A short, stable, snake_case name of an `authcore_sign_out` ("not_signed_in",
/// "revoked", "no_revocation_endpoint", "revocation_failed"), the values Python's
/// `SignOut.outcome` takes. Static; never NULL; unknown values get "unknown".
#[no_mangle]
pub extern "C" fn authcore_sign_out_name(outcome: u32) -> *const c_char {
    let known = [
        authcore_sign_out::NotSignedIn,
        authcore_sign_out::Revoked,
        authcore_sign_out::NoRevocationEndpoint,
        authcore_sign_out::RevocationFailed,
    ];
    known
        .iter()
        .find(|o| **o as u32 == outcome)
        .map_or(c"unknown".as_ptr(), |o| o.name().as_ptr())
}

/// `*out` receives whether the client holds a refresh token that only it has: one the
/// provider issued to it (a rotation, or a sign-in's first) that its store could not
/// save (the failure is the `store.save_failed` event). It is written first under the
/// next renewal's lock, but a process that ends before then loses it, and the refresh
/// token the store still holds may no longer be accepted: the user may have to sign in
/// again. Always false without a store, and for grants that renew with a credential of
/// their own (client credentials, API key).
///
/// # Safety
/// `client` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_has_unsaved_refresh_token(
    client: *const authcore_client,
    out: *mut bool,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: non-NULL live handle.
        let unsaved = unsafe { client_ref(client) }.has_unsaved_refresh_token();
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(unsaved) };
        Ok(())
    })
}

/// Tells the client that `access_token` was refused (e.g. a 401 from your own HTTP
/// code): if it is still the cached token, the next call renews it. Only the first of
/// many threads reporting the same token causes a renewal. `*invalidated` (if not
/// NULL) is set to whether the cached token was dropped.
///
/// # Safety
/// `client` is a live handle; `access_token` is NUL-terminated; `invalidated` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_invalidate(
    client: *const authcore_client,
    access_token: *const c_char,
    invalidated: *mut bool,
) -> authcore_status {
    boundary(|| {
        check_null!(client);
        // SAFETY: the caller promises a NUL-terminated string.
        let token = unsafe { arg_str(access_token, "access_token")? };
        // SAFETY: checked non-NULL; the caller promises it is live.
        let dropped = unsafe { client_ref(client) }.invalidate_access_token(token);
        // SAFETY: NULL or writable, as the caller promises.
        unsafe { write_opt(invalidated, dropped) };
        Ok(())
    })
}

/// A snapshot of a valid token with its details, made by `authcore_client_token_info`.
/// Its strings are borrowed from it and live until `authcore_token_free`, which zeroes
/// the access token.
pub struct authcore_token {
    token: std::sync::Arc<authcore::Token>,
    access_token: CString,
    token_type: CString,
    scope: Option<CString>,
    id_token: Option<CString>,
    fields_json: CString,
    issued_token_type: Option<CString>,
}

impl Drop for authcore_token {
    fn drop(&mut self) {
        std::mem::take(&mut self.access_token)
            .into_bytes_with_nul()
            .zeroize();
        if let Some(id) = self.id_token.take() {
            id.into_bytes_with_nul().zeroize();
        }
    }
}

/// A valid token with its type, scope and remaining lifetime, as a handle (free it with
/// `authcore_token_free`). Blocks only when the cached token is missing or too close
/// to expiry.
///
/// # Safety
/// `client` is a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_token_info(
    client: *const authcore_client,
    out: *mut *mut authcore_token,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: checked non-NULL; the caller promises it is live.
        let token = unsafe { client_ref(client) }.token()?;
        let handle = authcore_token {
            access_token: c_string(token.access_token().expose_secret())?,
            token_type: c_string(token.token_type())?,
            scope: token.scope().map(c_string).transpose()?,
            id_token: token
                .id_token()
                .map(|s| c_string(s.expose_secret()))
                .transpose()?,
            fields_json: c_string(&serde_json::to_string(token.fields()).map_err(|_| {
                Failure::new(
                    authcore_status::InvalidResponse,
                    "the token's fields could not be encoded",
                )
            })?)?,
            issued_token_type: token.issued_token_type().map(c_string).transpose()?,
            token,
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(Box::new(handle))) };
        Ok(())
    })
}

/// The access token, borrowed from `token` (NULL for NULL).
///
/// # Safety
/// `token` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_access_token(
    token: *const authcore_token,
) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        // SAFETY: NULL or live, as promised.
        unsafe { token.as_ref() }.map_or(std::ptr::null(), |t| t.access_token.as_ptr())
    })
}

/// The token type, e.g. "Bearer" (or "DPoP" for a DPoP-bound token), borrowed from `token` (NULL for NULL).
///
/// # Safety
/// `token` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_type(token: *const authcore_token) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        // SAFETY: NULL or live, as promised.
        unsafe { token.as_ref() }.map_or(std::ptr::null(), |t| t.token_type.as_ptr())
    })
}

/// The granted scope as the provider sent it, borrowed from `token`; NULL if the
/// provider sent none (or for NULL).
///
/// # Safety
/// `token` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_scope(token: *const authcore_token) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        // SAFETY: NULL or live, as promised.
        unsafe { token.as_ref() }
            .and_then(|t| t.scope.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The OpenID Connect ID token that came with the token, borrowed from `token` (zeroed
/// by `authcore_token_free`); NULL if there was none (or for NULL).
///
/// # Safety
/// `token` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_id_token(token: *const authcore_token) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        // SAFETY: NULL or live, as promised.
        unsafe { token.as_ref() }
            .and_then(|t| t.id_token.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// What the server says it issued (a token exchange's `issued_token_type`, RFC 8693,
/// e.g. `urn:ietf:params:oauth:token-type:access_token`), borrowed from `token`; NULL
/// if it did not say (or for NULL).
///
/// # Safety
/// `token` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_issued_token_type(
    token: *const authcore_token,
) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        // SAFETY: NULL or live, as promised.
        unsafe { token.as_ref() }
            .and_then(|t| t.issued_token_type.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The token response's other fields (e.g. `user_id`, `instance_url`) as a JSON object,
/// borrowed from `token`: never a token, a secret or a password; "{}" when there are
/// none. NULL for NULL.
///
/// # Safety
/// `token` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_fields_json(token: *const authcore_token) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        // SAFETY: NULL or live, as promised.
        unsafe { token.as_ref() }.map_or(std::ptr::null(), |t| t.fields_json.as_ptr())
    })
}

/// When the token expires by the server's word, in milliseconds since the Unix epoch
/// (the time the request was sent plus the lifetime granted), or -1 if it never expires
/// or for NULL.
///
/// # Safety
/// `token` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_expires_at_unix_ms(token: *const authcore_token) -> i64 {
    boundary_or(-1, || {
        // SAFETY: NULL or live, as promised.
        unsafe { token.as_ref() }
            .and_then(|t| t.token.expires_at_system())
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

/// Milliseconds until the token expires (0 once it has), or -1 if it never expires or
/// for NULL. Measured on the monotonic clock from when the token was requested.
///
/// # Safety
/// `token` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_expires_in_ms(token: *const authcore_token) -> i64 {
    boundary_or(-1, || {
        // SAFETY: NULL or live, as promised.
        let Some(t) = (unsafe { token.as_ref() }) else {
            return -1;
        };
        t.token.expires_at().map_or(-1, |at| {
            let left = at.saturating_duration_since(std::time::Instant::now());
            i64::try_from(left.as_millis()).unwrap_or(i64::MAX)
        })
    })
}

/// Releases a token handle, zeroing its access token first. NULL does nothing.
///
/// # Safety
/// `token` is NULL or a handle from `authcore_client_token_info` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_free(token: *mut authcore_token) {
    boundary_or((), || {
        if !token.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(token) });
        }
    })
}

/// Whether a response from your own HTTP code is worth `authcore_client_invalidate`
/// and one resend: a 401, for a client whose token can be renewed, unless a `Bearer` or
/// `DPoP` challenge in `www_authenticate` (may be NULL; parsed as RFC 9110 §11.6.1
/// writes it; several header lines joined by commas) says `error="insufficient_scope"`.
/// The rule `authcore_client_request` follows. False for a NULL client.
///
/// # Safety
/// `client` is NULL or a live handle; `www_authenticate` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_renewal_helps(
    client: *const authcore_client,
    status: u16,
    www_authenticate: *const c_char,
) -> bool {
    boundary_or(false, || {
        // SAFETY: NULL or live, as promised.
        let Some(c) = (unsafe { client.as_ref() }) else {
            return false;
        };
        // SAFETY: NULL or NUL-terminated, as promised.
        let challenge = unsafe { opt_str(www_authenticate, "www_authenticate") }
            .ok()
            .flatten();
        c.inner.renewal_helps(status, challenge)
    })
}

/// One request header: two NUL-terminated strings. Handed over as an array, so its
/// size is fixed for good: this struct never changes (a header with more to say would be
/// a new type taken by a new function).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct authcore_header {
    /// Header name, e.g. "Accept".
    pub name: *const c_char,
    /// Header value.
    pub value: *const c_char,
}

/// The response to an authenticated request. Read it with the `authcore_response_*`
/// accessors; release it with `authcore_response_free`.
pub struct authcore_response {
    inner: authcore::Response,
    /// The headers as C strings, made by the first call that reads a header: a caller
    /// that reads none pays for none.
    headers: OnceLock<Vec<(CString, CString)>>,
}

impl authcore_response {
    /// The headers as C strings (values that are not text are left out).
    fn headers(&self) -> &[(CString, CString)] {
        self.headers.get_or_init(|| {
            self.inner
                .headers()
                .filter_map(|(n, v)| Some((CString::new(n).ok()?, CString::new(v).ok()?)))
                .collect()
        })
    }
}

/// Sends `method url` with the client's token. On a 401 (other than an
/// `insufficient_scope` challenge) the token is renewed and the request sent once more.
/// A DPoP-bound token (`authcore_options_set_dpop`) goes as `Authorization: DPoP` with
/// a fresh `DPoP` proof; a 401 `use_dpop_nonce` with a `DPoP-Nonce` is sent once more
/// with a new proof carrying the nonce (no renewal), and every response's `DPoP-Nonce`
/// is remembered for the next proofs to that origin (it stays readable with
/// `authcore_response_header`).
/// Any `Authorization` header in `headers` is replaced. `headers` may be NULL when
/// `header_count` is 0; `body` may be NULL when `body_len` is 0. A response of any HTTP
/// status is a success of this call; check `authcore_response_status`.
///
/// # Safety
/// `client` is a live handle; `method` and `url` are NUL-terminated; `headers` points to
/// `header_count` headers of NUL-terminated strings; `body` is valid for `body_len`
/// bytes; `out` is writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn authcore_client_request(
    client: *const authcore_client,
    method: *const c_char,
    url: *const c_char,
    headers: *const authcore_header,
    header_count: usize,
    body: *const u8,
    body_len: usize,
    out: *mut *mut authcore_response,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: the caller promises a NUL-terminated string; the rest is forwarded.
        unsafe {
            let method = arg_str(method, "method")?;
            send_request(
                client,
                method,
                url,
                headers,
                header_count,
                body,
                body_len,
                out,
            )
        }
    })
}

/// The body of `authcore_client_request` once `client` and `out` are known not to be
/// NULL and the method is read (`authcore_client_get` reads none).
///
/// # Safety
/// As `authcore_client_request`; `client` and `out` are not NULL.
#[allow(clippy::too_many_arguments)]
unsafe fn send_request(
    client: *const authcore_client,
    method: &str,
    url: *const c_char,
    headers: *const authcore_header,
    header_count: usize,
    body: *const u8,
    body_len: usize,
    out: *mut *mut authcore_response,
) -> Result<(), Failure> {
    // SAFETY: the caller promises a NUL-terminated string.
    let url = unsafe { arg_str(url, "url")? };
    if headers.is_null() && header_count > 0 {
        return Err(Failure::null("headers"));
    }
    if body.is_null() && body_len > 0 {
        return Err(Failure::null("body"));
    }
    let raw_headers: &[authcore_header] = if header_count == 0 {
        &[]
    } else {
        // SAFETY: non-NULL and valid for `header_count` items, as promised.
        unsafe { std::slice::from_raw_parts(headers, header_count) }
    };
    let mut pairs = Vec::with_capacity(raw_headers.len());
    for h in raw_headers {
        // SAFETY: the caller promises NUL-terminated strings.
        pairs.push(unsafe {
            (
                arg_str(h.name, "header name")?,
                arg_str(h.value, "header value")?,
            )
        });
    }
    let body: &[u8] = if body_len == 0 {
        &[]
    } else {
        // SAFETY: non-NULL and valid for `body_len` bytes, as promised.
        unsafe { std::slice::from_raw_parts(body, body_len) }
    };
    // SAFETY: not NULL (checked by the caller); the caller promises it is live.
    let response = unsafe { client_ref(client) }.request(method, url, &pairs, body)?;
    let handle = Box::new(authcore_response {
        inner: response,
        headers: OnceLock::new(),
    });
    // SAFETY: not NULL (checked by the caller); the caller promises it is writable.
    unsafe { out.write(Box::into_raw(handle)) };
    Ok(())
}

/// `GET url` with the token attached: `authcore_client_request(client, "GET", url, NULL,
/// 0, NULL, 0, out)`. Every HTTP status is a response (`AUTHCORE_STATUS_OK`); a failure
/// status means there was no usable answer.
///
/// # Safety
/// `client` is a live handle; `url` is NUL-terminated; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_get(
    client: *const authcore_client,
    url: *const c_char,
    out: *mut *mut authcore_response,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: forwarded from the caller; no headers and no body.
        unsafe {
            send_request(
                client,
                "GET",
                url,
                std::ptr::null(),
                0,
                std::ptr::null(),
                0,
                out,
            )
        }
    })
}

/// The HTTP status code, or 0 for NULL.
///
/// # Safety
/// `response` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_response_status(response: *const authcore_response) -> u16 {
    boundary_or(0, || {
        // SAFETY: NULL or live, as promised.
        unsafe { response.as_ref() }.map_or(0, |r| r.inner.status)
    })
}

/// The body: `*data` receives a pointer borrowed from `response` (valid until it is
/// freed; not NUL-terminated) and `*len` its length.
///
/// # Safety
/// `response` is a live handle; `data` and `len` are writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_response_body(
    response: *const authcore_response,
    data: *mut *const u8,
    len: *mut usize,
) -> authcore_status {
    boundary(|| {
        check_null!(response, data, len);
        // SAFETY: checked non-NULL; live and writable as promised.
        unsafe {
            let r = &*response;
            data.write(r.inner.body.as_ptr());
            len.write(r.inner.body.len());
        }
        Ok(())
    })
}

/// The value of the first header called `name` (case-insensitive), borrowed from
/// `response`, or NULL if there is none (or an argument is NULL).
///
/// # Safety
/// `response` is NULL or a live handle; `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_response_header(
    response: *const authcore_response,
    name: *const c_char,
) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        // SAFETY: NULL or live, as promised.
        let Some(r) = (unsafe { response.as_ref() }) else {
            return std::ptr::null();
        };
        // SAFETY: NULL or NUL-terminated, as promised.
        let Ok(Some(name)) = (unsafe { opt_str(name, "name") }) else {
            return std::ptr::null();
        };
        r.headers()
            .iter()
            .find(|(n, _)| n.to_bytes().eq_ignore_ascii_case(name.as_bytes()))
            .map_or(std::ptr::null(), |(_, v)| v.as_ptr())
    })
}

/// The number of response headers, or 0 for NULL.
///
/// # Safety
/// `response` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_response_header_count(
    response: *const authcore_response,
) -> usize {
    boundary_or(0, || {
        // SAFETY: NULL or live, as promised.
        unsafe { response.as_ref() }.map_or(0, |r| r.headers().len())
    })
}

/// Header number `index`: `*name` and `*value` receive pointers borrowed from
/// `response`. `AUTHCORE_STATUS_INVALID_ARGUMENT` if `index` is out of range.
///
/// # Safety
/// `response` is a live handle; `name` and `value` are writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_response_header_at(
    response: *const authcore_response,
    index: usize,
    name: *mut *const c_char,
    value: *mut *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(response, name, value);
        // SAFETY: checked non-NULL; live as promised.
        let r = unsafe { &*response };
        let headers = r.headers();
        let (n, v) = headers.get(index).ok_or_else(|| {
            Failure::invalid(format!(
                "header index {index} is out of range ({} headers)",
                headers.len()
            ))
        })?;
        // SAFETY: checked non-NULL; writable as promised.
        unsafe {
            name.write(n.as_ptr());
            value.write(v.as_ptr());
        }
        Ok(())
    })
}

/// Releases a response. NULL does nothing.
///
/// # Safety
/// `response` is NULL or a handle from `authcore_client_request` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_response_free(response: *mut authcore_response) {
    boundary_or((), || {
        if !response.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            let mut r = unsafe { Box::from_raw(response) };
            r.inner.body.zeroize();
        }
    })
}

/// What a client (and every handle made from it) did so far, filled in by
/// `authcore_client_stats` (or, for a flow, `authcore_code_flow_stats`). Fields are only
/// ever added at the end.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct authcore_stats {
    /// Calls answered from the cache, without a renewal or a wait.
    pub cache_hits: u64,
    /// Token endpoint requests that returned a token (every attempt counts, retries and
    /// device-flow polls included; a flow's exchange counts in the client it makes).
    pub token_requests_succeeded: u64,
    /// Token endpoint requests refused with a 4xx answer.
    pub token_requests_refused: u64,
    /// Token endpoint requests that failed otherwise (5xx, transport, timeout, a body
    /// that is not a token).
    pub token_requests_failed: u64,
    /// Renewals for a client that had no token yet.
    pub renewals_initial: u64,
    /// Renewals of a still-valid token in its renew-ahead window.
    pub renewals_ahead: u64,
    /// Renewals because the token had expired (or was revoked by the client).
    pub renewals_expired: u64,
    /// Renewals because an API rejected the token (a 401).
    pub renewals_rejected: u64,
    /// Renewals asked for by `authcore_client_refresh`.
    pub renewals_forced: u64,
    /// Renewals that adopted a token another process put in the shared store.
    pub store_adoptions: u64,
    /// Calls that waited for another caller's renewal.
    pub waits: u64,
    /// Time spent in those waits, summed over callers, in microseconds.
    pub wait_time_us: u64,
    /// Waits that ended at the caller's deadline before the renewal did.
    pub wait_timeouts: u64,
    /// Calls answered with the last failure because the failure backoff held.
    pub backoff_refusals: u64,
    /// Requests sent again by `authcore_client_request` after a 401 and a renewal.
    pub retries_after_401: u64,
    /// Pending sign-ins an authorization code flow dropped beyond its bound, oldest first
    /// (each also raised the `signin.evicted` warning). Counted by
    /// `authcore_code_flow_stats`; always 0 for a client.
    pub signins_evicted: u64,
    /// Requests sent once more with the DPoP nonce their server asked for
    /// (`use_dpop_nonce`): token requests, `authcore_client_request` resends, and the
    /// resends `authcore_client_dpop_nonce_retry` advised. At most one per request.
    pub dpop_nonce_retries: u64,
}

impl From<authcore::Stats> for authcore_stats {
    fn from(s: authcore::Stats) -> Self {
        authcore_stats {
            cache_hits: s.cache_hits,
            token_requests_succeeded: s.token_requests_succeeded,
            token_requests_refused: s.token_requests_refused,
            token_requests_failed: s.token_requests_failed,
            renewals_initial: s.renewals_initial,
            renewals_ahead: s.renewals_ahead,
            renewals_expired: s.renewals_expired,
            renewals_rejected: s.renewals_rejected,
            renewals_forced: s.renewals_forced,
            store_adoptions: s.store_adoptions,
            waits: s.waits,
            wait_time_us: u64::try_from(s.wait_time.as_micros()).unwrap_or(u64::MAX),
            wait_timeouts: s.wait_timeouts,
            backoff_refusals: s.backoff_refusals,
            retries_after_401: s.retries_after_401,
            signins_evicted: s.signins_evicted,
            dpop_nonce_retries: s.dpop_nonce_retries,
        }
    }
}

/// Writes `stats` to `out`, `size` bytes of it: the fields a caller's header knows, then
/// zeros for the fields this library lacks.
///
/// # Safety
/// `out` is non-NULL and valid for writes of `size` bytes.
pub(crate) unsafe fn write_stats(stats: authcore::Stats, out: *mut authcore_stats, size: usize) {
    let stats = authcore_stats::from(stats);
    let ours = std::mem::size_of::<authcore_stats>();
    // SAFETY: `out` is valid for `size` bytes; we write at most that many, from a
    // plain-old-data struct, then zeros.
    unsafe {
        let dst = out.cast::<u8>();
        std::ptr::copy_nonoverlapping(
            (&stats as *const authcore_stats).cast::<u8>(),
            dst,
            size.min(ours),
        );
        if size > ours {
            std::ptr::write_bytes(dst.add(ours), 0, size - ours);
        }
    }
}

/// Fills `out` with the client's counters. Pass `sizeof(authcore_stats)` as `size`: a
/// program built against an older header (a smaller struct) gets the fields it knows,
/// one built against a newer header gets zeros in the fields this library lacks.
/// Counting is always on and costs a few nanoseconds per call at most. The counts are
/// this process's: in a child forked after the client was made they start at zero.
///
/// # Safety
/// `client` is a live handle; `out` is valid for writes of `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_stats(
    client: *const authcore_client,
    out: *mut authcore_stats,
    size: usize,
) -> authcore_status {
    boundary(|| {
        check_null!(client, out);
        // SAFETY: checked non-NULL; the caller promises it is live.
        let stats = unsafe { client_ref(client) }.stats();
        // SAFETY: forwarded from the caller.
        unsafe { write_stats(stats, out, size) };
        Ok(())
    })
}

/// A new token now, whatever the state of the cached one: exactly one renewal (or the
/// outcome of one already in flight), within the client's timeout. While the failure
/// backoff holds, the last failure comes back without a request. A personal access
/// token client just succeeds. `out` may be NULL; otherwise it receives the new access
/// token as an owned string (free it with `authcore_string_free`).
///
/// # Safety
/// `client` is a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_refresh(
    client: *const authcore_client,
    out: *mut *mut c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(client);
        // SAFETY: checked non-NULL; the caller promises it is live.
        let token = unsafe { client_ref(client) }.refresh()?;
        if !out.is_null() {
            let s = owned_c_string(token.access_token().expose_secret())?;
            // SAFETY: non-NULL and writable, as the caller promises.
            unsafe { out.write(s) };
        }
        Ok(())
    })
}

//! `authcore_token_exchange`: a token exchange (RFC 8693) described piece by piece —
//! the exchanging client, the subject token (a string, a file read again for every
//! exchange, or another client's token: chained), an optional actor token, audiences,
//! scopes, the requested type — from which `authcore_client_new_token_exchange` makes a
//! client.

use std::ffi::c_char;

use authcore::grant::{token_type, TokenExchange, WithOAuthSettings};
use authcore::{AssertionSource, AuthMethod, Secret};

use crate::client::{auth_method, hand_out, oauth_or_default, options_or_default, split_scopes};
use crate::{arg_str, authcore_client, authcore_options, authcore_status, boundary, boundary_or};
use crate::{check_null, opt_str, Failure};

/// A token exchange being described (not yet a client). Set a subject with one of the
/// `authcore_token_exchange_set_subject_*` functions (the last one set counts), then
/// make clients with `authcore_client_new_token_exchange`; free it with
/// `authcore_token_exchange_free`. Not to be changed by two threads at once.
pub struct authcore_token_exchange {
    token_url: String,
    client_id: String,
    client_secret: Secret,
    method: AuthMethod,
    subject: Option<(AssertionSource, String)>,
    actor: Option<(AssertionSource, String)>,
    audiences: Vec<String>,
    scopes: Vec<String>,
    requested_token_type: Option<String>,
}

/// A token type argument: NULL for the access-token type, else a short name
/// (`access_token`, `refresh_token`, `id_token`, `jwt`, `saml1`, `saml2`) or a URI.
///
/// # Safety
/// `p` is NULL or NUL-terminated.
unsafe fn type_arg(p: *const c_char, name: &str) -> Result<String, Failure> {
    // SAFETY: forwarded from the caller.
    let given = unsafe { opt_str(p, name) }?;
    Ok(token_type::from_name(given.unwrap_or("access_token")).to_owned())
}

/// Borrows a live description for a change.
///
/// # Safety
/// `exchange` is non-NULL, live and not used by another thread.
unsafe fn described<'a>(exchange: *mut authcore_token_exchange) -> &'a mut authcore_token_exchange {
    // SAFETY: forwarded from the caller.
    unsafe { &mut *exchange }
}

/// Starts describing a token exchange at `token_url` by the client `client_id`:
/// `client_secret` NULL (or "") is a public client (its id in the body) unless
/// `auth_method` (an `authcore_auth_method`) says otherwise.
///
/// # Safety
/// String arguments are NUL-terminated (`client_secret` may be NULL); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_new(
    token_url: *const c_char,
    client_id: *const c_char,
    client_secret: *const c_char,
    auth_method: u32,
    out: *mut *mut authcore_token_exchange,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises NUL-terminated strings.
        let (url, id, secret) = unsafe {
            (
                arg_str(token_url, "token_url")?,
                arg_str(client_id, "client_id")?,
                opt_str(client_secret, "client_secret")?,
            )
        };
        let handle = authcore_token_exchange {
            token_url: url.to_owned(),
            client_id: id.to_owned(),
            client_secret: Secret::new(secret.unwrap_or("")),
            method: self::auth_method(auth_method)?,
            subject: None,
            actor: None,
            audiences: Vec::new(),
            scopes: Vec::new(),
            requested_token_type: None,
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(Box::new(handle))) };
        Ok(())
    })
}

/// The subject token is `token` itself, of type `token_type` (NULL: access token),
/// sent as it is at every exchange (copied; the copy is wiped when the description and
/// its clients are freed).
///
/// # Safety
/// `exchange` is a live handle; `token` is NUL-terminated, `token_type` NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_set_subject_token(
    exchange: *mut authcore_token_exchange,
    token: *const c_char,
    token_type: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange);
        // SAFETY: the caller promises NUL-terminated strings.
        let (token, kind) = unsafe {
            (
                arg_str(token, "token")?,
                type_arg(token_type, "token_type")?,
            )
        };
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }.subject = Some((AssertionSource::literal(token), kind));
        Ok(())
    })
}

/// The subject token is the contents of the file at `path` (surrounding whitespace
/// trimmed), read again for every exchange (a Kubernetes projected token, a CI
/// system's OIDC token); a missing or empty file fails the exchange with
/// `AUTHCORE_STATUS_CONFIG` naming it. `token_type` NULL: access token.
///
/// # Safety
/// `exchange` is a live handle; `path` is NUL-terminated, `token_type` NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_set_subject_token_file(
    exchange: *mut authcore_token_exchange,
    path: *const c_char,
    token_type: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange);
        // SAFETY: the caller promises NUL-terminated strings.
        let (path, kind) = unsafe { (arg_str(path, "path")?, type_arg(token_type, "token_type")?) };
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }.subject = Some((AssertionSource::file(path), kind));
        Ok(())
    })
}

/// Chained exchange: the subject token is `subject`'s access token (type
/// `token_type`, NULL: access token). That client renews its token as it always does;
/// when the exchange refuses the token it was given, the token is dropped at that
/// client and its next one sent once. The description (and every client made from it)
/// shares `subject`'s token cache; `subject`'s handle may be freed at any time after.
///
/// # Safety
/// `exchange` and `subject` are live handles; `token_type` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_set_subject_client(
    exchange: *mut authcore_token_exchange,
    subject: *const authcore_client,
    token_type: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange, subject);
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let kind = unsafe { type_arg(token_type, "token_type") }?;
        // SAFETY: checked non-NULL; the caller promises a live handle, only read.
        let client = unsafe { (*subject).inner.clone() };
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }.subject = Some((AssertionSource::client(client), kind));
        Ok(())
    })
}

/// The subject token comes from `source` (any `authcore_assertion_source`: a command
/// such as a CI system's token helper, a callback, a file, another client), of type
/// `token_type` (NULL: access token), read for every exchange and once more if the
/// server refuses it. The description copies the source: `source` may be freed at any
/// time after.
///
/// # Safety
/// `exchange` and `source` are live handles; `token_type` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_set_subject_source(
    exchange: *mut authcore_token_exchange,
    source: *const crate::assertion::authcore_assertion_source,
    token_type: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange, source);
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let kind = unsafe { type_arg(token_type, "token_type") }?;
        // SAFETY: checked non-NULL; the caller promises a live handle, only read.
        let source = unsafe { (*source).inner.clone() };
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }.subject = Some((source, kind));
        Ok(())
    })
}

/// Delegation: the actor token comes from `source` (copied, as for
/// `authcore_token_exchange_set_subject_source`), of type `token_type` (NULL: access
/// token); NULL `source` removes it.
///
/// # Safety
/// `exchange` is a live handle; `source` is NULL or a live handle; `token_type` is NULL
/// or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_set_actor_source(
    exchange: *mut authcore_token_exchange,
    source: *const crate::assertion::authcore_assertion_source,
    token_type: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange);
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let kind = unsafe { type_arg(token_type, "token_type") }?;
        // SAFETY: NULL or a live handle, only read.
        let source = unsafe { source.as_ref() }.map(|s| s.inner.clone());
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }.actor = source.map(|s| (s, kind));
        Ok(())
    })
}

/// Delegation: an actor token, `token` itself, of type `token_type` (NULL: access
/// token); NULL `token` removes it.
///
/// # Safety
/// `exchange` is a live handle; `token` and `token_type` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_set_actor_token(
    exchange: *mut authcore_token_exchange,
    token: *const c_char,
    token_type: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange);
        // SAFETY: the caller promises NULL or NUL-terminated strings.
        let (token, kind) = unsafe {
            (
                opt_str(token, "token")?,
                type_arg(token_type, "token_type")?,
            )
        };
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }.actor = token.map(|t| (AssertionSource::literal(t), kind));
        Ok(())
    })
}

/// Delegation: an actor token read from the file at `path` for every exchange, of
/// type `token_type` (NULL: access token); NULL `path` removes it.
///
/// # Safety
/// `exchange` is a live handle; `path` and `token_type` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_set_actor_token_file(
    exchange: *mut authcore_token_exchange,
    path: *const c_char,
    token_type: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange);
        // SAFETY: the caller promises NULL or NUL-terminated strings.
        let (path, kind) = unsafe { (opt_str(path, "path")?, type_arg(token_type, "token_type")?) };
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }.actor = path.map(|p| (AssertionSource::file(p), kind));
        Ok(())
    })
}

/// Adds a service the exchanged token is for (`audience`, by the server's name for
/// it); call once per audience.
///
/// # Safety
/// `exchange` is a live handle; `audience` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_add_audience(
    exchange: *mut authcore_token_exchange,
    audience: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange);
        // SAFETY: the caller promises a NUL-terminated string.
        let audience = unsafe { arg_str(audience, "audience") }?;
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }
            .audiences
            .push(audience.to_owned());
        Ok(())
    })
}

/// The scopes asked for, space-separated (NULL: none, the server's default).
///
/// # Safety
/// `exchange` is a live handle; `scopes` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_set_scopes(
    exchange: *mut authcore_token_exchange,
    scopes: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange);
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let scopes = unsafe { opt_str(scopes, "scopes") }?;
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }.scopes = split_scopes(scopes);
        Ok(())
    })
}

/// The type of token wanted (`requested_token_type`: a short name or a URI; NULL: the
/// server's choice).
///
/// # Safety
/// `exchange` is a live handle; `token_type` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_set_requested_token_type(
    exchange: *mut authcore_token_exchange,
    token_type: *const c_char,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange);
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let wanted = unsafe { opt_str(token_type, "token_type") }?;
        // SAFETY: checked non-NULL; the caller promises it is live and not shared.
        unsafe { described(exchange) }.requested_token_type =
            wanted.map(|t| token_type::from_name(t).to_owned());
        Ok(())
    })
}

/// A client for the exchange `exchange` describes, with `options` (NULL: defaults; its
/// resources, private key and revocation endpoint apply). The exchanged token is cached
/// and renewed by exchanging again; `authcore_token_issued_token_type` says what the
/// server issued. `AUTHCORE_STATUS_CONFIG` when no subject is set. `exchange` stays
/// usable (and must still be freed).
///
/// # Safety
/// `exchange` is a live handle; `options` is NULL or a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_client_new_token_exchange(
    exchange: *const authcore_token_exchange,
    options: *const authcore_options,
    out: *mut *mut authcore_client,
) -> authcore_status {
    boundary(|| {
        check_null!(exchange, out);
        // SAFETY: checked non-NULL; the caller promises a live handle, only read.
        let x = unsafe { &*exchange };
        let Some((subject, subject_type)) = x.subject.clone() else {
            return Err(Failure::new(
                authcore_status::Config,
                "the token exchange has no subject token (set one with \
                 authcore_token_exchange_set_subject_*)",
            ));
        };
        let mut grant = TokenExchange::new(
            x.token_url.clone(),
            x.client_id.clone(),
            x.client_secret.clone(),
            subject,
            subject_type,
        )
        .audiences(x.audiences.clone())
        .scopes(x.scopes.clone())
        .auth_method(x.method)
        // SAFETY: the caller promises a live handle or NULL.
        .with_settings(unsafe { oauth_or_default(options) });
        if let Some((actor, actor_type)) = x.actor.clone() {
            grant = grant.actor(actor, actor_type);
        }
        if let Some(wanted) = &x.requested_token_type {
            grant = grant.requested_token_type(wanted.clone());
        }
        // SAFETY: the caller promises a live handle or NULL.
        let client = authcore::Client::new(grant, unsafe { options_or_default(options) })?;
        // SAFETY: `out` checked above; the caller promises it is writable.
        unsafe { hand_out(out, client) };
        Ok(())
    })
}

/// Releases a description (clients made from it keep working). NULL does nothing.
///
/// # Safety
/// `exchange` is NULL or a handle from `authcore_token_exchange_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_token_exchange_free(exchange: *mut authcore_token_exchange) {
    boundary_or((), || {
        if !exchange.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(exchange) });
        }
    })
}

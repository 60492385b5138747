//! `authcore_metadata`: an authorization server's metadata (RFC 8414 / OpenID Connect
//! Discovery), found from its issuer URL.

use std::ffi::{c_char, CString};

use crate::client::options_or_default;
use crate::{arg_str, authcore_options, authcore_status, boundary, boundary_or, check_null};

/// Discovered metadata. Made by `authcore_discover`, released by
/// `authcore_metadata_free`; its strings live as long as it does.
pub struct authcore_metadata {
    pub(crate) inner: authcore::Metadata,
    /// The C strings the getters hand out, in getter order.
    strings: Vec<Option<CString>>,
}

fn c(s: Option<&str>) -> Option<CString> {
    s.and_then(|s| CString::new(s).ok())
}

/// Fetches `issuer`'s metadata (RFC 8414's location, then OpenID Connect Discovery's)
/// within the options' timeout. The document must name the same issuer
/// (`AUTHCORE_STATUS_ISSUER_MISMATCH` otherwise), and every endpoint must be HTTPS
/// (or loopback).
///
/// # Safety
/// `issuer` is NUL-terminated; `options` is NULL or a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn authcore_discover(
    issuer: *const c_char,
    options: *const authcore_options,
    out: *mut *mut authcore_metadata,
) -> authcore_status {
    boundary(|| {
        check_null!(out);
        // SAFETY: the caller promises a NUL-terminated string.
        let issuer = unsafe { arg_str(issuer, "issuer")? };
        // SAFETY: the caller promises a live handle or NULL.
        let options = unsafe { options_or_default(options) };
        let inner = authcore::Metadata::discover(issuer, &options)?;
        let strings = vec![
            c(Some(&inner.issuer)),
            c(inner.authorization_endpoint.as_deref()),
            c(inner.token_endpoint.as_deref()),
            c(inner.device_authorization_endpoint.as_deref()),
            c(inner.revocation_endpoint.as_deref()),
            c(inner.userinfo_endpoint.as_deref()),
        ];
        let handle = Box::into_raw(Box::new(authcore_metadata { inner, strings }));
        // SAFETY: checked above; the caller promises it is writable.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Which metadata field `authcore_metadata_get` returns.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum authcore_metadata_field {
    /// `issuer`.
    Issuer = 0,
    /// `authorization_endpoint`.
    AuthorizationEndpoint = 1,
    /// `token_endpoint`.
    TokenEndpoint = 2,
    /// `device_authorization_endpoint`.
    DeviceAuthorizationEndpoint = 3,
    /// `revocation_endpoint`.
    RevocationEndpoint = 4,
    /// `userinfo_endpoint`.
    UserinfoEndpoint = 5,
}

/// A field of the metadata, or NULL when the server does not name it (or `metadata`
/// is NULL, or `field` is not an `authcore_metadata_field`). Valid until the metadata
/// is freed.
///
/// # Safety
/// `metadata` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_metadata_get(
    metadata: *const authcore_metadata,
    field: u32,
) -> *const c_char {
    boundary_or(std::ptr::null(), || {
        if metadata.is_null() {
            return std::ptr::null();
        }
        // SAFETY: non-NULL live handle, only read.
        let m = unsafe { &*metadata };
        usize::try_from(field)
            .ok()
            .and_then(|i| m.strings.get(i))
            .and_then(Option::as_ref)
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Whether the server promises `iss` in authorization responses (RFC 9207); false for
/// NULL.
///
/// # Safety
/// `metadata` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn authcore_metadata_iss_supported(
    metadata: *const authcore_metadata,
) -> bool {
    boundary_or(false, || {
        // SAFETY: NULL or a live handle, only read.
        !metadata.is_null()
            && unsafe { &*metadata }
                .inner
                .authorization_response_iss_parameter_supported
    })
}

/// Releases metadata. NULL does nothing.
///
/// # Safety
/// `metadata` is NULL or a handle from `authcore_discover` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn authcore_metadata_free(metadata: *mut authcore_metadata) {
    boundary_or((), || {
        if !metadata.is_null() {
            // SAFETY: the handle came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(metadata) });
        }
    })
}

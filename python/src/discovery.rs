//! `discover(issuer)`: an authorization server's metadata (RFC 8414 / OpenID Connect
//! Discovery), with RFC 8414's field names as attributes.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::to_py_err;
use crate::options::options_arg;

/// What an authorization server says about itself; attributes carry RFC 8414's names.
#[pyclass(frozen, module = "authcore._authcore", name = "Metadata")]
pub(crate) struct Metadata {
    pub(crate) inner: authcore::Metadata,
}

#[pymethods]
impl Metadata {
    /// The issuer identifier (equal to the URL it was discovered from).
    #[getter]
    fn issuer(&self) -> &str {
        &self.inner.issuer
    }
    /// Where users are sent to sign in.
    #[getter]
    fn authorization_endpoint(&self) -> Option<&str> {
        self.inner.authorization_endpoint.as_deref()
    }
    /// Where tokens are requested.
    #[getter]
    fn token_endpoint(&self) -> Option<&str> {
        self.inner.token_endpoint.as_deref()
    }
    /// Where devices start the device flow.
    #[getter]
    fn device_authorization_endpoint(&self) -> Option<&str> {
        self.inner.device_authorization_endpoint.as_deref()
    }
    /// Where tokens are revoked.
    #[getter]
    fn revocation_endpoint(&self) -> Option<&str> {
        self.inner.revocation_endpoint.as_deref()
    }
    /// Where tokens are introspected.
    #[getter]
    fn introspection_endpoint(&self) -> Option<&str> {
        self.inner.introspection_endpoint.as_deref()
    }
    /// The OpenID Connect UserInfo endpoint.
    #[getter]
    fn userinfo_endpoint(&self) -> Option<&str> {
        self.inner.userinfo_endpoint.as_deref()
    }
    /// The server's public keys.
    #[getter]
    fn jwks_uri(&self) -> Option<&str> {
        self.inner.jwks_uri.as_deref()
    }
    /// Scopes the server supports.
    #[getter]
    fn scopes_supported(&self) -> Vec<String> {
        self.inner.scopes_supported.clone()
    }
    /// Grant types the server supports.
    #[getter]
    fn grant_types_supported(&self) -> Vec<String> {
        self.inner.grant_types_supported.clone()
    }
    /// Client authentication methods at the token endpoint.
    #[getter]
    fn token_endpoint_auth_methods_supported(&self) -> Vec<String> {
        self.inner.token_endpoint_auth_methods_supported.clone()
    }
    /// PKCE methods the server supports.
    #[getter]
    fn code_challenge_methods_supported(&self) -> Vec<String> {
        self.inner.code_challenge_methods_supported.clone()
    }
    /// Whether authorization responses carry `iss` (RFC 9207).
    #[getter]
    fn authorization_response_iss_parameter_supported(&self) -> bool {
        self.inner.authorization_response_iss_parameter_supported
    }

    /// Endpoints to use instead when presenting a client certificate (RFC 8705 §5),
    /// by the name of the endpoint they stand for.
    #[getter]
    fn mtls_endpoint_aliases(&self) -> std::collections::BTreeMap<String, String> {
        self.inner.mtls_endpoint_aliases.clone()
    }

    /// Whether the server binds access tokens to client certificates (RFC 8705 §3).
    #[getter]
    fn tls_client_certificate_bound_access_tokens(&self) -> bool {
        self.inner.tls_client_certificate_bound_access_tokens
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<authcore.Metadata {}>",
            crate::repr::fields(py, &[("issuer", Some(&self.inner.issuer))])
        )
    }
}

/// Fetches `issuer`'s metadata (RFC 8414, then OpenID Connect Discovery). The document
/// must name the same issuer (`IssuerMismatchError` otherwise), and its endpoints must
/// be HTTPS (or loopback).
#[pyfunction]
#[pyo3(signature = (issuer, **options))]
pub(crate) fn discover(
    py: Python<'_>,
    issuer: &str,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Metadata> {
    let options = options_arg(options)?;
    crate::events::detach(py, || authcore::Metadata::discover(issuer, &options))?
        .map(|inner| Metadata { inner })
        .map_err(|e| to_py_err(py, e))
}

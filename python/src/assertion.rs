//! `AssertionSource`: where a short-lived credential someone else issues comes from (a
//! federated client assertion, a JWT bearer grant's assertion), the `client_assertion`
//! keyword of the OAuth constructors, and the JWT bearer grant's constructors. Reading,
//! re-reading after a refusal and the expiry check live in the core.

use std::time::Duration;

use authcore::grant::{JwtBearer, PrivateKey, WithOAuthSettings};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::client::{new_client, Client};
use crate::errors::to_py_err;
use crate::options::{auth_method_arg, scopes_arg, seconds, split_options, type_name};
use crate::repr::fields;

/// Where an assertion comes from: a literal, a file read for every token request (a
/// Kubernetes projected token), a command whose output it is (a CI system's helper), a
/// callable, or another client's access token. Its `repr` names the source (a path, a
/// program), never what it yields.
#[pyclass(frozen, module = "authcore._authcore", name = "AssertionSource")]
pub(crate) struct AssertionSource {
    pub(crate) inner: authcore::AssertionSource,
}

#[pymethods]
impl AssertionSource {
    /// A fixed value, sent as it is (when it expires, every request fails: prefer a
    /// file, a command or a callable for values renewed elsewhere).
    #[staticmethod]
    fn literal(value: &str) -> AssertionSource {
        AssertionSource {
            inner: authcore::AssertionSource::literal(value),
        }
    }

    /// A file read again for every token request, whitespace trimmed; a missing or
    /// empty file raises `ConfigError` naming it when a token is requested.
    #[staticmethod]
    fn file(path: std::path::PathBuf) -> AssertionSource {
        AssertionSource {
            inner: authcore::AssertionSource::file(path),
        }
    }

    /// A program run (without a shell) for every token request, its standard output
    /// the assertion; `timeout` seconds per run [10]. A non-zero exit, no output or a
    /// timeout raises an error naming the program, never its output.
    #[staticmethod]
    #[pyo3(signature = (program, args = Vec::new(), *, timeout = None))]
    fn command(
        program: &str,
        args: Vec<String>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<AssertionSource> {
        let mut inner = authcore::AssertionSource::command(program, args);
        if let Some(t) = timeout.filter(|t| !t.is_none()) {
            let limit: Duration = seconds("timeout", t)?;
            inner = inner.timeout(limit);
        }
        Ok(AssertionSource { inner })
    }

    /// A callable returning the assertion (`str`), called for every token request on
    /// the renewing thread; an exception it raises fails the request with
    /// `ConfigError` carrying its message.
    #[staticmethod]
    fn callback(function: &Bound<'_, PyAny>) -> PyResult<AssertionSource> {
        if !function.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "an assertion callback must be callable, not {}",
                type_name(function)
            )));
        }
        let function: Py<PyAny> = function.clone().unbind();
        let inner = authcore::AssertionSource::callback(move || {
            Python::attach(|py| {
                let value = function.call0(py).map_err(|e| e.to_string())?;
                let text = value
                    .bind(py)
                    .cast::<PyString>()
                    .map_err(|_| format!("it returned {}, not a str", type_name(value.bind(py))))?;
                Ok(authcore::Secret::new(
                    text.to_cow().map_err(|e| e.to_string())?,
                ))
            })
            .map_err(|e: String| e.into())
        });
        Ok(AssertionSource { inner })
    }

    /// Another client's access token (chained token exchange): that client renews it
    /// as usual; when a server refuses the token it was given, it is invalidated there
    /// and the next one tried once.
    #[staticmethod]
    fn client(client: &Client) -> AssertionSource {
        AssertionSource {
            inner: authcore::AssertionSource::client(client.inner.clone()),
        }
    }

    /// `<authcore.AssertionSource file='/path'>`, `… command='program'>`, `… literal>`,
    /// `… callback>`, `… client>`: the core's description of the source, never what it
    /// yields (nor a command's arguments).
    fn __repr__(&self, py: Python<'_>) -> String {
        let described = self.inner.describe();
        match described.split_once(' ') {
            Some((kind, detail)) => format!(
                "<authcore.AssertionSource {}>",
                fields(py, &[(kind, Some(detail))])
            ),
            None => format!("<authcore.AssertionSource {described}>"),
        }
    }
}

/// The `client_assertion` keyword: an `AssertionSource`.
pub(crate) fn client_assertion_arg(v: &Bound<'_, PyAny>) -> PyResult<authcore::AssertionSource> {
    v.cast::<AssertionSource>()
        .map(|s| s.get().inner.clone())
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "'client_assertion' must be an AssertionSource (AssertionSource.file(path), \
                 .command(...), ...), not {}",
                type_name(v)
            ))
        })
}

/// PEM as `str` or `bytes`.
fn pem_arg(name: &str, v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = v.cast::<PyString>() {
        Ok(s.to_cow()?.as_bytes().to_vec())
    } else if let Ok(b) = v.cast::<PyBytes>() {
        Ok(b.as_bytes().to_vec())
    } else {
        Err(PyTypeError::new_err(format!(
            "'{name}' must be PEM as str or bytes, not {}",
            type_name(v)
        )))
    }
}

/// The keywords both JWT bearer constructors take besides their assertion's own: the
/// scopes, the client's own authentication (none without `client_id`, else with
/// `client_secret` — none: a public client, or the `private_key` / `client_assertion`
/// keyword — by `auth_method`) and the options.
pub(crate) struct JwtBearerArgs<'a, 'py> {
    pub scopes: Option<&'a Bound<'py, PyAny>>,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    pub auth_method: &'a str,
    pub options: Option<&'a Bound<'py, PyDict>>,
}

impl JwtBearerArgs<'_, '_> {
    /// The client of `grant` with these keywords; `described` is what its `repr` shows.
    fn client(
        &self,
        py: Python<'_>,
        grant: JwtBearer,
        described: &[(&str, Option<&str>)],
    ) -> PyResult<Client> {
        let (settings, options) = split_options(py, self.options)?;
        let grant = grant.scopes(scopes_arg(self.scopes)?);
        let grant = match (self.client_id, self.client_secret) {
            (Some(id), secret) => grant
                .client(id, secret.unwrap_or(""))
                .auth_method(auth_method_arg(self.auth_method)?),
            (None, Some(_)) => {
                return Err(PyTypeError::new_err("'client_secret' needs 'client_id'"))
            }
            (None, None) => grant,
        }
        .with_settings(settings);
        new_client(
            authcore::Client::new(grant, options),
            py,
            fields(py, described),
        )
    }
}

/// `Client.jwt_bearer`: the JWT bearer grant (RFC 7523 §2.1): the assertion from `assertion` (an
/// `AssertionSource`) is the grant, read for every token request, once more after a
/// refusal, never sent expired. With `client_id` the client authenticates too
/// (`client_secret`, `private_key=` or `client_assertion=`).
pub(crate) fn jwt_bearer(
    py: Python<'_>,
    token_url: &str,
    assertion: &AssertionSource,
    args: &JwtBearerArgs<'_, '_>,
) -> PyResult<Client> {
    args.client(
        py,
        JwtBearer::new(token_url, assertion.inner.clone()),
        &[
            ("grant", Some("jwt_bearer")),
            ("token_url", Some(token_url)),
            ("assertion", Some(&assertion.inner.describe())),
        ],
    )
}

/// `Client.jwt_bearer_signed`: the JWT bearer grant with assertions signed for every request by `signing_key`
/// (PEM, `str` or `bytes`; RSA, P-256 or Ed25519): `iss` = `issuer`, `sub` =
/// `subject`, `aud` = `audience` [the token endpoint], `exp` 60 s on, a random
/// `jti` — the service-account key pattern. `signing_key_id` names the key (`kid`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn jwt_bearer_signed(
    py: Python<'_>,
    token_url: &str,
    signing_key: &Bound<'_, PyAny>,
    issuer: &str,
    subject: &str,
    audience: Option<&str>,
    signing_key_id: Option<&str>,
    args: &JwtBearerArgs<'_, '_>,
) -> PyResult<Client> {
    let pem = zeroize::Zeroizing::new(pem_arg("signing_key", signing_key)?);
    let mut key = PrivateKey::from_pem(&pem, None).map_err(|e| to_py_err(py, e))?;
    if let Some(kid) = signing_key_id {
        key = key.key_id(kid);
    }
    let mut grant = JwtBearer::signed(token_url, key, issuer, subject);
    if let Some(aud) = audience {
        grant = grant.audience(aud);
    }
    args.client(
        py,
        grant,
        &[
            ("grant", Some("jwt_bearer")),
            ("token_url", Some(token_url)),
            ("issuer", Some(issuer)),
            ("subject", Some(subject)),
        ],
    )
}

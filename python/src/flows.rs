//! Flows that sign a user in and hand out a `Client`: the authorization code flow and
//! the device flow.

use std::time::Duration;

use authcore::grant::{AuthorizationCode, DeviceCode};
use authcore::Options;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::client::Client;
use crate::discovery::Metadata;
use crate::errors::to_py_err;
use crate::options::{auth_method_arg, scopes_arg, seconds, split_options};
use crate::repr::fields;
use crate::stats::Stats;
use authcore::grant::WithOAuthSettings;

/// A URL to send the user to, with the `state` that must come back.
#[pyclass(frozen, module = "authcore._authcore", name = "AuthorizationRequest")]
pub(crate) struct AuthorizationRequest {
    /// The URL to open in the user's browser.
    #[pyo3(get)]
    url: String,
    /// The one-time `state` sent with it.
    #[pyo3(get)]
    state: String,
    /// This sign-in as an opaque sealed string (holds the PKCE verifier, encrypted).
    pending: authcore::Secret,
}

#[pymethods]
impl AuthorizationRequest {
    /// This sign-in as an opaque string sealed under the flow's pending key, for a server
    /// whose callback may land in another worker process: keep it in the user's
    /// server-side session and pass it to `finish(callback_url, pending=...)`. It holds
    /// the PKCE verifier (encrypted): never send it to the browser or put it in a cookie.
    #[getter]
    fn pending(&self) -> &str {
        self.pending.expose_secret()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<authcore.AuthorizationRequest {}>",
            fields(py, &[("url", Some(&self.url))])
        )
    }
}

/// The authorization code grant (PKCE S256 and a one-time `state` from the OS random
/// source): make the URL with `authorization_url()`, keep its `state` (or `pending`) in
/// the user's session, send the user there, then `finish(callback_url, state)` (or
/// `finish(callback_url, pending=...)`) gives a `Client` that renews with the refresh
/// token.
#[pyclass(frozen, module = "authcore._authcore", name = "AuthorizationCodeFlow")]
pub(crate) struct AuthorizationCodeFlow {
    inner: authcore::AuthorizationCodeFlow,
    description: String,
}

/// How a flow keeps its pending sign-ins: the `pending_key` and `pending_lifetime`
/// keywords every constructor takes.
pub(crate) struct PendingArgs<'a, 'py> {
    key: Option<&'a Bound<'py, PyAny>>,
    lifetime: Option<&'a Bound<'py, PyAny>>,
}

pub(crate) fn new_flow(
    py: Python<'_>,
    config: AuthorizationCode,
    options: Options,
    pending: PendingArgs<'_, '_>,
    description: String,
) -> PyResult<AuthorizationCodeFlow> {
    let mut inner =
        authcore::AuthorizationCodeFlow::new(config, options).map_err(|e| to_py_err(py, e))?;
    if let Some(key) = pending.key.filter(|k| !k.is_none()) {
        let key = key.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "'pending_key' must be bytes ({} random bytes), not {}",
                authcore::PENDING_KEY_LEN,
                crate::options::type_name(key)
            ))
        })?;
        inner
            .set_pending_key(key.as_bytes())
            .map_err(|e| to_py_err(py, e))?;
    }
    if let Some(lifetime) = pending.lifetime.filter(|l| !l.is_none()) {
        inner
            .set_pending_lifetime(seconds("pending_lifetime", lifetime)?)
            .map_err(|e| to_py_err(py, e))?;
    }
    Ok(AuthorizationCodeFlow { inner, description })
}

#[pymethods]
impl AuthorizationCodeFlow {
    /// A flow at any OAuth 2.0 server (form bodies, Basic auth and PKCE by default);
    /// `client_secret` `None`: a public client.
    #[new]
    #[pyo3(signature = (authorize_url, token_url, client_id, client_secret, redirect_uri, *, scopes = None, json_body = false, auth_method = "basic", pkce = true, pending_key = None, pending_lifetime = None, **options))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        authorize_url: &str,
        token_url: &str,
        client_id: &str,
        client_secret: Option<&str>,
        redirect_uri: &str,
        scopes: Option<&Bound<'_, PyAny>>,
        json_body: bool,
        auth_method: &str,
        pkce: bool,
        pending_key: Option<&Bound<'_, PyAny>>,
        pending_lifetime: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let (args, options) = split_options(py, options)?;
        let mut config = AuthorizationCode::new(
            authorize_url,
            token_url,
            client_id,
            client_secret.unwrap_or(""),
            redirect_uri,
        )
        .scopes(scopes_arg(scopes)?)
        .auth_method(auth_method_arg(auth_method)?)
        .pkce(pkce)
        .with_settings(args);
        if json_body {
            config = config.json_body();
        }
        new_flow(
            py,
            config,
            options,
            PendingArgs {
                key: pending_key,
                lifetime: pending_lifetime,
            },
            fields(
                py,
                &[
                    ("authorize_url", Some(authorize_url)),
                    ("client_id", Some(client_id)),
                ],
            ),
        )
    }

    /// A flow at the endpoints of discovered `metadata`; callbacks must then carry that
    /// issuer's `iss` (RFC 9207) when it sends one, else `IssuerMismatchError`.
    /// `client_secret` `None`: a public client.
    #[staticmethod]
    #[pyo3(signature = (metadata, client_id, client_secret, redirect_uri, *, scopes = None, auth_method = "basic", pending_key = None, pending_lifetime = None, **options))]
    #[allow(clippy::too_many_arguments)]
    fn from_metadata(
        py: Python<'_>,
        metadata: &Metadata,
        client_id: &str,
        client_secret: Option<&str>,
        redirect_uri: &str,
        scopes: Option<&Bound<'_, PyAny>>,
        auth_method: &str,
        pending_key: Option<&Bound<'_, PyAny>>,
        pending_lifetime: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let (args, options) = split_options(py, options)?;
        let config = AuthorizationCode::from_metadata(
            &metadata.inner,
            client_id,
            client_secret.unwrap_or(""),
            redirect_uri,
        )
        .map_err(|e| to_py_err(py, e))?
        .scopes(scopes_arg(scopes)?)
        .auth_method(auth_method_arg(auth_method)?)
        .with_settings(args);
        new_flow(
            py,
            config,
            options,
            PendingArgs {
                key: pending_key,
                lifetime: pending_lifetime,
            },
            fields(
                py,
                &[
                    ("issuer", Some(&metadata.inner.issuer)),
                    ("client_id", Some(client_id)),
                ],
            ),
        )
    }

    /// viewneo (JSON token requests) at `https://cloud.viewneo.com` or `base_url`.
    #[staticmethod]
    #[pyo3(signature = (client_id, client_secret, redirect_uri, *, base_url = None, scopes = None, pending_key = None, pending_lifetime = None, **options))]
    #[allow(clippy::too_many_arguments)]
    fn viewneo(
        py: Python<'_>,
        client_id: &str,
        client_secret: Option<&str>,
        redirect_uri: &str,
        base_url: Option<&str>,
        scopes: Option<&Bound<'_, PyAny>>,
        pending_key: Option<&Bound<'_, PyAny>>,
        pending_lifetime: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let (args, options) = split_options(py, options)?;
        let client_secret = client_secret.unwrap_or("");
        let config = match base_url {
            Some(base) => {
                AuthorizationCode::viewneo_at(base, client_id, client_secret, redirect_uri)
            }
            None => AuthorizationCode::viewneo(client_id, client_secret, redirect_uri),
        }
        .scopes(scopes_arg(scopes)?)
        .with_settings(args);
        new_flow(
            py,
            config,
            options,
            PendingArgs {
                key: pending_key,
                lifetime: pending_lifetime,
            },
            fields(
                py,
                &[
                    ("provider", Some("viewneo")),
                    ("client_id", Some(client_id)),
                ],
            ),
        )
    }

    /// A fresh authorization URL and `state` for one sign-in. Any number may be in
    /// flight at once (each for 10 minutes by default); a flow keeps at most 1024 in
    /// memory and beyond that drops the oldest, with the `signin.evicted` warning,
    /// counted in `stats().signins_evicted` (sealed sign-ins need no room).
    fn authorization_url(&self, py: Python<'_>) -> PyResult<AuthorizationRequest> {
        let request = self
            .inner
            .authorization_url()
            .map_err(|e| to_py_err(py, e))?;
        Ok(AuthorizationRequest {
            url: request.url,
            state: request.state,
            pending: request.pending,
        })
    }

    /// Finishes a sign-in from the URL the provider redirected to (the full URL, or the
    /// path with its query string) and the binding this user's session kept when the URL
    /// was made: `state` (`AuthorizationRequest.state`), or, for a sign-in started in
    /// another worker process, `pending` (`AuthorizationRequest.pending`, sealed).
    /// Exchanges the code and returns a `Client`. Neither (or both) raises
    /// `ConfigError`; a callback that is not this session's sign-in, or unknown,
    /// expired or reused, raises `StateMismatchError`; an altered or foreign `pending`
    /// raises `ConfigError` — each before any token request.
    #[pyo3(signature = (callback_url, state = None, *, pending = None))]
    fn finish(
        &self,
        py: Python<'_>,
        callback_url: &str,
        state: Option<&str>,
        pending: Option<&str>,
    ) -> PyResult<Client> {
        let inner = &self.inner;
        let client = crate::events::detach(py, || match (state, pending) {
            (Some(_), Some(_)) => Err(authcore::Error::Config {
                message: "finish takes the sign-in's state or its pending form, not both".into(),
            }),
            (None, Some(pending)) => inner.finish_pending(callback_url, pending),
            // No state: the core refuses, saying what it needs.
            (state, None) => inner.finish(callback_url, state.unwrap_or("")),
        })?
        .map_err(|e| to_py_err(py, e))?;
        Ok(Client::wrap(
            client,
            format!(
                "{} {}",
                fields(py, &[("grant", Some("authorization_code"))]),
                self.description
            ),
        ))
    }

    /// What this flow did so far: its code exchanges (token requests, each also counted
    /// in the client it made) and `signins_evicted`.
    fn stats(&self) -> Stats {
        Stats::from(self.inner.stats())
    }

    fn __repr__(&self) -> String {
        format!("<authcore.AuthorizationCodeFlow {}>", self.description)
    }
}

/// The device authorization grant (RFC 8628) for devices without a browser:
/// `start()` gives the code to show; its `wait()` gives a `Client`.
#[pyclass(frozen, module = "authcore._authcore", name = "DeviceFlow")]
pub(crate) struct DeviceFlow {
    inner: authcore::DeviceFlow,
    description: String,
}

fn new_device_flow(
    py: Python<'_>,
    config: DeviceCode,
    options: Options,
    description: String,
) -> PyResult<DeviceFlow> {
    authcore::DeviceFlow::new(config, options)
        .map(|inner| DeviceFlow { inner, description })
        .map_err(|e| to_py_err(py, e))
}

#[pymethods]
impl DeviceFlow {
    /// A flow at any server; `client_secret` `None`: a public client.
    #[new]
    #[pyo3(signature = (device_authorization_url, token_url, client_id, client_secret = None, *, scopes = None, auth_method = "basic", **options))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        device_authorization_url: &str,
        token_url: &str,
        client_id: &str,
        client_secret: Option<&str>,
        scopes: Option<&Bound<'_, PyAny>>,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let (args, options) = split_options(py, options)?;
        let config = DeviceCode::new(
            device_authorization_url,
            token_url,
            client_id,
            client_secret.unwrap_or(""),
        )
        .scopes(scopes_arg(scopes)?)
        .auth_method(auth_method_arg(auth_method)?)
        .with_settings(args);
        new_device_flow(
            py,
            config,
            options,
            fields(
                py,
                &[
                    ("device_authorization_url", Some(device_authorization_url)),
                    ("client_id", Some(client_id)),
                ],
            ),
        )
    }

    /// A flow at the endpoints of discovered `metadata`.
    #[staticmethod]
    #[pyo3(signature = (metadata, client_id, client_secret = None, *, scopes = None, auth_method = "basic", **options))]
    fn from_metadata(
        py: Python<'_>,
        metadata: &Metadata,
        client_id: &str,
        client_secret: Option<&str>,
        scopes: Option<&Bound<'_, PyAny>>,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let (args, options) = split_options(py, options)?;
        let config =
            DeviceCode::from_metadata(&metadata.inner, client_id, client_secret.unwrap_or(""))
                .map_err(|e| to_py_err(py, e))?
                .scopes(scopes_arg(scopes)?)
                .auth_method(auth_method_arg(auth_method)?)
                .with_settings(args);
        new_device_flow(
            py,
            config,
            options,
            fields(
                py,
                &[
                    ("issuer", Some(&metadata.inner.issuer)),
                    ("client_id", Some(client_id)),
                ],
            ),
        )
    }

    /// Asks the server for a device code; show the result's `user_code` and
    /// `verification_uri` to the user, then call its `wait()`.
    fn start(&self, py: Python<'_>) -> PyResult<DeviceAuthorization> {
        let inner = &self.inner;
        let auth = crate::events::detach(py, || inner.start())?.map_err(|e| to_py_err(py, e))?;
        Ok(DeviceAuthorization {
            cancel: auth.cancel_handle(),
            inner: std::sync::Arc::new(auth),
            description: self.description.clone(),
        })
    }

    fn __repr__(&self) -> String {
        format!("<authcore.DeviceFlow {}>", self.description)
    }
}

/// A started device authorization.
#[pyclass(frozen, module = "authcore._authcore", name = "DeviceAuthorization")]
pub(crate) struct DeviceAuthorization {
    inner: std::sync::Arc<authcore::DeviceAuthorization>,
    cancel: authcore::CancelHandle,
    description: String,
}

/// How often a waiting thread looks for signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

#[pymethods]
impl DeviceAuthorization {
    /// The code the user enters.
    #[getter]
    fn user_code(&self) -> &str {
        &self.inner.user_code
    }
    /// Where the user enters it.
    #[getter]
    fn verification_uri(&self) -> &str {
        &self.inner.verification_uri
    }
    /// A URL with the code in it, if the server gives one.
    #[getter]
    fn verification_uri_complete(&self) -> Option<&str> {
        self.inner.verification_uri_complete.as_deref()
    }
    /// Seconds the codes are valid.
    #[getter]
    fn expires_in(&self) -> f64 {
        self.inner.expires_in.as_secs_f64()
    }
    /// Seconds between polls, as the server asked.
    #[getter]
    fn interval(&self) -> f64 {
        self.inner.interval.as_secs_f64()
    }

    /// Polls until the user approves and returns a `Client` that renews by refresh
    /// token. Raises the server's error (`OAuthError` `access_denied` /
    /// `expired_token`), `TimeoutError` when the codes expire or `timeout` seconds
    /// pass, `CancelledError` after `cancel()`; Ctrl-C cancels and raises
    /// `KeyboardInterrupt`.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Client> {
        let timeout = match timeout.filter(|t| !t.is_none()) {
            Some(t) => Some(seconds("timeout", t)?),
            None => None,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // Shared with the detached closures below (a receiver is Send, not Sync).
        let rx = std::sync::Mutex::new(rx);
        let recv = |within: Option<Duration>| {
            let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match within {
                Some(d) => rx.recv_timeout(d),
                None => rx
                    .recv()
                    .map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
            }
        };
        let auth = std::sync::Arc::clone(&self.inner);
        std::thread::spawn(move || {
            let _ = tx.send(auth.wait(timeout));
        });
        loop {
            match py.detach(|| recv(Some(SIGNAL_CHECK))) {
                Ok(result) => {
                    let client = result.map_err(|e| to_py_err(py, e))?;
                    return Ok(Client::wrap(
                        client,
                        format!(
                            "{} {}",
                            fields(py, &[("grant", Some("device_code"))]),
                            self.description
                        ),
                    ));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        self.cancel.cancel();
                        let _ = py.detach(|| recv(None));
                        return Err(e);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(pyo3::exceptions::PyRuntimeError::new_err(
                        "the device flow's waiting thread ended without an answer",
                    ));
                }
            }
        }
    }

    /// Makes a `wait()` in another thread raise `CancelledError` within 100 ms.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<authcore.DeviceAuthorization {}>",
            fields(
                py,
                &[
                    ("user_code", Some(&self.inner.user_code)),
                    ("verification_uri", Some(&self.inner.verification_uri)),
                ],
            )
        )
    }
}

//! `Client` and `Response`: getting tokens and sending requests.

use std::time::Duration;

use authcore::grant::{ApiKey, ClientCredentials, RefreshToken};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::errors::to_py_err;
use crate::options::{
    auth_method_arg, header_pair, options_arg, scopes_arg, seconds, split_options, type_name,
};
use crate::repr::fields;
use crate::stats::Stats;
use crate::token::Token;
use authcore::grant::WithOAuthSettings;

/// A token client: caches its token, renews it ahead of expiry with one request however
/// many threads ask, and recovers once from a 401. Share one per process.
///
/// A renewal runs on the calling thread, and so do its `logging` records (logger
/// `authcore`), its hooks and a store's methods. From there, a call to the same client
/// that would wait for that renewal (`token`, `authorization_header`, `refresh` without a
/// fresh token cached, `revoke`, `sign_out`) raises `ConfigError` at once instead of
/// waiting for itself; a handler that needs the client should hand the work to another
/// thread.
#[pyclass(frozen, module = "authcore._authcore", name = "Client")]
pub(crate) struct Client {
    pub(crate) inner: authcore::Client,
    pub(crate) description: String,
    /// The `str` objects last handed out, returned again while the token is unchanged.
    pub(crate) strings: parking_lot::Mutex<Option<Strings>>,
}

/// A token's access token and `Authorization` header as Python strings.
pub(crate) struct Strings {
    token: std::sync::Arc<authcore::Token>,
    access_token: Py<PyString>,
    header: Py<PyString>,
}

impl Client {
    /// A client around a core client.
    pub(crate) fn wrap(inner: authcore::Client, description: String) -> Client {
        Client {
            inner,
            description,
            strings: parking_lot::Mutex::new(None),
        }
    }

    /// The strings of a valid token: the same objects as last time while the token is
    /// the same (so `token()` costs no allocation on the hot path).
    fn strings<'py>(
        &self,
        py: Python<'py>,
        pick: impl Fn(&Strings) -> &Py<PyString>,
    ) -> PyResult<Bound<'py, PyString>> {
        let token = self.valid_token(py)?;
        Ok(self.strings_of(py, token, pick))
    }

    /// The strings of `token`, reusing the last ones while it is the same token.
    fn strings_of<'py>(
        &self,
        py: Python<'py>,
        token: std::sync::Arc<authcore::Token>,
        pick: impl Fn(&Strings) -> &Py<PyString>,
    ) -> Bound<'py, PyString> {
        let mut cached = self.strings.lock();
        if let Some(s) = cached.as_mut() {
            if std::sync::Arc::ptr_eq(&s.token, &token) {
                return pick(s).bind(py).clone();
            }
            // The same token reached through another handle (each thread reads its own
            // copy): keep the strings, remember this handle so the next call from this
            // thread is the pointer comparison above.
            if s.token.access_token() == token.access_token() {
                s.token = token;
                return pick(s).bind(py).clone();
            }
        }
        let fresh = Strings {
            access_token: PyString::new(py, token.access_token().expose_secret()).unbind(),
            header: PyString::new(py, token.authorization_header().expose_secret()).unbind(),
            token,
        };
        let out = pick(&fresh).bind(py).clone();
        *cached = Some(fresh);
        out
    }
}

/// How `Client.sign_out()` went: the session is forgotten here and in the store in every
/// case; `outcome` says what the provider did, `error` why it did not revoke.
#[pyclass(frozen, module = "authcore._authcore", name = "SignOut")]
pub(crate) struct SignOut {
    outcome: &'static str,
    error: Option<Py<pyo3::exceptions::PyBaseException>>,
}

#[pymethods]
impl SignOut {
    /// `"not_signed_in"` (there was no session; nothing was sent), `"revoked"`,
    /// `"no_revocation_endpoint"` (the tokens stay valid at the provider until they
    /// expire) or `"revocation_failed"` (see `error`).
    #[getter]
    fn outcome(&self) -> &'static str {
        self.outcome
    }

    /// Why the provider did not revoke the tokens (an `AuthcoreError` of its kind, not
    /// raised), with `"revocation_failed"`; otherwise None.
    #[getter]
    fn error(&self, py: Python<'_>) -> Option<Py<pyo3::exceptions::PyBaseException>> {
        self.error.as_ref().map(|e| e.clone_ref(py))
    }

    /// Whether the provider revoked the tokens.
    #[getter]
    fn revoked(&self) -> bool {
        self.outcome == "revoked"
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let outcome = crate::repr::quoted(py, self.outcome);
        match &self.error {
            Some(e) => {
                let kind = e
                    .bind(py)
                    .get_type()
                    .name()
                    .map_or_else(|_| "AuthcoreError".to_owned(), |n| n.to_string());
                format!("<authcore.SignOut outcome={outcome} error={kind}>")
            }
            None => format!("<authcore.SignOut outcome={outcome}>"),
        }
    }
}

/// The response to an authenticated request.
#[pyclass(frozen, module = "authcore._authcore", name = "Response")]
pub(crate) struct Response {
    /// The HTTP status code.
    #[pyo3(get)]
    status: u16,
    inner: authcore::Response,
}

pub(crate) fn new_client(
    inner: authcore::Result<authcore::Client>,
    py: Python<'_>,
    description: String,
) -> PyResult<Client> {
    inner
        .map(|inner| Client::wrap(inner, description))
        .map_err(|e| to_py_err(py, e))
}

/// Request body from `body` (bytes or str) or `json` (any JSON-serialisable value).
pub(crate) fn body_arg(
    py: Python<'_>,
    body: Option<&Bound<'_, PyAny>>,
    json: Option<&Bound<'_, PyAny>>,
    headers: &mut Vec<(String, String)>,
) -> PyResult<Vec<u8>> {
    let body = body.filter(|b| !b.is_none());
    let json = json.filter(|j| !j.is_none());
    match (body, json) {
        (Some(_), Some(_)) => Err(PyValueError::new_err("give body or json, not both")),
        (Some(b), None) => {
            if let Ok(bytes) = b.cast::<PyBytes>() {
                Ok(bytes.as_bytes().to_vec())
            } else if let Ok(s) = b.cast::<PyString>() {
                Ok(s.to_cow()?.as_bytes().to_vec())
            } else {
                Err(PyTypeError::new_err(format!(
                    "body must be bytes or str, not {}",
                    type_name(b)
                )))
            }
        }
        (None, Some(j)) => {
            let text: String = py.import("json")?.call_method1("dumps", (j,))?.extract()?;
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
            Ok(text.into_bytes())
        }
        (None, None) => Ok(Vec::new()),
    }
}

pub(crate) fn headers_arg(headers: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, String)>> {
    let Some(headers) = headers.filter(|h| !h.is_none()) else {
        return Ok(Vec::new());
    };
    let items = headers.call_method0("items").map_err(|_| {
        PyTypeError::new_err(format!(
            "headers must be a mapping of str to str, not {}",
            type_name(headers)
        ))
    })?;
    let mut out = Vec::new();
    for item in items.try_iter()? {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        out.push(header_pair(&k, &v)?);
    }
    Ok(out)
}

pub(crate) fn timeout_arg(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    match timeout.filter(|t| !t.is_none()) {
        Some(t) => seconds("timeout", t).map(Some),
        None => Ok(None),
    }
}

impl Client {
    /// A valid token. The fast path (a cached token that needs no renewal) keeps the
    /// GIL: it only takes the core's cache mutex, which is never held across I/O or a
    /// callback, so the wait is bounded and cannot deadlock, and releasing the GIL
    /// would cost more than the whole lookup. Anything that may block runs detached.
    fn valid_token(&self, py: Python<'_>) -> PyResult<std::sync::Arc<authcore::Token>> {
        if let Some(token) = self.inner.fresh_token() {
            return Ok(token);
        }
        let inner = &self.inner;
        crate::events::detach(py, || inner.token())?.map_err(|e| to_py_err(py, e))
    }

    // The arguments mirror the Python keyword arguments of `request`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        method: &str,
        url: &str,
        headers: Option<&Bound<'_, PyAny>>,
        body: Option<&Bound<'_, PyAny>>,
        json: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Response> {
        let mut headers = headers_arg(headers)?;
        let body = body_arg(py, body, json, &mut headers)?;
        let timeout = timeout_arg(timeout)?;
        let inner = &self.inner;
        let result = crate::events::detach(py, || {
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            inner.request_with_timeout(method, url, &pairs, &body, timeout)
        })?;
        let response = result.map_err(|e| to_py_err(py, e))?;
        Ok(Response {
            status: response.status,
            inner: response,
        })
    }
}

#[pymethods]
impl Client {
    /// A client that always sends one fixed token (a personal access token). The
    /// options apply to the requests it sends (`timeout`, `max_body_bytes`, `proxy`,
    /// `ca_bundle`, ...).
    #[staticmethod]
    #[pyo3(signature = (token, **options))]
    fn personal_access_token(
        py: Python<'_>,
        token: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        new_client(
            authcore::Client::new(
                authcore::grant::StaticToken::new(token),
                options_arg(options)?,
            ),
            py,
            fields(py, &[("grant", Some("personal_access_token"))]),
        )
    }

    /// api.video: the API key is exchanged for an access token and a rotating refresh
    /// token, at production, the sandbox (`sandbox=True`) or `base_url`.
    #[staticmethod]
    #[pyo3(signature = (api_key, *, sandbox = false, base_url = None, refresh_token = None, **options))]
    fn api_video(
        py: Python<'_>,
        api_key: &str,
        sandbox: bool,
        base_url: Option<&str>,
        refresh_token: Option<&str>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let grant = match (base_url, sandbox) {
            (Some(_), true) => {
                return Err(PyValueError::new_err(
                    "give sandbox=True or base_url, not both",
                ))
            }
            (Some(url), false) => ApiKey::with_base_url(url, api_key),
            (None, true) => ApiKey::sandbox(api_key),
            (None, false) => ApiKey::production(api_key),
        };
        // Resumes from a refresh token saved by `on_refresh_token`.
        let grant = match refresh_token {
            Some(rt) => grant.with_refresh_token(rt),
            None => grant,
        };
        let description = fields(
            py,
            &[
                ("grant", Some("api_video")),
                ("base_url", Some(grant.base_url())),
            ],
        );
        new_client(
            authcore::Client::new(grant, options_arg(options)?),
            py,
            description,
        )
    }

    /// OAuth 2.0 client credentials at any token endpoint. `scopes` is a
    /// space-separated string or a sequence; `auth_method` is "basic" (default),
    /// "basic_raw" or "post". `client_secret` None: none (a client that authenticates
    /// otherwise: `private_key=`, `client_assertion=`, a client certificate).
    #[staticmethod]
    #[pyo3(signature = (token_url, client_id, client_secret, *, scopes = None, auth_method = "basic", **options))]
    fn client_credentials(
        py: Python<'_>,
        token_url: &str,
        client_id: &str,
        client_secret: Option<&str>,
        scopes: Option<&Bound<'_, PyAny>>,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let (args, options) = split_options(py, options)?;
        let grant = ClientCredentials::new(token_url, client_id, client_secret.unwrap_or(""))
            .scopes(scopes_arg(scopes)?)
            .auth_method(auth_method_arg(auth_method)?)
            .with_settings(args);
        new_client(
            authcore::Client::new(grant, options),
            py,
            fields(
                py,
                &[
                    ("grant", Some("client_credentials")),
                    ("token_url", Some(token_url)),
                    ("client_id", Some(client_id)),
                ],
            ),
        )
    }

    /// Client credentials at the token endpoint (and revocation endpoint) of discovered
    /// `metadata`. `client_secret` may be `None` with `private_key=`.
    #[staticmethod]
    #[pyo3(signature = (metadata, client_id, client_secret = None, *, scopes = None, auth_method = "basic", **options))]
    fn client_credentials_from_metadata(
        py: Python<'_>,
        metadata: &crate::discovery::Metadata,
        client_id: &str,
        client_secret: Option<&str>,
        scopes: Option<&Bound<'_, PyAny>>,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let (args, options) = split_options(py, options)?;
        let grant = ClientCredentials::from_metadata(
            &metadata.inner,
            client_id,
            client_secret.unwrap_or(""),
        )
        .map_err(|e| to_py_err(py, e))?
        .scopes(scopes_arg(scopes)?)
        .auth_method(auth_method_arg(auth_method)?)
        .with_settings(args);
        new_client(
            authcore::Client::new(grant, options),
            py,
            fields(
                py,
                &[
                    ("grant", Some("client_credentials")),
                    ("issuer", Some(&metadata.inner.issuer)),
                    ("client_id", Some(client_id)),
                ],
            ),
        )
    }

    /// Vibe: client credentials at Vibe's token endpoint with HTTP Basic.
    #[staticmethod]
    #[pyo3(signature = (client_id, client_secret, *, scopes = None, token_url = None, **options))]
    fn vibe(
        py: Python<'_>,
        client_id: &str,
        client_secret: Option<&str>,
        scopes: Option<&Bound<'_, PyAny>>,
        token_url: Option<&str>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let (args, options) = split_options(py, options)?;
        let client_secret = client_secret.unwrap_or("");
        let grant = match token_url {
            Some(url) => ClientCredentials::vibe_at(url, client_id, client_secret),
            None => ClientCredentials::vibe(client_id, client_secret),
        }
        .scopes(scopes_arg(scopes)?)
        .with_settings(args);
        new_client(
            authcore::Client::new(grant, options),
            py,
            fields(
                py,
                &[("grant", Some("vibe")), ("client_id", Some(client_id))],
            ),
        )
    }

    /// A client that starts from a refresh token (for example one saved by
    /// `on_refresh_token`). `json_body=True` sends JSON with the client credentials in
    /// the body (viewneo). `client_secret` None: a public client.
    #[staticmethod]
    #[pyo3(signature = (token_url, client_id, client_secret, refresh_token, *, json_body = false, auth_method = "basic", **options))]
    #[allow(clippy::too_many_arguments)]
    fn refresh_token(
        py: Python<'_>,
        token_url: &str,
        client_id: &str,
        client_secret: Option<&str>,
        refresh_token: &str,
        json_body: bool,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let (args, options) = split_options(py, options)?;
        let mut grant = RefreshToken::new(
            token_url,
            client_id,
            client_secret.unwrap_or(""),
            refresh_token,
        )
        .auth_method(auth_method_arg(auth_method)?)
        .with_settings(args);
        if json_body {
            grant = grant.json_body();
        }
        new_client(
            authcore::Client::new(grant, options),
            py,
            fields(
                py,
                &[
                    ("grant", Some("refresh_token")),
                    ("token_url", Some(token_url)),
                    ("client_id", Some(client_id)),
                ],
            ),
        )
    }

    /// The JWT bearer grant (RFC 7523 §2.1): the assertion from `assertion` (an
    /// `AssertionSource`) is the grant, read for every token request, once more after a
    /// refusal, never sent expired. With `client_id` the client authenticates too
    /// (`client_secret`, `private_key=` or `client_assertion=`).
    #[staticmethod]
    #[pyo3(signature = (token_url, assertion, *, scopes = None, client_id = None, client_secret = None, auth_method = "basic", **options))]
    #[allow(clippy::too_many_arguments)]
    fn jwt_bearer(
        py: Python<'_>,
        token_url: &str,
        assertion: &crate::assertion::AssertionSource,
        scopes: Option<&Bound<'_, PyAny>>,
        client_id: Option<&str>,
        client_secret: Option<&str>,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let args = crate::assertion::JwtBearerArgs {
            scopes,
            client_id,
            client_secret,
            auth_method,
            options,
        };
        crate::assertion::jwt_bearer(py, token_url, assertion, &args)
    }

    /// The JWT bearer grant with assertions signed for every request by `signing_key`
    /// (PEM, `str` or `bytes`; RSA, P-256 or Ed25519): `iss` = `issuer`, `sub` =
    /// `subject`, `aud` = `audience` [the token endpoint], `exp` 60 s on, a random
    /// `jti` — the service-account key pattern. `signing_key_id` names the key (`kid`).
    #[staticmethod]
    #[pyo3(signature = (token_url, signing_key, issuer, subject, *, audience = None, signing_key_id = None, scopes = None, client_id = None, client_secret = None, auth_method = "basic", **options))]
    #[allow(clippy::too_many_arguments)]
    fn jwt_bearer_signed(
        py: Python<'_>,
        token_url: &str,
        signing_key: &Bound<'_, PyAny>,
        issuer: &str,
        subject: &str,
        audience: Option<&str>,
        signing_key_id: Option<&str>,
        scopes: Option<&Bound<'_, PyAny>>,
        client_id: Option<&str>,
        client_secret: Option<&str>,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let args = crate::assertion::JwtBearerArgs {
            scopes,
            client_id,
            client_secret,
            auth_method,
            options,
        };
        crate::assertion::jwt_bearer_signed(
            py,
            token_url,
            signing_key,
            issuer,
            subject,
            audience,
            signing_key_id,
            &args,
        )
    }

    /// Token exchange (RFC 8693) at `token_url`: exactly one subject — `subject` (any
    /// `AssertionSource`: a command, a callback, a file, another client), `subject_token`
    /// (the token itself), `subject_token_file` (read again for every exchange) or
    /// `subject_client` (another `Client`, whose access token is exchanged: chained; it
    /// renews as needed, and when the exchange refuses its token, that token is dropped
    /// there and its next one sent once) — of type `subject_token_type` (a short name,
    /// `access_token`, `jwt`, `id_token`…, or a URI); an optional actor token the same
    /// way; `audience` and `scopes` (a str or a sequence), `requested_token_type`.
    /// `client_secret` None: a public client. The token's `issued_token_type` says what
    /// the server issued.
    #[staticmethod]
    #[pyo3(signature = (
        token_url, client_id, client_secret = None, *,
        subject = None, subject_token = None, subject_token_file = None, subject_client = None,
        subject_token_type = "access_token",
        actor = None, actor_token = None, actor_token_file = None, actor_token_type = "access_token",
        audience = None, scopes = None, requested_token_type = None, auth_method = "basic",
        **options
    ))]
    #[allow(clippy::too_many_arguments)]
    fn token_exchange(
        py: Python<'_>,
        token_url: &str,
        client_id: &str,
        client_secret: Option<&str>,
        subject: Option<PyRef<'_, crate::assertion::AssertionSource>>,
        subject_token: Option<&str>,
        subject_token_file: Option<&Bound<'_, PyAny>>,
        subject_client: Option<PyRef<'_, Client>>,
        subject_token_type: &str,
        actor: Option<PyRef<'_, crate::assertion::AssertionSource>>,
        actor_token: Option<&str>,
        actor_token_file: Option<&Bound<'_, PyAny>>,
        actor_token_type: &str,
        audience: Option<&Bound<'_, PyAny>>,
        scopes: Option<&Bound<'_, PyAny>>,
        requested_token_type: Option<&str>,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let (args, options) = split_options(py, options)?;
        let asked = crate::exchange::Asked {
            token_url,
            client_id,
            client_secret,
            audience,
            scopes,
            requested_token_type,
            auth_method,
        };
        let subject = crate::exchange::Party {
            token: subject_token,
            file: subject_token_file,
            client: subject_client.as_deref(),
            source: subject.as_deref(),
            token_type: subject_token_type,
        };
        let actor = crate::exchange::Party {
            token: actor_token,
            file: actor_token_file,
            client: None,
            source: actor.as_deref(),
            token_type: actor_token_type,
        };
        let grant = crate::exchange::grant(&asked, &subject, &actor, args)?;
        new_client(
            authcore::Client::new(grant, options),
            py,
            fields(
                py,
                &[
                    ("grant", Some("token_exchange")),
                    ("token_url", Some(token_url)),
                    ("client_id", Some(client_id)),
                ],
            ),
        )
    }

    /// A valid access token. Blocks (without holding the GIL) only when the cached
    /// token is missing or too close to expiry.
    fn token<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        self.strings(py, |s| &s.access_token)
    }

    /// The `Authorization` header value for a valid token, e.g. "Bearer abc".
    fn authorization_header<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        self.strings(py, |s| &s.header)
    }

    /// The `Authorization` header value if a token that needs no renewal is cached, else
    /// None. Never blocks and does no I/O: event loops call it on the loop and move to a
    /// worker thread (`authorization_header`) only when it gives None.
    fn cached_authorization_header<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        let token = self.inner.fresh_token()?;
        Some(self.strings_of(py, token, |s| &s.header))
    }

    /// A valid token with its details (`Token`): access token, type, scope and the
    /// seconds left.
    fn token_info(&self, py: Python<'_>) -> PyResult<Token> {
        Ok(Token {
            inner: self.valid_token(py)?,
        })
    }

    /// A new token now, whatever the state of the cached one: exactly one renewal (or
    /// the outcome of one already in flight), returned as the new access token. While
    /// the failure backoff holds, the last failure is raised without a request. A
    /// personal access token client returns its token.
    fn refresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let inner = &self.inner;
        let token = crate::events::detach(py, || inner.refresh())?.map_err(|e| to_py_err(py, e))?;
        Ok(PyString::new(py, token.access_token().expose_secret()))
    }

    /// What this client (and every copy of it) did so far: cache hits, token requests
    /// by outcome, renewals by reason, waits, backoff refusals, retries after a 401.
    fn stats(&self) -> Stats {
        Stats::from(self.inner.stats())
    }

    /// Whether a response is worth `invalidate` and one resend: a 401, for a client whose
    /// token can be renewed, unless a `Bearer` or `DPoP` challenge in `www_authenticate`
    /// (parsed as RFC 9110 writes it; several lines joined by commas) says
    /// `error="insufficient_scope"` (the rule `request` follows).
    #[pyo3(signature = (status, www_authenticate = None))]
    fn renewal_helps(&self, status: u16, www_authenticate: Option<&str>) -> bool {
        self.inner.renewal_helps(status, www_authenticate)
    }

    /// The headers a request to `url` with `method` needs, from one valid token (renewed
    /// first if needed; blocks without the GIL then): `Authorization` (`Bearer …` or
    /// `DPoP …`) and, for a DPoP-bound token, `DPoP`: a fresh proof for this method and
    /// URL, with the token's hash and the nonce `url`'s origin last gave. For callers
    /// with their own HTTP stack; a proof is good for one request.
    fn request_headers<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        url: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let inner = &self.inner;
        let headers = crate::events::detach(py, || inner.request_headers(method, url))?
            .map_err(|e| to_py_err(py, e))?;
        crate::dpop::headers_dict(py, &headers)
    }

    /// `request_headers(method, url)` if a token that needs no renewal is cached, else
    /// None. Never blocks and does no I/O (signing the proof is its only work): event
    /// loops call it on the loop and move to a worker thread (`request_headers`) only
    /// when it gives None.
    fn cached_request_headers<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        url: &str,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        match self.inner.fresh_request_headers(method, url) {
            None => Ok(None),
            Some(headers) => {
                let headers = headers.map_err(|e| to_py_err(py, e))?;
                crate::dpop::headers_dict(py, &headers).map(Some)
            }
        }
    }

    /// The `DPoP` header value for one request with a valid token (see
    /// `request_headers`, which also gives the matching `Authorization`), or None when
    /// the token is a bearer token.
    fn dpop_proof(&self, py: Python<'_>, method: &str, url: &str) -> PyResult<Option<String>> {
        let inner = &self.inner;
        py.detach(|| inner.dpop_proof(method, url))
            .map(|proof| proof.map(|p| p.expose_secret().to_owned()))
            .map_err(|e| to_py_err(py, e))
    }

    /// For callers with their own HTTP stack, on every response to a request that
    /// carried this client's headers to `url`: remembers the response's `DPoP-Nonce`
    /// (pass the header's value) for the next proofs to that origin, and says whether
    /// the server asked for a nonce (a 401 with a `DPoP` challenge
    /// `error="use_dpop_nonce"` in `www_authenticate`, and a nonce). True: send the
    /// request once more, with new `request_headers`; a second such answer is final.
    #[pyo3(signature = (url, status, www_authenticate = None, dpop_nonce = None))]
    fn dpop_nonce_retry(
        &self,
        url: &str,
        status: u16,
        www_authenticate: Option<&str>,
        dpop_nonce: Option<&str>,
    ) -> bool {
        self.inner
            .dpop_nonce_retry(url, status, www_authenticate, dpop_nonce)
    }

    /// The RFC 7638 thumbprint of the DPoP key this client's tokens are bound to (the
    /// stored session's key once one is adopted, else the configured one), or None
    /// without DPoP.
    #[getter]
    fn dpop_thumbprint(&self) -> Option<String> {
        self.inner.dpop_key().map(|k| k.thumbprint().to_owned())
    }

    /// Revokes the refresh token and the access token at the revocation endpoint
    /// (RFC 7009) and forgets both, here and in the store. `ConfigError` when the client
    /// has no revocation endpoint (nothing is forgotten then).
    fn revoke(&self, py: Python<'_>) -> PyResult<()> {
        let inner = &self.inner;
        crate::events::detach(py, || inner.revoke())?.map_err(|e| to_py_err(py, e))
    }

    /// Signs the session out: forgets its tokens here and in the store (a revoked record
    /// stays there, so that no process renews the session), whatever the provider can
    /// do, then asks the provider to revoke them if the client has a revocation
    /// endpoint. Returns a `SignOut` saying which of these happened; a provider that
    /// cannot revoke is not raised (the session is over all the same) but handed back as
    /// its `error`. Raises `StoreError` only when the store could not be updated (the
    /// provider was still asked; call it again once the store works).
    fn sign_out(&self, py: Python<'_>) -> PyResult<SignOut> {
        let inner = &self.inner;
        let outcome =
            crate::events::detach(py, || inner.sign_out())?.map_err(|e| to_py_err(py, e))?;
        let (outcome, error) = match outcome {
            authcore::SignOut::NotSignedIn => ("not_signed_in", None),
            authcore::SignOut::Revoked => ("revoked", None),
            authcore::SignOut::NoRevocationEndpoint => ("no_revocation_endpoint", None),
            authcore::SignOut::RevocationFailed(e) => {
                ("revocation_failed", Some(to_py_err(py, e).into_value(py)))
            }
            // An outcome a later core adds and this module does not know yet.
            _ => {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "the session was signed out with an outcome this module does not know",
                ))
            }
        };
        Ok(SignOut { outcome, error })
    }

    /// Whether this client holds a refresh token that only it has: one the provider
    /// issued to it (a rotation, or a sign-in's first) that its store could not save
    /// (logged as `store.save_failed`). It is written first under the next renewal's
    /// lock, but a process that ends before then loses it, and the refresh token the
    /// store still holds may no longer be accepted. Always False without a store, and
    /// for grants that renew with a credential of their own.
    fn has_unsaved_refresh_token(&self) -> bool {
        self.inner.has_unsaved_refresh_token()
    }

    /// Reports that `token` was refused: if it is still the cached token, the next call
    /// renews it. Returns whether the cached token was dropped.
    fn invalidate(&self, py: Python<'_>, token: &str) -> bool {
        let inner = &self.inner;
        py.detach(|| inner.invalidate_access_token(token))
    }

    /// Sends a request with the token attached; on a 401 (other than
    /// `insufficient_scope`) the token is renewed and the request sent once more. A
    /// response of any status is returned; failures to get one raise.
    #[pyo3(signature = (method, url, *, headers = None, body = None, json = None, timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        py: Python<'_>,
        method: &str,
        url: &str,
        headers: Option<&Bound<'_, PyAny>>,
        body: Option<&Bound<'_, PyAny>>,
        json: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Response> {
        self.send(py, method, url, headers, body, json, timeout)
    }

    /// `GET url` with the token attached (see `request`).
    #[pyo3(signature = (url, *, headers = None, timeout = None))]
    fn get(
        &self,
        py: Python<'_>,
        url: &str,
        headers: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Response> {
        self.send(py, "GET", url, headers, None, None, timeout)
    }

    /// `POST url` with the token attached (see `request`).
    #[pyo3(signature = (url, *, headers = None, body = None, json = None, timeout = None))]
    fn post(
        &self,
        py: Python<'_>,
        url: &str,
        headers: Option<&Bound<'_, PyAny>>,
        body: Option<&Bound<'_, PyAny>>,
        json: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Response> {
        self.send(py, "POST", url, headers, body, json, timeout)
    }

    fn __repr__(&self) -> String {
        format!("<authcore.Client {}>", self.description)
    }
}

#[pymethods]
impl Response {
    /// Response headers, names in lower case (repeated headers joined by ", ").
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.headers() {
            let k = k.to_ascii_lowercase();
            let value = match d.get_item(&k)? {
                Some(prev) => format!("{}, {v}", prev.extract::<String>()?),
                None => v.to_owned(),
            };
            d.set_item(k, value)?;
        }
        Ok(d)
    }

    /// The body as bytes.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.body)
    }

    /// The body decoded as UTF-8 (invalid bytes replaced).
    #[getter]
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.inner.body).into_owned()
    }

    /// Whether the status is 2xx.
    #[getter]
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Raises for a status of 400 or more: `RateLimitedError` for a 429 (with
    /// `retry_after`), `OAuthError` for an OAuth error body, else `ApiProblemError` with
    /// the problem body's fields (or the status as its title). Returns None otherwise.
    fn raise_for_status(&self, py: Python<'_>) -> PyResult<()> {
        self.inner
            .error_for_status()
            .map(|_| ())
            .map_err(|e| to_py_err(py, e))
    }

    /// The body parsed as JSON (raises `json.JSONDecodeError`, a `ValueError`).
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (PyBytes::new(py, &self.inner.body),))
    }

    fn __repr__(&self) -> String {
        format!("<authcore.Response [{}]>", self.status)
    }
}

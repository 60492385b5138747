//! `authcore._authcore`: the Python face of authcore.
//!
//! This module translates arguments, errors and results; every behaviour (caching,
//! renewal, retries, parsing) lives in the core crate. Every call that can block
//! releases the interpreter (`py.detach`) and takes core locks only inside it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::time::Duration;

mod store;

use authcore::grant::{ApiKey, AuthorizationCode, ClientCredentials, RefreshToken};
use authcore::{AuthMethod, ErrorKind, Options};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

create_exception!(
    _authcore,
    AuthcoreError,
    PyException,
    "Base class of every authcore error. `kind`, `code`, `http_status` and `retry_after` say what happened; messages never contain secrets."
);
create_exception!(
    _authcore,
    ConfigError,
    AuthcoreError,
    "The client was configured wrongly (bad URL, plain HTTP to a remote host, ...)."
);
create_exception!(
    _authcore,
    TransportError,
    AuthcoreError,
    "The connection failed: refused, reset, DNS, TLS."
);
create_exception!(
    _authcore,
    TimeoutError,
    AuthcoreError,
    "A deadline passed: connect, whole request, or waiting for another thread's renewal."
);
create_exception!(
    _authcore,
    OAuthError,
    AuthcoreError,
    "The token endpoint answered with an OAuth 2.0 error; see `error`, `description`, `status`."
);
create_exception!(
    _authcore,
    ApiProblemError,
    AuthcoreError,
    "The endpoint answered with an API problem body; see `title`, `detail`, `problem_type`."
);
create_exception!(
    _authcore,
    RateLimitedError,
    AuthcoreError,
    "The endpoint refused because of rate limiting (HTTP 429); see `retry_after`."
);
create_exception!(
    _authcore,
    InvalidResponseError,
    AuthcoreError,
    "The response could not be understood (HTML page, missing `access_token`, ...)."
);
create_exception!(
    _authcore,
    StateMismatchError,
    AuthcoreError,
    "The `state` in an authorization callback did not match the one sent."
);
create_exception!(
    _authcore,
    ReauthenticationRequired,
    AuthcoreError,
    "The refresh token was refused and no other credential can obtain a new one."
);
create_exception!(
    _authcore,
    IssuerMismatchError,
    AuthcoreError,
    "The issuer named by metadata or an authorization response is not the one configured."
);
create_exception!(
    _authcore,
    CancelledError,
    AuthcoreError,
    "The wait was cancelled (a device authorization)."
);
create_exception!(
    _authcore,
    StoreError,
    AuthcoreError,
    "The shared token store could not be used (unreachable, refused the credentials, lost its lock)."
);

/// Turns a core error into the Python exception of its kind, with its details as
/// attributes. The one place where core errors become Python errors.
pub(crate) fn to_py_err(py: Python<'_>, e: authcore::Error) -> PyErr {
    let message = e.to_string();
    let err = match e.kind() {
        ErrorKind::Config => ConfigError::new_err(message),
        ErrorKind::Transport => TransportError::new_err(message),
        ErrorKind::Timeout => TimeoutError::new_err(message),
        ErrorKind::OAuth => OAuthError::new_err(message),
        ErrorKind::ApiProblem => ApiProblemError::new_err(message),
        ErrorKind::RateLimited => RateLimitedError::new_err(message),
        ErrorKind::InvalidResponse => InvalidResponseError::new_err(message),
        ErrorKind::StateMismatch => StateMismatchError::new_err(message),
        ErrorKind::ReauthenticationRequired => ReauthenticationRequired::new_err(message),
        ErrorKind::Store => StoreError::new_err(message),
        ErrorKind::IssuerMismatch => IssuerMismatchError::new_err(message),
        ErrorKind::Cancelled => CancelledError::new_err(message),
        _ => AuthcoreError::new_err(message),
    };
    let value = err.value(py);
    let oauth = e.oauth();
    let problem = match &e {
        authcore::Error::ApiProblem(p) => Some(p),
        authcore::Error::RateLimited { problem, .. } => problem.as_ref(),
        _ => None,
    };
    let attributes = [
        (
            "kind",
            e.kind().name().into_pyobject(py).map(|v| v.into_any()),
        ),
        (
            "code",
            e.kind().code().into_pyobject(py).map(|v| v.into_any()),
        ),
        ("http_status", e.http_status().into_pyobject(py)),
        (
            "retry_after",
            e.retry_after().map(|d| d.as_secs_f64()).into_pyobject(py),
        ),
        ("error", oauth.map(|o| o.error.as_str()).into_pyobject(py)),
        (
            "description",
            oauth
                .and_then(|o| o.description.as_deref())
                .into_pyobject(py),
        ),
        (
            "uri",
            oauth.and_then(|o| o.uri.as_deref()).into_pyobject(py),
        ),
        (
            "status",
            oauth
                .and_then(|o| o.status)
                .or(problem.map(|p| p.status))
                .into_pyobject(py),
        ),
        (
            "problem_type",
            problem
                .and_then(|p| p.problem_type.as_deref())
                .into_pyobject(py),
        ),
        (
            "title",
            problem.and_then(|p| p.title.as_deref()).into_pyobject(py),
        ),
        (
            "detail",
            problem.and_then(|p| p.detail.as_deref()).into_pyobject(py),
        ),
    ];
    for (name, v) in attributes {
        let Ok(v) = v;
        let _ = value.setattr(name, v);
    }
    err
}

/// Scopes from a space-separated string or a sequence of strings.
fn scopes_arg(scopes: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(scopes) = scopes else {
        return Ok(Vec::new());
    };
    if scopes.is_none() {
        return Ok(Vec::new());
    }
    if let Ok(s) = scopes.cast::<PyString>() {
        return Ok(s.to_cow()?.split_whitespace().map(str::to_owned).collect());
    }
    let mut out = Vec::new();
    for item in scopes.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "scopes must be a string or a sequence of strings, not {}",
            type_name(scopes)
        ))
    })? {
        let item = item?;
        let s: String = item.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "each scope must be a string, not {}",
                type_name(&item)
            ))
        })?;
        out.push(s);
    }
    Ok(out)
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn auth_method_arg(method: &str) -> PyResult<AuthMethod> {
    match method {
        "basic" | "client_secret_basic" => Ok(AuthMethod::ClientSecretBasic),
        "basic_raw" => Ok(AuthMethod::ClientSecretBasicRaw),
        "post" | "client_secret_post" => Ok(AuthMethod::ClientSecretPost),
        other => Err(PyValueError::new_err(format!(
            "auth_method must be 'basic', 'basic_raw' or 'post', not '{other}'"
        ))),
    }
}

/// Seconds as a positive duration; `bool` is refused although Python counts it as int.
fn seconds(name: &str, v: &Bound<'_, PyAny>) -> PyResult<Duration> {
    let bad = || {
        PyTypeError::new_err(format!(
            "option '{name}' must be a number of seconds, not {}",
            type_name(v)
        ))
    };
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(bad());
    }
    let secs: f64 = v.extract().map_err(|_| bad())?;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(PyValueError::new_err(format!(
            "option '{name}' must be a positive number of seconds, not {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn non_negative_int(name: &str, v: &Bound<'_, PyAny>) -> PyResult<u64> {
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "option '{name}' must be an int, not bool"
        )));
    }
    let n: i64 = v.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "option '{name}' must be an int, not {}",
            type_name(v)
        ))
    })?;
    u64::try_from(n)
        .map_err(|_| PyValueError::new_err(format!("option '{name}' must not be negative")))
}

const OPTION_NAMES: &str = "connect_timeout, timeout, wait_timeout, max_retries, max_body_bytes, \
    default_lifetime, failure_backoff, danger_allow_insecure_http, on_refresh_token, \
    token_request_headers, proxy, store";

/// Client options from keyword arguments; unknown names and wrong types are errors.
fn options_arg(options: Option<&Bound<'_, PyDict>>) -> PyResult<Options> {
    let mut o = Options::default();
    let Some(options) = options else {
        return Ok(o);
    };
    for (key, v) in options.iter() {
        let key: String = key.extract()?;
        // None means "the default" for every option that has one.
        if v.is_none()
            && matches!(
                key.as_str(),
                "connect_timeout"
                    | "timeout"
                    | "wait_timeout"
                    | "max_retries"
                    | "max_body_bytes"
                    | "default_lifetime"
                    | "on_refresh_token"
                    | "proxy"
                    | "store"
            )
        {
            continue;
        }
        o = match key.as_str() {
            "connect_timeout" => o.connect_timeout(seconds(&key, &v)?),
            "timeout" => o.timeout(seconds(&key, &v)?),
            "wait_timeout" => o.wait_timeout(seconds(&key, &v)?),
            "default_lifetime" => o.default_lifetime(Some(seconds(&key, &v)?)),
            "max_retries" => {
                let n = non_negative_int(&key, &v)?;
                o.max_retries(u32::try_from(n).unwrap_or(u32::MAX))
            }
            "max_body_bytes" => {
                let n = non_negative_int(&key, &v)?;
                if n == 0 {
                    return Err(PyValueError::new_err(
                        "option 'max_body_bytes' must be at least 1",
                    ));
                }
                o.max_body_bytes(n)
            }
            "failure_backoff" => {
                let (first, max): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                    v.extract().map_err(|_| {
                        PyTypeError::new_err(
                            "option 'failure_backoff' must be a (first, max) pair of seconds",
                        )
                    })?;
                let (first, max) = (seconds(&key, &first)?, seconds(&key, &max)?);
                if max < first {
                    return Err(PyValueError::new_err(
                        "option 'failure_backoff': max is below first",
                    ));
                }
                o.failure_backoff(first, max)
            }
            "danger_allow_insecure_http" => {
                let allow = v.cast::<pyo3::types::PyBool>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "option 'danger_allow_insecure_http' must be a bool, not {}",
                        type_name(&v)
                    ))
                })?;
                o.danger_allow_insecure_http(allow.is_true())
            }
            "on_refresh_token" => {
                if !v.is_callable() {
                    return Err(PyTypeError::new_err(format!(
                        "option 'on_refresh_token' must be callable, not {}",
                        type_name(&v)
                    )));
                }
                let callback: Py<PyAny> = v.clone().unbind();
                o.on_refresh_token(move |secret| {
                    Python::attach(|py| {
                        if let Err(e) = callback.call1(py, (secret.expose_secret(),)) {
                            e.write_unraisable(py, Some(callback.bind(py)));
                        }
                    })
                })
            }
            "store" => o.store(store::store_arg(&v)?),
            "proxy" => {
                let url: String = v.extract().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "option 'proxy' must be a str or None, not {}",
                        type_name(&v)
                    ))
                })?;
                let proxy = if url.is_empty() {
                    authcore::Proxy::None
                } else if authcore::is_valid_proxy_url(&url) {
                    authcore::Proxy::Url(url)
                } else {
                    return Err(PyValueError::new_err(
                        "option 'proxy' is not a valid proxy URL",
                    ));
                };
                o.proxy(proxy)
            }
            "token_request_headers" => {
                let headers = v.cast::<PyDict>().map_err(|_| {
                    PyTypeError::new_err(
                        "option 'token_request_headers' must be a dict of str to str",
                    )
                })?;
                for (name, value) in headers.iter() {
                    let (name, value) = header_pair(&name, &value)?;
                    o = o.token_request_header(name, value);
                }
                o
            }
            other => {
                return Err(PyTypeError::new_err(format!(
                    "unexpected option '{other}'; the options are {OPTION_NAMES}"
                )))
            }
        };
    }
    Ok(o)
}

/// A header name and value, both of which must be strings.
fn header_pair(name: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<(String, String)> {
    match (name.extract(), value.extract()) {
        (Ok(n), Ok(v)) => Ok((n, v)),
        _ => Err(PyTypeError::new_err(
            "header names and values must be strings",
        )),
    }
}

/// A token client: caches its token, renews it ahead of expiry with one request however
/// many threads ask, and recovers once from a 401. Share one per process.
#[pyclass(frozen, module = "authcore._authcore", name = "Client")]
struct Client {
    inner: authcore::Client,
    description: String,
}

/// The response to an authenticated request.
#[pyclass(frozen, module = "authcore._authcore", name = "Response")]
struct Response {
    /// The HTTP status code.
    #[pyo3(get)]
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn new_client(
    inner: authcore::Result<authcore::Client>,
    py: Python<'_>,
    description: String,
) -> PyResult<Client> {
    inner
        .map(|inner| Client { inner, description })
        .map_err(|e| to_py_err(py, e))
}

/// Request body from `body` (bytes or str) or `json` (any JSON-serialisable value).
fn body_arg(
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

fn headers_arg(headers: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, String)>> {
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

fn timeout_arg(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
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
        py.detach(|| inner.token()).map_err(|e| to_py_err(py, e))
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
        let result = py.detach(|| {
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            inner.request_with_timeout(method, url, &pairs, &body, timeout)
        });
        let response = result.map_err(|e| to_py_err(py, e))?;
        Ok(Response {
            status: response.status,
            headers: response
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            body: response.body,
        })
    }
}

#[pymethods]
impl Client {
    /// A client that always sends one fixed token (a personal access token).
    #[staticmethod]
    fn personal_access_token(token: &str) -> Client {
        Client {
            inner: authcore::Client::personal_access_token(token),
            description: "grant='personal_access_token'".into(),
        }
    }

    /// api.video: the API key is exchanged for an access token and a rotating refresh
    /// token, at production, the sandbox (`sandbox=True`) or `base_url`.
    #[staticmethod]
    #[pyo3(signature = (api_key, *, sandbox = false, base_url = None, **options))]
    fn api_video(
        py: Python<'_>,
        api_key: &str,
        sandbox: bool,
        base_url: Option<&str>,
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
        let description = format!("grant='api_video' base_url={:?}", grant.base_url());
        new_client(
            authcore::Client::new(grant, options_arg(options)?),
            py,
            description,
        )
    }

    /// OAuth 2.0 client credentials at any token endpoint. `scopes` is a
    /// space-separated string or a sequence; `auth_method` is "basic" (default),
    /// "basic_raw" or "post".
    #[staticmethod]
    #[pyo3(signature = (token_url, client_id, client_secret, *, scopes = None, auth_method = "basic", **options))]
    fn client_credentials(
        py: Python<'_>,
        token_url: &str,
        client_id: &str,
        client_secret: &str,
        scopes: Option<&Bound<'_, PyAny>>,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let grant = ClientCredentials::new(token_url, client_id, client_secret)
            .scopes(scopes_arg(scopes)?)
            .auth_method(auth_method_arg(auth_method)?);
        new_client(
            authcore::Client::new(grant, options_arg(options)?),
            py,
            format!("grant='client_credentials' token_url={token_url:?} client_id={client_id:?}"),
        )
    }

    /// Vibe: client credentials at Vibe's token endpoint with HTTP Basic.
    #[staticmethod]
    #[pyo3(signature = (client_id, client_secret, *, scopes = None, **options))]
    fn vibe(
        py: Python<'_>,
        client_id: &str,
        client_secret: &str,
        scopes: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let grant = ClientCredentials::vibe(client_id, client_secret).scopes(scopes_arg(scopes)?);
        new_client(
            authcore::Client::new(grant, options_arg(options)?),
            py,
            format!("grant='vibe' client_id={client_id:?}"),
        )
    }

    /// A client that starts from a refresh token (for example one saved by
    /// `on_refresh_token`). `json_body=True` sends JSON with the client credentials in
    /// the body (viewneo).
    #[staticmethod]
    #[pyo3(signature = (token_url, client_id, client_secret, refresh_token, *, json_body = false, auth_method = "basic", **options))]
    #[allow(clippy::too_many_arguments)]
    fn refresh_token(
        py: Python<'_>,
        token_url: &str,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
        json_body: bool,
        auth_method: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Client> {
        let mut grant = RefreshToken::new(token_url, client_id, client_secret, refresh_token)
            .auth_method(auth_method_arg(auth_method)?);
        if json_body {
            grant = grant.json_body();
        }
        new_client(
            authcore::Client::new(grant, options_arg(options)?),
            py,
            format!("grant='refresh_token' token_url={token_url:?} client_id={client_id:?}"),
        )
    }

    /// A valid access token. Blocks (without holding the GIL) only when the cached
    /// token is missing or too close to expiry.
    fn token<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let token = self.valid_token(py)?;
        Ok(PyString::new(py, token.access_token().expose_secret()))
    }

    /// The `Authorization` header value for a valid token, e.g. "Bearer abc".
    fn authorization_header<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        let token = self.valid_token(py)?;
        Ok(PyString::new(
            py,
            token.authorization_header().expose_secret(),
        ))
    }

    /// A valid token with its details (`Token`): access token, type, scope and the
    /// seconds left.
    fn token_info(&self, py: Python<'_>) -> PyResult<Token> {
        Ok(Token {
            inner: self.valid_token(py)?,
        })
    }

    /// Whether a response is worth `invalidate` and one resend: a 401 whose
    /// `WWW-Authenticate` challenge is not `insufficient_scope`, for a client whose token
    /// can be renewed (the rule `request` follows).
    #[pyo3(signature = (status, www_authenticate = None))]
    fn renewal_helps(&self, status: u16, www_authenticate: Option<&str>) -> bool {
        self.inner.renewal_helps(status, www_authenticate)
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
        for (k, v) in &self.headers {
            let k = k.to_ascii_lowercase();
            let value = match d.get_item(&k)? {
                Some(prev) => format!("{}, {v}", prev.extract::<String>()?),
                None => v.clone(),
            };
            d.set_item(k, value)?;
        }
        Ok(d)
    }

    /// The body as bytes.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.body)
    }

    /// The body decoded as UTF-8 (invalid bytes replaced).
    #[getter]
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the status is 2xx.
    #[getter]
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON (raises `json.JSONDecodeError`, a `ValueError`).
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (PyBytes::new(py, &self.body),))
    }

    fn __repr__(&self) -> String {
        format!("<authcore.Response [{}]>", self.status)
    }
}

/// A token and its details, from `Client.token_info()`. Its `repr` hides the token.
#[pyclass(frozen, module = "authcore._authcore", name = "Token")]
struct Token {
    inner: std::sync::Arc<authcore::Token>,
}

#[pymethods]
impl Token {
    /// The access token.
    #[getter]
    fn access_token(&self) -> &str {
        self.inner.access_token().expose_secret()
    }

    /// The token type, e.g. "Bearer".
    #[getter]
    fn token_type(&self) -> &str {
        self.inner.token_type()
    }

    /// The scope the provider granted, if it said.
    #[getter]
    fn scope(&self) -> Option<&str> {
        self.inner.scope()
    }

    /// Seconds until expiry (0.0 once expired), or None if the token never expires.
    #[getter]
    fn expires_in(&self) -> Option<f64> {
        self.inner.expires_at().map(|at| {
            at.saturating_duration_since(std::time::Instant::now())
                .as_secs_f64()
        })
    }

    fn __repr__(&self) -> String {
        let expires = self
            .expires_in()
            .map_or_else(|| "None".to_owned(), |s| format!("{s:.1}"));
        format!(
            "<authcore.Token type={:?} scope={:?} expires_in={expires}>",
            self.inner.token_type(),
            self.inner.scope().unwrap_or("")
        )
    }
}

/// A URL to send the user to, with the `state` that must come back.
#[pyclass(frozen, module = "authcore._authcore", name = "AuthorizationRequest")]
struct AuthorizationRequest {
    /// The URL to open in the user's browser.
    #[pyo3(get)]
    url: String,
    /// The one-time `state` sent with it.
    #[pyo3(get)]
    state: String,
}

#[pymethods]
impl AuthorizationRequest {
    fn __repr__(&self) -> String {
        format!("<authcore.AuthorizationRequest url={:?}>", self.url)
    }
}

/// The authorization code grant (PKCE S256 and a one-time `state` from the OS random
/// source): make the URL with `authorization_url()`, send the user there, then
/// `finish(callback_url)` gives a `Client` that renews with the refresh token.
#[pyclass(frozen, module = "authcore._authcore", name = "AuthorizationCodeFlow")]
struct AuthorizationCodeFlow {
    inner: authcore::AuthorizationCodeFlow,
    description: String,
}

fn new_flow(
    py: Python<'_>,
    config: AuthorizationCode,
    options: Options,
    description: String,
) -> PyResult<AuthorizationCodeFlow> {
    authcore::AuthorizationCodeFlow::new(config, options)
        .map(|inner| AuthorizationCodeFlow { inner, description })
        .map_err(|e| to_py_err(py, e))
}

#[pymethods]
impl AuthorizationCodeFlow {
    /// A flow at any OAuth 2.0 server (form bodies, Basic auth and PKCE by default).
    #[new]
    #[pyo3(signature = (authorize_url, token_url, client_id, client_secret, redirect_uri, *, scopes = None, json_body = false, auth_method = "basic", pkce = true, **options))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        authorize_url: &str,
        token_url: &str,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        scopes: Option<&Bound<'_, PyAny>>,
        json_body: bool,
        auth_method: &str,
        pkce: bool,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut config = AuthorizationCode::new(
            authorize_url,
            token_url,
            client_id,
            client_secret,
            redirect_uri,
        )
        .scopes(scopes_arg(scopes)?)
        .auth_method(auth_method_arg(auth_method)?)
        .pkce(pkce);
        if json_body {
            config = config.json_body();
        }
        new_flow(
            py,
            config,
            options_arg(options)?,
            format!("authorize_url={authorize_url:?} client_id={client_id:?}"),
        )
    }

    /// viewneo (JSON token requests) at `https://cloud.viewneo.com` or `base_url`.
    #[staticmethod]
    #[pyo3(signature = (client_id, client_secret, redirect_uri, *, base_url = None, scopes = None, **options))]
    fn viewneo(
        py: Python<'_>,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        base_url: Option<&str>,
        scopes: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let config = match base_url {
            Some(base) => {
                AuthorizationCode::viewneo_at(base, client_id, client_secret, redirect_uri)
            }
            None => AuthorizationCode::viewneo(client_id, client_secret, redirect_uri),
        }
        .scopes(scopes_arg(scopes)?);
        new_flow(
            py,
            config,
            options_arg(options)?,
            format!("viewneo client_id={client_id:?}"),
        )
    }

    /// A fresh authorization URL and `state`; replaces any earlier pending request.
    fn authorization_url(&self, py: Python<'_>) -> PyResult<AuthorizationRequest> {
        let request = self
            .inner
            .authorization_url()
            .map_err(|e| to_py_err(py, e))?;
        Ok(AuthorizationRequest {
            url: request.url,
            state: request.state,
        })
    }

    /// Finishes from the URL the provider redirected to: checks `state` (once),
    /// exchanges the code, and returns a `Client`.
    fn finish(&self, py: Python<'_>, callback_url: &str) -> PyResult<Client> {
        let inner = &self.inner;
        let client = py
            .detach(|| inner.finish(callback_url))
            .map_err(|e| to_py_err(py, e))?;
        Ok(Client {
            inner: client,
            description: format!("grant='authorization_code' {}", self.description),
        })
    }

    fn __repr__(&self) -> String {
        format!("<authcore.AuthorizationCodeFlow {}>", self.description)
    }
}

/// The compiled module, re-exported by the `authcore` package.
/// Called in a child process right after `fork()` (registered with
/// `os.register_at_fork` by the package): per-process state starts afresh.
#[pyfunction]
fn _after_fork_in_child() {
    authcore::after_fork_in_child();
}

#[pymodule]
fn _authcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Client>()?;
    m.add_class::<store::FileStore>()?;
    m.add_class::<store::RedisStore>()?;
    m.add_class::<Response>()?;
    m.add_class::<Token>()?;
    m.add_class::<AuthorizationCodeFlow>()?;
    m.add_class::<AuthorizationRequest>()?;
    m.add("AuthcoreError", py.get_type::<AuthcoreError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("TransportError", py.get_type::<TransportError>())?;
    m.add("TimeoutError", py.get_type::<TimeoutError>())?;
    m.add("OAuthError", py.get_type::<OAuthError>())?;
    m.add("ApiProblemError", py.get_type::<ApiProblemError>())?;
    m.add("RateLimitedError", py.get_type::<RateLimitedError>())?;
    m.add(
        "InvalidResponseError",
        py.get_type::<InvalidResponseError>(),
    )?;
    m.add("StateMismatchError", py.get_type::<StateMismatchError>())?;
    m.add(
        "ReauthenticationRequired",
        py.get_type::<ReauthenticationRequired>(),
    )?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("IssuerMismatchError", py.get_type::<IssuerMismatchError>())?;
    m.add("CancelledError", py.get_type::<CancelledError>())?;
    Ok(())
}

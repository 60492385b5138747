//! Errors: one Python exception class per core error kind, and the one place where core
//! errors become Python errors.

use authcore::ErrorKind;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

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

/// Adds every exception class to the module.
pub(crate) fn add_exceptions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
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

//! Errors: the one place where core errors become Python errors. The exception classes
//! are Python classes in `authcore.errors` (so that they live in the `authcore` module,
//! pickle, take keyword attributes, and `TimeoutError` is also the builtin one); this
//! module raises the class of each error kind with the error's details.

use authcore::ErrorKind;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

/// The Python class name of each error kind.
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config => "ConfigError",
        ErrorKind::Transport => "TransportError",
        ErrorKind::Timeout => "TimeoutError",
        ErrorKind::OAuth => "OAuthError",
        ErrorKind::ApiProblem => "ApiProblemError",
        ErrorKind::RateLimited => "RateLimitedError",
        ErrorKind::InvalidResponse => "InvalidResponseError",
        ErrorKind::StateMismatch => "StateMismatchError",
        ErrorKind::ReauthenticationRequired => "ReauthenticationRequired",
        ErrorKind::Store => "StoreError",
        ErrorKind::IssuerMismatch => "IssuerMismatchError",
        ErrorKind::Cancelled => "CancelledError",
        _ => "AuthcoreError",
    }
}

/// `authcore.errors`, imported once.
fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("authcore.errors")?.unbind())
        })
        .map(|m| m.bind(py))
}

/// Turns a core error into the Python exception of its kind, with its details as
/// attributes (a required reauthentication keeps those of the refusal it wraps).
pub(crate) fn to_py_err(py: Python<'_>, e: authcore::Error) -> PyErr {
    match build(py, &e) {
        Ok(err) => err,
        // The package is broken (authcore.errors missing): still an exception, with
        // the message.
        Err(broken) => broken,
    }
}

fn build(py: Python<'_>, e: &authcore::Error) -> PyResult<PyErr> {
    let class = errors_module(py)?
        .getattr(class_name(e.kind()))?
        .cast_into::<PyType>()?;
    let oauth = e.oauth();
    let problem = e.problem();
    let kwargs = PyDict::new(py);
    kwargs.set_item("kind", e.kind().name())?;
    kwargs.set_item("code", e.kind().code())?;
    kwargs.set_item("http_status", e.http_status())?;
    kwargs.set_item("retry_after", e.retry_after().map(|d| d.as_secs_f64()))?;
    kwargs.set_item("error", oauth.map(|o| o.error.as_str()))?;
    kwargs.set_item("description", oauth.and_then(|o| o.description.as_deref()))?;
    kwargs.set_item("uri", oauth.and_then(|o| o.uri.as_deref()))?;
    kwargs.set_item(
        "status",
        oauth.and_then(|o| o.status).or(problem.map(|p| p.status)),
    )?;
    kwargs.set_item(
        "problem_type",
        problem.and_then(|p| p.problem_type.as_deref()),
    )?;
    kwargs.set_item("title", problem.and_then(|p| p.title.as_deref()))?;
    kwargs.set_item("detail", problem.and_then(|p| p.detail.as_deref()))?;
    let value = class.call((e.to_string(),), Some(&kwargs))?;
    Ok(PyErr::from_value(value))
}

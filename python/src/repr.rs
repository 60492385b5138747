//! `repr()` in Python's manner: `<authcore.Client grant='vibe' client_id='x'>`, strings
//! quoted and escaped as Python's own `repr` writes them (never Rust's `Debug`), and
//! never a secret: callers pass only what may be shown.

use pyo3::prelude::*;
use pyo3::types::PyString;

/// `text` as Python's `repr` writes a `str`: `'a'`, `"it's"`, with its escapes.
pub(crate) fn quoted(py: Python<'_>, text: &str) -> String {
    PyString::new(py, text)
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| format!("'{}'", text.escape_default()))
}

/// `name=value …`, each value quoted (`None` when absent), for a `repr` or a
/// description kept for one.
pub(crate) fn fields(py: Python<'_>, pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| match value {
            Some(v) => format!("{name}={}", quoted(py, v)),
            None => format!("{name}=None"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

//! `Token` and `Rotation`: a token and its details, and what `on_rotation` is told.
//! Shared by the client (`token_info()`) and the options (`on_rotation`), which import
//! them from here and not from each other.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A token and its details, from `Client.token_info()`. Its `repr` hides the token.
#[pyclass(frozen, module = "authcore._authcore", name = "Token")]
pub(crate) struct Token {
    pub(crate) inner: std::sync::Arc<authcore::Token>,
}

/// What `on_rotation` is told: the new refresh token, the token it came with, and the
/// credential it belongs to.
#[pyclass(frozen, module = "authcore._authcore", name = "Rotation")]
pub(crate) struct Rotation {
    refresh_token: authcore::Secret,
    token: Py<Token>,
    credential: Option<String>,
}

impl Rotation {
    /// The Python view of a core rotation.
    pub(crate) fn new(py: Python<'_>, r: &authcore::Rotation<'_>) -> PyResult<Rotation> {
        Ok(Rotation {
            refresh_token: r.refresh_token.clone(),
            token: Py::new(
                py,
                Token {
                    inner: std::sync::Arc::new(r.token.clone()),
                },
            )?,
            credential: r.credential.map(|k| k.as_str().to_owned()),
        })
    }
}

#[pymethods]
impl Rotation {
    /// The new refresh token: persist it.
    #[getter]
    fn refresh_token(&self) -> &str {
        self.refresh_token.expose_secret()
    }

    /// The access token it came with and its details (`authcore.Token`).
    #[getter]
    fn token(&self, py: Python<'_>) -> Py<Token> {
        self.token.clone_ref(py)
    }

    /// Whose token rotated: the grant, endpoint, client id and scopes (never a
    /// secret); the key a shared store files it under.
    #[getter]
    fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<authcore.Rotation {}>",
            crate::repr::fields(py, &[("credential", self.credential.as_deref())])
        )
    }
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

    /// When the token expires by the server's word, as Unix time in seconds (for
    /// `datetime.fromtimestamp`), or None if it never expires. It is no longer sent a
    /// little before (the expiry margin).
    #[getter]
    fn expires_at(&self) -> Option<f64> {
        self.inner
            .expires_at_system()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64())
    }

    /// What the server says it issued (a token exchange's `issued_token_type`, RFC
    /// 8693), if it said.
    #[getter]
    fn issued_token_type(&self) -> Option<&str> {
        self.inner.issued_token_type()
    }

    /// The OpenID Connect ID token that came with the token, if any.
    #[getter]
    fn id_token(&self) -> Option<&str> {
        self.inner.id_token().map(|s| s.expose_secret())
    }

    /// The token response's other fields (e.g. `user_id`, `instance_url`) as a dict of
    /// JSON values; never a token, a secret or a password.
    #[getter]
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(self.inner.fields())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (text,))
    }

    /// Seconds until expiry (0.0 once expired), or None if the token never expires.
    #[getter]
    fn expires_in(&self) -> Option<f64> {
        self.inner.expires_at().map(|at| {
            at.saturating_duration_since(std::time::Instant::now())
                .as_secs_f64()
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let expires = self
            .expires_in()
            .map_or_else(|| "None".to_owned(), |s| format!("{s:.1}"));
        format!(
            "<authcore.Token {} expires_in={expires}>",
            crate::repr::fields(
                py,
                &[
                    ("type", Some(self.inner.token_type())),
                    ("scope", self.inner.scope()),
                ],
            )
        )
    }
}

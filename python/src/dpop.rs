//! DPoP (RFC 9449): the `DpopKey` class, the `dpop`, `dpop_key` and `dpop_allow_bearer`
//! keywords of the OAuth constructors, and the headers a client hands to callers with
//! their own HTTP stack. Keys, proofs, nonces and the Bearer-downgrade rule live in the
//! core; this module checks and translates.

use std::sync::Arc;

use authcore::{Dpop, DpopAlgorithm};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use crate::errors::to_py_err;
use crate::options::type_name;

/// A DPoP key pair (RFC 9449): ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA 2048). Its
/// `repr` shows the algorithm and the thumbprint, never the private key, which is
/// wiped from memory when the last reference to the key goes.
#[pyclass(frozen, module = "authcore._authcore", name = "DpopKey")]
pub(crate) struct DpopKey {
    pub(crate) inner: Arc<authcore::DpopKey>,
}

impl DpopKey {
    /// Another core key with the same key material, for a client's options (the core
    /// takes its key by value; the JWK it goes through is a secret, wiped when dropped).
    fn to_core(&self) -> authcore::Result<authcore::DpopKey> {
        authcore::DpopKey::from_jwk(self.inner.to_jwk().expose_secret())
    }
}

#[pymethods]
impl DpopKey {
    /// A new key from the operating system's random source: `algorithm` is "ES256"
    /// (the default), "EdDSA" or "RS256" (case-insensitive; an RSA key takes a moment).
    /// Another name raises `ConfigError`.
    #[staticmethod]
    #[pyo3(signature = (algorithm = "ES256"))]
    fn generate(py: Python<'_>, algorithm: &str) -> PyResult<DpopKey> {
        let algorithm = DpopAlgorithm::from_name(algorithm).map_err(|e| to_py_err(py, e))?;
        py.detach(|| authcore::DpopKey::generate(algorithm))
            .map(|k| DpopKey { inner: Arc::new(k) })
            .map_err(|e| to_py_err(py, e))
    }

    /// A key from PEM text: PKCS#8 (`PRIVATE KEY`: P-256, Ed25519 or RSA), SEC1
    /// (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`). Anything else raises
    /// `ConfigError`, whose message never quotes the text.
    #[staticmethod]
    fn from_pem(py: Python<'_>, pem: &str) -> PyResult<DpopKey> {
        py.detach(|| authcore::DpopKey::from_pem(pem))
            .map(|k| DpopKey { inner: Arc::new(k) })
            .map_err(|e| to_py_err(py, e))
    }

    /// A key from a private JWK (JSON text): `EC` `P-256`, `OKP` `Ed25519` or `RSA` with
    /// its primes, as `private_jwk()` gives it. Anything else raises `ConfigError`,
    /// whose message never quotes the text.
    #[staticmethod]
    fn from_jwk(py: Python<'_>, jwk: &str) -> PyResult<DpopKey> {
        py.detach(|| authcore::DpopKey::from_jwk(jwk))
            .map(|k| DpopKey { inner: Arc::new(k) })
            .map_err(|e| to_py_err(py, e))
    }

    /// The JWS algorithm it signs proofs with: "ES256", "EdDSA" or "RS256".
    #[getter]
    fn algorithm(&self) -> &'static str {
        self.inner.algorithm().name()
    }

    /// The RFC 7638 thumbprint of the public key (base64url SHA-256): the `jkt` a
    /// server binds tokens to (`cnf.jkt` in an introspection answer).
    #[getter]
    fn thumbprint(&self) -> &str {
        self.inner.thumbprint()
    }

    /// The public key as a JWK (JSON text), as every proof's header carries it.
    #[getter]
    fn public_jwk(&self) -> String {
        self.inner.public_jwk()
    }

    /// The private key as a JWK (JSON text) — a secret: whoever holds it can use the
    /// tokens bound to this key. For keeping a key you generated (in a secret manager,
    /// a 0600 file) so that a restarted process signs with it again; `from_jwk` reads
    /// it back. A client with a `store` needs none of this: the store keeps the
    /// session's key with its tokens.
    fn private_jwk(&self) -> String {
        self.inner.to_jwk().expose_secret().to_owned()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<authcore.DpopKey {}>",
            crate::repr::fields(
                py,
                &[
                    ("algorithm", Some(self.inner.algorithm().name())),
                    ("thumbprint", Some(self.inner.thumbprint())),
                ],
            )
        )
    }
}

/// The DPoP keywords of an OAuth constructor, checked for their types; the key is made
/// (or read) by [`DpopArgs::build`], once every other argument has been checked.
pub(crate) struct DpopArgs<'py> {
    /// `dpop`: `None` when not given, else `Some(Ok(bool))` or `Some(Err(algorithm))`.
    switch: Option<Result<bool, String>>,
    key: Option<KeyArg<'py>>,
    allow_bearer: bool,
}

/// What `dpop_key` was given as.
enum KeyArg<'py> {
    Text(Bound<'py, PyString>),
    Key(Bound<'py, DpopKey>),
}

impl<'py> DpopArgs<'py> {
    /// The keywords' values (`None` for absent or `None`), with their types checked:
    /// a wrong type is a `TypeError`, a contradiction a `ValueError`/`TypeError`, before
    /// anything is built.
    pub(crate) fn parse(
        dpop: Option<Bound<'py, PyAny>>,
        key: Option<Bound<'py, PyAny>>,
        allow_bearer: Option<Bound<'py, PyAny>>,
    ) -> PyResult<DpopArgs<'py>> {
        let switch = match dpop {
            None => None,
            Some(v) => {
                if let Ok(b) = v.cast::<PyBool>() {
                    Some(Ok(b.is_true()))
                } else if let Ok(s) = v.cast::<PyString>() {
                    Some(Err(s.to_cow()?.into_owned()))
                } else {
                    return Err(PyTypeError::new_err(format!(
                        "'dpop' must be a bool or an algorithm name (\"ES256\", \"EdDSA\", \"RS256\"), not {}",
                        type_name(&v)
                    )));
                }
            }
        };
        let key = match key {
            None => None,
            Some(v) => {
                if let Ok(k) = v.cast::<DpopKey>() {
                    Some(KeyArg::Key(k.clone()))
                } else if let Ok(s) = v.cast::<PyString>() {
                    Some(KeyArg::Text(s.clone()))
                } else {
                    return Err(PyTypeError::new_err(format!(
                        "'dpop_key' must be a DpopKey, or PEM or a private JWK as str, not {}",
                        type_name(&v)
                    )));
                }
            }
        };
        let allow_bearer = match allow_bearer {
            None => false,
            Some(v) => v
                .cast::<PyBool>()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "'dpop_allow_bearer' must be a bool, not {}",
                        type_name(&v)
                    ))
                })?
                .is_true(),
        };
        if key.is_some() && switch == Some(Ok(false)) {
            return Err(PyValueError::new_err(
                "dpop=False contradicts 'dpop_key' (a key turns DPoP on; leave 'dpop' out)",
            ));
        }
        let on = key.is_some() || matches!(switch, Some(Err(_)) | Some(Ok(true)));
        if allow_bearer && !on {
            return Err(PyTypeError::new_err(
                "'dpop_allow_bearer' needs 'dpop' or 'dpop_key'",
            ));
        }
        Ok(DpopArgs {
            switch,
            key,
            allow_bearer,
        })
    }

    /// The client's DPoP settings (`None`: DPoP is off): the key given, or a new one of
    /// the algorithm asked for (ES256 for `dpop=True`). An unknown algorithm, an
    /// unreadable key, or a key of another algorithm than `dpop` names is a
    /// `ConfigError`.
    pub(crate) fn build(self, py: Python<'_>) -> PyResult<Option<Dpop>> {
        let algorithm = match &self.switch {
            Some(Err(name)) => Some(DpopAlgorithm::from_name(name).map_err(|e| to_py_err(py, e))?),
            _ => None,
        };
        let key = match self.key {
            Some(KeyArg::Key(k)) => k.get().to_core().map_err(|e| to_py_err(py, e))?,
            Some(KeyArg::Text(text)) => {
                let text = text.to_cow()?;
                let trimmed = text.trim_start();
                let read = if trimmed.starts_with('{') {
                    py.detach(|| authcore::DpopKey::from_jwk(&text))
                } else if trimmed.starts_with("-----BEGIN") {
                    py.detach(|| authcore::DpopKey::from_pem(&text))
                } else {
                    Err(authcore::Error::Config {
                        message: "'dpop_key' must be a PEM private key or a private JWK (JSON)"
                            .into(),
                    })
                };
                read.map_err(|e| to_py_err(py, e))?
            }
            None => match (&self.switch, algorithm) {
                (Some(Ok(true)), _) => {
                    py.detach(|| authcore::DpopKey::generate(DpopAlgorithm::Es256))
                }
                (Some(Err(_)), Some(algorithm)) => {
                    py.detach(|| authcore::DpopKey::generate(algorithm))
                }
                _ => return Ok(None),
            }
            .map_err(|e| to_py_err(py, e))?,
        };
        if let Some(wanted) = algorithm {
            if key.algorithm() != wanted {
                return Err(to_py_err(
                    py,
                    authcore::Error::Config {
                        message: format!(
                            "'dpop' asks for {} but 'dpop_key' is an {} key",
                            wanted.name(),
                            key.algorithm().name()
                        ),
                    },
                ));
            }
        }
        Ok(Some(
            Dpop::new(key).allow_bearer_downgrade(self.allow_bearer),
        ))
    }
}

/// `Client.request_headers` as a dict: `Authorization`, and `DPoP` for a DPoP token.
pub(crate) fn headers_dict<'py>(
    py: Python<'py>,
    headers: &authcore::RequestHeaders,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("Authorization", headers.authorization.expose_secret())?;
    if let Some(proof) = &headers.dpop {
        d.set_item("DPoP", proof.expose_secret())?;
    }
    Ok(d)
}

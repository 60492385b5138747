//! Token stores for Python: `FileStore`, and any Python object that follows the store
//! protocol (`load`, `save`, `lock`, `unlock`).

use std::sync::Arc;
use std::time::Instant;

use authcore::{Error, StoreKey, StoreLock, StoredToken, TokenStore};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::to_py_err;

/// Shares tokens with every other process on this machine that uses the same
/// credential, through files under a directory (created with mode 0700 if missing).
#[pyclass(frozen, module = "authcore._authcore", name = "FileStore")]
pub(crate) struct FileStore {
    inner: Arc<authcore::FileStore>,
}

#[pymethods]
impl FileStore {
    /// A store in `directory`; `ConfigError` if it cannot be created or written.
    #[new]
    fn new(py: Python<'_>, directory: std::path::PathBuf) -> PyResult<Self> {
        let inner = authcore::FileStore::new(directory).map_err(|e| to_py_err(py, e))?;
        Ok(FileStore {
            inner: Arc::new(inner),
        })
    }

    /// The directory.
    #[getter]
    fn directory(&self) -> String {
        self.inner.dir().display().to_string()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let directory = self.inner.dir().display().to_string();
        format!("FileStore({})", crate::repr::quoted(py, &directory))
    }
}

/// Shares tokens with every process on every host that reaches one Redis: a server,
/// a master watched by Redis Sentinel, or a Redis Cluster.
#[pyclass(frozen, module = "authcore._authcore", name = "RedisStore")]
pub(crate) struct RedisStore {
    inner: Arc<authcore::RedisStore>,
    /// The CA file it was given, for its `repr`.
    ca_file: Option<std::path::PathBuf>,
}

#[pymethods]
impl RedisStore {
    /// A store at `url` (`redis://[user:password@]host:port[/db]`, or `rediss://…` for
    /// TLS verified against the Web PKI roots, or against the CA certificate(s) in the
    /// PEM file `ca_file`; `redis+sentinel://[user:password@]host:port,…/master_name[/db]`
    /// or `redis+cluster://[user:password@]host:port,…`, also `rediss+…`); `ConfigError`
    /// if the URL or CA file is not valid. No connection is made until a renewal needs
    /// one.
    #[new]
    #[pyo3(signature = (url, *, ca_file = None))]
    fn new(py: Python<'_>, url: &str, ca_file: Option<std::path::PathBuf>) -> PyResult<Self> {
        let inner = match &ca_file {
            Some(ca) => authcore::RedisStore::with_ca_file(url, ca),
            None => authcore::RedisStore::new(url),
        }
        .map_err(|e| to_py_err(py, e))?;
        Ok(RedisStore {
            inner: Arc::new(inner),
            ca_file,
        })
    }

    /// A store on the master that the Redis Sentinels `sentinels` (each `host:port` or
    /// `redis[s]://[user:password@]host:port` with that sentinel's credentials) name
    /// `master` (the master set's name, or `redis[s]://[user:password@]master_name[/db]`
    /// with the master's credentials); `ConfigError` if the list is empty or an address is
    /// not valid.
    #[staticmethod]
    fn sentinel(py: Python<'_>, sentinels: Vec<String>, master: &str) -> PyResult<Self> {
        let sentinels: Vec<&str> = sentinels.iter().map(String::as_str).collect();
        let inner =
            authcore::RedisStore::sentinel(&sentinels, master).map_err(|e| to_py_err(py, e))?;
        Ok(RedisStore {
            inner: Arc::new(inner),
            ca_file: None,
        })
    }

    /// A store on the Redis Cluster that `nodes` belong to (each `host:port` or
    /// `redis[s]://[user:password@]host:port`, all with the same credentials);
    /// `ConfigError` if the list is empty or the nodes are not valid together.
    #[staticmethod]
    fn cluster(py: Python<'_>, nodes: Vec<String>) -> PyResult<Self> {
        let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let inner = authcore::RedisStore::cluster(&nodes).map_err(|e| to_py_err(py, e))?;
        Ok(RedisStore {
            inner: Arc::new(inner),
            ca_file: None,
        })
    }

    /// `RedisStore('redis://host:port/db')` (or the Sentinel or Cluster URL that
    /// names the same store), never with a user name or password.
    fn __repr__(&self, py: Python<'_>) -> String {
        let url = crate::repr::quoted(py, &self.inner.url());
        match &self.ca_file {
            Some(ca) => format!(
                "RedisStore({url}, ca_file={})",
                crate::repr::quoted(py, &ca.display().to_string())
            ),
            None => format!("RedisStore({url})"),
        }
    }
}

/// A Python object following the store protocol.
struct ObjectStore(Py<PyAny>);

fn failed(method: &str, e: &PyErr) -> Error {
    Error::Store {
        message: format!(
            "{method}() raised {}",
            Python::attach(|py| e
                .get_type(py)
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default())
        ),
    }
}

impl TokenStore for ObjectStore {
    fn name(&self) -> &'static str {
        "python"
    }

    fn load(&self, _lock: &StoreLock, key: &StoreKey) -> authcore::Result<Option<StoredToken>> {
        Python::attach(|py| {
            let value = self
                .0
                .call_method1(py, "load", (key.as_str(),))
                .map_err(|e| failed("load", &e))?;
            if value.is_none(py) {
                return Ok(None);
            }
            let bytes = value.cast_bound::<PyBytes>(py).map_err(|_| Error::Store {
                message: "load() must return bytes or None".into(),
            })?;
            let stored = StoredToken::from_json(bytes.as_bytes());
            if stored.is_none() {
                log::warn!(target: "authcore", "the token store's load() returned a corrupt value; treated as empty");
            }
            Ok(stored)
        })
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> authcore::Result<StoreLock> {
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        Python::attach(|py| {
            let taken = self
                .0
                .call_method1(py, "lock", (key.as_str(), timeout))
                .and_then(|v| v.is_truthy(py))
                .map_err(|e| failed("lock", &e))?;
            if !taken {
                return Err(Error::Timeout {
                    message: "waited for another process's renewal (the token store's lock)".into(),
                });
            }
            Ok(StoreLock::new(Unlock {
                store: self.0.clone_ref(py),
                key: key.as_str().to_owned(),
            }))
        })
    }

    fn remove(&self, _lock: &StoreLock, key: &StoreKey) -> authcore::Result<()> {
        Python::attach(|py| {
            if !self.0.bind(py).hasattr("remove").unwrap_or(false) {
                return Err(Error::Store {
                    message: "the store has no remove() method".into(),
                });
            }
            self.0
                .call_method1(py, "remove", (key.as_str(),))
                .map(|_| ())
                .map_err(|e| failed("remove", &e))
        })
    }

    fn save(&self, _lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> authcore::Result<()> {
        let json = zeroize::Zeroizing::new(token.to_json());
        Python::attach(|py| {
            let value = PyBytes::new(py, &json);
            self.0
                .call_method1(py, "save", (key.as_str(), value))
                .map(|_| ())
                .map_err(|e| failed("save", &e))
        })
    }
}

/// Calls the store's `unlock(key)` when dropped; an exception there is reported
/// through `sys.unraisablehook`.
struct Unlock {
    store: Py<PyAny>,
    key: String,
}

impl Drop for Unlock {
    fn drop(&mut self) {
        Python::attach(|py| {
            if let Err(e) = self.store.call_method1(py, "unlock", (self.key.as_str(),)) {
                e.write_unraisable(py, Some(self.store.bind(py)));
            }
        });
    }
}

/// The `store=` option: a `FileStore`, or an object with `load`, `save`, `lock` and
/// `unlock` methods.
pub(crate) fn store_arg(v: &Bound<'_, PyAny>) -> PyResult<Arc<dyn TokenStore>> {
    if let Ok(file) = v.cast::<FileStore>() {
        return Ok(file.get().inner.clone());
    }
    if let Ok(redis) = v.cast::<RedisStore>() {
        return Ok(redis.get().inner.clone());
    }
    let follows = ["load", "save", "lock", "unlock"]
        .iter()
        .all(|m| v.getattr(*m).is_ok_and(|a| a.is_callable()));
    if !follows {
        return Err(PyTypeError::new_err(
            "option 'store' must be a FileStore, a RedisStore or an object with load, save, lock and unlock methods",
        ));
    }
    Ok(Arc::new(ObjectStore(v.clone().unbind())))
}

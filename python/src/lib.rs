//! `authcore._authcore`: the Python face of authcore.
//!
//! This module translates arguments, errors and results; every behaviour (caching,
//! renewal, retries, parsing) lives in the core crate. Every call that can block
//! releases the interpreter (`py.detach`) and takes core locks only inside it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod assertion;
mod client;
mod discovery;
mod dpop;
mod errors;
mod events;
mod exchange;
mod flows;
mod options;
mod repr;
mod stats;
mod store;
mod token;

use pyo3::prelude::*;

pub(crate) use errors::to_py_err;

/// Called in a child process right after `fork()` (registered with
/// `os.register_at_fork` by the package): per-process state starts afresh.
#[pyfunction]
fn _after_fork_in_child() {
    authcore::after_fork_in_child();
}

/// The compiled module, re-exported by the `authcore` package.
#[pymodule]
fn _authcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<client::Client>()?;
    m.add_class::<assertion::AssertionSource>()?;
    m.add_class::<store::FileStore>()?;
    m.add_class::<store::RedisStore>()?;
    m.add_class::<client::Response>()?;
    m.add_class::<client::SignOut>()?;
    m.add_class::<token::Token>()?;
    m.add_class::<flows::AuthorizationCodeFlow>()?;
    m.add_class::<flows::AuthorizationRequest>()?;
    m.add_class::<flows::DeviceFlow>()?;
    m.add_class::<flows::DeviceAuthorization>()?;
    m.add_class::<discovery::Metadata>()?;
    m.add_function(wrap_pyfunction!(discovery::discover, m)?)?;
    m.add_class::<stats::Stats>()?;
    m.add_class::<dpop::DpopKey>()?;
    m.add_class::<token::Rotation>()?;
    events::install(m.py())?;
    Ok(())
}

//! Arguments: keyword options, scopes, auth methods and seconds, checked and turned into
//! core types; wrong types and values are `TypeError`/`ValueError`.

use std::time::Duration;

use authcore::grant::{OAuthSettings, PrivateKey, SigningAlgorithm};
use authcore::{AuthMethod, Options};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::dpop::DpopArgs;
use crate::store;

/// A client certificate (mutual TLS) from `client_cert` and `client_key`: each a path
/// (`str` or `os.PathLike`) or PEM as `bytes`, both of one kind; no key: in the
/// certificate's PEM too. Unusable ones are a `ConfigError` that never quotes the key.
fn client_certificate_arg(
    cert: &Bound<'_, PyAny>,
    key: Option<&Bound<'_, PyAny>>,
) -> PyResult<authcore::ClientCertificate> {
    let py = cert.py();
    if let Ok(pem) = cert.cast::<pyo3::types::PyBytes>() {
        let key_pem = match key {
            None => pem.as_bytes(),
            Some(k) => k
                .cast::<pyo3::types::PyBytes>()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "option 'client_key' must be PEM bytes like 'client_cert', not {}",
                        type_name(k)
                    ))
                })?
                .as_bytes(),
        };
        return authcore::ClientCertificate::from_pem(pem.as_bytes(), key_pem)
            .map_err(|e| crate::to_py_err(py, e));
    }
    let path = |name: &str, v: &Bound<'_, PyAny>| -> PyResult<std::path::PathBuf> {
        v.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "option '{name}' must be a path (str or os.PathLike) or PEM bytes, not {}",
                type_name(v)
            ))
        })
    };
    let cert_path = path("client_cert", cert)?;
    let key_path = key
        .map(|k| path("client_key", k))
        .transpose()?
        .unwrap_or_else(|| cert_path.clone());
    authcore::ClientCertificate::from_pem_files(&cert_path, &key_path)
        .map_err(|e| crate::to_py_err(py, e))
}

/// Scopes from a space-separated string or a sequence of strings.
pub(crate) fn scopes_arg(scopes: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
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

pub(crate) fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn auth_method_arg(method: &str) -> PyResult<AuthMethod> {
    AuthMethod::from_name(method).ok_or_else(|| {
        PyValueError::new_err(format!(
            "auth_method must be 'basic', 'basic_raw', 'post', 'none', 'private_key_jwt', \
             'client_assertion', 'tls_client_auth' or 'self_signed_tls_client_auth', not '{method}'"
        ))
    })
}

/// The keyword names [`split_options`] takes out for the grant (and DPoP, which only
/// OAuth grants speak).
const GRANT_OPTION_NAMES: [&str; 9] = [
    "resource",
    "private_key",
    "key_id",
    "algorithm",
    "revocation_url",
    "dpop",
    "dpop_key",
    "dpop_allow_bearer",
    "client_assertion",
];

/// Grant arguments and client options from one set of keyword arguments.
pub(crate) fn split_options(
    py: Python<'_>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<(OAuthSettings, Options)> {
    let Some(options) = options else {
        return Ok((OAuthSettings::default(), Options::default()));
    };
    let rest = options.copy()?;
    let take = |name: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        let v = rest.get_item(name)?;
        rest.del_item(name).ok();
        Ok(v.filter(|v| !v.is_none()))
    };
    let (resource, pem, key_id, algorithm, revocation_url) = (
        take(GRANT_OPTION_NAMES[0])?,
        take(GRANT_OPTION_NAMES[1])?,
        take(GRANT_OPTION_NAMES[2])?,
        take(GRANT_OPTION_NAMES[3])?,
        take(GRANT_OPTION_NAMES[4])?,
    );
    let dpop = DpopArgs::parse(
        take(GRANT_OPTION_NAMES[5])?,
        take(GRANT_OPTION_NAMES[6])?,
        take(GRANT_OPTION_NAMES[7])?,
    )?;
    let text = |name: &str, v: &Bound<'_, PyAny>| -> PyResult<String> {
        v.extract().map_err(|_| {
            PyTypeError::new_err(format!("'{name}' must be a str, not {}", type_name(v)))
        })
    };
    let client_assertion = take(GRANT_OPTION_NAMES[8])?;
    let mut args = OAuthSettings::default();
    args.client_assertion = client_assertion
        .map(|v| crate::assertion::client_assertion_arg(&v))
        .transpose()?;
    args.resources = scopes_arg(resource.as_ref())
        .map_err(|_| PyTypeError::new_err("'resource' must be a URI or a sequence of URIs"))?;
    args.revocation_url = revocation_url
        .map(|v| text("revocation_url", &v))
        .transpose()?;
    if let Some(pem) = pem {
        let bytes: Vec<u8> = if let Ok(s) = pem.cast::<PyString>() {
            s.to_cow()?.as_bytes().to_vec()
        } else if let Ok(b) = pem.cast::<pyo3::types::PyBytes>() {
            b.as_bytes().to_vec()
        } else {
            return Err(PyTypeError::new_err(format!(
                "'private_key' must be PEM as str or bytes, not {}",
                type_name(&pem)
            )));
        };
        let algorithm = algorithm
            .map(|v| text("algorithm", &v))
            .transpose()?
            .map(|a| SigningAlgorithm::from_name(&a))
            .transpose()
            .map_err(|e| crate::to_py_err(py, e))?;
        let mut key =
            PrivateKey::from_pem(&bytes, algorithm).map_err(|e| crate::to_py_err(py, e))?;
        if let Some(kid) = key_id {
            key = key.key_id(text("key_id", &kid)?);
        }
        args.private_key = Some(key);
    } else if key_id.is_some() || algorithm.is_some() {
        return Err(PyTypeError::new_err(
            "'key_id' and 'algorithm' need 'private_key'",
        ));
    }
    let mut options = options_arg(Some(&rest))?;
    // Last: a key is made or read only once every other argument is known to be good.
    if let Some(dpop) = dpop.build(py)? {
        options = options.dpop(dpop);
    }
    Ok((args, options))
}

/// Seconds as a positive duration; `bool` is refused although Python counts it as int.
pub(crate) fn seconds(name: &str, v: &Bound<'_, PyAny>) -> PyResult<Duration> {
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

pub(crate) fn non_negative_int(name: &str, v: &Bound<'_, PyAny>) -> PyResult<u64> {
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

pub(crate) const OPTION_NAMES: &str =
    "connect_timeout, timeout, wait_timeout, max_retries, max_body_bytes, \
    default_lifetime, expiry_margin, failure_backoff, danger_allow_insecure_http, on_refresh_token, on_rotation, \
    token_request_headers, proxy, ca_bundle, client_cert, client_key, store, store_key (and for OAuth grants: resource, private_key, key_id, \
    algorithm, revocation_url, dpop, dpop_key, dpop_allow_bearer, client_assertion)";

/// Client options from keyword arguments; unknown names and wrong types are errors.
pub(crate) fn options_arg(options: Option<&Bound<'_, PyDict>>) -> PyResult<Options> {
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
                    | "expiry_margin"
                    | "on_refresh_token"
                    | "on_rotation"
                    | "proxy"
                    | "store"
                    | "store_key"
                    | "client_cert"
                    | "client_key"
            )
        {
            continue;
        }
        o = match key.as_str() {
            "connect_timeout" => o.connect_timeout(seconds(&key, &v)?),
            "timeout" => o.timeout(seconds(&key, &v)?),
            "wait_timeout" => o.wait_timeout(seconds(&key, &v)?),
            "default_lifetime" => o.default_lifetime(Some(seconds(&key, &v)?)),
            "expiry_margin" => o.expiry_margin(seconds(&key, &v)?),
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
            "on_rotation" => {
                if !v.is_callable() {
                    return Err(PyTypeError::new_err(format!(
                        "option 'on_rotation' must be callable, not {}",
                        type_name(&v)
                    )));
                }
                let callback: Py<PyAny> = v.clone().unbind();
                o.on_rotation(move |rotation: &authcore::Rotation<'_>| {
                    Python::attach(|py| {
                        let called = crate::token::Rotation::new(py, rotation)
                            .and_then(|r| callback.call1(py, (r,)));
                        if let Err(e) = called {
                            e.write_unraisable(py, Some(callback.bind(py)));
                        }
                    })
                })
            }
            "store" => o.store(store::store_arg(&v)?),
            "store_key" => {
                let name: String = v.extract().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "option 'store_key' must be a str or None, not {}",
                        type_name(&v)
                    ))
                })?;
                o.store_key(name)
            }
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
            "ca_bundle" => {
                if v.is_none() {
                    o
                } else {
                    let path: std::path::PathBuf = v.extract().map_err(|_| {
                        PyTypeError::new_err(format!(
                            "option 'ca_bundle' must be a path (str or os.PathLike), not {}",
                            type_name(&v)
                        ))
                    })?;
                    o.ca_bundle(path)
                }
            }
            "client_cert" => {
                let key = options.get_item("client_key")?.filter(|k| !k.is_none());
                o.client_certificate(client_certificate_arg(&v, key.as_ref())?)
            }
            "client_key" => {
                if options.get_item("client_cert")?.is_none_or(|c| c.is_none()) {
                    return Err(PyTypeError::new_err(
                        "option 'client_key' needs 'client_cert'",
                    ));
                }
                o
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
pub(crate) fn header_pair(
    name: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
) -> PyResult<(String, String)> {
    match (name.extract(), value.extract()) {
        (Ok(n), Ok(v)) => Ok((n, v)),
        _ => Err(PyTypeError::new_err(
            "header names and values must be strings",
        )),
    }
}

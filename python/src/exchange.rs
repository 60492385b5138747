//! Token exchange (RFC 8693): the grant a `Client.token_exchange` call describes, its
//! subject (and actor) token from a string, a file, another `Client` or any
//! `AssertionSource` (a command, a callback).

use authcore::grant::{token_type, OAuthSettings, TokenExchange, WithOAuthSettings};
use authcore::AssertionSource;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::client::Client;
use crate::options::{auth_method_arg, scopes_arg, type_name};

/// Where a subject or actor token comes from, as the keywords gave it.
pub(crate) struct Party<'a, 'py> {
    /// The token itself (sent as it is at every exchange).
    pub token: Option<&'a str>,
    /// A file read again for every exchange.
    pub file: Option<&'a Bound<'py, PyAny>>,
    /// Another client, whose access token is the token (chained exchange).
    pub client: Option<&'a Client>,
    /// Any source (`authcore.AssertionSource`: a command, a callback, …).
    pub source: Option<&'a crate::assertion::AssertionSource>,
    /// The token's type: a short name or a URI.
    pub token_type: &'a str,
}

impl Party<'_, '_> {
    /// The source the keywords name: exactly one of them (`what` names the party in the
    /// error), or none at all when `required` is false.
    fn source(&self, what: &str, required: bool) -> PyResult<Option<AssertionSource>> {
        let given = [
            self.token.is_some(),
            self.file.is_some(),
            self.client.is_some(),
            self.source.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 if !required => return Ok(None),
            1 => {}
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "token_exchange takes exactly one of {what}, {what}_token, {what}_token_file{}",
                    if what == "subject" {
                        " and subject_client"
                    } else {
                        ""
                    }
                )))
            }
        }
        if let Some(source) = self.source {
            return Ok(Some(source.inner.clone()));
        }
        if let Some(token) = self.token {
            return Ok(Some(AssertionSource::literal(token)));
        }
        if let Some(path) = self.file {
            let path: std::path::PathBuf = path.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "'{what}_token_file' must be a str or os.PathLike, not {}",
                    type_name(path)
                ))
            })?;
            return Ok(Some(AssertionSource::file(path)));
        }
        Ok(self
            .client
            .map(|c| AssertionSource::client(c.inner.clone())))
    }

    /// The token type as a URI.
    fn type_uri(&self) -> String {
        token_type::from_name(self.token_type).to_owned()
    }
}

/// What `Client.token_exchange` was given besides the parties.
pub(crate) struct Asked<'a, 'py> {
    pub token_url: &'a str,
    pub client_id: &'a str,
    pub client_secret: Option<&'a str>,
    pub audience: Option<&'a Bound<'py, PyAny>>,
    pub scopes: Option<&'a Bound<'py, PyAny>>,
    pub requested_token_type: Option<&'a str>,
    pub auth_method: &'a str,
}

/// The grant: the subject (required) and actor (optional) sources, and what is asked.
pub(crate) fn grant(
    asked: &Asked<'_, '_>,
    subject: &Party<'_, '_>,
    actor: &Party<'_, '_>,
    settings: OAuthSettings,
) -> PyResult<TokenExchange> {
    let Some(subject_source) = subject.source("subject", true)? else {
        return Err(PyValueError::new_err(
            "token_exchange needs a subject token",
        ));
    };
    let audiences = scopes_arg(asked.audience)
        .map_err(|_| PyTypeError::new_err("'audience' must be a str or a sequence of str"))?;
    let mut grant = TokenExchange::new(
        asked.token_url,
        asked.client_id,
        asked.client_secret.unwrap_or(""),
        subject_source,
        subject.type_uri(),
    )
    .audiences(audiences)
    .scopes(scopes_arg(asked.scopes)?)
    .auth_method(auth_method_arg(asked.auth_method)?)
    .with_settings(settings);
    if let Some(actor_source) = actor.source("actor", false)? {
        grant = grant.actor(actor_source, actor.type_uri());
    }
    if let Some(wanted) = asked.requested_token_type {
        grant = grant.requested_token_type(token_type::from_name(wanted));
    }
    Ok(grant)
}

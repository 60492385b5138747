//! Ways to obtain a token, one module each. Every grant produces the same [`Token`].

mod api_key;
mod authorization_code;
mod client_credentials;
mod refresh;
mod static_token;

pub use api_key::ApiKey;
pub use authorization_code::{
    AuthorizationCode, AuthorizationCodeFlow, AuthorizationRequest, Pkce,
};
pub use client_credentials::ClientCredentials;
pub use refresh::RefreshToken;
pub use static_token::StaticToken;

use base64::Engine;

use crate::error::{Error, Result};
use crate::http::{BodyFormat, Http, TokenRequest};
use crate::secret::Secret;
use crate::token::Token;

pub(crate) mod sealed {
    use super::*;

    /// What the client needs from a grant. Sealed: grants are authcore's own.
    pub trait Fetch: Send + Sync + 'static {
        /// Obtains a new token. `refresh_token` is the newest one the cache knows.
        fn fetch(&self, http: &Http, refresh_token: Option<&Secret>) -> Result<Token>;
        /// Whether fetching again can yield a different token (false for static ones).
        fn renewable(&self) -> bool {
            true
        }
        /// A token the client starts with, if any.
        fn initial_token(&self) -> Option<Token> {
            None
        }
        /// A refresh token the client starts with, if any.
        fn initial_refresh_token(&self) -> Option<Secret> {
            None
        }
        /// Every URL this grant sends credentials to, checked when the client is built.
        fn endpoints(&self) -> Vec<&str>;
    }
}

/// A way to obtain access tokens; pass one to [`crate::Client::new`].
pub trait Grant: sealed::Fetch {}

impl<T: sealed::Fetch> Grant for T {}

/// How the client authenticates itself at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// HTTP Basic with id and secret form-encoded first, as §2.3.1 specifies.
    #[default]
    ClientSecretBasic,
    /// HTTP Basic with the raw id and secret, as some servers expect.
    ClientSecretBasicRaw,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
}

/// A client's identity at a token endpoint.
#[derive(Debug, Clone)]
pub(crate) struct ClientAuth {
    pub id: String,
    pub secret: Secret,
    pub method: AuthMethod,
}

impl ClientAuth {
    /// Adds the client's credentials to a token request.
    pub(crate) fn apply(&self, req: &mut TokenRequest<'_>) {
        let basic = |id: &str, secret: &str| {
            let joined = Secret::new(format!("{id}:{secret}"));
            Secret::new(base64::engine::general_purpose::STANDARD.encode(joined.expose_secret()))
        };
        // A JSON body has no Basic convention among the providers that use it.
        let method = match req.format {
            BodyFormat::Json => AuthMethod::ClientSecretPost,
            BodyFormat::Form => self.method,
        };
        match method {
            AuthMethod::ClientSecretBasic => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let secret = Secret::new(enc(self.secret.expose_secret()));
                req.basic = Some(basic(&enc(&self.id), secret.expose_secret()));
            }
            AuthMethod::ClientSecretBasicRaw => {
                req.basic = Some(basic(&self.id, self.secret.expose_secret()));
            }
            AuthMethod::ClientSecretPost => {
                req.params.push(("client_id", Secret::new(self.id.clone())));
                req.params.push(("client_secret", self.secret.clone()));
            }
        }
    }
}

/// Headers configured for every token request.
pub(crate) fn extra_headers(http: &Http) -> Vec<(String, String)> {
    http.options().extra_headers.clone()
}

/// True when a refresh attempt was refused by the server (as opposed to not reaching it).
pub(crate) fn is_refusal(e: &Error) -> bool {
    match e {
        Error::OAuth(_) | Error::ApiProblem(_) => true,
        Error::InvalidResponse { status, .. } => (400..500).contains(status) && *status != 429,
        _ => false,
    }
}

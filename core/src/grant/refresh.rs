//! The refresh token grant (RFC 6749 §6), starting from a stored refresh token.

use super::sealed::Fetch;
use super::{extra_headers, is_refusal, AuthMethod, ClientAuth};
use crate::error::{Error, Result};
use crate::http::{BodyFormat, Http, Replay, TokenRequest};
use crate::secret::Secret;
use crate::token::Token;

/// Obtains access tokens from a refresh token. A response without a new refresh
/// token keeps the old one; a refused refresh token means the user must sign in again.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub(crate) token_url: String,
    pub(crate) client: ClientAuth,
    pub(crate) refresh_token: Option<Secret>,
    pub(crate) format: BodyFormat,
    pub(crate) initial: Option<Token>,
}

impl RefreshToken {
    /// A refresh token for a client at a token endpoint (form body, Basic auth).
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        refresh_token: impl Into<Secret>,
    ) -> Self {
        RefreshToken {
            token_url: token_url.into(),
            client: ClientAuth {
                id: client_id.into(),
                secret: client_secret.into(),
                method: AuthMethod::ClientSecretBasic,
            },
            refresh_token: Some(refresh_token.into()),
            format: BodyFormat::Form,
            initial: None,
        }
    }

    /// Sends the request as JSON with the client credentials in the body (viewneo).
    pub fn json_body(mut self) -> Self {
        self.format = BodyFormat::Json;
        self
    }

    /// How the client authenticates itself (form bodies only).
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.client.method = method;
        self
    }
}

impl Fetch for RefreshToken {
    fn fetch(&self, http: &Http, refresh_token: Option<&Secret>) -> Result<Token> {
        let Some(rt) = refresh_token else {
            return Err(Error::ReauthenticationRequired {
                cause: Box::new(Error::config("no refresh token is available")),
            });
        };
        let mut req = TokenRequest {
            url: &self.token_url,
            format: self.format,
            params: vec![
                ("grant_type", Secret::new("refresh_token")),
                ("refresh_token", rt.clone()),
            ],
            basic: None,
            headers: extra_headers(http),
            replay: Replay::Rotating,
        };
        self.client.apply(&mut req);
        http.token(&req).map_err(|e| {
            if is_refusal(&e) {
                Error::ReauthenticationRequired { cause: Box::new(e) }
            } else {
                e
            }
        })
    }

    fn initial_token(&self) -> Option<Token> {
        self.initial.clone()
    }

    fn initial_refresh_token(&self) -> Option<Secret> {
        self.refresh_token.clone()
    }

    fn endpoints(&self) -> Vec<&str> {
        vec![&self.token_url]
    }
}

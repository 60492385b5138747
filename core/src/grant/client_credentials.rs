//! OAuth 2.0 client credentials (RFC 6749 §4.4).

use super::sealed::Fetch;
use super::{extra_headers, AuthMethod, ClientAuth};
use crate::error::Result;
use crate::http::{BodyFormat, Deadline, Http, Replay, TokenRequest};
use crate::provider;
use crate::secret::Secret;
use crate::store::{StoreKey, WithoutStore};
use crate::token::Token;

/// The client credentials grant: the client authenticates as itself, no user involved.
/// No refresh token: a new token is requested shortly before the old one expires.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    token_url: String,
    client: ClientAuth,
    scopes: Vec<String>,
}

impl ClientCredentials {
    /// Client credentials at any token endpoint, with `client_secret_basic`.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        ClientCredentials {
            token_url: token_url.into(),
            client: ClientAuth {
                id: client_id.into(),
                secret: client_secret.into(),
                method: AuthMethod::ClientSecretBasic,
            },
            scopes: Vec::new(),
        }
    }

    /// Vibe (`https://api.vibe.co/oauth2/token`).
    pub fn vibe(client_id: impl Into<String>, client_secret: impl Into<Secret>) -> Self {
        Self::new(provider::VIBE_TOKEN_URL, client_id, client_secret)
    }

    /// Scopes to request (sent space-separated).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// How the client authenticates itself.
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.client.method = method;
        self
    }
}

impl Fetch for ClientCredentials {
    fn fetch(&self, http: &Http, _rt: Option<&Secret>, deadline: Deadline) -> Result<Token> {
        let mut req = TokenRequest {
            url: &self.token_url,
            format: BodyFormat::Form,
            params: vec![("grant_type", Secret::new("client_credentials"))],
            basic: None,
            headers: extra_headers(http),
            replay: Replay::Safe,
        };
        if !self.scopes.is_empty() {
            req.params
                .push(("scope", Secret::new(self.scopes.join(" "))));
        }
        self.client.apply(&mut req);
        http.token(&req, deadline)
    }

    fn endpoints(&self) -> Vec<&str> {
        vec![&self.token_url]
    }

    fn store_key(&self) -> Option<StoreKey> {
        Some(StoreKey::new(
            "client_credentials",
            &self.token_url,
            &self.client.id,
            &self.scopes,
        ))
    }

    fn without_store(&self) -> WithoutStore {
        WithoutStore::OwnCredential
    }
}

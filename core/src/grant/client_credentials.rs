//! OAuth 2.0 client credentials (RFC 6749 §4.4).

use super::sealed::Fetch;
use super::{
    add_resources, extra_headers, key_scopes, require_revocation_url, revoke_access_token,
    AuthMethod, ClientAuth, MtlsAliases,
};
use crate::clock::Deadline;
use crate::error::Result;
use crate::http::{BodyFormat, Http, Replay, TokenRequest};
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
    resources: Vec<String>,
    revocation_url: Option<String>,
    mtls: MtlsAliases,
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
            client: ClientAuth::new(
                client_id.into(),
                client_secret.into(),
                AuthMethod::ClientSecretBasic,
            ),
            scopes: Vec::new(),
            resources: Vec::new(),
            revocation_url: None,
            mtls: MtlsAliases::default(),
        }
    }

    /// Client credentials at the token endpoint an issuer's metadata names (and its
    /// revocation endpoint, if any; their mTLS aliases when the client presents a
    /// certificate).
    pub fn from_metadata(
        metadata: &crate::discovery::Metadata,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Result<Self> {
        let mut grant = Self::new(metadata.require_token_endpoint()?, client_id, client_secret);
        grant.revocation_url = metadata.revocation_endpoint.clone();
        grant.mtls = MtlsAliases::from_metadata(metadata);
        Ok(grant)
    }

    /// Vibe (`https://api.vibe.co/oauth2/token`).
    pub fn vibe(client_id: impl Into<String>, client_secret: impl Into<Secret>) -> Self {
        Self::new(provider::VIBE_TOKEN_URL, client_id, client_secret)
    }

    /// Vibe's dialect at another token endpoint (a staging environment, or the
    /// development provider).
    pub fn vibe_at(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        Self::new(token_url, client_id, client_secret)
    }

    super::oauth_builders!();
    super::scopes_builder!();
}

impl Fetch for ClientCredentials {
    fn fetch(&self, http: &Http, _rt: Option<&Secret>, deadline: Deadline) -> Result<Token> {
        let mut req = TokenRequest {
            grant: "client_credentials",
            url: self.mtls.route(&self.token_url, http),
            format: BodyFormat::Form,
            params: vec![("grant_type", Secret::new("client_credentials"))],
            basic: None,
            headers: extra_headers(http),
            replay: Replay::Safe,
            redact: Vec::new(),
            assertions: Vec::new(),
        };
        if !self.scopes.is_empty() {
            req.params
                .push(("scope", Secret::new(self.scopes.join(" "))));
        }
        add_resources(&mut req, &self.resources);
        self.client.apply(&mut req, deadline)?;
        http.token(&req, deadline)
    }

    fn revocable(&self) -> bool {
        self.revocation_url.is_some()
    }

    fn revoke(
        &self,
        http: &Http,
        token: Option<&Token>,
        _refresh_token: Option<&Secret>,
        deadline: Deadline,
    ) -> Result<()> {
        let url = require_revocation_url(&self.revocation_url)?;
        let url = self.mtls.route(url, http);
        revoke_access_token(http, url, Some(&self.client), token, deadline)
    }

    fn check(&self) -> Result<()> {
        self.client.check()
    }

    fn auth_method(&self) -> Option<AuthMethod> {
        Some(self.client.method)
    }

    fn endpoints(&self) -> Vec<&str> {
        std::iter::once(self.token_url.as_str())
            .chain(self.revocation_url.as_deref())
            .chain(self.mtls.urls())
            .collect()
    }

    fn store_key(&self, user: Option<&str>) -> Option<StoreKey> {
        Some(StoreKey::new(
            "client_credentials",
            &self.token_url,
            &self.client.key_id(),
            user,
            &key_scopes(&self.scopes, &self.resources),
        ))
    }

    fn without_store(&self) -> WithoutStore {
        WithoutStore::OwnCredential
    }
}

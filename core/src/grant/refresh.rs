//! The refresh token grant (RFC 6749 §6), starting from a stored refresh token.

use std::sync::atomic::{AtomicU8, Ordering};

use super::sealed::Fetch;
use super::{
    add_resources, extra_headers, is_refusal, key_scopes, require_revocation_url, revoke_at,
    AuthMethod, ClientAuth, MtlsAliases,
};
use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::http::{BodyFormat, Http, Replay, TokenRequest};
use crate::secret::Secret;
use crate::store::{StoreKey, WithoutStore};
use crate::token::Token;

/// What the server has shown about its refresh tokens (0: nothing yet).
#[derive(Debug, Default)]
pub(crate) struct Rotation(AtomicU8);

impl Rotation {
    const ROTATES: u8 = 1;
    const KEEPS: u8 = 2;

    /// Resending a refresh request is safe only once the server has shown that it
    /// keeps refresh tokens (answers without a new one, or with the same one).
    fn replay(&self) -> Replay {
        if self.0.load(Ordering::Relaxed) == Self::KEEPS {
            Replay::Safe
        } else {
            Replay::Rotating
        }
    }

    /// Renewing without the shared store is safe only once the server has shown that
    /// it keeps refresh tokens: no other process can be left with a rotated-away one.
    pub(crate) fn without_store(&self) -> WithoutStore {
        if self.0.load(Ordering::Relaxed) == Self::KEEPS {
            WithoutStore::SameRefreshToken
        } else {
            WithoutStore::Refuse
        }
    }

    fn learn(&self, sent: &Secret, token: &Token) {
        let seen = match token.refresh_token() {
            Some(new) if new != sent => Self::ROTATES,
            _ => Self::KEEPS,
        };
        // Once seen to rotate, always treated as rotating.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v != Self::ROTATES).then_some(seen)
            });
    }
}

impl Clone for Rotation {
    fn clone(&self) -> Self {
        Rotation(AtomicU8::new(self.0.load(Ordering::Relaxed)))
    }
}

/// Obtains access tokens from a refresh token. A response without a new refresh
/// token keeps the old one; a refused refresh token means the user must sign in again.
/// A failure that is not a refusal (a 5xx, a rate limit, an HTML page) keeps the
/// refresh token for the next call.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub(crate) token_url: String,
    pub(crate) client: ClientAuth,
    pub(crate) refresh_token: Option<Secret>,
    pub(crate) format: BodyFormat,
    pub(crate) initial: Option<Token>,
    pub(crate) rotation: Rotation,
    pub(crate) resources: Vec<String>,
    pub(crate) revocation_url: Option<String>,
    pub(crate) mtls: MtlsAliases,
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
            client: ClientAuth::new(
                client_id.into(),
                client_secret.into(),
                AuthMethod::ClientSecretBasic,
            ),
            refresh_token: Some(refresh_token.into()),
            format: BodyFormat::Form,
            initial: None,
            rotation: Rotation::default(),
            resources: Vec::new(),
            revocation_url: None,
            mtls: MtlsAliases::default(),
        }
    }

    /// The grant that goes on from the first token of a code or device flow.
    pub(crate) fn continuing(
        token_url: &str,
        client: &ClientAuth,
        format: BodyFormat,
        resources: &[String],
        revocation_url: Option<&String>,
        mtls: &MtlsAliases,
        token: Token,
    ) -> Self {
        RefreshToken {
            token_url: token_url.to_owned(),
            client: client.clone(),
            refresh_token: token.refresh_token().cloned(),
            format,
            initial: Some(token),
            rotation: Rotation::default(),
            resources: resources.to_vec(),
            revocation_url: revocation_url.cloned(),
            mtls: mtls.clone(),
        }
    }

    /// A session at an issuer whose refresh token is in the shared store (put there by a
    /// code or device flow, such as `authcore login`): the client renews with the
    /// stored refresh token, and needs a new sign-in when there is none.
    pub fn from_metadata(
        metadata: &crate::discovery::Metadata,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Result<Self> {
        let mut grant = Self::new(
            metadata.require_token_endpoint()?,
            client_id,
            client_secret,
            Secret::new(""),
        );
        grant.refresh_token = None;
        grant.revocation_url = metadata.revocation_endpoint.clone();
        grant.mtls = MtlsAliases::from_metadata(metadata);
        Ok(grant)
    }

    /// Sends the request as JSON with the client credentials in the body (viewneo).
    pub fn json_body(mut self) -> Self {
        self.format = BodyFormat::Json;
        self
    }

    super::oauth_builders!();
}

impl Fetch for RefreshToken {
    fn fetch(
        &self,
        http: &Http,
        refresh_token: Option<&Secret>,
        deadline: Deadline,
    ) -> Result<Token> {
        let Some(rt) = refresh_token else {
            return Err(Error::ReauthenticationRequired {
                cause: Box::new(Error::config(
                    "the session has no refresh token: it was signed out or revoked (or never \
                     had one); sign in again",
                )),
            });
        };
        let mut req = TokenRequest {
            grant: "refresh_token",
            url: self.mtls.route(&self.token_url, http),
            format: self.format,
            params: vec![
                ("grant_type", Secret::new("refresh_token")),
                ("refresh_token", rt.clone()),
            ],
            basic: None,
            headers: extra_headers(http),
            replay: self.rotation.replay(),
            redact: Vec::new(),
            assertions: Vec::new(),
        };
        add_resources(&mut req, &self.resources);
        self.client.apply(&mut req, deadline)?;
        match http.token(&req, deadline) {
            Ok(token) => {
                self.rotation.learn(rt, &token);
                Ok(token)
            }
            Err(e) if is_refusal(&e) => Err(Error::ReauthenticationRequired { cause: Box::new(e) }),
            Err(e) => Err(e),
        }
    }

    fn initial_token(&self) -> Option<Token> {
        self.initial.clone()
    }

    fn initial_refresh_token(&self) -> Option<Secret> {
        self.refresh_token.clone()
    }

    fn endpoints(&self) -> Vec<&str> {
        std::iter::once(self.token_url.as_str())
            .chain(self.revocation_url.as_deref())
            .chain(self.mtls.urls())
            .collect()
    }

    fn check(&self) -> Result<()> {
        self.client.check()
    }

    fn auth_method(&self) -> Option<AuthMethod> {
        Some(self.client.method)
    }

    fn revocable(&self) -> bool {
        self.revocation_url.is_some()
    }

    fn revoke(
        &self,
        http: &Http,
        token: Option<&Token>,
        refresh_token: Option<&Secret>,
        deadline: Deadline,
    ) -> Result<()> {
        let url = require_revocation_url(&self.revocation_url)?;
        // The refresh token first: revoking it also ends its access tokens at most servers.
        let tokens: Vec<_> = refresh_token
            .map(|rt| (rt, "refresh_token"))
            .into_iter()
            .chain(token.map(|t| (t.access_token(), "access_token")))
            .collect();
        let url = self.mtls.route(url, http);
        revoke_at(http, url, &self.client, &tokens, deadline)
    }

    fn store_key(&self, user: Option<&str>) -> Option<StoreKey> {
        // The same key for a session started by a code flow or from a stored token.
        Some(StoreKey::new(
            "refresh_token",
            &self.token_url,
            &self.client.id,
            user,
            &key_scopes(&[], &self.resources),
        ))
    }

    fn per_user(&self) -> bool {
        true
    }

    fn without_store(&self) -> WithoutStore {
        self.rotation.without_store()
    }
}

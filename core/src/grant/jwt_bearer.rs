//! The JWT bearer grant (RFC 7523 §2.1): a JWT is the grant itself. It comes from an
//! [`AssertionSource`] (a token someone else issued: read for every request, once more
//! after a refusal, never sent expired) or is signed for every request by a private key
//! with `iss`, `sub`, `aud`, `exp` and a random `jti` (the service-account key file
//! pattern). The client may also authenticate itself, by any [`AuthMethod`].

use std::sync::Arc;

use super::sealed::Fetch;
use super::{
    add_resources, extra_headers, key_scopes, require_revocation_url, revoke_access_token,
    AuthMethod, ClientAuth, PrivateKey,
};
use crate::assertion::AssertionSource;
use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::http::{Assertion, AssertionFrom, BodyFormat, Http, Replay, TokenRequest};
use crate::secret::Secret;
use crate::store::{StoreKey, WithoutStore};
use crate::token::Token;

/// The `grant_type` of RFC 7523 §2.1.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Where the grant's assertion comes from.
#[derive(Debug, Clone)]
enum Grantor {
    /// Read from a source for every request.
    Source(AssertionSource),
    /// Signed for every attempt (an assertion is single use).
    Signed {
        key: Arc<PrivateKey>,
        issuer: String,
        subject: String,
        /// `None`: the token endpoint.
        audience: Option<String>,
    },
}

/// The JWT bearer grant (RFC 7523 §2.1): the assertion is the grant. No refresh token:
/// a new token is requested with a new assertion shortly before the old one expires.
#[derive(Debug, Clone)]
pub struct JwtBearer {
    token_url: String,
    grantor: Grantor,
    /// The client's own authentication, when it has one (an empty id: none).
    client: ClientAuth,
    scopes: Vec<String>,
    resources: Vec<String>,
    revocation_url: Option<String>,
}

impl JwtBearer {
    /// The grant with assertions from `source` (a file a sidecar rewrites, a command, a
    /// callback): read for every token request, and once more when the server refuses
    /// the one it was sent.
    pub fn new(token_url: impl Into<String>, source: AssertionSource) -> Self {
        Self::with(token_url.into(), Grantor::Source(source))
    }

    /// The grant with assertions signed by `key` for every request: `iss` = `issuer`,
    /// `sub` = `subject`, `aud` = the token endpoint (see [`audience`](Self::audience)),
    /// `exp` 60 s after `iat`, a random `jti`.
    pub fn signed(
        token_url: impl Into<String>,
        key: PrivateKey,
        issuer: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        Self::with(
            token_url.into(),
            Grantor::Signed {
                key: Arc::new(key),
                issuer: issuer.into(),
                subject: subject.into(),
                audience: None,
            },
        )
    }

    fn with(token_url: String, grantor: Grantor) -> Self {
        JwtBearer {
            token_url,
            grantor,
            client: ClientAuth::new(String::new(), Secret::new(""), AuthMethod::None),
            scopes: Vec::new(),
            resources: Vec::new(),
            revocation_url: None,
        }
    }

    /// The `aud` of signed assertions, where the server wants another than its token
    /// endpoint (such as its issuer). Assertions from a source carry their own.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        if let Grantor::Signed { audience: aud, .. } = &mut self.grantor {
            *aud = Some(audience.into());
        }
        self
    }

    /// The client authenticates itself too (RFC 7523 §3.1 leaves it optional): with a
    /// secret (`client_secret_basic` unless [`auth_method`](Self::auth_method) says
    /// otherwise), or, with an empty secret, as a public client (`client_id` in the
    /// body) or by [`private_key`](Self::private_key) or
    /// [`client_assertion`](Self::client_assertion).
    pub fn client(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        self.client.id = client_id.into();
        self.client.secret = client_secret.into();
        if self.client.method == AuthMethod::None {
            self.client.method = AuthMethod::ClientSecretBasic;
        }
        self
    }

    super::oauth_builders!();
    super::scopes_builder!();

    /// Whether the client authenticates itself.
    fn authenticates(&self) -> bool {
        !self.client.id.is_empty()
    }
}

impl Fetch for JwtBearer {
    fn fetch(&self, http: &Http, _rt: Option<&Secret>, deadline: Deadline) -> Result<Token> {
        let mut req = TokenRequest {
            grant: "jwt_bearer",
            url: &self.token_url,
            format: BodyFormat::Form,
            params: vec![("grant_type", Secret::new(GRANT_TYPE))],
            basic: None,
            headers: extra_headers(http),
            replay: Replay::Safe,
            redact: Vec::new(),
            assertions: Vec::new(),
        };
        match &self.grantor {
            Grantor::Source(source) => {
                req.params.push(("assertion", source.read(deadline)?));
                req.assertions.push(Assertion {
                    param: "assertion",
                    from: AssertionFrom::Source(source),
                });
            }
            Grantor::Signed {
                key,
                issuer,
                subject,
                audience,
            } => {
                let audience = audience.as_deref().unwrap_or(&self.token_url);
                req.params
                    .push(("assertion", key.sign(issuer, subject, audience)?));
                req.assertions.push(Assertion {
                    param: "assertion",
                    from: AssertionFrom::Signed {
                        key,
                        issuer,
                        subject,
                        audience,
                    },
                });
            }
        }
        if !self.scopes.is_empty() {
            req.params
                .push(("scope", Secret::new(self.scopes.join(" "))));
        }
        add_resources(&mut req, &self.resources);
        if self.authenticates() {
            self.client.apply(&mut req, deadline)?;
        }
        http.token(&req, deadline)
    }

    fn check(&self) -> Result<()> {
        if !self.authenticates() {
            let needs_id = match self.client.method {
                AuthMethod::None => false,
                AuthMethod::PrivateKeyJwt | AuthMethod::ClientAssertion => true,
                _ => !self.client.secret.is_empty(),
            };
            if needs_id {
                return Err(Error::config(
                    "client authentication of a JWT bearer grant needs a client id (the grant's client)",
                ));
            }
            return Ok(());
        }
        self.client.check()
    }

    fn endpoints(&self) -> Vec<&str> {
        std::iter::once(self.token_url.as_str())
            .chain(self.revocation_url.as_deref())
            .collect()
    }

    fn store_key(&self, user: Option<&str>) -> Option<StoreKey> {
        // What the credential is: who signs and about whom, or where the assertion is
        // read; never the assertion. A source with no name (a callback, a literal) is
        // shared only under a name the caller gave.
        let credential = match &self.grantor {
            Grantor::Signed {
                issuer, subject, ..
            } => format!("iss={issuer} sub={subject}"),
            Grantor::Source(source) => match source.identity() {
                Some(identity) => identity,
                None => {
                    user?;
                    source.describe()
                }
            },
        };
        let credential = if self.authenticates() {
            format!("{credential} client={}", self.client.key_id())
        } else {
            credential
        };
        Some(StoreKey::new(
            "jwt_bearer",
            &self.token_url,
            &credential,
            user,
            &key_scopes(&self.scopes, &self.resources),
        ))
    }

    fn without_store(&self) -> WithoutStore {
        WithoutStore::OwnCredential
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
        let client = self.authenticates().then_some(&self.client);
        revoke_access_token(http, url, client, token, deadline)
    }
}

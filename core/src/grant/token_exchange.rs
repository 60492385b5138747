//! OAuth 2.0 token exchange (RFC 8693): a token someone else issued (a workload's
//! projected token, a CI system's OIDC token, another client's access token) exchanged
//! for one of this server's.

use super::sealed::Fetch;
use super::{
    add_resources, extra_headers, key_scopes, require_revocation_url, revoke_access_token,
    AuthMethod, ClientAuth,
};
use crate::assertion::AssertionSource;
use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::http::{Assertion, AssertionFrom, BodyFormat, Http, Replay, TokenRequest};
use crate::secret::Secret;
use crate::store::{StoreKey, WithoutStore};
use crate::token::Token;

/// The token-exchange grant type (RFC 8693 §2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Token type identifiers (RFC 8693 §3), for subject, actor, requested and issued
/// token types.
pub mod token_type {
    /// An OAuth 2.0 access token.
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    /// An OAuth 2.0 refresh token.
    pub const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    /// An OpenID Connect ID token.
    pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    /// A JWT (a Kubernetes projected service-account token, a CI system's OIDC token).
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
    /// A base64url-encoded SAML 1.1 assertion.
    pub const SAML1: &str = "urn:ietf:params:oauth:token-type:saml1";
    /// A base64url-encoded SAML 2.0 assertion.
    pub const SAML2: &str = "urn:ietf:params:oauth:token-type:saml2";

    /// The identifier for a short name (`access_token`, `refresh_token`, `id_token`,
    /// `jwt`, `saml1`, `saml2`); anything else is returned as it is (a URI of the
    /// server's own).
    pub fn from_name(name: &str) -> &str {
        match name {
            "access_token" => ACCESS_TOKEN,
            "refresh_token" => REFRESH_TOKEN,
            "id_token" => ID_TOKEN,
            "jwt" => JWT,
            "saml1" => SAML1,
            "saml2" => SAML2,
            other => other,
        }
    }
}

/// A token and its type, from a source.
#[derive(Debug, Clone)]
struct Party {
    source: AssertionSource,
    token_type: String,
}

/// The token-exchange grant (RFC 8693): the subject token (and, for delegation, an
/// actor token) read from an [`AssertionSource`] for every request, exchanged for an
/// access token that is cached and renewed like any other — by exchanging again with
/// what the source gives then (a rewritten file; a chained client's renewed token).
///
/// When the server refuses the exchange (`invalid_grant`, `invalid_client`), the source
/// is read once more and the request sent once more only if it gives another token: a
/// chained [`AssertionSource::client`] invalidates the refused token at its client and
/// hands over its next one. A refresh token in the answer is not kept: every renewal
/// exchanges the subject token again, so that the exchanged token never outlives the
/// subject's right to it. The answer's `issued_token_type` is
/// [`Token::issued_token_type`].
///
/// ```no_run
/// use authcore::grant::{token_type, ClientCredentials, TokenExchange};
/// use authcore::{AssertionSource, Client, Options};
///
/// // A chained exchange: the front end's own token, exchanged for one for the back end.
/// let front = Client::new(
///     ClientCredentials::new("https://idp.example/token", "front", "front-secret"),
///     Options::default(),
/// )?;
/// let grant = TokenExchange::new(
///     "https://sts.example/token",
///     "front",
///     "front-secret",
///     AssertionSource::client(front),
///     token_type::ACCESS_TOKEN,
/// )
/// .audience("https://backend.example")
/// .scopes(["orders:read"]);
/// let client = Client::new(grant, Options::default())?;
/// let token = client.token()?;
/// println!("{:?}", token.issued_token_type());
/// # Ok::<(), authcore::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TokenExchange {
    token_url: String,
    client: ClientAuth,
    subject: Party,
    actor: Option<Party>,
    audiences: Vec<String>,
    scopes: Vec<String>,
    resources: Vec<String>,
    requested_token_type: Option<String>,
    revocation_url: Option<String>,
}

impl TokenExchange {
    /// Token exchange at `token_url` for the client `client_id` (with
    /// `client_secret_basic`; an empty secret is a public client, identified by
    /// `client_id` in the body; any other [`AuthMethod`] through the builders), the
    /// subject token read from `subject`, of type `subject_token_type` (a URI such as
    /// [`token_type::ACCESS_TOKEN`] or [`token_type::JWT`]).
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        subject: AssertionSource,
        subject_token_type: impl Into<String>,
    ) -> Self {
        TokenExchange {
            token_url: token_url.into(),
            client: ClientAuth::new(
                client_id.into(),
                client_secret.into(),
                AuthMethod::ClientSecretBasic,
            ),
            subject: Party {
                source: subject,
                token_type: subject_token_type.into(),
            },
            actor: None,
            audiences: Vec::new(),
            scopes: Vec::new(),
            resources: Vec::new(),
            requested_token_type: None,
            revocation_url: None,
        }
    }

    /// Token exchange at the token endpoint an issuer's metadata names (and its
    /// revocation endpoint, if any).
    pub fn from_metadata(
        metadata: &crate::discovery::Metadata,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        subject: AssertionSource,
        subject_token_type: impl Into<String>,
    ) -> Result<Self> {
        let mut grant = Self::new(
            metadata.require_token_endpoint()?,
            client_id,
            client_secret,
            subject,
            subject_token_type,
        );
        grant.revocation_url = metadata.revocation_endpoint.clone();
        Ok(grant)
    }

    /// Delegation (RFC 8693 §1.1): the party acting for the subject, its token read
    /// from `actor` (like the subject's) and sent as `actor_token` of type
    /// `actor_token_type`.
    pub fn actor(mut self, actor: AssertionSource, actor_token_type: impl Into<String>) -> Self {
        self.actor = Some(Party {
            source: actor,
            token_type: actor_token_type.into(),
        });
        self
    }

    /// The service the token is for, by the server's name for it (RFC 8693 §2.1
    /// `audience`); adds one to those set before.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The services the token is for (one `audience` parameter each), replacing those
    /// set before.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// The type of token wanted (RFC 8693 §2.1 `requested_token_type`, e.g.
    /// [`token_type::ACCESS_TOKEN`]); by default the server chooses.
    pub fn requested_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.requested_token_type = Some(token_type.into());
        self
    }

    super::oauth_builders!();
    super::scopes_builder!();

    /// The request for one exchange, with the subject (and actor) token read now.
    fn request<'a>(&'a self, http: &Http, deadline: Deadline) -> Result<TokenRequest<'a>> {
        let mut req = TokenRequest {
            grant: "token_exchange",
            url: &self.token_url,
            format: BodyFormat::Form,
            params: vec![("grant_type", Secret::new(GRANT_TYPE))],
            basic: None,
            headers: extra_headers(http),
            replay: Replay::Safe,
            redact: Vec::new(),
            assertions: Vec::new(),
        };
        let parties = [
            Some((&self.subject, "subject_token", "subject_token_type")),
            self.actor
                .as_ref()
                .map(|a| (a, "actor_token", "actor_token_type")),
        ];
        for (party, param, type_param) in parties.into_iter().flatten() {
            req.params.push((param, party.source.read(deadline)?));
            req.params
                .push((type_param, Secret::new(party.token_type.clone())));
            req.assertions.push(Assertion {
                param,
                from: AssertionFrom::Source(&party.source),
            });
        }
        for audience in &self.audiences {
            req.params.push(("audience", Secret::new(audience.clone())));
        }
        add_resources(&mut req, &self.resources);
        if !self.scopes.is_empty() {
            req.params
                .push(("scope", Secret::new(self.scopes.join(" "))));
        }
        if let Some(wanted) = &self.requested_token_type {
            req.params
                .push(("requested_token_type", Secret::new(wanted.clone())));
        }
        self.client.apply(&mut req, deadline)?;
        Ok(req)
    }
}

/// A token type as RFC 8693 wants one: not empty, printable, no spaces.
fn check_token_type(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 1024 || value.chars().any(|c| c.is_control() || c == ' ') {
        return Err(Error::config(format!(
            "the token exchange's {what} must be a token type URI (such as {})",
            token_type::ACCESS_TOKEN
        )));
    }
    Ok(())
}

impl Fetch for TokenExchange {
    fn fetch(&self, http: &Http, _rt: Option<&Secret>, deadline: Deadline) -> Result<Token> {
        let req = self.request(http, deadline)?;
        // Renewal exchanges the subject token again: a refresh token would let the
        // exchanged token outlive the subject's right to it (and is not shared).
        Ok(http.token(&req, deadline)?.with_refresh_token(None))
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
        revoke_access_token(http, url, Some(&self.client), token, deadline)
    }

    fn check(&self) -> Result<()> {
        self.client.check()?;
        check_token_type("subject token type", &self.subject.token_type)?;
        if let Some(actor) = &self.actor {
            check_token_type("actor token type", &actor.token_type)?;
        }
        if let Some(wanted) = &self.requested_token_type {
            check_token_type("requested token type", wanted)?;
        }
        Ok(())
    }

    fn endpoints(&self) -> Vec<&str> {
        std::iter::once(self.token_url.as_str())
            .chain(self.revocation_url.as_deref())
            .collect()
    }

    /// The exchanged token depends on whose subject token was exchanged: the key names
    /// where the subject (and actor) token comes from — a file's path, a command line,
    /// a chained client's own key, a literal's tag, never a token — or, for a source
    /// that cannot be told apart from another (a callback), the store key name given
    /// in the options (`user`). Without either, the tokens are not shared.
    fn store_key(&self, user: Option<&str>) -> Option<StoreKey> {
        let subject = self.subject.source.credential_identity();
        if subject.is_none() && user.is_none() {
            return None;
        }
        let mut credential = self.client.key_id();
        let mut parts = vec![(
            "subject",
            &self.subject.token_type,
            subject.unwrap_or_default(),
        )];
        if let Some(actor) = &self.actor {
            let identity = actor.source.credential_identity();
            if identity.is_none() && user.is_none() {
                return None;
            }
            parts.push(("actor", &actor.token_type, identity.unwrap_or_default()));
        }
        for (role, token_type, identity) in parts {
            credential.push_str(&format!(" {role}={token_type}|{identity}"));
        }
        let mut scopes = key_scopes(&self.scopes, &self.resources);
        scopes.extend(self.audiences.iter().map(|a| format!("audience={a}")));
        if let Some(wanted) = &self.requested_token_type {
            scopes.push(format!("requested_token_type={wanted}"));
        }
        Some(StoreKey::new(
            "token_exchange",
            &self.token_url,
            &credential,
            user,
            &scopes,
        ))
    }

    fn without_store(&self) -> WithoutStore {
        WithoutStore::OwnCredential
    }
}

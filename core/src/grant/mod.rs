//! Ways to obtain a token, one module each. Every grant produces the same [`Token`].

mod api_key;
mod authorization_code;
mod client_credentials;
pub(crate) mod device_code;
mod jwt_bearer;
mod private_key;
mod refresh;
mod static_token;
mod token_exchange;

pub use api_key::ApiKey;
pub use authorization_code::{AuthorizationCode, Pkce};
pub use client_credentials::ClientCredentials;
pub use device_code::DeviceCode;
pub use jwt_bearer::JwtBearer;
pub use private_key::{PrivateKey, SigningAlgorithm};
pub use refresh::RefreshToken;
pub use static_token::StaticToken;
pub use token_exchange::{token_type, TokenExchange, GRANT_TYPE as TOKEN_EXCHANGE_GRANT_TYPE};

use base64::Engine;

use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::http::{Assertion, AssertionFrom, BodyFormat, Http, TokenRequest};
use crate::secret::Secret;
use crate::store::{StoreKey, WithoutStore};
use crate::token::Token;

pub(crate) mod sealed {
    use super::*;

    /// What the client needs from a grant. Sealed: grants are authcore's own.
    pub trait Fetch: Send + Sync + 'static {
        /// Obtains a new token within `deadline`. `refresh_token` is the newest one the
        /// cache knows.
        fn fetch(
            &self,
            http: &Http,
            refresh_token: Option<&Secret>,
            deadline: Deadline,
        ) -> Result<Token>;
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
        /// Whether the grant is complete (a `private_key_jwt` client has its key).
        fn check(&self) -> Result<()> {
            Ok(())
        }
        /// How the client authenticates at the token endpoint, for grants that have
        /// one (checked against the options when the client is built).
        fn auth_method(&self) -> Option<AuthMethod> {
            None
        }
        /// What identifies this credential in a shared store (`None`: not shared);
        /// `user` names whose token it is, when known.
        fn store_key(&self, _user: Option<&str>) -> Option<StoreKey> {
            None
        }
        /// Whether the grant's tokens belong to a user, so that a store key must name
        /// one (a refresh token does; a client's own credential does not).
        fn per_user(&self) -> bool {
            false
        }
        /// How this grant may renew while its shared store cannot be used.
        fn without_store(&self) -> WithoutStore {
            WithoutStore::Refuse
        }
        /// Whether the grant knows a revocation endpoint.
        fn revocable(&self) -> bool {
            false
        }
        /// Revokes `token` and `refresh_token` at the grant's revocation endpoint.
        fn revoke(
            &self,
            _http: &Http,
            _token: Option<&Token>,
            _refresh_token: Option<&Secret>,
            _deadline: Deadline,
        ) -> Result<()> {
            require_revocation_url(&None).map(|_| ())
        }
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
    /// A public client (no secret): `client_id` in the request body.
    None,
    /// A JWT signed by the client's private key (RFC 7523 §2.2); set the key with the
    /// grant's `private_key`.
    PrivateKeyJwt,
    /// A JWT issued by someone else (a federated identity: a Kubernetes projected
    /// token, a CI system's OIDC token) sent as the client assertion (RFC 7523 §2.2),
    /// read afresh for every request; set its source with the grant's
    /// `client_assertion`.
    ClientAssertion,
    /// Mutual TLS with a certificate from a CA the server trusts (RFC 8705 §2.1):
    /// `client_id` in the body, no secret; the server matches the certificate's
    /// subject. Needs [`Options::client_certificate`](crate::Options::client_certificate).
    TlsClientAuth,
    /// Mutual TLS with a self-signed certificate registered with the server (RFC 8705
    /// §2.2): `client_id` in the body, no secret. Needs
    /// [`Options::client_certificate`](crate::Options::client_certificate).
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// From the names RFC 8414 uses (`client_secret_basic`, `client_secret_post`,
    /// `none`, `private_key_jwt`, `tls_client_auth`, `self_signed_tls_client_auth`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "client_secret_basic" | "basic" => Self::ClientSecretBasic,
            "client_secret_basic_raw" | "basic_raw" => Self::ClientSecretBasicRaw,
            "client_secret_post" | "post" => Self::ClientSecretPost,
            "none" => Self::None,
            "private_key_jwt" => Self::PrivateKeyJwt,
            "client_assertion" => Self::ClientAssertion,
            "tls_client_auth" => Self::TlsClientAuth,
            "self_signed_tls_client_auth" => Self::SelfSignedTlsClientAuth,
            _ => return None,
        })
    }

    /// Whether the client authenticates with its TLS certificate (RFC 8705 §2).
    pub fn is_mutual_tls(self) -> bool {
        matches!(self, Self::TlsClientAuth | Self::SelfSignedTlsClientAuth)
    }
}

/// A client's identity at a token endpoint.
#[derive(Debug, Clone)]
pub(crate) struct ClientAuth {
    pub id: String,
    pub secret: Secret,
    pub method: AuthMethod,
    /// The key for [`AuthMethod::PrivateKeyJwt`].
    pub key: Option<std::sync::Arc<PrivateKey>>,
    /// The assertion's audience when not the endpoint it is sent to (some servers want
    /// the issuer).
    pub audience: Option<String>,
    /// Where the client assertion comes from, for [`AuthMethod::ClientAssertion`].
    pub assertion: Option<crate::assertion::AssertionSource>,
}

impl ClientAuth {
    /// A client with a secret (empty, with the default Basic method: a public client,
    /// which sends its id in the body).
    pub(crate) fn new(id: String, secret: Secret, method: AuthMethod) -> Self {
        ClientAuth {
            id,
            secret,
            method,
            key: None,
            audience: None,
            assertion: None,
        }
    }

    /// Checked when a client or flow is built: `private_key_jwt` needs a key, a client
    /// assertion its source.
    pub(crate) fn check(&self) -> Result<()> {
        if self.method == AuthMethod::PrivateKeyJwt && self.key.is_none() {
            return Err(Error::config(
                "private_key_jwt needs a private key (the grant's private_key)",
            ));
        }
        if self.method == AuthMethod::ClientAssertion && self.assertion.is_none() {
            return Err(Error::config(
                "client assertion authentication needs a source (the grant's client_assertion)",
            ));
        }
        Ok(())
    }

    /// Checked when a client or flow is built with `options`: the mutual-TLS methods
    /// need a client certificate.
    pub(crate) fn check_certificate(&self, options: &crate::Options) -> Result<()> {
        check_certificate(self.method, options)
    }

    /// What identifies the client's credential in a store key beyond its id: where its
    /// assertion comes from (never the assertion).
    pub(crate) fn key_id(&self) -> String {
        match self.assertion.as_ref().and_then(|s| s.identity()) {
            Some(source) if self.method == AuthMethod::ClientAssertion => {
                format!("{} ({source})", self.id)
            }
            _ => self.id.clone(),
        }
    }

    /// Adds the client's credentials to a token request.
    pub(crate) fn apply<'a>(
        &'a self,
        req: &mut TokenRequest<'a>,
        deadline: Deadline,
    ) -> Result<()> {
        let basic = |id: &str, secret: &str| {
            let joined = Secret::new(format!("{id}:{secret}"));
            Secret::new(base64::engine::general_purpose::STANDARD.encode(joined.expose_secret()))
        };
        // Percent-encoded copies are secrets too: wiped when dropped.
        // A JSON body has no Basic convention among the providers that use it.
        let method = match (req.format, self.method) {
            (BodyFormat::Json, m) if m.is_mutual_tls() => m,
            (BodyFormat::Json, _) => AuthMethod::ClientSecretPost,
            // No secret to send: a public client (RFC 6749 §2.1), identified in the body.
            (BodyFormat::Form, AuthMethod::ClientSecretBasic)
                if self.secret.expose_secret().is_empty() =>
            {
                AuthMethod::None
            }
            (BodyFormat::Form, method) => method,
        };
        match method {
            AuthMethod::ClientSecretBasic => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let secret = Secret::new(enc(self.secret.expose_secret()));
                let id = Secret::new(enc(&self.id));
                req.basic = Some(basic(id.expose_secret(), secret.expose_secret()));
                req.redact.push(self.secret.clone());
            }
            AuthMethod::ClientSecretBasicRaw => {
                req.basic = Some(basic(&self.id, self.secret.expose_secret()));
                req.redact.push(self.secret.clone());
            }
            AuthMethod::ClientSecretPost => {
                req.params.push(("client_id", Secret::new(self.id.clone())));
                req.params.push(("client_secret", self.secret.clone()));
            }
            // The certificate authenticates, on the connection (RFC 8705 §2).
            AuthMethod::None | AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth => {
                req.params.push(("client_id", Secret::new(self.id.clone())));
            }
            AuthMethod::PrivateKeyJwt => {
                let key = self.key.as_ref().ok_or_else(|| {
                    Error::config("private_key_jwt needs a private key (the grant's private_key)")
                })?;
                let audience = self.audience.as_deref().unwrap_or(req.url);
                req.params.push(("client_id", Secret::new(self.id.clone())));
                req.params.push((
                    "client_assertion_type",
                    Secret::new("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ));
                req.params
                    .push(("client_assertion", key.assertion(&self.id, audience)?));
                // A later attempt (a DPoP nonce, a transient failure) signs a new one.
                req.assertions.push(Assertion {
                    param: "client_assertion",
                    from: AssertionFrom::Signed {
                        key,
                        issuer: &self.id,
                        subject: &self.id,
                        audience,
                    },
                });
            }
            AuthMethod::ClientAssertion => {
                let source = self.assertion.as_ref().ok_or_else(|| {
                    Error::config(
                        "client assertion authentication needs a source (the grant's client_assertion)",
                    )
                })?;
                req.params.push(("client_id", Secret::new(self.id.clone())));
                req.params.push((
                    "client_assertion_type",
                    Secret::new("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ));
                req.params
                    .push(("client_assertion", source.read(deadline)?));
                req.assertions.push(Assertion {
                    param: "client_assertion",
                    from: AssertionFrom::Source(source),
                });
            }
        }
        Ok(())
    }
}

/// The mutual-TLS methods need a client certificate in the options.
pub(crate) fn check_certificate(method: AuthMethod, options: &crate::Options) -> Result<()> {
    if method.is_mutual_tls() && options.client_certificate.is_none() {
        return Err(Error::config(
            "tls_client_auth and self_signed_tls_client_auth need a client certificate \
             (the client_certificate option)",
        ));
    }
    Ok(())
}

/// The mTLS endpoint aliases (RFC 8705 §5) a grant was given by discovered metadata,
/// as (endpoint, alias) pairs: a client that presents a certificate sends to the alias
/// instead of the endpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct MtlsAliases(Vec<(String, String)>);

impl MtlsAliases {
    /// The aliases of the metadata's token, revocation and device authorization
    /// endpoints.
    pub(crate) fn from_metadata(metadata: &crate::discovery::Metadata) -> Self {
        let pairs = [
            ("token_endpoint", &metadata.token_endpoint),
            ("revocation_endpoint", &metadata.revocation_endpoint),
            (
                "device_authorization_endpoint",
                &metadata.device_authorization_endpoint,
            ),
        ]
        .into_iter()
        .filter_map(|(name, endpoint)| {
            let endpoint = endpoint.as_ref()?;
            let alias = metadata.mtls_alias(name)?;
            Some((endpoint.clone(), alias.to_owned()))
        })
        .collect();
        MtlsAliases(pairs)
    }

    /// Where a request meant for `url` goes: its alias when the client presents a
    /// certificate and there is one, else `url`.
    pub(crate) fn route<'a>(&'a self, url: &'a str, http: &Http) -> &'a str {
        if http.options().client_certificate.is_none() {
            return url;
        }
        self.0
            .iter()
            .find(|(endpoint, _)| endpoint == url)
            .map_or(url, |(_, alias)| alias.as_str())
    }

    /// Every alias (checked when a client is built, as the endpoints are).
    pub(crate) fn urls(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, alias)| alias.as_str())
    }
}

/// Adds `resource` parameters (RFC 8707), one per URI.
pub(crate) fn add_resources(req: &mut TokenRequest<'_>, resources: &[String]) {
    for r in resources {
        req.params.push(("resource", Secret::new(r.clone())));
    }
}

/// Scopes and resources as they enter a store key: different resources are different
/// tokens.
pub(crate) fn key_scopes(scopes: &[String], resources: &[String]) -> Vec<String> {
    scopes
        .iter()
        .cloned()
        .chain(resources.iter().map(|r| format!("resource={r}")))
        .collect()
}

/// Revokes `tokens` (value, type hint) at `url` (RFC 7009), the refresh token first.
/// An unknown or already revoked token is success (§2.2).
pub(crate) fn revoke_at(
    http: &Http,
    url: &str,
    client: &ClientAuth,
    tokens: &[(&Secret, &'static str)],
    deadline: Deadline,
) -> Result<()> {
    revoke_as(http, url, Some(client), tokens, deadline)
}

/// Revokes the access token alone, at `url`: what grants that issue no refresh token
/// revoke (client credentials, JWT bearer, token exchange). Nothing held: nothing sent.
pub(crate) fn revoke_access_token(
    http: &Http,
    url: &str,
    client: Option<&ClientAuth>,
    token: Option<&Token>,
    deadline: Deadline,
) -> Result<()> {
    let tokens: Vec<_> = token
        .map(|t| (t.access_token(), "access_token"))
        .into_iter()
        .collect();
    revoke_as(http, url, client, &tokens, deadline)
}

/// [`revoke_at`] by a client that may not authenticate itself (`None`: a grant whose
/// credential is not a client's, such as a JWT bearer grant without client
/// authentication).
pub(crate) fn revoke_as(
    http: &Http,
    url: &str,
    client: Option<&ClientAuth>,
    tokens: &[(&Secret, &'static str)],
    deadline: Deadline,
) -> Result<()> {
    for (token, hint) in tokens {
        let mut req = TokenRequest {
            grant: "revocation",
            url,
            format: BodyFormat::Form,
            params: vec![
                ("token", (*token).clone()),
                ("token_type_hint", Secret::new(*hint)),
            ],
            basic: None,
            headers: extra_headers(http),
            replay: crate::http::Replay::Safe,
            redact: Vec::new(),
            assertions: Vec::new(),
        };
        if let Some(client) = client {
            client.apply(&mut req, deadline)?;
        }
        let response = http.post(&req, deadline)?;
        revocation_answer(&req, response.status, &response.body)?;
    }
    Ok(())
}

/// What a revocation endpoint's answer to `req` means (RFC 7009 §2.2): 200 is success
/// (whatever the body), anything else the error it carries, without the request's
/// credentials.
pub(crate) fn revocation_answer(req: &TokenRequest<'_>, status: u16, body: &[u8]) -> Result<()> {
    if status == 200 {
        return Ok(());
    }
    Err(req.redacted(crate::error::from_endpoint_response(
        "revocation endpoint",
        &crate::http::host_of(req.url),
        status,
        None,
        body,
    )))
}

/// What every OAuth grant accepts besides its own parameters, as one value: for hosts
/// that collect these separately from the grant (keyword arguments, an options handle).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OAuthSettings {
    /// Resource indicators (RFC 8707).
    pub resources: Vec<String>,
    /// The key for `private_key_jwt`.
    pub private_key: Option<PrivateKey>,
    /// The revocation endpoint (RFC 7009).
    pub revocation_url: Option<String>,
    /// Where a federated client assertion (RFC 7523 §2.2) comes from: the client
    /// authenticates with it instead of a secret.
    pub client_assertion: Option<crate::AssertionSource>,
}

/// OAuth grants that take [`OAuthSettings`]: client credentials, refresh token,
/// authorization code, device code and token exchange.
pub trait WithOAuthSettings: Sized {
    /// The grant with `settings` applied (an empty setting changes nothing).
    fn with_settings(self, settings: OAuthSettings) -> Self;
}

macro_rules! with_oauth_settings {
    ($($grant:ty),*) => {$(
        impl WithOAuthSettings for $grant {
            fn with_settings(self, settings: OAuthSettings) -> Self {
                let mut grant = self;
                if !settings.resources.is_empty() {
                    grant = grant.resources(settings.resources);
                }
                if let Some(key) = settings.private_key {
                    grant = grant.private_key(key);
                }
                if let Some(url) = settings.revocation_url {
                    grant = grant.revocation_url(url);
                }
                if let Some(source) = settings.client_assertion {
                    grant = grant.client_assertion(source);
                }
                grant
            }
        }
    )*};
}

with_oauth_settings!(
    ClientCredentials,
    RefreshToken,
    AuthorizationCode,
    DeviceCode,
    JwtBearer,
    TokenExchange
);

/// Builder methods every OAuth grant shares: resources, client authentication by
/// private key, and the revocation endpoint.
macro_rules! oauth_builders {
    () => {
        /// How the client authenticates itself at the token endpoint (form bodies only:
        /// a JSON body carries the credentials in the body).
        pub fn auth_method(mut self, method: $crate::grant::AuthMethod) -> Self {
            self.client.method = method;
            self
        }

        /// Resource indicators (RFC 8707): the APIs the token is for, sent as one
        /// `resource` parameter each. Clients for different resources keep different
        /// tokens (and store keys).
        pub fn resources<I, S>(mut self, resources: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.resources = resources.into_iter().map(Into::into).collect();
            self
        }

        /// Authenticates with `private_key_jwt` (RFC 7523 §2.2): a fresh assertion signed
        /// by `key` for every request, with the endpoint it is sent to as audience.
        pub fn private_key(mut self, key: $crate::grant::PrivateKey) -> Self {
            self.client.key = Some(std::sync::Arc::new(key));
            self.client.method = $crate::grant::AuthMethod::PrivateKeyJwt;
            self
        }

        /// Authenticates with a client assertion someone else issues (RFC 7523 §2.2, a
        /// federated identity): read from `source` for every request, and once more when
        /// the server refuses the one it was sent.
        pub fn client_assertion(mut self, source: $crate::AssertionSource) -> Self {
            self.client.assertion = Some(source);
            self.client.method = $crate::grant::AuthMethod::ClientAssertion;
            self
        }

        /// The audience of client assertions, where the server wants another than the
        /// token endpoint (such as its issuer).
        pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
            self.client.audience = Some(audience.into());
            self
        }

        /// The revocation endpoint (RFC 7009) used by
        /// [`Client::revoke`](crate::Client::revoke).
        pub fn revocation_url(mut self, url: impl Into<String>) -> Self {
            self.revocation_url = Some(url.into());
            self
        }
    };
}
pub(crate) use oauth_builders;

/// The `scopes` builder of grants that ask for scopes.
macro_rules! scopes_builder {
    () => {
        /// Scopes to request (sent space-separated).
        pub fn scopes<I, S>(mut self, scopes: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.scopes = scopes.into_iter().map(Into::into).collect();
            self
        }
    };
}
pub(crate) use scopes_builder;

/// The revocation endpoint, or the error of a client that has none.
pub(crate) fn require_revocation_url(url: &Option<String>) -> Result<&str> {
    url.as_deref().ok_or_else(|| {
        Error::config("this client has no revocation endpoint (set revocation_url or discover it)")
    })
}

/// Headers configured for every token request.
pub(crate) fn extra_headers(http: &Http) -> Vec<(String, String)> {
    http.options().extra_headers.clone()
}

/// True only when the server really refused the refresh token or the client: an OAuth
/// `invalid_grant`, `invalid_client` or `unauthorized_client`, or api.video's problem
/// about the refresh token, at HTTP 400 or 401 (or a 200 carrying such an error).
/// Everything else — a 5xx with any body, 429, `temporarily_unavailable`,
/// `server_error`, an HTML page, a 404 — is transient: the refresh token is kept and the
/// next call tries again.
pub(crate) fn is_refusal(e: &Error) -> bool {
    let refusing_status = |s: Option<u16>| matches!(s, Some(200 | 400 | 401));
    match e {
        Error::OAuth(o) => {
            refusing_status(o.status)
                && matches!(
                    o.error.as_str(),
                    "invalid_grant" | "invalid_client" | "unauthorized_client"
                )
        }
        Error::ApiProblem(p) => {
            matches!(p.status, 400 | 401)
                && [&p.problem_type, &p.title, &p.detail]
                    .into_iter()
                    .flatten()
                    .any(|t| t.to_ascii_lowercase().contains("refresh"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{OAuthError, Problem};

    fn oauth(error: &str, status: u16) -> Error {
        Error::OAuth(OAuthError {
            error: error.into(),
            description: None,
            uri: None,
            status: Some(status),
        })
    }

    #[test]
    fn only_real_refusals_count() {
        for (e, refused) in [
            (oauth("invalid_grant", 400), true),
            (oauth("invalid_client", 401), true),
            (oauth("unauthorized_client", 400), true),
            (oauth("invalid_grant", 503), false),
            (oauth("temporarily_unavailable", 400), false),
            (oauth("server_error", 500), false),
            (oauth("invalid_request", 400), false),
        ] {
            assert_eq!(is_refusal(&e), refused, "{e}");
        }
        let problem = |status, t: &str| {
            Error::ApiProblem(Problem {
                status,
                problem_type: Some(t.into()),
                title: None,
                detail: None,
            })
        };
        let rt = "https://docs.api.video/reference/authentication-invalid-refresh-token";
        assert!(is_refusal(&problem(400, rt)));
        assert!(!is_refusal(&problem(503, rt)));
        assert!(!is_refusal(&problem(
            400,
            "https://docs.api.video/reference/server-error"
        )));
        let html = Error::invalid(404, "unexpected HTTP status 404", b"<html>");
        assert!(!is_refusal(&html));
        assert!(!is_refusal(&Error::RateLimited {
            retry_after: None,
            problem: None
        }));
    }
}

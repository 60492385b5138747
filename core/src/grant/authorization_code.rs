//! OAuth 2.0 authorization code (RFC 6749 §4.1) with `state` and PKCE S256 (RFC 7636).

use base64::Engine;
use sha2::{Digest, Sha256};
use url::Url;

use super::refresh::RefreshToken;
use super::{add_resources, extra_headers, AuthMethod, ClientAuth, MtlsAliases};
use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::http::{BodyFormat, Http, Replay, TokenRequest};
use crate::provider;
use crate::random;
use crate::secret::Secret;
use crate::token::Token;

/// A PKCE verifier and its S256 challenge.
#[derive(Debug, Clone)]
pub struct Pkce {
    verifier: Secret,
    challenge: String,
}

impl Pkce {
    /// A fresh verifier (32 bytes from the OS random source, 43 characters).
    pub fn generate() -> Self {
        Self::from_verifier(random::url_safe_string(32))
    }

    /// The pair for a known verifier: `challenge = BASE64URL(SHA256(verifier))`.
    pub fn from_verifier(verifier: impl Into<Secret>) -> Self {
        let verifier = verifier.into();
        let digest = Sha256::digest(verifier.expose_secret().as_bytes());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        Pkce {
            verifier,
            challenge,
        }
    }

    /// The verifier, sent with the code exchange.
    pub fn verifier(&self) -> &Secret {
        &self.verifier
    }

    /// The challenge, sent in the authorization URL.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

/// Configuration of an authorization code client.
#[derive(Debug, Clone)]
pub struct AuthorizationCode {
    authorize_url: String,
    token_url: String,
    client: ClientAuth,
    redirect_uri: String,
    scopes: Vec<String>,
    format: BodyFormat,
    pkce: bool,
    resources: Vec<String>,
    revocation_url: Option<String>,
    mtls: MtlsAliases,
    /// The issuer whose `iss` an authorization response must carry (RFC 9207).
    issuer: Option<String>,
    /// Whether the server always sends `iss` (then a response without it is refused).
    iss_required: bool,
}

impl AuthorizationCode {
    /// A client at any OAuth 2.0 server (form body, Basic auth, PKCE S256).
    pub fn new(
        authorize_url: impl Into<String>,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        AuthorizationCode {
            authorize_url: authorize_url.into(),
            token_url: token_url.into(),
            client: ClientAuth::new(
                client_id.into(),
                client_secret.into(),
                AuthMethod::ClientSecretBasic,
            ),
            redirect_uri: redirect_uri.into(),
            scopes: Vec::new(),
            format: BodyFormat::Form,
            pkce: true,
            resources: Vec::new(),
            revocation_url: None,
            mtls: MtlsAliases::default(),
            issuer: None,
            iss_required: false,
        }
    }

    /// A client at the endpoints an issuer's metadata names. Authorization responses
    /// must then come from that issuer: an `iss` parameter (RFC 9207) that names another
    /// is refused, and so is a missing one when the server says it always sends it.
    pub fn from_metadata(
        metadata: &crate::discovery::Metadata,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        redirect_uri: impl Into<String>,
    ) -> Result<Self> {
        let mut config = Self::new(
            metadata.require_authorization_endpoint()?,
            metadata.require_token_endpoint()?,
            client_id,
            client_secret,
            redirect_uri,
        );
        config.revocation_url = metadata.revocation_endpoint.clone();
        config.mtls = MtlsAliases::from_metadata(metadata);
        config.issuer = Some(metadata.issuer.clone());
        config.iss_required = metadata.authorization_response_iss_parameter_supported;
        Ok(config)
    }

    /// viewneo (`https://cloud.viewneo.com/oauth/…`, JSON token requests).
    pub fn viewneo(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self::viewneo_at(
            provider::VIEWNEO_BASE,
            client_id,
            client_secret,
            redirect_uri,
        )
    }

    /// viewneo's dialect at another base URL (a staging or local server).
    pub fn viewneo_at(
        base_url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        let base = base_url.trim_end_matches('/');
        Self::new(
            format!("{base}/oauth/authorize"),
            format!("{base}/oauth/token"),
            client_id,
            client_secret,
            redirect_uri,
        )
        .json_body()
    }

    /// Sends token requests as JSON with client credentials in the body (viewneo).
    pub fn json_body(mut self) -> Self {
        self.format = BodyFormat::Json;
        self
    }

    /// Turns PKCE off, for servers that reject unknown parameters. On by default.
    pub fn pkce(mut self, enabled: bool) -> Self {
        self.pkce = enabled;
        self
    }

    /// The issuer whose `iss` authorization responses must carry (RFC 9207), and
    /// whether they always do.
    pub fn issuer(mut self, issuer: impl Into<String>, always_sent: bool) -> Self {
        self.issuer = Some(issuer.into());
        self.iss_required = always_sent;
        self
    }

    super::oauth_builders!();
    super::scopes_builder!();
}

impl AuthorizationCode {
    /// Checks the client against the flow's options: the mutual-TLS methods need a
    /// client certificate.
    pub(crate) fn check_certificate(&self, options: &crate::Options) -> Result<()> {
        self.client.check_certificate(options)
    }

    /// The endpoints (checked when a flow is made) after checking the client.
    pub(crate) fn endpoints(&self) -> Result<Vec<&str>> {
        self.client.check()?;
        Ok([self.authorize_url.as_str(), self.token_url.as_str()]
            .into_iter()
            .chain(self.revocation_url.as_deref())
            .chain(self.mtls.urls())
            .collect())
    }

    /// Checks the `iss` of an authorization response (RFC 9207) before any token
    /// request: it must name the configured issuer; it may be absent only when the
    /// server does not promise to send it.
    pub(crate) fn check_iss(&self, iss: Option<&str>) -> Result<()> {
        match (iss, &self.issuer) {
            (Some(got), Some(want)) if got != want => Err(Error::IssuerMismatch {
                message: format!(
                    "the authorization response comes from {:?}, not {want:?}",
                    crate::error::scrub(got)
                ),
            }),
            (None, Some(want)) if self.iss_required => Err(Error::IssuerMismatch {
                message: format!(
                    "the authorization response has no iss; {want:?} always sends one"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The authorization URL for `state` and, if PKCE is on, `pkce`'s challenge.
    pub(crate) fn authorization_url(&self, state: &str, pkce: Option<&Pkce>) -> Result<String> {
        let mut url = Url::parse(&self.authorize_url)
            .map_err(|e| Error::config(format!("invalid authorize URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client.id)
                .append_pair("redirect_uri", &self.redirect_uri);
            if !self.scopes.is_empty() {
                q.append_pair("scope", &self.scopes.join(" "));
            }
            for r in &self.resources {
                q.append_pair("resource", r);
            }
            q.append_pair("state", state);
            if let Some(p) = pkce {
                q.append_pair("code_challenge", p.challenge())
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(url.into())
    }

    /// A short name for the flow this configuration makes, carried by its exported
    /// sign-ins: a digest of the authorize URL, client id and redirect URI.
    pub(crate) fn flow_tag(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.authorize_url, &self.client.id, &self.redirect_uri] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether the flow sends a PKCE challenge (and so needs a verifier to finish).
    pub(crate) fn uses_pkce(&self) -> bool {
        self.pkce
    }

    /// A fresh PKCE pair if PKCE is on.
    pub(crate) fn new_pkce(&self) -> Option<Pkce> {
        self.pkce.then(Pkce::generate)
    }

    /// Exchanges `code` for a token (never retried: codes are single use).
    pub(crate) fn exchange(
        &self,
        http: &Http,
        code: Secret,
        pkce: Option<&Pkce>,
        deadline: Deadline,
    ) -> Result<Token> {
        let mut req = TokenRequest {
            grant: "authorization_code",
            url: self.mtls.route(&self.token_url, http),
            format: self.format,
            params: vec![
                ("grant_type", Secret::new("authorization_code")),
                ("code", code),
                ("redirect_uri", Secret::new(self.redirect_uri.clone())),
            ],
            basic: None,
            headers: extra_headers(http),
            replay: Replay::Never,
            redact: Vec::new(),
            assertions: Vec::new(),
        };
        if let Some(p) = pkce {
            req.params.push(("code_verifier", p.verifier().clone()));
        }
        add_resources(&mut req, &self.resources);
        self.client.apply(&mut req, deadline)?;
        http.token(&req, deadline)
    }

    /// The grant that goes on from the token a code exchange gave.
    pub(crate) fn refresh_grant(&self, token: Token) -> RefreshToken {
        RefreshToken::continuing(
            &self.token_url,
            &self.client,
            self.format,
            &self.resources,
            self.revocation_url.as_ref(),
            &self.mtls,
            token,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(p.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn generated_verifier_is_43_unreserved_chars_and_unique() {
        let a = Pkce::generate();
        let b = Pkce::generate();
        let v = a.verifier().expose_secret();
        assert_eq!(v.len(), 43);
        assert!(v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));
        assert_ne!(a.verifier(), b.verifier());
    }
}

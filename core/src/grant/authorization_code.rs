//! OAuth 2.0 authorization code (RFC 6749 §4.1) with `state` and PKCE S256 (RFC 7636).

use base64::Engine;
use sha2::{Digest, Sha256};
use url::Url;

use super::refresh::{RefreshToken, Rotation};
use super::{extra_headers, AuthMethod, ClientAuth};
use crate::error::{Error, Result};
use crate::http::{BodyFormat, Deadline, Http, Replay, TokenRequest};
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
            client: ClientAuth {
                id: client_id.into(),
                secret: client_secret.into(),
                method: AuthMethod::ClientSecretBasic,
            },
            redirect_uri: redirect_uri.into(),
            scopes: Vec::new(),
            format: BodyFormat::Form,
            pkce: true,
        }
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

    /// Scopes to request (sent space-separated).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sends token requests as JSON with client credentials in the body (viewneo).
    pub fn json_body(mut self) -> Self {
        self.format = BodyFormat::Json;
        self
    }

    /// How the client authenticates itself (form bodies only).
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.client.method = method;
        self
    }

    /// Turns PKCE off, for servers that reject unknown parameters. On by default.
    pub fn pkce(mut self, enabled: bool) -> Self {
        self.pkce = enabled;
        self
    }
}

impl AuthorizationCode {
    /// The authorize and token endpoints (checked when a flow is made).
    pub(crate) fn endpoints(&self) -> [&str; 2] {
        [&self.authorize_url, &self.token_url]
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
            q.append_pair("state", state);
            if let Some(p) = pkce {
                q.append_pair("code_challenge", p.challenge())
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(url.into())
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
            url: &self.token_url,
            format: self.format,
            params: vec![
                ("grant_type", Secret::new("authorization_code")),
                ("code", code),
                ("redirect_uri", Secret::new(self.redirect_uri.clone())),
            ],
            basic: None,
            headers: extra_headers(http),
            replay: Replay::Never,
        };
        if let Some(p) = pkce {
            req.params.push(("code_verifier", p.verifier().clone()));
        }
        self.client.apply(&mut req);
        http.token(&req, deadline)
    }

    /// The grant that goes on from the token a code exchange gave.
    pub(crate) fn refresh_grant(&self, token: Token) -> RefreshToken {
        RefreshToken {
            token_url: self.token_url.clone(),
            client: self.client.clone(),
            refresh_token: token.refresh_token().cloned(),
            format: self.format,
            initial: Some(token),
            rotation: Rotation::default(),
        }
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

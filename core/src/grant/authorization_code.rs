//! OAuth 2.0 authorization code (RFC 6749 §4.1) with `state` and PKCE S256 (RFC 7636).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use url::Url;

use super::refresh::{refresh_store_key, RefreshToken, Rotation};
use super::{extra_headers, AuthMethod, ClientAuth};
use crate::client::Client;
use crate::error::{Error, OAuthError, Result};
use crate::http::{BodyFormat, Deadline, Http, Replay, TokenRequest};
use crate::options::Options;
use crate::provider;
use crate::random;
use crate::secret::Secret;

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

/// An authorization URL to send the user to, with the `state` that must come back.
#[derive(Clone)]
pub struct AuthorizationRequest {
    /// The URL to open in the user's browser.
    pub url: String,
    /// The `state` sent; the callback must carry it back.
    pub state: String,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

struct Pending {
    state: Secret,
    pkce: Option<Pkce>,
}

/// A running authorization code flow: make the URL, then finish from the callback.
///
/// Each [`authorization_url`](Self::authorization_url) replaces the previous pending
/// request; each `state` is accepted once.
pub struct AuthorizationCodeFlow {
    config: AuthorizationCode,
    options: Options,
    http: Http,
    pending: Mutex<Option<Pending>>,
}

impl fmt::Debug for AuthorizationCodeFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationCodeFlow")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuthorizationCodeFlow {
    /// A flow with these client options (used for the code exchange and the client).
    pub fn new(config: AuthorizationCode, options: Options) -> Result<Self> {
        let http = Http::new(Arc::new(options.clone()))?;
        http.check_url(&config.authorize_url)?;
        http.check_url(&config.token_url)?;
        Ok(AuthorizationCodeFlow {
            config,
            options,
            http,
            pending: Mutex::new(None),
        })
    }

    /// A fresh authorization URL with a new `state` and PKCE challenge.
    pub fn authorization_url(&self) -> Result<AuthorizationRequest> {
        let state = random::url_safe_string(24);
        let pkce = self.config.pkce.then(Pkce::generate);
        let mut url = Url::parse(&self.config.authorize_url)
            .map_err(|e| Error::config(format!("invalid authorize URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client.id)
                .append_pair("redirect_uri", &self.config.redirect_uri);
            if !self.config.scopes.is_empty() {
                q.append_pair("scope", &self.config.scopes.join(" "));
            }
            q.append_pair("state", &state);
            if let Some(p) = &pkce {
                q.append_pair("code_challenge", p.challenge())
                    .append_pair("code_challenge_method", "S256");
            }
        }
        *self.pending.lock() = Some(Pending {
            state: Secret::new(state.clone()),
            pkce,
        });
        Ok(AuthorizationRequest {
            url: url.into(),
            state,
        })
    }

    /// Completes the flow from the URL the user was redirected to: checks `state` (in
    /// constant time, once), surfaces an `error=` callback, exchanges the code (never
    /// retried: codes are single use) and returns a client that renews by refresh token.
    pub fn finish(&self, callback_url: &str) -> Result<Client> {
        let url = Url::parse(callback_url)
            .map_err(|e| Error::config(format!("invalid callback URL: {e}")))?;
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let pending = self.pending.lock().take().ok_or(Error::StateMismatch)?;
        let state = Secret::new(param("state").unwrap_or_default());
        if state != pending.state {
            return Err(Error::StateMismatch);
        }
        if let Some(error) = param("error") {
            return Err(Error::OAuth(OAuthError {
                error: crate::error::scrub(&error),
                description: param("error_description").map(|d| crate::error::scrub(&d)),
                uri: param("error_uri"),
                status: None,
            }));
        }
        let code = param("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::invalid(0, "authorization callback has no code", b""))?;
        self.exchange(Secret::new(code), pending.pkce.as_ref())
    }

    fn exchange(&self, code: Secret, pkce: Option<&Pkce>) -> Result<Client> {
        let mut req = TokenRequest {
            url: &self.config.token_url,
            format: self.config.format,
            params: vec![
                ("grant_type", Secret::new("authorization_code")),
                ("code", code),
                (
                    "redirect_uri",
                    Secret::new(self.config.redirect_uri.clone()),
                ),
            ],
            basic: None,
            headers: extra_headers(&self.http),
            replay: Replay::Never,
        };
        if let Some(p) = pkce {
            req.params.push(("code_verifier", p.verifier().clone()));
        }
        self.config.client.apply(&mut req);
        let deadline = Deadline::after(self.options.timeout);
        let token = self.http.token(&req, deadline)?;
        crate::client::announce(&self.options, &token, None);
        if let Some(store) = &self.options.store {
            let key = refresh_store_key(&self.config.token_url, &self.config.client.id);
            crate::store::save_shared(&**store, &key, &token, deadline);
        }
        let grant = RefreshToken {
            token_url: self.config.token_url.clone(),
            client: self.config.client.clone(),
            refresh_token: token.refresh_token().cloned(),
            format: self.config.format,
            initial: Some(token),
            rotation: Rotation::default(),
        };
        Client::new(grant, self.options.clone())
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

//! api.video: an API key exchanged for an access token and a rotating refresh token.

use super::sealed::Fetch;
use super::{extra_headers, is_refusal};
use crate::clock::Deadline;
use crate::error::Result;
use crate::http::{BodyFormat, Http, Replay, TokenRequest};
use crate::provider;
use crate::secret::Secret;
use crate::store::{StoreKey, WithoutStore};
use crate::token::Token;

/// api.video authentication: `POST {base}/auth/api-key`, renewed through
/// `POST {base}/auth/refresh`; when the refresh token is refused, the API key is
/// exchanged again.
#[derive(Debug, Clone)]
pub struct ApiKey {
    base_url: String,
    api_key: Secret,
    api_key_url: String,
    refresh_url: String,
    /// A refresh token saved earlier, to resume with (it is tried before the key).
    refresh_token: Option<Secret>,
}

impl ApiKey {
    /// The production environment (`https://ws.api.video`).
    pub fn production(api_key: impl Into<Secret>) -> Self {
        Self::with_base_url(provider::API_VIDEO_PRODUCTION, api_key)
    }

    /// The sandbox environment (`https://sandbox.api.video`).
    pub fn sandbox(api_key: impl Into<Secret>) -> Self {
        Self::with_base_url(provider::API_VIDEO_SANDBOX, api_key)
    }

    /// Any base URL that speaks api.video's authentication dialect.
    pub fn with_base_url(base_url: impl Into<String>, api_key: impl Into<Secret>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        ApiKey {
            api_key_url: format!("{base_url}/auth/api-key"),
            refresh_url: format!("{base_url}/auth/refresh"),
            base_url,
            api_key: api_key.into(),
            refresh_token: None,
        }
    }

    /// Resumes from a refresh token saved earlier (by the refresh-token hook): the first
    /// token comes from `POST /auth/refresh` with it, and from the API key only if it is
    /// refused. Sent as api.video's `refreshToken` field.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<Secret>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn request<'a>(
        &'a self,
        http: &Http,
        url: &'a str,
        param: (&'static str, Secret),
        replay: Replay,
    ) -> TokenRequest<'a> {
        let mut headers = extra_headers(http);
        headers.push((
            "av-origin-client".into(),
            provider::API_VIDEO_ORIGIN_CLIENT.into(),
        ));
        TokenRequest {
            grant: if param.0 == "apiKey" {
                "api_key"
            } else {
                "refresh_token"
            },
            url,
            format: BodyFormat::Json,
            params: vec![param],
            basic: None,
            headers,
            replay,
            redact: Vec::new(),
            assertions: Vec::new(),
        }
    }
}

impl Fetch for ApiKey {
    fn fetch(
        &self,
        http: &Http,
        refresh_token: Option<&Secret>,
        deadline: Deadline,
    ) -> Result<Token> {
        if let Some(rt) = refresh_token {
            let req = self.request(
                http,
                &self.refresh_url,
                ("refreshToken", rt.clone()),
                Replay::Rotating,
            );
            match http.token(&req, deadline) {
                Ok(token) => return Ok(token),
                // The refresh token is dead (rotated away or expired); the key is not.
                Err(e) if is_refusal(&e) => {}
                // Anything else is transient: the refresh token is kept for next time.
                Err(e) => return Err(e),
            }
        }
        let req = self.request(
            http,
            &self.api_key_url,
            ("apiKey", self.api_key.clone()),
            Replay::Safe,
        );
        http.token(&req, deadline)
    }

    fn endpoints(&self) -> Vec<&str> {
        vec![&self.api_key_url, &self.refresh_url]
    }

    fn initial_refresh_token(&self) -> Option<Secret> {
        self.refresh_token.clone()
    }

    fn store_key(&self, user: Option<&str>) -> Option<StoreKey> {
        let key = format!("key-{}", StoreKey::secret_tag(&self.api_key));
        Some(StoreKey::new("api_key", &self.base_url, &key, user, &[]))
    }

    fn without_store(&self) -> WithoutStore {
        WithoutStore::OwnCredential
    }
}

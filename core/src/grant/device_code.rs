//! The device authorization grant (RFC 8628): the configuration and its two requests.
//! [`DeviceFlow`](crate::DeviceFlow) runs it.

use std::time::Duration;

use serde::Deserialize;

use super::refresh::RefreshToken;
use super::{add_resources, extra_headers, AuthMethod, ClientAuth, MtlsAliases};
use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::http::{BodyFormat, Http, Replay, TokenRequest};
use crate::secret::Secret;
use crate::token::Token;

/// The grant type of a device access token request.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Configuration of a device authorization client: a device without a browser (a CLI,
/// a TV) shows the user a code to enter elsewhere.
#[derive(Debug, Clone)]
pub struct DeviceCode {
    device_url: String,
    token_url: String,
    client: ClientAuth,
    scopes: Vec<String>,
    resources: Vec<String>,
    revocation_url: Option<String>,
    mtls: MtlsAliases,
}

/// The device authorization response (RFC 8628 §3.2).
#[derive(Deserialize)]
pub(crate) struct Started {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

impl Drop for Started {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.device_code);
    }
}

impl DeviceCode {
    /// A client at any server (`client_secret` empty: a public client, which sends its
    /// id in the body).
    pub fn new(
        device_authorization_url: impl Into<String>,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        DeviceCode {
            device_url: device_authorization_url.into(),
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

    /// A client at the endpoints an issuer's metadata names.
    pub fn from_metadata(
        metadata: &crate::discovery::Metadata,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Result<Self> {
        let mut config = Self::new(
            metadata.require_device_authorization_endpoint()?,
            metadata.require_token_endpoint()?,
            client_id,
            client_secret,
        );
        config.revocation_url = metadata.revocation_endpoint.clone();
        config.mtls = MtlsAliases::from_metadata(metadata);
        Ok(config)
    }

    super::oauth_builders!();
    super::scopes_builder!();

    /// Checks the client against the flow's options: the mutual-TLS methods need a
    /// client certificate.
    pub(crate) fn check_certificate(&self, options: &crate::Options) -> Result<()> {
        self.client.check_certificate(options)
    }

    /// The endpoints (checked when a flow is made) after checking the client.
    pub(crate) fn endpoints(&self) -> Result<Vec<&str>> {
        self.client.check()?;
        Ok([self.device_url.as_str(), self.token_url.as_str()]
            .into_iter()
            .chain(self.revocation_url.as_deref())
            .chain(self.mtls.urls())
            .collect())
    }

    /// Asks for a device code and a user code.
    pub(crate) fn start(&self, http: &Http, deadline: Deadline) -> Result<Started> {
        let mut req = TokenRequest {
            grant: "device_authorization",
            url: self.mtls.route(&self.device_url, http),
            format: BodyFormat::Form,
            params: Vec::new(),
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
        let response = http.post(&req, deadline)?;
        started(http, &req, response.status, &response.body)
    }

    /// One poll of the token endpoint (never resent: the loop decides).
    pub(crate) fn poll(
        &self,
        http: &Http,
        device_code: &Secret,
        deadline: Deadline,
    ) -> Result<Token> {
        let mut req = TokenRequest {
            grant: "device_code",
            url: self.mtls.route(&self.token_url, http),
            format: BodyFormat::Form,
            params: vec![
                ("grant_type", Secret::new(GRANT_TYPE)),
                ("device_code", device_code.clone()),
            ],
            basic: None,
            headers: extra_headers(http),
            replay: Replay::Never,
            redact: Vec::new(),
            assertions: Vec::new(),
        };
        self.client.apply(&mut req, deadline)?;
        http.token(&req, deadline)
    }

    /// The grant that goes on from the token the device flow gave.
    pub(crate) fn refresh_grant(&self, token: Token) -> RefreshToken {
        RefreshToken::continuing(
            &self.token_url,
            &self.client,
            BodyFormat::Form,
            &self.resources,
            self.revocation_url.as_ref(),
            &self.mtls,
            token,
        )
    }
}

/// The device authorization response (RFC 8628 §3.2) in an answer to `req`: the codes
/// when it is one, else the error it carries — whatever the status, without the
/// request's credentials (a server may echo them in any answer).
pub(crate) fn started(
    http: &Http,
    req: &TokenRequest<'_>,
    status: u16,
    body: &[u8],
) -> Result<Started> {
    let read = || {
        if status != 200 {
            return Err(crate::error::from_endpoint_response(
                "device authorization endpoint",
                &crate::http::host_of(req.url),
                status,
                None,
                body,
            ));
        }
        let started: Started = serde_json::from_slice(body).map_err(|e| {
            Error::invalid(
                200,
                format!(
                    "not a device authorization response: it {}",
                    crate::error::json_error(&e)
                ),
                body,
            )
        })?;
        if started.device_code.is_empty() || started.user_code.is_empty() {
            return Err(Error::invalid(200, "empty device or user code", b""));
        }
        http.check_url(&started.verification_uri)?;
        Ok(started)
    };
    read().map_err(|e| req.redacted(e))
}

/// The default polling interval (RFC 8628 §3.2).
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Added to the interval on each `slow_down` (RFC 8628 §3.5).
pub(crate) const SLOW_DOWN: Duration = Duration::from_secs(5);

//! Authorization server metadata (RFC 8414) and OpenID Connect Discovery: the endpoints
//! of an issuer, found from its URL.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::http::Http;
use crate::options::Options;

/// What an authorization server says about itself. Field names are RFC 8414's.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadata {
    /// The issuer identifier; equal to the URL it was discovered from.
    pub issuer: String,
    /// Where users are sent to sign in.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where tokens are requested.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Where devices start the device authorization grant (RFC 8628).
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// Where tokens are revoked (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// Where tokens are introspected (RFC 7662).
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// The OpenID Connect UserInfo endpoint.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// The server's public keys.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Scopes the server supports.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Grant types the server supports.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// Client authentication methods at the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// PKCE methods the server supports.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Whether authorization responses carry `iss` (RFC 9207).
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// Endpoints to use instead of the ones above when the client presents a
    /// certificate (RFC 8705 §5), by the name of the endpoint they stand for
    /// (`token_endpoint`, `revocation_endpoint`, …). Entries that are not strings are
    /// left out.
    #[serde(default, deserialize_with = "string_map")]
    pub mtls_endpoint_aliases: BTreeMap<String, String>,
    /// Whether the server binds access tokens to the client certificate (RFC 8705 §3).
    #[serde(default)]
    pub tls_client_certificate_bound_access_tokens: bool,
}

/// A JSON object's string members (others left out); anything but an object is none.
fn string_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    })
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("issuer", &self.issuer)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .field(
                "device_authorization_endpoint",
                &self.device_authorization_endpoint,
            )
            .field("revocation_endpoint", &self.revocation_endpoint)
            .field("mtls_endpoint_aliases", &self.mtls_endpoint_aliases)
            .finish_non_exhaustive()
    }
}

/// The two well-known locations for an issuer: RFC 8414's (the well-known part inserted
/// before the issuer's path) and OpenID Connect Discovery's (appended to it).
fn locations(issuer: &str) -> Result<[String; 2]> {
    let url =
        url::Url::parse(issuer).map_err(|e| Error::config(format!("invalid issuer URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(
            "an issuer URL has no query or fragment (RFC 8414 §2)",
        ));
    }
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    Ok([
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ])
}

impl Metadata {
    /// Fetches the metadata of `issuer` (RFC 8414's location first, then OpenID Connect
    /// Discovery's), within [`Options::timeout`]. The `issuer` in the document must equal
    /// the one asked for (mix-up defence), and every endpoint must pass the same HTTPS
    /// rule as any other URL (plain HTTP only on loopback).
    pub fn discover(issuer: &str, options: &Options) -> Result<Metadata> {
        let http = Http::new(Arc::new(options.clone()))?;
        Self::discover_with(&http, issuer)
    }

    pub(crate) fn discover_with(http: &Http, issuer: &str) -> Result<Metadata> {
        http.check_url(issuer)?;
        let deadline = Deadline::after(http.options().timeout);
        let mut last = None;
        for url in locations(issuer)? {
            let response = match http.get_json(&url, deadline) {
                Ok(r) => r,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if response.status == 404 {
                last = Some(Error::invalid(404, "no metadata at this location", b""));
                continue;
            }
            if response.status != 200 {
                return Err(crate::error::from_response(
                    response.status,
                    None,
                    &response.body,
                ));
            }
            return Self::from_document(http, issuer, &response.body);
        }
        Err(last.unwrap_or_else(|| Error::invalid(404, "no metadata found", b"")))
    }

    /// The metadata in a 200 answer's `body`, checked against `issuer`.
    pub(crate) fn from_document(http: &Http, issuer: &str, body: &[u8]) -> Result<Metadata> {
        let metadata: Metadata = serde_json::from_slice(body).map_err(|e| {
            let why = crate::error::json_error(&e);
            Error::invalid(200, format!("the metadata {why}"), body)
        })?;
        metadata.check(http, issuer)?;
        Ok(metadata)
    }

    fn check(&self, http: &Http, issuer: &str) -> Result<()> {
        if self.issuer != issuer {
            return Err(Error::IssuerMismatch {
                message: format!(
                    "the metadata names issuer {:?}, not {:?}",
                    crate::error::scrub(&self.issuer),
                    issuer
                ),
            });
        }
        for url in [
            &self.authorization_endpoint,
            &self.token_endpoint,
            &self.device_authorization_endpoint,
            &self.revocation_endpoint,
        ]
        .into_iter()
        .flatten()
        {
            http.check_url(url)?;
        }
        Ok(())
    }

    /// The mTLS alias (RFC 8705 §5) of the endpoint named `name` (`token_endpoint`,
    /// `revocation_endpoint`, `device_authorization_endpoint`, …), if the server gives
    /// one.
    pub fn mtls_alias(&self, name: &str) -> Option<&str> {
        self.mtls_endpoint_aliases.get(name).map(String::as_str)
    }

    /// The token endpoint, or a [`Config`](crate::ErrorKind::Config) error naming what
    /// is missing.
    pub fn require_token_endpoint(&self) -> Result<&str> {
        self.token_endpoint
            .as_deref()
            .ok_or_else(|| Error::config("the issuer's metadata has no token_endpoint"))
    }

    /// The authorization endpoint, or a [`Config`](crate::ErrorKind::Config) error.
    pub fn require_authorization_endpoint(&self) -> Result<&str> {
        self.authorization_endpoint
            .as_deref()
            .ok_or_else(|| Error::config("the issuer's metadata has no authorization_endpoint"))
    }

    /// The device authorization endpoint, or a [`Config`](crate::ErrorKind::Config) error.
    pub fn require_device_authorization_endpoint(&self) -> Result<&str> {
        self.device_authorization_endpoint
            .as_deref()
            .ok_or_else(|| {
                Error::config("the issuer's metadata has no device_authorization_endpoint")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_locations_follow_rfc_8414_and_oidc() {
        assert_eq!(
            locations("https://id.example.com").unwrap(),
            [
                "https://id.example.com/.well-known/oauth-authorization-server",
                "https://id.example.com/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            locations("https://id.example.com/tenant/1/").unwrap(),
            [
                "https://id.example.com/.well-known/oauth-authorization-server/tenant/1",
                "https://id.example.com/tenant/1/.well-known/openid-configuration"
            ]
        );
        assert!(locations("https://id.example.com/?x=1").is_err());
    }
}

//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Connect Core §9): the
//! client proves itself with a short-lived JWT signed by its private key.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::random;
use crate::secret::Secret;

/// How long a client assertion is valid.
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// A signature algorithm for client assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// From its JOSE name (`RS256`, `ES256`, `EdDSA`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            "EdDSA" => Ok(Self::EdDsa),
            other => Err(Error::config(format!(
                "unsupported signing algorithm {other:?} (RS256, ES256 or EdDSA)"
            ))),
        }
    }

    /// Its JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    fn jose(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }

    fn key(self, pem: &[u8]) -> Option<EncodingKey> {
        match self {
            Self::Rs256 => EncodingKey::from_rsa_pem(pem),
            Self::Es256 => EncodingKey::from_ec_pem(pem),
            Self::EdDsa => EncodingKey::from_ed_pem(pem),
        }
        .ok()
    }
}

/// A client's private key for `private_key_jwt`. Its `Debug` shows the algorithm and key
/// id only.
#[derive(Clone)]
pub struct PrivateKey {
    key: EncodingKey,
    algorithm: SigningAlgorithm,
    key_id: Option<String>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

impl PrivateKey {
    /// A key from PEM (PKCS#8, or PKCS#1 for RSA). With `algorithm` `None`, the key's own
    /// type decides (RSA → RS256, P-256 → ES256, Ed25519 → EdDSA). A key that cannot sign
    /// with the algorithm is a [`Config`](crate::ErrorKind::Config) error, now.
    pub fn from_pem(pem: &[u8], algorithm: Option<SigningAlgorithm>) -> Result<Self> {
        let candidates = match algorithm {
            Some(a) => vec![a],
            None => vec![
                SigningAlgorithm::Es256,
                SigningAlgorithm::EdDsa,
                SigningAlgorithm::Rs256,
            ],
        };
        for algorithm in candidates {
            let Some(key) = algorithm.key(pem) else {
                continue;
            };
            let candidate = PrivateKey {
                key,
                algorithm,
                key_id: None,
            };
            // Parsing alone accepts some keys of another type: one signature proves it.
            if candidate
                .assertion("probe", "https://probe.invalid")
                .is_ok()
            {
                return Ok(candidate);
            }
        }
        Err(Error::config(match algorithm {
            Some(a) => format!("the private key cannot sign with {}", a.name()),
            None => "the private key is not an RSA, P-256 or Ed25519 key in PEM".to_owned(),
        }))
    }

    /// Names the key (`kid` in the assertion's header), as registered with the server.
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// A fresh client assertion for `client_id` at `audience`: `iss` = `sub` = the
    /// client id, a random `jti` (OS random source), `exp` 60 s after `iat`.
    pub(crate) fn assertion(&self, client_id: &str, audience: &str) -> Result<Secret> {
        self.sign(client_id, client_id, audience)
    }

    /// A fresh assertion (RFC 7523 §3) from `issuer` about `subject` for `audience`, with
    /// a random `jti` (OS random source) and `exp` 60 s after `iat`.
    pub(crate) fn sign(&self, issuer: &str, subject: &str, audience: &str) -> Result<Secret> {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            iss: issuer,
            sub: subject,
            aud: audience,
            jti: random::url_safe_string(16),
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        let mut header = Header::new(self.algorithm.jose());
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|_| Error::config("the assertion could not be signed"))
    }
}

//! The development provider's test issuer: a key pair made when the provider starts,
//! standing in for whoever issues workloads their identity (a Kubernetes cluster, a CI
//! system). Its JWTs are client assertions (RFC 7523 §2.2) and JWT bearer grants
//! (§2.1) the provider trusts; tests mint them and hand them to clients through a file
//! or a command, as the real issuers do. Verification here covers what a server must
//! check: signature, `iss`, `sub`, `aud`, `exp` and a single-use `jti`.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Longest lifetime a minted JWT may have (a day), and the furthest in the past an
/// already expired one may be minted.
pub(super) const MAX_TTL_SECS: i64 = 24 * 3600;

/// How many `jti`s are remembered at most; beyond, a new assertion is refused.
const MAX_REMEMBERED: usize = 100_000;

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What `POST /_control/test_issuer/mint` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Mint {
    /// The subject (for a client assertion: the client id).
    sub: String,
    /// The audience (the provider's issuer or token endpoint).
    aud: String,
    /// Seconds until it expires (negative: already expired). Default 300.
    #[serde(default = "default_ttl")]
    ttl_s: i64,
    /// Another issuer than the test issuer's own (for a provider that knows the test
    /// issuer's keys under another name, or for a refused one).
    #[serde(default)]
    iss: Option<String>,
    /// A `jti` of the caller's choosing (default: random), to replay one.
    #[serde(default)]
    jti: Option<String>,
    /// More claims.
    #[serde(default)]
    claims: Map<String, Value>,
}

fn default_ttl() -> i64 {
    300
}

/// The claims a verified assertion carries that the provider uses.
#[derive(Debug, Deserialize)]
pub(super) struct Verified {
    pub(super) iss: String,
    pub(super) sub: String,
    pub(super) jti: String,
    pub(super) exp: i64,
}

/// The test issuer: its key pair and name.
pub(super) struct TestIssuer {
    /// Its `iss`.
    id: String,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
}

impl TestIssuer {
    /// A fresh P-256 key pair; `id` is the issuer's name (`iss`).
    pub(super) fn new(id: String) -> Result<TestIssuer, String> {
        let pair = rcgen::KeyPair::generate().map_err(|e| format!("test issuer key: {e}"))?;
        let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())
            .map_err(|e| format!("test issuer key: {e}"))?;
        let point = pair.public_key_raw();
        if point.len() != 65 || point[0] != 4 {
            return Err("test issuer key: not an uncompressed P-256 point".into());
        }
        let (x, y) = (b64url(&point[1..33]), b64url(&point[33..]));
        let decoding =
            DecodingKey::from_ec_components(&x, &y).map_err(|e| format!("test issuer key: {e}"))?;
        let mut kid = [0u8; 8];
        getrandom::fill(&mut kid).map_err(|e| format!("test issuer key: {e}"))?;
        Ok(TestIssuer {
            id,
            kid: b64url(&kid),
            encoding,
            decoding,
            x,
            y,
        })
    }

    /// Its name (`iss` of what it mints).
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Its public keys as a JWK set (RFC 7517).
    pub(super) fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": self.x, "y": self.y,
            "kid": self.kid, "alg": "ES256", "use": "sig",
        }]})
    }

    /// A JWT signed now as `mint` asks.
    pub(super) fn mint(&self, mint: Mint) -> Result<String, String> {
        if mint.sub.is_empty() || mint.aud.is_empty() {
            return Err("sub and aud are required".into());
        }
        if !(-MAX_TTL_SECS..=MAX_TTL_SECS).contains(&mint.ttl_s) {
            return Err(format!(
                "ttl_s must be between -{MAX_TTL_SECS} and {MAX_TTL_SECS}"
            ));
        }
        let iat = now();
        let jti = match mint.jti {
            Some(jti) => jti,
            None => {
                let mut raw = [0u8; 16];
                getrandom::fill(&mut raw).map_err(|e| e.to_string())?;
                b64url(&raw)
            }
        };
        let mut claims = mint.claims;
        for (name, value) in [
            ("iss", json!(mint.iss.unwrap_or_else(|| self.id.clone()))),
            ("sub", json!(mint.sub)),
            ("aud", json!(mint.aud)),
            ("iat", json!(iat.min(iat + mint.ttl_s))),
            ("exp", json!(iat + mint.ttl_s)),
            ("jti", json!(jti)),
        ] {
            claims.insert(name.into(), value);
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// `jwt` if the test issuer signed it for one of `audiences`, it has not expired,
    /// and (when `subject` is some) it is about that subject. The `jti` is not checked
    /// here (see [`Seen`]).
    pub(super) fn verify(
        &self,
        jwt: &str,
        audiences: &[String],
        subject: Option<&str>,
    ) -> Result<Verified, String> {
        verify_with(
            &self.decoding,
            Algorithm::ES256,
            &self.id,
            jwt,
            audiences,
            subject,
        )
    }
}

/// Verifies `jwt` by `key` for `alg`, from `issuer`, for one of `audiences`, not
/// expired (no leeway), about `subject` when given.
fn verify_with(
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &str,
    jwt: &str,
    audiences: &[String],
    subject: Option<&str>,
) -> Result<Verified, String> {
    let mut validation = Validation::new(alg);
    validation.leeway = 0;
    validation.set_issuer(&[issuer]);
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    if let Some(sub) = subject {
        validation.sub = Some(sub.to_owned());
    }
    let data = jsonwebtoken::decode::<Value>(jwt, key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => "the assertion has expired".to_owned(),
            K::InvalidIssuer => "the assertion's issuer is not trusted".to_owned(),
            K::InvalidAudience => "the assertion is not for this server".to_owned(),
            K::InvalidSubject => "the assertion is about another subject".to_owned(),
            K::InvalidSignature => "the assertion's signature does not verify".to_owned(),
            _ => format!("the assertion is invalid ({e})"),
        }
    })?;
    let mut claims = data.claims;
    if claims.get("jti").and_then(Value::as_str).is_none() {
        return Err("the assertion has no jti".into());
    }
    if let Some(exp) = claims.get("exp").and_then(Value::as_f64) {
        claims["exp"] = json!(exp as i64);
    }
    serde_json::from_value(claims).map_err(|e| format!("the assertion is invalid ({e})"))
}

/// The claims of a JWT, not verified (to find out who claims to have signed it).
fn unverified_claims(jwt: &str) -> Option<Map<String, Value>> {
    let payload = jwt.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Verifies a JWT bearer grant's assertion (RFC 7523 §3): the test issuer's, or signed
/// by the key `keys` names for its issuer (a public key in PEM; the header's `alg`
/// decides how it is read).
pub(super) fn verify_grant(
    issuer: &TestIssuer,
    keys: &BTreeMap<String, String>,
    jwt: &str,
    audiences: &[String],
) -> Result<Verified, String> {
    let iss = unverified_claims(jwt)
        .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| "the assertion is not a JWT with an issuer".to_owned())?;
    if iss == issuer.id {
        return issuer.verify(jwt, audiences, None);
    }
    let pem = keys
        .get(&iss)
        .ok_or_else(|| "the assertion's issuer is not trusted".to_owned())?;
    let alg = jsonwebtoken::decode_header(jwt)
        .map_err(|e| format!("the assertion is invalid ({e})"))?
        .alg;
    let key = match alg {
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem.as_bytes()),
        other => {
            return Err(format!(
                "the assertion's algorithm {other:?} is not accepted"
            ))
        }
    }
    .map_err(|_| "the key configured for the assertion's issuer cannot verify it".to_owned())?;
    verify_with(&key, alg, &iss, jwt, audiences, None)
}

/// The `jti`s of assertions already accepted, until they expire: each is single use.
#[derive(Default)]
pub(super) struct Seen {
    jtis: HashMap<(String, String), i64>,
}

impl Seen {
    /// Takes `verified`'s `jti`, or says it was used before.
    pub(super) fn take(&mut self, verified: &Verified) -> Result<(), String> {
        let now = now();
        self.jtis.retain(|_, exp| *exp >= now);
        if self.jtis.len() >= MAX_REMEMBERED {
            return Err("too many assertions in flight".into());
        }
        let key = (verified.iss.clone(), verified.jti.clone());
        if self.jtis.contains_key(&key) {
            return Err("the assertion was already used (its jti is single use)".into());
        }
        self.jtis.insert(key, verified.exp);
        Ok(())
    }
}

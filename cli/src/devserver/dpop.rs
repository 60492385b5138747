//! DPoP (RFC 9449) as the development provider verifies it, on its own: a proof by
//! itself ([`check`]: header, key, signature, claims; RFC 9449 §4.3), and against what
//! the provider remembers ([`Dpop::admit`]: the nonce it demands, the proofs it has
//! seen). Key thumbprints are RFC 7638's, computed here from the proof's JWK.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The signature algorithms accepted, as a `WWW-Authenticate` `algs` value.
pub(super) const ALGS: &str = "ES256 EdDSA RS256";
/// How far a proof's `iat` may be from now, either way, in seconds.
pub(super) const IAT_WINDOW_SECS: i64 = 60;
/// How long a proof's `jti` is remembered: past this, its `iat` is out of the window.
const REMEMBER: Duration = Duration::from_secs(2 * IAT_WINDOW_SECS.unsigned_abs() + 1);
/// Most `jti`s remembered at once; past this, new proofs are refused (never a replay
/// accepted) until old ones are forgotten.
pub(super) const MAX_REMEMBERED: usize = 1_000_000;
/// Longest proof accepted, in bytes.
const MAX_PROOF_LEN: usize = 16 * 1024;
/// JWK members of private keys (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `ath`: base64url of the SHA-256 of an access token.
pub(super) fn ath(token: &str) -> String {
    b64url(&Sha256::digest(token.as_bytes()))
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 of its required members in
/// lexicographic order, without whitespace, base64url without padding.
pub(super) fn thumbprint(jwk: &Map<String, Value>) -> Result<String, String> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("the proof's jwk has no kty")?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        other => {
            return Err(format!(
                "the proof's jwk has kty {other}, not EC, OKP or RSA"
            ))
        }
    };
    let mut required = BTreeMap::new();
    for &m in members {
        let value = jwk
            .get(m)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the proof's jwk has no {m}"))?;
        required.insert(m, value);
    }
    let canonical = serde_json::to_string(&required).map_err(|e| e.to_string())?;
    Ok(b64url(&Sha256::digest(canonical.as_bytes())))
}

/// A proof whose header, key, signature and claims checked out.
pub(super) struct Proof {
    /// The thumbprint of its key.
    pub(super) jkt: String,
    /// A digest of its `jti`, as remembered against replays.
    jti: [u8; 16],
    /// Its `nonce`, if any.
    nonce: Option<String>,
    /// Its `ath`, if any.
    pub(super) ath: Option<String>,
}

/// Checks the `DPoP` header values of a request to `url` (scheme, host and path as the
/// provider sees it) with `method`, at `now_secs` (Unix time): exactly one proof, a JWS
/// typed `dpop+jwt`, signed (ES256, EdDSA or RS256) by the public key in its `jwk`, with
/// a string `jti`, `htm` the method, `htu` the URL (without query or fragment), `iat`
/// within [`IAT_WINDOW_SECS`]. Nonce, replay, `ath` and key binding are the caller's.
pub(super) fn check(
    headers: &[String],
    method: &str,
    url: &str,
    now_secs: i64,
) -> Result<Proof, String> {
    let [jwt] = headers else {
        return Err("exactly one DPoP header is allowed".into());
    };
    if jwt.len() > MAX_PROOF_LEN {
        return Err("the DPoP proof is too long".into());
    }
    let header = raw_header(jwt)?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err("the proof's typ is not dpop+jwt".into());
    }
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let (alg, kty, crv) = match alg_name {
        "ES256" => (Algorithm::ES256, "EC", Some("P-256")),
        "EdDSA" => (Algorithm::EdDSA, "OKP", Some("Ed25519")),
        "RS256" => (Algorithm::RS256, "RSA", None),
        other => {
            return Err(format!(
                "the proof's alg {other:?} is not accepted (only {ALGS})"
            ))
        }
    };
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or("the proof's header has no jwk")?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(format!(
            "the proof's jwk has the private member {m}: only a public key belongs there"
        ));
    }
    if jwk.get("kty").and_then(Value::as_str) != Some(kty)
        || crv.is_some_and(|crv| jwk.get("crv").and_then(Value::as_str) != Some(crv))
    {
        return Err(format!("the proof's jwk is not a key for {alg_name}"));
    }
    let jkt = thumbprint(jwk)?;
    let key = jsonwebtoken::decode_header(jwt)
        .ok()
        .and_then(|h| h.jwk)
        .and_then(|jwk| DecodingKey::from_jwk(&jwk).ok())
        .ok_or("the proof's jwk is not a usable public key")?;
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation)
        .map_err(|e| format!("the proof does not verify: {e}"))?
        .claims;
    let string = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = string("jti")
        .filter(|j| !j.is_empty())
        .ok_or("the proof has no jti")?;
    if string("htm") != Some(method) {
        return Err(format!("the proof's htm is not {method}"));
    }
    let htu = string("htu").ok_or("the proof has no htu")?;
    if !same_url(htu, url) {
        return Err("the proof's htu is not the URL of this request".into());
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .ok_or("the proof has no numeric iat")?;
    #[allow(clippy::cast_precision_loss)]
    let skew = (iat - now_secs as f64).abs();
    if !skew.is_finite() || skew > IAT_WINDOW_SECS as f64 {
        return Err(format!(
            "the proof's iat is more than {IAT_WINDOW_SECS} s from now"
        ));
    }
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&Sha256::digest(jti.as_bytes())[..16]);
    Ok(Proof {
        jkt,
        jti: digest,
        nonce: string("nonce").map(str::to_owned),
        ath: string("ath").map(str::to_owned),
    })
}

/// The JSON of a compact JWS's protected header.
fn raw_header(jwt: &str) -> Result<Map<String, Value>, String> {
    let not_jws = || "the DPoP proof is not a compact JWS".to_owned();
    let mut parts = jwt.split('.');
    let (Some(first), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_jws());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first)
        .map_err(|_| not_jws())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(not_jws()),
    }
}

/// Whether a proof's `htu` names the request's URL (RFC 9449 §4.3, with RFC 3986 §6.2
/// normalisation: scheme and host case, default port, dot segments). An `htu` with a
/// query or fragment is refused: RFC 9449 §4.2 has clients leave them out.
fn same_url(htu: &str, url: &str) -> bool {
    let (Ok(claimed), Ok(actual)) = (url::Url::parse(htu), url::Url::parse(url)) else {
        return false;
    };
    claimed.query().is_none()
        && claimed.fragment().is_none()
        && !htu.contains(['?', '#'])
        && claimed.scheme() == actual.scheme()
        && claimed.host_str() == actual.host_str()
        && claimed.port_or_known_default() == actual.port_or_known_default()
        && claimed.path() == actual.path()
        && claimed.username().is_empty()
        && claimed.password().is_none()
}

/// Where a proof is presented: the authorization server (token endpoints) or the
/// resource server (`/api/...`). Each has a nonce of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// The token endpoints.
    As,
    /// The protected resource.
    Rs,
}

/// Why [`Dpop::admit`] refused an otherwise good proof.
pub(super) enum Refusal {
    /// The nonce demanded is missing or not the current one.
    Nonce,
    /// Its `jti` was seen before.
    Replay,
    /// Too many proofs to remember: refused rather than risk a replay.
    Full,
}

struct Nonce {
    value: String,
    /// Proofs accepted with this value.
    accepted: u32,
    /// Due for replacement before the next proof is checked.
    stale: bool,
}

impl Nonce {
    fn fresh() -> Nonce {
        let mut buf = [0u8; 18];
        getrandom::fill(&mut buf).expect("OS random source");
        Nonce {
            value: b64url(&buf),
            accepted: 0,
            stale: false,
        }
    }
}

/// What the provider remembers of DPoP: the nonce of each origin and the recent proofs.
pub(super) struct Dpop {
    as_nonce: Nonce,
    rs_nonce: Nonce,
    seen: HashSet<[u8; 16]>,
    /// The remembered `jti`s, oldest first, with when to forget them.
    order: VecDeque<([u8; 16], Instant)>,
}

impl Default for Dpop {
    fn default() -> Self {
        Dpop {
            as_nonce: Nonce::fresh(),
            rs_nonce: Nonce::fresh(),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }
}

impl Dpop {
    fn slot(&mut self, origin: Origin) -> &mut Nonce {
        match origin {
            Origin::As => &mut self.as_nonce,
            Origin::Rs => &mut self.rs_nonce,
        }
    }

    /// The current nonce of an origin.
    pub(super) fn nonce(&self, origin: Origin) -> &str {
        match origin {
            Origin::As => &self.as_nonce.value,
            Origin::Rs => &self.rs_nonce.value,
        }
    }

    /// Replaces an origin's nonce by a fresh one now.
    pub(super) fn rotate(&mut self, origin: Origin) {
        *self.slot(origin) = Nonce::fresh();
    }

    /// The checks of a good proof against what the provider remembers: the current
    /// nonce, if `demand_nonce`, then no earlier proof with its `jti`. An accepted
    /// proof is remembered, and with `rotate_every` > 0 it counts towards its nonce's
    /// replacement: after that many, the nonce is replaced before the next proof is
    /// checked (so the answer to the last one still carries the nonce it used).
    pub(super) fn admit(
        &mut self,
        proof: &Proof,
        origin: Origin,
        demand_nonce: bool,
        rotate_every: u32,
        now: Instant,
    ) -> Result<(), Refusal> {
        let slot = self.slot(origin);
        if slot.stale {
            *slot = Nonce::fresh();
        }
        if demand_nonce && proof.nonce.as_deref() != Some(slot.value.as_str()) {
            return Err(Refusal::Nonce);
        }
        while let Some(&(jti, until)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&jti);
        }
        if self.seen.contains(&proof.jti) {
            return Err(Refusal::Replay);
        }
        if self.seen.len() >= MAX_REMEMBERED {
            return Err(Refusal::Full);
        }
        self.seen.insert(proof.jti);
        self.order.push_back((proof.jti, now + REMEMBER));
        let slot = self.slot(origin);
        if demand_nonce && rotate_every > 0 {
            slot.accepted += 1;
            if slot.accepted >= rotate_every {
                slot.stale = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thumbprint_of_the_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_of_the_rfc_9449_example() {
        // RFC 9449 §4.1 (the proof's key) and §6.1 (its jkt); members in any order.
        let jwk = json!({
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "kty": "EC",
            "crv": "P-256"
        });
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()).unwrap(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn htu_is_compared_after_normalisation() {
        let url = "http://127.0.0.1:8080/oauth2/token";
        assert!(same_url("HTTP://127.0.0.1:8080/oauth2/token", url));
        assert!(same_url(
            "http://localhost/a/./b",
            "http://LOCALHOST:80/a/b"
        ));
        assert!(!same_url("http://127.0.0.1:8081/oauth2/token", url));
        assert!(!same_url("https://127.0.0.1:8080/oauth2/token", url));
        assert!(!same_url("http://127.0.0.1:8080/oauth2/token?x=1", url));
        assert!(!same_url("http://127.0.0.1:8080/oauth2/token#f", url));
        assert!(!same_url("http://127.0.0.1:8080/oauth2/tokens", url));
        assert!(!same_url("not a url", url));
    }
}

//! DPoP (RFC 9449): a key the client holds, proofs signed with it, and the nonces
//! servers hand out.
//!
//! A DPoP-bound token is useless without the key: every request that carries it also
//! carries a fresh proof (a JWT with `typ: dpop+jwt`, the public key in its header, the
//! request's method and URL, a random `jti`, and the hash of the token in `ath`). The
//! key travels with the tokens it binds: a token remembers its key, and a shared store
//! keeps the key with the session, so that another process (or this one after a
//! restart) can use the session's tokens, and renew its refresh token, which the
//! provider bound to that key for a public client.
//!
//! Keys are held by RustCrypto's signing keys, which wipe their secrets when dropped;
//! the compact JWS (two base64url JSON parts and a signature) is assembled here, and
//! checked in the tests against an independent JOSE implementation (`jsonwebtoken`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::{Secret, WipedJson};

/// The error of a DPoP-bound session whose key cannot be read.
pub(crate) fn lost_key() -> Error {
    Error::ReauthenticationRequired {
        cause: Box::new(Error::config(
            "the DPoP key kept with the stored session could not be read, and its tokens work \
             with that key only; sign in again",
        )),
    }
}

/// The JWS algorithm a DPoP key signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DpopAlgorithm {
    /// ECDSA with P-256 and SHA-256 (the default: small keys, fast proofs).
    #[default]
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and a 2048-bit key (slow to generate).
    Rs256,
}

impl DpopAlgorithm {
    /// From its JOSE name (`ES256`, `EdDSA`, `RS256`; case-insensitive).
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_uppercase().as_str() {
            "ES256" => Ok(Self::Es256),
            "EDDSA" | "ED25519" => Ok(Self::EdDsa),
            "RS256" => Ok(Self::Rs256),
            _ => Err(Error::config(format!(
                "unsupported DPoP algorithm {:?} (ES256, EdDSA or RS256)",
                crate::events::printable(name)
            ))),
        }
    }

    /// Its JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }
}

/// The private key, in the form that signs.
enum Material {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
    Rs256(Box<rsa::RsaPrivateKey>),
}

/// A DPoP key pair. Its `Debug` shows the algorithm and the public key's thumbprint,
/// never the private key, which is wiped from memory when the key is dropped.
pub struct DpopKey {
    material: Material,
    algorithm: DpopAlgorithm,
    /// The public JWK, as the proof header carries it.
    public_jwk: Value,
    /// RFC 7638 thumbprint of the public JWK (what a server binds tokens to, `jkt`).
    thumbprint: String,
    /// The proof header, encoded once (it is the same for every proof).
    header: String,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.algorithm)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// Largest PEM or JWK text read as a key.
const MAX_KEY_TEXT: usize = 16 * 1024;

fn bad_key(what: &str) -> Error {
    Error::config(format!("the DPoP key could not be read: {what}"))
}

fn b64_field(jwk: &Map<String, Value>, name: &str) -> Result<Zeroizing<Vec<u8>>> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| bad_key(&format!("the JWK has no \"{name}\"")))?;
    B64.decode(text.trim_end_matches('='))
        .map(Zeroizing::new)
        .map_err(|_| bad_key(&format!("the JWK's \"{name}\" is not base64url")))
}

impl DpopKey {
    /// A new key from the operating system's random source.
    pub fn generate(algorithm: DpopAlgorithm) -> Result<DpopKey> {
        let mut rng = rand_core::OsRng;
        let material = match algorithm {
            DpopAlgorithm::Es256 => Material::Es256(p256::ecdsa::SigningKey::random(&mut rng)),
            DpopAlgorithm::EdDsa => Material::EdDsa(ed25519_dalek::SigningKey::generate(&mut rng)),
            DpopAlgorithm::Rs256 => Material::Rs256(Box::new(
                rsa::RsaPrivateKey::new(&mut rng, 2048)
                    .map_err(|_| Error::config("an RSA key could not be generated"))?,
            )),
        };
        Ok(DpopKey::from_material(DpopKey::checked(material)?))
    }

    /// A key from PEM text: PKCS#8 (`PRIVATE KEY`: P-256, Ed25519 or RSA), SEC1
    /// (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<DpopKey> {
        use p256::pkcs8::DecodePrivateKey;
        use rsa::pkcs1::DecodeRsaPrivateKey;
        if pem.len() > MAX_KEY_TEXT {
            return Err(bad_key("the PEM text is too long"));
        }
        let pem = pem.trim();
        let material = if pem.starts_with("-----BEGIN EC PRIVATE KEY-----") {
            p256::SecretKey::from_sec1_pem(pem)
                .map(|k| Material::Es256(k.into()))
                .map_err(|_| bad_key("not a P-256 key in SEC1 PEM"))?
        } else if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                .map(|k| Material::Rs256(Box::new(k)))
                .map_err(|_| bad_key("not an RSA key in PKCS#1 PEM"))?
        } else if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
            if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
                Material::Es256(k)
            } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                Material::EdDsa(k)
            } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
                Material::Rs256(Box::new(k))
            } else {
                return Err(bad_key(
                    "the PKCS#8 key is not P-256, Ed25519 or RSA (or is encrypted)",
                ));
            }
        } else {
            return Err(bad_key(
                "expected a PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)",
            ));
        };
        Ok(DpopKey::from_material(DpopKey::checked(material)?))
    }

    /// A key from a private JWK (JSON text): `EC` with `crv` `P-256`, `OKP` with `crv`
    /// `Ed25519`, or `RSA` (with its primes). The public members must match the private
    /// ones.
    pub fn from_jwk(jwk: &str) -> Result<DpopKey> {
        if jwk.len() > MAX_KEY_TEXT {
            return Err(bad_key("the JWK text is too long"));
        }
        // Wiped when dropped: it holds the private members.
        let parsed =
            WipedJson(serde_json::from_str(jwk).map_err(|_| bad_key("the JWK is not JSON"))?);
        let Some(map) = parsed.0.as_object() else {
            return Err(bad_key("the JWK is not a JSON object"));
        };
        let text = |name: &str| map.get(name).and_then(Value::as_str).unwrap_or("");
        if map.get("d").is_none() {
            return Err(bad_key("the JWK has no private part (\"d\")"));
        }
        let material = match (text("kty"), text("crv")) {
            ("EC", "P-256") => {
                // From the raw members (a JWK's others — `kid`, `use`, `alg` — say
                // nothing about the key): the scalar, and the point it must make.
                let d = b64_field(map, "d")?;
                let key = p256::SecretKey::from_slice(d.as_slice())
                    .map_err(|_| bad_key("the P-256 JWK's \"d\" is not a valid scalar"))?;
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let point = key.public_key().to_encoded_point(false);
                let (x, y) = (b64_field(map, "x")?, b64_field(map, "y")?);
                if point.x().map(|c| c.as_slice()) != Some(x.as_slice())
                    || point.y().map(|c| c.as_slice()) != Some(y.as_slice())
                {
                    return Err(bad_key(
                        "the P-256 JWK's \"x\" and \"y\" do not match \"d\"",
                    ));
                }
                Material::Es256(key.into())
            }
            ("OKP", "Ed25519") => {
                let d = b64_field(map, "d")?;
                let seed: &[u8; 32] = d
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad_key("the Ed25519 JWK's \"d\" is not 32 bytes"))?;
                let key = ed25519_dalek::SigningKey::from_bytes(seed);
                if *b64_field(map, "x")? != key.verifying_key().to_bytes() {
                    return Err(bad_key("the Ed25519 JWK's \"x\" does not match \"d\""));
                }
                Material::EdDsa(key)
            }
            ("RSA", _) => {
                let big = |name: &str| {
                    b64_field(map, name).map(|b| rsa::BigUint::from_bytes_be(b.as_slice()))
                };
                // The primes when given; from n, e and d alone they are recovered.
                let primes = match (map.get("p"), map.get("q")) {
                    (Some(_), Some(_)) => vec![big("p")?, big("q")?],
                    _ => Vec::new(),
                };
                let key =
                    rsa::RsaPrivateKey::from_components(big("n")?, big("e")?, big("d")?, primes)
                        .map_err(|_| bad_key("not a valid RSA JWK"))?;
                key.validate()
                    .map_err(|_| bad_key("the RSA JWK's members do not agree"))?;
                Material::Rs256(Box::new(key))
            }
            _ => {
                return Err(bad_key(
                    "the JWK must be EC P-256, OKP Ed25519 or RSA (kty and crv)",
                ))
            }
        };
        Ok(DpopKey::from_material(DpopKey::checked(material)?))
    }

    /// Refuses RSA keys outside 2048–4096 bits (weak, or slow to sign with).
    fn checked(material: Material) -> Result<Material> {
        use rsa::traits::PublicKeyParts;
        if let Material::Rs256(k) = &material {
            let bits = k.n().bits();
            if !(2048..=4096).contains(&bits) {
                return Err(bad_key(&format!(
                    "an RSA key of {bits} bits (2048 to 4096 are accepted)"
                )));
            }
        }
        Ok(material)
    }

    fn from_material(material: Material) -> DpopKey {
        use rsa::traits::PublicKeyParts;
        let (algorithm, public_jwk) = match &material {
            Material::Es256(k) => {
                let point = k.verifying_key().to_encoded_point(false);
                let x = point.x().map(|x| B64.encode(x)).unwrap_or_default();
                let y = point.y().map(|y| B64.encode(y)).unwrap_or_default();
                (
                    DpopAlgorithm::Es256,
                    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                )
            }
            Material::EdDsa(k) => (
                DpopAlgorithm::EdDsa,
                json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(k.verifying_key().to_bytes())}),
            ),
            Material::Rs256(k) => (
                DpopAlgorithm::Rs256,
                json!({"kty": "RSA", "n": B64.encode(k.n().to_bytes_be()), "e": B64.encode(k.e().to_bytes_be())}),
            ),
        };
        let thumbprint = jwk_thumbprint(&public_jwk);
        let header = json!({"typ": "dpop+jwt", "alg": algorithm.name(), "jwk": public_jwk});
        let header = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
        DpopKey {
            material,
            algorithm,
            public_jwk,
            thumbprint,
            header,
        }
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> DpopAlgorithm {
        self.algorithm
    }

    /// The public key as a JWK (JSON text), as every proof's header carries it.
    pub fn public_jwk(&self) -> String {
        self.public_jwk.to_string()
    }

    /// The RFC 7638 thumbprint of the public key (base64url SHA-256): the `jkt` a
    /// server binds tokens to, and the `dpop_jkt` of an authorization request.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The private key as a JWK (JSON text), for keeping it with a session. A secret.
    pub fn to_jwk(&self) -> Secret {
        use rsa::traits::PrivateKeyParts;
        let mut jwk = self.public_jwk.clone();
        let private: Vec<(&str, Zeroizing<Vec<u8>>)> = match &self.material {
            Material::Es256(k) => vec![("d", Zeroizing::new(k.to_bytes().to_vec()))],
            Material::EdDsa(k) => vec![("d", Zeroizing::new(k.to_bytes().to_vec()))],
            Material::Rs256(k) => {
                let mut parts = vec![("d", Zeroizing::new(k.d().to_bytes_be()))];
                if let [p, q] = k.primes() {
                    parts.push(("p", Zeroizing::new(p.to_bytes_be())));
                    parts.push(("q", Zeroizing::new(q.to_bytes_be())));
                    // RFC 7518 §6.3.2: with the primes, their CRT values too.
                    if let (Some(dp), Some(dq), Some(qi)) = (k.dp(), k.dq(), k.qinv()) {
                        parts.push(("dp", Zeroizing::new(dp.to_bytes_be())));
                        parts.push(("dq", Zeroizing::new(dq.to_bytes_be())));
                        if let Some(qi) = qi.to_biguint() {
                            parts.push(("qi", Zeroizing::new(qi.to_bytes_be())));
                        }
                    }
                }
                parts
            }
        };
        if let Some(map) = jwk.as_object_mut() {
            for (name, bytes) in &private {
                map.insert(
                    (*name).to_owned(),
                    Value::String(B64.encode(bytes.as_slice())),
                );
            }
        }
        let jwk = WipedJson(jwk);
        // Written into a buffer sized up front, so that no reallocation leaves a copy.
        let size = private.iter().map(|(_, b)| b.len() * 2 + 16).sum::<usize>()
            + self.public_jwk.to_string().len()
            + 64;
        let mut buf = Zeroizing::new(Vec::with_capacity(size));
        serde_json::to_writer(&mut *buf, &jwk.0).expect("a JSON value serialises");
        Secret::new(String::from_utf8(std::mem::take(&mut *buf)).unwrap_or_default())
    }

    /// A proof for one request: `method` and `url` as sent (the URL's query and
    /// fragment are left out, as RFC 9449 §4.2 says), `access_token` for a resource
    /// request (its hash goes in `ath`), `nonce` when the server gave one.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<Secret> {
        // RFC 9110 §9.1: a method is a token.
        let method_ok = !method.is_empty()
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !method_ok {
            return Err(Error::config("the HTTP method is not a valid method name"));
        }
        let htu = htu(url)?;
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut claims = Map::new();
        claims.insert("jti".into(), crate::random::url_safe_string(16).into());
        claims.insert("htm".into(), method.to_ascii_uppercase().into());
        claims.insert("htu".into(), htu.into());
        claims.insert("iat".into(), iat.into());
        if let Some(token) = access_token {
            claims.insert("ath".into(), access_token_hash(token).into());
        }
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), nonce.into());
        }
        let claims = B64.encode(serde_json::to_vec(&Value::Object(claims)).unwrap_or_default());
        let mut jws = String::with_capacity(self.header.len() + claims.len() + 400);
        jws.push_str(&self.header);
        jws.push('.');
        jws.push_str(&claims);
        let signature = self.sign(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&B64.encode(signature));
        Ok(Secret::new(jws))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match &self.material {
            Material::Es256(k) => {
                use p256::ecdsa::signature::Signer;
                let signature: p256::ecdsa::Signature = k.sign(message);
                Ok(signature.to_bytes().to_vec())
            }
            Material::EdDsa(k) => {
                use ed25519_dalek::Signer;
                Ok(k.sign(message).to_bytes().to_vec())
            }
            Material::Rs256(k) => {
                use rsa::signature::{RandomizedSigner, SignatureEncoding};
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new((**k).clone());
                signer
                    .try_sign_with_rng(&mut rand_core::OsRng, message)
                    .map(|s| s.to_vec())
                    .map_err(|_| Error::config("the DPoP proof could not be signed"))
            }
        }
    }
}

/// The RFC 7638 thumbprint of a public JWK: base64url SHA-256 of its required members
/// in lexicographic order, without whitespace.
fn jwk_thumbprint(jwk: &Value) -> String {
    let members: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => &["e", "kty", "n"],
    };
    // serde_json's map keeps keys sorted; the members above are already in that order.
    let canonical: serde_json::Map<String, Value> = members
        .iter()
        .map(|m| ((*m).to_owned(), jwk.get(*m).cloned().unwrap_or(Value::Null)))
        .collect();
    B64.encode(Sha256::digest(
        serde_json::to_vec(&canonical).unwrap_or_default(),
    ))
}

/// `ath`: base64url SHA-256 of the access token.
pub(crate) fn access_token_hash(access_token: &str) -> String {
    B64.encode(Sha256::digest(access_token.as_bytes()))
}

/// The `htu` of a request URL: scheme and host lowercase, the default port left out,
/// dot segments resolved, without query and fragment (RFC 9449 §4.3, RFC 3986 §6.2).
pub fn htu(url: &str) -> Result<String> {
    let mut parsed = url::Url::parse(url).map_err(|_| Error::config("the URL is not valid"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(Error::config("a DPoP proof needs an http or https URL"));
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok(parsed.into())
}

/// The origin a nonce belongs to: scheme, host and port.
pub(crate) fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization())
}

/// Longest nonce kept (RFC 9449 sets no limit; a header this long is no nonce).
const MAX_NONCE_LEN: usize = 4096;

/// Whether `nonce` is one a server may send in `DPoP-Nonce` (RFC 9449 §8.1: visible
/// ASCII but `"` and `\`; at most 4096 bytes here): what authcore keeps.
pub fn is_valid_nonce(nonce: &str) -> bool {
    valid_nonce(nonce.trim())
}

/// Whether `nonce` is a nonce RFC 9449 §8.1 allows (`1*NQCHAR`), of a sane length.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Most origins whose nonce is remembered; beyond, the oldest is forgotten (it costs
/// that origin one more round trip).
const MAX_NONCE_ORIGINS: usize = 256;

/// Which server a nonce comes from: an authorization server's token endpoint and a
/// resource server keep nonces of their own (RFC 9449 §8, §9), even at one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Server {
    /// A token endpoint.
    Authorization,
    /// An API.
    Resource,
}

/// The nonces servers gave, one per server and origin, each replaced by the next one a
/// response carries.
#[derive(Default)]
pub(crate) struct Nonces {
    by_origin: Mutex<NonceMap>,
}

/// Each server's nonce with the serial of its last update, and the next serial.
type NonceMap = (HashMap<(Server, String), (u64, String)>, u64);

impl Nonces {
    /// The current nonce of `server` at `url`'s origin, if it gave one.
    pub(crate) fn get(&self, server: Server, url: &str) -> Option<String> {
        let origin = origin(url)?;
        self.by_origin
            .lock()
            .0
            .get(&(server, origin))
            .map(|(_, n)| n.clone())
    }

    /// Remembers the nonce a response from `url` carried (ignored if malformed).
    pub(crate) fn remember(&self, server: Server, url: &str, nonce: &str) {
        let nonce = nonce.trim();
        if !valid_nonce(nonce) {
            crate::events::event!(warn, "dpop.nonce_ignored", length = nonce.len();
                "a server's DPoP-Nonce was not kept: empty, longer than {MAX_NONCE_LEN} bytes, or with characters RFC 9449 does not allow");
            return;
        }
        let Some(origin) = origin(url) else { return };
        let origin = (server, origin);
        let mut guard = self.by_origin.lock();
        let (map, serial) = &mut *guard;
        *serial += 1;
        if map.len() >= MAX_NONCE_ORIGINS && !map.contains_key(&origin) {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (s, _))| *s)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(origin, (*serial, nonce.to_owned()));
    }
}

/// DPoP for a client: the key new tokens are bound to, whether a Bearer answer is
/// accepted, and the nonces servers gave (shared by the clones of these options, so
/// that a sign-in flow and the client it hands out pay for a nonce once).
///
/// ```
/// let dpop = authcore::Dpop::generate()?;
/// let options = authcore::Options::default().dpop(dpop);
/// # let _ = options;
/// # Ok::<(), authcore::Error>(())
/// ```
#[derive(Clone)]
pub struct Dpop {
    key: Arc<DpopKey>,
    allow_bearer: bool,
    nonces: Arc<Nonces>,
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("key", &self.key)
            .field("allow_bearer", &self.allow_bearer)
            .finish_non_exhaustive()
    }
}

impl Dpop {
    /// DPoP with this key.
    pub fn new(key: DpopKey) -> Dpop {
        Dpop {
            key: Arc::new(key),
            allow_bearer: false,
            nonces: Arc::default(),
        }
    }

    /// DPoP with a new ES256 key from the OS random source.
    pub fn generate() -> Result<Dpop> {
        DpopKey::generate(DpopAlgorithm::Es256).map(Dpop::new)
    }

    /// Whether a `Bearer` token answered to a DPoP token request is accepted (default:
    /// no, it is an [`InvalidResponse`](crate::ErrorKind::InvalidResponse) error: a
    /// server that ignores DPoP would otherwise turn sender-constrained tokens into
    /// bearer tokens without anyone noticing).
    pub fn allow_bearer_downgrade(mut self, allow: bool) -> Dpop {
        self.allow_bearer = allow;
        self
    }

    /// The key.
    pub fn key(&self) -> &Arc<DpopKey> {
        &self.key
    }

    /// Whether a Bearer answer to a DPoP token request is accepted
    /// ([`allow_bearer_downgrade`](Self::allow_bearer_downgrade)).
    pub fn allows_bearer(&self) -> bool {
        self.allow_bearer
    }

    /// The nonces servers gave.
    pub(crate) fn nonces(&self) -> &Arc<Nonces> {
        &self.nonces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, jwk::Jwk, Algorithm, DecodingKey, Validation};

    fn verify(key: &DpopKey, proof: &str) -> Value {
        let header = decode_header(proof).expect("a JWS header");
        assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
        let jwk: Jwk = header.jwk.clone().expect("a jwk in the header");
        let decoding = DecodingKey::from_jwk(&jwk).expect("a usable public jwk");
        let mut validation = Validation::new(match key.algorithm() {
            DpopAlgorithm::Es256 => Algorithm::ES256,
            DpopAlgorithm::EdDsa => Algorithm::EdDSA,
            DpopAlgorithm::Rs256 => Algorithm::RS256,
        });
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        decode::<Value>(proof, &decoding, &validation)
            .expect("the proof verifies with its header's key")
            .claims
    }

    #[test]
    fn proofs_of_every_algorithm_verify_with_the_public_key_in_their_header() {
        for alg in [
            DpopAlgorithm::Es256,
            DpopAlgorithm::EdDsa,
            DpopAlgorithm::Rs256,
        ] {
            let key = DpopKey::generate(alg).unwrap();
            let proof = key
                .proof(
                    "get",
                    "https://API.example.com:443/a/./b?q=1#f",
                    Some("tok"),
                    Some("n-1"),
                )
                .unwrap();
            let claims = verify(&key, proof.expose_secret());
            assert_eq!(claims["htm"], "GET");
            assert_eq!(claims["htu"], "https://api.example.com/a/b");
            assert_eq!(claims["ath"], access_token_hash("tok"));
            assert_eq!(claims["nonce"], "n-1");
            assert!(claims["iat"].as_u64().unwrap() > 1_700_000_000);
            let header = decode_header(proof.expose_secret()).unwrap();
            let public = serde_json::to_value(header.jwk.unwrap()).unwrap();
            assert!(public.get("d").is_none(), "no private member in the header");
            assert_eq!(jwk_thumbprint(&public), key.thumbprint());
        }
    }

    #[test]
    fn a_key_survives_its_jwk_and_keeps_its_thumbprint() {
        for alg in [
            DpopAlgorithm::Es256,
            DpopAlgorithm::EdDsa,
            DpopAlgorithm::Rs256,
        ] {
            let key = DpopKey::generate(alg).unwrap();
            let again = DpopKey::from_jwk(key.to_jwk().expose_secret()).unwrap();
            assert_eq!(again.thumbprint(), key.thumbprint());
            assert_eq!(again.algorithm(), alg);
            let proof = again
                .proof("POST", "https://as.example/token", None, None)
                .unwrap();
            verify(&key, proof.expose_secret());
        }
    }

    #[test]
    fn rsa_keys_carry_their_crt_values_and_read_back_from_n_e_d_alone() {
        let key = DpopKey::generate(DpopAlgorithm::Rs256).unwrap();
        let jwk: Value = serde_json::from_str(key.to_jwk().expose_secret()).unwrap();
        for member in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
            assert!(jwk[member].is_string(), "{member} missing");
        }
        let mut bare = jwk.clone();
        for member in ["p", "q", "dp", "dq", "qi"] {
            bare.as_object_mut().unwrap().remove(member);
        }
        let again = DpopKey::from_jwk(&bare.to_string()).unwrap();
        assert_eq!(again.thumbprint(), key.thumbprint());
        // 1024 bits is refused, however it comes.
        let weak = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap();
        use rsa::pkcs8::EncodePrivateKey;
        let pem = weak.to_pkcs8_pem(Default::default()).unwrap();
        let e = DpopKey::from_pem(&pem).unwrap_err();
        assert!(e.to_string().contains("1024 bits"), "{e}");
    }

    #[test]
    fn a_jwk_with_kid_use_and_alg_members_is_read_for_every_key_type() {
        for alg in [
            DpopAlgorithm::Es256,
            DpopAlgorithm::EdDsa,
            DpopAlgorithm::Rs256,
        ] {
            let key = DpopKey::generate(alg).unwrap();
            let mut jwk: Value = serde_json::from_str(key.to_jwk().expose_secret()).unwrap();
            jwk["kid"] = json!("key-1");
            jwk["use"] = json!("sig");
            jwk["alg"] = json!(alg.name());
            let again = DpopKey::from_jwk(&jwk.to_string()).unwrap();
            assert_eq!(again.thumbprint(), key.thumbprint(), "{alg:?}");
        }
    }

    #[test]
    fn the_rfc_7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            jwk_thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn htu_is_normalised_without_query_and_fragment() {
        assert_eq!(
            htu("HTTPS://Example.COM:443/p/../q?x=1#frag").unwrap(),
            "https://example.com/q"
        );
        assert_eq!(
            htu("http://127.0.0.1:8080/t").unwrap(),
            "http://127.0.0.1:8080/t"
        );
        assert_eq!(htu("https://u:p@h.example/").unwrap(), "https://h.example/");
        assert!(htu("ftp://h.example/").is_err());
        assert!(htu("not a url").is_err());
    }

    #[test]
    fn no_two_proofs_share_a_jti() {
        let key = DpopKey::generate(DpopAlgorithm::Es256).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let proof = key.proof("GET", "https://a.example/", None, None).unwrap();
            let claims = verify(&key, proof.expose_secret());
            assert!(seen.insert(claims["jti"].as_str().unwrap().to_owned()));
        }
    }

    #[test]
    fn keys_from_pem_and_bad_input() {
        use p256::pkcs8::EncodePrivateKey;
        let ec = p256::SecretKey::random(&mut rand_core::OsRng);
        let pem = ec.to_pkcs8_pem(Default::default()).unwrap();
        let key = DpopKey::from_pem(&pem).unwrap();
        assert_eq!(key.algorithm(), DpopAlgorithm::Es256);
        let sec1 = ec.to_sec1_pem(Default::default()).unwrap();
        assert_eq!(
            DpopKey::from_pem(&sec1).unwrap().thumbprint(),
            key.thumbprint()
        );
        let ed = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        let pem = ed.to_pkcs8_pem(Default::default()).unwrap();
        assert_eq!(
            DpopKey::from_pem(&pem).unwrap().algorithm(),
            DpopAlgorithm::EdDsa
        );
        for bad in [
            "",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "x",
        ] {
            let e = DpopKey::from_pem(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config);
        }
        for bad in [
            "{}",
            "[]",
            "{\"kty\":\"EC\",\"crv\":\"P-256\",\"d\":\"AA\"}",
            "{\"kty\":\"oct\",\"k\":\"AA\",\"d\":\"x\"}",
            "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"a\",\"y\":\"b\"}",
        ] {
            let e = DpopKey::from_jwk(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{bad}");
        }
        let text = format!("{key:?}");
        assert!(text.contains("thumbprint") && !text.contains(&*ec.to_jwk_string()));
    }

    #[test]
    fn nonces_are_kept_per_origin_and_malformed_ones_ignored() {
        let nonces = Nonces::default();
        nonces.remember(Server::Resource, "https://as.example/token", "n1");
        nonces.remember(Server::Resource, "https://rs.example:8443/api", "n2");
        assert_eq!(
            nonces
                .get(Server::Resource, "https://AS.example:443/other")
                .as_deref(),
            Some("n1")
        );
        assert_eq!(
            nonces
                .get(Server::Resource, "https://rs.example:8443/x")
                .as_deref(),
            Some("n2")
        );
        assert_eq!(nonces.get(Server::Resource, "https://rs.example/x"), None);
        nonces.remember(Server::Resource, "https://as.example/token", "bad\"nonce");
        nonces.remember(Server::Resource, "https://as.example/token", "");
        assert_eq!(
            nonces
                .get(Server::Resource, "https://as.example/")
                .as_deref(),
            Some("n1")
        );
        for i in 0..(MAX_NONCE_ORIGINS + 10) {
            nonces.remember(Server::Resource, &format!("https://h{i}.example/"), "n");
        }
        assert!(nonces.by_origin.lock().0.len() <= MAX_NONCE_ORIGINS);
        // A token endpoint at the same origin as an API keeps a nonce of its own.
        nonces.remember(Server::Authorization, "https://both.example/token", "as");
        nonces.remember(Server::Resource, "https://both.example/api", "rs");
        assert_eq!(
            nonces
                .get(Server::Authorization, "https://both.example/x")
                .as_deref(),
            Some("as")
        );
        assert_eq!(
            nonces
                .get(Server::Resource, "https://both.example/x")
                .as_deref(),
            Some("rs")
        );
    }
}

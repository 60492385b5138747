//! The development provider's DPoP mode (RFC 9449), driven over HTTP with proofs made
//! here: tokens bound to the proof's key, every way a proof can be wrong refused with
//! its own error, both nonce dances (and a refused request that uses nothing of itself),
//! the Bearer downgrade, and `dpop_required`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use authcore_cli::devserver::{tag, Credentials, DevServer, Event, ResourceOutcome};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A throwaway 2048-bit RSA key made for this test only (ring cannot generate RSA keys).
const RSA_TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDSYF86P9klex8D
KKubTqeLsZP2tw8SooLOfdx/29Zab53ozzXAzswMTeq0VppVz7F8gR79kXryjdC8
1k2WLFqcdJpJkjD2sXij9aWF3Qq0BtfwDo15yQv8G/gL4lzsZj0Yhqujf1PzLjAb
E0UvTlSPtxoP3TRIbvMtSE0LaEy1WMVziQod12tuRDorBbf3zR4+r3wmfb6Q7grq
lmgW0JWIbMi6qi7BXVOWJfCLKpQnCTIw5wAhTC1OAg6vmy3sMX67zvwJwZJ5nmLl
KuZrM1ypItqQugckCs9nBPoGgKLaNW8Hll8DNRuayd1/wryoZo9c3o5JkEa/AI9x
Wt8g++VfAgMBAAECggEAJ4ooa7zDVcmRtxjGRB7g258JFcYrJY/4sNG0By3s2DuB
PNfxHOdhL3DXi4R5ZmZuT92+0t6scnkYAd3vYCm+8Af0VZ6N6FfLulk5fnLgh5x/
qmU5zulsALrLAITPfTjsA7eP+987CookTXpuNulseERsOA4VvQVpXBnqLRoxzKVm
sSmvpuYRGnnJwqz2eg6Ur2O/dONq/mpb5cI5NaTYKcfhWnlrKFinni9RpAMPZTJr
onX7SDw4RcU6M7DZaJqEuV3tDTUEUwETimfrAjnExdoFWwxZEpCTFFFu68lQz8ky
F8pEutyOxj6XwhVcVrl1dAxWt57b0VzbRvEw3SAhhQKBgQD3ZMuGVR1/lB3YL6l8
vA/ZhO5NXQKHSAWgVUUB1/mnEIRtyY6CRLgvhSfd76NsNkz1dtUUg2NKii7hcYkX
8zZmiwpih1cD+GcBChMaD/68MUOld174v6nILGXjr/pFFBsiksFs/V+wOskpGsp6
G+004pdIsI7pF7Tpj4rfwE9rqwKBgQDZsenhgVdLH18V36llqY7NU0stduajOh+e
/HwEOR99kfVyLkSim/g5MjIA9JyrNq+QFM7eMlWn4BHRjtrUu/5MeT9BOqD6OZFH
s0MqKMoh7QBSTwj624Rbah8pBIooQR6nwiDYmhjD7U09V90DtU6rwvO3iIhq+0HI
iEHfwmsZHQKBgQDx5cO/0N/sDBb2ePwfc/+HcBxW1vgO8RRXRqkX+WcpvNPQScGn
jKwQAwINVzETMTEk3pHQ4funOeBHHe2v1mc98vwvhShHQI7vDDvLQxKQTxdW5pad
YUMQ8KCb9kkfXF5/+sFY4ZK7zW8+WuzaYw4YpOrJ76F9N2n06h8fU3oUywKBgQCz
0iGmc8eetyg9EkaEQn5CHtaPlJLJK/7ovhjXCDR57jI4Af4R8BIndM4XOfeb+g0l
T/rdUeitRgqR9pXOegeCNflJMVu9tgXKm0oUriLhyTqlwsFhLijztgJNSIGy5K+k
1Vd6dDeWyBMwY76eDIsSmHPnG/HLpQZe1ibL5XXABQKBgDOwZa+ZlXfjh4Z6KNkd
K0kcauJiZft1bAxaTsQgm66mAYtzWTcHagXC6YXUviCBHdc/9aF86s27CLDyg2yd
nyu5ek4upy1TTodB0LTpB4h7hZo9GnpEo0tNGQsF2Q0NZmGoEjDxNDAY7hsSwBsD
mC9BuO1ikT2MF2vwNcY7YND/
-----END PRIVATE KEY-----
";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn random_id() -> String {
    let mut buf = [0u8; 16];
    SystemRandom::new().fill(&mut buf).unwrap();
    b64(buf)
}

/// A client's DPoP key pair: what signs, and the public JWK that goes in the header.
struct Key {
    alg: Algorithm,
    signing: EncodingKey,
    jwk: Value,
}

impl Key {
    fn es256() -> Key {
        let rng = SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        // The uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        Key {
            alg: Algorithm::ES256,
            signing: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}),
        }
    }

    fn ed25519() -> Key {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Key {
            alg: Algorithm::EdDSA,
            signing: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}),
        }
    }

    fn rs256() -> Key {
        let body: String = RSA_TEST_KEY
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let pair = RsaKeyPair::from_pkcs8(&der).unwrap();
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        Key {
            alg: Algorithm::RS256,
            signing: EncodingKey::from_rsa_pem(RSA_TEST_KEY.as_bytes()).unwrap(),
            jwk: json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)}),
        }
    }

    fn alg_name(&self) -> &'static str {
        match self.alg {
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            _ => "RS256",
        }
    }

    /// The RFC 7638 thumbprint of the public key, worked out here.
    fn thumbprint(&self) -> String {
        let members: &[&str] = match self.jwk["kty"].as_str().unwrap() {
            "EC" => &["crv", "kty", "x", "y"],
            "OKP" => &["crv", "kty", "x"],
            _ => &["e", "kty", "n"],
        };
        let required: BTreeMap<&str, &str> = members
            .iter()
            .map(|&m| (m, self.jwk[m].as_str().unwrap()))
            .collect();
        b64(Sha256::digest(serde_json::to_string(&required).unwrap()))
    }

    /// A proof with these claims, made by jsonwebtoken with the public JWK in its header.
    fn proof(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(serde_json::from_value(self.jwk.clone()).unwrap());
        jsonwebtoken::encode(&header, claims, &self.signing).unwrap()
    }

    /// The usual proof header, as JSON, to be altered.
    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg_name(), "jwk": self.jwk})
    }

    /// A proof with exactly this header, signed by this key.
    fn raw_proof(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.signing, self.alg).unwrap();
        format!("{input}.{signature}")
    }
}

/// The claims of a fresh proof for a request.
fn claims(htm: &str, htu: &str) -> Value {
    json!({"jti": random_id(), "htm": htm, "htu": htu, "iat": now()})
}

/// The claims of a fresh proof for a resource request with `token`.
fn resource_claims(htu: &str, token: &str) -> Value {
    let mut c = claims("GET", htu);
    c["ath"] = json!(b64(Sha256::digest(token.as_bytes())));
    c
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// An answer: status, the headers this test looks at, the JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    dpop_nonce: Option<String>,
    challenge: Option<String>,
    location: Option<String>,
    body: Value,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    fn from(mut r: ureq::http::Response<ureq::Body>) -> Answer {
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (dpop_nonce, challenge, location) = (
            header("dpop-nonce"),
            header("www-authenticate"),
            header("location"),
        );
        assert!(
            r.headers().get_all("dpop-nonce").iter().count() <= 1,
            "one DPoP-Nonce at most"
        );
        Answer {
            status: r.status().as_u16(),
            dpop_nonce,
            challenge,
            location,
            body: r.body_mut().read_json().unwrap_or(Value::Null),
        }
    }
}

fn post_form(url: &str, body: &str, proofs: &[&str]) -> Answer {
    let mut req = agent()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded");
    for p in proofs {
        req = req.header("dpop", *p);
    }
    Answer::from(req.send(body).unwrap())
}

fn post_json(url: &str, body: Value, proofs: &[&str]) -> Answer {
    let mut req = agent().post(url);
    for p in proofs {
        req = req.header("dpop", *p);
    }
    Answer::from(req.send_json(body).unwrap())
}

fn get(url: &str, authorization: &str, proofs: &[&str]) -> Answer {
    let mut req = agent().get(url);
    if !authorization.is_empty() {
        req = req.header("authorization", authorization);
    }
    for p in proofs {
        req = req.header("dpop", *p);
    }
    Answer::from(req.call().unwrap())
}

const CLIENT_CREDENTIALS: &str =
    "grant_type=client_credentials&client_id=dev-client&client_secret=dev-secret";

/// A provider with this configuration, and its base URL.
fn provider(config: Value) -> (DevServer, String) {
    let server = DevServer::start("127.0.0.1:0".parse().unwrap(), Credentials::default()).unwrap();
    let base = server.url();
    let set = post_json(&format!("{base}/_control/config"), config, &[]);
    assert_eq!(set.status, 200, "{set:?}");
    (server, base)
}

fn counters(base: &str) -> Value {
    get(&format!("{base}/_control/counters"), "", &[]).body
}

fn introspect(base: &str, token: &str) -> Value {
    let a = get(
        &format!("{base}/_control/token?tag={}", tag(token)),
        "",
        &[],
    );
    assert_eq!(a.status, 200, "{a:?}");
    a.body
}

/// Client credentials with a proof by `key` (and `nonce`): the answer.
fn dpop_client_credentials(base: &str, key: &Key, nonce: Option<&str>) -> Answer {
    let token_url = format!("{base}/oauth2/token");
    let mut c = claims("POST", &token_url);
    if let Some(n) = nonce {
        c["nonce"] = json!(n);
    }
    post_form(&token_url, CLIENT_CREDENTIALS, &[&key.proof(&c)])
}

/// A DPoP resource request with a fresh proof by `key` (and `nonce`).
fn dpop_get(base: &str, path: &str, token: &str, key: &Key, nonce: Option<&str>) -> Answer {
    let url = format!("{base}{path}");
    let mut c = resource_claims(&url, token);
    if let Some(n) = nonce {
        c["nonce"] = json!(n);
    }
    get(&url, &format!("DPoP {token}"), &[&key.proof(&c)])
}

#[test]
fn a_valid_proof_gets_a_token_bound_to_its_key_for_every_algorithm() {
    let (server, base) = provider(json!({"dpop": true}));
    for key in [Key::es256(), Key::ed25519(), Key::rs256()] {
        let alg = key.alg_name();
        let a = dpop_client_credentials(&base, &key, None);
        assert_eq!(a.status, 200, "{alg}: {a:?}");
        assert_eq!(a.body["token_type"], "DPoP", "{alg}");
        assert!(a.dpop_nonce.is_none(), "no nonce unless one is demanded");
        let at = a.body["access_token"].as_str().unwrap().to_owned();
        let info = introspect(&base, &at);
        assert_eq!(info["cnf"]["jkt"], key.thumbprint(), "{alg}: {info}");
        assert_eq!(info["token_type"], "DPoP");

        // Used with a proof: served, and the answer names the key it is bound to.
        let a = dpop_get(&base, "/api/x", &at, &key, None);
        assert_eq!(a.status, 200, "{alg}: {a:?}");
        assert_eq!(a.body["cnf"]["jkt"], key.thumbprint());

        // The same token as a bearer token: refused, with a DPoP challenge.
        let a = get(&format!("{base}/api/x"), &format!("Bearer {at}"), &[]);
        assert_eq!(a.status, 401, "{alg}: {a:?}");
        let challenge = a.challenge.unwrap();
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
    }
    // The journal names the key of each token issued.
    let jkts: Vec<Option<String>> = server
        .journal(0)
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Token { jkt, .. } => Some(jkt.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(jkts.len(), 3);
    assert!(jkts.iter().all(Option::is_some), "{jkts:?}");

    // Without a proof, DPoP mode still answers with a bearer token, which works as one
    // and not as a DPoP token.
    let a = post_form(&format!("{base}/oauth2/token"), CLIENT_CREDENTIALS, &[]);
    assert_eq!(
        (a.status, a.body["token_type"].as_str()),
        (200, Some("Bearer"))
    );
    let bearer = a.body["access_token"].as_str().unwrap().to_owned();
    assert!(introspect(&base, &bearer).get("cnf").is_none());
    let a = get(&format!("{base}/api/x"), &format!("Bearer {bearer}"), &[]);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.get("cnf").is_none());
    let a = dpop_get(&base, "/api/x", &bearer, &Key::es256(), None);
    assert_eq!((a.status, a.error()), (401, "invalid_token"), "{a:?}");

    let c = counters(&base);
    assert_eq!(c["token_requests"], 4);
    assert_eq!(c["dpop_tokens_issued"], 3);
    assert_eq!(c["tokens_issued"], 4);
    // Three proofs at the token endpoint, three at the API, one for the bearer token.
    assert_eq!(c["dpop_proofs_accepted"], 7, "{c}");
    assert_eq!(c["dpop_proofs_rejected"], 0, "{c}");
}

#[test]
fn a_proof_that_is_wrong_in_any_way_is_refused_at_the_token_endpoint() {
    let (_server, base) = provider(json!({"dpop": true}));
    let key = Key::es256();
    let token_url = format!("{base}/oauth2/token");
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let other_port = port.checked_add(1).unwrap_or(port - 1);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("POST", &token_url);
        change(&mut c);
        key.proof(&c)
    };
    let hs256 = {
        let mut header = key.header();
        header["alg"] = json!("HS256");
        let input = format!(
            "{}.{}",
            b64(header.to_string()),
            b64(claims("POST", &token_url).to_string())
        );
        let mac = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(b"dev-secret"),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{mac}")
    };
    let unsigned = {
        let mut header = key.header();
        header["alg"] = json!("none");
        format!(
            "{}.{}.",
            b64(header.to_string()),
            b64(claims("POST", &token_url).to_string())
        )
    };
    let with_header = |change: &dyn Fn(&mut Value)| {
        let mut header = key.header();
        change(&mut header);
        key.raw_proof(&header, &claims("POST", &token_url))
    };
    let other = Key::es256();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("htm GET", vec![with(&|c| c["htm"] = json!("GET"))]),
        ("htm post", vec![with(&|c| c["htm"] = json!("post"))]),
        (
            "htu another path",
            vec![with(&|c| c["htu"] = json!(format!("{base}/oauth/token")))],
        ),
        (
            "htu another port",
            vec![with(&|c| {
                c["htu"] = json!(format!("http://127.0.0.1:{other_port}/oauth2/token"))
            })],
        ),
        (
            "htu another host",
            vec![with(&|c| {
                c["htu"] = json!(format!("http://localhost:{port}/oauth2/token"))
            })],
        ),
        (
            "htu https",
            vec![with(&|c| {
                c["htu"] = json!(token_url.replace("http:", "https:"))
            })],
        ),
        (
            "htu with a query",
            vec![with(&|c| c["htu"] = json!(format!("{token_url}?a=b")))],
        ),
        (
            "iat 2 minutes ago",
            vec![with(&|c| c["iat"] = json!(now() - 120))],
        ),
        (
            "iat 2 minutes ahead",
            vec![with(&|c| c["iat"] = json!(now() + 120))],
        ),
        (
            "iat a string",
            vec![with(&|c| c["iat"] = json!(now().to_string()))],
        ),
        (
            "no jti",
            vec![with(&|c| drop(c.as_object_mut().unwrap().remove("jti")))],
        ),
        (
            "no htu",
            vec![with(&|c| drop(c.as_object_mut().unwrap().remove("htu")))],
        ),
        ("typ JWT", vec![with_header(&|h| h["typ"] = json!("JWT"))]),
        (
            "no jwk",
            vec![with_header(&|h| {
                drop(h.as_object_mut().unwrap().remove("jwk"))
            })],
        ),
        (
            "a private member in the jwk",
            vec![with_header(&|h| h["jwk"]["d"] = json!(b64([7u8; 32])))],
        ),
        (
            "jwk of another curve",
            vec![with_header(&|h| h["jwk"]["crv"] = json!("P-384"))],
        ),
        ("alg none", vec![unsigned]),
        ("alg HS256", vec![hs256]),
        (
            "signed by another key",
            vec![{
                let mut header = Header::new(Algorithm::ES256);
                header.typ = Some("dpop+jwt".into());
                header.jwk = Some(serde_json::from_value(key.jwk.clone()).unwrap());
                jsonwebtoken::encode(&header, &claims("POST", &token_url), &other.signing).unwrap()
            }],
        ),
        (
            "a changed claim",
            vec![{
                // A good proof's signature over other claims.
                let p = key.proof(&claims("POST", &token_url));
                let parts: Vec<&str> = p.split('.').collect();
                let c = claims("POST", &token_url);
                format!("{}.{}.{}", parts[0], b64(c.to_string()), parts[2])
            }],
        ),
        ("not a JWS", vec!["abc.def".to_owned()]),
        (
            "two proofs",
            vec![
                key.proof(&claims("POST", &token_url)),
                key.proof(&claims("POST", &token_url)),
            ],
        ),
    ];
    let refused = cases.len();
    for (what, proofs) in &cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let a = post_form(&token_url, CLIENT_CREDENTIALS, &proofs);
        assert_eq!(
            (a.status, a.error()),
            (400, "invalid_dpop_proof"),
            "{what}: {a:?}"
        );
    }

    // Normalised URLs name the same endpoint.
    let a = post_form(
        &token_url,
        CLIENT_CREDENTIALS,
        &[&with(&|c| {
            c["htu"] = json!(token_url.replace("http:", "HTTP:"))
        })],
    );
    assert_eq!(a.status, 200, "{a:?}");

    // A proof is good once.
    let proof = key.proof(&claims("POST", &token_url));
    let a = post_form(&token_url, CLIENT_CREDENTIALS, &[&proof]);
    assert_eq!(a.status, 200, "{a:?}");
    let a = post_form(&token_url, CLIENT_CREDENTIALS, &[&proof]);
    assert_eq!((a.status, a.error()), (400, "invalid_dpop_proof"), "{a:?}");
    assert!(
        a.body["error_description"]
            .as_str()
            .unwrap()
            .contains("jti"),
        "{a:?}"
    );

    let c = counters(&base);
    assert_eq!(c["dpop_proofs_rejected"], refused, "{c}");
    assert_eq!(c["dpop_replays_rejected"], 1, "{c}");
    assert_eq!(c["dpop_proofs_accepted"], 2, "{c}");
    assert_eq!(c["token_requests"], refused + 3, "{c}");
    assert_eq!(c["tokens_issued"], 2, "{c}");
}

#[test]
fn a_resource_request_needs_a_proof_for_its_token_by_the_bound_key() {
    let (server, base) = provider(json!({"dpop": true}));
    let key = Key::ed25519();
    let a = dpop_client_credentials(&base, &key, None);
    let at = a.body["access_token"].as_str().unwrap().to_owned();
    let url = format!("{base}/api/x");
    let auth = format!("DPoP {at}");
    let refused = |proofs: &[&str], what: &str| {
        let a = get(&url, &auth, proofs);
        assert_eq!(a.status, 401, "{what}: {a:?}");
        let challenge = a.challenge.clone().unwrap();
        assert!(
            challenge.starts_with("DPoP ")
                && challenge.contains(r#"error="invalid_dpop_proof""#)
                && challenge.contains(r#"algs="ES256 EdDSA RS256""#),
            "{what}: {challenge}"
        );
    };
    refused(&[], "no proof");
    let mut c = resource_claims(&url, &at);
    c.as_object_mut().unwrap().remove("ath");
    refused(&[&key.proof(&c)], "no ath");
    refused(
        &[&key.proof(&resource_claims(&url, "another token"))],
        "ath of another token",
    );
    let other = Key::ed25519();
    refused(&[&other.proof(&resource_claims(&url, &at))], "another key");
    let mut c = resource_claims(&url, &at);
    c["htm"] = json!("POST");
    refused(&[&key.proof(&c)], "htm POST");
    refused(
        &[&key.proof(&resource_claims(&format!("{base}/api/y"), &at))],
        "htu another path",
    );
    let mut c = resource_claims(&format!("{url}?q=1"), &at);
    c["htu"] = json!(url);
    let a = get(&format!("{url}?q=1"), &auth, &[&key.proof(&c)]);
    assert_eq!(a.status, 200, "the query is not part of htu: {a:?}");

    let proof = key.proof(&resource_claims(&url, &at));
    assert_eq!(get(&url, &auth, &[&proof]).status, 200);
    refused(&[&proof], "replayed");

    // A scope the token lacks: 403, challenged in the scheme it was presented with.
    let token_url = format!("{base}/oauth2/token");
    let a = post_form(
        &token_url,
        &format!("{CLIENT_CREDENTIALS}&scope=campaigns%3Aread"),
        &[&key.proof(&claims("POST", &token_url))],
    );
    let narrow = a.body["access_token"].as_str().unwrap();
    let a = dpop_get(&base, "/api/admin", narrow, &key, None);
    assert_eq!(a.status, 403, "{a:?}");
    assert!(
        a.challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("DPoP ") && c.contains("insufficient_scope")),
        "{a:?}"
    );

    let c = counters(&base);
    assert_eq!(c["dpop_proofs_missing"], 1, "{c}");
    assert_eq!(c["dpop_proofs_rejected"], 5, "{c}");
    assert_eq!(c["dpop_replays_rejected"], 1, "{c}");
    assert_eq!(c["resource_accepted"], 2, "{c}");
    assert_eq!(c["resource_rejected_invalid"], 0, "{c}");
    let refusals = server
        .journal(0)
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::Resource {
                    outcome: ResourceOutcome::ProofRefused,
                    ..
                }
            )
        })
        .count();
    assert_eq!(refusals, 7);
}

/// A sign-in by a public client (no secret) with PKCE: the code.
fn authorization_code(base: &str) -> (String, String) {
    let verifier = random_id() + &random_id();
    let challenge = b64(Sha256::digest(verifier.as_bytes()));
    let a = get(
        &format!(
            "{base}/oauth2/authorize?client_id=dev-client&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&code_challenge={challenge}&code_challenge_method=S256&scope=openid"
        ),
        "",
        &[],
    );
    assert_eq!(a.status, 302, "{a:?}");
    let location = url::Url::parse(&a.location.unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    (code, verifier)
}

#[test]
fn the_as_nonce_is_demanded_before_the_code_or_refresh_token_is_used() {
    let (server, base) = provider(json!({"dpop": true, "dpop_as_nonce": true}));
    let key = Key::es256();
    let token_url = format!("{base}/oauth2/token");
    let proof = |nonce: Option<&str>, key: &Key| {
        let mut c = claims("POST", &token_url);
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        key.proof(&c)
    };
    let (code, verifier) = authorization_code(&base);
    let exchange = format!(
        "grant_type=authorization_code&client_id=dev-client&code={code}&code_verifier={verifier}&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb"
    );
    let mut sent = 0;

    // No nonce yet: refused, with the nonce; the code is not used.
    let a = post_form(&token_url, &exchange, &[&proof(None, &key)]);
    sent += 1;
    assert_eq!((a.status, a.error()), (400, "use_dpop_nonce"), "{a:?}");
    let nonce = a.dpop_nonce.clone().expect("a DPoP-Nonce header");
    assert!(nonce.len() >= 22, "{nonce}");
    let a = post_form(&token_url, &exchange, &[&proof(Some("made-up"), &key)]);
    sent += 1;
    assert_eq!((a.status, a.error()), (400, "use_dpop_nonce"), "{a:?}");
    assert_eq!(a.dpop_nonce.as_deref(), Some(nonce.as_str()));
    let a = post_form(&token_url, &exchange, &[&proof(Some(&nonce), &key)]);
    sent += 1;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["token_type"], "DPoP");
    assert_eq!(a.dpop_nonce.as_deref(), Some(nonce.as_str()));
    let rt = a.body["refresh_token"].as_str().unwrap().to_owned();
    let info = introspect(&base, &rt);
    assert_eq!(
        info["cnf"]["jkt"],
        key.thumbprint(),
        "a public client's refresh token is bound: {info}"
    );

    // The nonce changes; the refresh with the old one is refused and uses nothing, so
    // the same rotating refresh token works with the new nonce.
    let rotated = post_json(&format!("{base}/_control/dpop_rotate"), json!({}), &[]).body;
    let new_nonce = rotated["as_nonce"].as_str().unwrap().to_owned();
    assert_ne!(new_nonce, nonce);
    assert_ne!(rotated["rs_nonce"], rotated["as_nonce"]);
    let refresh = format!("grant_type=refresh_token&client_id=dev-client&refresh_token={rt}");
    let a = post_form(&token_url, &refresh, &[&proof(Some(&nonce), &key)]);
    sent += 1;
    assert_eq!((a.status, a.error()), (400, "use_dpop_nonce"), "{a:?}");
    assert_eq!(a.dpop_nonce.as_deref(), Some(new_nonce.as_str()));
    assert_eq!(introspect(&base, &rt)["active"], true);

    // A bound refresh token: not without a proof, not with another key; neither uses it.
    let a = post_form(&token_url, &refresh, &[]);
    sent += 1;
    assert_eq!((a.status, a.error()), (400, "invalid_dpop_proof"), "{a:?}");
    let a = post_form(
        &token_url,
        &refresh,
        &[&proof(Some(&new_nonce), &Key::es256())],
    );
    sent += 1;
    assert_eq!((a.status, a.error()), (400, "invalid_grant"), "{a:?}");
    assert_eq!(introspect(&base, &rt)["active"], true);

    let a = post_form(&token_url, &refresh, &[&proof(Some(&new_nonce), &key)]);
    sent += 1;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["token_type"], "DPoP");
    let rt2 = a.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&base, &rt2)["cnf"]["jkt"], key.thumbprint());
    // The first refresh token is spent now: presented again, the family ends.
    let a = post_form(&token_url, &refresh, &[&proof(Some(&new_nonce), &key)]);
    sent += 1;
    assert_eq!((a.status, a.error()), (400, "invalid_grant"), "{a:?}");
    assert_eq!(introspect(&base, &rt2)["active"], false);

    let c = counters(&base);
    assert_eq!(c["token_requests"], sent, "every request counted: {c}");
    assert_eq!(c["dpop_as_nonce_challenges"], 3, "{c}");
    assert_eq!(c["dpop_rs_nonce_challenges"], 0, "{c}");
    assert_eq!(c["dpop_refresh_binding_refused"], 2, "{c}");
    let outcomes: Vec<(Option<String>, Option<String>)> = server
        .journal(0)
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Token {
                error, presented, ..
            } => Some((error.clone(), presented.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes.len(), sent);
    assert_eq!(outcomes[3], (Some("use_dpop_nonce".into()), Some(tag(&rt))));
}

#[test]
fn a_device_poll_refused_for_its_nonce_is_not_counted_as_a_poll() {
    let (_server, base) =
        provider(json!({"dpop": true, "dpop_as_nonce": true, "device_pending_polls": 1}));
    let key = Key::es256();
    let token_url = format!("{base}/oauth2/token");
    let a = post_form(
        &format!("{base}/oauth2/device"),
        "client_id=dev-client&scope=openid",
        &[],
    );
    assert_eq!(a.status, 200, "a public client in DPoP mode: {a:?}");
    let device_code = a.body["device_code"].as_str().unwrap().to_owned();
    let poll = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=dev-client&device_code={device_code}"
    );
    let proof = |nonce: Option<&str>| {
        let mut c = claims("POST", &token_url);
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        key.proof(&c)
    };
    let a = post_form(&token_url, &poll, &[&proof(None)]);
    assert_eq!((a.status, a.error()), (400, "use_dpop_nonce"), "{a:?}");
    let nonce = a.dpop_nonce.unwrap();
    // The first poll that counts is still pending (and not too soon).
    let a = post_form(&token_url, &poll, &[&proof(Some(&nonce))]);
    assert_eq!(
        (a.status, a.error()),
        (400, "authorization_pending"),
        "{a:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let a = post_form(&token_url, &poll, &[&proof(Some(&nonce))]);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["token_type"], "DPoP");
    let rt = a.body["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&base, rt)["cnf"]["jkt"], key.thumbprint());
}

#[test]
fn the_rs_nonce_is_demanded_and_rotates_after_n_proofs_and_on_demand() {
    let (server, base) = provider(json!({
        "dpop": true, "dpop_as_nonce": true, "dpop_rs_nonce": true, "dpop_nonce_rotate_every": 3
    }));
    let key = Key::es256();
    let a = dpop_client_credentials(&base, &key, None);
    assert_eq!(a.error(), "use_dpop_nonce");
    let as_nonce = a.dpop_nonce.unwrap();
    let a = dpop_client_credentials(&base, &key, Some(&as_nonce));
    assert_eq!(a.status, 200, "{a:?}");
    let at = a.body["access_token"].as_str().unwrap().to_owned();

    let a = dpop_get(&base, "/api/x", &at, &key, None);
    assert_eq!(a.status, 401, "{a:?}");
    let challenge = a.challenge.clone().unwrap();
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains(r#"error="use_dpop_nonce""#),
        "{challenge}"
    );
    let n1 = a.dpop_nonce.unwrap();
    assert_ne!(n1, as_nonce, "each server its own nonce");
    // Three proofs with it are accepted, each answer carrying it.
    for _ in 0..3 {
        let a = dpop_get(&base, "/api/x", &at, &key, Some(&n1));
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.dpop_nonce.as_deref(), Some(n1.as_str()));
    }
    // Then it is replaced: the next request with it is challenged with the new one.
    let a = dpop_get(&base, "/api/x", &at, &key, Some(&n1));
    assert_eq!((a.status, a.error()), (401, "use_dpop_nonce"), "{a:?}");
    let n2 = a.dpop_nonce.unwrap();
    assert_ne!(n2, n1);
    let a = dpop_get(&base, "/api/x", &at, &key, Some(&n2));
    assert_eq!(a.status, 200, "{a:?}");

    // Rotated mid-run by the control surface.
    post_json(&format!("{base}/_control/dpop_rotate"), json!({}), &[]);
    let a = dpop_get(&base, "/api/x", &at, &key, Some(&n2));
    assert_eq!((a.status, a.error()), (401, "use_dpop_nonce"), "{a:?}");
    let n3 = a.dpop_nonce.unwrap();
    assert_ne!(n3, n2);
    assert_eq!(dpop_get(&base, "/api/x", &at, &key, Some(&n3)).status, 200);

    // Bearer tokens are not asked for a nonce, but are told it.
    let a = post_form(&format!("{base}/oauth2/token"), CLIENT_CREDENTIALS, &[]);
    assert_eq!(a.body["token_type"], "Bearer");
    let as_now = a.dpop_nonce.unwrap();
    assert_ne!(as_now, as_nonce, "rotated with the other");
    assert_ne!(as_now, n3);
    let bearer = a.body["access_token"].as_str().unwrap();
    let a = get(&format!("{base}/api/x"), &format!("Bearer {bearer}"), &[]);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.dpop_nonce.as_deref(), Some(n3.as_str()));

    let c = counters(&base);
    assert_eq!(c["dpop_rs_nonce_challenges"], 3, "{c}");
    assert_eq!(c["dpop_as_nonce_challenges"], 1, "{c}");
    assert_eq!(c["resource_accepted"], 6, "{c}");
    let challenged = server
        .journal(0)
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::Resource {
                    outcome: ResourceOutcome::NonceRequired,
                    ..
                }
            )
        })
        .count();
    assert_eq!(challenged, 3);
}

#[test]
fn bearer_only_verifies_the_proof_and_answers_with_an_unbound_bearer_token() {
    let (_server, base) = provider(json!({"dpop": true, "dpop_bearer_only": true}));
    let key = Key::es256();
    let a = dpop_client_credentials(&base, &key, None);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["token_type"], "Bearer");
    let at = a.body["access_token"].as_str().unwrap();
    assert!(introspect(&base, at).get("cnf").is_none());
    let a = get(&format!("{base}/api/x"), &format!("Bearer {at}"), &[]);
    assert_eq!(a.status, 200, "{a:?}");
    // Still a verifier: a bad proof is refused.
    let mut c = claims("POST", &format!("{base}/oauth2/token"));
    c["htm"] = json!("PUT");
    let a = post_form(
        &format!("{base}/oauth2/token"),
        CLIENT_CREDENTIALS,
        &[&key.proof(&c)],
    );
    assert_eq!((a.status, a.error()), (400, "invalid_dpop_proof"), "{a:?}");
    assert_eq!(counters(&base)["dpop_tokens_issued"], 0);
}

#[test]
fn dpop_required_refuses_token_requests_without_a_proof_in_every_dialect() {
    let (_server, base) = provider(json!({"dpop": true, "dpop_required": true}));
    let a = post_form(&format!("{base}/oauth2/token"), CLIENT_CREDENTIALS, &[]);
    assert_eq!((a.status, a.error()), (400, "invalid_dpop_proof"), "{a:?}");
    assert_eq!(a.body["error_description"], "a DPoP proof is required");
    let a = post_json(
        &format!("{base}/oauth/token"),
        json!({"grant_type": "client_credentials", "client_id": "dev-client", "client_secret": "dev-secret"}),
        &[],
    );
    assert_eq!((a.status, a.error()), (400, "invalid_dpop_proof"), "{a:?}");
    let a = post_json(
        &format!("{base}/auth/api-key"),
        json!({"apiKey": "dev-api-key"}),
        &[],
    );
    assert_eq!((a.status, a.error()), (400, "invalid_dpop_proof"), "{a:?}");

    // With proofs: DPoP tokens in the JSON dialects too; api.video refresh tokens are
    // bound (its refresh endpoint takes no client authentication).
    let key = Key::ed25519();
    let viewneo = format!("{base}/oauth/token");
    let a = post_json(
        &viewneo,
        json!({"grant_type": "client_credentials", "client_id": "dev-client", "client_secret": "dev-secret"}),
        &[&key.proof(&claims("POST", &viewneo))],
    );
    assert_eq!(
        (a.status, a.body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{a:?}"
    );
    let api_key = format!("{base}/auth/api-key");
    let a = post_json(
        &api_key,
        json!({"apiKey": "dev-api-key"}),
        &[&key.proof(&claims("POST", &api_key))],
    );
    assert_eq!(
        (a.status, a.body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{a:?}"
    );
    let rt = a.body["refresh_token"].as_str().unwrap().to_owned();
    let refresh = format!("{base}/auth/refresh");
    let a = post_json(
        &refresh,
        json!({"refreshToken": rt}),
        &[&Key::ed25519().proof(&claims("POST", &refresh))],
    );
    assert_eq!((a.status, a.error()), (400, "invalid_grant"), "{a:?}");
    let a = post_json(
        &refresh,
        json!({"refreshToken": rt}),
        &[&key.proof(&claims("POST", &refresh))],
    );
    assert_eq!(
        (a.status, a.body["token_type"].as_str()),
        (200, Some("DPoP")),
        "{a:?}"
    );

    let c = counters(&base);
    assert_eq!(c["dpop_proofs_missing"], 3, "{c}");
    assert_eq!(c["token_requests"], 7, "{c}");
}

#[test]
fn dpop_settings_need_dpop_and_public_clients_need_dpop_mode() {
    let (_server, base) = provider(json!({}));
    for setting in [
        json!({"dpop_required": true}),
        json!({"dpop_bearer_only": true}),
        json!({"dpop_as_nonce": true}),
        json!({"dpop_rs_nonce": true}),
        json!({"dpop_nonce_rotate_every": 2}),
    ] {
        let a = post_json(&format!("{base}/_control/config"), setting.clone(), &[]);
        assert_eq!(a.status, 400, "{setting}: {a:?}");
    }
    // Outside DPoP mode: a DPoP header is ignored, and a client without its secret is
    // refused as before.
    let key = Key::es256();
    let a = dpop_client_credentials(&base, &key, None);
    assert_eq!(
        (a.status, a.body["token_type"].as_str()),
        (200, Some("Bearer"))
    );
    let (code, verifier) = authorization_code(&base);
    let a = post_form(
        &format!("{base}/oauth2/token"),
        &format!(
            "grant_type=authorization_code&client_id=dev-client&code={code}&code_verifier={verifier}&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb"
        ),
        &[],
    );
    assert_eq!((a.status, a.error()), (401, "invalid_client"), "{a:?}");
    let c = counters(&base);
    assert_eq!(c["dpop_proofs_accepted"], 0, "{c}");
}

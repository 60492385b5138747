//! DPoP (RFC 9449) on the wire: a proof on every token request and every API request,
//! both nonce dances, the Bearer downgrade refused, and the key kept with the session
//! in a store. Proofs are checked with an independent JOSE implementation.

mod common;

use std::sync::{Arc, Mutex};

use authcore::grant::{ClientCredentials, RefreshToken};
use authcore::{
    Client, Dpop, DpopAlgorithm, DpopKey, ErrorKind, MemoryStore, Options, StoredToken,
};
use common::{err, opts};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

/// Verifies a proof with the key in its own header; returns the claims and the
/// thumbprint-relevant public JWK.
fn verify(proof: &str) -> (Value, Value) {
    let header = decode_header(proof).expect("a JWS");
    assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
    let jwk = header.jwk.clone().expect("the public key in the header");
    let key = DecodingKey::from_jwk(&jwk).expect("a usable public key");
    let mut validation = Validation::new(header.alg);
    assert!(matches!(
        header.alg,
        Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256
    ));
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = decode::<Value>(proof, &key, &validation)
        .expect("the proof verifies")
        .claims;
    (claims, serde_json::to_value(jwk).unwrap())
}

fn thumbprint(jwk: &Value) -> String {
    use base64::Engine;
    use sha2::Digest;
    let members: Vec<&str> = match jwk["kty"].as_str().unwrap() {
        "EC" => vec!["crv", "kty", "x", "y"],
        "OKP" => vec!["crv", "kty", "x"],
        _ => vec!["e", "kty", "n"],
    };
    let parts: Vec<String> = members
        .iter()
        .map(|m| format!("\"{m}\":{}", jwk[*m]))
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(format!("{{{}}}", parts.join(","))))
}

/// The `DPoP` headers the server saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

fn proof_of(request: &mockito::Request) -> Option<String> {
    request
        .header("dpop")
        .first()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn nonce_of(proof: &str) -> Option<String> {
    verify(proof).0["nonce"].as_str().map(str::to_owned)
}

fn dpop_token(access: &str, refresh: Option<&str>) -> String {
    let mut body = json!({"access_token": access, "token_type": "DPoP", "expires_in": 3600});
    if let Some(rt) = refresh {
        body["refresh_token"] = json!(rt);
    }
    body.to_string()
}

#[test]
fn every_token_request_carries_a_proof_and_the_token_is_kept_as_dpop() {
    let mut server = mockito::Server::new();
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let url = format!("{}/token?x=1", server.url());
    let m = server
        .mock("POST", "/token")
        .match_query(mockito::Matcher::Any)
        .match_request(move |r| proof_of(r).map(|p| s.lock().unwrap().push(p)).is_some())
        .with_body(dpop_token("at-one-1a2b3c4d5e", None))
        .expect(1)
        .create();
    let key = DpopKey::generate(DpopAlgorithm::EdDsa).unwrap();
    let thumb = key.thumbprint().to_owned();
    let client = Client::new(
        ClientCredentials::new(url, "id", "cs+/=:secret-9f8e7d"),
        opts().dpop(Dpop::new(key)),
    )
    .unwrap();
    let token = client.token().unwrap();
    m.assert();
    assert_eq!(token.token_type(), "DPoP");
    assert_eq!(
        token.authorization_header().expose_secret(),
        "DPoP at-one-1a2b3c4d5e"
    );
    assert_eq!(token.dpop_key().unwrap().thumbprint(), thumb);
    let proofs = seen.lock().unwrap().clone();
    let (claims, jwk) = verify(&proofs[0]);
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], format!("{}/token", server.url()));
    assert!(claims.get("ath").is_none(), "no ath on a token request");
    assert_eq!(thumbprint(&jwk), thumb);
}

#[test]
fn a_bearer_answer_to_a_dpop_request_is_refused_unless_allowed() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_body(
            r#"{"access_token":"at-one-1a2b3c4d5e","token_type":"Bearer","expires_in":3600}"#,
        )
        .expect(2)
        .create();
    let url = format!("{}/token", server.url());
    let strict = Client::new(
        ClientCredentials::new(&url, "id", "cs+/=:secret-9f8e7d"),
        opts().dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    let e = err(strict.token());
    assert_eq!(e.kind(), ErrorKind::InvalidResponse);
    assert!(e.to_string().contains("Bearer"), "{e}");
    assert_eq!(strict.stats().token_requests(), 1, "not retried");
    let lenient = Client::new(
        ClientCredentials::new(&url, "id", "cs+/=:secret-9f8e7d"),
        opts().dpop(Dpop::generate().unwrap().allow_bearer_downgrade(true)),
    )
    .unwrap();
    let token = lenient.token().unwrap();
    assert_eq!(token.token_type(), "Bearer");
    assert!(token.dpop_key().is_none());
    m.assert();
}

/// A server that wants nonce `n1` on its token endpoint: a proof without it is
/// refused with `use_dpop_nonce` before anything else in the request is looked at.
fn nonce_demanding_token_endpoint(
    server: &mut mockito::Server,
    nonce: &'static str,
    body: String,
    refusals: usize,
    accepted: usize,
) -> (mockito::Mock, mockito::Mock, Seen) {
    let seen: Seen = Arc::default();
    let (s1, s2) = (Arc::clone(&seen), Arc::clone(&seen));
    let refuse = server
        .mock("POST", "/token")
        .match_request(move |r| {
            let p = proof_of(r).unwrap_or_default();
            let wrong = nonce_of(&p).as_deref() != Some(nonce);
            if wrong {
                s1.lock()
                    .unwrap()
                    .push(r.utf8_lossy_body().unwrap().into_owned());
            }
            wrong
        })
        .with_status(400)
        .with_header("dpop-nonce", nonce)
        .with_body(r#"{"error":"use_dpop_nonce","error_description":"nonce required"}"#)
        .expect(refusals)
        .create();
    let accept = server
        .mock("POST", "/token")
        .match_request(move |r| {
            let p = proof_of(r).unwrap_or_default();
            let right = nonce_of(&p).as_deref() == Some(nonce);
            if right {
                s2.lock()
                    .unwrap()
                    .push(r.utf8_lossy_body().unwrap().into_owned());
            }
            right
        })
        .with_header("dpop-nonce", nonce)
        .with_body(body)
        .expect(accepted)
        .create();
    (refuse, accept, seen)
}

#[test]
fn the_authorization_server_nonce_costs_one_retry_and_a_rotating_refresh_token_is_sent_only_with_it(
) {
    let mut server = mockito::Server::new();
    let (refuse, accept, bodies) = nonce_demanding_token_endpoint(
        &mut server,
        "as-nonce-1",
        dpop_token("at-two-6f7a8b9c0d", Some("rt-second-8d7c6b5a")),
        1,
        2,
    );
    let url = format!("{}/token", server.url());
    let client = Client::new(
        RefreshToken::new(&url, "id", "", "rt-first-5c4b3a29"),
        opts().dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    client.token().unwrap();
    // The second renewal already knows the nonce: no refusal.
    client.refresh().unwrap();
    refuse.assert();
    accept.assert();
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    // The refused request and its retry carry the same refresh token: the server refused
    // before using it. The next renewal sends the rotated one.
    assert!(bodies[0].contains("rt-first") && bodies[1].contains("rt-first"));
    assert!(bodies[2].contains("rt-second"));
    let stats = client.stats();
    assert_eq!(stats.dpop_nonce_retries, 1);
    assert_eq!(stats.token_requests(), 3);
}

#[test]
fn a_repeated_nonce_refusal_is_returned_not_looped() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_status(400)
        .with_header("dpop-nonce", "always-new")
        .with_body(r#"{"error":"use_dpop_nonce"}"#)
        .expect(2)
        .create();
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "id",
            "cs+/=:secret-9f8e7d",
        ),
        opts().dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::OAuth);
    assert_eq!(e.oauth().unwrap().error, "use_dpop_nonce");
    m.assert();
}

#[test]
fn api_requests_carry_a_proof_bound_to_the_token_and_answer_the_resource_nonce_once() {
    let mut server = mockito::Server::new();
    let _token = server
        .mock("POST", "/token")
        .with_body(dpop_token("at-one-1a2b3c4d5e", None))
        .create();
    let seen: Seen = Arc::default();
    let (s1, s2) = (Arc::clone(&seen), Arc::clone(&seen));
    let challenge = server
        .mock("GET", "/api/thing")
        .match_query(mockito::Matcher::Any)
        .match_request(move |r| {
            let p = proof_of(r).unwrap_or_default();
            s1.lock().unwrap().push(p.clone());
            nonce_of(&p).as_deref() != Some("rs-1")
        })
        .with_status(401)
        .with_header("dpop-nonce", "rs-1")
        .with_header(
            "www-authenticate",
            r#"DPoP error="use_dpop_nonce", error_description="nonce""#,
        )
        .expect(1)
        .create();
    let ok = server
        .mock("GET", "/api/thing")
        .match_query(mockito::Matcher::Any)
        .match_request(move |r| {
            let p = proof_of(r).unwrap_or_default();
            let auth = r.header("authorization")[0].to_str().unwrap().to_owned();
            let good = nonce_of(&p).as_deref() == Some("rs-1") && auth == "DPoP at-one-1a2b3c4d5e";
            if good {
                s2.lock().unwrap().push(p);
            }
            good
        })
        .with_header("dpop-nonce", "rs-1")
        .with_body("{}")
        .expect(2)
        .create();
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "id",
            "cs+/=:secret-9f8e7d",
        ),
        opts().dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    let url = format!("{}/api/thing?page=2", server.url());
    assert_eq!(client.get(&url).unwrap().status, 200);
    assert_eq!(client.get(&url).unwrap().status, 200);
    challenge.assert();
    ok.assert();
    let proofs = seen.lock().unwrap().clone();
    let (claims, _) = verify(&proofs[1]);
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], format!("{}/api/thing", server.url()));
    use base64::Engine;
    use sha2::Digest;
    let ath = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(b"at-one-1a2b3c4d5e"));
    assert_eq!(claims["ath"], ath);
    let stats = client.stats();
    assert_eq!(stats.dpop_nonce_retries, 1, "one per origin and nonce");
    assert_eq!(stats.retries_after_401, 0, "a nonce is not a token problem");
    assert_eq!(stats.token_requests(), 1);
    // Headers for callers with their own HTTP stack: the same token, a fresh proof.
    let headers = client.request_headers("post", &url).unwrap();
    assert_eq!(
        headers.authorization.expose_secret(),
        "DPoP at-one-1a2b3c4d5e"
    );
    let (claims, _) = verify(headers.dpop.unwrap().expose_secret());
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["nonce"], "rs-1");
}

#[test]
fn a_repeated_resource_nonce_refusal_is_returned_without_renewal() {
    let mut server = mockito::Server::new();
    let token = server
        .mock("POST", "/token")
        .with_body(dpop_token("at-one-1a2b3c4d5e", None))
        .expect(1)
        .create();
    let api = server
        .mock("GET", "/api")
        .with_status(401)
        .with_header("dpop-nonce", "again")
        .with_header("www-authenticate", r#"DPoP error="use_dpop_nonce""#)
        .expect(2)
        .create();
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "id",
            "cs+/=:secret-9f8e7d",
        ),
        opts().dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    assert_eq!(
        client.get(&format!("{}/api", server.url())).unwrap().status,
        401
    );
    token.assert();
    api.assert();
}

#[test]
fn the_key_is_kept_with_the_session_in_the_store_and_used_after_a_restart() {
    let mut server = mockito::Server::new();
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let m = server
        .mock("POST", "/token")
        .match_request(move |r| {
            s.lock().unwrap().push(proof_of(r).unwrap_or_default());
            true
        })
        .with_body_from_request(|r| {
            let body = r.utf8_lossy_body().unwrap();
            let next = if body.contains("rt-first") {
                "rt-second-8d7c6b5a"
            } else {
                "rt-third"
            };
            dpop_token("at-two-6f7a8b9c0d", Some(next)).into()
        })
        .expect(2)
        .create();
    let url = format!("{}/token", server.url());
    let store = Arc::new(MemoryStore::new());
    let first_key = DpopKey::generate(DpopAlgorithm::Es256).unwrap();
    let first_thumb = first_key.thumbprint().to_owned();
    let options = |key: DpopKey| {
        opts()
            .store(store.clone())
            .store_key("alice")
            .dpop(Dpop::new(key))
    };
    let first = Client::new(
        RefreshToken::new(&url, "public-app", "", "rt-first-5c4b3a29"),
        options(first_key),
    )
    .unwrap();
    first.token().unwrap();
    drop(first);
    // "After a restart": a new process with a new key of its own starts from the store.
    let second_key = DpopKey::generate(DpopAlgorithm::Es256).unwrap();
    let second = Client::new(
        RefreshToken::new(&url, "public-app", "", "rt-first-5c4b3a29"),
        options(second_key),
    )
    .unwrap();
    let adopted = second.token().unwrap();
    assert_eq!(adopted.dpop_key().unwrap().thumbprint(), first_thumb);
    assert_eq!(second.dpop_key().unwrap().thumbprint(), first_thumb);
    // Its renewal sends the stored refresh token with the session's key.
    second.refresh().unwrap();
    m.assert();
    let proofs = seen.lock().unwrap().clone();
    assert_eq!(proofs.len(), 2);
    for p in &proofs {
        assert_eq!(thumbprint(&verify(p).1), first_thumb);
    }
    // The record keeps the key as a private JWK, read back into the same key.
    let record: StoredToken =
        StoredToken::from_json(&StoredToken::from_token(&adopted, None).to_json()).unwrap();
    let key = DpopKey::from_jwk(record.dpop_key.unwrap().expose_secret()).unwrap();
    assert_eq!(key.thumbprint(), first_thumb);
}

/// A store whose records come back with their DPoP key unreadable.
struct LosingKeys(MemoryStore);

impl authcore::TokenStore for LosingKeys {
    fn load(
        &self,
        lock: &authcore::StoreLock,
        key: &authcore::StoreKey,
    ) -> authcore::Result<Option<StoredToken>> {
        Ok(self.0.load(lock, key)?.map(|mut r| {
            if r.dpop_key.is_some() {
                r.dpop_key = Some("{not a key}".into());
            }
            r
        }))
    }
    fn lock(
        &self,
        key: &authcore::StoreKey,
        deadline: std::time::Instant,
    ) -> authcore::Result<authcore::StoreLock> {
        self.0.lock(key, deadline)
    }
    fn save(
        &self,
        lock: &authcore::StoreLock,
        key: &authcore::StoreKey,
        token: &StoredToken,
    ) -> authcore::Result<()> {
        self.0.save(lock, key, token)
    }
    fn remove(&self, lock: &authcore::StoreLock, key: &authcore::StoreKey) -> authcore::Result<()> {
        self.0.remove(lock, key)
    }
}

#[test]
fn a_stored_dpop_session_whose_key_is_lost_needs_a_new_sign_in_said_clearly() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_body(dpop_token("at-two-6f7a8b9c0d", Some("rt-second-8d7c6b5a")))
        .expect(1)
        .create();
    let url = format!("{}/token", server.url());
    let store = Arc::new(LosingKeys(MemoryStore::new()));
    let client = |key: DpopKey| {
        Client::new(
            RefreshToken::new(&url, "public-app", "", "rt-first-5c4b3a29"),
            opts()
                .store(store.clone())
                .store_key("alice")
                .dpop(Dpop::new(key)),
        )
        .unwrap()
    };
    let first = client(DpopKey::generate(DpopAlgorithm::Es256).unwrap());
    first.token().unwrap();
    let second = client(DpopKey::generate(DpopAlgorithm::Es256).unwrap());
    // The stored token cannot be sent without its key, nor renewed with another one.
    let e = err(second.get(&format!("{}/api", server.url())));
    assert_eq!(e.kind(), ErrorKind::ReauthenticationRequired, "{e}");
    assert!(e.to_string().contains("key"), "{e}");
    assert!(e.to_string().contains("sign in again"), "{e}");
    // Nor can its refresh token be used: no request is sent with another key.
    let e = err(second.refresh());
    assert_eq!(e.kind(), ErrorKind::ReauthenticationRequired, "{e}");
    assert!(e.to_string().contains("sign in again"), "{e}");
    // The session is not ended in the store: a process that can read the key (a newer
    // release, say) goes on with it.
    use authcore::TokenStore;
    let key = second.store_key().expect("a store key");
    let lock = store
        .0
        .lock(
            &key,
            std::time::Instant::now() + std::time::Duration::from_secs(2),
        )
        .unwrap();
    let record = store.0.load(&lock, &key).unwrap().expect("the record");
    assert!(!record.revoked, "a tombstone was written");
    m.assert();
}

#[test]
fn a_client_credentials_session_whose_stored_key_is_lost_just_gets_a_new_token() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_body(dpop_token("at-one-1a2b3c4d5e", None))
        .expect(2)
        .create();
    let url = format!("{}/token", server.url());
    let store = Arc::new(LosingKeys(MemoryStore::new()));
    let client = || {
        Client::new(
            ClientCredentials::new(&url, "id", "cs+/=:secret-9f8e7d"),
            opts().store(store.clone()).dpop(Dpop::generate().unwrap()),
        )
        .unwrap()
    };
    client().token().unwrap();
    let second = client();
    let token = second.token().unwrap();
    assert_eq!(
        token.dpop_key().unwrap().thumbprint(),
        second.dpop_key().unwrap().thumbprint()
    );
    m.assert();
}

#[test]
fn options_debug_shows_the_thumbprint_not_the_key() {
    let key = DpopKey::generate(DpopAlgorithm::Es256).unwrap();
    let jwk = key.to_jwk();
    let d: Value = serde_json::from_str(jwk.expose_secret()).unwrap();
    let d = d["d"].as_str().unwrap().to_owned();
    let thumb = key.thumbprint().to_owned();
    let options = Options::default().dpop(Dpop::new(key));
    let text = format!("{options:?}");
    assert!(text.contains(&thumb) && !text.contains(&d), "{text}");
}

#[test]
fn a_resent_token_request_carries_a_new_client_assertion() {
    // private_key_jwt: an assertion is single use, so the proof-only retry after a DPoP
    // nonce (and a retry after a transient failure) signs a new one.
    let mut server = mockito::Server::new();
    let bodies: Seen = Arc::default();
    let b = Arc::clone(&bodies);
    // Sees every request once, matches none: the bodies in order.
    let _recorder = server
        .mock("POST", "/token")
        .match_request(move |r| {
            b.lock()
                .unwrap()
                .push(r.utf8_lossy_body().unwrap().into_owned());
            false
        })
        .create();
    // Then, of the mocks that match, the first still expecting a request answers:
    // a DPoP nonce refusal, a 503, then the token.
    let refuse = server
        .mock("POST", "/token")
        .match_request(|r| nonce_of(&proof_of(r).unwrap_or_default()).as_deref() != Some("n1"))
        .with_status(400)
        .with_header("dpop-nonce", "n1")
        .with_body(r#"{"error":"use_dpop_nonce"}"#)
        .expect(1)
        .create();
    let unavailable = server
        .mock("POST", "/token")
        .with_status(503)
        .expect(1)
        .create();
    let accept = server
        .mock("POST", "/token")
        .with_body(dpop_token("at-one-1a2b3c4d5e", None))
        .expect(1)
        .create();
    let key = rcgen::KeyPair::generate().unwrap();
    let private =
        authcore::grant::PrivateKey::from_pem(key.serialize_pem().as_bytes(), None).unwrap();
    let grant = ClientCredentials::new(format!("{}/token", server.url()), "jwt-client", "")
        .private_key(private);
    let client = Client::new(grant, opts().dpop(Dpop::generate().unwrap())).unwrap();
    client.token().unwrap();
    refuse.assert();
    unavailable.assert();
    accept.assert();
    let assertions: Vec<String> = bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            url::form_urlencoded::parse(b.as_bytes())
                .find(|(k, _)| k == "client_assertion")
                .map(|(_, v)| v.into_owned())
                .expect("an assertion")
        })
        .collect();
    assert_eq!(assertions.len(), 3);
    let jti = |a: &str| {
        let claims = a.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap();
        serde_json::from_slice::<Value>(&claims).unwrap()["jti"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let distinct: std::collections::HashSet<_> = assertions.iter().map(|a| jti(a)).collect();
    assert_eq!(distinct.len(), 3, "an assertion was sent twice");
}

#[test]
fn a_client_that_refuses_bearer_tokens_does_not_adopt_one_from_its_store() {
    let mut server = mockito::Server::new();
    let bearer = server
        .mock("POST", "/token")
        .match_request(|r| proof_of(r).is_none())
        .with_body(
            r#"{"access_token":"at-one-1a2b3c4d5e","token_type":"Bearer","expires_in":3600}"#,
        )
        .expect(1)
        .create();
    let dpop = server
        .mock("POST", "/token")
        .match_request(|r| proof_of(r).is_some())
        .with_body(dpop_token("at-two-6f7a8b9c0d", None))
        .expect(1)
        .create();
    let url = format!("{}/token", server.url());
    let store = Arc::new(MemoryStore::new());
    // A process not yet configured for DPoP saves a bearer token...
    let old = Client::new(
        ClientCredentials::new(&url, "id", "cs+/=:secret-9f8e7d"),
        opts().store(store.clone()),
    )
    .unwrap();
    old.token().unwrap();
    // ...which one that requires DPoP does not take.
    let new = Client::new(
        ClientCredentials::new(&url, "id", "cs+/=:secret-9f8e7d"),
        opts().store(store.clone()).dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    assert_eq!(new.token().unwrap().token_type(), "DPoP");
    bearer.assert();
    dpop.assert();
}

#[test]
fn a_failed_refresh_from_a_stored_session_leaves_the_clients_key_as_it_was() {
    let mut server = mockito::Server::new();
    let first = server
        .mock("POST", "/token")
        .match_body(mockito::Matcher::Regex("rt-first".into()))
        .with_body(dpop_token("at-one-1a2b3c4d5e", Some("rt-second-8d7c6b5a")))
        .expect(1)
        .create();
    let url = format!("{}/token", server.url());
    let store = Arc::new(MemoryStore::new());
    let client = |rt: &str| {
        Client::new(
            RefreshToken::new(&url, "public-app", "", rt),
            opts()
                .store(store.clone())
                .store_key("alice")
                .dpop(Dpop::generate().unwrap()),
        )
        .unwrap()
    };
    // Another sign-in of alice, with its own key, is in the store.
    let other = client("rt-first-5c4b3a29");
    other.token().unwrap();
    first.assert();
    // This client's forced renewal uses the stored refresh token with the stored key,
    // and the server fails: its key stays its own.
    let unavailable = server
        .mock("POST", "/token")
        .with_status(503)
        .expect_at_least(1)
        .create();
    let this = client("rt-other");
    let own = this.dpop_key().unwrap().thumbprint().to_owned();
    assert_ne!(own, other.dpop_key().unwrap().thumbprint());
    let e = err(this.refresh());
    assert_eq!(e.http_status(), Some(503), "{e}");
    unavailable.assert();
    assert_eq!(this.dpop_key().unwrap().thumbprint(), own);
}

#[test]
fn a_refused_proof_is_not_a_reason_to_renew_and_the_callers_dpop_header_is_replaced() {
    let mut server = mockito::Server::new();
    let token = server
        .mock("POST", "/token")
        .with_body(dpop_token("at-one-1a2b3c4d5e", None))
        .expect(1)
        .create();
    let proofs: Seen = Arc::default();
    let p = Arc::clone(&proofs);
    let api = server
        .mock("GET", "/api")
        .match_request(move |r| {
            let all: Vec<String> = r
                .header("dpop")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            p.lock().unwrap().extend(all);
            true
        })
        .with_status(401)
        .with_header("www-authenticate", r#"DPoP error="invalid_dpop_proof""#)
        .expect(1)
        .create();
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "id",
            "cs+/=:secret-9f8e7d",
        ),
        opts().dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    let response = client
        .request(
            "GET",
            &format!("{}/api", server.url()),
            &[("DPoP", "caller-proof")],
            &[],
        )
        .unwrap();
    assert_eq!(response.status, 401);
    token.assert();
    api.assert();
    let proofs = proofs.lock().unwrap().clone();
    assert_eq!(proofs.len(), 1, "one DPoP header: {proofs:?}");
    assert_ne!(proofs[0], "caller-proof");
    assert_eq!(client.stats().renewals_rejected, 0);
}

#[test]
fn fresh_request_headers_come_from_the_cached_token_only() {
    let mut server = mockito::Server::new();
    let token = server
        .mock("POST", "/token")
        .with_body(dpop_token("at-fresh-5e6f7a8b", None))
        .expect(1)
        .create();
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "id", "secret-1a2b"),
        opts().dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    let url = format!("{}/api/thing?x=1", server.url());
    // No token yet: nothing, and no token request.
    assert!(client.fresh_request_headers("GET", &url).is_none());
    client.token().unwrap();
    let headers = client.fresh_request_headers("get", &url).unwrap().unwrap();
    assert_eq!(
        headers.authorization.expose_secret(),
        "DPoP at-fresh-5e6f7a8b"
    );
    let (claims, jwk) = verify(headers.dpop.unwrap().expose_secret());
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], format!("{}/api/thing", server.url()));
    assert_eq!(
        Some(thumbprint(&jwk)),
        client.dpop_key().map(|k| k.thumbprint().to_owned())
    );
    // A URL the client would not send a token to is refused, as by request_headers.
    let e = client
        .fresh_request_headers("GET", "http://api.example.com/x")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    token.assert();
}

#[test]
fn a_refused_bearer_answer_to_a_refresh_ends_the_session_without_resending_the_spent_refresh_token()
{
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-second-8d7c6b5a"}"#)
        .expect(1)
        .create();
    let client = Client::new(
        RefreshToken::new(
            format!("{}/token", server.url()),
            "public-app",
            "",
            "rt-first-5c4b3a29",
        ),
        opts().dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::ReauthenticationRequired, "{e}");
    assert!(e.to_string().contains("Bearer"), "{e}");
    // The refresh token the server took is not sent again.
    let e = err(client.token());
    assert_eq!(e.kind(), ErrorKind::ReauthenticationRequired, "{e}");
    m.assert();
}

#[test]
fn headers_for_own_http_stacks_never_carry_a_line_break_and_methods_are_tokens() {
    let client = Client::personal_access_token("pat-0f1e2d3c4b5a\r\nX-Evil: 1");
    let e = err(client.request_headers("GET", "https://api.example/x"));
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = err(client.authorization_header());
    assert_eq!(e.kind(), ErrorKind::Config);
    let key = DpopKey::generate(DpopAlgorithm::EdDsa).unwrap();
    for bad in ["", "GET X", "GET\r\n", "G(E)T"] {
        let e = key
            .proof(bad, "https://api.example/x", None, None)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}");
    }
    assert!(key
        .proof("PATCH", "https://api.example/x", None, None)
        .is_ok());
}

#[test]
fn a_stored_token_no_provider_could_have_issued_is_renewed_over_not_sent() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .with_body(
            r#"{"access_token":"at-one-1a2b3c4d5e","token_type":"Bearer","expires_in":3600}"#,
        )
        .expect(1)
        .create();
    let store = Arc::new(MemoryStore::new());
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "id",
            "cs+/=:secret-9f8e7d",
        ),
        opts().store(store.clone()),
    )
    .unwrap();
    let key = client.store_key().unwrap();
    use authcore::TokenStore;
    let forged = authcore::Token::new(
        "at\r\nX-Evil: from-the-store",
        None,
        Some(std::time::Duration::from_secs(3600)),
        std::time::Instant::now(),
    );
    let lock = store
        .lock(
            &key,
            std::time::Instant::now() + std::time::Duration::from_secs(2),
        )
        .unwrap();
    store
        .save(&lock, &key, &StoredToken::from_token(&forged, None))
        .unwrap();
    drop(lock);
    let headers = client
        .request_headers("GET", "https://api.example/x")
        .unwrap();
    assert_eq!(
        headers.authorization.expose_secret(),
        "Bearer at-one-1a2b3c4d5e"
    );
    m.assert();
}

#[test]
fn a_client_without_dpop_options_keeps_an_adopted_dpop_session_dpop() {
    let mut server = mockito::Server::new();
    let first = server
        .mock("POST", "/token")
        .match_body(mockito::Matcher::Regex("rt-first".into()))
        .with_body(dpop_token("at-one-1a2b3c4d5e", Some("rt-second-8d7c6b5a")))
        .expect(1)
        .create();
    let url = format!("{}/token", server.url());
    let store = Arc::new(MemoryStore::new());
    let dpop = Client::new(
        RefreshToken::new(&url, "public-app", "", "rt-first-5c4b3a29"),
        opts()
            .store(store.clone())
            .store_key("alice")
            .dpop(Dpop::generate().unwrap()),
    )
    .unwrap();
    dpop.token().unwrap();
    first.assert();
    // A process without DPoP options adopts the session; the provider then answers
    // Bearer to its refresh: refused, the session stays bound to its key.
    let bearer = server
        .mock("POST", "/token")
        .with_body(r#"{"access_token":"at-two-6f7a8b9c0d","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-third"}"#)
        .expect(1)
        .create();
    let plain = Client::new(
        RefreshToken::new(&url, "public-app", "", "rt-first-5c4b3a29"),
        opts().store(store.clone()).store_key("alice"),
    )
    .unwrap();
    assert_eq!(plain.token().unwrap().token_type(), "DPoP");
    let e = err(plain.refresh());
    assert_eq!(e.kind(), ErrorKind::ReauthenticationRequired, "{e}");
    assert!(e.to_string().contains("Bearer"), "{e}");
    bearer.assert();
}

//! Property tests: the token response parser never panics, whatever the bytes.

use std::time::{Duration, Instant};

use authcore::parse_token_response;
use proptest::prelude::*;

fn json_like() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[a-zA-Z0-9 ._-]{0,40}".prop_map(|s| format!("{s:?}")),
        Just("{}".to_owned()),
        Just("[1,\"x\"]".to_owned()),
    ];
    let key = prop_oneof![
        Just("access_token"),
        Just("token_type"),
        Just("expires_in"),
        Just("refresh_token"),
        Just("error"),
        Just("error_description"),
        Just("scope"),
        Just("other"),
    ];
    proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
        let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
        format!("{{{}}}", body.join(",")).into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512), status in 100u16..600) {
        let _ = parse_token_response(status, &body, Instant::now(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn parser_never_panics_on_json_shaped_bodies(body in json_like()) {
        match parse_token_response(200, &body, Instant::now(), None) {
            Ok(t) => prop_assert!(!t.access_token().is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

mod sealed_sign_ins {
    //! `finish_pending` on arbitrary input: never a panic, never a token request, and
    //! the error names no part of the input.

    use super::*;
    use authcore::grant::AuthorizationCode;
    use authcore::{AuthorizationCodeFlow, ErrorKind, Options};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use std::sync::OnceLock;

    struct Fixture {
        _server: mockito::ServerGuard,
        token: mockito::Mock,
        flow: AuthorizationCodeFlow,
        /// A real sealed sign-in of `flow`, and its state.
        pending: String,
        state: String,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let mut server = mockito::Server::new();
            let token = server.mock("POST", "/token").expect(0).create();
            let config = AuthorizationCode::new(
                format!("{}/authorize", server.url()),
                format!("{}/token", server.url()),
                "web-app",
                "secret-9f8e7d",
                "https://app.example/callback",
            );
            let flow = AuthorizationCodeFlow::new(config, Options::default())
                .unwrap()
                .pending_key(&[42u8; 32])
                .unwrap();
            let request = flow.authorization_url().unwrap();
            Fixture {
                _server: server,
                token,
                flow,
                pending: request.pending.expose_secret().to_owned(),
                state: request.state,
            }
        })
    }

    /// Refused (typed), and the input appears nowhere in the error.
    fn check_refused(callback: &str, pending: &str) -> Result<(), TestCaseError> {
        let f = fixture();
        let e = match f.flow.finish_pending(callback, pending) {
            Ok(_) => return Err(TestCaseError::fail("an arbitrary pending sign-in finished")),
            Err(e) => e,
        };
        prop_assert!(
            matches!(e.kind(), ErrorKind::Config | ErrorKind::StateMismatch),
            "unexpected kind {:?}: {e}",
            e.kind()
        );
        let text = format!("{e} {e:?}");
        // A short input can occur in any sentence by chance; a longer one cannot.
        if pending.trim().len() >= 8 {
            prop_assert!(
                !text.contains(pending.trim()),
                "the input leaked into: {text}"
            );
        }
        prop_assert!(!text.contains(&f.state));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_strings_are_refused(pending in any::<String>()) {
            check_refused(&format!("https://app.example/callback?code=c&state={}", fixture().state), &pending)?;
        }

        #[test]
        fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            check_refused(&format!("/callback?code=c&state={}", fixture().state), &URL_SAFE_NO_PAD.encode(&bytes))?;
            // With the format's version byte first, so that the AEAD is what refuses.
            let mut versioned = vec![2u8];
            versioned.extend_from_slice(&bytes);
            check_refused(&format!("/callback?code=c&state={}", fixture().state), &URL_SAFE_NO_PAD.encode(&versioned))?;
        }

        #[test]
        fn a_real_sealed_sign_in_altered_anywhere_is_refused(
            at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
            callback in any::<String>(),
        ) {
            let f = fixture();
            let mut bytes = URL_SAFE_NO_PAD.decode(&f.pending).unwrap();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            check_refused(&callback, &URL_SAFE_NO_PAD.encode(&bytes))?;
            check_refused(&format!("/callback?code=c&state={}", f.state), &URL_SAFE_NO_PAD.encode(&bytes))?;
        }
    }

    #[test]
    fn no_token_request_was_made() {
        // Runs after or alongside the properties: in either case none may have gone out.
        let f = fixture();
        for _ in 0..3 {
            check_refused("/callback?state=x", "garbage").unwrap();
        }
        f.token.assert();
    }
}

/// DPoP proofs (RFC 9449), checked against an independent JOSE implementation.
mod dpop_proofs {
    use std::collections::HashSet;
    use std::sync::OnceLock;

    use authcore::{dpop_htu, DpopAlgorithm, DpopKey};
    use base64::Engine;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
    use proptest::prelude::*;
    use serde_json::Value;
    use sha2::Digest;

    fn keys() -> &'static [DpopKey] {
        static KEYS: OnceLock<Vec<DpopKey>> = OnceLock::new();
        KEYS.get_or_init(|| {
            [
                DpopAlgorithm::Es256,
                DpopAlgorithm::EdDsa,
                DpopAlgorithm::Rs256,
            ]
            .into_iter()
            .map(|a| DpopKey::generate(a).unwrap())
            .collect()
        })
    }

    fn claims_of(proof: &str) -> Value {
        let header = decode_header(proof).unwrap();
        let key = DecodingKey::from_jwk(header.jwk.as_ref().unwrap()).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        decode::<Value>(proof, &key, &validation).unwrap().claims
    }

    fn url() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just("http"), Just("https"), Just("HTTPS")],
            "[a-zA-Z][a-zA-Z0-9-]{0,10}(\\.[a-zA-Z]{2,5}){0,2}",
            prop_oneof![
                Just(String::new()),
                Just(":443".to_owned()),
                Just(":80".to_owned()),
                (1u16..65535).prop_map(|p| format!(":{p}"))
            ],
            proptest::collection::vec("[a-zA-Z0-9._~%-]{0,8}", 0..4),
            proptest::option::of("[a-zA-Z0-9=&]{0,12}"),
            proptest::option::of("[a-zA-Z0-9]{0,8}"),
        )
            .prop_map(|(scheme, host, port, segments, query, fragment)| {
                let mut u = format!("{scheme}://{host}{port}/{}", segments.join("/"));
                if let Some(q) = query {
                    u.push('?');
                    u.push_str(&q);
                }
                if let Some(f) = fragment {
                    u.push('#');
                    u.push_str(&f);
                }
                u
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn every_proof_verifies_with_its_public_key_and_says_what_was_asked(
            which in 0usize..3,
            method in "[A-Za-z]{1,8}",
            url in url(),
            token in proptest::option::of("[ -~]{1,64}"),
            nonce in proptest::option::of("[!#-\\[\\]-~]{1,40}"),
        ) {
            let key = &keys()[which];
            let Ok(htu) = dpop_htu(&url) else {
                // Not a URL a request could go to: no proof either.
                prop_assert!(key.proof(&method, &url, None, None).is_err());
                return Ok(());
            };
            let proof = key.proof(&method, &url, token.as_deref(), nonce.as_deref()).unwrap();
            let claims = claims_of(proof.expose_secret());
            prop_assert_eq!(claims["htm"].as_str().unwrap(), method.to_ascii_uppercase());
            prop_assert_eq!(claims["htu"].as_str().unwrap(), htu.as_str());
            prop_assert_eq!(claims["nonce"].as_str(), nonce.as_deref());
            let ath = token.map(|t| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(t.as_bytes()))
            });
            prop_assert_eq!(claims["ath"].as_str(), ath.as_deref());
        }

        #[test]
        fn htu_has_no_query_or_fragment_is_lowercase_and_stable(url in url()) {
            if let Ok(htu) = dpop_htu(&url) {
                prop_assert!(!htu.contains('?') && !htu.contains('#'));
                let parsed = url::Url::parse(&htu).unwrap();
                prop_assert_eq!(parsed.scheme(), parsed.scheme().to_ascii_lowercase());
                let host = parsed.host_str().unwrap();
                prop_assert_eq!(host, host.to_ascii_lowercase());
                let default_port = if parsed.scheme() == "https" { ":443/" } else { ":80/" };
                prop_assert!(!htu.contains(&format!("{host}{default_port}")), "default port kept: {}", htu);
                prop_assert_eq!(dpop_htu(&htu).unwrap(), htu.clone());
            }
        }
    }

    #[test]
    fn no_two_proofs_share_a_jti() {
        let mut seen = HashSet::new();
        for key in keys() {
            for _ in 0..300 {
                let proof = key
                    .proof("GET", "https://api.example/x", Some("t"), None)
                    .unwrap();
                let jti = claims_of(proof.expose_secret())["jti"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(jti.len() >= 20, "{jti}");
                assert!(seen.insert(jti), "a jti repeated");
            }
        }
    }
}

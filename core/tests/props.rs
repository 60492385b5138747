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

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

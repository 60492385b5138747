//! No secret in any `Debug` output of the public types.

mod common;

use authcore::grant::{ApiKey, AuthorizationCode, ClientCredentials, RefreshToken, StaticToken};
use authcore::{AuthorizationCodeFlow, Client, Secret, Token};
use common::{assert_clean, opts};

#[test]
fn debug_of_every_public_type_is_redacted() {
    let secret = "cs+/=:secret-9f8e7d";
    let outputs = vec![
        format!("{:?}", Secret::new(secret)),
        format!("{}", Secret::new(secret)),
        format!("{:?}", ApiKey::sandbox("sk_live_apikey_0123456789")),
        format!("{:?}", ClientCredentials::vibe("id", secret)),
        format!(
            "{:?}",
            RefreshToken::new("https://x/t", "id", secret, "rt-first-5c4b3a29")
        ),
        format!("{:?}", StaticToken::new("pat-0f1e2d3c4b5a")),
        format!(
            "{:?}",
            Token::never_expiring("at-one-1a2b3c4d5e")
                .with_refresh_token(Some(Secret::new("rt-second-8d7c6b5a")))
        ),
        format!("{:?}", Client::personal_access_token("pat-0f1e2d3c4b5a")),
        format!("{:?}", opts()),
    ];
    let config = AuthorizationCode::viewneo("id", secret, "https://app.example/cb");
    let flow = AuthorizationCodeFlow::new(config.clone(), opts()).unwrap();
    let request = flow.authorization_url().unwrap();
    let mut outputs = outputs;
    outputs.push(format!("{config:?}"));
    outputs.push(format!("{flow:?}"));
    outputs.push(format!("{request:?}"));
    for out in &outputs {
        assert_clean(out);
    }
    // The pending state is not printed by the flow's Debug.
    assert!(!format!("{flow:?}").contains(&request.state));
}

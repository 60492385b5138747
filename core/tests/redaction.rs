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
    // The pending state is not printed by the flow's Debug, nor its pending key.
    assert!(!format!("{flow:?}").contains(&request.state));
    let key = *b"pending-key-never-printed-0a1b2c";
    let keyed = AuthorizationCodeFlow::new(config.clone(), opts())
        .unwrap()
        .pending_key(&key)
        .unwrap();
    let printed = format!("{keyed:?} {keyed:#?}");
    assert!(!printed.contains("pending-key-never-printed"), "{printed}");
    assert!(!printed.contains(&format!("{:?}", &key[..4])), "{printed}");
}

/// A provider that echoes the credential it was sent: the value is removed from the
/// error whatever its shape — short, letters only, punctuated — for the client secret
/// (Basic and body), the API key and the refresh token.
#[test]
fn credentials_echoed_by_the_provider_are_removed_by_value() {
    use authcore::AuthMethod;
    let mut server = mockito::Server::new();
    server
        .mock("POST", "/token")
        .with_status(400)
        .with_header("content-type", "application/json")
        .with_body_from_request(|req| {
            let body = String::from_utf8_lossy(req.body().unwrap()).into_owned();
            let auth = req.header("authorization").first().map(|v| v.to_str().unwrap().to_owned());
            let echoed = serde_json::json!({
                "error": "invalid_client",
                "error_description": format!("you sent {body} and {auth:?}: hunter is wrong, so is a.b-c! and 'rtok' and xK3"),
            });
            echoed.to_string().into_bytes()
        })
        .create();
    let url = format!("{}/token", server.url());
    for method in [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost] {
        let client = Client::new(
            ClientCredentials::new(&url, "id", "hunter").auth_method(method),
            opts(),
        )
        .unwrap();
        let text = client.token().unwrap_err().to_string();
        assert!(!text.contains("hunter"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
    let client = Client::new(RefreshToken::new(&url, "id", "a.b-c!", "rtok"), opts()).unwrap();
    let text = format!("{:?}", client.token().unwrap_err());
    assert!(!text.contains("a.b-c!"), "{text}");
    assert!(!text.contains("'rtok'"), "{text}");
    // Shorter than four characters: left as it is (nothing is hidden by garbling).
    assert!(text.contains("xK3"), "{text}");
}

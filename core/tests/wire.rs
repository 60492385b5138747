//! The exact wire format of every grant and preset.

mod common;

use authcore::grant::{ApiKey, AuthorizationCode, ClientCredentials, RefreshToken};
use authcore::{AuthMethod, AuthorizationCodeFlow, Client, ErrorKind};
use base64::Engine;
use common::{err, opts};
use mockito::Matcher;
use serde_json::json;

const ID: &str = "id+/=:x";
const SECRET: &str = "cs+/=:secret-9f8e7d";

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn token_body(access: &str) -> String {
    json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600}).to_string()
}

#[test]
fn api_video_exchanges_the_key_as_json() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/auth/api-key")
        .match_header("content-type", "application/json")
        .match_header("av-origin-client", Matcher::Regex("^authcore:".into()))
        .match_header("user-agent", Matcher::Regex("^authcore/".into()))
        .match_body(Matcher::Json(json!({"apiKey": "sk_live_apikey_0123456789"})))
        .with_body(r#"{"token_type":"Bearer","expires_in":3600,"access_token":"at-one-1a2b3c4d5e","refresh_token":"rt-first-5c4b3a29"}"#)
        .expect(1)
        .create();
    let client = Client::new(
        ApiKey::with_base_url(server.url(), "sk_live_apikey_0123456789"),
        opts(),
    )
    .unwrap();
    let t = client.token().unwrap();
    assert_eq!(t.access_token().expose_secret(), "at-one-1a2b3c4d5e");
    assert_eq!(
        t.refresh_token().unwrap().expose_secret(),
        "rt-first-5c4b3a29"
    );
    m.assert();
}

#[test]
fn api_video_presets_point_at_production_and_sandbox() {
    assert_eq!(ApiKey::production("k").base_url(), "https://ws.api.video");
    assert_eq!(ApiKey::sandbox("k").base_url(), "https://sandbox.api.video");
    assert_eq!(
        ApiKey::with_base_url("http://127.0.0.1:9/", "k").base_url(),
        "http://127.0.0.1:9"
    );
}

#[test]
fn client_credentials_basic_form_encodes_credentials() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/oauth2/token")
        .match_header("content-type", "application/x-www-form-urlencoded")
        .match_header(
            "authorization",
            basic("id%2B%2F%3D%3Ax", "cs%2B%2F%3D%3Asecret-9f8e7d").as_str(),
        )
        .match_body(Matcher::Exact(
            "grant_type=client_credentials&scope=campaigns%3Aread+reporting%3Aread".into(),
        ))
        .with_body(token_body("at-one-1a2b3c4d5e"))
        .expect(1)
        .create();
    let grant = ClientCredentials::new(format!("{}/oauth2/token", server.url()), ID, SECRET)
        .scopes(["campaigns:read", "reporting:read"]);
    let client = Client::new(grant, opts()).unwrap();
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-one-1a2b3c4d5e"
    );
    m.assert();
}

#[test]
fn client_credentials_basic_raw_sends_credentials_unencoded() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/oauth2/token")
        .match_header("authorization", basic(ID, SECRET).as_str())
        .match_body(Matcher::Exact("grant_type=client_credentials".into()))
        .with_body(token_body("at-one-1a2b3c4d5e"))
        .expect(1)
        .create();
    let grant = ClientCredentials::new(format!("{}/oauth2/token", server.url()), ID, SECRET)
        .auth_method(AuthMethod::ClientSecretBasicRaw);
    Client::new(grant, opts()).unwrap().token().unwrap();
    m.assert();
}

#[test]
fn client_credentials_post_puts_credentials_in_the_body() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/oauth2/token")
        .match_header("authorization", Matcher::Missing)
        .match_body(Matcher::Exact(
            "grant_type=client_credentials&client_id=id%2B%2F%3D%3Ax&client_secret=cs%2B%2F%3D%3Asecret-9f8e7d".into(),
        ))
        .with_body(token_body("at-one-1a2b3c4d5e"))
        .expect(1)
        .create();
    let grant = ClientCredentials::new(format!("{}/oauth2/token", server.url()), ID, SECRET)
        .auth_method(AuthMethod::ClientSecretPost);
    Client::new(grant, opts()).unwrap().token().unwrap();
    m.assert();
}

#[test]
fn vibe_preset_is_https_client_credentials() {
    // The preset's endpoint is accepted (HTTPS) without any request being made.
    let client = Client::new(
        ClientCredentials::vibe("id", "secret").scopes(["campaigns:read"]),
        opts(),
    );
    assert!(client.is_ok());
}

#[test]
fn refresh_grant_form_and_json_bodies() {
    let mut server = mockito::Server::new();
    let form = server
        .mock("POST", "/token")
        .match_header("content-type", "application/x-www-form-urlencoded")
        .match_header(
            "authorization",
            basic("id%2B%2F%3D%3Ax", "cs%2B%2F%3D%3Asecret-9f8e7d").as_str(),
        )
        .match_body(Matcher::Exact(
            "grant_type=refresh_token&refresh_token=rt-first-5c4b3a29".into(),
        ))
        .with_body(token_body("at-one-1a2b3c4d5e"))
        .expect(1)
        .create();
    let url = format!("{}/token", server.url());
    Client::new(
        RefreshToken::new(&url, ID, SECRET, "rt-first-5c4b3a29"),
        opts(),
    )
    .unwrap()
    .token()
    .unwrap();
    form.assert();

    let json_mock = server
        .mock("POST", "/token")
        .match_header("content-type", "application/json")
        .match_header("authorization", Matcher::Missing)
        .match_body(Matcher::Json(json!({
            "grant_type": "refresh_token",
            "refresh_token": "rt-first-5c4b3a29",
            "client_id": ID,
            "client_secret": SECRET,
        })))
        .with_body(token_body("at-two-6f7a8b9c0d"))
        .expect(1)
        .create();
    let client = Client::new(
        RefreshToken::new(&url, ID, SECRET, "rt-first-5c4b3a29").json_body(),
        opts(),
    )
    .unwrap();
    let t = client.token().unwrap();
    // No refresh token in the response: the old one is kept (RFC 6749 §6).
    assert!(t.refresh_token().is_none());
    json_mock.assert();
}

#[test]
fn refresh_grant_keeps_old_refresh_token_when_none_returned() {
    let mut server = mockito::Server::new();
    let url = format!("{}/token", server.url());
    let m = server
        .mock("POST", "/token")
        .match_body(Matcher::UrlEncoded(
            "refresh_token".into(),
            "rt-first-5c4b3a29".into(),
        ))
        .with_body(json!({"access_token": "at-one-1a2b3c4d5e", "expires_in": 1}).to_string())
        .expect(2)
        .create();
    let client = Client::new(
        RefreshToken::new(&url, ID, SECRET, "rt-first-5c4b3a29"),
        opts(),
    )
    .unwrap();
    let first = client.token().unwrap();
    assert!(client.invalidate(&first));
    client.token().unwrap();
    m.assert();
}

#[test]
fn authorization_code_viewneo_url_callback_and_json_exchange() {
    let mut server = mockito::Server::new();
    let base = server.url();
    let config =
        AuthorizationCode::viewneo_at(&base, "client-1", SECRET, "http://127.0.0.1/callback");
    let flow = AuthorizationCodeFlow::new(config, opts()).unwrap();
    let req = flow.authorization_url().unwrap();
    let url = url::Url::parse(&req.url).unwrap();
    assert_eq!(url.path(), "/oauth/authorize");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "client-1");
    assert_eq!(q["redirect_uri"], "http://127.0.0.1/callback");
    assert_eq!(q["state"], req.state);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);

    let m = server
        .mock("POST", "/oauth/token")
        .match_header("content-type", "application/json")
        .match_body(Matcher::PartialJson(json!({
            "grant_type": "authorization_code",
            "client_id": "client-1",
            "client_secret": SECRET,
            "redirect_uri": "http://127.0.0.1/callback",
            "code": "authcode-77aa88bb99",
        })))
        .with_body(r#"{"token_type":"Bearer","expires_in":1296000,"access_token":"at-one-1a2b3c4d5e","refresh_token":"rt-first-5c4b3a29"}"#)
        .expect(1)
        .create();
    let callback = format!(
        "http://127.0.0.1/callback?code=authcode-77aa88bb99&state={}",
        req.state
    );
    let client = flow.finish(&callback, &req.state).unwrap();
    // The exchanged token is served from the cache: no further request.
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-one-1a2b3c4d5e"
    );
    m.assert();
    // The state is single use.
    assert_eq!(
        err(flow.finish(&callback, &req.state)).kind(),
        ErrorKind::StateMismatch
    );
}

#[test]
fn authorization_code_form_exchange_sends_the_pkce_verifier() {
    let mut server = mockito::Server::new();
    let config = AuthorizationCode::new(
        format!("{}/oauth2/authorize", server.url()),
        format!("{}/oauth2/token", server.url()),
        "client-1",
        SECRET,
        "http://127.0.0.1/cb",
    );
    let flow = AuthorizationCodeFlow::new(config, opts()).unwrap();
    let req = flow.authorization_url().unwrap();
    let m = server
        .mock("POST", "/oauth2/token")
        .match_header(
            "authorization",
            basic("client-1", "cs%2B%2F%3D%3Asecret-9f8e7d").as_str(),
        )
        .match_body(Matcher::AllOf(vec![
            Matcher::UrlEncoded("grant_type".into(), "authorization_code".into()),
            Matcher::UrlEncoded("code".into(), "authcode-77aa88bb99".into()),
            Matcher::UrlEncoded("redirect_uri".into(), "http://127.0.0.1/cb".into()),
            Matcher::Regex("code_verifier=[A-Za-z0-9_-]{43}".into()),
        ]))
        .with_body(token_body("at-one-1a2b3c4d5e"))
        .expect(1)
        .create();
    flow.finish(
        &format!(
            "http://127.0.0.1/cb?state={}&code=authcode-77aa88bb99",
            req.state
        ),
        &req.state,
    )
    .unwrap();
    m.assert();
}

#[test]
fn authorization_code_rejects_wrong_state_and_surfaces_error_callbacks() {
    let server = mockito::Server::new();
    let config = AuthorizationCode::new(
        format!("{}/a", server.url()),
        format!("{}/t", server.url()),
        "c",
        SECRET,
        "http://127.0.0.1/cb",
    );
    let flow = AuthorizationCodeFlow::new(config, opts()).unwrap();
    let issued = flow.authorization_url().unwrap();
    let e = err(flow.finish("http://127.0.0.1/cb?code=x&state=forged", &issued.state));
    assert_eq!(e.kind(), ErrorKind::StateMismatch);

    let req = flow.authorization_url().unwrap();
    let e = err(flow.finish(
        &format!(
            "http://127.0.0.1/cb?error=access_denied&error_description=User+said+no&state={}",
            req.state
        ),
        &req.state,
    ));
    let o = e.oauth().unwrap();
    assert_eq!(
        (o.error.as_str(), o.description.as_deref(), o.status),
        ("access_denied", Some("User said no"), None)
    );
}

#[test]
fn code_exchange_is_never_retried() {
    let mut server = mockito::Server::new();
    let config = AuthorizationCode::new(
        format!("{}/a", server.url()),
        format!("{}/t", server.url()),
        "c",
        SECRET,
        "http://127.0.0.1/cb",
    );
    let m = server
        .mock("POST", "/t")
        .with_status(503)
        .expect(1)
        .create();
    let flow = AuthorizationCodeFlow::new(config, opts().max_retries(3)).unwrap();
    let req = flow.authorization_url().unwrap();
    let e = err(flow.finish(
        &format!("http://127.0.0.1/cb?code=c1&state={}", req.state),
        &req.state,
    ));
    assert_eq!(e.http_status(), Some(503));
    m.assert();
}

#[test]
fn plain_http_to_remote_hosts_is_refused_unless_opted_out() {
    let e = err(Client::new(
        ClientCredentials::new("http://example.com/token", "i", "s"),
        opts(),
    ));
    assert_eq!(e.kind(), ErrorKind::Config);
    // Said in words every host's user can act on: no option named that a host lacks.
    let text = e.to_string();
    assert!(
        text.contains("refusing plain HTTP to non-loopback host example.com: use https")
            && text.contains("loopback only"),
        "{text}"
    );
    assert!(!text.contains("danger_allow_insecure_http"), "{text}");
    assert!(Client::new(
        ClientCredentials::new("http://example.com/token", "i", "s"),
        opts().danger_allow_insecure_http(true)
    )
    .is_ok());
    let client = Client::personal_access_token("pat-0f1e2d3c4b5a");
    assert_eq!(
        err(client.get("http://example.com/api")).kind(),
        ErrorKind::Config
    );
}

#[test]
fn token_requests_do_not_follow_redirects() {
    let mut server = mockito::Server::new();
    let redirect = server
        .mock("POST", "/token")
        .with_status(302)
        .with_header("location", "/elsewhere")
        .expect(1)
        .create();
    let elsewhere = server.mock("POST", "/elsewhere").expect(0).create();
    let client = Client::new(
        ClientCredentials::new(format!("{}/token", server.url()), "i", SECRET),
        opts(),
    )
    .unwrap();
    let e = err(client.token());
    assert_eq!(e.http_status(), Some(302));
    redirect.assert();
    elsewhere.assert();
}

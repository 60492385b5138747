//! Interoperability with a real, certified authorization server (`oidc-provider`):
//! discovery, client credentials (basic and post), code + PKCE + `iss`, refresh with
//! rotation, the device flow approved headlessly, revocation, resource indicators and
//! private_key_jwt — each through authcore's public API only.

#[path = "support/oidc.rs"]
#[allow(dead_code)]
mod oidc;

use std::time::Duration;

use authcore::grant::{AuthorizationCode, ClientCredentials, DeviceCode, PrivateKey, RefreshToken};
use authcore::{AuthMethod, AuthorizationCodeFlow, DeviceFlow, ErrorKind, Metadata, Options};
use base64::Engine;
use oidc::{approve_device, sign_in, Oidc, API, APP, CC_BASIC, CC_POST, REDIRECT};

fn options() -> Options {
    Options::default().timeout(Duration::from_secs(10))
}

/// The claims of a JWT access token (not verified: the test only reads them).
fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Whether the server still considers `token` active (RFC 7662, as the `app` client).
fn active(metadata: &Metadata, token: &str) -> bool {
    let url = metadata
        .introspection_endpoint
        .as_deref()
        .expect("introspection");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", APP.0, APP.1));
    let body = format!(
        "token={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let mut response = ureq::post(url)
        .header("authorization", &format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(body.as_bytes())
        .expect("introspection answers");
    let v: serde_json::Value = response.body_mut().read_json().expect("JSON");
    v["active"].as_bool().expect("active")
}

#[test]
fn discovery_finds_the_endpoints_and_refuses_another_issuer() {
    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    assert_eq!(m.issuer, server.issuer);
    assert_eq!(
        m.token_endpoint.as_deref(),
        Some(&*format!("{}/token", server.issuer))
    );
    assert!(m.device_authorization_endpoint.is_some());
    assert!(m.revocation_endpoint.is_some());
    assert!(m.authorization_response_iss_parameter_supported);
    // Asked for with a trailing slash, the document names another issuer: refused.
    let e = Metadata::discover(&format!("{}/", server.issuer), &options()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IssuerMismatch, "{e}");
}

#[test]
fn client_credentials_with_basic_and_post_and_resource_indicators() {
    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let basic = authcore::Client::new(
        ClientCredentials::from_metadata(&m, CC_BASIC.0, CC_BASIC.1).unwrap(),
        options(),
    )
    .unwrap();
    assert!(!basic
        .token()
        .unwrap()
        .access_token()
        .expose_secret()
        .is_empty());
    let post = authcore::Client::new(
        ClientCredentials::from_metadata(&m, CC_POST.0, CC_POST.1)
            .unwrap()
            .auth_method(AuthMethod::ClientSecretPost),
        options(),
    )
    .unwrap();
    assert!(!post
        .token()
        .unwrap()
        .access_token()
        .expose_secret()
        .is_empty());
    // A token for the API (RFC 8707): a JWT whose audience is that API.
    let for_api = authcore::Client::new(
        ClientCredentials::from_metadata(&m, CC_BASIC.0, CC_BASIC.1)
            .unwrap()
            .scopes(["api:read"])
            .resources([API]),
        options(),
    )
    .unwrap();
    let token = for_api.token().unwrap();
    let c = claims(token.access_token().expose_secret());
    assert_eq!(c["aud"], API, "{c}");
    assert_eq!(c["scope"], "api:read", "{c}");
    assert_ne!(token.access_token(), basic.token().unwrap().access_token());
    // A wrong secret is a typed OAuth error.
    let wrong = authcore::Client::new(
        ClientCredentials::from_metadata(&m, CC_BASIC.0, "not-the-secret").unwrap(),
        options(),
    )
    .unwrap();
    let e = wrong.token().unwrap_err();
    assert_eq!(
        e.oauth().map(|o| o.error.as_str()),
        Some("invalid_client"),
        "{e}"
    );
}

#[test]
fn code_flow_with_pkce_and_iss_then_rotation_then_revocation() {
    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let config = AuthorizationCode::from_metadata(&m, APP.0, APP.1, REDIRECT)
        .unwrap()
        .scopes(["openid"]);
    let flow = AuthorizationCodeFlow::new(config, options()).unwrap();

    // A callback naming another issuer is refused before any token request.
    let request = flow.authorization_url().unwrap();
    let callback = sign_in(&request.url, REDIRECT);
    assert!(callback.contains("iss="), "{callback}");
    let forged = callback.replace("iss=http", "iss=https");
    let e = flow.finish(&forged, &request.state).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IssuerMismatch, "{e}");

    let request = flow.authorization_url().unwrap();
    let callback = sign_in(&request.url, REDIRECT);
    let client = flow.finish(&callback, &request.state).unwrap();
    let first = client.token().unwrap();
    let first_rt = first.refresh_token().expect("a refresh token").clone();

    // Renewal by refresh token; the server rotates it.
    assert!(client.invalidate(&first));
    let second = client.token().unwrap();
    let second_rt = second
        .refresh_token()
        .expect("a rotated refresh token")
        .clone();
    assert_ne!(first.access_token(), second.access_token());
    assert_ne!(first_rt, second_rt, "rotated");
    assert!(
        !active(&m, first_rt.expose_secret()),
        "the old refresh token is spent"
    );
    assert!(active(&m, second_rt.expose_secret()));

    // Revocation: the server forgets the tokens, and so does the client.
    client.revoke().unwrap();
    assert!(!active(&m, second_rt.expose_secret()));
    assert!(client.cached_token().is_none());
    assert_eq!(
        client.token().unwrap_err().kind(),
        ErrorKind::ReauthenticationRequired
    );
}

#[test]
fn device_flow_approved_headlessly_then_refresh() {
    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let flow = DeviceFlow::new(
        DeviceCode::from_metadata(&m, "cli", "")
            .unwrap()
            .scopes(["openid"]),
        options(),
    )
    .unwrap();
    let auth = flow.start().unwrap();
    assert!(!auth.user_code.is_empty());
    assert!(auth.verification_uri.starts_with(&server.issuer));
    let complete = auth
        .verification_uri_complete
        .clone()
        .expect("a complete URI");

    // Waiting is cancellable.
    let other = flow.start().unwrap();
    let cancel = other.cancel_handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        cancel.cancel();
    });
    assert_eq!(other.wait(None).unwrap_err().kind(), ErrorKind::Cancelled);

    let approver = std::thread::spawn(move || approve_device(&complete));
    let client = auth.wait(Some(Duration::from_secs(60))).unwrap();
    approver.join().unwrap();
    let token = client.token().unwrap();
    assert!(token.refresh_token().is_some());
    assert!(client.invalidate(&token));
    assert_ne!(client.token().unwrap().access_token(), token.access_token());

    // Not approved in time: a timeout within the bound.
    let late = flow.start().unwrap();
    let start = std::time::Instant::now();
    assert_eq!(
        late.wait(Some(Duration::from_secs(2))).unwrap_err().kind(),
        ErrorKind::Timeout
    );
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn private_key_jwt_client_credentials() {
    let key = rcgen::KeyPair::generate().unwrap();
    let dir = std::env::temp_dir().join(format!("authcore-oidc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let public = dir.join("client.pub.pem");
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let server = Oidc::start(Some(&public));
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let private = PrivateKey::from_pem(key.serialize_pem().as_bytes(), None).unwrap();
    assert_eq!(private.algorithm().name(), "ES256");
    let client = authcore::Client::new(
        ClientCredentials::from_metadata(&m, "jwt-client", "")
            .unwrap()
            .private_key(private),
        options(),
    )
    .unwrap();
    // Two tokens: each request carries a fresh assertion (a reused jti is refused).
    let first = client.token().unwrap();
    assert!(client.invalidate(&first));
    assert_ne!(client.token().unwrap().access_token(), first.access_token());
    // Another key is refused.
    let other = rcgen::KeyPair::generate().unwrap();
    let wrong = authcore::Client::new(
        ClientCredentials::from_metadata(&m, "jwt-client", "")
            .unwrap()
            .private_key(PrivateKey::from_pem(other.serialize_pem().as_bytes(), None).unwrap()),
        options(),
    )
    .unwrap();
    let e = wrong.token().unwrap_err();
    assert_eq!(
        e.oauth().map(|o| o.error.as_str()),
        Some("invalid_client"),
        "{e}"
    );
    // private_key_jwt without a key is a configuration error when the client is built.
    let e = authcore::Client::new(
        RefreshToken::new(m.token_endpoint.clone().unwrap(), "jwt-client", "", "rt")
            .auth_method(AuthMethod::PrivateKeyJwt),
        options(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `authcore login` (browser and device), `authcore token --issuer`, `authcore logout`,
/// end to end: the browser step is driven headlessly through the loopback redirect.
#[test]
fn authcore_login_token_logout() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// A child killed and reaped when dropped, also when the test fails.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let store = std::env::temp_dir().join(format!("authcore-login-{}", std::process::id()));
    let authcore = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_authcore"));
        c.args(args)
            .args(["--issuer", &server.issuer, "--client-id", "cli", "--store"])
            .arg(&store)
            .env_remove("AUTHCORE_CLIENT_SECRET");
        c
    };
    let token = || {
        let out = authcore(&["token"]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let userinfo = |at: &str| {
        ureq::get(m.userinfo_endpoint.as_deref().unwrap())
            .header("authorization", &format!("Bearer {at}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap()
            .status()
            .as_u16()
    };

    // Not signed in yet: token fails and says what to do.
    let (code, _, stderr) = token();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("authcore login"), "{stderr}");

    // Browser login: the URL is printed; the "browser" signs in and is redirected to
    // the command's loopback listener, which answers with a page and finishes.
    let mut login = Reaped(
        authcore(&["login", "--no-browser", "--wait", "60"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(login.0.stderr.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.trim().starts_with("http").then(|| l.trim().to_owned()))
        .expect("the sign-in URL");
    assert!(url.contains("code_challenge="), "PKCE: {url}");
    match oidc::Browser::new().walk(&url, None, "\u{0}") {
        oidc::Landed::Page(at, page) => {
            assert!(at.starts_with("http://127.0.0.1:"), "{at}");
            assert!(page.contains("You can close this tab"), "{page}");
        }
        oidc::Landed::At(_) => unreachable!(),
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(login.0.wait().unwrap().success(), "{rest:?}");

    // A fresh token from the store, accepted by the provider.
    let (code, at, stderr) = token();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(userinfo(&at), 200);
    let (_, again, _) = token();
    assert_eq!(again, at, "reused from the store, not requested again");

    // Logout revokes at the provider and empties the store.
    let out = authcore(&["logout"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(userinfo(&at), 401, "revoked");
    assert_eq!(token().0, Some(3));

    // Device login: the code is printed, approved elsewhere.
    let mut login = Reaped(
        authcore(&["login", "--device", "--wait", "60"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(login.0.stderr.take().unwrap()).lines();
    let complete = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("(or open ")
                .map(|u| u.trim_end_matches(')').to_owned())
        })
        .expect("the verification URI");
    approve_device(&complete);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(login.0.wait().unwrap().success(), "{rest:?}");
    let (code, at, stderr) = token();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(userinfo(&at), 200);
    std::fs::remove_dir_all(&store).unwrap();
}

//! Interoperability with a real, certified authorization server (`oidc-provider`):
//! discovery, client credentials (basic and post), code + PKCE + `iss`, refresh with
//! rotation, the device flow approved headlessly, revocation, resource indicators and
//! private_key_jwt; DPoP; federated client assertions, token exchange and mutual TLS
//! with certificate-bound tokens — each through authcore's public API only.

#[path = "support/oidc.rs"]
#[allow(dead_code)]
mod oidc;

use std::time::Duration;

use authcore::grant::{AuthorizationCode, ClientCredentials, DeviceCode, PrivateKey, RefreshToken};
use authcore::{AuthMethod, AuthorizationCodeFlow, DeviceFlow, ErrorKind, Metadata, Options};
use base64::Engine;
use oidc::{approve_device, sign_in, Oidc, API, APP, CC_BASIC, CC_POST, EXCHANGER, REDIRECT};

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

/// What the server says of `token` (RFC 7662), asked by the confidential client `by`.
fn introspect(metadata: &Metadata, by: (&str, &str), token: &str) -> serde_json::Value {
    let url = metadata
        .introspection_endpoint
        .as_deref()
        .expect("introspection");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", by.0, by.1));
    let body = format!(
        "token={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let mut response = ureq::post(url)
        .header("authorization", &format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(body.as_bytes())
        .expect("introspection answers");
    response.body_mut().read_json().expect("JSON")
}

/// Whether the server still considers `token` active (RFC 7662, as the `app` client).
fn active(metadata: &Metadata, token: &str) -> bool {
    introspect(metadata, APP, token)["active"]
        .as_bool()
        .expect("active")
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
    // With DPoP, against a server that demands nonces: the resend after
    // `use_dpop_nonce` carries a newly signed assertion (the server checks the client
    // before the proof, and refuses an assertion it has seen).
    let dpop = authcore::Client::new(
        ClientCredentials::from_metadata(&m, "jwt-client", "")
            .unwrap()
            .private_key(PrivateKey::from_pem(key.serialize_pem().as_bytes(), None).unwrap()),
        options().dpop(authcore::Dpop::generate().unwrap()),
    )
    .unwrap();
    let token = dpop.token().unwrap();
    assert_eq!(token.token_type(), "DPoP");
    assert_eq!(dpop.stats().dpop_nonce_retries, 1);
    assert_eq!(dpop.stats().token_requests_succeeded, 1);
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

// ---------------------------------------------------------------------------------
// DPoP (RFC 9449). oidc-provider demands a server nonce in every proof, at the token
// endpoint and at userinfo (a resource server that verifies proofs), so each client
// runs both nonce dances: a token endpoint and an API keep nonces of their own even at
// one origin, so one resend per client and server, each kept up to date from every
// answer after that.
// ---------------------------------------------------------------------------------

use authcore::{Client, Dpop, DpopAlgorithm, DpopKey, FileStore};

fn dpop_options(alg: DpopAlgorithm) -> (Options, String) {
    let key = DpopKey::generate(alg).unwrap();
    let thumbprint = key.thumbprint().to_owned();
    (options().dpop(Dpop::new(key)), thumbprint)
}

/// A raw userinfo call, as a caller with its own HTTP stack makes it: its status, its
/// `WWW-Authenticate` and its `DPoP-Nonce`.
fn userinfo_call(
    m: &Metadata,
    authorization: &str,
    proof: Option<&str>,
) -> (u16, Option<String>, Option<String>) {
    let mut request = ureq::get(m.userinfo_endpoint.as_deref().expect("userinfo"))
        .header("authorization", authorization)
        .config()
        .http_status_as_error(false)
        .build();
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    let response = request.call().expect("userinfo answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    (
        response.status().as_u16(),
        header("www-authenticate"),
        header("dpop-nonce"),
    )
}

/// Userinfo refuses the DPoP-bound token without a proof (400) and as a Bearer token
/// (401), and accepts it with the proof of [`Client::request_headers`]: through the
/// caller's own HTTP stack, with the nonce dance of [`Client::dpop_nonce_retry`] when
/// the client has no nonce of the resource server's yet. Returns whether that dance
/// ran.
fn userinfo_wants_the_proof(m: &Metadata, client: &Client) -> bool {
    let url = m.userinfo_endpoint.as_deref().unwrap();
    let token = client.token().unwrap();
    assert_eq!(token.token_type(), "DPoP");
    let at = token.access_token().expose_secret();
    // Without a proof: a malformed DPoP request (400 invalid_request, RFC 9449 §7.1).
    let (status, challenge, _) = userinfo_call(m, &format!("DPoP {at}"), None);
    assert_eq!(status, 400, "no proof: {challenge:?}");
    assert!(
        challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("DPoP ") && c.contains("invalid_request")),
        "{challenge:?}"
    );
    let (status, challenge, _) = userinfo_call(m, &format!("Bearer {at}"), None);
    assert_eq!(status, 401, "as a bearer token: {challenge:?}");
    let headers = client.request_headers("GET", url).unwrap();
    assert_eq!(headers.authorization.expose_secret(), format!("DPoP {at}"));
    let proof = headers.dpop.expect("a proof for a DPoP token");
    let (status, challenge, nonce) = userinfo_call(
        m,
        headers.authorization.expose_secret(),
        Some(proof.expose_secret()),
    );
    if status == 200 {
        return false;
    }
    assert!(
        client.dpop_nonce_retry(url, status, challenge.as_deref(), nonce.as_deref()),
        "{status} {challenge:?}: not a nonce request"
    );
    let again = client.request_headers("GET", url).unwrap();
    let (status, challenge, _) = userinfo_call(
        m,
        again.authorization.expose_secret(),
        again.dpop.as_ref().map(|p| p.expose_secret()),
    );
    assert_eq!(status, 200, "with the nonce: {challenge:?}");
    true
}

#[test]
fn dpop_client_credentials_tokens_are_bound_to_the_clients_key() {
    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    for (alg, creds, method) in [
        (
            DpopAlgorithm::Es256,
            CC_BASIC,
            AuthMethod::ClientSecretBasic,
        ),
        (DpopAlgorithm::Rs256, CC_POST, AuthMethod::ClientSecretPost),
    ] {
        let (opts, thumbprint) = dpop_options(alg);
        let client = Client::new(
            ClientCredentials::from_metadata(&m, creds.0, creds.1)
                .unwrap()
                .auth_method(method),
            opts,
        )
        .unwrap();
        let first = client.token().unwrap();
        assert_eq!(first.token_type(), "DPoP", "{alg:?}");
        assert_eq!(client.dpop_key().unwrap().thumbprint(), thumbprint);
        let seen = introspect(&m, creds, first.access_token().expose_secret());
        assert_eq!(seen["active"], true, "{seen}");
        assert_eq!(seen["token_type"], "DPoP", "{seen}");
        assert_eq!(seen["cnf"]["jkt"], thumbprint.as_str(), "{alg:?}: {seen}");
        // The first token request was refused for a nonce and sent once more; the next
        // one carries the nonce from the start.
        assert_eq!(client.stats().dpop_nonce_retries, 1, "{alg:?}");
        assert!(client.invalidate(&first));
        let second = client.token().unwrap();
        assert_ne!(second.access_token(), first.access_token());
        let seen = introspect(&m, creds, second.access_token().expose_secret());
        assert_eq!(seen["cnf"]["jkt"], thumbprint.as_str(), "{seen}");
        let stats = client.stats();
        assert_eq!(stats.dpop_nonce_retries, 1, "{alg:?}: {stats:?}");
        assert_eq!(stats.token_requests_succeeded, 2, "{stats:?}");
    }
}

#[test]
fn dpop_code_flow_with_pkce_then_rotation_for_a_public_client() {
    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let (opts, thumbprint) = dpop_options(DpopAlgorithm::EdDsa);
    let config = AuthorizationCode::from_metadata(&m, "cli", "", REDIRECT)
        .unwrap()
        .scopes(["openid", "offline_access"]);
    let flow = AuthorizationCodeFlow::new(config, opts).unwrap();
    let request = flow.authorization_url().unwrap();
    let client = flow
        .finish(&sign_in(&request.url, REDIRECT), &request.state)
        .unwrap();
    let first = client.token().unwrap();
    assert_eq!(first.token_type(), "DPoP");
    let first_rt = first.refresh_token().expect("a refresh token").clone();
    let seen = introspect(&m, APP, first.access_token().expose_secret());
    assert_eq!(seen["cnf"]["jkt"], thumbprint.as_str(), "{seen}");
    // The code was sent twice: refused for a nonce before it was looked at, then
    // exchanged once.
    assert_eq!(client.stats().dpop_nonce_retries, 1);

    // Rotation: the refresh token (bound to the key, for a public client) is sent with
    // a proof of the same key and the nonce already known.
    let second = client.refresh().unwrap();
    let second_rt = second.refresh_token().expect("rotated").clone();
    assert_ne!(second_rt, first_rt);
    assert_ne!(second.access_token(), first.access_token());
    let seen = introspect(&m, APP, second.access_token().expose_secret());
    assert_eq!(seen["cnf"]["jkt"], thumbprint.as_str(), "{seen}");
    assert!(
        !active(&m, first_rt.expose_secret()),
        "the old one is spent"
    );

    // Userinfo: refused without a proof, accepted with one, after the resource
    // server's own nonce dance (its nonce is not the token endpoint's); then known.
    assert!(userinfo_wants_the_proof(&m, &client));
    assert_eq!(client.stats().dpop_nonce_retries, 2);
    let response = client.get(m.userinfo_endpoint.as_deref().unwrap()).unwrap();
    assert_eq!(response.status, 200);
    let stats = client.stats();
    assert_eq!(stats.dpop_nonce_retries, 2, "{stats:?}");
    assert_eq!(stats.retries_after_401, 0, "{stats:?}");
}

#[test]
fn dpop_device_flow_for_a_public_client() {
    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let (opts, thumbprint) = dpop_options(DpopAlgorithm::Rs256);
    let flow = DeviceFlow::new(
        DeviceCode::from_metadata(&m, "cli", "")
            .unwrap()
            .scopes(["openid", "offline_access"]),
        opts,
    )
    .unwrap();
    let auth = flow.start().unwrap();
    let complete = auth.verification_uri_complete.clone().expect("complete");
    let approver = std::thread::spawn(move || approve_device(&complete));
    let client = auth.wait(Some(Duration::from_secs(60))).unwrap();
    approver.join().unwrap();
    let token = client.token().unwrap();
    assert_eq!(token.token_type(), "DPoP");
    let seen = introspect(&m, APP, token.access_token().expose_secret());
    assert_eq!(seen["cnf"]["jkt"], thumbprint.as_str(), "{seen}");
    // The first poll was refused for a nonce and sent once more; every later poll and
    // the refresh carry it.
    assert_eq!(client.stats().dpop_nonce_retries, 1);
    let renewed = client.refresh().unwrap();
    assert_eq!(renewed.token_type(), "DPoP");
    assert_ne!(renewed.access_token(), token.access_token());
    assert_eq!(client.stats().dpop_nonce_retries, 1);
    assert!(userinfo_wants_the_proof(&m, &client));
    assert_eq!(client.stats().dpop_nonce_retries, 2);
}

/// The key is kept with the session in the store: a new client (a restarted process,
/// with a new key of its own) adopts the session with its key, calls userinfo with it
/// (a nonce dance of its own: it has no nonce yet), and renews the refresh token (the
/// token endpoint's dance), which the provider bound to that key and refuses with
/// another.
#[test]
fn dpop_session_key_is_kept_in_the_store_and_used_after_a_restart() {
    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stored = |opts: Options| {
        opts.store(std::sync::Arc::new(FileStore::new(dir.path()).unwrap()))
            .store_key("test-user")
    };
    let (opts, thumbprint) = dpop_options(DpopAlgorithm::EdDsa);
    let flow = AuthorizationCodeFlow::new(
        AuthorizationCode::from_metadata(&m, "cli", "", REDIRECT)
            .unwrap()
            .scopes(["openid", "offline_access"]),
        stored(opts),
    )
    .unwrap();
    let request = flow.authorization_url().unwrap();
    let first = flow
        .finish(&sign_in(&request.url, REDIRECT), &request.state)
        .unwrap();
    let signed_in = first.token().unwrap();
    let rt = signed_in.refresh_token().expect("a refresh token").clone();
    drop(first);

    // Another key cannot renew the session's refresh token (refused before it is used).
    let (other_opts, other) = dpop_options(DpopAlgorithm::Es256);
    assert_ne!(other, thumbprint);
    let stranger = Client::new(
        RefreshToken::new(m.token_endpoint.clone().unwrap(), "cli", "", rt.clone()),
        other_opts,
    )
    .unwrap();
    let e = stranger.token().unwrap_err();
    assert_eq!(
        e.oauth().map(|o| o.error.as_str()),
        Some("invalid_grant"),
        "{e}"
    );
    assert!(active(&m, rt.expose_secret()), "not spent by the refusal");

    // A restarted process: a new client with a new key, over the same store.
    let (restart_opts, restart_key) = dpop_options(DpopAlgorithm::Es256);
    let restarted = Client::new(
        RefreshToken::from_metadata(&m, "cli", "").unwrap(),
        stored(restart_opts),
    )
    .unwrap();
    let adopted = restarted.token().unwrap();
    assert_eq!(adopted.access_token(), signed_in.access_token(), "adopted");
    let key = restarted.dpop_key().unwrap();
    assert_eq!(
        key.thumbprint(),
        thumbprint,
        "the session's key, not {restart_key}"
    );
    // A new process has no nonce: userinfo asks for one (once).
    assert!(userinfo_wants_the_proof(&m, &restarted));
    assert_eq!(restarted.stats().dpop_nonce_retries, 1);
    let renewed = restarted.refresh().unwrap();
    assert_ne!(renewed.access_token(), signed_in.access_token());
    assert_ne!(renewed.refresh_token(), Some(&rt), "rotated");
    let seen = introspect(&m, APP, renewed.access_token().expose_secret());
    assert_eq!(seen["cnf"]["jkt"], thumbprint.as_str(), "{seen}");
    // The token endpoint asked for its own nonce, once.
    let stats = restarted.stats();
    assert_eq!(stats.dpop_nonce_retries, 2, "{stats:?}");
    assert_eq!(
        restarted
            .get(m.userinfo_endpoint.as_deref().unwrap())
            .unwrap()
            .status,
        200
    );
}

/// `authcore login --dpop-key` (browser) and `authcore login --device --dpop-alg`, then
/// `authcore token` and `authcore headers` in new processes: the session's key is kept
/// with the session in the store (the login's note says only that DPoP was used), each
/// process signs with it, a shell script makes the resource server's nonce dance with
/// `--dpop-nonce`, and a renewal in a later process is signed with the stored key.
#[test]
fn authcore_login_with_dpop_then_token_and_headers() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let userinfo = m.userinfo_endpoint.clone().unwrap();
    let store = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = DpopKey::generate(DpopAlgorithm::EdDsa).unwrap();
    let key_path = keys.path().join("dpop.jwk");
    std::fs::write(&key_path, key.to_jwk().expose_secret()).unwrap();
    let key_file = key_path.to_str().unwrap();
    let authcore = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_authcore"));
        c.args(args)
            .args(["--issuer", &server.issuer, "--client-id", "cli", "--store"])
            .arg(store.path())
            .env_remove("AUTHCORE_CLIENT_SECRET");
        c
    };
    let run = |args: &[&str]| {
        let out = authcore(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // `curl -H @- URL` reads one `Name: value` header per line.
    let send = |lines: &str| {
        let mut request = ureq::get(&userinfo)
            .config()
            .http_status_as_error(false)
            .build();
        for line in lines.lines() {
            let (name, value) = line.split_once(": ").expect("Name: value");
            request = request.header(name, value);
        }
        let response = request.call().unwrap();
        let nonce = response
            .headers()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (response.status().as_u16(), nonce)
    };

    // Browser sign-in with the key from the file.
    let mut login = Reaped(
        authcore(&[
            "login",
            "--no-browser",
            "--wait",
            "60",
            "--dpop-key",
            key_file,
        ])
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
    let oidc::Landed::Page(at, _) = oidc::Browser::new().walk(&url, None, "\u{0}") else {
        unreachable!()
    };
    assert!(at.starts_with("http://127.0.0.1:"), "{at}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(login.0.wait().unwrap().success(), "{rest:?}");
    let signed_in = std::time::Instant::now();

    // The private key is in the session's record only (its `dpop_key`, a base64url
    // JWK); the note says only "EdDSA".
    let private = serde_json::from_str::<serde_json::Value>(key.to_jwk().expose_secret()).unwrap()
        ["d"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored_key = |record: &serde_json::Value| {
        let text = record["dpop_key"].as_str()?;
        let jwk = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let jwk: serde_json::Value = serde_json::from_slice(&jwk).ok()?;
        jwk["d"].as_str().map(str::to_owned)
    };
    let mut holding = Vec::new();
    for entry in std::fs::read_dir(store.path()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            !text.contains(&private),
            "{}: the key in clear",
            path.display()
        );
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "login") {
            assert_eq!(
                json["dpop"],
                serde_json::json!({"algorithm": "EdDSA", "allow_bearer": false}),
                "{json}"
            );
        }
        if stored_key(&json).as_deref() == Some(&*private) {
            holding.push(path);
        }
    }
    assert_eq!(holding.len(), 1, "the session's record: {holding:?}");

    // A new process prints the stored DPoP token, bound to the key.
    let (code, at, stderr) = run(&["token"]);
    assert_eq!(code, Some(0), "{stderr}");
    let seen = introspect(&m, APP, &at);
    assert_eq!(seen["cnf"]["jkt"], key.thumbprint(), "{seen}");

    // `authcore headers`: the resource server wants a nonce this process never had;
    // the script passes it back, and the next proof carries it.
    let (code, headers, stderr) = run(&["headers", "--url", &userinfo]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        headers.starts_with(&format!("Authorization: DPoP {at}\nDPoP: ")),
        "{headers}"
    );
    assert_eq!(headers.lines().count(), 2);
    let (status, nonce) = send(&headers);
    assert_eq!(status, 401);
    let nonce = nonce.expect("a DPoP-Nonce");
    let (code, headers, stderr) = run(&[
        "headers",
        "--method",
        "get",
        "--url",
        &userinfo,
        "--dpop-nonce",
        &nonce,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(send(&headers).0, 200);
    // A proof is for one request: sent again, it is refused.
    assert_eq!(send(&headers).0, 401, "replayed");

    // A renewal in a new process (the stored token is past this process's margin: at
    // most 90 % of its 120 s lifetime, so 12 s after it was issued) is signed with the
    // stored key, which the provider bound the refresh token to.
    std::thread::sleep(Duration::from_secs(13).saturating_sub(signed_in.elapsed()));
    let (code, renewed, stderr) = run(&["token", "--expiry-margin", "86400"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_ne!(renewed, at, "renewed");
    let seen = introspect(&m, APP, &renewed);
    assert_eq!(seen["cnf"]["jkt"], key.thumbprint(), "{seen}");

    // Logout revokes the session and forgets it, key included.
    let (code, _, stderr) = run(&["logout"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(introspect(&m, APP, &renewed)["active"], false);
    for entry in std::fs::read_dir(store.path()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        let json = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
        assert_ne!(
            stored_key(&json).as_deref(),
            Some(&*private),
            "the key is forgotten with the session"
        );
    }

    // Device sign-in with a generated RS256 key.
    let mut login = Reaped(
        authcore(&["login", "--device", "--wait", "60", "--dpop-alg", "RS256"])
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
    let (code, headers, stderr) = run(&["headers", "--url", &userinfo]);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, nonce) = send(&headers);
    let (_, headers, _) = run(&[
        "headers",
        "--url",
        &userinfo,
        "--dpop-nonce",
        &nonce.unwrap(),
    ]);
    assert_eq!(send(&headers).0, 200);
    let at = headers
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("Authorization: DPoP ");
    let seen = introspect(&m, APP, at);
    assert!(seen["cnf"]["jkt"].is_string(), "{seen}");
    assert_ne!(seen["cnf"]["jkt"], key.thumbprint(), "a key of its own");
}

/// A workload identity issuer for the `federated` client: signs assertions
/// (`iss` = `sub` = `federated`, `aud` the token endpoint) with its ES256 key, whose
/// public half oidc-provider fetches from the `jwks_uri` the client registered.
struct WorkloadIssuer {
    key: jsonwebtoken::EncodingKey,
    audience: String,
}

impl WorkloadIssuer {
    fn mint(&self, lifetime_s: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let jti = format!("{now}-{}", rand_suffix());
        let claims = serde_json::json!({
            "iss": "federated", "sub": "federated", "aud": self.audience,
            "iat": now - 1, "exp": now + lifetime_s, "jti": jti,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &self.key,
        )
        .unwrap()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) ^ u64::from(std::process::id()) << 32
}

/// Federated client assertions (RFC 7523 §2.2) against oidc-provider: the assertion is
/// read from a file for every token request (a rewritten file is used, a used one is
/// refused by the server and not sent twice, an expired one is never sent), and a
/// source whose first value the server refuses is read once more.
#[test]
fn federated_client_assertion_from_a_rewritten_file() {
    use authcore::{AssertionSource, Secret};
    let key = rcgen::KeyPair::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("issuer.pub.pem");
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let server = Oidc::start_with(&[("AUTHCORE_OIDC_FEDERATED_KEY", &public)]);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let issuer = WorkloadIssuer {
        key: jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        audience: m.token_endpoint.clone().unwrap(),
    };
    // Renewals after a rejection or a failure are not held back for long in this test.
    let pause = Duration::from_millis(30);
    let quick = options().failure_backoff(pause, pause);
    let file = dir.path().join("projected-token");
    std::fs::write(&file, issuer.mint(300)).unwrap();
    let client = authcore::Client::new(
        ClientCredentials::from_metadata(&m, "federated", "")
            .unwrap()
            .client_assertion(AssertionSource::file(&file))
            .scopes(["api:read"]),
        quick,
    )
    .unwrap();
    let first = client.token().unwrap();
    // The file is rewritten (as the kubelet does): the next token request uses it.
    std::fs::write(&file, issuer.mint(300)).unwrap();
    assert!(client.invalidate(&first));
    let second = client.token().unwrap();
    assert_ne!(second.access_token(), first.access_token());
    // Not rewritten: the server refuses the used assertion (its jti), and the same one
    // is not sent again; the error names no assertion.
    std::thread::sleep(3 * pause);
    assert!(client.invalidate(&second));
    let before = client.stats().token_requests();
    let e = client.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OAuth, "{e}");
    assert_eq!(e.oauth().unwrap().error, "invalid_client");
    assert_eq!(client.stats().token_requests() - before, 1, "sent once");
    let used = std::fs::read_to_string(&file).unwrap();
    assert!(!e.to_string().contains(&used));
    // Expired: refused here, never sent.
    std::fs::write(&file, issuer.mint(-30)).unwrap();
    std::thread::sleep(3 * pause);
    let before = client.stats().token_requests();
    let e = client.token().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    assert_eq!(client.stats().token_requests(), before, "nothing sent");
    // A source that first gives the used assertion and then a new one: refused, read
    // again, and the call succeeds with one more request.
    let fresh = std::sync::Mutex::new(vec![issuer.mint(300), used]);
    let source = AssertionSource::callback(move || {
        Ok(Secret::new(fresh.lock().unwrap().pop().expect("two reads")))
    });
    let rereading = authcore::Client::new(
        ClientCredentials::from_metadata(&m, "federated", "")
            .unwrap()
            .client_assertion(source)
            .scopes(["api:read"]),
        options(),
    )
    .unwrap();
    rereading.token().unwrap();
    let stats = rereading.stats();
    assert_eq!(stats.token_requests(), 2, "{stats:?}");
}

/// Token exchange (RFC 8693) against oidc-provider, with a chained subject client: the
/// `exchanger` service exchanges `cc-basic`'s access token for its own. When the
/// subject token is revoked at the provider, the exchange is refused once, the subject
/// client's token is invalidated there and renewed, and the exchange succeeds with the
/// new one, in the same call.
#[test]
fn token_exchange_with_a_chained_subject_client() {
    use authcore::grant::{token_type, TokenExchange};
    use authcore::AssertionSource;
    let server = Oidc::start(None);
    let m = Metadata::discover(&server.issuer, &options()).unwrap();
    let pause = Duration::from_millis(30);
    let subject = authcore::Client::new(
        ClientCredentials::from_metadata(&m, CC_BASIC.0, CC_BASIC.1)
            .unwrap()
            .scopes(["api:read"]),
        options().failure_backoff(pause, pause),
    )
    .unwrap();
    let exchanger = authcore::Client::new(
        TokenExchange::from_metadata(
            &m,
            EXCHANGER.0,
            EXCHANGER.1,
            AssertionSource::client(subject.clone()),
            token_type::ACCESS_TOKEN,
        )
        .unwrap()
        .audience(API)
        .scopes(["api:read"]),
        options().failure_backoff(pause, pause),
    )
    .unwrap();
    let first = exchanger.token().unwrap();
    assert_eq!(first.issued_token_type(), Some(token_type::ACCESS_TOKEN));
    let subject_token = subject.cached_token().expect("the subject client's token");
    assert_ne!(first.access_token(), subject_token.access_token());
    assert!(active(&m, first.access_token().expose_secret()));
    // The subject token is revoked at the provider (by its own client).
    let revocation = m.revocation_endpoint.as_deref().unwrap();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", CC_BASIC.0, CC_BASIC.1));
    ureq::post(revocation)
        .header("authorization", &format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(
            format!(
                "token={}",
                url::form_urlencoded::byte_serialize(
                    subject_token.access_token().expose_secret().as_bytes()
                )
                .collect::<String>()
            )
            .as_bytes(),
        )
        .unwrap();
    assert!(!active(&m, subject_token.access_token().expose_secret()));
    std::thread::sleep(3 * pause);
    assert!(exchanger.invalidate(&first));
    let before = exchanger.stats().token_requests();
    let second = exchanger.token().unwrap();
    assert_ne!(second.access_token(), first.access_token());
    assert_eq!(
        exchanger.stats().token_requests() - before,
        2,
        "refused once with the revoked subject token, then sent with the renewed one"
    );
    let renewed = subject.cached_token().unwrap();
    assert_ne!(renewed.access_token(), subject_token.access_token());
}

/// Throwaway certificates for the provider's TLS mode, in the files server.mjs reads
/// (tests/oidc/make-certs.sh makes the same with openssl): a CA, the server's
/// certificate for 127.0.0.1, and two client certificates — one the CA issues with
/// subject `CN=mtls-client`, one self-signed (`CN=mtls-self`, also written as
/// `self-signed.pem` for the provider to register).
struct TlsFiles {
    dir: tempfile::TempDir,
    client: authcore::ClientCertificate,
    self_signed: authcore::ClientCertificate,
}

impl TlsFiles {
    fn make() -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair,
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "authcore oidc interop CA");
        let ca_key = KeyPair::generate().unwrap();
        write("ca.pem", ca_params.self_signed(&ca_key).unwrap().pem());
        let ca = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        write("server.pem", server.pem());
        write("server.key", server_key.serialize_pem());
        let client_params = |cn: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params
        };
        let client_key = KeyPair::generate().unwrap();
        let client = client_params("mtls-client")
            .signed_by(&client_key, &ca)
            .unwrap();
        let self_key = KeyPair::generate().unwrap();
        let self_signed = client_params("mtls-self").self_signed(&self_key).unwrap();
        write("self-signed.pem", self_signed.pem());
        let certificate = |cert: &rcgen::Certificate, key: &KeyPair| {
            authcore::ClientCertificate::from_pem(
                cert.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
            )
            .unwrap()
        };
        TlsFiles {
            client: certificate(&client, &client_key),
            self_signed: certificate(&self_signed, &self_key),
            dir,
        }
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// An HTTP agent of the test's own that trusts the CA (and presents no certificate).
    fn agent(&self) -> ureq::Agent {
        let pem = std::fs::read(self.ca()).unwrap();
        let roots: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                    .build(),
            )
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into()
    }
}

/// Mutual TLS (RFC 8705) against oidc-provider terminating TLS itself, its mTLS
/// endpoints on a listener that asks for client certificates (`mtls_endpoint_aliases`):
/// `tls_client_auth` and `self_signed_tls_client_auth` client credentials through the
/// aliases, the tokens bound to the certificate (introspection's `cnf.x5t#S256`), taken
/// by a resource server on a connection with that certificate and refused on one
/// without it or with another; a certificate the CA did not issue does not authenticate
/// the `tls_client_auth` client.
#[test]
fn mtls_client_credentials_with_certificate_bound_tokens() {
    use authcore::grant::StaticToken;
    let tls = TlsFiles::make();
    let server = Oidc::start_with(&[("AUTHCORE_OIDC_TLS_DIR", tls.dir.path())]);
    assert!(
        server.issuer.starts_with("https://127.0.0.1:"),
        "{}",
        server.issuer
    );
    let trusting = || options().ca_bundle(tls.ca());
    let m = Metadata::discover(&server.issuer, &trusting()).unwrap();
    assert!(m.tls_client_certificate_bound_access_tokens);
    let alias = m
        .mtls_alias("token_endpoint")
        .expect("an mTLS alias")
        .to_owned();
    assert_ne!(Some(alias.as_str()), m.token_endpoint.as_deref());
    let resource = alias.replace("/token", "/test-api");
    let agent = tls.agent();
    let introspect = |token: &str| -> serde_json::Value {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", APP.0, APP.1));
        agent
            .post(m.introspection_endpoint.as_deref().unwrap())
            .header("authorization", &format!("Basic {basic}"))
            .send_form([("token", token)])
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    };
    for (client_id, method, cert) in [
        ("mtls", AuthMethod::TlsClientAuth, &tls.client),
        (
            "mtls-self",
            AuthMethod::SelfSignedTlsClientAuth,
            &tls.self_signed,
        ),
    ] {
        let client = authcore::Client::new(
            ClientCredentials::from_metadata(&m, client_id, "")
                .unwrap()
                .auth_method(method)
                .scopes(["api:read"]),
            trusting().client_certificate(cert.clone()),
        )
        .unwrap();
        let token = client.token().unwrap();
        let access = token.access_token().expose_secret().to_owned();
        let seen = introspect(&access);
        assert_eq!(seen["active"], true, "{seen}");
        assert_eq!(seen["client_id"], client_id, "{seen}");
        assert_eq!(seen["cnf"]["x5t#S256"], cert.thumbprint(), "{seen}");
        // The resource server takes it on a connection with the certificate...
        let response = client.get(&resource).unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["cnf"]["x5t#S256"], cert.thumbprint(), "{body}");
        // ...and not on one without it, nor with another.
        let other = if client_id == "mtls" {
            &tls.self_signed
        } else {
            &tls.client
        };
        for options in [trusting(), trusting().client_certificate(other.clone())] {
            let thief = authcore::Client::new(StaticToken::new(access.clone()), options).unwrap();
            let response = thief.get(&resource).unwrap();
            assert_eq!(response.status, 401, "{}", response.text());
        }
    }
    // A certificate the CA did not issue does not authenticate `mtls`.
    let stranger = authcore::Client::new(
        ClientCredentials::from_metadata(&m, "mtls", "")
            .unwrap()
            .auth_method(AuthMethod::TlsClientAuth),
        trusting().client_certificate(tls.self_signed.clone()),
    )
    .unwrap();
    let e = stranger.token().unwrap_err();
    assert_eq!(
        e.oauth().map(|o| o.error.as_str()),
        Some("invalid_client"),
        "{e}"
    );
}

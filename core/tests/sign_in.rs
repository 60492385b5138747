//! The authorization code flow as web servers use it: several sign-ins in flight,
//! callbacks that name their own by `state`, forged and replayed callbacks, sign-ins
//! finished in another process from their exported form, expiry and the bound.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use authcore::grant::AuthorizationCode;
use authcore::{AuthorizationCodeFlow, ErrorKind, MAX_PENDING};
use common::{assert_clean, err, opts};

const SECRET: &str = "cs+/=:secret-9f8e7d";

/// A token endpoint that answers every code with a new token, and checks the PKCE
/// verifier against the challenge the authorize URL carried (recorded by the test).
struct Provider {
    server: mockito::ServerGuard,
    exchanges: Arc<AtomicUsize>,
}

fn provider() -> Provider {
    let mut server = mockito::Server::new();
    let exchanges = Arc::new(AtomicUsize::new(0));
    let n = exchanges.clone();
    server
        .mock("POST", "/token")
        .with_body_from_request(move |req| {
            let body = String::from_utf8_lossy(req.body().unwrap()).into_owned();
            assert!(body.contains("code_verifier="), "PKCE verifier sent: {body}");
            let i = n.fetch_add(1, SeqCst);
            format!(r#"{{"access_token":"at-{i}-1a2b3c4d5e","expires_in":3600,"refresh_token":"rt-{i}-5c4b3a29"}}"#)
                .into_bytes()
        })
        .create();
    Provider { server, exchanges }
}

fn config(p: &Provider) -> AuthorizationCode {
    AuthorizationCode::new(
        format!("{}/authorize", p.server.url()),
        format!("{}/token", p.server.url()),
        "web-app",
        SECRET,
        "https://app.example/callback",
    )
}

fn callback(state: &str, code: &str) -> String {
    format!("https://app.example/callback?code={code}&state={state}")
}

#[test]
fn two_sign_ins_in_flight_each_finish_and_a_forged_callback_disturbs_neither() {
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    let a = flow.authorization_url().unwrap();
    let b = flow.authorization_url().unwrap();
    assert_ne!(a.state, b.state);
    // A bot (or a stale tab) hits the callback with a state nobody issued.
    let forged = err(flow.finish(&callback("forged-state", "code-x")));
    assert_eq!(forged.kind(), ErrorKind::StateMismatch);
    let no_state = err(flow.finish("https://app.example/callback?code=code-y"));
    assert_eq!(no_state.kind(), ErrorKind::StateMismatch);
    // Finished in the order the users come back, not the order they started.
    let client_b = flow.finish(&callback(&b.state, "code-b")).unwrap();
    let client_a = flow.finish(&callback(&a.state, "code-a")).unwrap();
    assert_ne!(
        client_a.token().unwrap().access_token(),
        client_b.token().unwrap().access_token()
    );
    assert_eq!(p.exchanges.load(SeqCst), 2);
    // A state is used once.
    let replay = err(flow.finish(&callback(&a.state, "code-a")));
    assert_eq!(replay.kind(), ErrorKind::StateMismatch);
    assert_eq!(p.exchanges.load(SeqCst), 2, "a replay costs no exchange");
}

#[test]
fn the_path_with_its_query_is_enough() {
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    let a = flow.authorization_url().unwrap();
    let client = flow
        .finish(&format!("/callback?state={}&code=code-a", a.state))
        .unwrap();
    assert!(client.token().is_ok());
}

#[test]
fn a_sign_in_finishes_in_another_process_from_its_exported_form() {
    let p = provider();
    let started_here = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    let a = started_here.authorization_url().unwrap();
    let b = started_here.authorization_url().unwrap();
    let pending = a.pending.expose_secret();
    // The exported form is opaque and safe to log by mistake through Debug.
    assert!(!format!("{:?}", a).contains(pending));
    assert_clean(&format!("{a:?}"));

    // Another worker: a flow of its own with the same configuration.
    let elsewhere = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    // The callback of another sign-in does not match this pending one.
    let wrong = err(elsewhere.finish_pending(&callback(&b.state, "code-b"), pending));
    assert_eq!(wrong.kind(), ErrorKind::StateMismatch);
    let client = elsewhere
        .finish_pending(&callback(&a.state, "code-a"), pending)
        .unwrap();
    assert!(client.token().is_ok());
    // Used once here…
    let again = err(elsewhere.finish_pending(&callback(&a.state, "code-a"), pending));
    assert_eq!(again.kind(), ErrorKind::StateMismatch);
    // …and b still finishes where it started.
    assert!(started_here.finish(&callback(&b.state, "code-b")).is_ok());

    // A flow with another configuration refuses it; garbage is refused.
    let other = AuthorizationCode::new(
        format!("{}/authorize", p.server.url()),
        format!("{}/token", p.server.url()),
        "another-app",
        SECRET,
        "https://app.example/callback",
    );
    let other = AuthorizationCodeFlow::new(other, opts()).unwrap();
    let c = started_here.authorization_url().unwrap();
    let e = err(other.finish_pending(&callback(&c.state, "code-c"), c.pending.expose_secret()));
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = err(elsewhere.finish_pending(&callback(&c.state, "code-c"), "not-a-sign-in"));
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(p.exchanges.load(SeqCst), 2);
}

#[test]
fn an_expired_sign_in_cannot_finish() {
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts())
        .unwrap()
        .pending_lifetime(Duration::from_millis(200));
    let a = flow.authorization_url().unwrap();
    let b = flow.authorization_url().unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        err(flow.finish(&callback(&a.state, "code-a"))).kind(),
        ErrorKind::StateMismatch
    );
    // The exported form expires too (its clock is seconds since the epoch).
    let elsewhere = AuthorizationCodeFlow::new(config(&p), opts())
        .unwrap()
        .pending_lifetime(Duration::from_millis(200));
    let e = err(elsewhere.finish_pending(&callback(&b.state, "code-b"), b.pending.expose_secret()));
    assert_eq!(e.kind(), ErrorKind::StateMismatch);
    assert_eq!(p.exchanges.load(SeqCst), 0);
}

#[test]
fn pending_sign_ins_are_bounded_oldest_first() {
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    let first = flow.authorization_url().unwrap();
    let second = flow.authorization_url().unwrap();
    for _ in 0..MAX_PENDING - 1 {
        flow.authorization_url().unwrap();
    }
    // One more than the bound: the oldest went.
    assert_eq!(
        err(flow.finish(&callback(&first.state, "code-1"))).kind(),
        ErrorKind::StateMismatch
    );
    assert!(flow.finish(&callback(&second.state, "code-2")).is_ok());
}

#[test]
fn a_public_client_sends_its_id_and_verifier_and_no_secret() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/token")
        .match_header("authorization", mockito::Matcher::Missing)
        .match_body(mockito::Matcher::AllOf(vec![
            mockito::Matcher::Regex("client_id=spa".into()),
            mockito::Matcher::Regex("code_verifier=".into()),
            mockito::Matcher::Regex("grant_type=authorization_code".into()),
        ]))
        .with_body(r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600,"refresh_token":"rt-first-5c4b3a29"}"#)
        .expect(1)
        .create();
    let config = AuthorizationCode::new(
        format!("{}/authorize", server.url()),
        format!("{}/token", server.url()),
        "spa",
        "",
        "http://127.0.0.1/callback",
    );
    let flow = AuthorizationCodeFlow::new(config, opts()).unwrap();
    let a = flow.authorization_url().unwrap();
    assert!(a.url.contains("code_challenge="));
    flow.finish(&callback(&a.state, "code-a")).unwrap();
    m.assert();
}

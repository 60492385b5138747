//! The authorization code flow as web servers use it: several sign-ins in flight, each
//! finished only with the binding its user's session kept (login CSRF refused), forged
//! and replayed callbacks, sealed sign-ins finished in another process (and altered,
//! foreign, expired ones refused before any token request), expiry and the bound.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use authcore::grant::AuthorizationCode;
use authcore::{AuthorizationCodeFlow, ErrorKind, MAX_PENDING, PENDING_KEY_LEN};
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

/// The pending key the workers of one application share.
const KEY: [u8; PENDING_KEY_LEN] = *b"0123456789abcdef0123456789abcdef";

fn callback(state: &str, code: &str) -> String {
    format!("https://app.example/callback?code={code}&state={state}")
}

#[test]
fn two_sign_ins_in_flight_each_finish_with_their_own_state_and_a_forged_callback_disturbs_neither()
{
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    let a = flow.authorization_url().unwrap();
    let b = flow.authorization_url().unwrap();
    assert_ne!(a.state, b.state);
    // A bot (or a stale tab) hits the callback with a state nobody issued.
    let forged = err(flow.finish(&callback("forged-state", "code-x"), &a.state));
    assert_eq!(forged.kind(), ErrorKind::StateMismatch);
    let no_state = err(flow.finish("https://app.example/callback?code=code-y", &a.state));
    assert_eq!(no_state.kind(), ErrorKind::StateMismatch);
    // Finished in the order the users come back, not the order they started.
    let client_b = flow
        .finish(&callback(&b.state, "code-b"), &b.state)
        .unwrap();
    let client_a = flow
        .finish(&callback(&a.state, "code-a"), &a.state)
        .unwrap();
    assert_ne!(
        client_a.token().unwrap().access_token(),
        client_b.token().unwrap().access_token()
    );
    assert_eq!(p.exchanges.load(SeqCst), 2);
    // A state is used once.
    let replay = err(flow.finish(&callback(&a.state, "code-a"), &a.state));
    assert_eq!(replay.kind(), ErrorKind::StateMismatch);
    assert_eq!(p.exchanges.load(SeqCst), 2, "a replay costs no exchange");
}

/// RFC 6749 §10.12: an attacker starts a sign-in on the same application, stops before
/// the redirect, and sends the victim the callback link. The victim's session holds its
/// own sign-in's binding; the attacker's callback finished with it is refused, with no
/// token request, and both sign-ins stay as they were.
#[test]
fn login_csrf_an_attackers_callback_with_the_victims_binding_is_refused() {
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts())
        .unwrap()
        .pending_key(&KEY)
        .unwrap();
    let victim = flow.authorization_url().unwrap();
    let attacker = flow.authorization_url().unwrap();
    let attackers_link = callback(&attacker.state, "code-of-the-attacker");

    let e = err(flow.finish(&attackers_link, &victim.state));
    assert_eq!(e.kind(), ErrorKind::StateMismatch);
    let e = err(flow.finish_pending(&attackers_link, victim.pending.expose_secret()));
    assert_eq!(e.kind(), ErrorKind::StateMismatch);
    // No binding at all: refused, and the message says what finish needs.
    let e = err(flow.finish(&attackers_link, ""));
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("state"), "{e}");
    assert!(e.to_string().contains("finish_pending"), "{e}");
    let e = err(flow.finish_pending(&attackers_link, ""));
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(
        p.exchanges.load(SeqCst),
        0,
        "no token request for a refused callback"
    );

    // The victim's own sign-in is untouched and finishes.
    let victims_link = callback(&victim.state, "code-of-the-victim");
    assert!(flow.finish(&victims_link, &victim.state).is_ok());
    assert_eq!(p.exchanges.load(SeqCst), 1);
}

#[test]
fn the_path_with_its_query_is_enough() {
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    let a = flow.authorization_url().unwrap();
    let client = flow
        .finish(
            &format!("/callback?state={}&code=code-a", a.state),
            &a.state,
        )
        .unwrap();
    assert!(client.token().is_ok());
}

#[test]
fn a_sealed_sign_in_finishes_in_another_process_sharing_the_key() {
    let p = provider();
    let started_here = AuthorizationCodeFlow::new(config(&p), opts())
        .unwrap()
        .pending_key(&KEY)
        .unwrap();
    let a = started_here.authorization_url().unwrap();
    let b = started_here.authorization_url().unwrap();
    let pending = a.pending.expose_secret();
    // The exported form is opaque, holds neither the state nor the verifier in clear,
    // and is safe to log by mistake through Debug.
    assert!(!format!("{:?}", a).contains(pending));
    assert!(!pending.contains(&a.state));
    assert_clean(&format!("{a:?}"));
    assert_ne!(
        started_here
            .authorization_url()
            .unwrap()
            .pending
            .expose_secret(),
        pending
    );

    // Another worker: a flow of its own with the same configuration and key.
    let elsewhere = AuthorizationCodeFlow::new(config(&p), opts())
        .unwrap()
        .pending_key(&KEY)
        .unwrap();
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
    assert!(started_here
        .finish(&callback(&b.state, "code-b"), &b.state)
        .is_ok());

    // A flow with another configuration, or another key, or none shared, refuses it.
    let other = AuthorizationCode::new(
        format!("{}/authorize", p.server.url()),
        format!("{}/token", p.server.url()),
        "another-app",
        SECRET,
        "https://app.example/callback",
    );
    let other = AuthorizationCodeFlow::new(other, opts())
        .unwrap()
        .pending_key(&KEY)
        .unwrap();
    let mut other_key = KEY;
    other_key[0] ^= 1;
    let other_keyed = AuthorizationCodeFlow::new(config(&p), opts())
        .unwrap()
        .pending_key(&other_key)
        .unwrap();
    let unkeyed = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    let c = started_here.authorization_url().unwrap();
    let cb = callback(&c.state, "code-c");
    for flow in [&other, &other_keyed] {
        let e = err(flow.finish_pending(&cb, c.pending.expose_secret()));
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("another pending key"), "{e}");
    }
    let e = err(unkeyed.finish_pending(&cb, c.pending.expose_secret()));
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("pending_key"), "{e}");
    let e = err(elsewhere.finish_pending(&cb, "not-a-sign-in"));
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(p.exchanges.load(SeqCst), 2);
    // c is still good where it belongs.
    assert!(elsewhere
        .finish_pending(&cb, c.pending.expose_secret())
        .is_ok());
    assert_eq!(p.exchanges.load(SeqCst), 3);
}

#[test]
fn without_a_shared_key_a_sealed_sign_in_finishes_only_in_its_own_flow() {
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    let a = flow.authorization_url().unwrap();
    assert!(flow
        .finish_pending(&callback(&a.state, "code-a"), a.pending.expose_secret())
        .is_ok());
    assert_eq!(p.exchanges.load(SeqCst), 1);
}

/// Every way to alter a sealed sign-in is refused before any token request: each
/// character replaced, every truncation, bytes appended, the old plain-JSON format
/// with the verifier removed, garbage and huge input.
#[test]
fn an_altered_sealed_sign_in_is_refused_before_any_token_request() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts())
        .unwrap()
        .pending_key(&KEY)
        .unwrap();
    let a = flow.authorization_url().unwrap();
    let pending = a.pending.expose_secret().to_owned();
    let cb = callback(&a.state, "code-a");
    let refused = |altered: &str| {
        let e = err(flow.finish_pending(&cb, altered));
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(!e.to_string().contains(&a.state));
    };
    for i in 0..pending.len() {
        let mut altered = pending.clone().into_bytes();
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        refused(std::str::from_utf8(&altered).unwrap());
    }
    for len in 0..pending.len() {
        refused(&pending[..len]);
    }
    refused(&format!("{pending}AA"));
    // The old, plain format, with the verifier removed: PKCE can no longer be skipped.
    let plain = format!(
        r#"{{"v":1,"flow":"0000000000000000","state":"{}","verifier":null,"started":{}}}"#,
        a.state,
        u64::MAX
    );
    refused(&URL_SAFE_NO_PAD.encode(plain));
    refused("not-a-sign-in");
    refused("\u{0}\u{7f}é€𝄞");
    refused(&"A".repeat(1 << 20));
    assert_eq!(p.exchanges.load(SeqCst), 0);
    // Untouched, it still works.
    assert!(flow.finish_pending(&cb, &pending).is_ok());
}

#[test]
fn an_expired_sign_in_cannot_finish() {
    let p = provider();
    let lifetime = Duration::from_millis(100);
    let flow = AuthorizationCodeFlow::new(config(&p), opts())
        .unwrap()
        .pending_key(&KEY)
        .unwrap()
        .pending_lifetime(lifetime)
        .unwrap();
    let a = flow.authorization_url().unwrap();
    let b = flow.authorization_url().unwrap();
    // Expiry only becomes more true with time: no race.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        err(flow.finish(&callback(&a.state, "code-a"), &a.state)).kind(),
        ErrorKind::StateMismatch
    );
    // The sealed form expires too, in another worker.
    let elsewhere = AuthorizationCodeFlow::new(config(&p), opts())
        .unwrap()
        .pending_key(&KEY)
        .unwrap()
        .pending_lifetime(lifetime)
        .unwrap();
    let e = err(elsewhere.finish_pending(&callback(&b.state, "code-b"), b.pending.expose_secret()));
    assert_eq!(e.kind(), ErrorKind::StateMismatch);
    assert_eq!(p.exchanges.load(SeqCst), 0);
}

#[test]
fn pending_sign_ins_are_bounded_oldest_first_and_evictions_are_counted() {
    let p = provider();
    let flow = AuthorizationCodeFlow::new(config(&p), opts()).unwrap();
    let first = flow.authorization_url().unwrap();
    let second = flow.authorization_url().unwrap();
    for _ in 0..MAX_PENDING - 1 {
        flow.authorization_url().unwrap();
    }
    // One more than the bound: the oldest went, and the flow counted it.
    assert_eq!(flow.stats().signins_evicted, 1);
    assert_eq!(
        err(flow.finish(&callback(&first.state, "code-1"), &first.state)).kind(),
        ErrorKind::StateMismatch
    );
    // A sealed sign-in needs no room in memory: the evicted one still finishes so.
    assert!(flow
        .finish_pending(
            &callback(&first.state, "code-1"),
            first.pending.expose_secret()
        )
        .is_ok());
    assert!(flow
        .finish(&callback(&second.state, "code-2"), &second.state)
        .is_ok());
    assert_eq!(flow.stats().token_requests(), 2);
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
    flow.finish(&callback(&a.state, "code-a"), &a.state)
        .unwrap();
    m.assert();
}

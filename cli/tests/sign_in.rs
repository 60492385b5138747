//! Sign-in bound to its browser, against the development provider (real authorize
//! redirects, real single-use codes): the login CSRF sequence is refused with no token
//! request, a sealed sign-in finishes in another worker sharing the pending key, and an
//! altered one is refused before any token request.

use std::net::SocketAddr;

use authcore::grant::AuthorizationCode;
use authcore::{AuthorizationCodeFlow, ErrorKind, Options};
use authcore_cli::devserver::{Credentials, DevServer};
use authcore_cli::scenario::follow_authorize;

const KEY: &[u8; 32] = b"workers-share-this-32-byte-key!!";

fn server() -> DevServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    DevServer::start(addr, Credentials::default()).unwrap()
}

fn flow(server: &DevServer) -> AuthorizationCodeFlow {
    let base = server.url();
    AuthorizationCodeFlow::new(
        AuthorizationCode::new(
            format!("{base}/oauth2/authorize"),
            format!("{base}/oauth2/token"),
            "dev-client",
            "dev-secret",
            "http://127.0.0.1/callback",
        ),
        Options::default(),
    )
    .unwrap()
    .pending_key(KEY)
    .unwrap()
}

fn code_exchanges(server: &DevServer) -> u64 {
    server
        .counters()
        .token_requests_by_grant
        .get("oauth2/authorization_code")
        .copied()
        .unwrap_or(0)
}

#[test]
fn login_csrf_is_refused_with_no_token_request() {
    let s = server();
    let flow = flow(&s);
    // The victim opens the sign-in page: their session keeps state and pending.
    let victim = flow.authorization_url().unwrap();
    // The attacker starts a sign-in of their own on the same application, signs in at
    // the provider, and stops before the redirect: a callback link with a live code.
    let attacker = flow.authorization_url().unwrap();
    let attackers_link = follow_authorize(&attacker.url).unwrap();
    assert!(attackers_link.contains(&attacker.state));

    // The victim's browser follows the link; the app finishes with the victim's binding.
    let e = flow.finish(&attackers_link, &victim.state).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateMismatch, "{e}");
    let e = flow
        .finish_pending(&attackers_link, victim.pending.expose_secret())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateMismatch, "{e}");
    // An application that kept no binding cannot finish at all.
    let e = flow.finish(&attackers_link, "").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(s.counters().token_requests, 0, "no token request");

    // The victim's own sign-in is untouched.
    let victims_link = follow_authorize(&victim.url).unwrap();
    let client = flow.finish(&victims_link, &victim.state).unwrap();
    assert_eq!(
        client
            .get(&format!("{}/api/resource", s.url()))
            .unwrap()
            .status,
        200
    );
    assert_eq!(code_exchanges(&s), 1);
}

#[test]
fn a_sealed_sign_in_finishes_in_another_worker_and_an_altered_one_never_costs_a_request() {
    let s = server();
    let started_here = flow(&s);
    let elsewhere = flow(&s);
    let a = started_here.authorization_url().unwrap();
    let callback = follow_authorize(&a.url).unwrap();
    let pending = a.pending.expose_secret().to_owned();

    let mut refused = 0;
    for i in 0..pending.len() {
        let mut altered = pending.clone().into_bytes();
        altered[i] = if altered[i] == b'x' { b'y' } else { b'x' };
        let altered = String::from_utf8(altered).unwrap();
        let e = elsewhere.finish_pending(&callback, &altered).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        refused += 1;
    }
    assert_eq!(refused, pending.len());
    let e = elsewhere
        .finish_pending(&callback, &pending[..pending.len() / 2])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(s.counters().token_requests, 0, "no token request");

    let client = elsewhere.finish_pending(&callback, &pending).unwrap();
    assert_eq!(
        client
            .get(&format!("{}/api/resource", s.url()))
            .unwrap()
            .status,
        200
    );
    assert_eq!(code_exchanges(&s), 1);
    assert_eq!(elsewhere.stats().token_requests_succeeded, 1);
}

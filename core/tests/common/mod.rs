//! Helpers shared by the integration tests: fast-failing options and the secret
//! check that every error and `Debug` output in the suite goes through.
#![allow(dead_code)]

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authcore::{Error, Options};

/// Every credential and token value the suite uses. None may appear in any message.
pub const SECRETS: &[&str] = &[
    "sk_live_apikey_0123456789",
    "cs+/=:secret-9f8e7d",
    "rt-first-5c4b3a29",
    "rt-second-8d7c6b5a",
    "at-one-1a2b3c4d5e",
    "at-two-6f7a8b9c0d",
    "at-three-0e1f2a3b4c",
    "pat-0f1e2d3c4b5a",
    "authcode-77aa88bb99",
];

static SEEN: Mutex<usize> = Mutex::new(0);

/// Fails if `text` contains any of [`SECRETS`].
pub fn assert_clean(text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "secret {s:?} leaked into: {text}");
    }
    *SEEN.lock().unwrap() += 1;
}

/// The error of `result`, after checking its message, `Debug` and source chain.
pub fn err<T: Debug>(result: Result<T, Error>) -> Error {
    let e = result.expect_err("expected an error");
    check_error(&e);
    e
}

/// Checks an error's `Display`, `Debug` and sources for secrets.
pub fn check_error(e: &Error) {
    assert_clean(&e.to_string());
    assert_clean(&format!("{e:?}"));
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        assert_clean(&s.to_string());
        assert_clean(&format!("{s:?}"));
        source = s.source();
    }
}

/// Options for tests: loopback servers, short backoff, short waits.
pub fn opts() -> Options {
    Options::default()
        .failure_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_secs(5))
}

/// A token endpoint at `path` that always answers `body` and counts the requests.
pub fn counting_endpoint(
    server: &mut mockito::Server,
    path: &str,
    body: &'static str,
) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    server
        .mock("POST", path)
        .with_body_from_request(move |_| {
            c.fetch_add(1, SeqCst);
            body.as_bytes().to_vec()
        })
        .create();
    count
}
pub mod redis;
pub mod tls;

//! Re-entry: a logger or a hook that calls the client whose renewal raised it, on the
//! renewal's own thread, gets an immediate `Config` error instead of waiting for the
//! renewal it is part of (which cannot finish before the call returns). In its own
//! binary: the logger is process-wide.

mod common;

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use authcore::grant::{ClientCredentials, RefreshToken};
use authcore::{Client, Error, ErrorKind};
use common::{counting_endpoint, opts};

/// What the client answered when called from inside its own renewal.
type Answers = Vec<(&'static str, Result<(), (ErrorKind, String)>)>;

/// The client the logger calls on `token.requested`, and what it got.
static CALLED: Mutex<Option<Client>> = Mutex::new(None);
static ANSWERS: Mutex<Answers> = Mutex::new(Vec::new());
/// The tests take turns: the logger is shared.
static SERIAL: Mutex<()> = Mutex::new(());

fn outcome<T>(r: Result<T, Error>) -> Result<(), (ErrorKind, String)> {
    r.map(|_| ()).map_err(|e| {
        common::check_error(&e);
        (e.kind(), e.to_string())
    })
}

struct CallingLogger;

impl log::Log for CallingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let requested = r
            .key_values()
            .get(log::kv::Key::from("event"))
            .is_some_and(|v| v.to_string() == "token.requested");
        if r.target() != "authcore" || !requested {
            return;
        }
        // Taken out of the slot: called once, and never under this test's own lock.
        let Some(client) = CALLED.lock().unwrap().take() else {
            return;
        };
        let answers = vec![
            ("token", outcome(client.token())),
            (
                "authorization_header",
                outcome(client.authorization_header()),
            ),
            ("refresh", outcome(client.refresh())),
            ("revoke", outcome(client.revoke())),
        ];
        ANSWERS.lock().unwrap().extend(answers);
    }
    fn flush(&self) {}
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_logger(&CallingLogger).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Runs `work` on a thread of its own and waits for it at most `within`: a call that
/// waited for its own renewal would hold it for the renewal's whole budget (30 s).
fn bounded<T: Send + 'static>(within: Duration, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(within)
        .expect("the call stalled: it waited for the renewal it was called from")
}

fn assert_refused(answers: &Answers, names: &[&str]) {
    assert_eq!(
        answers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        names,
        "every call was made once"
    );
    for (name, answer) in answers {
        match answer {
            Err((ErrorKind::Config, message)) => assert!(
                message.contains("own token renewal"),
                "{name}: the error says why: {message}"
            ),
            other => panic!("{name}: expected an immediate Config error, got {other:?}"),
        }
    }
}

#[test]
fn a_logger_calling_the_client_during_its_renewal_is_refused_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    install();
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-one-1a2b3c4d5e","expires_in":3600}"#,
    );
    // A long timeout: a call waiting for the renewal would wait for 30 s, its budget.
    let client = Client::new(
        ClientCredentials::new(
            format!("{}/token", server.url()),
            "client-id",
            "cs+/=:secret-9f8e7d",
        )
        .revocation_url(format!("{}/revoke", server.url())),
        opts().timeout(Duration::from_secs(120)),
    )
    .unwrap();
    *CALLED.lock().unwrap() = Some(client.clone());
    let outer = client.clone();
    let token = bounded(Duration::from_secs(20), move || {
        outer
            .token()
            .map(|t| t.access_token().expose_secret().to_owned())
    });
    assert_eq!(
        token.unwrap(),
        "at-one-1a2b3c4d5e",
        "the renewal itself succeeded"
    );
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    let answers = std::mem::take(&mut *ANSWERS.lock().unwrap());
    assert_refused(
        &answers,
        &["token", "authorization_header", "refresh", "revoke"],
    );
    // Outside the renewal the client serves as usual.
    assert_eq!(
        client.token().unwrap().access_token().expose_secret(),
        "at-one-1a2b3c4d5e"
    );
}

#[test]
fn a_hook_calling_the_client_during_its_renewal_is_refused_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    install();
    let mut server = mockito::Server::new();
    let count = counting_endpoint(
        &mut server,
        "/token",
        r#"{"access_token":"at-two-6f7a8b9c0d","expires_in":3600,"refresh_token":"rt-second-8d7c6b5a"}"#,
    );
    let slot: std::sync::Arc<OnceLock<Client>> = std::sync::Arc::default();
    let answers: std::sync::Arc<Mutex<Answers>> = std::sync::Arc::default();
    let (s, a) = (slot.clone(), answers.clone());
    let client = Client::new(
        RefreshToken::new(
            format!("{}/token", server.url()),
            "client-id",
            "cs+/=:secret-9f8e7d",
            "rt-first-5c4b3a29",
        ),
        opts()
            .timeout(Duration::from_secs(120))
            .on_rotation(move |_: &authcore::Rotation<'_>| {
                if let Some(client) = s.get() {
                    a.lock().unwrap().push(("token", outcome(client.token())));
                }
            }),
    )
    .unwrap();
    let _ = slot.set(client.clone());
    let outer = client.clone();
    let token = bounded(Duration::from_secs(20), move || {
        outer
            .token()
            .map(|t| t.access_token().expose_secret().to_owned())
    });
    assert_eq!(token.unwrap(), "at-two-6f7a8b9c0d");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_refused(&answers.lock().unwrap(), &["token"]);
}

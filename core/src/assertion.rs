//! [`AssertionSource`]: where a short-lived credential issued by someone else comes
//! from — a Kubernetes projected service-account token, a CI system's OIDC token, a
//! cloud metadata service's identity document, another authcore [`Client`]'s token.
//!
//! Such credentials live minutes to an hour and are rewritten by whoever issues them,
//! so a source is read again for every token request that needs one (never cached), and
//! once more when the server refuses the one that was sent (it may have been rewritten in
//! between). A JWT whose `exp` has passed is never sent: the error says so, naming the
//! source. Nothing read from a source is ever printed.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::options::HookError;
use crate::secret::Secret;
use crate::Client;

/// Largest assertion read from a file or a command's output (a JWT is a few KiB).
const MAX_ASSERTION_BYTES: u64 = 64 * 1024;

/// How long a command source may run by default.
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A function that returns a fresh assertion (see [`AssertionSource::callback`]).
pub type AssertionCallback = Arc<dyn Fn() -> std::result::Result<Secret, HookError> + Send + Sync>;

/// Where an assertion (a client assertion, a JWT bearer grant's assertion, a token
/// exchange's subject or actor token) comes from. Cheap to clone; its `Debug` names
/// the source (a path, a program), never what it yields.
#[derive(Clone)]
pub struct AssertionSource {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Literal(Secret),
    File(PathBuf),
    Command {
        program: String,
        args: Vec<String>,
        timeout: Duration,
    },
    Callback(AssertionCallback),
    Client(Client),
}

impl fmt::Debug for AssertionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssertionSource({})", self.describe())
    }
}

impl AssertionSource {
    /// A fixed value, sent as it is (read once: when it expires, every request fails).
    /// For values that are renewed elsewhere prefer [`file`](Self::file),
    /// [`command`](Self::command) or [`callback`](Self::callback).
    pub fn literal(value: impl Into<Secret>) -> Self {
        AssertionSource {
            kind: Kind::Literal(value.into()),
        }
    }

    /// A file read again for every token request: a Kubernetes projected token
    /// (`/var/run/secrets/…/token`), `AZURE_FEDERATED_TOKEN_FILE`, a file a sidecar
    /// rewrites. Surrounding whitespace is trimmed; a missing or empty file is a
    /// [`Config`](crate::ErrorKind::Config) error naming it.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        AssertionSource {
            kind: Kind::File(path.into()),
        }
    }

    /// A program run for every token request, its standard output (trimmed) the
    /// assertion: for CI systems and credential helpers. It runs without a shell, with
    /// the process's environment, for at most 10 s (see
    /// [`timeout`](Self::timeout)) and never past the call's deadline; a non-zero exit, an
    /// empty output or a timeout is an error naming the program (its output is never
    /// shown).
    pub fn command<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        AssertionSource {
            kind: Kind::Command {
                program: program.into(),
                args: args.into_iter().map(Into::into).collect(),
                timeout: DEFAULT_COMMAND_TIMEOUT,
            },
        }
    }

    /// A function called for every token request. An `Err` (or a panic) fails the
    /// request with a [`Config`](crate::ErrorKind::Config) error carrying the function's
    /// message.
    pub fn callback<F>(f: F) -> Self
    where
        F: Fn() -> std::result::Result<Secret, HookError> + Send + Sync + 'static,
    {
        AssertionSource {
            kind: Kind::Callback(Arc::new(f)),
        }
    }

    /// Another client's access token (chained token exchange): that client renews its
    /// token as it always does; when the server refuses the token it was given, it is
    /// invalidated at that client and its next one is tried once.
    pub fn client(client: Client) -> Self {
        AssertionSource {
            kind: Kind::Client(client),
        }
    }

    /// How long a [`command`](Self::command) may run (other sources ignore it).
    pub fn timeout(mut self, limit: Duration) -> Self {
        if let Kind::Command { timeout, .. } = &mut self.kind {
            *timeout = limit.min(crate::options::MAX_DURATION);
        }
        self
    }

    /// What the source is, for messages: `file /path`, `command prog`, `callback`,
    /// `client`, `literal`. Never its value.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Literal(_) => "literal".to_owned(),
            Kind::File(p) => format!("file {}", shown_path(p)),
            Kind::Command { program, .. } => format!("command {program}"),
            Kind::Callback(_) => "callback".to_owned(),
            Kind::Client(_) => "client".to_owned(),
        }
    }

    /// What identifies the source in a store key (never the assertion itself): the
    /// file's path, the command line, or nothing for the others.
    pub(crate) fn identity(&self) -> Option<String> {
        match &self.kind {
            Kind::File(p) => Some(format!("file:{}", p.display())),
            // The arguments by a digest: one may be a secret, and keys are shown to hooks.
            Kind::Command { program, args, .. } => Some(format!(
                "command:{program} args#{}",
                crate::store::StoreKey::secret_tag(&Secret::new(args.join("\0")))
            )),
            _ => None,
        }
    }

    /// What identifies the credential the source gives, for a token exchange's store
    /// key (never the value): a file's path or a command line as [`identity`]
    /// says, a literal's [`StoreKey::secret_tag`](crate::StoreKey), another client's
    /// own credential key; `None` for a callback (nothing tells two apart).
    ///
    /// [`identity`]: Self::identity
    pub(crate) fn credential_identity(&self) -> Option<String> {
        match &self.kind {
            Kind::Literal(value) => Some(format!(
                "literal:{}",
                crate::store::StoreKey::secret_tag(value)
            )),
            Kind::Client(client) => client.credential_key().map(|k| format!("client:{k}")),
            _ => self.identity(),
        }
    }

    /// Whether reading again can give another value.
    pub(crate) fn rereadable(&self) -> bool {
        !matches!(self.kind, Kind::Literal(_))
    }

    /// A fresh value within `deadline`. A JWT that has expired is refused here, before
    /// it is sent.
    pub(crate) fn read(&self, deadline: Deadline) -> Result<Secret> {
        let value = match &self.kind {
            Kind::Literal(s) => s.clone(),
            Kind::File(path) => read_file(path)?,
            Kind::Command {
                program,
                args,
                timeout,
            } => run_command(program, args, *timeout, deadline)?,
            Kind::Callback(f) => {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f()));
                match outcome {
                    Ok(Ok(s)) => Secret::new(s.expose_secret().trim()),
                    Ok(Err(e)) => {
                        return Err(Error::config(format!("the assertion callback failed: {e}")))
                    }
                    Err(_) => return Err(Error::config("the assertion callback panicked")),
                }
            }
            Kind::Client(client) => {
                let token = client.token_until(deadline)?;
                // A JWT past its `exp` that the client still holds (its lifetime came
                // from `expires_in`, or the clocks disagree): dropped there, and the
                // client's next token taken once.
                let value = token.access_token();
                if jwt_expiry(value.expose_secret()).is_some_and(|exp| exp <= unix_now()) {
                    client.invalidate(&token);
                    client.token_until(deadline)?.access_token().clone()
                } else {
                    value.clone()
                }
            }
        };
        if value.is_empty() {
            return Err(Error::config(format!(
                "the assertion from {} is empty",
                self.describe()
            )));
        }
        if let Some(exp) = jwt_expiry(value.expose_secret()) {
            let now = unix_now();
            if exp <= now {
                let why = match self.kind {
                    Kind::Client(_) => "its client's renewal gave an expired one too",
                    _ => "whatever renews it has not rewritten it",
                };
                return Err(Error::config(format!(
                    "the assertion from {} expired {} s ago (at {}); {why}",
                    self.describe(),
                    now - exp,
                    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(exp)),
                )));
            }
        }
        Ok(value)
    }

    /// Whether `value` (read from this source) is a JWT whose `exp` has passed.
    pub(crate) fn expired(value: &Secret) -> bool {
        jwt_expiry(value.expose_secret()).is_some_and(|exp| exp <= unix_now())
    }

    /// After the server refused `sent`: a value worth one more request, if the source
    /// now gives another (a rewritten file; a client's next token, the refused one
    /// invalidated there). `None` when nothing changed: sending the same one again
    /// would be refused again.
    pub(crate) fn reread_after_refusal(&self, sent: &Secret, deadline: Deadline) -> Option<Secret> {
        if !self.rereadable() {
            return None;
        }
        if let Kind::Client(client) = &self.kind {
            client.invalidate_access_token(sent.expose_secret());
        }
        match self.read(deadline) {
            Ok(fresh) if fresh != *sent => Some(fresh),
            _ => None,
        }
    }
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A path as messages show it. A value that looks like a credential given where a path
/// was expected (PEM text, a JWT, anything with a line break, very long) is not shown.
pub(crate) fn shown_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let jwt_like = text.len() > 40 && !text.contains('/') && text.split('.').count() == 3;
    if text.contains(['\n', '\r']) || text.contains("-----") || jwt_like || text.len() > 1024 {
        "[not shown: it looks like a key or a token, not a file name]".to_owned()
    } else {
        text.into_owned()
    }
}

fn read_file(path: &Path) -> Result<Secret> {
    let named = |what: &str| format!("the assertion file {} {what}", shown_path(path));
    // Only a regular file: opening a FIFO (or a device) could block past any deadline.
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(Error::config(named("is not a regular file"))),
        Err(e) => {
            return Err(Error::config(named(&format!(
                "could not be read: {}",
                io_reason(&e)
            ))))
        }
        Ok(_) => {}
    }
    let file = std::fs::File::open(path)
        .map_err(|e| Error::config(named(&format!("could not be read: {}", io_reason(&e)))))?;
    let mut raw = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_ASSERTION_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::config(named(&format!("could not be read: {}", io_reason(&e)))))?;
    if raw.len() as u64 > MAX_ASSERTION_BYTES {
        return Err(Error::config(named("is larger than 64 KiB")));
    }
    let text = std::str::from_utf8(&raw).map_err(|_| Error::config(named("is not text")))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(Error::config(named("is empty")));
    }
    Ok(Secret::new(value))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "it does not exist".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

fn run_command(
    program: &str,
    args: &[String],
    timeout: Duration,
    deadline: Deadline,
) -> Result<Secret> {
    use wait_timeout::ChildExt;
    let named = |what: String| format!("the assertion command {program} {what}");
    let started = std::time::Instant::now();
    let limit = match deadline.remaining() {
        Some(left) => left.min(timeout),
        None => return Err(Deadline::expired("the assertion command")),
    };
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // A group of its own, so that what it leaves running (a helper's background
    // process holding the pipe) can be stopped with it.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|e| Error::config(named(format!("could not be started: {}", io_reason(&e)))))?;
    // Read stdout on another thread, so that a child that fills the pipe cannot block
    // its own exit; its result comes back through a channel waited on with a bound.
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (sent, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = zeroize::Zeroizing::new(Vec::new());
        let read = (&mut stdout)
            .take(MAX_ASSERTION_BYTES + 1)
            .read_to_end(&mut out);
        // Drain (and drop) anything past the cap so that the child can exit.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        let _ = sent.send(read.map(|_| out));
    });
    let stop_all = |child: &mut std::process::Child| {
        stop_group(child);
        let _ = child.kill();
        let _ = child.wait();
    };
    let status = match child.wait_timeout(limit) {
        Ok(Some(status)) => status,
        Ok(None) => {
            stop_all(&mut child);
            return Err(Error::Timeout {
                message: named(format!("did not finish within {} s", limit.as_secs_f64())),
            });
        }
        Err(e) => {
            stop_all(&mut child);
            return Err(Error::config(named(format!(
                "could not be waited for: {e}"
            ))));
        }
    };
    // Everything it printed is in the pipe; a process it left behind may hold the pipe
    // open: it gets a moment (within the limit), then its group is stopped.
    let left = limit.saturating_sub(started.elapsed());
    let out = match output.recv_timeout(left.min(Duration::from_millis(500))) {
        Ok(out) => out,
        Err(_) => {
            stop_group(&child);
            output
                .recv_timeout(Duration::from_millis(500))
                .map_err(|_| {
                    Error::config(named(
                        "left a process behind that keeps its output open".to_owned(),
                    ))
                })?
        }
    };
    let out = out.map_err(|_| Error::config(named("output could not be read".to_owned())))?;
    if !status.success() {
        return Err(Error::config(named(format!("failed ({status})"))));
    }
    if out.len() as u64 > MAX_ASSERTION_BYTES {
        return Err(Error::config(named("printed more than 64 KiB".to_owned())));
    }
    let text = std::str::from_utf8(&out)
        .map_err(|_| Error::config(named("printed something that is not text".to_owned())))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(Error::config(named("printed nothing".to_owned())));
    }
    Ok(Secret::new(value))
}

/// Stops every process of the command's group (the child and what it started).
fn stop_group(child: &std::process::Child) {
    #[cfg(unix)]
    if let Some(group) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// The `exp` of a value that looks like a JWT (three base64url parts, a JSON payload
/// with a numeric `exp`); `None` for anything else. The signature is not checked: this
/// only keeps a known-dead credential from being sent.
pub(crate) fn jwt_expiry(value: &str) -> Option<u64> {
    let mut parts = value.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = zeroize::Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?,
    );
    // Claims are a JSON object: serde would also read a struct from an array (`[0]`).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: Option<serde_json::Number>,
    }
    let claims: Exp = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.exp?;
    // A negative NumericDate is long past.
    exp.as_u64()
        .or_else(|| exp.as_f64().map(|f| if f > 0.0 { f as u64 } else { 0 }))
}

/// Whether a token endpoint's answer refused a credential the request carried, so that
/// a source read again may be worth one more request.
pub(crate) fn refused_credential(e: &Error) -> bool {
    e.oauth().is_some_and(|o| {
        matches!(o.error.as_str(), "invalid_client" | "invalid_grant")
            && matches!(o.status, Some(400 | 401))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn jwt(exp: u64) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            enc(r#"{"alg":"none"}"#),
            enc(&format!(r#"{{"exp":{exp}}}"#))
        )
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(5))
    }

    #[test]
    fn a_file_is_read_every_time_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = AssertionSource::file(&path);
        assert_eq!(source.read(soon()).unwrap().expose_secret(), "first");
        std::fs::write(&path, "  second  \n").unwrap();
        assert_eq!(source.read(soon()).unwrap().expose_secret(), "second");
        let again = source
            .reread_after_refusal(&Secret::new("first"), soon())
            .unwrap();
        assert_eq!(again.expose_secret(), "second");
        assert!(source
            .reread_after_refusal(&Secret::new("second"), soon())
            .is_none());
    }

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let e = AssertionSource::file(&path).read(soon()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("absent") && e.to_string().contains("does not exist"));
        std::fs::write(&path, " \n").unwrap();
        let e = AssertionSource::file(&path).read(soon()).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
    }

    #[test]
    fn an_expired_jwt_is_never_returned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let old = jwt(now() - 100);
        std::fs::write(&path, &old).unwrap();
        let e = AssertionSource::file(&path).read(soon()).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        assert!(!e.to_string().contains(&old));
        let live = jwt(now() + 600);
        std::fs::write(&path, &live).unwrap();
        assert_eq!(
            AssertionSource::file(&path)
                .read(soon())
                .unwrap()
                .expose_secret(),
            live
        );
        assert_eq!(jwt_expiry("not.a-jwt"), None);
        assert_eq!(jwt_expiry("opaque"), None);
    }

    #[test]
    fn a_command_gives_its_output_within_its_timeout() {
        let source = AssertionSource::command("sh", ["-c", "echo ' from-command '"]);
        assert_eq!(source.read(soon()).unwrap().expose_secret(), "from-command");
        let e = AssertionSource::command("sh", ["-c", "echo secret-output; exit 3"])
            .read(soon())
            .unwrap_err();
        assert!(e.to_string().contains("failed"), "{e}");
        assert!(!e.to_string().contains("secret-output"));
        let started = std::time::Instant::now();
        let e = AssertionSource::command("sleep", ["5"])
            .timeout(Duration::from_millis(200))
            .read(soon())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(started.elapsed() < Duration::from_secs(4));
        let e = AssertionSource::command("/nonexistent/program", Vec::<String>::new())
            .read(soon())
            .unwrap_err();
        assert!(e.to_string().contains("could not be started"), "{e}");
    }

    #[test]
    fn a_callback_failure_or_panic_is_an_error() {
        let ok = AssertionSource::callback(|| Ok(Secret::new("cb")));
        assert_eq!(ok.read(soon()).unwrap().expose_secret(), "cb");
        let failing = AssertionSource::callback(|| Err("no token yet".into()));
        assert!(failing
            .read(soon())
            .unwrap_err()
            .to_string()
            .contains("no token yet"));
        let panicking = AssertionSource::callback(|| panic!("boom"));
        assert_eq!(
            panicking.read(soon()).unwrap_err().kind(),
            ErrorKind::Config
        );
        let literal = AssertionSource::literal("fixed");
        assert!(!literal.rereadable());
        assert!(literal
            .reread_after_refusal(&Secret::new("fixed"), soon())
            .is_none());
        assert_eq!(format!("{literal:?}"), "AssertionSource(literal)");
    }
}

//! One error type for every failure, with a stable kind and numeric code shared by
//! all hosts (the C status enum and the Python exception classes map 1:1 onto it).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use zeroize::Zeroize;

/// The result type of every fallible authcore call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of an [`Error`], with a stable numeric code.
///
/// Codes are never reused: a retired kind keeps its number forever. `0` is reserved for
/// success in the C API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum ErrorKind {
    /// The client was configured wrongly (bad URL, plain HTTP to a remote host, …).
    Config = 1,
    /// The connection failed: refused, reset, DNS, TLS.
    Transport = 2,
    /// A deadline passed: connect, whole request, or waiting for another thread's renewal.
    Timeout = 3,
    /// The token endpoint answered with an OAuth 2.0 error (RFC 6749 §5.2).
    OAuth = 4,
    /// The endpoint answered with an API problem body (RFC 9457 or a vendor envelope).
    ApiProblem = 5,
    /// The endpoint refused because of rate limiting (HTTP 429).
    RateLimited = 6,
    /// The response could not be understood (HTML page, missing `access_token`, no such
    /// endpoint at the URL, …).
    InvalidResponse = 7,
    /// The `state` in an authorization callback did not match the one sent.
    StateMismatch = 8,
    /// The refresh token was refused and no other credential can obtain a new one.
    ReauthenticationRequired = 9,
    /// The shared token store could not be used (unreachable, refused the credentials,
    /// lost its lock) and renewing without it could cost a rotated refresh token.
    Store = 10,
    /// The issuer named by metadata or an authorization response is not the one
    /// configured (mix-up defence, RFC 8414 §3.3 and RFC 9207).
    IssuerMismatch = 11,
    /// The caller cancelled a wait (a device authorization).
    Cancelled = 12,
}

impl ErrorKind {
    /// The stable numeric code of this kind.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// A short, stable, snake_case name of this kind.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Transport => "transport",
            ErrorKind::Timeout => "timeout",
            ErrorKind::OAuth => "oauth",
            ErrorKind::ApiProblem => "api_problem",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::StateMismatch => "state_mismatch",
            ErrorKind::ReauthenticationRequired => "reauthentication_required",
            ErrorKind::Store => "store",
            ErrorKind::IssuerMismatch => "issuer_mismatch",
            ErrorKind::Cancelled => "cancelled",
        }
    }

    /// Every kind, in code order.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Config,
        ErrorKind::Transport,
        ErrorKind::Timeout,
        ErrorKind::OAuth,
        ErrorKind::ApiProblem,
        ErrorKind::RateLimited,
        ErrorKind::InvalidResponse,
        ErrorKind::StateMismatch,
        ErrorKind::ReauthenticationRequired,
        ErrorKind::Store,
        ErrorKind::IssuerMismatch,
        ErrorKind::Cancelled,
    ];
}

/// An OAuth 2.0 error response (RFC 6749 §5.2), or an `error=` authorization callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The `error` code, e.g. `invalid_client`.
    pub error: String,
    /// `error_description` (or a vendor's `message`/`hint`), scrubbed of token-like text.
    pub description: Option<String>,
    /// `error_uri`.
    pub uri: Option<String>,
    /// The HTTP status, or `None` for an authorization callback.
    pub status: Option<u16>,
}

/// An API problem body: RFC 9457, api.video's problem body or Vibe's `{"error": {…}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status of the response.
    pub status: u16,
    /// `type` (a URI, or Vibe's short type such as `insufficient_scope`).
    pub problem_type: Option<String>,
    /// `title` (or a vendor's `message`).
    pub title: Option<String>,
    /// `detail`, or `name` for api.video; JSON objects are rendered compactly.
    pub detail: Option<String>,
}

/// Every authcore failure. Messages never contain secrets.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The client was configured wrongly.
    Config {
        /// What is wrong.
        message: String,
    },
    /// The connection failed.
    Transport {
        /// What failed.
        message: String,
        /// The underlying error.
        source: Option<Arc<dyn StdError + Send + Sync>>,
    },
    /// A deadline passed.
    Timeout {
        /// Which deadline.
        message: String,
    },
    /// An OAuth 2.0 error response.
    OAuth(OAuthError),
    /// An API problem body.
    ApiProblem(Problem),
    /// HTTP 429, with the delay the server asked for.
    RateLimited {
        /// From `Retry-After` or `X-RateLimit-Retry-After`.
        retry_after: Option<Duration>,
        /// The problem body, if the server sent one.
        problem: Option<Problem>,
    },
    /// A response that could not be understood.
    InvalidResponse {
        /// The HTTP status (0 when the input was not an HTTP response, such as an
        /// authorization callback URL).
        status: u16,
        /// What was wrong with it.
        message: String,
        /// A short, secret-free excerpt of the body.
        snippet: String,
    },
    /// The `state` of an authorization callback did not match.
    StateMismatch,
    /// A refresh token was refused and nothing else can obtain a token.
    ReauthenticationRequired {
        /// Why the refresh token was refused.
        cause: Box<Error>,
    },
    /// The shared token store could not be used.
    Store {
        /// What failed (never the store's credentials).
        message: String,
    },
    /// The issuer is not the one configured.
    IssuerMismatch {
        /// Which issuer was found where.
        message: String,
    },
    /// The caller cancelled the wait.
    Cancelled,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::Transport { .. } => ErrorKind::Transport,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::OAuth(_) => ErrorKind::OAuth,
            Error::ApiProblem(_) => ErrorKind::ApiProblem,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::InvalidResponse { .. } => ErrorKind::InvalidResponse,
            Error::StateMismatch => ErrorKind::StateMismatch,
            Error::ReauthenticationRequired { .. } => ErrorKind::ReauthenticationRequired,
            Error::Store { .. } => ErrorKind::Store,
            Error::IssuerMismatch { .. } => ErrorKind::IssuerMismatch,
            Error::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// The OAuth error, if this is one (directly or as the cause of a required
    /// reauthentication).
    pub fn oauth(&self) -> Option<&OAuthError> {
        match self {
            Error::OAuth(e) => Some(e),
            Error::ReauthenticationRequired { cause } => cause.oauth(),
            _ => None,
        }
    }

    /// The API problem, if this is one (directly, inside a rate limit, or as the cause
    /// of a required reauthentication).
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::ApiProblem(p) => Some(p),
            Error::RateLimited { problem, .. } => problem.as_ref(),
            Error::ReauthenticationRequired { cause } => cause.problem(),
            _ => None,
        }
    }

    /// The HTTP status of the response that caused this error, if there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::OAuth(e) => e.status,
            Error::ApiProblem(p) => Some(p.status),
            Error::RateLimited { .. } => Some(429),
            Error::InvalidResponse { status, .. } => Some(*status),
            Error::ReauthenticationRequired { cause } => cause.http_status(),
            _ => None,
        }
    }

    /// The delay the server asked for before the next attempt, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// This error with every occurrence of `secrets` in its texts replaced by
    /// `[redacted]`: a provider may echo a credential back in its answer, whatever its
    /// shape (short, punctuated, letters only) — values the pattern-based scrubbing
    /// cannot recognise. Values shorter than 4 characters are left alone: replacing them
    /// would garble every message and hide nothing.
    pub(crate) fn redact_values(mut self, secrets: &[&str]) -> Self {
        let secrets: Vec<&str> = secrets.iter().copied().filter(|s| s.len() >= 4).collect();
        if secrets.is_empty() {
            return self;
        }
        let clean = |text: &mut String| {
            for s in &secrets {
                if text.contains(s) {
                    let mut redacted = text.replace(s, "[redacted]");
                    std::mem::swap(text, &mut redacted);
                    redacted.zeroize();
                }
            }
        };
        let clean_opt = |text: &mut Option<String>| {
            if let Some(t) = text {
                clean(t);
            }
        };
        let clean_problem = |p: &mut Problem| {
            clean_opt(&mut p.problem_type);
            clean_opt(&mut p.title);
            clean_opt(&mut p.detail);
        };
        match &mut self {
            Error::Config { message }
            | Error::Transport { message, .. }
            | Error::Timeout { message }
            | Error::Store { message }
            | Error::IssuerMismatch { message } => clean(message),
            Error::OAuth(o) => {
                clean(&mut o.error);
                clean_opt(&mut o.description);
                clean_opt(&mut o.uri);
            }
            Error::ApiProblem(p) => clean_problem(p),
            Error::RateLimited { problem, .. } => {
                if let Some(p) = problem {
                    clean_problem(p);
                }
            }
            Error::InvalidResponse {
                message, snippet, ..
            } => {
                clean(message);
                clean(snippet);
            }
            Error::ReauthenticationRequired { cause } => {
                let inner = std::mem::replace(&mut **cause, Error::Cancelled);
                **cause = inner.redact_values(&secrets);
            }
            Error::StateMismatch | Error::Cancelled => {}
        }
        self
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    pub(crate) fn store(message: impl Into<String>) -> Self {
        Error::Store {
            message: message.into(),
        }
    }

    pub(crate) fn invalid(status: u16, message: impl Into<String>, body: &[u8]) -> Self {
        Error::InvalidResponse {
            status,
            message: message.into(),
            snippet: snippet(body),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { message } => write!(f, "configuration error: {message}"),
            Error::Transport { message, .. } => write!(f, "transport error: {message}"),
            Error::Timeout { message } => write!(f, "timed out: {message}"),
            Error::OAuth(e) => {
                write!(f, "OAuth error {}", e.error)?;
                if let Some(s) = e.status {
                    write!(f, " (HTTP {s})")?;
                }
                if let Some(d) = &e.description {
                    write!(f, ": {d}")?;
                }
                Ok(())
            }
            Error::ApiProblem(p) => {
                write!(f, "API problem (HTTP {})", p.status)?;
                for part in [&p.problem_type, &p.title, &p.detail].into_iter().flatten() {
                    write!(f, ": {part}")?;
                }
                Ok(())
            }
            Error::RateLimited { retry_after, .. } => {
                write!(f, "rate limited (HTTP 429)")?;
                if let Some(d) = retry_after {
                    write!(f, "; retry after {:.3} s", d.as_secs_f64())?;
                }
                Ok(())
            }
            Error::InvalidResponse {
                status,
                message,
                snippet,
            } => write!(
                f,
                "invalid response (HTTP {status}): {message}; body: {snippet}"
            ),
            Error::StateMismatch => {
                write!(f, "authorization callback state does not match the request")
            }
            // A reason (the session ended, its key is lost) is said as it is, not as a
            // configuration error.
            Error::ReauthenticationRequired { cause } => match &**cause {
                Error::Config { message } => write!(f, "reauthentication required: {message}"),
                cause => write!(f, "reauthentication required: {cause}"),
            },
            Error::Store { message } => write!(f, "token store: {message}"),
            Error::IssuerMismatch { message } => write!(f, "issuer mismatch: {message}"),
            Error::Cancelled => write!(f, "cancelled"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Transport {
                source: Some(s), ..
            } => Some(s.as_ref()),
            Error::ReauthenticationRequired { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}

const SNIPPET_CHARS: usize = 160;
/// Runs of token-like characters at least this long are redacted from server text…
const TOKEN_LIKE_RUN: usize = 20;
/// …unless they read like words: separator-free pieces shorter than this, no digits.
const WORD_PIECE: usize = 16;
/// Runs this long right after `Bearer`/`Basic` are credentials, whatever they look like.
const AFTER_SCHEME_RUN: usize = 8;

/// Replaces every run of token-like characters (JWTs, opaque tokens, keys) with
/// `[redacted]`, so that server-provided text is safe to put in a message.
///
/// A run of 20 or more token characters is redacted when it mixes letters and digits
/// or has a separator-free piece of 16 or more characters (an all-letter or all-digit
/// secret), so that words, hyphenated codes and URLs stay readable. A run of 8 or more
/// right after `Bearer` or `Basic` is redacted too (but not `Bearer realm=…`).
pub(crate) fn scrub(text: &str) -> String {
    fn token_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || "-._~+/=".contains(c)
    }
    fn secret_like(run: &str) -> bool {
        if run.len() < TOKEN_LIKE_RUN {
            return false;
        }
        let mixed =
            run.bytes().any(|b| b.is_ascii_digit()) && run.bytes().any(|b| b.is_ascii_alphabetic());
        let long_piece = run
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|piece| piece.len() >= WORD_PIECE);
        mixed || long_piece
    }
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let mut after_scheme = false;
    let mut flush = |run: &mut String, out: &mut String| {
        if run.is_empty() {
            return;
        }
        if (after_scheme && run.len() >= AFTER_SCHEME_RUN) || secret_like(run) {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        after_scheme = run.eq_ignore_ascii_case("bearer") || run.eq_ignore_ascii_case("basic");
        run.zeroize();
        run.clear();
    };
    for c in text.chars() {
        if token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A short, secret-free description of a response body for error messages.
///
/// JSON objects are described by their keys only (values may be tokens); other text is
/// scrubbed of token-like runs first and cut short afterwards, so that a cut can never
/// leave half a secret behind.
pub(crate) fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty)".to_owned();
    }
    if let Ok(parsed) = serde_json::from_slice::<Value>(body) {
        let parsed = crate::secret::WipedJson(parsed);
        if let Value::Object(map) = &parsed.0 {
            let keys: Vec<&str> = map.keys().map(String::as_str).take(12).collect();
            return scrub(&format!("JSON object with keys [{}]", keys.join(", ")));
        }
    }
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(body).into_owned());
    let collapsed = zeroize::Zeroizing::new(text.split_whitespace().collect::<Vec<_>>().join(" "));
    let scrubbed = scrub(&collapsed);
    let mut cut: String = scrubbed.chars().take(SNIPPET_CHARS).collect();
    if scrubbed.chars().count() > SNIPPET_CHARS {
        cut.push('…');
    }
    cut
}

/// What is wrong with a JSON document that did not read as the type expected, without
/// repeating any of it: serde's own messages quote the offending value (`invalid type:
/// string "…"`), which may be a credential. Says the kind of problem, the field when one
/// of ours is missing or repeated, and where.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "could not be read".to_owned(),
        Category::Syntax => "is not valid JSON".to_owned(),
        Category::Eof => "ends too early".to_owned(),
        Category::Data => {
            let text = e.to_string();
            // These name a field of the type expected (ours), never a value.
            ["missing field `", "duplicate field `"]
                .iter()
                .find_map(|prefix| {
                    let name = text.strip_prefix(prefix)?.split('`').next()?;
                    let ours = !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                    ours.then(|| format!("has a {}field `{name}`", &prefix[..prefix.len() - 7]))
                })
                .unwrap_or_else(|| "has a value of the wrong type".to_owned())
        }
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

fn str_field(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(scrub(s)),
        Value::Null => None,
        other => Some(scrub(&other.to_string())),
    }
}

/// Reads an OAuth error (`{"error": "…"}`) out of a JSON object.
pub(crate) fn oauth_error(map: &Map<String, Value>, status: Option<u16>) -> Option<OAuthError> {
    let error = match map.get("error")? {
        Value::String(s) if !s.is_empty() => scrub(s),
        _ => return None,
    };
    let description = str_field(map, "error_description")
        .or_else(|| str_field(map, "message"))
        .or_else(|| str_field(map, "hint"));
    Some(OAuthError {
        error,
        description,
        uri: str_field(map, "error_uri"),
        status,
    })
}

/// Reads an API problem (RFC 9457, api.video, Vibe envelope) out of a JSON object.
pub(crate) fn problem(map: &Map<String, Value>, status: u16) -> Option<Problem> {
    if let Some(Value::Object(inner)) = map.get("error") {
        return Some(Problem {
            status,
            problem_type: str_field(inner, "type"),
            title: str_field(inner, "title").or_else(|| str_field(inner, "message")),
            detail: str_field(inner, "detail"),
        });
    }
    let is_problem = ["type", "title", "detail", "message"]
        .iter()
        .any(|k| map.contains_key(*k));
    is_problem.then(|| Problem {
        status,
        problem_type: str_field(map, "type"),
        title: str_field(map, "title").or_else(|| str_field(map, "message")),
        detail: str_field(map, "detail").or_else(|| str_field(map, "name")),
    })
}

/// Turns an unsuccessful response into the most specific error its body allows.
pub(crate) fn from_response(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Error {
    let parsed = crate::secret::WipedJson(serde_json::from_slice(body).unwrap_or(Value::Null));
    let map = match &parsed.0 {
        Value::Object(map) => Some(map),
        _ => None,
    };
    if status == 429 {
        return Error::RateLimited {
            retry_after,
            problem: map.and_then(|m| problem(m, status)),
        };
    }
    if let Some(map) = map {
        if let Some(e) = oauth_error(map, Some(status)) {
            return Error::OAuth(e);
        }
        if let Some(p) = problem(map, status) {
            return Error::ApiProblem(p);
        }
    }
    Error::invalid(status, format!("unexpected HTTP status {status}"), body)
}

/// An unsuccessful answer of an OAuth endpoint (`endpoint`, such as "token endpoint",
/// at `host`, `host:port`): as [`from_response`], except that a status saying no such
/// endpoint is at the URL (404 Not Found, 405 Method Not Allowed, 410 Gone) is an
/// [`Error::InvalidResponse`] that says so — a wrong URL, never a refusal of the
/// credentials, whatever body the server sends with it. OAuth errors come with 400 or
/// 401 (RFC 6749 §5.2); frameworks answer an unknown path with `{"error": "Not Found"}`
/// (Spring) or `{"error": "Realm does not exist"}` (Keycloak), quoted in the message.
pub(crate) fn from_endpoint_response(
    endpoint: &str,
    host: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Error {
    let error = from_response(status, retry_after, body);
    if !matches!(status, 404 | 405 | 410) {
        return error;
    }
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    // What the server said, if it put it as an OAuth error (already scrubbed, bounded).
    let said = error
        .oauth()
        .map(|o| {
            format!(
                " (it said \"{}\")",
                o.error.chars().take(80).collect::<String>()
            )
        })
        .unwrap_or_default();
    Error::invalid(
        status,
        format!(
            "the {endpoint} at {host} answered {status} {reason}{said}: there is no {endpoint} \
             at that URL (is it the right one?)"
        ),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_endpoint_is_an_unusable_answer_not_a_refusal() {
        for (status, body) in [
            (404, &br#"{"status":404,"title":"Not Found"}"#[..]),
            (404, b"<html>Not Found</html>"),
            (405, b""),
            (410, br#"{"message":"gone"}"#),
        ] {
            let e = from_endpoint_response("token endpoint", "id.example:8443", status, None, body);
            assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{status}: {e}");
            assert_eq!(e.http_status(), Some(status));
            let text = e.to_string();
            assert!(
                text.contains(&format!(
                    "the token endpoint at id.example:8443 answered {status}"
                )),
                "{text}"
            );
        }
        // A framework's or a provider's "error" with a 404 is still no such endpoint
        // (OAuth errors come with 400 or 401), and is quoted; other statuses keep their
        // meaning.
        for body in [
            &br#"{"timestamp":"2026-12-06T12:00:00Z","status":404,"error":"Not Found","path":"/oauth/tokn"}"#[..],
            br#"{"error":"Realm does not exist"}"#,
            br#"{"error":"invalid_client"}"#,
        ] {
            let e = from_endpoint_response("token endpoint", "h", 404, None, body);
            assert_eq!(e.kind(), ErrorKind::InvalidResponse, "{e}");
            assert!(e.to_string().contains("answered 404 Not Found (it said \""), "{e}");
        }
        let e = from_endpoint_response(
            "token endpoint",
            "h",
            400,
            None,
            br#"{"title":"The API key is invalid."}"#,
        );
        assert_eq!(e.kind(), ErrorKind::ApiProblem);
    }

    #[test]
    fn json_errors_never_repeat_the_document() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            device_code: String,
            expires_in: u64,
        }
        let cases: [(&[u8], &str); 6] = [
            (
                br#"{"device_code":"x","expires_in":"hunter2"}"#,
                "has a value of the wrong type (line 1",
            ),
            (br#""hunter2""#, "has a value of the wrong type"),
            (br#"{"expires_in":1}"#, "has a missing field `device_code`"),
            (
                br#"{"device_code":"a","device_code":"hunter2","expires_in":1}"#,
                "has a duplicate field `device_code`",
            ),
            (br#"{"device_code":"hunter2"#, "ends too early"),
            (br#"{"device_code":hunter2}"#, "is not valid JSON"),
        ];
        for (doc, said) in cases {
            let e = serde_json::from_slice::<Doc>(doc).unwrap_err();
            let text = json_error(&e);
            assert!(text.starts_with(said), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn scrub_redacts_token_like_runs_only() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl";
        let s = scrub(&format!("token {jwt} was refused"));
        assert_eq!(s, "token [redacted] was refused");
        assert_eq!(
            scrub("Client authentication failed."),
            "Client authentication failed."
        );
    }

    #[test]
    fn snippet_of_json_lists_keys_not_values() {
        let s = snippet(br#"{"access_token": "abc", "weird": 1}"#);
        assert_eq!(s, "JSON object with keys [access_token, weird]");
    }

    #[test]
    fn snippet_of_html_is_short() {
        let body = format!("<html><body>{}</body></html>", "x ".repeat(500));
        let s = snippet(body.as_bytes());
        assert!(s.chars().count() <= SNIPPET_CHARS + 1, "{s}");
        assert!(s.starts_with("<html><body>"));
    }

    #[test]
    fn codes_are_stable() {
        let codes: Vec<u32> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes, (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn vibe_envelope_is_a_problem_and_token_error_is_oauth() {
        let e = from_response(
            403,
            None,
            br#"{"error":{"type":"insufficient_scope","title":"Forbidden","status":403,"detail":{"required":"x"}}}"#,
        );
        match e {
            Error::ApiProblem(p) => {
                assert_eq!(p.problem_type.as_deref(), Some("insufficient_scope"));
                assert_eq!(p.detail.as_deref(), Some(r#"{"required":"x"}"#));
            }
            other => panic!("{other:?}"),
        }
        let e = from_response(
            401,
            None,
            br#"{"error":"invalid_client","error_description":"bad"}"#,
        );
        assert_eq!(e.oauth().map(|o| o.error.as_str()), Some("invalid_client"));
    }

    #[test]
    fn scrub_catches_secrets_of_any_mix_and_keeps_words() {
        for secret in [
            "abcdefghijklmnopqrstuvwxyzabcdef",
            "12345678901234567890123",
            "ABCDEFGHIJKLMNOPQRSTUV",
            "aB3-xY9_qq.ZZ-k2-ppp-Q7",
        ] {
            let s = scrub(&format!("refresh token {secret} is unknown"));
            assert_eq!(s, "refresh token [redacted] is unknown", "{secret}");
        }
        assert_eq!(scrub("Bearer abcdefgh"), "Bearer [redacted]");
        assert_eq!(scrub("basic dXNlcjpwYXNz"), "basic [redacted]");
        assert_eq!(
            scrub(r#"Bearer realm="api", error="invalid_token""#),
            r#"Bearer realm="api", error="invalid_token""#
        );
        for kept in [
            "https://docs.api.video/reference/authentication-invalid-api-key",
            "The refresh token is invalid, expired or was already used.",
        ] {
            assert_eq!(scrub(kept), kept);
        }
    }

    #[test]
    fn snippet_scrubs_before_cutting() {
        // A secret straddling the cut: its first half must not survive the truncation.
        let secret = "s3cr3tT0k3nValue9876543210abcdefXYZ";
        let pad = "x ".repeat((SNIPPET_CHARS - 10) / 2);
        let body = format!("<html>{pad}{secret} tail</html>");
        let s = snippet(body.as_bytes());
        assert!(!s.contains("s3cr3t"), "{s}");
    }

    proptest::proptest! {
        #[test]
        fn snippet_never_keeps_a_piece_of_a_secret(
            prefix in "[ a-z<>]{0,300}",
            secret in "[a-zA-Z0-9_-]{24,64}",
            suffix in "[ a-z<>]{0,50}",
        ) {
            proptest::prop_assume!(secret.bytes().any(|b| b.is_ascii_digit()));
            let body = format!("{prefix} {secret} {suffix}");
            let s = snippet(body.as_bytes());
            for w in secret.as_bytes().windows(12) {
                let piece = std::str::from_utf8(w).unwrap();
                proptest::prop_assert!(!s.contains(piece), "{s} keeps {piece}");
            }
        }

        #[test]
        fn error_parsing_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), status in 100u16..600) {
            let e = from_response(status, None, &body);
            let _ = e.to_string();
            let _ = snippet(&body);
        }

        #[test]
        fn scrub_leaves_no_token_like_run(text in "[a-zA-Z0-9 ._~+/=-]{0,200}") {
            let out = scrub(&text);
            for word in out.split(|c: char| !(c.is_ascii_alphanumeric() || "-._~+/=".contains(c))) {
                let mixed = word.chars().any(|c| c.is_ascii_digit()) && word.chars().any(|c| c.is_ascii_alphabetic());
                proptest::prop_assert!(!(mixed && word.len() >= TOKEN_LIKE_RUN), "{word}");
            }
        }
    }
}

//! The HTTP layer: one `ureq::Agent` per client with timeouts, a body cap, no
//! redirects, HTTPS-only outside loopback, and bounded retries for token requests.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ureq::http;
use url::Url;
use zeroize::Zeroizing;

use crate::error::{self, Error, Result};
use crate::options::Options;
use crate::secret::Secret;
use crate::token::{self, Token};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("authcore/", env!("CARGO_PKG_VERSION"));
/// A server's `Retry-After` longer than this is not waited for inside one call.
const MAX_INLINE_RETRY_WAIT: Duration = Duration::from_secs(10);
/// Longest delay honoured from `Retry-After` at all.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// May a token request be sent again after a failure?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Yes, on any transient failure (API key exchange, client credentials).
    Safe,
    /// Only when the server provably did not process it (connection not made, 429):
    /// the request carries a rotating refresh token that must never be used twice.
    Rotating,
    /// Never (authorization code exchange: codes are single use).
    Never,
}

/// How the token request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    #[default]
    Form,
    /// `application/json` (api.video, viewneo).
    Json,
}

/// A token endpoint request; parameters are secrets because most of them are.
pub(crate) struct TokenRequest<'a> {
    pub url: &'a str,
    pub format: BodyFormat,
    pub params: Vec<(&'static str, Secret)>,
    pub basic: Option<Secret>,
    pub headers: Vec<(String, String)>,
    pub replay: Replay,
}

/// An HTTP response from an authenticated API request.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    headers: http::HeaderMap,
    /// The body (capped at the configured maximum).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive), if its value is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All headers in order, names lowercase; values that are not text are skipped.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What one attempt produced.
struct Raw {
    status: u16,
    retry_after: Option<Duration>,
    body: Zeroizing<Vec<u8>>,
}

/// The HTTP layer of one client.
pub struct Http {
    agent: ureq::Agent,
    options: Arc<Options>,
}

impl Http {
    pub(crate) fn new(options: Arc<Options>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.timeout))
            .user_agent(USER_AGENT)
            .build()
            .into();
        Http { agent, options }
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    /// Refuses URLs that would send credentials in clear text to another machine.
    pub(crate) fn check_url(&self, url: &str) -> Result<()> {
        // The common case, checked without parsing: this runs on every API request.
        let https = url.len() > 8 && url.as_bytes()[..8].eq_ignore_ascii_case(b"https://");
        if https {
            return Ok(());
        }
        check_url(url, self.options.danger_allow_insecure_http).map(|_| ())
    }

    /// Sends a token request with bounded, jittered retries and parses the token.
    pub(crate) fn token(&self, req: &TokenRequest<'_>) -> Result<Token> {
        self.check_url(req.url)?;
        let max_retries = if req.replay == Replay::Never {
            0
        } else {
            self.options.max_retries
        };
        let mut attempt = 0;
        loop {
            let sent_at = Instant::now();
            let outcome = self.token_attempt(req);
            let retry = match &outcome {
                Ok(raw) if (200..300).contains(&raw.status) => {
                    return token::parse_token_response(
                        raw.status,
                        &raw.body,
                        sent_at,
                        self.options.default_lifetime,
                    );
                }
                Ok(raw) => retryable_status(raw, req.replay),
                Err((_, sent)) => {
                    req.replay == Replay::Safe || (!sent && req.replay != Replay::Never)
                }
            };
            let delay = match &outcome {
                Ok(raw) => raw.retry_after,
                Err(_) => None,
            }
            .unwrap_or_else(|| backoff_delay(attempt));
            if !retry || attempt >= max_retries || delay > MAX_INLINE_RETRY_WAIT {
                return Err(match outcome {
                    Ok(raw) => error::from_response(raw.status, raw.retry_after, &raw.body),
                    Err((e, _)) => e,
                });
            }
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    /// One token request attempt. On error, also says whether the request may have
    /// reached the server.
    fn token_attempt(&self, req: &TokenRequest<'_>) -> std::result::Result<Raw, (Error, bool)> {
        let (content_type, body) = encode(req);
        let mut builder = http::Request::post(req.url)
            .header("content-type", content_type)
            .header("accept", "application/json");
        if let Some(basic) = &req.basic {
            builder = builder.header("authorization", format!("Basic {}", basic.expose_secret()));
        }
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder.body(body.as_bytes()).map_err(|_| {
            (
                Error::config("token request could not be built (bad URL or header)"),
                false,
            )
        })?;
        let response = self.agent.run(request).map_err(|e| {
            let sent = !matches!(e, ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)
                && !is_refused(&e);
            (transport_error(e, host_of(req.url)), sent)
        })?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = read_body(response, self.options.max_body_bytes).map_err(|e| (e, true))?;
        Ok(Raw {
            status,
            retry_after,
            body: Zeroizing::new(body),
        })
    }

    /// Sends an API request as given (no retries; the client decides about 401s).
    /// The caller has checked the URL with [`Http::check_url`].
    pub(crate) fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        authorization: &Secret,
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Response> {
        let mut builder = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            if !k.eq_ignore_ascii_case("authorization") {
                builder = builder.header(*k, *v);
            }
        }
        builder = builder.header("authorization", authorization.expose_secret());
        let bad = |_| Error::config("request could not be built (bad method, URL or header)");
        let result = if body.is_empty() {
            builder
                .body(())
                .map_err(bad)
                .and_then(|r| self.run(r, timeout, url))
        } else {
            builder
                .body(body)
                .map_err(bad)
                .and_then(|r| self.run(r, timeout, url))
        };
        let response = result?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_body(response, self.options.max_body_bytes)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

impl Http {
    /// Runs a request, with its own overall deadline when `timeout` is given.
    fn run<S: ureq::AsSendBody>(
        &self,
        request: http::Request<S>,
        timeout: Option<Duration>,
        url: &str,
    ) -> Result<http::Response<ureq::Body>> {
        let request = match timeout {
            Some(t) => self
                .agent
                .configure_request(request)
                .timeout_global(Some(t))
                .build(),
            None => request,
        };
        self.agent
            .run(request)
            .map_err(|e| transport_error(e, host_of(url)))
    }
}

fn encode(req: &TokenRequest<'_>) -> (&'static str, Zeroizing<String>) {
    match req.format {
        BodyFormat::Form => {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &req.params {
                s.append_pair(k, v.expose_secret());
            }
            (
                "application/x-www-form-urlencoded",
                Zeroizing::new(s.finish()),
            )
        }
        BodyFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> = req
                .params
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        serde_json::Value::String(v.expose_secret().to_owned()),
                    )
                })
                .collect();
            let body = serde_json::Value::Object(map).to_string();
            ("application/json", Zeroizing::new(body))
        }
    }
}

fn retryable_status(raw: &Raw, replay: Replay) -> bool {
    match replay {
        Replay::Never => false,
        Replay::Rotating => raw.status == 429,
        Replay::Safe => {
            raw.status == 429
                || raw.status >= 500
                || serde_json::from_slice::<serde_json::Value>(&raw.body)
                    .ok()
                    .and_then(|v| {
                        v.get("error")
                            .and_then(|e| e.as_str().map(|s| s == "temporarily_unavailable"))
                    })
                    .unwrap_or(false)
        }
    }
}

/// Full jitter over an exponential ceiling: 100 ms, 200 ms, 400 ms … capped at 2 s.
fn backoff_delay(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(100u64 << attempt.min(4)).min(Duration::from_secs(2));
    ceiling.mul_f64(crate::random::unit_f64())
}

fn read_body(mut response: http::Response<ureq::Body>, limit: u64) -> Result<Vec<u8>> {
    let status = response.status().as_u16();
    response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => Error::InvalidResponse {
                status,
                message: format!("response body exceeds the {limit}-byte limit"),
                snippet: String::new(),
            },
            other => transport_error(other, String::new()),
        })
}

/// `Retry-After` (seconds or HTTP date) or api.video's `X-RateLimit-Retry-After`.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let parse = |name: &str| -> Option<Duration> {
        let v = headers.get(name)?.to_str().ok()?.trim();
        if let Ok(secs) = v.parse::<f64>() {
            return (secs.is_finite() && secs >= 0.0)
                .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
        }
        let at = httpdate::parse_http_date(v).ok()?;
        Some(
            at.duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(MAX_RETRY_AFTER),
        )
    };
    parse("retry-after").or_else(|| parse("x-ratelimit-retry-after"))
}

fn is_refused(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
}

fn host_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_default()
}

fn transport_error(e: ureq::Error, host: String) -> Error {
    let to = if host.is_empty() {
        String::new()
    } else {
        format!(" to {host}")
    };
    match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
            Error::config(format!("invalid request{to}: bad URL, method or header"))
        }
        ureq::Error::Timeout(t) => Error::Timeout {
            message: format!("request{to} exceeded its {t} timeout"),
        },
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Error::Timeout {
            message: format!("request{to} timed out"),
        },
        other => {
            let message = match &other {
                ureq::Error::ConnectionFailed => format!("connection{to} failed"),
                ureq::Error::HostNotFound => format!("host not found{to}"),
                e if is_refused(e) => format!("connection{to} refused"),
                ureq::Error::Io(io) => format!("I/O error{to}: {}", io.kind()),
                _ => format!("HTTP error{to}"),
            };
            Error::Transport {
                message,
                source: Some(Arc::new(other)),
            }
        }
    }
}

/// HTTPS everywhere; plain HTTP only to loopback hosts, or with the explicit opt-out.
pub(crate) fn check_url(url: &str, allow_insecure: bool) -> Result<Url> {
    let parsed = Url::parse(url).map_err(|e| Error::config(format!("invalid URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_insecure || is_loopback(&parsed) => Ok(parsed),
        "http" => Err(Error::config(format!(
            "refusing plain HTTP to non-loopback host {}; use https, or danger_allow_insecure_http",
            parsed.host_str().unwrap_or("")
        ))),
        other => Err(Error::config(format!("unsupported URL scheme {other:?}"))),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_required_except_loopback() {
        assert!(check_url("https://api.vibe.co/oauth2/token", false).is_ok());
        for ok in [
            "http://127.0.0.1:8080/x",
            "http://[::1]:1/x",
            "http://localhost/x",
            "http://127.5.6.7/",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        let e = check_url("http://api.vibe.co/oauth2/token", false).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(check_url("http://api.vibe.co/oauth2/token", true).is_ok());
        assert!(check_url("ftp://x/", true).is_err());
        assert!(check_url("not a url", false).is_err());
    }

    #[test]
    fn retry_after_seconds_date_and_vendor_header() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let mut h = http::HeaderMap::new();
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert("retry-after", date.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(110) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        let mut h = http::HeaderMap::new();
        h.insert("x-ratelimit-retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..20 {
            assert!(backoff_delay(attempt) <= Duration::from_secs(2));
        }
    }
}

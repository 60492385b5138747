//! The HTTP layer: one `ureq::Agent` per client with timeouts, a body cap, no
//! redirects, HTTPS-only outside loopback, and bounded retries for token requests.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use ureq::http;
use url::Url;
use zeroize::Zeroizing;

use crate::challenge::Challenge;
use crate::clock::Deadline;
use crate::dpop::{DpopKey, Nonces, Server};
use crate::error::{self, Error, ErrorKind, Result};
use crate::events::{self, event};
use crate::fork::Stamp;
use crate::options::{Options, Proxy};
use crate::secret::Secret;
use crate::stats::{Counters, Outcome};
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
    /// the request carries a refresh token that may rotate and must never be used twice.
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
    /// The grant's name in events (`client_credentials`, `api_key`, …).
    pub grant: &'static str,
    pub url: &'a str,
    pub format: BodyFormat,
    pub params: Vec<(&'static str, Secret)>,
    pub basic: Option<Secret>,
    pub headers: Vec<(String, String)>,
    pub replay: Replay,
    /// Secret values sent other than as a secret parameter (a Basic client secret):
    /// removed from any error text, as are the values of [`SECRET_PARAMS`].
    pub redact: Vec<Secret>,
    /// Assertions the request carries (a client assertion, a JWT bearer grant's
    /// assertion, a token exchange's subject or actor token), each already in `params`
    /// under its name: how a later attempt gets its own (see [`Assertion`]).
    pub assertions: Vec<Assertion<'a>>,
}

/// An assertion a token request carries, and how a later attempt of the same call gets
/// one: a signed one is signed afresh (an assertion is single use, RFC 7523 §3, and a
/// server that saw one refuses it again, as it would after a DPoP nonce or a transient
/// failure); one from a source is sent again as it is, except after the server refused
/// a credential, when the source is read once more and a different value is sent once.
pub(crate) struct Assertion<'a> {
    /// The parameter it is sent as.
    pub param: &'static str,
    /// Where it comes from.
    pub from: AssertionFrom<'a>,
}

/// Where an [`Assertion`] comes from.
pub(crate) enum AssertionFrom<'a> {
    /// Signed by the client's key: `iss`, `sub`, `aud`.
    Signed {
        key: &'a crate::grant::PrivateKey,
        issuer: &'a str,
        subject: &'a str,
        audience: &'a str,
    },
    /// Read from a source.
    Source(&'a crate::assertion::AssertionSource),
}

/// Token request parameters whose values are credentials.
const SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "assertion",
    "subject_token",
    "actor_token",
    "refresh_token",
    "refreshToken",
    "apiKey",
    "code",
    "code_verifier",
    "device_code",
    "token",
];

impl TokenRequest<'_> {
    /// `error` without any credential this request carried.
    pub(crate) fn redacted(&self, error: Error) -> Error {
        let secrets: Vec<&str> = self
            .params
            .iter()
            .filter(|(name, _)| SECRET_PARAMS.contains(name))
            .map(|(_, value)| value)
            .chain(&self.redact)
            .map(Secret::expose_secret)
            .collect();
        error.redact_values(&secrets)
    }
}

/// An HTTP response from an authenticated API request.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    headers: http::HeaderMap,
    /// The body (capped at the configured maximum).
    pub body: Vec<u8>,
    /// The token the request carried, kept by a failed response (status 400 or more)
    /// only: its access token is removed from any error made from it (an API may echo
    /// it). A successful response, which no error is made from, keeps no token alive
    /// (a response a program keeps would otherwise keep the token's refresh token and
    /// DPoP key in memory after the client has let them go).
    sent_token: Option<Arc<Token>>,
}

impl Response {
    /// The first header with this name (case-insensitive), if its value is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The challenges of every `WWW-Authenticate` line, in order (RFC 9110 §11.6.1).
    pub fn challenges(&self) -> Vec<Challenge> {
        Challenge::parse_all(
            self.headers
                .get_all("www-authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    }

    /// Whether this is a DPoP server's request for a nonce (RFC 9449 §9): a 401 with a
    /// `DPoP` challenge `error="use_dpop_nonce"` and a `DPoP-Nonce` header.
    pub fn asks_for_dpop_nonce(&self) -> bool {
        self.status == 401
            && self.header("dpop-nonce").is_some()
            && self.challenges().iter().any(|c| {
                c.scheme().eq_ignore_ascii_case("dpop") && c.oauth_error() == Some("use_dpop_nonce")
            })
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

    /// `Ok` for a status below 400; otherwise the failure as an error: `RateLimited`
    /// for a 429 (with `Retry-After`), `OAuth` for an OAuth error body, else an
    /// `ApiProblem` with the problem body's fields, or with the status as its title and
    /// a short, secret-free excerpt of the body as its detail.
    pub fn error_for_status(&self) -> Result<&Self> {
        if self.status < 400 {
            return Ok(self);
        }
        let retry = retry_after(&self.headers);
        let sent: Vec<&str> = self
            .sent_token
            .iter()
            .map(|t| t.access_token().expose_secret())
            .collect();
        Err(
            match error::from_response(self.status, retry, &self.body).redact_values(&sent) {
                Error::InvalidResponse { .. } => Error::ApiProblem(crate::error::Problem {
                    status: self.status,
                    problem_type: None,
                    title: Some(format!("HTTP {}", self.status)),
                    detail: (!self.body.is_empty()).then(|| error::snippet(&self.body)),
                })
                .redact_values(&sent),
                other => other,
            },
        )
    }
}

/// What one attempt produced.
struct Raw {
    status: u16,
    retry_after: Option<Duration>,
    body: Zeroizing<Vec<u8>>,
    /// The `DPoP-Nonce` the server sent, if any.
    dpop_nonce: Option<String>,
}

/// The agents of one process: rebuilt in a child after `fork()`, so that a child never
/// shares a pooled connection (or a pool lock) with its parent.
struct Agents {
    stamp: Stamp,
    agent: ureq::Agent,
}

/// The HTTP layer of one client.
pub struct Http {
    agents: ArcSwap<Agents>,
    /// Agents inherited from parent processes: kept, never used and never dropped here,
    /// since their pooled connections belong to the parent.
    inherited: parking_lot::Mutex<Vec<Arc<Agents>>>,
    /// The proxy for non-loopback hosts (loopback is always reached directly).
    proxy: Option<ureq::Proxy>,
    /// The certificate authorities trusted for HTTPS.
    roots: ureq::tls::RootCerts,
    options: Arc<Options>,
    /// The counters of the client (or flow) this layer serves.
    counters: Arc<Counters>,
    /// The DPoP key of the session this client holds, when it is not the options' own
    /// (a session adopted from a store, or handed over by a sign-in flow).
    dpop_session: arc_swap::ArcSwapOption<DpopKey>,
    /// The DPoP nonces servers gave (shared with the options' clones).
    nonces: Arc<Nonces>,
    /// `http://authority/` of the last plain-HTTP URL found allowed, as written: a URL
    /// that starts with it has that very scheme and authority (an authority ends at the
    /// first `/`), so the same verdict, without parsing it again.
    allowed_http: arc_swap::ArcSwapOption<String>,
}

impl Http {
    /// The HTTP layer for these options; fails on settings it cannot work with.
    pub(crate) fn new(options: Arc<Options>) -> Result<Self> {
        options.validate()?;
        let proxy = match &options.proxy {
            Proxy::Environment => ureq::Proxy::try_from_env(),
            Proxy::None => None,
            Proxy::Url(u) => {
                Some(ureq::Proxy::new(u).map_err(|_| Error::config("the proxy URL is not valid"))?)
            }
        };
        let (roots, bundle) = trusted_roots(&options)?;
        let options = store_trusting(options, bundle.as_deref())?;
        let agents = ArcSwap::from_pointee(Agents {
            stamp: Stamp::current(),
            agent: build_agent(&options, proxy.clone(), roots.clone()),
        });
        let nonces = options
            .dpop
            .as_ref()
            .map_or_else(Arc::default, |d| Arc::clone(d.nonces()));
        Ok(Http {
            agents,
            inherited: parking_lot::Mutex::new(Vec::new()),
            proxy,
            roots,
            options,
            counters: Arc::default(),
            dpop_session: arc_swap::ArcSwapOption::empty(),
            nonces,
            allowed_http: arc_swap::ArcSwapOption::empty(),
        })
    }

    /// The DPoP key token requests are signed with: the session's (see
    /// [`follow_dpop_key`](Self::follow_dpop_key)), else the options' own; `None`
    /// without DPoP.
    pub(crate) fn dpop_key(&self) -> Option<Arc<DpopKey>> {
        self.dpop_session
            .load_full()
            .or_else(|| self.options.dpop.as_ref().map(|d| Arc::clone(d.key())))
    }

    /// From now on, token requests are signed with the key `token` is bound to (a
    /// session's tokens, refresh token included, are bound to one key).
    pub(crate) fn follow_dpop_key(&self, token: &Token) {
        if let Some(key) = token.dpop_key() {
            let current = self.dpop_session.load();
            if !current.as_ref().is_some_and(|k| Arc::ptr_eq(k, key)) {
                self.dpop_session.store(Some(Arc::clone(key)));
            }
        }
    }

    /// Whether a Bearer answer to a DPoP token request is accepted: only when the
    /// options allow the downgrade (or do not ask for DPoP: a session adopted from a
    /// store).
    fn allows_bearer(&self) -> bool {
        match &self.options.dpop {
            Some(d) => d.allows_bearer(),
            // Not configured, but holding a DPoP session adopted from a store: that
            // session stays DPoP (its key would be dropped with a Bearer answer).
            None => self.dpop_session.load().is_none(),
        }
    }

    /// Runs `fetch` with token requests signed by `key` (a stored session's): kept as
    /// the session's key if it succeeds, the previous one back if it fails.
    pub(crate) fn with_dpop_key(
        &self,
        key: &Arc<DpopKey>,
        fetch: impl FnOnce() -> Result<Token>,
    ) -> Result<Token> {
        let previous = self.dpop_session.swap(Some(Arc::clone(key)));
        let outcome = fetch();
        if outcome.is_err() {
            self.dpop_session.store(previous);
        }
        outcome
    }

    /// The DPoP nonces servers gave.
    pub(crate) fn nonces(&self) -> &Nonces {
        &self.nonces
    }

    /// A DPoP proof for a request with `token` (none for a bearer token). A `DPoP` token
    /// whose key was lost (unreadable in the store) cannot be sent: a new sign-in is
    /// needed.
    pub(crate) fn dpop_proof(
        &self,
        method: &str,
        url: &str,
        token: &Token,
    ) -> Result<Option<Secret>> {
        match token.dpop_key() {
            Some(key) => {
                let nonce = self.nonces.get(Server::Resource, url);
                key.proof(
                    method,
                    url,
                    Some(token.access_token().expose_secret()),
                    nonce.as_deref(),
                )
                .map(Some)
            }
            None if token.token_type() == "DPoP" => Err(Error::ReauthenticationRequired {
                cause: Box::new(Error::config(
                    "the token is DPoP-bound but its key is missing (the stored session's key \
                     could not be read); sign in again",
                )),
            }),
            None => Ok(None),
        }
    }

    /// The counters token requests are counted in.
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The options, shared.
    pub(crate) fn shared_options(&self) -> Arc<Options> {
        Arc::clone(&self.options)
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    /// This process's agent: a fresh one after a fork. The parent's agent is kept aside
    /// in the child rather than dropped: its pooled connections belong to the parent.
    ///
    /// Borrowed, not cloned: a clone of a `ureq::Agent` adds to (and takes from) the
    /// reference counts of its four shared parts, cache lines that every thread sending
    /// through this client would then write on every request.
    fn agent(&self) -> arc_swap::Guard<Arc<Agents>> {
        let current = self.agents.load();
        let stamp = Stamp::current();
        if current.stamp == stamp {
            return current;
        }
        let fresh = Arc::new(Agents {
            stamp,
            agent: build_agent(&self.options, self.proxy.clone(), self.roots.clone()),
        });
        let previous = self.agents.compare_and_swap(&*current, Arc::clone(&fresh));
        if Arc::ptr_eq(&previous, &current) {
            self.inherited.lock().push(Arc::clone(&previous));
        }
        // Ours, or the one another thread of the child put there first.
        self.agents.load()
    }

    /// Refuses URLs that would send credentials in clear text to another machine.
    pub(crate) fn check_url(&self, url: &str) -> Result<()> {
        // The common case, checked without parsing: this runs on every API request.
        let https = url.len() > 8 && url.as_bytes()[..8].eq_ignore_ascii_case(b"https://");
        if https {
            return Ok(());
        }
        if let Some(prefix) = &*self.allowed_http.load() {
            if url.starts_with(prefix.as_str()) {
                return Ok(());
            }
        }
        check_url(url, self.options.danger_allow_insecure_http)?;
        // Remembered only when the authority as written is plain (no user information,
        // no escapes, no backslash that a parser might read as a slash).
        if let Some(end) = url.get(7..).and_then(|rest| rest.find('/')) {
            let prefix = &url[..7 + end + 1];
            let plain = prefix.starts_with("http://")
                && !prefix[7..prefix.len() - 1].bytes().any(|b| {
                    matches!(b, b'@' | b'\\' | b'%' | b'?' | b'#') || b.is_ascii_whitespace()
                });
            if plain {
                self.allowed_http.store(Some(Arc::new(prefix.to_owned())));
            }
        }
        Ok(())
    }

    /// Sends a token request with bounded, jittered retries within `deadline`, and
    /// parses the token.
    ///
    /// Retried when that is safe for `req.replay`: transient statuses, connection
    /// failures and, for [`Replay::Safe`], a 2xx whose body is not a usable token
    /// response (an HTML page, no `access_token`). A pause that would not end before the
    /// deadline is not taken: the last failure is returned instead.
    pub(crate) fn token(&self, req: &TokenRequest<'_>, deadline: Deadline) -> Result<Token> {
        self.check_url(req.url)?;
        let max_retries = if req.replay == Replay::Never {
            0
        } else {
            self.options.max_retries
        };
        let host = host_of(req.url);
        let dpop = self.dpop_key();
        // A proof-only retry (`use_dpop_nonce`) is taken once per call: the server refused
        // the request before using anything in it (RFC 9449 §8: the nonce is checked with
        // the proof, before the grant), so even a rotating refresh token or a single-use
        // code was not spent, and sending it again with the nonce is not a second use.
        let mut nonce_retried = false;
        let mut reread = false;
        let mut overrides: Vec<(&'static str, Secret)> = Vec::new();
        let mut attempt = 0;
        let mut first = true;
        loop {
            let Some(remaining) = deadline.remaining() else {
                return Err(Deadline::expired("the token request"));
            };
            // A later attempt signs its own assertions; one re-read after a refusal
            // replaces the value read before.
            if !first {
                for a in &req.assertions {
                    match a.from {
                        AssertionFrom::Signed {
                            key,
                            issuer,
                            subject,
                            audience,
                        } => set_override(
                            &mut overrides,
                            a.param,
                            key.sign(issuer, subject, audience)?,
                        ),
                        // One that expired meanwhile (a pause before a retry) is read
                        // again, never sent expired.
                        AssertionFrom::Source(source) => {
                            let current = sent_value(req, &overrides, a.param);
                            if current.is_some_and(crate::AssertionSource::expired) {
                                let fresh = source.read(deadline).map_err(|e| req.redacted(e))?;
                                set_override(&mut overrides, a.param, fresh);
                            }
                        }
                    }
                }
            }
            first = false;
            let redacted = |e: Error| {
                let e = req.redacted(e);
                let fresh: Vec<&str> = overrides.iter().map(|(_, v)| v.expose_secret()).collect();
                e.redact_values(&fresh)
            };
            let proof = match &dpop {
                Some(key) => {
                    let nonce = self.nonces.get(Server::Authorization, req.url);
                    Some(key.proof("POST", req.url, None, nonce.as_deref())?)
                }
                None => None,
            };
            event!(debug, "token.requested", grant = req.grant, host = host.as_str(), attempt = attempt + 1;
                "token request: grant {}, {host}, attempt {}", req.grant, attempt + 1);
            let sent_at = Instant::now();
            let outcome = self.token_attempt(req, remaining, proof.as_ref(), &overrides);
            if let Ok(Raw {
                dpop_nonce: Some(nonce),
                ..
            }) = &outcome
            {
                self.nonces.remember(Server::Authorization, req.url, nonce);
            }
            let (error, retry, server_delay) = match outcome {
                Ok(raw) if (200..300).contains(&raw.status) => {
                    match token::parse_token_response(
                        raw.status,
                        &raw.body,
                        sent_at,
                        self.options.default_lifetime,
                    ) {
                        Ok(token)
                            if dpop.is_some()
                                && token.token_type() != "DPoP"
                                && !self.allows_bearer() =>
                        {
                            let e = Error::invalid(
                                raw.status,
                                format!(
                                    "the token endpoint answered a {} token to a DPoP token request \
                                     (the server did not bind it to the key); refused, since a \
                                     Bearer downgrade is not allowed",
                                    events::printable(token.token_type())
                                ),
                                b"",
                            );
                            // The server took the refresh token it was sent (it answered
                            // with another): sending it again would be a second use. The
                            // session ends here, as if the refresh token were refused.
                            let spent = req
                                .params
                                .iter()
                                .any(|(k, _)| matches!(*k, "refresh_token" | "refreshToken"));
                            let e = if spent {
                                Error::ReauthenticationRequired { cause: Box::new(e) }
                            } else {
                                e
                            };
                            (e, false, None)
                        }
                        Ok(token) => {
                            let token = match &dpop {
                                Some(key) if token.token_type() == "DPoP" => {
                                    token.with_dpop_key(Some(Arc::clone(key)))
                                }
                                _ => token,
                            };
                            self.counters.request(Outcome::Succeeded);
                            let lifetime = token.lifetime().map_or(-1.0, events::secs);
                            let scope = events::printable(token.scope().unwrap_or(""));
                            event!(debug, "token.obtained", grant = req.grant, host = host.as_str(),
                                attempt = attempt + 1, lifetime_s = lifetime, scope = scope.as_str();
                                "token obtained: grant {}, {host}, lifetime {lifetime} s, scope {scope:?}", req.grant);
                            return Ok(token.with_expiry_margin(self.options.expiry_margin));
                        }
                        Err(e) => {
                            let unusable = e.kind() == ErrorKind::InvalidResponse;
                            (redacted(e), unusable && req.replay == Replay::Safe, None)
                        }
                    }
                }
                Ok(raw) => {
                    let error = redacted(error::from_endpoint_response(
                        "token endpoint",
                        &host,
                        raw.status,
                        raw.retry_after,
                        &raw.body,
                    ));
                    let wants_nonce = dpop.is_some()
                        && raw.dpop_nonce.is_some()
                        && error.oauth().is_some_and(|o| o.error == "use_dpop_nonce");
                    if wants_nonce && !nonce_retried {
                        nonce_retried = true;
                        self.counters.request(Outcome::Refused);
                        self.counters.dpop_nonce_retry();
                        event!(debug, "dpop.nonce", host = host.as_str(), grant = req.grant;
                            "the token endpoint at {host} asked for a DPoP nonce; sending the request once more with it");
                        continue;
                    }
                    // A credential from a source was refused: it may have been rewritten
                    // since it was read (a projected token, another client's token). Read
                    // once more, and send once more only if something changed.
                    if !reread && crate::assertion::refused_credential(&error) {
                        reread = true;
                        let mut changed = false;
                        // `invalid_client` is about the client's own assertion,
                        // `invalid_grant` about the grant's (a JWT bearer assertion, a
                        // token exchange's subject or actor): only those are read again.
                        let about_client =
                            error.oauth().is_some_and(|o| o.error == "invalid_client");
                        for a in &req.assertions {
                            let AssertionFrom::Source(source) = a.from else {
                                continue;
                            };
                            if (a.param == "client_assertion") != about_client {
                                continue;
                            }
                            let Some(sent) = sent_value(req, &overrides, a.param) else {
                                continue;
                            };
                            if let Some(fresh) = source.reread_after_refusal(sent, deadline) {
                                set_override(&mut overrides, a.param, fresh);
                                changed = true;
                            }
                        }
                        if changed {
                            self.counters.request(Outcome::Refused);
                            event!(debug, "token.assertion_reread", host = host.as_str(), grant = req.grant;
                                "the token endpoint at {host} refused an assertion; sending the request once more with the one its source gives now");
                            continue;
                        }
                    }
                    (error, retryable_status(&raw, req.replay), raw.retry_after)
                }
                Err((e, sent)) => {
                    // A name that does not resolve will not resolve a second later: the
                    // next call asks again.
                    let retry = !host_not_found(&e)
                        && (req.replay == Replay::Safe || (!sent && req.replay != Replay::Never));
                    (e, retry, None)
                }
            };
            let status = error.http_status().unwrap_or(0);
            self.counters
                .request(if (400..500).contains(&status) && status != 429 {
                    Outcome::Refused
                } else {
                    Outcome::Failed
                });
            let delay = server_delay.unwrap_or_else(|| backoff_delay(attempt));
            let fits = deadline.remaining().is_some_and(|left| delay < left);
            let retrying = retry && attempt < max_retries && delay <= MAX_INLINE_RETRY_WAIT && fits;
            let retry_after = server_delay.map_or(-1.0, events::secs);
            // A device flow's "not yet" answers are its normal course, not failures.
            let pending = error
                .oauth()
                .is_some_and(|o| matches!(o.error.as_str(), "authorization_pending" | "slow_down"));
            let level = if retrying || pending {
                log::Level::Debug
            } else {
                log::Level::Warn
            };
            log::log!(target: events::TARGET, level,
                event = "token.request_failed", grant = req.grant, host = host.as_str(),
                attempt = attempt + 1, kind = error.kind().name(), status = status,
                retry_after_s = retry_after, retrying = retrying;
                "token request failed: grant {}, {host}, attempt {}: {error}{}", req.grant, attempt + 1,
                if retrying { "; retrying" } else { "" });
            if !retrying {
                return Err(error);
            }
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    /// One token request attempt. On error, also says whether the request may have
    /// reached the server.
    fn token_attempt(
        &self,
        req: &TokenRequest<'_>,
        remaining: Duration,
        proof: Option<&Secret>,
        overrides: &[(&'static str, Secret)],
    ) -> std::result::Result<Raw, (Error, bool)> {
        let (content_type, body) = encode(req, overrides);
        let mut builder = http::Request::post(req.url)
            .header("content-type", content_type)
            .header("accept", "application/json");
        if let Some(basic) = &req.basic {
            let value = Zeroizing::new(format!("Basic {}", basic.expose_secret()));
            builder = builder.header("authorization", value.as_str());
        }
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(proof) = proof {
            builder = builder.header(DPOP, proof.expose_secret());
        }
        let request = builder.body(body.as_bytes()).map_err(|_| {
            (
                Error::config("token request could not be built (bad URL or header)"),
                false,
            )
        })?;
        let response = self.run(request, remaining).map_err(|e| {
            let sent = !matches!(e, ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)
                && !is_refused(&e);
            (self.transport_error(e, req.url, remaining), sent)
        })?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let dpop_nonce = dpop_nonce(response.headers());
        let body = self
            .read_body(response, req.url, remaining)
            .map_err(|e| (e, true))?;
        Ok(Raw {
            status,
            retry_after,
            body: Zeroizing::new(body),
            dpop_nonce,
        })
    }

    /// Posts a request that does not answer with a token (device authorization,
    /// revocation) once, within `deadline`; every status comes back as a [`Response`].
    pub(crate) fn post(&self, req: &TokenRequest<'_>, deadline: Deadline) -> Result<Response> {
        self.check_url(req.url)?;
        let Some(remaining) = deadline.remaining() else {
            return Err(Deadline::expired("the request"));
        };
        let raw = self
            .token_attempt(req, remaining, None, &[])
            .map_err(|(e, _)| e)?;
        Ok(Response {
            status: raw.status,
            headers: http::HeaderMap::new(),
            body: raw.body.to_vec(),
            sent_token: None,
        })
    }

    /// `GET url` for a JSON document (metadata) without credentials, within `deadline`.
    pub(crate) fn get_json(&self, url: &str, deadline: Deadline) -> Result<Response> {
        self.check_url(url)?;
        let Some(remaining) = deadline.remaining() else {
            return Err(Deadline::expired("the request"));
        };
        let request = http::Request::get(url)
            .header("accept", "application/json")
            .body(())
            .map_err(|_| Error::config("request could not be built (bad URL)"))?;
        let response = self
            .run(request, remaining)
            .map_err(|e| self.transport_error(e, url, remaining))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = self.read_body(response, url, remaining)?;
        Ok(Response {
            status,
            headers,
            body,
            sent_token: None,
        })
    }

    /// Sends an API request as given (no retries; the client decides about 401s),
    /// within `deadline`. The caller has checked the URL with [`Http::check_url`].
    pub(crate) fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        token: &Arc<Token>,
        body: &[u8],
        deadline: Deadline,
    ) -> Result<Response> {
        let Some(remaining) = deadline.remaining() else {
            return Err(Deadline::expired("the request"));
        };
        let proof = self.dpop_proof(method, url, token)?;
        let mut builder = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            // The client's own credentials replace the caller's (one proof per request:
            // RFC 9449 §4.3 refuses two).
            let replaced = k.eq_ignore_ascii_case("authorization")
                || (proof.is_some() && k.eq_ignore_ascii_case("dpop"));
            if !replaced {
                builder = builder.header(*k, *v);
            }
        }
        builder = builder.header(
            http::header::AUTHORIZATION,
            token.authorization_header().expose_secret(),
        );
        if let Some(proof) = &proof {
            builder = builder.header(DPOP, proof.expose_secret());
        }
        let bad = |_| Error::config("request could not be built (bad method, URL or header)");
        let transport = |e| self.transport_error(e, url, remaining);
        let result = if body.is_empty() {
            builder
                .body(())
                .map_err(bad)
                .and_then(|r| self.run(r, remaining).map_err(transport))
        } else {
            builder
                .body(body)
                .map_err(bad)
                .and_then(|r| self.run(r, remaining).map_err(transport))
        };
        let (parts, body) = result?.into_parts();
        let status = parts.status.as_u16();
        // A DPoP server's nonce, for the next proofs to this origin (a client that makes
        // no proofs has no use for one).
        let proofs = token.dpop_key().is_some() || self.options.dpop.is_some();
        if proofs {
            if let Some(nonce) = dpop_nonce(&parts.headers) {
                self.nonces.remember(Server::Resource, url, &nonce);
            }
        }
        let body = self.read_body_of(body, status, url, remaining)?;
        Ok(Response {
            status,
            headers: parts.headers,
            body,
            sent_token: (status >= 400).then(|| Arc::clone(token)),
        })
    }
}

impl Http {
    /// Runs a request that must be over within `remaining`: connect, send and the whole
    /// response, body included. Loopback hosts are never reached through a proxy.
    fn run<S: ureq::AsSendBody>(
        &self,
        request: http::Request<S>,
        remaining: Duration,
    ) -> std::result::Result<http::Response<ureq::Body>, ureq::Error> {
        // Only with a proxy is the host looked at (a loopback host bypasses it).
        let bypass_proxy =
            self.proxy.is_some() && request.uri().host().is_some_and(is_loopback_host);
        let agents = self.agent();
        let agent = &agents.agent;
        // The agent's own limit (the whole timeout less a sliver) already ends the
        // request within `remaining` whenever `remaining` is at least that, as on every
        // first attempt: no per-request configuration (a copy of the agent's) is made.
        let agent_limit = agent_timeout(self.options.timeout);
        if !bypass_proxy && agent_limit <= remaining && remaining <= self.options.timeout {
            return agent.run(request);
        }
        let mut config = agent
            .configure_request(request)
            .timeout_global(Some(remaining))
            .timeout_connect(Some(self.options.connect_timeout.min(remaining)));
        if bypass_proxy {
            config = config.proxy(None);
        }
        agent.run(config.build())
    }
}

/// The agent's own overall limit for a call whose deadline is `timeout` away: a
/// thousandth less (at most 5 ms), so that a request started within that sliver of its
/// deadline's start still ends by the deadline without a configuration of its own.
/// Rounded down to a whole number of slivers, so that the socket timeouts `steady`
/// makes of it are the same from one request to the next whatever the timeout.
fn agent_timeout(timeout: Duration) -> Duration {
    let sliver = crate::steady::sliver(timeout);
    let (Ok(step), Ok(whole)) = (
        u64::try_from(sliver.as_nanos()),
        u64::try_from(timeout.as_nanos()),
    ) else {
        return timeout - sliver;
    };
    if step == 0 {
        return timeout;
    }
    Duration::from_nanos(whole - whole % step - step)
}

/// The certificate authorities to trust: the configured CA bundle, else the platform's
/// trust store, else (a platform without one) the Web PKI roots built in. With the
/// bundle's PEM, for a store that speaks TLS too.
fn trusted_roots(options: &Options) -> Result<(ureq::tls::RootCerts, Option<Vec<u8>>)> {
    let Some(path) = &options.ca_bundle else {
        return Ok((platform_roots()?, None));
    };
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| Error::config(format!("the CA bundle {shown} cannot be read: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(_) => {
                return Err(Error::config(format!(
                    "the CA bundle {shown} is not valid PEM"
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::config(format!(
            "the CA bundle {shown} holds no certificate"
        )));
    }
    Ok((ureq::tls::RootCerts::new_with_certs(&certs), Some(pem)))
}

/// The options with their store as a client trusting `bundle` must use it: a store that
/// speaks TLS and has no CA of its own trusts the client's CA bundle too.
fn store_trusting(options: Arc<Options>, bundle: Option<&[u8]>) -> Result<Arc<Options>> {
    let (Some(pem), Some(store)) = (bundle, &options.store) else {
        return Ok(options);
    };
    match store.trusting(pem)? {
        Some(store) => {
            let mut changed = (*options).clone();
            changed.store = Some(store);
            Ok(Arc::new(changed))
        }
        None => Ok(options),
    }
}

/// The platform's trust store, read once per process (on Linux: `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` when set, else the system bundle), or the built-in Web PKI roots when
/// the system bundle holds no certificate (a minimal container image). A variable that
/// is set (not empty) but names nothing usable is a configuration error naming it —
/// never a quiet fallback to other roots; it is not remembered, so a client made after
/// the variable is fixed reads the store again.
fn platform_roots() -> Result<ureq::tls::RootCerts> {
    static ROOTS: std::sync::OnceLock<PlatformRoots> = std::sync::OnceLock::new();
    static TOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let roots = match ROOTS.get() {
        Some(roots) => roots,
        None => {
            // Read outside the cell: nothing (an event above all) runs inside an
            // initialiser another thread may be waiting on.
            let read = read_platform_roots()?;
            ROOTS.get_or_init(|| read)
        }
    };
    if roots.built_in && !TOLD.swap(true, std::sync::atomic::Ordering::Relaxed) {
        event!(warn, "tls.no_platform_roots";
            "the platform's trust store holds no certificate; using the built-in Web PKI roots");
    }
    Ok(roots.roots.clone())
}

/// The platform's trust store, as read.
struct PlatformRoots {
    roots: ureq::tls::RootCerts,
    /// The system bundle held nothing: the Web PKI roots built in stand in for it.
    built_in: bool,
}

/// Reads the platform's trust store: see [`platform_roots`].
fn read_platform_roots() -> Result<PlatformRoots> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let file = set("SSL_CERT_FILE");
    let dirs = set("SSL_CERT_DIR");
    let certs = if file.is_none() && dirs.is_none() {
        // Failures to read parts of the system bundle leave the rest of it.
        rustls_native_certs::load_native_certs().certs
    } else {
        let mut certs = Vec::new();
        if let Some(file) = file {
            certs.extend(certs_of_cert_file(std::path::Path::new(&file))?);
        }
        if let Some(dirs) = dirs {
            certs.extend(certs_of_cert_dirs(&dirs)?);
        }
        certs
    };
    if certs.is_empty() {
        return Ok(PlatformRoots {
            roots: ureq::tls::RootCerts::WebPki,
            built_in: true,
        });
    }
    let certs: Vec<ureq::tls::Certificate<'static>> = certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    Ok(PlatformRoots {
        roots: ureq::tls::RootCerts::new_with_certs(&certs),
        built_in: false,
    })
}

/// The certificates of the file `SSL_CERT_FILE` names: every PEM block in it must be a
/// readable certificate, and there must be one at least.
fn certs_of_cert_file(
    file: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let shown = file.display();
    let found = rustls_native_certs::load_certs_from_paths(Some(file), None);
    if let Some(e) = found.errors.first() {
        return Err(Error::config(format!(
            "SSL_CERT_FILE names {shown}, which cannot be used as trusted certificates ({}); \
             fix or unset SSL_CERT_FILE",
            cert_load_error(e)
        )));
    }
    if found.certs.is_empty() {
        return Err(Error::config(format!(
            "SSL_CERT_FILE names {shown}, which holds no certificate; fix or unset SSL_CERT_FILE"
        )));
    }
    Ok(found.certs)
}

/// The certificates in the directories `SSL_CERT_DIR` names (separated as `PATH` is):
/// each must be a readable directory, and they must hold one certificate at least. A
/// file in them that is not a certificate is skipped (it is not trusted), as OpenSSL
/// does.
fn certs_of_cert_dirs(
    dirs: &std::ffi::OsStr,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let mut certs = Vec::new();
    for dir in std::env::split_paths(dirs).filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::read_dir(&dir) {
            return Err(Error::config(format!(
                "SSL_CERT_DIR names {}, which cannot be read as a directory ({e}); fix or unset \
                 SSL_CERT_DIR",
                dir.display()
            )));
        }
        certs.extend(rustls_native_certs::load_certs_from_paths(None, Some(&dir)).certs);
    }
    if certs.is_empty() {
        return Err(Error::config(format!(
            "SSL_CERT_DIR names {}, where no certificate was found; fix or unset SSL_CERT_DIR",
            std::path::Path::new(dirs).display()
        )));
    }
    Ok(certs)
}

/// What went wrong reading a certificate file, without its path (said already).
fn cert_load_error(e: &rustls_native_certs::Error) -> String {
    match &e.kind {
        rustls_native_certs::ErrorKind::Io { inner, .. } => inner.to_string(),
        _ => "not valid PEM".to_owned(),
    }
}

fn build_agent(
    options: &Options,
    proxy: Option<ureq::Proxy>,
    roots: ureq::tls::RootCerts,
) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(roots)
        .client_cert(options.client_certificate.as_ref().map(|c| c.tls().clone()))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(proxy)
        .user_agent(USER_AGENT)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_global(Some(agent_timeout(options.timeout)))
        .build();
    // No thread per request: see `resolve`; no system call per read or write to set a
    // socket's timeout: see `steady`.
    use ureq::unversioned::transport::Connector;
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new().chain(
            crate::steady::SteadyTimeouts::new(crate::steady::sliver(options.timeout)),
        ),
        <crate::resolve::CachingResolver>::default(),
    )
}

/// The value of `param` the last attempt sent: its override, else the request's own.
fn sent_value<'r>(
    req: &'r TokenRequest<'_>,
    overrides: &'r [(&'static str, Secret)],
    param: &str,
) -> Option<&'r Secret> {
    overrides
        .iter()
        .chain(req.params.iter())
        .find(|(k, _)| *k == param)
        .map(|(_, v)| v)
}

/// Replaces (or adds) the value a later attempt sends for `param`.
fn set_override(overrides: &mut Vec<(&'static str, Secret)>, param: &'static str, value: Secret) {
    overrides.retain(|(k, _)| *k != param);
    overrides.push((param, value));
}

/// The request's body; `overrides` replace the parameters they name (a fresh assertion
/// for a later attempt).
fn encode(
    req: &TokenRequest<'_>,
    overrides: &[(&'static str, Secret)],
) -> (&'static str, Zeroizing<String>) {
    let params = || {
        req.params.iter().map(|(k, v)| {
            let v = overrides
                .iter()
                .find(|(name, _)| name == k)
                .map_or(v, |(_, fresh)| fresh);
            (*k, v.expose_secret())
        })
    };
    // Sized up front so that no reallocation leaves an unwiped copy behind.
    let capacity = params()
        .map(|(k, v)| 3 * (k.len() + v.len()) + 8)
        .sum::<usize>()
        + 2;
    match req.format {
        BodyFormat::Form => {
            let mut s = url::form_urlencoded::Serializer::new(String::with_capacity(capacity));
            for (k, v) in params() {
                s.append_pair(k, v);
            }
            (
                "application/x-www-form-urlencoded",
                Zeroizing::new(s.finish()),
            )
        }
        BodyFormat::Json => {
            // Borrowed values: the secrets are not copied into a JSON value first.
            let map: std::collections::BTreeMap<&str, &str> = params().collect();
            let mut buf = Zeroizing::new(Vec::with_capacity(2 * capacity));
            serde_json::to_writer(&mut *buf, &map).expect("a map of strings serialises");
            let body =
                Zeroizing::new(String::from_utf8(std::mem::take(&mut *buf)).unwrap_or_default());
            ("application/json", body)
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

impl Http {
    /// The body of `response` from `url`, at most the configured bytes.
    fn read_body(
        &self,
        response: http::Response<ureq::Body>,
        url: &str,
        budget: Duration,
    ) -> Result<Vec<u8>> {
        let status = response.status().as_u16();
        self.read_body_of(response.into_body(), status, url, budget)
    }

    /// The body of a response with `status` from `url`, at most the configured bytes.
    fn read_body_of(
        &self,
        mut body: ureq::Body,
        status: u16,
        url: &str,
        budget: Duration,
    ) -> Result<Vec<u8>> {
        let limit = self.options.max_body_bytes;
        body.with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::InvalidResponse {
                    status,
                    message: format!("response body exceeds the {limit}-byte limit"),
                    snippet: String::new(),
                },
                other => self.transport_error(other, url, budget),
            })
    }
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

/// The `DPoP` request header (RFC 9449 §4.1).
const DPOP: http::HeaderName = http::HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header (RFC 9449 §8.1).
const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// The `DPoP-Nonce` header's value, if it is text.
fn dpop_nonce(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(DPOP_NONCE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn is_refused(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
}

pub(crate) fn host_of(url: &str) -> String {
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

impl Http {
    /// A transport failure of a request to `url`, saying what went wrong and where: the
    /// host, and the proxy when the request went through one. `budget` is the time the
    /// call had left when the request was sent.
    fn transport_error(&self, e: ureq::Error, url: &str, budget: Duration) -> Error {
        let host = host_of(url);
        let proxy = self
            .proxy
            .as_ref()
            .filter(|_| !is_loopback_host(&host_name(&host)))
            .map(|p| format!("{}:{}", p.host(), p.port()));
        // A timeout says which setting ran out, in seconds, as the caller set it.
        if let ureq::Error::Timeout(which) = &e {
            let secs = |d: Duration| {
                let s = d.as_secs_f64();
                if s.fract() == 0.0 {
                    format!("{s:.0} s")
                } else {
                    format!("{s:.1} s")
                }
            };
            let via = proxy
                .as_deref()
                .map(|p| format!(" through the proxy {p}"))
                .unwrap_or_default();
            // The limit that ran out: the setting when it was whole, else what the
            // call had left of its deadline (a per-call timeout, an earlier attempt).
            let near = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_millis(500);
            let connect = matches!(which, ureq::Timeout::Connect | ureq::Timeout::Resolve);
            let message = if connect && budget > self.options.connect_timeout {
                format!(
                    "connecting to {host}{via} took longer than the connect timeout ({})",
                    secs(self.options.connect_timeout)
                )
            } else if near(budget, self.options.timeout) {
                format!(
                    "no complete answer from {host}{via} within the call's timeout ({})",
                    secs(self.options.timeout)
                )
            } else {
                format!(
                    "no complete answer from {host}{via} within the {} the call had left",
                    secs(Duration::from_millis(
                        budget.as_millis().min(u64::MAX as u128) as u64
                    ))
                )
            };
            return Error::Timeout { message };
        }
        transport_error(e, host, proxy)
    }
}

/// Whether a transport error is a host name that did not resolve.
fn host_not_found(e: &Error) -> bool {
    matches!(e, Error::Transport { source: Some(s), .. }
        if matches!(s.downcast_ref::<ureq::Error>(), Some(ureq::Error::HostNotFound)))
}

/// The host part of `host:port` (brackets kept off IPv6 literals).
fn host_name(host_port: &str) -> String {
    let h = match host_port.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host_port,
    };
    h.trim_start_matches('[').trim_end_matches(']').to_owned()
}

/// What a TLS failure means, in words: an untrusted certificate, or a peer that does
/// not speak TLS.
fn tls_failure(e: &rustls::Error, host: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                rustls::CertificateError::UnknownIssuer => {
                    "issued by a certificate authority that is not trusted".to_owned()
                }
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "not valid for this host name".to_owned()
                }
                rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. } => "expired".to_owned(),
                other => format!("{other:?}"),
            };
            format!(
                "the TLS certificate of {host} is not trusted: {why} (a CA of your own: give its certificate as the CA bundle, ca_bundle or --ca-bundle)"
            )
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("{host} did not answer with TLS (is it a plain HTTP port? use http:// for loopback)")
        }
        other => format!("TLS with {host} failed: {other}"),
    }
}

fn transport_error(e: ureq::Error, host: String, proxy: Option<String>) -> Error {
    let to = if host.is_empty() {
        String::new()
    } else {
        format!(" to {host}")
    };
    let via = proxy
        .as_deref()
        .map(|p| format!(" through the proxy {p}"))
        .unwrap_or_default();
    let rustls_error = match &e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    if let Some(r) = rustls_error {
        let message = tls_failure(r, &host);
        return Error::Transport {
            message,
            source: Some(Arc::new(e)),
        };
    }
    match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
            Error::config(format!("invalid request{to}: bad URL, method or header"))
        }
        ureq::Error::Timeout(t) => Error::Timeout {
            message: format!("request{to}{via} exceeded its {t} timeout"),
        },
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Error::Timeout {
            message: format!("request{to}{via} timed out"),
        },
        other => {
            let message = match (&other, &proxy) {
                (ureq::Error::ConnectProxyFailed(why), Some(p)) => format!(
                    "the proxy {p} failed to connect{to}: {}",
                    crate::error::scrub(why)
                ),
                (ureq::Error::ConnectProxyFailed(why), None) => {
                    format!(
                        "the proxy failed to connect{to}: {}",
                        crate::error::scrub(why)
                    )
                }
                (ureq::Error::HostNotFound, Some(p)) => format!(
                    "could not resolve host {} (or the proxy {p})",
                    host_name(&host)
                ),
                (ureq::Error::HostNotFound, None) => {
                    format!("could not resolve host {}", host_name(&host))
                }
                (e, Some(p)) if is_refused(e) => format!("the proxy {p} refused the connection"),
                (e, None) if is_refused(e) => format!("connection{to} refused"),
                (ureq::Error::ConnectionFailed, _) => format!("connection{to}{via} failed"),
                (ureq::Error::Io(io), _) => format!("I/O error{to}{via}: {}", io.kind()),
                _ => format!("HTTP error{to}{via}"),
            };
            Error::Transport {
                message,
                source: Some(Arc::new(other)),
            }
        }
    }
}

/// HTTPS everywhere; plain HTTP only to loopback hosts, or with the explicit opt-out.
///
/// Loopback is judged on the host exactly as written in the URL, which is what the
/// connection is made to: a strict IPv4 or IPv6 loopback literal, or `localhost`.
/// `127.0.0.1.`, `localhost.`, `127.1` and names that merely start with a loopback
/// literal are not loopback.
pub(crate) fn check_url(url: &str, allow_insecure: bool) -> Result<Url> {
    let parsed = Url::parse(url).map_err(|e| Error::config(format!("invalid URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_insecure => Ok(parsed),
        "http" => {
            let raw_host = url
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_owned));
            if raw_host.as_deref().is_some_and(is_loopback_host) {
                Ok(parsed)
            } else {
                Err(Error::config(format!(
                    "refusing plain HTTP to non-loopback host {}: use https (plain http:// goes to \
                     loopback only: 127.0.0.1, [::1], localhost, unless a program's client \
                     options allow it for tests)",
                    parsed.host_str().unwrap_or("")
                )))
            }
        }
        other => Err(Error::config(format!("unsupported URL scheme {other:?}"))),
    }
}

/// A host, as written in a URL, that is certainly this machine.
fn is_loopback_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::MAX_DURATION;

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
        for not_loopback in [
            "http://127.0.0.1./x",
            "http://localhost./x",
            "http://127.0.0.1.evil.example/x",
            "http://localhost.evil.example/x",
            "http://127.1/x",
            "http://0x7f000001/x",
            "http://[::ffff:127.0.0.1]/x",
        ] {
            let e = check_url(not_loopback, false).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Config, "{not_loopback}");
        }
        let e = check_url("http://api.vibe.co/oauth2/token", false).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Config);
        assert!(check_url("http://api.vibe.co/oauth2/token", true).is_ok());
        assert!(check_url("ftp://x/", true).is_err());
        assert!(check_url("not a url", false).is_err());
    }

    #[test]
    fn a_remembered_plain_http_origin_admits_only_urls_of_that_very_authority() {
        let http = Http::new(Arc::new(Options::default())).unwrap();
        let refused = |url: &str| {
            let e = http.check_url(url).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Config, "{url}");
        };
        http.check_url("http://127.0.0.1:8080/api").unwrap();
        assert!(http.allowed_http.load().is_some());
        http.check_url("http://127.0.0.1:8080/other?x=1").unwrap();
        for url in [
            "http://127.0.0.1:8080@evil.example/x",
            "http://127.0.0.1:8080.evil.example/x",
            "http://127.0.0.1:8080\\@evil.example/x",
            "http://evil.example/x",
        ] {
            refused(url);
        }
        // An authority with user information is checked every time, never remembered.
        http.check_url("http://u@127.0.0.1:9/x").unwrap();
        assert_eq!(
            http.allowed_http.load().as_deref().map(String::as_str),
            Some("http://127.0.0.1:8080/")
        );
        refused("http://u@evil.example:9/x");
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
    fn transport_failures_say_what_and_where() {
        let dns = transport_error(ureq::Error::HostNotFound, "auth.example:443".into(), None);
        assert_eq!(
            dns.to_string(),
            "transport error: could not resolve host auth.example"
        );
        let proxied = transport_error(
            ureq::Error::ConnectProxyFailed("CONNECT refused (403)".into()),
            "auth.example:443".into(),
            Some("proxy.internal:3128".into()),
        );
        let text = proxied.to_string();
        assert!(text.contains("the proxy proxy.internal:3128"), "{text}");
        assert!(text.contains("auth.example:443"), "{text}");
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let text = transport_error(ureq::Error::Io(tls), "idp.corp:443".into(), None).to_string();
        assert!(
            text.contains("certificate of idp.corp:443 is not trusted"),
            "{text}"
        );
        let plain = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        let text = transport_error(ureq::Error::Io(plain), "127.0.0.1:80".into(), None).to_string();
        assert!(text.contains("did not answer with TLS"), "{text}");
    }

    #[test]
    fn error_for_status_turns_failures_into_errors() {
        let response = |status: u16, body: &str| Response {
            status,
            headers: http::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
            sent_token: None,
        };
        assert!(response(204, "").error_for_status().is_ok());
        let e = response(404, "<html>not here</html>")
            .error_for_status()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ApiProblem);
        assert_eq!(e.http_status(), Some(404));
        assert_eq!(
            e.problem().and_then(|p| p.title.as_deref()),
            Some("HTTP 404")
        );
        let e = response(403, r#"{"title":"Forbidden","status":403,"detail":"no"}"#)
            .error_for_status()
            .unwrap_err();
        assert_eq!(e.problem().and_then(|p| p.detail.as_deref()), Some("no"));
        let e = response(429, "").error_for_status().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        // An API that echoes the token it was sent: removed, whatever its shape.
        let mut echoed = response(
            401,
            r#"{"title":"Unauthorized","status":401,"detail":"token tok9 is expired"}"#,
        );
        echoed.sent_token = Some(Arc::new(Token::never_expiring("tok9")));
        let text = echoed.error_for_status().unwrap_err().to_string();
        assert!(!text.contains("tok9"), "{text}");
    }

    #[test]
    fn only_a_failed_response_keeps_the_token_it_was_sent_with() {
        let mut server = mockito::Server::new();
        server.mock("GET", "/ok").with_body("fine").create();
        server
            .mock("GET", "/bad")
            .with_status(403)
            .with_body("token tok9 may not")
            .create();
        let http = Http::new(Arc::new(Options::default())).unwrap();
        let token = Arc::new(Token::never_expiring("tok9"));
        let send = |path: &str| {
            let url = format!("{}{path}", server.url());
            let deadline = crate::clock::Deadline::after(Duration::from_secs(10));
            http.send("GET", &url, &[], &token, &[], deadline).unwrap()
        };
        let ok = send("/ok");
        assert_eq!((ok.status, ok.sent_token.is_none()), (200, true));
        assert_eq!(Arc::strong_count(&token), 1);
        let bad = send("/bad");
        assert_eq!(bad.status, 403);
        assert_eq!(Arc::strong_count(&token), 2);
        let text = bad.error_for_status().unwrap_err().to_string();
        assert!(!text.contains("tok9"), "{text}");
    }

    #[test]
    fn the_agents_own_limit_ends_before_any_first_attempts_deadline() {
        assert_eq!(
            agent_timeout(Duration::from_secs(30)),
            Duration::from_millis(29_995)
        );
        assert_eq!(
            agent_timeout(Duration::from_secs(1)),
            Duration::from_millis(999)
        );
        assert_eq!(
            agent_timeout(Duration::from_millis(10)),
            Duration::from_micros(9_990)
        );
        assert_eq!(
            agent_timeout(MAX_DURATION),
            MAX_DURATION - Duration::from_millis(5)
        );
        // A timeout that is not a whole number of slivers: the limit is one.
        let odd = Duration::from_micros(5_000_100);
        assert_eq!(agent_timeout(odd), Duration::from_millis(4_995));
        for micros in [1, 999, 1_001, 7_777_777, 123_456_789] {
            let t = Duration::from_micros(micros);
            let (limit, step) = (agent_timeout(t), crate::steady::sliver(t));
            assert!(limit < t && t - limit < 2 * step, "{t:?} -> {limit:?}");
            assert_eq!(limit.as_nanos() % step.as_nanos(), 0, "{t:?} -> {limit:?}");
        }
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..20 {
            assert!(backoff_delay(attempt) <= Duration::from_secs(2));
        }
    }
}

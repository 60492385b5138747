//! [`Client`]: the public face. Get a token, get the header, or send a request that
//! recovers once from a 401.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::{Cache, Policy};
use crate::error::Result;
use crate::grant::{Grant, StaticToken};
use crate::http::{Http, Response};
use crate::options::Options;
use crate::secret::Secret;
use crate::token::{Freshness, Token};

/// A thread-safe token client. Clone it freely: clones share one cache, so one client
/// (and its clones) should serve every thread of a process.
///
/// ```
/// let client = authcore::Client::personal_access_token("my-token");
/// let header = client.authorization_header().unwrap();
/// assert_eq!(header.expose_secret(), "Bearer my-token");
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    cache: Cache,
    grant: Box<dyn Grant>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("options", self.inner.http.options())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for a grant. Fails only on configuration errors (e.g. a plain-HTTP
    /// token endpoint on a remote host); no request is made until a token is needed.
    pub fn new(grant: impl Grant, options: Options) -> Result<Client> {
        let http = Http::new(Arc::new(options));
        for url in grant.endpoints() {
            http.check_url(url)?;
        }
        let options = http.options();
        let policy = Policy {
            backoff: options.failure_backoff,
            max_backoff: options.max_failure_backoff,
            wait_timeout: options.effective_wait_timeout(),
        };
        let refresh_token = options
            .store
            .as_ref()
            .and_then(|s| s.load())
            .or_else(|| grant.initial_refresh_token());
        let cache = Cache::new(policy, grant.initial_token(), refresh_token);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                cache,
                grant: Box::new(grant),
            }),
        })
    }

    /// A client for a personal access token (viewneo) or any static bearer token.
    pub fn personal_access_token(token: impl Into<Secret>) -> Client {
        Client::new(StaticToken::new(token), Options::default())
            .expect("a static token has no endpoint to reject")
    }

    /// A valid access token: the cached one, or a new one obtained by exactly one
    /// caller while the others wait for it (or keep using a still-valid token).
    #[inline]
    pub fn token(&self) -> Result<Arc<Token>> {
        let inner = &*self.inner;
        inner.cache.get(|refresh_token| {
            let token = inner.grant.fetch(&inner.http, refresh_token)?;
            announce(inner.http.options(), &token, refresh_token);
            Ok(token)
        })
    }

    /// The `Authorization` header value for a valid token, e.g. `Bearer abc…`.
    pub fn authorization_header(&self) -> Result<Secret> {
        Ok(self.token()?.authorization_header().clone())
    }

    /// Reports that a server rejected `token`. The cache drops it only if it still
    /// holds that very token, so many rejections of one token cause one renewal.
    /// Returns whether the cached token was dropped.
    pub fn invalidate(&self, token: &Token) -> bool {
        self.inner.grant.renewable() && self.inner.cache.invalidate(token)
    }

    /// Like [`invalidate`](Self::invalidate), by access token value (for hosts that
    /// only hold the string).
    pub fn invalidate_access_token(&self, access_token: &str) -> bool {
        self.inner.grant.renewable() && self.inner.cache.invalidate_value(access_token)
    }

    /// The cached token, if any, without renewing or waiting.
    pub fn cached_token(&self) -> Option<Arc<Token>> {
        self.inner.cache.peek()
    }

    /// The cached token if it needs no renewal yet ([`Freshness::Fresh`]), else `None`.
    /// Never does I/O and never waits for a renewal: hosts use it as a fast path
    /// before a [`token`](Self::token) call that may block.
    pub fn fresh_token(&self) -> Option<Arc<Token>> {
        self.inner
            .cache
            .peek()
            .filter(|t| t.freshness(Instant::now()) == Freshness::Fresh)
    }

    /// Sends a request with the token attached. On a 401 (other than an
    /// `insufficient_scope` challenge) the token is invalidated, renewed, and the
    /// request sent once more. Any `Authorization` header in `headers` is replaced.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        self.request_with_timeout(method, url, headers, body, None)
    }

    /// [`request`](Self::request) with its own overall deadline for each send, instead
    /// of [`Options::timeout`](crate::Options::timeout). Token renewal keeps the
    /// client's settings.
    pub fn request_with_timeout(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Response> {
        let http = &self.inner.http;
        http.check_url(url)?;
        let token = self.token()?;
        let response = http.send(
            method,
            url,
            headers,
            token.authorization_header(),
            body,
            timeout,
        )?;
        if !self.renewal_helps(response.status, response.header("www-authenticate")) {
            return Ok(response);
        }
        self.invalidate(&token);
        let token = self.token()?;
        http.send(
            method,
            url,
            headers,
            token.authorization_header(),
            body,
            timeout,
        )
    }

    /// Whether a response is worth renewing the token and sending once more: a 401
    /// whose `WWW-Authenticate` challenge is not `insufficient_scope`, for a client whose
    /// token can be renewed. [`request`](Self::request) follows this rule; adapters for
    /// other HTTP clients ask it instead of repeating it.
    pub fn renewal_helps(&self, status: u16, www_authenticate: Option<&str>) -> bool {
        status == 401
            && self.inner.grant.renewable()
            && !www_authenticate.is_some_and(|v| v.contains("insufficient_scope"))
    }

    /// `GET url` with the token attached (see [`request`](Self::request)).
    pub fn get(&self, url: &str) -> Result<Response> {
        self.request("GET", url, &[], &[])
    }
}

/// Hands a new token to the store and, when its refresh token is new, to the hook —
/// before any caller can use the access token that came with it.
pub(crate) fn announce(options: &Options, token: &Token, previous: Option<&Secret>) {
    if let Some(store) = &options.store {
        store.save(token);
    }
    if let (Some(hook), Some(rt)) = (&options.on_refresh_token, token.refresh_token()) {
        if previous != Some(rt) {
            hook(rt);
        }
    }
}

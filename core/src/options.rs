//! [`Options`]: everything about a client that is not the grant.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::secret::Secret;
use crate::store::TokenStore;

/// A function called with every new refresh token before the access token that came
/// with it is used.
pub type RefreshTokenHook = Arc<dyn Fn(&Secret) + Send + Sync>;

/// Client configuration, built with chained setters:
///
/// ```
/// use std::time::Duration;
/// let options = authcore::Options::default()
///     .timeout(Duration::from_secs(10))
///     .max_retries(1);
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_body_bytes: u64,
    pub(crate) max_retries: u32,
    pub(crate) danger_allow_insecure_http: bool,
    pub(crate) default_lifetime: Option<Duration>,
    pub(crate) failure_backoff: Duration,
    pub(crate) max_failure_backoff: Duration,
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) store: Option<Arc<dyn TokenStore>>,
    pub(crate) on_refresh_token: Option<RefreshTokenHook>,
    pub(crate) extra_headers: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_body_bytes: 4 * 1024 * 1024,
            max_retries: 2,
            danger_allow_insecure_http: false,
            default_lifetime: None,
            failure_backoff: Duration::from_secs(1),
            max_failure_backoff: Duration::from_secs(30),
            wait_timeout: None,
            store: None,
            on_refresh_token: None,
            extra_headers: Vec::new(),
        }
    }
}

impl Options {
    /// Time allowed to open a connection (TCP and TLS). Default 5 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Time allowed for one whole request, body included. Default 30 s.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Largest response body read. Default 4 MiB.
    pub fn max_body_bytes(mut self, n: u64) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Retries of a token request after transient failures. Default 2.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Allows plain `http://` to hosts other than loopback. Credentials and tokens
    /// then cross the network in clear text: for closed test networks only.
    pub fn danger_allow_insecure_http(mut self, allow: bool) -> Self {
        self.danger_allow_insecure_http = allow;
        self
    }

    /// Lifetime assumed for tokens whose response gives none (neither `expires_in` nor
    /// a JWT `exp`). Default: none, the token is kept until a 401 invalidates it.
    pub fn default_lifetime(mut self, d: Option<Duration>) -> Self {
        self.default_lifetime = d;
        self
    }

    /// First pause after a failed renewal, doubled after each further failure up to
    /// `max` (a server's `Retry-After` wins when longer). Defaults 1 s and 30 s.
    pub fn failure_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.failure_backoff = first;
        self.max_failure_backoff = max.max(first);
        self
    }

    /// Longest time a caller waits for another thread's renewal. Default: enough for
    /// the renewal's own timeouts and retries.
    pub fn wait_timeout(mut self, d: Duration) -> Self {
        self.wait_timeout = Some(d);
        self
    }

    /// Where tokens are saved as they are obtained (to persist rotated refresh tokens).
    pub fn store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Called with each new refresh token before the access token that came with it
    /// is used, so that it can be persisted first.
    pub fn on_refresh_token(mut self, hook: impl Fn(&Secret) + Send + Sync + 'static) -> Self {
        self.on_refresh_token = Some(Arc::new(hook));
        self
    }

    /// Removes the hook set by [`on_refresh_token`](Self::on_refresh_token).
    pub fn clear_refresh_token_hook(mut self) -> Self {
        self.on_refresh_token = None;
        self
    }

    /// A header sent with every token request (e.g. api.video's `AV-Origin-App`).
    pub fn token_request_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn effective_wait_timeout(&self) -> Duration {
        self.wait_timeout.unwrap_or_else(|| {
            let attempts = self.max_retries.saturating_add(1);
            (self.timeout + Duration::from_secs(2)) * attempts + Duration::from_secs(5)
        })
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_retries", &self.max_retries)
            .field(
                "danger_allow_insecure_http",
                &self.danger_allow_insecure_http,
            )
            .field("default_lifetime", &self.default_lifetime)
            .field("failure_backoff", &self.failure_backoff)
            .field("store", &self.store.is_some())
            .field("on_refresh_token", &self.on_refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

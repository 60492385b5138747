//! [`Options`]: everything about a client that is not the grant.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::{StoreKey, TokenStore};
use crate::token::Token;

/// The error a refresh-token hook reports when it could not keep a token.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// A function called with every new refresh token before the access token that came
/// with it is used. An `Err` (or a panic) is reported, never fatal: the token is kept
/// and used regardless (see [`Options::on_refresh_token`]).
pub type RefreshTokenHook = Arc<dyn Fn(&Rotation<'_>) -> Result<(), HookError> + Send + Sync>;

/// What a refresh-token hook is told: the new refresh token, the token it came with,
/// and whose it is — enough for one hook shared by many clients to file it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Rotation<'a> {
    /// The new refresh token.
    pub refresh_token: &'a Secret,
    /// The access token it came with, and its details (expiry, scope, fields).
    pub token: &'a Token,
    /// The credential it belongs to (grant, endpoint, client id, scopes; never a
    /// secret): the key a shared store files it under.
    pub credential: Option<&'a StoreKey>,
}

/// What a refresh-token hook may return: nothing (it cannot fail), or a `Result`
/// whose error is reported.
pub trait HookOutcome {
    /// The outcome as a `Result`.
    fn into_result(self) -> Result<(), HookError>;
}

impl HookOutcome for () {
    fn into_result(self) -> Result<(), HookError> {
        Ok(())
    }
}

impl<E: Into<HookError>> HookOutcome for Result<(), E> {
    fn into_result(self) -> Result<(), HookError> {
        self.map_err(Into::into)
    }
}

/// Longest duration any timeout, deadline or backoff setting takes; longer values are
/// clamped to it so that no instant arithmetic can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Which proxy requests to non-loopback hosts go through. Loopback hosts are always
/// reached directly, whatever this says.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Proxy {
    /// From the environment, as curl reads it: `ALL_PROXY`, then `HTTPS_PROXY`, then
    /// `HTTP_PROXY` (or their lowercase forms), skipping hosts listed in `NO_PROXY`.
    #[default]
    Environment,
    /// Never a proxy, whatever the environment says.
    None,
    /// This proxy (`http://`, `https://`; user and password in the URL allowed). The
    /// environment is ignored.
    Url(String),
}

impl fmt::Debug for Proxy {
    /// Shows the proxy's scheme, host and port only: never its user or password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::Environment => f.write_str("Environment"),
            Proxy::None => f.write_str("None"),
            Proxy::Url(u) => match url::Url::parse(u) {
                Ok(p) => write!(
                    f,
                    "Url({}://{}{})",
                    p.scheme(),
                    p.host_str().unwrap_or(""),
                    p.port().map(|p| format!(":{p}")).unwrap_or_default()
                ),
                Err(_) => f.write_str("Url([unparsable])"),
            },
        }
    }
}

/// Client configuration, built with chained setters:
///
/// ```
/// use std::time::Duration;
/// let options = authcore::Options::default()
///     .timeout(Duration::from_secs(10))
///     .max_retries(1);
/// # let _ = options;
/// ```
///
/// Durations longer than [`MAX_DURATION`] are clamped to it; a zero timeout or body
/// cap is a [`Config`](crate::ErrorKind::Config) error when the client is built.
#[derive(Clone)]
pub struct Options {
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_body_bytes: u64,
    pub(crate) max_retries: u32,
    pub(crate) danger_allow_insecure_http: bool,
    pub(crate) default_lifetime: Option<Duration>,
    pub(crate) expiry_margin: Duration,
    pub(crate) failure_backoff: Duration,
    pub(crate) max_failure_backoff: Duration,
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) store: Option<Arc<dyn TokenStore>>,
    pub(crate) store_key: Option<String>,
    pub(crate) on_refresh_token: Option<RefreshTokenHook>,
    pub(crate) extra_headers: Vec<(String, String)>,
    pub(crate) proxy: Proxy,
    pub(crate) ca_bundle: Option<std::path::PathBuf>,
    pub(crate) dpop: Option<crate::dpop::Dpop>,
    pub(crate) client_certificate: Option<crate::mtls::ClientCertificate>,
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
            expiry_margin: Duration::ZERO,
            failure_backoff: Duration::from_secs(1),
            max_failure_backoff: Duration::from_secs(30),
            wait_timeout: None,
            store: None,
            store_key: None,
            on_refresh_token: None,
            extra_headers: Vec::new(),
            proxy: Proxy::Environment,
            ca_bundle: None,
            dpop: None,
            client_certificate: None,
        }
    }
}

impl Options {
    /// Time allowed to open a connection (TCP and TLS), within the call's deadline.
    /// Default 5 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d.min(MAX_DURATION);
        self
    }

    /// The deadline of one whole call. For a token acquisition it covers every attempt,
    /// every pause between attempts (`Retry-After` included) and every body read; for
    /// [`Client::request`](crate::Client::request) it covers the first send, the
    /// renewal and the resend. A call that reaches it fails with
    /// [`Timeout`](crate::ErrorKind::Timeout) and its connection is dropped. Default 30 s.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d.min(MAX_DURATION);
        self
    }

    /// Largest response body read. Default 4 MiB.
    pub fn max_body_bytes(mut self, n: u64) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Retries of a token request after transient failures, within the deadline.
    /// Default 2.
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

    /// The least margin before expiry at which a token is no longer sent, for APIs whose
    /// clocks run ahead of the token server's. By default a token with lifetime `L` is
    /// not sent from `L/20` (at most 30 s) before expiry; with a margin `m` from
    /// `max(that, m)` before (at most 90 % of `L`), and it is renewed ahead no later.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.expiry_margin = margin.min(MAX_DURATION);
        self
    }

    /// The pause after the second consecutive failed renewal, doubled after each
    /// further failure up to `max`. The first failure costs no pause: the next call
    /// tries again at once. A server's `Retry-After` always wins. Defaults 1 s and 30 s.
    pub fn failure_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.failure_backoff = first.min(MAX_DURATION);
        self.max_failure_backoff = max.min(MAX_DURATION).max(self.failure_backoff);
        self
    }

    /// An extra bound on how long a caller waits for another caller's renewal. By
    /// default a waiter waits as long as the renewal's own deadline allows (and never
    /// past its own deadline), so it never gives up before the renewal does.
    pub fn wait_timeout(mut self, d: Duration) -> Self {
        self.wait_timeout = Some(d.min(MAX_DURATION));
        self
    }

    /// Where tokens are saved as they are obtained (to persist rotated refresh tokens).
    pub fn store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Whose tokens these are, in the shared store: a name of your own for the user
    /// (or tenant, or profile) the client acts for, written into the store key as
    /// `user=NAME`. A refresh-token client given a store needs it — or a first token
    /// with an ID token, whose `sub` names the user — so that two users never share a
    /// key (a [`Config`](crate::ErrorKind::Config) error otherwise). It wins over the ID
    /// token's `sub`: on a sign-in flow that serves many users, leave it unset. Never
    /// put a secret in it; control characters are refused when the client is built.
    pub fn store_key(mut self, name: impl Into<String>) -> Self {
        self.store_key = Some(name.into());
        self
    }

    /// Called with each new refresh token before the access token that came with it
    /// is used, so that it can be persisted first. The hook returns `()` or a `Result`.
    /// The token is already recorded in the client when the hook runs: a hook that returns an error or panics loses nothing
    /// (the token is still kept and used) and its failure is logged at error level
    /// through the [`log`] facade (target `authcore`).
    ///
    /// ```
    /// let options = authcore::Options::default().on_refresh_token(|rt| {
    ///     std::fs::write("/tmp/refresh-token", rt.expose_secret())
    /// });
    /// # let _ = options;
    /// ```
    pub fn on_refresh_token<F, R>(mut self, hook: F) -> Self
    where
        F: Fn(&Secret) -> R + Send + Sync + 'static,
        R: HookOutcome,
    {
        self.on_refresh_token = Some(Arc::new(move |r: &Rotation<'_>| {
            hook(r.refresh_token).into_result()
        }));
        self
    }

    /// Like [`on_refresh_token`](Self::on_refresh_token), with the whole [`Rotation`]:
    /// the token the refresh token came with and the credential it belongs to, for a
    /// hook that serves many clients. Replaces any hook set before.
    pub fn on_rotation<F, R>(mut self, hook: F) -> Self
    where
        F: Fn(&Rotation<'_>) -> R + Send + Sync + 'static,
        R: HookOutcome,
    {
        self.on_refresh_token = Some(Arc::new(move |r: &Rotation<'_>| hook(r).into_result()));
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

    /// The proxy for non-loopback hosts. Default [`Proxy::Environment`].
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = proxy;
        self
    }

    /// Trust exactly the certificate authorities in this PEM file for HTTPS (an internal
    /// identity provider behind a corporate CA), instead of the platform's trust store —
    /// and for a `rediss://` [`RedisStore`](crate::RedisStore) made without a CA of its
    /// own. A file that cannot be read or holds no certificate is a configuration error
    /// when the client is made. Default: the platform's trust store (on Linux the system
    /// bundle, or what `SSL_CERT_FILE` and `SSL_CERT_DIR` name when they are set and not
    /// empty — a file or directory there that cannot be read or holds no certificate is
    /// a configuration error naming the variable), else the Web PKI roots built in when
    /// the system bundle holds none.
    pub fn ca_bundle(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_bundle = Some(path.into());
        self
    }

    /// Back to the platform's trust store (undoes [`ca_bundle`](Self::ca_bundle)).
    pub fn clear_ca_bundle(mut self) -> Self {
        self.ca_bundle = None;
        self
    }

    /// Sender-constrained tokens (DPoP, RFC 9449): every token request carries a proof
    /// signed by the key, the tokens the server binds to it are sent as `DPoP <token>`
    /// with a fresh proof per request, and server nonces are handled (one retry with the
    /// nonce a server asks for, per request). See [`Dpop`](crate::Dpop).
    pub fn dpop(mut self, dpop: crate::Dpop) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// DPoP, if configured.
    pub fn dpop_config(&self) -> Option<&crate::Dpop> {
        self.dpop.as_ref()
    }

    /// Mutual TLS (RFC 8705): present this certificate on every HTTPS connection, to
    /// the token endpoint and to the APIs alike — so that `tls_client_auth` and
    /// `self_signed_tls_client_auth` work ([`AuthMethod`](crate::AuthMethod)), tokens
    /// the server binds to the certificate (`cnf.x5t#S256`) are accepted by the APIs,
    /// and the `mtls_endpoint_aliases` of discovered metadata are used. Tokens kept in a
    /// shared store are filed under the certificate's thumbprint too.
    pub fn client_certificate(mut self, certificate: crate::ClientCertificate) -> Self {
        self.client_certificate = Some(certificate);
        self
    }

    /// No client certificate (undoes [`client_certificate`](Self::client_certificate)).
    pub fn clear_client_certificate(mut self) -> Self {
        self.client_certificate = None;
        self
    }

    /// The client certificate, if configured.
    pub fn client_certificate_config(&self) -> Option<&crate::ClientCertificate> {
        self.client_certificate.as_ref()
    }

    /// Checks the settings a client cannot work with.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::config(format!("{what} must be greater than zero")));
        if self.timeout.is_zero() {
            return bad("timeout");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect timeout");
        }
        if self.max_body_bytes == 0 {
            return bad("max body bytes");
        }
        if self.wait_timeout.is_some_and(|d| d.is_zero()) {
            return bad("wait timeout");
        }
        for (name, value) in &self.extra_headers {
            if !is_valid_header(name, value) {
                return Err(Error::config(format!(
                    "token request header {name:?} is not a valid HTTP header"
                )));
            }
        }
        if let Proxy::Url(u) = &self.proxy {
            if !is_valid_proxy_url(u) {
                return Err(Error::config("the proxy URL is not valid"));
            }
        }
        if let Some(name) = &self.store_key {
            if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                return Err(Error::config(
                    "the store key must be 1 to 255 characters, none of them a control character",
                ));
            }
        }
        Ok(())
    }
}

/// Whether `name: value` is a header [`Options::token_request_header`] can send (a
/// client with any other is a configuration error).
pub fn is_valid_header(name: &str, value: &str) -> bool {
    ureq::http::HeaderName::try_from(name).is_ok()
        && ureq::http::HeaderValue::try_from(value).is_ok()
}

/// Whether `url` is a proxy URL [`Proxy::Url`] can use.
pub fn is_valid_proxy_url(url: &str) -> bool {
    ureq::Proxy::new(url).is_ok()
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
            .field("max_failure_backoff", &self.max_failure_backoff)
            .field("wait_timeout", &self.wait_timeout)
            .field("store", &self.store.is_some())
            .field("store_key", &self.store_key)
            .field("on_refresh_token", &self.on_refresh_token.is_some())
            .field(
                "token_request_headers",
                &self
                    .extra_headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("proxy", &self.proxy)
            .field("ca_bundle", &self.ca_bundle)
            .field("dpop", &self.dpop)
            .field("client_certificate", &self.client_certificate)
            .finish()
    }
}

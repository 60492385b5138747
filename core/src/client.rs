//! [`Client`]: the public face. Get a token, get the header, or send a request that
//! recovers once from a 401.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, Policy, Rejection};
use crate::challenge::Challenge;
use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::events::event;
use crate::grant::{Grant, StaticToken};
use crate::http::{Http, Response};
use crate::options::Options;
use crate::secret::Secret;
use crate::stats::Stats;
use crate::store::{Renewal, Tier};
use crate::token::Token;

/// A thread-safe token client. Clone it freely: clones share one cache, so one client
/// (and its clones) should serve every thread of a process.
///
/// A renewal runs user code on the thread that renews: its events (a logger), its
/// hooks, a custom store. From there, a call to the same client that would wait for
/// that renewal ([`token`](Self::token) or [`refresh`](Self::refresh) without a fresh
/// token cached, [`revoke`](Self::revoke)) fails at once with a
/// [`Config`](crate::ErrorKind::Config) error instead of waiting for itself.
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
    /// Where new tokens are handed over: the shared store, the refresh-token hook.
    tier: Tier,
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
        let http = Http::new(Arc::new(options))?;
        grant.check()?;
        if let Some(method) = grant.auth_method() {
            crate::grant::check_certificate(method, http.options())?;
        }
        for url in grant.endpoints() {
            http.check_url(url)?;
        }
        let options = http.options();
        let policy = Policy {
            backoff: options.failure_backoff,
            max_backoff: options.max_failure_backoff,
            wait_timeout: options.wait_timeout,
        };
        // The credential's key names its tokens in the store and in the hook's context:
        // whose they are, too (a name the caller gave, else the ID token's `sub`).
        let user = options
            .store_key
            .clone()
            .or_else(|| grant.initial_token().and_then(|t| t.subject()));
        let store_key = grant.store_key(user.as_deref());
        // Tokens may be bound to the certificate: another one could not use them.
        let store_key = match &options.client_certificate {
            Some(cert) => store_key.map(|k| k.with_certificate(cert.thumbprint())),
            None => store_key,
        };
        if options.store.is_some() && grant.per_user() && user.is_none() {
            return Err(crate::error::Error::config(
                "a refresh-token client with a shared store needs to know whose tokens they are: \
                 set a store key (the user's name), or start from a token that has an ID token",
            ));
        }
        let counters = std::sync::Arc::clone(http.counters());
        let tier = Tier::new(http.shared_options(), store_key, Arc::clone(&counters));
        let initial = grant.initial_token();
        if let Some(token) = &initial {
            http.follow_dpop_key(token);
        }
        let cache = Cache::new(policy, initial, grant.initial_refresh_token(), counters);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                cache,
                grant: Box::new(grant),
                tier,
            }),
        })
    }

    /// The client certificate its connections present (mutual TLS, RFC 8705), if any.
    pub fn client_certificate(&self) -> Option<&crate::ClientCertificate> {
        self.inner.http.options().client_certificate.as_ref()
    }

    /// A client for a personal access token (viewneo) or any static bearer token.
    pub fn personal_access_token(token: impl Into<Secret>) -> Client {
        Client::new(StaticToken::new(token), Options::default())
            .expect("a static token has no endpoint to reject")
    }

    /// A valid access token: the cached one, or a new one obtained by exactly one
    /// caller while the others wait for it (or keep using a still-valid token), all
    /// within [`Options::timeout`](crate::Options::timeout).
    #[inline]
    pub fn token(&self) -> Result<Arc<Token>> {
        if let Some(token) = self.inner.cache.fresh() {
            return Ok(token);
        }
        self.token_until(Deadline::after(self.inner.http.options().timeout))
    }

    pub(crate) fn token_until(&self, deadline: Deadline) -> Result<Arc<Token>> {
        let inner = &*self.inner;
        inner.cache.get(
            deadline,
            |renewal| self.renew(renewal),
            |token, previous| self.announce(token, previous),
        )
    }

    /// A new token is published: its DPoP key (if any) signs the session's next token
    /// requests, and the refresh-token hook and the store hear of it.
    fn announce(&self, token: &Token, previous: Option<&Secret>) {
        self.inner.http.follow_dpop_key(token);
        self.inner.tier.announce(token, previous);
    }

    /// One renewal through the store tier (`None`: the store is busy with another
    /// process's renewal ahead of expiry; the still-valid token is kept).
    fn renew(&self, renewal: &Renewal<'_>) -> Result<Option<Token>> {
        let inner = &*self.inner;
        let without_store = inner.grant.without_store();
        inner.tier.renew(renewal, without_store, |rt, key| {
            let fetch = || inner.grant.fetch(&inner.http, rt, renewal.deadline);
            match key {
                // A refresh token from the store is sent with its session's DPoP key.
                Some(key) => inner.http.with_dpop_key(key, fetch),
                None => fetch(),
            }
        })
    }

    /// A new token now, whatever the state of the cached one: exactly one renewal
    /// (callers that need a token meanwhile wait for it, or keep using a still-valid
    /// one), within [`Options::timeout`](crate::Options::timeout). If a renewal is
    /// already in flight, its outcome is shared instead of starting another; while the
    /// failure backoff holds, the last failure comes back without a request. A static
    /// token is returned as it is.
    pub fn refresh(&self) -> Result<Arc<Token>> {
        let inner = &*self.inner;
        if !inner.grant.renewable() {
            return self.token();
        }
        let deadline = Deadline::after(inner.http.options().timeout);
        inner.cache.renew_now(
            deadline,
            |renewal| self.renew(renewal),
            |token, previous| self.announce(token, previous),
        )
    }

    /// What this client (and its clones) did so far: cache hits, token requests by
    /// outcome, renewals by reason, waits, backoff refusals, retries after a 401.
    /// Always counted; reading them takes a short lock.
    pub fn stats(&self) -> Stats {
        self.inner.http.counters().snapshot()
    }

    /// Counts what a flow did to make this client (its code exchange, its polls).
    pub(crate) fn absorb(&self, counted: &Stats) {
        self.inner.http.counters().absorb(counted);
    }

    /// Keeps a sign-in's first record that the flow could not save to the store.
    pub(crate) fn keep_unsaved(&self, record: crate::store::StoredToken) {
        self.inner.tier.keep_unsaved(record);
    }

    /// Whether this client holds a refresh token that only it has: one the provider
    /// issued to it (a rotation, or a sign-in's first) that its shared store could not
    /// save (the failure is the `store.save_failed` event). It is written first under
    /// the next renewal's lock, but a process that ends before then loses it, and the
    /// refresh token the store still holds may no longer be accepted: the user may have
    /// to sign in again. Always false without a store, and for grants that renew with a
    /// credential of their own (client credentials, API key). `authcore token` exits 6
    /// on this.
    pub fn has_unsaved_refresh_token(&self) -> bool {
        self.inner.tier.has_unsaved_refresh_token()
    }

    /// The key this client's tokens are filed under in its shared store (what the
    /// credential is and whose it is; never a secret), if it has a store.
    pub fn store_key(&self) -> Option<crate::StoreKey> {
        self.inner.tier.store_key().cloned()
    }

    /// What identifies this client's credential (its grant's store key), whether or not
    /// it has a store: for another grant's store key that depends on this client.
    pub(crate) fn credential_key(&self) -> Option<crate::StoreKey> {
        let key = self.inner.tier.credential_key()?;
        // A user's session whose key names no user cannot stand for whose it is: two
        // users' clients would look alike.
        if self.inner.grant.per_user() && key.user().is_none() {
            return None;
        }
        Some(key.clone())
    }

    /// The `Authorization` header value for a valid token, e.g. `Bearer abc…`.
    pub fn authorization_header(&self) -> Result<Secret> {
        let token = self.token()?;
        header_safe(token.authorization_header())?;
        Ok(token.authorization_header().clone())
    }

    /// Reports that a server rejected `token`. The cache drops it only if it still
    /// holds that very token, so many rejections of one token cause one renewal — and
    /// not if it replaced a token that was rejected too, until the failure backoff
    /// allows another renewal (an API that refuses every token does not turn each call
    /// into a token request). Returns whether the cached token was dropped.
    pub fn invalidate(&self, token: &Token) -> bool {
        self.inner.grant.renewable() && self.inner.cache.reject(token) == Rejection::Dropped
    }

    /// Like [`invalidate`](Self::invalidate), by access token value (for hosts that
    /// only hold the string).
    pub fn invalidate_access_token(&self, access_token: &str) -> bool {
        self.inner.grant.renewable()
            && self.inner.cache.reject_value(access_token) == Rejection::Dropped
    }

    /// The cached token, if any, without renewing or waiting.
    pub fn cached_token(&self) -> Option<Arc<Token>> {
        self.inner.cache.peek()
    }

    /// The cached token if it needs no renewal yet ([`Freshness::Fresh`]), else `None`.
    /// Never does I/O, never waits and takes no lock: hosts use it as a fast path
    /// before a [`token`](Self::token) call that may block.
    ///
    /// [`Freshness::Fresh`]: crate::Freshness::Fresh
    pub fn fresh_token(&self) -> Option<Arc<Token>> {
        self.inner.cache.fresh()
    }

    /// Sends a request with the token attached. On a 401 (other than an
    /// `insufficient_scope` challenge) the token is invalidated, renewed, and the
    /// request sent once more; a 401 to a token that was just renewed that way is
    /// returned as it is. Any `Authorization` header in `headers` is replaced.
    ///
    /// Every HTTP status comes back as `Ok(Response)`; `Err` means no usable answer
    /// (no token, transport failure, deadline). The whole call — first send, renewal
    /// and resend — ends within [`Options::timeout`](crate::Options::timeout).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        self.request_with_timeout(method, url, headers, body, None)
    }

    /// [`request`](Self::request) with its own deadline for the whole call (first
    /// send, renewal and resend) instead of [`Options::timeout`](crate::Options::timeout).
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
        let deadline = Deadline::after(timeout.unwrap_or(http.options().timeout));
        // A DPoP server that asks for a nonce (RFC 9449 §9) gets the request once more
        // with a fresh proof carrying it; a second such answer is returned as it is.
        let send = |token: &Arc<Token>| {
            let response = http.send(method, url, headers, token, body, deadline)?;
            if token.dpop_key().is_some() && response.asks_for_dpop_nonce() {
                http.counters().dpop_nonce_retry();
                event!(debug, "dpop.nonce", status = response.status;
                    "the API asked for a DPoP nonce; sending the request once more with it");
                return http.send(method, url, headers, token, body, deadline);
            }
            Ok(response)
        };
        let token = match self.inner.cache.fresh() {
            Some(token) => token,
            None => self.token_until(deadline)?,
        };
        let response = send(&token)?;
        if response.status != 401 || !self.renewal_helps_for(401, &response.challenges()) {
            return Ok(response);
        }
        let rejection = self.inner.cache.reject(&token);
        event!(info, "token.rejected", status = response.status, dropped = rejection == Rejection::Dropped;
            "the API answered {} to the token{}", response.status,
            if rejection == Rejection::Kept { "; kept until the failure backoff ends" } else { "; renewing and sending once more" });
        if rejection == Rejection::Kept {
            return Ok(response);
        }
        let token = self.token_until(deadline)?;
        self.inner.http.counters().retry_after_401();
        let response = send(&token)?;
        if response.status == 401 && self.renewal_helps_for(401, &response.challenges()) {
            // Counted, so that the next call does not renew again before the backoff.
            self.inner.cache.reject(&token);
        }
        Ok(response)
    }

    /// Whether a response is worth renewing the token and sending once more: a 401,
    /// for a client whose token can be renewed, unless a `Bearer` or `DPoP` challenge in
    /// its `WWW-Authenticate` says `error="insufficient_scope"` (a new token would have
    /// the same scopes). The header is parsed as RFC 9110 §11.6.1 writes it (see
    /// [`Challenge`](crate::Challenge)): `insufficient_scope` anywhere else — in an
    /// `error_description`, or another scheme's parameter — does not count. Pass the
    /// field's lines joined by commas when there are several. [`request`](Self::request)
    /// follows this rule; adapters for other HTTP clients ask it instead of repeating it.
    pub fn renewal_helps(&self, status: u16, www_authenticate: Option<&str>) -> bool {
        self.renewal_helps_for(status, &Challenge::parse_all(www_authenticate))
    }

    /// [`renewal_helps`](Self::renewal_helps) for challenges already parsed.
    fn renewal_helps_for(&self, status: u16, challenges: &[Challenge]) -> bool {
        status == 401
            && self.inner.grant.renewable()
            && !challenges.iter().any(|c| {
                // A new token has the same scopes, and is proven by the same key.
                matches!(
                    c.oauth_error(),
                    Some("insufficient_scope" | "use_dpop_nonce" | "invalid_dpop_proof")
                )
            })
    }

    /// For callers with their own HTTP stack: what to do with a response to a request
    /// that carried this client's token to `url`. Remembers the response's `DPoP-Nonce`
    /// (pass the header's value, if any) for the next proofs to that origin, and says
    /// whether the server asked for a DPoP nonce (`401` with a `DPoP` challenge
    /// `error="use_dpop_nonce"`, and a nonce): then send the request once more with a
    /// new proof ([`request_headers`](Self::request_headers)), once — a second such
    /// answer is final. [`request`](Self::request) follows this rule itself.
    pub fn dpop_nonce_retry(
        &self,
        url: &str,
        status: u16,
        www_authenticate: Option<&str>,
        dpop_nonce: Option<&str>,
    ) -> bool {
        let Some(nonce) = dpop_nonce else {
            return false;
        };
        self.inner
            .http
            .nonces()
            .remember(crate::dpop::Server::Resource, url, nonce);
        let asks = status == 401
            && Challenge::parse_all(www_authenticate).iter().any(|c| {
                c.scheme().eq_ignore_ascii_case("dpop") && c.oauth_error() == Some("use_dpop_nonce")
            });
        if asks {
            self.inner.http.counters().dpop_nonce_retry();
        }
        asks
    }

    /// The headers a request to `url` with `method` needs, from one valid token: the
    /// `Authorization` value (`Bearer …` or `DPoP …`) and, for a DPoP-bound token, a
    /// fresh `DPoP` proof for this method and URL (with `ath` and the nonce the origin
    /// last gave). For callers with their own HTTP stack; the proof is good for one
    /// request.
    pub fn request_headers(&self, method: &str, url: &str) -> Result<RequestHeaders> {
        self.inner.http.check_url(url)?;
        let token = self.token()?;
        header_safe(token.authorization_header())?;
        let dpop = self.inner.http.dpop_proof(method, url, &token)?;
        Ok(RequestHeaders {
            authorization: token.authorization_header().clone(),
            dpop,
            token,
        })
    }

    /// The `DPoP` header value for one request with the current token (see
    /// [`request_headers`](Self::request_headers), which also gives the matching
    /// `Authorization` value); `None` when the token is a bearer token.
    pub fn dpop_proof(&self, method: &str, url: &str) -> Result<Option<Secret>> {
        self.request_headers(method, url).map(|h| h.dpop)
    }

    /// [`request_headers`](Self::request_headers) from the cached token if it needs no
    /// renewal yet ([`fresh_token`](Self::fresh_token)), else `None`. Never does I/O and
    /// never waits (signing the proof is its only work): event loops call it on the loop
    /// and call [`request_headers`](Self::request_headers) off the loop only when it
    /// gives `None`.
    pub fn fresh_request_headers(&self, method: &str, url: &str) -> Option<Result<RequestHeaders>> {
        let token = self.inner.cache.fresh()?;
        Some(self.inner.http.check_url(url).and_then(|()| {
            let dpop = self.inner.http.dpop_proof(method, url, &token)?;
            Ok(RequestHeaders {
                authorization: token.authorization_header().clone(),
                dpop,
                token,
            })
        }))
    }

    /// The DPoP key this client's tokens are bound to (the session's, else the one
    /// configured); `None` without DPoP.
    pub fn dpop_key(&self) -> Option<Arc<crate::DpopKey>> {
        self.inner
            .cache
            .peek()
            .and_then(|t| t.dpop_key().cloned())
            .or_else(|| self.inner.http.dpop_key())
    }

    /// Revokes the refresh token and the access token at the grant's revocation
    /// endpoint (RFC 7009; the refresh token first), and forgets both: in this client's
    /// cache and in the shared store, if one is configured, where a tombstone stays so
    /// that no other process renews the session from the refresh token it holds.
    /// Afterwards a refresh-token client needs a new sign-in
    /// ([`ReauthenticationRequired`](crate::ErrorKind::ReauthenticationRequired)); a
    /// client-credentials client simply gets a new token on its next call. A renewal in
    /// flight meanwhile cannot bring tokens back: its token is revoked too.
    ///
    /// A client without a revocation endpoint is a [`Config`](crate::ErrorKind::Config)
    /// error (nothing is forgotten). Revocation at the provider happens even when the
    /// store cannot be reached (then the store's error is returned, and calling `revoke`
    /// again removes the stored session); a server error is returned as it is, and the
    /// tokens are still forgotten here (they may be dead, and are no longer trusted).
    pub fn revoke(&self) -> Result<()> {
        // From inside this client's own renewal, revoking would wait for it.
        if self.inner.cache.renewing_here() {
            return Err(crate::cache::reentered());
        }
        // Before forgetting anything: is there somewhere to revoke?
        if !self.inner.grant.revocable() {
            return crate::grant::require_revocation_url(&None).map(|_| ());
        }
        let ended = self.end_session(true);
        ended.revoked.unwrap_or(Ok(())).and(ended.taken)
    }

    /// Signs the session out: forgets its tokens here and in the shared store (a
    /// tombstone, as [`revoke`](Self::revoke) leaves), whatever the provider says, then
    /// asks the provider to revoke them if the grant has a revocation endpoint. The
    /// outcome says which of these happened; a provider that cannot revoke is not an
    /// error of this call, since the session is over here all the same.
    ///
    /// `Err` only when the store could not be updated (the session may still be stored
    /// there; calling again retries); the provider was still asked to revoke the tokens
    /// this client held.
    pub fn sign_out(&self) -> Result<SignOut> {
        // From inside this client's own renewal, signing out would wait for it.
        if self.inner.cache.renewing_here() {
            return Err(crate::cache::reentered());
        }
        let ended = self.end_session(self.inner.grant.revocable());
        ended.taken?;
        Ok(match (ended.had_session, ended.revoked) {
            (false, _) => SignOut::NotSignedIn,
            (true, None) => SignOut::NoRevocationEndpoint,
            (true, Some(Ok(()))) => SignOut::Revoked,
            (true, Some(Err(e))) => SignOut::RevocationFailed(e),
        })
    }

    /// Forgets the session in this client's cache and in the shared store (a
    /// tombstone), then, if `at_provider` and there is anything to revoke, revokes it.
    fn end_session(&self, at_provider: bool) -> Ended {
        let inner = &*self.inner;
        let deadline = Deadline::after(inner.http.options().timeout);
        let memory_token = inner.cache.peek();
        let memory_rt = inner.cache.refresh_token();
        // From here on, no renewal in flight can publish a token or save it as live.
        inner.cache.clear();
        // The store and a renewal in flight get a slice each of the call's time, so that
        // a busy or dead store never leaves nothing to revoke at the provider with.
        let timeout = inner.http.options().timeout;
        let slice = |part: u32| deadline.min(Deadline::after(timeout / part));
        let orphans = inner.cache.settle(slice(4));
        let taken = inner.tier.take(memory_rt.as_ref(), slice(3));
        let stored = taken.as_ref().ok().cloned().flatten();
        let stored_token = stored.as_ref().map(|s| Arc::new(s.to_token()));
        let stored_rt = stored.and_then(|s| s.refresh_token);
        // Every refresh token and access token this client knows of, the newest first.
        let mut refresh_tokens: Vec<Secret> = Vec::new();
        let mut tokens: Vec<Arc<Token>> = Vec::new();
        for rt in orphans
            .iter()
            .filter_map(|t| t.refresh_token().cloned())
            .chain(stored_rt)
            .chain(memory_rt)
        {
            if !refresh_tokens.contains(&rt) {
                refresh_tokens.push(rt);
            }
        }
        for t in orphans.into_iter().chain(stored_token).chain(memory_token) {
            if !tokens.iter().any(|k| k.access_token() == t.access_token()) {
                tokens.push(t);
            }
        }
        let had_session = !refresh_tokens.is_empty() || !tokens.is_empty();
        let revoked = (at_provider && had_session).then(|| {
            let mut revoked = Ok(());
            for i in 0..refresh_tokens.len().max(tokens.len()) {
                let outcome = inner.grant.revoke(
                    &inner.http,
                    tokens.get(i).map(|t| &**t),
                    refresh_tokens.get(i),
                    deadline,
                );
                if revoked.is_ok() {
                    revoked = outcome;
                }
            }
            revoked
        });
        inner.cache.clear();
        Ended {
            had_session,
            taken: taken.map(|_| ()),
            revoked,
        }
    }

    /// `GET url` with the token attached (see [`request`](Self::request)).
    pub fn get(&self, url: &str) -> Result<Response> {
        self.request("GET", url, &[], &[])
    }
}

/// Refuses a header value a caller would send as is (a static token or a stored one
/// with a line break would add headers of its own to a request or a `curl -H @-` line).
fn header_safe(value: &Secret) -> Result<()> {
    if crate::options::is_valid_header("authorization", value.expose_secret()) {
        Ok(())
    } else {
        Err(Error::config(
            "the token has characters an HTTP header may not carry (a line break or a control character)",
        ))
    }
}

/// The headers one request needs, from one token: see [`Client::request_headers`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestHeaders {
    /// The `Authorization` header value.
    pub authorization: Secret,
    /// The `DPoP` header value, for a DPoP-bound token.
    pub dpop: Option<Secret>,
    /// The token both come from.
    pub token: Arc<Token>,
}

/// What ending a session did: whether there was one, whether the store took the
/// tombstone, and the provider's answer (`None`: not asked).
struct Ended {
    had_session: bool,
    taken: Result<()>,
    revoked: Option<Result<()>>,
}

/// How [`Client::sign_out`] went: the session is forgotten here and in the shared
/// store in every case.
#[derive(Debug)]
#[non_exhaustive]
pub enum SignOut {
    /// There was no session: no token in this client, none live in its store. Nothing
    /// was sent to the provider.
    NotSignedIn,
    /// The provider revoked the session's tokens.
    Revoked,
    /// The grant has no revocation endpoint: the tokens stay valid at the provider
    /// until they expire.
    NoRevocationEndpoint,
    /// The provider did not revoke them (it refused, could not be reached, or answered
    /// with something unusable), as the error says.
    RevocationFailed(Error),
}

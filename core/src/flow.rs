//! [`AuthorizationCodeFlow`]: a user signs in in a browser, and the flow hands out a
//! [`Client`] that goes on by refresh token. It lives beside the client because it
//! makes one; the grant it uses only builds requests.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;
use zeroize::{Zeroize, Zeroizing};

use crate::client::Client;
use crate::clock::Deadline;
use crate::error::{Error, OAuthError, Result};
use crate::events::{event, secs};
use crate::grant::{AuthorizationCode, Pkce, RefreshToken};
use crate::http::Http;
use crate::options::Options;
use crate::random;
use crate::secret::Secret;
use crate::stats::Stats;
use crate::store::Tier;

/// An authorization URL to send the user to, with the `state` that must come back.
#[derive(Clone)]
pub struct AuthorizationRequest {
    /// The URL to open in the user's browser.
    pub url: String,
    /// The `state` sent; the callback must carry it back. Keep it in the user's
    /// server-side session (or a cookie bound to it) and pass it to
    /// [`AuthorizationCodeFlow::finish`]: it is what binds the sign-in to the browser
    /// that started it.
    pub state: String,
    /// This sign-in as an opaque string, sealed (XChaCha20-Poly1305) under the flow's
    /// pending key, for servers whose callback may land in another process than the one
    /// that made the URL: keep it in the user's server-side session and pass it to
    /// [`AuthorizationCodeFlow::finish_pending`]. It holds the PKCE verifier, encrypted:
    /// still, never send it to the browser or put it in a cookie.
    pub pending: Secret,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How many sign-ins a flow keeps pending in memory at most. Beyond that the oldest is
/// dropped — never silently: each eviction raises the `signin.evicted` warning and is
/// counted in [`Stats::signins_evicted`]. Sealed sign-ins
/// ([`AuthorizationCodeFlow::finish_pending`]) need no room here and are never evicted.
pub const MAX_PENDING: usize = 1024;
/// How long a sign-in stays pending by default.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(600);
/// How far in the future a sealed sign-in's start may lie (clocks of workers differ a
/// little) before it is refused.
pub const PENDING_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The length of a pending key ([`AuthorizationCodeFlow::pending_key`]), in bytes.
pub const PENDING_KEY_LEN: usize = 32;
/// How many used `state`s a flow remembers, to refuse a second use of an exported one.
const REMEMBERED_USED: usize = 4096;
/// The format of a sealed sign-in: its first byte. (1 was plain JSON, now refused.)
const SEALED_VERSION: u8 = 2;
/// XChaCha20-Poly1305's nonce and tag lengths.
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The longest sealed sign-in looked at (one this library makes is ~300 characters).
const MAX_SEALED_LEN: usize = 4096;
/// What `finish` says when it is given no binding.
const NO_BINDING: &str = "finish needs the sign-in's state, kept in the user's session when its \
     authorization URL was made (AuthorizationRequest::state); a server whose callback may land \
     in another process keeps the sealed pending sign-in instead and uses finish_pending";

/// One sign-in in progress.
struct Pending {
    pkce: Option<Pkce>,
    started: SystemTime,
}

/// The sign-ins of one flow: pending ones by the digest of their `state` (never the
/// state itself: a lookup compares digests an attacker cannot aim at), and the digests
/// of those already used.
#[derive(Default)]
struct Sessions {
    pending: HashMap<[u8; 32], Pending>,
    used: VecDeque<[u8; 32]>,
}

impl Sessions {
    /// Adds a sign-in; returns the age of the one dropped to make room, if any.
    fn insert(&mut self, key: [u8; 32], pending: Pending, lifetime: Duration) -> Option<Duration> {
        let now = SystemTime::now();
        self.pending
            .retain(|_, p| !expired(p.started, now, lifetime));
        let mut evicted = None;
        if self.pending.len() >= MAX_PENDING {
            if let Some((oldest, started)) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, p)| (*k, p.started))
            {
                self.pending.remove(&oldest);
                evicted = Some(now.duration_since(started).unwrap_or_default());
            }
        }
        self.pending.insert(key, pending);
        evicted
    }

    /// Marks `key` used; false if it was used before.
    fn use_once(&mut self, key: [u8; 32]) -> bool {
        if self.used.contains(&key) {
            return false;
        }
        if self.used.len() >= REMEMBERED_USED {
            self.used.pop_front();
        }
        self.used.push_back(key);
        true
    }
}

fn expired(started: SystemTime, now: SystemTime, lifetime: Duration) -> bool {
    now.duration_since(started).is_ok_and(|age| age > lifetime)
}

fn digest(state: &str) -> [u8; 32] {
    Sha256::digest(state.as_bytes()).into()
}

/// Compares two `state`s in constant time (for strings of one length).
fn same_state(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after it).
fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether `verifier` is one RFC 7636 allows: 43 to 128 of `[A-Za-z0-9-._~]`.
fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// What a sealed sign-in holds (encrypted and authenticated as a whole).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exported {
    state: String,
    verifier: Option<String>,
    /// When it started, in milliseconds since the Unix epoch.
    started_ms: u64,
}

impl Drop for Exported {
    fn drop(&mut self) {
        self.state.zeroize();
        if let Some(v) = &mut self.verifier {
            v.zeroize();
        }
    }
}

/// The key a flow seals its exported sign-ins with (zeroized on drop by the cipher),
/// and what each sealed sign-in is bound to.
struct Sealer {
    cipher: XChaCha20Poly1305,
    /// The associated data: the format and the flow's tag (authorize URL, client id,
    /// redirect URI), so that a sign-in sealed for one flow never opens in another.
    aad: Vec<u8>,
    /// Whether the application supplied the key (else it is this flow object's own).
    shared: bool,
}

impl Sealer {
    fn new(key: &[u8], tag: &str, shared: bool) -> Result<Sealer> {
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| {
            Error::config(format!(
                "a pending key is {PENDING_KEY_LEN} random bytes, not {} (decode a hex or base64 key first)",
                key.len()
            ))
        })?;
        let mut aad = b"authcore pending sign-in\0".to_vec();
        aad.push(SEALED_VERSION);
        aad.extend_from_slice(tag.as_bytes());
        Ok(Sealer {
            cipher,
            aad,
            shared,
        })
    }

    /// A sealer under a fresh random key, for this flow object alone.
    fn random(tag: &str) -> Result<Sealer> {
        let mut key = Zeroizing::new([0u8; PENDING_KEY_LEN]);
        random::fill(&mut *key);
        Sealer::new(&*key, tag, false)
    }

    fn seal(&self, exported: &Exported) -> Result<Secret> {
        let json = Zeroizing::new(
            serde_json::to_vec(exported)
                .map_err(|_| Error::config("the pending sign-in could not be encoded"))?,
        );
        self.seal_bytes(&json)
    }

    /// Seals `json` as it is (the fuzz target seals what `seal` never would).
    fn seal_bytes(&self, json: &[u8]) -> Result<Secret> {
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: json,
                    aad: &self.aad,
                },
            )
            .map_err(|_| Error::config("the pending sign-in could not be sealed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(Secret::new(URL_SAFE_NO_PAD.encode(&out)))
    }

    /// The sign-in `pending` seals, if it is authentic and well formed. The error names
    /// no part of `pending`.
    fn open(&self, pending: &str) -> Result<Exported> {
        let refused = || {
            Error::config(if self.shared {
                "the pending sign-in is not one this flow sealed: altered or truncated, made by a \
                 flow with another authorize URL, client id or redirect URI, or sealed under \
                 another pending key"
            } else {
                "the pending sign-in is not one this flow sealed: altered or truncated, or made by \
                 another flow object (without a shared pending key, a pending sign-in finishes \
                 only in the flow object that made it: give every worker the same pending_key)"
            })
        };
        let pending = pending.trim();
        if pending.len() > MAX_SEALED_LEN {
            return Err(refused());
        }
        let bytes = URL_SAFE_NO_PAD.decode(pending).map_err(|_| refused())?;
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(refused());
        };
        if version != SEALED_VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return Err(refused());
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| refused())?;
        let json = Zeroizing::new(
            self.cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: sealed,
                        aad: &self.aad,
                    },
                )
                .map_err(|_| refused())?,
        );
        let exported: Exported = serde_json::from_slice(&json).map_err(|_| refused())?;
        let well_formed =
            !exported.state.is_empty() && exported.verifier.as_deref().is_none_or(valid_verifier);
        if !well_formed {
            return Err(refused());
        }
        Ok(exported)
    }
}

/// A running authorization code flow: make a URL for each sign-in, then finish each
/// from its callback with the binding kept in the user's session. Made for web servers:
/// any number of sign-ins may be in progress at once (up to [`MAX_PENDING`] in memory,
/// each for [`PENDING_LIFETIME`] by default), and a callback is finished only with the
/// `state` (or the sealed `pending` sign-in) the same user's session kept when the URL
/// was made — so a callback link an attacker obtained for a sign-in of their own cannot
/// sign a victim in (login CSRF, RFC 6749 §10.12). A callback with an unknown, forged,
/// expired or already used `state`, or one that is not the session's own, fails with
/// [`StateMismatch`](crate::ErrorKind::StateMismatch) and disturbs no other sign-in. A
/// flow may be shared by every thread of a server.
pub struct AuthorizationCodeFlow {
    config: AuthorizationCode,
    http: Http,
    sessions: Mutex<Sessions>,
    lifetime: Duration,
    /// Names this flow's exported sign-ins.
    tag: String,
    /// Seals and opens its exported sign-ins.
    sealer: Sealer,
}

impl fmt::Debug for AuthorizationCodeFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationCodeFlow")
            .field("config", &self.config)
            .field("shared_pending_key", &self.sealer.shared)
            .finish_non_exhaustive()
    }
}

impl AuthorizationCodeFlow {
    /// A flow with these client options (used for the code exchange and the client).
    /// Its exported sign-ins are sealed under a random key of its own until
    /// [`pending_key`](Self::pending_key) gives one to share.
    pub fn new(config: AuthorizationCode, options: Options) -> Result<Self> {
        let http = Http::new(Arc::new(options))?;
        config.check_certificate(http.options())?;
        for url in config.endpoints()? {
            http.check_url(url)?;
        }
        let tag = config.flow_tag();
        let sealer = Sealer::random(&tag)?;
        Ok(AuthorizationCodeFlow {
            config,
            http,
            sessions: Mutex::new(Sessions::default()),
            lifetime: PENDING_LIFETIME,
            tag,
            sealer,
        })
    }

    /// How long a sign-in may take, from its URL to its callback (default
    /// [`PENDING_LIFETIME`], 10 minutes; at most a day: a longer one is cut to a day).
    /// Zero is a [`Config`](crate::ErrorKind::Config) error: no sign-in could finish.
    pub fn pending_lifetime(mut self, lifetime: Duration) -> Result<Self> {
        self.set_pending_lifetime(lifetime)?;
        Ok(self)
    }

    /// [`pending_lifetime`](Self::pending_lifetime) on a flow in place (before it is
    /// shared).
    pub fn set_pending_lifetime(&mut self, lifetime: Duration) -> Result<()> {
        if lifetime.is_zero() {
            return Err(Error::config(
                "a pending lifetime of zero lets no sign-in finish; give how long a sign-in \
                 may take (default 600 s, at most a day)",
            ));
        }
        self.lifetime = lifetime.min(Duration::from_secs(86_400));
        Ok(())
    }

    /// Seals exported sign-ins under `key` ([`PENDING_KEY_LEN`] = 32 random bytes, e.g.
    /// from a secrets manager), so that a sign-in started by one worker process finishes
    /// in any other flow with the same configuration and key
    /// ([`finish_pending`](Self::finish_pending)). Without it, a flow seals under a
    /// random key of its own and its pending sign-ins finish only in that flow object.
    /// A key of another length is a [`Config`](crate::ErrorKind::Config) error. The key
    /// is never printed and is zeroized when the flow is dropped; sign-ins sealed
    /// under a previous key no longer open.
    pub fn pending_key(mut self, key: &[u8]) -> Result<Self> {
        self.set_pending_key(key)?;
        Ok(self)
    }

    /// [`pending_key`](Self::pending_key) on a flow in place (before it is shared).
    pub fn set_pending_key(&mut self, key: &[u8]) -> Result<()> {
        self.sealer = Sealer::new(key, &self.tag, true)?;
        Ok(())
    }

    /// What this flow did so far: its code exchanges (token requests, each also counted
    /// in the client it made) and the pending sign-ins it evicted
    /// ([`Stats::signins_evicted`]).
    pub fn stats(&self) -> Stats {
        self.http.counters().snapshot()
    }

    /// A fresh authorization URL for one sign-in, with a new `state` (from the OS random
    /// source) and PKCE challenge. Other sign-ins in progress are not affected, unless
    /// [`MAX_PENDING`] are already in memory: then the oldest is dropped, with the
    /// `signin.evicted` warning, and counted in [`stats`](Self::stats).
    pub fn authorization_url(&self) -> Result<AuthorizationRequest> {
        let state = random::url_safe_string(24);
        let pkce = self.config.new_pkce();
        let url = self.config.authorization_url(&state, pkce.as_ref())?;
        let started = SystemTime::now();
        let exported = Exported {
            state: state.clone(),
            verifier: pkce
                .as_ref()
                .map(|p| p.verifier().expose_secret().to_owned()),
            started_ms: unix_millis(started),
        };
        let pending = self.sealer.seal(&exported)?;
        let evicted =
            self.sessions
                .lock()
                .insert(digest(&state), Pending { pkce, started }, self.lifetime);
        if let Some(age) = evicted {
            self.http.counters().signin_evicted();
            let age_s = secs(age);
            event!(warn, "signin.evicted", max_pending = MAX_PENDING, age_s = age_s;
                "{MAX_PENDING} sign-ins were pending: the oldest ({age_s} s old) was dropped; \
                 servers facing untrusted traffic should finish sealed sign-ins (finish_pending)");
        }
        Ok(AuthorizationRequest {
            url,
            state,
            pending,
        })
    }

    /// Completes a sign-in from the URL the user was redirected to — the full URL or
    /// the path with its query string, as web frameworks hand it over — and `state`,
    /// the [`AuthorizationRequest::state`] kept in **this user's** session when the URL
    /// was made. The callback's `state` must be that one (compared in constant time
    /// before anything else), and a sign-in this flow started and has not finished.
    /// Then surfaces an `error=` callback, exchanges the code (never retried: codes are
    /// single use), hands the token over (to the store, if one is configured, and the
    /// refresh-token hook) and returns a client that renews by refresh token.
    ///
    /// An empty `state` is a [`Config`](crate::ErrorKind::Config) error; a callback
    /// whose `state` is not the session's, unknown, expired or used is
    /// [`StateMismatch`](crate::ErrorKind::StateMismatch). No token request is made
    /// for either.
    pub fn finish(&self, callback_url: &str, state: &str) -> Result<Client> {
        if state.is_empty() {
            return Err(Error::config(NO_BINDING));
        }
        let callback = Callback::parse(callback_url)?;
        if !same_state(&callback.state, state) {
            return Err(Error::StateMismatch);
        }
        let key = digest(state);
        let pending = {
            let mut sessions = self.sessions.lock();
            let pending = sessions.pending.remove(&key).ok_or(Error::StateMismatch)?;
            sessions.use_once(key);
            pending
        };
        if expired(pending.started, SystemTime::now(), self.lifetime) {
            return Err(Error::StateMismatch);
        }
        self.complete(callback, pending.pkce.as_ref())
    }

    /// Seals `json` as this flow's exported sign-in, whatever it holds: for the fuzz
    /// target, which checks what `finish_pending` does with fields no flow would seal.
    #[cfg(test)]
    pub(crate) fn seal_for_fuzzing(&self, json: &[u8]) -> Result<Secret> {
        self.sealer.seal_bytes(json)
    }

    /// [`finish`](Self::finish) for a sign-in started in another process (or before a
    /// restart): `pending` is the sealed [`AuthorizationRequest::pending`] string kept
    /// in the user's server-side session. It opens only under this flow's pending key
    /// and configuration; an altered, truncated, expired, future-dated (more than
    /// [`PENDING_CLOCK_SKEW`] ahead) or foreign one is refused before any token request
    /// ([`Config`](crate::ErrorKind::Config), or
    /// [`StateMismatch`](crate::ErrorKind::StateMismatch) when expired). The callback's
    /// `state` must be that sign-in's; a sign-in this process has seen finished cannot
    /// be finished again. Needs no memory in the flow: the way to serve untrusted
    /// traffic.
    pub fn finish_pending(&self, callback_url: &str, pending: &str) -> Result<Client> {
        let exported = self.sealer.open(pending)?;
        let callback = Callback::parse(callback_url)?;
        if !same_state(&callback.state, &exported.state) {
            return Err(Error::StateMismatch);
        }
        let pkce =
            match (&exported.verifier, self.config.uses_pkce()) {
                (Some(verifier), true) => Some(Pkce::from_verifier(verifier.as_str())),
                (None, false) => None,
                (None, true) => {
                    return Err(Error::config(
                        "the pending sign-in carries no PKCE verifier, and this flow uses PKCE",
                    ))
                }
                (Some(_), false) => return Err(Error::config(
                    "the pending sign-in was made by a flow with PKCE on, and this one has it off",
                )),
            };
        self.check_started(exported.started_ms, SystemTime::now())?;
        let key = digest(&exported.state);
        {
            let mut sessions = self.sessions.lock();
            sessions.pending.remove(&key);
            if !sessions.use_once(key) {
                return Err(Error::StateMismatch);
            }
        }
        self.complete(callback, pkce.as_ref())
    }

    /// Refuses a sealed sign-in that started more than [`PENDING_CLOCK_SKEW`] in the
    /// future, or longer ago than the lifetime. Saturating arithmetic only.
    fn check_started(&self, started_ms: u64, now: SystemTime) -> Result<()> {
        let now_ms = unix_millis(now);
        let skew_ms = u64::try_from(PENDING_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
        if started_ms > now_ms.saturating_add(skew_ms) {
            return Err(Error::config(format!(
                "the pending sign-in starts more than {} s in the future: are the clocks of the \
                 servers that share the pending key apart?",
                PENDING_CLOCK_SKEW.as_secs()
            )));
        }
        if Duration::from_millis(now_ms.saturating_sub(started_ms)) > self.lifetime {
            return Err(Error::StateMismatch);
        }
        Ok(())
    }

    /// The part after `state` is known good: `iss`, `error=`, then the code exchange.
    fn complete(&self, callback: Callback, pkce: Option<&Pkce>) -> Result<Client> {
        let code = callback.into_code(&self.config)?;
        let deadline = Deadline::after(self.http.options().timeout);
        let before = self.http.counters().snapshot();
        let token = self
            .config
            .exchange(&self.http, Secret::new(code), pkce, deadline)?;
        let grant = self.config.refresh_grant(token.clone());
        let counted = self.http.counters().snapshot().since(&before);
        client_after(&self.http, grant, &token, &counted, deadline)
    }
}

/// What an authorization callback carries.
pub(crate) struct Callback {
    state: String,
    code: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    error_uri: Option<String>,
}

impl Callback {
    /// From a full URL, or a path (or bare query) with its query string.
    pub(crate) fn parse(callback_url: &str) -> Result<Callback> {
        let url = match Url::parse(callback_url) {
            Ok(url) => url,
            Err(url::ParseError::RelativeUrlWithoutBase) => Url::parse("http://callback.invalid/")
                .and_then(|base| base.join(callback_url))
                .map_err(|e| Error::config(format!("invalid callback URL: {e}")))?,
            Err(e) => return Err(Error::config(format!("invalid callback URL: {e}"))),
        };
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        Ok(Callback {
            state: param("state").ok_or(Error::StateMismatch)?,
            code: param("code"),
            iss: param("iss"),
            error: param("error"),
            error_description: param("error_description"),
            error_uri: param("error_uri"),
        })
    }
}

impl Callback {
    /// The code, once `iss` names the configured issuer (RFC 9207) and the callback is
    /// not an `error=` one (that error is returned, its texts scrubbed).
    pub(crate) fn into_code(self, config: &AuthorizationCode) -> Result<String> {
        config.check_iss(self.iss.as_deref())?;
        if let Some(error) = self.error {
            return Err(Error::OAuth(OAuthError {
                error: crate::error::scrub(&error),
                description: self.error_description.map(|d| crate::error::scrub(&d)),
                uri: self.error_uri.map(|u| crate::error::scrub(&u)),
                status: None,
            }));
        }
        self.code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::invalid(0, "authorization callback has no code", b""))
    }
}

/// The client a flow hands out: the first token handed over (to the store, if one is
/// configured, and the refresh-token hook), then a client that renews by refresh token.
pub(crate) fn client_after(
    http: &Http,
    grant: RefreshToken,
    token: &crate::token::Token,
    counted: &Stats,
    deadline: Deadline,
) -> Result<Client> {
    let mut options = http.shared_options();
    // Whose session this is: the name the caller gave, else the ID token's `sub`. A
    // session with neither is not shared (never filed under a key another user shares).
    let user = options.store_key.clone().or_else(|| token.subject());
    if options.store.is_some() && user.is_none() {
        event!(warn, "store.no_user";
            "the sign-in's token has no ID token (ask for the openid scope) and no store key was set: \
             the session is kept in this client only, not in the shared store");
        let mut alone = (*options).clone();
        alone.store = None;
        options = Arc::new(alone);
    }
    let key = crate::grant::sealed::Fetch::store_key(&grant, user.as_deref());
    // A code exchange adopts nothing from the store: this tier's counters stay unused.
    let unsaved =
        Tier::new(Arc::clone(&options), key, Arc::default()).hand_over_new(token, deadline);
    let client = Client::new(grant, (*options).clone())?;
    client.absorb(counted);
    if let Some(record) = unsaved {
        client.keep_unsaved(record);
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// A flow whose token endpoint counts every request (and should see none here).
    fn flow(server: &mockito::Server, pkce: bool) -> AuthorizationCodeFlow {
        let config = AuthorizationCode::new(
            format!("{}/authorize", server.url()),
            format!("{}/token", server.url()),
            "web-app",
            "secret-9f8e7d",
            "https://app.example/callback",
        )
        .pkce(pkce);
        AuthorizationCodeFlow::new(config, Options::default().timeout(Duration::from_secs(5)))
            .unwrap()
    }

    fn callback(state: &str) -> String {
        format!("https://app.example/callback?code=code-1&state={state}")
    }

    const VERIFIER: &str = "abcdefghijklmnopqrstuvwxyz0123456789-._~ABCDEFG";

    /// A lifetime of zero would let no sign-in finish: refused, the lifetime left as
    /// it was; a longer one than a day is cut to a day.
    #[test]
    fn a_pending_lifetime_of_zero_is_refused() {
        let server = mockito::Server::new();
        let mut f = flow(&server, true);
        let e = f.set_pending_lifetime(Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("zero"), "{e}");
        assert_eq!(f.lifetime, PENDING_LIFETIME);
        assert_eq!(
            flow(&server, true)
                .pending_lifetime(Duration::ZERO)
                .unwrap_err()
                .kind(),
            ErrorKind::Config
        );
        f.set_pending_lifetime(Duration::from_millis(1)).unwrap();
        assert_eq!(f.lifetime, Duration::from_millis(1));
        f.set_pending_lifetime(Duration::from_secs(7 * 86_400))
            .unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(86_400));
    }

    /// Seals what an application holding the key could seal: each field as given.
    fn sealed(
        flow: &AuthorizationCodeFlow,
        state: &str,
        verifier: Option<&str>,
        started_ms: u64,
    ) -> String {
        let exported = Exported {
            state: state.to_owned(),
            verifier: verifier.map(str::to_owned),
            started_ms,
        };
        flow.sealer
            .seal(&exported)
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    #[test]
    fn an_authentic_sign_in_with_bad_fields_is_refused_before_any_token_request() {
        let mut server = mockito::Server::new();
        let token = server.mock("POST", "/token").expect(0).create();
        let pkce = flow(&server, true);
        let plain = flow(&server, false);
        let now = unix_millis(SystemTime::now());
        let cases: Vec<(&AuthorizationCodeFlow, String, ErrorKind)> = vec![
            // A start past i64 (and u64::MAX): refused as future-dated, no panic.
            (
                &pkce,
                sealed(&pkce, "s1", Some(VERIFIER), u64::MAX),
                ErrorKind::Config,
            ),
            (
                &pkce,
                sealed(&pkce, "s1", Some(VERIFIER), i64::MAX as u64 + 1),
                ErrorKind::Config,
            ),
            // Beyond the clock skew allowance.
            (
                &pkce,
                sealed(&pkce, "s1", Some(VERIFIER), now + 61_000),
                ErrorKind::Config,
            ),
            // Started before the epoch is impossible; at it, long expired.
            (
                &pkce,
                sealed(&pkce, "s1", Some(VERIFIER), 0),
                ErrorKind::StateMismatch,
            ),
            (
                &pkce,
                sealed(&pkce, "s1", Some(VERIFIER), now - 601_000),
                ErrorKind::StateMismatch,
            ),
            // PKCE on but no verifier (it would be skipped silently).
            (&pkce, sealed(&pkce, "s1", None, now), ErrorKind::Config),
            // PKCE off but a verifier: made by another configuration.
            (
                &plain,
                sealed(&plain, "s1", Some(VERIFIER), now),
                ErrorKind::Config,
            ),
            // A verifier RFC 7636 does not allow, an empty state.
            (
                &pkce,
                sealed(&pkce, "s1", Some("short"), now),
                ErrorKind::Config,
            ),
            (
                &pkce,
                sealed(&pkce, "", Some(VERIFIER), now),
                ErrorKind::Config,
            ),
        ];
        for (i, (flow, pending, kind)) in cases.iter().enumerate() {
            let e = flow.finish_pending(&callback("s1"), pending).unwrap_err();
            assert_eq!(e.kind(), *kind, "case {i}: {e}");
            assert!(!e.to_string().contains(pending.as_str()));
        }
        // Within the skew allowance, and fresh: accepted as far as the exchange, which
        // this endpoint (expecting none) refuses; the cases above never got there.
        token.assert();
        let early = sealed(&pkce, "s2", Some(VERIFIER), now + 30_000);
        assert!(pkce.check_started(now + 30_000, SystemTime::now()).is_ok());
        let e = pkce.finish_pending(&callback("s2"), &early).unwrap_err();
        assert_ne!(e.kind(), ErrorKind::Config, "{e}");
        assert_ne!(e.kind(), ErrorKind::StateMismatch, "{e}");
    }

    #[test]
    fn a_wrong_pending_key_is_refused_and_never_printed() {
        let server = mockito::Server::new();
        let key = [7u8; PENDING_KEY_LEN];
        for bad in [&key[..31], &[0u8; 33][..], &[][..], &[1u8; 64][..]] {
            let e = flow(&server, true).pending_key(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
        }
        let keyed = flow(&server, true).pending_key(&key).unwrap();
        let printed = format!("{keyed:?}");
        assert!(printed.contains("shared_pending_key: true"), "{printed}");
        assert!(!printed.contains("7, 7, 7"), "{printed}");
    }

    #[test]
    fn the_bound_evicts_the_oldest_and_counts_it() {
        let server = mockito::Server::new();
        let flow = flow(&server, true);
        for _ in 0..MAX_PENDING {
            flow.authorization_url().unwrap();
        }
        assert_eq!(flow.stats().signins_evicted, 0);
        flow.authorization_url().unwrap();
        flow.authorization_url().unwrap();
        assert_eq!(flow.stats().signins_evicted, 2);
        assert_eq!(flow.sessions.lock().pending.len(), MAX_PENDING);
    }
}

//! [`AuthorizationCodeFlow`]: a user signs in in a browser, and the flow hands out a
//! [`Client`] that goes on by refresh token. It lives beside the client because it
//! makes one; the grant it uses only builds requests.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;
use zeroize::{Zeroize, Zeroizing};

use crate::client::Client;
use crate::clock::Deadline;
use crate::error::{Error, OAuthError, Result};
use crate::events::event;
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
    /// The `state` sent; the callback must carry it back.
    pub state: String,
    /// This sign-in as an opaque string, for servers whose callback may land in another
    /// process than the one that made the URL: keep it in the user's server-side
    /// session and pass it to [`AuthorizationCodeFlow::finish_pending`]. It holds the
    /// PKCE verifier: never send it to the browser or put it in a cookie.
    pub pending: Secret,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How many sign-ins a flow keeps pending at most (the oldest is dropped beyond that).
pub const MAX_PENDING: usize = 1024;
/// How long a sign-in stays pending by default.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(600);
/// How many used `state`s a flow remembers, to refuse a second use of an exported one.
const REMEMBERED_USED: usize = 4096;

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
    fn insert(&mut self, key: [u8; 32], pending: Pending, lifetime: Duration) {
        let now = SystemTime::now();
        self.pending
            .retain(|_, p| !expired(p.started, now, lifetime));
        if self.pending.len() >= MAX_PENDING {
            if let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| *k)
            {
                self.pending.remove(&oldest);
            }
        }
        self.pending.insert(key, pending);
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

/// The exported form of a pending sign-in.
#[derive(Serialize, Deserialize)]
struct Exported {
    /// Format version.
    v: u8,
    /// Which flow made it (a digest of its authorize URL, client id and redirect URI).
    flow: String,
    state: String,
    verifier: Option<String>,
    /// When it started, in seconds since the Unix epoch.
    started: u64,
}

impl Drop for Exported {
    fn drop(&mut self) {
        self.state.zeroize();
        if let Some(v) = &mut self.verifier {
            v.zeroize();
        }
    }
}

/// A running authorization code flow: make a URL for each sign-in, then finish each
/// from its callback. Made for web servers: any number of sign-ins may be in progress at
/// once (up to [`MAX_PENDING`], each for [`PENDING_LIFETIME`] by default), the callback
/// names its own by `state`, and a callback with an unknown, forged, expired or already
/// used `state` fails with [`StateMismatch`](crate::ErrorKind::StateMismatch) and
/// disturbs no other sign-in. A flow may be shared by every thread of a server.
pub struct AuthorizationCodeFlow {
    config: AuthorizationCode,
    http: Http,
    sessions: Mutex<Sessions>,
    lifetime: Duration,
    /// Names this flow's exported sign-ins.
    tag: String,
}

impl fmt::Debug for AuthorizationCodeFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationCodeFlow")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuthorizationCodeFlow {
    /// A flow with these client options (used for the code exchange and the client).
    pub fn new(config: AuthorizationCode, options: Options) -> Result<Self> {
        let http = Http::new(Arc::new(options))?;
        for url in config.endpoints()? {
            http.check_url(url)?;
        }
        let tag = config.flow_tag();
        Ok(AuthorizationCodeFlow {
            config,
            http,
            sessions: Mutex::new(Sessions::default()),
            lifetime: PENDING_LIFETIME,
            tag,
        })
    }

    /// How long a sign-in may take, from its URL to its callback (default
    /// [`PENDING_LIFETIME`], 10 minutes; at most a day).
    pub fn pending_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.min(Duration::from_secs(86_400));
        self
    }

    /// A fresh authorization URL for one sign-in, with a new `state` (from the OS random
    /// source) and PKCE challenge. Other sign-ins in progress are not affected.
    pub fn authorization_url(&self) -> Result<AuthorizationRequest> {
        let state = random::url_safe_string(24);
        let pkce = self.config.new_pkce();
        let url = self.config.authorization_url(&state, pkce.as_ref())?;
        let started = SystemTime::now();
        let exported = Exported {
            v: 1,
            flow: self.tag.clone(),
            state: state.clone(),
            verifier: pkce
                .as_ref()
                .map(|p| p.verifier().expose_secret().to_owned()),
            started: started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let json = Zeroizing::new(
            serde_json::to_vec(&exported)
                .map_err(|_| Error::config("the pending sign-in could not be encoded"))?,
        );
        let pending = Secret::new(URL_SAFE_NO_PAD.encode(&*json));
        self.sessions
            .lock()
            .insert(digest(&state), Pending { pkce, started }, self.lifetime);
        Ok(AuthorizationRequest {
            url,
            state,
            pending,
        })
    }

    /// Completes the sign-in the callback names by its `state`, from the URL the user was
    /// redirected to — the full URL or the path with its query string, as web frameworks
    /// hand it over. Checks `state` (each is used once), surfaces an `error=` callback,
    /// exchanges the code (never retried: codes are single use), hands the token over
    /// (to the store, if one is configured, and the refresh-token hook) and returns a
    /// client that renews by refresh token.
    pub fn finish(&self, callback_url: &str) -> Result<Client> {
        let callback = Callback::parse(callback_url)?;
        let key = digest(&callback.state);
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

    /// [`finish`](Self::finish) for a sign-in started in another process (or before a
    /// restart): `pending` is the [`AuthorizationRequest::pending`] string kept in the
    /// user's server-side session. The callback's `state` must be that sign-in's; a
    /// sign-in this process has seen finished cannot be finished again.
    pub fn finish_pending(&self, callback_url: &str, pending: &str) -> Result<Client> {
        let callback = Callback::parse(callback_url)?;
        let exported = decode_pending(pending)?;
        if exported.v != 1 || exported.flow != self.tag {
            return Err(Error::config(
                "the pending sign-in was made by another flow (authorize URL, client id or redirect URI differ)",
            ));
        }
        if Secret::new(callback.state.clone()) != Secret::new(exported.state.clone()) {
            return Err(Error::StateMismatch);
        }
        let key = digest(&exported.state);
        {
            let mut sessions = self.sessions.lock();
            sessions.pending.remove(&key);
            if !sessions.use_once(key) {
                return Err(Error::StateMismatch);
            }
        }
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(exported.started);
        if expired(started, SystemTime::now(), self.lifetime) {
            return Err(Error::StateMismatch);
        }
        let pkce = exported.verifier.as_deref().map(Pkce::from_verifier);
        self.complete(callback, pkce.as_ref())
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

fn decode_pending(pending: &str) -> Result<Exported> {
    let bad = || Error::config("the pending sign-in is not one this library exported");
    let json = Zeroizing::new(URL_SAFE_NO_PAD.decode(pending.trim()).map_err(|_| bad())?);
    serde_json::from_slice(&json).map_err(|_| bad())
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

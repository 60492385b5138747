//! [`AuthorizationCodeFlow`]: a user signs in in a browser, and the flow hands out a
//! [`Client`] that goes on by refresh token. It lives beside the client because it
//! makes one; the grant it uses only builds requests.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use url::Url;

use crate::client::Client;
use crate::error::{Error, OAuthError, Result};
use crate::grant::{AuthorizationCode, Pkce, RefreshToken};
use crate::http::{Deadline, Http};
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
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

struct Pending {
    state: Secret,
    pkce: Option<Pkce>,
}

/// A running authorization code flow: make the URL, then finish from the callback.
///
/// Each [`authorization_url`](Self::authorization_url) replaces the previous pending
/// request; each `state` is accepted once.
pub struct AuthorizationCodeFlow {
    config: AuthorizationCode,
    http: Http,
    pending: Mutex<Option<Pending>>,
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
        Ok(AuthorizationCodeFlow {
            config,
            http,
            pending: Mutex::new(None),
        })
    }

    /// A fresh authorization URL with a new `state` (from the OS random source) and
    /// PKCE challenge.
    pub fn authorization_url(&self) -> Result<AuthorizationRequest> {
        let state = random::url_safe_string(24);
        let pkce = self.config.new_pkce();
        let url = self.config.authorization_url(&state, pkce.as_ref())?;
        *self.pending.lock() = Some(Pending {
            state: Secret::new(state.clone()),
            pkce,
        });
        Ok(AuthorizationRequest { url, state })
    }

    /// Completes the flow from the URL the user was redirected to: checks `state` (in
    /// constant time, once), surfaces an `error=` callback, exchanges the code (never
    /// retried: codes are single use), hands the token over (to the store, if one is
    /// configured, and the refresh-token hook) and returns a client that renews by
    /// refresh token.
    pub fn finish(&self, callback_url: &str) -> Result<Client> {
        let url = Url::parse(callback_url)
            .map_err(|e| Error::config(format!("invalid callback URL: {e}")))?;
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let pending = self.pending.lock().take().ok_or(Error::StateMismatch)?;
        let state = Secret::new(param("state").unwrap_or_default());
        if state != pending.state {
            return Err(Error::StateMismatch);
        }
        self.config.check_iss(param("iss").as_deref())?;
        if let Some(error) = param("error") {
            return Err(Error::OAuth(OAuthError {
                error: crate::error::scrub(&error),
                description: param("error_description").map(|d| crate::error::scrub(&d)),
                uri: param("error_uri"),
                status: None,
            }));
        }
        let code = param("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::invalid(0, "authorization callback has no code", b""))?;
        let deadline = Deadline::after(self.http.options().timeout);
        let before = self.http.counters().snapshot();
        let token = self.config.exchange(
            &self.http,
            Secret::new(code),
            pending.pkce.as_ref(),
            deadline,
        )?;
        let grant = self.config.refresh_grant(token.clone());
        let counted = self.http.counters().snapshot().since(&before);
        client_after(&self.http, grant, &token, &counted, deadline)
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
    let options = http.shared_options();
    let key = options
        .store
        .as_ref()
        .and_then(|_| crate::grant::sealed::Fetch::store_key(&grant));
    // A code exchange adopts nothing from the store: this tier's counters stay unused.
    Tier::new(Arc::clone(&options), key, Arc::default()).hand_over_new(token, deadline);
    let client = Client::new(grant, (*options).clone())?;
    client.absorb(counted);
    Ok(client)
}

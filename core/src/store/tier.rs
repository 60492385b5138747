//! [`Tier`]: the one path by which a new token is handed over — to the shared store (if
//! one is configured) under its lock, then to the refresh-token hook — below both the
//! client (renewals) and the code flow (the first exchange).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{StoreKey, StoredToken, TokenStore};
use crate::clock::Deadline;
use crate::error::{Error, ErrorKind, Result};
use crate::events::event;
use crate::options::Options;
use crate::secret::Secret;
use crate::stats::Counters;
use crate::token::Token;

/// How a grant may renew while its shared store cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutStore {
    /// Not at all: it would use a refresh token another process may rotate meanwhile.
    Refuse,
    /// With its own credential (client secret, API key), never a shared refresh token.
    OwnCredential,
    /// With the refresh token it holds: the server was seen to keep refresh tokens.
    SameRefreshToken,
}

/// The store tier of one client: its store and key (if sharing), the refresh-token
/// hook, and whether the store is currently unusable (so that is said once).
pub(crate) struct Tier {
    shared: Option<(Arc<dyn TokenStore>, StoreKey)>,
    options: Arc<Options>,
    degraded: AtomicBool,
    counters: Arc<Counters>,
    /// Whose tokens these are, for the refresh-token hook.
    credential: Option<StoreKey>,
}

impl Tier {
    /// The tier for a credential: shared through `options`' store when `key` is some.
    pub(crate) fn new(
        options: Arc<Options>,
        key: Option<StoreKey>,
        counters: Arc<Counters>,
    ) -> Tier {
        let shared = options.store.clone().zip(key.clone());
        Tier {
            shared,
            options,
            degraded: AtomicBool::new(false),
            counters,
            credential: key,
        }
    }

    /// Renews: directly with `fetch` when there is no store; else under the store's
    /// lock, adopting a token another process renewed meanwhile, or fetching with the
    /// newest refresh token (the stored one, else `refresh_token`) and saving the result
    /// before the lock is released. A failed save is logged and the token still used
    /// (better than losing a rotated refresh token). When the store cannot be used
    /// (an [`ErrorKind::Store`] failure), a grant that can renew without it does so and
    /// this is logged once; any other grant fails with that error.
    pub(crate) fn renew(
        &self,
        refresh_token: Option<&Secret>,
        deadline: Deadline,
        without_store: WithoutStore,
        fetch: impl FnOnce(Option<&Secret>) -> Result<Token>,
    ) -> Result<Token> {
        let Some((store, key)) = &self.shared else {
            return fetch(refresh_token);
        };
        let locked = store.lock(key, deadline.instant()).and_then(|lock| {
            let stored = store.load(key)?;
            Ok((lock, stored))
        });
        let (_lock, stored) = match locked {
            Ok(locked) => {
                self.usable();
                locked
            }
            Err(e) if e.kind() == ErrorKind::Store => {
                return match without_store {
                    WithoutStore::Refuse => Err(e),
                    WithoutStore::OwnCredential => {
                        self.unusable(&e);
                        fetch(None)
                    }
                    WithoutStore::SameRefreshToken => {
                        self.unusable(&e);
                        fetch(refresh_token)
                    }
                };
            }
            Err(e) => return Err(e),
        };
        if let Some(token) = stored
            .as_ref()
            .map(|s| s.to_token().with_expiry_margin(self.options.expiry_margin))
        {
            if token.fresh_now() {
                self.counters.store_adoption();
                event!(debug, "store.adopted", store = store.name();
                    "adopted the token another process renewed ({})", store.name());
                return Ok(token);
            }
        }
        let newest = stored
            .and_then(|s| s.refresh_token)
            .or_else(|| refresh_token.cloned());
        let token = fetch(newest.as_ref())?;
        match store.save(key, &StoredToken::from_token(&token, newest.as_ref())) {
            Ok(()) => event!(debug, "store.saved", store = store.name();
                "saved the new token to the store ({})", store.name()),
            Err(e) => log_unsaved(&e),
        }
        Ok(token)
    }

    /// Hands over a token obtained outside a renewal (a code exchange): saved to the
    /// store under its lock (a failure is logged, the token still used), then announced.
    pub(crate) fn hand_over_new(&self, token: &Token, deadline: Deadline) {
        if let Some((store, key)) = &self.shared {
            let saved = store.lock(key, deadline.instant()).and_then(|lock| {
                let saved = store.save(key, &StoredToken::from_token(token, None));
                drop(lock);
                saved
            });
            if let Err(e) = saved {
                log_unsaved(&e);
            }
        }
        self.announce(token, None);
    }

    /// Removes the credential's token from the store (after a revocation), under its
    /// lock, and says what it held: the newest refresh token in particular.
    pub(crate) fn take(&self, deadline: Deadline) -> Result<Option<StoredToken>> {
        let Some((store, key)) = &self.shared else {
            return Ok(None);
        };
        let _lock = store.lock(key, deadline.instant())?;
        let stored = store.load(key)?;
        store.remove(key)?;
        Ok(stored)
    }

    /// Hands a new refresh token to the hook before any caller can use the access
    /// token that came with it. The hook runs inside a panic boundary: a hook that
    /// fails or panics is logged (error level, target `authcore`) and costs nothing
    /// else; the token is kept and used.
    pub(crate) fn announce(&self, token: &Token, previous: Option<&Secret>) {
        let (Some(hook), Some(rt)) = (&self.options.on_refresh_token, token.refresh_token()) else {
            return;
        };
        if previous == Some(rt) {
            return;
        }
        let rotation = crate::options::Rotation {
            refresh_token: rt,
            token,
            credential: self.credential.as_ref(),
        };
        match catch_unwind(AssertUnwindSafe(|| hook(&rotation))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => event!(error, "hook.failed";
                "the refresh-token hook failed: {}; the new refresh token is kept in memory and used",
                crate::error::scrub(&e.to_string())
            ),
            Err(_) => event!(error, "hook.failed";
                "the refresh-token hook panicked; the new refresh token is kept in memory and used"
            ),
        }
    }

    fn unusable(&self, e: &Error) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            event!(warn, "store.unusable";
                "{e}; renewing without it (tokens are not shared) until it is back"
            );
        }
    }

    fn usable(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            event!(info, "store.usable"; "the token store is usable again; tokens are shared");
        }
    }
}

fn log_unsaved(e: &Error) {
    event!(error, "store.save_failed";
        "could not save the new token to the store ({e}); it is kept and used in this process"
    );
}

//! Where tokens go as they are obtained, so that a rotated refresh token can be
//! persisted before the access token that came with it is used.

use parking_lot::Mutex;

use crate::secret::Secret;
use crate::token::Token;

/// A place that keeps the newest refresh token between runs.
///
/// `save` is called with every newly obtained token before it is published to callers;
/// it must not call back into the client. `load` supplies the refresh token a client
/// starts from, overriding the one it was configured with.
pub trait TokenStore: Send + Sync {
    /// The refresh token saved earlier, if any.
    fn load(&self) -> Option<Secret>;
    /// Saves a newly obtained token (its refresh token, if it carries one).
    fn save(&self, token: &Token);
}

/// The default store: keeps the newest refresh token in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    refresh_token: Mutex<Option<Secret>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TokenStore for MemoryStore {
    fn load(&self) -> Option<Secret> {
        self.refresh_token.lock().clone()
    }

    fn save(&self, token: &Token) {
        if let Some(rt) = token.refresh_token() {
            *self.refresh_token.lock() = Some(rt.clone());
        }
    }
}

//! The shared-store tier under the in-process cache: where one token (and one rotating
//! refresh token) is shared by every process that uses the same credential.
//!
//! The cached-token path never touches a store. When a renewal is due, the client takes
//! the store's lock for its [`StoreKey`], re-reads the store, adopts a token another
//! process renewed meanwhile (fresh by the same renew-ahead rule), or else renews with
//! the newest stored refresh token and saves the result — all before the lock is
//! released and before the new access token is used.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::token::Token;

mod file;
mod redis;
mod tier;

pub use self::redis::RedisStore;
pub use file::FileStore;
pub(crate) use tier::{Tier, WithoutStore};

/// Identifies one credential in a store: grant, token endpoint (or base URL), client
/// id and scopes. Never a secret (an API key enters only as a short hash).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoreKey(String);

impl StoreKey {
    /// A key from its parts.
    pub(crate) fn new(grant: &str, endpoint: &str, client_id: &str, scopes: &[String]) -> Self {
        let mut scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        StoreKey(format!(
            "{grant} {endpoint} client={client_id} scope={}",
            scopes.join(" ")
        ))
    }

    /// A key of your own, for credentials authcore does not describe (never put a
    /// secret in it).
    pub fn custom(name: impl Into<String>) -> Self {
        StoreKey(format!("custom {}", name.into()))
    }

    /// A short, stable, non-reversible stand-in for a secret that identifies a
    /// credential (an API key), for use inside a key.
    pub(crate) fn secret_tag(secret: &Secret) -> String {
        let digest = Sha256::digest(secret.expose_secret().as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key as text, e.g. `client_credentials https://… client=… scope=…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A file-name-safe digest of the key (64 hex characters).
    pub fn digest(&self) -> String {
        Sha256::digest(self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreKey").field(&self.0).finish()
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token as a store keeps it: expiry as wall-clock time, so that another process (or
/// another host) can judge it.
#[derive(Clone)]
pub struct StoredToken {
    /// The access token.
    pub access_token: Secret,
    /// Its type (`Bearer`, …).
    pub token_type: String,
    /// The newest refresh token, if the grant has one.
    pub refresh_token: Option<Secret>,
    /// The granted scope, if the server said.
    pub scope: Option<String>,
    /// When the token request was sent, on the wall clock.
    pub issued_at: SystemTime,
    /// The lifetime granted, if known.
    pub lifetime: Option<Duration>,
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("refresh_token", &self.refresh_token)
            .field("scope", &self.scope)
            .field("issued_at", &self.issued_at)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl StoredToken {
    /// What a store keeps of `token`; `refresh_token` is the newest one known (a
    /// response without one keeps the previous).
    pub fn from_token(token: &Token, refresh_token: Option<&Secret>) -> Self {
        let age = Instant::now().saturating_duration_since(token.issued_at());
        StoredToken {
            access_token: token.access_token().clone(),
            token_type: token.token_type().to_owned(),
            refresh_token: token.refresh_token().or(refresh_token).cloned(),
            scope: token.scope().map(str::to_owned),
            issued_at: SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH),
            lifetime: token.lifetime(),
        }
    }

    /// The token in this process's terms (its age measured on the wall clock).
    pub fn to_token(&self) -> Token {
        let age = SystemTime::now()
            .duration_since(self.issued_at)
            .unwrap_or_default();
        let issued_at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        Token::new(
            self.access_token.clone(),
            Some(&self.token_type),
            self.lifetime,
            issued_at,
        )
        .with_refresh_token(self.refresh_token.clone())
        .with_scope(self.scope.clone())
    }

    /// The JSON form [`FileStore`] keeps (version 1), for stores of your own. It holds
    /// secrets: wipe it after use.
    pub fn to_json(&self) -> Vec<u8> {
        let unix_ms = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0)
        };
        let file = FileToken {
            version: 1,
            access_token: self.access_token.expose_secret().to_owned(),
            token_type: self.token_type.clone(),
            refresh_token: self
                .refresh_token
                .as_ref()
                .map(|s| s.expose_secret().to_owned()),
            scope: self.scope.clone(),
            issued_at_unix_ms: unix_ms(self.issued_at),
            lifetime_ms: self
                .lifetime
                .map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
        };
        serde_json::to_vec(&file).unwrap_or_default()
    }

    /// Reads what [`to_json`](Self::to_json) wrote; `None` for anything else.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        let file: FileToken = serde_json::from_slice(bytes).ok()?;
        if file.version != 1 || file.access_token.is_empty() {
            return None;
        }
        Some(StoredToken {
            access_token: Secret::new(file.access_token.clone()),
            token_type: file.token_type.clone(),
            refresh_token: file.refresh_token.clone().map(Secret::new),
            scope: file.scope.clone(),
            issued_at: UNIX_EPOCH + Duration::from_millis(file.issued_at_unix_ms),
            lifetime: file.lifetime_ms.map(Duration::from_millis),
        })
    }
}

/// The file format; its secrets are wiped when it is dropped.
#[derive(Serialize, Deserialize)]
struct FileToken {
    version: u32,
    access_token: String,
    token_type: String,
    refresh_token: Option<String>,
    scope: Option<String>,
    issued_at_unix_ms: u64,
    lifetime_ms: Option<u64>,
}

impl Drop for FileToken {
    fn drop(&mut self) {
        self.access_token.zeroize();
        if let Some(rt) = &mut self.refresh_token {
            rt.zeroize();
        }
    }
}

/// A held store lock; dropping it releases the lock.
pub struct StoreLock {
    _held: Option<Box<dyn Send>>,
}

impl StoreLock {
    /// A lock held by `inner` (a file, a guard) until it is dropped.
    pub fn new(inner: impl Send + 'static) -> Self {
        StoreLock {
            _held: Some(Box::new(inner)),
        }
    }

    /// A lock that holds nothing (for stores with no other process to exclude).
    pub fn none() -> Self {
        StoreLock { _held: None }
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreLock")
    }
}

/// Where tokens are shared between processes: load, lock-and-renew, save.
///
/// A client calls [`lock`](Self::lock) when a renewal is due, then [`load`](Self::load)
/// to see whether another process renewed meanwhile, then — if it renewed itself —
/// [`save`](Self::save), and drops the lock. Implementations must make `save` durable
/// before returning: a rotated refresh token must outlive a crash of the process.
/// Errors are [`Store`](crate::ErrorKind::Store) when the store cannot be used
/// (unreachable, refused, lost its lock): a client whose grant can renew without the
/// store (client credentials, API keys) then does so and says it once in the log; any
/// other fails with that error. Waiting for another process's lock until `deadline` is
/// a [`Timeout`](crate::ErrorKind::Timeout).
pub trait TokenStore: Send + Sync {
    /// The stored token for `key`, if any. An unreadable or corrupt entry is reported
    /// (logged) and read as none.
    fn load(&self, key: &StoreKey) -> Result<Option<StoredToken>>;
    /// Takes the lock for `key`, shared with every other process, waiting at most until
    /// `deadline`.
    fn lock(&self, key: &StoreKey, deadline: Instant) -> Result<StoreLock>;
    /// Saves the token for `key`, durably, while holding its lock.
    fn save(&self, key: &StoreKey, token: &StoredToken) -> Result<()>;
    /// Removes the token for `key` (after a revocation), while holding its lock.
    fn remove(&self, key: &StoreKey) -> Result<()>;
    /// What kind of store this is, for events (`file`, `redis`, …).
    fn name(&self) -> &'static str {
        "custom"
    }
}

/// A store inside this process only: clients of one process that use the same
/// credential share one token through it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tokens: Mutex<HashMap<StoreKey, StoredToken>>,
    held: Arc<Held>,
}

/// The keys whose lock is held, and a condition to wait on.
#[derive(Debug, Default)]
struct Held {
    keys: Mutex<HashSet<StoreKey>>,
    released: Condvar,
}

/// Releases a [`MemoryStore`] key lock when dropped.
struct MemoryLock {
    held: Arc<Held>,
    key: StoreKey,
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        self.held.keys.lock().remove(&self.key);
        self.held.released.notify_all();
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TokenStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn load(&self, key: &StoreKey) -> Result<Option<StoredToken>> {
        Ok(self.tokens.lock().get(key).cloned())
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> Result<StoreLock> {
        let mut keys = self.held.keys.lock();
        while keys.contains(key) {
            if self
                .held
                .released
                .wait_until(&mut keys, deadline)
                .timed_out()
            {
                return Err(Error::Timeout {
                    message: "waited for another client's renewal through the store".into(),
                });
            }
        }
        keys.insert(key.clone());
        Ok(StoreLock::new(MemoryLock {
            held: Arc::clone(&self.held),
            key: key.clone(),
        }))
    }

    fn save(&self, key: &StoreKey, token: &StoredToken) -> Result<()> {
        self.tokens.lock().insert(key.clone(), token.clone());
        Ok(())
    }

    fn remove(&self, key: &StoreKey) -> Result<()> {
        self.tokens.lock().remove(key);
        Ok(())
    }
}

//! The shared-store tier under the in-process cache: where one token (and one rotating
//! refresh token) is shared by every process that uses the same credential.
//!
//! The cached-token path never touches a store. When a renewal is due, the client takes
//! the store's lock for its [`StoreKey`], re-reads the store, adopts a token another
//! process renewed meanwhile (fresh by the same renew-ahead rule), or else renews with
//! the newest stored refresh token and saves the result — all before the lock is
//! released and before the new access token is used.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
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
pub(crate) use tier::{Renewal, Tier, WithoutStore};

/// Identifies one credential in a store: grant, token endpoint (or base URL), client
/// id and scopes. Never a secret (an API key enters only as a short hash).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoreKey(String);

impl StoreKey {
    /// A key from its parts; `user` names whose token it is (the ID token's `sub`, or a
    /// name the caller gave with [`Options::store_key`](crate::Options::store_key)).
    pub(crate) fn new(
        grant: &str,
        endpoint: &str,
        client_id: &str,
        user: Option<&str>,
        scopes: &[String],
    ) -> Self {
        let mut scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        // Spaces and `%` escaped, so that the key's parts stay apart.
        let escape = |s: &str| s.replace('%', "%25").replace(' ', "%20");
        let user = user
            .map(|u| format!(" user={}", escape(u)))
            .unwrap_or_default();
        StoreKey(format!(
            "{grant} {endpoint} client={}{user} scope={}",
            escape(client_id),
            scopes.join(" ")
        ))
    }

    /// The key of tokens obtained over connections that present the client
    /// certificate with this `x5t#S256` (they may be bound to it, RFC 8705 §3).
    pub(crate) fn with_certificate(self, thumbprint: &str) -> Self {
        StoreKey(format!("{} x5t#S256={thumbprint}", self.0))
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

    /// The user the key names (`user=…`, with spaces and `%` escaped), if any.
    pub fn user(&self) -> Option<&str> {
        let (_, rest) = self.0.split_once(" user=")?;
        rest.split_once(" scope=").map(|(user, _)| user)
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
    /// The record's version: every save writes a higher one, so that the newer of a
    /// client's memory and the store wins (0: written before versions existed).
    pub version: u64,
    /// Tags (32 hex characters of SHA-256) of the refresh tokens this record's refresh token
    /// descends from, newest first (at most 32: its own, the first one always kept, then those of a session of the same user it superseded): a client holding one of them
    /// holds an older refresh token than the store.
    pub lineage: Vec<String>,
    /// A tombstone: the session was revoked (or its refresh token refused); no client
    /// may renew it with a refresh token from this lineage.
    pub revoked: bool,
    /// The DPoP key the tokens are bound to, as a private JWK (RFC 9449): kept with the
    /// session, since a public client's refresh token works with that key only.
    pub dpop_key: Option<Secret>,
    /// What the server said it issued (a token exchange's `issued_token_type`), if it
    /// said.
    pub issued_token_type: Option<String>,
}

/// How many ancestors a stored record remembers.
pub const LINEAGE: usize = 32;

/// A non-reversible tag of a refresh token (32 hex characters of its SHA-256), to name
/// it in a record's lineage.
pub fn refresh_token_tag(refresh_token: &Secret) -> String {
    Sha256::digest(refresh_token.expose_secret().as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
            .field("version", &self.version)
            .field("revoked", &self.revoked)
            .field("dpop_key", &self.dpop_key.is_some())
            .finish_non_exhaustive()
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
            version: 0,
            lineage: Vec::new(),
            revoked: false,
            dpop_key: token.dpop_key().map(|k| k.to_jwk()),
            issued_token_type: token.issued_token_type().map(str::to_owned),
        }
    }

    /// A tombstone at `version`: the session whose refresh tokens are in `lineage` was
    /// revoked.
    pub fn tombstone(version: u64, lineage: Vec<String>) -> Self {
        StoredToken {
            access_token: Secret::new(""),
            token_type: String::new(),
            refresh_token: None,
            scope: None,
            issued_at: SystemTime::now(),
            lifetime: None,
            version,
            lineage,
            revoked: true,
            dpop_key: None,
            issued_token_type: None,
        }
    }

    /// The token in this process's terms (its age measured on the wall clock), bound to
    /// the record's DPoP key if it has one. A key that cannot be read leaves a `DPoP`
    /// token without its key, which [`Client`](crate::Client) refuses to send (a new
    /// sign-in is needed).
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
        .with_issued_token_type(self.issued_token_type.clone())
        .with_dpop_key(
            self.dpop_key
                .as_ref()
                .and_then(|k| crate::DpopKey::from_jwk(k.expose_secret()).ok())
                .map(Arc::new),
        )
    }

    /// The JSON form [`FileStore`] keeps, for stores of your own. It holds secrets: wipe
    /// it after use. It says `"version": 1` (the record's own version is `record`), so
    /// that processes of earlier releases sharing the store still read live records
    /// (they ignore the fields they do not know; a tombstone reads as empty to them).
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
            record: self.version,
            lineage: self.lineage.clone(),
            revoked: self.revoked,
            // Base64url, so that the JSON text carries it without escapes (an escaped
            // string is read through a growing scratch buffer, which would leave copies).
            dpop_key: self
                .dpop_key
                .as_ref()
                .map(|k| URL_SAFE_NO_PAD.encode(k.expose_secret())),
            issued_token_type: self.issued_token_type.clone(),
        };
        // Written into a buffer sized up front, so that no reallocation leaves a copy of
        // a secret behind; the caller wipes what it gets.
        let secrets = [
            file.access_token.len(),
            file.refresh_token.as_ref().map_or(0, String::len),
            file.dpop_key.as_ref().map_or(0, String::len),
        ];
        let size = 2 * secrets.iter().sum::<usize>() + 512 + 40 * file.lineage.len();
        let mut buf = Vec::with_capacity(size);
        serde_json::to_writer(&mut buf, &file).map_or_else(|_| Vec::new(), |()| buf)
    }

    /// Reads what [`to_json`](Self::to_json) wrote (and the format 1 of earlier
    /// releases, as version 0); `None` for anything else.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        let file: FileToken = serde_json::from_slice(bytes).ok()?;
        let known_format = matches!(file.version, 1 | 2);
        if !known_format || (file.access_token.is_empty() && !file.revoked) {
            return None;
        }
        Some(StoredToken {
            access_token: Secret::new(file.access_token.clone()),
            token_type: file.token_type.clone(),
            refresh_token: file.refresh_token.clone().map(Secret::new),
            scope: file.scope.clone(),
            issued_at: UNIX_EPOCH + Duration::from_millis(file.issued_at_unix_ms),
            lifetime: file.lifetime_ms.map(Duration::from_millis),
            version: file.record,
            lineage: file.lineage.iter().take(LINEAGE).cloned().collect(),
            revoked: file.revoked,
            dpop_key: file
                .dpop_key
                .as_deref()
                .and_then(|k| URL_SAFE_NO_PAD.decode(k).ok())
                .and_then(|k| String::from_utf8(k).ok())
                .map(Secret::new),
            issued_token_type: file.issued_token_type.clone(),
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
    /// The record's version (format 2).
    #[serde(default)]
    record: u64,
    #[serde(default)]
    lineage: Vec<String>,
    #[serde(default)]
    revoked: bool,
    /// The session's DPoP private key (a JWK, base64url), if its tokens are DPoP-bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_key: Option<String>,
    /// What the server said it issued (a token exchange's `issued_token_type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<String>,
}

impl Drop for FileToken {
    fn drop(&mut self) {
        self.access_token.zeroize();
        if let Some(rt) = &mut self.refresh_token {
            rt.zeroize();
        }
        if let Some(key) = &mut self.dpop_key {
            key.zeroize();
        }
    }
}

fn ptr_eq_opt<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// A held store lock; dropping it releases the lock. It names its holder (a random
/// owner value) and the moment it lapses by itself, so that a store can refuse a save or
/// removal by anyone else: [`TokenStore::save`] and [`TokenStore::remove`] take the lock
/// they act under.
pub struct StoreLock {
    owner: String,
    until: Instant,
    _held: Option<Box<dyn Send>>,
}

impl StoreLock {
    /// A lock held by `inner` (a file, a guard) until it is dropped, with a fresh random
    /// owner value.
    pub fn new(inner: impl Send + 'static) -> Self {
        StoreLock {
            owner: crate::random::url_safe_string(16),
            until: far_future(),
            _held: Some(Box::new(inner)),
        }
    }

    /// A lock held by `inner`, owned by `owner`, that lapses by itself at `until` (a
    /// Redis key's expiry).
    pub fn with_owner(owner: String, until: Instant, inner: impl Send + 'static) -> Self {
        StoreLock {
            owner,
            until,
            _held: Some(Box::new(inner)),
        }
    }

    /// A lock that holds nothing (for stores with no other process to exclude).
    pub fn none() -> Self {
        StoreLock {
            owner: crate::random::url_safe_string(16),
            until: far_future(),
            _held: None,
        }
    }

    /// The holder's owner value (random, never a secret of the credential).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// When the lock lapses by itself (far in the future for locks that do not).
    pub fn until(&self) -> Instant {
        self.until
    }
}

fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(crate::options::MAX_DURATION).unwrap_or(now)
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreLock")
    }
}

/// Where tokens are shared between processes: lock, load, save.
///
/// A client calls [`lock`](Self::lock) when a renewal is due, then [`load`](Self::load)
/// to see whether another process renewed meanwhile, then — if it renewed itself —
/// [`save`](Self::save), and drops the lock. Every operation but `lock` takes the lock it
/// acts under: a store that can tell holders apart (Redis) refuses a save by a holder
/// whose lock lapsed. Implementations must make `save` durable before returning: a
/// rotated refresh token must outlive a crash of the process.
/// Errors are [`Store`](crate::error::ErrorKind::Store) when the store cannot be used
/// (unreachable, refused, lost its lock): a client whose grant can renew without the
/// store (client credentials, API keys) then does so and says it once in the log; any
/// other fails with that error. Waiting for another process's lock until `deadline` is
/// a [`Timeout`](crate::error::ErrorKind::Timeout).
pub trait TokenStore: Send + Sync {
    /// The stored record for `key`, if any, read under `lock`. An unreadable or corrupt
    /// entry is reported (logged) and read as none.
    fn load(&self, lock: &StoreLock, key: &StoreKey) -> Result<Option<StoredToken>>;
    /// Takes the lock for `key`, shared with every other process, waiting at most until
    /// `deadline`; a lock that lapses by itself lives at least until then.
    fn lock(&self, key: &StoreKey, deadline: Instant) -> Result<StoreLock>;
    /// Takes the lock for `key` if nobody holds it (`None` if someone does), to live
    /// until `deadline`. By default, [`lock`](Self::lock) with no time to wait.
    fn try_lock(&self, key: &StoreKey, deadline: Instant) -> Result<Option<StoreLock>> {
        let _ = deadline;
        match self.lock(key, Instant::now()) {
            Ok(lock) => Ok(Some(lock)),
            Err(e) if e.kind() == crate::error::ErrorKind::Timeout => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// The stored record for `key` read without the lock (within `deadline`), for a
    /// renewal waiting on another holder to adopt the token it saves the moment it is
    /// there. `None` (the default): this store cannot be read without its lock, and
    /// waiters wait for it. A store that answers must never return a partly written
    /// record, and should not log on every call (it is called every few milliseconds).
    fn peek(&self, key: &StoreKey, deadline: Instant) -> Option<Result<Option<StoredToken>>> {
        let _ = (key, deadline);
        None
    }
    /// Saves the record for `key`, durably, while `lock` is held (and only then).
    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> Result<()>;
    /// Removes the record for `key`, while `lock` is held.
    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> Result<()>;
    /// What kind of store this is, for events (`file`, `redis`, …).
    fn name(&self) -> &'static str {
        "custom"
    }
    /// This store as a client that trusts exactly the CA certificates in `ca_pem` (its
    /// [`ca_bundle`](crate::Options::ca_bundle)) uses it: a store that connects over TLS
    /// and was given no CA of its own returns a copy of itself that verifies its servers
    /// against these CAs too. `None` (the default): the store is used as it is. Called
    /// once when such a client is made; an error fails the client's construction.
    fn trusting(&self, ca_pem: &[u8]) -> Result<Option<Arc<dyn TokenStore>>> {
        let _ = ca_pem;
        Ok(None)
    }
}

/// A store inside this process only: clients of one process that use the same
/// credential share one token through it.
///
/// Its locks belong to the process that took them: a child after `fork()` starts with
/// none held (a renewal in flight in the parent at the fork does not exist in the child).
#[derive(Default)]
pub struct MemoryStore {
    tokens: Mutex<HashMap<StoreKey, StoredToken>>,
    held: arc_swap::ArcSwapOption<Held>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

/// The keys whose lock is held in one process (with the holder's owner value), and a
/// condition to wait on.
struct Held {
    stamp: crate::fork::Stamp,
    keys: Mutex<HashMap<StoreKey, String>>,
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
    /// This process's locks; none in a child after `fork()` (whose parent's mutex may
    /// have been held by a thread that does not exist in the child).
    fn held(&self) -> Arc<Held> {
        let current = self.held.load_full();
        if let Some(held) = current
            .as_ref()
            .filter(|h| h.stamp == crate::fork::Stamp::current())
        {
            return Arc::clone(held);
        }
        let fresh = Arc::new(Held {
            stamp: crate::fork::Stamp::current(),
            keys: Mutex::default(),
            released: Condvar::new(),
        });
        let previous = self
            .held
            .compare_and_swap(&current, Some(Arc::clone(&fresh)));
        if let Some(parent) = previous
            .as_ref()
            .filter(|_| ptr_eq_opt(&previous, &current))
        {
            // The parent's bookkeeping (and its mutex) is never touched from here.
            std::mem::forget(Arc::clone(parent));
        }
        if ptr_eq_opt(&previous, &current) {
            fresh
        } else {
            self.held()
        }
    }

    fn check_holder(&self, lock: &StoreLock, key: &StoreKey) -> Result<()> {
        if self.held().keys.lock().get(key).map(String::as_str) == Some(lock.owner()) {
            Ok(())
        } else {
            Err(Error::store(
                "the memory store's lock for this key is not held by this caller",
            ))
        }
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

    fn load(&self, _lock: &StoreLock, key: &StoreKey) -> Result<Option<StoredToken>> {
        Ok(self.tokens.lock().get(key).cloned())
    }

    fn peek(&self, key: &StoreKey, _deadline: Instant) -> Option<Result<Option<StoredToken>>> {
        Some(Ok(self.tokens.lock().get(key).cloned()))
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> Result<StoreLock> {
        let held = self.held();
        let mut keys = held.keys.lock();
        while keys.contains_key(key) {
            if held.released.wait_until(&mut keys, deadline).timed_out() {
                return Err(Error::Timeout {
                    message: "waited for another client's renewal through the store".into(),
                });
            }
        }
        let lock = StoreLock::new(MemoryLock {
            held: Arc::clone(&held),
            key: key.clone(),
        });
        keys.insert(key.clone(), lock.owner().to_owned());
        Ok(lock)
    }

    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> Result<()> {
        self.check_holder(lock, key)?;
        self.tokens.lock().insert(key.clone(), token.clone());
        Ok(())
    }

    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> Result<()> {
        self.check_holder(lock, key)?;
        self.tokens.lock().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_version_lineage_and_tombstones() {
        let mut record = StoredToken::from_token(
            &Token::new(Secret::new("at-1"), Some("Bearer"), None, Instant::now())
                .with_refresh_token(Some(Secret::new("rt-2"))),
            None,
        );
        record.version = 7;
        record.lineage = vec![refresh_token_tag(&Secret::new("rt-1"))];
        let back = StoredToken::from_json(&record.to_json()).unwrap();
        assert_eq!(back.version, 7);
        assert_eq!(back.lineage, record.lineage);
        assert!(!back.revoked);
        assert_eq!(back.refresh_token.unwrap().expose_secret(), "rt-2");

        let tombstone = StoredToken::tombstone(8, vec!["ab".into(); 40]);
        let back = StoredToken::from_json(&tombstone.to_json()).unwrap();
        assert!(back.revoked && back.refresh_token.is_none());
        assert_eq!(back.lineage.len(), LINEAGE, "a lineage read is capped");

        // Format 1 (before versions) is still read, as version 0.
        let v1 = br#"{"version":1,"access_token":"at","token_type":"Bearer","refresh_token":"rt","scope":null,"issued_at_unix_ms":0,"lifetime_ms":null}"#;
        let old = StoredToken::from_json(v1).unwrap();
        assert_eq!((old.version, old.revoked), (0, false));
        // An empty access token is only a tombstone.
        let empty = br#"{"version":2,"access_token":"","token_type":"","refresh_token":null,"scope":null,"issued_at_unix_ms":0,"lifetime_ms":null}"#;
        assert!(StoredToken::from_json(empty).is_none());
        assert!(StoredToken::from_json(br#"{"version":3}"#).is_none());
    }

    #[test]
    fn a_key_names_its_user_and_keeps_its_parts_apart() {
        let key = |user| StoreKey::new("refresh_token", "https://id/token", "app", user, &[]);
        assert_eq!(key(Some("alice")).user(), Some("alice"));
        assert_eq!(key(None).user(), None);
        assert_ne!(key(Some("alice")), key(Some("bob")));
        assert_ne!(key(Some("alice")), key(None));
        let odd = key(Some("a scope=b"));
        assert_eq!(odd.user(), Some("a%20scope=b"));
        assert!(!odd.as_str().contains("a scope"));
    }
}

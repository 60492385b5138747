//! [`RedisStore`]: tokens shared by every process on every host that reaches one Redis.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::{StoreKey, StoreLock, StoredToken, TokenStore};
use crate::error::{Error, Result};
use crate::fork::Stamp;

/// Longest time one Redis command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two attempts to take a lock another process holds.
const LOCK_POLL: Duration = Duration::from_millis(20);
/// The least time given to releasing a lock, even after the renewal's deadline.
const RELEASE_AT_LEAST: Duration = Duration::from_millis(100);
/// The least time given to saving a new token, even after the renewal's deadline.
const SAVE_AT_LEAST: Duration = Duration::from_millis(500);
/// How long a lock outlives the deadline of the renewal that took it.
const LOCK_MARGIN: Duration = Duration::from_secs(2);

/// Deletes the lock only if this owner still holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0"#;

/// Deletes the token only while this owner holds the lock.
const FENCED_DEL: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return 1"#;

/// Writes the token only while this owner holds the lock: a renewal whose lock expired
/// (and was taken by another process) cannot overwrite a newer token.
const FENCED_SET: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1"#;

/// Tokens in Redis, shared by a fleet: the token as one key expiring with its lifetime
/// (kept until replaced when it holds a refresh token, which outlives it),
/// a distributed single flight through a lock key (`SET NX PX` with a random owner,
/// released by compare-and-delete, living at least as long as the renewal's deadline),
/// and writes fenced by the lock so that a renewal that lost its lock cannot overwrite
/// a newer token. Waiting processes poll the lock until their deadline.
///
/// `redis://[user:password@]host:port[/db]` and `rediss://…` (TLS, verified against the
/// Web PKI roots or a CA of your own, see [`with_ca_pem`](Self::with_ca_pem)) URLs, with
/// an ACL user and password or a password alone; the credentials are never printed.
///
/// Every command is bounded by the renewal's deadline and by 2 s. A Redis that cannot be
/// reached, refuses the credentials or answers nothing is a
/// [`Store`](crate::ErrorKind::Store) error: client credentials and API keys then renew
/// without the store (logged once), rotating refresh tokens fail with it.
pub struct RedisStore {
    shared: Arc<Shared>,
    fenced_set: redis::Script,
    fenced_del: redis::Script,
    release: redis::Script,
}

/// What a store shares with the locks it hands out.
struct Shared {
    client: redis::Client,
    /// This process's connection. A child after `fork()` opens its own: the parent's
    /// socket (and its half-read replies) is never used by two processes.
    connection: ArcSwap<PerProcess>,
}

/// A connection belonging to one process (and fork generation).
struct PerProcess {
    stamp: Stamp,
    connection: Mutex<Option<redis::Connection>>,
}

impl PerProcess {
    fn new() -> Arc<PerProcess> {
        Arc::new(PerProcess {
            stamp: Stamp::current(),
            connection: Mutex::new(None),
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.shared.addr())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url`. A URL that cannot be parsed is a
    /// [`Config`](crate::ErrorKind::Config) error; no connection is made until a renewal
    /// needs one.
    pub fn new(url: &str) -> Result<RedisStore> {
        let client = redis::Client::open(url).map_err(|_| invalid_url())?;
        Ok(Self::from_client(client))
    }

    /// A `rediss://` store whose server certificate is verified against the CA
    /// certificate(s) in `ca_pem` (PEM) instead of the Web PKI roots.
    pub fn with_ca_pem(url: &str, ca_pem: &[u8]) -> Result<RedisStore> {
        if !url.starts_with("rediss://") {
            return Err(Error::config("a CA certificate needs a rediss:// URL"));
        }
        let info =
            redis::IntoConnectionInfo::into_connection_info(url).map_err(|_| invalid_url())?;
        let client = redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca_pem.to_vec()),
            },
        )
        .map_err(|_| Error::config("the CA certificate for Redis is not valid PEM"))?;
        Ok(Self::from_client(client))
    }

    /// [`with_ca_pem`](Self::with_ca_pem) with the PEM read from a file.
    pub fn with_ca_file(url: &str, ca_file: impl AsRef<std::path::Path>) -> Result<RedisStore> {
        if !url.starts_with("rediss://") {
            return Err(Error::config("a CA certificate needs a rediss:// URL"));
        }
        let path = ca_file.as_ref();
        let pem = std::fs::read(path).map_err(|e| {
            Error::config(format!(
                "the CA file {} cannot be read: {}",
                path.display(),
                e.kind()
            ))
        })?;
        Self::with_ca_pem(url, &pem)
    }

    fn from_client(client: redis::Client) -> RedisStore {
        RedisStore {
            shared: Arc::new(Shared {
                client,
                connection: ArcSwap::new(PerProcess::new()),
            }),
            fenced_set: redis::Script::new(FENCED_SET),
            fenced_del: redis::Script::new(FENCED_DEL),
            release: redis::Script::new(RELEASE),
        }
    }

    fn token_key(key: &StoreKey) -> String {
        format!("authcore:token:{}", key.digest())
    }

    fn lock_key(key: &StoreKey) -> String {
        format!("authcore:lock:{}", key.digest())
    }
}

impl Shared {
    /// `host:port`, without credentials.
    fn addr(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    /// A failure in secret-free terms; a command cut short by the caller's own
    /// deadline (rather than by Redis's silence) is a timeout of that call.
    fn failure(&self, what: &str, e: &redis::RedisError, by_deadline: bool) -> Error {
        let why = if e.kind() == redis::ErrorKind::AuthenticationFailed
            || e.code()
                .is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH" || c == "NOPERM")
        {
            "the credentials were refused".to_owned()
        } else if e.is_timeout() {
            "no answer in time".to_owned()
        } else {
            crate::error::scrub(e.category())
        };
        let message = format!("Redis at {} could not {what}: {why}", self.addr());
        if e.is_timeout() && by_deadline {
            Error::Timeout { message }
        } else {
            Error::store(message)
        }
    }

    /// Runs `f` on a connection (opened on first use, dropped after a failure), every
    /// step bounded by `deadline` and by [`COMMAND_TIMEOUT`].
    fn with_connection<T>(
        &self,
        what: &str,
        deadline: Instant,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                message: format!(
                    "the deadline passed before Redis at {} was asked to {what}",
                    self.addr()
                ),
            });
        }
        let limit = left.min(COMMAND_TIMEOUT);
        let by_deadline = left < COMMAND_TIMEOUT;
        let here = self.here();
        let mut slot = here.connection.lock();
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => empty.insert(
                self.client
                    .get_connection_with_timeout(limit)
                    .map_err(|e| self.failure("be reached", &e, by_deadline))?,
            ),
        };
        let result = conn
            .set_read_timeout(Some(limit))
            .and_then(|()| conn.set_write_timeout(Some(limit)))
            .and_then(|()| f(conn));
        if result.is_err() {
            *slot = None;
        }
        result.map_err(|e| self.failure(what, &e, by_deadline))
    }

    /// This process's connection slot; a new one in a child after `fork()`. The
    /// parent's connection is left alone (never closed or used by the child), and so
    /// is its mutex, which a parent thread may have held at the fork.
    fn here(&self) -> Arc<PerProcess> {
        let current = self.connection.load_full();
        if current.stamp == Stamp::current() {
            return current;
        }
        let fresh = PerProcess::new();
        let previous = self
            .connection
            .compare_and_swap(&current, Arc::clone(&fresh));
        if Arc::ptr_eq(&previous, &current) {
            // The parent's socket belongs to the parent: not closed from here.
            std::mem::forget(previous);
            fresh
        } else {
            self.connection.load_full()
        }
    }
}

fn invalid_url() -> Error {
    Error::config("the Redis URL is not valid (redis[s]://[user:password@]host:port[/db])")
}

/// Releases a Redis lock (compare-and-delete, on the store's connection) when dropped.
struct RedisLock {
    shared: Arc<Shared>,
    release: redis::Script,
    key: StoreKey,
    owner: String,
    deadline: Instant,
    stamp: Stamp,
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        if self.stamp != Stamp::current() {
            // A child after fork() releases nothing of its parent's.
            return;
        }
        // Bounded by the renewal's deadline, but given a moment even after it: a lock
        // left behind only delays the others until it expires.
        let deadline = self.deadline.max(Instant::now() + RELEASE_AT_LEAST);
        let released = self
            .shared
            .with_connection("release the lock", deadline, |c| {
                self.release
                    .key(RedisStore::lock_key(&self.key))
                    .arg(&self.owner)
                    .invoke::<i64>(c)
            });
        if released.is_err() {
            crate::events::event!(warn, "store.unlock_failed", store = "redis";
                "could not release a Redis token-store lock; it expires by itself"
            );
        }
    }
}

impl RedisStore {
    /// One `SET NX PX` attempt for the lock of `key`, living until `deadline` plus a
    /// margin; `wait_until` bounds the command itself.
    fn attempt(
        &self,
        key: &StoreKey,
        deadline: Instant,
        wait_until: Instant,
    ) -> Result<Option<StoreLock>> {
        let owner = crate::random::url_safe_string(16);
        let ttl = deadline.saturating_duration_since(Instant::now()) + LOCK_MARGIN;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let taken: Option<String> =
            self.shared
                .with_connection("take the lock", wait_until, |c| {
                    redis::cmd("SET")
                        .arg(Self::lock_key(key))
                        .arg(&owner)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query(c)
                })?;
        if taken.is_none() {
            return Ok(None);
        }
        let lock = RedisLock {
            shared: Arc::clone(&self.shared),
            release: self.release.clone(),
            key: key.clone(),
            owner: owner.clone(),
            deadline,
            stamp: Stamp::current(),
        };
        Ok(Some(StoreLock::with_owner(owner, deadline, lock)))
    }
}

impl RedisStore {
    /// The stored record for `key`, read within `deadline`.
    fn read(&self, key: &StoreKey, deadline: Instant) -> Result<Option<StoredToken>> {
        let value: Option<Vec<u8>> =
            self.shared
                .with_connection("read the token", deadline, |c| {
                    redis::cmd("GET").arg(Self::token_key(key)).query(c)
                })?;
        let Some(mut bytes) = value else {
            return Ok(None);
        };
        let stored = StoredToken::from_json(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        if stored.is_none() {
            crate::events::event!(warn, "store.corrupt", store = "redis"; "the token in Redis is corrupt; treated as empty");
        }
        Ok(stored)
    }
}

impl TokenStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn load(&self, lock: &StoreLock, key: &StoreKey) -> Result<Option<StoredToken>> {
        self.read(key, lock.until())
    }

    fn peek(&self, key: &StoreKey) -> Option<Result<Option<StoredToken>>> {
        // One SET writes the whole record: a read never sees half of one.
        Some(self.read(key, Instant::now() + COMMAND_TIMEOUT))
    }

    fn try_lock(&self, key: &StoreKey, deadline: Instant) -> Result<Option<StoreLock>> {
        let wait_until = Instant::now() + COMMAND_TIMEOUT;
        self.attempt(
            key,
            deadline,
            wait_until.min(deadline.max(Instant::now() + RELEASE_AT_LEAST)),
        )
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> Result<StoreLock> {
        let started = Instant::now();
        loop {
            if let Some(lock) = self.attempt(key, deadline, deadline)? {
                return Ok(lock);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    message: format!(
                        "waited {:.1} s for another process's renewal (Redis token-store lock at {})",
                        started.elapsed().as_secs_f64(),
                        self.shared.addr()
                    ),
                });
            }
            std::thread::sleep(left.min(LOCK_POLL));
        }
    }

    fn remove(&self, lock: &StoreLock, key: &StoreKey) -> Result<()> {
        let deadline = lock.until().max(Instant::now() + SAVE_AT_LEAST);
        let removed: i64 = self
            .shared
            .with_connection("remove the token", deadline, |c| {
                self.fenced_del
                    .key(Self::lock_key(key))
                    .key(Self::token_key(key))
                    .arg(lock.owner())
                    .invoke(c)
            })?;
        if removed == 1 {
            Ok(())
        } else {
            Err(Error::store(
                "the Redis lock expired before the token was removed",
            ))
        }
    }

    fn save(&self, lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> Result<()> {
        let (owner, deadline) = (lock.owner(), lock.until());
        // The key expires with the access token, unless it holds a refresh token: that
        // outlives the access token and is the one thing that must not be lost.
        let ttl_ms = match (&token.refresh_token, token.lifetime) {
            (None, Some(lifetime)) => {
                let left = (token.issued_at + lifetime)
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
            }
            _ => 0,
        };
        let json = zeroize::Zeroizing::new(token.to_json());
        // A token just obtained (perhaps with a rotated refresh token) is worth saving
        // even if the renewal used up its deadline: it gets a moment more.
        let deadline = deadline.max(Instant::now() + SAVE_AT_LEAST);
        let written: i64 = self
            .shared
            .with_connection("save the token", deadline, |c| {
                self.fenced_set
                    .key(Self::lock_key(key))
                    .key(Self::token_key(key))
                    .arg(owner)
                    .arg(&json[..])
                    .arg(ttl_ms)
                    .invoke(c)
            })?;
        if written == 1 {
            Ok(())
        } else {
            Err(Error::store(
                "the Redis lock expired before the token was saved; a newer renewal wins",
            ))
        }
    }
}

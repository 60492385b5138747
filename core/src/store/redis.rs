//! [`RedisStore`]: tokens shared by every process on every host that reaches one Redis.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{StoreKey, StoreLock, StoredToken, TokenStore};
use crate::error::{Error, Result};

/// Longest time one Redis command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two attempts to take a lock another process holds.
const LOCK_POLL: Duration = Duration::from_millis(20);
/// How long a lock outlives the deadline of the renewal that took it.
const LOCK_MARGIN: Duration = Duration::from_secs(5);

/// Deletes the lock only if this owner still holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0"#;

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

/// Tokens in Redis, shared by a fleet: the token as one key expiring with its lifetime,
/// a distributed single flight through a lock key (`SET NX PX` with a random owner,
/// released by compare-and-delete, living at least as long as the renewal's deadline),
/// and writes fenced by the lock so that a renewal that lost its lock cannot overwrite
/// a newer token. Waiting processes poll the lock until their deadline.
///
/// `redis://[user:password@]host:port[/db]` URLs (ACL user and password, or password
/// alone); the credentials are never printed. `rediss://` (TLS) is not supported yet.
pub struct RedisStore {
    client: redis::Client,
    connection: Mutex<Option<redis::Connection>>,
    /// The owner value of each lock this process holds.
    owners: Arc<Mutex<HashMap<StoreKey, String>>>,
    fenced_set: redis::Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url`. A URL that cannot be parsed is a
    /// [`Config`](crate::ErrorKind::Config) error; no connection is made until a renewal
    /// needs one.
    pub fn new(url: &str) -> Result<RedisStore> {
        if url.starts_with("rediss://") {
            return Err(Error::config(
                "TLS to Redis (rediss://) is not supported yet; use redis:// on a trusted network",
            ));
        }
        let client = redis::Client::open(url).map_err(|_| {
            Error::config("the Redis URL is not valid (redis://[user:password@]host:port[/db])")
        })?;
        Ok(RedisStore {
            client,
            connection: Mutex::new(None),
            owners: Arc::default(),
            fenced_set: redis::Script::new(FENCED_SET),
        })
    }

    /// `host:port`, without credentials.
    fn addr(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    fn failure(&self, what: &str, e: &redis::RedisError) -> Error {
        let message = format!(
            "token store: Redis at {} could not {what}: {}",
            self.addr(),
            crate::error::scrub(e.category())
        );
        if e.is_timeout() {
            Error::Timeout { message }
        } else {
            Error::Transport {
                message,
                source: None,
            }
        }
    }

    /// Runs `f` on a connection (opened on first use, dropped after a failure).
    fn with_connection<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut slot = self.connection.lock();
        if slot.is_none() {
            let conn = self
                .client
                .get_connection_with_timeout(COMMAND_TIMEOUT)
                .and_then(|c| {
                    c.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                    c.set_write_timeout(Some(COMMAND_TIMEOUT))?;
                    Ok(c)
                })
                .map_err(|e| self.failure("be reached", &e))?;
            *slot = Some(conn);
        }
        let conn = slot.as_mut().expect("a connection was just opened");
        let result = f(conn);
        if result.is_err() {
            *slot = None;
        }
        result.map_err(|e| self.failure(what, &e))
    }

    fn token_key(key: &StoreKey) -> String {
        format!("authcore:token:{}", key.digest())
    }

    fn lock_key(key: &StoreKey) -> String {
        format!("authcore:lock:{}", key.digest())
    }
}

/// Releases a Redis lock (compare-and-delete) when dropped.
struct RedisLock {
    client: redis::Client,
    owners: Arc<Mutex<HashMap<StoreKey, String>>>,
    key: StoreKey,
    owner: String,
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        self.owners.lock().remove(&self.key);
        let released = self
            .client
            .get_connection_with_timeout(COMMAND_TIMEOUT)
            .and_then(|mut c| {
                c.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                redis::Script::new(RELEASE)
                    .key(RedisStore::lock_key(&self.key))
                    .arg(&self.owner)
                    .invoke::<i64>(&mut c)
            });
        if released.is_err() {
            log::warn!(
                target: "authcore",
                "could not release a Redis token-store lock; it expires by itself"
            );
        }
    }
}

impl TokenStore for RedisStore {
    fn load(&self, key: &StoreKey) -> Result<Option<StoredToken>> {
        let value: Option<Vec<u8>> = self.with_connection("read the token", |c| {
            redis::cmd("GET").arg(Self::token_key(key)).query(c)
        })?;
        let Some(mut bytes) = value else {
            return Ok(None);
        };
        let stored = StoredToken::from_json(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        if stored.is_none() {
            log::warn!(target: "authcore", "the token in Redis is corrupt; treated as empty");
        }
        Ok(stored)
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> Result<StoreLock> {
        let owner = crate::random::url_safe_string(16);
        let ttl = deadline.saturating_duration_since(Instant::now()) + LOCK_MARGIN;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let started = Instant::now();
        loop {
            let taken: Option<String> = self.with_connection("take the lock", |c| {
                redis::cmd("SET")
                    .arg(Self::lock_key(key))
                    .arg(&owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query(c)
            })?;
            if taken.is_some() {
                self.owners.lock().insert(key.clone(), owner.clone());
                return Ok(StoreLock::new(RedisLock {
                    client: self.client.clone(),
                    owners: Arc::clone(&self.owners),
                    key: key.clone(),
                    owner,
                }));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    message: format!(
                        "waited {:.1} s for another process's renewal (Redis token-store lock at {})",
                        started.elapsed().as_secs_f64(),
                        self.addr()
                    ),
                });
            }
            std::thread::sleep(left.min(LOCK_POLL));
        }
    }

    fn save(&self, key: &StoreKey, token: &StoredToken) -> Result<()> {
        let owner = self
            .owners
            .lock()
            .get(key)
            .cloned()
            .ok_or_else(|| Error::Transport {
                message: "token store: saving to Redis without holding the lock".into(),
                source: None,
            })?;
        let ttl_ms = token
            .lifetime
            .map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX).max(1))
            .unwrap_or(0);
        let json = zeroize::Zeroizing::new(token.to_json());
        let written: i64 = self.with_connection("save the token", |c| {
            self.fenced_set
                .key(Self::lock_key(key))
                .key(Self::token_key(key))
                .arg(&owner)
                .arg(&json[..])
                .arg(ttl_ms)
                .invoke(c)
        })?;
        if written == 1 {
            Ok(())
        } else {
            Err(Error::Transport {
                message: "token store: the Redis lock expired before the token was saved; a newer renewal wins".into(),
                source: None,
            })
        }
    }
}

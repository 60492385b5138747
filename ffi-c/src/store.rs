//! Token stores for C: the file and Redis stores, and a store made of the caller's
//! callbacks for programs that keep tokens elsewhere.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;
use std::time::Instant;

use authcore::{Error, StoreKey, StoreLock, StoredToken, TokenStore};
use zeroize::Zeroize;

use crate::options::{authcore_options, update};
use crate::{arg_str, authcore_status, check_null, Failure};

/// Shares tokens with every other process on this machine that uses the same
/// credential, through files under `dir` (created with mode 0700 if missing; each
/// credential's file is mode 0600 and replaced atomically). A directory that cannot be
/// used is `AUTHCORE_STATUS_CONFIG`, and the options are left as they were.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `dir` is a
/// NUL-terminated path.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_file_store(
    options: *mut authcore_options,
    dir: *const c_char,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises a NUL-terminated string.
        let dir = unsafe { arg_str(dir, "dir")? };
        let store = authcore::FileStore::new(dir)?;
        Ok(o.store(Arc::new(store)))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Shares tokens with every process on every host that reaches the Redis at `url`
/// (`redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS verified against
/// the Web PKI roots; `redis+sentinel://[user:password@]host:port,…/master_name[/db]` for
/// Redis Sentinel, `redis+cluster://[user:password@]host:port,…` for Redis Cluster, each
/// also `rediss+…`; credentials are never printed). An invalid URL is
/// `AUTHCORE_STATUS_CONFIG`, and the options are left as they were; no connection is
/// made until a renewal needs one. A Redis that cannot be used later is
/// `AUTHCORE_STATUS_STORE` for rotating refresh tokens; client credentials and API keys
/// renew without it (logged once).
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `url` is a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_redis_store(
    options: *mut authcore_options,
    url: *const c_char,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises a NUL-terminated string.
        let url = unsafe { arg_str(url, "url")? };
        let store = authcore::RedisStore::new(url)?;
        Ok(o.store(Arc::new(store)))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// `n` NUL-terminated strings at `list`, as `&str`s (an empty list when `n` is 0).
///
/// # Safety
/// `list` is NULL or points to `n` pointers, each NULL or a NUL-terminated string, all
/// outliving the call.
unsafe fn arg_strs<'a>(
    list: *const *const c_char,
    n: usize,
    name: &str,
) -> Result<Vec<&'a str>, Failure> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if list.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL, and the caller promises `n` readable pointers.
    let items = unsafe { std::slice::from_raw_parts(list, n) };
    items
        .iter()
        .enumerate()
        // SAFETY: each is NULL or a NUL-terminated string, as the caller promises.
        .map(|(i, p)| unsafe { arg_str(*p, &format!("{name}[{i}]")) })
        .collect()
}

/// Shares tokens through Redis Sentinel: on the master that the `n` sentinels in
/// `sentinels` name `master`. Each sentinel is `host:port`, or a URL
/// `redis://[user:password@]host:port` / `rediss://…` (TLS) with that sentinel's own
/// credentials. `master` is the master set's name (reached like the sentinels, without
/// credentials), or a URL whose host is that name, with the master's credentials and
/// database: `redis://[user:password@]master_name[/db]`, `rediss://…`. After a failover the
/// store finds the new master through the sentinels. An empty list, or an address or
/// URL that cannot be parsed, is `AUTHCORE_STATUS_CONFIG`, and the options are left as
/// they were; no connection is made until a renewal needs one. The URL form
/// `redis+sentinel://[user:password@]host:port,host:port/master_name[/db]` works with
/// `authcore_options_set_redis_store` too.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `sentinels`
/// points to `n` NUL-terminated strings (it may be NULL when `n` is 0); `master` is a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_redis_sentinel_store(
    options: *mut authcore_options,
    sentinels: *const *const c_char,
    n: usize,
    master: *const c_char,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises `n` NUL-terminated strings.
        let sentinels = unsafe { arg_strs(sentinels, n, "sentinels")? };
        // SAFETY: the caller promises a NUL-terminated string.
        let master = unsafe { arg_str(master, "master")? };
        let store = authcore::RedisStore::sentinel(&sentinels, master)?;
        Ok(o.store(Arc::new(store)))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Shares tokens through the Redis Cluster that the `n` nodes in `nodes` belong to (any
/// of its nodes: the others are found from them), each `host:port` or a URL
/// `redis://[user:password@]host:port` / `rediss://…` (TLS), all with the same
/// credentials. A credential's lock and token keys share one hash slot. An empty list,
/// an address that cannot be parsed, or nodes with different credentials are
/// `AUTHCORE_STATUS_CONFIG`, and the options are left as they were; no connection is made
/// until a renewal needs one. The URL form `redis+cluster://[user:password@]host:port,…`
/// works with `authcore_options_set_redis_store` too.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `nodes`
/// points to `n` NUL-terminated strings (it may be NULL when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_redis_cluster_store(
    options: *mut authcore_options,
    nodes: *const *const c_char,
    n: usize,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises `n` NUL-terminated strings.
        let nodes = unsafe { arg_strs(nodes, n, "nodes")? };
        let store = authcore::RedisStore::cluster(&nodes)?;
        Ok(o.store(Arc::new(store)))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Like `authcore_options_set_redis_store` for a `rediss://` URL (or `rediss+sentinel://`,
/// `rediss+cluster://`) whose servers' certificates are verified against the CA
/// certificate(s) in the PEM file `ca_file` instead of the Web PKI roots. A file that
/// cannot be read or parsed, or a URL that is not `rediss…`, is `AUTHCORE_STATUS_CONFIG`
/// and leaves the options as they were.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `url` and
/// `ca_file` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_redis_store_with_ca(
    options: *mut authcore_options,
    url: *const c_char,
    ca_file: *const c_char,
) -> authcore_status {
    let step = |o: authcore::Options| {
        // SAFETY: the caller promises NUL-terminated strings.
        let url = unsafe { arg_str(url, "url")? };
        // SAFETY: as above.
        let ca_file = unsafe { arg_str(ca_file, "ca_file")? };
        let store = authcore::RedisStore::with_ca_file(url, ca_file)?;
        Ok(o.store(Arc::new(store)))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// A store of your own, as callbacks. Every callback gets `userdata` and the
/// credential's key (a NUL-terminated text naming grant, endpoint, client id, whose
/// tokens they are (`user=…`, see `authcore_options_set_store_key`) and scopes, never a
/// secret). The stored value is a versioned record in authcore's JSON form (format 2:
/// the token, its refresh token, a record version, the lineage of refresh tokens it
/// replaced, and whether the session was revoked). It holds secrets: keep it as you
/// would keep a password. Store exactly the bytes given and hand back exactly the bytes
/// last saved for the key: never merge, edit or rebuild a record, and keep a revoked
/// record (a tombstone) like any other — that is how clients sharing the store learn
/// which token is newest, and that a session was signed out.
///
/// - `load`: copy the stored value for `key` into `buf` (`cap` bytes) and set `*len`
///   to its length; return 0 when copied, 1 when there is none, 2 when `cap` is too
///   small (with `*len` set to the size needed: authcore calls again), another value
///   on failure.
/// - `save`: keep `len` bytes of `value` for `key`, durably, replacing what was there
///   (they are valid during the call only); return 0 when kept. A failure is logged and
///   the new token still used; the record is saved again first under the next lock.
/// - `lock`: take your lock for `key`, shared with every other process, waiting at most
///   `timeout_ms` (0: try once and return 1 at once if another holds it — a renewal
///   ahead of expiry does that, and keeps its still-valid token); return 0 when taken,
///   1 when the time ran out, another value on failure. `unlock` releases it; authcore calls it exactly once for each successful
///   `lock`, on the same thread. `load` and `save` are called only while it is held.
/// - `remove`: forget the value for `key`; return 0 when gone (or there was none). It
///   may be NULL, and is absent when set through the deprecated
///   `authcore_options_set_store_callbacks`: `authcore_client_revoke` does not remove the
///   record but saves a revoked one (a tombstone) through `save`, so that no process
///   sharing the store renews the session from a refresh token it still holds.
///
/// A `lock` or `load` that fails makes the store unusable for that renewal:
/// `AUTHCORE_STATUS_STORE` for a refresh token that may rotate (client credentials and
/// API keys renew without the store). `authcore_client_revoke` revokes at the provider
/// even when a callback fails, then returns `AUTHCORE_STATUS_STORE`: call it again once
/// the store works, to leave the tombstone.
///
/// Callbacks may be called from any thread, concurrently for different keys, and must
/// not unwind or call back into the client.
///
/// The struct grows: fields are only ever added at the end, each optional (NULL keeps
/// the behaviour of a library without it). Hand it to
/// `authcore_options_set_store_callbacks_v2` with `sizeof(authcore_store_callbacks)`, so
/// that this library reads only the fields your program knows about: a program built
/// against an older header never has a field it lacks read as a pointer, and one built
/// against a newer header is accepted (fields this library does not know are ignored).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct authcore_store_callbacks {
    /// Passed back to every callback.
    pub userdata: *mut c_void,
    /// Reads the stored value.
    pub load: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            key: *const c_char,
            buf: *mut c_char,
            cap: usize,
            len: *mut usize,
        ) -> i32,
    >,
    /// Writes the value, durably.
    pub save: Option<
        unsafe extern "C" fn(
            userdata: *mut c_void,
            key: *const c_char,
            value: *const c_char,
            len: usize,
        ) -> i32,
    >,
    /// Takes the lock for `key`.
    pub lock: Option<
        unsafe extern "C" fn(userdata: *mut c_void, key: *const c_char, timeout_ms: u64) -> i32,
    >,
    /// Releases the lock for `key`.
    pub unlock: Option<unsafe extern "C" fn(userdata: *mut c_void, key: *const c_char)>,
    /// Forgets the value for `key` (optional; NULL allowed).
    pub remove: Option<unsafe extern "C" fn(userdata: *mut c_void, key: *const c_char) -> i32>,
}

/// The callbacks, which the caller promises may be used from any thread for as long
/// as any client made with them lives.
struct CallbackStore(authcore_store_callbacks);
// SAFETY: the documented contract of `authcore_options_set_store_callbacks_v2`.
unsafe impl Send for CallbackStore {}
// SAFETY: as above.
unsafe impl Sync for CallbackStore {}

fn store_failure(what: &str, rc: i32) -> Error {
    Error::Store {
        message: format!("callback `{what}` failed ({rc})"),
    }
}

fn key_c(key: &StoreKey) -> CString {
    CString::new(key.as_str().replace('\0', "?")).unwrap_or_default()
}

impl TokenStore for CallbackStore {
    fn name(&self) -> &'static str {
        "callbacks"
    }

    fn load(&self, _lock: &StoreLock, key: &StoreKey) -> authcore::Result<Option<StoredToken>> {
        let Some(load) = self.0.load else {
            return Ok(None);
        };
        let key = key_c(key);
        let mut buf = vec![0u8; 4096];
        for _ in 0..4 {
            let mut len = 0usize;
            // SAFETY: the caller promised `load` follows its contract; `buf` has `cap`
            // writable bytes and `len` is a valid out-pointer for the call.
            let rc = unsafe {
                load(
                    self.0.userdata,
                    key.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut len,
                )
            };
            match rc {
                0 => {
                    let stored = StoredToken::from_json(&buf[..len.min(buf.len())]);
                    buf.zeroize();
                    if stored.is_none() {
                        log::warn!(target: "authcore", "the store callback returned a corrupt token; treated as empty");
                    }
                    return Ok(stored);
                }
                1 => return Ok(None),
                2 if len > buf.len() && len <= 1 << 20 => {
                    buf.zeroize();
                    buf = vec![0u8; len];
                }
                rc => {
                    buf.zeroize();
                    return Err(store_failure("load", rc));
                }
            }
        }
        Err(store_failure("load", 2))
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> authcore::Result<StoreLock> {
        let (Some(lock), Some(unlock)) = (self.0.lock, self.0.unlock) else {
            return Ok(StoreLock::none());
        };
        let key = key_c(key);
        let ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        // SAFETY: the caller promised `lock` follows its contract.
        let rc = unsafe {
            lock(
                self.0.userdata,
                key.as_ptr(),
                u64::try_from(ms).unwrap_or(u64::MAX),
            )
        };
        match rc {
            0 => Ok(StoreLock::new(Held {
                callbacks: CallbackStore(self.0),
                unlock,
                key,
            })),
            1 => Err(Error::Timeout {
                message: "waited for another process's renewal (store callback lock)".into(),
            }),
            rc => Err(store_failure("lock", rc)),
        }
    }

    fn remove(&self, _lock: &StoreLock, key: &StoreKey) -> authcore::Result<()> {
        let Some(remove) = self.0.remove else {
            return Err(Error::Store {
                message: "the store callbacks have no `remove`".into(),
            });
        };
        let key = key_c(key);
        // SAFETY: the caller promised `remove` follows its contract; `key` outlives it.
        match unsafe { remove(self.0.userdata, key.as_ptr()) } {
            0 => Ok(()),
            rc => Err(store_failure("remove", rc)),
        }
    }

    fn save(&self, _lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> authcore::Result<()> {
        let Some(save) = self.0.save else {
            return Ok(());
        };
        let key = key_c(key);
        let mut json = token.to_json();
        // SAFETY: the caller promised `save` follows its contract; `json` outlives it.
        let rc = unsafe {
            save(
                self.0.userdata,
                key.as_ptr(),
                json.as_ptr().cast(),
                json.len(),
            )
        };
        json.zeroize();
        if rc == 0 {
            Ok(())
        } else {
            Err(store_failure("save", rc))
        }
    }
}

/// A lock taken through the callbacks, released by `unlock` when dropped.
struct Held {
    callbacks: CallbackStore,
    unlock: unsafe extern "C" fn(userdata: *mut c_void, key: *const c_char),
    key: CString,
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: the caller promised `unlock` follows its contract.
        unsafe { (self.unlock)(self.callbacks.0.userdata, self.key.as_ptr()) };
    }
}

/// The size of the first published layout of `authcore_store_callbacks` (`userdata`,
/// `load`, `save`, `lock`, `unlock`): the smallest struct a caller may hand over.
const FIRST_LAYOUT: usize = std::mem::offset_of!(authcore_store_callbacks, remove);

/// The callbacks a caller's struct of `size` bytes holds: the fields that end within
/// `size` are copied, every later one is NULL (absent), and bytes past this library's
/// own struct (fields of a newer header) are never read.
///
/// # Safety
/// `callbacks` is non-NULL and readable for `size` bytes.
unsafe fn read_callbacks(
    callbacks: *const authcore_store_callbacks,
    size: usize,
) -> Result<authcore_store_callbacks, Failure> {
    if size < FIRST_LAYOUT {
        return Err(Failure::invalid(format!(
            "`size` is {size} bytes; an authcore_store_callbacks is at least {FIRST_LAYOUT} \
             (pass sizeof(authcore_store_callbacks))"
        )));
    }
    let mut c = authcore_store_callbacks {
        userdata: std::ptr::null_mut(),
        load: None,
        save: None,
        lock: None,
        unlock: None,
        remove: None,
    };
    // Whole fields only: a size that ends inside a field leaves that field absent.
    let fields = [
        FIRST_LAYOUT,
        std::mem::offset_of!(authcore_store_callbacks, remove) + std::mem::size_of_val(&c.remove),
    ];
    let known = fields
        .into_iter()
        .filter(|end| *end <= size)
        .max()
        .unwrap_or(0);
    // SAFETY: the caller promises `size` readable bytes and `known <= size`; `known` is
    // at most our own struct's size, and every field is a pointer or an optional
    // function pointer, for which the caller's bytes (NULL or a function of the
    // documented signature, as the contract says) are valid values.
    unsafe {
        std::ptr::copy_nonoverlapping(
            callbacks.cast::<u8>(),
            (&mut c as *mut authcore_store_callbacks).cast::<u8>(),
            known,
        );
    }
    Ok(c)
}

/// Uses a store made of the callbacks in the first `size` bytes at `callbacks`: pass
/// `sizeof(authcore_store_callbacks)`. The struct is copied; `callbacks->userdata` must
/// stay valid, and usable from any thread, for as long as any client made with these
/// options lives. `load` and `save` are required; `lock` and `unlock` go together (both or
/// neither: without them, processes are not excluded from renewing at once). A field
/// that does not fit in `size` (a program built against an older header) is absent, as
/// if NULL; a `size` larger than this library's struct (a newer header) is accepted and
/// the fields it does not know are ignored; a `size` smaller than the first layout
/// (`userdata` to `unlock`) is `AUTHCORE_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `callbacks`
/// is readable for `size` bytes and holds an `authcore_store_callbacks` whose functions
/// follow its contract.
#[no_mangle]
pub unsafe extern "C" fn authcore_options_set_store_callbacks_v2(
    options: *mut authcore_options,
    callbacks: *const authcore_store_callbacks,
    size: usize,
) -> authcore_status {
    let step = |o: authcore::Options| {
        check_null!(callbacks);
        // SAFETY: non-NULL; the caller promises `size` readable bytes.
        let c = unsafe { read_callbacks(callbacks, size)? };
        if c.load.is_none() || c.save.is_none() {
            return Err(Failure::invalid(
                "the store callbacks need `load` and `save`",
            ));
        }
        if c.lock.is_some() != c.unlock.is_some() {
            return Err(Failure::invalid("`lock` and `unlock` go together"));
        }
        Ok(o.store(Arc::new(CallbackStore(c))))
    };
    // SAFETY: forwarded from the caller.
    unsafe { update(options, step) }
}

/// Deprecated: use `authcore_options_set_store_callbacks_v2(options, callbacks,
/// sizeof(authcore_store_callbacks))`. This entry point has no size, so it reads only
/// the first layout every program built against an older header passes (`userdata`,
/// `load`, `save`, `lock`, `unlock`): `remove` and any later field are never read, never
/// called, whatever the struct holds. Otherwise as the `_v2` setter.
///
/// # Safety
/// `options` is a live handle not used by another thread during the call; `callbacks`
/// is readable for the fields `userdata` to `unlock`, whose functions follow the
/// contract of `authcore_store_callbacks`.
#[no_mangle]
#[deprecated(
    note = "use authcore_options_set_store_callbacks_v2 with sizeof(authcore_store_callbacks)"
)]
pub unsafe extern "C" fn authcore_options_set_store_callbacks(
    options: *mut authcore_options,
    callbacks: *const authcore_store_callbacks,
) -> authcore_status {
    // SAFETY: forwarded from the caller, who promises the first layout's bytes.
    unsafe { authcore_options_set_store_callbacks_v2(options, callbacks, FIRST_LAYOUT) }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn load(
        _: *mut c_void,
        _: *const c_char,
        _: *mut c_char,
        _: usize,
        _: *mut usize,
    ) -> i32 {
        1
    }
    unsafe extern "C" fn save(_: *mut c_void, _: *const c_char, _: *const c_char, _: usize) -> i32 {
        0
    }
    unsafe extern "C" fn remove(_: *mut c_void, _: *const c_char) -> i32 {
        panic!("`remove` read from beyond the caller's struct")
    }

    /// A caller's memory: a struct of the first layout followed by a function pointer
    /// that belongs to something else (what an old program's stack or heap holds there).
    #[repr(C)]
    struct OldLayoutThenPoison {
        userdata: *mut c_void,
        load: Option<
            unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_char, usize, *mut usize) -> i32,
        >,
        save: Option<unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, usize) -> i32>,
        lock: Option<unsafe extern "C" fn(*mut c_void, *const c_char, u64) -> i32>,
        unlock: Option<unsafe extern "C" fn(*mut c_void, *const c_char)>,
        poison: Option<unsafe extern "C" fn(*mut c_void, *const c_char) -> i32>,
    }

    fn old_then_poison() -> OldLayoutThenPoison {
        OldLayoutThenPoison {
            userdata: std::ptr::null_mut(),
            load: Some(load),
            save: Some(save),
            lock: None,
            unlock: None,
            poison: Some(remove),
        }
    }

    #[test]
    fn the_first_layout_never_reads_remove() {
        let memory = old_then_poison();
        let p = (&memory as *const OldLayoutThenPoison).cast::<authcore_store_callbacks>();
        // SAFETY: `memory` is readable for its whole size, more than FIRST_LAYOUT.
        let c = unsafe { read_callbacks(p, FIRST_LAYOUT) }.ok().unwrap();
        assert!(c.load.is_some() && c.save.is_some());
        assert!(
            c.remove.is_none(),
            "the bytes past the old struct were read"
        );
    }

    #[test]
    fn a_size_inside_a_field_leaves_that_field_absent() {
        let memory = old_then_poison();
        let p = (&memory as *const OldLayoutThenPoison).cast::<authcore_store_callbacks>();
        let full = std::mem::size_of::<authcore_store_callbacks>();
        // SAFETY: `memory` is readable for `full` bytes.
        let c = unsafe { read_callbacks(p, full - 1) }.ok().unwrap();
        assert!(c.remove.is_none());
        // SAFETY: as above.
        let c = unsafe { read_callbacks(p, full) }.ok().unwrap();
        assert!(c.remove.is_some(), "a whole `remove` is read");
    }

    #[test]
    fn too_small_a_size_is_refused() {
        let memory = old_then_poison();
        let p = (&memory as *const OldLayoutThenPoison).cast::<authcore_store_callbacks>();
        for size in [0, 8, FIRST_LAYOUT - 1] {
            // SAFETY: `memory` is readable for more than `size` bytes.
            let err = unsafe { read_callbacks(p, size) }.err().unwrap();
            assert_eq!(err.status, authcore_status::InvalidArgument);
            assert!(err.message.contains("sizeof(authcore_store_callbacks)"));
        }
    }

    #[test]
    fn a_newer_larger_struct_is_read_up_to_what_this_library_knows() {
        #[repr(C)]
        struct Newer {
            known: authcore_store_callbacks,
            future: *const c_void,
        }
        let memory = Newer {
            known: authcore_store_callbacks {
                userdata: std::ptr::null_mut(),
                load: Some(load),
                save: Some(save),
                lock: None,
                unlock: None,
                remove: None,
            },
            future: std::ptr::dangling(),
        };
        let p = (&memory as *const Newer).cast::<authcore_store_callbacks>();
        // SAFETY: `memory` is readable for its whole size.
        let c = unsafe { read_callbacks(p, std::mem::size_of::<Newer>()) }
            .ok()
            .unwrap();
        assert!(c.load.is_some() && c.save.is_some() && c.remove.is_none());
    }
}

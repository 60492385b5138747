//! [`FileStore`]: one file per credential under a directory, for the processes of one
//! machine.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;

use super::{StoreKey, StoreLock, StoredToken, TokenStore};
use crate::error::{Error, Result};
use crate::fork::Stamp;

/// Longest pause between two attempts to take a file lock held by another process.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// Tokens shared by the processes of one machine: a file per credential under a
/// private directory (mode 0700 when created; one that is group- or world-writable, or
/// owned by another user, is refused), each replaced atomically (an exclusive temporary file in the
/// same directory, mode 0600, fsynced, renamed over the old one, the directory fsynced),
/// and a lock file per credential held across a renewal. A process killed while holding
/// the lock never blocks the others: the operating system releases it. A child forked
/// while its parent held a lock never holds it: the lock is released explicitly by the
/// parent, and the child closes its copies of its parent's lock files before it takes
/// any. A corrupt or truncated file is reported (logged) and read as empty.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir`, created (mode 0700) if missing. A directory that cannot be
    /// written is a [`Config`](crate::ErrorKind::Config) error now, not at the first
    /// renewal. So is, on Unix, a directory that another user could plant a token in
    /// or read one from: one that is group- or world-writable, or owned by another user
    /// (as OpenSSH refuses such a `~/.ssh`).
    pub fn new(dir: impl Into<PathBuf>) -> Result<FileStore> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|e| unusable(&dir, &e))?;
        #[cfg(unix)]
        check_private(&dir)?;
        tempfile::Builder::new()
            .prefix(".authcore-probe-")
            .tempfile_in(&dir)
            .map_err(|e| unusable(&dir, &e))?;
        Ok(FileStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &StoreKey, extension: &str) -> PathBuf {
        let digest = key.digest();
        self.dir.join(format!("{}.{extension}", &digest[..32]))
    }

    fn lock_file(&self, key: &StoreKey) -> Result<(File, PathBuf)> {
        // A child after fork() lets go of its parent's locks before taking any.
        held_here();
        let path = self.path(key, "lock");
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        Ok((file, path))
    }

    fn read(&self, key: &StoreKey, say_corrupt: bool) -> Result<Option<StoredToken>> {
        let path = self.path(key, "json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        let stored = StoredToken::from_json(&bytes);
        if stored.is_none() && say_corrupt {
            crate::events::event!(warn, "store.corrupt", store = "file";
                "token store file {} is corrupt or truncated; treated as empty",
                path.display()
            );
        }
        Ok(stored)
    }
}

/// The lock files this process holds, owned here rather than by their [`StoreLock`]s:
/// a child after `fork()` closes its copies of its parent's at its first use of a file
/// store. A lock file's lock belongs to the open file, which parent and child share;
/// without this, a child forked during a renewal would hold that lock for as long as it
/// lives once the parent is gone (the thread that would release it does not exist in
/// the child).
struct Held {
    stamp: Stamp,
    files: Mutex<HashMap<u64, File>>,
}

static HELD: ArcSwapOption<Held> = ArcSwapOption::const_empty();
static NEXT_LOCK: AtomicU64 = AtomicU64::new(1);

/// This process's held lock files; a child's first call closes its parent's.
fn held_here() -> Arc<Held> {
    let current = HELD.load_full();
    if let Some(held) = current.as_ref().filter(|h| h.stamp == Stamp::current()) {
        return Arc::clone(held);
    }
    let fresh = Arc::new(Held {
        stamp: Stamp::current(),
        files: Mutex::default(),
    });
    let previous = HELD.compare_and_swap(&current, Some(Arc::clone(&fresh)));
    let swapped = match (&*previous, &current) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if !swapped {
        return held_here();
    }
    if let Some(parent) = current {
        // Closing the child's copies releases nothing the parent still holds open.
        // (Were the map locked by a parent thread at the fork, it is left alone.)
        if let Some(mut files) = parent.files.try_lock() {
            files.clear();
        }
    }
    fresh
}

/// A held lock file, unlocked explicitly and closed when dropped, by the process that
/// took it (see [`Held`]).
struct FileLock {
    held: Arc<Held>,
    id: u64,
}

impl FileLock {
    fn new(file: File) -> FileLock {
        let held = held_here();
        let id = NEXT_LOCK.fetch_add(1, Ordering::Relaxed);
        held.files.lock().insert(id, file);
        FileLock { held, id }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if self.held.stamp != Stamp::current() {
            return;
        }
        if let Some(file) = self.held.files.lock().remove(&self.id) {
            let _ = file.unlock();
        }
    }
}

/// Refuses a directory another user could write to (group- or world-writable) or that
/// another user owns: a token planted there would be adopted as this user's.
#[cfg(unix)]
fn check_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|e| unusable(dir, &e))?;
    let refuse = |why: String| {
        Err(Error::config(format!(
            "the token store directory {} cannot be used: {why}",
            dir.display()
        )))
    };
    let mode = meta.mode() & 0o7777;
    if !meta.is_dir() {
        return refuse("it is not a directory".into());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return refuse(format!(
            "it is owned by another user (uid {}, not {me}), who could plant or read tokens there",
            meta.uid()
        ));
    }
    let writable = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group- and world-writable",
        (true, false) => "group-writable",
        (false, true) => "world-writable",
        (false, false) => return Ok(()),
    };
    refuse(format!(
        "it is {writable} (mode {mode:04o}), so another user could plant or read tokens there \
         (make it private: chmod 700 {})",
        dir.display()
    ))
}

fn unusable(dir: &Path, e: &std::io::Error) -> Error {
    Error::config(format!(
        "the token store directory {} cannot be used: {e}",
        dir.display()
    ))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::store(format!("could not {what} {}: {}", path.display(), e.kind()))
}

impl TokenStore for FileStore {
    fn name(&self) -> &'static str {
        "file"
    }

    fn peek(&self, key: &StoreKey, _deadline: Instant) -> Option<Result<Option<StoredToken>>> {
        // Files are replaced by rename: a read never sees half of one. A corrupt file
        // is said by the locked read that follows, not on every peek.
        Some(self.read(key, false))
    }

    fn load(&self, _lock: &StoreLock, key: &StoreKey) -> Result<Option<StoredToken>> {
        self.read(key, true)
    }
    fn try_lock(&self, key: &StoreKey, _deadline: Instant) -> Result<Option<StoreLock>> {
        let (file, path) = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(StoreLock::new(FileLock::new(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_error("lock", &path, e)),
        }
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> Result<StoreLock> {
        let (file, path) = self.lock_file(key)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StoreLock::new(FileLock::new(file))),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(io_error("lock", &path, e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    message: format!(
                        "waited {:.1} s for another process's renewal (token store lock {})",
                        started.elapsed().as_secs_f64(),
                        path.display()
                    ),
                });
            }
            std::thread::sleep(left.min(LOCK_POLL));
        }
    }

    fn remove(&self, _lock: &StoreLock, key: &StoreKey) -> Result<()> {
        let path = self.path(key, "json");
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("remove", &path, e)),
        }
        #[cfg(unix)]
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync", &self.dir, e))?;
        Ok(())
    }

    fn save(&self, _lock: &StoreLock, key: &StoreKey, token: &StoredToken) -> Result<()> {
        let path = self.path(key, "json");
        let json = zeroize::Zeroizing::new(token.to_json());
        let mut tmp = tempfile::Builder::new()
            .prefix(".authcore-")
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(|e| io_error("create a file in", &self.dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_error("set permissions of", tmp.path(), e))?;
        }
        tmp.write_all(&json)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| io_error("write", &path, e))?;
        tmp.persist(&path)
            .map_err(|e| io_error("replace", &path, e.error))?;
        #[cfg(unix)]
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync", &self.dir, e))?;
        Ok(())
    }
}

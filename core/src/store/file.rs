//! [`FileStore`]: one file per credential under a directory, for the processes of one
//! machine.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Write};
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
    /// renewal. So is, on Unix, a path that another user could use to plant a token
    /// or read one, as OpenSSH's StrictModes refuses such a `~/.ssh`: a directory that
    /// is group- or world-writable or owned by another user; a symlink on the path
    /// owned by another user (other than root), who could point it elsewhere; or a
    /// parent directory, up to `/`, owned by another user (other than root) or
    /// group- or world-writable without the sticky bit (whose other users could
    /// rename the store away and put one of theirs in its place). `/tmp` (root's,
    /// sticky) is fine. The path is resolved once, here: every later file operation
    /// uses the resolved directory, so a symlink repointed afterwards changes nothing.
    pub fn new(dir: impl Into<PathBuf>) -> Result<FileStore> {
        let given = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&given).map_err(|e| unusable(&given, &e))?;
        #[cfg(unix)]
        check_symlinks(&given)?;
        let dir = std::fs::canonicalize(&given).map_err(|e| unusable(&given, &e))?;
        #[cfg(unix)]
        check_private(&given, &dir)?;
        tempfile::Builder::new()
            .prefix(".authcore-probe-")
            .tempfile_in(&dir)
            .map_err(|e| unusable(&given, &e))?;
        Ok(FileStore { dir })
    }

    /// The directory, resolved (symlinks followed once, when the store was made).
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
        let mut options = no_follow();
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
        let read = no_follow().read(true).open(&path).and_then(|mut file| {
            let mut bytes = zeroize::Zeroizing::new(Vec::new());
            file.read_to_end(&mut bytes).map(|_| bytes)
        });
        let bytes = match read {
            Ok(b) => b,
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

/// Options that open a file without following a symlink in its place (on Unix): the
/// directory is private, but a link planted in it is still not a file of the store's.
fn no_follow() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NOFOLLOW.bits() as i32,
    );
    options
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

/// Refuses a path with a symlink another user (other than root) owns: one of its
/// components, or what it ends in. Its owner decides where the path leads. (The
/// components are looked at as written; a symlink's own target is checked by where it
/// resolves to, in [`check_private`].)
#[cfg(unix)]
fn check_symlinks(given: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let absolute = std::path::absolute(given).map_err(|e| unusable(given, &e))?;
    let me = rustix::process::geteuid().as_raw();
    for prefix in absolute.ancestors() {
        let meta = std::fs::symlink_metadata(prefix).map_err(|e| unusable(given, &e))?;
        if meta.file_type().is_symlink() && meta.uid() != me && meta.uid() != 0 {
            return Err(refused(
                given,
                format!(
                    "{} is a symlink owned by another user (uid {}, not {me}), who could point \
                     it elsewhere",
                    prefix.display(),
                    meta.uid()
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses a directory another user could write to (group- or world-writable) or that
/// another user owns, and one whose parent directories (up to `/`) let another user
/// replace it: a token planted there would be adopted as this user's. `dir` is the
/// resolved path; `given` the one to name in errors.
#[cfg(unix)]
fn check_private(given: &Path, dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let named = |path: &Path| {
        if path == dir && given != dir {
            format!("{} (resolved to {})", given.display(), dir.display())
        } else {
            path.display().to_string()
        }
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| unusable(given, &e))?;
    let mode = meta.mode() & 0o7777;
    if !meta.is_dir() {
        return Err(refused(given, "it is not a directory".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refused(
            given,
            format!(
                "it is owned by another user (uid {}, not {me}), who could plant or read \
                 tokens there",
                meta.uid()
            ),
        ));
    }
    if let Some(writable) = writable_by_others(mode) {
        return Err(refused(
            given,
            format!(
                "it is {writable} (mode {mode:04o}), so another user could plant or read \
                 tokens there (make it private: chmod 700 {})",
                named(dir)
            ),
        ));
    }
    for parent in dir.ancestors().skip(1) {
        let meta = std::fs::symlink_metadata(parent).map_err(|e| unusable(given, &e))?;
        let mode = meta.mode() & 0o7777;
        if meta.uid() != me && meta.uid() != 0 {
            return Err(refused(
                given,
                format!(
                    "its parent directory {} is owned by another user (uid {}, not {me} or \
                     root), who could replace the store directory with one of theirs",
                    parent.display(),
                    meta.uid()
                ),
            ));
        }
        if mode & 0o1000 == 0 {
            if let Some(writable) = writable_by_others(mode) {
                return Err(refused(
                    given,
                    format!(
                        "its parent directory {} is {writable} without the sticky bit (mode \
                         {mode:04o}), so another user could replace the store directory with \
                         one of theirs",
                        parent.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Who besides the owner may write to a directory of `mode`, if anyone.
#[cfg(unix)]
fn writable_by_others(mode: u32) -> Option<&'static str> {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("group- and world-writable"),
        (true, false) => Some("group-writable"),
        (false, true) => Some("world-writable"),
        (false, false) => None,
    }
}

#[cfg(unix)]
fn refused(dir: &Path, why: String) -> Error {
    Error::config(format!(
        "the token store directory {} cannot be used: {why}",
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

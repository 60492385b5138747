//! [`FileStore`]: one file per credential under a directory, for the processes of one
//! machine.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind as IoKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{StoreKey, StoreLock, StoredToken, TokenStore};
use crate::error::{Error, Result};

/// Longest pause between two attempts to take a file lock held by another process.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// Tokens shared by the processes of one machine: a file per credential under a
/// directory (mode 0700), each replaced atomically (an exclusive temporary file in the
/// same directory, mode 0600, fsynced, renamed over the old one, the directory fsynced),
/// and a lock file per credential held across a renewal. A process killed while holding
/// the lock never blocks the others: the operating system releases it. The lock is
/// released explicitly, not by closing the file: a child forked while the lock was held
/// shares the open file and would otherwise hold the lock for as long as it lives. A
/// corrupt or truncated file is reported (logged) and read as empty.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir`, created (mode 0700) if missing. A directory that cannot be
    /// written is a [`Config`](crate::ErrorKind::Config) error now, not at the first
    /// renewal.
    pub fn new(dir: impl Into<PathBuf>) -> Result<FileStore> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|e| unusable(&dir, &e))?;
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

    fn read(&self, key: &StoreKey) -> Result<Option<StoredToken>> {
        let path = self.path(key, "json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == IoKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        let stored = StoredToken::from_json(&bytes);
        if stored.is_none() {
            crate::events::event!(warn, "store.corrupt", store = "file";
                "token store file {} is corrupt or truncated; treated as empty",
                path.display()
            );
        }
        Ok(stored)
    }
}

/// A held lock file, unlocked explicitly when dropped (see [`FileStore`]).
struct FileLock(File);

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
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

    fn peek(&self, key: &StoreKey) -> Option<Result<Option<StoredToken>>> {
        // Files are replaced by rename: a read never sees half of one.
        Some(self.read(key))
    }

    fn load(&self, _lock: &StoreLock, key: &StoreKey) -> Result<Option<StoredToken>> {
        self.read(key)
    }
    fn try_lock(&self, key: &StoreKey, _deadline: Instant) -> Result<Option<StoreLock>> {
        let (file, path) = self.lock_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(StoreLock::new(FileLock(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_error("lock", &path, e)),
        }
    }

    fn lock(&self, key: &StoreKey, deadline: Instant) -> Result<StoreLock> {
        let (file, path) = self.lock_file(key)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StoreLock::new(FileLock(file))),
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

//! The store's files and their protection: the writer queue (`<store>-wlock`,
//! the exclusive `flock` writers queue on) and the `0600`/`0700` modes of
//! the store's files and directory, tightened when found looser.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::{Shared, BUSY_TIMEOUT};
use crate::Result;

/// The writer queue's file: `<store>-wlock` next to the store.
fn write_queue_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wlock");
    PathBuf::from(name)
}

/// Opens the writer queue's file (created `0600`, tightened when looser).
pub(super) fn open_write_queue(path: &Path) -> Option<std::fs::File> {
    let name = write_queue_path(path);
    match crate::lockfile::open_private_file(&name) {
        Ok(file) => {
            tighten_file(&name);
            Some(file)
        }
        Err(error) => {
            debug!(%error, "no writer queue file; SQLite's busy handler orders writers");
            None
        }
    }
}

/// Waits, at most [`BUSY_TIMEOUT`], for this process's turn to write
/// (released on drop). `Ok(None)` when there is no queue file or `flock`
/// itself fails (e.g. a filesystem without locks): the write goes ahead and
/// SQLite's own locking (busy_timeout) still keeps it correct. A holder that
/// keeps the lock past the bound is an error naming the file and the holder.
pub(super) fn queue_for_write(shared: &Shared) -> Result<Option<crate::lockfile::LockGuard>> {
    use crate::lockfile::{lock_exclusive, LockError};
    let Some(file) = shared.write_queue.as_ref() else {
        return Ok(None);
    };
    let path = write_queue_path(&shared.path);
    match lock_exclusive(file, &path, BUSY_TIMEOUT) {
        Ok(guard) => Ok(Some(guard)),
        Err(e @ LockError::Timeout(_)) => Err(e.into()),
        Err(error) => {
            debug!(%error, "writer queue lock failed; relying on busy_timeout");
            Ok(None)
        }
    }
}

/// Mode bits nobody but the owner may have on the store's files.
const PRIVATE_MASK: u32 = 0o077;

/// Makes one of the store's files `0600` if it exists and is looser.
pub(super) fn tighten_file(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & PRIVATE_MASK == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => warn!(
            path = %path.display(),
            was = format!("{mode:o}"),
            "the embedded store's file was readable by other users; made it 0600"
        ),
        Err(error) => warn!(
            path = %path.display(),
            was = format!("{mode:o}"),
            %error,
            "the embedded store's file is readable by other users and could not be made 0600"
        ),
    }
}

/// The store's own files: the database, its WAL, shared memory, journal
/// and the writer queue.
pub(super) fn store_files(path: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal", "-wlock"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

/// Makes the store's directory `0700` when it is looser, ours, not a shared
/// (sticky) directory, and holds nothing but the store's files; warns
/// otherwise.
pub(super) fn tighten_dir(dir: &Path, store: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & PRIVATE_MASK == 0 {
        return;
    }
    let ours = meta.uid() == nix::unistd::geteuid().as_raw();
    let sticky = mode & 0o1000 != 0;
    let own_files = store_files(store);
    let only_store = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .all(|e| own_files.contains(&e.path()))
    });
    if ours && !sticky && only_store {
        match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
            Ok(()) => warn!(
                dir = %dir.display(),
                was = format!("{mode:o}"),
                "the embedded store's directory was open to other users; made it 0700"
            ),
            Err(error) => {
                warn!(dir = %dir.display(), %error, "could not make the store's directory 0700")
            }
        }
    } else {
        warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the embedded store's directory is open to other users and holds other files, so it \
             was left as it is; the store's own files are 0600 (a private directory is better)"
        );
    }
}

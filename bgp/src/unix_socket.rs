//! Owning a Unix socket's path safely: `brindle-bgpd`'s control socket and
//! `brindle-node`'s status socket (the agent uses this module too).
//!
//! Contract:
//! * [`bind`] creates the socket only where nothing is, or where a *stale*
//!   socket is (a socket file no process answers on, left by a daemon that
//!   died). A regular file, a directory, a symlink or anything else is
//!   refused and left alone; so is a socket a live process answers on (a
//!   second daemon must not take the first one's socket over).
//! * The returned [`SocketPath`] removes the path on drop only if it is
//!   still the socket this process created (same device, inode and change
//!   time, still a socket): a path someone else re-created meanwhile is not
//!   ours to delete.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why a socket path could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    /// A process answers on the socket already.
    #[error("{} is the socket of a running process (another instance?); not taking it over", path.display())]
    InUse { path: PathBuf },
    /// Something that is not a socket is at the path.
    #[error("{} exists and is not a socket ({what}); not removing it", path.display())]
    NotASocket { path: PathBuf, what: &'static str },
    /// Creating the directory, removing a stale socket or binding failed.
    #[error("socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The socket file this process created; removed on drop while it is still
/// that file.
#[derive(Debug)]
pub struct SocketPath {
    path: PathBuf,
    identity: Identity,
}

/// What tells our socket file from one made later at the same path (an
/// inode number alone is reused as soon as it is freed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
    socket: bool,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            socket: meta.file_type().is_socket(),
        }
    }
}

impl SocketPath {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if Identity::of(&meta) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds a listening Unix stream socket at `path` (creating its directory),
/// under the rules of the module docs.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketPath), SocketPathError> {
    let io = |source| SocketPathError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            let kind = meta.file_type();
            if !kind.is_socket() {
                let what = if kind.is_file() {
                    "a regular file"
                } else if kind.is_dir() {
                    "a directory"
                } else if kind.is_symlink() {
                    "a symbolic link"
                } else {
                    "not a socket"
                };
                return Err(SocketPathError::NotASocket {
                    path: path.to_path_buf(),
                    what,
                });
            }
            if UnixStream::connect(path).is_ok() {
                return Err(SocketPathError::InUse {
                    path: path.to_path_buf(),
                });
            }
            // Stale: its process is gone.
            std::fs::remove_file(path).map_err(io)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    Ok((
        listener,
        SocketPath {
            path: path.to_path_buf(),
            identity: Identity::of(&meta),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        std::fs::write(&path, "precious").unwrap();
        let err = bind(&path).unwrap_err();
        assert!(matches!(err, SocketPathError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn a_live_socket_is_refused_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (live, owned) = bind(&path).unwrap();
        assert!(matches!(
            bind(&path).unwrap_err(),
            SocketPathError::InUse { .. }
        ));
        // The first owner goes away without cleaning up: the socket is stale.
        drop(live);
        std::mem::forget(owned);
        let (_again, owned) = bind(&path).unwrap();
        drop(owned);
        assert!(!path.exists(), "removed on drop");
    }

    #[test]
    fn drop_leaves_a_path_someone_else_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (listener, owned) = bind(&path).unwrap();
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        drop(owned);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
    }
}

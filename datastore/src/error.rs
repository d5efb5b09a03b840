//! The one error type of the datastore, shared by both backends so callers
//! match on the same variants whatever the backend.

use crate::kv::{display_key, Revision};

/// Everything a datastore operation can fail with.
///
/// The first group (`AlreadyExists`, `NotFound`, `Conflict`, `Compacted`) are
/// *outcomes* callers are expected to handle (retry, re-list); the rest are
/// failures to report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `create` found the key already present.
    #[error("key {key} already exists", key = display_key(key))]
    AlreadyExists { key: Vec<u8> },

    /// The key an operation needs is absent.
    #[error("key {key} not found", key = display_key(key))]
    NotFound { key: Vec<u8> },

    /// A compare-and-swap lost: the key's `mod_revision` was not the expected
    /// one (`found` is 0 when the key is absent). Re-read and retry.
    #[error(
        "revision conflict on {key}: expected mod_revision {expected}, found {found}",
        key = display_key(key)
    )]
    Conflict {
        key: Vec<u8>,
        expected: Revision,
        found: Revision,
    },

    /// A watch asked for history that compaction has already removed. The
    /// caller must re-list (which gives a fresh revision) and watch from there.
    #[error(
        "watch from revision {requested} is no longer possible: history before revision \
         {compact_revision} was compacted; re-list and watch again"
    )]
    Compacted {
        requested: Revision,
        compact_revision: Revision,
    },

    /// A datastore URL (flag `--datastore` or env `BRINDLE_DATASTORE`) is malformed.
    #[error("invalid datastore URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The request itself is malformed (empty key, a key twice in one transaction, …).
    #[error("invalid datastore request: {0}")]
    InvalidRequest(String),

    /// The embedded store's SQLite file failed.
    #[error("embedded datastore {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },

    /// Setting up the embedded store's file or directory failed.
    #[error("embedded datastore {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// An etcd request failed (unreachable endpoints, auth, TLS, …).
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: Box<etcd_client::Error>,
    },

    /// Reading a TLS file named in the datastore URL failed.
    #[error("cannot read TLS {what} file {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A stored value is not the JSON the caller expected.
    #[error("value at {key} does not decode as {type_name}: {source}", key = display_key(key))]
    Decode {
        key: Vec<u8>,
        type_name: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A value could not be encoded as JSON.
    #[error("cannot encode value for {key} as JSON: {source}", key = display_key(key))]
    Encode {
        key: Vec<u8>,
        #[source]
        source: serde_json::Error,
    },

    /// A read-modify-write kept losing races.
    #[error(
        "gave up updating {key} after {attempts} revision conflicts",
        key = display_key(key)
    )]
    TooManyConflicts { key: Vec<u8>, attempts: u32 },

    /// The embedded store's writer lock was not had in time (or at all).
    #[error(transparent)]
    Lock(#[from] crate::lockfile::LockError),

    /// The embedded store's file does not exist and the caller only reads.
    #[error(
        "embedded datastore {path} does not exist (check the path; `brindlectl apply` creates it)"
    )]
    NoStore { path: String },

    /// A file that is not a Brindle store (another program's SQLite database).
    #[error("{path} is not a Brindle store: {reason}; refusing to add Brindle's tables to it")]
    ForeignFile { path: String, reason: String },

    /// A blocking worker of the embedded store panicked or was cancelled.
    #[error("embedded datastore worker failed: {0}")]
    Worker(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether retrying the same operation later may succeed (the backend was
    /// unreachable or busy), as opposed to an answer or a caller bug.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Etcd { source, .. } => match &**source {
                etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
                // gRPC codes (stable across gRPC implementations): Cancelled,
                // Unknown, DeadlineExceeded, ResourceExhausted, Aborted, Unavailable.
                etcd_client::Error::GRpcStatus(s) => {
                    matches!(s.code() as i32, 1 | 2 | 4 | 8 | 10 | 14)
                }
                _ => false,
            },
            Error::Lock(crate::lockfile::LockError::Timeout(_)) => true,
            Error::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }
}

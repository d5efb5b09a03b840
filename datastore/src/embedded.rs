//! The embedded backend: one SQLite file that every Brindle process on a host
//! shares (node daemons, `brindlectl`, `brindle-cni`), with etcd semantics.
//!
//! Layout (schema version 1):
//!
//! ```text
//! meta(name, value)             'schema' = 1, 'revision' = current revision,
//!                               'compacted' = oldest revision still in the log
//! kv(key, value, create_rev, mod_rev, version)        live keys (WITHOUT ROWID)
//! log(rev, seq, kind, key, value, create_rev, version) one row per change,
//!                               primary key (rev, seq): what watches replay
//! ```
//!
//! Concurrency: the file is in WAL mode so readers never block the writer.
//! Every write runs in `BEGIN IMMEDIATE`, which takes the database write lock
//! *before* reading the revision and evaluating compares, so transactions from
//! different processes serialize instead of failing mid-way. Writers queue on
//! an exclusive `flock(2)` of a sidecar file (`<store>-wlock`) before they
//! begin: the kernel hands the lock to the next waiter the moment it is
//! released, where SQLite's own busy handler sleeps 1, 2, 5, … up to 100 ms
//! between attempts (long tails with many writers, e.g. 50 CNI ADDs at once).
//! `busy_timeout` stays as the fallback for writers that do not take the queue
//! (older binaries; checkpoints). A process *stopped* (not killed) inside a
//! write transaction holds the queue until it continues or dies; a killed one
//! releases it at once.
//! Reads, and transactions that only read ([`TxnOp::Get`] and compares), run
//! in a deferred transaction so the revision and the rows come from one
//! snapshot, without the write lock.
//!
//! Opening is read-only when the schema is already there, and a closing
//! connection does not checkpoint (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`): a
//! short-lived process such as `brindle-cni` neither takes the write lock to
//! open nor copies the WAL back and deletes it on exit (the WAL is
//! checkpointed by SQLite's automatic checkpoints as it grows).
//!
//! Watches read the log (`WHERE rev >= ?` on the primary key) when woken: a
//! write from the same process wakes them at once, and while any watch exists
//! one ticker task per process reads the revision when the store's directory
//! reports a modified file (inotify: another process wrote the WAL) and at
//! least every [`POLL_INTERVAL`], and wakes them when another process wrote.
//! Writes compact the log to the last `history` revisions; a watch from before
//! the oldest kept revision gets [`Error::Compacted`].
//!
//! Access: the store holds every resource and all of IPAM, and its writer
//! lock stalls every writer while held, so only its owner may open either.
//! A new store's directory is made `0700` and its files `0600` (the
//! database first, so SQLite gives the WAL and shared-memory files the same
//! mode); an existing one found looser is tightened on open with a warning
//! (the directory only when it holds nothing but the store, so pointing a
//! store at a shared directory never changes that directory). The writer
//! queue is taken with a bounded wait ([`BUSY_TIMEOUT`]); past it the write
//! fails naming the lock file and its holder. A file that exists but is
//! another program's SQLite database is refused, not extended.
//!
//! Durability: `synchronous=NORMAL` (WAL): a committed write survives a crash
//! of any process, but the last few may be lost on power failure.
//!
//! rusqlite is blocking, so each operation runs on tokio's blocking pool
//! holding this process's single connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::FutureExt;
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tracing::{debug, debug_span, warn, Instrument};

use crate::config::EmbeddedConfig;
use crate::kv::{
    prefix_range_end, Event, EventKind, KeyValue, Listing, Revision, Txn, TxnOp, TxnOpResult,
    TxnResponse,
};
use crate::store::Backend;
use crate::{Error, Result};

/// How often a watch looks for changes made by other processes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// How long a write waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Compaction runs when the revision is a multiple of this (cheap amortised).
const COMPACT_EVERY: i64 = 64;

/// At most this many revisions are read per watch poll.
const WATCH_BATCH_REVISIONS: i64 = 1000;

const SCHEMA_VERSION: i64 = 1;

/// The embedded backend. Cloning the [`crate::Datastore`] holding it shares
/// one connection.
#[derive(Debug)]
pub struct EmbeddedBackend {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    history: i64,
    conn: Mutex<Connection>,
    /// The sidecar file writers queue on (`None`: it could not be opened;
    /// SQLite's busy handler alone orders writers then).
    write_queue: Option<std::fs::File>,
    /// Latest revision this process knows of, from its own writes or from
    /// the ticker; every watch of this process waits on it.
    latest: tokio::sync::watch::Sender<Revision>,
    /// Whether the ticker task (polling for other processes' writes) runs.
    ticking: std::sync::atomic::AtomicBool,
}

impl EmbeddedBackend {
    /// Opens (creating if needed, with parent directories) the store file.
    pub async fn open(config: &EmbeddedConfig) -> Result<Self> {
        let path = config.path.clone();
        let history = config.history;
        let must_exist = config.must_exist;
        let span = debug_span!("embedded_open", path = %path.display());
        let conn = tokio::task::spawn_blocking(move || open_connection(&path, must_exist))
            .instrument(span)
            .await
            .map_err(|e| Error::Worker(e.to_string()))??;
        let (latest, _) = tokio::sync::watch::channel(0);
        let write_queue = open_write_queue(&config.path);
        Ok(EmbeddedBackend {
            shared: Arc::new(Shared {
                path: config.path.clone(),
                history,
                conn: Mutex::new(conn),
                write_queue,
                latest,
                ticking: Default::default(),
            }),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    fn with_conn<T, F>(&self, op: &'static str, f: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Shared) -> rusqlite::Result<Result<T>> + Send + 'static,
    {
        run_blocking(self.shared.clone(), op, Access::Read, f)
    }

    /// [`Self::with_conn`] for a write: first waits its turn in the
    /// cross-process writer queue.
    fn with_write_conn<T, F>(&self, op: &'static str, f: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Shared) -> rusqlite::Result<Result<T>> + Send + 'static,
    {
        run_blocking(self.shared.clone(), op, Access::Write, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// The writer queue's file: `<store>-wlock` next to the store.
fn write_queue_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wlock");
    PathBuf::from(name)
}

/// Opens the writer queue's file (created `0600`, tightened when looser).
fn open_write_queue(path: &Path) -> Option<std::fs::File> {
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
fn queue_for_write(shared: &Shared) -> Result<Option<crate::lockfile::LockGuard>> {
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
fn tighten_file(path: &Path) {
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
fn store_files(path: &Path) -> Vec<PathBuf> {
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
fn tighten_dir(dir: &Path, store: &Path) {
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

fn run_blocking<T, F>(
    shared: Arc<Shared>,
    op: &'static str,
    access: Access,
    f: F,
) -> BoxFuture<'static, Result<T>>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection, &Shared) -> rusqlite::Result<Result<T>> + Send + 'static,
{
    let span = debug_span!("embedded", op, path = %shared.path.display());
    async move {
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written
            // (the transaction rolls back on drop), so a poisoned lock is safe to reuse.
            let mut conn = shared.conn.lock().unwrap_or_else(|p| p.into_inner());
            // Taken after the connection mutex so a process queues once,
            // and held until the transaction has committed.
            let _turn = match access {
                Access::Write => queue_for_write(&shared)?,
                Access::Read => None,
            };
            match f(&mut conn, &shared) {
                Ok(r) => r,
                Err(source) => Err(Error::Sqlite {
                    path: shared.path.display().to_string(),
                    source,
                }),
            }
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))?
    }
    .instrument(span)
    .boxed()
}

fn open_connection(path: &Path, must_exist: bool) -> Result<Connection> {
    let shown = path.display().to_string();
    let sqlite_err = |source| Error::Sqlite {
        path: shown.clone(),
        source,
    };
    if must_exist && !path.exists() {
        return Err(Error::NoStore { path: shown });
    }
    if let Some(dir) = path.parent().filter(|d| d.exists()) {
        tighten_dir(dir, path);
    }
    // Created 0600 (and a missing directory 0700) before SQLite sees it:
    // SQLite gives the WAL and the shared-memory file the database's mode.
    crate::lockfile::open_private_file(path).map_err(|source| Error::Io {
        path: shown.clone(),
        source,
    })?;
    for file in store_files(path) {
        tighten_file(&file);
    }
    let mut conn = Connection::open(path).map_err(sqlite_err)?;
    refuse_foreign(&conn, &shown)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err)?;
    // Switching to WAL needs a moment of exclusive access; when several
    // processes open a fresh file at once the busy handler covers it.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sqlite_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Io {
            path: shown,
            source: std::io::Error::other(format!(
                "cannot enable WAL mode (got {mode:?}); is the file on a network filesystem?"
            )),
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite_err)?;
    // A short-lived process (brindle-cni) would otherwise copy the WAL into
    // the database, fsync and delete the WAL on every exit.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(sqlite_err)?;
    // The common case, an existing store, needs no write lock to open.
    let existing: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()
        .unwrap_or(None);
    if existing == Some(SCHEMA_VERSION) {
        return Ok(conn);
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS kv (
             key BLOB PRIMARY KEY, value BLOB NOT NULL,
             create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, version INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS log (
             rev INTEGER NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
             key BLOB NOT NULL, value BLOB NOT NULL,
             create_rev INTEGER NOT NULL, version INTEGER NOT NULL,
             PRIMARY KEY (rev, seq)
         ) WITHOUT ROWID;
         INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('compacted', 0);",
    )
    .map_err(sqlite_err)?;
    let schema: Option<i64> = tx
        .query_row("SELECT value FROM meta WHERE name = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sqlite_err)?;
    match schema {
        None => {
            tx.execute("INSERT INTO meta VALUES ('schema', ?1)", [SCHEMA_VERSION])
                .map_err(sqlite_err)?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(Error::Io {
                path: shown,
                source: std::io::Error::other(format!(
                "store schema version {other} is not supported (this build knows {SCHEMA_VERSION})"
            )),
            })
        }
    }
    tx.commit().map_err(sqlite_err)?;
    Ok(conn)
}

/// Brindle's tables, and SQLite's own.
const OWN_TABLES: [&str; 3] = ["meta", "kv", "log"];

/// Refuses a database that has tables of its own: another program's file
/// named by a mistyped URL must not get Brindle's tables added to it.
fn refuse_foreign(conn: &Connection, shown: &str) -> Result<()> {
    let sqlite_err = |source| Error::Sqlite {
        path: shown.to_owned(),
        source,
    };
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => Error::ForeignFile {
                path: shown.to_owned(),
                reason: "it is not an SQLite database".into(),
            },
            _ => sqlite_err(e),
        })?;
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sqlite_err)?;
    let foreign: Vec<&String> = tables
        .iter()
        .filter(|t| !OWN_TABLES.contains(&t.as_str()))
        .collect();
    if !foreign.is_empty() {
        return Err(Error::ForeignFile {
            path: shown.to_owned(),
            reason: format!(
                "it holds other tables ({})",
                foreign
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(())
}

fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
        r.get(0)
    })
}

fn set_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE meta SET value = ?2 WHERE name = ?1",
        params![name, value],
    )
    .map(drop)
}

fn row_to_kv(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: r.get(0)?,
        value: r.get(1)?,
        create_revision: r.get(2)?,
        mod_revision: r.get(3)?,
        version: r.get(4)?,
    })
}

fn get_kv(conn: &Connection, key: &[u8]) -> rusqlite::Result<Option<KeyValue>> {
    conn.query_row(
        "SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key = ?1",
        [key],
        row_to_kv,
    )
    .optional()
}

fn range_kvs(conn: &Connection, prefix: &[u8]) -> rusqlite::Result<Vec<KeyValue>> {
    // BLOBs compare with memcmp, which is etcd's key order.
    match prefix_range_end(prefix) {
        Some(end) => conn
            .prepare_cached(
                "SELECT key, value, create_rev, mod_rev, version FROM kv
                 WHERE key >= ?1 AND key < ?2 ORDER BY key",
            )?
            .query_map(params![prefix, end], row_to_kv)?
            .collect(),
        None => conn
            .prepare_cached(
                "SELECT key, value, create_rev, mod_rev, version FROM kv
                 WHERE key >= ?1 ORDER BY key",
            )?
            .query_map([prefix], row_to_kv)?
            .collect(),
    }
}

fn log_event(
    conn: &Connection,
    rev: Revision,
    seq: &mut i64,
    kind: EventKind,
    kv: &KeyValue,
) -> rusqlite::Result<()> {
    let kind = match kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    };
    conn.prepare_cached(
        "INSERT INTO log (rev, seq, kind, key, value, create_rev, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![rev, *seq, kind, kv.key, kv.value, kv.create_revision, kv.version])?;
    *seq += 1;
    Ok(())
}

fn delete_kv(
    conn: &Connection,
    rev: Revision,
    seq: &mut i64,
    prev: &KeyValue,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
        .execute([&prev.key])?;
    let tombstone = KeyValue {
        key: prev.key.clone(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: rev,
        version: 0,
    };
    log_event(conn, rev, seq, EventKind::Delete, &tombstone)
}

/// Whether `txn` only reads (compares and gets, whichever branch runs).
fn is_read_only(txn: &Txn) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .all(|op| matches!(op, TxnOp::Get { .. }))
}

/// Applies a transaction under the database write lock, taken before the
/// compares are read so no other process can slip a write in between. A
/// transaction that only reads runs in a deferred (snapshot) transaction
/// instead: it changes nothing, so it needs no lock.
fn apply_txn(conn: &mut Connection, history: i64, txn: Txn) -> rusqlite::Result<TxnResponse> {
    let behavior = if is_read_only(&txn) {
        TransactionBehavior::Deferred
    } else {
        TransactionBehavior::Immediate
    };
    let tx = conn.transaction_with_behavior(behavior)?;
    let current = meta(&tx, "revision")?;
    let mut succeeded = true;
    for c in &txn.compares {
        if !c.holds(get_kv(&tx, &c.key)?.as_ref()) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { txn.success } else { txn.failure };
    let rev = current + 1;
    let mut seq = 0;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            TxnOp::Get { key } => results.push(TxnOpResult::Get(get_kv(&tx, &key)?)),
            TxnOp::Put { key, value } => {
                let prev = get_kv(&tx, &key)?;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                    mod_revision: rev,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                };
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev, version) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version])?;
                log_event(&tx, rev, &mut seq, EventKind::Put, &kv)?;
                results.push(TxnOpResult::Put(kv));
            }
            TxnOp::Delete { key } => {
                let prev = get_kv(&tx, &key)?;
                if let Some(p) = &prev {
                    delete_kv(&tx, rev, &mut seq, p)?;
                }
                results.push(TxnOpResult::Deleted(prev.into_iter().collect()));
            }
            TxnOp::DeletePrefix { prefix } => {
                let prevs = range_kvs(&tx, &prefix)?;
                for p in &prevs {
                    delete_kv(&tx, rev, &mut seq, p)?;
                }
                results.push(TxnOpResult::Deleted(prevs));
            }
        }
    }
    let revision = if seq > 0 {
        set_meta(&tx, "revision", rev)?;
        if rev % COMPACT_EVERY == 0 {
            compact_log(&tx, rev - history)?;
        }
        rev
    } else {
        current
    };
    tx.commit()?;
    Ok(TxnResponse {
        succeeded,
        revision,
        results,
    })
}

/// Drops log entries before `keep_from`; returns the new oldest kept revision.
fn compact_log(conn: &Connection, keep_from: Revision) -> rusqlite::Result<Revision> {
    let compacted = meta(conn, "compacted")?;
    if keep_from <= compacted {
        return Ok(compacted);
    }
    let n = conn.execute("DELETE FROM log WHERE rev < ?1", [keep_from])?;
    set_meta(conn, "compacted", keep_from)?;
    debug!(keep_from, removed = n, "compacted watch history");
    Ok(keep_from)
}

/// One poll of the log: the events in `[next, …]` matching the prefix, and the
/// revision to poll from next time.
fn poll_log(
    conn: &mut Connection,
    prefix: &[u8],
    next: Revision,
) -> rusqlite::Result<Result<(Vec<Event>, Revision)>> {
    let tx = conn.transaction()?;
    let current = meta(&tx, "revision")?;
    let compacted = meta(&tx, "compacted")?;
    if next < compacted {
        return Ok(Err(Error::Compacted {
            requested: next,
            compact_revision: compacted,
        }));
    }
    if next > current {
        return Ok(Ok((Vec::new(), next)));
    }
    let upto = current.min(next + WATCH_BATCH_REVISIONS - 1);
    let end = prefix_range_end(prefix);
    let mut stmt = tx.prepare_cached(
        "SELECT kind, key, value, create_rev, rev, version FROM log
         WHERE rev >= ?1 AND rev <= ?2 AND key >= ?3 AND (?4 IS NULL OR key < ?4)
         ORDER BY rev, seq",
    )?;
    let events = stmt
        .query_map(params![next, upto, prefix, end], |r| {
            let kind: i64 = r.get(0)?;
            Ok(Event {
                kind: if kind == 0 {
                    EventKind::Put
                } else {
                    EventKind::Delete
                },
                kv: KeyValue {
                    key: r.get(1)?,
                    value: r.get(2)?,
                    create_revision: r.get(3)?,
                    mod_revision: r.get(4)?,
                    version: r.get(5)?,
                },
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(stmt);
    tx.commit()?;
    Ok(Ok((events, upto + 1)))
}

/// Starts the ticker unless it runs: one task per process that reads the
/// revision while any watch exists, when the store's directory reports a
/// write (another process appended to the WAL) and at least every
/// [`POLL_INTERVAL`], and wakes all watches when another process wrote, so
/// N watches cost one cheap query per change, not N log scans.
fn ensure_ticker(shared: &Arc<Shared>) {
    use std::sync::atomic::Ordering::SeqCst;
    if shared
        .ticking
        .compare_exchange(false, true, SeqCst, SeqCst)
        .is_err()
    {
        return;
    }
    let shared = shared.clone();
    let span = debug_span!("embedded_ticker", path = %shared.path.display());
    tokio::spawn(
        async move {
            let mut writes = DirectoryWrites::watch(&shared.path);
            let mut woken_by_write = false;
            loop {
                if shared.latest.receiver_count() == 0 {
                    shared.ticking.store(false, SeqCst);
                    // A watch may have subscribed after the count but before
                    // the store, and seen the ticker still running.
                    if shared.latest.receiver_count() == 0
                        || shared
                            .ticking
                            .compare_exchange(false, true, SeqCst, SeqCst)
                            .is_err()
                    {
                        return;
                    }
                }
                let newer = read_revision(&shared).await;
                if woken_by_write && !newer {
                    // The WAL's last frame is written just before the commit
                    // is published in the shared-memory index: look again
                    // once, shortly, rather than a whole interval later.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    read_revision(&shared).await;
                }
                woken_by_write = match writes.as_mut() {
                    Some(w) => tokio::select! {
                        woke = w.next() => woke,
                        _ = tokio::time::sleep(POLL_INTERVAL) => false,
                    },
                    None => {
                        tokio::time::sleep(POLL_INTERVAL).await;
                        false
                    }
                };
            }
        }
        .instrument(span),
    );
}

/// Reads the store's revision and wakes watches if it is newer than what
/// this process knew; whether it was.
async fn read_revision(shared: &Arc<Shared>) -> bool {
    let polled = run_blocking(shared.clone(), "tick", Access::Read, |conn, _| {
        meta(conn, "revision").map(Ok)
    })
    .await;
    match polled {
        Ok(revision) => shared.latest.send_if_modified(|latest| {
            let newer = revision > *latest;
            *latest = (*latest).max(revision);
            newer
        }),
        Err(_) => false,
    }
}

/// inotify on the store's directory: a file in it was written (the WAL,
/// by any process). Not a source of truth, only a prompt to look.
struct DirectoryWrites {
    fd: tokio::io::unix::AsyncFd<InotifyFd>,
}

struct InotifyFd(nix::sys::inotify::Inotify);

impl std::os::fd::AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl DirectoryWrites {
    /// `None` (polling only) when inotify is unavailable.
    fn watch(store: &Path) -> Option<Self> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let dir = match store.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let setup = || -> std::result::Result<Self, String> {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
                .map_err(|e| e.to_string())?;
            inotify
                .add_watch(dir, AddWatchFlags::IN_MODIFY)
                .map_err(|e| e.to_string())?;
            // `new` is deprecated for I/O safety (an fd closed while still
            // registered); the AsyncFd owns this one, so it cannot be.
            #[allow(deprecated)]
            let fd =
                tokio::io::unix::AsyncFd::new(InotifyFd(inotify)).map_err(|e| e.to_string())?;
            Ok(DirectoryWrites { fd })
        };
        match setup() {
            Ok(w) => Some(w),
            Err(error) => {
                debug!(%error, dir = %dir.display(), "no inotify; watches poll every {POLL_INTERVAL:?}");
                None
            }
        }
    }

    /// Waits for the next write; `true` when one came (`false`: the fd
    /// failed, treat as a plain tick).
    async fn next(&mut self) -> bool {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return false;
            };
            match ready.get_inner().0.read_events() {
                Ok(events) if !events.is_empty() => {
                    // Drain what else queued so one burst of writes is one wake-up.
                    while matches!(ready.get_inner().0.read_events(), Ok(e) if !e.is_empty()) {}
                    ready.clear_ready();
                    return true;
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
                Err(_) => return false,
            }
        }
    }
}

struct WatchState {
    shared: Arc<Shared>,
    prefix: Vec<u8>,
    /// First revision not yet delivered (0 until "now" is known).
    next: Revision,
    pending: std::collections::VecDeque<Event>,
    woken: tokio::sync::watch::Receiver<Revision>,
    finished: bool,
}

impl WatchState {
    async fn next_item(mut self) -> Option<(Result<Event>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some((Ok(ev), self));
            }
            if self.next == 0 {
                match run_blocking(
                    self.shared.clone(),
                    "watch_start",
                    Access::Read,
                    |conn, _| meta(conn, "revision").map(Ok),
                )
                .await
                {
                    Ok(current) => self.next = current + 1,
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(POLL_INTERVAL).await;
                        continue;
                    }
                    Err(e) => {
                        self.finished = true;
                        return Some((Err(e), self));
                    }
                }
            }
            // Mark the wake-up as seen *before* polling so a write that lands
            // during the poll still wakes us.
            self.woken.borrow_and_update();
            let prefix = self.prefix.clone();
            let next = self.next;
            let polled = run_blocking(
                self.shared.clone(),
                "watch_poll",
                Access::Read,
                move |conn, _| poll_log(conn, &prefix, next),
            )
            .await;
            match polled {
                Ok((events, next)) => {
                    let advanced = next > self.next;
                    self.next = next;
                    self.pending.extend(events);
                    if self.pending.is_empty() && !advanced {
                        // The ticker wakes us for other processes' writes; the
                        // timeout only guards against a ticker that died.
                        tokio::select! {
                            _ = self.woken.changed() => {}
                            _ = tokio::time::sleep(POLL_INTERVAL * 40) => {}
                        }
                    }
                }
                // Another process holding the lock longer than busy_timeout:
                // keep the watch alive and try again.
                Err(e) if e.is_transient() => tokio::time::sleep(POLL_INTERVAL).await,
                Err(e) => {
                    self.finished = true;
                    return Some((Err(e), self));
                }
            }
        }
    }
}

impl Backend for EmbeddedBackend {
    fn range(&self, key: Vec<u8>, prefix: bool) -> BoxFuture<'_, Result<Listing>> {
        self.with_conn("range", move |conn, _| {
            let tx = conn.transaction()?;
            let revision = meta(&tx, "revision")?;
            let kvs = if prefix {
                range_kvs(&tx, &key)?
            } else {
                get_kv(&tx, &key)?.into_iter().collect()
            };
            tx.commit()?;
            Ok(Ok(Listing { kvs, revision }))
        })
    }

    fn revision(&self) -> BoxFuture<'_, Result<Revision>> {
        self.with_conn("revision", |conn, _| meta(conn, "revision").map(Ok))
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        let access = if is_read_only(&txn) {
            Access::Read
        } else {
            Access::Write
        };
        run_blocking(
            self.shared.clone(),
            "txn",
            access,
            move |conn, shared: &Shared| {
                let resp = apply_txn(conn, shared.history, txn)?;
                shared.latest.send_if_modified(|latest| {
                    let newer = resp.revision > *latest;
                    *latest = (*latest).max(resp.revision);
                    newer
                });
                Ok(Ok(resp))
            },
        )
    }

    fn watch(&self, prefix: Vec<u8>, from_revision: Revision) -> BoxStream<'static, Result<Event>> {
        let state = WatchState {
            shared: self.shared.clone(),
            prefix,
            next: from_revision,
            pending: Default::default(),
            woken: self.shared.latest.subscribe(),
            finished: false,
        };
        ensure_ticker(&self.shared);
        Box::pin(futures::stream::unfold(state, WatchState::next_item))
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        self.with_write_conn("compact", move |conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = meta(&tx, "revision")?;
            if revision > current {
                return Ok(Err(Error::InvalidRequest(format!(
                    "cannot compact to revision {revision}: the store is at {current}"
                ))));
            }
            compact_log(&tx, revision)?;
            tx.commit()?;
            Ok(Ok(()))
        })
    }

    fn describe(&self) -> String {
        format!("embedded store {}", self.shared.path.display())
    }
}

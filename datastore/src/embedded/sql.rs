//! The SQL layer: opening the store's connection (pragmas, schema, refusing
//! another program's database) and the blocking queries over the `meta`, `kv`
//! and `log` tables that reads, transactions and compaction run.

use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tracing::debug;

use super::files::{store_files, tighten_dir, tighten_file};
use super::BUSY_TIMEOUT;
use crate::kv::{
    prefix_range_end, EventKind, KeyValue, Revision, Txn, TxnOp, TxnOpResult, TxnResponse,
};
use crate::{Error, Result};

/// Compaction runs when the revision is a multiple of this (cheap amortised).
const COMPACT_EVERY: i64 = 64;

const SCHEMA_VERSION: i64 = 1;

pub(super) fn open_connection(path: &Path, must_exist: bool) -> Result<Connection> {
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
    // Before anything reads the file: another process may hold it
    // exclusively for a moment (switching a fresh file to WAL).
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err)?;
    refuse_foreign(&conn, &shown)?;
    // Switching to WAL needs a moment of exclusive access. When several
    // processes open a fresh file at once the busy handler covers most of
    // it, but SQLite answers BUSY at once where waiting could deadlock (a
    // reader asking to upgrade): try again briefly then.
    let mut attempts = 0;
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && attempts < 100 =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other.map_err(sqlite_err)?,
        }
    };
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

pub(super) fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    // Cached: the revision is read on every watch prompt of every process.
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

fn set_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?
        .execute(params![name, value])
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

pub(super) fn get_kv(conn: &Connection, key: &[u8]) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached("SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key = ?1")?
        .query_row([key], row_to_kv)
        .optional()
}

pub(super) fn range_kvs(conn: &Connection, prefix: &[u8]) -> rusqlite::Result<Vec<KeyValue>> {
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
pub(super) fn is_read_only(txn: &Txn) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .all(|op| matches!(op, TxnOp::Get { .. }))
}

/// Applies a transaction under the database write lock, taken before the
/// compares are read so no other process can slip a write in between. A
/// transaction that only reads runs in a deferred (snapshot) transaction
/// instead: it changes nothing, so it needs no lock.
pub(super) fn apply_txn(
    conn: &mut Connection,
    history: i64,
    txn: Txn,
) -> rusqlite::Result<TxnResponse> {
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
pub(super) fn compact_log(conn: &Connection, keep_from: Revision) -> rusqlite::Result<Revision> {
    let compacted = meta(conn, "compacted")?;
    if keep_from <= compacted {
        return Ok(compacted);
    }
    let n = conn.execute("DELETE FROM log WHERE rev < ?1", [keep_from])?;
    set_meta(conn, "compacted", keep_from)?;
    debug!(keep_from, removed = n, "compacted watch history");
    Ok(keep_from)
}

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
//! Reads, and transactions that only read ([`TxnOp::Get`](crate::TxnOp::Get)
//! and compares), run in a deferred transaction so the revision and the rows
//! come from one snapshot, without the write lock.
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
//! reports a write to the store's files (inotify: another process wrote the
//! WAL; bursts coalesced to one read per 10 ms) and at least every
//! [`NOTIFIED_POLL_INTERVAL`] (every [`POLL_INTERVAL`] without inotify), and
//! wakes them when another process wrote.
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
//! queue is taken with a bounded wait (`BUSY_TIMEOUT`); past it the write
//! fails naming the lock file and its holder. A file that exists but is
//! another program's SQLite database is refused, not extended.
//!
//! Durability: `synchronous=NORMAL` (WAL): a committed write survives a crash
//! of any process, but the last few may be lost on power failure.
//!
//! rusqlite is blocking, so each operation runs on tokio's blocking pool
//! holding this process's single connection.
//!
//! Code: `files` holds the writer queue and the files' modes, `sql` the
//! connection, the schema and the queries; this module the backend, its
//! blocking runner and the watches.

mod files;
mod sql;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::FutureExt;
use rusqlite::{params, Connection, TransactionBehavior};
use tracing::{debug, debug_span, Instrument};

use self::files::{open_write_queue, queue_for_write};
use self::sql::{apply_txn, compact_log, get_kv, is_read_only, meta, open_connection, range_kvs};
use crate::config::EmbeddedConfig;
use crate::kv::{
    prefix_range_end, Event, EventKind, KeyValue, Listing, Revision, Txn, TxnResponse,
};
use crate::store::Backend;
use crate::{Error, Result};

/// How often a watch looks for changes made by other processes when
/// inotify is not available.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// With inotify, writes prompt the look; this poll is only a safety net.
/// (At 25 ms, 100 processes sharing a store made 4,000 reads a second
/// between them while nothing changed.)
pub const NOTIFIED_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reads prompted by writes are at least this far apart: a burst of writes
/// from other processes (a cold start of many nodes) costs one read per
/// gap instead of one per write, while a lone write is seen at once.
const MIN_PROMPTED_READ_GAP: Duration = Duration::from_millis(10);

/// How long a write waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many revisions are read per watch poll.
const WATCH_BATCH_REVISIONS: i64 = 1000;

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
/// write (another process appended to the WAL; at most one read per
/// [`MIN_PROMPTED_READ_GAP`]) and at least every
/// [`NOTIFIED_POLL_INTERVAL`] ([`POLL_INTERVAL`] without inotify), and wakes all watches when another process wrote, so
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
                let mut newer = read_revision(&shared).await;
                let read_at = tokio::time::Instant::now();
                // The WAL's last frame is written just before the commit is
                // published in the shared-memory index: a write that woke us
                // may not be visible yet. Look again shortly, a few times,
                // rather than a whole poll interval later.
                let mut pause = Duration::from_millis(1);
                while woken_by_write && !newer && pause <= Duration::from_millis(64) {
                    tokio::time::sleep(pause).await;
                    newer = read_revision(&shared).await;
                    pause *= 4;
                }
                woken_by_write = match writes.as_mut() {
                    Some(w) => tokio::select! {
                        woke = w.next() => woke,
                        _ = tokio::time::sleep(NOTIFIED_POLL_INTERVAL) => false,
                    },
                    None => {
                        tokio::time::sleep(POLL_INTERVAL).await;
                        false
                    }
                };
                if woken_by_write {
                    tokio::time::sleep_until(read_at + MIN_PROMPTED_READ_GAP).await;
                }
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

/// inotify on the store's directory: the store's WAL (or the database) was
/// written, by any process. Not a source of truth, only a prompt to look.
/// Writes to other files of the directory are ignored: each one would wake
/// every process that has the store open, twice (measured with 100 nodes
/// whose logs shared the store's directory).
struct DirectoryWrites {
    fd: tokio::io::unix::AsyncFd<InotifyFd>,
    /// File names in the directory that count: the database and its WAL.
    names: [std::ffi::OsString; 2],
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
            let database = store.file_name().unwrap_or_default().to_os_string();
            let mut wal = database.clone();
            wal.push("-wal");
            Ok(DirectoryWrites {
                fd,
                names: [database, wal],
            })
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
            // Drain everything queued, so one burst of writes is one wake-up.
            let mut ours = false;
            loop {
                match ready.get_inner().0.read_events() {
                    Ok(events) if !events.is_empty() => {
                        ours |= events.iter().any(|e| {
                            e.name
                                .as_ref()
                                .is_some_and(|n| self.names.iter().any(|m| m == n))
                        });
                    }
                    Ok(_) | Err(nix::errno::Errno::EAGAIN) => break,
                    Err(_) => return false,
                }
            }
            ready.clear_ready();
            if ours {
                return true;
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

//! The conformance suite against the embedded SQLite backend, plus what only
//! the embedded store has: automatic compaction and file handling.

mod conformance;

use brindle_datastore::{Datastore, DatastoreConfig, Error};
use conformance::Harness;
use futures::StreamExt;

/// A fresh store file in a private temp dir (removed on drop).
struct EmbeddedHarness {
    dir: tempfile::TempDir,
}

impl EmbeddedHarness {
    fn url(&self) -> String {
        format!("file://{}/store.db", self.dir.path().display())
    }
}

async fn make() -> EmbeddedHarness {
    EmbeddedHarness {
        dir: tempfile::Builder::new()
            .prefix(&format!("brindle-ds-{}-", std::process::id()))
            .tempdir()
            .unwrap(),
    }
}

impl Harness for EmbeddedHarness {
    async fn connect(&self) -> Datastore {
        Datastore::open(Some(&self.url())).await.unwrap()
    }

    async fn connect_direct(&self) -> Datastore {
        self.connect().await
    }

    fn url(&self) -> String {
        EmbeddedHarness::url(self)
    }

    fn cut(&self) {}

    fn restore(&self) {}
}

conformance_suite!(make);

#[tokio::test]
async fn old_history_is_compacted_automatically() {
    let h = make().await;
    let url = format!("{}?history=50", h.url());
    let ds = Datastore::open(Some(&url)).await.unwrap();
    let first = ds.put("/k", "0").await.unwrap().mod_revision;
    for i in 1..300 {
        ds.put("/k", i.to_string()).await.unwrap();
    }
    let mut w = ds.watch("/", first);
    match w.next().await {
        Some(Err(Error::Compacted {
            requested,
            compact_revision,
        })) => {
            assert_eq!(requested, first);
            let current = ds.revision().await.unwrap();
            assert!(compact_revision > first && compact_revision >= current - 50 - 64);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Recent history is still there.
    let current = ds.revision().await.unwrap();
    let mut w = ds.watch("/", current - 10);
    assert_eq!(w.next().await.unwrap().unwrap().revision(), current - 10);
}

#[tokio::test]
async fn creates_missing_directories_and_reopens_state() {
    let h = make().await;
    let url = format!("file://{}/a/b/store.db", h.dir.path().display());
    let ds = Datastore::open(Some(&url)).await.unwrap();
    let kv = ds.put("/persist", "yes").await.unwrap();
    drop(ds);
    let ds = Datastore::open(Some(&url)).await.unwrap();
    assert_eq!(ds.get("/persist").await.unwrap().unwrap(), kv);
    assert_eq!(ds.revision().await.unwrap(), kv.mod_revision);
    assert!(ds.describe().contains("a/b/store.db"));
}

#[tokio::test]
async fn unusable_path_names_the_file() {
    let h = make().await;
    let blocker = h.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let url = format!("file://{}/store.db", blocker.display());
    let err = Datastore::connect(&DatastoreConfig::from_url(&url).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_racing_to_create_a_fresh_file_agree() {
    // No process creates the file first: all of them race through schema
    // creation and the switch to WAL mode, then increment one counter.
    let h = make().await;
    let url = format!("file://{}/fresh/store.db", h.dir.path().display());
    let children = conformance::spawn_children(&url, "/race/", 4);
    conformance::await_children(children).await;
    let ds = Datastore::open(Some(&url)).await.unwrap();
    assert_eq!(
        conformance::read_counter(&ds, "/race/").await,
        (4 * conformance::CHILD_INCREMENTS, 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_relists_when_it_falls_behind_compaction() {
    let h = make().await;
    let ds = h.connect().await;
    ds.put("/f/a", "1").await.unwrap();
    let mut f = ds.follow("/f/");
    let mut state = Default::default();
    conformance::follow_until(&mut f, &mut state, &conformance::current(&ds, "/f/").await).await;
    // The embedded watch reads the log only when polled, so these are
    // compacted away before the follower can see them as events.
    ds.put("/f/b", "1").await.unwrap();
    ds.delete("/f/a").await.unwrap();
    ds.compact(ds.revision().await.unwrap()).await.unwrap();
    let want = conformance::current(&ds, "/f/").await;
    let snapshots = conformance::follow_until(&mut f, &mut state, &want).await;
    assert_eq!(snapshots, 1, "expected a re-list after compaction");
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A new store is private (directory 0700, files 0600); an existing one found
/// looser is tightened on open.
#[tokio::test]
async fn store_files_are_private_and_tightened_on_open() {
    let h = make().await;
    let dir = h.dir.path().join("state");
    let db = dir.join("store.db");
    let url = format!("file://{}", db.display());
    let ds = Datastore::open(Some(&url)).await.unwrap();
    ds.put("/k", "v").await.unwrap();
    assert_eq!(mode_of(&dir), 0o700);
    for suffix in ["", "-wal", "-shm", "-wlock"] {
        let file = dir.join(format!("store.db{suffix}"));
        assert_eq!(mode_of(&file), 0o600, "{}", file.display());
    }
    drop(ds);

    // Someone loosened everything: the next open tightens it again.
    set_mode(&dir, 0o755);
    for suffix in ["", "-wal", "-shm", "-wlock"] {
        set_mode(&dir.join(format!("store.db{suffix}")), 0o644);
    }
    let ds = Datastore::open(Some(&url)).await.unwrap();
    assert_eq!(ds.get("/k").await.unwrap().unwrap().value, b"v");
    assert_eq!(mode_of(&dir), 0o700);
    for suffix in ["", "-wal", "-shm", "-wlock"] {
        assert_eq!(mode_of(&dir.join(format!("store.db{suffix}"))), 0o600);
    }

    // A shared directory (it holds other files) is left as it is; the
    // store's own files are still private.
    let shared = h.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("other.txt"), "not ours").unwrap();
    set_mode(&shared, 0o755);
    let url = format!("file://{}/store.db", shared.display());
    Datastore::open(Some(&url))
        .await
        .unwrap()
        .put("/k", "v")
        .await
        .unwrap();
    assert_eq!(mode_of(&shared), 0o755);
    assert_eq!(mode_of(&shared.join("store.db")), 0o600);
}

/// `nobody` can neither read the store nor take its writer lock (which would
/// stall every writer on the host).
#[tokio::test]
async fn another_user_cannot_read_the_store_or_take_its_lock() {
    if !brindle_testbed::require::root() {
        return;
    }
    let h = make().await;
    // A traversable directory that also holds other files, so only the
    // files' own modes protect them.
    let dir = h.dir.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("other.txt"), "x").unwrap();
    set_mode(h.dir.path(), 0o755);
    set_mode(&dir, 0o755);
    let db = dir.join("store.db");
    let ds = Datastore::open(Some(&format!("file://{}", db.display())))
        .await
        .unwrap();
    ds.put("/secret", "ipam data").await.unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .args(args)
            .output()
            .unwrap()
    };
    // The check itself works: nobody reads the world-readable neighbour.
    assert!(as_nobody(&["cat", dir.join("other.txt").to_str().unwrap()])
        .status
        .success());
    for suffix in ["", "-wal", "-wlock"] {
        let file = dir.join(format!("store.db{suffix}"));
        let read = as_nobody(&["cat", file.to_str().unwrap()]);
        assert!(!read.status.success(), "nobody read {}", file.display());
    }
    let wlock = dir.join("store.db-wlock");
    let lock = as_nobody(&["flock", "-x", "-n", wlock.to_str().unwrap(), "true"]);
    assert!(
        !lock.status.success(),
        "nobody took the writer lock: {}",
        String::from_utf8_lossy(&lock.stderr)
    );
    // Writers are not stalled.
    ds.put("/after", "ok").await.unwrap();
}

/// A `file://` URL pointing at another program's SQLite database (or at a
/// file that is not a database) is refused and the file left untouched.
#[tokio::test]
async fn a_foreign_file_is_refused_not_extended() {
    let h = make().await;
    let foreign = h.dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ann');")
            .unwrap();
    }
    let err = Datastore::open(Some(&format!("file://{}", foreign.display())))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ForeignFile { .. }), "{err}");
    assert!(err.to_string().contains("users"), "{err}");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "no Brindle tables were added");

    let text = h.dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "just some text, long enough to have a header page? no.\n".repeat(200),
    )
    .unwrap();
    let err = Datastore::open(Some(&format!("file://{}", text.display())))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ForeignFile { .. }), "{err}");
}

/// A reader that asks for an existing store gets an error for a missing file
/// and creates nothing.
#[tokio::test]
async fn a_missing_store_is_an_error_for_readers() {
    let h = make().await;
    let db = h.dir.path().join("typo").join("store.db");
    let config = DatastoreConfig::from_url(&format!("file://{}", db.display()))
        .unwrap()
        .existing_only();
    let err = Datastore::connect(&config).await.unwrap_err();
    assert!(matches!(err, Error::NoStore { .. }), "{err}");
    assert!(!db.parent().unwrap().exists());
}

/// A small tmpfs mounted over a temp dir, unmounted on drop (also on panic).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        if !brindle_testbed::require::root() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("brindle-diskfull")
            .tempdir()
            .unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs");
        Some(SmallDisk { dir })
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount tmpfs");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The disk under the store fills up: the write that does not fit fails
/// with an error that says so, nothing written before is lost or corrupted
/// (a fresh process opens the store and reads every key back), and once
/// there is space again writes go through.
#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_loses_nothing() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let url = format!("file://{}/store.db", disk.dir.path().display());
    let ds = Datastore::open(Some(&url)).await.unwrap();
    let value = vec![b'x'; 8 * 1024];
    let mut written = 0usize;
    let error = loop {
        match ds.put(format!("/fill/{written:05}"), value.clone()).await {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(
            written < 10_000,
            "a 1 MiB disk took {written} writes of 8 KiB"
        );
    };
    let text = error.to_string();
    assert!(
        text.contains("full") || text.contains("space"),
        "the error should say the disk is full: {text}"
    );
    assert!(written > 0, "nothing fit at all");
    drop(ds);

    // Reopened (as a restarted daemon would): every acknowledged write is there.
    let ds = Datastore::open(Some(&url)).await.unwrap();
    let listing = ds.list("/fill/").await.unwrap();
    assert_eq!(listing.kvs.len(), written, "acknowledged writes lost");
    assert!(listing.kvs.iter().all(|kv| kv.value == value));

    // Space comes back: writing works again, and all of it reads back.
    disk.resize("8m");
    for i in 0..10 {
        ds.put(format!("/after/{i}"), value.clone()).await.unwrap();
    }
    assert_eq!(ds.list("/after/").await.unwrap().kvs.len(), 10);
    assert_eq!(ds.list("/fill/").await.unwrap().kvs.len(), written);
    println!("{written} writes of 8 KiB fit before: {text}");
}

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

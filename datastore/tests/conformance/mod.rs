//! The datastore conformance suite: one function per behaviour, run against
//! every backend (`tests/embedded.rs`, `tests/etcd.rs`) through the
//! [`conformance_suite!`] macro, so both backends are held to the same
//! contract.
//!
//! A backend's test file provides a [`Harness`]: how to open fresh handles on
//! one store, its URL (for child processes) and how to cut clients off from it
//! for a moment (to prove watches resume).

#![allow(dead_code)] // each test binary uses a different subset of helpers

pub mod proxy;

use std::time::Duration;

use brindle_datastore::{
    Compare, CompareOp, Datastore, Error, Event, EventKind, Revision, Swap, Txn, TxnOp, TxnOpResult,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// Liveness bound for anything we wait on (an event, a child process). Not a
/// performance assertion: it only turns a hang into a failure.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// What a backend's test file provides.
pub trait Harness {
    /// A new, independent handle on the store (what another process would open).
    /// Handles from here go through whatever [`Harness::cut`] interrupts.
    fn connect(&self) -> impl std::future::Future<Output = Datastore>;
    /// A handle that [`Harness::cut`] does not affect.
    fn connect_direct(&self) -> impl std::future::Future<Output = Datastore>;
    /// The store's URL as a child process would be given it.
    fn url(&self) -> String;
    /// Breaks the transport of every [`Harness::connect`] handle and refuses
    /// new connections until [`Harness::restore`]. A no-op where there is no
    /// transport (the embedded store's file cannot be "disconnected").
    fn cut(&self);
    fn restore(&self);
}

/// Expands to one `#[tokio::test]` per behaviour, each building its harness
/// with `$make` (an async fn returning a `Harness`).
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@tests $make;
            crud_and_revisions,
            list_isolates_prefixes,
            big_lists_are_complete,
            compare_and_swap,
            transactions_are_atomic,
            watch_delivers_in_order,
            watch_from_the_past_replays,
            watch_from_now,
            watch_resumes_after_disconnect,
            compaction_is_reported,
            concurrent_writers_lose_no_update,
            concurrent_processes_lose_no_update,
            typed_json_layer,
            follow_converges_across_compaction,
        );

        /// Not a test on its own: the body of the child processes spawned by
        /// `concurrent_processes_lose_no_update` (does nothing unless asked).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn conformance_child() {
            conformance::child_main().await;
        }
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make().await;
                conformance::$name(&harness).await;
            }
        )*
    };
}

/// A prefix no other test uses, so tests may share a store.
fn prefix(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "/brindle-test/{}-{}/{tag}/",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn next_event(w: &mut brindle_datastore::WatchStream) -> Event {
    match tokio::time::timeout(PATIENCE, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {PATIENCE:?}"),
    }
}

/// Asserts no event is ready right now, after giving a write that would have
/// produced one ample time to show up (a poll interval many times over).
async fn assert_quiet(w: &mut brindle_datastore::WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        panic!("unexpected watch item {item:?}");
    }
}

fn summary(ev: &Event) -> (EventKind, String, Vec<u8>, Revision) {
    (
        ev.kind,
        ev.kv.key_str().into_owned(),
        ev.kv.value.clone(),
        ev.revision(),
    )
}

pub async fn crud_and_revisions<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("crud");
    let k = format!("{p}key");

    let start = ds.revision().await.unwrap();
    assert!(ds.get(k.clone()).await.unwrap().is_none());
    assert_eq!(
        ds.revision().await.unwrap(),
        start,
        "reads must not bump the revision"
    );

    let created = ds.create(k.clone(), "v1").await.unwrap();
    assert_eq!(created.mod_revision, start + 1);
    assert_eq!(created.create_revision, start + 1);
    assert_eq!(created.version, 1);
    assert_eq!(ds.get(k.clone()).await.unwrap().unwrap(), created);

    match ds.create(k.clone(), "other").await {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, k.as_bytes()),
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(
        ds.revision().await.unwrap(),
        start + 1,
        "a failed create writes nothing"
    );

    let updated = ds.put(k.clone(), "v2").await.unwrap();
    assert_eq!(updated.create_revision, start + 1);
    assert_eq!(updated.mod_revision, start + 2);
    assert_eq!(updated.version, 2);
    assert_eq!(ds.get(k.clone()).await.unwrap().unwrap().value, b"v2");

    let gone = ds.delete(k.clone()).await.unwrap().expect("key existed");
    assert_eq!(gone.value, b"v2");
    assert_eq!(
        gone.mod_revision,
        start + 2,
        "delete returns the key as it was"
    );
    assert!(ds.get(k.clone()).await.unwrap().is_none());
    assert_eq!(ds.revision().await.unwrap(), start + 3);
    assert!(ds.delete(k.clone()).await.unwrap().is_none());
    assert_eq!(
        ds.revision().await.unwrap(),
        start + 3,
        "deleting nothing writes nothing"
    );

    let again = ds.create(k.clone(), "v3").await.unwrap();
    assert_eq!(
        (again.create_revision, again.version),
        (start + 4, 1),
        "re-creation starts over"
    );

    // Values are bytes, not text.
    let binary = [0u8, 0xff, 0x80, b'\n'];
    ds.put(format!("{p}bin"), binary.to_vec()).await.unwrap();
    assert_eq!(
        ds.get(format!("{p}bin")).await.unwrap().unwrap().value,
        binary
    );

    assert!(matches!(ds.get("").await, Err(Error::InvalidRequest(_))));
}

pub async fn list_isolates_prefixes<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("list");
    for k in ["a/2", "a/1", "a", "ab/1", "b/1", "a/\u{ff}"] {
        ds.put(format!("{p}{k}"), k).await.unwrap();
    }
    let listing = ds.list(format!("{p}a/")).await.unwrap();
    let keys: Vec<_> = listing
        .kvs
        .iter()
        .map(|kv| kv.key_str().into_owned())
        .collect();
    assert_eq!(
        keys,
        [format!("{p}a/1"), format!("{p}a/2"), format!("{p}a/\u{ff}")]
    );
    assert_eq!(listing.revision, ds.revision().await.unwrap());

    let all = ds.list(p.clone()).await.unwrap();
    assert_eq!(all.kvs.len(), 6);
    let mut sorted = all.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    sorted.sort();
    assert_eq!(
        all.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        sorted,
        "byte order"
    );

    assert!(ds.list(format!("{p}zzz/")).await.unwrap().kvs.is_empty());

    assert_eq!(ds.delete_prefix(format!("{p}a/")).await.unwrap(), 3);
    let left: Vec<_> = ds
        .list(p.clone())
        .await
        .unwrap()
        .kvs
        .iter()
        .map(|kv| kv.key_str().into_owned())
        .collect();
    assert_eq!(
        left,
        [format!("{p}a"), format!("{p}ab/1"), format!("{p}b/1")]
    );

    // A prefix ending in byte 0xff exercises the carry in the range end.
    let mut edge = format!("{p}b").into_bytes();
    edge.push(0xff);
    ds.put(edge.clone(), "edge").await.unwrap();
    let listed = ds.list(edge.clone()).await.unwrap();
    assert_eq!(listed.kvs.len(), 1);
    assert_eq!(listed.kvs[0].key, edge);
    assert_eq!(ds.list(format!("{p}b")).await.unwrap().kvs.len(), 2);
}

/// More keys than one etcd page (500), written in transactions of 100.
pub async fn big_lists_are_complete<H: Harness>(h: &H) {
    const KEYS: usize = 1234;
    let ds = h.connect().await;
    let p = prefix("big");
    let keys: Vec<String> = (0..KEYS).map(|i| format!("{p}block/{i:05}")).collect();
    for chunk in keys.chunks(100) {
        let ops = chunk.iter().map(|k| TxnOp::put(k.clone(), vec![b'x'; 200]));
        ds.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    ds.put(format!("{p}blocks-not-under-prefix"), "x")
        .await
        .unwrap();
    let listing = ds.list(format!("{p}block/")).await.unwrap();
    let got: Vec<_> = listing
        .kvs
        .iter()
        .map(|kv| kv.key_str().into_owned())
        .collect();
    assert_eq!(got, keys);
    assert_eq!(listing.revision, ds.revision().await.unwrap());
    assert_eq!(ds.delete_prefix(format!("{p}block/")).await.unwrap(), KEYS);
}

pub async fn compare_and_swap<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("cas");
    let k = format!("{p}counter");
    let v1 = ds.create(k.clone(), "1").await.unwrap();
    let v2 = ds.update_if(k.clone(), v1.mod_revision, "2").await.unwrap();
    assert_eq!(v2.version, 2);

    match ds.update_if(k.clone(), v1.mod_revision, "stale").await {
        Err(Error::Conflict {
            key,
            expected,
            found,
        }) => {
            assert_eq!(key, k.as_bytes());
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(found, v2.mod_revision);
        }
        other => panic!("stale CAS: {other:?}"),
    }
    assert_eq!(ds.get(k.clone()).await.unwrap().unwrap().value, b"2");

    match ds.update_if(format!("{p}absent"), 5, "x").await {
        Err(Error::Conflict { found: 0, .. }) => {}
        other => panic!("CAS on an absent key: {other:?}"),
    }
    assert!(ds.get(format!("{p}absent")).await.unwrap().is_none());

    assert!(matches!(
        ds.delete_if(k.clone(), v1.mod_revision).await,
        Err(Error::Conflict { .. })
    ));
    let deleted = ds.delete_if(k.clone(), v2.mod_revision).await.unwrap();
    assert_eq!(deleted.value, b"2");
    assert!(matches!(
        ds.delete_if(k.clone(), v2.mod_revision).await,
        Err(Error::Conflict { found: 0, .. })
    ));

    // compare_and_swap hands back the winner instead of an error.
    let s = format!("{p}swap");
    let Swap::Written(first) = ds.compare_and_swap(s.clone(), None, "a").await.unwrap() else {
        panic!("absent key: swap from None must write");
    };
    match ds.compare_and_swap(s.clone(), None, "b").await.unwrap() {
        Swap::Lost(Some(now)) => assert_eq!(now, first),
        other => panic!("{other:?}"),
    }
    match ds
        .compare_and_swap(s.clone(), Some(first.mod_revision), "c")
        .await
        .unwrap()
    {
        Swap::Written(kv) => assert_eq!((kv.value.as_slice(), kv.version), (&b"c"[..], 2)),
        other => panic!("{other:?}"),
    }
    match ds
        .compare_and_swap(format!("{p}nothing"), Some(3), "x")
        .await
        .unwrap()
    {
        Swap::Lost(None) => {}
        other => panic!("{other:?}"),
    }
}

pub async fn transactions_are_atomic<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("txn");
    let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    let a1 = ds.create(a.clone(), "a1").await.unwrap();
    let start = ds.revision().await.unwrap();

    // Success branch: every op lands at one revision.
    let resp = ds
        .txn(
            Txn::new()
                .when([
                    Compare::unchanged_since(a.clone(), a1.mod_revision),
                    Compare::absent(b.clone()),
                ])
                .and_then([
                    TxnOp::put(a.clone(), "a2"),
                    TxnOp::put(b.clone(), "b1"),
                    TxnOp::get(c.clone()),
                ])
                .or_else([TxnOp::put(c.clone(), "failure-ran")]),
        )
        .await
        .unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.revision, start + 1);
    assert!(matches!(
        &resp.results[..],
        [
            TxnOpResult::Put(_),
            TxnOpResult::Put(_),
            TxnOpResult::Get(None)
        ]
    ));
    let (ga, gb) = (
        ds.get(a.clone()).await.unwrap().unwrap(),
        ds.get(b.clone()).await.unwrap().unwrap(),
    );
    assert_eq!((ga.mod_revision, gb.mod_revision), (start + 1, start + 1));
    assert!(ds.get(c.clone()).await.unwrap().is_none());

    // Failure branch: one compare fails, nothing of the success branch lands.
    let resp = ds
        .txn(
            Txn::new()
                .when([
                    Compare::absent(c.clone()),
                    Compare::value(b.clone(), CompareOp::Equal, "nope"),
                ])
                .and_then([TxnOp::put(c.clone(), "c1"), TxnOp::delete(a.clone())])
                .or_else([TxnOp::get(b.clone())]),
        )
        .await
        .unwrap();
    assert!(!resp.succeeded);
    assert_eq!(
        resp.revision,
        start + 1,
        "a read-only branch writes nothing"
    );
    match &resp.results[..] {
        [TxnOpResult::Get(Some(kv))] => assert_eq!(kv.value, b"b1"),
        other => panic!("failure results {other:?}"),
    }
    assert!(ds.get(c.clone()).await.unwrap().is_none());
    assert!(ds.get(a.clone()).await.unwrap().is_some());

    // Compares on version and create revision.
    let resp = ds
        .txn(
            Txn::new()
                .when([
                    Compare::version(a.clone(), CompareOp::Equal, 2),
                    Compare::create_revision(b.clone(), CompareOp::Equal, start + 1),
                    Compare::mod_revision(c.clone(), CompareOp::Less, 1),
                ])
                .and_then([TxnOp::delete(a.clone()), TxnOp::put(c.clone(), "c1")]),
        )
        .await
        .unwrap();
    assert!(resp.succeeded);
    assert!(ds.get(a.clone()).await.unwrap().is_none());

    // So is a transaction bigger than etcd's default limit.
    let big =
        (0..=brindle_datastore::kv::MAX_TXN_OPS).map(|i| TxnOp::put(format!("{p}big/{i}"), "v"));
    let refused = ds.txn(Txn::new().and_then(big)).await;
    assert!(
        matches!(refused, Err(Error::InvalidRequest(_))),
        "{refused:?}"
    );
    let fits =
        (0..brindle_datastore::kv::MAX_TXN_OPS).map(|i| TxnOp::put(format!("{p}big/{i}"), "v"));
    assert!(ds.txn(Txn::new().and_then(fits)).await.unwrap().succeeded);

    // Values near etcd's request limit work on both; over it, both refuse.
    let big_value = vec![7u8; 1_400_000];
    let kv = ds.put(format!("{p}blob"), big_value.clone()).await.unwrap();
    assert_eq!(ds.get(format!("{p}blob")).await.unwrap().unwrap(), kv);
    assert_eq!(kv.value, big_value);
    let too_big = ds.put(format!("{p}blob"), vec![7u8; 1_600_000]).await;
    assert!(
        matches!(too_big, Err(Error::InvalidRequest(_))),
        "too big accepted"
    );

    // Writing one key twice is refused up front, by both backends alike.
    let twice = ds
        .txn(Txn::new().and_then([TxnOp::put(b.clone(), "x"), TxnOp::put(b.clone(), "y")]))
        .await;
    assert!(matches!(twice, Err(Error::InvalidRequest(_))), "{twice:?}");
}

pub async fn watch_delivers_in_order<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("watch");
    ds.put(format!("{p}before"), "x").await.unwrap();
    let listing = ds.list(p.clone()).await.unwrap();
    let mut w = ds.watch(p.clone(), listing.revision + 1);

    let r1 = ds.put(format!("{p}a"), "1").await.unwrap().mod_revision;
    ds.put(format!("/elsewhere{p}a"), "not watched")
        .await
        .unwrap();
    let r2 = ds.put(format!("{p}a"), "2").await.unwrap().mod_revision;
    let r3 = ds
        .txn(Txn::new().and_then([
            TxnOp::put(format!("{p}c"), "3"),
            TxnOp::put(format!("{p}b"), "3"),
        ]))
        .await
        .unwrap()
        .revision;
    ds.delete(format!("{p}before"))
        .await
        .unwrap()
        .expect("existed");
    let r4 = ds.revision().await.unwrap();

    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(summary(&next_event(&mut w).await));
    }
    use EventKind::*;
    assert_eq!(
        got,
        [
            (Put, format!("{p}a"), b"1".to_vec(), r1),
            (Put, format!("{p}a"), b"2".to_vec(), r2),
            (Put, format!("{p}c"), b"3".to_vec(), r3),
            (Put, format!("{p}b"), b"3".to_vec(), r3),
            (Delete, format!("{p}before"), Vec::new(), r4),
        ]
    );
    assert_quiet(&mut w).await;
    ds.delete(format!("/elsewhere{p}a")).await.unwrap();
    assert_quiet(&mut w).await;
}

pub async fn watch_from_the_past_replays<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("replay");
    let from = ds.revision().await.unwrap() + 1;
    let mut expected = Vec::new();
    for i in 0..20 {
        let kv = ds
            .put(format!("{p}k{}", i % 3), format!("{i}"))
            .await
            .unwrap();
        expected.push((
            EventKind::Put,
            kv.key_str().into_owned(),
            kv.value.clone(),
            kv.mod_revision,
        ));
    }
    let rev = ds.delete(format!("{p}k0")).await.unwrap().map(|_| ());
    assert!(rev.is_some());
    expected.push((
        EventKind::Delete,
        format!("{p}k0"),
        Vec::new(),
        ds.revision().await.unwrap(),
    ));

    // A second, independent handle replays the same history.
    let other = h.connect().await;
    let mut w = other.watch(p.clone(), from);
    for want in &expected {
        assert_eq!(&summary(&next_event(&mut w).await), want);
    }
    // And a watch from the middle starts exactly there.
    let mid = expected[10].3;
    let mut w = other.watch(p.clone(), mid);
    assert_eq!(summary(&next_event(&mut w).await), expected[10]);
    // Put events carry full metadata.
    let ev = next_event(&mut w).await;
    let stored = ds.get(format!("{p}k2")).await.unwrap().unwrap();
    assert_eq!(ev.kv.key, stored.key);
    assert!(ev.kv.version >= 1 && ev.kv.create_revision <= ev.kv.mod_revision);
}

pub async fn watch_from_now<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("now");
    ds.put(format!("{p}old"), "x").await.unwrap();
    let mut w = ds.watch(p.clone(), 0);
    // Give the watch time to learn "now" before writing; the old write must
    // not show up either way.
    assert_quiet(&mut w).await;
    let r = ds.put(format!("{p}new"), "y").await.unwrap().mod_revision;
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kv.key_str().into_owned(), ev.revision()),
        (format!("{p}new"), r)
    );
}

pub async fn watch_resumes_after_disconnect<H: Harness>(h: &H) {
    let watcher = h.connect().await;
    let writer = h.connect_direct().await;
    let p = prefix("resume");
    let from = writer.revision().await.unwrap() + 1;
    let mut w = watcher.watch(p.clone(), from);
    writer.put(format!("{p}1"), "before").await.unwrap();
    assert_eq!(next_event(&mut w).await.kv.value, b"before");

    h.cut();
    // Writes while the watcher is cut off must still reach it, once, in order.
    let mut during = Vec::new();
    for i in 0..5 {
        during.push(
            writer
                .put(format!("{p}2"), format!("during{i}"))
                .await
                .unwrap()
                .mod_revision,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.restore();
    let after = writer
        .put(format!("{p}3"), "after")
        .await
        .unwrap()
        .mod_revision;

    for (i, rev) in during.iter().enumerate() {
        let ev = next_event(&mut w).await;
        assert_eq!(
            (ev.kv.value.clone(), ev.revision()),
            (format!("during{i}").into_bytes(), *rev)
        );
    }
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kv.value.as_slice(), ev.revision()),
        (&b"after"[..], after)
    );
    assert_quiet(&mut w).await;

    // A consumer that goes away and comes back resumes from last + 1 itself.
    drop(w);
    writer.put(format!("{p}4"), "while away").await.unwrap();
    let mut w = watcher.watch(p.clone(), after + 1);
    assert_eq!(next_event(&mut w).await.kv.value, b"while away");
}

pub async fn compaction_is_reported<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("compact");
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(ds.put(format!("{p}k{i}"), "v").await.unwrap().mod_revision);
    }
    ds.compact(revs[3]).await.unwrap();
    // Compacting again, or to an older revision, is harmless.
    ds.compact(revs[3]).await.unwrap();
    ds.compact(revs[1]).await.unwrap();

    let mut w = ds.watch(p.clone(), revs[0]);
    match tokio::time::timeout(PATIENCE, w.next())
        .await
        .expect("compaction not reported")
    {
        Some(Err(Error::Compacted {
            requested,
            compact_revision,
        })) => {
            assert_eq!(requested, revs[0]);
            assert_eq!(compact_revision, revs[3]);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(PATIENCE, w.next())
            .await
            .unwrap()
            .is_none(),
        "the stream ends after Compacted"
    );

    // From the compaction revision on, history is intact.
    let mut w = ds.watch(p.clone(), revs[3]);
    assert_eq!(next_event(&mut w).await.revision(), revs[3]);
    assert_eq!(next_event(&mut w).await.revision(), revs[4]);

    let future = ds.revision().await.unwrap() + 100;
    assert!(
        ds.compact(future).await.is_err(),
        "compacting the future must fail"
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    n: u64,
    writers: Vec<String>,
}

/// CAS increments through the typed layer, the IPAM pattern.
async fn increment(ds: &Datastore, key: &str, who: &str) {
    ds.modify_json::<Counter, _, Error>(key, 10_000, |c| {
        let mut c = c.cloned().unwrap_or(Counter {
            n: 0,
            writers: vec![],
        });
        c.n += 1;
        if !c.writers.iter().any(|w| w == who) {
            c.writers.push(who.to_owned());
        }
        Ok(Some(c))
    })
    .await
    .unwrap_or_else(|e| panic!("increment by {who}: {e}"));
}

/// A money-transfer between two keys in one transaction: the sum must never change.
async fn transfer(ds: &Datastore, from: &str, to: &str) {
    loop {
        let (Some(f), Some(t)) = (ds.get(from).await.unwrap(), ds.get(to).await.unwrap()) else {
            panic!("accounts missing");
        };
        let fv: i64 = String::from_utf8_lossy(&f.value).parse().unwrap();
        let tv: i64 = String::from_utf8_lossy(&t.value).parse().unwrap();
        let resp = ds
            .txn(
                Txn::new()
                    .when([
                        Compare::unchanged_since(from, f.mod_revision),
                        Compare::unchanged_since(to, t.mod_revision),
                    ])
                    .and_then([
                        TxnOp::put(from, (fv - 1).to_string()),
                        TxnOp::put(to, (tv + 1).to_string()),
                    ]),
            )
            .await
            .unwrap();
        if resp.succeeded {
            return;
        }
    }
}

pub async fn concurrent_writers_lose_no_update<H: Harness>(h: &H) {
    const WRITERS: usize = 4;
    const EACH: u64 = 25;
    let p = prefix("concurrent");
    let key = format!("{p}counter");
    let (acct_a, acct_b) = (format!("{p}acct/a"), format!("{p}acct/b"));
    let ds = h.connect().await;
    ds.put(acct_a.clone(), "1000").await.unwrap();
    ds.put(acct_b.clone(), "1000").await.unwrap();

    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let ds = h.connect().await;
        let (key, a, b) = (key.clone(), acct_a.clone(), acct_b.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..EACH {
                increment(&ds, &key, &format!("w{i}")).await;
                if j % 2 == 0 {
                    transfer(&ds, &a, &b).await;
                } else {
                    transfer(&ds, &b, &a).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = ds.get_json::<Counter>(key.clone()).await.unwrap().unwrap();
    assert_eq!(c.value.n, WRITERS as u64 * EACH, "lost updates");
    assert_eq!(c.value.writers.len(), WRITERS);
    let mut sum = 0i64;
    for k in [acct_a, acct_b] {
        let kv = ds.get(k).await.unwrap().unwrap();
        sum += String::from_utf8_lossy(&kv.value).parse::<i64>().unwrap();
    }
    assert_eq!(sum, 2000, "a transfer was applied partially");
}

const CHILD_URL: &str = "BRINDLE_CONFORMANCE_CHILD_URL";
const CHILD_PREFIX: &str = "BRINDLE_CONFORMANCE_CHILD_PREFIX";
const CHILD_ID: &str = "BRINDLE_CONFORMANCE_CHILD_ID";
pub const CHILD_INCREMENTS: u64 = 30;

/// Run in a child process: hammer the shared counter and accounts.
pub async fn child_main() {
    let (Ok(url), Ok(p), Ok(id)) = (
        std::env::var(CHILD_URL),
        std::env::var(CHILD_PREFIX),
        std::env::var(CHILD_ID),
    ) else {
        return;
    };
    let ds = Datastore::open(Some(&url)).await.expect("child connects");
    let (a, b) = (format!("{p}acct/a"), format!("{p}acct/b"));
    // Transfers only where the parent opened accounts.
    let transfers = ds.get(a.clone()).await.unwrap().is_some();
    for j in 0..CHILD_INCREMENTS {
        increment(&ds, &format!("{p}counter"), &id).await;
        if transfers && j % 2 == 0 {
            transfer(&ds, &a, &b).await;
        } else if transfers {
            transfer(&ds, &b, &a).await;
        }
    }
}

/// Starts `n` copies of this test binary running [`child_main`] on `url`
/// under prefix `p`, each making [`CHILD_INCREMENTS`] increments of
/// `{p}counter` (and transfers if `{p}acct/a` exists).
pub fn spawn_children(url: &str, p: &str, n: usize) -> Vec<tokio::process::Child> {
    let exe = std::env::current_exe().unwrap();
    (0..n)
        .map(|i| {
            tokio::process::Command::new(&exe)
                .args([
                    "conformance_child",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_URL, url)
                .env(CHILD_PREFIX, p)
                .env(CHILD_ID, format!("child{i}"))
                .kill_on_drop(true)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect()
}

/// Waits for children from [`spawn_children`]; panics with their output if
/// one failed or did not run its test.
pub async fn await_children(children: Vec<tokio::process::Child>) {
    for child in children {
        let out = tokio::time::timeout(PATIENCE * 6, child.wait_with_output())
            .await
            .expect("child hung")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "child ran no test: {stdout}");
    }
}

/// The counter children and others incremented, and who did.
pub async fn read_counter(ds: &Datastore, p: &str) -> (u64, usize) {
    let c = ds
        .get_json::<Counter>(format!("{p}counter"))
        .await
        .unwrap()
        .expect("counter exists");
    (c.value.n, c.value.writers.len())
}

pub async fn concurrent_processes_lose_no_update<H: Harness>(h: &H) {
    const CHILDREN: usize = 4;
    let p = prefix("processes");
    let ds = h.connect_direct().await;
    ds.put(format!("{p}acct/a"), "1000").await.unwrap();
    ds.put(format!("{p}acct/b"), "1000").await.unwrap();
    // A watcher on its own handle sees every increment, whoever made it.
    let watcher = h.connect().await;
    let mut w = watcher.watch(format!("{p}counter"), ds.revision().await.unwrap() + 1);

    let children = spawn_children(&h.url(), &p, CHILDREN);
    // Meanwhile this process competes too.
    for _ in 0..CHILD_INCREMENTS {
        increment(&ds, &format!("{p}counter"), "parent").await;
    }
    await_children(children).await;
    let c = ds
        .get_json::<Counter>(format!("{p}counter"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.value.n,
        (CHILDREN as u64 + 1) * CHILD_INCREMENTS,
        "lost updates across processes"
    );
    assert_eq!(c.value.writers.len(), CHILDREN + 1);
    let mut last_revision = 0;
    for n in 1..=c.value.n {
        let ev = next_event(&mut w).await;
        let seen: Counter = serde_json::from_slice(&ev.kv.value).unwrap();
        assert_eq!(
            (seen.n, ev.kv.version),
            (n, n as i64),
            "watch skipped or reordered"
        );
        assert!(ev.revision() > last_revision);
        last_revision = ev.revision();
    }
    let a = ds.get(format!("{p}acct/a")).await.unwrap().unwrap();
    let b = ds.get(format!("{p}acct/b")).await.unwrap().unwrap();
    let sum: i64 = [a, b]
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.value).parse::<i64>().unwrap())
        .sum();
    assert_eq!(
        sum, 2000,
        "a transfer was applied partially across processes"
    );
}

pub async fn typed_json_layer<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("json");
    let k = format!("{p}doc");
    let c = Counter {
        n: 1,
        writers: vec!["a".into()],
    };
    let rev = ds.create_json(k.clone(), &c).await.unwrap();
    let got = ds.get_json::<Counter>(k.clone()).await.unwrap().unwrap();
    assert_eq!((got.value.clone(), got.mod_revision), (c.clone(), rev));

    let rev2 = ds
        .update_json_if(k.clone(), rev, &Counter { n: 2, ..c.clone() })
        .await
        .unwrap();
    assert!(matches!(
        ds.update_json_if(k.clone(), rev, &c).await,
        Err(Error::Conflict { .. })
    ));

    // modify_json leaves the key alone when the closure says so.
    let same = ds
        .modify_json::<Counter, _, Error>(k.clone(), 3, |_| Ok(None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.mod_revision, rev2);

    let (items, _) = ds.list_json::<Counter>(p.clone()).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].value.n, 2);

    ds.put(format!("{p}junk"), "not json").await.unwrap();
    match ds.get_json::<Counter>(format!("{p}junk")).await {
        Err(e @ Error::Decode { .. }) => assert!(e.to_string().contains("junk"), "{e}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

/// Applies follow updates to a map, as a consumer would. Returns how many
/// snapshots it saw.
pub async fn follow_until(
    f: &mut brindle_datastore::Follow,
    state: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    want: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
) -> usize {
    use brindle_datastore::Update;
    let mut snapshots = 0;
    while state != want {
        match tokio::time::timeout(PATIENCE, f.next()).await {
            Ok(Some(Ok(Update::Snapshot(listing)))) => {
                snapshots += 1;
                *state = listing
                    .kvs
                    .into_iter()
                    .map(|kv| (kv.key, kv.value))
                    .collect();
            }
            Ok(Some(Ok(Update::Event(ev)))) => match ev.kind {
                EventKind::Put => {
                    state.insert(ev.kv.key, ev.kv.value);
                }
                EventKind::Delete => {
                    state.remove(&ev.kv.key);
                }
            },
            Ok(Some(Err(e))) => panic!("follow failed: {e}"),
            Ok(None) => panic!("follow ended"),
            Err(_) => panic!("follow did not converge within {PATIENCE:?}: {state:?} vs {want:?}"),
        }
    }
    snapshots
}

pub async fn current(ds: &Datastore, p: &str) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    ds.list(p)
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

pub async fn follow_converges_across_compaction<H: Harness>(h: &H) {
    let ds = h.connect().await;
    let p = prefix("follow");
    ds.put(format!("{p}a"), "1").await.unwrap();
    ds.put(format!("{p}b"), "1").await.unwrap();
    let mut f = ds.follow(p.clone());
    let mut state = Default::default();
    assert_eq!(
        follow_until(&mut f, &mut state, &current(&ds, &p).await).await,
        1
    );

    // Changes, then compaction of them, possibly before the follower saw
    // them: it must still end up with the store's state.
    ds.put(format!("{p}c"), "1").await.unwrap();
    ds.delete(format!("{p}a")).await.unwrap();
    ds.put(format!("{p}b"), "2").await.unwrap();
    ds.compact(ds.revision().await.unwrap()).await.unwrap();
    ds.put(format!("{p}d"), "1").await.unwrap();
    follow_until(&mut f, &mut state, &current(&ds, &p).await).await;
    assert_eq!(state.len(), 3);
}

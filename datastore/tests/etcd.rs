//! The conformance suite against a real etcd (Debian `etcd-server`, started by
//! `brindle_testbed::Etcd` on 127.0.0.1 with free ports), plus what only the
//! etcd backend has: endpoints that cannot be reached, and username/password.
//!
//! Watch disconnects are real: the watching client talks to etcd through a
//! TCP proxy the test cuts, while etcd keeps running and taking writes.

mod conformance;

use std::net::SocketAddr;

use brindle_datastore::{Datastore, DatastoreConfig, Error};
use brindle_testbed::Etcd;
use conformance::proxy::CuttableProxy;
use conformance::Harness;

struct EtcdHarness {
    // Field order: the proxy goes before etcd.
    proxy: CuttableProxy,
    etcd: Etcd,
}

fn etcd_addr(etcd: &Etcd) -> SocketAddr {
    etcd.client_url()
        .trim_start_matches("http://")
        .parse()
        .expect("testbed etcd listens on ip:port")
}

async fn start_etcd() -> Etcd {
    tokio::task::spawn_blocking(Etcd::start)
        .await
        .unwrap()
        .expect("start etcd")
}

async fn make() -> EtcdHarness {
    let etcd = start_etcd().await;
    let proxy = CuttableProxy::start(etcd_addr(&etcd)).await;
    EtcdHarness { proxy, etcd }
}

impl Harness for EtcdHarness {
    async fn connect(&self) -> Datastore {
        Datastore::open(Some(&format!("etcd://{}", self.proxy.addr())))
            .await
            .unwrap()
    }

    async fn connect_direct(&self) -> Datastore {
        Datastore::open(Some(&self.url())).await.unwrap()
    }

    fn url(&self) -> String {
        format!("etcd://{}", etcd_addr(&self.etcd))
    }

    fn cut(&self) {
        self.proxy.cut();
    }

    fn restore(&self) {
        self.proxy.restore();
    }
}

conformance_suite!(make);

#[tokio::test]
async fn unreachable_endpoints_are_named_in_the_error() {
    // A port we just bound and released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("etcd://127.0.0.1:{port}?timeout=2");
    let err = Datastore::connect(&DatastoreConfig::from_url(&url).unwrap())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(matches!(err, Error::Etcd { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password() {
    let etcd = start_etcd().await;
    let addr = etcd_addr(&etcd);
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "brindle:s3cr%t"],
        &["role", "add", "brindle"],
        &[
            "role",
            "grant-permission",
            "brindle",
            "--prefix=true",
            "readwrite",
            "/calico/",
        ],
        &["user", "grant-role", "brindle", "brindle"],
        &["auth", "enable"],
    ] {
        etcd.etcdctl(args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"));
    }

    let ds = Datastore::open(Some(&format!("etcd://brindle:s3cr%25t@{addr}")))
        .await
        .expect("right password connects");
    ds.put("/calico/v1/x", "1").await.unwrap();
    assert_eq!(ds.get("/calico/v1/x").await.unwrap().unwrap().value, b"1");
    // The role only covers /calico/.
    let denied = ds.put("/elsewhere", "1").await.unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");

    // A watch outside the role is refused once, not retried forever.
    use futures::StreamExt;
    let mut w = ds.watch("/elsewhere/", 1);
    match tokio::time::timeout(conformance::PATIENCE, w.next())
        .await
        .unwrap()
    {
        Some(Err(e)) => assert!(e.to_string().contains("permission denied"), "{e}"),
        other => panic!("expected a permission error, got {other:?}"),
    }
    assert!(tokio::time::timeout(conformance::PATIENCE, w.next())
        .await
        .unwrap()
        .is_none());

    let wrong = Datastore::open(Some(&format!("etcd://brindle:wrong@{addr}"))).await;
    let err = wrong.expect_err("wrong password must fail").to_string();
    assert!(err.contains(&addr.to_string()), "{err}");
    assert!(!err.contains("wrong"), "error leaks the password: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_while_disconnected_is_reported_on_resume() {
    use futures::StreamExt;
    let h = make().await;
    let watcher = h.connect().await;
    let writer = h.connect_direct().await;
    let from = writer.revision().await.unwrap() + 1;
    let mut w = watcher.watch("/gap/", from);
    writer.put("/gap/a", "1").await.unwrap();
    let first = tokio::time::timeout(conformance::PATIENCE, w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    h.cut();
    for i in 0..3 {
        writer.put("/gap/b", i.to_string()).await.unwrap();
    }
    let compacted_to = writer.revision().await.unwrap();
    writer.compact(compacted_to).await.unwrap();
    h.restore();

    match tokio::time::timeout(conformance::PATIENCE, w.next())
        .await
        .unwrap()
    {
        Some(Err(Error::Compacted {
            requested,
            compact_revision,
        })) => {
            assert_eq!(requested, first.revision() + 1);
            assert_eq!(compact_revision, compacted_to);
        }
        other => panic!("expected Compacted after the gap, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_in_the_list_is_survived() {
    let etcd = start_etcd().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("etcd://{dead},{}?timeout=3", etcd_addr(&etcd));
    let ds = Datastore::open(Some(&url))
        .await
        .expect("one live member suffices");
    assert!(ds.describe().contains(&dead.to_string()));
    for i in 0..20 {
        ds.put("/multi/k", i.to_string()).await.unwrap();
    }
    let last = ds.get("/multi/k").await.unwrap().unwrap();
    assert_eq!(last.version, 20);
    // Watches fail over too.
    use futures::StreamExt;
    let mut w = ds.watch("/multi/", last.mod_revision);
    let ev = tokio::time::timeout(conformance::PATIENCE, w.next())
        .await
        .expect("watch event")
        .unwrap()
        .unwrap();
    assert_eq!(ev.kv, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_watches_fail_over_between_members() {
    use futures::StreamExt;
    // Two "members" that are two doors to one etcd: cutting one is a member
    // going away while the cluster lives on.
    let etcd = start_etcd().await;
    let a = CuttableProxy::start(etcd_addr(&etcd)).await;
    let b = CuttableProxy::start(etcd_addr(&etcd)).await;
    let ds = Datastore::open(Some(&format!("etcd://{},{}", a.addr(), b.addr())))
        .await
        .unwrap();
    let first = ds.put("/failover/k", "0").await.unwrap();
    let mut w = ds.watch("/failover/", first.mod_revision + 1);

    a.cut();
    let mut written = Vec::new();
    for i in 1..=5 {
        let kv = loop {
            // A write whose fate is unknown (sent, then the member vanished)
            // is reported, not resent: the caller re-reads and decides.
            let current = ds.get("/failover/k").await.unwrap().unwrap();
            if current.value == i.to_string().as_bytes() {
                break current;
            }
            match ds
                .update_if("/failover/k", current.mod_revision, i.to_string())
                .await
            {
                Ok(kv) => break kv,
                Err(Error::Conflict { .. }) => continue,
                Err(e) if e.is_transient() => continue,
                Err(e) => panic!("write {i}: {e}"),
            }
        };
        written.push(kv.mod_revision);
    }
    for (i, rev) in written.iter().enumerate() {
        let ev = tokio::time::timeout(conformance::PATIENCE, w.next())
            .await
            .expect("watch event after failover")
            .unwrap()
            .unwrap();
        assert_eq!(
            (ev.kv.value.clone(), ev.revision()),
            ((i + 1).to_string().into_bytes(), *rev)
        );
    }

    // Back to the first member when the second goes away.
    a.restore();
    b.cut();
    assert_eq!(ds.get("/failover/k").await.unwrap().unwrap().value, b"5");
    ds.put("/failover/k", "6").await.unwrap();
    let ev = tokio::time::timeout(conformance::PATIENCE, w.next())
        .await
        .expect("watch event after second failover")
        .unwrap()
        .unwrap();
    assert_eq!(ev.kv.value, b"6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_relists_after_compaction_during_a_disconnect() {
    let h = make().await;
    let follower = h.connect().await;
    let writer = h.connect_direct().await;
    writer.put("/f/a", "1").await.unwrap();
    let mut f = follower.follow("/f/");
    let mut state = Default::default();
    conformance::follow_until(
        &mut f,
        &mut state,
        &conformance::current(&writer, "/f/").await,
    )
    .await;
    h.cut();
    writer.put("/f/b", "1").await.unwrap();
    writer.delete("/f/a").await.unwrap();
    writer
        .compact(writer.revision().await.unwrap())
        .await
        .unwrap();
    h.restore();
    let want = conformance::current(&writer, "/f/").await;
    let snapshots = conformance::follow_until(&mut f, &mut state, &want).await;
    assert_eq!(snapshots, 1, "expected a re-list after compaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_reports_an_unreachable_store_then_recovers() {
    use brindle_datastore::Update;
    use futures::StreamExt;
    let h = make().await;
    let follower = h.connect().await;
    h.connect_direct().await.put("/r/a", "1").await.unwrap();
    h.cut();
    let mut f = follower.follow("/r/");
    match tokio::time::timeout(conformance::PATIENCE, f.next())
        .await
        .unwrap()
    {
        Some(Err(e)) => assert!(e.is_transient(), "{e}"),
        other => panic!("expected an error while cut off, got {other:?}"),
    }
    h.restore();
    loop {
        match tokio::time::timeout(conformance::PATIENCE, f.next())
            .await
            .unwrap()
        {
            Some(Ok(Update::Snapshot(listing))) => {
                assert_eq!(listing.kvs.len(), 1);
                break;
            }
            Some(Err(e)) if e.is_transient() => continue, // still reconnecting
            other => panic!("expected a snapshot after recovery, got {other:?}"),
        }
    }
}

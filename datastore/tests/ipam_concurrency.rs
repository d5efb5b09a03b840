//! "No duplicate address, ever": 16 allocator processes (`ipam-stress`,
//! real processes, one node each) × 500 allocations against one store,
//! releasing every 4th, in a pool too small for what they keep (so blocks
//! run out, nodes borrow, and the pool is exhausted), on the embedded store
//! and on a real etcd. Then allocators SIGKILLed mid-run: `check` finds
//! what they leaked and `release_leaks` repairs it.
//!
//! The proof of uniqueness does not trust IPAM's own bookkeeping: every
//! allocator logs each address it got, and no address may be held by two
//! handles that were never released; then the store must agree, handle by
//! handle, with the logs.

#[path = "ipam_common.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brindle_datastore::ipam::{AutoAssignArgs, Ipam};
use common::{holdings, pool, read_log, spawn_allocator, Allocators, Holdings, TestStore};

const ALLOCATORS: usize = 16;
const PER_ALLOCATOR: usize = 500;
const RELEASE_EVERY: usize = 4;

fn logs(dir: &Path) -> Vec<PathBuf> {
    (0..ALLOCATORS)
        .map(|i| dir.join(format!("alloc-{i:02}.log")))
        .collect()
}

async fn sixteen_allocators_never_hand_out_an_address_twice(store: TestStore) {
    // 64 blocks of 64. 16 nodes × up to 20 blocks want 320 blocks, and keep
    // 16 × 375 = 6000 addresses: more than the pool's 4096.
    pool(&store.ds, "stress", "10.64.0.0/20", 26, "").await;
    let dir = tempfile::tempdir().unwrap();
    let paths = logs(dir.path());
    let mut procs = Allocators(
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                spawn_allocator(
                    &store.url,
                    &format!("node-{i:02}"),
                    PER_ALLOCATOR,
                    p,
                    RELEASE_EVERY,
                )
            })
            .collect(),
    );
    for (i, c) in procs.0.iter_mut().enumerate() {
        let status = tokio::task::block_in_place(|| c.wait()).unwrap();
        assert!(status.success(), "allocator {i} failed: {status}");
    }

    let Holdings {
        live,
        allocated,
        exhausted,
    } = holdings(&paths);
    assert_eq!(
        allocated + exhausted,
        ALLOCATORS * PER_ALLOCATOR,
        "every attempt accounted for"
    );
    assert!(exhausted > 0, "the pool ran out (exhaustion was exercised)");
    assert_eq!(live.len(), 4096, "the pool ends full");

    // The store agrees with the logs, handle by handle, and is clean.
    let ipam = Ipam::new(store.ds.clone());
    let live_handles: HashSet<String> = live.keys().cloned().collect();
    let report = ipam.check(&live_handles).await.unwrap();
    assert!(
        report.leaks.is_empty(),
        "{:?}",
        &report.leaks[..report.leaks.len().min(5)]
    );
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    assert_eq!(report.allocated, live.len());
    let everything = ipam.check(&HashSet::new()).await.unwrap();
    let mut borrowed = 0;
    let usage = ipam.usage().await.unwrap();
    let owner: BTreeMap<_, _> = usage[0]
        .blocks
        .iter()
        .map(|b| (b.cidr, b.node.clone()))
        .collect();
    for leak in &everything.leaks {
        let handle = leak.handle.as_deref().unwrap();
        assert_eq!(
            live.get(handle),
            Some(&leak.ip),
            "store and log agree on {handle}"
        );
        if owner[&leak.block] != leak.node {
            borrowed += 1;
        }
    }
    assert!(
        borrowed > 0,
        "some addresses were borrowed from other nodes' blocks"
    );
    // Every block was claimed, no node beyond maxBlocksPerHost (20).
    assert!(owner.values().all(Option::is_some), "{owner:?}");
    assert_eq!(owner.len(), 64);
    for i in 0..ALLOCATORS {
        let held = ipam.blocks_of(&format!("node-{i:02}")).await.unwrap();
        assert!(held.affine.len() <= 20);
    }
}

async fn killed_allocators_leak_and_repair(store: TestStore) {
    const KILLED: usize = 8;
    pool(&store.ds, "killed", "10.65.0.0/22", 26, "").await;
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = logs(dir.path()).into_iter().take(KILLED).collect();
    let mut procs = Allocators(
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| spawn_allocator(&store.url, &format!("k-{i}"), 1_000_000, p, 0))
            .collect(),
    );
    // Let each get well into its run, then SIGKILL it wherever it is.
    for (i, p) in paths.iter().enumerate() {
        let mut polls = 0;
        while read_log(p).allocated.len() < 30 {
            polls += 1;
            assert!(polls < 6000, "allocator {i} made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        procs.0[i].kill().unwrap();
    }
    for c in &mut procs.0 {
        tokio::task::block_in_place(|| c.wait()).unwrap();
    }

    // The workloads of even-numbered allocations still exist; the rest are
    // gone, and so is whatever an allocator got but did not live to log.
    let mut logged: HashMap<String, IpAddr> = HashMap::new();
    for p in &paths {
        for (ip, handle) in read_log(p).allocated {
            assert!(logged.insert(handle, ip).is_none());
        }
    }
    let is_live = |h: &str| {
        h.rsplit('-')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n % 2 == 0)
    };
    let live: HashSet<String> = logged.keys().filter(|h| is_live(h)).cloned().collect();
    let ipam = Ipam::new(store.ds.clone());
    let report = ipam.check(&live).await.unwrap();
    let leaked: HashMap<&str, IpAddr> = report
        .leaks
        .iter()
        .map(|l| (l.handle.as_deref().unwrap(), l.ip))
        .collect();
    for (handle, ip) in &logged {
        if live.contains(handle) {
            assert!(!leaked.contains_key(handle.as_str()));
        } else {
            assert_eq!(
                leaked.get(handle.as_str()),
                Some(ip),
                "leak of {handle} found"
            );
        }
    }
    assert!(leaked.keys().all(|h| !live.contains(*h)));
    assert_eq!(report.allocated, live.len() + report.leaks.len());
    assert!(
        report.conflicts.iter().all(|c| c.repairable()),
        "{:?}",
        report.conflicts
    );

    let summary = ipam.release_leaks(&report).await.unwrap();
    assert_eq!(summary.released.len(), report.leaks.len());
    assert!(summary.skipped.is_empty());
    let after = ipam.check(&live).await.unwrap();
    assert!(after.leaks.is_empty(), "{:?}", after.leaks);
    assert!(after.conflicts.is_empty(), "{:?}", after.conflicts);
    assert_eq!(after.allocated, live.len());

    // And allocation carries on, without touching a live address.
    let taken: HashSet<IpAddr> = live.iter().map(|h| logged[h]).collect();
    for i in 0..50 {
        let got = ipam
            .auto_assign(&AutoAssignArgs::workload_v4(format!("after.{i}"), "k-0"))
            .await
            .unwrap();
        assert!(!taken.contains(&got.ipv4[0].addr()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_no_duplicates_embedded() {
    sixteen_allocators_never_hand_out_an_address_twice(common::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_no_duplicates_etcd() {
    sixteen_allocators_never_hand_out_an_address_twice(common::etcd().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_allocators_embedded() {
    killed_allocators_leak_and_repair(common::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_allocators_etcd() {
    killed_allocators_leak_and_repair(common::etcd().await).await;
}

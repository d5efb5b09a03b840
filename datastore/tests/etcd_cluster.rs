//! IPAM on a real 3-member etcd cluster whose leader crashes mid-run: 16
//! allocator processes (`ipam-stress`, one node each) allocate through a
//! three-endpoint URL while the leader is SIGKILLed. Every allocator must
//! finish (the store fails over and the write path rides out the election),
//! no address may be held by two live handles (read from the allocators'
//! own logs, as in `ipam_concurrency`), the store must agree with the logs
//! (`Ipam::check`: no leak, no conflict), and the two survivors must elect a
//! new leader. The killed member then restarts on its data dir, rejoins
//! (three healthy endpoints) and serves a further allocation itself.

#[path = "ipam_common.rs"]
mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use brindle_datastore::ipam::{AutoAssignArgs, Ipam};
use brindle_datastore::Datastore;
use brindle_testbed::{poll_until, require, EtcdCluster};
use common::{holdings, pool, read_log, spawn_allocator, Allocators, Holdings};

const MEMBERS: usize = 3;
const ALLOCATORS: usize = 16;
const PER_ALLOCATOR: usize = 200;
const RELEASE_EVERY: usize = 4;
/// Allocations each allocator logs before the leader is killed, so the
/// crash lands in the middle of every run.
const BEFORE_KILL: usize = 10;

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// `etcd://h1:p1,h2:p2,…`: every member, the form `--datastore` takes.
fn url_of(endpoints: &[String]) -> String {
    let hosts: Vec<&str> = endpoints
        .iter()
        .map(|e| e.trim_start_matches("http://"))
        .collect();
    format!("etcd://{}", hosts.join(","))
}

/// The current leader, once the members that run agree on one.
fn wait_for_leader(cluster: &EtcdCluster) -> usize {
    let leader = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        Ok(cluster.leader().ok())
    })
    .unwrap();
    leader.unwrap_or_else(|| panic!("no leader after 20s: {}", cluster.leader().unwrap_err()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocators_ride_out_a_killed_leader() {
    if !require::require(
        on_path("etcd") && on_path("etcdctl"),
        "etcd and etcdctl (Debian etcd-server, etcd-client)",
    ) {
        return;
    }
    let started = Instant::now();
    let mut cluster = tokio::task::block_in_place(|| EtcdCluster::start(MEMBERS)).unwrap();
    let url = url_of(&cluster.endpoints());
    let ds = Datastore::open(Some(&url)).await.unwrap();
    // 64 blocks of 64; 16 nodes keep 150 addresses each: ~3 blocks a node,
    // no exhaustion, a few nodes borrow.
    pool(&ds, "cluster", "10.66.0.0/20", 26, "").await;

    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..ALLOCATORS)
        .map(|i| dir.path().join(format!("alloc-{i:02}.log")))
        .collect();
    let mut procs = Allocators(
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                spawn_allocator(
                    &url,
                    &format!("node-{i:02}"),
                    PER_ALLOCATOR,
                    p,
                    RELEASE_EVERY,
                )
            })
            .collect(),
    );

    // Once every allocator is well into its run, crash the leader.
    let deadline = Instant::now() + Duration::from_secs(60);
    while paths
        .iter()
        .any(|p| read_log(p).allocated.len() < BEFORE_KILL)
    {
        assert!(
            Instant::now() < deadline,
            "allocators made no progress before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old_leader = tokio::task::block_in_place(|| wait_for_leader(&cluster));
    let at_kill: Vec<usize> = paths.iter().map(|p| read_log(p).allocated.len()).collect();
    tokio::task::block_in_place(|| cluster.kill(old_leader));
    let killed_at = started.elapsed();
    assert!(
        at_kill.iter().all(|n| *n < PER_ALLOCATOR),
        "the crash came after an allocator had finished: {at_kill:?}"
    );

    let statuses: Vec<ExitStatus> = procs
        .0
        .iter_mut()
        .map(|c| tokio::task::block_in_place(|| c.wait()).unwrap())
        .collect();
    let finished_at = started.elapsed();

    // The two survivors elected a new leader.
    let new_leader = tokio::task::block_in_place(|| wait_for_leader(&cluster));
    assert_ne!(new_leader, old_leader);

    // Every allocator rode out the crash and finished its run.
    let failed: Vec<String> = statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.success())
        .map(|(i, s)| {
            format!(
                "node-{i:02} ({s}, {} of {PER_ALLOCATOR} allocations logged, {} at the kill, \
                 last step {:?})",
                read_log(&paths[i]).allocated.len(),
                at_kill[i],
                std::fs::read_to_string(&paths[i])
                    .unwrap_or_default()
                    .lines()
                    .last()
                    .unwrap_or_default()
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {ALLOCATORS} allocators failed after member{old_leader} (the leader) was \
         SIGKILLed at {killed_at:?} (their errors are on stderr above): {}",
        failed.len(),
        failed.join("; ")
    );

    // No address held by two live handles.
    let Holdings {
        live,
        allocated,
        exhausted,
    } = holdings(&paths);
    assert_eq!(exhausted, 0, "the pool is big enough for everyone");
    assert_eq!(
        allocated,
        ALLOCATORS * PER_ALLOCATOR,
        "every attempt allocated"
    );
    assert_eq!(
        live.len(),
        ALLOCATORS * (PER_ALLOCATOR - PER_ALLOCATOR / RELEASE_EVERY)
    );

    // The store agrees with the logs, handle by handle.
    let ipam = Ipam::new(ds.clone());
    let live_handles: HashSet<String> = live.keys().cloned().collect();
    let report = ipam.check(&live_handles).await.unwrap();
    assert!(
        report.leaks.is_empty(),
        "{} leaks, e.g. {:?}",
        report.leaks.len(),
        &report.leaks[..report.leaks.len().min(5)]
    );
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    assert_eq!(report.allocated, live.len());

    // The killed member comes back on its data dir and rejoins.
    tokio::task::block_in_place(|| cluster.start_again(old_leader)).unwrap();
    // `endpoint health` fails unless every member commits a proposal.
    let health = tokio::task::block_in_place(|| {
        poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
            Ok(cluster.etcdctl(&["endpoint", "health", "-w", "json"]).ok())
        })
    })
    .unwrap()
    .unwrap_or_else(|| {
        panic!(
            "cluster not healthy after the restart: {:?}",
            cluster.etcdctl(&["endpoint", "health"])
        )
    });
    let health: Vec<serde_json::Value> = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health.iter().filter(|h| h["health"] == true).count(),
        MEMBERS,
        "{health:?}"
    );
    tokio::task::block_in_place(|| wait_for_leader(&cluster));

    // And it serves a further allocation itself.
    let rejoined = &cluster.endpoints()[old_leader];
    let through_it = Ipam::new(
        Datastore::open(Some(&url_of(std::slice::from_ref(rejoined))))
            .await
            .unwrap(),
    );
    let got = through_it
        .auto_assign(&AutoAssignArgs::workload_v4("after-rejoin", "node-00"))
        .await
        .unwrap();
    let ip = got.ipv4[0].addr();
    assert!(
        !live.values().any(|held| *held == ip),
        "{ip} is already held"
    );
    let mut all = live_handles;
    all.insert("after-rejoin".into());
    let report = ipam.check(&all).await.unwrap();
    assert!(report.leaks.is_empty(), "{:?}", report.leaks);
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    assert_eq!(report.allocated, live.len() + 1);
    eprintln!(
        "leader member{old_leader} killed at {killed_at:?}, allocators done at {finished_at:?}, \
         new leader member{new_leader}, whole test {:?}",
        started.elapsed()
    );
}

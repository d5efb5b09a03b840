//! IPAM behaviour, each scenario against the embedded store and a real etcd:
//! claiming, allocation by handle, borrowing, strict affinity,
//! maxBlocksPerHost, pool selection (nodeSelector, disabled, allowedUses,
//! IPv6, tunnels), fixed addresses, release, check/repair, node and
//! empty-block garbage collection.

#[path = "ipam_common.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use brindle_datastore::ipam::{
    tunnel_handle, AutoAssignArgs, Conflict, Ipam, IpamError, ReleaseOptions, TunnelKind,
    DEFAULT_POOL_V4,
};
use brindle_datastore::Datastore;
use brindle_model::ipam::AllowedUse;
use common::{apply, ipam_config, node, pool};
use ipnet::IpNet;

macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn embedded() {
                let store = super::common::embedded().await;
                super::$scenario(store.ds.clone()).await;
            }
            #[tokio::test]
            async fn etcd() {
                let store = super::common::etcd().await;
                super::$scenario(store.ds.clone()).await;
            }
        }
    )*};
}

on_both_stores!(
    allocates_by_handle_from_a_claimed_block,
    claims_up_to_max_blocks_then_borrows,
    pools_are_chosen_by_node_use_and_family,
    a_fixed_address_follows_its_workload,
    deleted_nodes_and_empty_blocks_are_released,
    check_finds_leaks_and_release_repairs_them,
    check_finds_addresses_in_use_that_ipam_does_not_hold,
    usage_and_default_pool,
    an_address_moves_to_another_handle,
);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

async fn one(ipam: &Ipam, handle: &str, node: &str) -> Result<IpAddr, IpamError> {
    let got = ipam
        .auto_assign(&AutoAssignArgs::workload_v4(handle, node))
        .await?;
    assert_eq!(got.ipv4.len(), 1);
    assert_eq!(got.ipv4[0].prefix_len(), 32, "host addresses are /32");
    Ok(got.ipv4[0].addr())
}

async fn allocates_by_handle_from_a_claimed_block(ds: Datastore) {
    pool(&ds, "p", "10.10.0.0/24", 29, "").await;
    let ipam = Ipam::new(ds.clone());
    let args = AutoAssignArgs {
        num4: 3,
        ..AutoAssignArgs::workload_v4("net.c1", "n1")
    };
    let before = ds.revision().await.unwrap();
    let got = ipam.auto_assign(&args).await.unwrap();
    assert_eq!(got.ipv4.len(), 3);
    // Claiming a new block and taking its first addresses is one
    // transaction (every node watching the blocks reads each write).
    assert_eq!(ds.revision().await.unwrap(), before + 1, "one store write");
    let block = ipam.blocks_of("n1").await.unwrap();
    assert_eq!(block.affine.len(), 1, "one block claimed and confirmed");
    assert!(block.borrowed.is_empty());
    for a in &got.ipv4 {
        assert!(block.affine[0].contains(a), "{a} from the node's block");
    }
    // The claim and the block are stored where the layout says.
    let b = block.affine[0];
    let aff = ds
        .get(format!(
            "/brindle/ipam/v2/host/n1/ipv4/block/{}-29",
            b.network()
        ))
        .await
        .unwrap()
        .expect("affinity key");
    assert_eq!(aff.value, br#"{"state":"confirmed"}"#);
    assert!(ds
        .get("/brindle/ipam/v2/handle/net.c1")
        .await
        .unwrap()
        .is_some());

    // A second handle fills the same block, distinct addresses.
    let more = ipam
        .auto_assign(&AutoAssignArgs {
            num4: 5,
            ..AutoAssignArgs::workload_v4("net.c2", "n1")
        })
        .await
        .unwrap();
    let all: HashSet<IpNet> = got.ipv4.iter().chain(&more.ipv4).copied().collect();
    assert_eq!(all.len(), 8);
    assert_eq!(ipam.blocks_of("n1").await.unwrap().affine, vec![b]);

    // Release by handle is idempotent and frees exactly that handle's addresses.
    let mut released = ipam.release_by_handle("net.c1").await.unwrap();
    released.sort();
    let mut expected: Vec<IpAddr> = got.ipv4.iter().map(IpNet::addr).collect();
    expected.sort();
    assert_eq!(released, expected);
    assert!(ipam.release_by_handle("net.c1").await.unwrap().is_empty());
    assert!(ipam
        .release_by_handle("never-existed")
        .await
        .unwrap()
        .is_empty());
    assert!(ds
        .get("/brindle/ipam/v2/handle/net.c1")
        .await
        .unwrap()
        .is_none());
    let report = ipam
        .check(&HashSet::from(["net.c2".to_owned()]))
        .await
        .unwrap();
    assert_eq!(report.allocated, 5);
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty(),
        "{report:?}"
    );

    // release_ips: by address; a wrong handle or stale sequence is refused.
    let target = more.ipv4[0].addr();
    let out = ipam
        .release_ips(&[ReleaseOptions {
            ip: target,
            handle: Some("someone-else".into()),
            sequence: None,
        }])
        .await
        .unwrap();
    assert_eq!(out.refused.len(), 1);
    let out = ipam
        .release_ips(&[
            target.into(),
            ip("10.10.0.200").into(),
            ip("10.99.0.1").into(),
        ])
        .await
        .unwrap();
    assert_eq!(out.released, vec![target]);
    assert_eq!(out.not_allocated.len(), 2);
    let report = ipam
        .check(&HashSet::from(["net.c2".to_owned()]))
        .await
        .unwrap();
    assert_eq!(report.allocated, 4);
    assert!(
        report.conflicts.is_empty(),
        "handle doc follows: {report:?}"
    );
}

async fn claims_up_to_max_blocks_then_borrows(ds: Datastore) {
    // 4 blocks of 8; n1 may hold 2.
    pool(&ds, "p", "10.11.0.0/27", 29, "").await;
    ipam_config(&ds, "  maxBlocksPerHost: 2\n").await;
    let ipam = Ipam::new(ds.clone());
    let n2_ip = one(&ipam, "net.n2-0", "n2").await.unwrap();
    for i in 0..16 {
        one(&ipam, &format!("net.n1-{i}"), "n1").await.unwrap();
    }
    let n1 = ipam.blocks_of("n1").await.unwrap();
    assert_eq!(n1.affine.len(), 2);
    assert!(n1.borrowed.is_empty());
    // Both n1 blocks are full and it may not claim a third: it borrows,
    // from a block that is not its own.
    let borrowed = one(&ipam, "net.n1-16", "n1").await.unwrap();
    assert!(!n1.affine.iter().any(|b| b.contains(&borrowed)));
    let n1 = ipam.blocks_of("n1").await.unwrap();
    assert_eq!(n1.borrowed, vec![IpNet::from(borrowed)]);
    assert_eq!(ipam.blocks_of("n1").await.unwrap().affine.len(), 2);
    let n2 = ipam.blocks_of("n2").await.unwrap();
    assert!(n2.affine.iter().any(|b| b.contains(&n2_ip)));
    assert!(n2.borrowed.is_empty(), "what n1 borrowed is n1's to route");

    // strictAffinity: no borrowing, so n1 is out of addresses.
    ipam_config(&ds, "  maxBlocksPerHost: 2\n  strictAffinity: true\n").await;
    assert!(matches!(
        one(&ipam, "net.n1-strict", "n1").await,
        Err(IpamError::Exhausted { family: 4, .. })
    ));

    // Without the limit, the pool runs out; a request that cannot be met
    // in full takes nothing.
    ipam_config(&ds, "  maxBlocksPerHost: 0\n").await;
    let mut n = 0;
    while one(&ipam, &format!("net.fill-{n}"), "n3").await.is_ok() {
        n += 1;
    }
    assert_eq!(n, 32 - 18, "every remaining address, then exhaustion");
    ipam.release_by_handle("net.fill-0").await.unwrap();
    let two = AutoAssignArgs {
        num4: 2,
        ..AutoAssignArgs::workload_v4("net.two", "n3")
    };
    assert!(matches!(
        ipam.auto_assign(&two).await,
        Err(IpamError::Exhausted {
            requested: 2,
            available: 1,
            ..
        })
    ));
    let report = ipam.check(&HashSet::new()).await.unwrap();
    assert_eq!(report.allocated, 31, "the partial request was given back");
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
}

async fn pools_are_chosen_by_node_use_and_family(ds: Datastore) {
    pool(
        &ds,
        "zone-a",
        "10.20.0.0/24",
        26,
        "  nodeSelector: zone == 'a'\n",
    )
    .await;
    pool(&ds, "off", "10.21.0.0/24", 26, "  disabled: true\n").await;
    pool(
        &ds,
        "tunnels",
        "10.22.0.0/24",
        26,
        "  allowedUses: [Tunnel]\n",
    )
    .await;
    pool(&ds, "v6", "fd00:10::/120", 122, "").await;
    node(&ds, "na", &[("zone", "a")]).await;
    node(&ds, "nb", &[("zone", "b")]).await;
    let ipam = Ipam::new(ds.clone());

    let a = one(&ipam, "net.a", "na").await.unwrap();
    assert!(net("10.20.0.0/24").contains(&a), "{a}");
    assert!(matches!(
        one(&ipam, "net.b", "nb").await,
        Err(IpamError::NoPool { family: 4, .. })
    ));
    // Tunnel addresses come from pools that allow them (zone-a allows
    // Workload+Tunnel by default, tunnels only Tunnel).
    let tunnel = AutoAssignArgs {
        use_: AllowedUse::Tunnel,
        ..AutoAssignArgs::workload_v4(tunnel_handle(TunnelKind::Ipip, "nb"), "nb")
    };
    let t = ipam.auto_assign(&tunnel).await.unwrap();
    assert!(net("10.22.0.0/24").contains(&t.ipv4[0]), "{t:?}");
    // Restricting to a pool that does not allow workloads finds nothing.
    let restricted = AutoAssignArgs {
        pools: vec![net("10.22.0.0/24")],
        ..AutoAssignArgs::workload_v4("net.r", "na")
    };
    assert!(matches!(
        ipam.auto_assign(&restricted).await,
        Err(IpamError::NoPool { .. })
    ));
    // Dual stack in one request.
    let dual = AutoAssignArgs {
        num6: 1,
        ..AutoAssignArgs::workload_v4("net.dual", "na")
    };
    let d = ipam.auto_assign(&dual).await.unwrap();
    assert!(net("10.20.0.0/24").contains(&d.ipv4[0]));
    assert_eq!(d.ipv6.len(), 1);
    assert_eq!(d.ipv6[0].prefix_len(), 128);
    assert!(net("fd00:10::/120").contains(&d.ipv6[0]));
    let na = ipam.blocks_of("na").await.unwrap();
    assert!(
        na.affine.contains(&net("fd00:10::/122"))
            || na.affine.iter().any(|b| b.contains(&d.ipv6[0]))
    );
    assert_eq!(ipam.release_by_handle("net.dual").await.unwrap().len(), 2);
    // An IPv6 request with no IPv6 pool for the use fails cleanly, and
    // takes back the IPv4 address it got first.
    let v6_tunnel = AutoAssignArgs {
        num6: 1,
        use_: AllowedUse::Tunnel,
        ..AutoAssignArgs::workload_v4("t.x", "na")
    };
    // fd00:10:: allows Tunnel by default, so this works...
    assert!(ipam.auto_assign(&v6_tunnel).await.is_ok());
    // ...but not for a LoadBalancer use, which no pool allows.
    let lb = AutoAssignArgs {
        use_: AllowedUse::LoadBalancer,
        ..AutoAssignArgs::workload_v4("lb.x", "na")
    };
    assert!(matches!(
        ipam.auto_assign(&lb).await,
        Err(IpamError::NoPool { .. })
    ));
    let report = ipam.check(&HashSet::new()).await.unwrap();
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
}

async fn a_fixed_address_follows_its_workload(ds: Datastore) {
    pool(&ds, "p", "10.30.0.0/24", 26, "").await;
    let ipam = Ipam::new(ds.clone());
    let x = one(&ipam, "net.moving", "n1").await.unwrap();
    ipam.release_by_handle("net.moving").await.unwrap();
    // The workload restarts on n2 and asks for its old address: it is
    // borrowed from n1's block and routed by n2 as a /32.
    let attrs = BTreeMap::from([("pod".to_owned(), "web-0".to_owned())]);
    let got = ipam
        .assign_ip(x, "net.moving", "n2", attrs.clone())
        .await
        .unwrap();
    assert_eq!(got, IpNet::from(x));
    assert_eq!(
        ipam.assign_ip(x, "net.moving", "n2", attrs).await.unwrap(),
        got,
        "idempotent for the same handle"
    );
    let n2 = ipam.blocks_of("n2").await.unwrap();
    assert_eq!(n2.borrowed, vec![IpNet::from(x)]);
    assert!(n2.affine.is_empty());
    assert!(matches!(
        ipam.assign_ip(x, "net.other", "n3", BTreeMap::new()).await,
        Err(IpamError::AddressInUse { holder: Some(h), .. }) if h == "net.moving"
    ));
    assert!(matches!(
        ipam.assign_ip(ip("10.31.0.1"), "net.o", "n3", BTreeMap::new())
            .await,
        Err(IpamError::NotInPool(_))
    ));
    // An address in a block nobody has yet: the node claims that block.
    let fresh = ip("10.30.0.200");
    ipam.assign_ip(fresh, "net.f", "n3", BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        ipam.blocks_of("n3").await.unwrap().affine,
        vec![net("10.30.0.192/26")]
    );
    // Auto-assignment on n1 never hands out a taken address.
    for i in 0..70 {
        let a = one(&ipam, &format!("net.fill-{i}"), "n1").await.unwrap();
        assert!(a != x && a != fresh);
    }
    let report = ipam.check(&HashSet::new()).await.unwrap();
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
}

async fn deleted_nodes_and_empty_blocks_are_released(ds: Datastore) {
    pool(&ds, "p", "10.40.0.0/28", 30, "").await;
    let ipam = Ipam::new(ds.clone());
    // n1 fills one block of 4 and claims a second.
    for i in 0..5 {
        one(&ipam, &format!("net.a{i}"), "n1").await.unwrap();
    }
    assert_eq!(ipam.blocks_of("n1").await.unwrap().affine.len(), 2);
    for i in 0..5 {
        ipam.release_by_handle(&format!("net.a{i}")).await.unwrap();
    }
    // A long grace period: nothing yet.
    assert!(ipam
        .release_empty_blocks(Duration::from_secs(3600))
        .await
        .unwrap()
        .is_empty());
    // Past the grace period: one goes, the node keeps its last block.
    let released = ipam.release_empty_blocks(Duration::ZERO).await.unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(ipam.blocks_of("n1").await.unwrap().affine.len(), 1);
    assert!(ds
        .get(format!(
            "/brindle/ipam/v2/assignment/ipv4/block/{}-30",
            released[0].network()
        ))
        .await
        .unwrap()
        .is_none());
    // The node is deleted: its (empty) last block goes too.
    let out = ipam.release_node("n1").await.unwrap();
    assert_eq!(out.blocks_deleted.len(), 1);
    assert!(ipam.blocks_of("n1").await.unwrap().affine.is_empty());

    // A deleted node whose block still holds an address: the block becomes
    // nobody's, the address stays, and another node can claim the block.
    let kept = one(&ipam, "net.kept", "n2").await.unwrap();
    let out = ipam.release_node("n2").await.unwrap();
    assert_eq!(out.blocks_unclaimed.len(), 1);
    assert!(out.blocks_unclaimed[0].contains(&kept));
    let report = ipam
        .check(&HashSet::from(["net.kept".to_owned()]))
        .await
        .unwrap();
    assert_eq!(report.allocated, 1);
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    // Fill the pool from n3: it claims the 3 free blocks and the orphan.
    for i in 0..15 {
        let a = one(&ipam, &format!("net.n3-{i}"), "n3").await.unwrap();
        assert_ne!(a, kept);
    }
    let n3 = ipam.blocks_of("n3").await.unwrap();
    assert_eq!(n3.affine.len(), 4, "{n3:?}");
    assert!(n3.borrowed.is_empty());
}

async fn check_finds_leaks_and_release_repairs_them(ds: Datastore) {
    pool(&ds, "p", "10.50.0.0/24", 28, "").await;
    let ipam = Ipam::new(ds.clone());
    let mut ips = BTreeMap::new();
    for h in ["net.c1", "net.c2", "net.c3", "net.c4"] {
        ips.insert(h, one(&ipam, h, "n1").await.unwrap());
    }
    let live: HashSet<String> = ["net.c1", "net.c2"].map(String::from).into();
    // A claim a killed process left pending on a block another node owns.
    let n2_ip = one(&ipam, "net.n2", "n2").await.unwrap();
    let n2_block = ipam.blocks_of("n2").await.unwrap().affine[0];
    let stale_key = format!(
        "/brindle/ipam/v2/host/n1/ipv4/block/{}-28",
        n2_block.network()
    );
    ds.put(stale_key.clone(), r#"{"state":"pending"}"#)
        .await
        .unwrap();
    let live_all: HashSet<String> = live.iter().cloned().chain(["net.n2".into()]).collect();

    let report = ipam.check(&live_all).await.unwrap();
    assert_eq!(report.allocated, 5);
    let leaked: Vec<(Option<&str>, IpAddr)> = report
        .leaks
        .iter()
        .map(|l| (l.handle.as_deref(), l.ip))
        .collect();
    assert_eq!(
        leaked,
        vec![
            (Some("net.c3"), ips["net.c3"]),
            (Some("net.c4"), ips["net.c4"])
        ]
    );
    assert!(report.leaks.iter().all(|l| l.node.as_deref() == Some("n1")));
    assert!(matches!(
        report.conflicts.as_slice(),
        [Conflict::StaleAffinity { node, .. }] if node == "n1"
    ));

    // c4's address is released and reused before the repair runs: the
    // repair must leave the new owner alone.
    ipam.release_by_handle("net.c4").await.unwrap();
    let reused = ipam
        .assign_ip(ips["net.c4"], "net.c5", "n1", BTreeMap::new())
        .await
        .unwrap();
    let summary = ipam.release_leaks(&report).await.unwrap();
    assert_eq!(summary.released, vec![ips["net.c3"]]);
    assert_eq!(summary.skipped, vec![ips["net.c4"]]);
    assert_eq!(summary.affinities_removed, 1);
    assert!(ds.get(stale_key).await.unwrap().is_none());

    let mut live_now = live_all.clone();
    live_now.insert("net.c5".into());
    let after = ipam.check(&live_now).await.unwrap();
    assert!(after.leaks.is_empty(), "{:?}", after.leaks);
    assert!(after.conflicts.is_empty(), "{:?}", after.conflicts);
    assert_eq!(after.allocated, 4);
    let still: Vec<IpAddr> = ["net.c1", "net.c2"].iter().map(|h| ips[h]).collect();
    let all_now = ipam.check(&HashSet::new()).await.unwrap();
    let held: HashSet<IpAddr> = all_now.leaks.iter().map(|l| l.ip).collect();
    assert!(still.iter().all(|i| held.contains(i)));
    assert!(held.contains(&n2_ip) && held.contains(&reused.addr()));

    // A leak must be seen twice: one seen only now is not confirmed.
    let first = ipam.check(&live).await.unwrap();
    ipam.release_by_handle("net.c5").await.unwrap();
    one(&ipam, "net.c6", "n1").await.unwrap();
    let second = ipam.check(&live).await.unwrap();
    let confirmed = second.leaks_confirmed_by(&first);
    assert!(confirmed
        .leaks
        .iter()
        .all(|l| l.handle.as_deref() != Some("net.c6")));
    assert!(confirmed
        .leaks
        .iter()
        .any(|l| l.handle.as_deref() == Some("net.n2")));

    // Handles from the store: endpoints' container ids and nodes' tunnels.
    node(&ds, "n1", &[]).await;
    apply(
        &ds,
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: n1-cni-c1-eth0\n  namespace: default\n\
         spec:\n  node: n1\n  orchestrator: cni\n  workload: c1\n  containerID: c1\n  endpoint: eth0\n  interfaceName: cali0123456789a\n",
    )
    .await;
    let tunnel = AutoAssignArgs {
        use_: AllowedUse::Tunnel,
        ..AutoAssignArgs::workload_v4(tunnel_handle(TunnelKind::Vxlan, "n1"), "n1")
    };
    ipam.auto_assign(&tunnel).await.unwrap();
    let gone = AutoAssignArgs {
        use_: AllowedUse::Tunnel,
        ..AutoAssignArgs::workload_v4(tunnel_handle(TunnelKind::Vxlan, "gone"), "n1")
    };
    ipam.auto_assign(&gone).await.unwrap();
    let live = ipam.live_handles_from_store().await.unwrap();
    let mut live: Vec<String> = live.into_iter().collect();
    live.sort();
    assert_eq!(live, ["net.c1", "vxlan-tunnel-addr-n1"]);
}

fn endpoint_yaml(name: &str, container: &str, ips: &[IpAddr]) -> String {
    let nets: Vec<String> = ips.iter().map(|i| format!("\"{i}/32\"")).collect();
    [
        "apiVersion: projectcalico.org/v3".to_owned(),
        "kind: WorkloadEndpoint".to_owned(),
        "metadata:".to_owned(),
        format!("  name: {name}"),
        "  namespace: default".to_owned(),
        "spec:".to_owned(),
        "  node: n1".to_owned(),
        "  orchestrator: cni".to_owned(),
        format!("  workload: {container}"),
        format!("  containerID: {container}"),
        "  endpoint: eth0".to_owned(),
        format!("  interfaceName: cali{container:0>11}"),
        format!("  ipNetworks: [{}]", nets.join(", ")),
    ]
    .join("\n")
}

async fn check_finds_addresses_in_use_that_ipam_does_not_hold(ds: Datastore) {
    pool(&ds, "p", "10.51.0.0/24", 26, "").await;
    let ipam = Ipam::new(ds.clone());
    node(&ds, "n1", &[]).await;
    let a = one(&ipam, "net.a", "n1").await.unwrap();
    let b = one(&ipam, "net.b", "n1").await.unwrap();
    let orphan = one(&ipam, "net.gone", "n1").await.unwrap();
    // a: consistent. b: its own address plus one IPAM never gave it (the
    // issue's "eth0 holds both, IPAM holds neither"). c: uses a's address.
    let unallocated = ip("10.51.0.60");
    apply(&ds, &endpoint_yaml("n1-cni-a-eth0", "a", &[a])).await;
    apply(&ds, &endpoint_yaml("n1-cni-b-eth0", "b", &[b, unallocated])).await;
    apply(&ds, &endpoint_yaml("n1-cni-c-eth0", "c", &[a])).await;

    let live = ipam.live_handles_from_store().await.unwrap();
    let users = ipam.address_users_from_store().await.unwrap();
    assert_eq!(users.len(), 4, "{users:?}");
    let report = ipam.check_with_users(&live, &users).await.unwrap();
    let leaked: Vec<IpAddr> = report.leaks.iter().map(|l| l.ip).collect();
    assert_eq!(leaked, vec![orphan], "allocated to no user");
    let mut found = Vec::new();
    for c in &report.conflicts {
        match c {
            Conflict::InUseNotAllocated { ip, user } => {
                assert_eq!(*ip, unallocated);
                assert_eq!(user, "WorkloadEndpoint default/n1-cni-b-eth0");
                found.push("not allocated");
            }
            Conflict::UsedTwice { ip, users } => {
                assert_eq!(*ip, a);
                assert_eq!(users.len(), 2);
                found.push("used twice");
            }
            Conflict::InUseByOtherHandle { ip, user, holder } => {
                assert_eq!(*ip, a);
                assert_eq!(user, "WorkloadEndpoint default/n1-cni-c-eth0");
                assert_eq!(holder.as_deref(), Some("net.a"));
                found.push("other handle");
            }
            other => panic!("unexpected conflict {other:?}"),
        }
    }
    found.sort();
    assert_eq!(found, ["not allocated", "other handle", "used twice"]);
    // Without users (the node's GC view) none of these are reported.
    assert!(ipam.check(&live).await.unwrap().conflicts.is_empty());

    // `ipam release` repairs the allocation with no user; the in-use
    // problems need an operator and stay reported.
    let summary = ipam.release_leaks(&report).await.unwrap();
    assert_eq!(summary.released, vec![orphan]);
    let after = ipam.check_with_users(&live, &users).await.unwrap();
    assert!(after.leaks.is_empty());
    assert_eq!(after.conflicts.len(), 3);
}

async fn usage_and_default_pool(ds: Datastore) {
    let ipam = Ipam::new(ds.clone());
    assert!(matches!(
        one(&ipam, "net.x", "n1").await,
        Err(IpamError::NoPool { .. })
    ));
    assert!(ipam
        .ensure_default_pool(net(DEFAULT_POOL_V4))
        .await
        .unwrap());
    assert!(
        !ipam.ensure_default_pool(net("10.0.0.0/8")).await.unwrap(),
        "one exists"
    );
    // The pool is a resource like any the CLI writes.
    let stored = ds
        .get("/brindle/resources/v3/ippools/default-ipv4-ippool")
        .await
        .unwrap()
        .expect("default pool");
    let r = brindle_model::parse_one(std::str::from_utf8(&stored.value).unwrap()).unwrap();
    assert_eq!(r.name(), "default-ipv4-ippool");
    for i in 0..3 {
        one(&ipam, &format!("net.{i}"), "n1").await.unwrap();
    }
    one(&ipam, "net.n2", "n2").await.unwrap();
    let usage = ipam.usage().await.unwrap();
    assert_eq!(usage.len(), 1);
    let p = &usage[0];
    assert_eq!(p.cidr, net("192.168.0.0/16"));
    assert_eq!((p.total, p.in_use, p.free), (65536, 4, 65532));
    assert_eq!(p.blocks.len(), 2);
    let mut per_node: Vec<(Option<&str>, u128, u128, u128)> = p
        .blocks
        .iter()
        .map(|b| (b.node.as_deref(), b.total, b.in_use, b.free))
        .collect();
    per_node.sort();
    assert_eq!(
        per_node,
        vec![(Some("n1"), 64, 3, 61), (Some("n2"), 64, 1, 63)]
    );
}

/// One owner, two addresses got under two handles, kept under one: the
/// address moves with its allocation, the handles' documents follow, a
/// release by the new handle frees both, and a move of an address someone
/// else holds is refused.
async fn an_address_moves_to_another_handle(ds: Datastore) {
    pool(&ds, "p", "10.51.0.0/24", 28, "").await;
    pool(&ds, "z6", "fd00:51::/120", 124, "").await;
    let ipam = Ipam::new(ds.clone());
    let first = one(&ipam, "lib.a", "n1").await.unwrap();
    let second = one(&ipam, "lib.b", "n1").await.unwrap();
    let other = one(&ipam, "lib.c", "n1").await.unwrap();
    ipam.transfer_ip(second, "lib.b", "lib.a").await.unwrap();
    // An IPv6 address (its block is found in its own pool, not the first).
    let v6 = ip("fd00:51::5");
    ipam.assign_ip(v6, "lib.e", "n1", BTreeMap::new())
        .await
        .unwrap();
    ipam.transfer_ip(v6, "lib.e", "lib.a").await.unwrap();
    assert_eq!(ipam.holder_of(v6).await.unwrap().as_deref(), Some("lib.a"));
    assert_eq!(
        ipam.holder_of(second).await.unwrap().as_deref(),
        Some("lib.a")
    );
    let live: HashSet<String> = ["lib.a", "lib.c"].map(String::from).into();
    let report = ipam.check(&live).await.unwrap();
    assert!(
        report.leaks.is_empty() && report.conflicts.is_empty(),
        "{report:?}"
    );
    assert!(matches!(
        ipam.transfer_ip(other, "lib.b", "lib.a").await,
        Err(IpamError::AddressInUse { holder: Some(h), .. }) if h == "lib.c"
    ));
    let mut released = ipam.release_by_handle("lib.a").await.unwrap();
    released.sort();
    assert_eq!(released, [first, second, v6]);
    assert!(matches!(
        ipam.transfer_ip(second, "lib.a", "lib.d").await,
        Err(IpamError::AddressNotAllocated(ip)) if ip == second
    ));
}

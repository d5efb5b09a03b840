//! `brindlectl ipam show|check|release` against real stores holding real
//! allocations (made through `brindle_datastore::ipam`, as the CNI plugin
//! makes them), on both backends.

mod common;

use std::net::IpAddr;

use brindle_datastore::ipam::{AutoAssignArgs, Ipam};
use brindle_datastore::Datastore;
use common::{temp_file, Store};

const POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: small
spec:
  cidr: 10.77.0.0/24
  blockSize: 28
";

const WORKLOAD: &str = "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: n1-cni-c1-eth0
  namespace: default
spec:
  node: n1
  orchestrator: cni
  containerID: c1
  endpoint: eth0
  interfaceName: cali0123456789a
";

/// Allocates `count` IPv4 addresses for `handle` on node `n1`.
fn allocate(store: &Store, handle: &str, count: usize) -> Vec<IpAddr> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ds = Datastore::open(Some(&store.url())).await.unwrap();
        let mut args = AutoAssignArgs::workload_v4(handle, "n1");
        args.num4 = count;
        let assigned = Ipam::new(ds).auto_assign(&args).await.unwrap();
        assigned.ipv4.iter().map(|n| n.addr()).collect()
    })
}

fn ipam_commands(store: &Store) {
    let (_d1, pool) = temp_file("pool.yaml", POOL);
    let (_d2, wep) = temp_file("wep.yaml", WORKLOAD);
    store.ok(&["apply", "-f", &pool]);
    store.ok(&["apply", "-f", &wep]);
    let live = allocate(store, "net.c1", 3);
    let leaked = allocate(store, "net.gone", 1);
    assert_eq!((live.len(), leaked.len()), (3, 1));

    let show = store.ok(&["ipam", "show"]);
    assert!(
        show.contains("| IP Pool  | 10.77.0.0/24 | 256       | 4 (2%)     | 252 (98%) |"),
        "{show}"
    );
    assert!(!show.contains("Block"), "{show}");
    let blocks = store.ok(&["ipam", "show", "--show-blocks"]);
    let block_rows: Vec<&str> = blocks
        .lines()
        .filter(|l| l.starts_with("| Block"))
        .collect();
    assert_eq!(block_rows.len(), 1, "{blocks}");
    assert!(
        block_rows[0].contains("| 16        | 4 (25%)    | 12 (75%)"),
        "{blocks}"
    );

    let ip = live[0].to_string();
    let about = store.ok(&["ipam", "show", "--ip", &ip]);
    assert!(
        about.starts_with(&format!(
            "IP {ip} is in use\n  pool:   small (10.77.0.0/24)\n"
        )),
        "{about}"
    );
    assert!(about.contains("  handle: net.c1\n"), "{about}");
    assert!(about.contains("(affine to n1)"), "{about}");
    assert_eq!(
        store.ok(&["ipam", "show", "--ip", "10.77.0.200"]),
        "IP 10.77.0.200 is not assigned\n  pool:   small (10.77.0.0/24)\n"
    );
    assert_eq!(
        store.ok(&["ipam", "show", "--ip", "192.0.2.1"]),
        "IP 192.0.2.1 is not in any IP pool\n"
    );

    // check finds the one address whose handle has no workload.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let report = report.to_str().unwrap();
    let check = store.ok(&["ipam", "check", "-o", report]);
    assert!(check.contains("Found 4 allocated IPs.\n"), "{check}");
    assert!(check.contains("Found 1 leaked IP "), "{check}");
    assert!(
        check.contains(&format!("  {}  handle net.gone  block ", leaked[0])),
        "{check}"
    );
    assert!(
        check.contains("Check complete; found 1 problem.\n"),
        "{check}"
    );

    // Releasing from the report frees exactly the leak.
    assert_eq!(
        store.ok(&["ipam", "release", "--from-report", report]),
        format!("Successfully released IP {}\n", leaked[0])
    );
    assert!(store.ok(&["ipam", "show"]).contains("| 3 (1%)"));
    assert!(store
        .ok(&["ipam", "check"])
        .contains("Check complete; found 0 problems.\n"));
    // A second release from the same report finds nothing to do.
    assert_eq!(
        store.ok(&["ipam", "release", "--from-report", report]),
        format!("IP {} was already released\n", leaked[0])
    );

    // Release by address, then again: the second is an error.
    assert_eq!(
        store.ok(&["ipam", "release", "--ip", &ip]),
        format!("Successfully released IP {ip}\n")
    );
    let out = store.run(&["ipam", "release", "--ip", &ip]);
    assert_eq!(
        (out.code, out.stderr),
        (1, format!("error: IP {ip} is not assigned\n"))
    );
    assert!(store
        .ok(&["ipam", "show", "--ip", &ip])
        .starts_with(&format!("IP {ip} is not assigned\n")));
}

#[test]
fn embedded() {
    ipam_commands(&Store::embedded());
}

#[test]
fn etcd() {
    ipam_commands(&Store::etcd());
}

#[test]
fn no_pools_and_bad_reports() {
    let store = Store::embedded();
    assert_eq!(store.ok(&["ipam", "show"]), "No IP pools.\n");
    let (_dir, bad) = temp_file("report.json", "{\"not\": \"a report\"}");
    let out = store.run(&["ipam", "release", "--from-report", &bad]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with(&format!("error: {bad}: not an `ipam check` report: ")),
        "{}",
        out.stderr
    );
    assert_eq!(store.run(&["ipam", "release"]).code, 2);
}

/// `brindlectl delete node` releases the node's block affinities, as
/// `calicoctl delete node` does: the emptied block goes back to the pool.
#[test]
fn deleting_a_node_releases_its_blocks() {
    let store = Store::embedded();
    let (_d1, pool) = temp_file("pool.yaml", POOL);
    let (_d2, node) = temp_file(
        "node.yaml",
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: n1\nspec: {}\n",
    );
    store.ok(&["apply", "-f", &pool]);
    store.ok(&["apply", "-f", &node]);
    let ips = allocate(&store, "net.c9", 1);
    assert_eq!(ips.len(), 1);
    // Release the address so the block is empty, then delete the node.
    store.ok(&["ipam", "release", "--ip", &ips[0].to_string()]);
    let blocks = store.ok(&["ipam", "show", "--show-blocks"]);
    assert!(blocks.contains("| Block"), "n1 holds a block: {blocks}");
    let out = store.ok(&["delete", "node", "n1"]);
    assert!(
        out.contains("Released node n1's IPAM affinities: 1 empty block(s) deleted"),
        "{out}"
    );
    let blocks = store.ok(&["ipam", "show", "--show-blocks"]);
    assert!(!blocks.contains("| Block"), "block released: {blocks}");
}

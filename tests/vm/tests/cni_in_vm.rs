//! `brindle-cni` in a kernel with ipip, no node daemon: two node
//! namespaces on one link, two workloads each made by the plugin exactly as
//! a runtime calls it, all addressed from one embedded store file. The
//! routes between the nodes are added by hand here (`via <node> dev tunl0
//! onlink`, as the node daemon would with `ipipMode: Always`), so the test
//! also proves that workloads the plugin made talk through `tunl0`.

mod common;

use brindle_vm::{run, VmSpec};

#[test]
fn cni_workloads_share_one_store_and_talk_over_tunl0() {
    let script = format!(
        "{}{}",
        common::PRELUDE,
        r#"
set -e
apply_pool 10.80.0.0/16 Always
ip netns add node-a; ip netns add node-b
ip link add eth0 netns node-a type veth peer name eth0 netns node-b
ip netns exec node-a true
lan_node node-a 10.0.0.1/24 10.0.0.254
lan_node node-b 10.0.0.2/24 10.0.0.254
cni_add node-a wa1; A1=$WORKLOAD_IP
cni_add node-a wa2; A2=$WORKLOAD_IP
cni_add node-b wb1; B1=$WORKLOAD_IP
cni_add node-b wb2; B2=$WORKLOAD_IP
for w in wa1 wa2 wb1 wb2; do serve $w; done

# What the plugin made: /32 via the cali veth on the node, the fake gateway
# in the workload.
ip -n node-a route show
ip -n wa1 route show
ip -n wa1 route show | grep -q 'default via 169.254.1.1'
ip -n node-a route show | grep -q "^$A1 dev cali"

# Each node's block across the other's tunl0 (by hand: no node daemon).
for n in node-a node-b; do ip -n $n link set tunl0 up; done
ip -n node-a route add $(block_of $B1) via 10.0.0.2 dev tunl0 onlink
ip -n node-b route add $(block_of $A1) via 10.0.0.1 dev tunl0 onlink
# tunl0 needs a source for the outer header only; the inner one is the
# workload's address.
check_pair wa1 wa2 $A2
check_pair wa1 wb1 $B1
check_pair wb2 wa2 $A2
check_pair wb1 wb2 $B2
ip -s -n node-a link show tunl0
brindlectl ipam show --show-blocks
"#
    );
    let out = run(&VmSpec {
        binaries: common::binaries(&["brindle-cni", "brindlectl"]),
        modules: common::modules(),
        script,
        memory_mib: common::MEMORY_MIB,
        timeout: Some(common::TIMEOUT),
        ..VmSpec::default()
    })
    .unwrap();
    common::assert_success(&out);
    for pair in ["wa1->wa2", "wa1->wb1", "wb2->wa2", "wb1->wb2"] {
        assert!(
            out.console.contains(&format!("REACH {pair} ok")),
            "{pair}:\n{}",
            out.console
        );
    }
    // Four workloads, four distinct addresses from the one pool.
    let mut addresses: Vec<&str> = out
        .console
        .lines()
        .filter_map(|l| l.strip_prefix("WORKLOAD "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(addresses.len(), 4, "{}", out.console);
    assert!(addresses.iter().all(|a| a.starts_with("10.80.")));
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 4, "{}", out.console);
}

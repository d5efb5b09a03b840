//! Shared pieces of the fabric tests in the VM: the Brindle binaries from
//! this workspace's build and the bash helpers that drive them the way a
//! host and a container runtime do.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::time::Duration;

use brindle_vm::{workspace_binary, VmOutput};

/// Memory for a VM carrying the (debug-stripped) Brindle binaries.
pub const MEMORY_MIB: u32 = 2048;

/// Longest a fabric VM may run, boot to poweroff (TCG is slow; a fabric of
/// three node daemons converges well inside this; under nextest's 5-minute limit, so a hung VM still shows its console).
pub const TIMEOUT: Duration = Duration::from_secs(240);

/// Kernel modules the fabric needs: ipip for `tunl0`, veth for workloads
/// and links, bridge for a LAN with more than two members.
pub fn modules() -> Vec<String> {
    ["ipip", "veth", "bridge"].map(str::to_owned).to_vec()
}

/// The named binaries of this workspace's build (`brindle-cni`, …); panics
/// with the harness's message (run `cargo build --workspace`) when one is
/// missing.
pub fn binaries(names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| workspace_binary(n).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Asserts the script succeeded; shows the whole console otherwise.
pub fn assert_success(out: &VmOutput) {
    assert_eq!(out.status, 0, "script failed; console:\n{}", out.console);
}

/// Bash prelude of a fabric script: the CNI directory with both plugin
/// names, the store, and helpers.
///
/// * `apply_pool CIDR IPIPMODE`: an IPPool through `brindlectl apply`;
/// * `lan_node NODE ADDR/LEN GATEWAY`: a node namespace whose `eth0` is
///   already plugged (the caller makes the link), forwarding on;
/// * `cni_add NODE WORKLOAD`: a workload namespace plumbed by `brindle-cni`
///   ADD run in the node's namespace exactly as a runtime runs it (env +
///   netconf on stdin); prints the plugin's result and sets `$WORKLOAD_IP`;
/// * `serve WORKLOAD`: a TCP server on port 7000 answering `hello-from-WORKLOAD`;
/// * `check_pair FROM TO TO_IP`: ping and TCP from one workload to another,
///   a line `REACH FROM->TO ok` or `REACH FROM->TO FAILED …`.
pub const PRELUDE: &str = r#"
set -u
export BRINDLE_DATASTORE=file:///tmp/store.db
mkdir -p /opt/cni/bin /etc/cni/net.d
ln -sf /bin/brindle-cni /opt/cni/bin/brindle-cni
ln -sf /bin/brindle-cni /opt/cni/bin/brindle-ipam

apply_pool() {
    cat > /tmp/pool.yaml <<POOL
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool
spec:
  cidr: $1
  ipipMode: $2
  vxlanMode: Never
  natOutgoing: false
POOL
    brindlectl apply -f /tmp/pool.yaml
}

lan_node() {
    ip -n "$1" link set lo up
    ip -n "$1" addr add "$2" dev eth0
    ip -n "$1" link set eth0 up
    ip -n "$1" route add default via "$3"
    ip netns exec "$1" sysctl -qw net.ipv4.ip_forward=1
}

cni_add() {
    local node=$1 workload=$2
    ip netns add "$workload"
    cat > "/tmp/netconf-$node.json" <<CONF
{"cniVersion":"1.0.0","name":"brindle","type":"brindle-cni",
 "datastore":"$BRINDLE_DATASTORE","nodename":"$node",
 "ipam":{"type":"brindle-ipam"}}
CONF
    local result
    result=$(ip netns exec "$node" env CNI_COMMAND=ADD CNI_CONTAINERID="cid-$workload" \
        CNI_NETNS="/run/netns/$workload" CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin \
        CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=$workload" \
        brindle-cni < "/tmp/netconf-$node.json") || {
        echo "CNI ADD $workload on $node FAILED: $result"; return 1; }
    echo "CNI ADD $workload on $node: $result"
    WORKLOAD_IP=$(ip -n "$workload" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
    [ -n "$WORKLOAD_IP" ] || { echo "$workload has no address"; return 1; }
    echo "WORKLOAD $workload $node $WORKLOAD_IP"
}

serve() {
    printf '#!/bin/busybox sh\necho hello-from-%s\n' "$1" > "/tmp/reply-$1"
    chmod +x "/tmp/reply-$1"
    ip netns exec "$1" busybox nc -ll -p 7000 -e "/tmp/reply-$1" &
}

tcp_reply() {
    ip netns exec "$1" busybox nc -w 5 "$2" 7000 < /dev/null 2>/dev/null
}

check_pair() {
    local from=$1 to=$2 ip=$3
    if ! vm_wait 20 ip netns exec "$from" ping -c 1 -W 2 "$ip"; then
        echo "REACH $from->$to FAILED ping $ip"; return 1
    fi
    local reply
    reply=$(tcp_reply "$from" "$ip")
    if [ "$reply" != "hello-from-$to" ]; then
        echo "REACH $from->$to FAILED tcp $ip: '$reply'"; return 1
    fi
    echo "REACH $from->$to ok"
}

block_of() { # a.b.c.d -> its /26
    local IFS=.; set -- $1
    echo "$1.$2.$3.$(( $4 & ~63 ))/26"
}
"#;

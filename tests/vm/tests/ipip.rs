//! The harness itself: a Debian cloud kernel boots, loads ipip, and two
//! namespaces inside the VM reach each other's /26 through `tunl0` with
//! `onlink` routes, as Brindle programs them.

use brindle_vm::{run, VmSpec};

#[test]
fn ipip_tunnel_carries_traffic_between_namespaces_in_the_vm() {
    let script = r#"
set -e
ip netns add a; ip netns add b
ip link add va type veth peer name vb
ip link set va netns a; ip link set vb netns b
for n in a b; do ip -n $n link set lo up; done
ip -n a addr add 10.0.0.1/24 dev va; ip -n a link set va up
ip -n b addr add 10.0.0.2/24 dev vb; ip -n b link set vb up
ip -n a link set tunl0 up; ip -n b link set tunl0 up
ip -n a addr add 192.168.1.1/32 dev tunl0
ip -n b addr add 192.168.2.1/32 dev tunl0
ip -n a route add 192.168.2.0/26 via 10.0.0.2 dev tunl0 onlink
ip -n b route add 192.168.1.0/26 via 10.0.0.1 dev tunl0 onlink
ip -d -n a link show tunl0
ip netns exec a ping -c 2 -W 3 -I 192.168.1.1 192.168.2.1
"#;
    let out = run(&VmSpec {
        modules: vec!["ipip".into(), "veth".into()],
        script: script.into(),
        ..VmSpec::default()
    })
    .unwrap();
    assert_eq!(out.status, 0, "console:\n{}", out.console);
    assert!(out.console.contains("ipip"), "{}", out.console);
    assert!(
        out.console.contains("2 received, 0% packet loss"),
        "{}",
        out.console
    );
}

//! `tunl0` against the real kernel. The development kernel has no ipip
//! module: there the test checks that creation fails cleanly with the
//! kernel's "not supported" answer and leaves nothing behind. On a kernel
//! with ipip (the qemu e2e run), it checks the device is what Calico users
//! expect: MTU underlay − 20, `nopmtudisc`, up, tunnel address assigned,
//! and that a second call converges instead of failing.

mod common;

use brindle_agent::netlink::Netlink;
use brindle_agent::netns::block_on_in_netns;
use brindle_agent::route::BRINDLE_ROUTE_PROTOCOL;
use brindle_agent::tunnel::ensure_ipip;
use common::{can_run, TestNetns};

#[test]
fn tunl0_is_created_with_nopmtudisc_or_fails_cleanly_without_ipip() {
    if !can_run() {
        return;
    }
    let ns = TestNetns::new("ipip");
    let result = block_on_in_netns(&ns.path(), || async {
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).unwrap();
        let first = ensure_ipip(&nl, 1500, Some("10.65.0.1".parse().unwrap())).await;
        let second = match &first {
            Ok(_) => Some(ensure_ipip(&nl, 1500, Some("10.65.0.1".parse().unwrap())).await),
            Err(_) => None,
        };
        (first, second)
    })
    .unwrap();
    match result {
        (Ok(link), Some(Ok(again))) => {
            assert_eq!(link.index, again.index);
            assert_eq!(link.mtu, 1480);
            assert!(link.up);
            let details = ns.ip(&["-d", "link", "show", "tunl0"]);
            assert!(details.contains("nopmtudisc"), "{details}");
            let addrs = ns.ip(&["addr", "show", "dev", "tunl0"]);
            assert!(addrs.contains("10.65.0.1/32"), "{addrs}");
        }
        (Err(error), None) => {
            eprintln!("no ipip on this kernel: {error}");
            let errno = error.errno();
            assert!(
                matches!(errno, Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)),
                "unexpected failure without ipip: {error}"
            );
            assert!(!ns.ip(&["link", "show"]).contains("tunl0"));
        }
        (first, second) => panic!("inconsistent: {first:?} then {second:?}"),
    }
}

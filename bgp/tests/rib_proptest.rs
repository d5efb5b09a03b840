//! Property: whatever sequence of announcements, withdrawals, originations
//! and peer flaps the RIB goes through, its incremental outputs add up to the
//! same state a fresh RIB computes from the final inputs:
//! * the Loc-RIB change stream, applied to a "kernel" table, equals the
//!   Loc-RIB;
//! * the UPDATE batches each peer received, applied to that peer's table,
//!   equal what a fresh RIB advertises to it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use brindle_bgp::packet::{AsPath, NextHop, Origin, PathAttributes};
use brindle_bgp::rib::{PathAttrs, PeerConfig, Rib, RibConfig, RouteSource, UpdateBatch};
use ipnet::IpNet;
use proptest::prelude::*;

const LOCAL_AS: u32 = 64512;
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEERS: usize = 4;
const PREFIXES: usize = 4;
const VARIANTS: u8 = 6;

fn prefix(j: usize) -> IpNet {
    match j {
        0 => "10.1.0.0/26".parse(),
        1 => "10.1.0.64/26".parse(),
        2 => "192.168.0.0/16".parse(),
        _ => "2001:db8:1::/122".parse(),
    }
    .expect("valid prefix")
}

fn peer_config(i: usize) -> PeerConfig {
    let addr = Ipv4Addr::new(10, 0, 0, 2 + i as u8);
    // 0, 1: eBGP in two ASes; 2: iBGP client; 3: iBGP non-client.
    let asn = match i {
        0 => 65001,
        1 => 65002,
        _ => LOCAL_AS,
    };
    let mut p = PeerConfig::new(IpAddr::V4(addr), asn, addr);
    p.rr_client = i == 2;
    p.local_v4 = Some(Ipv4Addr::new(192, 0, 2, 1));
    p.local_v6 = Some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    p
}

fn attrs(peer: usize, variant: u8) -> PathAttrs {
    let asn = peer_config(peer).asn;
    let first = if asn == LOCAL_AS { vec![] } else { vec![asn] };
    let mut path = first.clone();
    let mut a = PathAttributes {
        origin: Some(Origin::Igp),
        ..Default::default()
    };
    match variant {
        0 => {}
        1 => path.push(65100),
        2 => a.med = Some(5),
        3 => a.local_pref = Some(200),
        4 => {
            // Looped: our AS in the path, or our router id as originator.
            path.push(LOCAL_AS);
            a.originator_id = Some(ROUTER_ID);
        }
        _ => a.origin = Some(Origin::Incomplete),
    }
    a.as_path = Some(AsPath::from_sequence(path));
    PathAttrs {
        attributes: a,
        next_hop: Some(NextHop::V4(Ipv4Addr::new(10, 9, peer as u8, variant))),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Announce(usize, usize, u8),
    Withdraw(usize, usize),
    Down(usize),
    Up(usize),
    Originate(usize, u8),
    WithdrawLocal(usize),
    Flush(usize),
    Refresh(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PEERS, 0..PREFIXES, 0..VARIANTS).prop_map(|(i, j, k)| Op::Announce(i, j, k)),
        2 => (0..PEERS, 0..PREFIXES).prop_map(|(i, j)| Op::Withdraw(i, j)),
        1 => (0..PEERS).prop_map(Op::Down),
        1 => (0..PEERS).prop_map(Op::Up),
        1 => (0..PREFIXES, 0..VARIANTS).prop_map(|(j, k)| Op::Originate(j, k)),
        1 => (0..PREFIXES).prop_map(Op::WithdrawLocal),
        2 => (0..PEERS).prop_map(Op::Flush),
        1 => (0..PEERS).prop_map(Op::Refresh),
    ]
}

type PeerTable = BTreeMap<IpNet, PathAttrs>;
type Kernel = BTreeMap<IpNet, (RouteSource, PathAttrs, Vec<IpAddr>)>;

fn apply(table: &mut PeerTable, batches: Vec<UpdateBatch>) {
    for b in batches {
        match b {
            UpdateBatch::Withdraw(w) => {
                for p in w {
                    table.remove(&p);
                }
            }
            UpdateBatch::Announce { attrs, prefixes } => {
                for p in prefixes {
                    table.insert(p, (*attrs).clone());
                }
            }
        }
    }
}

fn local_attrs(variant: u8) -> PathAttrs {
    let mut a = attrs(3, variant % 4);
    a.next_hop = None;
    a
}

fn kernel_of(rib: &Rib) -> Kernel {
    rib.loc_rib()
        .map(|(p, s)| (p, (s.source, (*s.attrs).clone(), s.next_hops)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn incremental_equals_from_scratch(
        reflector in any::<bool>(),
        max_paths in 1usize..4,
        always_compare_med in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let mut cfg = RibConfig::new(LOCAL_AS, ROUTER_ID);
        cfg.cluster_id = reflector.then_some(Ipv4Addr::new(10, 255, 0, 1));
        cfg.max_paths = max_paths;
        cfg.always_compare_med = always_compare_med;
        let addr = |i: usize| peer_config(i).address;

        let mut rib = Rib::new(cfg.clone());
        let mut up: BTreeSet<usize> = BTreeSet::new();
        let mut announced: BTreeMap<(usize, usize), u8> = BTreeMap::new();
        let mut local: BTreeMap<usize, u8> = BTreeMap::new();
        let mut received: BTreeMap<usize, PeerTable> = BTreeMap::new();
        let mut kernel: Kernel = BTreeMap::new();

        for op in ops {
            let out = match op {
                Op::Announce(i, j, k) if up.contains(&i) => {
                    announced.insert((i, j), k);
                    rib.announce(addr(i), &[prefix(j)], attrs(i, k)).unwrap()
                }
                Op::Withdraw(i, j) if up.contains(&i) => {
                    announced.remove(&(i, j));
                    rib.withdraw(addr(i), &[prefix(j)]).unwrap()
                }
                Op::Down(i) if up.contains(&i) => {
                    up.remove(&i);
                    announced.retain(|(p, _), _| *p != i);
                    received.remove(&i);
                    rib.peer_down(addr(i)).unwrap()
                }
                Op::Up(i) if !up.contains(&i) => {
                    up.insert(i);
                    received.insert(i, PeerTable::new());
                    rib.peer_up(peer_config(i)).unwrap()
                }
                Op::Originate(j, k) => {
                    local.insert(j, k);
                    rib.originate(&[prefix(j)], local_attrs(k))
                }
                Op::WithdrawLocal(j) => {
                    local.remove(&j);
                    rib.withdraw_local(&[prefix(j)])
                }
                Op::Refresh(i) if up.contains(&i) => rib.refresh(addr(i)).unwrap(),
                Op::Flush(i) if up.contains(&i) => {
                    let batches = rib.take_updates(addr(i)).unwrap();
                    apply(received.entry(i).or_default(), batches);
                    continue;
                }
                _ => continue,
            };
            for change in out.best_changes {
                match change.best {
                    Some(s) => {
                        kernel.insert(change.prefix, (s.source, (*s.attrs).clone(), s.next_hops));
                    }
                    None => {
                        kernel.remove(&change.prefix);
                    }
                }
            }
            for p in &out.peers_pending {
                let i = (0..PEERS).find(|&i| addr(i) == *p).unwrap();
                prop_assert!(up.contains(&i), "pending for a peer that is down");
            }
        }
        for &i in &up {
            let batches = rib.take_updates(addr(i)).unwrap();
            apply(received.entry(i).or_default(), batches);
        }
        prop_assert_eq!(&kernel, &kernel_of(&rib));

        // The same final inputs into a fresh RIB.
        let mut fresh = Rib::new(cfg);
        for &i in &up {
            fresh.peer_up(peer_config(i)).unwrap();
        }
        for (&(i, j), &k) in &announced {
            fresh.announce(addr(i), &[prefix(j)], attrs(i, k)).unwrap();
        }
        for (&j, &k) in &local {
            fresh.originate(&[prefix(j)], local_attrs(k));
        }
        prop_assert_eq!(kernel_of(&fresh), kernel);
        for &i in &up {
            let mut expected = PeerTable::new();
            apply(&mut expected, fresh.take_updates(addr(i)).unwrap());
            prop_assert_eq!(&expected, &received[&i], "peer {}", i);
        }
    }
}

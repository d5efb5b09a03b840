//! Memory per route of the RIB for one million prefixes, measured with a
//! counting global allocator and printed (run with `--nocapture` or see
//! nextest's output). Nothing here asserts on time; the only assertions are
//! on correctness and a generous memory ceiling that catches a regression
//! such as losing attribute interning (a copy per route costs far more).
//!
//! This binary holds a single test so nothing else allocates concurrently.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

use brindle_bgp::packet::{AsPath, Community, NextHop, Origin, PathAttributes};
use brindle_bgp::rib::{PathAttrs, PeerConfig, Rib, RibConfig, UpdateBatch};
use ipnet::IpNet;

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` unchanged; the counter is only
// bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

const PREFIXES: u32 = 1_000_000;
/// Prefixes per simulated UPDATE; every UPDATE has its own attribute set
/// variant out of `ATTRIBUTE_SETS`.
const PER_UPDATE: u32 = 500;
const ATTRIBUTE_SETS: u32 = 1000;

#[test]
fn one_million_prefixes_bytes_per_route() {
    let local_as = 64512;
    let mut rib = Rib::new(RibConfig::new(local_as, Ipv4Addr::new(10, 0, 0, 1)));
    let feeder = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let mut feeder_cfg = PeerConfig::new(feeder, 65001, Ipv4Addr::new(10, 0, 0, 2));
    feeder_cfg.local_v4 = Some(Ipv4Addr::new(10, 0, 0, 1));
    rib.peer_up(feeder_cfg).expect("feeder up");

    let base = live();
    let mut prefixes = Vec::with_capacity(PER_UPDATE as usize);
    for update in 0..PREFIXES / PER_UPDATE {
        prefixes.clear();
        for i in 0..PER_UPDATE {
            let n = update * PER_UPDATE + i;
            let addr = Ipv4Addr::from(0x0100_0000 + (n << 8));
            prefixes.push(IpNet::new(IpAddr::V4(addr), 24).expect("valid /24"));
        }
        let variant = update % ATTRIBUTE_SETS;
        let attrs = PathAttrs {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::from_sequence([65001, 3356, 20_000 + variant])),
                med: Some(variant),
                communities: vec![Community::new(65001, 1), Community::new(65001, 2)],
                ..Default::default()
            },
            next_hop: Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 2))),
        };
        rib.announce(feeder, &prefixes, attrs).expect("announce");
    }
    drop(prefixes);
    rib.collect_garbage();
    let loc_bytes = live() - base;
    assert_eq!(rib.len(), PREFIXES as usize);
    assert_eq!(rib.attribute_sets(), ATTRIBUTE_SETS as usize);
    let per_route = loc_bytes as f64 / f64::from(PREFIXES);
    println!(
        "RIB memory: {PREFIXES} prefixes, {} attribute sets: {loc_bytes} bytes live for \
         Adj-RIB-In + Loc-RIB = {per_route:.1} bytes/route",
        rib.attribute_sets()
    );

    // An eBGP peer comes up: its Adj-RIB-Out holds the whole table.
    let before_out = live();
    let listener = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
    let mut listener_cfg = PeerConfig::new(listener, 65002, Ipv4Addr::new(10, 0, 0, 3));
    listener_cfg.local_v4 = Some(Ipv4Addr::new(10, 0, 0, 1));
    rib.peer_up(listener_cfg).expect("listener up");
    let batches = rib.take_updates(listener).expect("listener known");
    let announced: usize = batches
        .iter()
        .map(|b| match b {
            UpdateBatch::Announce { prefixes, .. } => prefixes.len(),
            UpdateBatch::Withdraw(_) => 0,
        })
        .sum();
    assert_eq!(announced, PREFIXES as usize);
    // One batch per exported attribute set: many prefixes per UPDATE.
    assert_eq!(batches.len(), ATTRIBUTE_SETS as usize);
    drop(batches);
    rib.collect_garbage();
    let out_bytes = live() - before_out;
    println!(
        "RIB memory: Adj-RIB-Out of one peer with the full table: {out_bytes} bytes = {:.1} \
         bytes/route",
        out_bytes as f64 / f64::from(PREFIXES)
    );

    // Generous ceiling: a copied attribute set per route alone would exceed it.
    assert!(per_route < 400.0, "{per_route} bytes/route");
}

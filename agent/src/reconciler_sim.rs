//! Model-based test of the reconciler: a simulated kernel with the real
//! kernel's add/replace/delete semantics, random desired sets, hand edits,
//! foreign routes and transient failures, driven by a seeded generator so
//! every failure reproduces from its seed.
//!
//! Invariants checked after every quiescent point:
//! - routes of other protocols are never modified or removed;
//! - once failures stop, the kernel holds exactly the desired routes of our
//!   protocol, except for prefixes a foreign route occupies;
//! - a second start over the converged kernel emits no operation.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::reconciler::{Input, OpError, Output, ReconcilerConfig, RouteOp, RouteReconciler};
use crate::route::{default_metric, KernelRoute, NextHop, Route, RouteTarget};

const OURS: u8 = 80;
const FOREIGN: u8 = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
struct SimRoute {
    proto: u8,
    metric: u32,
    target: RouteTarget,
}

#[derive(Default)]
struct SimKernel {
    table: BTreeMap<IpNet, Vec<SimRoute>>,
    fail_next: u32,
}

impl SimKernel {
    fn dump(&self) -> Vec<KernelRoute> {
        self.table
            .iter()
            .flat_map(|(dst, rs)| {
                rs.iter().filter(|r| r.proto == OURS).map(|r| KernelRoute {
                    dst: *dst,
                    target: r.target.clone(),
                    metric: r.metric,
                })
            })
            .collect()
    }

    fn apply(&mut self, op: &RouteOp) -> Result<(), OpError> {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err(OpError::Other("injected".into()));
        }
        match op {
            RouteOp::Add(r) => {
                let metric = default_metric(&r.dst);
                let entries = self.table.entry(r.dst).or_default();
                if entries.iter().any(|e| e.metric == metric) {
                    return Err(OpError::Exists);
                }
                entries.push(SimRoute {
                    proto: OURS,
                    metric,
                    target: r.target.clone(),
                });
                Ok(())
            }
            RouteOp::Replace(r) => {
                let metric = default_metric(&r.dst);
                let entries = self.table.entry(r.dst).or_default();
                // Like NLM_F_REPLACE: hits whatever is at the metric.
                entries.retain(|e| e.metric != metric);
                entries.push(SimRoute {
                    proto: OURS,
                    metric,
                    target: r.target.clone(),
                });
                Ok(())
            }
            RouteOp::Delete(k) => {
                let entries = self.table.entry(k.dst).or_default();
                let before = entries.len();
                entries.retain(|e| !(e.proto == OURS && e.metric == k.metric));
                let removed = entries.len() != before;
                if entries.is_empty() {
                    self.table.remove(&k.dst);
                }
                if removed {
                    Ok(())
                } else {
                    Err(OpError::NotFound)
                }
            }
        }
    }
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn prefix(i: u64) -> IpNet {
    IpNet::from(IpAddr::V4(Ipv4Addr::new(10, 65, 0, i as u8)))
}

fn random_target(rng: &mut Rng) -> RouteTarget {
    let gw = |i: u64| IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2 + i as u8));
    match rng.below(5) {
        0 => RouteTarget::Blackhole,
        1 => RouteTarget::Device(format!("cali{}", rng.below(3))),
        2 => RouteTarget::nexthops(vec![NextHop::via_dev(gw(rng.below(3)), "eth0")]),
        3 => RouteTarget::nexthops(vec![NextHop::onlink(gw(rng.below(3)), "vxlan.brindle")]),
        _ => RouteTarget::nexthops(vec![
            NextHop::via_dev(gw(0), "eth0"),
            NextHop::via_dev(gw(1 + rng.below(2)), "eth0"),
        ]),
    }
}

/// Drive the reconciler with the simulated kernel until quiescent.
fn drive(r: &mut RouteReconciler, k: &mut SimKernel, input: Input) -> usize {
    let mut ops = 0;
    let mut queue = vec![input];
    while let Some(input) = queue.pop() {
        for out in r.process(input) {
            match out {
                Output::DumpKernel => queue.push(Input::KernelDump(k.dump())),
                Output::Apply(op) => {
                    ops += 1;
                    let result = k.apply(&op);
                    queue.push(Input::OpResult { op, result });
                }
                Output::StartResyncTimer(_) => {}
            }
        }
    }
    ops
}

fn check_converged(seed: u64, desired: &BTreeMap<IpNet, RouteTarget>, k: &SimKernel) {
    for (dst, want) in desired {
        let entries = k.table.get(dst).cloned().unwrap_or_default();
        if entries.iter().any(|e| e.proto == FOREIGN) {
            continue;
        }
        let ours: Vec<_> = entries.iter().filter(|e| e.proto == OURS).collect();
        assert_eq!(ours.len(), 1, "seed {seed}: {dst} has {ours:?}");
        assert!(want.satisfied_by(&ours[0].target), "seed {seed}: {dst}");
    }
    for (dst, entries) in &k.table {
        if !desired.contains_key(dst) {
            assert!(
                entries.iter().all(|e| e.proto != OURS),
                "seed {seed}: unwanted {dst} left"
            );
        }
    }
}

#[test]
fn random_histories_converge_and_spare_foreign_routes() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut kernel = SimKernel::default();
        // Foreign routes, some on prefixes we will want.
        let mut foreign = Vec::new();
        for _ in 0..rng.below(4) {
            let dst = prefix(rng.below(16));
            let route = SimRoute {
                proto: FOREIGN,
                metric: 0,
                target: RouteTarget::nexthops(vec![NextHop::via_dev(
                    IpAddr::V4(Ipv4Addr::new(192, 168, 9, 9)),
                    "eth0",
                )]),
            };
            if !kernel.table.contains_key(&dst) {
                kernel.table.entry(dst).or_default().push(route.clone());
                foreign.push((dst, route));
            }
        }
        // Leftovers of ours from a previous run.
        for _ in 0..rng.below(6) {
            let dst = prefix(rng.below(16));
            if !kernel.table.contains_key(&dst) {
                kernel.table.entry(dst).or_default().push(SimRoute {
                    proto: OURS,
                    metric: if rng.below(4) == 0 { 7 } else { 0 },
                    target: random_target(&mut rng),
                });
            }
        }
        let mut r = RouteReconciler::new(ReconcilerConfig::default());
        let mut desired: BTreeMap<IpNet, RouteTarget> = BTreeMap::new();
        drive(&mut r, &mut kernel, Input::Start);
        for _step in 0..40 {
            match rng.below(6) {
                0 | 1 => {
                    let route = Route {
                        dst: prefix(rng.below(16)),
                        target: random_target(&mut rng),
                    };
                    desired.insert(route.dst, route.target.clone());
                    drive(&mut r, &mut kernel, Input::Set(route));
                }
                2 => {
                    let dst = prefix(rng.below(16));
                    desired.remove(&dst);
                    drive(&mut r, &mut kernel, Input::Remove(dst));
                }
                3 => {
                    // Hand edit of one of our routes, found at the next resync.
                    let dst = prefix(rng.below(16));
                    if let Some(entries) = kernel.table.get_mut(&dst) {
                        if let Some(e) = entries.iter_mut().find(|e| e.proto == OURS) {
                            if rng.below(2) == 0 {
                                e.target = random_target(&mut rng);
                            } else {
                                entries.retain(|e| e.proto != OURS);
                            }
                        }
                        if entries.is_empty() {
                            kernel.table.remove(&dst);
                        }
                    }
                    drive(&mut r, &mut kernel, Input::ResyncTimer);
                }
                4 => kernel.fail_next = rng.below(3) as u32,
                _ => {
                    drive(&mut r, &mut kernel, Input::ResyncTimer);
                }
            }
            for (dst, route) in &foreign {
                assert!(
                    kernel.table.get(dst).is_some_and(|e| e.contains(route)),
                    "seed {seed}: foreign route {dst} touched"
                );
            }
        }
        // Failures stop; one resync must converge everything.
        kernel.fail_next = 0;
        drive(&mut r, &mut kernel, Input::ResyncTimer);
        check_converged(seed, &desired, &kernel);
        // Restart over the converged kernel: no operation at all.
        let mut fresh = RouteReconciler::new(ReconcilerConfig::default());
        fresh.process(Input::SetAll(
            desired
                .iter()
                .map(|(dst, target)| Route {
                    dst: *dst,
                    target: target.clone(),
                })
                .collect(),
        ));
        let ops = drive(&mut fresh, &mut kernel, Input::Start);
        let conflicts = desired
            .keys()
            .filter(|d| foreign.iter().any(|(f, _)| f == *d))
            .count();
        assert_eq!(
            ops, conflicts,
            "seed {seed}: restart only retries conflicts"
        );
    }
}

//! Sans-IO route reconciler: desired routes vs the kernel's routes of
//! Brindle's protocol, in the style of a protocol state machine.
//!
//! ```text
//!   inputs ──► RouteReconciler::process(input) ──► Vec<Output>
//!   (desired changes, kernel dumps,               (DumpKernel, Apply(op),
//!    op results, timer expiry, link appeared)      StartResyncTimer)
//! ```
//!
//! Contract:
//! - Nothing is applied before the first kernel dump arrives: on start the
//!   reconciler asks for a dump ([`Output::DumpKernel`]) and then emits only
//!   the operations that make the kernel match. A route that is already right
//!   produces no operation, so a restarting agent never disturbs a flow.
//! - Only routes reported in a dump (which the caller filters to Brindle's
//!   protocol number) are ever replaced or deleted. A prefix held by another
//!   protocol is added with "create, exclusive", so it fails with
//!   [`OpError::Exists`] instead of overwriting someone else's route.
//! - A route of ours pointing somewhere else (e.g. the veth of a dead
//!   workload, calico#3940) is *replaced*, never treated as an error.
//! - Each prefix has at most one operation in flight; the caller feeds every
//!   [`Output::Apply`] back as [`Input::OpResult`]. Changes that arrive
//!   meanwhile are folded into one follow-up operation.
//! - A failed operation is not retried immediately (that could spin); it is
//!   retried at the next resync, or as soon as the missing link appears.
//! - Nothing here panics on any input sequence.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnet::IpNet;

use crate::route::{default_metric, KernelRoute, Route, RouteTarget, BRINDLE_ROUTE_PROTOCOL};

/// Tunables of the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcilerConfig {
    /// Route protocol number identifying our routes.
    pub protocol: u8,
    /// How often to re-read the kernel to repair routes changed by hand.
    pub resync_interval: Duration,
    /// Delay before retrying a failed kernel dump.
    pub dump_retry: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        Self {
            protocol: BRINDLE_ROUTE_PROTOCOL,
            resync_interval: Duration::from_secs(90),
            dump_retry: Duration::from_secs(1),
        }
    }
}

/// One netlink operation on the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// `RTM_NEWROUTE` with `NLM_F_CREATE | NLM_F_EXCL`: the prefix holds no
    /// route of ours at the default metric.
    Add(Route),
    /// `RTM_NEWROUTE` with `NLM_F_CREATE | NLM_F_REPLACE`: swaps our
    /// existing route atomically, so traffic never sees a gap.
    Replace(Route),
    /// `RTM_DELROUTE` of exactly this route (prefix, metric, our protocol).
    Delete(KernelRoute),
}

impl RouteOp {
    pub fn dst(&self) -> IpNet {
        match self {
            RouteOp::Add(r) | RouteOp::Replace(r) => r.dst,
            RouteOp::Delete(k) => k.dst,
        }
    }
}

/// Why an operation failed, as far as the reconciler cares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// An interface the route needs does not exist (yet).
    #[error("interface {0} does not exist")]
    LinkMissing(String),
    /// Another protocol's route already holds the prefix.
    #[error("prefix is held by a route of another protocol")]
    Exists,
    /// The route to delete was already gone.
    #[error("route not found")]
    NotFound,
    /// Anything else (bad gateway, permission, …).
    #[error("{0}")]
    Other(String),
}

/// Inputs of [`RouteReconciler::process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Begin: ask for the kernel state.
    Start,
    /// Want this route (replaces any earlier wish for the prefix).
    Set(Route),
    /// No longer want a route for this prefix.
    Remove(IpNet),
    /// The complete desired set; prefixes not listed are removed.
    SetAll(Vec<Route>),
    /// Result of [`Output::DumpKernel`]: every route of our protocol in the
    /// main table.
    KernelDump(Vec<KernelRoute>),
    /// [`Output::DumpKernel`] failed; it is retried after
    /// [`ReconcilerConfig::dump_retry`].
    KernelDumpFailed,
    /// Result of one [`Output::Apply`].
    OpResult {
        op: RouteOp,
        result: Result<(), OpError>,
    },
    /// The timer of [`Output::StartResyncTimer`] fired.
    ResyncTimer,
    /// An interface appeared or came up: retry failed routes that use it.
    LinkAppeared(String),
    /// An interface went down: the kernel dropped the IPv4 routes through
    /// it (IPv6 routes stay), so forget them and re-add what is wanted.
    LinkDown(String),
    /// An interface was deleted: the kernel dropped every route through it.
    LinkDeleted(String),
}

/// Outputs of [`RouteReconciler::process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// List the kernel's routes of our protocol and feed them back as
    /// [`Input::KernelDump`].
    DumpKernel,
    /// Apply one operation and feed the result back as [`Input::OpResult`].
    Apply(RouteOp),
    /// (Re)arm the resync timer; feed [`Input::ResyncTimer`] when it fires.
    StartResyncTimer(Duration),
}

/// What the reconciler knows about failures, for status reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures {
    /// Prefix → last error.
    pub by_prefix: BTreeMap<IpNet, OpError>,
}

/// The state machine. See the module docs for the contract.
#[derive(Debug)]
pub struct RouteReconciler {
    config: ReconcilerConfig,
    desired: BTreeMap<IpNet, RouteTarget>,
    /// Our routes in the kernel, per prefix; `None` until the first dump.
    kernel: Option<BTreeMap<IpNet, Vec<KernelRoute>>>,
    dump_in_flight: bool,
    in_flight: BTreeSet<IpNet>,
    /// Prefixes that changed while an op was in flight.
    dirty_while_in_flight: BTreeSet<IpNet>,
    failures: Failures,
}

impl RouteReconciler {
    pub fn new(config: ReconcilerConfig) -> Self {
        Self {
            config,
            desired: BTreeMap::new(),
            kernel: None,
            dump_in_flight: false,
            in_flight: BTreeSet::new(),
            dirty_while_in_flight: BTreeSet::new(),
            failures: Failures::default(),
        }
    }

    pub fn config(&self) -> &ReconcilerConfig {
        &self.config
    }

    /// Routes currently failing and why.
    pub fn failures(&self) -> &Failures {
        &self.failures
    }

    /// Whether the kernel is known to match the desired state.
    pub fn in_sync(&self) -> bool {
        let Some(kernel) = &self.kernel else {
            return false;
        };
        self.in_flight.is_empty()
            && self.failures.by_prefix.is_empty()
            && self
                .desired
                .keys()
                .chain(kernel.keys())
                .all(|dst| self.ops_for(dst).is_empty())
    }

    /// Feed one input; returns what to do next.
    pub fn process(&mut self, input: Input) -> Vec<Output> {
        match input {
            Input::Start | Input::ResyncTimer => self.request_dump(),
            Input::Set(route) => {
                self.desired.insert(route.dst, route.target);
                self.reconcile_prefixes([route.dst])
            }
            Input::Remove(dst) => {
                self.desired.remove(&dst);
                self.failures.by_prefix.remove(&dst);
                self.reconcile_prefixes([dst])
            }
            Input::SetAll(routes) => {
                let old: BTreeSet<IpNet> = self.desired.keys().copied().collect();
                self.desired = routes.into_iter().map(|r| (r.dst, r.target)).collect();
                self.failures
                    .by_prefix
                    .retain(|dst, _| self.desired.contains_key(dst));
                let touched: BTreeSet<IpNet> = old
                    .into_iter()
                    .chain(self.desired.keys().copied())
                    .collect();
                self.reconcile_prefixes(touched)
            }
            Input::KernelDump(routes) => self.on_dump(routes),
            Input::KernelDumpFailed => {
                self.dump_in_flight = false;
                vec![Output::StartResyncTimer(self.config.dump_retry)]
            }
            Input::OpResult { op, result } => self.on_op_result(op, result),
            Input::LinkAppeared(name) => {
                let waiting: Vec<IpNet> = self
                    .failures
                    .by_prefix
                    .iter()
                    .filter(|(dst, e)| {
                        matches!(e, OpError::LinkMissing(n) if *n == name)
                            || self
                                .desired
                                .get(*dst)
                                .is_some_and(|t| t.devices().contains(&name.as_str()))
                    })
                    .map(|(dst, _)| *dst)
                    .collect();
                for dst in &waiting {
                    self.failures.by_prefix.remove(dst);
                }
                self.reconcile_prefixes(waiting)
            }
            Input::LinkDown(name) => self.forget_routes_via(&name, true),
            Input::LinkDeleted(name) => self.forget_routes_via(&name, false),
        }
    }

    /// Drop kernel-view entries through `device` (IPv4 only if `v4_only`)
    /// and reconcile their prefixes.
    fn forget_routes_via(&mut self, device: &str, v4_only: bool) -> Vec<Output> {
        let Some(kernel) = self.kernel.as_mut() else {
            return Vec::new();
        };
        let mut touched = Vec::new();
        kernel.retain(|dst, entries| {
            if v4_only && matches!(dst, IpNet::V6(_)) {
                return true;
            }
            let before = entries.len();
            entries.retain(|k| !k.target.devices().contains(&device));
            if entries.len() != before {
                touched.push(*dst);
            }
            !entries.is_empty()
        });
        self.reconcile_prefixes(touched)
    }

    fn request_dump(&mut self) -> Vec<Output> {
        if self.dump_in_flight {
            return Vec::new();
        }
        self.dump_in_flight = true;
        vec![Output::DumpKernel]
    }

    fn on_dump(&mut self, routes: Vec<KernelRoute>) -> Vec<Output> {
        self.dump_in_flight = false;
        let mut kernel: BTreeMap<IpNet, Vec<KernelRoute>> = BTreeMap::new();
        for route in routes {
            kernel.entry(route.dst).or_default().push(route);
        }
        // A dump may race with our own in-flight ops; for those prefixes keep
        // our view, the op result will settle it.
        if let Some(old) = &self.kernel {
            for dst in &self.in_flight {
                match old.get(dst) {
                    Some(v) => kernel.insert(*dst, v.clone()),
                    None => kernel.remove(dst),
                };
            }
        }
        self.kernel = Some(kernel);
        // A resync is the retry point for everything that failed.
        self.failures.by_prefix.clear();
        let all: BTreeSet<IpNet> = self
            .desired
            .keys()
            .chain(self.kernel.iter().flat_map(|k| k.keys()))
            .copied()
            .collect();
        let mut out = self.reconcile_prefixes(all);
        out.push(Output::StartResyncTimer(self.config.resync_interval));
        out
    }

    fn on_op_result(&mut self, op: RouteOp, result: Result<(), OpError>) -> Vec<Output> {
        let dst = op.dst();
        self.in_flight.remove(&dst);
        let dirty = self.dirty_while_in_flight.remove(&dst);
        let Some(kernel) = self.kernel.as_mut() else {
            return Vec::new();
        };
        let succeeded = match (&op, &result) {
            (_, Ok(())) => true,
            // Already gone is what we wanted.
            (RouteOp::Delete(_), Err(OpError::NotFound)) => true,
            _ => false,
        };
        if succeeded {
            self.failures.by_prefix.remove(&dst);
            let entries = kernel.entry(dst).or_default();
            match &op {
                RouteOp::Add(route) | RouteOp::Replace(route) => {
                    let metric = default_metric(&dst);
                    entries.retain(|k| k.metric != metric);
                    entries.push(KernelRoute {
                        dst,
                        target: route.target.clone(),
                        metric,
                    });
                }
                RouteOp::Delete(gone) => entries.retain(|k| k != gone),
            }
            if entries.is_empty() {
                kernel.remove(&dst);
            }
            // Follow-up for changes that arrived meanwhile, or the next step
            // of a multi-op prefix (delete extra metric, then replace).
            return self.reconcile_prefixes([dst]);
        }
        let error = result.err().unwrap_or(OpError::Other("unknown".into()));
        tracing::warn!(%dst, ?op, %error, "route operation failed; will retry at resync");
        self.failures.by_prefix.insert(dst, error);
        if dirty {
            // The wish changed since; the new wish deserves one attempt.
            self.failures.by_prefix.remove(&dst);
            return self.reconcile_prefixes([dst]);
        }
        Vec::new()
    }

    fn reconcile_prefixes(&mut self, dsts: impl IntoIterator<Item = IpNet>) -> Vec<Output> {
        let mut out = Vec::new();
        if self.kernel.is_none() {
            return out;
        }
        for dst in dsts {
            if self.in_flight.contains(&dst) {
                self.dirty_while_in_flight.insert(dst);
                continue;
            }
            if self.failures.by_prefix.contains_key(&dst) {
                continue;
            }
            // One op per prefix at a time keeps the kernel view exact.
            if let Some(op) = self.ops_for(&dst).into_iter().next() {
                self.in_flight.insert(dst);
                out.push(Output::Apply(op));
            }
        }
        out
    }

    /// The operations that would make the kernel match for `dst`, in order.
    fn ops_for(&self, dst: &IpNet) -> Vec<RouteOp> {
        let empty = Vec::new();
        let have = self
            .kernel
            .as_ref()
            .and_then(|k| k.get(dst))
            .unwrap_or(&empty);
        diff_prefix(*dst, self.desired.get(dst), have)
    }
}

/// The minimal operations for one prefix: what we want (`want`) vs our routes
/// the kernel has for it (`have`, any metric). Pure; the heart of the
/// reconciler, exposed for table-driven tests.
pub fn diff_prefix(dst: IpNet, want: Option<&RouteTarget>, have: &[KernelRoute]) -> Vec<RouteOp> {
    let metric = default_metric(&dst);
    let mut ops = Vec::new();
    // Routes of ours at another metric were added by hand or by an older
    // version; they would shadow or be shadowed, so they go.
    for extra in have.iter().filter(|k| k.metric != metric) {
        ops.push(RouteOp::Delete(extra.clone()));
    }
    let at_metric = have.iter().find(|k| k.metric == metric);
    match (want, at_metric) {
        (Some(target), Some(k)) if target.satisfied_by(&k.target) => {}
        (Some(target), Some(_)) => ops.push(RouteOp::Replace(Route {
            dst,
            target: target.clone(),
        })),
        (Some(target), None) => ops.push(RouteOp::Add(Route {
            dst,
            target: target.clone(),
        })),
        (None, Some(k)) => ops.push(RouteOp::Delete(k.clone())),
        (None, None) => {}
    }
    ops
}

#[cfg(test)]
mod tests;

//! The I/O loop around [`RouteReconciler`]: feeds it inputs, performs its
//! outputs on a [`KernelRoutes`] implementation, and keeps its resync timer.
//!
//! Operations emitted together target distinct prefixes, so they are applied
//! concurrently (bounded by [`RouteSyncer::CONCURRENCY`]); their results are
//! fed back one by one, which may emit follow-up operations.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info_span, warn, Instrument};

use crate::netlink::KernelRoutes;
use crate::reconciler::{Input, OpError, Output, ReconcilerConfig, RouteOp, RouteReconciler};
use crate::route::Route;

/// Drives a [`RouteReconciler`] against a kernel.
pub struct RouteSyncer<K> {
    kernel: K,
    reconciler: RouteReconciler,
    resync_at: Option<Instant>,
    ops_applied: u64,
}

impl<K: KernelRoutes + Sync> RouteSyncer<K> {
    /// Netlink requests in flight at once while converging.
    pub const CONCURRENCY: usize = 64;

    pub fn new(kernel: K, config: ReconcilerConfig) -> Self {
        Self {
            kernel,
            reconciler: RouteReconciler::new(config),
            resync_at: None,
            ops_applied: 0,
        }
    }

    pub fn reconciler(&self) -> &RouteReconciler {
        &self.reconciler
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// When the reconciler wants its next resync (after a failed dump this
    /// is soon), for callers running their own loop instead of [`Self::run`]:
    /// feed [`Input::ResyncTimer`] at or after this instant.
    pub fn next_resync(&self) -> Option<Instant> {
        self.resync_at
    }

    /// Operations performed on the kernel so far (successful or not).
    pub fn ops_applied(&self) -> u64 {
        self.ops_applied
    }

    /// Feed one input and perform everything it leads to, until the
    /// reconciler has nothing more to do right now.
    pub async fn handle(&mut self, input: Input) {
        let mut pending = self.reconciler.process(input);
        while !pending.is_empty() {
            let mut ops: Vec<RouteOp> = Vec::new();
            let mut next = Vec::new();
            for output in pending.drain(..) {
                match output {
                    Output::DumpKernel => {
                        let input = match self.kernel.list_routes().await {
                            Ok(routes) => {
                                debug!(count = routes.len(), "kernel routes dumped");
                                Input::KernelDump(routes)
                            }
                            Err(error) => {
                                warn!(%error, "listing kernel routes failed");
                                Input::KernelDumpFailed
                            }
                        };
                        next.extend(self.reconciler.process(input));
                    }
                    Output::Apply(op) => ops.push(op),
                    Output::StartResyncTimer(after) => {
                        self.resync_at = Some(Instant::now() + after)
                    }
                }
            }
            if !ops.is_empty() {
                self.ops_applied += ops.len() as u64;
                let kernel = &self.kernel;
                let mut results = futures::stream::iter(ops)
                    .map(|op| async move {
                        let mut result = kernel.apply(&op).await;
                        if let (RouteOp::Add(route), Err(OpError::Exists)) = (&op, &result) {
                            // brindle-cni installs a workload's route (with
                            // our protocol) before this node's view has it:
                            // if that is exactly the route wanted, the Add's
                            // effect is there. A foreign route stays a failure.
                            if kernel.holds(route).await {
                                result = Ok(());
                            }
                        }
                        (op, result)
                    })
                    .buffer_unordered(Self::CONCURRENCY);
                while let Some((op, result)) = results.next().await {
                    debug!(?op, ?result, "route op");
                    next.extend(self.reconciler.process(Input::OpResult { op, result }));
                }
            }
            pending = next;
        }
    }

    /// Start (dump the kernel and converge), then serve `updates` and the
    /// resync timer until the channel closes.
    pub async fn run(mut self, mut updates: mpsc::Receiver<Input>) -> Self {
        let span = info_span!("route_sync");
        async {
            self.handle(Input::Start).await;
            loop {
                let timer = self
                    .resync_at
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                tokio::select! {
                    update = updates.recv() => match update {
                        Some(input) => self.handle(input).await,
                        None => break,
                    },
                    _ = tokio::time::sleep_until(timer) => {
                        self.resync_at = None;
                        self.handle(Input::ResyncTimer).await;
                    }
                }
            }
        }
        .instrument(span)
        .await;
        self
    }
}

/// A [`RouteSyncer`] in a task of its own, so that whoever computes the
/// desired routes never waits for the kernel: on a busy host installing a
/// few hundred routes takes seconds of wall time (each netlink answer waits
/// for the process to be scheduled), and a route reflector that converged
/// inline added no new peer meanwhile. The latest [`Self::set_all`]
/// supersedes one not yet applied; other inputs are applied in order,
/// after the routes handed over before them.
pub struct RouteSyncTask {
    shared: Arc<TaskShared>,
}

#[derive(Default)]
struct TaskShared {
    pending: std::sync::Mutex<Pending>,
    wake: tokio::sync::Notify,
    in_sync: AtomicBool,
}

#[derive(Default)]
struct Pending {
    routes: Option<Vec<Route>>,
    inputs: Vec<Input>,
    closed: bool,
}

impl RouteSyncTask {
    /// Starts the task; it ends when the handle is dropped.
    pub fn spawn<K: KernelRoutes + Send + Sync + 'static>(mut syncer: RouteSyncer<K>) -> Self {
        let shared = Arc::new(TaskShared::default());
        let task = shared.clone();
        tokio::spawn(
            async move {
                loop {
                    let (routes, inputs, closed) = {
                        let mut p = task.pending.lock().unwrap_or_else(|e| e.into_inner());
                        (p.routes.take(), std::mem::take(&mut p.inputs), p.closed)
                    };
                    if closed {
                        break;
                    }
                    if routes.is_none() && inputs.is_empty() {
                        let timer = syncer
                            .resync_at
                            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                        tokio::select! {
                            _ = task.wake.notified() => {}
                            _ = tokio::time::sleep_until(timer) => {
                                syncer.resync_at = None;
                                syncer.handle(Input::ResyncTimer).await;
                            }
                        }
                        continue;
                    }
                    // Not in sync while a batch is being applied.
                    task.in_sync.store(false, Ordering::Relaxed);
                    if let Some(routes) = routes {
                        syncer.handle(Input::SetAll(routes)).await;
                    }
                    for input in inputs {
                        syncer.handle(input).await;
                    }
                    task.in_sync
                        .store(syncer.reconciler.in_sync(), Ordering::Relaxed);
                }
            }
            .instrument(info_span!("route_sync")),
        );
        Self { shared }
    }

    /// The routes that should be in the kernel (all of them).
    pub fn set_all(&self, routes: Vec<Route>) {
        self.update(|p| p.routes = Some(routes));
    }

    /// Any other input (start, link events, the resync timer).
    pub fn send(&self, input: Input) {
        self.update(|p| p.inputs.push(input));
    }

    /// Whether the kernel held what was last handed over, as of the last
    /// batch the task applied.
    pub fn in_sync(&self) -> bool {
        let idle = {
            let p = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            p.routes.is_none() && p.inputs.is_empty()
        };
        idle && self.shared.in_sync.load(Ordering::Relaxed)
    }

    fn update(&self, change: impl FnOnce(&mut Pending)) {
        {
            let mut p = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            change(&mut p);
        }
        self.shared.wake.notify_one();
    }
}

impl Drop for RouteSyncTask {
    fn drop(&mut self) {
        self.update(|p| p.closed = true);
    }
}

//! The I/O loop around [`RouteReconciler`]: feeds it inputs, performs its
//! outputs on a [`KernelRoutes`] implementation, and keeps its resync timer.
//!
//! Operations emitted together target distinct prefixes, so they are applied
//! concurrently (bounded by [`RouteSyncer::CONCURRENCY`]); their results are
//! fed back one by one, which may emit follow-up operations.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info_span, warn, Instrument};

use crate::netlink::KernelRoutes;
use crate::reconciler::{Input, OpError, Output, ReconcilerConfig, RouteOp, RouteReconciler};

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

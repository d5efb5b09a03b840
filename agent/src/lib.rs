//! `brindle-agent`: the node daemon (`brindle-node`) and the CNI plugins
//! (`brindle-cni`, `brindle-ipam`).
//!
//! This crate owns everything that touches one host's kernel for the fabric:
//! workload veths and host routes, the route reconciler (desired routes vs
//! kernel routes, sans-IO, with an rtnetlink implementation), tunnels (ipip,
//! VXLAN), and the glue that drives the BGP speaker and the policy engine from
//! the datastore.
//!
//! Layout (pure cores first, then the one real implementation):
//! - [`route`]: the route model (`blackhole`, `dev caliX scope link`,
//!   `via`, `onlink`, ECMP) and Brindle's route protocol number (80);
//! - [`reconciler`]: sans-IO state machine, desired vs kernel → minimal
//!   add/replace/delete operations, timers as outputs;
//! - [`netlink`]: rtnetlink implementation ([`netlink::Netlink`], trait
//!   [`netlink::KernelRoutes`]) for routes, links, addresses, neighbours, FDB;
//! - [`routesync`]: the loop driving the reconciler on a kernel;
//! - [`linkwatch`]: link notifications that unblock routes waiting for a veth;
//! - [`netns`]: run work inside another network namespace;
//! - [`sysctl`]: per-namespace `/proc/sys` writes;
//! - [`workload`]: CNI ADD/DEL plumbing (veth, proxy ARP, container routes);
//! - [`cni`]: the `brindle-cni`/`brindle-ipam` plugins (CNI 1.0 commands,
//!   IPAM delegation, WorkloadEndpoints) on top of [`workload`];
//! - [`tunnel`]: `vxlan.brindle` + static neighbour/FDB entries, `tunl0`;
//! - [`node`]: the node daemon `brindle-node` (see its module docs): the
//!   datastore mirror, the pure desired state, and the I/O shell that drives
//!   the speaker, the reconciler, the tunnels and the policy engine from it.
//!
//! Tests: unit tests next to each module (table-driven diffs, a seeded
//! model-based reconciler simulation); `tests/netns_*.rs` prove the real
//! implementation in network namespaces they create and delete (root).

pub mod cni;
pub mod docker;
pub mod linkwatch;
pub mod netlink;
pub mod netns;
pub mod node;
pub mod reconciler;
pub mod route;
pub mod routesync;
pub mod sysctl;
pub mod tunnel;
pub mod workload;

#[cfg(test)]
mod reconciler_sim;

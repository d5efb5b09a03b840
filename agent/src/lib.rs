//! `brindle-agent`: the node daemon (`brindle-node`) and the CNI plugin
//! (`brindle-cni`).
//!
//! This crate owns everything that touches one host's kernel for the fabric:
//! workload veths and host routes, the route reconciler (desired routes vs
//! kernel routes, sans-IO, with an rtnetlink implementation), tunnels (ipip,
//! VXLAN), and the glue that drives the BGP speaker and the policy engine from
//! the datastore.

pub mod linkwatch;
pub mod netlink;
pub mod netns;
pub mod reconciler;
pub mod route;
pub mod routesync;
pub mod sysctl;
pub mod tunnel;
pub mod workload;

//! `brindle-node`: the per-host daemon that integrates the datastore, the
//! BGP speaker, the kernel dataplane and (later) the policy engine.
//!
//! Pure cores first, then the one real implementation:
//! - [`cluster`]: the mirrored datastore decoded into a [`cluster::ClusterState`];
//! - [`desired`]: `desired_state(inputs)` → kernel routes, BGP originations,
//!   BGP peers (mesh, BGPPeers, route reflectors) and VXLAN endpoints, with
//!   the route kind chosen from the pool's encapsulation and the subnets;
//! - [`status`]: the JSON served on the status socket (`brindlectl node status`);
//! - [`daemon`]: the tokio loop (Node registration with CAS, datastore
//!   follow, speaker, route reconciler, VXLAN device, status socket).
//!
//! Tests: table tests next to each pure module; `tests/node_*.rs` run real
//! daemons in network namespaces.

pub mod cluster;
pub mod daemon;
pub mod desired;
pub mod policy;
pub mod status;

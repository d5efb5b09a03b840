//! `brindle-node`: the per-host daemon that integrates the datastore, the
//! BGP speaker, the kernel dataplane and the policy engine.
//!
//! Pure cores first, then the one real implementation:
//! - [`cluster`]: the mirrored datastore decoded into a [`cluster::ClusterState`];
//! - [`desired`]: `desired_state(inputs)` → kernel routes, BGP originations,
//!   BGP peers (mesh, BGPPeers, route reflectors) and VXLAN endpoints, with
//!   the route kind chosen from the pool's encapsulation and the subnets;
//! - [`policy`]: stored resources → `brindle-policy` model → compiled
//!   rulesets (natOutgoing included) → the iptables/ipset applier;
//! - [`vteps`]: the task that programs the VXLAN devices' entries for the
//!   other nodes' VTEPs;
//! - [`status`]: the JSON served on the status socket (`brindlectl node status`);
//! - [`daemon`]: the tokio loop (Node registration with CAS, datastore
//!   follow, speaker, route reconciler, VXLAN device, status socket).
//!
//! Scope: IPv4, and IPv6 for nodes whose `Node` has `spec.bgp.ipv6Address`
//! (`--ip6`): IPv6 sessions, /122 blocks routed directly or through
//! `vxlan6.brindle` (no IPv6 ipip). The speaker's AS, port and
//! route-reflector cluster id are read at start.
//!
//! Tests: table tests next to each pure module; `tests/node_fabric.rs` runs
//! real daemons, BIRD and the `brindle-cni` binary in network namespaces.

pub mod cache;
pub mod cluster;
pub mod daemon;
pub mod desired;
pub mod limits;
pub mod logging;
pub mod options;
pub mod policy;
pub mod register;
pub mod secrets;
pub mod status;
pub mod vteps;

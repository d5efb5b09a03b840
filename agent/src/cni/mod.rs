//! `brindle-cni`: the CNI 1.0 plugin (ADD, DEL, CHECK, VERSION) and its
//! IPAM plugin `brindle-ipam` (the same binary under a second name).
//!
//! ```text
//!  runtime ──env CNI_*, stdin netconf──► brindle-cni ──same env+stdin──► brindle-ipam
//!                                            │                                │
//!                                  veth, routes, sysctls              Ipam (blocks by
//!                                  (crate::workload)                  handle <name>.<cid>)
//!                                            └── WorkloadEndpoint ──► datastore ◄┘
//! ```
//!
//! - [`spec`]: the contract as data (env, config, results, error objects
//!   with the spec's codes); pure.
//! - [`plugin`]: the commands. ADD is all-or-nothing; DEL is idempotent
//!   and works on half-created workloads. When `ipam.type` is
//!   `brindle-ipam` its code runs inside `brindle-cni` on the store the
//!   plugin already opened (same result, one process start fewer); any
//!   other IPAM plugin is found on `CNI_PATH` and run as the spec says.
//!
//! Tests: unit tests here; `tests/cni_*.rs` run the built binary exactly as
//! a runtime does (env, stdin, a netns from `ip netns add`, `CNI_PATH` with
//! both names) against a temporary embedded store.

mod errors;
mod identity;
mod ipam;
mod lock;
pub mod plugin;
pub mod spec;

pub use identity::WorkloadIdentity;
pub use ipam::find_plugin;
pub use plugin::{run, Role};
pub use spec::{CniError, ErrorCode, CNI_VERSION};

//! `brindle-docker`: Docker's remote network and IPAM driver (libnetwork's
//! plugin protocol) for Brindle. One process per host, next to dockerd and
//! brindle-node; it owns what a Docker container gets from Brindle: its
//! addresses (Brindle IPAM), its WorkloadEndpoint and its veth, wired as
//! brindle-cni wires a CNI workload (`workload`, shared).
//!
//! - `protocol`: the requests and replies, Go's JSON names;
//! - `driver`: what each call does (see its docs for the semantics);
//! - `engine`: the Docker Engine API reads (network names, labels);
//! - `names`: network ids and names, remembered on disk;
//! - `server`: HTTP over the plugin's Unix socket.

pub mod driver;
pub mod engine;
pub mod names;
pub mod protocol;
pub mod server;

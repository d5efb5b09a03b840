//! `brindle-testbed`: network-namespace topologies and real routing daemons
//! for Brindle's tests and demo.
//!
//! Everything is synchronous std code; every resource is owned by a handle
//! and torn down on drop (also during a panic unwind):
//!
//! * [`Netns`]: a namespace with `lo` up; run commands in it, spawn daemons
//!   ([`Process`], killed with its process group on drop), sysctls, routes.
//! * [`veth`] and [`Lan`]: point-to-point links and switched segments.
//! * [`topology`]: [`two_hosts_one_subnet`] and [`hosts_on_two_subnets`].
//! * [`Etcd`] (one member; [`EtcdCluster`]: several, to crash and restart
//!   members), and the BGP speakers [`Bird`], [`Frr`] (zebra + bgpd) and
//!   [`Gobgp`], each started with a generated config ([`BgpConfig`], the
//!   tree's one generator of their configs, golden-tested) or a raw
//!   one, returned only once ready (or an error carrying the daemon's log),
//!   with helpers to wait for sessions and routes. Each daemon's files live
//!   in a private temp dir removed on drop.
//! * [`require`]: what a test needs (root, a program); missing under CI is a
//!   failure, elsewhere a skip that is printed and logged.
//! * [`sweep_stale`]: removes what crashed test processes left behind; it
//!   also runs automatically before a process creates its first namespace.
//!
//! Names come from [`unique_name`] (`bt<pid>_<n>_<tag>`, ≤ 15 chars) so tests
//! in many processes run in parallel. All of it needs root.
//!
//! ```no_run
//! use brindle_testbed::two_hosts_one_subnet;
//! let net = two_hosts_one_subnet()?;
//! let [a, b] = &net.hosts;
//! assert!(a.ns.ping(b.ipv4.into())?);
//! # Ok::<(), brindle_testbed::Error>(())
//! ```

mod bird;
mod cmd;
pub mod daemons;
pub mod docker;
mod error;
mod etcd;
mod frr;
mod gobgp;
mod link;
mod names;
mod netns;
pub mod podman;
mod process;
pub mod require;
mod speaker;
mod sweep;
pub mod topology;

pub use bird::{Bird, BirdProtocol, BIRD_READY_TIMEOUT};
pub use error::{Error, Result};
pub use etcd::{Etcd, EtcdCluster, ETCD_READY_TIMEOUT};
pub use frr::{Frr, FRR_READY_TIMEOUT};
pub use gobgp::{Gobgp, GOBGP_READY_TIMEOUT};
pub use link::{veth, Lan};
pub use names::{owner_pid, unique_name, IFNAMSIZ_MAX};
pub use netns::Netns;
pub use process::{poll_until, Process};
pub use speaker::{
    bird_config, bird_protocol_name, frr_config, gobgp_config, BgpConfig, Neighbor, Route,
    FRR_BFDD_CONFIG, FRR_BFD_PROFILE,
};
pub use sweep::{sweep_stale, SweepReport};
pub use topology::{
    gateway_v4, hosts_on_two_subnets, two_hosts_one_subnet, Host, RoutedFabric, TwoHosts,
};

//! How `brindle-node` is run (its flags, with calico-node's defaults) and
//! why it can fail to start: shared by the daemon and the modules it
//! starts with.

use ipnet::{Ipv4Net, Ipv6Net};
use std::path::PathBuf;
use std::time::Duration;

use brindle_bgp::speaker::SpeakerError;
use brindle_datastore::ipam::IpamError;
use brindle_datastore::resources::ResourceError;

use crate::netlink::NetlinkError;
use crate::route::BRINDLE_ROUTE_PROTOCOL;

/// How the daemon is run (`brindle-node` flags).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Datastore URL (`None`: `$BRINDLE_DATASTORE` or the default file).
    pub datastore: Option<String>,
    pub node_name: String,
    /// Address and subnet; `None`: those of the interface holding the
    /// default route.
    pub address: Option<Ipv4Net>,
    /// IPv6 address and subnet to record on the Node (`None`: keep what it
    /// has): the node's IPv6 BGP sessions run from it.
    pub address6: Option<Ipv6Net>,
    /// AS number to record on the Node (`None`: keep what it has).
    pub asn: Option<u32>,
    pub status_socket: PathBuf,
    pub route_protocol: u8,
    /// Periodic repair of kernel routes and VXLAN entries.
    pub resync_interval: Duration,
    /// Longest wait for BGP before kernel routes are converged anyway.
    pub startup_grace: Duration,
    /// Program policy (iptables + ipsets, natOutgoing).
    pub policy: bool,
    /// Release blocks empty for this long at each resync (`None`: never).
    pub ipam_gc_grace: Option<Duration>,
    /// Where BGP passwords are read: `<dir>/<secret name>/<key>`, the
    /// layout Kubernetes uses when it mounts a Secret.
    pub secrets_dir: PathBuf,
}

/// The default of `--secrets-dir`.
pub const DEFAULT_SECRETS_DIR: &str = "/etc/brindle/secrets";

impl NodeOptions {
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            datastore: None,
            node_name: node_name.into(),
            address: None,
            address6: None,
            asn: None,
            status_socket: PathBuf::from(super::status::DEFAULT_STATUS_SOCKET),
            route_protocol: BRINDLE_ROUTE_PROTOCOL,
            resync_interval: Duration::from_secs(90),
            startup_grace: Duration::from_secs(30),
            policy: true,
            ipam_gc_grace: Some(Duration::from_secs(900)),
            secrets_dir: PathBuf::from(DEFAULT_SECRETS_DIR),
        }
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("datastore: {0}")]
    Datastore(#[from] brindle_datastore::Error),
    #[error("{0}")]
    Resource(#[from] ResourceError),
    #[error("IPAM: {0}")]
    Ipam(#[from] IpamError),
    #[error("netlink: {0}")]
    Netlink(#[from] NetlinkError),
    #[error("BGP speaker: {0}")]
    Speaker(#[from] SpeakerError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("status socket: {0}")]
    Status(String),
}

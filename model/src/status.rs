//! The node status document: what `brindle-node` serves on its status
//! socket and `brindlectl node status` reads. One schema for both ends.
//!
//! Protocol: a client connects to the node's Unix socket (default
//! [`DEFAULT_STATUS_SOCKET`]); the daemon writes one JSON document and
//! closes the connection. No request is read. The document:
//!
//! ```json
//! {
//!   "running": true,
//!   "node": "node-a",
//!   "asNumber": 64512,
//!   "routerId": "10.0.1.1",
//!   "routesInSync": true,
//!   "peers": [
//!     { "address": "10.0.1.2", "type": "node-to-node mesh", "state": "up",
//!       "since": "2026-11-23 05:20:01", "info": "Established",
//!       "name": "node-b", "established": true, "sinceSeconds": 42,
//!       "prefixesReceived": 1, "prefixesAdvertised": 1 }
//!   ]
//! }
//! ```
//!
//! `type` is `node-to-node mesh`, `global` or `node specific`; `state` is
//! `up` while Established, else `start`; `info` is the FSM state, followed
//! by the last error when the session is not up (Calico's columns). Peers of
//! both families are in one list; the address tells the family. Readers
//! ignore fields they do not know, and every field but a peer's `address`,
//! `type` and `state` may be absent (an older or newer daemon).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Where `brindle-node` listens by default (what `brindlectl` asks).
pub const DEFAULT_STATUS_SOCKET: &str = "/var/run/brindle/node-status.sock";

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Whether the daemon considers itself up (absent: it answered, so yes).
    #[serde(default = "yes")]
    pub running: bool,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub as_number: u32,
    #[serde(default)]
    pub router_id: String,
    /// The route reconciler last saw the kernel match the desired routes.
    #[serde(default)]
    pub routes_in_sync: bool,
    /// Every configured peer, of either family.
    #[serde(default)]
    pub peers: Vec<PeerRow>,
}

fn yes() -> bool {
    true
}

/// How a session came to be (Calico's words in `node status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PeerType {
    #[serde(rename = "node-to-node mesh")]
    Mesh,
    #[serde(rename = "global")]
    Global,
    #[serde(rename = "node specific")]
    NodeSpecific,
    /// A workload on this node selected by a BGPPeer's
    /// `localWorkloadSelector` (calicoctl does not list these).
    #[serde(rename = "local workload")]
    LocalWorkload,
}

impl PeerType {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerType::Mesh => "node-to-node mesh",
            PeerType::Global => "global",
            PeerType::NodeSpecific => "node specific",
            PeerType::LocalWorkload => "local workload",
        }
    }
}

/// One BGP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    /// The peer's address (its family picks the table).
    pub address: IpAddr,
    #[serde(rename = "type")]
    pub peer_type: PeerType,
    /// `up` or `start` (BIRD's words, as calicoctl shows them).
    pub state: String,
    /// UTC `YYYY-MM-DD HH:MM:SS` when the session became Established.
    #[serde(default)]
    pub since: String,
    /// FSM state and last error, e.g. `Established` or `Active Connection refused`.
    #[serde(default)]
    pub info: String,
    /// Remote node, or the BGPPeer resource.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub established: bool,
    #[serde(default)]
    pub since_seconds: Option<u64>,
    #[serde(default)]
    pub prefixes_received: usize,
    #[serde(default)]
    pub prefixes_advertised: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_round_trips_and_tolerates_unknown_and_missing_fields() {
        let report = StatusReport {
            running: true,
            node: "a".into(),
            as_number: 64512,
            router_id: "10.0.1.1".into(),
            routes_in_sync: true,
            peers: vec![PeerRow {
                address: "10.0.1.2".parse().unwrap(),
                peer_type: PeerType::Mesh,
                state: "up".into(),
                since: "2026-11-23 05:20:01".into(),
                info: "Established".into(),
                name: "b".into(),
                established: true,
                since_seconds: Some(3),
                prefixes_received: 1,
                prefixes_advertised: 2,
            }],
        };
        let v = serde_json::to_value(&report).unwrap();
        let peer = &v["peers"][0];
        assert_eq!(peer["address"], "10.0.1.2");
        assert_eq!(peer["type"], "node-to-node mesh");
        assert_eq!(peer["state"], "up");
        assert_eq!(peer["since"], "2026-11-23 05:20:01");
        assert_eq!(peer["info"], "Established");
        assert_eq!(v["asNumber"], 64512);
        let back: StatusReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, report);

        let sparse: StatusReport = serde_json::from_str(
            r#"{"peers":[{"address":"fd00::1","type":"global","state":"start","extra":1}]}"#,
        )
        .unwrap();
        assert!(sparse.running);
        assert_eq!(sparse.peers[0].peer_type, PeerType::Global);
        assert_eq!(sparse.peers[0].info, "");
    }
}

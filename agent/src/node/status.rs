//! What the status socket serves: the JSON `brindlectl node status` prints.
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
//! both families are in one list; the address tells the family. Clients must
//! ignore fields they do not know.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brindle_bgp::speaker::{PeerState, PeerStatus};
use serde::{Deserialize, Serialize};

use super::desired::PeerType;

/// Where the daemon listens by default (what `brindlectl` asks).
pub const DEFAULT_STATUS_SOCKET: &str = "/var/run/brindle/node-status.sock";

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub running: bool,
    pub node: String,
    pub as_number: u32,
    pub router_id: String,
    /// The route reconciler last saw the kernel match the desired routes.
    pub routes_in_sync: bool,
    pub peers: Vec<PeerRow>,
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    pub address: std::net::IpAddr,
    #[serde(rename = "type")]
    pub peer_type: PeerType,
    pub state: String,
    /// UTC `YYYY-MM-DD HH:MM:SS` when the session became Established.
    pub since: String,
    pub info: String,
    /// Remote node, or the BGPPeer resource.
    pub name: String,
    pub established: bool,
    pub since_seconds: Option<u64>,
    pub prefixes_received: usize,
    pub prefixes_advertised: usize,
}

impl PeerRow {
    /// Builds a row from the speaker's view of a peer at `now`.
    pub fn from_status(
        status: &PeerStatus,
        peer_type: PeerType,
        name: &str,
        now: SystemTime,
    ) -> Self {
        let established = status.state == PeerState::Established;
        let mut info = format!("{:?}", status.state);
        if !established {
            if let Some(error) = &status.last_error {
                info.push(' ');
                info.push_str(error);
            }
        }
        let since = status
            .uptime
            .filter(|_| established)
            .and_then(|up| now.checked_sub(up))
            .map(format_utc)
            .unwrap_or_default();
        PeerRow {
            address: status.config.address,
            peer_type,
            state: if established { "up" } else { "start" }.to_owned(),
            since,
            info,
            name: name.to_owned(),
            established,
            since_seconds: status.uptime.filter(|_| established).map(|u| u.as_secs()),
            prefixes_received: status.prefixes_received,
            prefixes_advertised: status.prefixes_advertised,
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) without a calendar crate: days to civil date
/// after Howard Hinnant's `civil_from_days`.
pub fn format_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01 00:00:00");
        // 2024-02-29 12:34:56 UTC (a leap day).
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(1_709_210_096)),
            "2024-02-29 12:34:56"
        );
    }

    #[test]
    fn json_shape_is_what_the_cli_reads() {
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
        let v: serde_json::Value = serde_json::to_value(&report).unwrap();
        let peer = &v["peers"][0];
        assert_eq!(peer["address"], "10.0.1.2");
        assert_eq!(peer["type"], "node-to-node mesh");
        assert_eq!(peer["state"], "up");
        assert_eq!(peer["since"], "2026-11-23 05:20:01");
        assert_eq!(peer["info"], "Established");
        assert_eq!(v["asNumber"], 64512);
        let back: StatusReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, report);
    }
}

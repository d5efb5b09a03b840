//! Builds the status socket's document (its schema is
//! [`brindle_model::status`], shared with `brindlectl node status`) from the
//! speaker's view of its peers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tracing::debug;

use brindle_bgp::speaker::{PeerState, PeerStatus, Speaker};
pub use brindle_model::status::{PeerRow, PeerType, StatusReport, DEFAULT_STATUS_SOCKET};

/// A row from the speaker's view of a peer at `now`.
pub fn peer_row(status: &PeerStatus, peer_type: PeerType, name: &str, now: SystemTime) -> PeerRow {
    let established = status.state == PeerState::Established;
    let mut info = format!("{:?}", status.state);
    if let Some(bfd) = status.bfd {
        info.push_str(&format!(" BFD {bfd}"));
    }
    if status.prefix_limit_exceeded && established {
        info.push_str(&format!(
            " (past the prefix limit: {} received)",
            status.prefixes_received
        ));
    }
    if !established {
        if let Some(error) = &status.last_error {
            info.push(' ');
            info.push_str(error);
        }
        // A peer whose password differs (or that has none) drops our
        // signed segments without a word: the only sign is no answer.
        if status.config.md5_password.is_some()
            && matches!(status.state, PeerState::Connect | PeerState::Active)
        {
            info.push_str(" (TCP-MD5: no answer yet; check that the password matches the peer's)");
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

/// Shared with the status socket.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) kinds: BTreeMap<IpAddr, (PeerType, String)>,
    /// Peers not handed to the speaker, with why (a password that cannot
    /// be read): shown so `node status` says why there is no session.
    pub(super) held: BTreeMap<IpAddr, (PeerType, String, String)>,
    pub(super) routes_in_sync: bool,
}

/// Answers one status client with the node's report.
pub(super) async fn serve_status(
    stream: tokio::net::UnixStream,
    speaker: Speaker,
    shared: Arc<Mutex<Shared>>,
    node: String,
    asn: u32,
    router_id: Ipv4Addr,
) {
    let peers = speaker.peers().await.unwrap_or_default();
    let now = SystemTime::now();
    let report = {
        let shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        StatusReport {
            running: true,
            node,
            as_number: asn,
            router_id: router_id.to_string(),
            routes_in_sync: shared.routes_in_sync,
            peers: peers
                .iter()
                .map(|p| {
                    let (kind, name) = shared
                        .kinds
                        .get(&p.config.address)
                        .cloned()
                        .unwrap_or((PeerType::Global, String::new()));
                    peer_row(p, kind, &name, now)
                })
                .chain(
                    shared
                        .held
                        .iter()
                        .map(|(address, (kind, name, why))| PeerRow {
                            address: *address,
                            peer_type: *kind,
                            state: "start".to_owned(),
                            since: String::new(),
                            info: format!("Idle {why}"),
                            name: name.clone(),
                            established: false,
                            since_seconds: None,
                            prefixes_received: 0,
                            prefixes_advertised: 0,
                        }),
                )
                .collect(),
        }
    };
    let mut stream = stream;
    let text = serde_json::to_vec_pretty(&report).unwrap_or_default();
    if let Err(error) = stream.write_all(&text).await {
        debug!(%error, "status client went away");
    }
    let _ = stream.shutdown().await;
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
}

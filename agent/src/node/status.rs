//! Builds the status socket's document (its schema is
//! [`brindle_model::status`], shared with `brindlectl node status`) from the
//! speaker's view of its peers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brindle_bgp::speaker::{PeerState, PeerStatus};
pub use brindle_model::status::{PeerRow, PeerType, StatusReport, DEFAULT_STATUS_SOCKET};

/// A row from the speaker's view of a peer at `now`.
pub fn peer_row(status: &PeerStatus, peer_type: PeerType, name: &str, now: SystemTime) -> PeerRow {
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
}

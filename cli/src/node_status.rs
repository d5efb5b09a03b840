//! `brindlectl node status`: like `calicoctl node status`, whether the node
//! daemon runs, then per address family a table of BGP peers.
//!
//! ```text
//! brindle-node process is running.
//!
//! IPv4 BGP status
//! +---------------+-------------------+-------+----------+-------------+
//! | PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |    INFO     |
//! +---------------+-------------------+-------+----------+-------------+
//! | 172.31.40.217 | node-to-node mesh | up    | 17:38:47 | Established |
//! +---------------+-------------------+-------+----------+-------------+
//!
//! IPv6 BGP status
//! No IPv6 peers found.
//! ```
//!
//! The daemon answers on a local Unix socket with one JSON document
//! ([`StatusReport`], whose schema both ends share:
//! [`brindle_model::status`]) and closes the connection. The printer is
//! pure ([`render`]); [`query`] is the only I/O.

use std::io::Read;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use brindle_model::status::{StatusReport, DEFAULT_STATUS_SOCKET as DEFAULT_SOCKET};

/// Why a status query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Nothing listens on the socket: the daemon is not running.
    #[error("brindle-node is not running (no status socket at {path})")]
    NotRunning { path: String },
    #[error("reading node status from {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node status from {path} is not valid: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Asks the daemon listening on `socket` for its status.
pub fn query(socket: &Path, timeout: Duration) -> Result<StatusReport, QueryError> {
    let path = socket.display().to_string();
    let io = |source: std::io::Error| QueryError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(QueryError::NotRunning { path });
        }
        Err(e) => return Err(io(e)),
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(io)?;
    serde_json::from_str(&text).map_err(|source| QueryError::Decode { path, source })
}

/// The whole `node status` output for a running daemon.
pub fn render(report: &StatusReport) -> String {
    if !report.running {
        return "brindle-node process is not running.\n".into();
    }
    let mut out = String::from("brindle-node process is running.\n");
    for (family, is_family) in [
        ("IPv4", IpAddr::is_ipv4 as fn(&IpAddr) -> bool),
        ("IPv6", IpAddr::is_ipv6),
    ] {
        out.push_str(&format!("\n{family} BGP status\n"));
        let rows: Vec<[String; 5]> = report
            .peers
            .iter()
            .filter(|p| is_family(&p.address))
            .map(|p| {
                [
                    p.address.to_string(),
                    p.peer_type.as_str().to_owned(),
                    p.state.clone(),
                    p.since.clone(),
                    p.info.clone(),
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str(&format!("No {family} peers found.\n"));
        } else {
            out.push_str(&crate::table::boxed(
                ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                &rows,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_calicoctl() {
        let report: StatusReport = serde_json::from_str(
            r#"{"peers":[{"address":"172.31.40.217","type":"node-to-node mesh","state":"up",
                "since":"17:38:47","info":"Established","extra":1}]}"#,
        )
        .unwrap();
        assert_eq!(
            render(&report),
            "brindle-node process is running.\n\
             \n\
             IPv4 BGP status\n\
             +---------------+-------------------+-------+----------+-------------+\n\
             | PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |    INFO     |\n\
             +---------------+-------------------+-------+----------+-------------+\n\
             | 172.31.40.217 | node-to-node mesh | up    | 17:38:47 | Established |\n\
             +---------------+-------------------+-------+----------+-------------+\n\
             \n\
             IPv6 BGP status\n\
             No IPv6 peers found.\n"
        );
    }

    /// The document `brindle-node` serves, as its module documents it.
    #[test]
    fn reads_the_daemons_document() {
        let report: StatusReport = serde_json::from_str(
            r#"{
              "running": true, "node": "node-a", "asNumber": 64512,
              "routerId": "10.0.1.1", "routesInSync": true,
              "peers": [
                { "address": "10.0.1.2", "type": "node-to-node mesh", "state": "up",
                  "since": "2026-11-23 05:20:01", "info": "Established",
                  "name": "node-b", "established": true, "sinceSeconds": 42,
                  "prefixesReceived": 1, "prefixesAdvertised": 1 },
                { "address": "fd00::9", "type": "global", "state": "start",
                  "since": "", "info": "Active Connection refused",
                  "name": "tor", "established": false, "sinceSeconds": null,
                  "prefixesReceived": 0, "prefixesAdvertised": 0 }
              ]
            }"#,
        )
        .unwrap();
        let text = render(&report);
        assert!(
            text.contains(
                "| 10.0.1.2     | node-to-node mesh | up    | 2026-11-23 05:20:01 | Established |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| fd00::9      | global    | start |       | Active Connection refused |"
            ),
            "{text}"
        );
        let stopped: StatusReport = serde_json::from_str(r#"{"running": false}"#).unwrap();
        assert_eq!(render(&stopped), "brindle-node process is not running.\n");
    }

    #[test]
    fn missing_socket_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = query(&dir.path().join("none.sock"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, QueryError::NotRunning { .. }), "{err}");
    }

    #[test]
    fn reads_a_report_from_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Write;
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(
                br#"{"peers":[{"address":"fd00::1","type":"global","state":"start","info":"Active"}]}"#,
            )
            .unwrap();
        });
        let report = query(&path, Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert_eq!(report.peers.len(), 1);
        let text = render(&report);
        assert!(text.contains("No IPv4 peers found."), "{text}");
        assert!(
            text.contains("| fd00::1      | global    | start |       | Active |"),
            "{text}"
        );
    }
}

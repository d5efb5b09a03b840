//! The control socket of `brindle-bgpd`: a Unix stream socket speaking
//! line-delimited JSON, one request line answered by one response line, any
//! number of requests per connection.
//!
//! ```text
//! → {"command":"show_peers"}
//! ← {"result":"peers","peers":[{"address":"10.0.0.2","asn":64513,"state":"Established",…}]}
//! → {"command":"show_routes"}
//! ← {"result":"routes","routes":[{"prefix":"10.20.0.0/26","next_hop":null,"as_path":"",…}]}
//! → {"command":"show_peer","address":"10.0.0.2"}
//! ← {"result":"peer","peer":{…}}
//! → {"command":"dance"}
//! ← {"result":"error","error":"bad request: unknown variant `dance`, …"}
//! ```
//!
//! The field sets are [`PeerView`] and [`RouteView`]; `show_routes` lists the
//! Loc-RIB (best routes only, so `best` is always true today). A request line
//! longer than [`MAX_REQUEST_LINE`] bytes closes the connection; a malformed
//! one gets an `error` response and the connection stays usable. Errors of
//! one client never affect the daemon or other clients.
//!
//! [`ControlServer::bind`] refuses to replace the socket of a daemon that
//! still answers or anything that is not a socket, and replaces a stale
//! socket file left by one that died ([`crate::unix_socket`]).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info_span, warn, Instrument};

use super::config::{community_text, large_community_text};
use crate::packet::{AsPath, AsSegmentType, Origin};
use crate::speaker::{PeerStatus, RouteEntry, RouteSource, Speaker, SpeakerError};

/// Longest request line accepted, bytes.
pub const MAX_REQUEST_LINE: usize = 4096;
/// How long [`request`] waits for the daemon.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    ShowPeers,
    ShowRoutes,
    ShowPeer { address: IpAddr },
}

/// A control response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ControlResponse {
    Peers { peers: Vec<PeerView> },
    Routes { routes: Vec<RouteView> },
    Peer { peer: PeerView },
    Error { error: String },
}

/// One peer as the control socket reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub address: IpAddr,
    pub asn: u32,
    /// FSM state: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    pub state: String,
    /// Seconds Established; `None` when not.
    pub uptime: Option<u64>,
    /// Prefixes the peer announces to us.
    pub received: usize,
    /// Of those, the ones that passed the import rules.
    pub accepted: usize,
    /// Prefixes we advertise to the peer.
    pub advertised: usize,
    /// Routes kept as stale during the peer's graceful restart.
    pub stale: usize,
    pub router_id: Option<Ipv4Addr>,
    /// Negotiated families (e.g. `ipv4-unicast`).
    pub families: Vec<String>,
    pub hold_time: Option<u16>,
    pub last_error: Option<String>,
    pub established_transitions: u64,
    pub passive: bool,
    pub route_reflector_client: bool,
}

impl From<&PeerStatus> for PeerView {
    fn from(s: &PeerStatus) -> Self {
        PeerView {
            address: s.config.address,
            asn: s.config.remote_asn,
            state: s.state.to_string(),
            uptime: s.uptime.map(|d| d.as_secs()),
            received: s.prefixes_received,
            accepted: s.prefixes_accepted,
            advertised: s.prefixes_advertised,
            stale: s.prefixes_stale,
            router_id: s.router_id,
            families: s.families.iter().map(ToString::to_string).collect(),
            hold_time: s.hold_time,
            last_error: s.last_error.clone(),
            established_transitions: s.established_transitions,
            passive: s.config.passive,
            route_reflector_client: s.config.route_reflector_client,
        }
    }
}

/// One Loc-RIB route as the control socket reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub prefix: ipnet::IpNet,
    /// The best path's next hop; `None` for a route we originate without
    /// an explicit next hop (each session gets our address).
    pub next_hop: Option<IpAddr>,
    /// All next hops installed (ECMP).
    pub next_hops: Vec<IpAddr>,
    /// `local` or the peer's address.
    pub source: String,
    /// AS path as BIRD prints it: `64513 65000 {1 2}`; `(…)`/`[…]` for
    /// confederation sequences/sets. Empty for a local route.
    pub as_path: String,
    /// The AS numbers of the path's sequences, in order (sets omitted).
    pub as_path_asns: Vec<u32>,
    pub origin: String,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub communities: Vec<String>,
    pub large_communities: Vec<String>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub best: bool,
    pub stale: bool,
}

impl From<&RouteEntry> for RouteView {
    fn from(r: &RouteEntry) -> Self {
        let a = &r.attrs.attributes;
        RouteView {
            prefix: r.prefix,
            next_hop: r.attrs.next_hop_addr(),
            next_hops: r.next_hops.clone(),
            source: match r.source {
                RouteSource::Local => "local".to_string(),
                RouteSource::Peer(address) => address.to_string(),
            },
            as_path: as_path_text(r.attrs.as_path()),
            as_path_asns: r
                .attrs
                .as_path()
                .segments
                .iter()
                .filter(|s| s.kind == AsSegmentType::Sequence)
                .flat_map(|s| s.asns.iter().copied())
                .collect(),
            origin: match r.attrs.origin() {
                Origin::Igp => "igp",
                Origin::Egp => "egp",
                Origin::Incomplete => "incomplete",
            }
            .to_string(),
            local_pref: a.local_pref,
            med: a.med,
            communities: a.communities.iter().map(|c| community_text(*c)).collect(),
            large_communities: a
                .large_communities
                .iter()
                .map(|c| large_community_text(*c))
                .collect(),
            originator_id: a.originator_id,
            cluster_list: a.cluster_list.clone(),
            best: true,
            stale: r.stale,
        }
    }
}

/// `64513 65000 {1 2}`, the way BIRD and FRR print paths.
pub fn as_path_text(path: &AsPath) -> String {
    let mut parts = Vec::new();
    for segment in &path.segments {
        let asns: Vec<String> = segment.asns.iter().map(u32::to_string).collect();
        let asns = asns.join(" ");
        parts.push(match segment.kind {
            AsSegmentType::Sequence => asns,
            AsSegmentType::Set => format!("{{{asns}}}"),
            AsSegmentType::ConfedSequence => format!("({asns})"),
            AsSegmentType::ConfedSet => format!("[{asns}]"),
        });
    }
    parts.join(" ")
}

/// Where the control socket gets its answers: the daemon's speaker.
pub trait ControlSource: Clone + Send + Sync + 'static {
    fn peers(&self) -> impl std::future::Future<Output = Result<Vec<PeerView>, String>> + Send;
    fn routes(&self) -> impl std::future::Future<Output = Result<Vec<RouteView>, String>> + Send;
}

fn speaker_error(e: SpeakerError) -> String {
    e.to_string()
}

impl ControlSource for Speaker {
    async fn peers(&self) -> Result<Vec<PeerView>, String> {
        let peers = Speaker::peers(self).await.map_err(speaker_error)?;
        Ok(peers.iter().map(PeerView::from).collect())
    }
    async fn routes(&self) -> Result<Vec<RouteView>, String> {
        let routes = Speaker::routes(self).await.map_err(speaker_error)?;
        Ok(routes.iter().map(RouteView::from).collect())
    }
}

/// Answers one request.
pub async fn answer<S: ControlSource>(source: &S, request: ControlRequest) -> ControlResponse {
    let result = match request {
        ControlRequest::ShowPeers => source
            .peers()
            .await
            .map(|peers| ControlResponse::Peers { peers }),
        ControlRequest::ShowRoutes => source
            .routes()
            .await
            .map(|routes| ControlResponse::Routes { routes }),
        ControlRequest::ShowPeer { address } => source.peers().await.map(|peers| {
            match peers.into_iter().find(|p| p.address == address) {
                Some(peer) => ControlResponse::Peer { peer },
                None => ControlResponse::Error {
                    error: format!("no peer {address} is configured"),
                },
            }
        }),
    };
    result.unwrap_or_else(|error| ControlResponse::Error { error })
}

/// Answers one request line (the protocol's unit).
pub async fn answer_line<S: ControlSource>(source: &S, line: &str) -> ControlResponse {
    match serde_json::from_str::<ControlRequest>(line) {
        Ok(request) => answer(source, request).await,
        Err(e) => ControlResponse::Error {
            error: format!("bad request: {e}"),
        },
    }
}

/// Errors setting up the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Socket(#[from] crate::unix_socket::SocketPathError),
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The listening control socket; the socket file is removed on drop (only
/// while it is still the one this process created).
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: crate::unix_socket::SocketPath,
}

impl ControlServer {
    /// Binds `path` under [`crate::unix_socket::bind`]'s rules: a stale
    /// socket is replaced; a live daemon's socket, a regular file or
    /// anything else is refused and left alone. Must be called inside a
    /// tokio runtime.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        let io = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (listener, owned) = crate::unix_socket::bind(path)?;
        listener.set_nonblocking(true).map_err(io)?;
        let listener = UnixListener::from_std(listener).map_err(io)?;
        Ok(ControlServer {
            listener,
            path: owned,
        })
    }

    /// Path of the socket.
    pub fn path(&self) -> &Path {
        self.path.path()
    }

    /// Serves clients until the future is dropped.
    pub async fn serve<S: ControlSource>(&self, source: S) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let source = source.clone();
                    tokio::spawn(
                        async move {
                            if let Err(e) = serve_client(stream, &source).await {
                                debug!(error = %e, "control client ended");
                            }
                        }
                        .instrument(info_span!("control_client")),
                    );
                }
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn serve_client<S: ControlSource>(stream: UnixStream, source: &S) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_REQUEST_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && n > MAX_REQUEST_LINE {
            let reply = ControlResponse::Error {
                error: format!("request longer than {MAX_REQUEST_LINE} bytes"),
            };
            write.write_all(&response_line(&reply)).await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let reply = answer_line(source, text).await;
        write.write_all(&response_line(&reply)).await?;
    }
}

fn response_line(response: &ControlResponse) -> Vec<u8> {
    let mut out = serde_json::to_vec(response).unwrap_or_else(|e| {
        format!("{{\"result\":\"error\",\"error\":\"cannot encode response: {e}\"}}").into_bytes()
    });
    out.push(b'\n');
    out
}

/// Errors of the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach brindle-bgpd at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("brindle-bgpd closed the connection without answering")]
    NoAnswer,
    #[error("unreadable answer from brindle-bgpd: {0}")]
    BadAnswer(#[from] serde_json::Error),
}

/// Sends one request to the daemon at `path` and waits for the answer
/// (blocking; at most [`CLIENT_TIMEOUT`] per read or write).
pub fn request(path: &Path, request: &ControlRequest) -> Result<ControlResponse, ClientError> {
    let stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    if answer.is_empty() {
        return Err(ClientError::NoAnswer);
    }
    Ok(serde_json::from_str(&answer)?)
}

fn dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `1d02h03m`, `2h03m04s`, `3m04s`, `5s`.
pub fn duration_text(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
    out
}

/// The `show peers` table.
pub fn peers_table(peers: &[PeerView]) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                p.address.to_string(),
                p.asn.to_string(),
                p.state.clone(),
                p.uptime.map_or_else(|| "-".to_string(), duration_text),
                p.received.to_string(),
                p.accepted.to_string(),
                p.advertised.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ADDRESS",
            "ASN",
            "STATE",
            "UPTIME",
            "RECEIVED",
            "ACCEPTED",
            "ADVERTISED",
        ],
        &rows,
    )
}

/// The `show routes` table.
pub fn routes_table(routes: &[RouteView]) -> String {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                r.prefix.to_string(),
                r.next_hop
                    .map_or_else(|| "self".to_string(), |n| n.to_string()),
                if r.as_path.is_empty() {
                    "-".to_string()
                } else {
                    r.as_path.clone()
                },
                dash(r.local_pref),
                if r.best { "*" } else { "" }.to_string(),
            ]
        })
        .collect();
    table(
        &["PREFIX", "NEXT HOP", "AS PATH", "LOCAL PREF", "BEST"],
        &rows,
    )
}

/// The `show peer ADDRESS` detail.
pub fn peer_detail(p: &PeerView) -> String {
    let fields: Vec<(&str, String)> = vec![
        ("address", p.address.to_string()),
        ("asn", p.asn.to_string()),
        ("state", p.state.clone()),
        (
            "uptime",
            p.uptime.map_or_else(|| "-".to_string(), duration_text),
        ),
        ("router id", dash(p.router_id)),
        (
            "families",
            if p.families.is_empty() {
                "-".to_string()
            } else {
                p.families.join(", ")
            },
        ),
        ("hold time", dash(p.hold_time)),
        ("passive", p.passive.to_string()),
        ("rr client", p.route_reflector_client.to_string()),
        ("received", p.received.to_string()),
        ("accepted", p.accepted.to_string()),
        ("advertised", p.advertised.to_string()),
        ("stale", p.stale.to_string()),
        (
            "established",
            format!("{} times", p.established_transitions),
        ),
        ("last error", dash(p.last_error.clone())),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        let _ = writeln!(out, "{k:<12} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::AsSegment;

    #[derive(Clone)]
    struct Fixed(Vec<PeerView>, Vec<RouteView>);

    impl ControlSource for Fixed {
        async fn peers(&self) -> Result<Vec<PeerView>, String> {
            Ok(self.0.clone())
        }
        async fn routes(&self) -> Result<Vec<RouteView>, String> {
            Ok(self.1.clone())
        }
    }

    fn peer() -> PeerView {
        PeerView {
            address: "10.0.0.2".parse().unwrap(),
            asn: 64513,
            state: "Established".into(),
            uptime: Some(3723),
            received: 3,
            accepted: 2,
            advertised: 1,
            stale: 0,
            router_id: Some(Ipv4Addr::new(10, 0, 0, 2)),
            families: vec!["ipv4-unicast".into()],
            hold_time: Some(90),
            last_error: None,
            established_transitions: 1,
            passive: false,
            route_reflector_client: false,
        }
    }

    fn route() -> RouteView {
        RouteView {
            prefix: "10.30.0.0/26".parse().unwrap(),
            next_hop: Some("10.0.0.2".parse().unwrap()),
            next_hops: vec!["10.0.0.2".parse().unwrap()],
            source: "10.0.0.2".into(),
            as_path: "64513 {1 2}".into(),
            as_path_asns: vec![64513],
            origin: "igp".into(),
            local_pref: None,
            med: Some(5),
            communities: vec!["64513:1".into()],
            large_communities: vec![],
            originator_id: None,
            cluster_list: vec![],
            best: true,
            stale: false,
        }
    }

    #[test]
    fn requests_have_the_documented_wire_form() {
        let cases = [
            (ControlRequest::ShowPeers, r#"{"command":"show_peers"}"#),
            (ControlRequest::ShowRoutes, r#"{"command":"show_routes"}"#),
            (
                ControlRequest::ShowPeer {
                    address: "10.0.0.2".parse().unwrap(),
                },
                r#"{"command":"show_peer","address":"10.0.0.2"}"#,
            ),
        ];
        for (request, wire) in cases {
            assert_eq!(serde_json::to_string(&request).unwrap(), wire);
            assert_eq!(
                serde_json::from_str::<ControlRequest>(wire).unwrap(),
                request
            );
        }
        let error = ControlResponse::Error { error: "x".into() };
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"result":"error","error":"x"}"#
        );
    }

    #[tokio::test]
    async fn bad_requests_get_error_answers() {
        let source = Fixed(vec![peer()], vec![]);
        for line in [
            "",
            "{",
            r#"{"command":"dance"}"#,
            r#"{"command":"show_peer"}"#,
            "null",
        ] {
            let reply = answer_line(&source, line).await;
            assert!(
                matches!(reply, ControlResponse::Error { .. }),
                "{line}: {reply:?}"
            );
        }
        let reply = answer_line(&source, r#"{"command":"show_peer","address":"10.9.9.9"}"#).await;
        assert_eq!(
            reply,
            ControlResponse::Error {
                error: "no peer 10.9.9.9 is configured".into()
            }
        );
    }

    #[tokio::test]
    async fn server_answers_over_the_socket_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let server = ControlServer::bind(&path).unwrap();
        let source = Fixed(vec![peer()], vec![route()]);
        let task = tokio::spawn(async move { server.serve(source).await });

        let path2 = path.clone();
        let replies = tokio::task::spawn_blocking(move || {
            // Garbage, then an over-long line: the daemon keeps serving.
            let mut s = std::os::unix::net::UnixStream::connect(&path2).unwrap();
            s.write_all(b"\x00\xff garbage\n").unwrap();
            let mut first = String::new();
            BufReader::new(&s).read_line(&mut first).unwrap();
            let mut s = std::os::unix::net::UnixStream::connect(&path2).unwrap();
            let _ = s.write_all(&vec![b'a'; MAX_REQUEST_LINE * 2]);
            drop(s);
            let peers = request(&path2, &ControlRequest::ShowPeers).unwrap();
            let routes = request(&path2, &ControlRequest::ShowRoutes).unwrap();
            (first, peers, routes)
        })
        .await
        .unwrap();
        assert!(replies.0.contains(r#""result":"error""#), "{}", replies.0);
        assert_eq!(
            replies.1,
            ControlResponse::Peers {
                peers: vec![peer()]
            }
        );
        assert_eq!(
            replies.2,
            ControlResponse::Routes {
                routes: vec![route()]
            }
        );

        // A live daemon's socket is not stolen.
        assert!(matches!(
            ControlServer::bind(&path),
            Err(ControlError::Socket(
                crate::unix_socket::SocketPathError::InUse { .. }
            ))
        ));
        task.abort();
        let _ = task.await;
        assert!(!path.exists(), "socket file removed on drop");
        // A stale socket (its process died without removing it) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let again = ControlServer::bind(&path).unwrap();
        drop(again);
        // A regular file at the path is refused and left intact.
        std::fs::write(&path, b"keep me").unwrap();
        assert!(matches!(
            ControlServer::bind(&path),
            Err(ControlError::Socket(
                crate::unix_socket::SocketPathError::NotASocket { .. }
            ))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    }

    #[test]
    fn tables_have_the_documented_columns() {
        let text = peers_table(&[peer()]);
        assert_eq!(
            text,
            "ADDRESS   ASN    STATE        UPTIME    RECEIVED  ACCEPTED  ADVERTISED\n\
             10.0.0.2  64513  Established  1h02m03s  3         2         1\n"
        );
        let text = routes_table(&[route()]);
        assert_eq!(
            text,
            "PREFIX        NEXT HOP  AS PATH      LOCAL PREF  BEST\n\
             10.30.0.0/26  10.0.0.2  64513 {1 2}  -           *\n"
        );
        assert!(peer_detail(&peer()).contains("router id    10.0.0.2\n"));
    }

    #[test]
    fn as_paths_print_like_bird() {
        let path = AsPath {
            segments: vec![
                AsSegment {
                    kind: AsSegmentType::ConfedSequence,
                    asns: vec![65001],
                },
                AsSegment {
                    kind: AsSegmentType::Sequence,
                    asns: vec![64513, 23456],
                },
                AsSegment {
                    kind: AsSegmentType::Set,
                    asns: vec![1, 2],
                },
            ],
        };
        assert_eq!(as_path_text(&path), "(65001) 64513 23456 {1 2}");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(90_061), "1d01h01m");
    }
}

//! The BGP speaker: the tokio session layer around the sans-IO [`crate::fsm`],
//! [`crate::rib`] and [`crate::packet`] cores.
//!
//! ```text
//!              Speaker (handle, Clone)          subscribe() ─► BestRouteChange
//!                  │ commands                        ▲
//!                  ▼                                 │
//!  listener ──► core task: owns the Rib, the peer registry, subscribers,
//!  (accept)     graceful-restart stale state
//!                  │ ▲  session events / batches to send
//!                  ▼ │
//!             peer task (one per neighbour): Fsm per connection, timers as
//!             tokio sleeps, collision detection, UPDATE packing
//!                  │ ▲
//!             writer task / reader task per TCP connection (framing only)
//! ```
//!
//! ```no_run
//! use std::net::{IpAddr, Ipv4Addr};
//! use brindle_bgp::packet::{Origin, PathAttributes};
//! use brindle_bgp::speaker::{BestRouteChange, PathAttrs, PeerConfig, Speaker, SpeakerConfig};
//!
//! # async fn example() -> Result<(), brindle_bgp::speaker::SpeakerError> {
//! let mut config = SpeakerConfig::new(64512, Ipv4Addr::new(10, 0, 0, 1));
//! config.peers.push(PeerConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254)), 65000));
//! let speaker = Speaker::start(config).await?;
//!
//! // This node's IPAM block; a `None` next hop means "our session address".
//! let attrs = PathAttrs {
//!     attributes: PathAttributes { origin: Some(Origin::Igp), ..Default::default() },
//!     next_hop: None,
//! };
//! speaker.originate("10.244.1.0/26".parse().unwrap(), attrs).await?;
//!
//! // What to program into the kernel.
//! let mut routes = speaker.subscribe();
//! while let Some(change) = routes.recv().await {
//!     match change {
//!         BestRouteChange::Best(route) => println!("{} via {:?}", route.prefix, route.next_hops),
//!         BestRouteChange::Withdrawn(prefix) => println!("{prefix} gone"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Contract:
//! * [`Speaker::start`] binds the listen sockets (failing if it cannot) and
//!   starts the configured peers; it must be called inside a tokio runtime,
//!   whose network namespace the sockets belong to.
//! * Nothing a peer sends can panic the speaker or stop another peer: decode
//!   errors become the NOTIFICATION the codec maps them to, the session is
//!   closed and retried after the FSM's (damped) idle-hold time.
//! * The handle's methods fail only with [`SpeakerError::Stopped`] after
//!   [`Speaker::shutdown`], or with the configuration error they name.
//! * [`Speaker::subscribe`] first replays the current Loc-RIB as
//!   [`BestRouteChange::Best`] items, then reports every change in order; a
//!   subscriber that stops reading only costs memory, it never blocks BGP.
//! * Each peer's session announces multiprotocol IPv4/IPv6 unicast (as
//!   configured), route refresh, 4-octet AS, graceful restart (restart time,
//!   forwarding state preserved), ADD-PATH when configured and extended
//!   messages. The initial table is followed by End-of-RIB per family;
//!   ROUTE-REFRESH resends the Adj-RIB-Out.
//! * Graceful restart, helper side: see the `core` module; a peer's routes
//!   survive its crash until End-of-RIB or its restart time.
//! * Peer status counters: received (what the peer announces), accepted
//!   (what passed the import rules), advertised (what we sent in negotiated
//!   families), stale (kept for graceful restart).
//!
//! Not done: the restarting side of graceful restart (R bit, deferring our
//! End-of-RIB until our own table is complete: an embedding agent should
//! originate its prefixes before adding peers); ADD-PATH receive feeds the
//! RIB one path per peer and prefix (the last announced) and ADD-PATH send
//! sends the best path only; IPv6 link-local peers (scope ids); DelayOpen;
//! prefix limits and per-peer policy beyond the RFC import/export rules.

mod bfd;
mod config;
mod conn;
mod core;
mod listener;
mod peer;
mod plan;
mod received;
mod socket;

use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

pub use self::config::{
    AddPathConfig, LimitAction, PeerConfig, PrefixLimit, SpeakerConfig, BGP_PORT,
    DEFAULT_CONNECT_RETRY, DEFAULT_HOLD_TIME, DEFAULT_RESTART_TIME,
};
pub use self::plan::canonical as canonical_address;
pub use crate::fsm::State as PeerState;
use crate::packet::Family;
pub use crate::rib::{PathAttrs, RouteSource};

/// Errors of the speaker's API.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// A listen socket could not be set up.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("peer {0} is already configured")]
    DuplicatePeer(IpAddr),
    #[error("peer {0} is not configured")]
    UnknownPeer(IpAddr),
    /// The speaker was shut down.
    #[error("the speaker has stopped")]
    Stopped,
}

/// A change of the Loc-RIB, as the agent programs it into the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BestRouteChange {
    /// `prefix` now resolves to this route.
    Best(RouteEntry),
    /// `prefix` is no longer reachable.
    Withdrawn(IpNet),
}

impl BestRouteChange {
    pub fn prefix(&self) -> IpNet {
        match self {
            BestRouteChange::Best(route) => route.prefix,
            BestRouteChange::Withdrawn(prefix) => *prefix,
        }
    }
}

/// A Loc-RIB route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub prefix: IpNet,
    /// Where the best path came from.
    pub source: RouteSource,
    /// Next hops to install (ECMP: the best path's first); empty for a
    /// locally originated route.
    pub next_hops: Vec<IpAddr>,
    /// The best path's attributes.
    pub attrs: Arc<PathAttrs>,
    /// The peer's session went down gracefully and this path is kept as
    /// stale until it comes back (RFC 4724 helper).
    pub stale: bool,
}

/// What [`Speaker::peers`] reports about one neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub config: PeerConfig,
    pub state: PeerState,
    /// How long the session has been Established.
    pub uptime: Option<Duration>,
    /// The peer's BGP identifier (once an OPEN was accepted).
    pub router_id: Option<Ipv4Addr>,
    /// Negotiated families (while Established).
    pub families: Vec<Family>,
    /// Negotiated hold time, seconds (while Established).
    pub hold_time: Option<u16>,
    /// The last NOTIFICATION sent or received, or the last connection error,
    /// human readable.
    pub last_error: Option<String>,
    /// Prefixes the peer currently announces to us.
    pub prefixes_received: usize,
    /// Of those, the ones that passed the import rules (loops, next hop).
    pub prefixes_accepted: usize,
    /// Prefixes we currently advertise to the peer.
    pub prefixes_advertised: usize,
    /// Routes of this peer kept as stale (graceful restart helper).
    pub prefixes_stale: usize,
    /// Times the session reached Established.
    pub established_transitions: u64,
    /// State of the peer's BFD session, when it runs one.
    pub bfd: Option<crate::bfd::BfdState>,
    /// The session is past its prefix limit (see [`PrefixLimit`]).
    pub prefix_limit_exceeded: bool,
}

type Reply<T> = oneshot::Sender<Result<T, SpeakerError>>;

/// Requests from the handle to the core task.
enum Request {
    AddPeer(PeerConfig, Reply<()>),
    RemovePeer(IpAddr, Reply<()>),
    UpdatePeer(PeerConfig, Reply<()>),
    Originate(Vec<IpNet>, PathAttrs, Reply<()>),
    Withdraw(Vec<IpNet>, Reply<()>),
    SetPeers(Vec<PeerConfig>, Reply<Vec<(IpAddr, SpeakerError)>>),
    SetOriginations(Vec<(IpNet, PathAttrs)>, Reply<OriginationChange>),
    Subscribe(mpsc::UnboundedSender<BestRouteChange>),
    Peers(Reply<Vec<PeerStatus>>),
    Routes(Reply<Vec<RouteEntry>>),
    Shutdown(Reply<()>),
}

/// Handle to a running speaker; cheap to clone. The speaker keeps running
/// until [`Speaker::shutdown`] or until its tokio runtime is dropped (which
/// closes every connection without a NOTIFICATION, like a crash).
#[derive(Debug, Clone)]
pub struct Speaker {
    requests: mpsc::UnboundedSender<core::Input>,
}

impl Speaker {
    /// Binds the listen sockets and starts the configured peers.
    pub async fn start(config: SpeakerConfig) -> Result<Speaker, SpeakerError> {
        core::start(config).await
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(core::Input::Request(make(tx)))
            .map_err(|_| SpeakerError::Stopped)?;
        rx.await.map_err(|_| SpeakerError::Stopped)?
    }

    /// Starts a new peer.
    pub async fn add_peer(&self, peer: PeerConfig) -> Result<(), SpeakerError> {
        self.ask(|r| Request::AddPeer(peer, r)).await
    }

    /// Stops a peer with Cease/Administrative Shutdown and forgets it and
    /// its routes.
    pub async fn remove_peer(&self, address: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| Request::RemovePeer(address, r)).await
    }

    /// Replaces a peer's configuration: unless nothing changed, the session
    /// is closed (Cease/2 "peer configuration changed"), its routes are
    /// flushed and it starts again with the new settings.
    pub async fn update_peer(&self, peer: PeerConfig) -> Result<(), SpeakerError> {
        self.ask(|r| Request::UpdatePeer(peer, r)).await
    }

    /// Originates `prefix` with `attrs`; a `None` next hop means "our
    /// address on each session". Replaces an earlier origination of it.
    pub async fn originate(&self, prefix: IpNet, attrs: PathAttrs) -> Result<(), SpeakerError> {
        self.originate_many(vec![prefix], attrs).await
    }

    /// Originates many prefixes sharing one attribute set.
    pub async fn originate_many(
        &self,
        prefixes: Vec<IpNet>,
        attrs: PathAttrs,
    ) -> Result<(), SpeakerError> {
        self.ask(|r| Request::Originate(prefixes, attrs, r)).await
    }

    /// Stops originating `prefix` (no-op if it was not originated).
    pub async fn withdraw(&self, prefix: IpNet) -> Result<(), SpeakerError> {
        self.ask(|r| Request::Withdraw(vec![prefix], r)).await
    }

    /// Makes `peers` the whole peer set, declaratively: the speaker diffs it
    /// against what it runs, starts new peers, restarts changed ones (as
    /// [`update_peer`](Self::update_peer)) and removes the rest (as
    /// [`remove_peer`](Self::remove_peer)); unchanged sessions are left
    /// alone. An invalid peer does not stop the others: each failure comes
    /// back with its address.
    pub async fn set_peers(
        &self,
        peers: Vec<PeerConfig>,
    ) -> Result<Vec<(IpAddr, SpeakerError)>, SpeakerError> {
        self.ask(|r| Request::SetPeers(peers, r)).await
    }

    /// Makes `prefixes` the whole set this speaker originates, all with
    /// `attrs`, declaratively; says what changed.
    pub async fn set_originations(
        &self,
        prefixes: Vec<IpNet>,
        attrs: PathAttrs,
    ) -> Result<OriginationChange, SpeakerError> {
        let each = prefixes.into_iter().map(|p| (p, attrs.clone())).collect();
        self.set_originations_each(each).await
    }

    /// Makes these prefixes, each with its own attributes (communities on
    /// some), the whole set this speaker originates; a prefix whose
    /// attributes changed is announced again with the new ones. Says what
    /// was (re)announced and what was withdrawn.
    pub async fn set_originations_each(
        &self,
        originations: Vec<(IpNet, PathAttrs)>,
    ) -> Result<OriginationChange, SpeakerError> {
        self.ask(|r| Request::SetOriginations(originations, r))
            .await
    }

    /// A stream of Loc-RIB changes, starting with the current Loc-RIB.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        // If the speaker has stopped, the stream simply ends.
        let _ = self
            .requests
            .send(core::Input::Request(Request::Subscribe(tx)));
        Subscription { rx }
    }

    /// Status of every configured peer, sorted by address.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, SpeakerError> {
        self.ask(Request::Peers).await
    }

    /// The Loc-RIB, sorted by prefix.
    pub async fn routes(&self) -> Result<Vec<RouteEntry>, SpeakerError> {
        self.ask(Request::Routes).await
    }

    /// Sends Cease/Administrative Shutdown to every peer, closes the
    /// sockets and stops all tasks. Later calls return `Stopped`.
    pub async fn shutdown(&self) -> Result<(), SpeakerError> {
        self.ask(Request::Shutdown).await
    }
}

/// What [`Speaker::set_originations`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginationChange {
    pub originated: Vec<IpNet>,
    pub withdrawn: Vec<IpNet>,
}

/// Loc-RIB changes from [`Speaker::subscribe`]; ends when the speaker stops.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<BestRouteChange>,
}

impl Subscription {
    /// The next change; `None` once the speaker has stopped.
    pub async fn recv(&mut self) -> Option<BestRouteChange> {
        self.rx.recv().await
    }

    /// A change if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<BestRouteChange> {
        self.rx.try_recv().ok()
    }
}

impl futures::Stream for Subscription {
    type Item = BestRouteChange;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

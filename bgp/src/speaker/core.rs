//! The core task: owns the [`Rib`], the peer registry, the subscribers and
//! the graceful-restart state; everything reaches it as an [`Input`] on one
//! channel, so it needs no locks.
//!
//! Graceful restart, helper side (RFC 4724 §4.2): when the session of a peer
//! that advertised the capability ends without a NOTIFICATION (TCP failure)
//! or by hold-timer expiry, its routes stay in the RIB, marked stale, for the
//! peer's restart time. When the session is back, the peer's announcements
//! refresh them; at its End-of-RIB (per family), or when the restart time
//! runs out again, whatever is still stale is withdrawn. Families the peer no
//! longer preserves forwarding state for are flushed at once. So a peer that
//! restarts does not make the kernel routes flap.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};

use super::bfd::BfdLink;
use super::peer::{self, PeerEvent, PeerHandle, PeerInput};
use super::plan::{canonical, plan_peers, validate_peer, validate_speaker};
use super::received::{ReceivedRoutes, UpdateEffect};
use super::{
    listener, socket, BestRouteChange, LimitAction, OriginationChange, PathAttrs, PeerConfig,
    PeerState, PeerStatus, Request, RouteEntry, Speaker, SpeakerConfig, SpeakerError,
};
use crate::fsm::DownReason;
use crate::packet::{Family, Update, UpdateOutcome};
use crate::rib::{self, Rib, RibConfig, RibOutput, RouteSource};

/// Everything the core task reacts to.
pub(crate) enum Input {
    Request(Request),
    Incoming(TcpStream, SocketAddr),
    Peer {
        address: IpAddr,
        instance: u64,
        event: PeerEvent,
    },
    GracefulRestartExpired {
        address: IpAddr,
        generation: u64,
    },
    /// A BFD session changed state.
    Bfd(crate::bfd::service::BfdEvent),
    /// A connection parked for a peer not configured yet has waited long
    /// enough.
    ParkedExpired {
        address: IpAddr,
        id: u64,
    },
}

/// How long a connection from an address that is not (yet) a peer is kept
/// open in case the peer is configured in the meantime. At a cold start a
/// node is dialled by neighbours that read the datastore before it did;
/// closing their connection at once sends them into their connect retry
/// (5 s), which set the floor of a fabric's cold start. 3 s was too short
/// for 100 nodes on two cores: a node sometimes read its neighbour 25 ms
/// after closing the neighbour's parked connection, and the session waited
/// the neighbour's connect retry.
const PARK_TIME: Duration = Duration::from_secs(15);

/// At most this many parked connections (one per address); past it a
/// connection from a non-peer is closed at once.
const MAX_PARKED: usize = 1024;

struct PeerEntry {
    config: PeerConfig,
    instance: u64,
    handle: PeerHandle,
    state: PeerState,
    /// Session id and negotiated parameters while Established.
    session: Option<(u64, crate::packet::Negotiated)>,
    established_at: Option<Instant>,
    established_transitions: u64,
    last_error: Option<String>,
    /// The RIB has a slot for the peer (Established, or stale after GR).
    in_rib: bool,
    rib_config: Option<rib::PeerConfig>,
    /// UPDATE translation and the extra paths of ADD-PATH (the RIB holds
    /// the routes, counts and stale marks).
    received: ReceivedRoutes,
    /// Identifies the running graceful-restart timer while routes are stale.
    stale_generation: Option<u64>,
    /// The peer's graceful restart time from its last OPEN, if it has GR.
    peer_restart_time: Option<u16>,
    /// Long-lived graceful restart negotiated in the last session
    /// (families and stale times, RFC 9494).
    peer_long_lived: Vec<(Family, u32)>,
    /// The stale routes are long-lived stale (the restart time ran out, or
    /// there was none): the timer running is the long-lived stale time.
    long_lived_phase: bool,
    /// The session went past its prefix limit (acted on once per session).
    over_limit: bool,
    /// What the limit did, shown instead of the last error while
    /// `over_limit` (the NOTIFICATION it sent would say less).
    limit_note: Option<String>,
}

struct Core {
    config: SpeakerConfig,
    rib: Rib,
    peers: BTreeMap<IpAddr, PeerEntry>,
    subscribers: Vec<mpsc::UnboundedSender<BestRouteChange>>,
    listeners: Vec<Arc<TcpListener>>,
    listener_tasks: Vec<JoinHandle<()>>,
    me: mpsc::UnboundedSender<Input>,
    next_instance: u64,
    next_generation: u64,
    /// What this speaker originates, with the attributes it was given (for
    /// `SetOriginations` to diff against).
    originated: BTreeMap<IpNet, PathAttrs>,
    /// Connections from addresses that are not peers yet (see
    /// [`PARK_TIME`]), the latest per address.
    parked: BTreeMap<IpAddr, (u64, TcpStream)>,
    next_parked: u64,
    bfd: BfdLink,
}

pub(crate) async fn start(config: SpeakerConfig) -> Result<Speaker, SpeakerError> {
    validate_speaker(&config)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut listeners = Vec::new();
    for address in &config.listen_addresses {
        let address = SocketAddr::new(*address, config.listen_port);
        match socket::listen(address) {
            Ok(listener) => listeners.push(Arc::new(listener)),
            // A host booted without IPv6 cannot bind `::`; the default
            // configuration must still work there.
            Err(error)
                if address.ip().is_unspecified()
                    && address.is_ipv6()
                    && error.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
            {
                warn!(%address, "IPv6 is not available; not listening on it");
            }
            Err(source) => return Err(SpeakerError::Listen { address, source }),
        }
    }
    let span = info_span!("bgp_speaker", asn = config.local_asn, router_id = %config.router_id);
    let listener_tasks = listeners
        .iter()
        .map(|l| {
            tokio::spawn(listener::accept_loop(Arc::clone(l), tx.clone()).instrument(span.clone()))
        })
        .collect();
    let mut rib_config = RibConfig::new(config.local_asn, config.router_id);
    rib_config.cluster_id = config.cluster_id;
    rib_config.max_paths = config.max_paths.max(1);
    let peers = config.peers.clone();
    let mut rib = Rib::new(rib_config);
    // Nobody to report Loc-RIB changes to until someone subscribes.
    rib.set_best_change_reports(false);
    let mut core = Core {
        rib,
        config,
        peers: BTreeMap::new(),
        subscribers: Vec::new(),
        listeners,
        listener_tasks,
        me: tx.clone(),
        next_instance: 1,
        next_generation: 1,
        originated: BTreeMap::new(),
        parked: BTreeMap::new(),
        bfd: {
            let core = tx.clone();
            BfdLink::new(move |event| {
                let _ = core.send(Input::Bfd(event));
            })
        },
        next_parked: 1,
    };
    for peer in peers {
        core.add_peer(peer)?;
    }
    info!(parent: &span, listeners = core.listeners.len(), "speaker started");
    tokio::spawn(core.run(rx).instrument(span));
    Ok(Speaker { requests: tx })
}

impl Core {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        while let Some(input) = rx.recv().await {
            match input {
                Input::Request(Request::Shutdown(reply)) => {
                    self.shutdown().await;
                    let _ = reply.send(Ok(()));
                    return;
                }
                Input::Request(request) => self.request(request),
                Input::Incoming(stream, remote) => self.incoming(stream, remote),
                Input::Peer {
                    address,
                    instance,
                    event,
                } => self.peer_event(address, instance, event),
                Input::GracefulRestartExpired {
                    address,
                    generation,
                } => self.restart_expired(address, generation),
                Input::Bfd(event) => {
                    if self.bfd.event(event) {
                        if let Some(entry) = self.peers.get_mut(&event.peer) {
                            entry.last_error = Some(format!("BFD down: {}", event.diagnostic));
                            let _ = entry.handle.input.send(PeerInput::FailureDetected);
                        }
                    }
                }
                Input::ParkedExpired { address, id } => {
                    if self.parked.get(&address).is_some_and(|(p, _)| *p == id) {
                        self.parked.remove(&address);
                        debug!(%address, "no peer configured for a parked connection; closing");
                    }
                }
            }
        }
    }

    fn request(&mut self, request: Request) {
        match request {
            Request::AddPeer(peer, reply) => {
                let _ = reply.send(self.add_peer(peer));
            }
            Request::RemovePeer(address, reply) => {
                let _ = reply.send(self.remove_peer(address, "peer removed from configuration"));
            }
            Request::UpdatePeer(peer, reply) => {
                let result = match self.peers.get(&peer.address) {
                    None => Err(SpeakerError::UnknownPeer(peer.address)),
                    Some(entry) if entry.config == peer => Ok(()),
                    Some(_) => validate_peer(&peer).and_then(|()| {
                        self.remove_peer(peer.address, "peer configuration changed")?;
                        self.add_peer(peer)
                    }),
                };
                let _ = reply.send(result);
            }
            Request::Originate(prefixes, attrs, reply) => {
                self.originated
                    .extend(prefixes.iter().map(|p| (p.trunc(), attrs.clone())));
                let out = self.rib.originate(&prefixes, attrs);
                self.apply(out);
                let _ = reply.send(Ok(()));
            }
            Request::Withdraw(prefixes, reply) => {
                for prefix in &prefixes {
                    self.originated.remove(&prefix.trunc());
                }
                let out = self.rib.withdraw_local(&prefixes);
                self.apply(out);
                let _ = reply.send(Ok(()));
            }
            Request::SetPeers(peers, reply) => {
                let _ = reply.send(Ok(self.set_peers(peers)));
            }
            Request::SetOriginations(originations, reply) => {
                let _ = reply.send(Ok(self.set_originations(originations)));
            }
            Request::Subscribe(tx) => {
                for route in self.routes() {
                    if tx.send(BestRouteChange::Best(route)).is_err() {
                        return;
                    }
                }
                self.subscribers.push(tx);
                self.rib.set_best_change_reports(true);
            }
            Request::Peers(reply) => {
                let _ = reply.send(Ok(self.statuses()));
            }
            Request::Routes(reply) => {
                let _ = reply.send(Ok(self.routes()));
            }
            Request::Shutdown(_) => {}
        }
    }

    /// The declarative peer set: what to start, restart and remove is
    /// decided here ([`plan_peers`]), against the configurations running.
    fn set_peers(&mut self, peers: Vec<PeerConfig>) -> Vec<(IpAddr, SpeakerError)> {
        let running: BTreeMap<IpAddr, &PeerConfig> =
            self.peers.iter().map(|(a, e)| (*a, &e.config)).collect();
        let mut plan = plan_peers(&running, peers);
        let mut failed = Vec::new();
        for peer in std::mem::take(&mut plan.retune) {
            let Some(entry) = self.peers.get_mut(&peer.address) else {
                continue;
            };
            // A session its prefix limit disabled comes back with any
            // change of its configuration.
            let disabled = entry.over_limit
                && entry
                    .config
                    .max_prefixes
                    .is_some_and(|l| l.action == LimitAction::Disable);
            if disabled {
                plan.restart.push(peer);
                continue;
            }
            let export_changed = entry.config.export_only != peer.export_only
                || entry.config.export_filter != peer.export_filter;
            let import_changed = entry.config.import_filter != peer.import_filter;
            entry.config.bfd = peer.bfd;
            entry.config.max_prefixes = peer.max_prefixes;
            entry.config.export_only = peer.export_only.clone();
            entry.config.export_filter = peer.export_filter.clone();
            entry.config.import_filter = peer.import_filter.clone();
            let in_rib = entry.in_rib;
            let uses_interface = [&peer.import_filter, &peer.export_filter]
                .into_iter()
                .any(|f| f.as_deref().is_some_and(rib::RouteFilter::uses_interface));
            if (export_changed || import_changed) && uses_interface {
                self.rib.set_connected(connected_networks());
            }
            self.sync_bfd(&peer);
            if export_changed && in_rib {
                let policy = (peer.export_only.clone(), peer.export_filter.clone());
                match self.rib.set_export_policy(peer.address, policy.0, policy.1) {
                    Ok(out) => self.apply(out),
                    Err(error) => warn!(peer = %peer.address, %error, "export filter not changed"),
                }
            }
            if import_changed && in_rib {
                match self
                    .rib
                    .set_import_filter(peer.address, peer.import_filter.clone())
                {
                    Ok((out, need_refresh)) => {
                        self.apply(out);
                        if need_refresh {
                            if let Some(entry) = self.peers.get(&peer.address) {
                                let _ = entry.handle.input.send(PeerInput::AskRefresh);
                            }
                        }
                    }
                    Err(error) => warn!(peer = %peer.address, %error, "import filter not changed"),
                }
            }
            self.check_prefix_limit(peer.address);
        }
        for address in plan.remove {
            if let Err(e) = self.remove_peer(address, "peer removed from configuration") {
                failed.push((address, e));
            }
        }
        for peer in plan.restart {
            let address = peer.address;
            let result = validate_peer(&peer).and_then(|()| {
                self.remove_peer(address, "peer configuration changed")?;
                self.add_peer(peer)
            });
            if let Err(e) = result {
                failed.push((address, e));
            }
        }
        for peer in plan.add {
            let address = peer.address;
            if let Err(e) = self.add_peer(peer) {
                failed.push((address, e));
            }
        }
        failed
    }

    fn set_originations(&mut self, originations: Vec<(IpNet, PathAttrs)>) -> OriginationChange {
        let wanted: BTreeMap<IpNet, PathAttrs> = originations
            .into_iter()
            .map(|(p, a)| (p.trunc(), a))
            .collect();
        let change = OriginationChange {
            originated: wanted
                .iter()
                .filter(|(p, a)| self.originated.get(p) != Some(a))
                .map(|(p, _)| *p)
                .collect(),
            withdrawn: self
                .originated
                .keys()
                .filter(|p| !wanted.contains_key(p))
                .copied()
                .collect(),
        };
        // One RIB call per distinct set of attributes (most share one).
        let mut groups: Vec<(&PathAttrs, Vec<IpNet>)> = Vec::new();
        for prefix in &change.originated {
            let attrs = &wanted[prefix];
            match groups.iter_mut().find(|(a, _)| *a == attrs) {
                Some((_, prefixes)) => prefixes.push(*prefix),
                None => groups.push((attrs, vec![*prefix])),
            }
        }
        for (attrs, prefixes) in groups {
            let out = self.rib.originate(&prefixes, attrs.clone());
            self.apply(out);
        }
        if !change.withdrawn.is_empty() {
            let out = self.rib.withdraw_local(&change.withdrawn);
            self.apply(out);
        }
        self.originated = wanted;
        change
    }

    fn add_peer(&mut self, peer: PeerConfig) -> Result<(), SpeakerError> {
        validate_peer(&peer)?;
        let address = canonical(peer.address);
        if self.peers.contains_key(&address) {
            return Err(SpeakerError::DuplicatePeer(address));
        }
        let mut peer = peer;
        peer.address = address;
        self.set_listener_md5(address, peer.md5_password.as_deref());
        let instance = self.next_instance;
        self.next_instance += 1;
        let handle = peer::spawn(
            peer.clone(),
            self.config.local_asn,
            self.config.router_id,
            instance,
            self.me.clone(),
        );
        info!(peer = %address, remote_asn = peer.remote_asn, "peer added");
        if let Some((_, stream)) = self.parked.remove(&address) {
            if peer.md5_password.is_none() {
                debug!(peer = %address, "taking over the connection it opened before");
                let _ = handle.input.send(PeerInput::Incoming(stream));
            }
            // With a password, a connection accepted before the key was
            // set on the listener carries no MD5 signature: never adopt it.
        }
        self.peers.insert(
            address,
            PeerEntry {
                config: peer,
                instance,
                handle,
                state: PeerState::Idle,
                session: None,
                established_at: None,
                established_transitions: 0,
                last_error: None,
                in_rib: false,
                rib_config: None,
                received: ReceivedRoutes::default(),
                stale_generation: None,
                peer_restart_time: None,
                peer_long_lived: Vec::new(),
                long_lived_phase: false,
                over_limit: false,
                limit_note: None,
            },
        );
        if let Some(config) = self.peers.get(&address).map(|e| e.config.clone()) {
            self.sync_bfd(&config);
        }
        Ok(())
    }

    fn remove_peer(&mut self, address: IpAddr, why: &str) -> Result<(), SpeakerError> {
        let address = canonical(address);
        let entry = self
            .peers
            .remove(&address)
            .ok_or(SpeakerError::UnknownPeer(address))?;
        let _ = entry.handle.input.send(PeerInput::Stop {
            communication: why.to_string(),
        });
        if entry.config.md5_password.is_some() {
            self.set_listener_md5(address, None);
        }
        self.bfd.remove(address);
        if entry.in_rib {
            if let Ok(out) = self.rib.peer_down(address) {
                self.apply(out);
            }
        }
        info!(peer = %address, "peer removed");
        Ok(())
    }

    fn sync_bfd(&mut self, peer: &PeerConfig) {
        if let Err(error) = self.bfd.sync(peer) {
            if let Some(entry) = self.peers.get_mut(&peer.address) {
                entry.last_error = Some(error);
            }
        }
    }

    fn set_listener_md5(&self, peer: IpAddr, password: Option<&str>) {
        use std::os::fd::AsRawFd;
        for listener in &self.listeners {
            let Ok(local) = listener.local_addr() else {
                continue;
            };
            if local.is_ipv4() != peer.is_ipv4() {
                continue;
            }
            match socket::set_md5(listener.as_raw_fd(), peer, password) {
                // Clearing a key that was never set: nothing to do.
                Err(error) if password.is_none() && error.raw_os_error() == Some(libc::ENOENT) => {}
                // With a key missing, the kernel drops the peer's SYNs: the
                // session will not come up, which the peer status shows.
                Err(error) => {
                    warn!(%peer, %error, "cannot set TCP MD5 key on the listening socket")
                }
                Ok(()) => {}
            }
        }
    }

    fn incoming(&mut self, stream: TcpStream, remote: SocketAddr) {
        let address = canonical(remote.ip());
        match self.peers.get(&address) {
            Some(entry) => {
                let _ = entry.handle.input.send(PeerInput::Incoming(stream));
            }
            None if self.parked.len() >= MAX_PARKED && !self.parked.contains_key(&address) => {
                debug!(%remote, "connection from an address that is not a peer; closed (too many parked)");
            }
            None => {
                debug!(%remote, "connection from an address that is not a peer (yet); parked");
                let id = self.next_parked;
                self.next_parked += 1;
                // A newer connection replaces (and closes) an older one.
                self.parked.insert(address, (id, stream));
                let me = self.me.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(PARK_TIME).await;
                    let _ = me.send(Input::ParkedExpired { address, id });
                });
            }
        }
    }

    fn peer_event(&mut self, address: IpAddr, instance: u64, event: PeerEvent) {
        let Some(entry) = self.peers.get_mut(&address) else {
            return;
        };
        if entry.instance != instance {
            return; // from a task of a removed incarnation of this peer
        }
        match event {
            PeerEvent::State(state) => entry.state = state,
            PeerEvent::Error(text) => entry.last_error = Some(text),
            PeerEvent::Established {
                session,
                negotiated,
                local,
            } => self.established(address, session, negotiated, local),
            PeerEvent::Down { session, reason } => self.down(address, session, reason),
            PeerEvent::Update {
                session,
                update,
                outcome,
                permit,
            } => {
                if entry.session.as_ref().is_some_and(|(s, _)| *s == session) {
                    self.update(address, *update, outcome);
                }
                // Applied: the peer task may read the next UPDATE.
                drop(permit);
            }
            PeerEvent::RouteRefresh { session, family } => {
                if entry.session.as_ref().is_some_and(|(s, _)| *s == session) {
                    debug!(peer = %address, %family, "resending Adj-RIB-Out");
                    if let Ok(out) = self.rib.refresh(address) {
                        self.apply(out);
                    }
                }
            }
        }
    }

    fn established(
        &mut self,
        address: IpAddr,
        session: u64,
        negotiated: crate::packet::Negotiated,
        local: SocketAddr,
    ) {
        let Some(entry) = self.peers.get_mut(&address) else {
            return;
        };
        entry.over_limit = false;
        let source = entry.config.source_address;
        let local_ip = canonical(local.ip());
        let mut rib_peer =
            rib::PeerConfig::new(address, negotiated.peer_asn, negotiated.peer_bgp_id);
        rib_peer.rr_client = entry.config.route_reflector_client;
        rib_peer.next_hop_self = entry.config.next_hop_self;
        rib_peer.export_only = entry.config.export_only.clone();
        rib_peer.allow_local_as = entry.config.allow_local_as;
        rib_peer.export_filter = entry.config.export_filter.clone();
        rib_peer.import_filter = entry.config.import_filter.clone();
        rib_peer.next_hop_self_always = entry.config.next_hop_self_always;
        rib_peer.next_hop_keep = entry.config.next_hop_keep;
        rib_peer.long_lived = !negotiated.long_lived.is_empty();
        if entry.config.gateway_direct {
            let connected: Vec<IpNet> = connected_networks().into_iter().map(|(n, _)| n).collect();
            if connected.iter().any(|n| n.contains(&address)) {
                rib_peer.direct_gateway = Some(Arc::new(connected));
            }
        }
        let uses_interface = |f: &Option<Arc<rib::RouteFilter>>| {
            f.as_deref().is_some_and(rib::RouteFilter::uses_interface)
        };
        if uses_interface(&entry.config.import_filter)
            || uses_interface(&entry.config.export_filter)
        {
            // BGPFilter `interface` rules: a route's interface is the one
            // of the connected network its next hop is on.
            self.rib.set_connected(connected_networks());
        }
        for ip in [Some(local_ip), source].into_iter().flatten() {
            match ip {
                IpAddr::V4(v4) if !v4.is_unspecified() => {
                    rib_peer.local_v4 = rib_peer.local_v4.or(Some(v4));
                }
                IpAddr::V6(v6) if !v6.is_unspecified() => {
                    if v6.is_unicast_link_local() {
                        rib_peer.local_v6_link_local = rib_peer.local_v6_link_local.or(Some(v6));
                    } else {
                        rib_peer.local_v6 = rib_peer.local_v6.or(Some(v6));
                    }
                }
                _ => {}
            }
        }
        let families = negotiated.families.clone();
        entry.peer_restart_time = negotiated
            .peer_graceful_restart
            .as_ref()
            .map(|gr| gr.restart_time);
        entry.peer_long_lived = negotiated.long_lived.clone();
        entry.long_lived_phase = false;
        // Families whose stale routes cannot wait for End-of-RIB: the peer
        // did not keep forwarding state for them (or dropped GR).
        let preserved: Vec<Family> = negotiated
            .peer_graceful_restart
            .as_ref()
            .map(|gr| {
                gr.families
                    .iter()
                    .filter(|f| f.forwarding_preserved)
                    .map(|f| f.family)
                    .collect()
            })
            .unwrap_or_default();
        entry.session = Some((session, negotiated));
        entry.established_at = Some(Instant::now());
        entry.established_transitions += 1;
        let mut outputs = Vec::new();
        if entry.in_rib && entry.rib_config.as_ref() == Some(&rib_peer) {
            // Back from a graceful restart: the stale routes stay, the peer
            // gets our whole table again.
            if let Ok(out) = self.rib.refresh(address) {
                outputs.push(out);
            }
            let not_preserved: Vec<Family> = families
                .iter()
                .copied()
                .filter(|f| !preserved.contains(f))
                .collect();
            for family in not_preserved {
                outputs.push(self.purge_stale(address, Some(family)));
            }
            self.arm_stale_timer(address);
        } else {
            if entry.in_rib {
                // Came back as someone else (identifier, addresses): start over.
                entry.stale_generation = None;
                entry.received.clear();
                if let Ok(out) = self.rib.peer_down(address) {
                    outputs.push(out);
                }
            }
            match self.rib.peer_up(rib_peer.clone()) {
                Ok(out) => outputs.push(out),
                Err(error) => warn!(peer = %address, %error, "RIB refused the peer"),
            }
        }
        if let Some(entry) = self.peers.get_mut(&address) {
            entry.in_rib = true;
            entry.rib_config = Some(rib_peer);
        }
        // The initial table dump, then End-of-RIB for every family.
        let mut batches = Vec::new();
        if let Ok(b) = self.rib.take_updates(address) {
            batches = b;
        }
        if let Some(entry) = self.peers.get(&address) {
            let _ = entry.handle.input.send(PeerInput::Send {
                session,
                batches,
                end_of_rib: families,
            });
        }
        for out in outputs {
            self.apply(out);
        }
    }

    fn down(&mut self, address: IpAddr, session: u64, reason: DownReason) {
        let Some(entry) = self.peers.get_mut(&address) else {
            return;
        };
        if entry.session.as_ref().is_none_or(|(s, _)| *s != session) {
            return;
        }
        entry.session = None;
        entry.established_at = None;
        let restart_time = entry.peer_restart_time.unwrap_or(0);
        let long_lived = !entry.peer_long_lived.is_empty();
        let graceful = matches!(
            reason,
            DownReason::TransportFailed | DownReason::HoldTimerExpired
        ) && entry.config.graceful_restart.is_some()
            && entry.peer_restart_time.is_some()
            && (restart_time > 0 || long_lived);
        // With nothing to keep, a graceful end is just an end.
        let received = if entry.in_rib {
            self.rib.peer_counts(address).map_or(0, |c| c.received)
        } else {
            0
        };
        if graceful && received > 0 {
            let stale = self.rib.mark_stale(address).unwrap_or(0);
            if restart_time > 0 {
                info!(peer = %address, stale, "graceful restart: keeping routes as stale");
                self.arm_stale_timer(address);
            } else {
                // No restart time: long-lived stale at once (RFC 9494 §4.2).
                self.enter_long_lived(address);
            }
            return;
        }
        entry.received.clear();
        entry.stale_generation = None;
        if std::mem::take(&mut entry.in_rib) {
            entry.rib_config = None;
            if let Ok(out) = self.rib.peer_down(address) {
                self.apply(out);
            }
        }
    }

    /// (Re)starts the restart timer of a peer with stale routes.
    fn arm_stale_timer(&mut self, address: IpAddr) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let stale = self.rib.peer_counts(address).map_or(0, |c| c.stale);
        let Some(entry) = self.peers.get_mut(&address) else {
            return;
        };
        if stale == 0 {
            entry.stale_generation = None;
            return;
        }
        entry.stale_generation = Some(generation);
        // The long-lived stale time is one timer for all families: the
        // shortest, so no family's routes outlive what was negotiated. A
        // peer back without a restart time (LLGR only) has that long to
        // send its End-of-RIB.
        let long_lived = entry.peer_long_lived.iter().map(|(_, t)| *t).min();
        let secs = match (entry.long_lived_phase, long_lived, entry.peer_restart_time) {
            (true, Some(t), _) => u64::from(t),
            (false, Some(t), Some(0) | None) => u64::from(t),
            (_, _, restart) => u64::from(restart.unwrap_or(0)),
        };
        let wait = Duration::from_secs(secs);
        let me = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = me.send(Input::GracefulRestartExpired {
                address,
                generation,
            });
        });
    }

    fn restart_expired(&mut self, address: IpAddr, generation: u64) {
        let Some(entry) = self.peers.get_mut(&address) else {
            return;
        };
        if entry.stale_generation != Some(generation) {
            return;
        }
        if entry.session.is_none() && !entry.long_lived_phase && !entry.peer_long_lived.is_empty() {
            self.enter_long_lived(address);
            return;
        }
        info!(peer = %address, "graceful restart time over: flushing stale routes");
        entry.long_lived_phase = false;
        if entry.session.is_none() {
            entry.stale_generation = None;
            entry.received.clear();
            entry.in_rib = false;
            entry.rib_config = None;
            if let Ok(out) = self.rib.peer_down(address) {
                self.apply(out);
            }
        } else {
            let out = self.purge_stale(address, None);
            self.apply(out);
        }
    }

    /// The peer's stale routes of its long-lived families become
    /// long-lived stale (RFC 9494), the others go; the long-lived stale
    /// timer starts.
    fn enter_long_lived(&mut self, address: IpAddr) {
        let Some(entry) = self.peers.get_mut(&address) else {
            return;
        };
        entry.long_lived_phase = true;
        let families: Vec<Family> = entry.peer_long_lived.iter().map(|(f, _)| *f).collect();
        let mut outputs = Vec::new();
        for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
            if !families.contains(&family) {
                outputs.push(self.purge_stale(address, Some(family)));
            }
        }
        match self.rib.enter_long_lived_stale(address, &families) {
            Ok((kept, out)) => {
                info!(peer = %address, kept, "long-lived graceful restart: keeping routes as LLGR_STALE");
                outputs.push(out);
            }
            Err(error) => warn!(peer = %address, %error, "long-lived graceful restart"),
        }
        for out in outputs {
            self.apply(out);
        }
        let stale = self.rib.peer_counts(address).map_or(0, |c| c.stale);
        if stale > 0 {
            self.arm_stale_timer(address);
            return;
        }
        // Nothing left to keep: the peer is gone.
        let Some(entry) = self.peers.get_mut(&address) else {
            return;
        };
        entry.long_lived_phase = false;
        entry.stale_generation = None;
        if entry.session.is_none() && std::mem::take(&mut entry.in_rib) {
            entry.received.clear();
            entry.rib_config = None;
            if let Ok(out) = self.rib.peer_down(address) {
                self.apply(out);
            }
        }
    }

    /// Withdraws the peer's still-stale routes (of `family`, or all).
    fn purge_stale(&mut self, address: IpAddr, family: Option<Family>) -> RibOutput {
        let Ok((purged, out)) = self.rib.take_stale(address, family) else {
            return RibOutput::default();
        };
        let stale = self.rib.peer_counts(address).map_or(0, |c| c.stale);
        let Some(entry) = self.peers.get_mut(&address) else {
            return out;
        };
        entry.received.forget(&purged);
        if stale == 0 {
            entry.stale_generation = None;
        }
        if !purged.is_empty() {
            info!(peer = %address, withdrawn = purged.len(), "stale routes withdrawn");
        }
        out
    }

    fn update(&mut self, address: IpAddr, update: Update, outcome: UpdateOutcome) {
        let Some(entry) = self.peers.get_mut(&address) else {
            return;
        };
        let changes = match entry.received.update(update, &outcome) {
            UpdateEffect::EndOfRib(family) => {
                debug!(peer = %address, %family, "End-of-RIB received");
                let out = self.purge_stale(address, Some(family));
                self.apply(out);
                return;
            }
            UpdateEffect::Changes(changes) => changes,
        };
        let mut outputs = Vec::new();
        if !changes.withdraw.is_empty() {
            if let Ok(out) = self.rib.withdraw(address, &changes.withdraw) {
                outputs.push(out);
            }
        }
        for (prefixes, attrs) in changes.announce {
            match self.rib.announce(address, &prefixes, attrs) {
                Ok(out) => {
                    if !out.rejected.is_empty() {
                        debug!(peer = %address, rejected = out.rejected.len(), "routes rejected by import rules");
                    }
                    outputs.push(out);
                }
                Err(error) => warn!(peer = %address, %error, "RIB refused an UPDATE"),
            }
        }
        for out in outputs {
            self.apply(out);
        }
        self.check_prefix_limit(address);
    }

    /// Acts on the peer's prefix limit once it has gone past it.
    fn check_prefix_limit(&mut self, address: IpAddr) {
        let received = self.rib.peer_counts(address).map_or(0, |c| c.received);
        let Some(entry) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(limit) = entry.config.max_prefixes else {
            return;
        };
        if received <= limit.limit {
            entry.over_limit = false;
            return;
        }
        if std::mem::replace(&mut entry.over_limit, true) {
            return;
        }
        let text = format!(
            "{received} prefixes received, more than the limit of {}",
            limit.limit
        );
        match limit.action {
            LimitAction::Warn => {
                warn!(peer = %address, "{text}");
            }
            LimitAction::Restart | LimitAction::Disable => {
                let disable = limit.action == LimitAction::Disable;
                warn!(peer = %address, disable, "{text}: ending the session");
                entry.limit_note = Some(if disable {
                    format!("{text}: disabled until its configuration changes")
                } else {
                    format!("{text}: session restarted")
                });
                let _ = entry.handle.input.send(PeerInput::PrefixLimit { disable });
            }
        }
    }

    /// Publishes Loc-RIB changes and sends pending advertisements.
    fn apply(&mut self, out: RibOutput) {
        // Without subscribers the changes need no translation, and the RIB
        // need not list them.
        self.subscribers.retain(|s| !s.is_closed());
        if self.subscribers.is_empty() {
            self.rib.set_best_change_reports(false);
        }
        if !out.best_changes.is_empty() && !self.subscribers.is_empty() {
            let changes: Vec<BestRouteChange> = out
                .best_changes
                .into_iter()
                .map(|change| match change.best {
                    Some(best) => BestRouteChange::Best(self.entry_of(change.prefix, best)),
                    None => BestRouteChange::Withdrawn(change.prefix),
                })
                .collect();
            self.subscribers
                .retain(|s| changes.iter().all(|c| s.send(c.clone()).is_ok()));
        }
        for address in out.peers_pending {
            let Some(entry) = self.peers.get(&address) else {
                continue;
            };
            let Some((session, _)) = &entry.session else {
                continue; // stays pending until the session is back
            };
            let session = *session;
            if let Ok(batches) = self.rib.take_updates(address) {
                if !batches.is_empty() {
                    let _ = entry.handle.input.send(PeerInput::Send {
                        session,
                        batches,
                        end_of_rib: Vec::new(),
                    });
                }
            }
        }
    }

    fn entry_of(&self, prefix: IpNet, best: rib::Selected) -> RouteEntry {
        let stale = match best.source {
            RouteSource::Peer(peer) => self.rib.is_stale(&prefix, peer),
            RouteSource::Local => false,
        };
        RouteEntry {
            prefix,
            source: best.source,
            next_hops: best.next_hops,
            attrs: best.attrs,
            stale,
        }
    }

    fn routes(&self) -> Vec<RouteEntry> {
        let mut routes: Vec<RouteEntry> = self
            .rib
            .loc_rib()
            .map(|(prefix, best)| self.entry_of(prefix, best))
            .collect();
        routes.sort_by_key(|r| r.prefix);
        routes
    }

    fn statuses(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|(address, entry)| {
                let counts = if entry.in_rib {
                    self.rib.peer_counts(*address).unwrap_or_default()
                } else {
                    rib::PeerCounts::default()
                };
                // What reached the wire: the RIB also counts as sent the
                // routes of families the session did not negotiate.
                let advertised = match &entry.session {
                    Some((_, negotiated)) => {
                        let v4 = negotiated.has_family(Family::IPV4_UNICAST);
                        let v6 = negotiated.has_family(Family::IPV6_UNICAST);
                        usize::from(v4) * counts.advertised_v4
                            + usize::from(v6) * counts.advertised_v6
                    }
                    None => 0,
                };
                let negotiated = entry.session.as_ref().map(|(_, n)| n);
                PeerStatus {
                    config: entry.config.clone(),
                    state: entry.state,
                    uptime: entry.established_at.map(|t| t.elapsed()),
                    router_id: negotiated.map(|n| n.peer_bgp_id),
                    families: negotiated.map(|n| n.families.clone()).unwrap_or_default(),
                    hold_time: negotiated.map(|n| n.hold_time),
                    last_error: entry
                        .limit_note
                        .clone()
                        .filter(|_| entry.over_limit)
                        .or_else(|| entry.last_error.clone()),
                    prefixes_received: counts.received,
                    prefixes_accepted: counts.accepted,
                    prefixes_advertised: advertised,
                    prefixes_stale: counts.stale,
                    established_transitions: entry.established_transitions,
                    bfd: self.bfd.state(*address),
                    prefix_limit_exceeded: entry.over_limit,
                }
            })
            .collect()
    }

    async fn shutdown(&mut self) {
        info!("speaker shutting down");
        for task in self.listener_tasks.drain(..) {
            task.abort();
        }
        self.listeners.clear();
        let peers = std::mem::take(&mut self.peers);
        let mut tasks = Vec::new();
        for (_, entry) in peers {
            let _ = entry.handle.input.send(PeerInput::Stop {
                communication: "speaker shutting down".into(),
            });
            tasks.push(entry.handle.task);
        }
        // Each peer task sends its Cease and waits (bounded) for it to be
        // written; all of them at once.
        let _ =
            tokio::time::timeout(Duration::from_secs(3), futures::future::join_all(tasks)).await;
        self.subscribers.clear();
    }
}

/// The networks of this namespace's interface addresses, with the
/// interface (read when a session that needs them comes up).
fn connected_networks() -> Vec<(IpNet, String)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let name = a.interface_name.clone();
            let addr = a.address?;
            let mask = a.netmask?;
            let (ip, prefix) = if let Some(v4) = addr.as_sockaddr_in() {
                let m = mask.as_sockaddr_in()?.ip();
                (IpAddr::V4(v4.ip()), u32::from(m).count_ones())
            } else {
                let v6 = addr.as_sockaddr_in6()?;
                let m = mask.as_sockaddr_in6()?.ip();
                (IpAddr::V6(v6.ip()), u128::from(m).count_ones())
            };
            let net = IpNet::new(ip, u8::try_from(prefix).ok()?).ok()?.trunc();
            Some((net, name))
        })
        .collect()
}

//! The node daemon's I/O shell: registers the `Node`, mirrors the datastore,
//! drives the BGP speaker, the kernel routes and the VXLAN device from the
//! pure [`desired_state`], and serves the status socket.
//!
//! ```text
//!  datastore follow(resources) ─┐
//!  datastore follow(ipam blocks)┼─► ClusterState ─┐
//!  speaker.subscribe() ─► learned routes ─────────┴─► desired_state()
//!        ┌──────────────────────────┬──────────────────┬──────┘
//!   speaker peers/originations   RouteSyncTask (SetAll)   VtepTask (neighbour/FDB)
//! ```
//!
//! Kernel routes and the VXLAN devices' entries are handed to tasks of
//! their own and programmed there, so a converge never waits for netlink (a
//! reflector installing hundreds of routes on a busy host keeps adding
//! peers meanwhile).
//!
//! Restart safety (a running flow loses no packet across a restart):
//! * on shutdown nothing is removed: kernel routes, VXLAN entries and the
//!   speaker's sessions are left to die with the process (no NOTIFICATION,
//!   so peers keep our routes as stale under graceful restart);
//! * on start, kernel routes are not touched until BGP has converged
//!   (every desired session Established and the table received) or
//!   [`NodeOptions::startup_grace`] ran out; then the reconciler dumps the
//!   kernel's routes of our protocol and changes only what differs.
//!
//! Errors that stop the daemon are the ones it cannot work without at start
//! (no datastore, no address, cannot listen for BGP); everything later is
//! logged and retried on the next change or resync.
//!
//! Beside it: `register` (address autodetection, the Node resource, the
//! patient datastore open), `policy` (the policy task), `status` (the
//! status socket's document and server).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brindle_bgp::packet::{Origin, PathAttributes};
use brindle_bgp::speaker::{
    BestRouteChange, PathAttrs, PeerState, RouteSource, Speaker, SpeakerConfig,
};
use brindle_datastore::ipam::Ipam;
use brindle_datastore::keys;
use brindle_datastore::Datastore;
use brindle_model::bgp::{LogSeverity, SecretKeySelector};
use brindle_model::Resource;
use futures::StreamExt;
use ipnet::{IpNet, Ipv4Net};
use tokio::net::UnixListener;
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};

use super::cache::{decode_resource, Decoded};
use super::cluster::{
    decode_block_info, format_mac, BlockInfo, ClusterState, Communities, NodeInfos,
};
use super::desired::{desired_state, Desired, DesiredPeer, Inputs, Learned};
use super::limits::{neighbour_entries, neighbour_warning, NeighbourLimits};
pub use super::options::{NodeError, NodeOptions};
use super::policy::{policy_task, PolicyWork};
use super::register::{
    assign_vxlan_tunnel, autodetect_address, modify_node, open_and_register, underlay_of,
};
use super::secrets::{read_password, SecretError};
use super::status::{serve_status, Shared};
use crate::linkwatch::LinkWatcher;
use crate::netlink::KernelRoutes;
use crate::netlink::Netlink;
use crate::node::vteps::VtepTask;
use crate::reconciler::{Input, ReconcilerConfig};
use crate::route::{NextHop, Route, RouteTarget};
use crate::routesync::{RouteSyncTask, RouteSyncer};
use crate::tunnel::{ensure_vxlan, vtep_mac_for_node, VxlanConfig};

fn local_attrs() -> PathAttrs {
    PathAttrs {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            ..Default::default()
        },
        next_hop: None,
    }
}

/// The running daemon's state.
struct Daemon {
    opts: NodeOptions,
    ds: Datastore,
    address: Ipv4Net,
    underlay_mtu: u32,
    speaker: Speaker,
    nl: Netlink,
    /// Kernel routes, installed by their own task (see [`RouteSyncTask`]).
    syncer: RouteSyncTask,
    /// The resource prefix and the IPAM blocks, each document decoded once
    /// as it arrives.
    resources: Decoded<Resource>,
    blocks: Decoded<BlockInfo>,
    /// Each Node's info, derived once per version of its document.
    node_infos: Mutex<NodeInfos>,
    learned: BTreeMap<IpNet, Learned>,
    /// Kernel routes are managed (BGP converged or grace over).
    routes_open: bool,
    /// The kernel held none of our routes when we started (a first boot,
    /// not a restart): there is nothing a premature converge could remove,
    /// so routes are programmed as soon as they are known.
    cold_start: bool,
    /// `BGP_LOGSEVERITYSCREEN`, which wins over the BGPConfigurations.
    env_log_severity: Option<LogSeverity>,
    /// The BGP log level applied last (`None`: RUST_LOG alone).
    log_severity: Option<LogSeverity>,
    /// The VXLAN devices' VTEP entries, programmed by their own task.
    vteps: VtepTask,
    vxlan_ready: bool,
    /// `vxlan6.brindle` is up (IPv6 pools with VXLAN).
    vxlan6_ready: bool,
    /// Neighbour entries the last converge needed (checked against the
    /// host's limits when it changes).
    neighbour_entries: usize,
    desired: Desired,
    shared: Arc<Mutex<Shared>>,
    /// Work for the policy task (see [`policy_task`]); `None`: policy off.
    policy: Option<tokio::sync::watch::Sender<PolicyWork>>,
    /// AS, listen port and cluster id the speaker was started with: they
    /// only change with a restart of the daemon.
    speaker_settings: SpeakerSettings,
    /// What each password reference read as at the last converge (looked
    /// at again every second: a changed file re-keys its sessions).
    passwords: BTreeMap<SecretKeySelector, Result<Option<String>, SecretError>>,
    /// Local workload peering addresses on workload interfaces, as last
    /// made true (`None` until the first converge read what is there).
    peering_addresses: Option<BTreeSet<(String, IpNet)>>,
    /// How the kernel reaches each off-link BGP next hop (BIRD's recursive
    /// gateway), looked up once and again after a resync or a link change.
    resolved: HashMap<IpAddr, Option<NextHop>>,
    /// The desired routes with off-link next hops resolved: what the route
    /// task is given.
    kernel_routes: Vec<Route>,
}

/// AS, listen port, route reflector cluster id and `bindMode: NodeIP`.
type SpeakerSettings = (u32, u16, Option<Ipv4Addr>, bool);

fn speaker_settings(cluster: &ClusterState, node: &str) -> SpeakerSettings {
    let me = cluster.nodes.get(node);
    (
        me.and_then(|n| n.asn).unwrap_or(cluster.bgp.asn),
        cluster.listen_port_of(node),
        me.and_then(|n| n.rr_cluster_id),
        cluster.bind_node_ip_of(node),
    )
}

impl Daemon {
    fn cluster(&self) -> ClusterState {
        let mut node_infos = self.node_infos.lock().unwrap_or_else(|e| e.into_inner());
        ClusterState::from_decoded(
            self.resources.entries(),
            self.blocks.entries(),
            &mut node_infos,
        )
    }

    /// Allocates this node's VXLAN tunnel address (once; kept in the Node)
    /// and creates the device.
    async fn ensure_vxlan(&mut self, cluster: &ClusterState) -> Result<(), NodeError> {
        let name = self.opts.node_name.clone();
        let mut tunnel = cluster.nodes.get(&name).and_then(|n| n.vxlan_tunnel);
        if tunnel.is_none() {
            tunnel =
                match assign_vxlan_tunnel(&self.ds, &self.opts.node_name, cluster, false).await? {
                    Some(IpAddr::V4(v4)) => Some(v4),
                    _ => None,
                };
        }
        let Some(tunnel) = tunnel else {
            return Err(NodeError::Config(
                "IPAM gave no VXLAN tunnel address".into(),
            ));
        };
        let mac = vtep_mac_for_node(&name);
        modify_node(&self.ds, &name, |node| {
            node.spec.ipv4_vxlan_tunnel_addr = Some(tunnel.to_string());
            node.spec.vxlan_tunnel_mac_addr = Some(format_mac(&mac));
        })
        .await?;
        let mut cfg = VxlanConfig::new(IpAddr::V4(self.address.addr()), self.underlay_mtu);
        cfg.tunnel_address = Some(IpAddr::V4(tunnel));
        cfg.mac = Some(mac);
        ensure_vxlan(&self.nl, &cfg).await?;
        info!(%tunnel, mtu = cfg.mtu(), "VXLAN device ready");
        self.vxlan_ready = true;
        Ok(())
    }

    /// The IPv6 twin of [`Daemon::ensure_vxlan`]: an IPv6 tunnel address
    /// from the IPv6 VXLAN pools and `vxlan6.brindle` on the node's IPv6
    /// address (from its Node).
    async fn ensure_vxlan6(&mut self, cluster: &ClusterState) -> Result<(), NodeError> {
        let name = self.opts.node_name.clone();
        let me = cluster.nodes.get(&name);
        let Some(local) = me.and_then(|n| n.ip6()) else {
            return Err(NodeError::Config("no IPv6 address for vxlan6".into()));
        };
        let mut tunnel = me.and_then(|n| n.vxlan_tunnel6);
        if tunnel.is_none() {
            tunnel =
                match assign_vxlan_tunnel(&self.ds, &self.opts.node_name, cluster, true).await? {
                    Some(IpAddr::V6(v6)) => Some(v6),
                    _ => None,
                };
        }
        let Some(tunnel) = tunnel else {
            return Err(NodeError::Config(
                "IPAM gave no IPv6 VXLAN tunnel address".into(),
            ));
        };
        // Its own MAC, so the two devices' FDB entries never look alike.
        let mac = vtep_mac_for_node(&format!("{name}/v6"));
        modify_node(&self.ds, &name, |node| {
            node.spec.ipv6_vxlan_tunnel_addr = Some(tunnel.to_string());
            node.spec.vxlan_tunnel_mac_addr_v6 = Some(format_mac(&mac));
        })
        .await?;
        let mut cfg = VxlanConfig::new(IpAddr::V6(local), self.underlay_mtu);
        cfg.tunnel_address = Some(IpAddr::V6(tunnel));
        cfg.mac = Some(mac);
        ensure_vxlan(&self.nl, &cfg).await?;
        info!(%tunnel, mtu = cfg.mtu(), "IPv6 VXLAN device ready");
        self.vxlan6_ready = true;
        Ok(())
    }

    /// Hands the speaker the whole peer set; it decides what to start,
    /// restart and stop (`Speaker::set_peers`).
    async fn sync_peers(&mut self, desired: &BTreeMap<IpAddr, DesiredPeer>) {
        let mut passwords = BTreeMap::new();
        let mut held = BTreeMap::new();
        let mut configs = Vec::with_capacity(desired.len());
        for (address, peer) in desired {
            let mut config = peer.config.clone();
            if let Some(reference) = &peer.password {
                let read = passwords
                    .entry(reference.clone())
                    .or_insert_with(|| read_password(&self.opts.secrets_dir, reference));
                match read {
                    Ok(password) => config.md5_password = password.clone(),
                    // Never a session without the password asked for.
                    Err(error) => {
                        held.insert(*address, (peer.kind, peer.name.clone(), error.to_string()));
                        continue;
                    }
                }
            }
            configs.push(config);
        }
        for (reference, read) in &passwords {
            if let Err(error) = read {
                if self.passwords.get(reference) != Some(read) {
                    warn!(%error, "peers held back until their password can be read");
                }
            }
        }
        self.passwords = passwords;
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).held = held;
        match self.speaker.set_peers(configs).await {
            Ok(failed) => {
                for (address, error) in failed {
                    let peer = desired.get(&address);
                    warn!(
                        %address,
                        kind = peer.map_or("", |p| p.kind.as_str()),
                        name = peer.map_or("", |p| p.name.as_str()),
                        %error,
                        "configuring peer failed"
                    );
                }
            }
            Err(error) => warn!(%error, "configuring peers failed"),
        }
    }

    /// Whether a password file changed since the last converge read it.
    fn passwords_changed(&self) -> bool {
        self.passwords
            .iter()
            .any(|(reference, was)| read_password(&self.opts.secrets_dir, reference) != *was)
    }

    /// Hands the speaker the whole set of prefixes to originate, each with
    /// its communities (`Speaker::set_originations_each`).
    async fn sync_originations(
        &mut self,
        desired: &BTreeSet<IpNet>,
        communities: &BTreeMap<IpNet, Communities>,
    ) {
        let each = desired
            .iter()
            .map(|prefix| {
                let mut attrs = local_attrs();
                if let Some(c) = communities.get(prefix) {
                    attrs.attributes.communities = c.standard.clone();
                    attrs.attributes.large_communities = c.large.clone();
                }
                (*prefix, attrs)
            })
            .collect();
        match self.speaker.set_originations_each(each).await {
            Ok(change) => {
                if !change.originated.is_empty() {
                    info!(prefixes = ?change.originated, "originating");
                }
                if !change.withdrawn.is_empty() {
                    info!(prefixes = ?change.withdrawn, "withdrawing");
                }
            }
            Err(error) => warn!(%error, "originating failed"),
        }
    }

    /// Recomputes the desired state and applies it everywhere.
    async fn converge(&mut self) {
        let cluster = self.cluster();
        for (key, problem) in &cluster.problems {
            debug!(%key, %problem, "ignoring undecodable document");
        }
        let settings = speaker_settings(&cluster, &self.opts.node_name);
        self.apply_log_severity(&cluster);
        if cluster.nodes.contains_key(&self.opts.node_name) && settings != self.speaker_settings {
            warn!(
                running = ?self.speaker_settings,
                stored = ?settings,
                "AS number, BGP port, bind mode or route reflector cluster id changed: restart brindle-node to apply"
            );
            self.speaker_settings = settings;
        }
        let desired = desired_state(Inputs {
            node: &self.opts.node_name,
            cluster: &cluster,
            learned: &self.learned,
        });
        self.check_neighbour_limits(&desired);
        if desired.missing_filters != self.desired.missing_filters
            && !desired.missing_filters.is_empty()
        {
            warn!(
                filters = ?desired.missing_filters,
                "BGPPeers name BGPFilters that do not exist; their sessions run without them"
            );
        }
        // What other nodes wait for (our sessions and announcements) first,
        // before the tunnel set-up, whose IPAM allocation can wait seconds
        // for the store at a cold start of many nodes; then what reaches
        // them (routes, VTEPs); policy, the slowest step, last.
        let began = Instant::now();
        self.sync_peers(&desired.peers).await;
        let peers_took = began.elapsed();
        self.sync_originations(&desired.originations, &desired.communities)
            .await;
        self.sync_peering_addresses(&cluster, &desired.peering_addresses)
            .await;
        let setup_began = Instant::now();
        if desired.vxlan && !self.vxlan_ready {
            if let Err(error) = self.ensure_vxlan(&cluster).await {
                warn!(%error, "cannot set up VXLAN yet");
            }
        }
        if desired.vxlan6 && !self.vxlan6_ready {
            if let Err(error) = self.ensure_vxlan6(&cluster).await {
                warn!(%error, "cannot set up IPv6 VXLAN yet");
            }
        }
        if desired.ipip {
            // This kernel path is proven elsewhere (qemu); configure tunl0
            // best effort so routes through it can be installed.
            if let Err(error) = crate::tunnel::ensure_ipip(&self.nl, self.underlay_mtu, None).await
            {
                debug!(%error, "tunl0 not available");
            }
        }
        let setup = setup_began.elapsed();
        let routes = self.resolve_off_link(&desired).await;
        if self.routes_open && routes != self.kernel_routes {
            self.syncer.set_all(routes.clone());
        }
        self.kernel_routes = routes;
        if (self.vxlan_ready && desired.vteps != self.desired.vteps)
            || (self.vxlan6_ready && desired.vteps6 != self.desired.vteps6)
        {
            self.sync_vteps(&desired, false);
        }
        self.sync_policy(false).await;
        debug!(
            ?peers_took,
            ?setup,
            total = ?began.elapsed(),
            "converge steps"
        );
        {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.kinds = desired
                .peers
                .iter()
                .map(|(a, p)| (*a, (p.kind, p.name.clone())))
                .collect();
            shared.routes_in_sync = self.routes_open && self.syncer.in_sync();
        }
        self.desired = desired;
    }

    /// `desired.routes` with each next hop off the node's networks replaced
    /// by the gateway the kernel reaches it through (BIRD's `gateway
    /// recursive`, Calico's default: a route reflected from a node on
    /// another subnet without encapsulation goes via the router). A next
    /// hop the kernel reaches directly, or not at all, stays as it is.
    async fn resolve_off_link(&mut self, desired: &Desired) -> Vec<Route> {
        if desired.off_link_gateways.is_empty() {
            return desired.routes.clone();
        }
        for gateway in &desired.off_link_gateways {
            if !self.resolved.contains_key(gateway) {
                let via = match self.nl.gateway_toward(*gateway).await {
                    Ok(via) => via,
                    Err(error) => {
                        debug!(%gateway, %error, "resolving a next hop");
                        None
                    }
                };
                debug!(%gateway, ?via, "off-link next hop resolved");
                self.resolved.insert(*gateway, via);
            }
        }
        let resolve = |hop: &NextHop| -> Option<NextHop> {
            if hop.device.is_some() || hop.onlink {
                return None;
            }
            self.resolved.get(&hop.gateway?).cloned().flatten()
        };
        desired
            .routes
            .iter()
            .map(|route| match &route.target {
                RouteTarget::NextHops(hops) if hops.iter().any(|h| resolve(h).is_some()) => Route {
                    dst: route.dst,
                    target: RouteTarget::nexthops(
                        hops.iter()
                            .map(|h| resolve(h).unwrap_or_else(|| h.clone()))
                            .collect(),
                    ),
                },
                _ => route.clone(),
            })
            .collect()
    }

    /// Puts each local workload peering address on its workload's
    /// interface and takes off the ones no longer wanted (a workload no
    /// longer selected, a changed `localWorkloadPeeringIPV4`). What is on
    /// the local workloads' interfaces at the first call counts as ours:
    /// a host-side workload interface carries no other address (IPv6
    /// link-local ones aside), and a restart must be able to clean up
    /// after a change made while it was down. A failure (the interface not
    /// there yet) is tried again by the next converge or tick.
    async fn sync_peering_addresses(
        &mut self,
        cluster: &ClusterState,
        wanted: &BTreeSet<(String, IpNet)>,
    ) {
        let applied = match self.peering_addresses.take() {
            Some(applied) => applied,
            None => {
                let mut found = BTreeSet::new();
                for w in &cluster.workloads {
                    let (Some(ifname), true) = (
                        &w.interface,
                        w.node.as_deref() == Some(self.opts.node_name.as_str()),
                    ) else {
                        continue;
                    };
                    let Ok(addrs) = self.nl.addresses(ifname).await else {
                        continue;
                    };
                    for addr in addrs {
                        let link_local = matches!(addr.addr(), IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
                        if !link_local && addr.prefix_len() == addr.max_prefix_len() {
                            found.insert((ifname.clone(), addr));
                        }
                    }
                }
                found
            }
        };
        let mut now = applied.clone();
        for (ifname, addr) in applied.difference(wanted) {
            match self.nl.remove_link_scope_address(ifname, *addr).await {
                Ok(_) => {
                    info!(%ifname, %addr, "local workload peering address removed");
                    now.remove(&(ifname.clone(), *addr));
                }
                Err(error) => {
                    warn!(%ifname, %addr, %error, "cannot remove local workload peering address")
                }
            }
        }
        for (ifname, addr) in wanted.difference(&applied) {
            match self.nl.add_link_scope_address(ifname, *addr).await {
                Ok(()) => {
                    info!(%ifname, %addr, "local workload peering address added");
                    now.insert((ifname.clone(), *addr));
                }
                Err(error) => {
                    debug!(%ifname, %addr, %error, "local workload peering address not added yet")
                }
            }
        }
        self.peering_addresses = Some(now);
    }

    /// Has policy compiled and applied for this node (`resync`: re-read the
    /// kernel and repair it). Hands the resources to the policy task and
    /// returns at once: a converge (and the routes of the next one) never
    /// waits for iptables.
    async fn sync_policy(&mut self, resync: bool) {
        if self.policy.is_none() {
            return;
        }
        let resources = self.resources.values();
        let Some(work) = &self.policy else {
            return;
        };
        work.send_modify(|w| {
            w.resources = resources;
            w.resyncs_asked += u64::from(resync);
        });
    }

    /// Neighbour/FDB entries of each VXLAN device that is up.
    /// Warns, once per change, when the neighbour entries this node needs
    /// do not fit the host's limits comfortably (see `node::limits`).
    fn check_neighbour_limits(&mut self, desired: &Desired) {
        let needed = neighbour_entries(
            desired.vteps.len() + desired.vteps6.len(),
            desired.peers.len(),
        );
        if needed == self.neighbour_entries {
            return;
        }
        self.neighbour_entries = needed;
        if let Some(text) = NeighbourLimits::of_host().and_then(|l| neighbour_warning(needed, l)) {
            warn!("{text}");
        }
    }

    /// Calico's logSeverityScreen: the speaker's log level follows
    /// `BGP_LOGSEVERITYSCREEN`, else the node's own BGPConfiguration, else
    /// `default`; changed at run time.
    fn apply_log_severity(&mut self, cluster: &ClusterState) {
        let level = self
            .env_log_severity
            .or_else(|| cluster.log_severity_of(&self.opts.node_name));
        let changed = crate::node::logging::directive(level)
            != crate::node::logging::directive(self.log_severity);
        self.log_severity = level;
        if !changed {
            return;
        }
        match crate::node::logging::set_bgp_severity(level) {
            Ok(()) => info!(?level, "BGP log level set (logSeverityScreen)"),
            Err(error) => warn!(?level, %error, "cannot apply logSeverityScreen"),
        }
    }

    /// Hands the VTEPs of the devices that are set up to their task;
    /// `full`: read the devices' tables and repair them (the resync).
    fn sync_vteps(&self, desired: &Desired, full: bool) {
        self.vteps.sync(
            self.vxlan_ready.then_some(&desired.vteps[..]),
            self.vxlan6_ready.then_some(&desired.vteps6[..]),
            full,
        );
    }

    /// Opens route management once every desired session is up (and the
    /// table had a moment to arrive), or when the grace period is over.
    async fn maybe_open_routes(&mut self, started: Instant, all_up_since: &mut Option<Instant>) {
        if self.routes_open {
            return;
        }
        let peers = self.speaker.peers().await.unwrap_or_default();
        let wanted = &self.desired.peers;
        let all_up = !self.resources.is_empty()
            && wanted.keys().all(|a| {
                peers
                    .iter()
                    .any(|p| p.config.address == *a && p.state == PeerState::Established)
            });
        if all_up {
            all_up_since.get_or_insert_with(Instant::now);
        } else {
            *all_up_since = None;
        }
        let settled = all_up_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(1));
        let grace_over = started.elapsed() >= self.opts.startup_grace;
        if settled || grace_over || self.cold_start {
            info!(
                settled,
                grace_over,
                cold_start = self.cold_start,
                "converging kernel routes"
            );
            self.routes_open = true;
            self.syncer.set_all(self.kernel_routes.clone());
            self.syncer.send(Input::Start);
        }
    }
}

/// CPU time of the calling thread (the daemon's runtime is
/// single-threaded: this is the daemon's own work, not its waits).
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Folds one Loc-RIB change into the learned routes: a best path from a
/// peer (stale ones included: graceful restart keeps them) is learned; our
/// own originations and withdrawals are not.
pub fn apply_route_change(learned: &mut BTreeMap<IpNet, Learned>, change: BestRouteChange) {
    match change {
        BestRouteChange::Best(entry) => match entry.source {
            RouteSource::Peer(_) if !entry.next_hops.is_empty() => {
                learned.insert(
                    entry.prefix,
                    Learned {
                        next_hops: entry.next_hops.clone(),
                    },
                );
            }
            _ => {
                learned.remove(&entry.prefix);
            }
        },
        BestRouteChange::Withdrawn(prefix) => {
            learned.remove(&prefix);
        }
    }
}

/// Most next hops of one ECMP route (BIRD's `merge paths` default limit).
const MAX_ECMP_PATHS: usize = 16;

/// Shortest pause between two converges while changes keep coming (see
/// the main loop).
const MIN_CONVERGE_GAP: Duration = Duration::from_millis(1);

/// Runs the daemon until `shutdown` resolves. Must run inside a tokio
/// runtime in the host's network namespace.
pub async fn run(
    opts: NodeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let span = info_span!("node", name = %opts.node_name);
    run_inner(opts, shutdown).instrument(span).await
}

async fn run_inner(
    opts: NodeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let started = Instant::now();
    tokio::pin!(shutdown);
    // First, before anything that a second instance would disturb (the BGP
    // port, the node's routes): one node per status socket.
    // A stale socket is replaced; a running node's socket or a file that is
    // not a socket is refused. Removed at exit only while still ours.
    let (listener, _status_path) = brindle_bgp::unix_socket::bind(&opts.status_socket)
        .map_err(|e| NodeError::Status(e.to_string()))?;
    let io = |source| NodeError::Io {
        what: format!("binding {}", opts.status_socket.display()),
        source,
    };
    listener.set_nonblocking(true).map_err(io)?;
    let listener = UnixListener::from_std(listener).map_err(io)?;
    let address = match opts.address {
        Some(a) => a,
        None => {
            let (a, dev) = autodetect_address(&Netlink::connect(opts.route_protocol)?).await?;
            info!(address = %a, %dev, "autodetected node address");
            a
        }
    };
    // The signal handlers are installed already, so a stop must also end a
    // start that is still waiting for its datastore.
    let ds = tokio::select! {
        opened = open_and_register(&opts, address) => opened?,
        _ = &mut shutdown => {
            info!("shutting down before the datastore answered");
            return Ok(());
        }
    };
    info!(address = %address, "node registered");
    if let Err(error) = crate::workload::enable_host_forwarding() {
        warn!(%error, "cannot enable forwarding");
    }
    crate::netlink::install_protocol_name(
        opts.route_protocol,
        crate::route::BRINDLE_ROUTE_PROTOCOL_NAME,
    );
    let nl = Netlink::connect(opts.route_protocol)?;
    let (underlay, underlay_mtu) = underlay_of(&nl, address.addr()).await?;
    info!(%underlay, underlay_mtu, "underlay");

    // Speaker settings come from the store as it is now.
    let initial = ds.list(keys::resources_prefix()).await?;
    let cluster = ClusterState::decode(&initial.kvs, &[]);
    let settings = speaker_settings(&cluster, &opts.node_name);
    let (asn, listen_port, cluster_id, bind_node_ip) = settings;
    let mut speaker_config = SpeakerConfig::new(asn, address.addr());
    if bind_node_ip {
        // Calico's `bindMode: NodeIP`: only the node's own addresses.
        let me = cluster.nodes.get(&opts.node_name);
        speaker_config.listen_addresses = std::iter::once(IpAddr::V4(address.addr()))
            .chain(me.and_then(|n| n.ip6()).map(IpAddr::V6))
            .collect();
    }
    // Equal paths (two ToRs, two nodes announcing one prefix) go into the
    // kernel as one ECMP route, as Calico's BIRD does with `merge paths`.
    speaker_config.max_paths = MAX_ECMP_PATHS;
    speaker_config.listen_port = listen_port;
    speaker_config.cluster_id = cluster_id;
    let speaker = Speaker::start(speaker_config).await?;
    info!(asn, router_id = %address.addr(), "BGP speaker started");
    let mut routes = speaker.subscribe();

    let syncer = RouteSyncer::new(
        Netlink::connect(opts.route_protocol)?,
        ReconcilerConfig {
            protocol: opts.route_protocol,
            resync_interval: opts.resync_interval,
            ..Default::default()
        },
    );
    let mut links = match LinkWatcher::start() {
        Ok(w) => Some(w),
        Err(error) => {
            warn!(%error, "no link notifications; relying on resync");
            None
        }
    };

    let cold_start = match syncer.kernel().list_routes().await {
        Ok(routes) => routes.is_empty(),
        Err(error) => {
            warn!(%error, "cannot list kernel routes; waiting for the sessions before converging");
            false
        }
    };
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut daemon = Daemon {
        opts: opts.clone(),
        ds: ds.clone(),
        address,
        underlay_mtu,
        speaker: speaker.clone(),
        nl,
        syncer: RouteSyncTask::spawn(syncer),
        resources: Decoded::new(decode_resource),
        blocks: Decoded::new(decode_block_info),
        node_infos: Mutex::new(NodeInfos::default()),
        learned: BTreeMap::new(),
        routes_open: false,
        cold_start,
        env_log_severity: match std::env::var("BGP_LOGSEVERITYSCREEN") {
            Ok(text) => {
                Some(crate::node::logging::parse_severity(&text).map_err(NodeError::Config)?)
            }
            Err(_) => None,
        },
        log_severity: None,
        vteps: VtepTask::spawn(Netlink::connect(opts.route_protocol)?),
        vxlan_ready: false,
        vxlan6_ready: false,
        neighbour_entries: 0,
        desired: Desired::default(),
        shared: shared.clone(),
        speaker_settings: settings,
        passwords: BTreeMap::new(),
        peering_addresses: None,
        resolved: HashMap::new(),
        kernel_routes: Vec::new(),
        policy: opts.policy.then(|| {
            let (work, rx) = tokio::sync::watch::channel(PolicyWork::default());
            tokio::spawn(policy_task(opts.node_name.clone(), rx).instrument(info_span!("policy")));
            work
        }),
    };

    let mut resources = ds.follow(keys::resources_prefix());
    let mut blocks = ds.follow(format!("{}/assignment/", keys::IPAM_ROOT));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut resync = tokio::time::interval(opts.resync_interval);
    resync.tick().await;
    let mut all_up_since = None;
    // Converging: as soon as the events that are already queued have been
    // folded in (the select is biased: ready events win over converging),
    // but no sooner than the previous converge's duration (at least
    // MIN_CONVERGE_GAP) after it ended, so a burst (a full table from a
    // peer, a re-list) costs at most half the CPU in converges. (A gap of
    // a fixed 10 ms was measured to delay a learned route by ~10 ms: one
    // ADD's store writes and the peer's UPDATE arrive a few ms apart.) A lone
    // change (a workload's block, a route from a peer) is acted on at once:
    // a fixed debounce would add its whole length to every propagation.
    let mut dirty = false;
    let mut converge_not_before = Instant::now();
    loop {
        let converge_at = if dirty {
            converge_not_before
        } else {
            Instant::now() + Duration::from_secs(3600)
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                info!("shutting down; kernel routes and rules stay in place");
                break;
            }
            Some(update) = resources.next() => match update {
                Ok(u) => { daemon.resources.apply(u); dirty = true; }
                Err(error) => warn!(%error, "following resources"),
            },
            Some(update) = blocks.next() => match update {
                Ok(u) => { daemon.blocks.apply(u); dirty = true; }
                Err(error) => warn!(%error, "following IPAM blocks"),
            },
            Some(change) = routes.recv() => {
                apply_route_change(&mut daemon.learned, change);
                dirty = true;
            }
            Some(event) = async { match links.as_mut() { Some(w) => w.next().await, None => std::future::pending().await } } => {
                if !daemon.desired.off_link_gateways.is_empty() {
                    // The way to an off-link next hop may have changed.
                    daemon.resolved.clear();
                    dirty = true;
                }
                if let (true, Some(input)) = (daemon.routes_open, event.reconciler_input()) {
                    daemon.syncer.send(input);
                }
            }
            _ = tokio::time::sleep_until(converge_at), if dirty => {
                dirty = false;
                let began = Instant::now();
                let cpu_began = thread_cpu_time();
                daemon.converge().await;
                // The gap keeps converges from eating the CPU, so it is the
                // CPU they used, not their wall time: on a busy host a
                // converge waits seconds for netlink answers and the store,
                // and a gap as long as that held a route reflector's next
                // converge (new peers) back by as much again.
                let cpu = thread_cpu_time().saturating_sub(cpu_began);
                debug!(took = ?began.elapsed(), ?cpu, "converged");
                converge_not_before = Instant::now() + cpu.max(MIN_CONVERGE_GAP);
            }
            Ok((stream, _)) = listener.accept() => {
                tokio::spawn(serve_status(stream, speaker.clone(), shared.clone(), opts.node_name.clone(), asn, address.addr()));
            }
            _ = tick.tick() => {
                if daemon.peering_addresses.as_ref().is_some_and(|a| *a != daemon.desired.peering_addresses) {
                    // A workload interface that was not there yet.
                    let cluster = daemon.cluster();
                    let wanted = daemon.desired.peering_addresses.clone();
                    daemon.sync_peering_addresses(&cluster, &wanted).await;
                }
                if daemon.passwords_changed() {
                    info!("a BGP password file changed; re-keying its sessions");
                    dirty = true;
                }
                daemon.maybe_open_routes(started, &mut all_up_since).await;
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                s.routes_in_sync = daemon.routes_open && daemon.syncer.in_sync();
            }
            _ = resync.tick() => {
                if !daemon.desired.off_link_gateways.is_empty() {
                    daemon.resolved.clear();
                    dirty = true;
                }
                if daemon.routes_open {
                    daemon.syncer.send(Input::ResyncTimer);
                }
                if daemon.vxlan_ready || daemon.vxlan6_ready {
                    let desired = daemon.desired.clone();
                    daemon.sync_vteps(&desired, true);
                }
                daemon.sync_policy(true).await;
                if let Some(grace) = opts.ipam_gc_grace {
                    // Every node may run this: each release is a
                    // compare-and-swap, and a node's last block is kept.
                    match Ipam::new(ds.clone()).release_empty_blocks(grace).await {
                        Ok(released) if !released.is_empty() => {
                            info!(?released, "released blocks empty for {grace:?}")
                        }
                        Ok(_) => {}
                        Err(error) => warn!(%error, "releasing empty IPAM blocks"),
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_bgp::speaker::RouteEntry;

    fn best(prefix: &str, source: RouteSource, next_hops: &[&str]) -> BestRouteChange {
        BestRouteChange::Best(RouteEntry {
            prefix: prefix.parse().unwrap(),
            source,
            next_hops: next_hops.iter().map(|n| n.parse().unwrap()).collect(),
            attrs: Arc::new(local_attrs()),
            stale: false,
        })
    }

    #[test]
    fn learned_routes_follow_the_loc_rib() {
        let peer = RouteSource::Peer("10.0.1.2".parse().unwrap());
        let mut learned = BTreeMap::new();
        apply_route_change(&mut learned, best("10.65.0.64/26", peer, &["10.0.1.2"]));
        apply_route_change(&mut learned, best("10.65.0.128/26", peer, &["10.0.1.3"]));
        assert_eq!(learned.len(), 2);
        // Our own origination wins the prefix: nothing to install.
        apply_route_change(
            &mut learned,
            best("10.65.0.128/26", RouteSource::Local, &[]),
        );
        // A new best path replaces the next hop.
        apply_route_change(&mut learned, best("10.65.0.64/26", peer, &["10.0.1.9"]));
        assert_eq!(
            learned.into_iter().collect::<Vec<_>>(),
            vec![(
                "10.65.0.64/26".parse().unwrap(),
                Learned::via("10.0.1.9".parse().unwrap())
            )]
        );
        let mut multi = BTreeMap::new();
        apply_route_change(
            &mut multi,
            best("10.65.0.64/26", peer, &["10.0.1.9", "10.0.1.8"]),
        );
        assert_eq!(
            multi[&"10.65.0.64/26".parse::<IpNet>().unwrap()]
                .next_hops
                .len(),
            2
        );
        let mut learned = BTreeMap::new();
        apply_route_change(&mut learned, best("10.65.0.64/26", peer, &["10.0.1.2"]));
        apply_route_change(
            &mut learned,
            BestRouteChange::Withdrawn("10.65.0.64/26".parse().unwrap()),
        );
        assert!(learned.is_empty());
    }
}

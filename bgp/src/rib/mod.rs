//! Routing information bases, sans-IO: Adj-RIB-In per peer, the Loc-RIB with
//! the decision process, and Adj-RIB-Out per peer.
//!
//! ```text
//!  UPDATE from peer ──► import rules ──► Adj-RIB-In ─┐
//!  originate()  ────────────────────────────────────►├─► decision ─► Loc-RIB
//!                                                    │   process       │
//!                     best-route changes (kernel) ◄──┘◄────────────────┤
//!   take_updates(peer) ◄── Adj-RIB-Out ◄── export rules (per peer) ◄───┘
//! ```
//!
//! Every operation returns a [`RibOutput`]: the Loc-RIB changes (new best
//! route and multipath next hops per prefix, for the agent that programs the
//! kernel) and the peers whose Adj-RIB-Out now has something to send. The
//! session layer then calls [`Rib::take_updates`] for those peers and packs
//! the returned [`UpdateBatch`]es into UPDATE messages.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use brindle_bgp::packet::{AsPath, NextHop, Origin, PathAttributes};
//! use brindle_bgp::rib::{PathAttrs, PeerConfig, Rib, RibConfig, UpdateBatch};
//!
//! let mut rib = Rib::new(RibConfig::new(64512, Ipv4Addr::new(10, 0, 0, 1)));
//! let tor = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254));
//! let mut peer = PeerConfig::new(tor, 65000, Ipv4Addr::new(10, 0, 0, 254));
//! peer.local_v4 = Some(Ipv4Addr::new(10, 0, 0, 1));
//! rib.peer_up(peer).unwrap();
//!
//! // This node's IPAM block, next hop self on export.
//! let block = "10.244.1.0/26".parse().unwrap();
//! let local = PathAttrs {
//!     attributes: PathAttributes { origin: Some(Origin::Igp), ..Default::default() },
//!     next_hop: None,
//! };
//! let out = rib.originate(&[block], local);
//! assert_eq!(out.peers_pending, vec![tor]);
//! let batches = rib.take_updates(tor).unwrap();
//! let UpdateBatch::Announce { attrs, prefixes } = &batches[0] else { unreachable!() };
//! assert_eq!(prefixes, &vec![block]);
//! assert_eq!(attrs.attributes.as_path, Some(AsPath::from_sequence([64512])));
//! assert_eq!(attrs.next_hop, Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 1))));
//!
//! // A route from the ToR reaches the kernel through `best_changes`.
//! let learned = PathAttrs {
//!     attributes: PathAttributes {
//!         origin: Some(Origin::Igp),
//!         as_path: Some(AsPath::from_sequence([65000])),
//!         ..Default::default()
//!     },
//!     next_hop: Some(NextHop::V4(Ipv4Addr::new(10, 0, 0, 254))),
//! };
//! let out = rib.announce(tor, &["0.0.0.0/0".parse().unwrap()], learned).unwrap();
//! assert_eq!(out.best_changes[0].best.as_ref().unwrap().next_hops, vec![tor]);
//! ```
//!
//! Storage: the Adj-RIBs-In of all peers live in the Loc-RIB's per-prefix
//! path lists (one path per peer and prefix; ADD-PATH receive is not
//! supported), the best first; a prefix with a single path stores it inline.
//! The prefix table (`table.rs`) keeps entries in a chunked slab under 5-byte
//! IPv4 keys with a hash index of 4-byte slot numbers, so it neither pads
//! keys nor doubles entries when it grows. Attribute sets are interned
//! ([`attrs::AttrInterner`]), so a route costs a prefix, a peer index and a
//! pointer: about 35 bytes per route at one million IPv4 prefixes for
//! Loc-RIB plus Adj-RIB-In (`bgp/tests/rib_memory.rs` prints the figure).
//! Adj-RIBs-Out are implicit ([`adj_out`]): a peer has the export of the
//! current best route of each prefix, and only the changes not yet flushed
//! are stored, so a peer costs nothing per route (as in BIRD). Per-peer
//! counts (received, accepted, stale, advertised) and graceful-restart stale
//! marks (a flag on the path) are kept here too, so the session layer stores
//! no copy of a peer's routes. The rules applied on import and export are in
//! [`policy`]; the decision process is in [`decision`]; how a changed path
//! runs the decision again and what it sends to whom is in `update.rs`; how
//! one prefix's paths are stored is in `destination.rs`; the RIB's and each
//! peer's settings in `config.rs`.
//!
//! Contract: no input makes a method panic (the only panic guards an
//! internal invariant: every peer index stored with a path names a live
//! peer). Operations naming a peer that was not added with [`Rib::peer_up`]
//! return [`RibError::UnknownPeer`]. Announcements that fail the import rules
//! (loops, missing next hop) withdraw the peer's previous route for the
//! prefix, as RFC 7606 treat-as-withdraw would.

pub mod adj_out;
pub mod attrs;
mod config;
pub mod decision;
mod destination;
mod filter;
pub mod policy;
pub(crate) mod table;
mod update;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tracing::{debug, debug_span};

use adj_out::{family_of, Packer};
pub use adj_out::{AdjRibOut, UpdateBatch};
pub use attrs::{AttrInterner, PathAttrs};
pub use config::{ExportPrefixes, PeerConfig, RibConfig};
pub use decision::{Candidate, Selection};
pub use filter::{
    CommunityMatch, FilterRule, FilterVerdict, PrefixMatch, PrefixOp, RouteFilter, RouteOperation,
};
pub use policy::ImportReject;

use crate::packet::types::NextHop;
use crate::packet::{Family, Nlri, Update, UpdateOutcome};
use destination::{ByPtr, Destination, Path, Snapshot};
use policy::Source;
use table::PrefixMap;

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteSource {
    Local,
    Peer(IpAddr),
}

/// The Loc-RIB entry for a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub source: RouteSource,
    pub attrs: Arc<PathAttrs>,
    /// Next hops to install: the best route's first, then the other
    /// multipath routes' (deduplicated). Empty for a local route.
    pub next_hops: Vec<IpAddr>,
}

/// A Loc-RIB change: `best` is `None` when the prefix became unreachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: IpNet,
    pub best: Option<Selected>,
}

/// What an operation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RibOutput {
    /// Loc-RIB changes, in the order they happened.
    pub best_changes: Vec<BestChange>,
    /// Peers with pending advertisements; call [`Rib::take_updates`].
    pub peers_pending: Vec<IpAddr>,
    /// Announcements the import rules rejected, with why.
    pub rejected: Vec<(IpNet, ImportReject)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RibError {
    #[error("peer {0} is not up in the RIB")]
    UnknownPeer(IpAddr),
    #[error("peer {0} is already up in the RIB")]
    DuplicatePeer(IpAddr),
}

/// Cost of reaching a next hop through the IGP / kernel; `None` when it is
/// unreachable, which makes the route ineligible.
pub trait IgpCost: Send + Sync {
    fn igp_cost(&self, next_hop: IpAddr) -> Option<u32>;
}

impl<F: Fn(IpAddr) -> Option<u32> + Send + Sync> IgpCost for F {
    fn igp_cost(&self, next_hop: IpAddr) -> Option<u32> {
        self(next_hop)
    }
}

/// Slot index meaning "locally originated".
const LOCAL: u32 = u32::MAX;

#[derive(Debug)]
struct PeerSlot {
    config: PeerConfig,
    ibgp: bool,
    out: AdjRibOut,
    /// Paths of this peer in the RIB (its Adj-RIB-In), stale ones included.
    accepted: usize,
    /// Of those, the ones marked stale.
    stale: usize,
    /// Prefixes the peer announces that the import rules rejected (so
    /// "received" counts them), and those of them kept through a graceful
    /// restart.
    rejected: PrefixMap<()>,
    rejected_stale: PrefixMap<()>,
}

/// What one peer has in the RIB, for its status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Prefixes the peer announces (rejected and stale ones included).
    pub received: usize,
    /// Prefixes the import rules accepted (its Adj-RIB-In).
    pub accepted: usize,
    /// Prefixes kept as stale through a graceful restart.
    pub stale: usize,
    /// Routes we advertised to it, IPv4 and IPv6 (after the last flush).
    pub advertised_v4: usize,
    pub advertised_v6: usize,
}

/// Memo of export results within one operation: many prefixes share one
/// attribute set, so the per-peer rewrite is computed once per set. Keyed by
/// pointer, which is sound because every attribute set is interned and the
/// interner frees nothing until the operation ends (`finish`).
/// Keyed by the route's attributes, its source, the peer, the family and
/// the export rule whose operations change it (`usize::MAX`: none).
type ExportMemo =
    hashbrown::HashMap<(*const PathAttrs, u32, u32, bool, usize), Option<Arc<PathAttrs>>>;

/// The RIB of one BGP speaker. See the module documentation.
pub struct Rib {
    config: RibConfig,
    igp: Box<dyn IgpCost>,
    interner: AttrInterner,
    loc: PrefixMap<Destination>,
    peers: Vec<Option<PeerSlot>>,
    by_address: HashMap<IpAddr, u32>,
    /// Fill [`RibOutput::best_changes`]; off when nobody consumes them.
    report_best_changes: bool,
}

impl std::fmt::Debug for Rib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rib")
            .field("config", &self.config)
            .field("prefixes", &self.loc.len())
            .field("attribute_sets", &self.interner.len())
            .field("peers", &self.by_address.len())
            .finish()
    }
}

impl Rib {
    pub fn new(config: RibConfig) -> Self {
        Self {
            config,
            igp: Box::new(|_: IpAddr| Some(0)),
            interner: AttrInterner::new(),
            loc: PrefixMap::default(),
            peers: Vec::new(),
            by_address: HashMap::new(),
            report_best_changes: true,
        }
    }

    /// Use `igp` for step 7 of the decision process (and next-hop
    /// reachability). Call [`Rib::reevaluate`] when its answers change.
    pub fn with_igp_cost(mut self, igp: impl IgpCost + 'static) -> Self {
        self.igp = Box::new(igp);
        self
    }

    /// Whether operations report Loc-RIB changes in
    /// [`RibOutput::best_changes`] (the default). A speaker with nobody
    /// programming a kernel turns it off: a full-table load then builds no
    /// change list (about 80 bytes and an allocation per route). The Loc-RIB
    /// itself is the same either way; read it with [`Rib::loc_rib`].
    pub fn set_best_change_reports(&mut self, on: bool) {
        self.report_best_changes = on;
    }

    pub fn config(&self) -> &RibConfig {
        &self.config
    }

    /// Prefixes with at least one path.
    pub fn len(&self) -> usize {
        self.loc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.loc.is_empty()
    }

    /// Distinct attribute sets held by the interner.
    pub fn attribute_sets(&self) -> usize {
        self.interner.len()
    }

    /// The Loc-RIB entry for `prefix`.
    pub fn best(&self, prefix: &IpNet) -> Option<Selected> {
        self.loc.get(prefix).and_then(|d| self.selected(d))
    }

    /// The Loc-RIB: every prefix with a best route.
    pub fn loc_rib(&self) -> impl Iterator<Item = (IpNet, Selected)> + '_ {
        self.loc
            .iter()
            .filter_map(|(p, d)| self.selected(d).map(|s| (p, s)))
    }

    /// The Adj-RIB-In of `peer` (after import rules), unordered.
    pub fn adj_rib_in(&self, peer: IpAddr) -> Result<Vec<(IpNet, Arc<PathAttrs>)>, RibError> {
        let index = self.index_of(peer)?;
        Ok(self
            .loc
            .iter()
            .filter_map(|(p, d)| {
                d.paths()
                    .iter()
                    .find(|path| path.source == index)
                    .map(|path| (p, Arc::clone(&path.attrs)))
            })
            .collect())
    }

    /// The Adj-RIB-Out of `peer`.
    pub fn adj_rib_out(&self, peer: IpAddr) -> Result<&AdjRibOut, RibError> {
        let index = self.index_of(peer)?;
        Ok(&self.slot(index).out)
    }

    /// Pending advertisements for `peer`, packed for UPDATE messages: the
    /// export of the current best route of every prefix that changed since
    /// the last call (or of every prefix, for a new peer or after a
    /// ROUTE-REFRESH), where it differs from what the peer has. The changes
    /// count as sent once returned.
    pub fn take_updates(&mut self, peer: IpAddr) -> Result<Vec<UpdateBatch>, RibError> {
        let index = self.index_of(peer)?;
        let _span = debug_span!("rib_take_updates", %peer).entered();
        let (pending, whole_table) = self.slot_mut(index).out.start_flush();
        let mut sent = self.slot(index).out.sent_counts();
        let mut packer = Packer::default();
        let mut memo = ExportMemo::new();
        for (prefix, slot, had) in pending {
            let desired = self.desired_export(&mut memo, index, &prefix, slot);
            let family = family_of(&prefix);
            match (had, desired) {
                (None, None) => {}
                (Some(had), Some(desired)) if Arc::ptr_eq(&had, &desired) => {}
                (Some(_), None) => {
                    sent[family] = sent[family].saturating_sub(1);
                    packer.withdraw(prefix);
                }
                (had, Some(desired)) => {
                    if had.is_none() {
                        sent[family] += 1;
                    }
                    if !whole_table {
                        packer.announce(prefix, &desired);
                    }
                }
            }
        }
        if whole_table {
            for (prefix, dest) in self.loc.iter() {
                if dest.multipath() == 0 {
                    continue;
                }
                let best = &dest.paths()[0];
                if best.source == index {
                    continue;
                }
                let exported = export_with(
                    &self.config,
                    &self.peers,
                    &mut self.interner,
                    &mut memo,
                    (best.source, &best.attrs),
                    index,
                    &prefix,
                );
                if let Some(desired) = exported {
                    packer.announce(prefix, &desired);
                }
            }
            sent = packer.announced();
        }
        drop(memo);
        self.slot_mut(index).out.finish_flush(sent);
        self.interner.maybe_collect();
        Ok(packer.finish())
    }

    /// Counters of `peer` for its status.
    pub fn peer_counts(&self, peer: IpAddr) -> Result<PeerCounts, RibError> {
        let slot = self.slot(self.index_of(peer)?);
        Ok(PeerCounts {
            received: slot.accepted + slot.rejected.len() + slot.rejected_stale.len(),
            accepted: slot.accepted,
            stale: slot.stale + slot.rejected_stale.len(),
            advertised_v4: slot.out.sent_len_of(false),
            advertised_v6: slot.out.sent_len_of(true),
        })
    }

    /// Whether `peer`'s path for `prefix` is stale (graceful restart).
    pub fn is_stale(&self, prefix: &IpNet, peer: IpAddr) -> bool {
        let Ok(index) = self.index_of(peer) else {
            return false;
        };
        self.loc
            .get(prefix)
            .is_some_and(|d| d.paths().iter().any(|p| p.source == index && p.stale))
    }

    /// `peer`'s session went down gracefully (RFC 4724 helper): every route
    /// it announced stays, marked stale, until it announces it again or
    /// [`Rib::take_stale`] withdraws it. Returns how many are stale.
    pub fn mark_stale(&mut self, peer: IpAddr) -> Result<usize, RibError> {
        let index = self.index_of(peer)?;
        let mut marked = 0;
        for dest in self.loc.values_mut() {
            for path in dest.paths_mut() {
                if path.source == index {
                    path.stale = true;
                    marked += 1;
                }
            }
        }
        let slot = self.slot_mut(index);
        slot.stale = marked;
        for p in std::mem::take(&mut slot.rejected).keys() {
            slot.rejected_stale.get_or_insert_with(p, || ());
        }
        Ok(marked + slot.rejected_stale.len())
    }

    /// Withdraws `peer`'s still-stale routes of `family` (or all); returns
    /// the prefixes (rejected ones included) with the RIB's output.
    pub fn take_stale(
        &mut self,
        peer: IpAddr,
        family: Option<Family>,
    ) -> Result<(Vec<IpNet>, RibOutput), RibError> {
        let index = self.index_of(peer)?;
        let wanted = |p: &IpNet| match family {
            None => true,
            Some(f) => {
                (f == Family::IPV4_UNICAST && matches!(p, IpNet::V4(_)))
                    || (f == Family::IPV6_UNICAST && matches!(p, IpNet::V6(_)))
            }
        };
        let mut stale: Vec<IpNet> = self
            .loc
            .iter()
            .filter(|(p, d)| {
                wanted(p)
                    && d.paths()
                        .iter()
                        .any(|path| path.source == index && path.stale)
            })
            .map(|(p, _)| p)
            .collect();
        let slot = self.slot_mut(index);
        let rejected: Vec<IpNet> = slot.rejected_stale.keys().filter(wanted).collect();
        for p in &rejected {
            slot.rejected_stale.remove(p);
        }
        let output = self.withdraw(peer, &stale)?;
        stale.extend(rejected);
        stale.sort_unstable();
        Ok((stale, output))
    }

    /// `peer`'s graceful restart time ran out (or it had none) and it
    /// negotiated long-lived graceful restart for `families` (RFC 9494
    /// §4.2): its stale routes of those families carry `LLGR_STALE` from
    /// now on, which makes them least preferred and keeps them from peers
    /// without LLGR; those marked `NO_LLGR` are withdrawn. They stay stale
    /// (a new announcement, End-of-RIB or [`Rib::take_stale`] ends that).
    /// Returns how many are kept.
    pub fn enter_long_lived_stale(
        &mut self,
        peer: IpAddr,
        families: &[Family],
    ) -> Result<(usize, RibOutput), RibError> {
        use crate::packet::Community;
        let index = self.index_of(peer)?;
        let in_families = |p: &IpNet| {
            families.iter().any(|f| {
                (*f == Family::IPV4_UNICAST && matches!(p, IpNet::V4(_)))
                    || (*f == Family::IPV6_UNICAST && matches!(p, IpNet::V6(_)))
            })
        };
        let stale: Vec<(IpNet, Arc<PathAttrs>)> = self
            .loc
            .iter()
            .filter(|(p, _)| in_families(p))
            .filter_map(|(p, d)| {
                d.paths()
                    .iter()
                    .find(|path| path.source == index && path.stale)
                    .map(|path| (p, path.attrs.clone()))
            })
            .collect();
        let mut output = RibOutput::default();
        let mut memo = ExportMemo::new();
        let mut kept = 0;
        let mut marked: Vec<(*const PathAttrs, Arc<PathAttrs>)> = Vec::new();
        for (prefix, attrs) in stale {
            let communities = &attrs.attributes.communities;
            if communities.contains(&Community::NO_LLGR) {
                self.change_path(prefix, index, None, &mut memo, &mut output, None);
                continue;
            }
            kept += 1;
            if communities.contains(&Community::LLGR_STALE) {
                continue;
            }
            let new = match marked.iter().find(|(old, _)| *old == Arc::as_ptr(&attrs)) {
                Some((_, new)) => new.clone(),
                None => {
                    let mut new = PathAttrs::clone(&attrs);
                    new.attributes.communities.push(Community::LLGR_STALE);
                    let new = self.interner.intern(new);
                    marked.push((Arc::as_ptr(&attrs), new.clone()));
                    new
                }
            };
            self.change_path(prefix, index, Some(new), &mut memo, &mut output, None);
            // Replacing the path made it fresh; it is still stale.
            if let Some(dest) = self.loc.get_mut(&prefix) {
                if let Some(path) = dest.paths_mut().iter_mut().find(|p| p.source == index) {
                    path.stale = true;
                    self.slot_mut(index).stale += 1;
                }
            }
        }
        drop(memo);
        self.finish(&mut output);
        Ok((kept, output))
    }

    /// Our connected networks and their interfaces changed (what BGPFilter
    /// `interface` rules see from now on; routes already in are not
    /// judged again).
    pub fn set_connected(&mut self, connected: Vec<(IpNet, String)>) {
        if *self.config.connected != connected {
            self.config.connected = Arc::new(connected);
        }
    }

    /// The peer sent ROUTE-REFRESH: its next [`Rib::take_updates`] announces
    /// everything it should have again.
    pub fn refresh(&mut self, peer: IpAddr) -> Result<RibOutput, RibError> {
        let index = self.index_of(peer)?;
        self.slot_mut(index).out.request_resend();
        let mut output = RibOutput::default();
        self.finish(&mut output);
        Ok(output)
    }

    /// A session came up: register the peer and queue the whole Loc-RIB
    /// for it, as its export rules allow.
    pub fn peer_up(&mut self, config: PeerConfig) -> Result<RibOutput, RibError> {
        let address = config.address;
        if self.by_address.contains_key(&address) {
            return Err(RibError::DuplicatePeer(address));
        }
        let _span = debug_span!("rib_peer_up", peer = %address).entered();
        let slot = PeerSlot {
            ibgp: config.asn == self.config.local_asn,
            config,
            // Waits for the whole table at its first flush, if there is one.
            out: if self.loc.is_empty() {
                AdjRibOut::up_to_date()
            } else {
                AdjRibOut::default()
            },
            accepted: 0,
            stale: 0,
            rejected: PrefixMap::default(),
            rejected_stale: PrefixMap::default(),
        };
        let index = match self.peers.iter().position(Option::is_none) {
            Some(free) => {
                self.peers[free] = Some(slot);
                free
            }
            None => {
                self.peers.push(Some(slot));
                self.peers.len() - 1
            }
        };
        let index = u32::try_from(index).unwrap_or(LOCAL - 1);
        self.by_address.insert(address, index);
        debug!(routes = self.loc.len(), "initial table queued");
        let mut output = RibOutput::default();
        self.finish(&mut output);
        Ok(output)
    }

    /// Replaces the export filter of `peer`'s session in place (no reset):
    /// its next [`Rib::take_updates`] withdraws what the new filter holds
    /// back and announces what it now lets through.
    pub fn set_export_filter(
        &mut self,
        peer: IpAddr,
        filter: Option<ExportPrefixes>,
    ) -> Result<RibOutput, RibError> {
        let index = self.index_of(peer)?;
        let rules = self.slot(index).config.export_filter.clone();
        self.set_export_policy(peer, filter, rules)
    }

    /// Replaces what goes to `peer` (its export prefixes and export rules)
    /// in place, as [`Rib::set_export_filter`].
    pub fn set_export_policy(
        &mut self,
        peer: IpAddr,
        export_only: Option<ExportPrefixes>,
        export_filter: Option<Arc<RouteFilter>>,
    ) -> Result<RibOutput, RibError> {
        let index = self.index_of(peer)?;
        let old = self.slot(index).config.clone();
        if old.export_only == export_only && old.export_filter == export_filter {
            return Ok(RibOutput::default());
        }
        let new = PeerConfig {
            export_only,
            export_filter,
            ..old.clone()
        };
        let mut memo = ExportMemo::new();
        let mut had = Vec::new();
        if !self.slot(index).out.is_initial() {
            for (prefix, dest) in self.loc.iter() {
                if dest.multipath() == 0 {
                    continue;
                }
                let best = &dest.paths()[0];
                let learned = best.source != LOCAL;
                let iface = self.config.interface_of(&best.attrs);
                let attrs = &best.attrs.attributes;
                if old.exports(&prefix, learned, attrs, iface)
                    == new.exports(&prefix, learned, attrs, iface)
                {
                    continue;
                }
                let before = if best.source == index {
                    None
                } else {
                    export_with(
                        &self.config,
                        &self.peers,
                        &mut self.interner,
                        &mut memo,
                        (best.source, &best.attrs),
                        index,
                        &prefix,
                    )
                };
                if let Some(slot) = self.loc.slot(&prefix) {
                    had.push((prefix, slot, before));
                }
            }
        }
        drop(memo);
        let out = &mut self.slot_mut(index).out;
        for (prefix, slot, before) in had {
            out.record(prefix, slot, before);
        }
        self.slot_mut(index).config = new;
        let mut output = RibOutput::default();
        self.finish(&mut output);
        Ok(output)
    }

    /// Replaces the import rules of `peer`'s session in place: paths in
    /// its Adj-RIB-In the new rules reject leave at once. Says whether
    /// prefixes the old rules (or import checks) kept out now need the
    /// peer to send them again (a ROUTE-REFRESH): their attributes were
    /// not kept. So do routes when the old or the new rules change what
    /// they accept (`operations`): what is stored is what the old rules
    /// made of the route, and the new ones must start from what was sent
    /// (the refreshed routes replace the stored ones; until then they stay
    /// as they are, also those the old rules changed and the new ones
    /// would reject).
    pub fn set_import_filter(
        &mut self,
        peer: IpAddr,
        filter: Option<Arc<RouteFilter>>,
    ) -> Result<(RibOutput, bool), RibError> {
        let index = self.index_of(peer)?;
        if self.slot(index).config.import_filter == filter {
            return Ok((RibOutput::default(), false));
        }
        let changes =
            |f: &Option<Arc<RouteFilter>>| f.as_deref().is_some_and(RouteFilter::has_operations);
        let old_changed = changes(&self.slot(index).config.import_filter);
        let new_changes = changes(&filter);
        self.slot_mut(index).config.import_filter = filter;
        let slot = self.slot(index);
        let config = &self.config;
        let now_rejected: Vec<IpNet> = if old_changed {
            Vec::new()
        } else {
            self.loc
                .iter()
                .filter(|(prefix, dest)| {
                    dest.paths().iter().any(|p| {
                        p.source == index
                            && !slot.config.imports(
                                prefix,
                                &p.attrs.attributes,
                                config.interface_of(&p.attrs),
                            )
                    })
                })
                .map(|(prefix, _)| prefix)
                .collect()
        };
        let need_refresh = !slot.rejected.is_empty() || old_changed || new_changes;
        let mut output = RibOutput::default();
        let mut memo = ExportMemo::new();
        for prefix in &now_rejected {
            self.change_path(*prefix, index, None, &mut memo, &mut output, None);
        }
        drop(memo);
        let slot = self.slot_mut(index);
        for prefix in &now_rejected {
            slot.rejected.get_or_insert_with(*prefix, || ());
        }
        output
            .rejected
            .extend(now_rejected.iter().map(|p| (*p, ImportReject::Filtered)));
        self.finish(&mut output);
        Ok((output, need_refresh))
    }

    /// The session went down: drop its Adj-RIB-In and Adj-RIB-Out and
    /// re-run the decision for every prefix it had a path for.
    pub fn peer_down(&mut self, peer: IpAddr) -> Result<RibOutput, RibError> {
        let index = self.index_of(peer)?;
        let _span = debug_span!("rib_peer_down", %peer).entered();
        let affected: Vec<IpNet> = self
            .loc
            .iter()
            .filter(|(_, d)| d.paths().iter().any(|p| p.source == index))
            .map(|(p, _)| p)
            .collect();
        // The slot stays until the paths are gone, so exports of the
        // remaining routes still know who is who; its Adj-RIB-Out is dropped.
        let mut output = RibOutput::default();
        let mut memo = ExportMemo::new();
        self.slot_mut(index).out = AdjRibOut::default();
        for prefix in affected {
            self.change_path(prefix, index, None, &mut memo, &mut output, Some(index));
        }
        self.peers[index as usize] = None;
        self.by_address.remove(&peer);
        debug!(withdrawn = output.best_changes.len(), "peer removed");
        self.finish(&mut output);
        Ok(output)
    }

    /// Routes announced by `peer` with one attribute set (one UPDATE).
    pub fn announce(
        &mut self,
        peer: IpAddr,
        prefixes: &[IpNet],
        attrs: PathAttrs,
    ) -> Result<RibOutput, RibError> {
        let index = self.index_of(peer)?;
        let _span = debug_span!("rib_announce", %peer, prefixes = prefixes.len()).entered();
        let mut output = RibOutput::default();
        // The import filter first, per prefix: what it rejects is counted
        // as received and kept out (a path it had goes).
        let iface = self.config.interface_of(&attrs).map(str::to_owned);
        let iface = iface.as_deref();
        let (prefixes, filtered): (Vec<IpNet>, Vec<IpNet>) = prefixes
            .iter()
            .map(IpNet::trunc)
            .partition(|p| self.slot(index).config.imports(p, &attrs.attributes, iface));
        if !filtered.is_empty() {
            debug!(
                filtered = filtered.len(),
                "announcements rejected by the import filter"
            );
            output
                .rejected
                .extend(filtered.iter().map(|p| (*p, ImportReject::Filtered)));
            let slot = self.slot_mut(index);
            for p in &filtered {
                slot.rejected_stale.remove(p);
                slot.rejected.get_or_insert_with(*p, || ());
            }
            let mut memo = ExportMemo::new();
            for p in &filtered {
                self.change_path(*p, index, None, &mut memo, &mut output, None);
            }
        }
        // Accepting rules that change the route (Calico's `operations`),
        // judged on the attributes as received, like the verdicts above.
        let filter = self.slot(index).config.import_filter.clone();
        let changed_by: Vec<Option<usize>> = match filter.as_deref() {
            Some(f) if f.has_operations() => prefixes
                .iter()
                .map(|p| match f.first_match(p, true, &attrs.attributes, iface) {
                    Some((i, r)) if !r.operations.is_empty() => Some(i),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let prefixes = &prefixes[..];
        let slot = self.slot(index);
        let imported = policy::import(&self.config, slot.ibgp, slot.config.allow_local_as, attrs);
        let attrs = match imported {
            Ok(attrs) => {
                let slot = self.slot_mut(index);
                if !slot.rejected.is_empty() || !slot.rejected_stale.is_empty() {
                    for p in prefixes {
                        slot.rejected.remove(&p.trunc());
                        slot.rejected_stale.remove(&p.trunc());
                    }
                }
                Some(self.interner.intern(attrs))
            }
            Err(reason) => {
                debug!(?reason, "announcement rejected by import rules");
                output
                    .rejected
                    .extend(prefixes.iter().map(|p| (p.trunc(), reason)));
                let slot = self.slot_mut(index);
                for p in prefixes {
                    slot.rejected_stale.remove(&p.trunc());
                    slot.rejected.get_or_insert_with(p.trunc(), || ());
                }
                None
            }
        };
        let mut memo = ExportMemo::new();
        let mut changed: Vec<((bool, usize), Arc<PathAttrs>)> = Vec::new();
        for (i, prefix) in prefixes.iter().enumerate() {
            let attrs = match (&attrs, changed_by.get(i).copied().flatten(), &filter) {
                (Some(base), Some(rule), Some(f)) => {
                    let key = (prefix.addr().is_ipv4(), rule);
                    let done = changed
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, a)| a.clone());
                    Some(done.unwrap_or_else(|| {
                        let rules = if prefix.addr().is_ipv4() {
                            &f.v4
                        } else {
                            &f.v6
                        };
                        let mut new = PathAttrs::clone(base);
                        RouteOperation::apply_all(&rules[rule].operations, &mut new.attributes);
                        let new = self.interner.intern(new);
                        changed.push((key, new.clone()));
                        new
                    }))
                }
                _ => attrs.clone(),
            };
            self.change_path(prefix.trunc(), index, attrs, &mut memo, &mut output, None);
        }
        self.finish(&mut output);
        Ok(output)
    }

    /// Apply one decoded UPDATE from `peer`: withdrawals (classic and
    /// MP_UNREACH_NLRI), then announcements (classic NLRI with NEXT_HOP, and
    /// MP_REACH_NLRI with its next hop). Under RFC 7606 treat-as-withdraw the
    /// announced prefixes are withdrawn instead. Families other than IPv4 and
    /// IPv6 unicast are ignored; an End-of-RIB marker changes nothing.
    pub fn apply_update(
        &mut self,
        peer: IpAddr,
        update: Update,
        outcome: &UpdateOutcome,
    ) -> Result<RibOutput, RibError> {
        self.index_of(peer)?;
        let unicast = |f: Family| f == Family::IPV4_UNICAST || f == Family::IPV6_UNICAST;
        let prefixes = |nlri: &[Nlri]| nlri.iter().map(|n| n.prefix).collect::<Vec<_>>();
        let mut withdrawn = prefixes(&update.withdrawn);
        if let Some(unreach) = update.mp_unreach.as_ref().filter(|u| unicast(u.family)) {
            withdrawn.extend(prefixes(&unreach.withdrawn));
        }
        let mut output = RibOutput::default();
        let mut merge = |out: RibOutput| {
            output.best_changes.extend(out.best_changes);
            output.rejected.extend(out.rejected);
            // Each operation lists every peer with pending routes.
            output.peers_pending = out.peers_pending;
        };
        if !withdrawn.is_empty() {
            merge(self.withdraw(peer, &withdrawn)?);
        }
        let classic = prefixes(&update.nlri);
        let reach = update.mp_reach.filter(|r| unicast(r.family));
        if outcome.is_treat_as_withdraw() {
            let mut gone = classic;
            gone.extend(reach.iter().flat_map(|r| prefixes(&r.nlri)));
            if !gone.is_empty() {
                merge(self.withdraw(peer, &gone)?);
            }
            return Ok(output);
        }
        if !classic.is_empty() {
            let attrs = PathAttrs::from_update(update.attributes.clone(), None);
            merge(self.announce(peer, &classic, attrs)?);
        }
        if let Some(reach) = reach.filter(|r| !r.nlri.is_empty()) {
            let attrs = PathAttrs::from_update(update.attributes, Some(reach.next_hop));
            merge(self.announce(peer, &prefixes(&reach.nlri), attrs)?);
        }
        Ok(output)
    }

    /// Routes withdrawn by `peer`.
    pub fn withdraw(&mut self, peer: IpAddr, prefixes: &[IpNet]) -> Result<RibOutput, RibError> {
        let index = self.index_of(peer)?;
        let _span = debug_span!("rib_withdraw", %peer, prefixes = prefixes.len()).entered();
        let slot = self.slot_mut(index);
        if !slot.rejected.is_empty() || !slot.rejected_stale.is_empty() {
            for p in prefixes {
                slot.rejected.remove(&p.trunc());
                slot.rejected_stale.remove(&p.trunc());
            }
        }
        let mut output = RibOutput::default();
        let mut memo = ExportMemo::new();
        for prefix in prefixes {
            self.change_path(prefix.trunc(), index, None, &mut memo, &mut output, None);
        }
        self.finish(&mut output);
        Ok(output)
    }

    /// Originate `prefixes` locally with `attrs` (e.g. this node's IPAM
    /// blocks). A `None` next hop becomes the session address on export.
    pub fn originate(&mut self, prefixes: &[IpNet], mut attrs: PathAttrs) -> RibOutput {
        let _span = debug_span!("rib_originate", prefixes = prefixes.len()).entered();
        if let Some(classic) = attrs.attributes.next_hop.take() {
            attrs.next_hop = attrs.next_hop.or(Some(NextHop::V4(classic)));
        }
        let attrs = self.interner.intern(attrs);
        let mut output = RibOutput::default();
        let mut memo = ExportMemo::new();
        for prefix in prefixes {
            self.change_path(
                prefix.trunc(),
                LOCAL,
                Some(Arc::clone(&attrs)),
                &mut memo,
                &mut output,
                None,
            );
        }
        self.finish(&mut output);
        output
    }

    /// Stop originating `prefixes`.
    pub fn withdraw_local(&mut self, prefixes: &[IpNet]) -> RibOutput {
        let mut output = RibOutput::default();
        let mut memo = ExportMemo::new();
        for prefix in prefixes {
            self.change_path(prefix.trunc(), LOCAL, None, &mut memo, &mut output, None);
        }
        self.finish(&mut output);
        output
    }

    /// Re-run the decision process for every prefix, e.g. after the IGP
    /// costs changed.
    pub fn reevaluate(&mut self) -> RibOutput {
        let prefixes: Vec<IpNet> = self.loc.keys().collect();
        let mut output = RibOutput::default();
        let mut memo = ExportMemo::new();
        for prefix in prefixes {
            self.rerun(prefix, &mut memo, &mut output);
        }
        self.finish(&mut output);
        output
    }

    /// Drop attribute sets no route uses any more. Also runs on its own,
    /// amortised, after operations.
    pub fn collect_garbage(&mut self) {
        self.interner.collect();
    }
}

fn source_of(peers: &[Option<PeerSlot>], index: u32) -> Source<'_> {
    if index == LOCAL {
        return Source::Local;
    }
    let slot = slot_of(peers, index);
    Source::Peer {
        index,
        peer: &slot.config,
        ibgp: slot.ibgp,
    }
}

fn slot_of(peers: &[Option<PeerSlot>], index: u32) -> &PeerSlot {
    match peers.get(index as usize) {
        Some(Some(slot)) => slot,
        _ => unreachable_slot(index),
    }
}

/// The export of a route (`source`, `attrs`) to peer `to`, interned and
/// memoised per operation. A free function over the RIB's fields so it can
/// run while the prefix table is borrowed.
fn export_with(
    config: &RibConfig,
    peers: &[Option<PeerSlot>],
    interner: &mut AttrInterner,
    memo: &mut ExportMemo,
    (source, attrs): (u32, &Arc<PathAttrs>),
    to: u32,
    prefix: &IpNet,
) -> Option<Arc<PathAttrs>> {
    let v6 = matches!(prefix, IpNet::V6(_));
    let to_slot = slot_of(peers, to);
    // Per prefix, so before the memo (which is per attribute set).
    let iface = config.interface_of(attrs);
    if !to_slot
        .config
        .exports(prefix, source != LOCAL, &attrs.attributes, iface)
    {
        return None;
    }
    // RFC 9494 §4.3: a long-lived stale route only to peers that know
    // what LLGR_STALE means.
    if !to_slot.config.long_lived
        && attrs
            .attributes
            .communities
            .contains(&crate::packet::Community::LLGR_STALE)
    {
        return None;
    }
    // An accepting rule's operations (Calico's BGPFilter `operations`)
    // change the route first, as BIRD's export filter runs before BGP's
    // own export (which then prepends our AS toward an eBGP peer).
    let rule = to_slot.config.export_filter.as_deref().and_then(|f| {
        f.first_match(prefix, source != LOCAL, &attrs.attributes, iface)
            .filter(|(_, r)| r.verdict == FilterVerdict::Accept && !r.operations.is_empty())
            .map(|(i, r)| (i, &r.operations))
    });
    let key = (
        Arc::as_ptr(attrs),
        source,
        to,
        v6,
        rule.map_or(usize::MAX, |(i, _)| i),
    );
    if let Some(done) = memo.get(&key) {
        return done.clone();
    }
    let changed = rule.map(|(_, ops)| {
        let mut new = PathAttrs::clone(attrs);
        RouteOperation::apply_all(ops, &mut new.attributes);
        Arc::new(new)
    });
    let exported = policy::export(
        config,
        source_of(peers, source),
        changed.as_ref().unwrap_or(attrs),
        to,
        &to_slot.config,
        to_slot.ibgp,
        v6,
    );
    let exported = exported.map(|a| {
        if a == **attrs {
            interner.intern_arc(attrs)
        } else {
            interner.intern(a)
        }
    });
    memo.insert(key, exported.clone());
    exported
}

#[cold]
fn unreachable_slot(index: u32) -> ! {
    // An index stored in the RIB always names a live slot; reaching this is a
    // bug in this module, not something input can cause.
    panic!("RIB invariant broken: no peer slot {index}")
}

//! The fixed import and export rules of RFC 4271 and RFC 4456, as pure
//! functions of a route's attributes and the two peers involved.
//!
//! Import (from a peer into its Adj-RIB-In):
//! * eBGP: a path containing our own AS is a loop and is rejected; LOCAL_PREF,
//!   ORIGINATOR_ID and CLUSTER_LIST are stripped (they never cross an AS
//!   border) and LOCAL_PREF is set to the configured default.
//! * iBGP: a route carrying our router id as ORIGINATOR_ID, or our cluster id
//!   in CLUSTER_LIST, went round a reflection loop and is rejected.
//! * A route without a next hop is rejected (treat-as-withdraw, RFC 7606).
//!
//! Export (from the Loc-RIB best route to one peer):
//! * never back to the peer it came from;
//! * iBGP-learned to iBGP only when we reflect: from a client to every peer,
//!   from a non-client to clients only; reflection sets ORIGINATOR_ID when
//!   absent and prepends our cluster id to CLUSTER_LIST, and keeps the next hop;
//! * to eBGP: prepend our AS, next hop self, strip LOCAL_PREF, ORIGINATOR_ID,
//!   CLUSTER_LIST, and MED unless the route is our own;
//! * to iBGP: LOCAL_PREF always present; next hop self for our own routes that
//!   have none, and for eBGP-learned routes when the peer asks for it.
//!
//! A route whose next hop would have to be ours but we have no local address
//! of that family for the session is not exported. Exported routes always
//! carry ORIGIN and AS_PATH (a local route without ORIGIN gets INCOMPLETE).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::attrs::PathAttrs;
use super::{PeerConfig, RibConfig};
use crate::packet::types::NextHop;
use crate::packet::{AsPath, Origin};

/// What export needs to know about where a route came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    Local,
    Peer {
        index: u32,
        peer: &'a PeerConfig,
        ibgp: bool,
    },
}

/// Why an announced route was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportReject {
    /// Our AS is in the AS_PATH of an eBGP route.
    AsPathLoop,
    /// ORIGINATOR_ID is our router id.
    OriginatorLoop,
    /// CLUSTER_LIST contains our cluster id.
    ClusterLoop,
    MissingNextHop,
    /// The peer's import filter (BGPFilter) rejected it.
    Filtered,
}

pub(crate) fn import(
    cfg: &RibConfig,
    ibgp: bool,
    allow_local_as: u8,
    mut attrs: PathAttrs,
) -> Result<PathAttrs, ImportReject> {
    // Keep the normal form: the next hop lives outside `attributes` (the
    // MP_REACH next hop, when both are given, is the one that counts).
    if let Some(classic) = attrs.attributes.next_hop.take() {
        attrs.next_hop.get_or_insert(NextHop::V4(classic));
    }
    if attrs.next_hop.is_none() {
        return Err(ImportReject::MissingNextHop);
    }
    let a = &mut attrs.attributes;
    if ibgp {
        if a.originator_id == Some(cfg.router_id) {
            return Err(ImportReject::OriginatorLoop);
        }
        if cfg
            .cluster_id
            .is_some_and(|id| a.cluster_list.contains(&id))
        {
            return Err(ImportReject::ClusterLoop);
        }
    } else {
        if a.as_path
            .as_ref()
            .is_some_and(|p| p.count(cfg.local_asn) > usize::from(allow_local_as))
        {
            return Err(ImportReject::AsPathLoop);
        }
        a.local_pref = Some(cfg.default_local_pref);
        a.originator_id = None;
        a.cluster_list.clear();
    }
    Ok(attrs)
}

/// The attributes to advertise `attrs` (from `source`) with to peer `to`
/// (at slot `to_index`), or `None` if it must not be advertised there.
pub(crate) fn export(
    cfg: &RibConfig,
    source: Source<'_>,
    attrs: &PathAttrs,
    to_index: u32,
    to: &PeerConfig,
    to_ibgp: bool,
    prefix_is_v6: bool,
) -> Option<PathAttrs> {
    let self_next_hop = || -> Option<NextHop> {
        if prefix_is_v6 {
            match (to.local_v6, to.local_v6_link_local) {
                (Some(global), link_local) => Some(NextHop::V6 { global, link_local }),
                // Link-local only: `::` as global, as BIRD does.
                (None, Some(ll)) => Some(NextHop::V6 {
                    global: Ipv6Addr::UNSPECIFIED,
                    link_local: Some(ll),
                }),
                (None, None) => None,
            }
        } else {
            to.local_v4.map(NextHop::V4)
        }
    };
    let default_pref = cfg.default_local_pref;
    let mut out = attrs.clone();
    let a = &mut out.attributes;
    // ORIGIN and AS_PATH are mandatory on the wire; a local route may lack
    // them (the decision process ranks a missing ORIGIN as INCOMPLETE).
    a.origin.get_or_insert(Origin::Incomplete);
    a.as_path.get_or_insert_with(AsPath::default);
    match source {
        Source::Peer { index, .. } if index == to_index => return None,
        Source::Peer {
            peer: from,
            ibgp: true,
            ..
        } if to_ibgp => {
            let cluster_id = cfg.cluster_id?;
            if !from.rr_client && !to.rr_client {
                return None;
            }
            if a.originator_id.is_none() {
                a.originator_id = Some(from.router_id);
            }
            a.cluster_list.insert(0, cluster_id);
            a.local_pref = Some(a.local_pref.unwrap_or(default_pref));
            // RFC 4456 §10: a reflector does not change the next hop,
            // unless this peer asks for ours on everything.
            if to.next_hop_self_always {
                out.next_hop = Some(self_next_hop()?);
            }
            return Some(out);
        }
        _ => {}
    }
    let local = matches!(source, Source::Local);
    if to_ibgp {
        a.local_pref = Some(a.local_pref.unwrap_or(default_pref));
        let learned_ebgp = matches!(source, Source::Peer { ibgp: false, .. });
        if out.next_hop.is_none() || (learned_ebgp && to.next_hop_self) || to.next_hop_self_always {
            out.next_hop = Some(self_next_hop()?);
        }
    } else {
        a.as_path
            .get_or_insert_with(AsPath::default)
            .prepend(cfg.local_asn);
        a.local_pref = None;
        a.originator_id = None;
        a.cluster_list.clear();
        if !local {
            a.med = None;
        }
        if !(to.next_hop_keep && out.next_hop.is_some()) {
            out.next_hop = Some(self_next_hop()?);
        }
    }
    Some(out)
}

/// The identifier step 8 of the decision compares: ORIGINATOR_ID if present
/// (RFC 4456 §9), else the BGP identifier of the peer (ours for local routes).
pub(crate) fn decision_id(cfg: &RibConfig, source: Source<'_>, attrs: &PathAttrs) -> Ipv4Addr {
    attrs.attributes.originator_id.unwrap_or(match source {
        Source::Local => cfg.router_id,
        Source::Peer { peer, .. } => peer.router_id,
    })
}

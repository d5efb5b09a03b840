//! Session parameters from the two OPEN messages (RFC 4271 §4.2 and §6.2,
//! RFC 5492, RFC 4760 §8, RFC 6793, RFC 7911 §4, RFC 8654, RFC 6286).
//!
//! [`negotiate`] is pure: given our OPEN, the peer's OPEN and the AS we
//! expect the peer to have, it returns either the [`Negotiated`] parameters
//! (and from them the codec contexts) or the error whose
//! [`NegotiationError::to_notification`] must be sent before closing.
//!
//! Rules:
//! * peer hold time 1 or 2 → 2/6; negotiated hold = min(ours, peer's);
//!   keepalive = hold / 3 (0 when hold is 0: no keepalives);
//! * peer AS (from the 4-octet capability when present) ≠ expected → 2/2;
//! * peer BGP identifier 0.0.0.0, or equal to ours on iBGP → 2/3 (RFC 6286
//!   allows equal identifiers between different ASes);
//! * families: intersection of both sides' multiprotocol capabilities, where
//!   a side that sent none at all implies IPv4 unicast only;
//! * ADD-PATH per family: we receive path ids when we advertised receive and
//!   the peer send, and send them when we advertised send and the peer receive;
//! * 4-octet AS, route refresh, enhanced route refresh and extended message
//!   need both sides; the peer's graceful restart capability is reported.

use std::net::Ipv4Addr;

use super::context::{DecodeContext, EncodeContext, MAX_EXTENDED_MESSAGE_SIZE, MAX_MESSAGE_SIZE};
use super::error::DecodeError;
use super::notification::Notification;
use super::open::{capability_code, Capability, GracefulRestart, Open};
use super::types::Family;

/// Parameters both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Peer AS (32-bit).
    pub peer_asn: u32,
    /// Peer BGP identifier.
    pub peer_bgp_id: Ipv4Addr,
    /// Same AS on both sides.
    pub ibgp: bool,
    /// Hold time in seconds; 0 disables keepalives and the hold timer.
    pub hold_time: u16,
    /// Keepalive interval in seconds (hold / 3).
    pub keepalive_interval: u16,
    /// Both sides speak 4-octet AS.
    pub four_octet_as: bool,
    /// Families both sides enabled, sorted.
    pub families: Vec<Family>,
    /// Families where the peer sends us path identifiers.
    pub add_path_receive: Vec<Family>,
    /// Families where we send the peer path identifiers.
    pub add_path_send: Vec<Family>,
    /// Both sides support ROUTE-REFRESH.
    pub route_refresh: bool,
    /// Both sides support enhanced route refresh.
    pub enhanced_route_refresh: bool,
    /// Both sides support extended messages (65535 octets).
    pub extended_message: bool,
    /// The peer's graceful restart capability, if it sent one.
    pub peer_graceful_restart: Option<GracefulRestart>,
    /// Long-lived graceful restart (RFC 9494): the negotiated families
    /// both sides advertised it for, each with the smaller of the two
    /// non-zero stale times. Empty unless the peer also sent graceful
    /// restart, as RFC 9494 §3 requires of a sender.
    pub long_lived: Vec<(Family, u32)>,
}

impl Negotiated {
    /// Whether a family was negotiated.
    pub fn has_family(&self, family: Family) -> bool {
        self.families.contains(&family)
    }

    fn max_message_size(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_SIZE
        } else {
            MAX_MESSAGE_SIZE
        }
    }

    /// Context for decoding the peer's messages.
    pub fn decode_context(&self) -> DecodeContext {
        DecodeContext {
            four_octet_as: self.four_octet_as,
            add_path: self.add_path_receive.clone(),
            max_message_size: self.max_message_size(),
            ipv4_unicast_classic: self.has_family(Family::IPV4_UNICAST),
        }
    }

    /// Context for encoding messages to the peer.
    pub fn encode_context(&self) -> EncodeContext {
        EncodeContext {
            four_octet_as: self.four_octet_as,
            add_path: self.add_path_send.clone(),
            max_message_size: self.max_message_size(),
            ipv4_unicast_classic: self.has_family(Family::IPV4_UNICAST),
        }
    }
}

/// Why the session cannot be established; each maps to an OPEN error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// 2/2.
    #[error("bad peer AS {received}, expected {expected}")]
    BadPeerAs {
        /// AS the peer announced.
        received: u32,
        /// AS configured.
        expected: u32,
    },
    /// 2/3.
    #[error("bad BGP identifier {0}")]
    BadBgpId(Ipv4Addr),
    /// 2/6.
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
}

impl NegotiationError {
    /// The equivalent decode error (same code/subcode).
    pub fn as_decode_error(&self) -> DecodeError {
        match *self {
            NegotiationError::BadPeerAs { received, expected } => {
                DecodeError::BadPeerAs { received, expected }
            }
            NegotiationError::BadBgpId(bgp_id) => DecodeError::BadBgpId { bgp_id },
            NegotiationError::UnacceptableHoldTime(hold_time) => {
                DecodeError::UnacceptableHoldTime { hold_time }
            }
        }
    }

    /// The NOTIFICATION to send.
    pub fn to_notification(&self) -> Notification {
        self.as_decode_error().to_notification()
    }
}

fn families_of(open: &Open) -> Vec<Family> {
    let mp = open.multiprotocol_families();
    if mp.is_empty() {
        // RFC 4760 §8: a speaker without the capability does IPv4 unicast.
        vec![Family::IPV4_UNICAST]
    } else {
        mp
    }
}

fn add_path_modes(open: &Open) -> Vec<(Family, super::open::AddPathMode)> {
    open.capabilities
        .iter()
        .filter_map(|c| match c {
            Capability::AddPath(list) => Some(list.iter().map(|f| (f.family, f.mode))),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Computes the session parameters, or the error to send as NOTIFICATION.
pub fn negotiate(
    local: &Open,
    peer: &Open,
    expected_peer_asn: u32,
) -> Result<Negotiated, NegotiationError> {
    if peer.hold_time == 1 || peer.hold_time == 2 {
        return Err(NegotiationError::UnacceptableHoldTime(peer.hold_time));
    }
    if peer.asn != expected_peer_asn {
        return Err(NegotiationError::BadPeerAs {
            received: peer.asn,
            expected: expected_peer_asn,
        });
    }
    let ibgp = local.asn == peer.asn;
    if peer.bgp_id == Ipv4Addr::UNSPECIFIED || (ibgp && peer.bgp_id == local.bgp_id) {
        return Err(NegotiationError::BadBgpId(peer.bgp_id));
    }
    let hold_time = local.hold_time.min(peer.hold_time);
    if hold_time == 1 || hold_time == 2 {
        // Only reachable with a misconfigured local hold time.
        return Err(NegotiationError::UnacceptableHoldTime(hold_time));
    }

    let peer_families = families_of(peer);
    let mut families: Vec<Family> = families_of(local)
        .into_iter()
        .filter(|f| peer_families.contains(f))
        .collect();
    families.sort();
    families.dedup();

    let local_ap = add_path_modes(local);
    let peer_ap = add_path_modes(peer);
    let mut add_path_receive = Vec::new();
    let mut add_path_send = Vec::new();
    for family in &families {
        let ours = local_ap.iter().find(|(f, _)| f == family).map(|(_, m)| *m);
        let theirs = peer_ap.iter().find(|(f, _)| f == family).map(|(_, m)| *m);
        if let (Some(ours), Some(theirs)) = (ours, theirs) {
            if ours.receives() && theirs.sends() {
                add_path_receive.push(*family);
            }
            if ours.sends() && theirs.receives() {
                add_path_send.push(*family);
            }
        }
    }

    let both = |code: u8| local.has_capability(code) && peer.has_capability(code);
    let long_lived = match (
        local.long_lived_graceful_restart(),
        peer.long_lived_graceful_restart(),
        peer.has_capability(capability_code::GRACEFUL_RESTART),
    ) {
        (Some(ours), Some(theirs), true) => families
            .iter()
            .filter_map(|family| {
                let ours = ours.iter().find(|f| f.family == *family)?.stale_time;
                let theirs = theirs.iter().find(|f| f.family == *family)?.stale_time;
                let time = ours.min(theirs);
                (time > 0).then_some((*family, time))
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Negotiated {
        peer_asn: peer.asn,
        peer_bgp_id: peer.bgp_id,
        ibgp,
        hold_time,
        keepalive_interval: hold_time / 3,
        four_octet_as: local.four_octet_as().is_some() && peer.four_octet_as().is_some(),
        families,
        add_path_receive,
        add_path_send,
        route_refresh: both(capability_code::ROUTE_REFRESH),
        enhanced_route_refresh: both(capability_code::ENHANCED_ROUTE_REFRESH),
        extended_message: both(capability_code::EXTENDED_MESSAGE),
        peer_graceful_restart: peer.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr.clone()),
            _ => None,
        }),
        long_lived,
    })
}

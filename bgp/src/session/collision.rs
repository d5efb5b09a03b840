//! Connection collision detection (RFC 4271 §6.8), pure: which of two
//! connections to the same neighbour survives. It spans two connections,
//! so it belongs to the session layer above the per-connection FSM.

use std::net::Ipv4Addr;

use crate::fsm::State;

/// Which transport connection an end of a collision is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionOrigin {
    /// We initiated it (outgoing).
    Local,
    /// The peer initiated it (incoming).
    Remote,
}

/// What collision detection decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollisionResolution {
    /// No collision: both may proceed.
    NoCollision,
    /// Drop the connection that already existed (feed it
    /// [`Event::OpenCollisionDump`](crate::fsm::Event::OpenCollisionDump)) and continue with the new one.
    CloseExisting,
    /// Drop the newly reporting connection (Cease/7) and keep the existing one.
    CloseNew,
}

/// RFC 4271 §6.8 connection collision detection, run when an OPEN arrives on
/// connection `new` while connection `existing` to the same peer is in
/// `existing_state`.
///
/// A collision exists only if the existing connection is in OpenConfirm or
/// Established, or in OpenSent with the peer's identifier already known
/// (`existing_peer_id_known`). Against Established the new connection is
/// dropped unless `detect_in_established` (CollisionDetectEstablishedState).
/// Otherwise the identifiers are compared as unsigned integers: if ours is
/// lower we keep the connection the peer initiated, else the one we initiated.
/// Two connections with the same origin cannot be told apart by the rule; we
/// keep the existing one.
pub fn resolve_collision(
    local_id: Ipv4Addr,
    remote_id: Ipv4Addr,
    existing_state: State,
    existing_peer_id_known: bool,
    existing_origin: ConnectionOrigin,
    new_origin: ConnectionOrigin,
    detect_in_established: bool,
) -> CollisionResolution {
    match existing_state {
        State::Idle | State::Connect | State::Active => return CollisionResolution::NoCollision,
        State::OpenSent if !existing_peer_id_known => return CollisionResolution::NoCollision,
        State::Established if !detect_in_established => return CollisionResolution::CloseNew,
        _ => {}
    }
    if existing_origin == new_origin {
        return CollisionResolution::CloseNew;
    }
    let keep = if u32::from(local_id) < u32::from(remote_id) {
        ConnectionOrigin::Remote
    } else {
        ConnectionOrigin::Local
    };
    if keep == existing_origin {
        CollisionResolution::CloseNew
    } else {
        CollisionResolution::CloseExisting
    }
}

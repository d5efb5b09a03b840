//! The speaker's configuration checks and its declarative peer set, pure:
//! what is refused before anything starts, and how a wanted peer set turns
//! into peers to add, restart and remove (the core task executes the plan).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{PeerConfig, SpeakerConfig, SpeakerError};

pub(super) fn validate_speaker(config: &SpeakerConfig) -> Result<(), SpeakerError> {
    if config.router_id.is_unspecified() {
        return Err(SpeakerError::InvalidConfig(
            "router id 0.0.0.0 is not a valid BGP identifier".into(),
        ));
    }
    if config.local_asn == 0 {
        return Err(SpeakerError::InvalidConfig("local AS 0 is reserved".into()));
    }
    Ok(())
}

pub(super) fn validate_peer(peer: &PeerConfig) -> Result<(), SpeakerError> {
    let invalid = |m: String| Err(SpeakerError::InvalidConfig(m));
    if peer.hold_time == 1 || peer.hold_time == 2 {
        return invalid(format!(
            "peer {}: hold time must be 0 or at least 3 s",
            peer.address
        ));
    }
    if peer.remote_asn == 0 {
        return invalid(format!("peer {}: remote AS 0 is reserved", peer.address));
    }
    if !peer.ipv4_unicast && !peer.ipv6_unicast {
        return invalid(format!("peer {}: no address family enabled", peer.address));
    }
    if peer.md5_password.as_ref().is_some_and(|p| p.len() > 80) {
        return invalid(format!(
            "peer {}: TCP MD5 password longer than 80 octets",
            peer.address
        ));
    }
    if peer.ttl_security == Some(0) {
        return invalid(format!(
            "peer {}: TTL security needs a hop count of 1 to 255",
            peer.address
        ));
    }
    if peer.connect_retry.is_zero() {
        return invalid(format!(
            "peer {}: connect retry must not be 0",
            peer.address
        ));
    }
    Ok(())
}

/// What to do to turn the running peers into the wanted ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PeerPlan {
    pub(super) add: Vec<PeerConfig>,
    pub(super) restart: Vec<PeerConfig>,
    pub(super) remove: Vec<IpAddr>,
    /// Running peers whose changes apply in place, without a BGP restart
    /// (BFD, the prefix limit, the export filter).
    pub(super) retune: Vec<PeerConfig>,
}

/// Diffs the wanted peer set against the running configurations (keyed by
/// canonical address): pure, table-tested.
pub(super) fn plan_peers(
    running: &BTreeMap<IpAddr, &PeerConfig>,
    wanted: Vec<PeerConfig>,
) -> PeerPlan {
    let mut plan = PeerPlan::default();
    let mut seen = BTreeSet::new();
    for mut peer in wanted {
        peer.address = canonical(peer.address);
        seen.insert(peer.address);
        match running.get(&peer.address) {
            None => plan.add.push(peer),
            Some(current) if **current == peer => {}
            Some(current)
                if PeerConfig {
                    bfd: current.bfd,
                    max_prefixes: current.max_prefixes,
                    export_only: current.export_only.clone(),
                    export_filter: current.export_filter.clone(),
                    import_filter: current.import_filter.clone(),
                    ..peer.clone()
                } == **current =>
            {
                plan.retune.push(peer)
            }
            Some(_) => plan.restart.push(peer),
        }
    }
    plan.remove = running
        .keys()
        .filter(|a| !seen.contains(a))
        .copied()
        .collect();
    plan
}

/// IPv4 peers reach an IPv6 socket as mapped addresses: `::ffff:a.b.c.d`
/// and `a.b.c.d` are one peer.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(address: &str, asn: u32) -> PeerConfig {
        PeerConfig::new(address.parse().unwrap(), asn)
    }

    #[test]
    fn the_peer_set_is_diffed_against_what_runs() {
        let a = peer("10.0.0.1", 65001);
        let b = peer("10.0.0.2", 65002);
        let c = peer("10.0.0.3", 65003);
        let running: BTreeMap<IpAddr, &PeerConfig> =
            [(a.address, &a), (b.address, &b), (c.address, &c)].into();
        let mut b_changed = b.clone();
        b_changed.passive = true;
        let d = peer("10.0.0.4", 65004);
        // a unchanged, b changed, c gone, d new.
        let plan = plan_peers(&running, vec![a.clone(), b_changed.clone(), d.clone()]);
        assert_eq!(
            plan,
            PeerPlan {
                add: vec![d],
                restart: vec![b_changed],
                remove: vec![c.address],
                retune: Vec::new(),
            }
        );
        // BFD switched on alone: no restart of the BGP session.
        let mut a_bfd = a.clone();
        a_bfd.bfd = Some(crate::bfd::BfdConfig::default());
        let plan = plan_peers(&running, vec![a_bfd.clone(), b.clone(), c.clone()]);
        assert_eq!(plan.retune, vec![a_bfd]);
        assert!(plan.restart.is_empty() && plan.add.is_empty());
        // The same set again: nothing to do.
        assert_eq!(
            plan_peers(&running, vec![a.clone(), b.clone(), c.clone()]),
            PeerPlan::default()
        );
        // An IPv4 peer written as an IPv4-mapped IPv6 address is the same peer.
        let mapped = PeerConfig {
            address: "::ffff:10.0.0.1".parse().unwrap(),
            ..a.clone()
        };
        let plan = plan_peers(&running, vec![mapped, b.clone(), c.clone()]);
        assert_eq!(plan, PeerPlan::default());
        // Nothing wanted: everything goes.
        assert_eq!(plan_peers(&running, Vec::new()).remove.len(), 3);
    }
}

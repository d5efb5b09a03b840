//! The `brindle-bgpd` daemon around the [`crate::speaker`] library: its YAML
//! configuration ([`config`]), its control socket ([`control`]), and the
//! translation of one into the speaker's settings ([`speaker_config`],
//! [`originations`]).
//!
//! The binary (`src/bin/brindle-bgpd.rs`) only wires these to the process:
//! command line, logging, signals. Everything here is testable without it.
//!
//! Reload (SIGHUP): [`reload_plan`] compares the running configuration with
//! the new file. Originations and peers are changed in place (a changed peer
//! is reset by the speaker with Cease/Other Configuration Change; unchanged
//! peers are not touched); keys that need a restart (`asn`, `router_id`,
//! `listen`, `cluster_id`, `control_socket`, `graceful_restart`) are
//! reported and otherwise ignored.
//!
//! Listening: `listen: 0.0.0.0:P` also listens on `[::]:P` when some peer
//! has an IPv6 address, since BIRD and FRR users expect one wildcard to cover
//! both families.

pub mod config;
pub mod control;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::packet::{Family, NextHop, Origin, PathAttributes};
use crate::rib::PathAttrs;
use crate::speaker::{PeerConfig, SpeakerConfig};
use config::Config;

/// The speaker settings `config` describes.
pub fn speaker_config(config: &Config) -> SpeakerConfig {
    let mut out = SpeakerConfig::new(config.asn, config.router_id);
    out.cluster_id = config.cluster_id;
    match config.listen {
        None => out.listen_addresses.clear(),
        Some(listen) => {
            out.listen_port = listen.port();
            out.listen_addresses = vec![listen.ip()];
            let any_v6_peer = config.peers.iter().any(|p| p.address.is_ipv6());
            if listen.ip() == IpAddr::from([0, 0, 0, 0]) && any_v6_peer {
                out.listen_addresses.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
            }
        }
    }
    out.peers = config
        .peers
        .iter()
        .map(|p| {
            let mut peer = PeerConfig::new(p.address, p.asn);
            peer.port = p.port;
            peer.passive = p.passive;
            peer.route_reflector_client = p.route_reflector_client;
            peer.hold_time = p.hold_time;
            peer.keepalive = p.keepalive;
            peer.connect_retry = Duration::from_secs(p.connect_retry.into());
            peer.md5_password = p.password.clone();
            peer.source_address = p.local_address;
            peer.next_hop_self = p.next_hop_self;
            peer.bfd = p.bfd.then(crate::bfd::BfdConfig::default);
            peer.ttl_security = p.ttl_security;
            peer.ipv4_unicast = p.families.contains(&Family::IPV4_UNICAST);
            peer.ipv6_unicast = p.families.contains(&Family::IPV6_UNICAST);
            peer.graceful_restart = if p.graceful_restart_enabled(config) {
                Some(
                    config
                        .graceful_restart
                        .map_or(config::DEFAULT_RESTART_TIME, |g| g.restart_time),
                )
            } else {
                None
            };
            peer.long_lived_stale_time = peer
                .graceful_restart
                .and(config.graceful_restart)
                .and_then(|g| g.long_lived_stale_time);
            peer
        })
        .collect();
    out
}

/// The prefixes to originate with their attributes (ORIGIN IGP; a `None`
/// next hop means "our address on each session").
pub fn originations(config: &Config) -> Vec<(IpNet, PathAttrs)> {
    config
        .originate
        .iter()
        .map(|o| {
            let attrs = PathAttrs {
                attributes: PathAttributes {
                    origin: Some(Origin::Igp),
                    med: o.med,
                    local_pref: o.local_pref,
                    communities: o.communities.clone(),
                    large_communities: o.large_communities.clone(),
                    ..Default::default()
                },
                next_hop: o.next_hop.map(|nh| match nh {
                    IpAddr::V4(v4) => NextHop::V4(v4),
                    IpAddr::V6(global) => NextHop::V6 {
                        global,
                        link_local: None,
                    },
                }),
            };
            (o.prefix, attrs)
        })
        .collect()
}

/// What a reload changes; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Prefixes no longer originated.
    pub withdraw: Vec<IpNet>,
    /// Prefixes newly originated or with changed attributes.
    pub originate: Vec<(IpNet, PathAttrs)>,
    pub remove_peers: Vec<IpAddr>,
    pub add_peers: Vec<PeerConfig>,
    pub update_peers: Vec<PeerConfig>,
    /// Top-level keys whose change needs a restart.
    pub needs_restart: Vec<&'static str>,
}

impl ReloadPlan {
    pub fn is_empty(&self) -> bool {
        self == &ReloadPlan::default()
    }
}

/// The changes from `old` to `new`.
pub fn reload_plan(old: &Config, new: &Config) -> ReloadPlan {
    let mut plan = ReloadPlan::default();
    let fixed: [(&'static str, bool); 6] = [
        ("asn", old.asn != new.asn),
        ("router_id", old.router_id != new.router_id),
        ("listen", old.listen != new.listen),
        ("cluster_id", old.cluster_id != new.cluster_id),
        ("control_socket", old.control_socket != new.control_socket),
        (
            "graceful_restart",
            old.graceful_restart != new.graceful_restart,
        ),
    ];
    plan.needs_restart = fixed.iter().filter(|(_, c)| *c).map(|(k, _)| *k).collect();

    let before = originations(old);
    let after = originations(new);
    for (prefix, _) in &before {
        if !after.iter().any(|(p, _)| p == prefix) {
            plan.withdraw.push(*prefix);
        }
    }
    for entry in &after {
        if !before.contains(entry) {
            plan.originate.push(entry.clone());
        }
    }

    // Peers are compared as the speaker would run them, under the settings
    // that stay in force (the old top level), so only their own keys count.
    let mut effective = new.clone();
    effective.asn = old.asn;
    effective.graceful_restart = old.graceful_restart;
    let old_peers = speaker_config(old).peers;
    let new_peers = speaker_config(&effective).peers;
    for p in &old_peers {
        if !new_peers.iter().any(|n| n.address == p.address) {
            plan.remove_peers.push(p.address);
        }
    }
    for n in new_peers {
        match old_peers.iter().find(|p| p.address == n.address) {
            None => plan.add_peers.push(n),
            Some(p) if *p != n => plan.update_peers.push(n),
            Some(_) => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Community;
    use std::net::Ipv4Addr;

    #[test]
    fn config_maps_onto_the_speaker() {
        let text = "\
asn: 64512
router_id: 10.0.0.1
listen: 0.0.0.0:1179
cluster_id: 10.0.0.1
graceful_restart: {restart_time: 30}
originate:
  - 10.20.0.0/26
  - prefix: fd00:20::/64
    communities: [\"64512:7\"]
    med: 5
    next_hop: fd00::9
peers:
  - address: 10.0.0.2
    asn: 64512
    route_reflector_client: true
    password: pw
    local_address: 10.0.0.1
    hold_time: 9
    connect_retry: 1
  - address: fd00::3
    asn: 64513
    families: [ipv6]
    port: 1790
    passive: true
    graceful_restart: false
";
        let config = Config::parse(text).unwrap();
        let s = speaker_config(&config);
        assert_eq!(s.local_asn, 64512);
        assert_eq!(s.cluster_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(s.listen_port, 1179);
        assert_eq!(
            s.listen_addresses,
            vec![
                IpAddr::from([0, 0, 0, 0]),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            ]
        );
        let a = &s.peers[0];
        assert!(a.route_reflector_client && a.ipv4_unicast && !a.ipv6_unicast);
        assert_eq!(a.md5_password.as_deref(), Some("pw"));
        assert_eq!(a.source_address, Some("10.0.0.1".parse().unwrap()));
        assert_eq!((a.hold_time, a.keepalive), (9, None));
        assert_eq!(a.connect_retry, Duration::from_secs(1));
        assert_eq!(a.graceful_restart, Some(30));
        let b = &s.peers[1];
        assert!(b.passive && !b.ipv4_unicast && b.ipv6_unicast);
        assert_eq!(
            (b.port, b.remote_asn, b.graceful_restart),
            (1790, 64513, None)
        );

        let o = originations(&config);
        assert_eq!(o[0].0, "10.20.0.0/26".parse::<IpNet>().unwrap());
        assert_eq!(o[0].1.next_hop, None);
        assert_eq!(o[0].1.attributes.origin, Some(Origin::Igp));
        assert_eq!(
            o[1].1.attributes.communities,
            vec![Community::new(64512, 7)]
        );
        assert_eq!(o[1].1.attributes.med, Some(5));
        assert_eq!(
            o[1].1.next_hop,
            Some(NextHop::V6 {
                global: "fd00::9".parse().unwrap(),
                link_local: None
            })
        );
    }

    #[test]
    fn reload_changes_only_what_changed() {
        let old = Config::parse(
            "asn: 1\nrouter_id: 1.1.1.1\noriginate: [10.1.0.0/24, 10.2.0.0/24]\npeers:\n  \
             - {address: 10.0.0.2, asn: 2}\n  - {address: 10.0.0.3, asn: 3}\n",
        )
        .unwrap();
        assert!(reload_plan(&old, &old).is_empty());
        let new = Config::parse(
            "asn: 1\nrouter_id: 1.1.1.2\noriginate:\n  - 10.1.0.0/24\n  - {prefix: 10.3.0.0/24, med: 1}\n\
             peers:\n  - {address: 10.0.0.2, asn: 2, hold_time: 30}\n  - {address: 10.0.0.4, asn: 4}\n",
        )
        .unwrap();
        let plan = reload_plan(&old, &new);
        assert_eq!(plan.needs_restart, vec!["router_id"]);
        assert_eq!(plan.withdraw, vec!["10.2.0.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(plan.originate.len(), 1);
        assert_eq!(plan.originate[0].1.attributes.med, Some(1));
        assert_eq!(
            plan.remove_peers,
            vec!["10.0.0.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            plan.add_peers[0].address,
            "10.0.0.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(plan.update_peers[0].hold_time, 30);
    }

    #[test]
    fn listen_none_accepts_nothing() {
        let config = Config::parse("asn: 1\nrouter_id: 1.1.1.1\nlisten: none\n").unwrap();
        assert!(speaker_config(&config).listen_addresses.is_empty());
    }
}

//! The other BGP daemons as one peer type: BIRD 2, FRR or GoBGP started
//! from one [`BgpConfig`] (the tree's one generator of their configs) and
//! read back through birdc / vtysh / gobgp into one [`SeenRoute`] shape, so
//! a scenario is written once and run against all three. Used by the
//! `brindle-bgpd` interop tests and by the node's ToR tests.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{bird_config, bird_protocol_name, poll_until, BgpConfig, Bird, Frr, Gobgp, Netns};

/// Upper bound of one wait on another daemon; a bound, not a measurement.
const WAIT: Duration = Duration::from_secs(60);

/// Polls `probe` every 200 ms until it returns `Some` or [`WAIT`] passes.
fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    poll_until(WAIT, Duration::from_millis(200), || Ok(probe()))
        .ok()
        .flatten()
}

/// A route as another daemon shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenRoute {
    pub as_path: Vec<u32>,
    pub next_hop: Option<IpAddr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    /// `asn:value`
    pub communities: Vec<String>,
    /// `global:local1:local2`
    pub large_communities: Vec<String>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
}

/// Which daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bird,
    Frr,
    Gobgp,
}

pub enum Other {
    Bird(Bird),
    Frr(Frr),
    Gobgp(Gobgp),
}

fn is_v6(prefix: &str) -> bool {
    prefix.contains(':')
}

impl Other {
    pub fn start(kind: Kind, ns: &Netns, spec: &BgpConfig) -> Other {
        match kind {
            Kind::Bird => Other::Bird(Bird::start(ns, spec).expect("bird starts")),
            Kind::Frr => Other::Frr(Frr::start(ns, spec).expect("frr starts")),
            Kind::Gobgp => Other::Gobgp(Gobgp::start(ns, spec).expect("gobgpd starts")),
        }
    }

    /// Starts the daemon again after [`Other::kill`] the way an operator
    /// restarts it with graceful restart: BIRD with `-R` (recovery: R and
    /// F bits set, so the helper keeps the stale routes until End-of-RIB;
    /// a plain start has F clear and RFC 4724 §4.2 then makes the helper
    /// flush them at once), GoBGP with `-r` (the same bits); FRR sets F
    /// from `preserve-fw-state` in its config.
    pub fn restart(kind: Kind, ns: &Netns, spec: &BgpConfig) -> Other {
        match kind {
            Kind::Bird => Other::Bird(
                Bird::start_with_config_args(ns, &bird_config(spec), &["-R"])
                    .expect("bird starts in graceful restart recovery"),
            ),
            Kind::Gobgp => Other::Gobgp(
                Gobgp::start_with_args(ns, spec, &["-r"])
                    .expect("gobgpd starts as a graceful restart"),
            ),
            Kind::Frr => Other::start(kind, ns, spec),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Other::Bird(_) => "bird",
            Other::Frr(_) => "frr",
            Other::Gobgp(_) => "gobgp",
        }
    }

    pub fn log(&self) -> String {
        match self {
            Other::Bird(b) => b.log(),
            Other::Frr(f) => f.bgpd_log(),
            Other::Gobgp(g) => g.log(),
        }
    }

    /// SIGKILL (a crash: no NOTIFICATION), then the usual teardown.
    pub fn kill(self) {
        let pids = match &self {
            Other::Bird(b) => vec![b.pid()],
            Other::Frr(f) => vec![f.pids()[0]],
            Other::Gobgp(g) => vec![g.pid()],
        };
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        drop(self);
    }

    pub fn established(&self, peer: IpAddr) -> bool {
        match self {
            Other::Bird(b) => b.protocols().ok().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.name == bird_protocol_name(peer) && p.info.starts_with("Established")
                })
            }),
            Other::Frr(f) => {
                f.neighbor_state(peer).ok().flatten().as_deref() == Some("Established")
            }
            Other::Gobgp(g) => {
                g.neighbor_state(peer).ok().flatten().as_deref() == Some("ESTABLISHED")
            }
        }
    }

    pub fn wait_established(&self, peer: IpAddr) {
        let up = wait_for(|| self.established(peer).then_some(()));
        assert!(
            up.is_some(),
            "{}: session with {peer} not Established\n{}",
            self.name(),
            self.log()
        );
    }

    /// The best route for `prefix`, if the daemon has one.
    pub fn route(&self, prefix: &str) -> Option<SeenRoute> {
        match self {
            Other::Bird(b) => {
                let text = b.birdc(&format!("show route {prefix} all")).ok()?;
                parse_bird_route(&text, prefix)
            }
            Other::Frr(f) => {
                let fam = if is_v6(prefix) { "ipv6" } else { "ipv4" };
                let v = f
                    .vtysh_json(&format!("show bgp {fam} unicast {prefix} json"))
                    .ok()?;
                parse_frr_route(&v)
            }
            Other::Gobgp(g) => {
                let fam = if is_v6(prefix) { "ipv6" } else { "ipv4" };
                let text = g.gobgp(&["-j", "global", "rib", "-a", fam, prefix]).ok()?;
                let v: Value = serde_json::from_str(&text).ok()?;
                parse_gobgp_route(&v, prefix)
            }
        }
    }

    pub fn wait_route(&self, prefix: &str, check: impl Fn(&SeenRoute) -> bool) -> SeenRoute {
        let mut last = None;
        let found = wait_for(|| {
            let r = self.route(prefix);
            last = r.clone();
            r.filter(&check)
        });
        found.unwrap_or_else(|| {
            panic!(
                "{}: {prefix} not as expected; last {last:?}\n{}",
                self.name(),
                self.log()
            )
        })
    }

    pub fn wait_no_route(&self, prefix: &str) {
        let gone = wait_for(|| self.route(prefix).is_none().then_some(()));
        assert!(gone.is_some(), "{}: {prefix} never withdrawn", self.name());
    }

    /// Stops originating `prefix`.
    pub fn withdraw(&self, spec: &BgpConfig, prefix: &str) {
        match self {
            Other::Bird(b) => {
                // Reconfigure without the route: BIRD withdraws it.
                let mut spec = spec.clone();
                spec.originate.retain(|r| r.prefix != prefix);
                let conf = b.dir().join("bird.conf");
                std::fs::write(&conf, bird_config(&spec)).expect("rewrite bird.conf");
                let out = b.birdc("configure").expect("birdc configure");
                assert!(out.contains("Reconfigur"), "birdc configure: {out}");
            }
            Other::Frr(f) => {
                let fam = if is_v6(prefix) { "ipv6" } else { "ipv4" };
                let out = Command::new("vtysh")
                    .arg("--vty_socket")
                    .arg(f.dir())
                    .args(["-c", "configure terminal"])
                    .args(["-c", &format!("router bgp {}", spec.local_as)])
                    .args(["-c", &format!("address-family {fam} unicast")])
                    .args(["-c", &format!("no network {prefix}")])
                    .output()
                    .expect("vtysh");
                assert!(out.status.success(), "vtysh: {out:?}");
            }
            Other::Gobgp(g) => g.withdraw(prefix).expect("gobgp withdraw"),
        }
    }
}

/// Parses `birdc show route PREFIX all` (the first, best, route).
pub fn parse_bird_route(text: &str, prefix: &str) -> Option<SeenRoute> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(prefix));
    lines.next()?;
    let mut r = SeenRoute::default();
    for line in lines {
        if !line.starts_with(char::is_whitespace) {
            break; // the next route
        }
        let Some((key, value)) = line.trim().split_once(": ") else {
            continue;
        };
        let value = value.trim();
        match key {
            "BGP.as_path" => {
                r.as_path = value
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect()
            }
            "BGP.next_hop" => {
                r.next_hop = value.split_whitespace().next().and_then(|a| a.parse().ok())
            }
            "BGP.med" => r.med = value.parse().ok(),
            "BGP.local_pref" => r.local_pref = value.parse().ok(),
            "BGP.community" => {
                r.communities = value
                    .split(") (")
                    .map(|c| {
                        c.trim_matches(|ch| ch == '(' || ch == ')')
                            .replace(',', ":")
                    })
                    .filter(|c| !c.is_empty())
                    .collect()
            }
            "BGP.large_community" => {
                r.large_communities = value
                    .split(") (")
                    .map(|c| {
                        c.trim_matches(|ch| ch == '(' || ch == ')')
                            .split(',')
                            .map(str::trim)
                            .collect::<Vec<_>>()
                            .join(":")
                    })
                    .filter(|c| !c.is_empty())
                    .collect()
            }
            "BGP.originator_id" => r.originator_id = value.parse().ok(),
            "BGP.cluster_list" => {
                r.cluster_list = value
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect()
            }
            _ => {}
        }
    }
    Some(r)
}

/// Parses `show bgp … PREFIX json` of FRR 8 (the best path).
pub fn parse_frr_route(v: &Value) -> Option<SeenRoute> {
    let paths = v.get("paths")?.as_array()?;
    let best = paths
        .iter()
        .find(|p| p["bestpath"]["overall"].as_bool() == Some(true))
        .or_else(|| paths.first())?;
    let mut r = SeenRoute {
        as_path: best["aspath"]["string"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|a| a.parse().ok())
            .collect(),
        next_hop: best["nexthops"][0]["ip"]
            .as_str()
            .and_then(|a| a.parse().ok()),
        med: best["metric"].as_u64().map(|m| m as u32),
        local_pref: best["locPrf"]
            .as_u64()
            .or_else(|| best["localpref"].as_u64())
            .map(|m| m as u32),
        originator_id: best["originatorId"].as_str().and_then(|a| a.parse().ok()),
        ..Default::default()
    };
    if let Some(s) = best["community"]["string"].as_str() {
        r.communities = s.split_whitespace().map(str::to_string).collect();
    }
    if let Some(s) = best["largeCommunity"]["string"].as_str() {
        r.large_communities = s.split_whitespace().map(str::to_string).collect();
    }
    if let Some(list) = best["clusterList"]["list"].as_array() {
        r.cluster_list = list
            .iter()
            .filter_map(|a| a.as_str()?.parse().ok())
            .collect();
    }
    Some(r)
}

/// Parses `gobgp -j global rib -a FAMILY PREFIX` (the best path).
pub fn parse_gobgp_route(v: &Value, prefix: &str) -> Option<SeenRoute> {
    let paths = v.get(prefix)?.as_array()?;
    let best = paths
        .iter()
        .find(|p| p["best"].as_bool() == Some(true))
        .or_else(|| paths.first())?;
    let mut r = SeenRoute::default();
    for a in best["attrs"].as_array()? {
        match a["type"].as_u64()? {
            2 => {
                for seg in a["as_paths"].as_array().into_iter().flatten() {
                    for asn in seg["asns"].as_array().into_iter().flatten() {
                        r.as_path.extend(asn.as_u64().map(|x| x as u32));
                    }
                }
            }
            3 => r.next_hop = a["nexthop"].as_str().and_then(|s| s.parse().ok()),
            14 => r.next_hop = a["nexthop"].as_str().and_then(|s| s.parse().ok()),
            4 => r.med = a["metric"].as_u64().map(|x| x as u32),
            5 => r.local_pref = a["value"].as_u64().map(|x| x as u32),
            8 => {
                r.communities = a["communities"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                    .collect()
            }
            9 => r.originator_id = a["value"].as_str().and_then(|s| s.parse().ok()),
            10 => {
                r.cluster_list = a["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str()?.parse().ok())
                    .collect()
            }
            32 => {
                r.large_communities = a["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| format!("{}:{}:{}", c["ASN"], c["LocalData1"], c["LocalData2"]))
                    .collect()
            }
            _ => {}
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_read_the_daemons_output() {
        let bird = "BIRD 2.0.12 ready.\nTable master4:\n\
    10.20.0.0/26         unicast [n10_77_0_1 05:06:01.123] * (100) [AS64512i]\n\
    \tvia 10.77.0.1 on eth0\n\
    \tType: BGP univ\n\
    \tBGP.origin: IGP\n\
    \tBGP.as_path: 64512 4200000001\n\
    \tBGP.next_hop: 10.77.0.1\n\
    \tBGP.med: 10\n\
    \tBGP.local_pref: 100\n\
    \tBGP.community: (64512,100) (65535,65281)\n\
    \tBGP.large_community: (64512, 1, 2)\n";
        let r = parse_bird_route(bird, "10.20.0.0/26").unwrap();
        assert_eq!(r.as_path, vec![64512, 4_200_000_001]);
        assert_eq!(r.next_hop, Some("10.77.0.1".parse().unwrap()));
        assert_eq!((r.med, r.local_pref), (Some(10), Some(100)));
        assert_eq!(r.communities, vec!["64512:100", "65535:65281"]);
        assert_eq!(r.large_communities, vec!["64512:1:2"]);

        let gobgp: Value = serde_json::from_str(
            r#"{"10.1.0.0/24":[{"nlri":{"prefix":"10.1.0.0/24"},"best":true,"attrs":[{"type":1,"value":2},{"type":2,"as_paths":[{"segment_type":2,"num":2,"asns":[65001,65002]}]},{"type":4,"metric":10},{"type":5,"value":200},{"type":8,"communities":[65538]},{"type":32,"value":[{"ASN":1,"LocalData1":2,"LocalData2":3}]},{"type":3,"nexthop":"10.0.0.5"}],"stale":false}]}"#,
        )
        .unwrap();
        let r = parse_gobgp_route(&gobgp, "10.1.0.0/24").unwrap();
        assert_eq!(r.as_path, vec![65001, 65002]);
        assert_eq!(r.communities, vec!["1:2"]);
        assert_eq!(r.large_communities, vec!["1:2:3"]);
        assert_eq!((r.med, r.local_pref), (Some(10), Some(200)));
    }
}

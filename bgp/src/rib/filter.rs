//! Per-peer route filters: ordered rules, first match wins, as Calico's
//! `BGPFilter` compiles to BIRD (`if (net ~ cidr) then accept;` …). A
//! route no rule matches gets no verdict here and follows the speaker's
//! default (import: accept; export: the peer's [`ExportPrefixes`], if
//! any).
//!
//! Pure and total: [`RouteFilter::verdict`] looks at the prefix, whether
//! the route was learned from a peer, the route's communities and AS path
//! (Calico's `communities` and `asPathPrefix` conditions) and its outgoing
//! interface (`interface`: the interface of the connected network its next
//! hop is on, as the caller found it; none for a route without a next hop
//! or one off every connected network, which such a rule never matches, as
//! BIRD's `defined(ifname)`), nothing else. An accepting rule may carry [`RouteOperation`]s (Calico's
//! `addCommunity` and `prependASPath`), which [`RouteOperation::apply_all`]
//! performs on the route's attributes in order, as BIRD's
//! `bgp_community.add(…)` and `bgp_path.prepend(…)` in the rule's body:
//! on import before the route is stored, on export before our own
//! export rules (so toward an eBGP peer our AS still comes first).
//!
//! [`ExportPrefixes`]: super::ExportPrefixes

use ipnet::IpNet;

use crate::packet::attribute::{AsSegmentType, Community, LargeCommunity, PathAttributes};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterVerdict {
    Accept,
    Reject,
}

/// How a rule compares the route's prefix with its CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixOp {
    /// The prefix is the CIDR.
    Equal,
    /// The prefix is not the CIDR.
    NotEqual,
    /// The prefix lies inside the CIDR with a length in `lengths`.
    In,
    /// Not [`PrefixOp::In`].
    NotIn,
}

/// A rule's prefix condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixMatch {
    pub cidr: IpNet,
    pub op: PrefixOp,
    /// Prefix lengths `In`/`NotIn` accept: `(min, max)`, inclusive;
    /// Calico's `prefixLength`, by default the CIDR's own length up to the
    /// family's maximum.
    pub lengths: (u8, u8),
}

impl PrefixMatch {
    /// The condition with Calico's default lengths.
    pub fn new(cidr: IpNet, op: PrefixOp) -> Self {
        Self {
            cidr: cidr.trunc(),
            op,
            lengths: (cidr.prefix_len(), cidr.max_prefix_len()),
        }
    }

    fn matches(&self, prefix: &IpNet) -> bool {
        let inside = || {
            self.cidr.contains(prefix)
                && (self.lengths.0..=self.lengths.1).contains(&prefix.prefix_len())
        };
        match self.op {
            PrefixOp::Equal => prefix.trunc() == self.cidr,
            PrefixOp::NotEqual => prefix.trunc() != self.cidr,
            PrefixOp::In => inside(),
            PrefixOp::NotIn => !inside(),
        }
    }
}

/// One rule: its conditions all hold, then `verdict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    pub verdict: FilterVerdict,
    /// `None`: any prefix (of the rule's family).
    pub prefix: Option<PrefixMatch>,
    /// Only routes learned from a BGP peer (Calico's `source:
    /// RemotePeers`), not the speaker's own.
    pub learned_only: bool,
    /// Only routes carrying this community (Calico's `communities`, one
    /// value; BIRD's `(a, b) ~ bgp_community`).
    pub community: Option<CommunityMatch>,
    /// Only routes whose AS path starts with these AS numbers (Calico's
    /// `asPathPrefix`; BIRD's `bgp_path ~ [= a b * =]`). Empty: any path.
    pub as_path_prefix: Vec<u32>,
    /// What an accepting rule changes on the route, in order.
    pub operations: Vec<RouteOperation>,
    /// Only routes whose outgoing interface matches this pattern (Calico's
    /// `interface`; `*` matches any run of characters, `?` one, as BIRD's
    /// `ifname ~ "eth*"`).
    pub interface: Option<String>,
}

/// Whether `name` matches the shell-style `pattern` (`*`, `?`).
pub fn interface_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// One change an accepting rule makes to a route (Calico's BGPFilter
/// `operations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOperation {
    /// `addCommunity`: the community is added unless already there.
    AddCommunity(CommunityMatch),
    /// `prependASPath`: these AS numbers go in front of the path, the
    /// first one first (BIRD prepends them in reverse).
    PrependAsPath(Vec<u32>),
}

impl RouteOperation {
    /// Performs `ops` on `attrs`, in order.
    pub fn apply_all(ops: &[RouteOperation], attrs: &mut PathAttributes) {
        for op in ops {
            match op {
                RouteOperation::AddCommunity(CommunityMatch::Standard(c)) => {
                    if !attrs.communities.contains(c) {
                        attrs.communities.push(*c);
                    }
                }
                RouteOperation::AddCommunity(CommunityMatch::Large(c)) => {
                    if !attrs.large_communities.contains(c) {
                        attrs.large_communities.push(*c);
                    }
                }
                RouteOperation::PrependAsPath(asns) => {
                    let path = attrs.as_path.get_or_insert_with(Default::default);
                    for asn in asns.iter().rev() {
                        path.prepend(*asn);
                    }
                }
            }
        }
    }
}

/// A community a rule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommunityMatch {
    Standard(Community),
    Large(LargeCommunity),
}

impl FilterRule {
    /// A rule on the prefix alone (no source, community or path condition).
    pub fn on_prefix(verdict: FilterVerdict, prefix: Option<PrefixMatch>) -> Self {
        Self {
            verdict,
            prefix,
            learned_only: false,
            community: None,
            as_path_prefix: Vec::new(),
            operations: Vec::new(),
            interface: None,
        }
    }

    fn matches(
        &self,
        prefix: &IpNet,
        learned: bool,
        attrs: &PathAttributes,
        iface: Option<&str>,
    ) -> bool {
        (!self.learned_only || learned)
            && self
                .interface
                .as_deref()
                .is_none_or(|pattern| iface.is_some_and(|name| interface_matches(pattern, name)))
            && self.prefix.is_none_or(|m| m.matches(prefix))
            && self.community.is_none_or(|c| match c {
                CommunityMatch::Standard(c) => attrs.communities.contains(&c),
                CommunityMatch::Large(c) => attrs.large_communities.contains(&c),
            })
            && (self.as_path_prefix.is_empty() || path_starts_with(attrs, &self.as_path_prefix))
    }
}

/// Whether the AS path's leading AS_SEQUENCE numbers begin with `prefix`
/// (a set ends the ordered part: BIRD's `[= a b * =]` matches sequences).
fn path_starts_with(attrs: &PathAttributes, prefix: &[u32]) -> bool {
    let leading = attrs
        .as_path
        .iter()
        .flat_map(|p| &p.segments)
        .take_while(|s| s.kind == AsSegmentType::Sequence)
        .flat_map(|s| &s.asns);
    let mut wanted = prefix.iter();
    let mut leading = leading.copied();
    wanted.all(|asn| leading.next() == Some(*asn))
}

/// The rules of one direction of one session, per family.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteFilter {
    pub v4: Vec<FilterRule>,
    pub v6: Vec<FilterRule>,
}

impl RouteFilter {
    /// The first matching rule's verdict, or `None` (the default applies).
    /// `learned`: the route came from a BGP peer; `attrs`: its attributes.
    pub fn verdict(
        &self,
        prefix: &IpNet,
        learned: bool,
        attrs: &PathAttributes,
        iface: Option<&str>,
    ) -> Option<FilterVerdict> {
        self.first_match(prefix, learned, attrs, iface)
            .map(|(_, r)| r.verdict)
    }

    /// The first matching rule and its position in its family's list.
    pub fn first_match(
        &self,
        prefix: &IpNet,
        learned: bool,
        attrs: &PathAttributes,
        iface: Option<&str>,
    ) -> Option<(usize, &FilterRule)> {
        let rules = match prefix {
            IpNet::V4(_) => &self.v4,
            IpNet::V6(_) => &self.v6,
        };
        rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(prefix, learned, attrs, iface))
    }

    /// Whether some rule asks for the route's interface.
    pub fn uses_interface(&self) -> bool {
        self.v4
            .iter()
            .chain(&self.v6)
            .any(|r| r.interface.is_some())
    }

    /// Whether some rule changes the routes it accepts.
    pub fn has_operations(&self) -> bool {
        self.v4
            .iter()
            .chain(&self.v6)
            .any(|r| !r.operations.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn rule(verdict: FilterVerdict, m: Option<PrefixMatch>) -> FilterRule {
        FilterRule::on_prefix(verdict, m)
    }

    #[test]
    fn operators_table() {
        use PrefixOp::*;
        let cidr = net("10.1.0.0/16");
        let cases = [
            (Equal, "10.1.0.0/16", true),
            (Equal, "10.1.0.0/24", false),
            (NotEqual, "10.1.0.0/16", false),
            (NotEqual, "10.2.0.0/16", true),
            (In, "10.1.7.0/24", true),
            (In, "10.1.0.0/16", true),
            (In, "10.0.0.0/8", false),
            (In, "10.2.0.0/24", false),
            (NotIn, "10.2.0.0/24", true),
            (NotIn, "10.1.7.0/24", false),
        ];
        for (op, prefix, expected) in cases {
            assert_eq!(
                PrefixMatch::new(cidr, op).matches(&net(prefix)),
                expected,
                "{op:?} {prefix}"
            );
        }
        // prefixLength bounds on In / NotIn.
        let m = PrefixMatch {
            lengths: (24, 26),
            ..PrefixMatch::new(cidr, In)
        };
        assert!(m.matches(&net("10.1.7.0/24")) && m.matches(&net("10.1.7.64/26")));
        assert!(!m.matches(&net("10.1.0.0/16")) && !m.matches(&net("10.1.7.1/32")));
        let not = PrefixMatch { op: NotIn, ..m };
        assert!(not.matches(&net("10.1.7.1/32")) && !not.matches(&net("10.1.7.0/24")));
    }

    #[test]
    fn first_match_wins_per_family_and_source() {
        let none = PathAttributes::default();
        let f = RouteFilter {
            v4: vec![
                rule(
                    FilterVerdict::Reject,
                    Some(PrefixMatch::new(net("10.1.2.0/24"), PrefixOp::Equal)),
                ),
                rule(
                    FilterVerdict::Accept,
                    Some(PrefixMatch::new(net("10.1.0.0/16"), PrefixOp::In)),
                ),
                FilterRule {
                    learned_only: true,
                    ..FilterRule::on_prefix(FilterVerdict::Reject, None)
                },
            ],
            v6: Vec::new(),
        };
        assert_eq!(
            f.verdict(&net("10.1.2.0/24"), true, &none, None),
            Some(FilterVerdict::Reject)
        );
        assert_eq!(
            f.verdict(&net("10.1.3.0/24"), true, &none, None),
            Some(FilterVerdict::Accept)
        );
        assert_eq!(
            f.verdict(&net("10.9.0.0/24"), true, &none, None),
            Some(FilterVerdict::Reject)
        );
        assert_eq!(
            f.verdict(&net("10.9.0.0/24"), false, &none, None),
            None,
            "own routes pass"
        );
        assert_eq!(
            f.verdict(&net("fd00::/64"), true, &none, None),
            None,
            "no IPv6 rules"
        );
    }

    /// Calico's `interface`: shell-style patterns against the route's
    /// outgoing interface; a route without one never matches.
    #[test]
    fn interface_patterns() {
        for (pattern, name, expected) in [
            ("eth0", "eth0", true),
            ("eth0", "eth01", false),
            ("eth*", "eth1", true),
            ("eth*", "eth", true),
            ("eth*", "veth1", false),
            ("*0", "cali1230", true),
            ("cali?", "cali1", true),
            ("cali?", "cali12", false),
            ("*", "anything", true),
        ] {
            assert_eq!(
                interface_matches(pattern, name),
                expected,
                "{pattern} {name}"
            );
        }
        let f = RouteFilter {
            v4: vec![FilterRule {
                interface: Some("eth*".into()),
                ..FilterRule::on_prefix(FilterVerdict::Reject, None)
            }],
            v6: Vec::new(),
        };
        let any = net("10.1.0.0/24");
        let none = PathAttributes::default();
        assert_eq!(
            f.verdict(&any, true, &none, Some("eth1")),
            Some(FilterVerdict::Reject)
        );
        assert_eq!(f.verdict(&any, true, &none, Some("ens3")), None);
        assert_eq!(f.verdict(&any, true, &none, None), None, "no interface");
    }

    /// Calico's `communities` (standard and large) and `asPathPrefix`.
    #[test]
    fn community_and_as_path_prefix_conditions() {
        use crate::packet::attribute::AsPath;
        let tagged = PathAttributes {
            communities: vec![Community::new(65000, 100)],
            large_communities: vec![LargeCommunity {
                global_admin: 65000,
                local_data1: 1,
                local_data2: 2,
            }],
            as_path: Some(AsPath::from_sequence([65001, 65002, 65003])),
            ..Default::default()
        };
        let plain = PathAttributes::default();
        let any = net("10.1.0.0/24");
        let by_community = |c| RouteFilter {
            v4: vec![FilterRule {
                community: Some(c),
                ..FilterRule::on_prefix(FilterVerdict::Reject, None)
            }],
            v6: Vec::new(),
        };
        let standard = by_community(CommunityMatch::Standard(Community::new(65000, 100)));
        assert_eq!(
            standard.verdict(&any, true, &tagged, None),
            Some(FilterVerdict::Reject)
        );
        assert_eq!(standard.verdict(&any, true, &plain, None), None);
        let other = by_community(CommunityMatch::Standard(Community::new(65000, 101)));
        assert_eq!(other.verdict(&any, true, &tagged, None), None);
        let large = by_community(CommunityMatch::Large(LargeCommunity {
            global_admin: 65000,
            local_data1: 1,
            local_data2: 2,
        }));
        assert_eq!(
            large.verdict(&any, true, &tagged, None),
            Some(FilterVerdict::Reject)
        );

        let by_path = |asns: &[u32]| RouteFilter {
            v4: vec![FilterRule {
                as_path_prefix: asns.to_vec(),
                ..FilterRule::on_prefix(FilterVerdict::Accept, None)
            }],
            v6: Vec::new(),
        };
        assert_eq!(
            by_path(&[65001, 65002]).verdict(&any, true, &tagged, None),
            Some(FilterVerdict::Accept)
        );
        assert_eq!(
            by_path(&[65002]).verdict(&any, true, &tagged, None),
            None,
            "a prefix, not anywhere"
        );
        assert_eq!(
            by_path(&[65001]).verdict(&any, true, &plain, None),
            None,
            "empty path"
        );
        assert_eq!(
            by_path(&[65001, 65002, 65003, 65004]).verdict(&any, true, &tagged, None),
            None,
            "longer than the path"
        );
    }
}

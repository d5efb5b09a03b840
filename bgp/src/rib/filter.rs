//! Per-peer route filters: ordered rules, first match wins, as Calico's
//! `BGPFilter` compiles to BIRD (`if (net ~ cidr) then accept;` …). A
//! route no rule matches gets no verdict here and follows the speaker's
//! default (import: accept; export: the peer's [`ExportPrefixes`], if
//! any).
//!
//! Pure and total: [`RouteFilter::verdict`] looks at the prefix and
//! whether the route was learned from a peer, nothing else.
//!
//! [`ExportPrefixes`]: super::ExportPrefixes

use ipnet::IpNet;

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
}

impl FilterRule {
    fn matches(&self, prefix: &IpNet, learned: bool) -> bool {
        (!self.learned_only || learned) && self.prefix.is_none_or(|m| m.matches(prefix))
    }
}

/// The rules of one direction of one session, per family.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteFilter {
    pub v4: Vec<FilterRule>,
    pub v6: Vec<FilterRule>,
}

impl RouteFilter {
    /// The first matching rule's verdict, or `None` (the default applies).
    /// `learned`: the route came from a BGP peer.
    pub fn verdict(&self, prefix: &IpNet, learned: bool) -> Option<FilterVerdict> {
        let rules = match prefix {
            IpNet::V4(_) => &self.v4,
            IpNet::V6(_) => &self.v6,
        };
        rules
            .iter()
            .find(|r| r.matches(prefix, learned))
            .map(|r| r.verdict)
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
        FilterRule {
            verdict,
            prefix: m,
            learned_only: false,
        }
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
                    verdict: FilterVerdict::Reject,
                    prefix: None,
                    learned_only: true,
                },
            ],
            v6: Vec::new(),
        };
        assert_eq!(
            f.verdict(&net("10.1.2.0/24"), true),
            Some(FilterVerdict::Reject)
        );
        assert_eq!(
            f.verdict(&net("10.1.3.0/24"), true),
            Some(FilterVerdict::Accept)
        );
        assert_eq!(
            f.verdict(&net("10.9.0.0/24"), true),
            Some(FilterVerdict::Reject)
        );
        assert_eq!(
            f.verdict(&net("10.9.0.0/24"), false),
            None,
            "own routes pass"
        );
        assert_eq!(f.verdict(&net("fd00::/64"), true), None, "no IPv6 rules");
    }
}

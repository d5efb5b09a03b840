//! Kind names on the command line: any case, singular or plural, and
//! calicoctl's short names (`ipp`, `bgpp`, `bp`, `pol`, `wep`, `hep`, ...),
//! plus the model's own aliases.

use brindle_model::Kind;

/// calicoctl's short names that the model does not already accept.
const CALICOCTL_SHORT_NAMES: &[(&str, Kind)] = &[
    ("ipp", Kind::IPPool),
    ("ipps", Kind::IPPool),
    ("bgpp", Kind::BGPPeer),
    ("bgpps", Kind::BGPPeer),
    ("bp", Kind::BGPPeer),
    ("bps", Kind::BGPPeer),
    ("nos", Kind::Node),
    ("pros", Kind::Profile),
    ("pol", Kind::NetworkPolicy),
    ("pols", Kind::NetworkPolicy),
    ("gnps", Kind::GlobalNetworkPolicy),
    ("nps", Kind::NetworkPolicy),
];

/// Parses a kind argument.
pub fn from_arg(text: &str) -> Option<Kind> {
    let lower = text.to_ascii_lowercase();
    CALICOCTL_SHORT_NAMES
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, kind)| *kind)
        .or_else(|| Kind::from_cli_name(&lower))
}

/// For error messages: the plural of every kind.
pub fn accepted_list() -> String {
    let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.plural()).collect();
    names.sort_unstable();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calicoctl_names_are_accepted() {
        for (text, kind) in [
            ("IPPool", Kind::IPPool),
            ("ippools", Kind::IPPool),
            ("ipp", Kind::IPPool),
            ("pool", Kind::IPPool),
            ("BGPPeers", Kind::BGPPeer),
            ("bp", Kind::BGPPeer),
            ("bgpconfig", Kind::BGPConfiguration),
            ("bgpfilters", Kind::BGPFilter),
            ("ipamconfig", Kind::IPAMConfiguration),
            ("nodes", Kind::Node),
            ("wep", Kind::WorkloadEndpoint),
            ("hostendpoints", Kind::HostEndpoint),
            ("policy", Kind::NetworkPolicy),
            ("pols", Kind::NetworkPolicy),
            ("gnp", Kind::GlobalNetworkPolicy),
            ("globalnetworkpolicies", Kind::GlobalNetworkPolicy),
            ("profiles", Kind::Profile),
        ] {
            assert_eq!(from_arg(text), Some(kind), "{text}");
        }
        assert_eq!(from_arg("ippoool"), None);
    }
}

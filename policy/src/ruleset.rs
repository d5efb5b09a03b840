//! What the compiler produces and the renderer and applier consume: one
//! [`Ruleset`] per IP [`Family`] (chains of the `filter` and `nat` tables and
//! the ipsets they match), and the [`HOOKS`] from built-in chains into
//! Brindle's. Plain data, so `compile`, `render`, `names` and `apply` all
//! depend on it and not on each other.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::names;

/// IPv4 or IPv6: each has its own iptables and ipsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `iptables`, `family inet` sets.
    V4,
    /// `ip6tables`, `family inet6` sets.
    V6,
}

impl Family {
    /// Both families, v4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// `4` or `6`.
    pub fn version(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    /// Whether `net` belongs to this family.
    pub fn contains(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        )
    }

    /// ipset's `family` keyword.
    pub fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }
}

/// The kind of an ipset Brindle creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `hash:net`: addresses and CIDRs.
    HashNet,
    /// `hash:net,iface`: (address, interface) pairs.
    HashNetIface,
}

impl SetKind {
    /// ipset's type name.
    pub fn type_name(self) -> &'static str {
        match self {
            SetKind::HashNet => "hash:net",
            SetKind::HashNetIface => "hash:net,iface",
        }
    }
}

/// One ipset: its type and members in ipset's own spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSet {
    /// Set type.
    pub kind: SetKind,
    /// Members in the spelling `ipset save` prints, so they compare
    /// directly with what is read back: `10.0.0.1`, `10.0.0.0/24`,
    /// `10.0.0.1,cali1234` (host prefixes lose their `/32` or `/128`).
    pub members: BTreeSet<String>,
}

/// The chains of one table: name → rule bodies (what follows `-A <chain>`).
pub type Chains = BTreeMap<String, Vec<String>>;

/// Everything Brindle programs for one IP family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The family.
    pub family: Family,
    /// `filter` table chains.
    pub filter: Chains,
    /// `nat` table chains.
    pub nat: Chains,
    /// ipsets by name.
    pub ipsets: BTreeMap<String, IpSet>,
}

impl Ruleset {
    /// Number of rules over both tables (hooks excluded).
    pub fn rule_count(&self) -> usize {
        self.filter
            .values()
            .chain(self.nat.values())
            .map(Vec::len)
            .sum()
    }
}

/// A jump from a built-in chain into Brindle's: (table, built-in, target).
pub const HOOKS: [(&str, &str, &str); 4] = [
    ("filter", "FORWARD", names::FORWARD_CHAIN),
    ("filter", "INPUT", names::INPUT_CHAIN),
    ("filter", "OUTPUT", names::OUTPUT_CHAIN),
    ("nat", "POSTROUTING", names::POSTROUTING_CHAIN),
];

//! `IPPool` and `IPAMConfiguration` specs (Calico `ippool.go`,
//! `ipamconfig.go`) with their defaults and Calico's validation rules.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::meta::{is_false, ObjectMeta};
use crate::selector::{Labels, Selector, SelectorError};
use crate::validate::{check_range, check_selector, net_family, Problems};

/// Encapsulation mode for `ipipMode` / `vxlanMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum EncapMode {
    /// No encapsulation.
    #[default]
    Never,
    /// Always encapsulate traffic to other nodes.
    Always,
    /// Encapsulate only when the peer node is in another subnet.
    CrossSubnet,
}

impl EncapMode {
    /// Whether the mode enables encapsulation at all.
    pub fn enabled(self) -> bool {
        self != EncapMode::Never
    }
}

/// What a pool may allocate for (`allowedUses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AllowedUse {
    /// Workload (pod/container) addresses.
    Workload,
    /// Tunnel device addresses.
    Tunnel,
    /// Service LoadBalancer addresses.
    LoadBalancer,
}

/// `assignmentMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum AssignmentMode {
    /// IPAM picks addresses from this pool on its own.
    #[default]
    Automatic,
    /// Only explicitly requested addresses come from this pool.
    Manual,
}

/// IPv4 block sizes Calico IPAM supports.
pub const BLOCK_SIZE_V4: (u8, u8) = (20, 32);
/// IPv6 block sizes Calico IPAM supports.
pub const BLOCK_SIZE_V6: (u8, u8) = (116, 128);
/// Default IPv4 block size (a /26: 64 addresses).
pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
/// Default IPv6 block size.
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;

/// `IPPool.spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPPoolSpec {
    /// The pool CIDR (required; host bits are cleared by `defaulted`).
    #[serde(default)]
    pub cidr: String,
    /// VXLAN encapsulation (default Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    /// IP-in-IP encapsulation (default Never; IPv4 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    /// Masquerade traffic leaving the pool.
    #[serde(default, skip_serializing_if = "is_false")]
    pub nat_outgoing: bool,
    /// IPAM assigns nothing from a disabled pool.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Do not advertise this pool's routes over BGP.
    #[serde(default, rename = "disableBGPExport", skip_serializing_if = "is_false")]
    pub disable_bgp_export: bool,
    /// Block size (default 26 for IPv4, 122 for IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i64>,
    /// Nodes that may allocate from this pool (default `all()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Namespaces whose workloads may allocate from this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// What the pool is for (default Workload + Tunnel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
    /// Automatic or Manual assignment (default Automatic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

impl IPPoolSpec {
    /// The parsed pool CIDR, if valid.
    pub fn net(&self) -> Option<IpNet> {
        self.cidr.parse::<IpNet>().ok()
    }

    /// The effective block size (explicit or the family default).
    pub fn effective_block_size(&self) -> Option<u8> {
        match (self.block_size, self.net()) {
            (Some(b), _) => u8::try_from(b).ok(),
            (None, Some(IpNet::V4(_))) => Some(DEFAULT_BLOCK_SIZE_V4),
            (None, Some(IpNet::V6(_))) => Some(DEFAULT_BLOCK_SIZE_V6),
            (None, None) => None,
        }
    }

    /// The parsed `nodeSelector` (`all()` when unset).
    pub fn node_selector(&self) -> Result<Selector, SelectorError> {
        Selector::parse(self.node_selector.as_deref().unwrap_or("all()"))
    }

    /// Whether the pool may be used for `use_` (unset `allowedUses` means
    /// Workload and Tunnel).
    pub fn allows(&self, use_: AllowedUse) -> bool {
        if self.allowed_uses.is_empty() {
            matches!(use_, AllowedUse::Workload | AllowedUse::Tunnel)
        } else {
            self.allowed_uses.contains(&use_)
        }
    }

    /// Whether IPAM may automatically assign `use_` addresses from this pool
    /// on a node with these labels: enabled, Automatic assignment, the use
    /// allowed, and the node selected.
    pub fn assignable_on<L: Labels + ?Sized>(&self, use_: AllowedUse, node_labels: &L) -> bool {
        !self.disabled
            && self.assignment_mode.unwrap_or_default() == AssignmentMode::Automatic
            && self.allows(use_)
            && self.node_selector().is_ok_and(|s| s.matches(node_labels))
    }

    /// Fills in Calico's defaults: block size, Never/Never encapsulation,
    /// `all()` node selector, Workload+Tunnel uses, Automatic assignment. A
    /// bare address as CIDR becomes a /32 (/128) pool, as in Calico.
    pub fn defaulted(&mut self) {
        if let Ok(ip) = self.cidr.parse::<std::net::IpAddr>() {
            self.cidr = IpNet::from(ip).to_string();
        }
        if self.block_size.is_none() {
            self.block_size = self.effective_block_size().map(i64::from);
        }
        self.ipip_mode.get_or_insert(EncapMode::Never);
        self.vxlan_mode.get_or_insert(EncapMode::Never);
        self.node_selector.get_or_insert_with(|| "all()".into());
        if self.allowed_uses.is_empty() {
            self.allowed_uses = vec![AllowedUse::Workload, AllowedUse::Tunnel];
        }
        self.assignment_mode
            .get_or_insert(AssignmentMode::Automatic);
    }

    /// Calico's IPPool rules.
    pub fn validate(&self, _meta: &ObjectMeta, p: &mut Problems) {
        let net = if self.cidr.is_empty() {
            p.add("spec.cidr", "required");
            None
        } else {
            match self.cidr.parse::<IpNet>() {
                Ok(net) => Some(net),
                Err(_) => {
                    p.add("spec.cidr", format!("'{}' is not a valid CIDR", self.cidr));
                    None
                }
            }
        };
        let ipip = self.ipip_mode.unwrap_or_default();
        let vxlan = self.vxlan_mode.unwrap_or_default();
        if ipip.enabled() && vxlan.enabled() {
            p.add(
                "spec",
                "ipipMode and vxlanMode cannot both be enabled on the same pool",
            );
        }
        if let Some(net) = net {
            let (min, max) = if net_family(&net) == 4 {
                BLOCK_SIZE_V4
            } else {
                BLOCK_SIZE_V6
            };
            if let Some(block) = self.block_size {
                check_range(p, "spec.blockSize", block, min.into(), max.into());
                // Calico checks the size only for enabled pools: a disabled
                // pool allocates nothing.
                if !self.disabled
                    && block >= i64::from(min)
                    && block <= i64::from(max)
                    && i64::from(net.prefix_len()) > block
                {
                    p.add(
                        "spec.blockSize",
                        format!(
                            "block size /{block} is larger than the pool {net}: the pool prefix must be /{block} or shorter"
                        ),
                    );
                }
            }
            if net.trunc() != net {
                p.add(
                    "spec.cidr",
                    format!(
                        "{net} is not strictly masked (host bits are set): use {}",
                        net.trunc()
                    ),
                );
            }
            if net_family(&net) == 6 && ipip.enabled() {
                p.add("spec.ipipMode", "IPIP is not supported on an IPv6 pool");
            }
            let link_local: IpNet = if net_family(&net) == 4 {
                IpNet::V4("169.254.0.0/16".parse().unwrap_or_default())
            } else {
                IpNet::V6("fe80::/10".parse().unwrap_or_default())
            };
            if nets_overlap(&net, &link_local) {
                p.add(
                    "spec.cidr",
                    format!("{net} overlaps the link-local range {link_local}"),
                );
            }
            if net.addr().is_loopback() || net.addr().is_multicast() {
                p.add(
                    "spec.cidr",
                    format!("{net} is a loopback or multicast range"),
                );
            }
        }
        if let Some(sel) = &self.node_selector {
            check_selector(p, "spec.nodeSelector", sel);
        }
        if let Some(sel) = &self.namespace_selector {
            check_selector(p, "spec.namespaceSelector", sel);
        }
        let mut seen = Vec::new();
        for (i, use_) in self.allowed_uses.iter().enumerate() {
            if seen.contains(use_) {
                p.add(
                    format!("spec.allowedUses[{i}]"),
                    format!("{use_:?} is listed twice"),
                );
            }
            seen.push(*use_);
        }
        if seen.contains(&AllowedUse::LoadBalancer)
            && (seen.contains(&AllowedUse::Workload) || seen.contains(&AllowedUse::Tunnel))
        {
            p.add(
                "spec.allowedUses",
                "LoadBalancer cannot be combined with Workload or Tunnel",
            );
        }
        if seen.contains(&AllowedUse::LoadBalancer) && (ipip.enabled() || vxlan.enabled()) {
            p.add(
                "spec.allowedUses",
                "a LoadBalancer pool cannot use IPIP or VXLAN",
            );
        }
    }
}

/// Whether two networks share any address.
pub fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `IPAMConfiguration.spec` (the single resource named `default`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMConfigSpec {
    /// Forbid borrowing addresses from other nodes' blocks.
    #[serde(default)]
    pub strict_affinity: bool,
    /// Maximum blocks affine to one host; 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blocks_per_host: Option<i64>,
    /// Whether nodes claim new blocks automatically (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocate_blocks: Option<bool>,
}

impl IPAMConfigSpec {
    /// Fills `autoAllocateBlocks: true` (Calico IPAM's default when unset).
    pub fn defaulted(&mut self) {
        self.auto_allocate_blocks.get_or_insert(true);
    }

    /// The name must be `default`; `maxBlocksPerHost` is 0..1000000.
    pub fn validate(&self, meta: &ObjectMeta, p: &mut Problems) {
        if !meta.name.is_empty() && meta.name != "default" {
            p.add(
                "metadata.name",
                format!(
                    "IPAMConfiguration must be named 'default', not '{}'",
                    meta.name
                ),
            );
        }
        if let Some(max) = self.max_blocks_per_host {
            check_range(p, "spec.maxBlocksPerHost", max, 0, 1_000_000);
        }
    }
}

/// Checks a set of pools against each other: the pairs (by index) whose
/// CIDRs overlap.
pub fn overlapping_pools(pools: &[&IPPoolSpec]) -> Vec<(usize, usize)> {
    let nets: Vec<Option<IpNet>> = pools.iter().map(|p| p.net()).collect();
    let mut out = Vec::new();
    for i in 0..nets.len() {
        for j in i + 1..nets.len() {
            if let (Some(a), Some(b)) = (&nets[i], &nets[j]) {
                if nets_overlap(a, b) {
                    out.push((i, j));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(spec: &IPPoolSpec) -> Vec<String> {
        let mut p = Problems::default();
        spec.validate(&ObjectMeta::default(), &mut p);
        p.list.iter().map(|e| e.to_string()).collect()
    }

    fn pool(cidr: &str) -> IPPoolSpec {
        let mut s = IPPoolSpec {
            cidr: cidr.into(),
            ..Default::default()
        };
        s.defaulted();
        s
    }

    #[test]
    fn defaults() {
        let s = pool("10.1.2.3/16");
        assert_eq!(
            problems(&s),
            ["spec.cidr: 10.1.2.3/16 is not strictly masked (host bits are set): use 10.1.0.0/16"]
        );
        assert_eq!(pool("10.9.9.9").cidr, "10.9.9.9/32");
        let s = pool("10.1.0.0/16");
        assert_eq!(s.block_size, Some(26));
        assert_eq!(s.ipip_mode, Some(EncapMode::Never));
        assert_eq!(s.node_selector.as_deref(), Some("all()"));
        assert_eq!(
            s.allowed_uses,
            vec![AllowedUse::Workload, AllowedUse::Tunnel]
        );
        assert_eq!(pool("fd00::/48").block_size, Some(122));
        assert!(problems(&s).is_empty());
    }

    #[test]
    fn rules() {
        let mut s = pool("10.0.0.0/16");
        s.block_size = Some(33);
        assert_eq!(problems(&s), ["spec.blockSize: 33 is out of range 20..32"]);
        let mut s = pool("10.0.0.0/28");
        s.block_size = Some(26);
        assert!(problems(&s)[0].contains("larger than the pool"));
        s.disabled = true;
        assert!(problems(&s).is_empty());
        let mut s = pool("10.0.0.0/16");
        s.ipip_mode = Some(EncapMode::Always);
        s.vxlan_mode = Some(EncapMode::CrossSubnet);
        assert!(problems(&s)[0].contains("cannot both be enabled"));
        let mut s = pool("fd00::/48");
        s.ipip_mode = Some(EncapMode::Always);
        assert_eq!(
            problems(&s),
            ["spec.ipipMode: IPIP is not supported on an IPv6 pool"]
        );
        assert!(problems(&pool("169.254.0.0/24"))[0].contains("link-local"));
        assert!(problems(&pool("fe80::/64"))[0].contains("link-local"));
        assert!(problems(&pool("10.0.0.0/33"))[0].contains("not a valid CIDR"));
        let mut s = pool("10.0.0.0/16");
        s.node_selector = Some("a ==".into());
        assert!(problems(&s)[0].starts_with("spec.nodeSelector: invalid selector"));
    }

    #[test]
    fn assignability() {
        use std::collections::BTreeMap;
        let zone_a: BTreeMap<String, String> = BTreeMap::from([("zone".into(), "a".into())]);
        let mut s = pool("10.0.0.0/16");
        assert!(s.assignable_on(AllowedUse::Workload, &zone_a));
        assert!(!s.assignable_on(AllowedUse::LoadBalancer, &zone_a));
        s.node_selector = Some("zone == 'b'".into());
        assert!(!s.assignable_on(AllowedUse::Workload, &zone_a));
        s.node_selector = Some("zone == 'a'".into());
        s.disabled = true;
        assert!(!s.assignable_on(AllowedUse::Workload, &zone_a));
        s.disabled = false;
        s.assignment_mode = Some(AssignmentMode::Manual);
        assert!(!s.assignable_on(AllowedUse::Workload, &zone_a));
    }

    #[test]
    fn overlaps() {
        let a = pool("10.0.0.0/16");
        let b = pool("10.0.128.0/24");
        let c = pool("10.1.0.0/16");
        assert_eq!(overlapping_pools(&[&a, &b, &c]), vec![(0, 1)]);
    }
}

//! The host limits a node's dataplane has to fit in, checked so that an
//! operator is told by name before the kernel silently drops entries.
//!
//! The kernel's neighbour table is bounded host-wide by
//! `net.ipv4.neigh.default.gc_thresh2` (above it, entries are reclaimed
//! aggressively) and `gc_thresh3` (above it, new entries are refused:
//! "neighbor table overflow" in the kernel log, ARP fails, packets to the
//! affected neighbours are lost, BGP sessions die by hold timer). A node
//! needs a static entry per remote VXLAN endpoint and an ARP entry per BGP
//! peer on its segment, so a large fabric outgrows the defaults (512 and
//! 1024); like Calico, Brindle leaves the host's sysctls alone and says
//! what to raise.

use crate::sysctl::{read, SysctlKey};

/// The neighbour-table limits that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourLimits {
    pub gc_thresh2: usize,
    pub gc_thresh3: usize,
}

impl NeighbourLimits {
    /// The host's (IPv4) limits; `None` where they cannot be read (a
    /// network namespace without them, no `/proc`).
    pub fn of_host() -> Option<NeighbourLimits> {
        let value = |leaf: &str| -> Option<usize> {
            read(&SysctlKey::new(["net", "ipv4", "neigh", "default", leaf]))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some(NeighbourLimits {
            gc_thresh2: value("gc_thresh2")?,
            gc_thresh3: value("gc_thresh3")?,
        })
    }
}

/// Neighbour entries a node needs: one static entry per remote VXLAN
/// endpoint and one ARP entry per BGP peer (an upper bound: peers behind a
/// router share the router's).
pub fn neighbour_entries(vteps: usize, peers: usize) -> usize {
    vteps + peers
}

/// What to tell the operator when `needed` entries do not fit `limits`
/// comfortably, naming the sysctls and values that would.
pub fn neighbour_warning(needed: usize, limits: NeighbourLimits) -> Option<String> {
    if needed <= limits.gc_thresh2 / 2 {
        return None;
    }
    let suggested = (needed * 4).next_power_of_two().max(4096);
    let severity = if needed >= limits.gc_thresh3 {
        "more than the kernel keeps: ARP will fail for some neighbours"
    } else {
        "close to what the kernel keeps"
    };
    Some(format!(
        "this node needs about {needed} neighbour entries (VXLAN endpoints and BGP peers), \
         {severity} (net.ipv4.neigh.default.gc_thresh2={}, gc_thresh3={}); raise \
         net.ipv4.neigh.default.gc_thresh1/2/3 to {}/{}/{} (and the ipv6 ones likewise)",
        limits.gc_thresh2,
        limits.gc_thresh3,
        suggested / 4,
        suggested / 2,
        suggested
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: NeighbourLimits = NeighbourLimits {
        gc_thresh2: 512,
        gc_thresh3: 1024,
    };

    #[test]
    fn small_fabrics_fit_the_defaults_silently() {
        assert_eq!(neighbour_warning(neighbour_entries(39, 39), DEFAULTS), None);
        assert_eq!(neighbour_warning(256, DEFAULTS), None);
    }

    #[test]
    fn large_fabrics_are_told_which_sysctls_to_raise_and_to_what() {
        // 250 nodes with VXLAN: 249 endpoints and 249 peers.
        let text = neighbour_warning(neighbour_entries(249, 249), DEFAULTS).unwrap();
        assert!(text.contains("about 498 neighbour entries"), "{text}");
        assert!(text.contains("close to what the kernel keeps"), "{text}");
        assert!(text.contains("gc_thresh1/2/3 to 1024/2048/4096"), "{text}");
        let text = neighbour_warning(2_000, DEFAULTS).unwrap();
        assert!(text.contains("ARP will fail"), "{text}");
        assert!(text.contains("to 2048/4096/8192"), "{text}");
        // Raised limits: quiet again.
        let raised = NeighbourLimits {
            gc_thresh2: 8192,
            gc_thresh3: 16384,
        };
        assert_eq!(neighbour_warning(2_000, raised), None);
    }
}

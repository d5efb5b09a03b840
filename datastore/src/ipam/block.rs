//! The allocation block document and the pure logic over it.
//!
//! A block is a fixed CIDR carved out of a pool (its `blockSize`). Its
//! document is the single source of truth for which of its addresses are in
//! use: every allocation and release rewrites the whole document with a
//! compare-and-swap on its revision, so two writers can never both hand out
//! the same ordinal. Nothing here does I/O or panics on stored input: an
//! out-of-range ordinal in a document read from the store is reported by
//! [`AllocationBlock::inconsistencies`], never indexed blindly.
//!
//! Layout (Calico's `AllocationBlock`, field for field where it matters):
//!
//! ```text
//! { "cidr": "10.0.0.0/26",
//!   "affinity": "host:node-a",           // null: nobody's (claimable)
//!   "allocations": [0, null, 1, ...],     // per ordinal: index into attributes
//!   "unallocated": [1, 3, 4, ...],        // free ordinals, next to hand out first
//!   "attributes": [{"handle_id": "net.c1", "secondary": {"node": "node-a"}}],
//!   "sequenceNumber": 7,                  // bumped by every allocation
//!   "sequenceNumberForAllocation": {"0": 5, "2": 7},
//!   "emptySince": null }                  // unix seconds when it last became empty
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The secondary attribute naming the node an address was allocated for
/// (how a borrowed address is attributed to the node that routes it).
pub const ATTR_NODE: &str = "node";

/// Who an allocation belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAttribute {
    /// The handle that owns the address (`None`: allocated without one).
    pub handle_id: Option<String>,
    /// Free-form attributes (`node`, `namespace`, `pod`, ...).
    #[serde(default)]
    pub secondary: BTreeMap<String, String>,
}

/// One block document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationBlock {
    pub cidr: IpNet,
    /// `host:<node>` when a node holds the block's affinity.
    pub affinity: Option<String>,
    pub allocations: Vec<Option<usize>>,
    pub unallocated: Vec<usize>,
    pub attributes: Vec<AllocationAttribute>,
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    /// When the last allocation was released (unix seconds); `None` while in use.
    #[serde(default)]
    pub empty_since: Option<u64>,
}

/// One address taken out of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    pub ip: IpAddr,
    /// The block's sequence number recorded with this allocation.
    pub sequence: u64,
}

/// One allocation as found in a block, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationView<'a> {
    pub ip: IpAddr,
    pub attribute: Option<&'a AllocationAttribute>,
    pub sequence: Option<u64>,
}

/// The affinity string Calico writes for a node.
pub fn host_affinity(node: &str) -> String {
    format!("host:{node}")
}

/// Address arithmetic over both families as u128.
pub(crate) fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub(crate) fn u128_to_ip(v: u128, like: IpAddr) -> IpAddr {
    match like {
        // Only called with values inside an IPv4 network, so the cast is exact.
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// Number of addresses in a network (saturating for /0 IPv6).
pub(crate) fn net_size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// A host network (/32 or /128) for an address.
pub fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

impl AllocationBlock {
    /// A fresh, empty block. `cidr` is truncated to its network address.
    pub fn new(cidr: IpNet, affinity: Option<String>) -> Self {
        let cidr = cidr.trunc();
        let size = usize::try_from(net_size(&cidr)).unwrap_or(usize::MAX);
        AllocationBlock {
            cidr,
            affinity,
            allocations: vec![None; size],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            sequence_number: 0,
            sequence_number_for_allocation: BTreeMap::new(),
            empty_since: None,
        }
    }

    /// Total addresses in the block.
    pub fn size(&self) -> usize {
        self.allocations.len()
    }

    /// Addresses in use.
    pub fn in_use(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    /// Free addresses.
    pub fn free(&self) -> usize {
        self.unallocated.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_use() == 0
    }

    /// The node named by the affinity, if any.
    pub fn affine_node(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    /// The ordinal of `ip` in this block, if it is inside.
    pub fn ordinal(&self, ip: IpAddr) -> Option<usize> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        usize::try_from(ip_to_u128(ip) - ip_to_u128(self.cidr.network())).ok()
    }

    /// The address at `ordinal`.
    pub fn ip_at(&self, ordinal: usize) -> IpAddr {
        u128_to_ip(
            ip_to_u128(self.cidr.network()) + ordinal as u128,
            self.cidr.network(),
        )
    }

    fn attribute_index(&mut self, attr: AllocationAttribute) -> usize {
        if let Some(i) = self.attributes.iter().position(|a| *a == attr) {
            return i;
        }
        self.attributes.push(attr);
        self.attributes.len() - 1
    }

    fn record(&mut self, ordinal: usize, attr_index: usize) -> Allocated {
        self.sequence_number += 1;
        self.allocations[ordinal] = Some(attr_index);
        self.sequence_number_for_allocation
            .insert(ordinal.to_string(), self.sequence_number);
        self.empty_since = None;
        Allocated {
            ip: self.ip_at(ordinal),
            sequence: self.sequence_number,
        }
    }

    /// Takes up to `n` free addresses in free-list order (Calico hands out a
    /// block's network and broadcast addresses too: they are /32s here).
    pub fn auto_assign(&mut self, n: usize, attr: AllocationAttribute) -> Vec<Allocated> {
        if n == 0 || self.unallocated.is_empty() {
            return Vec::new();
        }
        let attr_index = self.attribute_index(attr);
        let take = n.min(self.unallocated.len());
        let size = self.allocations.len();
        let ordinals: Vec<usize> = self.unallocated.drain(..take).collect();
        let out = ordinals
            .into_iter()
            .filter(|&o| o < size)
            .map(|o| self.record(o, attr_index))
            .collect::<Vec<_>>();
        self.compact_attributes();
        out
    }

    /// Takes one specific address. Errors: not in this block, or in use
    /// (with the handle that holds it).
    pub fn assign(
        &mut self,
        ip: IpAddr,
        attr: AllocationAttribute,
    ) -> Result<Allocated, AssignError> {
        let ordinal = self.ordinal(ip).ok_or(AssignError::NotInBlock)?;
        if let Some(Some(holder)) = self.allocations.get(ordinal) {
            let holder = self.attributes.get(*holder).cloned();
            return Err(AssignError::InUse(holder.and_then(|a| a.handle_id)));
        }
        self.unallocated.retain(|&o| o != ordinal);
        let attr_index = self.attribute_index(attr);
        Ok(self.record(ordinal, attr_index))
    }

    /// Frees `ip` if it is allocated and, when given, still held by
    /// `handle` with sequence number `sequence` (so a stale release cannot
    /// free an address that was since handed to someone else). Returns
    /// whether it freed anything. Freed ordinals go to the back of the free
    /// list so a just-released address is reused last.
    pub fn release(
        &mut self,
        ip: IpAddr,
        handle: Option<&str>,
        sequence: Option<u64>,
        now_unix: u64,
    ) -> Result<bool, ReleaseRefused> {
        let Some(ordinal) = self.ordinal(ip) else {
            return Ok(false);
        };
        let Some(Some(attr_index)) = self.allocations.get(ordinal).copied() else {
            return Ok(false);
        };
        if let Some(h) = handle {
            let holder = self
                .attributes
                .get(attr_index)
                .and_then(|a| a.handle_id.as_deref());
            if holder != Some(h) {
                return Err(ReleaseRefused::OtherHandle(holder.map(str::to_owned)));
            }
        }
        let key = ordinal.to_string();
        if let Some(expected) = sequence {
            let found = self.sequence_number_for_allocation.get(&key).copied();
            if found != Some(expected) {
                return Err(ReleaseRefused::SequenceMismatch { expected, found });
            }
        }
        self.allocations[ordinal] = None;
        self.sequence_number_for_allocation.remove(&key);
        self.unallocated.push(ordinal);
        self.compact_attributes();
        if self.is_empty() {
            self.empty_since = Some(now_unix);
        }
        Ok(true)
    }

    /// Moves `ip` from handle `from` to handle `to`, keeping the address,
    /// its other attributes and its sequence number. Returns whether it
    /// moved (false: not allocated); refused when another handle holds it.
    pub fn rehandle(&mut self, ip: IpAddr, from: &str, to: &str) -> Result<bool, ReleaseRefused> {
        let Some(ordinal) = self.ordinal(ip) else {
            return Ok(false);
        };
        let Some(Some(attr_index)) = self.allocations.get(ordinal).copied() else {
            return Ok(false);
        };
        let Some(mut attr) = self.attributes.get(attr_index).cloned() else {
            return Ok(false);
        };
        if attr.handle_id.as_deref() != Some(from) {
            return Err(ReleaseRefused::OtherHandle(attr.handle_id));
        }
        attr.handle_id = Some(to.to_owned());
        let new_index = self.attribute_index(attr);
        self.allocations[ordinal] = Some(new_index);
        self.compact_attributes();
        Ok(true)
    }

    /// Frees every address held by `handle`; returns them.
    pub fn release_handle(&mut self, handle: &str, now_unix: u64) -> Vec<IpAddr> {
        let ips: Vec<IpAddr> = self
            .allocations_view()
            .filter(|a| a.attribute.and_then(|x| x.handle_id.as_deref()) == Some(handle))
            .map(|a| a.ip)
            .collect();
        for ip in &ips {
            // Cannot be refused: no handle/sequence condition given.
            let _ = self.release(*ip, None, None, now_unix);
        }
        ips
    }

    /// Addresses held by `handle`.
    pub fn ips_of_handle(&self, handle: &str) -> Vec<IpAddr> {
        self.allocations_view()
            .filter(|a| a.attribute.and_then(|x| x.handle_id.as_deref()) == Some(handle))
            .map(|a| a.ip)
            .collect()
    }

    /// Drops attributes no allocation points at any more and renumbers.
    fn compact_attributes(&mut self) {
        let mut used = vec![false; self.attributes.len()];
        for i in self.allocations.iter().flatten() {
            if let Some(u) = used.get_mut(*i) {
                *u = true;
            }
        }
        if used.iter().all(|u| *u) {
            return;
        }
        let mut new_index = vec![None; self.attributes.len()];
        let mut kept = Vec::new();
        for (i, attr) in std::mem::take(&mut self.attributes).into_iter().enumerate() {
            if used[i] {
                new_index[i] = Some(kept.len());
                kept.push(attr);
            }
        }
        self.attributes = kept;
        for a in self.allocations.iter_mut() {
            if let Some(i) = *a {
                *a = new_index.get(i).copied().flatten();
            }
        }
    }

    /// Every allocated address with its owner.
    pub fn allocations_view(&self) -> impl Iterator<Item = AllocationView<'_>> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(move |(ordinal, a)| {
                a.map(|attr_index| AllocationView {
                    ip: self.ip_at(ordinal),
                    attribute: self.attributes.get(attr_index),
                    sequence: self
                        .sequence_number_for_allocation
                        .get(&ordinal.to_string())
                        .copied(),
                })
            })
    }

    /// Internal contradictions of a stored document (which a correct writer
    /// never produces): wrong lengths, an ordinal both free and allocated or
    /// neither, dangling attribute indexes.
    pub fn inconsistencies(&self) -> Vec<String> {
        let mut out = Vec::new();
        let size = usize::try_from(net_size(&self.cidr)).unwrap_or(usize::MAX);
        if self.allocations.len() != size {
            out.push(format!(
                "{} has {} allocation slots for {size} addresses",
                self.cidr,
                self.allocations.len()
            ));
        }
        let mut free = vec![0u32; self.allocations.len()];
        for &o in &self.unallocated {
            match free.get_mut(o) {
                Some(f) => *f += 1,
                None => out.push(format!("{}: free ordinal {o} out of range", self.cidr)),
            }
        }
        for (o, a) in self.allocations.iter().enumerate() {
            let listed = free.get(o).copied().unwrap_or(0);
            match (a, listed) {
                (Some(_), 0) | (None, 1) => {}
                (Some(_), _) => out.push(format!(
                    "{}: {} is both allocated and free",
                    self.cidr,
                    self.ip_at(o)
                )),
                (None, n) => out.push(format!(
                    "{}: {} is listed free {n} times",
                    self.cidr,
                    self.ip_at(o)
                )),
            }
            if let Some(i) = a {
                if *i >= self.attributes.len() {
                    out.push(format!(
                        "{}: {} points at missing attribute {i}",
                        self.cidr,
                        self.ip_at(o)
                    ));
                }
            }
        }
        out
    }
}

/// Why [`AllocationBlock::assign`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignError {
    NotInBlock,
    /// The address is taken (by this handle, if it has one).
    InUse(Option<String>),
}

/// Why [`AllocationBlock::release`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseRefused {
    /// The address is held by another handle now.
    OtherHandle(Option<String>),
    /// The address was released and re-allocated since the caller looked.
    SequenceMismatch { expected: u64, found: Option<u64> },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(h: &str) -> AllocationAttribute {
        AllocationAttribute {
            handle_id: Some(h.into()),
            secondary: BTreeMap::from([(ATTR_NODE.into(), "n1".into())]),
        }
    }

    #[test]
    fn assigns_in_order_and_reuses_released_last() {
        let mut b = AllocationBlock::new("10.0.0.0/30".parse().unwrap(), Some(host_affinity("n1")));
        let got = b.auto_assign(3, attr("a"));
        let ips: Vec<String> = got.iter().map(|a| a.ip.to_string()).collect();
        assert_eq!(ips, ["10.0.0.0", "10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            got.iter().map(|a| a.sequence).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(b.attributes.len(), 1, "one attribute shared by the handle");
        assert!(b
            .release("10.0.0.1".parse().unwrap(), Some("a"), Some(2), 9)
            .unwrap());
        let next = b.auto_assign(2, attr("b"));
        assert_eq!(next[0].ip.to_string(), "10.0.0.3");
        assert_eq!(next[1].ip.to_string(), "10.0.0.1");
        assert!(b.auto_assign(1, attr("c")).is_empty(), "block full");
        assert!(b.inconsistencies().is_empty());
        assert_eq!(b.affine_node(), Some("n1"));
    }

    #[test]
    fn rehandle_moves_one_address_and_keeps_its_sequence() {
        let mut b = AllocationBlock::new("10.0.0.0/30".parse().unwrap(), None);
        let got = b.auto_assign(2, attr("a"));
        let moved = got[1].ip;
        assert_eq!(b.rehandle(moved, "a", "b"), Ok(true));
        assert_eq!(b.ips_of_handle("a"), [got[0].ip]);
        assert_eq!(b.ips_of_handle("b"), [moved]);
        assert_eq!(
            b.rehandle(moved, "a", "c"),
            Err(ReleaseRefused::OtherHandle(Some("b".into())))
        );
        assert_eq!(b.rehandle("10.0.0.3".parse().unwrap(), "a", "b"), Ok(false));
        // The sequence number is the allocation's, not the handle's.
        assert!(b
            .release(moved, Some("b"), Some(got[1].sequence), 1)
            .unwrap());
        assert!(b.inconsistencies().is_empty(), "{:?}", b.inconsistencies());
    }

    #[test]
    fn stale_release_is_refused() {
        let mut b = AllocationBlock::new("10.0.0.0/31".parse().unwrap(), None);
        let first = b.assign("10.0.0.1".parse().unwrap(), attr("old")).unwrap();
        assert!(b.release(first.ip, None, Some(first.sequence), 1).unwrap());
        let again = b.assign(first.ip, attr("new")).unwrap();
        assert_eq!(
            b.release(first.ip, None, Some(first.sequence), 2),
            Err(ReleaseRefused::SequenceMismatch {
                expected: first.sequence,
                found: Some(again.sequence)
            })
        );
        assert_eq!(
            b.release(first.ip, Some("old"), None, 2),
            Err(ReleaseRefused::OtherHandle(Some("new".into())))
        );
        assert_eq!(
            b.assign(first.ip, attr("x")),
            Err(AssignError::InUse(Some("new".into())))
        );
        assert_eq!(b.release_handle("new", 5), vec![first.ip]);
        assert_eq!(b.empty_since, Some(5));
        assert!(b.attributes.is_empty());
        assert_eq!(b.release(first.ip, None, None, 6), Ok(false), "idempotent");
        assert!(b.inconsistencies().is_empty());
    }

    #[test]
    fn ipv6_and_json_round_trip() {
        let mut b = AllocationBlock::new("fd00::/122".parse().unwrap(), None);
        assert_eq!(b.size(), 64);
        let got = b.auto_assign(2, attr("v6"));
        assert_eq!(got[1].ip.to_string(), "fd00::1");
        b.assign("fd00::3f".parse().unwrap(), attr("fixed"))
            .unwrap();
        let text = serde_json::to_string(&b).unwrap();
        assert!(text.contains("\"sequenceNumberForAllocation\":{\"0\":1,\"1\":2,\"63\":3}"));
        let back: AllocationBlock = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b);
        assert_eq!(
            back.ips_of_handle("fixed"),
            vec!["fd00::3f".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn inconsistencies_are_reported_not_panicked() {
        let mut b = AllocationBlock::new("10.0.0.0/31".parse().unwrap(), None);
        b.allocations[0] = Some(7);
        b.unallocated.push(5);
        let problems = b.inconsistencies();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(b.allocations_view().count(), 1);
    }
}

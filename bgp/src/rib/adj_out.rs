//! Adj-RIB-Out of one peer: what it has been sent, and what still has to be.
//!
//! The RIB records the desired state per prefix with `AdjRibOut::set`;
//! changes accumulate until the session layer calls
//! [`AdjRibOut::take_updates`], which returns them packed for UPDATE
//! messages: withdrawals together, and announcements grouped by attribute set
//! (attributes are interned, so grouping is by pointer) and address family,
//! so one UPDATE carries as many prefixes as fit. A prefix that changes
//! several times before the flush is sent once, in its final state; one that
//! returns to what the peer already has is not sent at all.

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;

use bytes::Bytes;

use super::attrs::PathAttrs;
use super::table::PrefixMap;
use crate::packet::{
    build_announcements, build_withdrawals, EncodeContext, EncodeError, Family, Nlri,
};

/// One UPDATE's worth of changes (before splitting at the maximum message
/// size, which is the codec's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateBatch {
    /// Withdraw these prefixes, all of one address family.
    Withdraw(Vec<IpNet>),
    /// Announce these prefixes, all of one address family, with `attrs`.
    Announce {
        attrs: Arc<PathAttrs>,
        prefixes: Vec<IpNet>,
    },
}

/// Announcements share an UPDATE when family (IPv6?) and interned
/// attribute set (by identity) agree.
type GroupKey = (bool, *const PathAttrs);

impl UpdateBatch {
    /// The UPDATE messages for this batch, split at the session's maximum
    /// message size (no ADD-PATH: prefixes carry no path identifier).
    pub fn encode(&self, ctx: &EncodeContext) -> Result<Vec<Bytes>, EncodeError> {
        let (prefixes, attrs) = match self {
            UpdateBatch::Withdraw(prefixes) => (prefixes, None),
            UpdateBatch::Announce { attrs, prefixes } => (prefixes, Some(attrs)),
        };
        let Some(first) = prefixes.first() else {
            return Ok(Vec::new());
        };
        let family = match first {
            IpNet::V4(_) => Family::IPV4_UNICAST,
            IpNet::V6(_) => Family::IPV6_UNICAST,
        };
        let nlri: Vec<Nlri> = prefixes.iter().map(|p| Nlri::new(*p)).collect();
        match attrs {
            None => build_withdrawals(family, &nlri, ctx),
            Some(a) => build_announcements(family, &a.attributes, a.next_hop, &nlri, ctx),
        }
    }
}

#[derive(Debug, Default)]
pub struct AdjRibOut {
    /// Routes as the peer has them (after the last flush).
    sent: PrefixMap<Arc<PathAttrs>>,
    /// Desired changes not flushed yet: `None` withdraws.
    pending: PrefixMap<Option<Arc<PathAttrs>>>,
    /// The next flush announces every route again (ROUTE-REFRESH).
    resend_all: bool,
}

fn group(
    groups: &mut HashMap<GroupKey, (Arc<PathAttrs>, Vec<IpNet>)>,
    prefix: IpNet,
    attrs: Arc<PathAttrs>,
) {
    let v6 = matches!(prefix, IpNet::V6(_));
    groups
        .entry((v6, Arc::as_ptr(&attrs)))
        .or_insert_with(|| (attrs, Vec::new()))
        .1
        .push(prefix);
}

impl AdjRibOut {
    /// Record that the peer should have `desired` for `prefix`.
    pub(crate) fn set(&mut self, prefix: IpNet, desired: Option<Arc<PathAttrs>>) {
        let sent = self.sent.get(&prefix);
        let same_as_sent = match (&desired, sent) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if same_as_sent {
            self.pending.remove(&prefix);
        } else {
            self.pending.insert(prefix, desired);
        }
    }

    pub fn has_pending(&self) -> bool {
        self.resend_all || !self.pending.is_empty()
    }

    /// Make the next [`Self::take_updates`] announce the whole table again,
    /// as a ROUTE-REFRESH request (RFC 2918) asks.
    pub(crate) fn request_resend(&mut self) {
        self.resend_all = true;
    }

    /// Routes as the peer has them (after the last flush), unordered.
    pub fn sent(&self) -> impl Iterator<Item = (IpNet, &Arc<PathAttrs>)> + '_ {
        self.sent.iter()
    }

    /// Number of routes the peer has (after the last flush).
    pub fn sent_len(&self) -> usize {
        self.sent.len()
    }

    /// The desired state for `prefix`, flushed or not.
    pub fn desired(&self, prefix: &IpNet) -> Option<&Arc<PathAttrs>> {
        match self.pending.get(prefix) {
            Some(p) => p.as_ref(),
            None => self.sent.get(prefix),
        }
    }

    /// Number of routes the peer has or will have after the next flush.
    pub fn len_desired(&self) -> usize {
        let added = self
            .pending
            .iter()
            .filter(|(p, d)| d.is_some() && !self.sent.contains_key(p))
            .count();
        let removed = self
            .pending
            .iter()
            .filter(|(p, d)| d.is_none() && self.sent.contains_key(p))
            .count();
        self.sent.len() + added - removed
    }

    /// Take every pending change, packed: withdrawals first (IPv4 then
    /// IPv6), then one batch per (family, attribute set). Prefixes are sorted
    /// within a batch and batches by their first prefix, so output is
    /// deterministic. The changes count as sent once returned.
    pub fn take_updates(&mut self) -> Vec<UpdateBatch> {
        let mut withdraw_v4 = Vec::new();
        let mut withdraw_v6 = Vec::new();
        let mut groups: HashMap<GroupKey, (Arc<PathAttrs>, Vec<IpNet>)> = HashMap::new();
        // Replaced rather than drained: a full-table burst must not leave a
        // table-sized allocation behind.
        for (prefix, desired) in std::mem::take(&mut self.pending) {
            let v6 = matches!(prefix, IpNet::V6(_));
            match desired {
                None => {
                    if self.sent.remove(&prefix).is_some() {
                        if v6 {
                            withdraw_v6.push(prefix);
                        } else {
                            withdraw_v4.push(prefix);
                        }
                    }
                }
                Some(attrs) => {
                    self.sent.insert(prefix, Arc::clone(&attrs));
                    if !self.resend_all {
                        group(&mut groups, prefix, attrs);
                    }
                }
            }
        }
        if std::mem::take(&mut self.resend_all) {
            for (prefix, attrs) in self.sent.iter() {
                group(&mut groups, prefix, Arc::clone(attrs));
            }
        }
        let mut out = Vec::new();
        for mut w in [withdraw_v4, withdraw_v6] {
            if !w.is_empty() {
                w.sort_unstable();
                out.push(UpdateBatch::Withdraw(w));
            }
        }
        let mut announces: Vec<(Arc<PathAttrs>, Vec<IpNet>)> = groups.into_values().collect();
        for (_, prefixes) in &mut announces {
            prefixes.sort_unstable();
        }
        announces.sort_by(|a, b| a.1[0].cmp(&b.1[0]));
        out.extend(
            announces
                .into_iter()
                .map(|(attrs, prefixes)| UpdateBatch::Announce { attrs, prefixes }),
        );
        out
    }
}

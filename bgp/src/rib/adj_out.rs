//! Adj-RIB-Out of one peer, kept implicit: what the peer has is, for every
//! prefix, the export of the Loc-RIB best route to it (as in BIRD, which
//! keeps no Adj-RIB-Out by default). Only the changes not yet sent are
//! stored, so a peer costs nothing per route once its UPDATEs are out.
//!
//! The RIB records each change with what the peer had before it
//! (`AdjRibOut::record`); [`crate::rib::Rib::take_updates`] then computes
//! the current export of each changed prefix and returns the differences
//! packed for UPDATE messages: withdrawals together, and announcements
//! grouped by attribute set (attributes are interned, so grouping is by
//! pointer) and address family, so one UPDATE carries as many prefixes as
//! fit. A prefix that changes several times before the flush is sent once,
//! in its final state; one that returns to what the peer already has is not
//! sent at all.
//!
//! Invariant the RIB keeps: a prefix with no recorded change is, at the
//! peer, exactly the export of its current best route (or absent when that
//! export is `None`). Two states suspend it: a peer that just came up has
//! nothing yet and gets the whole table at the next flush, and a
//! ROUTE-REFRESH makes the next flush announce the whole table again.

use std::sync::Arc;

use ipnet::IpNet;

use bytes::Bytes;

use super::attrs::PathAttrs;
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

/// A prefix (with its prefix-table slot, a lookup hint) and what the peer
/// had for it when it first changed after a flush.
pub(crate) type Change = (IpNet, u32, Option<Arc<PathAttrs>>);

#[derive(Debug)]
pub struct AdjRibOut {
    /// Prefixes changed since the last flush, each with what the peer had
    /// then. A prefix may be listed more than once; the first entry counts.
    pending: Vec<Change>,
    /// The peer has nothing yet: the next flush sends the whole table and
    /// nothing is recorded per prefix until then.
    initial: bool,
    /// The next flush announces every route again (ROUTE-REFRESH).
    resend_all: bool,
    /// Routes the peer has after the last flush, IPv4 and IPv6.
    sent: [usize; 2],
}

impl Default for AdjRibOut {
    /// A peer that just came up: it has nothing and gets the whole table.
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            initial: true,
            resend_all: false,
            sent: [0, 0],
        }
    }
}

/// Announcements share an UPDATE when family (IPv6?) and interned
/// attribute set (by identity) agree.
type GroupKey = (bool, *const PathAttrs);

/// Builds the batches of one flush.
#[derive(Default)]
pub(crate) struct Packer {
    withdraw: [Vec<IpNet>; 2],
    groups: hashbrown::HashMap<GroupKey, (Arc<PathAttrs>, Vec<IpNet>)>,
}

fn family_index(prefix: &IpNet) -> usize {
    usize::from(matches!(prefix, IpNet::V6(_)))
}

impl Packer {
    pub(crate) fn withdraw(&mut self, prefix: IpNet) {
        self.withdraw[family_index(&prefix)].push(prefix);
    }

    pub(crate) fn announce(&mut self, prefix: IpNet, attrs: &Arc<PathAttrs>) {
        let v6 = matches!(prefix, IpNet::V6(_));
        self.groups
            .entry((v6, Arc::as_ptr(attrs)))
            .or_insert_with(|| (Arc::clone(attrs), Vec::new()))
            .1
            .push(prefix);
    }

    /// Announced prefixes per family.
    pub(crate) fn announced(&self) -> [usize; 2] {
        let mut counts = [0, 0];
        for ((v6, _), (_, prefixes)) in &self.groups {
            counts[usize::from(*v6)] += prefixes.len();
        }
        counts
    }

    /// Withdrawals first (IPv4 then IPv6), then one batch per (family,
    /// attribute set). Prefixes are sorted within a batch and batches by
    /// their first prefix, so output is deterministic.
    pub(crate) fn finish(self) -> Vec<UpdateBatch> {
        let mut out = Vec::new();
        for mut w in self.withdraw {
            if !w.is_empty() {
                w.sort_unstable();
                out.push(UpdateBatch::Withdraw(w));
            }
        }
        let mut announces: Vec<(Arc<PathAttrs>, Vec<IpNet>)> = self.groups.into_values().collect();
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

impl AdjRibOut {
    /// A peer that came up while the Loc-RIB was empty: it has what it
    /// should have (nothing), so changes are tracked from the start.
    pub(crate) fn up_to_date() -> Self {
        Self {
            initial: false,
            ..Self::default()
        }
    }

    /// `prefix` may have changed for the peer, which had `had` for it.
    /// Ignored while the peer waits for its initial table.
    pub(crate) fn record(&mut self, prefix: IpNet, slot: u32, had: Option<Arc<PathAttrs>>) {
        if !self.initial {
            self.pending.push((prefix, slot, had));
        }
    }

    /// The peer waits for its whole table: nothing to record per prefix.
    pub(crate) fn is_initial(&self) -> bool {
        self.initial
    }

    pub fn has_pending(&self) -> bool {
        self.initial || self.resend_all || !self.pending.is_empty()
    }

    /// Make the next flush announce the whole table again, as a
    /// ROUTE-REFRESH request (RFC 2918) asks.
    pub(crate) fn request_resend(&mut self) {
        self.resend_all = true;
    }

    /// Number of routes the peer has (after the last flush).
    pub fn sent_len(&self) -> usize {
        self.sent[0] + self.sent[1]
    }

    /// Number of routes of one family the peer has (after the last flush).
    pub fn sent_len_of(&self, v6: bool) -> usize {
        self.sent[usize::from(v6)]
    }

    /// Starts a flush: the recorded changes, first entry per prefix, sorted;
    /// and whether the whole table is to be announced.
    pub(crate) fn start_flush(&mut self) -> (Vec<Change>, bool) {
        // Replaced rather than drained: a burst must not leave a large
        // allocation behind.
        let mut pending = std::mem::take(&mut self.pending);
        // Stable: the first change of a prefix stays first, and dedup keeps it.
        pending.sort_by_key(|(prefix, _, _)| *prefix);
        pending.dedup_by(|later, first| later.0 == first.0);
        let whole_table = std::mem::take(&mut self.initial) | std::mem::take(&mut self.resend_all);
        (pending, whole_table)
    }

    /// Ends a flush: the peer now has `sent` routes per family.
    pub(crate) fn finish_flush(&mut self, sent: [usize; 2]) {
        self.sent = sent;
    }

    /// Counts of the routes per family the peer had before this flush.
    pub(crate) fn sent_counts(&self) -> [usize; 2] {
        self.sent
    }
}

pub(crate) fn family_of(prefix: &IpNet) -> usize {
    family_index(prefix)
}

//! Path attributes as the RIB stores them, and their interner.
//!
//! A route's attributes are the codec's [`PathAttributes`] plus its next hop,
//! which the codec carries separately for MP_REACH_NLRI routes. [`PathAttrs`]
//! joins the two, normalised so that identical routes compare equal: the next
//! hop lives only in [`PathAttrs::next_hop`], never in
//! `attributes.next_hop`. A batch of Adj-RIB-Out therefore maps straight
//! onto `packet::build_announcements(family, &attrs.attributes,
//! attrs.next_hop, ..)`.
//!
//! In a routing table most prefixes share a few thousand attribute sets at
//! most, so [`AttrInterner`] hands out one `Arc<PathAttrs>` per distinct set
//! and a route costs one pointer to its attributes instead of a copy. The
//! interner holds a reference itself; [`AttrInterner::collect`] drops sets
//! nobody else uses any more. Nothing here panics.

use std::net::IpAddr;
use std::sync::Arc;

use crate::packet::types::NextHop;
use crate::packet::{AsPath, Origin, PathAttributes};

/// The attributes of one route. Interned: after going through one
/// [`AttrInterner`], equal sets are the same allocation (`Arc::ptr_eq`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttrs {
    /// Everything but the next hop (`attributes.next_hop` is always `None`).
    pub attributes: PathAttributes,
    /// `None` for a locally originated route that takes the session's
    /// address on export.
    pub next_hop: Option<NextHop>,
}

static EMPTY_AS_PATH: AsPath = AsPath {
    segments: Vec::new(),
};

impl PathAttrs {
    /// Join decoded attributes with the next hop of MP_REACH_NLRI (if any;
    /// else the classic NEXT_HOP attribute is used).
    pub fn from_update(mut attributes: PathAttributes, mp_next_hop: Option<NextHop>) -> Self {
        let classic = attributes.next_hop.take().map(NextHop::V4);
        Self {
            attributes,
            next_hop: mp_next_hop.or(classic),
        }
    }

    /// The address to forward to: the IPv4 next hop, the global IPv6 one, or
    /// the link-local one when the global is `::` (as BIRD sends it).
    pub fn next_hop_addr(&self) -> Option<IpAddr> {
        self.next_hop.map(|nh| match nh {
            NextHop::V4(a) => IpAddr::V4(a),
            NextHop::V6 {
                global,
                link_local: Some(ll),
            } if global.is_unspecified() => IpAddr::V6(ll),
            NextHop::V6 { global, .. } => IpAddr::V6(global),
        })
    }

    /// ORIGIN; a route without one (only possible for local routes, the
    /// codec treats a missing ORIGIN as withdraw) ranks as INCOMPLETE.
    pub fn origin(&self) -> Origin {
        self.attributes.origin.unwrap_or(Origin::Incomplete)
    }

    /// AS_PATH; empty when absent.
    pub fn as_path(&self) -> &AsPath {
        self.attributes.as_path.as_ref().unwrap_or(&EMPTY_AS_PATH)
    }
}

/// Shares identical [`PathAttrs`] behind one `Arc`.
#[derive(Debug, Default)]
pub struct AttrInterner {
    sets: hashbrown::HashSet<Arc<PathAttrs>>,
    /// Live sets after the last collection; the next one runs at twice that.
    live_after_collect: usize,
}

/// Below this many sets, collection is not worth a scan.
const MIN_COLLECT_THRESHOLD: usize = 1024;

impl AttrInterner {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared copy of `attrs`.
    pub fn intern(&mut self, attrs: PathAttrs) -> Arc<PathAttrs> {
        if let Some(existing) = self.sets.get(&attrs) {
            return Arc::clone(existing);
        }
        let shared = Arc::new(attrs);
        self.sets.insert(Arc::clone(&shared));
        shared
    }

    /// The shared copy of an attribute set that may come from elsewhere.
    pub fn intern_arc(&mut self, attrs: &Arc<PathAttrs>) -> Arc<PathAttrs> {
        if let Some(existing) = self.sets.get(attrs.as_ref()) {
            return Arc::clone(existing);
        }
        self.sets.insert(Arc::clone(attrs));
        Arc::clone(attrs)
    }

    /// Distinct attribute sets held, including unused ones not yet collected.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Drop attribute sets only the interner still references.
    pub fn collect(&mut self) {
        self.sets.retain(|a| Arc::strong_count(a) > 1);
        self.live_after_collect = self.sets.len();
    }

    /// Collect when the set has doubled since the last collection, so the
    /// cost stays amortised O(1) per interned set.
    pub fn maybe_collect(&mut self) {
        let threshold = (self.live_after_collect * 2).max(MIN_COLLECT_THRESHOLD);
        if self.sets.len() > threshold {
            self.collect();
        }
    }
}

//! The BGP decision process (RFC 4271 §9.1.2.2, RFC 4456 §9), as successive
//! elimination over the candidate routes for one prefix.
//!
//! Steps, each keeping only the routes that are best by it:
//! 0. routes whose next hop is unreachable (IGP cost `None`) are ineligible;
//! 1. highest LOCAL_PREF;
//! 2. a locally originated route over learned ones;
//! 3. shortest AS_PATH (an AS_SET counts one);
//! 4. lowest ORIGIN (IGP < EGP < INCOMPLETE);
//! 5. lowest MED, compared only between routes from the same neighbour AS
//!    unless `always_compare_med` (a missing MED is 0);
//! 6. eBGP-learned over iBGP-learned;
//! 7. lowest IGP cost to the next hop;
//!    — the routes left here are equal-cost multipath candidates —
//! 8. shortest CLUSTER_LIST;
//! 9. lowest ORIGINATOR_ID, or BGP identifier of the peer;
//! 10. lowest peer address.
//!
//! Elimination over the whole set (rather than a pairwise sort) is what
//! RFC 4271 specifies, and it matters for step 5, which is not transitive.

use std::cmp::Ordering;
use std::net::IpAddr;

use crate::packet::Origin;

/// The values of one route that the decision process looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Marked `LLGR_STALE` (RFC 9494 §4.3): less preferred than any route
    /// that is not, before any other step.
    pub llgr_stale: bool,
    pub local_pref: u32,
    pub local: bool,
    pub as_path_len: usize,
    pub origin: Origin,
    pub med: u32,
    /// First AS of the path; our own AS for routes from inside it.
    pub neighbor_as: u32,
    pub ebgp: bool,
    /// `None`: next hop unreachable.
    pub igp_cost: Option<u32>,
    pub cluster_list_len: usize,
    /// ORIGINATOR_ID or the peer's BGP identifier, as an integer.
    pub id: u32,
    /// `None` for a locally originated route.
    pub peer_address: Option<IpAddr>,
}

/// Outcome for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Index of the best route in the candidate slice.
    pub best: usize,
    /// Indices of the routes to install together (best first), at most
    /// `max_paths` long; just `[best]` without multipath.
    pub multipath: Vec<usize>,
}

/// Run the decision process. `None` when no candidate is eligible.
pub fn select(
    candidates: &[Candidate],
    always_compare_med: bool,
    max_paths: usize,
) -> Option<Selection> {
    let mut set: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].igp_cost.is_some())
        .collect();
    if set.is_empty() {
        return None;
    }
    let c = |i: &usize| &candidates[*i];
    keep_best(&mut set, |i| c(i).llgr_stale);
    keep_best(&mut set, |i| std::cmp::Reverse(c(i).local_pref));
    keep_best(&mut set, |i| !c(i).local);
    keep_best(&mut set, |i| c(i).as_path_len);
    keep_best(&mut set, |i| c(i).origin);
    if always_compare_med {
        keep_best(&mut set, |i| c(i).med);
    } else {
        let snapshot = set.clone();
        set.retain(|&i| {
            snapshot
                .iter()
                .filter(|&&j| candidates[j].neighbor_as == candidates[i].neighbor_as)
                .all(|&j| candidates[j].med >= candidates[i].med)
        });
    }
    keep_best(&mut set, |i| !c(i).ebgp);
    keep_best(&mut set, |i| c(i).igp_cost);

    // The remaining routes are equally good for forwarding; order them by the
    // final tie-breakers, whose winner is the best route.
    set.sort_by(|&a, &b| tie_break(&candidates[a], &candidates[b]));
    let best = set[0];
    set.truncate(max_paths.max(1));
    Some(Selection {
        best,
        multipath: set,
    })
}

fn tie_break(a: &Candidate, b: &Candidate) -> Ordering {
    a.cluster_list_len
        .cmp(&b.cluster_list_len)
        .then(a.id.cmp(&b.id))
        .then(peer_address_order(a.peer_address, b.peer_address))
}

/// Lowest address first; IPv4 before IPv6; a local route (no address) first.
fn peer_address_order(a: Option<IpAddr>, b: Option<IpAddr>) -> Ordering {
    a.cmp(&b)
}

/// Keep only the members of `set` with the smallest key.
fn keep_best<K: Ord>(set: &mut Vec<usize>, key: impl Fn(&usize) -> K) {
    if set.len() < 2 {
        return;
    }
    if let Some(min) = set.iter().map(&key).min() {
        set.retain(|i| key(i) == min);
    }
}

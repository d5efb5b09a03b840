//! What one peer currently announces, tracked next to the RIB: the count the
//! peer status reports as "received", the stale marks of graceful restart,
//! and the extra paths of an ADD-PATH peer (the RIB keeps one path per peer
//! and prefix, so when one of several paths is withdrawn another must be
//! re-announced rather than the prefix withdrawn).
//!
//! Pure: [`ReceivedRoutes::update`] turns a decoded UPDATE and its RFC 7606
//! outcome into the RIB operations to run. Never panics.

use std::collections::HashSet;
use std::sync::Arc;

use ipnet::IpNet;

use super::peer::family_of;
use crate::packet::{Family, Update, UpdateOutcome};
use crate::rib::table::PrefixMap;
use crate::rib::PathAttrs;

/// RIB operations one UPDATE calls for: withdrawals first, then
/// announcements (one attribute set each).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RibChanges {
    pub(crate) withdraw: Vec<IpNet>,
    pub(crate) announce: Vec<(Vec<IpNet>, PathAttrs)>,
}

/// What an UPDATE means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UpdateEffect {
    /// The End-of-RIB marker for a family (RFC 4724 §2).
    EndOfRib(Family),
    Changes(RibChanges),
}

/// Paths of an ADD-PATH peer for one prefix, by path id, oldest first;
/// empty (no allocation) for a peer without ADD-PATH. A boxed slice, not a
/// `Vec`, and IPv4 keys of 5 bytes ([`PrefixMap`]): this map holds every
/// route a peer sends, and at a million routes each byte of entry counts
/// (24 bytes per entry instead of 48; the bgperf benchmark measures it).
type Paths = Box<[(u32, Arc<PathAttrs>)]>;

#[derive(Debug, Default)]
pub(crate) struct ReceivedRoutes {
    routes: PrefixMap<Paths>,
    stale: HashSet<IpNet>,
}

impl ReceivedRoutes {
    /// Prefixes the peer announces (stale ones included).
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }

    pub(crate) fn stale_len(&self) -> usize {
        self.stale.len()
    }

    pub(crate) fn is_stale(&self, prefix: &IpNet) -> bool {
        self.stale.contains(prefix)
    }

    /// Forget everything (the RIB dropped the peer).
    pub(crate) fn clear(&mut self) {
        self.routes = PrefixMap::default();
        self.stale.clear();
    }

    /// The session went down gracefully: every route is stale until the
    /// peer announces it again. Returns how many.
    pub(crate) fn mark_all_stale(&mut self) -> usize {
        self.stale.extend(self.routes.keys());
        self.stale.len()
    }

    /// Removes and returns the still-stale prefixes of `family` (or all),
    /// which the RIB must withdraw.
    pub(crate) fn take_stale(&mut self, family: Option<Family>) -> Vec<IpNet> {
        let mut taken: Vec<IpNet> = self
            .stale
            .iter()
            .copied()
            .filter(|p| family.is_none_or(|f| family_of(p) == f))
            .collect();
        taken.sort_unstable();
        for p in &taken {
            self.stale.remove(p);
            self.routes.remove(p);
        }
        taken
    }

    /// Records `update` and returns what the RIB must do with it.
    pub(crate) fn update(&mut self, update: Update, outcome: &UpdateOutcome) -> UpdateEffect {
        if let Some(family) = update.end_of_rib_family() {
            return UpdateEffect::EndOfRib(family);
        }
        let mut withdrawn = Vec::new();
        let mut announced = Vec::new();
        if outcome.is_treat_as_withdraw() {
            // RFC 7606: everything the UPDATE names is withdrawn.
            for (_, nlri) in update.into_withdrawals() {
                withdrawn.extend(nlri);
            }
        } else {
            let Update {
                withdrawn: classic_withdrawn,
                attributes,
                nlri,
                mp_reach,
                mp_unreach,
            } = update;
            withdrawn.extend(classic_withdrawn);
            if let Some(unreach) = mp_unreach {
                withdrawn.extend(unreach.withdrawn);
            }
            if !nlri.is_empty() {
                announced.push((nlri, PathAttrs::from_update(attributes.clone(), None)));
            }
            if let Some(reach) = mp_reach {
                let attrs = PathAttrs::from_update(attributes, Some(reach.next_hop));
                announced.push((reach.nlri, attrs));
            }
        }

        let mut changes = RibChanges::default();
        for n in withdrawn {
            self.stale.remove(&n.prefix);
            let remaining = match (n.path_id, self.routes.get_mut(&n.prefix)) {
                (Some(id), Some(paths)) if !paths.is_empty() => {
                    let mut kept = std::mem::take(paths).into_vec();
                    kept.retain(|(pid, _)| *pid != id);
                    *paths = kept.into_boxed_slice();
                    paths.last().map(|(_, attrs)| Arc::clone(attrs))
                }
                _ => None,
            };
            match remaining {
                // Another path of an ADD-PATH peer takes over.
                Some(attrs) => changes.announce.push((vec![n.prefix], (*attrs).clone())),
                None => {
                    if self.routes.remove(&n.prefix).is_some() {
                        changes.withdraw.push(n.prefix);
                    }
                }
            }
        }
        for (nlri, attrs) in announced {
            let shared = Arc::new(attrs);
            let mut prefixes = Vec::with_capacity(nlri.len());
            for n in nlri {
                self.stale.remove(&n.prefix);
                let paths = self.routes.get_or_insert_with(n.prefix, Paths::default);
                if let Some(id) = n.path_id {
                    let mut kept = std::mem::take(paths).into_vec();
                    kept.retain(|(pid, _)| *pid != id);
                    kept.push((id, Arc::clone(&shared)));
                    *paths = kept.into_boxed_slice();
                }
                prefixes.push(n.prefix);
            }
            if !prefixes.is_empty() {
                changes.announce.push((prefixes, (*shared).clone()));
            }
        }
        UpdateEffect::Changes(changes)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::packet::{AsPath, DecodeError, MpUnreach, NextHop, Nlri, Origin, PathAttributes};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn attributes(hop: [u8; 4]) -> PathAttributes {
        PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence([65000])),
            next_hop: Some(Ipv4Addr::from(hop)),
            ..Default::default()
        }
    }

    fn announce(prefixes: &[&str], path_id: Option<u32>, hop: [u8; 4]) -> Update {
        Update {
            attributes: attributes(hop),
            nlri: prefixes
                .iter()
                .map(|p| Nlri {
                    prefix: net(p),
                    path_id,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn withdraw(prefixes: &[&str], path_id: Option<u32>) -> Update {
        Update {
            withdrawn: prefixes
                .iter()
                .map(|p| Nlri {
                    prefix: net(p),
                    path_id,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn changes(effect: UpdateEffect) -> RibChanges {
        match effect {
            UpdateEffect::Changes(c) => c,
            other => panic!("expected changes, got {other:?}"),
        }
    }

    fn hop_of(attrs: &PathAttrs) -> Option<NextHop> {
        attrs.next_hop
    }

    #[test]
    fn announce_then_withdraw() {
        let mut r = ReceivedRoutes::default();
        let c = changes(r.update(
            announce(&["10.0.0.0/24", "10.0.1.0/24"], None, [1, 1, 1, 1]),
            &UpdateOutcome::Ok,
        ));
        assert!(c.withdraw.is_empty());
        assert_eq!(c.announce.len(), 1);
        assert_eq!(
            c.announce[0].0,
            vec![net("10.0.0.0/24"), net("10.0.1.0/24")]
        );
        assert_eq!(
            hop_of(&c.announce[0].1),
            Some(NextHop::V4(Ipv4Addr::new(1, 1, 1, 1)))
        );
        assert_eq!(
            c.announce[0].1.attributes.next_hop, None,
            "next hop normalised out"
        );
        assert_eq!(r.len(), 2);

        let c = changes(r.update(
            withdraw(&["10.0.0.0/24", "10.9.0.0/24"], None),
            &UpdateOutcome::Ok,
        ));
        assert_eq!(
            c.withdraw,
            vec![net("10.0.0.0/24")],
            "unknown prefixes are not withdrawn"
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn treat_as_withdraw_removes_the_announced_prefixes() {
        let mut r = ReceivedRoutes::default();
        r.update(
            announce(&["10.0.0.0/24"], None, [1, 1, 1, 1]),
            &UpdateOutcome::Ok,
        );
        let outcome =
            UpdateOutcome::TreatAsWithdraw(vec![DecodeError::InvalidOrigin { data: vec![] }]);
        let c = changes(r.update(announce(&["10.0.0.0/24"], None, [2, 2, 2, 2]), &outcome));
        assert_eq!(c.withdraw, vec![net("10.0.0.0/24")]);
        assert!(c.announce.is_empty());
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn end_of_rib_is_recognised() {
        let mut r = ReceivedRoutes::default();
        assert_eq!(
            r.update(Update::end_of_rib(Family::IPV4_UNICAST), &UpdateOutcome::Ok),
            UpdateEffect::EndOfRib(Family::IPV4_UNICAST)
        );
        let v6 = Update {
            mp_unreach: Some(MpUnreach {
                family: Family::IPV6_UNICAST,
                withdrawn: vec![],
            }),
            ..Default::default()
        };
        assert_eq!(
            r.update(v6, &UpdateOutcome::Ok),
            UpdateEffect::EndOfRib(Family::IPV6_UNICAST)
        );
    }

    #[test]
    fn add_path_withdrawal_of_one_path_falls_back_to_another() {
        let mut r = ReceivedRoutes::default();
        r.update(
            announce(&["10.0.0.0/24"], Some(1), [1, 1, 1, 1]),
            &UpdateOutcome::Ok,
        );
        r.update(
            announce(&["10.0.0.0/24"], Some(2), [2, 2, 2, 2]),
            &UpdateOutcome::Ok,
        );
        assert_eq!(r.len(), 1);
        let c = changes(r.update(withdraw(&["10.0.0.0/24"], Some(2)), &UpdateOutcome::Ok));
        assert!(c.withdraw.is_empty());
        assert_eq!(c.announce.len(), 1);
        assert_eq!(
            hop_of(&c.announce[0].1),
            Some(NextHop::V4(Ipv4Addr::new(1, 1, 1, 1)))
        );
        let c = changes(r.update(withdraw(&["10.0.0.0/24"], Some(1)), &UpdateOutcome::Ok));
        assert_eq!(c.withdraw, vec![net("10.0.0.0/24")]);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn stale_routes_are_refreshed_by_announcements_and_purged_per_family() {
        let mut r = ReceivedRoutes::default();
        r.update(
            announce(&["10.0.0.0/24", "10.0.1.0/24"], None, [1, 1, 1, 1]),
            &UpdateOutcome::Ok,
        );
        let v6 = Update {
            attributes: attributes([1, 1, 1, 1]),
            mp_reach: Some(crate::packet::MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global: "fd00::1".parse().unwrap(),
                    link_local: None,
                },
                nlri: vec![Nlri::new(net("fd00:1::/64"))],
            }),
            ..Default::default()
        };
        r.update(v6, &UpdateOutcome::Ok);
        assert_eq!(r.mark_all_stale(), 3);
        assert!(r.is_stale(&net("10.0.0.0/24")));

        // Re-announced after the restart: fresh again.
        r.update(
            announce(&["10.0.0.0/24"], None, [1, 1, 1, 1]),
            &UpdateOutcome::Ok,
        );
        assert!(!r.is_stale(&net("10.0.0.0/24")));
        assert_eq!(r.stale_len(), 2);

        // IPv4 End-of-RIB purges only IPv4 stale routes.
        assert_eq!(
            r.take_stale(Some(Family::IPV4_UNICAST)),
            vec![net("10.0.1.0/24")]
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r.take_stale(None), vec![net("fd00:1::/64")]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.stale_len(), 0);
    }
}

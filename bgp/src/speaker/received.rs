//! Turns a peer's decoded UPDATEs into RIB operations, and tracks the extra
//! paths of an ADD-PATH peer: the RIB keeps one path per peer and prefix, so
//! when one of several paths is withdrawn another must be re-announced
//! rather than the prefix withdrawn.
//!
//! Only prefixes announced with a path identifier are stored here: for a
//! peer without ADD-PATH the RIB alone holds its routes (and the counts and
//! graceful-restart stale marks of its status), so a route is not stored
//! twice.
//!
//! Pure: [`ReceivedRoutes::update`] turns a decoded UPDATE and its RFC 7606
//! outcome into the RIB operations to run. Never panics.

use std::sync::Arc;

use ipnet::IpNet;

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

/// Paths of an ADD-PATH peer for one prefix, by path id, oldest first. A
/// boxed slice, not a `Vec`: one word less per prefix.
type Paths = Box<[(u32, Arc<PathAttrs>)]>;

#[derive(Debug, Default)]
pub(crate) struct ReceivedRoutes {
    /// Prefixes announced with a path identifier (ADD-PATH receive).
    add_paths: PrefixMap<Paths>,
}

impl ReceivedRoutes {
    /// Prefixes with ADD-PATH paths tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.add_paths.len()
    }

    /// Forget everything (the RIB dropped the peer).
    pub(crate) fn clear(&mut self) {
        self.add_paths = PrefixMap::default();
    }

    /// Forget `prefixes` (the RIB withdrew them, e.g. stale after a restart).
    pub(crate) fn forget(&mut self, prefixes: &[IpNet]) {
        if self.add_paths.is_empty() {
            return;
        }
        for p in prefixes {
            self.add_paths.remove(p);
        }
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
            if let Some(reach) = mp_reach {
                if !nlri.is_empty() {
                    announced.push((nlri, PathAttrs::from_update(attributes.clone(), None)));
                }
                let attrs = PathAttrs::from_update(attributes, Some(reach.next_hop));
                announced.push((reach.nlri, attrs));
            } else if !nlri.is_empty() {
                announced.push((nlri, PathAttrs::from_update(attributes, None)));
            }
        }

        let mut changes = RibChanges {
            withdraw: Vec::with_capacity(withdrawn.len()),
            announce: Vec::with_capacity(announced.len()),
        };
        for n in withdrawn {
            let remaining = match (n.path_id, self.add_paths.get_mut(&n.prefix)) {
                (Some(id), Some(paths)) => {
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
                    self.add_paths.remove(&n.prefix);
                    // The RIB ignores prefixes the peer never announced.
                    changes.withdraw.push(n.prefix);
                }
            }
        }
        for (nlri, attrs) in announced {
            if nlri.is_empty() {
                continue;
            }
            let shared = nlri
                .iter()
                .any(|n| n.path_id.is_some())
                .then(|| Arc::new(attrs.clone()));
            let mut prefixes = Vec::with_capacity(nlri.len());
            for n in nlri {
                if let (Some(id), Some(shared)) = (n.path_id, &shared) {
                    let paths = self.add_paths.get_or_insert_with(n.prefix, Paths::default);
                    let mut kept = std::mem::take(paths).into_vec();
                    kept.retain(|(pid, _)| *pid != id);
                    kept.push((id, Arc::clone(shared)));
                    *paths = kept.into_boxed_slice();
                }
                prefixes.push(n.prefix);
            }
            changes.announce.push((prefixes, attrs));
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
        assert_eq!(
            r.tracked(),
            0,
            "without ADD-PATH only the RIB stores routes"
        );

        let c = changes(r.update(
            withdraw(&["10.0.0.0/24", "10.9.0.0/24"], None),
            &UpdateOutcome::Ok,
        ));
        assert_eq!(
            c.withdraw,
            vec![net("10.0.0.0/24"), net("10.9.0.0/24")],
            "passed on; the RIB ignores prefixes it does not have"
        );
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
        assert_eq!(r.tracked(), 1);
        let c = changes(r.update(withdraw(&["10.0.0.0/24"], Some(2)), &UpdateOutcome::Ok));
        assert!(c.withdraw.is_empty());
        assert_eq!(c.announce.len(), 1);
        assert_eq!(
            hop_of(&c.announce[0].1),
            Some(NextHop::V4(Ipv4Addr::new(1, 1, 1, 1)))
        );
        let c = changes(r.update(withdraw(&["10.0.0.0/24"], Some(1)), &UpdateOutcome::Ok));
        assert_eq!(c.withdraw, vec![net("10.0.0.0/24")]);
        assert_eq!(r.tracked(), 0);
    }
}

//! The RIB's internals: paths changed and the decision re-run for a
//! prefix, Loc-RIB changes reported, and what each peer should be sent
//! recomputed (the implicit Adj-RIB-Out).

use super::*;

impl Rib {
    pub(super) fn index_of(&self, peer: IpAddr) -> Result<u32, RibError> {
        self.by_address
            .get(&peer)
            .copied()
            .ok_or(RibError::UnknownPeer(peer))
    }

    /// Slot of a peer index taken from `by_address` or a stored path.
    ///
    /// Every stored index refers to a live slot (peer_down removes the paths
    /// before the slot); the fallback only keeps this total.
    pub(super) fn slot(&self, index: u32) -> &PeerSlot {
        match self.peers.get(index as usize) {
            Some(Some(slot)) => slot,
            _ => unreachable_slot(index),
        }
    }

    pub(super) fn slot_mut(&mut self, index: u32) -> &mut PeerSlot {
        match self.peers.get_mut(index as usize) {
            Some(Some(slot)) => slot,
            _ => unreachable_slot(index),
        }
    }

    pub(super) fn source(&self, index: u32) -> Source<'_> {
        source_of(&self.peers, index)
    }

    pub(super) fn selected(&self, d: &Destination) -> Option<Selected> {
        if d.multipath() == 0 {
            return None;
        }
        let best = &d.paths()[0];
        let mut next_hops: Vec<IpAddr> = Vec::new();
        for path in &d.paths()[..d.multipath()] {
            if let Some(mut nh) = path.attrs.next_hop_addr() {
                if path.source != LOCAL {
                    let config = &self.slot(path.source).config;
                    if let Some(connected) = &config.direct_gateway {
                        if !connected.iter().any(|n| n.contains(&nh)) {
                            nh = config.address;
                        }
                    }
                }
                if !next_hops.contains(&nh) {
                    next_hops.push(nh);
                }
            }
        }
        if best.source == LOCAL {
            next_hops.clear();
        }
        Some(Selected {
            source: self.route_source(best.source),
            attrs: Arc::clone(&best.attrs),
            next_hops,
        })
    }

    pub(super) fn route_source(&self, index: u32) -> RouteSource {
        if index == LOCAL {
            RouteSource::Local
        } else {
            RouteSource::Peer(self.slot(index).config.address)
        }
    }

    /// Replace (or with `None` remove) the path from `source` for `prefix`,
    /// then re-run the decision and propagate. `skip_export` names a peer
    /// going down, which gets no more advertisements.
    pub(super) fn change_path(
        &mut self,
        prefix: IpNet,
        source: u32,
        attrs: Option<Arc<PathAttrs>>,
        memo: &mut ExportMemo,
        output: &mut RibOutput,
        skip_export: Option<u32>,
    ) {
        let (slot, dest) = self.loc.get_or_insert_slot(prefix, Destination::empty);
        let existing = dest.paths().iter().position(|p| p.source == source);
        match (existing, &attrs) {
            (Some(i), Some(attrs)) if Arc::ptr_eq(&dest.paths()[i].attrs, attrs) => {
                // Announced again unchanged: only fresh again.
                let path = &mut dest.paths_mut()[i];
                if std::mem::take(&mut path.stale) {
                    self.slot_mut(source).stale -= 1;
                }
                return;
            }
            (None, None) => {
                if dest.paths().is_empty() {
                    self.loc.remove(&prefix);
                }
                return;
            }
            _ => {}
        }
        let before = Snapshot::of(dest);
        let mut paths = dest.take_paths();
        let mut was_stale = false;
        let mut accepted_delta: isize = 0;
        match (existing, attrs) {
            (Some(i), Some(attrs)) => {
                was_stale = std::mem::take(&mut paths[i].stale);
                paths[i].attrs = attrs;
            }
            (None, Some(attrs)) => {
                accepted_delta = 1;
                paths.push(Path {
                    source,
                    stale: false,
                    attrs,
                });
            }
            (Some(i), None) => {
                accepted_delta = -1;
                was_stale = paths.remove(i).stale;
            }
            (None, None) => {}
        }
        if source != LOCAL {
            let slot = self.slot_mut(source);
            slot.accepted = slot.accepted.saturating_add_signed(accepted_delta);
            if was_stale {
                slot.stale = slot.stale.saturating_sub(1);
            }
        }
        self.decide(prefix, slot, before, paths, memo, output, skip_export);
    }

    pub(super) fn rerun(&mut self, prefix: IpNet, memo: &mut ExportMemo, output: &mut RibOutput) {
        let Some(slot) = self.loc.slot(&prefix) else {
            return;
        };
        let Some(dest) = self.loc.get_at_mut(&prefix, slot) else {
            return;
        };
        let before = Snapshot::of(dest);
        let paths = dest.take_paths();
        self.decide(prefix, slot, before, paths, memo, output, None);
    }

    /// Run the decision process over `paths`, the paths of `prefix` (in
    /// table slot `slot`) whose selection was `before`, and store them;
    /// report a Loc-RIB change and re-export if the best route changed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide(
        &mut self,
        prefix: IpNet,
        slot: u32,
        before: Snapshot,
        paths: Vec<Path>,
        memo: &mut ExportMemo,
        output: &mut RibOutput,
        skip_export: Option<u32>,
    ) {
        let (ordered, multipath) = if paths.len() <= 1 {
            // Most prefixes have one path: no candidates to compare.
            let eligible = paths.first().is_some_and(|p| self.reachable(p));
            (paths, usize::from(eligible))
        } else {
            let candidates: Vec<Candidate> = paths.iter().map(|p| self.candidate(p)).collect();
            let selection = decision::select(
                &candidates,
                self.config.always_compare_med,
                self.config.max_paths.min(usize::from(u8::MAX)),
            );
            match selection {
                Some(sel) => {
                    // The multipath set (best first) goes to the front.
                    let mut taken: Vec<Option<Path>> = paths.into_iter().map(Some).collect();
                    let mut reordered: Vec<Path> = sel
                        .multipath
                        .iter()
                        .filter_map(|&i| taken.get_mut(i).and_then(Option::take))
                        .collect();
                    reordered.extend(taken.into_iter().flatten());
                    (reordered, sel.multipath.len())
                }
                None => (paths, 0),
            }
        };
        let Some(dest) = self.loc.get_at_mut(&prefix, slot) else {
            return;
        };
        dest.store(ordered, multipath);
        let after = Snapshot::of(dest);
        if dest.paths().is_empty() {
            self.loc.remove(&prefix);
        }
        if before == after {
            return;
        }
        if self.report_best_changes {
            let best = self
                .loc
                .get_at(&prefix, slot)
                .and_then(|d| self.selected(d));
            output.best_changes.push(BestChange { prefix, best });
        }
        let old = before.first.as_ref();
        let new = after.first.as_ref();
        if old != new {
            self.propagate(prefix, slot, old, new, memo, skip_export);
        }
    }

    /// Step 0 of the decision process alone: the next hop is reachable.
    pub(super) fn reachable(&self, path: &Path) -> bool {
        if path.source == LOCAL {
            return true;
        }
        path.attrs
            .next_hop_addr()
            .and_then(|nh| self.igp.igp_cost(nh))
            .is_some()
    }

    /// Record `prefix` as changed for every peer whose export of it differs
    /// between the `old` and the `new` best route.
    pub(super) fn propagate(
        &mut self,
        prefix: IpNet,
        slot: u32,
        old: Option<&(u32, ByPtr)>,
        new: Option<&(u32, ByPtr)>,
        memo: &mut ExportMemo,
        skip_export: Option<u32>,
    ) {
        for index in 0..self.peers.len() {
            let index = u32::try_from(index).unwrap_or(LOCAL - 1);
            if Some(index) == skip_export {
                continue;
            }
            match &self.peers[index as usize] {
                Some(slot) if !slot.out.is_initial() => {}
                _ => continue,
            }
            // Never back to the peer the best path came from (what BIRD,
            // FRR and GoBGP do too): an eBGP peer would drop it as a loop, an
            // iBGP one already has it, and at a full table it doubled the
            // source peer's Adj-RIB-Out and the UPDATEs sent.
            let mut export = |best: Option<&(u32, ByPtr)>| {
                best.filter(|(source, _)| *source != index)
                    .and_then(|(source, attrs)| {
                        export_with(
                            &self.config,
                            &self.peers,
                            &mut self.interner,
                            memo,
                            (*source, &attrs.0),
                            index,
                            &prefix,
                        )
                    })
            };
            let had = export(old);
            let desired = export(new);
            let same = match (&had, &desired) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if !same {
                self.slot_mut(index).out.record(prefix, slot, had);
            }
        }
    }

    /// What `to` should have for `prefix`: the export of the current best
    /// route, unless it came from `to`.
    pub(super) fn desired_export(
        &mut self,
        memo: &mut ExportMemo,
        to: u32,
        prefix: &IpNet,
        slot: u32,
    ) -> Option<Arc<PathAttrs>> {
        let dest = self.loc.get_at(prefix, slot)?;
        if dest.multipath() == 0 {
            return None;
        }
        let best = &dest.paths()[0];
        if best.source == to {
            return None;
        }
        export_with(
            &self.config,
            &self.peers,
            &mut self.interner,
            memo,
            (best.source, &best.attrs),
            to,
            prefix,
        )
    }

    pub(super) fn candidate(&self, path: &Path) -> Candidate {
        let attrs = &path.attrs;
        let source = self.source(path.source);
        let (ebgp, peer_address) = match source {
            Source::Local => (false, None),
            Source::Peer { peer, ibgp, .. } => (!ibgp, Some(peer.address)),
        };
        let igp_cost = match (source, attrs.next_hop_addr()) {
            (Source::Local, _) => Some(0),
            (_, Some(nh)) => self.igp.igp_cost(nh),
            (_, None) => None,
        };
        Candidate {
            llgr_stale: attrs
                .attributes
                .communities
                .contains(&crate::packet::Community::LLGR_STALE),
            local_pref: attrs
                .attributes
                .local_pref
                .unwrap_or(self.config.default_local_pref),
            local: matches!(source, Source::Local),
            as_path_len: attrs.as_path().path_len(),
            origin: attrs.origin(),
            med: attrs.attributes.med.unwrap_or(0),
            neighbor_as: attrs.as_path().first_asn().unwrap_or(self.config.local_asn),
            ebgp,
            igp_cost,
            cluster_list_len: attrs.attributes.cluster_list.len(),
            id: u32::from(policy::decision_id(&self.config, source, attrs)),
            peer_address,
        }
    }

    pub(super) fn finish(&mut self, output: &mut RibOutput) {
        output.peers_pending = self
            .peers
            .iter()
            .flatten()
            .filter(|s| s.out.has_pending())
            .map(|s| s.config.address)
            .collect();
        output.peers_pending.sort_unstable();
        self.interner.maybe_collect();
    }
}

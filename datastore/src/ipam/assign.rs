//! Allocation: [`Ipam::auto_assign`] (own blocks, new blocks, borrowing) and
//! [`Ipam::assign_ip`] (one chosen address), with the block claims they make.

use super::*;

impl Ipam {
    // ----- allocation ------------------------------------------------------

    /// Allocates `num4` IPv4 and `num6` IPv6 addresses for `args.handle` on
    /// `args.node` (see the module docs for the order). All or nothing.
    #[instrument(skip(self, args), fields(handle = %args.handle, node = %args.node))]
    pub async fn auto_assign(&self, args: &AutoAssignArgs) -> IpamResult<Assigned> {
        check_names(&args.handle, &args.node)?;
        // Configuration, the node and the handle in one round trip.
        let (settings, labels, handle_doc) = self.read_context(&args.node, &args.handle).await?;
        let mut handle_hint = Some(handle_doc);
        let pools = self.pools().await?;
        let mut attrs = args.attrs.clone();
        attrs.insert(ATTR_NODE.into(), args.node.clone());
        let attr = AllocationAttribute {
            handle_id: Some(args.handle.clone()),
            secondary: attrs,
        };
        let mut out = Assigned::default();
        let mut taken: Vec<(IpNet, block::Allocated)> = Vec::new();
        for (family, n) in [(Family::V4, args.num4), (Family::V6, args.num6)] {
            if n == 0 {
                continue;
            }
            let eligible: Vec<&Pool> = pools
                .iter()
                .filter(|p| Family::of(&p.net) == family)
                .filter(|p| p.spec.assignable_on(args.use_, &labels))
                .filter(|p| args.pools.is_empty() || args.pools.contains(&p.net))
                .collect();
            let result = if eligible.is_empty() {
                Err(IpamError::NoPool {
                    family: family_number(family),
                    use_: args.use_,
                    node: args.node.clone(),
                })
            } else {
                self.assign_family(
                    family,
                    n,
                    &eligible,
                    &settings,
                    args,
                    &attr,
                    &mut handle_hint,
                    &mut taken,
                )
                .await
            };
            if let Err(e) = result {
                self.undo(&args.handle, &taken).await;
                return Err(e);
            }
            let got = taken
                .iter()
                .filter(|(b, _)| Family::of(b) == family)
                .count();
            if got < n {
                self.undo(&args.handle, &taken).await;
                return Err(IpamError::Exhausted {
                    family: family_number(family),
                    requested: n,
                    available: got,
                });
            }
        }
        for (_, a) in &taken {
            match a.ip {
                IpAddr::V4(_) => out.ipv4.push(host_net(a.ip)),
                IpAddr::V6(_) => out.ipv6.push(host_net(a.ip)),
            }
        }
        debug!(v4 = ?out.ipv4, v6 = ?out.ipv6, "assigned");
        Ok(out)
    }

    /// Gives back what a failed request took (only if still ours).
    async fn undo(&self, handle: &str, taken: &[(IpNet, block::Allocated)]) {
        if taken.is_empty() {
            return;
        }
        let opts: Vec<ReleaseOptions> = taken
            .iter()
            .map(|(_, a)| ReleaseOptions {
                ip: a.ip,
                handle: Some(handle.to_owned()),
                sequence: Some(a.sequence),
            })
            .collect();
        if let Err(e) = self.release_ips(&opts).await {
            warn!(error = %e, "could not give back a partial assignment; `ipam check` will report it");
        }
    }

    /// Reads several blocks in one round trip (a transaction of gets).
    async fn read_blocks(
        &self,
        nets: &[IpNet],
    ) -> IpamResult<Vec<Option<Versioned<AllocationBlock>>>> {
        if nets.is_empty() {
            return Ok(Vec::new());
        }
        let gets = nets.iter().map(|n| TxnOp::get(keys::block_key(n)));
        let reads = Txn::new().and_then(gets);
        let resp = patiently(|| async { Ok(self.store.txn(reads.clone()).await?) }).await?;
        resp.results
            .into_iter()
            .map(|r| match r {
                crate::TxnOpResult::Get(Some(kv)) => versioned(kv).map(Some),
                _ => Ok(None),
            })
            .collect()
    }

    /// Every block of a family with just what choosing one needs (decoding
    /// whole documents of a big pool on every allocation would dominate).
    async fn block_heads(&self, family: Family) -> IpamResult<Vec<BlockHead>> {
        if let Some(heads) = self.cached_heads(family) {
            return Ok(heads);
        }
        let listing =
            patiently(|| async { Ok(self.store.list(keys::blocks_prefix(family)).await?) }).await?;
        let heads: Vec<BlockHead> = listing.kvs.iter().map(decode).collect::<IpamResult<_>>()?;
        self.heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(family, (std::time::Instant::now(), heads.clone()));
        Ok(heads)
    }

    #[allow(clippy::too_many_arguments)]
    async fn assign_family(
        &self,
        family: Family,
        n: usize,
        eligible: &[&Pool],
        settings: &Settings,
        args: &AutoAssignArgs,
        attr: &AllocationAttribute,
        handle_hint: &mut Option<Option<Versioned<HandleDoc>>>,
        taken: &mut Vec<(IpNet, block::Allocated)>,
    ) -> IpamResult<()> {
        let node = args.node.as_str();
        let in_eligible = |net: &IpNet| eligible.iter().any(|p| p.net.contains(net));
        let count = |taken: &Vec<(IpNet, block::Allocated)>| {
            taken
                .iter()
                .filter(|(b, _)| Family::of(b) == family)
                .count()
        };

        // 1. The node's own blocks, read in one round trip.
        let claims = patiently(|| async {
            Ok(self
                .store
                .list(keys::host_family_prefix(node, family))
                .await?)
        })
        .await?;
        let mut owned = 0usize;
        let mut mine: Vec<(IpNet, AffinityState, String)> = Vec::new();
        for kv in &claims.kvs {
            let Some((_, net)) = keys::parse_affinity_key(&kv.key_str()) else {
                continue;
            };
            let state = decode::<AffinityDoc>(kv)?.state;
            if state == AffinityState::PendingDeletion {
                continue;
            }
            owned += 1;
            if in_eligible(&net) {
                mine.push((net, state, kv.key_str().into_owned()));
            }
        }
        let nets: Vec<IpNet> = mine.iter().map(|(n, _, _)| *n).collect();
        let blocks = self.read_blocks(&nets).await?;
        for ((net, state, key), current) in mine.into_iter().zip(blocks) {
            if count(taken) >= n {
                break;
            }
            // A pending claim counts only if the block is the node's (its
            // claimer died before confirming): then finish it.
            let Some(current) = current.filter(|b| b.value.affine_node() == Some(node)) else {
                continue;
            };
            if state == AffinityState::Pending {
                self.confirm(&key).await?;
            }
            if current.value.free() == 0 {
                continue;
            }
            let got = self
                .assign_from_block(
                    &net,
                    n - count(taken),
                    attr,
                    Some(node),
                    Some(current),
                    handle_hint,
                )
                .await?;
            taken.extend(got.into_iter().map(|a| (net, a)));
        }
        if count(taken) >= n {
            return Ok(());
        }

        // 2. New blocks.
        let mut heads = self.block_heads(family).await?;
        while count(taken) < n
            && settings.auto_allocate_blocks
            && (settings.max_blocks_per_host == 0 || owned < settings.max_blocks_per_host)
        {
            let wanted = n - count(taken);
            let first = FirstAssignment {
                n: wanted,
                attr,
                handle_hint,
            };
            let Some((net, assigned)) =
                self.claim_free_block(node, eligible, &heads, first).await?
            else {
                break;
            };
            owned += 1;
            let got = match assigned {
                Some(got) => got,
                None => {
                    self.assign_from_block(&net, wanted, attr, Some(node), None, handle_hint)
                        .await?
                }
            };
            taken.extend(got.into_iter().map(|a| (net, a)));
            if count(taken) < n {
                heads = self.block_heads(family).await?;
            }
        }

        // 3. Borrow from anyone's block.
        if count(taken) < n && !settings.strict_affinity {
            let mut candidates: Vec<IpNet> = heads
                .iter()
                .filter(|b| in_eligible(&b.cidr) && !b.unallocated.is_empty())
                .filter(|b| {
                    b.affinity.as_deref().and_then(|a| a.strip_prefix("host:")) != Some(node)
                })
                .map(|b| b.cidr)
                .collect();
            if !candidates.is_empty() {
                let start = (spread(node) % candidates.len() as u128) as usize;
                candidates.rotate_left(start);
            }
            for net in candidates {
                if count(taken) >= n {
                    break;
                }
                let got = self
                    .assign_from_block(&net, n - count(taken), attr, None, None, handle_hint)
                    .await?;
                if !got.is_empty() {
                    debug!(block = %net, n = got.len(), "borrowed");
                }
                taken.extend(got.into_iter().map(|a| (net, a)));
            }
        }
        Ok(())
    }

    /// Takes up to `n` addresses from one block (CAS, retried; `first`: the
    /// block as just read, saving a read). With `owner`, only while the
    /// block is still affine to that node.
    async fn assign_from_block(
        &self,
        net: &IpNet,
        n: usize,
        attr: &AllocationAttribute,
        owner: Option<&str>,
        mut first: Option<Versioned<AllocationBlock>>,
        handle_hint: &mut Option<Option<Versioned<HandleDoc>>>,
    ) -> IpamResult<Vec<block::Allocated>> {
        let handle = attr.handle_id.clone().unwrap_or_default();
        for _ in 0..MAX_RETRIES {
            let current = match first.take() {
                Some(b) => b,
                None => match self.read_block(net).await? {
                    Some(b) => b,
                    None => return Ok(Vec::new()),
                },
            };
            self.note_block(&current.value);
            if owner.is_some() && current.value.affine_node() != owner {
                return Ok(Vec::new());
            }
            let mut block = current.value.clone();
            let got = block.auto_assign(n, attr.clone());
            if got.is_empty() {
                return Ok(got);
            }
            // The handle as read with the context, once; after that (a lost
            // race, a second block) it may have moved: read it again.
            let hw = match handle_hint.take() {
                Some(current) => handle_write_from(&handle, net, got.len() as isize, current),
                None => self.handle_write(&handle, net, got.len() as isize).await?,
            };
            // Ours iff each address is held by this handle with the
            // sequence number this write gave it.
            let ours = |b: &AllocationBlock| holds_allocations(b, &got, &handle);
            if self
                .commit_block(current.mod_revision, &block, vec![hw], ours)
                .await?
            {
                self.note_block(&block);
                return Ok(got);
            }
        }
        Err(IpamError::TooManyConflicts {
            what: format!("allocating from block {net}"),
        })
    }

    /// Finds and claims a block for `node` in the first eligible pool that
    /// has one: an absent block, or an existing one nobody holds. A block
    /// it creates holds `first`'s addresses from the start (returned with
    /// it); for a block taken over they are still to be assigned (`None`).
    async fn claim_free_block(
        &self,
        node: &str,
        eligible: &[&Pool],
        heads: &[BlockHead],
        mut first: FirstAssignment<'_, '_>,
    ) -> IpamResult<Option<(IpNet, Option<Vec<block::Allocated>>)>> {
        let existing: HashMap<IpNet, &BlockHead> = heads.iter().map(|b| (b.cidr, b)).collect();
        for pool in eligible {
            let total = pool.block_count();
            let in_pool: Vec<&BlockHead> = heads
                .iter()
                .filter(|b| pool.net.contains(&b.cidr))
                .collect();
            if in_pool.len() as u128 >= total && in_pool.iter().all(|b| b.affinity.is_some()) {
                continue; // every block exists and is someone's
            }
            // Among in_pool + 1 consecutive candidates at least one is free;
            // the slack covers candidates lost to concurrent claimers.
            let tries = total.min(in_pool.len() as u128 + 64);
            let start = spread(node) % total.max(1);
            for i in 0..tries {
                let Some(net) = pool.nth_block((start + i) % total) else {
                    continue;
                };
                let claimed = match existing.get(&net) {
                    None => match self.create_block_assigning(node, &net, &mut first).await? {
                        NewBlock::Created(got) => return Ok(Some((net, Some(got)))),
                        NewBlock::Taken => false,
                        NewBlock::InTheWay => self.claim_block(node, &net, None).await?,
                    },
                    Some(b) if b.affinity.is_none() => match self.read_block(&net).await? {
                        Some(full) if full.value.affinity.is_none() => {
                            self.claim_block(node, &net, Some(&full)).await?
                        }
                        _ => false,
                    },
                    Some(_) => false,
                };
                if claimed {
                    return Ok(Some((net, None)));
                }
            }
        }
        Ok(None)
    }

    /// Creates `net` for `node` with `first`'s addresses in it, in one
    /// transaction: the confirmed affinity, the block and the handle, or
    /// nothing. (Calico's pending-then-confirmed claim lets a claimer that
    /// dies between its writes be finished or undone; one transaction has
    /// no between. It is also one store write where the two-phase claim
    /// and the first assignment made four, each of which every node
    /// watching the blocks reads: at a cold start of 250 nodes that was
    /// most of the store's traffic.)
    async fn create_block_assigning(
        &self,
        node: &str,
        net: &IpNet,
        first: &mut FirstAssignment<'_, '_>,
    ) -> IpamResult<NewBlock> {
        let aff_key = keys::affinity_key(node, net);
        let block_key = keys::block_key(net);
        let ours = host_affinity(node);
        let mut fresh = AllocationBlock::new(*net, Some(ours.clone()));
        fresh.empty_since = Some(unix_now());
        let got = fresh.auto_assign(first.n, first.attr.clone());
        let handle = first.attr.handle_id.clone().unwrap_or_default();
        let hw = match first.handle_hint.take() {
            Some(current) => handle_write_from(&handle, net, got.len() as isize, current),
            None => self.handle_write(&handle, net, got.len() as isize).await?,
        };
        let confirmed = to_json(&AffinityDoc {
            state: AffinityState::Confirmed,
        });
        let mut compares = vec![
            Compare::absent(aff_key.clone()),
            Compare::absent(block_key.clone()),
        ];
        let mut ops = vec![
            TxnOp::put(aff_key, confirmed),
            TxnOp::put(block_key, to_json(&fresh)),
        ];
        if !got.is_empty() {
            compares.push(match hw.expected {
                Some(rev) => Compare::unchanged_since(hw.key.clone(), rev),
                None => Compare::absent(hw.key.clone()),
            });
            if let Some(doc) = &hw.doc {
                ops.push(TxnOp::put(hw.key.clone(), to_json(doc)));
            }
        }
        let txn = Txn::new().when(compares).and_then(ops);
        match self.store.txn(txn).await {
            Ok(resp) if resp.succeeded => {
                self.note_block(&fresh);
                return Ok(NewBlock::Created(got));
            }
            Ok(_) => {}
            // Unanswered: whether it landed is read below.
            Err(e) if e.is_transient() => {
                debug!(error = %e, block = %net, "block creation unanswered; re-reading")
            }
            Err(e) => return Err(e.into()),
        }
        Ok(match self.read_block(net).await? {
            Some(now) if holds_allocations(&now.value, &got, &handle) && !got.is_empty() => {
                self.note_block(&now.value);
                NewBlock::Created(got)
            }
            Some(now) => {
                self.note_block(&now.value);
                if now.value.affinity.as_deref() == Some(&ours) {
                    // Another process of this node created it: ours to use.
                    NewBlock::InTheWay
                } else {
                    NewBlock::Taken
                }
            }
            // A claim or the handle changed under us (a claim left by a
            // claimer that died, a concurrent request of the same handle):
            // the two-phase path sorts those out.
            None => NewBlock::InTheWay,
        })
    }

    /// Two-phase claim of `net` for `node`: pending claim, then the block
    /// (created if `existing` is `None`, else taken over if still nobody's),
    /// then confirm. Returns whether the block is now the node's.
    #[instrument(skip(self, existing))]
    async fn claim_block(
        &self,
        node: &str,
        net: &IpNet,
        existing: Option<&Versioned<AllocationBlock>>,
    ) -> IpamResult<bool> {
        let aff_key = keys::affinity_key(node, net);
        let pending = to_json(&AffinityDoc {
            state: AffinityState::Pending,
        });
        let aff_rev = match patiently(|| async {
            Ok(self
                .store
                .compare_and_swap(aff_key.clone(), None, pending.clone())
                .await?)
        })
        .await?
        {
            Swap::Written(kv) => kv.mod_revision,
            // Our own earlier claim (another process of this node, or one
            // that died half-way): carry on with it.
            Swap::Lost(Some(kv)) => {
                if decode::<AffinityDoc>(&kv)?.state == AffinityState::PendingDeletion {
                    return Ok(false);
                }
                kv.mod_revision
            }
            Swap::Lost(None) => return Ok(false),
        };
        let ours = host_affinity(node);
        let won = match existing {
            None => {
                let mut fresh = AllocationBlock::new(*net, Some(ours.clone()));
                fresh.empty_since = Some(unix_now());
                match patiently(|| async {
                    Ok(self
                        .store
                        .compare_and_swap(keys::block_key(net), None, to_json(&fresh))
                        .await?)
                })
                .await?
                {
                    Swap::Written(_) => {
                        self.note_block(&fresh);
                        true
                    }
                    Swap::Lost(Some(kv)) => {
                        let theirs = decode::<AllocationBlock>(&kv)?;
                        self.note_block(&theirs);
                        theirs.affinity.as_deref() == Some(&ours)
                    }
                    Swap::Lost(None) => false,
                }
            }
            Some(b) => {
                let mut taken = b.value.clone();
                taken.affinity = Some(ours.clone());
                self.commit_block(b.mod_revision, &taken, Vec::new(), |now| {
                    now.affinity.as_deref() == Some(&ours)
                })
                .await?
            }
        };
        if !won {
            // Lost the race: withdraw the pending claim (if it is still the
            // one we wrote) and let the caller try another block.
            if let Err(e) = self.store.delete_if(aff_key.clone(), aff_rev).await {
                debug!(error = %e, "pending claim already changed");
            }
            return Ok(false);
        }
        self.confirm(&aff_key).await?;
        Ok(true)
    }

    /// Marks a claim confirmed (creating it if a concurrent cleanup removed it).
    pub(super) async fn confirm(&self, aff_key: &str) -> IpamResult<()> {
        let confirmed = to_json(&AffinityDoc {
            state: AffinityState::Confirmed,
        });
        let mut expected = None;
        for _ in 0..MAX_RETRIES {
            match patiently(|| async {
                Ok(self
                    .store
                    .compare_and_swap(aff_key.to_owned(), expected, confirmed.clone())
                    .await?)
            })
            .await?
            {
                Swap::Written(_) => return Ok(()),
                Swap::Lost(None) => expected = None,
                Swap::Lost(Some(kv)) => {
                    if decode::<AffinityDoc>(&kv)?.state == AffinityState::Confirmed {
                        return Ok(());
                    }
                    expected = Some(kv.mod_revision);
                }
            }
        }
        Err(IpamError::TooManyConflicts {
            what: format!("confirming {aff_key}"),
        })
    }

    /// Allocates one specific address (a workload that keeps its address,
    /// a configured tunnel address). If its block does not exist yet, `node`
    /// claims it; if the block is another node's, the address is borrowed.
    /// Idempotent for the same handle.
    #[instrument(skip(self, attrs))]
    pub async fn assign_ip(
        &self,
        ip: IpAddr,
        handle: &str,
        node: &str,
        attrs: BTreeMap<String, String>,
    ) -> IpamResult<IpNet> {
        check_names(handle, node)?;
        let pools = self.pools().await?;
        let pool = pools
            .iter()
            .find(|p| p.net.contains(&ip))
            .ok_or(IpamError::NotInPool(ip))?;
        let net = pool.block_of(ip).ok_or(IpamError::NotInPool(ip))?;
        let mut secondary = attrs;
        secondary.insert(ATTR_NODE.into(), node.to_owned());
        let attr = AllocationAttribute {
            handle_id: Some(handle.to_owned()),
            secondary,
        };
        for _ in 0..MAX_RETRIES {
            let Some(current) = self.read_block(&net).await? else {
                self.claim_block(node, &net, None).await?;
                continue;
            };
            let mut block = current.value.clone();
            match block.assign(ip, attr.clone()) {
                Ok(_) => {}
                Err(block::AssignError::InUse(holder)) if holder.as_deref() == Some(handle) => {
                    return Ok(host_net(ip));
                }
                Err(block::AssignError::InUse(holder)) => {
                    return Err(IpamError::AddressInUse { ip, holder });
                }
                Err(block::AssignError::NotInBlock) => {
                    return Err(IpamError::Corrupt {
                        key: keys::block_key(&net),
                        reason: format!("block does not contain {ip}"),
                    })
                }
            }
            let hw = self.handle_write(handle, &net, 1).await?;
            if self
                .commit_block(current.mod_revision, &block, vec![hw], |_| false)
                .await?
            {
                return Ok(host_net(ip));
            }
        }
        Err(IpamError::TooManyConflicts {
            what: format!("assigning {ip}"),
        })
    }
}

/// The addresses a new block is created with ([`Ipam::create_block_assigning`]).
struct FirstAssignment<'a, 'h> {
    n: usize,
    attr: &'a AllocationAttribute,
    handle_hint: &'h mut Option<Option<Versioned<HandleDoc>>>,
}

/// What became of creating a block with its first addresses.
enum NewBlock {
    /// Created, holding these addresses.
    Created(Vec<block::Allocated>),
    /// Someone else's now.
    Taken,
    /// Not created: a claim or the handle was in the way (or this node's
    /// other process created it); the two-phase claim takes over.
    InTheWay,
}

/// Whether `block` holds each of `got` for `handle`, with the sequence
/// number the write that took it recorded.
fn holds_allocations(block: &AllocationBlock, got: &[block::Allocated], handle: &str) -> bool {
    got.iter().all(|a| {
        block.ordinal(a.ip).is_some_and(|o| {
            block.sequence_number_for_allocation.get(&o.to_string()) == Some(&a.sequence)
        }) && block.ips_of_handle(handle).contains(&a.ip)
    })
}

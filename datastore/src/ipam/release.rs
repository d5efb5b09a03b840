//! Releases: by handle (CNI DEL) and of single addresses (guarded by handle
//! and sequence number).

use super::*;

impl Ipam {
    // ----- release ---------------------------------------------------------

    /// Releases every address of `handle`; returns them. Idempotent: an
    /// unknown handle releases nothing.
    #[instrument(skip(self))]
    pub async fn release_by_handle(&self, handle: &str) -> IpamResult<Vec<IpAddr>> {
        let mut released = Vec::new();
        for _ in 0..MAX_RETRIES {
            let Some(doc) = self.read_handle(handle).await? else {
                return Ok(released);
            };
            let Some(cidr) = doc.value.block.keys().next().cloned() else {
                // An empty handle document: remove it.
                let _ = self
                    .store
                    .delete_if(keys::handle_key(handle), doc.mod_revision)
                    .await;
                continue;
            };
            let net: IpNet = cidr.parse().map_err(|_| IpamError::Corrupt {
                key: keys::handle_key(handle),
                reason: format!("bad block CIDR {cidr:?}"),
            })?;
            let mut rest = doc.value.clone();
            rest.block.remove(&cidr);
            let handle_write = HandleWrite {
                key: keys::handle_key(handle),
                expected: Some(doc.mod_revision),
                doc: Some(rest),
            };
            match self.read_block(&net).await? {
                None => {
                    // The block is gone, so are its addresses: just fix the handle.
                    let _ = self.commit_handle_only(handle_write).await?;
                }
                Some(current) => {
                    let mut block = current.value.clone();
                    let ips = block.release_handle(handle, unix_now());
                    // Lost or unanswered, the loop reads the handle again.
                    if self
                        .commit_block(current.mod_revision, &block, vec![handle_write], |_| false)
                        .await?
                    {
                        released.extend(ips);
                    }
                }
            }
        }
        Err(IpamError::TooManyConflicts {
            what: format!("releasing handle {handle}"),
        })
    }

    async fn commit_handle_only(&self, h: HandleWrite) -> IpamResult<bool> {
        let guard = match h.expected {
            Some(rev) => Compare::unchanged_since(h.key.clone(), rev),
            None => Compare::absent(h.key.clone()),
        };
        let op = match h.doc {
            Some(doc) if !doc.block.is_empty() => TxnOp::put(h.key, to_json(&doc)),
            _ => TxnOp::delete(h.key),
        };
        let txn = Txn::new().when([guard]).and_then([op]);
        patiently(|| async { Ok(self.store.txn(txn.clone()).await?.succeeded) }).await
    }

    /// Releases individual addresses (see [`ReleaseOptions`]).
    #[instrument(skip(self, ips), fields(n = ips.len()))]
    pub async fn release_ips(&self, ips: &[ReleaseOptions]) -> IpamResult<ReleaseOutcome> {
        let mut outcome = ReleaseOutcome::default();
        let mut by_block: BTreeMap<IpNet, Vec<&ReleaseOptions>> = BTreeMap::new();
        let mut all_blocks: HashMap<Family, Vec<IpNet>> = HashMap::new();
        for opt in ips {
            let family = Family::of_ip(&opt.ip);
            if let std::collections::hash_map::Entry::Vacant(e) = all_blocks.entry(family) {
                let listing = self.store.list(keys::blocks_prefix(family)).await?;
                e.insert(
                    listing
                        .kvs
                        .iter()
                        .filter_map(|kv| {
                            let key = kv.key_str();
                            keys::parse_cidr_segment(key.rsplit('/').next()?)
                        })
                        .collect(),
                );
            }
            match all_blocks[&family].iter().find(|b| b.contains(&opt.ip)) {
                Some(b) => by_block.entry(*b).or_default().push(opt),
                None => outcome.not_allocated.push(opt.ip),
            }
        }
        for (net, opts) in by_block {
            self.release_in_block(&net, &opts, &mut outcome).await?;
        }
        Ok(outcome)
    }

    async fn release_in_block(
        &self,
        net: &IpNet,
        opts: &[&ReleaseOptions],
        outcome: &mut ReleaseOutcome,
    ) -> IpamResult<()> {
        for _ in 0..MAX_RETRIES {
            let Some(current) = self.read_block(net).await? else {
                outcome.not_allocated.extend(opts.iter().map(|o| o.ip));
                return Ok(());
            };
            let mut block = current.value.clone();
            let mut attempt = ReleaseOutcome::default();
            let mut per_handle: BTreeMap<String, isize> = BTreeMap::new();
            let now = unix_now();
            for opt in opts {
                let holder = block
                    .allocations_view()
                    .find(|a| a.ip == opt.ip)
                    .and_then(|a| a.attribute)
                    .and_then(|a| a.handle_id.clone());
                match block.release(opt.ip, opt.handle.as_deref(), opt.sequence, now) {
                    Ok(true) => {
                        attempt.released.push(opt.ip);
                        if let Some(h) = holder {
                            *per_handle.entry(h).or_insert(0) -= 1;
                        }
                    }
                    Ok(false) => attempt.not_allocated.push(opt.ip),
                    Err(why) => attempt.refused.push((opt.ip, why)),
                }
            }
            if attempt.released.is_empty() {
                merge(outcome, attempt);
                return Ok(());
            }
            let mut writes = Vec::new();
            for (h, delta) in per_handle {
                writes.push(self.handle_write(&h, net, delta).await?);
            }
            if self
                .commit_block(current.mod_revision, &block, writes, |_| false)
                .await?
            {
                merge(outcome, attempt);
                return Ok(());
            }
        }
        Err(IpamError::TooManyConflicts {
            what: format!("releasing addresses in {net}"),
        })
    }

    /// Moves address `ip` from handle `from` to handle `to` (an owner that
    /// got its addresses one at a time and keeps them under one handle).
    /// Refused when another handle holds it; an address not allocated is an
    /// error too, as its owner needs it.
    pub async fn transfer_ip(&self, ip: IpAddr, from: &str, to: &str) -> IpamResult<()> {
        check_names(to, "transfer")?;
        let pools = self.pools().await?;
        let net = pools
            .iter()
            .find(|p| p.net.contains(&ip))
            .and_then(|p| p.block_of(ip))
            .ok_or(IpamError::NotInPool(ip))?;
        for _ in 0..MAX_RETRIES {
            let Some(current) = self.read_block(&net).await? else {
                return Err(IpamError::AddressNotAllocated(ip));
            };
            let mut block = current.value.clone();
            match block.rehandle(ip, from, to) {
                Ok(true) => {}
                Ok(false) => return Err(IpamError::AddressNotAllocated(ip)),
                Err(ReleaseRefused::OtherHandle(holder)) => {
                    return Err(IpamError::AddressInUse { ip, holder })
                }
                Err(other) => {
                    return Err(IpamError::Corrupt {
                        key: keys::block_key(&net),
                        reason: format!("moving {ip}: {other:?}"),
                    })
                }
            }
            let writes = vec![
                self.handle_write(from, &net, -1).await?,
                self.handle_write(to, &net, 1).await?,
            ];
            if self
                .commit_block(current.mod_revision, &block, writes, |_| false)
                .await?
            {
                return Ok(());
            }
        }
        Err(IpamError::TooManyConflicts {
            what: format!("moving {ip} to handle {to}"),
        })
    }
}

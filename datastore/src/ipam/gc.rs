//! Garbage collection: a deleted node's claims and blocks left empty for a
//! grace period.

use super::*;

impl Ipam {
    // ----- garbage collection of blocks and nodes ---------------------------

    /// Releases every claim of a deleted node: its empty blocks are deleted,
    /// blocks still holding addresses become nobody's (their addresses stay
    /// allocated until released or found leaked; another node may claim them).
    #[instrument(skip(self))]
    pub async fn release_node(&self, node: &str) -> IpamResult<NodeRelease> {
        self.forget_heads();
        let mut out = NodeRelease::default();
        let claims = self.store.list(keys::host_prefix(node)).await?;
        for kv in &claims.kvs {
            let Some((_, net)) = keys::parse_affinity_key(&kv.key_str()) else {
                continue;
            };
            let mut done = false;
            for _ in 0..MAX_RETRIES {
                let Some(current) = self.read_block(&net).await? else {
                    let _ = self.store.delete(kv.key.clone()).await?;
                    done = true;
                    break;
                };
                let block_key = keys::block_key(&net);
                let mut compares = vec![Compare::unchanged_since(
                    block_key.clone(),
                    current.mod_revision,
                )];
                let mut ops = vec![TxnOp::delete(kv.key.clone())];
                let ours = current.value.affine_node() == Some(node);
                let emptied = ours && current.value.is_empty();
                if emptied {
                    ops.push(TxnOp::delete(block_key));
                } else if ours {
                    let mut unclaimed = current.value.clone();
                    unclaimed.affinity = None;
                    ops.push(TxnOp::put(block_key, to_json(&unclaimed)));
                } else {
                    compares.clear();
                }
                if self
                    .store
                    .txn(Txn::new().when(compares).and_then(ops))
                    .await?
                    .succeeded
                {
                    if emptied {
                        out.blocks_deleted.push(net);
                    } else if ours {
                        out.blocks_unclaimed.push(net);
                    }
                    done = true;
                    break;
                }
            }
            if !done {
                return Err(IpamError::TooManyConflicts {
                    what: format!("releasing {node}'s claim on {net}"),
                });
            }
        }
        Ok(out)
    }

    /// Releases blocks that have been empty for at least `grace`, only
    /// where their node keeps another block (Calico: a node's last block
    /// stays). The claim goes to `pendingDeletion` first so the node stops
    /// allocating from it; the block and claim are then deleted together
    /// only if the block did not change, else the claim is restored.
    #[instrument(skip(self))]
    pub async fn release_empty_blocks(&self, grace: Duration) -> IpamResult<Vec<IpNet>> {
        self.forget_heads();
        let now = unix_now();
        let mut released = Vec::new();
        let claims = self.store.list(keys::hosts_prefix()).await?;
        let mut per_node: BTreeMap<String, Vec<(IpNet, KeyValue)>> = BTreeMap::new();
        for kv in claims.kvs {
            if let Some((node, net)) = keys::parse_affinity_key(&kv.key_str()) {
                per_node.entry(node).or_default().push((net, kv));
            }
        }
        for (node, claims) in per_node {
            let mut remaining = claims.len();
            for (net, kv) in claims {
                if remaining <= 1 {
                    break;
                }
                if decode::<AffinityDoc>(&kv)?.state != AffinityState::Confirmed {
                    continue;
                }
                let Some(current) = self.read_block(&net).await? else {
                    continue;
                };
                let b = &current.value;
                let old_enough = b
                    .empty_since
                    .is_some_and(|t| now.saturating_sub(t) >= grace.as_secs());
                if b.affine_node() != Some(node.as_str()) || !b.is_empty() || !old_enough {
                    continue;
                }
                let marking = to_json(&AffinityDoc {
                    state: AffinityState::PendingDeletion,
                });
                let Ok(marked) = self
                    .store
                    .update_if(kv.key.clone(), kv.mod_revision, marking)
                    .await
                else {
                    continue;
                };
                let resp = self
                    .store
                    .txn(
                        Txn::new()
                            .when([
                                Compare::unchanged_since(
                                    keys::block_key(&net),
                                    current.mod_revision,
                                ),
                                Compare::unchanged_since(kv.key.clone(), marked.mod_revision),
                            ])
                            .and_then([
                                TxnOp::delete(keys::block_key(&net)),
                                TxnOp::delete(kv.key.clone()),
                            ]),
                    )
                    .await?;
                if resp.succeeded {
                    remaining -= 1;
                    released.push(net);
                } else {
                    let confirmed = to_json(&AffinityDoc {
                        state: AffinityState::Confirmed,
                    });
                    let _ = self
                        .store
                        .update_if(kv.key.clone(), marked.mod_revision, confirmed)
                        .await;
                }
            }
        }
        Ok(released)
    }
}

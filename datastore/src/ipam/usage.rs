//! What a node routes (its blocks and borrowed addresses) and how full each
//! pool is.

use super::*;

impl Ipam {
    // ----- what nodes route, and usage ----------------------------------------

    /// What `node` announces: its confirmed blocks and the addresses it
    /// borrowed from blocks that are not its own.
    pub async fn blocks_of(&self, node: &str) -> IpamResult<NodeBlocks> {
        let mut out = NodeBlocks::default();
        let claims = self.store.list(keys::host_prefix(node)).await?;
        for kv in &claims.kvs {
            if decode::<AffinityDoc>(kv)?.state == AffinityState::Confirmed {
                if let Some((_, net)) = keys::parse_affinity_key(&kv.key_str()) {
                    out.affine.push(net);
                }
            }
        }
        for family in [Family::V4, Family::V6] {
            for b in self.list_blocks(family).await? {
                if b.value.affine_node() == Some(node) {
                    continue;
                }
                for a in b.value.allocations_view() {
                    let by = a.attribute.and_then(|x| x.secondary.get(ATTR_NODE));
                    if by.map(String::as_str) == Some(node) {
                        out.borrowed.push(host_net(a.ip));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Per pool and per block: total, in use, free.
    pub async fn usage(&self) -> IpamResult<Vec<PoolUsage>> {
        let pools = self.pools().await?;
        let mut blocks = self.list_blocks(Family::V4).await?;
        blocks.extend(self.list_blocks(Family::V6).await?);
        Ok(pools
            .iter()
            .map(|p| {
                let blocks: Vec<BlockUsage> = blocks
                    .iter()
                    .filter(|b| p.net.contains(&b.value.cidr))
                    .map(|b| BlockUsage {
                        cidr: b.value.cidr,
                        node: b.value.affine_node().map(str::to_owned),
                        total: b.value.size() as u128,
                        in_use: b.value.in_use() as u128,
                        free: b.value.free() as u128,
                    })
                    .collect();
                let total = block::net_size(&p.net);
                let in_use = blocks.iter().map(|b| b.in_use).sum();
                PoolUsage {
                    name: p.name.clone(),
                    cidr: p.net,
                    disabled: p.spec.disabled,
                    total,
                    in_use,
                    free: total.saturating_sub(in_use),
                    blocks,
                }
            })
            .collect())
    }
}

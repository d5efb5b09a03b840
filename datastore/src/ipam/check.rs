//! Check and repair: leaks (allocations with no live owner), addresses in
//! use that IPAM does not hold, and conflicts; [`Ipam::release_leaks`]
//! repairs what can be repaired.

use super::*;

/// An allocation whose handle has no live owner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leak {
    pub ip: IpAddr,
    pub handle: Option<String>,
    /// The block's sequence number of this allocation (released only if unchanged).
    pub sequence: Option<u64>,
    pub block: IpNet,
    /// The `node` attribute of the allocation.
    pub node: Option<String>,
}

/// Something in IPAM's state that a correct writer never leaves behind, or
/// that needs an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// One address inside two block documents (overlapping blocks).
    DuplicateAddress { ip: IpAddr, blocks: Vec<IpNet> },
    /// A block document contradicts itself.
    InconsistentBlock { block: IpNet, problems: Vec<String> },
    /// A handle document's counts do not match the blocks.
    HandleMismatch {
        handle: String,
        recorded: BTreeMap<String, usize>,
        actual: BTreeMap<String, usize>,
    },
    /// A node's claim on a block it does not own (a pending claim whose
    /// block went to another node, or whose block is gone).
    StaleAffinity {
        node: String,
        block: IpNet,
        state: AffinityState,
        key: String,
        mod_revision: Revision,
    },
    /// A block affine to a node that has no claim record for it.
    MissingAffinity { node: String, block: IpNet },
    /// A claim left pending on a block that is the node's (its claimer
    /// died before confirming): the node does not announce the block yet.
    UnconfirmedClaim {
        node: String,
        block: IpNet,
        key: String,
    },
    /// A block whose CIDR is in no pool any more.
    BlockOutsidePools { block: IpNet },
    /// An address an endpoint or a node's tunnel uses that no block
    /// allocation holds: the next ADD may hand it to someone else.
    InUseNotAllocated { ip: IpAddr, user: String },
    /// An address in use whose allocation belongs to another handle than its
    /// user's (`holder: None`: an allocation without a handle).
    InUseByOtherHandle {
        ip: IpAddr,
        user: String,
        holder: Option<String>,
    },
    /// One address used by two or more endpoints or tunnels.
    UsedTwice { ip: IpAddr, users: Vec<String> },
    /// A document that does not decode.
    Undecodable { key: String, reason: String },
}

impl Conflict {
    /// Whether [`Ipam::release_leaks`] repairs it.
    pub fn repairable(&self) -> bool {
        matches!(
            self,
            Conflict::HandleMismatch { .. }
                | Conflict::StaleAffinity { .. }
                | Conflict::MissingAffinity { .. }
                | Conflict::UnconfirmedClaim { .. }
        )
    }
}

/// Something that uses an address (a WorkloadEndpoint's `ipNetworks`, a
/// Node's tunnel address), for [`Ipam::check_with_users`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressUser {
    pub ip: IpAddr,
    /// Who, for the report: `WorkloadEndpoint ns/name`, `Node n (VXLAN tunnel)`.
    pub user: String,
    /// Which handles may hold the address for this user.
    pub handle: UserHandle,
}

/// The handle an address user's allocation must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserHandle {
    /// Exactly this one (a node's tunnel handle).
    Exact(String),
    /// `<network>.<container id>` for this container id (an endpoint: the
    /// network part is the CNI configuration's name, which the endpoint does
    /// not record).
    Container(String),
    /// Any (an endpoint without a container id).
    Any,
}

impl UserHandle {
    fn admits(&self, handle: Option<&str>) -> bool {
        match (self, handle) {
            (UserHandle::Any, _) => true,
            (UserHandle::Exact(want), Some(h)) => want == h,
            (UserHandle::Container(id), Some(h)) => {
                h.split_once('.').is_some_and(|(_, cid)| cid == id)
            }
            (_, None) => false,
        }
    }
}

/// The result of [`Ipam::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Addresses in use (all blocks).
    pub allocated: usize,
    pub leaks: Vec<Leak>,
    pub conflicts: Vec<Conflict>,
}

impl CheckReport {
    /// The leaks also present (same address, handle and sequence number) in
    /// `earlier`: Calico releases a leak only once it has been seen twice,
    /// a grace period apart, because an address is allocated before its
    /// endpoint is written.
    pub fn leaks_confirmed_by(&self, earlier: &CheckReport) -> CheckReport {
        let seen: HashSet<&Leak> = earlier.leaks.iter().collect();
        CheckReport {
            allocated: self.allocated,
            leaks: self
                .leaks
                .iter()
                .filter(|l| seen.contains(l))
                .cloned()
                .collect(),
            conflicts: self.conflicts.clone(),
        }
    }
}

impl std::hash::Hash for Leak {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ip.hash(state);
        self.handle.hash(state);
        self.sequence.hash(state);
    }
}

/// What [`Ipam::release_leaks`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairSummary {
    pub released: Vec<IpAddr>,
    /// Leaks left alone because the address changed hands since the check.
    pub skipped: Vec<IpAddr>,
    pub affinities_removed: usize,
    pub affinities_restored: usize,
    pub claims_confirmed: usize,
    pub handles_rewritten: usize,
}

impl Ipam {
    // ----- check and repair ----------------------------------------------------

    /// The handles whose owner exists: `<network>.<container id>` for every
    /// WorkloadEndpoint with a container id, and the tunnel handles of every
    /// Node. For [`check`](Self::check) when the caller has no better source.
    pub async fn live_handles_from_store(&self) -> IpamResult<HashSet<String>> {
        let mut containers = HashSet::new();
        for kv in self
            .store
            .list(keys::kind_prefix(Kind::WorkloadEndpoint))
            .await?
            .kvs
        {
            if let Ok(Resource::WorkloadEndpoint(w)) = parse_resource(&kv) {
                if let Some(id) = w.spec.container_id.filter(|c| !c.is_empty()) {
                    containers.insert(id);
                }
            }
        }
        let mut nodes = HashSet::new();
        for kv in self.store.list(keys::kind_prefix(Kind::Node)).await?.kvs {
            if let Ok(r) = parse_resource(&kv) {
                nodes.insert(r.name().to_owned());
            }
        }
        let mut live = HashSet::new();
        for kv in self.store.list(keys::handles_prefix()).await?.kvs {
            let key = kv.key_str();
            let Some(handle) = key.strip_prefix(&keys::handles_prefix()) else {
                continue;
            };
            let tunnel_node = TUNNEL_PREFIXES.iter().find_map(|p| handle.strip_prefix(p));
            let alive = match tunnel_node {
                Some(node) => nodes.contains(node),
                None => handle
                    .split_once('.')
                    .is_some_and(|(_, id)| containers.contains(id)),
            };
            if alive {
                live.insert(handle.to_owned());
            }
        }
        Ok(live)
    }

    /// Every address an endpoint or a node's tunnel uses, from the store.
    pub async fn address_users_from_store(&self) -> IpamResult<Vec<AddressUser>> {
        let mut users = Vec::new();
        for kv in self
            .store
            .list(keys::kind_prefix(Kind::WorkloadEndpoint))
            .await?
            .kvs
        {
            let Ok(Resource::WorkloadEndpoint(w)) = parse_resource(&kv) else {
                continue;
            };
            let who = format!(
                "WorkloadEndpoint {}/{}",
                w.metadata.namespace.as_deref().unwrap_or("default"),
                w.metadata.name
            );
            let handle = match w.spec.container_id.as_deref().filter(|c| !c.is_empty()) {
                Some(id) => UserHandle::Container(id.to_owned()),
                None => UserHandle::Any,
            };
            for net in &w.spec.ip_networks {
                if let Some(ip) = parse_addr(net) {
                    users.push(AddressUser {
                        ip,
                        user: who.clone(),
                        handle: handle.clone(),
                    });
                }
            }
        }
        for kv in self.store.list(keys::kind_prefix(Kind::Node)).await?.kvs {
            let Ok(Resource::Node(n)) = parse_resource(&kv) else {
                continue;
            };
            let name = &n.metadata.name;
            let tunnels = [
                (
                    TunnelKind::Ipip,
                    "IPIP",
                    n.spec
                        .bgp
                        .as_ref()
                        .and_then(|b| b.ipv4_ipip_tunnel_addr.clone()),
                ),
                (
                    TunnelKind::Vxlan,
                    "VXLAN",
                    n.spec.ipv4_vxlan_tunnel_addr.clone(),
                ),
                (
                    TunnelKind::VxlanV6,
                    "IPv6 VXLAN",
                    n.spec.ipv6_vxlan_tunnel_addr.clone(),
                ),
            ];
            for (kind, label, addr) in tunnels {
                if let Some(ip) = addr.as_deref().and_then(parse_addr) {
                    users.push(AddressUser {
                        ip,
                        user: format!("Node {name} ({label} tunnel)"),
                        handle: UserHandle::Exact(tunnel_handle(kind, name)),
                    });
                }
            }
        }
        Ok(users)
    }

    /// Reads all of IPAM's state and reports leaks (allocations whose handle
    /// is not in `live_handles`, or that have no handle) and conflicts. Reads
    /// only; see [`release_leaks`](Self::release_leaks).
    pub async fn check(&self, live_handles: &HashSet<String>) -> IpamResult<CheckReport> {
        self.check_with_users(live_handles, &[]).await
    }

    /// [`check`](Self::check), and also, against `users`
    /// ([`address_users_from_store`](Self::address_users_from_store)):
    /// addresses in use that no allocation holds, or that another handle
    /// holds, and addresses used twice. Those need an operator: a repair
    /// never takes an address from one user to give it to another.
    #[instrument(skip(self, live_handles, users), fields(users = users.len()))]
    pub async fn check_with_users(
        &self,
        live_handles: &HashSet<String>,
        users: &[AddressUser],
    ) -> IpamResult<CheckReport> {
        let mut report = CheckReport::default();
        let pools = self.pools().await?;
        let mut blocks: Vec<AllocationBlock> = Vec::new();
        for family in [Family::V4, Family::V6] {
            for kv in self.store.list(keys::blocks_prefix(family)).await?.kvs {
                match decode::<AllocationBlock>(&kv) {
                    Ok(b) => blocks.push(b),
                    Err(e) => report.conflicts.push(Conflict::Undecodable {
                        key: kv.key_str().into_owned(),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        let mut owners: BTreeMap<IpAddr, Vec<IpNet>> = BTreeMap::new();
        let mut holders: HashMap<IpAddr, Option<String>> = HashMap::new();
        let mut actual: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for b in &blocks {
            let problems = b.inconsistencies();
            if !problems.is_empty() {
                report.conflicts.push(Conflict::InconsistentBlock {
                    block: b.cidr,
                    problems,
                });
            }
            if !pools.iter().any(|p| p.net.contains(&b.cidr)) {
                report
                    .conflicts
                    .push(Conflict::BlockOutsidePools { block: b.cidr });
            }
            for a in b.allocations_view() {
                report.allocated += 1;
                owners.entry(a.ip).or_default().push(b.cidr);
                let handle = a.attribute.and_then(|x| x.handle_id.clone());
                holders.insert(a.ip, handle.clone());
                if let Some(h) = &handle {
                    *actual
                        .entry(h.clone())
                        .or_default()
                        .entry(b.cidr.to_string())
                        .or_insert(0) += 1;
                }
                if !handle.as_ref().is_some_and(|h| live_handles.contains(h)) {
                    report.leaks.push(Leak {
                        ip: a.ip,
                        handle,
                        sequence: a.sequence,
                        block: b.cidr,
                        node: a
                            .attribute
                            .and_then(|x| x.secondary.get(ATTR_NODE).cloned()),
                    });
                }
            }
        }
        for (ip, in_blocks) in owners {
            if in_blocks.len() > 1 {
                report.conflicts.push(Conflict::DuplicateAddress {
                    ip,
                    blocks: in_blocks,
                });
            }
        }
        // Addresses in use against the allocations.
        let mut by_ip: BTreeMap<IpAddr, Vec<&AddressUser>> = BTreeMap::new();
        for u in users {
            by_ip.entry(u.ip).or_default().push(u);
        }
        for (ip, using) in by_ip {
            let mut names: Vec<String> = using.iter().map(|u| u.user.clone()).collect();
            names.sort();
            names.dedup();
            if names.len() > 1 {
                report
                    .conflicts
                    .push(Conflict::UsedTwice { ip, users: names });
            }
            for u in using {
                match holders.get(&ip) {
                    None => report.conflicts.push(Conflict::InUseNotAllocated {
                        ip,
                        user: u.user.clone(),
                    }),
                    Some(holder) if !u.handle.admits(holder.as_deref()) => {
                        report.conflicts.push(Conflict::InUseByOtherHandle {
                            ip,
                            user: u.user.clone(),
                            holder: holder.clone(),
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        // Handle documents against the blocks.
        let mut recorded: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for kv in self.store.list(keys::handles_prefix()).await?.kvs {
            match decode::<HandleDoc>(&kv) {
                Ok(doc) => {
                    recorded.insert(doc.handle_id.clone(), doc.block);
                }
                Err(e) => report.conflicts.push(Conflict::Undecodable {
                    key: kv.key_str().into_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        let names: BTreeSet<&String> = recorded.keys().chain(actual.keys()).collect();
        for h in names {
            let r = recorded.get(h).cloned().unwrap_or_default();
            let a = actual.get(h).cloned().unwrap_or_default();
            if r != a {
                report.conflicts.push(Conflict::HandleMismatch {
                    handle: h.clone(),
                    recorded: r,
                    actual: a,
                });
            }
        }
        // Claims against blocks.
        let by_cidr: HashMap<IpNet, &AllocationBlock> =
            blocks.iter().map(|b| (b.cidr, b)).collect();
        let mut claimed: HashSet<(String, IpNet)> = HashSet::new();
        for kv in self.store.list(keys::hosts_prefix()).await?.kvs {
            let Some((node, net)) = keys::parse_affinity_key(&kv.key_str()) else {
                continue;
            };
            let state = match decode::<AffinityDoc>(&kv) {
                Ok(d) => d.state,
                Err(e) => {
                    report.conflicts.push(Conflict::Undecodable {
                        key: kv.key_str().into_owned(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let owned = by_cidr
                .get(&net)
                .is_some_and(|b| b.affine_node() == Some(node.as_str()));
            if owned {
                if state == AffinityState::Pending {
                    report.conflicts.push(Conflict::UnconfirmedClaim {
                        node: node.clone(),
                        block: net,
                        key: kv.key_str().into_owned(),
                    });
                }
                claimed.insert((node, net));
            } else {
                report.conflicts.push(Conflict::StaleAffinity {
                    node,
                    block: net,
                    state,
                    key: kv.key_str().into_owned(),
                    mod_revision: kv.mod_revision,
                });
            }
        }
        for b in &blocks {
            if let Some(node) = b.affine_node() {
                if !claimed.contains(&(node.to_owned(), b.cidr)) {
                    report.conflicts.push(Conflict::MissingAffinity {
                        node: node.to_owned(),
                        block: b.cidr,
                    });
                }
            }
        }
        report.leaks.sort();
        Ok(report)
    }

    /// Repairs what `report` found: releases its leaks (each only if the
    /// address is still held by the same handle with the same sequence
    /// number, so an address reused since the check is left alone), removes
    /// stale claims, restores missing ones and rewrites handle documents
    /// from the blocks. Duplicates and inconsistent blocks need an operator
    /// and are left as they are.
    #[instrument(skip(self, report), fields(leaks = report.leaks.len()))]
    pub async fn release_leaks(&self, report: &CheckReport) -> IpamResult<RepairSummary> {
        self.forget_heads();
        let mut summary = RepairSummary::default();
        let opts: Vec<ReleaseOptions> = report
            .leaks
            .iter()
            .map(|l| ReleaseOptions {
                ip: l.ip,
                handle: l.handle.clone(),
                sequence: l.sequence,
            })
            .collect();
        let outcome = self.release_ips(&opts).await?;
        summary.released = outcome.released;
        summary.skipped = outcome
            .refused
            .into_iter()
            .map(|(ip, _)| ip)
            .chain(outcome.not_allocated)
            .collect();
        for c in &report.conflicts {
            match c {
                Conflict::StaleAffinity {
                    key, mod_revision, ..
                } => {
                    let removed = self.store.delete_if(key.clone(), *mod_revision).await;
                    summary.affinities_removed += usize::from(removed.is_ok());
                }
                Conflict::MissingAffinity { node, block } => {
                    let doc = to_json(&AffinityDoc {
                        state: AffinityState::Confirmed,
                    });
                    if let Swap::Written(_) = self
                        .store
                        .compare_and_swap(keys::affinity_key(node, block), None, doc)
                        .await?
                    {
                        summary.affinities_restored += 1;
                    }
                }
                Conflict::UnconfirmedClaim { key, .. } => {
                    self.confirm(key).await?;
                    summary.claims_confirmed += 1;
                }
                Conflict::HandleMismatch { handle, .. } => {
                    let rewritten = self.rewrite_handle(handle).await?;
                    summary.handles_rewritten += usize::from(rewritten);
                }
                _ => {}
            }
        }
        Ok(summary)
    }

    /// Recomputes a handle document from the blocks it claims and the
    /// blocks that hold its addresses (guarded by every block's revision).
    async fn rewrite_handle(&self, handle: &str) -> IpamResult<bool> {
        for _ in 0..MAX_RETRIES {
            let current = self.read_handle(handle).await?;
            let mut compares = Vec::new();
            let mut counts = BTreeMap::new();
            for family in [Family::V4, Family::V6] {
                let listing = self.store.list(keys::blocks_prefix(family)).await?;
                for kv in &listing.kvs {
                    let b: AllocationBlock = decode(kv)?;
                    let n = b.ips_of_handle(handle).len();
                    if n > 0 {
                        counts.insert(b.cidr.to_string(), n);
                        compares.push(Compare::unchanged_since(kv.key.clone(), kv.mod_revision));
                    }
                }
            }
            let key = keys::handle_key(handle);
            compares.push(match &current {
                Some(v) => Compare::unchanged_since(key.clone(), v.mod_revision),
                None => Compare::absent(key.clone()),
            });
            let op = if counts.is_empty() {
                TxnOp::delete(key)
            } else {
                TxnOp::put(
                    key,
                    to_json(&HandleDoc {
                        handle_id: handle.to_owned(),
                        block: counts,
                    }),
                )
            };
            if self
                .store
                .txn(Txn::new().when(compares).and_then([op]))
                .await?
                .succeeded
            {
                return Ok(true);
            }
        }
        Err(IpamError::TooManyConflicts {
            what: format!("rewriting handle {handle}"),
        })
    }
}

/// An address as endpoints and nodes write it: `10.0.0.5`, `10.0.0.5/32`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<IpNet>().ok().map(|n| n.addr()))
}

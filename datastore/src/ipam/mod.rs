//! IPAM: pools split into blocks, blocks claimed by nodes, addresses
//! allocated from blocks by handle. Calico's design (libcalico-go
//! `lib/ipam`), on [`Datastore`] with compare-and-swap on every write.
//!
//! # The contract
//!
//! * **No duplicate address, ever.** A block document ([`AllocationBlock`])
//!   is the only record of which of its addresses are taken, and every
//!   change to it is one transaction guarded by its `mod_revision` (together
//!   with the handle document it affects, so the two never disagree). Blocks
//!   are keyed by CIDR and created with "must be absent", so two writers
//!   cannot create the same block twice either. A writer that loses re-reads
//!   and retries (at most [`MAX_RETRIES`] times, then
//!   [`IpamError::TooManyConflicts`]).
//! * **Affinity claims are two-phase**, as in Calico: the node writes
//!   `host/<node>/…/block/<cidr>` as `pending`, creates the block (only if
//!   absent) with `affinity: host:<node>`, then marks the claim `confirmed`.
//!   A loser removes its pending claim and tries another block. A pending
//!   claim counts for nothing: [`Ipam::blocks_of`] announces confirmed blocks
//!   only. A claim left pending by a killed process is finished by the next
//!   allocation on that node if the block is its own, and reported by
//!   [`Ipam::check`] (repaired by [`Ipam::release_leaks`]) otherwise.
//! * **Allocation order** ([`Ipam::auto_assign`]): the node's own blocks;
//!   then a new block while it has fewer than `maxBlocksPerHost` (0: no
//!   limit) and `autoAllocateBlocks`; then, unless `strictAffinity`, one
//!   address at a time borrowed from any other block of an eligible pool
//!   (the borrowing node routes it as a /32, see [`Ipam::blocks_of`]). A
//!   request that cannot be met in full takes nothing
//!   ([`IpamError::Exhausted`]).
//! * **Eligible pools**: same family, not disabled, `assignmentMode:
//!   Automatic`, `allowedUses` containing the request's use, `nodeSelector`
//!   matching the Node resource's labels (no Node resource: no labels), and,
//!   if the caller names pools, one of those. A fixed address
//!   ([`Ipam::assign_ip`]) only needs to be inside some pool.
//! * **Releases** are idempotent. [`Ipam::release_ips`] can carry the handle
//!   and the block sequence number seen at allocation; a release whose number
//!   no longer matches is refused (the address was freed and reused meanwhile).
//! * **Choosing** a block to claim or borrow from uses a listing of the
//!   family's blocks that one [`Ipam`] reuses for up to
//!   [`BLOCK_LISTING_TTL`] (refreshed by every block it reads or writes):
//!   a full pool is not re-listed on every request. Only the choice is
//!   cached; what is written is always decided on a fresh read.
//! * A fixed address may come from a disabled or Manual pool (it was asked
//!   for by name); automatic assignment never does.
//! * Handles and node names are key segments: non-empty, without `/`.
//! * Nothing here panics on stored data: undecodable or contradictory
//!   documents are errors ([`IpamError::Corrupt`]) or [`Conflict`]s in a
//!   check report.
//!
//! # Repair and garbage collection
//!
//! * [`Ipam::check`] takes the handles whose owner exists (the caller's
//!   view, or [`Ipam::live_handles_from_store`]: endpoints' container ids and
//!   nodes' tunnel handles) and reports every other allocation as a [`Leak`],
//!   plus [`Conflict`]s. As an address is allocated before its endpoint is
//!   written, release only leaks seen twice a grace period apart
//!   ([`CheckReport::leaks_confirmed_by`]); [`Ipam::release_leaks`] then
//!   frees each only if it still has the same handle and sequence number.
//! * [`Ipam::release_node`] drops a deleted node's claims;
//!   [`Ipam::release_empty_blocks`] returns blocks empty for a grace period
//!   (never a node's last one).
//!
//! # Where the code is
//!
//! This file: the types and the documents (settings, pools, blocks and
//! handles as read and written). `assign`: allocation and block claims;
//! `release`; `usage`: what a node routes, how full the pools are; `check`:
//! the check report, its repair, and address users; `gc`: deleted nodes and
//! empty blocks. `block` is one block's allocation table (pure). The key
//! layout of IPAM's documents is in [`crate::keys`], with every other key.
//!
//! ```no_run
//! # async fn demo(ds: brindle_datastore::Datastore) -> Result<(), brindle_datastore::ipam::IpamError> {
//! use brindle_datastore::ipam::{AutoAssignArgs, Ipam};
//! let ipam = Ipam::new(ds);
//! let got = ipam
//!     .auto_assign(&AutoAssignArgs::workload_v4("k8s-pod-network.4b1c9e", "node-a"))
//!     .await?;
//! println!("{:?}", got.ipv4); // [10.65.0.7/32]
//! let routes = ipam.blocks_of("node-a").await?; // what node-a announces
//! # let _ = routes;
//! ipam.release_by_handle("k8s-pod-network.4b1c9e").await?; // CNI DEL; idempotent
//! # Ok(()) }
//! ```

mod assign;
pub mod block;
mod check;
pub use check::{AddressUser, CheckReport, Conflict, Leak, RepairSummary, UserHandle};
mod gc;
mod release;
mod usage;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brindle_model::ipam::{AllowedUse, IPAMConfigSpec, IPPoolSpec};
use brindle_model::resource::{IPPool, Kind};

use crate::keys::{self, resource_key};
use brindle_model::{Object, Resource};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tracing::{debug, instrument, warn};

use crate::resources::{ResourceError, ResourceStore};
use crate::{Compare, Datastore, Error, KeyValue, Revision, Swap, Txn, TxnOp, Versioned};

pub use block::{
    host_affinity, host_net, AllocationAttribute, AllocationBlock, ReleaseRefused, ATTR_NODE,
};
pub use keys::Family;

/// How often a compare-and-swap is retried before giving up (Calico: 100).
pub const MAX_RETRIES: u32 = 100;

/// Calico's default IPv4 pool, created by [`Ipam::ensure_default_pool`]
/// when a caller asks for it and no IPv4 pool exists.
pub const DEFAULT_POOL_V4: &str = "192.168.0.0/16";

/// `maxBlocksPerHost` when the IPAM configuration does not set it.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: usize = 20;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Store(#[from] Error),

    /// No enabled pool of the family may serve this node and use.
    #[error("no IPv{family} pool is usable for {use_:?} addresses on node {node}")]
    NoPool {
        family: u8,
        use_: AllowedUse,
        node: String,
    },

    /// Not enough free addresses (after claiming and, if allowed, borrowing).
    #[error("IPv{family} pools exhausted: asked for {requested}, could get {available}")]
    Exhausted {
        family: u8,
        requested: usize,
        available: usize,
    },

    /// A fixed address outside every pool.
    #[error("{0} is not inside any IP pool")]
    NotInPool(IpAddr),

    /// A fixed address that another handle holds.
    #[error("{ip} is already allocated (handle {holder:?})")]
    AddressInUse { ip: IpAddr, holder: Option<String> },

    /// An address expected to be allocated is free.
    #[error("{0} is not allocated")]
    AddressNotAllocated(IpAddr),

    /// A read-modify-write kept losing.
    #[error("gave up on {what} after {MAX_RETRIES} revision conflicts")]
    TooManyConflicts { what: String },

    /// A stored IPAM document does not decode or contradicts itself.
    #[error("corrupt IPAM document {key}: {reason}")]
    Corrupt { key: String, reason: String },

    #[error("invalid IPAM request: {0}")]
    Invalid(String),
}

pub type IpamResult<T> = std::result::Result<T, IpamError>;

/// State of a node's claim on a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AffinityState {
    /// Claim written, block not yet known to be ours: counts as absent.
    Pending,
    /// The node owns the block (allocates from it, announces it).
    Confirmed,
    /// Being released: nothing new is allocated from it.
    PendingDeletion,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AffinityDoc {
    state: AffinityState,
}

/// Which blocks hold addresses of one handle, and how many (Calico's
/// `IPAMHandle`): lets a release by handle visit only those blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandleDoc {
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Block CIDR → number of addresses of this handle in it.
    pub block: BTreeMap<String, usize>,
}

/// An auto-assignment request (Calico's `AutoAssignArgs`).
#[derive(Debug, Clone)]
pub struct AutoAssignArgs {
    pub num4: usize,
    pub num6: usize,
    /// Owner of the addresses: `<network>.<container id>` for a workload,
    /// [`tunnel_handle`] for a tunnel device.
    pub handle: String,
    /// Extra attributes stored with each allocation (`node` is added).
    pub attrs: BTreeMap<String, String>,
    /// The node asking (whose blocks are used first).
    pub node: String,
    /// Restrict to these pools (by CIDR); empty: every eligible pool.
    pub pools: Vec<IpNet>,
    /// What the addresses are for (pools' `allowedUses`).
    pub use_: AllowedUse,
}

impl AutoAssignArgs {
    /// One IPv4 workload address for `handle` on `node`.
    pub fn workload_v4(handle: impl Into<String>, node: impl Into<String>) -> Self {
        AutoAssignArgs {
            num4: 1,
            num6: 0,
            handle: handle.into(),
            attrs: BTreeMap::new(),
            node: node.into(),
            pools: Vec::new(),
            use_: AllowedUse::Workload,
        }
    }
}

/// The addresses an auto-assignment handed out (host networks, /32 or /128).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assigned {
    pub ipv4: Vec<IpNet>,
    pub ipv6: Vec<IpNet>,
}

/// The handle Calico uses for a node's tunnel address, e.g.
/// `ipip-tunnel-addr-node-a`.
pub fn tunnel_handle(kind: TunnelKind, node: &str) -> String {
    let prefix = match kind {
        TunnelKind::Ipip => "ipip-tunnel-addr",
        TunnelKind::Vxlan => "vxlan-tunnel-addr",
        TunnelKind::VxlanV6 => "vxlan-v6-tunnel-addr",
        TunnelKind::Wireguard => "wireguard-tunnel-addr",
    };
    format!("{prefix}-{node}")
}

/// Tunnel devices that get an address from IPAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    Ipip,
    Vxlan,
    VxlanV6,
    Wireguard,
}

const TUNNEL_PREFIXES: [&str; 4] = [
    "ipip-tunnel-addr-",
    "vxlan-tunnel-addr-",
    "vxlan-v6-tunnel-addr-",
    "wireguard-tunnel-addr-",
];

/// One address to release, optionally only if still held by `handle` with
/// block sequence number `sequence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseOptions {
    pub ip: IpAddr,
    pub handle: Option<String>,
    pub sequence: Option<u64>,
}

impl From<IpAddr> for ReleaseOptions {
    fn from(ip: IpAddr) -> Self {
        ReleaseOptions {
            ip,
            handle: None,
            sequence: None,
        }
    }
}

/// What [`Ipam::release_ips`] did with each address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseOutcome {
    pub released: Vec<IpAddr>,
    /// Not allocated (already free, or in no block): nothing to do.
    pub not_allocated: Vec<IpAddr>,
    /// Left alone because the handle or sequence number no longer matched.
    pub refused: Vec<(IpAddr, ReleaseRefused)>,
}

/// What a node routes: its confirmed blocks, and /32s (/128s) it borrowed
/// from other nodes' blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeBlocks {
    pub affine: Vec<IpNet>,
    pub borrowed: Vec<IpNet>,
}

/// Usage of one block, for `brindlectl ipam show --show-blocks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockUsage {
    pub cidr: IpNet,
    /// The node holding the affinity, if any.
    pub node: Option<String>,
    pub total: u128,
    pub in_use: u128,
    pub free: u128,
}

/// Usage of one pool: addresses in blocks in use, and the blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub name: String,
    pub cidr: IpNet,
    pub disabled: bool,
    /// Addresses in the pool.
    pub total: u128,
    pub in_use: u128,
    /// `total - in_use`.
    pub free: u128,
    pub blocks: Vec<BlockUsage>,
}

/// What [`Ipam::release_node`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRelease {
    /// Empty blocks deleted with the node's claim.
    pub blocks_deleted: Vec<IpNet>,
    /// Blocks still holding addresses, now nobody's (another node may claim them).
    pub blocks_unclaimed: Vec<IpNet>,
}

/// IPAM settings (`IPAMConfiguration default`, with Calico's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub strict_affinity: bool,
    /// 0: no limit.
    pub max_blocks_per_host: usize,
    pub auto_allocate_blocks: bool,
}

impl Settings {
    fn from_spec(spec: &IPAMConfigSpec) -> Self {
        Settings {
            strict_affinity: spec.strict_affinity,
            max_blocks_per_host: spec
                .max_blocks_per_host
                .map_or(DEFAULT_MAX_BLOCKS_PER_HOST, |m| {
                    usize::try_from(m).unwrap_or(DEFAULT_MAX_BLOCKS_PER_HOST)
                }),
            auto_allocate_blocks: spec.auto_allocate_blocks.unwrap_or(true),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_spec(&IPAMConfigSpec::default())
    }
}

/// A pool as IPAM sees it.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub net: IpNet,
    pub block_size: u8,
    pub spec: IPPoolSpec,
}

impl Pool {
    /// The block of this pool that contains `ip`.
    fn block_of(&self, ip: IpAddr) -> Option<IpNet> {
        IpNet::new(ip, self.block_size).ok().map(|n| n.trunc())
    }

    /// Number of blocks in the pool (saturating).
    fn block_count(&self) -> u128 {
        let bits = u32::from(self.block_size.saturating_sub(self.net.prefix_len()));
        1u128.checked_shl(bits).unwrap_or(u128::MAX)
    }

    /// The `index`-th block.
    fn nth_block(&self, index: u128) -> Option<IpNet> {
        let block_len = block::net_size(&IpNet::new(self.net.network(), self.block_size).ok()?);
        let base = block::ip_to_u128(self.net.network());
        let ip = block::u128_to_ip(base + index.checked_mul(block_len)?, self.net.network());
        IpNet::new(ip, self.block_size).ok()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// FNV-1a: where in a pool a node starts looking for a free block and
/// which block it borrows from first, so concurrent nodes spread out
/// instead of all racing for the first free one. Stable across processes.
fn spread(seed: &str) -> u128 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    u128::from(h)
}

fn family_number(f: Family) -> u8 {
    match f {
        Family::V4 => 4,
        Family::V6 => 6,
    }
}

fn corrupt(kv: &KeyValue, reason: impl std::fmt::Display) -> IpamError {
    IpamError::Corrupt {
        key: kv.key_str().into_owned(),
        reason: reason.to_string(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(kv: &KeyValue) -> IpamResult<T> {
    serde_json::from_slice(&kv.value).map_err(|e| corrupt(kv, e))
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own plain structs with string keys: serialization cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// The part of a block document needed to choose a block.
#[derive(Debug, Clone, Deserialize)]
struct BlockHead {
    cidr: IpNet,
    affinity: Option<String>,
    unallocated: Vec<usize>,
}

/// A change to one handle document made together with a block write.
struct HandleWrite {
    key: String,
    /// `None`: the document must still be absent.
    expected: Option<Revision>,
    /// `None`: delete it.
    doc: Option<HandleDoc>,
}

/// How long [`Ipam`] reuses its listing of a family's blocks when choosing
/// a block to claim or borrow from. Only the choice uses it: every write is
/// still a compare-and-swap on a fresh read, and blocks it reads refresh it.
pub const BLOCK_LISTING_TTL: Duration = Duration::from_secs(1);

type HeadsCache = HashMap<Family, (std::time::Instant, Vec<BlockHead>)>;

/// How long an IPAM step keeps retrying a store that is unreachable or
/// between leaders (an etcd election takes a few seconds).
pub const TRANSIENT_BUDGET: Duration = Duration::from_secs(30);

/// Runs `op` again while it fails with a transient store error (with
/// backoff, for up to [`TRANSIENT_BUDGET`]). Only for steps that are safe
/// to repeat: reads, and writes whose re-run finds its own earlier effect.
async fn patiently<T, F, Fut>(mut op: F) -> IpamResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = IpamResult<T>>,
{
    let deadline = std::time::Instant::now() + TRANSIENT_BUDGET;
    let mut backoff = Duration::from_millis(50);
    loop {
        match op().await {
            Err(IpamError::Store(e))
                if e.is_transient() && std::time::Instant::now() < deadline =>
            {
                debug!(error = %e, "store unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// The IPAM API over one datastore. Cheap to clone (clones share the
/// block listing cache).
#[derive(Debug, Clone)]
pub struct Ipam {
    store: Datastore,
    heads: std::sync::Arc<std::sync::Mutex<HeadsCache>>,
}

impl Ipam {
    pub fn new(store: Datastore) -> Self {
        Ipam {
            store,
            heads: Default::default(),
        }
    }

    fn cached_heads(&self, family: Family) -> Option<Vec<BlockHead>> {
        let cache = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&family)
            .filter(|(at, _)| at.elapsed() < BLOCK_LISTING_TTL)
            .map(|(_, heads)| heads.clone())
    }

    /// Forgets the block listing (after this instance deleted or re-homed blocks).
    fn forget_heads(&self) {
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Records what a fresh read or write showed about one block.
    fn note_block(&self, block: &AllocationBlock) {
        let mut cache = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, heads)) = cache.get_mut(&Family::of(&block.cidr)) {
            let head = BlockHead {
                cidr: block.cidr,
                affinity: block.affinity.clone(),
                unallocated: block.unallocated.clone(),
            };
            match heads.iter_mut().find(|h| h.cidr == block.cidr) {
                Some(h) => *h = head,
                None => heads.push(head),
            }
        }
    }

    pub fn store(&self) -> &Datastore {
        &self.store
    }

    // ----- configuration -------------------------------------------------

    /// The IPAM configuration (`IPAMConfiguration default`), with defaults.
    pub async fn settings(&self) -> IpamResult<Settings> {
        let key = resource_key(Kind::IPAMConfiguration, None, "default");
        match self.store.get(key).await? {
            None => Ok(Settings::default()),
            Some(kv) => match parse_resource(&kv)? {
                Resource::IPAMConfiguration(c) => Ok(Settings::from_spec(&c.spec)),
                other => Err(corrupt(&kv, format!("holds a {}", other.kind()))),
            },
        }
    }

    /// Every pool, in key order. Pools that do not parse are skipped with a
    /// warning (the CLI validates on write; a bad one must not stop IPAM).
    pub async fn pools(&self) -> IpamResult<Vec<Pool>> {
        let listing =
            patiently(|| async { Ok(self.store.list(keys::kind_prefix(Kind::IPPool)).await?) })
                .await?;
        let mut out = Vec::new();
        for kv in &listing.kvs {
            match parse_resource(kv) {
                Ok(Resource::IPPool(p)) => {
                    let (Some(net), Some(block_size)) =
                        (p.spec.net(), p.spec.effective_block_size())
                    else {
                        warn!(key = %kv.key_str(), "IP pool without a usable CIDR, ignored");
                        continue;
                    };
                    out.push(Pool {
                        name: p.metadata.name.clone(),
                        net: net.trunc(),
                        block_size,
                        spec: p.spec,
                    });
                }
                Ok(_) => warn!(key = %kv.key_str(), "not an IPPool, ignored"),
                Err(e) => warn!(error = %e, "IP pool ignored"),
            }
        }
        Ok(out)
    }

    /// Creates a pool named `default-ipv4-ippool` / `default-ipv6-ippool`
    /// with `cidr` (Calico's default: [`DEFAULT_POOL_V4`], `natOutgoing`)
    /// unless a pool of that family exists. Returns whether it created one.
    pub async fn ensure_default_pool(&self, cidr: IpNet) -> IpamResult<bool> {
        let family = Family::of(&cidr);
        if self
            .pools()
            .await?
            .iter()
            .any(|p| Family::of(&p.net) == family)
        {
            return Ok(false);
        }
        let name = format!("default-{}-ippool", family.segment());
        let mut pool = IPPool::named(&name);
        pool.spec.cidr = cidr.trunc().to_string();
        pool.spec.nat_outgoing = true;
        let mut resource = Resource::IPPool(pool);
        resource.defaulted();
        let problems = resource.validate();
        if !problems.is_empty() {
            return Err(IpamError::Invalid(format!(
                "default pool {cidr}: {}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        // Through the resource store: validated, checked against the pools
        // stored at that moment and bumping the pools guard, as brindlectl's
        // pool writes do. Another node creating the same pool (or any pool
        // overlapping it) at once makes this one a no-op.
        match ResourceStore::new(self.store.clone())
            .create(resource)
            .await
        {
            Ok(created) => Ok(created.is_some()),
            // Valid on its own (checked above): only the check against the
            // stored pools refuses it, so another pool won meanwhile.
            Err(ResourceError::Invalid(problems)) => {
                debug!(%cidr, %problems, "another default pool won");
                Ok(false)
            }
            Err(ResourceError::Datastore(e)) => Err(e.into()),
            Err(e) => Err(IpamError::Invalid(format!("default pool {cidr}: {e}"))),
        }
    }

    /// Settings, the node's labels and the handle document, in one
    /// transaction of reads.
    async fn read_context(
        &self,
        node: &str,
        handle: &str,
    ) -> IpamResult<(
        Settings,
        BTreeMap<String, String>,
        Option<Versioned<HandleDoc>>,
    )> {
        let reads = Txn::new().and_then([
            TxnOp::get(resource_key(Kind::IPAMConfiguration, None, "default")),
            TxnOp::get(resource_key(Kind::Node, None, node)),
            TxnOp::get(keys::handle_key(handle)),
        ]);
        let resp = patiently(|| async { Ok(self.store.txn(reads.clone()).await?) }).await?;
        let mut got = resp.results.into_iter().map(|r| match r {
            crate::TxnOpResult::Get(kv) => kv,
            _ => None,
        });
        let settings = match got.next().flatten() {
            None => Settings::default(),
            Some(kv) => match parse_resource(&kv)? {
                Resource::IPAMConfiguration(c) => Settings::from_spec(&c.spec),
                other => return Err(corrupt(&kv, format!("holds a {}", other.kind()))),
            },
        };
        let labels = match got.next().flatten() {
            None => BTreeMap::new(),
            Some(kv) => match parse_resource(&kv)? {
                Resource::Node(n) => n.metadata.labels,
                other => return Err(corrupt(&kv, format!("holds a {}", other.kind()))),
            },
        };
        let handle_doc = got.next().flatten().map(versioned).transpose()?;
        Ok((settings, labels, handle_doc))
    }

    /// The labels of the Node resource `node` (none if it does not exist).
    pub async fn node_labels(&self, node: &str) -> IpamResult<BTreeMap<String, String>> {
        let key = resource_key(Kind::Node, None, node);
        match self.store.get(key).await? {
            None => Ok(BTreeMap::new()),
            Some(kv) => match parse_resource(&kv)? {
                Resource::Node(n) => Ok(n.metadata.labels),
                other => Err(corrupt(&kv, format!("holds a {}", other.kind()))),
            },
        }
    }

    // ----- documents -------------------------------------------------------

    /// The handle `ip` is allocated to: `Ok(None)` when it is free (or in
    /// no pool, or allocated without a handle).
    pub async fn holder_of(&self, ip: IpAddr) -> IpamResult<Option<String>> {
        let pools = self.pools().await?;
        let Some(net) = pools
            .iter()
            .find(|p| p.net.contains(&ip))
            .and_then(|p| p.block_of(ip))
        else {
            return Ok(None);
        };
        let Some(block) = self.read_block(&net).await? else {
            return Ok(None);
        };
        let holder = block
            .value
            .allocations_view()
            .find(|a| a.ip == ip)
            .and_then(|a| a.attribute.and_then(|attr| attr.handle_id.clone()));
        Ok(holder)
    }

    async fn read_block(&self, net: &IpNet) -> IpamResult<Option<Versioned<AllocationBlock>>> {
        let kv = patiently(|| async { Ok(self.store.get(keys::block_key(net)).await?) }).await?;
        kv.map(versioned).transpose()
    }

    async fn read_handle(&self, handle: &str) -> IpamResult<Option<Versioned<HandleDoc>>> {
        let kv =
            patiently(|| async { Ok(self.store.get(keys::handle_key(handle)).await?) }).await?;
        kv.map(versioned).transpose()
    }

    async fn list_blocks(&self, family: Family) -> IpamResult<Vec<Versioned<AllocationBlock>>> {
        let listing = self.store.list(keys::blocks_prefix(family)).await?;
        listing.kvs.into_iter().map(versioned).collect()
    }

    /// Writes `block` if its document is still at `expected`, together with
    /// the handle documents it affects. `Ok(false)`: someone else wrote first.
    ///
    /// When the answer is lost (the member died, the leader changed) the
    /// write may or may not have happened: the block, read again, decides.
    /// Still at `expected`: not applied, send it again (the guard lets at
    /// most one attempt apply). Moved on: `applied` says whether what it
    /// holds now is this write's effect.
    async fn commit_block(
        &self,
        expected: Revision,
        block: &AllocationBlock,
        handles: Vec<HandleWrite>,
        applied: impl Fn(&AllocationBlock) -> bool,
    ) -> IpamResult<bool> {
        let key = keys::block_key(&block.cidr);
        let mut compares = vec![Compare::unchanged_since(key.clone(), expected)];
        let mut ops = vec![TxnOp::put(key, to_json(block))];
        for h in handles {
            compares.push(match h.expected {
                Some(rev) => Compare::unchanged_since(h.key.clone(), rev),
                None => Compare::absent(h.key.clone()),
            });
            ops.push(match h.doc {
                Some(doc) if !doc.block.is_empty() => TxnOp::put(h.key, to_json(&doc)),
                _ => TxnOp::delete(h.key),
            });
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let deadline = std::time::Instant::now() + TRANSIENT_BUDGET;
        let mut backoff = Duration::from_millis(50);
        let mut unknown = false;
        loop {
            match self.store.txn(txn.clone()).await {
                Ok(resp) if resp.succeeded => return Ok(true),
                Ok(_) if !unknown => return Ok(false),
                // This attempt lost; the earlier one may be why.
                Ok(_) => {}
                Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                    debug!(error = %e, block = %block.cidr, "block write unanswered; re-reading");
                    unknown = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e.into()),
            }
            match self.read_block(&block.cidr).await? {
                Some(now) if now.mod_revision == expected => continue,
                Some(now) => return Ok(applied(&now.value)),
                None => return Ok(false),
            }
        }
    }

    /// The handle document after adding (`delta > 0`) or removing addresses
    /// of `handle` in `block`.
    async fn handle_write(
        &self,
        handle: &str,
        block: &IpNet,
        delta: isize,
    ) -> IpamResult<HandleWrite> {
        let current = self.read_handle(handle).await?;
        Ok(handle_write_from(handle, block, delta, current))
    }
}

/// The handle document after adding (`delta > 0`) or removing addresses of
/// `handle` in `block`, given its current state.
fn handle_write_from(
    handle: &str,
    block: &IpNet,
    delta: isize,
    current: Option<Versioned<HandleDoc>>,
) -> HandleWrite {
    let (expected, mut doc) = match current {
        Some(v) => (Some(v.mod_revision), v.value),
        None => (
            None,
            HandleDoc {
                handle_id: handle.to_owned(),
                block: BTreeMap::new(),
            },
        ),
    };
    let entry = doc.block.entry(block.to_string()).or_insert(0);
    *entry = entry.saturating_add_signed(delta);
    if *entry == 0 {
        doc.block.remove(&block.to_string());
    }
    HandleWrite {
        key: keys::handle_key(handle),
        expected,
        doc: Some(doc),
    }
}

/// Handles and node names become key segments: non-empty, no `/`.
fn check_names(handle: &str, node: &str) -> IpamResult<()> {
    for (what, v) in [("handle", handle), ("node", node)] {
        if v.is_empty() || v.contains('/') {
            return Err(IpamError::Invalid(format!(
                "{what} {v:?} must be non-empty and contain no '/'"
            )));
        }
    }
    Ok(())
}

fn merge(into: &mut ReleaseOutcome, from: ReleaseOutcome) {
    into.released.extend(from.released);
    into.not_allocated.extend(from.not_allocated);
    into.refused.extend(from.refused);
}

fn versioned<T: serde::de::DeserializeOwned>(kv: KeyValue) -> IpamResult<Versioned<T>> {
    let value = decode(&kv)?;
    Ok(Versioned {
        key: kv.key,
        value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
    })
}

/// A resource as `brindlectl` stores it (JSON, read through the model's
/// parser so defaults and validation are the same).
fn parse_resource(kv: &KeyValue) -> IpamResult<Resource> {
    brindle_model::parse_stored(&kv.value)
        .map_err(|e| corrupt(kv, e.to_string().replace('\n', "; ")))
}

/// A pool resource for tests and callers that create pools themselves.
pub fn pool_resource(name: &str, spec: IPPoolSpec) -> Resource {
    let mut r = Resource::IPPool(Object {
        api_version: brindle_model::ApiVersion::CalicoV3,
        metadata: brindle_model::ObjectMeta {
            name: name.into(),
            ..Default::default()
        },
        spec,
    });
    r.defaulted();
    r
}

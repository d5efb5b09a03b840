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

pub mod block;
pub mod keys;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brindle_model::ipam::{AllowedUse, IPAMConfigSpec, IPPoolSpec};
use brindle_model::resource::{resource_key, IPPool, Kind};
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
        let listing = self.store.list(Kind::IPPool.key_prefix()).await?;
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
        let resp = self
            .store
            .txn(Txn::new().and_then([
                TxnOp::get(resource_key(Kind::IPAMConfiguration, None, "default")),
                TxnOp::get(resource_key(Kind::Node, None, node)),
                TxnOp::get(keys::handle_key(handle)),
            ]))
            .await?;
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

    async fn read_block(&self, net: &IpNet) -> IpamResult<Option<Versioned<AllocationBlock>>> {
        match self.store.get(keys::block_key(net)).await? {
            None => Ok(None),
            Some(kv) => Ok(Some(versioned(kv)?)),
        }
    }

    async fn read_handle(&self, handle: &str) -> IpamResult<Option<Versioned<HandleDoc>>> {
        match self.store.get(keys::handle_key(handle)).await? {
            None => Ok(None),
            Some(kv) => Ok(Some(versioned(kv)?)),
        }
    }

    async fn list_blocks(&self, family: Family) -> IpamResult<Vec<Versioned<AllocationBlock>>> {
        let listing = self.store.list(keys::blocks_prefix(family)).await?;
        listing.kvs.into_iter().map(versioned).collect()
    }

    /// Writes `block` if its document is still at `expected`, together with
    /// the handle documents it affects. `Ok(false)`: someone else wrote first.
    async fn commit_block(
        &self,
        expected: Revision,
        block: &AllocationBlock,
        handles: Vec<HandleWrite>,
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
        let resp = self
            .store
            .txn(Txn::new().when(compares).and_then(ops))
            .await?;
        Ok(resp.succeeded)
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
        let resp = self.store.txn(Txn::new().and_then(gets)).await?;
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
        let listing = self.store.list(keys::blocks_prefix(family)).await?;
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
        let claims = self
            .store
            .list(keys::host_family_prefix(node, family))
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
            let Some(net) = self.claim_free_block(node, eligible, &heads).await? else {
                break;
            };
            owned += 1;
            let got = self
                .assign_from_block(&net, n - count(taken), attr, Some(node), None, handle_hint)
                .await?;
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
            if self
                .commit_block(current.mod_revision, &block, vec![hw])
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
    /// has one: an absent block, or an existing one nobody holds.
    async fn claim_free_block(
        &self,
        node: &str,
        eligible: &[&Pool],
        heads: &[BlockHead],
    ) -> IpamResult<Option<IpNet>> {
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
                    None => self.claim_block(node, &net, None).await?,
                    Some(b) if b.affinity.is_none() => match self.read_block(&net).await? {
                        Some(full) if full.value.affinity.is_none() => {
                            self.claim_block(node, &net, Some(&full)).await?
                        }
                        _ => false,
                    },
                    Some(_) => false,
                };
                if claimed {
                    return Ok(Some(net));
                }
            }
        }
        Ok(None)
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
        let aff_rev = match self
            .store
            .compare_and_swap(aff_key.clone(), None, pending)
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
                match self
                    .store
                    .compare_and_swap(keys::block_key(net), None, to_json(&fresh))
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
                self.commit_block(b.mod_revision, &taken, Vec::new())
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
    async fn confirm(&self, aff_key: &str) -> IpamResult<()> {
        let confirmed = to_json(&AffinityDoc {
            state: AffinityState::Confirmed,
        });
        let mut expected = None;
        for _ in 0..MAX_RETRIES {
            match self
                .store
                .compare_and_swap(aff_key.to_owned(), expected, confirmed.clone())
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
                .commit_block(current.mod_revision, &block, vec![hw])
                .await?
            {
                return Ok(host_net(ip));
            }
        }
        Err(IpamError::TooManyConflicts {
            what: format!("assigning {ip}"),
        })
    }

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
                    if self
                        .commit_block(current.mod_revision, &block, vec![handle_write])
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
        Ok(self
            .store
            .txn(Txn::new().when([guard]).and_then([op]))
            .await?
            .succeeded)
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
                .commit_block(current.mod_revision, &block, writes)
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

    // ----- check and repair ----------------------------------------------------

    /// The handles whose owner exists: `<network>.<container id>` for every
    /// WorkloadEndpoint with a container id, and the tunnel handles of every
    /// Node. For [`check`](Self::check) when the caller has no better source.
    pub async fn live_handles_from_store(&self) -> IpamResult<HashSet<String>> {
        let mut containers = HashSet::new();
        for kv in self
            .store
            .list(Kind::WorkloadEndpoint.key_prefix())
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
        for kv in self.store.list(Kind::Node.key_prefix()).await?.kvs {
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
            .list(Kind::WorkloadEndpoint.key_prefix())
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
        for kv in self.store.list(Kind::Node.key_prefix()).await?.kvs {
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
    let text = std::str::from_utf8(&kv.value).map_err(|e| corrupt(kv, e))?;
    brindle_model::parse_one(text).map_err(|e| corrupt(kv, e.to_string().replace('\n', "; ")))
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

/// An address as endpoints and nodes write it: `10.0.0.5`, `10.0.0.5/32`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<IpNet>().ok().map(|n| n.addr()))
}

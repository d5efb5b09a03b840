//! Typed resources in the datastore, with calicoctl's write semantics: the
//! one way every writer (brindlectl, brindle-node, brindle-cni, IPAM's
//! default pools) stores a resource, so `uid`, `creationTimestamp`,
//! validation and the pools guard hold whoever writes.
//!
//! # Layout
//!
//! Each resource is one key, [`crate::keys::key_of`]
//! (`/brindle/resources/v3/<plural>/[<namespace>/]<name>`), holding the
//! resource as JSON exactly as [`Resource`] serializes it, with `uid` and
//! `creationTimestamp` set when it was created. `resourceVersion` is never
//! stored: it is the key's `mod_revision`, filled in on every read (as
//! Calico's etcd backend does), so it cannot drift from the truth.
//!
//! # Writes
//!
//! [`ResourceStore::write`] takes a whole input (every document of every
//! file, parsed, defaulted and validated by the caller with
//! [`brindle_model::document::parse_documents_with_origin`]) and is
//! all-or-nothing:
//!
//! 1. check the input against the pools already stored
//!    ([`brindle_model::document::check_against_stored`]);
//! 2. read the current state of every target key and apply the mode's rules
//!    (`create`: must be absent; `replace`: must exist; a `resourceVersion`
//!    in a document must match the stored one);
//! 3. write everything in one transaction guarded by exactly the state read
//!    in steps 1 and 2. If anything moved in between, start again (a bounded
//!    number of times), so the validation always held at the moment of the
//!    write.
//!
//! Every problem found is reported, each naming its document; nothing is
//! written unless there are none.
//!
//! Pools are validated against each other, so a write of pools also guards
//! the whole set: every stored pool's revision, and [`POOLS_GUARD_KEY`],
//! which every pool write bumps, so a pool created by a concurrent
//! `brindlectl` (which has no key to guard beforehand) fails the
//! transaction and the write is re-validated against it.
//!
//! Limits: etcd refuses transactions of more than `--max-txn-ops` (default
//! 128) compares or operations, so one input holds at most about that many
//! resources (fewer when it holds pools and many pools are stored); a bigger
//! one is refused whole ([`ResourceError::TooLarge`]).
//!
//! Deletes ([`ResourceStore::delete`]) follow the same pattern: one guarded
//! transaction for every target.
//!
//! For programs that write one resource: [`ResourceStore::apply`] (create or
//! replace, validated, identity kept), [`ResourceStore::create`] (`None`
//! when it exists already) and [`ResourceStore::modify`] (read, change,
//! write back; retried when another writer got there first).

use std::collections::HashSet;
use std::fmt;

use brindle_model::document::{check_against_stored, default_and_validate, Origin};
use brindle_model::{parse_stored, Kind, ParseErrors, Resource};

use crate::keys::{key_of, namespace_prefix, resource_key};
use crate::kv::{MAX_TXN_BYTES, MAX_TXN_OPS};
use crate::{Compare, Datastore, KeyValue, Revision, Txn, TxnOp};

pub use crate::keys::POOLS_GUARD_KEY;

/// How many times a write is re-validated when the store changed under it.
const WRITE_ATTEMPTS: usize = 5;

/// How many times [`ResourceStore::modify`] reads again after losing a race
/// (many nodes may update shared resources at once).
const MODIFY_ATTEMPTS: usize = 100;

/// What a write does with resources that exist or do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail if any resource already exists.
    Create,
    /// Fail if any resource does not exist.
    Replace,
    /// Create what is absent, replace what exists.
    Apply,
}

/// What happened to one resource of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Replaced,
}

/// A problem that is not the input's syntax or validity: the state of the
/// store refuses the operation (exists, missing, stale resourceVersion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Where the resource came from, when it came from a file.
    pub origin: Option<Origin>,
    /// `IPPool 'pool-a'`.
    pub resource: String,
    pub reason: String,
    /// What kind of refusal, for programs (the reason is for people).
    pub why: RefusalKind,
}

/// Why the store refused a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// `create` of a resource that exists.
    Exists,
    /// `replace` or `delete` of a resource that does not.
    Missing,
    /// The given resourceVersion is not the stored one.
    Stale,
    /// Anything else (the input as a whole).
    Other,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Some(Origin {
                document,
                item: Some(item),
            }) => write!(f, "document {document} item {item} ({}): ", self.resource)?,
            Some(Origin {
                document,
                item: None,
            }) => write!(f, "document {document} ({}): ", self.resource)?,
            None => write!(f, "{}: ", self.resource)?,
        }
        f.write_str(&self.reason)
    }
}

/// Why a resource operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The input is not valid; every problem, one per line.
    #[error("{0}")]
    Invalid(ParseErrors),
    /// The store's state refuses the operation; every refusal, one per line.
    #[error("{}", join_lines(.0))]
    Refused(Vec<Refusal>),
    /// The datastore failed or could not be reached.
    #[error(transparent)]
    Datastore(#[from] crate::Error),
    /// A stored value is not a valid resource (written by something else, or
    /// by a version with other rules).
    #[error("stored value at {key} is not a valid resource: {reason}")]
    Corrupt { key: String, reason: String },
    /// The input needs a bigger transaction than etcd allows.
    #[error(
        "{resources} resources need {needed} operations in one transaction, more than the \
         {MAX_TXN_OPS} etcd allows; split the input (nothing was written)"
    )]
    TooLarge { resources: usize, needed: usize },
    /// Other writers kept changing what this write depends on.
    #[error(
        "the datastore kept changing while writing (gave up after {WRITE_ATTEMPTS} attempts); \
         nothing was written"
    )]
    Contended,
}

/// Refuses a write whose documents together carry more bytes than one
/// transaction may (etcd's default `--max-request-bytes`), naming the
/// largest documents, so the user knows what to split or shrink.
fn too_many_bytes(incoming: &[Resource], origins: &[Origin]) -> Result<(), ResourceError> {
    let sizes: Vec<usize> = incoming
        .iter()
        .map(|r| key_of(r).len() + r.to_json_compact().len())
        .collect();
    let total: usize = sizes.iter().sum();
    if total <= MAX_TXN_BYTES {
        return Ok(());
    }
    let mut order: Vec<usize> = (0..incoming.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let refusals = order
        .into_iter()
        .take(3)
        .map(|i| Refusal {
            origin: origins.get(i).copied(),
            resource: incoming[i].describe(),
            why: RefusalKind::Other,
            reason: format!(
                "is {} bytes; the write carries {total} bytes in all, more than the \
                 {MAX_TXN_BYTES} one transaction may (etcd's --max-request-bytes); split or \
                 shrink the input (nothing was written)",
                sizes[i]
            ),
        })
        .collect();
    Err(ResourceError::Refused(refusals))
}

fn join_lines(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A resource and the revision it was read at.
#[derive(Debug, Clone)]
struct Current {
    resource: Resource,
    mod_revision: Revision,
}

/// Names one resource to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    /// For namespaced kinds; `None` means `default`.
    pub namespace: Option<String>,
    pub name: String,
    /// Delete only if the stored resourceVersion is this one.
    pub resource_version: Option<String>,
    pub origin: Option<Origin>,
}

impl Target {
    fn key(&self) -> String {
        resource_key(
            self.kind,
            namespace_for(self.kind, self.namespace.as_deref()),
            &self.name,
        )
    }

    fn describe(&self) -> String {
        match (&self.namespace, self.kind.namespaced()) {
            (Some(ns), true) => format!("{} '{ns}/{}'", self.kind, self.name),
            (None, true) => format!(
                "{} '{}/{}'",
                self.kind,
                brindle_model::resource::DEFAULT_NAMESPACE,
                self.name
            ),
            _ => format!("{} '{}'", self.kind, self.name),
        }
    }
}

/// The typed view of a [`Datastore`].
#[derive(Debug, Clone)]
pub struct ResourceStore {
    ds: Datastore,
}

impl ResourceStore {
    pub fn new(ds: Datastore) -> Self {
        ResourceStore { ds }
    }

    /// One resource, or `None`.
    pub async fn get(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Resource>, ResourceError> {
        let namespace = namespace_for(kind, namespace);
        let key = resource_key(kind, namespace, name);
        match self.ds.get(key).await? {
            None => Ok(None),
            Some(kv) => decode(&kv).map(|c| Some(c.resource)),
        }
    }

    /// Every resource of a kind, in key order; for namespaced kinds only
    /// those in `namespace` (`None`: every namespace).
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<Vec<Resource>, ResourceError> {
        Ok(self
            .list_current(kind, namespace)
            .await?
            .into_iter()
            .map(|c| c.resource)
            .collect())
    }

    #[tracing::instrument(skip(self))]
    async fn list_current(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<Vec<Current>, ResourceError> {
        let listing = self.ds.list(namespace_prefix(kind, namespace)).await?;
        listing.kvs.iter().map(decode).collect()
    }

    /// Writes every resource of an input in one transaction (see the
    /// module docs). `input` is parsed, defaulted and validated already
    /// ([`brindle_model::document::parse_documents_with_origin`], with any
    /// `-n` namespace applied); the checks against what is stored happen
    /// here, at the moment of the write. Returns each resource as stored,
    /// with what happened to it, in input order.
    #[tracing::instrument(skip(self, input), fields(resources = input.len()))]
    pub async fn write(
        &self,
        input: Vec<(Resource, Origin)>,
        mode: WriteMode,
    ) -> Result<Vec<(Resource, Change)>, ResourceError> {
        let (incoming, origins): (Vec<Resource>, Vec<Origin>) = input.into_iter().unzip();
        for _ in 0..WRITE_ATTEMPTS {
            // Read the guard before the pools: if it has not moved at write
            // time, no pool changed after this listing.
            let pools_guard = self
                .ds
                .get(POOLS_GUARD_KEY)
                .await?
                .map(|kv| kv.mod_revision);
            let pools = if incoming.iter().any(|r| matches!(r, Resource::IPPool(_))) {
                self.list_current(Kind::IPPool, None).await?
            } else {
                Vec::new()
            };
            let stored_pools: Vec<Resource> = pools.iter().map(|c| c.resource.clone()).collect();
            let with_origins: Vec<(Resource, Origin)> = incoming
                .iter()
                .cloned()
                .zip(origins.iter().copied())
                .collect();
            check_against_stored(&with_origins, &stored_pools).map_err(ResourceError::Invalid)?;
            let incoming = incoming.clone();
            let mut currents = Vec::with_capacity(incoming.len());
            for resource in &incoming {
                let current = match self.ds.get(key_of(resource)).await? {
                    Some(kv) => Some(decode(&kv)?),
                    None => None,
                };
                currents.push(current);
            }
            let refusals = check_mode(&incoming, &currents, &origins, mode);
            if !refusals.is_empty() {
                return Err(ResourceError::Refused(refusals));
            }

            too_many_bytes(&incoming, &origins)?;
            let mut guards = Vec::new();
            let mut puts = Vec::new();
            let mut results = Vec::new();
            let mut guarded = HashSet::new();
            for (resource, current) in incoming.into_iter().zip(&currents) {
                let key = key_of(&resource);
                let (to_store, change) = prepare(resource, current.as_ref());
                guards.push(match current {
                    Some(c) => Compare::unchanged_since(key.clone(), c.mod_revision),
                    None => Compare::absent(key.clone()),
                });
                guarded.insert(key.clone());
                puts.push(TxnOp::put(key, to_store.to_json_compact()));
                results.push((to_store, change));
            }
            // The pools the validation saw must still be the pools there are.
            // Stored pools are guarded one by one; a pool created meanwhile
            // has no key to guard yet, so every pool write also bumps one
            // shared key, and two writers of pools cannot both pass.
            if results
                .iter()
                .any(|(r, _)| matches!(r, Resource::IPPool(_)))
            {
                for pool in &pools {
                    let key = key_of(&pool.resource);
                    if !guarded.contains(&key) {
                        guards.push(Compare::unchanged_since(key, pool.mod_revision));
                    }
                }
                guards.push(match pools_guard {
                    Some(revision) => Compare::unchanged_since(POOLS_GUARD_KEY, revision),
                    None => Compare::absent(POOLS_GUARD_KEY),
                });
                puts.push(TxnOp::put(POOLS_GUARD_KEY, "brindlectl"));
            }
            let largest = guards.len().max(puts.len());
            if largest > MAX_TXN_OPS {
                return Err(ResourceError::TooLarge {
                    resources: results.len(),
                    needed: largest,
                });
            }
            let response = self.ds.txn(Txn::new().when(guards).and_then(puts)).await?;
            if !response.succeeded {
                tracing::debug!("write lost a race; re-validating");
                continue;
            }
            let revision = response.revision.to_string();
            for (resource, _) in &mut results {
                resource.metadata_mut().resource_version = Some(revision.clone());
            }
            return Ok(results);
        }
        Err(ResourceError::Contended)
    }

    /// Creates or replaces one resource (`brindlectl apply` of one
    /// document): defaulted, validated, identity metadata kept or made.
    /// A `resourceVersion` in it makes the write a compare-and-swap.
    pub async fn apply(&self, resource: Resource) -> Result<Resource, ResourceError> {
        self.write_one(resource, WriteMode::Apply).await
    }

    /// Creates one resource; `Ok(None)` when it exists already (another
    /// writer won, or it was there).
    pub async fn create(&self, resource: Resource) -> Result<Option<Resource>, ResourceError> {
        match self.write_one(resource, WriteMode::Create).await {
            Ok(stored) => Ok(Some(stored)),
            Err(ResourceError::Refused(r)) if r.iter().all(|r| r.why == RefusalKind::Exists) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads one resource (or starts from `absent()` when there is none),
    /// lets `change` edit it and writes it back only if it changed, guarded
    /// by the revision it read; when another writer got there first, reads
    /// again and retries. Returns the resource as stored.
    pub async fn modify(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        absent: impl Fn() -> Resource,
        change: impl Fn(&mut Resource),
    ) -> Result<Resource, ResourceError> {
        let key = resource_key(kind, namespace_for(kind, namespace), name);
        for _ in 0..MODIFY_ATTEMPTS {
            let current = match self.ds.get(key.clone()).await? {
                Some(kv) => Some(decode(&kv)?),
                None => None,
            };
            let (mut resource, mode) = match &current {
                Some(c) => (c.resource.clone(), WriteMode::Replace),
                None => (absent(), WriteMode::Create),
            };
            let before = resource.clone();
            change(&mut resource);
            if current.is_some() && resource == before {
                return Ok(resource);
            }
            // The revision read is the guard: a write in between is Stale.
            resource.metadata_mut().resource_version =
                current.as_ref().map(|c| c.mod_revision.to_string());
            match self.write_one(resource, mode).await {
                Err(ResourceError::Refused(r)) if r.iter().all(|r| r.why != RefusalKind::Other) => {
                    tracing::debug!(%key, "lost a race; reading again");
                }
                other => return other,
            }
        }
        Err(ResourceError::Contended)
    }

    async fn write_one(
        &self,
        mut resource: Resource,
        mode: WriteMode,
    ) -> Result<Resource, ResourceError> {
        let origin = Origin {
            document: 1,
            item: None,
        };
        default_and_validate(&mut resource, origin).map_err(ResourceError::Invalid)?;
        let mut written = self.write(vec![(resource, origin)], mode).await?;
        Ok(written.remove(0).0)
    }

    /// Removes one resource's key whatever it holds (even a value that no
    /// longer decodes): for an owner cleaning up what it wrote, such as CNI
    /// DEL removing its WorkloadEndpoint. Returns whether there was one.
    pub async fn remove(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<bool, ResourceError> {
        let key = resource_key(kind, namespace_for(kind, namespace), name);
        Ok(self.ds.delete(key).await?.is_some())
    }

    /// Deletes every target in one transaction; all must exist unless
    /// `skip_missing`. Returns what was deleted.
    #[tracing::instrument(skip(self, targets), fields(targets = targets.len()))]
    pub async fn delete(
        &self,
        targets: &[Target],
        skip_missing: bool,
    ) -> Result<Vec<Resource>, ResourceError> {
        for _ in 0..WRITE_ATTEMPTS {
            let mut refusals = Vec::new();
            let mut guards = Vec::new();
            let mut ops = Vec::new();
            let mut deleted = Vec::new();
            for target in targets {
                let key = target.key();
                let refuse = |why: RefusalKind, reason: String| Refusal {
                    origin: target.origin,
                    resource: target.describe(),
                    reason,
                    why,
                };
                match self.ds.get(key.clone()).await? {
                    None if skip_missing => {}
                    None => refusals.push(refuse(RefusalKind::Missing, "does not exist".into())),
                    Some(kv) => {
                        let current = decode(&kv)?;
                        if let Some(wanted) = &target.resource_version {
                            if *wanted != kv.mod_revision.to_string() {
                                refusals.push(refuse(
                                    RefusalKind::Stale,
                                    stale(wanted, kv.mod_revision),
                                ));
                                continue;
                            }
                        }
                        guards.push(Compare::unchanged_since(key.clone(), kv.mod_revision));
                        ops.push(TxnOp::delete(key));
                        deleted.push(current.resource);
                    }
                }
            }
            if !refusals.is_empty() {
                return Err(ResourceError::Refused(refusals));
            }
            if ops.is_empty() {
                return Ok(deleted);
            }
            if self
                .ds
                .txn(Txn::new().when(guards).and_then(ops))
                .await?
                .succeeded
            {
                return Ok(deleted);
            }
        }
        Err(ResourceError::Contended)
    }
}

/// The namespace to use in a key: `default` for namespaced kinds when none
/// is given, nothing for cluster-scoped kinds.
fn namespace_for(kind: Kind, namespace: Option<&str>) -> Option<&str> {
    kind.namespaced()
        .then(|| namespace.unwrap_or(brindle_model::resource::DEFAULT_NAMESPACE))
}

fn stale(wanted: &str, current: Revision) -> String {
    format!(
        "resourceVersion {wanted} is out of date (the stored one is {current}); \
         get the resource again and reapply your change"
    )
}

/// The mode's rules, checked for every resource so all refusals are shown.
fn check_mode(
    incoming: &[Resource],
    currents: &[Option<Current>],
    origins: &[Origin],
    mode: WriteMode,
) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    for (i, (resource, current)) in incoming.iter().zip(currents).enumerate() {
        let refuse = |why: RefusalKind, reason: String| Refusal {
            origin: origins.get(i).copied(),
            resource: resource.describe(),
            reason,
            why,
        };
        let given_version = resource.metadata().resource_version.as_deref();
        match (mode, current) {
            (WriteMode::Create, Some(_)) => refusals.push(refuse(
                RefusalKind::Exists,
                "already exists (use apply or replace to change it)".into(),
            )),
            (WriteMode::Create, None) if given_version.is_some() => refusals.push(refuse(
                RefusalKind::Other,
                "metadata.resourceVersion must not be set when creating".into(),
            )),
            (WriteMode::Replace, None) => refusals.push(refuse(
                RefusalKind::Missing,
                "does not exist (use create or apply to make it)".into(),
            )),
            (WriteMode::Replace | WriteMode::Apply, Some(c)) => {
                if let Some(wanted) = given_version {
                    if wanted != c.mod_revision.to_string() {
                        refusals.push(refuse(RefusalKind::Stale, stale(wanted, c.mod_revision)));
                    }
                }
            }
            // Apply of an absent resource creates it; a resourceVersion
            // copied from an earlier `get` does not matter then.
            (WriteMode::Create | WriteMode::Apply, None) => {}
        }
    }
    refusals
}

/// The resource as it will be stored: identity metadata kept from the stored
/// one on replace, made up on create; never a resourceVersion.
fn prepare(mut resource: Resource, current: Option<&Current>) -> (Resource, Change) {
    let meta = resource.metadata_mut();
    meta.resource_version = None;
    match current {
        Some(c) => {
            let old = c.resource.metadata();
            meta.uid = old.uid.clone();
            meta.creation_timestamp = old.creation_timestamp.clone();
            meta.generation = old.generation;
            (resource, Change::Replaced)
        }
        None => {
            meta.uid = Some(crate::stamp::new_uid());
            meta.creation_timestamp = Some(crate::stamp::now_rfc3339());
            meta.generation = None;
            (resource, Change::Created)
        }
    }
}

fn decode(kv: &KeyValue) -> Result<Current, ResourceError> {
    let corrupt = |reason: String| ResourceError::Corrupt {
        key: kv.key_str().into_owned(),
        reason,
    };
    let mut resource =
        parse_stored(&kv.value).map_err(|e| corrupt(e.to_string().replace('\n', "; ")))?;
    resource.metadata_mut().resource_version = Some(kv.mod_revision.to_string());
    Ok(Current {
        resource,
        mod_revision: kv.mod_revision,
    })
}

/// Compact JSON for storage.
trait CompactJson {
    fn to_json_compact(&self) -> Vec<u8>;
}

impl CompactJson for Resource {
    fn to_json_compact(&self) -> Vec<u8> {
        // Plain data with string keys: serialization cannot fail; fall back
        // to the pretty form (also JSON) rather than panic.
        serde_json::to_vec(self).unwrap_or_else(|_| self.to_json().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_model::parse_one;

    fn pool(name: &str, cidr: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n"
        )
    }

    fn current(text: &str, revision: Revision) -> Current {
        Current {
            resource: parse_one(text).unwrap(),
            mod_revision: revision,
        }
    }

    #[test]
    fn modes_refuse_with_document_numbers() {
        let incoming = vec![
            parse_one(&pool("a", "10.0.0.0/16")).unwrap(),
            parse_one(&pool("b", "10.1.0.0/16")).unwrap(),
        ];
        let origins = [
            Origin {
                document: 1,
                item: None,
            },
            Origin {
                document: 2,
                item: None,
            },
        ];
        let currents = vec![Some(current(&pool("a", "10.0.0.0/16"), 7)), None];
        let create = check_mode(&incoming, &currents, &origins, WriteMode::Create);
        assert_eq!(
            create.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["document 1 (IPPool 'a'): already exists (use apply or replace to change it)"]
        );
        let replace = check_mode(&incoming, &currents, &origins, WriteMode::Replace);
        assert_eq!(
            replace.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["document 2 (IPPool 'b'): does not exist (use create or apply to make it)"]
        );
        assert!(check_mode(&incoming, &currents, &origins, WriteMode::Apply).is_empty());
    }

    #[test]
    fn resource_version_is_a_compare_and_swap() {
        let mut stale_pool = parse_one(&pool("a", "10.0.0.0/16")).unwrap();
        stale_pool.metadata_mut().resource_version = Some("3".into());
        let currents = vec![Some(current(&pool("a", "10.0.0.0/16"), 7))];
        let origins = [Origin {
            document: 1,
            item: None,
        }];
        for mode in [WriteMode::Apply, WriteMode::Replace] {
            let got = check_mode(std::slice::from_ref(&stale_pool), &currents, &origins, mode);
            assert_eq!(got.len(), 1);
            assert!(got[0]
                .reason
                .starts_with("resourceVersion 3 is out of date (the stored one is 7)"));
        }
        stale_pool.metadata_mut().resource_version = Some("7".into());
        assert!(check_mode(&[stale_pool], &currents, &origins, WriteMode::Replace).is_empty());
    }

    #[test]
    fn replace_keeps_identity_and_create_makes_one() {
        let mut old = current(&pool("a", "10.0.0.0/16"), 7);
        old.resource.metadata_mut().uid = Some("u-1".into());
        old.resource.metadata_mut().creation_timestamp = Some("2020-01-01T00:00:00Z".into());
        let mut new = parse_one(&pool("a", "10.0.0.0/16")).unwrap();
        new.metadata_mut().uid = Some("forged".into());
        new.metadata_mut().resource_version = Some("7".into());
        let (stored, change) = prepare(new.clone(), Some(&old));
        assert_eq!(change, Change::Replaced);
        assert_eq!(stored.metadata().uid.as_deref(), Some("u-1"));
        assert_eq!(stored.metadata().resource_version, None);
        let (created, change) = prepare(new, None);
        assert_eq!(change, Change::Created);
        assert_ne!(created.metadata().uid.as_deref(), Some("forged"));
        assert!(created.metadata().creation_timestamp.is_some());
    }

    #[test]
    fn delete_targets_default_their_namespace() {
        let t = Target {
            kind: Kind::NetworkPolicy,
            namespace: None,
            name: "p".into(),
            resource_version: None,
            origin: None,
        };
        assert_eq!(t.key(), "/brindle/resources/v3/networkpolicies/default/p");
        assert_eq!(t.describe(), "NetworkPolicy 'default/p'");
        let t = Target {
            kind: Kind::IPPool,
            namespace: Some("ignored".into()),
            ..t
        };
        assert_eq!(t.key(), "/brindle/resources/v3/ippools/p");
    }
}

//! The data model shared by both backends: etcd v3 semantics over byte keys.
//!
//! * One global **revision** counts committed writes. An empty store is at
//!   revision 1; every transaction that changes at least one key bumps it by
//!   exactly one, and all its changes carry that revision. Reads never bump it.
//! * Every live key has a `create_revision` (revision of the write that
//!   created it), a `mod_revision` (last write) and a `version` (writes since
//!   creation, starting at 1). Deleting a key resets all three: re-creating it
//!   starts again at version 1.
//! * A [`Txn`] evaluates all its [`Compare`]s against one consistent state and
//!   applies either its `success` or its `failure` ops atomically.
//!
//! Nothing here does I/O; the backends interpret these values.

use std::borrow::Cow;

/// A store revision (etcd's `int64` revision). 0 means "absent" in compares.
pub type Revision = i64;

/// A key, its value and its revision metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (0 in a delete event).
    pub create_revision: Revision,
    /// Revision of the last write to the key (the deletion's in a delete event).
    pub mod_revision: Revision,
    /// Number of writes since creation, 1 after create (0 in a delete event).
    pub version: i64,
}

impl KeyValue {
    /// The key as text, for logs and errors (lossy for non-UTF-8 keys).
    pub fn key_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }
}

/// The result of a list: the items in key order and the revision they were
/// read at. Watch from `revision + 1` to follow changes without a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub kvs: Vec<KeyValue>,
    pub revision: Revision,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. For a delete, `kv` carries the key, empty
/// value, `mod_revision` = the deletion's revision and zero create
/// revision/version (what etcd reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

impl Event {
    /// Revision of the write that produced this event.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// How a [`Compare`] relates the stored field to the given number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

impl CompareOp {
    pub(crate) fn holds<T: Ord>(self, stored: T, given: T) -> bool {
        match self {
            CompareOp::Equal => stored == given,
            CompareOp::NotEqual => stored != given,
            CompareOp::Less => stored < given,
            CompareOp::Greater => stored > given,
        }
    }
}

/// The field of a key a [`Compare`] looks at. An absent key has
/// revisions/version 0 and never matches a `Value` compare (as in etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    ModRevision(Revision),
    CreateRevision(Revision),
    Version(i64),
    Value(Vec<u8>),
}

/// A guard of a transaction on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// The key's last write was at `revision` (0: the key is absent).
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: Revision) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::ModRevision(revision),
        }
    }

    /// The key was created at `revision` (0: the key is absent).
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: Revision) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::CreateRevision(revision),
        }
    }

    /// The key's version (0: the key is absent).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::Version(version),
        }
    }

    /// The key's value (an absent key fails any value compare).
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::Value(value.into()),
        }
    }

    /// The key does not exist.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Compare::create_revision(key, CompareOp::Equal, 0)
    }

    /// The key exists, at exactly `revision` (the usual compare-and-swap guard).
    pub fn unchanged_since(key: impl Into<Vec<u8>>, revision: Revision) -> Self {
        Compare::mod_revision(key, CompareOp::Equal, revision)
    }

    /// Evaluates against the key's current state (`None`: absent).
    pub(crate) fn holds(&self, current: Option<&KeyValue>) -> bool {
        match &self.target {
            CompareTarget::ModRevision(r) => {
                self.op.holds(current.map_or(0, |kv| kv.mod_revision), *r)
            }
            CompareTarget::CreateRevision(r) => self
                .op
                .holds(current.map_or(0, |kv| kv.create_revision), *r),
            CompareTarget::Version(v) => self.op.holds(current.map_or(0, |kv| kv.version), *v),
            CompareTarget::Value(v) => {
                current.is_some_and(|kv| self.op.holds(kv.value.as_slice(), v.as_slice()))
            }
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Write a value (creating the key if absent).
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Remove one key (no-op, and no revision bump, if absent).
    Delete { key: Vec<u8> },
    /// Remove every key under a prefix.
    DeletePrefix { prefix: Vec<u8> },
    /// Read one key as of the transaction's state before its writes.
    Get { key: Vec<u8> },
}

impl TxnOp {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Delete { key: key.into() }
    }

    pub fn delete_prefix(prefix: impl Into<Vec<u8>>) -> Self {
        TxnOp::DeletePrefix {
            prefix: prefix.into(),
        }
    }

    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Get { key: key.into() }
    }
}

/// A multi-key atomic transaction: if every compare holds, apply `success`,
/// else `failure`. Ops apply in order and a key may be written at most once
/// per branch (etcd's rule); a `Get` placed before a write reads the old value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl Txn {
    pub fn new() -> Self {
        Txn::default()
    }

    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }

    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    /// Rejects what etcd rejects, so both backends fail the same way: empty
    /// keys, a key written twice in one branch, and more than
    /// [`MAX_TXN_OPS`] compares or ops per branch.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        for (what, n) in [
            ("compares", self.compares.len()),
            ("success ops", self.success.len()),
            ("failure ops", self.failure.len()),
        ] {
            if n > MAX_TXN_OPS {
                return Err(crate::Error::InvalidRequest(format!(
                    "{n} {what} in one transaction (at most {MAX_TXN_OPS}, etcd's default --max-txn-ops)"
                )));
            }
        }
        let bytes: usize = self
            .compares
            .iter()
            .map(|c| {
                c.key.len()
                    + match &c.target {
                        CompareTarget::Value(v) => v.len(),
                        _ => 8,
                    }
            })
            .chain(self.success.iter().chain(&self.failure).map(|op| match op {
                TxnOp::Put { key, value } => key.len() + value.len(),
                TxnOp::Delete { key } | TxnOp::Get { key } => key.len(),
                TxnOp::DeletePrefix { prefix } => prefix.len(),
            }))
            .sum();
        if bytes > MAX_TXN_BYTES {
            return Err(crate::Error::InvalidRequest(format!(
                "transaction carries {bytes} bytes of keys and values (at most {MAX_TXN_BYTES}, \
                 under etcd's default --max-request-bytes)"
            )));
        }
        for c in &self.compares {
            if c.key.is_empty() {
                return Err(crate::Error::InvalidRequest(
                    "empty key in a compare".into(),
                ));
            }
        }
        for branch in [&self.success, &self.failure] {
            let mut written: Vec<&[u8]> = Vec::new();
            for op in branch {
                let key = match op {
                    TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => key,
                    TxnOp::DeletePrefix { .. } => continue,
                };
                if key.is_empty() {
                    return Err(crate::Error::InvalidRequest(
                        "empty key in an operation".into(),
                    ));
                }
                if matches!(op, TxnOp::Get { .. }) {
                    continue;
                }
                if written.contains(&key.as_slice()) {
                    return Err(crate::Error::InvalidRequest(format!(
                        "key {} written twice in one transaction",
                        display_key(key)
                    )));
                }
                written.push(key);
            }
        }
        Ok(())
    }
}

/// Most compares, and most ops per branch, in one transaction: etcd's
/// default `--max-txn-ops`, enforced for both backends so a transaction that
/// works on the embedded store also works on etcd.
pub const MAX_TXN_OPS: usize = 128;

/// Most bytes of keys and values in one transaction: etcd refuses requests
/// over 1.5 MiB by default (`--max-request-bytes`); this leaves room for the
/// request's framing. Enforced for both backends, like [`MAX_TXN_OPS`].
pub const MAX_TXN_BYTES: usize = 1_500_000;

/// The outcome of one [`TxnOp`], in op order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResult {
    /// The key as written (revisions filled in).
    Put(KeyValue),
    /// The keys removed, as they were before removal.
    Deleted(Vec<KeyValue>),
    /// The key as read (`None`: absent).
    Get(Option<KeyValue>),
}

/// The outcome of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (so `success` ran rather than `failure`).
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged if it wrote nothing).
    pub revision: Revision,
    pub results: Vec<TxnOpResult>,
}

/// The end of the key range covered by `prefix` (exclusive), as etcd computes
/// it: the prefix with its last non-0xff byte incremented and the rest cut.
/// `None` means "no upper bound" (empty prefix, or all bytes 0xff).
pub fn prefix_range_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A key for humans: text if UTF-8, else hex.
pub(crate) fn display_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("0x{}", hex::encode(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_end_matches_etcd() {
        assert_eq!(prefix_range_end(b"foo1").as_deref(), Some(&b"foo2"[..]));
        assert_eq!(prefix_range_end(b"foo\xff").as_deref(), Some(&b"fop"[..]));
        assert_eq!(
            prefix_range_end(b"/calico/").as_deref(),
            Some(&b"/calico0"[..])
        );
        assert_eq!(prefix_range_end(b"\xff\xff"), None);
        assert_eq!(prefix_range_end(b""), None);
    }

    #[test]
    fn compares_treat_absent_as_zero() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            create_revision: 3,
            mod_revision: 7,
            version: 2,
        };
        assert!(Compare::absent("k").holds(None));
        assert!(!Compare::absent("k").holds(Some(&kv)));
        assert!(Compare::unchanged_since("k", 7).holds(Some(&kv)));
        assert!(!Compare::unchanged_since("k", 6).holds(Some(&kv)));
        assert!(Compare::version("k", CompareOp::Greater, 1).holds(Some(&kv)));
        assert!(!Compare::value("k", CompareOp::Equal, "v").holds(None));
        assert!(!Compare::value("k", CompareOp::NotEqual, "v").holds(None));
        assert!(Compare::value("k", CompareOp::Equal, "v").holds(Some(&kv)));
    }

    #[test]
    fn txn_rejects_double_writes_and_empty_keys() {
        let twice = Txn::new().and_then([TxnOp::put("a", "1"), TxnOp::delete("a")]);
        assert!(matches!(
            twice.validate(),
            Err(crate::Error::InvalidRequest(_))
        ));
        let empty = Txn::new().and_then([TxnOp::put("", "1")]);
        assert!(empty.validate().is_err());
        let read_after_write = Txn::new().and_then([TxnOp::put("a", "1"), TxnOp::get("a")]);
        assert!(read_after_write.validate().is_ok());
        let many = |n: usize| (0..n).map(|i| TxnOp::put(format!("k{i}"), "v"));
        assert!(Txn::new().and_then(many(MAX_TXN_OPS)).validate().is_ok());
        assert!(Txn::new()
            .and_then(many(MAX_TXN_OPS + 1))
            .validate()
            .is_err());
        assert!(Txn::new()
            .or_else(many(MAX_TXN_OPS + 1))
            .validate()
            .is_err());
        let compares = (0..=MAX_TXN_OPS).map(|i| Compare::absent(format!("k{i}")));
        assert!(Txn::new().when(compares).validate().is_err());
        let huge = Txn::new().and_then([TxnOp::put("k", vec![0u8; MAX_TXN_BYTES])]);
        assert!(huge.validate().is_err());
        let large = Txn::new().and_then([TxnOp::put("k", vec![0u8; MAX_TXN_BYTES - 1])]);
        assert!(large.validate().is_ok());
        let both_branches = Txn::new()
            .and_then([TxnOp::put("a", "1")])
            .or_else([TxnOp::put("a", "2")]);
        assert!(both_branches.validate().is_ok());
    }
}

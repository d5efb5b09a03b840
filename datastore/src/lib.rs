//! `brindle-datastore`: where Brindle's state lives and what it looks like.
//!
//! This crate owns the datastore interface and its two backends (etcd v3 for
//! clusters, an embedded file-backed store for one machine), the typed and
//! validated resources (Calico `projectcalico.org/v3` compatible), the label
//! selector language, and IPAM (blocks, affinities, allocations by handle).
//!
//! # The store
//!
//! [`Datastore`] is one interface with etcd v3 semantics (a global revision;
//! per-key create/mod revision and version; compare-and-swap; multi-key
//! transactions; ordered, resumable watches that report compaction) over two
//! backends that behave the same, chosen by URL ([`DatastoreConfig`]):
//!
//! * `etcd://[user:pass@]h1:2379,h2:2379` / `etcds://…?ca=…&cert=…&key=…`:
//!   an etcd v3 cluster ([`etcd`]).
//! * `file:///var/lib/brindle/store.db` (the default): a SQLite file in WAL
//!   mode that several processes on one host share safely ([`embedded`]).
//!
//! The same conformance suite (`tests/conformance/`) runs against both.

pub mod config;
pub mod embedded;
mod error;
pub mod etcd;
pub mod kv;
mod store;

pub use config::{DatastoreConfig, DEFAULT_URL, ENV_VAR};
pub use error::{Error, Result};
pub use kv::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyValue, Listing, Revision, Txn, TxnOp,
    TxnOpResult, TxnResponse,
};
pub use store::{Backend, Datastore, Swap, Versioned, WatchStream};

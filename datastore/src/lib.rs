//! `brindle-datastore`: where Brindle's state lives and what it looks like.
//!
//! This crate owns the datastore interface and its two backends (etcd v3 for
//! clusters, an embedded file-backed store for one machine), the key layout
//! ([`keys`]: every key anyone reads or writes), the typed resource store
//! with calicoctl's write semantics ([`resources`]: the one way every writer
//! stores a `projectcalico.org/v3` resource; the types themselves are
//! `brindle-model`'s), and IPAM (blocks, affinities, allocations by handle).
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
//!
//! On top: a typed JSON layer ([`Datastore::get_json`], [`Datastore::modify_json`]
//! for read-modify-write with retries, the IPAM pattern),
//! [`Datastore::compare_and_swap`] that hands back the winner, and
//! [`Datastore::follow`] to mirror a prefix (snapshot, changes, re-snapshot
//! after compaction).
//!
//! ```no_run
//! # async fn demo() -> Result<(), brindle_datastore::Error> {
//! use brindle_datastore::{Datastore, Error};
//! use futures::StreamExt;
//!
//! // `--datastore` flag if given, else $BRINDLE_DATASTORE, else the default file.
//! let ds = Datastore::open(None).await?;
//! let kv = ds.create("/calico/resources/v3/projectcalico.org/nodes/a", "{}").await?;
//! match ds.update_if(kv.key.clone(), kv.mod_revision, "{\"spec\":{}}").await {
//!     Ok(_) | Err(Error::Conflict { .. }) => {} // someone else won: re-read
//!     Err(e) => return Err(e),
//! }
//! let listing = ds.list("/calico/resources/").await?;
//! let mut changes = ds.watch("/calico/resources/", listing.revision + 1);
//! while let Some(event) = changes.next().await {
//!     match event {
//!         Ok(ev) => println!("{:?} {}", ev.kind, ev.kv.key_str()),
//!         Err(Error::Compacted { .. }) => break, // re-list, then watch again
//!         Err(e) => return Err(e),
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod config;
pub mod embedded;
mod error;
pub mod etcd;
pub mod follow;
pub mod ipam;
pub mod keys;
pub mod kv;
pub mod lockfile;
pub mod resources;
mod stamp;
mod store;

pub use config::{DatastoreConfig, DEFAULT_URL, ENV_VAR};
pub use error::{Error, Result};
pub use follow::{Follow, Update};
pub use kv::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyValue, Listing, Revision, Txn, TxnOp,
    TxnOpResult, TxnResponse,
};
pub use store::{Backend, Datastore, Swap, Versioned, WatchStream};

#[cfg(test)]
mod tests {
    /// Callers hold these across tasks and put the config in clap structs.
    #[test]
    fn public_types_are_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<crate::Datastore>();
        check::<crate::Error>();
        check::<crate::DatastoreConfig>();
        fn check_send<T: Send + 'static>() {}
        check_send::<crate::WatchStream>();
    }
}

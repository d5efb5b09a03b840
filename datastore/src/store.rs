//! The datastore interface callers use: [`Datastore`], a cheap-to-clone
//! handle over one backend.
//!
//! Every single-key write is a [`Txn`] underneath, so backends implement only
//! a few primitives ([`Backend`]: range, revision, txn, watch, compact) and
//! the two cannot drift apart on the semantics of `create`, `update_if` or
//! `delete_if`. Keys must be non-empty (checked); nothing panics except
//! [`Datastore::watch`] called outside a Tokio runtime.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::DatastoreConfig;
use crate::kv::{
    Compare, Event, KeyValue, Listing, Revision, Txn, TxnOp, TxnOpResult, TxnResponse,
};
use crate::{Error, Result};

/// What a backend provides. Implemented by the etcd and embedded backends;
/// object-safe so a [`Datastore`] can hold either.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Reads one key (`prefix == false`) or every key starting with `key`,
    /// in key order, with the revision of the read.
    fn range(&self, key: Vec<u8>, prefix: bool) -> BoxFuture<'_, Result<Listing>>;

    /// The current store revision (needs no permission on any key).
    fn revision(&self) -> BoxFuture<'_, Result<Revision>>;

    /// Applies a validated transaction atomically.
    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>>;

    /// Streams changes under `prefix` with revision >= `from_revision` (0:
    /// after the current revision), in revision order (op order within a
    /// revision), forever. Reconnects on its
    /// own after a transient failure, resuming after the last event it
    /// delivered. Ends with `Err(Compacted)` if the requested history is gone.
    fn watch(&self, prefix: Vec<u8>, from_revision: Revision) -> BoxStream<'static, Result<Event>>;

    /// Discards history before `revision`: watches from an older revision
    /// then fail with [`Error::Compacted`].
    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>>;

    /// "etcd at h1:2379,h2:2379" / "embedded store /path": for errors and logs.
    fn describe(&self) -> String;
}

/// A handle on the datastore. Clones share one connection.
#[derive(Clone)]
pub struct Datastore {
    backend: Arc<dyn Backend>,
}

impl fmt::Debug for Datastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Datastore")
            .field(&self.backend.describe())
            .finish()
    }
}

/// A stream of watch events; see [`Datastore::watch`]. Dropping it stops the watch.
pub struct WatchStream {
    inner: BoxStream<'static, Result<Event>>,
}

impl WatchStream {
    pub(crate) fn new(inner: BoxStream<'static, Result<Event>>) -> Self {
        WatchStream { inner }
    }
}

impl Stream for WatchStream {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WatchStream")
    }
}

impl Datastore {
    /// Wraps a backend.
    pub fn from_backend(backend: Arc<dyn Backend>) -> Self {
        Datastore { backend }
    }

    /// Connects to the backend a config describes (opens/creates the
    /// embedded file, or connects to etcd and checks it answers).
    pub async fn connect(config: &DatastoreConfig) -> Result<Self> {
        let backend: Arc<dyn Backend> = match config {
            DatastoreConfig::Etcd(c) => Arc::new(crate::etcd::EtcdBackend::connect(c).await?),
            DatastoreConfig::Embedded(c) => {
                Arc::new(crate::embedded::EmbeddedBackend::open(c).await?)
            }
        };
        Ok(Datastore { backend })
    }

    /// Connects to the store named by `url`, or env `BRINDLE_DATASTORE`, or the
    /// default embedded file.
    pub async fn open(url: Option<&str>) -> Result<Self> {
        Self::connect(&DatastoreConfig::resolve(url)?).await
    }

    /// Which store this is, for logs.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Reads one key.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        let key = key.into();
        if key.is_empty() {
            return Err(Error::InvalidRequest("empty key".into()));
        }
        Ok(self.backend.range(key, false).await?.kvs.into_iter().next())
    }

    /// Reads every key starting with `prefix`, in key order, and the revision
    /// of the read (watch from `revision + 1` to follow on).
    pub async fn list(&self, prefix: impl Into<Vec<u8>>) -> Result<Listing> {
        self.backend.range(prefix.into(), true).await
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<Revision> {
        self.backend.revision().await
    }

    /// Creates a key; fails with [`Error::AlreadyExists`] if it exists.
    pub async fn create(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<KeyValue> {
        let key = key.into();
        let resp = self
            .txn(
                Txn::new()
                    .when([Compare::absent(key.clone())])
                    .and_then([TxnOp::put(key.clone(), value)]),
            )
            .await?;
        if !resp.succeeded {
            return Err(Error::AlreadyExists { key });
        }
        put_result(resp)
    }

    /// Writes a key unconditionally; returns it with its new revisions.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<KeyValue> {
        put_result(
            self.txn(Txn::new().and_then([TxnOp::put(key, value)]))
                .await?,
        )
    }

    /// Compare-and-swap: writes only if the key's `mod_revision` is still
    /// `expected` (which must be > 0; use [`create`](Self::create) for
    /// absent keys). Fails with [`Error::Conflict`] otherwise.
    pub async fn update_if(
        &self,
        key: impl Into<Vec<u8>>,
        expected: Revision,
        value: impl Into<Vec<u8>>,
    ) -> Result<KeyValue> {
        let key = key.into();
        let resp = self
            .txn(
                Txn::new()
                    .when([Compare::unchanged_since(key.clone(), expected)])
                    .and_then([TxnOp::put(key.clone(), value)])
                    .or_else([TxnOp::get(key.clone())]),
            )
            .await?;
        if !resp.succeeded {
            return Err(conflict(key, expected, resp));
        }
        put_result(resp)
    }

    /// Compare-and-swap that reports the winner: writes `value` if the key's
    /// `mod_revision` is still `expected` (`None`: the key must be absent),
    /// else returns what the key holds now, in the same round trip, so a
    /// retry loop needs no extra read.
    pub async fn compare_and_swap(
        &self,
        key: impl Into<Vec<u8>>,
        expected: Option<Revision>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Swap> {
        let key = key.into();
        let guard = match expected {
            None => Compare::absent(key.clone()),
            Some(r) => Compare::unchanged_since(key.clone(), r),
        };
        let resp = self
            .txn(
                Txn::new()
                    .when([guard])
                    .and_then([TxnOp::put(key.clone(), value)])
                    .or_else([TxnOp::get(key)]),
            )
            .await?;
        if resp.succeeded {
            return put_result(resp).map(Swap::Written);
        }
        Ok(Swap::Lost(resp.results.into_iter().find_map(|r| match r {
            TxnOpResult::Get(kv) => kv,
            _ => None,
        })))
    }

    /// Deletes a key; returns what it held (`None`: it was absent).
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<Option<KeyValue>> {
        let resp = self.txn(Txn::new().and_then([TxnOp::delete(key)])).await?;
        Ok(deleted(resp).into_iter().next())
    }

    /// Deletes a key only if its `mod_revision` is still `expected`; fails with
    /// [`Error::Conflict`] otherwise (also when the key is absent).
    pub async fn delete_if(&self, key: impl Into<Vec<u8>>, expected: Revision) -> Result<KeyValue> {
        let key = key.into();
        let resp = self
            .txn(
                Txn::new()
                    .when([Compare::unchanged_since(key.clone(), expected)])
                    .and_then([TxnOp::delete(key.clone())])
                    .or_else([TxnOp::get(key.clone())]),
            )
            .await?;
        if !resp.succeeded {
            return Err(conflict(key, expected, resp));
        }
        deleted(resp)
            .into_iter()
            .next()
            .ok_or(Error::NotFound { key })
    }

    /// Deletes every key under `prefix`; returns how many there were.
    pub async fn delete_prefix(&self, prefix: impl Into<Vec<u8>>) -> Result<usize> {
        let resp = self
            .txn(Txn::new().and_then([TxnOp::delete_prefix(prefix)]))
            .await?;
        Ok(deleted(resp).len())
    }

    /// Runs a multi-key transaction atomically.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        txn.validate()?;
        self.backend.txn(txn).await
    }

    /// Follows changes under `prefix` from `from_revision` (inclusive; usually
    /// a [`list`](Self::list)'s revision + 1; 0 means "changes after now").
    /// Events arrive in revision
    /// order; the stream survives backend restarts (it resumes after the last
    /// event delivered) and ends with [`Error::Compacted`] when the history
    /// asked for is gone, after which the caller should re-list.
    ///
    /// Panics if called outside a Tokio runtime (the watch runs as a task).
    pub fn watch(&self, prefix: impl Into<Vec<u8>>, from_revision: Revision) -> WatchStream {
        WatchStream::new(self.backend.watch(prefix.into(), from_revision.max(0)))
    }

    /// Discards history before `revision` (see [`Error::Compacted`]).
    pub async fn compact(&self, revision: Revision) -> Result<()> {
        self.backend.compact(revision).await
    }

    // ----- typed JSON layer -------------------------------------------------

    /// Reads a key holding JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        key: impl Into<Vec<u8>>,
    ) -> Result<Option<Versioned<T>>> {
        match self.get(key).await? {
            None => Ok(None),
            Some(kv) => Versioned::decode(kv).map(Some),
        }
    }

    /// Lists a prefix whose values are all JSON of one type.
    pub async fn list_json<T: DeserializeOwned>(
        &self,
        prefix: impl Into<Vec<u8>>,
    ) -> Result<(Vec<Versioned<T>>, Revision)> {
        let listing = self.list(prefix).await?;
        let items = listing
            .kvs
            .into_iter()
            .map(Versioned::decode)
            .collect::<Result<_>>()?;
        Ok((items, listing.revision))
    }

    /// Writes JSON unconditionally.
    pub async fn put_json<T: Serialize>(
        &self,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<Revision> {
        let key = key.into();
        let bytes = encode(&key, value)?;
        Ok(self.put(key, bytes).await?.mod_revision)
    }

    /// Creates a key holding JSON ([`Error::AlreadyExists`] if present).
    pub async fn create_json<T: Serialize>(
        &self,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<Revision> {
        let key = key.into();
        let bytes = encode(&key, value)?;
        Ok(self.create(key, bytes).await?.mod_revision)
    }

    /// Compare-and-swap of a JSON value ([`Error::Conflict`] if it moved).
    pub async fn update_json_if<T: Serialize>(
        &self,
        key: impl Into<Vec<u8>>,
        expected: Revision,
        value: &T,
    ) -> Result<Revision> {
        let key = key.into();
        let bytes = encode(&key, value)?;
        Ok(self.update_if(key, expected, bytes).await?.mod_revision)
    }

    /// Read-modify-write of one JSON document with optimistic concurrency:
    /// reads the key, calls `change` with the current value (`None`: absent),
    /// and writes the result guarded by the revision it read; on a conflict,
    /// re-reads and calls `change` again, up to `max_attempts` times.
    ///
    /// `change` returns `Ok(Some(v))` to write `v`, `Ok(None)` to leave the key
    /// as it is, or an error to abort. Returns the value finally stored (if any)
    /// and its revision. This is the IPAM block pattern (Calico retries 100 times).
    pub async fn modify_json<T, F, E>(
        &self,
        key: impl Into<Vec<u8>>,
        max_attempts: u32,
        mut change: F,
    ) -> std::result::Result<Option<Versioned<T>>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<&T>) -> std::result::Result<Option<T>, E>,
        E: From<Error>,
    {
        let key = key.into();
        // One read up front; after that a lost race hands back the winner's
        // value, so each retry costs one round trip.
        let mut current = self.get(key.clone()).await?;
        for _ in 0..max_attempts.max(1) {
            let decoded = current.map(Versioned::<T>::decode).transpose()?;
            let Some(next) = change(decoded.as_ref().map(|v| &v.value))? else {
                return Ok(decoded);
            };
            let bytes = encode(&key, &next)?;
            let expected = decoded.as_ref().map(|v| v.mod_revision);
            match self.compare_and_swap(key.clone(), expected, bytes).await? {
                Swap::Written(kv) => {
                    return Ok(Some(Versioned {
                        value: next,
                        key: kv.key,
                        create_revision: kv.create_revision,
                        mod_revision: kv.mod_revision,
                    }))
                }
                Swap::Lost(now) => current = now,
            }
        }
        Err(Error::TooManyConflicts {
            key,
            attempts: max_attempts.max(1),
        }
        .into())
    }
}

/// The outcome of [`Datastore::compare_and_swap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The value was written; the key as stored now.
    Written(KeyValue),
    /// The guard failed; what the key holds now (`None`: absent).
    Lost(Option<KeyValue>),
}

/// A decoded JSON value with the revisions needed to update it safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub key: Vec<u8>,
    pub value: T,
    pub create_revision: Revision,
    /// Pass this to `update_if`/`update_json_if`/`delete_if`.
    pub mod_revision: Revision,
}

impl<T: DeserializeOwned> Versioned<T> {
    /// Decodes a key-value's JSON value.
    pub fn decode(kv: KeyValue) -> Result<Self> {
        match serde_json::from_slice(&kv.value) {
            Ok(value) => Ok(Versioned {
                value,
                key: kv.key,
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
            }),
            Err(source) => Err(Error::Decode {
                key: kv.key,
                type_name: std::any::type_name::<T>(),
                source,
            }),
        }
    }
}

fn encode<T: Serialize>(key: &[u8], value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| Error::Encode {
        key: key.to_vec(),
        source,
    })
}

fn put_result(resp: TxnResponse) -> Result<KeyValue> {
    resp.results
        .into_iter()
        .find_map(|r| match r {
            TxnOpResult::Put(kv) => Some(kv),
            _ => None,
        })
        .ok_or_else(|| Error::Worker("backend returned no result for a put".into()))
}

fn deleted(resp: TxnResponse) -> Vec<KeyValue> {
    resp.results
        .into_iter()
        .flat_map(|r| match r {
            TxnOpResult::Deleted(kvs) => kvs,
            _ => Vec::new(),
        })
        .collect()
}

fn conflict(key: Vec<u8>, expected: Revision, resp: TxnResponse) -> Error {
    let found = resp
        .results
        .into_iter()
        .find_map(|r| match r {
            TxnOpResult::Get(kv) => kv.map(|kv| kv.mod_revision),
            _ => None,
        })
        .unwrap_or(0);
    Error::Conflict {
        key,
        expected,
        found,
    }
}

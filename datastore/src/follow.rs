//! List-then-watch, with the re-list on compaction done for the caller: what
//! every consumer of the store (node agent, policy, BGP) needs to mirror a
//! prefix, so it is written once, here.
//!
//! A [`Follow`] stream yields a [`Update::Snapshot`] first (the whole prefix
//! and its revision), then [`Update::Event`]s in revision order. Whenever the
//! events cannot continue gaplessly (history compacted, or the watch failed
//! for good), it yields a fresh `Snapshot`: the caller replaces its state with
//! it. Applying the updates in order therefore always converges to the
//! store's state. Failures to list are yielded as errors and retried with
//! capped backoff; the stream never ends by itself.

use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use tracing::debug;

use crate::kv::{Event, Listing};
use crate::store::{Datastore, WatchStream};
use crate::{Error, Result};

/// Longest pause between failed attempts to list.
const MAX_LIST_BACKOFF: Duration = Duration::from_secs(5);

/// One item of a [`Follow`] stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The complete current contents of the prefix: replace everything.
    Snapshot(Listing),
    /// One change after the last snapshot.
    Event(Event),
}

/// See [`Datastore::follow`].
pub type Follow = BoxStream<'static, Result<Update>>;

struct State {
    ds: Datastore,
    prefix: Vec<u8>,
    watch: Option<WatchStream>,
    backoff: Duration,
    /// The last list failed: wait `backoff` before the next.
    list_failed: bool,
}

impl Datastore {
    /// Mirrors `prefix`: a snapshot, then changes, and a new snapshot
    /// whenever changes could not be delivered without a gap (see the module
    /// docs of `follow`). Panics if called outside a Tokio runtime.
    pub fn follow(&self, prefix: impl Into<Vec<u8>>) -> Follow {
        let state = State {
            ds: self.clone(),
            prefix: prefix.into(),
            watch: None,
            backoff: Duration::from_millis(100),
            list_failed: false,
        };
        futures::stream::unfold(state, next_update).boxed()
    }
}

async fn next_update(mut s: State) -> Option<(Result<Update>, State)> {
    loop {
        let Some(watch) = s.watch.as_mut() else {
            if s.list_failed {
                tokio::time::sleep(s.backoff).await;
                s.backoff = (s.backoff * 2).min(MAX_LIST_BACKOFF);
            }
            match s.ds.list(s.prefix.clone()).await {
                Ok(listing) => {
                    s.list_failed = false;
                    s.backoff = Duration::from_millis(100);
                    s.watch = Some(s.ds.watch(s.prefix.clone(), listing.revision + 1));
                    return Some((Ok(Update::Snapshot(listing)), s));
                }
                Err(e) => {
                    s.list_failed = true;
                    return Some((Err(e), s));
                }
            }
        };
        match watch.next().await {
            Some(Ok(ev)) => return Some((Ok(Update::Event(ev)), s)),
            Some(Err(Error::Compacted {
                requested,
                compact_revision,
            })) => {
                debug!(requested, compact_revision, "history compacted; re-listing");
                s.watch = None;
            }
            Some(Err(e)) => {
                // The watch ends after an error; start over from a new list.
                s.watch = None;
                return Some((Err(e), s));
            }
            None => s.watch = None,
        }
    }
}

//! The node's mirror of the store, decoded once: each document is parsed
//! when a watch event (or a snapshot) brings it, not on every converge.
//!
//! [`Decoded`] maps a key to its decoded value (shared with `Arc`, so the
//! cluster view and the policy task read the same objects without copying
//! or parsing them again) or to why it does not decode. A put replaces one
//! entry, a delete removes one, a snapshot (first listing, or a re-list after
//! compaction) replaces them all; unchanged values keep their `Arc`.
//! [`Decoded::values`] hands out the decoded values as one shared list,
//! rebuilt only after a change.

use std::collections::BTreeMap;
use std::sync::Arc;

use brindle_datastore::ipam::AllocationBlock;
use brindle_datastore::{EventKind, KeyValue, Update};
use brindle_model::{parse_stored, Resource};

/// One stored document.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    pub key: String,
    /// The decoded value, or why it does not decode.
    pub value: Result<Arc<T>, String>,
}

/// A prefix of the store, decoded.
#[derive(Debug)]
pub struct Decoded<T> {
    entries: BTreeMap<Vec<u8>, Entry<T>>,
    decode: fn(&KeyValue) -> Result<T, String>,
    /// The decoded values in key order, while nothing changed.
    values: Option<Arc<Vec<Arc<T>>>>,
}

impl<T> Decoded<T> {
    pub fn new(decode: fn(&KeyValue) -> Result<T, String>) -> Self {
        Decoded {
            entries: BTreeMap::new(),
            decode,
            values: None,
        }
    }

    /// Decodes and stores every document of `kvs` (a listing).
    pub fn from_kvs<'a>(
        decode: fn(&KeyValue) -> Result<T, String>,
        kvs: impl IntoIterator<Item = &'a KeyValue>,
    ) -> Self {
        let mut d = Decoded::new(decode);
        for kv in kvs {
            d.put(kv);
        }
        d
    }

    /// Folds one watch update in.
    pub fn apply(&mut self, update: Update) {
        self.values = None;
        match update {
            Update::Snapshot(listing) => {
                self.entries.clear();
                for kv in &listing.kvs {
                    self.put(kv);
                }
            }
            Update::Event(event) => match event.kind {
                EventKind::Put => self.put(&event.kv),
                EventKind::Delete => {
                    self.entries.remove(&event.kv.key);
                }
            },
        }
    }

    fn put(&mut self, kv: &KeyValue) {
        self.values = None;
        let entry = Entry {
            key: kv.key_str().into_owned(),
            value: (self.decode)(kv).map(Arc::new),
        };
        self.entries.insert(kv.key.clone(), entry);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.entries.values()
    }

    /// The values that decoded, in key order, as one shared list.
    pub fn values(&mut self) -> Arc<Vec<Arc<T>>> {
        let entries = &self.entries;
        self.values
            .get_or_insert_with(|| {
                Arc::new(
                    entries
                        .values()
                        .filter_map(|e| e.value.as_ref().ok().cloned())
                        .collect(),
                )
            })
            .clone()
    }
}

/// A resource document as `brindlectl` stores it.
pub fn decode_resource(kv: &KeyValue) -> Result<Resource, String> {
    parse_stored(&kv.value).map_err(|e| e.to_string())
}

/// An IPAM block document.
pub fn decode_block(kv: &KeyValue) -> Result<AllocationBlock, String> {
    serde_json::from_slice(&kv.value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_datastore::{Event, Listing};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        }
    }

    fn as_text(kv: &KeyValue) -> Result<String, String> {
        let text = String::from_utf8(kv.value.clone()).map_err(|e| e.to_string())?;
        if text.starts_with('!') {
            Err(format!("bad {text}"))
        } else {
            Ok(text)
        }
    }

    #[test]
    fn follows_snapshots_and_events_and_decodes_each_document_once() {
        let mut map = Decoded::new(as_text);
        map.apply(Update::Snapshot(Listing {
            kvs: vec![kv("/a", "1"), kv("/b", "!2")],
            revision: 2,
        }));
        assert_eq!(map.len(), 2);
        let first = map.values();
        assert_eq!(*first, vec![Arc::new("1".to_owned())]);
        assert!(Arc::ptr_eq(&first, &map.values()), "no change, same list");
        map.apply(Update::Event(Event {
            kind: EventKind::Put,
            kv: kv("/c", "3"),
        }));
        map.apply(Update::Event(Event {
            kind: EventKind::Delete,
            kv: kv("/a", ""),
        }));
        let keys: Vec<&str> = map.entries().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["/b", "/c"]);
        assert_eq!(map.entries().next().unwrap().value, Err("bad !2".into()));
        assert_eq!(*map.values(), vec![Arc::new("3".to_owned())]);
        // A new snapshot (after compaction) replaces everything.
        map.apply(Update::Snapshot(Listing {
            kvs: vec![kv("/z", "9")],
            revision: 9,
        }));
        assert_eq!(map.len(), 1);
    }
}

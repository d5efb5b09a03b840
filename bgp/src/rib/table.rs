//! A prefix-keyed map built for a million routes: per address family, the
//! entries live in fixed-size chunks (a slab) and a hash table holds only
//! their 4-byte slot numbers.
//!
//! Why not `HashMap<IpNet, V>`: `IpNet` is 18 bytes (it must fit an IPv6
//! prefix), so an IPv4 entry pays for a 24-byte key; a hash table is at most
//! 7/8 full and often under half full right after growing, and every empty
//! bucket costs a whole entry; and growing allocates the doubled table
//! while the old one is still alive, which is what sets the peak RSS of a
//! full-table load. Here an empty bucket costs 5 bytes (a `u32` slot number
//! and a control byte), entries are packed without gaps in chunks that never
//! move, and growing the index copies 4-byte numbers only.
//!
//! Nothing here panics on any input; slot numbers are internal.

use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::HashTable;
use hashbrown::DefaultHashBuilder;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Entries per chunk: large enough that the chunk list is small, small
/// enough that a tiny table stays tiny.
const CHUNK: usize = 1024;

/// A fixed-size run of slots; `None` is vacant.
type Chunk<K, V> = Box<[Option<(K, V)>]>;

/// One family's map: slab chunks plus a hash index of slot numbers.
#[derive(Debug)]
pub(crate) struct SlabMap<K, V> {
    index: HashTable<u32>,
    chunks: Vec<Chunk<K, V>>,
    /// Vacant slots, reused before the slab grows.
    free: Vec<u32>,
    hasher: DefaultHashBuilder,
}

impl<K, V> Default for SlabMap<K, V> {
    fn default() -> Self {
        Self {
            index: HashTable::new(),
            chunks: Vec::new(),
            free: Vec::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

fn slot_of<K, V>(chunks: &[Chunk<K, V>], id: u32) -> Option<&(K, V)> {
    let id = id as usize;
    chunks.get(id / CHUNK)?.get(id % CHUNK)?.as_ref()
}

fn slot_mut<K, V>(chunks: &mut [Chunk<K, V>], id: u32) -> Option<&mut Option<(K, V)>> {
    let id = id as usize;
    chunks.get_mut(id / CHUNK)?.get_mut(id % CHUNK)
}

impl<K: Hash + Eq + Copy, V> SlabMap<K, V> {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn find(&self, key: &K) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let chunks = &self.chunks;
        self.index
            .find(hash, |&id| {
                slot_of(chunks, id).is_some_and(|(k, _)| k == key)
            })
            .copied()
    }

    fn get(&self, key: &K) -> Option<&V> {
        let id = self.find(key)?;
        slot_of(&self.chunks, id).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let id = self.find(key)?;
        slot_mut(&mut self.chunks, id)?.as_mut().map(|(_, v)| v)
    }

    /// Slot `id` if it still holds `key`, else a lookup.
    fn get_at(&self, key: &K, id: u32) -> Option<&V> {
        match slot_of(&self.chunks, id) {
            Some((k, v)) if k == key => Some(v),
            _ => self.get(key),
        }
    }

    fn get_at_mut(&mut self, key: &K, id: u32) -> Option<&mut V> {
        let hit = matches!(slot_of(&self.chunks, id), Some((k, _)) if k == key);
        let id = if hit { id } else { self.find(key)? };
        slot_mut(&mut self.chunks, id)?.as_mut().map(|(_, v)| v)
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let chunks = &self.chunks;
        let entry = self
            .index
            .find_entry(hash, |&id| {
                slot_of(chunks, id).is_some_and(|(k, _)| k == key)
            })
            .ok()?;
        let (id, _) = entry.remove();
        let (_, value) = slot_mut(&mut self.chunks, id)?.take()?;
        self.free.push(id);
        if self.index.is_empty() {
            // Everything went: give the memory back.
            *self = Self::default();
        }
        Some(value)
    }

    fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> (u32, &mut V) {
        let id = match self.find(&key) {
            Some(id) => id,
            None => {
                let id = match self.free.pop() {
                    Some(id) => id,
                    None => {
                        let next = self.chunks.len() * CHUNK;
                        self.chunks
                            .push(std::iter::repeat_with(|| None).take(CHUNK).collect());
                        // Slot numbers past u32 would need 4 billion routes;
                        // the last one is reused rather than overflowing.
                        let first = u32::try_from(next).unwrap_or(u32::MAX);
                        self.free
                            .extend((first..first.saturating_add(CHUNK as u32)).rev());
                        self.free.pop().unwrap_or(first)
                    }
                };
                if let Some(slot) = slot_mut(&mut self.chunks, id) {
                    *slot = Some((key, make()));
                }
                let hash = self.hasher.hash_one(key);
                let (chunks, hasher) = (&self.chunks, &self.hasher);
                self.index
                    .insert_unique(hash, id, |&id| match slot_of(chunks, id) {
                        Some((k, _)) => hasher.hash_one(k),
                        None => 0,
                    });
                id
            }
        };
        match slot_mut(&mut self.chunks, id).and_then(Option::as_mut) {
            Some((_, v)) => (id, v),
            None => unreachable_slot(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (K, &V)> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter_map(|s| s.as_ref().map(|(k, v)| (*k, v)))
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.chunks
            .iter_mut()
            .flat_map(|c| c.iter_mut())
            .filter_map(|s| s.as_mut().map(|(_, v)| v))
    }
}

#[cold]
fn unreachable_slot() -> ! {
    // The slot was filled just above or found through the index, which only
    // holds filled slots: a bug in this module, not something input causes.
    panic!("prefix table invariant broken: indexed slot is empty")
}

/// Prefix-keyed map: IPv4 under 5-byte keys, IPv6 under 17-byte ones.
#[derive(Debug)]
pub(crate) struct PrefixMap<V> {
    v4: SlabMap<Ipv4Net, V>,
    v6: SlabMap<Ipv6Net, V>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        Self {
            v4: SlabMap::default(),
            v6: SlabMap::default(),
        }
    }
}

impl<V> PrefixMap<V> {
    pub(crate) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get(&self, prefix: &IpNet) -> Option<&V> {
        match prefix {
            IpNet::V4(p) => self.v4.get(p),
            IpNet::V6(p) => self.v6.get(p),
        }
    }

    pub(crate) fn get_mut(&mut self, prefix: &IpNet) -> Option<&mut V> {
        match prefix {
            IpNet::V4(p) => self.v4.get_mut(p),
            IpNet::V6(p) => self.v6.get_mut(p),
        }
    }

    pub(crate) fn remove(&mut self, prefix: &IpNet) -> Option<V> {
        match prefix {
            IpNet::V4(p) => self.v4.remove(p),
            IpNet::V6(p) => self.v6.remove(p),
        }
    }

    pub(crate) fn get_or_insert_with(&mut self, prefix: IpNet, make: impl FnOnce() -> V) -> &mut V {
        self.get_or_insert_slot(prefix, make).1
    }

    /// Like [`Self::get_or_insert_with`], also returning the entry's slot:
    /// a hint that makes later lookups of the same prefix ([`Self::get_at`])
    /// one memory access while the entry stays (a stale hint only costs a
    /// normal lookup).
    pub(crate) fn get_or_insert_slot(
        &mut self,
        prefix: IpNet,
        make: impl FnOnce() -> V,
    ) -> (u32, &mut V) {
        match prefix {
            IpNet::V4(p) => self.v4.get_or_insert_with(p, make),
            IpNet::V6(p) => self.v6.get_or_insert_with(p, make),
        }
    }

    /// The slot of `prefix`, for [`Self::get_at`].
    pub(crate) fn slot(&self, prefix: &IpNet) -> Option<u32> {
        match prefix {
            IpNet::V4(p) => self.v4.find(p),
            IpNet::V6(p) => self.v6.find(p),
        }
    }

    pub(crate) fn get_at(&self, prefix: &IpNet, slot: u32) -> Option<&V> {
        match prefix {
            IpNet::V4(p) => self.v4.get_at(p, slot),
            IpNet::V6(p) => self.v6.get_at(p, slot),
        }
    }

    pub(crate) fn get_at_mut(&mut self, prefix: &IpNet, slot: u32) -> Option<&mut V> {
        match prefix {
            IpNet::V4(p) => self.v4.get_at_mut(p, slot),
            IpNet::V6(p) => self.v6.get_at_mut(p, slot),
        }
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (IpNet, &V)> + '_ {
        self.v4
            .iter()
            .map(|(p, v)| (IpNet::V4(p), v))
            .chain(self.v6.iter().map(|(p, v)| (IpNet::V6(p), v)))
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.v4.values_mut().chain(self.v6.values_mut())
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.iter().map(|(p, _)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(i: u32) -> IpNet {
        IpNet::V4(Ipv4Net::new(std::net::Ipv4Addr::from(i << 8), 24).unwrap())
    }

    #[test]
    fn insert_find_remove_and_reuse_slots() {
        let mut map: PrefixMap<u32> = PrefixMap::default();
        for i in 0..3000 {
            *map.get_or_insert_with(v4(i), || 0) += i;
        }
        let v6: IpNet = "fd00::/64".parse().unwrap();
        *map.get_or_insert_with(v6, || 7) += 1;
        assert_eq!(map.len(), 3001);
        assert_eq!(map.get(&v4(2999)), Some(&2999));
        assert_eq!(map.get(&v6), Some(&8));
        for i in (0..3000).step_by(2) {
            assert_eq!(map.remove(&v4(i)), Some(i));
        }
        assert_eq!(map.remove(&v4(0)), None);
        assert_eq!(map.len(), 1501);
        // Freed slots are reused: the slab does not grow.
        let chunks = map.v4.chunks.len();
        for i in 10_000..11_500 {
            map.get_or_insert_with(v4(i), || i);
        }
        assert_eq!(map.v4.chunks.len(), chunks);
        let mut keys: Vec<IpNet> = map.keys().collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 3001);
        if let Some(v) = map.get_mut(&v4(1)) {
            *v = 100;
        }
        assert_eq!(map.get(&v4(1)), Some(&100));
        for v in map.values_mut() {
            *v = 0;
        }
        assert!(map.iter().all(|(_, v)| *v == 0));
        for key in keys {
            map.remove(&key);
        }
        assert!(map.is_empty());
        assert!(map.v4.chunks.is_empty(), "an empty map holds no memory");
    }
}

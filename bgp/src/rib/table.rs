//! A prefix-keyed map stored as one hash map per address family.
//!
//! Why not `HashMap<IpNet, V>`: `IpNet` is 18 bytes (it must fit an IPv6
//! prefix), which pads every IPv4 entry to 24 bytes of key. Keeping IPv4
//! prefixes under their 5-byte `Ipv4Net` key roughly halves the table cost
//! of an IPv4 route.

use std::collections::hash_map::{self, HashMap};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[derive(Debug, Clone)]
pub(crate) struct PrefixMap<V> {
    v4: HashMap<Ipv4Net, V>,
    v6: HashMap<Ipv6Net, V>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        Self {
            v4: HashMap::new(),
            v6: HashMap::new(),
        }
    }
}

impl<V> PrefixMap<V> {
    pub(crate) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
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
        match prefix {
            IpNet::V4(p) => self.v4.entry(p).or_insert_with(make),
            IpNet::V6(p) => self.v6.entry(p).or_insert_with(make),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (IpNet, &V)> + '_ {
        self.v4
            .iter()
            .map(|(p, v)| (IpNet::V4(*p), v))
            .chain(self.v6.iter().map(|(p, v)| (IpNet::V6(*p), v)))
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.v4.values_mut().chain(self.v6.values_mut())
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.iter().map(|(p, _)| p)
    }
}

impl<V> IntoIterator for PrefixMap<V> {
    type Item = (IpNet, V);
    type IntoIter = std::iter::Chain<
        std::iter::Map<hash_map::IntoIter<Ipv4Net, V>, fn((Ipv4Net, V)) -> (IpNet, V)>,
        std::iter::Map<hash_map::IntoIter<Ipv6Net, V>, fn((Ipv6Net, V)) -> (IpNet, V)>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let v4: fn((Ipv4Net, V)) -> (IpNet, V) = |(p, v)| (IpNet::V4(p), v);
        let v6: fn((Ipv6Net, V)) -> (IpNet, V) = |(p, v)| (IpNet::V6(p), v);
        self.v4
            .into_iter()
            .map(v4)
            .chain(self.v6.into_iter().map(v6))
    }
}

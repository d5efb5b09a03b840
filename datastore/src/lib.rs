//! `brindle-datastore`: where Brindle's state lives and what it looks like.
//!
//! This crate owns the datastore interface and its two backends (etcd v3 for
//! clusters, an embedded file-backed store for one machine), the typed and
//! validated resources (Calico `projectcalico.org/v3` compatible), the label
//! selector language, and IPAM (blocks, affinities, allocations by handle).

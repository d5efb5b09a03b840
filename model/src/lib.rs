//! `brindle-model`: what Brindle's state looks like.
//!
//! This crate owns the typed, validated resources (`IPPool`, `BGPPeer`,
//! `NetworkPolicy`, ... accepted in Calico's `projectcalico.org/v3` YAML as
//! is), their validation, and the label selector language shared by pools,
//! peers and policies. It does no I/O.

pub mod selector;

pub use selector::{Labels, Selector, SelectorError};

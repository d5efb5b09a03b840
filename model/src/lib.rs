//! `brindle-model`: what Brindle's state looks like.
//!
//! This crate owns the typed, validated resources (`IPPool`, `BGPPeer`,
//! `NetworkPolicy`, ... accepted in Calico's `projectcalico.org/v3` YAML as
//! is), their validation, and the label selector language shared by pools,
//! peers and policies. It does no I/O.

pub mod selector;

pub use selector::{Labels, Selector, SelectorError};

pub mod bgp;
pub mod document;
pub mod endpoint;
pub mod ipam;
pub mod meta;
pub mod policy;
pub mod resource;
pub mod validate;

pub use document::{parse_documents, parse_one, DocumentError, ParseErrors};
pub use meta::{ApiVersion, ObjectMeta};
pub use resource::{Kind, Object, Resource};

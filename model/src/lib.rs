//! `brindle-model`: what Brindle's state looks like.
//!
//! This crate owns the typed, validated resources (`IPPool`, `BGPPeer`,
//! `NetworkPolicy`, ... accepted in Calico's `projectcalico.org/v3` YAML as
//! is), their validation, and the label selector language shared by pools,
//! peers and policies. It does no I/O.
//!
//! # Contract
//!
//! - **Reading** ([`parse_documents`]): multi-document YAML, a JSON object,
//!   an array, or a `kind: List`/`<Kind>List`. All-or-nothing: either every
//!   resource, defaulted and valid, or every problem found, each naming its
//!   document, kind, name and field
//!   (`document 3 (IPPool 'pool-a'): spec.blockSize: 33 is out of range 20..32`).
//!   Unknown fields are errors. A document whose fields have the wrong type
//!   reports only that (serde stops there); all semantic checks of all
//!   well-typed documents are reported together.
//! - **apiVersion**: `projectcalico.org/v3` and `brindle.dev/v1` name the same
//!   schema; a resource is written back under the one it was read with.
//! - **Defaults** ([`Resource::defaulted`]) are explicit and idempotent:
//!   IPPool block size 26/122, Never/Never encapsulation, `all()` node
//!   selector, Workload+Tunnel, Automatic; BGPConfiguration `default` mesh on,
//!   AS 64512, port 179; policy `types` from the rules; namespaced kinds
//!   without a namespace go to `default`; IPAMConfiguration
//!   `autoAllocateBlocks: true`.
//! - **Writing** ([`Resource::to_yaml`], [`Resource::to_json`]) omits unset
//!   optional fields, so what comes back is what was applied plus defaults and
//!   store metadata; parse → write → parse is the identity (tested on every
//!   file in `examples/`).
//! - **Identity** ([`Resource::id`]): kind, namespace (namespaced kinds
//!   only) and name; the datastore builds its keys from it
//!   (`brindle_datastore::keys`).
//! - **Selectors** ([`Selector`]): Calico's grammar and semantics; the
//!   canonical text and [`Selector::unique_id`] match Calico's byte for byte.
//!
//! - **Unimplemented fields** ([`Resource::unimplemented_fields`]): what a
//!   resource sets that nothing in Brindle acts on yet, so that writers can
//!   warn about it (or refuse it) instead of accepting it silently.
//!
//! Nothing in this crate panics on any input.

pub mod bgp;
pub mod document;
pub mod endpoint;
pub mod ipam;
pub mod meta;
pub mod policy;
pub mod resource;
pub mod selector;
pub mod status;
pub mod unimplemented;
pub mod validate;

pub use document::{
    parse_documents, parse_documents_against, parse_one, parse_stored, DocumentError, ParseErrors,
};
pub use meta::{ApiVersion, ObjectMeta};
pub use resource::{Kind, Object, Resource};
pub use selector::{Labels, Selector, SelectorError};
pub use validate::FieldError;

//! `brindle-policy`: the policy engine.
//!
//! This crate owns the translation of networks (profiles), policies and
//! endpoints into iptables chains and ipsets, and their programming:
//!
//! - [`ir`]: the compiler's input, a normalised model; [`from_model`] builds it
//!   from the stored resources with Calico's meaning (namespaces, defaults);
//! - [`mod@compile`]: the pure compiler, model in, one [`ruleset::Ruleset`] per IP
//!   family out (tested with golden files: `BRINDLE_UPDATE_GOLDEN=1`
//!   regenerates them);
//! - [`ruleset`]: that output as plain data (chains, ipsets, hooks), which
//!   `render`, `names` and `apply` use without depending on the compiler;
//! - [`render`]: `iptables-restore` / `ipset restore` text and parsers for what
//!   `iptables-save` / `ipset save` print;
//! - [`apply`]: the applier, which diffs the desired rulesets against what the
//!   kernel holds and writes only what changed (`iptables-restore --noflush`,
//!   ipset add/del or build-and-swap), behind a small [`apply::Backend`] trait;
//! - [`system`]: that trait's one real implementation, [`system::SystemBackend`]
//!   (iptables-nft or -legacy tools and libipset), re-exported from [`apply`].
//!
//! Nothing whose name does not start with `brindle` is ever modified, except
//! the single hook rule Brindle inserts at the top of `FORWARD`, `INPUT`,
//! `OUTPUT` and nat `POSTROUTING`.

pub mod apply;
pub mod compile;
pub mod from_model;
pub mod index;
pub mod ir;
pub mod names;
pub mod render;
pub mod ruleset;
pub mod system;

pub use compile::{compile, compile_with, Config, Family, Ruleset};
pub use index::SelectorIndex;
pub use ir::PolicyModel;

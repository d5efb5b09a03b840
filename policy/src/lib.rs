//! `brindle-policy`: the policy engine.
//!
//! This crate owns the translation of networks (profiles), policies and
//! endpoints into iptables chains and ipsets (a pure compiler, tested with
//! golden files) and the applier that programs them through
//! `iptables-restore --noflush` and `ipset`.

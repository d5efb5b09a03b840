//! The applier: makes the kernel hold the compiled rulesets, writing only
//! what changed.
//!
//! [`plan`] is pure: desired rulesets and the last known kernel state in, the
//! text to feed `ipset restore` (before), `iptables-restore --noflush` (per
//! family and table) and `ipset restore` (after) out. Sets are created and
//! filled before any rule refers to them and destroyed only after the rules
//! that referred to them are gone. A membership change is an `add`/`del`;
//! a large one is built under a temporary name and swapped in atomically.
//!
//! [`Applier`] runs a plan through a [`Backend`], remembers what it wrote, and
//! on [`Applier::resync`] forgets what it believes and re-reads the kernel,
//! which repairs drift (rules deleted or added by hand inside Brindle's
//! chains, missing hooks, sets changed behind its back). With
//! [`Applier::verify`] it also reads back the chains each write touched.
//! The real backend lives in [`crate::system`] and is re-exported here.
//!
//! Cost on the hot path (a policy change rewrites one chain): one
//! `iptables-restore` per family and table that changed, returning as soon as
//! the kernel committed (see [`SystemBackend`]'s restore: on iptables-nft the
//! tool's exit waits out an RCU grace period, which is left to run in the
//! background), and no read-back of the ruleset. Nothing here panics on
//! kernel input; tool failures are [`ApplyError`]s and leave the applier
//! re-reading the kernel on its next apply.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::render::{
    hook_spec, ipset_create, parse_ipset_save, parse_iptables_save, rule_hashes, write_chain_rules,
    ObservedSet, ObservedTable,
};
use crate::ruleset::{Family, IpSet, Ruleset, HOOKS};
pub use crate::system::{IptablesFlavor, SystemBackend};

/// Tables Brindle writes.
pub const TABLES: [&str; 2] = ["filter", "nat"];

/// Above this many member changes in one set (and more than half the set),
/// the set is rebuilt and swapped instead of edited in place.
const REBUILD_THRESHOLD: usize = 512;

/// Read-back after a write lists the written chains one by one up to this
/// many, and reads the whole table beyond.
pub const VERIFY_CHAINS_MAX: usize = 4;

/// Name of the scratch set used for build-and-swap.
const TEMP_SET: &str = "brindle-tmp";

/// Errors from programming the kernel.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A tool could not be started.
    #[error("could not run {command}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{command} failed: {stderr}")]
    Command {
        /// The command.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// libipset refused the restore input.
    #[error("ipset restore failed: {0}")]
    Ipset(String),
    /// The tables read back after a write do not hold what was written.
    #[error("after writing, {family:?} {table} still differs in chains {chains:?}")]
    Drift {
        /// Family.
        family: Family,
        /// Table.
        table: String,
        /// Chains that differ.
        chains: Vec<String>,
    },
}

/// The kernel-facing operations the applier needs. One real implementation,
/// [`SystemBackend`]; the logic above it is tested purely.
pub trait Backend {
    /// `iptables-save -t <table>` (or `ip6tables-save`).
    fn iptables_save(&mut self, family: Family, table: &str) -> Result<String, ApplyError>;
    /// `iptables -t <table> -S <chain>` (or `ip6tables`): the chain's
    /// declaration and rules, `None` when the chain does not exist.
    fn iptables_list_chain(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<Option<String>, ApplyError>;
    /// `iptables-restore --noflush` (or `ip6tables-restore`) with `input`;
    /// returns once the kernel has committed (or refused) it.
    fn iptables_restore(&mut self, family: Family, input: &str) -> Result<(), ApplyError>;
    /// Waits until the kernel has released what earlier restores replaced
    /// (rules deleted on iptables-nft are freed after an RCU grace period,
    /// and until then still hold references to the ipsets they matched).
    fn settle(&mut self) -> Result<(), ApplyError>;
    /// `ipset save` (all sets).
    fn ipset_save(&mut self) -> Result<String, ApplyError>;
    /// `ipset restore` of `input`.
    fn ipset_restore(&mut self, input: &str) -> Result<(), ApplyError>;
}

/// What Brindle owns in the kernel, as last read or written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    /// Per (family, table).
    pub tables: BTreeMap<(Family, String), ObservedTable>,
    /// Brindle's ipsets.
    pub sets: BTreeMap<String, ObservedSet>,
}

impl KernelState {
    /// What the kernel holds once `desired` has been written.
    pub fn of(desired: &[Ruleset]) -> KernelState {
        let mut state = KernelState::default();
        for rs in desired {
            for (table, chains) in [("filter", &rs.filter), ("nat", &rs.nat)] {
                let observed = ObservedTable {
                    chains: chains
                        .iter()
                        .map(|(c, rules)| {
                            let hashes = rule_hashes(c, rules).into_iter().map(Some).collect();
                            (c.clone(), hashes)
                        })
                        .collect(),
                    hooks: hooks_of(table),
                };
                state
                    .tables
                    .insert((rs.family, table.to_string()), observed);
            }
            for (name, set) in &rs.ipsets {
                state
                    .sets
                    .insert(name.clone(), observed_set(set, rs.family));
            }
        }
        state
    }
}

/// What one apply will write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `ipset restore` input run before the rules (creates, adds, dels, swaps).
    pub ipset_before: String,
    /// `iptables-restore --noflush` input per (family, table), only where
    /// something changed.
    pub iptables: Vec<TableWrite>,
    /// `ipset restore` input run after the rules (destroys).
    pub ipset_after: String,
    /// Counts, for logs and benchmarks.
    pub stats: PlanStats,
}

/// One `iptables-restore --noflush` call of a plan: one family, one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableWrite {
    /// The family (`iptables` or `ip6tables`).
    pub family: Family,
    /// The table.
    pub table: String,
    /// The restore input.
    pub text: String,
    /// Chains (re)written, with the hashes of their rules.
    pub written: BTreeMap<String, Vec<String>>,
    /// Chains deleted.
    pub removed: Vec<String>,
    /// Whether hook rules in built-in chains were inserted or deleted.
    pub hooks: bool,
}

/// Counts of a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanStats {
    /// Chains rewritten or created.
    pub chains_written: usize,
    /// Chains deleted.
    pub chains_deleted: usize,
    /// Set members added.
    pub members_added: usize,
    /// Set members removed.
    pub members_removed: usize,
    /// Sets created, rebuilt or destroyed.
    pub sets_replaced: usize,
}

impl Plan {
    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ipset_before.is_empty() && self.iptables.is_empty() && self.ipset_after.is_empty()
    }
}

/// Computes the writes that take the kernel from `known` to `desired`.
///
/// Compares desired rules with what is known by their chained hashes and
/// set members as they are (the compiler spells them as `ipset save` does),
/// without building a second copy of the desired state.
pub fn plan(desired: &[Ruleset], known: &KernelState) -> Plan {
    let mut plan = Plan::default();
    for rs in desired {
        for (name, set) in &rs.ipsets {
            let type_name = set.kind.type_name();
            let family = rs.family.ipset_family();
            match known.sets.get(name) {
                None => {
                    plan.stats.sets_replaced += 1;
                    let _ = writeln!(
                        plan.ipset_before,
                        "{}",
                        ipset_create(name, set.kind, rs.family)
                    );
                    for m in &set.members {
                        let _ = writeln!(plan.ipset_before, "add {name} {m}");
                    }
                }
                Some(have) => {
                    if have.members == set.members
                        && have.type_name == type_name
                        && have.family == family
                    {
                        continue;
                    }
                    let adds: Vec<&String> = set.members.difference(&have.members).collect();
                    let dels: Vec<&String> = have.members.difference(&set.members).collect();
                    let changes = adds.len() + dels.len();
                    let retype = have.type_name != type_name || have.family != family;
                    if retype || (changes > REBUILD_THRESHOLD && changes * 2 > set.members.len()) {
                        plan.stats.sets_replaced += 1;
                        let out = &mut plan.ipset_before;
                        let _ = writeln!(out, "{}", ipset_create(TEMP_SET, set.kind, rs.family));
                        for m in &set.members {
                            let _ = writeln!(out, "add {TEMP_SET} {m}");
                        }
                        let _ = writeln!(out, "swap {TEMP_SET} {name}");
                        let _ = writeln!(out, "destroy {TEMP_SET}");
                    } else {
                        plan.stats.members_added += adds.len();
                        plan.stats.members_removed += dels.len();
                        for m in adds {
                            let _ = writeln!(plan.ipset_before, "add -exist {name} {m}");
                        }
                        for m in dels {
                            let _ = writeln!(plan.ipset_before, "del -exist {name} {m}");
                        }
                    }
                }
            }
        }

        for (table, chains) in [("filter", &rs.filter), ("nat", &rs.nat)] {
            let key = (rs.family, table.to_string());
            let empty = ObservedTable::default();
            let have = known.tables.get(&key).unwrap_or(&empty);
            let mut written: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (c, rules) in chains {
                let hashes = rule_hashes(c, rules);
                let same = have.chains.get(c).is_some_and(|h| {
                    h.len() == hashes.len()
                        && h.iter().zip(&hashes).all(|(a, b)| a.as_ref() == Some(b))
                });
                if !same {
                    written.insert(c.clone(), hashes);
                }
            }
            let removed: Vec<String> = have
                .chains
                .keys()
                .filter(|c| !chains.contains_key(*c))
                .cloned()
                .collect();
            let mut hook_lines = Vec::new();
            for (_, builtin, hook_target) in HOOKS.iter().filter(|h| h.0 == table) {
                let present = have
                    .hooks
                    .iter()
                    .filter(|(b, t)| b == builtin && t == hook_target)
                    .count();
                if present == 0 {
                    hook_lines.push(format!("-I {builtin} 1 {}", hook_spec(hook_target)));
                }
                for _ in 1..present.max(1) {
                    hook_lines.push(format!("-D {builtin} {}", hook_spec(hook_target)));
                }
            }
            let hooks_written = !hook_lines.is_empty();
            if written.is_empty() && removed.is_empty() && !hooks_written {
                continue;
            }
            plan.stats.chains_written += written.len();
            plan.stats.chains_deleted += removed.len();
            let mut text = format!("*{table}\n");
            for c in written.keys().chain(&removed) {
                let _ = writeln!(text, ":{c} - [0:0]");
                let _ = writeln!(text, "-F {c}");
            }
            for c in written.keys() {
                write_chain_rules(&mut text, c, &chains[c]);
            }
            for line in hook_lines {
                let _ = writeln!(text, "{line}");
            }
            for c in &removed {
                let _ = writeln!(text, "-X {c}");
            }
            text.push_str("COMMIT\n");
            plan.iptables.push(TableWrite {
                family: rs.family,
                table: table.to_string(),
                text,
                written,
                removed,
                hooks: hooks_written,
            });
        }
    }

    let wanted: BTreeSet<&String> = desired.iter().flat_map(|rs| rs.ipsets.keys()).collect();
    for name in known.sets.keys() {
        if !wanted.contains(name) {
            plan.stats.sets_replaced += 1;
            let _ = writeln!(plan.ipset_after, "flush {name}");
            let _ = writeln!(plan.ipset_after, "destroy {name}");
        }
    }
    plan
}

impl KernelState {
    /// Records that `plan` (computed for `desired`) was written.
    fn record(&mut self, plan: &Plan, desired: &[Ruleset]) {
        for write in &plan.iptables {
            let table = self
                .tables
                .entry((write.family, write.table.clone()))
                .or_default();
            for (chain, hashes) in &write.written {
                let hashes = hashes.iter().cloned().map(Some).collect();
                table.chains.insert(chain.clone(), hashes);
            }
            for chain in &write.removed {
                table.chains.remove(chain);
            }
            if write.hooks {
                table.hooks = hooks_of(&write.table);
            }
        }
        let mut wanted = BTreeSet::new();
        for rs in desired {
            for (name, set) in &rs.ipsets {
                wanted.insert(name);
                let observed = observed_set(set, rs.family);
                if self.sets.get(name) != Some(&observed) {
                    self.sets.insert(name.clone(), observed);
                }
            }
        }
        self.sets.retain(|name, _| wanted.contains(name));
    }
}

fn hooks_of(table: &str) -> Vec<(String, String)> {
    HOOKS
        .iter()
        .filter(|h| h.0 == table)
        .map(|h| (h.1.to_string(), h.2.to_string()))
        .collect()
}

fn observed_set(set: &IpSet, family: Family) -> ObservedSet {
    ObservedSet {
        type_name: set.kind.type_name().to_string(),
        family: family.ipset_family().to_string(),
        members: set.members.clone(),
    }
}

/// The `iptables-restore` input that removes everything Brindle owns from
/// one table, hooks first.
pub fn uninstall_text(table: &str, have: &ObservedTable) -> Option<String> {
    if have.chains.is_empty() && have.hooks.is_empty() {
        return None;
    }
    let mut text = format!("*{table}\n");
    for (builtin, target) in &have.hooks {
        let _ = writeln!(text, "-D {builtin} {}", hook_spec(target));
    }
    for c in have.chains.keys() {
        let _ = writeln!(text, ":{c} - [0:0]\n-F {c}");
    }
    for c in have.chains.keys() {
        let _ = writeln!(text, "-X {c}");
    }
    text.push_str("COMMIT\n");
    Some(text)
}

/// Keeps the kernel in line with the desired rulesets.
pub struct Applier<B: Backend> {
    backend: B,
    known: Option<KernelState>,
    /// Read back the chains each iptables write touched and check them.
    ///
    /// Off by default: `iptables-restore` commits a table atomically and
    /// reports failure, so the read-back only catches what the periodic
    /// [`Applier::resync`] repairs anyway, and on iptables-nft it costs an
    /// RCU grace period (the listing process's netlink socket waits, on
    /// close, for the kernel to free the rules the write replaced).
    pub verify: bool,
}

impl<B: Backend> Applier<B> {
    /// An applier that reads the kernel on its first apply.
    pub fn new(backend: B) -> Self {
        Applier {
            backend,
            known: None,
            verify: false,
        }
    }

    /// The backend (e.g. to inspect the kernel in tests).
    pub fn backend(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Reads Brindle's tables and sets from the kernel.
    pub fn read_kernel(&mut self) -> Result<KernelState, ApplyError> {
        let mut state = KernelState::default();
        for family in Family::ALL {
            for table in TABLES {
                let text = self.backend.iptables_save(family, table)?;
                state
                    .tables
                    .insert((family, table.to_string()), parse_iptables_save(&text));
            }
        }
        state.sets = parse_ipset_save(&self.backend.ipset_save()?);
        Ok(state)
    }

    /// Writes what differs between `desired` and what Brindle last wrote
    /// (or, the first time, what the kernel holds).
    pub fn apply(&mut self, desired: &[Ruleset]) -> Result<PlanStats, ApplyError> {
        let known = match self.known.take() {
            Some(k) => k,
            None => self.read_kernel()?,
        };
        let plan = plan(desired, &known);
        if plan.is_empty() {
            self.known = Some(known);
            return Ok(plan.stats);
        }
        // Until the write is confirmed, `known` stays unset, so a failure
        // makes the next apply re-read the kernel.
        self.execute(&plan)?;
        let mut known = known;
        known.record(&plan, desired);
        if self.verify {
            for write in &plan.iptables {
                self.verify_write(write, &known)?;
            }
        }
        self.known = Some(known);
        Ok(plan.stats)
    }

    /// Reads back what one restore wrote and compares it with `want`.
    ///
    /// Only the chains the write touched are listed (`iptables -S <chain>`,
    /// which makes iptables-nft fetch just that chain), so the check costs
    /// the same whatever the size of the ruleset; a write that touched the
    /// hooks or more than [`VERIFY_CHAINS_MAX`] chains reads the whole table.
    fn verify_write(&mut self, write: &TableWrite, want: &KernelState) -> Result<(), ApplyError> {
        let key = (write.family, write.table.clone());
        let empty = ObservedTable::default();
        let expected = want.tables.get(&key).unwrap_or(&empty);
        let touched = write.written.len() + write.removed.len();
        let (got, checked): (ObservedTable, Vec<String>) = if write.hooks
            || touched > VERIFY_CHAINS_MAX
        {
            let got = parse_iptables_save(&self.backend.iptables_save(write.family, &write.table)?);
            let all: BTreeSet<String> = expected
                .chains
                .keys()
                .chain(got.chains.keys())
                .cloned()
                .collect();
            (got, all.into_iter().collect())
        } else {
            let mut got = ObservedTable::default();
            for chain in write.written.keys().chain(&write.removed) {
                let listed = self
                    .backend
                    .iptables_list_chain(write.family, &write.table, chain)?;
                if let Some(text) = listed {
                    got.chains.extend(parse_iptables_save(&text).chains);
                }
            }
            let touched = write
                .written
                .keys()
                .chain(&write.removed)
                .cloned()
                .collect();
            (got, touched)
        };
        let chains: Vec<String> = checked
            .into_iter()
            .filter(|c| got.chains.get(c) != expected.chains.get(c))
            .collect();
        if chains.is_empty() {
            Ok(())
        } else {
            Err(ApplyError::Drift {
                family: write.family,
                table: write.table.clone(),
                chains,
            })
        }
    }

    /// Forgets what Brindle believes the kernel holds, re-reads it and
    /// repairs any difference.
    pub fn resync(&mut self, desired: &[Ruleset]) -> Result<PlanStats, ApplyError> {
        self.known = None;
        self.apply(desired)
    }

    /// Removes every hook, chain and set Brindle installed.
    pub fn uninstall(&mut self) -> Result<(), ApplyError> {
        self.known = None;
        let state = self.read_kernel()?;
        for ((family, table), have) in &state.tables {
            if let Some(text) = uninstall_text(table, have) {
                self.backend.iptables_restore(*family, &text)?;
            }
        }
        let mut text = String::new();
        for name in state.sets.keys() {
            let _ = writeln!(text, "flush {name}\ndestroy {name}");
        }
        if !text.is_empty() {
            self.backend.settle()?;
            self.backend.ipset_restore(&text)?;
        }
        Ok(())
    }

    fn execute(&mut self, plan: &Plan) -> Result<(), ApplyError> {
        if !plan.ipset_before.is_empty() {
            self.backend.ipset_restore(&plan.ipset_before)?;
        }
        for write in &plan.iptables {
            self.backend.iptables_restore(write.family, &write.text)?;
        }
        if !plan.ipset_after.is_empty() {
            // The sets destroyed here were matched by rules the restores
            // above replaced; they can go once those rules are freed.
            self.backend.settle()?;
            self.backend.ipset_restore(&plan.ipset_after)?;
        }
        Ok(())
    }
}

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
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};

use crate::render::{
    hook_spec, ipset_create, parse_ipset_save, parse_iptables_save, rule_hashes, write_chain_rules,
    ObservedSet, ObservedTable,
};
use crate::ruleset::{Family, IpSet, Ruleset, HOOKS};

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

/// Which iptables implementation to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesFlavor {
    /// `iptables-nft-*` (nf_tables kernel API).
    Nft,
    /// `iptables-legacy-*` (x_tables).
    Legacy,
}

impl IptablesFlavor {
    /// The tool for a family and verb (`save` or `restore`).
    pub fn tool(self, family: Family, verb: &str) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let flavor = match self {
            IptablesFlavor::Nft => "nft",
            IptablesFlavor::Legacy => "legacy",
        };
        format!("{base}-{flavor}-{verb}")
    }

    /// The rule-editing command of a family (`iptables-nft`, `ip6tables-legacy`).
    pub fn command(self, family: Family) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let flavor = match self {
            IptablesFlavor::Nft => "nft",
            IptablesFlavor::Legacy => "legacy",
        };
        format!("{base}-{flavor}")
    }

    /// Picks the flavor the host already uses, as Felix does: legacy when
    /// the legacy tables hold more rules than the nft ones, else nft.
    pub fn detect() -> IptablesFlavor {
        let count = |flavor: IptablesFlavor| {
            Command::new(flavor.tool(Family::V4, "save"))
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter(|l| l.starts_with("-A"))
                        .count()
                })
                .unwrap_or(0)
        };
        if count(IptablesFlavor::Legacy) > count(IptablesFlavor::Nft) {
            IptablesFlavor::Legacy
        } else {
            IptablesFlavor::Nft
        }
    }
}

/// The real backend: iptables' save/restore tools and libipset, acting in the
/// network namespace of the calling thread.
#[derive(Debug)]
pub struct SystemBackend {
    /// Which iptables.
    pub flavor: IptablesFlavor,
    /// Restores that committed and are still exiting (see
    /// [`restore_until_committed`]).
    exiting: Vec<Child>,
}

impl SystemBackend {
    /// A backend for the given flavor.
    pub fn new(flavor: IptablesFlavor) -> Self {
        SystemBackend {
            flavor,
            exiting: Vec::new(),
        }
    }

    fn reap_exited(&mut self) {
        self.exiting
            .retain_mut(|child| matches!(child.try_wait(), Ok(None)));
    }
}

impl Drop for SystemBackend {
    fn drop(&mut self) {
        for mut child in self.exiting.drain(..) {
            let _ = child.wait();
        }
    }
}

fn run(command: &str, args: &[&str], input: Option<&str>) -> Result<String, ApplyError> {
    let spawn_err = |source| ApplyError::Spawn {
        command: command.to_string(),
        source,
    };
    let mut child = Command::new(command)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(ApplyError::Command {
            command: format!("{command} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `iptables-restore --noflush` and returns as soon as its outcome is
/// known, without waiting for the process to exit.
///
/// Why: after a commit that deleted rules, the kernel frees them after an RCU
/// grace period, and closing the restore's netlink socket waits for that
/// (`nft_rcv_nl_event` flushes `nf_tables_destroy_list`): 10-20 ms that made a
/// one-chain change on iptables-nft cost ~25 ms end to end. The input gets one
/// extra line, a `COMMIT` outside any table, which iptables-restore rejects
/// with `line <N> failed` only after every table before it was committed;
/// seeing that message on stderr means everything before it landed. Any
/// other outcome (an earlier line failing, the process dying) is reported
/// from its exit status and stderr as before. A process still exiting is
/// returned, for [`Backend::settle`] to wait on when that matters.
fn restore_until_committed(tool: &str, input: &str) -> Result<Option<Child>, ApplyError> {
    let args = ["--noflush", "--wait"];
    let spawn_err = |source| ApplyError::Spawn {
        command: tool.to_string(),
        source,
    };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let sentinel_line = input.lines().count() + 1;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means the tool exited early; its status says why.
        let _ = stdin.write_all(input.as_bytes()).and_then(|()| {
            let sep = if input.ends_with('\n') { "" } else { "\n" };
            stdin.write_all(format!("{sep}COMMIT\n").as_bytes())
        });
    }
    let mut stderr = String::new();
    if let Some(pipe) = child.stderr.take() {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            if blames_line(&line, sentinel_line) {
                return Ok(Some(child));
            }
            stderr.push_str(&line);
            line.clear();
        }
    }
    let status = child.wait().map_err(spawn_err)?;
    // Success means a tool that ignored the stray COMMIT; an error blamed on
    // it (worded another way) means the same: everything before it landed.
    if status.success() || stderr.lines().any(|l| blames_line(l, sentinel_line)) {
        return Ok(None);
    }
    Err(ApplyError::Command {
        command: format!("{tool} {}", args.join(" ")),
        stderr: stderr.trim().to_string(),
    })
}

/// Whether an `iptables-restore` error line blames input line `n`: the
/// `<tool>: line <n> failed[: why]` form, or `Error occurred at line: <n>`.
fn blames_line(stderr_line: &str, n: usize) -> bool {
    let text = stderr_line.trim_end();
    let failed = format!("line {n} failed");
    let at_line = format!("Error occurred at line: {n}");
    text.ends_with(&at_line)
        || text
            .find(&failed)
            .map(|at| &text[at + failed.len()..])
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
            && text.contains(": line ")
}

impl Backend for SystemBackend {
    fn iptables_save(&mut self, family: Family, table: &str) -> Result<String, ApplyError> {
        run(&self.flavor.tool(family, "save"), &["-t", table], None)
    }

    fn iptables_list_chain(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<Option<String>, ApplyError> {
        let command = self.flavor.command(family);
        match run(&command, &["--wait", "-t", table, "-S", chain], None) {
            Ok(text) => Ok(Some(text)),
            // legacy says "No chain/target/match by that name"; iptables-nft
            // 1.8.9 calls a chain it cannot find "incompatible".
            Err(ApplyError::Command { stderr, .. })
                if stderr.contains("No chain") || stderr.contains("is incompatible") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn iptables_restore(&mut self, family: Family, input: &str) -> Result<(), ApplyError> {
        self.reap_exited();
        let exiting = restore_until_committed(&self.flavor.tool(family, "restore"), input)?;
        self.exiting.extend(exiting);
        Ok(())
    }

    fn settle(&mut self) -> Result<(), ApplyError> {
        for mut child in self.exiting.drain(..) {
            // Its outcome is already known; this only waits for the exit.
            let _ = child.wait();
        }
        Ok(())
    }

    fn ipset_save(&mut self) -> Result<String, ApplyError> {
        run("ipset", &["save"], None)
    }

    fn ipset_restore(&mut self, input: &str) -> Result<(), ApplyError> {
        self.reap_exited();
        // In-process through libipset: no fork on the hot path of a
        // membership change.
        let mut file = tempfile::NamedTempFile::new()
            .map_err(|e| ApplyError::Ipset(format!("temporary file: {e}")))?;
        file.write_all(input.as_bytes())
            .map_err(|e| ApplyError::Ipset(format!("temporary file: {e}")))?;
        let path = file.path().to_string_lossy().into_owned();
        let session = ipset::IPSet::new();
        let result = session
            .restore(path)
            .map_err(|e| ApplyError::Ipset(format!("{e:?}")));
        // Closing the session's netlink socket waits while rules an earlier
        // iptables-nft commit replaced are still being freed (an RCU grace
        // period, see `restore_until_committed`); close it off this thread.
        let closing = ClosingSession(session);
        if let Err(e) = std::thread::Builder::new()
            .name("brindle-ipset-close".into())
            .spawn(move || closing.close())
        {
            tracing::debug!("closing the ipset session inline: {e}");
        }
        result
    }
}

/// A libipset session on its way to being closed on another thread.
struct ClosingSession(ipset::IPSet);

// SAFETY: the session is only moved, never shared: the receiving thread's
// one action is `ipset_fini` (through `Drop`), which frees the session's
// own memory and closes its socket. libipset keeps no per-thread state, and
// the process-wide type list it loads is not touched by `ipset_fini`.
unsafe impl Send for ClosingSession {}

impl ClosingSession {
    fn close(self) {
        drop(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::blames_line;

    #[test]
    fn sentinel_errors_are_recognised_and_others_are_not() {
        // What iptables 1.8.9 prints for a COMMIT outside a table (nft and
        // legacy), and the other wording iptables-restore uses.
        assert!(blames_line("iptables-nft-restore: line 7 failed\n", 7));
        assert!(blames_line("iptables-restore: line 5 failed", 5));
        assert!(blames_line(
            "ip6tables-nft-restore: line 12 failed: Bad COMMIT",
            12
        ));
        assert!(blames_line("Error occurred at line: 9", 9));
        // An earlier line failing is a real failure.
        assert!(!blames_line(
            "iptables-nft-restore: line 6 failed: No such file",
            7
        ));
        assert!(!blames_line("iptables-nft-restore: line 17 failed", 7));
        assert!(!blames_line("Error occurred at line: 4", 5));
        assert!(!blames_line("Error occurred at line: 45", 4));
    }
}

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
//! [`Applier`] runs a plan through a [`Backend`], remembers what it wrote, reads
//! the tables back after a write to check it landed, and on
//! [`Applier::resync`] forgets what it believes and re-reads the kernel, which
//! repairs drift (rules deleted or added by hand inside Brindle's chains,
//! missing hooks, sets changed behind its back).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::compile::{Family, Ruleset, HOOKS};
use crate::render::{
    hook_spec, ipset_create, parse_ipset_save, parse_iptables_save, rule_hashes, write_chain_rules,
    ObservedSet, ObservedTable,
};

/// Tables Brindle writes.
pub const TABLES: [&str; 2] = ["filter", "nat"];

/// Above this many member changes in one set (and more than half the set),
/// the set is rebuilt and swapped instead of edited in place.
const REBUILD_THRESHOLD: usize = 512;

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
    /// `iptables-restore --noflush` (or `ip6tables-restore`) with `input`.
    fn iptables_restore(&mut self, family: Family, input: &str) -> Result<(), ApplyError>;
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
                    hooks: HOOKS
                        .iter()
                        .filter(|h| h.0 == table)
                        .map(|h| (h.1.to_string(), h.2.to_string()))
                        .collect(),
                };
                state
                    .tables
                    .insert((rs.family, table.to_string()), observed);
            }
            for (name, set) in &rs.ipsets {
                state.sets.insert(
                    name.clone(),
                    ObservedSet {
                        type_name: set.kind.type_name().to_string(),
                        family: rs.family.ipset_family().to_string(),
                        members: set.saved_members(),
                    },
                );
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
    pub iptables: Vec<(Family, String, String)>,
    /// `ipset restore` input run after the rules (destroys).
    pub ipset_after: String,
    /// Counts, for logs and benchmarks.
    pub stats: PlanStats,
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
pub fn plan(desired: &[Ruleset], known: &KernelState) -> Plan {
    let mut plan = Plan::default();
    let want = KernelState::of(desired);

    for rs in desired {
        for (name, set) in &rs.ipsets {
            let target = &want.sets[name];
            match known.sets.get(name) {
                None => {
                    plan.stats.sets_replaced += 1;
                    let _ = writeln!(
                        plan.ipset_before,
                        "{}",
                        ipset_create(name, set.kind, rs.family)
                    );
                    for m in &target.members {
                        let _ = writeln!(plan.ipset_before, "add {name} {m}");
                    }
                }
                Some(have) => {
                    let adds: Vec<&String> = target.members.difference(&have.members).collect();
                    let dels: Vec<&String> = have.members.difference(&target.members).collect();
                    let changes = adds.len() + dels.len();
                    let retype = have.type_name != target.type_name || have.family != target.family;
                    if retype || (changes > REBUILD_THRESHOLD && changes * 2 > target.members.len())
                    {
                        plan.stats.sets_replaced += 1;
                        let out = &mut plan.ipset_before;
                        let _ = writeln!(out, "{}", ipset_create(TEMP_SET, set.kind, rs.family));
                        for m in &target.members {
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
            let target = &want.tables[&key];
            let changed: Vec<&String> = chains
                .keys()
                .filter(|c| have.chains.get(*c) != target.chains.get(*c))
                .collect();
            let removed: Vec<&String> = have
                .chains
                .keys()
                .filter(|c| !chains.contains_key(*c))
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
            if changed.is_empty() && removed.is_empty() && hook_lines.is_empty() {
                continue;
            }
            plan.stats.chains_written += changed.len();
            plan.stats.chains_deleted += removed.len();
            let mut text = format!("*{table}\n");
            for c in changed.iter().chain(&removed) {
                let _ = writeln!(text, ":{c} - [0:0]");
                let _ = writeln!(text, "-F {c}");
            }
            for c in &changed {
                write_chain_rules(&mut text, c, &chains[*c]);
            }
            for line in hook_lines {
                let _ = writeln!(text, "{line}");
            }
            for c in &removed {
                let _ = writeln!(text, "-X {c}");
            }
            text.push_str("COMMIT\n");
            plan.iptables.push((rs.family, table.to_string(), text));
        }
    }

    for name in known.sets.keys() {
        if !want.sets.contains_key(name) {
            plan.stats.sets_replaced += 1;
            let _ = writeln!(plan.ipset_after, "flush {name}");
            let _ = writeln!(plan.ipset_after, "destroy {name}");
        }
    }
    plan
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
    /// Read the tables back after each iptables write and check them.
    pub verify: bool,
}

impl<B: Backend> Applier<B> {
    /// An applier that reads the kernel on its first apply.
    pub fn new(backend: B) -> Self {
        Applier {
            backend,
            known: None,
            verify: true,
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
        let want = KernelState::of(desired);
        if self.verify && !plan.iptables.is_empty() {
            for (family, table, _) in &plan.iptables {
                let text = self.backend.iptables_save(*family, table)?;
                let got = parse_iptables_save(&text);
                let key = (*family, table.clone());
                let expected = &want.tables[&key];
                if got.chains != expected.chains {
                    let chains = expected
                        .chains
                        .iter()
                        .filter(|(c, h)| got.chains.get(*c) != Some(h))
                        .map(|(c, _)| c.clone())
                        .collect();
                    return Err(ApplyError::Drift {
                        family: *family,
                        table: table.clone(),
                        chains,
                    });
                }
            }
        }
        self.known = Some(want);
        Ok(plan.stats)
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
            self.backend.ipset_restore(&text)?;
        }
        Ok(())
    }

    fn execute(&mut self, plan: &Plan) -> Result<(), ApplyError> {
        if !plan.ipset_before.is_empty() {
            self.backend.ipset_restore(&plan.ipset_before)?;
        }
        for (family, _, text) in &plan.iptables {
            self.backend.iptables_restore(*family, text)?;
        }
        if !plan.ipset_after.is_empty() {
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
#[derive(Debug, Clone)]
pub struct SystemBackend {
    /// Which iptables.
    pub flavor: IptablesFlavor,
}

impl SystemBackend {
    /// A backend for the given flavor.
    pub fn new(flavor: IptablesFlavor) -> Self {
        SystemBackend { flavor }
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

impl Backend for SystemBackend {
    fn iptables_save(&mut self, family: Family, table: &str) -> Result<String, ApplyError> {
        run(&self.flavor.tool(family, "save"), &["-t", table], None)
    }

    fn iptables_restore(&mut self, family: Family, input: &str) -> Result<(), ApplyError> {
        let tool = self.flavor.tool(family, "restore");
        run(&tool, &["--noflush", "--wait"], Some(input)).map(|_| ())
    }

    fn ipset_save(&mut self) -> Result<String, ApplyError> {
        run("ipset", &["save"], None)
    }

    fn ipset_restore(&mut self, input: &str) -> Result<(), ApplyError> {
        // In-process through libipset: no fork on the hot path of a
        // membership change.
        let mut file = tempfile::NamedTempFile::new()
            .map_err(|e| ApplyError::Ipset(format!("temporary file: {e}")))?;
        file.write_all(input.as_bytes())
            .map_err(|e| ApplyError::Ipset(format!("temporary file: {e}")))?;
        let path = file.path().to_string_lossy().into_owned();
        ipset::IPSet::new()
            .restore(path)
            .map_err(|e| ApplyError::Ipset(format!("{e:?}")))
    }
}

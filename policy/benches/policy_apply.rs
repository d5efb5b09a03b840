//! Policy programming at scale, on the real kernel, inside a throwaway
//! network namespace: 1,000 endpoints, 200 policies, 20 networks on one
//! node; nft and legacy iptables side by side in one run.
//!
//! Measures the full sync from nothing, then p50/p99 over repeated single
//! changes (a new endpoint, a relabel, a policy change), each being compile +
//! plan + write, and the resulting rule count. Needs root.
//!
//! `cargo bench -p brindle-policy --bench policy_apply` prints a Markdown
//! table for docs/benchmarks.md.

use std::collections::BTreeMap;
use std::fs::File;
use std::process::Command;
use std::time::{Duration, Instant};

use brindle_model::selector::Selector;
use brindle_policy::apply::{Applier, ApplyError, Backend, IptablesFlavor, SystemBackend};
use brindle_policy::compile::Family;
use brindle_policy::compile::{compile, compile_with, Config};
use brindle_policy::ir::{Action, WorkloadEndpoint};
use brindle_policy::ir::{EntityMatch, Policy, PolicyModel, PortRange, Protocol, Rule};
use brindle_policy::SelectorIndex;

const ENDPOINTS: usize = 1000;
const POLICIES: usize = 200;
const NETWORKS: usize = 20;
const ROUNDS: usize = 60;

fn endpoint(i: usize) -> WorkloadEndpoint {
    let labels = BTreeMap::from([
        ("app".to_string(), format!("app{}", i % 50)),
        ("tier".to_string(), ["web", "api", "db"][i % 3].to_string()),
        ("env".to_string(), ["prod", "dev"][i % 2].to_string()),
    ]);
    WorkloadEndpoint {
        name: format!("wl{i}"),
        interface: format!("cali{i:011x}"),
        addrs: vec![
            format!("10.{}.{}.{}/32", 64 + i / 65536, (i / 256) % 256, i % 256)
                .parse()
                .unwrap(),
        ],
        labels,
        profiles: vec![format!("net{}", i % NETWORKS)],
    }
}

fn policy(i: usize, port: u16) -> Policy {
    let sel = |s: &str| Selector::parse(s).unwrap();
    Policy {
        name: format!("policy-{i}"),
        order: Some((i % 10) as f64),
        selector: sel(&format!("app == 'app{}'", i % 50)),
        ingress: Some(vec![Rule {
            protocol: Some(Protocol::Tcp),
            source: EntityMatch {
                selector: Some(sel(&format!(
                    "tier == '{}' && env == 'prod'",
                    ["web", "api"][i % 2]
                ))),
                ..EntityMatch::default()
            },
            destination: EntityMatch {
                ports: vec![PortRange {
                    first: port,
                    last: port,
                }],
                ..EntityMatch::default()
            },
            ..Rule::allow()
        }]),
        egress: (i % 4 == 0).then(|| {
            vec![Rule {
                action: Action::Deny,
                destination: EntityMatch {
                    nets: vec!["192.0.2.0/24".parse().unwrap()],
                    ..EntityMatch::default()
                },
                ..Rule::allow()
            }]
        }),
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Time spent in each kind of kernel call since the last [`Timed::take`].
#[derive(Debug, Clone, Copy, Default)]
struct Phases {
    compile: Duration,
    ipset: Duration,
    restore: Duration,
    read_back: Duration,
}

/// The real backend, timing each call by kind.
struct Timed {
    inner: SystemBackend,
    phases: Phases,
}

impl Timed {
    fn take(&mut self) -> Phases {
        std::mem::take(&mut self.phases)
    }
}

fn clock<T>(slot: &mut Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    *slot += t.elapsed();
    out
}

impl Backend for Timed {
    fn iptables_save(&mut self, family: Family, table: &str) -> Result<String, ApplyError> {
        clock(&mut self.phases.read_back, || {
            self.inner.iptables_save(family, table)
        })
    }
    fn iptables_list_chain(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<Option<String>, ApplyError> {
        clock(&mut self.phases.read_back, || {
            self.inner.iptables_list_chain(family, table, chain)
        })
    }
    fn iptables_restore(&mut self, family: Family, input: &str) -> Result<(), ApplyError> {
        clock(&mut self.phases.restore, || {
            self.inner.iptables_restore(family, input)
        })
    }
    fn settle(&mut self) -> Result<(), ApplyError> {
        clock(&mut self.phases.restore, || self.inner.settle())
    }
    fn ipset_save(&mut self) -> Result<String, ApplyError> {
        clock(&mut self.phases.read_back, || self.inner.ipset_save())
    }
    fn ipset_restore(&mut self, input: &str) -> Result<(), ApplyError> {
        clock(&mut self.phases.ipset, || self.inner.ipset_restore(input))
    }
}

/// Medians of each phase over a list of changes.
fn median_phases(samples: &[Phases]) -> Phases {
    let median = |f: fn(&Phases) -> Duration| {
        let mut v: Vec<Duration> = samples.iter().map(f).collect();
        percentile(&mut v, 0.5)
    };
    Phases {
        compile: median(|p| p.compile),
        ipset: median(|p| p.ipset),
        restore: median(|p| p.restore),
        read_back: median(|p| p.read_back),
    }
}

struct Row {
    flavor: IptablesFlavor,
    compile: Duration,
    full: Duration,
    add: (Duration, Duration),
    relabel: (Duration, Duration),
    policy: (Duration, Duration),
    rules: usize,
    sets: usize,
    /// Median of each phase, per kind of change (add, relabel, policy).
    phases: [Phases; 3],
}

fn run(flavor: IptablesFlavor) -> Row {
    let ns = format!("brbench{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap();
    assert!(ok.success(), "ip netns add (needs root)");
    let _cleanup = Cleanup(ns.clone());
    let file = File::open(format!("/run/netns/{ns}")).unwrap();
    let row = std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            measure(flavor)
        })
        .join()
        .unwrap()
    });
    row
}

fn measure(flavor: IptablesFlavor) -> Row {
    let config = Config::default();
    let mut model = PolicyModel {
        endpoints: (0..ENDPOINTS).map(endpoint).collect(),
        policies: (0..POLICIES).map(|i| policy(i, 8000)).collect(),
        ..PolicyModel::default()
    };
    let t = Instant::now();
    let rulesets = compile(&model, &config);
    let compile_time = t.elapsed();
    let rules = rulesets.iter().map(|r| r.rule_count()).sum();
    let sets = rulesets.iter().map(|r| r.ipsets.len()).sum();

    // As the node runs it (read-back after each write included).
    let mut applier = Applier::new(Timed {
        inner: SystemBackend::new(flavor),
        phases: Phases::default(),
    });
    // As the node runs it: one selector index kept across compiles.
    let mut index = SelectorIndex::default();
    let t = Instant::now();
    applier
        .apply(&compile_with(&model, &config, &mut index))
        .unwrap();
    let full = t.elapsed();

    let mut phases: [Vec<Phases>; 3] = Default::default();
    let mut timed = |kind: usize, model: &PolicyModel, applier: &mut Applier<Timed>| {
        applier.backend().take();
        let t = Instant::now();
        let rulesets = compile_with(model, &config, &mut index);
        let compiled = t.elapsed();
        applier.apply(&rulesets).unwrap();
        let total = t.elapsed();
        let mut p = applier.backend().take();
        p.compile = compiled;
        phases[kind].push(p);
        total
    };
    let (mut add, mut relabel, mut pol) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        model.endpoints.push(endpoint(ENDPOINTS + round));
        add.push(timed(0, &model, &mut applier));
        let e = &mut model.endpoints[round * 7 % ENDPOINTS];
        let env = if e.labels["env"] == "prod" {
            "dev"
        } else {
            "prod"
        };
        e.labels.insert("env".into(), env.into());
        relabel.push(timed(1, &model, &mut applier));
        let i = round * 13 % POLICIES;
        model.policies[i] = policy(i, 9000 + round as u16);
        pol.push(timed(2, &model, &mut applier));
    }
    applier.uninstall().unwrap();
    let p = |v: &mut Vec<Duration>| (percentile(v, 0.5), percentile(v, 0.99));
    Row {
        flavor,
        compile: compile_time,
        full,
        add: p(&mut add),
        relabel: p(&mut relabel),
        policy: p(&mut pol),
        rules,
        sets,
        phases: [0, 1, 2].map(|k| median_phases(&phases[k])),
    }
}

struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn main() {
    let rows: Vec<Row> = [IptablesFlavor::Nft, IptablesFlavor::Legacy]
        .into_iter()
        .map(run)
        .collect();
    println!(
        "{ENDPOINTS} endpoints, {POLICIES} policies, {NETWORKS} networks, {ROUNDS} rounds of each change\n"
    );
    println!("| backend | compile (pure) | full sync from nothing | new endpoint p50 / p99 | relabel p50 / p99 | policy change p50 / p99 | rules (v4+v6) | ipsets |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {:?} | {} | {} | {} / {} | {} / {} | {} / {} | {} | {} |",
            r.flavor,
            ms(r.compile),
            ms(r.full),
            ms(r.add.0),
            ms(r.add.1),
            ms(r.relabel.0),
            ms(r.relabel.1),
            ms(r.policy.0),
            ms(r.policy.1),
            r.rules,
            r.sets
        );
    }
    println!("\nWhere the time goes (median per change):\n");
    println!("| backend | change | compile | ipset | iptables-restore | read-back |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        for (kind, p) in ["new endpoint", "relabel", "policy change"]
            .iter()
            .zip(&r.phases)
        {
            println!(
                "| {:?} | {kind} | {} | {} | {} | {} |",
                r.flavor,
                ms(p.compile),
                ms(p.ipset),
                ms(p.restore),
                ms(p.read_back)
            );
        }
    }
}

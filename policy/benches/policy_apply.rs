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
use brindle_policy::apply::{Applier, IptablesFlavor, SystemBackend};
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

struct Row {
    flavor: IptablesFlavor,
    compile: Duration,
    full: Duration,
    add: (Duration, Duration),
    relabel: (Duration, Duration),
    policy: (Duration, Duration),
    rules: usize,
    sets: usize,
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

    let mut applier = Applier::new(SystemBackend::new(flavor));
    applier.verify = false;
    // As the node runs it: one selector index kept across compiles.
    let mut index = SelectorIndex::default();
    let t = Instant::now();
    applier
        .apply(&compile_with(&model, &config, &mut index))
        .unwrap();
    let full = t.elapsed();

    let mut timed = |model: &PolicyModel, applier: &mut Applier<SystemBackend>| {
        let t = Instant::now();
        applier
            .apply(&compile_with(model, &config, &mut index))
            .unwrap();
        t.elapsed()
    };
    let (mut add, mut relabel, mut pol) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        model.endpoints.push(endpoint(ENDPOINTS + round));
        add.push(timed(&model, &mut applier));
        let e = &mut model.endpoints[round * 7 % ENDPOINTS];
        let env = if e.labels["env"] == "prod" {
            "dev"
        } else {
            "prod"
        };
        e.labels.insert("env".into(), env.into());
        relabel.push(timed(&model, &mut applier));
        let i = round * 13 % POLICIES;
        model.policies[i] = policy(i, 9000 + round as u16);
        pol.push(timed(&model, &mut applier));
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
    for r in rows {
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
}

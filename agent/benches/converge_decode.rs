//! What one converge of brindle-node costs before policy is compiled: the
//! cluster view, the desired state and the resources handed to the policy
//! task, at 1,000 workload endpoints, 200 global policies, 20 profiles, 10
//! nodes and 20 blocks. Two ways side by side in one run:
//!
//! - re-decode: every document parsed again on every converge, twice (the
//!   cluster view and the policy resources) — what the node did before the
//!   decoded mirror;
//! - decoded once: each document parsed when it arrives
//!   (`node::cache::Decoded`), a converge only reads the decoded values.
//!
//! Each round first changes one endpoint (a watch event), as a converge
//! follows a change. Pure, no root needed:
//!
//! ```text
//! cargo bench -p brindle-agent --bench converge_decode
//! BRINDLE_BENCH_ENDPOINTS=10000 BRINDLE_BENCH_POLICIES=1000 cargo bench -p brindle-agent --bench converge_decode
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use brindle_agent::node::cache::{decode_resource, Decoded};
use brindle_agent::node::cluster::{decode_block_info, ClusterState, NodeInfos};
use brindle_agent::node::desired::{desired_state, Inputs};
use brindle_agent::node::policy::PolicyResources;
use brindle_datastore::{Event, EventKind, KeyValue, Listing, Update};
use brindle_model::{parse_one, Resource};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stored(yaml: &str) -> KeyValue {
    let r: Resource = parse_one(yaml).expect("bench resource");
    KeyValue {
        key: brindle_datastore::keys::key_of(&r).into_bytes(),
        value: serde_json::to_vec(&r).unwrap(),
        create_revision: 1,
        mod_revision: 1,
        version: 1,
    }
}

fn endpoint(i: usize, nodes: usize, app: &str) -> KeyValue {
    let node = format!("node-{}", i % nodes);
    stored(&format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {node}-cni-c{i}-eth0\n  \
         namespace: default\n  labels:\n    app: {app}\n    tier: t{t}\nspec:\n  node: {node}\n  orchestrator: cni\n  \
         workload: c{i}\n  containerID: c{i}\n  endpoint: eth0\n  interfaceName: cali{i:011}\n  \
         ipNetworks: [\"10.{a}.{b}.{c}/32\"]\n  profiles: [net{p}]\n",
        t = i % 7,
        a = 60 + i / 65_536,
        b = (i / 256) % 256,
        c = i % 256,
        p = i % 20,
    ))
}

fn cluster_kvs(endpoints: usize, policies: usize, nodes: usize) -> (Vec<KeyValue>, Vec<KeyValue>) {
    let mut kvs = Vec::new();
    for n in 0..nodes {
        kvs.push(stored(&format!(
            "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: node-{n}\nspec:\n  bgp:\n    \
             ipv4Address: 10.0.0.{}/24\n",
            n + 1
        )));
    }
    kvs.push(stored(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: pool\nspec:\n  cidr: 10.60.0.0/14\n",
    ));
    for p in 0..20 {
        kvs.push(stored(&format!(
            "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: net{p}\nspec: {{}}\n"
        )));
    }
    for i in 0..policies {
        kvs.push(stored(&format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p{i}\nspec:\n  \
             order: {i}\n  selector: app == 'a{i}'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    \
             source:\n      selector: tier == 't{t}'\n    destination:\n      ports: [{port}]\n",
            t = i % 7,
            port = 1000 + i
        )));
    }
    for i in 0..endpoints {
        kvs.push(endpoint(i, nodes, &format!("a{}", i % policies.max(1))));
    }
    // One /26 block per node, its first addresses allocated.
    let mut blocks = Vec::new();
    for n in 0..nodes.min(20) {
        let cidr = format!("10.{}.{}.0/26", 60 + n / 256, n % 256);
        let net: ipnet::IpNet = cidr.parse().unwrap();
        let mut block =
            brindle_datastore::ipam::AllocationBlock::new(net, Some(format!("host:node-{n}")));
        for host in net.hosts().take(8) {
            let attr = brindle_datastore::ipam::AllocationAttribute {
                handle_id: Some(format!("net.{host}")),
                secondary: BTreeMap::from([("node".to_owned(), format!("node-{n}"))]),
            };
            block.assign(host, attr).expect("a free address");
        }
        blocks.push(KeyValue {
            key: brindle_datastore::keys::block_key(&net).into_bytes(),
            value: serde_json::to_vec(&block).unwrap(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        });
    }
    (kvs, blocks)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "| {name} | {:.2} ms | {:.2} ms | {:.2} ms |",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.iter().sum::<Duration>().as_secs_f64() * 1e3 / times.len() as f64,
    );
}

fn main() {
    let endpoints = env_usize("BRINDLE_BENCH_ENDPOINTS", 1000);
    let policies = env_usize("BRINDLE_BENCH_POLICIES", 200);
    let rounds = env_usize("BRINDLE_BENCH_ROUNDS", 50);
    let nodes = 10;
    let (kvs, block_kvs) = cluster_kvs(endpoints, policies, nodes);
    let learned = BTreeMap::new();
    println!(
        "converge at {endpoints} endpoints, {policies} policies, {nodes} nodes, {} blocks; {rounds} rounds",
        block_kvs.len()
    );
    println!("| path | p50 | p99 | mean |\n|---|---|---|---|");

    // Re-decode: a raw mirror, everything parsed on each converge.
    let mut raw: BTreeMap<Vec<u8>, KeyValue> =
        kvs.iter().map(|kv| (kv.key.clone(), kv.clone())).collect();
    let mut times = Vec::new();
    for round in 0..rounds {
        let changed = endpoint(round % endpoints, nodes, "changed");
        raw.insert(changed.key.clone(), changed);
        let start = Instant::now();
        let cluster = ClusterState::decode(raw.values(), &block_kvs);
        let desired = desired_state(Inputs {
            node: "node-0",
            cluster: &cluster,
            learned: &learned,
        });
        let policy = PolicyResources::decode(raw.values());
        times.push(start.elapsed());
        assert!(!desired.routes.is_empty() && policy.workload_endpoints.len() == endpoints);
    }
    report("re-decode every document (before)", times);

    // Decoded once: the mirror decodes the change as it arrives.
    let mut resources = Decoded::new(decode_resource);
    resources.apply(Update::Snapshot(Listing {
        kvs: kvs.clone(),
        revision: 1,
    }));
    let blocks = Decoded::from_kvs(decode_block_info, &block_kvs);
    let mut node_infos = NodeInfos::default();
    let mut times = Vec::new();
    for round in 0..rounds {
        let changed = endpoint(round % endpoints, nodes, "changed");
        let start = Instant::now();
        resources.apply(Update::Event(Event {
            kind: EventKind::Put,
            kv: changed,
        }));
        let cluster =
            ClusterState::from_decoded(resources.entries(), blocks.entries(), &mut node_infos);
        let desired = desired_state(Inputs {
            node: "node-0",
            cluster: &cluster,
            learned: &learned,
        });
        let policy = PolicyResources::from_decoded(&resources.values());
        times.push(start.elapsed());
        assert!(!desired.routes.is_empty() && policy.workload_endpoints.len() == endpoints);
    }
    report("decoded once, on arrival (after)", times);
}

//! `compile_with` (reusing a selector index across compiles) gives exactly
//! what `compile` from scratch gives, through a sequence of the changes the
//! agent sees: relabels, endpoints added and removed, policies changed.

use std::collections::BTreeMap;

use brindle_policy::compile::{compile, compile_with, Config};
use brindle_policy::ir::{PolicyModel, WorkloadEndpoint};
use brindle_policy::SelectorIndex;

fn endpoint(i: usize, role: &str) -> WorkloadEndpoint {
    WorkloadEndpoint {
        name: format!("wl{i}"),
        interface: format!("cali{i:011x}"),
        addrs: vec![format!("10.66.{}.{}/32", i / 250, i % 250 + 1)
            .parse()
            .unwrap()],
        labels: BTreeMap::from([("app".into(), "web".into()), ("role".into(), role.into())]),
        profiles: vec![format!("net{}", i % 3)],
    }
}

#[test]
fn incremental_compile_equals_compile_from_scratch() {
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/03-rule-features.yaml");
    let mut model: PolicyModel =
        serde_yaml_ng::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    model.remote_endpoints = (0..40)
        .map(|i| endpoint(i, ["front", "back", "db"][i % 3]))
        .collect();
    let config = Config::default();
    let mut index = SelectorIndex::default();
    let mut check = |model: &PolicyModel, step: &str| {
        assert_eq!(
            compile_with(model, &config, &mut index),
            compile(model, &config),
            "after {step}"
        );
    };
    check(&model, "the first compile");
    model.remote_endpoints[3]
        .labels
        .insert("tier".into(), "db".into());
    check(&model, "a relabel into a selector");
    model.endpoints[0]
        .labels
        .insert("quarantine".into(), "1".into());
    check(&model, "a local relabel");
    model.remote_endpoints.push(endpoint(99, "back"));
    check(&model, "an endpoint added");
    model.remote_endpoints.remove(5);
    check(&model, "an endpoint removed");
    model.policies[1].selector = brindle_model::selector::Selector::parse("has(app)").unwrap();
    check(&model, "a policy selector changed");
    model.policies.pop();
    check(&model, "a policy removed");
    model.endpoints[0].profiles = vec!["net1".into()];
    check(&model, "a network change");
    check(&model, "nothing changed");
}

//! Golden-file tests of the policy compiler: each `golden/<case>.yaml` is a
//! [`PolicyModel`]; `golden/<case>.expected` holds the ipset and
//! iptables-restore text it compiles to, for both families.
//!
//! `BRINDLE_UPDATE_GOLDEN=1 cargo nextest run -p brindle-policy` rewrites the
//! expected files; review the diff before committing it.

use std::path::Path;

use brindle_policy::compile::{compile, Config};
use brindle_policy::render::{full_ipset_restore, full_restore};
use brindle_policy::PolicyModel;

fn render_case(model: &PolicyModel) -> String {
    let mut out = String::new();
    for ruleset in compile(model, &Config::default()) {
        let v = ruleset.family.version();
        out.push_str(&format!("### IPv{v} ipset restore\n"));
        out.push_str(&full_ipset_restore(&ruleset));
        out.push_str(&format!("### IPv{v} iptables-restore --noflush\n"));
        out.push_str(&full_restore(&ruleset));
    }
    out
}

#[test]
fn golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("BRINDLE_UPDATE_GOLDEN").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases in {}", dir.display());
    let mut failures = Vec::new();
    for case in cases {
        let text = std::fs::read_to_string(&case).unwrap();
        let model: PolicyModel =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let got = render_case(&model);
        let expected_path = case.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{} differs from {} (BRINDLE_UPDATE_GOLDEN=1 regenerates):\n{got}",
                case.display(),
                expected_path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The same, from Calico v3 YAML through `from_model`, seen from `node1`.
#[test]
fn golden_files_from_calico_yaml() {
    use brindle_model::Resource;
    use brindle_policy::from_model::{policy_model, ClusterView};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-calico");
    let update = std::env::var_os("BRINDLE_UPDATE_GOLDEN").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in cases {
        let text = std::fs::read_to_string(&case).unwrap();
        let docs = brindle_model::parse_documents(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let (mut weps, mut heps, mut nps, mut gnps, mut profiles, mut pools) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for doc in docs {
            match doc {
                Resource::WorkloadEndpoint(r) => weps.push(r),
                Resource::HostEndpoint(r) => heps.push(r),
                Resource::NetworkPolicy(r) => nps.push(r),
                Resource::GlobalNetworkPolicy(r) => gnps.push(r),
                Resource::Profile(r) => profiles.push(r),
                Resource::IPPool(r) => pools.push(r),
                _ => {}
            }
        }
        let model = policy_model(&ClusterView {
            node: "node1",
            workload_endpoints: &weps,
            host_endpoints: &heps,
            network_policies: &nps,
            global_network_policies: &gnps,
            profiles: &profiles,
            pools: &pools,
        });
        let got = render_case(&model);
        let expected_path = case.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        assert_eq!(
            got,
            expected,
            "{} differs (BRINDLE_UPDATE_GOLDEN=1 regenerates)",
            case.display()
        );
    }
}

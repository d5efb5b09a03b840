//! Every file under `examples/` parses, validates, and survives a round trip
//! through both output formats (parse → write → parse gives the same
//! resources). Every document under `model/tests/invalid/` is rejected with
//! exactly the message in its `.expected` golden file; run with
//! `BRINDLE_UPDATE_GOLDEN=1` to rewrite the golden files after an intended
//! change in wording.

use std::fs;
use std::path::{Path, PathBuf};

use brindle_model::resource::{to_json_list, to_yaml_documents};
use brindle_model::{parse_documents, Kind, Resource};

fn files_in(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    files.sort();
    files
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn every_example_parses_and_round_trips() {
    let files = files_in(&examples_dir(), &["yaml", "yml", "json"]);
    assert!(
        files.len() >= 12,
        "expected the example set, found {files:?}"
    );
    let mut kinds_seen = std::collections::BTreeSet::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let parsed = parse_documents(&text)
            .unwrap_or_else(|e| panic!("{} should be valid:\n{e}", file.display()));
        assert!(!parsed.is_empty(), "{} holds no resources", file.display());
        kinds_seen.extend(parsed.iter().map(Resource::kind));

        let yaml = to_yaml_documents(&parsed);
        let from_yaml = parse_documents(&yaml)
            .unwrap_or_else(|e| panic!("{} re-read from YAML:\n{e}\n{yaml}", file.display()));
        assert_eq!(
            from_yaml,
            parsed,
            "{} YAML round trip:\n{yaml}",
            file.display()
        );

        let json = to_json_list(&parsed);
        let from_json = parse_documents(&json)
            .unwrap_or_else(|e| panic!("{} re-read from JSON:\n{e}\n{json}", file.display()));
        assert_eq!(
            from_json,
            parsed,
            "{} JSON round trip:\n{json}",
            file.display()
        );

        // Writing is stable: a second write gives the same text.
        assert_eq!(to_yaml_documents(&from_yaml), yaml, "{}", file.display());
    }
    for kind in Kind::ALL {
        assert!(kinds_seen.contains(&kind), "no example of {kind}");
    }
}

#[test]
fn applied_fields_come_back_as_written_plus_defaults() {
    let text = fs::read_to_string(examples_dir().join("ippool.yaml")).unwrap();
    let parsed = parse_documents(&text).unwrap();
    assert_eq!(
        parsed[0].to_yaml(),
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: my.ippool-1
spec:
  cidr: 10.1.0.0/16
  vxlanMode: Never
  ipipMode: CrossSubnet
  natOutgoing: true
  blockSize: 26
  nodeSelector: all()
  allowedUses:
  - Workload
  - Tunnel
  assignmentMode: Automatic
"
    );
    let setup = fs::read_to_string(examples_dir().join("network-setup.yaml")).unwrap();
    let parsed = parse_documents(&setup).unwrap();
    let profile = parsed.iter().find(|r| r.kind() == Kind::Profile).unwrap();
    assert!(profile
        .to_yaml()
        .starts_with("apiVersion: brindle.dev/v1\nkind: Profile\n"));
}

#[test]
fn invalid_documents_give_the_golden_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let update = std::env::var_os("BRINDLE_UPDATE_GOLDEN").is_some();
    let files = files_in(&dir, &["yaml", "json"]);
    assert!(
        files.len() >= 15,
        "expected the invalid set, found {files:?}"
    );
    let mut mismatches = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let got = match parse_documents(&text) {
            Ok(parsed) => panic!("{} should be rejected, parsed {parsed:?}", file.display()),
            Err(errors) => format!("{errors}\n"),
        };
        let golden = file.with_extension("expected");
        if update {
            fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!(
                "{} is missing; run with BRINDLE_UPDATE_GOLDEN=1 to create it",
                golden.display()
            )
        });
        if got != want {
            mismatches.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                file.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatches (BRINDLE_UPDATE_GOLDEN=1 regenerates):\n{}",
        mismatches.join("\n")
    );
}

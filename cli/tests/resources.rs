//! `brindlectl` end to end: the real binary against a real embedded store
//! (SQLite file in a temp dir) and a real etcd, each test on both.
//!
//! - every file in `examples/` applies unchanged and `get -o yaml` gives it
//!   back (plus the store's resourceVersion/uid/creationTimestamp);
//! - every invalid document in `model/tests/invalid/` fails with exactly its
//!   golden error lines, exit status 1, and nothing written;
//! - create/replace/apply/delete semantics, resourceVersion CAS, atomic
//!   multi-document writes, stdin input, namespaces.

mod common;

use brindle_model::{parse_documents, parse_one, Kind, Resource};
use common::{files_in, pool, repo_root, temp_file, without_store_metadata, Store, POOL_A};

/// Runs `$name(&Store)` once against each backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn embedded() {
                super::$name(&super::Store::embedded());
            }
            #[test]
            fn etcd() {
                super::$name(&super::Store::etcd());
            }
        }
    )*};
}

on_both_backends!(
    examples_apply_unchanged_and_come_back,
    invalid_documents_fail_with_their_errors_and_write_nothing,
    pools_are_checked_against_stored_pools,
    create_replace_delete_semantics,
    multi_document_writes_are_atomic,
    stdin_and_namespaces,
    too_large_inputs_are_refused_whole,
    unimplemented_fields_are_warned_about_or_refused,
);

fn get_args(r: &Resource) -> Vec<String> {
    let mut args = vec!["get".to_string(), r.kind().plural().into(), r.name().into()];
    if let Some(ns) = r.namespace() {
        args.extend(["-n".into(), ns.into()]);
    }
    args.extend(["-o".into(), "yaml".into()]);
    args
}

fn get_one(store: &Store, r: &Resource) -> Resource {
    let args = get_args(r);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let yaml = store.ok(&args);
    parse_one(&yaml).unwrap_or_else(|e| panic!("get {args:?} gave unreadable YAML: {e}\n{yaml}"))
}

fn examples_apply_unchanged_and_come_back(store: &Store) {
    let files = files_in(&repo_root().join("examples"), &["yaml", "yml", "json"]);
    assert!(
        files.len() >= 12,
        "expected the example set, found {files:?}"
    );
    let mut kinds = std::collections::BTreeSet::new();
    for file in files {
        let path = file.display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let applied = parse_documents(&text).unwrap();
        let out = store.ok(&["apply", "-f", &path]);
        assert!(out.starts_with("Successfully applied "), "{out}");
        for expected in applied {
            kinds.insert(expected.kind());
            let got = get_one(store, &expected);
            let meta = got.metadata();
            assert!(
                meta.resource_version
                    .as_deref()
                    .is_some_and(|v| v.parse::<i64>().is_ok()),
                "{path}: {meta:?}"
            );
            assert!(
                meta.uid.as_deref().is_some_and(|u| u.len() == 36),
                "{meta:?}"
            );
            assert!(
                meta.creation_timestamp
                    .as_deref()
                    .is_some_and(|t| t.ends_with('Z')),
                "{meta:?}"
            );
            assert_eq!(without_store_metadata(got), expected, "{path}");
        }
    }
    for kind in Kind::ALL {
        assert!(kinds.contains(&kind), "no example of {kind} was applied");
    }
    // Whatever `get -o yaml` prints applies again unchanged (its
    // resourceVersions are current, so the compare-and-swap passes) and
    // changes nothing but the revisions.
    let before = store.everything();
    for kind in Kind::ALL {
        let yaml = store.ok(&["get", kind.plural(), "-A", "-o", "yaml"]);
        if parse_documents(&yaml).unwrap().is_empty() {
            continue;
        }
        let (_dir, path) = temp_file("again.yaml", &yaml);
        store.ok(&["apply", "-f", &path]);
    }
    let after = store.everything();
    assert_eq!(
        after
            .into_iter()
            .map(without_store_metadata)
            .collect::<Vec<_>>(),
        before
            .into_iter()
            .map(without_store_metadata)
            .collect::<Vec<_>>()
    );
}

fn invalid_documents_fail_with_their_errors_and_write_nothing(store: &Store) {
    let (_dir, baseline) = temp_file("baseline.yaml", &pool("baseline", "10.250.0.0/16"));
    store.ok(&["apply", "-f", &baseline]);
    let before = store.everything();
    let invalid = files_in(&repo_root().join("model/tests/invalid"), &["yaml"]);
    assert!(!invalid.is_empty());
    for file in invalid {
        let path = file.display().to_string();
        let expected_lines: Vec<String> = std::fs::read_to_string(file.with_extension("expected"))
            .unwrap()
            .lines()
            .map(|l| format!("error: {path}: {l}"))
            .collect();
        for verb in ["apply", "create", "replace"] {
            let out = store.run(&[verb, "-f", &path]);
            assert_eq!(out.code, 1, "{verb} {path}: {out:?}");
            assert_eq!(out.stdout, "", "{verb} {path}");
            let got: Vec<&str> = out.stderr.lines().collect();
            assert_eq!(got, expected_lines, "{verb} {path}");
        }
        assert_eq!(store.everything(), before, "{path} wrote something");
    }
}

fn pools_are_checked_against_stored_pools(store: &Store) {
    let (_dir, a) = temp_file("a.yaml", POOL_A);
    store.ok(&["create", "-f", &a]);
    let before = store.everything();

    // A new pool overlapping the stored one, next to a valid document.
    let text = format!(
        "{}---\n{}",
        pool("fine", "10.60.0.0/16"),
        pool("inside-a", "10.50.128.0/20")
    );
    let (_dir2, overlap) = temp_file("overlap.yaml", &text);
    let out = store.run(&["apply", "-f", &overlap]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "error: {overlap}: document 2 (IPPool 'inside-a'): spec.cidr: 10.50.128.0/20 overlaps existing IPPool 'pool-a' (10.50.0.0/16)\n"
        )
    );
    // A stored pool's CIDR is immutable.
    let (_dir3, moved) = temp_file("moved.yaml", &pool("pool-a", "10.70.0.0/16"));
    let out = store.run(&["apply", "-f", &moved]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("document 1 (IPPool 'pool-a'): spec.cidr: the CIDR of an existing pool cannot change (10.50.0.0/16 -> 10.70.0.0/16)"),
        "{}",
        out.stderr
    );
    assert_eq!(store.everything(), before);

    // Replacing the overlapping pool in the same apply is fine: the new
    // set is checked, not the old one.
    let text = format!(
        "{}---\n{}",
        POOL_A.replace(
            "cidr: 10.50.0.0/16",
            "cidr: 10.50.0.0/16\n  natOutgoing: true"
        ),
        pool("beside-a", "10.51.0.0/16")
    );
    let (_dir4, ok) = temp_file("ok.yaml", &text);
    store.ok(&["apply", "-f", &ok]);
    assert_eq!(store.everything().len(), 2);
}

fn create_replace_delete_semantics(store: &Store) {
    let (_dir, a) = temp_file("a.yaml", POOL_A);
    assert_eq!(
        store.ok(&["create", "-f", &a]),
        "Successfully created 1 'IPPool' resource(s)\n"
    );
    let out = store.run(&["create", "-f", &a]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: {a}: document 1 (IPPool 'pool-a'): already exists (use apply or replace to change it)\n"
        )
    );

    let (_dir, b) = temp_file("b.yaml", &pool("pool-b", "10.60.0.0/16"));
    let out = store.run(&["replace", "-f", &b]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: {b}: document 1 (IPPool 'pool-b'): does not exist (use create or apply to make it)\n"
        )
    );
    assert!(store.run(&["get", "ippool", "pool-b"]).code == 1);

    // replace honours resourceVersion: current passes, stale is refused.
    let current = store.ok(&["get", "ippool", "pool-a", "-o", "yaml"]);
    let version = parse_one(&current)
        .unwrap()
        .metadata()
        .resource_version
        .clone()
        .unwrap();
    let changed = current.replace("natOutgoing: false", "natOutgoing: true");
    let changed = if changed == current {
        current.replace("spec:\n", "spec:\n  natOutgoing: true\n")
    } else {
        changed
    };
    let (_dir, c) = temp_file("changed.yaml", &changed);
    assert_eq!(
        store.ok(&["replace", "-f", &c]),
        "Successfully replaced 1 'IPPool' resource(s)\n"
    );
    let out = store.run(&["replace", "-f", &c]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with(&format!(
            "error: {c}: document 1 (IPPool 'pool-a'): resourceVersion {version} is out of date"
        )),
        "{}",
        out.stderr
    );
    let now = parse_one(&store.ok(&["get", "ippool", "pool-a", "-o", "yaml"])).unwrap();
    let Resource::IPPool(p) = &now else { panic!() };
    assert!(p.spec.nat_outgoing);
    // Identity survives a replace.
    assert_eq!(
        now.metadata().uid,
        parse_one(&current).unwrap().metadata().uid
    );
    // apply without a resourceVersion just overwrites.
    assert_eq!(
        store.ok(&["apply", "-f", &a]),
        "Successfully applied 1 'IPPool' resource(s)\n"
    );

    // get: table by default, one named resource, or a clear miss.
    assert_eq!(
        store.ok(&["get", "ippools"]),
        "NAME     CIDR           SELECTOR\npool-a   10.50.0.0/16   all()\n"
    );
    let out = store.run(&["get", "IPPool", "nope"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "error: IPPool 'nope' not found\n")
    );

    // delete by kind and name, then by file.
    assert_eq!(
        store.ok(&["delete", "pool", "pool-a"]),
        "Successfully deleted 1 'IPPool' resource(s)\n"
    );
    let out = store.run(&["delete", "ippool", "pool-a"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "error: IPPool 'pool-a': does not exist\n")
    );
    assert_eq!(
        store.ok(&["delete", "ippool", "pool-a", "--skip-not-exists"]),
        "Nothing to delete\n"
    );
    store.ok(&["create", "-f", &a]);
    store.ok(&["create", "-f", &b]);
    let (_dir, both) = temp_file(
        "both.yaml",
        &format!("{POOL_A}---\n{}", pool("pool-b", "10.60.0.0/16")),
    );
    assert_eq!(
        store.ok(&["delete", "-f", &both]),
        "Successfully deleted 2 'IPPool' resource(s)\n"
    );
    assert!(store.everything().is_empty());
    let out = store.run(&["delete", "-f", &both]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.lines().count(), 2, "{}", out.stderr);
}

fn multi_document_writes_are_atomic(store: &Store) {
    let (_dir, a) = temp_file("a.yaml", POOL_A);
    store.ok(&["create", "-f", &a]);
    let before = store.everything();
    // Documents 1 and 3 are new, 2 exists: create refuses all three.
    let text = format!(
        "{}---\n{POOL_A}---\n{}",
        pool("new-1", "10.61.0.0/16"),
        pool("new-2", "10.62.0.0/16")
    );
    let (_dir, f) = temp_file("three.yaml", &text);
    let out = store.run(&["create", "-f", &f]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!("error: {f}: document 2 (IPPool 'pool-a'): already exists (use apply or replace to change it)\n")
    );
    assert_eq!(store.everything(), before);
    // One invalid document among valid ones of other kinds: nothing written.
    let text = format!(
        "{}---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: tor\nspec:\n  peerIP: 192.0.2.1\n  asNumber: 65001\n---\n{}",
        pool("new-1", "10.61.0.0/16"),
        pool("new-3", "10.63.0.0/33")
    );
    let (_dir, g) = temp_file("bad.yaml", &text);
    let out = store.run(&["apply", "-f", &g]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!("error: {g}: document 3 (IPPool 'new-3'): spec.cidr: '10.63.0.0/33' is not a valid CIDR\n")
    );
    assert_eq!(store.everything(), before);
    // The same without the bad document goes in as a whole, from stdin.
    let good = text.rsplit_once("---\n").unwrap().0;
    let out = store.run_stdin(&["apply", "-f", "-"], good);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            0,
            "Successfully applied 1 'IPPool' resource(s)\nSuccessfully applied 1 'BGPPeer' resource(s)\n"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(store.everything().len(), 3);
}

fn too_large_inputs_are_refused_whole(store: &Store) {
    let profiles: Vec<String> = (0..130)
        .map(|i| {
            format!("apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: p{i}\n")
        })
        .collect();
    let out = store.run_stdin(&["apply", "-f", "-"], &profiles.join("---\n"));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: 130 resources need 130 operations in one transaction, more than the 128 etcd allows; split the input (nothing was written)\n"
    );
    assert!(store.everything().is_empty());
    let out = store.run_stdin(&["apply", "-f", "-"], &profiles[..128].join("---\n"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(store.everything().len(), 128);
}

fn stdin_and_namespaces(store: &Store) {
    let policy = |ns: Option<&str>, name: &str| {
        let ns = ns
            .map(|n| format!("  namespace: {n}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n{ns}spec:\n  selector: app == 'web'\n  order: 10\n"
        )
    };
    let text = [
        policy(None, "in-default"),
        policy(Some("prod"), "in-prod"),
        policy(Some("prod"), "also-prod"),
    ]
    .join("---\n");
    let out = store.run_stdin(&["create", "-f", "-"], &text);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "Successfully created 3 'NetworkPolicy' resource(s)\n"
    );

    // get -f: the stored versions of what a file names.
    let out = store.run_stdin(&["get", "-o", "wide", "-f", "-"], &text);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            0,
            "NAMESPACE   NAME         TIER      ORDER   SELECTOR\n\
             default     in-default   default   10      app == 'web'\n\
             prod        in-prod      default   10      app == 'web'\n\
             prod        also-prod    default   10      app == 'web'\n"
        ),
        "{}",
        out.stderr
    );
    let yaml = store
        .run_stdin(&["get", "-o", "yaml", "-f", "-"], &text)
        .stdout;
    assert_eq!(parse_documents(&yaml).unwrap().len(), 3);

    assert_eq!(
        store.ok(&["get", "networkpolicies"]),
        "NAME         TIER\nin-default   default\n"
    );
    assert_eq!(
        store.ok(&["get", "np", "-n", "prod"]),
        "NAME        TIER\nalso-prod   default\nin-prod     default\n"
    );
    assert_eq!(
        store.ok(&["get", "policy", "-A", "-o", "wide"]),
        "NAMESPACE   NAME         TIER      ORDER   SELECTOR\n\
         default     in-default   default   10      app == 'web'\n\
         prod        also-prod    default   10      app == 'web'\n\
         prod        in-prod      default   10      app == 'web'\n"
    );
    // One resource by name is exactly the resource; several are a List.
    let one = store.ok(&["get", "np", "in-prod", "-n", "prod", "-o", "yaml"]);
    assert!(
        one.starts_with("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n"),
        "{one}"
    );
    let many = store.ok(&["get", "np", "-n", "prod", "-o", "yaml"]);
    assert!(
        many.starts_with("apiVersion: projectcalico.org/v3\nkind: List\nitems:\n"),
        "{many}"
    );
    assert_eq!(parse_documents(&many).unwrap().len(), 2);
    let json = store.ok(&["get", "np", "-A", "-o", "json"]);
    assert_eq!(parse_documents(&json).unwrap().len(), 3);

    let out = store.run(&["get", "np", "in-prod"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "error: NetworkPolicy 'default/in-prod' not found\n")
    );
    let out = store.run_stdin(&["get", "-f", "-"], &policy(None, "in-prod"));
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            1,
            "error: <stdin>: document 1 (NetworkPolicy 'default/in-prod'): not found\n"
        )
    );
    store.ok(&["delete", "np", "in-prod", "-n", "prod"]);
    assert_eq!(store.everything().len(), 2);
    // delete -f from stdin.
    let out = store.run_stdin(&["delete", "-f", "-"], &policy(None, "in-default"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(store.everything().len(), 1);

    // -n gives a namespace to documents naming none, and refuses others.
    let out = store.run_stdin(&["apply", "-n", "staging", "-f", "-"], &policy(None, "p1"));
    assert_eq!(out.code, 0, "{out:?}");
    store.ok(&["get", "np", "p1", "-n", "staging"]);
    let mixed = [policy(None, "p2"), policy(Some("prod"), "p3")].join("---\n");
    let out = store.run_stdin(&["apply", "-n", "staging", "-f", "-"], &mixed);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            1,
            "error: <stdin>: document 2 (NetworkPolicy 'prod/p3'): metadata.namespace: 'prod' does not match --namespace 'staging'\n"
        )
    );
    assert_eq!(store.everything().len(), 2);
    let out = store.run_stdin(&["delete", "-n", "staging", "-f", "-"], &policy(None, "p1"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(store.everything().len(), 1);
}

/// A field Brindle stores but does not act on is never accepted silently:
/// one warning per field on stderr (the write goes ahead), or with
/// `--strict` an error naming each and nothing written.
fn unimplemented_fields_are_warned_about_or_refused(store: &Store) {
    let yaml = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec:
  peerIP: 10.0.0.1
  asNumber: 65001
  birdGatewayMode: Recursive
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: by-namespace}
spec:
  cidr: 10.97.0.0/16
  namespaceSelector: team == 'a'
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: plain}
spec: {cidr: 10.99.0.0/16}
";
    let (_dir, path) = temp_file("peer.yaml", yaml);
    let strict = store.run(&["apply", "-f", &path, "--strict"]);
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(
        strict.stderr.contains(&format!(
            "{path}: IPPool 'by-namespace': spec.namespaceSelector is accepted but not implemented"
        )),
        "{}",
        strict.stderr
    );
    assert!(strict
        .stderr
        .contains("refused by --strict; nothing was written"));
    assert!(
        store.run(&["get", "bgppeers", "tor"]).code != 0
            && store.run(&["get", "ippools", "plain"]).code != 0,
        "--strict wrote something"
    );

    let out = store.run(&["apply", "-f", &path]);
    assert_eq!(out.code, 0, "{out:?}");
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(
        warnings,
        ["warning: IPPool 'by-namespace': spec.namespaceSelector is accepted but not implemented"],
        "{}",
        out.stderr
    );
    assert!(out
        .stdout
        .contains("Successfully applied 1 'BGPPeer' resource(s)"));
    // What is implemented passes --strict.
    let (_dir2, plain) = temp_file("pool.yaml", &pool("strict-ok", "10.98.0.0/16"));
    store.ok(&["apply", "-f", &plain, "--strict"]);

    // BGPFilter route priorities are refused with the reason, with or
    // without --strict, and nothing of the input is written.
    let filter = "apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: by-priority}
spec:
  importV4:
  - {action: Reject, priority: 512}
  exportV4:
  - action: Accept
    operations: [{setPriority: {value: 256}}]
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: with-filter}
spec: {cidr: 10.96.0.0/16}
";
    let (_dir3, path) = temp_file("filter.yaml", filter);
    let out = store.run(&["apply", "-f", &path]);
    assert_eq!(out.code, 1, "{out:?}");
    for field in [
        "spec.exportV4[0].operations[0].setPriority",
        "spec.importV4[0].priority",
    ] {
        assert!(
            out.stderr.contains(&format!(
                "{path}: BGPFilter 'by-priority': {field}: route priorities are not supported"
            )),
            "{}",
            out.stderr
        );
    }
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert!(
        store.run(&["get", "bgpfilters", "by-priority"]).code != 0
            && store.run(&["get", "ippools", "with-filter"]).code != 0,
        "a refused input wrote something"
    );
}

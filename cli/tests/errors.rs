//! Failures that do not need a working store: an unreachable datastore, bad
//! URLs, bad arguments, missing files; each exits non-zero with one clear
//! line on stderr.

mod common;

use common::{run_with, temp_file, Store, POOL_A};

/// A TCP port on 127.0.0.1 with nothing listening (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn unreachable_etcd_says_where_it_tried() {
    let port = closed_port();
    let url = format!("etcd://127.0.0.1:{port}?timeout=2");
    let (_dir, file) = temp_file("pool.yaml", POOL_A);
    for args in [
        vec!["get", "ippools"],
        vec!["apply", "-f", file.as_str()],
        vec!["delete", "ippool", "x"],
    ] {
        let out = run_with(Some(&url), &args, None);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert_eq!(out.stdout, "");
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr.starts_with(&format!(
                "error: cannot reach the datastore (etcd at 127.0.0.1:{port}, from --datastore): "
            )),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn datastore_from_the_environment_is_named_as_such() {
    let port = closed_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brindlectl"))
        .env(
            "BRINDLE_DATASTORE",
            format!("etcd://127.0.0.1:{port}?timeout=1"),
        )
        .args(["get", "nodes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach the datastore (etcd at 127.0.0.1:{port}, from $BRINDLE_DATASTORE): "
        )),
        "{stderr}"
    );
}

#[test]
fn invalid_input_fails_before_touching_the_datastore() {
    // Validation does not need the store: the same error whether or not it
    // can be reached.
    let port = closed_port();
    let url = format!("etcd://127.0.0.1:{port}?timeout=1");
    let (_dir, file) = temp_file("bad.yaml", &POOL_A.replace("/16", "/33"));
    let out = run_with(Some(&url), &["apply", "-f", &file], None);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: {file}: document 1 (IPPool 'pool-a'): spec.cidr: '10.50.0.0/33' is not a valid CIDR\n"
        )
    );
}

#[test]
fn bad_urls_files_kinds_and_arguments() {
    let store = Store::embedded();
    let out = run_with(Some("postgres://x"), &["get", "ippools"], None);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: invalid datastore URL \"postgres://x\": ")
            && out.stderr.ends_with(" (from --datastore)\n"),
        "{}",
        out.stderr
    );

    let out = store.run(&["apply", "-f", "/nonexistent/brindle.yaml"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: cannot read /nonexistent/brindle.yaml: "),
        "{}",
        out.stderr
    );

    let out = store.run(&["get", "ippoools"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("error: unknown resource kind 'ippoools' (expected one of "),
        "{}",
        out.stderr
    );

    let (_dir, empty) = temp_file("empty.yaml", "# nothing here\n");
    let out = store.run(&["apply", "-f", &empty]);
    assert_eq!(
        (out.code, out.stderr),
        (1, format!("error: {empty}: no resources found\n"))
    );

    // Usage errors are clap's: exit status 2.
    for args in [
        vec!["frobnicate"],
        vec!["apply"],
        vec!["get"],
        vec!["get", "ippools", "-o", "xml"],
        vec!["delete", "ippool"],
    ] {
        let out = store.run(&args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
}

#[test]
fn version_needs_no_datastore() {
    let out = run_with(None, &["version"], None);
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.starts_with(&format!(
            "Client Version:    v{}\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn node_status_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("status.sock");
    let out = run_with(
        None,
        &["node", "status", "--socket", socket.to_str().unwrap()],
        None,
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "error: brindle-node is not running (no status socket at {})\n",
            socket.display()
        )
    );
}

/// A mistyped `file://` path is an error for every reader (and delete), not
/// an empty store; `apply` creates the store.
#[test]
fn a_missing_embedded_store_is_an_error_except_for_writes() {
    let store = Store::missing_embedded();
    let Store::Embedded(dir) = &store else {
        unreachable!()
    };
    let db = dir.path().join("store.db");
    for args in [
        vec!["get", "ippools"],
        vec!["get", "nodes", "-o", "yaml"],
        vec!["ipam", "show"],
        vec!["ipam", "check"],
        vec!["delete", "ippool", "x"],
    ] {
        let out = store.run(&args);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("does not exist"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!db.exists(), "{args:?} created the store");
    }
    let (_dir, file) = temp_file("pool.yaml", POOL_A);
    store.ok(&["apply", "-f", &file]);
    assert!(db.exists());
    assert!(store.ok(&["get", "ippools"]).contains("pool-a"));
}

/// A write too big for one transaction is refused naming its largest
/// documents, and nothing is written.
#[test]
fn an_oversized_apply_names_its_largest_documents() {
    let store = Store::embedded();
    let big = "x".repeat(900_000);
    let mut text = String::from(POOL_A);
    for name in ["huge-one", "huge-two"] {
        text.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: {name}\n  \
             annotations:\n    note: \"{big}\"\nspec: {{}}\n"
        ));
    }
    let (_dir, file) = temp_file("big.yaml", &text);
    let out = store.run(&["apply", "-f", &file]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("document 2 (") && out.stderr.contains("huge-one"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("document 3 ("), "{}", out.stderr);
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert!(!store.ok(&["get", "ippools"]).contains("pool-a"));
}

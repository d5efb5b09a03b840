//! Concurrent `brindlectl` processes on one store: pools created at the same
//! time are still checked against each other (never two overlapping pools),
//! on both backends.

mod common;

use std::process::{Command, Stdio};

use common::{pool, temp_file, Store};

fn overlapping_pools_created_concurrently_never_both_win(store: &Store) {
    // Create the store first: what is under test is the pool check, not two
    // processes creating a fresh SQLite file at once (which the embedded
    // backend can still answer with "database is locked").
    store.ok(&["get", "ippools"]);
    let rounds = 6;
    let mut files = Vec::new();
    for round in 0..rounds {
        let wide = temp_file(
            "wide.yaml",
            &pool(
                &format!("wide-{round}"),
                &format!("10.{}.0.0/16", 100 + round),
            ),
        );
        let narrow = temp_file(
            "narrow.yaml",
            &pool(
                &format!("narrow-{round}"),
                &format!("10.{}.64.0/18", 100 + round),
            ),
        );
        files.push((wide, narrow));
    }
    for (round, ((_d1, wide), (_d2, narrow))) in files.iter().enumerate() {
        let children: Vec<_> = [wide, narrow]
            .iter()
            .map(|file| {
                Command::new(env!("CARGO_BIN_EXE_brindlectl"))
                    .env_remove("BRINDLE_DATASTORE")
                    .args(["--datastore", &store.url(), "create", "-f", file])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn brindlectl")
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect();
        let winners = outputs.iter().filter(|o| o.status.success()).count();
        assert_eq!(winners, 1, "round {round}: {outputs:#?}");
        let loser = outputs.iter().find(|o| !o.status.success()).unwrap();
        let stderr = String::from_utf8_lossy(&loser.stderr);
        assert!(
            stderr.contains("overlaps existing IPPool") || stderr.contains("kept changing"),
            "round {round}: {stderr}"
        );
    }
    let pools = store.ok(&["get", "ippools", "-o", "yaml"]);
    assert_eq!(
        brindle_model::parse_documents(&pools).unwrap().len(),
        rounds as usize
    );
}

#[test]
fn embedded() {
    overlapping_pools_created_concurrently_never_both_win(&Store::embedded());
}

#[test]
fn etcd() {
    overlapping_pools_created_concurrently_never_both_win(&Store::etcd());
}

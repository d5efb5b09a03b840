//! The demo binary (the README's main command), run for real: it must bring
//! up the fabric (brindle-node on three nodes, brindle-cni workloads in two
//! networks), show BGP-learned routes of every kind, measure the full
//! reachability matrix with every expectation holding, run its Docker part
//! (dockerd and brindle-docker on two nodes) where docker.io is installed,
//! and leave nothing behind. The other binaries must have been built (`cargo build
//! --workspace`, as `scripts/test` does).

use std::process::Command;

#[test]
fn demo_brings_up_the_fabric_and_tears_down() {
    let out = Command::new(env!("CARGO_BIN_EXE_brindle-demo"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("| Established |"), "{stdout}");
    assert!(stdout.contains("blackhole 10.244."), "{stdout}");
    assert!(
        stdout.contains("dev vxlan.brindle proto brindle onlink"),
        "{stdout}"
    );
    assert!(
        stdout.contains("via 10.0.1.2 dev eth0 proto brindle"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PASS: all 60 expectations held (60 of 60)."),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // The Docker part: two Docker networks on two nodes, isolated.
    if brindle_testbed::docker::Dockerd::available() {
        assert!(
            stdout.contains("PASS: all 24 Docker expectations held."),
            "{stdout}"
        );
        assert!(stdout.contains("found 0 problems"), "{stdout}");
    } else {
        assert!(stdout.contains("== Docker: skipped"), "{stdout}");
    }
    assert!(stdout.contains("Teardown: all 12 namespaces"), "{stdout}");

    // Every namespace it named is really gone.
    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for word in stdout.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if brindle_testbed::owner_pid(word).is_some() {
            assert!(
                !listed
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(word)),
                "{word} left behind"
            );
        }
    }
}

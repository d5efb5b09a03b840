//! The demo binary, run for real: it must build the fabric, measure a full
//! underlay matrix, state that workload networking is missing, and leave
//! nothing behind.

use std::process::Command;

#[test]
fn demo_reports_the_underlay_and_tears_down() {
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
    assert!(stdout.contains("12 of 12 pings answered"), "{stdout}");
    assert!(stdout.contains("Underlay: WORKS"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("Workload networking: NOT IMPLEMENTED YET"),
        "{stdout}"
    );
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

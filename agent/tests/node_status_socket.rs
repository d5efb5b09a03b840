//! `brindle-node --status-socket PATH` never deletes what it did not create:
//! a regular file at the path is refused and kept; a path a running node
//! answers on is refused (a second node must not take the first one's
//! socket over), and the refused node leaves it in place. The socket is
//! claimed before anything else, so these need no namespace.

use std::process::Command;
use std::time::Duration;

const NODE_BIN: &str = env!("CARGO_BIN_EXE_brindle-node");

fn start_node(dir: &std::path::Path, socket: &std::path::Path) -> std::process::Output {
    let mut child = Command::new(NODE_BIN)
        .args(["--node-name", "sock-test", "--ip", "192.0.2.10/24"])
        .arg("--datastore")
        .arg(format!("file://{}/store.db", dir.display()))
        .arg("--status-socket")
        .arg(socket)
        .arg("--no-policy")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Refusal is immediate; a node that got past it would keep running.
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "brindle-node did not refuse the socket path: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_regular_file_at_the_status_socket_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.sock");
    std::fs::write(&path, "not a socket").unwrap();
    let out = start_node(dir.path(), &path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

#[test]
fn a_live_status_socket_is_not_taken_over_or_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.sock");
    // Stands for the running node: something answers on the socket.
    let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let out = start_node(dir.path(), &path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("running process"), "{err}");
    assert!(
        path.exists(),
        "the refused node removed the running one's socket"
    );
    assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    drop(live);
}

//! `brindlectl node status` against a Unix socket serving the document
//! `brindle-node` serves (until the daemon runs in the e2e tests, the
//! socket's far end is this test).

mod common;

use std::io::Write;
use std::os::unix::net::UnixListener;

use common::run_with;

fn serve_once(document: &'static str) -> (tempfile::TempDir, String, std::thread::JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-status.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(document.as_bytes()).unwrap();
    });
    (dir, path.display().to_string(), server)
}

#[test]
fn prints_peers_per_family() {
    let (_dir, socket, server) = serve_once(
        r#"{"running":true,"node":"a","asNumber":64512,"routerId":"10.0.1.1","routesInSync":true,
            "peers":[{"address":"10.0.1.2","type":"node-to-node mesh","state":"up",
                      "since":"2026-11-23 05:20:01","info":"Established","name":"b",
                      "established":true,"sinceSeconds":4,"prefixesReceived":1,"prefixesAdvertised":1}]}"#,
    );
    let out = run_with(None, &["node", "status", "--socket", &socket], None);
    server.join().unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "brindle-node process is running.\n\
         \n\
         IPv4 BGP status\n\
         +--------------+-------------------+-------+---------------------+-------------+\n\
         | PEER ADDRESS |     PEER TYPE     | STATE |        SINCE        |    INFO     |\n\
         +--------------+-------------------+-------+---------------------+-------------+\n\
         | 10.0.1.2     | node-to-node mesh | up    | 2026-11-23 05:20:01 | Established |\n\
         +--------------+-------------------+-------+---------------------+-------------+\n\
         \n\
         IPv6 BGP status\n\
         No IPv6 peers found.\n"
    );
}

#[test]
fn a_garbled_answer_is_one_clear_error() {
    let (_dir, socket, server) = serve_once("not json");
    let out = run_with(None, &["node", "status", "--socket", &socket], None);
    server.join().unwrap();
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with(&format!("error: node status from {socket} is not valid: ")),
        "{}",
        out.stderr
    );
}

//! The `brindle-bgpd` process itself: `--check`, `show …` tables and JSON,
//! signals (SIGTERM exits 0 and removes the control socket; SIGHUP with a
//! broken file keeps running), and peers that are unreachable, unknown or
//! send garbage: a clear log line and never a crash.
//!
//! The daemons run in namespaces (they bind port 179) created with unique
//! names and removed on drop. Needs root.

#[path = "interop_support.rs"]
mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use support::*;

fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bgpd.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BGPD)
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let shown = path.display().to_string();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).replace(&shown, "FILE"),
        String::from_utf8_lossy(&out.stderr).replace(&shown, "FILE"),
    )
}

#[test]
fn check_accepts_the_examples() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/bgpd");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("examples/bgpd") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (ok, out, err) = check(&std::fs::read_to_string(&path).unwrap());
            assert!(ok, "{}: {err}", path.display());
            assert!(out.contains(": ok ("), "{out}");
            seen += 1;
        }
    }
    assert!(seen >= 5, "expected one example per scenario, found {seen}");
}

#[test]
fn check_reports_the_line_of_the_first_error() {
    let good = "asn: 64512\nrouter_id: 10.0.0.1\npeers:\n  - address: 10.0.0.2\n    asn: 64513\n";
    let (ok, out, _) = check(good);
    assert!(ok);
    assert_eq!(out, "FILE: ok (1 peers, 0 originated prefixes)\n");

    let cases = [
        (
            good.replace("    asn: 64513", "    asn: 64513\n    hold_tme: 3"),
            "FILE:6:5: peers[0]: unknown field `hold_tme`",
        ),
        (
            good.replace("    asn: 64513", "    asn: 64513\n    hold_time: 2"),
            "FILE:6:16: peers[0].hold_time: hold_time 2 is invalid",
        ),
        (
            good.replace("10.0.0.1", "10.0.0"),
            "FILE:2:12: router_id: router_id \"10.0.0\"",
        ),
        (
            "asn: [\n".to_string(),
            "FILE:1:6: asn: invalid type: sequence",
        ),
    ];
    for (text, expected) in cases {
        let (ok, _, err) = check(&text);
        assert!(!ok, "{text}");
        assert!(
            err.starts_with(expected),
            "expected {expected:?}, got {err:?}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let out = Command::new(BGPD)
        .args(["--check", "--config", "/nonexistent/bgpd.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/bgpd.yaml"));
}

#[test]
fn show_without_a_daemon_fails_clearly() {
    let out = Command::new(BGPD)
        .args(["show", "peers", "--socket", "/nonexistent/bgpd.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach brindle-bgpd at /nonexistent/bgpd.sock"),
        "{err}"
    );
}

/// Runs `f` on a thread that joined `ns` (setns moves only that thread).
fn in_netns<T: Send + 'static>(
    ns: &brindle_testbed::Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = File::open(&path).expect("netns file");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// Connects from `from` to our port 179, sends `bytes`, returns what the
/// daemon answered before closing (bounded by a read timeout).
fn send_from(from: Ipv4Addr, bytes: Vec<u8>) -> Vec<u8> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .expect("socket");
    let local = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(from, 0));
    nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&socket), &local).expect("bind");
    let stream = TcpStream::from(socket);
    // Re-connect the bound socket (std has no bind-then-connect).
    let remote = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(
        Ipv4Addr::new(10, 77, 0, 1),
        179,
    ));
    nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&stream), &remote)
        .expect("connect to brindle-bgpd");
    let mut stream = stream;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = stream.write_all(&bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// A NOTIFICATION's (code, subcode) at the start of `wire`, if it is one.
fn notification(wire: &[u8]) -> Option<(u8, u8)> {
    // Skip an OPEN or KEEPALIVE the daemon may have sent first.
    let mut rest = wire;
    while rest.len() >= 19 {
        let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        if rest[18] == 3 && rest.len() >= 21 {
            return Some((rest[19], rest[20]));
        }
        if len < 19 || len > rest.len() {
            return None;
        }
        rest = &rest[len..];
    }
    None
}

#[test]
fn bad_peers_get_a_log_line_and_never_a_crash() {
    let net = lan("cli", 2);
    net.hosts[1].add_address("eth0", "10.77.0.3/24").unwrap();
    let yaml = "asn: 64512\nrouter_id: 10.77.0.1\nlisten: 0.0.0.0:179\npeers:\n  \
                - {address: 10.77.0.2, asn: 65020, passive: true, hold_time: 9}\n  \
                - {address: 10.77.0.9, asn: 65009, connect_retry: 1}\n";
    let mut bgpd = Bgpd::start(&net.hosts[0], yaml);

    // Unreachable: nobody has 10.77.0.9; the reason is logged and shown.
    let unreachable = wait_for(WAIT, || {
        bgpd.peers()
            .into_iter()
            .find(|p| p.address.to_string() == "10.77.0.9")
            .filter(|p| p.last_error.is_some())
    })
    .expect("a connection error for 10.77.0.9");
    assert_ne!(unreachable.state, "Established");
    let logged = wait_for(WAIT, || {
        bgpd.log()
            .lines()
            .any(|l| l.contains("session not up") && l.contains("10.77.0.9"))
            .then_some(())
    });
    assert!(
        logged.is_some(),
        "no log line for the unreachable peer:\n{}",
        bgpd.log()
    );

    // Garbage from a configured peer: a bad marker is answered with
    // NOTIFICATION 1/1 (Connection Not Synchronized).
    let mut garbage = vec![0u8; 16];
    garbage.extend_from_slice(&[0, 19, 4]);
    let answer = in_netns(&net.hosts[1], move || {
        send_from(Ipv4Addr::new(10, 77, 0, 2), garbage)
    });
    assert_eq!(notification(&answer), Some((1, 1)), "answer {answer:02x?}");

    // A bad message type: 1/3.
    let mut bad_type = vec![0xffu8; 16];
    bad_type.extend_from_slice(&[0, 19, 9]);
    let answer = in_netns(&net.hosts[1], move || {
        send_from(Ipv4Addr::new(10, 77, 0, 2), bad_type)
    });
    assert_eq!(notification(&answer), Some((1, 3)), "answer {answer:02x?}");

    // An OPEN with the wrong AS: 2/2 Bad Peer AS.
    let mut open = vec![0xffu8; 16];
    let body: [u8; 10] = [4, 0xfd, 0xe9, 0, 9, 10, 77, 0, 2, 0]; // AS 65001, hold 9, id, no params
    open.extend_from_slice(&(19u16 + 10).to_be_bytes());
    open.push(1);
    open.extend_from_slice(&body);
    let answer = in_netns(&net.hosts[1], move || {
        send_from(Ipv4Addr::new(10, 77, 0, 2), open)
    });
    assert_eq!(notification(&answer), Some((2, 2)), "answer {answer:02x?}");

    // A connection from an address that is not a peer is dropped.
    let answer = in_netns(&net.hosts[1], move || {
        send_from(Ipv4Addr::new(10, 77, 0, 3), vec![0xff; 19])
    });
    assert!(
        notification(&answer).is_none_or(|(code, _)| code == 6),
        "{answer:02x?}"
    );

    // Still serving, and the peer shows what went wrong.
    let peer = bgpd.peer("10.77.0.2".parse().unwrap());
    assert_ne!(peer.state, "Established");
    assert!(peer.last_error.is_some(), "{peer:?}");

    // SIGHUP with a broken file: logged with its line, nothing changes.
    let good = std::fs::read_to_string(bgpd.config_path()).unwrap();
    std::fs::write(bgpd.config_path(), format!("{good}bogus_key: 1\n")).unwrap();
    bgpd.signal(nix::sys::signal::Signal::SIGHUP);
    let rejected = wait_for(WAIT, || {
        bgpd.log()
            .lines()
            .find(|l| l.contains("reload rejected") && l.contains("bogus_key"))
            .map(str::to_string)
    })
    .expect("reload rejection logged");
    assert!(rejected.contains("line="), "{rejected}");
    assert_eq!(bgpd.peers().len(), 2);

    let status = bgpd.stop().expect("exit status");
    assert!(status.success(), "{status:?}\n{}", bgpd.log());
    assert!(!bgpd.socket().exists());
    let log = bgpd.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn show_prints_tables_and_json() {
    let net = lan("shw", 1);
    let yaml = "asn: 64512\nrouter_id: 10.77.0.1\noriginate:\n  - 10.20.0.0/26\n  \
                - {prefix: 10.21.0.0/26, med: 5, communities: [\"64512:1\"], local_pref: 300}\n\
                peers:\n  - {address: 10.77.0.2, asn: 65020, passive: true}\n";
    let bgpd = Bgpd::start(&net.hosts[0], yaml);
    let run = |args: &[&str]| {
        let out = Command::new(BGPD)
            .args(args)
            .arg("--socket")
            .arg(bgpd.socket())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let peers = run(&["show", "peers"]);
    let mut lines = peers.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [
            "ADDRESS",
            "ASN",
            "STATE",
            "UPTIME",
            "RECEIVED",
            "ACCEPTED",
            "ADVERTISED"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["10.77.0.2", "65020"]);
    assert_eq!(row[3..], ["-", "0", "0", "0"]);

    let routes = run(&["show", "routes"]);
    assert_eq!(
        routes.lines().next().unwrap(),
        "PREFIX        NEXT HOP  AS PATH  LOCAL PREF  BEST"
    );
    assert!(
        routes.contains("10.21.0.0/26  self      -        300         *"),
        "{routes}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&run(&["show", "routes", "--json"])).unwrap();
    let r = &json[1];
    assert_eq!(r["prefix"], "10.21.0.0/26");
    assert_eq!(r["med"], 5);
    assert_eq!(r["communities"][0], "64512:1");
    assert_eq!(r["best"], true);
    let json: serde_json::Value = serde_json::from_str(&run(&["show", "peers", "--json"])).unwrap();
    for key in [
        "address",
        "asn",
        "state",
        "uptime",
        "received",
        "accepted",
        "advertised",
    ] {
        assert!(json[0].get(key).is_some(), "{key} missing in {json}");
    }
    let detail = run(&["show", "peer", "10.77.0.2"]);
    assert!(detail.contains("passive      true"), "{detail}");

    // Unknown peer: exit 1 with the daemon's message.
    let out = Command::new(BGPD)
        .args(["show", "peer", "10.9.9.9", "--socket"])
        .arg(bgpd.socket())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no peer 10.9.9.9 is configured"));
}

#[test]
fn a_second_daemon_cannot_take_the_socket_or_the_port() {
    let net = lan("two", 1);
    let yaml = "asn: 64512\nrouter_id: 10.77.0.1\n";
    let first = Bgpd::start(&net.hosts[0], yaml);

    // Same control socket: refused, the first keeps it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("second.yaml");
    std::fs::write(
        &config,
        format!("{yaml}control_socket: {}\n", first.socket().display()),
    )
    .unwrap();
    let out = net.hosts[0]
        .exec(&[BGPD, "--config", &config.display().to_string()])
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another brindle-bgpd answers on"), "{err}");
    assert!(first.try_show(&["peers"]).is_ok());

    // Own socket, same port: the listen error names the address.
    let socket = dir.path().join("second.sock");
    std::fs::write(
        &config,
        format!("{yaml}control_socket: {}\n", socket.display()),
    )
    .unwrap();
    let out = net.hosts[0]
        .exec(&[BGPD, "--config", &config.display().to_string()])
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0.0.0.0:179"), "{err}");
    assert!(!socket.exists(), "a failed start leaves no socket behind");
}

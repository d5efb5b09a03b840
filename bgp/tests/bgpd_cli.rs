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
    let mut stream = connect_from(from);
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

    // 4 KB of noise, and an HTTP request: the header is judged as soon as
    // its 19 octets are in (RFC 4271 §6.1), not after waiting for whatever
    // length the noise made up (before: no answer until the hold time).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let answer = in_netns(&net.hosts[1], move || {
        send_from(Ipv4Addr::new(10, 77, 0, 2), noise)
    });
    assert_eq!(notification(&answer), Some((1, 1)), "answer {answer:02x?}");
    let http = b"GET / HTTP/1.1\r\nHost: 10.77.0.1:179\r\nUser-Agent: curl/7.88\r\n\r\n".to_vec();
    let answer = in_netns(&net.hosts[1], move || {
        send_from(Ipv4Addr::new(10, 77, 0, 2), http)
    });
    assert_eq!(notification(&answer), Some((1, 1)), "answer {answer:02x?}");
    // A good marker with a length over 4096 (no extended messages yet): 1/2
    // at once, without waiting for the 60,000 octets it announces.
    let mut long = vec![0xffu8; 16];
    long.extend_from_slice(&60_000u16.to_be_bytes());
    long.push(2);
    long.extend_from_slice(&[0u8; 100]);
    let answer = in_netns(&net.hosts[1], move || {
        send_from(Ipv4Addr::new(10, 77, 0, 2), long)
    });
    assert_eq!(notification(&answer), Some((1, 2)), "answer {answer:02x?}");

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

    // A second daemon with `control_socket: socket`: must fail; its stderr.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("second.yaml");
    let second_fails = |socket: &std::path::Path| -> String {
        std::fs::write(
            &config,
            format!("{yaml}control_socket: {}\n", socket.display()),
        )
        .unwrap();
        let out = net.hosts[0]
            .exec(&[BGPD, "--config", &config.display().to_string()])
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // Same control socket: refused, the first keeps it.
    let err = second_fails(first.socket());
    assert!(err.contains("is the socket of a running process"), "{err}");
    assert!(first.try_show(&["peers"]).is_ok());

    // A regular file at the socket path: refused, and left as it was.
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "operator's notes").unwrap();
    let err = second_fails(&precious);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "operator's notes"
    );

    // Own socket, same port: the listen error names the address.
    let socket = dir.path().join("second.sock");
    let err = second_fails(&socket);
    assert!(err.contains("0.0.0.0:179"), "{err}");
    // The cause is printed once, not once per level of the chain.
    let cause = std::io::Error::from_raw_os_error(libc::EADDRINUSE).to_string();
    assert_eq!(err.matches(&cause).count(), 1, "{err}");
    assert!(!socket.exists(), "a failed start leaves no socket behind");
}

/// Opens a real session from 10.77.0.2 (AS 65020) with OPEN/KEEPALIVE
/// encoded by our codec, then sends `garbage`; returns every message the
/// daemon sent, ending with its NOTIFICATION (or whatever came before the
/// connection closed).
fn established_then(garbage: Vec<u8>) -> Vec<brindle_bgp::packet::Message> {
    use brindle_bgp::packet::{
        decode_message, Capability, DecodeContext, EncodeContext, Family, Message, Open,
    };
    let stream = connect_from(Ipv4Addr::new(10, 77, 0, 2));
    let mut stream = stream;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let ctx = EncodeContext::default();
    let open = Message::Open(Open {
        version: 4,
        asn: 65020,
        hold_time: 9,
        bgp_id: Ipv4Addr::new(10, 77, 0, 2),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(65020),
        ],
    });
    stream.write_all(&open.to_bytes(&ctx).unwrap()).unwrap();
    stream
        .write_all(&Message::Keepalive.to_bytes(&ctx).unwrap())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut sent_garbage = false;
    loop {
        while let Ok(Some(decoded)) = decode_message(&buf, &DecodeContext::default()) {
            buf.drain(..decoded.len);
            let done = matches!(decoded.message, Message::Notification(_));
            if matches!(decoded.message, Message::Keepalive) && !sent_garbage {
                // Established on their side: now the garbage.
                stream.write_all(&garbage).unwrap();
                sent_garbage = true;
            }
            got.push(decoded.message);
            if done {
                return got;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return got,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn connect_from(from: Ipv4Addr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(from, 0)),
    )
    .unwrap();
    let to = SockaddrIn::from(std::net::SocketAddrV4::new(
        Ipv4Addr::new(10, 77, 0, 1),
        179,
    ));
    connect(fd.as_raw_fd(), &to).expect("connect to brindle-bgpd");
    TcpStream::from(fd)
}

#[test]
fn garbage_inside_a_session_is_answered_with_the_right_notification() {
    use brindle_bgp::packet::Message;
    let net = lan("gar", 2);
    let yaml = "asn: 64512\nrouter_id: 10.77.0.1\noriginate: [10.20.0.0/26]\npeers:\n  \
                - {address: 10.77.0.2, asn: 65020, passive: true, hold_time: 9}\n";
    let bgpd = Bgpd::start(&net.hosts[0], yaml);

    // UPDATE whose path-attribute length runs past the message: 3/1.
    let mut update = vec![0xffu8; 16];
    update.extend_from_slice(&[0, 23, 2, 0, 0, 0xff, 0xff]);
    let got = in_netns(&net.hosts[1], move || established_then(update));
    assert!(
        matches!(got.first(), Some(Message::Open(o)) if o.asn == 64512),
        "{got:?}"
    );
    let Some(Message::Notification(n)) = got.last() else {
        panic!("no NOTIFICATION: {got:?}")
    };
    assert_eq!((n.code, n.subcode), (3, 1), "{n:?}");

    // The daemon lives on, knows why, and says so in its log.
    let peer = wait_for(WAIT, || {
        let p = bgpd.peer("10.77.0.2".parse().unwrap());
        p.last_error.is_some().then_some(p)
    })
    .expect("last_error for 10.77.0.2");
    assert!(peer.established_transitions >= 1, "{peer:?}");
    let log = bgpd.log();
    assert!(log.contains("10.77.0.2"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(bgpd.try_show(&["routes"]).is_ok());
}

//! Reachability probes from inside a workload: one UDP datagram to port 9
//! per millisecond until the ICMP port unreachable comes back (shared by
//! the route-propagation and soak benchmarks).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brindle_agent::netns::run_in_netns;

/// How long a probe keeps trying.
const PROBE_FOR: Duration = Duration::from_secs(60);

/// A thread inside a workload's namespace that probes targets on request:
/// one UDP datagram to port 9 per millisecond until the ICMP port
/// unreachable comes back (the socket reports `ConnectionRefused`).
pub struct Prober {
    requests: Option<mpsc::Sender<Ipv4Addr>>,
    answers: mpsc::Receiver<Option<Instant>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    pub fn start(netns: PathBuf) -> Prober {
        let (requests, rx) = mpsc::channel::<Ipv4Addr>();
        let (tx, answers) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            run_in_netns(&netns, move || {
                for target in rx {
                    let _ = tx.send(probe(target));
                }
            })
            .unwrap();
        });
        Prober {
            requests: Some(requests),
            answers,
            thread: Some(thread),
        }
    }

    pub fn reachable_at(&self, target: Ipv4Addr) -> Option<Instant> {
        self.requests.as_ref().unwrap().send(target).unwrap();
        self.answers.recv().unwrap()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn probe(target: Ipv4Addr) -> Option<Instant> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket
        .connect(SocketAddr::new(IpAddr::V4(target), 9))
        .ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(1)))
        .ok()?;
    let refused = |e: &std::io::Error| e.kind() == std::io::ErrorKind::ConnectionRefused;
    let deadline = Instant::now() + PROBE_FOR;
    let mut buf = [0u8; 16];
    while Instant::now() < deadline {
        if let Err(e) = socket.send(b"brindle-probe") {
            if refused(&e) {
                return Some(Instant::now());
            }
            // No route yet, or an ICMP error from on the way: try again.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        match socket.recv(&mut buf) {
            Err(e) if refused(&e) => return Some(Instant::now()),
            _ => {}
        }
    }
    None
}

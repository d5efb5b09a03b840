//! The tokio driver of the BFD sessions of one network namespace.
//!
//! Contract:
//! * [`BfdService::start`] binds UDP port 3784 on `0.0.0.0` and `::` (the
//!   latter only where IPv6 exists) and fails if it cannot; it must run
//!   inside a tokio runtime whose namespace the sockets belong to.
//! * Received packets count only with TTL (hop limit) 255 (RFC 5881 §5,
//!   the peer is one hop away); sent packets carry TTL 255 from a source
//!   port in 49152–65535 that stays the same for every session (§4).
//! * A packet is matched to its session by Your Discriminator, or while
//!   that is 0 by its source address; either way the source address must
//!   be the session's peer. Anything else is dropped.
//! * Every state change of a session is reported to the callback given to
//!   `start`, in order, from the service's task.
//! * [`BfdService::remove`] sends AdminDown once, so the peer's clients do
//!   not take the end of the session for a failure (RFC 5882 §3.2); so
//!   does a service that stops (dropped, or its runtime dropped).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::packet::{BfdState, ControlPacket, Diagnostic};
use super::session::{BfdConfig, Input, Output, Session};

/// RFC 5881 §4: single-hop Control packets go to this port.
pub const CONTROL_PORT: u16 = 3784;
/// RFC 5881 §5: sent with, and accepted only with, this TTL.
const SINGLE_HOP_TTL: u8 = 255;

/// A state change of the session with `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdEvent {
    pub peer: IpAddr,
    pub from: BfdState,
    pub to: BfdState,
    pub diagnostic: Diagnostic,
    /// The peer took the session down administratively (not a failure).
    pub remote_admin_down: bool,
}

enum Command {
    Add {
        peer: IpAddr,
        local: Option<IpAddr>,
        config: BfdConfig,
    },
    Remove {
        peer: IpAddr,
    },
}

/// Handle of the running service; dropping it stops the task.
#[derive(Debug)]
pub struct BfdService {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Drop for BfdService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BfdService {
    /// Binds the sockets and starts the task; `report` gets every state
    /// change.
    pub fn start(report: impl Fn(BfdEvent) + Send + 'static) -> io::Result<Self> {
        let v4 = receive_socket(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            CONTROL_PORT,
        ))?;
        let v6 = match receive_socket(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            CONTROL_PORT,
        )) {
            Ok(s) => Some(s),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => None,
            Err(e) => return Err(e),
        };
        let (commands, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            receive_v4: v4,
            receive_v6: v6,
            senders: HashMap::new(),
            sessions: BTreeMap::new(),
            by_discriminator: HashMap::new(),
            report: Box::new(report),
        };
        let task = tokio::spawn(driver.run(rx));
        Ok(BfdService { commands, task })
    }

    /// Starts (or reconfigures) the session with `peer`, sent from `local`
    /// when given.
    pub fn add(&self, peer: IpAddr, local: Option<IpAddr>, config: BfdConfig) {
        let _ = self.commands.send(Command::Add {
            peer,
            local,
            config,
        });
    }

    /// Ends the session with `peer` (AdminDown sent once).
    pub fn remove(&self, peer: IpAddr) {
        let _ = self.commands.send(Command::Remove { peer });
    }
}

struct Entry {
    session: Session,
    local: Option<IpAddr>,
    transmit_at: Option<Instant>,
    detect_at: Option<Instant>,
}

struct Driver {
    receive_v4: UdpSocket,
    receive_v6: Option<UdpSocket>,
    /// One sending socket per source address (`None`: the kernel's choice),
    /// each on its own port from the dynamic range.
    senders: HashMap<Option<IpAddr>, Arc<UdpSocket>>,
    sessions: BTreeMap<IpAddr, Entry>,
    by_discriminator: HashMap<u32, IpAddr>,
    report: Box<dyn Fn(BfdEvent) + Send>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf4 = [0u8; 512];
        let mut buf6 = [0u8; 512];
        loop {
            let next = self
                .sessions
                .values()
                .flat_map(|e| [e.transmit_at, e.detect_at])
                .flatten()
                .min();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                received = receive(&self.receive_v4, &mut buf4) => {
                    self.datagram(received, &buf4);
                }
                received = receive_opt(self.receive_v6.as_ref(), &mut buf6) => {
                    self.datagram(received, &buf6);
                }
                () = sleep_until(next) => self.fire_timers(),
            }
        }
        let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
        for peer in peers {
            self.remove(peer);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Add {
                peer,
                local,
                config,
            } => {
                if let Some(entry) = self.sessions.get_mut(&peer) {
                    if entry.local == local {
                        let out = entry.session.reconfigure(config);
                        self.execute(peer, out);
                        return;
                    }
                    self.remove(peer);
                }
                let discriminator = loop {
                    let d = fastrand::u32(1..);
                    if !self.by_discriminator.contains_key(&d) {
                        break d;
                    }
                };
                let mut session = Session::new(config, discriminator, fastrand::u64(..));
                let out = session.start();
                info!(%peer, discriminator, "BFD session started");
                self.by_discriminator.insert(discriminator, peer);
                self.sessions.insert(
                    peer,
                    Entry {
                        session,
                        local,
                        transmit_at: None,
                        detect_at: None,
                    },
                );
                self.execute(peer, out);
            }
            Command::Remove { peer } => self.remove(peer),
        }
    }

    fn remove(&mut self, peer: IpAddr) {
        let Some(entry) = self.sessions.remove(&peer) else {
            return;
        };
        self.by_discriminator
            .remove(&entry.session.local_discriminator());
        self.send(peer, entry.local, &admin_down(&entry.session));
        info!(%peer, "BFD session removed");
    }

    fn datagram(&mut self, received: io::Result<Received>, buf: &[u8]) {
        let received = match received {
            Ok(r) => r,
            Err(error) => {
                debug!(%error, "BFD receive failed");
                return;
            }
        };
        let source = received.source.ip().to_canonical();
        if received.ttl != Some(SINGLE_HOP_TTL) {
            debug!(%source, ttl = ?received.ttl, "BFD packet without TTL 255 dropped");
            return;
        }
        let packet = match ControlPacket::decode(&buf[..received.len]) {
            Ok(p) => p,
            Err(error) => {
                debug!(%source, %error, "BFD packet dropped");
                return;
            }
        };
        let peer = if packet.your_discriminator != 0 {
            match self.by_discriminator.get(&packet.your_discriminator) {
                Some(peer) => *peer,
                None => return,
            }
        } else {
            source
        };
        if peer != source {
            debug!(%source, %peer, "BFD packet from the wrong address dropped");
            return;
        }
        let Some(entry) = self.sessions.get_mut(&peer) else {
            return;
        };
        let out = entry.session.process(Input::Received(packet));
        self.execute(peer, out);
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        for (peer, entry) in &mut self.sessions {
            if entry.detect_at.is_some_and(|t| t <= now) {
                entry.detect_at = None;
                due.push((*peer, Input::DetectTimer));
            }
            if entry.transmit_at.is_some_and(|t| t <= now) {
                entry.transmit_at = None;
                due.push((*peer, Input::TransmitTimer));
            }
        }
        for (peer, input) in due {
            if let Some(entry) = self.sessions.get_mut(&peer) {
                let out = entry.session.process(input);
                self.execute(peer, out);
            }
        }
    }

    fn execute(&mut self, peer: IpAddr, outputs: Vec<Output>) {
        for output in outputs {
            let Some(entry) = self.sessions.get_mut(&peer) else {
                return;
            };
            match output {
                Output::Send(packet) => {
                    let local = entry.local;
                    self.send(peer, local, &packet);
                }
                Output::ArmTransmit(after) => entry.transmit_at = Some(Instant::now() + after),
                Output::ArmDetect(after) => entry.detect_at = Some(Instant::now() + after),
                Output::StateChanged {
                    from,
                    to,
                    diagnostic,
                } => {
                    let remote_admin_down = entry.session.remote_state() == BfdState::AdminDown;
                    if to == BfdState::Up || from == BfdState::Up {
                        info!(%peer, %from, %to, %diagnostic, "BFD session state");
                    } else {
                        debug!(%peer, %from, %to, "BFD session state");
                    }
                    (self.report)(BfdEvent {
                        peer,
                        from,
                        to,
                        diagnostic,
                        remote_admin_down,
                    });
                }
            }
        }
    }

    fn send(&mut self, peer: IpAddr, local: Option<IpAddr>, packet: &ControlPacket) {
        let socket = match self.sender(local, peer.is_ipv6()) {
            Ok(s) => s,
            Err(error) => {
                warn!(%peer, ?local, %error, "cannot open a BFD sending socket");
                return;
            }
        };
        // BFD tolerates a lost packet; a full socket buffer is not waited on.
        if let Err(error) =
            socket.try_send_to(&packet.encode(), SocketAddr::new(peer, CONTROL_PORT))
        {
            debug!(%peer, %error, "BFD send failed");
        }
    }

    fn sender(&mut self, local: Option<IpAddr>, v6: bool) -> io::Result<Arc<UdpSocket>> {
        let key = sender_key(local, v6);
        if let Some(s) = self.senders.get(&key) {
            return Ok(Arc::clone(s));
        }
        let socket = Arc::new(send_socket(
            key.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        )?);
        self.senders.insert(key, Arc::clone(&socket));
        Ok(socket)
    }
}

impl Drop for Driver {
    /// A stopping process says AdminDown, also one whose runtime is dropped
    /// without running its tasks (brindle-node's restart): its peers then do
    /// not take the end of BFD for a failure (RFC 5882 §3.2), and graceful
    /// restart keeps its routes there. Sent on the raw sockets: the runtime
    /// may be gone. A crash sends nothing, and is detected.
    fn drop(&mut self) {
        for (peer, entry) in &self.sessions {
            let Some(socket) = self.senders.get(&sender_key(entry.local, peer.is_ipv6())) else {
                continue;
            };
            let to = SockaddrStorage::from(SocketAddr::new(*peer, CONTROL_PORT));
            let packet = admin_down(&entry.session).encode();
            let _ = nix::sys::socket::sendto(socket.as_raw_fd(), &packet, &to, MsgFlags::empty());
        }
    }
}

/// The sending socket a session uses: its source address, or the kernel's
/// choice of the family's.
fn sender_key(local: Option<IpAddr>, v6: bool) -> Option<IpAddr> {
    local.or(Some(if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }))
}

/// The packet that ends `session` administratively.
fn admin_down(session: &Session) -> ControlPacket {
    ControlPacket {
        diagnostic: Diagnostic::AdministrativelyDown,
        state: BfdState::AdminDown,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: session.config().multiplier,
        my_discriminator: session.local_discriminator(),
        your_discriminator: session.remote_discriminator(),
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 0,
        required_min_echo_rx_us: 0,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct Received {
    len: usize,
    source: SocketAddr,
    ttl: Option<u8>,
}

async fn receive_opt(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<Received> {
    match socket {
        Some(s) => receive(s, buf).await,
        None => std::future::pending().await,
    }
}

async fn receive(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    loop {
        socket.readable().await?;
        match socket.try_io(Interest::READABLE, || {
            recv_with_ttl(socket.as_raw_fd(), buf)
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// An unbound UDP socket of `address`'s family (IPv6 only for `::`).
fn udp(address: SocketAddr) -> io::Result<OwnedFd> {
    let family = if address.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    if address.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    Ok(fd)
}

fn into_tokio(fd: OwnedFd) -> io::Result<UdpSocket> {
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// Port 3784, asking the kernel for each datagram's TTL.
fn receive_socket(address: SocketAddr) -> io::Result<UdpSocket> {
    let fd = udp(address)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if address.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true)?;
    } else {
        setsockopt(&fd, sockopt::Ipv4RecvTtl, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(address))?;
    into_tokio(fd)
}

/// A socket sending with TTL 255 from `local` and a port of 49152–65535.
fn send_socket(local: IpAddr) -> io::Result<UdpSocket> {
    let fd = udp(SocketAddr::new(local, 0))?;
    if local.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6Ttl, &i32::from(SINGLE_HOP_TTL))?;
    } else {
        setsockopt(&fd, sockopt::Ipv4Ttl, &i32::from(SINGLE_HOP_TTL))?;
    }
    let mut last = Errno::EADDRINUSE;
    for _ in 0..64 {
        let address = SocketAddr::new(local, fastrand::u16(49152..=65535));
        match bind(fd.as_raw_fd(), &SockaddrStorage::from(address)) {
            Ok(()) => return into_tokio(fd),
            Err(Errno::EADDRINUSE) => last = Errno::EADDRINUSE,
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}

/// recvmsg(2) with the TTL / hop limit control message.
fn recv_with_ttl(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut control = nix::cmsg_space!(i32);
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut control), MsgFlags::empty())?;
    let source = msg
        .address
        .and_then(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
            } else {
                a.as_sockaddr_in6()
                    .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
            }
        })
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let mut ttl = None;
    for cmsg in msg.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                ttl = u8::try_from(t).ok();
            }
            _ => {}
        }
    }
    Ok(Received {
        len: msg.bytes,
        source,
        ttl,
    })
}

//! Socket options tokio does not expose: TCP MD5 signatures (RFC 2385,
//! Linux `TCP_MD5SIG`), GTSM (RFC 5082: `IP_TTL`/`IP_MINTTL` and their IPv6
//! twins) and `IPV6_V6ONLY`, plus the listen/connect helpers that use
//! them.
//!
//! The only `unsafe` in the speaker is here: `setsockopt` with a correctly
//! sized, fully initialised option value on a descriptor we own.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

const MD5_MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from `linux/tcp.h`.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

fn sockaddr_storage_of(address: IpAddr) -> libc::sockaddr_storage {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match address {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_in fits in, and is less aligned than, sockaddr_storage.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
        }
        IpAddr::V6(v6) => {
            // SAFETY: as above for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = v6.octets();
        }
    }
    storage
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised T of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets (`Some`) or clears (`None`) the TCP MD5 key for segments to and from
/// `peer` on `fd`. On a listening socket it applies to connections accepted
/// from `peer`. IPv4 peers on an IPv6 socket are given as mapped addresses.
pub(crate) fn set_md5(fd: RawFd, peer: IpAddr, password: Option<&str>) -> io::Result<()> {
    let key = password.unwrap_or("").as_bytes();
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP MD5 password longer than 80 octets",
        ));
    }
    let mut sig = TcpMd5Sig {
        addr: sockaddr_storage_of(peer),
        flags: 0,
        prefix_len: 0,
        key_len: key.len() as u16,
        ifindex: 0,
        key: [0; MD5_MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// GTSM (RFC 5082) for a peer `hops` away (1..=255): send with TTL (hop
/// limit) 255 and have the kernel drop every segment that arrives with
/// less than `256 - hops`, which a sender further away cannot forge. The
/// same threshold as BIRD's `ttl security on` (with `multihop hops`) and
/// FRR's `ttl-security hops hops`.
pub(crate) fn set_gtsm(fd: RawFd, ipv6: bool, hops: u8) -> io::Result<()> {
    let ttl: libc::c_int = 255;
    let min: libc::c_int = 256 - libc::c_int::from(hops.max(1));
    if ipv6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl)?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)
    }
}

/// Back to the host's default TTL (hop limit) on an accepted connection
/// of a neighbour without GTSM (the listener sends with 255, see
/// [`listen`]): we claim to be close only to neighbours that ask.
pub(crate) fn reset_ttl(fd: RawFd, ipv6: bool) -> io::Result<()> {
    // -1: the system default (`net.ipv4.ip_default_ttl`, `hop_limit`).
    let default: libc::c_int = -1;
    if ipv6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &default)
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &default)
    }
}

/// Connections the kernel queues for the listener before it is accepted:
/// every node of a fabric dials its route reflectors (or, in a full mesh,
/// every other node) within the same second of a cold start, and a SYN
/// dropped on a full queue costs a retransmission (1 s, then 3 s). The
/// kernel caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 1024;

/// A listening socket with SO_REUSEADDR (and IPV6_V6ONLY for `::`, so the
/// IPv4 and IPv6 wildcards can both be bound).
pub(crate) fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => {
            let s = TcpSocket::new_v6()?;
            let one: libc::c_int = 1;
            setsockopt(s.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &one)?;
            s
        }
    };
    socket.set_reuseaddr(true)?;
    // Segments of accepted connections, the SYN-ACK first, leave with TTL
    // 255 (as BIRD's listener does): a neighbour that runs GTSM sets its
    // minimum TTL before it connects and would drop a SYN-ACK sent with
    // the default 64. Harmless for the others.
    let ttl: libc::c_int = 255;
    match address {
        SocketAddr::V4(_) => setsockopt(socket.as_raw_fd(), libc::IPPROTO_IP, libc::IP_TTL, &ttl)?,
        SocketAddr::V6(_) => setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            &ttl,
        )?,
    }
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connects to `peer`, from `source` if given, with the MD5 key if given
/// and GTSM for a peer `gtsm_hops` away if given (set before the SYN, so
/// the handshake is already checked).
pub(crate) async fn connect(
    peer: SocketAddr,
    source: Option<IpAddr>,
    md5_password: Option<&str>,
    gtsm_hops: Option<u8>,
) -> io::Result<TcpStream> {
    let socket = match peer {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    if let Some(password) = md5_password {
        set_md5(socket.as_raw_fd(), peer.ip(), Some(password))?;
    }
    if let Some(hops) = gtsm_hops {
        set_gtsm(socket.as_raw_fd(), peer.is_ipv6(), hops)?;
    }
    socket.connect(peer).await
}

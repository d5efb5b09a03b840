//! `brindle-bgp`: a native BGP-4 speaker.
//!
//! This crate owns everything BGP: the wire codec ([`packet`], no I/O), the
//! per-connection finite state machine ([`fsm`], sans-IO: events in, actions
//! and timer requests out), the peer session layer between them ([`session`],
//! sans-IO: OPEN negotiation, collisions, what each frame means), the RIBs
//! ([`rib`]: Adj-RIB-In, Loc-RIB with the decision process, Adj-RIB-Out, route
//! reflection), and the tokio-driven [`speaker::Speaker`] that the node agent
//! embeds, which only does the I/O; [`bfd`] detects a silent peer in
//! milliseconds (RFC 5880/5881). The standalone daemon `brindle-bgpd` is
//! built from the same library ([`daemon`]).
pub mod bfd;
pub mod daemon;
pub mod error_text;
pub mod fsm;
pub mod packet;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod unix_socket;

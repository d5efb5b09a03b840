//! `brindle-bgp`: a native BGP-4 speaker.
//!
//! This crate owns everything BGP: the wire codec (no I/O), the per-peer finite
//! state machine (sans-IO: events in, actions and timer requests out), the RIBs
//! (Adj-RIB-In, Loc-RIB with the decision process, Adj-RIB-Out), route
//! reflection, and the tokio-driven `Speaker` that the node agent embeds. The
//! standalone daemon `brindle-bgpd` is built from the same library.
pub mod daemon;
pub mod error_text;
pub mod fsm;
/// BGP-4 wire codec (messages, attributes, capabilities, RFC 7606 outcomes,
/// OPEN negotiation); pure, no I/O.
pub mod packet;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod unix_socket;

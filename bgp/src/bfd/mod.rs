//! Bidirectional Forwarding Detection for BGP peers (RFC 5880, single hop
//! RFC 5881, asynchronous mode): a peer that goes silent is declared dead
//! in a few hundred milliseconds instead of the BGP hold time.
//!
//! * [`packet`]: the Control packet codec (no I/O, byte vectors beside it).
//! * [`session`]: one session's state machine (sans-IO, timers as outputs).
//! * [`service`]: the tokio driver: UDP port 3784 (TTL 255 in and out, RFC
//!   5881 §5), discriminator and address demultiplexing, the timers; it
//!   reports each session's state to the speaker, which tears a BGP
//!   session down (Cease, subcode 10 "BFD Down", RFC 9384) when its BFD
//!   session leaves Up.

pub mod packet;
pub mod service;
pub mod session;

pub use packet::{BfdState, ControlPacket, Diagnostic};
pub use session::BfdConfig;

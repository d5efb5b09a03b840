//! What the session negotiated, as far as the wire format is concerned.
//!
//! The same bytes mean different things depending on the OPEN exchange: AS
//! numbers are 2 or 4 octets, NLRI may carry ADD-PATH identifiers, and the
//! maximum message size is 4096 or 65535. Decoding and encoding therefore take
//! a context; [`super::negotiate::Negotiated`] produces both. The `Default`
//! contexts describe a session before (or without) any capability: 2-octet AS,
//! no ADD-PATH, 4096-octet messages, IPv4 unicast in the classic fields.

use super::types::Family;

/// Largest message without the extended message capability (RFC 4271).
pub const MAX_MESSAGE_SIZE: usize = 4096;
/// Largest message with the extended message capability (RFC 8654).
pub const MAX_EXTENDED_MESSAGE_SIZE: usize = 65535;

/// How to read messages from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeContext {
    /// Both sides advertised the 4-octet AS capability (RFC 6793): AS_PATH
    /// and AGGREGATOR carry 4-octet AS numbers, AS4_* are ignored.
    pub four_octet_as: bool,
    /// Families whose NLRI from the peer carry a path identifier (we
    /// advertised ADD-PATH receive, the peer send).
    pub add_path: Vec<Family>,
    /// Largest acceptable message (4096 or 65535). OPEN and KEEPALIVE are
    /// always limited to 4096 regardless (RFC 8654 §4).
    pub max_message_size: usize,
    /// IPv4 unicast was negotiated (implicitly or by capability), so the
    /// classic withdrawn/NLRI fields are expected. Classic NLRI are decoded
    /// either way (be liberal); the flag is informational for the receiver.
    pub ipv4_unicast_classic: bool,
}

impl Default for DecodeContext {
    fn default() -> Self {
        DecodeContext {
            four_octet_as: false,
            add_path: Vec::new(),
            max_message_size: MAX_MESSAGE_SIZE,
            ipv4_unicast_classic: true,
        }
    }
}

impl DecodeContext {
    /// Whether NLRI of `family` carry a path identifier.
    pub fn add_path_for(&self, family: Family) -> bool {
        self.add_path.contains(&family)
    }
}

/// How to write messages to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeContext {
    /// Both sides advertised 4-octet AS; otherwise AS numbers above 65535 are
    /// sent as AS_TRANS (23456) with AS4_PATH / AS4_AGGREGATOR (RFC 6793 §4.2.2).
    pub four_octet_as: bool,
    /// Families whose NLRI we send with a path identifier (we advertised
    /// ADD-PATH send, the peer receive).
    pub add_path: Vec<Family>,
    /// Largest message we may send (4096 or 65535).
    pub max_message_size: usize,
    /// Send IPv4 unicast routes in the classic NLRI fields (with NEXT_HOP)
    /// rather than in MP_REACH/MP_UNREACH.
    pub ipv4_unicast_classic: bool,
}

impl Default for EncodeContext {
    fn default() -> Self {
        EncodeContext {
            four_octet_as: false,
            add_path: Vec::new(),
            max_message_size: MAX_MESSAGE_SIZE,
            ipv4_unicast_classic: true,
        }
    }
}

impl EncodeContext {
    /// Whether NLRI of `family` are sent with a path identifier.
    pub fn add_path_for(&self, family: Family) -> bool {
        self.add_path.contains(&family)
    }

    /// The decode context a peer with the mirror-image negotiation would use
    /// to read what we encode with `self`. Handy in tests.
    pub fn mirror(&self) -> DecodeContext {
        DecodeContext {
            four_octet_as: self.four_octet_as,
            add_path: self.add_path.clone(),
            max_message_size: self.max_message_size,
            ipv4_unicast_classic: self.ipv4_unicast_classic,
        }
    }
}

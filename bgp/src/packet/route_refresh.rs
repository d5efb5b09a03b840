//! ROUTE-REFRESH message (RFC 2918 §3, subtypes from RFC 7313 §3.2).
//!
//! ```text
//!  0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Subtype | SAFI |
//! +-------+-------+-------+-------+
//! ```
//!
//! The body is exactly 4 octets; any other length is NOTIFICATION 7/1
//! (checked by the framing layer). Subtypes 3..=255 are decoded as
//! [`RouteRefreshSubtype::Other`]; RFC 7313 says the receiver ignores them.

use bytes::{BufMut, BytesMut};

use super::types::Family;

/// RFC 7313 message subtype (the former "Reserved" octet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteRefreshSubtype {
    /// 0: a normal route refresh request.
    Normal,
    /// 1: Beginning of Route Refresh (BoRR).
    BeginOfRefresh,
    /// 2: End of Route Refresh (EoRR).
    EndOfRefresh,
    /// Anything else (255 is reserved); to be ignored.
    Other(u8),
}

impl From<u8> for RouteRefreshSubtype {
    fn from(value: u8) -> Self {
        match value {
            0 => Self::Normal,
            1 => Self::BeginOfRefresh,
            2 => Self::EndOfRefresh,
            other => Self::Other(other),
        }
    }
}

impl From<RouteRefreshSubtype> for u8 {
    fn from(value: RouteRefreshSubtype) -> Self {
        match value {
            RouteRefreshSubtype::Normal => 0,
            RouteRefreshSubtype::BeginOfRefresh => 1,
            RouteRefreshSubtype::EndOfRefresh => 2,
            RouteRefreshSubtype::Other(other) => other,
        }
    }
}

/// A ROUTE-REFRESH message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    /// Family to refresh.
    pub family: Family,
    /// Request, BoRR or EoRR.
    pub subtype: RouteRefreshSubtype,
}

impl RouteRefresh {
    /// A plain RFC 2918 request for `family`.
    pub fn request(family: Family) -> RouteRefresh {
        RouteRefresh {
            family,
            subtype: RouteRefreshSubtype::Normal,
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u16(self.family.afi.into());
        buf.put_u8(self.subtype.into());
        buf.put_u8(self.family.safi.into());
    }

    /// `body` must be exactly 4 octets.
    pub(crate) fn decode_body(body: &[u8]) -> Option<RouteRefresh> {
        let [a0, a1, subtype, safi] = <[u8; 4]>::try_from(body).ok()?;
        Some(RouteRefresh {
            family: Family::from_wire(u16::from_be_bytes([a0, a1]), safi),
            subtype: subtype.into(),
        })
    }
}

#[cfg(test)]
mod vectors {
    //! Byte vectors hand-built from the RFC layouts, both directions.

    use crate::packet::test_vectors::*;
    use crate::packet::{
        DecodeContext, EncodeContext, Family, Message, RouteRefresh, RouteRefreshSubtype,
    };

    #[test]
    fn route_refresh_plain_and_enhanced() {
        let plain = message(5, "0002 00 01");
        assert_both_ways(
            &plain,
            &Message::RouteRefresh(RouteRefresh::request(Family::IPV6_UNICAST)),
            &DecodeContext::default(),
            &EncodeContext::default(),
        );
        let borr = message(5, "0001 01 01");
        assert_both_ways(
            &borr,
            &Message::RouteRefresh(RouteRefresh {
                family: Family::IPV4_UNICAST,
                subtype: RouteRefreshSubtype::BeginOfRefresh,
            }),
            &DecodeContext::default(),
            &EncodeContext::default(),
        );
        let eorr = message(5, "0001 02 01");
        let (msg, _) = decode_one(&eorr, &DecodeContext::default());
        assert!(matches!(
            msg,
            Message::RouteRefresh(RouteRefresh {
                subtype: RouteRefreshSubtype::EndOfRefresh,
                ..
            })
        ));
        // Reserved subtypes decode (to be ignored by the receiver).
        let other = message(5, "0001 07 01");
        let (msg, _) = decode_one(&other, &DecodeContext::default());
        assert!(matches!(
            msg,
            Message::RouteRefresh(RouteRefresh {
                subtype: RouteRefreshSubtype::Other(7),
                ..
            })
        ));
    }
}

//! NOTIFICATION error codes and subcodes (IANA "BGP Error (Notification)
//! Codes" and its subcode registries) as typed values, with their names: the
//! one source of these numbers. The `u8` constants in [`super::error::code`]
//! and [`super::error::subcode`] are derived from these, and
//! [`super::Notification::description`] reads the names here.
//!
//! Unknown numbers stay representable: a [`super::Notification`] keeps its
//! raw `u8` code and subcode (a NOTIFICATION is never answered with another
//! one, whatever it carries), and `from_u8` returns `None` for what is not
//! registered here.

macro_rules! iana_u8 {
    ($(#[$meta:meta])* $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// The registered value for `value`, if any.
            pub fn from_u8(value: u8) -> Option<Self> {
                match value {
                    $($value => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// How logs and `show` commands name it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                value as u8
            }
        }
    };
}

iana_u8! {
    /// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313 §5).
    ErrorCode {
        MessageHeader = 1 => "message header error",
        OpenMessage = 2 => "OPEN error",
        UpdateMessage = 3 => "UPDATE error",
        HoldTimerExpired = 4 => "hold timer expired",
        FiniteStateMachine = 5 => "finite state machine error",
        Cease = 6 => "cease",
        RouteRefreshMessage = 7 => "ROUTE-REFRESH message error",
    }
}

iana_u8! {
    /// Message Header Error subcodes (RFC 4271 §6.1).
    MessageHeaderSubcode {
        ConnectionNotSynchronized = 1 => "connection not synchronized",
        BadMessageLength = 2 => "bad message length",
        BadMessageType = 3 => "bad message type",
    }
}

iana_u8! {
    /// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492 §5).
    OpenMessageSubcode {
        Unspecific = 0 => "unspecific",
        UnsupportedVersionNumber = 1 => "unsupported version number",
        BadPeerAs = 2 => "bad peer AS",
        BadBgpIdentifier = 3 => "bad BGP identifier",
        UnsupportedOptionalParameter = 4 => "unsupported optional parameter",
        UnacceptableHoldTime = 6 => "unacceptable hold time",
        UnsupportedCapability = 7 => "unsupported capability",
    }
}

iana_u8! {
    /// UPDATE Message Error subcodes (RFC 4271 §6.3).
    UpdateMessageSubcode {
        MalformedAttributeList = 1 => "malformed attribute list",
        UnrecognizedWellKnownAttribute = 2 => "unrecognized well-known attribute",
        MissingWellKnownAttribute = 3 => "missing well-known attribute",
        AttributeFlagsError = 4 => "attribute flags error",
        AttributeLengthError = 5 => "attribute length error",
        InvalidOriginAttribute = 6 => "invalid ORIGIN attribute",
        InvalidNextHopAttribute = 8 => "invalid NEXT_HOP attribute",
        OptionalAttributeError = 9 => "optional attribute error",
        InvalidNetworkField = 10 => "invalid network field",
        MalformedAsPath = 11 => "malformed AS_PATH",
    }
}

iana_u8! {
    /// Finite State Machine Error subcodes (RFC 6608).
    FsmSubcode {
        Unspecified = 0 => "unspecified",
        UnexpectedInOpenSent = 1 => "unexpected message in OpenSent",
        UnexpectedInOpenConfirm = 2 => "unexpected message in OpenConfirm",
        UnexpectedInEstablished = 3 => "unexpected message in Established",
    }
}

iana_u8! {
    /// Cease subcodes (RFC 4486, RFC 8538, RFC 9384).
    CeaseSubcode {
        MaximumPrefixesReached = 1 => "maximum number of prefixes reached",
        AdministrativeShutdown = 2 => "administrative shutdown",
        PeerDeconfigured = 3 => "peer de-configured",
        AdministrativeReset = 4 => "administrative reset",
        ConnectionRejected = 5 => "connection rejected",
        OtherConfigurationChange = 6 => "other configuration change",
        ConnectionCollisionResolution = 7 => "connection collision resolution",
        OutOfResources = 8 => "out of resources",
        HardReset = 9 => "hard reset",
        BfdDown = 10 => "BFD down",
    }
}

iana_u8! {
    /// ROUTE-REFRESH Message Error subcodes (RFC 7313 §5).
    RouteRefreshSubcode {
        InvalidMessageLength = 1 => "invalid message length",
    }
}

/// The name of `subcode` under `code`, when both are registered and the
/// code has subcodes worth naming in a log line.
pub fn subcode_name(code: ErrorCode, subcode: u8) -> Option<&'static str> {
    match code {
        ErrorCode::MessageHeader => MessageHeaderSubcode::from_u8(subcode).map(|s| s.name()),
        ErrorCode::OpenMessage => OpenMessageSubcode::from_u8(subcode)
            .filter(|s| *s != OpenMessageSubcode::Unspecific)
            .map(|s| s.name()),
        ErrorCode::UpdateMessage => UpdateMessageSubcode::from_u8(subcode).map(|s| s.name()),
        ErrorCode::Cease => CeaseSubcode::from_u8(subcode).map(|s| s.name()),
        ErrorCode::HoldTimerExpired
        | ErrorCode::FiniteStateMachine
        | ErrorCode::RouteRefreshMessage => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_unknown_ones_are_none() {
        for v in 0..=255u8 {
            if let Some(c) = ErrorCode::from_u8(v) {
                assert_eq!(u8::from(c), v);
            }
            if let Some(s) = CeaseSubcode::from_u8(v) {
                assert_eq!(u8::from(s), v);
            }
        }
        assert_eq!(ErrorCode::from_u8(8), None);
        assert_eq!(OpenMessageSubcode::from_u8(5), None, "5 is deprecated");
        assert_eq!(u8::from(ErrorCode::Cease), 6);
        assert_eq!(subcode_name(ErrorCode::OpenMessage, 2), Some("bad peer AS"));
        assert_eq!(subcode_name(ErrorCode::HoldTimerExpired, 0), None);
    }
}

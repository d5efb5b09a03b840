//! Decode and encode errors.
//!
//! Every [`DecodeError`] variant corresponds to exactly one NOTIFICATION
//! (code, subcode) pair from RFC 4271 §6 (plus RFC 5492 §5 for capabilities and
//! RFC 7313 §5 for ROUTE-REFRESH), so the FSM never has to guess what to send:
//! [`DecodeError::to_notification`] builds the message, including the data
//! field the RFC prescribes (the offending attribute, the bad length, ...).

use super::notification::Notification;

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313 §5) as `u8`, from the
/// typed registry in [`super::iana`].
pub mod code {
    use super::super::iana::ErrorCode;

    /// Message Header Error.
    pub const MESSAGE_HEADER: u8 = ErrorCode::MessageHeader as u8;
    /// OPEN Message Error.
    pub const OPEN_MESSAGE: u8 = ErrorCode::OpenMessage as u8;
    /// UPDATE Message Error.
    pub const UPDATE_MESSAGE: u8 = ErrorCode::UpdateMessage as u8;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = ErrorCode::HoldTimerExpired as u8;
    /// Finite State Machine Error.
    pub const FSM: u8 = ErrorCode::FiniteStateMachine as u8;
    /// Cease (RFC 4486 subcodes).
    pub const CEASE: u8 = ErrorCode::Cease as u8;
    /// ROUTE-REFRESH Message Error (RFC 7313).
    pub const ROUTE_REFRESH_MESSAGE: u8 = ErrorCode::RouteRefreshMessage as u8;
}

/// NOTIFICATION error subcodes as `u8`, grouped by code, from the typed
/// registry in [`super::iana`].
pub mod subcode {
    /// Message Header Error subcodes.
    pub mod header {
        use super::super::super::iana::MessageHeaderSubcode as S;
        /// Connection Not Synchronized (marker not all ones).
        pub const CONNECTION_NOT_SYNCHRONIZED: u8 = S::ConnectionNotSynchronized as u8;
        /// Bad Message Length.
        pub const BAD_MESSAGE_LENGTH: u8 = S::BadMessageLength as u8;
        /// Bad Message Type.
        pub const BAD_MESSAGE_TYPE: u8 = S::BadMessageType as u8;
    }
    /// OPEN Message Error subcodes.
    pub mod open {
        use super::super::super::iana::OpenMessageSubcode as S;
        /// No more specific subcode applies.
        pub const UNSPECIFIC: u8 = S::Unspecific as u8;
        /// Unsupported Version Number.
        pub const UNSUPPORTED_VERSION: u8 = S::UnsupportedVersionNumber as u8;
        /// Bad Peer AS.
        pub const BAD_PEER_AS: u8 = S::BadPeerAs as u8;
        /// Bad BGP Identifier.
        pub const BAD_BGP_ID: u8 = S::BadBgpIdentifier as u8;
        /// Unsupported Optional Parameter.
        pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = S::UnsupportedOptionalParameter as u8;
        /// Unacceptable Hold Time.
        pub const UNACCEPTABLE_HOLD_TIME: u8 = S::UnacceptableHoldTime as u8;
        /// Unsupported Capability (RFC 5492).
        pub const UNSUPPORTED_CAPABILITY: u8 = S::UnsupportedCapability as u8;
    }
    /// UPDATE Message Error subcodes.
    pub mod update {
        use super::super::super::iana::UpdateMessageSubcode as S;
        /// Malformed Attribute List.
        pub const MALFORMED_ATTRIBUTE_LIST: u8 = S::MalformedAttributeList as u8;
        /// Unrecognized Well-known Attribute.
        pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = S::UnrecognizedWellKnownAttribute as u8;
        /// Missing Well-known Attribute.
        pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = S::MissingWellKnownAttribute as u8;
        /// Attribute Flags Error.
        pub const ATTRIBUTE_FLAGS_ERROR: u8 = S::AttributeFlagsError as u8;
        /// Attribute Length Error.
        pub const ATTRIBUTE_LENGTH_ERROR: u8 = S::AttributeLengthError as u8;
        /// Invalid ORIGIN Attribute.
        pub const INVALID_ORIGIN_ATTRIBUTE: u8 = S::InvalidOriginAttribute as u8;
        /// Invalid NEXT_HOP Attribute.
        pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = S::InvalidNextHopAttribute as u8;
        /// Optional Attribute Error.
        pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = S::OptionalAttributeError as u8;
        /// Invalid Network Field.
        pub const INVALID_NETWORK_FIELD: u8 = S::InvalidNetworkField as u8;
        /// Malformed AS_PATH.
        pub const MALFORMED_AS_PATH: u8 = S::MalformedAsPath as u8;
    }
    /// Cease subcodes (RFC 4486).
    pub mod cease {
        use super::super::super::iana::CeaseSubcode as S;
        /// Maximum Number of Prefixes Reached.
        pub const MAX_PREFIXES: u8 = S::MaximumPrefixesReached as u8;
        /// Administrative Shutdown (RFC 8203 communication allowed).
        pub const ADMINISTRATIVE_SHUTDOWN: u8 = S::AdministrativeShutdown as u8;
        /// Peer De-configured.
        pub const PEER_DECONFIGURED: u8 = S::PeerDeconfigured as u8;
        /// Administrative Reset (RFC 8203 communication allowed).
        pub const ADMINISTRATIVE_RESET: u8 = S::AdministrativeReset as u8;
        /// Connection Rejected.
        pub const CONNECTION_REJECTED: u8 = S::ConnectionRejected as u8;
        /// Other Configuration Change.
        pub const OTHER_CONFIGURATION_CHANGE: u8 = S::OtherConfigurationChange as u8;
        /// Connection Collision Resolution.
        pub const CONNECTION_COLLISION_RESOLUTION: u8 = S::ConnectionCollisionResolution as u8;
        /// Out of Resources.
        pub const OUT_OF_RESOURCES: u8 = S::OutOfResources as u8;
        /// Hard Reset (RFC 8538).
        pub const HARD_RESET: u8 = S::HardReset as u8;
        /// BFD Down (RFC 9384).
        pub const BFD_DOWN: u8 = S::BfdDown as u8;
    }
    /// ROUTE-REFRESH Message Error subcodes (RFC 7313).
    pub mod route_refresh {
        use super::super::super::iana::RouteRefreshSubcode as S;
        /// Invalid Message Length.
        pub const INVALID_MESSAGE_LENGTH: u8 = S::InvalidMessageLength as u8;
    }
}

/// A message that cannot be accepted. Each variant is one NOTIFICATION
/// (code/subcode); the `data` fields hold exactly the NOTIFICATION data the RFC
/// asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// 1/1: the 16-octet marker is not all ones.
    #[error("connection not synchronized: header marker is not all ones")]
    ConnectionNotSynchronized,
    /// 1/2: the header length is out of range for the message type or the
    /// negotiated maximum. Data: the erroneous length field.
    #[error("bad message length {length}")]
    BadMessageLength {
        /// The length field as received.
        length: u16,
    },
    /// 1/3: unknown message type. Data: the type octet.
    #[error("bad message type {message_type}")]
    BadMessageType {
        /// The type octet as received.
        message_type: u8,
    },
    /// 2/0: the OPEN body is structurally broken (optional parameters overrun).
    #[error("malformed OPEN message")]
    MalformedOpen,
    /// 2/1: version other than 4. Data: the largest version we support (4), 2 octets.
    #[error("unsupported BGP version {version}")]
    UnsupportedVersion {
        /// The version the peer sent.
        version: u8,
    },
    /// 2/2: the peer's AS is not the configured one.
    #[error("bad peer AS {received}, expected {expected}")]
    BadPeerAs {
        /// The AS the peer announced (from the 4-octet capability if present).
        received: u32,
        /// The AS configured for this neighbor.
        expected: u32,
    },
    /// 2/3: the BGP identifier is 0 or collides with ours on iBGP.
    #[error("bad BGP identifier {bgp_id}")]
    BadBgpId {
        /// The identifier the peer sent.
        bgp_id: std::net::Ipv4Addr,
    },
    /// 2/4: an optional parameter other than Capabilities (type 2).
    #[error("unsupported optional parameter type {param_type}")]
    UnsupportedOptionalParameter {
        /// The parameter type.
        param_type: u8,
    },
    /// 2/6: hold time 1 or 2 seconds.
    #[error("unacceptable hold time {hold_time}")]
    UnacceptableHoldTime {
        /// The hold time the peer proposed.
        hold_time: u16,
    },
    /// 2/7: a capability we require the peer to support is missing or one it
    /// requires is unsupported. Data: the capabilities concerned, encoded as
    /// capability TLVs.
    #[error("unsupported capability")]
    UnsupportedCapability {
        /// Capability TLVs (code, length, value) concerned.
        data: Vec<u8>,
    },
    /// 3/1: the UPDATE's length fields are inconsistent, an attribute overruns
    /// the attribute block, or MP_REACH/MP_UNREACH appear twice.
    #[error("malformed attribute list")]
    MalformedAttributeList,
    /// 3/2: a well-known attribute we do not recognise. Data: the attribute.
    #[error("unrecognized well-known attribute")]
    UnrecognizedWellKnownAttribute {
        /// The whole attribute (flags, type, length, value).
        data: Vec<u8>,
    },
    /// 3/3: a mandatory attribute is missing. Data: its type code.
    #[error("missing well-known attribute {type_code}")]
    MissingWellKnownAttribute {
        /// Type code of the missing attribute.
        type_code: u8,
    },
    /// 3/4: flags conflict with the attribute type. Data: the attribute.
    #[error("attribute flags error")]
    AttributeFlagsError {
        /// The whole attribute.
        data: Vec<u8>,
    },
    /// 3/5: attribute length wrong for its type. Data: the attribute.
    #[error("attribute length error")]
    AttributeLengthError {
        /// The whole attribute.
        data: Vec<u8>,
    },
    /// 3/6: ORIGIN value not 0, 1 or 2. Data: the attribute.
    #[error("invalid ORIGIN attribute")]
    InvalidOrigin {
        /// The whole attribute.
        data: Vec<u8>,
    },
    /// 3/8: NEXT_HOP semantically invalid. Data: the attribute.
    #[error("invalid NEXT_HOP attribute")]
    InvalidNextHop {
        /// The whole attribute.
        data: Vec<u8>,
    },
    /// 3/9: an optional attribute is malformed. Data: the attribute.
    #[error("optional attribute error")]
    OptionalAttributeError {
        /// The whole attribute.
        data: Vec<u8>,
    },
    /// 3/10: withdrawn routes or NLRI cannot be parsed.
    #[error("invalid network field")]
    InvalidNetworkField,
    /// 3/11: AS_PATH malformed.
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    /// 7/1: ROUTE-REFRESH with a body other than 4 octets. Data: the whole message.
    #[error("invalid ROUTE-REFRESH message length")]
    RouteRefreshInvalidLength {
        /// The complete message as received.
        data: Vec<u8>,
    },
}

impl DecodeError {
    /// The (code, subcode) pair of the NOTIFICATION this error calls for.
    pub fn code_subcode(&self) -> (u8, u8) {
        use subcode::*;
        match self {
            Self::ConnectionNotSynchronized => {
                (code::MESSAGE_HEADER, header::CONNECTION_NOT_SYNCHRONIZED)
            }
            Self::BadMessageLength { .. } => (code::MESSAGE_HEADER, header::BAD_MESSAGE_LENGTH),
            Self::BadMessageType { .. } => (code::MESSAGE_HEADER, header::BAD_MESSAGE_TYPE),
            Self::MalformedOpen => (code::OPEN_MESSAGE, open::UNSPECIFIC),
            Self::UnsupportedVersion { .. } => (code::OPEN_MESSAGE, open::UNSUPPORTED_VERSION),
            Self::BadPeerAs { .. } => (code::OPEN_MESSAGE, open::BAD_PEER_AS),
            Self::BadBgpId { .. } => (code::OPEN_MESSAGE, open::BAD_BGP_ID),
            Self::UnsupportedOptionalParameter { .. } => {
                (code::OPEN_MESSAGE, open::UNSUPPORTED_OPTIONAL_PARAMETER)
            }
            Self::UnacceptableHoldTime { .. } => (code::OPEN_MESSAGE, open::UNACCEPTABLE_HOLD_TIME),
            Self::UnsupportedCapability { .. } => {
                (code::OPEN_MESSAGE, open::UNSUPPORTED_CAPABILITY)
            }
            Self::MalformedAttributeList => {
                (code::UPDATE_MESSAGE, update::MALFORMED_ATTRIBUTE_LIST)
            }
            Self::UnrecognizedWellKnownAttribute { .. } => (
                code::UPDATE_MESSAGE,
                update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
            ),
            Self::MissingWellKnownAttribute { .. } => {
                (code::UPDATE_MESSAGE, update::MISSING_WELL_KNOWN_ATTRIBUTE)
            }
            Self::AttributeFlagsError { .. } => {
                (code::UPDATE_MESSAGE, update::ATTRIBUTE_FLAGS_ERROR)
            }
            Self::AttributeLengthError { .. } => {
                (code::UPDATE_MESSAGE, update::ATTRIBUTE_LENGTH_ERROR)
            }
            Self::InvalidOrigin { .. } => (code::UPDATE_MESSAGE, update::INVALID_ORIGIN_ATTRIBUTE),
            Self::InvalidNextHop { .. } => {
                (code::UPDATE_MESSAGE, update::INVALID_NEXT_HOP_ATTRIBUTE)
            }
            Self::OptionalAttributeError { .. } => {
                (code::UPDATE_MESSAGE, update::OPTIONAL_ATTRIBUTE_ERROR)
            }
            Self::InvalidNetworkField => (code::UPDATE_MESSAGE, update::INVALID_NETWORK_FIELD),
            Self::MalformedAsPath => (code::UPDATE_MESSAGE, update::MALFORMED_AS_PATH),
            Self::RouteRefreshInvalidLength { .. } => (
                code::ROUTE_REFRESH_MESSAGE,
                route_refresh::INVALID_MESSAGE_LENGTH,
            ),
        }
    }

    /// The NOTIFICATION to send for this error, with the RFC-prescribed data.
    pub fn to_notification(&self) -> Notification {
        let (code, subcode) = self.code_subcode();
        let data = match self {
            Self::BadMessageLength { length } => length.to_be_bytes().to_vec(),
            Self::BadMessageType { message_type } => vec![*message_type],
            // The largest locally supported version, as a 2-octet unsigned integer.
            Self::UnsupportedVersion { .. } => 4u16.to_be_bytes().to_vec(),
            Self::MissingWellKnownAttribute { type_code } => vec![*type_code],
            Self::UnsupportedCapability { data }
            | Self::UnrecognizedWellKnownAttribute { data }
            | Self::AttributeFlagsError { data }
            | Self::AttributeLengthError { data }
            | Self::InvalidOrigin { data }
            | Self::InvalidNextHop { data }
            | Self::OptionalAttributeError { data }
            | Self::RouteRefreshInvalidLength { data } => data.clone(),
            _ => Vec::new(),
        };
        Notification {
            code,
            subcode,
            data,
        }
    }
}

/// A message that cannot be put on the wire as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message would exceed the negotiated maximum size.
    #[error("message of {size} octets exceeds the maximum of {max}")]
    TooLarge {
        /// Size the message would have.
        size: usize,
        /// Negotiated maximum (4096, or 65535 with extended messages).
        max: usize,
    },
    /// A field cannot be represented (e.g. an IPv6 prefix in the classic NLRI
    /// field, an attribute value over 65535 octets).
    #[error("cannot encode: {0}")]
    Unrepresentable(&'static str),
}

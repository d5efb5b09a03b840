//! Object metadata and the small value types shared by several kinds: the
//! API version, AS numbers, protocols and ports (Calico's `numorstring`).
//!
//! Every type here serializes to the JSON/YAML shape Calico uses, and
//! omits unset optional fields so a resource written back looks like the one
//! that was applied.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `apiVersion`: Calico's own group, or Brindle's alias of the same schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiVersion {
    /// `projectcalico.org/v3`.
    #[default]
    CalicoV3,
    /// `brindle.dev/v1`: same fields, same meaning.
    BrindleV1,
}

impl ApiVersion {
    /// The string written in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::CalicoV3 => "projectcalico.org/v3",
            ApiVersion::BrindleV1 => "brindle.dev/v1",
        }
    }

    /// Parses an `apiVersion` value.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        match text {
            "projectcalico.org/v3" => Some(ApiVersion::CalicoV3),
            "brindle.dev/v1" => Some(ApiVersion::BrindleV1),
            _ => None,
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ApiVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ApiVersion::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unsupported apiVersion '{text}' (expected projectcalico.org/v3 or brindle.dev/v1)"
            ))
        })
    }
}

/// `metadata`: Kubernetes-style object metadata, the subset Calico stores.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Resource name (required; rules depend on the kind).
    #[serde(default)]
    pub name: String,
    /// Namespace, for namespaced kinds only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels, matched by selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Datastore revision, set by the store on read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Unique id, set by the store on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// RFC 3339 creation time, set by the store on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Spec generation, bumped by the store on spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// A BGP AS number (RFC 6793, 32 bits). Accepted as a number, a decimal
/// string or the `asdot` form `high.low`; written back as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AsNumber(pub u32);

impl AsNumber {
    /// Parses `64512`, `"64512"` or `"1.10"` (asdot).
    pub fn parse(text: &str) -> Option<AsNumber> {
        if let Some((high, low)) = text.split_once('.') {
            let high: u16 = high.parse().ok()?;
            let low: u16 = low.parse().ok()?;
            return Some(AsNumber((u32::from(high) << 16) | u32::from(low)));
        }
        text.parse().ok().map(AsNumber)
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor (not "deserialize then check") so a bad value is
        // reported with its field path.
        struct Visitor;
        fn invalid<E: serde::de::Error>(shown: impl fmt::Display) -> E {
            E::custom(format!(
                "{shown} is not a valid AS number (0..4294967295 or asdot 'a.b')"
            ))
        }
        impl serde::de::Visitor<'_> for Visitor {
            type Value = AsNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AS number")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<AsNumber, E> {
                u32::try_from(v).map(AsNumber).map_err(|_| invalid(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<AsNumber, E> {
                u32::try_from(v).map(AsNumber).map_err(|_| invalid(v))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<AsNumber, E> {
                Err(invalid(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<AsNumber, E> {
                Err(invalid(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AsNumber, E> {
                AsNumber::parse(v).ok_or_else(|| invalid(format!("'{v}'")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A number or a string, as Calico's `numorstring` types accept.
enum NumOrStr {
    Num(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for NumOrStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = NumOrStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<NumOrStr, E> {
                i64::try_from(v)
                    .map(NumOrStr::Num)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Num(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Str(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// An IP protocol: a name Calico knows or a number 1–255.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A name such as `TCP`, kept as written.
    Name(String),
    /// A protocol number (validated to 1..=255).
    Number(i64),
}

/// Names Calico accepts for `protocol`.
pub const PROTOCOL_NAMES: [&str; 6] = ["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"];

impl Protocol {
    /// The IANA protocol number, when the protocol is known or numeric.
    pub fn number(&self) -> Option<u8> {
        match self {
            Protocol::Number(n) => u8::try_from(*n).ok(),
            Protocol::Name(name) => match name.to_ascii_lowercase().as_str() {
                "tcp" => Some(6),
                "udp" => Some(17),
                "icmp" => Some(1),
                "icmpv6" => Some(58),
                "sctp" => Some(132),
                "udplite" => Some(136),
                _ => None,
            },
        }
    }

    /// Whether the protocol has ports (TCP, UDP, SCTP, UDPLite).
    pub fn supports_ports(&self) -> bool {
        matches!(self.number(), Some(6 | 17 | 132 | 136))
    }

    /// Whether this is ICMP (1) or ICMPv6 (58).
    pub fn is_icmp(&self) -> bool {
        matches!(self.number(), Some(1 | 58))
    }

    /// Why the value is invalid, if it is.
    pub fn problem(&self) -> Option<String> {
        match self {
            Protocol::Number(n) if !(1..=255).contains(n) => {
                Some(format!("protocol number {n} is out of range 1..255"))
            }
            Protocol::Name(name)
                if !PROTOCOL_NAMES
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(name)) =>
            {
                Some(format!(
                    "unknown protocol '{name}' (expected one of {} or a number 1..255)",
                    PROTOCOL_NAMES.join(", ")
                ))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Name(n) => f.write_str(n),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Name(n) => s.serialize_str(n),
            Protocol::Number(n) => s.serialize_i64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Protocol::Number(n),
            // A quoted number is still a number ("6" is TCP).
            NumOrStr::Str(t) => match t.parse::<i64>() {
                Ok(n) => Protocol::Number(n),
                Err(_) => Protocol::Name(t),
            },
        })
    }
}

/// A port match: a number, a range `"min:max"`, or a named port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Port {
    /// One port number.
    Number(i64),
    /// An inclusive range.
    Range(i64, i64),
    /// A named port, resolved per endpoint.
    Named(String),
}

impl Port {
    /// Why the value is invalid, if it is.
    pub fn problem(&self) -> Option<String> {
        let in_range = |n: i64| (0..=65535).contains(&n);
        match self {
            Port::Number(n) if !in_range(*n) => Some(format!("port {n} is out of range 0..65535")),
            Port::Range(a, b) if !in_range(*a) || !in_range(*b) => {
                Some(format!("port range {a}:{b} is out of range 0..65535"))
            }
            Port::Range(a, b) if a > b => Some(format!(
                "port range {a}:{b} has its minimum above its maximum"
            )),
            Port::Named(name) if !is_port_name(name) => Some(format!(
                "'{name}' is not a valid port: expected a number, 'min:max', or a port name \
                 (1-15 lower-case letters, digits and '-', with a letter)"
            )),
            _ => None,
        }
    }
}

/// IANA service-name rules, as Kubernetes applies them to named ports.
pub fn is_port_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(|c| c.is_ascii_lowercase())
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !name.contains("--")
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Number(n) => write!(f, "{n}"),
            Port::Range(a, b) => write!(f, "{a}:{b}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Number(n) => s.serialize_i64(*n),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Port::Number(n),
            NumOrStr::Str(t) => {
                if let Ok(n) = t.parse::<i64>() {
                    Port::Number(n)
                } else if let Some((a, b)) = t.split_once(':') {
                    match (a.parse::<i64>(), b.parse::<i64>()) {
                        (Ok(a), Ok(b)) => Port::Range(a, b),
                        _ => Port::Named(t),
                    }
                } else {
                    Port::Named(t)
                }
            }
        })
    }
}

/// Serde helper: skip `false` booleans (Go's `omitempty`).
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_numbers() {
        assert_eq!(AsNumber::parse("64512"), Some(AsNumber(64512)));
        assert_eq!(AsNumber::parse("1.10"), Some(AsNumber(65546)));
        assert_eq!(AsNumber::parse("x"), None);
        let n: AsNumber = serde_json::from_str("\"65000\"").unwrap();
        assert_eq!(n, AsNumber(65000));
        assert!(serde_json::from_str::<AsNumber>("-1").is_err());
        assert!(serde_json::from_str::<AsNumber>("4294967296").is_err());
    }

    #[test]
    fn ports_and_protocols() {
        let ports: Vec<Port> = serde_json::from_str(r#"[80, "443", "1000:2000", "http"]"#).unwrap();
        assert_eq!(
            ports,
            vec![
                Port::Number(80),
                Port::Number(443),
                Port::Range(1000, 2000),
                Port::Named("http".into())
            ]
        );
        assert_eq!(
            serde_json::to_string(&ports).unwrap(),
            r#"[80,443,"1000:2000","http"]"#
        );
        assert!(Port::Range(20, 10).problem().is_some());
        assert!(Port::Number(70000).problem().is_some());
        assert!(Port::Named("Bad_Name".into()).problem().is_some());
        let p: Protocol = serde_json::from_str("\"TCP\"").unwrap();
        assert!(p.supports_ports() && p.problem().is_none());
        assert!(Protocol::Number(1).is_icmp());
        assert!(Protocol::Number(0).problem().is_some());
        assert!(Protocol::Name("QUIC".into()).problem().is_some());
    }
}

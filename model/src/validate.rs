//! Field-level validation helpers shared by every kind, mirroring the rules of
//! Calico's `libcalico-go/lib/validator/v3` (names, labels, CIDRs, IPs, MACs,
//! durations, AS numbers, communities, interface names).
//!
//! Validation never stops at the first problem: every check appends a
//! [`FieldError`] naming the field path (`spec.ingress[0].protocol`) and the
//! reason to a [`Problems`] list. Nothing here panics.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::selector::Selector;

/// One thing wrong with one field of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `spec.blockSize` or `metadata.name`.
    /// Empty when the problem concerns the whole document.
    pub field: String,
    /// Why the value is rejected.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

/// Accumulates [`FieldError`]s while a resource is checked.
#[derive(Debug, Default)]
pub struct Problems {
    /// Everything found so far, in check order.
    pub list: Vec<FieldError>,
}

impl Problems {
    /// Records a problem with `field`.
    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.list.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Longest DNS-1123 subdomain.
const SUBDOMAIN_MAX: usize = 253;
/// Longest DNS-1123 label (and label value / label name part).
const LABEL_MAX: usize = 63;

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= LABEL_MAX
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= SUBDOMAIN_MAX && s.split('.').all(is_dns_label)
}

/// Checks a DNS-1123 subdomain name (lower-case alphanumerics, `-` and `.`,
/// starting and ending alphanumeric, at most 253 characters): the rule Calico
/// applies to most resource names.
pub fn check_subdomain_name(p: &mut Problems, field: &str, name: &str) {
    if name.is_empty() {
        p.add(field, "must not be empty");
    } else if !is_dns_subdomain(name) {
        p.add(
            field,
            format!(
                "'{name}' is not a valid name: use lower-case letters, digits, '-' and '.', \
                 starting and ending with a letter or digit, at most {SUBDOMAIN_MAX} characters"
            ),
        );
    }
}

/// Checks a DNS-1123 label (as a subdomain but without `.`, at most 63
/// characters): the rule for namespaces.
pub fn check_label_name(p: &mut Problems, field: &str, name: &str) {
    if name.is_empty() {
        p.add(field, "must not be empty");
    } else if !is_dns_label(name) {
        p.add(
            field,
            format!(
                "'{name}' is not a valid DNS label: use lower-case letters, digits and '-', \
                 starting and ending with a letter or digit, at most {LABEL_MAX} characters"
            ),
        );
    }
}

/// Checks a policy name: a DNS-1123 label, optionally after a `<tier>.`
/// prefix (Calico's tiered names) or Kubernetes' `knp.default.` prefix.
pub fn check_policy_name(p: &mut Problems, field: &str, name: &str) {
    let label_part = name
        .strip_prefix("knp.default.")
        .or_else(|| {
            name.split_once('.')
                .map(|(tier, rest)| if is_dns_label(tier) { rest } else { tier })
        })
        .unwrap_or(name);
    if name.is_empty() {
        p.add(field, "must not be empty");
    } else if name.len() > SUBDOMAIN_MAX || !is_dns_label(label_part) {
        p.add(
            field,
            format!(
                "'{name}' is not a valid policy name: use lower-case letters, digits and '-' \
                 (optionally after a '<tier>.' prefix), starting and ending with a letter or digit"
            ),
        );
    }
}

/// Checks the permissive name rule Calico uses for profiles and workload
/// endpoints (names derived from namespaces, service accounts and container
/// ids): letters, digits, `_`, `.` and `-`.
pub fn check_permissive_name(p: &mut Problems, field: &str, name: &str) {
    if name.is_empty() {
        p.add(field, "must not be empty");
    } else if name.len() > SUBDOMAIN_MAX
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        p.add(
            field,
            format!(
                "'{name}' is not a valid name: use letters, digits, '_', '.' and '-', \
                 at most {SUBDOMAIN_MAX} characters"
            ),
        );
    }
}

/// Kubernetes "qualified name" part: alphanumeric at both ends, `-_.` inside.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= LABEL_MAX
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Checks label keys (`[prefix/]name`, prefix a DNS subdomain) and values
/// (empty or a qualified-name part of at most 63 characters), as Kubernetes
/// and Calico do.
pub fn check_labels(p: &mut Problems, field: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        let (prefix, name) = match key.rsplit_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key.as_str()),
        };
        let prefix_ok = prefix.is_none_or(is_dns_subdomain);
        if !prefix_ok || !is_qualified_name_part(name) {
            p.add(
                format!("{field}.{key}"),
                "invalid label key: expected an optional DNS subdomain prefix and '/', then \
                 at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            );
        }
        if !value.is_empty() && !is_qualified_name_part(value) {
            p.add(
                format!("{field}.{key}"),
                format!(
                    "invalid label value '{value}': at most 63 letters, digits, '-', '_' or '.', \
                     starting and ending with a letter or digit"
                ),
            );
        }
    }
}

/// Checks selector syntax; an empty selector is valid (it means `all()`).
pub fn check_selector(p: &mut Problems, field: &str, selector: &str) {
    if let Err(e) = Selector::parse(selector) {
        p.add(field, format!("invalid selector '{selector}': {e}"));
    }
}

/// Parses `10.0.0.0/16`, `fd00::/64` or a bare address (taken as /32 or
/// /128), recording a problem when it is neither.
pub fn parse_net(p: &mut Problems, field: &str, text: &str) -> Option<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(IpNet::from(ip));
    }
    p.add(field, format!("'{text}' is not a valid CIDR"));
    None
}

/// Parses a bare IP address; `family` restricts to 4 or 6.
pub fn parse_ip(p: &mut Problems, field: &str, text: &str, family: Option<u8>) -> Option<IpAddr> {
    match text.parse::<IpAddr>() {
        Ok(ip) if family.is_none_or(|f| f == ip_family(ip)) => Some(ip),
        Ok(_) => {
            p.add(
                field,
                format!("'{text}' is not an IPv{} address", family.unwrap_or(4)),
            );
            None
        }
        Err(_) => {
            p.add(field, format!("'{text}' is not a valid IP address"));
            None
        }
    }
}

/// Checks an address with prefix length (`10.0.0.1/24`: host bits allowed)
/// of the given family, the form Calico uses for a node's BGP addresses.
pub fn check_address_with_prefix(p: &mut Problems, field: &str, text: &str, family: u8) {
    let ok = match text.split_once('/') {
        Some((ip, len)) => {
            let max = if family == 4 { 32 } else { 128 };
            ip.parse::<IpAddr>().is_ok_and(|ip| ip_family(ip) == family)
                && len.parse::<u8>().is_ok_and(|l| l <= max)
        }
        None => text
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip_family(ip) == family),
    };
    if !ok {
        p.add(
            field,
            format!("'{text}' is not a valid IPv{family} address (with optional /prefix)"),
        );
    }
}

/// 4 or 6.
pub fn ip_family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        4
    } else {
        6
    }
}

/// 4 or 6.
pub fn net_family(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

/// Checks a MAC address written as six colon- or dash-separated hex octets.
pub fn check_mac(p: &mut Problems, field: &str, text: &str) {
    let octets: Vec<&str> = text.split([':', '-']).collect();
    let ok = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        p.add(field, format!("'{text}' is not a valid MAC address"));
    }
}

/// Linux interface names: 1–15 characters, no `/`, whitespace or `:`
/// (Calico's `interface` rule: `^[a-zA-Z0-9_.-]{1,15}$`).
pub fn check_interface_name(p: &mut Problems, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !ok {
        p.add(
            field,
            format!("'{name}' is not a valid interface name (1-15 letters, digits, '_', '.', '-')"),
        );
    }
}

/// Parses a Go `time.Duration` string (`90s`, `1m30s`, `1.5h`, `500ms`), the
/// format of Calico's `metav1.Duration` fields.
pub fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    rest = rest.strip_prefix('+').unwrap_or(rest);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

/// Checks a Go duration string.
pub fn check_duration(p: &mut Problems, field: &str, text: &str) {
    if parse_go_duration(text).is_none() {
        p.add(
            field,
            format!("'{text}' is not a valid duration (e.g. '120s', '1m30s', '500ms')"),
        );
    }
}

/// Checks a BGP community: `aa:nn` (two 16-bit numbers, RFC 1997) or
/// `aa:nn:mm` (three 32-bit numbers, a large community, RFC 8092).
pub fn check_community_value(p: &mut Problems, field: &str, text: &str) {
    let parts: Vec<&str> = text.split(':').collect();
    let ok = match parts.len() {
        2 => parts.iter().all(|x| x.parse::<u16>().is_ok()),
        3 => parts.iter().all(|x| x.parse::<u32>().is_ok()),
        _ => false,
    };
    if !ok {
        p.add(
            field,
            format!(
                "'{text}' is not a valid community: expected aa:nn (16-bit numbers) or aa:nn:mm (32-bit numbers)"
            ),
        );
    }
}

/// Checks that `value` lies in `min..=max`, with a message in the
/// `33 is out of range 20..32` form.
pub fn check_range(p: &mut Problems, field: &str, value: i64, min: i64, max: i64) {
    if value < min || value > max {
        p.add(field, format!("{value} is out of range {min}..{max}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let mut p = Problems::default();
        check_subdomain_name(&mut p, "n", "pool-a.example");
        check_label_name(&mut p, "n", "kube-system");
        check_permissive_name(&mut p, "n", "ksa.default.My_SA");
        assert!(p.is_empty(), "{:?}", p.list);
        for bad in ["", "Pool", "-a", "a-", "a..b", "a_b"] {
            let mut p = Problems::default();
            check_subdomain_name(&mut p, "n", bad);
            assert_eq!(p.list.len(), 1, "{bad:?}");
        }
        let mut p = Problems::default();
        check_label_name(&mut p, "n", "a.b");
        assert_eq!(p.list.len(), 1);
        let mut p = Problems::default();
        for ok in ["allow-web", "security.allow-web", "knp.default.allow"] {
            check_policy_name(&mut p, "n", ok);
        }
        assert!(p.is_empty(), "{:?}", p.list);
        for bad in ["a.b.c", "Allow", "a_b", ".x"] {
            let mut p = Problems::default();
            check_policy_name(&mut p, "n", bad);
            assert_eq!(p.list.len(), 1, "{bad:?}");
        }
    }

    #[test]
    fn labels() {
        let ok: BTreeMap<String, String> = [
            ("app", "web"),
            ("projectcalico.org/namespace", "default"),
            ("empty", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut p = Problems::default();
        check_labels(&mut p, "metadata.labels", &ok);
        assert!(p.is_empty(), "{:?}", p.list);
        let bad: BTreeMap<String, String> = [("-app", "x"), ("ok", "bad value"), ("Bad_/x", "y")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut p = Problems::default();
        check_labels(&mut p, "metadata.labels", &bad);
        assert_eq!(p.list.len(), 3, "{:?}", p.list);
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("120s"), Some(Duration::from_secs(120)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "s", "-5s", "5 s", "5d"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn communities_macs_interfaces() {
        let mut p = Problems::default();
        check_community_value(&mut p, "c", "65001:100");
        check_community_value(&mut p, "c", "4200000000:1:2");
        check_mac(&mut p, "m", "ee:ee:ee:ee:ee:ee");
        check_interface_name(&mut p, "i", "cali0123456789a");
        check_address_with_prefix(&mut p, "a", "10.0.0.1/24", 4);
        check_address_with_prefix(&mut p, "a", "fd00::1", 6);
        assert!(p.is_empty(), "{:?}", p.list);
        check_community_value(&mut p, "c", "70000:1");
        check_community_value(&mut p, "c", "1:2:3:4");
        check_mac(&mut p, "m", "ee:ee:ee");
        check_interface_name(&mut p, "i", "cali0123456789ab");
        check_address_with_prefix(&mut p, "a", "10.0.0.1/33", 4);
        check_address_with_prefix(&mut p, "a", "10.0.0.1", 6);
        assert_eq!(p.list.len(), 6, "{:?}", p.list);
    }
}

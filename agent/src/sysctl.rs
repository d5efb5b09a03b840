//! Writing `/proc/sys` keys of the calling thread's network namespace.
//!
//! Keys use the dotted `sysctl(8)` form with interface names as one
//! component (`net.ipv4.conf.cali0123456789a.proxy_arp`); because interface
//! names may contain dots (`vxlan.brindle`), callers build keys with
//! [`SysctlKey`] instead of formatting strings, and the path is built from
//! the components, never by replacing dots.

use std::path::PathBuf;

/// A sysctl key as path components under `/proc/sys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlKey(Vec<String>);

impl SysctlKey {
    pub fn new<I, S>(components: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(components.into_iter().map(Into::into).collect())
    }

    /// `net.ipv4.conf.<ifname>.<leaf>`.
    pub fn ipv4_conf(ifname: &str, leaf: &str) -> Self {
        Self::new(["net", "ipv4", "conf", ifname, leaf])
    }

    /// `net.ipv4.neigh.<ifname>.<leaf>`.
    pub fn ipv4_neigh(ifname: &str, leaf: &str) -> Self {
        Self::new(["net", "ipv4", "neigh", ifname, leaf])
    }

    /// `net.ipv6.conf.<ifname>.<leaf>`.
    pub fn ipv6_conf(ifname: &str, leaf: &str) -> Self {
        Self::new(["net", "ipv6", "conf", ifname, leaf])
    }

    pub fn path(&self) -> PathBuf {
        let mut path = PathBuf::from("/proc/sys");
        path.extend(&self.0);
        path
    }
}

impl std::fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join("."))
    }
}

/// A sysctl write failed.
#[derive(Debug, thiserror::Error)]
#[error("sysctl {key}={value}: {source}")]
pub struct SysctlError {
    pub key: String,
    pub value: String,
    pub source: std::io::Error,
}

impl SysctlError {
    /// The key does not exist (e.g. IPv6 disabled on the interface).
    pub fn is_missing(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::NotFound
    }
}

/// Write `value` to `key` unless it already holds it (writes to some keys
/// have side effects even when the value does not change).
pub fn write(key: &SysctlKey, value: &str) -> Result<(), SysctlError> {
    let path = key.path();
    let err = |source| SysctlError {
        key: key.to_string(),
        value: value.to_owned(),
        source,
    };
    if let Ok(current) = std::fs::read_to_string(&path) {
        if current.trim() == value {
            return Ok(());
        }
    }
    std::fs::write(&path, value).map_err(err)
}

/// Read a key, trimmed.
pub fn read(key: &SysctlKey) -> Result<String, SysctlError> {
    std::fs::read_to_string(key.path())
        .map(|s| s.trim().to_owned())
        .map_err(|source| SysctlError {
            key: key.to_string(),
            value: String::new(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_interface_names_stay_one_component() {
        let key = SysctlKey::ipv4_conf("vxlan.brindle", "rp_filter");
        assert_eq!(
            key.path(),
            PathBuf::from("/proc/sys/net/ipv4/conf/vxlan.brindle/rp_filter")
        );
        assert_eq!(key.to_string(), "net.ipv4.conf.vxlan.brindle.rp_filter");
    }
}

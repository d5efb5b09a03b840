//! `BFDConfiguration` (`brindle.dev/v1` only): the timers of the BFD
//! sessions that BGPPeers with `failureDetectionMode:
//! BFDIfDirectlyConnected` run. Named `default` (every node) or
//! `node.<name>` (one node, over `default`). Calico Enterprise's per-interface
//! list (`interfaces`) is not accepted: the name of the unknown field is the
//! error.

use super::*;
use crate::meta::ApiVersion;

/// BFD's default timers: 100 ms × 3, idle 1 s.
pub const DEFAULT_BFD_INTERVAL_MS: u64 = 100;
pub const DEFAULT_BFD_MULTIPLIER: u8 = 3;

/// `BFDConfiguration.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BFDConfigurationSpec {
    /// Slowest rate we ask the peer to send at once Up (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_recv_interval: Option<String>,
    /// Fastest rate we send at once Up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_send_interval: Option<String>,
    /// Rate while not Up (RFC 5880 §6.8.3: at least 1 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_send_interval: Option<String>,
    /// Packets missed before the peer is declared down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<i64>,
}

impl BFDConfigurationSpec {
    /// Nothing is defaulted into the document: unset fields inherit from
    /// `default`, then from the built-in timers.
    pub fn defaulted(&mut self) {}

    pub fn validate(&self, meta: &ObjectMeta, api_version: ApiVersion, p: &mut Problems) {
        if api_version != ApiVersion::BrindleV1 {
            p.add(
                "apiVersion",
                format!("BFDConfiguration is a {} extension", ApiVersion::BrindleV1),
            );
        }
        if meta.name != "default" && !meta.name.starts_with("node.") && !meta.name.is_empty() {
            p.add(
                "metadata.name",
                format!(
                    "'{}': a BFDConfiguration is named 'default' or 'node.<nodename>'",
                    meta.name
                ),
            );
        }
        for (field, value, min) in [
            ("spec.minimumRecvInterval", &self.minimum_recv_interval, 1),
            ("spec.minimumSendInterval", &self.minimum_send_interval, 1),
            ("spec.idleSendInterval", &self.idle_send_interval, 1000),
        ] {
            let Some(text) = value else { continue };
            match crate::validate::parse_go_duration(text) {
                None => check_duration(p, field, text),
                Some(d) if d.as_millis() < min || d.as_secs() > 60 => {
                    p.add(field, format!("{text} is out of range {min}ms..60s"))
                }
                Some(_) => {}
            }
        }
        if let Some(m) = self.multiplier {
            check_range(p, "spec.multiplier", m, 1, 255);
        }
    }
}

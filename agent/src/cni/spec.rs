//! The CNI 1.0 contract as data: environment, network configuration,
//! results and error objects (containernetworking/cni `SPEC.md`). Pure: no
//! I/O, nothing here panics; every rejection is a [`CniError`] carrying the
//! spec's error code.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version this plugin speaks natively.
pub const CNI_VERSION: &str = "1.0.0";

/// Versions accepted in `cniVersion`. 0.3.x/0.4.0 results differ from 1.0
/// only by the per-IP `version` field, which we add for them.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// Error codes of SPEC.md ("Error").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    IoFailure = 5,
    DecodeFailure = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// Plugin-specific codes start at 100; we use one for "anything else".
    Internal = 999,
}

/// A spec error object: printed on stdout, exit status non-zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", details_suffix(.details))]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            code: code as u32,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The JSON object of the spec, under `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut out = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            out["details"] = Value::String(self.details.clone());
        }
        out
    }

    /// Reads an error object a delegated plugin printed.
    pub fn from_json(value: &Value) -> Option<Self> {
        let code = value.get("code")?.as_u64()?;
        Some(CniError {
            code: u32::try_from(code).ok()?,
            msg: value.get("msg")?.as_str().unwrap_or_default().to_owned(),
            details: value
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

/// The `CNI_*` environment, validated for the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// May be empty for DEL (the namespace may be gone already).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`: `K=V;K2=V2`.
    pub args: BTreeMap<String, String>,
    pub path: Vec<String>,
}

impl CniEnv {
    /// Reads the variables through `get` (the process environment in the
    /// binary, a map in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some(other) => {
                return Err(CniError::new(
                    ErrorCode::InvalidEnvironment,
                    format!("CNI_COMMAND: unknown command {other:?}"),
                ))
            }
            None => {
                return Err(CniError::new(
                    ErrorCode::InvalidEnvironment,
                    "CNI_COMMAND is not set",
                ))
            }
        };
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        let mut missing = Vec::new();
        let container_id = var("CNI_CONTAINERID");
        let netns = var("CNI_NETNS");
        let ifname = var("CNI_IFNAME");
        if command != Command::Version {
            if container_id.is_none() {
                missing.push("CNI_CONTAINERID");
            }
            if ifname.is_none() {
                missing.push("CNI_IFNAME");
            }
            if netns.is_none() && command != Command::Del {
                missing.push("CNI_NETNS");
            }
        }
        if !missing.is_empty() {
            return Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                format!("missing environment variables: {}", missing.join(", ")),
            ));
        }
        if matches!(command, Command::Add | Command::Check) {
            if let Some(name) = &ifname {
                validate_ifname(name)?;
            }
        }
        let args = parse_cni_args(&get("CNI_ARGS").unwrap_or_default())?;
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(CniEnv {
            command,
            container_id: container_id.unwrap_or_default(),
            netns: netns.unwrap_or_default(),
            ifname: ifname.unwrap_or_default(),
            args,
            path,
        })
    }
}

/// `CNI_IFNAME` as libcni's `ValidateInterfaceName` checks it: at most 15
/// bytes (IFNAMSIZ − 1), not `.` or `..`, no `/`, `:` or whitespace. Checked
/// before anything is allocated, so a bad name costs nothing.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let why = if name.len() > 15 {
        Some("is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("is not a valid name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    };
    match why {
        Some(why) => Err(CniError::new(
            ErrorCode::InvalidEnvironment,
            format!("CNI_IFNAME {name:?} {why}"),
        )),
        None => Ok(()),
    }
}

/// `CNI_ARGS` (`IgnoreUnknown=1;K8S_POD_NAME=x`). A pair without `=` is an
/// environment error, as in libcni.
pub fn parse_cni_args(text: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::new(
                ErrorCode::InvalidEnvironment,
                format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
            ));
        };
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

/// `ipam` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IpamConf {
    #[serde(rename = "type")]
    pub kind: String,
    /// Fixed addresses (a workload that moves keeps its address).
    #[serde(default, rename = "ipAddrs")]
    pub ip_addrs: Vec<String>,
    /// Assign an IPv4 address (default yes). Calico writes `"true"`.
    #[serde(default)]
    pub assign_ipv4: Option<BoolOrString>,
    /// Assign an IPv6 address (default no).
    #[serde(default)]
    pub assign_ipv6: Option<BoolOrString>,
    /// Restrict automatic assignment to these pools (CIDRs).
    #[serde(default)]
    pub ipv4_pools: Vec<String>,
    #[serde(default)]
    pub ipv6_pools: Vec<String>,
}

/// A boolean that may arrive as JSON `true` or as the string `"true"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum BoolOrString {
    Bool(bool),
    String(String),
}

impl BoolOrString {
    fn value(&self, field: &str) -> Result<bool, CniError> {
        match self {
            BoolOrString::Bool(b) => Ok(*b),
            BoolOrString::String(s) if s == "true" => Ok(true),
            BoolOrString::String(s) if s == "false" => Ok(false),
            BoolOrString::String(s) => Err(CniError::new(
                ErrorCode::InvalidConfig,
                format!("ipam.{field}: {s:?} is not true or false"),
            )),
        }
    }
}

/// The network configuration on stdin (only the fields we use; unknown
/// fields are ignored as the spec asks).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub datastore: Option<String>,
    #[serde(default)]
    pub nodename: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ipam: Option<IpamConf>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// The per-host lock ADD and DEL hold (Calico's key of the same name;
    /// default [`DEFAULT_IPAM_LOCK_FILE`]).
    #[serde(default, rename = "ipam_lock_file")]
    pub ipam_lock_file: Option<String>,
}

/// Where the per-host CNI lock lives unless `ipam_lock_file` says otherwise
/// (Calico's is `/var/run/calico/ipam.lock`).
pub const DEFAULT_IPAM_LOCK_FILE: &str = "/var/run/brindle/ipam.lock";

/// `runtimeConfig` (capabilities the runtime fills in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RuntimeConfig {
    /// `ips` capability: fixed addresses, `10.0.0.5` or `10.0.0.5/32`.
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Default MTU of the veth pair (Calico's for no encapsulation).
pub const DEFAULT_MTU: u32 = 1500;

impl NetConf {
    /// Parses and validates stdin.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                ErrorCode::DecodeFailure,
                "cannot decode the network configuration",
            )
            .with_details(e.to_string())
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                format!(
                    "cniVersion {:?} is not supported (supported: {})",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if conf.name.is_empty() {
            return Err(CniError::new(ErrorCode::InvalidConfig, "name is empty"));
        }
        if let Some(mtu) = conf.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(CniError::new(
                    ErrorCode::InvalidConfig,
                    format!("mtu {mtu} is outside 68..=65535"),
                ));
            }
        }
        conf.fixed_ips()?;
        conf.families()?;
        Ok(conf)
    }

    pub fn network(&self) -> &str {
        self.network.as_deref().unwrap_or("default")
    }

    pub fn mtu(&self) -> u32 {
        self.mtu.unwrap_or(DEFAULT_MTU)
    }

    /// Which families to assign automatically: (IPv4, IPv6).
    pub fn families(&self) -> Result<(bool, bool), CniError> {
        let ipam = self.ipam.clone().unwrap_or_default();
        let v4 = match &ipam.assign_ipv4 {
            Some(b) => b.value("assign_ipv4")?,
            None => true,
        };
        let v6 = match &ipam.assign_ipv6 {
            Some(b) => b.value("assign_ipv6")?,
            None => false,
        };
        if !v4 && !v6 {
            return Err(CniError::new(
                ErrorCode::InvalidConfig,
                "ipam: assign_ipv4 and assign_ipv6 are both false",
            ));
        }
        Ok((v4, v6))
    }

    /// Fixed addresses from `ipam.ipAddrs` and `runtimeConfig.ips`.
    pub fn fixed_ips(&self) -> Result<Vec<IpAddr>, CniError> {
        let from_ipam = self.ipam.iter().flat_map(|i| i.ip_addrs.iter());
        let mut out = Vec::new();
        for text in from_ipam.chain(self.runtime_config.ips.iter()) {
            let ip = text
                .parse::<IpAddr>()
                .ok()
                .or_else(|| text.parse::<IpNet>().ok().map(|n| n.addr()))
                .ok_or_else(|| {
                    CniError::new(
                        ErrorCode::InvalidConfig,
                        format!("fixed address {text:?} is not an IP address"),
                    )
                })?;
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        Ok(out)
    }

    /// Labels from `runtimeConfig.labels` and `args.brindle.labels`
    /// (the latter wins on conflicts: it is the more specific).
    pub fn labels(&self) -> Result<BTreeMap<String, String>, CniError> {
        let mut out = self.runtime_config.labels.clone();
        if let Some(labels) = self
            .args
            .as_ref()
            .and_then(|a| a.get("brindle"))
            .and_then(|b| b.get("labels"))
        {
            let map: BTreeMap<String, String> =
                serde_json::from_value(labels.clone()).map_err(|e| {
                    CniError::new(
                        ErrorCode::InvalidConfig,
                        format!("args.brindle.labels must map strings to strings: {e}"),
                    )
                })?;
            out.extend(map);
        }
        Ok(out)
    }

    /// The IPAM plugin to delegate to.
    pub fn ipam_type(&self) -> Result<&str, CniError> {
        match &self.ipam {
            Some(i) if !i.kind.is_empty() => Ok(&i.kind),
            _ => Err(CniError::new(
                ErrorCode::InvalidConfig,
                "ipam.type is missing",
            )),
        }
    }
}

/// One `interfaces` entry of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// One `ips` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// `"4"`/`"6"`: only in results for versions before 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One `routes` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// The success result of ADD (and of IPAM ADD, without interfaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub dns: Value,
}

impl CniResult {
    /// Adapts to the caller's `cniVersion` (adds per-IP `version` before 1.0).
    pub fn for_version(mut self, cni_version: &str) -> Self {
        self.cni_version = cni_version.to_owned();
        let legacy = cni_version != CNI_VERSION;
        for ip in &mut self.ips {
            ip.version = legacy.then(|| {
                if ip.address.addr().is_ipv4() {
                    "4".to_owned()
                } else {
                    "6".to_owned()
                }
            });
        }
        if self.dns.is_null() {
            self.dns = Value::Object(Default::default());
        }
        self
    }

    /// Reads a delegated plugin's result.
    pub fn parse(stdout: &[u8]) -> Result<Self, CniError> {
        serde_json::from_slice(stdout).map_err(|e| {
            CniError::new(ErrorCode::DecodeFailure, "cannot decode the IPAM result")
                .with_details(e.to_string())
        })
    }
}

/// The VERSION answer.
pub fn version_info(cni_version: &str) -> Value {
    serde_json::json!({
        "cniVersion": cni_version,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

/// Calico's WorkloadEndpoint name: the parts joined by `-`, a `-` inside a
/// part doubled so the name splits back unambiguously
/// (`node-1`, `k8s`, `pod-a`, `eth0` → `node--1-k8s-pod--a-eth0`).
pub fn endpoint_name(node: &str, orchestrator: &str, workload: &str, ifname: &str) -> String {
    [node, orchestrator, workload, ifname]
        .iter()
        .map(|p| p.replace('-', "--"))
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn env_requires_the_variables_of_each_command() {
        let err = env(&[]).unwrap_err();
        assert_eq!(err.code, 4);
        let err = env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]).unwrap_err();
        assert_eq!(err.code, 4);
        assert!(err.msg.contains("CNI_CONTAINERID") && err.msg.contains("CNI_NETNS"));
        // DEL without a namespace is fine: it may be gone already.
        let del = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/a::/b"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
        ])
        .unwrap();
        assert_eq!(del.command, Command::Del);
        assert_eq!(del.path, vec!["/a", "/b"]);
        assert_eq!(del.args["K8S_POD_NAME"], "web");
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
        assert_eq!(env(&[("CNI_COMMAND", "FROB")]).unwrap_err().code, 4);
        assert_eq!(parse_cni_args("a=1;junk").unwrap_err().code, 4);
    }

    #[test]
    fn config_parses_defaults_labels_and_fixed_ips() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"net","type":"brindle-cni",
                 "ipam":{"type":"brindle-ipam","ipAddrs":["10.1.0.9"],"assign_ipv6":"true"},
                 "runtimeConfig":{"ips":["10.1.0.10/32"],"labels":{"a":"1","b":"1"}},
                 "args":{"brindle":{"labels":{"b":"2"}}},
                 "unknownField":42}"#,
        )
        .unwrap();
        assert_eq!(conf.network(), "default");
        assert_eq!(conf.mtu(), DEFAULT_MTU);
        assert_eq!(conf.ipam_type().unwrap(), "brindle-ipam");
        assert_eq!(conf.families().unwrap(), (true, true));
        assert_eq!(
            conf.fixed_ips().unwrap(),
            vec![
                "10.1.0.9".parse::<IpAddr>().unwrap(),
                "10.1.0.10".parse().unwrap()
            ]
        );
        let labels = conf.labels().unwrap();
        assert_eq!(labels["a"], "1");
        assert_eq!(labels["b"], "2");
    }

    #[test]
    fn bad_configs_get_the_spec_codes() {
        let code = |text: &str| NetConf::parse(text.as_bytes()).unwrap_err().code;
        assert_eq!(code("not json"), 6);
        assert_eq!(code(r#"{"name":"n","type":"t"}"#), 6);
        assert_eq!(code(r#"{"cniVersion":"9.9.9","name":"n","type":"t"}"#), 1);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"","type":"t"}"#), 7);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":10}"#),
            7
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"x","ipAddrs":["nope"]}}"#
            ),
            7
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"x","assign_ipv4":"maybe"}}"#
            ),
            7
        );
    }

    #[test]
    fn result_and_error_json_follow_the_spec() {
        let result = CniResult {
            cni_version: String::new(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
                sandbox: "/run/netns/x".into(),
            }],
            ips: vec![IpConfig {
                address: "10.0.0.5/32".parse().unwrap(),
                gateway: None,
                interface: Some(0),
                version: None,
            }],
            routes: vec![RouteConfig {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None,
            }],
            dns: Value::Null,
        };
        let v1 = serde_json::to_value(result.clone().for_version("1.0.0")).unwrap();
        assert_eq!(
            v1,
            serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/x"}],
                "ips": [{"address": "10.0.0.5/32", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {}
            })
        );
        let v04 = serde_json::to_value(result.for_version("0.4.0")).unwrap();
        assert_eq!(v04["ips"][0]["version"], "4");
        assert_eq!(
            CniResult::parse(v1.to_string().as_bytes())
                .unwrap()
                .ips
                .len(),
            1
        );

        let err = CniError::new(ErrorCode::TryAgainLater, "busy").with_details("x");
        let json = err.to_json("1.0.0");
        assert_eq!(
            json,
            serde_json::json!({"cniVersion": "1.0.0", "code": 11, "msg": "busy", "details": "x"})
        );
        assert_eq!(CniError::from_json(&json).unwrap(), err);
        assert_eq!(
            version_info("1.0.0")["supportedVersions"][3],
            serde_json::json!("1.0.0")
        );
    }

    #[test]
    fn endpoint_names_double_dashes_like_calico() {
        assert_eq!(
            endpoint_name("node-1", "k8s", "pod-a", "eth0"),
            "node--1-k8s-pod--a-eth0"
        );
        assert_eq!(endpoint_name("n", "cni", "abc", "eth0"), "n-cni-abc-eth0");
    }
}

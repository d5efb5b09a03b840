//! The wire shapes of Docker's remote plugin protocol (libnetwork's
//! `NetworkDriver` and `IpamDriver`, moby `libnetwork/docs/remote.md` and
//! `ipam.md`): JSON bodies with Go's field names. Requests decode leniently
//! (unknown fields ignored, missing ones defaulted: dockerd versions add
//! fields); an error is `{"Err": "…"}` (IPAM: `{"Error": "…"}`) with HTTP
//! 200, as the protocol asks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `Plugin.Activate`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Activated {
    pub implements: Vec<String>,
}

/// `NetworkDriver.GetCapabilities`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCapabilities {
    pub scope: String,
    pub connectivity_scope: String,
}

/// `IpamDriver.GetCapabilities`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct IpamCapabilities {
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
}

/// `IpamDriver.GetDefaultAddressSpaces`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AddressSpaces {
    pub local_default_address_space: String,
    pub global_default_address_space: String,
}

/// `IpamDriver.RequestPool`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestPool {
    pub address_space: String,
    pub pool: String,
    pub sub_pool: String,
    pub options: Option<BTreeMap<String, String>>,
    #[serde(rename = "V6")]
    pub v6: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PoolReply {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub pool: String,
    pub data: BTreeMap<String, String>,
}

/// `IpamDriver.ReleasePool`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReleasePool {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `IpamDriver.RequestAddress`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub address: String,
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AddressReply {
    pub address: String,
    pub data: BTreeMap<String, String>,
}

/// `IpamDriver.ReleaseAddress`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReleaseAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub address: String,
}

/// One pool of a network (`IPv4Data` / `IPv6Data`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamData {
    pub address_space: String,
    pub pool: String,
    pub gateway: String,
}

/// `NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    pub options: BTreeMap<String, Value>,
    #[serde(rename = "IPv4Data")]
    pub ipv4_data: Vec<IpamData>,
    #[serde(rename = "IPv6Data")]
    pub ipv6_data: Vec<IpamData>,
}

/// `NetworkDriver.DeleteNetwork` (and other requests naming a network).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// The endpoint's interface as IPAM gave it (`CreateEndpoint`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointInterface {
    pub address: String,
    #[serde(rename = "AddressIPv6")]
    pub address_ipv6: String,
    pub mac_address: String,
}

/// `NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub interface: Option<EndpointInterface>,
    pub options: BTreeMap<String, Value>,
}

/// `DeleteEndpoint`, `Leave`, `EndpointOperInfo`, the connectivity calls.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `NetworkDriver.Join`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Join {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub sandbox_key: String,
    pub options: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    pub src_name: String,
    pub dst_prefix: String,
}

/// A route docker puts in the container; `RouteType` 1 is "connected"
/// (no next hop).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct StaticRoute {
    pub destination: String,
    pub route_type: u8,
    pub next_hop: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct JoinReply {
    pub interface_name: InterfaceName,
    pub gateway: String,
    #[serde(rename = "GatewayIPv6")]
    pub gateway_ipv6: String,
    pub static_routes: Vec<StaticRoute>,
    pub disable_gateway_service: bool,
}

/// An error answer to `method`, sent with HTTP 200: libnetwork's IPAM
/// responses name the field `Error`, its network driver responses `Err`
/// (a reply with the other key is taken for a success).
pub fn error_reply(method: &str, text: &str) -> Value {
    if method.starts_with("IpamDriver.") {
        serde_json::json!({ "Error": text })
    } else {
        serde_json::json!({ "Err": text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key dockerd 20.10 reads an error from (`Response.Err` in
    /// `drivers/remote/api`, `Response.Error` in `ipams/remote/api`).
    #[test]
    fn errors_use_each_api_s_field() {
        assert_eq!(
            error_reply("IpamDriver.RequestPool", "no"),
            serde_json::json!({"Error": "no"})
        );
        assert_eq!(
            error_reply("NetworkDriver.Join", "no"),
            serde_json::json!({"Err": "no"})
        );
    }

    /// What dockerd 20.10 sends (recorded), decoded with Go's names.
    #[test]
    fn requests_as_dockerd_sends_them() {
        let create: CreateNetwork = serde_json::from_str(
            r#"{"NetworkID":"9f1c","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{}},"IPv4Data":[{"AddressSpace":"BrindleLocal","Gateway":"0.0.0.0/0","Pool":"10.99.0.0/24"}],"IPv6Data":[]}"#,
        )
        .unwrap();
        assert_eq!(create.network_id, "9f1c");
        assert_eq!(create.ipv4_data[0].gateway, "0.0.0.0/0");
        let addr: RequestAddress =
            serde_json::from_str(r#"{"PoolID":"10.99.0.0/24","Address":"","Options":null}"#)
                .unwrap();
        assert_eq!(addr.pool_id, "10.99.0.0/24");
        assert!(addr.options.is_none());
        let pool: RequestPool = serde_json::from_str(
            r#"{"AddressSpace":"BrindleLocal","Pool":"","SubPool":"","Options":{},"V6":true}"#,
        )
        .unwrap();
        assert!(pool.v6);
        let ep: CreateEndpoint = serde_json::from_str(
            r#"{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"10.99.0.2/32","AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.endpoint.exposedports":[]}}"#,
        )
        .unwrap();
        assert_eq!(ep.interface.unwrap().address, "10.99.0.2/32");
    }

    #[test]
    fn replies_use_gos_names() {
        let reply = JoinReply {
            interface_name: InterfaceName {
                src_name: "tmp0123456789a".into(),
                dst_prefix: "eth".into(),
            },
            gateway: "169.254.1.1".into(),
            gateway_ipv6: String::new(),
            static_routes: vec![StaticRoute {
                destination: "169.254.1.1/32".into(),
                route_type: 1,
                next_hop: String::new(),
            }],
            disable_gateway_service: false,
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert!(
            text.contains(r#""InterfaceName":{"SrcName":"tmp0123456789a","DstPrefix":"eth"}"#),
            "{text}"
        );
        assert!(text.contains(r#""GatewayIPv6":"""#), "{text}");
        assert!(text.contains(r#""RouteType":1"#), "{text}");
        let pool = PoolReply {
            pool_id: "x".into(),
            pool: "0.0.0.0/0".into(),
            data: BTreeMap::new(),
        };
        assert!(serde_json::to_string(&pool)
            .unwrap()
            .contains(r#""PoolID":"x""#));
    }
}

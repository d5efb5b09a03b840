//! The compiler's configuration: the knobs of the compiled layout
//! ([`Config`], [`EndpointToHost`]) and the parser of Calico's failsafe port
//! lists ([`parse_failsafe_ports`]).

use crate::ir::Protocol;

/// What the workload-to-host path does after egress policy allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointToHost {
    /// Drop (Calico's default).
    Drop,
    /// Accept.
    Accept,
    /// Return to INPUT and let the host's own rules decide.
    Return,
}

/// Knobs of the compiled layout.
#[derive(Debug, Clone)]
pub struct Config {
    /// Mark bit meaning "a policy or profile allowed this packet".
    pub accept_mark: u32,
    /// Mark bit meaning "a policy said Pass: skip to the profiles".
    pub pass_mark: u32,
    /// Prefix of host-side workload interfaces.
    pub workload_interface_prefix: String,
    /// (protocol, port) always accepted into the host, whatever host
    /// endpoint policy says, so a bad policy cannot cut the node off.
    pub failsafe_inbound: Vec<(Protocol, u16)>,
    /// (protocol, port) always accepted out of the host.
    pub failsafe_outbound: Vec<(Protocol, u16)>,
    /// Workload-to-host traffic after egress policy.
    pub endpoint_to_host: EndpointToHost,
    /// UDP port of VXLAN, dropped when a workload sends it.
    pub vxlan_port: u16,
}

impl Default for Config {
    fn default() -> Self {
        let tcp = |p| (Protocol::Tcp, p);
        let common = [179, 2379, 2380, 5473, 6443, 6666, 6667].map(tcp);
        let mut inbound = vec![tcp(22), (Protocol::Udp, 68)];
        inbound.extend(common);
        let mut outbound = vec![(Protocol::Udp, 53), (Protocol::Udp, 67)];
        outbound.extend(common);
        Config {
            accept_mark: 0x10000,
            pass_mark: 0x20000,
            workload_interface_prefix: "cali".to_string(),
            failsafe_inbound: inbound,
            failsafe_outbound: outbound,
            endpoint_to_host: EndpointToHost::Drop,
            vxlan_port: 4789,
        }
    }
}

impl Config {
    /// Environment variable of the inbound failsafe list, named as Calico's
    /// Felix reads its `FailsafeInboundHostPorts` parameter.
    pub const FAILSAFE_INBOUND_ENV: &'static str = "FELIX_FAILSAFEINBOUNDHOSTPORTS";
    /// Environment variable of the outbound failsafe list
    /// (`FailsafeOutboundHostPorts`).
    pub const FAILSAFE_OUTBOUND_ENV: &'static str = "FELIX_FAILSAFEOUTBOUNDHOSTPORTS";
}

/// A failsafe list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failsafe port {entry:?}: {reason}")]
pub struct FailsafeError {
    /// The offending entry.
    pub entry: String,
    /// Why.
    pub reason: &'static str,
}

/// Parses a failsafe port list in Calico's format: comma-separated
/// `<protocol>:<port>` with protocol `tcp`, `udp` or `sctp` (any case),
/// spaces allowed, e.g. `tcp:22, udp:68, tcp:179`; `none` (or an empty
/// list) means no failsafe ports.
///
/// Calico also accepts `<protocol>:<cidr>:<port>`; Brindle's failsafe rules
/// do not match on addresses, so that form is refused rather than widened.
pub fn parse_failsafe_ports(text: &str) -> Result<Vec<(Protocol, u16)>, FailsafeError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let error = |reason| FailsafeError {
            entry: entry.to_string(),
            reason,
        };
        let parts: Vec<&str> = entry.split(':').collect();
        let (proto, port) = match parts.as_slice() {
            [proto, port] => (*proto, *port),
            [_, _, _] => return Err(error("a CIDR in a failsafe port is not supported")),
            _ => return Err(error("expected <protocol>:<port>")),
        };
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => return Err(error("protocol must be tcp, udp or sctp")),
        };
        let port: u16 = port
            .trim()
            .parse()
            .map_err(|_| error("port must be a number from 0 to 65535"))?;
        out.push((proto, port));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failsafe_defaults_are_calicos() {
        // Felix's documented defaults, in its own format.
        let inbound =
            "tcp:22, udp:68, tcp:179, tcp:2379, tcp:2380, tcp:5473, tcp:6443, tcp:6666, tcp:6667";
        let outbound =
            "udp:53, udp:67, tcp:179, tcp:2379, tcp:2380, tcp:5473, tcp:6443, tcp:6666, tcp:6667";
        let config = Config::default();
        assert_eq!(
            parse_failsafe_ports(inbound).unwrap(),
            config.failsafe_inbound
        );
        assert_eq!(
            parse_failsafe_ports(outbound).unwrap(),
            config.failsafe_outbound
        );
    }

    #[test]
    fn failsafe_lists_parse_as_calico_writes_them() {
        assert_eq!(
            parse_failsafe_ports("TCP:2222,udp:1234 , sctp:9").unwrap(),
            vec![
                (Protocol::Tcp, 2222),
                (Protocol::Udp, 1234),
                (Protocol::Sctp, 9)
            ]
        );
        assert!(parse_failsafe_ports("none").unwrap().is_empty());
        assert!(parse_failsafe_ports("").unwrap().is_empty());
        for bad in ["tcp", "icmp:1", "tcp:70000", "tcp:0.0.0.0/0:22", "tcp:x"] {
            let err = parse_failsafe_ports(bad).unwrap_err();
            assert_eq!(err.entry, bad, "{err}");
        }
    }
}

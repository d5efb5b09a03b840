//! `get` output as calicoctl prints it: per kind a default and a wide column
//! set (the same headings calicoctl uses), `NAMESPACE` first for namespaced
//! kinds when listing every namespace, columns padded with three spaces.
//!
//! Cells are read from the resource's JSON form (what `-o json` prints), so a
//! column shows a field exactly as it would be written, after defaults.

use brindle_model::{Kind, Resource};
use serde_json::Value;

/// Which column set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    Normal,
    Wide,
}

/// One column: its heading and how to compute a cell.
struct Column {
    heading: &'static str,
    cell: fn(&Value) -> String,
}

fn at(v: &Value, pointer: &str) -> String {
    scalar(v.pointer(pointer).unwrap_or(&Value::Null))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        // Go prints a whole float64 without a fraction (`order: 10` shows 10).
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", f as i64)
            } else {
                f.to_string()
            }
        }
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", scalar(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// A boolean that Go prints as `false` when unset (omitted in JSON).
fn flag(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

macro_rules! col {
    ($h:literal, $f:expr) => {
        Column {
            heading: $h,
            cell: $f,
        }
    };
}

fn name(v: &Value) -> String {
    at(v, "/metadata/name")
}

fn columns(kind: Kind, width: Width) -> Vec<Column> {
    let wide = width == Width::Wide;
    let mut cols = Vec::new();
    match kind {
        Kind::IPPool => {
            cols.push(col!("NAME", name));
            cols.push(col!("CIDR", |v| at(v, "/spec/cidr")));
            if wide {
                cols.push(col!("NAT", |v| flag(v, "/spec/natOutgoing")));
                cols.push(col!("IPIPMODE", |v| {
                    let m = at(v, "/spec/ipipMode");
                    if m.is_empty() {
                        "Never".into()
                    } else {
                        m
                    }
                }));
                cols.push(col!("VXLANMODE", |v| {
                    let m = at(v, "/spec/vxlanMode");
                    if m.is_empty() {
                        "Never".into()
                    } else {
                        m
                    }
                }));
                cols.push(col!("DISABLED", |v| flag(v, "/spec/disabled")));
                cols.push(col!("DISABLEBGPEXPORT", |v| flag(
                    v,
                    "/spec/disableBGPExport"
                )));
            }
            cols.push(col!("SELECTOR", |v| at(v, "/spec/nodeSelector")));
        }
        Kind::IPAMConfiguration => {
            cols.push(col!("NAME", name));
            cols.push(col!("STRICTAFFINITY", |v| flag(v, "/spec/strictAffinity")));
            cols.push(col!("AUTOALLOCATEBLOCKS", |v| flag(
                v,
                "/spec/autoAllocateBlocks"
            )));
            if wide {
                cols.push(col!("MAXBLOCKSPERHOST", |v| at(
                    v,
                    "/spec/maxBlocksPerHost"
                )));
            }
        }
        Kind::BGPConfiguration => {
            cols.push(col!("NAME", name));
            cols.push(col!("LOGSEVERITY", |v| at(v, "/spec/logSeverityScreen")));
            cols.push(col!("MESHENABLED", |v| or_dash(at(
                v,
                "/spec/nodeToNodeMeshEnabled"
            ))));
            cols.push(col!("ASNUMBER", |v| or_dash(at(v, "/spec/asNumber"))));
        }
        Kind::BGPPeer => {
            cols.push(col!("NAME", name));
            cols.push(col!("PEERIP", |v| at(v, "/spec/peerIP")));
            cols.push(col!("NODE", |v| {
                let node = at(v, "/spec/node");
                let selector = at(v, "/spec/nodeSelector");
                match (node.is_empty(), selector.is_empty()) {
                    (false, _) => node,
                    (true, false) => selector,
                    (true, true) => "(global)".into(),
                }
            }));
            cols.push(col!("ASN", |v| at(v, "/spec/asNumber")));
        }
        Kind::BGPFilter | Kind::BFDConfiguration => cols.push(col!("NAME", name)),
        Kind::Node => {
            cols.push(col!("NAME", name));
            if wide {
                cols.push(col!("ASN", |v| {
                    let asn = at(v, "/spec/bgp/asNumber");
                    if asn.is_empty() && v.pointer("/spec/bgp").is_some() {
                        "(64512)".into()
                    } else {
                        asn
                    }
                }));
                cols.push(col!("IPV4", |v| at(v, "/spec/bgp/ipv4Address")));
                cols.push(col!("IPV6", |v| at(v, "/spec/bgp/ipv6Address")));
            }
        }
        Kind::WorkloadEndpoint => {
            if wide {
                cols.push(col!("NAME", name));
            }
            cols.push(col!("WORKLOAD", |v| {
                let w = at(v, "/spec/workload");
                if w.is_empty() {
                    at(v, "/spec/pod")
                } else {
                    w
                }
            }));
            cols.push(col!("NODE", |v| at(v, "/spec/node")));
            cols.push(col!("NETWORKS", |v| at(v, "/spec/ipNetworks")));
            cols.push(col!("INTERFACE", |v| at(v, "/spec/interfaceName")));
            if wide {
                cols.push(col!("PROFILES", |v| at(v, "/spec/profiles")));
                cols.push(col!("NATS", |v| {
                    v.pointer("/spec/ipNATs")
                        .and_then(Value::as_array)
                        .map(|nats| {
                            nats.iter()
                                .map(|n| {
                                    format!("{}->{}", at(n, "/internalIP"), at(n, "/externalIP"))
                                })
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                }));
            }
        }
        Kind::Profile => {
            cols.push(col!("NAME", name));
            if wide {
                cols.push(col!("LABELS", |v| at(v, "/spec/labelsToApply")));
            }
        }
        Kind::NetworkPolicy | Kind::GlobalNetworkPolicy => {
            cols.push(col!("NAME", name));
            cols.push(col!("TIER", |v| {
                let t = at(v, "/spec/tier");
                if t.is_empty() {
                    "default".into()
                } else {
                    t
                }
            }));
            if wide {
                cols.push(col!("ORDER", |v| at(v, "/spec/order")));
                cols.push(col!("SELECTOR", |v| at(v, "/spec/selector")));
            }
        }
        Kind::HostEndpoint => {
            cols.push(col!("NAME", name));
            cols.push(col!("NODE", |v| at(v, "/spec/node")));
            if wide {
                cols.push(col!("INTERFACE", |v| at(v, "/spec/interfaceName")));
                cols.push(col!("IPS", |v| at(v, "/spec/expectedIPs")));
                cols.push(col!("PROFILES", |v| at(v, "/spec/profiles")));
            }
        }
    }
    cols
}

/// Renders resources of one kind as a table (headings even when empty).
pub fn render(kind: Kind, resources: &[Resource], width: Width, with_namespace: bool) -> String {
    let mut cols = columns(kind, width);
    if with_namespace && kind.namespaced() {
        cols.insert(0, col!("NAMESPACE", |v| at(v, "/metadata/namespace")));
    }
    let mut rows: Vec<Vec<String>> = vec![cols.iter().map(|c| c.heading.to_string()).collect()];
    for r in resources {
        let value = serde_json::to_value(r).unwrap_or(Value::Null);
        rows.push(cols.iter().map(|c| (c.cell)(&value)).collect());
    }
    align(&rows)
}

/// Left-aligns cells in columns separated by three spaces (calicoctl's
/// tabwriter padding), no trailing spaces.
pub fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A table in the style calicoctl uses for node status and IPAM
/// (tablewriter defaults): borders, headings centred, cells left-aligned,
/// one space of padding.
pub fn boxed<const N: usize>(headings: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headings.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule = {
        let mut s = String::from("+");
        for w in widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = rule.clone();
    out.push('|');
    for (h, w) in headings.iter().zip(widths) {
        let len = h.chars().count();
        let left = (w - len) / 2;
        let right = w - len - left;
        out.push_str(&format!(" {}{h}{} |", " ".repeat(left), " ".repeat(right)));
    }
    out.push('\n');
    out.push_str(&rule);
    for row in rows {
        out.push('|');
        for (cell, w) in row.iter().zip(widths) {
            out.push_str(&format!(" {cell:<w$} |"));
        }
        out.push('\n');
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_model::parse_documents;

    #[test]
    fn ippool_columns_like_calicoctl() {
        let pools = parse_documents(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pool-a}\nspec: {cidr: 10.0.0.0/16, natOutgoing: true, ipipMode: Always}\n---\n\
             apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\nspec: {cidr: 'fd00::/48', nodeSelector: 'rack == \"a\"'}\n",
        )
        .unwrap();
        assert_eq!(
            render(Kind::IPPool, &pools, Width::Normal, false),
            "NAME     CIDR          SELECTOR\n\
             pool-a   10.0.0.0/16   all()\n\
             v6       fd00::/48     rack == \"a\"\n"
        );
        assert_eq!(
            render(Kind::IPPool, &pools, Width::Wide, false),
            "NAME     CIDR          NAT     IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR\n\
             pool-a   10.0.0.0/16   true    Always     Never       false      false              all()\n\
             v6       fd00::/48     false   Never      Never       false      false              rack == \"a\"\n"
        );
    }

    #[test]
    fn namespaced_kinds_get_a_namespace_column_for_all_namespaces() {
        let policies = parse_documents(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: allow, namespace: prod}\nspec: {selector: all(), order: 10}\n",
        )
        .unwrap();
        assert_eq!(
            render(Kind::NetworkPolicy, &policies, Width::Wide, false),
            "NAME    TIER      ORDER   SELECTOR\nallow   default   10      all()\n"
        );
        assert_eq!(
            render(Kind::NetworkPolicy, &policies, Width::Normal, true),
            "NAMESPACE   NAME    TIER\nprod        allow   default\n"
        );
        assert_eq!(
            render(Kind::NetworkPolicy, &[], Width::Wide, false),
            "NAME   TIER   ORDER   SELECTOR\n"
        );
    }

    #[test]
    fn peers_show_global_or_node() {
        let peers = parse_documents(
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {peerIP: 192.0.2.1, asNumber: 65001}\n",
        )
        .unwrap();
        assert_eq!(
            render(Kind::BGPPeer, &peers, Width::Normal, false),
            "NAME   PEERIP      NODE       ASN\ntor    192.0.2.1   (global)   65001\n"
        );
    }
}

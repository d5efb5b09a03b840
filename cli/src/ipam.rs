//! `brindlectl ipam show|check|release`, over `brindle_datastore::ipam`.
//!
//! ```text
//! +----------+----------------+-----------+------------+--------------+
//! | GROUPING |      CIDR      | IPS TOTAL | IPS IN USE |   IPS FREE   |
//! +----------+----------------+-----------+------------+--------------+
//! | IP Pool  | 10.65.0.0/16   | 65536     | 5 (0%)     | 65531 (100%) |
//! | Block    | 10.65.79.0/26  | 64        | 5 (8%)     | 59 (92%)     |
//! +----------+----------------+-----------+------------+--------------+
//! ```
//!
//! Rendering is pure (`render_*`); the `async` functions only read or
//! write through [`Ipam`]. `check` reads only; what it finds can be saved as
//! a JSON report (`-o FILE`) and released later with `release
//! --from-report FILE`, which releases an address only if it is still held
//! by the same handle with the same block sequence number (so an address
//! reused since the check is left alone).

use std::collections::BTreeMap;
use std::net::IpAddr;

use brindle_datastore::ipam::{
    AllocationBlock, CheckReport, Conflict, Family, Ipam, IpamError, Leak, PoolUsage,
    ReleaseOptions, ReleaseOutcome, ReleaseRefused,
};
use brindle_datastore::keys;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::table::boxed;

/// `5 (8%)`: a count and its share of `total`, rounded.
fn with_percent(count: u128, total: u128) -> String {
    let pct = if total == 0 {
        0
    } else {
        count
            .saturating_mul(100)
            .saturating_add(total / 2)
            .checked_div(total)
            .unwrap_or(0)
    };
    format!("{count} ({pct}%)")
}

/// The usage table: one row per pool, and per block with `show_blocks`.
pub fn render_usage(pools: &[PoolUsage], show_blocks: bool) -> String {
    let mut rows = Vec::new();
    for p in pools {
        rows.push([
            "IP Pool".to_string(),
            p.cidr.to_string(),
            p.total.to_string(),
            with_percent(p.in_use, p.total),
            with_percent(p.free, p.total),
        ]);
        if show_blocks {
            for b in &p.blocks {
                rows.push([
                    "Block".to_string(),
                    b.cidr.to_string(),
                    b.total.to_string(),
                    with_percent(b.in_use, b.total),
                    with_percent(b.free, b.total),
                ]);
            }
        }
    }
    boxed(
        ["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
        &rows,
    )
}

/// `ipam show [--show-blocks]`.
pub async fn show(ipam: &Ipam, show_blocks: bool) -> Result<String, IpamError> {
    let usage = ipam.usage().await?;
    if usage.is_empty() {
        return Ok("No IP pools.\n".into());
    }
    Ok(render_usage(&usage, show_blocks))
}

/// What is known about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpInfo {
    pub ip: IpAddr,
    /// The pool containing it (name, CIDR).
    pub pool: Option<(String, IpNet)>,
    /// The block containing it and the node holding the block.
    pub block: Option<(IpNet, Option<String>)>,
    /// When allocated: its handle and attributes.
    pub allocation: Option<(Option<String>, BTreeMap<String, String>)>,
}

pub fn render_ip(info: &IpInfo) -> String {
    let mut out = String::new();
    match &info.allocation {
        Some(_) => out.push_str(&format!("IP {} is in use\n", info.ip)),
        None if info.pool.is_none() => {
            out.push_str(&format!("IP {} is not in any IP pool\n", info.ip));
        }
        None => out.push_str(&format!("IP {} is not assigned\n", info.ip)),
    }
    if let Some((name, cidr)) = &info.pool {
        out.push_str(&format!("  pool:   {name} ({cidr})\n"));
    }
    if let Some((block, node)) = &info.block {
        match node {
            Some(n) => out.push_str(&format!("  block:  {block} (affine to {n})\n")),
            None => out.push_str(&format!("  block:  {block} (no affinity)\n")),
        }
    }
    if let Some((handle, attrs)) = &info.allocation {
        out.push_str(&format!(
            "  handle: {}\n",
            handle.as_deref().unwrap_or("(none)")
        ));
        if !attrs.is_empty() {
            out.push_str("  attributes:\n");
            for (k, v) in attrs {
                out.push_str(&format!("    {k}: {v}\n"));
            }
        }
    }
    out
}

/// `ipam show --ip ADDR`.
pub async fn show_ip(ipam: &Ipam, ip: IpAddr) -> Result<IpInfo, IpamError> {
    let pool = ipam
        .pools()
        .await?
        .into_iter()
        .find(|p| p.net.contains(&ip))
        .map(|p| (p.name, p.net));
    let mut info = IpInfo {
        ip,
        pool,
        block: None,
        allocation: None,
    };
    let family = if ip.is_ipv4() { Family::V4 } else { Family::V6 };
    let listing = ipam.store().list(keys::blocks_prefix(family)).await?;
    for kv in &listing.kvs {
        let block: AllocationBlock =
            serde_json::from_slice(&kv.value).map_err(|e| IpamError::Corrupt {
                key: kv.key_str().into_owned(),
                reason: e.to_string(),
            })?;
        if !block.cidr.contains(&ip) {
            continue;
        }
        info.block = Some((block.cidr, block.affine_node().map(str::to_string)));
        info.allocation = block.allocations_view().find(|a| a.ip == ip).map(|a| {
            (
                a.attribute.and_then(|x| x.handle_id.clone()),
                a.attribute.map(|x| x.secondary.clone()).unwrap_or_default(),
            )
        });
        break;
    }
    Ok(info)
}

/// A saved `ipam check` result (`-o FILE`), read by `release --from-report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub allocated: usize,
    pub leaks: Vec<ReportedLeak>,
    pub conflicts: Vec<String>,
}

/// One leaked address in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedLeak {
    pub ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    pub block: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl From<&Leak> for ReportedLeak {
    fn from(l: &Leak) -> Self {
        ReportedLeak {
            ip: l.ip,
            handle: l.handle.clone(),
            sequence: l.sequence,
            block: l.block,
            node: l.node.clone(),
        }
    }
}

/// One line describing a conflict.
pub fn describe_conflict(c: &Conflict) -> String {
    // Undecodable documents are handled before the match so that its last
    // arm stays reachable: IPAM may grow kinds of conflict, shown by Debug.
    if let Conflict::Undecodable { key, reason } = c {
        return format!("{key} does not decode: {reason}");
    }
    match c {
        Conflict::DuplicateAddress { ip, blocks } => format!(
            "{ip} is in {} blocks: {}",
            blocks.len(),
            blocks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Conflict::InconsistentBlock { block, problems } => {
            format!("block {block} is inconsistent: {}", problems.join("; "))
        }
        Conflict::HandleMismatch {
            handle,
            recorded,
            actual,
        } => format!(
            "handle {handle} records {recorded:?} but the blocks hold {actual:?} (repairable)"
        ),
        Conflict::StaleAffinity {
            node, block, state, ..
        } => format!(
            "node {node} has a {state:?} claim on block {block} it does not own (repairable)"
        ),
        Conflict::MissingAffinity { node, block } => {
            format!("block {block} is affine to node {node}, which has no claim record for it (repairable)")
        }
        Conflict::BlockOutsidePools { block } => format!("block {block} is in no IP pool"),
        Conflict::InUseNotAllocated { ip, user } => format!(
            "{ip} is in use by {user} but not allocated in IPAM (another workload may be given it)"
        ),
        Conflict::InUseByOtherHandle { ip, user, holder } => format!(
            "{ip} is in use by {user} but allocated to {}",
            holder
                .as_deref()
                .map(|h| format!("handle {h}"))
                .unwrap_or_else(|| "no handle".into())
        ),
        Conflict::UsedTwice { ip, users } => {
            format!(
                "{ip} is in use by {} at once: {}",
                users.len(),
                users.join(", ")
            )
        }
        other => format!("{other:?}"),
    }
}

pub fn report_of(check: &CheckReport) -> Report {
    Report {
        allocated: check.allocated,
        leaks: check.leaks.iter().map(ReportedLeak::from).collect(),
        conflicts: check.conflicts.iter().map(describe_conflict).collect(),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `ipam check` output.
pub fn render_check(report: &Report) -> String {
    let mut out = String::from("Checking IPAM for inconsistencies...\n\n");
    out.push_str(&format!(
        "Found {}.\n",
        plural(report.allocated, "allocated IP", "allocated IPs")
    ));
    out.push_str(&format!(
        "Found {} (allocated to no live workload or node):\n",
        plural(report.leaks.len(), "leaked IP", "leaked IPs")
    ));
    for l in &report.leaks {
        out.push_str(&format!(
            "  {}  handle {}  block {}  node {}\n",
            l.ip,
            l.handle.as_deref().unwrap_or("(none)"),
            l.block,
            l.node.as_deref().unwrap_or("(unknown)")
        ));
    }
    out.push_str(&format!(
        "Found {}:\n",
        plural(report.conflicts.len(), "conflict", "conflicts")
    ));
    for c in &report.conflicts {
        out.push_str(&format!("  {c}\n"));
    }
    let problems = report.leaks.len() + report.conflicts.len();
    out.push_str(&format!(
        "Check complete; found {}.\n",
        plural(problems, "problem", "problems")
    ));
    out
}

/// `ipam check`: reads only.
pub async fn check(ipam: &Ipam) -> Result<Report, IpamError> {
    let live = ipam.live_handles_from_store().await?;
    let users = ipam.address_users_from_store().await?;
    Ok(report_of(&ipam.check_with_users(&live, &users).await?))
}

/// `ipam release --ip ...` or `--from-report`: each address released only
/// if still held as recorded (handle and sequence, when known).
pub async fn release(
    ipam: &Ipam,
    requests: &[ReleaseOptions],
) -> Result<ReleaseOutcome, IpamError> {
    ipam.release_ips(requests).await
}

/// Why an address was left alone, in words.
pub fn describe_refusal(why: &ReleaseRefused) -> String {
    match why {
        ReleaseRefused::OtherHandle(Some(h)) => format!("now held by handle {h}"),
        ReleaseRefused::OtherHandle(None) => "now held without a handle".into(),
        ReleaseRefused::SequenceMismatch { .. } => {
            "released and allocated again since it was recorded".into()
        }
    }
}

/// What to release for a saved report.
pub fn release_requests(report: &Report) -> Vec<ReleaseOptions> {
    report
        .leaks
        .iter()
        .map(|l| ReleaseOptions {
            ip: l.ip,
            handle: l.handle.clone(),
            sequence: l.sequence,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_datastore::ipam::BlockUsage;

    #[test]
    fn usage_table_like_calicoctl() {
        let pools = vec![PoolUsage {
            name: "default".into(),
            cidr: "10.65.0.0/16".parse().unwrap(),
            disabled: false,
            total: 65536,
            in_use: 5,
            free: 65531,
            blocks: vec![BlockUsage {
                cidr: "10.65.79.0/26".parse().unwrap(),
                node: Some("n1".into()),
                total: 64,
                in_use: 5,
                free: 59,
            }],
        }];
        assert_eq!(
            render_usage(&pools, true),
            "+----------+---------------+-----------+------------+--------------+\n\
             | GROUPING |     CIDR      | IPS TOTAL | IPS IN USE |   IPS FREE   |\n\
             +----------+---------------+-----------+------------+--------------+\n\
             | IP Pool  | 10.65.0.0/16  | 65536     | 5 (0%)     | 65531 (100%) |\n\
             | Block    | 10.65.79.0/26 | 64        | 5 (8%)     | 59 (92%)     |\n\
             +----------+---------------+-----------+------------+--------------+\n"
        );
        assert!(!render_usage(&pools, false).contains("Block"));
    }

    #[test]
    fn ip_lines() {
        let info = IpInfo {
            ip: "10.65.79.3".parse().unwrap(),
            pool: Some(("default".into(), "10.65.0.0/16".parse().unwrap())),
            block: Some(("10.65.79.0/26".parse().unwrap(), Some("n1".into()))),
            allocation: Some((
                Some("net.c1".into()),
                BTreeMap::from([("node".to_string(), "n1".to_string())]),
            )),
        };
        assert_eq!(
            render_ip(&info),
            "IP 10.65.79.3 is in use\n  pool:   default (10.65.0.0/16)\n  block:  10.65.79.0/26 (affine to n1)\n  handle: net.c1\n  attributes:\n    node: n1\n"
        );
        let free = IpInfo {
            allocation: None,
            block: None,
            ..info
        };
        assert_eq!(
            render_ip(&free),
            "IP 10.65.79.3 is not assigned\n  pool:   default (10.65.0.0/16)\n"
        );
    }

    #[test]
    fn check_report_round_trips_and_reads() {
        let report = Report {
            allocated: 3,
            leaks: vec![ReportedLeak {
                ip: "10.0.0.5".parse().unwrap(),
                handle: Some("net.gone".into()),
                sequence: Some(4),
                block: "10.0.0.0/26".parse().unwrap(),
                node: Some("n1".into()),
            }],
            conflicts: vec![],
        };
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
        assert_eq!(
            render_check(&report),
            "Checking IPAM for inconsistencies...\n\nFound 3 allocated IPs.\nFound 1 leaked IP (allocated to no live workload or node):\n  10.0.0.5  handle net.gone  block 10.0.0.0/26  node n1\nFound 0 conflicts:\nCheck complete; found 1 problem.\n"
        );
        assert_eq!(release_requests(&report)[0].sequence, Some(4));
    }
}

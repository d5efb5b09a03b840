//! `brindle-ipam`, the IPAM plugin (addresses for a container from Brindle
//! IPAM, by handle), and how the main plugin runs an IPAM step: in process
//! when the IPAM type is ours, else by delegating to the plugin on
//! `CNI_PATH` as libcni's `invoke.Delegate*` do.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use brindle_datastore::ipam::{AutoAssignArgs, HandleDoc, Ipam, ReleaseOptions};
use brindle_datastore::Datastore;
use ipnet::IpNet;
use serde_json::Value;
use tracing::{info, info_span, Instrument};

use super::errors::{internal, ipam_error, open_store, store_error};
use super::identity::WorkloadIdentity;
use super::lock::LOCK_HELD_ENV;
use super::spec::{
    CniEnv, CniError, CniResult, Command, ErrorCode, IpConfig, NetConf, CNI_VERSION,
};

// ----- IPAM plugin ---------------------------------------------------------

pub(super) async fn run_ipam(env: &CniEnv, conf: &NetConf) -> Result<Option<Value>, CniError> {
    let store = open_store(conf).await?;
    match ipam_command(env, conf, env.command, &store).await?.result {
        Some(result) => Ok(Some(to_value(result.for_version(&conf.cni_version))?)),
        None => Ok(None),
    }
}

/// What an IPAM step answered.
pub(super) struct IpamOutcome {
    pub(super) result: Option<CniResult>,
    /// The addresses this call allocated (empty when the handle already held
    /// them: a repeated ADD); `None` when another IPAM plugin answered and
    /// only its own DEL can undo it.
    pub(super) allocated_now: Option<Vec<IpNet>>,
}

impl IpamOutcome {
    fn answer(result: Option<CniResult>) -> Self {
        IpamOutcome {
            result,
            allocated_now: Some(Vec::new()),
        }
    }
}

/// What `brindle-ipam` does for `command`, on an open store: the IPAM
/// plugin's body, also run in-process by `brindle-cni` (see [`ipam_step`]).
async fn ipam_command(
    env: &CniEnv,
    conf: &NetConf,
    command: Command,
    store: &Datastore,
) -> Result<IpamOutcome, CniError> {
    let id = WorkloadIdentity::new(env, conf)?;
    let ipam = Ipam::new(store.clone());
    match command {
        Command::Add => {
            let assigned = ipam_add(&ipam, conf, &id).await?;
            info!(handle = %id.handle, addresses = ?assigned.addresses,
                  allocated_now = ?assigned.allocated_now, "assigned");
            Ok(IpamOutcome {
                result: Some(CniResult {
                    cni_version: CNI_VERSION.into(),
                    interfaces: Vec::new(),
                    ips: assigned
                        .addresses
                        .into_iter()
                        .map(|address| IpConfig {
                            address,
                            gateway: None,
                            interface: None,
                            version: None,
                        })
                        .collect(),
                    routes: Vec::new(),
                    dns: Value::Null,
                }),
                allocated_now: Some(assigned.allocated_now),
            })
        }
        Command::Del => {
            let released = ipam
                .release_by_handle(&id.handle)
                .await
                .map_err(|e| ipam_error("releasing addresses", e))?;
            info!(handle = %id.handle, ?released, "released");
            Ok(IpamOutcome::answer(None))
        }
        Command::Check => {
            let key = brindle_datastore::keys::handle_key(&id.handle);
            let doc = ipam
                .store()
                .get_json::<HandleDoc>(key)
                .await
                .map_err(|e| store_error("reading the IPAM handle", e))?;
            match doc {
                Some(d) if !d.value.block.is_empty() => Ok(IpamOutcome::answer(None)),
                _ => Err(internal(
                    "CHECK",
                    format!("no addresses are allocated to handle {}", id.handle),
                )),
            }
        }
        Command::Version => version_answered_earlier(),
    }
}

/// [`run`] answers VERSION before dispatching; this only keeps the
/// matches exhaustive without a panic.
pub(super) fn version_answered_earlier<T>() -> Result<T, CniError> {
    Err(internal("VERSION", "answered before dispatch"))
}

/// The IPAM plugin this binary is when installed under a second name.
pub const OWN_IPAM_TYPE: &str = "brindle-ipam";

/// The IPAM step of the main plugin. When `ipam.type` is our own
/// `brindle-ipam`, its code runs here on the store the plugin already
/// opened: the same result as running the binary (which is this binary),
/// without a second process start and store open (a third of an ADD's
/// time). Any other IPAM plugin is found on `CNI_PATH` and run as the
/// spec says ([`delegate`]).
pub(super) async fn ipam_step(
    env: &CniEnv,
    conf: &NetConf,
    command: Command,
    stdin: &[u8],
    store: &Datastore,
) -> Result<IpamOutcome, CniError> {
    if conf.ipam_type()? == OWN_IPAM_TYPE {
        let span = info_span!("ipam", in_process = true);
        return ipam_command(env, conf, command, store)
            .instrument(span)
            .await;
    }
    let name = match command {
        Command::Add => "ADD",
        Command::Del => "DEL",
        Command::Check => "CHECK",
        Command::Version => return version_answered_earlier(),
    };
    Ok(IpamOutcome {
        result: delegate(env, conf, name, stdin)?,
        allocated_now: None,
    })
}

/// Undoes a failed ADD's allocation: only what this call allocated, each
/// address only while `handle` still holds it.
pub(super) async fn release_allocated(
    ipam: &Ipam,
    handle: &str,
    nets: &[IpNet],
) -> Result<(), CniError> {
    if nets.is_empty() {
        return Ok(());
    }
    let opts: Vec<ReleaseOptions> = nets
        .iter()
        .map(|n| ReleaseOptions {
            ip: n.addr(),
            handle: Some(handle.to_owned()),
            sequence: None,
        })
        .collect();
    ipam.release_ips(&opts)
        .await
        .map(drop)
        .map_err(|e| ipam_error("releasing addresses", e))
}

/// What [`ipam_add`] gave the workload.
struct Assignment {
    addresses: Vec<IpNet>,
    /// The part of `addresses` this call allocated.
    allocated_now: Vec<IpNet>,
}

async fn ipam_add(
    ipam: &Ipam,
    conf: &NetConf,
    id: &WorkloadIdentity,
) -> Result<Assignment, CniError> {
    let mut attrs = BTreeMap::new();
    attrs.insert("namespace".to_owned(), id.namespace.clone());
    if id.orchestrator == "k8s" {
        attrs.insert("pod".to_owned(), id.workload.clone());
    }
    // A runtime retrying ADD for the same container gets the same
    // addresses, not a second set, and a failure of the retry must not free
    // them.
    let held = addresses_of_handle(ipam, &id.handle).await?;
    let fixed = conf.fixed_ips()?;
    if !fixed.is_empty() {
        let mut assigned = Assignment {
            addresses: Vec::new(),
            allocated_now: Vec::new(),
        };
        for ip in fixed {
            if let Some(net) = held.iter().find(|n| n.addr() == ip) {
                assigned.addresses.push(*net);
                continue;
            }
            match ipam
                .assign_ip(ip, &id.handle, &id.node, attrs.clone())
                .await
            {
                Ok(net) => {
                    assigned.addresses.push(net);
                    assigned.allocated_now.push(net);
                }
                Err(e) => {
                    // All or nothing, like auto-assignment.
                    let _ = release_allocated(ipam, &id.handle, &assigned.allocated_now).await;
                    return Err(ipam_error(&format!("assigning {ip}"), e));
                }
            }
        }
        return Ok(assigned);
    }
    if !held.is_empty() {
        return Ok(Assignment {
            addresses: held,
            allocated_now: Vec::new(),
        });
    }
    let (v4, v6) = conf.families()?;
    let ipam_conf = conf.ipam.clone().unwrap_or_default();
    let mut pools = Vec::new();
    for text in ipam_conf.ipv4_pools.iter().chain(&ipam_conf.ipv6_pools) {
        pools.push(text.parse::<IpNet>().map_err(|_| {
            CniError::new(
                ErrorCode::InvalidConfig,
                format!("ipam pool {text:?} is not a CIDR"),
            )
        })?);
    }
    let args = AutoAssignArgs {
        num4: usize::from(v4),
        num6: usize::from(v6),
        handle: id.handle.clone(),
        attrs,
        node: id.node.clone(),
        pools,
        ..AutoAssignArgs::workload_v4(&id.handle, &id.node)
    };
    let got = ipam
        .auto_assign(&args)
        .await
        .map_err(|e| ipam_error("assigning addresses", e))?;
    let addresses: Vec<IpNet> = got.ipv4.into_iter().chain(got.ipv6).collect();
    Ok(Assignment {
        allocated_now: addresses.clone(),
        addresses,
    })
}

/// What `handle` holds now (its handle document names the blocks).
async fn addresses_of_handle(ipam: &Ipam, handle: &str) -> Result<Vec<IpNet>, CniError> {
    use brindle_datastore::ipam::{host_net, AllocationBlock};
    use brindle_datastore::keys;
    let store = ipam.store();
    let Some(doc) = store
        .get_json::<HandleDoc>(keys::handle_key(handle))
        .await
        .map_err(|e| store_error("reading the IPAM handle", e))?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for cidr in doc.value.block.keys() {
        let Some(net) = cidr
            .parse::<IpNet>()
            .ok()
            .or_else(|| keys::parse_cidr_segment(cidr))
        else {
            continue;
        };
        if let Some(block) = store
            .get_json::<AllocationBlock>(keys::block_key(&net))
            .await
            .map_err(|e| store_error("reading an IPAM block", e))?
        {
            out.extend(block.value.ips_of_handle(handle).into_iter().map(host_net));
        }
    }
    out.sort_by_key(|n| (n.addr().is_ipv6(), *n));
    Ok(out)
}

pub(super) fn to_value(result: CniResult) -> Result<Value, CniError> {
    serde_json::to_value(result).map_err(|e| internal("encoding the result", e))
}

// ----- delegation ----------------------------------------------------------

/// Finds `plugin` on `CNI_PATH` (first directory that has it).
pub fn find_plugin(path: &[String], plugin: &str) -> Result<PathBuf, CniError> {
    if plugin.contains('/') {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            format!("plugin type {plugin:?} must be a bare name"),
        ));
    }
    path.iter()
        .map(|dir| Path::new(dir).join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "plugin {plugin:?} not found in CNI_PATH {:?}",
                    path.join(":")
                ),
            )
        })
}

/// Runs the IPAM plugin as `invoke.DelegateAdd/Del/Check` do: same
/// environment (with `command`), same stdin; its error object is ours.
fn delegate(
    env: &CniEnv,
    conf: &NetConf,
    command: &str,
    stdin: &[u8],
) -> Result<Option<CniResult>, CniError> {
    let plugin = find_plugin(&env.path, conf.ipam_type()?)?;
    let mut child = std::process::Command::new(&plugin)
        .env("CNI_COMMAND", command)
        .env(LOCK_HELD_ENV, std::process::id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| internal(&format!("starting {}", plugin.display()), e))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin)
            .map_err(|e| CniError::new(ErrorCode::IoFailure, format!("IPAM stdin: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| internal(&format!("waiting for {}", plugin.display()), e))?;
    if !out.status.success() {
        let from_plugin = serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| CniError::from_json(&v));
        return Err(from_plugin.unwrap_or_else(|| {
            internal(
                &format!("IPAM plugin {} {command}", plugin.display()),
                format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            )
        }));
    }
    if command == "ADD" {
        return CniResult::parse(&out.stdout).map(Some);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_are_found_on_cni_path_by_bare_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("brindle-ipam"), b"").unwrap();
        let path = vec![
            "/nonexistent".to_owned(),
            dir.path().to_string_lossy().into_owned(),
        ];
        assert_eq!(
            find_plugin(&path, "brindle-ipam").unwrap(),
            dir.path().join("brindle-ipam")
        );
        assert_eq!(find_plugin(&path, "other").unwrap_err().code, 7);
        assert_eq!(find_plugin(&path, "../x").unwrap_err().code, 7);
    }
}

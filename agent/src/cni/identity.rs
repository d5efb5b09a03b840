//! Who a workload is, from the CNI environment and network config as
//! Calico derives it: node, orchestrator, workload, namespace, the veth's
//! name seed, the WorkloadEndpoint's name and the IPAM handle.

use brindle_datastore::keys::resource_key;
use brindle_model::resource::Kind;

use super::spec::{endpoint_name, CniEnv, CniError, ErrorCode, NetConf};

/// Who the workload is, derived from the environment like Calico does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    pub node: String,
    pub orchestrator: String,
    /// Pod name (k8s) or container id.
    pub workload: String,
    pub namespace: String,
    /// What the host veth name is hashed from.
    pub veth_id: String,
    pub endpoint_name: String,
    /// IPAM handle `<network name>.<container id>` (what
    /// [`Ipam::live_handles_from_store`](brindle_datastore::ipam::Ipam::live_handles_from_store) expects).
    pub handle: String,
}

impl WorkloadIdentity {
    pub fn new(env: &CniEnv, conf: &NetConf) -> Result<Self, CniError> {
        let node = match &conf.nodename {
            Some(n) if !n.is_empty() => n.clone(),
            _ => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .ok_or_else(|| {
                    CniError::new(ErrorCode::InvalidConfig, "nodename unset, no host name")
                })?,
        };
        let pod = env.args.get("K8S_POD_NAME").filter(|p| !p.is_empty());
        let pod_ns = env.args.get("K8S_POD_NAMESPACE").filter(|p| !p.is_empty());
        let (orchestrator, workload, namespace) = match (pod, pod_ns) {
            (Some(pod), Some(ns)) => ("k8s", pod.clone(), ns.clone()),
            _ => ("cni", env.container_id.clone(), "default".to_owned()),
        };
        let veth_id = if orchestrator == "k8s" {
            format!("{namespace}.{workload}")
        } else {
            env.container_id.clone()
        };
        // A second interface of one workload needs its own veth.
        let veth_id = if env.ifname == "eth0" {
            veth_id
        } else {
            format!("{veth_id}.{}", env.ifname)
        };
        Ok(WorkloadIdentity {
            endpoint_name: endpoint_name(&node, orchestrator, &workload, &env.ifname),
            handle: format!("{}.{}", conf.name, env.container_id),
            node,
            orchestrator: orchestrator.to_owned(),
            workload,
            namespace,
            veth_id,
        })
    }

    pub(super) fn endpoint_key(&self) -> String {
        resource_key(
            Kind::WorkloadEndpoint,
            Some(&self.namespace),
            &self.endpoint_name,
        )
    }
}

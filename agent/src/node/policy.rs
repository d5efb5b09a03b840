//! Policy: the stored resources → [`policy_model`] → [`compile_with`] → the
//! [`Applier`] (iptables + ipsets), including the natOutgoing masquerade
//! rule the compiler renders for pools.
//!
//! [`PolicyResources::decode`] and [`rulesets`] are pure; [`PolicyEngine`]
//! is the I/O (the applier runs iptables-restore and libipset in the calling
//! thread's network namespace, so the daemon calls it on a blocking thread
//! of its own runtime, which lives in the host namespace). On shutdown the
//! rules are left in place, like the routes.
//!
//! Failsafe ports (always accepted to and from the host when host endpoints
//! are protected) default to Calico's list and are configured as Felix's
//! are, by environment: `FELIX_FAILSAFEINBOUNDHOSTPORTS` and
//! `FELIX_FAILSAFEOUTBOUNDHOSTPORTS`, e.g. `tcp:22, udp:68, tcp:179`, or
//! `none` ([`config_from`]).

use std::sync::{Arc, Mutex};

use brindle_datastore::KeyValue;
use brindle_model::resource::{
    GlobalNetworkPolicy, HostEndpoint, IPPool, NetworkPolicy, Profile, WorkloadEndpoint,
};
use brindle_model::Resource;
use brindle_policy::apply::{Applier, ApplyError, IptablesFlavor, PlanStats, SystemBackend};
use brindle_policy::compile::{parse_failsafe_ports, EndpointToHost};
use brindle_policy::from_model::{policy_model, ClusterView};
use brindle_policy::{compile_with, Config, Ruleset, SelectorIndex};

use tracing::{debug, warn};

use super::cache::decode_resource;

/// The resources the policy engine reads.
#[derive(Debug, Clone, Default)]
pub struct PolicyResources {
    pub workload_endpoints: Vec<WorkloadEndpoint>,
    pub host_endpoints: Vec<HostEndpoint>,
    pub network_policies: Vec<NetworkPolicy>,
    pub global_network_policies: Vec<GlobalNetworkPolicy>,
    pub profiles: Vec<Profile>,
    pub pools: Vec<IPPool>,
}

impl PolicyResources {
    /// Picks the policy-relevant resources out of the resource mirror;
    /// undecodable documents are skipped (the cluster decoder reports them).
    pub fn decode<'a>(resources: impl IntoIterator<Item = &'a KeyValue>) -> Self {
        let decoded: Vec<Arc<Resource>> = resources
            .into_iter()
            .filter_map(|kv| decode_resource(kv).ok().map(Arc::new))
            .collect();
        Self::from_decoded(&decoded)
    }

    /// The kinds policy needs, from resources decoded already (the node's
    /// [`super::cache::Decoded`] mirror): copies, no parsing.
    pub fn from_decoded(resources: &[Arc<Resource>]) -> Self {
        let mut out = PolicyResources::default();
        for resource in resources {
            match &**resource {
                Resource::WorkloadEndpoint(w) => out.workload_endpoints.push(w.clone()),
                Resource::HostEndpoint(h) => out.host_endpoints.push(h.clone()),
                Resource::NetworkPolicy(p) => out.network_policies.push(p.clone()),
                Resource::GlobalNetworkPolicy(p) => out.global_network_policies.push(p.clone()),
                Resource::Profile(p) => out.profiles.push(p.clone()),
                Resource::IPPool(p) => out.pools.push(p.clone()),
                _ => {}
            }
        }
        out
    }
}

/// The rulesets node `node` should have (default configuration).
pub fn rulesets(node: &str, resources: &PolicyResources) -> [Ruleset; 2] {
    rulesets_with(
        node,
        resources,
        &Config::default(),
        &mut SelectorIndex::default(),
    )
}

/// The compiler configuration from the failsafe settings (the values of
/// `FELIX_FAILSAFEINBOUNDHOSTPORTS` / `FELIX_FAILSAFEOUTBOUNDHOSTPORTS`);
/// an unset one keeps Calico's default list, an invalid one is logged and
/// keeps it too (as Felix does with an invalid parameter).
pub fn config_from(inbound: Option<&str>, outbound: Option<&str>) -> Config {
    let mut config = Config::default();
    let settings = [
        (
            Config::FAILSAFE_INBOUND_ENV,
            inbound,
            &mut config.failsafe_inbound,
        ),
        (
            Config::FAILSAFE_OUTBOUND_ENV,
            outbound,
            &mut config.failsafe_outbound,
        ),
    ];
    for (name, value, list) in settings {
        let Some(text) = value else { continue };
        match parse_failsafe_ports(text) {
            Ok(ports) => *list = ports,
            Err(error) => tracing::warn!(%error, "{name} ignored; using the default list"),
        }
    }
    config
}

/// calico-node's variable for what happens to traffic from a workload to
/// its own host after the workload's egress policy.
pub const ENDPOINT_TO_HOST_ENV: &str = "FELIX_DEFAULTENDPOINTTOHOSTACTION";

/// Felix's `DefaultEndpointToHostAction` (`DROP`, `RETURN`, `ACCEPT`, any
/// case); `None` for anything else.
pub fn endpoint_to_host(value: &str) -> Option<EndpointToHost> {
    match value.trim().to_ascii_uppercase().as_str() {
        "DROP" => Some(EndpointToHost::Drop),
        "RETURN" => Some(EndpointToHost::Return),
        "ACCEPT" => Some(EndpointToHost::Accept),
        _ => None,
    }
}

/// [`config_from`] this process's environment, with
/// `FELIX_DEFAULTENDPOINTTOHOSTACTION` (Calico's manifests set `ACCEPT`,
/// which e.g. a workload peering with its node by BGP needs; unset, Drop,
/// Felix's own default).
pub fn config_from_env() -> Config {
    let inbound = std::env::var(Config::FAILSAFE_INBOUND_ENV).ok();
    let outbound = std::env::var(Config::FAILSAFE_OUTBOUND_ENV).ok();
    let mut config = config_from(inbound.as_deref(), outbound.as_deref());
    if let Ok(value) = std::env::var(ENDPOINT_TO_HOST_ENV) {
        match endpoint_to_host(&value) {
            Some(action) => config.endpoint_to_host = action,
            None => tracing::warn!(
                value,
                "{ENDPOINT_TO_HOST_ENV} is not DROP, RETURN or ACCEPT; ignored (Drop)"
            ),
        }
    }
    config
}

/// [`rulesets`] with `config`, reusing the selector answers of earlier
/// compiles.
pub fn rulesets_with(
    node: &str,
    resources: &PolicyResources,
    config: &Config,
    index: &mut SelectorIndex,
) -> [Ruleset; 2] {
    let view = ClusterView {
        node,
        workload_endpoints: &resources.workload_endpoints,
        host_endpoints: &resources.host_endpoints,
        network_policies: &resources.network_policies,
        global_network_policies: &resources.global_network_policies,
        profiles: &resources.profiles,
        pools: &resources.pools,
    };
    compile_with(&policy_model(&view), config, index)
}

/// The applier with the host's iptables flavour.
pub struct PolicyEngine {
    applier: Applier<SystemBackend>,
    last: Option<[Ruleset; 2]>,
    index: SelectorIndex,
    config: Config,
}

impl PolicyEngine {
    /// The host's iptables flavour, failsafe ports from the environment.
    pub fn new() -> Self {
        Self::with_config(config_from_env())
    }

    /// The host's iptables flavour and `config`.
    pub fn with_config(config: Config) -> Self {
        Self {
            applier: Applier::new(SystemBackend::new(IptablesFlavor::detect())),
            last: None,
            index: SelectorIndex::default(),
            config,
        }
    }

    /// Compiles `resources` for `node` (incrementally) and applies the
    /// result as [`PolicyEngine::apply`] does. Blocking.
    pub fn sync(
        &mut self,
        node: &str,
        resources: &PolicyResources,
        resync: bool,
    ) -> Result<Option<PlanStats>, ApplyError> {
        let desired = rulesets_with(node, resources, &self.config, &mut self.index);
        self.apply(desired, resync)
    }

    /// Applies `desired` if it differs from what was last applied, or
    /// re-reads the kernel and repairs it when `resync`. Blocking.
    pub fn apply(
        &mut self,
        desired: [Ruleset; 2],
        resync: bool,
    ) -> Result<Option<PlanStats>, ApplyError> {
        if !resync && self.last.as_ref() == Some(&desired) {
            return Ok(None);
        }
        let stats = if resync {
            self.applier.resync(&desired)?
        } else {
            self.applier.apply(&desired)?
        };
        self.last = Some(desired);
        Ok(Some(stats))
    }
}

impl Default for PolicyEngine {
    fn default() -> Self {
        Self::new()
    }
}

/// What the policy task is asked to apply: the latest resources (older
/// ones are skipped) and how many resyncs were asked for so far (a count, so
/// a resync is not lost when newer resources replace its request).
#[derive(Debug, Clone, Default)]
pub(super) struct PolicyWork {
    pub(super) resources: Arc<Vec<Arc<Resource>>>,
    pub(super) resyncs_asked: u64,
}

/// Applies policy for `node` whenever the work changes, one sync at a time,
/// always from the latest resources: a burst of changes is one sync.
pub(super) async fn policy_task(node: String, mut work: tokio::sync::watch::Receiver<PolicyWork>) {
    let engine = Arc::new(Mutex::new(PolicyEngine::new()));
    let mut resyncs_done = 0;
    while work.changed().await.is_ok() {
        let next = work.borrow_and_update().clone();
        let resync = next.resyncs_asked > resyncs_done;
        resyncs_done = next.resyncs_asked;
        let engine = engine.clone();
        let node = node.clone();
        let result = tokio::task::spawn_blocking(move || {
            let resources = PolicyResources::from_decoded(&next.resources);
            engine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sync(&node, &resources, resync)
        })
        .await;
        match result {
            Ok(Ok(Some(stats))) => debug!(?stats, resync, "policy applied"),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => warn!(%error, "applying policy failed"),
            Err(error) => warn!(%error, "policy task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use brindle_policy::ir::Protocol;

    use super::*;

    #[test]
    fn endpoint_to_host_takes_felixs_values_in_any_case() {
        assert_eq!(endpoint_to_host("ACCEPT"), Some(EndpointToHost::Accept));
        assert_eq!(endpoint_to_host("Return"), Some(EndpointToHost::Return));
        assert_eq!(endpoint_to_host(" drop "), Some(EndpointToHost::Drop));
        assert_eq!(endpoint_to_host("allow"), None);
    }

    #[test]
    fn failsafe_settings_replace_calicos_defaults() {
        let config = config_from(Some("tcp:2222, udp:5000"), Some("none"));
        assert_eq!(
            config.failsafe_inbound,
            vec![(Protocol::Tcp, 2222), (Protocol::Udp, 5000)]
        );
        assert!(config.failsafe_outbound.is_empty());
    }

    #[test]
    fn unset_or_invalid_failsafe_settings_keep_the_defaults() {
        let defaults = Config::default();
        let config = config_from(None, Some("tcp:0.0.0.0/0:22"));
        assert_eq!(config.failsafe_inbound, defaults.failsafe_inbound);
        assert_eq!(config.failsafe_outbound, defaults.failsafe_outbound);
    }
}

//! The typed resources: [`Kind`], the generic [`Object`] envelope
//! (`apiVersion`, `kind`, `metadata`, `spec`), and the [`Resource`] enum over
//! every kind, with its storage key, defaults, validation and serialization.
//!
//! Serialization writes `apiVersion` as it was given (Calico's
//! `projectcalico.org/v3` or Brindle's `brindle.dev/v1`), the canonical kind
//! name, and omits unset optional fields, so `get -o yaml` shows what was
//! applied plus defaults and store-set metadata.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bgp::{BFDConfigurationSpec, BGPConfigurationSpec, BGPFilterSpec, BGPPeerSpec};
use crate::endpoint::{HostEndpointSpec, NodeSpec, NodeStatus, WorkloadEndpointSpec};
use crate::ipam::{IPAMConfigSpec, IPPoolSpec};
use crate::meta::{ApiVersion, ObjectMeta};
use crate::policy::{GlobalNetworkPolicySpec, NetworkPolicySpec, ProfileSpec};
use crate::validate::{
    check_label_name, check_labels, check_permissive_name, check_policy_name, check_subdomain_name,
    FieldError, Problems,
};

/// Namespace given to namespaced resources that name none (as calicoctl).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Every resource kind Brindle stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(clippy::upper_case_acronyms)]
pub enum Kind {
    /// `IPPool`.
    IPPool,
    /// `IPAMConfiguration` (also accepted as `IPAMConfig`).
    IPAMConfiguration,
    /// `BGPConfiguration`.
    BGPConfiguration,
    /// `BGPPeer`.
    BGPPeer,
    /// `BGPFilter`.
    BGPFilter,
    /// `BFDConfiguration` (`brindle.dev/v1` only).
    BFDConfiguration,
    /// `Node`.
    Node,
    /// `WorkloadEndpoint` (namespaced).
    WorkloadEndpoint,
    /// `Profile`.
    Profile,
    /// `NetworkPolicy` (namespaced).
    NetworkPolicy,
    /// `GlobalNetworkPolicy`.
    GlobalNetworkPolicy,
    /// `HostEndpoint`.
    HostEndpoint,
}

impl Kind {
    /// All kinds, in apply order (configuration and pools before the things
    /// that use them).
    pub const ALL: [Kind; 12] = [
        Kind::IPAMConfiguration,
        Kind::IPPool,
        Kind::BGPConfiguration,
        Kind::BFDConfiguration,
        Kind::BGPFilter,
        Kind::BGPPeer,
        Kind::Node,
        Kind::Profile,
        Kind::GlobalNetworkPolicy,
        Kind::NetworkPolicy,
        Kind::HostEndpoint,
        Kind::WorkloadEndpoint,
    ];

    /// The `kind:` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IPPool => "IPPool",
            Kind::IPAMConfiguration => "IPAMConfiguration",
            Kind::BGPConfiguration => "BGPConfiguration",
            Kind::BGPPeer => "BGPPeer",
            Kind::BGPFilter => "BGPFilter",
            Kind::BFDConfiguration => "BFDConfiguration",
            Kind::Node => "Node",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::Profile => "Profile",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::HostEndpoint => "HostEndpoint",
        }
    }

    /// Lower-case plural, used in keys and accepted by the CLI.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::IPPool => "ippools",
            Kind::IPAMConfiguration => "ipamconfigurations",
            Kind::BGPConfiguration => "bgpconfigurations",
            Kind::BGPPeer => "bgppeers",
            Kind::BGPFilter => "bgpfilters",
            Kind::BFDConfiguration => "bfdconfigurations",
            Kind::Node => "nodes",
            Kind::WorkloadEndpoint => "workloadendpoints",
            Kind::Profile => "profiles",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::GlobalNetworkPolicy => "globalnetworkpolicies",
            Kind::HostEndpoint => "hostendpoints",
        }
    }

    /// Whether resources of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, Kind::WorkloadEndpoint | Kind::NetworkPolicy)
    }

    /// Parses a document's `kind:` value (exact, plus the `IPAMConfig` alias).
    pub fn from_kind_name(text: &str) -> Option<Kind> {
        if text == "IPAMConfig" {
            return Some(Kind::IPAMConfiguration);
        }
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Parses a CLI kind argument: any case, singular or plural, or a short
    /// name (`pool`, `peer`, `gnp`, `np`, `wep`, `hep`, `ipamconfig`).
    pub fn from_cli_name(text: &str) -> Option<Kind> {
        let lower = text.to_ascii_lowercase();
        let short = match lower.as_str() {
            "pool" | "pools" | "ippool" => Some(Kind::IPPool),
            "ipamconfig" | "ipamconfigs" | "ipamconfiguration" => Some(Kind::IPAMConfiguration),
            "bgpconfig" | "bgpconfigs" | "bgpconfiguration" => Some(Kind::BGPConfiguration),
            "peer" | "peers" | "bgppeer" => Some(Kind::BGPPeer),
            "filter" | "filters" | "bgpfilter" => Some(Kind::BGPFilter),
            "bfdconfig" | "bfdconfigs" | "bfdconfiguration" => Some(Kind::BFDConfiguration),
            "node" | "no" => Some(Kind::Node),
            "wep" | "weps" | "workloadendpoint" => Some(Kind::WorkloadEndpoint),
            "profile" | "pro" | "network" | "networks" => Some(Kind::Profile),
            "np" | "networkpolicy" | "policy" | "policies" => Some(Kind::NetworkPolicy),
            "gnp" | "globalnetworkpolicy" => Some(Kind::GlobalNetworkPolicy),
            "hep" | "heps" | "hostendpoint" => Some(Kind::HostEndpoint),
            _ => None,
        };
        short.or_else(|| Kind::ALL.into_iter().find(|k| k.plural() == lower))
    }

    /// Names every accepted `kind:` value, for error messages.
    pub fn expected_list() -> String {
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The envelope every kind shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Object<S> {
    /// The `apiVersion` the document was written in.
    pub api_version: ApiVersion,
    /// Name, namespace, labels, store metadata.
    pub metadata: ObjectMeta,
    /// The kind's specification.
    pub spec: S,
}

impl<S: Default> Object<S> {
    /// A resource named `name` with an empty spec, under Calico's apiVersion.
    pub fn named(name: &str) -> Self {
        Object {
            api_version: ApiVersion::CalicoV3,
            metadata: ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            spec: S::default(),
        }
    }
}

/// A `Node`: like [`Object`] plus the status the node reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The `apiVersion` the document was written in.
    pub api_version: ApiVersion,
    /// Name (the hostname), labels, store metadata.
    pub metadata: ObjectMeta,
    /// Addresses, AS, tunnel settings.
    pub spec: NodeSpec,
    /// Written by the node.
    pub status: Option<NodeStatus>,
}

/// `IPPool`.
pub type IPPool = Object<IPPoolSpec>;
/// `IPAMConfiguration`.
pub type IPAMConfiguration = Object<IPAMConfigSpec>;
/// `BGPConfiguration`.
pub type BGPConfiguration = Object<BGPConfigurationSpec>;
/// `BGPPeer`.
pub type BGPPeer = Object<BGPPeerSpec>;
/// `BGPFilter`.
pub type BGPFilter = Object<BGPFilterSpec>;
/// `BFDConfiguration`.
pub type BFDConfiguration = Object<BFDConfigurationSpec>;
/// `WorkloadEndpoint`.
pub type WorkloadEndpoint = Object<WorkloadEndpointSpec>;
/// `Profile`.
pub type Profile = Object<ProfileSpec>;
/// `NetworkPolicy`.
pub type NetworkPolicy = Object<NetworkPolicySpec>;
/// `GlobalNetworkPolicy`.
pub type GlobalNetworkPolicy = Object<GlobalNetworkPolicySpec>;
/// `HostEndpoint`.
pub type HostEndpoint = Object<HostEndpointSpec>;

/// Any resource.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::upper_case_acronyms, clippy::large_enum_variant)]
pub enum Resource {
    /// An address pool.
    IPPool(IPPool),
    /// IPAM settings.
    IPAMConfiguration(IPAMConfiguration),
    /// BGP settings.
    BGPConfiguration(BGPConfiguration),
    /// A BGP peering.
    BGPPeer(BGPPeer),
    /// A route filter.
    BGPFilter(BGPFilter),
    /// BFD timers.
    BFDConfiguration(BFDConfiguration),
    /// A host.
    Node(Node),
    /// A container/VM interface.
    WorkloadEndpoint(WorkloadEndpoint),
    /// A network / security profile.
    Profile(Profile),
    /// A namespaced policy.
    NetworkPolicy(NetworkPolicy),
    /// A cluster-wide policy.
    GlobalNetworkPolicy(GlobalNetworkPolicy),
    /// A host interface.
    HostEndpoint(HostEndpoint),
}

/// Runs `$body` with `$o` bound to the variant's object (all variants have
/// `api_version`, `metadata`, `spec`).
macro_rules! each {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            Resource::IPPool($o) => $body,
            Resource::IPAMConfiguration($o) => $body,
            Resource::BGPConfiguration($o) => $body,
            Resource::BGPPeer($o) => $body,
            Resource::BGPFilter($o) => $body,
            Resource::BFDConfiguration($o) => $body,
            Resource::Node($o) => $body,
            Resource::WorkloadEndpoint($o) => $body,
            Resource::Profile($o) => $body,
            Resource::NetworkPolicy($o) => $body,
            Resource::GlobalNetworkPolicy($o) => $body,
            Resource::HostEndpoint($o) => $body,
        }
    };
}

impl Resource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::IPPool(_) => Kind::IPPool,
            Resource::IPAMConfiguration(_) => Kind::IPAMConfiguration,
            Resource::BGPConfiguration(_) => Kind::BGPConfiguration,
            Resource::BGPPeer(_) => Kind::BGPPeer,
            Resource::BGPFilter(_) => Kind::BGPFilter,
            Resource::BFDConfiguration(_) => Kind::BFDConfiguration,
            Resource::Node(_) => Kind::Node,
            Resource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Resource::Profile(_) => Kind::Profile,
            Resource::NetworkPolicy(_) => Kind::NetworkPolicy,
            Resource::GlobalNetworkPolicy(_) => Kind::GlobalNetworkPolicy,
            Resource::HostEndpoint(_) => Kind::HostEndpoint,
        }
    }

    /// Metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        each!(self, o => &o.metadata)
    }

    /// Mutable metadata (the store sets resourceVersion, uid, ...).
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each!(self, o => &mut o.metadata)
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// `metadata.namespace` (namespaced kinds only).
    pub fn namespace(&self) -> Option<&str> {
        self.metadata().namespace.as_deref()
    }

    /// The apiVersion it was written in.
    pub fn api_version(&self) -> ApiVersion {
        each!(self, o => o.api_version)
    }

    /// Changes the apiVersion it will be written in.
    pub fn set_api_version(&mut self, version: ApiVersion) {
        each!(self, o => o.api_version = version)
    }

    /// What makes this resource itself (its datastore key is built from it
    /// by `brindle_datastore::keys`).
    pub fn id(&self) -> ResourceId {
        ResourceId {
            kind: self.kind(),
            namespace: self
                .namespace()
                .filter(|_| self.kind().namespaced())
                .map(str::to_string),
            name: self.name().to_string(),
        }
    }

    /// `Kind 'name'` or `Kind 'ns/name'`, for messages.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} '{}/{}'", self.kind(), ns, self.name()),
            None => format!("{} '{}'", self.kind(), self.name()),
        }
    }

    /// Applies the kind's defaults (idempotent): a namespaced resource
    /// without a namespace goes to `default`, then the spec defaults.
    pub fn defaulted(&mut self) {
        if self.kind().namespaced() && self.metadata().namespace.is_none() {
            self.metadata_mut().namespace = Some(DEFAULT_NAMESPACE.into());
        }
        match self {
            Resource::IPPool(o) => o.spec.defaulted(),
            Resource::IPAMConfiguration(o) => o.spec.defaulted(),
            Resource::BGPConfiguration(o) => o.spec.defaulted(&o.metadata),
            Resource::BGPPeer(o) => o.spec.defaulted(),
            Resource::BGPFilter(o) => o.spec.defaulted(),
            Resource::BFDConfiguration(o) => o.spec.defaulted(),
            Resource::Node(o) => o.spec.defaulted(),
            Resource::WorkloadEndpoint(o) => o.spec.defaulted(),
            Resource::Profile(o) => o.spec.defaulted(),
            Resource::NetworkPolicy(o) => o.spec.defaulted(),
            Resource::GlobalNetworkPolicy(o) => o.spec.defaulted(),
            Resource::HostEndpoint(o) => o.spec.defaulted(),
        }
    }

    /// Every problem with this resource on its own (metadata and spec).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems::default();
        let meta = self.metadata();
        let kind = self.kind();
        if meta.name.is_empty() {
            p.add("metadata.name", "required");
        } else if matches!(kind, Kind::Profile | Kind::WorkloadEndpoint) {
            check_permissive_name(&mut p, "metadata.name", &meta.name);
        } else if matches!(kind, Kind::NetworkPolicy | Kind::GlobalNetworkPolicy) {
            check_policy_name(&mut p, "metadata.name", &meta.name);
        } else {
            check_subdomain_name(&mut p, "metadata.name", &meta.name);
        }
        match (&meta.namespace, kind.namespaced()) {
            (Some(ns), true) => check_label_name(&mut p, "metadata.namespace", ns),
            (Some(_), false) => p.add(
                "metadata.namespace",
                format!("{kind} is cluster-scoped and takes no namespace"),
            ),
            (None, _) => {}
        }
        check_labels(&mut p, "metadata.labels", &meta.labels);
        match self {
            Resource::IPPool(o) => o.spec.validate(meta, &mut p),
            Resource::IPAMConfiguration(o) => o.spec.validate(meta, &mut p),
            Resource::BGPConfiguration(o) => o.spec.validate(meta, &mut p),
            Resource::BGPPeer(o) => {
                o.spec.validate(meta, &mut p);
                o.spec.validate_extensions(o.api_version, &mut p);
            }
            Resource::BGPFilter(o) => o.spec.validate(meta, &mut p),
            Resource::BFDConfiguration(o) => o.spec.validate(meta, o.api_version, &mut p),
            Resource::Node(o) => o.spec.validate(meta, &mut p),
            Resource::WorkloadEndpoint(o) => o.spec.validate(meta, &mut p),
            Resource::Profile(o) => o.spec.validate(meta, &mut p),
            Resource::NetworkPolicy(o) => o.spec.validate(meta, &mut p),
            Resource::GlobalNetworkPolicy(o) => o.spec.validate(meta, &mut p),
            Resource::HostEndpoint(o) => o.spec.validate(meta, &mut p),
        }
        p.list
    }

    /// YAML document (no leading `---`).
    pub fn to_yaml(&self) -> String {
        // Serializing these plain data types cannot fail: every map key is a
        // string and there are no non-finite floats after validation; fall
        // back to an explanatory comment rather than panicking.
        serde_yaml_ng::to_string(self).unwrap_or_else(|e| format!("# unserializable: {e}\n"))
    }

    /// Pretty JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// A resource's identity: kind, namespace (namespaced kinds only), name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

/// Writes several resources as one multi-document YAML stream.
pub fn to_yaml_documents(resources: &[Resource]) -> String {
    resources
        .iter()
        .map(Resource::to_yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Writes several resources as a JSON `kind: List` object.
pub fn to_json_list(resources: &[Resource]) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct List<'a> {
        api_version: &'static str,
        kind: &'static str,
        items: &'a [Resource],
    }
    let api_version = resources
        .first()
        .map_or(ApiVersion::CalicoV3, Resource::api_version)
        .as_str();
    serde_json::to_string_pretty(&List {
        api_version,
        kind: "List",
        items: resources,
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, S> {
    api_version: ApiVersion,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    spec: &'a S,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a NodeStatus>,
}

impl Serialize for Resource {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        let kind = self.kind().as_str();
        match self {
            Resource::Node(o) => Envelope {
                api_version: o.api_version,
                kind,
                metadata: &o.metadata,
                spec: &o.spec,
                status: o.status.as_ref(),
            }
            .serialize(s),
            other => each!(other, o => Envelope {
                api_version: o.api_version,
                kind,
                metadata: &o.metadata,
                spec: &o.spec,
                status: None,
            }
            .serialize(s)),
        }
    }
}

/// Reads one resource through the same path as [`crate::parse_one`]
/// (routing on `kind`, defaults, validation), so a `Resource` inside another
/// serde type is as checked as one read from a file. Errors carry the full
/// document message.
impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_yaml_ng::Value::deserialize(d)?;
        let text = serde_yaml_ng::to_string(&value).map_err(serde::de::Error::custom)?;
        crate::document::parse_one(&text).map_err(serde::de::Error::custom)
    }
}

/// The shape a document is read into once its kind is known.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct IncomingObject<S> {
    pub(crate) api_version: ApiVersion,
    #[allow(dead_code)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) spec: S,
}

impl<S> From<IncomingObject<S>> for Object<S> {
    fn from(o: IncomingObject<S>) -> Self {
        Object {
            api_version: o.api_version,
            metadata: o.metadata,
            spec: o.spec,
        }
    }
}

/// [`IncomingObject`] for `Node`, which also has a status.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct IncomingNode {
    pub(crate) api_version: ApiVersion,
    #[allow(dead_code)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) spec: NodeSpec,
    #[serde(default)]
    pub(crate) status: Option<NodeStatus>,
}

impl From<IncomingNode> for Node {
    fn from(o: IncomingNode) -> Self {
        Node {
            api_version: o.api_version,
            metadata: o.metadata,
            spec: o.spec,
            status: o.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_keys() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_kind_name(k.as_str()), Some(k));
            assert_eq!(Kind::from_cli_name(k.plural()), Some(k));
            assert_eq!(Kind::from_cli_name(&k.as_str().to_lowercase()), Some(k));
        }
        assert_eq!(
            Kind::from_kind_name("IPAMConfig"),
            Some(Kind::IPAMConfiguration)
        );
        assert_eq!(Kind::from_cli_name("gnp"), Some(Kind::GlobalNetworkPolicy));
        let pool = Resource::IPPool(IPPool::named("pool-a"));
        assert_eq!(pool.id().namespace, None);
        let mut np = Resource::NetworkPolicy(NetworkPolicy::named("allow-web"));
        np.defaulted();
        assert_eq!(np.namespace(), Some("default"));
        assert_eq!(
            np.id(),
            ResourceId {
                kind: Kind::NetworkPolicy,
                namespace: Some("default".into()),
                name: "allow-web".into()
            }
        );
        assert_eq!(np.describe(), "NetworkPolicy 'default/allow-web'");
    }

    #[test]
    fn serde_round_trip_inside_other_types() {
        let mut pool = IPPool::named("pool-a");
        pool.spec.cidr = "10.0.0.0/16".into();
        let mut r = Resource::IPPool(pool);
        r.defaulted();
        r.metadata_mut().resource_version = Some("42".into());
        let json = serde_json::to_string(&vec![r.clone()]).unwrap();
        let back: Vec<Resource> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![r]);
        let bad = json.replace("10.0.0.0/16", "10.0.0.0/99");
        let err = serde_json::from_str::<Vec<Resource>>(&bad).unwrap_err();
        assert!(err.to_string().contains("spec.cidr"), "{err}");
    }

    #[test]
    fn metadata_rules() {
        let mut pool = IPPool::named("Bad_Name");
        pool.metadata.namespace = Some("x".into());
        pool.spec.cidr = "10.0.0.0/16".into();
        let errors: Vec<String> = Resource::IPPool(pool)
            .validate()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("metadata.name: 'Bad_Name' is not a valid name"));
        assert_eq!(
            errors[1],
            "metadata.namespace: IPPool is cluster-scoped and takes no namespace"
        );
    }
}

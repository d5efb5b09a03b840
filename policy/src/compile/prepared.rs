//! The preparation step both families share: profiles (defined or implied
//! by a network name), effective labels and policies in order ([`Prepared`]),
//! and the per-family view of an endpoint the compiler builds from them
//! ([`Member`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::index::SelectorIndex;
use crate::ir::{Policy, PolicyModel, Profile};

/// What both families share: profiles (defined or implied by a network
/// name), effective labels, policies in order. Built once per compile.
pub(super) struct Prepared<'m> {
    pub(super) model: &'m PolicyModel,
    pub(super) profiles: BTreeMap<String, Profile>,
    /// Effective labels of `model.endpoints` then `model.remote_endpoints`.
    pub(super) endpoint_labels: Vec<(String, Cow<'m, BTreeMap<String, String>>)>,
    /// Effective labels of `model.host_endpoints`.
    pub(super) host_labels: Vec<(String, BTreeMap<String, String>)>,
    pub(super) policies: Vec<&'m Policy>,
}

impl<'m> Prepared<'m> {
    pub(super) fn new(model: &'m PolicyModel) -> Self {
        let mut profiles: BTreeMap<String, Profile> = model
            .profiles
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect();
        let referenced = model
            .endpoints
            .iter()
            .chain(&model.remote_endpoints)
            .flat_map(|e| &e.profiles)
            .chain(model.host_endpoints.iter().flat_map(|h| &h.profiles));
        for name in referenced {
            profiles
                .entry(name.clone())
                .or_insert_with(|| Profile::default_network(name));
        }
        // A profile's labelsToApply, then the endpoint's own on top; most
        // endpoints get none from their profiles and keep their own map.
        let effective = |own: &'m BTreeMap<String, String>, nets: &[String]| {
            let inherited: Vec<&BTreeMap<String, String>> = nets
                .iter()
                .filter_map(|n| profiles.get(n))
                .map(|p| &p.labels_to_apply)
                .filter(|l| !l.is_empty())
                .collect();
            if inherited.is_empty() {
                return Cow::Borrowed(own);
            }
            let mut labels = BTreeMap::new();
            for l in inherited {
                labels.extend(l.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            labels.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            Cow::Owned(labels)
        };
        let endpoint_labels = model
            .endpoints
            .iter()
            .chain(&model.remote_endpoints)
            .map(|e| (format!("w:{}", e.name), effective(&e.labels, &e.profiles)))
            .collect();
        let host_labels = model
            .host_endpoints
            .iter()
            .map(|h| {
                let labels = effective(&h.labels, &h.profiles).into_owned();
                (format!("h:{}", h.name), labels)
            })
            .collect();
        let mut policies: Vec<&Policy> = model.policies.iter().collect();
        policies.sort_by(|a, b| {
            let order = |p: &Policy| p.order.unwrap_or(f64::INFINITY);
            order(a)
                .total_cmp(&order(b))
                .then_with(|| a.name.cmp(&b.name))
        });
        Prepared {
            model,
            profiles,
            endpoint_labels,
            host_labels,
            policies,
        }
    }

    /// Brings `index` up to date with every endpoint's effective labels.
    pub(super) fn refresh(&self, index: &mut SelectorIndex) {
        index.refresh(
            self.endpoint_labels
                .iter()
                .map(|(k, l)| (k.as_str(), l.as_ref()))
                .chain(self.host_labels.iter().map(|(k, l)| (k.as_str(), l))),
        );
    }
}

/// An endpoint as the compiler sees it: effective labels, this family's
/// addresses.
pub(super) struct Member<'m> {
    /// Stable identity for the selector index.
    pub(super) key: &'m str,
    pub(super) labels: &'m BTreeMap<String, String>,
    pub(super) addrs: Vec<String>,
    pub(super) profiles: &'m [String],
    pub(super) interface: &'m str,
    pub(super) local: bool,
}

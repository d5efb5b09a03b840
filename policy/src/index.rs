//! Which endpoints each selector matches, kept across compiles.
//!
//! Compiling from scratch evaluates every selector against every endpoint:
//! with 1,000 endpoints and a few hundred distinct selectors that is the
//! bulk of a compile. A [`SelectorIndex`] remembers the answers, keyed by a
//! fingerprint of each endpoint's effective labels, so a recompile
//! evaluates only what changed: a new or relabelled endpoint against the
//! known selectors, a new selector against all endpoints. The result is
//! identical to evaluating from scratch (tested below and by the golden
//! files, which compile without an index).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use brindle_model::selector::Selector;

/// Selector → matching endpoint keys, with the label fingerprints the
/// answers were computed from.
#[derive(Debug, Default, Clone)]
pub struct SelectorIndex {
    fingerprints: HashMap<String, u64>,
    matches: HashMap<Selector, HashSet<String>>,
    /// [`Selector::unique_id`] of each selector (a SHA-224 of its canonical
    /// form, which names its ipset).
    ids: HashMap<Selector, String>,
    used: HashSet<Selector>,
}

fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    let mut h = DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

impl SelectorIndex {
    /// Brings the index up to date with the current endpoints (key →
    /// effective labels): endpoints that are new or whose labels changed are
    /// re-evaluated against every remembered selector; removed ones are
    /// forgotten.
    pub fn refresh<'a>(
        &mut self,
        endpoints: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) {
        let mut seen = HashSet::new();
        let mut changed: Vec<(&str, &BTreeMap<String, String>)> = Vec::new();
        for (key, labels) in endpoints {
            seen.insert(key);
            let print = fingerprint(labels);
            if self.fingerprints.get(key) != Some(&print) {
                self.fingerprints.insert(key.to_string(), print);
                changed.push((key, labels));
            }
        }
        let removed: Vec<String> = self
            .fingerprints
            .keys()
            .filter(|k| !seen.contains(k.as_str()))
            .cloned()
            .collect();
        for key in &removed {
            self.fingerprints.remove(key);
        }
        if changed.is_empty() && removed.is_empty() {
            return;
        }
        for (selector, members) in &mut self.matches {
            for key in &removed {
                members.remove(key);
            }
            for (key, labels) in &changed {
                if selector.matches(*labels) {
                    members.insert((*key).to_string());
                } else {
                    members.remove(*key);
                }
            }
        }
    }

    /// The keys of the endpoints `selector` matches, evaluating it against
    /// all of them the first time it is seen.
    pub fn matching<'a>(
        &mut self,
        selector: &Selector,
        endpoints: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) -> &HashSet<String> {
        // Clone the selector only the first time it is seen (this runs for
        // every policy and rule selector of every compile).
        if !self.used.contains(selector) {
            self.used.insert(selector.clone());
        }
        if !self.matches.contains_key(selector) {
            let keys = endpoints
                .into_iter()
                .filter(|(_, labels)| selector.matches(*labels))
                .map(|(key, _)| key.to_string())
                .collect();
            self.matches.insert(selector.clone(), keys);
        }
        &self.matches[selector]
    }

    /// The answer for `selector` if [`SelectorIndex::matching`] computed it.
    pub fn known(&self, selector: &Selector) -> Option<&HashSet<String>> {
        self.matches.get(selector)
    }

    /// `selector`'s [`Selector::unique_id`], computed once.
    pub fn unique_id(&mut self, selector: &Selector) -> &str {
        if !self.used.contains(selector) {
            self.used.insert(selector.clone());
        }
        if !self.ids.contains_key(selector) {
            self.ids.insert(selector.clone(), selector.unique_id());
        }
        &self.ids[selector]
    }

    /// Forgets selectors not asked about since the last call, so the index
    /// does not grow with every selector ever compiled.
    pub fn prune(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.matches.retain(|s, _| used.contains(s));
        self.ids.retain(|s, _| used.contains(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn follows_relabels_additions_and_removals() {
        let sel = Selector::parse("role == 'db'").unwrap();
        let a = labels(&[("role", "db")]);
        let b = labels(&[("role", "web")]);
        let mut index = SelectorIndex::default();
        let eps = vec![("a", &a), ("b", &b)];
        index.refresh(eps.clone());
        assert_eq!(index.matching(&sel, eps.clone()).len(), 1);

        let b2 = labels(&[("role", "db")]);
        let c = labels(&[("role", "db")]);
        let eps = vec![("b", &b2), ("c", &c)];
        index.refresh(eps.clone());
        let got: HashSet<&str> = index
            .matching(&sel, eps.clone())
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            got,
            HashSet::from(["b", "c"]),
            "a removed, b relabelled, c added"
        );

        index.prune();
        index.prune();
        assert!(index.matches.is_empty(), "unused selectors are forgotten");
    }
}

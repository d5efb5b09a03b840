//! `-n/--namespace` on file input: calicoctl's rule is that the flag gives a
//! namespace to namespaced resources that name none, and that a resource
//! naming another namespace is an error.
//!
//! The model fills a missing namespace with `default` while parsing, so
//! whether a document named one is read here from the raw documents, split
//! and expanded (arrays, `List`s) in the same order the model reads them.
//! Only used on input the model has already accepted.

use std::collections::HashSet;

use brindle_datastore::resources::{Refusal, RefusalKind, ResourceError};
use brindle_model::document::Origin;
use brindle_model::Resource;
use serde_yaml_ng::Value;

/// For every resource of a valid input, in order: the namespace its
/// document wrote, if any. `None` when the input cannot be matched up with
/// `count` resources (then `-n` cannot be honoured safely).
pub fn written_namespaces(text: &str, count: usize) -> Option<Vec<Option<String>>> {
    let mut out = Vec::new();
    for doc in split_yaml_text(text) {
        match serde_yaml_ng::from_str::<Value>(&doc).ok()? {
            Value::Null => {}
            Value::Sequence(items) => out.extend(items.iter().map(namespace_of)),
            Value::Mapping(map) => {
                let is_list = map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"));
                match (is_list, map.get("items")) {
                    (true, Some(Value::Sequence(items))) => {
                        out.extend(items.iter().map(namespace_of));
                    }
                    (true, _) => {}
                    (false, _) => out.push(namespace_of(&Value::Mapping(map))),
                }
            }
            _ => return None,
        }
    }
    (out.len() == count).then_some(out)
}

fn namespace_of(item: &Value) -> Option<String> {
    item.get("metadata")?
        .get("namespace")?
        .as_str()
        .map(str::to_string)
}

/// The YAML document split the model uses: `---` at column 0 followed by
/// whitespace or the end of the line.
fn split_yaml_text(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        let is_marker =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        if is_marker {
            docs.push(line[3..].trim_start_matches([' ', '\t']).to_string());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
        }
    }
    docs
}

/// Puts namespaced resources that named no namespace into `namespace`;
/// returns, per resource index, why one cannot go there.
pub fn apply_flag(
    resources: &mut [Resource],
    written: &[Option<String>],
    namespace: &str,
) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    for (i, (resource, written)) in resources.iter_mut().zip(written).enumerate() {
        if !resource.kind().namespaced() {
            continue;
        }
        match written {
            None => resource.metadata_mut().namespace = Some(namespace.to_string()),
            Some(ns) if ns == namespace => {}
            Some(ns) => problems.push((
                i,
                format!("metadata.namespace: '{ns}' does not match --namespace '{namespace}'"),
            )),
        }
        for p in resource.validate() {
            if p.field == "metadata.namespace" {
                problems.push((i, p.to_string()));
            }
        }
    }
    problems
}

/// Applies `-n` to parsed input (see the module docs) and re-checks
/// that no two resources now share a key.
pub fn override_namespace(
    text: &str,
    resources: &mut [Resource],
    origins: &[Origin],
    namespace: &str,
) -> Result<(), ResourceError> {
    let refusal = |i: usize, resource: &Resource, reason: String| Refusal {
        origin: origins.get(i).copied(),
        resource: resource.describe(),
        reason,
        why: RefusalKind::Other,
    };
    let Some(written) = written_namespaces(text, resources.len()) else {
        return Err(ResourceError::Refused(vec![Refusal {
            origin: None,
            resource: "input".into(),
            why: RefusalKind::Other,
            reason: "cannot tell which documents name a namespace; \
                     set metadata.namespace in the file instead of using --namespace"
                .into(),
        }]));
    };
    let problems = apply_flag(resources, &written, namespace);
    let mut refusals: Vec<Refusal> = problems
        .into_iter()
        .map(|(i, reason)| refusal(i, &resources[i], reason))
        .collect();
    let mut seen = HashSet::new();
    for (i, r) in resources.iter().enumerate() {
        if !seen.insert(r.id()) {
            refusals.push(refusal(i, r, "is defined twice".into()));
        }
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(ResourceError::Refused(refusals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_model::parse_documents;

    const NP: &str =
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec: {}\n";

    #[test]
    fn finds_written_namespaces_in_every_shape() {
        let text = format!(
            "# leading comment\n{NP}---\n{}--- \n[{{apiVersion: projectcalico.org/v3, kind: Profile, metadata: {{name: x}}}}]\n---\napiVersion: v1\nkind: List\nitems:\n- {{apiVersion: projectcalico.org/v3, kind: NetworkPolicy, metadata: {{name: q, namespace: b}}}}\n---\n",
            NP.replace("name: p", "name: p\n  namespace: a")
        );
        let parsed = parse_documents(&text).unwrap();
        assert_eq!(
            written_namespaces(&text, parsed.len()),
            Some(vec![None, Some("a".into()), None, Some("b".into())])
        );
        assert_eq!(written_namespaces(&text, 3), None);
    }

    #[test]
    fn the_flag_fills_and_checks() {
        let text = format!(
            "{NP}---\n{}",
            NP.replace("name: p", "name: q\n  namespace: other")
        );
        let mut parsed = parse_documents(&text).unwrap();
        let written = written_namespaces(&text, parsed.len()).unwrap();
        let problems = apply_flag(&mut parsed, &written, "prod");
        assert_eq!(parsed[0].namespace(), Some("prod"));
        assert_eq!(
            problems,
            [(
                1,
                "metadata.namespace: 'other' does not match --namespace 'prod'".to_string()
            )]
        );
        let mut parsed = parse_documents(NP).unwrap();
        let problems = apply_flag(&mut parsed, &[None], "Not_A_Label");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].1.starts_with("metadata.namespace: "),
            "{problems:?}"
        );
    }
}

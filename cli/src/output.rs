//! `get -o yaml|json`: exactly the resource when there is one, as calicoctl
//! prints a single resource; a `kind: List` holding them otherwise. Both
//! forms read back with `apply -f`.

use brindle_model::meta::ApiVersion;
use brindle_model::resource::to_json_list;
use brindle_model::Resource;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: &'a [Resource],
}

fn api_version_of(resources: &[Resource]) -> &'static str {
    resources
        .first()
        .map_or(ApiVersion::CalicoV3, Resource::api_version)
        .as_str()
}

/// YAML: the resource, or a `kind: List`.
pub fn yaml(resources: &[Resource]) -> String {
    if let [one] = resources {
        return one.to_yaml();
    }
    let list = List {
        api_version: api_version_of(resources),
        kind: "List",
        items: resources,
    };
    // Plain data with string keys: cannot fail; say so rather than panic.
    serde_yaml_ng::to_string(&list).unwrap_or_else(|e| format!("# unserializable: {e}\n"))
}

/// JSON: the resource, or a `kind: List`.
pub fn json(resources: &[Resource]) -> String {
    let mut text = match resources {
        [one] => one.to_json(),
        many => to_json_list(many),
    };
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_model::parse_documents;

    const TWO: &str = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.0.0.0/16}\n---\n\
                       apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 10.1.0.0/16}\n";

    #[test]
    fn one_is_the_resource_several_are_a_list_and_both_read_back() {
        let two = parse_documents(TWO).unwrap();
        let one = &two[..1];
        assert!(yaml(one).starts_with("apiVersion: projectcalico.org/v3\nkind: IPPool\n"));
        let list = yaml(&two);
        assert!(
            list.starts_with("apiVersion: projectcalico.org/v3\nkind: List\nitems:\n"),
            "{list}"
        );
        assert_eq!(parse_documents(&list).unwrap(), two);
        assert_eq!(parse_documents(&json(&two)).unwrap(), two);
        assert_eq!(parse_documents(&json(one)).unwrap(), one);
        assert_eq!(parse_documents(&yaml(&[])).unwrap(), vec![]);
    }
}

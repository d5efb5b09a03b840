use super::*;

fn errors(text: &str) -> Vec<String> {
    match parse_documents(text) {
        Ok(r) => panic!("expected errors, parsed {r:?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool-a
spec:
  cidr: 10.0.0.0/16
";

#[test]
fn a_calico_pool_is_read_and_defaulted() {
    let all = parse_documents(POOL).unwrap();
    let Resource::IPPool(pool) = &all[0] else {
        panic!("{all:?}")
    };
    assert_eq!(pool.spec.block_size, Some(26));
    assert_eq!(pool.api_version, ApiVersion::CalicoV3);
    let yaml = all[0].to_yaml();
    assert!(
        yaml.starts_with("apiVersion: projectcalico.org/v3\nkind: IPPool\n"),
        "{yaml}"
    );
    assert_eq!(parse_documents(&yaml).unwrap(), all);
}

#[test]
fn brindle_api_version_is_kept() {
    let text = POOL.replace("projectcalico.org/v3", "brindle.dev/v1");
    let all = parse_documents(&text).unwrap();
    assert_eq!(all[0].api_version(), ApiVersion::BrindleV1);
    assert!(all[0].to_yaml().starts_with("apiVersion: brindle.dev/v1\n"));
}

#[test]
fn errors_name_document_kind_name_field() {
    let text = format!(
        "{POOL}---\n{}---\n{}",
        POOL.replace("pool-a", "pool-b")
            .replace("10.0.0.0/16", "10.1.0.0/16"),
        POOL.replace("pool-a", "pool-c")
            .replace("10.0.0.0/16", "10.2.0.0/16\n  blockSize: 33")
    );
    assert_eq!(
        errors(&text),
        ["document 3 (IPPool 'pool-c'): spec.blockSize: 33 is out of range 20..32"]
    );
}

#[test]
fn unknown_fields_are_errors_with_paths() {
    let text = POOL.replace("cidr:", "blockSiz: 26\n  cidr:");
    let got = errors(&text);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with(
            "document 1 (IPPool 'pool-a'): spec.blockSiz: unknown field (expected one of"
        ),
        "{got:?}"
    );
    let got = errors(&POOL.replace("metadata:", "metdata: {}\nmetadata:"));
    assert!(got[0].contains(": metdata: unknown field"), "{got:?}");
}

#[test]
fn all_errors_are_collected() {
    let text = "kind: Nope\napiVersion: projectcalico.org/v3\n---\n\
                    apiVersion: v1\nkind: IPPool\nmetadata: {name: x}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: y}\nspec: {cidr: bogus}\n";
    let got = errors(text);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].starts_with("document 1: kind: unknown kind 'Nope'"));
    assert!(got[1].starts_with("document 2 (IPPool 'x'): apiVersion: unsupported apiVersion 'v1'"));
    assert_eq!(
        got[2],
        "document 3 (IPPool 'y'): spec.cidr: 'bogus' is not a valid CIDR"
    );
}

#[test]
fn overlapping_pools_name_both() {
    let text = format!(
        "{POOL}---\n{}",
        POOL.replace("pool-a", "pool-b")
            .replace("10.0.0.0/16", "10.0.5.0/24")
    );
    assert_eq!(
            errors(&text),
            ["document 2 (IPPool 'pool-b'): spec.cidr: 10.0.5.0/24 overlaps IPPool 'pool-a' (10.0.0.0/16) in document 1"]
        );
}

#[test]
fn apply_against_stored_pools() {
    let stored = parse_documents(POOL).unwrap();
    // Re-applying the same pool is fine.
    assert_eq!(parse_documents_against(POOL, &stored).unwrap(), stored);
    let moved = POOL.replace("10.0.0.0/16", "10.9.0.0/16");
    assert_eq!(
            parse_documents_against(&moved, &stored).unwrap_err().to_string(),
            "document 1 (IPPool 'pool-a'): spec.cidr: the CIDR of an existing pool cannot change (10.0.0.0/16 -> 10.9.0.0/16); create a new pool instead"
        );
    let other = POOL
        .replace("pool-a", "pool-b")
        .replace("10.0.0.0/16", "10.0.64.0/18");
    assert_eq!(
            parse_documents_against(&other, &stored).unwrap_err().to_string(),
            "document 1 (IPPool 'pool-b'): spec.cidr: 10.0.64.0/18 overlaps existing IPPool 'pool-a' (10.0.0.0/16)"
        );
}

#[test]
fn json_object_array_and_lists() {
    let obj = r#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"p"},"spec":{"cidr":"10.0.0.0/16"}}"#;
    assert_eq!(parse_documents(obj).unwrap().len(), 1);
    let arr = format!(
        "[{obj}, {}]",
        obj.replace("\"p\"", "\"q\"")
            .replace("10.0.0.0", "10.9.0.0")
    );
    assert_eq!(parse_documents(&arr).unwrap().len(), 2);
    let list = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{obj}]}}"#);
    assert_eq!(parse_documents(&list).unwrap().len(), 1);
    let typed_list = "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- metadata: {name: p}\n  spec: {cidr: 10.0.0.0/16}\n- metadata: {name: q}\n  spec: {cidr: 10.0.0.0/33}\n";
    assert_eq!(
        errors(typed_list),
        ["document 1 item 2 (IPPool 'q'): spec.cidr: '10.0.0.0/33' is not a valid CIDR"]
    );
    let all = parse_documents(&crate::resource::to_json_list(
        &parse_documents(&arr).unwrap(),
    ))
    .unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn type_errors_give_the_input_line() {
    let text = format!(
        "{POOL}---\n{}",
        POOL.replace(
            "  cidr: 10.0.0.0/16",
            "  cidr: 10.1.0.0/16\n  blockSize: big"
        )
        .replace("pool-a", "pool-b")
    );
    let got = errors(&text);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("document 2 (IPPool 'pool-b'): spec.blockSize: invalid type"),
        "{got:?}"
    );
    assert!(got[0].ends_with("(line 14)"), "{got:?}");
}

#[test]
fn wrong_types_and_enum_values_name_the_field() {
    let got = errors(&POOL.replace(
        "cidr: 10.0.0.0/16",
        "cidr: 10.0.0.0/16\n  ipipMode: Sometimes",
    ));
    assert!(
        got[0].starts_with(
            "document 1 (IPPool 'pool-a'): spec.ipipMode: unknown variant `Sometimes`"
        ),
        "{got:?}"
    );
    let got = errors(&POOL.replace(
        "cidr: 10.0.0.0/16",
        "cidr: 10.0.0.0/16\n  natOutgoing: maybe",
    ));
    assert!(got[0].contains("spec.natOutgoing: invalid type"), "{got:?}");
}

#[test]
fn scalars_are_read_as_written() {
    let text = "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: w\n  labels:\n    version: 1.10\n    flag: true\nspec:\n  containerID: 1337495556942031415926535\n--- # trailing comment\n";
    let all = parse_documents(text).unwrap();
    let Resource::WorkloadEndpoint(w) = &all[0] else {
        panic!("{all:?}")
    };
    assert_eq!(w.metadata.labels["version"], "1.10");
    assert_eq!(w.metadata.labels["flag"], "true");
    assert_eq!(
        w.spec.container_id.as_deref(),
        Some("1337495556942031415926535")
    );
    assert_eq!(parse_documents(&all[0].to_yaml()).unwrap(), all);
}

#[test]
fn duplicates_and_syntax_errors() {
    let got = errors(&format!("{POOL}---\n{POOL}"));
    assert_eq!(
            got,
            ["document 2 (IPPool 'pool-a'): metadata.name: IPPool 'pool-a' is defined twice (first in document 1)"]
        );
    let got = errors("apiVersion: [unclosed\n");
    assert!(
        got[0].starts_with("document 1: invalid YAML/JSON"),
        "{got:?}"
    );
    let got = errors("just a string\n");
    assert!(
        got[0].starts_with("document 1: expected a resource"),
        "{got:?}"
    );
    assert!(parse_documents("").unwrap().is_empty());
    assert!(parse_documents("---\n---\n").unwrap().is_empty());
}

/// Every example resource, stored as the writers store it (compact JSON),
/// reads back through the JSON path of `parse_stored` (not the YAML
/// fallback) as the same resource.
#[test]
fn stored_json_of_every_example_reads_back_without_yaml() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut read = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(parsed) = parse_documents(&text) else {
            continue;
        };
        for resource in parsed {
            let stored = serde_json::to_vec(&resource).unwrap();
            let fast = read_stored_json(&stored)
                .unwrap_or_else(|| panic!("{}: JSON path refused {resource:?}", path.display()));
            assert_eq!(fast, resource, "{}", path.display());
            assert_eq!(parse_stored(&stored).unwrap(), resource);
            kinds.insert(resource.kind());
            read += 1;
        }
    }
    assert!(
        read >= 12 && kinds.len() >= 8,
        "{read} resources, kinds {kinds:?}"
    );
}

/// What the JSON path does not take falls back to the YAML parser and its
/// messages: YAML text, and JSON that is not a valid resource.
#[test]
fn parse_stored_falls_back_to_the_document_parser() {
    assert_eq!(
        parse_stored(POOL.as_bytes()).unwrap(),
        parse_one(POOL).unwrap()
    );
    let bad = br#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"p"},"spec":{"cidr":"10.0.0.0/33"}}"#;
    let from_stored = parse_stored(bad).unwrap_err().to_string();
    let from_text = parse_one(std::str::from_utf8(bad).unwrap())
        .unwrap_err()
        .to_string();
    assert_eq!(from_stored, from_text);
    assert!(from_stored.contains("spec.cidr"), "{from_stored}");
}

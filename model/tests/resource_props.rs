//! Property tests over whole documents: generated IPPools and policies either
//! fail validation with document-numbered errors or survive
//! parse → write → parse unchanged; arbitrary text never panics the reader.

use brindle_model::parse_documents;
use brindle_model::resource::{to_json_list, to_yaml_documents};
use proptest::prelude::*;

fn pool_yaml() -> impl Strategy<Value = String> {
    (
        0u8..=255,
        0u8..=255,
        8u8..=34,
        prop::option::of(18i64..=34),
        prop::sample::select(vec!["", "  ipipMode: Always\n", "  vxlanMode: CrossSubnet\n", "  ipipMode: CrossSubnet\n  vxlanMode: Always\n"]),
        any::<bool>(),
        prop::sample::select(vec!["", "  nodeSelector: all()\n", "  nodeSelector: \"zone == 'a'\"\n", "  nodeSelector: \"zone = a\"\n"]),
        "[a-z][a-z0-9-]{0,8}",
    )
        .prop_map(|(a, b, len, block, encap, nat, sel, name)| {
            let block = block.map(|b| format!("  blockSize: {b}\n")).unwrap_or_default();
            format!(
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {a}.{b}.0.0/{len}\n{block}{encap}  natOutgoing: {nat}\n{sel}"
            )
        })
}

fn policy_yaml() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9-]{0,8}",
        prop::sample::select(vec!["TCP", "UDP", "ICMP", "17", "300", "SCTP"]),
        prop::collection::vec(prop::sample::select(vec!["80", "'8000:8080'", "http", "'90:80'", "70000"]), 0..3),
        prop::sample::select(vec!["Allow", "Deny", "Pass", "Log"]),
        prop::option::of(-5.0f64..1000.0),
    )
        .prop_map(|(name, proto, ports, action, order)| {
            let order = order.map(|o| format!("  order: {o}\n")).unwrap_or_default();
            let ports = if ports.is_empty() {
                String::new()
            } else {
                format!("      destination:\n        ports: [{}]\n", ports.join(", "))
            };
            format!(
                "apiVersion: brindle.dev/v1\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n{order}  selector: has(app)\n  ingress:\n    - action: {action}\n      protocol: {proto}\n{ports}"
            )
        })
}

proptest! {
    #[test]
    fn documents_round_trip_or_fail_with_numbered_errors(
        docs in prop::collection::vec(prop_oneof![pool_yaml(), policy_yaml()], 1..4)
    ) {
        let text = docs.join("---\n");
        match parse_documents(&text) {
            Ok(parsed) => {
                prop_assert_eq!(parsed.len(), docs.len());
                let yaml = to_yaml_documents(&parsed);
                prop_assert_eq!(&parse_documents(&yaml).map_err(|e| TestCaseError::fail(e.to_string()))?, &parsed);
                let json = to_json_list(&parsed);
                prop_assert_eq!(&parse_documents(&json).map_err(|e| TestCaseError::fail(e.to_string()))?, &parsed);
            }
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    prop_assert!(e.document >= 1 && e.document <= docs.len(), "{}", e);
                    let prefix = format!("document {}", e.document);
                    prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
                }
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse_documents(&text);
    }

    #[test]
    fn arbitrary_yamlish_text_never_panics(text in "(apiVersion: projectcalico.org/v3\nkind: [A-Za-z]{0,8}\n|metadata:\n  name: [a-z]{0,4}\n|spec:\n  [a-zA-Z]{0,6}: [0-9a-z./:]{0,8}\n|---\n|- |\\{|\\}|\\[|\\]){0,12}") {
        let _ = parse_documents(&text);
    }
}

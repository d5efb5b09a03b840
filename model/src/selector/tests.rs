use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn eval(selector: &str, pairs: &[(&str, &str)]) -> bool {
    Selector::parse(selector)
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .matches(&labels(pairs))
}

#[test]
fn equality_operators() {
    assert!(eval("a == 'b'", &[("a", "b")]));
    assert!(!eval("a == 'b'", &[("a", "c")]));
    assert!(!eval("a == 'b'", &[]));
    assert!(eval("a != 'b'", &[("a", "c")]));
    assert!(!eval("a != 'b'", &[("a", "b")]));
    assert!(eval("a != 'b'", &[]), "!= is true when the label is absent");
    assert!(eval("a == ''", &[("a", "")]));
}

#[test]
fn set_operators() {
    assert!(eval("a in {'x', 'y'}", &[("a", "y")]));
    assert!(!eval("a in {'x', 'y'}", &[("a", "z")]));
    assert!(!eval("a in {'x'}", &[]));
    assert!(!eval("a in {}", &[("a", "")]));
    assert!(eval("a not in {'x', 'y'}", &[("a", "z")]));
    assert!(!eval("a not in {'x', 'y'}", &[("a", "x")]));
    assert!(eval("a not in {'x'}", &[]), "not in is true when absent");
    assert!(eval("a not in {}", &[("a", "q")]));
    assert!(
        eval("a in {'x', 'y',}", &[("a", "y")]),
        "trailing comma, as Calico"
    );
    assert!(Selector::parse("a in {,}").is_err());
    assert!(Selector::parse("a in {'x',,}").is_err());
}

#[test]
fn has_all_global_not() {
    assert!(eval("has(a)", &[("a", "")]));
    assert!(!eval("has(a)", &[("b", "")]));
    assert!(eval("!has(a)", &[("b", "")]));
    assert!(eval("all()", &[]));
    assert!(eval("", &[]));
    assert!(eval("   ", &[("x", "y")]));
    assert!(eval("global()", &[]));
    assert!(!eval("!all()", &[]));
    assert!(eval("!!has(a)", &[("a", "1")]));
    assert!(!eval("!!!has(a)", &[("a", "1")]));
}

#[test]
fn string_operators() {
    assert!(eval("a contains 'ell'", &[("a", "hello")]));
    assert!(!eval("a contains 'xyz'", &[("a", "hello")]));
    assert!(!eval("a contains ''", &[]));
    assert!(eval("a starts with 'he'", &[("a", "hello")]));
    assert!(!eval("a starts with 'lo'", &[("a", "hello")]));
    assert!(!eval("a starts with ''", &[]));
    assert!(eval("a ends with 'lo'", &[("a", "hello")]));
    assert!(!eval("a ends with 'he'", &[("a", "hello")]));
    assert!(eval("a ends   with \"lo\"", &[("a", "hello")]));
}

#[test]
fn boolean_operators_and_precedence() {
    // && binds tighter than ||.
    assert!(eval("has(a) || has(b) && has(c)", &[("a", "")]));
    assert!(!eval("(has(a) || has(b)) && has(c)", &[("a", "")]));
    assert!(eval("has(a) && has(b)", &[("a", ""), ("b", "")]));
    assert!(!eval("has(a) && has(b)", &[("a", "")]));
    assert!(eval("!(has(a) && has(b))", &[("a", "")]));
    assert!(
        eval("!a == 'x'", &[("a", "y")]),
        "! applies to the operation"
    );
}

#[test]
fn canonical_form_matches_calico() {
    let cases = [
        ("", "all()"),
        ("a=='b'", "a == \"b\""),
        ("a == \"it's\"", "a == \"it's\""),
        ("a == 'say \"hi\"'", "a == 'say \"hi\"'"),
        ("a in { 'z','x' , 'z'}", "a in {\"x\", \"z\"}"),
        ("a not in {}", "a not in {}"),
        ("has( a )", "has(a)"),
        (
            "has(a) && b == 'c' || !has(d)",
            "((has(a) && b == \"c\") || !has(d))",
        ),
        ("!!has(a)", "has(a)"),
        ("(has(a))", "has(a)"),
        ("global()", "global()"),
        (
            "projectcalico.org/orchestrator starts with 'k8s'",
            "projectcalico.org/orchestrator starts with \"k8s\"",
        ),
    ];
    for (input, want) in cases {
        let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(sel.canonical(), want, "input {input:?}");
    }
}

#[test]
fn errors_name_the_position() {
    let cases = [
        ("a = 'b'", 2, "expected '=='"),
        ("a == b", 5, "expected a quoted string, found label 'b'"),
        ("a == 'b", 5, "unterminated string"),
        ("has(a) &&", 9, "found end of selector"),
        ("(has(a)", 7, "expected ')'"),
        ("a in {'x' 'y'}", 10, "expected ',' or '}'"),
        ("a in 'x'", 5, "expected '{'"),
        (
            "has(a) has(b)",
            7,
            "unexpected 'has(b)' after a complete selector",
        ),
        ("a & b", 2, "expected '&&'"),
        ("a foo 'x'", 2, "expected an operator after label 'a'"),
        ("has()", 4, "expected a label name inside has"),
        ("ü == 'x'", 0, "unexpected character 'ü'"),
        ("a == 'ü' && #", 12, "unexpected character '#'"),
        ("all(x)", 4, "expected ')' after all("),
        ("a starts 'x'", 2, "expected an operator"),
        (
            "all ( )",
            4,
            "expected an operator after label 'all', found '('",
        ),
    ];
    for (input, position, reason) in cases {
        let err = Selector::parse(input).expect_err(input);
        assert_eq!(err.position, position, "{input:?}: {err}");
        assert!(
            err.reason.contains(reason),
            "{input:?}: {err} (wanted {reason:?})"
        );
    }
}

#[test]
fn nesting_is_bounded() {
    let ok = format!(
        "{}has(a){}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert!(Selector::parse(&ok).is_ok());
    let deep = format!("{}has(a){}", "(".repeat(100_000), ")".repeat(100_000));
    let err = Selector::parse(&deep).unwrap_err();
    assert_eq!(err.position, MAX_NESTING);
    assert!(err.reason.contains("nested deeper"), "{err}");
    // Long flat selectors are fine.
    let wide = vec!["has(a)"; 10_000].join(" || ");
    assert!(Selector::parse(&wide).is_ok());
}

#[test]
fn labels_may_look_like_keywords() {
    assert!(eval(
        "in == 'x' && has == 'y'",
        &[("in", "x"), ("has", "y")]
    ));
    assert!(eval("contains contains 'q'", &[("contains", "aqa")]));
}

/// Reference vectors from Calico's own parser tests: the canonical text
/// and UniqueID must match Calico byte for byte, since ipset names derive
/// from them.
#[test]
fn calico_reference_vectors() {
    let cases = [
        ("", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
        (
            " (all() )",
            "all()",
            "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug",
        ),
        (
            "! (has( b)||! has(a ))",
            "!(has(b) || !has(a))",
            "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q",
        ),
        (
            "! (a == \"b\"&&! c != \"d\")",
            "!(a == \"b\" && !c != \"d\")",
            "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w",
        ),
    ];
    for (input, canonical, uid) in cases {
        let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(sel.canonical(), canonical, "{input:?}");
        assert_eq!(sel.unique_id(), uid, "{input:?}");
    }
    for (input, canonical) in [
        ("a startswith '\"'", "a starts with '\"'"),
        ("a endswith \"'\"", "a ends with \"'\""),
        ("a!='\"'", "a != '\"'"),
        (
            "a in {\"z\", \"z\", \"x\", \"y\", \"x\", \"a\"}",
            "a in {\"a\", \"x\", \"y\", \"z\"}",
        ),
    ] {
        assert_eq!(Selector::parse(input).unwrap().canonical(), canonical);
    }
    for bad in [
        "b == b",
        "b contains b",
        "'b1' == b",
        "b",
        "a b",
        "!",
        "foo == \"bar\" &",
        "foo != ||",
        "foo in {\"\", ||",
        "foo in \"\"",
        "\"FOO'",
        "(",
        "(a == \"foo\"",
        ")",
        "()",
        "%",
        "a ",
        "has(foo) &&",
    ] {
        assert!(Selector::parse(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn unique_id_and_names() {
    let a = Selector::parse("role=='db'").unwrap();
    let b = Selector::parse("role == \"db\"").unwrap();
    assert_eq!(a.unique_id(), b.unique_id());
    assert_eq!(a.unique_id().len(), 40);
    assert!(a.unique_id().starts_with("s:"));
    let name = a.ipset_name(4);
    assert_eq!(name.len(), IPSET_NAME_MAX);
    assert!(name.starts_with("cali40s:"));
    assert_ne!(
        a.unique_id(),
        Selector::parse("role == 'web'").unwrap().unique_id()
    );
}

#[test]
fn length_limited_ids() {
    assert_eq!(
        length_limited_id("cali-pi-", "short", CHAIN_NAME_MAX).unwrap(),
        "cali-pi-short"
    );
    let long = length_limited_id(
        "cali-pi-",
        "default.a-very-long-policy-name",
        CHAIN_NAME_MAX,
    )
    .unwrap();
    assert_eq!(long.len(), CHAIN_NAME_MAX);
    assert!(long.starts_with("cali-pi-_"));
    // Exactly at the limit but starting with the marker: hashed too.
    let marker = length_limited_id("p", "_bcd", 5).unwrap();
    assert_eq!(marker.len(), 5);
    assert_ne!(marker, "p_bcd");
    assert_eq!(length_limited_id("p", "", 5).unwrap(), "p_");
    assert!(length_limited_id("prefix", "xxxxxxxxxxxx", 7).is_none());
}

#[test]
fn serde_as_string() {
    let sel: Selector = serde_json::from_str("\"a=='b'\"").unwrap();
    assert_eq!(serde_json::to_string(&sel).unwrap(), "\"a == \\\"b\\\"\"");
    assert!(serde_json::from_str::<Selector>("\"a=\"").is_err());
}

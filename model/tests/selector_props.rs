//! Property tests for the selector language: the canonical form parses back
//! to the same tree, and the parser never panics on arbitrary input.

use std::collections::{BTreeMap, BTreeSet};

use brindle_model::selector::{Expr, Selector};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./-]{1,12}"
}

/// Any printable string that does not hold both quote characters (the
/// language has no escapes, so such a value is unrepresentable).
fn value() -> impl Strategy<Value = String> {
    "[a-z0-9 '\"&|!(){},=-]{0,8}".prop_filter("cannot contain both quotes", |v| {
        !(v.contains('"') && v.contains('\''))
    })
}

fn value_set() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(value(), 0..4)
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        label().prop_map(Expr::Has),
        (label(), value()).prop_map(|(k, v)| Expr::Eq(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::Ne(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::Contains(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
        (label(), value()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
        (label(), value_set()).prop_map(|(k, s)| Expr::In(k, s)),
        (label(), value_set()).prop_map(|(k, s)| Expr::NotIn(k, s)),
    ]
}

/// Trees in the shape the parser produces: `!` never directly wraps `!`
/// (leading `!`s collapse) and `&&`/`||` nodes have at least two operands.
fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_filter("no double negation", |e| !matches!(e, Expr::Not(_)))
                .prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-c]", "[a-c]{0,2}", 0..4)
}

proptest! {
    #[test]
    fn canonical_parses_back_to_the_same_tree(tree in expr()) {
        let selector = Selector::from_expr(tree);
        let text = selector.canonical();
        let reparsed = Selector::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&reparsed, &selector, "canonical text {:?}", text);
        prop_assert_eq!(reparsed.unique_id(), selector.unique_id());
    }

    #[test]
    fn parser_never_panics_and_canonical_is_a_fixed_point(text in "[a-c !=&|(){}'\",]{0,24}|has\\([a-c]\\)[ &|!]{0,4}[a-c ='\"in]{0,10}") {
        if let Ok(selector) = Selector::parse(&text) {
            let canonical = selector.canonical();
            let again = Selector::parse(&canonical)
                .map_err(|e| TestCaseError::fail(format!("{canonical:?}: {e}")))?;
            prop_assert_eq!(again.canonical(), canonical);
        }
    }

    #[test]
    fn boolean_structure_evaluates_like_rust(a in expr(), b in expr(), labels in label_map()) {
        let (ea, eb) = (a.evaluate(&labels), b.evaluate(&labels));
        let text = format!("({}) && !({})", Selector::from_expr(a.clone()), Selector::from_expr(b.clone()));
        let combined = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(combined.matches(&labels), ea && !eb);
        let text = format!("{} || {}", Selector::from_expr(a), Selector::from_expr(b));
        let combined = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(combined.matches(&labels), ea || eb);
    }
}

proptest! {
    #[test]
    fn parser_never_panics_on_any_text(text in "\\PC{0,40}") {
        if let Ok(selector) = Selector::parse(&text) {
            let canonical = selector.canonical();
            prop_assert_eq!(Selector::parse(&canonical).map(|s| s.canonical()), Ok(canonical));
        }
    }
}

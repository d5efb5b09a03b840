//! Reading resources from text: multi-document YAML (`---`), a JSON object,
//! a JSON/YAML array, or a `kind: List` (or `<Kind>List`) with `items`.
//!
//! [`parse_documents`] is all-or-nothing, which is what `apply` needs: it
//! parses, defaults and validates every document, runs the cross-document
//! checks (overlapping pools, duplicates), and returns either every resource
//! or every problem found, each naming its document:
//!
//! ```text
//! document 3 (IPPool 'pool-a'): spec.blockSize: 33 is out of range 20..32
//! ```
//!
//! Documents are numbered from 1 in the order they appear, not counting empty
//! ones (a trailing `---`, a comment-only section); items of a list document
//! are numbered from 1 within it. A YAML syntax error spoils only its own
//! document. Unknown fields are errors (a typo must not be silently dropped).
//! A document with a wrongly typed field reports that one problem (serde
//! stops there); well-typed documents report every semantic problem.
//! Nothing here panics on any input.

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use crate::ipam::nets_overlap;
use crate::meta::ApiVersion;
use crate::resource::{IncomingNode, IncomingObject, Kind, Object, Resource};

/// A problem with one document (or one item of a list document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// 1-based document number in the input.
    pub document: usize,
    /// 1-based item number when the document is a list.
    pub item: Option<usize>,
    /// The document's kind, when it could be read.
    pub kind: Option<String>,
    /// The document's `metadata.name`, when it could be read.
    pub name: Option<String>,
    /// Dotted field path; empty for whole-document problems.
    pub field: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        match (&self.kind, &self.name) {
            (Some(k), Some(n)) => write!(f, " ({k} '{n}')")?,
            (Some(k), None) => write!(f, " ({k})")?,
            (None, Some(n)) => write!(f, " ('{n}')")?,
            (None, None) => {}
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.reason)
    }
}

/// Every problem found in an input; `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseErrors(pub Vec<DocumentError>);

impl fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Where a resource came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// 1-based document number.
    pub document: usize,
    /// 1-based item number within a list document.
    pub item: Option<usize>,
}

/// Parses, defaults and validates every document; cross-checks the set.
/// Returns all resources, or all problems (never a partial result).
pub fn parse_documents(text: &str) -> Result<Vec<Resource>, ParseErrors> {
    parse_documents_with_origin(text).map(|v| v.into_iter().map(|(r, _)| r).collect())
}

/// [`parse_documents`] for an `apply` against a store that already holds
/// `existing` resources: additionally rejects pools overlapping a stored pool
/// of another name, and changing a stored pool's CIDR (immutable, as in
/// Calico). Resources being re-applied replace their stored selves.
pub fn parse_documents_against(
    text: &str,
    existing: &[Resource],
) -> Result<Vec<Resource>, ParseErrors> {
    let parsed = parse_documents_with_origin(text)?;
    check_against_stored(&parsed, existing)?;
    Ok(parsed.into_iter().map(|(r, _)| r).collect())
}

/// Checks parsed resources against the pools already stored (a pool's CIDR
/// never changes; a new pool overlaps no other), as [`parse_documents_against`]
/// does for text: for a writer that parsed once and checks at write time.
pub fn check_against_stored(
    parsed: &[(Resource, Origin)],
    existing: &[Resource],
) -> Result<(), ParseErrors> {
    let mut errors = Vec::new();
    check_against_existing(parsed, existing, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ParseErrors(errors))
    }
}

/// Fills in defaults and validates one resource, as every parsed document
/// is; the problems name `origin`, the resource's kind and name and the
/// field. For writers that build a resource in code.
pub fn default_and_validate(resource: &mut Resource, origin: Origin) -> Result<(), ParseErrors> {
    resource.defaulted();
    let problems = resource.validate();
    if problems.is_empty() {
        return Ok(());
    }
    let kind = Some(resource.kind().to_string());
    let name = Some(resource.name().to_string()).filter(|n| !n.is_empty());
    Err(ParseErrors(
        problems
            .into_iter()
            .map(|p| DocumentError {
                document: origin.document,
                item: origin.item,
                kind: kind.clone(),
                name: name.clone(),
                field: p.field,
                reason: p.reason,
            })
            .collect(),
    ))
}

/// [`parse_documents`], also telling where each resource came from.
pub fn parse_documents_with_origin(text: &str) -> Result<Vec<(Resource, Origin)>, ParseErrors> {
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for piece in split_documents(text, &mut errors) {
        let origin = piece.origin;
        match read_resource(piece) {
            Ok(mut resource) => match default_and_validate(&mut resource, origin) {
                Ok(()) => parsed.push((resource, origin)),
                Err(problems) => errors.extend(problems.0),
            },
            Err(e) => errors.push(*e),
        }
    }
    cross_check(&parsed, &mut errors);
    if errors.is_empty() {
        Ok(parsed)
    } else {
        errors.sort_by_key(|e| (e.document, e.item));
        Err(ParseErrors(errors))
    }
}

/// Parses exactly one resource (e.g. a value read back from the store).
pub fn parse_one(text: &str) -> Result<Resource, ParseErrors> {
    let mut all = parse_documents(text)?;
    if all.len() == 1 {
        if let Some(r) = all.pop() {
            return Ok(r);
        }
    }
    Err(ParseErrors(vec![DocumentError {
        document: 1,
        item: None,
        kind: None,
        name: None,
        field: String::new(),
        reason: format!("expected exactly one resource, found {}", all.len()),
    }]))
}

/// Reads one resource as the store holds it (a value read back from etcd or
/// the embedded store). Brindle's writers store compact JSON of the typed
/// resource; that is read with serde_json into the same typed shapes, with
/// the same defaults and validation as [`parse_one`]. Every node reads every
/// `Node` document (and each of its versions), and libyaml was most of a
/// node's CPU at a 250-node cold start.
///
/// Anything the JSON path does not take (a value written by hand in YAML,
/// or one that fails to read) goes through [`parse_one`], so the result and
/// the error messages are those of the one document parser.
pub fn parse_stored(bytes: &[u8]) -> Result<Resource, ParseErrors> {
    if bytes.first() == Some(&b'{') {
        if let Some(resource) = read_stored_json(bytes) {
            return Ok(resource);
        }
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ParseErrors(vec![whole_document_error(
            Origin {
                document: 1,
                item: None,
            },
            format!("not UTF-8: {e}"),
        )])
    })?;
    parse_one(text)
}

/// The JSON path of [`parse_stored`]; `None` sends the value to the YAML
/// parser (which then names the problem).
fn read_stored_json(bytes: &[u8]) -> Option<Resource> {
    #[derive(Deserialize)]
    struct KindProbe<'a> {
        #[serde(borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    fn typed<S: DeserializeOwned + Default>(bytes: &[u8]) -> Option<Object<S>> {
        serde_json::from_slice::<IncomingObject<S>>(bytes)
            .ok()
            .map(Object::from)
    }
    let probe: KindProbe<'_> = serde_json::from_slice(bytes).ok()?;
    let mut resource = match Kind::from_kind_name(&probe.kind)? {
        Kind::IPPool => typed(bytes).map(Resource::IPPool),
        Kind::IPAMConfiguration => typed(bytes).map(Resource::IPAMConfiguration),
        Kind::BGPConfiguration => typed(bytes).map(Resource::BGPConfiguration),
        Kind::BGPPeer => typed(bytes).map(Resource::BGPPeer),
        Kind::BGPFilter => typed(bytes).map(Resource::BGPFilter),
        Kind::BFDConfiguration => typed(bytes).map(Resource::BFDConfiguration),
        Kind::Node => serde_json::from_slice::<IncomingNode>(bytes)
            .ok()
            .map(|n| Resource::Node(n.into())),
        Kind::WorkloadEndpoint => typed(bytes).map(Resource::WorkloadEndpoint),
        Kind::Profile => typed(bytes).map(Resource::Profile),
        Kind::NetworkPolicy => typed(bytes).map(Resource::NetworkPolicy),
        Kind::GlobalNetworkPolicy => typed(bytes).map(Resource::GlobalNetworkPolicy),
        Kind::HostEndpoint => typed(bytes).map(Resource::HostEndpoint),
    }?;
    let origin = Origin {
        document: 1,
        item: None,
    };
    default_and_validate(&mut resource, origin).ok()?;
    Some(resource)
}

fn whole_document_error(origin: Origin, reason: String) -> DocumentError {
    DocumentError {
        document: origin.document,
        item: origin.item,
        kind: None,
        name: None,
        field: String::new(),
        reason,
    }
}

/// Splits text into YAML documents at `---` marker lines (column 0), as the
/// YAML spec defines them. Each document keeps its own text so typed
/// deserialization reads the scalars exactly as written (`1.10` stays the
/// string "1.10" in a label; a detour through a generic value would make it
/// the float 1.1).
///
/// Returns each document's text and the 1-based line of the input where it
/// starts (the marker line; its remainder is the document's first line).
fn split_yaml_text(text: &str) -> Vec<(String, usize)> {
    let mut docs = vec![(String::new(), 1)];
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let is_marker =
            line.starts_with("---") && line[3..].chars().next().is_none_or(|c| c.is_whitespace());
        if is_marker {
            docs.push((
                line[3..].trim_start_matches([' ', '\t']).to_string(),
                index + 1,
            ));
        } else if let Some((last, _)) = docs.last_mut() {
            last.push_str(line);
        }
    }
    docs
}

/// What is needed to route a document before reading it as its kind.
#[derive(Debug, Default)]
struct Route {
    api_version: Option<Value>,
    kind: Option<Value>,
    name: Option<String>,
}

/// A resource-shaped piece of input and the text to read it from.
struct Piece {
    origin: Origin,
    route: Route,
    text: String,
    /// Input line where `text` starts, when it is the input's own text (not
    /// a re-serialized list item).
    first_line: Option<usize>,
}

/// The top-level fields of a document, read leniently (other fields are
/// skipped unparsed, so an odd scalar elsewhere cannot trip routing).
#[derive(Deserialize)]
struct Probe {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<Value>,
    #[serde(default)]
    kind: Option<Value>,
    #[serde(default)]
    metadata: Option<ProbeMeta>,
}

#[derive(Deserialize)]
struct ProbeMeta {
    #[serde(default)]
    name: Option<Value>,
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn route_of_mapping(map: &Mapping) -> Route {
    Route {
        api_version: map.get("apiVersion").cloned(),
        kind: map.get("kind").cloned(),
        name: map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(scalar_text),
    }
}

fn is_list_kind(kind: Option<&Value>) -> bool {
    kind.and_then(Value::as_str)
        .is_some_and(|k| list_kind_of(k).is_some())
}

/// Splits the input into resource-shaped pieces, expanding arrays and lists.
/// Documents are numbered in order, not counting empty ones.
fn split_documents(text: &str, errors: &mut Vec<DocumentError>) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut number = 0;
    for (doc_text, first_line) in split_yaml_text(text) {
        // Common case: a mapping that is one resource. Route it from the
        // probe and read it later from its own text.
        if let Ok(probe) = serde_yaml_ng::from_str::<Probe>(&doc_text) {
            // An empty document also reads as an empty probe: let the
            // generic path below skip it.
            let empty =
                probe.kind.is_none() && probe.api_version.is_none() && probe.metadata.is_none();
            if !empty && !is_list_kind(probe.kind.as_ref()) {
                number += 1;
                out.push(Piece {
                    origin: Origin {
                        document: number,
                        item: None,
                    },
                    route: Route {
                        api_version: probe.api_version,
                        kind: probe.kind,
                        name: probe
                            .metadata
                            .and_then(|m| m.name)
                            .as_ref()
                            .and_then(scalar_text),
                    },
                    text: doc_text,
                    first_line: Some(first_line),
                });
                continue;
            }
        }
        let value = match serde_yaml_ng::from_str::<Value>(&doc_text) {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                number += 1;
                let origin = Origin {
                    document: number,
                    item: None,
                };
                let mut message = e.to_string();
                if let (Some(at), Some(loc)) = (message.rfind(" at line "), e.location()) {
                    message.truncate(at);
                    message.push_str(&format!(
                        " (line {} column {})",
                        first_line + loc.line() - 1,
                        loc.column()
                    ));
                }
                errors.push(whole_document_error(
                    origin,
                    format!("invalid YAML/JSON: {message}"),
                ));
                continue;
            }
        };
        number += 1;
        let origin = Origin {
            document: number,
            item: None,
        };
        match value {
            Value::Sequence(items) => push_items(&mut out, errors, origin, items, None),
            Value::Mapping(map) => {
                let list = map
                    .get("kind")
                    .and_then(Value::as_str)
                    .and_then(list_kind_of);
                match list {
                    Some(item_kind) => match map.get("items") {
                        Some(Value::Sequence(items)) => {
                            let defaults = ItemDefaults {
                                api_version: map.get("apiVersion").cloned(),
                                kind: item_kind,
                            };
                            push_items(&mut out, errors, origin, items.clone(), Some(defaults));
                        }
                        Some(Value::Null) | None => {}
                        Some(_) => errors.push(whole_document_error(
                            origin,
                            "items: a list's items must be a sequence".into(),
                        )),
                    },
                    None => out.push(Piece {
                        origin,
                        route: route_of_mapping(&map),
                        text: doc_text,
                        first_line: Some(first_line),
                    }),
                }
            }
            _ => errors.push(whole_document_error(
                origin,
                "expected a resource (a mapping with apiVersion, kind, metadata, spec)".into(),
            )),
        }
    }
    out
}

/// What a `<Kind>List` lets its items leave out.
struct ItemDefaults {
    api_version: Option<Value>,
    kind: Option<String>,
}

/// `Some(None)` for `List`, `Some(Some(kind))` for `IPPoolList`, `None`
/// when the kind is not a list.
fn list_kind_of(kind: &str) -> Option<Option<String>> {
    if kind == "List" {
        return Some(None);
    }
    let item = kind.strip_suffix("List")?;
    Kind::from_kind_name(item).map(|k| Some(k.as_str().to_string()))
}

fn push_items(
    out: &mut Vec<Piece>,
    errors: &mut Vec<DocumentError>,
    origin: Origin,
    items: Vec<Value>,
    defaults: Option<ItemDefaults>,
) {
    for (i, item) in items.into_iter().enumerate() {
        let origin = Origin {
            document: origin.document,
            item: Some(i + 1),
        };
        let Value::Mapping(mut map) = item else {
            errors.push(whole_document_error(
                origin,
                "expected a resource (a mapping with apiVersion, kind, metadata, spec)".into(),
            ));
            continue;
        };
        if let Some(d) = &defaults {
            if let (Some(k), false) = (&d.kind, map.contains_key("kind")) {
                map.insert("kind".into(), Value::String(k.clone()));
            }
            if let (Some(v), false) = (&d.api_version, map.contains_key("apiVersion")) {
                map.insert("apiVersion".into(), v.clone());
            }
        }
        // Items have no text of their own: write them out to read them back
        // with field paths in errors.
        match serde_yaml_ng::to_string(&map) {
            Ok(text) => out.push(Piece {
                origin,
                route: route_of_mapping(&map),
                text,
                first_line: None,
            }),
            Err(e) => errors.push(whole_document_error(
                origin,
                format!("cannot read item: {e}"),
            )),
        }
    }
}

fn read_resource(piece: Piece) -> Result<Resource, Box<DocumentError>> {
    let Piece {
        origin,
        route,
        text,
        first_line,
    } = piece;
    let name = route.name.clone();
    let err = |kind: Option<String>, field: &str, reason: String| {
        Box::new(DocumentError {
            document: origin.document,
            item: origin.item,
            kind,
            name: name.clone(),
            field: field.into(),
            reason,
        })
    };
    let Some(kind_value) = route.kind else {
        return Err(err(None, "kind", "required".into()));
    };
    let kind_text = scalar_text(&kind_value).unwrap_or_else(|| format!("{kind_value:?}"));
    let Some(kind) = Kind::from_kind_name(&kind_text) else {
        return Err(err(
            None,
            "kind",
            format!(
                "unknown kind '{kind_text}' (expected one of {})",
                Kind::expected_list()
            ),
        ));
    };
    let kind_name = Some(kind.as_str().to_string());
    match &route.api_version {
        None => return Err(err(kind_name, "apiVersion", "required".into())),
        Some(Value::String(v)) if ApiVersion::parse(v).is_some() => {}
        Some(other) => {
            let shown = scalar_text(other).unwrap_or_else(|| format!("{other:?}"));
            return Err(err(
                kind_name,
                "apiVersion",
                format!(
                    "unsupported apiVersion '{shown}' (expected {} or {})",
                    ApiVersion::CalicoV3,
                    ApiVersion::BrindleV1
                ),
            ));
        }
    }
    let typed = match kind {
        Kind::IPPool => typed(&text).map(Resource::IPPool),
        Kind::IPAMConfiguration => typed(&text).map(Resource::IPAMConfiguration),
        Kind::BGPConfiguration => typed(&text).map(Resource::BGPConfiguration),
        Kind::BGPPeer => typed(&text).map(Resource::BGPPeer),
        Kind::BGPFilter => typed(&text).map(Resource::BGPFilter),
        Kind::BFDConfiguration => typed(&text).map(Resource::BFDConfiguration),
        Kind::Node => {
            serde_yaml_ng::from_str::<IncomingNode>(&text).map(|n| Resource::Node(n.into()))
        }
        Kind::WorkloadEndpoint => typed(&text).map(Resource::WorkloadEndpoint),
        Kind::Profile => typed(&text).map(Resource::Profile),
        Kind::NetworkPolicy => typed(&text).map(Resource::NetworkPolicy),
        Kind::GlobalNetworkPolicy => typed(&text).map(Resource::GlobalNetworkPolicy),
        Kind::HostEndpoint => typed(&text).map(Resource::HostEndpoint),
    };
    typed.map_err(|e| {
        let (field, mut reason) = split_serde_error(&e);
        if let (Some(first), Some(at)) = (first_line, e.location()) {
            reason.push_str(&format!(" (line {})", first + at.line() - 1));
        }
        err(kind_name, &field, reason)
    })
}

fn typed<S: DeserializeOwned + Default>(text: &str) -> Result<Object<S>, serde_yaml_ng::Error> {
    serde_yaml_ng::from_str::<IncomingObject<S>>(text).map(Object::from)
}

/// Turns `spec.foo: unknown field `bar`, expected one of ... at line 3
/// column 5` into (`spec.foo.bar`, `unknown field (expected one of ...)`).
/// Line numbers refer to the re-serialized document, so they are dropped.
fn split_serde_error(e: &serde_yaml_ng::Error) -> (String, String) {
    let mut text = e.to_string();
    if let Some(at) = text.rfind(" at line ") {
        text.truncate(at);
    }
    let (mut field, mut reason) = match text.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_')) =>
        {
            (path.to_string(), rest.to_string())
        }
        _ => (String::new(), text.clone()),
    };
    if let Some(rest) = reason.strip_prefix("unknown field `") {
        if let Some((name, tail)) = rest.split_once('`') {
            field = if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            };
            let expected = tail.trim_start_matches(", ").trim();
            reason = if expected.is_empty() {
                "unknown field".to_string()
            } else {
                format!("unknown field ({expected})")
            };
        }
    }
    (field, reason)
}

/// Checks across the documents of one input: no two resources with the same
/// key, no two pools whose CIDRs overlap.
fn cross_check(parsed: &[(Resource, Origin)], errors: &mut Vec<DocumentError>) {
    let error_for = |r: &Resource, o: Origin, field: &str, reason: String| DocumentError {
        document: o.document,
        item: o.item,
        kind: Some(r.kind().to_string()),
        name: Some(r.name().to_string()),
        field: field.into(),
        reason,
    };
    let mut seen: HashMap<crate::resource::ResourceId, Origin> = HashMap::new();
    for (r, o) in parsed {
        if let Some(first) = seen.get(&r.id()) {
            errors.push(error_for(
                r,
                *o,
                "metadata.name",
                format!(
                    "{} is defined twice (first in document {})",
                    r.describe(),
                    first.document
                ),
            ));
        } else {
            seen.insert(r.id(), *o);
        }
    }
    let pools: Vec<(&Resource, Origin, ipnet::IpNet)> = parsed
        .iter()
        .filter_map(|(r, o)| match r {
            Resource::IPPool(p) => p.spec.net().map(|n| (r, *o, n)),
            _ => None,
        })
        .collect();
    for (j, (rb, ob, nb)) in pools.iter().enumerate() {
        for (ra, oa, na) in &pools[..j] {
            if ra.name() != rb.name() && nets_overlap(na, nb) {
                errors.push(error_for(
                    rb,
                    *ob,
                    "spec.cidr",
                    format!(
                        "{nb} overlaps IPPool '{}' ({na}) in document {}",
                        ra.name(),
                        oa.document
                    ),
                ));
            }
        }
    }
}

fn check_against_existing(
    parsed: &[(Resource, Origin)],
    existing: &[Resource],
    errors: &mut Vec<DocumentError>,
) {
    let incoming: std::collections::HashSet<crate::resource::ResourceId> =
        parsed.iter().map(|(r, _)| r.id()).collect();
    for (r, o) in parsed {
        let Resource::IPPool(pool) = r else { continue };
        let Some(net) = pool.spec.net() else { continue };
        let error = |reason: String| DocumentError {
            document: o.document,
            item: o.item,
            kind: Some(r.kind().to_string()),
            name: Some(r.name().to_string()),
            field: "spec.cidr".into(),
            reason,
        };
        for old in existing {
            let Resource::IPPool(old_pool) = old else {
                continue;
            };
            let Some(old_net) = old_pool.spec.net() else {
                continue;
            };
            if old.name() == r.name() {
                if old_net != net {
                    errors.push(error(format!(
                        "the CIDR of an existing pool cannot change ({old_net} -> {net}); create a new pool instead"
                    )));
                }
            } else if !incoming.contains(&old.id()) && nets_overlap(&net, &old_net) {
                errors.push(error(format!(
                    "{net} overlaps existing IPPool '{}' ({old_net})",
                    old.name()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests;

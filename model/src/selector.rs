//! The Calico label-selector language: parser, evaluator, canonical form and hash.
//!
//! Grammar (lowest precedence first), as Calico's `libcalico-go/lib/selector`
//! accepts it:
//!
//! ```text
//! selector   := <empty> | or
//! or         := and ( "||" and )*
//! and        := operation ( "&&" operation )*
//! operation  := "!"* ( "(" or ")" | "all()" | "global()" | "has(" label ")"
//!                    | label op string | label ("in" | "not in") "{" [ string ("," string)* ] "}" )
//! op         := "==" | "!=" | "contains" | "starts with" | "ends with"
//! label      := [a-zA-Z0-9_./-]+
//! string     := '"' [^"]* '"' | "'" [^']* "'"
//! ```
//!
//! Semantics (identical to Calico):
//! - `k == "v"`, `k contains`, `starts with`, `ends with`, `k in {...}` and
//!   `has(k)` are false when `k` is absent;
//! - `k != "v"` and `k not in {...}` are **true** when `k` is absent;
//! - the empty selector means `all()`;
//! - `global()` evaluates to true on a label map; its meaning ("not a
//!   namespaced endpoint") is applied by whoever evaluates a
//!   `namespaceSelector`, not here;
//! - leading `!`s collapse (`!!a` is `a`); values of `in` sets are sorted and
//!   de-duplicated; strings have no escapes, so a value cannot contain both
//!   quote characters.
//!
//! The canonical form ([`Selector::canonical`]) is byte-for-byte what Calico's
//! `Selector.String()` prints (`(a == "x" && has(b))`), so
//! [`Selector::unique_id`] equals Calico's `UniqueID()` and the ipset names
//! derived from it match Felix's. Nothing in this module panics on any input.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use sha2::Digest as _;

/// A parsed label selector. Equality is structural (so `a==  'x'` equals
/// `a == "x"`); compare [`Selector::canonical`] strings to ask whether two
/// selectors were written the same way up to formatting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    root: Expr,
}

/// The selector syntax tree. `And`/`Or` always hold at least two operands
/// when produced by the parser; `Not` never directly wraps another `Not`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `all()`: matches everything.
    All,
    /// `global()`: matches everything on a label map (see module docs).
    Global,
    /// `has(label)`.
    Has(String),
    /// `label == "value"`.
    Eq(String, String),
    /// `label != "value"`: true when the label is absent.
    Ne(String, String),
    /// `label contains "value"`.
    Contains(String, String),
    /// `label starts with "value"`.
    StartsWith(String, String),
    /// `label ends with "value"`.
    EndsWith(String, String),
    /// `label in {"a", "b"}`.
    In(String, BTreeSet<String>),
    /// `label not in {"a", "b"}`: true when the label is absent.
    NotIn(String, BTreeSet<String>),
    /// `!expr`.
    Not(Box<Expr>),
    /// `a && b && ...`.
    And(Vec<Expr>),
    /// `a || b || ...`.
    Or(Vec<Expr>),
}

/// A selector that failed to parse: where (character offset, 0-based, into
/// the selector text) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("selector syntax error at character {position}: {reason}")]
pub struct SelectorError {
    /// 0-based character offset of the offending token.
    pub position: usize,
    /// What was expected or found.
    pub reason: String,
}

/// Anything that can answer "what is the value of label `k`?".
pub trait Labels {
    /// The value of `key`, or `None` when the label is absent.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for [(&str, &str)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

impl Selector {
    /// Parses selector text. Empty (or all-whitespace) text is `all()`.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            text,
            tokens,
            next: 0,
            depth: 0,
        };
        if parser.peek().kind == TokenKind::Eof {
            return Ok(Selector { root: Expr::All });
        }
        let root = parser.parse_or()?;
        let trailing = parser.peek();
        if trailing.kind != TokenKind::Eof {
            return Err(parser.error_at(
                &trailing,
                format!(
                    "unexpected {} after a complete selector",
                    trailing.describe()
                ),
            ));
        }
        Ok(Selector { root })
    }

    /// Wraps an expression tree (e.g. one built by hand or by a generator).
    pub fn from_expr(root: Expr) -> Selector {
        Selector { root }
    }

    /// The selector matching everything.
    pub fn all() -> Selector {
        Selector { root: Expr::All }
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.root
    }

    /// Whether the selector matches an entity with these labels.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.root.evaluate(labels)
    }

    /// Whether this is exactly `all()` (or the empty selector).
    pub fn is_all(&self) -> bool {
        self.root == Expr::All
    }

    /// Normalised text: Calico's `String()` form, e.g.
    /// `(role == "db" && env in {"dev", "prod"})`.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        self.root.write_canonical(&mut out);
        out
    }

    /// Calico's `UniqueID()`: `"s:"` + unpadded base64url of
    /// SHA-224(`"s:" + canonical`). 40 characters; stable across releases
    /// because the canonical form is.
    pub fn unique_id(&self) -> String {
        let content = format!("s:{}", self.canonical());
        let digest = sha2::Sha224::digest(content.as_bytes());
        format!(
            "s:{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        )
    }

    /// The ipset name Felix gives the set of endpoints matching this
    /// selector for an IP family (`4` or `6`): `cali40s:<hash>` /
    /// `cali60s:<hash>`, cut to ipset's 31-character limit.
    pub fn ipset_name(&self, ip_version: u8) -> String {
        let mut name = format!("cali{ip_version}0{}", self.unique_id());
        name.truncate(IPSET_NAME_MAX);
        name
    }
}

/// Longest name the kernel's ipset accepts.
pub const IPSET_NAME_MAX: usize = 31;
/// Longest iptables chain name Felix uses (leaves room for suffixes under
/// the kernel's 28+1 limit).
pub const CHAIN_NAME_MAX: usize = 28;

/// Calico's `GetLengthLimitedID`: `prefix + suffix` when it fits in
/// `max_len`, otherwise `prefix + "_" + base64url(sha256(suffix))` truncated
/// to `max_len`. The `_` marks shortened names so a real suffix starting with
/// `_` of exactly the limit is hashed too (no clash).
///
/// Returns `None` when `max_len` leaves no room for a hash after `prefix`
/// (Calico panics there; callers here decide).
pub fn length_limited_id(prefix: &str, suffix: &str, max_len: usize) -> Option<String> {
    let suffix = if suffix.is_empty() { "_" } else { suffix };
    let total = prefix.len() + suffix.len();
    if total > max_len || (total == max_len && suffix.starts_with('_')) {
        let chars_for_hash = max_len.checked_sub(1 + prefix.len()).filter(|n| *n > 0)?;
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(suffix.as_bytes()));
        Some(format!(
            "{prefix}_{}",
            &hash[..chars_for_hash.min(hash.len())]
        ))
    } else {
        Some(format!("{prefix}{suffix}"))
    }
}

impl Expr {
    /// Evaluates this expression over a label map.
    pub fn evaluate<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(k) => labels.label(k).is_some(),
            Expr::Eq(k, v) => labels.label(k) == Some(v.as_str()),
            Expr::Ne(k, v) => labels.label(k) != Some(v.as_str()),
            Expr::Contains(k, v) => labels.label(k).is_some_and(|l| l.contains(v.as_str())),
            Expr::StartsWith(k, v) => labels.label(k).is_some_and(|l| l.starts_with(v.as_str())),
            Expr::EndsWith(k, v) => labels.label(k).is_some_and(|l| l.ends_with(v.as_str())),
            Expr::In(k, set) => labels.label(k).is_some_and(|l| set.contains(l)),
            Expr::NotIn(k, set) => !labels.label(k).is_some_and(|l| set.contains(l)),
            Expr::Not(e) => !e.evaluate(labels),
            Expr::And(es) => es.iter().all(|e| e.evaluate(labels)),
            Expr::Or(es) => es.iter().any(|e| e.evaluate(labels)),
        }
    }

    fn write_canonical(&self, out: &mut String) {
        match self {
            Expr::All => out.push_str("all()"),
            Expr::Global => out.push_str("global()"),
            Expr::Has(k) => {
                out.push_str("has(");
                out.push_str(k);
                out.push(')');
            }
            Expr::Eq(k, v) => write_label_op(out, k, " == ", v),
            Expr::Ne(k, v) => write_label_op(out, k, " != ", v),
            Expr::Contains(k, v) => write_label_op(out, k, " contains ", v),
            Expr::StartsWith(k, v) => write_label_op(out, k, " starts with ", v),
            Expr::EndsWith(k, v) => write_label_op(out, k, " ends with ", v),
            Expr::In(k, set) => write_set_op(out, k, " in {", set),
            Expr::NotIn(k, set) => write_set_op(out, k, " not in {", set),
            Expr::Not(e) => {
                out.push('!');
                e.write_canonical(out);
            }
            Expr::And(es) => write_joined(out, es, " && "),
            Expr::Or(es) => write_joined(out, es, " || "),
        }
    }
}

fn write_quoted(out: &mut String, value: &str) {
    // Calico prefers double quotes and switches to single quotes only when the
    // value itself contains a double quote (there are no escapes).
    let quote = if value.contains('"') { '\'' } else { '"' };
    out.push(quote);
    out.push_str(value);
    out.push(quote);
}

fn write_label_op(out: &mut String, label: &str, op: &str, value: &str) {
    out.push_str(label);
    out.push_str(op);
    write_quoted(out, value);
}

fn write_set_op(out: &mut String, label: &str, op: &str, set: &BTreeSet<String>) {
    out.push_str(label);
    out.push_str(op);
    for (i, v) in set.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_quoted(out, v);
    }
    out.push('}');
}

fn write_joined(out: &mut String, operands: &[Expr], sep: &str) {
    out.push('(');
    for (i, e) in operands.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        e.write_canonical(out);
    }
    out.push(')');
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical())
    }
}

impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Selector::parse(&text).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Tokenizer

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenKind {
    Label(String),
    Str(String),
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    In,
    NotIn,
    Not,
    Contains,
    StartsWith,
    EndsWith,
    All,
    Global,
    Has(String),
    LParen,
    RParen,
    And,
    Or,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    /// Byte offset of the token's first character.
    start: usize,
}

impl Token {
    fn describe(&self) -> String {
        match &self.kind {
            TokenKind::Label(l) => format!("label '{l}'"),
            TokenKind::Str(s) => format!("string \"{s}\""),
            TokenKind::LBrace => "'{'".into(),
            TokenKind::RBrace => "'}'".into(),
            TokenKind::Comma => "','".into(),
            TokenKind::Eq => "'=='".into(),
            TokenKind::Ne => "'!='".into(),
            TokenKind::In => "'in'".into(),
            TokenKind::NotIn => "'not in'".into(),
            TokenKind::Not => "'!'".into(),
            TokenKind::Contains => "'contains'".into(),
            TokenKind::StartsWith => "'starts with'".into(),
            TokenKind::EndsWith => "'ends with'".into(),
            TokenKind::All => "'all()'".into(),
            TokenKind::Global => "'global()'".into(),
            TokenKind::Has(l) => format!("'has({l})'"),
            TokenKind::LParen => "'('".into(),
            TokenKind::RParen => "')'".into(),
            TokenKind::And => "'&&'".into(),
            TokenKind::Or => "'||'".into(),
            TokenKind::Eof => "end of selector".into(),
        }
    }
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

fn char_offset(text: &str, byte_offset: usize) -> usize {
    text.get(..byte_offset)
        .map_or(byte_offset, |prefix| prefix.chars().count())
}

fn tokenize(text: &str) -> Result<Vec<Token>, SelectorError> {
    let bytes = text.as_bytes();
    let err = |at: usize, reason: String| SelectorError {
        position: char_offset(text, at),
        reason,
    };
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let label_end = |mut i: usize| {
        while i < bytes.len() && is_label_byte(bytes[i]) {
            i += 1;
        }
        i
    };
    let rest = |i: usize| &text[i..];

    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    loop {
        i = skip_ws(i);
        if i >= bytes.len() {
            tokens.push(Token {
                kind: TokenKind::Eof,
                start: i,
            });
            return Ok(tokens);
        }
        let start = i;
        let after_label = matches!(
            tokens.last(),
            Some(Token {
                kind: TokenKind::Label(_),
                ..
            })
        );
        let kind = match bytes[i] {
            b'(' => {
                i += 1;
                TokenKind::LParen
            }
            b')' => {
                i += 1;
                TokenKind::RParen
            }
            b'{' => {
                i += 1;
                TokenKind::LBrace
            }
            b'}' => {
                i += 1;
                TokenKind::RBrace
            }
            b',' => {
                i += 1;
                TokenKind::Comma
            }
            quote @ (b'"' | b'\'') => {
                let body = i + 1;
                let Some(len) = text[body..].find(quote as char) else {
                    return Err(err(start, "unterminated string".into()));
                };
                i = body + len + 1;
                TokenKind::Str(text[body..body + len].to_owned())
            }
            b'=' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    TokenKind::Eq
                } else {
                    return Err(err(
                        start,
                        "expected '==' (a single '=' is not an operator)".into(),
                    ));
                }
            }
            b'!' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    TokenKind::Ne
                } else {
                    i += 1;
                    TokenKind::Not
                }
            }
            b'&' => {
                if bytes.get(i + 1) == Some(&b'&') {
                    i += 2;
                    TokenKind::And
                } else {
                    return Err(err(start, "expected '&&'".into()));
                }
            }
            b'|' => {
                if bytes.get(i + 1) == Some(&b'|') {
                    i += 2;
                    TokenKind::Or
                } else {
                    return Err(err(start, "expected '||'".into()));
                }
            }
            _ if after_label => {
                // After a label only an operator may follow; the word
                // operators are matched as prefixes, like Calico does.
                let expecting = || {
                    let label = match tokens.last().map(|t| &t.kind) {
                        Some(TokenKind::Label(l)) => l.clone(),
                        _ => String::new(),
                    };
                    format!(
                        "expected an operator after label '{label}' (==, !=, in, not in, contains, starts with, ends with)"
                    )
                };
                let two_words = |i: usize, first: &str, second: &str| -> Option<usize> {
                    let after_first = i + first.len();
                    let j = skip_ws(after_first);
                    rest(i).starts_with(first).then_some(())?;
                    rest(j).starts_with(second).then_some(j + second.len())
                };
                if rest(i).starts_with("contains") {
                    i += "contains".len();
                    TokenKind::Contains
                } else if let Some(end) = two_words(i, "starts", "with") {
                    i = end;
                    TokenKind::StartsWith
                } else if let Some(end) = two_words(i, "ends", "with") {
                    i = end;
                    TokenKind::EndsWith
                } else if let Some(end) = two_words(i, "not", "in") {
                    i = end;
                    TokenKind::NotIn
                } else if rest(i).starts_with("in") {
                    i += 2;
                    TokenKind::In
                } else {
                    return Err(err(start, expecting()));
                }
            }
            _ if rest(i).starts_with("has(") => {
                let name_start = skip_ws(i + "has(".len());
                let name_end = label_end(name_start);
                if name_end == name_start {
                    return Err(err(
                        name_start,
                        "expected a label name inside has(...)".into(),
                    ));
                }
                let close = skip_ws(name_end);
                if bytes.get(close) != Some(&b')') {
                    return Err(err(close, "expected ')' to close has(".into()));
                }
                i = close + 1;
                TokenKind::Has(text[name_start..name_end].to_owned())
            }
            _ if rest(i).starts_with("all(") || rest(i).starts_with("global(") => {
                let (word, kind) = if rest(i).starts_with("all(") {
                    ("all(", TokenKind::All)
                } else {
                    ("global(", TokenKind::Global)
                };
                let close = skip_ws(i + word.len());
                if bytes.get(close) != Some(&b')') {
                    return Err(err(close, format!("expected ')' after {word}")));
                }
                i = close + 1;
                kind
            }
            b if is_label_byte(b) => {
                let end = label_end(i);
                let label = text[i..end].to_owned();
                i = end;
                TokenKind::Label(label)
            }
            _ => {
                let found = rest(i).chars().next().unwrap_or(' ');
                return Err(err(start, format!("unexpected character '{found}'")));
            }
        };
        tokens.push(Token { kind, start });
    }
}

// ---------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    next: usize,
    /// Parenthesis nesting, bounded so hostile input cannot exhaust the stack.
    depth: usize,
}

/// Deepest parenthesis nesting accepted.
pub const MAX_NESTING: usize = 64;

impl Parser<'_> {
    fn peek(&self) -> Token {
        // The tokenizer always ends the list with Eof and we never advance
        // past it, so the index is in bounds; the fallback only guards that.
        self.tokens
            .get(self.next)
            .or(self.tokens.last())
            .cloned()
            .unwrap_or(Token {
                kind: TokenKind::Eof,
                start: self.text.len(),
            })
    }

    fn advance(&mut self) -> Token {
        let token = self.peek();
        if token.kind != TokenKind::Eof {
            self.next += 1;
        }
        token
    }

    fn error_at(&self, token: &Token, reason: String) -> SelectorError {
        SelectorError {
            position: char_offset(self.text, token.start),
            reason,
        }
    }

    fn parse_or(&mut self) -> Result<Expr, SelectorError> {
        let mut operands = vec![self.parse_and()?];
        while self.peek().kind == TokenKind::Or {
            self.advance();
            operands.push(self.parse_and()?);
        }
        Ok(if operands.len() == 1 {
            operands.swap_remove(0)
        } else {
            Expr::Or(operands)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, SelectorError> {
        let mut operands = vec![self.parse_operation()?];
        while self.peek().kind == TokenKind::And {
            self.advance();
            operands.push(self.parse_operation()?);
        }
        Ok(if operands.len() == 1 {
            operands.swap_remove(0)
        } else {
            Expr::And(operands)
        })
    }

    fn parse_operation(&mut self) -> Result<Expr, SelectorError> {
        let mut negated = false;
        while self.peek().kind == TokenKind::Not {
            self.advance();
            negated = !negated;
        }
        let token = self.advance();
        let expr = match token.kind {
            TokenKind::All => Expr::All,
            TokenKind::Global => Expr::Global,
            TokenKind::Has(label) => Expr::Has(label),
            TokenKind::LParen => {
                if self.depth >= MAX_NESTING {
                    return Err(self.error_at(
                        &token,
                        format!("parentheses nested deeper than {MAX_NESTING}"),
                    ));
                }
                self.depth += 1;
                let inner = self.parse_or()?;
                self.depth -= 1;
                let close = self.advance();
                if close.kind != TokenKind::RParen {
                    let found = close.describe();
                    return Err(self.error_at(&close, format!("expected ')', found {found}")));
                }
                inner
            }
            TokenKind::Label(label) => self.parse_label_operation(label)?,
            _ => {
                let found = token.describe();
                return Err(self.error_at(
                    &token,
                    format!("expected a label, has(), all(), global(), '!' or '(', found {found}"),
                ));
            }
        };
        Ok(if negated {
            Expr::Not(Box::new(expr))
        } else {
            expr
        })
    }

    fn parse_label_operation(&mut self, label: String) -> Result<Expr, SelectorError> {
        let op = self.advance();
        let make: fn(String, String) -> Expr = match op.kind {
            TokenKind::Eq => Expr::Eq,
            TokenKind::Ne => Expr::Ne,
            TokenKind::Contains => Expr::Contains,
            TokenKind::StartsWith => Expr::StartsWith,
            TokenKind::EndsWith => Expr::EndsWith,
            TokenKind::In | TokenKind::NotIn => {
                let set = self.parse_set()?;
                return Ok(if op.kind == TokenKind::In {
                    Expr::In(label, set)
                } else {
                    Expr::NotIn(label, set)
                });
            }
            _ => {
                let found = op.describe();
                return Err(self.error_at(
                    &op,
                    format!("expected an operator after label '{label}', found {found}"),
                ));
            }
        };
        let value = self.advance();
        match value.kind {
            TokenKind::Str(v) => Ok(make(label, v)),
            _ => {
                let found = value.describe();
                Err(self.error_at(&value, format!("expected a quoted string, found {found}")))
            }
        }
    }

    fn parse_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let open = self.advance();
        if open.kind != TokenKind::LBrace {
            let found = open.describe();
            return Err(self.error_at(
                &open,
                format!("expected '{{' to start a set, found {found}"),
            ));
        }
        let mut set = BTreeSet::new();
        loop {
            let token = self.advance();
            match token.kind {
                // Calico accepts `{}` and a trailing comma (`{"a",}`).
                TokenKind::RBrace => return Ok(set),
                TokenKind::Str(v) => {
                    set.insert(v);
                    let sep = self.advance();
                    match sep.kind {
                        TokenKind::Comma => continue,
                        TokenKind::RBrace => return Ok(set),
                        _ => {
                            let found = sep.describe();
                            return Err(
                                self.error_at(&sep, format!("expected ',' or '}}', found {found}"))
                            );
                        }
                    }
                }
                _ => {
                    let found = token.describe();
                    return Err(self.error_at(
                        &token,
                        format!("expected a quoted string in set, found {found}"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

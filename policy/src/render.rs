//! Text in and out of the kernel's tools: `iptables-restore` input,
//! `ipset restore` input, and parsers for `iptables-save` / `ipset save`
//! output.
//!
//! Every rule Brindle writes carries `-m comment --comment "brindle:<hash>"`,
//! where the hash chains over the chain's name and all earlier rules (as
//! Felix does). Reading a chain back then means comparing lists of hashes,
//! which survives the way `iptables-save` respells rules; a rule with no
//! such comment (added by hand) makes the chain differ, and the applier
//! rewrites it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::names;
use crate::ruleset::{Family, IpSet, Ruleset, SetKind, HOOKS};

/// The comment on hook rules in built-in chains.
pub const HOOK_COMMENT: &str = "brindle:hook";

/// The chained hashes of a chain's rules, one per rule.
pub fn rule_hashes(chain: &str, rules: &[String]) -> Vec<String> {
    let mut previous = chain.to_string();
    rules
        .iter()
        .map(|rule| {
            let mut h = Sha256::new();
            h.update(previous.as_bytes());
            h.update([0]);
            h.update(rule.as_bytes());
            let mut hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize());
            hash.truncate(16);
            previous = hash.clone();
            hash
        })
        .collect()
}

/// Appends `-A` lines for a chain (without declaring or flushing it).
pub fn write_chain_rules(out: &mut String, chain: &str, rules: &[String]) {
    for (rule, hash) in rules.iter().zip(rule_hashes(chain, rules)) {
        let _ = writeln!(
            out,
            "-A {chain} -m comment --comment \"brindle:{hash}\" {rule}"
        );
    }
}

/// The match and target of the rule that hooks `target` into a built-in
/// chain; used with `-I <builtin> 1` and `-D <builtin>`.
pub fn hook_spec(target: &str) -> String {
    format!("-m comment --comment \"{HOOK_COMMENT}\" -j {target}")
}

/// `iptables-restore --noflush` input that installs a whole ruleset from
/// nothing (hooks included). The golden files hold this text.
pub fn full_restore(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    for (table, chains) in [("filter", &ruleset.filter), ("nat", &ruleset.nat)] {
        let _ = writeln!(out, "*{table}");
        for chain in chains.keys() {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        for (chain, rules) in chains {
            write_chain_rules(&mut out, chain, rules);
        }
        for (_, builtin, target) in HOOKS.iter().filter(|h| h.0 == table) {
            let _ = writeln!(out, "-I {builtin} 1 {}", hook_spec(target));
        }
        let _ = writeln!(out, "COMMIT");
    }
    out
}

/// An ipset member as `ipset save` prints it: host prefixes lose their
/// `/32` or `/128`.
pub fn ipset_member(member: &str) -> String {
    let (net, rest) = match member.split_once(',') {
        Some((n, r)) => (n, Some(r)),
        None => (member, None),
    };
    let net = net
        .strip_suffix("/32")
        .filter(|a| !a.contains(':'))
        .or_else(|| net.strip_suffix("/128").filter(|a| a.contains(':')))
        .unwrap_or(net);
    match rest {
        Some(r) => format!("{net},{r}"),
        None => net.to_string(),
    }
}

/// `create` line for a set.
pub fn ipset_create(name: &str, kind: SetKind, family: Family) -> String {
    format!(
        "create {name} {} family {} hashsize 1024 maxelem 1048576",
        kind.type_name(),
        family.ipset_family()
    )
}

/// `ipset restore` input creating every set of a ruleset from nothing.
pub fn full_ipset_restore(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    for (name, set) in &ruleset.ipsets {
        let _ = writeln!(out, "{}", ipset_create(name, set.kind, ruleset.family));
        for m in &set.members {
            let _ = writeln!(out, "add {name} {}", ipset_member(m));
        }
    }
    out
}

/// Brindle's part of one table as the kernel holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedTable {
    /// Chain → the hash of each rule (`None` for a rule without our comment).
    pub chains: BTreeMap<String, Vec<Option<String>>>,
    /// (built-in chain, target) of each hook rule found, duplicates kept.
    pub hooks: Vec<(String, String)>,
}

/// Parses `iptables-save -t <table>` output, keeping Brindle's chains and
/// the hooks into them.
pub fn parse_iptables_save(text: &str) -> ObservedTable {
    let mut observed = ObservedTable::default();
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            if names::is_owned(name) {
                observed.chains.entry(name.to_string()).or_default();
            }
            continue;
        }
        // `iptables -S <chain>` declares the chain with `-N`.
        if let Some(name) = line.strip_prefix("-N ") {
            let name = name.trim();
            if names::is_owned(name) {
                observed.chains.entry(name.to_string()).or_default();
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let chain = words.next().unwrap_or("");
        if names::is_owned(chain) {
            let hash = comment_of(rest)
                .and_then(|c| c.strip_prefix("brindle:"))
                .filter(|h| *h != "hook")
                .map(str::to_string);
            observed
                .chains
                .entry(chain.to_string())
                .or_default()
                .push(hash);
        } else if let Some(target) = jump_target(rest) {
            if names::is_owned(target) {
                observed.hooks.push((chain.to_string(), target.to_string()));
            }
        }
    }
    observed
}

fn comment_of(rule: &str) -> Option<&str> {
    let at = rule.find("--comment ")? + "--comment ".len();
    let rest = &rule[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()
    } else {
        rest.split_whitespace().next()
    }
}

fn jump_target(rule: &str) -> Option<&str> {
    let mut words = rule.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-j" || w == "-g" {
            return words.next();
        }
    }
    None
}

/// One of Brindle's ipsets as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedSet {
    /// Type name (`hash:net`).
    pub type_name: String,
    /// `inet` or `inet6`.
    pub family: String,
    /// Members as `ipset save` prints them.
    pub members: BTreeSet<String>,
}

/// Parses `ipset save` output, keeping Brindle's sets.
pub fn parse_ipset_save(text: &str) -> BTreeMap<String, ObservedSet> {
    let mut sets = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["create", name, type_name, rest @ ..] if names::is_owned(name) => {
                let family = rest
                    .windows(2)
                    .find(|w| w[0] == "family")
                    .map_or("inet", |w| w[1]);
                sets.insert(
                    name.to_string(),
                    ObservedSet {
                        type_name: type_name.to_string(),
                        family: family.to_string(),
                        members: BTreeSet::new(),
                    },
                );
            }
            ["add", name, member, ..] => {
                if let Some(set) = sets.get_mut(*name) {
                    set.members.insert(member.to_string());
                }
            }
            _ => {}
        }
    }
    sets
}

impl IpSet {
    /// Members in `ipset save` spelling.
    pub fn saved_members(&self) -> BTreeSet<String> {
        self.members.iter().map(|m| ipset_member(m)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_chain_over_earlier_rules() {
        let a = rule_hashes("c", &["x".into(), "y".into()]);
        let b = rule_hashes("c", &["z".into(), "y".into()]);
        assert_eq!(a.len(), 2);
        assert_ne!(
            a[1], b[1],
            "a change early in the chain changes later hashes"
        );
        assert_eq!(a[0].len(), 16);
    }

    #[test]
    fn parses_iptables_save_output() {
        let text = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:brindle-FORWARD - [0:0]
:brindle-empty - [0:0]
-A FORWARD -m comment --comment brindle:hook -j brindle-FORWARD
-A FORWARD -j DOCKER
-A brindle-FORWARD -i cali+ -m comment --comment brindle:AAAAAAAAAAAAAAAA -j brindle-from-wl
-A brindle-FORWARD -o cali+ -j ACCEPT
-A brindle-FORWARD -m comment --comment \"brindle:BBBBBBBBBBBBBBBB\" -j DROP
COMMIT
";
        let t = parse_iptables_save(text);
        assert_eq!(t.hooks, vec![("FORWARD".into(), "brindle-FORWARD".into())]);
        assert_eq!(
            t.chains["brindle-FORWARD"],
            vec![
                Some("AAAAAAAAAAAAAAAA".into()),
                None,
                Some("BBBBBBBBBBBBBBBB".into())
            ]
        );
        assert!(t.chains["brindle-empty"].is_empty());
        assert!(!t.chains.contains_key("FORWARD"));
    }

    #[test]
    fn parses_ipset_save_output() {
        let text = "\
create other hash:ip family inet hashsize 1024 maxelem 65536
add other 1.2.3.4
create brindle4-wl-addrs hash:net,iface family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x1
add brindle4-wl-addrs 10.0.0.1,cali1
create brindle6n:blue hash:net family inet6 hashsize 1024 maxelem 1048576
add brindle6n:blue fd00::1
";
        let sets = parse_ipset_save(text);
        assert_eq!(sets.len(), 2);
        assert_eq!(sets["brindle4-wl-addrs"].type_name, "hash:net,iface");
        assert!(sets["brindle4-wl-addrs"].members.contains("10.0.0.1,cali1"));
        assert_eq!(sets["brindle6n:blue"].family, "inet6");
    }

    #[test]
    fn members_use_ipset_spelling() {
        assert_eq!(ipset_member("10.0.0.1/32"), "10.0.0.1");
        assert_eq!(ipset_member("10.0.0.0/24"), "10.0.0.0/24");
        assert_eq!(ipset_member("fd00::1/128,cali1"), "fd00::1,cali1");
    }
}

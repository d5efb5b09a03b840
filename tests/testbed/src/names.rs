//! Unique, parseable names for namespaces, interfaces and temp dirs.
//!
//! A name looks like `bt<pid>_<counter>_<tag>`: the `bt` prefix marks it as
//! ours, the pid lets [`crate::sweep_stale`] tell whether its creator is still
//! alive, the per-process counter makes it unique inside one process, and the
//! tag says what it is for a human reading `ip netns list`. Names never exceed
//! [`IFNAMSIZ_MAX`] (15) characters so they are valid interface names too; the
//! tag is truncated (never the pid or counter) to fit.

use std::sync::atomic::{AtomicU32, Ordering};

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const IFNAMSIZ_MAX: usize = 15;

/// Prefix of every name this crate generates.
pub(crate) const PREFIX: &str = "bt";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Returns a fresh name unique across all processes on this machine (as long
/// as pids are not reused while a name is alive).
///
/// `tag` is lower-cased, reduced to `[a-z0-9]` and truncated so the result
/// fits in 15 characters; it may end up empty for very large pids/counters.
///
/// ```
/// let a = brindle_testbed::unique_name("host");
/// let b = brindle_testbed::unique_name("host");
/// assert_ne!(a, b);
/// assert!(a.len() <= 15 && a.starts_with("bt"));
/// ```
pub fn unique_name(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let base = format!("{PREFIX}{}_{n}_", std::process::id());
    let room = IFNAMSIZ_MAX.saturating_sub(base.len());
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(room)
        .collect();
    format!("{base}{tag}")
}

/// Extracts the creator pid from a name made by [`unique_name`] (or any string
/// starting with one, e.g. a temp-dir name), or `None` if it is not ours.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('_')?;
    let (counter, _tag) = rest.split_once('_')?;
    if counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Creates a private temp dir whose name starts with a [`unique_name`], so
/// [`crate::sweep_stale`] can remove it (and kill daemons using it) once the
/// creating process is gone.
pub(crate) fn temp_dir(tag: &str) -> crate::Result<tempfile::TempDir> {
    crate::sweep::sweep_once();
    tempfile::Builder::new()
        .prefix(&format!("{}.", unique_name(tag)))
        .tempdir()
        .map_err(|e| crate::Error::io("creating temp dir", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_short_and_carry_the_pid() {
        let names: Vec<String> = (0..1000).map(|_| unique_name("averylongtagname")).collect();
        for name in &names {
            assert!(name.len() <= IFNAMSIZ_MAX, "{name} too long");
            assert_eq!(owner_pid(name), Some(std::process::id()));
        }
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len());
    }

    #[test]
    fn tag_is_sanitized() {
        let name = unique_name("Ho-st!");
        assert!(name.ends_with("host") || !name.contains('-'));
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }

    #[test]
    fn foreign_names_are_not_ours() {
        assert_eq!(owner_pid("cni-1234"), None);
        assert_eq!(owner_pid("bt12x_3_a"), None);
        assert_eq!(owner_pid("bt12_x_a"), None);
        assert_eq!(owner_pid("bt12_3_a"), Some(12));
        assert_eq!(owner_pid("bt12_3_"), Some(12));
    }
}

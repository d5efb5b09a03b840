//! The BGP log level, from Calico's `logSeverityScreen`: calico-node's
//! `BGP_LOGSEVERITYSCREEN` first, then the node's own `node.<name>`
//! BGPConfiguration, then `default`. Calico sets BIRD's debug output from
//! it; here it sets the level of the speaker's own logs (`brindle_bgp`),
//! changed at run time like Calico's.
//!
//! The binary owns the subscriber: it installs a reloadable filter and
//! registers, through [`install`], how to change it. Without one (a test
//! embedding the daemon) a level is only reported.

use std::sync::OnceLock;

use brindle_model::bgp::LogSeverity;

type SetLevel = Box<dyn Fn(Option<&'static str>) -> Result<(), String> + Send + Sync>;

static SET_LEVEL: OnceLock<SetLevel> = OnceLock::new();

/// Registers how the process changes the `brindle_bgp` log level:
/// `Some(directive)` adds it (e.g. `brindle_bgp=debug`) to the process's
/// own filter, `None` goes back to that filter alone.
pub fn install(set_level: SetLevel) {
    let _ = SET_LEVEL.set(set_level);
}

/// The filter directive for a `logSeverityScreen` value; `None` for Info,
/// Calico's default, which leaves the process's own filter (`RUST_LOG`) in
/// charge.
pub fn directive(level: Option<LogSeverity>) -> Option<&'static str> {
    match level? {
        LogSeverity::Debug => Some("brindle_bgp=debug"),
        LogSeverity::Info => None,
        LogSeverity::Warning => Some("brindle_bgp=warn"),
        // Fatal: only what stops the speaker, which is logged as an error.
        LogSeverity::Error | LogSeverity::Fatal => Some("brindle_bgp=error"),
    }
}

/// Applies `level`; `Err` when the process registered no way to change it
/// or the change failed.
pub fn set_bgp_severity(level: Option<LogSeverity>) -> Result<(), String> {
    match SET_LEVEL.get() {
        Some(set) => set(directive(level)),
        None => Err("this process has no reloadable log filter".into()),
    }
}

/// `BGP_LOGSEVERITYSCREEN` as calico-node reads it (case-insensitive;
/// `warn` for Warning); `Err` names a value that is none of them.
pub fn parse_severity(text: &str) -> Result<LogSeverity, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "debug" => Ok(LogSeverity::Debug),
        "info" => Ok(LogSeverity::Info),
        "warning" | "warn" => Ok(LogSeverity::Warning),
        "error" => Ok(LogSeverity::Error),
        "fatal" => Ok(LogSeverity::Fatal),
        other => Err(format!(
            "BGP_LOGSEVERITYSCREEN={other:?} is not one of Debug, Info, Warning, Error, Fatal"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_map_to_speaker_directives() {
        assert_eq!(directive(None), None);
        assert_eq!(directive(Some(LogSeverity::Info)), None);
        assert_eq!(
            directive(Some(LogSeverity::Debug)),
            Some("brindle_bgp=debug")
        );
        assert_eq!(
            directive(Some(LogSeverity::Warning)),
            Some("brindle_bgp=warn")
        );
        assert_eq!(parse_severity("DEBUG"), Ok(LogSeverity::Debug));
        assert_eq!(parse_severity("warn"), Ok(LogSeverity::Warning));
        assert!(parse_severity("loud").unwrap_err().contains("loud"));
    }
}

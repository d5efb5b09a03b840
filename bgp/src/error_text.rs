//! One line for an error and its causes, for the binaries' edges
//! (`brindle-bgpd`, `brindle-node`).
//!
//! Many errors here and in the crates below (`std::io`, etcd, SQLite) put
//! their cause in their own message *and* return it as `source()`, so
//! printing the chain (`{:#}`, anyhow's `Caused by:`) shows each cause
//! twice: "binding 0.0.0.0:179: Address already in use (os error 98): Address
//! already in use (os error 98)". [`chain`] appends a cause only when the
//! text so far does not already contain it.

/// `error: cause: cause…`, each distinct cause once.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let line = cause.to_string();
        if !line.is_empty() && !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("binding {what}: {source}")]
    struct Embeds {
        what: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting the speaker")]
    struct Wraps(#[source] Embeds);

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::from_raw_os_error(98);
        let io_text = io.to_string();
        let e = Wraps(Embeds {
            what: "0.0.0.0:179",
            source: io,
        });
        let text = chain(&e);
        assert_eq!(
            text,
            format!("starting the speaker: binding 0.0.0.0:179: {io_text}")
        );
        assert_eq!(text.matches(&io_text).count(), 1);
    }
}

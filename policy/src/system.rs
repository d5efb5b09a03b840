//! The real [`Backend`], [`SystemBackend`]: the iptables tools of either
//! [`IptablesFlavor`] and libipset, acting in the calling thread's network
//! namespace, with restores that return as soon as the kernel has committed.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};

use crate::apply::{ApplyError, Backend};
use crate::ruleset::Family;

/// Which iptables implementation to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesFlavor {
    /// `iptables-nft-*` (nf_tables kernel API).
    Nft,
    /// `iptables-legacy-*` (x_tables).
    Legacy,
}

impl IptablesFlavor {
    /// The tool for a family and verb (`save` or `restore`).
    pub fn tool(self, family: Family, verb: &str) -> String {
        format!("{}-{verb}", self.command(family))
    }

    /// The rule-editing command of a family (`iptables-nft`, `ip6tables-legacy`).
    pub fn command(self, family: Family) -> String {
        let base = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let flavor = match self {
            IptablesFlavor::Nft => "nft",
            IptablesFlavor::Legacy => "legacy",
        };
        format!("{base}-{flavor}")
    }

    /// Picks the flavor the host already uses, as Felix does: legacy when
    /// the legacy tables hold more rules than the nft ones, else nft.
    pub fn detect() -> IptablesFlavor {
        let count = |flavor: IptablesFlavor| {
            Command::new(flavor.tool(Family::V4, "save"))
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter(|l| l.starts_with("-A"))
                        .count()
                })
                .unwrap_or(0)
        };
        if count(IptablesFlavor::Legacy) > count(IptablesFlavor::Nft) {
            IptablesFlavor::Legacy
        } else {
            IptablesFlavor::Nft
        }
    }
}

/// The real backend: iptables' save/restore tools and libipset, acting in the
/// network namespace of the calling thread.
#[derive(Debug)]
pub struct SystemBackend {
    /// Which iptables.
    pub flavor: IptablesFlavor,
    /// Restores that committed and are still exiting (see
    /// [`restore_until_committed`]).
    exiting: Vec<Child>,
}

impl SystemBackend {
    /// A backend for the given flavor.
    pub fn new(flavor: IptablesFlavor) -> Self {
        SystemBackend {
            flavor,
            exiting: Vec::new(),
        }
    }

    fn reap_exited(&mut self) {
        self.exiting
            .retain_mut(|child| matches!(child.try_wait(), Ok(None)));
    }
}

impl Drop for SystemBackend {
    fn drop(&mut self) {
        for mut child in self.exiting.drain(..) {
            let _ = child.wait();
        }
    }
}

fn run(command: &str, args: &[&str], input: Option<&str>) -> Result<String, ApplyError> {
    let spawn_err = |source| ApplyError::Spawn {
        command: command.to_string(),
        source,
    };
    let mut child = Command::new(command)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(ApplyError::Command {
            command: format!("{command} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `iptables-restore --noflush` and returns as soon as its outcome is
/// known, without waiting for the process to exit.
///
/// Why: after a commit that deleted rules, the kernel frees them after an RCU
/// grace period, and closing the restore's netlink socket waits for that
/// (`nft_rcv_nl_event` flushes `nf_tables_destroy_list`): 10-20 ms that made a
/// one-chain change on iptables-nft cost ~25 ms end to end. The input gets one
/// extra line, a `COMMIT` outside any table, which iptables-restore rejects
/// with `line <N> failed` only after every table before it was committed;
/// seeing that message on stderr means everything before it landed. Any
/// other outcome (an earlier line failing, the process dying) is reported
/// from its exit status and stderr as before. A process still exiting is
/// returned, for [`Backend::settle`] to wait on when that matters.
fn restore_until_committed(tool: &str, input: &str) -> Result<Option<Child>, ApplyError> {
    let args = ["--noflush", "--wait"];
    let spawn_err = |source| ApplyError::Spawn {
        command: tool.to_string(),
        source,
    };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let sentinel_line = input.lines().count() + 1;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means the tool exited early; its status says why.
        let _ = stdin.write_all(input.as_bytes()).and_then(|()| {
            let sep = if input.ends_with('\n') { "" } else { "\n" };
            stdin.write_all(format!("{sep}COMMIT\n").as_bytes())
        });
    }
    let mut stderr = String::new();
    if let Some(pipe) = child.stderr.take() {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            if blames_line(&line, sentinel_line) {
                return Ok(Some(child));
            }
            stderr.push_str(&line);
            line.clear();
        }
    }
    let status = child.wait().map_err(spawn_err)?;
    // Success means a tool that ignored the stray COMMIT; an error blamed on
    // it (worded another way) means the same: everything before it landed.
    if status.success() || stderr.lines().any(|l| blames_line(l, sentinel_line)) {
        return Ok(None);
    }
    Err(ApplyError::Command {
        command: format!("{tool} {}", args.join(" ")),
        stderr: stderr.trim().to_string(),
    })
}

/// Whether an `iptables-restore` error line blames input line `n`: the
/// `<tool>: line <n> failed[: why]` form, or `Error occurred at line: <n>`.
fn blames_line(stderr_line: &str, n: usize) -> bool {
    let text = stderr_line.trim_end();
    let failed = format!("line {n} failed");
    let at_line = format!("Error occurred at line: {n}");
    text.ends_with(&at_line)
        || text
            .find(&failed)
            .map(|at| &text[at + failed.len()..])
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
            && text.contains(": line ")
}

impl Backend for SystemBackend {
    fn iptables_save(&mut self, family: Family, table: &str) -> Result<String, ApplyError> {
        run(&self.flavor.tool(family, "save"), &["-t", table], None)
    }

    fn iptables_list_chain(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<Option<String>, ApplyError> {
        let command = self.flavor.command(family);
        match run(&command, &["--wait", "-t", table, "-S", chain], None) {
            Ok(text) => Ok(Some(text)),
            // legacy says "No chain/target/match by that name"; iptables-nft
            // 1.8.9 calls a chain it cannot find "incompatible".
            Err(ApplyError::Command { stderr, .. })
                if stderr.contains("No chain") || stderr.contains("is incompatible") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn iptables_restore(&mut self, family: Family, input: &str) -> Result<(), ApplyError> {
        self.reap_exited();
        let exiting = restore_until_committed(&self.flavor.tool(family, "restore"), input)?;
        self.exiting.extend(exiting);
        Ok(())
    }

    fn settle(&mut self) -> Result<(), ApplyError> {
        for mut child in self.exiting.drain(..) {
            // Its outcome is already known; this only waits for the exit.
            let _ = child.wait();
        }
        Ok(())
    }

    fn ipset_save(&mut self) -> Result<String, ApplyError> {
        run("ipset", &["save"], None)
    }

    fn ipset_restore(&mut self, input: &str) -> Result<(), ApplyError> {
        self.reap_exited();
        // In-process through libipset: no fork on the hot path of a
        // membership change.
        let mut file = tempfile::NamedTempFile::new()
            .map_err(|e| ApplyError::Ipset(format!("temporary file: {e}")))?;
        file.write_all(input.as_bytes())
            .map_err(|e| ApplyError::Ipset(format!("temporary file: {e}")))?;
        let path = file.path().to_string_lossy().into_owned();
        let session = ipset::IPSet::new();
        let result = session
            .restore(path)
            .map_err(|e| ApplyError::Ipset(format!("{e:?}")));
        // Closing the session's netlink socket waits while rules an earlier
        // iptables-nft commit replaced are still being freed (an RCU grace
        // period, see `restore_until_committed`); close it off this thread.
        let closing = ClosingSession(session);
        if let Err(e) = std::thread::Builder::new()
            .name("brindle-ipset-close".into())
            .spawn(move || closing.close())
        {
            tracing::debug!("closing the ipset session inline: {e}");
        }
        result
    }
}

/// A libipset session on its way to being closed on another thread.
struct ClosingSession(ipset::IPSet);

// SAFETY: the session is only moved, never shared: the receiving thread's
// one action is `ipset_fini` (through `Drop`), which frees the session's
// own memory and closes its socket. libipset keeps no per-thread state, and
// the process-wide type list it loads is not touched by `ipset_fini`.
unsafe impl Send for ClosingSession {}

impl ClosingSession {
    fn close(self) {
        drop(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::blames_line;

    #[test]
    fn sentinel_errors_are_recognised_and_others_are_not() {
        // What iptables 1.8.9 prints for a COMMIT outside a table (nft and
        // legacy), and the other wording iptables-restore uses.
        assert!(blames_line("iptables-nft-restore: line 7 failed\n", 7));
        assert!(blames_line("iptables-restore: line 5 failed", 5));
        assert!(blames_line(
            "ip6tables-nft-restore: line 12 failed: Bad COMMIT",
            12
        ));
        assert!(blames_line("Error occurred at line: 9", 9));
        // An earlier line failing is a real failure.
        assert!(!blames_line(
            "iptables-nft-restore: line 6 failed: No such file",
            7
        ));
        assert!(!blames_line("iptables-nft-restore: line 17 failed", 7));
        assert!(!blames_line("Error occurred at line: 4", 5));
        assert!(!blames_line("Error occurred at line: 45", 4));
    }
}

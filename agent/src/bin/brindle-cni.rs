//! `brindle-cni` (and `brindle-ipam`, the same binary under a second name):
//! the CNI plugin container runtimes call. Reads `CNI_*` from the
//! environment and the network configuration from stdin; prints the result
//! (or a spec error object, exiting 1) on stdout. Logs go to stderr
//! (`BRINDLE_CNI_LOG`, default `warn`).

use std::io::{Read, Write};

use brindle_agent::cni::{run, CniError, ErrorCode, Role, CNI_VERSION};

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BRINDLE_CNI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let argv0 = std::env::args().next().unwrap_or_default();
    let role = Role::from_argv0(&argv0);
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(role, |k| std::env::var(k).ok(), &stdin),
        Err(e) => Err(CniError::new(
            ErrorCode::IoFailure,
            format!("reading stdin: {e}"),
        )),
    };
    let cni_version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| CNI_VERSION.to_owned());
    let mut out = std::io::stdout().lock();
    let code = match outcome {
        Ok(Some(value)) => {
            let _ = writeln!(out, "{value}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&cni_version));
            1
        }
    };
    let _ = out.flush();
    std::process::exit(code);
}

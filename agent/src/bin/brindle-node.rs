//! `brindle-node`: the per-host daemon.
//!
//! ```text
//! brindle-node --datastore URL --node-name NAME [--ip ADDR/PREFIX]
//!              [--ip6 ADDR/PREFIX] [--asn N] [--status-socket PATH]
//! ```
//!
//! Registers the `Node` (address autodetected from the interface holding
//! the default route when `--ip` is not given), starts the BGP speaker,
//! follows the datastore and keeps the kernel in line with it. SIGTERM and
//! SIGINT stop it without removing kernel routes (so running flows survive
//! a restart). Logs go to stderr (`RUST_LOG` filters; default `info`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use brindle_agent::node::daemon::{run, NodeOptions};
use brindle_agent::node::options::DEFAULT_SECRETS_DIR;
use brindle_agent::node::status::DEFAULT_STATUS_SOCKET;
use brindle_agent::route::BRINDLE_ROUTE_PROTOCOL;
use clap::Parser;
use ipnet::{Ipv4Net, Ipv6Net};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(name = "brindle-node", about = "Brindle per-host node daemon")]
struct Args {
    /// Datastore URL (`file:///path/store.db`, `etcd://host:2379`).
    #[arg(long, env = "BRINDLE_DATASTORE")]
    datastore: Option<String>,
    /// This node's name (default: the hostname).
    #[arg(long, env = "NODENAME")]
    node_name: Option<String>,
    /// The node's IPv4 address and subnet, e.g. 10.0.1.1/24.
    #[arg(long)]
    ip: Option<Ipv4Net>,
    /// The node's IPv6 address and subnet, e.g. fd00:1::1/64 (IPv6 BGP
    /// sessions and routes; default: what the Node resource has).
    #[arg(long)]
    ip6: Option<Ipv6Net>,
    /// The node's AS number (default: the cluster's).
    #[arg(long)]
    asn: Option<u32>,
    /// Where to serve `brindlectl node status`.
    #[arg(long, default_value = DEFAULT_STATUS_SOCKET)]
    status_socket: PathBuf,
    /// Route protocol number of Brindle's routes.
    #[arg(long, default_value_t = BRINDLE_ROUTE_PROTOCOL)]
    route_protocol: u8,
    /// Seconds between full resyncs of kernel routes.
    #[arg(long, default_value_t = 90)]
    resync_seconds: u64,
    /// Longest wait, in seconds, for BGP to converge before kernel routes are reconciled.
    #[arg(long, default_value_t = 30)]
    startup_grace_seconds: u64,
    /// Do not program policy (iptables, ipsets, natOutgoing).
    #[arg(long)]
    no_policy: bool,
    /// Seconds a block must stay empty before its affinity is released
    /// (checked at each resync; Calico's default is 15 minutes; 0 disables).
    #[arg(long, default_value_t = 900)]
    ipam_gc_grace_seconds: u64,
    /// Directory of BGP passwords: a BGPPeer's `password.secretKeyRef`
    /// {name, key} is the file `<dir>/<name>/<key>` (as Kubernetes mounts
    /// a Secret); a changed file re-keys the session.
    #[arg(long, env = "BRINDLE_SECRETS_DIR", default_value = DEFAULT_SECRETS_DIR)]
    secrets_dir: PathBuf,
}

fn main() -> std::process::ExitCode {
    match run_node() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once (see brindle_bgp::error_text).
            eprintln!(
                "brindle-node: {}",
                brindle_bgp::error_text::chain(e.as_ref())
            );
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr through a filter from `RUST_LOG` (default `info`) that
/// the daemon can extend at run time with the speaker's level from
/// `logSeverityScreen` (brindle_agent::node::logging).
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let base = std::env::var("RUST_LOG").unwrap_or_default();
    let filter_with = move |extra: Option<&str>| {
        let mut text = if base.trim().is_empty() {
            "info".to_string()
        } else {
            base.clone()
        };
        if let Some(extra) = extra {
            text = format!("{text},{extra}");
        }
        EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let (filter, handle) = reload::Layer::new(filter_with(None));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_writer(std::io::stderr).with_ansi(false))
        .init();
    brindle_agent::node::logging::install(Box::new(move |extra| {
        handle.reload(filter_with(extra)).map_err(|e| e.to_string())
    }));
}

fn run_node() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging();
    let node_name = match args.node_name {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .context("reading the hostname")?
            .to_string_lossy()
            .into_owned(),
    };
    let opts = NodeOptions {
        datastore: args.datastore,
        node_name,
        address: args.ip,
        address6: args.ip6,
        asn: args.asn,
        status_socket: args.status_socket,
        route_protocol: args.route_protocol,
        resync_interval: Duration::from_secs(args.resync_seconds.max(1)),
        startup_grace: Duration::from_secs(args.startup_grace_seconds),
        policy: !args.no_policy,
        ipam_gc_grace: (args.ipam_gc_grace_seconds > 0)
            .then(|| Duration::from_secs(args.ipam_gc_grace_seconds)),
        secrets_dir: args.secrets_dir,
    };
    // One thread: a node's work is a few sessions, a store watch and netlink
    // calls, none of which needs a second core, and hundreds of nodes on one
    // host (the scale harness, dense test rigs) spent about 30 % of the CPU
    // in scheduling and futex wake-ups between the threads of multi-threaded
    // runtimes. Blocking work still goes to the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        run(opts, shutdown).await.context("brindle-node")
    });
    // Dropping the runtime closes BGP sessions without a NOTIFICATION, so
    // peers keep our routes as stale (graceful restart) until we are back.
    runtime.shutdown_background();
    result
}

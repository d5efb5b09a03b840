//! `brindle-bgpd`: the standalone BGP daemon built from `brindle-bgp`.
//!
//! ```text
//! brindle-bgpd --config FILE [--check]
//! brindle-bgpd show peers  [--socket PATH] [--json]
//! brindle-bgpd show routes [--socket PATH] [--json]
//! brindle-bgpd show peer ADDRESS [--socket PATH] [--json]
//! ```
//!
//! SIGHUP reloads the file (see `brindle_bgp::daemon` for what changes).
//!
//! Exit codes: 0 on success and after SIGTERM/SIGINT (peers get a Cease
//! NOTIFICATION first); 1 for a configuration error (printed as
//! `FILE:LINE:COLUMN: message`), a speaker that cannot start, or a failed
//! `show`; 2 for bad command-line usage (clap).

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use brindle_bgp::daemon::config::{Config, DEFAULT_CONTROL_SOCKET};
use brindle_bgp::daemon::control::{
    self, peer_detail, peers_table, routes_table, ControlRequest, ControlResponse, ControlServer,
};
use brindle_bgp::daemon::{originations, reload_plan, speaker_config};
use brindle_bgp::speaker::{PeerState, Speaker};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// Native BGP daemon of the Brindle fabric.
#[derive(Debug, Parser)]
#[command(name = "brindle-bgpd", version, about)]
struct Cli {
    /// YAML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only validate the configuration; exit non-zero with the line of the
    /// first error.
    #[arg(long, requires = "config")]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask a running daemon through its control socket.
    Show {
        #[command(subcommand)]
        what: Show,
        /// Control socket of the daemon.
        #[arg(long, short = 's', global = true, default_value = DEFAULT_CONTROL_SOCKET)]
        socket: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Show {
    /// Every configured peer: address, asn, state, uptime, prefix counts.
    Peers,
    /// The Loc-RIB: prefix, next hop, AS path, local pref, best.
    Routes,
    /// One peer in detail.
    Peer { address: IpAddr },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match (&cli.command, &cli.config) {
        (Some(Command::Show { what, socket, json }), _) => show(what, socket, *json),
        (None, Some(path)) => match Config::load(path) {
            Err(e) => {
                eprintln!("{}:{}:{}: {}", path.display(), e.line, e.column, e.message);
                return ExitCode::FAILURE;
            }
            Ok(config) if cli.check => {
                println!(
                    "{}: ok ({} peers, {} originated prefixes)",
                    path.display(),
                    config.peers.len(),
                    config.originate.len()
                );
                return ExitCode::SUCCESS;
            }
            Ok(config) => run(config, path),
        },
        (None, None) => Err(anyhow::anyhow!(
            "nothing to do: pass --config FILE to run, or a `show` command (see --help)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logging may not be set up (show, early errors): stderr always.
            eprintln!(
                "brindle-bgpd: {}",
                brindle_bgp::error_text::chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

fn show(what: &Show, socket: &Path, json: bool) -> anyhow::Result<()> {
    let request = match what {
        Show::Peers => ControlRequest::ShowPeers,
        Show::Routes => ControlRequest::ShowRoutes,
        Show::Peer { address } => ControlRequest::ShowPeer { address: *address },
    };
    let response = control::request(socket, &request)?;
    if let ControlResponse::Error { error } = &response {
        bail!("{error}");
    }
    let text = match (&response, json) {
        (ControlResponse::Peers { peers }, true) => serde_json::to_string_pretty(peers)?,
        (ControlResponse::Routes { routes }, true) => serde_json::to_string_pretty(routes)?,
        (ControlResponse::Peer { peer }, true) => serde_json::to_string_pretty(peer)?,
        (ControlResponse::Peers { peers }, false) => peers_table(peers),
        (ControlResponse::Routes { routes }, false) => routes_table(routes),
        (ControlResponse::Peer { peer }, false) => peer_detail(peer),
        (ControlResponse::Error { .. }, _) => unreachable!("handled above"),
    };
    println!("{}", text.trim_end());
    Ok(())
}

fn init_logging(config: &Config) {
    // RUST_LOG wins over the file, so one run can be debugged without edits.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "brindle_bgp={0},brindle_bgpd={0},warn",
            config.log_level.as_str()
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(config: Config, path: &Path) -> anyhow::Result<()> {
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(config, path))
}

async fn serve(config: Config, path: &Path) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;

    let control = ControlServer::bind(&config.control_socket)?;
    let speaker = Speaker::start(speaker_config(&config))
        .await
        .context("starting the BGP speaker")?;
    for (prefix, attrs) in originations(&config) {
        speaker
            .originate(prefix, attrs)
            .await
            .with_context(|| format!("originating {prefix}"))?;
    }
    info!(
        config = %path.display(),
        asn = config.asn,
        router_id = %config.router_id,
        peers = config.peers.len(),
        control_socket = %control.path().display(),
        "brindle-bgpd running"
    );

    let watcher = tokio::spawn(watch_peers(speaker.clone()));
    let served = control.serve(speaker.clone());
    tokio::pin!(served);
    let mut running = config;
    loop {
        tokio::select! {
            _ = &mut served => break,
            _ = terminate.recv() => {
                info!("SIGTERM: shutting down");
                break;
            }
            _ = interrupt.recv() => {
                info!("SIGINT: shutting down");
                break;
            }
            _ = hangup.recv() => reload(&speaker, &mut running, path).await,
        }
    }
    watcher.abort();
    // Peers get Cease/Administrative Shutdown; do not hang on a stuck peer.
    match tokio::time::timeout(Duration::from_secs(5), speaker.shutdown()).await {
        Ok(Ok(())) => info!("speaker stopped"),
        Ok(Err(e)) => warn!(error = %e, "speaker shutdown"),
        Err(_) => warn!("speaker did not stop within 5 s; exiting anyway"),
    }
    // `control` drops on return and removes the socket file.
    Ok(())
}

/// SIGHUP: re-reads the file and applies what can change without a
/// restart. A bad file is logged and changes nothing.
async fn reload(speaker: &Speaker, running: &mut Config, path: &Path) {
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(e) => {
            error!(
                config = %path.display(),
                line = e.line,
                column = e.column,
                "reload rejected, keeping the running configuration: {}",
                e.message
            );
            return;
        }
    };
    let plan = reload_plan(running, &new);
    if plan.is_empty() {
        info!(config = %path.display(), "reload: nothing changed");
        return;
    }
    for key in &plan.needs_restart {
        warn!(
            key,
            "reload: this key only changes on restart; keeping the running value"
        );
    }
    for prefix in &plan.withdraw {
        if let Err(e) = speaker.withdraw(*prefix).await {
            error!(%prefix, error = %e, "reload: withdraw failed");
        }
    }
    for (prefix, attrs) in &plan.originate {
        if let Err(e) = speaker.originate(*prefix, attrs.clone()).await {
            error!(%prefix, error = %e, "reload: originate failed");
        }
    }
    for peer in &plan.remove_peers {
        if let Err(e) = speaker.remove_peer(*peer).await {
            error!(%peer, error = %e, "reload: removing peer failed");
        }
    }
    for peer in &plan.add_peers {
        if let Err(e) = speaker.add_peer(peer.clone()).await {
            error!(peer = %peer.address, error = %e, "reload: adding peer failed");
        }
    }
    for peer in &plan.update_peers {
        if let Err(e) = speaker.update_peer(peer.clone()).await {
            error!(peer = %peer.address, error = %e, "reload: updating peer failed");
        }
    }
    info!(
        withdrawn = plan.withdraw.len(),
        originated = plan.originate.len(),
        peers_removed = plan.remove_peers.len(),
        peers_added = plan.add_peers.len(),
        peers_updated = plan.update_peers.len(),
        "reloaded"
    );
    let mut kept = new;
    kept.asn = running.asn;
    kept.router_id = running.router_id;
    kept.listen = running.listen;
    kept.cluster_id = running.cluster_id;
    kept.control_socket = running.control_socket.clone();
    kept.graceful_restart = running.graceful_restart;
    *running = kept;
}

/// Logs every peer state change with its reason: the one line an operator
/// looks for when a peer is unreachable or sends garbage.
async fn watch_peers(speaker: Speaker) {
    let mut last: HashMap<IpAddr, (PeerState, Option<String>)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let peers = match speaker.peers().await {
            Ok(peers) => peers,
            Err(e) => {
                error!(error = %e, "speaker stopped unexpectedly");
                return;
            }
        };
        for p in peers {
            let now = (p.state, p.last_error.clone());
            let before = last.insert(p.config.address, now.clone());
            if before.as_ref() == Some(&now) {
                continue;
            }
            let peer = p.config.address;
            match (&before, p.state) {
                (_, PeerState::Established) => info!(
                    %peer,
                    asn = p.config.remote_asn,
                    router_id = ?p.router_id,
                    families = ?p.families.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "session established"
                ),
                (Some((PeerState::Established, _)), state) => warn!(
                    %peer,
                    %state,
                    reason = p.last_error.as_deref().unwrap_or("-"),
                    "session lost"
                ),
                (_, state) if p.last_error.is_some() => warn!(
                    %peer,
                    %state,
                    reason = p.last_error.as_deref().unwrap_or("-"),
                    "session not up"
                ),
                (_, state) => info!(%peer, %state, "peer state"),
            }
        }
    }
}

//! `brindle-docker`: Docker's remote network and IPAM driver for Brindle.
//!
//! ```text
//! brindle-docker --datastore URL --node-name NAME [--plugin-name brindle]
//!                [--plugin-dir /run/docker/plugins]
//!                [--docker-host unix:///var/run/docker.sock] [--mtu 1500]
//!                [--state-dir /var/lib/brindle/docker] [--stale-check-seconds 30]
//! ```
//!
//! Serves `<plugin dir>/<plugin name>.sock`; the plugin name is both the
//! network driver and the IPAM driver:
//! `docker network create -d brindle --ipam-driver brindle NAME`. Runs in
//! the network namespace dockerd runs in (the veths it creates are handed
//! to dockerd there). SIGTERM and SIGINT stop it; containers keep their
//! network. Logs go to stderr (`RUST_LOG`, default `info`).

use std::path::PathBuf;

use anyhow::Context;
use brindle_agent::docker::driver::{Driver, Settings};
use brindle_agent::docker::engine::Engine;
use brindle_agent::docker::names::{NetworkNames, DEFAULT_STATE_DIR};
use brindle_agent::docker::server;
use brindle_agent::netlink::Netlink;
use brindle_agent::route::BRINDLE_ROUTE_PROTOCOL;
use brindle_datastore::Datastore;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    name = "brindle-docker",
    about = "Docker network and IPAM driver for Brindle"
)]
struct Args {
    /// Datastore URL (`file:///path/store.db`, `etcd://host:2379`).
    #[arg(long, env = "BRINDLE_DATASTORE")]
    datastore: Option<String>,
    /// This node's name, as brindle-node's (default: the hostname).
    #[arg(long, env = "NODENAME")]
    node_name: Option<String>,
    /// The driver's name: `docker network create -d NAME --ipam-driver NAME`.
    #[arg(long, default_value = "brindle")]
    plugin_name: String,
    /// Where dockerd looks for plugin sockets.
    #[arg(long, default_value = "/run/docker/plugins")]
    plugin_dir: PathBuf,
    /// dockerd's API, to read a network's name and a container's labels.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    docker_host: String,
    /// MTU of the containers' veths.
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Where the names of Docker networks are remembered (dockerd cannot
    /// tell them while it restores containers).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Seconds between looks for endpoints dockerd no longer has (removed
    /// after two looks in a row).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    stale_check_seconds: u64,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "brindle-docker: {}",
                brindle_bgp::error_text::chain(e.as_ref())
            );
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let node = match args.node_name {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .context("reading the hostname")?
            .to_string_lossy()
            .into_owned(),
    };
    let engine = Engine::new(&args.docker_host)?;
    let names = NetworkNames::open(&args.state_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let ds = Datastore::open(args.datastore.as_deref())
            .await
            .context("opening the datastore")?;
        let nl = Netlink::connect(BRINDLE_ROUTE_PROTOCOL).context("netlink")?;
        brindle_agent::workload::enable_host_forwarding().context("enabling forwarding")?;
        let (listener, socket) =
            server::bind(&args.plugin_dir, &args.plugin_name).with_context(|| {
                format!(
                    "serving {}/{}.sock",
                    args.plugin_dir.display(),
                    args.plugin_name
                )
            })?;
        let driver = Driver::new(
            ds,
            nl,
            engine,
            names,
            Settings {
                node: node.clone(),
                plugin: args.plugin_name.clone(),
                mtu: args.mtu,
                stale_check: std::time::Duration::from_secs(args.stale_check_seconds),
            },
        );
        info!(plugin = %args.plugin_name, socket = %socket.path().display(), %node, "serving");
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::select! {
            () = server::serve(listener, driver) => {}
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = int.recv() => info!("SIGINT: stopping"),
        }
        // The socket goes with `socket` (only while it is still ours).
        drop(socket);
        anyhow::Ok(())
    })
}

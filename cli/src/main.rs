//! `brindlectl`: the command-line client for pools, policies, peers, IPAM and
//! node status, with calicoctl's habits.
//!
//! ```text
//! brindlectl apply|create|replace -f FILE|- [-n NS] [--strict]  (all documents, one transaction)
//! brindlectl delete -f FILE|- [-n NS] | delete KIND NAME [-n NS] [--skip-not-exists]
//! brindlectl get KIND [NAME] [-o table|wide|yaml|json] [-n NS | -A] | get -f FILE
//! brindlectl ipam show [--show-blocks | --ip ADDR] | ipam check [-o REPORT]
//! brindlectl ipam release --ip ADDR... | --from-report REPORT
//! brindlectl node status
//! brindlectl version
//! ```
//!
//! The datastore is `--datastore URL`, else `$BRINDLE_DATASTORE`, else the
//! default embedded file (see `brindle_datastore::config`). Exit status is 0
//! on success and 1 on any failure, with one line per problem on stderr
//! (`error: ...`); usage errors exit 2 (clap's convention). Invalid input
//! never writes anything.

mod ipam;
mod kinds;
mod namespace;
mod node_status;
mod output;
mod table;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use brindle_datastore::{Datastore, DatastoreConfig};
use brindle_model::document::Origin;
use brindle_model::{Kind, Resource};
use clap::{Args, Parser, Subcommand, ValueEnum};

use brindle_datastore::resources::{
    Change, ResourceError as StoreError, ResourceStore, Target, WriteMode,
};

use crate::namespace::override_namespace;

#[derive(Debug, Parser)]
#[command(
    name = "brindlectl",
    version,
    about = "Manage Brindle resources: pools, BGP, policy, endpoints, IPAM"
)]
struct Cli {
    /// Datastore URL: etcd://host:2379[,host:2379], etcds://…, file:///path/store.db
    #[arg(long, global = true, env = brindle_datastore::ENV_VAR, value_name = "URL")]
    datastore: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or replace every resource in FILE (atomically).
    Apply(WriteArgs),
    /// Create every resource in FILE; fails if any exists.
    Create(WriteArgs),
    /// Replace every resource in FILE; fails if any does not exist.
    Replace(WriteArgs),
    /// Delete the resources in FILE, or one resource by kind and name.
    Delete(DeleteArgs),
    /// Show resources.
    Get(GetArgs),
    /// IP address management: usage, consistency, releasing addresses.
    Ipam {
        #[command(subcommand)]
        command: IpamCommand,
    },
    /// Node commands.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Print the client version.
    Version,
}

#[derive(Debug, Args)]
struct WriteArgs {
    /// File of resources (YAML documents, JSON, or a List); `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    filename: PathBuf,
    /// Namespace for namespaced resources that name none.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Refuse the input (nothing written) if it sets a field Brindle
    /// stores but does not act on; without it each is a warning.
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    /// File of resources to delete; `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", conflicts_with_all = ["kind", "name"])]
    filename: Option<PathBuf>,
    /// Kind (ippool, bgppeer, networkpolicy, ... singular, plural or short).
    #[arg(required_unless_present = "filename")]
    kind: Option<String>,
    /// Name of the resource.
    #[arg(requires = "kind", required_unless_present = "filename")]
    name: Option<String>,
    /// Namespace of a namespaced kind (default: default); with -f, for
    /// resources that name none.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Do not fail on resources that do not exist.
    #[arg(long)]
    skip_not_exists: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Table,
    Wide,
    Yaml,
    Json,
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Kind (ippool, bgppeer, networkpolicy, ... singular, plural or short).
    #[arg(required_unless_present = "filename")]
    kind: Option<String>,
    /// Only this resource.
    name: Option<String>,
    /// Get the resources named in FILE (`-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE", conflicts_with_all = ["kind", "name", "all_namespaces"])]
    filename: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: OutputFormat,
    /// Namespace of a namespaced kind (default: default).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

#[derive(Debug, Subcommand)]
enum IpamCommand {
    /// Addresses per pool (total, in use, free), per block with
    /// --show-blocks, or what is known about one address.
    Show {
        /// Also one row per block.
        #[arg(long)]
        show_blocks: bool,
        /// Show this address: pool, block, whether and to whom it is allocated.
        #[arg(long, value_name = "ADDR", conflicts_with = "show_blocks")]
        ip: Option<std::net::IpAddr>,
    },
    /// Look for leaked addresses and inconsistencies (reads only).
    Check {
        /// Also write the findings as JSON, for `ipam release --from-report`.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Release addresses.
    Release {
        /// An address to release (repeatable).
        #[arg(long, value_name = "ADDR", required_unless_present = "from_report")]
        ip: Vec<std::net::IpAddr>,
        /// Release the leaks listed in a report from `ipam check -o`, each
        /// only if still held as it was then.
        #[arg(long, value_name = "FILE", conflicts_with = "ip")]
        from_report: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Whether brindle-node runs, and its BGP sessions.
    Status {
        /// The node daemon's status socket.
        #[arg(long, default_value = node_status::DEFAULT_SOCKET, value_name = "PATH")]
        socket: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Prints every line of the error (one problem per line), each prefixed so
/// scripts can tell them from output.
fn fail(error: &anyhow::Error) -> ExitCode {
    let text = format!("{error:#}");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        eprintln!("error: {line}");
    }
    ExitCode::FAILURE
}

fn init_logging() {
    // Quiet by default: the CLI's output is its answer. BRINDLE_LOG=debug
    // shows datastore traffic.
    let filter = tracing_subscriber::EnvFilter::try_from_env("BRINDLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Version => {
            println!("Client Version:    v{}", env!("CARGO_PKG_VERSION"));
            println!("API Versions:      projectcalico.org/v3, brindle.dev/v1");
            Ok(())
        }
        Command::Node {
            command: NodeCommand::Status { socket },
        } => {
            let report = node_status::query(&socket, Duration::from_secs(5))?;
            if !report.running {
                bail!(
                    "brindle-node is not running (its status socket {} says so)",
                    socket.display()
                );
            }
            print!("{}", node_status::render(&report));
            Ok(())
        }
        Command::Apply(args) => write(cli.datastore, args, WriteMode::Apply).await,
        Command::Create(args) => write(cli.datastore, args, WriteMode::Create).await,
        Command::Replace(args) => write(cli.datastore, args, WriteMode::Replace).await,
        Command::Delete(args) => delete(cli.datastore, args).await,
        Command::Get(args) => get(cli.datastore, args).await,
        Command::Ipam { command } => ipam_command(cli.datastore, command).await,
    }
}

async fn ipam_command(url: Option<String>, command: IpamCommand) -> Result<()> {
    let ipam = brindle_datastore::ipam::Ipam::new(connect_datastore(url, Open::Existing).await?);
    let failed = |e: brindle_datastore::ipam::IpamError| anyhow!("{}", one_line(&e.to_string()));
    match command {
        IpamCommand::Show { ip: Some(ip), .. } => {
            print!(
                "{}",
                ipam::render_ip(&ipam::show_ip(&ipam, ip).await.map_err(failed)?)
            );
        }
        IpamCommand::Show {
            ip: None,
            show_blocks,
        } => print!("{}", ipam::show(&ipam, show_blocks).await.map_err(failed)?),
        IpamCommand::Check { output } => {
            let report = ipam::check(&ipam).await.map_err(failed)?;
            print!("{}", ipam::render_check(&report));
            if let Some(path) = output {
                let json = serde_json::to_string_pretty(&report)?;
                std::fs::write(&path, json + "\n")
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("Report written to {}", path.display());
            }
        }
        IpamCommand::Release { ip, from_report } => {
            let requests = match &from_report {
                Some(path) => {
                    let (file, text) = read_input(path)?;
                    let report: ipam::Report = serde_json::from_str(&text)
                        .map_err(|e| anyhow!("{file}: not an `ipam check` report: {e}"))?;
                    ipam::release_requests(&report)
                }
                None => ip.iter().copied().map(Into::into).collect(),
            };
            let outcome = ipam::release(&ipam, &requests).await.map_err(failed)?;
            for ip in &outcome.released {
                println!("Successfully released IP {ip}");
            }
            let mut problems = Vec::new();
            for ip in &outcome.not_allocated {
                if from_report.is_some() {
                    println!("IP {ip} was already released");
                } else {
                    problems.push(format!("IP {ip} is not assigned"));
                }
            }
            for (ip, why) in &outcome.refused {
                if from_report.is_some() {
                    println!(
                        "IP {ip} changed hands since the check; left alone ({})",
                        ipam::describe_refusal(why)
                    );
                } else {
                    problems.push(format!(
                        "IP {ip} not released: {}",
                        ipam::describe_refusal(why)
                    ));
                }
            }
            if !problems.is_empty() {
                bail!("{}", problems.join("\n"));
            }
        }
    }
    Ok(())
}

/// Connects to the configured datastore; on failure says which store and
/// where the URL came from.
async fn connect(url: Option<String>, open: Open) -> Result<ResourceStore> {
    connect_datastore(url, open).await.map(ResourceStore::new)
}

/// Whether a command may create an embedded store that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// apply/create/replace: a new store is made.
    MayCreate,
    /// Readers, delete and IPAM: a missing file is a mistyped path, not an
    /// empty store.
    Existing,
}

/// [`connect`], for the raw datastore (IPAM).
async fn connect_datastore(url: Option<String>, open: Open) -> Result<Datastore> {
    // An empty $BRINDLE_DATASTORE means unset, as the datastore crate reads it.
    let url = url.filter(|u| !u.is_empty());
    let source = if url.is_some() {
        // clap fills the flag from the environment too; tell them apart.
        match std::env::var(brindle_datastore::ENV_VAR) {
            Ok(env) if Some(&env) == url.as_ref() => {
                format!("from ${}", brindle_datastore::ENV_VAR)
            }
            _ => "from --datastore".to_string(),
        }
    } else {
        "the default".to_string()
    };
    let config = match &url {
        Some(u) => DatastoreConfig::from_url(u),
        None => DatastoreConfig::from_url(brindle_datastore::DEFAULT_URL),
    }
    .map_err(|e| anyhow!("{e} ({source})"))?;
    let config = match open {
        Open::MayCreate => config,
        Open::Existing => config.existing_only(),
    };
    let ds = Datastore::connect(&config).await.map_err(|e| {
        let place = config.describe();
        let text = e.to_string();
        // The datastore's own errors often start with the same place.
        let reason = text
            .strip_prefix(&format!("{place}: "))
            .unwrap_or(&text)
            .to_string();
        anyhow!(
            "cannot reach the datastore ({place}, {source}): {}",
            one_line(&reason)
        )
    })?;
    Ok(ds)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads a file, or stdin for `-`.
fn read_input(path: &std::path::Path) -> Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        Ok(("<stdin>".into(), text))
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok((path.display().to_string(), text))
    }
}

/// Prefixes every line of a multi-problem error with the input's name.
fn in_file(file: &str, error: StoreError) -> anyhow::Error {
    match error {
        StoreError::Invalid(_) | StoreError::Refused(_) => {
            let lines: Vec<String> = error
                .to_string()
                .lines()
                .map(|l| format!("{file}: {l}"))
                .collect();
            anyhow!("{}", lines.join("\n"))
        }
        other => datastore_error(other),
    }
}

fn datastore_error(error: StoreError) -> anyhow::Error {
    anyhow!("{}", one_line(&error.to_string()))
}

async fn write(url: Option<String>, args: WriteArgs, mode: WriteMode) -> Result<()> {
    let (file, text) = read_input(&args.filename)?;
    // Syntax and validity first: an invalid file fails the same way whether
    // or not the datastore is reachable.
    let parsed = brindle_model::document::parse_documents_with_origin(&text)
        .map_err(|e| in_file(&file, StoreError::Invalid(e)))?;
    let (mut resources, origins): (Vec<Resource>, Vec<Origin>) = parsed.into_iter().unzip();
    if let Some(ns) = &args.namespace {
        override_namespace(&text, &mut resources, &origins, ns).map_err(|e| in_file(&file, e))?;
    }
    // What Brindle cannot follow is refused, with the reason, whatever the
    // flags: nothing is written.
    let refused: Vec<String> = resources
        .iter()
        .flat_map(|r| {
            let file = &file;
            r.refused_fields()
                .into_iter()
                .map(move |field| format!("{file}: {}: {field}", r.describe()))
        })
        .collect();
    if !refused.is_empty() {
        bail!("{}\n{file}: nothing was written", refused.join("\n"));
    }
    // Never accepted silently: what nothing acts on is said (or, with
    // --strict, refused) before anything is written.
    let unimplemented: Vec<String> = resources
        .iter()
        .flat_map(|r| {
            r.unimplemented_fields().into_iter().map(move |field| {
                format!("{}: {field} is accepted but not implemented", r.describe())
            })
        })
        .collect();
    if args.strict && !unimplemented.is_empty() {
        let lines: Vec<String> = unimplemented
            .iter()
            .map(|l| format!("{file}: {l}"))
            .collect();
        bail!(
            "{}\n{file}: refused by --strict; nothing was written",
            lines.join("\n")
        );
    }
    for line in &unimplemented {
        eprintln!("warning: {line}");
    }
    let store = connect(url, Open::MayCreate).await?;
    let written = store
        .write(resources.into_iter().zip(origins).collect(), mode)
        .await
        .map_err(|e| in_file(&file, e))?;
    if written.is_empty() {
        bail!("{file}: no resources found");
    }
    let verb = match mode {
        WriteMode::Apply => "applied",
        WriteMode::Create => "created",
        WriteMode::Replace => "replaced",
    };
    for (kind, count) in count_by_kind(written.iter().map(|(r, _)| r)) {
        println!("Successfully {verb} {count} '{kind}' resource(s)");
    }
    let created = written
        .iter()
        .filter(|(_, c)| *c == Change::Created)
        .count();
    tracing::debug!(created, replaced = written.len() - created, "write done");
    Ok(())
}

fn count_by_kind<'a>(resources: impl Iterator<Item = &'a Resource>) -> Vec<(Kind, usize)> {
    let mut counts: Vec<(Kind, usize)> = Vec::new();
    for r in resources {
        match counts.iter_mut().find(|(k, _)| *k == r.kind()) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.kind(), 1)),
        }
    }
    counts
}

fn parse_kind(text: &str) -> Result<Kind> {
    kinds::from_arg(text).ok_or_else(|| {
        anyhow!(
            "unknown resource kind '{text}' (expected one of {})",
            kinds::accepted_list()
        )
    })
}

async fn delete(url: Option<String>, args: DeleteArgs) -> Result<()> {
    let (file, targets) = match &args.filename {
        Some(path) => {
            let (file, text) = read_input(path)?;
            let parsed = brindle_model::document::parse_documents_with_origin(&text)
                .map_err(|e| in_file(&file, StoreError::Invalid(e)))?;
            let (mut resources, origins): (Vec<Resource>, Vec<Origin>) = parsed.into_iter().unzip();
            if let Some(ns) = &args.namespace {
                override_namespace(&text, &mut resources, &origins, ns)
                    .map_err(|e| in_file(&file, e))?;
            }
            let targets: Vec<Target> = resources
                .iter()
                .zip(origins)
                .map(|(r, origin)| target_of(r, Some(origin)))
                .collect();
            (Some(file), targets)
        }
        None => {
            let kind = parse_kind(args.kind.as_deref().unwrap_or_default())?;
            let name = args.name.clone().unwrap_or_default();
            let target = Target {
                kind,
                namespace: args.namespace.clone(),
                name,
                resource_version: None,
                origin: None,
            };
            (None, vec![target])
        }
    };
    if targets.is_empty() {
        bail!("{}: no resources found", file.unwrap_or_default());
    }
    let datastore = connect_datastore(url, Open::Existing).await?;
    let store = ResourceStore::new(datastore.clone());
    let deleted = store
        .delete(&targets, args.skip_not_exists)
        .await
        .map_err(|e| match &file {
            Some(f) => in_file(f, e),
            None => match e {
                StoreError::Refused(r) => anyhow!("{}", r[0]),
                other => datastore_error(other),
            },
        })?;
    for (kind, count) in count_by_kind(deleted.iter()) {
        println!("Successfully deleted {count} '{kind}' resource(s)");
    }
    if deleted.is_empty() {
        println!("Nothing to delete");
    }
    // As `calicoctl delete node` does: a deleted node's block affinities
    // are released, so its empty blocks go back to the pool and blocks
    // still holding addresses can be claimed by another node.
    let ipam = brindle_datastore::ipam::Ipam::new(datastore);
    for node in deleted.iter().filter(|r| r.kind() == Kind::Node) {
        let released = ipam
            .release_node(node.name())
            .await
            .map_err(|e| anyhow!("releasing the IPAM blocks of node {}: {e}", node.name()))?;
        println!(
            "Released node {}'s IPAM affinities: {} empty block(s) deleted, {} block(s) left unclaimed",
            node.name(),
            released.blocks_deleted.len(),
            released.blocks_unclaimed.len()
        );
    }
    Ok(())
}

fn target_of(r: &Resource, origin: Option<Origin>) -> Target {
    Target {
        kind: r.kind(),
        namespace: r.namespace().map(str::to_string),
        name: r.name().to_string(),
        resource_version: r.metadata().resource_version.clone(),
        origin,
    }
}

async fn get(url: Option<String>, args: GetArgs) -> Result<()> {
    if let Some(path) = &args.filename {
        return get_from_file(url, path, &args).await;
    }
    let kind = parse_kind(args.kind.as_deref().unwrap_or_default())?;
    if args.all_namespaces && args.name.is_some() {
        bail!("a resource name cannot be combined with --all-namespaces");
    }
    let store = connect(url, Open::Existing).await?;
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(
            args.namespace
                .as_deref()
                .unwrap_or(brindle_model::resource::DEFAULT_NAMESPACE),
        )
    };
    let resources = match &args.name {
        Some(name) => match store
            .get(kind, namespace, name)
            .await
            .map_err(datastore_error)?
        {
            Some(r) => vec![r],
            None => {
                let shown = match namespace {
                    Some(ns) if kind.namespaced() => format!("{ns}/{name}"),
                    _ => name.clone(),
                };
                bail!("{kind} '{shown}' not found");
            }
        },
        None => store.list(kind, namespace).await.map_err(datastore_error)?,
    };
    let text = match args.output {
        OutputFormat::Table => {
            table::render(kind, &resources, table::Width::Normal, args.all_namespaces)
        }
        OutputFormat::Wide => {
            table::render(kind, &resources, table::Width::Wide, args.all_namespaces)
        }
        OutputFormat::Yaml => output::yaml(&resources),
        OutputFormat::Json => output::json(&resources),
    };
    print!("{text}");
    Ok(())
}

/// `get -f FILE`: the stored version of every resource the file names, in
/// the file's order; a table per kind.
async fn get_from_file(url: Option<String>, path: &std::path::Path, args: &GetArgs) -> Result<()> {
    let (file, text) = read_input(path)?;
    let parsed = brindle_model::document::parse_documents_with_origin(&text)
        .map_err(|e| in_file(&file, StoreError::Invalid(e)))?;
    let (mut wanted, origins): (Vec<Resource>, Vec<Origin>) = parsed.into_iter().unzip();
    if let Some(ns) = &args.namespace {
        override_namespace(&text, &mut wanted, &origins, ns).map_err(|e| in_file(&file, e))?;
    }
    let store = connect(url, Open::Existing).await?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (r, origin) in wanted.iter().zip(&origins) {
        match store
            .get(r.kind(), r.namespace(), r.name())
            .await
            .map_err(datastore_error)?
        {
            Some(stored) => found.push(stored),
            None => missing.push(format!(
                "{file}: document {} ({}): not found",
                origin.document,
                r.describe()
            )),
        }
    }
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    let text = match args.output {
        OutputFormat::Table | OutputFormat::Wide => {
            let width = if args.output == OutputFormat::Wide {
                table::Width::Wide
            } else {
                table::Width::Normal
            };
            let mut kinds: Vec<Kind> = found.iter().map(Resource::kind).collect();
            kinds.dedup();
            kinds.sort();
            kinds.dedup();
            kinds
                .into_iter()
                .map(|kind| {
                    let of_kind: Vec<Resource> =
                        found.iter().filter(|r| r.kind() == kind).cloned().collect();
                    table::render(kind, &of_kind, width, true)
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        OutputFormat::Yaml => output::yaml(&found),
        OutputFormat::Json => output::json(&found),
    };
    print!("{text}");
    Ok(())
}

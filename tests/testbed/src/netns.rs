//! Network namespaces that delete themselves.
//!
//! A [`Netns`] is created with a unique name (see [`crate::unique_name`]) and
//! its loopback up. Commands run inside it through `ip netns exec`, addresses
//! and routes are managed with `ip -n`. On drop every process still inside
//! the namespace is SIGKILLed and the namespace is deleted, which also
//! destroys every interface in it (veth peers included).
//!
//! Duplicate address detection is off in every namespace (`accept_dad=0`)
//! and IPv6 addresses are added with `nodad`, so addresses, link-local ones
//! included, are usable at once: a tentative address cannot be bound or used
//! for neighbour discovery, which would break BGP daemons and pings started
//! right after the topology is built.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cmd;
use crate::error::{Error, Result};
use crate::process::{poll_until, Process};

/// A network namespace owned by this handle; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `unique_name(tag)` with `lo` up.
    ///
    /// The first call in a process first runs [`crate::sweep_stale`], so
    /// leftovers of crashed runs never collide with or slow down new tests.
    pub fn new(tag: &str) -> Result<Self> {
        crate::sweep::sweep_once();
        let mut attempts = 0;
        loop {
            let name = crate::unique_name(tag);
            let mut add = Command::new("ip");
            add.args(["netns", "add", &name]);
            match cmd::checked(add) {
                Ok(_) => {
                    let ns = Netns { name };
                    ns.ip(&["link", "set", "lo", "up"])?;
                    // Without DAD, link-local addresses are usable the moment
                    // a link is up; with it, IPv6 next hops stay unresolvable
                    // for about a second after every topology is built.
                    ns.run(&[
                        "sh",
                        "-c",
                        "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && \\
                         echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad",
                    ])?;
                    tracing::debug!(netns = %ns.name, "created");
                    return Ok(ns);
                }
                // A stale namespace from an earlier process with our pid:
                // skip the name rather than steal it.
                Err(Error::CommandFailed { ref stderr, .. })
                    if stderr.contains("exists") && attempts < 100 =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The namespace's name as shown by `ip netns list`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A [`Command`] that runs `program` inside the namespace; add arguments
    /// and run it yourself when the helpers below do not fit.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    fn command_argv<S: AsRef<str>>(&self, argv: &[S]) -> Command {
        let (program, args) = argv.split_first().expect("argv must name a program");
        let mut command = self.command(program.as_ref());
        command.args(args.iter().map(AsRef::as_ref));
        command
    }

    /// Runs `argv` inside the namespace and returns its output whatever the
    /// exit status.
    ///
    /// # Panics
    /// If `argv` is empty.
    pub fn exec<S: AsRef<str>>(&self, argv: &[S]) -> Result<Output> {
        cmd::output(self.command_argv(argv))
    }

    /// Runs `argv` inside the namespace, requiring success; returns stdout.
    ///
    /// # Panics
    /// If `argv` is empty.
    pub fn run<S: AsRef<str>>(&self, argv: &[S]) -> Result<String> {
        cmd::checked(self.command_argv(argv))
    }

    /// Runs `ip -n <ns> <args>`, requiring success; returns stdout.
    pub fn ip<S: AsRef<str>>(&self, args: &[S]) -> Result<String> {
        let mut command = Command::new("ip");
        command.args(["-n", &self.name]);
        command.args(args.iter().map(AsRef::as_ref));
        cmd::checked(command)
    }

    /// Starts the long-running `argv` inside the namespace; its output goes
    /// to `log_path`. The returned handle kills its process group on drop.
    ///
    /// # Panics
    /// If `argv` is empty.
    pub fn spawn<S: AsRef<str>>(&self, what: &str, argv: &[S], log_path: &Path) -> Result<Process> {
        Process::spawn(
            format!("{what} in {}", self.name),
            self.command_argv(argv),
            log_path,
        )
    }

    /// Reads `key` (dotted, e.g. `net.ipv4.ip_forward`) as seen inside the
    /// namespace, trimmed.
    pub fn sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        Ok(self.run(&["cat", &path])?.trim().to_string())
    }

    /// Writes `value` to sysctl `key` inside the namespace.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        self.run(&[
            "sh",
            "-c",
            "printf '%s\\n' \"$1\" > \"$2\"",
            "sh",
            value,
            &path,
        ])?;
        Ok(())
    }

    /// Turns on IPv4 and IPv6 forwarding (makes the namespace a router).
    pub fn enable_forwarding(&self) -> Result<()> {
        self.set_sysctl("net.ipv4.ip_forward", "1")?;
        self.set_sysctl("net.ipv6.conf.all.forwarding", "1")
    }

    /// Sets interface `dev` up.
    pub fn link_up(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "up"]).map(drop)
    }

    /// Adds `cidr` (e.g. `10.0.0.1/24` or `fd00::1/64`) to `dev`.
    pub fn add_address(&self, dev: &str, cidr: &str) -> Result<()> {
        if cidr.contains(':') {
            self.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"])
                .map(drop)
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev]).map(drop)
        }
    }

    /// Adds a route to `destination` (a CIDR or `default`) via `gateway`.
    pub fn add_route(&self, destination: &str, gateway: IpAddr) -> Result<()> {
        let family = if gateway.is_ipv6() { "-6" } else { "-4" };
        self.ip(&[
            family,
            "route",
            "add",
            destination,
            "via",
            &gateway.to_string(),
        ])
        .map(drop)
    }

    /// Adds a default route via `gateway` (v4 or v6 by the gateway's family).
    pub fn add_default_route(&self, gateway: IpAddr) -> Result<()> {
        self.add_route("default", gateway)
    }

    /// Sends up to three echo requests to `address`; true if any was answered.
    pub fn ping(&self, address: IpAddr) -> Result<bool> {
        let out = self.exec(&[
            "ping",
            "-n",
            "-q",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            &address.to_string(),
        ])?;
        Ok(out.status.success())
    }

    /// Pings `address` until it answers or `timeout` passes.
    pub fn wait_ping(&self, address: IpAddr, timeout: Duration) -> Result<()> {
        let answered = poll_until(timeout, Duration::from_millis(100), || {
            Ok(self.ping(address)?.then_some(()))
        })?;
        answered.ok_or_else(|| Error::NotReady {
            what: format!("ping {address} from {}", self.name),
            timeout,
            detail: "no echo reply".into(),
            log_path: None,
            log_tail: self.ip(&["-br", "addr"]).unwrap_or_default()
                + &self.ip(&["route"]).unwrap_or_default(),
        })
    }

    /// Pids of all processes currently inside the namespace.
    pub fn pids(&self) -> Result<Vec<u32>> {
        pids_in(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

/// Kills everything inside namespace `name` and deletes it. Errors are
/// logged, not returned: this runs from `Drop` and from the sweeper.
pub(crate) fn delete_namespace(name: &str) {
    if let Ok(pids) = pids_in(name) {
        for pid in pids {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
    let mut del = Command::new("ip");
    del.args(["netns", "del", name]);
    match cmd::checked(del) {
        Ok(_) => tracing::debug!(netns = %name, "deleted"),
        Err(e) => tracing::warn!(netns = %name, error = %e, "cannot delete namespace"),
    }
}

fn pids_in(name: &str) -> Result<Vec<u32>> {
    let mut command = Command::new("ip");
    command.args(["netns", "pids", name]);
    let out = cmd::checked(command)?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`; a key that
/// already uses slashes (needed when an interface name contains a dot) is
/// taken as a path below `/proc/sys` as is.
fn sysctl_path(key: &str) -> String {
    if key.contains('/') {
        format!("/proc/sys/{}", key.trim_start_matches('/'))
    } else {
        format!("/proc/sys/{}", key.replace('.', "/"))
    }
}

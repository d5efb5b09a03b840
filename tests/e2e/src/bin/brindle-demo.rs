//! `brindle-demo`: builds a small Brindle fabric in network namespaces and
//! reports, from real measurements only, what works.
//!
//! Topology: three nodes on two subnets joined by a router (nodes 0 and 1 on
//! 10.0.1.0/24, node 2 on 10.0.2.0/24) and two workload namespaces per node,
//! each plugged into its node with a veth. The demo does not run the node
//! agent yet, so workloads get no addresses or routes: the demo measures the
//! underlay (node-to-node pings, IPv4 and IPv6) and says plainly that
//! workload networking is not implemented. Everything is torn down at the
//! end and on Ctrl-C / SIGTERM. Exit status: 0 if every underlay ping
//! succeeded, 1 if some failed, 2 on error or interruption. Needs root.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use brindle_testbed::{hosts_on_two_subnets, veth, Netns, RoutedFabric};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

const WORKLOADS_PER_NODE: usize = 2;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

#[allow(non_camel_case_types)]
type libc_int = std::os::raw::c_int;

/// Turns Ctrl-C, SIGTERM and SIGHUP into a flag checked between steps, so the
/// demo unwinds normally and every namespace and process is removed.
fn install_signal_handlers() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }
            .with_context(|| format!("installing {signal} handler"))?;
    }
    Ok(())
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// A workload namespace and the veth joining it to its node.
struct Workload {
    ns: Netns,
    node: usize,
    host_if: String,
}

fn main() -> ExitCode {
    if let Err(e) = install_signal_handlers() {
        eprintln!("brindle-demo: {e:#}");
        return ExitCode::from(2);
    }
    let mut created = Vec::new();
    let outcome = run(&mut created);
    // Everything `run` built has been dropped by now; verify, don't assume.
    println!();
    let left = leftover_namespaces(&created);
    if left.is_empty() {
        println!(
            "Teardown: all {} namespaces and their processes removed.",
            created.len()
        );
    } else {
        println!(
            "Teardown: FAILED, namespaces still present: {}",
            left.join(", ")
        );
    }
    match outcome {
        Ok(true) if left.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("brindle-demo: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(created: &mut Vec<String>) -> Result<bool> {
    println!("Brindle demo: a fabric of network namespaces on this machine\n");
    println!("Building 3 nodes on two subnets joined by a router...");
    let fabric = hosts_on_two_subnets([2, 1]).context("building the node underlay")?;
    created.extend(fabric.hosts.iter().map(|h| h.ns.name().to_string()));
    created.push(fabric.router.name().to_string());
    created.extend(fabric.lans.iter().map(|l| l.switch().name().to_string()));
    check_interrupted()?;

    println!("Creating {WORKLOADS_PER_NODE} workload namespaces per node...");
    let mut workloads = Vec::new();
    for (node, host) in fabric.hosts.iter().enumerate() {
        for index in 0..WORKLOADS_PER_NODE {
            let ns = Netns::new(&format!("w{node}{index}"))?;
            created.push(ns.name().to_string());
            let host_if = format!("wl{index}");
            veth(&host.ns, &host_if, &[], &ns, "eth0", &[])
                .with_context(|| format!("plugging workload {index} into node-{node}"))?;
            workloads.push(Workload { ns, node, host_if });
            check_interrupted()?;
        }
    }

    print_topology(&fabric, &workloads);
    let underlay_ok = print_underlay_matrix(&fabric)?;

    println!("\nWorkload networking: NOT IMPLEMENTED YET.");
    println!("  This demo does not run the Brindle node agent (brindle-node) yet, so the");
    println!("  workload namespaces above have a veth to their node but no address, no route");
    println!("  and no BGP advertisement. No workload-to-workload traffic was attempted or");
    println!("  claimed.");

    println!("\nTearing down...");
    drop(workloads);
    drop(fabric);
    Ok(underlay_ok)
}

fn print_topology(fabric: &RoutedFabric, workloads: &[Workload]) {
    println!("\nTopology:");
    for subnet in 0..2 {
        let (v4, len) = brindle_testbed::topology::subnet_v4(subnet);
        let (v6, len6) = brindle_testbed::topology::subnet_v6(subnet);
        println!(
            "  subnet {subnet}: {v4}/{len} {v6}/{len6}, router {}",
            brindle_testbed::topology::gateway_v4(subnet)
        );
        for (index, host) in fabric
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.subnet == subnet)
        {
            let wls: Vec<String> = workloads
                .iter()
                .filter(|w| w.node == index)
                .map(|w| format!("{} via {}", w.ns.name(), w.host_if))
                .collect();
            println!(
                "    node-{index}: {} {} (netns {}); workloads: {}",
                host.ipv4,
                host.ipv6,
                host.ns.name(),
                wls.join(", ")
            );
        }
    }
}

/// Pings every node from every other node over IPv4 and IPv6 and prints the
/// matrix; returns whether every ping was answered.
fn print_underlay_matrix(fabric: &RoutedFabric) -> Result<bool> {
    println!("\nUnderlay reachability, measured now with ICMP echo (IPv4/IPv6):");
    let n = fabric.hosts.len();
    print!("  {:>8}", "from\\to");
    for j in 0..n {
        print!(" {:>9}", format!("node-{j}"));
    }
    println!();
    let (mut answered, mut tried) = (0, 0);
    for (i, from) in fabric.hosts.iter().enumerate() {
        print!("  {:>8}", format!("node-{i}"));
        for (j, to) in fabric.hosts.iter().enumerate() {
            if i == j {
                print!(" {:>9}", "-");
                continue;
            }
            let mut cell = Vec::new();
            for address in [IpAddr::V4(to.ipv4), IpAddr::V6(to.ipv6)] {
                check_interrupted()?;
                let ok = from.ns.ping(address)?;
                // Ctrl-C also kills the ping: that is not a measured failure.
                check_interrupted()?;
                tried += 1;
                answered += usize::from(ok);
                cell.push(if ok { "ok" } else { "FAIL" });
            }
            print!(" {:>9}", cell.join("/"));
        }
        println!();
    }
    println!("  {answered} of {tried} pings answered.");
    if answered == tried {
        println!("Underlay: WORKS (every node reaches every other node, across the router too).");
    } else {
        println!("Underlay: BROKEN ({} pings unanswered).", tried - answered);
    }
    Ok(answered == tried)
}

fn leftover_namespaces(names: &[String]) -> Vec<String> {
    let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
    else {
        return names.to_vec();
    };
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let live: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names
        .iter()
        .filter(|n| live.contains(&n.as_str()))
        .cloned()
        .collect()
}

//! One IPAM allocator process, for the concurrency tests and the benchmark:
//! allocates `count` IPv4 workload addresses on one node, one handle each,
//! optionally releasing every `k`-th right away, and appends a line per
//! step to a log file as it goes (one `write` per line, so a SIGKILL leaves
//! every completed step on record):
//!
//! ```text
//! A <ip> <handle> <micros>     allocated (micros: latency of auto_assign)
//! X <handle>                   pools exhausted, nothing allocated
//! r <handle>                   about to release
//! R <handle> <n>               released n addresses
//! ```
//!
//! Usage: `ipam-stress <datastore-url> <node> <count> <log-file> [release-every]`.
//! Exits 0 when done, 1 on any error other than exhaustion.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Instant;

use brindle_datastore::ipam::{AutoAssignArgs, Ipam, IpamError};
use brindle_datastore::Datastore;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("ipam-stress: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, node, count, log, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: ipam-stress <datastore-url> <node> <count> <log-file> [release-every]".into(),
        );
    };
    let count: usize = count.parse()?;
    let release_every: usize = match rest.first() {
        Some(k) => k.parse()?,
        None => 0,
    };
    let ipam = Ipam::new(Datastore::open(Some(url)).await?);
    let mut log = OpenOptions::new().create(true).append(true).open(log)?;
    for i in 0..count {
        let handle = format!("stress.{node}-{i}");
        let started = Instant::now();
        match ipam
            .auto_assign(&AutoAssignArgs::workload_v4(&handle, node))
            .await
        {
            Ok(got) => {
                let micros = started.elapsed().as_micros();
                for ip in &got.ipv4 {
                    log.write_all(format!("A {} {handle} {micros}\n", ip.addr()).as_bytes())?;
                }
            }
            Err(IpamError::Exhausted { .. }) => {
                log.write_all(format!("X {handle}\n").as_bytes())?
            }
            Err(e) => return Err(format!("allocation {i} ({handle}): {e}").into()),
        }
        if release_every > 0 && i % release_every == release_every - 1 {
            log.write_all(format!("r {handle}\n").as_bytes())?;
            let n = ipam.release_by_handle(&handle).await?.len();
            log.write_all(format!("R {handle} {n}\n").as_bytes())?;
        }
    }
    Ok(())
}

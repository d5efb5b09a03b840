//! A rough benchmark of a datastore backend, for comparing backends and
//! spotting regressions by eye (not run in CI).
//!
//! ```text
//! cargo run -p brindle-datastore --release --example bench -- file:///tmp/bench.db
//! cargo run -p brindle-datastore --release --example bench -- etcd://127.0.0.1:2379 4 500
//! ```
//!
//! Arguments: datastore URL (default `$BRINDLE_DATASTORE` or the default
//! file), concurrent writers (4), operations per writer (300). Everything is
//! written under `/brindle-bench/<pid>/` and deleted at the end.

use std::time::{Duration, Instant};

use brindle_datastore::{Datastore, Swap, Txn, TxnOp};
use futures::StreamExt;

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{n} ops in {d:.2?} = {:.0} ops/s",
        n as f64 / d.as_secs_f64()
    )
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), brindle_datastore::Error> {
    let mut args = std::env::args().skip(1);
    let url = args.next();
    let writers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let ops: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let ds = Datastore::open(url.as_deref()).await?;
    let p = format!("/brindle-bench/{}/", std::process::id());
    println!("{} — {writers} writers × {ops} ops", ds.describe());

    let t = Instant::now();
    for i in 0..ops {
        ds.put(format!("{p}seq/{i:06}"), vec![b'x'; 256]).await?;
    }
    println!("sequential put (256 B):        {}", rate(ops, t.elapsed()));

    let t = Instant::now();
    let listing = ds.list(format!("{p}seq/")).await?;
    println!(
        "list {} keys:                {:.2?}",
        listing.kvs.len(),
        t.elapsed()
    );

    // Contended CAS on one key: the IPAM block pattern.
    let key = format!("{p}counter");
    ds.put(key.clone(), "0").await?;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let ds = Datastore::open(url.as_deref()).await?;
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut lost = 0usize;
            let mut current = ds.get(key.clone()).await?;
            for _ in 0..ops {
                loop {
                    let kv = current.take().expect("counter exists");
                    let n: u64 = String::from_utf8_lossy(&kv.value).parse().unwrap_or(0);
                    match ds
                        .compare_and_swap(key.clone(), Some(kv.mod_revision), (n + 1).to_string())
                        .await?
                    {
                        Swap::Written(kv) => {
                            current = Some(kv);
                            break;
                        }
                        Swap::Lost(now) => {
                            lost += 1;
                            current = now;
                        }
                    }
                }
            }
            Ok::<_, brindle_datastore::Error>(lost)
        }));
    }
    let mut lost = 0;
    for t in tasks {
        lost += t.await.expect("writer task")?;
    }
    println!(
        "contended CAS increments:      {} ({lost} lost races)",
        rate(writers * ops, t.elapsed())
    );

    // Multi-key transactions, uncontended.
    let t = Instant::now();
    for i in 0..ops {
        let puts = (0..4).map(|j| TxnOp::put(format!("{p}txn/{i}/{j}"), "v"));
        ds.txn(Txn::new().and_then(puts)).await?;
    }
    println!("4-key transactions:            {}", rate(ops, t.elapsed()));

    // Watch latency: a consumer already waiting on another handle (so this
    // measures notification, not a poll made after the write).
    let watcher = Datastore::open(url.as_deref()).await?;
    let mut w = watcher.watch(format!("{p}watch/"), ds.revision().await? + 1);
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let consumer = tokio::spawn(async move {
        while let Some(Ok(_)) = w.next().await {
            if arrived_tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    let mut latencies = Vec::new();
    for i in 0..ops.min(100) {
        // Let the consumer settle into waiting.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let t = Instant::now();
        ds.put(format!("{p}watch/k"), i.to_string()).await?;
        let at = arrived.recv().await.expect("watch open");
        latencies.push(at - t);
    }
    consumer.abort();
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "put→watch event latency:       p50 {:.2?}, p99 {:.2?}",
        pct(0.5),
        pct(0.99)
    );

    let removed = ds.delete_prefix(p).await?;
    println!("cleaned up {removed} keys");
    Ok(())
}

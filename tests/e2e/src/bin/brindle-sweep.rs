//! `brindle-sweep`: removes namespaces, daemons and temp dirs left by test
//! processes that no longer run (see `brindle_testbed::sweep_stale`). Safe
//! while other tests run: live owners' resources are never touched.

fn main() {
    let report = brindle_testbed::sweep_stale();
    for ns in &report.namespaces {
        println!("removed stale namespace {ns}");
    }
    for pid in &report.processes {
        println!("killed stale process {pid}");
    }
    for dir in &report.temp_dirs {
        println!("removed stale temp dir {}", dir.display());
    }
}

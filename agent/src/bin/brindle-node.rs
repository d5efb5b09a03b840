//! `brindle-node`: the per-host daemon.

fn main() {
    eprintln!("brindle-node: not implemented yet");
    std::process::exit(2);
}

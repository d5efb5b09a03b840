//! `brindle-cni`: the CNI plugin container runtimes call.

fn main() {
    eprintln!("brindle-cni: not implemented yet");
    std::process::exit(2);
}

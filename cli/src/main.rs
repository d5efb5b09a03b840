//! `brindlectl`: the command-line client for pools, policies, peers, IPAM and
//! node status, with calicoctl's habits.

fn main() {
    eprintln!("brindlectl: not implemented yet");
    std::process::exit(2);
}

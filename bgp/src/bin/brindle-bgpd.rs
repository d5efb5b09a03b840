//! `brindle-bgpd`: standalone BGP daemon built from `brindle-bgp`.

fn main() {
    eprintln!("brindle-bgpd: not implemented yet");
    std::process::exit(2);
}

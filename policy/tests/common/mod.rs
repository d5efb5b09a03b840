//! Helpers shared by the policy crate's kernel tests.

use std::fs::File;

/// Runs `body` on a thread that has entered the network namespace named
/// `ns`, so iptables, ip6tables, libipset and sockets all act inside it.
pub fn in_netns<T: Send>(ns: &str, body: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            body()
        })
        .join()
        .unwrap()
    })
}

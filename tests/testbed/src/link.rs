//! Links between namespaces: veth pairs and switched LAN segments.
//!
//! Interfaces are created directly inside their namespaces (`ip -n A link
//! add … peer name … netns B`), so their names only need to be unique within
//! a namespace and nothing is ever left in the root namespace.
//!
//! ```text
//!   veth:    [ns A] eth0 <==========> eth0 [ns B]
//!
//!   LAN:     [host1] eth0 <==> p0 ┐
//!            [host2] eth0 <==> p1 ├─ br0   [switch namespace]
//!            [router] eth1 <==> p2 ┘
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Result;
use crate::netns::Netns;

/// Creates a veth pair `a_if` (in `a`) <-> `b_if` (in `b`), both up, with
/// the given addresses (CIDR strings, v4 and/or v6) on each end.
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_addrs: &[&str],
    b: &Netns,
    b_if: &str,
    b_addrs: &[&str],
) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    for (ns, dev, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        ns.link_up(dev)?;
        for cidr in addrs {
            ns.add_address(dev, cidr)?;
        }
    }
    Ok(())
}

/// An L2 segment: a Linux bridge `br0` in its own "switch" namespace that
/// models a physical switch; hosts attach through veth pairs. Dropping the
/// LAN deletes the switch namespace, which unplugs every host.
#[derive(Debug)]
pub struct Lan {
    switch: Netns,
    next_port: AtomicU32,
}

impl Lan {
    /// Creates the switch namespace and its bridge: no STP, so ports forward
    /// at once, and no multicast snooping, so IPv6 neighbour solicitations
    /// are flooded like on a dumb switch instead of depending on MLD state.
    pub fn new(tag: &str) -> Result<Self> {
        let switch = Netns::new(tag)?;
        switch.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        switch.link_up("br0")?;
        Ok(Lan {
            switch,
            next_port: AtomicU32::new(0),
        })
    }

    /// The switch namespace (for captures: `tcpdump -i br0` inside it).
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// Plugs `host` into the LAN with interface `host_if` carrying `addrs`
    /// (CIDR strings). Returns the switch-side port name.
    pub fn attach(&self, host: &Netns, host_if: &str, addrs: &[&str]) -> Result<String> {
        let port = format!("p{}", self.next_port.fetch_add(1, Ordering::Relaxed));
        veth(&self.switch, &port, &[], host, host_if, addrs)?;
        self.switch.ip(&["link", "set", &port, "master", "br0"])?;
        Ok(port)
    }
}

//! Tester and monitor: in-process `brindle_bgp::speaker::Speaker`s, each on
//! its own thread that has entered the role's network namespace.
//!
//! A socket belongs to the namespace of the thread that creates it, so each
//! role gets a thread that `setns`es into `/run/netns/<name>` and then runs a
//! current-thread tokio runtime: every task of that speaker, and so every
//! socket, stays on that thread. The [`Speaker`] handle talks over channels
//! and is usable from any runtime, so the orchestrator polls it from its own.
//! Dropping a [`RoleSpeaker`] shuts the speaker down and joins its thread.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::thread::JoinHandle;

use brindle_bgp::speaker::{PeerConfig, Speaker, SpeakerConfig};
use nix::sched::{setns, CloneFlags};
use tokio::sync::oneshot;

/// A speaker running in a namespace on a thread of its own.
pub struct RoleSpeaker {
    pub speaker: Speaker,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RoleSpeaker {
    /// Starts a speaker with AS `asn` and router id `router_id` in namespace
    /// `netns`, actively peering with each of `peers` (address, AS), IPv4
    /// unicast only, without graceful restart (it would only add End-of-RIB
    /// waits that are not part of what is measured).
    pub fn start(
        netns: &str,
        asn: u32,
        router_id: Ipv4Addr,
        peers: &[(Ipv4Addr, u32)],
    ) -> anyhow::Result<Self> {
        let mut config = SpeakerConfig::new(asn, router_id);
        config.listen_addresses = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
        for &(address, remote_asn) in peers {
            let mut peer = PeerConfig::new(IpAddr::V4(address), remote_asn);
            peer.ipv6_unicast = false;
            peer.graceful_restart = None;
            peer.connect_retry = std::time::Duration::from_secs(1);
            config.peers.push(peer);
        }
        let path = format!("/run/netns/{netns}");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("role-{netns}"))
            .spawn(move || {
                let entered = File::open(&path)
                    .map_err(anyhow::Error::from)
                    .and_then(|f| setns(f, CloneFlags::CLONE_NEWNET).map_err(Into::into));
                if let Err(e) = entered {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("entering {path}: {e}")));
                    return;
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Speaker::start(config).await {
                        Ok(speaker) => {
                            let _ = ready_tx.send(Ok(speaker.clone()));
                            let _ = stop_rx.await;
                            let _ = speaker.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                        }
                    }
                });
            })?;
        let speaker = ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("role thread for {netns} died"))??;
        Ok(RoleSpeaker {
            speaker,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for RoleSpeaker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

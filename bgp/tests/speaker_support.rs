//! Shared helpers for the speaker tests (included with `#[path]`; as a test
//! target of its own it holds no tests).
//!
//! A [`NsSpeaker`] runs a real `Speaker` on a thread that joined a test
//! namespace, with its own tokio runtime, so its sockets live in that
//! namespace; the test drives it through the `Speaker` handle from anywhere.
//! Dropping it shuts the speaker down and joins the thread (also on panic).
#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use brindle_bgp::packet::{Origin, PathAttributes};
use brindle_bgp::speaker::{
    BestRouteChange, PathAttrs, PeerState, PeerStatus, Speaker, SpeakerConfig, Subscription,
};
use brindle_testbed::Netns;
use ipnet::IpNet;
use nix::sched::{setns, CloneFlags};

/// Upper bound for a test step; a bound, not a measurement.
pub const STEP: Duration = Duration::from_secs(60);

/// A speaker running inside a namespace.
pub struct NsSpeaker {
    pub speaker: Speaker,
    /// `true`: shut down gracefully; `false`: just drop the runtime.
    stop: Option<tokio::sync::oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsSpeaker {
    pub fn start(ns: &Netns, config: SpeakerConfig) -> NsSpeaker {
        let path = format!("/run/netns/{}", ns.name());
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let result = Speaker::start(config).await;
                let ok = result.is_ok();
                let speaker = result.as_ref().ok().cloned();
                let _ = started_tx.send(result);
                if ok {
                    let graceful = stop_rx.await.unwrap_or(true);
                    if let (true, Some(speaker)) = (graceful, speaker) {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(5), speaker.shutdown()).await;
                    }
                }
            });
        });
        let speaker = started_rx
            .recv()
            .expect("speaker thread")
            .expect("start speaker");
        NsSpeaker {
            speaker,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl NsSpeaker {
    /// Stops the speaker as a crash would: its tasks and sockets vanish
    /// without a NOTIFICATION (the kernel closes the connections).
    pub fn crash(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(false);
        }
    }
}

impl Drop for NsSpeaker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `future` to completion on a runtime of the test's own.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Attributes for a locally originated route (next hop self on export).
pub fn local_attrs() -> PathAttrs {
    PathAttrs {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            ..Default::default()
        },
        next_hop: None,
    }
}

pub fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

/// Reads the subscription until `pred` accepts a change; panics after `STEP`.
pub fn wait_change(
    sub: &mut Subscription,
    what: &str,
    mut pred: impl FnMut(&BestRouteChange) -> bool,
) -> BestRouteChange {
    block_on(async {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match tokio::time::timeout_at(deadline, sub.recv()).await {
                Ok(Some(change)) if pred(&change) => return change,
                Ok(Some(_)) => {}
                Ok(None) => panic!("speaker stopped while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    })
}

/// Waits until `peer` is Established on `speaker`; returns its status.
pub fn wait_established(speaker: &Speaker, peer: IpAddr) -> PeerStatus {
    wait_peer(speaker, peer, "Established", |s| {
        s.state == PeerState::Established
    })
}

/// Polls the peer status until `pred` holds; panics after `STEP`.
pub fn wait_peer(
    speaker: &Speaker,
    peer: IpAddr,
    what: &str,
    mut pred: impl FnMut(&PeerStatus) -> bool,
) -> PeerStatus {
    let start = Instant::now();
    loop {
        let peers = block_on(speaker.peers()).expect("peers");
        let status = peers
            .iter()
            .find(|s| s.config.address == peer)
            .unwrap_or_else(|| panic!("peer {peer} not configured"));
        if pred(status) {
            return status.clone();
        }
        assert!(
            start.elapsed() < STEP,
            "peer {peer} never became {what}: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

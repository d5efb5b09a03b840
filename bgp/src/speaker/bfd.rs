//! The speaker's side of BFD: which peers have a BFD session, and what a
//! session's state change means for BGP (the core task owns one
//! [`BfdLink`]).
//!
//! The BFD service (UDP port 3784) starts with the first peer that asks for
//! BFD. A session leaving Up for a failure tears the peer's BGP session
//! down at once with Cease "BFD Down" and without graceful restart: the
//! peer's routes leave the RIB, and the kernel, now instead of at the hold
//! time. A peer taking its BFD session down administratively (AdminDown,
//! RFC 5882 §3.2) is not a failure and changes nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use std::sync::Arc;

use tracing::{info, warn};

use super::PeerConfig;
use crate::bfd::service::{BfdEvent, BfdService};
use crate::bfd::{BfdConfig, BfdState};

pub(super) struct BfdLink {
    service: Option<BfdService>,
    /// Peers with a session: the source address and timers it runs with.
    sessions: BTreeMap<IpAddr, (Option<IpAddr>, BfdConfig)>,
    states: BTreeMap<IpAddr, BfdState>,
    /// Where the service's state changes go (the core's queue).
    report: Arc<dyn Fn(BfdEvent) + Send + Sync>,
    /// Why the service could not start, once (reported on every BFD peer).
    start_error: Option<String>,
}

impl BfdLink {
    pub(super) fn new(report: impl Fn(BfdEvent) + Send + Sync + 'static) -> Self {
        BfdLink {
            service: None,
            sessions: BTreeMap::new(),
            states: BTreeMap::new(),
            report: Arc::new(report),
            start_error: None,
        }
    }

    /// Makes the BFD session of `peer` match its configuration; an error
    /// says why BFD cannot run (the BGP session runs without it).
    pub(super) fn sync(&mut self, peer: &PeerConfig) -> Result<(), String> {
        let Some(config) = peer.bfd else {
            self.remove(peer.address);
            return Ok(());
        };
        let wanted = (peer.source_address, config);
        if self.sessions.get(&peer.address) == Some(&wanted) {
            return Ok(());
        }
        let service = self.service()?;
        service.add(peer.address, peer.source_address, config);
        self.sessions.insert(peer.address, wanted);
        self.states.entry(peer.address).or_insert(BfdState::Down);
        Ok(())
    }

    pub(super) fn remove(&mut self, peer: IpAddr) {
        if self.sessions.remove(&peer).is_some() {
            if let Some(service) = &self.service {
                service.remove(peer);
            }
        }
        self.states.remove(&peer);
    }

    /// Records a state change; `true` when BGP must treat it as the peer's
    /// failure.
    pub(super) fn event(&mut self, event: BfdEvent) -> bool {
        if !self.sessions.contains_key(&event.peer) {
            return false;
        }
        self.states.insert(event.peer, event.to);
        let failed = event.from == BfdState::Up && event.to != BfdState::Up;
        if failed && event.remote_admin_down {
            info!(peer = %event.peer, "BFD session taken down by the peer administratively");
            return false;
        }
        if failed {
            warn!(peer = %event.peer, diagnostic = %event.diagnostic, "BFD session down: closing the BGP session");
        }
        failed
    }

    /// The BFD state of `peer`, if it runs BFD.
    pub(super) fn state(&self, peer: IpAddr) -> Option<BfdState> {
        self.states.get(&peer).copied()
    }

    fn service(&mut self) -> Result<&BfdService, String> {
        if self.service.is_none() {
            if let Some(error) = &self.start_error {
                return Err(error.clone());
            }
            let report = Arc::clone(&self.report);
            match BfdService::start(move |event| report(event)) {
                Ok(service) => self.service = Some(service),
                Err(error) => {
                    let text = format!("BFD cannot listen on UDP port 3784: {error}");
                    warn!("{text}");
                    self.start_error = Some(text.clone());
                    return Err(text);
                }
            }
        }
        Ok(self.service.as_ref().expect("started above"))
    }
}

//! Link notifications (`RTNLGRP_LINK`), so routes waiting for an interface
//! (a workload route queued before its veth exists) are retried the moment
//! it appears instead of at the next resync.
//!
//! Like every netlink socket, the subscription lives in the network
//! namespace of the thread that calls [`LinkWatcher::start`].

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkFlags};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::sys::SocketAddr;
use rtnetlink::MulticastGroup;

use crate::netlink::NetlinkError;
use crate::reconciler::Input;

/// A link came, changed or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// `RTM_NEWLINK`: created or changed (up/down, MTU, …).
    Present { index: u32, name: String, up: bool },
    /// `RTM_DELLINK`.
    Gone { index: u32, name: String },
}

impl LinkEvent {
    /// The reconciler input this event warrants, if any.
    pub fn reconciler_input(&self) -> Option<Input> {
        match self {
            LinkEvent::Present { name, up: true, .. } => Some(Input::LinkAppeared(name.clone())),
            LinkEvent::Present {
                name, up: false, ..
            } => Some(Input::LinkDown(name.clone())),
            LinkEvent::Gone { name, .. } => Some(Input::LinkDeleted(name.clone())),
        }
    }
}

/// A subscription to link notifications.
pub struct LinkWatcher {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

impl LinkWatcher {
    /// Subscribe in the calling thread's namespace.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start() -> Result<Self, NetlinkError> {
        let (connection, _handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(NetlinkError::Socket)?;
        tokio::spawn(connection);
        Ok(Self { messages })
    }

    /// The next event; `None` when the socket closed.
    pub async fn next(&mut self) -> Option<LinkEvent> {
        while let Some((message, _)) = self.messages.next().await {
            let NetlinkPayload::InnerMessage(inner) = message.payload else {
                continue;
            };
            let (link, present) = match inner {
                RouteNetlinkMessage::NewLink(link) => (link, true),
                RouteNetlinkMessage::DelLink(link) => (link, false),
                _ => continue,
            };
            let name = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            let Some(name) = name else { continue };
            let index = link.header.index;
            let up = link.header.flags.contains(LinkFlags::Up);
            return Some(if present {
                LinkEvent::Present { index, name, up }
            } else {
                LinkEvent::Gone { index, name }
            });
        }
        None
    }
}

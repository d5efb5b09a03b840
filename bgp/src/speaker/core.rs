//! The core task: owns the RIB and the peer registry.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{Request, Speaker, SpeakerConfig, SpeakerError};

/// Everything the core task reacts to.
pub(crate) enum Input {
    Request(Request),
    Incoming(TcpStream, SocketAddr),
}

pub(crate) async fn start(config: SpeakerConfig) -> Result<Speaker, SpeakerError> {
    let _ = config;
    let (requests, _rx) = mpsc::unbounded_channel();
    Ok(Speaker { requests })
}

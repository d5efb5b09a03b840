//! Accepts BGP connections and hands them to the core task, which knows
//! which peer (if any) an address belongs to.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::core::Input;

/// Accepts on `listener` until the core task goes away.
pub(crate) async fn accept_loop(listener: Arc<TcpListener>, core: mpsc::UnboundedSender<Input>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                debug!(%remote, "accepted connection");
                if core.send(Input::Incoming(stream, remote)).is_err() {
                    return;
                }
            }
            Err(error) => {
                // Transient (EMFILE, ECONNABORTED): back off briefly, keep going.
                warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        if core.is_closed() {
            return;
        }
    }
}

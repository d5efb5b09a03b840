//! A TCP proxy on 127.0.0.1 that a test can cut: every connection through it
//! is dropped and new ones are refused until restored. Used to give a client
//! a real disconnect from a server that keeps running (and keeps taking
//! writes from other clients).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The proxy; dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct CuttableProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    cut: AtomicBool,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

impl CuttableProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if s.cut.load(Ordering::SeqCst) {
                    drop(client); // refused: the client sees the connection close
                    continue;
                }
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut conns = s.conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(conn);
            }
        });
        CuttableProxy {
            addr,
            shared,
            accept,
        }
    }

    /// `host:port` clients should dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for c in self.shared.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.shared.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

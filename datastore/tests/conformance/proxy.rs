//! A TCP proxy on 127.0.0.1 that a test can cut, like a server going away:
//! while cut, every proxied connection is dropped and the port refuses new
//! ones (the listener is closed); restoring listens on the same port again.
//! Gives a client a real disconnect from a server that keeps running (and
//! keeps taking writes from other clients).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The proxy; dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct CuttableProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl CuttableProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = CuttableProxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            accept: Mutex::new(None),
            conns: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (conns, upstream) = (self.conns.clone(), self.upstream);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut conns = conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(conn);
            }
        });
        *self.accept.lock().unwrap() = Some(accept);
    }

    /// `host:port` clients should dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener (new connections are refused) and drops every
    /// proxied connection.
    pub fn cut(&self) {
        if let Some(a) = self.accept.lock().unwrap().take() {
            a.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Listens on the same port again. Must be called within a Tokio runtime.
    pub fn restore(&self) {
        if self.accept.lock().unwrap().is_some() {
            return;
        }
        // The aborted accept task drops its listener asynchronously; retry
        // until the port is free again (SO_REUSEADDR is set by std on Unix).
        let mut last = None;
        for _ in 0..500 {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => {
                    l.set_nonblocking(true).unwrap();
                    self.serve(TcpListener::from_std(l).unwrap());
                    return;
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        panic!("cannot listen on {} again: {last:?}", self.addr);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        if let Some(a) = self.accept.lock().unwrap().take() {
            a.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

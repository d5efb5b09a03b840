//! The plugin's HTTP server: `POST /<Interface>.<Method>` with a JSON body
//! on `<plugin dir>/<plugin name>.sock`, each call answered by
//! [`Driver::handle`](super::driver::Driver::handle) as JSON with
//! Docker's plugin content type.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tracing::{debug, warn};

use super::driver::Driver;

/// The content type Docker's plugin protocol uses.
const PLUGIN_CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// Serves `driver` on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, driver: Arc<Driver>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                warn!(%error, "accepting a plugin connection");
                continue;
            }
        };
        let driver = driver.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(driver.clone(), req));
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%error, "plugin connection ended");
            }
        });
    }
}

async fn answer(
    driver: Arc<Driver>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.uri().path().trim_start_matches('/').to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(error) => {
            warn!(%method, %error, "reading a plugin request");
            Bytes::new()
        }
    };
    let reply = driver.handle(&method, &body).await;
    let text = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
    Ok(Response::builder()
        .header("Content-Type", PLUGIN_CONTENT_TYPE)
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"{}")))))
}

/// Binds `<dir>/<name>.sock` (a stale socket of a dead plugin is
/// replaced; a live one, or anything that is not a socket, is refused).
/// The path goes away with the returned guard while it is still ours.
pub fn bind(
    dir: &Path,
    name: &str,
) -> Result<(UnixListener, brindle_bgp::unix_socket::SocketPath), BindError> {
    std::fs::create_dir_all(dir)?;
    let (listener, path) = brindle_bgp::unix_socket::bind(&dir.join(format!("{name}.sock")))?;
    listener.set_nonblocking(true)?;
    Ok((UnixListener::from_std(listener)?, path))
}

/// Why the plugin socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Socket(#[from] brindle_bgp::unix_socket::SocketPathError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

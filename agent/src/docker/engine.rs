//! The few Docker Engine API reads the driver needs (a network's name, the
//! container behind an endpoint, its labels), over dockerd's Unix socket
//! (`--docker-host unix:///var/run/docker.sock`). The remote plugin
//! protocol names networks and endpoints by id only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("--docker-host {0}: only unix:// addresses are supported")]
    NotUnix(String),
    #[error("dockerd at {socket}: {what}: {error}")]
    Io {
        socket: String,
        what: String,
        error: String,
    },
    #[error("dockerd at {socket}: GET {path}: HTTP {status}: {body}")]
    Status {
        socket: String,
        path: String,
        status: u16,
        body: String,
    },
}

/// How long one API call may take: dockerd accepts connections before it
/// answers them (while it restores containers after a restart).
pub const API_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one dockerd.
#[derive(Debug, Clone)]
pub struct Engine {
    socket: PathBuf,
}

impl Engine {
    /// From `--docker-host` (`unix:///path` or a bare path).
    pub fn new(host: &str) -> Result<Self, EngineError> {
        let path = match host.strip_prefix("unix://") {
            Some(p) => p,
            None if host.starts_with('/') => host,
            None => return Err(EngineError::NotUnix(host.to_owned())),
        };
        Ok(Self {
            socket: PathBuf::from(path),
        })
    }

    fn io(&self, what: &str, error: impl std::fmt::Display) -> EngineError {
        EngineError::Io {
            socket: self.socket.display().to_string(),
            what: what.to_owned(),
            error: error.to_string(),
        }
    }

    /// `GET path` and its JSON body, or an error after [`API_TIMEOUT`].
    async fn get(&self, path: &str) -> Result<Value, EngineError> {
        tokio::time::timeout(API_TIMEOUT, self.get_unbounded(path))
            .await
            .map_err(|_| self.io(path, format!("no answer in {API_TIMEOUT:?}")))?
    }

    async fn get_unbounded(&self, path: &str) -> Result<Value, EngineError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.io("connect", e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.io("handshake", e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::get(path)
            .header("Host", "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.io(path, e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.io(path, e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.io(path, e))?
            .to_bytes();
        if status != 200 {
            return Err(EngineError::Status {
                socket: self.socket.display().to_string(),
                path: path.to_owned(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| self.io(path, e))
    }

    /// The name of network `id` (`docker network create NAME`).
    pub async fn network_name(&self, id: &str) -> Result<String, EngineError> {
        let network = self.get(&format!("/networks/{id}")).await?;
        Ok(network["Name"].as_str().unwrap_or_default().to_owned())
    }

    /// Id → name of every network of driver `driver`.
    pub async fn networks_of_driver(
        &self,
        driver: &str,
    ) -> Result<BTreeMap<String, String>, EngineError> {
        let networks = self.get("/networks").await?;
        Ok(networks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["Driver"].as_str() == Some(driver))
            .filter_map(|n| Some((n["Id"].as_str()?.to_owned(), n["Name"].as_str()?.to_owned())))
            .collect())
    }

    /// Every endpoint dockerd has on network `network` (its containers'
    /// and placeholders').
    pub async fn endpoints_of(&self, network: &str) -> Result<Vec<String>, EngineError> {
        let network = self.get(&format!("/networks/{network}")).await?;
        Ok(network["Containers"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, c)| Some(c["EndpointID"].as_str()?.to_owned()))
            .collect())
    }

    /// The container attached to network `network` through `endpoint`, if
    /// dockerd lists it yet (it does once the container is running).
    pub async fn container_of(
        &self,
        network: &str,
        endpoint: &str,
    ) -> Result<Option<String>, EngineError> {
        let network = self.get(&format!("/networks/{network}")).await?;
        Ok(network["Containers"].as_object().and_then(|containers| {
            containers
                .iter()
                // `ep-<endpoint>`: dockerd's placeholder while the container
                // is being attached; the container's own id comes after.
                .find(|(id, c)| {
                    !id.starts_with("ep-") && c["EndpointID"].as_str() == Some(endpoint)
                })
                .map(|(id, _)| id.clone())
        }))
    }

    /// A container's name (without the leading `/`) and labels.
    pub async fn container(
        &self,
        id: &str,
    ) -> Result<(String, BTreeMap<String, String>), EngineError> {
        let container = self.get(&format!("/containers/{id}/json")).await?;
        let name = container["Name"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned();
        let labels = container["Config"]["Labels"]
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Ok((name, labels))
    }
}

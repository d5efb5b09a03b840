//! Choosing and describing a backend with one URL, everywhere.
//!
//! ```text
//! etcd://[user:pass@]host:2379[,host2:2379…][?timeout=SECS]     plain gRPC
//! etcds://[user:pass@]host:2379[,…]?ca=PATH[&cert=PATH&key=PATH] TLS (client cert optional)
//! file:///var/lib/brindle/store.db[?history=REVISIONS]           embedded SQLite file
//! ```
//!
//! The URL comes from a `--datastore` flag, else env `BRINDLE_DATASTORE`, else
//! [`DEFAULT_URL`]. User and password may be percent-encoded. Parsing only
//! validates syntax; files named by the URL are read when connecting.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Result};

/// Environment variable consulted when no URL is given explicitly.
pub const ENV_VAR: &str = "BRINDLE_DATASTORE";

/// The store used when nothing is configured: one file shared by every
/// Brindle process on the host.
pub const DEFAULT_URL: &str = "file:///var/lib/brindle/store.db";

/// How many revisions of history the embedded store keeps for watches by
/// default (older ones are compacted).
pub const DEFAULT_HISTORY: i64 = 10_000;

/// A parsed datastore URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreConfig {
    Etcd(EtcdConfig),
    Embedded(EmbeddedConfig),
}

/// How to reach an etcd v3 cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `host:port` of each member (no scheme).
    pub endpoints: Vec<String>,
    pub credentials: Option<Credentials>,
    /// `Some` for `etcds://`.
    pub tls: Option<TlsFiles>,
    /// Per-request and connect timeout.
    pub timeout: Duration,
}

/// etcd username/password authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Why: configs end up in logs; the password must not.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// PEM files for TLS to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signed the server certificates (`None`: system roots are
    /// not loaded, so in practice always give it).
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for etcd's `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Where the embedded store keeps its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    pub path: PathBuf,
    /// Revisions of watch history kept before compaction.
    pub history: i64,
    /// Refuse to create the file: for readers (`brindlectl get`), where a
    /// mistyped path must be an error, not an empty store.
    pub must_exist: bool,
}

impl EtcdConfig {
    /// Endpoints as URIs for the gRPC client.
    pub fn endpoint_uris(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }
}

impl DatastoreConfig {
    /// The same store, but an embedded file that does not exist is an error
    /// instead of being created (etcd is unaffected).
    pub fn existing_only(mut self) -> Self {
        if let DatastoreConfig::Embedded(c) = &mut self {
            c.must_exist = true;
        }
        self
    }

    /// Parses a datastore URL (see the module docs for the forms).
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: redact(url),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected etcd://, etcds:// or file://"))?;
        let (body, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let params = parse_query(query).map_err(|r| bad(&r))?;
        match scheme {
            "file" => {
                if body.is_empty() || !body.starts_with('/') {
                    return Err(bad(
                        "file:// needs an absolute path, e.g. file:///var/lib/brindle/store.db",
                    ));
                }
                let mut history = DEFAULT_HISTORY;
                for (k, v) in params {
                    match k.as_str() {
                        "history" => {
                            history = v.parse().ok().filter(|h| *h > 0).ok_or_else(|| {
                                bad("history must be a positive number of revisions")
                            })?;
                        }
                        other => {
                            return Err(bad(&format!("unknown parameter {other:?} for file://")))
                        }
                    }
                }
                Ok(DatastoreConfig::Embedded(EmbeddedConfig {
                    path: PathBuf::from(percent_decode(body).map_err(|r| bad(&r))?),
                    history,
                    must_exist: false,
                }))
            }
            "etcd" | "etcds" => {
                let (userinfo, hosts) = match body.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, body),
                };
                let credentials = match userinfo {
                    None => None,
                    Some(u) => {
                        let (user, password) = u
                            .split_once(':')
                            .ok_or_else(|| bad("credentials must be user:password@"))?;
                        let user = percent_decode(user).map_err(|r| bad(&r))?;
                        if user.is_empty() {
                            return Err(bad("empty user name"));
                        }
                        Some(Credentials {
                            user,
                            password: percent_decode(password).map_err(|r| bad(&r))?,
                        })
                    }
                };
                let hosts = hosts.trim_end_matches('/');
                let mut endpoints = Vec::new();
                for h in hosts.split(',') {
                    endpoints.push(parse_endpoint(h).map_err(|r| bad(&r))?);
                }
                let mut tls = TlsFiles {
                    ca: None,
                    cert: None,
                    key: None,
                };
                let mut timeout = Duration::from_secs(5);
                for (k, v) in params {
                    match k.as_str() {
                        "ca" => tls.ca = Some(PathBuf::from(v)),
                        "cert" => tls.cert = Some(PathBuf::from(v)),
                        "key" => tls.key = Some(PathBuf::from(v)),
                        "timeout" => {
                            let secs: f64 = v
                                .parse()
                                .ok()
                                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                                .ok_or_else(|| {
                                    bad("timeout must be a positive number of seconds")
                                })?;
                            timeout = Duration::from_secs_f64(secs);
                        }
                        other => {
                            return Err(bad(&format!(
                                "unknown parameter {other:?} for {scheme}://"
                            )))
                        }
                    }
                }
                if tls.cert.is_some() != tls.key.is_some() {
                    return Err(bad("cert and key must be given together"));
                }
                let has_tls_files = tls.ca.is_some() || tls.cert.is_some();
                let tls = match scheme {
                    "etcds" => Some(tls),
                    _ if has_tls_files => {
                        return Err(bad("ca/cert/key are TLS settings: use etcds://"));
                    }
                    _ => None,
                };
                Ok(DatastoreConfig::Etcd(EtcdConfig {
                    endpoints,
                    credentials,
                    tls,
                    timeout,
                }))
            }
            other => Err(bad(&format!(
                "unknown scheme {other:?}: expected etcd://, etcds:// or file://"
            ))),
        }
    }

    /// The URL in `explicit` if given, else env [`ENV_VAR`], else [`DEFAULT_URL`].
    pub fn resolve(explicit: Option<&str>) -> Result<Self> {
        match explicit {
            Some(url) => Self::from_url(url),
            None => match std::env::var(ENV_VAR) {
                Ok(url) if !url.is_empty() => Self::from_url(&url),
                _ => Self::from_url(DEFAULT_URL),
            },
        }
    }

    /// A short description for logs and errors ("etcd at a:2379,b:2379",
    /// "embedded store /var/lib/brindle/store.db"); never includes secrets.
    pub fn describe(&self) -> String {
        match self {
            DatastoreConfig::Etcd(e) => format!(
                "etcd{} at {}",
                if e.tls.is_some() { " (TLS)" } else { "" },
                e.endpoints.join(",")
            ),
            DatastoreConfig::Embedded(e) => format!("embedded store {}", e.path.display()),
        }
    }
}

impl std::str::FromStr for DatastoreConfig {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        DatastoreConfig::from_url(s)
    }
}

fn parse_endpoint(h: &str) -> std::result::Result<String, String> {
    if h.is_empty() {
        return Err("empty endpoint in the host list".into());
    }
    // "[v6]:port" or "host:port"; the port is required so a typo cannot
    // silently talk to the wrong service.
    let port = if let Some(rest) = h.strip_prefix('[') {
        let (_, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("endpoint {h:?}: unclosed '['"))?;
        after.strip_prefix(':')
    } else {
        h.rsplit_once(':').map(|(_, p)| p)
    };
    let port = port.ok_or_else(|| format!("endpoint {h:?} needs a port, e.g. {h}:2379"))?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("endpoint {h:?}: bad port {port:?}"))?;
    Ok(h.to_owned())
}

fn parse_query(query: Option<&str>) -> std::result::Result<Vec<(String, String)>, String> {
    let Some(q) = query else {
        return Ok(Vec::new());
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("query parameter {p:?} needs a value"))?;
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// The URL with any password replaced, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (body, query) = match rest.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (rest, String::new()),
    };
    match body.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{hosts}{query}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd(url: &str) -> EtcdConfig {
        match DatastoreConfig::from_url(url).unwrap() {
            DatastoreConfig::Etcd(e) => e,
            other => panic!("expected etcd, got {other:?}"),
        }
    }

    #[test]
    fn parses_plain_etcd_with_several_endpoints() {
        let e = etcd("etcd://10.0.0.1:2379,10.0.0.2:2379");
        assert_eq!(e.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(e.credentials, None);
        assert_eq!(e.tls, None);
        assert_eq!(
            e.endpoint_uris(),
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
    }

    #[test]
    fn parses_credentials_and_tls() {
        let e = etcd("etcds://calico:p%40ss%3Aword@etcd-a:2379,[fd00::1]:2379?ca=/pki/ca.pem&cert=/pki/c.pem&key=/pki/c.key");
        let c = e.credentials.unwrap();
        assert_eq!(c.user, "calico");
        assert_eq!(c.password, "p@ss:word");
        assert_eq!(e.endpoints, ["etcd-a:2379", "[fd00::1]:2379"]);
        let tls = e.tls.unwrap();
        assert_eq!(tls.ca.as_deref(), Some(std::path::Path::new("/pki/ca.pem")));
        assert_eq!(
            tls.cert.as_deref(),
            Some(std::path::Path::new("/pki/c.pem"))
        );
        assert_eq!(tls.key.as_deref(), Some(std::path::Path::new("/pki/c.key")));
    }

    #[test]
    fn etcds_without_files_still_means_tls() {
        let e = etcd("etcds://h:2379");
        assert!(e.tls.is_some());
        assert_eq!(e.endpoint_uris(), ["https://h:2379"]);
    }

    #[test]
    fn parses_file_urls() {
        let c = DatastoreConfig::from_url("file:///var/lib/brindle/store.db?history=500").unwrap();
        assert_eq!(
            c,
            DatastoreConfig::Embedded(EmbeddedConfig {
                path: "/var/lib/brindle/store.db".into(),
                history: 500,
                must_exist: false,
            })
        );
        assert_eq!(
            DatastoreConfig::from_url(DEFAULT_URL).unwrap().describe(),
            "embedded store /var/lib/brindle/store.db"
        );
    }

    #[test]
    fn rejects_malformed_urls_with_a_reason() {
        for (url, needle) in [
            ("localhost:2379", "expected etcd://"),
            ("http://h:2379", "unknown scheme"),
            ("etcd://h", "needs a port"),
            ("etcd://h:99999", "bad port"),
            ("etcd://h:2379,", "empty endpoint"),
            ("etcd://h:2379?ca=/x", "use etcds://"),
            ("etcds://h:2379?cert=/x", "together"),
            ("etcd://h:2379?bogus=1", "unknown parameter"),
            ("file://relative.db", "absolute path"),
            ("file:///x.db?history=0", "history"),
            ("etcd://justuser@h:2379", "user:password"),
        ] {
            let err = DatastoreConfig::from_url(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn explicit_url_beats_env_beats_default() {
        // Only this test touches the variable, so it cannot race others.
        std::env::remove_var(ENV_VAR);
        assert_eq!(
            DatastoreConfig::resolve(None).unwrap(),
            DatastoreConfig::from_url(DEFAULT_URL).unwrap()
        );
        std::env::set_var(ENV_VAR, "etcd://from-env:2379");
        assert_eq!(
            etcd_of(DatastoreConfig::resolve(None)).endpoints,
            ["from-env:2379"]
        );
        assert_eq!(
            etcd_of(DatastoreConfig::resolve(Some("etcd://flag:2379"))).endpoints,
            ["flag:2379"]
        );
        std::env::set_var(ENV_VAR, "");
        assert_eq!(
            DatastoreConfig::resolve(None).unwrap(),
            DatastoreConfig::from_url(DEFAULT_URL).unwrap()
        );
        std::env::remove_var(ENV_VAR);
    }

    fn etcd_of(c: Result<DatastoreConfig>) -> EtcdConfig {
        match c.unwrap() {
            DatastoreConfig::Etcd(e) => e,
            other => panic!("expected etcd, got {other:?}"),
        }
    }

    #[test]
    fn errors_do_not_leak_passwords() {
        let err = DatastoreConfig::from_url("etcd://u:secret@h:2379?nope=1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("u:***@h:2379"), "{err}");
        let c = etcd("etcd://u:secret@h:2379");
        assert!(!format!("{c:?}").contains("secret"));
    }
}

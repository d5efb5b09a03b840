//! The etcd v3 backend: the distributed store for clusters.
//!
//! A thin translation onto etcd's own semantics (which the embedded backend
//! copies), so the only logic here is:
//!
//! * connecting: endpoints, optional TLS (CA, client certificate) and
//!   username/password (tokens refreshed when they expire), with a timeout;
//!   `connect` proves some member answers, so a wrong URL fails at start-up,
//!   naming the endpoints;
//! * failover between members: one client per endpoint, requests start at the
//!   member that answered last and move on when it is unreachable. Reads
//!   (get, list, status) retry on any transport failure or timeout; writes
//!   only when the request provably never left (connection refused), because
//!   a transaction whose answer was lost may have been applied: that case is
//!   returned as a transient error for the caller to re-read and decide;
//! * lists in pages, all read at the first page's revision;
//! * filling in [`KeyValue`] revisions for puts (etcd returns only the header
//!   revision; the previous key gives create revision and version);
//! * watches that survive disconnects: a background task re-creates the etcd
//!   watch (on the next member if the last one failed) from the last
//!   delivered revision + 1 with capped backoff, and maps etcd's
//!   `compact_revision` to [`Error::Compacted`].
//!
//! [`Backend::revision`] asks one member's status: on a follower it may lag
//! the leader by a few revisions (harmless for "watch from now").

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_client as ec;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream};
use futures::FutureExt;
use tracing::{debug, debug_span, warn, Instrument};

use crate::config::EtcdConfig;
use crate::kv::{
    prefix_range_end, CompareOp, CompareTarget, Event, EventKind, KeyValue, Listing, Revision, Txn,
    TxnOp, TxnOpResult, TxnResponse,
};
use crate::store::Backend;
use crate::{Error, Result};

/// Longest pause between attempts to re-establish a broken watch.
const MAX_WATCH_BACKOFF: Duration = Duration::from_secs(2);

/// Keys per page when listing a prefix.
const LIST_PAGE: i64 = 500;

/// Events buffered between the watch task and the consumer.
const WATCH_BUFFER: usize = 256;

/// The etcd backend.
#[derive(Clone)]
pub struct EtcdBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// One client per member: etcd-client's own balancer fails a request when
    /// any member is down (etcdv3/etcd-client#39), so failover is done here.
    members: Vec<Member>,
    /// The member that answered last; requests start there.
    preferred: AtomicUsize,
    options: ec::ConnectOptions,
    /// "h1:2379,h2:2379", for errors.
    endpoints: Arc<str>,
    timeout: Duration,
    tls: bool,
}

struct Member {
    uri: String,
    /// Connected on first use (connecting authenticates, which needs the
    /// member up); the channel underneath reconnects by itself afterwards.
    client: tokio::sync::Mutex<Option<ec::Client>>,
}

/// Whether a failed request may be sent again to another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: any transport failure or timeout.
    Always,
    /// Writes: only when the request provably never reached a server
    /// (connection refused…), since resending an applied transaction could
    /// apply it twice.
    IfNotSent,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.inner.endpoints)
            .field("tls", &self.inner.tls)
            .finish()
    }
}

/// Whether etcd-client's error says the request was never sent.
fn never_sent(e: &ec::Error) -> bool {
    match e {
        ec::Error::TransportError(_) => true,
        ec::Error::IoError(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        // gRPC code 14 = Unavailable; tonic reports failed dials this way.
        ec::Error::GRpcStatus(s) => s.code() as i32 == 14 && s.message().contains("connect"),
        _ => false,
    }
}

/// Whether another member (or a later try) may answer differently.
fn transient(e: &ec::Error) -> bool {
    match e {
        ec::Error::TransportError(_) | ec::Error::IoError(_) => true,
        // Cancelled (the connection closed under the request), Unknown,
        // DeadlineExceeded, Unavailable (e.g. "no leader" on a partitioned member).
        ec::Error::GRpcStatus(s) => matches!(s.code() as i32, 1 | 2 | 4 | 14),
        _ => false,
    }
}

fn read_pem(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        what,
        path: path.display().to_string(),
        source,
    })
}

impl EtcdBackend {
    /// Connects (authenticating if credentials are set) and checks that the
    /// cluster answers a status request.
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        let endpoints: Arc<str> = config.endpoints.join(",").into();
        let span = debug_span!("etcd_connect", endpoints = %endpoints, tls = config.tls.is_some());
        async {
            let mut options = ec::ConnectOptions::new()
                .with_connect_timeout(config.timeout)
                // Why: a watch on a half-open TCP connection would otherwise
                // wait forever for events; keep-alives detect it and the watch
                // task reconnects.
                .with_keep_alive(Duration::from_secs(10), config.timeout)
                .with_keep_alive_while_idle(true);
            if let Some(c) = &config.credentials {
                // Why refresh: etcd's auth tokens expire (5 min by default);
                // a long-running node must not start failing after that.
                options = options
                    .with_user(c.user.clone(), c.password.clone())
                    .with_auto_token_refresh(true);
            }
            if let Some(tls) = &config.tls {
                let mut t = ec::TlsOptions::new();
                if let Some(ca) = &tls.ca {
                    t = t.ca_certificate(ec::Certificate::from_pem(read_pem("CA", ca)?));
                }
                if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                    t = t.identity(ec::Identity::from_pem(
                        read_pem("client certificate", cert)?,
                        read_pem("client key", key)?,
                    ));
                }
                options = options.with_tls(t);
            }
            let backend = EtcdBackend {
                inner: Arc::new(Inner {
                    members: config
                        .endpoint_uris()
                        .into_iter()
                        .map(|uri| Member {
                            uri,
                            client: tokio::sync::Mutex::new(None),
                        })
                        .collect(),
                    preferred: AtomicUsize::new(0),
                    options,
                    endpoints: endpoints.clone(),
                    timeout: config.timeout,
                    tls: config.tls.is_some(),
                }),
            };
            // Status needs no permission on any key, so a user restricted
            // to a prefix can still connect.
            backend.revision().await?;
            debug!("connected");
            Ok(backend)
        }
        .instrument(span)
        .await
    }

    fn err(&self, source: ec::Error) -> Error {
        Error::Etcd {
            endpoints: self.inner.endpoints.to_string(),
            source: Box::new(source),
        }
    }

    fn timed_out(&self, what: String) -> ec::Error {
        ec::Error::IoError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} got no answer within {:?}", self.inner.timeout),
        ))
    }

    /// The client of member `i`, connecting it if needed.
    async fn member(&self, i: usize) -> Result<ec::Client, ec::Error> {
        let member = &self.inner.members[i];
        let mut slot = member.client.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let connect = ec::Client::connect([member.uri.as_str()], Some(self.inner.options.clone()));
        let client = match tokio::time::timeout(self.inner.timeout, connect).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ec::Error::IoError(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!(
                    "connecting to {} got no answer within {:?} (is etcd running and reachable?)",
                    member.uri, self.inner.timeout
                ),
                )))
            }
        };
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs one unary request with the configured timeout, starting at the
    /// preferred member and moving on to the next ones as `retry` allows.
    async fn call<T, F, Fut>(&self, op: &'static str, retry: Retry, request: F) -> Result<T>
    where
        F: Fn(ec::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, ec::Error>>,
    {
        let n = self.inner.members.len();
        let first = self.inner.preferred.load(Ordering::Relaxed);
        let mut last_error = None;
        for k in 0..n {
            let i = (first + k) % n;
            let span = debug_span!("etcd", op, member = %self.inner.members[i].uri);
            let client = match self.member(i).instrument(span.clone()).await {
                Ok(c) => c,
                Err(e) if transient(&e) || never_sent(&e) => {
                    debug!(parent: &span, error = %e, "member unreachable; trying the next");
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(self.err(e)),
            };
            match tokio::time::timeout(self.inner.timeout, request(client))
                .instrument(span.clone())
                .await
            {
                Ok(Ok(v)) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) => {
                    let again = match retry {
                        Retry::Always => transient(&e),
                        Retry::IfNotSent => never_sent(&e),
                    };
                    if !again {
                        return Err(self.err(e));
                    }
                    debug!(parent: &span, error = %e, "member failed; trying the next");
                    last_error = Some(e);
                }
                Err(_) if retry == Retry::Always => {
                    last_error =
                        Some(self.timed_out(format!("{op} to {}", self.inner.members[i].uri)));
                }
                Err(_) => return Err(self.err(self.timed_out(op.to_string()))),
            }
        }
        Err(self.err(last_error.expect("at least one endpoint")))
    }
}

impl EtcdBackend {
    /// Lists a prefix in pages of [`LIST_PAGE`] keys, all read at the first
    /// page's revision, so big prefixes (thousands of IPAM blocks) neither hit
    /// gRPC's message size limit nor mix two states.
    async fn list_paged(&self, prefix: &[u8]) -> Result<Listing> {
        // etcd spells "no upper bound" as range end "\0", and refuses an empty key.
        let end = prefix_range_end(prefix).unwrap_or_else(|| vec![0]);
        let mut start = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.to_vec()
        };
        let mut kvs = Vec::new();
        let mut revision = 0;
        loop {
            let mut options = ec::GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let key = start.clone();
            let resp = self
                .call("list", Retry::Always, move |mut c| {
                    let (key, options) = (key.clone(), options.clone());
                    async move { c.get(key, Some(options)).await }
                })
                .await?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            kvs.extend(resp.kvs().iter().map(from_etcd_kv));
            match kvs.last() {
                Some(last) if resp.more() => {
                    // The smallest key after `last`.
                    start = last.key.clone();
                    start.push(0);
                }
                _ => return Ok(Listing { kvs, revision }),
            }
        }
    }
}

fn from_etcd_kv(kv: &ec::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    }
}

fn to_etcd_compare(c: &crate::kv::Compare) -> ec::Compare {
    let op = match c.op {
        CompareOp::Equal => ec::CompareOp::Equal,
        CompareOp::NotEqual => ec::CompareOp::NotEqual,
        CompareOp::Less => ec::CompareOp::Less,
        CompareOp::Greater => ec::CompareOp::Greater,
    };
    let key = c.key.clone();
    match &c.target {
        CompareTarget::ModRevision(r) => ec::Compare::mod_revision(key, op, *r),
        CompareTarget::CreateRevision(r) => ec::Compare::create_revision(key, op, *r),
        CompareTarget::Version(v) => ec::Compare::version(key, op, *v),
        CompareTarget::Value(v) => ec::Compare::value(key, op, v.clone()),
    }
}

fn to_etcd_op(op: &TxnOp) -> ec::TxnOp {
    match op {
        TxnOp::Put { key, value } => ec::TxnOp::put(
            key.clone(),
            value.clone(),
            Some(ec::PutOptions::new().with_prev_key()),
        ),
        TxnOp::Delete { key } => {
            ec::TxnOp::delete(key.clone(), Some(ec::DeleteOptions::new().with_prev_key()))
        }
        TxnOp::DeletePrefix { prefix } => ec::TxnOp::delete(
            prefix.clone(),
            Some(ec::DeleteOptions::new().with_prefix().with_prev_key()),
        ),
        TxnOp::Get { key } => ec::TxnOp::get(key.clone(), None),
    }
}

impl Backend for EtcdBackend {
    fn range(&self, key: Vec<u8>, prefix: bool) -> BoxFuture<'_, Result<Listing>> {
        async move {
            if !prefix {
                let resp = self
                    .call("get", Retry::Always, |mut c| {
                        let key = key.clone();
                        async move { c.get(key, None).await }
                    })
                    .await?;
                return Ok(Listing {
                    kvs: resp.kvs().iter().map(from_etcd_kv).collect(),
                    revision: resp.header().map_or(0, |h| h.revision()),
                });
            }
            // A page whose pinned revision gets compacted mid-list cannot be
            // continued consistently: start over at the new revision.
            let mut attempt = 0;
            loop {
                match self.list_paged(&key).await {
                    Err(Error::Etcd { source, .. })
                        if attempt < 3
                            && matches!(&*source, ec::Error::GRpcStatus(s)
                            if s.message().contains("required revision has been compacted")) =>
                    {
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        }
        .boxed()
    }

    fn revision(&self) -> BoxFuture<'_, Result<Revision>> {
        async move {
            let status = self
                .call(
                    "status",
                    Retry::Always,
                    |mut c| async move { c.status().await },
                )
                .await?;
            Ok(status.header().map_or(0, |h| h.revision()))
        }
        .boxed()
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        async move {
            let compares: Vec<_> = txn.compares.iter().map(to_etcd_compare).collect();
            let success: Vec<_> = txn.success.iter().map(to_etcd_op).collect();
            let failure: Vec<_> = txn.failure.iter().map(to_etcd_op).collect();
            let request = ec::Txn::new()
                .when(compares)
                .and_then(success)
                .or_else(failure);
            // Why: a transaction of gets (IPAM's batched reads) changes
            // nothing, so it may be resent like any read.
            let read_only = txn
                .success
                .iter()
                .chain(&txn.failure)
                .all(|op| matches!(op, TxnOp::Get { .. }));
            let retry = if read_only {
                Retry::Always
            } else {
                Retry::IfNotSent
            };
            let resp = self
                .call("txn", retry, |mut c| {
                    let request = request.clone();
                    async move { c.txn(request).await }
                })
                .await?;
            let revision = resp.header().map_or(0, |h| h.revision());
            let ops = if resp.succeeded() {
                &txn.success
            } else {
                &txn.failure
            };
            let results = ops
                .iter()
                .zip(resp.op_responses())
                .map(|(op, r)| match (op, r) {
                    (TxnOp::Put { key, value }, ec::TxnOpResponse::Put(p)) => {
                        let prev = p.prev_key();
                        TxnOpResult::Put(KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: prev.map_or(revision, |p| p.create_revision()),
                            mod_revision: revision,
                            version: prev.map_or(1, |p| p.version() + 1),
                        })
                    }
                    (_, ec::TxnOpResponse::Delete(d)) => {
                        TxnOpResult::Deleted(d.prev_kvs().iter().map(from_etcd_kv).collect())
                    }
                    (_, ec::TxnOpResponse::Get(g)) => {
                        TxnOpResult::Get(g.kvs().first().map(from_etcd_kv))
                    }
                    (_, other) => {
                        // etcd answers each op with its own kind; anything else
                        // is a protocol violation worth surfacing loudly.
                        warn!(?other, "etcd returned a mismatched transaction result");
                        TxnOpResult::Get(None)
                    }
                })
                .collect();
            Ok(TxnResponse {
                succeeded: resp.succeeded(),
                revision,
                results,
            })
        }
        .boxed()
    }

    fn watch(&self, prefix: Vec<u8>, from_revision: Revision) -> BoxStream<'static, Result<Event>> {
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        let span = debug_span!(
            "etcd_watch",
            endpoints = %self.inner.endpoints,
            prefix = %String::from_utf8_lossy(&prefix)
        );
        let task =
            tokio::spawn(run_watch(self.clone(), prefix, from_revision, tx).instrument(span));
        Box::pin(TaskStream { rx, task })
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        async move {
            let compacted = self
                .call("compact", Retry::IfNotSent, |mut c| async move {
                    c.compact(revision, None).await
                })
                .await;
            match compacted {
                Ok(_) => Ok(()),
                // Already compacted that far: the goal is met (matches embedded).
                Err(Error::Etcd { source, .. })
                    if matches!(&*source, ec::Error::GRpcStatus(s)
                        if s.message().contains("required revision has been compacted")) =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        .boxed()
    }

    fn describe(&self) -> String {
        format!(
            "etcd{} at {}",
            if self.inner.tls { " (TLS)" } else { "" },
            self.inner.endpoints
        )
    }
}

/// The consumer side of a watch task; dropping it stops the task.
struct TaskStream {
    rx: tokio::sync::mpsc::Receiver<Result<Event>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream for TaskStream {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for TaskStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_watch(
    backend: EtcdBackend,
    prefix: Vec<u8>,
    from_revision: Revision,
    tx: tokio::sync::mpsc::Sender<Result<Event>>,
) {
    // First revision not yet delivered; 0 until etcd tells us "now".
    let mut next = from_revision;
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut options = ec::WatchOptions::new().with_prefix();
        if next > 0 {
            options = options.with_start_revision(next);
        }
        let members = backend.inner.members.len();
        let member = backend.inner.preferred.load(Ordering::Relaxed);
        let established = match backend.member(member).await {
            Ok(mut client) => client.watch(prefix.clone(), Some(options)).await,
            Err(e) => Err(e),
        };
        match established {
            Err(e) if backoff >= MAX_WATCH_BACKOFF => {
                warn!(error = %e, next, member = %backend.inner.members[member].uri, "watch cannot be re-established; still trying")
            }
            Err(e) => debug!(error = %e, next, "watch could not be established; retrying"),
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        if resp.compact_revision() > 0 {
                            let _ = tx
                                .send(Err(Error::Compacted {
                                    requested: next,
                                    compact_revision: resp.compact_revision(),
                                }))
                                .await;
                            return;
                        }
                        if resp.canceled() {
                            // Not compaction: e.g. permission denied. Retrying
                            // would loop on the same answer, so report and stop.
                            let _ = tx
                                .send(Err(backend.err(ec::Error::WatchError(format!(
                                    "watch canceled by etcd: {}",
                                    resp.cancel_reason()
                                )))))
                                .await;
                            return;
                        }
                        if resp.created() && next == 0 {
                            next = resp.header().map_or(0, |h| h.revision()) + 1;
                        }
                        backoff = Duration::from_millis(50);
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let kind = match ev.event_type() {
                                ec::EventType::Put => EventKind::Put,
                                ec::EventType::Delete => EventKind::Delete,
                            };
                            let event = Event {
                                kind,
                                kv: from_etcd_kv(kv),
                            };
                            next = event.revision() + 1;
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        debug!(next, "watch stream closed by etcd; resuming");
                        break;
                    }
                    Err(e) => {
                        debug!(error = %e, next, "watch stream broke; resuming");
                        break;
                    }
                }
            },
        }
        if tx.is_closed() {
            return;
        }
        // Whatever broke, try the next member (a no-op with one endpoint);
        // unary calls move `preferred` back to whichever member answers.
        let _ = backend.inner.preferred.compare_exchange(
            member,
            (member + 1) % members,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_WATCH_BACKOFF);
    }
}

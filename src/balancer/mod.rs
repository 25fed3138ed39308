//! replicheck's own L7 load balancer in front of the replicas.
//!
//! Virtual users name the replica each request must reach (the plan decided it); other
//! traffic is routed by a policy. Requests get the forwarded headers of a TLS-terminating
//! proxy, unready replicas are skipped, and every request is recorded with the replica
//! that served it. It sits on the hot path of every run: connections to replicas are
//! pooled and kept alive, bodies stream through, and routing takes no lock.

pub mod forwarded;
pub mod policy;
mod proxy;
pub mod upstreams;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cluster::Endpoint;
use crate::cluster::replica::{Incarnation, ReplicaId};
use policy::RoutingPolicy;
use proxy::ProxyState;
use upstreams::Upstreams;

/// Request header: the replica the request must go to (`r1`). Never reaches the app.
pub const ROUTE_HEADER: &str = "x-replicheck-route";
/// Response header: the replica incarnation that served the request (`r1#2`).
pub const SERVED_BY_HEADER: &str = "x-replicheck-replica";
/// Response header on answers the balancer made itself (no replica, upstream failed).
pub const ERROR_HEADER: &str = "x-replicheck-error";
/// Response header: replicas a write also reached before it landed where it was planned
/// (`r0,r2`), behind a load balancer replicheck cannot steer (see `relay`).
pub const ALSO_REACHED_HEADER: &str = "x-replicheck-also-reached";

/// How long an idle pooled connection to a replica is kept.
const POOL_IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct BalancerConfig {
    pub listen: SocketAddr,
    /// Routes requests that carry no planned replica.
    pub policy: RoutingPolicy,
    /// What `X-Forwarded-Proto` says: the scheme clients use at the edge.
    pub scheme: &'static str,
    /// Readiness endpoint and how often to probe it.
    pub ready_path: String,
    pub probe_interval: Duration,
    /// The address connections to replicas come from: the proxy apps should trust. None
    /// lets the system choose (replicas on another host cannot be reached from loopback).
    pub proxy_address: Option<IpAddr>,
}

impl BalancerConfig {
    pub fn local(ready_path: &str, probe_interval: Duration) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            policy: RoutingPolicy::RoundRobin,
            scheme: "https",
            ready_path: ready_path.to_owned(),
            probe_interval,
            proxy_address: Some(IpAddr::from([127, 0, 0, 1])),
        }
    }
}

/// One proxied request, as the balancer saw it.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyRecord {
    pub at_ms: f64,
    pub client: SocketAddr,
    pub planned: Option<ReplicaId>,
    pub served_by: Option<Incarnation>,
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub took_ms: f64,
}

/// A running balancer. Dropping it stops it and closes every connection.
pub struct Balancer {
    addr: SocketAddr,
    upstreams: Arc<Upstreams>,
    records: mpsc::UnboundedReceiver<ProxyRecord>,
    // Held for its drop: aborting the accept loop closes every connection.
    _tasks: JoinSet<()>,
}

impl Balancer {
    pub async fn start(config: BalancerConfig, endpoints: &[Endpoint]) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let upstreams = Arc::new(Upstreams::new(endpoints));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_local_address(config.proxy_address);
        let client = Client::builder(TokioExecutor::new())
            // Shorter than any common server's keep-alive timeout (gunicorn's is 2s): a
            // request written on a connection the replica is closing as idle fails
            // without the replica ever seeing it, and would be blamed on the replica.
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let (sender, records) = mpsc::unbounded_channel();
        let state = Arc::new(ProxyState {
            upstreams: upstreams.clone(),
            client,
            policy: config.policy,
            scheme: config.scheme,
            turn: AtomicUsize::new(0),
            records: sender,
            started: Instant::now(),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_http1(listener, move |client, request| proxy::handle(state.clone(), client, request)));
        if !config.probe_interval.is_zero() {
            tasks.spawn(upstreams::probe_forever(upstreams.clone(), config.ready_path, config.probe_interval));
        }
        Ok(Self {
            addr,
            upstreams,
            records,
            _tasks: tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// Every request proxied since the last call.
    pub fn drain_records(&mut self) -> Vec<ProxyRecord> {
        let mut drained = Vec::new();
        while let Ok(record) = self.records.try_recv() {
            drained.push(record);
        }
        drained
    }
}

/// Serves HTTP/1.1 with keep-alive on `listener` until the task is aborted, answering each
/// request with `handle(client, request)`. Shared by the balancer and the relays.
pub(crate) async fn serve_http1<H, F, B>(listener: TcpListener, handle: H)
where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Connections live in this set, so aborting this task closes them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, client)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let handle = handle.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| handle(client, request));
                    // A client that hangs up mid-request is the client's business.
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

//! replicheck's own L7 load balancer in front of the replicas.
//!
//! Virtual users name the replica each request must reach (the plan decided it); other
//! traffic is routed by a policy. Requests get the forwarded headers of a TLS-terminating
//! proxy (and a run's balancer does terminate TLS, with certificates made for the run)
//! and a `traceparent` naming the balancer's span in the request's trace,
//! unready replicas are skipped, and every answer says which replica served it. It sits
//! on the hot path of every run: one event loop per core serves each client connection
//! from start to end, through connections to the replicas that it keeps alive, and
//! routing takes no lock.

pub mod forwarded;
/// Routing policies live in the bottom layer; this path stays for the library's users.
pub use crate::vocab::routing as policy;
mod pool;
mod proxy;
mod records;
pub mod tls;
pub mod upstreams;
pub(crate) mod tunnel;
mod workers;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;


use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::vocab::replica::Endpoint;
use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::vocab::routing::RoutingPolicy;
use proxy::ProxyState;
use records::Records;
use tls::RunCertificates;
use upstreams::Upstreams;
use workers::Workers;

/// Request header: the replica the request must go to (`r1`). Never reaches the app.
pub const ROUTE_HEADER: &str = "x-replicheck-route";
/// Response header: the replica incarnation that served the request (`r1#2`).
pub const SERVED_BY_HEADER: &str = "x-replicheck-replica";
/// Response header on answers the balancer made itself (no replica, upstream failed).
pub const ERROR_HEADER: &str = "x-replicheck-error";
/// Response header: replicas a write also reached before it landed where it was planned
/// (`r0,r2`), behind a load balancer replicheck cannot steer (see `relay`).
pub const ALSO_REACHED_HEADER: &str = "x-replicheck-also-reached";

/// How long a client may take over its TLS handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct BalancerConfig {
    pub listen: SocketAddr,
    /// Routes requests that carry no planned replica.
    pub policy: RoutingPolicy,
    /// What `X-Forwarded-Proto` says: the scheme clients use at the edge.
    pub scheme: &'static str,
    /// Terminates TLS with these certificates; plain HTTP without.
    pub tls: Option<Arc<RunCertificates>>,
    /// Readiness endpoint and how often to probe it.
    pub ready_path: String,
    pub probe_interval: Duration,
    /// The address connections to replicas come from: the proxy apps should trust. None
    /// lets the system choose (replicas on another host cannot be reached from loopback).
    pub proxy_address: Option<IpAddr>,
    /// Event loops (threads) serving connections.
    pub threads: usize,
    /// Keeps a `ProxyRecord` of every request for `drain_records`. Answers say who served
    /// them either way; the records are for whoever watches the balancer itself.
    pub record: bool,
    /// How long a replica may take to answer (the target's request timeout). A replica
    /// silent that long gets a 504 naming it, a little before a client with the same
    /// timeout gives up, so the client learns which replica held its request (it may not
    /// be the one planned, when that one was draining). None: no limit of the balancer's.
    pub answer_within: Option<Duration>,
}

impl BalancerConfig {
    pub fn local(ready_path: &str, probe_interval: Duration) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            policy: RoutingPolicy::RoundRobin,
            scheme: "https",
            tls: None,
            ready_path: ready_path.to_owned(),
            probe_interval,
            proxy_address: Some(IpAddr::from([127, 0, 0, 1])),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            record: false,
            answer_within: None,
        }
    }
}

/// How clients reach a balancer: its address, and the authority to trust when it
/// terminates TLS.
#[derive(Debug, Clone)]
pub struct Entrance {
    pub addr: SocketAddr,
    /// The certificate authority of the run, DER-encoded.
    pub authority: Option<CertificateDer<'static>>,
}

impl Entrance {
    /// The URL of `path` through the balancer.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.authority.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// A client that trusts the run's authority and no other, when the balancer has one.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let Some(authority) = &self.authority else {
            return builder;
        };
        match reqwest::Certificate::from_der(authority) {
            Ok(authority) => builder.tls_certs_only([authority]),
            // Not for a certificate the run made; a client that trusts nothing fails its
            // handshakes, and says so, rather than trusting everything.
            Err(_) => builder.tls_certs_only([]),
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
    entrance: Entrance,
    upstreams: Arc<Upstreams>,
    records: Option<Arc<Records>>,
    // Held for their drop: stopping the event loops closes every connection.
    _workers: Workers,
    _probes: JoinSet<()>,
}

impl Balancer {
    pub async fn start(config: BalancerConfig, endpoints: &[Endpoint]) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(config.listen)?;
        let addr = listener.local_addr()?;
        let upstreams = Arc::new(Upstreams::new(endpoints));
        let records = config.record.then(|| Arc::new(Records::new()));
        let state = Arc::new(ProxyState {
            upstreams: upstreams.clone(),
            policy: config.policy,
            scheme: config.scheme,
            from: config.proxy_address,
            turn: AtomicUsize::new(0),
            records: records.clone(),
            started: Instant::now(),
            answer_within: config.answer_within,
        });
        let entrance = Entrance {
            addr,
            authority: config
                .tls
                .as_ref()
                .map(|certificates| certificates.authority().clone()),
        };
        let tls = match &config.tls {
            Some(certificates) => Some(TlsAcceptor::from(
                certificates
                    .server_config()
                    .map_err(std::io::Error::other)?,
            )),
            None => None,
        };
        let workers = Workers::start(listener, config.threads, move |stream, client| {
            serve_connection(state.clone(), tls.clone(), stream, client)
        })?;
        let mut probes = JoinSet::new();
        if !config.probe_interval.is_zero() {
            probes.spawn(upstreams::probe_forever(
                upstreams.clone(),
                config.ready_path,
                config.probe_interval,
            ));
        }
        Ok(Self {
            entrance,
            upstreams,
            records,
            _workers: workers,
            _probes: probes,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.entrance.addr
    }

    /// How clients reach it.
    pub fn entrance(&self) -> &Entrance {
        &self.entrance
    }

    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// Every request proxied since the last call (none unless `record` was asked for).
    pub fn drain_records(&mut self) -> Vec<ProxyRecord> {
        match &self.records {
            Some(records) => records.drain(),
            None => Vec::new(),
        }
    }
}

/// One client connection: the TLS handshake when the balancer speaks https, then its
/// requests, one at a time.
async fn serve_connection(
    state: Arc<ProxyState>,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    client: SocketAddr,
) {
    match tls {
        None => serve_proxied(stream, state, client).await,
        Some(acceptor) => {
            // A client that never finishes its handshake is dropped.
            if let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_WITHIN, acceptor.accept(stream)).await
            {
                serve_proxied(stream, state, client).await;
            }
        }
    }
}

async fn serve_proxied<IO>(io: IO, state: Arc<ProxyState>, client: SocketAddr)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| proxy::handle(state.clone(), client, request));
    // A client that hangs up mid-request is the client's business.
    let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(io), service).with_upgrades().await;
}

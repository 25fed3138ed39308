//! One proxied request: pick the upstream, rewrite headers, stream the request and the
//! response through a pooled keep-alive connection, and record who served it. A request
//! the replica switches protocols for (a WebSocket) becomes a tunnel to it (`tunnel`).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::time::Duration;

use tokio::time::Instant;

use super::forwarded::{add_forwarded, remove_hop_by_hop};
use super::pool::{self, Lent};
use super::records::Records;
use super::tunnel;
use crate::vocab::routing::RoutingPolicy;
use super::upstreams::{InFlight, Upstream, Upstreams};
use super::{ERROR_HEADER, ProxyRecord, ROUTE_HEADER, SERVED_BY_HEADER};
use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::telemetry::tracecontext::continue_trace;

pub type ProxyBody = Either<Relayed, Full<Bytes>>;

/// A replica's response body on its way to the client, counted in flight to the replica
/// until it has passed whole (or the client is gone). Its connection is kept for the
/// next request once the body has passed whole, and closed if it has not.
pub struct Relayed {
    body: Incoming,
    connection: Option<Lent>,
    ended: bool,
    _in_flight: InFlight,
}

impl Drop for Relayed {
    fn drop(&mut self) {
        if self.ended || self.body.is_end_stream() {
            if let Some(connection) = self.connection.take() {
                connection.give_back();
            }
        }
    }
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Shared by every connection of one balancer.
pub struct ProxyState {
    pub upstreams: Arc<Upstreams>,
    pub policy: RoutingPolicy,
    pub scheme: &'static str,
    /// The address connections to replicas come from (`BalancerConfig::proxy_address`).
    pub from: Option<IpAddr>,
    pub turn: AtomicUsize,
    /// Where each request's record goes, when someone reads them.
    pub records: Option<Arc<Records>>,
    pub started: Instant,
    /// See `BalancerConfig::answer_within`.
    pub answer_within: Option<Duration>,
}

pub async fn handle(
    state: Arc<ProxyState>,
    client: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let planned = take_route(&mut request);
    // Only a recording balancer pays for the clock and the copies.
    let seen = state
        .records
        .is_some()
        .then(|| (Instant::now(), request.method().to_string(), path_of(request.uri())));
    let (response, served_by) = match pick(&state, planned) {
        None => (
            refuse(StatusCode::SERVICE_UNAVAILABLE, "no ready replica".into()),
            None,
        ),
        Some(upstream) => {
            let (response, served_by) = forward(&state, &upstream, client, request).await;
            (response, Some(served_by))
        }
    };
    if let (Some(records), Some((received, method, path))) = (&state.records, seen) {
        let record = ProxyRecord {
            at_ms: received.duration_since(state.started).as_secs_f64() * 1000.0,
            client,
            planned,
            served_by,
            method,
            path,
            status: Some(response.status().as_u16()),
            error: response
                .headers()
                .get(ERROR_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            took_ms: received.elapsed().as_secs_f64() * 1000.0,
        };
        records.push(record);
    }
    Ok(response)
}

fn path_of(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
}

/// The planned replica, if the request carries one; every replicheck header is removed so
/// the app never sees them.
fn take_route(request: &mut Request<Incoming>) -> Option<ReplicaId> {
    let planned = request
        .headers()
        .get(ROUTE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let ours: Vec<_> = request
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("x-replicheck-"))
        .cloned()
        .collect();
    for name in ours {
        request.headers_mut().remove(name);
    }
    planned
}

/// The planned replica (see `Upstreams::route`); without a plan, the policy picks one.
fn pick(state: &ProxyState, planned: Option<ReplicaId>) -> Option<Arc<Upstream>> {
    let id = match planned {
        Some(id) => id,
        None => {
            let turn = state.turn.fetch_add(1, Ordering::Relaxed);
            state
                .policy
                .choose(&state.upstreams.ready_ids(), None, turn, &mut rand::rng())?
        }
    };
    state.upstreams.route(id)
}

/// The upstream's answer, and the incarnation that served it.
async fn forward(
    state: &ProxyState,
    upstream: &Arc<Upstream>,
    client: SocketAddr,
    mut request: Request<Incoming>,
) -> (Response<ProxyBody>, Incarnation) {
    // Origin-form, whatever form the client used; a client that sent no Host (HTTP/1.0)
    // gets the replica's, as every HTTP/1.1 request must carry one.
    let uri = request.uri().path_and_query().cloned().map_or_else(|| Uri::from_static("/"), Uri::from);
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    if !request.headers().contains_key(http::header::HOST) {
        request.headers_mut().insert(http::header::HOST, upstream.host.clone());
    }
    let upgrade = tunnel::requested(request.headers());
    let client_side = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
    add_forwarded(request.headers_mut(), client.ip(), state.scheme);
    if let Some(protocol) = upgrade {
        tunnel::restore(request.headers_mut(), protocol);
    }
    // As a proxy with tracing does: the replica's spans must continue this trace.
    continue_trace(request.headers_mut());
    let in_flight = upstream.start_request();
    let answer = pool::send(upstream.addr, state.from, request);
    let answered = match state.answer_within {
        Some(limit) => match tokio::time::timeout(limit.saturating_sub(answer_margin(limit)), answer).await {
            Ok(answered) => answered,
            Err(_) => {
                upstream.unanswered();
                let reason = format!("{} at {} gave no answer within {}", upstream.replica, upstream.addr, humantime::format_duration(limit));
                let mut response = refuse(StatusCode::GATEWAY_TIMEOUT, reason);
                response.headers_mut().insert(SERVED_BY_HEADER, upstream.served_by.clone());
                return (response, upstream.replica);
            }
        },
        None => answer.await,
    };
    match answered {
        Ok((mut response, connection)) => {
            upstream.answered();
            let switched = (response.status() == StatusCode::SWITCHING_PROTOCOLS)
                .then(|| (hyper::upgrade::on(&mut response), response.headers().get(http::header::UPGRADE).cloned()));
            // A connection that switched protocols is the tunnel's now.
            let connection = switched.is_none().then_some(connection);
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            if let (Some(client_side), Some((replica_side, protocol))) = (client_side, switched) {
                if let Some(protocol) = protocol {
                    tunnel::restore(&mut parts.headers, protocol);
                }
                // On this connection's event loop, which closes it when the balancer stops.
                tokio::spawn(tunnel::run(client_side, replica_side, tunnel::IDLE));
            }
            // A relay in front of an instance behind someone else's load balancer knows
            // better which instance served; only relays send the header.
            let served = match parts.headers.get(SERVED_BY_HEADER) {
                Some(relayed) => relayed
                    .to_str()
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(upstream.replica),
                None => {
                    parts
                        .headers
                        .insert(SERVED_BY_HEADER, upstream.served_by.clone());
                    upstream.replica
                }
            };
            let relayed = Relayed { body, connection, ended: false, _in_flight: in_flight };
            (Response::from_parts(parts, Either::Left(relayed)), served)
        }
        Err(err) => {
            upstream.unanswered();
            let chain = crate::errors::chain(&err);
            let reason = match upstream_cause(&err) {
                Some(cause) => format!(
                    "{} at {} {cause} ({chain})",
                    upstream.replica, upstream.addr
                ),
                None => format!("{} at {}: {chain}", upstream.replica, upstream.addr),
            };
            let mut response = refuse(StatusCode::BAD_GATEWAY, reason);
            response
                .headers_mut()
                .insert(SERVED_BY_HEADER, upstream.served_by.clone());
            (response, upstream.replica)
        }
    }
}

/// How much sooner than a client with the same timeout the balancer gives up on a
/// replica, so its answer naming the replica arrives first.
fn answer_margin(limit: Duration) -> Duration {
    (limit / 4).min(Duration::from_millis(250))
}

/// What went wrong with an upstream, as a person would say it.
fn upstream_cause(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(err);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some("refused the connection"),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                    return Some("reset the connection");
                }
                std::io::ErrorKind::TimedOut => return Some("did not answer in time"),
                _ => {}
            }
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
            if hyper.is_parse() {
                return Some("answered with something that is not HTTP");
            }
            if hyper.is_incomplete_message() {
                return Some("closed the connection without an answer");
            }
            if hyper.is_timeout() {
                return Some("did not answer in time");
            }
        }
        next = error.source();
    }
    None
}

/// A response the balancer makes itself, marked so clients can tell it from the app's.
fn refuse(status: StatusCode, reason: String) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(reason.clone()))));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&reason) {
        response.headers_mut().insert(ERROR_HEADER, value);
    }
    response
}

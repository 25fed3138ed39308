//! The run's side-effect sink: where the replicas send what they do out of band, webhooks
//! over HTTP and mail over SMTP, as a team points its app at a mail catcher in a test
//! environment.
//!
//! Each replica is given endpoints of its own (`{sink_url}` = `http://HOST:PORT/r1`, and an
//! SMTP port of its own at `{smtp_host}:{smtp_port}`), so a delivery is attributed by
//! where it arrived, never by what the app says. Everything is bounded: one delivery's
//! size, the number kept and their bytes; what goes beyond is refused and counted per
//! replica, so a replica that floods the sink is told, not kept.

pub mod smtp;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::history::delivered::{Deliveries, Delivered, Delivery, Refused};
use crate::vocab::replica::ReplicaId;

/// The largest delivery read: a webhook's body, or a whole mail with its attachments.
pub const MAX_BODY: usize = 1 << 20;
/// Deliveries kept in a run, and their bytes, at most; more are refused.
const MAX_KEPT: usize = 20_000;
const MAX_KEPT_BYTES: usize = 64 << 20;
/// How long a client may take to send one delivery.
const READ_WITHIN: Duration = Duration::from_secs(10);
/// Header values kept in full; longer ones are cut.
const MAX_HEADER_VALUE: usize = 1_000;

/// Headers whose values are credentials: kept by name only.
const CREDENTIALS: [&str; 5] = ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"];

/// The sink, listening while it lives.
pub struct Sink {
    inbox: Inbox,
    ip: IpAddr,
    base: String,
    http: JoinHandle<()>,
    /// Each replica's SMTP listener, opened when the replica is first launched.
    smtp: Mutex<BTreeMap<ReplicaId, (u16, JoinHandle<()>)>>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.http.abort();
        for (_, (_, task)) in crate::sync::locked(&self.smtp).iter() {
            task.abort();
        }
    }
}

impl Sink {
    /// Listens on a free port of `ip`, where the replicas can reach it.
    pub async fn start(ip: IpAddr) -> std::io::Result<Sink> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let inbox = Inbox::default();
        let receiving = inbox.clone();
        let http = tokio::spawn(crate::server::serve_http1(listener, Some(READ_WITHIN), move |_, request| receive(receiving.clone(), request)));
        Ok(Sink { inbox, ip, base: format!("http://{}", SocketAddr::new(ip, addr.port())), http, smtp: Mutex::default() })
    }

    /// The base URL of one replica's webhooks (`{sink_url}`).
    pub fn url(&self, replica: ReplicaId) -> String {
        format!("{}/{replica}", self.base)
    }

    /// The host replicas send mail to (`{smtp_host}`).
    pub fn host(&self) -> String {
        self.ip.to_string()
    }

    /// One replica's SMTP port (`{smtp_port}`), listening from the first time it is asked;
    /// its restarts keep it, as a replica's name is kept.
    pub fn smtp_port(&self, replica: ReplicaId) -> std::io::Result<u16> {
        let mut listeners = crate::sync::locked(&self.smtp);
        if let Some((port, _)) = listeners.get(&replica) {
            return Ok(*port);
        }
        let listener = std::net::TcpListener::bind((self.ip, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let listener = TcpListener::from_std(listener)?;
        let task = tokio::spawn(smtp::serve(listener, replica, self.inbox.clone()));
        listeners.insert(replica, (port, task));
        Ok(port)
    }

    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }
}

/// `/r1/orders/receipt?x=1` is a webhook of r1's to `/orders/receipt?x=1`.
fn route(path_and_query: &str) -> Option<(ReplicaId, String)> {
    let rest = path_and_query.strip_prefix('/')?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let replica = rest[..end].parse::<ReplicaId>().ok()?;
    let path = &rest[end..];
    Some((replica, if path.starts_with('/') { path.to_owned() } else { format!("/{path}") }))
}

async fn receive(inbox: Inbox, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let Some((replica, path)) = route(&target) else {
        inbox.stray();
        return Ok(answer(StatusCode::NOT_FOUND, "not a replica's sink URL: keep the path of {sink_url}"));
    };
    let method = request.method().to_string();
    let headers = kept_headers(request.headers());
    let body = tokio::time::timeout(READ_WITHIN, Limited::new(request.into_body(), MAX_BODY).collect()).await;
    let body = match body {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(err)) => {
            let why = if err.is::<http_body_util::LengthLimitError>() { format!("a body over {} bytes", MAX_BODY) } else { format!("a body that could not be read: {err}") };
            inbox.refuse(replica, &why);
            return Ok(answer(StatusCode::PAYLOAD_TOO_LARGE, &why));
        }
        Err(_) => {
            let why = format!("a body not sent within {}s", READ_WITHIN.as_secs());
            inbox.refuse(replica, &why);
            return Ok(answer(StatusCode::REQUEST_TIMEOUT, &why));
        }
    };
    let delivered = Delivered::Webhook { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() };
    match inbox.arrive(replica, delivered) {
        Ok(()) => Ok(answer(StatusCode::OK, "received")),
        Err(why) => Ok(answer(StatusCode::INSUFFICIENT_STORAGE, &why)),
    }
}

fn kept_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        let value = if CREDENTIALS.contains(&name.as_str()) {
            "[redacted]".to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).chars().take(MAX_HEADER_VALUE).collect()
        };
        kept.entry(name).and_modify(|v| *v = format!("{v}, {value}")).or_insert(value);
    }
    kept
}

fn answer(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    response
}

/// What has arrived so far, shared by the sink's listeners and whoever reads it.
#[derive(Clone, Default)]
pub struct Inbox {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    kept: Vec<(Instant, ReplicaId, Delivered)>,
    bytes: usize,
    refused: BTreeMap<ReplicaId, (Instant, Refused)>,
    stray: u32,
}

impl Inbox {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::locked(&self.state)
    }

    /// Keeps a delivery, or refuses it (with why) when the run's bounds are reached.
    fn arrive(&self, replica: ReplicaId, delivered: Delivered) -> Result<(), String> {
        let size = delivered.body().len() + delivered.label().len();
        let mut state = self.state();
        if state.kept.len() >= MAX_KEPT || state.bytes + size > MAX_KEPT_BYTES {
            drop(state);
            let why = format!("the run's sink keeps {MAX_KEPT} deliveries or {} MiB at most", MAX_KEPT_BYTES >> 20);
            self.refuse(replica, &why);
            return Err(why);
        }
        state.bytes += size;
        state.kept.push((Instant::now(), replica, delivered));
        Ok(())
    }

    fn refuse(&self, replica: ReplicaId, why: &str) {
        let mut state = self.state();
        let (_, refused) = state.refused.entry(replica).or_insert_with(|| (Instant::now(), Refused { count: 0, why: why.to_owned() }));
        refused.count += 1;
    }

    fn stray(&self) {
        let mut state = self.state();
        state.stray = state.stray.saturating_add(1);
    }

    /// The replica that delivered the first thing `wanted` from `from` on, if one has,
    /// without copying what arrived.
    pub fn first(&self, from: Instant, wanted: impl Fn(ReplicaId, &Delivered) -> bool) -> Option<ReplicaId> {
        self.state().kept.iter().find(|(at, replica, what)| *at >= from && wanted(*replica, what)).map(|(_, replica, _)| *replica)
    }

    /// What arrived from `from` on, with times in milliseconds since `origin`.
    pub fn since(&self, origin: Instant, from: Instant) -> Deliveries {
        let state = self.state();
        let ms = |at: Instant| at.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        Deliveries {
            kept: state
                .kept
                .iter()
                .filter(|(at, _, _)| *at >= from)
                .map(|(at, replica, what)| Delivery { replica: *replica, at_ms: ms(*at), what: what.clone() })
                .collect(),
            refused: state.refused.iter().filter(|(_, (at, _))| *at >= from).map(|(replica, (_, refused))| (*replica, refused.clone())).collect(),
            stray: state.stray,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_routed_by_the_replica_its_path_names() {
        assert_eq!(route("/r1/orders/receipt?x=1"), Some((ReplicaId(1), "/orders/receipt?x=1".into())));
        assert_eq!(route("/r12"), Some((ReplicaId(12), "/".into())));
        assert_eq!(route("/r0?slot=4"), Some((ReplicaId(0), "/?slot=4".into())));
        assert_eq!(route("/orders"), None);
        assert_eq!(route("/"), None);
    }

    async fn sink() -> (Sink, Instant) {
        let origin = Instant::now();
        (Sink::start(IpAddr::from([127, 0, 0, 1])).await.unwrap(), origin)
    }

    #[tokio::test]
    async fn webhooks_are_kept_per_replica_with_credentials_out() {
        let (sink, origin) = sink().await;
        let client = crate::client::builder().build().unwrap();
        for replica in [ReplicaId(0), ReplicaId(1)] {
            let sent = client
                .post(format!("{}/digest?run=1", sink.url(replica)))
                .header("authorization", "Bearer s3cret")
                .header("x-slot", "42")
                .header("content-type", "application/json")
                .body(r#"{"slot":42}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(sent.status(), 200);
        }
        let stray = client.post(format!("{}/digest", sink.base)).body("x").send().await.unwrap();
        assert_eq!(stray.status(), 404);
        let got = sink.inbox().since(origin, origin);
        assert_eq!(got.kept.iter().map(|d| d.replica).collect::<Vec<_>>(), [ReplicaId(0), ReplicaId(1)]);
        let Delivered::Webhook { method, path, headers, body } = &got.kept[1].what else { panic!("a webhook") };
        assert_eq!((method.as_str(), path.as_str(), body.as_str()), ("POST", "/digest?run=1", r#"{"slot":42}"#));
        assert_eq!(headers["authorization"], "[redacted]");
        assert_eq!(got.kept[1].what.header("X-Slot"), Some("42"));
        assert_eq!(got.stray, 1);
        assert!(!serde_json::to_string(&got).unwrap().contains("s3cret"));
    }

    #[tokio::test]
    async fn a_body_over_the_bound_is_refused_and_counted_not_kept() {
        let (sink, origin) = sink().await;
        let client = crate::client::builder().build().unwrap();
        let sent = client.post(sink.url(ReplicaId(2))).body(vec![b'x'; MAX_BODY + 1]).send().await.unwrap();
        assert_eq!(sent.status(), 413);
        let got = sink.inbox().since(origin, origin);
        assert!(got.kept.is_empty());
        assert_eq!(got.refused[&ReplicaId(2)].count, 1, "{got:?}");
        assert!(got.refused[&ReplicaId(2)].why.contains("over"), "{got:?}");
    }

    #[tokio::test]
    async fn a_flood_stops_at_the_bound_and_the_rest_is_refused() {
        let (sink, origin) = sink().await;
        let inbox = sink.inbox();
        for n in 0..MAX_KEPT + 10 {
            let delivered = Delivered::Webhook { method: "POST".into(), path: "/x".into(), headers: BTreeMap::new(), body: n.to_string() };
            let _ = inbox.arrive(ReplicaId(0), delivered);
        }
        let got = inbox.since(origin, origin);
        assert_eq!(got.kept.len(), MAX_KEPT);
        assert_eq!(got.refused[&ReplicaId(0)].count, 10);
    }
}

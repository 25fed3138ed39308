//! Subscriptions a virtual user holds through the balancer: a WebSocket, or a stream of
//! server-sent events, opened on the replica the plan names with the headers a browser
//! sends (the user's cookies, its `Origin`). Each is recorded as it goes: where it opened,
//! every message each way with its time, and how it ended.
//!
//! A replica that floods a subscription is bounded: a message over the run's body limit
//! ends it, and so does one past `MAX_KEPT` messages or 16 MiB, said so in its record.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::VuContext;
use crate::balancer::{ROUTE_HEADER, SERVED_BY_HEADER};
pub use crate::history::live::{ConnectionRecord, Ended, MessageRecord};
pub use crate::target::Transport;
use crate::vocab::replica::{Incarnation, ReplicaId};

/// Messages one subscription keeps, at most; the next ends it.
pub const MAX_KEPT: usize = 1000;
/// Bytes of messages one subscription keeps, at most; the next message ends it.
const MAX_KEPT_BYTES: usize = 16 << 20;

/// What a subscription has kept so far, against its bounds.
#[derive(Default)]
struct Kept {
    messages: usize,
    bytes: usize,
}

impl Kept {
    /// Counts one more message; why the subscription ends instead, past a bound.
    fn one_more(&mut self, text: &str) -> Result<(), String> {
        self.messages += 1;
        self.bytes += text.len();
        if self.messages > MAX_KEPT || self.bytes > MAX_KEPT_BYTES {
            return Err(format!("flooded: more than {MAX_KEPT} messages or {} MiB", MAX_KEPT_BYTES >> 20));
        }
        Ok(())
    }
}
/// How long opening a subscription may take, its handshakes included.
const OPEN_WITHIN: Duration = Duration::from_secs(5);

/// What a subscription is opened with.
pub struct Opening {
    pub transport: Transport,
    /// The path and query, with the balancer's scheme and address before it.
    pub path: String,
    pub route: ReplicaId,
    /// Extra request headers: the user's `Cookie`, its `Origin`.
    pub headers: Vec<(String, String)>,
}

/// Why a subscription did not open.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("{path}: {why}")]
    Refused { path: String, why: String },
}

/// What the connection's task tells the user.
enum Event {
    Received(f64, String),
    Ended(f64, String),
}

/// A subscription held open; its task reads (and writes) the connection.
pub struct Subscription {
    record: ConnectionRecord,
    events: mpsc::UnboundedReceiver<Event>,
    outgoing: Option<mpsc::UnboundedSender<String>>,
    task: Connection,
    origin: tokio::time::Instant,
}

/// The connection's task, stopped when the subscription is dropped on any path, so no
/// connection outlives its user.
struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Subscription {
    pub async fn open(ctx: &VuContext, opening: Opening) -> Result<Self, SubscribeError> {
        let refused = |why: String| SubscribeError::Refused { path: opening.path.clone(), why };
        let late = || refused(format!("not open within {}", humantime::format_duration(OPEN_WITHIN)));
        let opened_ms = ctx.now_ms();
        let (events_in, events) = mpsc::unbounded_channel();
        let origin = ctx.origin;
        let (served_by, outgoing, task) = match opening.transport {
            Transport::WebSocket => {
                let (socket, served_by) = tokio::time::timeout(OPEN_WITHIN, websocket(ctx, &opening)).await.map_err(|_| late())?.map_err(refused)?;
                let (outgoing_in, outgoing) = mpsc::unbounded_channel();
                (served_by, Some(outgoing_in), tokio::spawn(pump_websocket(socket, outgoing, events_in, origin)))
            }
            Transport::Events => {
                let response = tokio::time::timeout(OPEN_WITHIN, events_response(ctx, &opening)).await.map_err(|_| late())?.map_err(refused)?;
                let served_by = response.headers().get(SERVED_BY_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
                (served_by, None, tokio::spawn(pump_events(response, events_in, origin)))
            }
        };
        let record = ConnectionRecord {
            transport: opening.transport,
            path: opening.path,
            planned: opening.route,
            served_by,
            opened_ms,
            messages: Vec::new(),
            ended: None,
        };
        Ok(Subscription { record, events, outgoing, task: Connection(task), origin })
    }

    pub fn served_by(&self) -> Option<Incarnation> {
        self.record.served_by
    }

    /// Sends a text message on a WebSocket; an event stream has no way back.
    pub fn send(&mut self, text: &str) -> bool {
        let sent = self.outgoing.as_ref().is_some_and(|out| out.send(text.to_owned()).is_ok());
        if sent {
            let at_ms = self.origin.elapsed().as_secs_f64() * 1000.0;
            self.record.messages.push(MessageRecord { at_ms, sent: true, text: text.to_owned() });
        }
        sent
    }

    /// The first message from now on that contains `wanted`, waited for at most `within`;
    /// every message that arrives meanwhile is recorded.
    pub async fn until(&mut self, wanted: &str, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        while self.record.ended.is_none() {
            let event = tokio::time::timeout_at(deadline, self.events.recv()).await.ok()??;
            match event {
                Event::Received(at_ms, text) => {
                    let found = text.contains(wanted);
                    self.record.messages.push(MessageRecord { at_ms, sent: false, text: text.clone() });
                    if found {
                        return Some(text);
                    }
                }
                Event::Ended(at_ms, how) => self.record.ended = Some(Ended { at_ms, how }),
            }
        }
        None
    }

    /// Lets the connection go once what the user sent has left, with what arrived.
    pub async fn close(mut self) -> ConnectionRecord {
        // The connection's task writes what is queued, then stops when the queue closes.
        drop(self.outgoing.take());
        let _ = tokio::time::timeout(OPEN_WITHIN, &mut self.task.0).await;
        self.finish()
    }

    /// Lets the connection go, with what arrived and was not waited for.
    pub fn finish(mut self) -> ConnectionRecord {
        self.task.0.abort();
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Received(at_ms, text) => self.record.messages.push(MessageRecord { at_ms, sent: false, text }),
                Event::Ended(at_ms, how) => self.record.ended = Some(Ended { at_ms, how }),
            }
        }
        self.record
    }
}

/// A stream the WebSocket runs over: the balancer's TLS when it speaks https.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

async fn websocket(ctx: &VuContext, opening: &Opening) -> Result<(Socket, Option<Incarnation>), String> {
    let url = ctx.balancer.url(&opening.path).replacen("http", "ws", 1);
    let mut request = url.as_str().into_client_request().map_err(|e| e.to_string())?;
    let headers = request.headers_mut();
    for (name, value) in opening.headers.iter().map(|(n, v)| (n.as_str(), v.clone())).chain([(ROUTE_HEADER, opening.route.to_string())]) {
        let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(&value)) else {
            return Err(format!("header `{name}` cannot be sent"));
        };
        headers.insert(name, value);
    }
    let tcp = connect(ctx).await.map_err(|e| format!("cannot reach the balancer: {e}"))?;
    let stream: Box<dyn Io> = match &ctx.balancer.authority {
        None => Box::new(tcp),
        Some(authority) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(authority.clone()).map_err(|e| e.to_string())?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = rustls::pki_types::ServerName::from(ctx.balancer.addr.ip());
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
            Box::new(tls)
        }
    };
    let config = WebSocketConfig::default().max_message_size(Some(ctx.limits.max_body)).max_frame_size(Some(ctx.limits.max_body));
    let (socket, response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await.map_err(|err| match err {
        tungstenite::Error::Http(response) => format!("answered {} instead of switching to a WebSocket", response.status()),
        other => other.to_string(),
    })?;
    let served_by = response.headers().get(SERVED_BY_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    Ok((socket, served_by))
}

/// A connection to the balancer from the users' own address, as their requests come.
async fn connect(ctx: &VuContext) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match ctx.client_address {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(std::net::SocketAddr::new(ctx.client_address, 0))?;
    let stream = socket.connect(ctx.balancer.addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn now_ms(origin: tokio::time::Instant) -> f64 {
    origin.elapsed().as_secs_f64() * 1000.0
}

async fn pump_websocket(socket: Socket, mut outgoing: mpsc::UnboundedReceiver<String>, events: mpsc::UnboundedSender<Event>, origin: tokio::time::Instant) {
    let (mut write, mut read) = socket.split();
    let mut kept = Kept::default();
    let how = loop {
        tokio::select! {
            message = read.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Err(flooded) = kept.one_more(&text) {
                        break flooded;
                    }
                    let _ = events.send(Event::Received(now_ms(origin), text.to_string()));
                }
                Some(Ok(Message::Close(frame))) => break frame.map_or_else(|| "closed by the replica".to_owned(), |f| format!("closed by the replica ({} {})", u16::from(f.code), f.reason)),
                Some(Ok(_)) => {}
                Some(Err(tungstenite::Error::Capacity(err))) => break format!("a message over the cap ([limits] max_body): {err}"),
                Some(Err(err)) => break err.to_string(),
                None => break "the connection ended".to_owned(),
            },
            text = outgoing.recv() => match text {
                Some(text) => if let Err(err) = write.send(Message::text(text)).await {
                    break err.to_string();
                },
                None => return,
            },
        }
    };
    let _ = events.send(Event::Ended(now_ms(origin), how));
}

async fn events_response(ctx: &VuContext, opening: &Opening) -> Result<reqwest::Response, String> {
    let mut request = ctx.streams.get(ctx.balancer.url(&opening.path)).header(ROUTE_HEADER, opening.route.to_string()).header("accept", "text/event-stream");
    for (name, value) in &opening.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.map_err(|e| crate::errors::chain(&e))?;
    let streams = response.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/event-stream"));
    if !response.status().is_success() || !streams {
        return Err(format!("answered {} ({}) instead of an event stream", response.status(), response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("no content type")));
    }
    Ok(response)
}

async fn pump_events(mut response: reqwest::Response, events: mpsc::UnboundedSender<Event>, origin: tokio::time::Instant) {
    let mut parser = EventParser::default();
    let mut kept = Kept::default();
    let how = 'read: loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                for data in parser.feed(&chunk) {
                    if let Err(flooded) = kept.one_more(&data) {
                        break 'read flooded;
                    }
                    let _ = events.send(Event::Received(now_ms(origin), data));
                }
                if parser.pending() > MAX_EVENT {
                    break format!("an event longer than {} KiB", MAX_EVENT >> 10);
                }
            }
            Ok(None) => break "the stream ended".to_owned(),
            Err(err) => break crate::errors::chain(&err),
        }
    };
    let _ = events.send(Event::Ended(now_ms(origin), how));
}

/// An event's size, at most, while it is being read.
const MAX_EVENT: usize = 1 << 20;

/// The `data` of server-sent events, as the HTML standard's event stream interpretation
/// gives it: lines end in LF, CRLF or CR; `data` fields join with LF; a blank line
/// dispatches the event, and one with no data is none.
#[derive(Default)]
struct EventParser {
    line: Vec<u8>,
    data: Option<String>,
    /// A CR ended the last line: an LF right after it belongs to it.
    after_cr: bool,
}

impl EventParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut dispatched = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::take(&mut self.after_cr);
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    if line.is_empty() {
                        dispatched.extend(self.data.take());
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((&line, ""));
                    if field == "data" {
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match &mut self.data {
                            Some(data) => {
                                data.push('\n');
                                data.push_str(value);
                            }
                            None => self.data = Some(value.to_owned()),
                        }
                    }
                }
                _ => self.line.push(byte),
            }
        }
        dispatched
    }

    /// Bytes read of the event not yet dispatched.
    fn pending(&self) -> usize {
        self.line.len() + self.data.as_ref().map_or(0, String::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_at_the_bounds() {
        let mut kept = Kept::default();
        assert!((0..MAX_KEPT).all(|_| kept.one_more("x").is_ok()));
        assert!(kept.one_more("x").unwrap_err().starts_with("flooded"));
        let mut kept = Kept::default();
        assert!(kept.one_more(&"x".repeat(MAX_KEPT_BYTES + 1)).is_err());
    }

    #[test]
    fn events_are_read_across_chunks_and_line_endings() {
        let mut parser = EventParser::default();
        assert_eq!(parser.feed(b"data: one\n\nda"), ["one"]);
        assert_eq!(parser.feed(b"ta: two\r\ndata:three\r\n"), Vec::<String>::new());
        assert_eq!(parser.feed(b"\r\n: a comment\n\nevent: x\rdata: four\r\r"), ["two\nthree", "four"]);
        // A blank line with no data dispatches nothing.
        assert_eq!(parser.feed(b"id: 7\n\n"), Vec::<String>::new());
        assert_eq!(parser.pending(), 0);
    }
}

//! A hub of live updates: what is published (`POST /hub/publish`, or a text message on the
//! hub's WebSocket) reaches its subscribers (`/hub/ws`, and the event stream `/hub/events`).
//!
//! In process (misconfigured), as a SignalR hub without a backplane or Socket.IO without an
//! adapter: a message reaches only the subscribers of the replica it was published
//! through. Through Redis pub/sub (correct): every replica relays every message to its own
//! subscribers. At SIGTERM every subscription ends, so the replica can stop.
//!
//! Clients without WebSockets long-poll (`POST /hub/poll` opens, `GET /hub/poll?sid=` takes
//! what arrived since), and their sessions live in the process that opened them in either
//! mode, as Engine.IO's and SignalR's do: a poll that reaches another replica is refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use redis::aio::ConnectionManager;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::app::App;
use crate::jobs::Stopping;

const CHANNEL: &str = "replicheck-demo:hub";
/// Messages a slow subscriber may fall behind by before it misses some.
const BACKLOG: usize = 256;
/// How long the relay from Redis waits after losing it, so an outage is not logged in a flood.
const BACKOFF: Duration = Duration::from_secs(1);

/// How messages reach the replicas' subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HubMode {
    /// Misconfigured: the subscribers of this process only.
    Memory,
    /// Every replica's subscribers, through Redis pub/sub.
    Redis,
    /// Misconfigured: through Redis pub/sub, subscribed once; a relay that loses Redis
    /// keeps serving and relays nothing more.
    RedisOnce,
}

pub struct Hub {
    local: broadcast::Sender<String>,
    redis: Option<ConnectionManager>,
    stopping: Stopping,
    polls: Mutex<HashMap<String, Poll>>,
}

/// A long-polling client's session: what arrived for it since its last poll.
struct Poll {
    messages: broadcast::Receiver<String>,
    last: Instant,
}

/// Sessions the hub keeps at most, and how long one may go unpolled before it is dropped.
const POLLS: usize = 1024;
const POLL_IDLE: Duration = Duration::from_secs(30);

impl Hub {
    /// `redis` is the store's connection (and `url` its address) for the Redis mode.
    pub fn start(mode: HubMode, redis: Option<(ConnectionManager, &str)>, stopping: Stopping) -> Result<Arc<Hub>, String> {
        let (local, _) = broadcast::channel(BACKLOG);
        let redis = match (mode, redis) {
            (HubMode::Memory, _) => None,
            (HubMode::Redis | HubMode::RedisOnce, Some((manager, url))) => {
                let client = redis::Client::open(url).map_err(|e| format!("bad Redis URL {url}: {e}"))?;
                tokio::spawn(relay(client, local.clone(), stopping.clone(), mode == HubMode::Redis));
                Some(manager)
            }
            (HubMode::Redis | HubMode::RedisOnce, None) => return Err("--hub redis relays through Redis: it needs --store redis://HOST:PORT".into()),
        };
        Ok(Arc::new(Hub { local, redis, stopping, polls: Mutex::new(HashMap::new()) }))
    }

    async fn publish(&self, message: String) -> Result<(), String> {
        match &self.redis {
            Some(redis) => {
                let mut conn = redis.clone();
                redis::cmd("PUBLISH").arg(CHANNEL).arg(message).query_async::<i64>(&mut conn).await.map(drop).map_err(|e| e.to_string())
            }
            None => {
                // Nobody subscribed here is no error: the message is simply not seen.
                let _ = self.local.send(message);
                Ok(())
            }
        }
    }
}

/// Messages from Redis to this replica's subscribers, subscribed again after an outage
/// when `again`.
async fn relay(client: redis::Client, local: broadcast::Sender<String>, mut stopping: Stopping, again: bool) {
    while !stopping.is_set() {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(CHANNEL).await {
                Ok(()) => {
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            () = stopping.wait() => return,
                            message = messages.next() => match message.map(|m| m.get_payload::<String>()) {
                                Some(Ok(text)) => drop(local.send(text)),
                                Some(Err(err)) => eprintln!("hub: a message from Redis is not text: {err}"),
                                None => break,
                            },
                        }
                    }
                    if !again {
                        eprintln!("hub: lost the subscription to {CHANNEL}; relaying nothing more");
                        return;
                    }
                    eprintln!("hub: lost the subscription to {CHANNEL}; subscribing again");
                }
                Err(err) => eprintln!("hub: cannot subscribe to {CHANNEL}: {err}"),
            },
            Err(err) => eprintln!("hub: cannot reach Redis for its messages: {err}"),
        }
        tokio::select! {
            () = stopping.wait() => return,
            () = tokio::time::sleep(BACKOFF) => {}
        }
    }
}

fn hub(app: &App) -> Option<&Arc<Hub>> {
    app.hub.as_ref()
}

#[derive(Deserialize)]
pub struct Published {
    message: String,
}

/// `POST /hub/publish` (form `message`): 202 once handed to the hub.
pub async fn publish(State(app): State<Arc<App>>, Form(form): Form<Published>) -> Response {
    let Some(hub) = hub(&app) else { return StatusCode::NOT_FOUND.into_response() };
    match hub.publish(form.message).await {
        Ok(()) => (StatusCode::ACCEPTED, "published").into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, format!("not published: {err}")).into_response(),
    }
}

/// `GET /hub/ws`: every message the hub gets; what the socket sends is published.
pub async fn websocket(State(app): State<Arc<App>>, upgrade: WebSocketUpgrade) -> Response {
    let Some(hub) = hub(&app).cloned() else { return StatusCode::NOT_FOUND.into_response() };
    upgrade.on_upgrade(move |socket| subscriber(socket, hub))
}

async fn subscriber(mut socket: WebSocket, hub: Arc<Hub>) {
    let mut messages = hub.local.subscribe();
    let mut stopping = hub.stopping.clone();
    loop {
        tokio::select! {
            () = stopping.wait() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            message = messages.recv() => match message {
                Ok(text) => if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    if let Err(err) = hub.publish(text.to_string()).await {
                        eprintln!("hub: a message from a socket was not published: {err}");
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// `GET /hub/events`: every message the hub gets, as an event, until SIGTERM.
pub async fn events(State(app): State<Arc<App>>) -> Response {
    let Some(hub) = hub(&app).cloned() else { return StatusCode::NOT_FOUND.into_response() };
    Sse::new(event_stream(hub)).into_response()
}

fn event_stream(hub: Arc<Hub>) -> impl Stream<Item = Result<Event, Infallible>> {
    let (messages, stopping) = (hub.local.subscribe(), hub.stopping.clone());
    stream::unfold((messages, stopping), |(mut messages, mut stopping)| async move {
        loop {
            tokio::select! {
                () = stopping.wait() => return None,
                message = messages.recv() => match message {
                    Ok(text) => return Some((Ok(Event::default().data(text)), (messages, stopping))),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    })
}

/// `POST /hub/poll`: opens a long-polling session on this replica, `{"sid": ...}`.
pub async fn open_poll(State(app): State<Arc<App>>) -> Response {
    let Some(hub) = hub(&app) else { return StatusCode::NOT_FOUND.into_response() };
    let sid = format!("{:032x}", rand::random::<u128>());
    let mut polls = hub.polls.lock().unwrap_or_else(|e| e.into_inner());
    polls.retain(|_, poll| poll.last.elapsed() < POLL_IDLE);
    if polls.len() >= POLLS {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many polling sessions").into_response();
    }
    polls.insert(sid.clone(), Poll { messages: hub.local.subscribe(), last: Instant::now() });
    axum::Json(serde_json::json!({ "sid": sid })).into_response()
}

#[derive(Deserialize)]
pub struct PollQuery {
    sid: String,
}

/// `GET /hub/poll?sid=`: what arrived for the session since its last poll, as a JSON list;
/// 400 for a session this replica does not know, in Engine.IO's words.
pub async fn poll(State(app): State<Arc<App>>, Query(query): Query<PollQuery>) -> Response {
    let Some(hub) = hub(&app) else { return StatusCode::NOT_FOUND.into_response() };
    let mut polls = hub.polls.lock().unwrap_or_else(|e| e.into_inner());
    let Some(session) = polls.get_mut(&query.sid) else {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({ "code": 1, "message": "Session ID unknown" }))).into_response();
    };
    session.last = Instant::now();
    let mut arrived = Vec::new();
    loop {
        match session.messages.try_recv() {
            Ok(text) => arrived.push(text),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    axum::Json(arrived).into_response()
}

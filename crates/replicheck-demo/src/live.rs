//! Long-lived connections, each naming the replica that holds it: a WebSocket that echoes
//! what it is sent, and a stream of server-sent events, one tick at a time.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::response::sse::{Event, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use crate::app::App;

/// Ticks of one event stream, at most, so a forgotten client cannot hold it for ever.
const MAX_TICKS: u32 = 1000;

/// `GET /live/echo`: each text message comes back as `rN: message`.
pub async fn echo(State(app): State<Arc<App>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| answer(socket, app.replica.clone()))
}

async fn answer(mut socket: WebSocket, replica: String) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(text) => Message::Text(format!("{replica}: {}", text.as_str()).into()),
            Message::Close(_) => return,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

#[derive(Deserialize)]
pub struct Ticks {
    #[serde(default = "three")]
    n: u32,
    #[serde(default = "two_hundred")]
    every_ms: u64,
}

fn three() -> u32 {
    3
}

fn two_hundred() -> u64 {
    200
}

/// `GET /live/ticks?n=3&every_ms=200`: `n` events `rN tick i`, one every `every_ms`, the
/// first at once; then the stream ends.
pub async fn ticks(State(app): State<Arc<App>>, Query(ticks): Query<Ticks>) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let every = Duration::from_millis(ticks.every_ms);
    let replica = app.replica.clone();
    let events = stream::unfold(0, move |tick| {
        let replica = replica.clone();
        async move {
            if tick >= ticks.n.min(MAX_TICKS) {
                return None;
            }
            if tick > 0 {
                tokio::time::sleep(every).await;
            }
            Some((Ok(Event::default().data(format!("{replica} tick {tick}"))), tick + 1))
        }
    });
    Sse::new(events)
}

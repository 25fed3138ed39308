//! The demo's rate limit on password-reset requests (`POST /password-reset`): a few per
//! client per minute, in fixed windows, as most limiters count. Counted in process memory
//! (misconfigured: per replica, and forgotten at every restart) or in the shared store;
//! keyed on the client the app believes (correct) or on the connection's peer
//! (misconfigured: behind a load balancer, the balancer, for every client).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::app::{App, client_of, unix_now};

/// Tries a client gets per window.
pub const LIMIT: u32 = 5;
/// The window, in seconds.
pub const WINDOW_SECS: u64 = 60;

/// Where the counts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LimiterMode {
    /// In this process (misconfigured).
    Memory,
    /// In the `--store` every replica shares.
    Store,
}

/// What a count is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LimitKey {
    /// The client the app believes, after its forwarded-header handling (correct).
    Client,
    /// The connection's peer (misconfigured).
    Peer,
}

pub struct Limiter {
    mode: LimiterMode,
    key: LimitKey,
    /// Counts by key and window, for `memory`.
    counts: Mutex<HashMap<String, u32>>,
}

impl Limiter {
    pub fn new(mode: LimiterMode, key: LimitKey) -> Self {
        Self { mode, key, counts: Mutex::new(HashMap::new()) }
    }

    pub fn describe(&self) -> String {
        format!("{LIMIT} per {WINDOW_SECS}s, {:?} counts keyed on the {:?}", self.mode, self.key).to_lowercase()
    }

    /// Counts one try of `who` in the current window; how many it has made there.
    async fn count(&self, app: &App, who: &str) -> Result<u32, String> {
        let key = format!("limit:reset:{who}:{}", unix_now() / WINDOW_SECS);
        match self.mode {
            LimiterMode::Memory => {
                let mut counts = self.counts.lock().map_err(|e| e.to_string())?;
                let count = counts.entry(key).or_insert(0);
                *count += 1;
                Ok(*count)
            }
            LimiterMode::Store => app.store.increment(&key, WINDOW_SECS).await,
        }
    }
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    email: String,
}

/// Accepts a password-reset request, within the limit.
pub async fn password_reset(State(app): State<Arc<App>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, Form(form): Form<ResetForm>) -> Response {
    let Some(limiter) = &app.limiter else { return StatusCode::NOT_FOUND.into_response() };
    let who = match limiter.key {
        LimitKey::Client => client_of(&app, peer, &headers),
        LimitKey::Peer => peer.ip().to_string(),
    };
    match limiter.count(&app, &who).await {
        Ok(count) if count > LIMIT => {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, WINDOW_SECS.to_string())], "Too many reset requests: try again later").into_response()
        }
        Ok(_) => (StatusCode::ACCEPTED, format!("If {} has an account, a reset link is on its way", form.email)).into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, format!("cannot count the request: {err}")).into_response(),
    }
}

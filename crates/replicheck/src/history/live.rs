//! Long-lived connections as users saw them (a WebSocket, an event stream), and the
//! messages a broadcast experiment published for them to receive.

use serde::{Deserialize, Serialize};

use crate::target::Transport;
use crate::vocab::replica::{Incarnation, ReplicaId};

/// One long-lived connection: where it opened, every message each way, how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub transport: Transport,
    pub path: String,
    pub planned: ReplicaId,
    pub served_by: Option<Incarnation>,
    pub opened_ms: f64,
    pub messages: Vec<MessageRecord>,
    /// Why it ended before the user let it go, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub at_ms: f64,
    /// Sent by the user; otherwise received.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sent: bool,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ended {
    pub at_ms: f64,
    pub how: String,
}

impl ConnectionRecord {
    /// The first message received that contains `wanted`.
    pub fn received(&self, wanted: &str) -> Option<&MessageRecord> {
        self.messages.iter().find(|m| !m.sent && m.text.contains(wanted))
    }
}

/// A subscriber of a broadcast flow, and the messages published for it: first through its
/// own replica (the control), then through another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscriber {
    pub flow: String,
    /// Where it was to subscribe.
    pub replica: ReplicaId,
    /// Its connection, once open; why it did not open otherwise.
    pub connection: Result<ConnectionRecord, String>,
    pub published: Vec<Published>,
    /// How long each message was waited for.
    pub waited_ms: f64,
    /// The disruption it subscribed after, once the cluster was whole again: its first
    /// message was published through its own replica, the others through another replica
    /// until one arrived or the hub's time to recover ran out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<super::ChaosEvent>,
}

/// One message published for a subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// What the subscriber was to receive.
    pub wanted: String,
    /// Where it was published.
    pub replica: ReplicaId,
    /// The replica that took it.
    pub by: Option<Incarnation>,
    /// When it was sent: its request's start, for a request.
    pub at_ms: f64,
    /// The user whose request published it, when a request did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vu: Option<u32>,
    /// Why publishing failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

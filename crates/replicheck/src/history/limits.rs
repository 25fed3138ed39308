//! What the limits experiment asked of a rate limit: each question's tries of the limit's
//! attempt, client by client and replica by replica, in the order they were sent, and how
//! each was answered.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ChaosEvent;
use crate::vocab::replica::{Incarnation, ReplicaId};

/// What one series of tries asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Question {
    /// A first client tries one replica until limited (the control: the limit holds on one
    /// replica), with a second client's try before and after: is the second limited by the
    /// first's tries?
    SharedByClients,
    /// A client limited by one replica tries the others, the first one again after each:
    /// do the others let it through while the first still refuses it?
    PerReplica,
    /// A client limited by two replicas, one of which restarts: does the restarted one let
    /// it through while the other still refuses it?
    ResetByRestart,
    /// A stranger straight at a replica, limited, forges X-Forwarded-For: does the forged
    /// address let it through while its own is still refused?
    Forged,
}

/// One series of tries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitCheck {
    /// The target's `[limit.NAME]`.
    pub flow: String,
    pub question: Question,
    pub tries: Vec<Try>,
    /// The restart the later tries followed (`reset-by-restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ChaosEvent>,
}

/// One try of the attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Try {
    /// The address the client connected from (through the balancer, what it forwards).
    pub client: IpAddr,
    /// The X-Forwarded-For a stranger forged, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forged: Option<String>,
    pub replica: ReplicaId,
    pub served_by: Option<Incarnation>,
    pub vu: u32,
    pub start_ms: f64,
    pub end_ms: f64,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// Answered as the target says a limited try looks.
    Limited,
    /// Answered otherwise, below 500: the try counted and went through.
    LetThrough { status: u16 },
    /// No answer, or a server error: the try shows nothing about the limit.
    Failed { reason: String },
}

impl Try {
    pub fn limited(&self) -> bool {
        self.answer == Answer::Limited
    }

    pub fn let_through(&self) -> bool {
        matches!(self.answer, Answer::LetThrough { .. })
    }

    /// The replica that answered, or the one it was sent to.
    pub fn replica(&self) -> Incarnation {
        self.served_by.unwrap_or(Incarnation { id: self.replica, generation: 1 })
    }
}

impl LimitCheck {
    /// Whether a client was refused last, right after another client was limited first.
    pub fn limited_another(&self) -> bool {
        let first = self.tries.iter().find(|t| t.limited()).map(|t| t.client);
        self.tries.last().is_some_and(|t| t.limited() && Some(t.client) != first)
    }

    /// Whether a window ended during the series, so that it shows nothing (asked again, it
    /// may): a replica let a client through after it had limited it, or more than `limit`
    /// times, where a count that starts afresh each window refuses nobody.
    pub fn window_ended(&self, limit: u32) -> bool {
        let own = |t: &Try| t.forged.is_none() && t.served_by.is_some();
        let again = self.tries.iter().enumerate().filter(|(_, t)| own(t) && t.limited()).any(|(i, limited)| {
            self.tries[i + 1..].iter().any(|t| own(t) && t.client == limited.client && t.served_by == limited.served_by && t.let_through())
        });
        let beyond = self.tries.iter().filter(|t| own(t) && t.let_through()).any(|first| {
            self.tries.iter().filter(|t| own(t) && t.let_through() && t.client == first.client && t.served_by == first.served_by).count() > limit as usize
        });
        again || beyond
    }
}

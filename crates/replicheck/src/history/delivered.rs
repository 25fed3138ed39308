//! What the replicas sent out of band, as the run's sink received it: webhooks and mail,
//! each attributed to the replica whose own endpoint it arrived at, never to what the app
//! says about itself.
//!
//! Credentials never enter the record: `Authorization`, `Cookie` and their kind are kept by
//! name only, and SMTP passwords are not kept at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::target::{Occurrence, Recogniser};
use crate::vocab::replica::ReplicaId;

/// One delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The replica whose endpoint it arrived at.
    pub replica: ReplicaId,
    /// Milliseconds since the run started, when it had arrived whole.
    pub at_ms: f64,
    #[serde(flatten)]
    pub what: Delivered,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "lowercase")]
pub enum Delivered {
    /// An HTTP request to the replica's `{sink_url}`; `path` is what followed it.
    Webhook {
        method: String,
        path: String,
        /// Header names in lower case; credentials' values replaced.
        headers: BTreeMap<String, String>,
        body: String,
    },
    /// A message to the replica's SMTP port, its body the text a mail client would show.
    Mail {
        from: String,
        to: Vec<String>,
        subject: String,
        /// Header names in lower case, as the message carried them.
        headers: BTreeMap<String, String>,
        body: String,
    },
}

impl Delivered {
    /// The webhook's path after `{sink_url}`, or the mail's subject: how a person tells
    /// deliveries apart at a glance.
    pub fn label(&self) -> String {
        match self {
            Delivered::Webhook { method, path, .. } => format!("{method} {path}"),
            Delivered::Mail { subject, to, .. } => format!("mail to {}: {subject}", to.join(", ")),
        }
    }

    pub fn body(&self) -> &str {
        match self {
            Delivered::Webhook { body, .. } | Delivered::Mail { body, .. } => body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let (Delivered::Webhook { headers, .. } | Delivered::Mail { headers, .. }) = self;
        headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// Whether this is one of the deliveries a flow recognises.
    pub fn is(&self, recogniser: &Recogniser) -> bool {
        match (recogniser, self) {
            (Recogniser::Path(wanted), Delivered::Webhook { path, .. }) => {
                let path = path.split('?').next().unwrap_or(path);
                path == wanted || path.strip_prefix(wanted.as_str()).is_some_and(|rest| rest.starts_with('/'))
            }
            (Recogniser::Subject(subject), Delivered::Mail { subject: got, .. }) => subject.is_match(got),
            _ => false,
        }
    }

    /// The occurrence of a scheduled job this delivery names, if it names one.
    pub fn occurrence(&self, occurrence: &Occurrence) -> Option<String> {
        match occurrence {
            Occurrence::Json(pointer) => {
                let body: serde_json::Value = serde_json::from_str(self.body()).ok()?;
                match body.pointer(pointer)? {
                    serde_json::Value::String(text) => Some(text.clone()),
                    other => Some(other.to_string()),
                }
            }
            Occurrence::Header(name) => self.header(name).map(str::to_owned),
            Occurrence::Regex(regex) => {
                let text = match self {
                    Delivered::Mail { subject, body, .. } => format!("{subject}\n{body}"),
                    Delivered::Webhook { body, .. } => body.clone(),
                };
                let found = regex.captures(&text)?;
                found.get(1).or_else(|| found.get(0)).map(|m| m.as_str().to_owned())
            }
        }
    }

    /// Whether a trigger's value appears anywhere in the delivery: its body, its path, its
    /// subject or a header. Values are letters, digits and dashes, which no encoding of a
    /// form, a URL or a mail changes.
    pub fn carries(&self, value: &str) -> bool {
        let (Delivered::Webhook { headers, .. } | Delivered::Mail { headers, .. }) = self;
        let elsewhere = match self {
            Delivered::Webhook { path, .. } => path.contains(value),
            Delivered::Mail { subject, to, .. } => subject.contains(value) || to.iter().any(|t| t.contains(value)),
        };
        self.body().contains(value) || elsewhere || headers.values().any(|v| v.contains(value))
    }
}

/// What the sink refused a replica, so that one flooding it is told instead of filling
/// the memory: deliveries too large, or beyond the run's bounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    pub count: u64,
    /// Why the first one was refused.
    pub why: String,
}

/// Everything the sink received in a window of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deliveries {
    pub kept: Vec<Delivery>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refused: BTreeMap<ReplicaId, Refused>,
    /// Deliveries to the sink that named no replica: the app dropped the path of its
    /// `{sink_url}`, so they cannot be attributed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stray: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

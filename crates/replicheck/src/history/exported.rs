//! What the replicas exported over OTLP in a window of the run, as the history keeps it:
//! per replica, the exports by signal, the resources they named and the spans that tell
//! whether a probe's trace went on. The receiver (`telemetry`) fills it in.

use serde::{Deserialize, Serialize};

use crate::vocab::replica::ReplicaId;

/// What a resource says about which service and which instance it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Named {
    pub service_name: Option<String>,
    pub instance_id: Option<String>,
}

/// What the replicas exported in a window of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Exported {
    pub since_ms: f64,
    pub until_ms: f64,
    /// The `OTEL_SERVICE_NAME` every replica was given, if the platform named them.
    pub given_service_name: Option<String>,
    pub replicas: Vec<ReplicaSeen>,
    /// Exports to paths that name no replica (over the whole run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stray: Vec<StrayExports>,
}

impl Exported {
    pub fn replica(&self, replica: ReplicaId) -> Option<&ReplicaSeen> {
        self.replicas.iter().find(|r| r.replica == replica)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicaSeen {
    pub replica: ReplicaId,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` as the replica was given it.
    pub endpoint: String,
    /// The `service.instance.id` the platform gave it, if it named the replicas.
    pub given_instance_id: Option<String>,
    /// Export requests, by signal.
    pub traces: u32,
    pub metrics: u32,
    pub logs: u32,
    pub spans: u64,
    /// Spans received but not kept (over the receiver's bound).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spans_not_kept: u64,
    /// Bodies that were not OTLP, and why the first was not.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub undecodable: u32,
    pub undecodable_why: Option<String>,
    /// Each distinct resource its exports named, with how many exports named it.
    pub resources: Vec<ResourceSeen>,
    /// The spans that tell whether it continued the probes' traces.
    pub about_probes: Vec<SpanSeen>,
}

impl ReplicaSeen {
    pub fn exports(&self) -> u32 {
        self.traces + self.metrics + self.logs
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceSeen {
    #[serde(flatten)]
    pub named: Named,
    pub exports: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpanSeen {
    pub trace_id: String,
    pub parent_span_id: Option<String>,
    pub server: bool,
    pub name: String,
    pub start_ms: f64,
    pub end_ms: f64,
    pub marker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StrayExports {
    pub path: String,
    pub count: u32,
}

//! `report.json`: the whole run as data, for CI systems, other tools and `replay`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::vocab::routing::RoutingPolicy;
use crate::check::ScenarioResult;
use crate::check::finding::Finding;
use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::history::{Answer, ChaosEvent, History, Phase, Probe, VuRecord};
use crate::diagnose::Diagnosis;
use crate::plan::Plan;
use crate::policy::PolicyOutcome;
use crate::target::Preset;

pub const FILE_NAME: &str = "report.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub run_id: String,
    pub seed: u64,
    pub backend: String,
    /// The target's name, and the file it came from.
    pub target: String,
    pub target_file: String,
    pub replicas: u16,
    pub routing: RoutingPolicy,
    pub duration_ms: u64,
    /// Where the time went: each phase and each chaos experiment, in order.
    #[serde(default)]
    pub timings: Vec<crate::history::Timing>,
    /// Every request the virtual users sent, evidence runs included.
    pub requests: usize,
    /// The framework preset of the target, whose remedies the diagnoses lead with.
    #[serde(default)]
    pub preset: Preset,
    pub scenarios: Vec<ScenarioResult>,
    /// The findings grouped by probable root cause: each finding is in exactly one.
    #[serde(default)]
    pub diagnoses: Vec<Diagnosis>,
    pub findings: Vec<Finding>,
    /// The team's policy file and what became of each of its rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyOutcome>,
    /// The timeline: every request, in start order.
    pub events: Vec<Event>,
    pub plan: Plan,
    /// How the run was asked for, so `replay` can ask again.
    pub config: RunRecord,
    /// For `replicheck explore`: the cases it drew and what shrinking did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploration: Option<crate::check::explored::Exploration>,
    /// Replicas that exited without replicheck stopping them: the run could not test what
    /// they touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exits: Vec<crate::history::ReplicaExit>,
    /// Set when the run was interrupted: the report holds what ran before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<crate::interrupt::Interruption>,
    /// What kept the run from asking anything (the replicas did not start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The settings of a run that `replay` reruns: with the same target file and seed they
/// give the same plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub replicas: u16,
    pub routing: RoutingPolicy,
    pub vus: u32,
    pub load_vus: u32,
    /// What `--scenarios` said; empty for everything.
    pub scenarios: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Request {
        phase: Phase,
        /// The chaos experiment the request was part of, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        experiment: Option<String>,
        vu: u32,
        scenario: String,
        step: usize,
        step_name: String,
        method: String,
        path: String,
        planned: ReplicaId,
        served_by: Option<Incarnation>,
        status: Option<u16>,
        start_ms: f64,
        end_ms: f64,
        error: Option<String>,
    },
    Chaos {
        experiment: String,
        phase: Phase,
        #[serde(flatten)]
        event: ChaosEvent,
    },
    Probe {
        experiment: String,
        phase: Phase,
        #[serde(flatten)]
        probe: Probe,
    },
    Answer {
        inspection: String,
        phase: Phase,
        #[serde(flatten)]
        answer: Answer,
    },
    /// What a replica delivered to the run's sink, named as a person tells deliveries
    /// apart (a webhook's path without its query, a mail's recipients and subject).
    Delivery {
        experiment: String,
        phase: Phase,
        replica: ReplicaId,
        at_ms: f64,
        what: String,
    },
    /// A subscriber's connection (a WebSocket, an event stream), held on one replica from
    /// when it opened until it ended or was let go.
    Connection {
        experiment: String,
        phase: Phase,
        replica: ReplicaId,
        transport: crate::target::Transport,
        path: String,
        opened_ms: f64,
        /// When it ended or was let go: its last message, when it was not ended.
        until_ms: f64,
        received: usize,
        sent: usize,
        /// How the replica (or the wire) ended it, when it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        ended: Option<String>,
    },
}

impl Event {
    fn start_ms(&self) -> f64 {
        match self {
            Event::Request { start_ms, .. } => *start_ms,
            Event::Chaos { event, .. } => event.start_ms,
            Event::Probe { probe, .. } => probe.at_ms,
            Event::Answer { answer, .. } => answer.at_ms,
            Event::Delivery { at_ms, .. } => *at_ms,
            Event::Connection { opened_ms, .. } => *opened_ms,
        }
    }
}

/// Every request, chaos action, probe, answer, delivery and connection of the history, in
/// start order.
pub fn events(history: &History) -> Vec<Event> {
    let mut events = Vec::new();
    for user in &history.vus {
        push_requests(&mut events, user, None);
    }
    for run in &history.experiments {
        for user in run.users() {
            push_requests(&mut events, user, Some(&run.experiment));
        }
        events.extend(run.chaos.iter().map(|event| Event::Chaos {
            experiment: run.experiment.clone(),
            phase: run.phase,
            event: event.clone(),
        }));
        events.extend(run.probes.iter().map(|probe| Event::Probe {
            experiment: run.experiment.clone(),
            phase: run.phase,
            probe: probe.clone(),
        }));
        let delivered = run.deliveries.iter().flat_map(|d| &d.kept);
        events.extend(delivered.map(|delivery| Event::Delivery {
            experiment: run.experiment.clone(),
            // A delivery in the control's window is the control's.
            phase: run.windows.iter().find(|w| w.start_ms <= delivery.at_ms && delivery.at_ms <= w.end_ms).map_or(run.phase, |w| w.phase),
            replica: delivery.replica,
            at_ms: delivery.at_ms,
            what: delivery.what.label().split('?').next().unwrap_or_default().to_owned(),
        }));
        let connections = run.subscribers.iter().filter_map(|s| s.connection.as_ref().ok());
        events.extend(connections.map(|connection| {
            let last = connection.messages.last().map_or(connection.opened_ms, |m| m.at_ms);
            Event::Connection {
                experiment: run.experiment.clone(),
                phase: run.phase,
                replica: connection.served_by.map_or(connection.planned, |r| r.id),
                transport: connection.transport,
                path: connection.path.clone(),
                opened_ms: connection.opened_ms,
                until_ms: connection.ended.as_ref().map_or(last, |e| e.at_ms),
                received: connection.messages.iter().filter(|m| !m.sent).count(),
                sent: connection.messages.iter().filter(|m| m.sent).count(),
                ended: connection.ended.as_ref().map(|e| e.how.clone()),
            }
        }));
    }
    for run in &history.inspections {
        events.extend(run.answers.iter().map(|answer| Event::Answer {
            inspection: run.inspection.clone(),
            phase: run.phase,
            answer: answer.clone(),
        }));
    }
    events.sort_by(|a, b| a.start_ms().total_cmp(&b.start_ms()));
    events
}

fn push_requests(events: &mut Vec<Event>, user: &VuRecord, experiment: Option<&str>) {
    for step in &user.steps {
        for request in &step.requests {
            events.push(Event::Request {
                phase: user.phase,
                experiment: experiment.map(str::to_owned),
                vu: user.vu,
                scenario: user.scenario.clone(),
                step: step.index,
                step_name: step.name.clone(),
                method: request.method.clone(),
                path: request.path.clone(),
                planned: request.planned,
                served_by: request.served_by,
                status: request.status,
                start_ms: request.start_ms,
                end_ms: request.end_ms,
                error: request.error.clone(),
            });
        }
    }
}

impl Report {
    /// Compact: the events of a run under load make it large.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(FILE_NAME), json)
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

//! The history of a run: what running a plan produced. Every virtual user's steps, every
//! request they made (redirects included), the replica that served each, statuses and
//! times. The checker reads this and nothing else; reports render it.
//!
//! Values of cookies, tokens and captures never enter the history: only names and
//! fingerprints, and the shape of each value.

pub mod delivered;
pub mod exported;
pub mod limits;
pub mod live;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::plan::interleaving::Schedule;
use crate::shape::Shape;
use delivered::Deliveries;

/// Why a virtual user ran: the plan itself, or evidence for a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Phase {
    /// The planned run.
    Main,
    /// The same steps pinned to the replica that produced the artifact.
    Control,
    /// The same steps on the same routes again, to show the failure is not a fluke.
    Reproduce,
    /// The planned users again, posting with the origin the app believes: their scenario
    /// failed on one replica for browsers because the app ignores X-Forwarded-Proto.
    Adapted,
    /// A smaller schedule tried while shrinking one that failed (exploration).
    Shrink,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    pub vus: Vec<VuRecord>,
    /// Chaos experiments, each with its own users, actions and probes.
    #[serde(default)]
    pub experiments: Vec<ExperimentRun>,
    /// Inspections: what each replica said when asked directly.
    #[serde(default)]
    pub inspections: Vec<InspectionRun>,
}

impl History {
    pub fn requests(&self) -> usize {
        let experiments = self.experiments.iter().flat_map(ExperimentRun::users);
        self.vus.iter().chain(experiments).flat_map(|v| &v.steps).map(|s| s.requests.len()).sum()
    }

    pub fn extend(&mut self, other: History) {
        self.vus.extend(other.vus);
        self.experiments.extend(other.experiments);
        self.inspections.extend(other.inspections);
    }
}

/// One run of an inspection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectionRun {
    pub inspection: String,
    pub phase: Phase,
    pub answers: Vec<Answer>,
    /// What the replicas exported while the telemetry inspection waited (since the run's
    /// start, for its first run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported: Option<exported::Exported>,
    /// What they exported over the whole run, their shutdown included: filled in once
    /// the replicas have stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_in_run: Option<exported::Exported>,
    pub error: Option<String>,
}

/// What a question sent straight to one replica (or through the balancer to it) got back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub question: Question,
    pub replica: Incarnation,
    /// The address the app saw the question come from, when replicheck knows it.
    pub from: Option<std::net::IpAddr>,
    pub path: String,
    pub at_ms: f64,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The scheme the app said it saw.
    pub scheme: Option<String>,
    /// The client address the app said it saw.
    pub client: Option<String>,
    /// Fingerprints of the keys of a key set.
    pub keys: Option<Vec<String>>,
    /// The trace a traced request was sent in (the telemetry inspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// When its answer had arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Question {
    /// The echo endpoint, asked by a stranger without forwarded headers (the control).
    EchoDirect,
    /// The echo endpoint through the balancer, which adds X-Forwarded-*.
    EchoThroughBalancer,
    /// The echo endpoint, asked by a stranger forging X-Forwarded-*.
    EchoForged,
    /// The published signing key set.
    KeySet,
    /// A page through the balancer, in a trace of replicheck's own (telemetry).
    TracedRequest,
}

/// One run of a chaos experiment: the same workload without the disruption (the
/// control), then with it, and what the disruption did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentRun {
    pub experiment: String,
    /// `main` the first time, `reproduce` when run again as evidence.
    pub phase: Phase,
    /// The users' steps without the disruption.
    pub control: Vec<VuRecord>,
    /// The same users across the disruption.
    pub disrupted: Vec<VuRecord>,
    /// Users that looped whole scenarios while the disruption went on.
    pub load: Vec<VuRecord>,
    pub chaos: Vec<ChaosEvent>,
    pub probes: Vec<Probe>,
    /// Why part of the experiment did not run (a missing slow request, say).
    pub notes: Vec<String>,
    /// The experiment could not complete (a replica did not come back).
    pub error: Option<String>,
    /// Lines of the replicas' own output that say something was refused them (a
    /// read-only filesystem, a permission: the hardened experiment's evidence), or that
    /// something failed (a cold start's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refusal>,
    /// A replica that did not start as the experiment asked (hardened, or started together
    /// with the others after a cold start), if one did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_failure: Option<StartFailure>,
    /// What the replicas sent the run's sink from the experiment's start on (background
    /// work), when the run has a sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Deliveries>,
    /// The stretches of time deliveries are judged in, and which replicas ran in each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    /// The values the experiment's triggers sent, by user: their deliveries carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// The subscribers of broadcast flows, with what was published for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribers: Vec<live::Subscriber>,
    /// The limits experiment's series of tries, each rate limit's in turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<limits::LimitCheck>,
    /// After a store restart, a fresh user of each flow a user failed without an answer,
    /// on the same replica: whether the app serves that flow again at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovered: Vec<VuRecord>,
    /// When users failed in an experiment with a load: the same users and load again for
    /// as long as the disruption lasted, without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loaded: Vec<VuRecord>,
}

/// A stretch of an experiment in which deliveries are counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// `control` with one replica alone, else every replica running.
    pub phase: Phase,
    pub start_ms: f64,
    pub end_ms: f64,
    pub replicas: Vec<Incarnation>,
}

/// One request that hands work to the app, and the value its delivery must carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub vu: u32,
    /// The target's `[triggered.NAME]`.
    pub flow: String,
    pub value: String,
    /// Sent to the replica that was terminated right after accepting it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before_sigterm: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub replica: Incarnation,
    pub line: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartFailure {
    /// The incarnation that was to start.
    pub replica: Incarnation,
    pub why: String,
}

impl ExperimentRun {
    pub fn new(experiment: &str, phase: Phase) -> Self {
        Self {
            experiment: experiment.to_owned(),
            phase,
            control: Vec::new(),
            disrupted: Vec::new(),
            load: Vec::new(),
            chaos: Vec::new(),
            probes: Vec::new(),
            notes: Vec::new(),
            error: None,
            refused: Vec::new(),
            start_failure: None,
            deliveries: None,
            windows: Vec::new(),
            triggers: Vec::new(),
            subscribers: Vec::new(),
            limits: Vec::new(),
            recovered: Vec::new(),
            loaded: Vec::new(),
        }
    }

    pub fn users(&self) -> impl Iterator<Item = &VuRecord> {
        self.control.iter().chain(&self.disrupted).chain(&self.load)
    }
}

/// Where part of a run's time went: a phase (`start`, `users`, `controls`, `inspections`,
/// `adapted users`, `stop`) or one chaos experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub part: String,
    pub started_ms: f64,
    pub took_ms: f64,
}

impl Timing {
    /// The part that began at `started`, ending now; times from the run's `origin`.
    pub fn since(part: impl Into<String>, origin: tokio::time::Instant, started: tokio::time::Instant) -> Self {
        Self {
            part: part.into(),
            started_ms: started.duration_since(origin).as_secs_f64() * 1000.0,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    }
}

/// A replica that exited, or stopped answering, while the run relied on it, without
/// replicheck stopping it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaExit {
    pub replica: Incarnation,
    /// When replicheck noticed, in milliseconds since the run started.
    pub at_ms: f64,
    /// How it exited, and the end of its log.
    pub how: String,
    /// It still runs, but answered nothing for a long while (a hang, a closed listener).
    #[serde(default)]
    pub silent: bool,
    /// The experiment under way (or whose healing started the incarnation) when it went:
    /// what that experiment saw proves nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<String>,
}

impl ReplicaExit {
    /// The exit in one line: how, without the log.
    pub fn summary(&self) -> String {
        let how = self.how.split(';').next().unwrap_or(&self.how);
        let what = if self.silent { "stopped answering" } else { "exited" };
        // An experiment comes upon an exit when it next acts on the replica: by then, not at.
        let (at, during) = match &self.during {
            Some(during) => ("by", format!(" during the {during} experiment")),
            None => ("at", String::new()),
        };
        format!("{} {what} {at} {:.2}s{during} without replicheck stopping it ({how})", self.replica, self.at_ms / 1000.0)
    }
}

/// One run of an interleaved schedule (exploration): its users, numbered from `first_vu`
/// in the schedule's user order, and the disruptions between their steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleRun {
    pub schedule: Schedule,
    pub phase: Phase,
    pub first_vu: u32,
    pub users: Vec<VuRecord>,
    /// The disruptions as they happened, with the probes that saw replicas come back.
    pub disruptions: ExperimentRun,
}

impl ScheduleRun {
    /// The record of the schedule's user `user`.
    pub fn user(&self, user: u32) -> Option<&VuRecord> {
        self.users.iter().find(|v| v.vu == self.first_vu + user)
    }
}

/// One chaos action, as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosEvent {
    #[serde(flatten)]
    pub action: ChaosAction,
    /// Milliseconds since the run started, when the action began and when it was done.
    pub start_ms: f64,
    pub end_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ChaosAction {
    /// SIGTERM, then the grace period; `killed` when it ran out and SIGKILL followed.
    Sigterm { replica: Incarnation, killed: bool },
    Kill { replica: Incarnation },
    Pause { replica: Incarnation },
    Resume { replica: Incarnation },
    /// A new incarnation started and became ready (a restart, a surge, a scale-out).
    Start { replica: Incarnation },
    /// The balancer stopped routing to a stopping incarnation, after the deregistration delay.
    Deregister { replica: Incarnation },
    /// A dependency (Redis, PostgreSQL, a service) stopped, or started again.
    StoreStop {
        #[serde(default)]
        dependency: String,
    },
    StoreStart {
        #[serde(default)]
        dependency: String,
    },
    /// The directory every replica shares was emptied, every replica being stopped.
    SharedEmptied,
    /// A database was put back to what a new deployment finds: empty, then seeded.
    DatabaseEmptied { dependency: String },
}

impl std::fmt::Display for ChaosAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChaosAction::Sigterm { replica, killed: false } => write!(f, "SIGTERM to {replica}"),
            ChaosAction::Sigterm { replica, killed: true } => write!(f, "SIGTERM to {replica} (killed when its grace ran out)"),
            ChaosAction::Kill { replica } => write!(f, "SIGKILL to {replica}"),
            ChaosAction::Pause { replica } => write!(f, "pause of {replica}"),
            ChaosAction::Resume { replica } => write!(f, "resume of {replica}"),
            ChaosAction::Start { replica } => write!(f, "start of {replica}"),
            ChaosAction::Deregister { replica } => write!(f, "deregistration of {replica}"),
            ChaosAction::StoreStop { dependency } => write!(f, "stop of {dependency}"),
            ChaosAction::StoreStart { dependency } => write!(f, "start of {dependency}"),
            ChaosAction::SharedEmptied => f.write_str("the shared directory emptied"),
            ChaosAction::DatabaseEmptied { dependency } => write!(f, "{dependency} emptied to its seed"),
        }
    }
}

/// A request replicheck sent straight to one replica to see what it says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub purpose: ProbePurpose,
    pub replica: Incarnation,
    pub path: String,
    /// When it was sent and when its answer (or failure) came, in milliseconds since the
    /// run started: evidence that one answer came after another needs both.
    pub at_ms: f64,
    #[serde(default)]
    pub end_ms: f64,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// No answer within the probe's timeout: a slow replica, not one that refuses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

impl Probe {
    /// The app answered with a status below 500.
    pub fn served(&self) -> bool {
        self.status.is_some_and(|s| s < 500)
    }

    /// The app could not serve: it answered 5xx, refused or reset the connection. A
    /// timeout is not counted: a replica busy with its drain or its first request is slow,
    /// and calling that a failure would make a busy machine a finding.
    pub fn failed(&self) -> bool {
        self.status.is_some_and(|s| s >= 500) || (self.status.is_none() && !self.timed_out)
    }

    /// The readiness endpoint said ready (2xx or 3xx).
    pub fn said_ready(&self) -> bool {
        self.status.is_some_and(|s| (200..400).contains(&s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProbePurpose {
    /// A real page, the moment the replica first said ready.
    FirstPage,
    /// A real page, asked again until the new replica serves it.
    LaterPage,
    /// Readiness, asked beside `LaterPage` while a new replica does not serve yet.
    ReadyStarting,
    /// Readiness while the replica is fine (the control).
    ReadyBefore,
    /// A real page, asked straight from the replica while its termination goes on.
    DrainPage,
    /// Readiness, asked beside `DrainPage`.
    ReadyDraining,
    /// Readiness while the store is down.
    ReadyStoreDown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VuRecord {
    pub phase: Phase,
    pub vu: u32,
    /// Which pass of a looping user this is (0 for users that run once).
    #[serde(default)]
    pub iteration: u32,
    pub scenario: String,
    /// The steps taken, up to and including the first that did not pass.
    pub steps: Vec<StepRecord>,
}

impl VuRecord {
    /// The first step that did not pass, if any.
    pub fn first_failure(&self) -> Option<&StepRecord> {
        self.steps.iter().find(|s| !matches!(s.outcome, Outcome::Passed))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: usize,
    pub name: String,
    pub planned: ReplicaId,
    /// The replica that answered the step's request (its redirects stay there too).
    pub served_by: Option<Incarnation>,
    /// Replicas the step's writes also reached on their way to `served_by` (behind a load
    /// balancer replicheck cannot steer): what they hand out is no proof of anything there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_reached: Vec<ReplicaId>,
    pub requests: Vec<RequestRecord>,
    pub outcome: Outcome,
    /// Names of the cookies this step's responses set.
    pub set_cookies: Vec<String>,
    /// The shape of each cookie's value as it was set (`shape.rs`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cookie_shapes: BTreeMap<String, Shape>,
    /// Variables captured by this step, with a fingerprint of each value.
    pub captured: Vec<Captured>,
}

impl StepRecord {
    /// The step did not pass because the app gave no answer to judge (see
    /// `RequestRecord::unanswered`).
    pub fn unanswered(&self) -> bool {
        !matches!(self.outcome, Outcome::Passed) && self.requests.last().is_some_and(RequestRecord::unanswered)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Captured {
    pub name: String,
    pub fingerprint: String,
    /// The value's shape: an id, or data under a signature or encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Shape>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub planned: ReplicaId,
    pub served_by: Option<Incarnation>,
    pub status: Option<u16>,
    /// The `Location` of a redirect.
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    /// Milliseconds since the run started.
    pub start_ms: f64,
    pub end_ms: f64,
    pub error: Option<String>,
}

impl RequestRecord {
    /// No answer from the app: a transport error, a balancer error, a cut body, or a 5xx.
    pub fn unanswered(&self) -> bool {
        self.error.is_some() || self.status.is_some_and(|s| s >= 500)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Outcome {
    Passed,
    /// The app answered, but not as the step expects.
    Failed { expected: String, observed: Observed },
    /// No answer to judge: the connection failed, timed out, or no replica was ready.
    Error { message: String },
}

/// What a failed step saw, secrets removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub status: Option<u16>,
    /// Where the step ended, after redirects (path and query).
    pub location: Option<String>,
    /// The redirects followed, in order.
    pub redirects: Vec<String>,
    /// The start of the page's visible text, or of its body.
    pub excerpt: String,
    /// What did not hold.
    pub reason: String,
}

/// `status 200 at /login?ReturnUrl=%2F: the body does not contain "Signed in"`.
impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(status) = self.status {
            write!(f, "status {status}")?;
            if let (Some(location), false) = (&self.location, self.redirects.is_empty()) {
                write!(f, " at {location}")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.reason)
    }
}

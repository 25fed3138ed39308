//! What a run tells whoever watches it while it goes. The library only emits these; the
//! CLI decides how they look (plain lines in CI logs).

use std::net::SocketAddr;
use std::time::Duration;

use crate::vocab::finding::FindingKind;
use crate::vocab::replica::Incarnation;

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    DependencyReady { name: String, url: String },
    ReplicaReady { replica: Incarnation, addr: SocketAddr, took: Duration },
    BalancerListening { url: String },
    /// A replica said ready but does not serve the target's chaos page; users start anyway.
    NotServing { replica: Incarnation, page: String },
    ScenarioSkipped { scenario: String, reason: String },
    VirtualUsersStarted { users: usize, scenarios: usize },
    VirtualUsersFinished { users: usize, requests: usize, took: Duration },
    ControlsStarted { candidates: usize },
    /// An inspection or a chaos experiment.
    CheckStarted { name: String },
    /// The check showed something and runs again to see it happen twice.
    CheckRepeated { name: String },
    CheckFinished { name: String, findings: usize },
    /// Exploration: case `case` of `cases` starts; `findings` faults settled so far.
    ExploreCase { case: u32, cases: u32, findings: usize },
    /// Exploration: a case showed a fault not seen before; it is shrunk next.
    FaultFound { case: u32, kind: FindingKind, scenario: String, step: String },
    /// Exploration: shrinking, `tries` simplifications so far, the smallest at `steps` steps.
    Shrinking { tries: u32, steps: usize },
    /// Exploration: a fault's smallest schedule, and what its control and second run said.
    Shrunk { schedule: String, outcome: String },
    /// A replica exited without replicheck stopping it; it is out of routing.
    ReplicaExited { exit: crate::history::ReplicaExit },
    Stopping,
    /// Behind a load balancer replicheck cannot bypass: the instances that served, in
    /// replica order, and how many requests could not be landed where they were planned.
    InstancesSeen { names: Vec<String>, missed: u64 },
}

pub trait Observer: Send + Sync {
    fn progress(&self, event: Progress);
}

impl<F: Fn(Progress) + Send + Sync> Observer for F {
    fn progress(&self, event: Progress) {
        self(event)
    }
}

/// An observer that ignores everything (tests, embedded use).
pub struct Silent;

impl Observer for Silent {
    fn progress(&self, _: Progress) {}
}

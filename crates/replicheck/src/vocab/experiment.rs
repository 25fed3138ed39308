//! The chaos experiments by name, and what each looks for.

use serde::{Deserialize, Serialize};

use super::backend::BackendKind;
use super::finding::FindingKind;

/// An experiment that disrupts the cluster while users hand artifacts over or load it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ExperimentKind {
    Restart,
    Kill,
    Pause,
    RollingRestart,
    ScaleOut,
    Sigterm,
    StoreRestart,
    StoreOutage,
    ColdStart,
    Hardened,
    ScheduledJobs,
    TriggeredWork,
    Broadcast,
    Limits,
}

impl ExperimentKind {
    pub const ALL: [ExperimentKind; 14] = [
        ExperimentKind::Restart,
        ExperimentKind::Kill,
        ExperimentKind::Pause,
        ExperimentKind::RollingRestart,
        ExperimentKind::ScaleOut,
        ExperimentKind::Sigterm,
        ExperimentKind::StoreRestart,
        ExperimentKind::StoreOutage,
        ExperimentKind::ColdStart,
        ExperimentKind::Hardened,
        ExperimentKind::ScheduledJobs,
        ExperimentKind::TriggeredWork,
        ExperimentKind::Broadcast,
        // Last: a limit keyed on the proxy's address keeps refusing every client for its
        // window, whatever runs after it.
        ExperimentKind::Limits,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExperimentKind::Restart => "restart",
            ExperimentKind::Kill => "kill",
            ExperimentKind::Pause => "pause",
            ExperimentKind::RollingRestart => "rolling-restart",
            ExperimentKind::ScaleOut => "scale-out",
            ExperimentKind::Sigterm => "sigterm",
            ExperimentKind::StoreRestart => "store-restart",
            ExperimentKind::StoreOutage => "store-outage",
            ExperimentKind::ColdStart => "cold-start",
            ExperimentKind::Hardened => "hardened",
            ExperimentKind::ScheduledJobs => "scheduled-jobs",
            ExperimentKind::TriggeredWork => "triggered-work",
            ExperimentKind::Broadcast => "broadcast",
            ExperimentKind::Limits => "limits",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kinds this experiment looks for (a scale-out also finds the workload's own kinds).
    pub fn checks(self) -> Vec<FindingKind> {
        use FindingKind::*;
        match self {
            ExperimentKind::Restart => vec![ArtifactLostAfterRestart, ReadinessPremature, ShutdownOverranGrace],
            ExperimentKind::Kill => vec![ArtifactLostAfterRestart, ReadinessPremature],
            ExperimentKind::Pause => vec![ArtifactLostAfterRestart],
            ExperimentKind::RollingRestart => vec![
                ArtifactLostAfterRestart,
                InflightDropped,
                RefusedDuringDeregistration,
                ShutdownOverranGrace,
                ReadinessPremature,
            ],
            ExperimentKind::ScaleOut => vec![ReadinessPremature],
            ExperimentKind::Sigterm => vec![InflightDropped, RefusedDuringDeregistration, ShutdownOverranGrace, ReadinessStale],
            ExperimentKind::StoreRestart => vec![ArtifactLostAfterStoreRestart],
            ExperimentKind::StoreOutage => vec![ReadinessStale],
            ExperimentKind::ColdStart => vec![KeyringRaceOnStart, ReadinessPremature],
            ExperimentKind::Hardened => vec![FailsHardenedRuntime],
            ExperimentKind::ScheduledJobs => vec![JobRunsOnEveryReplica, WorkLostAtShutdown],
            ExperimentKind::TriggeredWork => vec![SideEffectDuplicated, WorkLostAtShutdown],
            ExperimentKind::Broadcast => vec![BroadcastNotShared],
            ExperimentKind::Limits => vec![LimitPerReplica, LimitResetByRestart, LimitSharedByAllClients, LimitSpoofable],
        }
    }

    /// Whether the disruption hits one replica (the plan's victim) rather than all of
    /// them or the store.
    pub fn hits_one(self) -> bool {
        matches!(self, ExperimentKind::Restart | ExperimentKind::Kill | ExperimentKind::Pause | ExperimentKind::Sigterm)
    }

    /// Whether the workload is users handing artifacts over the disruption.
    pub fn hands_over(self) -> bool {
        !matches!(
            self,
            ExperimentKind::Sigterm
                | ExperimentKind::StoreOutage
                | ExperimentKind::ScheduledJobs
                | ExperimentKind::TriggeredWork
                | ExperimentKind::Broadcast
                | ExperimentKind::Limits
        )
    }

    /// Whether the experiment sends requests at all: scheduled jobs are only watched.
    pub fn sends_requests(self) -> bool {
        self != ExperimentKind::ScheduledJobs
    }

    /// Whether a run that names no experiments runs this one on `backend`: hardening takes
    /// containers, so elsewhere it runs only when named, to say why it cannot.
    pub fn runs_by_default_on(self, backend: BackendKind) -> bool {
        self != ExperimentKind::Hardened || backend == BackendKind::Docker
    }

    /// Why this experiment cannot run on replicas of `backend` replicheck starts itself (the
    /// external backend's instances say for themselves).
    pub fn backend_skip_reason(self, backend: BackendKind) -> Option<String> {
        match (self, backend) {
            (ExperimentKind::Hardened, BackendKind::Process) => Some("hardening takes containers: run the target's image with --backend docker".to_owned()),
            (ExperimentKind::ScheduledJobs | ExperimentKind::TriggeredWork, BackendKind::External) => {
                Some("instances that already run send their work elsewhere, not to the run's sink, and cannot be stopped to compare with one alone".to_owned())
            }
            _ => None,
        }
    }
}

//! The chaos experiments by name, and what each looks for; an experiment of a run is its
//! kind and, for the store experiments, the dependency it disrupts.

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

    /// The kind a name selects: its own, or one experiment of it (`store-outage postgres`).
    pub fn from_name(name: &str) -> Option<Self> {
        Experiment::from_name(name).map(|e| e.kind)
    }

    /// Whether the experiment disrupts one of the run's dependencies, once for each.
    pub fn disrupts_a_dependency(self) -> bool {
        matches!(self, ExperimentKind::StoreRestart | ExperimentKind::StoreOutage)
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
            ExperimentKind::ColdStart => vec![KeyringRaceOnStart, StartRace, ReadinessPremature],
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

    /// How many further runs may show again what the first run showed. A start race shows
    /// only when the replicas' starts overlap, and a busy machine spreads starts that
    /// begin at the same instant: the cold start gets three tries to show it again. Every
    /// other experiment's outcome does not hang on such timing, and gets one.
    pub fn confirming_runs(self) -> usize {
        match self {
            ExperimentKind::ColdStart => 3,
            _ => 1,
        }
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

/// One experiment of a run: a kind, and the dependency a store experiment disrupts. Its name
/// is the kind's, followed by the dependency's (`store-outage postgres`), in the report, in
/// `--scenarios` and in the record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Experiment {
    pub kind: ExperimentKind,
    pub dependency: Option<String>,
}

impl Experiment {
    pub fn of(kind: ExperimentKind) -> Experiment {
        Experiment { kind, dependency: None }
    }

    pub fn disrupting(kind: ExperimentKind, dependency: &str) -> Experiment {
        Experiment { kind, dependency: Some(dependency.to_owned()) }
    }

    /// The experiment a name means: a kind's name alone, or a store experiment's with the
    /// name of a dependency.
    pub fn from_name(name: &str) -> Option<Experiment> {
        let (kind, dependency) = match name.split_once(' ') {
            Some((kind, dependency)) => (kind, Some(dependency.trim())),
            None => (name, None),
        };
        let kind = ExperimentKind::ALL.into_iter().find(|k| k.name() == kind)?;
        match dependency {
            None => Some(Experiment::of(kind)),
            Some(dependency) if kind.disrupts_a_dependency() && !dependency.is_empty() && !dependency.contains(' ') => Some(Experiment::disrupting(kind, dependency)),
            Some(_) => None,
        }
    }

    /// Whether a `--scenarios` word selects this experiment: its kind's name selects every
    /// dependency's, its own name only itself.
    pub fn selected_by(&self, word: &str) -> bool {
        word == self.kind.name() || Experiment::from_name(word).as_ref() == Some(self)
    }
}

impl std::fmt::Display for Experiment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dependency {
            Some(dependency) => write!(f, "{} {dependency}", self.kind.name()),
            None => f.write_str(self.kind.name()),
        }
    }
}

impl From<Experiment> for String {
    fn from(experiment: Experiment) -> String {
        experiment.to_string()
    }
}

impl TryFrom<String> for Experiment {
    type Error = String;

    fn try_from(name: String) -> Result<Experiment, String> {
        Experiment::from_name(&name).ok_or_else(|| format!("no experiment is called `{name}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_experiment_is_named_with_its_dependency() {
        let outage = Experiment::disrupting(ExperimentKind::StoreOutage, "postgres");
        assert_eq!(outage.to_string(), "store-outage postgres");
        assert_eq!(Experiment::from_name("store-outage postgres"), Some(outage.clone()));
        assert!(outage.selected_by("store-outage") && outage.selected_by("store-outage postgres"));
        assert!(!outage.selected_by("store-outage redis") && !outage.selected_by("store-restart"));
        assert_eq!(Experiment::from_name("restart"), Some(Experiment::of(ExperimentKind::Restart)));
        assert_eq!(Experiment::from_name("restart r0"), None, "only store experiments name a dependency");
        assert_eq!(ExperimentKind::from_name("store-restart queue"), Some(ExperimentKind::StoreRestart));
        let json = serde_json::to_string(&outage).unwrap();
        assert_eq!(json, "\"store-outage postgres\"");
        assert_eq!(serde_json::from_str::<Experiment>(&json).unwrap(), outage);
    }
}

//! Replaying a recorded report: the run that reproduces it from its seed (all of it, or
//! only what one finding needs, or an exploration finding's smallest schedule), and what
//! the replay saw again of what was recorded.

use std::path::PathBuf;
use std::sync::Arc;

use crate::check::finding::Finding;
use crate::cluster::BackendKind;
use crate::explore::ExploreConfig;
use crate::report::Report;
use crate::run::{ReportDir, RunConfig, Selection};
use crate::scenario::SelectError;
use crate::target::Target;

/// What reruns a report: a run, or one schedule of an exploration.
#[allow(clippy::large_enum_variant)]
pub enum Replay {
    Run(RunConfig),
    Schedule(ExploreConfig),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("the report has no finding {id}; its findings: {}", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    UnknownFinding { id: String, known: Vec<String> },
    #[error("the report names an unknown backend `{0}`")]
    UnknownBackend(String),
    #[error("the report is a smoke test of instances replay cannot reach by itself; run a finding's reproduce command instead")]
    External,
    #[error("the report is an exploration: replay one finding's smallest schedule (its id)")]
    NeedsFinding,
    #[error(transparent)]
    Select(#[from] SelectError),
}

/// Where and how a replay runs, beside what the report recorded.
#[non_exhaustive]
pub struct ReplayConfig {
    /// The report's target (its file where the run was made).
    pub target: Target,
    /// Replay only this finding: its check, and the scenario whose users showed it.
    pub finding: Option<String>,
    pub report_dir: ReportDir,
    /// A replicheck binary, for `{replicheck}` in the target and the run's watchdog (see
    /// [`ClusterSpec::replicheck`](crate::cluster::ClusterSpec#structfield.replicheck)).
    pub replicheck: Option<PathBuf>,
    /// The command a finding of the replay reproduces with.
    pub reproduce: String,
}

impl ReplayConfig {
    /// A replay of every finding, with the report under `reports/`.
    pub fn new(target: Target) -> ReplayConfig {
        let reproduce = format!("replicheck replay (a report of {})", target.path.display());
        ReplayConfig { target, finding: None, report_dir: ReportDir::at_or_default(None), replicheck: None, reproduce }
    }

    /// Replays only this finding (its id, as `F1`).
    pub fn finding(self, id: impl Into<String>) -> ReplayConfig {
        ReplayConfig { finding: Some(id.into()), ..self }
    }

    pub fn report_dir(self, report_dir: ReportDir) -> ReplayConfig {
        ReplayConfig { report_dir, ..self }
    }

    /// See [`ReplayConfig::replicheck`](#structfield.replicheck).
    pub fn replicheck(self, binary: impl Into<PathBuf>) -> ReplayConfig {
        ReplayConfig { replicheck: Some(binary.into()), ..self }
    }

    pub fn reproduce(self, command: impl Into<String>) -> ReplayConfig {
        ReplayConfig { reproduce: command.into(), ..self }
    }
}

/// The run or schedule that reruns `recorded`, with its seed and settings.
pub fn plan(recorded: &Report, config: ReplayConfig) -> Result<Replay, ReplayError> {
    let focus = focus(recorded, config.finding.as_deref())?;
    let backend = BackendKind::from_name(&recorded.backend).ok_or_else(|| ReplayError::UnknownBackend(recorded.backend.clone()))?;
    if backend == BackendKind::External {
        return Err(ReplayError::External);
    }
    let reproduce = config.reproduce;
    if recorded.exploration.is_some() {
        let schedule = focus.and_then(|f| f.minimal_schedule.clone()).ok_or(ReplayError::NeedsFinding)?;
        return Ok(Replay::Schedule(ExploreConfig {
            scenarios: Selection::of(&recorded.config.scenarios)?.scenarios,
            replicas: recorded.config.replicas,
            seed: recorded.seed,
            cases: 1,
            max_steps: schedule.steps(),
            max_shrink_iters: 0,
            schedule: Some(schedule),
            report_dir: config.report_dir,
            replicheck: config.replicheck,
            backend,
            reproduce: Some(Arc::new(move |_| reproduce.clone())),
            selection: recorded.config.scenarios.clone(),
            ..ExploreConfig::new(config.target)
        }));
    }
    // A finding needs only its own check, and the scenario whose users showed it.
    let selection: Vec<String> = match focus {
        Some(finding) if finding.check != finding.scenario => vec![finding.scenario.clone(), finding.check.clone()],
        Some(finding) => vec![finding.check.clone()],
        None => recorded.config.scenarios.clone(),
    };
    let chosen = Selection::of(&selection)?;
    Ok(Replay::Run(RunConfig {
        scenarios: chosen.scenarios,
        run_scenarios: chosen.run_scenarios,
        inspections: chosen.inspections,
        experiments: chosen.experiments,
        replicas: recorded.config.replicas,
        seed: recorded.seed,
        routing: recorded.config.routing,
        vus: recorded.config.vus,
        load_vus: recorded.config.load_vus,
        report_dir: config.report_dir,
        replicheck: config.replicheck,
        backend,
        reproduce: Some(Arc::new(move |_, _| reproduce.clone())),
        selection,
        ..RunConfig::new(config.target)
    }))
}

/// The recorded finding `id`, if one was asked for.
pub fn focus<'a>(recorded: &'a Report, id: Option<&str>) -> Result<Option<&'a Finding>, ReplayError> {
    let Some(id) = id else { return Ok(None) };
    recorded.findings.iter().find(|f| f.id == id).map(Some).ok_or_else(|| ReplayError::UnknownFinding {
        id: id.to_owned(),
        known: recorded.findings.iter().map(|f| f.id.clone()).collect(),
    })
}

/// What the replay saw of the recorded findings (only the focused one, if any), and the
/// findings it saw that were not recorded.
pub struct Comparison<'a> {
    pub recorded: Vec<(&'a Finding, bool)>,
    pub new: Vec<&'a Finding>,
}

pub fn compare<'a>(recorded: &'a Report, replayed: &'a Report, focus: Option<&Finding>) -> Comparison<'a> {
    let same = |a: &Finding, b: &Finding| {
        (a.kind, &a.check, &a.scenario, &a.step, a.producer.id, a.consumer.id) == (b.kind, &b.check, &b.scenario, &b.step, b.producer.id, b.consumer.id)
    };
    Comparison {
        recorded: recorded
            .findings
            .iter()
            .filter(|f| focus.is_none_or(|focus| focus.id == f.id))
            .map(|finding| (finding, replayed.findings.iter().any(|r| same(r, finding))))
            .collect(),
        new: replayed.findings.iter().filter(|r| !recorded.findings.iter().any(|f| same(r, f))).collect(),
    }
}

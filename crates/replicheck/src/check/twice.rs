//! Checks that run twice: a chaos experiment or an inspection runs once, and when it shows
//! something, runs again (a race, up to a few times: `ExperimentKind::confirming_runs`). A
//! candidate becomes a finding only when every control passed and a run after the first
//! shows the same thing (same kind, scenario and step) again.

use super::finding::{ArtifactEvidence, ChaosContext, Control, ControlResult, Finding, FindingKind};
use super::{ScenarioResult, ScenarioStatus};
use crate::vocab::replica::Incarnation;
use crate::history::{ChaosEvent, ExperimentRun, Observed};

/// Something a check run showed, before the second run confirms it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub kind: FindingKind,
    pub scenario: String,
    pub step: String,
    pub producer: Incarnation,
    pub consumer: Incarnation,
    /// The chaos action it followed, for experiments.
    pub after: Option<ChaosEvent>,
    pub expected: String,
    pub observed: Observed,
    pub control: String,
    pub artifact: ArtifactEvidence,
    pub vu: Option<u32>,
    /// When the failing request of that user started, to find it on the timeline.
    pub at_ms: Option<f64>,
    pub occurrences: u32,
    /// The model it was judged under, remedies, adaptations: carried into the finding.
    pub notes: Vec<String>,
}

impl Candidate {
    /// One sighting, in words (expected, observed, control), between `producer` and
    /// `consumer`: what it followed, its artifact and the request to outline are the
    /// caller's to add.
    pub fn said(kind: FindingKind, scenario: &str, step: &str, (producer, consumer): (Incarnation, Incarnation), words: (String, String, String)) -> Self {
        let (expected, reason, control) = words;
        Candidate {
            kind,
            scenario: scenario.to_owned(),
            step: step.to_owned(),
            producer,
            consumer,
            after: None,
            expected,
            observed: Observed { reason, ..Observed::default() },
            control,
            artifact: ArtifactEvidence::named("none"),
            vu: None,
            at_ms: None,
            occurrences: 1,
            notes: Vec::new(),
        }
    }

    /// What must show again in the second run for this to be a finding.
    pub fn key(&self) -> (FindingKind, String, String) {
        (self.kind, self.scenario.clone(), self.step.clone())
    }
}

/// What one run of a check shows.
#[derive(Debug, Default)]
pub struct Assessment {
    pub candidates: Vec<Candidate>,
    /// The control failed: the check shows nothing about cross-instance behaviour.
    pub baseline: Option<String>,
    /// Failures the check cannot explain.
    pub unexplained: Vec<String>,
    /// What the check saw but does not judge, for the report.
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub users: u32,
    pub requests: usize,
}

impl Assessment {
    /// An experiment's run before it is judged: its error, notes, users and requests.
    pub fn of(run: &ExperimentRun) -> Self {
        Assessment {
            error: run.error.clone(),
            users: run.users().count() as u32,
            requests: run.users().flat_map(|u| &u.steps).map(|s| s.requests.len()).sum(),
            notes: run.notes.clone(),
            ..Assessment::default()
        }
    }

    /// Whether the check is worth a second run: it showed candidates, and neither a failed
    /// control nor an error makes them moot.
    pub fn worth_repeating(&self) -> bool {
        !self.candidates.is_empty() && self.baseline.is_none() && self.error.is_none()
    }

    /// Whether the runs after this one leave something to settle: a candidate none of
    /// them showed again, while each passed its control and ran without error (a run that
    /// did not can confirm nothing, and ends the tries).
    pub fn unsettled_by(&self, again: &Assessment) -> bool {
        again.baseline.is_none() && again.error.is_none() && self.candidates.iter().any(|c| !again.candidates.iter().any(|a| a.key() == c.key()))
    }

    /// Two runs after the first as one: every candidate either showed, and the first failed
    /// control or error, which stops the check from confirming anything.
    pub fn joined(mut self, next: Assessment) -> Assessment {
        self.candidates.extend(next.candidates);
        self.baseline = self.baseline.or(next.baseline);
        self.error = self.error.or(next.error);
        self
    }
}

/// The runs after the first, as one (`Assessment::joined`); None when the check did not
/// run again.
pub fn again(runs: impl IntoIterator<Item = Assessment>) -> Option<Assessment> {
    runs.into_iter().reduce(Assessment::joined)
}

/// Findings and a status for one check, from its first run and, when that showed
/// candidates, the runs after it as one (`again`). `name` is the experiment or inspection.
pub fn judge(first: &Assessment, second: Option<&Assessment>, seed: u64, reproduce: &dyn Fn(&str) -> String, experiment: &str) -> (Vec<Finding>, ScenarioResult) {
    let mut result = ScenarioResult {
        name: experiment.to_owned(),
        status: ScenarioStatus::Passed,
        reason: None,
        vus: first.users,
        requests: first.requests,
        handoffs_crossed: 0,
        unconfirmed: 0,
        checks: Vec::new(),
        untested: Vec::new(),
        notes: first.notes.clone(),
    };
    if let Some(error) = first.error.clone().or_else(|| second.and_then(|s| s.error.clone())) {
        result.status = ScenarioStatus::Error;
        result.reason = Some(error);
        return (Vec::new(), result);
    }
    if let Some(baseline) = first.baseline.clone().or_else(|| second.and_then(|s| s.baseline.clone())) {
        result.status = ScenarioStatus::BaselineFailed;
        result.reason = Some(baseline);
        return (Vec::new(), result);
    }
    let again: Vec<(FindingKind, String, String)> = second.map(|s| s.candidates.iter().map(Candidate::key).collect()).unwrap_or_default();
    let mut findings = Vec::new();
    for candidate in &first.candidates {
        if !again.contains(&candidate.key()) {
            result.unconfirmed += 1;
            // Not a finding, but a reader who sees the count asks what it was.
            let reason = candidate.observed.reason.lines().next().unwrap_or_default();
            let reason: String = reason.chars().take(160).collect();
            result.notes.push(format!("seen once, not again: {} at `{}` step `{}`: {reason}", candidate.kind, candidate.scenario, candidate.step));
            continue;
        }
        findings.push(Finding {
            id: String::new(),
            kind: candidate.kind,
            check: experiment.to_owned(),
            scenario: candidate.scenario.clone(),
            step: candidate.step.clone(),
            producer: candidate.producer,
            consumer: candidate.consumer,
            artifact: candidate.artifact.clone(),
            expected: candidate.expected.clone(),
            observed: candidate.observed.clone(),
            control: Control {
                result: ControlResult::Passed,
                detail: candidate.control.clone(),
                pinned_to: None,
                vu: None,
            },
            reproduced: true,
            occurrences: candidate.occurrences,
            vu: candidate.vu,
            at_ms: candidate.at_ms,
            after: candidate.after.as_ref().map(|event| ChaosContext {
                experiment: experiment.to_owned(),
                action: event.action.to_string(),
                at_ms: event.start_ms,
            }),
            notes: candidate.notes.clone(),
            observations: Vec::new(),
            accepted: None,
            minimal_schedule: None,
            seed,
            // The experiment, and the scenario whose users showed it, if it is not its own.
            reproduce: if candidate.scenario == experiment {
                reproduce(experiment)
            } else {
                reproduce(&format!("{},{experiment}", candidate.scenario))
            },
        });
    }
    let unexplained = first.unexplained.len();
    if !findings.is_empty() {
        result.status = ScenarioStatus::Failed;
    } else if let Some(first_unexplained) = first.unexplained.first() {
        result.status = ScenarioStatus::Error;
        result.reason = Some(format!("{unexplained} failure(s) no disruption explains, first: {first_unexplained}"));
    }
    if let (false, Some(first_unexplained)) = (findings.is_empty(), first.unexplained.first()) {
        result.reason = Some(format!("also {unexplained} failure(s) no disruption explains, first: {first_unexplained}"));
    }
    (findings, result)
}


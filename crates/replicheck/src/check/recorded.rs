//! The verdict on a whole run from its record: what every phase did, and nothing else.
//! `run` judges with it once everything has run, and `replicheck check` judges a stored
//! run again with it, so both take one path from what happened to a finding. While a run
//! goes on, the checker's pieces only decide what to run next (evidence for a candidate, a
//! second run of a check that showed something, users adapted to the origin the app
//! believes).

use serde::{Deserialize, Serialize};

use super::finding::{Finding, FindingKind};
use super::twice::Assessment;
use super::{ScenarioResult, ScenarioStatus, Untested, Verdict};
use crate::vocab::routing::RoutingPolicy;
use crate::chaos::ExperimentKind;
use crate::vocab::experiment::Experiment;
use crate::cluster::Vantage;
use crate::history::{ExperimentRun, History, InspectionRun, Phase, ReplicaExit, Timing, VuRecord};
use crate::inspect::InspectionKind;
use crate::interrupt::Interruption;
use crate::plan::Plan;
use crate::plan::evidence::EvidencePlans;
use crate::scenario::Scenario;
use crate::target::Target;

/// Where a reproduce command's names go in `Record::reproduce`.
pub const NAMES: &str = "{names}";

/// The record's file in a report directory.
pub const FILE_NAME: &str = "record.json";

/// Everything a run did that its verdict rests on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub seed: u64,
    /// The command that reproduces a check, with `{names}` where its names go.
    pub reproduce: String,
    pub vantage: Vantage,
    /// The balancer's authority, as users' `Origin` named it.
    pub public: String,
    pub roster: Roster,
    /// The planned users' questions.
    pub users: AskRecord,
    pub inspections: Vec<InspectionRun>,
    /// The origin trial: each scenario's browser and adapted user, side by side.
    pub trial: Vec<(VuRecord, VuRecord)>,
    /// The questions asked again with adapted users.
    pub adapted: Option<AskRecord>,
    pub experiments: Vec<ExperimentRun>,
    /// Replicas that exited while the users and inspections relied on them.
    #[serde(default)]
    pub exits: Vec<ReplicaExit>,
    /// Why the run stopped before it was done.
    #[serde(default)]
    pub interrupted: Option<Interruption>,
    /// What was run and how it was asked for. Records written before it was kept lack it;
    /// `check` reads their report.json instead.
    #[serde(default)]
    pub run: Option<RunInfo>,
}

/// What a run was and how it was asked for, beyond what its verdict rests on: with the
/// plan beside it, enough to make the run's report again from the record alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// The version of replicheck that ran it.
    pub version: String,
    pub run_id: String,
    pub backend: String,
    /// The target's name, and the file it came from.
    pub target: String,
    pub target_file: String,
    pub replicas: u16,
    pub routing: RoutingPolicy,
    pub vus: u32,
    pub load_vus: u32,
    /// What `--scenarios` said; empty for everything.
    pub selection: Vec<String>,
    /// From the start until the record was written.
    pub duration_ms: u64,
    pub timings: Vec<Timing>,
    /// What kept the run from asking anything (the replicas did not start), secrets out.
    pub error: Option<String>,
}

/// Every scenario, inspection and experiment of the run in report order, with the reason
/// for each one skipped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Roster {
    pub scenarios: Vec<(String, Option<String>)>,
    pub inspections: Vec<(InspectionKind, Option<String>)>,
    pub experiments: Vec<(Experiment, Option<String>)>,
}

impl Record {
    /// Everything as one history: the planned users, their controls and reproductions, the
    /// origin trial, the adapted users with theirs, the inspections and the experiments.
    pub fn history(&self) -> History {
        let mut history = History {
            vus: self.users.users.vus.clone(),
            experiments: self.experiments.clone(),
            inspections: self.inspections.clone(),
        };
        history.extend(self.users.evidence.clone());
        for (browser, adapted) in &self.trial {
            history.vus.extend([browser.clone(), adapted.clone()]);
        }
        if let Some(adapted) = &self.adapted {
            history.extend(adapted.users.clone());
            history.extend(adapted.evidence.clone());
        }
        history
    }
}

/// Users' cross-replica questions: who ran, the evidence plans for what failed across
/// replicas, and the evidence.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AskRecord {
    pub roster: Vec<(String, Option<String>)>,
    pub users: History,
    pub plans: EvidencePlans,
    pub evidence: History,
}

impl AskRecord {
    pub fn verdict(&self, scenarios: &[Scenario], seed: u64, reproduce: &dyn Fn(&str) -> String) -> Verdict {
        let triage = super::triage(scenarios, &self.users);
        super::judge(&self.roster, &triage, &self.plans, &self.evidence, seed, reproduce)
    }
}

/// The scenarios the run's users ran and its experiments' workload, bound to the target.
pub struct Scenarios<'a> {
    pub users: &'a [Scenario],
    pub workload: &'a [Scenario],
}

/// Every scenario, inspection and experiment's result, and the findings (not yet merged
/// or numbered).
pub fn judge(record: &Record, scenarios: &Scenarios<'_>, target: &Target, plan: &Plan) -> Verdict {
    // A store experiment's name has a space in it (`store-outage postgres`).
    let reproduce = |names: &str| record.reproduce.replace(NAMES, &crate::shell::shell_word(names));
    let mut verdict = record.users.verdict(scenarios.users, record.seed, &reproduce);

    // Inspections.
    let mut inspected = Verdict::default();
    for (kind, skipped) in &record.roster.inspections {
        let name = kind.name();
        if let Some(reason) = skipped {
            inspected.scenarios.push(ScenarioResult::skipped(name, reason.clone()));
            continue;
        }
        let assess = |run: &InspectionRun| super::inspect::assess(run, &target.balancer, record.vantage, &record.users.users, &record.public);
        let runs = |phase: Phase| record.inspections.iter().find(|r| r.inspection == name && r.phase == phase).map(assess);
        let (findings, result) = twice(runs(Phase::Main), runs(Phase::Reproduce), record.seed, &reproduce, name);
        inspected.findings.extend(findings);
        inspected.scenarios.push(result);
    }

    // The origin trial, and the questions asked again with adapted users.
    let known_proto_finding = inspected.findings.iter().any(|f| f.kind == FindingKind::ForwardedProtoIgnored);
    let mut trial_findings = Vec::new();
    let mut confirmed = Vec::new();
    for (browser, adapted) in &record.trial {
        let super::adapt::TrialOutcome::OriginRefused { step, observed } = super::adapt::judge(browser, adapted) else { continue };
        // With no echo endpoint to show it, the trial itself is the evidence, as long as
        // the app is meant to believe replicheck's balancer.
        if !known_proto_finding && record.vantage.proxy.is_some() && trial_findings.is_empty() {
            trial_findings.extend(super::adapt::finding(browser, adapted, &observed, step, &record.public, record.seed, reproduce(&browser.scenario)));
        }
        confirmed.push(browser.scenario.clone());
    }
    let note = (!confirmed.is_empty()).then(|| {
        format!(
            "posted with Origin and Referer http://{}, the origin the app believes (forwarded-proto-ignored): browsers' posts behind TLS were refused even on one replica ({}), and the scheme was the only change",
            record.public,
            confirmed.join(", ")
        )
    });
    if let (Some(adapted), Some(note)) = (&record.adapted, &note) {
        let again = adapted.verdict(scenarios.users, record.seed, &reproduce);
        for result in &again.scenarios {
            let Some(slot) = verdict.scenarios.iter_mut().find(|r| r.name == result.name) else { continue };
            let as_browsers = slot.reason.clone().unwrap_or_default();
            *slot = result.clone();
            slot.notes.push(format!("users {note}"));
            slot.notes.push(format!("as browsers: {as_browsers}"));
        }
        for finding in &again.findings {
            let mut finding = finding.clone();
            finding.notes.push(format!("users {note}"));
            verdict.findings.push(finding);
        }
    }

    // Experiments.
    let platform = super::chaos::Platform::of(target);
    let mut chaos = Verdict::default();
    for (experiment, skipped) in &record.roster.experiments {
        let name = experiment.to_string();
        let name = name.as_str();
        let Some(experiment_plan) = plan.experiments.iter().find(|e| e.experiment() == *experiment) else {
            chaos.scenarios.push(ScenarioResult::skipped(name, skipped.clone().unwrap_or_default()));
            continue;
        };
        let assess = |run: &ExperimentRun| super::chaos::assess(experiment_plan, run, scenarios.workload, &platform);
        let runs = |phase: Phase| record.experiments.iter().filter(move |r| r.experiment == name && r.phase == phase).map(assess);
        // A race gets several runs to show again (`ExperimentKind::confirming_runs`), each recorded.
        let (findings, result) = twice(runs(Phase::Main).next(), super::twice::again(runs(Phase::Reproduce)), record.seed, &reproduce, name);
        chaos.findings.extend(findings);
        chaos.scenarios.push(result);
    }
    if let Some(note) = &note {
        let posted = |name: &str| ExperimentKind::from_name(name).is_none_or(ExperimentKind::sends_requests);
        for result in chaos.scenarios.iter_mut().filter(|r| r.status != ScenarioStatus::Skipped && posted(&r.name)) {
            result.notes.push(format!("the workload {note}"));
        }
        for finding in chaos.findings.iter_mut().filter(|f| posted(&f.check)) {
            finding.notes.push(format!("the workload {note}"));
        }
    }

    verdict.scenarios.extend(inspected.scenarios);
    verdict.scenarios.extend(chaos.scenarios);
    verdict.findings.extend(trial_findings);
    verdict.findings.extend(inspected.findings);
    verdict.findings.extend(chaos.findings);
    touched_by_exits(&mut verdict, record);
    if let Some(interruption) = &record.interrupted {
        not_run(&mut verdict, record, interruption);
    }
    name_checks(&mut verdict.scenarios, scenarios.users, &verdict.findings, target, record.vantage);
    verdict
}

/// A run interrupted before a check ran (or while it ran) did not test it.
fn not_run(verdict: &mut Verdict, record: &Record, interruption: &Interruption) {
    for result in verdict.scenarios.iter_mut().filter(|r| r.status != ScenarioStatus::Skipped) {
        let name = result.name.as_str();
        let ran = record.users.users.vus.iter().any(|v| v.scenario == name)
            || record.inspections.iter().any(|r| r.inspection == name)
            || record.experiments.iter().any(|r| r.experiment == name);
        if !ran {
            result.status = ScenarioStatus::Skipped;
            result.reason = Some(interruption.to_string());
        }
    }
}

/// How long before replicheck noticed an exit the replica may already have been gone.
const EXIT_SLACK_MS: f64 = 250.0;

/// What a replica's unexpected exit touched proves nothing: every scenario or inspection
/// that sent it a request from shortly before the exit on, or found something of it, and
/// the experiment it went during, becomes `error` with the exit as its cause, and its
/// findings go.
fn touched_by_exits(verdict: &mut Verdict, record: &Record) {
    let users = record.users.users.vus.iter().chain(&record.users.evidence.vus);
    let adapted = record.adapted.iter().flat_map(|a| a.users.vus.iter().chain(&a.evidence.vus));
    let trial = record.trial.iter().flat_map(|(browser, adapted)| [browser, adapted]);
    let users: Vec<&VuRecord> = users.chain(adapted).chain(trial).collect();
    for exit in &record.exits {
        let since = exit.at_ms - EXIT_SLACK_MS;
        let mut touched: Vec<&str> = users
            .iter()
            .filter(|vu| vu.steps.iter().flat_map(|s| &s.requests).any(|r| r.planned == exit.replica.id && r.end_ms >= since))
            .map(|vu| vu.scenario.as_str())
            .collect();
        let asked = record.inspections.iter().filter(|run| run.answers.iter().any(|a| a.replica == exit.replica && a.at_ms >= since));
        touched.extend(asked.map(|run| run.inspection.as_str()));
        touched.extend(exit.during.as_deref());
        let found = verdict.findings.iter().filter(|f| f.producer == exit.replica || f.consumer == exit.replica);
        let found: Vec<String> = found.flat_map(|f| [f.check.clone(), f.scenario.clone()]).collect();
        touched.extend(found.iter().map(String::as_str));
        for result in verdict.scenarios.iter_mut().filter(|r| touched.contains(&r.name.as_str())) {
            result.status = ScenarioStatus::Error;
            result.reason = Some(exit.summary());
        }
        verdict.findings.retain(|f| !touched.contains(&f.check.as_str()) && !touched.contains(&f.scenario.as_str()));
    }
}

/// A check that runs twice, from its recorded runs: one that never ran says so.
fn twice(first: Option<Assessment>, second: Option<Assessment>, seed: u64, reproduce: &dyn Fn(&str) -> String, name: &str) -> (Vec<Finding>, ScenarioResult) {
    let first = first.unwrap_or_else(|| Assessment {
        error: Some("the run has no record of this check".into()),
        ..Assessment::default()
    });
    super::twice::judge(&first, second.as_ref(), seed, reproduce, name)
}

/// Records which kinds each roster entry looked for, which it could not exercise here
/// and why, and any kind it found besides.
fn name_checks(results: &mut [ScenarioResult], users: &[Scenario], findings: &[Finding], target: &Target, vantage: Vantage) {
    for result in results {
        let (mut checks, untested) = if let Some(scenario) = users.iter().find(|s| s.name == result.name) {
            let checks = super::scenario_checks(scenario);
            let untested = uncrossed(result, &checks);
            if let Some(first) = untested.first() {
                result.reason = Some(first.reason.clone());
            }
            (checks.clone(), untested)
        } else if let Some(kind) = InspectionKind::from_name(&result.name) {
            (kind.checks(), kind.untested(target, vantage))
        } else if let Some(kind) = ExperimentKind::from_name(&result.name) {
            (kind.checks(), kind.untested(target))
        } else {
            (Vec::new(), Vec::new())
        };
        let untested: Vec<Untested> = if result.status == ScenarioStatus::Skipped { Vec::new() } else { untested };
        checks.retain(|kind| !untested.iter().any(|u| u.kind == *kind));
        checks.extend(findings.iter().filter(|f| f.check == result.name).map(|f| f.kind));
        checks.sort();
        checks.dedup();
        result.checks = checks;
        result.untested = untested;
    }
}

/// A scenario whose artifacts never reached another replica (a load balancer that is not
/// ours may route a user's every request to one instance) asked no cross-replica question.
pub(crate) fn uncrossed(result: &ScenarioResult, checks: &[FindingKind]) -> Vec<Untested> {
    let hands_off = checks != [FindingKind::ExpectationFailed];
    if !hands_off || result.status != ScenarioStatus::Passed || result.handoffs_crossed > 0 {
        return Vec::new();
    }
    let reason = match result.reason.as_deref() {
        // A transport that needs affinity got it: that is its requirement met, not a gap.
        None | Some(super::UNCROSSED) if checks.contains(&FindingKind::AffinityRequired) => {
            "every request of the transport stayed on the replica that opened it, as this routing keeps it (sticky sessions): the flow's requirement is met".to_owned()
        }
        reason => reason.unwrap_or(super::UNCROSSED).to_owned(),
    };
    checks.iter().map(|&kind| Untested { kind, reason: reason.clone() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_whose_artifacts_never_crossed_tested_nothing() {
        let mut result = ScenarioResult::skipped("cache", String::new());
        result.status = ScenarioStatus::Passed;
        result.reason = None;
        let checks = [FindingKind::CacheDivergent];
        let untested = uncrossed(&result, &checks);
        assert_eq!(untested.iter().map(|u| u.kind).collect::<Vec<_>>(), checks);
        assert!(untested[0].reason.contains("crossed"), "{untested:?}");

        result.handoffs_crossed = 1;
        assert!(uncrossed(&result, &checks).is_empty());
        // A scenario that hands nothing off asks no cross-replica question to miss.
        result.handoffs_crossed = 0;
        assert!(uncrossed(&result, &[FindingKind::ExpectationFailed]).is_empty());
    }
}

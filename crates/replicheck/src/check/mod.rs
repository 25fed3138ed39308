//! The checker: decides what the history shows. It reads the history and the control
//! runs, never the network, so a fixed checker can re-read a stored history.
//!
//! Checking is two passes around one more execution:
//! 1. `triage` reads the main history: every virtual user that failed where an artifact
//!    crossed replicas is a candidate; a failure on one replica alone is the app's own.
//! 2. `plan::evidence` derives, for each candidate (`wanted`), a control plan (the same
//!    steps pinned to the producer) and a reproduction (the same steps on the same routes).
//! 3. `judge` turns candidates into findings only when the control passed and the failure
//!    reproduced. A control that fails makes the scenario `baseline-failed`, never a finding.
//!
//! `recorded` judges a whole run (users, inspections, the origin trial, experiments) from
//! its record, once everything has run; a stored record is judged again the same way.
//! `explored` judges the schedules exploration runs, with the same placing of failures.
//! `background` judges what the replicas delivered to the run's sink during the
//! background-work experiments, each against one replica alone; `live` the broadcast
//! experiment's subscribers, and `limits` the limits experiment's series of tries.
//!
//! Findings are built two ways, because their evidence comes two ways: a user's failure
//! (`Candidate` here, for planned users and explored schedules) waits for control and
//! reproduction runs planned from it, and is placed by step index and declared artifact;
//! an experiment's or inspection's (`twice::Candidate`) carries its control inside the
//! run that showed it (the same workload without the disruption, or the question asked
//! otherwise) and is confirmed by running the whole check again, matched by kind,
//! scenario and step name.

pub mod adapt;
pub mod background;
pub mod chaos;
pub mod explored;
pub mod finding;
pub mod inspect;
pub mod limits;
pub mod live;
pub mod merge;
pub mod recorded;
pub mod telemetry;
pub mod twice;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::history::{History, Observed, Outcome, Phase, StepRecord, VuRecord};
use crate::plan::VuPlan;
use crate::plan::evidence::{EvidencePlans, Wanted};
use crate::scenario::{Artifact, Scenario};
use finding::{ArtifactEvidence, Control, ControlResult, Finding, FindingKind};
pub use crate::vocab::finding::Untested;

/// A cross-replica failure that may be a finding, waiting for its evidence.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub scenario: String,
    pub step: usize,
    pub step_name: String,
    pub producer: Incarnation,
    pub consumer: Incarnation,
    pub artifact: Option<Artifact>,
    pub evidence: ArtifactEvidence,
    pub expected: String,
    pub observed: Observed,
    /// The first virtual user that failed this way.
    pub vu: u32,
    /// When its failing request started.
    pub at_ms: Option<f64>,
    pub occurrences: u32,
}

impl Candidate {
    /// The finding this candidate is, once its control passed and it happened again: the
    /// one way from a user's failure to a finding, for planned users and explored schedules.
    pub fn finding(&self, kind: FindingKind, check: &str, control: Control, seed: u64, reproduce: String) -> Finding {
        Finding {
            id: String::new(),
            kind,
            check: check.to_owned(),
            scenario: self.scenario.clone(),
            step: self.step_name.clone(),
            producer: self.producer,
            consumer: self.consumer,
            artifact: self.evidence.clone(),
            expected: self.expected.clone(),
            observed: self.observed.clone(),
            control,
            reproduced: true,
            occurrences: self.occurrences,
            vu: Some(self.vu),
            at_ms: self.at_ms,
            after: None,
            notes: Vec::new(),
            observations: Vec::new(),
            accepted: None,
            minimal_schedule: None,
            seed,
            reproduce,
        }
    }
}

/// What the main history says, per scenario and in candidates.
#[derive(Debug, Default)]
pub struct Triage {
    pub candidates: Vec<Candidate>,
    pub scenarios: BTreeMap<String, Tally>,
}

/// Counts for one scenario in the main history.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub vus: u32,
    pub requests: usize,
    pub handoffs_crossed: u32,
    pub handoffs_same: u32,
    /// Handoffs whose write also reached the reading replica (behind a load balancer
    /// replicheck cannot steer): a pass there proves nothing.
    pub handoffs_blurred: u32,
    /// A failure with every request on one replica: the app fails on a single instance,
    /// unless the same steps pass when asked of that replica again (`judge`).
    pub single_replica_failure: Option<SingleReplicaFailure>,
    /// A request that got no answer to judge.
    pub error: Option<String>,
}

/// A user whose steps all went to one replica and failed there.
#[derive(Debug, Clone)]
pub struct SingleReplicaFailure {
    pub vu: u32,
    /// None when it failed before any request was answered.
    pub replica: Option<ReplicaId>,
    pub reason: String,
}

impl Triage {
    /// The users to ask again with every step on the replica they failed on alone: the
    /// first such user of each scenario.
    pub fn asked_alone(&self) -> Vec<(u32, ReplicaId)> {
        self.scenarios.values().filter_map(|t| t.single_replica_failure.as_ref()).filter_map(|f| Some((f.vu, f.replica?))).collect()
    }
}

pub fn triage(scenarios: &[Scenario], history: &History) -> Triage {
    let mut triage = Triage::default();
    let mut groups: BTreeMap<(String, usize, Incarnation, Incarnation), Candidate> = BTreeMap::new();
    for record in history.vus.iter().filter(|v| matches!(v.phase, Phase::Main | Phase::Adapted)) {
        let Some(scenario) = scenarios.iter().find(|s| s.name == record.scenario) else { continue };
        let tally = triage.scenarios.entry(record.scenario.clone()).or_default();
        tally.vus += 1;
        tally.requests += record.steps.iter().map(|s| s.requests.len()).sum::<usize>();
        count_handoffs(scenario, record, tally);
        let Some(failed) = record.first_failure() else { continue };
        match &failed.outcome {
            Outcome::Error { message } => {
                tally.error.get_or_insert_with(|| format!("vu {} step `{}`: {message}", record.vu, failed.name));
            }
            Outcome::Failed { expected, observed } => match locate(scenario, record, failed) {
                Locus::Handoff {
                    producer_step,
                    producer,
                    consumer,
                    artifact,
                } => {
                    let key = (record.scenario.clone(), failed.index, producer, consumer);
                    groups
                        .entry(key)
                        .and_modify(|c| c.occurrences += 1)
                        .or_insert_with(|| Candidate {
                            scenario: record.scenario.clone(),
                            step: failed.index,
                            step_name: failed.name.clone(),
                            producer,
                            consumer,
                            evidence: evidence(record, producer_step, failed.index, artifact.as_ref()),
                            artifact,
                            expected: expected.clone(),
                            observed: observed.clone(),
                            vu: record.vu,
                            at_ms: failed.requests.last().map(|r| r.start_ms),
                            occurrences: 1,
                        });
                }
                Locus::OneReplica(replica) => {
                    let on = replica.map_or_else(|| "before any request".to_owned(), |r| format!("with every request on {r}"));
                    tally.single_replica_failure.get_or_insert_with(|| SingleReplicaFailure {
                        vu: record.vu,
                        replica: replica.map(|r| r.id),
                        reason: format!("vu {} failed step `{}` {on}: {observed}", record.vu, failed.name),
                    });
                }
            },
            Outcome::Passed => {}
        }
    }
    triage.candidates = groups.into_values().collect();
    let order = |name: &str| scenarios.iter().position(|s| s.name == name);
    triage.candidates.sort_by_key(|c| (order(&c.scenario), c.step, c.producer, c.consumer));
    triage
}

/// Where a failure happened.
pub(crate) enum Locus {
    /// Every request up to the failure went to one replica (or none was sent): the app
    /// fails on a single instance.
    OneReplica(Option<Incarnation>),
    /// Something handed out by `producer` (at `producer_step`) did not work on `consumer`.
    Handoff {
        producer_step: usize,
        producer: Incarnation,
        consumer: Incarnation,
        /// The artifact the failed step consumes, when that is what crossed.
        artifact: Option<Artifact>,
    },
}

pub(crate) fn locate(scenario: &Scenario, record: &VuRecord, failed: &StepRecord) -> Locus {
    let served: Vec<(usize, Incarnation)> = record.steps[..=failed.index]
        .iter()
        .filter_map(|s| s.served_by.map(|r| (s.index, r)))
        .collect();
    // The replica that answered last: the failed step's, or, when the step failed before
    // sending (no form to submit), the one whose page it worked on.
    let Some(&(_, consumer)) = served.last() else {
        return Locus::OneReplica(None);
    };
    if served.iter().all(|(_, r)| *r == consumer) {
        return Locus::OneReplica(Some(consumer));
    }
    let declared = scenario.steps[failed.index].consumes.as_ref().and_then(|artifact| {
        let step = scenario.producer_of(artifact, failed.index)?;
        let producer = record.steps.get(step)?.served_by?;
        (producer != consumer).then(|| (step, producer, artifact.clone()))
    });
    match declared {
        Some((producer_step, producer, artifact)) => Locus::Handoff {
            producer_step,
            producer,
            consumer,
            artifact: Some(artifact),
        },
        // Whatever crossed is not named: the most recent step served elsewhere handed it out.
        None => match served.iter().rev().find(|(_, r)| *r != consumer) {
            Some(&(producer_step, producer)) => Locus::Handoff {
                producer_step,
                producer,
                consumer,
                artifact: None,
            },
            None => Locus::OneReplica(Some(consumer)),
        },
    }
}

/// What the producing step handed out: the cookies it set and the values it captured,
/// with their shapes, and which of those cookies the failed step was handed anew.
pub(crate) fn evidence(record: &VuRecord, producer_step: usize, failed_step: usize, artifact: Option<&Artifact>) -> ArtifactEvidence {
    let produced = &record.steps[producer_step];
    // A step that set no cookie leans on those the user already held.
    let shapes = if produced.cookie_shapes.is_empty() {
        record.steps[..producer_step].iter().flat_map(|s| s.cookie_shapes.clone()).collect()
    } else {
        produced.cookie_shapes.clone()
    };
    let reissued = record
        .steps
        .iter()
        .find(|s| s.index == failed_step)
        .map(|failed| failed.set_cookies.iter().filter(|name| shapes.contains_key(*name)).cloned().collect())
        .unwrap_or_default();
    ArtifactEvidence {
        kind: artifact.map_or_else(|| "none".to_owned(), |a| a.0.clone()),
        cookies: produced.set_cookies.clone(),
        captured: produced.captured.clone(),
        shapes,
        reissued,
    }
}

pub(crate) fn count_handoffs(scenario: &Scenario, record: &VuRecord, tally: &mut Tally) {
    for step in &record.steps {
        let Some(artifact) = &scenario.steps[step.index].consumes else { continue };
        let Some(producer) = scenario.producer_of(artifact, step.index) else { continue };
        match (record.steps[producer].served_by, step.served_by) {
            // A write that also reached the consumer can make it pass there: no proof. (A
            // failure there is still one: the artifact the user kept came from elsewhere.)
            (Some(_), Some(c)) if record.steps[producer].also_reached.contains(&c.id) => tally.handoffs_blurred += 1,
            (Some(p), Some(c)) if p != c => tally.handoffs_crossed += 1,
            (Some(_), Some(_)) => tally.handoffs_same += 1,
            _ => {}
        }
    }
}

/// Reproductions that prove nothing: a write before the wanted step also reached its
/// consumer (behind a load balancer replicheck cannot steer), which can make the step pass
/// there. They are to run again, with values of their own, before judging.
pub fn blurred_reproductions<'p>(wanted: &[Wanted], plans: &'p EvidencePlans, evidence: &History) -> Vec<&'p VuPlan> {
    wanted
        .iter()
        .zip(&plans.reproductions)
        .filter(|(wanted, plan)| {
            evidence.vus.iter().find(|v| v.vu == plan.vu).is_some_and(|record| {
                record.steps.iter().take(wanted.step).any(|step| step.also_reached.contains(&wanted.consumer))
            })
        })
        .map(|(_, plan)| plan)
        .collect()
}

/// What the evidence plans are to test, one per candidate, in order.
pub fn wanted(candidates: &[Candidate]) -> Vec<Wanted> {
    candidates
        .iter()
        .map(|c| Wanted {
            vu: c.vu,
            step: c.step,
            producer: c.producer.id,
            consumer: c.consumer.id,
        })
        .collect()
}

/// How each scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ScenarioStatus {
    Passed,
    Failed,
    BaselineFailed,
    Error,
    Skipped,
}

impl ScenarioStatus {
    pub fn name(self) -> &'static str {
        match self {
            ScenarioStatus::Passed => "passed",
            ScenarioStatus::Failed => "failed",
            ScenarioStatus::BaselineFailed => "baseline-failed",
            ScenarioStatus::Error => "error",
            ScenarioStatus::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    pub status: ScenarioStatus,
    /// Why the scenario did not pass, or a note about a pass (no handoff crossed).
    pub reason: Option<String>,
    pub vus: u32,
    pub requests: usize,
    pub handoffs_crossed: u32,
    /// Cross-replica failures whose control passed but that did not happen again.
    pub unconfirmed: u32,
    /// The finding kinds this scenario, inspection or experiment looks for.
    #[serde(default)]
    pub checks: Vec<FindingKind>,
    /// Kinds it looks for but could not exercise here, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untested: Vec<Untested>,
    /// How the question was asked, and what was seen but not judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}


impl ScenarioResult {
    /// Whether it ran in full: not skipped, not stopped by a failing baseline or an
    /// error, and every kind it looks for exercised.
    pub fn fully_tested(&self) -> bool {
        matches!(self.status, ScenarioStatus::Passed | ScenarioStatus::Failed) && self.untested.is_empty()
    }
}

impl ScenarioResult {
    /// A scenario's result from what its users did; the kinds it checks come later.
    pub fn tallied(name: &str, status: ScenarioStatus, reason: Option<String>, tally: &Tally, unconfirmed: u32) -> Self {
        Self {
            name: name.to_owned(),
            status,
            reason,
            vus: tally.vus,
            requests: tally.requests,
            handoffs_crossed: tally.handoffs_crossed,
            unconfirmed,
            checks: Vec::new(),
            untested: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn skipped(name: &str, reason: String) -> Self {
        Self {
            name: name.to_owned(),
            status: ScenarioStatus::Skipped,
            reason: Some(reason),
            vus: 0,
            requests: 0,
            handoffs_crossed: 0,
            unconfirmed: 0,
            checks: Vec::new(),
            untested: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Why a scenario that passed asked no cross-replica question.
pub(crate) const UNCROSSED: &str = "no artifact crossed replicas under this routing";

/// The kinds a scenario's handoffs can show: the kind of each artifact it consumes, or
/// `expectation-failed` for a scenario that names none.
pub fn scenario_checks(scenario: &Scenario) -> Vec<FindingKind> {
    let mut kinds: Vec<FindingKind> = scenario.steps.iter().filter_map(|s| s.consumes.as_ref()).map(|a| FindingKind::for_artifact(Some(a))).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        kinds.push(FindingKind::ExpectationFailed);
    }
    kinds
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub findings: Vec<Finding>,
    pub scenarios: Vec<ScenarioResult>,
}

/// Decides findings and scenario statuses from the triage and the evidence runs.
/// `scenarios` is every scenario of the run in order, with the reason it was skipped.
pub fn judge(
    scenarios: &[(String, Option<String>)],
    triage: &Triage,
    plans: &EvidencePlans,
    evidence: &History,
    seed: u64,
    reproduce: &dyn Fn(&str) -> String,
) -> Verdict {
    let record = |vu: u32| evidence.vus.iter().find(|r| r.vu == vu);
    let mut findings = Vec::new();
    let mut baseline: BTreeMap<&str, String> = BTreeMap::new();
    let mut errors: BTreeMap<&str, String> = BTreeMap::new();
    let mut unconfirmed: BTreeMap<&str, u32> = BTreeMap::new();
    for (index, (candidate, (control_plan, reproduction_plan))) in triage.candidates.iter().zip(plans.controls.iter().zip(&plans.reproductions)).enumerate() {
        let scenario = candidate.scenario.as_str();
        let (Some(control), Some(reproduction)) = (record(control_plan.vu), record(reproduction_plan.vu)) else {
            errors.entry(scenario).or_insert_with(|| "an evidence run did not finish".into());
            continue;
        };
        // Each side must serve the flow by itself: the producer's replica, then the
        // consumer's. A replica that fails alone shows no cross-replica fault.
        let mut sides = vec![(Some(control), candidate.producer.id, "the control run")];
        if let Some(plan) = plans.consumer_controls.get(index) {
            sides.push((record(plan.vu), candidate.consumer.id, "the consumer's control run"));
        }
        match sides.into_iter().find_map(|(record, replica, which)| alone(record, replica, which)) {
            Some(Alone::Error(why)) => {
                errors.entry(scenario).or_insert(why);
                continue;
            }
            Some(Alone::Failed(why)) => {
                baseline.entry(scenario).or_insert(why);
                continue;
            }
            None => {}
        }
        // The same step, on the same consumer, answering the same status: a different
        // failure (an overloaded replica's 503) is not this one happening again.
        let reproduced = reproduction.first_failure().is_some_and(|failed| {
            let consumer = reproduction.steps[..=failed.index].iter().rev().find_map(|s| s.served_by);
            let same_status = matches!(&failed.outcome, Outcome::Failed { observed, .. } if observed.status == candidate.observed.status);
            failed.index == candidate.step && same_status && consumer.map(|r| r.id) == Some(candidate.consumer.id)
        });
        if !reproduced {
            *unconfirmed.entry(scenario).or_default() += 1;
            continue;
        }
        let control = Control {
            result: ControlResult::Passed,
            detail: format!("the same steps, every one on {}, passed", candidate.producer.id),
            pinned_to: Some(candidate.producer.id),
            vu: Some(control_plan.vu),
        };
        let kind = FindingKind::for_artifact(candidate.artifact.as_ref());
        findings.push(candidate.finding(kind, &candidate.scenario, control, seed, reproduce(&candidate.scenario)));
    }
    let mut results = Vec::new();
    for (name, skipped) in scenarios {
        let tally = triage.scenarios.get(name).cloned().unwrap_or_default();
        let has_findings = findings.iter().any(|f| &f.scenario == name);
        let (alone, passing) = match &tally.single_replica_failure {
            Some(failure) => single_replica(failure, plans, evidence),
            None => (None, None),
        };
        let (status, reason) = if let Some(reason) = skipped {
            (ScenarioStatus::Skipped, Some(reason.clone()))
        } else if let Some(reason) = alone.or_else(|| baseline.get(name.as_str()).cloned()) {
            (ScenarioStatus::BaselineFailed, Some(reason))
        } else if let Some(reason) = tally.error.clone().or_else(|| errors.get(name.as_str()).cloned()) {
            (ScenarioStatus::Error, Some(reason))
        } else if has_findings {
            (ScenarioStatus::Failed, None)
        } else if tally.handoffs_crossed == 0 && tally.handoffs_same > 0 {
            (ScenarioStatus::Passed, Some(UNCROSSED.into()))
        } else if tally.handoffs_blurred > 0 {
            let note = format!(
                "{} handoff(s) prove nothing: the load balancer sent the write to the reading instance too before it landed where planned",
                tally.handoffs_blurred
            );
            (ScenarioStatus::Passed, Some(note))
        } else {
            (ScenarioStatus::Passed, None)
        };
        let mut result = ScenarioResult::tallied(name, status, reason, &tally, unconfirmed.get(name.as_str()).copied().unwrap_or(0));
        result.notes.extend(passing);
        results.push(result);
    }
    // A scenario that fails on one replica has no trustworthy cross-replica findings.
    findings.retain(|f| results.iter().any(|r| r.name == f.scenario && r.status == ScenarioStatus::Failed));
    for (index, finding) in findings.iter_mut().enumerate() {
        finding.id = format!("F{}", index + 1);
    }
    Verdict {
        findings,
        scenarios: results,
    }
}

/// A user's failure on one replica alone: the baseline failure it makes (when the same
/// steps, asked of that replica again, failed again or could not be asked), or the note
/// that tells it (when they passed: a passing fault of a busy replica, such as a store
/// timeout, says nothing of the app on one instance, nor across instances).
fn single_replica(failure: &SingleReplicaFailure, plans: &EvidencePlans, evidence: &History) -> (Option<String>, Option<String>) {
    let again = plans.again_alone.iter().find(|(of, _)| *of == failure.vu).map(|(_, plan)| plan);
    let passed = again.and_then(|plan| evidence.vus.iter().find(|r| r.vu == plan.vu)).is_some_and(|r| r.first_failure().is_none());
    match (passed, failure.replica) {
        (true, Some(replica)) => (
            None,
            Some(format!("{}; asked again with every step on {replica}, the same steps passed: a passing fault of that replica, told and not judged", failure.reason)),
        ),
        _ => (Some(failure.reason.clone()), None),
    }
}

/// How a control with every step on one replica went wrong.
enum Alone {
    /// It failed a step: the replica cannot serve the flow by itself.
    Failed(String),
    /// It got no answer to judge, or did not run.
    Error(String),
}

/// What `which` control, every step on `replica`, says against a cross-replica finding;
/// None when it passed.
fn alone(record: Option<&VuRecord>, replica: ReplicaId, which: &str) -> Option<Alone> {
    let Some(record) = record else { return Some(Alone::Error(format!("{which} (every step on {replica}) did not finish"))) };
    let step = record.first_failure()?;
    Some(match &step.outcome {
        Outcome::Error { message } => Alone::Error(format!("{which} (every step on {replica}), step `{}`: {message}", step.name)),
        Outcome::Failed { observed, .. } => Alone::Failed(format!("{which} (every step on {replica}) failed step `{}` too: {observed}", step.name)),
        Outcome::Passed => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::routing::RoutingPolicy;
    use crate::vocab::replica::ReplicaId;
    use crate::plan::evidence::evidence_plans;
    use crate::plan::Plan;
    use crate::history::RequestRecord;
    use crate::scenario::fixtures::demo_scenarios as scenarios;

    fn on(replica: u16) -> Incarnation {
        Incarnation::first(ReplicaId(replica))
    }

    fn step(index: usize, replica: u16, outcome: Outcome) -> StepRecord {
        StepRecord {
            index,
            name: format!("step {index}"),
            planned: ReplicaId(replica),
            served_by: Some(on(replica)),
            also_reached: Vec::new(),
            requests: vec![RequestRecord {
                method: "GET".into(),
                path: "/".into(),
                planned: ReplicaId(replica),
                served_by: Some(on(replica)),
                status: Some(200),
                location: None,
                set_cookies: vec!["demo.auth".into()],
                start_ms: 0.0,
                end_ms: 1.0,
                error: None,
            }],
            outcome,
            set_cookies: vec!["demo.auth".into()],
            cookie_shapes: Default::default(),
            captured: Vec::new(),
        }
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            expected: "status 200".into(),
            observed: Observed {
                status: Some(302),
                reason: "turned away".into(),
                ..Observed::default()
            },
        }
    }

    /// A login user: form and sign-in on `home`, the protected page on `away`.
    fn login(phase: Phase, vu: u32, home: u16, away: u16, last: Outcome) -> VuRecord {
        VuRecord {
            phase,
            vu,
            iteration: 0,
            scenario: "login".into(),
            steps: vec![step(0, home, Outcome::Passed), step(1, home, Outcome::Passed), step(2, away, last)],
        }
    }

    fn plan(vus: &[(u32, [u16; 3])]) -> Plan {
        Plan {
            seed: 1,
            replicas: 2,
            routing: RoutingPolicy::Random,
            vus: vus
                .iter()
                .map(|(vu, routes)| crate::plan::VuPlan {
                    vu: *vu,
                    scenario: "login".into(),
                    nonce: "n".into(),
                    routes: routes.iter().map(|r| ReplicaId(*r)).collect(),
                })
                .collect(),
            experiments: Vec::new(),
        }
    }

    fn roster() -> Vec<(String, Option<String>)> {
        vec![("login".into(), None), ("session".into(), Some("the target has no [session] section".into()))]
    }

    /// The verdict on `main`, with `evidence` giving the records of each candidate's
    /// control and reproduction; the consumer's control passes unless `consumer` says how
    /// it ended.
    fn verdict_with(main: Vec<VuRecord>, evidence: impl Fn(u32, u32) -> Vec<VuRecord>, consumer: Outcome) -> (Triage, Verdict) {
        verdict_asking_again(main, evidence, consumer, failed())
    }

    /// As `verdict_with`, a user that failed on r1 alone asked again there ending as
    /// `again` says.
    fn verdict_asking_again(main: Vec<VuRecord>, evidence: impl Fn(u32, u32) -> Vec<VuRecord>, consumer: Outcome, again: Outcome) -> (Triage, Verdict) {
        let scenarios = scenarios();
        let plan = plan(&main.iter().map(|v| (v.vu, [0, 0, 1])).collect::<Vec<_>>());
        let triage = triage(&scenarios, &History { vus: main, ..History::default() });
        let plans = evidence_plans(&plan.vus, crate::plan::next_vu(&plan), &wanted(&triage.candidates), &triage.asked_alone());
        let mut vus: Vec<VuRecord> = plans.controls.iter().zip(&plans.reproductions).flat_map(|(c, r)| evidence(c.vu, r.vu)).collect();
        vus.extend(plans.consumer_controls.iter().map(|c| login(Phase::Control, c.vu, 1, 1, consumer.clone())));
        vus.extend(plans.again_alone.iter().map(|(_, plan)| login(Phase::Control, plan.vu, 1, 1, again.clone())));
        let evidence = History { vus, ..History::default() };
        let verdict = judge(&roster(), &triage, &plans, &evidence, 1, &|s| format!("replicheck run t.toml --scenarios {s}"));
        (triage, verdict)
    }

    fn verdict(main: Vec<VuRecord>, evidence: impl Fn(u32, u32) -> Vec<VuRecord>) -> (Triage, Verdict) {
        verdict_with(main, evidence, Outcome::Passed)
    }

    #[test]
    fn a_replica_that_fails_the_flow_alone_shows_no_cross_replica_fault() {
        let main = vec![login(Phase::Main, 0, 0, 1, failed())];
        let evidence = |control, reproduce| vec![login(Phase::Control, control, 0, 0, Outcome::Passed), login(Phase::Reproduce, reproduce, 0, 1, failed())];
        let (_, judged) = verdict_with(main.clone(), evidence, failed());
        assert!(judged.findings.is_empty(), "{:?}", judged.findings);
        assert_eq!(judged.scenarios[0].status, ScenarioStatus::BaselineFailed);
        let reason = judged.scenarios[0].reason.as_deref().unwrap_or_default();
        assert!(reason.contains("consumer's control run (every step on r1) failed step `step 2`"), "{reason}");

        let error = Outcome::Error { message: "no answer within 1s".into() };
        let (_, judged) = verdict_with(main, evidence, error);
        assert!(judged.findings.is_empty());
        assert_eq!(judged.scenarios[0].status, ScenarioStatus::Error);
    }

    #[test]
    fn a_pass_where_the_write_also_reached_the_reader_proves_nothing_but_a_failure_still_counts() {
        let mut blurred = login(Phase::Main, 0, 0, 1, Outcome::Passed);
        blurred.steps[1].also_reached = vec![ReplicaId(1)];
        let (_, judged) = verdict(vec![blurred], |_, _| Vec::new());
        let result = &judged.scenarios[0];
        assert_eq!((result.status, result.handoffs_crossed), (ScenarioStatus::Passed, 0));
        assert!(result.reason.as_deref().unwrap_or("").contains("1 handoff(s) prove nothing"), "{result:?}");

        let mut failing = login(Phase::Main, 0, 0, 1, failed());
        failing.steps[1].also_reached = vec![ReplicaId(1)];
        let (triage, _) = verdict(vec![failing], |control, reproduce| {
            vec![login(Phase::Control, control, 0, 0, Outcome::Passed), login(Phase::Reproduce, reproduce, 0, 1, failed())]
        });
        assert_eq!(triage.candidates.len(), 1, "the cookie the user kept came from r0, and r1 refused it");
    }

    #[test]
    fn a_reproduction_whose_write_also_reached_the_consumer_is_to_run_again() {
        let scenarios = scenarios();
        let main = vec![login(Phase::Main, 0, 0, 1, failed())];
        let triage = triage(&scenarios, &History { vus: main, ..History::default() });
        let plan = plan(&[(0, [0, 0, 1])]);
        let plans = evidence_plans(&plan.vus, crate::plan::next_vu(&plan), &wanted(&triage.candidates), &[]);
        let reproduction = |reached: Vec<ReplicaId>| {
            let mut record = login(Phase::Reproduce, plans.reproductions[0].vu, 0, 1, Outcome::Passed);
            record.steps[1].also_reached = reached;
            History { vus: vec![record], ..History::default() }
        };
        let blurred = blurred_reproductions(&wanted(&triage.candidates), &plans, &reproduction(vec![ReplicaId(1)]));
        assert_eq!(blurred.iter().map(|p| p.vu).collect::<Vec<_>>(), [plans.reproductions[0].vu]);
        assert!(blurred_reproductions(&wanted(&triage.candidates), &plans, &reproduction(Vec::new())).is_empty());
    }

    #[test]
    fn a_handoff_that_fails_only_across_replicas_is_a_finding_with_its_evidence() {
        let main = vec![login(Phase::Main, 0, 0, 1, failed()), login(Phase::Main, 1, 0, 1, failed())];
        let (triage, verdict) = verdict(main, |control, reproduce| {
            vec![login(Phase::Control, control, 0, 0, Outcome::Passed), login(Phase::Reproduce, reproduce, 0, 1, failed())]
        });
        assert_eq!(triage.candidates.len(), 1, "two users failing the same way are one candidate");
        let [finding] = verdict.findings.as_slice() else { panic!("{:?}", verdict.findings) };
        assert_eq!(finding.kind, FindingKind::AuthCookieRejected);
        assert_eq!((finding.producer, finding.consumer), (on(0), on(1)));
        assert_eq!(finding.control.pinned_to, Some(ReplicaId(0)));
        assert_eq!(finding.occurrences, 2);
        assert_eq!(finding.artifact.cookies, ["demo.auth"]);
        assert_eq!(finding.reproduce, "replicheck run t.toml --scenarios login");
        assert_eq!(verdict.scenarios[0].status, ScenarioStatus::Failed);
        assert_eq!(verdict.scenarios[1].status, ScenarioStatus::Skipped);
    }

    #[test]
    fn evidence_plans_pin_the_control_to_the_producer_and_keep_the_routes_for_the_reproduction() {
        let scenarios = scenarios();
        let main = History { vus: vec![login(Phase::Main, 0, 0, 1, failed())], ..History::default() };
        let plan = plan(&[(0, [0, 0, 1])]);
        let plans = evidence_plans(&plan.vus, crate::plan::next_vu(&plan), &wanted(&triage(&scenarios, &main).candidates), &[]);
        assert_eq!(plans.controls[0].routes, [ReplicaId(0); 3]);
        assert_eq!(plans.reproductions[0].routes, plan.vus[0].routes);
        assert!(plans.controls[0].vu > 0 && plans.reproductions[0].vu != plans.controls[0].vu);
    }

    #[test]
    fn a_failing_control_makes_the_scenario_baseline_failed_and_no_finding() {
        let main = vec![login(Phase::Main, 0, 0, 1, failed())];
        let (_, verdict) = verdict(main, |control, reproduce| {
            vec![login(Phase::Control, control, 0, 0, failed()), login(Phase::Reproduce, reproduce, 0, 1, failed())]
        });
        assert!(verdict.findings.is_empty());
        assert_eq!(verdict.scenarios[0].status, ScenarioStatus::BaselineFailed);
        assert!(verdict.scenarios[0].reason.as_deref().unwrap().contains("every step on r0"), "{:?}", verdict.scenarios[0]);
    }

    #[test]
    fn a_failure_that_does_not_happen_again_is_unconfirmed_not_a_finding() {
        let main = vec![login(Phase::Main, 0, 0, 1, failed())];
        let (_, verdict) = verdict(main, |control, reproduce| {
            vec![login(Phase::Control, control, 0, 0, Outcome::Passed), login(Phase::Reproduce, reproduce, 0, 1, Outcome::Passed)]
        });
        assert!(verdict.findings.is_empty());
        assert_eq!(verdict.scenarios[0].status, ScenarioStatus::Passed);
        assert_eq!(verdict.scenarios[0].unconfirmed, 1);
    }

    #[test]
    fn a_reproduction_that_fails_differently_does_not_confirm() {
        let overloaded = Outcome::Failed {
            expected: "status 200".into(),
            observed: Observed {
                status: Some(503),
                reason: "expected status 200".into(),
                ..Observed::default()
            },
        };
        let main = vec![login(Phase::Main, 0, 0, 1, failed())];
        let (_, verdict) = verdict(main, |control, reproduce| {
            vec![login(Phase::Control, control, 0, 0, Outcome::Passed), login(Phase::Reproduce, reproduce, 0, 1, overloaded.clone())]
        });
        assert!(verdict.findings.is_empty());
        assert_eq!(verdict.scenarios[0].unconfirmed, 1);
    }

    #[test]
    fn a_failure_on_one_replica_is_the_apps_own() {
        let main = vec![login(Phase::Main, 0, 1, 1, failed()), login(Phase::Main, 1, 0, 1, failed())];
        let (triage, verdict) = verdict(main, |control, reproduce| {
            vec![login(Phase::Control, control, 0, 0, Outcome::Passed), login(Phase::Reproduce, reproduce, 0, 1, failed())]
        });
        assert_eq!(triage.candidates.len(), 1);
        // Even with a passing control elsewhere, a scenario that fails on a single replica
        // has no trustworthy cross-replica findings.
        assert!(verdict.findings.is_empty());
        assert_eq!(verdict.scenarios[0].status, ScenarioStatus::BaselineFailed);
        assert!(verdict.scenarios[0].reason.as_deref().unwrap().contains("with every request on r1"));
    }

    #[test]
    fn a_failure_on_one_replica_that_passes_when_asked_again_there_is_told_and_judges_nothing() {
        let main = vec![login(Phase::Main, 0, 1, 1, failed()), login(Phase::Main, 1, 0, 1, failed())];
        let (triage, verdict) = verdict_asking_again(
            main,
            |control, reproduce| vec![login(Phase::Control, control, 0, 0, Outcome::Passed), login(Phase::Reproduce, reproduce, 0, 1, failed())],
            Outcome::Passed,
            Outcome::Passed,
        );
        assert_eq!(triage.asked_alone(), [(0, ReplicaId(1))]);
        // r1 serves the flow alone after all: the cross-replica failure stands, proven as
        // any other, and the passing fault is told.
        assert_eq!(verdict.scenarios[0].status, ScenarioStatus::Failed, "{:?}", verdict.scenarios[0]);
        assert_eq!(verdict.findings.len(), 1);
        assert!(verdict.scenarios[0].notes.iter().any(|n| n.contains("with every request on r1") && n.contains("the same steps passed")), "{:?}", verdict.scenarios[0].notes);
    }

    #[test]
    fn a_failure_after_an_unnamed_crossing_is_located_at_the_step_served_elsewhere() {
        // The form came from r1, sign-in and the protected page from r0: the auth cookie
        // did not cross, but something the form page handed out did.
        let mut record = login(Phase::Main, 0, 0, 0, failed());
        record.steps[0] = step(0, 1, Outcome::Passed);
        let scenarios = scenarios();
        let triage = triage(&scenarios, &History { vus: vec![record], ..History::default() });
        let [candidate] = triage.candidates.as_slice() else { panic!() };
        assert_eq!((candidate.producer, candidate.consumer), (on(1), on(0)));
        assert_eq!(candidate.artifact, None);
        assert_eq!(FindingKind::for_artifact(candidate.artifact.as_ref()), FindingKind::ExpectationFailed);
    }

    #[test]
    fn an_unanswered_request_makes_the_scenario_an_error() {
        let error = Outcome::Error { message: "no answer within 1s".into() };
        let (_, verdict) = verdict(vec![login(Phase::Main, 0, 0, 1, error)], |_, _| Vec::new());
        assert_eq!(verdict.scenarios[0].status, ScenarioStatus::Error);
        assert!(verdict.scenarios[0].reason.as_deref().unwrap().contains("no answer within 1s"));
    }
}

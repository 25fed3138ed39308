//! Chaos findings: what an experiment's record shows. Every failure is explained by the
//! disruption it met (a request in flight when SIGTERM arrived, a request that reached a
//! terminating replica while the balancer still routed to it, an artifact used across a
//! restart), or it is unexplained and the experiment is an error. A finding needs the
//! experiment's control to have passed, and the experiment's second run to show it again.
//! A cold start's control is the same users after a staggered start, paired user by user:
//! an artifact refused across replicas after both starts is the scenarios' question. A step
//! that failed the same way under the experiment's load without the disruption is the
//! load's. After a store restart, a step the app never answered shows lost data only when a
//! fresh user of its flow then passed on the same replica.
//!
//! Readiness is judged by the order of answers, never by one sample: it is stale only when
//! it said ready after the same replica had failed a real request it served before, and
//! premature only when it said ready after a new replica had failed a page it serves later.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::background::{self, Work};
use super::finding::{ArtifactEvidence, FindingKind};
use super::twice::{Assessment, Candidate};
use crate::chaos::experiment::{PAGE_SCENARIO, SLOW_SCENARIO, STALE_SAMPLES, STORE_SCENARIO, stale_window};
use crate::chaos::{ExperimentKind, ExperimentPlan};
use crate::vocab::replica::Incarnation;
use crate::history::{ChaosAction, ChaosEvent, ExperimentRun, Observed, Outcome, Probe, ProbePurpose, Refusal, RequestRecord, StartFailure, StepRecord, VuRecord};
use crate::scenario::Scenario;
use crate::target::{BalancerSettings, RateLimit, Target};

/// What the target says about its platform, and its background work: the experiments are
/// judged under it.
#[derive(Debug, Clone)]
pub struct Platform {
    pub balancer: BalancerSettings,
    pub grace: Duration,
    pub health_interval: Duration,
    /// How long the `[chaos] slow` request takes, as planned.
    pub slow_for: Duration,
    pub work: Work,
    pub rate_limits: Vec<RateLimit>,
}

impl Platform {
    pub fn of(target: &Target) -> Self {
        Self {
            balancer: target.balancer,
            grace: target.start.shutdown_grace,
            health_interval: target.health.interval,
            slow_for: target.chaos.slow_for,
            work: Work { scheduled: target.scheduled.clone(), triggered: target.triggered.clone() },
            rate_limits: target.rate_limits.clone(),
        }
    }

    fn model(&self) -> String {
        format!("judged under {}", self.balancer.model(self.grace))
    }
}

pub fn assess(plan: &ExperimentPlan, run: &ExperimentRun, scenarios: &[Scenario], platform: &Platform) -> Assessment {
    match plan.kind {
        ExperimentKind::Broadcast => return super::live::assess_broadcast(run),
        ExperimentKind::Limits => return super::limits::assess_limits(run, &platform.rate_limits),
        ExperimentKind::ScheduledJobs | ExperimentKind::TriggeredWork => {
            let mut assessment = match plan.kind {
                ExperimentKind::ScheduledJobs => background::assess_scheduled(run, &platform.work.scheduled),
                _ => background::assess_triggered(run, &platform.work.triggered),
            };
            for candidate in &mut assessment.candidates {
                if candidate.kind == FindingKind::WorkLostAtShutdown {
                    candidate.notes.insert(0, platform.model());
                }
            }
            return assessment;
        }
        _ => {}
    }
    let mut assessment = Assessment::of(run);
    assessment.baseline = baseline(plan, run);
    let mut found: BTreeMap<(FindingKind, String, String), Candidate> = BTreeMap::new();
    let mut add = |candidate: Candidate| {
        found
            .entry(candidate.key())
            .and_modify(|c| c.occurrences += 1)
            .or_insert(candidate);
    };
    for event in &run.chaos {
        if let ChaosAction::Sigterm { replica, killed: true } = event.action {
            add(overran_grace(run, replica, event, platform));
        }
    }
    let premature = premature_readiness(run);
    for evidence in premature.values() {
        add(evidence.candidate(run));
    }
    for candidate in stale_while_draining(run).into_iter().chain(stale_while_store_down(run, platform)) {
        add(candidate);
    }
    let disruption = Disruption {
        run,
        platform,
        premature: &premature,
    };
    let (mut crossed, mut apart_too, mut under_load) = (0, 0, BTreeSet::new());
    if plan.kind == ExperimentKind::Hardened {
        for candidate in hardened(run) {
            add(candidate);
        }
        assessment.candidates = found.into_values().collect();
        return assessment;
    }
    if let (ExperimentKind::ColdStart, Some(failure)) = (plan.kind, &run.start_failure) {
        add(start_failure_raced(run, failure));
    }
    for record in run.disrupted.iter().chain(&run.load) {
        // After a cold start the control is the same user after a staggered start: what
        // failed there too is no start race (the scenarios say what it is).
        if plan.kind == ExperimentKind::ColdStart && record.first_failure().is_some() && failed_in_control(run, record.vu) {
            apart_too += 1;
            continue;
        }
        // The same step of the flow failed the same way under the same load without the
        // disruption: the load may explain it (a cache that evicts what the load fills it with).
        if let Some(step) = record.first_failure()
            && failed_under_load_alone(run, &record.scenario, step)
        {
            under_load.insert(format!("`{}` step `{}`", record.scenario, step.name));
            continue;
        }
        match disruption.explain(plan, record, scenarios) {
            Explained::Candidate(candidate) => add(*candidate),
            Explained::Expected | Explained::Passed => {}
            Explained::CrossedReplicas => crossed += 1,
            Explained::NotJudged(note) => assessment.notes.push(note),
            Explained::Unexplained(why) => assessment.unexplained.push(why),
        }
    }
    if apart_too > 0 {
        assessment.notes.push(format!(
            "{apart_too} user(s) whose artifact crossed replicas failed after a staggered start too: that is the scenarios' question, not a start race"
        ));
    }
    if !under_load.is_empty() {
        let steps: Vec<String> = under_load.into_iter().collect();
        assessment.notes.push(format!(
            "{} failed under the same load without the disruption too: such a failure is the load's doing (a cache that evicts what the load fills it with, say), and the disruption is not judged by it",
            steps.join(", ")
        ));
    }
    if crossed > 0 {
        assessment.notes.push(format!(
            "{crossed} failure(s) of users whose artifact crossed to another replica on the way (routed around a replica that was not ready) are the scenarios' question, not this experiment's"
        ));
    }
    assessment.candidates = found.into_values().collect();
    assessment
}

/// Whether a user of `scenario` that stayed on one replica failed `step` in the loaded
/// control, answered as it was answered (or unanswered as it was). One that crossed
/// replicas failed of the scenarios' question.
fn failed_under_load_alone(run: &ExperimentRun, scenario: &str, step: &StepRecord) -> bool {
    run.loaded
        .iter()
        .filter(|u| u.scenario == scenario && !crosses_replicas(u) && !rerouted(u))
        .filter_map(VuRecord::first_failure)
        .any(|failed| failed.index == step.index && failed.unanswered() == step.unanswered())
}

/// Why the control failed, if it did. After a cold start, users whose artifact crosses
/// replicas are paired with their trial one by one instead (see `assess`): only a failure
/// on one replica stops the check.
fn baseline(plan: &ExperimentPlan, run: &ExperimentRun) -> Option<String> {
    let stopped_at = run.chaos.iter().find(|e| matches!(e.action, ChaosAction::StoreStop { .. })).map(|e| e.start_ms);
    for record in &run.control {
        if plan.kind == ExperimentKind::ColdStart && crosses_replicas(record) {
            continue;
        }
        // An outage's control is its store request before the stop. A workload flow that
        // fails undisturbed is only not judged, and what was asked once the dependency was
        // back is evidence of recovery, not a control.
        let started = record.steps.first().and_then(|s| s.requests.first()).map(|r| r.start_ms);
        if plan.kind == ExperimentKind::StoreOutage && (record.scenario != STORE_SCENARIO || stopped_at.zip(started).is_some_and(|(stop, start)| start >= stop)) {
            continue;
        }
        // Routed around a replica that was not ready, it was no control: its own users'
        // failures are not judged (see `Disruption::lost_artifact`).
        if rerouted(record) {
            continue;
        }
        if let Some(step) = record.first_failure() {
            return Some(format!("without the disruption, vu {} failed step `{}` too: {}", record.vu, step.name, describe(step)));
        }
    }
    run.probes
        .iter()
        .find(|p| p.purpose == ProbePurpose::ReadyBefore && !p.said_ready())
        .map(|p| format!("{} was not ready before the disruption ({})", p.replica, probe_result(p)))
}

/// The replica that did not start when every replica started at once, after a staggered
/// start of the same replicas on the same emptied state started them all (else the run's
/// control would have failed and no trial been made).
fn start_failure_raced(run: &ExperimentRun, failure: &StartFailure) -> Candidate {
    Candidate {
        kind: FindingKind::StartRace,
        scenario: run.experiment.clone(),
        step: "start together".into(),
        producer: failure.replica,
        consumer: failure.replica,
        after: emptied(run),
        expected: "every replica starts and says ready, as in a staggered start".into(),
        observed: Observed { reason: failure.why.clone(), ..Observed::default() },
        control: "started one after another on the same emptied state, the same replicas started, and served the same users".into(),
        artifact: ArtifactEvidence::named("none"),
        vu: None,
        at_ms: None,
        occurrences: 1,
        notes: wrote(run, failure.replica),
    }
}

/// The last emptying of what a new deployment starts from: the database, else the shared directory.
fn emptied(run: &ExperimentRun) -> Option<ChaosEvent> {
    let last = |matches: fn(&ChaosAction) -> bool| run.chaos.iter().rev().find(|e| matches(&e.action)).cloned();
    last(|a| matches!(a, ChaosAction::DatabaseEmptied { .. })).or_else(|| last(|a| *a == ChaosAction::SharedEmptied))
}

/// What `replica` wrote of failures, else what any replica wrote.
fn wrote(run: &ExperimentRun, replica: Incarnation) -> Vec<String> {
    let own: Vec<&Refusal> = run.refused.iter().filter(|r| r.replica == replica).collect();
    let lines = if own.is_empty() { run.refused.iter().collect() } else { own };
    lines.into_iter().map(|r| format!("the replica wrote: {}: {}", r.replica, r.line)).collect()
}

/// What failed on the hardened replicas and passed on the target's own: each user's first
/// failing step, or the replica that did not start, with the refusals the replicas wrote.
fn hardened(run: &ExperimentRun) -> Vec<Candidate> {
    let evidence_notes = |replica: Incarnation| {
        let mut notes = wrote(run, replica);
        notes.push("judged as a restricted pod runs: not as root (the image's own user, or 65534), every capability dropped, no privilege escalation, a read-only root filesystem, /tmp and the run's volumes writable".into());
        notes
    };
    let started = |replica: Incarnation| run.chaos.iter().find(|e| e.action == ChaosAction::Start { replica }).cloned();
    let mut candidates = Vec::new();
    if let Some(failure) = &run.start_failure {
        candidates.push(Candidate {
            kind: FindingKind::FailsHardenedRuntime,
            scenario: run.experiment.clone(),
            step: "start hardened".into(),
            producer: failure.replica,
            consumer: failure.replica,
            after: run.chaos.iter().rev().find(|e| matches!(e.action, ChaosAction::Kill { .. })).cloned(),
            expected: "the replica starts and says ready".into(),
            observed: Observed { reason: failure.why.clone(), ..Observed::default() },
            control: "the same image started and served as the target runs it".into(),
            artifact: ArtifactEvidence::named("none"),
            vu: None,
            at_ms: None,
            occurrences: 1,
            notes: evidence_notes(failure.replica),
        });
    }
    for record in &run.disrupted {
        let Some(step) = record.first_failure() else { continue };
        if failed_in_control(run, record.vu) {
            continue;
        }
        let Some(replica) = step.requests.last().and_then(|r| r.served_by).or(step.served_by) else { continue };
        let (expected, observed) = match &step.outcome {
            Outcome::Failed { expected, observed } => (expected.clone(), observed.clone()),
            _ => ("the step passes".to_owned(), Observed { reason: describe(step), ..Observed::default() }),
        };
        candidates.push(Candidate {
            kind: FindingKind::FailsHardenedRuntime,
            scenario: record.scenario.clone(),
            step: step.name.clone(),
            producer: replica,
            consumer: replica,
            after: started(replica),
            expected,
            observed,
            control: format!("the same steps on the same replica passed as the target runs it ({})", describe_routes(record)),
            artifact: ArtifactEvidence::named("none"),
            vu: Some(record.vu),
            at_ms: step.requests.last().map(|r| r.start_ms),
            occurrences: 1,
            notes: evidence_notes(replica),
        });
    }
    candidates
}

/// Whether a request of the user was answered by another replica than its step's planned
/// one: the balancer routed it around a replica that was not ready (a busy machine's slow
/// probes), so the user did not take the routes a control must take.
fn rerouted(record: &VuRecord) -> bool {
    record.steps.iter().any(|step| step.requests.iter().any(|r| r.served_by.is_some_and(|served| served.id != step.planned)))
}

fn failed_in_control(run: &ExperimentRun, vu: u32) -> bool {
    run.control.iter().any(|record| record.vu == vu && record.first_failure().is_some())
}

fn crosses_replicas(record: &VuRecord) -> bool {
    record.steps.windows(2).any(|pair| pair[0].planned != pair[1].planned)
}

fn overran_grace(run: &ExperimentRun, replica: Incarnation, event: &ChaosEvent, platform: &Platform) -> Candidate {
    let grace_ms = event.end_ms - event.start_ms;
    Candidate {
        kind: FindingKind::ShutdownOverranGrace,
        scenario: run.experiment.clone(),
        step: "shut down after SIGTERM".into(),
        producer: replica,
        consumer: replica,
        after: Some(event.clone()),
        expected: "the replica exits within its grace period".into(),
        observed: Observed {
            reason: format!("{replica} was still running {:.1}s after SIGTERM and was killed", grace_ms / 1000.0),
            ..Observed::default()
        },
        control: format!("{replica} had started and said ready before SIGTERM"),
        artifact: ArtifactEvidence::named("none"),
        vu: None,
        at_ms: None,
        occurrences: 1,
        notes: vec![
            platform.model(),
            "remedy: finish the drain within the grace period (bound in-flight work and background jobs by the shutdown timeout), or give the replica a longer [start] shutdown_grace, as terminationGracePeriodSeconds should be the app's shutdown timeout plus a margin".into(),
        ],
    }
}

/// A new incarnation that said ready, failed a page, said ready again, and served the
/// page later.
struct Premature<'a> {
    replica: Incarnation,
    failed: &'a Probe,
    ready: &'a Probe,
    served: &'a Probe,
}

impl Premature<'_> {
    fn candidate(&self, run: &ExperimentRun) -> Candidate {
        let started = run.chaos.iter().find(|e| e.action == ChaosAction::Start { replica: self.replica }).cloned();
        Candidate {
            kind: FindingKind::ReadinessPremature,
            scenario: run.experiment.clone(),
            step: "first request after ready".into(),
            producer: self.replica,
            consumer: self.replica,
            after: started,
            expected: format!("a replica that says ready serves GET {}", self.failed.path),
            observed: Observed {
                reason: format!(
                    "GET {} answered {} once readiness had passed, and GET {} still answered {} {:.0} ms later",
                    self.failed.path,
                    probe_result(self.failed),
                    self.ready.path,
                    probe_result(self.ready),
                    self.ready.at_ms - self.failed.end_ms
                ),
                ..Observed::default()
            },
            control: format!("the same page was served {:.0} ms later", self.served.at_ms - self.failed.at_ms),
            artifact: ArtifactEvidence::named("none"),
            vu: None,
            at_ms: Some(self.failed.at_ms),
            occurrences: 1,
            notes: vec!["remedy: pass readiness only once the app serves real pages (caches warmed, migrations and connections done); keep liveness separate".into()],
        }
    }
}

/// Per new incarnation: the evidence that its readiness passed before it could serve.
fn premature_readiness(run: &ExperimentRun) -> BTreeMap<Incarnation, Premature<'_>> {
    let mut found = BTreeMap::new();
    let mut replicas: Vec<Incarnation> = run.probes.iter().filter(|p| p.purpose == ProbePurpose::FirstPage).map(|p| p.replica).collect();
    replicas.dedup();
    for replica in replicas {
        let of = |purpose: ProbePurpose| run.probes.iter().filter(move |p| p.replica == replica && p.purpose == purpose);
        let pages = || of(ProbePurpose::FirstPage).chain(of(ProbePurpose::LaterPage));
        let Some(failed) = pages().find(|p| p.failed()) else { continue };
        let Some(ready) = of(ProbePurpose::ReadyStarting).find(|p| p.at_ms >= failed.end_ms && p.said_ready()) else { continue };
        let Some(served) = pages().find(|p| p.at_ms > failed.end_ms && p.served()) else { continue };
        found.insert(replica, Premature { replica, failed, ready, served });
    }
    found
}

/// Ready answers, at least two, each between two pages the same replica failed while it
/// drained, when it had served that page before SIGTERM. A ready answer next to a page
/// that served is no evidence: a server closing its listener answers readiness a moment
/// before it refuses pages, and a pre-fork server's workers stop one by one.
fn stale_while_draining(run: &ExperimentRun) -> Vec<Candidate> {
    let mut found = Vec::new();
    for sigterm in &run.chaos {
        let ChaosAction::Sigterm { replica, .. } = sigterm.action else { continue };
        let of = |purpose: ProbePurpose| run.probes.iter().filter(move |p| p.replica == replica && p.purpose == purpose);
        let served_before = run.control.iter().any(|user| user.scenario == PAGE_SCENARIO && user.first_failure().is_none())
            || of(ProbePurpose::DrainPage).any(|p| p.at_ms < sigterm.start_ms && p.served());
        let ready_before = of(ProbePurpose::ReadyBefore).any(Probe::said_ready);
        let pages: Vec<&Probe> = of(ProbePurpose::DrainPage).filter(|p| p.at_ms >= sigterm.start_ms).collect();
        let ready_after: Vec<&Probe> = of(ProbePurpose::ReadyDraining)
            .filter(|ready| ready.said_ready())
            .filter(|ready| {
                let before = pages.iter().rev().find(|p| p.end_ms <= ready.at_ms);
                let after = pages.iter().find(|p| p.at_ms >= ready.end_ms);
                before.is_some_and(|p| p.failed()) && after.is_some_and(|p| p.failed())
            })
            .collect();
        let (Some(first), Some(last)) = (ready_after.first(), ready_after.last()) else { continue };
        let Some(failed) = pages.iter().find(|p| p.failed()) else { continue };
        if ready_after.len() < 2 || !served_before || !ready_before {
            continue;
        }
        found.push(Candidate {
            kind: FindingKind::ReadinessStale,
            scenario: run.experiment.clone(),
            step: "readiness while draining".into(),
            producer: replica,
            consumer: replica,
            after: Some(sigterm.clone()),
            expected: "a replica that cannot serve says it is not ready".into(),
            observed: Observed {
                reason: format!(
                    "GET {} answered {} {:.0} ms after SIGTERM; GET {} answered {} {} times between pages that failed, from {:.0} to {:.0} ms after SIGTERM",
                    failed.path,
                    probe_result(failed),
                    failed.at_ms - sigterm.start_ms,
                    first.path,
                    probe_result(first),
                    ready_after.len(),
                    first.at_ms - sigterm.start_ms,
                    last.at_ms - sigterm.start_ms
                ),
                ..Observed::default()
            },
            control: format!("before SIGTERM, {replica} said ready and served GET {}", failed.path),
            artifact: ArtifactEvidence::named("none"),
            vu: None,
            at_ms: Some(failed.at_ms),
            occurrences: 1,
            notes: vec!["remedy: fail readiness as soon as SIGTERM arrives (or the app stops serving), so no balancer that trusts readiness keeps sending requests".into()],
        });
    }
    found
}

/// Readiness that went on saying ready, sample after sample over the stale window, after
/// the same replica failed a flow that needs the stopped dependency: a flow it served
/// before the outage, failed again after the window, and served again once the dependency
/// was back. One finding per replica, for the first such flow.
fn stale_while_store_down(run: &ExperimentRun, platform: &Platform) -> Vec<Candidate> {
    let Some(stop) = run.chaos.iter().find(|e| matches!(e.action, ChaosAction::StoreStop { .. })) else { return Vec::new() };
    let Some(back) = run.chaos.iter().find(|e| matches!(e.action, ChaosAction::StoreStart { .. }) && e.start_ms >= stop.end_ms) else { return Vec::new() };
    let ChaosAction::StoreStop { dependency } = &stop.action else { return Vec::new() };
    let window_ms = stale_window(platform.health_interval).as_secs_f64() * 1000.0;
    let on = |user: &&VuRecord, replica: Incarnation, flow: &str| user.scenario == flow && user.steps.first().and_then(|s| s.served_by) == Some(replica);
    let passed = |user: &&VuRecord| user.first_failure().is_none();
    let mut found = Vec::new();
    let mut failures: Vec<(&VuRecord, &StepRecord, Incarnation)> = run
        .disrupted
        .iter()
        .filter_map(|u| {
            let step = u.first_failure()?;
            Some((u, step, u.steps.first()?.served_by?))
        })
        .collect();
    failures.sort_by_key(|(user, _, replica)| (*replica, user.vu));
    for (user, step, replica) in failures {
        if found.iter().any(|c: &Candidate| c.producer == replica) {
            continue;
        }
        let Some(request) = step.requests.last() else { continue };
        let flow = user.scenario.as_str();
        let served_before = run.control.iter().any(|c| on(&c, replica, flow) && passed(&c) && c.steps.first().and_then(|s| s.requests.first()).is_some_and(|r| r.end_ms <= stop.start_ms));
        let served_after = run.control.iter().any(|c| on(&c, replica, flow) && passed(&c) && c.steps.first().and_then(|s| s.requests.first()).is_some_and(|r| r.start_ms >= back.end_ms));
        let after: Vec<&Probe> = run
            .probes
            .iter()
            .filter(|p| p.purpose == ProbePurpose::ReadyStoreDown && p.replica == replica && p.at_ms >= request.end_ms)
            .collect();
        let (Some(first), Some(last)) = (after.first(), after.last()) else { continue };
        let failed_again = run.disrupted.iter().any(|u| on(&u, replica, flow) && u.first_failure().is_some() && u.steps.first().and_then(|s| s.requests.first()).is_some_and(|r| r.start_ms >= last.end_ms));
        let kept_saying_ready = after.len() >= STALE_SAMPLES && after.iter().all(|p| p.said_ready()) && last.at_ms - request.end_ms >= 0.9 * window_ms;
        if !served_before || !kept_saying_ready || !failed_again || !served_after {
            continue;
        }
        let what = if flow == STORE_SCENARIO { "the store request".to_owned() } else { format!("scenario `{flow}`") };
        found.push(Candidate {
            kind: FindingKind::ReadinessStale,
            scenario: run.experiment.clone(),
            step: format!("readiness while {dependency} is down"),
            producer: replica,
            consumer: replica,
            after: Some(stop.clone()),
            expected: format!("readiness fails while the app cannot serve flows that need {dependency}"),
            observed: Observed {
                reason: format!(
                    "with {dependency} down, {what} failed at step `{}`: {}; readiness then answered {} all {} times over the next {:.0} ms, and the flow failed again after",
                    step.name,
                    describe(step),
                    probe_result(first),
                    after.len(),
                    last.at_ms - request.end_ms
                ),
                ..Observed::default()
            },
            control: format!("with {dependency} up, readiness said ready and the same flow passed on {replica}, before the outage and again once {dependency} was back"),
            artifact: ArtifactEvidence::named("none"),
            vu: Some(user.vu),
            at_ms: Some(request.start_ms),
            occurrences: 1,
            notes: vec![format!("remedy: make readiness check {dependency}, which the app needs to serve (a ping or a trivial query with a short timeout), so replicas that cannot serve leave the balancer")],
        });
    }
    found
}

/// How long before SIGTERM a request may have been sent and still not have reached the
/// app when SIGTERM did.
const SIGTERM_RACE_MS: f64 = 100.0;

/// How a user's failure relates to the disruption.
enum Explained {
    Passed,
    /// A casualty of a disruption that spares nobody (SIGKILL, a pause, a store outage).
    Expected,
    Candidate(Box<Candidate>),
    /// The artifact crossed to another replica as well as the disruption: whether it works
    /// across replicas is the scenarios' question.
    CrossedReplicas,
    /// A failure the experiment did not set up, told in a note and not judged: a slow
    /// request that ran past its planned end into SIGTERM (the machine was slower than
    /// planned), or a user whose control did not stay on one replica.
    NotJudged(String),
    Unexplained(String),
}

struct Disruption<'a> {
    run: &'a ExperimentRun,
    platform: &'a Platform,
    premature: &'a BTreeMap<Incarnation, Premature<'a>>,
}

impl Disruption<'_> {
    fn explain(&self, plan: &ExperimentPlan, record: &VuRecord, scenarios: &[Scenario]) -> Explained {
        let Some(step) = record.first_failure() else { return Explained::Passed };
        let failed_request = step.requests.last();
        if plan.kind == ExperimentKind::StoreOutage {
            // Flows that need the dependency fail while it is down; readiness is what is judged.
            return Explained::Expected;
        }
        if let Some(request) = failed_request.filter(|r| r.unanswered()) {
            if let Some(explained) = self.shutdown_casualty(record, step, request) {
                return explained;
            }
            if let Some(candidate) = self.premature_casualty(record, step, request) {
                return Explained::Candidate(Box::new(candidate));
            }
            if self.killed_or_paused(request) {
                return Explained::Expected;
            }
            // After a staggered start the same user passed (see `assess`): started at once,
            // the replicas could not serve it.
            if plan.kind == ExperimentKind::ColdStart {
                return Explained::Candidate(Box::new(self.flow_raced(record, step, request)));
            }
            if plan.kind == ExperimentKind::StoreRestart {
                return self.unanswered_after_store_restart(plan, record, step, scenarios);
            }
        }
        self.lost_artifact(plan, record, step, scenarios).unwrap_or_else(|| unexplained(record, step))
    }

    /// A step the app went on not answering for the whole recovery window after a store
    /// restart (the user asked it again meanwhile). A 5xx is what an app answers while it
    /// cannot reach its store, so it shows lost data only when a fresh user of the same flow,
    /// asked on the same replica afterwards, passed: then the store served, and what this user
    /// held before the restart is what the app could not serve.
    fn unanswered_after_store_restart(&self, plan: &ExperimentPlan, record: &VuRecord, step: &StepRecord, scenarios: &[Scenario]) -> Explained {
        // Its requests, the first attempt's and every one asked again after it.
        let asked = match (step.requests.first(), step.requests.last()) {
            (Some(first), Some(last)) => format!("{} request(s) over {:.1} s", step.requests.len(), (last.end_ms - first.start_ms) / 1000.0),
            _ => "no request".to_owned(),
        };
        let fresh = self.run.recovered.iter().find(|u| u.scenario == record.scenario && u.steps.first().is_some_and(|s| s.planned == step.planned));
        match fresh {
            Some(fresh) if fresh.first_failure().is_none() => {
                let mut explained = self.lost_artifact(plan, record, step, scenarios);
                if let Some(Explained::Candidate(candidate)) = &mut explained {
                    candidate.notes.push(format!(
                        "the step went unanswered after the restart ({asked}), while a fresh user of the same flow then passed on {}: the store served again",
                        step.planned
                    ));
                }
                explained.unwrap_or_else(|| unexplained(record, step))
            }
            _ => Explained::NotJudged(format!(
                "vu {}'s step `{}` ({}) went unanswered after {} restarted ({asked}), and a fresh user of the flow on {} {}: the app did not serve again after the restart, which says nothing of what the store kept",
                record.vu,
                step.name,
                record.scenario,
                plan.dependency.as_deref().unwrap_or("the store"),
                step.planned,
                match fresh {
                    Some(fresh) => format!("failed too ({})", fresh.first_failure().map(describe).unwrap_or_default()),
                    None => "was not asked".to_owned(),
                }
            )),
        }
    }

    /// A request that failed on an incarnation that got SIGTERM: in flight when it arrived,
    /// or sent while the balancer still routed to it.
    fn shutdown_casualty(&self, record: &VuRecord, step: &StepRecord, request: &RequestRecord) -> Option<Explained> {
        let replica = request.served_by?;
        let sigterm = self.first(|a| matches!(a, ChaosAction::Sigterm { replica: r, .. } if *r == replica))?;
        // The control: the same incarnation answered a request before SIGTERM.
        let served_before = self.run.users().find_map(|user| {
            let served = user.steps.iter().flat_map(|s| &s.requests).any(|r| {
                r.served_by == Some(replica) && r.end_ms < sigterm.start_ms && r.status.is_some_and(|s| s < 500)
            });
            served.then_some(user.vu)
        })?;
        // The balancer routed to it until it was deregistered; a request it routed there
        // started before that.
        let deregistered = self.first(|a| *a == ChaosAction::Deregister { replica }).map(|e| e.start_ms);
        let window_end = deregistered.unwrap_or(sigterm.start_ms + self.platform.balancer.deregistration_delay.as_secs_f64() * 1000.0);
        // A request sent a moment before SIGTERM may not have reached the app yet (a
        // keep-alive connection the app closes at SIGTERM): it was not surely in flight.
        let raced = (sigterm.start_ms - SIGTERM_RACE_MS..sigterm.start_ms).contains(&request.start_ms);
        let routed_after_sigterm = window_end > sigterm.start_ms;
        let (kind, expected, remedy) = if request.start_ms < sigterm.start_ms && !(raced && routed_after_sigterm) {
            if raced {
                return Some(Explained::Expected);
            }
            // Planned to end before SIGTERM (the drain the deployment model gives it was
            // to be long enough), it met SIGTERM only by running slow: judging it would
            // make the machine's load a finding.
            let planned_end = request.start_ms + self.platform.slow_for.as_secs_f64() * 1000.0;
            if record.scenario == SLOW_SCENARIO && planned_end + SIGTERM_RACE_MS <= sigterm.start_ms {
                return Some(Explained::NotJudged(format!(
                    "vu {}'s slow request, planned to end {:.0} ms before SIGTERM to {replica}, ran past it and was cut: the machine was slower than planned, so in-flight requests are not judged by it (set [chaos] slow_for above the deregistration delay to judge them)",
                    record.vu,
                    sigterm.start_ms - planned_end
                )));
            }
            (
                FindingKind::InflightDropped,
                "a request in flight when SIGTERM arrives completes",
                "remedy: on SIGTERM stop accepting new connections but let requests in flight finish (a graceful shutdown) before the process exits",
            )
        } else if request.start_ms <= window_end {
            // Raced ones included: the app stopped taking requests it was still routed.
            (
                FindingKind::RefusedDuringDeregistration,
                "a replica keeps serving while the balancer still routes to it after SIGTERM",
                "remedies: keep accepting and serving for longer than the deregistration delay after SIGTERM (readiness failing) before closing the listener; or delay SIGTERM with a preStop sleep longer than the delay ([balancer] pre_stop); or, if your platform's load balancer stops routing before it stops an instance, say so ([balancer] deregistration = \"before-sigterm\")",
            )
        } else {
            return None;
        };
        // The experiment's own requests are named by what they asked for.
        let own = record.scenario == SLOW_SCENARIO || record.scenario == PAGE_SCENARIO;
        let (scenario, step_name) = if own { (self.run.experiment.clone(), request_label(request)) } else { (record.scenario.clone(), step.name.clone()) };
        Some(Explained::Candidate(Box::new(Candidate {
            kind,
            scenario,
            step: step_name,
            producer: replica,
            consumer: replica,
            after: Some(sigterm.clone()),
            expected: expected.into(),
            observed: Observed {
                reason: format!(
                    "{} (sent {:.0} ms {} SIGTERM)",
                    request.error.clone().unwrap_or_else(|| format!("status {}", request.status.unwrap_or_default())),
                    (request.start_ms - sigterm.start_ms).abs(),
                    if request.start_ms < sigterm.start_ms { "before" } else { "after" }
                ),
                ..Observed::default()
            },
            control: format!("{replica} served vu {served_before} before SIGTERM"),
            artifact: ArtifactEvidence::named("none"),
            vu: Some(record.vu),
            at_ms: Some(request.start_ms),
            occurrences: 1,
            notes: vec![self.platform.model(), remedy.into()],
        })))
    }

    /// A request that failed on an incarnation whose readiness passed before it could
    /// serve, before it first served.
    fn premature_casualty(&self, record: &VuRecord, step: &StepRecord, request: &RequestRecord) -> Option<Candidate> {
        let replica = request.served_by?;
        let evidence = self.premature.get(&replica)?;
        if request.start_ms > evidence.served.at_ms {
            return None;
        }
        let mut candidate = evidence.candidate(self.run);
        candidate.observed = Observed {
            status: request.status,
            reason: format!("vu {} step `{}` failed on {replica} before it could serve", record.vu, step.name),
            ..Observed::default()
        };
        candidate.vu = Some(record.vu);
        candidate.at_ms = Some(request.start_ms);
        Some(candidate)
    }

    /// Something a replica handed out that did not work on it after the disruption: the
    /// artifact the failed step consumes, or else whatever the latest request served by
    /// another incarnation left (a redirect can cross incarnations within a step).
    fn lost_artifact(&self, plan: &ExperimentPlan, record: &VuRecord, step: &StepRecord, scenarios: &[Scenario]) -> Option<Explained> {
        let Outcome::Failed { expected, observed } = &step.outcome else { return None };
        // The same user without the disruption is its control: one that did not stay on
        // its replica shows nothing, and neither does this failure.
        if self.run.control.iter().any(|c| c.vu == record.vu && rerouted(c)) {
            return Some(Explained::NotJudged(format!(
                "vu {}'s control was answered by another replica than planned (routed around one that was not ready), so its failure of step `{}` is not judged",
                record.vu, step.name
            )));
        }
        let scenario = scenarios.iter().find(|s| s.name == record.scenario)?;
        let requests: Vec<(usize, &RequestRecord)> = record.steps[..=step.index].iter().flat_map(|s| s.requests.iter().map(move |r| (s.index, r))).collect();
        let consumer = requests.iter().rev().find_map(|(_, r)| r.served_by)?;
        // After a store restart, the store lost it: producer and consumer may be one incarnation.
        let same_incarnation_counts = plan.kind == ExperimentKind::StoreRestart;
        let declared = scenario.steps.get(step.index)?.consumes.as_ref().and_then(|artifact| {
            let index = scenario.producer_of(artifact, step.index)?;
            let producer = record.steps.get(index)?.served_by.filter(|p| same_incarnation_counts || *p != consumer)?;
            Some((index, producer, Some(artifact)))
        });
        let (producer_step, producer, artifact) = match declared {
            Some(found) => found,
            None => {
                let (index, producer) = requests.iter().rev().find_map(|(i, r)| r.served_by.filter(|p| *p != consumer).map(|p| (*i, p)))?;
                (index, producer, None)
            }
        };
        let (kind, after) = match plan.kind {
            // Only the added replica is the question; anything else crossed replicas.
            ExperimentKind::ScaleOut if producer.id != consumer.id => {
                (FindingKind::for_artifact(artifact), self.first(|a| matches!(a, ChaosAction::Start { replica } if *replica == consumer))?)
            }
            // A refusal is the keys' doing (a failure to answer is a start race: see `explain`).
            ExperimentKind::ColdStart if producer.id != consumer.id => (FindingKind::KeyringRaceOnStart, self.last(|a| *a == ChaosAction::SharedEmptied)?),
            // Produced on one replica, consumed on another: not this experiment's question.
            _ if producer.id != consumer.id => return Some(Explained::CrossedReplicas),
            ExperimentKind::StoreRestart => (FindingKind::ArtifactLostAfterStoreRestart, self.first(|a| matches!(a, ChaosAction::StoreStop { .. }))?),
            ExperimentKind::Restart | ExperimentKind::Kill | ExperimentKind::RollingRestart => {
                let stopped = |a: &ChaosAction| matches!(a, ChaosAction::Sigterm { replica, .. } | ChaosAction::Kill { replica } if *replica == producer);
                (FindingKind::ArtifactLostAfterRestart, self.first(stopped)?)
            }
            _ => return None,
        };
        Some(Explained::Candidate(Box::new(Candidate {
            kind,
            scenario: record.scenario.clone(),
            step: step.name.clone(),
            producer,
            consumer,
            after: Some(after.clone()),
            expected: expected.clone(),
            observed: observed.clone(),
            control: match plan.kind {
                ExperimentKind::ColdStart => format!(
                    "the same steps on the same routes passed after a staggered start, in which one replica started and served a user before the others started ({})",
                    describe_routes(record)
                ),
                _ => format!("the same steps on the same routes, without the disruption, passed ({})", describe_routes(record)),
            },
            artifact: super::evidence(record, producer_step, step.index, artifact),
            vu: Some(record.vu),
            at_ms: step.requests.last().map(|r| r.start_ms),
            occurrences: 1,
            notes: Vec::new(),
        })))
    }

    /// A user that a staggered start served, left unanswered (5xx, refused, reset) by
    /// replicas started at once.
    fn flow_raced(&self, record: &VuRecord, step: &StepRecord, request: &RequestRecord) -> Candidate {
        let replica = request.served_by.or(step.served_by).unwrap_or(Incarnation { id: step.planned, generation: 0 });
        let (expected, observed) = match &step.outcome {
            Outcome::Failed { expected, observed } => (expected.clone(), observed.clone()),
            _ => ("the step passes".to_owned(), Observed { reason: describe(step), ..Observed::default() }),
        };
        Candidate {
            kind: FindingKind::StartRace,
            scenario: record.scenario.clone(),
            step: step.name.clone(),
            producer: replica,
            consumer: replica,
            after: emptied(self.run),
            expected,
            observed,
            control: format!(
                "the same steps on the same routes passed after a staggered start, in which one replica started and served a user before the others started ({})",
                describe_routes(record)
            ),
            artifact: ArtifactEvidence::named("none"),
            vu: Some(record.vu),
            at_ms: Some(request.start_ms),
            occurrences: 1,
            notes: wrote(self.run, replica),
        }
    }

    fn first(&self, matches: impl Fn(&ChaosAction) -> bool) -> Option<&ChaosEvent> {
        self.run.chaos.iter().find(|e| matches(&e.action))
    }

    fn last(&self, matches: impl Fn(&ChaosAction) -> bool) -> Option<&ChaosEvent> {
        self.run.chaos.iter().rev().find(|e| matches(&e.action))
    }

    /// Whether the request's replica was killed or paused before the request ended.
    fn killed_or_paused(&self, request: &RequestRecord) -> bool {
        let Some(replica) = request.served_by else { return false };
        self.run.chaos.iter().any(|e| {
            matches!(e.action, ChaosAction::Kill { replica: r } | ChaosAction::Pause { replica: r } if r == replica) && e.start_ms <= request.end_ms
        })
    }
}

fn unexplained(record: &VuRecord, step: &StepRecord) -> Explained {
    Explained::Unexplained(format!("vu {} ({}) step `{}`: {}", record.vu, record.scenario, step.name, describe(step)))
}

/// `r0, r0, r0`: the replica each step was planned on.
fn describe_routes(record: &VuRecord) -> String {
    record.steps.iter().map(|s| s.planned.to_string()).collect::<Vec<_>>().join(", ")
}

fn request_label(request: &RequestRecord) -> String {
    format!("{} {}", request.method, request.path.split('?').next().unwrap_or(&request.path))
}

fn describe(step: &StepRecord) -> String {
    match &step.outcome {
        Outcome::Failed { observed, .. } => observed.to_string(),
        Outcome::Error { message } => message.clone(),
        Outcome::Passed => "passed".into(),
    }
}

fn probe_result(probe: &Probe) -> String {
    match (probe.status, &probe.error) {
        (Some(status), _) => format!("status {status}"),
        (None, Some(error)) => error.clone(),
        (None, None) => "nothing".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chaos::{ExperimentKind, ExperimentPlan};
    use crate::check::ScenarioStatus;
    use crate::check::twice::judge;
    use crate::vocab::replica::ReplicaId;
    use crate::history::Phase;

    const DELAY: Duration = Duration::from_millis(500);

    fn platform() -> Platform {
        Platform {
            balancer: BalancerSettings {
                deregistration_delay: DELAY,
                ..BalancerSettings::default()
            },
            grace: Duration::from_secs(5),
            health_interval: Duration::from_millis(200),
            slow_for: Duration::from_millis(1500),
            work: Work::default(),
            rate_limits: Vec::new(),
        }
    }

    pub(crate) fn r(id: u16, generation: u32) -> Incarnation {
        Incarnation { id: ReplicaId(id), generation }
    }

    fn plan(kind: ExperimentKind) -> ExperimentPlan {
        ExperimentPlan {
            kind,
            dependency: kind.disrupts_a_dependency().then(|| "postgres".to_owned()),
            victim: ReplicaId(0),
            handoffs: Vec::new(),
            load: None,
        }
    }

    pub(crate) fn event(action: ChaosAction, start_ms: f64, end_ms: f64) -> ChaosEvent {
        ChaosEvent { action, start_ms, end_ms }
    }

    fn probe(purpose: ProbePurpose, replica: Incarnation, at_ms: f64, status: Option<u16>) -> Probe {
        Probe {
            purpose,
            replica,
            path: if matches!(purpose, ProbePurpose::DrainPage | ProbePurpose::FirstPage | ProbePurpose::LaterPage) { "/".into() } else { "/ready".into() },
            at_ms,
            end_ms: at_ms + 2.0,
            status,
            error: status.is_none().then(|| "connection refused".into()),
            timed_out: false,
        }
    }

    /// A one-request user of `scenario`, served by `replica`.
    pub(crate) fn user(scenario: &str, vu: u32, replica: Incarnation, start_ms: f64, status: Option<u16>, error: Option<&str>) -> VuRecord {
        let request = RequestRecord {
            method: "GET".into(),
            path: "/".into(),
            planned: replica.id,
            served_by: Some(replica),
            status,
            location: None,
            set_cookies: Vec::new(),
            start_ms,
            end_ms: start_ms + 5.0,
            error: error.map(str::to_owned),
        };
        let outcome = match (error, status) {
            (Some(message), _) => Outcome::Error { message: message.into() },
            (None, Some(status)) if status >= 400 => Outcome::Failed {
                expected: "status 2xx".into(),
                observed: Observed {
                    status: Some(status),
                    reason: "expected status 2xx".into(),
                    ..Observed::default()
                },
            },
            _ => Outcome::Passed,
        };
        VuRecord {
            phase: Phase::Main,
            vu,
            iteration: 0,
            scenario: scenario.into(),
            steps: vec![StepRecord {
                index: 0,
                name: "page".into(),
                planned: replica.id,
                served_by: Some(replica),
                also_reached: Vec::new(),
                requests: vec![request],
                outcome,
                set_cookies: Vec::new(),
                cookie_shapes: Default::default(),
                captured: Vec::new(),
            }],
        }
    }

    fn page_user(vu: u32, replica: Incarnation, start_ms: f64, status: Option<u16>, error: Option<&str>) -> VuRecord {
        user(PAGE_SCENARIO, vu, replica, start_ms, status, error)
    }

    /// SIGTERM to r0 at 1000 ms, deregistered at 1500 ms; r0 said ready and served vu 1 before.
    fn sigterm_run(users: Vec<VuRecord>) -> ExperimentRun {
        let mut run = ExperimentRun::new("sigterm", Phase::Main);
        run.control = vec![page_user(1, r(0, 1), 100.0, Some(200), None)];
        run.probes = vec![probe(ProbePurpose::ReadyBefore, r(0, 1), 50.0, Some(200))];
        run.chaos = vec![
            event(ChaosAction::Sigterm { replica: r(0, 1), killed: false }, 1000.0, 1200.0),
            event(ChaosAction::Deregister { replica: r(0, 1) }, 1500.0, 1500.0),
        ];
        run.disrupted = users;
        run
    }

    /// Page and readiness asked in turn from `from` ms, every 100 ms.
    fn drain(run: &mut ExperimentRun, from: f64, samples: &[(Option<u16>, Option<u16>)]) {
        for (index, (page, ready)) in samples.iter().enumerate() {
            let at = from + 100.0 * index as f64;
            run.probes.push(probe(ProbePurpose::DrainPage, r(0, 1), at, *page));
            run.probes.push(probe(ProbePurpose::ReadyDraining, r(0, 1), at + 5.0, *ready));
        }
    }

    fn kinds(assessment: &Assessment) -> Vec<FindingKind> {
        assessment.candidates.iter().map(|c| c.kind).collect()
    }

    fn assess_sigterm(run: &ExperimentRun) -> Assessment {
        assess(&plan(ExperimentKind::Sigterm), run, &[], &platform())
    }

    #[test]
    fn a_slow_request_that_overran_its_planned_end_into_sigterm_is_told_not_judged() {
        let slow = |vu: u32, start_ms: f64| user(SLOW_SCENARIO, vu, r(0, 1), start_ms, Some(502), Some("the balancer answered 502: r0: connection reset"));
        // Planned to take 1500 ms: sent 1000 ms before SIGTERM it was meant to be in flight;
        // sent 1700 ms before, it was meant to be done 200 ms before SIGTERM.
        let assessment = assess_sigterm(&sigterm_run(vec![slow(2, 0.0), slow(3, -700.0)]));
        assert_eq!(kinds(&assessment), [FindingKind::InflightDropped]);
        assert_eq!(assessment.candidates[0].vu, Some(2));
        assert!(assessment.notes.iter().any(|n| n.contains("vu 3's slow request, planned to end 200 ms before SIGTERM to r0, ran past it")), "{:?}", assessment.notes);
        assert!(assessment.unexplained.is_empty());
    }

    #[test]
    fn failures_around_sigterm_are_in_flight_or_refused_by_when_they_started() {
        let refused = page_user(2, r(0, 1), 1200.0, Some(502), Some("the balancer answered 502: r0: connection refused"));
        let dropped = page_user(3, r(0, 1), 800.0, Some(502), Some("the balancer answered 502: r0: connection reset"));
        let assessment = assess_sigterm(&sigterm_run(vec![refused, dropped]));
        assert_eq!(kinds(&assessment), [FindingKind::InflightDropped, FindingKind::RefusedDuringDeregistration]);
        assert!(assessment.unexplained.is_empty() && assessment.baseline.is_none());
        let refused = &assessment.candidates[1];
        assert_eq!(refused.control, "r0 served vu 1 before SIGTERM");
        assert_eq!(refused.scenario, "sigterm");
        assert_eq!(refused.step, "GET /");
        assert!(refused.notes[0].contains("deregistration = \"kubernetes\"") && refused.notes[0].contains("500ms"), "{:?}", refused.notes);
        assert!(refused.notes[1].contains("pre_stop") && refused.notes[1].contains("before-sigterm"), "{:?}", refused.notes);
    }

    #[test]
    fn a_request_sent_a_moment_before_sigterm_was_not_surely_in_flight() {
        let raced = page_user(2, r(0, 1), 960.0, Some(502), Some("the balancer answered 502: r0: connection closed before message completed"));
        let assessment = assess_sigterm(&sigterm_run(vec![raced]));
        assert_eq!(kinds(&assessment), [FindingKind::RefusedDuringDeregistration], "still routed after SIGTERM: it was refused");
        let mut drained_first = sigterm_run(vec![page_user(2, r(0, 1), 960.0, Some(502), Some("closed"))]);
        drained_first.chaos[1].start_ms = 900.0;
        let assessment = assess_sigterm(&drained_first);
        assert!(assessment.candidates.is_empty() && assessment.unexplained.is_empty(), "{:?}", assessment.candidates);
    }

    #[test]
    fn a_failure_after_deregistration_is_not_explained_by_it() {
        let late = page_user(2, r(0, 1), 1600.0, Some(502), Some("the balancer answered 502: r0: connection refused"));
        let assessment = assess_sigterm(&sigterm_run(vec![late]));
        assert!(assessment.candidates.is_empty());
        assert_eq!(assessment.unexplained.len(), 1);
    }

    #[test]
    fn a_replica_never_seen_serving_gives_no_shutdown_finding() {
        let mut run = sigterm_run(vec![page_user(2, r(0, 1), 1200.0, Some(502), Some("refused"))]);
        run.control.clear();
        assert!(assess_sigterm(&run).candidates.is_empty(), "no control, no finding");
    }

    #[test]
    fn a_kill_after_the_grace_is_a_finding_under_the_model() {
        let mut run = sigterm_run(Vec::new());
        run.chaos[0].action = ChaosAction::Sigterm { replica: r(0, 1), killed: true };
        let assessment = assess_sigterm(&run);
        assert_eq!(kinds(&assessment), [FindingKind::ShutdownOverranGrace]);
        assert!(assessment.candidates[0].notes[0].contains("SIGKILL follows 5s after SIGTERM"), "{:?}", assessment.candidates[0].notes);
    }

    #[test]
    fn a_draining_replica_that_says_ready_and_serves_is_not_stale() {
        let mut run = sigterm_run(Vec::new());
        drain(&mut run, 1000.0, &[(Some(200), Some(200)); 6]);
        assert!(assess_sigterm(&run).candidates.is_empty());
    }

    #[test]
    fn one_ready_answer_as_the_listener_closes_is_not_stale() {
        // The server closed its listener between the page and the readiness probe: the
        // ready answer came first, so nothing says it was ready while failing.
        let mut run = sigterm_run(Vec::new());
        drain(&mut run, 1000.0, &[(Some(200), Some(200)), (None, Some(200)), (None, None), (None, None)]);
        assert!(assess_sigterm(&run).candidates.is_empty(), "{:?}", assess_sigterm(&run).candidates);
    }

    #[test]
    fn a_page_failed_by_one_worker_of_many_is_not_stale() {
        // A pre-fork server's workers stop one by one: one page fails, the others serve.
        let mut run = sigterm_run(Vec::new());
        drain(&mut run, 1000.0, &[(Some(200), Some(200)), (None, Some(200)), (Some(200), Some(200)), (Some(200), Some(200)), (None, None)]);
        assert!(assess_sigterm(&run).candidates.is_empty(), "{:?}", assess_sigterm(&run).candidates);
    }

    #[test]
    fn readiness_that_goes_on_saying_ready_while_pages_fail_is_stale() {
        let mut run = sigterm_run(Vec::new());
        drain(&mut run, 1000.0, &[(Some(200), Some(200)), (Some(503), Some(200)), (Some(503), Some(200)), (Some(503), Some(200)), (Some(503), Some(200))]);
        let assessment = assess_sigterm(&run);
        assert_eq!(kinds(&assessment), [FindingKind::ReadinessStale]);
        let stale = &assessment.candidates[0];
        assert!(stale.observed.reason.contains("answered status 503 100 ms after SIGTERM"), "{}", stale.observed.reason);
        assert!(stale.observed.reason.contains("status 200 3 times"), "{}", stale.observed.reason);
        let mut unready_before = run.clone();
        unready_before.probes[0].status = Some(503);
        assert!(assess_sigterm(&unready_before).candidates.iter().all(|c| c.kind != FindingKind::ReadinessStale), "no control");
    }

    fn started_run(pages: &[(ProbePurpose, f64, Option<u16>)], ready: &[(f64, Option<u16>)]) -> ExperimentRun {
        let mut run = ExperimentRun::new("restart", Phase::Main);
        run.chaos.push(event(ChaosAction::Start { replica: r(0, 2) }, 100.0, 150.0));
        run.probes.extend(pages.iter().map(|(purpose, at, status)| probe(*purpose, r(0, 2), *at, *status)));
        run.probes.extend(ready.iter().map(|(at, status)| probe(ProbePurpose::ReadyStarting, r(0, 2), *at, *status)));
        run
    }

    #[test]
    fn a_page_that_fails_while_readiness_says_ready_and_works_later_is_premature_readiness() {
        let run = started_run(&[(ProbePurpose::FirstPage, 151.0, Some(503)), (ProbePurpose::LaterPage, 560.0, Some(200))], &[(255.0, Some(200))]);
        let assessment = assess(&plan(ExperimentKind::Restart), &run, &[], &platform());
        assert_eq!(kinds(&assessment), [FindingKind::ReadinessPremature]);
        assert_eq!(assessment.candidates[0].control, "the same page was served 409 ms later");
    }

    #[test]
    fn a_page_that_fails_while_readiness_says_not_ready_is_not_premature() {
        // Readiness flipped back: it said ready a moment too early once, then told the truth.
        let run = started_run(&[(ProbePurpose::FirstPage, 151.0, Some(503)), (ProbePurpose::LaterPage, 560.0, Some(200))], &[(255.0, Some(503))]);
        assert!(assess(&plan(ExperimentKind::Restart), &run, &[], &platform()).candidates.is_empty());
        // A slow first page is slow, not failing.
        let mut slow = started_run(&[(ProbePurpose::FirstPage, 151.0, None), (ProbePurpose::LaterPage, 2560.0, Some(200))], &[(2255.0, Some(200))]);
        slow.probes[0].timed_out = true;
        assert!(assess(&plan(ExperimentKind::Restart), &slow, &[], &platform()).candidates.is_empty());
    }

    fn store_run(ready: &[Option<u16>]) -> ExperimentRun {
        let mut run = ExperimentRun::new("store-outage postgres", Phase::Main);
        run.control = vec![user(STORE_SCENARIO, 1, r(0, 1), 100.0, Some(200), None)];
        run.chaos.push(event(ChaosAction::StoreStop { dependency: "postgres".into() }, 1000.0, 1010.0));
        run.disrupted = vec![user(STORE_SCENARIO, 2, r(0, 1), 1300.0, Some(500), None), user(STORE_SCENARIO, 3, r(0, 1), 2400.0, Some(500), None)];
        for (index, status) in ready.iter().enumerate() {
            run.probes.push(probe(ProbePurpose::ReadyStoreDown, r(0, 1), 1310.0 + 340.0 * index as f64, *status));
        }
        run.chaos.push(event(ChaosAction::StoreStart { dependency: "postgres".into() }, 2600.0, 2700.0));
        // Asked again once postgres was back: it serves.
        run.control.push(user(STORE_SCENARIO, 4, r(0, 1), 2800.0, Some(200), None));
        run
    }

    #[test]
    fn readiness_that_stays_ready_for_the_window_after_a_store_request_failed_is_stale() {
        let assessment = assess(&plan(ExperimentKind::StoreOutage), &store_run(&[Some(200); 4]), &[], &platform());
        assert_eq!(kinds(&assessment), [FindingKind::ReadinessStale]);
        let stale = &assessment.candidates[0];
        assert!(stale.observed.reason.contains("all 4 times") && stale.observed.reason.contains("with postgres down"), "{}", stale.observed.reason);
        assert_eq!(stale.step, "readiness while postgres is down");
        // A readiness check that caches its answer for a moment, then tells the truth.
        let cached = assess(&plan(ExperimentKind::StoreOutage), &store_run(&[Some(200), Some(200), Some(503), Some(503)]), &[], &platform());
        assert!(cached.candidates.is_empty());
        // The request that needs the store worked again after the window: not stale.
        let mut recovered = store_run(&[Some(200); 4]);
        recovered.disrupted[1] = user(STORE_SCENARIO, 3, r(0, 1), 2400.0, Some(200), None);
        assert!(assess(&plan(ExperimentKind::StoreOutage), &recovered, &[], &platform()).candidates.is_empty());
        // It never served again once postgres was back: something else keeps it failing
        // (a limit on repeated tries, a client that never reconnects), not readiness alone.
        let mut stuck = store_run(&[Some(200); 4]);
        stuck.control[1] = user(STORE_SCENARIO, 4, r(0, 1), 2800.0, Some(500), None);
        let stuck = assess(&plan(ExperimentKind::StoreOutage), &stuck, &[], &platform());
        assert!(stuck.candidates.is_empty() && stuck.baseline.is_none(), "{:?}", stuck.baseline);
    }

    /// A cold start whose control passed: vu 1 on r0 after the staggered start.
    fn cold_run() -> ExperimentRun {
        let mut run = ExperimentRun::new("cold-start", Phase::Main);
        run.chaos.push(event(ChaosAction::SharedEmptied, 10.0, 12.0));
        run.chaos.push(event(ChaosAction::DatabaseEmptied { dependency: "postgres".into() }, 12.0, 900.0));
        run.control = vec![user("login", 1, r(0, 2), 1000.0, Some(200), None)];
        run
    }

    #[test]
    fn a_replica_that_starts_only_one_after_another_is_a_start_race_with_what_it_wrote() {
        let mut run = cold_run();
        run.start_failure = Some(StartFailure { replica: r(1, 3), why: "r1#3 exited (exit status: 1) before it was ready; its log ends with:\nrelation \"kv\" already exists".into() });
        run.refused = vec![Refusal { replica: r(1, 3), line: "psycopg.errors.DuplicateTable: relation \"kv\" already exists".into() }];
        let assessment = assess(&plan(ExperimentKind::ColdStart), &run, &[], &platform());
        assert_eq!(kinds(&assessment), [FindingKind::StartRace]);
        let race = &assessment.candidates[0];
        assert_eq!((race.producer, race.step.as_str()), (r(1, 3), "start together"));
        assert!(race.observed.reason.contains("already exists") && race.notes[0].contains("DuplicateTable"), "{race:?}");
        assert!(race.after.as_ref().is_some_and(|a| matches!(a.action, ChaosAction::DatabaseEmptied { .. })));
    }

    #[test]
    fn a_flow_unanswered_only_after_replicas_started_at_once_is_a_start_race() {
        let mut run = cold_run();
        run.disrupted = vec![user("login", 1, r(0, 3), 2000.0, Some(500), None)];
        let assessment = assess(&plan(ExperimentKind::ColdStart), &run, &[], &platform());
        assert_eq!(kinds(&assessment), [FindingKind::StartRace]);
        assert!(assessment.unexplained.is_empty());
        // Unanswered after the staggered start too: the scenarios' question, not a race.
        run.control[0] = user("login", 1, r(0, 2), 1000.0, Some(500), None);
        let apart = assess(&plan(ExperimentKind::ColdStart), &run, &[], &platform());
        assert!(!kinds(&apart).contains(&FindingKind::StartRace), "{:?}", apart.candidates);
    }

    #[test]
    fn a_workload_flow_that_needs_the_dependency_shows_stale_readiness_too() {
        let mut run = store_run(&[Some(200); 4]);
        for record in run.control.iter_mut().chain(run.disrupted.iter_mut()) {
            record.scenario = "login".into();
        }
        // A flow that failed without the disruption is not judged, and no baseline fails.
        run.control.insert(0, user("orders", 9, r(0, 1), 50.0, Some(500), None));
        let assessment = assess(&plan(ExperimentKind::StoreOutage), &run, &[], &platform());
        assert_eq!(kinds(&assessment), [FindingKind::ReadinessStale]);
        assert!(assessment.baseline.is_none());
        assert!(assessment.candidates[0].observed.reason.contains("scenario `login`"), "{}", assessment.candidates[0].observed.reason);
    }

    /// Vu 7 logs in on r0 (generation 1) and fails to consume its login on `consumer` with
    /// `status`.
    fn login_handoff(scenarios: &[Scenario], consumer: Incarnation, status: u16) -> VuRecord {
        let login = scenarios.iter().find(|s| s.name == "login").unwrap();
        let consume = login.steps.iter().position(|s| s.consumes.is_some()).unwrap();
        let mut record = VuRecord {
            phase: Phase::Main,
            vu: 7,
            iteration: 0,
            scenario: "login".into(),
            steps: (0..=consume).map(|index| user("login", 7, r(0, 1), index as f64, Some(200), None).steps.remove(0)).collect(),
        };
        for (index, step) in record.steps.iter_mut().enumerate() {
            step.index = index;
        }
        let last = record.steps.last_mut().unwrap();
        last.served_by = Some(consumer);
        last.requests[0].served_by = Some(consumer);
        last.requests[0].status = Some(status);
        last.outcome = Outcome::Failed {
            expected: "status 200".into(),
            observed: Observed {
                status: Some(status),
                reason: "turned away".into(),
                ..Observed::default()
            },
        };
        record
    }

    #[test]
    fn a_restart_finding_needs_the_artifact_to_cross_nothing_but_the_restart() {
        use crate::scenario::fixtures::demo_scenarios;
        let scenarios = demo_scenarios();
        let handoff = |consumer: Incarnation| login_handoff(&scenarios, consumer, 302);
        let mut run = ExperimentRun::new("rolling-restart", Phase::Main);
        run.chaos.push(event(ChaosAction::Sigterm { replica: r(0, 1), killed: false }, 50.0, 60.0));
        run.disrupted = vec![handoff(r(0, 2))];
        let same = assess(&plan(ExperimentKind::RollingRestart), &run, &scenarios, &platform());
        assert_eq!(kinds(&same), [FindingKind::ArtifactLostAfterRestart]);
        run.disrupted = vec![handoff(r(1, 1))];
        let crossed = assess(&plan(ExperimentKind::RollingRestart), &run, &scenarios, &platform());
        assert!(crossed.candidates.is_empty() && crossed.unexplained.is_empty());
        assert_eq!(crossed.notes.len(), 1);

        // The control routed around r0 (not ready on a busy machine) to r1 and failed
        // there: no control at all, neither a baseline failure nor a finding's evidence.
        let mut control = handoff(r(1, 1));
        control.phase = Phase::Control;
        run.control = vec![control];
        run.disrupted = vec![handoff(r(0, 2))];
        let uncontrolled = assess(&plan(ExperimentKind::RollingRestart), &run, &scenarios, &platform());
        assert_eq!(uncontrolled.baseline, None);
        assert!(uncontrolled.candidates.is_empty(), "{:?}", uncontrolled.candidates);
        assert!(uncontrolled.notes.iter().any(|n| n.contains("vu 7's control was answered by another replica than planned")), "{:?}", uncontrolled.notes);
    }

    #[test]
    fn a_step_that_fails_under_the_same_load_without_the_disruption_is_not_judged_by_it() {
        use crate::scenario::fixtures::demo_scenarios;
        let scenarios = demo_scenarios();
        let mut run = ExperimentRun::new("rolling-restart", Phase::Main);
        run.chaos.push(event(ChaosAction::Sigterm { replica: r(0, 1), killed: false }, 50.0, 60.0));
        run.disrupted = vec![login_handoff(&scenarios, r(0, 2), 302)];
        let rolling = plan(ExperimentKind::RollingRestart);

        // Under the load alone, a user that stayed on r0 was turned away at the same step:
        // the load (a store that evicts what it fills) explains it as well as the restart.
        let mut alone = login_handoff(&scenarios, r(0, 1), 302);
        alone.phase = Phase::Control;
        run.loaded = vec![alone.clone()];
        let loaded = assess(&rolling, &run, &scenarios, &platform());
        assert!(loaded.candidates.is_empty(), "{:?}", loaded.candidates);
        assert!(loaded.notes.iter().any(|n| n.contains("failed under the same load without the disruption too")), "{:?}", loaded.notes);

        // One that crossed replicas under the load, or that got no answer, explains nothing.
        let mut crossed = alone.clone();
        crossed.steps.last_mut().unwrap().planned = ReplicaId(1);
        let mut unanswered = alone;
        unanswered.steps.last_mut().unwrap().requests[0].status = Some(503);
        for other in [crossed, unanswered] {
            run.loaded = vec![other];
            assert_eq!(kinds(&assess(&rolling, &run, &scenarios, &platform())), [FindingKind::ArtifactLostAfterRestart]);
        }
    }

    #[test]
    fn an_unanswered_step_after_a_store_restart_is_lost_data_only_when_a_fresh_user_of_the_flow_passes() {
        use crate::scenario::fixtures::demo_scenarios;
        let scenarios = demo_scenarios();
        let mut run = ExperimentRun::new("store-restart postgres", Phase::Main);
        run.chaos.push(event(ChaosAction::StoreStop { dependency: "postgres".into() }, 50.0, 60.0));
        let restart = plan(ExperimentKind::StoreRestart);

        // Turned away: the login was lost with the store.
        run.disrupted = vec![login_handoff(&scenarios, r(0, 1), 302)];
        assert_eq!(kinds(&assess(&restart, &run, &scenarios, &platform())), [FindingKind::ArtifactLostAfterStoreRestart]);

        // A 503 through the recovery window, and no fresh user got through either: the app
        // did not serve again, which says nothing of what the store kept.
        run.disrupted = vec![login_handoff(&scenarios, r(0, 1), 503)];
        let mut fresh = user("login", 8, r(0, 1), 900.0, Some(503), None);
        run.recovered = vec![fresh.clone()];
        let reconnecting = assess(&restart, &run, &scenarios, &platform());
        assert!(reconnecting.candidates.is_empty() && reconnecting.unexplained.is_empty(), "{:?}", reconnecting.candidates);
        assert!(reconnecting.notes.iter().any(|n| n.contains("did not serve again after the restart")), "{:?}", reconnecting.notes);

        // A fresh user of the flow passed on the same replica: only what vu 7 held fails.
        fresh.steps[0].outcome = Outcome::Passed;
        fresh.steps[0].requests[0].status = Some(200);
        run.recovered = vec![fresh];
        let lost = assess(&restart, &run, &scenarios, &platform());
        assert_eq!(kinds(&lost), [FindingKind::ArtifactLostAfterStoreRestart]);
        assert!(lost.candidates[0].notes.iter().any(|n| n.contains("a fresh user of the same flow then passed on r0")), "{:?}", lost.candidates[0].notes);
    }

    #[test]
    fn a_failing_control_is_a_baseline_failure_and_only_what_shows_twice_is_a_finding() {
        let dropped = || page_user(3, r(0, 1), 800.0, Some(502), Some("reset"));
        let mut broken_control = sigterm_run(vec![dropped()]);
        broken_control.control = vec![page_user(1, r(0, 1), 100.0, Some(502), Some("refused"))];
        let baseline = assess_sigterm(&broken_control);
        assert!(baseline.baseline.is_some());
        let (findings, result) = judge(&baseline, None, 1, &|s| s.to_owned(), "sigterm");
        assert!(findings.is_empty());
        assert_eq!(result.status, ScenarioStatus::BaselineFailed);

        let first = assess_sigterm(&sigterm_run(vec![dropped()]));
        let quiet = assess_sigterm(&sigterm_run(Vec::new()));
        let (findings, result) = judge(&first, Some(&quiet), 1, &|s| s.to_owned(), "sigterm");
        assert!(findings.is_empty());
        assert_eq!(result.unconfirmed, 1);
        assert!(result.notes.iter().any(|n| n.starts_with("seen once, not again: inflight-dropped at ")), "{:?}", result.notes);
        let again = assess_sigterm(&sigterm_run(vec![dropped()]));
        let (findings, result) = judge(&first, Some(&again), 1, &|s| format!("--scenarios {s}"), "sigterm");
        assert_eq!(result.status, ScenarioStatus::Failed);
        let [finding] = findings.as_slice() else { panic!("{findings:?}") };
        assert_eq!(finding.kind, FindingKind::InflightDropped);
        assert_eq!(finding.after.as_ref().unwrap().action, "SIGTERM to r0");
        assert_eq!(finding.reproduce, "--scenarios sigterm");
    }
}

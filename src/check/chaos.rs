//! Chaos findings: what an experiment's record shows. Every failure is explained by the
//! disruption it met (a request in flight when SIGTERM arrived, a request that reached a
//! draining replica, an artifact used across a restart), or it is unexplained and the
//! experiment is an error. A finding needs the experiment's control to have passed, and
//! the experiment's second run to show it again.

use std::collections::BTreeMap;
use std::time::Duration;

use super::finding::{ArtifactEvidence, FindingKind};
use super::twice::{Assessment, Candidate};
use crate::chaos::experiment::{PAGE_SCENARIO, SLOW_SCENARIO, STORE_SCENARIO};
use crate::chaos::{ExperimentKind, ExperimentPlan};
use crate::cluster::replica::Incarnation;
use crate::history::{ChaosAction, ChaosEvent, ExperimentRun, Observed, Outcome, Probe, ProbePurpose, RequestRecord, StepRecord, VuRecord};
use crate::scenario::Scenario;

pub fn assess(plan: &ExperimentPlan, run: &ExperimentRun, scenarios: &[Scenario], delay: Duration) -> Assessment {
    let mut assessment = Assessment {
        error: run.error.clone(),
        users: run.users().count() as u32,
        requests: run.users().flat_map(|u| &u.steps).map(|s| s.requests.len()).sum(),
        ..Assessment::default()
    };
    assessment.baseline = baseline(run);
    let mut found: BTreeMap<(FindingKind, String, String), Candidate> = BTreeMap::new();
    let mut add = |candidate: Candidate| {
        found
            .entry(candidate.key())
            .and_modify(|c| c.occurrences += 1)
            .or_insert(candidate);
    };
    for event in &run.chaos {
        if let ChaosAction::Sigterm { replica, killed: true } = event.action {
            add(overran_grace(run, replica, event));
        }
    }
    for candidate in probe_findings(run) {
        add(candidate);
    }
    let disruption = Disruption { run, delay };
    for record in run.disrupted.iter().chain(&run.load) {
        match disruption.explain(plan, record, scenarios) {
            Explained::Candidate(candidate) => add(*candidate),
            Explained::Expected | Explained::Passed => {}
            Explained::Unexplained(why) => assessment.unexplained.push(why),
        }
    }
    assessment.candidates = found.into_values().collect();
    assessment
}

/// Why the control failed, if it did.
fn baseline(run: &ExperimentRun) -> Option<String> {
    for record in &run.control {
        if let Some(step) = record.first_failure() {
            return Some(format!("without the disruption, vu {} failed step `{}` too: {}", record.vu, step.name, describe(step)));
        }
    }
    run.probes
        .iter()
        .find(|p| p.purpose == ProbePurpose::ReadyBefore && !p.said_ready())
        .map(|p| format!("{} was not ready before the disruption ({})", p.replica, probe_result(p)))
}

fn overran_grace(run: &ExperimentRun, replica: Incarnation, event: &ChaosEvent) -> Candidate {
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
        artifact: no_artifact(),
        vu: None,
        at_ms: None,
        occurrences: 1,
    }
}

/// Readiness that said ready too early, or while the replica could not serve.
fn probe_findings(run: &ExperimentRun) -> Vec<Candidate> {
    let mut found = Vec::new();
    let sigterm_of = |replica: Incarnation| run.chaos.iter().find(|e| matches!(e.action, ChaosAction::Sigterm { replica: r, .. } if r == replica));
    let start_of = |replica: Incarnation| run.chaos.iter().find(|e| e.action == ChaosAction::Start { replica });
    let store_stop = run.chaos.iter().find(|e| e.action == ChaosAction::StoreStop);
    for probe in &run.probes {
        match probe.purpose {
            ProbePurpose::FirstPage if !probe.served() => {
                let later = run.probes.iter().find(|p| p.purpose == ProbePurpose::LaterPage && p.replica == probe.replica && p.served());
                if let (Some(later), Some(started)) = (later, start_of(probe.replica)) {
                    found.push(Candidate {
                        kind: FindingKind::ReadinessPremature,
                        scenario: run.experiment.clone(),
                        step: "first request after ready".into(),
                        producer: probe.replica,
                        consumer: probe.replica,
                        after: Some(started.clone()),
                        expected: format!("a replica that says ready serves GET {}", probe.path),
                        observed: observed_probe(probe, "right after readiness passed"),
                        control: format!("the same page was served {:.0} ms later", later.at_ms - probe.at_ms),
                        artifact: no_artifact(),
                        vu: None,
                        at_ms: None,
                        occurrences: 1,
                    });
                }
            }
            ProbePurpose::ReadyDraining if probe.said_ready() => {
                if let Some(sigterm) = sigterm_of(probe.replica) {
                    found.push(Candidate {
                        kind: FindingKind::ReadinessStale,
                        scenario: run.experiment.clone(),
                        step: "readiness while draining".into(),
                        producer: probe.replica,
                        consumer: probe.replica,
                        after: Some(sigterm.clone()),
                        expected: "readiness fails once SIGTERM has arrived".into(),
                        observed: observed_probe(probe, &format!("{:.0} ms after SIGTERM", probe.at_ms - sigterm.start_ms)),
                        control: "readiness said ready before SIGTERM".into(),
                        artifact: no_artifact(),
                        vu: None,
                        at_ms: None,
                        occurrences: 1,
                    });
                }
            }
            ProbePurpose::ReadyStoreDown if probe.said_ready() => {
                let failed_request = run
                    .disrupted
                    .iter()
                    .filter(|u| u.scenario == STORE_SCENARIO)
                    .find(|u| u.steps.first().and_then(|s| s.served_by) == Some(probe.replica) && u.first_failure().is_some());
                if let (Some(user), Some(stop)) = (failed_request, store_stop) {
                    let step = &user.steps[0];
                    found.push(Candidate {
                        kind: FindingKind::ReadinessStale,
                        scenario: run.experiment.clone(),
                        step: "readiness while the store is down".into(),
                        producer: probe.replica,
                        consumer: probe.replica,
                        after: Some(stop.clone()),
                        expected: "readiness fails while a request that needs the store fails".into(),
                        observed: Observed {
                            reason: format!("readiness answered {} while a request that needs the store got {}", probe_result(probe), describe(step)),
                            ..Observed::default()
                        },
                        control: "with the store up, readiness said ready and the same request passed".into(),
                        artifact: no_artifact(),
                        vu: Some(user.vu),
                        at_ms: step.requests.last().map(|r| r.start_ms),
                        occurrences: 1,
                    });
                }
            }
            _ => {}
        }
    }
    found
}

/// How a user's failure relates to the disruption.
enum Explained {
    Passed,
    /// A casualty of a disruption that spares nobody (SIGKILL, a pause, a store outage).
    Expected,
    Candidate(Box<Candidate>),
    Unexplained(String),
}

struct Disruption<'a> {
    run: &'a ExperimentRun,
    delay: Duration,
}

impl Disruption<'_> {
    fn explain(&self, plan: &ExperimentPlan, record: &VuRecord, scenarios: &[Scenario]) -> Explained {
        let Some(step) = record.first_failure() else { return Explained::Passed };
        let failed_request = step.requests.last();
        if record.scenario == STORE_SCENARIO {
            // Requests that need the store fail while it is down; readiness is what is judged.
            return Explained::Expected;
        }
        if let Some(request) = failed_request.filter(|r| unanswered(r)) {
            if let Some(candidate) = self.shutdown_casualty(record, step, request) {
                return Explained::Candidate(Box::new(candidate));
            }
            if let Some(candidate) = self.premature_casualty(record, step, request) {
                return Explained::Candidate(Box::new(candidate));
            }
            if self.killed_or_paused(request) {
                return Explained::Expected;
            }
        }
        if let Some(candidate) = self.lost_artifact(plan, record, step, scenarios) {
            return Explained::Candidate(Box::new(candidate));
        }
        Explained::Unexplained(format!("vu {} ({}) step `{}`: {}", record.vu, record.scenario, step.name, describe(step)))
    }

    /// A request that failed on an incarnation that got SIGTERM: in flight when it arrived,
    /// or sent while the balancer still routed to it.
    fn shutdown_casualty(&self, record: &VuRecord, step: &StepRecord, request: &RequestRecord) -> Option<Candidate> {
        let replica = request.served_by?;
        let sigterm = self.run.chaos.iter().find(|e| matches!(e.action, ChaosAction::Sigterm { replica: r, .. } if r == replica))?;
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
        let window_end = deregistered.unwrap_or(sigterm.start_ms + self.delay.as_secs_f64() * 1000.0);
        let (kind, expected) = if request.start_ms < sigterm.start_ms {
            (FindingKind::InflightDropped, "a request in flight when SIGTERM arrives completes")
        } else if request.start_ms <= window_end {
            (FindingKind::RefusedDuringDeregistration, "a replica keeps serving while the balancer still routes to it after SIGTERM")
        } else {
            return None;
        };
        // The experiment's own requests are named by what they asked for.
        let own = record.scenario == SLOW_SCENARIO || record.scenario == PAGE_SCENARIO;
        let (scenario, step_name) = if own { (self.run.experiment.clone(), request_label(request)) } else { (record.scenario.clone(), step.name.clone()) };
        Some(Candidate {
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
            artifact: no_artifact(),
            vu: Some(record.vu),
            at_ms: Some(request.start_ms),
            occurrences: 1,
        })
    }

    /// A request that failed on an incarnation that said ready before it could serve.
    fn premature_casualty(&self, record: &VuRecord, step: &StepRecord, request: &RequestRecord) -> Option<Candidate> {
        let replica = request.served_by?;
        let first = self.run.probes.iter().find(|p| p.purpose == ProbePurpose::FirstPage && p.replica == replica && !p.served())?;
        let later = self.run.probes.iter().find(|p| p.purpose == ProbePurpose::LaterPage && p.replica == replica && p.served())?;
        if request.start_ms > later.at_ms {
            return None;
        }
        let started = self.run.chaos.iter().find(|e| e.action == ChaosAction::Start { replica })?;
        Some(Candidate {
            kind: FindingKind::ReadinessPremature,
            scenario: self.run.experiment.clone(),
            step: "first request after ready".into(),
            producer: replica,
            consumer: replica,
            after: Some(started.clone()),
            expected: format!("a replica that says ready serves GET {}", first.path),
            observed: Observed {
                status: request.status,
                reason: format!("vu {} step `{}` failed on {replica} before it could serve", record.vu, step.name),
                ..Observed::default()
            },
            control: format!("{replica} served the same page {:.0} ms later", later.at_ms - first.at_ms),
            artifact: no_artifact(),
            vu: Some(record.vu),
            at_ms: Some(request.start_ms),
            occurrences: 1,
        })
    }

    /// Something one incarnation handed out that did not work on another after the
    /// disruption: the artifact the failed step consumes, or else whatever the latest
    /// request served elsewhere left (a redirect can cross incarnations within a step).
    fn lost_artifact(&self, plan: &ExperimentPlan, record: &VuRecord, step: &StepRecord, scenarios: &[Scenario]) -> Option<Candidate> {
        let Outcome::Failed { expected, observed } = &step.outcome else { return None };
        let scenario = scenarios.iter().find(|s| s.name == record.scenario)?;
        let requests: Vec<(usize, &RequestRecord)> = record.steps[..=step.index].iter().flat_map(|s| s.requests.iter().map(move |r| (s.index, r))).collect();
        let consumer = requests.iter().rev().find_map(|(_, r)| r.served_by)?;
        // After a store restart, the store lost it: producer and consumer may be one replica.
        let same_replica_counts = plan.kind == ExperimentKind::StoreRestart;
        let declared = scenario.steps.get(step.index)?.consumes.as_ref().and_then(|artifact| {
            let index = scenario.producer_of(artifact, step.index)?;
            let producer = record.steps.get(index)?.served_by.filter(|p| same_replica_counts || *p != consumer)?;
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
            ExperimentKind::StoreRestart => (FindingKind::ArtifactLostAfterStoreRestart, self.first(|a| *a == ChaosAction::StoreStop)?),
            ExperimentKind::ScaleOut => {
                (FindingKind::for_artifact(artifact), self.first(|a| matches!(a, ChaosAction::Start { replica } if *replica == consumer))?)
            }
            ExperimentKind::Restart | ExperimentKind::Kill | ExperimentKind::RollingRestart => {
                let stopped = |a: &ChaosAction| matches!(a, ChaosAction::Sigterm { replica, .. } | ChaosAction::Kill { replica } if *replica == producer);
                (FindingKind::ArtifactLostAfterRestart, self.first(stopped)?)
            }
            _ => return None,
        };
        let produced = record.steps.get(producer_step)?;
        Some(Candidate {
            kind,
            scenario: record.scenario.clone(),
            step: step.name.clone(),
            producer,
            consumer,
            after: Some(after.clone()),
            expected: expected.clone(),
            observed: observed.clone(),
            control: format!("the same steps, every one on {}, without the disruption, passed", producer.id),
            artifact: ArtifactEvidence {
                kind: artifact.map_or_else(|| "none".to_owned(), |a| a.0.clone()),
                cookies: produced.set_cookies.clone(),
                captured: produced.captured.clone(),
            },
            vu: Some(record.vu),
            at_ms: step.requests.last().map(|r| r.start_ms),
            occurrences: 1,
        })
    }

    fn first(&self, matches: impl Fn(&ChaosAction) -> bool) -> Option<&ChaosEvent> {
        self.run.chaos.iter().find(|e| matches(&e.action))
    }

    /// Whether the request's replica was killed or paused before the request ended.
    fn killed_or_paused(&self, request: &RequestRecord) -> bool {
        let Some(replica) = request.served_by else { return false };
        self.run.chaos.iter().any(|e| {
            matches!(e.action, ChaosAction::Kill { replica: r } | ChaosAction::Pause { replica: r } if r == replica) && e.start_ms <= request.end_ms
        })
    }
}

/// No answer from the app: a transport error, a balancer error, a cut body, or a 5xx.
fn unanswered(request: &RequestRecord) -> bool {
    request.error.is_some() || request.status.is_some_and(|s| s >= 500)
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

/// The probe's answer is the whole observation; its status is in the reason.
fn observed_probe(probe: &Probe, when: &str) -> Observed {
    Observed {
        reason: format!("GET {} answered {} {when}", probe.path, probe_result(probe)),
        ..Observed::default()
    }
}

fn no_artifact() -> ArtifactEvidence {
    ArtifactEvidence {
        kind: "none".into(),
        cookies: Vec::new(),
        captured: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::{ExperimentKind, ExperimentPlan};
    use crate::check::ScenarioStatus;
    use crate::check::twice::judge;
    use crate::cluster::replica::ReplicaId;
    use crate::history::Phase;

    const DELAY: Duration = Duration::from_millis(500);

    fn r(id: u16, generation: u32) -> Incarnation {
        Incarnation { id: ReplicaId(id), generation }
    }

    fn plan(kind: ExperimentKind) -> ExperimentPlan {
        ExperimentPlan {
            kind,
            victim: ReplicaId(0),
            handoffs: Vec::new(),
            load: None,
        }
    }

    fn event(action: ChaosAction, start_ms: f64, end_ms: f64) -> ChaosEvent {
        ChaosEvent { action, start_ms, end_ms }
    }

    /// A one-request user of the experiment's page scenario, served by `replica`.
    fn page_user(vu: u32, replica: Incarnation, start_ms: f64, status: Option<u16>, error: Option<&str>) -> VuRecord {
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
        let outcome = match error {
            Some(message) => Outcome::Error { message: message.into() },
            None => Outcome::Passed,
        };
        VuRecord {
            phase: Phase::Main,
            vu,
            iteration: 0,
            scenario: PAGE_SCENARIO.into(),
            steps: vec![StepRecord {
                index: 0,
                name: "page".into(),
                planned: replica.id,
                served_by: Some(replica),
                also_reached: Vec::new(),
                requests: vec![request],
                outcome,
                set_cookies: Vec::new(),
                captured: Vec::new(),
            }],
        }
    }

    /// SIGTERM to r0 at 1000 ms, deregistered at 1500 ms; r0 served vu 1 before.
    fn sigterm_run(users: Vec<VuRecord>) -> ExperimentRun {
        let mut run = ExperimentRun::new("sigterm", Phase::Main);
        run.control = vec![page_user(1, r(0, 1), 100.0, Some(200), None)];
        run.chaos = vec![
            event(ChaosAction::Sigterm { replica: r(0, 1), killed: false }, 1000.0, 1200.0),
            event(ChaosAction::Deregister { replica: r(0, 1) }, 1500.0, 1500.0),
        ];
        run.disrupted = users;
        run
    }

    fn kinds(assessment: &Assessment) -> Vec<FindingKind> {
        assessment.candidates.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn failures_around_sigterm_are_in_flight_or_refused_by_when_they_started() {
        let refused = page_user(2, r(0, 1), 1200.0, Some(502), Some("the balancer answered 502: r0: connection refused"));
        let dropped = page_user(3, r(0, 1), 900.0, Some(502), Some("the balancer answered 502: r0: connection reset"));
        let assessment = assess(&plan(ExperimentKind::Sigterm), &sigterm_run(vec![refused, dropped]), &[], DELAY);
        assert_eq!(kinds(&assessment), [FindingKind::InflightDropped, FindingKind::RefusedDuringDeregistration]);
        assert!(assessment.unexplained.is_empty() && assessment.baseline.is_none());
        let refused = &assessment.candidates[1];
        assert_eq!(refused.control, "r0 served vu 1 before SIGTERM");
        assert_eq!(refused.scenario, "sigterm");
        assert_eq!(refused.step, "GET /");
    }

    #[test]
    fn a_failure_after_deregistration_is_not_explained_by_it() {
        let late = page_user(2, r(0, 1), 1600.0, Some(502), Some("the balancer answered 502: r0: connection refused"));
        let assessment = assess(&plan(ExperimentKind::Sigterm), &sigterm_run(vec![late]), &[], DELAY);
        assert!(assessment.candidates.is_empty());
        assert_eq!(assessment.unexplained.len(), 1);
    }

    #[test]
    fn a_replica_never_seen_serving_gives_no_shutdown_finding() {
        let mut run = sigterm_run(vec![page_user(2, r(0, 1), 1200.0, Some(502), Some("refused"))]);
        run.control.clear();
        let assessment = assess(&plan(ExperimentKind::Sigterm), &run, &[], DELAY);
        assert!(assessment.candidates.is_empty(), "no control, no finding");
    }

    #[test]
    fn a_kill_after_the_grace_and_readiness_while_draining_are_findings() {
        let mut run = sigterm_run(Vec::new());
        run.chaos[0].action = ChaosAction::Sigterm { replica: r(0, 1), killed: true };
        run.probes.push(Probe {
            purpose: ProbePurpose::ReadyDraining,
            replica: r(0, 1),
            path: "/healthz/ready".into(),
            at_ms: 1250.0,
            status: Some(200),
            error: None,
        });
        let assessment = assess(&plan(ExperimentKind::Sigterm), &run, &[], DELAY);
        assert_eq!(kinds(&assessment), [FindingKind::ReadinessStale, FindingKind::ShutdownOverranGrace]);
    }

    #[test]
    fn a_page_that_fails_right_after_ready_and_works_later_is_premature_readiness() {
        let mut run = ExperimentRun::new("restart", Phase::Main);
        run.chaos.push(event(ChaosAction::Start { replica: r(0, 2) }, 100.0, 150.0));
        let probe = |purpose, at_ms, status| Probe {
            purpose,
            replica: r(0, 2),
            path: "/".into(),
            at_ms,
            status: Some(status),
            error: None,
        };
        run.probes = vec![probe(ProbePurpose::FirstPage, 151.0, 503), probe(ProbePurpose::LaterPage, 560.0, 200)];
        let assessment = assess(&plan(ExperimentKind::Restart), &run, &[], DELAY);
        assert_eq!(kinds(&assessment), [FindingKind::ReadinessPremature]);
        assert_eq!(assessment.candidates[0].control, "the same page was served 409 ms later");
    }

    #[test]
    fn a_failing_control_is_a_baseline_failure_and_only_what_shows_twice_is_a_finding() {
        let dropped = || page_user(3, r(0, 1), 900.0, Some(502), Some("reset"));
        let mut broken_control = sigterm_run(vec![dropped()]);
        broken_control.control = vec![page_user(1, r(0, 1), 100.0, Some(502), Some("refused"))];
        let baseline = assess(&plan(ExperimentKind::Sigterm), &broken_control, &[], DELAY);
        assert!(baseline.baseline.is_some());
        let (findings, result) = judge(&baseline, None, 1, &|s| s.to_owned(), "sigterm");
        assert!(findings.is_empty());
        assert_eq!(result.status, ScenarioStatus::BaselineFailed);

        let first = assess(&plan(ExperimentKind::Sigterm), &sigterm_run(vec![dropped()]), &[], DELAY);
        let quiet = assess(&plan(ExperimentKind::Sigterm), &sigterm_run(Vec::new()), &[], DELAY);
        let (findings, result) = judge(&first, Some(&quiet), 1, &|s| s.to_owned(), "sigterm");
        assert!(findings.is_empty());
        assert_eq!(result.unconfirmed, 1);
        let again = assess(&plan(ExperimentKind::Sigterm), &sigterm_run(vec![dropped()]), &[], DELAY);
        let (findings, result) = judge(&first, Some(&again), 1, &|s| format!("--scenarios {s}"), "sigterm");
        assert_eq!(result.status, ScenarioStatus::Failed);
        let [finding] = findings.as_slice() else { panic!("{findings:?}") };
        assert_eq!(finding.kind, FindingKind::InflightDropped);
        assert_eq!(finding.after.as_ref().unwrap().action, "SIGTERM to r0");
        assert_eq!(finding.reproduce, "--scenarios sigterm");
    }
}

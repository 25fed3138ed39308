//! The verdict on explored schedules: which faults one run of a schedule shows, and
//! whether a fault holds up against its control and a second run. It reads schedules and
//! what running them recorded, nothing else.
//!
//! A user's failure is placed as the planned users' are (`check::locate`): an artifact one
//! replica handed out and another refused is a cross-replica fault, whose control is the
//! same schedule with that user's steps all on the producer. An artifact refused by the
//! next incarnation of the replica that made it, or by the same replica after the store
//! restarted, is a fault of the disruption, whose control is the schedule without
//! disruptions. A failure with nothing crossing is the app's own.
//!
//! A trigger's user passes its one step when a replica accepts the work; the work is judged
//! by its delivery. Accepted work nobody delivered after a replica was terminated and
//! replaced between (a restart) is a fault of the disruption, like an artifact lost in one:
//! its control is the schedule without disruptions, in which it must be delivered.

use serde::{Deserialize, Serialize};

use super::finding::{ArtifactEvidence, Control, ControlResult, FindingKind};
use super::{Candidate, Locus};
use crate::chaos::experiment::trigger_scenario;
use crate::history::{Observed, Outcome, ScheduleRun, VuRecord};
use crate::plan::interleaving::{Disruption, Event, Schedule};
use crate::scenario::Scenario;
use crate::target::Triggered;
use crate::vocab::finding::Artifact;
use crate::vocab::replica::{Incarnation, ReplicaId};

/// What explored runs are judged against: the scenarios their users ran, and the work
/// their triggers handed over.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub scenarios: &'a [Scenario],
    pub triggered: &'a [Triggered],
}

impl<'a> Subject<'a> {
    /// Scenarios alone, with no background work.
    pub fn of(scenarios: &'a [Scenario]) -> Self {
        Subject { scenarios, triggered: &[] }
    }
}

/// What makes two faults the same while a schedule shrinks, and across explorations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FaultKey {
    pub kind: FindingKind,
    pub scenario: String,
    pub step: usize,
}

/// A failure one run of a schedule showed, waiting for its control.
#[derive(Debug, Clone)]
pub struct Fault {
    pub key: FaultKey,
    /// The schedule's user that failed.
    pub user: u32,
    pub candidate: Candidate,
    pub control: ControlPlan,
    /// The disruption a fault of the disruption followed, in words.
    pub after: Option<String>,
    /// The user's step that produced what the failing step consumed.
    pub producer_step: usize,
}

impl Fault {
    /// The controls that must pass for the fault to be one: its own, and for a crossing,
    /// the same user with every step on the replica that refused, since a replica that
    /// fails the flow alone shows no cross-replica fault.
    pub fn controls(&self) -> Vec<ControlPlan> {
        match self.control {
            ControlPlan::Pinned(producer) if self.candidate.consumer.id != producer => vec![self.control, ControlPlan::Pinned(self.candidate.consumer.id)],
            control => vec![control],
        }
    }

    /// The same failure, blamed on a disruption instead of the crossing: for when the
    /// crossing's control failed too, and the store restarted, or the producing replica
    /// restarted, between the artifact's making and its refusal.
    pub fn recast(&self, schedule: &Schedule) -> Option<Fault> {
        let (start, end) = (schedule.position(self.user, self.producer_step)?, schedule.position(self.user, self.key.step)?);
        let producer = self.candidate.producer.id;
        let disruption = schedule.events[start..end].iter().rev().find_map(|e| match e {
            Event::Disrupt(d @ Disruption::StoreRestart) => Some(*d),
            Event::Disrupt(d @ (Disruption::Restart(r) | Disruption::Kill(r))) if *r == producer => Some(*d),
            _ => None,
        })?;
        let kind = match disruption {
            Disruption::StoreRestart => FindingKind::ArtifactLostAfterStoreRestart,
            Disruption::Restart(_) | Disruption::Kill(_) => FindingKind::ArtifactLostAfterRestart,
        };
        Some(Fault {
            key: FaultKey { kind, ..self.key.clone() },
            control: ControlPlan::Undisturbed,
            after: Some(Event::Disrupt(disruption).to_string()),
            ..self.clone()
        })
    }
}

/// The one thing a control takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlPlan {
    /// Every step of the user on this replica.
    Pinned(ReplicaId),
    /// No disruptions.
    Undisturbed,
}

impl ControlPlan {
    pub fn schedule(self, schedule: &Schedule, user: u32) -> Schedule {
        match self {
            ControlPlan::Pinned(replica) => schedule.pinned(user, replica),
            ControlPlan::Undisturbed => schedule.undisturbed(),
        }
    }
}

/// What one run of a schedule showed.
#[derive(Debug, Default)]
pub struct CaseVerdict {
    pub faults: Vec<Fault>,
    /// Failures with nothing crossing: (scenario, what happened).
    pub own: Vec<(String, String)>,
    /// Requests that got no answer to judge, and disruptions that could not be done.
    pub errors: Vec<(String, String)>,
}

pub fn judge(subject: Subject<'_>, run: &ScheduleRun) -> CaseVerdict {
    let scenarios = subject.scenarios;
    let mut verdict = CaseVerdict::default();
    judge_work(subject, run, &mut verdict);
    if let Some(error) = &run.disruptions.error {
        verdict.errors.push(("explore".into(), error.clone()));
    }
    for record in &run.users {
        let Some(scenario) = scenarios.iter().find(|s| s.name == record.scenario) else { continue };
        let Some(failed) = record.first_failure() else { continue };
        let user = record.vu - run.first_vu;
        let (expected, observed) = match &failed.outcome {
            Outcome::Failed { expected, observed } => (expected, observed),
            Outcome::Error { message } => {
                verdict.errors.push((record.scenario.clone(), format!("u{user} step `{}`: {message}", failed.name)));
                continue;
            }
            Outcome::Passed => continue,
        };
        let (producer_step, producer, consumer, artifact, kind, control) = match super::locate(scenario, record, failed) {
            Locus::Handoff { producer, consumer, artifact, .. } if producer.id == consumer.id && artifact.as_ref().is_some_and(Artifact::pinned) => {
                verdict.own.push((record.scenario.clone(), format!("u{user}'s transport session did not outlive its replica, as no connection does")));
                continue;
            }
            Locus::Handoff {
                producer_step,
                producer,
                consumer,
                artifact,
            } => {
                let (kind, control) = if producer.id == consumer.id {
                    (FindingKind::ArtifactLostAfterRestart, ControlPlan::Undisturbed)
                } else {
                    (FindingKind::for_artifact(artifact.as_ref()), ControlPlan::Pinned(producer.id))
                };
                (producer_step, producer, consumer, artifact, kind, control)
            }
            Locus::OneReplica(served) => {
                let artifact = scenario.steps[failed.index].consumes.clone();
                let producer_step = artifact.as_ref().and_then(|a| scenario.producer_of(a, failed.index)).unwrap_or(0);
                // A 5xx right after a store restart is an app still reconnecting, not lost
                // data (the store-restart experiment asks such a step again until answered).
                match (served, store_restarted(&run.schedule, user, producer_step, failed.index)) {
                    (Some(replica), true) if !failed.unanswered() => (producer_step, replica, replica, artifact, FindingKind::ArtifactLostAfterStoreRestart, ControlPlan::Undisturbed),
                    _ => {
                        verdict.own.push((record.scenario.clone(), format!("u{user} failed step `{}` on one replica: {observed}", failed.name)));
                        continue;
                    }
                }
            }
        };
        let after = (control == ControlPlan::Undisturbed).then(|| disruption_before(&run.schedule, user, failed.index)).flatten();
        verdict.faults.push(Fault {
            key: FaultKey {
                kind,
                scenario: record.scenario.clone(),
                step: failed.index,
            },
            user,
            candidate: Candidate {
                scenario: record.scenario.clone(),
                step: failed.index,
                step_name: failed.name.clone(),
                producer,
                consumer,
                evidence: super::evidence(record, producer_step, failed.index, artifact.as_ref()),
                artifact,
                expected: expected.clone(),
                observed: observed.clone(),
                vu: record.vu,
                at_ms: failed.requests.last().map(|r| r.start_ms),
                occurrences: 1,
            },
            control,
            after,
            producer_step,
        });
    }
    verdict
}

/// Triggers accepted and never delivered: after a restart, faults of the disruption;
/// undisturbed, the app's own. Work lost after a kill or a store restart is not judged:
/// the kind speaks of shutdown, which a kill does not give time for.
fn judge_work(subject: Subject<'_>, run: &ScheduleRun, verdict: &mut CaseVerdict) {
    for record in &run.users {
        let Some(flow) = subject.triggered.iter().find(|f| trigger_scenario(&f.name) == record.scenario) else { continue };
        let Some(accepter) = undelivered(flow, run, record) else { continue };
        let user = record.vu - run.first_vu;
        let within = humantime::format_duration(flow.within);
        let Some(start) = run.schedule.position(user, 0) else { continue };
        let after = &run.schedule.events[start..];
        let restart = after.iter().find_map(|e| match e {
            Event::Disrupt(d @ Disruption::Restart(_)) => Some(*d),
            _ => None,
        });
        let Some(restart) = restart else {
            if !after.iter().any(|e| matches!(e, Event::Disrupt(_))) {
                verdict.own.push((record.scenario.clone(), format!("u{user}'s trigger, accepted by {accepter}, was never delivered within {within}, undisturbed")));
            }
            continue;
        };
        let at_ms = record.steps.first().and_then(|s| s.requests.last()).map(|r| r.end_ms);
        verdict.faults.push(Fault {
            key: FaultKey { kind: FindingKind::WorkLostAtShutdown, scenario: record.scenario.clone(), step: 0 },
            user,
            candidate: Candidate {
                scenario: record.scenario.clone(),
                step: 0,
                step_name: flow.name.clone(),
                producer: accepter,
                consumer: accepter,
                artifact: None,
                evidence: ArtifactEvidence::named("none"),
                expected: format!("work `{}` a replica accepted is delivered within {within}, by it or another, though a replica is terminated", flow.name),
                observed: Observed {
                    reason: format!("{accepter} accepted u{user}'s trigger{}; after {}, no replica delivered it ({}) within {within}", at_ms.map(|t| format!(" at {t:.0} ms")).unwrap_or_default(), Event::Disrupt(restart), flow.deliveries),
                    ..Observed::default()
                },
                vu: record.vu,
                at_ms,
                occurrences: 1,
            },
            control: ControlPlan::Undisturbed,
            after: Some(Event::Disrupt(restart).to_string()),
            producer_step: 0,
        });
    }
}

/// The replica that accepted the trigger `record` sent, when nobody delivered its work.
fn undelivered(flow: &Triggered, run: &ScheduleRun, record: &VuRecord) -> Option<Incarnation> {
    let step = record.steps.first().filter(|s| matches!(s.outcome, Outcome::Passed))?;
    let trigger = run.disruptions.triggers.iter().find(|t| t.vu == record.vu)?;
    // What the sink refused past its bounds might have been it: not judged.
    let deliveries = run.disruptions.deliveries.as_ref().filter(|d| d.refused.is_empty())?;
    let delivered = deliveries.kept.iter().any(|d| d.what.is(&flow.deliveries) && d.what.carries(&trigger.value));
    if delivered { None } else { step.served_by }
}

/// The fault with `key` that the run shows, as judged or blamed on a disruption between
/// (`Fault::recast`): what shrinking and a second run look for.
pub fn find(subject: Subject<'_>, run: &ScheduleRun, key: &FaultKey) -> Option<Fault> {
    judge(subject, run).faults.into_iter().find_map(|fault| {
        if fault.key == *key {
            return Some(fault);
        }
        fault.recast(&run.schedule).filter(|recast| recast.key == *key)
    })
}

/// Whether the store restarted between the user's steps `from` and `to`.
fn store_restarted(schedule: &Schedule, user: u32, from: usize, to: usize) -> bool {
    let (Some(start), Some(end)) = (schedule.position(user, from), schedule.position(user, to)) else { return false };
    schedule.events[start..end].iter().any(|e| matches!(e, Event::Disrupt(Disruption::StoreRestart)))
}

/// The last disruption before the user's step `step`, in words.
fn disruption_before(schedule: &Schedule, user: u32, step: usize) -> Option<String> {
    let end = schedule.position(user, step)?;
    schedule.events[..end].iter().rev().find_map(|e| match e {
        Event::Disrupt(_) => Some(e.to_string()),
        Event::Step { .. } => None,
    })
}

/// What became of a fault once its control and a second run of its schedule ran.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmation {
    /// The control passed and the fault happened again: a finding.
    Confirmed(Control),
    /// The control failed too: the app's own failure, not a cross-instance one.
    ControlFailed(String),
    /// The control passed, but the schedule did not fail the same way again.
    NotReproduced,
    /// The control or the second run got no answer to judge.
    Error(String),
    /// Neither the crossing's control nor the disruption's passed: each explanation alone
    /// falls short. Not a finding, and no proof of a failure on one replica either.
    Unexplained(String),
}

/// Judges a fault by its control runs and its reproduction (the same schedule again). The
/// controls are `fault.controls()`, in that order, each with its run.
pub fn confirm(fault: &Fault, subject: Subject<'_>, controls: &[(ControlPlan, &ScheduleRun)], reproduction: &ScheduleRun) -> Confirmation {
    let runs = controls.iter().map(|(_, run)| *run).chain([reproduction]);
    if let Some(error) = runs.into_iter().find_map(|run| run.disruptions.error.as_ref()) {
        return Confirmation::Error(error.clone());
    }
    let mut first_user = None;
    for (plan, control) in controls {
        let Some(user) = control.user(fault.user) else { return Confirmation::Error("the control's user did not run".into()) };
        if let Some(message) = first_error(user) {
            return Confirmation::Error(format!("control run ({}): {message}", describe(*plan, fault.user)));
        }
        if let Some(failed) = user.first_failure().filter(|f| f.index <= fault.key.step) {
            let observed = match &failed.outcome {
                Outcome::Failed { observed, .. } => observed.to_string(),
                _ => String::new(),
            };
            return Confirmation::ControlFailed(format!("the control ({}) failed step `{}` too: {observed}", describe(*plan, fault.user), failed.name));
        }
        let flow = subject.triggered.iter().find(|f| trigger_scenario(&f.name) == user.scenario);
        if let Some(accepter) = flow.and_then(|flow| undelivered(flow, control, user)) {
            return Confirmation::ControlFailed(format!("the control ({}): the trigger {accepter} accepted was never delivered either", describe(*plan, fault.user)));
        }
        first_user.get_or_insert(user.vu);
    }
    let again = find(subject, reproduction, &fault.key)
        .is_some_and(|f| f.candidate.consumer.id == fault.candidate.consumer.id && f.candidate.observed.status == fault.candidate.observed.status);
    if !again {
        return Confirmation::NotReproduced;
    }
    Confirmation::Confirmed(Control {
        result: ControlResult::Passed,
        detail: format!("the same schedule, {}, passed", describe(fault.control, fault.user)),
        pinned_to: match fault.control {
            ControlPlan::Pinned(replica) => Some(replica),
            ControlPlan::Undisturbed => None,
        },
        vu: first_user,
    })
}

fn describe(control: ControlPlan, user: u32) -> String {
    match control {
        ControlPlan::Pinned(replica) => format!("with every step of u{user} on {replica}"),
        ControlPlan::Undisturbed => "without its disruptions".into(),
    }
}

fn first_error(record: &VuRecord) -> Option<String> {
    record.steps.iter().find_map(|s| match &s.outcome {
        Outcome::Error { message } => Some(format!("step `{}`: {message}", s.name)),
        _ => None,
    })
}

/// What the search did, for the report: enough to see that two explorations with one
/// seed drew the same schedules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exploration {
    /// Generated schedules run (a replayed schedule counts as one).
    pub cases: u32,
    /// Simplified schedules tried while shrinking.
    pub shrink_steps: u32,
    /// Each case's schedule, in the order run.
    pub schedules: Vec<String>,
    /// Faults whose control failed too, or that did not happen again: no findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dismissed: Vec<Dismissed>,
    /// Why the search ended before its cases were done (the time budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dismissed {
    #[serde(flatten)]
    pub key: FaultKey,
    pub schedule: Schedule,
    pub why: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ExperimentRun, Observed, Phase, RequestRecord, StepRecord};
    use crate::scenario::fixtures::demo_scenarios;

    fn step(index: usize, served: Incarnation, outcome: Outcome) -> StepRecord {
        StepRecord {
            index,
            name: format!("step {index}"),
            planned: served.id,
            served_by: Some(served),
            also_reached: Vec::new(),
            requests: vec![RequestRecord {
                method: "GET".into(),
                path: "/".into(),
                planned: served.id,
                served_by: Some(served),
                status: match &outcome {
                    Outcome::Failed { observed, .. } => observed.status,
                    _ => Some(200),
                },
                location: None,
                set_cookies: Vec::new(),
                start_ms: index as f64,
                end_ms: index as f64 + 1.0,
                error: None,
            }],
            outcome,
            set_cookies: Vec::new(),
            cookie_shapes: Default::default(),
            captured: Vec::new(),
        }
    }

    fn refused() -> Outcome {
        Outcome::Failed {
            expected: "status 200".into(),
            observed: Observed {
                status: Some(302),
                reason: "turned away".into(),
                ..Observed::default()
            },
        }
    }

    /// A run of `schedule` (one login user, u0) whose steps were served by `served`, the
    /// last one with `last`.
    fn run(schedule: &str, served: &[Incarnation], last: Outcome) -> ScheduleRun {
        let schedule: Schedule = schedule.parse().unwrap();
        let count = served.len();
        let steps = served
            .iter()
            .enumerate()
            .map(|(i, s)| step(i, *s, if i + 1 == count { last.clone() } else { Outcome::Passed }))
            .collect();
        ScheduleRun {
            schedule,
            phase: Phase::Main,
            first_vu: 40,
            users: vec![VuRecord {
                phase: Phase::Main,
                vu: 40,
                iteration: 0,
                scenario: "login".into(),
                steps,
            }],
            disruptions: ExperimentRun::new("explore", Phase::Main),
        }
    }

    fn r(id: u16, generation: u32) -> Incarnation {
        Incarnation { id: ReplicaId(id), generation }
    }

    #[test]
    fn a_cookie_refused_by_another_replica_is_controlled_by_pinning_its_user() {
        let case = run("u0:login/0@r0 u0:login/1@r0 u0:login/2@r1", &[r(0, 1), r(0, 1), r(1, 1)], refused());
        let verdict = judge(Subject::of(&demo_scenarios()), &case);
        let [fault] = verdict.faults.as_slice() else { panic!("{verdict:?}") };
        assert_eq!(fault.key.kind, FindingKind::AuthCookieRejected);
        assert_eq!((fault.user, fault.control), (0, ControlPlan::Pinned(ReplicaId(0))));
        assert_eq!(fault.control.schedule(&case.schedule, 0).to_string(), "u0:login/0@r0 u0:login/1@r0 u0:login/2@r0");

        assert_eq!(fault.controls(), [ControlPlan::Pinned(ReplicaId(0)), ControlPlan::Pinned(ReplicaId(1))]);
        let control = run("u0:login/0@r0 u0:login/1@r0 u0:login/2@r0", &[r(0, 1); 3], Outcome::Passed);
        let consumer = run("u0:login/0@r1 u0:login/1@r1 u0:login/2@r1", &[r(1, 1); 3], Outcome::Passed);
        let controls = |producer, consumer| [(ControlPlan::Pinned(ReplicaId(0)), producer), (ControlPlan::Pinned(ReplicaId(1)), consumer)];
        assert!(matches!(confirm(fault, Subject::of(&demo_scenarios()), &controls(&control, &consumer), &case), Confirmation::Confirmed(_)));
        let failing_control = run("u0:login/0@r0 u0:login/1@r0 u0:login/2@r0", &[r(0, 1); 3], refused());
        assert!(matches!(confirm(fault, Subject::of(&demo_scenarios()), &controls(&failing_control, &consumer), &case), Confirmation::ControlFailed(_)));
        // r1 refuses the flow even alone: no cross-replica fault, whatever r0 does.
        let failing_consumer = run("u0:login/0@r1 u0:login/1@r1 u0:login/2@r1", &[r(1, 1); 3], refused());
        match confirm(fault, Subject::of(&demo_scenarios()), &controls(&control, &failing_consumer), &case) {
            Confirmation::ControlFailed(why) => assert!(why.contains("every step of u0 on r1"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(confirm(fault, Subject::of(&demo_scenarios()), &controls(&control, &consumer), &control), Confirmation::NotReproduced);
    }

    #[test]
    fn a_cookie_refused_by_the_next_incarnation_is_a_fault_of_the_restart() {
        let case = run("u0:login/0@r0 u0:login/1@r0 restart:r0 u0:login/2@r0", &[r(0, 1), r(0, 1), r(0, 2)], refused());
        let verdict = judge(Subject::of(&demo_scenarios()), &case);
        let [fault] = verdict.faults.as_slice() else { panic!("{verdict:?}") };
        assert_eq!(fault.key.kind, FindingKind::ArtifactLostAfterRestart);
        assert_eq!(fault.control, ControlPlan::Undisturbed);
        assert_eq!(fault.after.as_deref(), Some("restart:r0"));
    }

    #[test]
    fn a_crossing_fault_can_be_blamed_on_a_disruption_between_instead() {
        let case = run("u0:login/0@r0 u0:login/1@r0 store-restart u0:login/2@r1", &[r(0, 1), r(0, 1), r(1, 1)], refused());
        let [fault] = judge(Subject::of(&demo_scenarios()), &case).faults.try_into().unwrap();
        assert_eq!(fault.key.kind, FindingKind::AuthCookieRejected);
        let recast = fault.recast(&case.schedule).unwrap();
        assert_eq!((recast.key.kind, recast.control), (FindingKind::ArtifactLostAfterStoreRestart, ControlPlan::Undisturbed));
        assert_eq!(recast.after.as_deref(), Some("store-restart"));
        // A restart of the replica that reads is no explanation of a cookie another made.
        let other = run("u0:login/0@r0 u0:login/1@r0 restart:r1 u0:login/2@r1", &[r(0, 1), r(0, 1), r(1, 2)], refused());
        let [fault] = judge(Subject::of(&demo_scenarios()), &other).faults.try_into().unwrap();
        assert!(fault.recast(&other.schedule).is_none());
        let producer = run("u0:login/0@r0 u0:login/1@r0 kill:r0 u0:login/2@r1", &[r(0, 1), r(0, 1), r(1, 1)], refused());
        let [fault] = judge(Subject::of(&demo_scenarios()), &producer).faults.try_into().unwrap();
        assert_eq!(fault.recast(&producer.schedule).unwrap().key.kind, FindingKind::ArtifactLostAfterRestart);
    }

    #[test]
    fn a_failure_on_one_replica_is_the_apps_own_unless_the_store_restarted_between() {
        let own = run("u0:login/0@r0 u0:login/1@r0 u0:login/2@r0", &[r(0, 1); 3], refused());
        let verdict = judge(Subject::of(&demo_scenarios()), &own);
        assert!(verdict.faults.is_empty());
        assert_eq!(verdict.own.len(), 1);

        let store = run("u0:login/0@r0 u0:login/1@r0 store-restart u0:login/2@r0", &[r(0, 1); 3], refused());
        let [fault] = judge(Subject::of(&demo_scenarios()), &store).faults.try_into().unwrap();
        assert_eq!(fault.key.kind, FindingKind::ArtifactLostAfterStoreRestart);

        // A 503 right after the restart is the app reconnecting, not lost data.
        let unavailable = Outcome::Failed {
            expected: "status 200".into(),
            observed: Observed { status: Some(503), reason: "cannot reach the store".into(), ..Observed::default() },
        };
        let reconnecting = run("u0:login/0@r0 u0:login/1@r0 store-restart u0:login/2@r0", &[r(0, 1); 3], unavailable);
        let verdict = judge(Subject::of(&demo_scenarios()), &reconnecting);
        assert!(verdict.faults.is_empty(), "{verdict:?}");
        assert_eq!(verdict.own.len(), 1);
    }

    #[test]
    fn a_request_without_an_answer_is_an_error_not_a_fault() {
        let case = run("u0:login/0@r0 u0:login/1@r0 u0:login/2@r1", &[r(0, 1), r(0, 1), r(1, 1)], Outcome::Error { message: "timed out".into() });
        let verdict = judge(Subject::of(&demo_scenarios()), &case);
        assert!(verdict.faults.is_empty());
        assert!(verdict.errors[0].1.contains("timed out"));
    }

    /// A run of `schedule`, whose one user (u0) sent a trigger of `receipt` that r1
    /// accepted, and the receipt deliveries that arrived (`by`).
    fn triggered(schedule: &str, by: &[u16]) -> (ScheduleRun, Vec<Triggered>) {
        use crate::history::Trigger;
        use crate::history::delivered::{Deliveries, Delivered, Delivery};
        use crate::target::Recogniser;
        let flow = Triggered {
            name: "receipt".into(),
            request: crate::step::RequestSpec::get(crate::step::Template::literal("/orders")),
            deliveries: Recogniser::Path("/receipts".into()),
            started: None,
            within: std::time::Duration::from_secs(3),
        };
        let mut case = run(schedule, &[r(1, 1)], Outcome::Passed);
        case.users[0].scenario = trigger_scenario("receipt");
        case.disruptions.triggers = vec![Trigger { vu: 40, flow: "receipt".into(), value: "replicheck-x1".into(), before_sigterm: false }];
        let receipt = |replica: u16| Delivery {
            replica: ReplicaId(replica),
            at_ms: 500.0,
            what: Delivered::Webhook { method: "POST".into(), path: "/receipts".into(), headers: Default::default(), body: "order=replicheck-x1".into() },
        };
        case.disruptions.deliveries = Some(Deliveries { kept: by.iter().map(|&r| receipt(r)).collect(), ..Deliveries::default() });
        (case, vec![flow])
    }

    #[test]
    fn work_accepted_and_never_delivered_after_a_restart_is_a_fault_of_the_restart_controlled_undisturbed() {
        let (lost, flows) = triggered("u0:triggered:receipt/0@r1 restart:r1", &[]);
        let subject = Subject { scenarios: &[], triggered: &flows };
        let [fault] = judge(subject, &lost).faults.try_into().unwrap();
        assert_eq!((fault.key.kind, fault.key.step, fault.control), (FindingKind::WorkLostAtShutdown, 0, ControlPlan::Undisturbed));
        assert_eq!((fault.candidate.producer, fault.after.as_deref()), (r(1, 1), Some("restart:r1")));
        assert!(fault.candidate.observed.reason.contains("after restart:r1, no replica delivered it (webhooks to /receipts) within 3s"), "{}", fault.candidate.observed.reason);
        // Delivered by anyone, even the next incarnation or another replica: nothing lost.
        assert!(judge(subject, &triggered("u0:triggered:receipt/0@r1 restart:r1", &[0]).0).faults.is_empty());
        // A kill gives no time to shut down: not judged. Undisturbed and lost: the app's own.
        let killed = judge(subject, &triggered("u0:triggered:receipt/0@r1 kill:r1", &[]).0);
        assert!(killed.faults.is_empty() && killed.own.is_empty());
        let own = judge(subject, &triggered("u0:triggered:receipt/0@r1", &[]).0);
        assert!(own.faults.is_empty() && own.own[0].1.contains("never delivered within 3s, undisturbed"), "{own:?}");
        // The control delivers it: confirmed; the control loses it too: not the restart's doing.
        let (delivered, _) = triggered("u0:triggered:receipt/0@r1", &[1]);
        assert!(matches!(confirm(&fault, subject, &[(ControlPlan::Undisturbed, &delivered)], &lost), Confirmation::Confirmed(_)));
        let (undelivered, _) = triggered("u0:triggered:receipt/0@r1", &[]);
        match confirm(&fault, subject, &[(ControlPlan::Undisturbed, &undelivered)], &lost) {
            Confirmation::ControlFailed(why) => assert!(why.contains("the trigger r1 accepted was never delivered either"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

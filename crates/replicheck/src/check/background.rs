//! Background work's findings, from what the replicas delivered to the run's sink during
//! the `scheduled-jobs` and `triggered-work` experiments. Deliveries are attributed by the
//! replica endpoint they arrived at, and a trigger's by the value it sent.
//!
//! Each finding has its control in the same run: a job is judged across replicas only
//! when one replica alone delivered each of its occurrences exactly once; work is judged
//! duplicated only when one replica alone delivered each trigger exactly once, and lost at
//! shutdown only when every trigger accepted with every replica running was delivered.

use std::collections::{BTreeMap, BTreeSet};

use super::finding::{ArtifactEvidence, FindingKind};
use super::twice::{Assessment, Candidate};
use crate::chaos::experiment::trigger_scenario;
use crate::history::delivered::{Deliveries, Delivery};
use crate::history::{ChaosAction, ExperimentRun, Observed, Outcome, Phase, Trigger, VuRecord, Window};
use crate::target::{Recogniser, Scheduled, Triggered};
use crate::vocab::replica::{Incarnation, ReplicaId};

/// What the flows are, for judging: the target's scheduled jobs and triggered work.
#[derive(Debug, Clone, Default)]
pub struct Work {
    pub scheduled: Vec<Scheduled>,
    pub triggered: Vec<Triggered>,
}

/// The assessment's frame, with what the sink refused or could not attribute told: a
/// replica that floods the sink is named, and what it sent past the bounds is not judged.
fn start(run: &ExperimentRun) -> Assessment {
    let mut notes = run.notes.clone();
    if let Some(deliveries) = &run.deliveries {
        for (replica, refused) in &deliveries.refused {
            notes.push(format!("the sink refused {} deliveries of {replica}: {}", refused.count, refused.why));
        }
        if deliveries.stray > 0 {
            notes.push(format!("{} deliveries reached the sink without a replica's path (the app dropped the path of its {{sink_url}}): not attributed, not judged", deliveries.stray));
        }
    }
    Assessment { notes, ..Assessment::of(run) }
}

/// Where to look when nothing arrived: an app that could not reach the sink says so in its
/// own output, which the sink never sees.
const LOGS: &str = "the replicas' logs in the report directory say whether they tried to send";

fn ms(at: f64) -> String {
    format!("{at:.0} ms")
}

/// The incarnation of `id` that ran in the window, for naming it in evidence.
fn incarnation(window: &Window, id: ReplicaId) -> Incarnation {
    window.replicas.iter().copied().find(|r| r.id == id).unwrap_or(Incarnation { id, generation: 1 })
}

pub fn assess_scheduled(run: &ExperimentRun, jobs: &[Scheduled]) -> Assessment {
    let mut assessment = start(run);
    let (Some(deliveries), Some(trial), Some(control)) = (
        &run.deliveries,
        run.windows.iter().find(|w| w.phase != Phase::Control),
        run.windows.iter().find(|w| w.phase == Phase::Control),
    ) else {
        assessment.error.get_or_insert_with(|| "the experiment recorded no deliveries to judge".into());
        return assessment;
    };
    for job in jobs {
        let alone = control.replicas.first().map_or_else(|| "one replica".to_owned(), |r| r.to_string());
        let seen = |window: &Window| occurrences(&deliveries.kept, job, window);
        let (in_control, unnamed) = seen(control);
        let watched = format!("{:.1}s", (control.end_ms - control.start_ms) / 1000.0);
        if in_control.is_empty() {
            let unnamed = if unnamed > 0 { format!("; {unnamed} of its deliveries named no occurrence ({})", job.occurrence) } else { String::new() };
            assessment.baseline = Some(format!(
                "with {alone} alone, no occurrence of job `{}` ({}) arrived in {watched}{unnamed}; {LOGS}",
                job.name, job.deliveries
            ));
            return assessment;
        }
        if let Some((occurrence, repeated)) = in_control.iter().find(|(_, d)| d.len() > 1) {
            assessment.baseline = Some(format!(
                "with {alone} alone, occurrence {occurrence} of job `{}` was delivered {} times: the job repeats itself on one replica",
                job.name,
                repeated.len()
            ));
            return assessment;
        }
        if let Some(marker) = &job.started {
            abandoned(run, job, marker, deliveries, [trial, control], &mut assessment);
        }
        let (in_trial, _) = seen(trial);
        let across: Vec<(&String, &Vec<&Delivery>)> = in_trial.iter().filter(|(_, d)| d.iter().map(|d| d.replica).collect::<BTreeSet<_>>().len() > 1).collect();
        let Some((occurrence, delivered)) = across.first() else { continue };
        let by: Vec<String> = delivered.iter().map(|d| format!("{} at {}", d.replica, ms(d.at_ms))).collect();
        // Named by the lowest two replicas, not by which arrived first, so that a replay
        // names the same pair.
        let replicas: Vec<ReplicaId> = delivered.iter().map(|d| d.replica).collect::<BTreeSet<_>>().into_iter().collect();
        assessment.candidates.push(Candidate {
            kind: FindingKind::JobRunsOnEveryReplica,
            scenario: run.experiment.clone(),
            step: job.name.clone(),
            producer: incarnation(trial, replicas[0]),
            consumer: incarnation(trial, replicas[1]),
            after: None,
            expected: format!("each occurrence of job `{}` delivered once, whatever the number of replicas", job.name),
            observed: Observed {
                reason: format!(
                    "occurrence {occurrence} ({}) was delivered {} times: by {}; {} of {} occurrences in the window came from more than one replica",
                    job.occurrence,
                    delivered.len(),
                    by.join(", "),
                    across.len(),
                    in_trial.len()
                ),
                ..Observed::default()
            },
            control: format!("with {alone} alone for {watched}, each of {} occurrences was delivered once", in_control.len()),
            artifact: ArtifactEvidence::named("none"),
            vu: None,
            at_ms: Some(delivered[0].at_ms),
            occurrences: across.len() as u32,
            notes: vec![format!("deliveries recognised as {}, each replica's at an endpoint of its own", job.deliveries)],
        });
    }
    assessment
}

/// With a start marker: a run of the job that the replica terminated half-way through
/// began and that no replica finished, while undisturbed every run that began early enough
/// to finish in its window did finish.
fn abandoned(run: &ExperimentRun, job: &Scheduled, marker: &Recogniser, deliveries: &Deliveries, undisturbed: [&Window; 2], assessment: &mut Assessment) {
    let not_judged = |why: String| format!("{why}, so runs of job `{}` abandoned at SIGTERM are not judged", job.name);
    let Some(window) = run.windows.iter().filter(|w| w.phase != Phase::Control).nth(1) else { return };
    let sigterm = run.chaos.iter().find(|e| matches!(e.action, ChaosAction::Sigterm { .. }) && e.start_ms >= window.start_ms && e.start_ms <= window.end_ms);
    let Some((sigterm, ChaosAction::Sigterm { replica: victim, killed })) = sigterm.map(|e| (e, e.action.clone())) else {
        assessment.notes.push(not_judged(format!("no run of any job with a start marker began within {:.1}s", (window.end_ms - window.start_ms) / 1000.0)));
        return;
    };
    if !deliveries.refused.is_empty() {
        assessment.notes.push(not_judged("the sink refused deliveries during the run".into()));
        return;
    }
    let named = |recogniser: &Recogniser| -> Vec<(String, &Delivery)> {
        deliveries.kept.iter().filter(|d| d.what.is(recogniser)).filter_map(|d| Some((d.what.occurrence(&job.occurrence)?, d))).collect()
    };
    let (begun, finished) = (named(marker), named(&job.deliveries));
    let finish = |occurrence: &str, after: f64| finished.iter().find(|(o, d)| o == occurrence && d.at_ms >= after).map(|(_, d)| *d);
    let within = |w: &Window, at: f64| w.start_ms <= at && at <= w.end_ms;
    let calm: Vec<(&Window, &Delivery, Option<&Delivery>)> =
        begun.iter().filter_map(|(o, b)| undisturbed.into_iter().find(|w| within(w, b.at_ms)).map(|w| (w, *b, finish(o, b.at_ms)))).collect();
    let Some(longest) = calm.iter().filter_map(|(_, b, f)| f.map(|f| f.at_ms - b.at_ms)).max_by(f64::total_cmp) else {
        assessment.notes.push(not_judged(format!("undisturbed, no run of job `{}` was seen both begun ({marker}) and finished ({})", job.name, job.deliveries)));
        return;
    };
    if let Some((_, unfinished, _)) = calm.iter().find(|(w, b, f)| f.is_none() && b.at_ms + longest <= w.end_ms) {
        assessment.notes.push(not_judged(format!("undisturbed, {} began a run of job `{}` at {} and never finished it", unfinished.replica, job.name, ms(unfinished.at_ms))));
        return;
    }
    let end_ms = undisturbed[1].end_ms;
    if sigterm.end_ms + longest > end_ms {
        assessment.notes.push(not_judged(format!("a run takes up to {:.1}s, longer than the record lasted after SIGTERM", longest / 1000.0)));
        return;
    }
    let lost: Vec<&(String, &Delivery)> = begun
        .iter()
        .filter(|(o, b)| b.replica == victim.id && within(window, b.at_ms) && b.at_ms <= sigterm.start_ms && finish(o, b.at_ms).is_none())
        .collect();
    let Some((occurrence, began)) = lost.first() else { return };
    let stopped = if killed { "was killed when its grace period ran out" } else { "exited" };
    assessment.candidates.push(Candidate {
        kind: FindingKind::WorkLostAtShutdown,
        scenario: run.experiment.clone(),
        step: job.name.clone(),
        producer: victim,
        consumer: victim,
        after: Some(sigterm.clone()),
        expected: format!("a run of job `{}` a replica began is finished, by it or another, though it is terminated", job.name),
        observed: Observed {
            reason: format!(
                "{victim} began occurrence {occurrence} ({}) at {} (its start marker), got SIGTERM at {} and {stopped} at {}; no replica had finished it at {}",
                job.occurrence,
                ms(began.at_ms),
                ms(sigterm.start_ms),
                ms(sigterm.end_ms),
                ms(end_ms)
            ),
            ..Observed::default()
        },
        control: format!(
            "undisturbed, each of {} runs begun was finished, in {:.1}s at most",
            calm.iter().filter(|(_, _, f)| f.is_some()).count(),
            longest / 1000.0
        ),
        artifact: ArtifactEvidence::named("none"),
        vu: None,
        at_ms: Some(began.at_ms),
        occurrences: lost.len() as u32,
        notes: vec![format!("runs recognised begun by {marker} and finished by {}, each naming its occurrence by {}", job.deliveries, job.occurrence)],
    });
}

/// The job's deliveries that arrived in the window, by the occurrence they name, and how
/// many named none.
fn occurrences<'a>(deliveries: &'a [Delivery], job: &Scheduled, window: &Window) -> (BTreeMap<String, Vec<&'a Delivery>>, usize) {
    let mut named: BTreeMap<String, Vec<&Delivery>> = BTreeMap::new();
    let mut unnamed = 0;
    for delivery in deliveries.iter().filter(|d| d.at_ms >= window.start_ms && d.at_ms <= window.end_ms && d.what.is(&job.deliveries)) {
        match delivery.what.occurrence(&job.occurrence) {
            Some(occurrence) => named.entry(occurrence).or_default().push(delivery),
            None => unnamed += 1,
        }
    }
    (named, unnamed)
}

/// One trigger, as its user ran it and as it was delivered.
struct Sent<'a> {
    trigger: &'a Trigger,
    /// The replica that accepted it (a 2xx answer), if one did, and when its answer came.
    accepted: Option<(Incarnation, f64)>,
    /// When its request started: where the timeline shows it.
    sent_ms: Option<f64>,
    delivered: Vec<&'a Delivery>,
    /// Its start markers, when its flow has them.
    begun: Vec<&'a Delivery>,
    record: &'a VuRecord,
}

pub fn assess_triggered(run: &ExperimentRun, flows: &[Triggered]) -> Assessment {
    let mut assessment = start(run);
    let Some(deliveries) = &run.deliveries else {
        assessment.error.get_or_insert_with(|| "the experiment recorded no deliveries to judge".into());
        return assessment;
    };
    for flow in flows {
        let scenario = trigger_scenario(&flow.name);
        let control = sent_of(run, &run.control, &scenario, flow, &deliveries.kept);
        let alone = control.iter().find_map(|s| s.accepted.map(|(r, _)| r.to_string())).unwrap_or_else(|| "one replica".into());
        if let Some(refused) = control.iter().find(|s| s.accepted.is_none()) {
            assessment.baseline = Some(format!("with {alone} alone, a trigger of `{}` was not accepted: {}", flow.name, refusal(refused.record)));
            return assessment;
        }
        if let Some(lost) = control.iter().find(|s| s.delivered.is_empty()) {
            assessment.baseline = Some(format!(
                "with {alone} alone, work `{}` it accepted (vu {}) was never delivered ({}, within {}); {LOGS}",
                flow.name,
                lost.trigger.vu,
                flow.deliveries,
                humantime::format_duration(flow.within)
            ));
            return assessment;
        }
        if let (Some(marker), Some(unmarked)) = (&flow.started, control.iter().find(|s| s.begun.is_empty())) {
            assessment.baseline = Some(format!(
                "with {alone} alone, work `{}` (vu {}) was done but its start marker ({marker}) never arrived: `started` names what the job sends when it begins",
                flow.name, unmarked.trigger.vu
            ));
            return assessment;
        }
        if let Some(twice) = control.iter().find(|s| s.delivered.len() > 1) {
            assessment.baseline = Some(format!("with {alone} alone, one trigger of `{}` was delivered {} times: the app repeats it on one replica", flow.name, twice.delivered.len()));
            return assessment;
        }
        let disrupted = sent_of(run, &run.disrupted, &scenario, flow, &deliveries.kept);
        let (before_sigterm, spread): (Vec<&Sent>, Vec<&Sent>) = disrupted.iter().partition(|s| s.trigger.before_sigterm);
        let control_text = format!("with {alone} alone, each of {} triggers of `{}` was delivered once", control.len(), flow.name);
        let duplicated: Vec<&&Sent> = spread.iter().filter(|s| s.delivered.len() > 1).collect();
        if let Some(first) = duplicated.first() {
            let (accepter, at_ms) = first.accepted.expect("a delivered trigger was accepted");
            let by: Vec<String> = first.delivered.iter().map(|d| format!("{} at {}", d.replica, ms(d.at_ms))).collect();
            let other = first.delivered.iter().map(|d| d.replica).filter(|r| *r != accepter.id).min().unwrap_or(accepter.id);
            assessment.candidates.push(Candidate {
                kind: FindingKind::SideEffectDuplicated,
                scenario: run.experiment.clone(),
                step: flow.name.clone(),
                producer: accepter,
                consumer: run.windows.first().map_or(Incarnation { id: other, generation: 1 }, |trial| incarnation(trial, other)),
                after: None,
                expected: format!("one delivery of `{}` per trigger, whatever the number of replicas", flow.name),
                observed: Observed {
                    reason: format!(
                        "the trigger vu {} sent, accepted by {accepter} at {}, was delivered {} times: by {}; {} of {} triggers were delivered more than once",
                        first.trigger.vu,
                        ms(at_ms),
                        first.delivered.len(),
                        by.join(", "),
                        duplicated.len(),
                        spread.len()
                    ),
                    ..Observed::default()
                },
                control: control_text.clone(),
                artifact: ArtifactEvidence::named("none"),
                vu: Some(first.trigger.vu),
                at_ms: first.sent_ms,
                occurrences: duplicated.len() as u32,
                notes: vec![format!("deliveries recognised as {} carrying the trigger's value", flow.deliveries)],
            });
        }
        let never: Vec<&&Sent> = spread.iter().filter(|s| s.accepted.is_some() && s.delivered.is_empty()).collect();
        if !never.is_empty() {
            // Without a disruption there is nothing to blame a loss on here; and the
            // shutdown's control did not pass.
            assessment.notes.push(format!(
                "{} of {} triggers of `{}` accepted with every replica running were never delivered, so its losses at shutdown are not judged",
                never.len(),
                spread.len(),
                flow.name
            ));
            continue;
        }
        if !deliveries.refused.is_empty() {
            // What the sink refused past its bounds may have been the work: a loss is not proven.
            assessment.notes.push(format!("the sink refused deliveries during the run, so losses of `{}` at shutdown are not judged", flow.name));
            continue;
        }
        let mut lost: Vec<&&Sent> = before_sigterm.iter().filter(|s| s.accepted.is_some() && s.delivered.is_empty()).collect();
        // A job abandoned half-way is the sharper evidence: it is told first.
        lost.sort_by_key(|s| s.begun.is_empty());
        let half_way = lost.iter().filter(|s| !s.begun.is_empty()).count();
        let Some(first) = lost.first() else { continue };
        let (accepter, at_ms) = first.accepted.expect("filtered on acceptance");
        let sigterm = run.chaos.iter().find(|e| matches!(e.action, ChaosAction::Sigterm { replica, .. } if replica == accepter)).cloned();
        let stopped = sigterm.as_ref().map(|e| {
            let killed = matches!(e.action, ChaosAction::Sigterm { killed: true, .. });
            format!(", {accepter} got SIGTERM at {} and {} at {}", ms(e.start_ms), if killed { "was killed when its grace period ran out" } else { "exited" }, ms(e.end_ms))
        });
        // With start markers, a job begun and then abandoned says so, and one begun again
        // elsewhere and not finished either is not taken over.
        let begun: Vec<String> = first.begun.iter().map(|d| format!("{} at {}", d.replica, ms(d.at_ms))).collect();
        let begun = match &begun[..] {
            [] if flow.started.is_some() => ", no start marker of it came".to_owned(),
            [] => String::new(),
            _ => format!(", its start marker came from {}", begun.join(", ")),
        };
        let end_ms = run.windows.iter().filter(|w| w.phase != Phase::Control).map(|w| w.end_ms).fold(0.0, f64::max);
        let by_accepter = spread.iter().filter(|s| s.accepted.is_some_and(|(r, _)| r.id == accepter.id)).count();
        assessment.candidates.push(Candidate {
            kind: FindingKind::WorkLostAtShutdown,
            scenario: run.experiment.clone(),
            step: flow.name.clone(),
            producer: accepter,
            consumer: accepter,
            after: sigterm.clone(),
            expected: format!("work `{}` a replica accepted is delivered within {}, by it or another, though it is terminated", flow.name, humantime::format_duration(flow.within)),
            observed: Observed {
                reason: format!(
                    "{accepter} accepted the trigger of vu {} at {}{begun}{}; no replica had {} it at {}; {} of {} triggers it accepted before SIGTERM were lost{}",
                    first.trigger.vu,
                    ms(at_ms),
                    stopped.unwrap_or_default(),
                    if flow.started.is_some() { "finished" } else { "delivered" },
                    ms(end_ms),
                    lost.len(),
                    before_sigterm.len(),
                    if flow.started.is_some() { format!(", {half_way} of them begun and abandoned half-way") } else { String::new() }
                ),
                ..Observed::default()
            },
            control: format!(
                "without the termination, each of {} triggers accepted with every replica running ({by_accepter} by {}) was delivered",
                spread.len(),
                accepter.id
            ),
            artifact: ArtifactEvidence::named("none"),
            vu: Some(first.trigger.vu),
            at_ms: first.sent_ms,
            occurrences: lost.len() as u32,
            notes: vec![format!("deliveries recognised as {} carrying the trigger's value", flow.deliveries)],
        });
    }
    assessment
}

fn sent_of<'a>(run: &'a ExperimentRun, records: &'a [VuRecord], scenario: &str, flow: &Triggered, deliveries: &'a [Delivery]) -> Vec<Sent<'a>> {
    records
        .iter()
        .filter(|record| record.scenario == scenario)
        .filter_map(|record| {
            let trigger = run.triggers.iter().find(|t| t.vu == record.vu)?;
            let step = record.steps.first()?;
            let accepted = match (&step.outcome, step.served_by, step.requests.last()) {
                (Outcome::Passed, Some(replica), Some(request)) => Some((replica, request.end_ms)),
                _ => None,
            };
            let of = |recogniser: &Recogniser| deliveries.iter().filter(|d| d.what.is(recogniser) && d.what.carries(&trigger.value)).collect::<Vec<_>>();
            let begun = flow.started.as_ref().map(of).unwrap_or_default();
            let sent_ms = step.requests.first().map(|r| r.start_ms);
            Some(Sent { trigger, accepted, sent_ms, delivered: of(&flow.deliveries), begun, record })
        })
        .collect()
}

/// Why a trigger was not accepted, in words.
fn refusal(record: &VuRecord) -> String {
    match record.steps.first().map(|s| &s.outcome) {
        Some(Outcome::Failed { expected, observed }) => format!("expected {expected}, got {observed}"),
        Some(Outcome::Error { message }) => message.clone(),
        _ => "no answer".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::check::chaos::tests::{event, r, user};
    use crate::history::delivered::{Deliveries, Delivered};
    use crate::step::{RequestSpec, Template};
    use crate::target::{Occurrence, Recogniser};

    fn webhook(replica: u16, at_ms: f64, path: &str, body: &str) -> Delivery {
        Delivery {
            replica: ReplicaId(replica),
            at_ms,
            what: Delivered::Webhook { method: "POST".into(), path: path.into(), headers: BTreeMap::new(), body: body.into() },
        }
    }

    fn window(phase: Phase, start_ms: f64, end_ms: f64, replicas: &[u16]) -> Window {
        Window { phase, start_ms, end_ms, replicas: replicas.iter().map(|&id| r(id, 1)).collect() }
    }

    fn digest() -> Scheduled {
        Scheduled {
            name: "digest".into(),
            deliveries: Recogniser::Path("/digest".into()),
            occurrence: Occurrence::Json("/slot".into()),
            started: None,
            watch: std::time::Duration::from_secs(4),
        }
    }

    /// Slots delivered by each replica in the trial (0..4000 ms) and in the control (5000..9000 ms, r0 alone).
    fn scheduled_run(trial: &[(u16, u32)], control: &[(u16, u32)]) -> ExperimentRun {
        let mut run = ExperimentRun::new("scheduled-jobs", Phase::Main);
        let at = |base: f64, slot: u32| base + f64::from(slot) * 10.0;
        let kept = trial
            .iter()
            .map(|&(replica, slot)| webhook(replica, at(100.0, slot), "/digest", &format!(r#"{{"slot":{slot}}}"#)))
            .chain(control.iter().map(|&(replica, slot)| webhook(replica, at(5100.0, slot), "/digest", &format!(r#"{{"slot":{slot}}}"#))))
            .chain([webhook(1, 200.0, "/other", r#"{"slot":1}"#)])
            .collect();
        run.deliveries = Some(Deliveries { kept, ..Deliveries::default() });
        run.windows = vec![window(Phase::Main, 0.0, 4000.0, &[0, 1]), window(Phase::Control, 5000.0, 9000.0, &[0])];
        run
    }

    #[test]
    fn an_occurrence_from_two_replicas_is_a_candidate_when_one_alone_delivers_each_once() {
        let assessment = assess_scheduled(&scheduled_run(&[(0, 1), (1, 1), (0, 2), (1, 2)], &[(0, 5), (0, 6)]), &[digest()]);
        assert_eq!(assessment.baseline, None);
        let [candidate] = &assessment.candidates[..] else { panic!("{:?}", assessment.candidates) };
        assert_eq!((candidate.kind, candidate.step.as_str(), candidate.occurrences), (FindingKind::JobRunsOnEveryReplica, "digest", 2));
        assert_eq!((candidate.producer, candidate.consumer), (r(0, 1), r(1, 1)));
        assert!(candidate.observed.reason.contains("occurrence 1 (JSON /slot) was delivered 2 times: by r0 at 110 ms, r1 at 110 ms"), "{}", candidate.observed.reason);
        assert!(candidate.control.contains("with r0 alone for 4.0s") && candidate.control.contains("each of 2 occurrences was delivered once"), "{}", candidate.control);
    }

    #[test]
    fn a_job_that_takes_turns_or_repeats_itself_alone_is_no_finding() {
        // A lease: each slot once, by whichever replica held it.
        assert!(assess_scheduled(&scheduled_run(&[(0, 1), (1, 2), (1, 3)], &[(0, 5)]), &[digest()]).candidates.is_empty());
        // Twice per slot on one replica: the app's own doing, not the replicas'.
        let repeated = assess_scheduled(&scheduled_run(&[(0, 1), (1, 1)], &[(0, 5), (0, 5)]), &[digest()]);
        assert!(repeated.candidates.is_empty());
        assert!(repeated.baseline.unwrap().contains("delivered 2 times: the job repeats itself on one replica"));
        // Nothing alone: nothing to compare with.
        let silent = assess_scheduled(&scheduled_run(&[(0, 1), (1, 1)], &[]), &[digest()]);
        assert!(silent.baseline.unwrap().contains("no occurrence of job `digest`"));
    }

    fn receipt() -> Triggered {
        Triggered {
            name: "receipt".into(),
            request: RequestSpec::get(Template::literal("/orders")),
            deliveries: Recogniser::Path("/receipts".into()),
            started: None,
            within: std::time::Duration::from_secs(3),
        }
    }

    /// Triggers: (vu, accepting replica, before SIGTERM); each one's value is `v{vu}`.
    fn triggered_run(spread: &[(u32, u16)], before_sigterm: &[(u32, u16)], control: &[(u32, u16)], kept: Vec<Delivery>) -> ExperimentRun {
        let mut run = ExperimentRun::new("triggered-work", Phase::Main);
        let scenario = trigger_scenario("receipt");
        let sent = |&(vu, replica): &(u32, u16)| user(&scenario, vu, r(replica, 1), f64::from(vu) * 10.0, Some(202), None);
        run.disrupted = spread.iter().chain(before_sigterm).map(sent).collect();
        run.control = control.iter().map(sent).collect();
        let trigger = |&(vu, _): &(u32, u16), before_sigterm| Trigger { vu, flow: "receipt".into(), value: format!("replicheck-v{vu}"), before_sigterm };
        run.triggers = spread.iter().map(|t| trigger(t, false)).chain(before_sigterm.iter().map(|t| trigger(t, true))).chain(control.iter().map(|t| trigger(t, false))).collect();
        run.chaos = vec![event(ChaosAction::Sigterm { replica: r(1, 1), killed: false }, 3000.0, 3500.0)];
        run.windows = vec![window(Phase::Main, 0.0, 2500.0, &[0, 1]), window(Phase::Main, 2800.0, 7000.0, &[0]), window(Phase::Control, 7100.0, 9000.0, &[0])];
        run.deliveries = Some(Deliveries { kept, ..Deliveries::default() });
        run
    }

    fn receipt_of(vu: u32, replica: u16) -> Delivery {
        webhook(replica, 1000.0 + f64::from(vu), "/receipts", &format!(r#"{{"order":"replicheck-v{vu}"}}"#))
    }

    #[test]
    fn a_trigger_delivered_twice_across_replicas_is_a_candidate_when_one_alone_delivers_once() {
        let kept = vec![receipt_of(1, 0), receipt_of(1, 1), receipt_of(2, 1), receipt_of(3, 0), receipt_of(9, 0)];
        let assessment = assess_triggered(&triggered_run(&[(1, 0), (2, 1)], &[(3, 1)], &[(9, 0)], kept), &[receipt()]);
        assert_eq!(assessment.baseline, None);
        let [candidate] = &assessment.candidates[..] else { panic!("{:?}", assessment.candidates) };
        assert_eq!((candidate.kind, candidate.producer, candidate.consumer.id), (FindingKind::SideEffectDuplicated, r(0, 1), ReplicaId(1)));
        assert!(candidate.observed.reason.contains("delivered 2 times: by r0 at 1001 ms, r1 at 1001 ms"), "{}", candidate.observed.reason);
    }

    #[test]
    fn work_accepted_before_sigterm_and_never_delivered_is_lost_only_when_it_is_delivered_without_it() {
        let delivered_without = vec![receipt_of(1, 0), receipt_of(2, 1), receipt_of(9, 0)];
        let assessment = assess_triggered(&triggered_run(&[(1, 0), (2, 1)], &[(3, 1), (4, 1)], &[(9, 0)], delivered_without.clone()), &[receipt()]);
        let [candidate] = &assessment.candidates[..] else { panic!("{:?}", assessment.candidates) };
        assert_eq!((candidate.kind, candidate.producer, candidate.occurrences), (FindingKind::WorkLostAtShutdown, r(1, 1), 2));
        assert_eq!(candidate.after.as_ref().map(|e| e.start_ms), Some(3000.0));
        assert!(candidate.control.contains("each of 2 triggers accepted with every replica running (1 by r1) was delivered"), "{}", candidate.control);
        // Taken over by another replica after the SIGTERM: nothing lost.
        let mut taken_over = delivered_without.clone();
        taken_over.extend([receipt_of(3, 0), receipt_of(4, 0)]);
        assert!(assess_triggered(&triggered_run(&[(1, 0), (2, 1)], &[(3, 1), (4, 1)], &[(9, 0)], taken_over), &[receipt()]).candidates.is_empty());
        // The sink refused something past its bounds: a loss is not proven.
        let mut refused = triggered_run(&[(1, 0), (2, 1)], &[(3, 1), (4, 1)], &[(9, 0)], delivered_without.clone());
        refused.deliveries.as_mut().unwrap().refused.insert(ReplicaId(1), crate::history::delivered::Refused { count: 1, why: "too large".into() });
        let assessment = assess_triggered(&refused, &[receipt()]);
        assert!(assessment.candidates.is_empty() && assessment.notes.iter().any(|n| n.contains("losses of `receipt` at shutdown are not judged")), "{:?}", assessment.notes);
        // Work r1 never delivers even undisturbed: the loss is not the shutdown's.
        let never = vec![receipt_of(1, 0), receipt_of(9, 0)];
        let assessment = assess_triggered(&triggered_run(&[(1, 0), (2, 1)], &[(3, 1)], &[(9, 0)], never), &[receipt()]);
        assert!(assessment.candidates.is_empty());
        assert!(assessment.notes.iter().any(|n| n.contains("1 of 2 triggers of `receipt` accepted with every replica running were never delivered")), "{:?}", assessment.notes);
        // One replica alone loses it too: the app's own fault, said as such.
        let alone = assess_triggered(&triggered_run(&[(1, 0)], &[(3, 1)], &[(9, 0)], vec![receipt_of(1, 0)]), &[receipt()]);
        assert!(alone.baseline.unwrap().contains("was never delivered"));
    }

    fn begun_of(vu: u32, replica: u16, at_ms: f64) -> Delivery {
        webhook(replica, at_ms, "/receipts-started", &format!(r#"{{"order":"replicheck-v{vu}"}}"#))
    }

    #[test]
    fn a_long_job_begun_and_abandoned_at_sigterm_says_so_and_one_finished_elsewhere_is_taken_over() {
        let marked = Triggered { started: Some(Recogniser::Path("/receipts-started".into())), ..receipt() };
        let undisturbed = vec![receipt_of(1, 0), begun_of(1, 0, 900.0), receipt_of(2, 1), begun_of(2, 1, 900.0), receipt_of(9, 0), begun_of(9, 0, 7500.0)];
        let mut abandoned = undisturbed.clone();
        abandoned.push(begun_of(3, 1, 2900.0));
        let assessment = assess_triggered(&triggered_run(&[(1, 0), (2, 1)], &[(3, 1)], &[(9, 0)], abandoned.clone()), std::slice::from_ref(&marked));
        let [candidate] = &assessment.candidates[..] else { panic!("{:?} {:?}", assessment.candidates, assessment.baseline) };
        assert_eq!((candidate.kind, candidate.producer), (FindingKind::WorkLostAtShutdown, r(1, 1)));
        assert!(
            candidate.observed.reason.contains("its start marker came from r1 at 2900 ms, r1 got SIGTERM at 3000 ms and exited at 3500 ms; no replica had finished it"),
            "{}",
            candidate.observed.reason
        );
        // Handed back and finished by r0: taken over, nothing lost.
        let mut taken_over = abandoned;
        taken_over.extend([begun_of(3, 0, 3600.0), receipt_of(3, 0)]);
        assert!(assess_triggered(&triggered_run(&[(1, 0), (2, 1)], &[(3, 1)], &[(9, 0)], taken_over), std::slice::from_ref(&marked)).candidates.is_empty());
        // A marker the app never sends, even alone: the flow is described wrong, and said so.
        let unmarked: Vec<Delivery> = undisturbed.into_iter().filter(|d| !d.what.label().contains("started")).collect();
        let wrong = assess_triggered(&triggered_run(&[(1, 0), (2, 1)], &[(3, 1)], &[(9, 0)], unmarked), &[marked]);
        assert!(wrong.candidates.is_empty());
        assert!(wrong.baseline.unwrap().contains("was done but its start marker (webhooks to /receipts-started) never arrived"));
    }

    /// A long digest with a start marker: run in the trial (0..4000 ms, r0 and r1), then r1
    /// began one and was terminated at 4300 ms (4000..8000 ms), then r0 alone (9000..13000 ms).
    /// `slots` are (replica, slot, begun at, finished at).
    fn long_digest_run(slots: &[(u16, u32, f64, Option<f64>)]) -> (ExperimentRun, Scheduled) {
        let job = Scheduled { started: Some(Recogniser::Path("/digest-begun".into())), ..digest() };
        let mut run = ExperimentRun::new("scheduled-jobs", Phase::Main);
        let body = |slot: u32| format!(r#"{{"slot":{slot}}}"#);
        let kept = slots
            .iter()
            .flat_map(|&(replica, slot, begun, finished)| {
                let finished = finished.map(|at| webhook(replica, at, "/digest", &body(slot)));
                [Some(webhook(replica, begun, "/digest-begun", &body(slot))), finished].into_iter().flatten()
            })
            .collect();
        run.deliveries = Some(Deliveries { kept, ..Deliveries::default() });
        run.windows = vec![window(Phase::Main, 0.0, 4000.0, &[0, 1]), window(Phase::Main, 4000.0, 8000.0, &[0, 1]), window(Phase::Control, 9000.0, 13000.0, &[0])];
        run.chaos = vec![event(ChaosAction::Sigterm { replica: r(1, 1), killed: false }, 4300.0, 4800.0)];
        (run, job)
    }

    #[test]
    fn a_scheduled_run_begun_by_the_terminated_replica_and_never_finished_is_lost_when_undisturbed_runs_finish() {
        let calm = [(0, 1, 100.0, Some(600.0)), (0, 9, 9100.0, Some(9600.0))];
        let (run, job) = long_digest_run(&[calm[0], calm[1], (1, 5, 4200.0, None)]);
        let assessment = assess_scheduled(&run, std::slice::from_ref(&job));
        let [candidate] = &assessment.candidates[..] else { panic!("{:?} {:?}", assessment.candidates, assessment.notes) };
        assert_eq!((candidate.kind, candidate.producer, candidate.after.as_ref().map(|e| e.start_ms)), (FindingKind::WorkLostAtShutdown, r(1, 1), Some(4300.0)));
        assert!(candidate.observed.reason.contains("r1 began occurrence 5 (JSON /slot) at 4200 ms (its start marker), got SIGTERM at 4300 ms and exited at 4800 ms"), "{}", candidate.observed.reason);
        assert!(candidate.control.contains("each of 2 runs begun was finished, in 0.5s at most"), "{}", candidate.control);
        // Finished by r0 after r1 was gone: taken over.
        let (run, job) = long_digest_run(&[calm[0], calm[1], (1, 5, 4200.0, None), (0, 5, 4900.0, Some(5400.0))]);
        assert!(assess_scheduled(&run, std::slice::from_ref(&job)).candidates.is_empty());
        // A run left unfinished undisturbed: the job's own doing, and said so.
        let (run, job) = long_digest_run(&[calm[0], calm[1], (0, 2, 200.0, None), (1, 5, 4200.0, None)]);
        let assessment = assess_scheduled(&run, std::slice::from_ref(&job));
        assert!(assessment.candidates.is_empty());
        assert!(assessment.notes.iter().any(|n| n.contains("undisturbed, r0 began a run of job `digest` at 200 ms and never finished it")), "{:?}", assessment.notes);
        // Nothing seen begun and finished undisturbed: the markers prove nothing.
        let (run, job) = long_digest_run(&[(0, 9, 9100.0, None), (1, 5, 4200.0, None)]);
        let mut run = run;
        run.deliveries.as_mut().unwrap().kept.push(webhook(0, 9700.0, "/digest", r#"{"slot":10}"#));
        let assessment = assess_scheduled(&run, std::slice::from_ref(&job));
        assert!(assessment.candidates.is_empty() && assessment.notes.iter().any(|n| n.contains("was seen both begun")), "{:?}", assessment.notes);
    }
}

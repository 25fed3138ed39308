//! Telemetry findings: whether every replica's exports arrive, name one service and an
//! instance of their own, and continue the traces the balancer passes on.
//!
//! Exports are attributed by the endpoint each replica was given, never by what they say.
//! The control is the other replicas: given the same settings and the same requests, they
//! exported. A replica sends nothing only if nothing arrived over the whole run, its
//! shutdown (when SDKs flush) included. A span breaks the trace only when it is the span
//! of a traced request (it recorded the request's marked URL, or it is the replica's
//! server span while the request was at it, for every traced request) and is in another
//! trace; a replica whose spans of those requests never arrived is not judged.

use std::collections::{BTreeMap, BTreeSet};

use super::finding::{ArtifactEvidence, FindingKind};
use super::twice::{Assessment, Candidate};
use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::history::InspectionRun;
use crate::telemetry::{Exported, Probe, ReplicaSeen};

/// The steps a telemetry finding can be about.
pub const EXPORTS: &str = "exports";
pub const SERVICE_NAME: &str = "service.name";
pub const INSTANCE_ID: &str = "service.instance.id";
pub const TRACEPARENT: &str = "traceparent";

pub fn assess(run: &InspectionRun) -> Assessment {
    let mut assessment = Assessment {
        error: run.error.clone(),
        users: 0,
        requests: run.answers.len(),
        ..Assessment::default()
    };
    let Some(window) = &run.exported else { return assessment };
    let whole = run.exported_in_run.as_ref().unwrap_or(window);
    let incarnation = |id: ReplicaId| run.answers.iter().map(|a| a.replica).find(|r| r.id == id).unwrap_or(Incarnation::first(id));
    let (exporting, silent): (Vec<&ReplicaSeen>, Vec<&ReplicaSeen>) = whole.replicas.iter().partition(|r| r.exports() > 0);
    if exporting.is_empty() {
        assessment.baseline = Some(nothing_arrived(whole));
        return assessment;
    }
    assessment.notes.extend(stray_notes(whole));
    // One finding per attribute, naming every replica it shows on.
    let mut found: BTreeMap<_, Candidate> = BTreeMap::new();
    let mut add = |candidate: Candidate| match found.get_mut(&candidate.key()) {
        Some(seen) => {
            seen.occurrences += 1;
            seen.consumer = candidate.consumer;
            seen.observed.reason = format!("{}; {}", seen.observed.reason, candidate.observed.reason);
        }
        None => {
            found.insert(candidate.key(), candidate);
        }
    };
    let control = "the other replicas, given the same settings and the same requests, exported";
    for quiet in silent {
        let loud = exporting[0];
        let reason = match &quiet.undecodable_why {
            Some(why) => format!("{} sent {} export(s) that are not OTLP/HTTP ({why}), and nothing else", quiet.replica, quiet.undecodable),
            None => format!("nothing arrived at {} over the whole run, its shutdown included", quiet.endpoint),
        };
        add(candidate(
            EXPORTS,
            (incarnation(loud.replica), incarnation(quiet.replica)),
            format!("every replica exports to the endpoint it was given ({} sent {} exports)", loud.replica, loud.exports()),
            reason,
            control.into(),
        ));
    }
    // What replicas call themselves does not change while they run: the whole run says it
    // best, a worker that exports now and then included.
    let named = named_alike(whole, &incarnation, &mut assessment.notes);
    let traced = traces_continued(run, window, &incarnation, &mut assessment.notes);
    for candidate_found in named.into_iter().chain(traced) {
        add(candidate_found);
    }
    assessment.candidates = found.into_values().collect();
    assessment
}

/// Every replica names the service alike and itself apart.
fn named_alike(window: &Exported, incarnation: &dyn Fn(ReplicaId) -> Incarnation, notes: &mut Vec<String>) -> Vec<Candidate> {
    let mut found = Vec::new();
    let given = window.given_service_name.as_deref();
    let expected_name = match given {
        Some(name) => format!("every replica reports service.name \"{name}\", the OTEL_SERVICE_NAME it was given"),
        None => "every replica reports the same service.name".into(),
    };
    let control = match given {
        Some(_) => "every replica was given the same OTEL_SERVICE_NAME and a service.instance.id of its own in OTEL_RESOURCE_ATTRIBUTES, as a platform gives them",
        None => "every replica was given the same settings (the platform names no service or instance: the target says the app does)",
    };
    let reporting: Vec<&ReplicaSeen> = window.replicas.iter().filter(|r| !r.resources.is_empty()).collect();
    // A process may export under more than one name (a worker beside the web app, which
    // may not have exported yet on every replica): replicas diverge when they share none.
    let names_of = |r: &ReplicaSeen| -> BTreeSet<String> {
        r.resources.iter().filter_map(|res| res.named.service_name.clone()).filter(|n| !n.starts_with("unknown_service")).collect()
    };
    let mut first: Option<(&ReplicaSeen, BTreeSet<String>)> = None;
    for replica in &reporting {
        let at = (incarnation(replica.replica), incarnation(replica.replica));
        if replica.resources.iter().any(|r| r.named.service_name.as_ref().is_none_or(|n| n.starts_with("unknown_service"))) {
            let reason = match replica.resources.iter().find_map(|r| r.named.service_name.clone()) {
                Some(default) => format!("{} reports service.name \"{default}\", an SDK's default: its telemetry is tied to no service", replica.replica),
                None => format!("{}'s exports carry no service.name", replica.replica),
            };
            found.push(candidate(SERVICE_NAME, at, expected_name.clone(), reason, control.into()));
        }
        let names = names_of(replica);
        match &first {
            None => first = Some((replica, names)),
            Some((other, other_names)) if other_names.is_disjoint(&names) && !names.is_empty() && !other_names.is_empty() => {
                let list = |names: &BTreeSet<String>| names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
                let reason = format!(
                    "{} reports service.name {} and {} {}: a backend shows them as different services",
                    other.replica,
                    list(other_names),
                    replica.replica,
                    list(&names)
                );
                found.push(candidate(SERVICE_NAME, (incarnation(other.replica), incarnation(replica.replica)), expected_name.clone(), reason, control.into()));
            }
            Some(_) => {}
        }
    }
    if let (Some(given), Some((_, names))) = (given, &first)
        && !names.is_empty()
        && !names.contains(given)
        && reporting.iter().all(|r| names_of(r).iter().all(|n| n != given))
    {
        notes.push(format!(
            "every replica reports service.name {}, not the OTEL_SERVICE_NAME \"{given}\" it was given: the app names the service itself",
            names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
        ));
    }
    let expected_id = "each replica reports a service.instance.id of its own".to_owned();
    let mut owner: BTreeMap<String, ReplicaId> = BTreeMap::new();
    for replica in &reporting {
        let at = (incarnation(replica.replica), incarnation(replica.replica));
        let given = replica.given_instance_id.as_ref().map(|id| format!(" (it was given service.instance.id={id})")).unwrap_or_default();
        if replica.resources.iter().any(|r| r.named.instance_id.is_none()) {
            let reason = format!("{}'s exports carry no service.instance.id{given}: they cannot be told from the other replicas'", replica.replica);
            found.push(candidate(INSTANCE_ID, at, expected_id.clone(), reason, control.into()));
        }
        let ids: BTreeSet<&String> = replica.resources.iter().filter_map(|r| r.named.instance_id.as_ref()).collect();
        for id in ids {
            match owner.get(id) {
                Some(&other) => {
                    let reason = format!(
                        "{other} and {} both report service.instance.id \"{id}\"{given}: a backend merges their telemetry, and one's metrics overwrite the other's",
                        replica.replica
                    );
                    found.push(candidate(INSTANCE_ID, (incarnation(other), incarnation(replica.replica)), expected_id.clone(), reason, control.into()));
                }
                None => {
                    owner.insert(id.clone(), replica.replica);
                }
            }
        }
    }
    found
}

/// Each replica's span of a traced request is in that request's trace.
fn traces_continued(run: &InspectionRun, window: &Exported, incarnation: &dyn Fn(ReplicaId) -> Incarnation, notes: &mut Vec<String>) -> Vec<Candidate> {
    let probes: Vec<Probe> = run.answers.iter().filter_map(Probe::of).collect();
    let traced: BTreeSet<&str> = probes.iter().map(|p| p.trace_id.as_str()).collect();
    let mut found = Vec::new();
    for replica in &window.replicas {
        let mine: Vec<&Probe> = probes.iter().filter(|p| p.replica == replica.replica).collect();
        if mine.is_empty() {
            continue;
        }
        let spans = &replica.about_probes;
        if spans.iter().any(|s| mine.iter().any(|p| p.trace_id == s.trace_id)) {
            continue;
        }
        let at = (incarnation(replica.replica), incarnation(replica.replica));
        let expected = "each replica's span of a request continues the trace of the traceparent the balancer sent".to_owned();
        let control = "the balancer sent each request a traceparent of a sampled trace, and the replica's span of it arrived".to_owned();
        // The span that recorded the request's marked URL is that request's, beyond doubt.
        if let Some(span) = spans.iter().find(|s| s.marker.as_deref().is_some_and(|m| mine.iter().any(|p| p.trace_id == m) && s.trace_id != m)) {
            let marker = span.marker.as_deref().unwrap_or_default();
            let reason = format!(
                "{}'s span \"{}\" of the request sent in trace {marker} is in trace {}{}",
                replica.replica,
                span.name,
                span.trace_id,
                if span.parent_span_id.is_none() { ", which it started itself" } else { "" }
            );
            found.push(candidate(TRACEPARENT, at, expected, reason, control));
            continue;
        }
        // Otherwise only a server span of another trace during every traced request.
        let during: Vec<_> = mine.iter().map(|p| spans.iter().find(|s| p.covers(s) && !traced.contains(s.trace_id.as_str()))).collect();
        if during.iter().all(Option::is_some) {
            let span = during[0].expect("all are some");
            let reason = format!(
                "during each of the {} requests sent in traces of replicheck's own, {}'s server span was in another trace (such as \"{}\" in trace {})",
                mine.len(),
                replica.replica,
                span.name,
                span.trace_id
            );
            found.push(candidate(TRACEPARENT, at, expected, reason, control));
            continue;
        }
        notes.push(format!(
            "{} exported no span of the {} requests sent in traces of replicheck's own (its requests are not traced, or were sampled out): whether it continues the balancer's traceparent was not asked",
            replica.replica,
            mine.len()
        ));
    }
    found
}

fn candidate(step: &str, ends: (Incarnation, Incarnation), expected: String, reason: String, control: String) -> Candidate {
    // The attribute is the artifact: findings about different ones stay apart.
    Candidate { artifact: ArtifactEvidence::named(step), ..Candidate::said(FindingKind::TelemetryUnattributed, "telemetry", step, ends, (expected, reason, control)) }
}

/// The control failed: no replica's telemetry arrived at all.
fn nothing_arrived(whole: &Exported) -> String {
    let mut why = format!(
        "no replica sent OTLP/HTTP telemetry to the endpoint it was given ({}) over the whole run, their shutdown included",
        whole.replicas.first().map_or("OTEL_EXPORTER_OTLP_ENDPOINT", |r| r.endpoint.as_str())
    );
    if let Some(bad) = whole.replicas.iter().find(|r| r.undecodable > 0) {
        why.push_str(&format!("; {} sent bodies that are not OTLP ({})", bad.replica, bad.undecodable_why.as_deref().unwrap_or("?")));
    }
    why.push_str(&stray_notes(whole).into_iter().map(|note| format!("; {note}")).collect::<String>());
    why.push_str(": does the app export over OTLP/HTTP (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf), to the endpoint in OTEL_EXPORTER_OTLP_ENDPOINT?");
    why
}

fn stray_notes(whole: &Exported) -> Vec<String> {
    whole
        .stray
        .iter()
        .map(|stray| format!("{} export(s) arrived at {}, a path that names no replica: an exporter dropped the path of the endpoint it was given", stray.count, stray.path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Answer, Phase, Question};
    use crate::telemetry::otlp::Named;
    use crate::telemetry::{ResourceSeen, SpanSeen};

    fn replica(id: u16, name: &str, instance: Option<&str>, exports: u32) -> ReplicaSeen {
        ReplicaSeen {
            replica: ReplicaId(id),
            endpoint: format!("http://127.0.0.1:4318/r{id}"),
            traces: exports,
            resources: if exports == 0 {
                Vec::new()
            } else {
                vec![ResourceSeen { named: Named { service_name: Some(name.into()), instance_id: instance.map(Into::into) }, exports }]
            },
            ..ReplicaSeen::default()
        }
    }

    fn traced(id: u16, trace: &str, at_ms: f64) -> Answer {
        Answer {
            question: Question::TracedRequest,
            replica: Incarnation::first(ReplicaId(id)),
            from: None,
            path: format!("/?replicheck-trace={trace}"),
            at_ms,
            status: Some(200),
            error: None,
            scheme: None,
            client: None,
            keys: None,
            trace_id: Some(trace.into()),
            end_ms: Some(at_ms + 5.0),
        }
    }

    fn span(trace: &str, start_ms: f64, marker: Option<&str>) -> SpanSeen {
        SpanSeen {
            trace_id: trace.into(),
            parent_span_id: None,
            server: true,
            name: "GET /".into(),
            start_ms,
            end_ms: start_ms + 1.0,
            marker: marker.map(Into::into),
            path: Some("/".into()),
        }
    }

    fn run(replicas: Vec<ReplicaSeen>, answers: Vec<Answer>) -> InspectionRun {
        InspectionRun {
            inspection: "telemetry".into(),
            phase: Phase::Main,
            answers,
            exported: Some(Exported { given_service_name: Some("shop".into()), replicas, ..Exported::default() }),
            exported_in_run: None,
            error: None,
        }
    }

    fn steps(assessment: &Assessment) -> Vec<&str> {
        assessment.candidates.iter().map(|c| c.step.as_str()).collect()
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn replicas_that_name_the_service_alike_and_themselves_apart_and_continue_traces_pass() {
        let mut r0 = replica(0, "shop", Some("run.r0"), 3);
        r0.about_probes = vec![span(A, 10.0, Some(A))];
        let mut r1 = replica(1, "shop", Some("run.r1"), 3);
        r1.about_probes = vec![span(B, 20.0, None)];
        let assessment = assess(&run(vec![r0, r1], vec![traced(0, A, 9.0), traced(1, B, 19.0)]));
        assert!(assessment.candidates.is_empty(), "{:?}", assessment.candidates);
        assert_eq!(assessment.baseline, None);
    }

    #[test]
    fn divergent_names_a_shared_instance_id_and_a_broken_trace_are_each_found() {
        let mut r0 = replica(0, "shop-r0", Some("one"), 3);
        r0.about_probes = vec![span("cccccccccccccccccccccccccccccccc", 10.0, Some(A))];
        let r1 = replica(1, "shop-r1", Some("one"), 3);
        let assessment = assess(&run(vec![r0, r1], vec![traced(0, A, 9.0)]));
        assert_eq!(steps(&assessment), vec![INSTANCE_ID, SERVICE_NAME, TRACEPARENT]);
        let trace = &assessment.candidates[2];
        assert!(trace.observed.reason.contains("in trace cccc"), "{}", trace.observed.reason);
        assert!(trace.observed.reason.contains("which it started itself"));
    }

    #[test]
    fn a_replica_whose_requests_left_no_span_is_not_judged_on_traces() {
        let mut r0 = replica(0, "shop", Some("run.r0"), 3);
        // Another request's server span, outside the traced request's time.
        r0.about_probes = vec![span("cccccccccccccccccccccccccccccccc", 500.0, None)];
        let mut assessment = assess(&run(vec![r0], vec![traced(0, A, 9.0)]));
        assert!(assessment.candidates.is_empty());
        assert!(assessment.notes.pop().unwrap().contains("was not asked"));
    }

    #[test]
    fn nothing_from_one_replica_is_found_and_nothing_from_all_is_a_failed_control() {
        let exported = run(vec![replica(0, "shop", Some("run.r0"), 3), replica(1, "shop", None, 0)], Vec::new());
        let assessment = assess(&exported);
        assert_eq!(steps(&assessment), vec![EXPORTS]);
        assert!(assessment.candidates[0].observed.reason.contains("nothing arrived at http://127.0.0.1:4318/r1"));
        // What arrived later, at shutdown, clears it.
        let mut flushed = exported.clone();
        flushed.exported_in_run = Some(Exported {
            replicas: vec![replica(0, "shop", Some("run.r0"), 3), replica(1, "shop", Some("run.r1"), 1)],
            ..Exported::default()
        });
        assert!(assess(&flushed).candidates.is_empty());
        let none = assess(&run(vec![replica(0, "shop", None, 0), replica(1, "shop", None, 0)], Vec::new()));
        assert!(none.baseline.unwrap().contains("no replica sent OTLP/HTTP telemetry"));
    }

    #[test]
    fn a_worker_not_yet_exported_everywhere_is_no_divergence_and_a_name_of_the_apps_own_is_a_note() {
        let with_worker = |id: u16| {
            let mut r = replica(id, "web", Some(&format!("run.r{id}")), 2);
            r.resources.push(ResourceSeen { named: Named { service_name: Some("worker".into()), instance_id: Some(format!("run.r{id}")) }, exports: 1 });
            r
        };
        let mut assessment = assess(&run(vec![with_worker(0), replica(1, "web", Some("run.r1"), 2)], Vec::new()));
        assert!(assessment.candidates.is_empty(), "{:?}", assessment.candidates);
        assert!(assessment.notes.pop().unwrap().contains("not the OTEL_SERVICE_NAME \"shop\""));
    }

    #[test]
    fn a_missing_name_or_instance_id_is_found_with_what_the_platform_gave() {
        let mut r0 = replica(0, "unknown_service:python", None, 2);
        r0.given_instance_id = Some("run.r0".into());
        let assessment = assess(&run(vec![r0, replica(1, "shop", Some("run.r1"), 2)], Vec::new()));
        assert_eq!(steps(&assessment), vec![INSTANCE_ID, SERVICE_NAME]);
        assert!(assessment.candidates[0].observed.reason.contains("it was given service.instance.id=run.r0"));
        assert!(assessment.candidates[1].observed.reason.contains("an SDK's default"));
    }
}

//! Diagnoses: findings grouped by the probable root cause they point to, each with how
//! sure the grouping is, why, and what to change for the target's framework.
//!
//! A person reading a red build needs the faults, not every sighting of them: the checker
//! decides findings, this module only groups and explains them. Every finding leads
//! exactly one diagnosis; where its evidence cannot tell two causes apart (`basis.rs`), the
//! other cause's diagnosis names it too, as one it may explain.

pub mod basis;
pub mod cause;
pub mod remedy;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use cause::Cause;

use crate::check::finding::{Finding, FindingKind};
use crate::vocab::replica::ReplicaId;
use crate::target::Preset;
use basis::{Basis, Rests};

/// How sure a diagnosis is that its cause is the one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn name(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// A framework's remedy for a cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remedy {
    pub framework: Preset,
    pub text: String,
}

/// A probable root cause and the findings that point to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Diagnosis {
    /// `D1`, `D2`, ... in the order of their first finding.
    pub id: String,
    pub cause: Cause,
    /// The cause in a sentence.
    pub title: String,
    /// The ids of the findings it explains.
    pub findings: Vec<String>,
    /// Findings another diagnosis leads that this cause may explain instead: their
    /// evidence cannot tell the two apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    /// The replicas those findings involve.
    pub replicas: Vec<ReplicaId>,
    pub confidence: Confidence,
    /// The evidence, and why it points to this cause rather than another.
    pub why: String,
    /// The topic of the multi-instance checklist it comes from.
    pub topic: String,
    /// What to change, for the target's framework (generic when it names none).
    pub remedy: String,
    /// The remedy for every framework preset, and the generic one.
    pub remedies: Vec<Remedy>,
    /// Every finding it explains is accepted by the team's policy.
    #[serde(default)]
    pub accepted: bool,
}

/// One finding as the grouping reads it: the cause it points to first, another its
/// evidence cannot rule out, and that evidence.
struct Reading<'a> {
    finding: &'a Finding,
    lead: Cause,
    also: Option<Cause>,
    basis: Basis,
}

impl<'a> Reading<'a> {
    fn of(finding: &'a Finding, preset: Preset) -> Self {
        let basis = Basis::of(finding, preset);
        let by_kind = Cause::of(finding);
        // What the artifact rests on decides between the keys and the store (across
        // replicas, or after a restart); the kind alone decides when no value was seen,
        // and for every other cause.
        let (keys, store) = match by_kind {
            Cause::KeysNotShared | Cause::SessionPerProcess if finding.kind != FindingKind::ArtifactLostAfterRestart => {
                (Cause::KeysNotShared, Cause::SessionPerProcess)
            }
            Cause::KeysNotPersisted | Cause::SessionPerProcess => (Cause::KeysNotPersisted, Cause::SessionPerProcess),
            // State the scenario never named, lost while the user carried nothing but
            // opaque session ids: it was kept on the server, under those ids.
            Cause::StatePerReplica if basis.rests == Rests::Store => {
                return Reading { finding, lead: Cause::SessionPerProcess, also: Some(Cause::StatePerReplica), basis };
            }
            _ => return Reading { finding, lead: by_kind, also: None, basis },
        };
        let (lead, also) = match basis.rests {
            Rests::Untold => (by_kind, None),
            // A session in a signed cookie may still hold an id into a store kept per process.
            Rests::Keys if by_kind == store => (keys, Some(store)),
            Rests::Keys => (keys, None),
            Rests::Store => (store, None),
            Rests::Either { store_first: true } => (store, Some(keys)),
            Rests::Either { store_first: false } if by_kind == store => (store, Some(keys)),
            Rests::Either { store_first: false } => (keys, Some(store)),
        };
        Reading { finding, lead, also, basis }
    }
}

/// Groups findings (already merged, with their ids) into diagnoses.
pub fn diagnose(findings: &[Finding], preset: Preset) -> Vec<Diagnosis> {
    let readings: Vec<Reading> = findings.iter().map(|f| Reading::of(f, preset)).collect();
    let mut causes: Vec<Cause> = Vec::new();
    for reading in &readings {
        for cause in std::iter::once(reading.lead).chain(reading.also) {
            if !causes.contains(&cause) {
                causes.push(cause);
            }
        }
    }
    let mut diagnoses: Vec<Diagnosis> = causes
        .iter()
        .map(|&cause| {
            let supporting: Vec<&Reading> = readings.iter().filter(|r| r.lead == cause).collect();
            let also: Vec<&Reading> = readings.iter().filter(|r| r.also == Some(cause)).collect();
            let (confidence, why) = judge(cause, &supporting, &also, &causes);
            let replicas: BTreeSet<ReplicaId> = supporting.iter().chain(&also).flat_map(|r| [r.finding.producer.id, r.finding.consumer.id]).collect();
            Diagnosis {
                id: String::new(),
                cause,
                title: cause.title().to_owned(),
                findings: supporting.iter().map(|r| r.finding.id.clone()).collect(),
                also: also.iter().map(|r| r.finding.id.clone()).collect(),
                replicas: replicas.into_iter().collect(),
                confidence,
                why,
                topic: cause.topic().to_owned(),
                remedy: remedy::remedy(cause, preset).to_owned(),
                remedies: Preset::ALL
                    .iter()
                    .map(|&framework| Remedy {
                        framework,
                        text: remedy::remedy(cause, framework).to_owned(),
                    })
                    .collect(),
                accepted: false,
            }
        })
        .collect();
    for (index, diagnosis) in diagnoses.iter_mut().enumerate() {
        diagnosis.id = format!("D{}", index + 1);
    }
    diagnoses
}

impl Diagnosis {
    /// The findings it explains and, after them, those it may explain: `F1, F3 (may explain F2)`.
    pub fn listed(&self, id: impl Fn(&str) -> String) -> String {
        let mut listed = self.findings.iter().map(|f| id(f)).collect::<Vec<_>>().join(", ");
        if !self.also.is_empty() {
            let also = self.also.iter().map(|f| id(f)).collect::<Vec<_>>().join(", ");
            listed = if listed.is_empty() { format!("may explain {also}") } else { format!("{listed} (may explain {also})") };
        }
        listed
    }

    /// Every finding it names, those it explains first.
    pub fn named(&self) -> impl Iterator<Item = &String> {
        self.findings.iter().chain(&self.also)
    }
}

/// The diagnosis a finding belongs to.
pub fn of<'a>(diagnoses: &'a [Diagnosis], finding: &Finding) -> Option<&'a Diagnosis> {
    diagnoses.iter().find(|d| d.findings.contains(&finding.id))
}

/// How sure, and why: the evidence in numbers, what makes it this cause, and any other
/// diagnosis of the run that could explain the same observations.
fn judge(cause: Cause, readings: &[&Reading], also: &[&Reading], causes: &[Cause]) -> (Confidence, String) {
    if readings.is_empty() {
        return judge_also(also);
    }
    let supporting: Vec<&Finding> = readings.iter().map(|r| r.finding).collect();
    let rests = |wanted: fn(Rests) -> bool| readings.iter().any(|r| wanted(r.basis.rests));
    let on_keys = rests(|r| matches!(r, Rests::Keys | Rests::Untold));
    let on_store = rests(|r| r == Rests::Store);
    let sightings: u32 = supporting.iter().map(|f| f.occurrences).sum();
    let reproduced = supporting.iter().filter(|f| f.reproduced).count();
    let has = |kind: FindingKind| supporting.iter().any(|f| f.kind == kind);
    let after_restart = has(FindingKind::ArtifactLostAfterRestart);
    let across = supporting.iter().any(|f| f.kind != FindingKind::ArtifactLostAfterRestart);
    let both_ways = supporting
        .iter()
        .any(|f| f.producer.id != f.consumer.id && supporting.iter().any(|g| g.producer.id == f.consumer.id && g.consumer.id == f.producer.id));

    let mut why = vec![format!(
        "{} finding(s), {sightings} failure(s) in all, {reproduced} of the findings failed again when run again; every control passed",
        supporting.len()
    )];
    let mut rival = None;
    match cause {
        Cause::KeysNotShared => {
            why.push("cookies or form tokens one replica issued were refused by another, while the same steps on one replica passed".into());
            if causes.contains(&Cause::KeyringRace) {
                rival = Some("the replicas started together and each created a key ring (keyring-race): that explains these failures too");
            } else if rests(|r| r == Rests::Untold) && has(FindingKind::AntiforgeryRejected) && has(FindingKind::AuthCookieRejected) {
                why.push("both the auth cookie and the form token failed, and both are protected by the app's keys".into());
            } else if causes.contains(&Cause::SessionPerProcess) && !rests(|r| r == Rests::Keys) {
                rival = Some("the login or form token may rest on a server-side session, which is kept per process too");
            }
        }
        Cause::KeyringRace => why.push(
            "after every replica was stopped and the shared directory emptied, replicas started together refused each other's artifacts, while the same users on the same routes passed when one replica started and was used before the others".into(),
        ),
        Cause::MigrationsRace => why.push(
            "after every replica was stopped and the run's shared state emptied (the shared directory, the database back to its seed), replicas started together failed to start or failed requests, while the same replicas started one after another started and served the same users".into(),
        ),
        Cause::KeysNotPersisted => {
            why.push("cookies or form tokens stopped working once the replica that issued them restarted, while the same steps without the restart passed".into());
            if causes.contains(&Cause::KeysNotShared) && on_keys {
                why.push("the keys are not shared across replicas either: the key ring most likely lives in process memory".into());
            }
        }
        Cause::SessionPerProcess => {
            if has(FindingKind::SessionLost) && across {
                why.push("a value stored in the session through one replica was missing on another, while one replica kept it".into());
            }
            if has(FindingKind::AuthCookieRejected) || has(FindingKind::AntiforgeryRejected) {
                why.push("a sign-in or form token that rests on the session failed on another replica, while the same steps on one replica passed".into());
            }
            if after_restart {
                why.push("what the session held was gone after the replica that kept it restarted".into());
            }
            if causes.contains(&Cause::KeysNotShared) && across && !on_store {
                rival = Some("sessions kept in signed cookies fail the same way when the keys are not shared");
            }
        }
        Cause::CachePerProcess => {
            if across {
                why.push("an entry written through one replica was missing or different on another, while one replica read it back".into());
            }
            if after_restart {
                why.push("an entry was gone after the replica that held it restarted".into());
            }
        }
        Cause::SigningKeysNotShared => {
            if has(FindingKind::SigningKeysDivergent) {
                why.push("tokens signed by one replica failed on another, or the replicas published different key sets".into());
            }
            if after_restart {
                why.push("tokens stopped working once the replica that signed them restarted".into());
            }
        }
        Cause::ForwardedHeadersIgnored => why.push("the app saw the scheme or the address the balancer connected with, not the forwarded ones".into()),
        Cause::ForwardedHeadersTrusted => why.push("a client that is not the balancer sent X-Forwarded-* headers and the app believed them".into()),
        Cause::RefusesWhileRouted => {
            why.push("connections were refused after SIGTERM while the balancer, as the deployment model says, still routed to the replica".into())
        }
        Cause::ReadyTooEarly => why.push("readiness passed before the replica served its pages, and the same pages were served moments later".into()),
        Cause::ReadinessIgnoresState => why.push("readiness kept passing between real requests that failed on the same replica".into()),
        Cause::InflightCut => why.push("requests sent before SIGTERM failed, on a replica that served the same requests before".into()),
        Cause::ShutdownOverGrace => why.push("the replica had not exited when the grace period ended".into()),
        Cause::StoreNotDurable => why.push("artifacts stopped working after the shared store restarted, while they worked before".into()),
        Cause::StatePerReplica => why.push("a step that passed on one replica failed on another".into()),
        Cause::NeedsPrivileges => why.push(
            "a flow that passed on the replicas as the target runs them failed, or a replica did not start, once they ran as a restricted platform runs containers".into(),
        ),
        Cause::TelemetryResource => why.push(
            "the resources the replicas' exports named did not give one service.name to all and a service.instance.id to each, though every replica was given the same settings".into(),
        ),
        Cause::TraceContextDropped => why.push(
            "a replica's span of a request the balancer sent with a traceparent was in a trace of its own, while the request's own trace never reached it".into(),
        ),
        Cause::TelemetryNotExported => why.push("nothing arrived from a replica at the endpoint it was given, while the others' exports did".into()),
        Cause::ScheduledJobPerReplica => {
            why.push("one occurrence of the job was delivered by several replicas, while one replica alone delivered each occurrence once".into())
        }
        Cause::InProcessQueue => why.push(
            "work a replica had accepted was never delivered by any replica once it was terminated, while the same work was delivered without the termination".into(),
        ),
        Cause::UnclaimedOutbox => {
            why.push("one trigger was delivered more than once across the replicas, while one replica alone delivered each trigger once".into())
        }
        Cause::BroadcastPerProcess => why.push(
            "a message published through one replica did not reach a subscriber on another, while one published through the subscriber's own replica did".into(),
        ),
        Cause::RelayNotResumed => why.push(
            "after the disruption, messages published through another replica never reached a subscriber, while before it the same flow's message through another replica reached a subscriber on the same replica".into(),
        ),
        Cause::TransportNeedsAffinity => why.push(
            "the transport's next request was refused by another replica than the one that answered its handshake, while the same steps pinned to that replica went on".into(),
        ),
        Cause::LimitPerProcess => {
            if has(FindingKind::LimitPerReplica) {
                why.push("a client limited through one replica was let through by another, while the first went on refusing it".into());
            }
            if has(FindingKind::LimitResetByRestart) {
                why.push("a client limited by a replica was let through again once that replica restarted, while a replica that had counted the same tries went on refusing it".into());
            }
        }
        Cause::LimitKeyedOnProxy => why.push(
            "a new client, whose own tries were far below the limit, was refused right after another client reached the limit through the same replica".into(),
        ),
        Cause::LimitKeyForgeable => why.push(
            "a client refused for its tries was let through once it sent X-Forwarded-For from an address that is not the proxy, and refused again without it".into(),
        ),
        Cause::UploadsOnLocalDisk => {
            if across {
                why.push("a file uploaded through one replica was missing on another, while the replica that received it served it".into());
            }
            if after_restart {
                why.push("an uploaded file was gone after the replica that received it restarted".into());
            }
        }
        Cause::JobAbandonedAtShutdown => why.push(
            "a run of the job the terminated replica had begun was finished by no replica, while every run begun undisturbed was finished".into(),
        ),
    }
    why.extend(evidence_of(readings));
    if both_ways {
        why.push("it failed in both directions between the same replicas".into());
    }
    if rival.is_none() && rests(|r| matches!(r, Rests::Either { .. })) {
        rival = Some("the artifacts' form cannot rule out the other cause named with them");
    }
    let mut confidence = if reproduced > 0 {
        Confidence::High
    } else if sightings > 1 {
        Confidence::Medium
    } else {
        Confidence::Low
    };
    if let Some(rival) = rival {
        why.push(format!("but {rival}"));
        confidence = confidence.min(Confidence::Medium);
    }
    if reproduced == 0 {
        why.push("no finding failed again when run again".into());
    }
    (confidence, why.join("; "))
}

/// What the artifacts looked like, each reading once.
fn evidence_of(readings: &[&Reading]) -> Vec<String> {
    let mut evidence: Vec<String> = Vec::new();
    for reading in readings {
        if !reading.basis.evidence.is_empty() && !evidence.contains(&reading.basis.evidence) {
            evidence.push(reading.basis.evidence.clone());
        }
    }
    evidence
}

/// A cause no finding leads, named because some findings' evidence cannot rule it out.
fn judge_also(also: &[&Reading]) -> (Confidence, String) {
    let ids: Vec<&str> = also.iter().map(|r| r.finding.id.as_str()).collect();
    let mut why = vec![format!("no finding points here first; {} may be explained by this cause instead", ids.join(", "))];
    why.extend(evidence_of(also));
    (Confidence::Low, why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::finding::tests::finding;

    fn numbered(mut findings: Vec<Finding>) -> Vec<Finding> {
        for (index, finding) in findings.iter_mut().enumerate() {
            finding.id = format!("F{}", index + 1);
        }
        findings
    }

    #[test]
    fn every_finding_is_in_exactly_one_diagnosis() {
        let findings = numbered(vec![
            finding(FindingKind::AuthCookieRejected, "login", "auth-cookie", (0, 1), (1, 1)),
            finding(FindingKind::SessionLost, "session", "session", (1, 1), (0, 1)),
            finding(FindingKind::AntiforgeryRejected, "antiforgery", "antiforgery-token", (1, 1), (0, 1)),
            finding(FindingKind::ArtifactLostAfterRestart, "restart", "session", (0, 1), (0, 2)),
            finding(FindingKind::ArtifactLostAfterRestart, "restart", "auth-cookie", (0, 1), (0, 2)),
            finding(FindingKind::RefusedDuringDeregistration, "sigterm", "none", (1, 1), (1, 1)),
        ]);
        let diagnoses = diagnose(&findings, Preset::Rails);
        let causes: Vec<Cause> = diagnoses.iter().map(|d| d.cause).collect();
        assert_eq!(causes, [Cause::KeysNotShared, Cause::SessionPerProcess, Cause::KeysNotPersisted, Cause::RefusesWhileRouted]);
        for finding in &findings {
            assert_eq!(diagnoses.iter().filter(|d| d.findings.contains(&finding.id)).count(), 1, "{}", finding.id);
        }
        assert_eq!(diagnoses[0].findings, ["F1", "F3"]);
        assert_eq!(diagnoses[1].findings, ["F2", "F4"]);
        assert_eq!(diagnoses[0].remedy, remedy::remedy(Cause::KeysNotShared, Preset::Rails));
        assert_eq!(diagnoses[0].remedies.len(), Preset::ALL.len());
        assert_eq!(diagnoses[0].replicas, [ReplicaId(0), ReplicaId(1)]);
    }

    #[test]
    fn a_rival_explanation_lowers_confidence_and_says_so() {
        // A login cookie refused across replicas, and sessions lost too: the login may be
        // a server-side session rather than a cookie the keys protect.
        let findings = numbered(vec![
            finding(FindingKind::AuthCookieRejected, "login", "auth-cookie", (0, 1), (1, 1)),
            finding(FindingKind::SessionLost, "session", "session", (0, 1), (1, 1)),
        ]);
        let diagnoses = diagnose(&findings, Preset::Express);
        assert_eq!(diagnoses[0].confidence, Confidence::Medium, "{}", diagnoses[0].why);
        assert!(diagnoses[0].why.contains("server-side session"), "{}", diagnoses[0].why);

        // With the form token refused as well, the keys are the common factor.
        let findings = numbered(vec![
            finding(FindingKind::AuthCookieRejected, "login", "auth-cookie", (0, 1), (1, 1)),
            finding(FindingKind::AntiforgeryRejected, "antiforgery", "antiforgery-token", (0, 1), (1, 1)),
            finding(FindingKind::SessionLost, "session", "session", (0, 1), (1, 1)),
        ]);
        assert_eq!(diagnose(&findings, Preset::Express)[0].confidence, Confidence::High);
    }

    /// Login, form token and session findings whose cookies have the given shape.
    fn three_flows(cookie: &str, shape: crate::shape::Shape) -> Vec<Finding> {
        let mut findings = numbered(vec![
            finding(
                FindingKind::AuthCookieRejected,
                "login",
                "auth-cookie",
                (0, 1),
                (1, 1),
            ),
            finding(
                FindingKind::AntiforgeryRejected,
                "antiforgery",
                "antiforgery-token",
                (1, 1),
                (0, 1),
            ),
            finding(
                FindingKind::SessionLost,
                "session",
                "session",
                (0, 1),
                (1, 1),
            ),
            finding(
                FindingKind::ArtifactLostAfterRestart,
                "restart",
                "auth-cookie",
                (0, 1),
                (0, 2),
            ),
        ]);
        for f in &mut findings {
            f.artifact.shapes.insert(cookie.into(), shape);
            f.artifact.reissued = vec![cookie.into()];
        }
        findings
    }

    #[test]
    fn opaque_session_ids_lead_to_sessions_per_process_and_no_key_is_blamed() {
        use crate::shape::Shape;
        for (cookie, preset) in [
            ("JSESSIONID", Preset::Spring),
            ("PHPSESSID", Preset::Generic),
            ("sessionid", Preset::Django),
        ] {
            let diagnoses = diagnose(&three_flows(cookie, Shape::OpaqueId), preset);
            let causes: Vec<Cause> = diagnoses.iter().map(|d| d.cause).collect();
            assert_eq!(
                causes,
                [Cause::SessionPerProcess],
                "{cookie}: {diagnoses:#?}"
            );
            let session = &diagnoses[0];
            assert_eq!(session.findings, ["F1", "F2", "F3", "F4"]);
            assert_eq!(session.confidence, Confidence::High, "{}", session.why);
            assert!(
                session
                    .why
                    .contains(&format!("`{cookie}` (opaque-id) is an opaque id")),
                "{}",
                session.why
            );
            assert!(
                session.why.contains("as to a visitor it never saw"),
                "{}",
                session.why
            );
            assert!(session.remedy.contains("session"), "{}", session.remedy);
        }
    }

    #[test]
    fn unnamed_state_lost_while_the_user_held_only_a_session_id_was_the_sessions() {
        use crate::shape::Shape;
        let mut lost = finding(FindingKind::ArtifactLostAfterRestart, "restart", "none", (0, 1), (0, 2));
        lost.id = "F1".into();
        lost.artifact.shapes.insert("PHPSESSID".into(), Shape::OpaqueId);
        let diagnoses = diagnose(std::slice::from_ref(&lost), Preset::Generic);
        let causes: Vec<(Cause, usize, usize)> = diagnoses.iter().map(|d| (d.cause, d.findings.len(), d.also.len())).collect();
        assert_eq!(causes, [(Cause::SessionPerProcess, 1, 0), (Cause::StatePerReplica, 0, 1)]);
        assert!(diagnoses[0].why.contains("gone after the replica that kept it restarted"), "{}", diagnoses[0].why);
        // Without any cookie, nothing says where the state was.
        lost.artifact.shapes.clear();
        assert_eq!(diagnose(&[lost], Preset::Generic)[0].cause, Cause::StatePerReplica);
    }

    #[test]
    fn signed_cookies_lead_to_the_keys() {
        use crate::shape::Shape;
        let diagnoses = diagnose(&three_flows("session", Shape::Signed), Preset::Flask);
        let causes: Vec<(Cause, Vec<String>, Vec<String>)> = diagnoses
            .iter()
            .map(|d| (d.cause, d.findings.clone(), d.also.clone()))
            .collect();
        assert_eq!(
            causes,
            [
                (
                    Cause::KeysNotShared,
                    vec!["F1".into(), "F2".into(), "F3".into()],
                    vec![]
                ),
                // A signed session cookie may still carry an id into a store kept per process.
                (Cause::SessionPerProcess, vec![], vec!["F3".into()]),
                (Cause::KeysNotPersisted, vec!["F4".into()], vec![]),
            ]
        );
        assert_eq!(
            diagnoses[0].confidence,
            Confidence::High,
            "{}",
            diagnoses[0].why
        );
        assert!(
            diagnoses[0]
                .why
                .contains("carries its data under a signature"),
            "{}",
            diagnoses[0].why
        );
        assert_eq!(
            diagnoses[1].confidence,
            Confidence::Low,
            "{}",
            diagnoses[1].why
        );
    }

    #[test]
    fn a_value_that_could_be_either_keeps_both_causes_and_says_what_would_tell() {
        use crate::shape::Shape;
        let diagnoses = diagnose(&three_flows("app.auth", Shape::Sealed), Preset::Generic);
        let keys = diagnoses
            .iter()
            .find(|d| d.cause == Cause::KeysNotShared)
            .expect("keys stay");
        let session = diagnoses
            .iter()
            .find(|d| d.cause == Cause::SessionPerProcess)
            .expect("sessions stay");
        assert_eq!(
            (keys.findings.clone(), keys.also.clone()),
            (
                vec!["F1".to_owned(), "F2".to_owned()],
                vec!["F3".to_owned()]
            )
        );
        assert_eq!(
            (session.findings.clone(), session.also.clone()),
            (
                vec!["F3".to_owned()],
                vec!["F1".to_owned(), "F2".to_owned(), "F4".to_owned()]
            )
        );
        for d in [keys, session] {
            assert_eq!(d.confidence, Confidence::Medium, "{}", d.why);
            assert!(d.why.contains("would tell them apart"), "{}", d.why);
        }
        assert_eq!(session.listed(str::to_owned), "F3 (may explain F1, F2, F4)");
    }

    #[test]
    fn a_single_sighting_that_did_not_happen_again_is_low() {
        let mut once = finding(FindingKind::ReadinessPremature, "scale-out", "none", (2, 1), (2, 1));
        once.reproduced = false;
        let diagnoses = diagnose(&numbered(vec![once]), Preset::Generic);
        assert_eq!(diagnoses[0].confidence, Confidence::Low);
        assert!(diagnoses[0].why.contains("no finding failed again"), "{}", diagnoses[0].why);
    }
}

//! Diagnoses: findings grouped by the probable root cause they point to, each with how
//! sure the grouping is, why, and what to change for the target's framework.
//!
//! A person reading a red build needs the faults, not every sighting of them: the checker
//! decides findings, this module only groups and explains them. Every finding belongs to
//! exactly one diagnosis.

pub mod cause;
pub mod remedy;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use cause::Cause;

use crate::check::finding::{Finding, FindingKind};
use crate::cluster::replica::ReplicaId;
use crate::target::Preset;

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

/// Groups findings (already merged, with their ids) into diagnoses.
pub fn diagnose(findings: &[Finding], preset: Preset) -> Vec<Diagnosis> {
    let mut causes: Vec<Cause> = Vec::new();
    for finding in findings {
        let cause = Cause::of(finding);
        if !causes.contains(&cause) {
            causes.push(cause);
        }
    }
    let mut diagnoses: Vec<Diagnosis> = causes
        .iter()
        .map(|&cause| {
            let supporting: Vec<&Finding> = findings.iter().filter(|f| Cause::of(f) == cause).collect();
            let (confidence, why) = judge(cause, &supporting, &causes);
            let replicas: BTreeSet<ReplicaId> = supporting.iter().flat_map(|f| [f.producer.id, f.consumer.id]).collect();
            Diagnosis {
                id: String::new(),
                cause,
                title: cause.title().to_owned(),
                findings: supporting.iter().map(|f| f.id.clone()).collect(),
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

/// The diagnosis a finding belongs to.
pub fn of<'a>(diagnoses: &'a [Diagnosis], finding: &Finding) -> Option<&'a Diagnosis> {
    diagnoses.iter().find(|d| d.findings.contains(&finding.id))
}

/// How sure, and why: the evidence in numbers, what makes it this cause, and any other
/// diagnosis of the run that could explain the same observations.
fn judge(cause: Cause, supporting: &[&Finding], causes: &[Cause]) -> (Confidence, String) {
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
            } else if has(FindingKind::AntiforgeryRejected) && has(FindingKind::AuthCookieRejected) {
                why.push("both the auth cookie and the form token failed, and both are protected by the app's keys".into());
            } else if causes.contains(&Cause::SessionPerProcess) {
                rival = Some("the login or form token may rest on a server-side session, which is kept per process too");
            }
        }
        Cause::KeyringRace => why.push(
            "after every replica was stopped and the shared directory emptied, replicas started together refused each other's artifacts, while the same users on the same routes passed when one replica started and was used before the others".into(),
        ),
        Cause::KeysNotPersisted => {
            why.push("cookies or form tokens stopped working once the replica that issued them restarted, while the same steps without the restart passed".into());
            if causes.contains(&Cause::KeysNotShared) {
                why.push("the keys are not shared across replicas either: the key ring most likely lives in process memory".into());
            }
        }
        Cause::SessionPerProcess => {
            if across {
                why.push("a value stored in the session through one replica was missing on another, while one replica kept it".into());
            }
            if after_restart {
                why.push("a session value was gone after the replica that kept it restarted".into());
            }
            if causes.contains(&Cause::KeysNotShared) && across {
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
    }
    if both_ways {
        why.push("it failed in both directions between the same replicas".into());
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

    #[test]
    fn a_single_sighting_that_did_not_happen_again_is_low() {
        let mut once = finding(FindingKind::ReadinessPremature, "scale-out", "none", (2, 1), (2, 1));
        once.reproduced = false;
        let diagnoses = diagnose(&numbered(vec![once]), Preset::Generic);
        assert_eq!(diagnoses[0].confidence, Confidence::Low);
        assert!(diagnoses[0].why.contains("no finding failed again"), "{}", diagnoses[0].why);
    }
}

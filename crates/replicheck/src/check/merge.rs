//! One finding per fault: findings that are the same fault seen again fold into one, which
//! keeps every sighting as an observation.
//!
//! The same fault is the same kind, found by the same check (scenario, inspection or
//! experiment), on the same artifact, between the same producer and consumer replicas. The
//! artifact is part of it because a restart that loses a cookie and one that loses a cache
//! entry are two faults with two remedies; the incarnation is not, because a rolling
//! restart that refuses requests on r0#5 and on r0#6 shows one fault twice.

use serde::{Deserialize, Serialize};

use crate::vocab::replica::{Incarnation, ReplicaId};

use super::finding::{Finding, FindingKind};

/// One sighting of a fault: the finding it was before merging, in brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub scenario: String,
    pub step: String,
    pub producer: Incarnation,
    pub consumer: Incarnation,
    /// The virtual user whose failing run is the evidence; with `step`, it names the
    /// request on the timeline.
    pub vu: Option<u32>,
    /// When the failing request started (milliseconds since the run started).
    pub at_ms: Option<f64>,
    /// How many users or probes failed the same way.
    pub occurrences: u32,
    pub reproduced: bool,
}

impl Observation {
    fn of(finding: &Finding) -> Self {
        Self {
            scenario: finding.scenario.clone(),
            step: finding.step.clone(),
            producer: finding.producer,
            consumer: finding.consumer,
            vu: finding.vu,
            at_ms: finding.at_ms,
            occurrences: finding.occurrences,
            reproduced: finding.reproduced,
        }
    }
}

type Fault<'a> = (FindingKind, &'a str, &'a str, ReplicaId, ReplicaId);

fn fault(finding: &Finding) -> Fault<'_> {
    (finding.kind, &finding.check, &finding.artifact.kind, finding.producer.id, finding.consumer.id)
}

/// Folds findings of the same fault into the first of them, in the order given. The first
/// stays the evidence shown; the merged finding counts every occurrence, is reproduced
/// if any sighting was, and lists every sighting in time order.
pub fn merge(findings: Vec<Finding>) -> Vec<Finding> {
    let mut merged: Vec<Finding> = Vec::new();
    for finding in findings {
        let observation = Observation::of(&finding);
        match merged.iter_mut().find(|m| fault(m) == fault(&finding)) {
            Some(same) => {
                same.occurrences += finding.occurrences;
                same.reproduced |= finding.reproduced;
                for note in finding.notes {
                    if !same.notes.contains(&note) {
                        same.notes.push(note);
                    }
                }
                same.observations.push(observation);
            }
            None => {
                let mut first = finding;
                first.observations = vec![observation];
                merged.push(first);
            }
        }
    }
    for finding in &mut merged {
        finding.observations.sort_by(|a, b| a.at_ms.unwrap_or(f64::MAX).total_cmp(&b.at_ms.unwrap_or(f64::MAX)));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::finding::tests::finding;

    #[test]
    fn the_same_fault_seen_again_is_one_finding_with_every_sighting() {
        let mut later = finding(FindingKind::RefusedDuringDeregistration, "rolling-restart", "none", (0, 5), (0, 5));
        later.at_ms = Some(900.0);
        later.scenario = "cache".into();
        let mut earlier = finding(FindingKind::RefusedDuringDeregistration, "rolling-restart", "none", (0, 6), (0, 6));
        earlier.at_ms = Some(100.0);
        earlier.reproduced = false;
        let other_replica = finding(FindingKind::RefusedDuringDeregistration, "rolling-restart", "none", (1, 1), (1, 1));
        let other_artifact = finding(FindingKind::ArtifactLostAfterRestart, "restart", "session", (0, 1), (0, 2));
        let other_check = finding(FindingKind::RefusedDuringDeregistration, "sigterm", "none", (0, 7), (0, 7));

        let merged = merge(vec![later, other_replica, earlier, other_artifact, other_check]);
        assert_eq!(merged.len(), 4, "{merged:#?}");
        let refused = &merged[0];
        assert_eq!((refused.occurrences, refused.reproduced, refused.scenario.as_str()), (2, true, "cache"));
        let times: Vec<_> = refused.observations.iter().map(|o| o.at_ms).collect();
        assert_eq!(times, [Some(100.0), Some(900.0)]);
        assert!(merged[1..].iter().all(|f| f.observations.len() == 1));
    }

    #[test]
    fn a_cookie_and_a_cache_entry_lost_to_one_restart_are_two_faults() {
        let cookie = finding(FindingKind::ArtifactLostAfterRestart, "restart", "auth-cookie", (0, 1), (0, 2));
        let cache = finding(FindingKind::ArtifactLostAfterRestart, "restart", "cache-entry", (0, 1), (0, 2));
        assert_eq!(merge(vec![cookie, cache]).len(), 2);
    }
}

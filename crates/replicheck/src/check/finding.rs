//! Findings: cross-instance inconsistencies, each with its evidence. The kind ids are
//! stable: the same in every report format and across versions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::history::{Captured, Observed};
use crate::plan::interleaving::Schedule;
use crate::shape::Shape;

use super::merge::Observation;

pub use crate::vocab::finding::FindingKind;

/// Which finding a rule accepted, as recorded on the finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    /// The rule's place in the policy file, from 1.
    pub rule: usize,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// One cross-instance inconsistency and the evidence for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Finding {
    /// `F1`, `F2`, ... in report order.
    pub id: String,
    pub kind: FindingKind,
    /// The scenario, inspection or experiment that found it.
    pub check: String,
    pub scenario: String,
    pub step: String,
    /// The replica that handed out the artifact.
    pub producer: Incarnation,
    /// The replica that did not honour it.
    pub consumer: Incarnation,
    pub artifact: ArtifactEvidence,
    pub expected: String,
    pub observed: Observed,
    pub control: Control,
    /// The failure happened again when the same steps ran on the same routes.
    pub reproduced: bool,
    /// How many virtual users (or probes) of the run failed the same way.
    pub occurrences: u32,
    /// The virtual user whose run is the evidence, when a user's run is.
    pub vu: Option<u32>,
    /// When that user's failing request started (milliseconds since the run started).
    #[serde(default)]
    pub at_ms: Option<f64>,
    /// The chaos action the failure followed, for findings of chaos experiments.
    pub after: Option<ChaosContext>,
    /// How the question was asked and judged: the deployment model a shutdown finding
    /// depends on, an adaptation the users needed, remedies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Every time the run saw this fault, in time order; the first one found is the
    /// evidence above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
    /// Whether the team's policy accepts this finding, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Acceptance>,
    /// For findings of exploration: the smallest schedule found that still shows it, which
    /// `reproduce` replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimal_schedule: Option<Schedule>,
    pub seed: u64,
    pub reproduce: String,
}

/// The disruption a finding followed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChaosContext {
    pub experiment: String,
    /// The action, in words: `SIGTERM to r1`.
    pub action: String,
    /// When it started, in milliseconds since the run started.
    pub at_ms: f64,
}

/// What was handed over, without its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactEvidence {
    /// The artifact's kind from the scenario (`auth-cookie`), or `none`.
    pub kind: String,
    /// Cookies the producing step set.
    pub cookies: Vec<String>,
    /// Values the producing step captured, as fingerprints.
    pub captured: Vec<Captured>,
    /// The shape of each cookie the artifact may rest on: those the producing step set,
    /// or when it set none, those the user was given before it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shapes: BTreeMap<String, Shape>,
    /// Those cookies the consumer set anew in its refusal, as to a visitor it never saw.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reissued: Vec<String>,
}

impl ArtifactEvidence {
    /// Evidence that names what was handed over (`none`, an attribute) and holds nothing.
    pub fn named(kind: impl Into<String>) -> Self {
        ArtifactEvidence {
            kind: kind.into(),
            cookies: Vec::new(),
            captured: Vec::new(),
            shapes: BTreeMap::new(),
            reissued: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ControlResult {
    /// The same steps, all on the producer, passed.
    Passed,
    Failed,
}

/// The evidence that the failure is not the app's own: the same thing, without what
/// differs (another replica, a disruption), worked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Control {
    pub result: ControlResult,
    /// What the control was, in words.
    pub detail: String,
    /// The replica every step of the control run was pinned to, when it was a pinned run.
    pub pinned_to: Option<ReplicaId>,
    /// The control's virtual user, when it was a user's run.
    pub vu: Option<u32>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A finding with only what grouping looks at filled in.
    pub(crate) fn finding(kind: FindingKind, check: &str, artifact: &str, producer: (u16, u32), consumer: (u16, u32)) -> Finding {
        let incarnation = |(id, generation)| Incarnation { id: ReplicaId(id), generation };
        Finding {
            id: String::new(),
            kind,
            check: check.into(),
            scenario: check.into(),
            step: "a step".into(),
            producer: incarnation(producer),
            consumer: incarnation(consumer),
            artifact: ArtifactEvidence::named(artifact),
            expected: String::new(),
            observed: Observed::default(),
            control: Control { result: ControlResult::Passed, detail: String::new(), pinned_to: None, vu: None },
            reproduced: true,
            occurrences: 1,
            vu: Some(1),
            at_ms: Some(0.0),
            after: None,
            notes: Vec::new(),
            observations: Vec::new(),
            accepted: None,
            minimal_schedule: None,
            seed: 1,
            reproduce: String::new(),
        }
    }
}

//! Each chaos experiment's part of the plan: its victim, the users that hand an artifact
//! over the disruption, and the load that runs through it, all drawn from the seed.

use serde::{Deserialize, Serialize};

use super::seed;
use super::{Load, VuPlan};
use crate::scenario::Scenario;
use crate::vocab::experiment::{Experiment, ExperimentKind};
use crate::vocab::finding::Artifact;
use crate::vocab::replica::ReplicaId;

/// One experiment of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentPlan {
    pub kind: ExperimentKind,
    /// The dependency a store experiment disrupts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// The replica the disruption hits, for experiments that hit one.
    pub victim: ReplicaId,
    /// Users that produce an artifact before the disruption and consume it after.
    pub handoffs: Vec<Handoff>,
    /// Users that loop whole scenarios while the disruption goes on.
    pub load: Option<Load>,
}

/// A user that runs up to step `gate` (its first consuming step), waits for the
/// disruption, then goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub user: VuPlan,
    pub gate: usize,
}

impl ExperimentPlan {
    pub fn experiment(&self) -> Experiment {
        Experiment {
            kind: self.kind,
            dependency: self.dependency.clone(),
        }
    }
}

/// Users per scenario that hand an artifact over each disruption.
const HANDOFFS_PER_SCENARIO: usize = 2;

/// The first step that consumes an artifact: where a handoff waits for the disruption.
pub fn first_handoff(scenario: &Scenario) -> Option<usize> {
    scenario.steps.iter().position(|s| s.consumes.is_some())
}

/// Plans one experiment from the seed. Users are numbered from `first_vu`; a rolling
/// restart adds `load_vus` looping users.
pub fn plan(experiment: &Experiment, seed: u64, replicas: u16, scenarios: &[Scenario], first_vu: u32, load_vus: u32) -> ExperimentPlan {
    use rand::seq::IndexedRandom;
    let kind = experiment.kind;
    let all: Vec<ReplicaId> = (0..replicas).map(ReplicaId).collect();
    let mut rng = seed::stream(seed, &format!("chaos/{experiment}"));
    let victim = *all.choose(&mut rng).unwrap_or(&ReplicaId(0));
    let mut handoffs = Vec::new();
    if kind.hands_over() {
        for scenario in scenarios {
            let Some(gate) = first_handoff(scenario) else { continue };
            // A transport's session lives with its connection's replica: no disruption is
            // expected to keep it, and across replicas it is the scenario's own question.
            if scenario.steps[gate].consumes.as_ref().is_some_and(Artifact::pinned) {
                continue;
            }
            for _ in 0..HANDOFFS_PER_SCENARIO {
                // An artifact crosses the disruption and nothing else: produced and consumed
                // on one replica, so a failure is not one the scenarios already test across
                // replicas. Only a scale-out hands over to another, the one it adds (which
                // takes the name after the last).
                let (before, after) = match kind {
                    ExperimentKind::Restart | ExperimentKind::Kill | ExperimentKind::Pause => (victim, victim),
                    ExperimentKind::ScaleOut => (*all.choose(&mut rng).unwrap_or(&victim), ReplicaId(replicas)),
                    // Across replicas: what replicas started together must agree on.
                    ExperimentKind::ColdStart => {
                        let home = *all.choose(&mut rng).unwrap_or(&victim);
                        let others: Vec<ReplicaId> = all.iter().copied().filter(|r| *r != home).collect();
                        (home, *others.choose(&mut rng).unwrap_or(&home))
                    }
                    _ => {
                        let home = *all.choose(&mut rng).unwrap_or(&victim);
                        (home, home)
                    }
                };
                let routes = (0..scenario.steps.len()).map(|i| if i < gate { before } else { after }).collect();
                handoffs.push(Handoff {
                    user: VuPlan {
                        vu: first_vu + handoffs.len() as u32,
                        scenario: scenario.name.clone(),
                        nonce: seed::nonce(&mut rng),
                        routes,
                    },
                    gate,
                });
            }
        }
    }
    let load = (kind == ExperimentKind::RollingRestart && load_vus > 0).then(|| Load {
        vus: load_vus,
        first_vu: first_vu + handoffs.len() as u32,
        scenarios: scenarios.iter().map(|s| s.name.clone()).collect(),
        replicas: all.clone(),
        seed: rand::RngExt::random(&mut rng),
    });
    ExperimentPlan {
        kind,
        dependency: experiment.dependency.clone(),
        victim,
        handoffs,
        load,
    }
}

/// How many user numbers an experiment plan takes.
pub fn users(plan: &ExperimentPlan) -> u32 {
    plan.handoffs.len() as u32 + plan.load.as_ref().map_or(0, |l| l.vus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::fixtures::demo_scenarios;

    #[test]
    fn experiments_plan_from_the_seed() {
        let scenarios = demo_scenarios();
        for kind in ExperimentKind::ALL {
            let a = plan(&Experiment::of(kind), 7, 3, &scenarios, 100, 8);
            assert_eq!(a, plan(&Experiment::of(kind), 7, 3, &scenarios, 100, 8));
            assert!(a.victim.0 < 3);
        }
        let restart = plan(&Experiment::of(ExperimentKind::Restart), 7, 3, &scenarios, 100, 8);
        // Every scenario but the transport's, whose session is its connection's replica's.
        assert_eq!(restart.handoffs.len(), (scenarios.len() - 1) * HANDOFFS_PER_SCENARIO);
        assert!(restart.handoffs.iter().all(|h| h.user.scenario != "affinity"));
        assert!(restart.handoffs.iter().all(|h| h.user.routes.iter().all(|r| *r == restart.victim)));
        assert_eq!(restart.handoffs[0].user.vu, 100);
        let scale = plan(&Experiment::of(ExperimentKind::ScaleOut), 7, 3, &scenarios, 0, 0);
        assert!(scale.handoffs.iter().all(|h| h.user.routes[h.gate] == ReplicaId(3)));
        let rolling = plan(&Experiment::of(ExperimentKind::RollingRestart), 7, 3, &scenarios, 0, 8);
        assert_eq!(rolling.load.as_ref().map(|l| l.vus), Some(8));
        assert!(plan(&Experiment::of(ExperimentKind::Sigterm), 7, 3, &scenarios, 0, 8).handoffs.is_empty());
        let cold = plan(&Experiment::of(ExperimentKind::ColdStart), 7, 3, &scenarios, 0, 0);
        assert!(!cold.handoffs.is_empty());
        assert!(cold.handoffs.iter().all(|h| h.user.routes[0] != h.user.routes[h.gate]), "every artifact crosses replicas");
    }
}

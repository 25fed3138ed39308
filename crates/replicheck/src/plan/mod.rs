//! Plans: what a run will do, decided before it starts. For every virtual user, the
//! scenario it runs, its random values and the replica each of its requests goes to, all
//! drawn from the seed. Plans are plain data: `replay` reruns a recorded one, control
//! runs are plans derived from it, and exploration generates and shrinks them.

pub mod evidence;
pub mod experiment;
pub mod interleaving;
pub mod schedule;
pub mod seed;

use serde::{Deserialize, Serialize};

use crate::vocab::routing::RoutingPolicy;
use crate::vocab::replica::ReplicaId;

pub use schedule::schedule;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub seed: u64,
    pub replicas: u16,
    pub routing: RoutingPolicy,
    pub vus: Vec<VuPlan>,
    /// Chaos experiments, run one after another once the users above are done.
    #[serde(default)]
    pub experiments: Vec<experiment::ExperimentPlan>,
}

/// One virtual user: a fresh client with its own cookie jar, running one scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VuPlan {
    pub vu: u32,
    pub scenario: String,
    /// The user's `{nonce}`: distinct keys and values per user.
    pub nonce: String,
    /// The replica each step's request is routed to, one per step of the scenario.
    pub routes: Vec<ReplicaId>,
}

/// Users that loop while a disruption goes on: each pass is a fresh user running one
/// scenario with every step on one replica (a sticky session), drawn from the seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    pub vus: u32,
    /// The first looping user's number; the others follow.
    pub first_vu: u32,
    pub scenarios: Vec<String>,
    pub replicas: Vec<ReplicaId>,
    pub seed: u64,
}

impl Load {
    /// Pass `iteration` of looping user `index`; `steps` gives a scenario's step count.
    pub fn pass(&self, index: u32, iteration: u32, steps: impl Fn(&str) -> usize) -> Option<VuPlan> {
        use rand::seq::IndexedRandom;
        let mut rng = seed::stream(self.seed, &format!("load/{index}/{iteration}"));
        let scenario = self.scenarios.get((index + iteration) as usize % self.scenarios.len().max(1))?;
        let replica = *self.replicas.choose(&mut rng)?;
        Some(VuPlan {
            vu: self.first_vu + index,
            scenario: scenario.clone(),
            nonce: seed::nonce(&mut rng),
            routes: vec![replica; steps(scenario)],
        })
    }
}

/// Makes every planned user's values (`{nonce}`) this run's own, keeping the routes.
/// Instances that outlive a run (staging) still hold the cache keys and notes of the last
/// run with the same seed, which would let a per-process cache pass for a shared one.
pub fn salt(plan: &mut Plan, salt: &str) {
    let users = plan.vus.iter_mut().chain(plan.experiments.iter_mut().flat_map(|e| e.handoffs.iter_mut().map(|h| &mut h.user)));
    for user in users {
        user.nonce.push_str(salt);
    }
}

/// The first user number the plan leaves free.
pub fn next_vu(plan: &Plan) -> u32 {
    let users = plan.vus.iter().map(|v| v.vu + 1).max().unwrap_or(0);
    let experiments = plan.experiments.iter().map(|e| e.handoffs.iter().map(|h| h.user.vu + 1).chain(e.load.iter().map(|l| l.first_vu + l.vus)).max().unwrap_or(0));
    experiments.fold(users, u32::max)
}

impl VuPlan {
    /// The same user's steps, every one routed to `replica`: the control of a finding.
    pub fn pinned(&self, replica: ReplicaId) -> VuPlan {
        VuPlan {
            routes: vec![replica; self.routes.len()],
            ..self.clone()
        }
    }
}

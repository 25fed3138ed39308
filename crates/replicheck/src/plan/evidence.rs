//! Evidence plans: the extra virtual users that test a failure the checker suspects: a
//! control pinned to the replica that produced the artifact, a second pinned to the one
//! that refused it (a replica that cannot serve the flow even alone shows no cross-replica
//! fault), and a reproduction on the original routes. They are plans like the others (derived from the plan and what the
//! checker asked for), so they are made here and stored, and a stored run can be judged
//! again without deriving them anew.

use serde::{Deserialize, Serialize};

use super::VuPlan;
use crate::vocab::replica::ReplicaId;

/// What the checker wants evidence about: a user's failure at `step`, on `consumer`, of
/// an artifact `producer` handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub vu: u32,
    pub step: usize,
    pub producer: ReplicaId,
    pub consumer: ReplicaId,
}

/// Two controls and a reproduction per wanted failure, in the same order; their ids follow
/// the plan's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidencePlans {
    /// Every step on the producer.
    pub controls: Vec<VuPlan>,
    pub reproductions: Vec<VuPlan>,
    /// Every step on the consumer. (Records from before it was asked have none.)
    #[serde(default)]
    pub consumer_controls: Vec<VuPlan>,
}

/// User numbers each wanted failure takes.
pub const USERS_PER_WANTED: u32 = 3;

pub fn evidence_plans(users: &[VuPlan], first_id: u32, wanted: &[Wanted]) -> EvidencePlans {
    let mut plans = EvidencePlans::default();
    for (index, wanted) in wanted.iter().enumerate() {
        let Some(original) = users.iter().find(|v| v.vu == wanted.vu) else { continue };
        let id = first_id + USERS_PER_WANTED * index as u32;
        plans.controls.push(VuPlan {
            vu: id,
            ..original.pinned(wanted.producer)
        });
        plans.reproductions.push(VuPlan {
            vu: id + 1,
            ..original.clone()
        });
        // Values of its own: what it writes on the consumer would make the
        // reproduction's read there pass.
        plans.consumer_controls.push(VuPlan {
            vu: id + 2,
            nonce: format!("{}-alone", original.nonce),
            ..original.pinned(wanted.consumer)
        });
    }
    plans
}

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
    /// Users that failed with every step on one replica, asked again there: the user, and
    /// the plan that asks again. (Records from before it was asked have none.)
    #[serde(default)]
    pub again_alone: Vec<(u32, VuPlan)>,
}

/// User numbers each wanted failure takes.
pub const USERS_PER_WANTED: u32 = 3;

/// The evidence for `wanted` failures, then for users that failed on one replica alone
/// (`alone`: the user and the replica), each asked again there with values of its own.
/// User numbers start at `first_id`: `USERS_PER_WANTED` per wanted failure, then one each.
pub fn evidence_plans(users: &[VuPlan], first_id: u32, wanted: &[Wanted], alone: &[(u32, ReplicaId)]) -> EvidencePlans {
    let mut plans = EvidencePlans::default();
    let after_wanted = first_id + USERS_PER_WANTED * wanted.len() as u32;
    for (index, &(vu, replica)) in alone.iter().enumerate() {
        let Some(original) = users.iter().find(|v| v.vu == vu) else { continue };
        let again = VuPlan {
            vu: after_wanted + index as u32,
            nonce: format!("{}-again", original.nonce),
            ..original.pinned(replica)
        };
        plans.again_alone.push((vu, again));
    }
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

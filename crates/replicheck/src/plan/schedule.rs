//! Scheduling: seed + scenarios + routing policy -> plan.
//!
//! Under the default `random` policy the first virtual users of each scenario are probes:
//! each keeps every step on one replica except one artifact handoff, which crosses to
//! another replica. So every handoff of every scenario is tried across replicas, whatever
//! the seed, and a failure points at exactly one artifact. The other users route at random.

use rand_chacha::ChaCha8Rng;

use super::{Plan, VuPlan, seed};
use crate::vocab::routing::RoutingPolicy;
use crate::vocab::replica::ReplicaId;
use crate::scenario::{RouteHint, Scenario};

pub fn schedule(seed: u64, replicas: u16, routing: RoutingPolicy, scenarios: &[Scenario], vus_per_scenario: u32) -> Plan {
    let all: Vec<ReplicaId> = (0..replicas).map(ReplicaId).collect();
    let mut vus = Vec::new();
    let mut next_vu = 0u32;
    for scenario in scenarios {
        let mut rng = seed::stream(seed, &scenario.name);
        let handoffs: Vec<usize> = (0..scenario.steps.len()).filter(|&i| scenario.steps[i].consumes.is_some()).collect();
        let mut turn = 0usize;
        for index in 0..vus_per_scenario as usize {
            let nonce = seed::nonce(&mut rng);
            let probe = (routing == RoutingPolicy::Random && all.len() > 1).then(|| handoffs.get(index)).flatten();
            let routes = match probe {
                Some(&handoff) => cross_at(scenario, handoff, &all, &mut rng),
                None => by_policy(scenario, routing, &all, &mut turn, &mut rng),
            };
            vus.push(VuPlan {
                vu: next_vu,
                scenario: scenario.name.clone(),
                nonce,
                routes,
            });
            next_vu += 1;
        }
    }
    Plan {
        seed,
        replicas,
        routing,
        vus,
        experiments: Vec::new(),
    }
}

/// Every step on one replica except `handoff`, which goes to another; later steps random.
fn cross_at(scenario: &Scenario, handoff: usize, all: &[ReplicaId], rng: &mut ChaCha8Rng) -> Vec<ReplicaId> {
    let home = RoutingPolicy::Random.choose(all, None, 0, rng).unwrap_or(ReplicaId(0));
    let away = RoutingPolicy::Switch.choose(all, Some(home), 0, rng).unwrap_or(home);
    let mut routes = Vec::with_capacity(scenario.steps.len());
    for (index, step) in scenario.steps.iter().enumerate() {
        let route = match index.cmp(&handoff) {
            std::cmp::Ordering::Less => home,
            std::cmp::Ordering::Equal => away,
            std::cmp::Ordering::Greater => match step.route {
                RouteHint::Same => routes[index - 1],
                RouteHint::Policy => RoutingPolicy::Random.choose(all, routes.last().copied(), 0, rng).unwrap_or(home),
            },
        };
        routes.push(route);
    }
    routes
}

fn by_policy(scenario: &Scenario, routing: RoutingPolicy, all: &[ReplicaId], turn: &mut usize, rng: &mut ChaCha8Rng) -> Vec<ReplicaId> {
    let mut routes: Vec<ReplicaId> = Vec::with_capacity(scenario.steps.len());
    for step in &scenario.steps {
        let previous = routes.last().copied();
        let route = match (step.route, previous) {
            (RouteHint::Same, Some(previous)) => previous,
            _ => {
                *turn += 1;
                // A pin to a replica outside the run falls back to r0; `run` rejects it first.
                routing.choose(all, previous, *turn - 1, rng).unwrap_or(ReplicaId(0))
            }
        };
        routes.push(route);
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::fixtures::demo_scenarios as scenarios;

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        let scenarios = scenarios();
        let a = schedule(42, 3, RoutingPolicy::Random, &scenarios, 8);
        assert_eq!(a, schedule(42, 3, RoutingPolicy::Random, &scenarios, 8));
        assert_ne!(a, schedule(43, 3, RoutingPolicy::Random, &scenarios, 8));
    }

    #[test]
    fn a_scenario_plans_the_same_alone_or_with_others() {
        let scenarios = scenarios();
        let full = schedule(9, 2, RoutingPolicy::Random, &scenarios, 4);
        let cache_only = schedule(9, 2, RoutingPolicy::Random, &scenarios[3..], 4);
        let routes = |plan: &Plan| -> Vec<_> {
            plan.vus.iter().filter(|v| v.scenario == "cache").map(|v| (v.nonce.clone(), v.routes.clone())).collect()
        };
        assert_eq!(routes(&full), routes(&cache_only));
    }

    #[test]
    fn every_handoff_crosses_replicas_for_every_seed() {
        let scenarios = scenarios();
        for seed in 0..200 {
            let plan = schedule(seed, 2, RoutingPolicy::Random, &scenarios, 2);
            for scenario in &scenarios {
                for (handoff, step) in scenario.steps.iter().enumerate() {
                    let Some(artifact) = &step.consumes else { continue };
                    let producer = scenario.producer_of(artifact, handoff).unwrap();
                    let crossed = plan.vus.iter().filter(|v| v.scenario == scenario.name).any(|v| {
                        // Only the handoff crosses: every earlier step stayed on one replica.
                        v.routes[handoff] != v.routes[producer] && v.routes[..handoff].iter().all(|r| *r == v.routes[0])
                    });
                    assert!(crossed, "seed {seed}: {} step {handoff} never crossed", scenario.name);
                }
            }
        }
    }

    #[test]
    fn same_hint_keeps_the_previous_replica_under_any_policy() {
        let scenarios = scenarios();
        for routing in [RoutingPolicy::Random, RoutingPolicy::Switch, RoutingPolicy::RoundRobin] {
            let plan = schedule(5, 3, routing, &scenarios, 6);
            for vu in plan.vus.iter().filter(|v| v.scenario == "login") {
                // Step 2 (sign in) is `route = "same"`.
                assert_eq!(vu.routes[1], vu.routes[0], "{routing}: {vu:?}");
            }
        }
    }

    #[test]
    fn pin_routes_everything_to_one_replica() {
        let plan = schedule(1, 3, RoutingPolicy::Pin(ReplicaId(2)), &scenarios(), 3);
        assert!(plan.vus.iter().all(|v| v.routes.iter().all(|r| *r == ReplicaId(2))));
    }
}

//! The space exploration searches: a proptest strategy whose values are interleaved
//! schedules. proptest draws the raw choices (which users run which scenarios and how far,
//! the replica of each step, the order users take turns in, disruptions and where they
//! fall) and shrinks them; `Space::build` turns raw choices into a schedule, so every
//! shrunk value is a valid schedule too.
//!
//! Shrinking goes towards fewer disruptions (they come first, and are the slowest to run),
//! fewer and shorter users, lower replicas and users taking turns in order.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::vocab::replica::ReplicaId;
use crate::plan::interleaving::{Disruption, Event, Schedule};
use crate::scenario::{RouteHint, Scenario};

/// Users in one schedule, at most.
const MAX_USERS: usize = 3;
/// Steps of one user, at most (scenarios are cut to it).
const MAX_USER_STEPS: usize = 8;
/// Disruptions in one schedule, at most.
const MAX_DISRUPTIONS: usize = 2;

/// What schedules may contain.
#[derive(Debug, Clone)]
pub struct Space {
    /// Each scenario's name and its steps' routing hints.
    pub scenarios: Vec<(String, Vec<RouteHint>)>,
    pub replicas: u16,
    /// Steps in one schedule, at most.
    pub max_steps: usize,
    /// Whether the target has a store to restart.
    pub store: bool,
}

/// A user as proptest draws it.
#[derive(Debug, Clone)]
struct RawUser {
    scenario: usize,
    length: usize,
    replicas: Vec<u16>,
}

/// A disruption as proptest draws it: which kind, which replica, after how many steps.
#[derive(Debug, Clone)]
struct RawDisruption {
    kind: u8,
    replica: u16,
    after: usize,
}

impl Space {
    pub fn new(scenarios: &[Scenario], replicas: u16, max_steps: usize, store: bool) -> Self {
        Self {
            scenarios: scenarios.iter().map(|s| (s.name.clone(), s.steps.iter().map(|step| step.route).collect())).collect(),
            replicas,
            max_steps: max_steps.max(1),
            store,
        }
    }

    pub fn strategy(&self) -> impl Strategy<Value = Schedule> + use<> {
        let (scenarios, replicas, max_steps) = (self.scenarios.len().max(1), self.replicas.max(1), self.max_steps);
        let kinds: u8 = if self.store { 3 } else { 2 };
        let disruption = (0..kinds, 0..replicas, 0..=max_steps).prop_map(|(kind, replica, after)| RawDisruption { kind, replica, after });
        let user = (0..scenarios, 1..=MAX_USER_STEPS, vec(0..replicas, MAX_USER_STEPS)).prop_map(|(scenario, length, replicas)| RawUser {
            scenario,
            length,
            replicas,
        });
        let turns = vec(0..MAX_USERS, max_steps);
        let space = self.clone();
        (vec(disruption, 0..=MAX_DISRUPTIONS), vec(user, 1..=MAX_USERS), turns).prop_map(move |(disruptions, users, turns)| space.build(&disruptions, &users, &turns))
    }

    /// The schedule raw choices stand for: users cut to their scenario and to the step
    /// budget, routes that honour `route = "same"`, turns taken among the users with steps
    /// left, disruptions placed before the step they name (none after the last).
    fn build(&self, disruptions: &[RawDisruption], users: &[RawUser], turns: &[usize]) -> Schedule {
        let mut budget = self.max_steps;
        let mut queues: Vec<std::collections::VecDeque<Event>> = Vec::new();
        for (number, raw) in users.iter().enumerate() {
            let Some((name, hints)) = self.scenarios.get(raw.scenario) else { continue };
            let length = raw.length.min(hints.len()).min(budget);
            budget -= length;
            let mut previous: Option<ReplicaId> = None;
            let mut queue = std::collections::VecDeque::new();
            for (step, hint) in hints.iter().enumerate().take(length) {
                let replica = match (hint, previous) {
                    (RouteHint::Same, Some(previous)) => previous,
                    _ => ReplicaId(raw.replicas.get(step).copied().unwrap_or(0) % self.replicas.max(1)),
                };
                previous = Some(replica);
                queue.push_back(Event::Step {
                    user: number as u32,
                    scenario: name.clone(),
                    step,
                    replica,
                });
            }
            queues.push(queue);
        }
        let total: usize = queues.iter().map(|q| q.len()).sum();
        let mut events = Vec::with_capacity(total + disruptions.len());
        for sent in 0..total {
            for raw in disruptions.iter().filter(|d| d.after == sent) {
                events.push(Event::Disrupt(self.disruption(raw)));
            }
            let waiting: Vec<usize> = (0..queues.len()).filter(|&u| !queues[u].is_empty()).collect();
            let turn = turns.get(sent).copied().unwrap_or(0) % waiting.len().max(1);
            if let Some(event) = waiting.get(turn).and_then(|&u| queues[u].pop_front()) {
                events.push(event);
            }
        }
        Schedule { events }
    }

    fn disruption(&self, raw: &RawDisruption) -> Disruption {
        let replica = ReplicaId(raw.replica % self.replicas.max(1));
        match raw.kind {
            0 => Disruption::Restart(replica),
            1 => Disruption::Kill(replica),
            _ => Disruption::StoreRestart,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};

    use super::*;
    use crate::scenario::fixtures::demo_scenarios;

    fn runner(seed: u8) -> TestRunner {
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[seed; 32]))
    }

    #[test]
    fn schedules_are_valid_whatever_is_drawn_and_however_they_shrink() {
        let space = Space::new(&demo_scenarios(), 3, 10, false);
        let strategy = space.strategy();
        let mut runner = runner(1);
        for _ in 0..64 {
            let mut tree = strategy.new_tree(&mut runner).unwrap();
            for _ in 0..32 {
                let schedule = tree.current();
                assert!(schedule.steps() <= 10, "{schedule}");
                let text = schedule.to_string();
                if !text.is_empty() {
                    assert_eq!(text.parse::<Schedule>().unwrap(), schedule, "{text}");
                }
                assert!(schedule.disruptions().all(|d| d != Disruption::StoreRestart), "no store: {schedule}");
                for (_, user) in schedule.users(0, "n") {
                    // The login scenario signs in on the replica that served the form.
                    if user.scenario == "login" && user.routes.len() > 1 {
                        assert_eq!(user.routes[1], user.routes[0], "{schedule}");
                    }
                }
                if !tree.simplify() {
                    break;
                }
            }
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_schedules() {
        let space = Space::new(&demo_scenarios(), 2, 12, true);
        let draw = |seed| {
            let mut runner = runner(seed);
            (0..20).map(|_| space.strategy().new_tree(&mut runner).unwrap().current().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}

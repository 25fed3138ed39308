//! Properties that hold for every input, not only for the examples the other tests pick:
//! input files never make replicheck panic and every error points into the file; a user
//! whose every request one replica served never yields a cross-replica finding; a plan is
//! a function of its seed.

use proptest::prelude::*;
use proptest::sample::Index;

use replicheck::balancer::policy::RoutingPolicy;
use replicheck::check;
use replicheck::cluster::replica::{Incarnation, ReplicaId};
use replicheck::file::{FileError, SourceFile};
use replicheck::history::{History, Observed, Outcome, Phase, RequestRecord, StepRecord, VuRecord};
use replicheck::plan;
use replicheck::scenario::{self, Scenario, ScenarioFile};
use replicheck::target::Target;

const TARGET: &str = include_str!("../examples/demo/broken.toml");
const SCENARIOS: [&str; 5] = [
    include_str!("../crates/replicheck/scenarios/login.toml"),
    include_str!("../crates/replicheck/scenarios/antiforgery.toml"),
    include_str!("../crates/replicheck/scenarios/session.toml"),
    include_str!("../crates/replicheck/scenarios/cache.toml"),
    include_str!("../crates/replicheck/scenarios/token.toml"),
];

/// One edit of a file: what to do, where (a fraction of its length), and with what.
#[derive(Debug, Clone)]
enum Edit {
    Delete(Index),
    Insert(Index, char),
    Replace(Index, char),
    /// Cuts the file short, as an editor that crashed would.
    Truncate(Index),
}

/// Characters that matter to TOML, and some that do not.
fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let ch = prop::sample::select(vec!['"', '\'', '=', '[', ']', '{', '}', ',', '.', '#', '\n', ' ', 'a', '1', '-', ':', 'é', '\\', '\0']);
    let edit = prop_oneof![
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<Index>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<Index>().prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..6)
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
        match edit {
            Edit::Delete(i) if !chars.is_empty() => {
                let at = at(i, chars.len());
                chars.remove(at);
            }
            Edit::Insert(i, c) => {
                let at = at(i, chars.len() + 1);
                chars.insert(at, *c);
            }
            Edit::Replace(i, c) if !chars.is_empty() => {
                let at = at(i, chars.len());
                chars[at] = *c;
            }
            Edit::Truncate(i) => chars.truncate(at(i, chars.len() + 1)),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// An error about a file's content names a place inside that file and says something
/// short; a file with nothing in it is said to be empty.
fn located_in(err: &FileError, text: &str) -> Result<(), TestCaseError> {
    let name = "mutated.toml";
    match err {
        FileError::Invalid(located) => {
            prop_assert!(located.span.start <= located.span.end && located.span.end <= text.len(), "span {:?} of {} bytes", located.span, text.len());
            prop_assert!(text.is_char_boundary(located.span.start), "span starts inside a character");
            prop_assert!(!located.message.trim().is_empty());
            prop_assert!(located.message.chars().count() <= 450, "a message quoting a huge value is cut");
            let rendered = err.to_string();
            prop_assert!(rendered.starts_with(&format!("{name}:")), "{}", &rendered[..rendered.len().min(500)]);
            Ok(())
        }
        FileError::Empty { .. } if text.lines().all(|l| l.trim_start().is_empty() || l.trim_start().starts_with('#')) => Ok(()),
        _ => Err(TestCaseError::fail(format!("an in-memory file fails only for its content: {err}"))),
    }
}

fn demo_target() -> Target {
    Target::from_source(&SourceFile::from_text("broken.toml", TARGET)).expect("the demo target loads")
}

fn bound_scenarios() -> Vec<Scenario> {
    let target = demo_target();
    scenario::builtin()
        .iter()
        .filter_map(|file| file.bind(&target).expect("built-in scenarios bind").ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_mutated_target_file_loads_or_says_where_it_is_wrong(edits in edits()) {
        let text = apply(TARGET, &edits);
        if let Err(err) = Target::from_source(&SourceFile::from_text("mutated.toml", text.as_str())) {
            located_in(&err, &text)?;
        }
    }

    #[test]
    fn a_mutated_scenario_file_loads_and_binds_or_says_where_it_is_wrong(which in 0..SCENARIOS.len(), edits in edits()) {
        let text = apply(SCENARIOS[which], &edits);
        match ScenarioFile::from_source(SourceFile::from_text("mutated.toml", text.as_str())) {
            Ok(file) => {
                if let Err(err) = file.bind(&demo_target()) {
                    located_in(&err, &text)?;
                }
            }
            Err(err) => located_in(&err, &text)?,
        }
    }

    /// The planned user count, routes and nonces depend on the seed alone: asking again
    /// gives the same plan, and another seed gives other nonces.
    #[test]
    fn a_plan_is_a_function_of_its_seed(seed in any::<u64>(), replicas in 1u16..=8, vus in 1u32..=12, routing in 0usize..4) {
        let routing = [RoutingPolicy::Random, RoutingPolicy::RoundRobin, RoutingPolicy::Sticky, RoutingPolicy::Switch][routing];
        let scenarios = bound_scenarios();
        let plan = plan::schedule(seed, replicas, routing, &scenarios, vus);
        let again = plan::schedule(seed, replicas, routing, &scenarios, vus);
        prop_assert_eq!(serde_json::to_string(&plan).unwrap(), serde_json::to_string(&again).unwrap());
        prop_assert_eq!(plan.vus.len(), scenarios.len() * vus as usize);
        for user in &plan.vus {
            prop_assert!(user.routes.iter().all(|r| r.0 < replicas), "routes stay among the replicas");
        }
        let other = plan::schedule(seed.wrapping_add(1), replicas, routing, &scenarios, vus);
        prop_assert!(plan.vus.iter().zip(&other.vus).any(|(a, b)| a.nonce != b.nonce), "another seed, other users");
    }

    /// Whatever failed and wherever, a user whose every request one replica served shows
    /// no cross-replica inconsistency: at most the scenario fails on a single replica.
    #[test]
    fn a_user_served_by_one_replica_never_yields_a_cross_replica_candidate(
        users in prop::collection::vec((any::<Index>(), 0u16..4, any::<Index>(), 0u8..3), 1..24),
    ) {
        let scenarios = bound_scenarios();
        let mut history = History::default();
        for (vu, (which, replica, failing, how)) in users.into_iter().enumerate() {
            let scenario = which.get(&scenarios);
            let served = Incarnation::first(ReplicaId(replica));
            let fails_at = failing.index(scenario.steps.len() + 1);
            history.vus.push(user(vu as u32, scenario, served, fails_at, how));
        }
        let triage = check::triage(&scenarios, &history);
        prop_assert!(triage.candidates.is_empty(), "{:?}", triage.candidates.iter().map(|c| (c.producer, c.consumer)).collect::<Vec<_>>());
        for tally in triage.scenarios.values() {
            prop_assert_eq!(tally.handoffs_crossed, 0);
        }
    }
}

/// A user of `scenario` whose every step `served` answered; the step at `fails_at` (if it
/// is one) failed (`how` 0 or 1) or got no answer (2), and the steps after it were not taken.
fn user(vu: u32, scenario: &Scenario, served: Incarnation, fails_at: usize, how: u8) -> VuRecord {
    let mut steps = Vec::new();
    for (index, step) in scenario.steps.iter().enumerate().take(fails_at + 1) {
        let outcome = match (index == fails_at, how) {
            (false, _) => Outcome::Passed,
            (true, 2) => Outcome::Error { message: "connection reset".into() },
            (true, _) => Outcome::Failed {
                expected: "status 200".into(),
                observed: Observed {
                    status: Some(if how == 0 { 302 } else { 400 }),
                    location: Some("/login".into()),
                    redirects: Vec::new(),
                    excerpt: String::new(),
                    reason: "turned away".into(),
                },
            },
        };
        let start_ms = vu as f64 * 100.0 + index as f64 * 10.0;
        steps.push(StepRecord {
            index,
            name: step.name.clone(),
            planned: served.id,
            served_by: Some(served),
            also_reached: Vec::new(),
            requests: vec![RequestRecord {
                method: "GET".into(),
                path: "/".into(),
                planned: served.id,
                served_by: Some(served),
                status: Some(200),
                location: None,
                set_cookies: Vec::new(),
                start_ms,
                end_ms: start_ms + 5.0,
                error: None,
            }],
            outcome,
            set_cookies: Vec::new(),
            captured: Vec::new(),
        });
    }
    VuRecord {
        phase: Phase::Main,
        vu,
        iteration: 0,
        scenario: scenario.name.clone(),
        steps,
    }
}

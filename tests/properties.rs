//! Properties that hold for every input, not only for the examples the other tests pick:
//! input files never make replicheck panic and every error points into the file, whatever
//! bytes or extreme values they hold; a user whose every request one replica served never
//! yields a cross-replica finding; a plan is a function of its seed.

mod common;

use proptest::prelude::*;
use proptest::sample::Index;

use replicheck::balancer::policy::RoutingPolicy;
use replicheck::check;
use replicheck::cluster::replica::{Incarnation, ReplicaId};
use replicheck::file::{FileError, SourceFile};
use replicheck::history::{History, Observed, Outcome, Phase, RequestRecord, StepRecord, VuRecord};
use replicheck::plan;
use replicheck::policy::Policy;
use replicheck::scenario::{self, Scenario, ScenarioFile};
use replicheck::target::{MAX_BODY, MAX_DURATION, Target};

const TARGET: &str = include_str!("../examples/demo/broken.toml");
const SCENARIOS: [&str; 5] = [
    include_str!("../scenarios/login.toml"),
    include_str!("../scenarios/antiforgery.toml"),
    include_str!("../scenarios/session.toml"),
    include_str!("../scenarios/cache.toml"),
    include_str!("../scenarios/token.toml"),
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
/// A scenario file's text loads and binds to the demo's target, or its error says where.
fn scenario_binds_or_is_located(text: &str) -> Result<(), TestCaseError> {
    match ScenarioFile::from_source(SourceFile::from_text("mutated.toml", text)) {
        Ok(file) => match file.bind(&demo_target()) {
            Ok(_) => Ok(()),
            Err(err) => located_in(&err, text),
        },
        Err(err) => located_in(&err, text),
    }
}

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

/// Well-formed TOML at its extremes: durations past any bound or an instant's range,
/// integers at the edges, long strings, deep nesting, and values of the wrong type.
fn extreme_value() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "y"]);
    prop_oneof![
        (any::<u64>(), unit).prop_map(|(n, unit)| format!("\"{n}{unit}\"")),
        (86_401u64..10_000_000).prop_map(|n| format!("\"{n}s\"")),
        Just("\"18446744073709551615s\"".to_owned()),
        Just("\"99999999999999999999999999h\"".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec!["0", "-1", "1e308", "inf", "nan", "true", "2027-01-01T10:00:00", "[]", "{}"]).prop_map(str::to_owned),
        (0usize..100_000, prop::sample::select(vec!["x", "{", "é", "/"])).prop_map(|(n, s)| format!("\"{}\"", s.repeat(n))),
        (1usize..300).prop_map(|depth| format!("{}1{}", "[".repeat(depth), "]".repeat(depth))),
        (1usize..300).prop_map(|depth| format!("{}1{}", "{ a = ".repeat(depth), " }".repeat(depth))),
        "[^\"\\\\]{0,40}".prop_map(|s| format!("\"{s}\"")),
    ]
}

/// A file's tables (`""` for the top level) with each key's ordinary value.
type Shape = &'static [(&'static str, &'static [(&'static str, &'static str)])];

const TARGET_SHAPE: Shape = &[
    ("", &[("name", "\"t\""), ("preset", "\"django\"")]),
    ("[start]", &[("command", "\"app\""), ("args", "[\"{port}\"]"), ("env", "{ A = \"{replica}\" }"), ("cwd", "\".\""), ("port", "8080"), ("ready_timeout", "\"30s\""), ("shutdown_grace", "\"10s\"")]),
    ("[health]", &[("ready", "\"/\""), ("interval", "\"500ms\"")]),
    ("[limits]", &[("request_timeout", "\"10s\""), ("max_body", "1024")]),
    ("[balancer]", &[("deregistration", "\"kubernetes\""), ("deregistration_delay", "\"2s\""), ("pre_stop", "\"1s\""), ("proxy_address", "\"127.0.0.1\""), ("client_address", "\"127.0.0.3\""), ("untrusted_address", "\"127.0.0.2\"")]),
    ("[chaos]", &[("page", "\"/\""), ("slow", "\"/slow?ms={ms}\""), ("slow_for", "\"1500ms\"")]),
    ("[telemetry]", &[("service_name", "\"t\""), ("wait", "\"10s\"")]),
    ("[login]", &[("form", "\"/login\""), ("username", "\"alice\""), ("password", "\"secret\""), ("protected", "\"/me\"")]),
    ("[cache]", &[("set", "{ method = \"PUT\", url = \"/cache/{key}\", body = \"{value}\" }"), ("get", "{ url = \"/cache/{key}\" }")]),
];

const SCENARIO_SHAPE: Shape = &[
    ("", &[("name", "\"s\""), ("about", "\"a\"")]),
    ("[vars]", &[("v", "\"{nonce}\"")]),
    ("[[steps]]", &[("name", "\"home\""), ("request", "{ url = \"/\" }"), ("expect", "{ status = 200 }"), ("produces", "\"a\"")]),
    ("[[steps]]", &[("name", "\"next\""), ("request", "{ url = \"/{v}\" }"), ("capture", "[{ name = \"c\", cookie = \"c\" }]"), ("route", "\"same\""), ("consumes", "\"a\"")]),
];

const POLICY_SHAPE: Shape = &[
    ("[[accept]]", &[("kind", "\"session-lost\""), ("reason", "\"known\""), ("until", "2027-01-01")]),
    ("[[accept]]", &[("cause", "\"keys-not-shared\""), ("check", "\"login\""), ("reason", "\"known\"")]),
];

/// The keys of a shape, one after the other.
fn key_count(shape: Shape) -> usize {
    shape.iter().map(|(_, keys)| keys.len()).sum()
}

/// The file of `shape`, each key with its ordinary value or the extreme one given for it.
fn document(shape: Shape, extremes: &[Option<String>]) -> String {
    let mut extremes = extremes.iter();
    let mut text = String::new();
    for (header, keys) in shape {
        if !header.is_empty() {
            text.push_str(&format!("\n{header}\n"));
        }
        for (key, ordinary) in *keys {
            let value = extremes.next().cloned().flatten().unwrap_or_else(|| (*ordinary).to_owned());
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    text
}

fn extremes(shape: Shape) -> impl Strategy<Value = Vec<Option<String>>> {
    prop::collection::vec(prop::option::weighted(0.25, extreme_value()), key_count(shape))
}

/// Whatever the three parsers make of `bytes`: a value, or an error located in the file.
fn parse_all(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let file = match SourceFile::from_bytes("mutated.toml", bytes.clone()) {
        Ok(file) => file,
        Err(err) => return located_in(&err, &String::from_utf8_lossy(&bytes)),
    };
    let text = file.text.to_string();
    match Target::from_source(&file) {
        Ok(target) => bounded(&target)?,
        Err(err) => located_in(&err, &text)?,
    }
    if let Err(err) = ScenarioFile::from_source(file.clone()) {
        located_in(&err, &text)?;
    }
    if let Err(err) = Policy::from_source(&file) {
        located_in(&err, &text)?;
    }
    Ok(())
}

/// A target that loads waits 24h at most for anything and reads 1 GiB at most.
fn bounded(target: &Target) -> Result<(), TestCaseError> {
    let durations = [
        target.start.ready_timeout,
        target.start.shutdown_grace,
        target.health.interval,
        target.limits.request_timeout,
        target.balancer.deregistration_delay,
        target.balancer.pre_stop,
        target.chaos.slow_for,
    ];
    prop_assert!(durations.iter().chain(target.telemetry.as_ref().map(|t| &t.wait)).all(|d| *d <= MAX_DURATION), "{durations:?}");
    prop_assert!(target.limits.max_body <= MAX_BODY);
    Ok(())
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
        scenario_binds_or_is_located(&text)?;
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
            cookie_shapes: Default::default(),
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any bytes at all: not UTF-8, not TOML, or TOML of any shape.
    #[test]
    fn arbitrary_bytes_parse_or_say_where_they_are_wrong(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all(bytes)?;
    }

    /// Bytes spliced into a real target, so the parsers get past the first line.
    #[test]
    fn bytes_spliced_into_a_target_parse_or_say_where_they_are_wrong(at in any::<Index>(), bytes in prop::collection::vec(any::<u8>(), 1..24)) {
        let mut text = TARGET.as_bytes().to_vec();
        let at = at.index(text.len() + 1);
        text.splice(at..at, bytes);
        parse_all(text)?;
    }

    #[test]
    fn extreme_values_in_a_target_load_bounded_or_say_where_they_are_wrong(extremes in extremes(TARGET_SHAPE)) {
        parse_all(document(TARGET_SHAPE, &extremes).into_bytes())?;
    }

    #[test]
    fn extreme_values_in_a_scenario_load_or_say_where_they_are_wrong(extremes in extremes(SCENARIO_SHAPE)) {
        let text = document(SCENARIO_SHAPE, &extremes);
        scenario_binds_or_is_located(&text)?;
    }

    #[test]
    fn extreme_values_in_a_policy_load_or_say_where_they_are_wrong(extremes in extremes(POLICY_SHAPE)) {
        let text = document(POLICY_SHAPE, &extremes);
        if let Err(err) = Policy::from_source(&SourceFile::from_text("mutated.toml", text.as_str())) {
            located_in(&err, &text)?;
        }
    }
}

/// The duration keys of a target file, by table.
const DURATIONS: [(&str, &str); 8] = [
    ("start", "ready_timeout"),
    ("start", "shutdown_grace"),
    ("health", "interval"),
    ("limits", "request_timeout"),
    ("balancer", "deregistration_delay"),
    ("balancer", "pre_stop"),
    ("chaos", "slow_for"),
    ("telemetry", "wait"),
];

proptest! {
    // Each case runs the binary: a few are enough to show the command line's side.
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// A duration past the bound, in any duration field: exit 2 at its place, naming it.
    #[test]
    fn validate_refuses_a_duration_past_24h_at_its_place(which in 0..DURATIONS.len(), seconds in 86_401u64..=u64::MAX) {
        let (table, key) = DURATIONS[which];
        let dir = tempfile::tempdir().unwrap();
        let start = if table == "start" { String::new() } else { format!("[{table}]\n") };
        let text = format!("[start]\ncommand = \"app\"\n{start}{key} = \"{seconds}s\"\n");
        common::write(dir.path(), "long.toml", &text);
        let output = common::command(&common::tag("validate"), &["validate", "long.toml"]).current_dir(dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        prop_assert_eq!(output.status.code(), Some(2), "{}", stderr);
        let line = if table == "start" { 3 } else { 4 };
        prop_assert!(stderr.contains(&format!("[long.toml:{line}:{}]", key.len() + 4)), "{}", stderr);
        prop_assert!(stderr.contains(&format!("[{table}] {key} = \"{seconds}s\" is longer than 24h")), "{}", stderr);
    }

    /// Whatever extremes a target holds, `validate` says it is valid, or exits 2 with the
    /// place: it never panics.
    #[test]
    fn validate_never_panics_on_extreme_targets(extremes in extremes(TARGET_SHAPE)) {
        let dir = tempfile::tempdir().unwrap();
        common::write(dir.path(), "extreme.toml", &document(TARGET_SHAPE, &extremes));
        let output = common::command(&common::tag("validate"), &["validate", "extreme.toml"]).current_dir(dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.code() {
            Some(0) => {}
            Some(2) => prop_assert!(stderr.contains("[extreme.toml:") && stderr.len() < 4000, "{}", &stderr[..stderr.len().min(4000)]),
            other => prop_assert!(false, "exit {:?}: {}", other, &stderr[..stderr.len().min(4000)]),
        }
    }
}

//! The framework zoo (`tests/apps/README.md`): real apps of real frameworks that
//! replicheck's code was not written against, each misconfigured and configured
//! correctly, run with every scenario and experiment as a new user would. The correct
//! mode exits 0; the misconfigured mode reports exactly its planted kinds (the
//! `# planted:` line of its `broken.toml`), each with its control passed and seen again,
//! and nothing else.
//!
//! CI runs each mode once: the correct one with seed 1 and two replicas, the misconfigured
//! one with seed 2 and three replicas. The soak, five seeds with two and with three
//! replicas, is `cargo nextest run --release --test zoo --run-ignored ignored-only`.

mod common;

use replicheck::check::ScenarioStatus;
use replicheck::check::finding::ControlResult;

/// What CI runs: (seed, replicas), the correct mode the first, the misconfigured the second.
const CI: [(u64, u16); 2] = [(1, 2), (2, 3)];

fn soak() -> Vec<(u64, u16)> {
    (1..=5).flat_map(|seed| [(seed, 2), (seed, 3)]).collect()
}

/// Programs an app needs, with what installs them (`.ci/run` does).
fn require(programs: &[&str]) {
    for program in programs {
        assert!(which::which(program).is_ok(), "{program} is missing: .ci/run installs the zoo's packages (tests/apps/README.md)");
    }
}

/// The kinds a target file says it plants: its `# planted: a, b` line.
fn planted(target: &str) -> Vec<String> {
    listed(target, "planted")
}

/// The items of a target file's `# NAME: a, b` line, sorted (`none` is none).
fn listed(target: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(common::root().join(target)).unwrap_or_else(|e| panic!("{target}: {e}"));
    let prefix = format!("# {name}:");
    let line = text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("{target} has no `{prefix}` line"));
    let mut items: Vec<String> = line.split(',').map(|k| k.trim().to_owned()).filter(|k| !k.is_empty() && k != "none").collect();
    items.sort();
    items
}

fn run(target: &str, seed: u64, replicas: u16) -> common::Finished {
    common::run(target, &["--seed", &seed.to_string(), "--replicas", &replicas.to_string()])
}

fn configured_correctly_finds_nothing(app: &str, runs: &[(u64, u16)]) {
    let target = format!("tests/apps/{app}/fixed.toml");
    assert!(planted(&target).is_empty(), "{target} plants nothing");
    for &(seed, replicas) in runs {
        let run = run(&target, seed, replicas);
        let report = run.report();
        let summary: Vec<String> = report.findings.iter().map(|f| format!("{} {} / {}: {}", f.kind, f.scenario, f.step, f.observed)).collect();
        assert_eq!(run.code, 0, "{app} seed {seed}, {replicas} replicas:\n{}\n{}\n{}", summary.join("\n"), run.stdout, run.stderr);
        for scenario in &report.scenarios {
            assert!(
                matches!(scenario.status, ScenarioStatus::Passed | ScenarioStatus::Skipped),
                "{app} seed {seed}: {scenario:?}"
            );
        }
    }
}

fn misconfigured_shows_exactly_what_it_plants(app: &str, runs: &[(u64, u16)]) {
    let target = format!("tests/apps/{app}/broken.toml");
    let expected = planted(&target);
    assert!(!expected.is_empty(), "{target} plants something");
    // The probable causes that lead (explain a finding first): a change in the rules that
    // blame a cause shows here as a changed cause.
    let causes = listed(&target, "causes");
    for &(seed, replicas) in runs {
        let run = run(&target, seed, replicas);
        assert_eq!(run.code, 1, "{app} seed {seed}, {replicas} replicas:\n{}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), expected, "{app} seed {seed}, {replicas} replicas:\n{}", run.stdout);
        let mut leading: Vec<String> = run.report().diagnoses.iter().filter(|d| !d.findings.is_empty()).map(|d| d.cause.to_string()).collect();
        leading.sort();
        assert_eq!(leading, causes, "{app} seed {seed}, {replicas} replicas:\n{:#?}", run.report().diagnoses);
        for finding in &run.report().findings {
            assert_eq!(finding.control.result, ControlResult::Passed, "{finding:?}");
            assert!(finding.reproduced, "{finding:?}");
        }
        for scenario in &run.report().scenarios {
            assert!(
                !matches!(scenario.status, ScenarioStatus::Error | ScenarioStatus::BaselineFailed),
                "{app} seed {seed}: one fault must not stop a check: {scenario:?}\n{}",
                run.stdout
            );
        }
    }
}

/// Each app's tests: one per CI run, so that runs of a slow app go side by side, and the
/// soak.
macro_rules! zoo {
    ($app:ident, $programs:expr) => {
        mod $app {
            use super::*;

            #[test]
            fn configured_correctly_finds_nothing_seed_1_two_replicas() {
                require(&$programs);
                configured_correctly_finds_nothing(stringify!($app), &CI[..1]);
            }

            #[test]
            fn misconfigured_shows_exactly_what_it_plants_seed_2_three_replicas() {
                require(&$programs);
                misconfigured_shows_exactly_what_it_plants(stringify!($app), &CI[1..]);
            }

            #[test]
            #[ignore = "the soak: cargo nextest run --release --test zoo --run-ignored ignored-only"]
            fn soak_configured_correctly() {
                require(&$programs);
                configured_correctly_finds_nothing(stringify!($app), &soak());
            }

            #[test]
            #[ignore = "the soak: cargo nextest run --release --test zoo --run-ignored ignored-only"]
            fn soak_misconfigured() {
                require(&$programs);
                misconfigured_shows_exactly_what_it_plants(stringify!($app), &soak());
            }
        }
    };
}

zoo!(express, ["node", "redis-server"]);
zoo!(sinatra, ["puma", "redis-server"]);
zoo!(tornado, ["python3", "redis-server"]);
zoo!(starlette, ["gunicorn", "redis-server"]);
zoo!(rails, ["ruby", "redis-server"]);
zoo!(pyramid, ["python3"]);
zoo!(django, ["python3"]);

/// Express ignores X-Forwarded-Proto by default and its same-origin check then refuses
/// every browser's post, on one replica as on two: the per-process keys behind it must
/// still be found, and the findings say how the users were adapted.
#[test]
fn behind_an_ignored_forwarded_proto_the_per_process_keys_are_still_found() {
    require(&["node"]);
    let run = common::run("tests/apps/express/broken.toml", &["--seed", "3", "--replicas", "2", "--scenarios", "login,antiforgery,forwarded-headers"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let kinds = run.kinds();
    for kind in ["forwarded-proto-ignored", "auth-cookie-rejected", "antiforgery-rejected"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} not in {kinds:?}");
    }
    let report = run.report();
    for finding in report.findings.iter().filter(|f| matches!(f.kind.id(), "auth-cookie-rejected" | "antiforgery-rejected")) {
        assert!(finding.notes.iter().any(|n| n.contains("the origin the app believes")), "{finding:?}");
    }
    let login = report.scenarios.iter().find(|s| s.name == "login").unwrap();
    assert!(login.notes.iter().any(|n| n.starts_with("as browsers: ") && n.contains("status 403")), "{login:?}");
}

//! `replicheck explore` end to end against the demo's real replicas: drawn schedules, each
//! fault shrunk to a small schedule whose reproduce command fails the same way, the same
//! seed exploring the same way, and nothing found on the correctly configured demo.

mod common;

use common::Finished;
use replicheck::check::finding::{ControlResult, Finding, FindingKind};
use replicheck::check::ScenarioStatus;

fn explore(args: &[&str]) -> Finished {
    let dir = tempfile::tempdir().expect("temp dir");
    let report_dir = dir.path().join("report");
    let tag = common::tag("explore");
    let mut all = vec!["explore"];
    all.extend_from_slice(args);
    all.extend(["--report-dir", report_dir.to_str().expect("utf-8 path"), "--format", "table,json"]);
    let output = common::command(&tag, &all).output().expect("replicheck runs");
    let finished = common::finish(output, dir, report_dir);
    common::assert_no_leftovers(&tag);
    finished
}

/// A reproduce command's words after `replicheck explore`: the single quotes `shell_word`
/// puts around the schedule are the only quoting it uses.
fn words(command: &str) -> Vec<String> {
    let rest = command.strip_prefix("replicheck explore ").expect("an explore command");
    let mut words = Vec::new();
    let mut parts = rest.split('\'');
    while let Some(bare) = parts.next() {
        words.extend(bare.split_whitespace().map(str::to_owned));
        if let Some(quoted) = parts.next() {
            words.push(quoted.to_owned());
        }
    }
    words
}

fn identity(finding: &Finding) -> (FindingKind, String, String, u16, u16) {
    (finding.kind, finding.scenario.clone(), finding.step.clone(), finding.producer.id.0, finding.consumer.id.0)
}

#[test]
fn the_broken_demo_is_found_out_in_small_schedules_whose_reproduce_commands_fail_the_same_way() {
    let run = explore(&["examples/demo/broken.toml", "--cases", "20", "--seed", "3"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stderr, run.stdout);
    let report = run.report();
    let kinds = run.kinds();
    for kind in ["auth-cookie-rejected", "antiforgery-rejected", "session-lost", "cache-divergent"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} not found: {kinds:?}\n{}", run.stdout);
    }
    for finding in &report.findings {
        let schedule = finding.minimal_schedule.as_ref().expect("an explored finding has its schedule");
        assert!(schedule.steps() <= 4, "{}: {schedule}", finding.id);
        assert_eq!(finding.control.result, ControlResult::Passed);
        assert!(finding.reproduced);
    }
    // The auth cookie: signed in on one replica, refused by another; nothing else.
    let cookie = report.findings.iter().find(|f| f.kind == FindingKind::AuthCookieRejected).unwrap();
    let schedule = cookie.minimal_schedule.as_ref().unwrap();
    assert_eq!((schedule.steps(), schedule.disruptions().count()), (3, 0), "{schedule}");
    assert_ne!(cookie.producer.id, cookie.consumer.id);

    for finding in &report.findings {
        let words = words(&finding.reproduce);
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let again = explore(&args);
        assert_eq!(again.code, 1, "{} did not fail again:\n{}\n{}", finding.reproduce, again.stderr, again.stdout);
        assert!(
            again.report().findings.iter().any(|f| identity(f) == identity(finding)),
            "{} found {:?}, not {:?}",
            finding.reproduce,
            again.report().findings.iter().map(identity).collect::<Vec<_>>(),
            identity(finding)
        );
    }
}

#[test]
fn the_same_seed_explores_the_same_way() {
    let args = ["examples/demo/broken.toml", "--cases", "4", "--seed", "11", "--max-steps", "6", "--max-shrink-iters", "64"];
    let (first, second) = (explore(&args), explore(&args));
    assert_eq!(first.code, 1, "{}", first.stderr);
    let identities = |run: &Finished| run.report().findings.iter().map(|f| (identity(f), f.minimal_schedule.clone())).collect::<Vec<_>>();
    assert_eq!(identities(&first), identities(&second));
    assert_eq!(first.report().exploration, second.report().exploration, "the same schedules, drawn and shrunk the same way");
    let exploration = first.report().exploration.as_ref().unwrap();
    assert_eq!(exploration.schedules.len(), 4);
    assert!(exploration.shrink_steps > 0);
}

#[test]
fn the_correctly_configured_demo_explores_clean() {
    let run = explore(&["examples/demo/fixed.toml", "--cases", "50", "--seed", "5"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let report = run.report();
    assert!(report.findings.is_empty());
    // Every scenario is tested but the polling transport's and the upload's, which the
    // demo's target lacks.
    let (skipped, ran): (Vec<_>, Vec<_>) = report.scenarios.iter().partition(|s| s.status == ScenarioStatus::Skipped);
    assert!(ran.iter().all(|s| s.fully_tested()), "{:?}", report.scenarios);
    assert_eq!(skipped.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["affinity", "upload"]);
    let exploration = report.exploration.as_ref().unwrap();
    assert_eq!(exploration.cases, 50);
    assert!(exploration.dismissed.is_empty(), "{:?}", exploration.dismissed);
    // The cases disrupted replicas between steps too, and users still passed.
    assert!(exploration.schedules.iter().any(|s| s.contains("restart:") || s.contains("kill:")), "{:?}", exploration.schedules);
}

#[test]
fn a_schedule_the_target_cannot_run_is_refused_before_anything_starts() {
    let refused = |schedule: &str, says: &str| {
        let run = explore(&["examples/demo/broken.toml", "--schedule", schedule]);
        assert_eq!(run.code, 2, "{schedule}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{schedule}: {}", run.stderr);
        assert!(run.report.is_none());
    };
    refused("u0:login/0@r0 u0:login/2@r1", "word 2 (`u0:login/2@r1`, column 15): u0's next step is 1");
    refused("u0:login/0@r5", "r5 is not among r0..r1");
    refused("u0:nothing/0@r0", "no scenario `nothing`");
    refused("u0:cache/0@r0 store-restart u0:cache/1@r0", "no Redis");
}

#[test]
fn a_store_restart_between_steps_is_found_as_one_and_a_durable_store_explores_clean() {
    let broken = explore(&["examples/demo/broken-redis.toml", "--cases", "30", "--seed", "4"]);
    assert_eq!(broken.code, 1, "{}\n{}", broken.stderr, broken.stdout);
    let report = broken.report();
    assert!(!report.findings.is_empty());
    for finding in &report.findings {
        // Keys are shared: whatever crossed, only the store's restart explains a failure.
        assert_eq!(finding.kind, FindingKind::ArtifactLostAfterStoreRestart, "{finding:?}");
        let schedule = finding.minimal_schedule.as_ref().unwrap();
        assert!(schedule.to_string().contains("store-restart") && schedule.steps() <= 4, "{schedule}");
        assert_eq!(finding.control.pinned_to, None, "the control takes the store restart away");
    }
    let fixed = explore(&["examples/demo/fixed-redis.toml", "--cases", "30", "--seed", "4"]);
    assert_eq!(fixed.code, 0, "{}\n{}", fixed.stderr, fixed.stdout);
    assert!(fixed.report().exploration.as_ref().unwrap().schedules.iter().any(|s| s.contains("store-restart")));
}

#[test]
fn a_replica_that_exits_while_exploring_stops_the_search_and_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = common::write(
        dir.path(),
        "pages.toml",
        "name = \"pages\"\n[[steps]]\nname = \"a page\"\nrequest = { url = \"/page\" }\n[[steps]]\nname = \"another\"\nrequest = { url = \"/page\" }\n",
    );
    let run = explore(&["tests/apps/quitter.toml", "--scenarios", scenario.to_str().unwrap(), "--cases", "200", "--seed", "1"]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    assert_eq!(report.exits.len(), 1, "{:?}", report.exits);
    assert!(report.exits[0].how.contains("giving up after 15 requests"));
    let exploration = report.exploration.as_ref().unwrap();
    assert!(exploration.cases < 200 && exploration.stopped.as_deref().unwrap_or("").contains("exited"), "{exploration:?}");
    assert!(report.scenarios.iter().all(|s| s.status == replicheck::check::ScenarioStatus::Error), "{:?}", report.scenarios);
}

#[test]
fn an_interrupted_exploration_reports_what_it_found_so_far() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let tag = common::tag("explore-sigint");
    let child = common::spawn(
        &tag,
        &["explore", "examples/demo/broken.toml", "--cases", "100000", "--seed", "2", "--report-dir", report.to_str().unwrap()],
    );
    // Started, and some cases done.
    let going = common::wait_until(std::time::Duration::from_secs(30), || common::tagged(&tag).len() >= 3);
    assert!(going);
    std::thread::sleep(std::time::Duration::from_secs(2));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let output = child.wait_with_output().unwrap();
    common::assert_interrupted(&output, Signal::SIGINT, &report);
    let report: replicheck::report::Report = serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let exploration = report.exploration.unwrap();
    assert!(exploration.cases < 100_000 && exploration.stopped.as_deref().unwrap_or("").starts_with("interrupted by SIGINT"), "{exploration:?}");
    common::assert_no_leftovers(&tag);
}

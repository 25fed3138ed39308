//! The demo's target files, run through the real binary against real replica processes
//! (and a real redis-server for `fixed-redis.toml`).

mod common;

use replicheck::check::ScenarioStatus;
use replicheck::check::finding::ControlResult;

const CORE_KINDS: [&str; 4] = ["antiforgery-rejected", "auth-cookie-rejected", "cache-divergent", "session-lost"];
/// The four built-in scenarios, without chaos experiments.
const CORE: &str = "login,antiforgery,session,cache";

#[test]
fn the_misconfigured_demo_shows_every_core_kind_with_control_evidence() {
    let run = common::run("examples/demo/broken.toml", &["--replicas", "2", "--seed", "1", "--scenarios", CORE]);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert_eq!(run.kinds(), CORE_KINDS);
    for finding in &run.report().findings {
        assert_ne!(finding.producer.id, finding.consumer.id, "{finding:?}");
        assert_eq!(finding.control.result, ControlResult::Passed);
        assert_eq!(finding.control.pinned_to, Some(finding.producer.id));
        assert!(finding.reproduced);
        assert!(finding.reproduce.contains("--seed 1") && finding.reproduce.contains(&format!("--scenarios {}", finding.scenario)));
    }
    // The table and each finding's evidence reach the terminal.
    assert!(run.stdout.contains("auth-cookie-rejected") && run.stdout.contains("control:"), "{}", run.stdout);
}

#[test]
fn a_findings_reproduce_command_reproduces_it() {
    let first = common::run("examples/demo/broken.toml", &["--seed", "11", "--scenarios", CORE]);
    let finding = first.report().findings.iter().find(|f| f.scenario == "cache").expect("a cache finding").clone();
    // `replicheck run examples/demo/broken.toml --replicas 2 --routing random --vus 8 --seed 11 --scenarios cache`
    let words: Vec<&str> = finding.reproduce.split_whitespace().collect();
    assert_eq!(&words[..3], ["replicheck", "run", "examples/demo/broken.toml"]);
    let again = common::run(words[2], &words[3..]);
    assert_eq!(again.code, 1);
    // Virtual user numbers depend on which scenarios run; the user's values do not.
    let same = again.report().findings.iter().any(|f| {
        f.kind == finding.kind && f.producer == finding.producer && f.consumer == finding.consumer && f.expected == finding.expected
    });
    assert!(same, "{:?} not among {:?}", finding, again.report().findings);
}

fn assert_consistent(target: &str, args: &[&str]) {
    let run = common::run(target, args);
    assert_eq!(run.code, 0, "{target} {args:?}: stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let report = run.report();
    assert!(report.findings.is_empty());
    for scenario in &report.scenarios {
        assert_eq!(scenario.status, ScenarioStatus::Passed, "{target} {args:?}: {scenario:?}");
        assert!(scenario.handoffs_crossed > 0, "{target} {args:?}: nothing crossed in {scenario:?}");
    }
    assert!(report.plan.experiments.is_empty());
}

#[test]
fn the_configured_demo_with_sqlite_finds_nothing_over_ten_seeds() {
    for seed in 1..=10 {
        assert_consistent("examples/demo/fixed.toml", &["--seed", &seed.to_string(), "--scenarios", CORE]);
    }
}

#[test]
fn the_configured_demo_with_redis_finds_nothing_over_ten_seeds() {
    for seed in 1..=10 {
        assert_consistent("examples/demo/fixed-redis.toml", &["--seed", &seed.to_string(), "--scenarios", CORE]);
    }
}

#[test]
fn the_configured_demo_finds_nothing_with_three_replicas() {
    for seed in [1, 2, 3] {
        assert_consistent("examples/demo/fixed.toml", &["--replicas", "3", "--seed", &seed.to_string(), "--scenarios", CORE]);
        assert_consistent("examples/demo/fixed-redis.toml", &["--replicas", "3", "--seed", &seed.to_string(), "--scenarios", CORE]);
    }
}

#[test]
fn every_routing_policy_runs_and_only_crossing_ones_find_the_cookie_problem() {
    let sticky = common::run("examples/demo/broken.toml", &["--seed", "3", "--routing", "sticky", "--scenarios", "login"]);
    assert_eq!(sticky.code, 0, "{}", sticky.stderr);
    assert_eq!(sticky.report().scenarios[0].handoffs_crossed, 0);
    assert!(sticky.report().scenarios[0].reason.as_deref().unwrap_or("").contains("no artifact crossed"));
    let pinned = common::run("examples/demo/broken.toml", &["--seed", "3", "--routing", "pin:r1", "--scenarios", "cache"]);
    assert_eq!(pinned.code, 0);
    for policy in ["switch", "round-robin"] {
        let run = common::run("examples/demo/broken.toml", &["--seed", "3", "--routing", policy, "--scenarios", "cache"]);
        assert_eq!(run.code, 1, "{policy}: {}", run.stderr);
        assert_eq!(run.kinds(), ["cache-divergent"]);
    }
}

#[test]
fn the_same_seed_gives_the_same_plan() {
    let args = |seed: &'static str| ["--seed", seed, "--replicas", "3", "--scenarios", "login,cache,restart"];
    let a = common::run("examples/demo/fixed.toml", &args("99"));
    let b = common::run("examples/demo/fixed.toml", &args("99"));
    assert_eq!(a.report().plan, b.report().plan);
    assert_eq!(a.report().plan.experiments.len(), 1, "the restart experiment is part of the plan");
    let c = common::run("examples/demo/fixed.toml", &args("100"));
    assert_ne!(a.report().plan, c.report().plan);
}

#[test]
fn replica_output_is_captured_in_the_report_directory_without_secrets() {
    let run = common::run("examples/demo/broken.toml", &["--seed", "4", "--scenarios", "login"]);
    let log = std::fs::read_to_string(run.report_dir.join("r0.log")).expect("r0.log");
    assert!(log.contains("demo r0 listening"), "{log}");
    assert!(run.report_dir.join("r1.log").exists());
    for file in std::fs::read_dir(&run.report_dir).unwrap().flatten() {
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(!text.contains("wonderland"), "the password leaked into {}", file.path().display());
    }
}

#[test]
fn the_demo_command_shows_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let tag = common::tag("demo");
    let output = common::command(&tag, &["demo", "--seed", "5", "--reports", dir.path().to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let misconfigured = stdout.lines().find(|l| l.starts_with("misconfigured: ")).expect("a summary of the misconfigured run");
    let chaos = [
        "artifact-lost-after-restart",
        "inflight-dropped",
        "readiness-premature",
        "refused-during-deregistration",
        "forwarded-proto-ignored",
        "forwarded-for-ignored",
        "signing-keys-divergent",
    ];
    for kind in CORE_KINDS.iter().chain(&chaos) {
        assert!(misconfigured.contains(kind), "{kind} missing from: {misconfigured}");
    }
    // CI installs redis-server: the Redis runs happen and show the store's kinds.
    let with_redis = stdout.lines().find(|l| l.starts_with("misconfigured, with Redis: ")).expect("the Redis run");
    assert!(with_redis.contains("artifact-lost-after-store-restart") && with_redis.contains("readiness-stale"), "{with_redis}");
    // And PostgreSQL: the runs that migrate at start and restart and stop the database.
    let with_postgres = stdout.lines().find(|l| l.starts_with("misconfigured, with PostgreSQL: ")).expect("the PostgreSQL run");
    assert!(with_postgres.ends_with("(readiness-stale, start-race)"), "{with_postgres}");
    assert!(stdout.contains("configured correctly, with PostgreSQL: 0 finding(s)"), "{stdout}");
    let race = stdout.lines().find(|l| l.starts_with("misconfigured key ring, made on first use: ")).expect("the key ring run");
    assert!(race.contains("(keyring-race-on-start)"), "{race}");
    let telemetry = stdout.lines().find(|l| l.starts_with("misconfigured telemetry: ")).expect("the telemetry run");
    assert!(telemetry.contains("(telemetry-unattributed)"), "{telemetry}");
    assert!(stdout.contains("configured correctly: 0 finding(s)"), "{stdout}");
    assert!(stdout.contains("configured correctly, with Redis: 0 finding(s)"), "{stdout}");
    let jobs = stdout.lines().find(|l| l.starts_with("misconfigured background work: ")).expect("the background work run");
    assert!(jobs.ends_with("(job-runs-on-every-replica, side-effect-duplicated, work-lost-at-shutdown)"), "{jobs}");
    assert!(stdout.contains("background work configured correctly: 0 finding(s)"), "{stdout}");
    let live = stdout.lines().find(|l| l.starts_with("misconfigured live updates: ")).expect("the live updates run");
    assert!(live.ends_with("(affinity-required, broadcast-not-shared)"), "{live}");
    assert!(stdout.contains("live updates configured correctly: 0 finding(s)"), "{stdout}");
    let limits = stdout.lines().find(|l| l.starts_with("misconfigured rate limit and uploads: ")).expect("the limits run");
    assert!(limits.ends_with("(limit-per-replica, limit-reset-by-restart, limit-shared-by-all-clients, upload-not-shared)"), "{limits}");
    assert!(stdout.contains("rate limit and uploads configured correctly: 0 finding(s)"), "{stdout}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 14, "one report directory per run");
    common::assert_no_leftovers(&tag);
}

fn stdout_has(output: &std::process::Output, text: &str) -> bool {
    String::from_utf8_lossy(&output.stdout).contains(text)
}

#[test]
fn without_redis_the_demo_says_what_it_skipped_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let tag = common::tag("demo-no-redis");
    let output = common::command(&tag, &["demo", "--seed", "6", "--reports", dir.path().to_str().unwrap()])
        // No redis-server on this PATH; the demo's replicas are this binary itself.
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The tables and the verdicts are on stdout: they say which variant missed what, and why.
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
    assert!(stderr.contains("misconfigured, with Redis: skipped"), "{stderr}");
    assert!(stderr.contains("store-restart and store-outage need the demo's Redis, and redis-server is not installed"), "{stderr}");
    assert!(stderr.contains("misconfigured background work: skipped"), "{stderr}");
    assert!(stderr.contains("misconfigured live updates: skipped"), "{stderr}");
    // The rate limit and uploads keep their counts in SQLite: no Redis needed. PostgreSQL is
    // found where Debian puts it, off PATH.
    assert!(stdout_has(&output, "misconfigured rate limit and uploads: "), "{stderr}");
    assert!(stdout_has(&output, "misconfigured, with PostgreSQL: "), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 8);
    common::assert_no_leftovers(&tag);
}

#[test]
fn a_users_own_scenario_failing_only_across_replicas_is_expectation_failed() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = common::write(
        dir.path(),
        "notes.toml",
        r#"
name = "notes"
[vars]
note = "note-{nonce}"

[[steps]]
name = "keep a note"
request = { method = "POST", url = "/session", form = { note = "{note}" } }

[[steps]]
name = "read the note"
request = { url = "/session" }
expect = { status = 200, body_contains = "{note}" }
"#,
    );
    let broken = common::run("examples/demo/broken.toml", &["--seed", "8", "--scenarios", scenario.to_str().unwrap()]);
    assert_eq!(broken.code, 1, "{}", broken.stderr);
    assert_eq!(broken.kinds(), ["expectation-failed"]);
    let finding = &broken.report().findings[0];
    assert_eq!(finding.step, "read the note");
    assert_eq!(finding.artifact.kind, "none");
    assert_eq!(finding.control.result, ControlResult::Passed);
    let fixed = common::run("examples/demo/fixed.toml", &["--seed", "8", "--scenarios", scenario.to_str().unwrap()]);
    assert_eq!(fixed.code, 0, "{}", fixed.stdout);
}

#[test]
fn a_scenario_that_fails_on_every_replica_is_baseline_failed_not_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = common::write(
        dir.path(),
        "wrong.toml",
        "name = \"wrong\"\n[[steps]]\nname = \"open\"\nrequest = { url = \"/account\" }\n[[steps]]\nname = \"again\"\nrequest = { url = \"/whoami\" }\nexpect = { body_contains = \"no app says this\" }\n",
    );
    let run = common::run("examples/demo/broken.toml", &["--seed", "9", "--scenarios", scenario.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(run.report().findings.is_empty());
    assert_eq!(run.report().scenarios[0].status, ScenarioStatus::BaselineFailed);
    assert!(run.stdout.contains("did not run cleanly"), "{}", run.stdout);
}

/// The configured demo, with replica r1 answering every page with a redirect to itself: a
/// replica that fails every flow even alone, which is never a cross-replica fault. Users
/// switch replicas at every request, so most failures cross and only the consumer's own
/// control can tell.
#[test]
fn a_replica_that_fails_every_flow_alone_is_baseline_failed_never_a_cross_replica_finding() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::root().join("examples/demo/fixed.toml")).unwrap();
    let text = text.replace(r#""--replica", "{replica}","#, r#""--replica", "{replica}", "--redirect-loop", "r1","#);
    let target = common::write(dir.path(), "r1-loops.toml", &text);
    let mut consumers_told = Vec::new();
    for seed in ["1", "2"] {
        let run = common::run(target.to_str().unwrap(), &["--replicas", "2", "--seed", seed, "--routing", "switch", "--scenarios", "login,antiforgery,session,cache,token"]);
        assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
        let report = run.report();
        assert!(report.findings.is_empty(), "seed {seed}: {:?}", report.findings);
        for result in &report.scenarios {
            assert_eq!(result.status, ScenarioStatus::BaselineFailed, "seed {seed}: {result:?}");
            let reason = result.reason.as_deref().unwrap_or_default();
            assert!(reason.contains("on r1"), "seed {seed}: the reason names the replica that fails alone: {reason}");
            if reason.contains("the consumer's control run (every step on r1) failed") {
                consumers_told.push(result.name.clone());
            }
        }
    }
    assert!(!consumers_told.is_empty(), "no failure crossed to r1 and was judged by the consumer's control");
}

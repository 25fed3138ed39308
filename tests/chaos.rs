//! Chaos experiments through the binary, against real replica processes and a real
//! redis-server: every misconfigured demo target shows its kinds, each finding names the
//! disruption it followed, and the configured demo shows none over seeds and replicas.

mod common;

use replicheck::check::ScenarioStatus;
use replicheck::check::finding::ControlResult;
use replicheck::history::Phase;
use replicheck::report::Event;

/// Runs a demo target with the given experiments and returns its finding kinds, after
/// checking that every finding of an experiment carries its evidence.
fn kinds_of(target: &str, experiments: &str, seed: &str) -> Vec<String> {
    let run = common::run(target, &["--seed", seed, "--replicas", "2", "--scenarios", experiments]);
    assert_eq!(run.code, 1, "{target} {experiments}: expected findings\n{}\n{}", run.stdout, run.stderr);
    for finding in &run.report().findings {
        let after = finding.after.as_ref().unwrap_or_else(|| panic!("{finding:?} names no disruption"));
        // A store experiment is named after its dependency too: `store-restart redis`.
        assert!(experiments.split(',').any(|e| after.experiment == e || after.experiment.starts_with(&format!("{e} "))), "{finding:?}");
        assert!(after.at_ms > 0.0);
        assert_eq!(finding.control.result, ControlResult::Passed);
        assert!(finding.reproduced);
        assert!(finding.reproduce.contains(&after.experiment), "{}", finding.reproduce);
    }
    run.kinds()
}

#[test]
fn single_instance_state_is_lost_across_restarts_and_shutdown_drops_requests() {
    let kinds = kinds_of("examples/demo/broken.toml", "restart,kill,sigterm", "1");
    for kind in ["artifact-lost-after-restart", "inflight-dropped", "readiness-premature", "refused-during-deregistration"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} not in {kinds:?}");
    }
}

#[test]
fn closing_the_listener_at_once_refuses_requests_during_deregistration() {
    assert_eq!(kinds_of("examples/demo/broken-shutdown-close.toml", "sigterm", "2"), ["refused-during-deregistration"]);
}

#[test]
fn ignoring_sigterm_overruns_the_grace_period() {
    let kinds = kinds_of("examples/demo/broken-shutdown-ignore.toml", "sigterm", "3");
    assert!(kinds.contains(&"shutdown-overran-grace".to_owned()), "{kinds:?}");
}

#[test]
fn readiness_that_lies_is_premature_and_stale() {
    // Pages refused while the balancer still routes are refused during deregistration too.
    assert_eq!(
        kinds_of("examples/demo/broken-readiness.toml", "restart,sigterm", "4"),
        ["readiness-premature", "readiness-stale", "refused-during-deregistration"]
    );
}

#[test]
fn a_draining_replica_that_says_ready_and_serves_is_not_stale() {
    // The demo keeps serving for a second after SIGTERM, longer than the deregistration
    // delay, and its readiness ignores the shutdown: it says ready while it serves, which
    // is no lie. Several seeds and replica counts, as the readiness probe races the drain.
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed.toml")).unwrap();
    let text = fixed.replace(r#""--drain-ms", "1000","#, r#""--drain-ms", "1000", "--readiness-ignores-shutdown","#);
    assert_ne!(text, fixed);
    let dir = tempfile::tempdir().unwrap();
    let target = common::write(dir.path(), "ready-while-draining.toml", &text);
    for (seed, replicas) in [("1", "2"), ("2", "3"), ("3", "2")] {
        let run = common::run(target.to_str().unwrap(), &["--seed", seed, "--replicas", replicas, "--scenarios", "sigterm,rolling-restart"]);
        assert_eq!(run.code, 0, "seed {seed}:\n{}\n{}", run.stdout, run.stderr);
        let draining = run.report().events.iter().filter(|e| matches!(e, Event::Probe { probe, .. } if probe.purpose == replicheck::history::ProbePurpose::ReadyDraining && probe.said_ready())).count();
        assert!(draining >= 2, "readiness was asked while the replica drained, and said ready ({draining} times)");
    }
}

#[test]
fn volatile_redis_loses_artifacts_and_readiness_ignoring_it_is_stale() {
    let kinds = kinds_of("examples/demo/broken-redis.toml", "store-restart,store-outage", "5");
    assert_eq!(kinds, ["artifact-lost-after-store-restart", "readiness-stale"]);
}

#[test]
fn a_rolling_restart_and_a_scale_out_show_lost_artifacts_of_a_single_instance_app() {
    let kinds = kinds_of("examples/demo/broken.toml", "rolling-restart,scale-out", "6");
    // Requests cut in flight depend on a short request being mid-flight at SIGTERM here;
    // the `sigterm` experiment checks that with slow requests.
    for kind in ["artifact-lost-after-restart", "auth-cookie-rejected", "refused-during-deregistration"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} not in {kinds:?}");
    }
}

#[test]
fn replicas_that_each_make_a_key_ring_when_started_together_race_over_five_seeds() {
    for seed in 1..=5 {
        let run = common::run("examples/demo/broken-keyring-race.toml", &["--seed", &seed.to_string(), "--scenarios", "login,antiforgery,cold-start"]);
        assert_eq!(run.code, 1, "seed {seed}:\n{}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), ["keyring-race-on-start"], "seed {seed}:\n{}", run.stdout);
        let report = run.report();
        for finding in &report.findings {
            assert_ne!(finding.producer.id, finding.consumer.id, "{finding:?}");
            assert_eq!(finding.after.as_ref().map(|a| a.action.as_str()), Some("the shared directory emptied"), "{finding:?}");
            assert!(finding.control.detail.contains("staggered start"), "{finding:?}");
            assert!(finding.reproduced);
        }
        assert_eq!(report.diagnoses.iter().map(|d| d.cause.id()).collect::<Vec<_>>(), ["keyring-race"]);
        // One replica started first shares its ring: the main run's users, whose replicas
        // were asked for a page one after another, saw nothing.
        let login = report.scenarios.iter().find(|s| s.name == "login").unwrap();
        assert_eq!(login.status, ScenarioStatus::Passed, "{login:?}");
    }
}

#[test]
fn keys_each_process_keeps_to_itself_are_no_start_race() {
    for seed in ["1", "2", "3"] {
        let run = common::run("examples/demo/broken.toml", &["--seed", seed, "--scenarios", "login,cold-start"]);
        assert!(!run.kinds().contains(&"keyring-race-on-start".to_owned()), "seed {seed}:\n{}", run.stdout);
        assert!(run.kinds().contains(&"auth-cookie-rejected".to_owned()), "seed {seed}:\n{}", run.stdout);
        let report = run.report();
        let cold = report.scenarios.iter().find(|s| s.name == "cold-start").unwrap();
        // The other fault does not stop the check: the users it fails after a staggered
        // start too are set aside and said.
        assert!(!matches!(cold.status, ScenarioStatus::Error | ScenarioStatus::BaselineFailed), "seed {seed}: {cold:?}");
        assert!(cold.notes.iter().any(|n| n.contains("after a staggered start too")), "seed {seed}: {cold:?}");
    }
}

fn assert_no_chaos_findings(target: &str, seed: u64) {
    let run = common::run(target, &["--seed", &seed.to_string(), "--replicas", "3"]);
    assert_eq!(run.code, 0, "{target} seed {seed}:\n{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    assert!(report.findings.is_empty());
    let experiments: Vec<&str> = report.plan.experiments.iter().map(|e| e.kind.name()).collect();
    assert!(experiments.len() >= 6, "{experiments:?}");
    for scenario in &report.scenarios {
        let skipped = scenario.status == ScenarioStatus::Skipped;
        assert!(scenario.status == ScenarioStatus::Passed || skipped, "{target} seed {seed}: {scenario:?}");
    }
}

#[test]
fn the_configured_demo_survives_every_experiment_over_five_seeds() {
    for seed in 1..=5 {
        assert_no_chaos_findings("examples/demo/fixed.toml", seed);
    }
}

#[test]
fn the_configured_demo_with_persistent_redis_survives_every_experiment_over_five_seeds() {
    for seed in 1..=5 {
        assert_no_chaos_findings("examples/demo/fixed-redis.toml", seed);
    }
}

/// The demo with PostgreSQL, configured correctly, with every experiment: nothing found.
fn postgres_demo_finds_nothing(runs: &[(u64, &str)]) {
    for &(seed, replicas) in runs {
        let run = common::run("examples/demo/fixed-postgres.toml", &["--seed", &seed.to_string(), "--replicas", replicas]);
        assert_eq!(run.code, 0, "seed {seed}, {replicas} replicas:\n{}\n{}", run.stdout, run.stderr);
        for check in ["cold-start", "store-restart postgres", "store-outage postgres"] {
            assert_eq!(run.status_of(check), Some(ScenarioStatus::Passed), "seed {seed}, {replicas} replicas, {check}:\n{}", run.stdout);
        }
    }
}

#[test]
fn the_configured_demo_with_postgresql_survives_every_experiment_with_two_and_three_replicas() {
    postgres_demo_finds_nothing(&[(1, "2"), (2, "3")]);
}

#[test]
#[ignore = "the soak: cargo nextest run --release --test chaos --run-ignored ignored-only"]
fn soak_the_configured_demo_with_postgresql_over_five_seeds_and_two_replica_counts() {
    let runs: Vec<(u64, &str)> = (1..=5).flat_map(|seed| [(seed, "2"), (seed, "3")]).collect();
    postgres_demo_finds_nothing(&runs);
}

#[test]
fn the_demo_migrating_without_a_lock_and_blind_to_its_database_shows_exactly_that() {
    for (seed, replicas) in [("1", "2"), ("2", "3")] {
        let run = common::run("examples/demo/broken-postgres.toml", &["--seed", seed, "--replicas", replicas, "--scenarios", "login,cache,cold-start,store-restart,store-outage"]);
        assert_eq!(run.code, 1, "seed {seed}:\n{}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), ["readiness-stale", "start-race"], "seed {seed}:\n{}", run.stdout);
        let report = run.report();
        assert!(report.findings.iter().all(|f| f.reproduced && f.control.result == ControlResult::Passed), "{:?}", report.findings);
        let stale = report.findings.iter().find(|f| f.kind.to_string() == "readiness-stale").unwrap();
        assert_eq!(stale.check, "store-outage postgres");
        let race = report.findings.iter().find(|f| f.kind.to_string() == "start-race").unwrap();
        assert!(race.observed.reason.contains("migration failed"), "{}", race.observed.reason);
    }
}

#[test]
fn fifty_users_during_a_rolling_restart_of_three_replicas_see_no_failed_request() {
    let run = common::run(
        "examples/demo/fixed.toml",
        &["--seed", "7", "--replicas", "3", "--scenarios", "rolling-restart", "--load-vus", "50"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    let rolling = report.scenarios.iter().find(|s| s.name == "rolling-restart").unwrap();
    assert_eq!(rolling.status, ScenarioStatus::Passed);
    // The report says how many ran, and the table shows it.
    assert!(rolling.requests > 500, "{rolling:?}");
    assert!(run.stdout.contains(&rolling.requests.to_string()));
    let mut requests = 0;
    let mut load_users = std::collections::BTreeSet::new();
    for event in &report.events {
        if let Event::Request { experiment: Some(_), phase: Phase::Main, status, error, vu, .. } = event {
            requests += 1;
            load_users.insert(*vu);
            assert!(error.is_none() && status.is_some_and(|s| s < 500), "a request failed: {event:?}");
        }
    }
    assert!(requests > 500 && load_users.len() >= 50, "{requests} requests from {} users", load_users.len());
    // Every replica was replaced, each old one after its new one was ready.
    let starts = report.events.iter().filter(|e| matches!(e, Event::Chaos { event, .. } if event.action.to_string().starts_with("start of"))).count();
    let sigterms = report.events.iter().filter(|e| matches!(e, Event::Chaos { event, .. } if event.action.to_string().starts_with("SIGTERM"))).count();
    assert_eq!((starts, sigterms), (3, 3));
}

#[test]
fn hardening_processes_is_said_to_take_containers_and_is_not_run_by_default() {
    let run = common::run("examples/demo/fixed.toml", &["--seed", "3", "--scenarios", "login,hardened"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let hardened = run.report().scenarios.iter().find(|s| s.name == "hardened").expect("named, it is listed").clone();
    assert_eq!(hardened.status, ScenarioStatus::Skipped);
    assert!(hardened.reason.as_deref().is_some_and(|r| r.contains("--backend docker")), "{hardened:?}");
    let everything = common::run("examples/demo/fixed.toml", &["--seed", "3", "--dry-run"]);
    assert!(!everything.stdout.contains("hardened"), "{}", everything.stdout);
    assert!(everything.stdout.contains("cold-start"), "{}", everything.stdout);
    // A victim is named only where the disruption hits one replica; users, only where some
    // hand artifacts over it.
    let line = |name: &str| everything.stdout.lines().find(|l| l.trim_start().starts_with(&format!("experiment {name}"))).unwrap_or_default().to_owned();
    assert!(line("cold-start").starts_with("  experiment cold-start: "), "{}", everything.stdout);
    assert!(line("restart").starts_with("  experiment restart on r"), "{}", everything.stdout);
    assert!(line("sigterm").starts_with("  experiment sigterm on r") && !line("sigterm").contains("user(s)"), "{}", everything.stdout);
}

#[test]
fn store_experiments_alone_without_redis_are_refused_with_the_reason() {
    // Nothing of the selection can run: an error before anything starts, not a clean pass.
    let run = common::run("examples/demo/fixed.toml", &["--seed", "8", "--scenarios", "store-restart,store-outage"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("nothing selected can run against examples/demo/fixed.toml"), "{}", run.stderr);
    for name in ["store-restart", "store-outage"] {
        assert!(run.stderr.contains(&format!("{name}: the target declares no dependency")), "{}", run.stderr);
    }
    // Beside something that runs, they are skipped with the reason.
    let run = common::run("examples/demo/fixed.toml", &["--seed", "8", "--scenarios", "cache,store-restart"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let store = run.report().scenarios.iter().find(|s| s.name == "store-restart").unwrap();
    assert_eq!(store.status, ScenarioStatus::Skipped);
    assert!(store.reason.as_deref().unwrap().contains("no dependency"), "{store:?}");
}

#[test]
fn the_timeline_records_every_chaos_action_with_its_time() {
    let run = common::run("examples/demo/fixed-redis.toml", &["--seed", "9", "--scenarios", "kill,pause,store-restart"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let actions: Vec<String> = run
        .report()
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Chaos { event, .. } => {
                assert!(event.end_ms >= event.start_ms && event.start_ms > 0.0);
                Some(event.action.to_string())
            }
            _ => None,
        })
        .collect();
    for expected in ["SIGKILL to", "start of", "pause of", "resume of", "stop of redis", "start of redis"] {
        assert!(actions.iter().any(|a| a.starts_with(expected)), "{expected} not in {actions:?}");
    }
    // report.json reads back, chaos events included.
    let text = std::fs::read_to_string(run.report_dir.join("report.json")).unwrap();
    let _: replicheck::report::Report = serde_json::from_str(&text).unwrap();
}

/// A demo target whose replicas exit by themselves (status 1) once they have served two
/// pages, in every incarnation: whatever an experiment does, a replica goes under it.
fn crashing(target: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::root().join(target)).unwrap();
    let text = text.replace(r#""--replica", "{replica}","#, r#""--replica", "{replica}", "--quit-after", "r0,r1:2","#);
    assert!(text.contains("--quit-after"), "{target} names no --replica to add to");
    let path = dir.join("crashing.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every exit replicheck did not cause is told with the experiment it went in, makes that
/// experiment an error instead of a pass or a finding, and the run exits 3.
fn assert_every_experiment_met_an_exit(target: &str, experiments: &str) {
    let dir = tempfile::tempdir().unwrap();
    let target = crashing(target, dir.path());
    let run = common::run(target.to_str().unwrap(), &["--seed", "1", "--replicas", "2", "--scenarios", experiments]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    for experiment in experiments.split(',') {
        let result = report.scenarios.iter().find(|s| s.name == experiment).unwrap();
        assert_eq!(result.status, ScenarioStatus::Error, "{result:?}\n{}", run.stdout);
        let exits: Vec<_> = report.exits.iter().filter(|e| e.during.as_deref() == Some(experiment)).collect();
        assert!(!exits.is_empty(), "no exit told during {experiment}: {:?}", report.exits);
        for exit in &exits {
            assert!(exit.how.contains("exit status 1") && exit.how.contains("quitting by itself"), "{}", exit.how);
        }
        let reason = result.reason.clone().unwrap_or_default();
        assert!(exits.iter().any(|exit| reason.starts_with(&exit.summary())), "{result:?}");
        assert!(run.stdout.contains(&format!("during the {experiment} experiment")), "{}", run.stdout);
    }
}

#[test]
fn a_replica_that_exits_by_itself_during_any_experiment_is_told_and_spoils_it() {
    assert_every_experiment_met_an_exit("examples/demo/fixed.toml", "restart,kill,pause,rolling-restart,scale-out,sigterm,cold-start");
}

#[test]
fn a_replica_that_exits_by_itself_during_a_store_experiment_is_told_and_spoils_it() {
    assert_every_experiment_met_an_exit("examples/demo/fixed-redis.toml", "store-restart redis,store-outage redis");
}

#[test]
fn a_rolling_restart_without_looping_users_is_not_tested_and_fails_strict() {
    let run = common::run("examples/demo/fixed.toml", &["--seed", "1", "--scenarios", "rolling-restart,kill", "--load-vus", "0", "--strict"]);
    assert_eq!(run.code, 3, "--strict fails what did not run in full\n{}\n{}", run.stdout, run.stderr);
    let rolling = run.report().scenarios.iter().find(|s| s.name == "rolling-restart").unwrap();
    assert_eq!(rolling.status, ScenarioStatus::Skipped);
    assert!(rolling.reason.as_deref().unwrap_or_default().contains("--load-vus 0"), "{rolling:?}");
    assert!(run.stdout.contains("rolling-restart: skipped: --load-vus 0"), "{}", run.stdout);
}

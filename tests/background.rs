//! Background work across replicas, through the real binary: replicas deliver webhooks
//! and mail to the run's sink, and the scheduled-jobs and triggered-work experiments judge
//! them against one replica alone. The demo (webhooks, Redis) and a standard-library
//! Python app (SMTP, a shared directory) each in a misconfigured and a correct mode.

mod common;

use replicheck::check::ScenarioStatus;
use replicheck::check::finding::ControlResult;
use replicheck::report::Event;

const EXPERIMENTS: &str = "scheduled-jobs,triggered-work";

fn planted(run: &common::Finished, kinds: &[&str], context: &str) {
    assert_eq!(run.code, 1, "{context}: {}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), kinds, "{context}: {}", run.stdout);
    for finding in &run.report().findings {
        assert_eq!(finding.control.result, ControlResult::Passed, "{context}: {finding:?}");
        assert!(["alone", "without the termination", "undisturbed"].iter().any(|c| finding.control.detail.contains(c)), "{context}: {finding:?}");
        assert!(finding.reproduced, "{context}: {finding:?}");
        assert!(finding.reproduce.contains(&format!("--scenarios {}", finding.check)), "{context}: {}", finding.reproduce);
    }
}

fn consistent(run: &common::Finished, context: &str) {
    assert_eq!(run.code, 0, "{context}: {}\n{}", run.stdout, run.stderr);
    for experiment in ["scheduled-jobs", "triggered-work"] {
        let result = run.report().scenarios.iter().find(|s| s.name == experiment).expect("the experiment ran");
        assert_eq!(result.status, ScenarioStatus::Passed, "{context}: {result:?}");
    }
}

#[test]
fn the_demos_misconfigured_background_work_shows_its_three_kinds() {
    for (seed, replicas) in [("1", "2"), ("2", "3")] {
        let run = common::run("examples/demo/broken-jobs.toml", &["--seed", seed, "--replicas", replicas, "--scenarios", EXPERIMENTS]);
        let context = format!("seed {seed}, {replicas} replicas");
        planted(&run, &["job-runs-on-every-replica", "side-effect-duplicated", "work-lost-at-shutdown"], &context);
        let report = run.report();
        let job = report.findings.iter().find(|f| f.kind.id() == "job-runs-on-every-replica").unwrap();
        assert_ne!(job.producer.id, job.consumer.id, "two replicas delivered one occurrence: {job:?}");
        assert!(job.observed.reason.contains("(JSON /slot) was delivered"), "{}", job.observed.reason);
        let lost = report.findings.iter().find(|f| f.kind.id() == "work-lost-at-shutdown").unwrap();
        assert!(lost.after.as_ref().is_some_and(|a| a.action.starts_with("SIGTERM to")), "{lost:?}");
        assert!(lost.notes.iter().any(|n| n.starts_with("judged under deregistration")), "{lost:?}");
        // The receipt is a long job with a start marker: SIGTERM waited for one to begin.
        assert!(lost.observed.reason.contains("its start marker came from") && lost.observed.reason.contains("of them begun and abandoned half-way"), "{}", lost.observed.reason);
        // Deliveries are on the timeline, each on the lane of the replica that sent it.
        let delivered = report.events.iter().filter(|e| matches!(e, Event::Delivery { what, .. } if what == "POST /receipts")).count();
        assert!(delivered > 0, "{context}: no receipt among the events");
        let html = std::fs::read_to_string(run.report_dir.join("report.html")).unwrap();
        assert!(html.contains(r#"<path class="delivery""#) && html.contains("delivered POST /receipts (triggered-work)"), "{context}");
        // Each trigger finding outlines the request that sent the trigger.
        for finding in report.findings.iter().filter(|f| f.check == "triggered-work") {
            assert!(html.contains(&format!("<title>{}: vu {} on ", finding.id, finding.vu.unwrap())), "{context}: {} is not outlined", finding.id);
        }
        let causes: Vec<&str> = report.diagnoses.iter().map(|d| d.cause.id()).collect();
        assert_eq!(causes, ["scheduled-job-per-replica", "unclaimed-outbox", "in-process-queue"], "{context}");
    }
}

#[test]
fn the_demos_background_work_configured_correctly_finds_nothing() {
    for (seed, replicas) in [("1", "2"), ("2", "3")] {
        let run = common::run("examples/demo/fixed-jobs.toml", &["--seed", seed, "--replicas", replicas, "--scenarios", EXPERIMENTS]);
        consistent(&run, &format!("seed {seed}, {replicas} replicas"));
    }
}

#[test]
fn an_app_that_mails_every_digest_from_every_replica_and_an_outbox_from_each_is_found_over_smtp() {
    let run = common::run("tests/apps/mailer/broken.toml", &["--seed", "3", "--scenarios", EXPERIMENTS]);
    planted(&run, &["job-runs-on-every-replica", "side-effect-duplicated"], "mailer");
    let report = run.report();
    let digest = report.findings.iter().find(|f| f.step == "digest").unwrap();
    assert!(digest.notes.iter().any(|n| n.contains("mail whose subject matches `^Daily digest`")), "{digest:?}");
    // The app logs in to send; its password never reaches the report.
    let json = std::fs::read_to_string(run.report_dir.join("report.json")).unwrap();
    assert!(!json.contains("mail-password"));
}

#[test]
fn the_app_that_locks_its_digest_and_claims_its_outbox_finds_nothing() {
    let run = common::run("tests/apps/mailer/fixed.toml", &["--seed", "3", "--replicas", "3", "--scenarios", EXPERIMENTS]);
    consistent(&run, "mailer, 3 replicas");
}

#[test]
fn background_work_is_not_watched_without_flows_and_says_why_when_named() {
    let run = common::run("examples/demo/fixed.toml", &["--seed", "1", "--scenarios", "login,scheduled-jobs"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let scheduled = run.report().scenarios.iter().find(|s| s.name == "scheduled-jobs").expect("named, it is in the roster");
    assert_eq!(scheduled.status, ScenarioStatus::Skipped);
    assert_eq!(scheduled.reason.as_deref(), Some("the target declares no [scheduled.NAME] job to watch for"));
    // Unnamed, they are in the plan of a target with flows only.
    let plan = |target: &str| {
        let output = common::command(&common::tag("background-plan"), &["run", target, "--seed", "1", "--dry-run"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(!plan("examples/demo/fixed.toml").contains("scheduled-jobs"));
    let with_flows = plan("examples/demo/fixed-jobs.toml");
    assert!(with_flows.contains("experiment scheduled-jobs") && with_flows.contains("experiment triggered-work"), "{with_flows}");
}

/// `replicheck replay REPORT --finding ID`, waited for: its exit status and its output.
fn replay(report: &common::Finished, finding: &str) -> (i32, String) {
    let tag = common::tag("replay");
    let dir = tempfile::tempdir().unwrap();
    let recorded = report.report_dir.join("report.json");
    let args = ["replay", recorded.to_str().unwrap(), "--finding", finding, "--report-dir", dir.path().to_str().unwrap()];
    let output = common::command(&tag, &args).output().unwrap();
    common::assert_no_leftovers(&tag);
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn exploration_draws_triggers_and_work_lost_at_a_restart_replays_from_its_report() {
    // u0's order is accepted by r1, which is then terminated and replaced while u1 goes on.
    let schedule = "u0:triggered:receipt/0@r1 u1:session/0@r0 restart:r1 u1:session/1@r1";
    let explore = |target: &str| {
        let dir = tempfile::tempdir().unwrap();
        let report_dir = dir.path().join("report");
        let tag = common::tag("explore");
        let args = ["explore", target, "--replicas", "2", "--seed", "5", "--schedule", schedule, "--report-dir", report_dir.to_str().unwrap()];
        let output = common::command(&tag, &args).output().unwrap();
        common::assert_no_leftovers(&tag);
        common::finish(output, dir, report_dir)
    };
    let broken = explore("examples/demo/broken-jobs.toml");
    assert_eq!((broken.code, broken.kinds()), (1, vec!["work-lost-at-shutdown".to_owned()]), "{}", broken.stdout);
    let lost = &broken.report().findings[0];
    assert_eq!((lost.scenario.as_str(), lost.producer.id.0), ("triggered:receipt", 1), "{lost:?}");
    assert_eq!(lost.control.result, ControlResult::Passed, "{lost:?}");
    assert!(lost.control.detail.contains("without its disruptions"), "{lost:?}");
    assert!(lost.observed.reason.contains("after restart:r1, no replica delivered it"), "{}", lost.observed.reason);
    let (code, stdout) = replay(&broken, &lost.id);
    assert!(code == 1 && stdout.contains(": reproduced"), "{stdout}");

    let fixed = explore("examples/demo/fixed-jobs.toml");
    assert_eq!(fixed.code, 0, "{}", fixed.stdout);

    // A run's finding replays from its report too: the experiment, from the seed.
    let run = common::run("examples/demo/broken-jobs.toml", &["--seed", "3", "--scenarios", "triggered-work"]);
    let lost = run.report().findings.iter().find(|f| f.kind.id() == "work-lost-at-shutdown").expect("work lost at SIGTERM");
    let (code, stdout) = replay(&run, &lost.id);
    assert!(code == 1 && stdout.contains(": reproduced"), "{stdout}");
}

/// The demo's leased digest made long (1.5s, begun with a start marker), its runs in hand
/// finished at SIGTERM or abandoned as the process exits.
fn long_digest(dir: &std::path::Path, abandoned: bool) -> std::path::PathBuf {
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed-jobs.toml")).unwrap();
    let flags = if abandoned { r#""--digest-ms", "1500", "--digest-abandon", "--digest-lease""# } else { r#""--digest-ms", "1500", "--digest-lease""# };
    let text = fixed
        .replace(r#""--digest-lease""#, flags)
        .replace("occurrence = { json = \"/slot\" }\n", "occurrence = { json = \"/slot\" }\nstarted = { path = \"/digest-begun\" }\n");
    assert!(text.contains("--digest-ms") && text.contains("digest-begun"), "fixed-jobs.toml changed shape");
    common::write(dir, if abandoned { "abandoned.toml" } else { "finished.toml" }, &text)
}

#[test]
fn a_long_scheduled_run_abandoned_at_sigterm_is_lost_and_one_finished_first_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let abandoned = long_digest(dir.path(), true);
    let run = common::run(abandoned.to_str().unwrap(), &["--seed", "4", "--scenarios", "scheduled-jobs"]);
    planted(&run, &["work-lost-at-shutdown"], "digest abandoned");
    let lost = &run.report().findings[0];
    assert_eq!(lost.producer, lost.consumer, "{lost:?}");
    assert!(lost.observed.reason.contains("(its start marker), got SIGTERM at") && lost.observed.reason.contains("no replica had finished it"), "{}", lost.observed.reason);
    assert!(lost.control.detail.contains("undisturbed, each of"), "{lost:?}");
    let causes: Vec<&str> = run.report().diagnoses.iter().map(|d| d.cause.id()).collect();
    assert_eq!(causes, ["job-abandoned-at-shutdown"]);

    let finished = long_digest(dir.path(), false);
    let run = common::run(finished.to_str().unwrap(), &["--seed", "4", "--scenarios", "scheduled-jobs"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

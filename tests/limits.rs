//! Rate limits and uploads across replicas, through the real binary: the demo's limit on
//! password-reset requests counted in each process and keyed on the proxy, or in the shared
//! store and keyed on the client (believed from the proxy only, or from anyone); its uploads
//! on each replica's disk or in a shared directory.

mod common;

use replicheck::check::ScenarioStatus;
use replicheck::check::finding::ControlResult;

#[test]
fn a_limit_counted_per_process_on_the_proxys_address_and_uploads_on_each_replicas_disk_are_found() {
    for (seed, replicas) in [("1", "2"), ("2", "3")] {
        let context = format!("seed {seed}, {replicas} replicas");
        let run = common::run("examples/demo/broken-limits.toml", &["--seed", seed, "--replicas", replicas, "--scenarios", "upload", "limits"]);
        assert_eq!(run.code, 1, "{context}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), ["limit-per-replica", "limit-reset-by-restart", "limit-shared-by-all-clients", "upload-not-shared"], "{context}: {}", run.stdout);
        let report = run.report();
        for finding in &report.findings {
            assert_eq!(finding.control.result, ControlResult::Passed, "{context}: {finding:?}");
            assert!(finding.reproduced, "{context}: {finding:?}");
            match finding.kind.id() {
                "limit-per-replica" => {
                    assert_ne!(finding.producer.id, finding.consumer.id, "{context}: {finding:?}");
                    assert!(finding.control.detail.contains("went on refusing the client"), "{context}: {finding:?}");
                }
                "limit-reset-by-restart" => {
                    assert_eq!(finding.producer.id, finding.consumer.id, "{context}: {finding:?}");
                    assert!(finding.consumer.generation > finding.producer.generation, "{context}: {finding:?}");
                    assert!(finding.after.as_ref().is_some_and(|a| a.action.starts_with("start of")), "{context}: {finding:?}");
                    assert!(finding.control.detail.contains("did not restart, refused it before and after"), "{context}: {finding:?}");
                }
                "limit-shared-by-all-clients" => assert!(finding.observed.reason.contains("right after client"), "{context}: {finding:?}"),
                _ => assert_eq!(finding.artifact.kind, "upload", "{context}: {finding:?}"),
            }
        }
        let mut causes: Vec<&str> = report.diagnoses.iter().map(|d| d.cause.id()).collect();
        causes.sort();
        assert_eq!(causes, ["limit-keyed-on-proxy", "limit-per-process", "uploads-on-local-disk"], "{context}");
        // Every try is an event, as the users' requests are; the try each finding names is
        // outlined on the timeline.
        let tries = report.events.iter().filter(|e| matches!(e, replicheck::report::json::Event::Request { scenario, .. } if scenario == "limit:resets")).count();
        assert!(tries >= 20, "{context}: {tries} tries among the events");
        let html = std::fs::read_to_string(run.report_dir.join("report.html")).unwrap();
        for finding in report.findings.iter().filter(|f| f.check == "limits") {
            let title = format!("<title>{}: vu {}", finding.id, finding.vu.expect("the try's user"));
            assert!(html.contains(&title), "{context}: {title} is not on the timeline");
        }
    }
}

#[test]
fn a_limit_shared_by_every_replica_and_keyed_on_the_forwarded_client_finds_nothing() {
    for (seed, replicas) in [("1", "2"), ("2", "3")] {
        let run = common::run("examples/demo/fixed-limits.toml", &["--seed", seed, "--replicas", replicas, "--scenarios", "upload", "limits"]);
        assert_eq!(run.code, 0, "seed {seed}, {replicas} replicas: {}\n{}", run.stdout, run.stderr);
        let result = run.report().scenarios.iter().find(|s| s.name == "limits").expect("the experiment ran");
        assert_eq!(result.status, ScenarioStatus::Passed, "{result:?}");
    }
}

#[test]
fn a_limit_keyed_on_a_forged_x_forwarded_for_lets_a_stranger_escape_it() {
    let run = common::run("examples/demo/broken-limits-spoofable.toml", &["--seed", "3", "--replicas", "2", "--scenarios", "limits"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["limit-spoofable"], "{}", run.stdout);
    let finding = &run.report().findings[0];
    assert!(finding.observed.reason.contains("from 127.0.0.2") && finding.observed.reason.contains("X-Forwarded-For: 203.0.113."), "{finding:?}");
    assert!(finding.control.detail.contains("with no forged header, the same stranger was refused"), "{finding:?}");
    let causes: Vec<&str> = run.report().diagnoses.iter().map(|d| d.cause.id()).collect();
    assert_eq!(causes, ["limit-key-forgeable"]);
}

#[test]
fn a_limit_that_never_answers_as_the_target_says_is_baseline_failed_with_what_came_back() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed-limits.toml")).unwrap();
    let text = fixed.replace("window = \"1m\"", "window = \"1m\"\nlimited = { status = 418 }");
    assert_ne!(text, fixed);
    let target = common::write(dir.path(), "teapot.toml", &text);
    let run = common::run(target.to_str().unwrap(), &["--seed", "1", "--scenarios", "limits"]);
    assert_ne!(run.code, 1, "{}", run.stdout);
    let result = run.report().scenarios.iter().find(|s| s.name == "limits").expect("the experiment ran");
    assert_eq!(result.status, ScenarioStatus::BaselineFailed, "{result:?}");
    let reason = result.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("never answered as a limited try looks (status 418)") && reason.contains("202 ×5, 429 ×1"), "{reason}");
}

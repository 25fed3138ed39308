//! The telemetry inspection against real replicas exporting with a real OpenTelemetry SDK
//! (the demo's, in Rust) to the run's OTLP receiver: what a misconfigured app reports is
//! found attribute by attribute, a correctly configured one passes, and an app that
//! exports nothing is told as such, never as a finding.

mod common;

use replicheck::check::ScenarioStatus;
use replicheck::check::finding::FindingKind;

fn telemetry_result(run: &common::Finished) -> &replicheck::check::ScenarioResult {
    let report = run.report();
    report.scenarios.iter().find(|s| s.name == "telemetry").unwrap_or_else(|| panic!("no telemetry result:\n{}", run.stdout))
}

#[test]
fn a_name_and_an_instance_id_fixed_in_code_and_a_dropped_traceparent_are_each_found_over_five_seeds() {
    for seed in 1..=5u16 {
        let replicas = (2 + seed % 2).to_string();
        let run = common::run("examples/demo/broken-telemetry.toml", &["--seed", &seed.to_string(), "--replicas", &replicas, "--scenarios", "login,telemetry"]);
        assert_eq!(run.code, 1, "seed {seed}:\n{}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), ["telemetry-unattributed"], "seed {seed}:\n{}", run.stdout);
        let report = run.report();
        let mut steps: Vec<&str> = report.findings.iter().map(|f| f.step.as_str()).collect();
        steps.sort();
        assert_eq!(steps, ["service.instance.id", "service.name", "traceparent"], "seed {seed}:\n{}", run.stdout);
        for finding in &report.findings {
            assert!(finding.reproduced, "{finding:?}");
        }
        let by_step = |step: &str| report.findings.iter().find(|f| f.step == step).expect("found");
        assert!(by_step("service.name").observed.reason.contains("\"demo-r0\""), "{:?}", by_step("service.name"));
        assert!(by_step("service.instance.id").observed.reason.contains("\"demo-1\""), "{:?}", by_step("service.instance.id"));
        assert!(by_step("traceparent").observed.reason.contains("which it started itself"), "{:?}", by_step("traceparent"));
        let causes: Vec<String> = report.diagnoses.iter().map(|d| d.cause.to_string()).collect();
        assert!(causes.contains(&"telemetry-resource".to_owned()) && causes.contains(&"trace-context-dropped".to_owned()), "{causes:?}");
        // The other flows of the same app are correct: only telemetry is found.
        assert!(report.findings.iter().all(|f| f.kind == FindingKind::TelemetryUnattributed));
    }
}

#[test]
fn the_configured_demo_reports_one_service_each_instance_apart_and_continues_traces_over_five_seeds() {
    for seed in 1..=5u16 {
        let replicas = (2 + seed % 2).to_string();
        let run = common::run("examples/demo/fixed.toml", &["--seed", &seed.to_string(), "--replicas", &replicas, "--scenarios", "login,session,telemetry"]);
        assert_eq!(run.code, 0, "seed {seed}:\n{}\n{}", run.stdout, run.stderr);
        let telemetry = telemetry_result(&run);
        assert_eq!(telemetry.status, ScenarioStatus::Passed, "{telemetry:?}");
        // Every replica's spans of the traced requests arrived: nothing went unasked.
        assert!(telemetry.notes.iter().all(|n| !n.contains("was not asked")), "{telemetry:?}");
    }
}

#[test]
fn an_app_that_exports_nothing_fails_the_control_and_is_no_finding() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed.toml")).unwrap();
    // The same demo without `--telemetry`: it never exports, whatever it is given.
    let silent = fixed.replace("\"--telemetry\",", "").replace("service_name = \"demo\"", "service_name = \"demo\"\nwait = \"2s\"");
    let target = common::write(dir.path(), "silent.toml", &silent);
    let run = common::run(target.to_str().unwrap(), &["--seed", "1", "--scenarios", "telemetry"]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    assert!(run.report().findings.is_empty());
    let telemetry = telemetry_result(&run);
    assert_eq!(telemetry.status, ScenarioStatus::BaselineFailed, "{telemetry:?}");
    let reason = telemetry.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("no replica sent OTLP/HTTP telemetry") && reason.contains("/r0"), "{reason}");
}

#[test]
fn a_target_that_declares_no_telemetry_skips_the_inspection_with_the_reason() {
    let run = common::run("examples/demo/broken.toml", &["--seed", "1", "--scenarios", "login,telemetry"]);
    let telemetry = telemetry_result(&run);
    assert_eq!(telemetry.status, ScenarioStatus::Skipped);
    assert!(telemetry.reason.as_deref().unwrap_or_default().contains("declares no [telemetry]"), "{telemetry:?}");
}

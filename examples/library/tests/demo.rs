//! replicheck in `cargo test`: the demo service, started as this crate's binary on two
//! replicas, misconfigured (each process with its own keys) and then configured
//! correctly (one shared key ring and store). Only replicheck's public API is used.

mod common;

use replicheck::file::SourceFile;
use replicheck::progress::Silent;
use replicheck::report::Report;
use replicheck::run::{self, ReportDir, RunConfig};
use replicheck::target::Target;
use replicheck::verdict::Verdict;

/// The demo as a target, with the flags that (mis)configure its keys and store.
fn target(keys_and_store: &str) -> Target {
    let text = format!(
        r#"
        name = "demo"
        [start]
        command = "{binary}"
        args = ["--listen", "{{host}}:{{port}}", "--replica", "{{replica}}", {keys_and_store}]
        {flows}"#,
        binary = env!("CARGO_BIN_EXE_demo-service"),
        flows = common::HEALTH_AND_LOGIN,
    );
    Target::from_source(&SourceFile::from_text("demo.toml", text)).expect("the target is valid")
}

async fn login_run(target: Target, reports: &std::path::Path) -> Report {
    let config = RunConfig::new(target).seed(3).report_dir(ReportDir::Under(reports.to_owned()));
    let outcome = run::run(config.select(&["login"]).expect("a built-in scenario"), &Silent).await.expect("the run runs");
    outcome.write_report().expect("the report is written");
    outcome.report
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_per_process_reject_each_others_login_cookie() {
    let reports = tempfile::tempdir().unwrap();
    let report = login_run(target(r#""--keys", "memory", "--store", "memory""#), reports.path()).await;
    assert_eq!(report.verdict(), Verdict::Findings);
    assert!(!report.findings.is_empty());
    for finding in &report.findings {
        assert_eq!(finding.kind.to_string(), "auth-cookie-rejected");
        assert_ne!(finding.producer, finding.consumer, "one replica issued the cookie, another rejected it");
        assert!(finding.reproduced, "the control run saw it again");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_key_ring_and_store_pass() {
    let reports = tempfile::tempdir().unwrap();
    let shared = r#""--keys", "{shared_dir}/keys", "--store", "sqlite:{shared_dir}/store.db""#;
    login_run(target(shared), reports.path()).await.assert_consistent();
}

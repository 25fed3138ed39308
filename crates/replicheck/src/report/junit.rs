//! `junit.xml`: one test suite per scenario, inspection and experiment, one test case per
//! kind it checks, and one failing test case per finding, so CI test tabs count findings;
//! the failure message names the finding's probable cause. A finding the team's policy
//! accepts is a skipped test case, with the reason.
//! Written with quick-junit, which CI consumers read.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report as JUnit, TestCase, TestCaseStatus, TestSuite};

use super::Report;
use crate::check::ScenarioStatus;
use crate::check::finding::Finding;
use crate::diagnose;

pub const FILE_NAME: &str = "junit.xml";

pub fn render(report: &Report) -> Result<String, quick_junit::SerializeError> {
    let mut junit = JUnit::new(format!("replicheck {}", report.target));
    junit.set_time(Duration::from_millis(report.duration_ms));
    for scenario in &report.scenarios {
        let mut suite = TestSuite::new(scenario.name.as_str());
        let findings: Vec<&Finding> = report.findings.iter().filter(|f| f.check == scenario.name).collect();
        match scenario.status {
            ScenarioStatus::Skipped => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(scenario.reason.clone().unwrap_or_default());
                suite.add_test_case(TestCase::new(scenario.name.as_str(), status));
            }
            ScenarioStatus::Error | ScenarioStatus::BaselineFailed => {
                // It could not say anything about its checks: one error, not a failure.
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status
                    .set_type(if scenario.status == ScenarioStatus::Error { "error" } else { "baseline-failed" })
                    .set_message(scenario.reason.clone().unwrap_or_default());
                suite.add_test_case(TestCase::new(scenario.name.as_str(), status));
            }
            ScenarioStatus::Passed | ScenarioStatus::Failed => {
                for untested in &scenario.untested {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(format!("not exercised: {}", untested.reason));
                    suite.add_test_case(TestCase::new(untested.kind.id(), status));
                }
                for kind in &scenario.checks {
                    let of_kind: Vec<&&Finding> = findings.iter().filter(|f| f.kind == *kind).collect();
                    if of_kind.is_empty() {
                        suite.add_test_case(TestCase::new(kind.id(), TestCaseStatus::success()));
                    }
                    for finding in of_kind {
                        suite.add_test_case(failing(report, finding));
                    }
                }
            }
        }
        junit.add_test_suite(suite);
    }
    // A run that stopped early, never started or lost a replica says so as an error of its own, so a CI
    // tab never shows the rest as a clean pass.
    let incidents = report.interrupted.iter().map(|i| ("incomplete", i.to_string()));
    let incidents = incidents.chain(report.error.iter().map(|e| ("not-started", e.clone())));
    let incidents = incidents.chain(report.exits.iter().map(|e| ("replica-exited", e.summary())));
    let incidents: Vec<(&str, String)> = incidents.collect();
    if !incidents.is_empty() {
        let mut suite = TestSuite::new("run");
        for (kind, message) in incidents {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_type(kind).set_message(message);
            suite.add_test_case(TestCase::new(kind, status));
        }
        junit.add_test_suite(suite);
    }
    junit.to_string()
}

fn failing(report: &Report, finding: &Finding) -> TestCase {
    let diagnosis = diagnose::of(&report.diagnoses, finding);
    let message = match diagnosis {
        Some(d) => format!("{} [{} {}: {}]", message(finding), d.id, d.cause, d.title),
        None => message(finding),
    };
    let mut description = description(finding);
    if let Some(d) = diagnosis {
        description.push_str(&format!("cause:    {} {} ({} confidence): {}\nremedy:   {}\n", d.id, d.cause, d.confidence.name(), d.why, d.remedy));
    }
    let mut status = match &finding.accepted {
        Some(accepted) => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(format!("accepted by rule {} of the policy ({}): {message}", accepted.rule, accepted.reason));
            status
        }
        None => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(message);
            status
        }
    };
    status.set_type(finding.kind.id()).set_description(description);
    let mut case = TestCase::new(format!("{} {} ({} / {})", finding.id, finding.kind, finding.scenario, finding.step), status);
    case.set_classname(finding.check.as_str());
    case
}

/// One line: what, where, and between which replicas.
fn message(finding: &Finding) -> String {
    let replicas = if finding.producer == finding.consumer {
        format!("on {}", finding.producer)
    } else {
        format!("{} -> {}", finding.producer, finding.consumer)
    };
    format!("{}: {} / {}, {replicas}: {}", finding.kind, finding.scenario, finding.step, finding.observed)
}

/// The evidence, as the terminal shows it.
fn description(finding: &Finding) -> String {
    let mut text = format!("expected: {}\nobserved: {}\n", finding.expected, finding.observed);
    if let Some(after) = &finding.after {
        text.push_str(&format!("after:    {} at {:.2}s ({})\n", after.action, after.at_ms / 1000.0, after.experiment));
    }
    text.push_str(&format!("control:  {}\n", finding.control.detail));
    for note in &finding.notes {
        text.push_str(&format!("note:     {note}\n"));
    }
    text.push_str(&format!("reproduce: {}\n", finding.reproduce));
    text
}

pub fn write(report: &Report, dir: &Path) -> std::io::Result<()> {
    let xml = render(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(FILE_NAME), xml)
}

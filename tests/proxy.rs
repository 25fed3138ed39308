//! Forwarded headers and signing keys against the demo: each misconfiguration shows its
//! kinds with control evidence, and the configured demo shows none over five seeds.

mod common;

use replicheck::check::finding::ControlResult;

const CHECKS: &str = "login,token,forwarded-headers,signing-keys";

fn kinds_of(target: &str, seed: &str) -> Vec<String> {
    let run = common::run(target, &["--seed", seed, "--scenarios", CHECKS]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    for finding in &run.report().findings {
        assert_eq!(finding.control.result, ControlResult::Passed);
        assert!(finding.reproduced);
    }
    run.kinds()
}

#[test]
fn an_app_that_ignores_forwarded_headers_sees_http_and_the_proxy() {
    assert_eq!(kinds_of("examples/demo/broken-proxy.toml", "1"), ["forwarded-for-ignored", "forwarded-proto-ignored"]);
}

#[test]
fn an_ignored_forwarded_proto_shows_in_redirects_without_an_echo() {
    let demo = std::fs::read_to_string(common::root().join("examples/demo/broken-proxy.toml")).unwrap();
    let without_echo: String = demo.split("\n[echo]").next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let target = common::write(dir.path(), "no-echo.toml", &without_echo);
    let run = common::run(target.to_str().unwrap(), &["--seed", "2", "--scenarios", "login,forwarded-headers"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let finding = &run.report().findings[0];
    assert_eq!(finding.kind.to_string(), "forwarded-proto-ignored");
    assert!(finding.observed.location.as_deref().unwrap().starts_with("http://"), "{finding:?}");
}

#[test]
fn an_app_that_believes_anyone_can_be_spoofed() {
    assert_eq!(kinds_of("examples/demo/broken-proxy-spoofable.toml", "3"), ["forwarded-headers-spoofable"]);
}

#[test]
fn keys_made_per_process_diverge_in_the_key_set_and_reject_tokens() {
    let run = common::run("examples/demo/broken.toml", &["--seed", "4", "--scenarios", "token,signing-keys"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let sources: Vec<(&str, &str)> =
        run.report().findings.iter().map(|f| (f.kind.id(), f.scenario.as_str())).collect();
    // Both ways: the published key sets differ, and a token from one replica fails on another.
    assert!(sources.contains(&("signing-keys-divergent", "signing-keys")), "{sources:?}");
    assert!(sources.contains(&("signing-keys-divergent", "token")), "{sources:?}");
}

#[test]
fn the_configured_demo_shows_no_proxy_or_key_finding_over_five_seeds() {
    for seed in 1..=5 {
        let run = common::run("examples/demo/fixed.toml", &["--seed", &seed.to_string(), "--scenarios", CHECKS]);
        assert_eq!(run.code, 0, "seed {seed}: {}", run.stdout);
    }
}

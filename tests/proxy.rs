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

/// The misconfigured demo with a CSRF origin check: it believes http behind the proxy, so
/// it refuses every browser's post, on one replica as on two.
fn believing_http(without_echo: bool) -> String {
    let demo = std::fs::read_to_string(common::root().join("examples/demo/broken.toml")).unwrap();
    let text = demo.replace(r#""--forwarded", "ignore","#, r#""--forwarded", "ignore", "--check-origin","#);
    assert_ne!(text, demo);
    if !without_echo {
        return text;
    }
    let start = text.find("\n[echo]").unwrap();
    let end = start + 1 + text[start + 1..].find("\n[").unwrap();
    format!("{}{}", &text[..start], &text[end..])
}

#[test]
fn an_app_that_believes_http_refuses_browsers_posts_and_its_other_faults_are_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let target = common::write(dir.path(), "believes-http.toml", &believing_http(false));
    let run = common::run(target.to_str().unwrap(), &["--seed", "5", "--scenarios", "login,antiforgery,session,cache,forwarded-headers,restart"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let kinds = run.kinds();
    for kind in ["antiforgery-rejected", "artifact-lost-after-restart", "auth-cookie-rejected", "cache-divergent", "forwarded-proto-ignored", "session-lost"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} not in {kinds:?}\n{}", run.stdout);
    }
    let report = run.report();
    for name in ["login", "antiforgery", "session", "cache", "restart"] {
        let result = report.scenarios.iter().find(|s| s.name == name).unwrap();
        assert!(result.notes.iter().any(|n| n.contains("the origin the app believes")), "{result:?}");
    }
    let cookie = report.findings.iter().find(|f| f.kind.id() == "auth-cookie-rejected").unwrap();
    assert!(cookie.notes.iter().any(|n| n.contains("posted with Origin and Referer http://")), "{cookie:?}");
    assert!(run.stdout.contains("as browsers: "), "{}", run.stdout);
}

#[test]
fn without_an_echo_endpoint_the_origin_trial_is_the_evidence_that_the_app_believes_http() {
    let dir = tempfile::tempdir().unwrap();
    let text = believing_http(true);
    assert!(!text.contains("[echo]") && text.contains("[token]"), "{text}");
    let target = common::write(dir.path(), "believes-http-no-echo.toml", &text);
    let run = common::run(target.to_str().unwrap(), &["--seed", "6", "--scenarios", "login,antiforgery"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["antiforgery-rejected", "auth-cookie-rejected", "forwarded-proto-ignored"]);
    let proto = run.report().findings.iter().find(|f| f.kind.id() == "forwarded-proto-ignored").unwrap();
    assert_eq!(proto.observed.status, Some(403));
    assert!(proto.control.detail.contains("posting with Origin http://"), "{proto:?}");
}

//! Live updates across replicas, through the real binary: subscribers hold WebSockets and
//! event streams through the balancer on each replica while messages are published through
//! their own replica (the control) and another. The demo's hub kept in each process, and
//! relayed through Redis pub/sub.

mod common;

use replicheck::check::ScenarioStatus;
use replicheck::check::finding::ControlResult;

#[test]
fn a_hub_kept_in_each_process_is_found_for_websocket_and_event_stream_subscribers() {
    for (seed, replicas) in [("1", "2"), ("2", "3")] {
        let context = format!("seed {seed}, {replicas} replicas");
        let run = common::run("examples/demo/broken-realtime.toml", &["--seed", seed, "--replicas", replicas, "--scenarios", "broadcast"]);
        assert_eq!(run.code, 1, "{context}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), ["broadcast-not-shared"], "{context}: {}", run.stdout);
        let report = run.report();
        let mut flows: Vec<&str> = Vec::new();
        for finding in &report.findings {
            assert_eq!(finding.control.result, ControlResult::Passed, "{context}: {finding:?}");
            assert!(finding.reproduced, "{context}: {finding:?}");
            assert_ne!(finding.producer.id, finding.consumer.id, "{context}: published and subscribed on one replica: {finding:?}");
            assert!(finding.control.detail.contains("itself, reached the same subscriber"), "{context}: {finding:?}");
            flows.push(&finding.step);
            flows.extend(finding.observations.iter().map(|o| o.step.as_str()));
        }
        flows.sort();
        flows.dedup();
        // WebSocket subscribers, published by request and on a socket, and event streams.
        assert_eq!(flows, ["chat", "events", "socket"], "{context}");
        let causes: Vec<&str> = report.diagnoses.iter().map(|d| d.cause.id()).collect();
        assert_eq!(causes, ["broadcast-per-process"], "{context}");
        // The timeline outlines the request that published what never arrived.
        let html = std::fs::read_to_string(run.report_dir.join("report.html")).unwrap();
        assert!(html.contains("<title>F1: vu "), "{context}: F1's publishing request is not outlined");
        // Every subscriber's connection is an event, drawn on its replica's lane.
        let connections = report.events.iter().filter(|e| matches!(e, replicheck::report::json::Event::Connection { .. })).count();
        assert!(connections >= 3 * replicas.parse::<usize>().unwrap(), "{context}: {connections} connections");
        assert!(html.contains(r#"<line class="connection""#) && html.contains("WebSocket /hub/ws on r0 (broadcast)"), "{context}");
    }
}

#[test]
fn a_hub_relayed_through_redis_finds_nothing() {
    for (seed, replicas) in [("1", "2"), ("2", "3")] {
        let run = common::run("examples/demo/fixed-realtime.toml", &["--seed", seed, "--replicas", replicas, "--scenarios", "broadcast"]);
        assert_eq!(run.code, 0, "seed {seed}, {replicas} replicas: {}\n{}", run.stdout, run.stderr);
        let result = run.report().scenarios.iter().find(|s| s.name == "broadcast").expect("the experiment ran");
        assert_eq!(result.status, ScenarioStatus::Passed, "{result:?}");
    }
}

#[test]
fn a_subscription_the_app_does_not_serve_is_said_so_and_judges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed-realtime.toml")).unwrap();
    let text = fixed.replace("subscribe = { sse = \"/hub/events\" }", "subscribe = { sse = \"/hub/nowhere\" }");
    let target = common::write(dir.path(), "nowhere.toml", &text);
    let run = common::run(target.to_str().unwrap(), &["--seed", "1", "--scenarios", "broadcast"]);
    assert_ne!(run.code, 1, "{}", run.stdout);
    let result = run.report().scenarios.iter().find(|s| s.name == "broadcast").expect("the experiment ran");
    assert_eq!(result.status, ScenarioStatus::BaselineFailed, "{result:?}");
    let reason = result.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("a subscriber of `events` on r0 did not open: /hub/nowhere: answered 404"), "{reason}");
}

#[test]
fn a_polling_transport_that_keeps_its_session_on_one_replica_needs_affinity_unless_routing_is_sticky() {
    for (seed, replicas) in [("1", "2"), ("2", "3")] {
        let context = format!("seed {seed}, {replicas} replicas");
        let run = common::run("examples/demo/broken-realtime.toml", &["--seed", seed, "--replicas", replicas, "--scenarios", "affinity"]);
        assert_eq!(run.code, 1, "{context}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), ["affinity-required"], "{context}: {}", run.stdout);
        let report = run.report();
        for finding in &report.findings {
            assert_ne!(finding.producer.id, finding.consumer.id, "{context}: {finding:?}");
            assert_eq!(finding.control.result, ControlResult::Passed, "{context}: {finding:?}");
            assert!(finding.control.detail.contains(&format!("every one on {}", finding.producer.id)), "{context}: {finding:?}");
            assert_eq!(finding.observed.status, Some(400), "{context}: {finding:?}");
        }
        let causes: Vec<&str> = report.diagnoses.iter().map(|d| d.cause.id()).collect();
        assert_eq!(causes, ["transport-needs-affinity"], "{context}");
        assert!(run.stdout.contains("a deployment requirement (sticky routing, or WebSockets only)"), "{context}: {}", run.stdout);
        // The session id is a secret wherever it travels, the URL included.
        let json = std::fs::read_to_string(run.report_dir.join("report.json")).unwrap();
        let polls: Vec<&str> = json.match_indices("poll?sid=").map(|(at, _)| &json[at + 9..at + 19]).collect();
        assert!(!polls.is_empty() && polls.iter().all(|sid| *sid == "[redacted]"), "{context}: {polls:?}");
    }
    // Behind sticky routing the transport gets what it needs: nothing to report, and said so.
    let sticky = common::run("examples/demo/broken-realtime.toml", &["--seed", "1", "--replicas", "3", "--routing", "sticky", "--scenarios", "affinity"]);
    assert_eq!(sticky.code, 0, "{}\n{}", sticky.stdout, sticky.stderr);
    let report = sticky.report();
    let result = report.scenarios.iter().find(|s| s.name == "affinity").expect("the scenario ran");
    assert_eq!(result.status, ScenarioStatus::Passed, "{result:?}");
    assert!(result.reason.as_deref().unwrap_or_default().contains("stayed on the replica that opened it"), "{}", sticky.stdout);
}

#[test]
fn a_relay_that_does_not_subscribe_again_after_the_store_restarted_is_found_after_that_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed-realtime.toml")).unwrap();
    let text = fixed.replace("\"--hub\", \"redis\"]", "\"--hub\", \"redis-once\"]");
    assert_ne!(text, fixed);
    let target = common::write(dir.path(), "once.toml", &text);
    let run = common::run(target.to_str().unwrap(), &["--seed", "1", "--replicas", "2", "--scenarios", "broadcast"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["broadcast-not-shared"], "{}", run.stdout);
    let report = run.report();
    for finding in &report.findings {
        let after = finding.after.as_ref().expect("found after a disruption");
        assert_eq!(after.action, "stop of redis", "{finding:?}");
        assert!(finding.control.detail.starts_with("before the stop of redis"), "{finding:?}");
        assert!(finding.reproduced, "{finding:?}");
    }
    let causes: Vec<&str> = report.diagnoses.iter().map(|d| d.cause.id()).collect();
    assert_eq!(causes, ["relay-not-resumed"]);
}

//! A dependency of the team's own (`[dependencies.NAME]`): started for the run from its
//! command on a free port, ready by a TCP connection or by its own command, given to the
//! replicas as `{NAME_url}`, started again on the same port, and never left running; one that
//! cannot start or never gets ready is a named failure within its `ready_timeout`.

mod common;

use std::time::{Duration, Instant};

use replicheck::cluster::dependency::Service;
use replicheck::target::ServiceDependency;

/// The demo configured correctly, its store a redis-server the target runs as a service of
/// its own, called `cache`, with `service` in its table.
fn demo_with_cache(dir: &std::path::Path, service: &str) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(common::root().join("examples/demo/fixed-redis.toml")).unwrap();
    let demo = demo.replace("{redis_url}", "{cache_url}").replace("[dependencies.redis]\n# Sessions and cache must survive a restart of Redis.\npersistence = \"aof\"\n", "");
    assert!(!demo.contains("[dependencies.redis]"), "the demo's own Redis is gone");
    let demo = demo.replace("name = \"demo-fixed-redis\"", &format!("name = \"demo-own-cache\"\n[dependencies.cache]\n{service}\n"));
    // The demo's file refers to nothing relative, so it may run from here.
    common::write(dir, "own-cache.toml", &demo)
}

const REDIS_AS_OUR_OWN: &str = r#"command = "redis-server"
args = ["--port", "{port}", "--bind", "{host}", "--save", "", "--dir", "{dir}"]
ready = { command = "redis-cli -h {host} -p {port} ping | grep -q PONG" }
url = "redis://{host}:{port}/0""#;

#[test]
fn the_demo_keeps_its_sessions_in_a_service_of_the_targets_own_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = demo_with_cache(dir.path(), REDIS_AS_OUR_OWN);
    let run = common::run(target.to_str().unwrap(), &["--seed", "2", "--scenarios", "login,session,cache"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("cache ready at redis://127.0.0.1:"), "{said}");
    for scenario in ["session", "cache"] {
        assert_eq!(run.status_of(scenario), Some(replicheck::check::ScenarioStatus::Passed), "{scenario}");
    }
    assert!(run.report_dir.join("cache.log").exists());
}

#[test]
fn a_service_of_the_targets_own_is_disrupted_like_redis_and_named_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let target = demo_with_cache(dir.path(), REDIS_AS_OUR_OWN);
    let run = common::run(target.to_str().unwrap(), &["--seed", "3", "--replicas", "2", "--scenarios", "session,cache,store-restart,store-outage"]);
    // Its redis-server saves nothing: a restart loses the sessions and the cache. The demo's
    // readiness asks its store, so the outage finds nothing.
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["artifact-lost-after-store-restart"], "{}", run.stdout);
    let report = run.report();
    assert!(report.findings.iter().all(|f| f.check == "store-restart cache" && f.after.as_ref().is_some_and(|a| a.action == "stop of cache")), "{:?}", report.findings);
    assert_eq!(run.status_of("store-outage cache"), Some(replicheck::check::ScenarioStatus::Passed), "{}", run.stdout);
    assert!(run.report_dir.join("cache#2.log").exists(), "each start of the service keeps its log");
}

/// A redis-server that says ready at once but, started again, serves only after two
/// seconds (`keeps` its data or not): a dependency whose readiness comes early.
fn slow_to_return(keeps: bool) -> String {
    let persistence = if keeps { "--appendonly yes" } else { "--save ''" };
    format!(
        r#"command = "sh"
args = ["-c", "if [ -e {{dir}}/started ]; then sleep 2; fi; touch {{dir}}/started; exec redis-server --port {{port}} --bind {{host}} --dir {{dir}} {persistence}"]
ready = {{ command = "true" }}
url = "redis://{{host}}:{{port}}/0""#
    )
}

#[test]
fn a_store_that_answers_late_after_its_restart_loses_nothing_unless_its_data_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    // The demo's readiness ignores its store, so nothing holds the users back until the store
    // serves again: the sessions and cache entries meet errors first, then their data.
    let ignoring = |service: &str| {
        let target = demo_with_cache(dir.path(), service);
        let demo = std::fs::read_to_string(&target).unwrap().replace("\"demo-service\",", "\"demo-service\", \"--readiness-ignores-store\",");
        std::fs::write(&target, demo).unwrap();
        target
    };
    let args = ["--seed", "5", "--replicas", "2", "--scenarios", "session,cache,store-restart"];
    let kept = common::run(ignoring(&slow_to_return(true)).to_str().unwrap(), &args);
    assert_eq!(kept.code, 0, "{}\n{}", kept.stdout, kept.stderr);
    assert_eq!(kept.status_of("store-restart cache"), Some(replicheck::check::ScenarioStatus::Passed), "{}", kept.stdout);

    let lost = common::run(ignoring(&slow_to_return(false)).to_str().unwrap(), &args);
    assert_eq!(lost.code, 1, "{}\n{}", lost.stdout, lost.stderr);
    assert_eq!(lost.kinds(), ["artifact-lost-after-store-restart"], "{}", lost.stdout);
    // Judged by what the app answered once the store served, not by its errors before.
    let report = lost.report();
    assert!(report.findings.iter().all(|f| f.observed.status.is_some_and(|s| s < 500)), "{:?}", report.findings);
}

#[test]
fn a_service_that_never_gets_ready_or_cannot_start_is_named_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let never = "command = \"sleep\"\nargs = [\"60\"]\nready_timeout = \"1s\"\nurl = \"queue://guest:s3cret@{host}:{port}\"";
    let missing = "command = \"no-such-service-program\"\nurl = \"queue://{host}:{port}\"";
    for (service, said) in [(never, "cache was not ready within 1s: queue://guest:[redacted]@127.0.0.1:"), (missing, "cannot start cache (`no-such-service-program`)")] {
        let target = demo_with_cache(dir.path(), service);
        let started = Instant::now();
        let run = common::run(target.to_str().unwrap(), &["--scenarios", "login"]);
        assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
        assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(said), "{}", run.stderr);
        assert!(!run.stderr.contains("s3cret") && !run.stdout.contains("s3cret"), "{}", run.stderr);
    }
}

#[tokio::test]
async fn a_service_starts_again_on_its_port_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spec: ServiceDependency = toml::from_str(
        "command = \"redis-server\"\nargs = [\"--port\", \"{port}\", \"--appendonly\", \"yes\", \"--dir\", \"{dir}\"]\nurl = \"redis://{host}:{port}/0\"\n",
    )
    .unwrap();
    let run_id = common::tag("service");
    let mut service = Service::start("queue", &spec, &dir.path().join("queue"), dir.path(), dir.path(), &run_id).await.unwrap();
    let url = service.url();
    let addr: std::net::SocketAddr = url.trim_start_matches("redis://").trim_end_matches("/0").parse().unwrap();
    assert!(replicheck::cluster::dependency::ping(addr).await);
    service.stop().await;
    assert!(!service.is_running());
    assert!(!replicheck::cluster::dependency::ping(addr).await);
    service.start_again().await.unwrap();
    assert_eq!(service.url(), url);
    assert!(replicheck::cluster::dependency::ping(addr).await);
    assert!(dir.path().join("queue/appendonlydir").is_dir(), "{{dir}} is its own directory");
    assert!(dir.path().join("queue#2.log").exists());
    service.stop().await;
}

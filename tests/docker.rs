//! `replicheck run --backend docker` end to end: the demo image finds what the demo
//! processes find, the configured image finds nothing, chaos works on containers, and the
//! engine is left clean after a run, Ctrl-C, or a SIGKILLed harness.

mod common;


use nix::sys::signal::{Signal, kill};
use replicheck::check::{ScenarioResult, ScenarioStatus};

#[test]
fn broken_docker_finds_the_same_kinds_as_the_process_run_of_broken() {
    if !common::docker_engine("broken_docker_finds_the_same_kinds_as_the_process_run_of_broken") {
        return;
    }
    let docker = common::run_docker("examples/demo/broken-docker.toml", &["--seed", "7"]);
    assert_eq!(docker.code, 1, "{}", docker.stderr);
    assert_eq!(docker.report().backend, "docker");
    let processes = common::run("examples/demo/broken.toml", &["--seed", "7"]);
    assert_eq!(processes.report().backend, "process");
    assert_eq!(docker.kinds(), processes.kinds(), "docker:\n{}\nprocesses:\n{}", docker.stdout, processes.stdout);
    for kind in ["inflight-dropped", "session-lost", "auth-cookie-rejected", "forwarded-for-ignored"] {
        assert!(docker.kinds().iter().any(|k| k == kind), "{kind} missing from {:?}", docker.kinds());
    }
    // Replica output is collected from the containers into the report directory.
    let log = std::fs::read_to_string(docker.report_dir.join("r0.log")).unwrap();
    assert!(log.contains("demo r0 listening on 0.0.0.0:8080"), "{log}");
}

#[test]
fn fixed_docker_finds_nothing_over_three_seeds() {
    if !common::docker_engine("fixed_docker_finds_nothing_over_three_seeds") {
        return;
    }
    for (seed, replicas) in [("21", "2"), ("22", "3"), ("23", "2")] {
        let run = common::run_docker("examples/demo/fixed-docker.toml", &["--seed", seed, "--replicas", replicas]);
        assert_eq!(run.code, 0, "seed {seed}: {}\n{}", run.stdout, run.stderr);
        assert!(run.report().findings.is_empty(), "seed {seed}: {}", run.stdout);
        // The demo's image serves no long-polling transport: the target declares none.
        // The image has no polling transport and no uploads.
        let polling_skipped = |s: &&ScenarioResult| ["affinity", "upload"].contains(&s.name.as_str()) && s.status == ScenarioStatus::Skipped;
        let not_passed: Vec<_> = run.report().scenarios.iter().filter(|s| s.status != ScenarioStatus::Passed && !polling_skipped(s)).map(|s| &s.name).collect();
        assert!(not_passed.is_empty(), "seed {seed}: {not_passed:?} did not pass\n{}", run.stdout);
    }
}

#[test]
fn containers_started_together_on_a_fresh_shared_volume_race_for_the_key_ring() {
    if !common::docker_engine("containers_started_together_on_a_fresh_shared_volume_race_for_the_key_ring") {
        return;
    }
    // The configured image, but with its key ring made on first use in the shared volume.
    let dir = tempfile::tempdir().unwrap();
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed-docker.toml")).unwrap();
    let racing = fixed.replace(r#""--keys", "{shared_dir}/keys""#, r#""--keys", "first-use:{shared_dir}/keys""#);
    assert_ne!(racing, fixed);
    let target = common::write(dir.path(), "race-docker.toml", &racing);
    let run = common::run_docker(target.to_str().unwrap(), &["--seed", "8", "--scenarios", "login,cold-start"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["keyring-race-on-start"], "{}", run.stdout);
}

#[test]
fn an_app_that_writes_into_its_image_fails_hardened_over_five_seeds() {
    if !common::docker_engine("an_app_that_writes_into_its_image_fails_hardened_over_five_seeds") {
        return;
    }
    for seed in 1..=5 {
        let run = common::run_docker("examples/demo/broken-hardened-docker.toml", &["--seed", &seed.to_string(), "--scenarios", "login,hardened"]);
        assert_eq!(run.code, 1, "seed {seed}:\n{}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), ["fails-hardened-runtime"], "seed {seed}:\n{}", run.stdout);
        for finding in &run.report().findings {
            assert_eq!((finding.scenario.as_str(), finding.step.as_str()), ("login", "sign in"), "{finding:?}");
            assert!(finding.notes.iter().any(|n| n.contains("/var/log/demo/audit.log: Read-only file system")), "{finding:?}");
            assert!(finding.control.detail.contains("as the target runs it"), "{finding:?}");
        }
        // The login scenario's users, on the replicas as the target runs them, passed.
        let login = run.report().scenarios.iter().find(|s| s.name == "login").unwrap();
        assert_eq!(login.status, ScenarioStatus::Passed, "{login:?}");
    }
}

#[test]
fn the_configured_image_runs_hardened_starts_cold_and_exports_its_telemetry_over_five_seeds() {
    if !common::docker_engine("the_configured_image_runs_hardened_starts_cold_and_exports_its_telemetry_over_five_seeds") {
        return;
    }
    // Containers export to the run's receiver at their network's gateway.
    for seed in 1..=5 {
        let run = common::run_docker("examples/demo/fixed-docker.toml", &["--seed", &seed.to_string(), "--scenarios", "login,antiforgery,session,telemetry,hardened,cold-start"]);
        assert_eq!(run.code, 0, "seed {seed}:\n{}\n{}", run.stdout, run.stderr);
        for scenario in &run.report().scenarios {
            assert_eq!(scenario.status, ScenarioStatus::Passed, "seed {seed}: {scenario:?}");
        }
    }
}

#[test]
fn a_volatile_redis_container_loses_sessions_when_it_restarts() {
    if !common::docker_engine("a_volatile_redis_container_loses_sessions_when_it_restarts") {
        return;
    }
    let run = common::run_docker("examples/demo/broken-redis-docker.toml", &["--seed", "5", "--scenarios", "session,store-restart"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["artifact-lost-after-store-restart"], "{}", run.stdout);
    assert!(run.report_dir.join("redis.log").exists());
}

#[test]
fn postgresql_as_a_container_is_raced_by_replicas_migrating_together_and_outlives_readiness_blind_to_it() {
    if !common::docker_engine("postgresql_as_a_container_is_raced_by_replicas_migrating_together_and_outlives_readiness_blind_to_it") {
        return;
    }
    let run = common::run_docker("examples/demo/broken-postgres-docker.toml", &["--seed", "1", "--scenarios", "login,cache,cold-start,store-restart,store-outage"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["readiness-stale", "start-race"], "{}", run.stdout);
    let report = run.report();
    let stale = report.findings.iter().find(|f| f.kind.to_string() == "readiness-stale").unwrap();
    assert_eq!(stale.check, "store-outage postgres");
    let race = report.findings.iter().find(|f| f.kind.to_string() == "start-race").unwrap();
    assert!(race.observed.reason.contains("migration failed"), "{}", race.observed.reason);
    // The cold start replaced the database's container: each keeps its own log.
    for log in ["postgres.log", "postgres#2.log"] {
        let text = std::fs::read_to_string(run.report_dir.join(log)).unwrap_or_default();
        assert!(text.contains("database system is ready to accept connections"), "{log}: {text}");
    }
}

/// The demo with PostgreSQL as containers, configured correctly: nothing found, and the
/// database's experiments passed.
fn postgres_containers_find_nothing(runs: &[(u64, &str)], scenarios: &[&str]) {
    for &(seed, replicas) in runs {
        let seed = seed.to_string();
        let mut args = vec!["--seed", &seed, "--replicas", replicas];
        if !scenarios.is_empty() {
            args.push("--scenarios");
            args.extend_from_slice(scenarios);
        }
        let run = common::run_docker("examples/demo/fixed-postgres-docker.toml", &args);
        assert_eq!(run.code, 0, "seed {seed}, {replicas} replicas:\n{}\n{}", run.stdout, run.stderr);
        for check in ["cold-start", "store-restart postgres", "store-outage postgres"] {
            assert_eq!(run.status_of(check), Some(ScenarioStatus::Passed), "seed {seed}, {replicas} replicas, {check}:\n{}", run.stdout);
        }
    }
}

#[test]
fn postgresql_as_a_container_with_replicas_that_take_a_lock_and_ask_it_finds_nothing() {
    if !common::docker_engine("postgresql_as_a_container_with_replicas_that_take_a_lock_and_ask_it_finds_nothing") {
        return;
    }
    postgres_containers_find_nothing(&[(2, "3")], &["login,session,cache,cold-start,store-restart,store-outage"]);
}

#[test]
#[ignore = "the soak: cargo nextest run --release --test docker --run-ignored ignored-only"]
fn soak_postgresql_as_a_container_over_five_seeds_and_two_replica_counts_with_every_experiment() {
    if !common::docker_engine("soak_postgresql_as_a_container_over_five_seeds_and_two_replica_counts_with_every_experiment") {
        return;
    }
    let runs: Vec<(u64, &str)> = (1..=5).flat_map(|seed| [(seed, "2"), (seed, "3")]).collect();
    postgres_containers_find_nothing(&runs, &[]);
}

#[test]
fn a_service_of_the_targets_own_runs_as_a_container_its_replicas_reach_by_name() {
    if !common::docker_engine("a_service_of_the_targets_own_runs_as_a_container_its_replicas_reach_by_name") {
        return;
    }
    // The configured demo with its store in a Redis container the target declares as its own.
    let demo = std::fs::read_to_string(common::root().join("examples/demo/fixed-docker.toml")).unwrap();
    let redis = "[dependencies.redis]\nimage = \"replicheck-redis:local\"\n";
    assert!(demo.contains(redis));
    let own = "[dependencies.cache]\nimage = \"replicheck-redis:local\"\nport = 6379\nurl = \"redis://{host}:{port}/0\"\n";
    let demo = demo.replace(redis, own).replace("persistence = \"aof\"\n", "").replace("{redis_url}", "{cache_url}");
    let dir = tempfile::tempdir().unwrap();
    let target = common::write(dir.path(), "own-cache-docker.toml", &demo);
    let run = common::run_docker(target.to_str().unwrap(), &["--seed", "3", "--scenarios", "login,session,cache"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("cache ready at redis://cache:6379/0"), "{said}");
    for scenario in ["session", "cache"] {
        assert_eq!(run.status_of(scenario), Some(replicheck::check::ScenarioStatus::Passed), "{scenario}");
    }
    assert!(run.report_dir.join("cache.log").exists(), "its output is kept with the replicas'");
}

#[test]
fn docker_host_names_the_engine() {
    if !common::docker_engine("docker_host_names_the_engine") {
        return;
    }
    common::demo_images();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let run = |host: &str| {
        common::command(&common::tag("docker-host"), &["run", "examples/demo/fixed-docker.toml", "--scenarios", "forwarded-headers", "--report-dir", report.to_str().unwrap()])
            .env("DOCKER_HOST", host)
            .output()
            .unwrap()
    };
    // The engine this machine runs, named explicitly.
    let socket = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let output = run(&socket);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));

    let output = run("unix:///nonexistent/docker.sock");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"), "{stderr}");
}

fn interrupt_mid_run(signal: Signal) {
    let dir = tempfile::tempdir().unwrap();
    let run = common::start_slow_docker_run(&common::tag("docker-interrupt"), dir.path());
    let run_id = run.run_id.clone();
    kill(run.pid(), signal).unwrap();
    let output = run.wait_with_output();
    common::assert_interrupted(&output, signal, &dir.path().join("report"));
    let left = common::docker_leftovers(&run_id);
    assert!(left.is_empty(), "left after {signal}: {left:?}");
}

#[test]
fn ctrl_c_mid_run_leaves_nothing_on_the_engine() {
    if common::docker_engine("ctrl_c_mid_run_leaves_nothing_on_the_engine") {
        interrupt_mid_run(Signal::SIGINT);
    }
}

#[test]
fn sigterm_mid_run_leaves_nothing_on_the_engine() {
    if common::docker_engine("sigterm_mid_run_leaves_nothing_on_the_engine") {
        interrupt_mid_run(Signal::SIGTERM);
    }
}

#[test]
fn a_container_killed_from_outside_mid_run_is_told_and_the_run_exits_3() {
    if !common::docker_engine("a_container_killed_from_outside_mid_run_is_told_and_the_run_exits_3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = common::start_slow_docker_run(&common::tag("docker-oom"), dir.path());
    let run_id = run.run_id.clone();
    // As an OOM killer or an operator would: the engine kills it, not replicheck.
    let running_r1 = || {
        let listed = std::process::Command::new("docker")
            .args(["ps", "-q", "--filter", &format!("label=replicheck={run_id}"), "--filter", "label=replicheck.role=r1"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&listed.stdout).trim().to_owned()
    };
    let mut container = String::new();
    let found = common::wait_until(std::time::Duration::from_secs(30), || {
        container = running_r1();
        !container.is_empty()
    });
    assert!(found, "no running r1 container");
    assert!(std::process::Command::new("docker").args(["kill", &container]).status().unwrap().success());
    let output = run.wait_with_output();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let report: replicheck::report::Report = serde_json::from_slice(&std::fs::read(dir.path().join("report/report.json")).unwrap()).unwrap();
    let [exit] = report.exits.as_slice() else { panic!("{:?}\n{stderr}", report.exits) };
    assert_eq!(exit.replica.to_string(), "r1");
    assert!(exit.how.contains("exit code 137"), "{}", exit.how);
    assert!(report.findings.is_empty());
    let left = common::docker_leftovers(&run_id);
    assert!(left.is_empty(), "left: {left:?}");
}

/// Containers see every connection from this host come from their network's gateway, the
/// proxy's address; a stranger's forged headers come from a second network's gateway.
#[test]
fn forged_forwarded_headers_are_asked_of_containers_from_a_network_of_their_own() {
    if !common::docker_engine("forged_forwarded_headers_are_asked_of_containers_from_a_network_of_their_own") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed-docker.toml")).unwrap();
    let trusting = fixed.replace(r#""--known-proxy", "{proxy_address}""#, r#""--forwarded", "trust-all""#);
    assert_ne!(trusting, fixed);
    let trusting = common::write(dir.path(), "trusting-docker.toml", &trusting);
    for seed in ["1", "2"] {
        let run = common::run_docker(trusting.to_str().unwrap(), &["--seed", seed, "--scenarios", "forwarded-headers"]);
        assert_eq!(run.code, 1, "seed {seed}:\n{}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), ["forwarded-headers-spoofable"], "seed {seed}:\n{}", run.stdout);
    }
    let run = common::run_docker("examples/demo/fixed-docker.toml", &["--seed", "1", "--scenarios", "forwarded-headers", "--strict"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let inspection = run.report().scenarios.iter().find(|s| s.name == "forwarded-headers").unwrap();
    assert!(inspection.checks.iter().any(|k| k.to_string() == "forwarded-headers-spoofable"), "{inspection:?}");
    assert!(inspection.untested.is_empty(), "{inspection:?}");
}

/// The demo's background work as containers: each reaches the run's sink at its network's
/// gateway, and the same kinds show as with processes; configured correctly, none.
#[test]
fn containers_deliver_their_background_work_to_the_sink_at_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let target = |name: &str, flags: &str| {
        let flows = std::fs::read_to_string(common::root().join("examples/demo/broken-jobs.toml")).unwrap();
        let flows = &flows[flows.find("[scheduled.digest]").expect("the demo's flows")..];
        let text = format!(
            "name = \"{name}\"\n[start]\nimage = \"replicheck-demo:local\"\nport = 8080\n\
             args = [\"demo-service\", \"--listen\", \"{{host}}:{{port}}\", \"--replica\", \"{{replica}}\", \"--drain-ms\", \"1000\", \"--keys\", \"{{shared_dir}}/keys\", \"--store\", \"{{redis_url}}\", \"--sink\", \"{{sink_url}}\", \"--digest-every\", \"1000\", {flags}]\n\
             ready_timeout = \"30s\"\n[health]\nready = \"/healthz/ready\"\ninterval = \"200ms\"\n[balancer]\nderegistration_delay = \"500ms\"\n\
             [dependencies.redis]\nimage = \"replicheck-redis:local\"\n{flows}"
        );
        common::write(dir.path(), &format!("{name}.toml"), &text)
    };
    let broken = target("jobs-broken-docker", "\"--receipts\", \"in-process\", \"--invites\", \"unclaimed\"");
    let run = common::run_docker(broken.to_str().unwrap(), &["--seed", "4", "--scenarios", "scheduled-jobs,triggered-work"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["job-runs-on-every-replica", "side-effect-duplicated", "work-lost-at-shutdown"]);
    let fixed = target("jobs-fixed-docker", "\"--digest-lease\", \"--receipts\", \"redis\", \"--invites\", \"claimed\"");
    let run = common::run_docker(fixed.to_str().unwrap(), &["--seed", "4", "--scenarios", "scheduled-jobs,triggered-work"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

#[test]
fn an_upload_kept_in_a_container_without_a_volume_is_lost_with_it_and_a_limit_in_its_memory_is_found() {
    if !common::docker_engine("an_upload_kept_in_a_container_without_a_volume_is_lost_with_it_and_a_limit_in_its_memory_is_found") {
        return;
    }
    // The configured image, but with uploads in the container's own filesystem and the limit
    // counted in its memory, keyed on the connection's peer.
    let dir = tempfile::tempdir().unwrap();
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed-docker.toml")).unwrap();
    let flows = std::fs::read_to_string(common::root().join("examples/demo/broken-limits.toml")).unwrap();
    let flows = &flows[flows.find("# Password-reset requests").expect("the limit's table")..];
    let local = fixed.replace(
        r#""--store", "{redis_url}"]"#,
        r#""--store", "{redis_url}", "--uploads", "/uploads", "--limiter", "memory", "--limit-key", "peer"]"#,
    );
    assert_ne!(local, fixed);
    let target = common::write(dir.path(), "local-docker.toml", &format!("{local}\n{flows}"));
    let run = common::run_docker(target.to_str().unwrap(), &["--seed", "4", "--scenarios", "upload,restart,limits"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.kinds(),
        ["artifact-lost-after-restart", "limit-per-replica", "limit-reset-by-restart", "limit-shared-by-all-clients", "upload-not-shared"],
        "{}",
        run.stdout
    );
    let lost = run.report().findings.iter().find(|f| f.kind.id() == "artifact-lost-after-restart").unwrap();
    assert_eq!(lost.artifact.kind, "upload", "{lost:?}");
    let causes: Vec<&str> = run.report().diagnoses.iter().map(|d| d.cause.id()).collect();
    assert!(causes.contains(&"uploads-on-local-disk"), "{causes:?}");
}

//! The process backend against real replica processes: start in parallel, readiness,
//! logs, and every lifecycle verb (stop, kill, pause, resume, restart).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use replicheck::cluster::replica::{Incarnation, ReplicaId};
use replicheck::cluster::{Cluster, ClusterError, ClusterSpec, Endpoint, StopOutcome};
use replicheck::file::SourceFile;
use replicheck::progress::Silent;
use replicheck::target::Target;

/// A target from TOML text, its processes tagged for the leftover check.
fn target(text: &str, tag: &str) -> Target {
    let tagged = format!("{text}\n");
    let path = common::root().join("examples/demo/inline.toml");
    let mut target = Target::from_source(&SourceFile::from_text(path, tagged)).expect("valid target");
    target.start.env.insert(common::TAG_VAR.into(), replicheck::step::Template::literal(tag));
    target
}

fn demo(grace: &str) -> String {
    format!(
        r#"
[start]
command = "{{replicheck}}"
args = ["demo-service", "--listen", "{{host}}:{{port}}", "--replica", "{{replica}}", "--keys", "{{shared_dir}}/keys", "--store", "sqlite:{{shared_dir}}/s.db"]
shutdown_grace = "{grace}"
ready_timeout = "10s"
[health]
ready = "/healthz/ready"
"#
    )
}

async fn start(target: Target, replicas: u16, logs: &Path) -> Result<Cluster, ClusterError> {
    let spec = ClusterSpec::new(Arc::new(target), common::tag("cluster"), logs).replicas(replicas).replicheck(common::bin());
    Cluster::start(spec, &Silent).await
}

async fn whoami(endpoint: &Endpoint, timeout: Duration) -> Result<String, reqwest::Error> {
    let client = replicheck::client::builder().timeout(timeout).build()?;
    let body = client.get(format!("http://{}/whoami", endpoint.addr)).send().await?.text().await?;
    let json: serde_json::Value = serde_json::from_str(&body).expect("whoami answers JSON");
    Ok(json["replica"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn replicas_start_in_parallel_ready_and_logged() {
    let tag = common::tag("parallel");
    let logs = tempfile::tempdir().unwrap();
    let cluster = start(target(&demo("5s"), &tag), 3, logs.path()).await.unwrap();
    let endpoints = cluster.endpoints();
    assert_eq!(endpoints.iter().map(|e| e.replica.to_string()).collect::<Vec<_>>(), ["r0", "r1", "r2"]);
    for endpoint in &endpoints {
        assert_eq!(whoami(endpoint, Duration::from_secs(5)).await.unwrap(), endpoint.replica.id.to_string());
        assert!(endpoint.addr.ip().is_loopback());
    }
    let ports: std::collections::BTreeSet<u16> = endpoints.iter().map(|e| e.addr.port()).collect();
    assert_eq!(ports.len(), 3);
    cluster.shutdown().await;
    let log = std::fs::read_to_string(logs.path().join("r2.log")).unwrap();
    assert!(log.contains("demo r2 listening"), "{log}");
    common::assert_no_leftovers(&tag);
}

#[tokio::test]
async fn stop_kill_pause_resume_and_restart() {
    let tag = common::tag("verbs");
    let logs = tempfile::tempdir().unwrap();
    let mut cluster = start(target(&demo("5s"), &tag), 3, logs.path()).await.unwrap();
    let before = cluster.endpoints();

    // Graceful stop: the demo exits on SIGTERM well within its grace.
    match cluster.stop(Incarnation::first(ReplicaId(0)), cluster.grace()).await.unwrap() {
        StopOutcome::Exited { status, after } => {
            assert_eq!(status, Some(0));
            assert!(after < Duration::from_secs(5));
        }
        other => panic!("expected a graceful exit, got {other:?}"),
    }
    assert!(whoami(&before[0], Duration::from_secs(1)).await.is_err());

    cluster.kill(ReplicaId(1)).await.unwrap();
    assert!(whoami(&before[1], Duration::from_secs(1)).await.is_err());

    cluster.pause(ReplicaId(2)).await.unwrap();
    let paused = whoami(&before[2], Duration::from_millis(500)).await.unwrap_err();
    assert!(paused.is_timeout(), "{paused}");
    cluster.resume(ReplicaId(2)).await.unwrap();
    assert_eq!(whoami(&before[2], Duration::from_secs(5)).await.unwrap(), "r2");

    let (_, restarted) = cluster.restart(ReplicaId(0)).await.unwrap();
    assert_eq!(restarted.replica.to_string(), "r0#2");
    assert_ne!(restarted.addr, before[0].addr);
    assert_eq!(whoami(&restarted, Duration::from_secs(5)).await.unwrap(), "r0");
    assert!(logs.path().join("r0#2.log").exists());
    assert!(matches!(cluster.stop(Incarnation::first(ReplicaId(9)), cluster.grace()).await, Err(ClusterError::UnknownReplica(ReplicaId(9)))));

    cluster.shutdown().await;
    common::assert_no_leftovers(&tag);
}

#[tokio::test]
async fn a_replica_that_ignores_sigterm_is_killed_when_its_grace_ends() {
    let tag = common::tag("grace");
    let logs = tempfile::tempdir().unwrap();
    // An ignored signal stays ignored across exec, and Python's http.server sets no handler.
    let text = r#"
[start]
command = "sh"
args = ["-c", "trap '' TERM; exec python3 -m http.server --bind 127.0.0.1 {port}"]
shutdown_grace = "300ms"
"#;
    let mut cluster = start(target(text, &tag), 1, logs.path()).await.unwrap();
    let outcome = cluster.stop(Incarnation::first(ReplicaId(0)), cluster.grace()).await.unwrap();
    assert_eq!(outcome, StopOutcome::Killed { grace: Duration::from_millis(300) });
    cluster.shutdown().await;
    common::assert_no_leftovers(&tag);
}

#[tokio::test]
async fn a_replica_that_exits_before_ready_is_reported_with_its_log_and_the_others_are_stopped() {
    let tag = common::tag("early-exit");
    let logs = tempfile::tempdir().unwrap();
    let text = r#"
[start]
command = "sh"
args = ["-c", "if [ {replica_index} = 1 ]; then echo 'boom: no config'; exit 3; fi; exec \"$0\" demo-service --listen {host}:{port} --replica {replica}", "{replicheck}"]
"#;
    let err = start(target(text, &tag), 3, logs.path()).await.err().expect("r1 fails");
    let message = err.to_string();
    assert!(message.starts_with("r1 exited (exit status 3) before it was ready"), "{message}");
    assert!(message.contains("boom: no config"), "{message}");
    common::assert_no_leftovers(&tag);
}

#[tokio::test]
async fn a_replica_that_never_gets_ready_times_out() {
    let tag = common::tag("never-ready");
    let logs = tempfile::tempdir().unwrap();
    let text = r#"
[start]
command = "python3"
args = ["-m", "http.server", "--bind", "127.0.0.1", "{port}"]
ready_timeout = "4s"
[health]
ready = "/no-such-endpoint"
"#;
    // Long enough for Python to start on a busy machine and answer 404 at least once.
    let started = std::time::Instant::now();
    let err = start(target(text, &tag), 1, logs.path()).await.err().expect("never ready");
    assert!(started.elapsed() < Duration::from_secs(10));
    let message = err.to_string();
    assert!(message.contains("was not ready within 4s") && message.contains("last answered 404"), "{message}");
    common::assert_no_leftovers(&tag);
}

#[tokio::test]
async fn helpers_a_replica_forks_into_their_own_session_are_still_stopped() {
    let tag = common::tag("escaped");
    let logs = tempfile::tempdir().unwrap();
    // `setsid` puts the helper outside the replica's process group; the run marker in its
    // environment still finds it.
    let text = r#"
[start]
command = "sh"
args = ["-c", "setsid sleep 300 & exec \"$0\" demo-service --listen {host}:{port} --replica {replica}", "{replicheck}"]
"#;
    let cluster = start(target(text, &tag), 1, logs.path()).await.unwrap();
    assert!(common::tagged(&tag).len() >= 2, "the helper runs: {:?}", common::tagged(&tag));
    cluster.shutdown().await;
    common::assert_no_leftovers(&tag);
}

#[tokio::test]
async fn a_surge_runs_two_incarnations_until_the_old_one_retires() {
    let tag = common::tag("surge");
    let logs = tempfile::tempdir().unwrap();
    let mut cluster = start(target(&demo("5s"), &tag), 2, logs.path()).await.unwrap();
    let old = cluster.endpoint(ReplicaId(1)).unwrap();
    let new = cluster.surge(ReplicaId(1)).await.unwrap();
    assert_eq!(new.replica.to_string(), "r1#2");
    assert_eq!(cluster.endpoint(ReplicaId(1)), Some(new));
    // Both answer while the old one has not retired.
    assert_eq!(whoami(&old, Duration::from_secs(5)).await.unwrap(), "r1");
    assert_eq!(whoami(&new, Duration::from_secs(5)).await.unwrap(), "r1");
    let outcome = cluster.stop(old.replica, cluster.grace()).await.unwrap();
    assert!(matches!(outcome, StopOutcome::Exited { status: Some(0), .. }), "{outcome:?}");
    assert!(whoami(&old, Duration::from_secs(1)).await.is_err());
    assert!(cluster.stop(old.replica, cluster.grace()).await.is_err(), "a replaced incarnation stops once");
    cluster.shutdown().await;
    common::assert_no_leftovers(&tag);
}

#[tokio::test]
async fn scale_out_adds_the_next_name_and_remove_takes_it_away() {
    let tag = common::tag("scale");
    let logs = tempfile::tempdir().unwrap();
    let mut cluster = start(target(&demo("5s"), &tag), 2, logs.path()).await.unwrap();
    let added = cluster.scale_out().await.unwrap();
    assert_eq!(added.replica.to_string(), "r2");
    assert_eq!(whoami(&added, Duration::from_secs(5)).await.unwrap(), "r2");
    assert_eq!(cluster.endpoints().len(), 3);
    cluster.stop(added.replica, cluster.grace()).await.unwrap();
        cluster.forget(ReplicaId(2));
    assert_eq!(cluster.endpoints().len(), 2);
    assert!(whoami(&added, Duration::from_secs(1)).await.is_err());
    cluster.shutdown().await;
    common::assert_no_leftovers(&tag);
}

#[tokio::test]
async fn healing_restarts_what_is_down_and_resumes_what_is_paused() {
    let tag = common::tag("heal");
    let logs = tempfile::tempdir().unwrap();
    let mut cluster = start(target(&demo("5s"), &tag), 3, logs.path()).await.unwrap();
    cluster.kill(ReplicaId(0)).await.unwrap();
    cluster.stop(Incarnation::first(ReplicaId(1)), cluster.grace()).await.unwrap();
    cluster.pause(ReplicaId(2)).await.unwrap();
    let started = cluster.heal().await.unwrap();
    let names: Vec<String> = started.iter().map(|e| e.replica.to_string()).collect();
    assert_eq!(names, ["r0#2", "r1#2"]);
    for endpoint in cluster.endpoints() {
        assert_eq!(whoami(&endpoint, Duration::from_secs(5)).await.unwrap(), endpoint.replica.id.to_string());
    }
    cluster.shutdown().await;
    common::assert_no_leftovers(&tag);
}

/// `cwd = ".."` and `command = "./app/serve.sh"` in `holdout/targets/app.toml`, run from the
/// directory above `holdout`: the command is found from the cwd once, wherever the run is
/// started from.
#[test]
fn a_relative_command_starts_from_a_relative_cwd_whatever_the_working_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let holdout = dir.path().join("holdout");
    std::fs::create_dir_all(holdout.join("targets")).unwrap();
    std::fs::create_dir_all(holdout.join("app")).unwrap();
    let serve = common::write(&holdout.join("app"), "serve.sh", "#!/bin/sh\nexec python3 -m http.server --bind \"$1\" \"$2\"\n");
    std::fs::set_permissions(&serve, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = "[start]\ncwd = \"..\"\ncommand = \"./app/serve.sh\"\nargs = [\"{host}\", \"{port}\"]\n";
    common::write(&holdout.join("targets"), "app.toml", target);
    common::write(&holdout, "marker.txt", "served from holdout/\n");
    common::write(dir.path(), "home.toml", "name = \"home\"\n[[steps]]\nname = \"marker\"\nrequest = { url = \"/marker.txt\" }\nexpect = { status = 200, body_contains = \"served from holdout/\" }\n");
    let tag = common::tag("relative-cwd");
    let output = common::command(&tag, &["run", "holdout/targets/app.toml", "--replicas", "1", "--vus", "1", "--scenarios", "home.toml", "--report-dir", "report", "--format", "json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
    // The app served its cwd, `holdout/`.
    let log = std::fs::read_to_string(dir.path().join("report/r0.log")).unwrap();
    assert!(log.contains("\"GET /marker.txt HTTP/1.1\" 200"), "{log}");
    common::assert_no_leftovers(&tag);
}

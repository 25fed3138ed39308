//! The docker backend against real containers of the demo image: a network of the run's
//! own, replica names as host names, readiness, logs, every lifecycle verb through the
//! Docker API, and nothing labelled with the run left on the engine afterwards.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use replicheck::cluster::backend::docker::{Engine, reap};
use replicheck::cluster::reaper::live_runs;
use replicheck::cluster::replica::{Incarnation, ReplicaId};
use replicheck::cluster::{BackendKind, Cluster, ClusterError, ClusterSpec, Endpoint, StopOutcome};
use replicheck::file::SourceFile;
use replicheck::progress::Silent;
use replicheck::target::Target;

/// The demo image, with a key ring and SQLite store on the run's shared volume.
fn demo(args: &str, grace: &str) -> Target {
    let text = format!(
        r#"
[start]
image = "replicheck-demo:local"
args = ["demo-service", "--listen", "{{host}}:{{port}}", "--replica", "{{replica}}", "--keys", "{{shared_dir}}/keys", "--store", "sqlite:{{shared_dir}}/s.db"{args}]
shutdown_grace = "{grace}"
ready_timeout = "20s"
[health]
ready = "/healthz/ready"
"#
    );
    let path = common::root().join("examples/demo/inline.toml");
    Target::from_source(&SourceFile::from_text(path, text)).expect("valid target")
}

struct Started {
    cluster: Cluster,
    run_id: String,
    logs: tempfile::TempDir,
}

async fn start(target: Target, replicas: u16, name: &str) -> Result<Started, (ClusterError, String)> {
    common::demo_images();
    let logs = tempfile::tempdir().unwrap();
    let run_id = common::tag(name);
    let spec = ClusterSpec::new(Arc::new(target), run_id.clone(), logs.path())
        .replicas(replicas)
        .backend(BackendKind::Docker)
        .replicheck(common::bin());
    match Cluster::start(spec, &Silent).await {
        Ok(cluster) => Ok(Started { cluster, run_id, logs }),
        Err(err) => Err((err, run_id)),
    }
}

async fn whoami(endpoint: &Endpoint, timeout: Duration) -> Result<String, reqwest::Error> {
    let client = replicheck::client::builder().timeout(timeout).build()?;
    let body = client.get(format!("http://{}/whoami", endpoint.addr)).send().await?.text().await?;
    let json: serde_json::Value = serde_json::from_str(&body).expect("whoami answers JSON");
    Ok(json["replica"].as_str().unwrap_or_default().to_owned())
}

fn inspect(container: &str, format: &str) -> String {
    let output = Command::new("docker").args(["inspect", "--format", format, container]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn assert_nothing_left(run_id: &str) {
    let left = common::docker_leftovers(run_id);
    assert!(left.is_empty(), "left on the engine by {run_id}: {left:?}");
}

#[tokio::test]
async fn replicas_run_on_the_runs_network_named_by_replica_and_logged() {
    if !common::docker_engine("replicas_run_on_the_runs_network_named_by_replica_and_logged") {
        return;
    }
    let Started { cluster, run_id, logs } = start(demo("", "5s"), 3, "docker-start").await.unwrap();
    let endpoints = cluster.endpoints();
    assert_eq!(endpoints.iter().map(|e| e.replica.to_string()).collect::<Vec<_>>(), ["r0", "r1", "r2"]);
    for endpoint in &endpoints {
        assert_eq!(whoami(endpoint, Duration::from_secs(5)).await.unwrap(), endpoint.replica.id.to_string());
        assert!(endpoint.addr.ip().is_loopback(), "published on loopback: {}", endpoint.addr);
        let container = format!("replicheck-{run_id}-{}-1", endpoint.replica.id);
        assert_eq!(inspect(&container, "{{.Config.Hostname}}"), endpoint.replica.id.to_string());
        // The run's network, and a second one from which strangers' connections come.
        assert_eq!(
            inspect(&container, "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}"),
            format!("replicheck-{run_id} replicheck-{run_id}-stranger")
        );
        assert_eq!(inspect(&container, "{{index .Config.Labels \"replicheck\"}}"), run_id);
    }
    // The balancer's connections reach the apps from the network's gateway.
    let gateway = inspect(&format!("replicheck-{run_id}"), "{{range .IPAM.Config}}{{.Gateway}}{{end}}");
    assert_eq!(cluster.vantage().proxy.map(|p| p.to_string()), Some(gateway));
    assert!(!common::docker_leftovers(&run_id).is_empty());
    cluster.shutdown().await;
    let log = std::fs::read_to_string(logs.path().join("r2.log")).unwrap();
    assert!(log.contains("demo r2 listening"), "{log}");
    assert_nothing_left(&run_id);
}

#[tokio::test]
async fn stop_kill_pause_resume_and_restart_through_the_docker_api() {
    if !common::docker_engine("stop_kill_pause_resume_and_restart_through_the_docker_api") {
        return;
    }
    let Started { mut cluster, run_id, logs } = start(demo("", "5s"), 3, "docker-verbs").await.unwrap();
    let before = cluster.endpoints();

    match cluster.stop(Incarnation::first(ReplicaId(0)), cluster.grace()).await.unwrap() {
        StopOutcome::Exited { status, after } => {
            assert_eq!(status, Some(0));
            assert!(after < Duration::from_secs(5), "{after:?}");
        }
        other => panic!("expected a graceful exit, got {other:?}"),
    }
    assert!(whoami(&before[0], Duration::from_secs(1)).await.is_err());

    cluster.kill(ReplicaId(1)).await.unwrap();
    assert_eq!(inspect(&format!("replicheck-{run_id}-r1-1"), "{{.State.ExitCode}}"), "137");

    cluster.pause(ReplicaId(2)).await.unwrap();
    let paused = whoami(&before[2], Duration::from_millis(500)).await.unwrap_err();
    assert!(paused.is_timeout(), "{paused}");
    cluster.resume(ReplicaId(2)).await.unwrap();
    assert_eq!(whoami(&before[2], Duration::from_secs(5)).await.unwrap(), "r2");

    let (_, restarted) = cluster.restart(ReplicaId(0)).await.unwrap();
    assert_eq!(restarted.replica.to_string(), "r0#2");
    assert_eq!(whoami(&restarted, Duration::from_secs(5)).await.unwrap(), "r0");
    assert!(matches!(cluster.stop(Incarnation::first(ReplicaId(9)), cluster.grace()).await, Err(ClusterError::UnknownReplica(ReplicaId(9)))));

    cluster.shutdown().await;
    assert!(logs.path().join("r0#2.log").exists());
    assert_nothing_left(&run_id);
}

#[tokio::test]
async fn a_container_that_ignores_sigterm_is_killed_when_its_grace_ends() {
    if !common::docker_engine("a_container_that_ignores_sigterm_is_killed_when_its_grace_ends") {
        return;
    }
    let target = demo(r#", "--shutdown", "ignore""#, "1s");
    let Started { mut cluster, run_id, .. } = start(target, 1, "docker-grace").await.unwrap();
    let outcome = cluster.stop(Incarnation::first(ReplicaId(0)), cluster.grace()).await.unwrap();
    assert_eq!(outcome, StopOutcome::Killed { grace: Duration::from_secs(1) });
    cluster.shutdown().await;
    assert_nothing_left(&run_id);
}

#[tokio::test]
async fn a_container_that_exits_before_ready_is_reported_with_its_output_and_nothing_is_left() {
    if !common::docker_engine("a_container_that_exits_before_ready_is_reported_with_its_output_and_nothing_is_left") {
        return;
    }
    let target = demo(r#", "--no-such-flag""#, "5s");
    let (err, run_id) = start(target, 2, "docker-early-exit").await.err().expect("the demo rejects the flag");
    let message = err.to_string();
    assert!(message.contains("exited (exit code 2) before it was ready"), "{message}");
    assert!(message.contains("--no-such-flag"), "{message}");
    // The failed start dropped the cluster, which removed everything.
    assert_nothing_left(&run_id);
}

#[tokio::test]
async fn surge_scale_out_twice_and_heal() {
    if !common::docker_engine("surge_scale_out_twice_and_heal") {
        return;
    }
    let Started { mut cluster, run_id, .. } = start(demo("", "5s"), 2, "docker-surge").await.unwrap();
    let old = cluster.endpoint(ReplicaId(1)).unwrap();
    let new = cluster.surge(ReplicaId(1)).await.unwrap();
    assert_eq!(new.replica.to_string(), "r1#2");
    assert_eq!(whoami(&old, Duration::from_secs(5)).await.unwrap(), "r1");
    assert_eq!(whoami(&new, Duration::from_secs(5)).await.unwrap(), "r1");
    let outcome = cluster.stop(old.replica, cluster.grace()).await.unwrap();
    assert!(matches!(outcome, StopOutcome::Exited { status: Some(0), .. }), "{outcome:?}");
    assert!(whoami(&old, Duration::from_secs(1)).await.is_err());

    // Scaling in and out again takes the next slot, r2, in a new incarnation each time: a
    // name (and its log) is never given twice in a run.
    for name in ["r2", "r2#2"] {
        let added = cluster.scale_out().await.unwrap();
        assert_eq!(added.replica.to_string(), name);
        assert_eq!(whoami(&added, Duration::from_secs(5)).await.unwrap(), "r2");
        cluster.stop(added.replica, cluster.grace()).await.unwrap();
        cluster.forget(ReplicaId(2));
    }

    cluster.kill(ReplicaId(0)).await.unwrap();
    cluster.pause(ReplicaId(1)).await.unwrap();
    let started = cluster.heal().await.unwrap();
    assert_eq!(started.iter().map(|e| e.replica.to_string()).collect::<Vec<_>>(), ["r0#2"]);
    for endpoint in cluster.endpoints() {
        assert_eq!(whoami(&endpoint, Duration::from_secs(5)).await.unwrap(), endpoint.replica.id.to_string());
    }
    cluster.shutdown().await;
    assert_nothing_left(&run_id);
}

#[tokio::test]
async fn dropping_a_cluster_removes_its_containers_network_and_volumes() {
    if !common::docker_engine("dropping_a_cluster_removes_its_containers_network_and_volumes") {
        return;
    }
    let Started { cluster, run_id, .. } = start(demo("", "5s"), 2, "docker-drop").await.unwrap();
    let kinds: BTreeSet<String> = common::docker_leftovers(&run_id).iter().map(|l| l.split(' ').next().unwrap().to_owned()).collect();
    assert_eq!(kinds, BTreeSet::from(["container".into(), "network".into(), "volume".into()]));
    // As on Ctrl-C or a panic: no graceful shutdown.
    drop(cluster);
    assert_nothing_left(&run_id);
}

#[tokio::test]
async fn reaping_removes_what_dead_runs_left_and_spares_live_ones() {
    if !common::docker_engine("reaping_removes_what_dead_runs_left_and_spares_live_ones") {
        return;
    }
    let Started { cluster, run_id: live, .. } = start(demo("", "5s"), 1, "docker-live").await.unwrap();
    // What a SIGKILLed harness on this host would have left: a labelled network and volume.
    let dead = common::tag("docker-dead");
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    for create in [["network", "create"], ["volume", "create"]] {
        let status = Command::new("docker")
            .args(create)
            .args(["--label", &format!("replicheck={dead}"), "--label", &format!("replicheck.host={host}"), &format!("replicheck-{dead}")])
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    }
    let engine = Engine::connect().await.unwrap();
    // Another test's run may reap them first: what counts is that they are gone.
    reap(&engine, &live_runs()).await;
    assert_nothing_left(&dead);
    assert!(!common::docker_leftovers(&live).is_empty(), "a live run's resources stay");
    cluster.shutdown().await;
    assert_nothing_left(&live);
}

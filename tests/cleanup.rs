//! Nothing outlives a run: not on success, failure, Ctrl-C, SIGTERM, or SIGKILL of the
//! harness (the next `replicheck clean` or run removes what is left). The process table is
//! checked through the tag every replica inherits.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A target and a scenario that keep a run busy for half a minute, with Redis and
/// PostgreSQL (which the demo does not use: they are here to be cleaned up).
fn slow_run(dir: &Path) -> (PathBuf, PathBuf) {
    let demo = std::fs::read_to_string(common::root().join("examples/demo/fixed-redis.toml")).unwrap();
    let target = common::write(dir, "slow.toml", &format!("{demo}\n[limits]\nrequest_timeout = \"60s\"\n\n[dependencies.postgres]\n"));
    let scenario = common::write(
        dir,
        "wait.toml",
        "name = \"wait\"\n[[steps]]\nname = \"wait\"\nrequest = { url = \"/slow?ms=30000\" }\n",
    );
    (target, scenario)
}

/// Starts the slow run and waits until its replicas and Redis are up and users are running.
fn start_slow(tag: &str, dir: &Path) -> (Child, String) {
    let (target, scenario) = slow_run(dir);
    let report = dir.join("report");
    let child = common::spawn(
        tag,
        &["run", target.to_str().unwrap(), "--scenarios", scenario.to_str().unwrap(), "--report-dir", report.to_str().unwrap()],
    );
    let started: Vec<u32> = Vec::new();
    let harness = child.id();
    let started = std::cell::RefCell::new(started);
    // Two replicas, Redis and PostgreSQL's processes (the harness and its watchdog carry
    // the tag too, but not the run's marker), and the plan written.
    let up = common::wait_until(Duration::from_secs(20), || {
        *started.borrow_mut() = common::tagged(tag).into_iter().filter(|pid| *pid != harness && marked(*pid)).collect();
        let named = |name: &str| started.borrow().iter().filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.starts_with(name))).count();
        // The replicas start once the dependencies are ready.
        named("replicheck") >= 2 && named("redis") >= 1 && named("postgres") >= 1 && report.join("plan.json").exists()
    });
    assert!(up, "the run did not get going: {:?}", started.borrow());
    std::thread::sleep(Duration::from_millis(500));
    let run_id = run_id_of(started.borrow()[0]);
    (child, run_id)
}

fn marked(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| environ.split(|b| *b == 0).any(|entry| entry.starts_with(b"REPLICHECK_RUN=")))
}

/// The run id from a replica's environment.
fn run_id_of(pid: u32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| entry.strip_prefix("REPLICHECK_RUN=").map(str::to_owned))
        .expect("replicas carry the run id")
}

fn workspaces(run_id: &str) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("replicheck-{run_id}-"))))
        .collect()
}

fn state_file(run_id: &str) -> PathBuf {
    std::env::temp_dir().join("replicheck-runs").join(format!("{run_id}.json"))
}

fn interrupt_and_check(signal: Signal, name: &str) {
    let tag = common::tag(name);
    let dir = tempfile::tempdir().unwrap();
    let (child, run_id) = start_slow(&tag, dir.path());
    assert_eq!(workspaces(&run_id).len(), 1);
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    common::assert_interrupted(&output, signal, &dir.path().join("report"));
    assert!(stderr.contains(&format!("{}: stopping the run", signal.as_str())), "{stderr}");
    common::assert_no_leftovers(&tag);
    assert!(workspaces(&run_id).is_empty(), "temporary directories left behind");
    assert!(!state_file(&run_id).exists());
}

#[test]
fn ctrl_c_stops_every_replica_redis_and_postgres() {
    interrupt_and_check(Signal::SIGINT, "sigint");
}

#[test]
fn sigterm_stops_every_replica_redis_and_postgres() {
    interrupt_and_check(Signal::SIGTERM, "sigterm");
}

#[test]
fn a_sigkilled_harness_takes_its_processes_along_and_its_watchdog_removes_the_rest() {
    let tag = common::tag("sigkill");
    let dir = tempfile::tempdir().unwrap();
    let (mut child, run_id) = start_slow(&tag, dir.path());
    child.kill().unwrap();
    child.wait().unwrap();
    // The parent-death signal takes every replica, Redis and PostgreSQL down with the harness; the
    // watchdog, which outlives it, removes its directories and state (the watchdog itself
    // carries the tag until it is done).
    common::assert_no_leftovers(&tag);
    let gone = common::wait_until(Duration::from_secs(10), || workspaces(&run_id).is_empty() && !state_file(&run_id).exists());
    assert!(gone, "left behind: {:?}", workspaces(&run_id));
    // `clean` has nothing left to do for it, and says so without failing.
    let output = common::command(&tag, &["clean"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("dead run"));
}

#[test]
fn a_run_that_fails_to_start_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = common::write(
        dir.path(),
        "half.toml",
        r#"
[start]
command = "sh"
args = ["-c", "if [ {replica_index} = 1 ]; then exit 7; fi; exec \"$0\" demo-service --listen {host}:{port} --replica {replica}", "{replicheck}"]
"#,
    );
    let run = common::run(target.to_str().unwrap(), &["--replicas", "3"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("r1 exited (exit status 7) before it was ready"), "{}", run.stderr);
    // `common::run` has checked the process table.
}

#[test]
fn ctrl_c_during_a_rolling_restart_stops_both_incarnations_and_redis() {
    let tag = common::tag("sigint-rolling");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let child = common::spawn(
        &tag,
        &[
            "run",
            "examples/demo/fixed-redis.toml",
            "--scenarios",
            "rolling-restart",
            "--load-vus",
            "4",
            "--report-dir",
            report.to_str().unwrap(),
        ],
    );
    let harness = child.id();
    // Two replicas, Redis, and a surge incarnation beside its predecessor.
    let surging = common::wait_until(Duration::from_secs(30), || common::tagged(&tag).iter().filter(|p| **p != harness && marked(**p)).count() >= 4);
    assert!(surging, "no surge seen: {:?}", common::tagged(&tag));
    kill(Pid::from_raw(harness as i32), Signal::SIGINT).unwrap();
    let output = child.wait_with_output().unwrap();
    common::assert_interrupted(&output, Signal::SIGINT, &report);
    common::assert_no_leftovers(&tag);
}

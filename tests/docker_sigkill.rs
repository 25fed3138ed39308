//! A SIGKILLed harness cannot remove its containers; its watchdog does, with no manual
//! step. And `replicheck clean` asks the process table, not local state, whether a run
//! lives: run with another `TMPDIR`, it leaves a live run's containers alone. Alone in its
//! test binary: a concurrent run would reap the killed run first.

mod common;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};

#[test]
fn a_sigkilled_run_leaves_nothing_on_the_engine_without_clean() {
    if !common::docker_engine("a_sigkilled_run_leaves_nothing_on_the_engine_without_clean") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tag = common::tag("docker-sigkill");
    let run = common::start_slow_docker_run(&tag, dir.path());
    let run_id = run.run_id.clone();
    assert!(!common::docker_leftovers(&run_id).is_empty());
    kill(run.pid(), Signal::SIGKILL).unwrap();
    run.wait_with_output();
    let gone = common::wait_until(Duration::from_secs(30), || common::docker_leftovers(&run_id).is_empty());
    assert!(gone, "left 30 s after SIGKILL: {:?}", common::docker_leftovers(&run_id));
    common::assert_no_leftovers(&tag);
}

#[test]
fn clean_with_another_tmpdir_leaves_a_live_run_alone() {
    if !common::docker_engine("clean_with_another_tmpdir_leaves_a_live_run_alone") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tag = common::tag("docker-live");
    let run = common::start_slow_docker_run(&tag, dir.path());
    let run_id = run.run_id.clone();
    let before = common::docker_leftovers(&run_id);
    let elsewhere = tempfile::tempdir().unwrap();
    let output = common::command(&common::tag("docker-clean"), &["clean"]).env("TMPDIR", elsewhere.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(common::docker_leftovers(&run_id), before, "clean removed a live run's resources");
    kill(run.pid(), Signal::SIGINT).unwrap();
    let output = run.wait_with_output();
    common::assert_interrupted(&output, Signal::SIGINT, &dir.path().join("report"));
    assert!(common::docker_leftovers(&run_id).is_empty());
}

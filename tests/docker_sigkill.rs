//! A SIGKILLed harness cannot remove its containers; `replicheck clean`, or the next run,
//! does. Alone in its test binary: any concurrent run would reap the killed run first.

mod common;


use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn a_sigkilled_run_is_removed_by_clean_and_by_the_next_run() {
    if !common::docker_engine("a_sigkilled_run_is_removed_by_clean_and_by_the_next_run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sigkill = |name: &str| {
        let (mut child, run_id) = common::start_slow_docker_run(&common::tag(name), dir.path());
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        // Containers do not die with their harness; their labels find them.
        assert!(!common::docker_leftovers(&run_id).is_empty());
        run_id
    };

    let killed = sigkill("docker-sigkill-clean");
    let output = common::command(&common::tag("docker-clean"), &["clean"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("container(s)"), "{stdout}");
    let left = common::docker_leftovers(&killed);
    assert!(left.is_empty(), "left after clean: {left:?}");

    let killed = sigkill("docker-sigkill-next");
    common::run_docker("examples/demo/fixed-docker.toml", &["--scenarios", "forwarded-headers"]);
    let left = common::docker_leftovers(&killed);
    assert!(left.is_empty(), "left after the next run: {left:?}");
}

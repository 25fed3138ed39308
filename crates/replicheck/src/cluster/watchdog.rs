//! The run's watchdog: a second replicheck process (the hidden `watchdog` command) that
//! holds the read end of a pipe from the harness. When the pipe closes, because the run
//! ended or because the harness was SIGKILLed and could not clean up after itself, it
//! removes whatever of the run is left: processes (and what they started), directories,
//! containers, networks and volumes. Removing is idempotent: after a run that cleaned up,
//! it finds nothing.
//!
//! It runs in a process group of its own, so a Ctrl-C meant for the harness, or a kill
//! of the harness's group, does not take it along, and it carries no run marker, so the
//! run's own reaping does not kill it.

use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::reaper;

/// The harness's end: dropping it (or dying) closes the pipe.
#[derive(Debug)]
pub struct Watchdog {
    _pipe: ChildStdin,
    _child: Child,
}

impl Watchdog {
    pub fn spawn(self_exe: &Path, run_id: &str, docker: bool) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(self_exe);
        command.args(["watchdog", "--run-id", run_id]);
        if docker {
            command.arg("--docker");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_remove(reaper::RUN_MARKER)
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take().ok_or_else(|| std::io::Error::other("the watchdog has no stdin"))?;
        Ok(Self { _pipe: pipe, _child: child })
    }
}

/// The watchdog's side: waits for the pipe on stdin to close, then removes what is left
/// of the run.
pub async fn watch(run_id: &str, docker: bool) {
    // Blocking is the point: the read returns when the harness is gone.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    })
    .await;
    reaper::reap_run(run_id);
    if docker && let Ok(engine) = super::backend::docker::Engine::connect().await {
        super::backend::docker::remove_leftovers(&engine, run_id).await;
    }
}

//! A child process replicheck started (a replica or a dependency), owned by a value that
//! makes sure it cannot outlive the harness.
//!
//! Three layers, because each covers a way the others fail:
//! - the child leads its own process group, and dropping its owner SIGKILLs the group, so
//!   helper processes it forked die with it (Ctrl-C, errors, panics);
//! - the child gets SIGKILL when the harness dies (`PR_SET_PDEATHSIG`), so even a
//!   SIGKILLed harness leaves no replica running;
//! - every child carries the run's id in its environment (`reaper::RUN_MARKER`), so the
//!   next run, or `replicheck clean`, finds whatever escaped both.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::ClusterError;
use super::reaper::RUN_MARKER;

/// What to run, and where its output goes.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: OsString,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The account to run as, when not the harness's own.
    pub user: Option<RunAs>,
    pub cwd: PathBuf,
    /// stdout and stderr both go to this file.
    pub log: PathBuf,
    pub run_id: String,
}

/// An unprivileged account to run a program as: PostgreSQL's server refuses to run as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug)]
pub struct ManagedChild {
    label: String,
    child: tokio::process::Child,
    pid: Pid,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

/// How a graceful stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Exited on its own within the grace period.
    Exited { status: Option<i32>, after: Duration },
    /// Still running when the grace period ended, so it was killed.
    Killed { grace: Duration },
}

impl ManagedChild {
    /// Starts `launch`. Must be called from an async task, not a blocking thread: the
    /// parent-death signal fires when the *thread* that forked exits, and tokio's worker
    /// threads live as long as the runtime, while its blocking threads come and go.
    pub fn spawn(label: &str, launch: &Launch) -> Result<Self, ClusterError> {
        let io_error = |what: &str, source| ClusterError::Io {
            what: format!("{what} {}", launch.log.display()),
            source,
        };
        let log = std::fs::File::create(&launch.log).map_err(|e| io_error("cannot create log", e))?;
        let log_err = log.try_clone().map_err(|e| io_error("cannot open log", e))?;
        let mut command = tokio::process::Command::new(&launch.program);
        command
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .env(RUN_MARKER, &launch.run_id)
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(true);
        if let Some(user) = launch.user {
            // std drops root's supplementary groups too. The parent-death signal below is
            // set after this, as a change of user would clear it.
            command.uid(user.uid).gid(user.gid);
        }
        let harness = nix::unistd::getpid();
        // SAFETY: between fork and exec only async-signal-safe calls are made: prctl,
        // getppid and _exit.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                // The harness may have died before the line above took effect.
                if nix::unistd::getppid() != harness {
                    nix::libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| ClusterError::Spawn {
            label: label.to_owned(),
            program: launch.program.to_string_lossy().into_owned(),
            source,
        })?;
        let pid = child.id().map(|id| Pid::from_raw(id as i32)).ok_or_else(|| ClusterError::Spawn {
            label: label.to_owned(),
            program: launch.program.to_string_lossy().into_owned(),
            source: std::io::Error::other("exited at once"),
        })?;
        Ok(Self {
            label: label.to_owned(),
            child,
            pid,
            log: launch.log.clone(),
            exit: None,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status, if the process has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Sends `signal` to the main process only, as `docker stop` and Kubernetes do: a
    /// wrapper script must `exec` the app or forward the signal.
    pub fn signal(&self, signal: Signal) -> Result<(), ClusterError> {
        kill(self.pid, signal).map_err(|errno| ClusterError::Signal {
            label: self.label.clone(),
            signal: signal.as_str(),
            errno,
        })
    }

    /// Sends `signal` to the whole process group (pause and kill reach helper processes).
    pub fn signal_group(&self, signal: Signal) -> Result<(), ClusterError> {
        killpg(self.pid, signal).map_err(|errno| ClusterError::Signal {
            label: self.label.clone(),
            signal: signal.as_str(),
            errno,
        })
    }

    /// SIGTERM, then up to `grace` for the process to exit, then SIGKILL to its group.
    pub async fn stop(&mut self, grace: Duration) -> StopOutcome {
        self.stop_with(Signal::SIGTERM, grace).await
    }

    /// `signal` (the program's own graceful stop), then up to `grace` for the process to
    /// exit, then SIGKILL to its group.
    pub async fn stop_with(&mut self, signal: Signal, grace: Duration) -> StopOutcome {
        let started = tokio::time::Instant::now();
        if self.exited().is_none() {
            // A paused process cannot act on its signal.
            let _ = self.signal_group(Signal::SIGCONT);
            let _ = self.signal(signal);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                self.exit = status.ok();
                // Helpers of an app that exited are not part of its graceful stop.
                let _ = killpg(self.pid, Signal::SIGKILL);
                StopOutcome::Exited {
                    status: self.exit.and_then(|s| s.code().or(s.signal().map(|sig| 128 + sig))),
                    after: started.elapsed(),
                }
            }
            Err(_) => {
                self.kill().await;
                StopOutcome::Killed { grace }
            }
        }
    }

    /// SIGKILL to the process group, and wait for the main process to be gone.
    pub async fn kill(&mut self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
        if let Ok(status) = self.child.wait().await {
            self.exit = Some(status);
        }
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        // The group outlives its leader while helpers run, so kill it even after the
        // leader exited. tokio reaps the zombie.
        let _ = killpg(self.pid, Signal::SIGKILL);
    }
}

/// Describes an exit status the way a person reads it.
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("killed by {}", signal.as_str()),
            Err(_) => format!("killed by signal {signal}"),
        },
        _ => "unknown exit".into(),
    }
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        "  (the log is empty)".into()
    } else {
        tail.iter().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
    }
}

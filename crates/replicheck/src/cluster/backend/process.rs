//! The process backend: each replica is a local process listening on a free loopback port,
//! with its output in the run's report directory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::{Backend, Replica};
use crate::cluster::child::{Launch, ManagedChild, StopOutcome, describe_exit, log_tail};
use crate::vocab::replica::Incarnation;
use crate::cluster::{ClusterError, free_port};
use crate::step::Vars;
use crate::target::{Health, Start, Target};

pub struct ProcessBackend {
    start: Start,
    health: Health,
    cwd: PathBuf,
    logs_dir: PathBuf,
    /// The run's temporary directory: `shared/` and one directory per replica.
    workspace: PathBuf,
    run_id: String,
    probe: reqwest::Client,
}

impl ProcessBackend {
    pub fn new(target: &Target, logs_dir: &Path, run_id: &str, workspace: &Path) -> Self {
        let dir = target.dir();
        let cwd = match &target.start.cwd {
            Some(cwd) => dir.join(cwd),
            None => dir,
        };
        // Absolute once and for all: a relative command is then found from it alone, not
        // resolved against a relative cwd and again inside it by the spawned child.
        let cwd = std::fs::canonicalize(&cwd).or_else(|_| std::path::absolute(&cwd)).unwrap_or(cwd);
        Self {
            start: target.start.clone(),
            health: target.health.clone(),
            cwd,
            logs_dir: logs_dir.to_owned(),
            workspace: workspace.to_owned(),
            run_id: run_id.to_owned(),
            probe: probe_client(),
        }
    }

    fn launch_spec(&self, incarnation: Incarnation, vars: &Vars) -> Result<Launch, ClusterError> {
        let program = self.start.command.as_ref().ok_or(ClusterError::NoCommand)?.render(vars)?;
        let args = self.start.args.iter().map(|a| a.render(vars)).collect::<Result<_, _>>()?;
        let env = self
            .start
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.render(vars)?)))
            .collect::<Result<_, ClusterError>>()?;
        // A bare name is looked up on the PATH; a relative path is taken from `cwd` (made
        // absolute here, since std leaves a relative one to the platform when the child's
        // directory is set).
        let program = PathBuf::from(program);
        let program = if program.is_relative() && program.components().count() > 1 { self.cwd.join(program) } else { program };
        Ok(Launch {
            program: program.into(),
            args,
            env,
            user: None,
            cwd: self.cwd.clone(),
            log: self.logs_dir.join(format!("{incarnation}.log")),
            run_id: self.run_id.clone(),
        })
    }
}

pub use crate::client::probe_client;

impl Backend for ProcessBackend {
    type Replica = ProcessReplica;

    async fn launch(&self, incarnation: Incarnation, vars: Vars) -> Result<ProcessReplica, ClusterError> {
        let mut attempt = 1;
        loop {
            match self.launch_on(incarnation, vars.clone(), free_port()?).await {
                // Another program took the free port between our check and the replica's
                // bind (runs side by side in CI): another port, a few times.
                Err(ClusterError::ExitedBeforeReady { tail, log, .. }) if attempt < PORT_ATTEMPTS && (port_taken(&tail) || port_taken(&log_start(&log))) => {
                    attempt += 1
                }
                launched => return launched,
            }
        }
    }
}

/// Launches of one incarnation, each on a fresh port, when its port was taken.
const PORT_ATTEMPTS: u32 = 3;

/// The start of a log: where a runtime that prints a backtrace (Ruby's, say) names the error
/// its tail leaves out.
fn log_start(log: &std::path::Path) -> String {
    use std::io::Read;
    let mut start = Vec::new();
    if let Ok(file) = std::fs::File::open(log) {
        let _ = file.take(64 << 10).read_to_end(&mut start);
    }
    String::from_utf8_lossy(&start).into_owned()
}

/// Whether a log says the listening address was in use.
fn port_taken(tail: &str) -> bool {
    let tail = tail.to_ascii_lowercase();
    tail.contains("address already in use") || tail.contains("eaddrinuse") || tail.contains("address in use")
}

impl ProcessBackend {
    async fn launch_on(&self, incarnation: Incarnation, mut vars: Vars, port: u16) -> Result<ProcessReplica, ClusterError> {
        let started = Instant::now();
        // Kept across the replica's restarts: named by replica, not incarnation.
        let replica_dir = self.workspace.join("replicas").join(incarnation.id.to_string());
        std::fs::create_dir_all(&replica_dir).map_err(|source| ClusterError::Io {
            what: format!("cannot create {}", replica_dir.display()),
            source,
        })?;
        vars.insert("host".into(), Ipv4Addr::LOCALHOST.to_string());
        vars.insert("port".into(), port.to_string());
        vars.insert("shared_dir".into(), self.workspace.join("shared").to_string_lossy().into_owned());
        vars.insert("replica_dir".into(), replica_dir.to_string_lossy().into_owned());
        let launch = self.launch_spec(incarnation, &vars)?;
        let mut child = ManagedChild::spawn(&incarnation.to_string(), &launch)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let url = format!("http://{addr}{}", self.health.ready);
        let (label, log) = (child.label().to_owned(), child.log().to_owned());
        let exited = || {
            let exit = child.exited().map(|status| (describe_exit(status), log_tail(child.log(), 10)));
            std::future::ready(exit)
        };
        wait_ready(&self.probe, &url, self.start.ready_timeout, &label, &log, exited).await?;
        Ok(ProcessReplica {
            incarnation,
            addr,
            child,
            started_in: started.elapsed(),
        })
    }
}

/// Polls the readiness URL until it answers 2xx or 3xx, the replica exits (`exited`
/// returns its exit and the end of its log), or time is up. Shared by the backends.
pub async fn wait_ready<F, Fut>(probe: &reqwest::Client, url: &str, timeout: Duration, replica: &str, log: &Path, mut exited: F) -> Result<(), ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<(String, String)>>,
{
    let deadline = crate::clock::deadline(timeout);
    let mut last = "never answered".to_owned();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some((status, tail)) = exited().await {
            return Err(ClusterError::ExitedBeforeReady {
                replica: replica.to_owned(),
                status,
                tail,
                log: log.to_owned(),
            });
        }
        match probe.get(url).send().await {
            Ok(response) if response.status().is_success() || response.status().is_redirection() => return Ok(()),
            // A relay in front of an instance says why it could not reach it.
            Ok(response) => match response.headers().get(crate::balancer::ERROR_HEADER).and_then(|v| v.to_str().ok()) {
                Some(reason) => last = format!("last answered {}: {reason}", response.status()),
                None => last = format!("last answered {}", response.status()),
            },
            Err(err) if err.is_timeout() => last = "last probe timed out".into(),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::NotReady {
                replica: replica.to_owned(),
                url: url.to_owned(),
                waited: timeout,
                last,
                log: log.to_owned(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

pub struct ProcessReplica {
    incarnation: Incarnation,
    addr: SocketAddr,
    child: ManagedChild,
    started_in: Duration,
}

impl ProcessReplica {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

impl Replica for ProcessReplica {
    fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn started_in(&self) -> Duration {
        self.started_in
    }

    async fn exited(&mut self) -> bool {
        self.child.exited().is_some()
    }

    async fn exit(&mut self) -> Option<String> {
        let status = self.child.exited()?;
        Some(format!("{}; its log ends:\n{}", describe_exit(status), log_tail(self.child.log(), 5)))
    }

    async fn stop(&mut self, grace: Duration) -> StopOutcome {
        self.child.stop(grace).await
    }

    async fn kill(&mut self) {
        self.child.kill().await
    }

    async fn pause(&self) -> Result<(), ClusterError> {
        self.child.signal_group(Signal::SIGSTOP)
    }

    async fn resume(&self) -> Result<(), ClusterError> {
        self.child.signal_group(Signal::SIGCONT)
    }
}

#[cfg(test)]
mod tests {
    use super::{log_start, port_taken};

    #[test]
    fn a_taken_port_is_told_from_other_start_failures() {
        assert!(port_taken("  | Errno::EADDRINUSE: Address already in use - bind(2) for \"127.0.0.1\" port 23014"));
        assert!(port_taken("OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', 80): address in use"));
        assert!(!port_taken("boom: no config"));
        // Puma names the error above a backtrace longer than any tail.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("r2#7.log");
        let trace: String = (0..40).map(|i| format!("\tfrom /usr/lib/ruby/puma/binder.rb:{i}:in `parse'\n")).collect();
        std::fs::write(&log, format!("binder.rb:334:in `initialize': Address already in use - bind(2) for \"127.0.0.1\" port 23014 (Errno::EADDRINUSE)\n{trace}")).unwrap();
        assert!(!port_taken(&trace) && port_taken(&log_start(&log)));
    }
}

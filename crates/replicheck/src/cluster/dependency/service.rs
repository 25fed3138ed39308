//! A service of the team's own (`[dependencies.NAME]`: RabbitMQ, Memcached, a mail server)
//! run as a process: its command on a free loopback port with a directory of its own, ready
//! once it accepts a connection or its ready command succeeds, and started again on the same
//! port and directory, as the replicas were told.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{Awaited, generation_log, wait_until_ready};
use crate::cluster::ClusterError;
use crate::cluster::child::{Launch, ManagedChild, StopOutcome, describe_exit, log_tail};
use crate::cluster::reaper::RUN_MARKER;
use crate::step::Vars;
use crate::target::{ServiceDependency, ServiceReady};

#[derive(Debug)]
pub struct Service {
    recipe: Recipe,
    child: ManagedChild,
}

/// Everything about the service but its process.
#[derive(Debug)]
struct Recipe {
    name: String,
    spec: ServiceDependency,
    /// `{host}`, `{port}` and `{dir}`.
    vars: Vars,
    dir: PathBuf,
    logs_dir: PathBuf,
    target_dir: PathBuf,
    run_id: String,
    /// 1 for the first start, then one more per restart (`NAME#2.log`).
    generation: u32,
}

impl Service {
    /// Starts `spec` with its own directory `dir` (created), its output in `logs_dir`, and
    /// relative paths taken from `target_dir`.
    pub async fn start(name: &str, spec: &ServiceDependency, dir: &Path, logs_dir: &Path, target_dir: &Path, run_id: &str) -> Result<Self, ClusterError> {
        std::fs::create_dir_all(dir).map_err(|source| ClusterError::Io { what: format!("cannot create {}", dir.display()), source })?;
        let vars = Vars::from([
            ("host".into(), Ipv4Addr::LOCALHOST.to_string()),
            ("port".into(), crate::cluster::free_port()?.to_string()),
            ("dir".into(), dir.to_string_lossy().into_owned()),
        ]);
        let recipe = Recipe {
            name: name.to_owned(),
            spec: spec.clone(),
            vars,
            dir: dir.to_owned(),
            logs_dir: logs_dir.to_owned(),
            target_dir: target_dir.to_owned(),
            run_id: run_id.to_owned(),
            generation: 1,
        };
        let child = recipe.launch().await?;
        Ok(Self { recipe, child })
    }

    pub fn name(&self) -> &str {
        &self.recipe.name
    }

    /// What the replicas get as `{NAME_url}`.
    pub fn url(&self) -> String {
        self.recipe.url()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.exited().is_none()
    }

    /// SIGTERM, then SIGKILL after a while.
    pub async fn stop(&mut self) -> StopOutcome {
        self.child.stop(Duration::from_secs(10)).await
    }

    pub async fn start_again(&mut self) -> Result<(), ClusterError> {
        self.recipe.generation += 1;
        self.child = self.recipe.launch().await?;
        Ok(())
    }
}

impl Recipe {
    fn url(&self) -> String {
        self.spec.url_at(&self.vars)
    }

    async fn launch(&self) -> Result<ManagedChild, ClusterError> {
        let command = self.spec.command.as_ref().ok_or(ClusterError::Unsupported {
            backend: "process",
            what: "run a dependency that names only an image (give it a command)",
        })?;
        // As for replicas: a bare name is looked up on the PATH, a relative path is taken
        // from the target file's directory.
        let program = PathBuf::from(command.render(&self.vars)?);
        let program = if program.is_relative() && program.components().count() > 1 { self.target_dir.join(program) } else { program };
        let log = generation_log(&self.logs_dir, &self.name, self.generation);
        let launch = Launch {
            program: program.into_os_string(),
            args: self.spec.args.iter().map(|a| a.render(&self.vars)).collect::<Result<_, _>>()?,
            env: self.spec.env.iter().map(|(k, v)| Ok((k.clone(), v.render(&self.vars)?))).collect::<Result<_, ClusterError>>()?,
            user: None,
            cwd: self.dir.clone(),
            log,
            run_id: self.run_id.clone(),
        };
        let mut child = ManagedChild::spawn(&self.name, &launch)?;
        self.wait_ready(&mut child).await?;
        Ok(child)
    }

    /// Until the service is ready by its own test, it exits, or its `ready_timeout` is up.
    async fn wait_ready(&self, child: &mut ManagedChild) -> Result<(), ClusterError> {
        let port: u16 = self.vars["port"].parse().unwrap_or_default();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let (url, log) = (self.url(), child.log().to_owned());
        let exited = async || child.exited().map(|status| (describe_exit(status), log_tail(&log, 10)));
        let probe = async || match &self.spec.ready {
            ServiceReady::Tcp => match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!("connecting to {addr}: {err}")),
                Err(_) => Err(format!("connecting to {addr}: no answer within 1s")),
            },
            ServiceReady::Command(command) => {
                let command = command.render(&self.vars).map_err(|missing| missing.to_string())?;
                let probe = tokio::process::Command::new("sh")
                    .args(["-c", &command])
                    .env(RUN_MARKER, &self.run_id)
                    .current_dir(&self.target_dir)
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .output();
                match tokio::time::timeout(Duration::from_secs(5), probe).await {
                    Ok(Ok(output)) if output.status.success() => Ok(()),
                    Ok(Ok(output)) => Err(format!("`{command}` ended with {}: {}", describe_exit(output.status), String::from_utf8_lossy(&output.stderr).trim())),
                    Ok(Err(err)) => Err(format!("`{command}`: {err}")),
                    Err(_) => Err(format!("`{command}` did not finish within 5s")),
                }
            }
        };
        wait_until_ready(Awaited { name: &self.name, url: &url, timeout: self.spec.ready_timeout, log: &log }, exited, probe).await
    }
}

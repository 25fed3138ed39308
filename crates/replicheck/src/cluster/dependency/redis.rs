//! The run's Redis from the `redis-server` binary on a free loopback port: volatile unless
//! the target asks for persistence, and a chaos target like the replicas. (The docker
//! backend runs it as a container: `backend::docker::DockerRedis`.)

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Awaited, generation_log, wait_until_ready};
use crate::cluster::ClusterError;
use crate::cluster::child::{Launch, ManagedChild, StopOutcome, describe_exit, log_tail};
use crate::target::Persistence;

const READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Redis {
    child: ManagedChild,
    port: u16,
    dir: PathBuf,
    logs_dir: PathBuf,
    persistence: Persistence,
    run_id: String,
    /// 1 for the first start, then one more per restart (`redis#2.log`).
    generation: u32,
}

impl Redis {
    /// Starts `redis-server` with its data in `dir` and its output in `logs_dir`.
    pub async fn start(dir: &Path, logs_dir: &Path, persistence: Persistence, run_id: &str) -> Result<Self, ClusterError> {
        std::fs::create_dir_all(dir).map_err(|source| ClusterError::Io {
            what: format!("cannot create {}", dir.display()),
            source,
        })?;
        let port = crate::cluster::free_port()?;
        let child = launch(port, dir, &logs_dir.join("redis.log"), persistence, run_id).await?;
        Ok(Self {
            child,
            port,
            dir: dir.to_owned(),
            logs_dir: logs_dir.to_owned(),
            persistence,
            run_id: run_id.to_owned(),
            generation: 1,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.exited().is_none()
    }

    /// SIGTERM: Redis writes its append-only file, if it keeps one, and exits.
    pub async fn stop(&mut self) -> StopOutcome {
        self.child.stop(Duration::from_secs(5)).await
    }

    /// Starts Redis again on the same port and directory, so replicas reconnect to the
    /// URL they were given and find whatever the store persisted.
    pub async fn start_again(&mut self) -> Result<(), ClusterError> {
        self.generation += 1;
        let log = generation_log(&self.logs_dir, "redis", self.generation);
        self.child = launch(self.port, &self.dir, &log, self.persistence, &self.run_id).await?;
        Ok(())
    }
}

async fn launch(port: u16, dir: &Path, log: &Path, persistence: Persistence, run_id: &str) -> Result<ManagedChild, ClusterError> {
    let program = which::which("redis-server").map_err(|_| ClusterError::RedisMissing)?;
    let appendonly = if persistence == Persistence::Aof { "yes" } else { "no" };
    let launch = Launch {
        program: program.into_os_string(),
        args: [
            "--port", &port.to_string(),
            "--bind", "127.0.0.1",
            "--dir", &dir.to_string_lossy(),
            "--save", "",
            "--appendonly", appendonly,
            // Every write reaches the disk before it is acknowledged: a store restart
            // under test must not lose the last second of sessions.
            "--appendfsync", "always",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", "",
            // Redis rewrites its process title over the environment by default, which
            // would erase the run marker the reaper looks for.
            "--set-proc-title", "no",
        ]
        .map(str::to_owned)
        .to_vec(),
        env: Vec::new(),
        user: None,
        cwd: dir.to_owned(),
        log: log.to_owned(),
        run_id: run_id.to_owned(),
    };
    let mut child = ManagedChild::spawn("redis", &launch)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let log = child.log().to_owned();
    wait_for_pong(addr, &log, async || child.exited().map(|status| (describe_exit(status), log_tail(&log, 10)))).await?;
    Ok(child)
}

/// Waits until Redis at `addr` answers PING, it exits (`exited` returns how, and the end of
/// its log), or time is up. Shared by the backends.
pub async fn wait_for_pong(addr: SocketAddr, log: &Path, exited: impl AsyncFnMut() -> Option<(String, String)>) -> Result<(), ClusterError> {
    let url = format!("redis://{addr}");
    let awaited = Awaited { name: "redis", url: &url, timeout: READY_TIMEOUT, log };
    wait_until_ready(awaited, exited, async || if ping(addr).await { Ok(()) } else { Err("no PONG".into()) }).await
}

/// One PING over a fresh connection; true on `+PONG`.
pub async fn ping(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_secs(1), attempt).await.ok().flatten().unwrap_or(false)
}

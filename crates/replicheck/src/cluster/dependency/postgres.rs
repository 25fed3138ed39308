//! The run's PostgreSQL from the machine's own server binaries (Debian's live under
//! /usr/lib/postgresql/VERSION/bin): a cluster of its own in the run's directory, on a free
//! loopback port, holding one fresh database that is seeded before any replica starts.
//!
//! The server refuses to run as root, so a harness running as root runs it, and its tools,
//! as the `postgres` account (or `nobody`). A restart keeps the data unless the target says
//! it does not persist; then the server starts over empty and is seeded again, as a
//! container without a volume would be.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Awaited, generation_log, wait_until_ready};
use crate::cluster::ClusterError;
use crate::cluster::child::{Launch, ManagedChild, RunAs, StopOutcome, describe_exit, log_tail};
use crate::cluster::reaper::RUN_MARKER;
use crate::step::Vars;
use crate::target::{DatabasePersistence, PostgresDependency};

/// Long enough for a cold server on a busy CI machine; a healthy one is ready in about a second.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a setup tool (initdb, createdb, the seed) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct Postgres {
    server: Server,
    child: ManagedChild,
}

/// Everything about the server but its process.
#[derive(Debug)]
struct Server {
    bin: PathBuf,
    port: u16,
    /// Holds `data`, the cluster's directory.
    dir: PathBuf,
    logs_dir: PathBuf,
    spec: PostgresDependency,
    /// Where `seed` is taken relative to, and where `seed_command` runs.
    target_dir: PathBuf,
    user: Option<RunAs>,
    run_id: String,
    /// 1 for the first start, then one more per restart (`postgres#2.log`).
    generation: u32,
}

impl Postgres {
    /// Creates a cluster in `dir/data`, starts it with its output in `logs_dir`, creates
    /// the database and seeds it.
    pub async fn start(dir: &Path, logs_dir: &Path, spec: &PostgresDependency, target_dir: &Path, run_id: &str) -> Result<Self, ClusterError> {
        let bin = find_bin_dir().ok_or(ClusterError::PostgresMissing)?;
        let user = unprivileged()?;
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        if let Some(user) = user {
            // The account must reach its directory through the run's (root's, 0700): passing
            // through is all it may do there.
            let temp = std::env::temp_dir();
            for ancestor in dir.ancestors().skip(1).take_while(|a| a.starts_with(&temp) && *a != temp) {
                add_search_permission(ancestor).map_err(io(format!("cannot open {} to the postgres account", ancestor.display())))?;
            }
            std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).map_err(io(format!("cannot give {} to the postgres account", dir.display())))?;
        }
        let server = Server {
            bin,
            port: crate::cluster::free_port()?,
            dir: dir.to_owned(),
            logs_dir: logs_dir.to_owned(),
            spec: spec.clone(),
            target_dir: target_dir.to_owned(),
            user,
            run_id: run_id.to_owned(),
            generation: 1,
        };
        let child = server.create_and_start().await?;
        Ok(Self { server, child })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `{database_url}` and its parts, for the replicas.
    pub fn vars(&self) -> Vars {
        self.server.vars()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.exited().is_none()
    }

    /// SIGINT, PostgreSQL's fast shutdown: it ends the replicas' sessions, writes a
    /// checkpoint and exits (SIGTERM would wait for every client to disconnect).
    pub async fn stop(&mut self) -> StopOutcome {
        self.child.stop_with(Signal::SIGINT, Duration::from_secs(10)).await
    }

    /// Starts the server again on the same port, so replicas reconnect to the URL they were
    /// given: with its data, or empty and seeded again when it does not persist.
    pub async fn start_again(&mut self) -> Result<(), ClusterError> {
        self.server.generation += 1;
        self.child = match self.server.spec.persistence {
            DatabasePersistence::Disk => self.server.launch().await?,
            DatabasePersistence::None => self.server.anew().await?,
        };
        Ok(())
    }

    /// Back to the database a new deployment finds: the server stopped, its data thrown
    /// away, and a fresh database created and seeded on the same port.
    pub async fn empty(&mut self) -> Result<(), ClusterError> {
        self.stop().await;
        self.server.generation += 1;
        self.child = self.server.anew().await?;
        Ok(())
    }
}

impl Server {
    fn url(&self) -> String {
        format!("postgresql://{}@127.0.0.1:{}/{}", self.user_name(), self.port, self.database())
    }

    fn vars(&self) -> Vars {
        Vars::from([
            ("database_url".into(), self.url()),
            ("database_host".into(), "127.0.0.1".into()),
            ("database_port".into(), self.port.to_string()),
            ("database_name".into(), self.database().to_owned()),
            ("database_user".into(), self.user_name().to_owned()),
        ])
    }

    fn database(&self) -> &str {
        self.spec.database.get_ref()
    }

    fn user_name(&self) -> &str {
        self.spec.user.get_ref()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self, what: &str) -> PathBuf {
        generation_log(&self.logs_dir, what, self.generation)
    }

    /// initdb, the server, the database, the seed: the server's process once all is done.
    /// Throws the cluster's data away and creates it again.
    async fn anew(&self) -> Result<ManagedChild, ClusterError> {
        let data = self.data();
        std::fs::remove_dir_all(&data).map_err(io(format!("cannot empty {}", data.display())))?;
        self.create_and_start().await
    }

    async fn create_and_start(&self) -> Result<ManagedChild, ClusterError> {
        let data = format!("--pgdata={}", self.data().display());
        let user = format!("--username={}", self.user_name());
        // No fsync: the data must survive the server's restart, not the machine's.
        self.tool("initdb", &[data, user, "--auth=trust".into(), "--encoding=UTF8".into(), "--no-locale".into(), "--no-sync".into()], None).await?;
        let child = self.launch().await?;
        if self.database() != "postgres" {
            let mut args = self.connection_args();
            args.extend(["--maintenance-db=postgres".into(), self.database().to_owned()]);
            self.tool("createdb", &args, None).await?;
        }
        if let Some(seed) = &self.spec.seed {
            let file = self.target_dir.join(seed.get_ref());
            // psql reads it from the harness, so the account need not reach the file.
            let sql = std::fs::read(&file).map_err(io(format!("cannot read the seed {}", file.display())))?;
            let mut args = self.connection_args();
            args.extend([format!("--dbname={}", self.database())]);
            args.extend(["--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--file=-"].map(str::to_owned));
            self.tool("psql", &args, Some(sql)).await?;
        }
        if let Some(command) = &self.spec.seed_command {
            // Validation allowed only the database's placeholders, which `vars` all give.
            let command = command.render(&self.vars()).unwrap_or_else(|_| command.raw().to_owned());
            let mut setup = self.setup(OsString::from("sh"));
            setup.args(["-c", &command]).env("DATABASE_URL", self.url()).current_dir(&self.target_dir);
            self.finish("seed_command", setup, None).await?;
        }
        Ok(child)
    }

    /// `--host`, `--port` and `--username` for the client tools.
    fn connection_args(&self) -> Vec<String> {
        vec!["--host=127.0.0.1".into(), format!("--port={}", self.port), format!("--username={}", self.user_name())]
    }

    async fn launch(&self) -> Result<ManagedChild, ClusterError> {
        let data = self.data().to_string_lossy().into_owned();
        let launch = Launch {
            program: self.bin.join("postgres").into_os_string(),
            args: [
                "-D", &data,
                "-p", &self.port.to_string(),
                "-h", "127.0.0.1",
                // No Unix socket: its directory would need to exist for the account, and
                // the replicas are given a TCP URL.
                "-k", "",
                "-c", "fsync=off",
                "-c", "full_page_writes=off",
                // Eight replicas with a pool each.
                "-c", "max_connections=300",
            ]
            .map(str::to_owned)
            .to_vec(),
            env: Vec::new(),
            user: self.user,
            cwd: self.dir.clone(),
            log: self.log("postgres"),
            run_id: self.run_id.clone(),
        };
        let mut child = ManagedChild::spawn("postgres", &launch)?;
        self.wait_ready(&mut child).await?;
        Ok(child)
    }

    /// Until `pg_isready` says the server accepts connections, it exits, or time is up.
    async fn wait_ready(&self, child: &mut ManagedChild) -> Result<(), ClusterError> {
        let mut args = self.connection_args();
        args.push("--dbname=postgres".into());
        let (url, log) = (self.url(), child.log().to_owned());
        let exited = async || child.exited().map(|status| (describe_exit(status), log_tail(&log, 10)));
        let probe = async || {
            let probe = tokio::process::Command::new(self.bin.join("pg_isready"))
                .args(&args)
                .arg("--timeout=1")
                .env(RUN_MARKER, &self.run_id)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output();
            match tokio::time::timeout(Duration::from_secs(3), probe).await {
                Ok(Ok(output)) if output.status.success() => Ok(()),
                Ok(Ok(output)) => Err(String::from_utf8_lossy(&output.stdout).trim().to_owned()),
                Ok(Err(err)) => Err(format!("pg_isready: {err}")),
                Err(_) => Err("pg_isready did not answer".into()),
            }
        };
        wait_until_ready(Awaited { name: "postgres", url: &url, timeout: READY_TIMEOUT, log: &log }, exited, probe).await
    }

    /// One of the server's own tools, run to its end as the account the server runs as.
    async fn tool(&self, name: &str, args: &[String], stdin: Option<Vec<u8>>) -> Result<(), ClusterError> {
        let mut command = self.setup(self.bin.join(name).into_os_string());
        command.args(args).current_dir(&self.dir);
        if let Some(user) = self.user {
            command.uid(user.uid).gid(user.gid);
        }
        self.finish(name, command, stdin).await
    }

    /// A setup step's command, marked as the run's, its output appended to the setup log.
    fn setup(&self, program: OsString) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        command.env(RUN_MARKER, &self.run_id).stdin(Stdio::null()).process_group(0).kill_on_drop(true);
        let log = self.log("postgres-setup");
        match std::fs::OpenOptions::new().create(true).append(true).open(&log).and_then(|out| Ok((out.try_clone()?, out))) {
            Ok((out, err)) => command.stdout(out).stderr(err),
            // Then the failure, if any, is told without the tool's own words.
            Err(_) => command.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        command
    }

    /// Runs a setup step to its end; a failure names the step and ends with its output.
    async fn finish(&self, step: &str, mut command: tokio::process::Command, stdin: Option<Vec<u8>>) -> Result<(), ClusterError> {
        use tokio::io::AsyncWriteExt;
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let program = command.as_std().get_program().to_string_lossy().into_owned();
        let mut child = command.spawn().map_err(|source| ClusterError::Spawn { label: format!("postgres {step}"), program, source })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write that fails means the step exited early: its status tells why.
            let _ = pipe.write_all(&input).await;
        }
        let log = self.log("postgres-setup");
        let failed = |status: String| ClusterError::DependencySetup {
            dependency: "postgres",
            step: step.to_owned(),
            status,
            tail: log_tail(&log, 10),
            log: log.clone(),
        };
        match tokio::time::timeout(SETUP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(failed(describe_exit(status))),
            Ok(Err(source)) => Err(io(format!("cannot wait for {step}"))(source)),
            Err(_) => Err(failed(format!("still running after {}", humantime::format_duration(SETUP_TIMEOUT)))),
        }
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ClusterError {
    move |source| ClusterError::Io { what, source }
}

/// The directory holding `initdb`, `postgres` and the client tools: where `postgres` is on
/// PATH, else Debian's newest under /usr/lib/postgresql.
/// Whether this machine has the PostgreSQL server a process run starts.
pub fn installed() -> bool {
    find_bin_dir().is_some()
}

fn find_bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| ["initdb", "postgres", "pg_isready", "createdb", "psql"].iter().all(|tool| dir.join(tool).is_file());
    if let Some(dir) = which::which("postgres").ok().and_then(|p| p.parent().map(Path::to_owned))
        && complete(&dir)
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The account to run the server as when the harness is root: `postgres`, which Debian's
/// package creates, or else `nobody`.
fn unprivileged() -> Result<Option<RunAs>, ClusterError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
            return Ok(Some(RunAs { uid: user.uid.as_raw(), gid: user.gid.as_raw() }));
        }
    }
    Err(ClusterError::Io {
        what: "PostgreSQL refuses to run as root, and this machine has neither a postgres nor a nobody account to run it as".into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

/// Adds the search bit for others, so another account can pass through `dir`.
fn add_search_permission(dir: &Path) -> std::io::Result<()> {
    let mut permissions = std::fs::metadata(dir)?.permissions();
    permissions.set_mode(permissions.mode() | 0o001);
    std::fs::set_permissions(dir, permissions)
}

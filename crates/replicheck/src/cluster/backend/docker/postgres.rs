//! The run's PostgreSQL as a container, reached by the replicas as `postgres` on the run's
//! network. The image follows the official one's conventions: `POSTGRES_USER` and
//! `POSTGRES_DB` name the role and the database it creates on its first start, and
//! `pg_isready` and `psql` are on its PATH, so readiness and the seed run inside it.
//!
//! The data lives in the container: started again, it keeps them; emptied (a cold start),
//! or started again where the target says it does not persist, a new container takes its
//! place and is seeded again, as a new pod without a volume would be.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::RemoveContainerOptionsBuilder;

use super::{DockerRun, docker_error, save_logs, stop_container};
use crate::cluster::ClusterError;
use crate::cluster::child::{StopOutcome, log_tail};
use crate::cluster::dependency::{Awaited, wait_until_ready};
use crate::step::Vars;
use crate::target::{DatabasePersistence, PostgresDependency};

const DEFAULT_IMAGE: &str = "postgres:16";
/// Replicas reach it by this name on the run's network.
const HOST: &str = "postgres";
const PORT: u16 = 5432;
/// Long enough for a first start's initdb on a busy CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the seed may take.
const SEED_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct DockerPostgres {
    run: Arc<DockerRun>,
    spec: PostgresDependency,
    /// Where `seed` is taken relative to.
    target_dir: PathBuf,
    /// 1 for the first container, then one more for each that replaced it (`postgres#2`).
    generation: u32,
}

impl DockerPostgres {
    /// Starts the container, waits until it accepts connections and seeds the database.
    pub async fn start(run: Arc<DockerRun>, spec: &PostgresDependency, target_dir: PathBuf) -> Result<Self, ClusterError> {
        if spec.seed_command.is_some() {
            // The command would need the app's code, which is in the app's image: a
            // migration job of its own, not yet something a run starts.
            return Err(ClusterError::Unsupported {
                backend: "docker",
                what: "run [dependencies.postgres] seed_command (give the schema as `seed` SQL, or run the target with --backend process)",
            });
        }
        let image = spec.image.as_deref().unwrap_or(DEFAULT_IMAGE);
        run.engine.ensure_image(image).await?;
        let postgres = Self { run, spec: spec.clone(), target_dir, generation: 1 };
        postgres.create().await?;
        Ok(postgres)
    }

    /// `postgresql://app@postgres:5432/app`, on the run's network.
    pub fn url(&self) -> String {
        format!("postgresql://{}@{HOST}:{PORT}/{}", self.user(), self.database())
    }

    /// `{database_url}` and its parts, for the replicas.
    pub fn vars(&self) -> Vars {
        Vars::from([
            ("database_url".into(), self.url()),
            ("database_host".into(), HOST.into()),
            ("database_port".into(), PORT.to_string()),
            ("database_name".into(), self.database().to_owned()),
            ("database_user".into(), self.user().to_owned()),
        ])
    }

    pub async fn is_running(&self) -> bool {
        self.run.engine.stopped(&self.container()).await.is_none()
    }

    /// Stops the container with the image's stop signal (the official image's is SIGINT,
    /// PostgreSQL's fast shutdown); the data stay in it.
    pub async fn stop(&mut self) -> StopOutcome {
        stop_container(&self.run.engine, &self.container(), Duration::from_secs(10)).await
    }

    /// Starts the same container again, with its data, or a new one, empty and seeded again,
    /// when the target says the database does not persist.
    pub async fn start_again(&mut self) -> Result<(), ClusterError> {
        if self.spec.persistence == DatabasePersistence::None {
            return self.replace().await;
        }
        let container = self.container();
        self.run
            .engine
            .docker
            .start_container(&container, None)
            .await
            .map_err(docker_error(format!("cannot start {container} again")))?;
        self.wait_ready().await
    }

    /// Back to the database a new deployment finds: the container stopped and replaced by
    /// a new one, created and seeded as the first was.
    pub async fn empty(&mut self) -> Result<(), ClusterError> {
        self.stop().await;
        self.replace().await
    }

    /// A new container in place of the current one, whose output is kept in its own log.
    async fn replace(&mut self) -> Result<(), ClusterError> {
        let old = self.container();
        save_logs(&self.run.engine.docker, &old, &self.log()).await;
        let force = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        self.run.engine.docker.remove_container(&old, Some(force)).await.map_err(docker_error(format!("cannot remove {old}")))?;
        self.generation += 1;
        self.create().await
    }

    fn database(&self) -> &str {
        self.spec.database.get_ref()
    }

    fn user(&self) -> &str {
        self.spec.user.get_ref()
    }

    /// `postgres`, then `postgres#2` for the container that replaced it: names its log.
    fn role(&self) -> String {
        match self.generation {
            1 => HOST.to_owned(),
            n => format!("{HOST}#{n}"),
        }
    }

    fn container(&self) -> String {
        match self.generation {
            1 => format!("replicheck-{}-{HOST}", self.run.run_id),
            n => format!("replicheck-{}-{HOST}-{n}", self.run.run_id),
        }
    }

    fn log(&self) -> PathBuf {
        self.run.logs_dir.join(format!("{}.log", self.role()))
    }

    async fn create(&self) -> Result<(), ClusterError> {
        let image = self.spec.image.as_deref().unwrap_or(DEFAULT_IMAGE);
        let env = [format!("POSTGRES_USER={}", self.user()), format!("POSTGRES_DB={}", self.database()), "POSTGRES_HOST_AUTH_METHOD=trust".into()];
        // As for the process backend: the data must survive the server's restart, not
        // the machine's; eight replicas with a pool each.
        let cmd = ["postgres", "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300"];
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            env: Some(env.to_vec()),
            cmd: Some(cmd.map(str::to_owned).to_vec()),
            ..Default::default()
        };
        self.run.start_container(&self.container(), &self.role(), HOST, PORT, &self.log(), body).await?;
        self.wait_ready().await?;
        self.seed().await
    }

    /// Until `pg_isready` in the container says the server accepts connections over TCP
    /// (the official image's first start serves its init scripts on a socket alone), the
    /// container exits, or time is up.
    async fn wait_ready(&self) -> Result<(), ClusterError> {
        let (url, log, container) = (self.url(), self.log(), self.container());
        let engine = &self.run.engine;
        let exited = async || engine.exit_report(&container, &log).await;
        let probe = async || {
            let cmd = ["pg_isready", "-h", "127.0.0.1", "-p", &PORT.to_string(), "-U", self.user(), "-d", "postgres"].map(str::to_owned).to_vec();
            match self.run.exec(&container, cmd, None, Duration::from_secs(5)).await {
                Ok((0, _)) => Ok(()),
                Ok((_, said)) => Err(said.trim().to_owned()),
                Err(err) => Err(format!("pg_isready in its container: {err}")),
            }
        };
        let ready = wait_until_ready(Awaited { name: HOST, url: &url, timeout: READY_TIMEOUT, log: &log }, exited, probe).await;
        if ready.is_err() {
            save_logs(&engine.docker, &container, &log).await;
        }
        ready
    }

    /// The target's `seed` SQL, through `psql` in the container, stopping at the first error.
    async fn seed(&self) -> Result<(), ClusterError> {
        let Some(seed) = &self.spec.seed else { return Ok(()) };
        let file = self.target_dir.join(seed.get_ref());
        let sql = std::fs::read(&file).map_err(|source| ClusterError::Io { what: format!("cannot read the seed {}", file.display()), source })?;
        let cmd = ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", self.user(), "-d", self.database(), "-f", "-"]
            .map(str::to_owned)
            .to_vec();
        let log = self.run.logs_dir.join(format!("{HOST}-setup.log"));
        let failed = |status: String, said: &str| {
            let _ = std::fs::write(&log, said);
            ClusterError::DependencySetup { dependency: HOST, step: "psql".into(), status, tail: log_tail(&log, 10), log: log.clone() }
        };
        match self.run.exec(&self.container(), cmd, Some(sql), SEED_TIMEOUT).await {
            Ok((0, _)) => Ok(()),
            Ok((code, said)) => Err(failed(format!("exit code {code}"), &said)),
            Err(err) => Err(failed(err, "")),
        }
    }
}

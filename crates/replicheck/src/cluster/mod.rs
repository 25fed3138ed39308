//! The cluster: the replicas of the target and their dependencies, started through a
//! backend (processes or containers, or reached where they already run), and the
//! lifecycle verbs chaos uses (stop, kill, pause, resume, restart).
//!
//! A `Cluster` owns everything it started. Dropping it kills every process, removes every
//! container, network and volume, and removes the run's temporary directories; `shutdown`
//! does the same gracefully.

pub mod backend;
pub mod child;
pub mod dependency;
pub mod reaper;
/// Replica names live in the bottom layer; this path stays for the library's users.
pub use crate::vocab::replica;
pub mod watchdog;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::progress::{Observer, Progress};
use crate::step::Vars;
use crate::target::Target;
use crate::sink::{Inbox, Sink};
use crate::telemetry::{Exports, Receiver};
use backend::docker::{DockerBackend, DockerPostgres, DockerRedis, DockerRun, DockerService, Engine};
use backend::external::{ExternalBackend, ExternalSpec};
use backend::relay::Shared;
use backend::process::ProcessBackend;
pub use backend::{AnyBackend, Backend, BackendKind, Replica};
pub use child::StopOutcome;
use dependency::{Postgres, Redis, Service};
use crate::vocab::replica::{Incarnation, ReplicaId};
use watchdog::Watchdog;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    #[error("cannot start {label} (`{program}`): {source}")]
    Spawn {
        label: String,
        program: String,
        source: std::io::Error,
    },
    #[error("{replica} exited ({status}) before it was ready; its log ends with:\n{tail}\n(full log: {})", log.display())]
    ExitedBeforeReady {
        replica: String,
        status: String,
        tail: String,
        log: PathBuf,
    },
    #[error("{replica} was not ready within {}: {url} {last} (log: {})", humantime::format_duration(*waited), log.display())]
    NotReady {
        replica: String,
        url: String,
        waited: Duration,
        last: String,
        log: PathBuf,
    },
    #[error("the target declares [dependencies.redis] but redis-server is not installed; install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`) and run again")]
    RedisMissing,
    #[error("the target declares [dependencies.postgres] but PostgreSQL's server is not installed (no initdb and postgres on PATH or under /usr/lib/postgresql); install it (Debian/Ubuntu: `apt-get install postgresql`, macOS: `brew install postgresql`) and run again")]
    PostgresMissing,
    #[error("{dependency}: {step} failed ({status}); its output ends with:\n{tail}\n(full log: {})", log.display())]
    DependencySetup {
        dependency: &'static str,
        step: String,
        status: String,
        tail: String,
        log: PathBuf,
    },
    #[error("cannot send {signal} to {label}: {errno}")]
    Signal {
        label: String,
        signal: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("no replica named {0} in this run")]
    UnknownReplica(ReplicaId),
    #[error("the run has no dependency named {0} to act on")]
    UnknownDependency(String),
    #[error("the experiment {0} names no dependency to disrupt")]
    NoDependencyNamed(String),
    #[error("no replica is running to be left on its own")]
    NoneRunning,
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("cannot reach the Docker engine at {host}: {reason}\n(is Docker running? DOCKER_HOST names another engine)")]
    DockerUnreachable { host: String, reason: String },
    #[error("{what}{}", source.as_ref().map(|e| format!(": {}", crate::errors::chain(e))).unwrap_or_default())]
    Docker {
        what: String,
        source: Option<bollard::errors::Error>,
    },
    #[error("[start] of the target has no `command`, which the process backend runs; add one, or run its `image` with --backend docker")]
    NoCommand,
    #[error("[start] of the target has no `image`, which the docker backend runs; add one, or run its `command` with --backend process")]
    NoImage,
    #[error(
        "[start] of the target: {missing}{hint}",
        missing = .0,
        hint = if .0.0 == "replicheck" { ": the run was given no replicheck binary (the `replicheck` field of its configuration)" } else { "" }
    )]
    Template(#[from] crate::step::template::MissingVar),
    #[error("{0}")]
    External(String),
    #[error("the {backend} backend cannot {what}")]
    Unsupported { backend: &'static str, what: &'static str },
}

pub use crate::vocab::replica::Endpoint;

/// What a cluster needs to start.
#[non_exhaustive]
pub struct ClusterSpec {
    pub target: Arc<Target>,
    pub replicas: u16,
    pub run_id: String,
    /// Replica and dependency logs go here (the run's report directory).
    pub logs_dir: PathBuf,
    /// A replicheck binary, if the caller has one (the command line passes itself). It is
    /// what `{replicheck}` stands for in a target (the bundled demo service runs as
    /// `{replicheck} demo-service`), and it runs as the cluster's watchdog, which removes
    /// what the cluster started if this process dies without cleaning up. Without one (a
    /// library user's test binary is not replicheck), the next start's reaping does that.
    pub replicheck: Option<PathBuf>,
    pub backend: BackendKind,
    /// The instances, for the external backend.
    pub external: Option<Arc<ExternalSpec>>,
}

impl ClusterSpec {
    /// Two local processes of `target`, their logs in `logs_dir`, no replicheck binary.
    pub fn new(target: Arc<Target>, run_id: impl Into<String>, logs_dir: impl Into<PathBuf>) -> ClusterSpec {
        ClusterSpec {
            target,
            replicas: 2,
            run_id: run_id.into(),
            logs_dir: logs_dir.into(),
            replicheck: None,
            backend: BackendKind::Process,
            external: None,
        }
    }

    pub fn replicas(self, replicas: u16) -> ClusterSpec {
        ClusterSpec { replicas, ..self }
    }

    pub fn backend(self, backend: BackendKind) -> ClusterSpec {
        ClusterSpec { backend, ..self }
    }

    /// See [`ClusterSpec::replicheck`](#structfield.replicheck).
    pub fn replicheck(self, binary: impl Into<PathBuf>) -> ClusterSpec {
        ClusterSpec { replicheck: Some(binary.into()), ..self }
    }

    pub fn external(self, instances: Arc<ExternalSpec>) -> ClusterSpec {
        ClusterSpec { external: Some(instances), ..self }
    }
}

/// How replicas see replicheck's own connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vantage {
    /// Whether replicheck can pick the local address it connects to replicas from (the
    /// proxy's, a stranger's): not when they run on another host.
    pub local: bool,
    /// The address a replica sees the balancer's connections come from, when it takes the
    /// balancer for its known proxy; `None` when it should not (instances that already run
    /// and do not trust replicheck).
    pub proxy: Option<IpAddr>,
    /// The address a replica sees a stranger's connections come from, if replicheck knows
    /// it. Equal to `proxy` when a stranger cannot be told from the proxy (containers
    /// behind published ports, where every connection comes from the network's gateway).
    pub stranger: Option<IpAddr>,
}

impl Vantage {
    /// Whether replicheck can send a request the app must not take from its proxy.
    pub fn tells_strangers_apart(&self) -> bool {
        self.proxy.is_none() || self.proxy != self.stranger
    }
}

/// The run's OTLP receiver, for a target that exports telemetry.
async fn receive_telemetry(target: &Target, ip: IpAddr, run_id: &str) -> Result<Option<Receiver>, ClusterError> {
    let Some(settings) = &target.telemetry else { return Ok(None) };
    let service_name = settings.platform_resource.then(|| settings.service_name(target));
    let receiver = Receiver::start(ip, run_id, service_name)
        .await
        .map_err(|source| ClusterError::Io { what: format!("cannot listen for the replicas' telemetry on {ip}"), source })?;
    Ok(Some(receiver))
}

/// The run's side-effect sink, for a target whose replicas send work out of band.
async fn receive_deliveries(target: &Target, ip: IpAddr) -> Result<Option<Sink>, ClusterError> {
    if !target.uses_sink() {
        return Ok(None);
    }
    let sink = Sink::start(ip).await.map_err(|source| ClusterError::Io { what: format!("cannot listen for the replicas' webhooks and mail on {ip}"), source })?;
    Ok(Some(sink))
}

/// The target as its replicas are launched: with the platform's telemetry settings when
/// the run receives their telemetry.
fn launching(target: &Target, telemetry: &Option<Receiver>) -> Target {
    let mut target = target.clone();
    if telemetry.is_some() {
        target.start.env = crate::telemetry::platform_env(&target);
    }
    target
}

/// Something the replicas share that replicheck started for the run, whichever backend
/// runs it: Redis, PostgreSQL, or a service of the target's own.
enum Dependency {
    Redis(Box<Redis>),
    DockerRedis(DockerRedis),
    Postgres(Box<Postgres>),
    DockerPostgres(Box<DockerPostgres>),
    Service(Box<Service>),
    DockerService(Box<DockerService>),
}

impl Dependency {
    /// Whether it is the run's Redis, which the store experiments disrupt.
    fn is_redis(&self) -> bool {
        matches!(self, Dependency::Redis(_) | Dependency::DockerRedis(_))
    }

    /// Its name in the target file (`redis`, `postgres`, the service's).
    fn name(&self) -> &str {
        match self {
            Dependency::Redis(_) | Dependency::DockerRedis(_) => "redis",
            Dependency::Postgres(_) | Dependency::DockerPostgres(_) => "postgres",
            Dependency::Service(service) => service.name(),
            Dependency::DockerService(service) => service.name(),
        }
    }

    fn url(&self) -> String {
        match self {
            Dependency::Redis(redis) => redis.url(),
            Dependency::DockerRedis(redis) => redis.url(),
            Dependency::Postgres(postgres) => postgres.url(),
            Dependency::DockerPostgres(postgres) => postgres.url(),
            Dependency::Service(service) => service.url(),
            Dependency::DockerService(service) => service.url(),
        }
    }

    /// The placeholders it gives the replicas.
    fn vars(&self) -> Vars {
        match self {
            Dependency::Redis(_) | Dependency::DockerRedis(_) => Vars::from([("redis_url".into(), self.url())]),
            Dependency::Postgres(postgres) => postgres.vars(),
            Dependency::DockerPostgres(postgres) => postgres.vars(),
            Dependency::Service(_) | Dependency::DockerService(_) => Vars::from([(format!("{}_url", self.name()), self.url())]),
        }
    }

    async fn is_running(&mut self) -> bool {
        match self {
            Dependency::Redis(redis) => redis.is_running(),
            Dependency::DockerRedis(redis) => redis.is_running().await,
            Dependency::Postgres(postgres) => postgres.is_running(),
            Dependency::DockerPostgres(postgres) => postgres.is_running().await,
            Dependency::Service(service) => service.is_running(),
            Dependency::DockerService(service) => service.is_running().await,
        }
    }

    async fn stop(&mut self) -> StopOutcome {
        match self {
            Dependency::Redis(redis) => redis.stop().await,
            Dependency::DockerRedis(redis) => redis.stop().await,
            Dependency::Postgres(postgres) => postgres.stop().await,
            Dependency::DockerPostgres(postgres) => postgres.stop().await,
            Dependency::Service(service) => service.stop().await,
            Dependency::DockerService(service) => service.stop().await,
        }
    }

    async fn start_again(&mut self) -> Result<(), ClusterError> {
        match self {
            Dependency::Redis(redis) => redis.start_again().await,
            Dependency::DockerRedis(redis) => redis.start_again().await,
            Dependency::Postgres(postgres) => postgres.start_again().await,
            Dependency::DockerPostgres(postgres) => postgres.start_again().await,
            Dependency::Service(service) => service.start_again().await,
            Dependency::DockerService(service) => service.start_again().await,
        }
    }
}

pub struct Cluster<B: Backend = AnyBackend> {
    backend: B,
    replicas: BTreeMap<ReplicaId, B::Replica>,
    /// Old incarnations still running while their successor has taken over (a rolling
    /// restart's surge).
    retiring: Vec<B::Replica>,
    /// In the order they started: Redis, PostgreSQL, the target's own services.
    dependencies: Vec<Dependency>,
    vars: Vars,
    grace: Duration,
    exits: ExitLedger,
    /// The newest generation launched of each replica, whether it got ready or not: a
    /// name (and its log) is never given twice in a run.
    launched: BTreeMap<ReplicaId, u32>,
    vantage: Vantage,
    /// The run's OTLP receiver, when the target exports telemetry and the replicas can
    /// reach this host.
    telemetry: Option<Receiver>,
    /// The run's side-effect sink, when the target's replicas send work out of band and
    /// can reach this host.
    sink: Option<Sink>,
    /// What the docker backend created on the engine: removed once the replicas above
    /// have been dropped.
    docker: Option<Arc<DockerRun>>,
    // Declared last: dropped after the processes above are gone.
    workspace: Workspace,
    /// Closing its pipe (at drop, or when this process dies) has it remove what is left.
    _watchdog: Option<Watchdog>,
}

/// The run's temporary directories, registered so a later run can reap them.
struct Workspace {
    // Held for its drop: kills whatever still carries the run's marker.
    _registration: reaper::Registration,
    dir: tempfile::TempDir,
}

impl Workspace {
    fn create(run_id: &str) -> Result<Self, ClusterError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| ClusterError::Io { what, source }
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("replicheck-{run_id}-"))
            .tempdir()
            .map_err(io("cannot create the run's temporary directory"))?;
        std::fs::create_dir_all(dir.path().join("shared")).map_err(io("cannot create the shared directory"))?;
        let registration =
            reaper::Registration::register(run_id, vec![dir.path().to_owned()]).map_err(io("cannot register the run"))?;
        Ok(Self { _registration: registration, dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Cluster {
    /// Starts the dependencies, then every replica in parallel, and waits until all are ready.
    pub async fn start(spec: ClusterSpec, observer: &dyn Observer) -> Result<Self, ClusterError> {
        // A run killed with SIGKILL left its processes and directories: clean them first.
        reaper::reap_stale();
        let workspace = Workspace::create(&spec.run_id)?;
        // Whatever happens to this process from here on, the run's leftovers go.
        let watchdog = match (&spec.replicheck, spec.backend) {
            (None, _) | (_, BackendKind::External) => None,
            (Some(binary), backend) => Some(
                Watchdog::spawn(binary, &spec.run_id, backend == BackendKind::Docker)
                    .map_err(|source| ClusterError::Io { what: "cannot start the run's watchdog".into(), source })?,
            ),
        };
        let target = &spec.target;
        let settings = &target.balancer;
        let mut vars = Vars::new();
        vars.insert("run_id".into(), spec.run_id.clone());
        let mut telemetry = None;
        let mut sink = None;
        let mut dependencies = Vec::new();
        let (backend, vantage, docker) = match spec.backend {
            BackendKind::Process => {
                let (target_dir, workspace_dir) = (absolute(&target.dir()), workspace.path());
                if let Some(redis) = &target.dependencies.redis {
                    let redis = Redis::start(&workspace_dir.join("redis"), &spec.logs_dir, redis.persistence, &spec.run_id).await?;
                    dependencies.push(Dependency::Redis(Box::new(redis)));
                }
                if let Some(postgres) = &target.dependencies.postgres {
                    let postgres = Postgres::start(&workspace_dir.join("postgres"), &spec.logs_dir, postgres, &target_dir, &spec.run_id).await?;
                    dependencies.push(Dependency::Postgres(Box::new(postgres)));
                }
                for (name, service) in &target.dependencies.services {
                    let dir = workspace_dir.join("services").join(name);
                    let service = Service::start(name, service, &dir, &spec.logs_dir, &target_dir, &spec.run_id).await?;
                    dependencies.push(Dependency::Service(Box::new(service)));
                }
                vars.insert("target_dir".into(), absolute(&target.dir()).to_string_lossy().into_owned());
                if let Some(binary) = &spec.replicheck {
                    vars.insert("replicheck".into(), binary.to_string_lossy().into_owned());
                }
                telemetry = receive_telemetry(target, IpAddr::from([127, 0, 0, 1]), &spec.run_id).await?;
                sink = receive_deliveries(target, IpAddr::from([127, 0, 0, 1])).await?;
                let backend = ProcessBackend::new(&launching(target, &telemetry), &spec.logs_dir, &spec.run_id, workspace.path());
                let vantage = Vantage {
                    local: true,
                    proxy: Some(settings.proxy_address),
                    stranger: Some(settings.untrusted_address),
                };
                (AnyBackend::Process(backend), vantage, None)
            }
            BackendKind::Docker => {
                let engine = Engine::connect().await?;
                // A run killed with SIGKILL left its containers, network and volumes too.
                backend::docker::reap(&engine, &reaper::live_runs()).await;
                let run = Arc::new(DockerRun::create(engine, &spec.run_id, &spec.logs_dir).await?);
                if let Some(redis) = &target.dependencies.redis {
                    dependencies.push(Dependency::DockerRedis(DockerRedis::start(run.clone(), redis).await?));
                }
                if let Some(postgres) = &target.dependencies.postgres {
                    let postgres = DockerPostgres::start(run.clone(), postgres, absolute(&target.dir())).await?;
                    dependencies.push(Dependency::DockerPostgres(Box::new(postgres)));
                }
                for (name, service) in &target.dependencies.services {
                    dependencies.push(Dependency::DockerService(Box::new(DockerService::start(run.clone(), name, service).await?)));
                }
                // Containers reach the host at their network's gateway; a remote engine's
                // containers cannot reach this host at all.
                if run.engine().is_local() {
                    telemetry = receive_telemetry(target, run.gateway(), &spec.run_id).await?;
                    sink = receive_deliveries(target, run.gateway()).await?;
                }
                let backend = DockerBackend::new(run.clone(), &launching(target, &telemetry)).await?;
                let vantage = Vantage {
                    local: run.engine().is_local(),
                    proxy: Some(run.gateway()),
                    stranger: Some(run.stranger_gateway()),
                };
                (AnyBackend::Docker(backend), vantage, Some(run))
            }
            BackendKind::External => {
                let external = spec.external.clone().ok_or_else(|| ClusterError::External("the external backend needs instances (--instance or --via)".into()))?;
                // Their own store, if any, is theirs: replicheck starts none.
                let backend = ExternalBackend::new(external.clone(), target, &spec.logs_dir, spec.replicas)?;
                let vantage = Vantage {
                    local: false,
                    proxy: external.known_proxy,
                    stranger: external.known_proxy,
                };
                (AnyBackend::External(backend), vantage, None)
            }
        };
        for dependency in &dependencies {
            observer.progress(Progress::DependencyReady { name: dependency.name().to_owned(), url: crate::redact::url_password(&dependency.url()) });
            vars.extend(dependency.vars());
        }
        if let Some(proxy) = vantage.proxy {
            vars.insert("proxy_address".into(), proxy.to_string());
        }
        let mut cluster = Cluster {
            backend,
            replicas: BTreeMap::new(),
            retiring: Vec::new(),
            dependencies,
            vars,
            grace: target.start.shutdown_grace,
            exits: ExitLedger::default(),
            launched: BTreeMap::new(),
            vantage,
            telemetry,
            sink,
            docker,
            workspace,
            _watchdog: watchdog,
        };
        // One after another, each ready before the next starts, as a rolling deployment
        // starts them: one-time setup an app runs as it starts (its migrations, under a lock
        // or not) is done by one at a time. Starting them all at once is the cold-start
        // experiment's question.
        let (mut started, mut failure) = (Vec::new(), None);
        for id in 0..spec.replicas {
            let first = cluster.next_of(ReplicaId(id));
            let (endpoints, failed) = cluster.launch_together(vec![first]).await;
            started.extend(endpoints);
            if failed.is_some() {
                failure = failed;
                break;
            }
        }
        for endpoint in started {
            let took = cluster.replicas.get(&endpoint.replica.id).map(|r| r.started_in()).unwrap_or_default();
            observer.progress(Progress::ReplicaReady { replica: endpoint.replica, addr: endpoint.addr, took });
        }
        match failure {
            // Replicas that did start are dropped with `cluster`, which kills them.
            Some(err) => Err(err),
            None => Ok(cluster),
        }
    }

    /// Whether the instances run outside replicheck (staging): none can be restarted.
    pub fn runs_outside(&self) -> bool {
        matches!(self.backend, AnyBackend::External(_))
    }

    /// What the relays to external instances share: the limits and what they counted.
    pub fn relays(&self) -> Option<&Arc<Shared>> {
        match &self.backend {
            AnyBackend::External(backend) => Some(backend.shared()),
            _ => None,
        }
    }

    /// Replicas started from now on run as a hardened platform runs containers (a user
    /// that is not root, no capabilities, a read-only root filesystem, a writable /tmp),
    /// or again as the target says.
    pub fn harden(&mut self, on: bool) -> Result<(), ClusterError> {
        let backend = match (&self.backend, &self.docker) {
            (AnyBackend::Docker(_), Some(run)) => {
                run.harden(on);
                return Ok(());
            }
            (AnyBackend::Process(_), _) => "process",
            _ => "external",
        };
        Err(ClusterError::Unsupported { backend, what: "harden replicas: that takes containers" })
    }

    /// What a replica's current incarnation has written so far, where it can be read.
    pub async fn output(&mut self, id: ReplicaId) -> Option<String> {
        self.replica_mut(id).ok()?.output().await
    }

    /// Gives the replicas started from now on an empty shared directory (`{shared_dir}`),
    /// as a new deployment's volume starts empty; call it while no replica runs.
    pub async fn empty_shared(&mut self) -> Result<(), ClusterError> {
        match &self.backend {
            AnyBackend::Process(_) => {
                let shared = self.workspace.path().join("shared");
                let io = |what: &str| {
                    let what = format!("{what} {}", shared.display());
                    move |source| ClusterError::Io { what, source }
                };
                std::fs::remove_dir_all(&shared).map_err(io("cannot empty the shared directory"))?;
                std::fs::create_dir_all(&shared).map_err(io("cannot create the shared directory"))
            }
            AnyBackend::Docker(_) => match &self.docker {
                Some(run) => run.fresh_shared().await,
                None => Err(ClusterError::Unsupported { backend: "docker", what: "empty the replicas' shared volume" }),
            },
            AnyBackend::External(_) => Err(ClusterError::Unsupported { backend: "external", what: "empty the replicas' shared store" }),
        }
    }
}

impl<B: Backend> Cluster<B> {
    /// Starts one incarnation; the backend adds where it runs (`{host}`, `{port}`,
    /// `{shared_dir}`, `{replica_dir}`) to the placeholders.
    fn launch(&self, incarnation: Incarnation) -> impl Future<Output = Result<B::Replica, ClusterError>> + '_ {
        let mut vars = self.vars.clone();
        vars.insert("replica".into(), incarnation.id.to_string());
        vars.insert("replica_index".into(), incarnation.id.0.to_string());
        vars.insert("generation".into(), incarnation.generation.to_string());
        if let Some(receiver) = &self.telemetry {
            vars.insert("otlp_endpoint".into(), receiver.endpoint(incarnation.id));
        }
        let sink_port = self.sink.as_ref().map(|sink| {
            vars.insert("sink_url".into(), sink.url(incarnation.id));
            vars.insert("smtp_host".into(), sink.host());
            sink.smtp_port(incarnation.id)
        });
        async move {
            if let Some(port) = sink_port {
                let port = port.map_err(|source| ClusterError::Io { what: format!("cannot listen for {}'s mail", incarnation.id), source })?;
                vars.insert("smtp_port".into(), port.to_string());
            }
            self.backend.launch(incarnation, vars).await
        }
    }

    /// The replica's next incarnation, taken now: a launch that fails still used its name.
    fn next_of(&mut self, id: ReplicaId) -> Incarnation {
        let generation = self.launched.get(&id).map_or(1, |last| last + 1);
        self.launched.insert(id, generation);
        Incarnation { id, generation }
    }

    /// Every replica's current incarnation and address, in name order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.replicas.values().map(endpoint_of).collect()
    }

    /// Where a stranger reaches each replica's current incarnation, in name order: its
    /// address, or another route to it where the backend has one (see
    /// `Replica::stranger_addr`).
    pub fn stranger_endpoints(&self) -> Vec<Endpoint> {
        self.replicas
            .values()
            .map(|r| Endpoint { replica: r.incarnation(), addr: r.stranger_addr().unwrap_or_else(|| r.addr()) })
            .collect()
    }

    /// The current incarnation of a replica and where it listens.
    pub fn endpoint(&self, id: ReplicaId) -> Option<Endpoint> {
        self.replicas.get(&id).map(endpoint_of)
    }

    /// The run's Redis, the store that carries what replicas share at once (pub/sub), if
    /// it has one: the dependency exploration and the broadcast experiment restart.
    pub fn store(&self) -> Option<&str> {
        self.dependencies.iter().find(|d| d.is_redis()).map(Dependency::name)
    }

    /// The dependencies that are down, by name.
    pub async fn dependencies_down(&mut self) -> Vec<String> {
        let mut down = Vec::new();
        for dependency in &mut self.dependencies {
            if !dependency.is_running().await {
                down.push(dependency.name().to_owned());
            }
        }
        down
    }

    /// Every database back to what a new deployment finds (empty, then seeded), as
    /// `empty_shared` does for the shared directory; the names of those emptied.
    pub async fn empty_databases(&mut self) -> Result<Vec<String>, ClusterError> {
        let mut emptied = Vec::new();
        for dependency in &mut self.dependencies {
            match dependency {
                Dependency::Postgres(postgres) => postgres.empty().await?,
                Dependency::DockerPostgres(postgres) => postgres.empty().await?,
                _ => continue,
            }
            emptied.push(dependency.name().to_owned());
        }
        Ok(emptied)
    }

    fn dependency_mut(&mut self, name: &str) -> Result<&mut Dependency, ClusterError> {
        self.dependencies.iter_mut().find(|d| d.name() == name).ok_or_else(|| ClusterError::UnknownDependency(name.to_owned()))
    }

    /// How the replicas see replicheck's connections.
    pub fn vantage(&self) -> Vantage {
        self.vantage
    }

    /// What the replicas have sent out of band, when the run receives it.
    pub fn deliveries(&self) -> Option<Inbox> {
        self.sink.as_ref().map(Sink::inbox)
    }

    /// What the replicas have exported, when the run receives their telemetry.
    pub fn telemetry(&self) -> Option<Exports> {
        self.telemetry.as_ref().map(Receiver::exports)
    }

    fn replica_mut(&mut self, id: ReplicaId) -> Result<&mut B::Replica, ClusterError> {
        self.replicas.get_mut(&id).ok_or(ClusterError::UnknownReplica(id))
    }

    /// The target's grace period between SIGTERM and SIGKILL.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// SIGTERM to an incarnation (the current one of its replica, or one a surge
    /// replaced), up to `grace` to exit, then SIGKILL. A replaced one is forgotten once
    /// stopped; a current one stays until `start_next` or `forget`.
    pub async fn stop(&mut self, incarnation: Incarnation, grace: Duration) -> Result<StopOutcome, ClusterError> {
        if let Some(index) = self.retiring.iter().position(|r| r.incarnation() == incarnation) {
            let mut old = self.retiring.swap_remove(index);
            self.exits.end(&mut old).await;
            return Ok(old.stop(grace).await);
        }
        let replica = self.replicas.get_mut(&incarnation.id).ok_or(ClusterError::UnknownReplica(incarnation.id))?;
        if replica.incarnation() != incarnation {
            return Err(ClusterError::UnknownReplica(incarnation.id));
        }
        self.exits.end(replica).await;
        Ok(replica.stop(grace).await)
    }

    pub async fn kill(&mut self, id: ReplicaId) -> Result<(), ClusterError> {
        let replica = self.replicas.get_mut(&id).ok_or(ClusterError::UnknownReplica(id))?;
        self.exits.end(replica).await;
        replica.kill().await;
        Ok(())
    }

    pub async fn pause(&mut self, id: ReplicaId) -> Result<(), ClusterError> {
        self.replica_mut(id)?.pause().await
    }

    pub async fn resume(&mut self, id: ReplicaId) -> Result<(), ClusterError> {
        self.replica_mut(id)?.resume().await
    }

    /// Stops the replica gracefully and starts its next generation, ready.
    pub async fn restart(&mut self, id: ReplicaId) -> Result<(StopOutcome, Endpoint), ClusterError> {
        let current = self.replica_mut(id)?.incarnation();
        let stopped = self.stop(current, self.grace).await?;
        Ok((stopped, self.start_next(id).await?))
    }

    /// Starts the next incarnation of a replica whose current one is stopped or killed.
    pub async fn start_next(&mut self, id: ReplicaId) -> Result<Endpoint, ClusterError> {
        self.replica_mut(id)?;
        let next = self.next_of(id);
        let replica = self.launch(next).await?;
        let endpoint = endpoint_of(&replica);
        self.replicas.insert(id, replica);
        Ok(endpoint)
    }

    /// Starts the next incarnations of these replicas at the same instant (their current
    /// ones stopped or killed), as a new deployment starts its pods. Returns them, ready.
    pub async fn start_next_together(&mut self, ids: &[ReplicaId]) -> Result<Vec<Endpoint>, ClusterError> {
        let mut nexts = Vec::new();
        for &id in ids {
            self.replica_mut(id)?;
            nexts.push(self.next_of(id));
        }
        let (started, failure) = self.launch_together(nexts).await;
        failure.map_or(Ok(started), Err)
    }

    /// Launches these incarnations at once and keeps those that got ready; returns them,
    /// and the first failure if any did not.
    async fn launch_together(&mut self, incarnations: Vec<Incarnation>) -> (Vec<Endpoint>, Option<ClusterError>) {
        let launched = join_all(incarnations.into_iter().map(|incarnation| self.launch(incarnation))).await;
        let mut started = Vec::new();
        let mut failure = None;
        for result in launched {
            match result {
                Ok(replica) => {
                    started.push(endpoint_of(&replica));
                    self.replicas.insert(replica.incarnation().id, replica);
                }
                Err(err) => failure = failure.or(Some(err)),
            }
        }
        (started, failure)
    }

    /// Starts the replica's next incarnation beside the current one, which keeps running
    /// (as a rolling update's surge) until `retire`d. Returns the new one, ready.
    pub async fn surge(&mut self, id: ReplicaId) -> Result<Endpoint, ClusterError> {
        self.replica_mut(id)?;
        let next = self.next_of(id);
        let replica = self.launch(next).await?;
        let endpoint = endpoint_of(&replica);
        if let Some(old) = self.replicas.insert(id, replica) {
            self.retiring.push(old);
        }
        Ok(endpoint)
    }

    /// Adds a replica with the next free name, ready.
    pub async fn scale_out(&mut self) -> Result<Endpoint, ClusterError> {
        let id = ReplicaId(self.replicas.keys().next_back().map_or(0, |last| last.0 + 1));
        let first = self.next_of(id);
        let replica = self.launch(first).await?;
        let endpoint = endpoint_of(&replica);
        self.replicas.insert(id, replica);
        Ok(endpoint)
    }

    /// Incarnations that exited without replicheck stopping them, each told once, with how
    /// they exited: the current and retiring ones, and those it came upon while acting.
    pub async fn unexpected_exits(&mut self) -> Vec<(Incarnation, String)> {
        let mut exits = std::mem::take(&mut self.exits.come_upon);
        for replica in self.replicas.values_mut().chain(self.retiring.iter_mut()) {
            exits.extend(self.exits.news(replica).await);
        }
        exits
    }

    /// Whether the replica's current incarnation has exited.
    pub async fn exited(&mut self, id: ReplicaId) -> bool {
        match self.replicas.get_mut(&id) {
            Some(replica) => replica.exited().await,
            None => true,
        }
    }

    /// Marks an incarnation as told about (one that stopped answering); false when it
    /// already was.
    pub fn tell(&mut self, incarnation: Incarnation) -> bool {
        self.exits.told.insert(incarnation)
    }

    /// Forgets a stopped replica for good (scaling in).
    pub fn forget(&mut self, id: ReplicaId) {
        self.replicas.remove(&id);
    }

    /// Brings every replica back: resumes paused ones (harmless for running ones), starts
    /// the next incarnation of any that exited, and starts any dependency that is down.
    /// Returns the incarnations it started.
    pub async fn heal(&mut self) -> Result<Vec<Endpoint>, ClusterError> {
        for dependency in &mut self.dependencies {
            if !dependency.is_running().await {
                dependency.start_again().await?;
            }
        }
        let ids: Vec<ReplicaId> = self.replicas.keys().copied().collect();
        let mut started = Vec::new();
        for id in ids {
            let replica = self.replicas.get_mut(&id).ok_or(ClusterError::UnknownReplica(id))?;
            // Resuming a running replica does nothing (or fails harmlessly).
            let _ = replica.resume().await;
            if replica.exited().await {
                // Started over, but not in silence when it went by itself.
                self.exits.end(replica).await;
                let next = self.next_of(id);
                let fresh = self.launch(next).await?;
                started.push(endpoint_of(&fresh));
                self.replicas.insert(id, fresh);
            }
        }
        Ok(started)
    }

    /// Stops dependency `name` gracefully; its data stays on disk when it persists.
    pub async fn stop_dependency(&mut self, name: &str) -> Result<StopOutcome, ClusterError> {
        Ok(self.dependency_mut(name)?.stop().await)
    }

    /// Starts dependency `name` again on the same port and directory.
    pub async fn start_dependency(&mut self, name: &str) -> Result<(), ClusterError> {
        self.dependency_mut(name)?.start_again().await
    }

    /// Stops everything: replicas get SIGTERM and a short grace (the run is over, their
    /// shutdown is not under test here), then the dependencies; then containers (their
    /// logs saved), networks, volumes and directories go.
    pub async fn shutdown(mut self) {
        let grace = self.grace.min(Duration::from_secs(2));
        join_all(self.replicas.values_mut().chain(self.retiring.iter_mut()).map(|r| r.release(grace))).await;
        join_all(self.dependencies.iter_mut().map(Dependency::stop)).await;
        if let Some(docker) = &self.docker {
            docker.teardown().await;
        }
    }
}

/// Which exits are news: replicheck tells an exit it did not cause once, and never one it
/// caused.
#[derive(Default)]
struct ExitLedger {
    /// Incarnations whose unexpected exit was already told.
    told: BTreeSet<Incarnation>,
    /// Incarnations replicheck stopped or killed.
    ended: BTreeSet<Incarnation>,
    /// Exits replicheck did not cause, come upon while it acted on a replica that had
    /// already gone (stopping it, replacing it, healing the cluster): the next
    /// `unexpected_exits` tells them, so no such exit is started over in silence.
    come_upon: Vec<(Incarnation, String)>,
}

impl ExitLedger {
    /// How the replica exited, if it did by itself and that was not told yet; it is told now.
    async fn news(&mut self, replica: &mut impl Replica) -> Option<(Incarnation, String)> {
        let incarnation = replica.incarnation();
        if self.told.contains(&incarnation) || self.ended.contains(&incarnation) {
            return None;
        }
        let how = replica.exit().await?;
        self.told.insert(incarnation);
        Some((incarnation, how))
    }

    /// Replicheck ends the incarnation from now on; an exit of its own before that is kept
    /// to be told.
    async fn end(&mut self, replica: &mut impl Replica) {
        if let Some(exit) = self.news(replica).await {
            self.come_upon.push(exit);
        }
        self.ended.insert(replica.incarnation());
    }
}

fn endpoint_of(replica: &impl Replica) -> Endpoint {
    Endpoint {
        replica: replica.incarnation(),
        addr: replica.addr(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// A free loopback port for a replica or a dependency to listen on.
///
/// The replica binds it later, so another socket may take it first. Ports the system hands
/// out for outgoing connections (the ephemeral range) are taken all the time, so this
/// picks below that range, at random, where only a listener that chose the same port by
/// chance can collide; the replica then fails to start and the error shows its log.
pub fn free_port() -> Result<u16, ClusterError> {
    use rand::RngExt;
    let (ephemeral_start, _) = ephemeral_range();
    let low = 10_000.min(ephemeral_start.saturating_sub(1000));
    let mut rng = rand::rng();
    for _ in 0..64 {
        let port = rng.random_range(low..ephemeral_start);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    // A crowded range: take whatever the system gives.
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| ClusterError::Io {
            what: "cannot find a free port on 127.0.0.1".into(),
            source,
        })
}

/// The system's range of ports for outgoing connections (Linux's default if unreadable).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().filter_map(|n| n.parse().ok());
            Some((bounds.next()?, bounds.next()?))
        })
        .filter(|(start, _)| *start > 2000)
        .unwrap_or((32768, 60999))
}

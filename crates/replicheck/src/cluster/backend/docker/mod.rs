//! The docker backend: each replica is a container of the target's image, and each
//! dependency (Redis, PostgreSQL in `postgres`, a service of the target's own) a container
//! too, all on a network the run creates for itself. The balancer reaches every
//! container through a port published on the engine's host.
//!
//! Everything a run creates on the engine (containers, network, volumes) carries the label
//! `replicheck=<run id>` and the harness's host name, so it is found and removed again: at
//! the end of the run, when the run is dropped (Ctrl-C, SIGTERM, an error, a panic), and by
//! the next run or `replicheck clean` after the harness was SIGKILLed.
//!
//! This talks to the Docker API through bollard rather than testcontainers. Testcontainers
//! models one container per test value, removed when the value drops, with leftovers
//! collected by its Ryuk container, an image pulled from a registry that a CI machine may
//! not reach. A run needs what that model leaves out: a group of containers, a network and
//! volumes owned by the run and found again by label; containers replaced mid-run (a
//! surge, a second incarnation); a stop with the target's grace whose exit code and timing
//! are the result under test; pause and unpause; and Redis restarted in place so its
//! append-only file survives. Those are calls of the Docker API itself.
//!
//! A team that already describes its service as a testcontainers image can still make it
//! the replica template (`template`): testcontainers starts each container from that
//! description, and the run places, labels and handles it like its own.

mod postgres;

pub use postgres::DockerPostgres;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::process::{probe_client, wait_ready};
use crate::target::container::{ContainerTemplate, Placement, Started};
use super::{Backend, Replica};
use crate::cluster::child::{StopOutcome, log_tail};
use crate::cluster::dependency::{Awaited, wait_for_pong, wait_until_ready};
use crate::cluster::reaper;
use crate::vocab::replica::Incarnation;
use crate::cluster::ClusterError;
use crate::step::Vars;
use crate::target::{Health, Persistence, RedisDependency, ServiceDependency, ServiceReady, Start, Target};

/// The label every resource of a run carries; its value is the run's id.
pub const RUN_LABEL: &str = "replicheck";
/// The host name of the harness that owns a resource: reaping leaves other hosts' runs
/// alone when several machines share one engine.
const HOST_LABEL: &str = "replicheck.host";
/// What a container is (`r0#2`, `redis`): it names the container's log file.
const ROLE_LABEL: &str = "replicheck.role";
/// The harness that owns a resource, as the process table knows it: its pid and its start
/// time, so reaping asks the host whether the run lives, not a state file that another
/// `TMPDIR` cannot see.
const OWNER_LABEL: &str = "replicheck.owner";

/// Where the run's volumes appear inside each replica (`{shared_dir}`, `{replica_dir}`).
const SHARED_MOUNT: &str = "/replicheck-shared";
const REPLICA_MOUNT: &str = "/replicheck-replica";

const DEFAULT_REDIS_IMAGE: &str = "redis:7";
const REDIS_PORT: u16 = 6379;
/// Replicas reach Redis by this name on the run's network.
const REDIS_HOST: &str = "redis";

const PING_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// A connection to the engine `DOCKER_HOST` names (the local socket when unset).
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    /// The engine's host as seen from here: published ports are reached there.
    reach: IpAddr,
    /// Where ports are published on the engine's host: loopback for a local engine, every
    /// interface for a remote one (the harness connects from another machine).
    publish_on: IpAddr,
}

impl Engine {
    /// Connects and checks the engine answers.
    pub async fn connect() -> Result<Self, ClusterError> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_SOCKET.into());
        let unreachable = |reason: String| ClusterError::DockerUnreachable { host: host.clone(), reason };
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(crate::errors::chain(&e)))?;
        match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(unreachable(crate::errors::chain(&err))),
            Err(_) => return Err(unreachable(format!("no answer within {}", humantime::format_duration(PING_TIMEOUT)))),
        }
        let remote = remote_engine(&host);
        Ok(Self {
            docker,
            reach: remote.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            publish_on: if remote.is_some() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) },
        })
    }

    /// Whether replicas run on this machine (their ports are on loopback).
    pub fn is_local(&self) -> bool {
        self.reach.is_loopback()
    }

    /// Pulls `image` unless the engine has it.
    async fn ensure_image(&self, image: &str) -> Result<(), ClusterError> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut pull = self.docker.create_image(Some(options), None, None);
        while let Some(progress) = pull.next().await {
            progress.map_err(docker_error(format!("cannot pull the image {image} (is the name right, and can the engine reach its registry?)")))?;
        }
        Ok(())
    }

    /// The host port `container` publishes its `port` on.
    async fn published_port(&self, container: &str, port: u16) -> Result<SocketAddr, ClusterError> {
        let inspected = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(docker_error(format!("cannot inspect {container}")))?;
        let host_port = inspected
            .network_settings
            .and_then(|settings| settings.ports)
            .and_then(|mut ports| ports.remove(&format!("{port}/tcp")).flatten())
            .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| ClusterError::Docker {
                what: format!("{container} publishes no port for {port}/tcp"),
                source: None,
            })?;
        Ok(SocketAddr::new(self.reach, host_port))
    }

    /// Whether the container has stopped (or is gone, or the engine cannot say); with its
    /// exit code.
    async fn stopped(&self, container: &str) -> Option<Option<i64>> {
        match self.docker.inspect_container(container, None).await {
            Ok(inspected) => {
                let state = inspected.state.unwrap_or_default();
                (state.running != Some(true)).then_some(state.exit_code)
            }
            Err(_) => Some(None),
        }
    }

    /// If the container has stopped: how, and the end of its output (saved to `log`).
    async fn exit_report(&self, container: &str, log: &Path) -> Option<(String, String)> {
        let code = self.stopped(container).await?;
        save_logs(&self.docker, container, log).await;
        let status = code.map_or_else(|| "the container is gone".to_owned(), |code| format!("exit code {code}"));
        Some((status, log_tail(log, 10)))
    }
}

/// The remote address of a `tcp://` engine; None for a local socket or a loopback address.
fn remote_engine(host: &str) -> Option<IpAddr> {
    let url = url::Url::parse(host).ok()?;
    if !matches!(url.scheme(), "tcp" | "http" | "https") {
        return None;
    }
    let ip = (url.host_str()?, url.port().unwrap_or(2375)).to_socket_addrs().ok()?.next()?.ip();
    (!ip.is_loopback()).then_some(ip)
}

/// The container's output so far, written to `path` (replacing what was there).
async fn save_logs(docker: &Docker, container: &str, path: &Path) {
    let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail("all").build();
    let mut logs = docker.logs(container, Some(options));
    let Ok(mut file) = tokio::fs::File::create(path).await else { return };
    while let Some(Ok(chunk)) = logs.next().await {
        if file.write_all(&chunk.into_bytes()).await.is_err() {
            return;
        }
    }
    let _ = file.flush().await;
}

fn docker_error(what: String) -> impl FnOnce(bollard::errors::Error) -> ClusterError {
    move |source| ClusterError::Docker {
        what,
        source: Some(source),
    }
}

fn this_host() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// What a run owns on the engine: its network, its volumes and its containers. Dropping
/// it removes them all (see `teardown` for the graceful way, which keeps their logs).
#[derive(Debug)]
pub struct DockerRun {
    engine: Engine,
    run_id: String,
    network: String,
    /// The network's gateway: the address containers see the host's connections come from.
    gateway: IpAddr,
    /// A second network every replica is also on, reached straight from this host (a local
    /// engine only): connections that way come from its gateway, not the proxy's address,
    /// as a stranger's would. Its name and gateway.
    stranger: Option<(String, IpAddr)>,
    logs_dir: PathBuf,
    torn_down: AtomicBool,
    /// The volume replicas start with at `{shared_dir}`: the first, or an empty one made
    /// for a new start since (a volume in use cannot be emptied).
    shared: std::sync::Mutex<String>,
    fresh_shared: AtomicU32,
    /// Containers started from now on run as a restricted pod runs: not as root, without
    /// capabilities, on a read-only root filesystem (see `launch`).
    hardened: AtomicBool,
}

/// The user a hardened container runs as when its image says root or nobody (`nobody`);
/// an image that names a user of its own runs as that one, as `runAsNonRoot` lets it.
const HARDENED_USER: &str = "65534:65534";

impl DockerRun {
    /// Creates the run's network and shared volume.
    pub async fn create(engine: Engine, run_id: &str, logs_dir: &Path) -> Result<Self, ClusterError> {
        let network = format!("replicheck-{run_id}");
        let mut run = Self {
            engine,
            run_id: run_id.to_owned(),
            network: network.clone(),
            gateway: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            stranger: None,
            logs_dir: logs_dir.to_owned(),
            torn_down: AtomicBool::new(false),
            shared: std::sync::Mutex::new(String::new()),
            fresh_shared: AtomicU32::new(0),
            hardened: AtomicBool::new(false),
        };
        // From here on, a failure drops `run`, which removes whatever was created.
        run.gateway = run.create_network(&network).await?;
        if run.engine.is_local() {
            let stranger = format!("{network}-stranger");
            let gateway = run.create_network(&stranger).await?;
            run.stranger = Some((stranger, gateway));
        }
        let shared = run.volume("shared").await?;
        *crate::sync::locked(&run.shared) = shared;
        Ok(run)
    }

    /// Makes an empty shared volume for the replicas started from now on, as a new
    /// deployment's; the old one goes with the run's other volumes.
    pub async fn fresh_shared(&self) -> Result<(), ClusterError> {
        let n = self.fresh_shared.fetch_add(1, Ordering::Relaxed) + 1;
        let volume = self.volume(&format!("shared-{n}")).await?;
        *crate::sync::locked(&self.shared) = volume;
        Ok(())
    }

    fn shared_volume(&self) -> String {
        crate::sync::locked(&self.shared).clone()
    }

    /// Containers started from now on run hardened, or again as the target says.
    pub fn harden(&self, on: bool) {
        self.hardened.store(on, Ordering::Relaxed);
    }

    /// The volumes a replica starts with at `{shared_dir}` and `{replica_dir}`. Hardened
    /// replicas get volumes of their own that their unprivileged user can write, as a
    /// platform's fsGroup makes a pod's volumes writable for it.
    async fn volumes_for(&self, replica: &str) -> Result<(String, String), ClusterError> {
        if !self.hardened.load(Ordering::Relaxed) {
            return Ok((self.shared_volume(), self.volume(replica).await?));
        }
        Ok((self.owned_volume("shared-hardened").await?, self.owned_volume(&format!("{replica}-hardened")).await?))
    }

    /// A volume (memory-backed) any user may write, whichever user the image runs as.
    async fn owned_volume(&self, name: &str) -> Result<String, ClusterError> {
        let options = HashMap::from([
            ("type".to_owned(), "tmpfs".to_owned()),
            ("device".to_owned(), "tmpfs".to_owned()),
            ("o".to_owned(), "mode=1777".to_owned()),
        ]);
        self.create_volume(name, Some(options)).await
    }

    /// The user a hardened container of `image` runs as: the image's own, unless that is
    /// root (or unset, which is root).
    async fn hardened_user(&self, image: &str) -> String {
        let declared = self.engine.docker.inspect_image(image).await.ok().and_then(|i| i.config).and_then(|c| c.user).unwrap_or_default();
        let user = declared.split(':').next().unwrap_or_default();
        if matches!(user, "" | "root" | "0") { HARDENED_USER.to_owned() } else { declared }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The address the replicas see every connection from this host come from.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// The address the replicas see a stranger's connections come from: the stranger's
    /// network's gateway, or the run network's when there is none (a remote engine).
    pub fn stranger_gateway(&self) -> IpAddr {
        self.stranger.as_ref().map_or(self.gateway, |(_, gateway)| *gateway)
    }

    fn labels(&self, role: &str) -> HashMap<String, String> {
        let (pid, started) = reaper::this_harness();
        HashMap::from([
            (RUN_LABEL.to_owned(), self.run_id.clone()),
            (HOST_LABEL.to_owned(), this_host()),
            (ROLE_LABEL.to_owned(), role.to_owned()),
            (OWNER_LABEL.to_owned(), format!("{pid}:{started}")),
        ])
    }

    /// Creates (or finds) the run's volume `name`; returns its engine-wide name.
    async fn volume(&self, name: &str) -> Result<String, ClusterError> {
        self.create_volume(name, None).await
    }

    /// Creates (or finds) the run's volume `name`, of the local driver with `options`.
    async fn create_volume(&self, name: &str, options: Option<HashMap<String, String>>) -> Result<String, ClusterError> {
        let full = format!("replicheck-{}-{name}", self.run_id);
        let request = VolumeCreateRequest {
            name: Some(full.clone()),
            labels: Some(self.labels("volume")),
            driver: options.is_some().then(|| "local".to_owned()),
            driver_opts: options,
            ..Default::default()
        };
        self.engine
            .docker
            .create_volume(request)
            .await
            .map_err(docker_error(format!("cannot create the volume {full}")))?;
        Ok(full)
    }

    /// Creates one of the run's networks; returns its gateway.
    async fn create_network(&self, network: &str) -> Result<IpAddr, ClusterError> {
        let docker = &self.engine.docker;
        let request = NetworkCreateRequest {
            name: network.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(self.labels("network")),
            ..Default::default()
        };
        docker.create_network(request).await.map_err(docker_error(format!("cannot create the network {network}")))?;
        let inspected = docker
            .inspect_network(network, None)
            .await
            .map_err(docker_error(format!("cannot inspect the network {network}")))?;
        inspected
            .ipam
            .and_then(|ipam| ipam.config)
            .into_iter()
            .flatten()
            .find_map(|config| config.gateway?.parse().ok())
            .ok_or_else(|| ClusterError::Docker {
                what: format!("the network {network} has no IPv4 gateway"),
                source: None,
            })
    }

    /// Puts a replica's container on the stranger's network too; returns where a stranger
    /// reaches its `port` there (None without that network).
    async fn admit_strangers(&self, container: &str, port: u16) -> Result<Option<SocketAddr>, ClusterError> {
        let Some((network, _)) = &self.stranger else { return Ok(None) };
        let docker = &self.engine.docker;
        let request = NetworkConnectRequest { container: container.to_owned(), endpoint_config: None };
        docker
            .connect_network(network, request)
            .await
            .map_err(docker_error(format!("cannot connect {container} to {network}")))?;
        let inspected = docker.inspect_container(container, None).await.map_err(docker_error(format!("cannot inspect {container}")))?;
        let ip = inspected
            .network_settings
            .and_then(|settings| settings.networks)
            .and_then(|mut networks| networks.remove(network))
            .and_then(|endpoint| endpoint.ip_address)
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        Ok(ip.map(|ip| SocketAddr::new(ip, port)))
    }

    /// Creates and starts a container on the run's network, reachable there as `alias`,
    /// with `port` published on the engine's host. `role` (`r0#2`, `redis`) names it in
    /// messages and logs; `log` receives its output if it exits at once.
    async fn start_container(&self, name: &str, role: &str, alias: &str, port: u16, log: &Path, mut body: ContainerCreateBody) -> Result<SocketAddr, ClusterError> {
        let docker = &self.engine.docker;
        let exposed = format!("{port}/tcp");
        let binding = PortBinding {
            host_ip: Some(self.engine.publish_on.to_string()),
            // Empty: the engine picks a free port.
            host_port: Some(String::new()),
        };
        body.labels = Some(self.labels(role));
        body.hostname = Some(alias.to_owned());
        body.exposed_ports = Some(vec![exposed.clone()]);
        let host_config = body.host_config.get_or_insert_with(HostConfig::default);
        host_config.port_bindings = Some(HashMap::from([(exposed, Some(vec![binding]))]));
        host_config.network_mode = Some(self.network.clone());
        let endpoint = EndpointSettings {
            aliases: Some(vec![alias.to_owned()]),
            ..Default::default()
        };
        body.networking_config = Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(self.network.clone(), endpoint)])),
        });
        // Names are never given twice in a run; one still there is a leftover of this
        // run's, and goes.
        let leftover = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        let _ = docker.remove_container(name, Some(leftover)).await;
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        docker
            .create_container(Some(options), body)
            .await
            .map_err(docker_error(format!("cannot create the container {name}")))?;
        docker
            .start_container(name, None)
            .await
            .map_err(docker_error(format!("cannot start the container {name}")))?;
        let published = self.engine.published_port(name, port).await;
        // A container that exits at once has no ports left to inspect: say why it exited.
        if published.is_err()
            && let Some((status, tail)) = self.engine.exit_report(name, log).await
        {
            return Err(ClusterError::ExitedBeforeReady {
                replica: role.to_owned(),
                status,
                tail,
                log: log.to_owned(),
            });
        }
        published
    }

    /// Runs `cmd` in `container` to its end, `stdin` written to it; its exit code and what
    /// it wrote. The image must have the program; `timeout` bounds the whole.
    async fn exec(&self, container: &str, cmd: Vec<String>, stdin: Option<Vec<u8>>, timeout: Duration) -> Result<(i64, String), String> {
        let docker = &self.engine.docker;
        let options = bollard::models::ExecConfig {
            cmd: Some(cmd),
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = docker.create_exec(container, options).await.map_err(|e| e.to_string())?;
        let mut said = Vec::new();
        if let bollard::exec::StartExecResults::Attached { mut output, mut input } = docker.start_exec(&exec.id, None).await.map_err(|e| e.to_string())? {
            let talked = async {
                if let Some(stdin) = stdin {
                    // A write that fails means the command exited early: its code tells why.
                    let _ = input.write_all(&stdin).await;
                    let _ = input.shutdown().await;
                }
                while let Some(Ok(chunk)) = output.next().await {
                    said.extend_from_slice(&chunk.into_bytes());
                }
            };
            if tokio::time::timeout(timeout, talked).await.is_err() {
                return Err(format!("still running after {}", humantime::format_duration(timeout)));
            }
        }
        let inspected = docker.inspect_exec(&exec.id).await.map_err(|e| e.to_string())?;
        let code = inspected.exit_code.ok_or_else(|| format!("still running after {}", humantime::format_duration(timeout)))?;
        Ok((code, String::from_utf8_lossy(&said).into_owned()))
    }

    /// Saves every container's output into the report directory, then removes the run's
    /// containers, network and volumes.
    pub async fn teardown(&self) {
        if !self.torn_down.swap(true, Ordering::SeqCst) {
            remove_run(&self.engine.docker, &self.run_id, Some(&self.logs_dir)).await;
        }
    }
}

impl Drop for DockerRun {
    fn drop(&mut self) {
        if self.torn_down.load(Ordering::SeqCst) {
            return;
        }
        // Drop may run inside the async runtime (a cancelled run), which cannot block on
        // itself: the removal gets a thread and a runtime of its own, and a new client,
        // since connections belong to the runtime that opened them.
        let (run_id, logs_dir) = (self.run_id.clone(), self.logs_dir.clone());
        let removal = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            let Ok(docker) = Docker::connect_with_defaults() else { return };
            runtime.block_on(remove_run(&docker, &run_id, Some(&logs_dir)));
        });
        let _ = removal.join();
    }
}

/// What a removal took away.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub runs: usize,
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
}

/// Removes every container, network and volume labelled with `run_id`, saving each
/// container's output into `logs_dir` first when given.
async fn remove_run(docker: &Docker, run_id: &str, logs_dir: Option<&Path>) -> Removed {
    let filter = HashMap::from([("label", vec![format!("{RUN_LABEL}={run_id}")])]);
    let mut removed = Removed {
        runs: 1,
        ..Removed::default()
    };
    let listed = ListContainersOptionsBuilder::new().all(true).filters(&filter).build();
    let containers = docker.list_containers(Some(listed)).await.unwrap_or_default();
    for container in containers {
        let Some(id) = container.id else { continue };
        if let (Some(dir), Some(role)) = (logs_dir, container.labels.as_ref().and_then(|l| l.get(ROLE_LABEL))) {
            save_logs(docker, &id, &dir.join(format!("{role}.log"))).await;
        }
        let force = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        if docker.remove_container(&id, Some(force)).await.is_ok() {
            removed.containers += 1;
        }
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filter).build()))
        .await
        .unwrap_or_default();
    for network in networks {
        if let Some(id) = network.id
            && docker.remove_network(&id).await.is_ok()
        {
            removed.networks += 1;
        }
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filter).build()))
        .await
        .map(|listed| listed.volumes.unwrap_or_default())
        .unwrap_or_default();
    for volume in volumes {
        let force = RemoveVolumeOptionsBuilder::new().force(true).build();
        if docker.remove_volume(&volume.name, Some(force)).await.is_ok() {
            removed.volumes += 1;
        }
    }
    removed
}

/// Removes every container, network and volume of one run (the watchdog's work).
pub async fn remove_leftovers(engine: &Engine, run_id: &str) -> Removed {
    remove_run(&engine.docker, run_id, None).await
}

/// Removes what dead runs of this host left on the engine. A run is dead when the
/// harness its resources name is gone from the process table; resources without an
/// owner label (older runs) are dead unless their run is in `live`.
pub async fn reap(engine: &Engine, live: &BTreeSet<String>) -> Removed {
    let docker = &engine.docker;
    let filter = HashMap::from([("label", vec![format!("{HOST_LABEL}={}", this_host())])]);
    let mut labelled: Vec<HashMap<String, String>> = Vec::new();
    let listed = ListContainersOptionsBuilder::new().all(true).filters(&filter).build();
    let containers = docker.list_containers(Some(listed)).await.unwrap_or_default();
    labelled.extend(containers.into_iter().filter_map(|c| c.labels));
    let networks = docker
        .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filter).build()))
        .await
        .unwrap_or_default();
    labelled.extend(networks.into_iter().filter_map(|n| n.labels));
    let volumes = docker
        .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filter).build()))
        .await
        .map(|listed| listed.volumes.unwrap_or_default())
        .unwrap_or_default();
    labelled.extend(volumes.into_iter().map(|v| v.labels));
    let dead: BTreeSet<String> = labelled
        .iter()
        .filter_map(|labels| {
            let run_id = labels.get(RUN_LABEL)?;
            let owner = labels.get(OWNER_LABEL).and_then(|owner| {
                let (pid, started) = owner.split_once(':')?;
                Some((pid.parse().ok()?, started.parse().ok()?))
            });
            let alive = match owner {
                Some((pid, started)) => reaper::alive(pid, started),
                None => live.contains(run_id),
            };
            (!alive).then(|| run_id.clone())
        })
        .collect();
    let mut removed = Removed::default();
    for run_id in &dead {
        let one = remove_run(docker, run_id, None).await;
        removed.runs += 1;
        removed.containers += one.containers;
        removed.networks += one.networks;
        removed.volumes += one.volumes;
    }
    removed
}

/// Replicas as containers of the target's image.
pub struct DockerBackend {
    run: Arc<DockerRun>,
    image: Image,
    start: Start,
    health: Health,
    probe: reqwest::Client,
}

/// What a replica's container is made from.
enum Image {
    /// The target's `image`, with its `args` and `env`.
    Named(String),
    /// A testcontainers image, which testcontainers starts (and pulls if it must).
    Template(ContainerTemplate),
}

impl DockerBackend {
    /// Makes sure the engine has the target's image (pulling it if not).
    pub async fn new(run: Arc<DockerRun>, target: &Target) -> Result<Self, ClusterError> {
        let image = match (&target.start.container, &target.start.image) {
            (Some(template), _) => Image::Template(template.clone()),
            (None, Some(image)) => {
                run.engine.ensure_image(image).await?;
                Image::Named(image.clone())
            }
            (None, None) => return Err(ClusterError::NoImage),
        };
        Ok(Self {
            run,
            image,
            start: target.start.clone(),
            health: target.health.clone(),
            probe: probe_client(),
        })
    }

    fn container_body(&self, image: &str, vars: &Vars) -> Result<ContainerCreateBody, ClusterError> {
        let cmd: Vec<String> = self.start.args.iter().map(|a| a.render(vars)).collect::<Result<_, _>>()?;
        let env = self
            .start
            .env
            .iter()
            .map(|(k, v)| Ok(format!("{k}={}", v.render(vars)?)))
            .collect::<Result<_, ClusterError>>()?;
        Ok(ContainerCreateBody {
            image: Some(image.to_owned()),
            // No args: the image's own command.
            cmd: (!cmd.is_empty()).then_some(cmd),
            env: Some(env),
            ..Default::default()
        })
    }
}

impl Backend for DockerBackend {
    type Replica = DockerReplica;

    async fn launch(&self, incarnation: Incarnation, mut vars: Vars) -> Result<DockerReplica, ClusterError> {
        let started = Instant::now();
        let run = &self.run;
        vars.insert("host".into(), "0.0.0.0".into());
        vars.insert("port".into(), self.start.port.to_string());
        vars.insert("shared_dir".into(), SHARED_MOUNT.into());
        vars.insert("replica_dir".into(), REPLICA_MOUNT.into());
        let (shared, own) = run.volumes_for(&incarnation.id.to_string()).await?;
        let hardened = run.hardened.load(Ordering::Relaxed);
        let name = format!("replicheck-{}-{}-{}", run.run_id, incarnation.id, incarnation.generation);
        let role = incarnation.to_string();
        let log = run.logs_dir.join(format!("{role}.log"));
        let mut started_by_testcontainers = None;
        let addr = match &self.image {
            Image::Named(image) => {
                let mut body = self.container_body(image, &vars)?;
                let mut host = HostConfig {
                    binds: Some(vec![format!("{shared}:{SHARED_MOUNT}"), format!("{own}:{REPLICA_MOUNT}")]),
                    ..Default::default()
                };
                if hardened {
                    // As a restricted pod runs: not root, no capabilities, no privilege
                    // escalation, a read-only root filesystem and a writable /tmp.
                    body.user = Some(run.hardened_user(image).await);
                    host.readonly_rootfs = Some(true);
                    host.cap_drop = Some(vec!["ALL".into()]);
                    host.security_opt = Some(vec!["no-new-privileges".into()]);
                    host.tmpfs = Some(HashMap::from([("/tmp".to_owned(), "rw,nosuid,nodev,mode=1777".to_owned())]));
                }
                body.host_config = Some(host);
                run.start_container(&name, &role, &incarnation.id.to_string(), self.start.port, &log, body).await?
            }
            Image::Template(_) if hardened => {
                return Err(ClusterError::Unsupported { backend: "docker", what: "harden a testcontainers template's container" });
            }
            Image::Template(template) => {
                let placement = Placement {
                    name: name.clone(),
                    labels: run.labels(&role),
                    network: run.network.clone(),
                    volumes: vec![(shared, SHARED_MOUNT.to_owned()), (own, REPLICA_MOUNT.to_owned())],
                    publish_on: run.engine.publish_on,
                    env: self.start.env.iter().map(|(k, v)| Ok((k.clone(), v.render(&vars)?))).collect::<Result<_, ClusterError>>()?,
                };
                let leftover = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
                let _ = run.engine.docker.remove_container(&name, Some(leftover)).await;
                let container = template.launch(placement).await.map_err(|why| {
                    ClusterError::Docker { what: format!("testcontainers could not start {role} from {}: {why}", template.image), source: None }
                })?;
                started_by_testcontainers = Some(container);
                run.engine.published_port(&name, template.port).await?
            }
        };
        let port = match &self.image {
            Image::Named(_) => self.start.port,
            Image::Template(template) => template.port,
        };
        let stranger = run.admit_strangers(&name, port).await?;
        let url = format!("http://{addr}{}", self.health.ready);
        let engine = &run.engine;
        let ready = wait_ready(&self.probe, &url, self.start.ready_timeout, &role, &log, || engine.exit_report(&name, &log)).await;
        if let Err(err) = ready {
            save_logs(&engine.docker, &name, &log).await;
            return Err(err);
        }
        Ok(DockerReplica {
            incarnation,
            engine: engine.clone(),
            container: name,
            addr,
            stranger,
            started_in: started.elapsed(),
            log,
            _testcontainers: started_by_testcontainers,
        })
    }
}

pub struct DockerReplica {
    incarnation: Incarnation,
    engine: Engine,
    container: String,
    addr: SocketAddr,
    /// Where a stranger reaches it: on the stranger's network.
    stranger: Option<SocketAddr>,
    started_in: Duration,
    log: PathBuf,
    /// Held while the replica runs when testcontainers started it.
    _testcontainers: Option<Started>,
}

impl Replica for DockerReplica {
    fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn stranger_addr(&self) -> Option<SocketAddr> {
        self.stranger
    }

    fn started_in(&self) -> Duration {
        self.started_in
    }

    async fn exited(&mut self) -> bool {
        self.engine.stopped(&self.container).await.is_some()
    }

    async fn exit(&mut self) -> Option<String> {
        // Watched while the run goes on: an engine that does not answer one inspection is
        // no news of the container, only the engine saying it stopped or is gone is.
        match self.engine.docker.inspect_container(&self.container, None).await {
            Ok(inspected) if inspected.state.as_ref().and_then(|s| s.running) == Some(true) => return None,
            Ok(_) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(_) => return None,
        }
        let (status, tail) = self.engine.exit_report(&self.container, &self.log).await?;
        Some(format!("{status}; its log ends:\n{tail}"))
    }

    async fn stop(&mut self, grace: Duration) -> StopOutcome {
        stop_container(&self.engine, &self.container, grace).await
    }

    async fn kill(&mut self) {
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        let _ = self.engine.docker.kill_container(&self.container, Some(options)).await;
        // The engine answers before it has recorded the exit; wait until it has.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.engine.stopped(&self.container).await.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn output(&mut self) -> Option<String> {
        save_logs(&self.engine.docker, &self.container, &self.log).await;
        tokio::fs::read_to_string(&self.log).await.ok()
    }

    async fn pause(&self) -> Result<(), ClusterError> {
        let docker = &self.engine.docker;
        docker
            .pause_container(&self.container)
            .await
            .map_err(docker_error(format!("cannot pause {}", self.incarnation)))
    }

    async fn resume(&self) -> Result<(), ClusterError> {
        let docker = &self.engine.docker;
        docker
            .unpause_container(&self.container)
            .await
            .map_err(docker_error(format!("cannot unpause {}", self.incarnation)))
    }
}

/// `docker stop`: the image's stop signal (SIGTERM unless it says otherwise), then
/// SIGKILL when `grace` ends. The engine counts the grace in whole seconds.
async fn stop_container(engine: &Engine, container: &str, grace: Duration) -> StopOutcome {
    let started = Instant::now();
    let seconds = grace.as_secs_f64().ceil() as i32;
    let options = StopContainerOptionsBuilder::new().t(seconds).build();
    let _ = engine.docker.stop_container(container, Some(options)).await;
    let after = started.elapsed();
    let code = engine.stopped(container).await.flatten();
    // 137 is SIGKILL's exit code; an app that takes the whole grace and then exits with
    // it on its own is indistinguishable, and rare.
    let whole_grace = Duration::from_secs(seconds.max(0) as u64);
    if code == Some(137) && after + Duration::from_millis(100) >= whole_grace {
        StopOutcome::Killed { grace: whole_grace }
    } else {
        StopOutcome::Exited {
            status: code.and_then(|c| i32::try_from(c).ok()),
            after,
        }
    }
}

/// The run's Redis as a container, reached by the replicas as `redis` on the run's network.
#[derive(Debug)]
pub struct DockerRedis {
    run: Arc<DockerRun>,
    container: String,
    addr: SocketAddr,
}

impl DockerRedis {
    pub async fn start(run: Arc<DockerRun>, redis: &RedisDependency) -> Result<Self, ClusterError> {
        let image = redis.image.as_deref().unwrap_or(DEFAULT_REDIS_IMAGE);
        run.engine.ensure_image(image).await?;
        let appendonly = if redis.persistence == Persistence::Aof { "yes" } else { "no" };
        let cmd = [
            "redis-server",
            "--appendonly", appendonly,
            // As for the process backend: no acknowledged write may be lost by a restart.
            "--appendfsync", "always",
            "--save", "",
            "--protected-mode", "no",
        ];
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(cmd.map(str::to_owned).to_vec()),
            ..Default::default()
        };
        let container = format!("replicheck-{}-redis", run.run_id);
        let log = run.logs_dir.join("redis.log");
        let addr = run.start_container(&container, "redis", REDIS_HOST, REDIS_PORT, &log, body).await?;
        let redis = Self { run, container, addr };
        redis.wait_ready().await?;
        Ok(redis)
    }

    async fn wait_ready(&self) -> Result<(), ClusterError> {
        let log = self.run.logs_dir.join("redis.log");
        let engine = &self.run.engine;
        let ready = wait_for_pong(self.addr, &log, || engine.exit_report(&self.container, &log)).await;
        if ready.is_err() {
            save_logs(&engine.docker, &self.container, &log).await;
        }
        ready
    }

    /// The URL replicas use, on the run's network.
    pub fn url(&self) -> String {
        format!("redis://{REDIS_HOST}:{REDIS_PORT}/0")
    }

    pub async fn is_running(&self) -> bool {
        self.run.engine.stopped(&self.container).await.is_none()
    }

    /// Stops the container; its data stays in the container's file system.
    pub async fn stop(&mut self) -> StopOutcome {
        stop_container(&self.run.engine, &self.container, Duration::from_secs(5)).await
    }

    /// Starts the same container again, so replicas reconnect to the same name and find
    /// whatever it persisted. The engine may publish it on another host port.
    pub async fn start_again(&mut self) -> Result<(), ClusterError> {
        let engine = &self.run.engine;
        engine
            .docker
            .start_container(&self.container, None)
            .await
            .map_err(docker_error(format!("cannot start {} again", self.container)))?;
        self.addr = engine.published_port(&self.container, REDIS_PORT).await?;
        self.wait_ready().await
    }
}

/// A service of the target's own (`[dependencies.NAME]`) as a container of its image,
/// reached by the replicas by its name on the run's network; or started by testcontainers
/// from the team's own description, and reached by its container's name.
pub struct DockerService {
    run: Arc<DockerRun>,
    name: String,
    container: String,
    spec: ServiceDependency,
    port: u16,
    /// The testcontainers handle of a container started from a template, held while the
    /// run lasts (the run removes the container by its labels too).
    _testcontainers: Option<Started>,
}

impl std::fmt::Debug for DockerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerService").field("name", &self.name).field("container", &self.container).finish_non_exhaustive()
    }
}

impl DockerService {
    pub async fn start(run: Arc<DockerRun>, name: &str, spec: &ServiceDependency) -> Result<Self, ClusterError> {
        let (Some(image), Some(port)) = (&spec.image, spec.port) else {
            return Err(ClusterError::Unsupported { backend: "docker", what: "run a dependency without an image and its port (give it `image` and `port`)" });
        };
        let container = format!("replicheck-{}-{name}", run.run_id);
        if let Some(template) = &spec.container {
            let placement = Placement {
                name: container.clone(),
                labels: run.labels(name),
                network: run.network.clone(),
                volumes: Vec::new(),
                publish_on: run.engine.publish_on,
                env: Vec::new(),
            };
            let started = template.launch(placement).await.map_err(|why| ClusterError::Docker {
                what: format!("testcontainers could not start the dependency {name} from {}: {why}", template.image),
                source: None,
            })?;
            let service = Self { run, name: name.to_owned(), container, spec: spec.clone(), port, _testcontainers: Some(started) };
            service.wait_ready().await?;
            return Ok(service);
        }
        let service = Self { run, name: name.to_owned(), container, spec: spec.clone(), port, _testcontainers: None };
        service.run.engine.ensure_image(image).await?;
        let vars = service.vars();
        let env = spec.env.iter().map(|(k, v)| Ok(format!("{k}={}", v.render(&vars)?))).collect::<Result<Vec<_>, ClusterError>>()?;
        let args = spec.args.iter().map(|a| a.render(&vars)).collect::<Result<Vec<_>, _>>()?;
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            // Its image's own command unless the target gives arguments.
            cmd: (!args.is_empty()).then_some(args),
            env: Some(env),
            ..Default::default()
        };
        service.run.start_container(&service.container, name, name, port, &service.log(), body).await?;
        service.wait_ready().await?;
        Ok(service)
    }

    /// `{host}` (its name on the run's network: the container's own for one testcontainers
    /// started, which gives it no other), `{port}` (in its container) and `{dir}`.
    fn vars(&self) -> Vars {
        let host = if self.spec.container.is_some() { &self.container } else { &self.name };
        Vars::from([("host".into(), host.clone()), ("port".into(), self.port.to_string()), ("dir".into(), "/data".into())])
    }

    fn log(&self) -> PathBuf {
        self.run.logs_dir.join(format!("{}.log", self.name))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the replicas get as `{NAME_url}`.
    pub fn url(&self) -> String {
        self.spec.url_at(&self.vars())
    }

    pub async fn is_running(&self) -> bool {
        self.run.engine.stopped(&self.container).await.is_none()
    }

    pub async fn stop(&mut self) -> StopOutcome {
        stop_container(&self.run.engine, &self.container, Duration::from_secs(10)).await
    }

    /// Starts the same container again: the same name on the network, its own file system.
    pub async fn start_again(&mut self) -> Result<(), ClusterError> {
        self.run
            .engine
            .docker
            .start_container(&self.container, None)
            .await
            .map_err(docker_error(format!("cannot start {} again", self.container)))?;
        self.wait_ready().await
    }

    /// Until the service accepts a connection on its address on the run's network (the
    /// engine's published port would accept for it before it listens), its ready command
    /// succeeds in its container, it exits, or its `ready_timeout` is up.
    async fn wait_ready(&self) -> Result<(), ClusterError> {
        let (url, log) = (self.url(), self.log());
        let engine = &self.run.engine;
        let exited = async || engine.exit_report(&self.container, &log).await;
        let probe = async || match &self.spec.ready {
            ServiceReady::Tcp => {
                let addr = match self.network_address().await {
                    Some(addr) if engine.is_local() => addr,
                    _ => engine.published_port(&self.container, self.port).await.map_err(|err| err.to_string())?,
                };
                match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(err)) => Err(format!("connecting to {addr}: {err}")),
                    Err(_) => Err(format!("connecting to {addr}: no answer within 1s")),
                }
            }
            ServiceReady::Command(command) => {
                let command = command.render(&self.vars()).map_err(|missing| missing.to_string())?;
                let sh = ["sh", "-c", &command].map(str::to_owned).to_vec();
                match self.run.exec(&self.container, sh, None, Duration::from_secs(5)).await {
                    Ok((0, _)) => Ok(()),
                    Ok((code, _)) => Err(format!("`{command}` in its container ended with exit code {code}")),
                    Err(err) => Err(format!("`{command}` in its container: {err}")),
                }
            }
        };
        let ready = wait_until_ready(Awaited { name: &self.name, url: &url, timeout: self.spec.ready_timeout, log: &log }, exited, probe).await;
        if ready.is_err() {
            save_logs(&engine.docker, &self.container, &log).await;
        }
        ready
    }

    /// The container's address on the run's network, with its port.
    async fn network_address(&self) -> Option<SocketAddr> {
        let inspected = self.run.engine.docker.inspect_container(&self.container, None).await.ok()?;
        let ip = inspected.network_settings?.networks?.remove(&self.run.network)?.ip_address?;
        Some(SocketAddr::new(ip.parse().ok()?, self.port))
    }
}

//! The target's replicas, dependencies and balancer, kept running: for a person to try by
//! hand (`replicheck up`) or for a test's own requests and disruptions. No users, no
//! checks; the cluster stops when the caller drops or shuts it down.

use std::path::PathBuf;
use std::sync::Arc;

use crate::balancer::Balancer;
use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::cluster::{BackendKind, Cluster, ClusterError, ClusterSpec, StopOutcome};
use crate::progress::Observer;
use crate::driver::{Edge, ReportDir, RunError, create_report_dir, run_id, start_service};
use crate::target::Target;

#[non_exhaustive]
pub struct UpConfig {
    pub target: Target,
    pub replicas: u16,
    pub backend: BackendKind,
    /// Where replica and dependency logs go.
    pub report_dir: ReportDir,
    /// A replicheck binary, for `{replicheck}` in the target and the cluster's watchdog
    /// (see [`ClusterSpec::replicheck`](crate::cluster::ClusterSpec#structfield.replicheck)).
    pub replicheck: Option<PathBuf>,
}

impl UpConfig {
    /// Two replicas of `target` (the process backend, or docker when the target names only
    /// an image), their logs under `reports/`.
    pub fn new(target: Target) -> UpConfig {
        let backend = BackendKind::choose(None, &target.start).unwrap_or(BackendKind::Process);
        UpConfig {
            target,
            replicas: 2,
            backend,
            report_dir: ReportDir::at_or_default(None),
            replicheck: None,
        }
    }

    pub fn replicas(self, replicas: u16) -> UpConfig {
        UpConfig { replicas, ..self }
    }

    pub fn backend(self, backend: BackendKind) -> UpConfig {
        UpConfig { backend, ..self }
    }

    pub fn report_dir(self, report_dir: ReportDir) -> UpConfig {
        UpConfig { report_dir, ..self }
    }

    /// See [`UpConfig::replicheck`](#structfield.replicheck).
    pub fn replicheck(self, binary: impl Into<PathBuf>) -> UpConfig {
        UpConfig { replicheck: Some(binary.into()), ..self }
    }
}

/// A running cluster behind its balancer. Dropping it stops every replica and dependency;
/// `shutdown` does so gracefully.
pub struct Up {
    pub cluster: Cluster,
    pub balancer: Balancer,
    pub logs_dir: PathBuf,
}

pub async fn start(config: UpConfig, observer: &dyn Observer) -> Result<Up, RunError> {
    if config.backend == BackendKind::Process {
        config.target.check_local_addresses()?;
    }
    let run_id = run_id("up");
    let logs_dir = create_report_dir(&config.report_dir, &run_id)?;
    let spec = ClusterSpec {
        target: Arc::new(config.target),
        replicas: config.replicas,
        run_id,
        logs_dir: logs_dir.clone(),
        replicheck: config.replicheck,
        backend: config.backend,
        external: None,
    };
    let (cluster, balancer) = start_service(spec, Edge::Http, observer).await?;
    Ok(Up { cluster, balancer, logs_dir })
}

impl Up {
    /// The balancer's base URL (plain http), for the test's own requests.
    pub fn balancer_url(&self) -> String {
        self.balancer.entrance().url("")
    }

    /// Each replica's own base URL, in replica order, bypassing the balancer (a stopped one
    /// answers nothing until `restart`).
    pub fn replica_urls(&self) -> Vec<String> {
        self.cluster.endpoints().iter().map(|e| format!("http://{}", e.addr)).collect()
    }

    /// SIGKILL to replica `index` (0-based), as an OOM killer would; the balancer stops
    /// routing to it at once.
    pub async fn kill(&mut self, index: u16) -> Result<(), ClusterError> {
        let replica = self.current(index)?;
        self.balancer.upstreams().remove(replica);
        self.cluster.kill(replica.id).await
    }

    /// SIGTERM to replica `index`, then SIGKILL after the target's grace period, as a
    /// platform stops an instance: out of routing first.
    pub async fn stop(&mut self, index: u16) -> Result<StopOutcome, ClusterError> {
        let replica = self.current(index)?;
        self.balancer.upstreams().remove(replica);
        self.cluster.stop(replica, self.cluster.grace()).await
    }

    /// Freezes replica `index` (SIGSTOP, or the engine's pause); it stays in routing, as a
    /// hung instance does until probes notice.
    pub async fn pause(&mut self, index: u16) -> Result<(), ClusterError> {
        let replica = self.current(index)?;
        self.cluster.pause(replica.id).await
    }

    pub async fn resume(&mut self, index: u16) -> Result<(), ClusterError> {
        let replica = self.current(index)?;
        self.cluster.resume(replica.id).await
    }

    /// Stops replica `index` gracefully (at once if `kill` or `stop` already did) and
    /// routes to its next incarnation once it is ready.
    pub async fn restart(&mut self, index: u16) -> Result<(), ClusterError> {
        let replica = self.current(index)?;
        self.balancer.upstreams().remove(replica);
        self.cluster.stop(replica, self.cluster.grace()).await?;
        let endpoint = self.cluster.start_next(replica.id).await?;
        self.balancer.upstreams().insert(&endpoint);
        Ok(())
    }

    /// Stops the balancer, then every replica and dependency, each within its grace.
    pub async fn shutdown(self) {
        drop(self.balancer);
        self.cluster.shutdown().await;
    }

    fn current(&self, index: u16) -> Result<Incarnation, ClusterError> {
        let id = ReplicaId(index);
        self.cluster.endpoint(id).map(|e| e.replica).ok_or(ClusterError::UnknownReplica(id))
    }
}

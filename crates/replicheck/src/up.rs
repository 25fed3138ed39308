//! `replicheck up`: the target's replicas, dependencies and balancer, kept running for a
//! person to try by hand. No users, no checks; the cluster stops when the caller drops or
//! shuts it down.

use std::path::PathBuf;
use std::sync::Arc;

use crate::balancer::Balancer;
use crate::cluster::{BackendKind, Cluster, ClusterSpec};
use crate::progress::Observer;
use crate::run::{Edge, ReportDir, RunError, create_report_dir, run_id, start_service};
use crate::target::Target;

pub struct UpConfig {
    pub target: Target,
    pub replicas: u16,
    pub backend: BackendKind,
    /// Where replica and dependency logs go.
    pub report_dir: ReportDir,
    /// The running replicheck binary, for `{replicheck}`.
    pub self_exe: PathBuf,
}

/// A running cluster behind its balancer.
pub struct Up {
    pub cluster: Cluster,
    pub balancer: Balancer,
    pub logs_dir: PathBuf,
}

pub async fn start(config: UpConfig, observer: &dyn Observer) -> Result<Up, RunError> {
    let run_id = run_id("up");
    let logs_dir = create_report_dir(&config.report_dir, &run_id)?;
    let spec = ClusterSpec {
        target: Arc::new(config.target),
        replicas: config.replicas,
        run_id,
        logs_dir: logs_dir.clone(),
        self_exe: config.self_exe,
        backend: config.backend,
        external: None,
    };
    let (cluster, balancer) = start_service(spec, Edge::Http, observer).await?;
    Ok(Up { cluster, balancer, logs_dir })
}

//! Backends: what runs replicas. `process` runs local processes, `docker` runs containers,
//! `external` reaches instances that already run; a run picks one at start, so
//! `AnyBackend` dispatches to any.

pub mod docker;
pub mod external;
pub mod process;
pub mod relay;
/// Container templates are part of the target; this path stays for the library's users.
pub use crate::target::container as template;

use std::net::SocketAddr;
use std::time::Duration;

use super::ClusterError;
use super::child::StopOutcome;
use crate::vocab::replica::Incarnation;
use crate::step::Vars;
use crate::target::Start;
use docker::{DockerBackend, DockerReplica};
use external::{ExternalBackend, ExternalReplica};
use process::{ProcessBackend, ProcessReplica};

pub trait Backend: Send + Sync {
    type Replica: Replica;

    /// Starts one incarnation with the replica's placeholders in `vars` (the backend adds
    /// `{port}`), and returns once it is ready.
    fn launch(&self, incarnation: Incarnation, vars: Vars) -> impl Future<Output = Result<Self::Replica, ClusterError>> + Send;
}

/// One running incarnation of a replica.
pub trait Replica: Send {
    fn incarnation(&self) -> Incarnation;
    /// Where the balancer reaches it.
    fn addr(&self) -> SocketAddr;
    /// Where a stranger (not the proxy) reaches it, when that is not `addr` from another
    /// local address: containers are reached from another network.
    fn stranger_addr(&self) -> Option<SocketAddr> {
        None
    }
    /// How long it took from start to ready.
    fn started_in(&self) -> Duration;
    /// Whether the process (or container) has exited.
    fn exited(&mut self) -> impl Future<Output = bool> + Send;
    /// How it exited, with the last lines of its log; None while it runs.
    fn exit(&mut self) -> impl Future<Output = Option<String>> + Send {
        async move { self.exited().await.then(|| "exited".to_owned()) }
    }
    fn stop(&mut self, grace: Duration) -> impl Future<Output = StopOutcome> + Send;
    fn kill(&mut self) -> impl Future<Output = ()> + Send;
    fn pause(&self) -> impl Future<Output = Result<(), ClusterError>> + Send;
    fn resume(&self) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// What the replica has written so far (its log), where replicheck can read it.
    fn output(&mut self) -> impl Future<Output = Option<String>> + Send {
        async { None }
    }
    /// Ends the replica's part in the run: stops what replicheck started.
    fn release(&mut self, grace: Duration) -> impl Future<Output = ()> + Send {
        async move {
            self.stop(grace).await;
        }
    }
}

pub use crate::vocab::backend::BackendKind;

impl BackendKind {
    /// The backend that runs `start`: the one asked for, if `start` gives it what it runs,
    /// or else by what `start` declares (a command runs as processes, an image alone as
    /// containers). Instances that already run need nothing from `start`.
    pub fn choose(asked: Option<BackendKind>, start: &Start) -> Result<Self, ClusterError> {
        match asked {
            Some(BackendKind::External) => Ok(BackendKind::External),
            Some(BackendKind::Process) | None if start.command.is_some() => Ok(BackendKind::Process),
            Some(BackendKind::Docker) | None if start.image.is_some() || start.container.is_some() => Ok(BackendKind::Docker),
            Some(BackendKind::Docker) => Err(ClusterError::NoImage),
            Some(BackendKind::Process) | None => Err(ClusterError::NoCommand),
        }
    }
}

pub enum AnyBackend {
    Process(ProcessBackend),
    Docker(DockerBackend),
    External(ExternalBackend),
}

pub enum AnyReplica {
    Process(ProcessReplica),
    Docker(DockerReplica),
    External(ExternalReplica),
}

impl Backend for AnyBackend {
    type Replica = AnyReplica;

    async fn launch(&self, incarnation: Incarnation, vars: Vars) -> Result<AnyReplica, ClusterError> {
        match self {
            AnyBackend::Process(backend) => backend.launch(incarnation, vars).await.map(AnyReplica::Process),
            AnyBackend::Docker(backend) => backend.launch(incarnation, vars).await.map(AnyReplica::Docker),
            AnyBackend::External(backend) => backend.launch(incarnation, vars).await.map(AnyReplica::External),
        }
    }
}

macro_rules! each {
    ($self:expr, $replica:ident => $body:expr) => {
        match $self {
            AnyReplica::Process($replica) => $body,
            AnyReplica::Docker($replica) => $body,
            AnyReplica::External($replica) => $body,
        }
    };
}

impl Replica for AnyReplica {
    fn incarnation(&self) -> Incarnation {
        each!(self, r => r.incarnation())
    }

    fn addr(&self) -> SocketAddr {
        each!(self, r => r.addr())
    }

    fn stranger_addr(&self) -> Option<SocketAddr> {
        each!(self, r => r.stranger_addr())
    }

    fn started_in(&self) -> Duration {
        each!(self, r => r.started_in())
    }

    async fn exited(&mut self) -> bool {
        each!(self, r => r.exited().await)
    }

    async fn exit(&mut self) -> Option<String> {
        each!(self, r => r.exit().await)
    }

    async fn stop(&mut self, grace: Duration) -> StopOutcome {
        each!(self, r => r.stop(grace).await)
    }

    async fn kill(&mut self) {
        each!(self, r => r.kill().await)
    }

    async fn pause(&self) -> Result<(), ClusterError> {
        each!(self, r => r.pause().await)
    }

    async fn resume(&self) -> Result<(), ClusterError> {
        each!(self, r => r.resume().await)
    }

    async fn output(&mut self) -> Option<String> {
        each!(self, r => r.output().await)
    }

    async fn release(&mut self, grace: Duration) {
        each!(self, r => r.release(grace).await)
    }
}

//! The external backend: instances that already run (a staging deployment), given by URL.
//!
//! replicheck starts nothing here. Each instance is reached through a relay on loopback
//! (see `relay`), so the rest of a run is the same as with replicas it started. It cannot
//! stop them either, unless the user gives the commands that do (`--stop-cmd`,
//! `--restart-cmd`); `shutdown` leaves them running whatever was given.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::uri::Authority;
use tokio::time::Instant;
use url::Url;

use super::relay::{Destination, InstanceMark, Relay, Shared};
use super::{Backend, Replica};
use crate::vocab::experiment::ExperimentKind;
use crate::cluster::ClusterError;
use crate::cluster::child::StopOutcome;
use crate::vocab::replica::Incarnation;
use crate::step::Vars;
use crate::target::Target;

/// One instance: `URL[,host=NAME][,name=NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub url: Url,
    /// The `Host` header to send, when the URL's host is not the name the app answers to
    /// (an address, or a node behind a virtual host).
    pub host: Option<Authority>,
    /// `{instance}` in the stop and restart commands (a pod name); the URL's host if not given.
    pub name: String,
}

impl FromStr for Instance {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split(',');
        let url = parts.next().unwrap_or_default();
        let url = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{url}`: instances are reached over http or https"));
        }
        let mut instance = Instance {
            name: url.host_str().unwrap_or_default().to_owned(),
            url,
            host: None,
        };
        for option in parts {
            match option.split_once('=') {
                Some(("host", host)) if !host.is_empty() => {
                    let authority = host.parse().map_err(|_| format!("host={host} in `{text}` is not a host name (NAME or NAME:PORT)"))?;
                    instance.host = Some(authority);
                }
                Some(("name", name)) if !name.is_empty() => instance.name = name.to_owned(),
                _ => return Err(format!("`{option}` in `{text}`: expected host=NAME or name=NAME after the URL")),
            }
        }
        Ok(instance)
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url)?;
        if let Some(host) = &self.host {
            write!(f, ",host={host}")?;
        }
        if Some(self.name.as_str()) != self.url.host_str() {
            write!(f, ",name={}", self.name)?;
        }
        Ok(())
    }
}

/// Credentials a protected deployment asks for, sent on requests that carry none.
#[derive(Clone)]
pub enum Auth {
    Basic { user: String, password: String },
    Bearer(String),
}

impl Auth {
    /// The `Authorization` header; an error for credentials no header can carry.
    pub fn header(&self) -> Result<HeaderValue, String> {
        use base64::Engine;
        let value = match self {
            Auth::Basic { user, password } => {
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
            }
            Auth::Bearer(token) => format!("Bearer {token}"),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| "the credentials hold characters a header cannot carry".to_owned())?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// What must never appear in a report or log: the secret, and the header that carries it.
    pub fn secrets(&self) -> Vec<String> {
        let secret = match self {
            Auth::Basic { password, .. } => password.clone(),
            Auth::Bearer(token) => token.clone(),
        };
        let header = self.header().ok().and_then(|h| h.to_str().ok().map(str::to_owned));
        std::iter::once(secret).chain(header).collect()
    }
}

// Never print credentials, not even in debug output.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user}:***)"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// A load balancer in front of the instances that replicheck cannot bypass.
#[derive(Debug, Clone)]
pub struct Via {
    pub url: Url,
    /// How it names the instance that served.
    pub mark: InstanceMark,
    /// Sends of one request, at most, to land it on its planned instance.
    pub attempts: u32,
}

/// Everything the external backend is told on the command line.
#[derive(Debug, Clone, Default)]
pub struct ExternalSpec {
    /// The instances, each reached directly; empty when they are reached `via` a balancer.
    pub instances: Vec<Instance>,
    pub via: Option<Via>,
    pub auth: Option<Auth>,
    /// Accept any certificate (self-signed staging).
    pub insecure: bool,
    /// The address the instances see replicheck connect from, when they trust it as their
    /// proxy. Without it they are expected to ignore forwarded headers from replicheck.
    pub known_proxy: Option<IpAddr>,
    /// Runs to stop an instance that something else brings back (`kubectl delete pod
    /// {instance}`); replicheck then waits until it is ready again.
    pub stop_cmd: Option<String>,
    /// Runs to restart an instance; replicheck then waits until it is ready again.
    pub restart_cmd: Option<String>,
    pub max_rps: Option<NonZeroU32>,
    pub max_requests: Option<u64>,
}

impl ExternalSpec {
    /// How many replicas the run has: the instances given, or as many as asked for behind `via`.
    pub fn replicas(&self, asked: u16) -> u16 {
        if self.via.is_some() { asked } else { self.instances.len() as u16 }
    }

    /// Why an experiment cannot run against instances replicheck does not control.
    pub fn skip_reason(&self, kind: ExperimentKind) -> Option<String> {
        let can_restart = self.stop_cmd.is_some() || self.restart_cmd.is_some();
        match kind {
            ExperimentKind::Restart if can_restart => None,
            ExperimentKind::Restart => Some("the instances run outside replicheck; give --stop-cmd or --restart-cmd to restart one".into()),
            _ => what_it_needs(kind).map(|needs| format!("the instances run outside replicheck, which cannot {needs}")),
        }
    }
}

/// What an experiment needs of instances that replicheck cannot have: none for live
/// updates, whose subscriptions pass the relays, nor for rate limits.
fn what_it_needs(kind: ExperimentKind) -> Option<&'static str> {
    let needs = match kind {
        ExperimentKind::Restart => "restart them",
        ExperimentKind::Kill => "kill one",
        ExperimentKind::Pause => "pause one",
        ExperimentKind::RollingRestart => "replace them one by one",
        ExperimentKind::ScaleOut => "add one",
        ExperimentKind::Sigterm => "send one SIGTERM",
        ExperimentKind::StoreRestart | ExperimentKind::StoreOutage => "stop their store",
        ExperimentKind::ColdStart => "start them anew on an empty shared store",
        ExperimentKind::Hardened => "run them hardened",
        ExperimentKind::ScheduledJobs | ExperimentKind::TriggeredWork => "receive their work and stop all but one",
        // Without a restart where restarts are out of reach.
        ExperimentKind::Broadcast | ExperimentKind::Limits => return None,
    };
    Some(needs)
}

/// How long an instance that already runs may take to say ready.
const FIRST_READY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ExternalBackend {
    spec: Arc<ExternalSpec>,
    shared: Arc<Shared>,
    ready_path: String,
    ready_timeout: Duration,
    logs_dir: PathBuf,
    probe: reqwest::Client,
}

impl ExternalBackend {
    pub fn new(spec: Arc<ExternalSpec>, target: &Target, logs_dir: &Path, replicas: u16) -> Result<Self, ClusterError> {
        let config_error = |reason: String| ClusterError::External(reason);
        let authorization = spec.auth.as_ref().map(Auth::header).transpose().map_err(config_error)?;
        let attribution = spec.via.as_ref().map(|via| super::relay::Attribution::new(via.mark.clone(), replicas, via.attempts));
        let shared = Shared::new(super::relay::SharedConfig {
            insecure: spec.insecure,
            authorization,
            max_rps: spec.max_rps,
            max_requests: spec.max_requests,
            attribution,
        })
        .map_err(config_error)?;
        Ok(Self {
            spec,
            shared: Arc::new(shared),
            ready_path: target.health.ready.0.clone(),
            ready_timeout: target.start.ready_timeout,
            logs_dir: logs_dir.to_owned(),
            probe: super::process::probe_client(),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn destination(&self, incarnation: Incarnation) -> Result<(Destination, Option<Instance>), ClusterError> {
        if let Some(via) = &self.spec.via {
            let destination = Destination::new(incarnation, via.url.clone(), None, format!("{} via {}", incarnation.id, via.url));
            return Ok((destination, None));
        }
        let instance = self
            .spec
            .instances
            .get(usize::from(incarnation.id.0))
            .ok_or(ClusterError::UnknownReplica(incarnation.id))?;
        // An authority is always a valid header value.
        let host = instance.host.as_ref().and_then(|host| HeaderValue::from_str(host.as_str()).ok());
        let destination = Destination::new(incarnation, instance.url.clone(), host, format!("{} ({})", incarnation.id, instance.url));
        Ok((destination, Some(instance.clone())))
    }
}

impl Backend for ExternalBackend {
    type Replica = ExternalReplica;

    async fn launch(&self, incarnation: Incarnation, _vars: Vars) -> Result<ExternalReplica, ClusterError> {
        let started = Instant::now();
        let (destination, instance) = self.destination(incarnation)?;
        let label = destination.label.clone();
        let log = self.logs_dir.join(format!("{incarnation}.log"));
        append_log(&log, &format!("{label}: reached through a relay\n"));
        let relay = Relay::start(destination, self.shared.clone()).await.map_err(|source| ClusterError::Io {
            what: format!("cannot start the relay to {label}"),
            source,
        })?;
        let url = format!("http://{}{}", relay.addr(), self.ready_path);
        let never_exits = || std::future::ready(None);
        // An instance that already runs is ready or it is not; one that was just restarted
        // gets the target's whole readiness timeout.
        let timeout = if incarnation.generation == 1 { self.ready_timeout.min(FIRST_READY_TIMEOUT) } else { self.ready_timeout };
        super::process::wait_ready(&self.probe, &url, timeout, &label, &log, never_exits).await?;
        Ok(ExternalReplica {
            incarnation,
            relay,
            started_in: started.elapsed(),
            instance,
            spec: self.spec.clone(),
            log,
        })
    }
}

pub struct ExternalReplica {
    incarnation: Incarnation,
    relay: Relay,
    started_in: Duration,
    instance: Option<Instance>,
    spec: Arc<ExternalSpec>,
    /// What the stop and restart commands printed.
    log: PathBuf,
}

impl ExternalReplica {
    /// Runs the user's stop or restart command for this instance.
    async fn run_command(&self, grace: Duration) -> StopOutcome {
        let started = Instant::now();
        let Some(command) = self.spec.restart_cmd.as_ref().or(self.spec.stop_cmd.as_ref()) else {
            return StopOutcome::Exited { status: None, after: Duration::ZERO };
        };
        let (name, url) = match &self.instance {
            Some(instance) => (instance.name.clone(), instance.url.to_string()),
            None => (self.incarnation.id.to_string(), String::new()),
        };
        let command = command.replace("{instance}", &name).replace("{url}", &url);
        append_log(&self.log, &format!("$ {command}\n"));
        let output = tokio::process::Command::new("sh").arg("-c").arg(&command).kill_on_drop(true).output();
        // The command's own work is bounded like a stop: the grace and a minute to spare.
        let status = match tokio::time::timeout(grace.saturating_add(Duration::from_secs(60)), output).await {
            Ok(Ok(output)) => {
                append_log(&self.log, &String::from_utf8_lossy(&output.stdout));
                append_log(&self.log, &String::from_utf8_lossy(&output.stderr));
                output.status.code()
            }
            Ok(Err(err)) => {
                append_log(&self.log, &format!("cannot run it: {err}\n"));
                None
            }
            Err(_) => {
                append_log(&self.log, "it did not finish in time\n");
                None
            }
        };
        StopOutcome::Exited {
            status,
            after: started.elapsed(),
        }
    }
}

impl Replica for ExternalReplica {
    fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    fn addr(&self) -> SocketAddr {
        self.relay.addr()
    }

    fn started_in(&self) -> Duration {
        self.started_in
    }

    async fn exited(&mut self) -> bool {
        false
    }

    async fn stop(&mut self, grace: Duration) -> StopOutcome {
        self.run_command(grace).await
    }

    async fn kill(&mut self) {
        self.run_command(Duration::ZERO).await;
    }

    async fn pause(&self) -> Result<(), ClusterError> {
        Err(ClusterError::External("an instance that runs outside replicheck cannot be paused".into()))
    }

    async fn resume(&self) -> Result<(), ClusterError> {
        Ok(())
    }

    /// The run is over; the instance goes on running.
    async fn release(&mut self, _grace: Duration) {}
}

/// Appends to an instance's log; a log that cannot be written loses lines, not the run.
fn append_log(path: &Path, text: &str) {
    use std::io::Write;
    if text.is_empty() {
        return;
    }
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_take_a_host_and_a_name_after_the_url() {
        let plain: Instance = "http://10.0.0.7:8080".parse().unwrap();
        assert_eq!((plain.name.as_str(), plain.host), ("10.0.0.7", None));
        let named: Instance = "https://10.0.0.7/app,host=shop.example,name=web-0".parse().unwrap();
        assert_eq!(named.host.as_ref().map(|h| h.as_str()), Some("shop.example"));
        assert!("http://x,host=a b".parse::<Instance>().unwrap_err().contains("host=a b"));
        assert_eq!(named.name, "web-0");
        assert_eq!(named.url.path(), "/app");
        assert!("ftp://x".parse::<Instance>().unwrap_err().contains("http or https"));
        assert!("http://x,port=1".parse::<Instance>().unwrap_err().contains("`port=1`"));
        assert!("not a url".parse::<Instance>().unwrap_err().contains("not a URL"));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let auth = Auth::Basic {
            user: "ci".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Bearer("tok-123".into())).contains("tok-123"));
    }
}

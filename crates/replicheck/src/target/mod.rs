//! The target file: how to start one replica of the service under test, how to tell it is
//! ready, what shared infrastructure it needs, and the app's flows (login, antiforgery,
//! session, cache, echo) in the app's own URLs and field names.
//!
//! Loading validates everything that can be known without running anything, and every
//! error points at its place in the file.

pub mod background;
pub mod container;
pub mod dependency;
pub mod flows;
pub mod live;
pub mod preset;
pub mod rate_limit;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};

use container::{ContainerTemplate, ImageError};
use crate::file::{FileError, SourceFile};
use crate::step::Template;

pub use dependency::{DatabasePersistence, Dependencies, Persistence, PostgresDependency, RedisDependency, ServiceDependency, ServiceReady};
pub use background::{Occurrence, Recogniser, Scheduled, Triggered};
pub use rate_limit::RateLimit;
pub use live::{Broadcast, Publish, Transport};
pub use flows::{Affinity, Antiforgery, Echo, Login, StoreFlow, Token};
pub use preset::Preset;

/// The longest any duration of a target file may be (`ready_timeout`, `request_timeout`,
/// `deregistration_delay`, ...): the run waits it out, so a longer one is a typo that would
/// hang a CI job, and deadlines computed from it stay far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest `[limits] max_body`: the memory one response may take.
pub const MAX_BODY: usize = 1024 * 1024 * 1024;

/// A target file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    preset: Preset,
    start: Start,
    #[serde(default)]
    health: Health,
    #[serde(default)]
    dependencies: Dependencies,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    balancer: BalancerSettings,
    #[serde(default)]
    chaos: ChaosSettings,
    login: Option<flows::LoginFile>,
    antiforgery: Option<Antiforgery>,
    session: Option<StoreFlow>,
    cache: Option<StoreFlow>,
    upload: Option<StoreFlow>,
    echo: Option<Echo>,
    token: Option<Token>,
    affinity: Option<Affinity>,
    telemetry: Option<Telemetry>,
    #[serde(default)]
    scheduled: IndexMap<String, background::ScheduledFile>,
    #[serde(default)]
    triggered: IndexMap<String, background::TriggeredFile>,
    #[serde(default)]
    broadcast: IndexMap<String, live::BroadcastFile>,
    #[serde(default)]
    limit: IndexMap<String, rate_limit::RateLimitFile>,
}

/// A validated target file, with its preset's defaults filled in.
#[derive(Debug, Clone)]
pub struct Target {
    /// A short name for reports; defaults to the file's stem.
    pub name: String,
    pub preset: Preset,
    pub start: Start,
    pub health: Health,
    pub dependencies: Dependencies,
    pub limits: Limits,
    pub balancer: BalancerSettings,
    pub chaos: ChaosSettings,
    pub login: Option<Login>,
    pub antiforgery: Option<Antiforgery>,
    pub session: Option<StoreFlow>,
    pub cache: Option<StoreFlow>,
    /// A file sent through one replica (`set`, usually multipart) and read back (`get`).
    pub upload: Option<StoreFlow>,
    pub echo: Option<Echo>,
    pub token: Option<Token>,
    /// A transport whose handshake leaves state on one replica (long polling, negotiate).
    pub affinity: Option<Affinity>,
    /// The app exports OpenTelemetry over OTLP: the telemetry inspection asks what arrives.
    pub telemetry: Option<Telemetry>,
    /// Jobs that run on a schedule, recognised in what the replicas send the run's sink.
    pub scheduled: Vec<Scheduled>,
    /// Work requests trigger, recognised in what the replicas send the run's sink.
    pub triggered: Vec<Triggered>,
    /// Live updates, published through one replica for subscribers on every replica.
    pub broadcast: Vec<Broadcast>,
    /// Rate limits and lockouts, which every replica must count together.
    pub rate_limits: Vec<RateLimit>,
    /// Where the file was read from (for reproduce commands and relative paths).
    pub path: PathBuf,
    /// The file's text, for errors found once the backend is known.
    source: SourceFile,
}

/// How to start one replica: a command (the process backend) or an image (the docker
/// backend), or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    pub command: Option<Template>,
    /// A container image, such as `myapp:1.4` (pulled if the engine does not have it).
    pub image: Option<String>,
    /// The port the app listens on inside its container.
    #[serde(default = "defaults::container_port")]
    pub port: u16,
    /// Arguments of the command, or the container's command.
    #[serde(default)]
    pub args: Vec<Template>,
    #[serde(default)]
    pub env: IndexMap<String, Template>,
    /// Working directory, relative to the target file; defaults to the file's directory.
    pub cwd: Option<PathBuf>,
    /// How long a replica may take to report ready.
    #[serde(default = "defaults::ready_timeout", with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// How long a replica may take to exit after SIGTERM before it is killed.
    #[serde(default = "defaults::shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// A testcontainers image to start replicas from, in place of `image` (set in code:
    /// [`Target::with_container`]).
    #[serde(skip)]
    pub container: Option<ContainerTemplate>,
}

/// Health endpoints. Readiness passes on a 2xx or 3xx answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub live: Option<UrlPath>,
    #[serde(default = "defaults::ready_path")]
    pub ready: UrlPath,
    /// How often the balancer probes readiness.
    #[serde(default = "defaults::probe_interval", with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            live: None,
            ready: defaults::ready_path(),
            interval: defaults::probe_interval(),
        }
    }
}

/// Bounds on what a virtual user waits for and reads, so a hung or hostile replica
/// costs a bounded time and memory.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// How long one request may take, body included.
    #[serde(default = "defaults::request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The largest response body read, in bytes.
    #[serde(default = "defaults::max_body")]
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: defaults::request_timeout(),
            max_body: defaults::max_body(),
        }
    }
}

/// How replicheck's balancer treats the replicas, and the loopback addresses that tell
/// clients, the proxy and strangers apart.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerSettings {
    /// How the platform takes a replica out of routing when it stops one.
    #[serde(default)]
    pub deregistration: Deregistration,
    /// Under `kubernetes`: how long the balancer keeps routing to a replica once its
    /// termination began, as endpoints do until their removal has propagated. Under
    /// `before-sigterm`: how long it lets requests in flight finish before SIGTERM.
    #[serde(default = "defaults::deregistration_delay", with = "humantime_serde")]
    pub deregistration_delay: Duration,
    /// Under `kubernetes`: a preStop hook's sleep. SIGTERM arrives this long after the
    /// termination began; the grace period counts from the start of the hook.
    #[serde(default, with = "humantime_serde")]
    pub pre_stop: Duration,
    /// Where the balancer connects to replicas from: the known proxy the app should trust.
    #[serde(default = "defaults::proxy_address")]
    pub proxy_address: IpAddr,
    /// Where virtual users connect to the balancer from: the client the app should see.
    #[serde(default = "defaults::client_address")]
    pub client_address: IpAddr,
    /// Where probes that forge forwarded headers come from: not a known proxy.
    #[serde(default = "defaults::untrusted_address")]
    pub untrusted_address: IpAddr,
}

impl Default for BalancerSettings {
    fn default() -> Self {
        Self {
            deregistration: Deregistration::default(),
            deregistration_delay: defaults::deregistration_delay(),
            pre_stop: Duration::ZERO,
            proxy_address: defaults::proxy_address(),
            client_address: defaults::client_address(),
            untrusted_address: defaults::untrusted_address(),
        }
    }
}

/// How a platform stops routing to a replica it terminates. Whether a server that closes
/// its listener at SIGTERM refuses requests depends on it, so findings about shutdown
/// name the model they were judged under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deregistration {
    /// SIGTERM (after any preStop hook) and the endpoint removal start together; the
    /// removal takes `deregistration_delay` to reach the load balancers, which keep
    /// routing to the replica until then.
    #[default]
    Kubernetes,
    /// The load balancer stops routing to the replica and drains what it sent (for up to
    /// `deregistration_delay`), then the replica gets SIGTERM (a target group that drains
    /// before the task stops).
    BeforeSigterm,
}

impl Deregistration {
    pub fn name(self) -> &'static str {
        match self {
            Deregistration::Kubernetes => "kubernetes",
            Deregistration::BeforeSigterm => "before-sigterm",
        }
    }
}

impl BalancerSettings {
    /// How long after a termination begins SIGTERM arrives.
    pub fn sigterm_after(&self) -> Duration {
        match self.deregistration {
            Deregistration::Kubernetes => self.pre_stop,
            Deregistration::BeforeSigterm => Duration::ZERO,
        }
    }

    /// How long after a termination begins the balancer still routes to the replica.
    pub fn routed_for(&self) -> Duration {
        match self.deregistration {
            Deregistration::Kubernetes => self.deregistration_delay,
            Deregistration::BeforeSigterm => Duration::ZERO,
        }
    }

    /// The deployment model in words, for findings judged under it.
    pub fn model(&self, grace: Duration) -> String {
        let grace = humantime::format_duration(grace);
        match self.deregistration {
            Deregistration::Kubernetes if self.pre_stop.is_zero() => format!(
                "deregistration = \"kubernetes\": SIGTERM and the endpoint removal start together, the balancer keeps routing to the replica for {} (deregistration_delay), and SIGKILL follows {grace} after SIGTERM",
                humantime::format_duration(self.deregistration_delay)
            ),
            Deregistration::Kubernetes => format!(
                "deregistration = \"kubernetes\" with a preStop sleep of {}: the endpoint removal starts with the hook, SIGTERM follows it, the balancer keeps routing to the replica for {} (deregistration_delay), and SIGKILL follows {grace} after the hook began",
                humantime::format_duration(self.pre_stop),
                humantime::format_duration(self.deregistration_delay)
            ),
            Deregistration::BeforeSigterm => format!(
                "deregistration = \"before-sigterm\": the balancer stops routing to the replica and lets requests in flight finish for up to {} (deregistration_delay), then the replica gets SIGTERM, and SIGKILL {grace} later",
                humantime::format_duration(self.deregistration_delay)
            ),
        }
    }
}

/// The requests chaos experiments need beyond the flows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosSettings {
    /// A cheap real page: proves a replica serves (after it says ready, while it drains).
    #[serde(default = "defaults::page")]
    pub page: UrlPath,
    /// A request that takes `{ms}` milliseconds, to be in flight when SIGTERM arrives.
    pub slow: Option<Template>,
    /// How long the slow request takes.
    #[serde(default = "defaults::slow", with = "humantime_serde")]
    pub slow_for: Duration,
}

impl Default for ChaosSettings {
    fn default() -> Self {
        Self {
            page: defaults::page(),
            slow: None,
            slow_for: defaults::slow(),
        }
    }
}

/// How the app exports OpenTelemetry. Each replica is given an OTLP/HTTP endpoint of its
/// own, and, unless `platform_resource` is false, `OTEL_SERVICE_NAME` and a
/// `service.instance.id` of its own, as a platform that runs a collector gives them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// The service name every replica must report; defaults to the target's name.
    pub service_name: Option<String>,
    /// Whether the platform names the service and each instance (true), or the app must.
    #[serde(default = "defaults::yes")]
    pub platform_resource: bool,
    /// The page asked with a `traceparent` (default: `[chaos] page`).
    pub page: Option<UrlPath>,
    /// How long spans may take to arrive after their request.
    #[serde(default = "defaults::telemetry_wait", with = "humantime_serde")]
    pub wait: Duration,
}

impl Telemetry {
    pub fn service_name(&self, target: &Target) -> String {
        self.service_name.clone().unwrap_or_else(|| target.name.clone())
    }
}

/// A path with an optional query, such as `/login?next=/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPath(pub String);

impl<'de> Deserialize<'de> for UrlPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let path = String::deserialize(deserializer)?;
        if path.starts_with('/') {
            Ok(UrlPath(path))
        } else {
            Err(serde::de::Error::custom(format!(
                "`{path}` is not a path: write it as `/path?query`, relative to the replica's root"
            )))
        }
    }
}

impl std::fmt::Display for UrlPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The placeholders that point a replica at the run's side-effect sink.
pub const SINK_PLACEHOLDERS: [&str; 3] = ["sink_url", "smtp_host", "smtp_port"];

/// Placeholders every replica's command, args and env may use.
pub const START_PLACEHOLDERS: &[(&str, &str)] = &[
    ("port", "the port the replica must listen on"),
    ("host", "the address the replica must listen on"),
    ("replica", "the replica's name, such as r0"),
    ("replica_index", "the replica's number, such as 0"),
    ("generation", "1 for the first start of a replica, 2 after its first restart"),
    ("shared_dir", "a directory all replicas of the run share (a shared volume)"),
    ("replica_dir", "a directory of this replica's own, kept across its restarts"),
    ("redis_url", "the run's Redis, when [dependencies.redis] is declared"),
    ("database_url", "the run's PostgreSQL database, such as postgresql://app@127.0.0.1:5432/app, when [dependencies.postgres] is declared"),
    ("database_host", "its host"),
    ("database_port", "its port"),
    ("database_name", "its database's name"),
    ("database_user", "the role the replicas connect as (no password)"),
    ("run_id", "the run's id"),
    ("proxy_address", "the address the app sees replicheck's balancer connect from: the proxy to trust"),
    ("target_dir", "the directory of the target file"),
    ("otlp_endpoint", "the replica's own OTLP/HTTP endpoint, when [telemetry] is declared (also given as OTEL_EXPORTER_OTLP_ENDPOINT)"),
    ("sink_url", "the replica's own base URL for webhooks, at the run's side-effect sink"),
    ("smtp_host", "the host of the run's side-effect sink, for mail"),
    ("smtp_port", "the replica's own SMTP port at the run's side-effect sink"),
    ("replicheck", "the path of a replicheck binary (runs the bundled demo): the command line's own, or the one a library run is given"),
];

impl Target {
    /// The same target with replicas started from a testcontainers image (see
    /// [`ContainerTemplate::new`]) on the docker backend, in place of what `[start]` says
    /// about an image, a command and a port; its `ready_timeout`, `shutdown_grace` and
    /// the `[health]` probes still apply. Volumes shared by the replicas are at
    /// `/replicheck-shared`, each replica's own at `/replicheck-replica`.
    pub fn with_container(mut self, template: ContainerTemplate) -> Target {
        self.start.port = template.port;
        self.start.image = Some(template.image.clone());
        self.start.command = None;
        self.start.args.clear();
        self.start.env.clear();
        self.start.container = Some(template);
        self
    }

    /// The same target with its service `[dependencies.NAME]` started from a testcontainers
    /// image on the docker backend: the container a team's own tests already describe (its
    /// env, command, wait strategy), placed on the run's network, where the replicas reach
    /// it by its container's name as `{host}` of the service's `url`. The file still
    /// declares the service, for its `url`, `ready` and `ready_timeout`; the template
    /// takes the place of its `image`, `port`, `args` and `env`. The store experiments stop
    /// and start it as any dependency.
    pub fn with_dependency_container(mut self, name: &str, template: ContainerTemplate) -> Result<Target, ImageError> {
        let Some(service) = self.dependencies.services.get_mut(name) else {
            return Err(ImageError::Undeclared { name: name.to_owned() });
        };
        service.port = Some(template.port);
        service.image = Some(template.image.clone());
        service.command = None;
        service.args.clear();
        service.env.clear();
        service.container = Some(template);
        Ok(self)
    }

    pub fn load(path: &Path) -> Result<Self, FileError> {
        Self::from_source(&SourceFile::read(path)?)
    }

    pub fn from_source(file: &SourceFile) -> Result<Self, FileError> {
        let raw: TargetFile = file.parse()?;
        let defaults = raw.preset.defaults();
        let name = if raw.name.is_empty() {
            file.path.file_stem().map_or_else(|| "target".into(), |s| s.to_string_lossy().into_owned())
        } else {
            raw.name
        };
        let mut antiforgery = raw.antiforgery;
        if let Some(antiforgery) = &mut antiforgery {
            antiforgery.apply(&defaults);
        }
        let target = Target {
            name,
            preset: raw.preset,
            start: raw.start,
            health: raw.health,
            dependencies: raw.dependencies,
            limits: raw.limits,
            balancer: raw.balancer,
            chaos: raw.chaos,
            login: raw.login.map(|login| login.resolve(&defaults, file)).transpose()?,
            antiforgery,
            session: raw.session,
            cache: raw.cache,
            upload: raw.upload,
            echo: raw.echo,
            token: raw.token,
            affinity: raw.affinity,
            telemetry: raw.telemetry,
            scheduled: raw.scheduled.into_iter().map(|(name, job)| job.resolve(&name, file)).collect::<Result<_, _>>()?,
            triggered: raw.triggered.into_iter().map(|(name, work)| work.resolve(&name, file)).collect::<Result<_, _>>()?,
            broadcast: raw.broadcast.into_iter().map(|(name, flow)| flow.resolve(&name, file)).collect::<Result<_, _>>()?,
            rate_limits: raw.limit.into_iter().map(|(name, limit)| limit.resolve(&name, file)).collect::<Result<_, _>>()?,
            path: file.path.clone(),
            source: file.clone(),
        };
        target.validate(file)?;
        Ok(target)
    }

    /// The directory relative paths of this file resolve against.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// Refuses a `[balancer]` address this machine does not have, at its place in the
    /// file: the process backend's balancer, users and probes connect from them, and a
    /// run that found out only then would blame the first replica it reached.
    pub fn check_local_addresses(&self) -> Result<(), FileError> {
        let settings = &self.balancer;
        for (key, address) in [
            ("proxy_address", settings.proxy_address),
            ("client_address", settings.client_address),
            ("untrusted_address", settings.untrusted_address),
        ] {
            if let Err(err) = std::net::TcpListener::bind((address, 0)) {
                let file = &self.source;
                return Err(file
                    .error_at(file.key_span("balancer", key), format!("[balancer] {key} = \"{address}\" is not an address of this machine ({err})"))
                    .with_help(Some("replicheck connects from it to run replicas as processes; every 127.x.y.z address is this machine's on Linux".into())));
            }
        }
        Ok(())
    }

    /// Whether the run receives what the replicas send out of band: the target's background
    /// work is recognised there, or its replicas are pointed at it.
    pub fn uses_sink(&self) -> bool {
        let templates = self.start.command.iter().chain(&self.start.args).chain(self.start.env.values());
        !self.scheduled.is_empty() || !self.triggered.is_empty() || templates.flat_map(|t| t.vars()).any(|name| SINK_PLACEHOLDERS.contains(&name))
    }

    /// Values that must never appear in a report or log.
    pub fn secrets(&self) -> Vec<String> {
        self.login.iter().map(|login| login.password.clone()).collect()
    }

    /// Every duration of the file, by table and key.
    fn durations(&self) -> Vec<(&'static str, &'static str, Duration)> {
        let mut durations = vec![
            ("start", "ready_timeout", self.start.ready_timeout),
            ("start", "shutdown_grace", self.start.shutdown_grace),
            ("health", "interval", self.health.interval),
            ("limits", "request_timeout", self.limits.request_timeout),
            ("balancer", "deregistration_delay", self.balancer.deregistration_delay),
            ("balancer", "pre_stop", self.balancer.pre_stop),
            ("chaos", "slow_for", self.chaos.slow_for),
        ];
        durations.extend(self.telemetry.as_ref().map(|t| ("telemetry", "wait", t.wait)));
        durations
    }

    /// Values that parse but cannot work, said at their place before anything starts.
    fn check_values(&self, file: &SourceFile) -> Result<(), FileError> {
        for (table, key, duration) in self.durations() {
            if duration > MAX_DURATION {
                let span = file.key_span(table, key);
                let written = &file.text[span.clone()];
                // The value as written, unless the key was not found where it is looked for.
                let value = if written.starts_with('"') { written.to_owned() } else { format!("\"{}\"", humantime::format_duration(duration)) };
                return Err(file
                    .error_at(span, format!("[{table}] {key} = {value} is longer than 24h"))
                    .with_help(Some("durations in a target file are 24h at most: a run waits each one out".into())));
            }
        }
        if self.limits.max_body > MAX_BODY {
            return Err(file
                .error_at(file.key_span("limits", "max_body"), format!("[limits] max_body = {} is more than 1 GiB", self.limits.max_body))
                .with_help(Some("max_body bounds the memory one response may take; 1073741824 bytes at most".into())));
        }
        let zero = |table: &str, key: &str, why: &str| Err(file.error_at(file.key_span(table, key), format!("[{table}] {key} cannot be zero: {why}")));
        if self.start.port == 0 {
            return zero("start", "port", "it is the port the app listens on inside its container (1-65535)");
        }
        if self.start.ready_timeout.is_zero() {
            return zero("start", "ready_timeout", "no replica could be ready in no time");
        }
        if self.health.interval.is_zero() {
            return zero("health", "interval", "the balancer would probe readiness without a pause");
        }
        if self.limits.request_timeout.is_zero() {
            return zero("limits", "request_timeout", "every request would time out at once");
        }
        if self.telemetry.as_ref().is_some_and(|t| t.wait.is_zero()) {
            return zero("telemetry", "wait", "spans take a moment to reach replicheck after their request");
        }
        if self.limits.max_body == 0 {
            return zero("limits", "max_body", "no response body could be read");
        }
        if let Some(cwd) = &self.start.cwd {
            let dir = self.dir().join(cwd);
            if !dir.is_dir() {
                return Err(file
                    .error_at(file.key_span("start", "cwd"), format!("[start] cwd: {} is not a directory", dir.display()))
                    .with_help(Some("cwd is taken relative to the target file's directory".into())));
            }
        }
        Ok(())
    }

    fn validate(&self, file: &SourceFile) -> Result<(), FileError> {
        self.check_values(file)?;
        // First: the placeholders below depend on what is declared there.
        self.dependencies.validate(&self.dir(), file)?;
        let start_templates = self.start.command.iter().chain(&self.start.args).chain(self.start.env.values());
        for template in start_templates {
            template
                .check_vars(|name| START_PLACEHOLDERS.iter().any(|(known, _)| *known == name) || self.dependencies.gives(name))
                .map_err(|unknown| {
                    let services: Vec<String> = self.dependencies.services.keys().map(|name| format!("{name}_url")).collect();
                    let known: Vec<&str> = START_PLACEHOLDERS.iter().map(|(k, _)| *k).chain(services.iter().map(String::as_str)).collect();
                    let help = crate::file::closest(unknown, known.iter().copied())
                        .map(|c| format!("did you mean `{{{c}}}`?"))
                        .unwrap_or_else(|| format!("placeholders here: {}, and {{NAME_url}} for each service [dependencies.NAME]", known.join(", ")));
                    file.error_at(template.span(), format!("unknown placeholder `{{{unknown}}}` in [start]"))
                        .with_help(Some(help))
                })?;
            if self.telemetry.is_none() && template.vars().any(|name| name == "otlp_endpoint") {
                return Err(file
                    .error_at(template.span(), "`{otlp_endpoint}` is used but the target declares no [telemetry]")
                    .with_help(Some("add `[telemetry]` so replicheck receives what the replicas export".into())));
            }
            if let Some((name, table)) = template.vars().find_map(|name| Some((name, self.dependencies.missing_for(name)?))) {
                return Err(file
                    .error_at(template.span(), format!("`{{{name}}}` is used but the target declares no [{table}]"))
                    .with_help(Some(format!("add `[{table}]` so replicheck starts one for the run"))));
            }
        }
        match (&self.start.command, &self.start.image) {
            (None, None) => {
                return Err(file
                    .error_at(file.table_span("start"), "[start] needs `command` (to run processes) or `image` (to run containers)")
                    .with_help(Some("for example: command = \"python3\" with args, or image = \"myapp:1.0\"".into())));
            }
            (Some(command), _) if command.raw().trim().is_empty() => {
                return Err(file.error_at(command.span(), "[start] command is empty"));
            }
            _ => {}
        }
        for (section, flow) in [("session", &self.session), ("cache", &self.cache), ("upload", &self.upload)] {
            if let Some(flow) = flow {
                flow.validate(section, file)?;
            }
        }
        if let Some(antiforgery) = &self.antiforgery {
            antiforgery.validate(file)?;
        }
        if let Some(token) = &self.token {
            token.validate(file)?;
        }
        if let Some(affinity) = &self.affinity {
            affinity.validate(file)?;
        }
        if let Some(slow) = &self.chaos.slow {
            if !slow.raw().starts_with('/') {
                return Err(file.error_at(slow.span(), format!("`{}` is not a path: write it as `/slow?ms={{ms}}`", slow.raw())));
            }
            slow.check_vars(|name| name == "ms").map_err(|unknown| {
                file.error_at(slow.span(), format!("unknown placeholder `{{{unknown}}}` in [chaos] slow"))
                    .with_help(Some("the only placeholder here is {ms}, how long the request should take".into()))
            })?;
        }
        let balancer = &self.balancer;
        if !balancer.pre_stop.is_zero() && balancer.deregistration == Deregistration::BeforeSigterm {
            return Err(file
                .error_at(file.key_span("balancer", "pre_stop"), "`pre_stop` is a Kubernetes preStop hook: it needs deregistration = \"kubernetes\"")
                .with_help(Some("under \"before-sigterm\" the balancer already stops routing before SIGTERM; remove pre_stop".into())));
        }
        if !balancer.pre_stop.is_zero() && balancer.pre_stop >= self.start.shutdown_grace {
            return Err(file
                .error_at(file.key_span("balancer", "pre_stop"), "`pre_stop` must be shorter than [start] shutdown_grace")
                .with_help(Some("the grace period counts from the start of the preStop hook, as terminationGracePeriodSeconds does".into())));
        }
        if self.chaos.slow.is_some() && self.limits.request_timeout <= self.chaos.slow_for {
            return Err(file.error_at(0..0, "[chaos] slow_for must be shorter than [limits] request_timeout")
                .with_help(Some("the slow request would time out before it could be cut by SIGTERM".into())));
        }
        Ok(())
    }
}

mod defaults {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::UrlPath;

    pub fn yes() -> bool {
        true
    }

    pub fn telemetry_wait() -> Duration {
        Duration::from_secs(10)
    }

    pub fn ready_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn shutdown_grace() -> Duration {
        Duration::from_secs(10)
    }
    pub fn deregistration_delay() -> Duration {
        Duration::from_secs(2)
    }
    pub fn container_port() -> u16 {
        8080
    }
    pub fn proxy_address() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }
    pub fn client_address() -> IpAddr {
        IpAddr::from([127, 0, 0, 3])
    }
    pub fn untrusted_address() -> IpAddr {
        IpAddr::from([127, 0, 0, 2])
    }
    pub fn page() -> UrlPath {
        UrlPath("/".into())
    }
    pub fn slow() -> Duration {
        Duration::from_millis(1500)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_body() -> usize {
        4 * 1024 * 1024
    }
    pub fn probe_interval() -> Duration {
        Duration::from_millis(500)
    }
    pub fn ready_path() -> UrlPath {
        UrlPath("/".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Target, String> {
        Target::from_source(&SourceFile::from_text("t.toml", text)).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = "[start]\ncommand = \"app\"\nargs = [\"--port\", \"{port}\"]\n";

    #[test]
    fn a_minimal_target_gets_defaults() {
        let target = load(MINIMAL).unwrap();
        assert_eq!(target.name, "t");
        assert_eq!(target.health.ready, UrlPath("/".into()));
        assert_eq!(target.start.shutdown_grace, Duration::from_secs(10));
        assert!(target.login.is_none());
    }

    #[test]
    fn unknown_placeholder_is_located_with_a_suggestion() {
        let err = Target::from_source(&SourceFile::from_text("t.toml", "[start]\ncommand = \"app\"\nargs = [\"{prot}\"]\n"))
            .unwrap_err();
        let FileError::Invalid(located) = err else { panic!("expected a located error") };
        assert_eq!(located.to_string(), "t.toml:3:9: unknown placeholder `{prot}` in [start]");
        assert_eq!(located.help.as_deref(), Some("did you mean `{port}`?"));
    }

    #[test]
    fn redis_url_needs_a_redis_dependency() {
        let err = load("[start]\ncommand = \"app\"\nenv = { REDIS = \"{redis_url}\" }\n").unwrap_err();
        assert!(err.contains("declares no [dependencies.redis]"), "{err}");
        let ok = load("[start]\ncommand = \"app\"\nenv = { REDIS = \"{redis_url}\" }\n[dependencies.redis]\n");
        assert!(ok.is_ok());
    }

    #[test]
    fn background_work_is_read_with_its_defaults_and_its_mistakes_are_located() {
        let jobs = "[scheduled.digest]\ndeliveries = { path = \"/digest?x=1\" }\noccurrence = { json = \"/slot\" }\n\
                    [triggered.receipt]\nrequest = { method = \"POST\", url = \"/orders\", form = { order = \"{value}\" } }\ndeliveries = { subject = \"^Your order\" }\n";
        let target = load(&format!("{MINIMAL}{jobs}")).unwrap();
        assert!(target.uses_sink());
        let digest = &target.scheduled[0];
        assert_eq!((digest.name.as_str(), digest.watch.as_secs()), ("digest", 10));
        assert!(matches!(&digest.deliveries, Recogniser::Path(path) if path == "/digest"));
        assert!(matches!(&digest.occurrence, Occurrence::Json(pointer) if pointer == "/slot"));
        assert_eq!((target.triggered[0].name.as_str(), target.triggered[0].within.as_secs()), ("receipt", 5));
        assert!(!load(MINIMAL).unwrap().uses_sink());
        assert!(load(&format!("{MINIMAL}env = {{ SMTP = \"{{smtp_host}}:{{smtp_port}}\" }}\n")).unwrap().uses_sink());

        let job = |deliveries: &str, occurrence: &str, rest: &str| load(&format!("{MINIMAL}[scheduled.digest]\ndeliveries = {deliveries}\noccurrence = {occurrence}\n{rest}")).unwrap_err();
        let err = job("{ subject = \"(unclosed\" }", "{ json = \"/slot\" }", "");
        assert!(err.contains("t.toml:5:") && err.contains("is not a regular expression"), "{err}");
        let err = job("{ path = \"/digest\" }", "{ json = \"slot\" }", "");
        assert!(err.contains("t.toml:6:") && err.contains("not a JSON pointer"), "{err}");
        let err = job("{ path = \"/digest\" }", "{ json = \"/slot\", header = \"x\" }", "");
        assert!(err.contains("occurrence needs one of"), "{err}");
        let err = job("{ path = \"digest\" }", "{ header = \"x-slot\" }", "");
        assert!(err.contains("is not a path"), "{err}");
        let err = job("{ path = \"/digest\" }", "{ header = \"x-slot\" }", "watch = \"0s\"\n");
        assert!(err.contains("t.toml:7:") && err.contains("[scheduled.digest] watch cannot be zero"), "{err}");
        let err = job("{ path = \"/digest\" }", "{ header = \"x-slot\" }", "watch = \"25h\"\n");
        assert!(err.contains("longer than 24h"), "{err}");

        let work = |request: &str| load(&format!("{MINIMAL}[triggered.receipt]\nrequest = {request}\ndeliveries = {{ path = \"/r\" }}\n")).unwrap_err();
        let err = work("{ method = \"POST\", url = \"/orders\" }");
        assert!(err.contains("t.toml:5:") && err.contains("never sends `{value}`"), "{err}");
        let err = work("{ url = \"/orders/{id}\" }");
        assert!(err.contains("unknown placeholder `{id}`"), "{err}");

        let marked = |started: &str| load(&format!("{MINIMAL}[triggered.report]\nrequest = {{ url = \"/reports/{{value}}\" }}\ndeliveries = {{ path = \"/reports/done\" }}\nstarted = {started}\n"));
        let report = marked("{ path = \"/reports/begun\" }").unwrap();
        assert!(matches!(&report.triggered[0].started, Some(Recogniser::Path(path)) if path == "/reports/begun"));
        let err = marked("{ path = \"/reports/done\" }").unwrap_err();
        assert!(err.contains("t.toml:7:") && err.contains("[triggered.report] started recognises deliveries that `deliveries` recognises too"), "{err}");
        assert!(marked("{ path = \"/reports/done/begun\" }").is_err() && marked("{ path = \"/reports\" }").is_err());
        assert!(marked("{ path = \"/reports/done-begun\" }").is_ok());
        let err = marked("{ body = \"x\" }").unwrap_err();
        assert!(err.contains("t.toml:7:"), "{err}");
        let err = marked("{ subject = \"[\" }").unwrap_err();
        assert!(err.contains("[triggered.report] started: subject `[` is not a regular expression"), "{err}");
    }

    #[test]
    fn broadcast_flows_are_read_with_their_defaults_and_their_mistakes_are_located() {
        let flow = |rest: &str| load(&format!("{MINIMAL}[broadcast.chat]\n{rest}"));
        let chat = flow("subscribe = { ws = \"/hub\" }\npublish = { method = \"POST\", url = \"/say\", form = { text = \"{value}\" } }\n").unwrap();
        let chat = &chat.broadcast[0];
        assert_eq!((chat.transport, chat.path.as_str(), chat.within.as_secs()), (Transport::WebSocket, "/hub", 2));
        assert_eq!(chat.receive.render(&[("value".to_owned(), "v1".to_owned())].into()).unwrap(), "v1");
        let sent = flow("subscribe = { ws = \"/hub\" }\njoin = \"join lobby\"\nsend = \"say {value}\"\nreceive = \"said {value}\"\n").unwrap();
        assert!(matches!(&sent.broadcast[0].publish, Publish::Send(_)));

        let err = |rest: &str| flow(rest).unwrap_err();
        let e = err("subscribe = { ws = \"/hub\", sse = \"/events\" }\nsend = \"{value}\"\n");
        assert!(e.contains("t.toml:5:") && e.contains("subscribe needs one of `ws` (a WebSocket) or `sse`"), "{e}");
        let e = err("subscribe = { sse = \"/events\" }\nsend = \"{value}\"\n");
        assert!(e.contains("t.toml:6:") && e.contains("send is a message on a WebSocket"), "{e}");
        let e = err("subscribe = { sse = \"/events\" }\njoin = \"hi\"\npublish = { url = \"/say?v={value}\" }\n");
        assert!(e.contains("join is a message on a WebSocket"), "{e}");
        let e = err("subscribe = { ws = \"/hub\" }\npublish = { url = \"/say\" }\n");
        assert!(e.contains("publish never sends `{value}`"), "{e}");
        let e = err("subscribe = { ws = \"/hub\" }\nsend = \"{nonce}\"\n");
        assert!(e.contains("unknown placeholder `{nonce}` in [broadcast.chat] send"), "{e}");
        let e = err("subscribe = { ws = \"/hub\" }\n");
        assert!(e.contains("needs `publish` (a request) or `send`"), "{e}");
        let e = err("subscribe = { ws = \"/hub\" }\nsend = \"{value}\"\nreceive = \"anything\"\n");
        assert!(e.contains("receive never names `{value}`"), "{e}");
        let e = err("subscribe = { ws = \"/hub\" }\nsend = \"{value}\"\nwithin = \"0s\"\n");
        assert!(e.contains("[broadcast.chat] within cannot be zero"), "{e}");
    }

    #[test]
    fn an_affinity_flow_uses_its_handle_only_after_the_handshake() {
        let flow = |open: &str, next: &str| load(&format!("{MINIMAL}[affinity]\nopen = {open}\nhandle = {{ json = \"/sid\" }}\nnext = {next}\n"));
        let polling = flow("{ method = \"POST\", url = \"/poll\" }", "{ url = \"/poll?sid={handle}\" }").unwrap();
        let affinity = polling.affinity.unwrap();
        assert!(matches!(&affinity.handle, crate::step::CaptureSource::Json(pointer) if pointer == "/sid"));
        assert!(affinity.accepted().status.is_some(), "a 2xx status by default");
        let err = flow("{ url = \"/poll?sid={handle}\" }", "{ url = \"/poll\" }").unwrap_err();
        assert!(err.contains("t.toml:5:") && err.contains("[affinity] open cannot use {handle}"), "{err}");
        let err = flow("{ url = \"/poll\" }", "{ url = \"/poll?sid={sid}\" }").unwrap_err();
        assert!(err.contains("t.toml:7:") && err.contains("unknown placeholder `{sid}` in [affinity]"), "{err}");
        let err = flow("{ url = \"poll\" }", "{ url = \"/poll\" }").unwrap_err();
        assert!(err.contains("[affinity] `poll` is not a path"), "{err}");
    }

    #[test]
    fn rate_limits_are_read_with_their_defaults_and_their_mistakes_are_located() {
        let flow = |rest: &str| load(&format!("{MINIMAL}[limit.resets]\n{rest}"));
        let attempt = "attempt = { method = \"POST\", url = \"/reset\", form = { email = \"{value}@x.test\" } }\n";
        let target = flow(&format!("{attempt}limit = 5\nwindow = \"1m\"\n")).unwrap();
        let limit = &target.rate_limits[0];
        assert!(limit.sends_value() && limit.limited.status.as_ref().is_some_and(|s| s.contains(429)), "{limit:?}");
        assert_eq!(limit.refill(), Duration::from_secs(12));
        let e = flow("attempt = { url = \"/reset?u={user}\" }\nlimit = 5\nwindow = \"1m\"\n").unwrap_err();
        assert!(e.contains("t.toml:5:") && e.contains("unknown placeholder `{user}` in [limit.resets] attempt"), "{e}");
        let e = flow("attempt = { url = \"/reset\" }\nlimit = 500\nwindow = \"1m\"\n").unwrap_err();
        assert!(e.contains("t.toml:6:") && e.contains("[limit.resets] limit = 500: give a limit from 1 to 50"), "{e}");
        let e = flow("attempt = { url = \"/reset\" }\nlimit = 5\nwindow = \"0s\"\n").unwrap_err();
        assert!(e.contains("[limit.resets] window cannot be zero"), "{e}");
        let e = flow("attempt = { url = \"/reset\" }\nlimit = 5\nwindow = \"1m\"\nlimited = {}\n").unwrap_err();
        assert!(e.contains("[limit.resets] limited is empty"), "{e}");
    }

    #[test]
    fn an_upload_sends_files_in_a_multipart_form_never_beside_a_body_nor_by_get() {
        let flow = |set: &str| load(&format!("{MINIMAL}[upload]\nset = {set}\nget = {{ url = \"/uploads/{{key}}\" }}\n"));
        let file = "multipart = { file = { filename = \"{key}.txt\", content = \"{value}\" } }";
        let target = flow(&format!("{{ method = \"POST\", url = \"/uploads\", form = {{ title = \"t\" }}, {file} }}")).unwrap();
        let upload = target.upload.as_ref().expect("the flow");
        assert_eq!(upload.set.multipart["file"].filename.raw(), "{key}.txt");
        assert!(target.flows().contains(&"upload".to_owned()));
        let e = flow(&format!("{{ method = \"POST\", url = \"/uploads\", body = \"x\", {file} }}")).unwrap_err();
        assert!(e.contains("t.toml:5:") && e.contains("either `multipart` files or a `body`"), "{e}");
        let e = flow(&format!("{{ url = \"/uploads\", {file} }}")).unwrap_err();
        assert!(e.contains("a GET request sends no files"), "{e}");
        let e = flow("{ method = \"POST\", url = \"/uploads\", multipart = { file = { filename = \"{name}\", content = \"x\" } } }").unwrap_err();
        assert!(e.contains("unknown placeholder `{name}` in [upload]"), "{e}");
    }

    #[test]
    fn the_otlp_endpoint_needs_telemetry_and_the_wait_cannot_be_zero() {
        let err = load("[start]\ncommand = \"app\"\nenv = { OTLP = \"{otlp_endpoint}\" }\n").unwrap_err();
        assert!(err.contains("declares no [telemetry]"), "{err}");
        let ok = load("[start]\ncommand = \"app\"\nenv = { OTLP = \"{otlp_endpoint}\" }\n[telemetry]\n").unwrap();
        let telemetry = ok.telemetry.unwrap();
        assert!(telemetry.platform_resource && telemetry.wait.as_secs() == 10);
        let err = load("[start]\ncommand = \"app\"\n[telemetry]\nwait = \"0s\"\n").unwrap_err();
        assert!(err.contains("[telemetry] wait cannot be zero"), "{err}");
    }

    #[test]
    fn the_deployment_model_defaults_to_kubernetes_and_checks_pre_stop() {
        let target = load(MINIMAL).unwrap();
        assert_eq!(target.balancer.deregistration, Deregistration::Kubernetes);
        assert_eq!((target.balancer.deregistration_delay, target.balancer.pre_stop), (Duration::from_secs(2), Duration::ZERO));
        let drained = load(&format!("{MINIMAL}[balancer]\nderegistration = \"before-sigterm\"\n")).unwrap();
        assert_eq!(drained.balancer.deregistration, Deregistration::BeforeSigterm);
        let err = load(&format!("{MINIMAL}[balancer]\nderegistration = \"before-sigterm\"\npre_stop = \"3s\"\n")).unwrap_err();
        assert!(err.starts_with("t.toml:6:12:") && err.contains("preStop"), "{err}");
        let err = load(&format!("{MINIMAL}[balancer]\npre_stop = \"10s\"\n")).unwrap_err();
        assert!(err.starts_with("t.toml:5:12:") && err.contains("shutdown_grace"), "{err}");
        let err = load(&format!("{MINIMAL}[balancer]\nderegistration = \"k8s\"\n")).unwrap_err();
        assert!(err.contains("kubernetes") && err.contains("before-sigterm"), "{err}");
    }

    #[test]
    fn every_duration_is_24h_at_most_and_a_longer_one_is_named_where_written() {
        let keys = [
            ("start", "ready_timeout"),
            ("start", "shutdown_grace"),
            ("health", "interval"),
            ("limits", "request_timeout"),
            ("balancer", "deregistration_delay"),
            ("balancer", "pre_stop"),
            ("chaos", "slow_for"),
            ("telemetry", "wait"),
        ];
        for (table, key) in keys {
            let table_line = if table == "start" { String::new() } else { format!("[{table}]\n") };
            let err = load(&format!("[start]\ncommand = \"app\"\n{table_line}{key} = \"1000h\"\n")).unwrap_err();
            let line = if table == "start" { 3 } else { 4 };
            assert_eq!(err, format!("t.toml:{line}:{}: [{table}] {key} = \"1000h\" is longer than 24h", key.len() + 4));
        }
        let day = load("[start]\ncommand = \"app\"\nready_timeout = \"24h\"\nshutdown_grace = \"25h\"\n").unwrap_err();
        assert!(day.starts_with("t.toml:4:18: [start] shutdown_grace"), "24h itself is allowed: {day}");
        let body = load("[start]\ncommand = \"app\"\n[limits]\nmax_body = 9223372036854775807\n").unwrap_err();
        assert!(body.starts_with("t.toml:4:12: [limits] max_body = 9223372036854775807 is more than 1 GiB"), "{body}");
    }

    #[test]
    fn addresses_are_checked_on_this_machine_and_loopback_ones_are_local() {
        let local = load(&format!("{MINIMAL}[balancer]\nuntrusted_address = \"127.0.0.2\"\nclient_address = \"127.1.2.3\"\n")).unwrap();
        assert!(local.check_local_addresses().is_ok());
        let foreign = load(&format!("{MINIMAL}[balancer]\nproxy_address = \"192.0.2.1\"\n")).unwrap();
        let err = foreign.check_local_addresses().unwrap_err().to_string();
        assert!(err.starts_with("t.toml:5:17: [balancer] proxy_address = \"192.0.2.1\" is not an address of this machine"), "{err}");
    }

    #[test]
    fn durations_and_paths_are_checked_where_written() {
        let err = load("[start]\ncommand = \"app\"\nready_timeout = \"soon\"\n").unwrap_err();
        assert!(err.starts_with("t.toml:3:17:"), "{err}");
        let err = load(&format!("{MINIMAL}[health]\nready = \"healthz\"\n")).unwrap_err();
        assert!(err.starts_with("t.toml:5:9:") && err.contains("not a path"), "{err}");
    }
}

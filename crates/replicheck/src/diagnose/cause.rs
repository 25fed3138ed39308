//! The probable root causes findings point to: what each means, which checklist topic it
//! comes from, and which findings it explains.

use serde::{Deserialize, Serialize};

use crate::check::finding::{Finding, FindingKind};
use crate::vocab::experiment::ExperimentKind;

/// A probable root cause. The ids are stable, like the finding kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Cause {
    /// Each replica protects cookies and form tokens with keys of its own.
    KeysNotShared,
    /// The keys that protect cookies and form tokens do not outlive the process.
    KeysNotPersisted,
    /// Replicas that start together against an empty key store each create a key ring.
    KeyringRace,
    /// Replicas that start together each run the app's one-time setup (migrations) at once.
    MigrationsRace,
    /// Sessions live in one process: another replica, or a restarted one, cannot read them.
    SessionPerProcess,
    /// The cache lives in one process.
    CachePerProcess,
    /// Replicas sign tokens with keys of their own, or make new ones when they start.
    SigningKeysNotShared,
    /// The app does not take the scheme or client address from the balancer's headers.
    ForwardedHeadersIgnored,
    /// The app takes forwarded headers from anyone, not only from the balancer.
    ForwardedHeadersTrusted,
    /// The app refuses connections while the platform still routes to it.
    RefusesWhileRouted,
    /// Readiness passes before the app can serve.
    ReadyTooEarly,
    /// Readiness keeps passing while the app cannot serve (a dependency down, draining).
    ReadinessIgnoresState,
    /// Requests in flight at SIGTERM are cut.
    InflightCut,
    /// Shutdown takes longer than the grace period.
    ShutdownOverGrace,
    /// The shared store loses what it holds when it restarts.
    StoreNotDurable,
    /// A step that passes on one replica fails on another: state the scenario relies on is
    /// kept per replica.
    StatePerReplica,
    /// The app needs root, a capability or a writable root filesystem.
    NeedsPrivileges,
    /// Replicas' telemetry does not name one service and each replica apart.
    TelemetryResource,
    /// Replicas start traces of their own instead of continuing the caller's.
    TraceContextDropped,
    /// A replica exports nothing to the endpoint it was given.
    TelemetryNotExported,
    /// A scheduled job runs in every replica, each on its own timer.
    ScheduledJobPerReplica,
    /// Accepted work waits in a process's memory, and goes with the process.
    InProcessQueue,
    /// Every replica's worker sends what a shared outbox or queue holds without claiming it.
    UnclaimedOutbox,
    /// A job that is running when SIGTERM arrives is cut off, neither finished nor handed back.
    JobAbandonedAtShutdown,
    /// Live updates fan out to the subscribers of one process: no backplane between replicas.
    BroadcastPerProcess,
    /// A replica's relay from the shared channel ends with a disruption (the store's
    /// restart, its own) and does not resume: it keeps serving and relays nothing.
    RelayNotResumed,
    /// A transport's handshake leaves its session on one replica: its requests need
    /// routing to that replica.
    TransportNeedsAffinity,
    /// A rate limit or lockout counts in each process's memory: per replica, and from zero
    /// after every restart.
    LimitPerProcess,
    /// A rate limit is keyed on the connection's peer, which behind a proxy is the proxy
    /// for every client.
    LimitKeyedOnProxy,
    /// A rate limit is keyed on an X-Forwarded-For any client can write.
    LimitKeyForgeable,
    /// Uploaded files are written to the disk of the replica that received them.
    UploadsOnLocalDisk,
}

impl Cause {
    pub const ALL: [Cause; 31] = [
        Cause::KeysNotShared,
        Cause::KeysNotPersisted,
        Cause::KeyringRace,
        Cause::MigrationsRace,
        Cause::SessionPerProcess,
        Cause::CachePerProcess,
        Cause::SigningKeysNotShared,
        Cause::ForwardedHeadersIgnored,
        Cause::ForwardedHeadersTrusted,
        Cause::RefusesWhileRouted,
        Cause::ReadyTooEarly,
        Cause::ReadinessIgnoresState,
        Cause::InflightCut,
        Cause::ShutdownOverGrace,
        Cause::StoreNotDurable,
        Cause::StatePerReplica,
        Cause::NeedsPrivileges,
        Cause::TelemetryResource,
        Cause::TraceContextDropped,
        Cause::TelemetryNotExported,
        Cause::ScheduledJobPerReplica,
        Cause::InProcessQueue,
        Cause::UnclaimedOutbox,
        Cause::JobAbandonedAtShutdown,
        Cause::BroadcastPerProcess,
        Cause::RelayNotResumed,
        Cause::TransportNeedsAffinity,
        Cause::LimitPerProcess,
        Cause::LimitKeyedOnProxy,
        Cause::LimitKeyForgeable,
        Cause::UploadsOnLocalDisk,
    ];

    /// The cause a finding points to. Restart losses point at what the lost artifact
    /// depends on: keys for cookies and form tokens, the session or cache store, the
    /// signing keys.
    pub fn of(finding: &Finding) -> Self {
        match finding.kind {
            FindingKind::AuthCookieRejected | FindingKind::AntiforgeryRejected => Cause::KeysNotShared,
            FindingKind::SessionLost => Cause::SessionPerProcess,
            FindingKind::CacheDivergent => Cause::CachePerProcess,
            FindingKind::SigningKeysDivergent => Cause::SigningKeysNotShared,
            FindingKind::ArtifactLostAfterRestart => match finding.artifact.kind.as_str() {
                "auth-cookie" | "antiforgery-token" => Cause::KeysNotPersisted,
                "session" => Cause::SessionPerProcess,
                "cache-entry" => Cause::CachePerProcess,
                "signed-token" | "signing-keys" => Cause::SigningKeysNotShared,
                crate::vocab::finding::UPLOAD => Cause::UploadsOnLocalDisk,
                _ => Cause::StatePerReplica,
            },
            FindingKind::ArtifactLostAfterStoreRestart => Cause::StoreNotDurable,
            FindingKind::ForwardedProtoIgnored | FindingKind::ForwardedForIgnored => Cause::ForwardedHeadersIgnored,
            FindingKind::ForwardedHeadersSpoofable => Cause::ForwardedHeadersTrusted,
            FindingKind::ReadinessPremature => Cause::ReadyTooEarly,
            FindingKind::ReadinessStale => Cause::ReadinessIgnoresState,
            FindingKind::InflightDropped => Cause::InflightCut,
            FindingKind::RefusedDuringDeregistration => Cause::RefusesWhileRouted,
            FindingKind::ShutdownOverranGrace => Cause::ShutdownOverGrace,
            FindingKind::KeyringRaceOnStart => Cause::KeyringRace,
            FindingKind::StartRace => Cause::MigrationsRace,
            FindingKind::FailsHardenedRuntime => Cause::NeedsPrivileges,
            FindingKind::TelemetryUnattributed => match finding.step.as_str() {
                crate::check::telemetry::TRACEPARENT => Cause::TraceContextDropped,
                crate::check::telemetry::EXPORTS => Cause::TelemetryNotExported,
                _ => Cause::TelemetryResource,
            },
            FindingKind::JobRunsOnEveryReplica => Cause::ScheduledJobPerReplica,
            // A scheduled job is lost only as a run begun and then cut off: no queue held it.
            FindingKind::WorkLostAtShutdown if finding.check == ExperimentKind::ScheduledJobs.name() => Cause::JobAbandonedAtShutdown,
            FindingKind::WorkLostAtShutdown => Cause::InProcessQueue,
            FindingKind::SideEffectDuplicated => Cause::UnclaimedOutbox,
            // Shared before the disruption: the relay did not come back.
            FindingKind::BroadcastNotShared if finding.after.is_some() => Cause::RelayNotResumed,
            FindingKind::BroadcastNotShared => Cause::BroadcastPerProcess,
            FindingKind::AffinityRequired => Cause::TransportNeedsAffinity,
            FindingKind::LimitPerReplica | FindingKind::LimitResetByRestart => Cause::LimitPerProcess,
            FindingKind::LimitSharedByAllClients => Cause::LimitKeyedOnProxy,
            FindingKind::LimitSpoofable => Cause::LimitKeyForgeable,
            FindingKind::UploadNotShared => Cause::UploadsOnLocalDisk,
            FindingKind::ExpectationFailed => Cause::StatePerReplica,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Cause::KeysNotShared => "keys-not-shared",
            Cause::KeysNotPersisted => "keys-not-persisted",
            Cause::KeyringRace => "keyring-race",
            Cause::MigrationsRace => "migrations-race",
            Cause::SessionPerProcess => "session-per-process",
            Cause::CachePerProcess => "cache-per-process",
            Cause::SigningKeysNotShared => "signing-keys-not-shared",
            Cause::ForwardedHeadersIgnored => "forwarded-headers-ignored",
            Cause::ForwardedHeadersTrusted => "forwarded-headers-trusted",
            Cause::RefusesWhileRouted => "refuses-while-routed",
            Cause::ReadyTooEarly => "ready-too-early",
            Cause::ReadinessIgnoresState => "readiness-ignores-state",
            Cause::InflightCut => "inflight-cut",
            Cause::ShutdownOverGrace => "shutdown-over-grace",
            Cause::StoreNotDurable => "store-not-durable",
            Cause::StatePerReplica => "state-per-replica",
            Cause::NeedsPrivileges => "needs-privileges",
            Cause::TelemetryResource => "telemetry-resource",
            Cause::TraceContextDropped => "trace-context-dropped",
            Cause::TelemetryNotExported => "telemetry-not-exported",
            Cause::ScheduledJobPerReplica => "scheduled-job-per-replica",
            Cause::InProcessQueue => "in-process-queue",
            Cause::UnclaimedOutbox => "unclaimed-outbox",
            Cause::JobAbandonedAtShutdown => "job-abandoned-at-shutdown",
            Cause::BroadcastPerProcess => "broadcast-per-process",
            Cause::RelayNotResumed => "relay-not-resumed",
            Cause::TransportNeedsAffinity => "transport-needs-affinity",
            Cause::LimitPerProcess => "limit-per-process",
            Cause::LimitKeyedOnProxy => "limit-keyed-on-proxy",
            Cause::LimitKeyForgeable => "limit-key-forgeable",
            Cause::UploadsOnLocalDisk => "uploads-on-local-disk",
        }
    }

    /// The cause in a sentence, as the diagnosis table shows it.
    pub fn title(self) -> &'static str {
        match self {
            Cause::KeysNotShared => "keys that protect cookies and form tokens are not shared across replicas",
            Cause::KeysNotPersisted => "keys that protect cookies and form tokens are lost when a replica restarts",
            Cause::KeyringRace => "replicas that start together each create a key ring of their own",
            Cause::MigrationsRace => "replicas that start together each run the app's migrations (or other one-time setup) at once",
            Cause::SessionPerProcess => "sessions are kept in each process",
            Cause::CachePerProcess => "the cache is kept in each process",
            Cause::SigningKeysNotShared => "token signing keys are not shared across replicas or kept across restarts",
            Cause::ForwardedHeadersIgnored => "forwarded headers are not honoured",
            Cause::ForwardedHeadersTrusted => "forwarded headers are trusted from anyone",
            Cause::RefusesWhileRouted => "the app refuses connections while the platform still routes to it",
            Cause::ReadyTooEarly => "readiness says ready too early",
            Cause::ReadinessIgnoresState => "readiness says ready while the replica cannot serve",
            Cause::InflightCut => "requests in flight are cut at SIGTERM",
            Cause::ShutdownOverGrace => "shutdown takes longer than the grace period",
            Cause::StoreNotDurable => "the shared store is not durable",
            Cause::StatePerReplica => "state a scenario relies on is kept per replica",
            Cause::NeedsPrivileges => "the app needs root, a capability or a writable root filesystem",
            Cause::TelemetryResource => "telemetry does not name one service and each replica apart",
            Cause::TraceContextDropped => "replicas start traces of their own instead of continuing the caller's",
            Cause::TelemetryNotExported => "a replica's telemetry does not reach the endpoint it was given",
            Cause::ScheduledJobPerReplica => "a scheduled job runs in every replica, once per replica",
            Cause::InProcessQueue => "accepted work waits in a process's memory and is lost when the process stops",
            Cause::UnclaimedOutbox => "work in a shared outbox or queue is sent by every replica that sees it, unclaimed",
            Cause::JobAbandonedAtShutdown => "a job running at SIGTERM is cut off, neither finished nor handed back",
            Cause::BroadcastPerProcess => "live updates reach only the subscribers of the replica they were published through",
            Cause::RelayNotResumed => "a replica stops relaying live updates after a disruption (the store's restart, its own) and does not resume",
            Cause::TransportNeedsAffinity => {
                "a transport keeps its session on the replica that opened it: a deployment requirement (sticky routing, or WebSockets only), not a fault of the code"
            }
            Cause::LimitPerProcess => "a rate limit counts in each replica's memory: a client gets the limit once per replica, and again after every restart",
            Cause::LimitKeyedOnProxy => "a rate limit is keyed on the proxy's address, so every client shares one count",
            Cause::LimitKeyForgeable => "a rate limit is keyed on an X-Forwarded-For that any client can write",
            Cause::UploadsOnLocalDisk => "uploaded files are kept on the disk of the replica that received them",
        }
    }

    /// The topic of the multi-instance checklist the cause comes from.
    pub fn topic(self) -> &'static str {
        match self {
            Cause::KeysNotShared | Cause::KeysNotPersisted | Cause::KeyringRace => "key sharing (data protection)",
            Cause::SigningKeysNotShared => "key sharing (signing keys)",
            Cause::StoreNotDurable => "key sharing (a volatile store)",
            Cause::SessionPerProcess | Cause::CachePerProcess | Cause::StatePerReplica => "distributed caching and sessions",
            Cause::ForwardedHeadersIgnored | Cause::ForwardedHeadersTrusted => "forwarded headers",
            Cause::ReadyTooEarly | Cause::ReadinessIgnoresState => "health checks",
            Cause::RefusesWhileRouted | Cause::InflightCut | Cause::ShutdownOverGrace => "graceful shutdown",
            Cause::NeedsPrivileges => "container security (non-root, read-only filesystem)",
            Cause::TelemetryResource | Cause::TraceContextDropped | Cause::TelemetryNotExported => "observability (OpenTelemetry)",
            Cause::ScheduledJobPerReplica | Cause::InProcessQueue | Cause::UnclaimedOutbox | Cause::JobAbandonedAtShutdown => "background jobs",
            Cause::BroadcastPerProcess | Cause::RelayNotResumed | Cause::TransportNeedsAffinity => "real-time (WebSockets, server-sent events)",
            Cause::LimitPerProcess | Cause::LimitKeyedOnProxy | Cause::LimitKeyForgeable => "rate limits and lockouts",
            Cause::UploadsOnLocalDisk => "uploaded files",
            Cause::MigrationsRace => "databases and migrations",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

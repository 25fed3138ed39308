//! What findings are called: their kinds (ids stable in every report format and across
//! versions), the artifacts a flow hands over, and a kind a run could not exercise.

use serde::{Deserialize, Serialize};

/// What one replica hands out that another must honour. The well-known kinds name the
/// finding a cross-replica failure is; any other name is a user's own artifact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Artifact(pub String);

/// The artifact a transport's handshake leaves on one replica (a polling session id, a
/// negotiate token): the flow needs its requests routed to that replica.
pub const TRANSPORT_SESSION: &str = "transport-session";

/// The artifact an upload leaves: a file one replica wrote, which the others must serve.
pub const UPLOAD: &str = "upload";

impl Artifact {
    /// Whether the artifact belongs to one replica by design, as a connection does: a
    /// replica that restarts is expected to lose it, and the client to open another.
    pub fn pinned(&self) -> bool {
        self.0 == TRANSPORT_SESSION
    }
}

/// The kind of a cross-instance inconsistency: what the finding says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FindingKind {
    AuthCookieRejected,
    AntiforgeryRejected,
    SessionLost,
    CacheDivergent,
    SigningKeysDivergent,
    ArtifactLostAfterRestart,
    ArtifactLostAfterStoreRestart,
    ForwardedProtoIgnored,
    ForwardedForIgnored,
    ForwardedHeadersSpoofable,
    ReadinessPremature,
    ReadinessStale,
    InflightDropped,
    RefusedDuringDeregistration,
    ShutdownOverranGrace,
    KeyringRaceOnStart,
    StartRace,
    FailsHardenedRuntime,
    TelemetryUnattributed,
    JobRunsOnEveryReplica,
    SideEffectDuplicated,
    WorkLostAtShutdown,
    BroadcastNotShared,
    AffinityRequired,
    LimitPerReplica,
    LimitResetByRestart,
    LimitSharedByAllClients,
    LimitSpoofable,
    UploadNotShared,
    ExpectationFailed,
}

impl FindingKind {
    /// The kind a cross-replica failure to honour `artifact` is.
    pub fn for_artifact(artifact: Option<&Artifact>) -> Self {
        match artifact.map(|a| a.0.as_str()) {
            Some("auth-cookie") => FindingKind::AuthCookieRejected,
            Some("antiforgery-token") => FindingKind::AntiforgeryRejected,
            Some("session") => FindingKind::SessionLost,
            Some("cache-entry") => FindingKind::CacheDivergent,
            Some("signed-token" | "signing-keys") => FindingKind::SigningKeysDivergent,
            Some(TRANSPORT_SESSION) => FindingKind::AffinityRequired,
            Some(UPLOAD) => FindingKind::UploadNotShared,
            _ => FindingKind::ExpectationFailed,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            FindingKind::AuthCookieRejected => "auth-cookie-rejected",
            FindingKind::AntiforgeryRejected => "antiforgery-rejected",
            FindingKind::SessionLost => "session-lost",
            FindingKind::CacheDivergent => "cache-divergent",
            FindingKind::SigningKeysDivergent => "signing-keys-divergent",
            FindingKind::ArtifactLostAfterRestart => "artifact-lost-after-restart",
            FindingKind::ArtifactLostAfterStoreRestart => "artifact-lost-after-store-restart",
            FindingKind::ForwardedProtoIgnored => "forwarded-proto-ignored",
            FindingKind::ForwardedForIgnored => "forwarded-for-ignored",
            FindingKind::ForwardedHeadersSpoofable => "forwarded-headers-spoofable",
            FindingKind::ReadinessPremature => "readiness-premature",
            FindingKind::ReadinessStale => "readiness-stale",
            FindingKind::InflightDropped => "inflight-dropped",
            FindingKind::RefusedDuringDeregistration => "refused-during-deregistration",
            FindingKind::ShutdownOverranGrace => "shutdown-overran-grace",
            FindingKind::KeyringRaceOnStart => "keyring-race-on-start",
            FindingKind::StartRace => "start-race",
            FindingKind::FailsHardenedRuntime => "fails-hardened-runtime",
            FindingKind::TelemetryUnattributed => "telemetry-unattributed",
            FindingKind::JobRunsOnEveryReplica => "job-runs-on-every-replica",
            FindingKind::SideEffectDuplicated => "side-effect-duplicated",
            FindingKind::WorkLostAtShutdown => "work-lost-at-shutdown",
            FindingKind::BroadcastNotShared => "broadcast-not-shared",
            FindingKind::AffinityRequired => "affinity-required",
            FindingKind::LimitPerReplica => "limit-per-replica",
            FindingKind::LimitResetByRestart => "limit-reset-by-restart",
            FindingKind::LimitSharedByAllClients => "limit-shared-by-all-clients",
            FindingKind::LimitSpoofable => "limit-spoofable",
            FindingKind::UploadNotShared => "upload-not-shared",
            FindingKind::ExpectationFailed => "expectation-failed",
        }
    }
}

impl FindingKind {
    /// Whether its findings are about something one replica handed out and another did
    /// not honour, rather than about the replicas side by side.
    pub fn hands_over(self) -> bool {
        !matches!(
            self,
            FindingKind::TelemetryUnattributed
                | FindingKind::StartRace
                | FindingKind::JobRunsOnEveryReplica
                | FindingKind::SideEffectDuplicated
                | FindingKind::WorkLostAtShutdown
                | FindingKind::BroadcastNotShared
                | FindingKind::LimitPerReplica
                | FindingKind::LimitResetByRestart
                | FindingKind::LimitSharedByAllClients
                | FindingKind::LimitSpoofable
        )
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// A kind a check looks for that this run could not exercise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Untested {
    pub kind: FindingKind,
    pub reason: String,
}

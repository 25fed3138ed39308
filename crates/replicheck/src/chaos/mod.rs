//! Chaos: what replicheck does to the cluster while virtual users run.
//!
//! Each experiment pairs a disruption with the workload that shows its effect, runs that
//! workload once without the disruption (the control), and ends by healing the cluster so
//! the next experiment starts whole. Experiments are plain data in the plan, drawn from
//! the seed like everything else; `experiment` runs them and records what happened.
//!
//! | experiment | disruption | looks for |
//! | --- | --- | --- |
//! | `restart` | graceful restart of one replica | artifacts lost across the restart, premature readiness |
//! | `kill` | SIGKILL of one replica, then a new start | artifacts lost across it |
//! | `pause` | SIGSTOP then SIGCONT of one replica | state lost across a pause |
//! | `rolling-restart` | every replica replaced, surge 1, under load | failed requests, lost artifacts |
//! | `scale-out` | a replica added | artifacts the new replica refuses |
//! | `sigterm` | SIGTERM with requests in flight and arriving | dropped, refused, stale readiness, overrun grace |
//! | `store-restart` | Redis stopped and started | artifacts lost with the store |
//! | `store-outage` | Redis stopped for a while | readiness that ignores the store |
//! | `hardened` | every replica replaced by one run as a restricted pod (not root, no capabilities, read-only root filesystem) | flows that need more |
//! | `cold-start` | every replica stopped, the shared directory emptied, all started at once | key rings each replica makes for itself |

pub mod experiment;

use serde::{Deserialize, Serialize};

use crate::check::Untested;
use crate::check::finding::FindingKind;
use crate::cluster::BackendKind;
use crate::vocab::replica::ReplicaId;
use crate::plan::{Load, VuPlan, seed};
use crate::scenario::Scenario;
use crate::target::{Deregistration, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ExperimentKind {
    Restart,
    Kill,
    Pause,
    RollingRestart,
    ScaleOut,
    Sigterm,
    StoreRestart,
    StoreOutage,
    ColdStart,
    Hardened,
}

impl ExperimentKind {
    pub const ALL: [ExperimentKind; 10] = [
        ExperimentKind::Restart,
        ExperimentKind::Kill,
        ExperimentKind::Pause,
        ExperimentKind::RollingRestart,
        ExperimentKind::ScaleOut,
        ExperimentKind::Sigterm,
        ExperimentKind::StoreRestart,
        ExperimentKind::StoreOutage,
        ExperimentKind::ColdStart,
        ExperimentKind::Hardened,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExperimentKind::Restart => "restart",
            ExperimentKind::Kill => "kill",
            ExperimentKind::Pause => "pause",
            ExperimentKind::RollingRestart => "rolling-restart",
            ExperimentKind::ScaleOut => "scale-out",
            ExperimentKind::Sigterm => "sigterm",
            ExperimentKind::StoreRestart => "store-restart",
            ExperimentKind::StoreOutage => "store-outage",
            ExperimentKind::ColdStart => "cold-start",
            ExperimentKind::Hardened => "hardened",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kinds this experiment looks for (a scale-out also finds the workload's own kinds).
    pub fn checks(self) -> Vec<FindingKind> {
        use FindingKind::*;
        match self {
            ExperimentKind::Restart => vec![ArtifactLostAfterRestart, ReadinessPremature, ShutdownOverranGrace],
            ExperimentKind::Kill => vec![ArtifactLostAfterRestart, ReadinessPremature],
            ExperimentKind::Pause => vec![ArtifactLostAfterRestart],
            ExperimentKind::RollingRestart => vec![
                ArtifactLostAfterRestart,
                InflightDropped,
                RefusedDuringDeregistration,
                ShutdownOverranGrace,
                ReadinessPremature,
            ],
            ExperimentKind::ScaleOut => vec![ReadinessPremature],
            ExperimentKind::Sigterm => vec![InflightDropped, RefusedDuringDeregistration, ShutdownOverranGrace, ReadinessStale],
            ExperimentKind::StoreRestart => vec![ArtifactLostAfterStoreRestart],
            ExperimentKind::StoreOutage => vec![ReadinessStale],
            ExperimentKind::ColdStart => vec![KeyringRaceOnStart, ReadinessPremature],
            ExperimentKind::Hardened => vec![FailsHardenedRuntime],
        }
    }

    /// Kinds this experiment looks for that it cannot exercise against the target.
    pub fn untested(self, target: &Target) -> Vec<Untested> {
        let mut untested = Vec::new();
        if self != ExperimentKind::Sigterm {
            return untested;
        }
        let settings = &target.balancer;
        let slow_for = humantime::format_duration(target.chaos.slow_for);
        // Slow requests start just before the balancer stops routing to the victim (or
        // before SIGTERM, if that comes first); they must still run when SIGTERM arrives.
        let sent = settings.sigterm_after().min(settings.routed_for()).saturating_sub(experiment::IN_FLIGHT_LEAD);
        let reason = match (&target.chaos.slow, settings.deregistration) {
            (None, _) => Some("no request was in flight at SIGTERM: the target has no [chaos] slow request".to_owned()),
            (Some(_), Deregistration::BeforeSigterm) if target.chaos.slow_for <= settings.deregistration_delay.saturating_add(experiment::IN_FLIGHT_LEAD) => Some(format!(
                "no request was in flight at SIGTERM: the balancer lets requests finish for up to the deregistration delay ({}) before SIGTERM, and the slow request takes {slow_for}; raise [chaos] slow_for above the delay",
                humantime::format_duration(settings.deregistration_delay)
            )),
            (Some(_), Deregistration::Kubernetes) if sent.saturating_add(target.chaos.slow_for) <= settings.sigterm_after() => Some(format!(
                "no request was in flight at SIGTERM: the slow request ({slow_for} long) ends before SIGTERM, which comes {} after the balancer stopped routing; raise [chaos] slow_for",
                humantime::format_duration(settings.sigterm_after().saturating_sub(settings.routed_for()))
            )),
            _ => None,
        };
        untested.extend(reason.map(|reason| Untested {
            kind: FindingKind::InflightDropped,
            reason,
        }));
        untested
    }

    /// Whether the disruption hits one replica (the plan's victim) rather than all of
    /// them or the store.
    pub fn hits_one(self) -> bool {
        matches!(self, ExperimentKind::Restart | ExperimentKind::Kill | ExperimentKind::Pause | ExperimentKind::Sigterm)
    }

    /// Whether the workload is users handing artifacts over the disruption.
    fn hands_over(self) -> bool {
        !matches!(self, ExperimentKind::Sigterm | ExperimentKind::StoreOutage)
    }

    /// Whether a run that names no experiments runs this one on `backend`: hardening takes
    /// containers, so elsewhere it runs only when named, to say why it cannot.
    pub fn runs_by_default_on(self, backend: BackendKind) -> bool {
        self != ExperimentKind::Hardened || backend == BackendKind::Docker
    }

    /// Why this experiment cannot run on replicas of `backend` replicheck starts itself (the
    /// external backend's instances say for themselves).
    pub fn backend_skip_reason(self, backend: BackendKind) -> Option<String> {
        (self == ExperimentKind::Hardened && backend == BackendKind::Process)
            .then(|| "hardening takes containers: run the target's image with --backend docker".to_owned())
    }

    /// Why this experiment cannot run against the target, if it cannot.
    pub fn skip_reason(self, target: &Target, scenarios: &[Scenario]) -> Option<String> {
        let needs_store = matches!(self, ExperimentKind::StoreRestart | ExperimentKind::StoreOutage);
        if needs_store && target.dependencies.redis.is_none() {
            return Some("the target has no Redis ([dependencies.redis]) for replicheck to disrupt".into());
        }
        if self.hands_over() && !scenarios.iter().any(|s| first_handoff(s).is_some()) {
            return Some("no scenario hands an artifact over (no step `consumes` one)".into());
        }
        if self == ExperimentKind::Hardened && target.start.container.is_some() {
            return Some("testcontainers starts the replicas' containers, and replicheck does not harden those yet".into());
        }
        if self == ExperimentKind::StoreOutage && target.session.is_none() && target.cache.is_none() {
            return Some("the target has no [session] or [cache] flow that uses the store".into());
        }
        None
    }
}

/// One experiment of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentPlan {
    pub kind: ExperimentKind,
    /// The replica the disruption hits, for experiments that hit one.
    pub victim: ReplicaId,
    /// Users that produce an artifact before the disruption and consume it after.
    pub handoffs: Vec<Handoff>,
    /// Users that loop whole scenarios while the disruption goes on.
    pub load: Option<Load>,
}

/// A user that runs up to step `gate` (its first consuming step), waits for the
/// disruption, then goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub user: VuPlan,
    pub gate: usize,
}

/// Users per scenario that hand an artifact over each disruption.
const HANDOFFS_PER_SCENARIO: usize = 2;

/// The first step that consumes an artifact: where a handoff waits for the disruption.
pub fn first_handoff(scenario: &Scenario) -> Option<usize> {
    scenario.steps.iter().position(|s| s.consumes.is_some())
}

/// Plans one experiment from the seed. Users are numbered from `first_vu`; a rolling
/// restart adds `load_vus` looping users.
pub fn plan(kind: ExperimentKind, seed: u64, replicas: u16, scenarios: &[Scenario], first_vu: u32, load_vus: u32) -> ExperimentPlan {
    use rand::seq::IndexedRandom;
    let all: Vec<ReplicaId> = (0..replicas).map(ReplicaId).collect();
    let mut rng = seed::stream(seed, &format!("chaos/{}", kind.name()));
    let victim = *all.choose(&mut rng).unwrap_or(&ReplicaId(0));
    let mut handoffs = Vec::new();
    if kind.hands_over() {
        for scenario in scenarios {
            let Some(gate) = first_handoff(scenario) else { continue };
            for _ in 0..HANDOFFS_PER_SCENARIO {
                // An artifact crosses the disruption and nothing else: produced and consumed
                // on one replica, so a failure is not one the scenarios already test across
                // replicas. Only a scale-out hands over to another, the one it adds (which
                // takes the name after the last).
                let (before, after) = match kind {
                    ExperimentKind::Restart | ExperimentKind::Kill | ExperimentKind::Pause => (victim, victim),
                    ExperimentKind::ScaleOut => (*all.choose(&mut rng).unwrap_or(&victim), ReplicaId(replicas)),
                    // Across replicas: what replicas started together must agree on.
                    ExperimentKind::ColdStart => {
                        let home = *all.choose(&mut rng).unwrap_or(&victim);
                        let others: Vec<ReplicaId> = all.iter().copied().filter(|r| *r != home).collect();
                        (home, *others.choose(&mut rng).unwrap_or(&home))
                    }
                    _ => {
                        let home = *all.choose(&mut rng).unwrap_or(&victim);
                        (home, home)
                    }
                };
                let routes = (0..scenario.steps.len()).map(|i| if i < gate { before } else { after }).collect();
                handoffs.push(Handoff {
                    user: VuPlan {
                        vu: first_vu + handoffs.len() as u32,
                        scenario: scenario.name.clone(),
                        nonce: seed::nonce(&mut rng),
                        routes,
                    },
                    gate,
                });
            }
        }
    }
    let load = (kind == ExperimentKind::RollingRestart && load_vus > 0).then(|| Load {
        vus: load_vus,
        first_vu: first_vu + handoffs.len() as u32,
        scenarios: scenarios.iter().map(|s| s.name.clone()).collect(),
        replicas: all.clone(),
        seed: rand::RngExt::random(&mut rng),
    });
    ExperimentPlan {
        kind,
        victim,
        handoffs,
        load,
    }
}

/// How many user numbers an experiment plan takes.
pub fn users(plan: &ExperimentPlan) -> u32 {
    plan.handoffs.len() as u32 + plan.load.as_ref().map_or(0, |l| l.vus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::fixtures::{demo_scenarios, demo_target};

    #[test]
    fn experiments_plan_from_the_seed() {
        let scenarios = demo_scenarios();
        for kind in ExperimentKind::ALL {
            let a = plan(kind, 7, 3, &scenarios, 100, 8);
            assert_eq!(a, plan(kind, 7, 3, &scenarios, 100, 8));
            assert!(a.victim.0 < 3);
        }
        let restart = plan(ExperimentKind::Restart, 7, 3, &scenarios, 100, 8);
        assert_eq!(restart.handoffs.len(), scenarios.len() * HANDOFFS_PER_SCENARIO);
        assert!(restart.handoffs.iter().all(|h| h.user.routes.iter().all(|r| *r == restart.victim)));
        assert_eq!(restart.handoffs[0].user.vu, 100);
        let scale = plan(ExperimentKind::ScaleOut, 7, 3, &scenarios, 0, 0);
        assert!(scale.handoffs.iter().all(|h| h.user.routes[h.gate] == ReplicaId(3)));
        let rolling = plan(ExperimentKind::RollingRestart, 7, 3, &scenarios, 0, 8);
        assert_eq!(rolling.load.as_ref().map(|l| l.vus), Some(8));
        assert!(plan(ExperimentKind::Sigterm, 7, 3, &scenarios, 0, 8).handoffs.is_empty());
        let cold = plan(ExperimentKind::ColdStart, 7, 3, &scenarios, 0, 0);
        assert!(!cold.handoffs.is_empty());
        assert!(cold.handoffs.iter().all(|h| h.user.routes[0] != h.user.routes[h.gate]), "every artifact crosses replicas");
    }

    #[test]
    fn store_experiments_need_redis() {
        let target = demo_target();
        let reason = ExperimentKind::StoreRestart.skip_reason(&target, &demo_scenarios());
        assert!(reason.unwrap().contains("no Redis"));
        assert_eq!(ExperimentKind::Restart.skip_reason(&target, &demo_scenarios()), None);
        assert!(ExperimentKind::Restart.skip_reason(&target, &[]).unwrap().contains("no scenario hands an artifact over"));
    }
}

//! Chaos: what replicheck does to the cluster while virtual users run.
//!
//! Each experiment pairs a disruption with the workload that shows its effect, runs that
//! workload once without the disruption (the control), and ends by healing the cluster so
//! the next experiment starts whole. Experiments are plain data in the plan, drawn from
//! the seed like everything else; `experiment` runs them and records what happened, and
//! `live` runs the broadcast experiment's subscribers and publishers, `limits` the clients
//! that try rate limits.
//!
//! | experiment | disruption | looks for |
//! | --- | --- | --- |
//! | `restart` | graceful restart of one replica | artifacts lost across the restart, premature readiness |
//! | `kill` | SIGKILL of one replica, then a new start | artifacts lost across it |
//! | `pause` | SIGSTOP then SIGCONT of one replica | state lost across a pause |
//! | `rolling-restart` | every replica replaced, surge 1, under load | failed requests, lost artifacts |
//! | `scale-out` | a replica added | artifacts the new replica refuses |
//! | `sigterm` | SIGTERM with requests in flight and arriving | dropped, refused, stale readiness, overrun grace |
//! | `store-restart NAME` | a dependency (Redis, PostgreSQL, a service) stopped and started | artifacts lost with it |
//! | `store-outage NAME` | a dependency stopped for a while | readiness that ignores it |
//! | `hardened` | every replica replaced by one run as a restricted pod (not root, no capabilities, read-only root filesystem) | flows that need more |
//! | `cold-start` | every replica stopped, the shared directory emptied and the database put back to its seed, all started at once | key rings each replica makes for itself, migrations every replica runs (a start that fails, flows that error) |
//! | `scheduled-jobs` | every replica runs for a while, then (with start markers) the one that begins a run is terminated, then one alone | a scheduled job delivered once per replica, a run abandoned at SIGTERM |
//! | `triggered-work` | work triggered through every replica, through one terminated right after, and through one alone | work delivered twice, work lost at shutdown |
//! | `broadcast` | a subscriber on each replica, a message published through its own replica and through the next; then the same after the victim's restart and the store's | a message that reaches one replica's subscribers only, or none after a disruption |
//! | `limits` | clients try each rate limit's attempt until limited: two through one replica, one through the others, one across a restart of the replica that counted, a stranger forging X-Forwarded-For | a limit counted per replica, cleared by a restart, keyed on the proxy's address, or on a header anyone writes |

pub mod experiment;
mod limits;
mod live;

pub use limits::THROUGH_NEEDED;


use crate::vocab::finding::Untested;
use crate::vocab::finding::FindingKind;
use crate::scenario::Scenario;
use crate::target::{Deregistration, Target};

pub use crate::vocab::experiment::ExperimentKind;

/// What an experiment needs of the target and its scenarios.
impl ExperimentKind {
    /// Kinds this experiment looks for that it cannot exercise against the target.
    pub fn untested(self, target: &Target) -> Vec<Untested> {
        let mut untested = Vec::new();
        if self == ExperimentKind::ScheduledJobs && target.scheduled.iter().all(|job| job.started.is_none()) {
            untested.push(Untested {
                kind: FindingKind::WorkLostAtShutdown,
                reason: "no [scheduled.NAME] job says when a run begins (`started`), so none was caught half-way at SIGTERM".into(),
            });
        }
        if self == ExperimentKind::Limits {
            let named = |limits: Vec<&crate::target::RateLimit>| limits.iter().map(|l| format!("[limit.{}]", l.name)).collect::<Vec<_>>().join(", ");
            let valueless: Vec<_> = target.rate_limits.iter().filter(|l| !l.sends_value()).collect();
            if !valueless.is_empty() {
                untested.push(Untested {
                    kind: FindingKind::LimitSharedByAllClients,
                    reason: format!("{}: every client sends the same attempt (no {{value}}), so a limit on what it names, such as an account, would be shared by design", named(valueless)),
                });
            }
            let single: Vec<_> = target.rate_limits.iter().filter(|l| (l.limit as usize) < THROUGH_NEEDED).collect();
            if !single.is_empty() {
                untested.push(Untested {
                    kind: FindingKind::LimitResetByRestart,
                    reason: format!("{}: a limit of 1 leaves one try after a restart, which a limit that refills could also give back", named(single)),
                });
            }
        }
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

    /// Whether a run that names no experiments runs this one against the target: background
    /// work is watched only for a target that says what it looks like.
    pub fn concerns(self, target: &Target) -> bool {
        match self {
            ExperimentKind::ScheduledJobs => !target.scheduled.is_empty(),
            ExperimentKind::TriggeredWork => !target.triggered.is_empty(),
            ExperimentKind::Broadcast => !target.broadcast.is_empty(),
            ExperimentKind::Limits => !target.rate_limits.is_empty(),
            _ => true,
        }
    }

    /// Why this experiment cannot run against the target, if it cannot.
    pub fn skip_reason(self, target: &Target, scenarios: &[Scenario]) -> Option<String> {
        if !self.concerns(target) {
            let table = match self {
                ExperimentKind::ScheduledJobs => "[scheduled.NAME] job to watch for",
                ExperimentKind::TriggeredWork => "[triggered.NAME] work to watch for",
                ExperimentKind::Limits => "[limit.NAME] rate limit to try",
                _ => "[broadcast.NAME] flow to subscribe to",
            };
            return Some(format!("the target declares no {table}"));
        }
        if self.disrupts_a_dependency() && target.dependencies.names().is_empty() {
            return Some("the target declares no dependency ([dependencies.NAME]) for replicheck to disrupt".into());
        }
        if self.hands_over() && !scenarios.iter().any(|s| first_handoff(s).is_some()) {
            return Some("no scenario hands an artifact over (no step `consumes` one)".into());
        }
        if self == ExperimentKind::Hardened && target.start.container.is_some() {
            return Some("testcontainers starts the replicas' containers, and replicheck does not harden those yet".into());
        }
        if self == ExperimentKind::StoreOutage && target.session.is_none() && target.cache.is_none() && scenarios.is_empty() {
            return Some("the target has no flow to try while the dependency is down (no [session], [cache] or scenario)".into());
        }
        None
    }
}

pub use crate::plan::experiment::{ExperimentPlan, Handoff, first_handoff, plan, users};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::fixtures::{demo_scenarios, demo_target};

    #[test]
    fn store_experiments_need_a_dependency() {
        let target = demo_target();
        let reason = ExperimentKind::StoreRestart.skip_reason(&target, &demo_scenarios());
        assert!(reason.unwrap().contains("no dependency"));
        assert_eq!(ExperimentKind::Restart.skip_reason(&target, &demo_scenarios()), None);
        assert!(ExperimentKind::Restart.skip_reason(&target, &[]).unwrap().contains("no scenario hands an artifact over"));
    }
}

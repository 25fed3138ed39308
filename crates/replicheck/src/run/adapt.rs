//! Adaptation: one fault must not hide the others. An app that ignores X-Forwarded-Proto
//! believes it is served over http, and a CSRF check comparing a post's Origin with that
//! belief refuses every browser's post, on one replica as on several: every question
//! behind a post would go unasked. When the origin trial (`check::adapt`) shows that this
//! is the cause, the scenarios it stopped are asked again with users that post with the
//! origin the app believes, experiments use such users, and everything says so.

use std::sync::Arc;

use super::Bound;
use super::ask::{Asked, Asking};
use crate::check::recorded::AskRecord;
use crate::check::{self, ScenarioStatus};
use crate::vocab::replica::ReplicaId;
use crate::history::{InspectionRun, Phase, VuRecord};
use crate::inspect;
use crate::plan::{self, Plan};
use crate::redact::Secrets;
use crate::scenario::Scenario;
use crate::vu::{self, VuContext};

impl Asking<'_> {
    /// Takes away one cause that fails browsers on a single replica, the app believing
    /// http behind the TLS-terminating proxy, when the origin trial shows it is the cause:
    /// then the scenarios it stopped are asked again with users that post with the origin
    /// the app believes, and experiments use such users.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn adapt(
        &self,
        ctx: &Arc<VuContext>,
        bound: &Bound,
        plan: &Plan,
        asked: &Asked,
        inspections: &[InspectionRun],
        free_vu: &mut u32,
        secrets: &mut Secrets,
    ) -> Adaptation {
        let mut adaptation = Adaptation::default();
        // The app honours X-Forwarded-Proto: whatever fails, the origin is not it.
        if inspect::believed_scheme(inspections).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https")) {
            return adaptation;
        }
        let experiments_run = bound.experiments.iter().any(|(_, skipped)| skipped.is_none());
        let suspects: Vec<&Scenario> = if bound.users.is_empty() {
            // Only experiments: their workload's posts are tried before they run.
            if experiments_run { bound.workload.iter().filter(|s| s.posts()).collect() } else { Vec::new() }
        } else {
            let failed = |name: &str| asked.verdict.scenarios.iter().any(|r| r.name == name && r.status == ScenarioStatus::BaselineFailed);
            bound.users.iter().filter(|s| failed(&s.name) && s.posts()).collect()
        };
        if suspects.is_empty() {
            return adaptation;
        }
        let adapted_ctx = Arc::new(ctx.adapted("http"));
        let mut browsers = Vec::new();
        let mut adapted = Vec::new();
        for scenario in &suspects {
            let user = plan.vus.iter().find(|u| u.scenario == scenario.name).cloned().unwrap_or_else(|| plan::VuPlan {
                vu: 0,
                scenario: scenario.name.clone(),
                nonce: format!("trial-{}", scenario.name),
                routes: vec![ReplicaId(0); scenario.steps.len()],
            });
            let home = user.routes.first().copied().unwrap_or(ReplicaId(0));
            for (users, suffix) in [(&mut browsers, "browser"), (&mut adapted, "adapted")] {
                users.push(plan::VuPlan {
                    vu: *free_vu,
                    nonce: format!("{}-{suffix}", user.nonce),
                    ..user.pinned(home)
                });
                *free_vu += 1;
            }
        }
        let (browsers, adapted) = tokio::join!(
            vu::execute(ctx, browsers, Phase::Control, self.concurrency),
            vu::execute(&adapted_ctx, adapted, Phase::Control, self.concurrency)
        );
        secrets.extend(&browsers.secrets);
        secrets.extend(&adapted.secrets);
        let mut confirmed = Vec::new();
        for (browser, trial) in browsers.history.vus.iter().zip(&adapted.history.vus) {
            if let check::adapt::TrialOutcome::OriginRefused { .. } = check::adapt::judge(browser, trial) {
                confirmed.push(browser.scenario.clone());
            }
            adaptation.trial.push((browser.clone(), trial.clone()));
        }
        if confirmed.is_empty() {
            return adaptation;
        }
        adaptation.ctx = Some(adapted_ctx.clone());
        // The scenarios it stopped, asked again: the same users and routes, values of their own.
        let rerun: Vec<Scenario> = bound.users.iter().filter(|s| confirmed.contains(&s.name)).cloned().collect();
        if rerun.is_empty() {
            return adaptation;
        }
        let planned: Vec<plan::VuPlan> = plan
            .vus
            .iter()
            .filter(|u| confirmed.contains(&u.scenario))
            .map(|u| {
                let renumbered = plan::VuPlan {
                    vu: *free_vu,
                    nonce: format!("{}-adapted", u.nonce),
                    ..u.clone()
                };
                *free_vu += 1;
                renumbered
            })
            .collect();
        let roster: Vec<(String, Option<String>)> = rerun.iter().map(|s| (s.name.clone(), None)).collect();
        let users = vu::execute(&adapted_ctx, planned.clone(), Phase::Adapted, self.concurrency).await;
        secrets.extend(&users.secrets);
        let asked = self.ask(&adapted_ctx, &rerun, &roster, &planned, users.history, free_vu, secrets).await;
        adaptation.adapted = Some(asked.record);
        adaptation
    }
}

/// Users that post with the origin the app believes, when browsers' posts failed only for
/// that, and the records of the trial and of asking again with them.
#[derive(Default)]
pub(super) struct Adaptation {
    /// The adapted users' context, for the experiments' workload.
    pub ctx: Option<Arc<VuContext>>,
    /// Each suspect scenario's browser and adapted user.
    pub trial: Vec<(VuRecord, VuRecord)>,
    /// The scenarios asked again.
    pub adapted: Option<AskRecord>,
}

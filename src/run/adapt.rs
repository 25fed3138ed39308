//! Adaptation: one fault must not hide the others. An app that ignores X-Forwarded-Proto
//! believes it is served over http, and a CSRF check comparing a post's Origin with that
//! belief refuses every browser's post, on one replica as on several: every question
//! behind a post would go unasked. When the origin trial (`check::adapt`) shows that this
//! is the cause, the scenarios it stopped are asked again with users that post with the
//! origin the app believes, experiments use such users, and everything says so.

use std::sync::Arc;

use super::ask::{Asked, Asking};
use super::{Bound, Checked};
use crate::check::finding::{Finding, FindingKind};
use crate::check::{self, ScenarioStatus};
use crate::cluster::Vantage;
use crate::cluster::replica::ReplicaId;
use crate::history::{History, InspectionRun, Phase};
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
        inspected: &Checked<InspectionRun>,
        vantage: Vantage,
        free_vu: &mut u32,
        secrets: &mut Secrets,
    ) -> Adaptation {
        let mut adaptation = Adaptation::default();
        // The app honours X-Forwarded-Proto: whatever fails, the origin is not it.
        if inspect::believed_scheme(&inspected.runs).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https")) {
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
        let public = ctx.balancer.to_string();
        let known_proto_finding = inspected.findings.iter().any(|f| f.kind == FindingKind::ForwardedProtoIgnored);
        let mut confirmed = Vec::new();
        for (browser, trial) in browsers.history.vus.iter().zip(&adapted.history.vus) {
            let check::adapt::TrialOutcome::OriginRefused { step, observed } = check::adapt::judge(browser, trial) else { continue };
            // With no echo endpoint to show it, the trial itself is the evidence, as long
            // as the app is meant to believe replicheck's balancer.
            if !known_proto_finding && vantage.proxy.is_some() && adaptation.findings.is_empty() {
                adaptation
                    .findings
                    .extend(check::adapt::finding(browser, trial, &observed, step, &public, self.seed, (self.reproduce)(&browser.scenario)));
            }
            confirmed.push(browser.scenario.clone());
        }
        adaptation.history.extend(browsers.history);
        adaptation.history.extend(adapted.history);
        if confirmed.is_empty() {
            return adaptation;
        }
        let note = format!(
            "posted with Origin and Referer http://{public}, the origin the app believes (forwarded-proto-ignored): browsers' posts behind TLS were refused even on one replica ({}), and the scheme was the only change",
            confirmed.join(", ")
        );
        adaptation.ctx = Some(adapted_ctx.clone());
        adaptation.note = Some(note.clone());
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
        adaptation.history.extend(asked.users);
        adaptation.history.extend(asked.evidence);
        adaptation.verdict = Some(asked.verdict);
        adaptation
    }
}

/// Users that post with the origin the app believes, when browsers' posts failed only for
/// that, and what asking again with them found.
#[derive(Default)]
pub(super) struct Adaptation {
    pub ctx: Option<Arc<VuContext>>,
    /// How the users were adapted, for every result and finding that used them.
    pub note: Option<String>,
    /// The verdict on the scenarios asked again.
    verdict: Option<check::Verdict>,
    /// `forwarded-proto-ignored` from the trial, when nothing else showed it.
    pub findings: Vec<Finding>,
    /// The trial's users and the adapted ones.
    pub history: History,
}

impl Adaptation {
    /// Puts the answers of the scenarios asked again in place of the browsers', saying how
    /// they were asked.
    pub fn apply(&self, verdict: &mut check::Verdict) {
        let (Some(adapted), Some(note)) = (&self.verdict, &self.note) else { return };
        for result in &adapted.scenarios {
            let Some(slot) = verdict.scenarios.iter_mut().find(|r| r.name == result.name) else { continue };
            let as_browsers = slot.reason.clone().unwrap_or_default();
            *slot = result.clone();
            slot.notes.push(format!("users {note}"));
            slot.notes.push(format!("as browsers: {as_browsers}"));
        }
        for finding in &adapted.findings {
            let mut finding = finding.clone();
            finding.notes.push(format!("users {note}"));
            verdict.findings.push(finding);
        }
    }
}


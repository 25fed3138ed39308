//! The users' cross-replica questions: triage of what they did, a control and a
//! reproduction for every failure that crossed replicas, a second asking of a failure on
//! one replica alone, then the verdict. Asked of the
//! planned users, and again of adapted ones (`adapt`).

use std::sync::Arc;

use super::BLURRED_RERUNS;
use crate::check;
use crate::check::recorded::AskRecord;
use crate::history::{History, Phase};
use crate::plan;
use crate::progress::{Observer, Progress};
use crate::redact::Secrets;
use crate::scenario::Scenario;
use crate::vu::{self, VuContext};

/// What the users' questions came to: the record the final verdict is judged from, and
/// a verdict now, to decide what to ask next.
pub(super) struct Asked {
    pub record: AskRecord,
    pub verdict: check::Verdict,
}

/// How the users' cross-replica questions are asked: shared by the planned users and
/// adapted ones.
pub(super) struct Asking<'a> {
    pub concurrency: usize,
    pub seed: u64,
    pub reproduce: &'a dyn Fn(&str) -> String,
    pub observer: &'a dyn Observer,
}

impl Asking<'_> {
    /// Triage of what `users` did, then a control and a reproduction per candidate (user
    /// numbers from `free_vu` on), then the verdict for the scenarios of `roster`.
    #[allow(clippy::too_many_arguments)]
    pub async fn ask(
        &self,
        ctx: &Arc<VuContext>,
        scenarios: &[Scenario],
        roster: &[(String, Option<String>)],
        planned: &[plan::VuPlan],
        users: History,
        free_vu: &mut u32,
        secrets: &mut Secrets,
    ) -> Asked {
        let triage = check::triage(scenarios, &users);
        let wanted = check::wanted(&triage.candidates);
        let alone = triage.asked_alone();
        let evidence_plans = plan::evidence::evidence_plans(planned, *free_vu, &wanted, &alone);
        *free_vu += plan::evidence::USERS_PER_WANTED * triage.candidates.len() as u32 + alone.len() as u32;
        let mut evidence = History::default();
        if !evidence_plans.again_alone.is_empty() {
            let again = evidence_plans.again_alone.iter().map(|(_, plan)| plan.clone()).collect();
            let executed = vu::execute(ctx, again, Phase::Control, self.concurrency).await;
            secrets.extend(&executed.secrets);
            evidence.extend(executed.history);
        }
        if !triage.candidates.is_empty() {
            self.observer.progress(Progress::ControlsStarted {
                candidates: triage.candidates.len(),
            });
            let controls = evidence_plans.controls.iter().chain(&evidence_plans.consumer_controls).cloned().collect();
            for (users, phase) in [(controls, Phase::Control), (evidence_plans.reproductions.clone(), Phase::Reproduce)] {
                let executed = vu::execute(ctx, users, phase, self.concurrency).await;
                secrets.extend(&executed.secrets);
                evidence.extend(executed.history);
            }
            // A write that also reached the consumer on its way left the value there; the
            // same user's values again would find it, so the rerun gets values of its own.
            for round in 1..=BLURRED_RERUNS {
                let blurred = check::blurred_reproductions(&wanted, &evidence_plans, &evidence);
                if blurred.is_empty() {
                    break;
                }
                let again: Vec<_> = blurred.iter().map(|plan| plan::VuPlan { nonce: format!("{}-again{round}", plan.nonce), ..(*plan).clone() }).collect();
                evidence.vus.retain(|record| !again.iter().any(|plan| plan.vu == record.vu));
                let executed = vu::execute(ctx, again, Phase::Reproduce, self.concurrency).await;
                secrets.extend(&executed.secrets);
                evidence.extend(executed.history);
            }
        }
        let verdict = check::judge(roster, &triage, &evidence_plans, &evidence, self.seed, self.reproduce);
        let record = AskRecord {
            roster: roster.to_vec(),
            users,
            plans: evidence_plans,
            evidence,
        };
        Asked { record, verdict }
    }
}

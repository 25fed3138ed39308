//! Judging the origin trial: does a scenario fail on one replica only because the app
//! believes it is served over http?
//!
//! The trial runs the same user twice on one replica: once as a browser behind TLS
//! (posts carry `Origin: https://…`), once posting with the origin the app believes
//! (`http://…`). Only the scheme of `Origin` and `Referer` differs, so a browser run that
//! is refused at a post while the other passes shows that cause and no other.

use super::finding::{ArtifactEvidence, Control, ControlResult, Finding, FindingKind};
use super::inspect::remedy;
use crate::history::{Observed, Outcome, VuRecord};

/// What one trial shows.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialOutcome {
    /// The browser passed too: the scheme is not the problem.
    BrowserPassed,
    /// The browser was refused at a post that the adapted user got through.
    OriginRefused { step: usize, observed: Observed },
    /// The adapted user failed as well (or the browser failed elsewhere): another cause.
    NotTheOrigin,
}

/// A post refused can show where it was sent (a login form answering 403) or later (a
/// session read that lacks what the refused post should have stored): the step named is
/// the refused post when one is, else the step that failed.
pub fn judge(browser: &VuRecord, adapted: &VuRecord) -> TrialOutcome {
    let Some(failed) = browser.first_failure() else { return TrialOutcome::BrowserPassed };
    let Outcome::Failed { observed, .. } = &failed.outcome else { return TrialOutcome::NotTheOrigin };
    let posts = |step: &&crate::history::StepRecord| step.requests.iter().any(|r| r.method != "GET" && r.method != "HEAD");
    if adapted.first_failure().is_some() || !browser.steps.iter().any(|s| posts(&s)) {
        return TrialOutcome::NotTheOrigin;
    }
    let refused = browser
        .steps
        .iter()
        .filter(posts)
        .find(|s| s.requests.iter().any(|r| r.method != "GET" && r.status.is_some_and(|status| (400..500).contains(&status))));
    match refused {
        Some(step) if step.index != failed.index => {
            let request = step.requests.iter().find(|r| r.method != "GET" && r.status.is_some_and(|s| (400..500).contains(&s)));
            TrialOutcome::OriginRefused {
                step: step.index,
                observed: Observed {
                    status: request.and_then(|r| r.status),
                    reason: format!("{} {} was refused, and step `{}` then failed: {observed}", request.map_or("", |r| &r.method), request.map_or("", |r| &r.path), failed.name),
                    ..Observed::default()
                },
            }
        }
        _ => TrialOutcome::OriginRefused {
            step: failed.index,
            observed: observed.clone(),
        },
    }
}

/// A `forwarded-proto-ignored` finding from a trial, for apps without an echo endpoint
/// that would have shown it directly.
pub fn finding(browser: &VuRecord, adapted: &VuRecord, observed: &Observed, step: usize, public: &str, seed: u64, reproduce: String) -> Option<Finding> {
    let refused = browser.steps.get(step)?;
    let replica = refused.served_by?;
    Some(Finding {
        id: String::new(),
        kind: FindingKind::ForwardedProtoIgnored,
        check: browser.scenario.clone(),
        scenario: browser.scenario.clone(),
        step: refused.name.clone(),
        producer: replica,
        consumer: replica,
        artifact: ArtifactEvidence::named("none"),
        expected: format!("a post with Origin https://{public} is accepted: the balancer sends X-Forwarded-Proto: https"),
        observed: Observed {
            reason: format!("{}; the app compared it with the http it believes", observed.reason),
            ..observed.clone()
        },
        control: Control {
            result: ControlResult::Passed,
            detail: format!("the same steps on {}, posting with Origin http://{public}, passed", replica.id),
            pinned_to: Some(replica.id),
            vu: Some(adapted.vu),
        },
        reproduced: true,
        occurrences: 1,
        vu: Some(browser.vu),
        at_ms: refused.requests.first().map(|r| r.start_ms),
        after: None,
        notes: vec![remedy(FindingKind::ForwardedProtoIgnored).into()],
        observations: Vec::new(),
        accepted: None,
        minimal_schedule: None,
        seed,
        reproduce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::replica::{Incarnation, ReplicaId};
    use crate::history::{Phase, RequestRecord, StepRecord};

    fn user(vu: u32, steps: &[(&str, Outcome)]) -> VuRecord {
        let on = Incarnation::first(ReplicaId(0));
        VuRecord {
            phase: Phase::Control,
            vu,
            iteration: 0,
            scenario: "login".into(),
            steps: steps
                .iter()
                .enumerate()
                .map(|(index, (method, outcome))| StepRecord {
                    index,
                    name: format!("step {index}"),
                    planned: on.id,
                    served_by: Some(on),
                    also_reached: Vec::new(),
                    requests: vec![RequestRecord {
                        method: (*method).into(),
                        path: "/login".into(),
                        planned: on.id,
                        served_by: Some(on),
                        status: Some(200),
                        location: None,
                        set_cookies: Vec::new(),
                        start_ms: index as f64,
                        end_ms: index as f64 + 1.0,
                        error: None,
                    }],
                    outcome: outcome.clone(),
                    set_cookies: Vec::new(),
                    cookie_shapes: Default::default(),
                    captured: Vec::new(),
                })
                .collect(),
        }
    }

    fn refused() -> Outcome {
        Outcome::Failed {
            expected: "status 200".into(),
            observed: Observed {
                status: Some(403),
                reason: "expected status 200".into(),
                ..Observed::default()
            },
        }
    }

    #[test]
    fn a_post_refused_only_with_the_https_origin_is_the_origin() {
        let browser = user(1, &[("GET", Outcome::Passed), ("POST", refused())]);
        let adapted = user(2, &[("GET", Outcome::Passed), ("POST", Outcome::Passed)]);
        assert!(matches!(judge(&browser, &adapted), TrialOutcome::OriginRefused { step: 1, .. }));
        let TrialOutcome::OriginRefused { step, observed } = judge(&browser, &adapted) else { unreachable!() };
        let finding = finding(&browser, &adapted, &observed, step, "127.0.0.1:9", 7, "again".into()).unwrap();
        assert_eq!(finding.kind, FindingKind::ForwardedProtoIgnored);
        assert_eq!(finding.control.vu, Some(2));
        assert!(finding.control.detail.contains("Origin http://127.0.0.1:9"), "{}", finding.control.detail);
    }

    #[test]
    fn other_failures_are_not_the_origin() {
        let passed = user(2, &[("GET", Outcome::Passed), ("POST", Outcome::Passed)]);
        assert_eq!(judge(&passed, &passed), TrialOutcome::BrowserPassed);
        let both = user(1, &[("GET", Outcome::Passed), ("POST", refused())]);
        assert_eq!(judge(&both, &both), TrialOutcome::NotTheOrigin);
        let at_a_get = user(1, &[("GET", refused())]);
        assert_eq!(judge(&at_a_get, &passed), TrialOutcome::NotTheOrigin);
    }

    #[test]
    fn a_refused_post_that_shows_at_a_later_read_is_the_origin() {
        // The post "succeeded" as far as its step could tell; the read shows it stored nothing.
        let mut browser = user(1, &[("POST", Outcome::Passed), ("GET", refused())]);
        browser.steps[0].requests[0].status = Some(403);
        let adapted = user(2, &[("POST", Outcome::Passed), ("GET", Outcome::Passed)]);
        let TrialOutcome::OriginRefused { step, observed } = judge(&browser, &adapted) else { panic!() };
        assert_eq!(step, 0);
        assert_eq!(observed.status, Some(403));
        assert!(observed.reason.starts_with("POST /login was refused, and step `step 1` then failed"), "{}", observed.reason);
    }
}

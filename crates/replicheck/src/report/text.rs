//! A run for people: its outcome as the terminal shows it (tables, one block of evidence
//! per finding, the verdict last) and a plan for `--dry-run`. The command line prints
//! these; a failed `Report::assert_consistent` panics with the outcome.

use super::{Report, table};
use crate::check::ScenarioStatus;
use crate::check::finding::Finding;

/// The result of a run: the checks, what was not tested, the policy; then the probable
/// causes, the findings they group and each finding's evidence; the verdict last, where a
/// terminal or a CI log leaves the reader.
pub fn outcome(report: &Report) -> String {
    let mut out = format!(
        "\n{} · {} replica(s) · seed {} · routing {} · {} requests in {:.1}s\n",
        report.target,
        report.replicas,
        report.seed,
        report.routing,
        report.requests,
        report.duration_ms as f64 / 1000.0
    );
    if !report.timings.is_empty() {
        let parts: Vec<String> = report.timings.iter().map(|t| format!("{} {:.1}s", t.part, t.took_ms / 1000.0)).collect();
        out.push_str(&format!("time: {}\n", parts.join(" · ")));
    }
    if let Some(interrupted) = &report.interrupted {
        out.push_str(&format!("incomplete: {interrupted}\n"));
    }
    if let Some(error) = &report.error {
        out.push_str(&format!("error: {error}\n"));
    }
    for exit in &report.exits {
        out.push_str(&format!("error: {}\n", exit.summary()));
        for line in exit.how.lines().skip(1) {
            out.push_str(&format!("{line}\n"));
        }
    }
    out.push_str(&table::scenarios(report));
    out.push('\n');
    // One note often holds for several checks (an adaptation of every user): said once.
    let mut notes: Vec<(&str, Vec<&str>)> = Vec::new();
    for result in &report.scenarios {
        for note in &result.notes {
            match notes.iter_mut().find(|(text, _)| text == note) {
                Some((_, names)) => names.push(&result.name),
                None => notes.push((note, vec![&result.name])),
            }
        }
    }
    for (note, names) in notes {
        out.push_str(&format!("note ({}): {note}\n", names.join(", ")));
    }
    if let Some(exploration) = &report.exploration {
        out.push_str(&format!(
            "explored {} schedule(s); {} smaller one(s) run while shrinking\n",
            exploration.cases, exploration.shrink_steps
        ));
        if let Some(stopped) = &exploration.stopped {
            out.push_str(&format!("stopped early: {stopped}\n"));
        }
        for dismissed in &exploration.dismissed {
            let key = &dismissed.key;
            out.push_str(&format!("not a finding: {} in {} step {} ({}): {}\n", key.kind, key.scenario, key.step, dismissed.schedule, dismissed.why));
        }
    }
    let gaps = super::gaps(report);
    if !gaps.is_empty() {
        out.push_str(&format!("not tested ({}):\n", gaps.len()));
        for gap in &gaps {
            out.push_str(&format!("  {}: {}{}{}\n", gap.name, gap.what, if gap.reason.is_empty() { "" } else { ": " }, gap.reason));
        }
    }
    if let Some(policy) = &report.policy {
        for rule in policy.stale() {
            out.push_str(&format!(
                "policy {}:{}: rule {} ({}) matched nothing: the fault it accepts did not show; remove the rule if it is fixed\n",
                policy.file, rule.rule.line, rule.rule.index, rule.rule.describe()
            ));
        }
        for rule in policy.expired() {
            out.push_str(&format!(
                "policy {}:{}: rule {} ({}) expired on {}: it accepts nothing{}\n",
                policy.file,
                rule.rule.line,
                rule.rule.index,
                rule.rule.describe(),
                rule.rule.until.as_deref().unwrap_or("?"),
                if rule.findings.is_empty() { String::new() } else { format!(" ({} fail again)", rule.findings.join(", ")) }
            ));
        }
    }
    let unsound = report
        .scenarios
        .iter()
        .filter(|s| matches!(s.status, ScenarioStatus::Error | ScenarioStatus::BaselineFailed))
        .count();
    let accepted = report.findings.iter().filter(|f| f.accepted.is_some()).count();
    if !report.findings.is_empty() {
        out.push_str(&format!("\n{} probable cause(s):\n", report.diagnoses.len()));
        out.push_str(&table::diagnoses(report));
        out.push('\n');
        out.push_str(&table::findings(report));
        out.push('\n');
        for finding in &report.findings {
            out.push_str(&evidence(report, finding));
        }
        out.push('\n');
    }
    if report.findings.len() > accepted {
        let open = report.findings.len() - accepted;
        let causes = report.diagnoses.iter().filter(|d| !d.accepted).count();
        out.push_str(&format!("{open} finding(s) in {causes} probable cause(s)"));
        if accepted > 0 {
            out.push_str(&format!(", and {accepted} accepted by the policy"));
        }
        out.push('\n');
    } else if accepted > 0 {
        out.push_str(&format!("{accepted} finding(s), every one accepted by the policy\n"));
    } else if report.interrupted.is_some() {
        out.push_str("no findings in what ran before the interrupt\n");
    } else if report.error.is_some() {
        out.push_str("nothing was asked: the replicas did not start\n");
    } else if !report.exits.is_empty() {
        out.push_str("no findings, but a replica exited or stopped answering by itself: what it touched proves nothing either way\n");
    } else if unsound > 0 {
        out.push_str(&format!(
            "no findings, but {unsound} check(s) did not run cleanly (see above): they prove nothing either way\n"
        ));
    } else {
        out.push_str("no findings: the replicas behaved as one service\n");
    }
    out
}

/// One finding's evidence, as a block of lines.
fn evidence(report: &Report, finding: &Finding) -> String {
    let mut out = format!("\n{} {}: {} / {}\n", finding.id, finding.kind, finding.scenario, finding.step);
    if !finding.kind.hands_over() {
        out.push_str(&if finding.producer == finding.consumer { format!("  on {}\n", finding.producer) } else { format!("  on {} and {}\n", finding.producer, finding.consumer) });
    } else if finding.artifact.kind != "none" || finding.producer != finding.consumer {
        let handed = if finding.artifact.cookies.is_empty() {
            finding.artifact.kind.clone()
        } else {
            format!("{} (cookies {})", finding.artifact.kind, finding.artifact.cookies.join(", "))
        };
        out.push_str(&format!("  {} handed out {handed}; {} did not honour it\n", finding.producer, finding.consumer));
    } else {
        out.push_str(&format!("  on {}\n", finding.consumer));
    }
    out.push_str(&format!("  expected: {}\n  observed: {}\n", finding.expected, finding.observed));
    if !finding.observed.excerpt.is_empty() {
        out.push_str(&format!("  page:     {}\n", finding.observed.excerpt));
    }
    if let Some(after) = &finding.after {
        out.push_str(&format!("  after:    {} at {:.2}s ({} experiment)\n", after.action, after.at_ms / 1000.0, after.experiment));
    }
    out.push_str(&format!(
        "  control:  {}; the failure {} ({} time(s) in this run)\n",
        finding.control.detail,
        if finding.reproduced { "happened again when run again" } else { "did not happen again" },
        finding.occurrences,
    ));
    if finding.observations.len() > 1 {
        let places: Vec<String> = finding.observations.iter().map(|o| format!("{} / {}", o.scenario, o.step)).collect();
        let mut unique = places.clone();
        unique.dedup();
        out.push_str(&format!("  seen:     {} times: {}\n", finding.observations.len(), unique.join(", ")));
    }
    for note in &finding.notes {
        out.push_str(&format!("  note:     {note}\n"));
    }
    if let Some(diagnosis) = crate::diagnose::of(&report.diagnoses, finding) {
        out.push_str(&format!("  cause:    {} {}: {}\n", diagnosis.id, diagnosis.cause, diagnosis.title));
    }
    if let Some(accepted) = &finding.accepted {
        out.push_str(&format!("  accepted: by rule {} of the policy: {}\n", accepted.rule, accepted.reason));
    }
    if let Some(schedule) = &finding.minimal_schedule {
        out.push_str(&format!("  schedule: {schedule} (the smallest found, {} step(s))\n", schedule.steps()));
    }
    out.push_str(&format!("  reproduce: {}\n", finding.reproduce));
    out
}

/// A plan for `--dry-run`: every user's scenario and routes, and the experiments.
pub fn plan(plan: &crate::plan::Plan) -> String {
    let mut out = format!("plan for seed {}: {} replica(s), routing {}\n", plan.seed, plan.replicas, plan.routing);
    for user in &plan.vus {
        let routes: Vec<String> = user.routes.iter().map(ToString::to_string).collect();
        out.push_str(&format!("  vu {:<4} {:<14} {}\n", user.vu, user.scenario, routes.join(" ")));
    }
    for experiment in &plan.experiments {
        let on = if experiment.kind.hits_one() { format!(" on {}", experiment.victim) } else { String::new() };
        let users = match experiment.handoffs.len() {
            0 => String::new(),
            n => format!(": {n} user(s) hand artifacts over it"),
        };
        out.push_str(&format!("  experiment {}{on}{users}\n", experiment.kind.name()));
    }
    let requests: usize = plan.vus.iter().map(|u| u.routes.len()).sum();
    out.push_str(&format!(
        "{requests} request(s) by the planned users; controls, inspections, experiments and probes add more. Nothing was sent.\n"
    ));
    out
}

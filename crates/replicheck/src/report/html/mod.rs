//! `report.html`: one self-contained page (no script, no fetch, no external link) for a
//! person at a desk: the probable causes, the findings with their evidence, the checks,
//! and the timeline.

mod timeline;

use std::fmt::Write;
use std::path::Path;

use super::Report;
use crate::policy::RuleState;

pub const FILE_NAME: &str = "report.html";

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d2330; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #5a6475; }
.finding { border: 1px solid #e3b4b4; border-left: 5px solid #c62828; border-radius: 4px; padding: 8px 12px; margin: 10px 0; background: #fff8f8; }
.finding h3 { margin: 0 0 6px; font-size: 15px; }
dl { display: grid; grid-template-columns: 90px 1fr; gap: 2px 12px; margin: 0; }
dt { color: #5a6475; } dd { margin: 0; }
code, pre { font: 12.5px ui-monospace, monospace; background: #f2f4f8; padding: 1px 4px; border-radius: 3px; }
table { border-collapse: collapse; } td, th { border-bottom: 1px solid #e5e8ee; padding: 4px 10px; text-align: left; }
.passed { color: #2e7d32; } .failed { color: #c62828; font-weight: 600; } .error, .baseline-failed { color: #b26a00; } .skipped { color: #7a8190; }
.timeline-scroll { overflow-x: auto; border: 1px solid #e5e8ee; } .timeline { background: #fff; display: block; }
.label-line { stroke: #6a1b9a; stroke-width: 0.6; stroke-opacity: 0.45; }
.lane-bg { fill: #f7f8fb; stroke: #e5e8ee; } .lane-label, .tick-label { font: 12px ui-monospace, monospace; fill: #5a6475; }
.lane-label { text-anchor: end; } .tick-label { text-anchor: middle; } .tick { stroke: #eceef3; }
.req.ok { fill: #43a047; } .req.warn { fill: #fb8c00; } .req.bad { fill: #e53935; }
.req.finding { stroke: #6a1b9a; stroke-width: 2; }
.probe.ok { fill: #1e88e5; } .probe.bad { fill: #8e24aa; } .delivery { fill: #00897b; } .connection { stroke: #00897b; stroke-width: 2; stroke-opacity: .6; }
.chaos { stroke: #37474f; stroke-width: 1.2; stroke-dasharray: 4 3; }
.span rect { fill: #dfe5ef; } .span text { font: 10px system-ui, sans-serif; fill: #37474f; }
.finding-label { font: bold 11px system-ui, sans-serif; fill: #6a1b9a; }
.remedies { grid-template-columns: 90px 1fr; font-size: 12.5px; } details summary { color: #5a6475; cursor: pointer; }
.legend span { display: inline-block; margin-right: 14px; } .legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
";

pub fn render(report: &Report) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>replicheck: {}</title><style>{STYLE}</style></head><body>",
        escape(&report.target)
    );
    let verdict = match report.findings.len() {
        0 => "no findings".to_owned(),
        n => format!("{n} finding(s)"),
    };
    let _ = write!(
        page,
        "<h1>replicheck · {}</h1><p class=\"meta\">{verdict} · {} replica(s) · seed {} · routing {} · {} requests in {:.1}s · run {} · {}</p>",
        escape(&report.target),
        report.replicas,
        report.seed,
        report.routing,
        report.requests,
        report.duration_ms as f64 / 1000.0,
        escape(&report.run_id),
        escape(&report.target_file)
    );
    if let Some(interrupted) = &report.interrupted {
        let _ = write!(page, "<p><strong>incomplete</strong>: {}.</p>", escape(&interrupted.to_string()));
    }
    if let Some(error) = &report.error {
        let _ = write!(page, "<p><strong>error</strong>: nothing was asked.</p><pre>{}</pre>", escape(error));
    }
    for exit in &report.exits {
        let _ = write!(page, "<p><strong>error</strong>: {}; what it touched was not tested.</p><pre>{}</pre>", escape(&exit.summary()), escape(&exit.how));
    }
    diagnoses(&mut page, report);
    findings_table(&mut page, report);
    gaps(&mut page, report);
    policy(&mut page, report);
    let _ = write!(
        page,
        "<h2>Timeline</h2><p class=\"legend\"><span><i style=\"background:#43a047\"></i>answered</span><span><i style=\"background:#fb8c00\"></i>4xx</span><span><i style=\"background:#e53935\"></i>5xx or no answer</span><span><i style=\"background:#fff;border:2px solid #6a1b9a\"></i>a finding's requests</span><span><i style=\"background:#1e88e5;border-radius:6px\"></i>probe</span><span><i style=\"background:#00897b;transform:rotate(45deg) scale(0.7)\"></i>delivery to the sink</span><span><i style=\"border-left:2px dashed #37474f\"></i>chaos action</span></p>{}",
        timeline::svg(report)
    );
    findings(&mut page, report);
    checks(&mut page, report);
    page.push_str("</body></html>");
    page
}

/// One row per probable cause: its findings linked to their evidence (which links to
/// their marks on the timeline), and the remedy for the target's framework (every framework's on demand).
fn diagnoses(page: &mut String, report: &Report) {
    if report.diagnoses.is_empty() {
        return;
    }
    let _ = write!(
        page,
        "<h2>Probable causes</h2><table><tr><th>id</th><th>cause</th><th>findings</th><th>replicas</th><th>confidence</th><th>remedy ({})</th></tr>",
        report.preset.id()
    );
    for d in &report.diagnoses {
        let findings = d.listed(|id| format!("<a href=\"#{0}\">{0}</a>", escape(id)));
        let replicas: Vec<String> = d.replicas.iter().map(ToString::to_string).collect();
        let others: Vec<String> = d
            .remedies
            .iter()
            .map(|r| format!("<dt>{}</dt><dd>{}</dd>", r.framework.id(), escape(&r.text)))
            .collect();
        let _ = write!(
            page,
            "<tr id=\"{id}\"><td>{id}</td><td><b>{title}</b> <code>{cause}</code>{accepted}<br><span class=\"meta\">{topic}</span></td><td>{findings}<br><a class=\"meta\" href=\"#mark-{first}\">on the timeline</a></td><td>{replicas}</td><td>{confidence}<br><span class=\"meta\">{why}</span></td><td>{remedy}<details><summary>every framework</summary><dl class=\"remedies\">{others}</dl></details></td></tr>",
            id = escape(&d.id),
            title = escape(&d.title),
            cause = d.cause,
            accepted = if d.accepted { " <span class=\"skipped\">accepted</span>" } else { "" },
            topic = escape(&d.topic),
            first = escape(d.named().next().map_or("", String::as_str)),
            replicas = replicas.join(" "),
            why = escape(&d.why),
            confidence = d.confidence.name(),
            remedy = escape(&d.remedy),
            others = others.join(""),
        );
    }
    page.push_str("</table>");
}

/// What the policy file accepted, and its rules that matched nothing or expired.
fn policy(page: &mut String, report: &Report) {
    let Some(policy) = &report.policy else { return };
    let _ = write!(page, "<h2>Policy</h2><p class=\"meta\">{}</p><table><tr><th>rule</th><th>accepts</th><th>reason</th><th>state</th><th>findings</th></tr>", escape(&policy.file));
    for rule in &policy.rules {
        let state = match rule.state {
            RuleState::Applied => "applied".to_owned(),
            RuleState::Stale => "stale: matched nothing".to_owned(),
            RuleState::Expired => format!("expired on {}", rule.rule.until.as_deref().unwrap_or("?")),
        };
        let _ = write!(
            page,
            "<tr><td>{} (line {})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rule.rule.index,
            rule.rule.line,
            escape(&rule.rule.describe()),
            escape(&rule.rule.reason),
            escape(&state),
            escape(&rule.findings.join(", "))
        );
    }
    page.push_str("</table>");
}

/// One row per finding, linked to its evidence below.
fn findings_table(page: &mut String, report: &Report) {
    page.push_str("<h2>Findings</h2>");
    if report.findings.is_empty() {
        page.push_str("<p class=\"passed\">None: the replicas behaved as one service.</p>");
        return;
    }
    page.push_str("<table><tr><th>id</th><th>kind</th><th>where</th><th>replicas</th><th>after</th><th>times</th><th>cause</th></tr>");
    for f in &report.findings {
        let replicas = if f.producer == f.consumer { f.producer.to_string() } else { format!("{} → {}", f.producer, f.consumer) };
        let after = f.after.as_ref().map_or_else(String::new, |a| format!("{} ({})", a.action, a.experiment));
        let cause = crate::diagnose::of(&report.diagnoses, f).map_or_else(String::new, |d| format!("<a href=\"#{0}\">{0}</a>", escape(&d.id)));
        let accepted = if f.accepted.is_some() { " <span class=\"skipped\">accepted</span>" } else { "" };
        let _ = write!(
            page,
            "<tr><td><a href=\"#{0}\">{0}</a></td><td><code>{1}</code></td><td>{2} / {3}</td><td>{4}</td><td>{5}</td><td>{6}</td><td>{cause}{accepted}</td></tr>",
            escape(&f.id),
            f.kind,
            escape(&f.scenario),
            escape(&f.step),
            escape(&replicas),
            escape(&after),
            f.occurrences,
        );
    }
    page.push_str("</table>");
}

/// What did not run in full, shown whatever the verdict.
fn gaps(page: &mut String, report: &Report) {
    let gaps = super::gaps(report);
    if gaps.is_empty() {
        return;
    }
    page.push_str("<h2>Not tested</h2><table><tr><th>check</th><th>what</th><th>why</th></tr>");
    for gap in gaps {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"skipped\">{}</td><td>{}</td></tr>",
            escape(gap.name),
            escape(&gap.what),
            escape(gap.reason)
        );
    }
    page.push_str("</table>");
}

/// Each finding's evidence.
fn findings(page: &mut String, report: &Report) {
    if report.findings.is_empty() {
        return;
    }
    page.push_str("<h2>Evidence</h2>");
    for f in &report.findings {
        let replicas = if f.producer == f.consumer {
            format!("on {}", f.producer)
        } else if !f.kind.hands_over() {
            format!("on {} and {}", f.producer, f.consumer)
        } else {
            format!("{} handed out, {} did not honour", f.producer, f.consumer)
        };
        let _ = write!(
            page,
            "<article class=\"finding\" id=\"{}\"><h3>{} <code>{}</code> {} / {}</h3><dl><dt>replicas</dt><dd>{}</dd><dt>artifact</dt><dd>{}{}</dd><dt>expected</dt><dd>{}</dd><dt>observed</dt><dd>{}</dd>",
            escape(&f.id),
            escape(&f.id),
            f.kind,
            escape(&f.scenario),
            escape(&f.step),
            escape(&replicas),
            escape(&f.artifact.kind),
            if f.artifact.cookies.is_empty() { String::new() } else { format!(" (cookies {})", escape(&f.artifact.cookies.join(", "))) },
            escape(&f.expected),
            escape(&f.observed.to_string())
        );
        if !f.observed.excerpt.is_empty() {
            let _ = write!(page, "<dt>page</dt><dd>{}</dd>", escape(&f.observed.excerpt));
        }
        if let Some(after) = &f.after {
            let _ = write!(page, "<dt>after</dt><dd>{} at {:.2}s ({} experiment)</dd>", escape(&after.action), after.at_ms / 1000.0, escape(&after.experiment));
        }
        let _ = write!(
            page,
            "<dt>control</dt><dd>{}</dd><dt>again</dt><dd>{} ({} time(s) in this run)</dd>",
            escape(&f.control.detail),
            if f.reproduced { "it happened again when run again" } else { "it did not happen again" },
            f.occurrences,
        );
        if f.observations.len() > 1 {
            let seen: Vec<String> = f
                .observations
                .iter()
                .map(|o| format!("{} / {} at {}", o.scenario, o.step, o.at_ms.map_or_else(|| "?".to_owned(), |ms| format!("{:.2}s", ms / 1000.0))))
                .collect();
            let _ = write!(page, "<dt>seen</dt><dd>{} times: {}</dd>", f.observations.len(), escape(&seen.join("; ")));
        }
        for note in &f.notes {
            let _ = write!(page, "<dt>note</dt><dd>{}</dd>", escape(note));
        }
        if let Some(d) = crate::diagnose::of(&report.diagnoses, f) {
            let _ = write!(page, "<dt>cause</dt><dd><a href=\"#{0}\">{0}</a> {1}</dd>", escape(&d.id), escape(&d.title));
        }
        if let Some(accepted) = &f.accepted {
            let _ = write!(page, "<dt>accepted</dt><dd>by rule {} of the policy: {}</dd>", accepted.rule, escape(&accepted.reason));
        }
        let _ = write!(page, "<dt>timeline</dt><dd><a href=\"#mark-{0}\">{0} on the timeline</a></dd>", escape(&f.id));
        if let Some(schedule) = &f.minimal_schedule {
            let _ = write!(page, "<dt>smallest schedule</dt><dd><code>{}</code></dd>", escape(&schedule.to_string()));
        }
        let _ = write!(page, "<dt>reproduce</dt><dd><code>{}</code></dd></dl></article>", escape(&f.reproduce));
    }
}

fn checks(page: &mut String, report: &Report) {
    page.push_str("<h2>Scenarios, inspections and experiments</h2><table><tr><th>name</th><th>status</th><th>users</th><th>requests</th><th>note</th></tr>");
    for s in &report.scenarios {
        let status = s.status.name();
        let notes: Vec<String> = s.reason.iter().chain(&s.notes).map(|n| escape(n)).collect();
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"{status}\">{status}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.name),
            s.vus,
            s.requests,
            notes.join("<br>")
        );
    }
    page.push_str("</table>");
}

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn write(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join(FILE_NAME), render(report))
}

//! `summary.md`: a short page that fits a CI job summary (GitHub's `GITHUB_STEP_SUMMARY`):
//! counts, what was not tested, the probable causes with their remedies, and a table of
//! findings.

use std::fmt::Write;
use std::path::Path;

use super::Report;
use crate::check::ScenarioStatus;

pub const FILE_NAME: &str = "summary.md";

/// Findings beyond this many are counted, not listed: a job summary must stay short, and
/// the causes above already name every finding.
const MAX_ROWS: usize = 25;

pub fn render(report: &Report) -> String {
    let mut md = String::new();
    let count = |status: ScenarioStatus| report.scenarios.iter().filter(|s| s.status == status).count();
    let gaps = super::gaps(report);
    let accepted = report.findings.iter().filter(|f| f.accepted.is_some()).count();
    let verdict = if report.findings.len() > accepted {
        let causes = report.diagnoses.iter().filter(|d| !d.accepted).count();
        let also = if accepted > 0 { format!(" (and {accepted} accepted)") } else { String::new() };
        format!("**{} finding(s) in {causes} probable cause(s)**{also}", report.findings.len() - accepted)
    } else if accepted > 0 {
        format!("**{accepted} finding(s), all accepted by the policy**")
    } else if count(ScenarioStatus::Error) + count(ScenarioStatus::BaselineFailed) > 0 {
        "**no findings, but some checks did not run cleanly**".to_owned()
    } else if !gaps.is_empty() {
        "**no findings** in what was tested (see what was not)".to_owned()
    } else {
        "**no findings**: the replicas behaved as one service".to_owned()
    };
    let _ = writeln!(
        md,
        "## replicheck: {}\n\n{verdict} · {} replica(s) · seed {} · {} requests in {:.1}s · {} passed, {} with findings, {} skipped, {} not run cleanly\n",
        report.target,
        report.replicas,
        report.seed,
        report.requests,
        report.duration_ms as f64 / 1000.0,
        count(ScenarioStatus::Passed),
        count(ScenarioStatus::Failed),
        count(ScenarioStatus::Skipped),
        count(ScenarioStatus::Error) + count(ScenarioStatus::BaselineFailed),
    );
    if let Some(interrupted) = &report.interrupted {
        let _ = writeln!(md, "**incomplete**: {}\n", cell(&interrupted.to_string()));
    }
    if let Some(error) = &report.error {
        let _ = writeln!(md, "**error**: {}\n", cell(error));
    }
    for exit in &report.exits {
        let _ = writeln!(md, "**error**: {}; what it touched was not tested\n", cell(&exit.summary()));
    }
    if !gaps.is_empty() {
        let _ = writeln!(md, "Not tested:\n");
        for gap in &gaps {
            let _ = writeln!(md, "- `{}` {}: {}", gap.name, gap.what, cell(gap.reason));
        }
        md.push('\n');
    }
    for result in report.scenarios.iter().filter(|s| !s.notes.is_empty()) {
        for note in &result.notes {
            let _ = writeln!(md, "- note on `{}`: {}", result.name, cell(note));
        }
    }
    if let Some(policy) = &report.policy {
        for rule in policy.stale() {
            let _ = writeln!(md, "- policy rule {} ({}, line {}) matched nothing: stale", rule.rule.index, cell(&rule.rule.describe()), rule.rule.line);
        }
        for rule in policy.expired() {
            let _ = writeln!(md, "- policy rule {} ({}, line {}) expired on {}", rule.rule.index, cell(&rule.rule.describe()), rule.rule.line, rule.rule.until.as_deref().unwrap_or("?"));
        }
    }
    if report.findings.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "\n| cause | findings | replicas | confidence | remedy ({}) |\n| --- | --- | --- | --- | --- |",
        report.preset.id()
    );
    for d in &report.diagnoses {
        let replicas: Vec<String> = d.replicas.iter().map(ToString::to_string).collect();
        let accepted = if d.accepted { " (accepted)" } else { "" };
        let _ = writeln!(
            md,
            "| {} `{}`: {}{accepted} | {} | {} | {} | {} |",
            d.id,
            d.cause,
            cell(&d.title),
            d.listed(str::to_owned),
            replicas.join(" "),
            d.confidence.name(),
            cell(&d.remedy)
        );
    }
    let _ = writeln!(md, "\n| id | kind | where | replicas | observed | cause |\n| --- | --- | --- | --- | --- | --- |");
    for finding in report.findings.iter().take(MAX_ROWS) {
        let replicas = if finding.producer == finding.consumer {
            finding.producer.to_string()
        } else {
            format!("{} → {}", finding.producer, finding.consumer)
        };
        let place = match &finding.after {
            Some(after) => format!("{} / {} (after {})", finding.scenario, finding.step, after.action),
            None => format!("{} / {}", finding.scenario, finding.step),
        };
        let cause = crate::diagnose::of(&report.diagnoses, finding).map_or("", |d| d.id.as_str());
        let cause = if finding.accepted.is_some() { format!("{cause} (accepted)") } else { cause.to_owned() };
        let _ = writeln!(md, "| {} | `{}` | {} | {replicas} | {} | {cause} |", finding.id, finding.kind, cell(&place), cell(&finding.observed.to_string()));
    }
    if report.findings.len() > MAX_ROWS {
        let _ = writeln!(md, "\n…and {} more in report.json.", report.findings.len() - MAX_ROWS);
    }
    if let Some(first) = report.findings.first() {
        let _ = writeln!(md, "\nReproduce the first: `{}`", first.reproduce);
    }
    md
}

/// Text that stays inside one table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn write(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join(FILE_NAME), render(report))
}

/// Appends the summary to the file CI names (GitHub Actions' `GITHUB_STEP_SUMMARY`).
pub fn append_to(report: &Report, path: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(render(report).as_bytes())
}

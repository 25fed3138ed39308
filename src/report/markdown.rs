//! `summary.md`: a short page that fits a CI job summary (GitHub's `GITHUB_STEP_SUMMARY`):
//! counts, a line per scenario that did not pass, and a table of findings.

use std::fmt::Write;
use std::path::Path;

use super::Report;
use crate::check::ScenarioStatus;

pub const FILE_NAME: &str = "summary.md";

/// Findings beyond this many are counted, not listed: a job summary must stay short.
const MAX_ROWS: usize = 40;

pub fn render(report: &Report) -> String {
    let mut md = String::new();
    let count = |status: ScenarioStatus| report.scenarios.iter().filter(|s| s.status == status).count();
    let gaps = super::gaps(report);
    let verdict = if !report.findings.is_empty() {
        format!("**{} finding(s)**", report.findings.len())
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
    if report.findings.is_empty() {
        return md;
    }
    let _ = writeln!(md, "\n| id | kind | where | replicas | observed |\n| --- | --- | --- | --- | --- |");
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
        let _ = writeln!(md, "| {} | `{}` | {} | {replicas} | {} |", finding.id, finding.kind, cell(&place), cell(&finding.observed.to_string()));
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

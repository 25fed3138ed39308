//! Terminal tables: the scenarios and the findings of a run.

use tabled::builder::Builder;
use tabled::settings::Style;

use super::Report;
use crate::check::ScenarioStatus;

pub fn scenarios(report: &Report) -> String {
    let mut builder = Builder::default();
    builder.push_record(["scenario", "status", "users", "requests", "crossed", "note"]);
    for s in &report.scenarios {
        let status = match s.status {
            ScenarioStatus::Failed => "FINDINGS",
            status => status.name(),
        };
        let mut notes: Vec<String> = s.reason.iter().cloned().collect();
        if s.unconfirmed > 0 {
            notes.push(format!("{} failure(s) did not happen again when run again", s.unconfirmed));
        }
        if !s.untested.is_empty() {
            let kinds: Vec<String> = s.untested.iter().map(|u| u.kind.to_string()).collect();
            notes.push(format!("not exercised: {}", kinds.join(", ")));
        }
        if !s.notes.is_empty() {
            notes.push(format!("{} note(s) below", s.notes.len()));
        }
        let note = notes.join("; ");
        builder.push_record([
            s.name.clone(),
            status.to_owned(),
            s.vus.to_string(),
            s.requests.to_string(),
            s.handoffs_crossed.to_string(),
            note,
        ]);
    }
    builder.build().with(Style::sharp()).to_string()
}

pub fn findings(report: &Report) -> String {
    let mut builder = Builder::default();
    builder.push_record(["id", "kind", "scenario / step", "replicas", "times"]);
    for f in &report.findings {
        builder.push_record([
            f.id.clone(),
            f.kind.to_string(),
            format!("{} / {}", f.scenario, f.step),
            if f.producer == f.consumer { f.producer.to_string() } else { format!("{} -> {}", f.producer, f.consumer) },
            f.occurrences.to_string(),
        ]);
    }
    builder.build().with(Style::sharp()).to_string()
}

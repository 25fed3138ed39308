//! Terminal tables: the scenarios, the diagnoses and the findings of a run.

use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Modify, Style, Width};

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

/// One row per probable root cause, with the remedy for the target's framework.
pub fn diagnoses(report: &Report) -> String {
    let mut builder = Builder::default();
    builder.push_record(["id", "cause", "findings", "replicas", "confidence", &format!("remedy ({})", report.preset.id())]);
    for d in &report.diagnoses {
        let replicas: Vec<String> = d.replicas.iter().map(ToString::to_string).collect();
        let cause = if d.accepted { format!("{} (accepted)", d.cause) } else { d.cause.to_string() };
        builder.push_record([
            d.id.clone(),
            cause,
            match d.also.len() {
                0 => d.findings.len().to_string(),
                also => format!("{} (+{also} maybe)", d.findings.len()),
            },
            replicas.join(" "),
            d.confidence.name().to_owned(),
            d.remedy.clone(),
        ]);
    }
    builder
        .build()
        .with(Style::sharp())
        .with(Modify::new(Columns::one(5)).with(Width::wrap(64).keep_words(true)))
        .to_string()
}

pub fn findings(report: &Report) -> String {
    let mut builder = Builder::default();
    builder.push_record(["id", "kind", "scenario / step", "replicas", "times", "diagnosis"]);
    for f in &report.findings {
        let diagnosis = crate::diagnose::of(&report.diagnoses, f).map_or_else(String::new, |d| d.id.clone());
        builder.push_record([
            f.id.clone(),
            f.kind.to_string(),
            format!("{} / {}", f.scenario, f.step),
            if f.producer == f.consumer { f.producer.to_string() } else { format!("{} -> {}", f.producer, f.consumer) },
            f.occurrences.to_string(),
            if f.accepted.is_some() { format!("{diagnosis} (accepted)") } else { diagnosis },
        ]);
    }
    builder.build().with(Style::sharp()).to_string()
}

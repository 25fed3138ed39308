//! Reports: render what the checker decided. Nothing here decides anything.
//!
//! `report.json` is the complete record (plan, scenarios, findings, every event);
//! `junit.xml` is for CI test tabs, `summary.md` for CI job summaries, `report.html` for
//! a person at a desk, and the terminal gets tables.

pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod table;
pub mod text;

use std::path::{Path, PathBuf};

pub use json::{Event, Report};

use crate::check::ScenarioStatus;

/// The files a report can be written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    Json,
    Junit,
    Markdown,
    Html,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Json, Format::Junit, Format::Markdown, Format::Html];

    pub fn file_name(self) -> &'static str {
        match self {
            Format::Json => json::FILE_NAME,
            Format::Junit => junit::FILE_NAME,
            Format::Markdown => markdown::FILE_NAME,
            Format::Html => html::FILE_NAME,
        }
    }
}

/// Part of the run that did not test what it was asked to: every format shows these,
/// whatever the verdict, so a run with findings does not hide the checks that never ran.
pub struct Gap<'a> {
    /// The scenario, inspection or experiment.
    pub name: &'a str,
    /// `baseline-failed`, `error`, `skipped`, or the kind it could not exercise.
    pub what: String,
    pub reason: &'a str,
}

pub fn gaps(report: &Report) -> Vec<Gap<'_>> {
    let mut gaps = Vec::new();
    for result in &report.scenarios {
        let reason = result.reason.as_deref().unwrap_or("");
        match result.status {
            ScenarioStatus::BaselineFailed | ScenarioStatus::Error | ScenarioStatus::Skipped => gaps.push(Gap {
                name: &result.name,
                what: result.status.name().to_owned(),
                reason,
            }),
            ScenarioStatus::Passed | ScenarioStatus::Failed => gaps.extend(result.untested.iter().map(|untested| Gap {
                name: &result.name,
                what: format!("{} not exercised", untested.kind),
                reason: &untested.reason,
            })),
        }
    }
    gaps
}

/// Writes the report in each format; returns the files written.
pub fn write(report: &Report, dir: &Path, formats: &[Format]) -> std::io::Result<Vec<PathBuf>> {
    for format in formats {
        match format {
            Format::Json => report.write(dir)?,
            Format::Junit => junit::write(report, dir)?,
            Format::Markdown => markdown::write(report, dir)?,
            Format::Html => html::write(report, dir)?,
        }
    }
    Ok(formats.iter().map(|f| dir.join(f.file_name())).collect())
}

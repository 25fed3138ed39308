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

use std::path::{Path, PathBuf};

pub use json::{Event, Report};

/// The files a report can be written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Junit,
    Markdown,
    Html,
}

impl Format {
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Json => json::FILE_NAME,
            Format::Junit => junit::FILE_NAME,
            Format::Markdown => markdown::FILE_NAME,
            Format::Html => html::FILE_NAME,
        }
    }
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

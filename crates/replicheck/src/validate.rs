//! `replicheck validate`: what an input file is (a target or a scenario) and whether it is
//! valid, each error located in the file.

use std::path::Path;

use crate::file::{FileError, SourceFile};
use crate::scenario::ScenarioFile;
use crate::target::Target;

/// A valid input file.
#[allow(clippy::large_enum_variant)]
#[non_exhaustive]
pub enum Valid {
    Target(Target),
    Scenario(ScenarioFile),
}

/// Tables only a target file has.
const TARGET_TABLES: [&str; 11] = ["health", "limits", "balancer", "chaos", "login", "antiforgery", "session", "cache", "echo", "token", "dependencies"];

/// Reads and checks `path`: a target (it has `[start]`) or a scenario (it has steps).
pub fn file(path: &Path) -> Result<Valid, FileError> {
    let source = SourceFile::read(path)?;
    // A file with a target's tables but no [start] is a target that lacks it, not a
    // scenario with odd fields.
    let table: toml::Table = source.parse()?;
    let target_like = table.keys().find(|key| TARGET_TABLES.contains(&key.as_str()));
    if let (Some(key), false, false) = (target_like, table.contains_key("start"), table.contains_key("steps")) {
        return Err(source
            .error_at(source.table_span(key), format!("a target file needs a [start] table; this one has [{key}] but no [start]"))
            .with_help(Some("add [start] with `command` (to run processes) or `image` (to run containers)".into())));
    }
    if table.contains_key("start") {
        Ok(Valid::Target(Target::from_source(&source)?))
    } else {
        Ok(Valid::Scenario(ScenarioFile::from_source(source)?))
    }
}

impl Target {
    /// The flows the target declares, by table name.
    pub fn flows(&self) -> Vec<String> {
        let tables = [
            ("login", self.login.is_some()),
            ("antiforgery", self.antiforgery.is_some()),
            ("session", self.session.is_some()),
            ("cache", self.cache.is_some()),
            ("upload", self.upload.is_some()),
            ("echo", self.echo.is_some()),
            ("token", self.token.is_some()),
            ("affinity", self.affinity.is_some()),
            ("telemetry", self.telemetry.is_some()),
        ];
        let named = tables.into_iter().filter(|(_, present)| *present).map(|(name, _)| name.to_owned());
        let jobs = self.scheduled.iter().map(|job| format!("scheduled.{}", job.name));
        let work = self.triggered.iter().map(|work| format!("triggered.{}", work.name));
        let live = self.broadcast.iter().map(|flow| format!("broadcast.{}", flow.name));
        let limits = self.rate_limits.iter().map(|limit| format!("limit.{}", limit.name));
        named.chain(jobs).chain(work).chain(live).chain(limits).collect()
    }
}

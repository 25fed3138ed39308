//! The shared stores a target's replicas need, as its file declares them
//! (`[dependencies.redis]`, `[dependencies.postgres]`): what replicheck starts for the run,
//! how it keeps its data across a restart, and the placeholders that point replicas at it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::file::{FileError, SourceFile};
use crate::step::Template;

/// Shared infrastructure replicheck starts for the run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependencies {
    pub redis: Option<RedisDependency>,
    pub postgres: Option<PostgresDependency>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisDependency {
    #[serde(default)]
    pub persistence: Persistence,
    /// The image the docker backend runs (default `redis:7`).
    pub image: Option<String>,
}

/// Whether the run's Redis keeps its data across a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Persistence {
    /// Nothing is written to disk (Redis's volatile default).
    #[default]
    None,
    /// Append-only file.
    Aof,
}

/// The run's PostgreSQL: one server, one fresh database the replicas share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresDependency {
    /// The database the replicas use (default `app`).
    #[serde(default = "default_name")]
    pub database: toml::Spanned<String>,
    /// The role they connect as, which owns everything (default `app`; no password).
    #[serde(default = "default_name")]
    pub user: toml::Spanned<String>,
    #[serde(default)]
    pub persistence: DatabasePersistence,
    /// SQL run once the database exists, before any replica starts (relative to the target
    /// file), as an image's init scripts are.
    pub seed: Option<toml::Spanned<PathBuf>>,
    /// A command run then, after `seed`, through `sh -c` in the target file's directory
    /// with `DATABASE_URL` set: a migration tool's, for example.
    pub seed_command: Option<Template>,
}

/// Whether the run's PostgreSQL keeps its data across a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabasePersistence {
    /// Kept, as by a server with a volume (PostgreSQL's own behaviour).
    #[default]
    Disk,
    /// Lost: the server starts over empty and seeded again, as a container without a volume.
    None,
}

fn default_name() -> toml::Spanned<String> {
    toml::Spanned::new(0..0, "app".into())
}

/// The placeholders `[dependencies.postgres]` gives the replicas.
pub const DATABASE_PLACEHOLDERS: [&str; 5] = ["database_url", "database_host", "database_port", "database_name", "database_user"];

impl Dependencies {
    /// Placeholders a replica's command may use only when the store behind them is declared:
    /// the first one `used` names without it, with the table that would give it.
    pub fn missing_for(&self, used: &str) -> Option<&'static str> {
        match used {
            "redis_url" if self.redis.is_none() => Some("dependencies.redis"),
            name if self.postgres.is_none() && DATABASE_PLACEHOLDERS.contains(&name) => Some("dependencies.postgres"),
            _ => None,
        }
    }

    pub(super) fn validate(&self, target_dir: &std::path::Path, file: &SourceFile) -> Result<(), FileError> {
        let Some(postgres) = &self.postgres else { return Ok(()) };
        const TABLE: &str = "dependencies.postgres";
        for (key, name) in [("database", &postgres.database), ("user", &postgres.user)] {
            if !is_identifier(name.get_ref()) {
                let span = if name.span().is_empty() { file.table_span(TABLE) } else { name.span() };
                return Err(file
                    .error_at(span, format!("[{TABLE}] {key} = {:?} is not a plain PostgreSQL name", name.get_ref()))
                    .with_help(Some("use lowercase letters, digits and `_`, starting with a letter, at most 63 characters".into())));
            }
        }
        if let Some(seed) = &postgres.seed {
            let path = target_dir.join(seed.get_ref());
            if !path.is_file() {
                return Err(file
                    .error_at(seed.span(), format!("[{TABLE}] seed: {} is not a file", path.display()))
                    .with_help(Some("seed is an SQL file, taken relative to the target file's directory".into())));
            }
        }
        if let Some(command) = &postgres.seed_command {
            if command.raw().trim().is_empty() {
                return Err(file.error_at(command.span(), format!("[{TABLE}] seed_command is empty")));
            }
            command.check_vars(|name| DATABASE_PLACEHOLDERS.contains(&name)).map_err(|unknown| {
                file.error_at(command.span(), format!("unknown placeholder `{{{unknown}}}` in [{TABLE}] seed_command"))
                    .with_help(Some(format!("placeholders here: {}; DATABASE_URL is set too", DATABASE_PLACEHOLDERS.join(", "))))
            })?;
        }
        Ok(())
    }
}

/// A name PostgreSQL takes without quoting, so the URL and every tool agree on it.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::is_identifier;

    #[test]
    fn plain_names_are_identifiers_and_others_are_not() {
        for good in ["app", "orders_2", "a"] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in ["", "App", "2app", "my-app", "a b", "x\"; drop", &"a".repeat(64)] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}

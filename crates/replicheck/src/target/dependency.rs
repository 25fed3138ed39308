//! The shared services a target's replicas need, as its file declares them
//! (`[dependencies.redis]`, `[dependencies.postgres]`, and `[dependencies.NAME]` for a
//! service of the team's own): what replicheck starts for the run, how it knows the service
//! is ready, how it keeps its data across a restart, and the placeholders that point
//! replicas at it.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};

use super::container::ContainerTemplate;
use crate::file::{FileError, SourceFile};
use crate::step::Template;

/// Shared infrastructure replicheck starts for the run.
#[derive(Debug, Clone, Default)]
pub struct Dependencies {
    pub redis: Option<RedisDependency>,
    pub postgres: Option<PostgresDependency>,
    /// Services of the team's own, by name (RabbitMQ, Memcached, a mail server...).
    pub services: IndexMap<String, ServiceDependency>,
}

impl<'de> Deserialize<'de> for Dependencies {
    /// By name: `redis` and `postgres` are built in, any other name is a service of the
    /// team's own. Each table is read as its own type, so a mistake keeps its place.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Tables;
        impl<'de> serde::de::Visitor<'de> for Tables {
            type Value = Dependencies;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("tables such as [dependencies.redis], [dependencies.postgres] or [dependencies.NAME] for a service of your own")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Dependencies, A::Error> {
                let mut dependencies = Dependencies::default();
                while let Some(name) = map.next_key::<String>()? {
                    match name.as_str() {
                        "redis" => dependencies.redis = Some(map.next_value()?),
                        "postgres" => dependencies.postgres = Some(map.next_value()?),
                        _ => {
                            let service = map.next_value()?;
                            dependencies.services.insert(name, service);
                        }
                    }
                }
                Ok(dependencies)
            }
        }
        deserializer.deserialize_map(Tables)
    }
}

/// A service of the team's own that the replicas share, started by replicheck for the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDependency {
    /// Processes: the program (on the PATH, or a path relative to the target file), given
    /// `{port}`, a free loopback port, and `{dir}`, a directory of its own.
    pub command: Option<Template>,
    #[serde(default)]
    pub args: Vec<Template>,
    #[serde(default)]
    pub env: IndexMap<String, Template>,
    /// Containers: the image (the docker backend).
    pub image: Option<String>,
    /// The port it listens on inside its container.
    pub port: Option<u16>,
    /// How to know it is ready: a TCP connection it accepts (the default), or a command that
    /// succeeds.
    #[serde(default)]
    pub ready: ServiceReady,
    #[serde(default = "default_ready_timeout", with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// What the replicas get as `{NAME_url}`, from `{host}` and `{port}`.
    pub url: Template,
    /// Containers: started by testcontainers from the team's own description, in place of
    /// `image` (set in code: [`Target::with_dependency_container`](super::Target::with_dependency_container)).
    #[serde(skip)]
    pub container: Option<ContainerTemplate>,
}

/// How a service of the team's own tells it is ready.
#[derive(Debug, Clone, Default)]
pub enum ServiceReady {
    /// It accepts a TCP connection on its port.
    #[default]
    Tcp,
    /// This command, run through `sh -c` with `{host}` and `{port}`, exits 0.
    Command(Template),
}

impl<'de> Deserialize<'de> for ServiceReady {
    /// `"tcp"` or `{ command = "..." }`, read by hand so the command keeps its place in the
    /// file (an untagged enum would lose it).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Written;
        impl<'de> serde::de::Visitor<'de> for Written {
            type Value = ServiceReady;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"tcp\" or { command = \"...\" }")
            }
            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<ServiceReady, E> {
                match word {
                    "tcp" => Ok(ServiceReady::Tcp),
                    _ => Err(E::custom(format!("ready = {word:?}: write \"tcp\" or {{ command = \"...\" }}"))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ServiceReady, A::Error> {
                let mut command = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "command" => command = Some(map.next_value()?),
                        other => return Err(serde::de::Error::unknown_field(other, &["command"])),
                    }
                }
                command.map(ServiceReady::Command).ok_or_else(|| serde::de::Error::missing_field("command"))
            }
        }
        deserializer.deserialize_any(Written)
    }
}

fn default_ready_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The placeholders a service's command, args, env, ready command and url may use.
pub const SERVICE_PLACEHOLDERS: [&str; 3] = ["host", "port", "dir"];

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
    /// The image the docker backend runs (default `postgres:16`): one that follows the
    /// official image's conventions (`POSTGRES_USER`, `POSTGRES_DB`, `pg_isready`, `psql`).
    pub image: Option<String>,
}

impl Default for PostgresDependency {
    /// Database and role `app`, kept across restarts, not seeded.
    fn default() -> Self {
        Self {
            database: default_name(),
            user: default_name(),
            persistence: DatabasePersistence::default(),
            seed: None,
            seed_command: None,
            image: None,
        }
    }
}

impl PostgresDependency {
    /// The same with the replicas' database named `name` (a plain lowercase name).
    pub fn with_database(mut self, name: &str) -> Self {
        self.database = toml::Spanned::new(0..0, name.to_owned());
        self
    }

    /// The same seeded from the SQL file at `path` (relative to the target file's directory).
    pub fn with_seed(mut self, path: impl Into<PathBuf>) -> Self {
        self.seed = Some(toml::Spanned::new(0..0, path.into()));
        self
    }
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
    /// Every declared dependency's name, in the order the run starts them.
    pub fn names(&self) -> Vec<&str> {
        let builtin = [self.redis.as_ref().map(|_| "redis"), self.postgres.as_ref().map(|_| "postgres")];
        builtin.into_iter().flatten().chain(self.services.keys().map(String::as_str)).collect()
    }

    /// Placeholders a replica's command may use only when the store behind them is declared:
    /// the first one `used` names without it, with the table that would give it.
    pub fn missing_for(&self, used: &str) -> Option<&'static str> {
        match used {
            "redis_url" if self.redis.is_none() => Some("dependencies.redis"),
            name if self.postgres.is_none() && DATABASE_PLACEHOLDERS.contains(&name) => Some("dependencies.postgres"),
            _ => None,
        }
    }

    /// Whether `name` is a placeholder a declared service gives (`{NAME_url}`).
    pub fn gives(&self, name: &str) -> bool {
        name.strip_suffix("_url").is_some_and(|service| self.services.contains_key(service))
    }

    pub(super) fn validate(&self, target_dir: &std::path::Path, file: &SourceFile) -> Result<(), FileError> {
        for (name, service) in &self.services {
            service.validate(name, file)?;
        }
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

impl ServiceDependency {
    /// Its URL where `vars` give `{host}`, `{port}` and `{dir}`: what the replicas get as
    /// `{NAME_url}`.
    pub fn url_at(&self, vars: &crate::step::Vars) -> String {
        // Validation allowed no other placeholder.
        self.url.render(vars).unwrap_or_else(|_| self.url.raw().to_owned())
    }

    fn validate(&self, name: &str, file: &SourceFile) -> Result<(), FileError> {
        let table = format!("dependencies.{name}");
        if !is_identifier(name) {
            return Err(file
                .error_at(file.table_span(&table), format!("[{table}]: `{name}` cannot name a dependency"))
                .with_help(Some(format!(
                    "the replicas get it as {{{name}_url}}: use lowercase letters, digits and `_`, starting with a letter (built in: redis, postgres)"
                ))));
        }
        // Its placeholder, its log and its host name must not be a built-in one's or a replica's.
        let placeholder = format!("{name}_url");
        let replica_like = name.strip_prefix('r').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        let taken = if replica_like {
            Some(format!("`{name}` is a replica's name"))
        } else {
            super::START_PLACEHOLDERS.iter().any(|(known, _)| *known == placeholder).then(|| format!("`{{{placeholder}}}` is a placeholder of replicheck's own"))
        };
        if let Some(taken) = taken {
            return Err(file
                .error_at(file.table_span(&table), format!("[{table}]: {taken}"))
                .with_help(Some("give the service another name, such as queue or mail".into())));
        }
        if self.command.is_none() && self.image.is_none() {
            return Err(file
                .error_at(file.table_span(&table), format!("[{table}] needs `command` (to run it as a process) or `image` (as a container)"))
                .with_help(Some("replicheck starts redis and postgres by those names; any other name is a service of your own".into())));
        }
        if let Some(command) = &self.command
            && command.raw().trim().is_empty()
        {
            return Err(file.error_at(command.span(), format!("[{table}] command is empty")));
        }
        if self.image.is_some() && self.port.is_none() {
            return Err(file
                .error_at(file.key_span(&table, "image"), format!("[{table}] image needs `port`, the port the service listens on in its container"))
                .with_help(Some("for example: port = 5672".into())));
        }
        if self.port == Some(0) {
            return Err(file.error_at(file.key_span(&table, "port"), format!("[{table}] port = 0: give the port it listens on in its container")));
        }
        if self.ready_timeout.is_zero() || self.ready_timeout > super::MAX_DURATION {
            return Err(file.error_at(file.key_span(&table, "ready_timeout"), format!("[{table}] ready_timeout: give a duration from 1ms to 24h")));
        }
        let ready = match &self.ready {
            ServiceReady::Command(command) => Some(command),
            ServiceReady::Tcp => None,
        };
        let templates = self.command.iter().chain(&self.args).chain(self.env.values()).chain(ready).chain([&self.url]);
        for template in templates {
            template.check_vars(|var| SERVICE_PLACEHOLDERS.contains(&var)).map_err(|unknown| {
                file.error_at(template.span(), format!("unknown placeholder `{{{unknown}}}` in [{table}]"))
                    .with_help(Some("placeholders here: {host}, {port} (where it listens) and {dir} (a directory of its own)".into()))
            })?;
        }
        if !self.url.vars().any(|var| var == "port") {
            return Err(file
                .error_at(self.url.span(), format!("[{table}] url names no `{{port}}`"))
                .with_help(Some("the port is chosen for each run: write it as, say, amqp://{host}:{port}/".into())));
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

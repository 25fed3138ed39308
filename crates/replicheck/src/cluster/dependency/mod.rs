//! Shared infrastructure the replicas need, started by replicheck for the run from the
//! machine's own server binaries, each on a free loopback port with its data in the run's
//! directory, and each a chaos target like the replicas.

mod postgres;
mod redis;
mod service;

use std::path::Path;
use std::time::Duration;

pub use postgres::{Postgres, installed as postgres_installed};
pub use redis::{Redis, ping, wait_for_pong};
pub use service::Service;

use super::ClusterError;

/// A dependency being waited for: its name, where it is reached (for the message), how
/// long it may take, and its log.
pub struct Awaited<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub timeout: Duration,
    pub log: &'a Path,
}

/// Waits until `probe` passes, `exited` tells how the dependency exited first (and the end
/// of its log), or its time is up; the error then gives `probe`'s last word. Shared by
/// every dependency and both backends.
pub async fn wait_until_ready(
    awaited: Awaited<'_>,
    mut exited: impl AsyncFnMut() -> Option<(String, String)>,
    mut probe: impl AsyncFnMut() -> Result<(), String>,
) -> Result<(), ClusterError> {
    let deadline = tokio::time::Instant::now() + awaited.timeout;
    loop {
        if let Some((status, tail)) = exited().await {
            return Err(ClusterError::ExitedBeforeReady { replica: awaited.name.to_owned(), status, tail, log: awaited.log.to_owned() });
        }
        let last = match probe().await {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::NotReady {
                replica: awaited.name.to_owned(),
                url: crate::redact::url_password(awaited.url),
                waited: awaited.timeout,
                last,
                log: awaited.log.to_owned(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `logs_dir/NAME.log` for a dependency's first start, `NAME#2.log` after its first restart.
fn generation_log(logs_dir: &Path, name: &str, generation: u32) -> std::path::PathBuf {
    match generation {
        1 => logs_dir.join(format!("{name}.log")),
        n => logs_dir.join(format!("{name}#{n}.log")),
    }
}

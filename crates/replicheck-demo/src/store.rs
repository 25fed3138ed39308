//! The demo's store for sessions and cache entries: process memory (misconfigured), a
//! SQLite file in a shared directory, or Redis.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub enum Store {
    Memory(Mutex<HashMap<String, String>>),
    // A std mutex: every use is one short statement on a blocking thread.
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Redis(redis::aio::ConnectionManager),
}

pub type StoreResult<T> = Result<T, String>;

impl Store {
    /// `memory`, `sqlite:PATH` or a `redis://` URL.
    pub async fn open(spec: &str) -> StoreResult<Self> {
        if spec == "memory" {
            return Ok(Store::Memory(Mutex::new(HashMap::new())));
        }
        if let Some(path) = spec.strip_prefix("sqlite:") {
            let path = PathBuf::from(path);
            let conn = blocking(move || open_sqlite(path)).await?;
            return Ok(Store::Sqlite(Arc::new(Mutex::new(conn))));
        }
        if spec.starts_with("redis://") {
            let client = redis::Client::open(spec).map_err(|e| format!("bad Redis URL {spec}: {e}"))?;
            // Short timeouts, as production clients set them: a request fails fast while
            // Redis is down instead of hanging until the user gives up.
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(Duration::from_millis(1000)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(200));
            let manager = client
                .get_connection_manager_with_config(config)
                .await
                .map_err(|e| format!("cannot reach Redis at {spec}: {e}"))?;
            return Ok(Store::Redis(manager));
        }
        Err(format!("unknown store `{spec}`: use memory, sqlite:PATH or redis://HOST:PORT"))
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Store::Memory(_) => "process memory",
            Store::Sqlite(_) => "shared SQLite file",
            Store::Redis(_) => "Redis",
        }
    }

    pub async fn get(&self, key: &str) -> StoreResult<Option<String>> {
        match self {
            Store::Memory(map) => Ok(map.lock().map_err(|e| e.to_string())?.get(key).cloned()),
            Store::Sqlite(conn) => {
                let (conn, key) = (conn.clone(), key.to_owned());
                blocking(move || {
                    let conn = conn.lock().map_err(|e| e.to_string())?;
                    let mut statement = conn.prepare_cached("SELECT v FROM kv WHERE k = ?1").map_err(|e| e.to_string())?;
                    let mut rows = statement.query([key]).map_err(|e| e.to_string())?;
                    match rows.next().map_err(|e| e.to_string())? {
                        Some(row) => row.get(0).map(Some).map_err(|e| e.to_string()),
                        None => Ok(None),
                    }
                })
                .await
            }
            Store::Redis(manager) => redis_retrying(manager, redis::cmd("GET").arg(key)).await,
        }
    }

    pub async fn set(&self, key: &str, value: &str) -> StoreResult<()> {
        match self {
            Store::Memory(map) => {
                map.lock().map_err(|e| e.to_string())?.insert(key.to_owned(), value.to_owned());
                Ok(())
            }
            Store::Sqlite(conn) => {
                let (conn, key, value) = (conn.clone(), key.to_owned(), value.to_owned());
                blocking(move || {
                    let conn = conn.lock().map_err(|e| e.to_string())?;
                    conn.execute("INSERT INTO kv (k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v", [key, value])
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .await
            }
            Store::Redis(manager) => redis_retrying(manager, redis::cmd("SET").arg(key).arg(value)).await,
        }
    }

    /// Adds one to the count under `key`, kept for `ttl_secs` at least; the new count.
    pub async fn increment(&self, key: &str, ttl_secs: u64) -> StoreResult<u32> {
        match self {
            Store::Memory(map) => {
                let mut map = map.lock().map_err(|e| e.to_string())?;
                let count = map.get(key).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0) + 1;
                map.insert(key.to_owned(), count.to_string());
                Ok(count)
            }
            Store::Sqlite(conn) => {
                let (conn, key) = (conn.clone(), key.to_owned());
                blocking(move || {
                    let conn = conn.lock().map_err(|e| e.to_string())?;
                    conn.query_row(
                        "INSERT INTO kv (k, v) VALUES (?1, '1') ON CONFLICT(k) DO UPDATE SET v = CAST(v AS INTEGER) + 1 RETURNING CAST(v AS INTEGER)",
                        [key],
                        |row| row.get(0),
                    )
                    .map_err(|e| e.to_string())
                })
                .await
            }
            // Not retried: a count must not grow twice for one request.
            Store::Redis(manager) => {
                let mut conn = manager.clone();
                let (count,): (u32,) = redis::pipe().atomic().incr(key, 1).expire(key, ttl_secs as i64).ignore().query_async(&mut conn).await.map_err(|e| e.to_string())?;
                Ok(count)
            }
        }
    }

    /// The Redis connection, for the background work that keeps its queues there.
    pub fn redis(&self) -> Option<redis::aio::ConnectionManager> {
        match self {
            Store::Redis(manager) => Some(manager.clone()),
            _ => None,
        }
    }

    /// Whether the store answers now: what honest readiness checks.
    pub async fn ping(&self) -> bool {
        match self {
            Store::Memory(_) => true,
            Store::Sqlite(_) => self.get("replicheck:ping").await.is_ok(),
            Store::Redis(manager) => {
                let mut conn = manager.clone();
                redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
            }
        }
    }
}

/// Runs a command, once more if the connection had dropped: after Redis restarts, the
/// first command finds the old connection dead while the manager reconnects, as clients
/// such as StackExchange.Redis retry. Only for commands that may safely run twice.
pub async fn redis_retrying<T: redis::FromRedisValue>(manager: &redis::aio::ConnectionManager, command: &redis::Cmd) -> StoreResult<T> {
    let mut conn = manager.clone();
    match command.query_async(&mut conn).await {
        Err(err) if err.is_connection_dropped() || err.is_io_error() => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            command.query_async(&mut conn).await.map_err(|e| e.to_string())
        }
        result => result.map_err(|e| e.to_string()),
    }
}

fn open_sqlite(path: PathBuf) -> StoreResult<rusqlite::Connection> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    // Replicas start together and race to set up the file; switching the journal mode is
    // not covered by the busy timeout, so a locked database is retried here.
    let mut attempts = 0;
    loop {
        match try_open_sqlite(&path) {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result.map_err(|e| format!("SQLite {}: {e}", path.display())),
        }
    }
}

fn try_open_sqlite(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    // Several replicas write the same file: wait for each other's locks instead of failing.
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)", [])?;
    Ok(conn)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_stores_are_shared_between_connections() {
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("sqlite:{}", dir.path().join("s.db").display());
        let (a, b) = (Store::open(&spec).await.unwrap(), Store::open(&spec).await.unwrap());
        a.set("k", "v1").await.unwrap();
        assert_eq!(b.get("k").await.unwrap().as_deref(), Some("v1"));
        b.set("k", "v2").await.unwrap();
        assert_eq!(a.get("k").await.unwrap().as_deref(), Some("v2"));
        assert!(a.ping().await);
    }

    #[tokio::test]
    async fn memory_stores_are_private() {
        let (a, b) = (Store::open("memory").await.unwrap(), Store::open("memory").await.unwrap());
        a.set("k", "v").await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), None);
    }
}

//! The demo's store for sessions and cache entries: process memory (misconfigured), a
//! SQLite file in a shared directory, Redis, or a PostgreSQL table the store creates as the
//! replica starts (its migration: under an advisory lock, or misconfigured without one).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub enum Store {
    Memory(Mutex<HashMap<String, String>>),
    // A std mutex: every use is one short statement on a blocking thread.
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Redis(redis::aio::ConnectionManager),
    Postgres(Box<Postgres>),
}

/// How a replica migrates its PostgreSQL table as it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// Holding an advisory lock, so replicas started together migrate one at a time.
    Locked,
    /// Misconfigured: it looks for the table and creates it when missing, as a migration
    /// tool run in every entrypoint without a lock does; replicas started together both
    /// find it missing.
    Unguarded,
}

pub type StoreResult<T> = Result<T, String>;

impl Store {
    /// `memory`, `sqlite:PATH`, a `redis://` or a `postgresql://` URL.
    pub async fn open(spec: &str, migration: Migration) -> StoreResult<Self> {
        if spec.starts_with("postgresql://") || spec.starts_with("postgres://") {
            let store = Postgres::new(spec)?;
            store.migrate(migration).await?;
            return Ok(Store::Postgres(Box::new(store)));
        }
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
        Err(format!("unknown store `{spec}`: use memory, sqlite:PATH, redis://HOST:PORT or postgresql://USER@HOST:PORT/DATABASE"))
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Store::Memory(_) => "process memory",
            Store::Sqlite(_) => "shared SQLite file",
            Store::Redis(_) => "Redis",
            Store::Postgres(_) => "PostgreSQL",
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
            Store::Postgres(pg) => {
                let row = pg.retrying(|client| async move { client.query_opt("SELECT v FROM kv WHERE k = $1", &[&key]).await }).await?;
                Ok(row.map(|row| row.get(0)))
            }
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
            Store::Postgres(pg) => {
                let upsert = "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v";
                pg.retrying(|client| async move { client.execute(upsert, &[&key, &value]).await }).await.map(|_| ())
            }
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
            // Not retried either; the window is the limiter's, as with SQLite.
            Store::Postgres(pg) => {
                let client = pg.client().await?;
                let upsert = "INSERT INTO kv (k, v) VALUES ($1, '1') ON CONFLICT (k) DO UPDATE SET v = (kv.v::int + 1)::text RETURNING v::int";
                let row = client.query_one(upsert, &[&key]).await.map_err(|e| e.to_string())?;
                Ok(row.get::<_, i32>(0) as u32)
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
            Store::Postgres(pg) => pg.retrying(|client| async move { client.simple_query("SELECT 1").await }).await.is_ok(),
        }
    }
}

/// One connection to PostgreSQL, made again when the server has closed it (a restart).
pub struct Postgres {
    config: tokio_postgres::Config,
    client: tokio::sync::Mutex<Option<std::sync::Arc<tokio_postgres::Client>>>,
}

impl Postgres {
    fn new(url: &str) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("bad PostgreSQL URL: {e}"))?;
        // Short, as production pools set it: a request fails fast while the server is down.
        config.connect_timeout(Duration::from_millis(500));
        Ok(Self { config, client: tokio::sync::Mutex::new(None) })
    }

    /// The open connection, or a new one.
    async fn client(&self) -> StoreResult<std::sync::Arc<tokio_postgres::Client>> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let (client, connection) = self.config.connect(tokio_postgres::NoTls).await.map_err(|e| format!("cannot reach PostgreSQL: {e}"))?;
        tokio::spawn(connection);
        let client = std::sync::Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs a statement that may safely run twice, once more on a new connection if the
    /// old one had been closed under it.
    async fn retrying<T, F, Fut>(&self, statement: F) -> StoreResult<T>
    where
        F: Fn(std::sync::Arc<tokio_postgres::Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let client = self.client().await?;
        match statement(client.clone()).await {
            Err(_) if client.is_closed() => statement(self.client().await?).await.map_err(|e| e.to_string()),
            result => result.map_err(|e| e.to_string()),
        }
    }

    /// Creates the table as the replica starts, as a migration does.
    async fn migrate(&self, migration: Migration) -> StoreResult<()> {
        const LOCK: i64 = 0x7265_706c; // any number every replica agrees on
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| format!("migration failed: {e}");
        if migration == Migration::Locked {
            client.execute("SELECT pg_advisory_lock($1)", &[&LOCK]).await.map_err(fail)?;
        }
        let missing = client.query_one("SELECT to_regclass('kv') IS NULL", &[]).await.map_err(fail)?.get::<_, bool>(0);
        if missing {
            println!("migrating: creating table kv");
            // A migration takes a while (a real one, seconds): long enough for another
            // replica's to overlap, even when their starts are spread by a busy engine.
            tokio::time::sleep(Duration::from_secs(2)).await;
            client.batch_execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)").await.map_err(fail)?;
        }
        if migration == Migration::Locked {
            client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await.map_err(fail)?;
        }
        Ok(())
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
        let (a, b) = (Store::open(&spec, Migration::Locked).await.unwrap(), Store::open(&spec, Migration::Locked).await.unwrap());
        a.set("k", "v1").await.unwrap();
        assert_eq!(b.get("k").await.unwrap().as_deref(), Some("v1"));
        b.set("k", "v2").await.unwrap();
        assert_eq!(a.get("k").await.unwrap().as_deref(), Some("v2"));
        assert!(a.ping().await);
    }

    #[tokio::test]
    async fn memory_stores_are_private() {
        let (a, b) = (Store::open("memory", Migration::Locked).await.unwrap(), Store::open("memory", Migration::Locked).await.unwrap());
        a.set("k", "v").await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), None);
    }
}

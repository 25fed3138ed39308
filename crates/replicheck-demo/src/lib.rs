//! The bundled demo service (`replicheck demo-service`), a small web app with real
//! encrypted cookies and tokens, so that `replicheck demo` needs nothing but this binary.
//!
//! Misconfigured (`--keys memory --store memory`), each process makes its own keys and
//! keeps sessions and cache in its own memory: the classic single-instance app. With
//! `--keys first-use:DIR`, each replica that finds no key ring on its first use makes one,
//! which replicas started together all do.
//! Configured (`--keys DIR --store sqlite:PATH|redis://...`), replicas share a key ring in
//! a directory and keep sessions and cache in a shared store.
//!
//! Shutdown and readiness are configurable too, from correct (drain after SIGTERM, honest
//! readiness) to the usual mistakes (close at once, drop in-flight requests, ignore
//! SIGTERM, refuse pages at once, say ready while warming up, while the store is down, or
//! while draining). Its telemetry (`--telemetry`) is exported over OTLP as the platform's
//! environment says, or with a service name, an instance id or a trace of its own.
//!
//! Background work (`--sink` and the flags after it) delivers webhooks to the URL replicheck
//! gives each replica: a digest on a schedule, receipts for orders through a queue and
//! invites through an outbox, each misconfigured as apps often are (every replica runs the
//! schedule, the queue is in the process, the outbox is scanned without claiming rows) or
//! correct (a lease, a queue in Redis, rows claimed before they are sent).
//!
//! Long-lived connections (`/live/...`): a WebSocket echo and an event stream, each naming
//! the replica that holds it. Live updates (`--hub`) fan out to the subscribers of one
//! process (misconfigured) or, through Redis pub/sub, of every replica (correct).
//!
//! A limit on password-reset requests (`--limiter`) counts per process or in the shared
//! store, keyed on the client or on the proxy; uploads (`--uploads DIR`) are kept in a
//! directory of the replica's own or one every replica shares.

mod app;
mod hub;
mod jobs;
mod keyring;
mod limiter;
mod live;
mod store;
mod telemetry;
mod uploads;

/// One run of `replicheck demo`: a built-in target file for this service, and what runs
/// against it.
pub struct DemoRun {
    pub label: &'static str,
    /// The file's path in replicheck's repository (reports and replay name it).
    pub path: &'static str,
    pub text: &'static str,
    /// `None`: every scenario, inspection and experiment; otherwise only these, by name.
    pub only: Option<&'static [&'static str]>,
    /// The server the run's dependency needs on this machine, if any.
    pub needs: Option<Need>,
    /// Whether the run must show findings (or else none).
    pub misconfigured: bool,
}

/// A server a demo run starts as its dependency, which the machine may not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Redis,
    Postgres,
}

/// The store's experiments: the Redis runs do only these.
const STORE_EXPERIMENTS: &[&str] = &["store-restart", "store-outage"];

/// The demo's data in PostgreSQL: a new deployment (migrations at start), and the database
/// restarted and down.
const DATABASE: &[&str] = &["login", "cache", "cold-start", "store-restart", "store-outage"];

/// A new deployment, with the users whose artifacts the keys protect.
const COLD_START: &[&str] = &["login", "antiforgery", "cold-start"];

/// What the demo exports, asked of each replica.
const TELEMETRY: &[&str] = &["telemetry"];

/// What the demo does out of band, watched at the run's sink.
const BACKGROUND_WORK: &[&str] = &["scheduled-jobs", "triggered-work"];

/// The demo's live updates, subscribed to on each replica, and its long-polling transport.
const LIVE_UPDATES: &[&str] = &["broadcast", "affinity"];

/// The demo's rate limit and uploads, across replicas.
const LIMITS: &[&str] = &["upload", "limits"];

/// The demo, misconfigured and configured correctly, with SQLite, Redis and PostgreSQL.
pub const RUNS: [DemoRun; 14] = [
    DemoRun {
        label: "misconfigured",
        path: "examples/demo/broken.toml",
        text: include_str!("../../../examples/demo/broken.toml"),
        only: None,
        needs: None,
        misconfigured: true,
    },
    DemoRun {
        label: "misconfigured, with Redis",
        path: "examples/demo/broken-redis.toml",
        text: include_str!("../../../examples/demo/broken-redis.toml"),
        only: Some(STORE_EXPERIMENTS),
        needs: Some(Need::Redis),
        misconfigured: true,
    },
    DemoRun {
        label: "misconfigured, with PostgreSQL",
        path: "examples/demo/broken-postgres.toml",
        text: include_str!("../../../examples/demo/broken-postgres.toml"),
        only: Some(DATABASE),
        needs: Some(Need::Postgres),
        misconfigured: true,
    },
    DemoRun {
        label: "misconfigured key ring, made on first use",
        path: "examples/demo/broken-keyring-race.toml",
        text: include_str!("../../../examples/demo/broken-keyring-race.toml"),
        only: Some(COLD_START),
        needs: None,
        misconfigured: true,
    },
    DemoRun {
        label: "misconfigured telemetry",
        path: "examples/demo/broken-telemetry.toml",
        text: include_str!("../../../examples/demo/broken-telemetry.toml"),
        only: Some(TELEMETRY),
        needs: None,
        misconfigured: true,
    },
    DemoRun {
        label: "misconfigured background work",
        path: "examples/demo/broken-jobs.toml",
        text: include_str!("../../../examples/demo/broken-jobs.toml"),
        only: Some(BACKGROUND_WORK),
        needs: Some(Need::Redis),
        misconfigured: true,
    },
    DemoRun {
        label: "misconfigured live updates",
        path: "examples/demo/broken-realtime.toml",
        text: include_str!("../../../examples/demo/broken-realtime.toml"),
        only: Some(LIVE_UPDATES),
        needs: Some(Need::Redis),
        misconfigured: true,
    },
    DemoRun {
        label: "misconfigured rate limit and uploads",
        path: "examples/demo/broken-limits.toml",
        text: include_str!("../../../examples/demo/broken-limits.toml"),
        only: Some(LIMITS),
        needs: None,
        misconfigured: true,
    },
    DemoRun {
        label: "configured correctly",
        path: "examples/demo/fixed.toml",
        text: include_str!("../../../examples/demo/fixed.toml"),
        only: None,
        needs: None,
        misconfigured: false,
    },
    DemoRun {
        label: "configured correctly, with Redis",
        path: "examples/demo/fixed-redis.toml",
        text: include_str!("../../../examples/demo/fixed-redis.toml"),
        only: Some(STORE_EXPERIMENTS),
        needs: Some(Need::Redis),
        misconfigured: false,
    },
    DemoRun {
        label: "configured correctly, with PostgreSQL",
        path: "examples/demo/fixed-postgres.toml",
        text: include_str!("../../../examples/demo/fixed-postgres.toml"),
        only: Some(DATABASE),
        needs: Some(Need::Postgres),
        misconfigured: false,
    },
    DemoRun {
        label: "background work configured correctly",
        path: "examples/demo/fixed-jobs.toml",
        text: include_str!("../../../examples/demo/fixed-jobs.toml"),
        only: Some(BACKGROUND_WORK),
        needs: Some(Need::Redis),
        misconfigured: false,
    },
    DemoRun {
        label: "live updates configured correctly",
        path: "examples/demo/fixed-realtime.toml",
        text: include_str!("../../../examples/demo/fixed-realtime.toml"),
        only: Some(LIVE_UPDATES),
        needs: Some(Need::Redis),
        misconfigured: false,
    },
    DemoRun {
        label: "rate limit and uploads configured correctly",
        path: "examples/demo/fixed-limits.toml",
        text: include_str!("../../../examples/demo/fixed-limits.toml"),
        only: Some(LIMITS),
        needs: None,
        misconfigured: false,
    },
];

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use app::Forwarded;
use app::{App, Leak, ReadinessFlaws};
use jobs::JobsArgs;
use keyring::{KeyRing, Keys};
use store::{Migration, Store};
use telemetry::{Telemetry, TelemetryArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The replica's name, shown on every page.
    #[arg(long, default_value = "r0")]
    pub replica: String,
    /// `memory` (a key of this process's own), a directory holding the shared key ring,
    /// or `first-use:DIR` (misconfigured: a ring made on first use by each replica that
    /// finds none in DIR, which replicas started together all do).
    #[arg(long, default_value = "memory")]
    pub keys: String,
    /// `memory`, `sqlite:PATH`, a `redis://` or a `postgresql://` URL.
    #[arg(long, default_value = "memory")]
    pub store: String,
    /// Misconfiguration: a PostgreSQL store creates its table as the replica starts
    /// without the advisory lock that makes replicas started together take turns.
    #[arg(long)]
    pub migrate_without_lock: bool,
    /// The one user, as `name:password`.
    #[arg(long, default_value = "alice:wonderland")]
    pub user: String,
    /// What SIGTERM does.
    #[arg(long, value_enum, default_value_t = Shutdown::Graceful)]
    pub shutdown: Shutdown,
    /// Graceful shutdown: how long to keep serving after SIGTERM, while the load balancer
    /// still sends traffic (milliseconds).
    #[arg(long, default_value_t = 1500)]
    pub drain_ms: u64,
    /// Pages answer 503 for this long after start (milliseconds).
    #[arg(long, default_value_t = 0)]
    pub warmup_ms: u64,
    /// Misconfiguration: readiness says ready while warming up.
    #[arg(long)]
    pub ready_during_warmup: bool,
    /// Misconfiguration: readiness does not check the store.
    #[arg(long)]
    pub readiness_ignores_store: bool,
    /// Misconfiguration: readiness stays ready after SIGTERM.
    #[arg(long)]
    pub readiness_ignores_shutdown: bool,
    /// Whom the app believes about X-Forwarded-* headers.
    #[arg(long, value_enum, default_value_t = Forwarded::KnownProxy)]
    pub forwarded: Forwarded,
    /// The proxy whose forwarded headers are believed.
    #[arg(long, default_value = "127.0.0.1")]
    pub known_proxy: std::net::IpAddr,
    /// Refuse posts whose Origin is not the origin the app believes it has (a CSRF check).
    #[arg(long)]
    pub check_origin: bool,
    /// Record every sign-in in this file (a path in the image, say, which a read-only
    /// root filesystem refuses).
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Test aid: log every cookie and token the app issues, and append it to this file, so
    /// a test can prove replicheck keeps them out of everything it writes.
    #[arg(long, hide = true)]
    pub leak_secrets: Option<PathBuf>,
    /// Test aid: the replica so named answers every page with a redirect to itself.
    #[arg(long, hide = true, value_name = "REPLICA")]
    pub redirect_loop: Option<String>,
    /// Test aid: `REPLICA[,REPLICA...]:N`: the replicas so named exit by themselves
    /// (status 1) once they have served N pages, in every incarnation, as an app that
    /// crashes under traffic does.
    #[arg(long, hide = true, value_name = "REPLICAS:N")]
    pub quit_after: Option<String>,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub jobs: JobsArgs,
    /// Live updates: what `POST /hub/publish` (or a message on `/hub/ws`) gets reaches the
    /// subscribers of `/hub/ws` and `/hub/events`, of this process only or, through Redis
    /// pub/sub, of every replica.
    #[arg(long, value_enum)]
    pub hub: Option<hub::HubMode>,
    /// A limit on `POST /password-reset` (form `email`), five per client per minute: counted
    /// in this process's memory or in the shared `--store`.
    #[arg(long, value_enum)]
    pub limiter: Option<limiter::LimiterMode>,
    /// What the limit counts tries of: the client the app believes, or the connection's peer.
    #[arg(long, value_enum, default_value_t = limiter::LimitKey::Client)]
    pub limit_key: limiter::LimitKey,
    /// Uploads: `POST /uploads` (multipart, field `file`) keeps the file in this directory,
    /// `GET /uploads/NAME` serves it.
    #[arg(long)]
    pub uploads: Option<PathBuf>,
}

/// What the demo does on SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shutdown {
    /// Turn unready, keep serving for the drain time, then stop accepting and finish
    /// in-flight requests (what Kubernetes expects).
    Graceful,
    /// Stop accepting at once; in-flight requests finish.
    CloseAtOnce,
    /// Answer 503 to every page at once (health endpoints keep answering) for the drain
    /// time, then stop accepting; in-flight requests finish.
    Unavailable,
    /// Exit at once, dropping in-flight requests.
    ExitAtOnce,
    /// Keep running until killed.
    Ignore,
}

/// Serves until `terminate` completes, then shuts down as `--shutdown` says.
pub async fn serve(args: DemoArgs, terminate: impl Future<Output = ()> + Send + 'static) -> Result<(), String> {
    let jobs = jobs::Plan::from_args(&args.jobs, &args.store)?;
    let keys = match args.keys.as_str() {
        "memory" => Keys::Ready(KeyRing::in_memory()),
        lazy if lazy.starts_with("first-use:") => Keys::FirstUse {
            dir: PathBuf::from(&lazy["first-use:".len()..]),
            ring: std::sync::OnceLock::new(),
        },
        dir => Keys::Ready(KeyRing::shared(&PathBuf::from(dir)).map_err(|e| format!("key ring in {dir}: {e}"))?),
    };
    let migration = if args.migrate_without_lock { Migration::Unguarded } else { Migration::Locked };
    let store = Store::open(&args.store, migration).await?;
    let telemetry = Telemetry::start(&args.telemetry)?;
    let (username, password) = args.user.split_once(':').ok_or("--user must be name:password")?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!(
        "demo {} listening on {} (keys: {}, store: {}, on SIGTERM: {:?})",
        args.replica,
        args.listen,
        keys.describe(),
        store.describe(),
        args.shutdown,
    );
    if let Some(jobs) = &jobs {
        println!("background work: {}", jobs.describe());
    }
    let quits_after = match args.quit_after.as_deref().and_then(|q| q.split_once(':')) {
        Some((replicas, pages)) => {
            let pages: u64 = pages.parse().map_err(|_| format!("--quit-after {replicas}:{pages}: not a number of pages"))?;
            replicas.split(',').any(|r| r == args.replica).then_some(pages)
        }
        None => None,
    };
    let loops = args.redirect_loop.as_deref() == Some(args.replica.as_str());
    // Started last, once nothing else can refuse to start.
    let (stop, stopping) = jobs::stop_signal();
    let (intake, workers) = match &jobs {
        Some(plan) => jobs::start(plan, &args.replica, store.redis(), &stopping)?,
        None => Default::default(),
    };
    let hub = match args.hub {
        Some(mode) => Some(hub::Hub::start(mode, store.redis().map(|redis| (redis, args.store.as_str())), stopping.clone())?),
        None => None,
    };
    let app = Arc::new(App {
        replica: args.replica,
        keys,
        store,
        username: username.to_owned(),
        password: password.to_owned(),
        started: Instant::now(),
        warmup: Duration::from_millis(args.warmup_ms),
        draining: AtomicBool::new(false),
        refusing: AtomicBool::new(false),
        readiness: ReadinessFlaws {
            during_warmup: args.ready_during_warmup,
            ignores_store: args.readiness_ignores_store,
            ignores_shutdown: args.readiness_ignores_shutdown,
        },
        forwarded: args.forwarded,
        known_proxy: args.known_proxy,
        check_origin: args.check_origin,
        leak: args.leak_secrets.map(|path| Leak { path, lock: std::sync::Mutex::new(()) }),
        audit_log: args.audit_log,
        loops,
        quits_after,
        pages_served: std::sync::atomic::AtomicU64::new(0),
        intake,
        hub,
        limiter: args.limiter.map(|mode| limiter::Limiter::new(mode, args.limit_key)),
        uploads: args.uploads,
    });
    if let Some(limiter) = &app.limiter {
        println!("password-reset limit: {}", limiter.describe());
    }
    let (mode, drain) = (args.shutdown, Duration::from_millis(args.drain_ms));
    let draining = app.clone();
    let stop_background = stop.clone();
    let stop_accepting = async move {
        terminate.await;
        // Background work stops at the signal, not after the drain: a worker that stops
        // takes nothing new, a misconfigured one drops what it holds.
        if mode != Shutdown::Ignore {
            stop_background.stop();
        }
        match mode {
            Shutdown::Graceful => {
                draining.draining.store(true, Ordering::Release);
                println!("SIGTERM: draining for {drain:?}");
                tokio::time::sleep(drain).await;
            }
            Shutdown::CloseAtOnce => println!("SIGTERM: closing the listener"),
            Shutdown::Unavailable => {
                draining.draining.store(true, Ordering::Release);
                draining.refusing.store(true, Ordering::Release);
                println!("SIGTERM: refusing pages for {drain:?}");
                tokio::time::sleep(drain).await;
            }
            Shutdown::ExitAtOnce => {
                println!("SIGTERM: exiting at once");
                std::process::exit(0);
            }
            Shutdown::Ignore => {
                println!("SIGTERM: ignored");
                std::future::pending::<()>().await;
            }
        }
    };
    let served = axum::serve(listener, app::router(app, telemetry.clone()).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(stop_accepting)
        .await
        .map_err(|e| format!("server failed: {e}"));
    stop.stop();
    workers.finish().await;
    if let Some(telemetry) = telemetry {
        telemetry.flush();
    }
    served
}

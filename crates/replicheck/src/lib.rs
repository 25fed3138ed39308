//! replicheck: a multi-instance chaos test harness for web services.
//!
//! A run flows through the modules in this order:
//!
//! - [`target`]: the target file (how to start a replica, the app's flows), validated.
//! - [`scenario`]: scenario files (steps, captures, expectations), bound to the target.
//! - [`plan`]: seed + scenarios -> every virtual user's steps and the replica of each request.
//! - [`cluster`]: the replicas and their dependencies, started and stopped through a backend.
//! - [`balancer`]: replicheck's own load balancer in front of the replicas; [`telemetry`]
//!   receives what they export over OTLP, and [`sink`] what they send out of band
//!   (webhooks, mail) for the background-work experiments.
//! - [`vu`]: virtual users running the plan through the balancer, each with its own cookie jar.
//! - [`inspect`]: questions asked of each replica directly (forwarded headers, signing keys).
//! - [`chaos`]: experiments that disrupt the cluster (restarts, SIGTERM, store outages) under load,
//!   and those that watch what crosses replicas otherwise (background work, live updates,
//!   rate limits).
//! - [`history`]: what the run produced: every step and request, with the replica that served it.
//! - [`check`]: reads the history and the control runs, and decides the findings.
//! - [`diagnose`]: groups findings by probable root cause, with remedies per framework;
//!   [`policy`] marks the ones a team accepts for now.
//! - [`report`]: renders the outcome (`report.json`, terminal tables); [`verdict`] says
//!   what it amounts to.
//!
//! [`run`] strings the phases together on the [`driver`] it shares with [`explore`] ([`up`] only starts the cluster and its balancer;
//! [`replay`] reruns a recorded report; [`validate`] checks input files). Shared pieces:
//! [`vocab`] (replica names, the kinds of findings, experiments and backends), [`shape`]
//! (the form of a cookie or token value), [`step`] (the request/capture/expectation vocabulary of target and scenario files),
//! [`file`](mod@file) (input files and located errors), [`redact`] (secrets out of
//! everything written), [`progress`] (events for observers), [`errors`] (error chains in
//! one line), [`clock`] (deadlines that cannot overflow).
//!
//! The command line (`replicheck-cli`, the only place that prints or picks exit codes) and
//! the bundled demo service (`replicheck-demo`) are crates of their own.
//!
//! # Layers
//!
//! Each module belongs to one layer and imports only from layers below its own, or from
//! its own layer without closing a circle. `tests/layers.rs` reads this table and every
//! `crate::` path outside test modules, and fails on an import that breaks the rule.
//!
//! | layer | modules | owns |
//! | --- | --- | --- |
//! | 0 words | `vocab`, `shape`, `step`, `clock`, `errors`, `file`, `redact`, `interrupt`, `client`, `server`, `sync`, `shell` | names, kinds and small types every layer speaks; input files; HTTP clients and the server loop; shell words |
//! | 1 inputs | `target`, `scenario` | what the user wrote, validated |
//! | 2 plans | `plan` | every user's steps and routes, from the seed |
//! | 3 records | `history`, `progress` | what a run produced, and events as it goes |
//! | 4 runtime | `telemetry`, `sink`, `balancer`, `cluster` | the replicas, their balancer, and what they export and send out of band |
//! | 5 actors | `vu`, `chaos`, `inspect` | what acts on the cluster and records it |
//! | 6 judgement | `check`, `diagnose` | findings from the history, and their causes |
//! | 7 policy | `policy` | which findings a team accepts |
//! | 8 reports | `report`, `verdict` | the outcome in every format, and what it amounts to |
//! | 9 driver | `driver` | what every command that runs a cluster shares: starting it, watching it, its report directory and errors |
//! | 10 commands | `run`, `explore`, `replay`, `up`, `validate` | the phases strung together |
//!
//! # Replicas in a test
//!
//! [`up::start`] runs a target's replicas behind replicheck's balancer until the returned
//! [`up::Up`] is dropped; the test sends its own requests and disrupts replicas itself.
//! Here the replicas are Python's static file server:
//!
//! ```
//! use replicheck::file::SourceFile;
//! use replicheck::progress::Silent;
//! use replicheck::run::ReportDir;
//! use replicheck::target::Target;
//! use replicheck::up::{self, UpConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let target = Target::from_source(&SourceFile::from_text("static.toml", r#"
//!     name = "static"
//!     [start]
//!     command = "python3"
//!     args = ["-m", "http.server", "--bind", "{host}", "{port}"]
//!     [health]
//!     ready = "/"
//! "#))?;
//! let logs = tempfile::tempdir()?;
//! let config = UpConfig::new(target).replicas(3).report_dir(ReportDir::At(logs.path().into()));
//! let mut cluster = up::start(config, &Silent).await?;
//! let client = replicheck::client::builder().build()?;
//!
//! cluster.kill(1).await?; // out of routing at once, as an OOM kill would leave it
//! for _ in 0..10 {
//!     let answer = client.get(cluster.balancer_url()).send().await?;
//!     assert!(answer.status().is_success());
//!     assert_ne!(answer.headers()[replicheck::balancer::SERVED_BY_HEADER], "r1");
//! }
//! cluster.restart(1).await?; // its next incarnation, routed to once ready
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # A run in a test
//!
//! [`run::RunConfig::new`] makes a run as `replicheck run` would; [`run::run`] runs it and
//! [`report::Report::assert_consistent`] fails the test with the probable causes, the
//! findings and their evidence. A run's plan follows from its seed alone:
//!
//! ```
//! use replicheck::progress::Silent;
//! use replicheck::run::{self, RunConfig};
//! use replicheck::target::Target;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let target = Target::load("../../examples/demo/fixed.toml".as_ref())?;
//! let config = RunConfig::new(target).replicas(3).seed(7).select(&["login", "kill"])?;
//! let plan = run::plan_only(&config, &Silent)?;
//! assert_eq!(plan.replicas, 3);
//! assert_eq!(plan.experiments.len(), 1);
//! // With replicas to run: run::run(config, &Silent).await?.report.assert_consistent();
//! # Ok(())
//! # }
//! ```

pub mod balancer;
pub mod chaos;
pub mod check;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod diagnose;
pub mod driver;
pub mod errors;
pub mod explore;
pub mod file;
pub mod history;
pub mod inspect;
pub mod interrupt;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod redact;
pub mod replay;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
pub mod shape;
pub mod shell;
pub mod sink;
pub mod step;
pub mod sync;
pub mod target;
pub mod telemetry;
pub mod up;
pub mod validate;
pub mod verdict;
pub mod vocab;
pub mod vu;

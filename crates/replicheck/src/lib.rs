//! replicheck: a multi-instance chaos test harness for web services.
//!
//! A run flows through the modules in this order:
//!
//! - [`target`]: the target file (how to start a replica, the app's flows), validated.
//! - [`scenario`]: scenario files (steps, captures, expectations), bound to the target.
//! - [`plan`]: seed + scenarios -> every virtual user's steps and the replica of each request.
//! - [`cluster`]: the replicas and their dependencies, started and stopped through a backend.
//! - [`balancer`]: replicheck's own load balancer in front of the replicas.
//! - [`vu`]: virtual users running the plan through the balancer, each with its own cookie jar.
//! - [`inspect`]: questions asked of each replica directly (forwarded headers, signing keys).
//! - [`chaos`]: experiments that disrupt the cluster (restarts, SIGTERM, store outages) under load.
//! - [`history`]: what the run produced: every step and request, with the replica that served it.
//! - [`check`]: reads the history and the control runs, and decides the findings.
//! - [`diagnose`]: groups findings by probable root cause, with remedies per framework;
//!   [`policy`] marks the ones a team accepts for now.
//! - [`report`]: renders the outcome (`report.json`, terminal tables); [`verdict`] says
//!   what it amounts to.
//!
//! [`run`] strings the phases together ([`up`] only starts the cluster and its balancer).
//! Shared pieces: [`step`] (the request/capture/expectation vocabulary of target and
//! scenario files), [`file`] (input files and located errors), [`redact`] (secrets out of
//! everything written), [`progress`] (events for observers), [`errors`] (error chains in
//! one line).
//!
//! The command line (`replicheck-cli`, the only place that prints or picks exit codes) and
//! the bundled demo service (`replicheck-demo`) are crates of their own.

pub mod balancer;
pub mod chaos;
pub mod check;
pub mod client;
pub mod cluster;
pub mod diagnose;
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
pub mod report;
pub mod run;
pub mod scenario;
pub mod step;
pub mod target;
pub mod up;
pub mod verdict;
pub mod vu;

//! The demo's background work, each kind misconfigured or correct, delivering to the
//! replica's sink (`--sink`, the URL replicheck gives each replica for webhooks).
//!
//! - `digest`: a job on a wall-clock schedule, run by every replica or under a lease.
//! - `orders`: receipts for `POST /orders`, queued in the process or in Redis.
//! - `invites`: an outbox in Redis for `POST /invites`, scanned with or without claiming rows.
//! - `clock`: the wall-clock slots the schedules share; `sink`: the deliveries.

mod clock;
mod digest;
mod invites;
mod orders;
mod sink;

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use invites::Outbox;
pub use orders::Orders;

/// The background work the demo does, all off unless asked for.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JobsArgs {
    /// Base URL of the replica's webhook receiver: deliveries POST JSON to paths below it.
    #[arg(long, value_name = "URL")]
    pub sink: Option<String>,
    /// Run the digest job at every multiple of this many milliseconds of wall-clock time (0: never).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub digest_every: u64,
    /// Run each digest only on the replica that takes its lease in Redis (without it, every replica runs it).
    #[arg(long)]
    pub digest_lease: bool,
    /// How long each digest takes (milliseconds); one that takes time first says it has begun.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub digest_ms: u64,
    /// At SIGTERM, abandon the digests in hand as the process exits (without it, they are finished first).
    #[arg(long)]
    pub digest_abandon: bool,
    /// Deliver a receipt for each `POST /orders`, through this queue.
    #[arg(long, value_enum)]
    pub receipts: Option<Receipts>,
    /// How long the receipts worker spends on each order (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub work_ms: u64,
    /// Send each `POST /invites` through an outbox in Redis, scanned by every replica this way.
    #[arg(long, value_enum)]
    pub invites: Option<InvitesMode>,
}

/// The queue between `POST /orders` and the worker that delivers its receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Receipts {
    /// Misconfigured: a channel in the process, dropped with what it holds at SIGTERM.
    InProcess,
    /// A list in Redis that every replica's worker claims from.
    Redis,
}

/// How the replicas' pollers take rows from the invites outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InvitesMode {
    /// Misconfigured: each poller sends every row it read, so pollers scanning at once all send it.
    Unclaimed,
    /// Each row is claimed (deleted) first and sent only by the poller that claimed it.
    Claimed,
}

/// The background work the flags ask for, checked against each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    sink: String,
    /// The digest's period in milliseconds, and whether it runs under a lease.
    digest: Option<(u64, bool)>,
    digest_work: digest::Work,
    receipts: Option<Receipts>,
    work: Duration,
    invites: Option<InvitesMode>,
}

impl Plan {
    /// `None` when no background work is asked for; an error names the flag missing or wrong.
    /// `store` is `--store`: the leases and the correct queues live in Redis.
    pub fn from_args(args: &JobsArgs, store: &str) -> Result<Option<Plan>, String> {
        let redis = store.starts_with("redis://");
        let digest = (args.digest_every > 0).then_some((args.digest_every, args.digest_lease));
        let needs_redis = [
            (args.digest_lease, "--digest-lease"),
            (args.receipts == Some(Receipts::Redis), "--receipts redis"),
            (args.invites.is_some(), "--invites"),
        ];
        let digest_flags = [(args.digest_lease, "--digest-lease"), (args.digest_ms > 0, "--digest-ms"), (args.digest_abandon, "--digest-abandon")];
        if let Some((_, flag)) = digest_flags.iter().find(|(on, _)| *on && digest.is_none()) {
            return Err(format!("{flag} needs --digest-every MS: there is no digest for it"));
        }
        if let Some((_, flag)) = needs_redis.iter().find(|(on, _)| *on && !redis) {
            return Err(format!("{flag} keeps its state in Redis: it needs --store redis://HOST:PORT, not `{store}`"));
        }
        let wanted = [
            (digest.is_some(), "--digest-every"),
            (args.receipts.is_some(), "--receipts"),
            (args.invites.is_some(), "--invites"),
        ];
        let Some((_, first)) = wanted.iter().find(|(on, _)| *on) else { return Ok(None) };
        let sink = args.sink.clone().ok_or_else(|| format!("{first} delivers to a webhook receiver: it needs --sink URL"))?;
        match reqwest::Url::parse(&sink) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => return Err(format!("--sink {sink}: not an http(s) URL")),
        }
        let digest_work = digest::Work { takes: Duration::from_millis(args.digest_ms), abandoned_at_sigterm: args.digest_abandon };
        Ok(Some(Plan { sink, digest, digest_work, receipts: args.receipts, work: Duration::from_millis(args.work_ms), invites: args.invites }))
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((every, leased)) = self.digest {
            parts.push(format!("digest every {every} ms {}", if leased { "under a lease" } else { "on every replica" }));
            if !self.digest_work.takes.is_zero() {
                let at_sigterm = if self.digest_work.abandoned_at_sigterm { "abandoned" } else { "finished" };
                parts.push(format!("each taking {} ms, {at_sigterm} at SIGTERM", self.digest_work.takes.as_millis()));
            }
        }
        match self.receipts {
            Some(Receipts::InProcess) => parts.push("receipts queued in process".to_owned()),
            Some(Receipts::Redis) => parts.push("receipts queued in Redis".to_owned()),
            None => {}
        }
        match self.invites {
            Some(InvitesMode::Unclaimed) => parts.push("invites sent unclaimed".to_owned()),
            Some(InvitesMode::Claimed) => parts.push("invites claimed, then sent".to_owned()),
            None => {}
        }
        format!("{}; delivered to {}", parts.join(", "), self.sink)
    }
}

/// What the routes hand background work to; `None` where it is off (the route is too).
#[derive(Default)]
pub struct Intake {
    pub orders: Option<Orders>,
    pub invites: Option<Outbox>,
}

/// The background tasks, awaited when the server has stopped.
#[derive(Default)]
pub struct Workers(Vec<JoinHandle<()>>);

impl Workers {
    /// Waits for each task to stop as it does at SIGTERM: the correct ones finish what
    /// they hold first.
    pub async fn finish(self) {
        for worker in self.0 {
            if let Err(err) = worker.await {
                eprintln!("a background task failed: {err}");
            }
        }
    }
}

/// Starts the work `plan` asks for. `redis` is the store's connection when the store is
/// Redis, which `Plan::from_args` made sure of where the work needs it.
pub fn start(plan: &Plan, replica: &str, redis: Option<ConnectionManager>, stopping: &Stopping) -> Result<(Intake, Workers), String> {
    let sink = sink::Sink::new(&plan.sink)?;
    let redis = || redis.clone().ok_or_else(|| "the background work needs the store to be Redis".to_owned());
    let (mut intake, mut workers) = (Intake::default(), Vec::new());
    if let Some((every, leased)) = plan.digest {
        let runs = if leased { digest::Runs::Leased { redis: redis()?, replica: replica.to_owned() } } else { digest::Runs::Everywhere };
        workers.push(digest::schedule(every, runs, plan.digest_work, sink.clone(), stopping.clone()));
    }
    if let Some(receipts) = plan.receipts {
        let (orders, worker) = match receipts {
            Receipts::InProcess => orders::in_process(sink.clone(), plan.work, stopping.clone()),
            Receipts::Redis => orders::in_redis(redis()?, replica, sink.clone(), plan.work, stopping.clone()),
        };
        intake.orders = Some(orders);
        workers.push(worker);
    }
    if let Some(mode) = plan.invites {
        let (outbox, poller) = invites::poll(redis()?, mode, sink, stopping.clone());
        intake.invites = Some(outbox);
        workers.push(poller);
    }
    Ok((intake, Workers(workers)))
}

/// Set once SIGTERM has arrived: each worker stops as its kind does.
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

/// What `serve` sets at SIGTERM.
#[derive(Clone)]
pub struct Stop(watch::Sender<bool>);

pub fn stop_signal() -> (Stop, Stopping) {
    let (stop, stopping) = watch::channel(false);
    (Stop(stop), Stopping(stopping))
}

impl Stop {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Stopping {
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once stopping; at once if already.
    pub async fn wait(&mut self) {
        // An error means the sender is gone, which only happens once `serve` has returned.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[arg(long, default_value = "memory")]
        store: String,
        #[command(flatten)]
        jobs: JobsArgs,
    }

    fn plan(args: &[&str]) -> Result<Option<Plan>, String> {
        let cli = Cli::try_parse_from(std::iter::once("demo").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        Plan::from_args(&cli.jobs, &cli.store)
    }

    const SINK: [&str; 2] = ["--sink", "http://127.0.0.1:40123/r1"];
    const REDIS: [&str; 2] = ["--store", "redis://127.0.0.1:6379"];

    #[test]
    fn without_flags_there_is_no_background_work() {
        assert_eq!(plan(&[]), Ok(None));
        assert_eq!(plan(&SINK), Ok(None));
        assert_eq!(plan(&["--digest-every", "0"]), Ok(None));
    }

    #[test]
    fn the_misconfigured_forms_need_only_a_sink() {
        let broken = plan(&[&SINK[..], &["--digest-every", "1000", "--receipts", "in-process"]].concat()).unwrap().unwrap();
        assert_eq!(broken.digest, Some((1000, false)));
        assert_eq!(broken.receipts, Some(Receipts::InProcess));
        assert_eq!(broken.work, Duration::from_millis(300));
        assert_eq!(broken.describe(), "digest every 1000 ms on every replica, receipts queued in process; delivered to http://127.0.0.1:40123/r1");
    }

    #[test]
    fn the_correct_forms_need_redis() {
        let args = [&SINK[..], &["--digest-every", "1000", "--digest-lease", "--receipts", "redis", "--invites", "claimed"]].concat();
        let fixed = plan(&[&args[..], &REDIS[..]].concat()).unwrap().unwrap();
        assert_eq!((fixed.digest, fixed.receipts, fixed.invites), (Some((1000, true)), Some(Receipts::Redis), Some(InvitesMode::Claimed)));
        let error = plan(&args).unwrap_err();
        assert_eq!(error, "--digest-lease keeps its state in Redis: it needs --store redis://HOST:PORT, not `memory`");
        let error = plan(&[&SINK[..], &["--invites", "unclaimed", "--store", "sqlite:/tmp/s.db"]].concat()).unwrap_err();
        assert!(error.starts_with("--invites keeps its state in Redis"), "{error}");
    }

    #[test]
    fn work_without_a_sink_is_refused() {
        let error = plan(&["--receipts", "in-process"]).unwrap_err();
        assert_eq!(error, "--receipts delivers to a webhook receiver: it needs --sink URL");
        let error = plan(&["--sink", "127.0.0.1:40123", "--digest-every", "1000"]).unwrap_err();
        assert_eq!(error, "--sink 127.0.0.1:40123: not an http(s) URL");
    }

    #[test]
    fn a_lease_needs_a_schedule() {
        let error = plan(&[&SINK[..], &REDIS[..], &["--digest-lease"]].concat()).unwrap_err();
        assert!(error.starts_with("--digest-lease needs --digest-every"), "{error}");
        let error = plan(&[&SINK[..], &["--digest-ms", "500"]].concat()).unwrap_err();
        assert!(error.starts_with("--digest-ms needs --digest-every"), "{error}");
        let long = plan(&[&SINK[..], &["--digest-every", "1000", "--digest-ms", "1500", "--digest-abandon"]].concat()).unwrap().unwrap();
        assert!(long.describe().starts_with("digest every 1000 ms on every replica, each taking 1500 ms, abandoned at SIGTERM"), "{}", long.describe());
    }

    #[tokio::test]
    async fn a_worker_that_looks_after_sigterm_still_sees_it() {
        let (stop, mut waiting) = stop_signal();
        let mut late = waiting.clone();
        assert!(!late.is_set());
        let waiter = tokio::spawn(async move { waiting.wait().await });
        stop.stop();
        waiter.await.unwrap();
        // Workers check between steps: the signal must not be a one-off wake-up.
        assert!(late.is_set());
        late.wait().await;
    }
}

//! The digest: a job on a wall-clock schedule, each occurrence named by its slot. Without a
//! lease (misconfigured) every replica runs it, as an in-process scheduler copied onto each
//! instance does; with one, only the replica that takes the slot's key in Redis runs it.

use redis::aio::ConnectionManager;
use serde_json::json;
use tokio::task::JoinHandle;

use super::clock::{after, next_slot, unix_ms, until_slot};
use super::sink::Sink;
use super::Stopping;

/// Who may run an occurrence: any replica, or the one that wins its lease.
pub enum Runs {
    Everywhere,
    Leased { redis: ConnectionManager, replica: String },
}

/// Fires at every boundary of `every_ms` until SIGTERM.
pub fn schedule(every_ms: u64, runs: Runs, sink: Sink, mut stopping: Stopping) -> JoinHandle<()> {
    let runs = std::sync::Arc::new(runs);
    tokio::spawn(async move {
        // The slot is chosen before sleeping, not read from the clock on waking: a timer
        // that wakes a hair early by the wall clock still fires the slot it waited for.
        let mut slot = next_slot(unix_ms(), every_ms);
        loop {
            tokio::select! {
                biased;
                () = stopping.wait() => return,
                () = tokio::time::sleep(until_slot(slot, every_ms, unix_ms())) => {}
            }
            // Run apart from the timer, so a slow lease or receiver does not shift the schedule.
            tokio::spawn(run(slot, every_ms, runs.clone(), sink.clone()));
            slot = after(slot, unix_ms(), every_ms);
        }
    })
}

async fn run(slot: u64, every_ms: u64, runs: std::sync::Arc<Runs>, sink: Sink) {
    if let Runs::Leased { redis, replica } = runs.as_ref()
        && !won(redis, replica, slot, every_ms).await
    {
        return;
    }
    sink.deliver("/digest", &json!({ "job": "digest", "slot": slot })).await;
}

/// Whether this replica takes the slot's lease. It outlives the slot, so a replica whose
/// clock lags cannot take it again once the winner's has expired.
async fn won(redis: &ConnectionManager, replica: &str, slot: u64, every_ms: u64) -> bool {
    let mut conn = redis.clone();
    let taken = redis::cmd("SET")
        .arg(format!("replicheck-demo:digest:{slot}"))
        .arg(replica)
        .arg("NX")
        .arg("PX")
        .arg(every_ms.saturating_mul(2))
        .query_async::<Option<String>>(&mut conn)
        .await;
    match taken {
        Ok(taken) => taken.is_some(),
        Err(err) => {
            eprintln!("digest slot {slot}: cannot take the lease, skipped: {err}");
            false
        }
    }
}

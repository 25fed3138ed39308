//! The digest: a job on a wall-clock schedule, each occurrence named by its slot. Without a
//! lease (misconfigured) every replica runs it, as an in-process scheduler copied onto each
//! instance does; with one, only the replica that takes the slot's key in Redis runs it.
//!
//! A digest that takes time says when it begins. At SIGTERM the runs in hand are finished
//! before the scheduler stops (correct), or abandoned as the process exits, as a hosted
//! service that ignores its stopping token is (misconfigured).

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};

use super::clock::{after, next_slot, unix_ms, until_slot};
use super::sink::Sink;
use super::Stopping;

/// Who may run an occurrence: any replica, or the one that wins its lease.
pub enum Runs {
    Everywhere,
    Leased { redis: ConnectionManager, replica: String },
}

/// How each run goes: how long it takes, and whether SIGTERM abandons the runs in hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    pub takes: Duration,
    pub abandoned_at_sigterm: bool,
}

/// Fires at every boundary of `every_ms` until SIGTERM.
pub fn schedule(every_ms: u64, runs: Runs, work: Work, sink: Sink, mut stopping: Stopping) -> JoinHandle<()> {
    let runs = std::sync::Arc::new(runs);
    tokio::spawn(async move {
        let mut in_hand = JoinSet::new();
        // The slot is chosen before sleeping, not read from the clock on waking: a timer
        // that wakes a hair early by the wall clock still fires the slot it waited for.
        let mut slot = next_slot(unix_ms(), every_ms);
        loop {
            tokio::select! {
                biased;
                () = stopping.wait() => break,
                () = tokio::time::sleep(until_slot(slot, every_ms, unix_ms())) => {}
            }
            // Run apart from the timer, so a slow lease or receiver does not shift the schedule.
            in_hand.spawn(run(slot, every_ms, runs.clone(), work.takes, sink.clone()));
            while in_hand.try_join_next().is_some() {}
            slot = after(slot, unix_ms(), every_ms);
        }
        if work.abandoned_at_sigterm {
            in_hand.detach_all();
        } else {
            in_hand.join_all().await;
        }
    })
}

async fn run(slot: u64, every_ms: u64, runs: std::sync::Arc<Runs>, takes: Duration, sink: Sink) {
    if let Runs::Leased { redis, replica } = runs.as_ref()
        && !won(redis, replica, slot, every_ms).await
    {
        return;
    }
    let digest = json!({ "job": "digest", "slot": slot });
    if !takes.is_zero() {
        sink.deliver("/digest-begun", &digest).await;
        tokio::time::sleep(takes).await;
    }
    sink.deliver("/digest", &digest).await;
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

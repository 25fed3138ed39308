//! Receipts for orders: `POST /orders` accepts an order, a worker takes one at a time,
//! works on it and delivers its receipt.
//!
//! In process (misconfigured), as a .NET BackgroundService reading a `Channel<T>` or Rails'
//! `:async` adapter: the queue is the process's memory and the worker stops at SIGTERM, so
//! what is queued or in hand is dropped though each was answered 202.
//! In Redis (correct): the queue outlives every process. Each replica claims one order at a
//! time into a list of its own, removes it once delivered, finishes the one in hand at
//! SIGTERM and leaves the rest to the others; at start it hands back what a previous
//! incarnation of itself died holding.

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Stopping;
use super::sink::Sink;

const QUEUE: &str = "replicheck-demo:orders";
/// How long an idle worker waits before looking at the queue again.
const POLL: Duration = Duration::from_millis(100);
/// How long a worker waits after Redis failed it, so an outage is not logged in a flood.
const BACKOFF: Duration = Duration::from_secs(1);

/// Where `POST /orders` puts an order.
pub enum Orders {
    InProcess(mpsc::UnboundedSender<String>),
    Redis(ConnectionManager),
}

impl Orders {
    /// Queues an order; an error means it was not accepted.
    pub async fn accept(&self, order: &str) -> Result<(), String> {
        match self {
            Orders::InProcess(queue) => {
                // A channel whose reader has stopped still takes writes in the frameworks
                // this models: the order is accepted, and lost.
                if queue.send(order.to_owned()).is_err() {
                    eprintln!("order {order} accepted after the worker stopped: lost");
                }
                Ok(())
            }
            Orders::Redis(redis) => {
                // Not retried: a push whose answer was lost may have happened.
                let mut conn = redis.clone();
                redis::cmd("LPUSH").arg(QUEUE).arg(order).query_async::<i64>(&mut conn).await.map(drop).map_err(|e| e.to_string())
            }
        }
    }
}

/// Takes one order, says it has begun (the start marker of a long job), spends `work` on
/// it and delivers its receipt.
async fn fulfil(sink: &Sink, work: Duration, order: &str) {
    sink.deliver("/orders/begun", &json!({ "order": order })).await;
    tokio::time::sleep(work).await;
    sink.deliver("/receipts", &json!({ "order": order })).await;
}

/// The misconfigured queue: a channel in this process and a worker that stops at SIGTERM.
pub fn in_process(sink: Sink, work: Duration, mut stopping: Stopping) -> (Orders, JoinHandle<()>) {
    let (queue, mut orders) = mpsc::unbounded_channel::<String>();
    let worker = tokio::spawn(async move {
        loop {
            let order = tokio::select! {
                biased;
                () = stopping.wait() => break,
                order = orders.recv() => match order {
                    Some(order) => order,
                    None => return,
                },
            };
            tokio::select! {
                biased;
                // The stopping token cancels the work in hand, as it does an awaited call.
                () = stopping.wait() => {
                    eprintln!("SIGTERM: order {order} dropped in hand");
                    break;
                }
                () = fulfil(&sink, work, &order) => {}
            }
        }
        eprintln!("SIGTERM: the order worker stopped, dropping {} queued order(s)", orders.len());
    });
    (Orders::InProcess(queue), worker)
}

/// The correct queue: a list in Redis that each replica's worker claims from.
pub fn in_redis(redis: ConnectionManager, replica: &str, sink: Sink, work: Duration, mut stopping: Stopping) -> (Orders, JoinHandle<()>) {
    let claimed = format!("{QUEUE}:claimed:{replica}");
    let mut conn = redis.clone();
    let worker = tokio::spawn(async move {
        hand_back(&mut conn, &claimed).await;
        while !stopping.is_set() {
            let pause = match claim(&mut conn, &claimed).await {
                Ok(Some(order)) => {
                    // Finished even after SIGTERM: the shutdown grace is for this.
                    fulfil(&sink, work, &order).await;
                    let done = redis::cmd("LREM").arg(&claimed).arg(1).arg(&order).query_async::<i64>(&mut conn).await;
                    if let Err(err) = done {
                        eprintln!("order {order} delivered, but not removed from {claimed}: {err}");
                    }
                    continue;
                }
                Ok(None) => POLL,
                Err(err) => {
                    eprintln!("cannot take an order from {QUEUE}: {err}");
                    BACKOFF
                }
            };
            tokio::select! {
                biased;
                () = stopping.wait() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    });
    (Orders::Redis(redis), worker)
}

/// Moves the oldest queued order into this replica's own list, where it stays until delivered.
async fn claim(conn: &mut ConnectionManager, claimed: &str) -> redis::RedisResult<Option<String>> {
    redis::cmd("LMOVE").arg(QUEUE).arg(claimed).arg("RIGHT").arg("LEFT").query_async(conn).await
}

/// Returns to the queue what a previous incarnation of this replica claimed and died holding,
/// at the end that is taken next.
async fn hand_back(conn: &mut ConnectionManager, claimed: &str) {
    let mut returned = 0;
    loop {
        let moved = redis::cmd("LMOVE").arg(claimed).arg(QUEUE).arg("RIGHT").arg("RIGHT").query_async::<Option<String>>(conn).await;
        match moved {
            Ok(Some(_)) => returned += 1,
            Ok(None) => break,
            Err(err) => {
                eprintln!("cannot hand back the orders in {claimed}: {err}");
                break;
            }
        }
    }
    if returned > 0 {
        println!("handed back {returned} order(s) a previous incarnation had claimed");
    }
}

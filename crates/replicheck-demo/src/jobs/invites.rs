//! Invites through an outbox: `POST /invites` writes a row into a hash in Redis, and every
//! replica's poller scans it on a schedule and sends each row. Unclaimed (misconfigured),
//! each poller sends what it read and deletes it afterwards, so pollers that scan at once
//! all send it; claimed (correct), a poller deletes a row first and sends it only if the
//! delete was its own. A row's id starts with the time it was written, and a scan takes the
//! rows written before its scheduled instant, so pollers scanning together read the same rows.

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::json;
use tokio::task::JoinHandle;

use super::clock::{after, next_slot, unix_ms, until_slot};
use super::sink::Sink;
use super::{InvitesMode, Stopping};

const OUTBOX: &str = "replicheck-demo:outbox";
/// The pollers scan at each multiple of this of wall-clock time: together, as scheduled
/// pollers do.
const SCAN_EVERY_MS: u64 = 500;
/// An invite is rendered before it is sent, as a mail template is. It also makes each
/// unclaimed poller's reading outlast the gap between the pollers' timers, so they duplicate
/// every row, not by luck.
const RENDER: Duration = Duration::from_millis(100);

/// Where `POST /invites` writes an invite.
pub struct Outbox(ConnectionManager);

impl Outbox {
    /// Writes a row under a random id that sorts by time; an error means it was not accepted.
    pub async fn accept(&self, invite: &str) -> Result<(), String> {
        let id = row_id(unix_ms(), rand::random());
        crate::store::redis_retrying::<i64>(&self.0, redis::cmd("HSET").arg(OUTBOX).arg(id).arg(invite)).await.map(drop)
    }
}

/// The outbox and this replica's poller, which stops scanning at SIGTERM.
pub fn poll(redis: ConnectionManager, mode: InvitesMode, sink: Sink, mut stopping: Stopping) -> (Outbox, JoinHandle<()>) {
    let mut conn = redis.clone();
    let poller = tokio::spawn(async move {
        let mut slot = next_slot(unix_ms(), SCAN_EVERY_MS);
        loop {
            tokio::select! {
                biased;
                () = stopping.wait() => return,
                () = tokio::time::sleep(until_slot(slot, SCAN_EVERY_MS, unix_ms())) => {}
            }
            scan(&mut conn, mode, &sink, &stopping, slot.saturating_mul(SCAN_EVERY_MS)).await;
            slot = after(slot, unix_ms(), SCAN_EVERY_MS);
        }
    });
    (Outbox(redis), poller)
}

/// Sends, oldest first and as `mode` says, the rows written before `cutoff_ms`; a row being
/// sent at SIGTERM is finished, the rest are left to the other replicas.
async fn scan(conn: &mut ConnectionManager, mode: InvitesMode, sink: &Sink, stopping: &Stopping, cutoff_ms: u64) {
    let mut rows = match redis::cmd("HGETALL").arg(OUTBOX).query_async::<Vec<(String, String)>>(conn).await {
        Ok(rows) => rows,
        Err(err) => {
            eprintln!("cannot read the outbox {OUTBOX}: {err}");
            return;
        }
    };
    rows.retain(|(id, _)| written_before(id, cutoff_ms));
    rows.sort();
    for (id, invite) in rows {
        if stopping.is_set() {
            return;
        }
        match mode {
            InvitesMode::Unclaimed => {
                send(sink, &invite).await;
                // Deleted once sent, but never claimed: another poller read it too.
                if let Err(err) = delete(conn, &id).await {
                    eprintln!("invite {invite} sent, but not removed from the outbox: {err}");
                }
            }
            InvitesMode::Claimed => match delete(conn, &id).await {
                Ok(1) => send(sink, &invite).await,
                // Another replica claimed it first.
                Ok(_) => {}
                Err(err) => eprintln!("cannot claim invite {invite}: {err}"),
            },
        }
    }
}

async fn send(sink: &Sink, invite: &str) {
    tokio::time::sleep(RENDER).await;
    sink.deliver("/invites", &json!({ "invite": invite })).await;
}

/// Not retried: a delete whose answer was lost may have been this replica's claim.
async fn delete(conn: &mut ConnectionManager, id: &str) -> redis::RedisResult<i64> {
    redis::cmd("HDEL").arg(OUTBOX).arg(id).query_async(conn).await
}

/// A row's id: the time it was written, padded so that ids sort by it, then a random part.
fn row_id(written_ms: u64, random: u64) -> String {
    format!("{written_ms:013}-{random:016x}")
}

/// Whether the row `id` names was written before `cutoff_ms`; a row whose id carries no time
/// (written by hand, say) is always due.
fn written_before(id: &str, cutoff_ms: u64) -> bool {
    id.split_once('-').and_then(|(ms, _)| ms.parse::<u64>().ok()).is_none_or(|written| written < cutoff_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_takes_the_rows_written_before_its_instant() {
        assert!(written_before("1765000000499-00000000000000ff", 1_765_000_000_500));
        // Written as the scan began: both pollers leave it for the next one.
        assert!(!written_before("1765000000500-00000000000000ff", 1_765_000_000_500));
        assert!(!written_before("1765000000731-00000000000000ff", 1_765_000_000_500));
        assert!(written_before("by-hand", 1_765_000_000_500));
        assert!(written_before("", 0));
    }

    #[test]
    fn ids_sort_by_the_time_they_were_written() {
        assert!(row_id(999_999_999_999, u64::MAX) < row_id(1_000_000_000_000, 0));
        assert!(row_id(1_765_000_000_499, u64::MAX) < row_id(1_765_000_000_500, 0));
        assert!(written_before(&row_id(1_765_000_000_499, 7), 1_765_000_000_500));
    }
}

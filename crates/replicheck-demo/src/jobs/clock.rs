//! Wall-clock slots: the schedules fire at each multiple of their period of Unix time, as
//! cron does, so that every replica fires at the same instant and names the occurrence alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The first slot that starts after `now_ms`: slot `n` starts at `n * every_ms`.
pub fn next_slot(now_ms: u64, every_ms: u64) -> u64 {
    now_ms / every_ms.max(1) + 1
}

/// How long from `now_ms` until `slot` starts (zero once it has).
pub fn until_slot(slot: u64, every_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(slot.saturating_mul(every_ms).saturating_sub(now_ms))
}

/// The slot to wait for after firing `fired`: the next one to start, skipping those missed
/// while busy, and never `fired` again, even when the wall clock has stepped back.
pub fn after(fired: u64, now_ms: u64, every_ms: u64) -> u64 {
    next_slot(now_ms, every_ms).max(fired + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_slot_starts_after_now() {
        assert_eq!(next_slot(0, 1000), 1);
        assert_eq!(next_slot(1999, 1000), 2);
        // At a boundary that slot is starting now: the timer that woke for it has fired it.
        assert_eq!(next_slot(2000, 1000), 3);
        assert_eq!(next_slot(1_765_000_000_250, 500), 3_530_000_001);
    }

    #[test]
    fn replicas_started_apart_wait_for_the_same_instant() {
        let (early, late) = (10_020, 10_730);
        let (a, b) = (next_slot(early, 1000), next_slot(late, 1000));
        assert_eq!(a, b);
        assert_eq!(Duration::from_millis(early) + until_slot(a, 1000, early), Duration::from_millis(11_000));
        assert_eq!(Duration::from_millis(late) + until_slot(b, 1000, late), Duration::from_millis(11_000));
    }

    #[test]
    fn a_slot_already_started_is_due_now() {
        assert_eq!(until_slot(3, 1000, 2999), Duration::from_millis(1));
        assert_eq!(until_slot(3, 1000, 3000), Duration::ZERO);
        assert_eq!(until_slot(3, 1000, 3500), Duration::ZERO);
        assert_eq!(until_slot(u64::MAX, 1000, 0), Duration::from_millis(u64::MAX));
    }

    #[test]
    fn after_firing_a_slot_the_schedule_moves_on() {
        // Woken at the boundary, or late within the slot: the next one.
        assert_eq!(after(5, 5000, 1000), 6);
        assert_eq!(after(5, 5900, 1000), 6);
        // Busy past several boundaries: those are skipped, not fired late in a burst.
        assert_eq!(after(5, 8400, 1000), 9);
        // The wall clock stepped back into an earlier slot: slot 5 is not fired twice.
        assert_eq!(after(5, 3200, 1000), 6);
    }
}

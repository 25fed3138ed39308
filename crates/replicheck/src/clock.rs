//! Deadlines from waits a user chose (a target file's timeouts, `--time`): `Instant +
//! Duration` panics when the sum overflows, so such a wait is added here, where it
//! saturates at a far future instead.

use std::time::Duration;

use tokio::time::Instant;

/// About thirty years: later than any run ends, yet far from any instant's limit.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `from + wait`, or a far future when that sum does not fit an instant.
pub fn after(from: Instant, wait: Duration) -> Instant {
    from.checked_add(wait).or_else(|| from.checked_add(FAR)).unwrap_or(from)
}

/// `wait` from now, as [`after`] adds it.
pub fn deadline(wait: Duration) -> Instant {
    after(Instant::now(), wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_too_long_for_an_instant_ends_far_away_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        assert!(after(now, Duration::MAX) >= now + FAR);
        assert!(deadline(Duration::from_secs(u64::MAX)) > now);
    }
}

//! Asking a run to stop early (Ctrl-C, SIGTERM): it stops what it is doing, stops the
//! replicas, judges what it recorded, and marks its report incomplete. Whoever owns the
//! signals holds the `Interrupter`; the run polls its `Interrupt` between and during
//! phases.

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The run's side: whether, and why, it was asked to stop.
#[derive(Debug, Clone)]
pub struct Interrupt(watch::Receiver<Option<&'static str>>);

/// The asking side.
#[derive(Debug)]
pub struct Interrupter(watch::Sender<Option<&'static str>>);

pub fn channel() -> (Interrupter, Interrupt) {
    let (sender, receiver) = watch::channel(None);
    (Interrupter(sender), Interrupt(receiver))
}

impl Interrupter {
    /// Asks the run to stop, saying why (`SIGINT`).
    pub fn interrupt(&self, why: &'static str) {
        self.0.send_replace(Some(why));
    }
}

impl Interrupt {
    /// One that never fires (tests, embedded runs that are dropped to stop them).
    pub fn never() -> Self {
        channel().1
    }

    /// Why the run was asked to stop, if it was.
    pub fn reason(&self) -> Option<&'static str> {
        *self.0.borrow()
    }

    /// Completes once the run is asked to stop; never, if nobody can ask any more.
    pub async fn wait(&mut self) -> &'static str {
        loop {
            if let Some(why) = *self.0.borrow_and_update() {
                return why;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Why a run's report is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    /// `SIGINT` or `SIGTERM`.
    pub signal: String,
    /// The phase it stopped: `the virtual users`, `the chaos experiments`.
    pub during: String,
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {} during {}: what had not run is not tested", self.signal, self.during)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_interrupt_is_seen_by_every_copy_and_never_fires_without_one() {
        let (interrupter, mut interrupt) = channel();
        let copy = interrupt.clone();
        assert_eq!(copy.reason(), None);
        interrupter.interrupt("SIGINT");
        assert_eq!(interrupt.wait().await, "SIGINT");
        assert_eq!(copy.reason(), Some("SIGINT"));
        let mut never = Interrupt::never();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), never.wait()).await;
        assert!(waited.is_err());
    }
}

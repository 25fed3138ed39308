//! What a run's report amounts to: the one answer a CI job or a test acts on, and the
//! assertion that fails a test with the run's outcome as its message.

use crate::check::ScenarioStatus;
use crate::report::{Report, text};

/// What a run proved. The command line maps it onto its exit status (0, 1, 3, 130/143).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Everything selected ran, and the replicas behaved as one service.
    Consistent,
    /// At least one finding the policy does not accept.
    Findings,
    /// Nothing proven either way: the replicas did not start, a replica exited by itself, a check errored or its
    /// baseline failed, or (strictly judged) something selected did not run in full.
    Untested,
    /// Stopped by this signal, after what ran so far was judged.
    Interrupted { signal: String },
}

impl Verdict {
    /// The report's verdict. `strict`: a check that could not exercise everything it was
    /// asked to (`not tested` in the report) makes the run `Untested`.
    ///
    /// A signal wins, as shells expect of a stopped command; then a replica that died under
    /// the run, since what it touched could not be tested; then findings, whatever else
    /// could not be tested.
    pub fn of(report: &Report, strict: bool) -> Verdict {
        if let Some(interrupted) = &report.interrupted {
            return Verdict::Interrupted { signal: interrupted.signal.clone() };
        }
        if !report.exits.is_empty() || report.error.is_some() {
            return Verdict::Untested;
        }
        let unsound = report.scenarios.iter().any(|s| matches!(s.status, ScenarioStatus::Error | ScenarioStatus::BaselineFailed));
        let partial = !report.scenarios.iter().all(|s| s.fully_tested());
        if report.findings.iter().any(|f| f.accepted.is_none()) {
            Verdict::Findings
        } else if unsound || (strict && partial) {
            Verdict::Untested
        } else {
            Verdict::Consistent
        }
    }
}

impl Report {
    /// The verdict, judged as `replicheck run` judges without `--strict`.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(self, false)
    }

    /// Panics unless the run proved the replicas consistent; the message is the run's
    /// outcome as the terminal shows it: what was not tested, the probable causes, the
    /// findings and each one's evidence.
    #[track_caller]
    pub fn assert_consistent(&self) {
        let verdict = self.verdict();
        if verdict != Verdict::Consistent {
            panic!("replicheck: {verdict:?}, not consistent{}", text::outcome(self));
        }
    }
}

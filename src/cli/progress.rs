//! Progress while a run goes: a spinner with the current phase on a terminal, plain lines
//! in CI logs (stderr is not a terminal there).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use replicheck::progress::{Observer, Progress};

/// The observer that fits where stderr goes.
pub fn observer() -> Box<dyn Observer> {
    if std::io::stderr().is_terminal() { Box::new(Spinner::new()) } else { Box::new(PlainProgress) }
}

/// One line per event, for logs.
pub struct PlainProgress;

impl Observer for PlainProgress {
    fn progress(&self, event: Progress) {
        // Every try of a shrink would flood a log; the smallest schedule found is printed.
        if matches!(event, Progress::Shrinking { .. }) {
            return;
        }
        // A closed stderr must not stop the run.
        let _ = writeln!(std::io::stderr(), "{}", line(&event));
    }
}

/// A spinner that shows what the run is doing now; events worth keeping are printed above.
struct Spinner {
    bar: ProgressBar,
}

impl Spinner {
    fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("  {spinner} {msg} ({elapsed})").unwrap_or_else(|_| ProgressStyle::default_spinner()));
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }
}

impl Observer for Spinner {
    fn progress(&self, event: Progress) {
        let text = line(&event);
        match event {
            Progress::CheckStarted { .. } | Progress::CheckRepeated { .. } | Progress::VirtualUsersStarted { .. } | Progress::ControlsStarted { .. }
            | Progress::ExploreCase { .. }
            | Progress::Shrinking { .. }
            | Progress::Stopping => {
                self.bar.set_message(text.trim().to_owned());
            }
            _ => self.bar.println(text),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn line(event: &Progress) -> String {
    match event {
        Progress::DependencyReady { name, url } => format!("  {name} ready at {url}"),
        Progress::ReplicaReady { replica, addr, took } => format!("  {replica} ready at {addr} ({:.2}s)", took.as_secs_f64()),
        Progress::BalancerListening { url } => format!("  balancer at {url}"),
        Progress::NotServing { replica, page } => format!("  warning: {replica} says ready but does not serve GET {page}; starting anyway"),
        Progress::ScenarioSkipped { scenario, reason } => format!("  skipping {scenario}: {reason}"),
        Progress::VirtualUsersStarted { users, scenarios } => format!("  {users} virtual users running {scenarios} scenarios"),
        Progress::VirtualUsersFinished { users, requests, took } => {
            format!("  {users} virtual users done: {requests} requests, {:.1}s", took.as_secs_f64())
        }
        Progress::ControlsStarted { candidates } => format!("  {candidates} cross-replica failure(s): running controls and reproductions"),
        Progress::CheckStarted { name } => format!("  {name}"),
        Progress::CheckRepeated { name } => format!("  {name} again, to confirm what it showed"),
        Progress::CheckFinished { name, findings } => format!("  {name} done, {findings} finding(s)"),
        Progress::ExploreCase { case, cases, findings } => format!("  case {case} of {cases} ({findings} fault(s) so far)"),
        Progress::FaultFound { case, kind, scenario, step } => format!("  case {case}: {kind} in {scenario}, step `{step}`; shrinking its schedule"),
        Progress::Shrinking { tries, steps } => format!("  shrinking: {tries} tries, smallest so far {steps} step(s)"),
        Progress::Shrunk { schedule, outcome } => format!("    smallest schedule: {schedule}\n    {outcome}"),
        Progress::ReplicaExited { exit } => format!("  error: {}; it takes no more requests", exit.summary()),
        Progress::Stopping => "  stopping replicas".into(),
        Progress::InstancesSeen { names, missed } => {
            let names: Vec<String> = names.iter().enumerate().map(|(i, name)| format!("r{i} = {name}")).collect();
            let missed = match missed {
                0 => String::new(),
                n => format!("; {n} request(s) could not be landed on their planned instance and were checked where they landed"),
            };
            format!("  instances behind the load balancer: {}{missed}", names.join(", "))
        }
        // An event this command line does not know yet.
        other => format!("  {other:?}"),
    }
}

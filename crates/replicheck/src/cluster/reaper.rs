//! Leftovers of runs that could not clean up after themselves (the harness was SIGKILLed,
//! the machine lost power): processes and temporary directories. (Containers are found
//! by their labels instead: `backend::docker::reap`, given `live_runs`.)
//!
//! Each run writes a state file naming itself, its harness process and its directories,
//! and every process it starts carries the run's id in its environment. A state file
//! whose harness is gone marks a dead run: its processes (found by that environment
//! entry, so forked helpers are found too) are killed and its directories removed.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The environment entry that marks every process a run started.
pub const RUN_MARKER: &str = "REPLICHECK_RUN";

#[derive(Debug, Serialize, Deserialize)]
struct RunState {
    run_id: String,
    pid: u32,
    /// The harness's start time in clock ticks since boot, so a recycled pid is not
    /// mistaken for a live harness.
    started: u64,
    dirs: Vec<PathBuf>,
}

/// A live run's registration. Dropping it kills the run's remaining processes and
/// removes its state file; its directories are removed by their own owners.
#[derive(Debug)]
pub struct Registration {
    run_id: String,
    state_file: PathBuf,
}

/// What a reaping pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub runs: usize,
    pub processes: usize,
    pub dirs: usize,
}

fn state_dir() -> PathBuf {
    std::env::temp_dir().join("replicheck-runs")
}

impl Registration {
    pub fn register(run_id: &str, dirs: Vec<PathBuf>) -> std::io::Result<Self> {
        let dir = state_dir();
        std::fs::create_dir_all(&dir)?;
        let pid = std::process::id();
        let state = RunState {
            run_id: run_id.to_owned(),
            pid,
            started: start_time(pid).unwrap_or(0),
            dirs,
        };
        let state_file = dir.join(format!("{run_id}.json"));
        let tmp = dir.join(format!(".{run_id}.json.tmp"));
        std::fs::write(&tmp, serde_json::to_vec(&state).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &state_file)?;
        Ok(Self {
            run_id: run_id.to_owned(),
            state_file,
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        kill_marked(&self.run_id);
        let _ = std::fs::remove_file(&self.state_file);
    }
}

/// Cleans up after every run whose harness is gone.
pub fn reap_stale() -> Reaped {
    let mut reaped = Reaped::default();
    let Ok(entries) = std::fs::read_dir(state_dir()) else {
        return reaped;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let Some(state) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<RunState>(&b).ok()) else {
            // Unreadable state cannot name anything to clean; leave it for a person.
            continue;
        };
        if harness_alive(&state) {
            continue;
        }
        reaped.runs += 1;
        reaped.processes += kill_marked(&state.run_id);
        for dir in &state.dirs {
            if dir.exists() && std::fs::remove_dir_all(dir).is_ok() {
                reaped.dirs += 1;
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    reaped
}

/// Cleans up after one run, whatever its harness's state: its processes, and the
/// directories and state file its registration names (the watchdog's work).
pub fn reap_run(run_id: &str) -> Reaped {
    let mut reaped = Reaped {
        runs: 1,
        processes: kill_marked(run_id),
        dirs: 0,
    };
    let path = state_dir().join(format!("{run_id}.json"));
    if let Some(state) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<RunState>(&b).ok()) {
        for dir in &state.dirs {
            if dir.exists() && std::fs::remove_dir_all(dir).is_ok() {
                reaped.dirs += 1;
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    reaped
}

/// The ids of runs whose harness is alive, on this machine.
pub fn live_runs() -> std::collections::BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(state_dir()) else {
        return Default::default();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|ext| ext == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<RunState>(&bytes).ok())
        .filter(harness_alive)
        .map(|state| state.run_id)
        .collect()
}

fn harness_alive(state: &RunState) -> bool {
    alive(state.pid, state.started)
}

/// Whether process `pid` runs and is the one that started at `started` (not a recycled pid).
pub fn alive(pid: u32, started: u64) -> bool {
    start_time(pid).is_some_and(|now| now == started)
}

/// This process's pid and start time, as `alive` checks them.
pub fn this_harness() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or(0))
}

/// SIGKILLs every process whose environment carries `run_id`; returns how many.
pub fn kill_marked(run_id: &str) -> usize {
    let needle = format!("{RUN_MARKER}={run_id}");
    marked_processes(&needle)
        .into_iter()
        .filter(|pid| kill(Pid::from_raw(*pid as i32), Signal::SIGKILL).is_ok())
        .count()
}

/// Pids whose environment contains the entry `needle` (`NAME=value`).
pub fn marked_processes(needle: &str) -> Vec<u32> {
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| pid != own)
        .filter(|&pid| environ_has(&Path::new("/proc").join(pid.to_string()).join("environ"), needle))
        .collect()
}

fn environ_has(path: &Path, needle: &str) -> bool {
    // Processes of other users, and ones that exit meanwhile, cannot be read: not ours.
    std::fs::read(path).is_ok_and(|environ| environ.split(|b| *b == 0).any(|entry| entry == needle.as_bytes()))
}

/// A process's start time in clock ticks after boot (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let pid = std::process::id();
        let first = start_time(pid).unwrap();
        assert_eq!(start_time(pid), Some(first));
    }

    #[test]
    fn a_state_file_of_a_dead_harness_is_reaped_with_its_directories() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join("leftover");
        std::fs::create_dir(&leftover).unwrap();
        let run_id = format!("test-reap-{}", std::process::id());
        let state = RunState {
            run_id: run_id.clone(),
            pid: std::process::id(),
            // Our pid with another start time: a recycled pid, so the harness is gone.
            started: start_time(std::process::id()).unwrap() + 1,
            dirs: vec![leftover.clone()],
        };
        std::fs::create_dir_all(state_dir()).unwrap();
        let path = state_dir().join(format!("{run_id}.json"));
        std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
        // Another test's reaping, in another process, may get to it first: what counts is
        // that it is gone.
        reap_stale();
        assert!(!leftover.exists());
        assert!(!path.exists());
    }

    #[test]
    fn a_live_run_is_left_alone() {
        let run_id = format!("test-live-{}", std::process::id());
        let registration = Registration::register(&run_id, vec![]).unwrap();
        reap_stale();
        assert!(registration.state_file.exists());
        drop(registration);
        assert!(!state_dir().join(format!("{run_id}.json")).exists());
    }
}

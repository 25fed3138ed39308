//! Helpers for tests that drive the real `replicheck` binary against real replicas.
//!
//! Every run gets its own report directory and a unique tag in its environment; replicas
//! inherit the environment, so a test can find every process a run left behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use replicheck::report::Report;

pub const TAG_VAR: &str = "REPLICHECK_TEST_TAG";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_replicheck"))
}

/// A unique tag for one test's processes.
pub fn tag(name: &str) -> String {
    format!("{name}-{}-{:x}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// `replicheck ARGS` run from the project root, tagged.
pub fn command(tag: &str, args: &[&str]) -> Command {
    let mut command = Command::new(bin());
    command.args(args).current_dir(root()).env(TAG_VAR, tag).stdin(Stdio::null());
    command
}

pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: Option<Report>,
    pub report_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Finished {
    pub fn report(&self) -> &Report {
        self.report.as_ref().unwrap_or_else(|| panic!("no report.json; stderr:\n{}\nstdout:\n{}", self.stderr, self.stdout))
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.report().findings.iter().map(|f| f.kind.to_string()).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// How scenario or check `name` ended, if the report has it.
    pub fn status_of(&self, name: &str) -> Option<replicheck::check::ScenarioStatus> {
        self.report().scenarios.iter().find(|s| s.name == name).map(|s| s.status)
    }
}

/// `replicheck run TARGET ARGS --report-dir <temp>`, waited for, with its report read.
pub fn run(target: &str, args: &[&str]) -> Finished {
    let dir = tempfile::tempdir().expect("temp dir");
    let report_dir = dir.path().join("report");
    let tag = tag("run");
    let mut all = vec!["run", target, "--report-dir", report_dir.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let output = command(&tag, &all).output().expect("replicheck runs");
    let finished = finish(output, dir, report_dir);
    assert_no_leftovers(&tag);
    finished
}

pub fn finish(output: Output, dir: tempfile::TempDir, report_dir: PathBuf) -> Finished {
    let report = std::fs::read(report_dir.join("report.json")).ok().map(|bytes| serde_json::from_slice(&bytes).expect("report.json parses"));
    Finished {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        report,
        report_dir,
        _dir: dir,
    }
}

/// Pids of live processes whose environment carries the tag.
pub fn tagged(tag: &str) -> Vec<u32> {
    replicheck::cluster::reaper::marked_processes(&format!("{TAG_VAR}={tag}"))
        .into_iter()
        .filter(|pid| !is_zombie(*pid))
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rfind(')').map(|i| stat[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// Waits up to `within` for `condition`, polling.
pub fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

pub fn assert_no_leftovers(tag: &str) {
    let gone = wait_until(Duration::from_secs(5), || tagged(tag).is_empty());
    assert!(gone, "processes left behind by the run: {:?}", tagged(tag));
}

/// Spawns `replicheck ARGS` without waiting.
pub fn spawn(tag: &str, args: &[&str]) -> Child {
    command(tag, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("replicheck starts")
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

/// Whether a Docker engine answers. When none does, says so on stderr, so a skipped
/// docker test is visible in the test output.
pub fn docker_engine(test: &str) -> bool {
    let answered = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !answered {
        eprintln!("SKIPPED {test}: no Docker engine answers (`docker version` failed)");
    }
    answered
}

/// Builds `replicheck-demo:local` and `replicheck-redis:local` from the binary under test,
/// once per test binary (the engine's build cache makes a repeat cheap).
pub fn demo_images() {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let output = Command::new(root().join("examples/docker/build-images.sh"))
            .env("REPLICHECK_BIN", bin())
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    });
    if let Err(err) = built {
        panic!("examples/docker/build-images.sh failed:\n{err}");
    }
}

/// Containers, networks and volumes labelled with `run_id`, as `kind id` lines.
pub fn docker_leftovers(run_id: &str) -> Vec<String> {
    let filter = format!("label=replicheck={run_id}");
    let mut found = Vec::new();
    for (kind, list) in [("container", ["ps", "-aq"]), ("network", ["network", "ls"]), ("volume", ["volume", "ls"])] {
        let mut command = Command::new("docker");
        command.args(list).args(["--filter", &filter]);
        if kind != "container" {
            command.arg("-q");
        }
        let output = command.output().expect("docker lists");
        found.extend(String::from_utf8_lossy(&output.stdout).lines().map(|id| format!("{kind} {id}")));
    }
    found
}

/// The id of the run whose harness has `pid`, from the run's state file.
pub fn run_id_of_harness(pid: u32) -> Option<String> {
    let dir = std::env::temp_dir().join("replicheck-runs");
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
        (state["pid"].as_u64() == Some(u64::from(pid))).then(|| state["run_id"].as_str().map(str::to_owned)).flatten()
    })
}

/// Starts a docker run that stays busy for half a minute; returns it once its virtual
/// users run.
pub fn start_slow_docker_run(tag: &str, dir: &Path) -> SlowRun {
    demo_images();
    let demo = std::fs::read_to_string(root().join("examples/demo/fixed-docker.toml")).unwrap();
    let target = write(dir, "slow.toml", &format!("{demo}\n[limits]\nrequest_timeout = \"60s\"\n"));
    let scenario = write(dir, "wait.toml", "name = \"wait\"\n[[steps]]\nname = \"wait\"\nrequest = { url = \"/slow?ms=30000\" }\n");
    let report = dir.join("report");
    let mut child = spawn(
        tag,
        &["run", target.to_str().unwrap(), "--scenarios", scenario.to_str().unwrap(), "--report-dir", report.to_str().unwrap()],
    );
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn({
        let stderr = stderr.clone();
        move || {
            use std::io::Read;
            let mut chunk = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                stderr.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        }
    });
    // Users running is the run's middle: replicas and balancer up, nothing reported yet.
    // Containers alone are not: a replica may still be starting then.
    let mut run_id = None;
    let up = wait_until(Duration::from_secs(90), || {
        run_id = run_id.take().or_else(|| run_id_of_harness(child.id()));
        run_id.is_some() && String::from_utf8_lossy(&stderr.lock().unwrap()).contains("virtual users running")
    });
    if !up {
        // The run stops and removes what it started; its watchdog sees to the rest.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = child.wait();
    }
    let said = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
    assert!(up, "the run did not get going (run id {run_id:?}):\n{said}");
    std::thread::sleep(Duration::from_millis(500));
    SlowRun { child, run_id: run_id.unwrap(), stderr, reader }
}

/// A run in its users phase, its stderr collected as it goes.
pub struct SlowRun {
    pub child: Child,
    pub run_id: String,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl SlowRun {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for the run to exit; the output holds all it wrote to stderr.
    pub fn wait_with_output(self) -> Output {
        let mut output = self.child.wait_with_output().expect("the run exits");
        self.reader.join().expect("the stderr reader ends with the run");
        output.stderr = std::mem::take(&mut *self.stderr.lock().unwrap());
        output
    }
}

/// `run`, after the demo images are built; checks the engine is left clean.
pub fn run_docker(target: &str, args: &[&str]) -> Finished {
    demo_images();
    let finished = run(target, args);
    let run_id = &finished.report().run_id;
    let left = docker_leftovers(run_id);
    assert!(left.is_empty(), "left on the engine by {run_id}: {left:?}");
    finished
}

/// A run stopped by `signal` exits as shells expect (130, 143) and leaves the report of
/// what it did, marked incomplete in every format.
pub fn assert_interrupted(output: &Output, signal: nix::sys::signal::Signal, report_dir: &Path) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = if signal == nix::sys::signal::Signal::SIGTERM { 143 } else { 130 };
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    let bytes = std::fs::read(report_dir.join("report.json")).unwrap_or_else(|e| panic!("no report after {signal}: {e}\n{stderr}"));
    let report: Report = serde_json::from_slice(&bytes).expect("report.json parses");
    let interrupted = report.interrupted.as_ref().expect("the report says it was interrupted");
    assert_eq!(interrupted.signal, signal.as_str());
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("incomplete: interrupted by {}", signal.as_str())));
    for (file, mark) in [("summary.md", "**incomplete**"), ("report.html", "<strong>incomplete</strong>"), ("junit.xml", "type=\"incomplete\"")] {
        let text = std::fs::read_to_string(report_dir.join(file)).unwrap_or_default();
        assert!(text.contains(mark), "{file} does not say the run is incomplete");
    }
}

//! What every command that runs a cluster shares, so that `run`, `explore` and `up` build
//! on one driver instead of reaching into each other: where the report goes and how a
//! command fails, binding scenarios to the target, starting the cluster with its balancer,
//! noticing replicas that exit by themselves, and making a verdict final.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::balancer::tls::RunCertificates;
use crate::balancer::{Balancer, BalancerConfig};
use crate::check::finding::Finding;
use crate::check::{self, ScenarioResult, Verdict};
use crate::cluster::{Cluster, ClusterError, ClusterSpec};
use crate::diagnose::{self, Diagnosis};
use crate::file::FileError;
use crate::history::ReplicaExit;
use crate::policy::{self, Policy, PolicyOutcome};
use crate::progress::{Observer, Progress};
use crate::redact::Secrets;
use crate::report::{self, Report};
use crate::scenario::{Scenario, ScenarioFile};
pub use crate::shell::shell_word;
use crate::target::{Preset, Target};
use crate::vocab::replica::Incarnation;


/// Where the report goes.
#[derive(Debug, Clone)]
pub enum ReportDir {
    /// A new directory named after the run, under this one (`reports/`).
    Under(PathBuf),
    /// Exactly this directory.
    At(PathBuf),
}

impl ReportDir {
    /// Exactly `dir` if one is given, else a new directory under `reports/`.
    pub fn at_or_default(dir: Option<PathBuf>) -> ReportDir {
        dir.map_or_else(|| ReportDir::Under(PathBuf::from("reports")), ReportDir::At)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] FileError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cannot start the balancer: {0}")]
    Balancer(std::io::Error),
    #[error("cannot write the report in {}: {source}", dir.display())]
    Report { dir: PathBuf, source: std::io::Error },
    #[error("interrupted by {0} before the replicas were up; nothing ran")]
    Interrupted(&'static str),
    #[error("the request budget of {0} (--max-requests) ran out before the run ended; its findings would rest on refused requests, so none are reported")]
    BudgetSpent(u64),
    /// The replicas or the balancer did not start. The report of the run that could not
    /// ask anything is made all the same (`outcome`, with the failure as its error), so CI
    /// has a JUnit file and a summary to show.
    #[error("{source}")]
    NotStarted { source: Box<RunError>, outcome: Box<RunOutcome> },
}

#[derive(Debug)]
#[non_exhaustive]
pub struct RunOutcome {
    pub report: Report,
    pub report_dir: PathBuf,
}

impl RunOutcome {
    /// Writes the report files (`report.json`, `junit.xml`, `summary.md`, `report.html`)
    /// beside the plan and logs in the run's directory.
    pub fn write_report(&self) -> std::io::Result<Vec<PathBuf>> {
        report::write(&self.report, &self.report_dir, &report::Format::ALL)
    }
}

/// Every scenario in report order, with the reason for each one skipped.
pub(crate) type ScenarioRoster = Vec<(String, Option<String>)>;

/// Binds each scenario file to the target: the scenarios that can run, and the roster,
/// each one skipped told to the observer with the reason.
pub(crate) fn bind_scenarios(files: &[ScenarioFile], target: &Target, observer: &dyn Observer) -> Result<(Vec<Scenario>, ScenarioRoster), RunError> {
    let mut bound = Vec::new();
    let mut roster = Vec::new();
    for file in files {
        match file.bind(target)? {
            Ok(scenario) => {
                roster.push((scenario.name.clone(), None));
                bound.push(scenario);
            }
            Err(skip) => {
                observer.progress(Progress::ScenarioSkipped {
                    scenario: file.name().to_owned(),
                    reason: skip.reason.clone(),
                });
                roster.push((file.name().to_owned(), Some(skip.reason)));
            }
        }
    }
    Ok((bound, roster))
}

/// The verdict made final: one finding per fault, numbered, grouped into probable causes,
/// and marked where the team's policy accepts it.
pub(crate) fn conclude(verdict: Verdict, preset: Preset, policy: Option<&Policy>) -> (Vec<ScenarioResult>, Vec<Finding>, Vec<Diagnosis>, Option<PolicyOutcome>) {
    let mut findings = check::merge::merge(verdict.findings);
    for (index, finding) in findings.iter_mut().enumerate() {
        finding.id = format!("F{}", index + 1);
    }
    let mut diagnoses = diagnose::diagnose(&findings, preset);
    let policy = policy.map(|policy| policy::apply(policy, &mut findings, &mut diagnoses, &policy::today()));
    (verdict.scenarios, findings, diagnoses, policy)
}

/// Replicas that exited by themselves, or stopped answering, since the last look: each
/// taken out of routing at once and told, with the experiment they went `during`.
pub(crate) async fn notice_exits(cluster: &mut Cluster, balancer: &Balancer, origin: Instant, observer: &dyn Observer, during: Option<&str>) -> Vec<ReplicaExit> {
    let mut exits = Vec::new();
    let now_ms = origin.elapsed().as_secs_f64() * 1000.0;
    let exited = cluster.unexpected_exits().await.into_iter().map(|(replica, how)| (replica, how, None));
    let silent = silent_replicas(cluster, balancer).into_iter().map(|(replica, how, quiet)| (replica, how, Some(quiet)));
    for (replica, how, quiet) in exited.chain(silent) {
        balancer.upstreams().remove(replica);
        let exit = ReplicaExit {
            replica,
            // A silent one stopped when its silence began.
            at_ms: now_ms - quiet.map_or(0.0, |q| q.as_secs_f64() * 1000.0),
            how,
            silent: quiet.is_some(),
            during: during.map(str::to_owned),
        };
        observer.progress(Progress::ReplicaExited { exit: exit.clone() });
        exits.push(exit);
    }
    exits
}

/// How long a replica must answer nothing at all (not its readiness probes every
/// interval, not a request) to count as stopped, at the least: as a platform's probes
/// would give up on it, and far beyond one slow answer on a busy machine.
const SILENT_FOR: Duration = Duration::from_secs(10);
/// Probes and requests that must go unanswered in that time.
const SILENT_TRIES: u32 = 3;

/// Current incarnations that answered nothing for long enough while running, each told
/// once as stopped, with how long they have been silent.
fn silent_replicas(cluster: &mut Cluster, balancer: &Balancer) -> Vec<(Incarnation, String, Duration)> {
    let upstreams = balancer.upstreams();
    let mut silent = Vec::new();
    for endpoint in cluster.endpoints() {
        let Some((quiet, tries)) = upstreams.incarnation(endpoint.replica).and_then(|u| u.silent()) else { continue };
        if quiet >= SILENT_FOR && tries >= SILENT_TRIES && cluster.tell(endpoint.replica) {
            silent.push((
                endpoint.replica,
                format!("{tries} probes and requests got no answer in {:.1}s, though it still runs", quiet.as_secs_f64()),
                quiet,
            ));
        }
    }
    silent
}

/// Whether the balancer terminates TLS: a run's users speak https to it, as browsers do to
/// a TLS-terminating proxy; `up` is a plain local balancer for people and their tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    Https,
    Http,
}

/// Starts the cluster, then the balancer in front of it, and waits (a bounded while) until
/// every replica serves a page.
pub(crate) async fn start_service(spec: ClusterSpec, edge: Edge, observer: &dyn Observer) -> Result<(Cluster, Balancer), RunError> {
    let target = spec.target.clone();
    let cluster = Cluster::start(spec, observer).await?;
    // Instances that run elsewhere are taken in and out by their own platform; probing
    // them would also spend the rate limit and the request budget the users need.
    let probe_interval = if cluster.runs_outside() { Duration::ZERO } else { target.health.interval };
    let mut config = BalancerConfig {
        proxy_address: cluster.vantage().local.then_some(target.balancer.proxy_address),
        answer_within: Some(target.limits.request_timeout),
        ..BalancerConfig::local(&target.health.ready.0, probe_interval)
    };
    if edge == Edge::Https {
        let certificates = RunCertificates::generate(&[config.listen.ip()]).map_err(|e| RunError::Balancer(std::io::Error::other(e)))?;
        config.tls = Some(Arc::new(certificates));
    }
    let balancer = Balancer::start(config, &cluster.endpoints()).await.map_err(RunError::Balancer)?;
    observer.progress(Progress::BalancerListening { url: balancer.entrance().url("") });
    wait_until_serving(&cluster, &target, observer).await;
    Ok((cluster, balancer))
}

/// How long users wait for replicas that say ready to serve a page.
const WARM_UP_WAIT: Duration = Duration::from_secs(10);

/// Waits until every replica serves a real page (a bounded while): users start on warm
/// replicas even when readiness says ready too early (the chaos experiments report that).
async fn wait_until_serving(cluster: &Cluster, target: &Target, observer: &dyn Observer) {
    let client = crate::client::probe_client();
    let deadline = Instant::now() + WARM_UP_WAIT.min(target.start.ready_timeout);
    for endpoint in cluster.endpoints() {
        let url = format!("http://{}{}", endpoint.addr, target.chaos.page);
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().as_u16() < 500
            {
                break;
            }
            if Instant::now() >= deadline {
                observer.progress(Progress::NotServing {
                    replica: endpoint.replica,
                    page: target.chaos.page.0.clone(),
                });
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `20261124T231503Z-seed42-3f9a1c`: when, what (`seed42`, `up`), and a random tail that
/// keeps concurrent runs apart (the id marks everything a run starts).
pub(crate) fn run_id(what: &str) -> String {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(['-', ':'], "");
    format!("{stamp}-{what}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

pub(crate) fn create_report_dir(dir: &ReportDir, run_id: &str) -> Result<PathBuf, RunError> {
    let path = match dir {
        ReportDir::Under(root) => root.join(run_id),
        ReportDir::At(path) => path.clone(),
    };
    // A file where the directory should be is a mistake in the command line, said before
    // anything starts.
    if let Some(file) = path.ancestors().find(|p| p.is_file()) {
        return Err(RunError::Usage(format!("the report directory {}: {} is a file", path.display(), file.display())));
    }
    std::fs::create_dir_all(&path).map_err(|source| RunError::Report { dir: path.clone(), source })?;
    Ok(path)
}

pub(crate) fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> Result<(), RunError> {
    let error = |source| RunError::Report {
        dir: dir.to_owned(),
        source,
    };
    let json = serde_json::to_vec_pretty(value).map_err(|e| error(std::io::Error::other(e)))?;
    std::fs::write(dir.join(name), json).map_err(error)
}

/// Replica logs are the app's own output: scrub whatever secrets the run saw.
pub(crate) fn redact_logs(dir: &Path, secrets: &Secrets) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let logs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|ext| ext == "log")).collect();
    // A log we cannot rewrite stays as the app wrote it; the run's result stands.
    let _ = secrets.redact_files(&logs);
}

//! One run, phase by phase: bind scenarios to the target, plan from the seed, start the
//! cluster and the balancer, run the virtual users, gather evidence for candidates, run
//! the chaos experiments one by one, stop everything, and write the report.
//!
//! `ask` asks the users' cross-replica questions; `adapt` asks them again when one fault
//! (an app believing http behind the proxy) failed them on a single replica.
//!
//! While users and inspections run, the replicas are watched: one that exits or stops
//! answering by itself is taken out of routing and told. An interrupt ends the phase under
//! way; what ran before is recorded and judged, and the report says it is incomplete.
//!
//! The plan is written before anything starts and the users' history before checking, so
//! a run that dies still says what it did. Whatever is started is owned here and stopped
//! by `Cluster`'s drop if this future is dropped or fails; the run's watchdog removes it
//! if this process is killed.

mod adapt;
mod ask;
pub mod stored;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::vocab::routing::RoutingPolicy;
use crate::balancer::Balancer;
use crate::chaos::experiment::{self, Arena};
use crate::chaos::{self, ExperimentKind};
use crate::vocab::experiment::Experiment;
use crate::check::recorded::{self, AskRecord, Record, Roster, RunInfo};
use crate::check::twice::Assessment;
use crate::check;
use crate::cluster::backend::external::ExternalSpec;
use crate::cluster::{BackendKind, Cluster, ClusterError, ClusterSpec, Vantage};
use crate::history::{ExperimentRun, History, InspectionRun, Phase, ReplicaExit, Timing, VuRecord};
use crate::interrupt::{Interrupt, Interruption};
use crate::inspect::{self, InspectionKind, Inspector};
use crate::plan::{self, Plan};
use crate::policy::Policy;
use crate::progress::{Observer, Progress};
use crate::redact::Secrets;
use crate::report::Report;
use crate::scenario::{self, Scenario, ScenarioFile, SelectError};
use crate::target::Target;
use crate::vu::{self, Limits, VuContext};
use ask::Asking;

pub use crate::driver::{ReportDir, RunError, RunOutcome, shell_word};
use crate::driver::{Edge, bind_scenarios, create_report_dir, notice_exits, redact_logs, run_id, start_service, write_json};

/// Times a reproduction that proves nothing (see `check::blurred_reproductions`) runs again.
const BLURRED_RERUNS: u32 = 5;

/// Builds the command that reproduces a finding, from the seed and the names to pass to
/// `--scenarios`.
pub type Reproduce = Arc<dyn Fn(u64, &str) -> String + Send + Sync>;

#[non_exhaustive]
pub struct RunConfig {
    pub target: Target,
    pub scenarios: Vec<ScenarioFile>,
    /// Whether the scenarios run as users of their own; when only experiments were asked
    /// for, they are the experiments' workload and nothing more.
    pub run_scenarios: bool,
    pub experiments: Vec<ExperimentKind>,
    pub inspections: Vec<InspectionKind>,
    pub replicas: u16,
    pub seed: u64,
    pub routing: RoutingPolicy,
    /// Virtual users per scenario.
    pub vus: u32,
    /// Users looping scenarios during a rolling restart.
    pub load_vus: u32,
    /// Virtual users running at once, at most.
    pub concurrency: usize,
    pub report_dir: ReportDir,
    /// A replicheck binary, for `{replicheck}` in the target and the run's watchdog (see
    /// [`ClusterSpec::replicheck`](crate::cluster::ClusterSpec#structfield.replicheck)).
    pub replicheck: Option<PathBuf>,
    pub backend: BackendKind,
    /// The instances, for the external backend.
    pub external: Option<Arc<ExternalSpec>>,
    /// The command a finding's reproduce line shows; `None`: the `replicheck run` command
    /// line of this configuration.
    pub reproduce: Option<Reproduce>,
    /// What `--scenarios` said, recorded for `replay`.
    pub selection: Vec<String>,
    /// Known faults the team accepts for now.
    pub policy: Option<Policy>,
    /// Stops the run early, with a report of what it did.
    pub interrupt: Interrupt,
}

impl RunConfig {
    /// A run of `target` as `replicheck run TARGET` would make it: two local replicas (the
    /// process backend, or docker when the target names only an image), a fresh seed,
    /// random routing, 8 users per scenario, every built-in scenario, inspection and
    /// experiment, and the report under `reports/`. Change any field before running;
    /// [`RunConfig::select`] chooses the workload by name.
    pub fn new(target: Target) -> RunConfig {
        let backend = BackendKind::choose(None, &target.start).unwrap_or(BackendKind::Process);
        let all = Selection::everything();
        RunConfig {
            target,
            scenarios: all.scenarios,
            run_scenarios: all.run_scenarios,
            experiments: all.experiments,
            inspections: all.inspections,
            replicas: 2,
            seed: crate::plan::seed::fresh(),
            routing: RoutingPolicy::Random,
            vus: 8,
            load_vus: 16,
            concurrency: 64,
            report_dir: ReportDir::at_or_default(None),
            replicheck: None,
            backend,
            external: None,
            reproduce: None,
            selection: Vec::new(),
            policy: None,
            interrupt: Interrupt::never(),
        }
    }

    /// Chooses what runs by name, as `--scenarios` does: built-in scenario names, scenario
    /// files or directories, inspection and experiment names.
    pub fn select<S: AsRef<str>>(mut self, names: &[S]) -> Result<RunConfig, SelectError> {
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let selection = Selection::of(&names)?;
        self.scenarios = selection.scenarios;
        self.run_scenarios = selection.run_scenarios;
        self.inspections = selection.inspections;
        self.experiments = selection.experiments;
        self.selection = names;
        Ok(self)
    }

    /// Runs these scenarios (loaded with `ScenarioFile::load` or written in code with
    /// `ScenarioFile::from_source`) as the users' workload, in place of the selected ones;
    /// the selected inspections and experiments stay.
    pub fn scenarios(self, scenarios: Vec<ScenarioFile>) -> RunConfig {
        RunConfig { scenarios, run_scenarios: true, ..self }
    }

    pub fn replicas(self, replicas: u16) -> RunConfig {
        RunConfig { replicas, ..self }
    }

    pub fn seed(self, seed: u64) -> RunConfig {
        RunConfig { seed, ..self }
    }

    pub fn routing(self, routing: RoutingPolicy) -> RunConfig {
        RunConfig { routing, ..self }
    }

    /// Virtual users per scenario.
    pub fn vus(self, vus: u32) -> RunConfig {
        RunConfig { vus, ..self }
    }

    pub fn report_dir(self, report_dir: ReportDir) -> RunConfig {
        RunConfig { report_dir, ..self }
    }

    pub fn backend(self, backend: BackendKind) -> RunConfig {
        RunConfig { backend, ..self }
    }

    /// See [`RunConfig::replicheck`](#structfield.replicheck).
    pub fn replicheck(self, binary: impl Into<PathBuf>) -> RunConfig {
        RunConfig { replicheck: Some(binary.into()), ..self }
    }

    /// Instances that already run, for the external backend.
    pub fn external(self, instances: Arc<ExternalSpec>) -> RunConfig {
        RunConfig { backend: BackendKind::External, external: Some(instances), ..self }
    }

    /// The command a finding's reproduce line shows, from the seed and the names to pass
    /// to `--scenarios`.
    pub fn reproduce(self, reproduce: impl Fn(u64, &str) -> String + Send + Sync + 'static) -> RunConfig {
        RunConfig { reproduce: Some(Arc::new(reproduce)), ..self }
    }

    pub fn policy(self, policy: Policy) -> RunConfig {
        RunConfig { policy: Some(policy), ..self }
    }

    pub fn interrupt(self, interrupt: Interrupt) -> RunConfig {
        RunConfig { interrupt, ..self }
    }

    /// The command that runs `names` again with `seed`.
    fn reproduce_line(&self, seed: u64, names: &str) -> String {
        match &self.reproduce {
            Some(reproduce) => reproduce(seed, names),
            None => format!(
                "replicheck run {} --replicas {} --backend {} --seed {seed} --scenarios {}",
                shell_word(&self.target.path.display().to_string()),
                self.replicas,
                self.backend.name(),
                // The record's names placeholder, quoted where it is filled in.
                names
            ),
        }
    }
}

/// What a run runs: scenarios for its users, inspections, experiments.
pub struct Selection {
    pub scenarios: Vec<ScenarioFile>,
    /// Whether the scenarios run as users of their own (see [`RunConfig::run_scenarios`]).
    pub run_scenarios: bool,
    pub inspections: Vec<InspectionKind>,
    pub experiments: Vec<ExperimentKind>,
}

impl Selection {
    /// Every built-in scenario, inspection and experiment.
    pub fn everything() -> Selection {
        Selection {
            scenarios: scenario::builtin(),
            run_scenarios: true,
            inspections: InspectionKind::ALL.to_vec(),
            experiments: ExperimentKind::ALL.to_vec(),
        }
    }

    /// Names of inspections and experiments go to their phases, the rest to
    /// `scenario::select`. When only those are named, the built-in scenarios are the
    /// experiments' workload and run no users of their own. No names: everything.
    pub fn of(names: &[String]) -> Result<Selection, SelectError> {
        if names.is_empty() {
            return Ok(Selection::everything());
        }
        let inspections: Vec<InspectionKind> = names.iter().filter_map(|a| InspectionKind::from_name(a)).collect();
        let experiments: Vec<ExperimentKind> = names.iter().filter_map(|a| ExperimentKind::from_name(a)).collect();
        let rest: Vec<String> = names
            .iter()
            .filter(|a| InspectionKind::from_name(a).is_none() && ExperimentKind::from_name(a).is_none())
            .cloned()
            .collect();
        let run_scenarios = !rest.is_empty();
        let scenarios = if run_scenarios { scenario::select(&rest)? } else { scenario::builtin() };
        Ok(Selection { scenarios, run_scenarios, inspections, experiments })
    }
}

/// The scenarios bound to the target, and the run's roster: every scenario and experiment
/// in report order, with the reason for each one skipped.
pub(super) struct Bound {
    /// Scenarios the plan's users run.
    users: Vec<Scenario>,
    /// Scenarios experiments hand artifacts over with.
    workload: Vec<Scenario>,
    scenario_roster: Vec<(String, Option<String>)>,
    inspections: Vec<(InspectionKind, Option<String>)>,
    experiments: Vec<(Experiment, Option<String>)>,
}

/// What a run would do, without starting or sending anything (`--dry-run`).
pub fn plan_only(config: &RunConfig, observer: &dyn Observer) -> Result<Plan, RunError> {
    let bound = bind(config, observer)?;
    check_routing(config)?;
    Ok(plan_run(config, &bound))
}

fn check_routing(config: &RunConfig) -> Result<(), RunError> {
    match config.routing {
        RoutingPolicy::Pin(replica) if replica.0 >= config.replicas => {
            Err(RunError::Usage(format!("--routing pin:{replica} names a replica outside r0..r{}", config.replicas - 1)))
        }
        _ => Ok(()),
    }
}

pub async fn run(config: RunConfig, observer: &dyn Observer) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let bound = bind(&config, observer)?;
    check_routing(&config)?;
    if config.backend == BackendKind::Process {
        config.target.check_local_addresses()?;
    }
    let mut plan = plan_run(&config, &bound);
    let run_id = run_id(&format!("seed{}", config.seed));
    if config.backend == BackendKind::External {
        plan::salt(&mut plan, &format!("-{:04x}", rand::random::<u16>()));
    }
    let report_dir = create_report_dir(&config.report_dir, &run_id)?;
    write_json(&report_dir, stored::PLAN_FILE, &plan)?;

    let target = Arc::new(config.target.clone());
    let spec = ClusterSpec {
        target: target.clone(),
        replicas: config.replicas,
        run_id: run_id.clone(),
        logs_dir: report_dir.clone(),
        replicheck: config.replicheck.clone(),
        backend: config.backend,
        external: config.external.clone(),
    };
    let mut interrupt = config.interrupt.clone();
    let starting = Instant::now();
    let service = tokio::select! {
        service = start_service(spec, Edge::Https, observer) => Some(service),
        _ = interrupt.wait() => None,
    };
    let mut timings = vec![Timing::since("start", started, starting)];
    let mut start_failure = None;
    let mut asked = match service {
        // A template that does not render is the target's mistake, said as such.
        Some(Err(err @ RunError::Cluster(ClusterError::Template(_)))) => return Err(err),
        Some(Err(err)) => {
            start_failure = Some(err);
            Asked::nothing(&bound)
        }
        Some(Ok((cluster, balancer))) => {
            let run = Questions {
                config: &config,
                bound: &bound,
                plan: &plan,
                target: &target,
                report_dir: &report_dir,
                started,
                observer,
            };
            run.ask(cluster, balancer).await?
        }
        None => Asked::nothing(&bound),
    };
    timings.append(&mut asked.timings);
    let interrupted = interrupt.reason().map(|signal| Interruption {
        signal: signal.to_owned(),
        during: asked.during.to_owned(),
    });

    // Everything the run did is on disk before it is judged, once, from that record.
    let seed = config.seed;
    let info = RunInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        run_id,
        backend: config.backend.name().into(),
        target: target.name.clone(),
        target_file: target.path.display().to_string(),
        replicas: config.replicas,
        routing: config.routing,
        vus: config.vus,
        load_vus: config.load_vus,
        selection: config.selection.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        timings,
        error: start_failure.as_ref().map(|failure| not_started(failure, &target)),
    };
    let record = Record {
        seed,
        reproduce: config.reproduce_line(seed, recorded::NAMES),
        vantage: asked.vantage,
        public: asked.public,
        roster: Roster {
            scenarios: bound.scenario_roster.clone(),
            inspections: bound.inspections.clone(),
            experiments: bound.experiments.clone(),
        },
        users: asked.users,
        inspections: asked.inspections,
        trial: asked.trial,
        adapted: asked.adapted,
        experiments: asked.experiments,
        exits: asked.exits,
        interrupted,
        run: Some(info.clone()),
    };
    write_json(&report_dir, recorded::FILE_NAME, &record)?;
    let history = record.history();
    write_json(&report_dir, "history.json", &history)?;
    let scenarios = recorded::Scenarios {
        users: &bound.users,
        workload: &bound.workload,
    };
    let verdict = recorded::judge(&record, &scenarios, &target, &plan);
    let report = Report {
        duration_ms: started.elapsed().as_millis() as u64,
        ..stored::report(&record, &info, plan, &history)
    };
    let report = stored::with_verdict(report, verdict, target.preset, config.policy.as_ref());
    let outcome = RunOutcome { report, report_dir };
    match start_failure {
        Some(failure) => Err(RunError::NotStarted { outcome: Box::new(outcome), source: Box::new(failure) }),
        None => Ok(outcome),
    }
}

/// Why a run whose replicas did not start asked nothing, secrets out: every check it
/// would have run is an error for this reason.
fn not_started(failure: &RunError, target: &Target) -> String {
    let mut secrets = Secrets::default();
    for secret in target.secrets() {
        secrets.add(&secret);
    }
    secrets.redact(&format!("the replicas did not start: {}", crate::errors::chain(failure)))
}

/// What a run asks of the replicas, once they are up.
struct Questions<'a> {
    config: &'a RunConfig,
    bound: &'a Bound,
    plan: &'a Plan,
    target: &'a Arc<Target>,
    report_dir: &'a Path,
    started: Instant,
    observer: &'a dyn Observer,
}

/// What the questions came to, as the record keeps it.
struct Asked {
    vantage: Vantage,
    /// The balancer's authority.
    public: String,
    users: AskRecord,
    inspections: Vec<InspectionRun>,
    trial: Vec<(VuRecord, VuRecord)>,
    adapted: Option<AskRecord>,
    experiments: Vec<ExperimentRun>,
    exits: Vec<ReplicaExit>,
    /// The phase under way when the run ended (an interrupt names it).
    during: &'static str,
    timings: Vec<Timing>,
}

impl Asked {
    /// Interrupted before the replicas were up: nothing asked.
    fn nothing(bound: &Bound) -> Self {
        Self {
            vantage: Vantage {
                local: true,
                proxy: None,
                stranger: None,
            },
            public: String::new(),
            users: AskRecord {
                roster: bound.scenario_roster.clone(),
                ..AskRecord::default()
            },
            inspections: Vec::new(),
            trial: Vec::new(),
            adapted: None,
            experiments: Vec::new(),
            exits: Vec::new(),
            during: "the start of the replicas",
            timings: Vec::new(),
        }
    }
}

impl Questions<'_> {
    /// Asks every question of the plan, phase by phase, then stops the replicas. Each phase
    /// ends early when the run is interrupted; what it had done is then lost, and what the
    /// phases before it did is judged.
    async fn ask(&self, mut cluster: Cluster, balancer: Balancer) -> Result<Asked, RunError> {
        let (config, bound, plan, target, observer, started) = (self.config, self.bound, self.plan, self.target, self.observer, self.started);
        let vantage = cluster.vantage();
        let mut secrets = Secrets::default();
        for secret in target.secrets() {
            secrets.add(&secret);
        }
        for secret in config.external.iter().filter_map(|e| e.auth.as_ref()).flat_map(|auth| auth.secrets()) {
            secrets.add(&secret);
        }
        // The users' scenarios are among the workload's.
        let mut known = bound.workload.clone();
        known.extend(experiment::own_scenarios(target));
        let ctx = Arc::new(VuContext::new(
            balancer.entrance().clone(),
            target.balancer.client_address,
            &known,
            config.seed,
            started,
            Limits::from(target.limits),
            secrets.clone(),
        ));
        let seed = config.seed;
        let reproduce_for = |names: &str| config.reproduce_line(seed, names);
        let asking = Asking {
            concurrency: config.concurrency,
            seed,
            reproduce: &reproduce_for,
            observer,
        };
        let mut free_vu = plan::next_vu(plan);
        let inspector = Inspector {
            target,
            balancer: balancer.entrance().clone(),
            endpoints: cluster.endpoints(),
            strangers: cluster.stranger_endpoints(),
            vantage,
            telemetry: cluster.telemetry(),
            origin: started,
        };
        let mut interrupt = config.interrupt.clone();
        let mut watch = Watch {
            balancer: &balancer,
            origin: started,
            observer,
            exits: Vec::new(),
            interrupt: interrupt.clone(),
            timings: Vec::new(),
        };

        // Users: the plan, then controls and reproductions of whatever failed across replicas.
        let mut during = "the virtual users";
        observer.progress(Progress::VirtualUsersStarted {
            users: plan.vus.len(),
            scenarios: bound.users.len(),
        });
        let main = watch.phase("users", &mut cluster, vu::execute(&ctx, plan.vus.clone(), Phase::Main, config.concurrency)).await;
        let mut asked = None;
        if let Some(main) = main {
            observer.progress(Progress::VirtualUsersFinished {
                users: main.history.vus.len(),
                requests: main.history.requests(),
                took: started.elapsed(),
            });
            // The main phase, on disk at once; the whole history replaces it once the run is done.
            write_json(self.report_dir, "history.json", &main.history)?;
            secrets.extend(&main.secrets);
            during = "the controls of the users' failures";
            let asking = asking.ask(&ctx, &bound.users, &bound.scenario_roster, &plan.vus, main.history, &mut free_vu, &mut secrets);
            asked = watch.phase("controls", &mut cluster, asking).await;
        }
        // Inspections: what each replica says when asked directly.
        let mut inspections = None;
        if let Some(asked) = &asked {
            during = "the inspections";
            let inspecting = run_inspections(bound, &inspector, &asked.record.users, observer, seed, &reproduce_for);
            inspections = watch.phase("inspections", &mut cluster, inspecting).await;
        }
        // A fault that fails browsers on one replica must not hide the others behind it.
        let mut adaptation = None;
        if let (Some(asked), Some(inspections)) = (&asked, &inspections) {
            during = "the users adapted to the origin the app believes";
            let adapting = asking.adapt(&ctx, bound, plan, asked, inspections, &mut free_vu, &mut secrets);
            adaptation = watch.phase("adapted users", &mut cluster, adapting).await;
        }
        let exits = std::mem::take(&mut watch.exits);
        if !exits.is_empty() && interrupt.reason().is_none() {
            // The experiments start from a whole cluster; what the exit touched is judged later.
            cluster.heal().await?;
            balancer.upstreams().replace(&cluster.endpoints());
        }

        // Chaos: one experiment at a time, each run again when it shows something.
        let chaos_ctx = adaptation.as_ref().and_then(|a| a.ctx.clone()).unwrap_or_else(|| ctx.clone());
        let mut arena = Arena::new(&mut cluster, &balancer, &chaos_ctx, target, config.concurrency, free_vu);
        let mut experiments = Vec::new();
        let mut exits = exits;
        let mut timings = std::mem::take(&mut watch.timings);
        if adaptation.is_some() {
            during = "the chaos experiments";
            let done = run_experiments(plan, bound, &mut arena, observer, seed, &reproduce_for, &mut interrupt).await;
            experiments = done.runs;
            timings.extend(done.timings);
            exits.extend(done.exits);
        }
        secrets.extend(&arena.into_secrets());

        observer.progress(Progress::Stopping);
        let stopping = Instant::now();
        let public = balancer.addr().to_string();
        drop(balancer);
        let relays = cluster.relays().cloned();
        cluster.shutdown().await;
        // What SDKs flushed as their replicas stopped counts too: a replica that sent
        // nothing sent nothing over the whole run.
        if let (Some(exports), Some(runs)) = (&inspector.telemetry, &mut inspections) {
            let replicas: Vec<_> = inspector.endpoints.iter().map(|e| e.replica.id).collect();
            let whole = exports.seen(None, started, &replicas, &[]);
            for run in runs.iter_mut().filter(|r| r.exported.is_some()) {
                run.exported_in_run = Some(whole.clone());
            }
        }
        timings.push(Timing::since("stop", started, stopping));
        redact_logs(self.report_dir, &secrets);
        if let Some(relays) = &relays {
            if let Some(limit) = relays.budget_spent() {
                return Err(RunError::BudgetSpent(limit));
            }
            if let Some(attribution) = relays.attribution() {
                observer.progress(Progress::InstancesSeen {
                    names: attribution.names(),
                    missed: attribution.missed(),
                });
            }
        }
        Ok(Asked {
            vantage,
            public,
            users: asked.map(|a| a.record).unwrap_or_else(|| AskRecord {
                roster: bound.scenario_roster.clone(),
                ..AskRecord::default()
            }),
            inspections: inspections.unwrap_or_default(),
            trial: adaptation.as_ref().map(|a| a.trial.clone()).unwrap_or_default(),
            adapted: adaptation.and_then(|a| a.adapted),
            experiments,
            exits,
            during,
            timings,
        })
    }
}

/// Binds every scenario to the target and decides which experiments can run.
fn bind(config: &RunConfig, observer: &dyn Observer) -> Result<Bound, RunError> {
    let (bound, scenario_roster) = bind_scenarios(&config.scenarios, &config.target, observer)?;
    let skipped = |name: &str, reason: Option<String>| {
        if let Some(reason) = &reason {
            observer.progress(Progress::ScenarioSkipped {
                scenario: name.to_owned(),
                reason: reason.clone(),
            });
        }
        reason
    };
    let inspections: Vec<(InspectionKind, Option<String>)> = config.inspections.iter().map(|&kind| (kind, skipped(kind.name(), kind.skip_reason(&config.target, config.backend)))).collect();
    let experiments: Vec<(Experiment, Option<String>)> = config
        .experiments
        .iter()
        .filter(|&&kind| (kind.runs_by_default_on(config.backend) && kind.concerns(&config.target)) || config.selection.iter().any(|n| n == kind.name()))
        .flat_map(|&kind| of_kind(kind, config))
        .map(|experiment| {
            let kind = experiment.kind;
            let reason = config.external.as_ref().and_then(|external| external.skip_reason(kind));
            let reason = reason.or_else(|| kind.backend_skip_reason(config.backend));
            let reason = reason.or_else(|| {
                (matches!(kind, ExperimentKind::ScheduledJobs | ExperimentKind::TriggeredWork) && config.replicas < 2)
                    .then(|| "one replica: nothing to compare it alone with".to_owned())
                    .or_else(|| (kind == ExperimentKind::Broadcast && config.replicas < 2).then(|| "one replica: no other replica to publish through".to_owned()))
                    .or_else(|| (kind == ExperimentKind::Limits && config.replicas < 2).then(|| "one replica: no other replica to count tries".to_owned()))
            });
            let reason = reason.or_else(|| {
                (kind == ExperimentKind::RollingRestart && config.load_vus == 0)
                    .then(|| "--load-vus 0: no user loops through the rolling restart to meet a replica going".to_owned())
            });
            let undeclared = experiment.dependency.as_deref().filter(|name| !config.target.dependencies.names().contains(name));
            let reason = reason.or_else(|| undeclared.map(|name| format!("the target declares no dependency named {name}")));
            let reason = skipped(&experiment.to_string(), reason.or_else(|| kind.skip_reason(&config.target, &bound)));
            (experiment, reason)
        })
        .collect();
    let (users, roster) = if config.run_scenarios { (bound.clone(), scenario_roster) } else { (Vec::new(), Vec::new()) };
    let runs_something = !users.is_empty()
        || inspections.iter().any(|(_, skipped)| skipped.is_none())
        || experiments.iter().any(|(_, skipped)| skipped.is_none());
    if !runs_something {
        let skipped: Vec<String> = roster
            .iter()
            .map(|(name, reason)| (name.clone(), reason.as_deref()))
            .chain(inspections.iter().map(|(kind, reason)| (kind.name().to_owned(), reason.as_deref())))
            .chain(experiments.iter().map(|(experiment, reason)| (experiment.to_string(), reason.as_deref())))
            .filter_map(|(name, reason)| reason.map(|reason| format!("{name}: {reason}")))
            .collect();
        return Err(RunError::Usage(format!(
            "nothing selected can run against {}{}",
            config.target.path.display(),
            if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join("; ")) }
        )));
    }
    Ok(Bound {
        users,
        workload: bound,
        scenario_roster: roster,
        inspections,
        experiments,
    })
}

/// The experiments of one kind the run asks for: a store experiment once for each declared
/// dependency (those `--scenarios` names, when it names any), every other kind once.
fn of_kind(kind: ExperimentKind, config: &RunConfig) -> Vec<Experiment> {
    if !kind.disrupts_a_dependency() {
        return vec![Experiment::of(kind)];
    }
    // Named ones run even when the target does not declare them, to be skipped with the reason.
    let named: Vec<Experiment> = config.selection.iter().filter_map(|word| Experiment::from_name(word)).filter(|e| e.kind == kind && e.dependency.is_some()).collect();
    let declared = config.target.dependencies.names();
    match (named.is_empty(), declared.is_empty()) {
        (false, _) => named,
        (true, false) => declared.iter().map(|name| Experiment::disrupting(kind, name)).collect(),
        (true, true) => vec![Experiment::of(kind)],
    }
}

fn plan_run(config: &RunConfig, bound: &Bound) -> Plan {
    let mut plan = plan::schedule(config.seed, config.replicas, config.routing, &bound.users, config.vus);
    for (experiment, skipped) in &bound.experiments {
        if skipped.is_none() {
            let first_vu = plan::next_vu(&plan);
            plan.experiments.push(chaos::plan(experiment, config.seed, config.replicas, &bound.workload, first_vu, config.load_vus));
        }
    }
    plan
}

/// Runs each inspection, and again when it showed something; the record is judged later.
async fn run_inspections(
    bound: &Bound,
    inspector: &Inspector<'_>,
    users: &History,
    observer: &dyn Observer,
    seed: u64,
    reproduce: &dyn Fn(&str) -> String,
) -> Vec<InspectionRun> {
    let public = inspector.balancer.addr.to_string();
    let settings = &inspector.target.balancer;
    let vantage = inspector.vantage;
    let mut runs = Vec::new();
    for (kind, skipped) in &bound.inspections {
        if skipped.is_some() {
            continue;
        }
        let name = kind.name();
        observer.progress(Progress::CheckStarted { name: name.to_owned() });
        let first = inspect::run(*kind, inspector, Phase::Main).await;
        let first_assessment = check::inspect::assess(&first, settings, vantage, users, &public);
        runs.push(first);
        let mut second_assessment = None;
        if first_assessment.worth_repeating() {
            observer.progress(Progress::CheckRepeated { name: name.to_owned() });
            let second = inspect::run(*kind, inspector, Phase::Reproduce).await;
            second_assessment = Some(check::inspect::assess(&second, settings, vantage, users, &public));
            runs.push(second);
        }
        finished(observer, name, &first_assessment, second_assessment.as_ref(), seed, reproduce);
    }
    runs
}

/// Runs each experiment, and again when it showed something; the record is judged later.
/// An experiment cut by an interrupt is not recorded: what it did proves nothing. A
/// replica that exits by itself meanwhile is told with the experiment it spoiled, and the
/// next experiment starts from a whole cluster.
async fn run_experiments(
    plan: &Plan,
    bound: &Bound,
    arena: &mut Arena<'_>,
    observer: &dyn Observer,
    seed: u64,
    reproduce: &dyn Fn(&str) -> String,
    interrupt: &mut Interrupt,
) -> Experimented {
    let platform = check::chaos::Platform::of(arena.target);
    let mut done = Experimented::default();
    let mut previous: Option<String> = None;
    'experiments: for (experiment, _) in &bound.experiments {
        let name = experiment.to_string();
        let Some(experiment_plan) = plan.experiments.iter().find(|e| e.experiment() == *experiment) else { continue };
        let name = name.as_str();
        // What went between two experiments went on the incarnation the last one's
        // healing started; the next starts whole.
        if done.notice(arena, observer, previous.as_deref().unwrap_or(name)).await {
            let healed = arena.cluster.heal().await;
            arena.balancer.upstreams().replace(&arena.cluster.endpoints());
            if let Err(err) = healed {
                let mut run = ExperimentRun::new(name, Phase::Main);
                run.error = Some(format!("the cluster could not be made whole before it: {err}"));
                done.runs.push(run);
                continue;
            }
        }
        previous = Some(name.to_owned());
        observer.progress(Progress::CheckStarted { name: name.to_owned() });
        let began = Instant::now();
        let first = tokio::select! {
            run = experiment::run(experiment_plan, arena, Phase::Main) => run,
            _ = interrupt.wait() => break,
        };
        done.timings.push(Timing::since(format!("experiment {name}"), arena.ctx.origin, began));
        done.notice(arena, observer, name).await;
        let first_assessment = check::chaos::assess(experiment_plan, &first, &bound.workload, &platform);
        done.runs.push(first);
        // Again until what the first run showed shows again, within the experiment's tries.
        let mut again: Option<check::twice::Assessment> = None;
        let tries = if first_assessment.worth_repeating() { experiment.kind.confirming_runs() } else { 0 };
        for _ in 0..tries {
            observer.progress(Progress::CheckRepeated { name: name.to_owned() });
            let began = Instant::now();
            let next = tokio::select! {
                run = experiment::run(experiment_plan, arena, Phase::Reproduce) => run,
                _ = interrupt.wait() => break 'experiments,
            };
            done.timings.push(Timing::since(format!("experiment {name} again"), arena.ctx.origin, began));
            done.notice(arena, observer, name).await;
            let assessment = check::chaos::assess(experiment_plan, &next, &bound.workload, &platform);
            done.runs.push(next);
            let merged = match again.take() {
                Some(so_far) => so_far.joined(assessment),
                None => assessment,
            };
            let settled = !first_assessment.unsettled_by(&merged);
            again = Some(merged);
            if settled {
                break;
            }
        }
        finished(observer, name, &first_assessment, again.as_ref(), seed, reproduce);
    }
    done
}

/// What the experiments did, and the exits they met.
#[derive(Default)]
struct Experimented {
    runs: Vec<ExperimentRun>,
    timings: Vec<Timing>,
    exits: Vec<ReplicaExit>,
}

impl Experimented {
    /// Tells the exits since the last look, each as spoiling experiment `during`; true when
    /// there were any.
    async fn notice(&mut self, arena: &mut Arena<'_>, observer: &dyn Observer, during: &str) -> bool {
        let exits = notice_exits(arena.cluster, arena.balancer, arena.ctx.origin, observer, Some(during)).await;
        let any = !exits.is_empty();
        self.exits.extend(exits);
        any
    }
}

/// Tells the observer how many findings a check's runs show; the run's verdict comes from
/// its record, later.
fn finished(observer: &dyn Observer, name: &str, first: &Assessment, second: Option<&Assessment>, seed: u64, reproduce: &dyn Fn(&str) -> String) {
    let (findings, _) = check::twice::judge(first, second, seed, reproduce, name);
    observer.progress(Progress::CheckFinished {
        name: name.to_owned(),
        findings: findings.len(),
    });
}

/// How often replicas are checked for an exit nobody asked for.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// What runs beside the phases in which replicheck stops no replica: a watch on the
/// replicas (one that exits is taken out of routing at once, told, and recorded), and on
/// an interrupt.
struct Watch<'a> {
    balancer: &'a Balancer,
    origin: Instant,
    observer: &'a dyn Observer,
    exits: Vec<ReplicaExit>,
    interrupt: Interrupt,
    /// How long each phase it watched took.
    timings: Vec<Timing>,
}

impl Watch<'_> {
    /// Runs `phase` under watch; None when the run was interrupted first.
    async fn phase<T>(&mut self, name: &str, cluster: &mut Cluster, phase: impl Future<Output = T>) -> Option<T> {
        if self.interrupt.reason().is_some() {
            return None;
        }
        let began = Instant::now();
        let mut phase = std::pin::pin!(phase);
        let mut tick = tokio::time::interval(EXIT_POLL);
        loop {
            tokio::select! {
                done = &mut phase => {
                    self.exits.extend(notice_exits(cluster, self.balancer, self.origin, self.observer, None).await);
                    self.timings.push(Timing::since(name, self.origin, began));
                    return Some(done);
                }
                _ = tick.tick() => self.exits.extend(notice_exits(cluster, self.balancer, self.origin, self.observer, None).await),
                _ = self.interrupt.wait() => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::fixtures::demo_target;

    #[test]
    fn the_default_reproduce_line_is_the_configuration_as_set_last() {
        let config = RunConfig::new(demo_target()).seed(1).replicas(3).seed(42);
        assert_eq!(
            config.reproduce_line(config.seed, "login"),
            "replicheck run examples/demo/broken.toml --replicas 3 --backend process --seed 42 --scenarios login"
        );
        let told = config.reproduce(|seed, names| format!("make check SEED={seed} ONLY={names}"));
        assert_eq!(told.reproduce_line(7, "cache,kill"), "make check SEED=7 ONLY=cache,kill");
    }
}


//! Exploration: generated schedules against real replicas, each fault shrunk to the
//! smallest schedule that still shows it and proven by a control run.
//!
//! proptest draws each case's schedule (`strategy`) from the seed and the case number, so
//! the same seed draws the same schedules. A case is run (`lab`) and judged
//! (`check::explored`); a fault not seen before is shrunk with proptest's value tree,
//! keeping only simplifications that still fail the same way (kind, scenario and step),
//! then its minimal schedule runs under control and once more. Only a fault whose control
//! passed and that happened again is a finding; its `reproduce` command replays exactly
//! the minimal schedule (`--schedule`).

pub mod lab;
pub mod strategy;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::RngExt;
use tokio::time::Instant;

use crate::vocab::routing::RoutingPolicy;
use crate::chaos::ExperimentKind;
use crate::chaos::experiment::{self, Arena, trigger_scenario};
use crate::check::explored::{self, Confirmation, Fault, FaultKey, Subject};
use crate::check::finding::{ChaosContext, Control, Finding};
use crate::check::{self, ScenarioResult, ScenarioStatus, Tally, Verdict};
use crate::cluster::{BackendKind, ClusterSpec};
use crate::history::{History, Phase, ScheduleRun, Timing};
use crate::interrupt::{Interrupt, Interruption};
use crate::plan::interleaving::{Disruption, Event, Schedule};
use crate::plan::{Plan, seed};
use crate::policy::Policy;
use crate::progress::{Observer, Progress};
use crate::redact::Secrets;
use crate::report::json::RunRecord;
use crate::report::{self, Report};
use crate::driver::{self, ReportDir, RunError, RunOutcome, ScenarioRoster};
use crate::scenario::{Scenario, ScenarioFile};
use crate::target::Target;
use crate::vu::{Limits, VuContext};
use lab::Lab;
use strategy::Space;

/// Builds the command that replays a schedule.
pub type ReproduceSchedule = Arc<dyn Fn(&Schedule) -> String + Send + Sync>;

#[non_exhaustive]
pub struct ExploreConfig {
    pub target: Target,
    pub scenarios: Vec<ScenarioFile>,
    pub replicas: u16,
    pub seed: u64,
    /// Schedules to generate, at most.
    pub cases: u32,
    /// Steps in one schedule, at most.
    pub max_steps: usize,
    /// Wall time for generating and shrinking; controls of what was found still run.
    pub time: Duration,
    /// Simplifications tried per fault, at most.
    pub max_shrink_iters: u32,
    /// Run exactly this schedule (a finding's reproduce command) instead of generating.
    pub schedule: Option<Schedule>,
    pub report_dir: ReportDir,
    /// A replicheck binary, for `{replicheck}` in the target and the run's watchdog (see
    /// [`ClusterSpec::replicheck`](crate::cluster::ClusterSpec#structfield.replicheck)).
    pub replicheck: Option<PathBuf>,
    pub backend: BackendKind,
    /// The command a finding's reproduce line shows; `None`: the `replicheck explore`
    /// command line of this configuration.
    pub reproduce: Option<ReproduceSchedule>,
    /// What `--scenarios` said.
    pub selection: Vec<String>,
    pub policy: Option<Policy>,
    /// Stops the search early, with a report of what it found.
    pub interrupt: Interrupt,
}

impl ExploreConfig {
    /// An exploration of `target` as `replicheck explore TARGET` would make it: two local
    /// replicas (the process backend, or docker when the target names only an image), a
    /// fresh seed, 32 schedules of at most 12 steps within 10 minutes, every built-in
    /// scenario, and the report under `reports/`.
    pub fn new(target: Target) -> ExploreConfig {
        let backend = BackendKind::choose(None, &target.start).unwrap_or(BackendKind::Process);
        ExploreConfig {
            target,
            scenarios: crate::scenario::builtin(),
            replicas: 2,
            seed: crate::plan::seed::fresh(),
            cases: 32,
            max_steps: 12,
            time: Duration::from_secs(600),
            max_shrink_iters: 256,
            schedule: None,
            report_dir: ReportDir::at_or_default(None),
            replicheck: None,
            backend,
            reproduce: None,
            selection: Vec::new(),
            policy: None,
            interrupt: Interrupt::never(),
        }
    }

    /// Chooses the scenarios by name, as `--scenarios` does: built-in scenario names,
    /// scenario files or directories. Exploration draws its own disruptions, so inspection
    /// and experiment names are unknown here.
    pub fn select<S: AsRef<str>>(self, names: &[S]) -> Result<ExploreConfig, crate::scenario::SelectError> {
        let selection: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let scenarios = if selection.is_empty() { crate::scenario::builtin() } else { crate::scenario::select(&selection)? };
        Ok(ExploreConfig { scenarios, selection, ..self })
    }

    pub fn replicas(self, replicas: u16) -> ExploreConfig {
        ExploreConfig { replicas, ..self }
    }

    pub fn seed(self, seed: u64) -> ExploreConfig {
        ExploreConfig { seed, ..self }
    }

    /// Schedules to generate, at most.
    pub fn cases(self, cases: u32) -> ExploreConfig {
        ExploreConfig { cases, ..self }
    }

    /// Steps in one schedule, at most.
    pub fn max_steps(self, max_steps: usize) -> ExploreConfig {
        ExploreConfig { max_steps, ..self }
    }

    /// Wall time for generating and shrinking.
    pub fn time(self, time: Duration) -> ExploreConfig {
        ExploreConfig { time, ..self }
    }

    /// Runs exactly this schedule instead of generating.
    pub fn schedule(self, schedule: Schedule) -> ExploreConfig {
        ExploreConfig { schedule: Some(schedule), ..self }
    }

    pub fn report_dir(self, report_dir: ReportDir) -> ExploreConfig {
        ExploreConfig { report_dir, ..self }
    }

    pub fn backend(self, backend: BackendKind) -> ExploreConfig {
        ExploreConfig { backend, ..self }
    }

    /// See [`ExploreConfig::replicheck`](#structfield.replicheck).
    pub fn replicheck(self, binary: impl Into<PathBuf>) -> ExploreConfig {
        ExploreConfig { replicheck: Some(binary.into()), ..self }
    }

    pub fn policy(self, policy: Policy) -> ExploreConfig {
        ExploreConfig { policy: Some(policy), ..self }
    }

    pub fn interrupt(self, interrupt: Interrupt) -> ExploreConfig {
        ExploreConfig { interrupt, ..self }
    }

    pub fn reproduce(self, reproduce: impl Fn(&Schedule) -> String + Send + Sync + 'static) -> ExploreConfig {
        ExploreConfig { reproduce: Some(Arc::new(reproduce)), ..self }
    }

    /// The command that runs a schedule again: the configured one, or this configuration's
    /// `replicheck explore` command line.
    fn reproducer(&self) -> ReproduceSchedule {
        if let Some(reproduce) = &self.reproduce {
            return reproduce.clone();
        }
        let mut base = format!(
            "replicheck explore {} --replicas {} --backend {} --seed {}",
            driver::shell_word(&self.target.path.display().to_string()),
            self.replicas,
            self.backend.name(),
            self.seed
        );
        if !self.selection.is_empty() {
            base.push_str(&format!(" --scenarios {}", driver::shell_word(&self.selection.join(","))));
        }
        Arc::new(move |schedule| format!("{base} --schedule {}", driver::shell_word(&schedule.to_string())))
    }
}

pub use crate::check::explored::{Dismissed, Exploration};

/// One fault the search settled: its smallest schedule, the run that showed it there, and
/// what its control and second run said.
struct Settled {
    fault: Fault,
    minimal: Schedule,
    confirmation: Confirmation,
    occurrences: u32,
    /// The keys it was found by, when settling blamed another cause (a disruption).
    aliases: Vec<FaultKey>,
}

impl Settled {
    fn dismissed(&self) -> Option<Dismissed> {
        let why = match &self.confirmation {
            Confirmation::Confirmed(_) => return None,
            Confirmation::ControlFailed(why) | Confirmation::Error(why) | Confirmation::Unexplained(why) => why.clone(),
            Confirmation::NotReproduced => "its control passed, but it did not happen again".into(),
        };
        Some(Dismissed {
            key: self.fault.key.clone(),
            schedule: self.minimal.clone(),
            why,
        })
    }
}

/// The search's running state.
#[derive(Default)]
struct Search {
    exploration: Exploration,
    settled: Vec<Settled>,
    /// Per scenario, the first failure with nothing crossing and the first error.
    own: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
}

/// The parts of the configuration the search reads.
struct Bounds<'a> {
    subject: Subject<'a>,
    seed: u64,
    max_shrink_iters: u32,
    deadline: Instant,
    observer: &'a dyn Observer,
    interrupt: Interrupt,
}

impl Bounds<'_> {
    /// Whether time is left and nobody asked to stop.
    fn going(&self) -> bool {
        Instant::now() < self.deadline && self.interrupt.reason().is_none()
    }
}

pub async fn explore(config: ExploreConfig, observer: &dyn Observer) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let (scenarios, roster) = bind(&config, observer)?;
    if config.backend == BackendKind::Process {
        config.target.check_local_addresses()?;
    }
    let store = ExperimentKind::StoreRestart.skip_reason(&config.target, &scenarios).is_none();
    if let Some(schedule) = &config.schedule {
        fits(schedule, &scenarios, config.replicas, store)?;
    }
    let reproduce = config.reproducer();
    let run_id = driver::run_id(&format!("explore{}", config.seed));
    let report_dir = driver::create_report_dir(&config.report_dir, &run_id)?;
    let target = Arc::new(config.target);
    let spec = ClusterSpec {
        target: target.clone(),
        replicas: config.replicas,
        run_id: run_id.clone(),
        logs_dir: report_dir.clone(),
        replicheck: config.replicheck.clone(),
        backend: config.backend,
        external: None,
    };
    let mut interrupt = config.interrupt.clone();
    let starting = Instant::now();
    let (mut cluster, balancer) = tokio::select! {
        started = driver::start_service(spec, driver::Edge::Https, observer) => started?,
        signal = interrupt.wait() => return Err(RunError::Interrupted(signal)),
    };
    let mut timings = vec![Timing::since("start", started, starting)];
    let mut secrets = Secrets::default();
    for secret in target.secrets() {
        secrets.add(&secret);
    }
    let ctx = Arc::new(VuContext::new(
        balancer.entrance().clone(),
        target.balancer.client_address,
        &scenarios,
        config.seed,
        started,
        Limits::from(target.limits),
        secrets.clone(),
    ));
    let bounds = Bounds {
        subject: Subject { scenarios: &scenarios, triggered: &target.triggered },
        seed: config.seed,
        max_shrink_iters: config.max_shrink_iters,
        deadline: crate::clock::after(started, config.time),
        observer,
        interrupt: config.interrupt.clone(),
    };
    let mut lab = Lab::new(Arena::new(&mut cluster, &balancer, &ctx, &target, 1, u32::MAX / 2));
    let searching = Instant::now();
    let search = match &config.schedule {
        Some(schedule) => replay(&bounds, &mut lab, schedule).await,
        None => {
            let space = Space::new(&scenarios, config.replicas, config.max_steps, store);
            search(&bounds, &mut lab, &space, config.cases).await
        }
    };
    let Lab { runs, secrets: seen, exits, .. } = lab;
    secrets.extend(&seen);

    timings.push(Timing::since("search", started, searching));

    observer.progress(Progress::Stopping);
    let stopping = Instant::now();
    drop(balancer);
    cluster.shutdown().await;
    timings.push(Timing::since("stop", started, stopping));
    driver::redact_logs(&report_dir, &secrets);
    driver::write_json(&report_dir, "schedules.json", &runs)?;

    let mut verdict = verdict(&search, &runs, &scenarios, &roster, config.seed, &reproduce);
    // What an exited replica took part in proves nothing, and the search stopped there.
    verdict.findings.retain(|f| !exits.iter().any(|e| e.replica == f.producer || e.replica == f.consumer));
    if let Some(exit) = exits.first() {
        for result in verdict.scenarios.iter_mut().filter(|r| r.status == ScenarioStatus::Passed) {
            result.status = ScenarioStatus::Error;
            result.reason = Some(exit.summary());
        }
    }
    let mut exploration = search.exploration;
    exploration.dismissed = search.settled.iter().filter_map(Settled::dismissed).collect();
    let (scenario_results, findings, diagnoses, policy) = driver::conclude(verdict, target.preset, config.policy.as_ref());
    let history = history(&runs);
    let report = Report {
        tool: "replicheck".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        run_id,
        seed: config.seed,
        backend: config.backend.name().into(),
        target: target.name.clone(),
        target_file: target.path.display().to_string(),
        replicas: config.replicas,
        routing: RoutingPolicy::Random,
        duration_ms: started.elapsed().as_millis() as u64,
        timings,
        requests: history.requests(),
        preset: target.preset,
        scenarios: scenario_results,
        diagnoses,
        findings,
        policy,
        events: report::json::events(&history),
        plan: Plan {
            seed: config.seed,
            replicas: config.replicas,
            routing: RoutingPolicy::Random,
            vus: Vec::new(),
            experiments: Vec::new(),
        },
        config: RunRecord {
            replicas: config.replicas,
            routing: RoutingPolicy::Random,
            vus: 0,
            load_vus: 0,
            scenarios: config.selection,
        },
        exploration: Some(exploration),
        exits,
        interrupted: config.interrupt.reason().map(|signal| Interruption {
            signal: signal.to_owned(),
            during: "the search".into(),
        }),
        error: None,
    };
    Ok(RunOutcome { report, report_dir })
}

/// Binds the scenario files to the target; exploration runs scenarios only. The triggers of
/// the target's background work join them where the run has a sink for their deliveries,
/// as its Redis joins the disruptions.
fn bind(config: &ExploreConfig, observer: &dyn Observer) -> Result<(Vec<Scenario>, ScenarioRoster), RunError> {
    let (mut scenarios, mut roster) = driver::bind_scenarios(&config.scenarios, &config.target, observer)?;
    if scenarios.is_empty() {
        return Err(RunError::Usage(format!("{}: no scenario it can run, so nothing to explore", config.target.path.display())));
    }
    if config.backend != BackendKind::External {
        let triggers = experiment::own_scenarios(&config.target).into_iter().filter(|s| config.target.triggered.iter().any(|f| trigger_scenario(&f.name) == s.name));
        for trigger in triggers {
            roster.push((trigger.name.clone(), None));
            scenarios.push(trigger);
        }
    }
    Ok((scenarios, roster))
}

/// A schedule to replay names only scenarios, steps and replicas this run has.
fn fits(schedule: &Schedule, scenarios: &[Scenario], replicas: u16, store: bool) -> Result<(), RunError> {
    for event in &schedule.events {
        let problem = match event {
            Event::Step { scenario, step, replica, .. } => match scenarios.iter().find(|s| &s.name == scenario) {
                None => Some(format!("no scenario `{scenario}` runs against this target")),
                Some(s) if *step >= s.steps.len() => Some(format!("{scenario} has {} steps", s.steps.len())),
                _ if replica.0 >= replicas => Some(format!("{replica} is not among r0..r{}", replicas - 1)),
                _ => None,
            },
            Event::Disrupt(Disruption::Restart(replica) | Disruption::Kill(replica)) if replica.0 >= replicas => {
                Some(format!("{replica} is not among r0..r{}", replicas - 1))
            }
            Event::Disrupt(Disruption::StoreRestart) if !store => Some("the target has no Redis to restart".into()),
            Event::Disrupt(_) => None,
        };
        if let Some(problem) = problem {
            return Err(RunError::Usage(format!("--schedule: `{event}`: {problem}")));
        }
    }
    Ok(())
}

/// The test runner whose random values draw case `case`: one per case, so a case is drawn
/// again (to shrink it) without drawing the ones before it.
fn runner(seed: u64, case: u32) -> TestRunner {
    let mut stream = seed::stream(seed, &format!("explore/{case}"));
    let bytes: [u8; 32] = stream.random();
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

async fn search(bounds: &Bounds<'_>, lab: &mut Lab<'_>, space: &Space, cases: u32) -> Search {
    let strategy = space.strategy();
    let mut search = Search::default();
    for case in 0..cases {
        if let Some(signal) = bounds.interrupt.reason() {
            search.exploration.stopped = Some(format!("interrupted by {signal} after {case} of {cases} cases"));
            break;
        }
        if Instant::now() >= bounds.deadline {
            search.exploration.stopped = Some(format!("the time budget ran out after {case} of {cases} cases"));
            break;
        }
        if let Some(exit) = lab.exits.first() {
            search.exploration.stopped = Some(format!("{} after {case} of {cases} cases", exit.summary()));
            break;
        }
        let Ok(tree) = strategy.new_tree(&mut runner(bounds.seed, case)) else { continue };
        let schedule = tree.current();
        bounds.observer.progress(Progress::ExploreCase {
            case: case + 1,
            cases,
            findings: search.settled.len(),
        });
        search.exploration.cases += 1;
        search.exploration.schedules.push(schedule.to_string());
        let index = run_index(lab, &schedule, Phase::Main).await;
        let verdict = explored::judge(bounds.subject, &lab.runs[index]);
        search.note(&verdict);
        let mut new: Vec<Fault> = Vec::new();
        for fault in verdict.faults {
            match search.known(&fault.key) {
                Some(settled) => settled.occurrences += 1,
                None if new.iter().all(|f| f.key != fault.key) => new.push(fault),
                None => {}
            }
        }
        for fault in new {
            // Settling the one before may have explained this one too.
            if search.known(&fault.key).is_some() {
                continue;
            }
            bounds.observer.progress(Progress::FaultFound {
                case: case + 1,
                kind: fault.key.kind,
                scenario: fault.key.scenario.clone(),
                step: fault.candidate.step_name.clone(),
            });
            // The case drawn again: a fresh tree to shrink for each fault it showed.
            let Ok(tree) = strategy.new_tree(&mut runner(bounds.seed, case)) else { continue };
            let (minimal, fault) = shrink(bounds, lab, tree, fault, &mut search.exploration.shrink_steps).await;
            let (minimal, fault) = prune(bounds, lab, minimal, fault, &mut search.exploration.shrink_steps).await;
            let found = fault.key.clone();
            let settled = settle(bounds, lab, fault, minimal, &mut search.exploration.shrink_steps).await;
            search.keep(settled, found);
        }
    }
    search
}

/// Runs one given schedule and settles every fault it shows, without shrinking.
async fn replay(bounds: &Bounds<'_>, lab: &mut Lab<'_>, schedule: &Schedule) -> Search {
    let mut search = Search::default();
    search.exploration.cases = 1;
    search.exploration.schedules.push(schedule.to_string());
    let index = run_index(lab, schedule, Phase::Main).await;
    let verdict = explored::judge(bounds.subject, &lab.runs[index]);
    search.note(&verdict);
    for fault in verdict.faults {
        if search.known(&fault.key).is_some() {
            continue;
        }
        let found = fault.key.clone();
        let settled = settle(bounds, lab, fault, schedule.clone(), &mut search.exploration.shrink_steps).await;
        search.keep(settled, found);
    }
    search
}

impl Search {
    fn known(&mut self, key: &FaultKey) -> Option<&mut Settled> {
        self.settled.iter_mut().find(|s| s.fault.key == *key || s.aliases.contains(key))
    }

    /// Keeps a settled fault under the key it was found by too; one that ended as a fault
    /// already known is another sighting of it.
    fn keep(&mut self, mut settled: Settled, found: FaultKey) {
        if let Some(known) = self.known(&settled.fault.key) {
            known.occurrences += 1;
            known.aliases.push(found);
            return;
        }
        if settled.fault.key != found {
            settled.aliases.push(found);
        }
        self.settled.push(settled);
    }

    fn note(&mut self, verdict: &explored::CaseVerdict) {
        for (scenario, what) in &verdict.own {
            self.own.entry(scenario.clone()).or_insert_with(|| what.clone());
        }
        for (scenario, what) in &verdict.errors {
            self.errors.entry(scenario.clone()).or_insert_with(|| what.clone());
        }
    }
}

async fn run_index(lab: &mut Lab<'_>, schedule: &Schedule, phase: Phase) -> usize {
    lab.run(schedule, phase).await;
    lab.runs.len() - 1
}

/// Simplifies the case as long as the simpler schedule still fails the same way:
/// proptest's shrinking, one real run per try.
async fn shrink(bounds: &Bounds<'_>, lab: &mut Lab<'_>, mut tree: impl ValueTree<Value = Schedule>, fault: Fault, tries: &mut u32) -> (Schedule, Fault) {
    let (mut minimal, mut fault) = (tree.current(), fault);
    // Many drawn values stand for one schedule (a route past a user's last step, a step
    // that keeps its replica): each schedule runs once, whatever else shrinks.
    let mut tried: HashMap<Schedule, bool> = HashMap::from([(minimal.clone(), true)]);
    let mut iterations = 0;
    if !tree.simplify() {
        return (minimal, fault);
    }
    while iterations < bounds.max_shrink_iters && bounds.going() && lab.exits.is_empty() {
        let candidate = tree.current();
        let same = match tried.get(&candidate) {
            Some(true) => Some(fault.clone()),
            Some(false) => None,
            None => {
                iterations += 1;
                *tries += 1;
                bounds.observer.progress(Progress::Shrinking {
                    tries: iterations,
                    steps: minimal.steps(),
                });
                let index = run_index(lab, &candidate, Phase::Shrink).await;
                let same = explored::find(bounds.subject, &lab.runs[index], &fault.key);
                tried.insert(candidate.clone(), same.is_some());
                same
            }
        };
        let more = match same {
            Some(smaller) => {
                (minimal, fault) = (candidate, smaller);
                tree.simplify()
            }
            None => tree.complicate(),
        };
        if !more {
            break;
        }
    }
    (minimal, fault)
}

/// Removes whole users and disruptions the fault does not need, one at a time, for as
/// long as one can go. proptest shrinks the values it drew, and cannot see that a
/// disruption placed by a step count moves when a user before it goes.
async fn prune(bounds: &Bounds<'_>, lab: &mut Lab<'_>, mut minimal: Schedule, mut fault: Fault, tries: &mut u32) -> (Schedule, Fault) {
    let mut iterations = 0;
    'smaller: loop {
        for candidate in minimal.one_less() {
            if iterations >= bounds.max_shrink_iters || !bounds.going() || !lab.exits.is_empty() {
                break 'smaller;
            }
            iterations += 1;
            *tries += 1;
            let index = run_index(lab, &candidate, Phase::Shrink).await;
            if let Some(smaller) = explored::find(bounds.subject, &lab.runs[index], &fault.key) {
                (minimal, fault) = (candidate, smaller);
                continue 'smaller;
            }
        }
        break;
    }
    (minimal, fault)
}

/// Runs the minimal schedule's control and the schedule once more, and judges the fault.
/// A crossing whose control failed too, with the store or the producing replica restarted
/// in between, is asked again as a fault of that disruption, pruned for it: only when
/// that control fails as well does the failure stay unexplained.
async fn settle(bounds: &Bounds<'_>, lab: &mut Lab<'_>, fault: Fault, minimal: Schedule, tries: &mut u32) -> Settled {
    let (mut fault, mut minimal) = (fault, minimal);
    let mut confirmation = confirm(bounds, lab, &fault, &minimal).await;
    if let (Confirmation::ControlFailed(crossing), Some(recast)) = (&confirmation, fault.recast(&minimal)) {
        let crossing = crossing.clone();
        (minimal, fault) = prune(bounds, lab, minimal, recast, tries).await;
        confirmation = match confirm(bounds, lab, &fault, &minimal).await {
            Confirmation::ControlFailed(disruption) => Confirmation::Unexplained(format!("{crossing}; {disruption}")),
            other => other,
        };
    }
    bounds.observer.progress(Progress::Shrunk {
        schedule: minimal.to_string(),
        outcome: match &confirmation {
            Confirmation::Confirmed(_) => "a finding: its control passed and it happened again".into(),
            Confirmation::ControlFailed(why) | Confirmation::Error(why) | Confirmation::Unexplained(why) => why.clone(),
            Confirmation::NotReproduced => "did not happen again: not a finding".into(),
        },
    });
    Settled {
        fault,
        minimal,
        confirmation,
        occurrences: 1,
        aliases: Vec::new(),
    }
}

async fn confirm(bounds: &Bounds<'_>, lab: &mut Lab<'_>, fault: &Fault, minimal: &Schedule) -> Confirmation {
    let mut controls = Vec::new();
    for plan in fault.controls() {
        controls.push((plan, run_index(lab, &plan.schedule(minimal, fault.user), Phase::Control).await));
    }
    let reproduction = run_index(lab, minimal, Phase::Reproduce).await;
    let controls: Vec<_> = controls.into_iter().map(|(plan, index)| (plan, &lab.runs[index])).collect();
    explored::confirm(fault, bounds.subject, &controls, &lab.runs[reproduction])
}

/// Findings and scenario results from what the search settled and the cases it ran.
fn verdict(search: &Search, runs: &[ScheduleRun], scenarios: &[Scenario], roster: &ScenarioRoster, seed: u64, reproduce: &ReproduceSchedule) -> Verdict {
    let mut findings = Vec::new();
    let mut baseline: BTreeMap<&str, String> = BTreeMap::new();
    let mut errors: BTreeMap<&str, String> = BTreeMap::new();
    let mut unconfirmed: BTreeMap<&str, u32> = BTreeMap::new();
    for settled in &search.settled {
        let scenario = settled.fault.key.scenario.as_str();
        match &settled.confirmation {
            Confirmation::Confirmed(control) => findings.push(finding(settled, control.clone(), seed, reproduce)),
            Confirmation::ControlFailed(why) => {
                baseline.entry(scenario).or_insert_with(|| why.clone());
            }
            Confirmation::Error(why) => {
                errors.entry(scenario).or_insert_with(|| why.clone());
            }
            Confirmation::NotReproduced | Confirmation::Unexplained(_) => *unconfirmed.entry(scenario).or_default() += 1,
        }
    }
    let mut results = Vec::new();
    for (name, skipped) in roster {
        let Some(scenario) = scenarios.iter().find(|s| &s.name == name).filter(|_| skipped.is_none()) else {
            results.push(ScenarioResult::skipped(name, skipped.clone().unwrap_or_default()));
            continue;
        };
        // What the generated cases did with this scenario (shrinking and controls aside).
        let mut tally = Tally::default();
        for user in runs.iter().filter(|r| r.phase == Phase::Main).flat_map(|r| &r.users).filter(|u| &u.scenario == name) {
            tally.vus += 1;
            tally.requests += user.steps.iter().map(|s| s.requests.len()).sum::<usize>();
            check::count_handoffs(scenario, user, &mut tally);
        }
        let own = search.own.get(name).or_else(|| baseline.get(name.as_str()));
        let error = search.errors.get(name).or_else(|| errors.get(name.as_str()));
        let (status, reason) = match (findings.iter().any(|f: &Finding| &f.scenario == name), own, error) {
            (true, _, _) => (ScenarioStatus::Failed, None),
            (false, Some(own), _) => (ScenarioStatus::BaselineFailed, Some(own.clone())),
            (false, None, Some(error)) => (ScenarioStatus::Error, Some(error.clone())),
            (false, None, None) => (ScenarioStatus::Passed, None),
        };
        let mut result = ScenarioResult::tallied(name, status, reason, &tally, unconfirmed.get(name.as_str()).copied().unwrap_or(0));
        result.checks = check::scenario_checks(scenario);
        result.untested = check::recorded::uncrossed(&result, &result.checks);
        results.push(result);
    }
    Verdict { findings, scenarios: results }
}

fn finding(settled: &Settled, control: Control, seed: u64, reproduce: &ReproduceSchedule) -> Finding {
    let fault = &settled.fault;
    let mut finding = fault.candidate.finding(fault.key.kind, "explore", control, seed, reproduce(&settled.minimal));
    finding.occurrences = settled.occurrences;
    finding.minimal_schedule = Some(settled.minimal.clone());
    finding.after = fault.after.as_ref().map(|action| ChaosContext {
        experiment: "explore".into(),
        action: action.clone(),
        at_ms: fault.candidate.at_ms.unwrap_or_default(),
    });
    finding
}

/// Every run as one history, for the report's timeline: users as they are, each run's
/// disruptions as an experiment of its own.
fn history(runs: &[ScheduleRun]) -> History {
    let mut history = History::default();
    for run in runs {
        history.vus.extend(run.users.iter().cloned());
        if !run.disruptions.chaos.is_empty() {
            history.experiments.push(run.disruptions.clone());
        }
    }
    history
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::fixtures::demo_target;

    #[test]
    fn the_default_reproduce_line_replays_the_schedule_with_the_configuration_as_set_last() {
        let schedule: Schedule = "u0:login/0@r0 restart:r1 u0:login/1@r1".parse().unwrap();
        let config = ExploreConfig::new(demo_target()).replicas(4).seed(9).select(&["login"]).unwrap();
        assert_eq!(
            config.reproducer()(&schedule),
            "replicheck explore examples/demo/broken.toml --replicas 4 --backend process --seed 9 --scenarios login \
             --schedule 'u0:login/0@r0 restart:r1 u0:login/1@r1'"
        );
    }
}

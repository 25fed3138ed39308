//! Running one experiment: the workload without the disruption (the control), the
//! workload across the disruption, then healing. Every action lands in the experiment's
//! record with its time, as every request does.
//!
//! Experiments run one at a time, after the plan's ordinary users are done, so a
//! disruption never touches users that are not part of it.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

use super::{ExperimentKind, ExperimentPlan};
use crate::balancer::Balancer;
use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::cluster::{Cluster, ClusterError, Endpoint, StopOutcome};
use crate::history::{ChaosAction, ChaosEvent, ExperimentRun, Outcome, Phase, Probe, ProbePurpose, Refusal, StartFailure, StepRecord, Trigger, VuRecord, Window};
use crate::plan::{Load, VuPlan};
use crate::plan::interleaving::Disruption;
use crate::redact::Secrets;
use crate::scenario::{RouteHint, Scenario, Step};
use crate::step::{Expect, RequestSpec, StatusSet, Template, Vars};
use crate::history::delivered::Delivered;
use crate::sink::Inbox;
use crate::target::{Deregistration, Publish, Recogniser, Target};
use crate::vu::{self, Gated, VuContext};

/// Names of the one-step scenarios experiments send besides the users' own.
pub const PAGE_SCENARIO: &str = "chaos:page";
pub const SLOW_SCENARIO: &str = "chaos:slow";
pub const STORE_SCENARIO: &str = "chaos:store";

/// The scenario of a `[triggered.NAME]` flow's triggers.
pub fn trigger_scenario(flow: &str) -> String {
    format!("triggered:{flow}")
}

/// The scenario of a `[broadcast.NAME]` flow's publishing requests.
pub fn broadcast_scenario(flow: &str) -> String {
    format!("broadcast:{flow}")
}

/// The value a trigger sends, from its user's nonce: letters, digits and dashes, which no
/// form, URL or mail encoding changes, so its delivery carries it as sent.
pub(crate) fn trigger_value(nonce: &str) -> String {
    format!("replicheck-{nonce}")
}

/// Triggers each replica accepts per flow, with every replica running and alone.
const TRIGGERS_PER_REPLICA: usize = 2;
/// Triggers per flow the victim accepts right before it is terminated.
const TRIGGERS_BEFORE_SIGTERM: usize = 3;
/// How often the sink is looked at while a delivery is awaited.
const DELIVERY_POLL: Duration = Duration::from_millis(50);
/// Why background work cannot be watched.
const NO_SINK: &str = "the run has no sink the replicas can reach (containers on a remote engine cannot reach this host)";

/// How long in-flight requests run before SIGTERM arrives.
pub const IN_FLIGHT_LEAD: Duration = Duration::from_millis(300);
/// How long a paused replica stays paused.
const PAUSE_FOR: Duration = Duration::from_secs(1);
/// How long the store stays down before replicas are asked about it.
const STORE_DOWN_BEFORE_PROBES: Duration = Duration::from_millis(300);
/// Slow requests in flight at SIGTERM.
const SLOW_USERS: u32 = 2;

/// The one-step scenarios experiments send besides the users' own: a page, a slow
/// request (when the target has one), a request that needs the store (when the target's
/// session or cache flow gives one).
pub fn own_scenarios(target: &Target) -> Vec<Scenario> {
    let one_step = |name: &str, request: RequestSpec, expect: Expect, vars: IndexMap<String, Template>| Scenario {
        name: name.to_owned(),
        about: String::new(),
        vars,
        steps: vec![Step {
            name: name.trim_start_matches("chaos:").to_owned(),
            request,
            captures: Vec::new(),
            expect,
            // An app that answers 5xx does not serve, whatever else a step accepts.
            reject: Some(Expect {
                status: Some(StatusSet::Class("5xx".into())),
                ..Expect::default()
            }),
            route: RouteHint::Policy,
            produces: None,
            consumes: None,
        }],
    };
    let success = Expect {
        status: Some(StatusSet::Class("2xx".into())),
        ..Expect::default()
    };
    // Any answer below 500 serves: a page may redirect, or need a user.
    let mut scenarios = vec![one_step(PAGE_SCENARIO, RequestSpec::get(Template::literal(&target.chaos.page.0)), Expect::default(), IndexMap::new())];
    if let Some(slow) = &target.chaos.slow {
        let vars: Vars = [("ms".to_owned(), target.chaos.slow_for.as_millis().to_string())].into();
        if let Ok(path) = slow.render(&vars) {
            scenarios.push(one_step(SLOW_SCENARIO, RequestSpec::get(Template::literal(&path)), success.clone(), IndexMap::new()));
        }
    }
    let store_request = target.cache.as_ref().or(target.session.as_ref()).map(|flow| flow.set.clone());
    if let Some(request) = store_request {
        let vars = IndexMap::from([
            ("key".to_owned(), Template::parse("replicheck-store-{nonce}").expect("static template")),
            ("value".to_owned(), Template::parse("value-{nonce}").expect("static template")),
        ]);
        scenarios.push(one_step(STORE_SCENARIO, request, success.clone(), vars));
    }
    let value = || IndexMap::from([("value".to_owned(), Template::parse(&trigger_value("{nonce}")).expect("static template"))]);
    for flow in &target.triggered {
        scenarios.push(one_step(&trigger_scenario(&flow.name), flow.request.clone(), success.clone(), value()));
    }
    for flow in &target.broadcast {
        if let Publish::Request(request) = &flow.publish {
            scenarios.push(one_step(&broadcast_scenario(&flow.name), (**request).clone(), success.clone(), value()));
        }
    }
    scenarios
}

/// What an experiment works with.
pub struct Arena<'a> {
    pub cluster: &'a mut Cluster,
    pub balancer: &'a Balancer,
    pub ctx: &'a Arc<VuContext>,
    pub target: &'a Target,
    pub concurrency: usize,
    /// User numbers for the experiment's own requests (pages, slow requests) start here.
    pub extra_vu: u32,
    probe: reqwest::Client,
    secrets: Secrets,
}

impl<'a> Arena<'a> {
    pub fn new(cluster: &'a mut Cluster, balancer: &'a Balancer, ctx: &'a Arc<VuContext>, target: &'a Target, concurrency: usize, extra_vu: u32) -> Self {
        Self {
            cluster,
            balancer,
            ctx,
            target,
            concurrency,
            extra_vu,
            probe: crate::client::probe_client(),
            secrets: Secrets::default(),
        }
    }

    pub(super) fn now_ms(&self) -> f64 {
        ms_since(self.ctx.origin)
    }

    /// Secrets the experiments' users saw, for scrubbing logs.
    pub fn into_secrets(self) -> Secrets {
        self.secrets
    }

    pub(super) async fn users(&mut self, plans: Vec<VuPlan>, phase: Phase) -> Vec<VuRecord> {
        let ctx = self.ctx;
        self.users_of(ctx, plans, phase).await
    }

    /// Users of another client (see `VuContext::for_client`).
    pub(super) async fn users_of(&mut self, ctx: &Arc<VuContext>, plans: Vec<VuPlan>, phase: Phase) -> Vec<VuRecord> {
        let executed = vu::execute(ctx, plans, phase, self.concurrency).await;
        self.secrets.extend(&executed.secrets);
        executed.history.vus
    }

    /// Waits for users already running, keeps the secrets they saw, and gathers their records.
    pub(super) async fn collect(&mut self, users: vu::Users) -> Vec<VuRecord> {
        let executed = vu::collect(users).await;
        self.secrets.extend(&executed.secrets);
        executed.history.vus
    }

    /// A user of one of the experiment's scenarios, every step routed to `replica`.
    pub(super) fn own_user(&mut self, scenario: &str, replica: ReplicaId) -> VuPlan {
        self.extra_vu += 1;
        let steps = self.ctx.scenarios.get(scenario).map_or(1, |s| s.steps.len());
        VuPlan {
            vu: self.extra_vu,
            scenario: scenario.to_owned(),
            nonce: format!("{:012x}", self.extra_vu),
            routes: vec![replica; steps],
        }
    }

    /// A user that triggers `flow`'s work on `replica`, and the value its delivery carries.
    fn trigger(&mut self, flow: &str, replica: ReplicaId, before_sigterm: bool) -> (VuPlan, Trigger) {
        let user = self.own_user(&trigger_scenario(flow), replica);
        let trigger = Trigger { vu: user.vu, flow: flow.to_owned(), value: trigger_value(&user.nonce), before_sigterm };
        (user, trigger)
    }

    async fn probe(&self, purpose: ProbePurpose, endpoint: Endpoint, path: &str) -> Probe {
        probe(&self.probe, self.ctx.origin, purpose, endpoint, path).await
    }
}

/// Runs the experiment and heals the cluster after it, whatever happened.
pub async fn run(plan: &ExperimentPlan, arena: &mut Arena<'_>, phase: Phase) -> ExperimentRun {
    let mut run = ExperimentRun::new(&plan.experiment().to_string(), phase);
    let result = match plan.kind {
        ExperimentKind::Sigterm => sigterm(plan.victim, arena, &mut run).await,
        ExperimentKind::StoreOutage => store_outage(plan, arena, &mut run).await,
        ExperimentKind::ColdStart => cold_start(plan, arena, &mut run).await,
        ExperimentKind::Hardened => hardened(plan, arena, &mut run).await,
        ExperimentKind::ScheduledJobs => scheduled_jobs(arena, &mut run).await,
        ExperimentKind::TriggeredWork => triggered_work(plan, arena, &mut run).await,
        ExperimentKind::Broadcast => super::live::broadcast(plan.victim, arena, &mut run).await,
        ExperimentKind::Limits => super::limits::limits(plan.victim, arena, &mut run).await,
        _ => handoffs(plan, arena, &mut run).await,
    };
    if let Err(err) = result {
        run.error = Some(err.to_string());
    }
    if let Err(err) = heal(arena, &mut run).await {
        run.error.get_or_insert_with(|| format!("healing after the experiment failed: {err}"));
    }
    run
}

/// One disruption between a schedule's steps (exploration); the cluster is whole and every
/// replica serves again when it returns.
pub async fn disrupt(disruption: Disruption, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let result = match disruption {
        Disruption::Restart(id) => restart(arena, run, id, false).await,
        Disruption::Kill(id) => restart(arena, run, id, true).await,
        Disruption::StoreRestart => match arena.cluster.store().map(str::to_owned) {
            Some(store) => store_restart(arena, run, &store).await,
            None => Err(ClusterError::UnknownDependency("redis".into())),
        },
    };
    let healed = heal(arena, run).await;
    result.and(healed)
}

/// Users produce artifacts, the disruption happens while they wait, then they consume.
async fn handoffs(plan: &ExperimentPlan, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    // The control takes away the disruption and nothing else: the same users on the same
    // routes, undisturbed. A replica that a scale-out has yet to add cannot be routed to,
    // so there the control stays on the replica that produces.
    let controls = plan
        .handoffs
        .iter()
        .map(|h| match plan.kind {
            ExperimentKind::ScaleOut => h.user.pinned(h.user.routes.first().copied().unwrap_or(plan.victim)),
            _ => h.user.clone(),
        })
        .collect();
    run.control = arena.users(controls, Phase::Control).await;

    // A store restart is judged by what the app answers once the store serves again.
    let recover = (plan.kind == ExperimentKind::StoreRestart).then_some(RECOVERY);
    let gated = plan.handoffs.iter().map(|h| Gated { plan: h.user.clone(), gate: h.gate, recover }).collect();
    let (mut keeper, users) = vu::spawn_gated(arena.ctx, gated, run.phase);
    keeper.all_arrived().await;
    let load = plan.load.as_ref().map(|load| Looping::start(arena, load, run.phase));
    let began = Instant::now();
    let mut added = None;
    let disrupted = match plan.kind {
        ExperimentKind::Restart => restart(arena, run, plan.victim, false).await,
        ExperimentKind::Kill => restart(arena, run, plan.victim, true).await,
        ExperimentKind::Pause => pause(arena, run, plan.victim).await,
        ExperimentKind::RollingRestart => rolling_restart(arena, run).await,
        ExperimentKind::ScaleOut => scale_out(arena, run).await.map(|endpoint| added = Some(endpoint)),
        ExperimentKind::StoreRestart => store_restart(arena, run, disrupted(plan)?).await,
        ExperimentKind::Sigterm
        | ExperimentKind::StoreOutage
        | ExperimentKind::ColdStart
        | ExperimentKind::Hardened
        | ExperimentKind::ScheduledJobs
        | ExperimentKind::TriggeredWork
        | ExperimentKind::Broadcast
        | ExperimentKind::Limits => Ok(()),
    };
    let lasted = began.elapsed();
    if let Some(load) = load {
        run.load = load.finish(arena).await;
    }
    keeper.open();
    run.disrupted = arena.collect(users).await;
    if let Some(added) = added {
        scale_in(arena, run, added).await?;
    }
    if let Some(load) = &plan.load
        && run.users().any(|u| u.first_failure().is_some())
    {
        run.loaded = loaded_control(plan, arena, load, lasted).await;
    }
    if plan.kind == ExperimentKind::StoreRestart {
        // Still unanswered after the recovery window: does the app serve the flow at all?
        let unanswered = failed_flows(&run.disrupted, StepRecord::unanswered).into_iter().map(|(replica, flow)| arena.own_user(&flow, replica)).collect();
        run.recovered = arena.users(unanswered, run.phase).await;
    }
    disrupted
}

/// The control of an experiment with a load, once a user failed in it: the same users
/// and the same load for as long as the disruption lasted, without it. A flow that fails
/// under the load alone (a cache that evicts entries when the load fills it) shows
/// nothing about the disruption.
async fn loaded_control(plan: &ExperimentPlan, arena: &mut Arena<'_>, load: &Load, lasted: Duration) -> Vec<VuRecord> {
    let gated = plan.handoffs.iter().map(|h| Gated { plan: h.user.clone(), gate: h.gate, recover: None }).collect();
    let (mut keeper, users) = vu::spawn_gated(arena.ctx, gated, Phase::Control);
    keeper.all_arrived().await;
    let looping = Looping::start(arena, load, Phase::Control);
    sleep(lasted).await;
    let mut loaded = looping.finish(arena).await;
    keeper.open();
    loaded.extend(arena.collect(users).await);
    loaded
}

/// Looping users (`vu::spawn_load`) and the means to stop them.
struct Looping {
    stop: watch::Sender<bool>,
    users: vu::Users,
}

impl Looping {
    fn start(arena: &Arena<'_>, load: &Load, phase: Phase) -> Looping {
        let (stop, stopped) = watch::channel(false);
        Looping { users: vu::spawn_load(arena.ctx, load, phase, stopped), stop }
    }

    /// Stops the users after their current pass, and gathers every pass.
    async fn finish(self, arena: &mut Arena<'_>) -> Vec<VuRecord> {
        let _ = self.stop.send(true);
        arena.collect(self.users).await
    }
}

/// A new deployment, twice: every replica stopped, the shared directory emptied and every
/// database put back to its seed, then users hand artifacts from one replica to another at
/// once. The control starts one replica and uses it before the others start, so they find
/// what it made (its key ring, its migrations), and the others start one at a time; the
/// trial starts them all at the same instant. Only the simultaneity differs. A replica that
/// does not start in the trial, and the lines the replicas wrote of errors when users
/// failed, are the trial's evidence.
async fn cold_start(plan: &ExperimentPlan, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let users: Vec<VuPlan> = plan.handoffs.iter().map(|h| h.user.clone()).collect();
    let ids: Vec<ReplicaId> = arena.cluster.endpoints().iter().map(|e| e.replica.id).collect();
    let (Some((&first, rest)), Some(handoff)) = (ids.split_first(), plan.handoffs.first()) else { return Ok(()) };

    anew(arena, run).await?;
    start_together(arena, run, &[first]).await?;
    // The first use of the first replica, on it alone: a user of the first handoff's scenario.
    arena.extra_vu += 1;
    let first_use = VuPlan {
        vu: arena.extra_vu,
        nonce: format!("{:012x}", arena.extra_vu),
        ..handoff.user.pinned(first)
    };
    run.control = arena.users(vec![first_use], Phase::Control).await;
    // Then the others one at a time: two started together could race each other still
    // (a migration lock every start takes, even with nothing to migrate).
    for &id in rest {
        start_together(arena, run, &[id]).await?;
    }
    let control = arena.users(users.clone(), Phase::Control).await;
    run.control.extend(control);

    anew(arena, run).await?;
    let before = arena.cluster.endpoints();
    if let Err(err) = start_together(arena, run, &ids).await {
        // Users cannot hand artifacts across a replica that is not there.
        return blame_start(arena, run, &before, &err);
    }
    run.disrupted = arena.users(users, run.phase).await;
    if run.disrupted.iter().any(|u| u.first_failure().is_some()) {
        run.refused = lines_with(arena, &ERRORS).await;
    }
    Ok(())
}

/// Records the replica a start of `before`'s replicas failed for: the one still at its
/// stopped incarnation. With none to blame, the experiment failed, not the app.
fn blame_start(arena: &Arena<'_>, run: &mut ExperimentRun, before: &[Endpoint], err: &ClusterError) -> Result<(), ClusterError> {
    let now = arena.cluster.endpoints();
    let why = arena.secrets.redact(&crate::errors::chain(err));
    match before.iter().find(|old| now.iter().any(|e| e.replica == old.replica)) {
        Some(old) => run.start_failure = Some(StartFailure { replica: old.replica.next(), why }),
        None => run.error = Some(why),
    }
    Ok(())
}

/// Every replica runs the target's scheduled jobs for a while (the trial); for jobs with a
/// start marker, the replica that begins one is then terminated and replaced; then one
/// replica runs alone, the others terminated as the platform terminates them (the
/// control): a job that runs once per occurrence delivers each occurrence once either way.
async fn scheduled_jobs(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let Some(inbox) = arena.cluster.deliveries() else {
        run.error = Some(NO_SINK.into());
        return Ok(());
    };
    let watch = arena.target.scheduled.iter().map(|job| job.watch).max().unwrap_or_default();
    let from = Instant::now();
    let everyone: Vec<Incarnation> = arena.cluster.endpoints().iter().map(|e| e.replica).collect();
    watch_window(arena, run, run.phase, everyone, watch).await;
    let markers: Vec<Recogniser> = arena.target.scheduled.iter().filter_map(|job| job.started.clone()).collect();
    if !markers.is_empty() {
        // A long job begins somewhere: the replica running it is terminated half-way
        // through and replaced, as a rolling restart does.
        let start_ms = arena.now_ms();
        let running = first_delivery(&inbox, Instant::now(), watch, |_, what| markers.iter().any(|m| what.is(m))).await;
        if let Some(victim) = running {
            restart(arena, run, victim, false).await?;
            sleep(watch).await;
        }
        let replicas = arena.cluster.endpoints().iter().map(|e| e.replica).collect();
        push_window(arena, run, run.phase, replicas, start_ms);
    }
    let alone = alone(arena, run).await?;
    watch_window(arena, run, Phase::Control, vec![alone], watch).await;
    run.deliveries = Some(inbox.since(arena.ctx.origin, from));
    Ok(())
}

/// Work triggered through every replica in turn (the trial); then work the victim accepts
/// right before it is terminated as the platform terminates it (once its long jobs have
/// begun, for flows with a start marker) and replaced; then work triggered through one
/// replica alone, the others terminated (the control). Each trigger sends a value of its
/// own, which its delivery carries; every part waits the flows' bound.
async fn triggered_work(plan: &ExperimentPlan, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let Some(inbox) = arena.cluster.deliveries() else {
        run.error = Some(NO_SINK.into());
        return Ok(());
    };
    let flows: Vec<String> = arena.target.triggered.iter().map(|flow| flow.name.clone()).collect();
    let within = arena.target.triggered.iter().map(|flow| flow.within).max().unwrap_or_default();
    let from = Instant::now();
    let everyone: Vec<Incarnation> = arena.cluster.endpoints().iter().map(|e| e.replica).collect();

    let spread: Vec<(ReplicaId, bool)> = (0..TRIGGERS_PER_REPLICA * everyone.len()).map(|k| (everyone[k % everyone.len()].id, false)).collect();
    let start_ms = arena.now_ms();
    run.disrupted = triggers(arena, run, &flows, &spread, run.phase).await;
    sleep(within).await;
    push_window(arena, run, run.phase, everyone.clone(), start_ms);

    let victim = arena.cluster.endpoint(plan.victim).ok_or(ClusterError::UnknownReplica(plan.victim))?.replica;
    let start_ms = arena.now_ms();
    let first = run.triggers.len();
    let accepted = triggers(arena, run, &flows, &[(victim.id, true); TRIGGERS_BEFORE_SIGTERM], run.phase).await;
    let begun = start_markers(arena.target, &run.triggers[first..], &accepted);
    run.disrupted.extend(accepted);
    until_begun(&inbox, from, victim.id, &begun, within).await;
    // Terminated and then replaced, as a rolling restart does: work it kept where its
    // next incarnation finds it is not lost.
    restart(arena, run, victim.id, false).await?;
    // The bound counts again once the victim is gone: work it handed back has all of it.
    sleep(within).await;
    let running = arena.cluster.endpoints().iter().map(|e| e.replica).collect();
    push_window(arena, run, run.phase, running, start_ms);

    let alone = alone(arena, run).await?;
    let start_ms = arena.now_ms();
    let only: Vec<(ReplicaId, bool)> = vec![(alone.id, false); TRIGGERS_PER_REPLICA * everyone.len()];
    run.control = triggers(arena, run, &flows, &only, Phase::Control).await;
    sleep(within).await;
    push_window(arena, run, Phase::Control, vec![alone], start_ms);
    run.deliveries = Some(inbox.since(arena.ctx.origin, from));
    Ok(())
}

/// The start markers the victim may send for the work it accepted: for each flow that has
/// one, the values of its triggers answered 2xx.
fn start_markers(target: &Target, triggers: &[Trigger], records: &[VuRecord]) -> Vec<(Recogniser, Vec<String>)> {
    let passed = |vu: u32| records.iter().any(|r| r.vu == vu && r.steps.first().is_some_and(|s| matches!(s.outcome, Outcome::Passed)));
    target
        .triggered
        .iter()
        .filter_map(|flow| {
            let values: Vec<String> = triggers.iter().filter(|t| t.flow == flow.name && passed(t.vu)).map(|t| t.value.clone()).collect();
            Some((flow.started.clone()?, values)).filter(|(_, values)| !values.is_empty())
        })
        .collect()
}

/// With start markers, SIGTERM waits (at most `within`) until the victim has begun one job
/// of each such flow, so that it lands on a long job half-way and on the rest queued.
async fn until_begun(inbox: &Inbox, from: Instant, victim: ReplicaId, begun: &[(Recogniser, Vec<String>)], within: Duration) {
    let deadline = Instant::now() + within;
    for (marker, values) in begun {
        let left = deadline.saturating_duration_since(Instant::now());
        first_delivery(inbox, from, left, |replica, what| replica == victim && what.is(marker) && values.iter().any(|v| what.carries(v))).await;
    }
}

/// The replica that delivered the first thing `wanted` from `from` on, waited for at most
/// `within`.
pub(crate) async fn first_delivery(inbox: &Inbox, from: Instant, within: Duration, wanted: impl Fn(ReplicaId, &Delivered) -> bool) -> Option<ReplicaId> {
    let deadline = Instant::now() + within;
    loop {
        let found = inbox.first(from, &wanted);
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        sleep(DELIVERY_POLL).await;
    }
}

/// One trigger of each flow per `(replica, before_sigterm)`, sent at once.
async fn triggers(arena: &mut Arena<'_>, run: &mut ExperimentRun, flows: &[String], to: &[(ReplicaId, bool)], phase: Phase) -> Vec<VuRecord> {
    let mut users = Vec::new();
    for flow in flows {
        for &(replica, before_sigterm) in to {
            let (user, trigger) = arena.trigger(flow, replica, before_sigterm);
            users.push(user);
            run.triggers.push(trigger);
        }
    }
    arena.users(users, phase).await
}

/// Every running replica but one terminated as the platform terminates them; the one
/// left. Runs of one replica skip the experiments that ask this, so there is one to leave.
async fn alone(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<Incarnation, ClusterError> {
    let endpoints = arena.cluster.endpoints();
    let Some((kept, others)) = endpoints.split_first() else { return Err(ClusterError::NoneRunning) };
    for other in others {
        terminate(arena, other.replica).await?.record(run);
    }
    Ok(kept.replica)
}

async fn watch_window(arena: &mut Arena<'_>, run: &mut ExperimentRun, phase: Phase, replicas: Vec<Incarnation>, watch: Duration) {
    let start_ms = arena.now_ms();
    sleep(watch).await;
    push_window(arena, run, phase, replicas, start_ms);
}

fn push_window(arena: &Arena<'_>, run: &mut ExperimentRun, phase: Phase, replicas: Vec<Incarnation>, start_ms: f64) {
    run.windows.push(Window { phase, start_ms, end_ms: arena.now_ms(), replicas });
}

/// What a replica's output says when the platform refused it something.
const REFUSALS: [&str; 6] = ["read-only file system", "permission denied", "operation not permitted", "eacces", "erofs", "eperm"];

/// What a replica's output says when something failed (a migration that raced another
/// replica's: "already exists", a duplicate key, a lock not taken).
const ERRORS: [&str; 7] = ["error", "exception", "traceback", "fatal", "already exists", "duplicate", "lock"];

/// Lines of the replicas' output kept as evidence, at most.
const MAX_REFUSED: usize = 10;

/// The lines the replicas have written so far that contain one of `words`.
async fn lines_with(arena: &mut Arena<'_>, words: &[&str]) -> Vec<Refusal> {
    let mut found = Vec::new();
    for endpoint in arena.cluster.endpoints() {
        let output = arena.cluster.output(endpoint.replica.id).await.unwrap_or_default();
        let matching = output.lines().filter(|line| words.iter().any(|w| line.to_lowercase().contains(w)));
        for line in matching {
            let refusal = Refusal { replica: endpoint.replica, line: arena.secrets.redact(line.trim()) };
            if found.len() < MAX_REFUSED && !found.contains(&refusal) {
                found.push(refusal);
            }
        }
    }
    found
}

/// The users run on the replicas as the target runs them (the control), then on replicas
/// run as a restricted platform runs containers; then the target's replicas come back.
/// What the hardened replicas wrote of refusals is the evidence of what they needed.
async fn hardened(plan: &ExperimentPlan, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let users: Vec<VuPlan> = plan.handoffs.iter().map(|h| h.user.clone()).collect();
    let ids: Vec<ReplicaId> = arena.cluster.endpoints().iter().map(|e| e.replica.id).collect();
    run.control = arena.users(users.clone(), Phase::Control).await;

    let before = arena.cluster.endpoints();
    kill_all(arena, run).await?;
    arena.cluster.harden(true)?;
    let started = start_together(arena, run, &ids).await;
    arena.cluster.harden(false)?;
    match started {
        Ok(()) => {
            run.disrupted = arena.users(users, run.phase).await;
            // A container's output reaches the engine's log a moment after it is written.
            for _ in 0..10 {
                run.refused = lines_with(arena, &REFUSALS).await;
                if !run.refused.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(err) => blame_start(arena, run, &before, &err)?,
    }

    kill_all(arena, run).await?;
    start_together(arena, run, &ids).await
}

/// Every replica killed and out of routing, then the shared directory emptied and every
/// database put back to its seed.
async fn anew(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    kill_all(arena, run).await?;
    let start_ms = arena.now_ms();
    arena.cluster.empty_shared().await?;
    push(arena, run, ChaosAction::SharedEmptied, start_ms);
    let start_ms = arena.now_ms();
    for dependency in arena.cluster.empty_databases().await? {
        push(arena, run, ChaosAction::DatabaseEmptied { dependency }, start_ms);
    }
    Ok(())
}

async fn kill_all(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    for endpoint in arena.cluster.endpoints() {
        let start_ms = arena.now_ms();
        arena.cluster.kill(endpoint.replica.id).await?;
        push(arena, run, ChaosAction::Kill { replica: endpoint.replica }, start_ms);
        arena.balancer.upstreams().remove(endpoint.replica);
    }
    Ok(())
}

/// The next incarnations of `ids`, launched at the same instant and asked for their first
/// pages at the same instant, as traffic reaches a new deployment; each takes traffic once
/// it serves.
async fn start_together(arena: &mut Arena<'_>, run: &mut ExperimentRun, ids: &[ReplicaId]) -> Result<(), ClusterError> {
    let start_ms = arena.now_ms();
    let fresh = arena.cluster.start_next_together(ids).await?;
    for endpoint in &fresh {
        push(arena, run, ChaosAction::Start { replica: endpoint.replica }, start_ms);
    }
    let probes = futures_util::future::join_all(fresh.iter().map(|&endpoint| until_served(arena, endpoint))).await;
    run.probes.extend(probes.into_iter().flatten());
    for endpoint in &fresh {
        arena.balancer.upstreams().insert(endpoint);
    }
    Ok(())
}

/// Stops one replica (terminated as the platform would, or SIGKILLed) and starts its
/// next incarnation.
pub(super) async fn restart(arena: &mut Arena<'_>, run: &mut ExperimentRun, id: ReplicaId, kill: bool) -> Result<(), ClusterError> {
    let old = arena.cluster.endpoint(id).ok_or(ClusterError::UnknownReplica(id))?;
    if kill {
        let start_ms = arena.now_ms();
        arena.cluster.kill(id).await?;
        push(arena, run, ChaosAction::Kill { replica: old.replica }, start_ms);
        arena.balancer.upstreams().remove(old.replica);
    } else {
        terminate(arena, old.replica).await?.record(run);
    }
    let start_ms = arena.now_ms();
    let fresh = arena.cluster.start_next(id).await?;
    started(arena, run, fresh, start_ms).await;
    Ok(())
}

async fn pause(arena: &mut Arena<'_>, run: &mut ExperimentRun, id: ReplicaId) -> Result<(), ClusterError> {
    let replica = arena.cluster.endpoint(id).ok_or(ClusterError::UnknownReplica(id))?.replica;
    let start_ms = arena.now_ms();
    arena.cluster.pause(id).await?;
    push(arena, run, ChaosAction::Pause { replica }, start_ms);
    sleep(PAUSE_FOR).await;
    let start_ms = arena.now_ms();
    arena.cluster.resume(id).await?;
    push(arena, run, ChaosAction::Resume { replica }, start_ms);
    Ok(())
}

/// Every replica in turn: its next incarnation starts and takes traffic first (surge 1,
/// none unavailable), then the old one is terminated as the platform would.
async fn rolling_restart(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let ids: Vec<ReplicaId> = arena.cluster.endpoints().iter().map(|e| e.replica.id).collect();
    for id in ids {
        let old = arena.cluster.endpoint(id).ok_or(ClusterError::UnknownReplica(id))?;
        let start_ms = arena.now_ms();
        let fresh = arena.cluster.surge(id).await?;
        started(arena, run, fresh, start_ms).await;
        terminate(arena, old.replica).await?.record(run);
    }
    Ok(())
}

async fn scale_out(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<Endpoint, ClusterError> {
    let start_ms = arena.now_ms();
    let added = arena.cluster.scale_out().await?;
    started(arena, run, added, start_ms).await;
    Ok(added)
}

/// Takes the replica `scale_out` added away again, so later experiments see N replicas.
async fn scale_in(arena: &mut Arena<'_>, run: &mut ExperimentRun, added: Endpoint) -> Result<(), ClusterError> {
    terminate(arena, added.replica).await?.record(run);
    arena.cluster.forget(added.replica.id);
    Ok(())
}

pub(super) async fn store_restart(arena: &mut Arena<'_>, run: &mut ExperimentRun, dependency: &str) -> Result<(), ClusterError> {
    stop_dependency(arena, run, dependency).await?;
    start_dependency(arena, run, dependency).await?;
    wait_all_ready(arena, run).await;
    Ok(())
}

/// The dependency a store experiment disrupts.
fn disrupted(plan: &ExperimentPlan) -> Result<&str, ClusterError> {
    plan.dependency.as_deref().ok_or_else(|| ClusterError::NoDependencyNamed(plan.experiment().to_string()))
}

async fn stop_dependency(arena: &mut Arena<'_>, run: &mut ExperimentRun, dependency: &str) -> Result<(), ClusterError> {
    let start_ms = arena.now_ms();
    arena.cluster.stop_dependency(dependency).await?;
    push(arena, run, ChaosAction::StoreStop { dependency: dependency.to_owned() }, start_ms);
    Ok(())
}

async fn start_dependency(arena: &mut Arena<'_>, run: &mut ExperimentRun, dependency: &str) -> Result<(), ClusterError> {
    let start_ms = arena.now_ms();
    arena.cluster.start_dependency(dependency).await?;
    push(arena, run, ChaosAction::StoreStart { dependency: dependency.to_owned() }, start_ms);
    Ok(())
}

/// The victim is terminated with requests in flight and more arriving while the
/// balancer still routes to it; its page and its readiness are asked straight while it
/// drains, to see whether it says ready while it cannot serve.
async fn sigterm(victim: ReplicaId, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let endpoint = arena.cluster.endpoint(victim).ok_or(ClusterError::UnknownReplica(victim))?;
    let has_slow = arena.target.chaos.slow.is_some();
    // The control: readiness, a page and a slow request, undisturbed.
    run.probes.push(arena.probe(ProbePurpose::ReadyBefore, endpoint, &arena.target.health.ready.0).await);
    let mut controls = vec![arena.own_user(PAGE_SCENARIO, victim)];
    if has_slow {
        controls.push(arena.own_user(SLOW_SCENARIO, victim));
    }
    run.control = arena.users(controls, Phase::Control).await;

    let settings = arena.target.balancer;
    let (sigterm_after, routed_for) = (settings.sigterm_after(), settings.routed_for());
    let slow_users: Vec<VuPlan> = if has_slow { (0..SLOW_USERS).map(|_| arena.own_user(SLOW_SCENARIO, victim)).collect() } else { Vec::new() };
    // Slow requests are to be in flight when SIGTERM arrives: sent a little before it, or
    // before the balancer stops routing to the victim if that comes first (a preStop
    // hook longer than the deregistration delay).
    let send_slow_at = sigterm_after.min(routed_for);
    let (lead_in, slow_after) = match send_slow_at.checked_sub(IN_FLIGHT_LEAD) {
        Some(after) if has_slow => (Duration::ZERO, after),
        _ if has_slow => (IN_FLIGHT_LEAD - send_slow_at, Duration::ZERO),
        _ => (Duration::ZERO, Duration::ZERO),
    };
    // Pages arrive while the balancer still routes to the victim after SIGTERM, or, when
    // it stops before SIGTERM, while it still routes at all.
    let (window_start, window) = match routed_for.checked_sub(sigterm_after) {
        Some(after_sigterm) if !after_sigterm.is_zero() => (sigterm_after, after_sigterm),
        _ => (Duration::ZERO, routed_for),
    };
    let arrivals: Vec<(Duration, VuPlan)> = [0.25, 0.5, 0.75]
        .into_iter()
        .map(|share| (window_start + window.mul_f64(share), arena.own_user(PAGE_SCENARIO, victim)))
        .collect();
    let phase = run.phase;
    let (ctx, concurrency) = (arena.ctx.clone(), arena.concurrency);
    let in_flight = tokio::spawn(async move {
        sleep(slow_after).await;
        vu::execute(&ctx, slow_users, phase, concurrency).await
    });
    sleep(lead_in).await;

    let (page, ready) = (arena.target.chaos.page.0.clone(), arena.target.health.ready.0.clone());
    let (client, origin, ctx) = (arena.probe.clone(), arena.ctx.origin, arena.ctx.clone());
    let (done, drained) = watch::channel(false);
    let pages = async {
        let sent = arrivals.into_iter().map(|(after, user)| {
            let ctx = ctx.clone();
            async move {
                sleep(after).await;
                vu::execute(&ctx, vec![user], phase, 1).await
            }
        });
        futures_util::future::join_all(sent).await
    };
    let watched = watch_drain(&client, origin, endpoint, &page, &ready, drained);
    let terminating = async {
        let termination = terminate(arena, endpoint.replica).await;
        let _ = done.send(true);
        termination
    };
    let (termination, pages, probes) = tokio::join!(terminating, pages, watched);
    termination?.record(run);
    run.probes.extend(probes);
    let executed = pages.into_iter().chain(in_flight.await.ok());
    for executed in executed {
        arena.secrets.extend(&executed.secrets);
        run.disrupted.extend(executed.history.vus);
    }
    run.disrupted.sort_by_key(|v| v.vu);
    Ok(())
}

/// How often a draining or starting replica's page and readiness are asked.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Samples recorded per watch, at most: enough to show an order of events, few enough
/// that a replica that never comes back does not flood the history.
const MAX_SAMPLES: usize = 40;

/// Asks a terminating replica's page and readiness, straight, one after the other, until
/// `done` turns true (the replica exited). Once both are refused a few times in a row the
/// replica is gone and there is nothing more to see.
async fn watch_drain(client: &reqwest::Client, origin: Instant, endpoint: Endpoint, page: &str, ready: &str, mut done: watch::Receiver<bool>) -> Vec<Probe> {
    let mut probes = Vec::new();
    let mut gone_in_a_row = 0;
    while !*done.borrow() && probes.len() < 2 * MAX_SAMPLES && gone_in_a_row < 3 {
        let served = probe(client, origin, ProbePurpose::DrainPage, endpoint, page).await;
        let readiness = probe(client, origin, ProbePurpose::ReadyDraining, endpoint, ready).await;
        gone_in_a_row = if served.status.is_none() && readiness.status.is_none() { gone_in_a_row + 1 } else { 0 };
        probes.extend([served, readiness]);
        // Wakes early when the replica is gone.
        let _ = tokio::time::timeout(SAMPLE_EVERY, done.changed()).await;
    }
    probes
}

/// The dependency stops for a while. Each replica is asked for every flow that may need
/// it (the store request, each of the workload's scenarios, pinned to the replica) before,
/// during and after the outage, and for its readiness meanwhile. A flow that failed during
/// the outage is asked again once the dependency is back, until it passes: the outage, not
/// the asking, is what it failed of.
async fn store_outage(plan: &ExperimentPlan, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let dependency = disrupted(plan)?;
    let endpoints = arena.cluster.endpoints();
    let ready = arena.target.health.ready.0.clone();
    for endpoint in &endpoints {
        run.probes.push(arena.probe(ProbePurpose::ReadyBefore, *endpoint, &ready).await);
    }
    let flows = outage_flows(arena);
    let asked = |arena: &mut Arena<'_>, flows: &[String]| -> Vec<VuPlan> {
        endpoints.iter().flat_map(|e| flows.iter().map(|flow| (e.replica.id, flow))).map(|(replica, flow)| arena.own_user(flow, replica)).collect()
    };
    let controls = asked(arena, &flows);
    run.control = arena.users(controls, Phase::Control).await;

    stop_dependency(arena, run, dependency).await?;
    sleep(STORE_DOWN_BEFORE_PROBES).await;
    let users = asked(arena, &flows);
    run.disrupted = arena.users(users, run.phase).await;
    // A readiness check may cache its answer for a moment; what counts is whether it
    // goes on saying ready after the app has failed a flow that needs the dependency.
    let window = stale_window(arena.target.health.interval);
    for _ in 0..STALE_SAMPLES {
        for endpoint in &endpoints {
            run.probes.push(arena.probe(ProbePurpose::ReadyStoreDown, *endpoint, &ready).await);
        }
        sleep(window / (STALE_SAMPLES as u32 - 1)).await;
    }
    // And the flows that failed, again: the app still could not serve them through the
    // whole window. One that was served needs no second look.
    let again = failed_flows(&run.disrupted, |_| true).into_iter().map(|(replica, flow)| arena.own_user(&flow, replica)).collect();
    let again = arena.users(again, run.phase).await;
    run.disrupted.extend(again);
    start_dependency(arena, run, dependency).await?;
    wait_all_ready(arena, run).await;

    let mut failed = failed_flows(&run.disrupted, |_| true);
    let deadline = crate::clock::deadline(RECOVERY);
    while !failed.is_empty() {
        let users: Vec<VuPlan> = failed.iter().map(|(replica, flow)| arena.own_user(flow, *replica)).collect();
        let recovered = arena.users(users, Phase::Control).await;
        failed.retain(|(replica, flow)| !recovered.iter().any(|u| u.scenario == *flow && u.first_failure().is_none() && u.steps.first().is_some_and(|s| s.planned == *replica)));
        run.control.extend(recovered);
        if Instant::now() >= deadline {
            break;
        }
        sleep(SAMPLE_EVERY.saturating_mul(3)).await;
    }
    Ok(())
}

/// The flows whose users ended on a step that `counts`, each with the replica that step was
/// planned on, once each.
fn failed_flows(users: &[VuRecord], counts: fn(&StepRecord) -> bool) -> Vec<(ReplicaId, String)> {
    let mut failed: Vec<(ReplicaId, String)> = users.iter().filter_map(|u| u.first_failure().filter(|s| counts(s)).map(|s| (s.planned, u.scenario.clone()))).collect();
    failed.sort();
    failed.dedup();
    failed
}

/// How long a flow that failed during an outage, or a step the app did not answer after a
/// store restart, has to pass again once the dependency is back (a client reconnects with
/// a back-off).
const RECOVERY: Duration = Duration::from_secs(10);

/// The flows an outage asks each replica for: the target's store request, then each of the
/// workload's scenarios.
fn outage_flows(arena: &Arena<'_>) -> Vec<String> {
    let own = own_scenarios(arena.target);
    let workload = arena.ctx.scenarios.keys().filter(|name| !own.iter().any(|s| s.name == **name)).cloned();
    let store = arena.ctx.scenarios.contains_key(STORE_SCENARIO).then(|| STORE_SCENARIO.to_owned());
    store.into_iter().chain(workload).collect()
}

/// Readiness samples taken after a request failed, for readiness to count as stale.
pub const STALE_SAMPLES: usize = 4;

/// How long readiness must go on saying ready after a failure to count as stale: two
/// probe intervals of the balancer, and at least a second.
pub fn stale_window(interval: Duration) -> Duration {
    interval.saturating_mul(2).max(Duration::from_secs(1))
}

/// Restarts whatever is down, and makes the balancer's table the cluster's again.
async fn heal(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let start_ms = arena.now_ms();
    let down = arena.cluster.dependencies_down().await;
    let fresh = arena.cluster.heal().await?;
    for dependency in down {
        push(arena, run, ChaosAction::StoreStart { dependency }, start_ms);
    }
    for endpoint in fresh {
        started(arena, run, endpoint, start_ms).await;
    }
    arena.balancer.upstreams().replace(&arena.cluster.endpoints());
    wait_all_ready(arena, run).await;
    Ok(())
}

/// A new incarnation is ready: record it, ask for a real page at once (does ready mean it
/// serves?), and while it does not serve, ask its page and its readiness in turn until it
/// does; only then does it take traffic.
async fn started(arena: &mut Arena<'_>, run: &mut ExperimentRun, endpoint: Endpoint, start_ms: f64) {
    push(arena, run, ChaosAction::Start { replica: endpoint.replica }, start_ms);
    let probes = until_served(arena, endpoint).await;
    run.probes.extend(probes);
    arena.balancer.upstreams().insert(&endpoint);
}

/// Asks a new incarnation for a real page, then its readiness and the page in turn until
/// it serves (within the ready timeout); the probes are the evidence.
async fn until_served(arena: &Arena<'_>, endpoint: Endpoint) -> Vec<Probe> {
    let (page, ready) = (&arena.target.chaos.page.0, &arena.target.health.ready.0);
    let first = arena.probe(ProbePurpose::FirstPage, endpoint, page).await;
    let mut served = first.served();
    let mut probes = vec![first];
    let deadline = crate::clock::deadline(arena.target.start.ready_timeout);
    let mut samples = 0;
    while !served && Instant::now() < deadline {
        sleep(SAMPLE_EVERY).await;
        let readiness = arena.probe(ProbePurpose::ReadyStarting, endpoint, ready).await;
        let later = arena.probe(ProbePurpose::LaterPage, endpoint, page).await;
        served = later.served();
        samples += 1;
        if samples <= MAX_SAMPLES || served {
            probes.extend([readiness, later]);
        }
    }
    probes
}

/// Waits (within the ready timeout) until every replica says ready again, and tells the
/// balancer, whose own probes may not have caught up yet.
async fn wait_all_ready(arena: &mut Arena<'_>, run: &mut ExperimentRun) {
    let deadline = crate::clock::deadline(arena.target.start.ready_timeout);
    let ready = arena.target.health.ready.0.clone();
    for endpoint in arena.cluster.endpoints() {
        loop {
            if arena.probe(ProbePurpose::ReadyBefore, endpoint, &ready).await.said_ready() {
                arena.balancer.upstreams().mark_ready(endpoint.replica);
                break;
            }
            // One that exited by itself will never be ready: the run tells its exit.
            if arena.cluster.exited(endpoint.replica.id).await {
                break;
            }
            if Instant::now() >= deadline {
                run.notes.push(format!("{} was not ready again within the ready timeout", endpoint.replica));
                break;
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What terminating an incarnation did, with the times the checker judges by.
struct Termination {
    replica: Incarnation,
    /// When the balancer stopped routing to it.
    deregistered_ms: f64,
    /// When SIGTERM was sent, and when the incarnation was gone.
    sigterm_ms: f64,
    exited_ms: f64,
    killed: bool,
}

impl Termination {
    fn record(self, run: &mut ExperimentRun) {
        run.chaos.push(ChaosEvent {
            action: ChaosAction::Sigterm {
                replica: self.replica,
                killed: self.killed,
            },
            start_ms: self.sigterm_ms,
            end_ms: self.exited_ms,
        });
        run.chaos.push(ChaosEvent {
            action: ChaosAction::Deregister { replica: self.replica },
            start_ms: self.deregistered_ms,
            end_ms: self.deregistered_ms,
        });
        run.chaos.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    }
}

/// Terminates an incarnation the way the target's platform does (its deployment model):
/// under `kubernetes` the balancer keeps routing to it for the deregistration delay while
/// a preStop hook sleeps and SIGTERM follows; under `before-sigterm` the balancer stops
/// routing first, and lets what it sent finish. The grace period counts from the start,
/// as Kubernetes counts it.
async fn terminate(arena: &mut Arena<'_>, replica: Incarnation) -> Result<Termination, ClusterError> {
    let settings = arena.target.balancer;
    let (cluster, balancer, origin) = (&mut *arena.cluster, arena.balancer, arena.ctx.origin);
    let grace = cluster.grace();
    let termination = match settings.deregistration {
        Deregistration::BeforeSigterm => {
            // A draining load balancer sends nothing new and lets what it sent finish,
            // for up to the deregistration delay, before the instance is stopped.
            let upstream = balancer.upstreams().incarnation(replica);
            balancer.upstreams().remove(replica);
            let deregistered_ms = ms_since(origin);
            let drained = crate::clock::deadline(settings.deregistration_delay);
            while upstream.as_ref().is_some_and(|u| u.in_flight() > 0) && Instant::now() < drained {
                sleep(Duration::from_millis(10)).await;
            }
            let sigterm_ms = ms_since(origin);
            let outcome = cluster.stop(replica, grace).await;
            (outcome, sigterm_ms, deregistered_ms)
        }
        Deregistration::Kubernetes => {
            balancer.upstreams().hold(replica);
            let stopping = async {
                sleep(settings.pre_stop).await;
                let sigterm_ms = ms_since(origin);
                (cluster.stop(replica, grace.saturating_sub(settings.pre_stop)).await, sigterm_ms)
            };
            let deregistering = async {
                sleep(settings.deregistration_delay).await;
                balancer.upstreams().remove(replica);
                ms_since(origin)
            };
            let ((outcome, sigterm_ms), deregistered_ms) = tokio::join!(stopping, deregistering);
            (outcome, sigterm_ms, deregistered_ms)
        }
    };
    let (outcome, sigterm_ms, deregistered_ms) = termination;
    Ok(Termination {
        replica,
        deregistered_ms,
        sigterm_ms,
        exited_ms: ms_since(origin),
        killed: matches!(outcome?, StopOutcome::Killed { .. }),
    })
}

fn ms_since(origin: Instant) -> f64 {
    origin.elapsed().as_secs_f64() * 1000.0
}

fn push(arena: &Arena<'_>, run: &mut ExperimentRun, action: ChaosAction, start_ms: f64) {
    run.chaos.push(ChaosEvent {
        action,
        start_ms,
        end_ms: arena.now_ms(),
    });
}

/// A request straight to one replica, not through the balancer.
async fn probe(client: &reqwest::Client, origin: Instant, purpose: ProbePurpose, endpoint: Endpoint, path: &str) -> Probe {
    let at_ms = ms_since(origin);
    let (status, error, timed_out) = match client.get(format!("http://{}{path}", endpoint.addr)).send().await {
        Ok(response) => (Some(response.status().as_u16()), None, false),
        Err(err) => (None, Some(crate::errors::chain(&err)), err.is_timeout()),
    };
    Probe {
        purpose,
        replica: endpoint.replica,
        path: path.to_owned(),
        at_ms,
        end_ms: ms_since(origin),
        status,
        error,
        timed_out,
    }
}

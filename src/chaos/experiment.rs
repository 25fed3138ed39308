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
use crate::cluster::replica::{Incarnation, ReplicaId};
use crate::cluster::{Cluster, ClusterError, Endpoint, StopOutcome};
use crate::history::{ChaosAction, ChaosEvent, ExperimentRun, Phase, Probe, ProbePurpose, VuRecord};
use crate::plan::VuPlan;
use crate::redact::Secrets;
use crate::scenario::{RouteHint, Scenario, Step};
use crate::step::{Expect, RequestSpec, StatusSet, Template, Vars};
use crate::target::Target;
use crate::vu::{self, Gated, VuContext};

/// Names of the one-step scenarios experiments send besides the users' own.
pub const PAGE_SCENARIO: &str = "chaos:page";
pub const SLOW_SCENARIO: &str = "chaos:slow";
pub const STORE_SCENARIO: &str = "chaos:store";

/// How long in-flight requests run before SIGTERM arrives.
const IN_FLIGHT_LEAD: Duration = Duration::from_millis(300);
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
            reject: None,
            route: RouteHint::Policy,
            produces: None,
            consumes: None,
        }],
    };
    let success = Expect {
        status: Some(StatusSet::Class("2xx".into())),
        ..Expect::default()
    };
    // Judged by the chaos checker from the answer itself: any answer below 500 serves.
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
        scenarios.push(one_step(STORE_SCENARIO, request, success, vars));
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
            probe: crate::cluster::backend::process::probe_client(),
            secrets: Secrets::default(),
        }
    }

    fn now_ms(&self) -> f64 {
        ms_since(self.ctx.origin)
    }

    /// Secrets the experiments' users saw, for scrubbing logs.
    pub fn into_secrets(self) -> Secrets {
        self.secrets
    }

    async fn users(&mut self, plans: Vec<VuPlan>, phase: Phase) -> Vec<VuRecord> {
        let executed = vu::execute(self.ctx, plans, phase, self.concurrency).await;
        self.secrets.extend(&executed.secrets);
        executed.history.vus
    }

    /// A one-step user of an experiment's own scenario, routed to `replica`.
    fn own_user(&mut self, scenario: &str, replica: ReplicaId) -> VuPlan {
        self.extra_vu += 1;
        VuPlan {
            vu: self.extra_vu,
            scenario: scenario.to_owned(),
            nonce: format!("{:012x}", self.extra_vu),
            routes: vec![replica],
        }
    }

    async fn probe(&self, purpose: ProbePurpose, endpoint: Endpoint, path: &str) -> Probe {
        probe(&self.probe, self.ctx.origin, purpose, endpoint, path).await
    }
}

/// Runs the experiment and heals the cluster after it, whatever happened.
pub async fn run(plan: &ExperimentPlan, arena: &mut Arena<'_>, phase: Phase) -> ExperimentRun {
    let mut run = ExperimentRun::new(plan.kind.name(), phase);
    let result = match plan.kind {
        ExperimentKind::Sigterm => sigterm(plan.victim, arena, &mut run).await,
        ExperimentKind::StoreOutage => store_outage(arena, &mut run).await,
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

/// Users produce artifacts, the disruption happens while they wait, then they consume.
async fn handoffs(plan: &ExperimentPlan, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    // The control: the same users, every step on the replica that produces, undisturbed.
    let controls = plan
        .handoffs
        .iter()
        .map(|h| h.user.pinned(h.user.routes.first().copied().unwrap_or(plan.victim)))
        .collect();
    run.control = arena.users(controls, Phase::Control).await;

    let gated = plan.handoffs.iter().map(|h| Gated { plan: h.user.clone(), gate: h.gate }).collect();
    let (mut keeper, users) = vu::spawn_gated(arena.ctx, gated, run.phase);
    keeper.all_arrived().await;
    let (stop_load, load) = match &plan.load {
        Some(load) => {
            let (stop, stopped) = watch::channel(false);
            (Some(stop), Some(vu::spawn_load(arena.ctx, load, run.phase, stopped)))
        }
        None => (None, None),
    };
    let mut added = None;
    let disrupted = match plan.kind {
        ExperimentKind::Restart => restart(arena, run, plan.victim, false).await,
        ExperimentKind::Kill => restart(arena, run, plan.victim, true).await,
        ExperimentKind::Pause => pause(arena, run, plan.victim).await,
        ExperimentKind::RollingRestart => rolling_restart(arena, run).await,
        ExperimentKind::ScaleOut => scale_out(arena, run).await.map(|endpoint| added = Some(endpoint)),
        ExperimentKind::StoreRestart => store_restart(arena, run).await,
        ExperimentKind::Sigterm | ExperimentKind::StoreOutage => Ok(()),
    };
    if let (Some(stop), Some(load)) = (stop_load, load) {
        let _ = stop.send(true);
        let executed = vu::collect(load).await;
        arena.secrets.extend(&executed.secrets);
        run.load = executed.history.vus;
    }
    keeper.open();
    let executed = vu::collect(users).await;
    arena.secrets.extend(&executed.secrets);
    run.disrupted = executed.history.vus;
    if let Some(added) = added {
        scale_in(arena, run, added).await?;
    }
    disrupted
}

/// Stops one replica (SIGTERM with its grace, or SIGKILL) and starts its next incarnation.
async fn restart(arena: &mut Arena<'_>, run: &mut ExperimentRun, id: ReplicaId, kill: bool) -> Result<(), ClusterError> {
    let old = arena.cluster.endpoint(id).ok_or(ClusterError::UnknownReplica(id))?;
    let start_ms = arena.now_ms();
    let action = if kill {
        arena.cluster.kill(id).await?;
        ChaosAction::Kill { replica: old.replica }
    } else {
        let outcome = arena.cluster.stop(id).await?;
        ChaosAction::Sigterm {
            replica: old.replica,
            killed: matches!(outcome, StopOutcome::Killed { .. }),
        }
    };
    push(arena, run, action, start_ms);
    arena.balancer.upstreams().remove(old.replica);
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
/// none unavailable), then the old one gets SIGTERM while the balancer keeps routing to
/// it for the deregistration delay.
async fn rolling_restart(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let ids: Vec<ReplicaId> = arena.cluster.endpoints().iter().map(|e| e.replica.id).collect();
    for id in ids {
        let old = arena.cluster.endpoint(id).ok_or(ClusterError::UnknownReplica(id))?;
        let start_ms = arena.now_ms();
        let fresh = arena.cluster.surge(id).await?;
        started(arena, run, fresh, start_ms).await;
        let delay = arena.target.balancer.deregistration_delay;
        let (cluster, balancer, origin) = (&mut *arena.cluster, arena.balancer, arena.ctx.origin);
        balancer.upstreams().hold(old.replica);
        let start_ms = ms_since(origin);
        let (outcome, deregistered_ms) = tokio::join!(cluster.retire(old.replica), deregister_after(balancer, old.replica, delay, origin));
        record_termination(arena, run, old.replica, start_ms, outcome?, deregistered_ms);
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
    let start_ms = arena.now_ms();
    arena.balancer.upstreams().remove(added.replica);
    push(arena, run, ChaosAction::Deregister { replica: added.replica }, start_ms);
    let outcome = arena.cluster.remove(added.replica.id).await?;
    let killed = matches!(outcome, StopOutcome::Killed { .. });
    push(arena, run, ChaosAction::Sigterm { replica: added.replica, killed }, start_ms);
    Ok(())
}

async fn store_restart(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let start_ms = arena.now_ms();
    arena.cluster.stop_store().await?;
    push(arena, run, ChaosAction::StoreStop, start_ms);
    let start_ms = arena.now_ms();
    arena.cluster.start_store().await?;
    push(arena, run, ChaosAction::StoreStart, start_ms);
    wait_all_ready(arena, run).await;
    Ok(())
}

/// SIGTERM to one replica with requests in flight and more arriving during the
/// deregistration delay; its readiness is asked while it drains.
async fn sigterm(victim: ReplicaId, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let endpoint = arena.cluster.endpoint(victim).ok_or(ClusterError::UnknownReplica(victim))?;
    let has_slow = arena.target.chaos.slow.is_some();
    if !has_slow {
        run.notes.push("requests in flight at SIGTERM were not checked: the target has no [chaos] slow request".into());
    }
    // The control: readiness, a page and a slow request, undisturbed.
    run.probes.push(arena.probe(ProbePurpose::ReadyBefore, endpoint, &arena.target.health.ready.0).await);
    let mut controls = vec![arena.own_user(PAGE_SCENARIO, victim)];
    if has_slow {
        controls.push(arena.own_user(SLOW_SCENARIO, victim));
    }
    run.control = arena.users(controls, Phase::Control).await;

    let slow_users: Vec<VuPlan> = if has_slow { (0..SLOW_USERS).map(|_| arena.own_user(SLOW_SCENARIO, victim)).collect() } else { Vec::new() };
    let in_flight = {
        let (ctx, phase, concurrency) = (arena.ctx.clone(), run.phase, arena.concurrency);
        tokio::spawn(async move { vu::execute(&ctx, slow_users, phase, concurrency).await })
    };
    if has_slow {
        sleep(IN_FLIGHT_LEAD).await;
    }
    let delay = arena.target.balancer.deregistration_delay;
    let arrivals: Vec<(Duration, VuPlan)> = [0.25, 0.5, 0.75]
        .into_iter()
        .map(|share| (delay.mul_f64(share), arena.own_user(PAGE_SCENARIO, victim)))
        .collect();
    let ready_path = arena.target.health.ready.0.clone();
    let phase = run.phase;
    let (cluster, balancer, ctx, client) = (&mut *arena.cluster, arena.balancer, arena.ctx, &arena.probe);
    balancer.upstreams().hold(endpoint.replica);
    let start_ms = ms_since(ctx.origin);
    // While the replica drains: requests keep arriving, and its readiness is asked.
    let window = async {
        let pages = arrivals.into_iter().map(|(after, user)| async move {
            sleep(after).await;
            vu::execute(ctx, vec![user], phase, 1).await
        });
        let readiness = async {
            sleep(delay / 2).await;
            probe(client, ctx.origin, ProbePurpose::ReadyDraining, endpoint, &ready_path).await
        };
        tokio::join!(futures_util::future::join_all(pages), readiness)
    };
    let (outcome, (pages, draining), deregistered_ms) = tokio::join!(
        cluster.stop(victim),
        window,
        deregister_after(balancer, endpoint.replica, delay, ctx.origin)
    );
    let outcome = outcome?;
    record_termination(arena, run, endpoint.replica, start_ms, outcome, deregistered_ms);
    run.probes.push(draining);
    for executed in pages {
        arena.secrets.extend(&executed.secrets);
        run.disrupted.extend(executed.history.vus);
    }
    if let Ok(executed) = in_flight.await {
        arena.secrets.extend(&executed.secrets);
        run.disrupted.extend(executed.history.vus);
    }
    run.disrupted.sort_by_key(|v| v.vu);
    Ok(())
}

/// Redis down for a while: every replica is asked whether it is ready, and sent a request
/// that needs the store.
async fn store_outage(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let endpoints = arena.cluster.endpoints();
    let ready = arena.target.health.ready.0.clone();
    for endpoint in &endpoints {
        run.probes.push(arena.probe(ProbePurpose::ReadyBefore, *endpoint, &ready).await);
    }
    let controls = endpoints.iter().map(|e| arena.own_user(STORE_SCENARIO, e.replica.id)).collect();
    run.control = arena.users(controls, Phase::Control).await;

    let start_ms = arena.now_ms();
    arena.cluster.stop_store().await?;
    push(arena, run, ChaosAction::StoreStop, start_ms);
    sleep(STORE_DOWN_BEFORE_PROBES).await;
    for endpoint in &endpoints {
        run.probes.push(arena.probe(ProbePurpose::ReadyStoreDown, *endpoint, &ready).await);
    }
    let users = endpoints.iter().map(|e| arena.own_user(STORE_SCENARIO, e.replica.id)).collect();
    run.disrupted = arena.users(users, run.phase).await;
    let start_ms = arena.now_ms();
    arena.cluster.start_store().await?;
    push(arena, run, ChaosAction::StoreStart, start_ms);
    wait_all_ready(arena, run).await;
    Ok(())
}

/// Restarts whatever is down, and makes the balancer's table the cluster's again.
async fn heal(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let start_ms = arena.now_ms();
    let store_was_down = !arena.cluster.store_running().await;
    let fresh = arena.cluster.heal().await?;
    if store_was_down && arena.cluster.has_store() {
        push(arena, run, ChaosAction::StoreStart, start_ms);
    }
    for endpoint in fresh {
        started(arena, run, endpoint, start_ms).await;
    }
    arena.balancer.upstreams().replace(&arena.cluster.endpoints());
    wait_all_ready(arena, run).await;
    Ok(())
}

/// A new incarnation is ready: record it, ask for a real page at once (does ready mean it
/// serves?), then wait until it serves before it takes traffic.
async fn started(arena: &mut Arena<'_>, run: &mut ExperimentRun, endpoint: Endpoint, start_ms: f64) {
    push(arena, run, ChaosAction::Start { replica: endpoint.replica }, start_ms);
    let page = arena.target.chaos.page.0.clone();
    let first = arena.probe(ProbePurpose::FirstPage, endpoint, &page).await;
    let served = first.served();
    run.probes.push(first);
    if !served {
        let deadline = Instant::now() + arena.target.start.ready_timeout;
        loop {
            sleep(Duration::from_millis(100)).await;
            let later = arena.probe(ProbePurpose::LaterPage, endpoint, &page).await;
            let served = later.served();
            if served || Instant::now() >= deadline {
                run.probes.push(later);
                break;
            }
        }
    }
    arena.balancer.upstreams().insert(&endpoint);
}

/// Waits (within the ready timeout) until every replica says ready again, and tells the
/// balancer, whose own probes may not have caught up yet.
async fn wait_all_ready(arena: &mut Arena<'_>, run: &mut ExperimentRun) {
    let deadline = Instant::now() + arena.target.start.ready_timeout;
    let ready = arena.target.health.ready.0.clone();
    for endpoint in arena.cluster.endpoints() {
        loop {
            if arena.probe(ProbePurpose::ReadyBefore, endpoint, &ready).await.said_ready() {
                arena.balancer.upstreams().mark_ready(endpoint.replica);
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

/// Removes an incarnation from the balancer once the deregistration delay has passed;
/// returns when that was.
async fn deregister_after(balancer: &Balancer, replica: Incarnation, delay: Duration, origin: Instant) -> f64 {
    sleep(delay).await;
    balancer.upstreams().remove(replica);
    ms_since(origin)
}

fn ms_since(origin: Instant) -> f64 {
    origin.elapsed().as_secs_f64() * 1000.0
}

fn record_termination(arena: &Arena<'_>, run: &mut ExperimentRun, replica: Incarnation, start_ms: f64, outcome: StopOutcome, deregistered_ms: f64) {
    let killed = matches!(outcome, StopOutcome::Killed { .. });
    push(arena, run, ChaosAction::Sigterm { replica, killed }, start_ms);
    run.chaos.push(ChaosEvent {
        action: ChaosAction::Deregister { replica },
        start_ms: deregistered_ms,
        end_ms: deregistered_ms,
    });
    run.chaos.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
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
    let (status, error) = match client.get(format!("http://{}{path}", endpoint.addr)).send().await {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(err) => (None, Some(crate::errors::chain(&err))),
    };
    Probe {
        purpose,
        replica: endpoint.replica,
        path: path.to_owned(),
        at_ms,
        status,
        error,
    }
}

//! The limits experiment: for each `[limit.NAME]`, clients of their own (each connecting
//! from an address of its own, which the balancer forwards, and sending a `{value}` of its
//! own) try the attempt, paced, a few times the limit at most per series:
//!
//! - two clients through one replica: the first until limited (the control), the second
//!   once before and once after, the first once more when the second was let through;
//! - a client limited by one replica tries the others, the first again after each;
//! - a client limited by two replicas tries again once one of them restarted, the other
//!   before and after;
//! - a stranger straight at a replica, limited, forges X-Forwarded-For, its own address
//!   again after each.
//!
//! A series in which a window ended (a replica let a client through again by itself, or
//! more than the limit) is asked once more, the control too. Nothing is judged here
//! (`check::limits` does).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use super::experiment::{Arena, restart, trigger_value};
use crate::balancer::Entrance;
use crate::cluster::ClusterError;
use crate::history::limits::{Answer, LimitCheck, Question, Try};
use crate::history::{ChaosAction, ExperimentRun, Outcome};
use crate::scenario::{RouteHint, Scenario, Step};
use crate::step::Template;
use crate::target::RateLimit;
use crate::vocab::replica::{Endpoint, ReplicaId};
use crate::vu::VuContext;

/// The pause before each try: a client sends its tries one after another, as a script
/// does, never a flood.
const PACE: Duration = Duration::from_millis(25);
/// Forged tries a stranger sends, each followed by one from its own address.
const FORGED_TRIES: usize = 2;
/// Tries let through where the limit should have held that make a finding: more than one
/// refilling limit (a token bucket, a sliding window) gives back in a moment.
pub const THROUGH_NEEDED: usize = 2;
/// How often a series in which a window ended is asked, at most.
const SERIES_TRIES: usize = 2;

/// A client of the experiment: where it connects from, the value it sends, its users.
struct Client {
    address: IpAddr,
    flow: String,
    ctx: Arc<VuContext>,
    /// The replica a stranger reaches straight, if this client is one.
    straight: Option<Endpoint>,
}

impl Client {
    /// A client of `flow` from `address`: through the balancer, or straight at a replica.
    fn new(arena: &mut Arena<'_>, flow: &RateLimit, address: IpAddr, straight: Option<Endpoint>) -> Self {
        arena.extra_vu += 1;
        let value = trigger_value(&format!("{:012x}", arena.extra_vu));
        let entrance = straight.map_or_else(|| arena.ctx.balancer.clone(), |e| Entrance { addr: e.addr, authority: None });
        let forged = if straight.is_some() { FORGED_TRIES } else { 0 };
        let scenarios: Vec<Scenario> = (0..=forged).map(|i| attempt_scenario(flow, &value, (i > 0).then_some(i))).collect();
        Client { address, flow: flow.name.clone(), ctx: Arc::new(arena.ctx.for_client(entrance, address, &scenarios)), straight }
    }

    /// A client through the balancer from a loopback address of its own, which no other
    /// client of the run, nor of another run in the window, is likely to have.
    fn through_balancer(arena: &mut Arena<'_>, flow: &RateLimit) -> Self {
        let [x, y, z]: [u8; 3] = rand::random();
        // 127.0.0.x are the addresses the target names: proxy, client, stranger.
        let address = IpAddr::from([127, x.max(1), y, z.clamp(1, 254)]);
        Client::new(arena, flow, address, None)
    }
}

/// The X-Forwarded-For a stranger forges on its `index`th forged try: an address of the
/// documentation range.
fn forged_address(index: usize) -> String {
    format!("203.0.113.{}", 10 + index)
}

fn scenario_name(flow: &str, forged: Option<usize>) -> String {
    match forged {
        Some(index) => format!("limit:{flow}:forged-{index}"),
        None => format!("limit:{flow}"),
    }
}

/// The attempt as a one-step scenario, passed when the try is limited.
fn attempt_scenario(flow: &RateLimit, value: &str, forged: Option<usize>) -> Scenario {
    let mut request = flow.attempt.clone();
    if let Some(index) = forged {
        request.headers.insert("X-Forwarded-For".into(), Template::literal(&forged_address(index)));
    }
    Scenario {
        name: scenario_name(&flow.name, forged),
        about: String::new(),
        vars: IndexMap::from([("value".to_owned(), Template::literal(value))]),
        steps: vec![Step {
            name: "attempt".into(),
            request,
            captures: Vec::new(),
            expect: flow.limited.clone(),
            reject: None,
            route: RouteHint::Policy,
            produces: None,
            consumes: None,
        }],
    }
}

pub(super) async fn limits(victim: ReplicaId, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let replicas: Vec<ReplicaId> = arena.cluster.endpoints().iter().map(|e| e.replica.id).collect();
    let at = replicas.iter().position(|r| *r == victim).unwrap_or(0);
    // The replica that counts first, then the others in turn (two at most).
    let first = replicas[at];
    let others: Vec<ReplicaId> = replicas.iter().cycle().skip(at + 1).take(replicas.len().saturating_sub(1).min(2)).copied().collect();
    let outside = arena.cluster.runs_outside();
    for flow in arena.target.rate_limits.clone() {
        let mut shared = shared_by_clients(arena, run, &flow, first).await;
        if shared.window_ended(flow.limit) {
            run.limits.push(shared);
            shared = shared_by_clients(arena, run, &flow, first).await;
        }
        let controlled = shared.tries.iter().any(Try::limited);
        let count_shared = shared.limited_another();
        run.limits.push(shared);
        if !controlled || others.is_empty() {
            continue;
        }
        for _ in 0..SERIES_TRIES {
            let check = per_replica(arena, run, &flow, first, &others).await;
            if !push_ended(run, check, flow.limit) {
                break;
            }
        }
        if outside {
            run.notes.push(format!("[limit.{}]: the instances run outside replicheck, so none was restarted to see whether it forgets its counts", flow.name));
        } else {
            for _ in 0..SERIES_TRIES {
                let check = reset_by_restart(arena, run, &flow, first, others[0]).await?;
                if !push_ended(run, check, flow.limit) {
                    break;
                }
            }
        }
        match arena.cluster.stranger_endpoints().into_iter().find(|e| e.replica.id == first) {
            Some(endpoint) if arena.cluster.vantage().local && arena.cluster.vantage().tells_strangers_apart() => {
                for _ in 0..SERIES_TRIES {
                    let check = forged(arena, run, &flow, endpoint).await;
                    if !push_ended(run, check, flow.limit) {
                        break;
                    }
                }
            }
            _ => run.notes.push(format!(
                "[limit.{}]: the replicas cannot tell a stranger's connection from the balancer's here, so no stranger forged X-Forwarded-For",
                flow.name
            )),
        }
        // Counts kept for the proxy's address refuse every client for the rest of the
        // window. Replicas that keep them in memory forget them when they restart, so that
        // the second run, and whatever follows, starts as this one did.
        if count_shared && !outside {
            for &replica in std::iter::once(&first).chain(&others) {
                restart(arena, run, replica, false).await?;
            }
        }
    }
    Ok(())
}

/// Keeps `check`; true when a window ended in it, so that it shows nothing and is asked again.
fn push_ended(run: &mut ExperimentRun, check: LimitCheck, limit: u32) -> bool {
    let ended = check.window_ended(limit);
    run.limits.push(check);
    ended
}

/// One try of `client` at `replica` (forged, for a stranger's `index`th forged try).
async fn attempt(arena: &mut Arena<'_>, run: &mut ExperimentRun, client: &Client, replica: ReplicaId, forged: Option<usize>) -> Try {
    tokio::time::sleep(PACE).await;
    let plan = arena.own_user(&scenario_name(&client.flow, forged), replica);
    let vu = plan.vu;
    let record = arena.users_of(&client.ctx, vec![plan], run.phase).await.pop();
    let step = record.as_ref().and_then(|r| r.steps.first());
    let (start_ms, end_ms) = step
        .and_then(|s| Some((s.requests.first()?.start_ms, s.requests.last()?.end_ms)))
        .unwrap_or((arena.now_ms(), arena.now_ms()));
    let status = step.and_then(|s| s.requests.last()).and_then(|r| r.status);
    let answer = match (step.map(|s| &s.outcome), status) {
        (Some(Outcome::Passed), _) => Answer::Limited,
        (Some(Outcome::Failed { .. }), Some(status)) if status < 500 => Answer::LetThrough { status },
        (Some(Outcome::Failed { .. }), Some(status)) => Answer::Failed { reason: format!("status {status}") },
        (Some(Outcome::Error { message }), _) => Answer::Failed { reason: message.clone() },
        _ => Answer::Failed { reason: "the try was not sent".into() },
    };
    let served_by = match client.straight {
        Some(endpoint) => Some(endpoint.replica),
        None => step.and_then(|s| s.served_by),
    };
    run.disrupted.extend(record);
    Try { client: client.address, forged: forged.map(forged_address), replica, served_by, vu, start_ms, end_ms, answer }
}

/// Tries of `client` at `replica` until one is limited, `limit + 1` at most; whether one was.
async fn until_limited(arena: &mut Arena<'_>, run: &mut ExperimentRun, flow: &RateLimit, client: &Client, replica: ReplicaId, tries: &mut Vec<Try>) -> bool {
    for _ in 0..=flow.limit {
        let tried = attempt(arena, run, client, replica, None).await;
        let (limited, failed) = (tried.limited(), matches!(tried.answer, Answer::Failed { .. }));
        tries.push(tried);
        if limited || failed {
            return limited;
        }
    }
    false
}

/// The first client tries `replica` until limited, the second once before (when a try of
/// its own leaves it below the limit) and once after. A second client let through is what a
/// count of its own shows, and what a window ending in between shows too: the first client
/// tries once more, so that a window that ended lets it through and the series is asked again.
async fn shared_by_clients(arena: &mut Arena<'_>, run: &mut ExperimentRun, flow: &RateLimit, replica: ReplicaId) -> LimitCheck {
    let (first, second) = (Client::through_balancer(arena, flow), Client::through_balancer(arena, flow));
    let mut tries = Vec::new();
    if flow.limit >= 2 {
        tries.push(attempt(arena, run, &second, replica, None).await);
    }
    if until_limited(arena, run, flow, &first, replica, &mut tries).await {
        let after = attempt(arena, run, &second, replica, None).await;
        let let_through = after.let_through();
        tries.push(after);
        if let_through {
            tries.push(attempt(arena, run, &first, replica, None).await);
        }
    }
    LimitCheck { flow: flow.name.clone(), question: Question::SharedByClients, tries, after: None }
}

/// A client limited by `first` tries `others` in turn, `first` again after each try let
/// through, until enough were let through or every other replica refused it.
async fn per_replica(arena: &mut Arena<'_>, run: &mut ExperimentRun, flow: &RateLimit, first: ReplicaId, others: &[ReplicaId]) -> LimitCheck {
    let client = Client::through_balancer(arena, flow);
    let mut tries = Vec::new();
    if until_limited(arena, run, flow, &client, first, &mut tries).await {
        let (mut through, mut refused) = (0, Vec::new());
        for &other in others.iter().cycle().take(THROUGH_NEEDED + others.len()) {
            if refused.contains(&other) {
                continue;
            }
            let tried = attempt(arena, run, &client, other, None).await;
            let let_through = tried.let_through();
            tries.push(tried);
            if !let_through {
                refused.push(other);
                continue;
            }
            through += 1;
            let witness = attempt(arena, run, &client, first, None).await;
            let holds = witness.limited();
            tries.push(witness);
            if !holds || through >= THROUGH_NEEDED {
                break;
            }
        }
    }
    LimitCheck { flow: flow.name.clone(), question: Question::PerReplica, tries, after: None }
}

/// A client limited by `other`, then by `first`; `first` restarts, then the client tries it
/// again, `other` before and after each try. `other`, limited first, is the witness: it
/// would give the client a try back before `first` would, however long the restart takes.
async fn reset_by_restart(arena: &mut Arena<'_>, run: &mut ExperimentRun, flow: &RateLimit, first: ReplicaId, other: ReplicaId) -> Result<LimitCheck, ClusterError> {
    let client = Client::through_balancer(arena, flow);
    let mut check = LimitCheck { flow: flow.name.clone(), question: Question::ResetByRestart, tries: Vec::new(), after: None };
    if !until_limited(arena, run, flow, &client, other, &mut check.tries).await || !until_limited(arena, run, flow, &client, first, &mut check.tries).await {
        return Ok(check);
    }
    restart(arena, run, first, false).await?;
    check.after = run.chaos.iter().rev().find(|e| matches!(e.action, ChaosAction::Start { replica } if replica.id == first)).cloned();
    check.tries.push(attempt(arena, run, &client, other, None).await);
    for _ in 0..THROUGH_NEEDED {
        let tried = attempt(arena, run, &client, first, None).await;
        let let_through = tried.let_through();
        check.tries.push(tried);
        let witness = attempt(arena, run, &client, other, None).await;
        let holds = witness.limited();
        check.tries.push(witness);
        if !let_through || !holds {
            break;
        }
    }
    Ok(check)
}

/// A stranger straight at `endpoint`, limited, forges X-Forwarded-For, then tries from its
/// own address again, after each forged try.
async fn forged(arena: &mut Arena<'_>, run: &mut ExperimentRun, flow: &RateLimit, endpoint: Endpoint) -> LimitCheck {
    let address = arena.target.balancer.untrusted_address;
    let client = Client::new(arena, flow, address, Some(endpoint));
    let replica = endpoint.replica.id;
    let mut tries = Vec::new();
    if until_limited(arena, run, flow, &client, replica, &mut tries).await {
        for index in 1..=FORGED_TRIES {
            let tried = attempt(arena, run, &client, replica, Some(index)).await;
            let let_through = tried.let_through();
            tries.push(tried);
            let witness = attempt(arena, run, &client, replica, None).await;
            let holds = witness.limited();
            tries.push(witness);
            if !let_through || !holds {
                break;
            }
        }
    }
    LimitCheck { flow: flow.name.clone(), question: Question::Forged, tries, after: None }
}

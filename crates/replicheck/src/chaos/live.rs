//! The broadcast experiment: for each `[broadcast.NAME]` flow, a subscriber on each replica
//! in turn, and messages published for it through its own replica (the control) and
//! through the next, each waited for the flow's bound. Then, for a hub that relayed every
//! message so far, the same across disruptions: the victim restarts and its subscribers
//! connect to its next incarnation, and the store restarts (when the target has one).
//! Nothing is judged here (`check::live` does).

use std::time::Duration;

use tokio::time::Instant;

use super::experiment::{Arena, broadcast_scenario, restart, store_restart, trigger_value};
use crate::clock::deadline;
use crate::cluster::ClusterError;
use crate::history::live::{Published, Subscriber};
use crate::history::{ChaosAction, ChaosEvent, ExperimentRun, Outcome, Phase};
use crate::plan::VuPlan;
use crate::step::Vars;
use crate::target::{Broadcast, Publish, Transport};
use crate::vocab::replica::ReplicaId;
use crate::vu::subscribe::{Opening, Subscription};

/// How long a hub may take to relay again once the cluster is whole after a disruption
/// (a relay that subscribes again after losing the store waits a while first), counted
/// once for all the subscribers that follow it.
const RECOVERY: Duration = Duration::from_secs(10);
/// Messages published through another replica for one subscriber after a disruption, at most.
const AFTER_TRIES: usize = 10;

/// For each broadcast flow, a subscriber on each replica in turn: a message is published
/// through its own replica (the control, which shows the subscription works), then
/// through the next replica (again, when it did not arrive), each with a value of its own
/// and each waited for `within`. A hub that relayed all of them is asked again across
/// the victim's restart and the store's.
pub(super) async fn broadcast(victim: ReplicaId, arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let replicas: Vec<ReplicaId> = arena.cluster.endpoints().iter().map(|e| e.replica.id).collect();
    let next = |replica: ReplicaId| replicas[(replicas.iter().position(|r| *r == replica).unwrap_or(0) + 1) % replicas.len()];
    for flow in &arena.target.broadcast {
        for &replica in &replicas {
            let subscriber = subscribe_and_publish(arena, run, flow, replica, next(replica)).await;
            run.subscribers.push(subscriber);
        }
    }
    // A hub that keeps messages in one process already showed what it is; a disruption
    // cannot tell more.
    if !run.subscribers.iter().all(relayed_across) {
        return Ok(());
    }
    if arena.cluster.runs_outside() {
        run.notes.push("the instances run outside replicheck: subscriptions were not asked again across a restart".into());
        return Ok(());
    }
    restart(arena, run, victim, false).await?;
    let restarted = run.chaos.iter().rev().find(|e| matches!(e.action, ChaosAction::Start { replica } if replica.id == victim)).cloned();
    let recovered_by = deadline(RECOVERY);
    for flow in &arena.target.broadcast {
        let subscriber = subscribe_after(arena, run, flow, (victim, next(victim)), restarted.clone(), recovered_by).await;
        run.subscribers.push(subscriber);
    }
    if let Some(store) = arena.cluster.store().map(str::to_owned) {
        store_restart(arena, run, &store).await?;
        let stopped = run.chaos.iter().rev().find(|e| matches!(e.action, ChaosAction::StoreStop { .. })).cloned();
        let (first, recovered_by) = (run.subscribers.len(), deadline(RECOVERY));
        for flow in &arena.target.broadcast {
            for &replica in &replicas {
                let subscriber = subscribe_after(arena, run, flow, (replica, next(replica)), stopped.clone(), recovered_by).await;
                run.subscribers.push(subscriber);
            }
        }
        // A replica that relays nothing since the store came back is replaced, so that
        // what follows (the run asking again, the next experiment) starts from a cluster
        // as it was before this one.
        let mut stuck: Vec<ReplicaId> = run.subscribers[first..].iter().filter(|s| s.connection.is_ok() && !relayed_across(s)).map(|s| s.replica).collect();
        stuck.sort();
        stuck.dedup();
        for replica in stuck {
            restart(arena, run, replica, false).await?;
        }
    }
    Ok(())
}

/// Whether a message published through another replica reached the subscriber.
fn relayed_across(subscriber: &Subscriber) -> bool {
    let Ok(connection) = &subscriber.connection else { return false };
    subscriber.published.iter().skip(1).any(|p| connection.received(&p.wanted).is_some())
}

/// What a browser's page on the balancer sends as its `Origin`.
fn page_origin(arena: &Arena<'_>) -> Vec<(String, String)> {
    vec![("Origin".to_owned(), arena.ctx.balancer.url("").trim_end_matches('/').to_owned())]
}

/// A subscription of `flow` on `replica`, joined; or the subscriber that did not open.
async fn subscribe(arena: &mut Arena<'_>, flow: &Broadcast, replica: ReplicaId, after: &Option<ChaosEvent>) -> Result<Subscription, Subscriber> {
    let opening = Opening { transport: flow.transport, path: flow.path.clone(), route: replica, headers: page_origin(arena) };
    let mut subscription = Subscription::open(arena.ctx, opening).await.map_err(|err| Subscriber {
        flow: flow.name.clone(),
        replica,
        connection: Err(err.to_string()),
        published: Vec::new(),
        waited_ms: waited_ms(flow),
        after: after.clone(),
    })?;
    if let Some(join) = &flow.join {
        let user = arena.own_user(&broadcast_scenario(&flow.name), replica);
        subscription.send(&join.render(&value_of(&user)).unwrap_or_default());
    }
    Ok(subscription)
}

fn waited_ms(flow: &Broadcast) -> f64 {
    flow.within.as_secs_f64() * 1000.0
}

async fn subscribe_and_publish(arena: &mut Arena<'_>, run: &mut ExperimentRun, flow: &Broadcast, replica: ReplicaId, other: ReplicaId) -> Subscriber {
    let mut subscription = match subscribe(arena, flow, replica, &None).await {
        Ok(subscription) => subscription,
        Err(subscriber) => return subscriber,
    };
    let mut published = Vec::new();
    // An app may add a subscriber to its hub a moment after the handshake, so a message
    // published at once can miss even a subscriber on its own replica; and a relay that
    // subscribes to the others only once a client joined may miss the first message from
    // another. So each is missed only if a second one is missed too: first the control,
    // through the subscriber's own replica, then the trial, through another.
    for (through, phase) in [(replica, Phase::Control), (other, run.phase)] {
        for _ in 0..2 {
            let message = publish(arena, run, flow, through, phase).await;
            let received = message.error.is_none() && subscription.until(&message.wanted, flow.within).await.is_some();
            published.push(message);
            if received {
                break;
            }
        }
    }
    Subscriber { flow: flow.name.clone(), replica, connection: Ok(subscription.finish()), published, waited_ms: waited_ms(flow), after: None }
}

/// A subscriber on `replica` once the cluster is whole after `after`: a message through
/// its own replica, for the evidence, then messages through `other`, one per `within`,
/// until one arrives or the hub's time to recover has passed (two at least, for a relay
/// that joins late).
async fn subscribe_after(
    arena: &mut Arena<'_>,
    run: &mut ExperimentRun,
    flow: &Broadcast,
    (replica, other): (ReplicaId, ReplicaId),
    after: Option<ChaosEvent>,
    recovered_by: Instant,
) -> Subscriber {
    let mut subscription = match subscribe(arena, flow, replica, &after).await {
        Ok(subscription) => subscription,
        Err(subscriber) => return subscriber,
    };
    let own = publish(arena, run, flow, replica, run.phase).await;
    if own.error.is_none() {
        subscription.until(&own.wanted, flow.within).await;
    }
    let mut published = vec![own];
    for tries in 1..=AFTER_TRIES {
        let message = publish(arena, run, flow, other, run.phase).await;
        let received = message.error.is_none() && subscription.until(&message.wanted, flow.within).await.is_some();
        published.push(message);
        if received || (tries >= 2 && Instant::now() >= recovered_by) {
            break;
        }
    }
    Subscriber { flow: flow.name.clone(), replica, connection: Ok(subscription.finish()), published, waited_ms: waited_ms(flow), after }
}

fn value_of(user: &VuPlan) -> Vars {
    Vars::from([("value".to_owned(), trigger_value(&user.nonce))])
}

/// Publishes one message of `flow` through `replica`: its request, or a text message on a
/// WebSocket of that replica. The request's user joins the run's record in `phase`.
async fn publish(arena: &mut Arena<'_>, run: &mut ExperimentRun, flow: &Broadcast, replica: ReplicaId, phase: Phase) -> Published {
    let user = arena.own_user(&broadcast_scenario(&flow.name), replica);
    let vars = value_of(&user);
    let wanted = flow.receive.render(&vars).unwrap_or_default();
    let (mut at_ms, publisher) = (arena.now_ms(), user.vu);
    let (by, error, vu) = match &flow.publish {
        Publish::Request(_) => {
            let records = arena.users(vec![user], phase).await;
            let step = records.first().and_then(|r| r.steps.first());
            at_ms = step.and_then(|s| s.requests.first()).map_or(at_ms, |r| r.start_ms);
            let error = match step.map(|s| &s.outcome) {
                Some(Outcome::Passed) => None,
                Some(Outcome::Failed { expected, observed }) => Some(format!("expected {expected}, got {observed}")),
                Some(Outcome::Error { message }) => Some(message.clone()),
                None => Some("the request was not sent".to_owned()),
            };
            let by = step.and_then(|s| s.served_by);
            match phase {
                Phase::Control => run.control.extend(records),
                _ => run.disrupted.extend(records),
            }
            (by, error, Some(publisher))
        }
        Publish::Send(message) => {
            let opening = Opening { transport: Transport::WebSocket, path: flow.path.clone(), route: replica, headers: page_origin(arena) };
            match Subscription::open(arena.ctx, opening).await {
                Ok(mut socket) => {
                    let sent = socket.send(&message.render(&vars).unwrap_or_default());
                    let by = socket.served_by();
                    socket.close().await;
                    (by, (!sent).then(|| "the socket closed before the message was sent".to_owned()), None)
                }
                Err(err) => (None, Some(err.to_string()), None),
            }
        }
    };
    Published { wanted, replica, by, at_ms, vu, error }
}

//! The broadcast experiment: for each `[broadcast.NAME]` flow, a subscriber on each replica
//! in turn, and messages published for it through its own replica (the control) and
//! through the next, each waited for the flow's bound. Nothing is judged here
//! (`check::live` does).

use super::experiment::{Arena, broadcast_scenario, trigger_value};
use crate::cluster::ClusterError;
use crate::history::live::{Published, Subscriber};
use crate::history::{ExperimentRun, Outcome, Phase};
use crate::plan::VuPlan;
use crate::step::Vars;
use crate::target::{Broadcast, Publish, Transport};
use crate::vocab::replica::ReplicaId;
use crate::vu::subscribe::{Opening, Subscription};

/// For each broadcast flow, a subscriber on each replica in turn: a message is published
/// through its own replica (the control, which shows the subscription works), then
/// through the next replica (again, when it did not arrive), each with a value of its own
/// and each waited for `within`.
pub(super) async fn broadcast(arena: &mut Arena<'_>, run: &mut ExperimentRun) -> Result<(), ClusterError> {
    let replicas: Vec<ReplicaId> = arena.cluster.endpoints().iter().map(|e| e.replica.id).collect();
    for flow in &arena.target.broadcast {
        for (index, &replica) in replicas.iter().enumerate() {
            let other = replicas[(index + 1) % replicas.len()];
            let subscriber = subscribe_and_publish(arena, run, flow, replica, other).await;
            run.subscribers.push(subscriber);
        }
    }
    Ok(())
}

/// What a browser's page on the balancer sends as its `Origin`.
fn page_origin(arena: &Arena<'_>) -> Vec<(String, String)> {
    vec![("Origin".to_owned(), arena.ctx.balancer.url("").trim_end_matches('/').to_owned())]
}

async fn subscribe_and_publish(arena: &mut Arena<'_>, run: &mut ExperimentRun, flow: &Broadcast, replica: ReplicaId, other: ReplicaId) -> Subscriber {
    let opening = Opening { transport: flow.transport, path: flow.path.clone(), route: replica, headers: page_origin(arena) };
    let waited_ms = flow.within.as_secs_f64() * 1000.0;
    let mut subscription = match Subscription::open(arena.ctx, opening).await {
        Ok(subscription) => subscription,
        Err(err) => return Subscriber { flow: flow.name.clone(), replica, connection: Err(err.to_string()), published: Vec::new(), waited_ms },
    };
    if let Some(join) = &flow.join {
        let user = arena.own_user(&broadcast_scenario(&flow.name), replica);
        subscription.send(&join.render(&value_of(&user)).unwrap_or_default());
    }
    let mut published = Vec::new();
    // A relay that subscribes to the others only once a client joined may miss the first
    // message: one through another replica is missed only if a second one is missed too.
    for (through, phase) in [(replica, Phase::Control), (other, run.phase), (other, run.phase)] {
        let message = publish(arena, run, flow, through, phase).await;
        let received = message.error.is_none() && subscription.until(&message.wanted, flow.within).await.is_some();
        published.push(message);
        if received && phase != Phase::Control {
            break;
        }
    }
    Subscriber { flow: flow.name.clone(), replica, connection: Ok(subscription.finish()), published, waited_ms }
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

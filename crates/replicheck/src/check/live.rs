//! Live updates' findings, from the `broadcast` experiment's subscribers: a message
//! published through one replica that a subscriber on another never received.
//!
//! Each subscriber has its control in the same connection, first: a message published
//! through its own replica (a second one when the first did not arrive: an app may add a
//! subscriber to its hub a moment after the handshake), one of which it must receive
//! within the flow's bound. Only then are
//! the messages published through another replica judged, and only while the connection
//! stayed open: a subscription the replica ended proves nothing about the hub. A relay
//! that joins the others late misses the first such message and gets the second: no
//! finding, and said so.
//!
//! A subscriber that connected after a disruption (the victim's restart, the store's) has
//! its control before it: the same flow's message through another replica reached a
//! subscriber on the same replica then. It is judged only if none of the messages
//! published through another replica reached it while the hub had time to recover.

use super::finding::FindingKind;
use super::twice::{Assessment, Candidate};
use crate::history::live::{ConnectionRecord, Published, Subscriber};
use crate::history::{ChaosEvent, ExperimentRun};
use crate::vocab::replica::Incarnation;

/// Messages quoted as what arrived instead, at most.
const QUOTED: usize = 3;

pub fn assess_broadcast(run: &ExperimentRun) -> Assessment {
    let mut assessment = Assessment::of(run);
    for subscriber in &run.subscribers {
        let judged = match &subscriber.after {
            None => judge(subscriber),
            Some(after) => judge_after(subscriber, after, &run.subscribers),
        };
        match judged {
            Judged::Baseline(why) => {
                assessment.baseline = Some(why);
                return assessment;
            }
            Judged::Note(note) => assessment.notes.push(note),
            Judged::Shared => {}
            Judged::NotShared(candidate) => assessment.candidates.push(*candidate),
        }
    }
    assessment
}

enum Judged {
    /// The flow does not work even on one replica: nothing to compare with.
    Baseline(String),
    Note(String),
    Shared,
    NotShared(Box<Candidate>),
}

fn judge(subscriber: &Subscriber) -> Judged {
    let (flow, on) = (&subscriber.flow, subscriber.replica);
    let within = format!("{:.1}s", subscriber.waited_ms / 1000.0);
    let connection = match &subscriber.connection {
        Ok(connection) => connection,
        Err(why) => return Judged::Baseline(format!("a subscriber of `{flow}` on {on} did not open: {why}")),
    };
    // The messages through the subscriber's own replica come first: its controls.
    let own = subscriber.published.iter().take_while(|p| p.replica == on).count();
    let (controls, trials) = subscriber.published.split_at(own);
    if controls.is_empty() {
        return Judged::Note(format!("no message of `{flow}` was published for the subscriber on {on}"));
    }
    let Some((control, first)) = controls.iter().find_map(|c| Some((c, connection.received(&c.wanted)?))) else {
        if let Some(error) = controls.iter().find_map(|c| c.error.as_ref()) {
            return Judged::Baseline(format!("publishing `{flow}` through {on} failed: {error}"));
        }
        let wanted: Vec<String> = controls.iter().map(|c| format!("`{}`", c.wanted)).collect();
        return Judged::Baseline(format!(
            "a subscriber of `{flow}` on {on} did not receive {}, published through {on} itself, within {within}{} (a replica whose worker processes each keep their own subscribers misses such messages too)",
            wanted.join(" nor "),
            instead(connection)
        ));
    };
    let Some(trial) = trials.first() else {
        return Judged::Note(format!("no message of `{flow}` was published through another replica for the subscriber on {on}"));
    };
    if let Some(error) = trials.iter().find_map(|t| t.error.as_ref()) {
        return Judged::Note(format!("publishing `{flow}` through {} failed, so that message was not judged: {error}", trial.replica));
    }
    match trials.iter().position(|t| connection.received(&t.wanted).is_some()) {
        Some(0) => return Judged::Shared,
        Some(_) => {
            return Judged::Note(format!(
                "the subscriber of `{flow}` on {on} missed the first message published through {} but got the next: a relay that joins late, not judged",
                trial.replica
            ));
        }
        None => {}
    }
    if let Some(ended) = &connection.ended {
        return Judged::Note(format!(
            "the subscription of `{flow}` on {on} ended ({}) at {:.0} ms, before a message through {} could be judged",
            ended.how, ended.at_ms, trial.replica
        ));
    }
    let (publisher, subscriber_on) = ends(subscriber, connection, trial);
    let reason = format!(
        "`{}`, published through {publisher} at {:.0} ms, never reached the subscriber on {subscriber_on} ({} {}) within {within}{}{}",
        trial.wanted,
        trial.at_ms,
        transport_name(connection),
        connection.path,
        if trials.len() > 1 { format!(", nor did the {} published after it", trials.len() - 1) } else { String::new() },
        instead(connection)
    );
    let control = format!("`{}`, published through {subscriber_on} itself, reached the same subscriber {:.0} ms later", control.wanted, first.at_ms - control.at_ms);
    let expected = format!("a message of `{flow}` published through any replica reaches every subscriber within {within}");
    not_shared(subscriber, (publisher, subscriber_on), trial, None, (expected, reason, control))
}

/// The replica that took a message and the one that held the subscription.
fn ends(subscriber: &Subscriber, connection: &ConnectionRecord, trial: &Published) -> (Incarnation, Incarnation) {
    let publisher = trial.by.unwrap_or(Incarnation { id: trial.replica, generation: 1 });
    (publisher, connection.served_by.unwrap_or(Incarnation { id: subscriber.replica, generation: 1 }))
}

/// The candidate of a message `trial` that never reached its subscriber, in words
/// (expected, observed, control).
fn not_shared(subscriber: &Subscriber, (publisher, subscriber_on): (Incarnation, Incarnation), trial: &Published, after: Option<ChaosEvent>, words: (String, String, String)) -> Judged {
    Judged::NotShared(Box::new(Candidate {
        after,
        vu: trial.vu,
        at_ms: Some(trial.at_ms),
        ..Candidate::said(FindingKind::BroadcastNotShared, "broadcast", &subscriber.flow, (publisher, subscriber_on), words)
    }))
}

/// A subscriber that connected after `after`, against what a subscriber on the same
/// replica received before it.
fn judge_after(subscriber: &Subscriber, after: &ChaosEvent, all: &[Subscriber]) -> Judged {
    let (flow, on) = (&subscriber.flow, subscriber.replica);
    let connection = match &subscriber.connection {
        Ok(connection) => connection,
        Err(why) => return Judged::Note(format!("a subscriber of `{flow}` on {on} did not open after the {}: {why}", after.action)),
    };
    let [own, trials @ ..] = &subscriber.published[..] else {
        return Judged::Note(format!("no message of `{flow}` was published for the subscriber on {on} after the {}", after.action));
    };
    let Some(trial) = trials.first() else {
        return Judged::Note(format!("no message of `{flow}` was published through another replica for the subscriber on {on} after the {}", after.action));
    };
    if let Some(error) = trials.iter().find_map(|t| t.error.as_ref()) {
        return Judged::Note(format!("publishing `{flow}` through {} after the {} failed, so that message was not judged: {error}", trial.replica, after.action));
    }
    if let Some(index) = trials.iter().position(|t| connection.received(&t.wanted).is_some()) {
        return match index {
            0 => Judged::Shared,
            _ => Judged::Note(format!(
                "after the {}, the subscriber of `{flow}` on {on} got a message through {} {:.0} ms after the first was published: the hub recovered",
                after.action,
                trial.replica,
                trials[index].at_ms - trial.at_ms
            )),
        };
    }
    if let Some(ended) = &connection.ended {
        return Judged::Note(format!("the subscription of `{flow}` on {on} after the {} ended ({}) at {:.0} ms, before a message could be judged", after.action, ended.how, ended.at_ms));
    }
    // The control: before the disruption, a message through another replica reached a
    // subscriber of the same flow on the same replica.
    let before = all.iter().filter(|s| s.after.is_none() && s.flow == *flow && s.replica == on).find_map(|s| {
        let connection = s.connection.as_ref().ok()?;
        s.published.iter().skip(1).find_map(|p| connection.received(&p.wanted).map(|m| (p, m.at_ms - p.at_ms)))
    });
    let Some((control, took_ms)) = before else {
        return Judged::Note(format!("no message of `{flow}` through another replica reached {on} before the {}: nothing to compare with", after.action));
    };
    let (publisher, subscriber_on) = ends(subscriber, connection, trial);
    let last = trials.last().unwrap_or(trial);
    let own_replica = match (&own.error, connection.received(&own.wanted)) {
        (Some(error), _) => format!("; publishing through {subscriber_on} itself failed: {error}"),
        (None, Some(_)) => format!("; `{}`, published through {subscriber_on} itself, did", own.wanted),
        (None, None) => format!(", nor did `{}`, published through {subscriber_on} itself: the replica relays nothing", own.wanted),
    };
    let expected = format!("a message of `{flow}` published through any replica reaches every subscriber, after the {} as before it", after.action);
    let reason = format!(
        "{} message(s) published through {publisher} from {:.0} ms to {:.0} ms, after the {} and once every replica was ready, never reached the subscriber on {subscriber_on} ({} {}){own_replica}{}",
        trials.len(),
        trial.at_ms,
        last.at_ms,
        after.action,
        transport_name(connection),
        connection.path,
        instead(connection)
    );
    let control = format!("before the {}, `{}`, published through {}, reached a subscriber of `{flow}` on {on} {took_ms:.0} ms later", after.action, control.wanted, control.replica);
    not_shared(subscriber, (publisher, subscriber_on), trial, Some(after.clone()), (expected, reason, control))
}

fn transport_name(connection: &ConnectionRecord) -> &'static str {
    match connection.transport {
        crate::target::Transport::WebSocket => "WebSocket",
        crate::target::Transport::Events => "event stream",
    }
}

/// What the subscriber received besides, in words.
fn instead(connection: &ConnectionRecord) -> String {
    let received: Vec<String> = connection.messages.iter().filter(|m| !m.sent).map(|m| format!("`{}`", crate::file::cut(&m.text, 80))).collect();
    match received.len() {
        0 => "; it received nothing".to_owned(),
        n if n <= QUOTED => format!("; it received {}", received.join(", ")),
        n => format!("; it received {} and {} more", received[..QUOTED].join(", "), n - QUOTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::live::{Ended, MessageRecord, Published};
    use crate::history::Phase;
    use crate::target::Transport;
    use crate::vocab::replica::ReplicaId;

    fn r(id: u16) -> Incarnation {
        Incarnation { id: ReplicaId(id), generation: 1 }
    }

    /// A subscriber on r0 that received `received` (text, at ms); messages `same` and
    /// `other` published through r0 (at 100 ms) and r1 (at 2200 ms).
    fn subscriber(received: &[(&str, f64)], ended: Option<&str>) -> Subscriber {
        let published = |wanted: &str, on: u16, at_ms: f64| Published { wanted: wanted.into(), replica: ReplicaId(on), by: Some(r(on)), at_ms, vu: Some(7), error: None };
        Subscriber {
            flow: "chat".into(),
            replica: ReplicaId(0),
            connection: Ok(ConnectionRecord {
                transport: Transport::WebSocket,
                path: "/hub".into(),
                planned: ReplicaId(0),
                served_by: Some(r(0)),
                opened_ms: 50.0,
                messages: received.iter().map(|&(text, at_ms)| MessageRecord { at_ms, sent: false, text: text.into() }).collect(),
                ended: ended.map(|how| Ended { at_ms: 3000.0, how: how.into() }),
            }),
            published: vec![published("same", 0, 100.0), published("other", 1, 2200.0), published("again", 1, 4300.0)],
            waited_ms: 2000.0,
            after: None,
        }
    }

    fn run(subscribers: Vec<Subscriber>) -> ExperimentRun {
        let mut run = ExperimentRun::new("broadcast", Phase::Main);
        run.subscribers = subscribers;
        run
    }

    #[test]
    fn a_message_through_another_replica_that_never_arrives_is_a_candidate_when_its_own_replicas_did() {
        let assessment = assess_broadcast(&run(vec![subscriber(&[("same", 130.0)], None)]));
        let [candidate] = &assessment.candidates[..] else { panic!("{:?}", assessment.baseline) };
        assert_eq!((candidate.kind, candidate.producer, candidate.consumer), (FindingKind::BroadcastNotShared, r(1), r(0)));
        assert!(candidate.observed.reason.contains("`other`, published through r1 at 2200 ms, never reached the subscriber on r0 (WebSocket /hub) within 2.0s, nor did the 1 published after it; it received `same`"), "{}", candidate.observed.reason);
        assert!(candidate.control.contains("reached the same subscriber 30 ms later"), "{}", candidate.control);
        // Both arrived: shared.
        assert!(assess_broadcast(&run(vec![subscriber(&[("same", 130.0), ("other", 2230.0)], None)])).candidates.is_empty());
        // Only the second: a relay that joined late, said so and not judged.
        let late = assess_broadcast(&run(vec![subscriber(&[("same", 130.0), ("again", 4330.0)], None)]));
        assert!(late.candidates.is_empty() && late.notes.iter().any(|n| n.contains("a relay that joins late")), "{:?}", late.notes);

        // Joined to the hub late, the subscriber missed the first control and got the
        // second: the subscription works, and what crossed replicas is judged.
        let mut joined_late = subscriber(&[("repeat", 1130.0)], None);
        joined_late.published.insert(1, Published { wanted: "repeat".into(), at_ms: 1100.0, ..joined_late.published[0].clone() });
        let assessment = assess_broadcast(&run(vec![joined_late.clone()]));
        let [candidate] = &assessment.candidates[..] else { panic!("{:?}", assessment.baseline) };
        assert!(candidate.control.contains("`repeat`, published through r0 itself, reached the same subscriber 30 ms later"), "{}", candidate.control);
        let Ok(connection) = &mut joined_late.connection else { unreachable!() };
        connection.messages.clear();
        let missed = assess_broadcast(&run(vec![joined_late])).baseline.unwrap();
        assert!(missed.contains("did not receive `same` nor `repeat`, published through r0 itself"), "{missed}");
    }

    /// `subscriber` after the store's restart, published through r0 at 6000 ms and r1
    /// from 7000 ms on, every 1000 ms, `tries` times.
    fn after_store_restart(received: &[(&str, f64)], tries: u32) -> Subscriber {
        let mut after = subscriber(received, None);
        after.after = Some(ChaosEvent { action: crate::history::ChaosAction::StoreStop { dependency: "redis".into() }, start_ms: 5000.0, end_ms: 5100.0 });
        let published = |wanted: String, on: u16, at_ms: f64| Published { wanted, replica: ReplicaId(on), by: Some(r(on)), at_ms, vu: Some(9), error: None };
        after.published = std::iter::once(published("own".into(), 0, 6000.0)).chain((0..tries).map(|i| published(format!("across{i}"), 1, 7000.0 + 1000.0 * f64::from(i)))).collect();
        after
    }

    #[test]
    fn after_a_disruption_a_subscriber_is_judged_against_what_its_replica_received_before() {
        let before = subscriber(&[("same", 130.0), ("other", 2230.0)], None);
        let stuck = after_store_restart(&[], 10);
        let assessment = assess_broadcast(&run(vec![before.clone(), stuck]));
        let [candidate] = &assessment.candidates[..] else { panic!("{:?} {:?}", assessment.baseline, assessment.notes) };
        assert_eq!((candidate.kind, candidate.producer, candidate.consumer), (FindingKind::BroadcastNotShared, r(1), r(0)));
        assert!(candidate.after.as_ref().is_some_and(|a| matches!(a.action, crate::history::ChaosAction::StoreStop { .. })));
        assert!(candidate.observed.reason.contains("10 message(s) published through r1 from 7000 ms to 16000 ms, after the stop of redis"), "{}", candidate.observed.reason);
        assert!(candidate.observed.reason.contains("nor did `own`, published through r0 itself: the replica relays nothing"), "{}", candidate.observed.reason);
        assert!(candidate.control.contains("before the stop of redis, `other`, published through r1, reached a subscriber of `chat` on r0 30 ms later"), "{}", candidate.control);
        // The hub came back within its time to recover: said so, no finding.
        let recovered = assess_broadcast(&run(vec![before.clone(), after_store_restart(&[("across3", 10010.0)], 4)]));
        assert!(recovered.candidates.is_empty() && recovered.notes.iter().any(|n| n.contains("3000 ms after the first was published: the hub recovered")), "{:?}", recovered.notes);
        // Nothing crossed replicas before: nothing to compare with.
        let never = subscriber(&[("same", 130.0)], None);
        let unjudged = assess_broadcast(&run(vec![never, after_store_restart(&[], 10)]));
        assert!(unjudged.notes.iter().any(|n| n.contains("nothing to compare with")), "{:?}", unjudged.notes);
    }

    #[test]
    fn a_subscriber_that_misses_its_own_replicas_message_or_whose_connection_ended_judges_nothing() {
        let alone = assess_broadcast(&run(vec![subscriber(&[], None)]));
        assert!(alone.candidates.is_empty());
        assert!(alone.baseline.unwrap().contains("did not receive `same`, published through r0 itself, within 2.0s; it received nothing"));
        let ended = assess_broadcast(&run(vec![subscriber(&[("same", 130.0)], Some("closed by the replica"))]));
        assert!(ended.candidates.is_empty() && ended.baseline.is_none());
        assert!(ended.notes.iter().any(|n| n.contains("ended (closed by the replica)")), "{:?}", ended.notes);
        let mut refused = subscriber(&[], None);
        refused.connection = Err("/hub: answered 404 Not Found instead of switching to a WebSocket".into());
        assert!(assess_broadcast(&run(vec![refused])).baseline.unwrap().contains("did not open: /hub: answered 404"));
    }
}

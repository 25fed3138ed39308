//! Rate limits' findings, from the `limits` experiment's series of tries.
//!
//! The control comes first: a client through one replica is limited within the limit's
//! tries. Without it the flow is `baseline-failed` and nothing else is judged.
//!
//! A replica that let a client through where the limit should hold is evidence only with a
//! witness: a replica that had limited the same client and, asked after each try let
//! through, still refused it. The witness rules out the window ending (a count that starts
//! afresh refuses nobody); a limit that refills (a token bucket, a sliding window) gives
//! back one try per `window / limit`, so at least two tries must go through, all within
//! that time of the limit being reached. Across a restart the witness was limited before
//! the replica that restarts: it would get a try back first, so while it refuses, the
//! restarted replica's tries let through are its restart's doing, however long the restart
//! took within the window.

use std::time::Duration;

use super::finding::FindingKind;
use super::twice::{Assessment, Candidate};
use crate::chaos::THROUGH_NEEDED;
use crate::history::limits::{Answer, LimitCheck, Question, Try};
use crate::history::{ChaosAction, ExperimentRun, Phase};
use crate::target::RateLimit;
use crate::vocab::replica::Incarnation;

pub fn assess_limits(run: &ExperimentRun, flows: &[RateLimit]) -> Assessment {
    let mut assessment = Assessment::of(run);
    for flow in flows {
        let checks: Vec<&LimitCheck> = run.limits.iter().filter(|c| c.flow == flow.name).collect();
        // The control asked last: the first one, if a window ended in it, shows nothing.
        let Some(shared) = checks.iter().rfind(|c| c.question == Question::SharedByClients) else { continue };
        if let Err(why) = control(shared, flow, run.phase) {
            assessment.baseline.get_or_insert(why);
            continue;
        }
        if flow.sends_value() {
            assessment.candidates.extend(shared_by_clients(shared, flow));
        } else if shared.limited_another() {
            assessment.notes.push(format!(
                "[limit.{}] two clients: the second client was refused after the first was limited, but both sent the same attempt (it has no {{value}}), \
                 and a limit on what it names, such as an account, is shared by design; put {{value}} where the attempt names the account to tell",
                flow.name
            ));
        }
        for question in [Question::PerReplica, Question::ResetByRestart, Question::Forged] {
            let asked: Vec<&&LimitCheck> = checks.iter().filter(|c| c.question == question).collect();
            let judged: Vec<Judged> = asked.iter().map(|check| judge(check, flow)).collect();
            if let Some(candidate) = judged.iter().find_map(|j| match j {
                Judged::Candidate(candidate) => Some(candidate.clone()),
                _ => None,
            }) {
                assessment.candidates.push(*candidate);
            } else if let Some(Judged::Note(note)) = judged.last() {
                assessment.notes.push(format!("[limit.{}] {}: {note}", flow.name, question_name(question)));
            }
        }
    }
    assessment
}

fn question_name(question: Question) -> &'static str {
    match question {
        Question::SharedByClients => "two clients",
        Question::PerReplica => "across replicas",
        Question::ResetByRestart => "across a restart",
        Question::Forged => "a forged X-Forwarded-For",
    }
}

/// How the limit reads in a sentence: "5 tries per 1m".
fn stated(flow: &RateLimit) -> String {
    format!("{} tries per {}", flow.limit, humantime::format_duration(flow.window))
}

/// The control: the first client through one replica was limited within the limit's tries.
/// A first run also needs a try let through, or nothing shows that the limit counts tries.
fn control(shared: &LimitCheck, flow: &RateLimit, phase: Phase) -> Result<(), String> {
    if let Some(failed) = shared.tries.iter().find(|t| matches!(t.answer, Answer::Failed { .. })) {
        let Answer::Failed { reason } = &failed.answer else { unreachable!("found as failed") };
        return Err(format!("[limit.{}]: a try through {} failed ({reason}), so the limit could not be tried", flow.name, failed.replica()));
    }
    let Some(limited) = shared.tries.iter().find(|t| t.limited()) else {
        // The last try is the first client's when it was never limited.
        let Some(last) = shared.tries.last() else { return Err(format!("[limit.{}]: no try was sent", flow.name)) };
        let mine: Vec<&Try> = shared.tries.iter().filter(|t| t.client == last.client).collect();
        let mut answers: Vec<(u16, usize)> = Vec::new();
        for status in mine.iter().filter_map(|t| match t.answer {
            Answer::LetThrough { status } => Some(status),
            _ => None,
        }) {
            match answers.iter_mut().find(|(s, _)| *s == status) {
                Some((_, count)) => *count += 1,
                None => answers.push((status, 1)),
            }
        }
        let answers: Vec<String> = answers.iter().map(|(status, count)| format!("{status} ×{count}")).collect();
        return Err(format!(
            "[limit.{}]: client {} tried {} times through {} and was never answered as a limited try looks ({}): {}, where the target says {}; \
             a limit counted per worker process lets a client through more than once per replica",
            flow.name,
            last.client,
            mine.len(),
            last.replica(),
            crate::vu::expect::describe(&flow.limited, &Default::default()),
            answers.join(", "),
            stated(flow)
        ));
    };
    if phase == Phase::Main && !shared.tries.iter().any(Try::let_through) {
        return Err(format!(
            "[limit.{}]: {} refused the first try of two new clients: the limit was reached before the experiment began (this run's users count with \
             them when it is keyed on the proxy's address), or `limited` matches every answer",
            flow.name,
            limited.replica()
        ));
    }
    Ok(())
}

/// The second client refused right after the first was limited, with fewer tries of its own
/// than the limit.
fn shared_by_clients(shared: &LimitCheck, flow: &RateLimit) -> Option<Candidate> {
    if !shared.limited_another() {
        return None;
    }
    let last = shared.tries.last()?;
    let first_limited = shared.tries.iter().find(|t| t.limited())?;
    let own = shared.tries.iter().filter(|t| t.client == last.client && t.let_through()).count();
    if own as u32 >= flow.limit {
        return None;
    }
    let first_through = shared.tries.iter().filter(|t| t.client == first_limited.client && t.let_through()).count();
    let before = if own > 0 { format!(", after {own} try of its own let through before the first client's") } else { String::new() };
    let replica = first_limited.replica();
    Some(candidate(
        FindingKind::LimitSharedByAllClients,
        flow,
        (replica, last.replica()),
        last,
        format!("a client's tries count against that client alone: a new client is let through until it has made {}", stated(flow)),
        format!(
            "client {} was refused by {} at {:.0} ms{before}, right after client {} was limited there: one count for both, the proxy's address or another key every client shares",
            last.client, replica, last.start_ms, first_limited.client
        ),
        if own > 0 {
            format!("client {} was limited by {replica} after {first_through} tries let through, {} with the second client's try before them, as the limit says", first_limited.client, first_through + own)
        } else {
            format!("client {} was limited by {replica} after {first_through} tries let through, as the limit says", first_limited.client)
        },
    ))
}

enum Judged {
    Candidate(Box<Candidate>),
    /// Why the series shows nothing.
    Note(String),
    Nothing,
}

/// A series after the client's limit: tries let through on the fresh side (other replicas,
/// the restarted replica, forged addresses) with every witness refusing.
fn judge(check: &LimitCheck, flow: &RateLimit) -> Judged {
    let Some(at) = check.tries.iter().position(|t| t.limited() && t.forged.is_none()) else {
        return Judged::Nothing;
    };
    // After a restart the series goes on from the later of the two limits before it: the
    // restarted replica's and the witness's.
    let (from, limited, witness_of, witness_first) = match check.question {
        Question::ResetByRestart => {
            let Some(restart) = &check.after else { return Judged::Nothing };
            let ChaosAction::Start { replica: restarted } = &restart.action else { return Judged::Nothing };
            let before = |t: &Try| t.limited() && t.start_ms < restart.start_ms;
            let Some(last) = check.tries.iter().rposition(|t| before(t) && t.replica().id == restarted.id) else { return Judged::Nothing };
            let Some(witness) = check.tries.iter().position(|t| before(t) && t.replica().id != restarted.id) else { return Judged::Nothing };
            (last.max(witness), &check.tries[last], check.tries[witness].replica(), witness < last)
        }
        _ => (at, &check.tries[at], check.tries[at].replica(), false),
    };
    let later = &check.tries[from + 1..];
    let is_witness = |t: &Try| t.forged.is_none() && t.replica() == witness_of;
    let fresh: Vec<&Try> = later.iter().filter(|t| !is_witness(t)).collect();
    let through: Vec<&&Try> = fresh.iter().filter(|t| t.let_through()).collect();
    let witnesses: Vec<&Try> = later.iter().filter(|t| is_witness(t)).collect();
    if through.len() < THROUGH_NEEDED {
        return Judged::Nothing;
    }
    if check.window_ended(flow.limit) || witnesses.iter().any(|t| !t.limited()) || !later.last().is_some_and(is_witness) {
        return Judged::Note(format!("{witness_of} let the client through again by itself (its window ended), so the series shows nothing"));
    }
    let span = Duration::from_secs_f64((later.last().map_or(0.0, |t| t.end_ms) - check.tries[from].start_ms).max(0.0) / 1000.0);
    // A witness limited first rules out a refill; a count that keeps refused tries frees the
    // client only a window after its first try.
    let (bound, what) = if witness_first { (flow.window, "the limit's window") } else { (flow.refill(), "a limit that refills takes to give one back") };
    if span >= bound {
        return Judged::Note(format!(
            "the tries after the limit took {} ms, as long as {what} ({} ms), so they show nothing",
            span.as_millis(),
            bound.as_millis()
        ));
    }
    let first_through = through[0];
    let counts = |replica: Incarnation| fresh.iter().filter(|t| t.replica() == replica && t.let_through()).count();
    let mut on: Vec<Incarnation> = through.iter().map(|t| t.replica()).collect();
    on.dedup();
    let spread: Vec<String> = on.iter().map(|r| format!("{r} {}", counts(*r))).collect();
    let before: usize = check.tries[..=from].iter().filter(|t| t.client == limited.client && t.let_through()).count();
    let within = format!("within {} ms", span.as_millis());
    let (kind, expected, observed, control) = match check.question {
        Question::PerReplica => (
            FindingKind::LimitPerReplica,
            format!("every replica counts a client's tries together: {} in all, whichever replicas serve them", stated(flow)),
            format!(
                "client {} was limited by {} {}; then {} let it through ({}) {within}: {} tries in all",
                limited.client,
                limited.replica(),
                if before == 0 { "from its first try (a count it shares with other clients)".to_owned() } else { format!("after {before} tries let through") },
                on.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and "),
                spread.join(", "),
                before + through.len()
            ),
            format!("{}, asked after each of those tries, went on refusing the client ({} times)", limited.replica(), witnesses.len()),
        ),
        Question::ResetByRestart => (
            FindingKind::LimitResetByRestart,
            format!("a restart changes nothing of a client's count: it stays limited for the rest of the window ({})", stated(flow)),
            format!(
                "{} had limited client {} before it restarted; {} let the client through {} times {within} of the limit",
                limited.replica(),
                limited.client,
                first_through.replica(),
                through.len()
            ),
            format!("{}, which had counted the same client's tries and did not restart, refused it before and after ({} times)", witness_of, witnesses.len()),
        ),
        _ => (
            FindingKind::LimitSpoofable,
            "X-Forwarded-For counts only from the known proxy: a client that is not the proxy cannot choose the address its tries count against".to_owned(),
            format!(
                "a stranger connecting straight to {} from {}, limited after {before} tries, was let through when it sent X-Forwarded-For: {} {within}",
                limited.replica(),
                limited.client,
                through.iter().filter_map(|t| t.forged.clone()).collect::<Vec<_>>().join(", then ")
            ),
            format!("from its own address, with no forged header, the same stranger was refused after each ({} times)", witnesses.len()),
        ),
    };
    let mut found = candidate(kind, flow, (limited.replica(), first_through.replica()), first_through, expected, observed, control);
    found.after = check.after.clone();
    Judged::Candidate(Box::new(found))
}

fn candidate(kind: FindingKind, flow: &RateLimit, ends: (Incarnation, Incarnation), at: &Try, expected: String, reason: String, control: String) -> Candidate {
    Candidate { vu: Some(at.vu), at_ms: Some(at.start_ms), ..Candidate::said(kind, "limits", &flow.name, ends, (expected, reason, control)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{Expect, RequestSpec, StatusSet, Template};
    use crate::vocab::replica::ReplicaId;

    fn flow(limit: u32, window_ms: u64) -> RateLimit {
        RateLimit {
            name: "resets".into(),
            attempt: RequestSpec::get(Template::literal("/reset?u={value}")),
            limit,
            window: Duration::from_millis(window_ms),
            limited: Expect { status: Some(StatusSet::Codes(vec![429])), ..Expect::default() },
        }
    }

    /// A try of client `127.1.1.{client}` answered by `r{replica}#{generation}` at `at_ms`:
    /// `L` limited, `T` let through.
    fn tried(client: u8, (replica, generation): (u16, u32), at_ms: f64, answer: char) -> Try {
        Try {
            client: [127, 1, 1, client].into(),
            forged: None,
            replica: ReplicaId(replica),
            served_by: Some(Incarnation { id: ReplicaId(replica), generation }),
            vu: at_ms as u32,
            start_ms: at_ms,
            end_ms: at_ms + 5.0,
            answer: if answer == 'L' { Answer::Limited } else { Answer::LetThrough { status: 202 } },
        }
    }

    fn series(question: Question, tries: Vec<Try>) -> LimitCheck {
        LimitCheck { flow: "resets".into(), question, tries, after: None }
    }

    /// Client 3 limited by r0, then let through by r1, r0 asked after each.
    fn across(witness: char, step_ms: f64) -> LimitCheck {
        let at = |k: f64| 100.0 + k * step_ms;
        series(
            Question::PerReplica,
            vec![
                tried(3, (0, 1), at(0.0), 'L'),
                tried(3, (1, 1), at(1.0), 'T'),
                tried(3, (0, 1), at(2.0), witness),
                tried(3, (1, 1), at(3.0), 'T'),
                tried(3, (0, 1), at(4.0), 'L'),
            ],
        )
    }

    #[test]
    fn a_client_let_through_by_another_replica_while_the_first_refuses_it_is_limit_per_replica() {
        let Judged::Candidate(found) = judge(&across('L', 30.0), &flow(5, 60_000)) else { panic!("a finding") };
        assert_eq!(found.kind, FindingKind::LimitPerReplica);
        assert_eq!((found.producer.id, found.consumer.id), (ReplicaId(0), ReplicaId(1)));
        assert!(found.observed.reason.contains("then r1 let it through (r1 2)"), "{}", found.observed.reason);
    }

    /// Client 5 limited by r1 and r0 in the order `limited`, r0 restarted from 1000 ms on for
    /// `restart_ms`, then let through by r0#2 twice, r1 asked before and after each.
    fn across_a_restart(limited: [u16; 2], restart_ms: f64) -> LimitCheck {
        let mut tries: Vec<Try> = limited.iter().enumerate().map(|(k, &r)| tried(5, (r, 1), 100.0 + 10.0 * k as f64, 'L')).collect();
        let after = 1000.0 + restart_ms;
        for (k, (replica, answer)) in [((1, 1), 'L'), ((0, 2), 'T'), ((1, 1), 'L'), ((0, 2), 'T'), ((1, 1), 'L')].into_iter().enumerate() {
            tries.push(tried(5, replica, after + 10.0 * k as f64, answer));
        }
        let mut check = series(Question::ResetByRestart, tries);
        let started = Incarnation { id: ReplicaId(0), generation: 2 };
        check.after = Some(crate::history::ChaosEvent { action: ChaosAction::Start { replica: started }, start_ms: 1000.0, end_ms: after });
        check
    }

    #[test]
    fn a_restart_that_takes_longer_than_a_refill_is_judged_when_the_witness_was_limited_first() {
        // 5 tries a minute: one comes back every 12 s.
        let judged = |limited, restart_ms| judge(&across_a_restart(limited, restart_ms), &flow(5, 60_000));
        let Judged::Candidate(found) = judged([1, 0], 20_000.0) else { panic!("a finding") };
        assert_eq!(found.kind, FindingKind::LimitResetByRestart);
        assert!(found.observed.reason.starts_with("r0 had limited client 127.1.1.5 before it restarted; r0#2 let the client through 2 times"), "{}", found.observed.reason);
        assert!(found.control.starts_with("r1, which had counted"), "{}", found.control);
        // The restarted replica limited first would give a try back first: 20 s is too long.
        assert!(matches!(judged([0, 1], 20_000.0), Judged::Note(note) if note.contains("a limit that refills")));
        assert!(matches!(judged([0, 1], 2_000.0), Judged::Candidate(_)));
        // Past the window, a count that keeps refused tries has let the client go.
        assert!(matches!(judged([1, 0], 70_000.0), Judged::Note(note) if note.contains("the limit's window (60000 ms)")));
    }

    #[test]
    fn a_window_that_ended_a_refill_in_reach_or_one_try_through_shows_nothing() {
        // The first replica let the client through again: its window ended.
        assert!(matches!(judge(&across('T', 30.0), &flow(5, 60_000)), Judged::Note(note) if note.contains("window ended")));
        // 5 tries per second refill one every 200 ms: 480 ms of tries show nothing.
        assert!(matches!(judge(&across('L', 120.0), &flow(5, 1_000)), Judged::Note(note) if note.contains("refills")));
        // A client let through more than the limit by one replica was never counted whole.
        let beyond = series(Question::ResetByRestart, (0..6).map(|k| tried(4, (0, 1), f64::from(k) * 10.0, 'T')).collect());
        assert!(beyond.window_ended(5) && !beyond.window_ended(6));
        // One try through can be one try given back.
        let mut once = across('L', 30.0);
        once.tries.truncate(3);
        assert!(matches!(judge(&once, &flow(5, 60_000)), Judged::Nothing));
    }

    #[test]
    fn a_second_client_refused_after_the_first_was_limited_shares_its_count_unless_its_own_tries_reach_the_limit() {
        let shared = series(
            Question::SharedByClients,
            vec![tried(2, (0, 1), 10.0, 'T'), tried(1, (0, 1), 20.0, 'T'), tried(1, (0, 1), 30.0, 'L'), tried(2, (0, 1), 40.0, 'L')],
        );
        let found = shared_by_clients(&shared, &flow(5, 60_000)).expect("a finding");
        assert_eq!(found.kind, FindingKind::LimitSharedByAllClients);
        assert!(shared_by_clients(&shared, &flow(1, 60_000)).is_none(), "with a limit of 1 the second client's own try limits it");
        assert!(control(&shared, &flow(5, 60_000), Phase::Main).is_ok());
        // The second client let through, then the first: the window ended in between, and
        // the series is asked again rather than read as counts of their own.
        let ended = series(
            Question::SharedByClients,
            vec![tried(1, (0, 1), 10.0, 'T'), tried(1, (0, 1), 20.0, 'L'), tried(2, (0, 1), 30.0, 'T'), tried(1, (0, 1), 40.0, 'T')],
        );
        assert!(ended.window_ended(5) && shared_by_clients(&ended, &flow(5, 60_000)).is_none());
        let own = series(Question::SharedByClients, ended.tries[..3].iter().cloned().chain([tried(1, (0, 1), 40.0, 'L')]).collect());
        assert!(!own.window_ended(5) && shared_by_clients(&own, &flow(5, 60_000)).is_none());
    }

    #[test]
    fn the_control_needs_the_first_client_limited_and_in_a_first_run_a_try_let_through() {
        let never = series(Question::SharedByClients, (0..6).map(|k| tried(1, (0, 1), f64::from(k) * 10.0, 'T')).collect());
        let why = control(&never, &flow(5, 60_000), Phase::Main).unwrap_err();
        assert!(why.contains("tried 6 times through r0") && why.contains("202 ×6") && why.contains("5 tries per 1m"), "{why}");
        let refused = series(Question::SharedByClients, vec![tried(2, (0, 1), 10.0, 'L'), tried(1, (0, 1), 20.0, 'L'), tried(2, (0, 1), 30.0, 'L')]);
        assert!(control(&refused, &flow(5, 60_000), Phase::Main).unwrap_err().contains("refused the first try of two new clients"));
        // A second run starts where the first left a count every client shares.
        assert!(control(&refused, &flow(5, 60_000), Phase::Reproduce).is_ok());
    }
}

//! Interleaved schedules: the plans exploration generates, shrinks and replays. Users'
//! steps run one at a time, in the order given, each on its own replica, with disruptions
//! (a restart, a kill, a restart of the store) between them. A schedule is plain data with
//! a short text form, so the smallest one that shows a fault can be printed, put in a
//! reproduce command and read back:
//!
//! `u0:login/0@r0 u0:login/1@r0 restart:r0 u0:login/2@r0`

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::VuPlan;
use crate::vocab::replica::ReplicaId;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Schedule {
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// User `user` sends step `step` of its scenario to `replica`.
    Step { user: u32, scenario: String, step: usize, replica: ReplicaId },
    Disrupt(Disruption),
}

/// What happens to the cluster between two steps; each ends with the cluster whole again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disruption {
    /// Terminated as the platform would, and started again.
    Restart(ReplicaId),
    /// SIGKILLed, and started again.
    Kill(ReplicaId),
    /// The shared store (Redis) stopped and started again.
    StoreRestart,
}

impl Schedule {
    /// Requests the schedule sends, at most (a user stops at its first failing step).
    pub fn steps(&self) -> usize {
        self.events.iter().filter(|e| matches!(e, Event::Step { .. })).count()
    }

    pub fn disruptions(&self) -> impl Iterator<Item = Disruption> + '_ {
        self.events.iter().filter_map(|e| match e {
            Event::Disrupt(d) => Some(*d),
            Event::Step { .. } => None,
        })
    }

    /// The users in order of their number: scenario and the replica of each step. Numbers
    /// start at `first_vu`; `nonce` makes their values this execution's own.
    pub fn users(&self, first_vu: u32, nonce: &str) -> Vec<(u32, VuPlan)> {
        let mut users: Vec<(u32, VuPlan)> = Vec::new();
        for event in &self.events {
            let Event::Step { user, scenario, replica, .. } = event else { continue };
            match users.iter_mut().find(|(u, _)| u == user) {
                Some((_, plan)) => plan.routes.push(*replica),
                None => users.push((
                    *user,
                    VuPlan {
                        vu: first_vu + *user,
                        scenario: scenario.clone(),
                        nonce: format!("{nonce}u{user}"),
                        routes: vec![*replica],
                    },
                )),
            }
        }
        users.sort_by_key(|(u, _)| *u);
        users
    }

    /// The same schedule with every step of `user` sent to `replica`: a control that takes
    /// the crossing away and nothing else.
    pub fn pinned(&self, user: u32, replica: ReplicaId) -> Schedule {
        let events = self
            .events
            .iter()
            .map(|event| match event {
                Event::Step { user: u, scenario, step, .. } if *u == user => Event::Step {
                    user,
                    scenario: scenario.clone(),
                    step: *step,
                    replica,
                },
                other => other.clone(),
            })
            .collect();
        Schedule { events }
    }

    /// The same steps without the disruptions: a control that takes them away.
    pub fn undisturbed(&self) -> Schedule {
        Schedule {
            events: self.events.iter().filter(|e| matches!(e, Event::Step { .. })).cloned().collect(),
        }
    }

    /// The schedule without user `user`: its steps gone, later users a number lower.
    pub fn without_user(&self, user: u32) -> Schedule {
        let events = self
            .events
            .iter()
            .filter(|e| !matches!(e, Event::Step { user: u, .. } if *u == user))
            .map(|event| match event {
                Event::Step { user: u, scenario, step, replica } if *u > user => Event::Step {
                    user: u - 1,
                    scenario: scenario.clone(),
                    step: *step,
                    replica: *replica,
                },
                other => other.clone(),
            })
            .collect();
        Schedule { events }
    }

    /// The schedule without its disruption at `index` among the events.
    pub fn without_disruption(&self, index: usize) -> Schedule {
        let mut events = self.events.clone();
        if matches!(events.get(index), Some(Event::Disrupt(_))) {
            events.remove(index);
        }
        Schedule { events }
    }

    /// The simpler schedules one removal away: each user but one, and each disruption.
    pub fn one_less(&self) -> Vec<Schedule> {
        let mut users: Vec<u32> = self.users(0, "").into_iter().map(|(u, _)| u).collect();
        users.dedup();
        let mut simpler: Vec<Schedule> = if users.len() > 1 { users.iter().map(|u| self.without_user(*u)).collect() } else { Vec::new() };
        let disruptions = self.events.iter().enumerate().filter(|(_, e)| matches!(e, Event::Disrupt(_)));
        simpler.extend(disruptions.map(|(index, _)| self.without_disruption(index)));
        simpler
    }

    /// Where user `user`'s step `step` stands among the events.
    pub fn position(&self, user: u32, step: usize) -> Option<usize> {
        self.events
            .iter()
            .position(|e| matches!(e, Event::Step { user: u, step: s, .. } if *u == user && *s == step))
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Step { user, scenario, step, replica } => write!(f, "u{user}:{scenario}/{step}@{replica}"),
            Event::Disrupt(Disruption::Restart(replica)) => write!(f, "restart:{replica}"),
            Event::Disrupt(Disruption::Kill(replica)) => write!(f, "kill:{replica}"),
            Event::Disrupt(Disruption::StoreRestart) => f.write_str("store-restart"),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, event) in self.events.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{event}")?;
        }
        Ok(())
    }
}

/// A schedule's text that cannot be read: which word, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("word {word} (`{text}`, column {column}): {reason}")]
pub struct ScheduleError {
    /// 1-based.
    pub word: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub text: String,
    pub reason: String,
}

impl FromStr for Event {
    type Err = String;

    fn from_str(word: &str) -> Result<Self, String> {
        if word == "store-restart" {
            return Ok(Event::Disrupt(Disruption::StoreRestart));
        }
        if let Some(replica) = word.strip_prefix("restart:") {
            return Ok(Event::Disrupt(Disruption::Restart(replica.parse()?)));
        }
        if let Some(replica) = word.strip_prefix("kill:") {
            return Ok(Event::Disrupt(Disruption::Kill(replica.parse()?)));
        }
        let shape = || format!("`{word}` is neither a step (u0:login/2@r1) nor a disruption (restart:r0, kill:r0, store-restart)");
        let (user, rest) = word.split_once(':').ok_or_else(shape)?;
        let user = user.strip_prefix('u').and_then(|n| n.parse().ok()).ok_or_else(shape)?;
        let (scenario, rest) = rest.rsplit_once('/').ok_or_else(shape)?;
        let (step, replica) = rest.split_once('@').ok_or_else(shape)?;
        if scenario.is_empty() {
            return Err(shape());
        }
        Ok(Event::Step {
            user,
            scenario: scenario.to_owned(),
            step: step.parse().map_err(|_| format!("`{step}` is not a step number"))?,
            replica: replica.parse()?,
        })
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Reads the text form; each user's steps must come in order from 0, in one scenario.
    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        let mut events = Vec::new();
        let mut next: Vec<(u32, String, usize)> = Vec::new();
        let mut offset = 0;
        for (index, word) in text.split_whitespace().enumerate() {
            let start = offset + text[offset..].find(word).unwrap_or(0);
            offset = start + word.len();
            let error = |reason: String| ScheduleError {
                word: index + 1,
                column: text[..start].chars().count() + 1,
                text: word.to_owned(),
                reason,
            };
            let event: Event = word.parse().map_err(error)?;
            if let Event::Step { user, scenario, step, .. } = &event {
                match next.iter_mut().find(|(u, _, _)| u == user) {
                    Some((_, known, _)) if known != scenario => {
                        return Err(error(format!("u{user} runs {known}, not {scenario}")));
                    }
                    Some((_, _, expected)) if expected != step => {
                        return Err(error(format!("u{user}'s next step is {expected}, not {step}")));
                    }
                    Some((_, _, expected)) => *expected += 1,
                    None if *step != 0 => return Err(error(format!("u{user} starts at step 0, not {step}"))),
                    None => next.push((*user, scenario.clone(), 1)),
                }
            }
            events.push(event);
        }
        if events.is_empty() {
            return Err(ScheduleError {
                word: 0,
                column: 1,
                text: String::new(),
                reason: "the schedule is empty".into(),
            });
        }
        Ok(Schedule { events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_reads_back_as_the_same_schedule() {
        let text = "u0:login/0@r0 u1:cache/0@r1 u0:login/1@r0 restart:r0 u0:login/2@r0 kill:r1 store-restart u1:cache/1@r0";
        let schedule: Schedule = text.parse().unwrap();
        assert_eq!(schedule.to_string(), text);
        assert_eq!(schedule.steps(), 5);
        assert_eq!(schedule.disruptions().count(), 3);
        let users = schedule.users(10, "n");
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].1.routes, [ReplicaId(0); 3]);
        assert_eq!((users[1].1.vu, users[1].1.routes.clone()), (11, vec![ReplicaId(1), ReplicaId(0)]));
        assert_ne!(users[0].1.nonce, users[1].1.nonce);
    }

    #[test]
    fn a_bad_word_is_named_with_its_column() {
        let error = "u0:login/0@r0  u0:login/2@r1".parse::<Schedule>().unwrap_err();
        assert_eq!((error.word, error.column), (2, 16));
        assert!(error.reason.contains("next step is 1"), "{error}");
        let error = "u0:login/0@r0 pause:r1".parse::<Schedule>().unwrap_err();
        assert!(error.reason.contains("neither a step"), "{error}");
        assert!("u0:login/0@x1".parse::<Schedule>().is_err());
        assert!("u1:cache/1@r0".parse::<Schedule>().unwrap_err().reason.contains("starts at step 0"));
        assert!("u0:cache/0@r0 u0:login/1@r0".parse::<Schedule>().unwrap_err().reason.contains("runs cache"));
        assert!("  ".parse::<Schedule>().is_err());
    }

    #[test]
    fn controls_change_one_thing() {
        let schedule: Schedule = "u0:login/0@r0 restart:r1 u1:cache/0@r1 u0:login/1@r1".parse().unwrap();
        assert_eq!(schedule.pinned(0, ReplicaId(0)).to_string(), "u0:login/0@r0 restart:r1 u1:cache/0@r1 u0:login/1@r0");
        assert_eq!(schedule.undisturbed().to_string(), "u0:login/0@r0 u1:cache/0@r1 u0:login/1@r1");
        assert_eq!(schedule.position(0, 1), Some(3));
        let simpler: Vec<String> = schedule.one_less().iter().map(ToString::to_string).collect();
        assert_eq!(simpler, ["restart:r1 u0:cache/0@r1", "u0:login/0@r0 restart:r1 u0:login/1@r1", "u0:login/0@r0 u1:cache/0@r1 u0:login/1@r1"]);
    }
}

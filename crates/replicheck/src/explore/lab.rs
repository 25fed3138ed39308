//! Running schedules against the live cluster: each schedule's users step by step in its
//! order, its disruptions between their steps, then the deliveries of the work its
//! triggers handed over, and every run kept for the report. Nothing is judged here.
//!
//! Every run gets fresh users (fresh cookie jars) with values of their own, so what one
//! run wrote can never make another's read pass; user numbers and values follow from the
//! order of runs alone, so an exploration run again numbers them the same.

use tokio::time::Instant;

use crate::chaos::experiment::{self, Arena, trigger_scenario, trigger_value};
use crate::history::{ExperimentRun, Phase, ReplicaExit, ScheduleRun, Trigger};
use crate::plan::interleaving::{Event, Schedule};
use crate::redact::Secrets;
use crate::vu::Stepper;

pub struct Lab<'a> {
    pub arena: Arena<'a>,
    next_vu: u32,
    pub runs: Vec<ScheduleRun>,
    pub secrets: Secrets,
    /// Replicas that exited between steps without a disruption asking for it.
    pub exits: Vec<ReplicaExit>,
}

impl<'a> Lab<'a> {
    pub fn new(arena: Arena<'a>) -> Self {
        Self {
            arena,
            next_vu: 0,
            runs: Vec::new(),
            secrets: Secrets::default(),
            exits: Vec::new(),
        }
    }

    /// Runs the schedule once and keeps its record; returns it.
    pub async fn run(&mut self, schedule: &Schedule, phase: Phase) -> &ScheduleRun {
        let first_vu = self.next_vu;
        let nonce = format!("x{:04}", self.runs.len());
        let users = schedule.users(first_vu, &nonce);
        self.next_vu += users.iter().map(|(u, _)| u + 1).max().unwrap_or(0);
        // A copy of the arena's reference: the users hold it while disruptions take the arena.
        let ctx = self.arena.ctx;
        let mut steppers: Vec<(u32, Stepper<'_>)> = users.iter().map(|(user, plan)| (*user, Stepper::new(ctx, plan, phase))).collect();
        let mut disruptions = ExperimentRun::new("explore", phase);
        let from = Instant::now();
        disruptions.triggers = users
            .iter()
            .filter_map(|(_, plan)| {
                let flow = self.arena.target.triggered.iter().find(|f| trigger_scenario(&f.name) == plan.scenario)?;
                Some(Trigger { vu: plan.vu, flow: flow.name.clone(), value: trigger_value(&plan.nonce), before_sigterm: false })
            })
            .collect();
        for event in &schedule.events {
            match event {
                Event::Step { user, .. } => {
                    self.notice_exits().await;
                    if let Some((_, stepper)) = steppers.iter_mut().find(|(u, _)| u == user) {
                        stepper.step().await;
                    }
                }
                Event::Disrupt(disruption) => {
                    if let Err(err) = experiment::disrupt(*disruption, &mut self.arena, &mut disruptions).await {
                        disruptions.error = Some(format!("{event}: {err}"));
                        break;
                    }
                }
            }
        }
        // What the disruptions' healing came upon is told now, not after the next run began.
        self.notice_exits().await;
        self.await_deliveries(&mut disruptions, from).await;
        let mut records = Vec::with_capacity(steppers.len());
        for (_, stepper) in steppers {
            let (record, seen) = stepper.finish();
            self.secrets.extend(&seen);
            records.push(record);
        }
        self.runs.push(ScheduleRun {
            schedule: schedule.clone(),
            phase,
            first_vu,
            users: records,
            disruptions,
        });
        self.runs.last().expect("just pushed")
    }

    /// The deliveries of the run's triggers, once each has one or the flows' bound has
    /// passed since the last step.
    async fn await_deliveries(&self, run: &mut ExperimentRun, from: Instant) {
        let Some(inbox) = self.arena.cluster.deliveries().filter(|_| !run.triggers.is_empty()) else { return };
        let flows = &self.arena.target.triggered;
        let within = run.triggers.iter().filter_map(|t| flows.iter().find(|f| f.name == t.flow)).map(|f| f.within).max().unwrap_or_default();
        let deadline = Instant::now() + within;
        for trigger in &run.triggers {
            let Some(flow) = flows.iter().find(|f| f.name == trigger.flow) else { continue };
            let left = deadline.saturating_duration_since(Instant::now());
            experiment::first_delivery(&inbox, from, left, |_, what| what.is(&flow.deliveries) && what.carries(&trigger.value)).await;
        }
        run.deliveries = Some(inbox.since(self.arena.ctx.origin, from));
    }

    /// A replica that exited, or stopped answering, with no disruption asking for it is
    /// out of routing at once.
    async fn notice_exits(&mut self) {
        let arena = &mut self.arena;
        let exits = crate::driver::notice_exits(arena.cluster, arena.balancer, arena.ctx.origin, &crate::progress::Silent, None).await;
        self.exits.extend(exits);
    }
}

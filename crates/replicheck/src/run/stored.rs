//! A run as it is stored in its report directory, and its report made from what it
//! recorded: `run` makes its report this way once it has judged the record, and `replicheck
//! check` reads the record back (with `plan.json`) and judges it again the same way.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::driver::{RunError, conclude};
use crate::check::recorded::{self, Record, RunInfo};
use crate::check::{self, Verdict};
use crate::history::History;
use crate::plan::Plan;
use crate::policy::Policy;
use crate::report::json::RunRecord;
use crate::report::{self, Report};
use crate::scenario::ScenarioFile;
use crate::target::{Preset, Target};

/// The plan's file in a report directory.
pub const PLAN_FILE: &str = "plan.json";

/// The report of a recorded run, short of its verdict (no scenarios or findings yet).
pub(crate) fn report(record: &Record, info: &RunInfo, plan: Plan, history: &History) -> Report {
    Report {
        tool: "replicheck".into(),
        version: info.version.clone(),
        run_id: info.run_id.clone(),
        seed: record.seed,
        backend: info.backend.clone(),
        target: info.target.clone(),
        target_file: info.target_file.clone(),
        replicas: info.replicas,
        routing: info.routing,
        duration_ms: info.duration_ms,
        timings: info.timings.clone(),
        requests: history.requests(),
        preset: Preset::default(),
        scenarios: Vec::new(),
        diagnoses: Vec::new(),
        findings: Vec::new(),
        policy: None,
        events: report::json::events(history),
        plan,
        config: RunRecord {
            replicas: info.replicas,
            routing: info.routing,
            vus: info.vus,
            load_vus: info.load_vus,
            scenarios: info.selection.clone(),
        },
        exploration: None,
        exits: record.exits.clone(),
        interrupted: record.interrupted.clone(),
        error: info.error.clone(),
    }
}

/// The verdict in the report: findings numbered and grouped, the policy applied, and every
/// check an error when the replicas never started.
pub(crate) fn with_verdict(mut report: Report, verdict: Verdict, preset: Preset, policy: Option<&Policy>) -> Report {
    let (scenarios, findings, diagnoses, policy) = conclude(verdict, preset, policy);
    report.preset = preset;
    report.scenarios = scenarios;
    report.findings = findings;
    report.diagnoses = diagnoses;
    report.policy = policy;
    if let Some(why) = &report.error {
        for result in report.scenarios.iter_mut().filter(|r| r.status != check::ScenarioStatus::Skipped) {
            result.status = check::ScenarioStatus::Error;
            result.reason = Some(why.clone());
            result.untested.clear();
        }
    }
    report
}

/// A stored run: its record, and its report as the run made it, short of the verdict.
/// The report comes from the record and `plan.json`; a record too old to say what was
/// run has its `report.json` read instead. Each file that cannot be read is named.
pub fn read(dir: &Path) -> Result<(Report, Record), RunError> {
    let record: Record = read_json(&dir.join(recorded::FILE_NAME), "a run's record")?;
    let report = match &record.run {
        Some(info) => report(&record, info, read_json(&dir.join(PLAN_FILE), "a run's plan")?, &record.history()),
        None => read_json(&dir.join(report::json::FILE_NAME), "a replicheck report")?,
    };
    Ok((report, record))
}

fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T, RunError> {
    let bytes = std::fs::read(path).map_err(|e| RunError::Usage(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::Usage(format!("{} is not {what}: {e}", path.display())))
}

/// Judges a stored run again ([`read`]): its record, through the same checker, with the
/// target and scenarios it ran; nothing starts.
pub fn rejudge(recorded: Report, record: &Record, files: &[ScenarioFile], run_scenarios: bool, policy: Option<&Policy>) -> Result<Report, RunError> {
    let target = Target::load(Path::new(&recorded.target_file))?;
    let mut workload = Vec::new();
    for file in files {
        if let Ok(scenario) = file.bind(&target)? {
            workload.push(scenario);
        }
    }
    let users = if run_scenarios { workload.clone() } else { Vec::new() };
    let scenarios = recorded::Scenarios {
        users: &users,
        workload: &workload,
    };
    let verdict = recorded::judge(record, &scenarios, &target, &recorded.plan);
    Ok(with_verdict(recorded, verdict, target.preset, policy))
}

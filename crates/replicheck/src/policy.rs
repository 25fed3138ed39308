//! The team's policy: a checked-in file of known faults a CI build accepts for now, each
//! with a reason and perhaps an expiry date, so a team can adopt replicheck before it has
//! fixed everything it finds. Accepted findings are still reported; they only stop
//! failing the build. A rule that matched nothing is stale: the fault it accepted is gone
//! (or renamed), and the rule should go too.
//!
//! ```toml
//! [[accept]]
//! cause = "refuses-while-routed"      # a diagnosis cause; or kind = "...", check = "..."
//! reason = "preStop hook lands with the next chart release"
//! until = 2027-03-31                  # optional: after this day the rule no longer applies
//! ```

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::check::finding::Acceptance;
use crate::check::finding::{Finding, FindingKind};
use crate::diagnose::{self, Cause, Diagnosis};
use crate::file::{FileError, SourceFile};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    accept: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    kind: Option<FindingKind>,
    cause: Option<Cause>,
    /// A scenario, inspection or experiment.
    check: Option<String>,
    reason: String,
    until: Option<toml::value::Datetime>,
}

/// What one rule of the policy accepts: a finding matches when every field given matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Its place in the file, from 1.
    pub index: usize,
    /// The line it starts on.
    pub line: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FindingKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    pub reason: String,
    /// The last day it applies, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl Rule {
    fn matches(&self, finding: &Finding, cause: Option<Cause>) -> bool {
        self.kind.is_none_or(|kind| kind == finding.kind)
            && self.cause.is_none_or(|c| Some(c) == cause)
            && self.check.as_ref().is_none_or(|check| *check == finding.check || *check == finding.scenario)
    }

    fn expired(&self, today: &str) -> bool {
        self.until.as_deref().is_some_and(|until| until < today)
    }

    /// What it matches, as a person would write it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(kind) = self.kind {
            parts.push(format!("kind {kind}"));
        }
        if let Some(cause) = self.cause {
            parts.push(format!("cause {cause}"));
        }
        if let Some(check) = &self.check {
            parts.push(format!("check {check}"));
        }
        parts.join(", ")
    }
}

/// A policy file, read and checked.
#[derive(Debug, Clone)]
pub struct Policy {
    pub file: String,
    pub rules: Vec<Rule>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, FileError> {
        Self::from_source(&SourceFile::read(path)?)
    }

    pub fn from_source(source: &SourceFile) -> Result<Self, FileError> {
        let parsed: PolicyFile = source.parse()?;
        let mut rules = Vec::new();
        for (index, spanned) in parsed.accept.into_iter().enumerate() {
            let span = spanned.span();
            let raw = spanned.into_inner();
            if raw.kind.is_none() && raw.cause.is_none() && raw.check.is_none() {
                return Err(source.error_at(span, "an [[accept]] rule must name a `kind`, a `cause` or a `check`, or it would accept everything"));
            }
            if raw.reason.trim().is_empty() {
                return Err(source.error_at(span, "an [[accept]] rule needs a `reason`: why the fault is accepted for now"));
            }
            let until = match raw.until {
                None => None,
                Some(datetime) => match (datetime.date, datetime.time) {
                    (Some(date), None) => Some(date.to_string()),
                    _ => return Err(source.error_at(span, "`until` is a day such as 2027-03-31, without a time")),
                },
            };
            rules.push(Rule {
                index: index + 1,
                line: source.line_col(span.start).0,
                kind: raw.kind,
                cause: raw.cause,
                check: raw.check,
                reason: raw.reason,
                until,
            });
        }
        Ok(Self {
            file: source.path.display().to_string(),
            rules,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RuleState {
    /// It accepted at least one finding.
    Applied,
    /// It matched nothing: the fault it accepted did not show in this run.
    Stale,
    /// Its day has passed; what it matches fails the build again.
    Expired,
}

/// What became of one rule in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleOutcome {
    #[serde(flatten)]
    pub rule: Rule,
    pub state: RuleState,
    /// The findings it accepted, or for an expired rule would have.
    pub findings: Vec<String>,
}

/// The policy as applied to a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyOutcome {
    pub file: String,
    pub rules: Vec<RuleOutcome>,
}

impl PolicyOutcome {
    pub fn stale(&self) -> impl Iterator<Item = &RuleOutcome> {
        self.rules.iter().filter(|r| r.state == RuleState::Stale)
    }

    pub fn expired(&self) -> impl Iterator<Item = &RuleOutcome> {
        self.rules.iter().filter(|r| r.state == RuleState::Expired)
    }
}

/// Marks the findings the policy accepts (the first rule that matches, of those not
/// expired on `today`, `YYYY-MM-DD`), and each diagnosis whose findings are all accepted.
pub fn apply(policy: &Policy, findings: &mut [Finding], diagnoses: &mut [Diagnosis], today: &str) -> PolicyOutcome {
    let mut outcomes: Vec<RuleOutcome> = policy
        .rules
        .iter()
        .map(|rule| RuleOutcome {
            rule: rule.clone(),
            state: if rule.expired(today) { RuleState::Expired } else { RuleState::Stale },
            findings: Vec::new(),
        })
        .collect();
    for finding in findings.iter_mut() {
        let cause = diagnose::of(diagnoses, finding).map(|d| d.cause);
        for outcome in outcomes.iter_mut() {
            if !outcome.rule.matches(finding, cause) {
                continue;
            }
            if outcome.state == RuleState::Expired {
                outcome.findings.push(finding.id.clone());
            } else if finding.accepted.is_none() {
                outcome.state = RuleState::Applied;
                outcome.findings.push(finding.id.clone());
                finding.accepted = Some(Acceptance {
                    rule: outcome.rule.index,
                    reason: outcome.rule.reason.clone(),
                    until: outcome.rule.until.clone(),
                });
            }
        }
    }
    for diagnosis in diagnoses.iter_mut() {
        let accepted = diagnosis.named().all(|id| findings.iter().any(|f| &f.id == id && f.accepted.is_some()));
        diagnosis.accepted = accepted;
    }
    PolicyOutcome {
        file: policy.file.clone(),
        rules: outcomes,
    }
}

/// A policy file that accepts every diagnosis of a run, one rule per cause, for a team
/// that adopts replicheck on an app with known faults.
pub fn written_from(diagnoses: &[Diagnosis], findings: &[Finding], run_id: &str) -> String {
    let mut text = format!(
        "# Known faults this build accepts for now (replicheck --policy).\n\
         # Written from run {run_id}: say why each is accepted, and until when.\n"
    );
    // A diagnosis that only may explain findings is accepted with the one that leads them.
    for diagnosis in diagnoses.iter().filter(|d| !d.findings.is_empty()) {
        let mut kinds: Vec<String> = Vec::new();
        for finding in findings.iter().filter(|f| diagnosis.findings.contains(&f.id)) {
            if !kinds.contains(&finding.kind.to_string()) {
                kinds.push(finding.kind.to_string());
            }
        }
        let _ = write!(
            text,
            "\n# {} ({}; {} finding(s))\n[[accept]]\ncause = \"{}\"\nreason = \"known since run {run_id}\"\n",
            diagnosis.title,
            kinds.join(", "),
            diagnosis.findings.len(),
            diagnosis.cause,
        );
    }
    text
}

/// Today, `YYYY-MM-DD` in UTC, as `until` dates are compared.
pub fn today() -> String {
    humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::finding::tests::finding;
    use crate::target::Preset;

    fn policy(text: &str) -> Result<Policy, FileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        Policy::load(&path)
    }

    fn run() -> (Vec<Finding>, Vec<Diagnosis>) {
        let mut findings = vec![
            finding(FindingKind::AuthCookieRejected, "login", "auth-cookie", (0, 1), (1, 1)),
            finding(FindingKind::RefusedDuringDeregistration, "sigterm", "none", (1, 1), (1, 1)),
        ];
        for (index, finding) in findings.iter_mut().enumerate() {
            finding.id = format!("F{}", index + 1);
        }
        let diagnoses = diagnose::diagnose(&findings, Preset::Generic);
        (findings, diagnoses)
    }

    #[test]
    fn accepted_findings_keep_their_place_and_unmatched_rules_are_stale() {
        let policy = policy(
            "[[accept]]\ncause = \"refuses-while-routed\"\nreason = \"preStop lands next sprint\"\n\n\
             [[accept]]\nkind = \"cache-divergent\"\nreason = \"fixed already?\"\n\n\
             [[accept]]\ncheck = \"login\"\nreason = \"old\"\nuntil = 2020-01-01\n",
        )
        .unwrap();
        let (mut findings, mut diagnoses) = run();
        let outcome = apply(&policy, &mut findings, &mut diagnoses, "2026-11-28");
        assert_eq!(findings[1].accepted.as_ref().map(|a| a.rule), Some(1));
        assert_eq!(findings[0].accepted, None, "an expired rule accepts nothing");
        let states: Vec<RuleState> = outcome.rules.iter().map(|r| r.state).collect();
        assert_eq!(states, [RuleState::Applied, RuleState::Stale, RuleState::Expired]);
        assert_eq!(outcome.rules[2].findings, ["F1"]);
        assert_eq!(outcome.rules[2].rule.line, 9);
        assert_eq!(diagnoses.iter().map(|d| d.accepted).collect::<Vec<_>>(), [false, true]);
    }

    #[test]
    fn a_written_policy_accepts_the_run_it_came_from() {
        let (mut findings, mut diagnoses) = run();
        let text = written_from(&diagnoses, &findings, "run-1");
        let outcome = apply(&policy(&text).unwrap(), &mut findings, &mut diagnoses, &today());
        assert!(findings.iter().all(|f| f.accepted.is_some()), "{text}");
        assert!(outcome.rules.iter().all(|r| r.state == RuleState::Applied));
    }

    #[test]
    fn a_rule_that_matches_everything_or_gives_no_reason_is_refused_at_its_line() {
        let everything = policy("# known\n[[accept]]\nreason = \"all of it\"\n").unwrap_err().to_string();
        assert!(everything.contains("policy.toml:2:1") && everything.contains("accept everything"), "{everything}");
        let unreasoned = policy("[[accept]]\nkind = \"session-lost\"\nreason = \" \"\n").unwrap_err().to_string();
        assert!(unreasoned.contains("needs a `reason`"), "{unreasoned}");
        let typo = policy("[[accept]]\ncause = \"keys-not-share\"\nreason = \"x\"\n").unwrap_err().to_string();
        assert!(typo.contains("policy.toml:2:9"), "{typo}");
        let timed = policy("[[accept]]\nkind = \"session-lost\"\nreason = \"x\"\nuntil = 2027-01-01T10:00:00\n").unwrap_err().to_string();
        assert!(timed.contains("without a time"), "{timed}");
    }
}

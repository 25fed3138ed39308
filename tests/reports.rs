//! The five outputs of a run, read the way their consumers read them: a JUnit parser, a
//! CI job summary, a headless browser (Debian's chromium, installed by .ci/run), and
//! `replay`, which reruns a recorded report.

mod common;

use std::path::Path;

/// One run of the misconfigured demo, shared by the tests that only read its outputs.
fn broken_run() -> &'static common::Finished {
    static RUN: std::sync::OnceLock<common::Finished> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let run = common::run("examples/demo/broken.toml", &["--seed", "12", "--replicas", "3"]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        run
    })
}

#[test]
fn a_run_writes_all_five_outputs() {
    let run = broken_run();
    for file in ["report.json", "junit.xml", "summary.md", "report.html"] {
        let path = run.report_dir.join(file);
        assert!(path.metadata().is_ok_and(|m| m.len() > 100), "{file} missing or empty");
        assert!(run.stdout.contains(&format!("wrote {}", path.display())), "{}", run.stdout);
    }
    // The table, on the terminal.
    let report = run.report();
    let verdict = format!("{} finding(s) in {} probable cause(s)\n", report.findings.len(), report.diagnoses.len());
    assert!(run.stdout.contains("│ login") && run.stdout.contains(&verdict), "{}", run.stdout);
    assert!(run.stdout.contains("probable cause(s):\n") && run.stdout.contains("│ keys-not-shared"), "{}", run.stdout);
}

#[test]
fn report_json_holds_every_request_and_chaos_action() {
    let report = broken_run().report();
    let requests = report.events.iter().filter(|e| matches!(e, replicheck::report::Event::Request { .. })).count();
    let chaos = report.events.iter().filter(|e| matches!(e, replicheck::report::Event::Chaos { .. })).count();
    assert_eq!(requests, report.requests);
    assert!(chaos >= 10, "{chaos}");
    let starts: Vec<f64> = report
        .events
        .iter()
        .filter_map(|e| match e {
            replicheck::report::Event::Request { start_ms, end_ms, .. } => {
                assert!(end_ms >= start_ms);
                Some(*start_ms)
            }
            _ => None,
        })
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "events are in time order");

    // Where the time went: every phase and experiment, in order, within the run.
    let parts: Vec<&str> = report.timings.iter().map(|t| t.part.as_str()).collect();
    for part in ["start", "users", "controls", "inspections", "experiment restart", "experiment sigterm", "stop"] {
        assert!(parts.contains(&part), "{part} in {parts:?}");
    }
    assert_eq!(parts.first(), Some(&"start"));
    assert_eq!(parts.last(), Some(&"stop"));
    assert!(report.timings.windows(2).all(|w| w[0].started_ms + w[0].took_ms <= w[1].started_ms + 1.0), "{:?}", report.timings);
    let spent: f64 = report.timings.iter().map(|t| t.took_ms).sum();
    assert!(spent <= report.duration_ms as f64 + 1.0 && spent >= report.duration_ms as f64 * 0.5, "{spent} of {}", report.duration_ms);
    assert!(broken_run().stdout.contains("time: start "), "the terminal says where the time went");

    // history.json holds every phase, the evidence, inspections and experiments: the
    // same requests the report counts.
    let bytes = std::fs::read(broken_run().report_dir.join("history.json")).unwrap();
    let history: replicheck::history::History = serde_json::from_slice(&bytes).expect("history.json parses");
    use replicheck::history::Phase;
    for phase in [Phase::Main, Phase::Control, Phase::Reproduce] {
        assert!(history.vus.iter().any(|v| v.phase == phase), "{phase:?}");
    }
    assert!(!history.experiments.is_empty() && !history.inspections.is_empty());
    assert_eq!(history.requests(), report.requests);
}

#[test]
fn junit_parses_with_one_failure_per_finding() {
    let run = broken_run();
    let xml = std::fs::read_to_string(run.report_dir.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let failures: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("failure")).collect();
    assert_eq!(failures.len(), run.report().findings.len());
    assert_eq!(root.attribute("failures").map(str::parse::<usize>), Some(Ok(failures.len())));
    for failure in failures {
        let message = failure.attribute("message").unwrap();
        let description = failure.text().unwrap_or("");
        assert!(message.contains(failure.attribute("type").unwrap()), "{message}");
        // The message names the probable cause, the description its remedy.
        assert!(run.report().diagnoses.iter().any(|d| message.contains(&format!("[{} {}: {}]", d.id, d.cause, d.title))), "{message}");
        assert!(description.contains("remedy:"), "{description}");
        assert!(description.contains("expected:") && description.contains("reproduce: replicheck run"), "{description}");
    }
    let suites: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("testsuite")).filter_map(|n| n.attribute("name")).collect();
    for name in ["login", "forwarded-headers", "rolling-restart", "sigterm"] {
        assert!(suites.contains(&name), "{suites:?}");
    }
    // Checks that passed are passing test cases.
    assert!(doc.descendants().any(|n| n.has_tag_name("testcase") && n.children().all(|c| !c.is_element())));
}

#[test]
fn summary_md_is_short_and_lists_the_findings() {
    let run = broken_run();
    let summary = std::fs::read_to_string(run.report_dir.join("summary.md")).unwrap();
    assert!(summary.starts_with("## replicheck: demo-broken\n"), "{summary}");
    let report = run.report();
    assert!(summary.contains(&format!("**{} finding(s) in {} probable cause(s)**", report.findings.len(), report.diagnoses.len())));
    // The causes lead, with their remedies; then the findings, each naming its cause.
    let causes = summary.find("| D1 `").expect("a row per cause");
    assert!(causes < summary.find("| F1 | `").expect("a row per finding"), "{summary}");
    assert!(summary.contains(&report.diagnoses[0].remedy), "{summary}");
    assert!(summary.lines().count() < 60, "a job summary stays short");
}

#[test]
fn report_html_is_self_contained_and_draws_the_timeline() {
    let run = broken_run();
    let html = std::fs::read_to_string(run.report_dir.join("report.html")).unwrap();
    for external in ["src=", "<script", "<link", "url(", "@import", "href=\"http", "href='http"] {
        assert!(!html.contains(external), "report.html contains {external}");
    }
    assert!(html.contains("<svg class=\"timeline\""));
    let lanes = html.matches("<g class=\"lane\">").count();
    assert!(lanes >= 3, "one lane per replica, {lanes}");
    assert!(html.contains("class=\"chaos\"") && html.contains("req ok") && html.contains("req bad"));
    assert!(html.contains("finding-label") && html.contains("id=\"F1\""));
    // Each cause links to its findings' evidence, and that to their marks on the timeline.
    for diagnosis in &run.report().diagnoses {
        assert!(html.contains(&format!("<tr id=\"{}\">", diagnosis.id)), "{}", diagnosis.id);
        for finding in &diagnosis.findings {
            assert!(html.contains(&format!("<a href=\"#{finding}\">{finding}</a>")), "{finding}");
            assert!(html.contains(&format!("href=\"#mark-{finding}\"")) && html.contains(&format!("id=\"mark-{finding}\"")), "{finding}");
        }
    }
    // Finding labels do not overlap: in each row of the label track they are apart.
    let labels = timeline_labels(&html);
    assert_eq!(labels.len(), run.report().findings.len());
    for (i, a) in labels.iter().enumerate() {
        for b in &labels[i + 1..] {
            let apart = (a.1 - b.1).abs() >= 10.0 || (a.0 - b.0).abs() >= 7.0 * a.2.len().max(b.2.len()) as f64;
            assert!(apart, "labels {} and {} overlap", a.2, b.2);
        }
    }
}

/// (x, y, text) of each finding label on the timeline.
fn timeline_labels(html: &str) -> Vec<(f64, f64, String)> {
    let attribute = |tag: &str, name: &str| -> f64 {
        let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        tag[start..].split('"').next().unwrap().parse().unwrap()
    };
    html.split("<text class=\"finding-label\"")
        .skip(1)
        .map(|rest| {
            let (tag, after) = rest.split_once('>').unwrap();
            (attribute(tag, "x"), attribute(tag, "y"), after.split('<').next().unwrap().to_owned())
        })
        .collect()
}

/// Renders the page in headless chromium: a screenshot that shows the timeline.
#[test]
fn report_html_renders_in_a_real_browser() {
    let chromium = which::which("chromium").or_else(|_| which::which("chromium-browser")).expect("chromium is missing: apt-get install chromium (.ci/run installs it)");
    let run = broken_run();
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("report.png");
    let page = format!("file://{}", run.report_dir.join("report.html").display());
    let browser = |args: &[&str]| {
        std::process::Command::new(&chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", &format!("--user-data-dir={}", dir.path().join("profile").display())])
            .args(args)
            .output()
            .unwrap()
    };
    let output = browser(&["--window-size=1280,2400", &format!("--screenshot={}", shot.display()), &page]);
    assert!(shot.metadata().is_ok_and(|m| m.len() > 20_000), "no screenshot: {}", String::from_utf8_lossy(&output.stderr));
    let dom = String::from_utf8(browser(&["--dump-dom", &page]).stdout).unwrap();
    // The browser built the SVG: lanes, requests, chaos lines and finding labels.
    let lanes = dom.matches("class=\"lane-label\"").count();
    assert!(dom.contains("<svg class=\"timeline\"") && lanes >= 3 && dom.contains(">r2</text>"), "{lanes} lanes");
    if let Ok(keep) = std::env::var("REPLICHECK_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, Path::new(&keep)).unwrap();
    }
}

#[test]
fn format_writes_only_what_is_asked_and_the_job_summary_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let summary = common::write(dir.path(), "step-summary.md", "earlier step\n");
    let report = dir.path().join("report");
    let tag = common::tag("format");
    let output = common::command(&tag, &["run", "examples/demo/fixed.toml", "--seed", "3", "--scenarios", "cache", "--format", "junit", "--report-dir", report.to_str().unwrap()])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(report.join("junit.xml").exists());
    for absent in ["report.json", "summary.md", "report.html"] {
        assert!(!report.join(absent).exists(), "{absent} was written");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("│ cache"), "no table asked for: {stdout}");
    let appended = std::fs::read_to_string(&summary).unwrap();
    assert!(appended.starts_with("earlier step\n## replicheck: demo-fixed\n"), "{appended}");
}

#[test]
fn replay_reproduces_every_finding_of_a_recorded_run_and_a_clean_run_stays_clean() {
    let first = common::run("examples/demo/broken.toml", &["--seed", "13", "--scenarios", "login,session,restart,sigterm"]);
    assert_eq!(first.code, 1);
    let findings = first.report().findings.len();
    let tag = common::tag("replay");
    let dir = tempfile::tempdir().unwrap();
    let recorded = first.report_dir.join("report.json");
    let replay = |report: &Path, extra: &[&str]| {
        let mut args = vec!["replay", report.to_str().unwrap(), "--report-dir", dir.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        common::command(&tag, &args).output().unwrap()
    };
    let output = replay(&recorded, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert_eq!(stdout.matches(": reproduced").count(), findings, "{stdout}");
    assert!(!stdout.contains("did not happen again") && !stdout.contains("plan differs"), "{stdout}");

    let one = replay(&recorded, &["--finding", "F2"]);
    let stdout = String::from_utf8_lossy(&one.stdout);
    let verdict = stdout.split("replay of ").nth(1).unwrap_or_default();
    assert!(verdict.contains("F2 ") && verdict.contains(": reproduced") && !verdict.contains("F1 "), "{verdict}");
    let unknown = replay(&recorded, &["--finding", "F99"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("has no finding F99"));

    let clean = common::run("examples/demo/fixed.toml", &["--seed", "13", "--scenarios", "login,session,restart,sigterm"]);
    assert_eq!(clean.code, 0);
    let output = replay(&clean.report_dir.join("report.json"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stdout).contains("no findings, as recorded"));
    common::assert_no_leftovers(&tag);
}

/// What did not run shows in every output whatever the verdict; `--strict` fails on it.
#[test]
fn checks_that_did_not_run_in_full_show_everywhere_and_fail_a_strict_run() {
    // The configured demo without a slow request: SIGTERM cannot meet a request in flight.
    let fixed = std::fs::read_to_string(common::root().join("examples/demo/fixed.toml")).unwrap();
    let without_slow: String = fixed.lines().filter(|l| !l.starts_with("slow")).collect::<Vec<_>>().join("\n");
    let dir = tempfile::tempdir().unwrap();
    let target = common::write(dir.path(), "no-slow.toml", &without_slow);
    let target = target.to_str().unwrap();

    let lenient = common::run(target, &["--seed", "3", "--scenarios", "login,sigterm,store-restart"]);
    assert_eq!(lenient.code, 0, "{}\n{}", lenient.stdout, lenient.stderr);
    assert!(lenient.stdout.contains("not tested (2):"), "{}", lenient.stdout);
    assert!(lenient.stdout.contains("sigterm: inflight-dropped not exercised: no request was in flight at SIGTERM"), "{}", lenient.stdout);
    assert!(lenient.stdout.contains("store-restart: skipped: the target declares no dependency"), "{}", lenient.stdout);
    let sigterm = lenient.report().scenarios.iter().find(|s| s.name == "sigterm").unwrap();
    assert!(!sigterm.checks.iter().any(|k| k.id() == "inflight-dropped"), "{sigterm:?}");
    assert_eq!(sigterm.untested[0].kind.id(), "inflight-dropped");

    let summary = std::fs::read_to_string(lenient.report_dir.join("summary.md")).unwrap();
    assert!(summary.contains("Not tested:") && summary.contains("- `sigterm` inflight-dropped not exercised"), "{summary}");
    let xml = std::fs::read_to_string(lenient.report_dir.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let skipped: Vec<(String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase") && n.children().any(|c| c.has_tag_name("skipped")))
        .map(|n| (n.attribute("name").unwrap_or("").to_owned(), n.children().find(|c| c.has_tag_name("skipped")).and_then(|c| c.attribute("message")).unwrap_or("").to_owned()))
        .collect();
    assert!(skipped.iter().any(|(name, message)| name == "inflight-dropped" && message.contains("no [chaos] slow request")), "{skipped:?}");
    assert!(skipped.iter().any(|(name, _)| name == "store-restart"), "{skipped:?}");
    let html = std::fs::read_to_string(lenient.report_dir.join("report.html")).unwrap();
    assert!(html.contains("<h2>Not tested</h2>") && html.contains("inflight-dropped not exercised"));

    let strict = common::run(target, &["--seed", "3", "--scenarios", "login,sigterm", "--strict"]);
    assert_eq!(strict.code, 3, "{}\n{}", strict.stdout, strict.stderr);
    let narrowed = common::run(target, &["--seed", "3", "--scenarios", "login,restart", "--strict"]);
    assert_eq!(narrowed.code, 0, "{}\n{}", narrowed.stdout, narrowed.stderr);

    // Findings win the exit status, and what was not tested is still listed beside them.
    let broken = std::fs::read_to_string(common::root().join("examples/demo/broken.toml")).unwrap();
    let broken: String = broken.lines().filter(|l| !l.starts_with("slow")).collect::<Vec<_>>().join("\n");
    let target = common::write(dir.path(), "broken-no-slow.toml", &broken);
    let both = common::run(target.to_str().unwrap(), &["--seed", "3", "--scenarios", "login,sigterm", "--strict"]);
    assert_eq!(both.code, 1, "{}\n{}", both.stdout, both.stderr);
    assert!(both.stdout.contains("not tested (1):") && both.stdout.contains("probable cause(s)\n"), "{}", both.stdout);
}

/// The misconfigured demo's findings come as a few probable causes, each with its remedy,
/// and every finding in exactly one; a policy written from the run accepts it, and finds
/// nothing to accept once the faults are gone.
#[test]
fn findings_group_into_causes_and_a_policy_accepts_known_ones() {
    let args = ["--seed", "7", "--replicas", "2"];
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let mut first_args = args.to_vec();
    first_args.extend(["--write-policy", policy.to_str().unwrap()]);
    let first = common::run("examples/demo/broken.toml", &first_args);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let report = first.report();
    assert!((1..=12).contains(&report.diagnoses.len()), "{:#?}", report.diagnoses);
    for finding in &report.findings {
        let holding: Vec<&str> = report.diagnoses.iter().filter(|d| d.findings.contains(&finding.id)).map(|d| d.id.as_str()).collect();
        assert_eq!(holding.len(), 1, "{} is in {holding:?}", finding.id);
    }
    for diagnosis in &report.diagnoses {
        assert!(!diagnosis.remedy.is_empty() && diagnosis.remedies.len() == 8, "{diagnosis:?}");
    }
    // One finding per fault: no two share kind, check, artifact and replicas.
    let mut faults: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.check.clone(), f.artifact.kind.clone(), f.producer.id, f.consumer.id))
        .collect();
    let all = faults.len();
    faults.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    faults.dedup();
    assert_eq!(faults.len(), all);
    assert!(report.findings.iter().any(|f| f.observations.len() > 1), "a rolling restart refuses more than once");
    // The grouping is a function of the recorded findings.
    let again = replicheck::diagnose::diagnose(&report.findings, report.preset);
    let causes = |ds: &[replicheck::diagnose::Diagnosis]| ds.iter().map(|d| (d.cause, d.findings.clone())).collect::<Vec<_>>();
    assert_eq!(causes(&again), causes(&report.diagnoses));
    let cause_ids: Vec<String> = report.diagnoses.iter().map(|d| d.cause.to_string()).collect();
    for expected in ["keys-not-shared", "session-per-process", "cache-per-process", "keys-not-persisted", "refuses-while-routed"] {
        assert!(cause_ids.iter().any(|c| c == expected), "{expected}: {cause_ids:?}");
    }

    let mut accepting = args.to_vec();
    accepting.extend(["--policy", policy.to_str().unwrap()]);
    let accepted = common::run("examples/demo/broken.toml", &accepting);
    assert_eq!(accepted.code, 0, "{}\n{}", accepted.stdout, accepted.stderr);
    let report = accepted.report();
    assert!(!report.findings.is_empty() && report.findings.iter().all(|f| f.accepted.is_some()));
    assert!(accepted.stdout.contains("every one accepted by the policy"), "{}", accepted.stdout);
    let xml = std::fs::read_to_string(accepted.report_dir.join("junit.xml")).unwrap();
    assert!(!xml.contains("<failure") && xml.contains("accepted by rule"), "accepted findings are skipped test cases");

    let fixed = common::run("examples/demo/fixed.toml", &accepting);
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    let outcome = fixed.report().policy.as_ref().expect("the policy's outcome is reported");
    assert!(outcome.rules.iter().all(|r| r.state == replicheck::policy::RuleState::Stale), "{outcome:?}");
    assert!(fixed.stdout.contains("matched nothing"), "{}", fixed.stdout);
}

#[test]
fn a_policy_that_cannot_work_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let policy = common::write(dir.path(), "policy.toml", "# known faults\n[[accept]]\nreason = \"all of it\"\n");
    let run = common::run("examples/demo/broken.toml", &["--policy", policy.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("policy.toml:2:1") && run.stderr.contains("accept everything"), "{}", run.stderr);

    let missing = common::run("examples/demo/broken.toml", &["--policy", dir.path().join("none.toml").to_str().unwrap()]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("none.toml"), "{}", missing.stderr);
    let nowhere = dir.path().join("no-such-dir/policy.toml");
    let unwritable = common::run("examples/demo/broken.toml", &["--write-policy", nowhere.to_str().unwrap()]);
    assert_eq!(unwritable.code, 2, "{}", unwritable.stderr);
    assert!(unwritable.stderr.contains("does not exist") && unwritable.report.is_none(), "{}", unwritable.stderr);
}

/// `check` judges a stored run again from its record and nothing else: the same findings,
/// the same exit status; and a record without the evidence no longer proves them.
#[test]
fn a_stored_run_judged_again_gives_the_same_findings() {
    let run = broken_run();
    let report = run.report();
    let check = |dir: &Path| common::command(&common::tag("check"), &["check", dir.to_str().unwrap()]).output().unwrap();
    let output = check(&run.report_dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let verdict = format!("{} finding(s) in {} probable cause(s)\n", report.findings.len(), report.diagnoses.len());
    assert!(stdout.contains(&verdict), "{stdout}");
    for finding in &report.findings {
        let header = format!("\n{} {}: {} / {}\n", finding.id, finding.kind, finding.scenario, finding.step);
        assert!(stdout.contains(&header), "{header} missing:\n{stdout}");
    }

    // The record and the plan are all it needs; without the users' controls and
    // reproductions, their failures prove nothing.
    let copy = tempfile::tempdir().unwrap();
    for file in ["record.json", "plan.json"] {
        std::fs::copy(run.report_dir.join(file), copy.path().join(file)).unwrap();
    }
    let path = copy.path().join("record.json");
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["users"]["evidence"]["vus"] = serde_json::json!([]);
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    let stripped = String::from_utf8_lossy(&check(copy.path()).stdout).into_owned();
    assert!(!stripped.contains(&verdict) && stripped.contains("an evidence run did not finish"), "{stripped}");
}

/// `check` needs only record.json and plan.json; whatever it cannot read, it names. A record
/// written before it said what was run is judged with its report.json.
#[test]
fn check_reads_the_record_and_plan_alone_and_names_a_file_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let target = common::write(dir.path(), "never.toml", "[start]\ncommand = \"false\"\n");
    let scenario = common::write(dir.path(), "home.toml", "name = \"home\"\n[[steps]]\nname = \"home\"\nrequest = { url = \"/\" }\n");
    let run = common::run(target.to_str().unwrap(), &["--scenarios", scenario.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let check = |dir: &Path| {
        let output = common::command(&common::tag("check"), &["check", dir.to_str().unwrap()]).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let stored = tempfile::tempdir().unwrap();
    for file in ["record.json", "plan.json"] {
        std::fs::copy(run.report_dir.join(file), stored.path().join(file)).unwrap();
    }
    let (code, stdout, stderr) = check(stored.path());
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("\nnever · 2 replica(s) · seed ") && stdout.contains("error: the replicas did not start"), "{stdout}");
    assert_eq!(run.report().scenarios[0].status, replicheck::check::ScenarioStatus::Error);

    let record = stored.path().join("record.json");
    std::fs::write(stored.path().join("plan.json"), "{").unwrap();
    let (code, _, stderr) = check(stored.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{} is not a run's plan", stored.path().join("plan.json").display())), "{stderr}");

    // A record from before `run` was kept: its report.json is read, and named when corrupt.
    let mut old: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("run");
    std::fs::write(&record, serde_json::to_vec(&old).unwrap()).unwrap();
    std::fs::write(stored.path().join("report.json"), "{\"tool\": \"replicheck\"").unwrap();
    let (code, _, stderr) = check(stored.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{} is not a replicheck report", stored.path().join("report.json").display())), "{stderr}");
    std::fs::copy(run.report_dir.join("report.json"), stored.path().join("report.json")).unwrap();
    assert_eq!(check(stored.path()).0, Some(3));

    std::fs::write(&record, "not json").unwrap();
    let (code, _, stderr) = check(stored.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{} is not a run's record", record.display())), "{stderr}");
}

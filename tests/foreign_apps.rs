//! Apps that are not the demo: a small Python app with its own URLs, field names and
//! cookie (the target format is not demo-shaped), and a replica that misbehaves on purpose
//! (hangs, floods, garbage, hang-ups, a port already taken): bounded errors, exit 3.

mod common;

use replicheck::check::ScenarioStatus;

#[test]
fn a_python_app_with_per_process_secrets_shows_its_findings() {
    let run = common::run("tests/apps/notes/broken.toml", &["--seed", "2", "--scenarios", "login,antiforgery,session,cache"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.kinds(), ["auth-cookie-rejected", "cache-divergent"]);
    let skipped: Vec<(&str, &str)> = run
        .report()
        .scenarios
        .iter()
        .filter(|s| s.status == ScenarioStatus::Skipped)
        .map(|s| (s.name.as_str(), s.reason.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        skipped,
        [("antiforgery", "the target has no [antiforgery] section"), ("session", "the target has no [session] section")]
    );
    let cookie = run.report().findings.iter().find(|f| f.scenario == "login").unwrap();
    assert_eq!(cookie.artifact.cookies, ["notes_session"]);
    assert!(cookie.observed.reason.contains("turned away (ends at /login)"), "{:?}", cookie.observed);
}

#[test]
fn the_python_app_configured_correctly_finds_nothing() {
    for seed in 1..=5 {
        let args = ["--seed", &seed.to_string(), "--replicas", "3", "--scenarios", "login,antiforgery,session,cache"];
        let run = common::run("tests/apps/notes/fixed.toml", &args);
        assert_eq!(run.code, 0, "seed {seed}: {}\n{}", run.stdout, run.stderr);
        assert!(run.report().findings.is_empty());
    }
}

#[test]
fn a_hostile_replica_costs_a_bounded_time_and_yields_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenarios = Vec::new();
    for path in ["hang", "huge", "trickle", "garbage", "crash"] {
        let file = common::write(
            dir.path(),
            &format!("{path}.toml"),
            &format!("name = \"{path}\"\n[[steps]]\nname = \"get /{path}\"\nrequest = {{ url = \"/{path}\" }}\n"),
        );
        scenarios.push(file.to_str().unwrap().to_owned());
    }
    let started = std::time::Instant::now();
    let run = common::run("tests/apps/hostile.toml", &["--replicas", "1", "--vus", "1", "--scenarios", &scenarios.join(",")]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let reason = |name: &str| {
        let scenario = run.report().scenarios.iter().find(|s| s.name == name).unwrap();
        assert_eq!(scenario.status, ScenarioStatus::Error, "{scenario:?}");
        scenario.reason.clone().unwrap_or_default()
    };
    assert!(reason("hang").contains("the balancer answered 504: r0 at 127.0.0.1:"), "{}", reason("hang"));
    assert!(reason("hang").contains("gave no answer within 1s"), "{}", reason("hang"));
    assert!(reason("huge").contains("r0: the response body exceeds 1024 KiB"), "{}", reason("huge"));
    let trickle = reason("trickle");
    assert!(trickle.contains("r0: timed out: ") && trickle.contains(" bytes of body arrived within 1s"), "{trickle}");
    assert!(reason("garbage").contains("the balancer answered 502: r0 at 127.0.0.1:"), "{}", reason("garbage"));
    assert!(reason("garbage").contains("answered with something that is not HTTP"), "{}", reason("garbage"));
    assert!(reason("crash").contains("closed the connection without an answer"), "{}", reason("crash"));
}

#[test]
fn a_replica_that_cannot_bind_its_port_is_reported_with_its_log() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let target = common::write(
        dir.path(),
        "taken.toml",
        &format!("[start]\ncommand = \"python3\"\nargs = [\"-m\", \"http.server\", \"--bind\", \"127.0.0.1\", \"{port}\"]\n"),
    );
    let run = common::run(target.to_str().unwrap(), &["--replicas", "1"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("r0 exited (exit status 1) before it was ready"), "{}", run.stderr);
    assert!(run.stderr.contains("Address already in use"), "{}", run.stderr);
    // CI still gets every report, with the start failure as the run's error.
    let error = run.report().error.clone().unwrap_or_default();
    assert!(error.contains("the replicas did not start") && error.contains("r0 exited (exit status 1) before it was ready"), "{error}");
    assert!(run.report().scenarios.iter().all(|s| matches!(s.status, ScenarioStatus::Error | ScenarioStatus::Skipped)), "{:?}", run.report().scenarios);
    let junit = std::fs::read_to_string(run.report_dir.join("junit.xml")).unwrap();
    assert!(junit.contains(r#"type="not-started""#) && junit.contains("before it was ready"), "{junit}");
    for file in ["summary.md", "report.html"] {
        let text = std::fs::read_to_string(run.report_dir.join(file)).unwrap();
        assert!(text.contains("the replicas did not start"), "{file}: {text}");
    }
    assert!(run.stdout.contains("error: the replicas did not start"), "{}", run.stdout);
}

#[test]
fn a_replica_that_exits_mid_run_is_told_taken_out_and_makes_what_it_touched_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = common::write(
        dir.path(),
        "pages.toml",
        "name = \"pages\"\n[[steps]]\nname = \"a page\"\nrequest = { url = \"/page\" }\n[[steps]]\nname = \"another\"\nrequest = { url = \"/page\" }\n",
    );
    let run = common::run("tests/apps/quitter.toml", &["--replicas", "2", "--vus", "40", "--concurrency", "4", "--scenarios", scenario.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    let [exit] = report.exits.as_slice() else { panic!("{:?}\n{}", report.exits, run.stderr) };
    assert_eq!(exit.replica.to_string(), "r1");
    assert!(exit.how.contains("exit status 3") && exit.how.contains("giving up after 15 requests"), "{}", exit.how);
    assert!(run.stderr.contains("error: r1 exited at"), "{}", run.stderr);
    assert!(run.stdout.contains("error: r1 exited at") && run.stdout.contains("giving up after 15 requests"), "{}", run.stdout);
    let pages = report.scenarios.iter().find(|s| s.name == "pages").unwrap();
    assert_eq!(pages.status, ScenarioStatus::Error);
    assert!(pages.reason.as_deref().unwrap_or("").contains("r1 exited at"), "{pages:?}");
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[test]
fn a_replica_that_stops_answering_mid_run_is_told_and_taken_out() {
    let dir = tempfile::tempdir().unwrap();
    // Users that take a while, so the run goes on well past the hang.
    let scenario = common::write(
        dir.path(),
        "naps.toml",
        "name = \"naps\"\n[[steps]]\nname = \"a page\"\nrequest = { url = \"/page\" }\n[[steps]]\nname = \"a nap\"\nrequest = { url = \"/nap\" }\n",
    );
    let started = std::time::Instant::now();
    let run = common::run("tests/apps/hanger.toml", &["--replicas", "2", "--vus", "80", "--concurrency", "1", "--scenarios", scenario.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    let [exit] = report.exits.as_slice() else { panic!("{:?}\n{}", report.exits, run.stderr) };
    assert!(exit.silent && exit.replica.to_string() == "r1", "{exit:?}");
    assert!(run.stdout.contains("error: r1 stopped answering at"), "{}", run.stdout);
    let naps = report.scenarios.iter().find(|s| s.name == "naps").unwrap();
    assert_eq!(naps.status, ScenarioStatus::Error);
    // Taken out of routing: the rest of the run did not wait on it request by request.
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
}

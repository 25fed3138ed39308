//! The library as a test uses it, against real demo replicas: a run configured in code
//! whose verdict and assertion say what the command line would, a replay of one of its
//! findings, a scenario written in code, and a cluster the test disrupts itself while the
//! balancer follows.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use replicheck::balancer::SERVED_BY_HEADER;
use replicheck::file::SourceFile;
use replicheck::progress::Silent;
use replicheck::replay::{self, Replay, ReplayConfig};
use replicheck::run::{self, ReportDir, RunConfig};
use replicheck::scenario::ScenarioFile;
use replicheck::step::Template;
use replicheck::target::{PostgresDependency, Target};
use replicheck::up::{self, UpConfig};
use replicheck::verdict::Verdict;

fn demo(file: &str) -> Target {
    Target::load(&common::root().join("examples/demo").join(file)).expect("the demo target loads")
}

async fn login_run(file: &str, report: &std::path::Path) -> replicheck::report::Report {
    let config = RunConfig::new(demo(file))
        .seed(11)
        .replicheck(common::bin())
        .report_dir(ReportDir::At(report.to_owned()))
        .select(&["login"])
        .expect("login is a built-in scenario");
    let outcome = run::run(config, &Silent).await.expect("the run runs");
    outcome.write_report().expect("the report is written");
    outcome.report
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_in_code_finds_the_misconfigured_demo_says_why_and_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let broken = login_run("broken.toml", &dir.path().join("broken")).await;
    assert_eq!(broken.verdict(), Verdict::Findings);
    let kinds: BTreeSet<String> = broken.findings.iter().map(|f| f.kind.to_string()).collect();
    assert_eq!(kinds, BTreeSet::from(["auth-cookie-rejected".to_owned()]));
    for file in ["report.json", "junit.xml", "summary.md", "report.html", "r0.log"] {
        assert!(dir.path().join("broken").join(file).exists(), "{file} is written");
    }

    let failed = std::panic::catch_unwind(|| broken.assert_consistent()).expect_err("findings fail the assertion");
    let message = failed.downcast_ref::<String>().expect("a message");
    assert!(message.contains("probable cause(s)"), "{message}");
    assert!(message.contains("auth-cookie-rejected"), "{message}");
    assert!(message.contains("control:"), "the evidence is in the message: {message}");
    assert!(!message.contains("wonderland"), "the password leaked: {message}");

    let fixed = login_run("fixed.toml", &dir.path().join("fixed")).await;
    fixed.assert_consistent();

    // What `replicheck replay --finding` does: only that finding's check, from the seed.
    let first = broken.findings[0].id.clone();
    let config = ReplayConfig::new(demo("broken.toml"))
        .finding(&first)
        .report_dir(ReportDir::At(dir.path().join("replay")))
        .replicheck(common::bin())
        .reproduce("replicheck replay broken/report.json");
    let Replay::Run(config) = replay::plan(&broken, config).expect("a run replays") else { panic!("not an exploration") };
    assert_eq!(config.seed, broken.seed);
    let replayed = run::run(config, &Silent).await.expect("the replay runs").report;
    let comparison = replay::compare(&broken, &replayed, replay::focus(&broken, Some(&first)).unwrap());
    assert_eq!(comparison.recorded.len(), 1);
    assert!(comparison.recorded[0].1, "the finding happened again");
    assert!(comparison.new.is_empty());
    let unknown = replay::plan(&broken, ReplayConfig::new(demo("broken.toml")).finding("F99"));
    assert!(matches!(unknown, Err(replay::ReplayError::UnknownFinding { .. })));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_gives_its_app_the_runs_postgresql_in_code() {
    // The notes app, its cache moved from a shared SQLite file to PostgreSQL by the test.
    let mut target = Target::load(&common::root().join("tests/apps/notes/fixed.toml")).expect("the notes target loads");
    target.dependencies.postgres = Some(PostgresDependency::default().with_database("notes").with_seed("schema.sql"));
    target.start.env.insert("APP_STORE".into(), Template::parse("{database_url}").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = RunConfig::new(target)
        .seed(5)
        .replicas(3)
        .report_dir(ReportDir::At(dir.path().to_owned()))
        .select(&["login", "cache"])
        .expect("built-in scenarios");
    let outcome = run::run(config, &Silent).await.expect("the run runs");
    outcome.report.assert_consistent();
    let cache = outcome.report.scenarios.iter().find(|s| s.name == "cache").expect("the cache scenario ran");
    assert_eq!(cache.status, replicheck::check::ScenarioStatus::Passed);
    assert!(dir.path().join("postgres.log").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scenario_written_in_code_runs_and_its_findings_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = ScenarioFile::from_source(SourceFile::from_text(
        "account.toml",
        r#"
        name = "account"
        [[steps]]
        name = "form"
        request = "login.form"
        [[steps]]
        name = "sign in"
        request = "login.submit"
        route = "same"
        produces = "auth-cookie"
        [[steps]]
        name = "account page"
        request = "login.protected"
        consumes = "auth-cookie"
        expect = "login.accepted"
        reject = "login.rejected"
        "#,
    ))
    .expect("the scenario is valid");
    let config = RunConfig::new(demo("broken.toml"))
        .seed(5)
        .replicheck(common::bin())
        .report_dir(ReportDir::At(dir.path().to_owned()))
        .select(&["login"])
        .expect("login is a built-in scenario")
        .scenarios(vec![scenario]);
    let report = run::run(config, &Silent).await.expect("the run runs").report;
    assert_eq!(report.verdict(), Verdict::Findings);
    for finding in &report.findings {
        assert_eq!(finding.kind.to_string(), "auth-cookie-rejected");
        assert_eq!(finding.scenario, "account", "only the scenario written in code ran");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_runs_replicheck_needs_a_replicheck_binary() {
    let dir = tempfile::tempdir().unwrap();
    // The demo targets start `{replicheck} demo-service`; a test binary is not replicheck.
    let config = RunConfig::new(demo("fixed.toml")).report_dir(ReportDir::At(dir.path().to_owned()));
    let err = run::run(config, &Silent).await.expect_err("nothing to start the replicas with");
    let message = replicheck::errors::chain(&err);
    assert!(message.contains("`{replicheck}` has no value here"), "{message}");
    assert!(message.contains("no replicheck binary"), "{message}");
}

/// Which replicas served `requests` requests through the balancer; every one must succeed.
async fn served_by(client: &reqwest::Client, balancer: &str, requests: usize) -> BTreeSet<String> {
    let mut replicas = BTreeSet::new();
    for _ in 0..requests {
        let response = client.get(format!("{balancer}/healthz/live")).send().await.expect("the balancer answers");
        assert!(response.status().is_success(), "{}", response.status());
        let replica = response.headers().get(SERVED_BY_HEADER).expect("the balancer names the replica");
        replicas.insert(replica.to_str().unwrap().to_owned());
    }
    replicas
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_disrupts_replicas_and_the_balancer_follows() {
    let dir = tempfile::tempdir().unwrap();
    let config = UpConfig::new(demo("fixed.toml")).replicheck(common::bin()).report_dir(ReportDir::At(dir.path().to_owned()));
    let mut cluster = up::start(config, &Silent).await.expect("the demo replicas start");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let balancer = cluster.balancer_url();
    let replicas = cluster.replica_urls();
    assert_eq!(replicas.len(), 2);
    assert_eq!(served_by(&client, &balancer, 20).await.len(), 2, "random routing reaches both");

    cluster.kill(1).await.unwrap();
    assert!(client.get(format!("{}/healthz/live", replicas[1])).send().await.is_err(), "r1 is dead");
    assert_eq!(served_by(&client, &balancer, 10).await.into_iter().collect::<Vec<_>>(), ["r0"]);

    cluster.restart(1).await.unwrap();
    let after = served_by(&client, &balancer, 30).await;
    assert!(after.iter().any(|r| r.starts_with("r1")), "the restarted r1 serves again: {after:?}");

    cluster.stop(0).await.unwrap();
    assert!(served_by(&client, &balancer, 10).await.iter().all(|r| r.starts_with("r1")));

    let urls = cluster.replica_urls();
    drop(cluster);
    for url in urls {
        let gone = common::wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err());
        assert!(gone, "{url} still answers after the cluster was dropped");
    }
}

/// A replica whose second incarnation cannot start: the next try is its third, with a log
/// of its own, and the failed one's log is kept as it was.
#[tokio::test(flavor = "multi_thread")]
async fn an_incarnation_that_failed_to_start_keeps_its_name_and_log() {
    let target = Target::from_source(&SourceFile::from_text(
        "second-fails.toml",
        r#"
        [start]
        command = "sh"
        args = ["-c", "if [ {generation} = 2 ]; then echo 'generation 2 refuses'; exit 4; fi; exec python3 -m http.server --bind {host} {port}"]
        "#,
    ))
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let config = UpConfig::new(target).replicas(1).report_dir(ReportDir::At(logs.path().into()));
    let mut cluster = up::start(config, &Silent).await.unwrap();
    let failed = cluster.restart(0).await.expect_err("generation 2 refuses to start");
    assert!(replicheck::errors::chain(&failed).contains("r0#2 exited"), "{failed}");
    cluster.restart(0).await.unwrap();
    assert_eq!(cluster.replica_urls().len(), 1);
    let second = std::fs::read_to_string(logs.path().join("r0#2.log")).unwrap();
    assert!(second.contains("generation 2 refuses"), "{second}");
    assert!(logs.path().join("r0#3.log").exists(), "the third try has a log of its own");
    cluster.shutdown().await;
}

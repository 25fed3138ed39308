//! The same demo as a container image, described as a testcontainers test describes it;
//! replicheck starts its replicas from that description on the docker backend. Needs a
//! Docker engine and the demo image (`examples/docker/build-images.sh`); without an
//! engine the tests say they were skipped.

mod common;

use replicheck::check::ScenarioStatus;
use replicheck::cluster::backend::template::ContainerTemplate;
use replicheck::file::SourceFile;
use replicheck::progress::Silent;
use replicheck::report::Report;
use replicheck::run::{self, ReportDir, RunConfig};
use replicheck::target::Target;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::{GenericImage, ImageExt};

/// The demo's image and login flow; the template below says how its containers start.
fn flows() -> String {
    format!("name = \"demo-image\"\n[start]\nimage = \"replicheck-demo:local\"\nready_timeout = \"30s\"\n{}", common::HEALTH_AND_LOGIN)
}

fn docker_engine() -> bool {
    let answered = std::process::Command::new("docker").args(["version"]).output().is_ok_and(|o| o.status.success());
    if !answered {
        eprintln!("SKIPPED: no Docker engine answers (`docker version` failed)");
    }
    answered
}

async fn login_run(keys_and_store: &'static [&'static str]) -> Report {
    template_run(keys_and_store, "", "login").await
}

/// A run of `check` against replicas of the demo image started with `args`, the target's
/// flows followed by `more` of the target file.
async fn template_run(args: &'static [&'static str], more: &str, check: &str) -> Report {
    let template = ContainerTemplate::new(move || {
        let mut cmd = vec!["demo-service", "--listen", "0.0.0.0:8080"];
        cmd.extend_from_slice(args);
        GenericImage::new("replicheck-demo", "local")
            .with_exposed_port(8080.tcp())
            .with_wait_for(WaitFor::message_on_stdout("listening on"))
            .with_cmd(cmd)
    })
    .expect("the image exposes one port");
    let target = Target::from_source(&SourceFile::from_text("demo-image.toml", flows() + more)).expect("valid").with_container(template);
    let reports = tempfile::tempdir().unwrap();
    let config = RunConfig::new(target).seed(5).report_dir(ReportDir::Under(reports.path().to_owned()));
    let report = run::run(config.select(&[check]).expect("a built-in check"), &Silent).await.expect("the run runs").report;
    assert_eq!(leftovers(&report.run_id), "", "the run left these on the engine");
    report
}

/// The run's containers, volumes and networks still on the engine, by the run's label.
fn leftovers(run_id: &str) -> String {
    let label = format!("label=replicheck={run_id}");
    let mut left = String::new();
    for kind in [&["ps", "-aq"][..], &["volume", "ls", "-q"], &["network", "ls", "-q"]] {
        let output = std::process::Command::new("docker").args(kind).args(["--filter", &label]).output().expect("docker runs");
        left.push_str(String::from_utf8_lossy(&output.stdout).trim());
    }
    left
}

/// The demo image keeping its sessions in a PostgreSQL its readiness does not ask, and that
/// database a service of the team's own, `[dependencies.db]`, started from the container a
/// testcontainers test would start. Its wait strategy says when it first serves; after a
/// restart, the file's `ready` does (a TCP connection is accepted before PostgreSQL serves).
#[tokio::test(flavor = "multi_thread")]
async fn a_database_container_the_tests_describe_is_the_runs_dependency_and_its_outage_is_judged() {
    if !docker_engine() {
        return;
    }
    let file = format!(
        "name = \"demo-image-db\"\n[start]\nimage = \"replicheck-demo:local\"\nport = 8080\nready_timeout = \"30s\"\n\
         args = [\"demo-service\", \"--listen\", \"{{host}}:{{port}}\", \"--readiness-ignores-store\", \"--keys\", \"{{shared_dir}}/keys\", \"--store\", \"{{db_url}}\"]\n\
         {}\n[session]\nset = {{ method = \"POST\", url = \"/session\", form = {{ note = \"{{value}}\" }} }}\nget = {{ url = \"/session\" }}\n\
         [dependencies.db]\nimage = \"replicheck-postgres:local\"\nport = 5432\nurl = \"postgresql://app@{{host}}:{{port}}/app\"\n\
         ready = {{ command = \"pg_isready -h 127.0.0.1 -U app\" }}\n",
        common::HEALTH_AND_LOGIN
    );
    let database = ContainerTemplate::new(|| {
        GenericImage::new("replicheck-postgres", "local")
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"))
            .with_env_var("POSTGRES_USER", "app")
            .with_env_var("POSTGRES_DB", "app")
            .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
    })
    .expect("the image exposes one port");
    let target = Target::from_source(&SourceFile::from_text("demo-image-db.toml", file)).expect("valid");
    let target = target.with_dependency_container("db", database).expect("the file declares [dependencies.db]");
    let reports = tempfile::tempdir().unwrap();
    let config = RunConfig::new(target).seed(3).report_dir(ReportDir::Under(reports.path().to_owned()));
    let config = config.select(&["session", "store-restart", "store-outage"]).expect("built-in checks");
    let report = run::run(config, &Silent).await.expect("the run runs").report;
    assert_eq!(leftovers(&report.run_id), "", "the run left these on the engine");
    let kinds: Vec<String> = report.findings.iter().map(|f| f.kind.to_string()).collect();
    assert!(!kinds.is_empty() && kinds.iter().all(|k| k == "readiness-stale"), "{kinds:?}\n{:#?}", report.scenarios);
    assert!(report.findings.iter().all(|f| f.check == "store-outage db" && f.reproduced), "{:?}", report.findings);
    // Restarted in place, the database kept the sessions.
    let restart = report.scenarios.iter().find(|s| s.name == "store-restart db").expect("the restart ran");
    assert_eq!(restart.status, ScenarioStatus::Passed, "{restart:?}");
}

#[test]
fn a_dependency_container_needs_the_service_declared_in_the_file() {
    let target = Target::from_source(&SourceFile::from_text("demo-image.toml", flows())).expect("valid");
    let database = ContainerTemplate::new(|| GenericImage::new("replicheck-postgres", "local").with_exposed_port(5432.tcp())).expect("one port");
    let err = target.with_dependency_container("db", database).expect_err("no [dependencies.db]");
    assert!(err.to_string().contains("[dependencies.db]"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_with_keys_of_their_own_reject_each_others_login_cookie() {
    if !docker_engine() {
        return;
    }
    let report = login_run(&["--keys", "memory", "--store", "memory"]).await;
    assert!(!report.findings.is_empty(), "no findings");
    for finding in &report.findings {
        assert_eq!(finding.kind.to_string(), "auth-cookie-rejected");
        assert!(finding.reproduced, "the control run saw it again");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_sharing_a_key_ring_pass() {
    if !docker_engine() {
        return;
    }
    let report = login_run(&["--keys", "/replicheck-shared/keys", "--store", "sqlite:/replicheck-shared/store.db"]).await;
    report.assert_consistent();
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_from_a_template_are_given_the_platforms_telemetry_settings() {
    if !docker_engine() {
        return;
    }
    // The image's own command, plus the SDK; the run adds where and as what to export.
    let report = template_run(&["--telemetry"], "\n[telemetry]\nservice_name = \"demo\"\n", "telemetry").await;
    let telemetry = report.scenarios.iter().find(|s| s.name == "telemetry").expect("the telemetry inspection ran");
    assert_eq!(telemetry.status, ScenarioStatus::Passed, "{telemetry:?}");
    report.assert_consistent();
}

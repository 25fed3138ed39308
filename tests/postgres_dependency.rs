//! The PostgreSQL dependency: a real server from the machine's binaries per run, one fresh
//! database seeded before the replicas start, data kept across a restart unless the target
//! says it does not persist, setup failures named, and nothing left behind.

mod common;

use replicheck::cluster::dependency::Postgres;
use replicheck::target::{DatabasePersistence, PostgresDependency};

/// A `[dependencies.postgres]` table as a target file would give it.
fn spec(extra: &str) -> PostgresDependency {
    toml::from_str(extra).expect("a valid table")
}

/// One statement through Debian's psql; its rows, unaligned, or its error.
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let output = std::process::Command::new("psql").args([url, "--no-psqlrc", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Whether every process started for run `run_id` is gone, within a few seconds.
fn all_gone(run_id: &str) -> bool {
    let marker = format!("{}={run_id}", replicheck::cluster::reaper::RUN_MARKER);
    common::wait_until(std::time::Duration::from_secs(5), || replicheck::cluster::reaper::marked_processes(&marker).is_empty())
}

fn seeded(dir: &std::path::Path) -> std::path::PathBuf {
    common::write(dir, "schema.sql", "CREATE TABLE accounts (name TEXT PRIMARY KEY);\nINSERT INTO accounts VALUES ('seeded');\n")
}

#[tokio::test]
async fn postgres_starts_with_a_fresh_seeded_database_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path());
    let tag = common::tag("postgres");
    let spec = spec("database = \"orders\"\nuser = \"shop\"\nseed = \"schema.sql\"\n");
    let mut postgres = Postgres::start(&dir.path().join("pg"), dir.path(), &spec, dir.path(), &tag).await.unwrap();
    let url = postgres.url();
    assert!(url.starts_with("postgresql://shop@127.0.0.1:") && url.ends_with("/orders"), "{url}");
    assert_eq!(psql(&url, "SELECT name FROM accounts").unwrap(), "seeded");
    assert_eq!(psql(&url, "SELECT current_user || ' ' || current_database()").unwrap(), "shop orders");
    assert_eq!(postgres.vars()["database_name"], "orders");
    postgres.stop().await;
    assert!(!postgres.is_running());
    assert!(psql(&url, "SELECT 1").is_err());
    drop(postgres);
    assert!(all_gone(&tag));
}

#[tokio::test]
async fn a_restart_keeps_the_data_unless_the_database_does_not_persist() {
    for (persistence, survives) in [("disk", true), ("none", false)] {
        let dir = tempfile::tempdir().unwrap();
        seeded(dir.path());
        let spec = spec(&format!("seed = \"schema.sql\"\npersistence = \"{persistence}\"\n"));
        let mut postgres = Postgres::start(&dir.path().join("pg"), dir.path(), &spec, dir.path(), &common::tag("pg-restart")).await.unwrap();
        let url = postgres.url();
        psql(&url, "INSERT INTO accounts VALUES ('written')").unwrap();
        postgres.stop().await;
        postgres.start_again().await.unwrap();
        assert_eq!(postgres.url(), url, "the same port and database");
        let names = psql(&url, "SELECT string_agg(name, ',' ORDER BY name) FROM accounts").unwrap();
        let expected = if survives { "seeded,written" } else { "seeded" };
        assert_eq!(names, expected, "persistence {persistence}");
        assert!(dir.path().join("postgres#2.log").exists());
        postgres.stop().await;
    }
    assert_eq!(spec("").persistence, DatabasePersistence::Disk);
}

#[tokio::test]
async fn a_seed_command_runs_with_the_database_url_after_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path());
    let spec = spec(
        "seed = \"schema.sql\"\nseed_command = \"psql \\\"$DATABASE_URL\\\" -c \\\"INSERT INTO accounts VALUES ('{database_name} by command')\\\"\"\n",
    );
    let mut postgres = Postgres::start(&dir.path().join("pg"), dir.path(), &spec, dir.path(), &common::tag("pg-seed")).await.unwrap();
    let names = psql(&postgres.url(), "SELECT string_agg(name, ',' ORDER BY name) FROM accounts").unwrap();
    assert_eq!(names, "app by command,seeded");
    postgres.stop().await;
}

#[tokio::test]
async fn a_failing_seed_is_a_setup_error_with_the_servers_words_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "schema.sql", "CREATE TABLE ok (x int);\nCREATE TABEL broken (x int);\n");
    let tag = common::tag("pg-bad-seed");
    let err = Postgres::start(&dir.path().join("pg"), dir.path(), &spec("seed = \"schema.sql\"\n"), dir.path(), &tag).await.unwrap_err().to_string();
    assert!(err.starts_with("postgres: psql failed (exit status 3)"), "{err}");
    assert!(err.contains("syntax error at or near \"TABEL\""), "{err}");
    assert!(all_gone(&tag), "the server started for the seed is gone");
}

#[test]
fn an_app_keeping_its_cache_in_the_runs_postgres_finds_nothing_and_leaves_nothing() {
    let run = common::run("tests/apps/notes/postgres.toml", &["--seed", "3", "--replicas", "3", "--scenarios", "login,cache"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("postgres ready at postgresql://app@127.0.0.1:"), "{said}");
    assert_eq!(run.status_of("cache"), Some(replicheck::check::ScenarioStatus::Passed));
    assert!(run.report_dir.join("postgres.log").exists());
}

/// The notes app with its readiness blind to PostgreSQL, and a database that starts over
/// empty after a restart (a container without a volume).
fn blind_to_postgres(dir: &std::path::Path) -> std::path::PathBuf {
    let fixed = std::fs::read_to_string(common::root().join("tests/apps/notes/postgres.toml")).unwrap();
    let blind = fixed.replace(r#", APP_READY = "store""#, "").replace("[dependencies.postgres]\n", "[dependencies.postgres]\npersistence = \"none\"\n");
    assert_ne!(blind, fixed);
    std::fs::copy(common::root().join("tests/apps/notes/schema.sql"), dir.join("schema.sql")).unwrap();
    let blind = blind.replace(r#""app.py""#, &format!("{:?}", common::root().join("tests/apps/notes/app.py")));
    common::write(dir, "blind.toml", &blind)
}

#[test]
fn an_outage_of_postgres_shows_readiness_blind_to_it_and_a_restart_without_persistence_loses_data() {
    let dir = tempfile::tempdir().unwrap();
    let target = blind_to_postgres(dir.path());
    let run = common::run(target.to_str().unwrap(), &["--seed", "4", "--replicas", "2", "--scenarios", "cache,store-outage,store-restart"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["artifact-lost-after-store-restart", "readiness-stale"], "{}", run.stdout);
    let report = run.report();
    let stale = report.findings.iter().find(|f| f.kind.to_string() == "readiness-stale").unwrap();
    assert_eq!(stale.check, "store-outage postgres");
    assert_eq!(stale.step, "readiness while postgres is down");
    let lost = report.findings.iter().find(|f| f.kind.to_string() == "artifact-lost-after-store-restart").unwrap();
    assert_eq!(lost.check, "store-restart postgres");
    assert!(lost.after.as_ref().is_some_and(|a| a.action == "stop of postgres"), "{lost:?}");
    // Its name is one word of the command that runs it again.
    assert!(lost.reproduce.ends_with("--scenarios 'cache,store-restart postgres'"), "{}", lost.reproduce);
}

#[test]
fn readiness_that_asks_postgres_and_data_kept_across_its_restart_find_nothing() {
    let run = common::run("tests/apps/notes/postgres.toml", &["--seed", "4", "--replicas", "3", "--scenarios", "cache,store-outage postgres,store-restart"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for check in ["store-outage postgres", "store-restart postgres"] {
        assert_eq!(run.status_of(check), Some(replicheck::check::ScenarioStatus::Passed), "{check}: {}", run.stdout);
    }
    // Named, a dependency the target does not declare is skipped with the reason.
    let run = common::run("tests/apps/notes/postgres.toml", &["--seed", "4", "--scenarios", "cache,store-outage redis"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("store-outage redis: skipped: the target declares no dependency named redis"), "{}", run.stdout);
}

/// The notes app creating its own table as each replica starts (no seed), `mode` saying how:
/// `unguarded`, `locked` or `sometimes` (its ledger in `dir`).
fn migrating_at_start(dir: &std::path::Path, mode: &str) -> std::path::PathBuf {
    let fixed = std::fs::read_to_string(common::root().join("tests/apps/notes/postgres.toml")).unwrap();
    let ledger = dir.join(format!("{mode}.ledger"));
    let text = fixed
        .replace("seed = \"schema.sql\"\n", "")
        .replace(r#"APP_READY = "store""#, &format!(r#"APP_READY = "store", APP_MIGRATE = "{mode}", APP_LEDGER = {ledger:?}"#))
        .replace(r#""app.py""#, &format!("{:?}", common::root().join("tests/apps/notes/app.py")));
    assert!(!text.contains("seed =") && text.contains("APP_MIGRATE"));
    common::write(dir, &format!("migrate-{mode}.toml"), &text)
}

#[test]
fn replicas_that_each_migrate_as_they_start_race_only_when_started_together() {
    let dir = tempfile::tempdir().unwrap();
    let unguarded = migrating_at_start(dir.path(), "unguarded");
    for (seed, replicas) in [("1", "2"), ("2", "3")] {
        let run = common::run(unguarded.to_str().unwrap(), &["--seed", seed, "--replicas", replicas, "--scenarios", "login,cache,cold-start"]);
        // The run itself starts: its first replica migrates before the others start.
        assert_eq!(run.code, 1, "seed {seed}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(run.kinds(), ["start-race"], "seed {seed}: {}", run.stdout);
        let report = run.report();
        let race = &report.findings[0];
        assert_eq!((race.check.as_str(), race.step.as_str()), ("cold-start", "start together"));
        assert!(race.observed.reason.contains("already exists") || race.observed.reason.contains("duplicate key"), "{}", race.observed.reason);
        assert!(race.after.as_ref().is_some_and(|a| a.action == "postgres emptied to its seed"), "{race:?}");
        assert!(race.reproduced, "seen again when run again");
        assert!(report.diagnoses.iter().any(|d| d.cause.id() == "migrations-race"), "{:?}", report.diagnoses);
    }
    let locked = migrating_at_start(dir.path(), "locked");
    let run = common::run(locked.to_str().unwrap(), &["--seed", "1", "--replicas", "3", "--scenarios", "login,cache,cold-start"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.status_of("cold-start"), Some(replicheck::check::ScenarioStatus::Passed), "{}", run.stdout);
}

/// A start race shows only when the starts overlap, which a busy machine makes less likely:
/// a race the first run again misses is still confirmed by a later one, and not before.
#[test]
fn a_start_race_that_shows_now_and_then_is_confirmed_by_a_later_run() {
    let dir = tempfile::tempdir().unwrap();
    let sometimes = migrating_at_start(dir.path(), "sometimes");
    let run = common::run(sometimes.to_str().unwrap(), &["--seed", "3", "--replicas", "2", "--scenarios", "cold-start"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), ["start-race"], "{}", run.stdout);
    let race = &run.report().findings[0];
    assert!(race.reproduced && race.control.result == replicheck::check::finding::ControlResult::Passed, "{race:?}");
    // The app's ledger: the first run's replicas met and raced, the second run's waited for
    // the first migration, the third's raced again; nothing ran after it.
    let ledger = std::fs::read_to_string(dir.path().join("sometimes.ledger")).unwrap();
    assert_eq!(ledger.matches("joined").count(), 3, "{ledger}");
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.report_dir.join("record.json")).unwrap()).unwrap();
    let failures: Vec<bool> = record["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["experiment"] == "cold-start")
        .map(|r| !r["start_failure"].is_null())
        .collect();
    assert_eq!(failures, [true, false, true], "the cold start's runs: which replicas failed to start");
}

//! The README's examples are real: its target and scenario files validate, and the
//! commands it gives exist.

mod common;

fn toml_blocks(readme: &str) -> Vec<String> {
    readme.split("```toml\n").skip(1).filter_map(|rest| rest.split("```").next().map(str::to_owned)).collect()
}

#[test]
fn the_readme_target_and_scenario_examples_validate() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let (policies, blocks): (Vec<String>, Vec<String>) = toml_blocks(&readme).into_iter().partition(|b| b.starts_with("[[accept]]"));
    assert_eq!(blocks.len(), 2, "a target and a scenario example");
    let dir = tempfile::tempdir().unwrap();
    let target = common::write(dir.path(), "myapp.toml", &blocks[0]);
    // The files the target names, as a project would have them beside it.
    std::fs::create_dir(dir.path().join("db")).unwrap();
    common::write(&dir.path().join("db"), "schema.sql", "CREATE TABLE orders (id int);\n");
    let scenario = common::write(dir.path(), "checkout.toml", &blocks[1]);
    let output = common::command(&common::tag("readme"), &["validate", target.to_str().unwrap(), scenario.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("(target myapp; flows: login, antiforgery, session, cache, upload, echo, token, affinity, telemetry, scheduled.digest, triggered.receipt, broadcast.chat, limit.resets)"), "{stdout}");
    assert!(stdout.contains("(scenario checkout)"), "{stdout}");

    // The policy example loads (a dry run reads it and sends nothing).
    assert_eq!(policies.len(), 1, "a policy example");
    let policy = common::write(dir.path(), "policy.toml", &policies[0]);
    let output = common::command(&common::tag("readme"), &["run", "examples/demo/fixed.toml", "--policy", policy.to_str().unwrap(), "--dry-run"])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_readme_commands_exist() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    assert!(readme.contains("cargo run -- demo") && readme.contains(".ci/run"));
    let ci = std::fs::read_to_string(common::root().join(".ci/run")).unwrap();
    assert!(ci.contains("cargo nextest run --no-fail-fast") && readme.contains("`cargo nextest run`"), "the CI script runs the README's test command");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(common::root().join(".ci/run")).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, ".ci/run is executable");
}

#[test]
fn the_readme_smoke_command_parses() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let block = readme.split("```sh\n").find(|b| b.starts_with("replicheck smoke")).expect("a smoke example");
    let command = block.split("```").next().unwrap().replace("\\\n", " ");
    // The example's instances do not exist here: a dry run parses and plans without them.
    let command = command.trim().replacen("replicheck", &common::bin().display().to_string(), 1).replace("myapp.toml", "examples/demo/fixed.toml") + " --dry-run";
    let output = std::process::Command::new("sh").arg("-c").arg(&command).current_dir(common::root()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{command}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("plan for seed") && stdout.contains("Nothing was sent"), "{stdout}");
}

#[test]
fn the_readme_explore_example_fails_as_the_demo_does() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let block = readme.split("```sh\n").find(|b| b.starts_with("replicheck explore")).expect("an explore example");
    let command = block.split("```").next().unwrap().trim().replacen("replicheck", &common::bin().display().to_string(), 1);
    let dir = tempfile::tempdir().unwrap();
    let command = format!("{command} --format json --report-dir {}", dir.path().join("report").display());
    let output = std::process::Command::new("sh").arg("-c").arg(&command).current_dir(common::root()).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{command}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: replicheck::report::Report = serde_json::from_slice(&std::fs::read(dir.path().join("report/report.json")).unwrap()).unwrap();
    assert_eq!(report.findings.iter().map(|f| f.kind.to_string()).collect::<Vec<_>>(), ["auth-cookie-rejected"]);
}

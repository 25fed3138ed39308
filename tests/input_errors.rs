//! Bad input: each file in `tests/input_errors/` is checked with `replicheck validate`,
//! must exit 2, and must print exactly its `.err` file (file:line:column, excerpt, hint).
//! `BLESS=1 cargo test --test input_errors` rewrites the `.err` files after a deliberate
//! change of wording.

mod common;

use std::path::PathBuf;

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(common::root().join("tests/input_errors"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_bad_file_gets_its_located_error_and_exit_2() {
    let cases = cases();
    assert!(cases.len() >= 10);
    let mut mismatches = Vec::new();
    for case in cases {
        let relative = case.strip_prefix(common::root()).unwrap().to_str().unwrap().to_owned();
        let output = common::command(&common::tag("validate"), &["validate", &relative]).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{relative}:\n{stderr}");
        let expected_path = case.with_extension("err");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if stderr != expected {
            mismatches.push(format!("{relative}\n--- expected\n{expected}\n--- got\n{stderr}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn valid_files_pass_and_say_what_they_are() {
    let output = common::command(
        &common::tag("validate"),
        &["validate", "examples/demo/broken.toml", "examples/demo/fixed-redis.toml", "scenarios/login.toml"],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("ok: examples/demo/broken.toml (target demo-broken; flows: login, antiforgery, session, cache, echo, token)"), "{stdout}");
    assert!(stdout.contains("ok: scenarios/login.toml (scenario login)"), "{stdout}");
}

fn usage_error(args: &[&str]) -> String {
    let output = common::command(&common::tag("usage"), args).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{args:?}");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn bad_command_lines_exit_2_naming_the_offending_value() {
    assert!(usage_error(&["validate", "no/such/file.toml"]).contains("cannot read no/such/file.toml"));
    assert!(usage_error(&["run", "examples/demo/fixed.toml", "--routing", "fastest"]).contains("`fastest` is not a routing policy"));
    assert!(usage_error(&["run", "examples/demo/fixed.toml", "--replicas", "0"]).contains("--replicas"));
    let unknown = usage_error(&["run", "examples/demo/fixed.toml", "--scenarios", "logn"]);
    assert!(unknown.contains("`logn` is neither a built-in scenario") && unknown.contains("did you mean `login`?"), "{unknown}");
    let pin = usage_error(&["run", "examples/demo/fixed.toml", "--routing", "pin:r5"]);
    assert!(pin.contains("pin:r5 names a replica outside r0..r1"), "{pin}");
    let no_image = usage_error(&["run", "examples/demo/fixed.toml", "--backend", "docker"]);
    assert!(no_image.contains("examples/demo/fixed.toml: [start] of the target has no `image`"), "{no_image}");
    let no_command = usage_error(&["run", "examples/demo/fixed-docker.toml", "--backend", "process"]);
    assert!(no_command.contains("has no `command`"), "{no_command}");
    assert!(usage_error(&["run", "examples/demo/fixed.toml", "--backend", "kubernetes"]).contains("kubernetes"));
    assert!(usage_error(&["run", "examples/demo/fixed.toml", "--backend", "external"]).contains("replicheck smoke TARGET --instance URL"));
    let nothing = usage_error(&["run", "examples/demo/broken.toml", "--scenarios", "store-restart"]);
    assert!(nothing.contains("nothing selected can run against examples/demo/broken.toml (store-restart: the target declares no dependency"), "{nothing}");
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap();
    for command in ["run", "explore"] {
        let error = usage_error(&[command, "examples/demo/fixed.toml", "--report-dir", path]);
        assert!(error.contains(&format!("{path} is a file")), "{command}: {error}");
    }
}

/// `replicheck ARGS` run from `dir`: its status and stderr.
fn in_dir(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let output = common::command(&common::tag("input"), args).current_dir(dir).output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn files_too_large_to_be_inputs_are_refused_with_their_size_without_reading_them_all() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "big.toml", &"# padding\n".repeat(500_000));
    let (code, stderr) = in_dir(dir.path(), &["validate", "big.toml"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr, "error: big.toml: 5000000 bytes; input files may be 4 MiB at most\n");

    // Endless inputs: a device, and a pipe whose writer never stops.
    let (code, stderr) = in_dir(dir.path(), &["run", "/dev/zero"]);
    assert_eq!((code, stderr.as_str()), (Some(2), "error: /dev/zero: holds more than 4 MiB; input files may be 4 MiB at most\n"));
    let fifo = dir.path().join("endless.toml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let writer = fifo.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut pipe = std::fs::OpenOptions::new().write(true).open(writer).unwrap();
        // Ends when the reader closes the pipe (EPIPE; Rust ignores SIGPIPE).
        while pipe.write_all(&[b'#'; 65536]).is_ok() {}
    });
    let policy = format!("--policy={}", fifo.display());
    let (code, stderr) = in_dir(&common::root(), &["run", "examples/demo/fixed.toml", &policy, "--dry-run"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("endless.toml: holds more than 4 MiB"), "{stderr}");
}

#[test]
fn a_line_of_megabytes_gets_a_short_excerpt_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let line = format!("command = \"{}", "x".repeat(4_000_000));
    common::write(dir.path(), "long.toml", &format!("[start]\n{line}\n"));
    let (code, stderr) = in_dir(dir.path(), &["validate", "long.toml"]);
    assert_eq!(code, Some(2), "{}", &stderr[..stderr.len().min(2000)]);
    assert!(stderr.contains(&format!("[long.toml:2:{}]", line.len() + 1)), "{stderr}");
    assert!(stderr.len() < 2000 && stderr.lines().all(|l| l.chars().count() <= 120), "{stderr}");
}

#[test]
fn empty_scenario_and_policy_files_are_said_to_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let empty = common::write(dir.path(), "empty.toml", "# nothing yet\n");
    let empty = empty.to_str().unwrap();
    for args in [
        vec!["run", "examples/demo/fixed.toml", "--dry-run", "--scenarios", empty],
        vec!["run", "examples/demo/fixed.toml", "--dry-run", "--policy", empty],
        vec!["run", empty],
    ] {
        let error = usage_error(&args);
        assert_eq!(error, format!("error: {empty}: the file is empty (nothing but blank lines and comments)\n"), "{args:?}");
    }
}

#[test]
fn addresses_this_machine_lacks_are_refused_at_their_place_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    common::write(dir.path(), "hello.toml", "name = \"hello\"\n[[steps]]\nname = \"home\"\nrequest = { url = \"/\" }\n");
    let target = |key: &str, address: &str| {
        let text = format!("[start]\ncommand = \"python3\"\nargs = [\"-m\", \"http.server\", \"--bind\", \"{{host}}\", \"{{port}}\"]\n\n[balancer]\n{key} = \"{address}\"\n");
        common::write(dir.path(), "app.toml", &text);
    };
    let logs = dir.path().join("logs");
    let logs = logs.to_str().unwrap();
    for (command, key) in [("run", "proxy_address"), ("explore", "client_address"), ("up", "untrusted_address")] {
        target(key, "192.0.2.1");
        let mut args = vec![command, "app.toml", "--report-dir", logs];
        if command != "up" {
            args.extend(["--scenarios", "hello.toml"]);
        }
        let (code, stderr) = in_dir(dir.path(), &args);
        assert_eq!(code, Some(2), "{command}: {stderr}");
        let column = key.len() + 4;
        assert!(stderr.contains(&format!("[app.toml:6:{column}]")) && stderr.contains(&format!("[balancer] {key} = \"192.0.2.1\" is not an address of this machine")), "{command}: {stderr}");
        assert!(!std::path::Path::new(logs).exists(), "{command} started nothing");
    }
    // Every loopback address is this machine's.
    target("untrusted_address", "127.0.0.2");
    let target = replicheck::target::Target::load(&dir.path().join("app.toml")).unwrap();
    assert!(target.check_local_addresses().is_ok());
}

#[test]
fn absurd_numbers_and_an_empty_scenario_directory_exit_2_naming_them() {
    let concurrency = usage_error(&["run", "examples/demo/fixed.toml", "--concurrency", "0"]);
    assert!(concurrency.contains("'0'") && concurrency.contains("--concurrency"), "{concurrency}");
    assert!(usage_error(&["run", "examples/demo/fixed.toml", "--concurrency", "1000000"]).contains("1000000"));
    assert!(usage_error(&["smoke", "examples/demo/fixed.toml", "--instance", "http://a", "--instance", "http://b", "--max-requests", "0"]).contains("--max-requests"));
    assert!(usage_error(&["explore", "examples/demo/fixed.toml", "--max-shrink-iters", "4000000000"]).contains("--max-shrink-iters"));
    for time in ["25h", "0s", "18446744073709551615s"] {
        let error = usage_error(&["explore", "examples/demo/fixed.toml", "--time", time]);
        assert!(error.contains("--time") && error.contains(time), "{error}");
    }
    let empty = tempfile::tempdir().unwrap();
    let shown = empty.path().display().to_string();
    let error = usage_error(&["run", "examples/demo/fixed.toml", "--dry-run", "--scenarios", &shown]);
    assert_eq!(error, format!("error: the directory {shown} holds no scenario files (*.toml)\n"));
}

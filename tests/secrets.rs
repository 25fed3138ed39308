//! No secret reaches a report or a log: the demo is told to log every cookie and token it
//! issues (and to list them in a side file), and no file replicheck writes, nor its own
//! output, may contain any of them or the target's password.

mod common;

#[test]
fn no_cookie_token_or_password_reaches_any_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let leaked = dir.path().join("issued.txt");
    let demo = std::fs::read_to_string(common::root().join("examples/demo/broken.toml")).unwrap();
    let target = demo
        .replace("\"--keys\", \"memory\"", &format!("\"--leak-secrets\", \"{}\", \"--keys\", \"memory\"", leaked.display()))
        // Probes of a page with a form would receive tokens no user sees; keep them plain.
        .replace("page = \"/login\"", "page = \"/whoami\"");
    assert_ne!(target, demo);
    let target = common::write(dir.path(), "leaky.toml", &target);
    let run = common::run(target.to_str().unwrap(), &["--seed", "21", "--scenarios", "login,antiforgery,session,cache,token"]);
    assert_eq!(run.code, 1, "{}", run.stderr);

    let mut secrets: Vec<String> = std::fs::read_to_string(&leaked).unwrap().lines().filter(|l| l.len() >= 16).map(str::to_owned).collect();
    secrets.sort();
    secrets.dedup();
    assert!(secrets.len() > 20, "the app issued cookies and tokens: {}", secrets.len());
    secrets.push("wonderland".into());

    let mut files = 0;
    let mut redacted_lines = 0;
    for entry in std::fs::read_dir(&run.report_dir).unwrap().flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
        files += 1;
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{} contains an issued secret", entry.path().display());
        }
        redacted_lines += text.lines().filter(|l| l.starts_with("issued ") && l.ends_with("[redacted]")).count();
    }
    assert!(files >= 8, "report files and replica logs: {files}");
    assert!(redacted_lines > 20, "the app's logs kept their lines, values redacted: {redacted_lines}");
    for secret in &secrets {
        assert!(!run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()), "replicheck printed a secret");
    }
}

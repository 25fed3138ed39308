//! Two real frameworks with their default session and CSRF machinery, through their
//! presets: Rails (Debian's ruby-rails: encrypted cookie store keyed by secret_key_base,
//! authenticity_token) and Pyramid (signed cookie sessions, session CSRF). Each
//! misconfigured (a secret per process, a per-process cache) and configured correctly.
//! `.ci/run` installs both.

mod common;

const CORE: &str = "login,antiforgery,session,cache";
const KINDS: [&str; 4] = ["antiforgery-rejected", "auth-cookie-rejected", "cache-divergent", "session-lost"];

fn require(program: &str, install: &str) {
    assert!(which::which(program).is_ok(), "{program} is missing: {install} (.ci/run installs it)");
}

fn misconfigured_shows_every_kind(target: &str) {
    let run = common::run(target, &["--seed", "1", "--scenarios", CORE]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.kinds(), KINDS, "{}", run.stdout);
}

fn configured_shows_nothing(target: &str) {
    for seed in 1..=5 {
        let run = common::run(target, &["--seed", &seed.to_string(), "--scenarios", CORE]);
        assert_eq!(run.code, 0, "seed {seed}:\n{}\n{}", run.stdout, run.stderr);
        assert!(run.report().findings.is_empty());
    }
}

#[test]
fn rails_with_a_secret_key_base_per_process_loses_cookies_sessions_and_tokens() {
    require("ruby", "apt-get install ruby-rails ruby-webrick");
    misconfigured_shows_every_kind("tests/apps/rails/broken.toml");
}

#[test]
fn rails_with_a_shared_secret_key_base_and_file_cache_finds_nothing() {
    require("ruby", "apt-get install ruby-rails ruby-webrick");
    configured_shows_nothing("tests/apps/rails/fixed.toml");
}

#[test]
fn pyramid_with_a_session_secret_per_process_loses_cookies_sessions_and_tokens() {
    misconfigured_shows_every_kind("tests/apps/pyramid/broken.toml");
}

#[test]
fn pyramid_with_a_shared_secret_and_sqlite_cache_finds_nothing() {
    configured_shows_nothing("tests/apps/pyramid/fixed.toml");
}

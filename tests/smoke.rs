//! `up` and `smoke`: a cluster kept up for people and other tools, and the staging smoke
//! test against instances that already run, directly and through a real nginx.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use replicheck::check::ScenarioStatus;
use replicheck::check::finding::FindingKind;

const NON_CHAOS: &str = "login,antiforgery,session,cache,token,forwarded-headers,signing-keys";

/// `replicheck up TARGET`, running until dropped (SIGINT), with the URLs it printed.
struct Up {
    child: Child,
    tag: String,
    replicas: Vec<String>,
    balancer: String,
    _dir: tempfile::TempDir,
}

impl Up {
    fn start(target: &str, replicas: u16) -> Up {
        let dir = tempfile::tempdir().unwrap();
        let tag = common::tag("up");
        let logs = dir.path().join("logs");
        let mut child = common::spawn(&tag, &["up", target, "--replicas", &replicas.to_string(), "--report-dir", logs.to_str().unwrap()]);
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut printed = BTreeMap::new();
        while !printed.contains_key("logs") {
            let line = received.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("`replicheck up` printed no URLs; stderr:\n{}", stderr_of(&mut child))
            });
            let (name, value) = line.split_once(' ').expect("`NAME VALUE` lines");
            printed.insert(name.to_owned(), value.to_owned());
        }
        assert!(logs.join("r0.log").exists(), "replica logs go to --report-dir");
        let replicas = (0..replicas).map(|i| printed.remove(&format!("r{i}")).expect("a line per replica")).collect();
        Up {
            child,
            tag,
            replicas,
            balancer: printed.remove("balancer").expect("a balancer line"),
            _dir: dir,
        }
    }

    /// SIGINT, as Ctrl-C; returns the exit code.
    fn stop(&mut self) -> i32 {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
        let status = self.child.wait().unwrap();
        common::assert_no_leftovers(&self.tag);
        status.code().unwrap_or(-1)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr_of(child: &mut Child) -> String {
    let _ = child.wait();
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
    }
    text
}

fn get(url: &str) -> (u16, String) {
    let output = Command::new("curl").args(["-sk", "-o", "-", "-w", "\n%{http_code}", url]).output().expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.parse().unwrap_or(0), body.to_owned())
}

/// `replicheck smoke TARGET ARGS --report-dir <temp>`, waited for.
fn smoke(target: &str, args: &[&str]) -> common::Finished {
    smoke_with(target, args, &[])
}

fn smoke_with(target: &str, args: &[&str], env: &[(&str, &str)]) -> common::Finished {
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().join("report");
    let mut all = vec!["smoke", target, "--report-dir", report_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = common::command(&common::tag("smoke"), &all).envs(env.iter().copied()).output().unwrap();
    common::finish(output, dir, report_dir)
}

fn instances(up: &Up) -> Vec<&str> {
    up.replicas.iter().flat_map(|url| ["--instance", url.as_str()]).collect()
}

#[test]
fn up_keeps_the_cluster_up_until_ctrl_c() {
    let mut up = Up::start("examples/demo/fixed.toml", 2);
    for url in up.replicas.iter().chain([&up.balancer]) {
        let (status, body) = get(&format!("{url}/login"));
        assert_eq!(status, 200, "{url}: {body}");
    }
    // The balancer routes among the replicas and says which one served.
    let served: Vec<String> = (0..6)
        .map(|_| {
            let output = Command::new("curl").args(["-s", "-D", "-", "-o", "/dev/null", &format!("{}/login", up.balancer)]).output().unwrap();
            let headers = String::from_utf8_lossy(&output.stdout).to_lowercase();
            headers.lines().find_map(|l| l.strip_prefix("x-replicheck-replica: ")).unwrap_or("").trim().to_owned()
        })
        .collect();
    assert!(served.contains(&"r0".to_owned()) && served.contains(&"r1".to_owned()), "{served:?}");
    assert_eq!(up.stop(), 0);
}

#[test]
fn smoke_against_running_instances_finds_what_run_finds() {
    let run = common::run("examples/demo/broken.toml", &["--seed", "5", "--scenarios", NON_CHAOS]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let mut up = Up::start("examples/demo/broken.toml", 2);
    // The demo sees replicheck's relays connect from 127.0.0.1, the address it is told to
    // trust when it trusts a proxy at all.
    let mut args = instances(&up);
    args.extend(["--known-proxy", "127.0.0.1", "--seed", "5", "--scenarios", NON_CHAOS]);
    let smoked = smoke("examples/demo/broken.toml", &args);
    assert_eq!(smoked.code, 1, "{}", smoked.stderr);
    assert_eq!(smoked.kinds(), run.kinds());
    assert_eq!(smoked.report().backend, "external");
    let routes = |report: &replicheck::report::Report| report.plan.vus.iter().map(|u| (u.scenario.clone(), u.routes.clone())).collect::<Vec<_>>();
    assert_eq!(routes(smoked.report()), routes(run.report()), "the same seed plans the same users");
    assert!(smoked.report().plan.vus.iter().zip(&run.report().plan.vus).all(|(s, r)| s.nonce != r.nonce && s.nonce.starts_with(&r.nonce)), "values are the run's own");
    for finding in &smoked.report().findings {
        assert!(finding.reproduce.starts_with("replicheck smoke examples/demo/broken.toml --instance http://127.0.0.1:"), "{}", finding.reproduce);
    }
    // The reproduce command is a valid command line (planned here, not run again).
    let reproduce = &smoked.report().findings[0].reproduce;
    let words: Vec<&str> = reproduce.split_whitespace().skip(1).chain(["--dry-run"]).collect();
    let planned = common::command(&common::tag("reproduce"), &words).output().unwrap();
    assert_eq!(planned.status.code(), Some(0), "{reproduce}: {}", String::from_utf8_lossy(&planned.stderr));

    // Every experiment needs lifecycle control replicheck does not have here: skipped, with the reason.
    // Nothing of such a selection can run: an error before anything is sent.
    let chaos = smoke("examples/demo/broken.toml", &[&args[..4], &["--scenarios", "restart,sigterm,store-restart"]].concat());
    assert_eq!(chaos.code, 2, "{}", chaos.stderr);
    for name in ["restart", "sigterm", "store-restart"] {
        assert!(chaos.stderr.contains(&format!("{name}: the instances run outside replicheck")), "{}", chaos.stderr);
    }
    assert!(chaos.stderr.contains("give --stop-cmd or --restart-cmd to restart one"), "{}", chaos.stderr);
    assert_eq!(up.stop(), 0);
}

#[test]
fn smoke_of_correctly_configured_instances_finds_nothing() {
    let mut up = Up::start("examples/demo/fixed.toml", 3);
    for seed in ["31", "32"] {
        let mut args = instances(&up);
        args.extend(["--known-proxy", "127.0.0.1", "--seed", seed, "--scenarios", NON_CHAOS]);
        let smoked = smoke("examples/demo/fixed.toml", &args);
        assert_eq!(smoked.code, 0, "seed {seed}: {}\n{}", smoked.stdout, smoked.stderr);
        assert!(smoked.report().findings.is_empty());
    }
    assert_eq!(up.stop(), 0);
}

/// Demo instances started by hand on fixed ports, with a script that (re)starts one by its
/// port; all stopped when dropped.
struct ByHand {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    script: PathBuf,
}

impl ByHand {
    fn start(count: usize, args: &str) -> ByHand {
        let dir = tempfile::tempdir().unwrap();
        let script = common::write(
            dir.path(),
            "restart.sh",
            &format!(
                "#!/bin/sh\n# restart.sh PORT: stops the instance listening on PORT, if any, and starts it again\npid=$(cat {dir}/$1.pid 2>/dev/null)\nif [ -n \"$pid\" ]; then kill $pid; while kill -0 $pid 2>/dev/null; do sleep 0.1; done; fi\n{bin} demo-service --listen 127.0.0.1:$1 --replica $1 --drain-ms 0 {args} >>{dir}/$1.log 2>&1 &\necho $! > {dir}/$1.pid\n",
                dir = dir.path().display(),
                bin = common::bin().display(),
            ),
        );
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let by_hand = ByHand { dir, ports, script };
        for port in &by_hand.ports {
            assert!(Command::new("sh").arg(&by_hand.script).arg(port.to_string()).status().unwrap().success());
        }
        for port in &by_hand.ports {
            assert!(common::wait_until(Duration::from_secs(10), || get(&format!("http://127.0.0.1:{port}/healthz/ready")).0 == 200));
        }
        by_hand
    }

    /// `smoke TARGET` of these instances, each named by its port, with `args`.
    fn smoke(&self, target: &str, args: &[&str]) -> common::Finished {
        let instances: Vec<String> = self.ports.iter().map(|port| format!("http://127.0.0.1:{port},name={port}")).collect();
        let mut all: Vec<&str> = instances.iter().flat_map(|instance| ["--instance", instance.as_str()]).collect();
        all.extend_from_slice(args);
        smoke(target, &all)
    }

    /// `--restart-cmd` for these instances.
    fn restart_cmd(&self) -> String {
        format!("sh {} {{instance}}", self.script.display())
    }

    fn logs(&self) -> String {
        self.ports.iter().map(|p| std::fs::read_to_string(self.dir.path().join(format!("{p}.log"))).unwrap_or_default()).collect()
    }
}

impl Drop for ByHand {
    fn drop(&mut self) {
        for port in &self.ports {
            if let Ok(pid) = std::fs::read_to_string(self.dir.path().join(format!("{port}.pid"))) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

#[test]
fn instances_that_do_not_trust_replicheck_are_checked_for_spoofing() {
    // replicheck's relays connect from 127.0.0.1, which these instances do not trust.
    let args = ["--seed", "33", "--scenarios", "forwarded-headers"];
    let safe = ByHand::start(2, "--forwarded known-proxy --known-proxy 127.0.0.9");
    let smoked = safe.smoke("examples/demo/fixed.toml", &args);
    assert_eq!(smoked.code, 0, "{}\n{}", smoked.stdout, smoked.stderr);

    let gullible = ByHand::start(2, "--forwarded trust-all");
    let smoked = gullible.smoke("examples/demo/fixed.toml", &args);
    assert_eq!(smoked.code, 1, "{}\n{}", smoked.stdout, smoked.stderr);
    assert_eq!(smoked.kinds(), ["forwarded-headers-spoofable"]);
}

#[test]
fn a_restart_command_runs_the_restart_experiment() {
    let keys = tempfile::tempdir().unwrap();
    let shared = format!("--keys {0}/keys --store sqlite:{0}/store.db", keys.path().display());
    let instances = ByHand::start(2, &shared);
    let restart = instances.restart_cmd();
    let args = ["--known-proxy", "127.0.0.1", "--restart-cmd", &restart, "--seed", "6", "--scenarios", "restart"];
    let smoked = instances.smoke("examples/demo/fixed.toml", &args);
    assert_eq!(smoked.code, 0, "{}\n{}", smoked.stdout, smoked.stderr);
    let restart = &smoked.report().scenarios[0];
    assert_eq!(restart.status, ScenarioStatus::Passed, "{restart:?}");
    assert!(instances.logs().matches("listening").count() >= 3, "one instance was started again:\n{}", instances.logs());

    // Keys only in memory do not survive the restart: the experiment shows it.
    let forgetful = ByHand::start(2, "--keys memory --store memory");
    let restart = forgetful.restart_cmd();
    let args = ["--known-proxy", "127.0.0.1", "--restart-cmd", &restart, "--seed", "6", "--scenarios", "restart"];
    let smoked = forgetful.smoke("examples/demo/fixed.toml", &args);
    assert_eq!(smoked.code, 1, "{}\n{}", smoked.stdout, smoked.stderr);
    assert!(smoked.kinds().contains(&"artifact-lost-after-restart".to_owned()), "{:?}", smoked.kinds());
}

#[test]
fn dry_run_prints_the_plan_and_sends_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let smoked = smoke("examples/demo/broken.toml", &["--instance", &url, "--instance", &url, "--seed", "2", "--dry-run"]);
    assert_eq!(smoked.code, 0, "{}", smoked.stderr);
    assert!(smoked.stdout.starts_with("plan for seed 2: 2 replica(s)"), "{}", smoked.stdout);
    assert!(smoked.stdout.contains("experiment") || smoked.stdout.contains("login"), "{}", smoked.stdout);
    assert!(smoked.stdout.contains("Nothing was sent"));
    assert!(listener.accept().is_err(), "a dry run connected to an instance");
    assert!(smoked.report.is_none(), "a dry run writes no report");
    let run = common::run("examples/demo/broken.toml", &["--seed", "2", "--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("plan for seed 2"), "{}", run.stdout);
}

#[test]
fn bad_smoke_command_lines_are_usage_errors() {
    for (args, says) in [
        (vec!["--instance", "http://127.0.0.1:1"], "two instances or more"),
        (vec!["--instance", "ftp://x", "--instance", "http://y"], "http or https"),
        (vec!["--via", "http://127.0.0.1:1"], "--instance-header"),
        (vec!["--instance", "http://a,port=1", "--instance", "http://b"], "`port=1`"),
        (vec!["--instance", "http://a,host=shop example", "--instance", "http://b"], "host=shop example"),
        (vec!["--instance", "http://a", "--instance", "http://b", "--bearer", "line\nbreak"], "--bearer"),
    ] {
        let smoked = smoke("examples/demo/broken.toml", &args);
        assert_eq!(smoked.code, 2, "{args:?}: {}", smoked.stderr);
        assert!(smoked.stderr.contains(says), "{args:?}: {}", smoked.stderr);
    }
}

// --- through a real nginx -------------------------------------------------------------

/// What nginx does in front of the instances.
#[derive(Clone, Copy, PartialEq)]
enum Front {
    /// Round robin, naming the serving upstream in `X-Served-By`.
    RoundRobin,
    /// A sticky-session cookie `srv` naming the upstream, honoured when a request carries it.
    Sticky,
    /// One https server per instance (self-signed).
    Tls,
}

/// nginx in front of `upstreams`, with an access log of request times.
struct Nginx {
    child: Child,
    urls: Vec<String>,
    access_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstreams: &[String], front: Front) -> Option<Nginx> {
        let Some(binary) = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().map(Path::new).find(|p| p.exists()) else {
            eprintln!("SKIPPED: nginx is not installed (apt-get install nginx)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let access_log = dir.path().join("access.log");
        let proxy = "proxy_set_header Host $http_host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; \
                     proxy_set_header X-Forwarded-Proto $scheme; add_header X-Served-By $upstream_addr always;";
        let mut urls = Vec::new();
        let servers = if front == Front::Tls {
            let made = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=staging.test"])
                .args(["-keyout", &format!("{d}/key.pem"), "-out", &format!("{d}/cert.pem")])
                .output()
                .expect("openssl runs");
            assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
            upstreams
                .iter()
                .map(|upstream| {
                    let port = free_port();
                    urls.push(format!("https://127.0.0.1:{port}"));
                    format!(
                        "  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;\n    location / {{ proxy_pass {upstream}; {proxy} }} }}\n"
                    )
                })
                .collect::<String>()
        } else {
            let port = free_port();
            urls.push(format!("http://127.0.0.1:{port}"));
            let addrs: Vec<&str> = upstreams.iter().map(|u| u.trim_start_matches("http://")).collect();
            let members: String = addrs.iter().map(|a| format!("server {a}; ")).collect();
            let (pass, sticky) = if front == Front::Sticky {
                let picks: String = addrs.iter().map(|a| format!("\"{a}\" {a}; ")).collect();
                (format!("  map $cookie_srv $pick {{ default app; {picks}}}\n"), "add_header Set-Cookie \"srv=$upstream_addr; Path=/\" always;")
            } else {
                ("  map $host $pick { default app; }\n".to_owned(), "")
            };
            format!("  upstream app {{ {members}}}\n{pass}  server {{ listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://$pick; {proxy} {sticky} }} }}\n")
        };
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  log_format stamp '$msec $upstream_addr $remote_user';\n  access_log {log} stamp;\n  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n{servers}}}\n",
            log = access_log.display(),
        );
        let conf_path = common::write(dir.path(), "nginx.conf", &conf);
        let child = Command::new(binary)
            .args(["-p", &d, "-c", conf_path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        for url in &urls {
            let serves = common::wait_until(Duration::from_secs(10), || get(&format!("{url}/login")).0 == 200);
            assert!(serves, "nginx did not serve {url}: {}", std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default());
        }
        // The log counts replicheck's requests, not these.
        std::fs::write(&access_log, "").unwrap();
        Some(Nginx {
            child,
            urls,
            access_log,
            _dir: dir,
        })
    }

    /// The times (seconds) of every request nginx received.
    fn request_times(&self) -> Vec<f64> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn through_nginx_the_serving_instance_is_read_from_a_header() {
    let mut up = Up::start("examples/demo/broken.toml", 2);
    let Some(nginx) = Nginx::start(&up.replicas, Front::RoundRobin) else { return };
    let core = "login,antiforgery,session,cache";
    let run = common::run("examples/demo/broken.toml", &["--seed", "12", "--scenarios", core]);
    let max_rps = 25;
    let rps = max_rps.to_string();
    let password = "s3cret-staging-pw";
    let smoked = smoke_with(
        "examples/demo/broken.toml",
        &["--via", &nginx.urls[0], "--instance-header", "X-Served-By", "--seed", "12", "--scenarios", core, "--max-rps", &rps],
        &[("REPLICHECK_BASIC_AUTH", &format!("ci:{password}"))],
    );
    assert_eq!(smoked.code, 1, "{}\n{}", smoked.stdout, smoked.stderr);
    // Artifacts the user carries (cookies, tokens) cross as they do without nginx.
    let kinds = smoked.kinds();
    for kind in ["antiforgery-rejected", "auth-cookie-rejected", "session-lost"] {
        assert!(kinds.contains(&kind.to_owned()) && run.kinds().contains(&kind.to_owned()), "{kind}: {kinds:?}");
    }
    // A cache entry is keyed by URL: a write nginx first sent to the reading instance puts
    // it there too, and round robin may send a user's write and read to one instance. Such
    // handoffs prove nothing, and the report says the cache was not tested (or that the
    // divergence it saw did not happen again) rather than passing it for shared.
    let cache = smoked.report().scenarios.iter().find(|s| s.name == "cache").unwrap();
    let untested = cache.untested.iter().any(|u| u.kind == FindingKind::CacheDivergent);
    assert!(kinds.contains(&"cache-divergent".to_owned()) || cache.unconfirmed > 0 || untested, "{cache:?}");
    for finding in &smoked.report().findings {
        assert_ne!(finding.producer.id, finding.consumer.id, "{finding:?}");
    }
    // r0 and r1 are the instances nginx named, in the order they first answered.
    let seen = smoked.stderr.lines().find(|l| l.contains("instances behind the load balancer")).expect("the instances are named");
    for replica in &up.replicas {
        assert!(seen.contains(replica.trim_start_matches("http://")), "{seen}");
    }
    // The staging credentials reached nginx on every request, and nothing written holds them.
    let log = std::fs::read_to_string(&nginx.access_log).unwrap();
    assert!(log.lines().all(|line| line.ends_with(" ci")), "{log}");
    for file in std::fs::read_dir(&smoked.report_dir).unwrap().flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(file.path()).unwrap()).into_owned();
        assert!(!text.contains(password) && !text.contains("Y2k6czNjcmV0"), "{} holds the password", file.path().display());
    }
    assert!(!smoked.stdout.contains(password) && !smoked.stderr.contains(password));
    let upstreams = nginx_served(&nginx);
    for replica in &up.replicas {
        assert!(upstreams.iter().any(|u| u == replica.trim_start_matches("http://")), "nginx never sent to {replica}");
    }

    // The rate limit held at nginx: no second of its log has more than the limit (one
    // more where a second's boundary splits two evenly spaced requests).
    let times = nginx.request_times();
    for (i, start) in times.iter().enumerate() {
        let within = times[i..].iter().take_while(|t| **t < start + 1.0).count();
        assert!(within <= max_rps + 1, "{within} requests within a second from {start}");
    }
    assert_eq!(up.stop(), 0);
}

/// Upstream addresses in nginx's access log.
fn nginx_served(nginx: &Nginx) -> Vec<String> {
    std::fs::read_to_string(&nginx.access_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

fn free_port() -> u16 {
    replicheck::cluster::free_port().unwrap()
}

#[test]
fn https_instances_with_a_self_signed_certificate() {
    let mut up = Up::start("examples/demo/broken.toml", 2);
    let Some(nginx) = Nginx::start(&up.replicas, Front::Tls) else { return };
    let instances: Vec<String> = nginx.urls.iter().map(|url| format!("{url},host=staging.test")).collect();
    let base = ["--instance", &instances[0], "--instance", &instances[1], "--known-proxy", "127.0.0.1", "--seed", "4", "--scenarios", "login,session"];
    // The certificate is nobody's: refused, with the reason, unless --insecure.
    let refused = smoke("examples/demo/broken.toml", &base);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(refused.stderr.contains("r0 (https://127.0.0.1:") && refused.stderr.to_lowercase().contains("certificate"), "{}", refused.stderr);
    let smoked = smoke("examples/demo/broken.toml", &[&base[..], &["--insecure"]].concat());
    assert_eq!(smoked.code, 1, "{}\n{}", smoked.stdout, smoked.stderr);
    assert_eq!(smoked.kinds(), ["auth-cookie-rejected", "session-lost"]);
    assert_eq!(up.stop(), 0);
}

#[test]
fn a_sticky_cookie_steers_requests_to_their_instance() {
    let mut up = Up::start("examples/demo/broken.toml", 2);
    let Some(nginx) = Nginx::start(&up.replicas, Front::Sticky) else { return };
    let core = "login,antiforgery,session,cache";
    let run = common::run("examples/demo/broken.toml", &["--seed", "15", "--scenarios", core]);
    let smoked = smoke("examples/demo/broken.toml", &["--via", &nginx.urls[0], "--instance-cookie", "srv", "--seed", "15", "--scenarios", core]);
    assert_eq!(smoked.code, 1, "{}\n{}", smoked.stdout, smoked.stderr);
    // Steered, every write lands where planned the first time: the cache's divergence shows too.
    assert_eq!(smoked.kinds(), run.kinds());
    for finding in &smoked.report().findings {
        assert_ne!(finding.producer.id, finding.consumer.id, "{finding:?}");
    }
    let history = std::fs::read_to_string(smoked.report_dir.join("history.json")).unwrap();
    assert!(!history.contains("also_reached"), "a write went to an instance it was not planned for");
    assert!(!history.contains("\"srv\""), "the steering cookie reached the users");
    assert_eq!(up.stop(), 0);
}

#[test]
fn the_request_budget_holds_and_ends_the_run_without_findings() {
    let mut up = Up::start("examples/demo/broken.toml", 2);
    let Some(nginx) = Nginx::start(&up.replicas, Front::RoundRobin) else { return };
    // Waiting for nginx to serve sent requests of its own, as many as a busy machine needed.
    let before = nginx.request_times().len();
    let smoked = smoke(
        "examples/demo/broken.toml",
        &["--via", &nginx.urls[0], "--instance-header", "X-Served-By", "--seed", "3", "--scenarios", "login,session", "--max-requests", "40"],
    );
    assert_eq!(smoked.code, 3, "{}\n{}", smoked.stdout, smoked.stderr);
    assert!(smoked.stderr.contains("the request budget of 40 (--max-requests) ran out"), "{}", smoked.stderr);
    assert!(smoked.report.is_none(), "no report rests on refused requests");
    let sent = nginx.request_times().len() - before;
    assert!((1..=40).contains(&sent), "{sent} requests reached nginx");
    assert_eq!(up.stop(), 0);
}

#[test]
fn subscriptions_pass_the_relays_to_instances_that_already_run() {
    for (target, code) in [("examples/demo/broken-realtime.toml", 1), ("examples/demo/fixed-realtime.toml", 0)] {
        let mut up = Up::start(target, 2);
        let mut args = instances(&up);
        args.extend(["--seed", "5", "--scenarios", "broadcast"]);
        let smoked = smoke(target, &args);
        assert_eq!(smoked.code, code, "{target}: {}\n{}", smoked.stdout, smoked.stderr);
        let report = smoked.report();
        let result = report.scenarios.iter().find(|s| s.name == "broadcast").expect("the experiment ran");
        if code == 1 {
            assert_eq!(smoked.kinds(), ["broadcast-not-shared"], "{}", smoked.stdout);
            // Both instances are named: the subscriptions reached the instance they were sent to.
            for finding in &report.findings {
                assert_ne!(finding.producer.id, finding.consumer.id, "{finding:?}");
            }
        } else {
            assert!(result.notes.iter().any(|n| n.contains("not asked again across a restart")), "{result:?}");
        }
        assert_eq!(up.stop(), 0);
    }
}

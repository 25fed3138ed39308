//! What replicheck costs, against baselines measured in the same run:
//!
//! - **Balancer throughput**: wrk sends the same load straight to a demo replica, through
//!   nginx configured as the balancer is (upstream keepalive, one worker per balancer
//!   thread, the same forwarded headers, no access log), and through the balancer, over
//!   http and over TLS, round after round in turn. Prints each case's median and its
//!   ratio to the baselines.
//! - **The floor any proxy pays here**: a TCP relay in the balancer's event-loop model
//!   (one connection to a replica per client connection, bytes copied both ways, no
//!   HTTP at all) shows how far any HTTP balancer could get past nginx on this machine.
//! - **WebSockets**: messages echoed per second by sockets that each keep one message in
//!   flight, straight to a replica, through the balancer and through nginx; then idle
//!   sockets held open through each, a child process holding the clients, with the memory
//!   the balancer's process and nginx's workers grew by.
//! - **Virtual user memory**: a child process keeps N users alive at once, each with its
//!   own cookie jar after signing in over https, at most 64 requests in flight (a run's
//!   default concurrency), and prints its peak resident memory.
//!
//! Nothing is asserted: timings belong here, not in tests.
//!
//! `cargo bench --bench balancer` (needs wrk; nginx for its baseline:
//! `apt-get install wrk nginx`). Env: BENCH_ROUNDS (3), BENCH_SECONDS (5),
//! BENCH_CONNECTIONS (32), BENCH_THREADS (the balancer's threads and nginx's workers;
//! default: the cores), BENCH_USERS (1000,10000; empty skips), BENCH_IDLE (10000 idle
//! WebSockets; 0 skips), BENCH_ONLY (measures only the throughput cases whose label holds
//! it, and the direct one, and skips the WebSockets: for profiling one case).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use replicheck::balancer::policy::RoutingPolicy;
use replicheck::balancer::tls::RunCertificates;
use replicheck::balancer::{Balancer, BalancerConfig, Entrance};
use replicheck::cluster::{Cluster, ClusterSpec};
use replicheck::file::SourceFile;
use replicheck::history::{Outcome, Phase};
use replicheck::progress::Silent;
use replicheck::redact::Secrets;
use replicheck::target::Target;
use replicheck::vu::{Limits, Stepper, VuContext};
use rustls::pki_types::CertificateDer;

const PATH: &str = "/healthz/live";
/// Requests in flight at most in the memory measure: a run's default `--concurrency`.
const IN_FLIGHT: usize = 64;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn demo_target() -> Target {
    Target::from_source(&SourceFile::from_text(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo/fixed.toml"),
        include_str!("../examples/demo/fixed.toml"),
    ))
    .expect("the demo target parses")
}

/// One wrk run's figures.
#[derive(Clone, Copy)]
struct Figures {
    per_second: f64,
    p99: Duration,
}

fn wrk(url: &str, connections: usize, seconds: u64) -> Figures {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk printed no throughput for {url}:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| parse_latency(v.trim()))
        .unwrap_or_default();
    Figures { per_second, p99 }
}

/// wrk's latencies: `812.00us`, `1.52ms`, `2.01s`.
fn parse_latency(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

fn median(mut values: Vec<Figures>) -> Figures {
    values.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    let middle = values[values.len() / 2];
    let mut p99s: Vec<Duration> = values.iter().map(|f| f.p99).collect();
    p99s.sort();
    Figures {
        per_second: middle.per_second,
        p99: p99s[p99s.len() / 2],
    }
}

/// nginx in front of the same replicas, configured as the balancer is. Stopped on drop.
struct Nginx {
    child: Child,
    http: SocketAddr,
    https: SocketAddr,
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its workers (SIGKILL would leave them running), then
    /// SIGKILL if it has not exited within two seconds.
    fn drop(&mut self) {
        let master = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..20 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .or_else(|| which::which("nginx").ok())
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn start_nginx(
    binary: &Path,
    dir: &Path,
    workers: usize,
    replicas: &[SocketAddr],
    certificates: &RunCertificates,
) -> Nginx {
    let (chain, key) = certificates.server_pem();
    std::fs::write(dir.join("balancer.pem"), chain).expect("write the certificate");
    std::fs::write(dir.join("balancer.key"), key).expect("write the key");
    let (http, https) = (free_port(), free_port());
    let servers: String = replicas.iter().map(|r| format!("server {r}; ")).collect();
    let config = format!(
        "worker_processes {workers};\n\
         daemon off;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log;\n\
         worker_rlimit_nofile 65536;\n\
         events {{ worker_connections 32768; }}\n\
         http {{\n\
           access_log off;\n\
           upstream replicas {{ random; {servers} keepalive 64; }}\n\
           server {{\n\
             listen {http};\n\
             listen {https} ssl;\n\
             ssl_certificate {dir}/balancer.pem;\n\
             ssl_certificate_key {dir}/balancer.key;\n\
             location /live/ {{\n\
               proxy_pass http://replicas;\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Upgrade $http_upgrade;\n\
               proxy_set_header Connection \"upgrade\";\n\
               proxy_set_header Host $host;\n\
               proxy_read_timeout 300s;\n\
             }}\n\
             location / {{\n\
               proxy_pass http://replicas;\n\
               proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n\
               proxy_set_header Host $host;\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               proxy_set_header X-Forwarded-Proto https;\n\
               proxy_set_header X-Forwarded-Host $host;\n\
             }}\n\
           }}\n\
         }}\n",
        dir = dir.display()
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config).expect("write nginx.conf");
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let nginx = Nginx { child, http, https };
    for _ in 0..100 {
        if std::net::TcpStream::connect(http).is_ok() && std::net::TcpStream::connect(https).is_ok()
        {
            return nginx;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "nginx did not listen; see {}",
        dir.join("error.log").display()
    );
}

/// The least a proxy can do per request: one thread per balancer thread accepting from
/// one listener, each client connection paired with its own connection to a replica
/// (taken in turn), bytes copied both ways. Its threads end with the benchmark.
fn start_relay(threads: usize, replicas: &[SocketAddr]) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("the relay binds");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("an address");
    let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..threads {
        let listener = listener.try_clone().expect("the listener");
        let (replicas, turn) = (replicas.to_vec(), turn.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("the listener");
                while let Ok((mut client, _)) = listener.accept().await {
                    let replica =
                        replicas[turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % replicas.len()];
                    tokio::spawn(async move {
                        let Ok(mut upstream) = tokio::net::TcpStream::connect(replica).await else {
                            return;
                        };
                        let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    });
                }
            });
        });
    }
    addr
}

/// A baseline's name in a ratio.
fn short(label: &str) -> &str {
    match label {
        "tcp relay (no http)" => "relay",
        "replicheck, http" => "not recording",
        nginx => nginx.split(',').next().unwrap_or(nginx),
    }
}

fn print_row(label: &str, figures: Figures, against: &[(&str, Figures)]) {
    let ratios: Vec<String> = against
        .iter()
        .map(|(name, base)| {
            format!(
                "{:.2}x {name} (p99 {:.2}x)",
                figures.per_second / base.per_second,
                figures.p99.as_secs_f64() / base.p99.as_secs_f64()
            )
        })
        .collect();
    println!(
        "{label:<34} {:>10.0} {:>9.2?}   {}",
        figures.per_second,
        figures.p99,
        ratios.join(", ")
    );
}

async fn throughput(cluster: &Cluster, certificates: &Arc<RunCertificates>, scratch: &Path) {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let seconds: u64 = env_or("BENCH_SECONDS", 5);
    let connections: usize = env_or("BENCH_CONNECTIONS", 32);
    let endpoints = cluster.endpoints();
    let replicas: Vec<SocketAddr> = endpoints.iter().map(|e| e.addr).collect();
    let defaults = BalancerConfig::local("/healthz/ready", Duration::ZERO);
    let local = BalancerConfig {
        policy: RoutingPolicy::Random,
        threads: env_or("BENCH_THREADS", defaults.threads),
        ..defaults
    };
    let threads = local.threads;
    let start = |config: BalancerConfig| Balancer::start(config, &endpoints);
    let plain = start(local.clone()).await.expect("balancer starts");
    let mut recording = start(BalancerConfig {
        record: true,
        ..local.clone()
    })
    .await
    .expect("balancer starts");
    let mut tls = start(BalancerConfig {
        tls: Some(certificates.clone()),
        record: true,
        ..local.clone()
    })
    .await
    .expect("balancer starts");
    let nginx = nginx_binary()
        .map(|binary| start_nginx(&binary, scratch, threads, &replicas, certificates));
    let relay = start_relay(threads, &replicas);

    let mut cases: Vec<(&str, String)> = vec![
        ("direct to r0", format!("http://{}{PATH}", replicas[0])),
        ("replicheck, http", plain.entrance().url(PATH)),
        (
            "replicheck, http, recording",
            recording.entrance().url(PATH),
        ),
        ("replicheck, https, recording", tls.entrance().url(PATH)),
        ("tcp relay (no http)", format!("http://{relay}{PATH}")),
    ];
    if let Some(nginx) = &nginx {
        cases.push(("nginx, http", format!("http://{}{PATH}", nginx.http)));
        cases.push(("nginx, https", format!("https://{}{PATH}", nginx.https)));
    }
    // The direct case stays: every ratio is against it.
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        cases.retain(|(label, _)| *label == "direct to r0" || label.contains(only.as_str()));
    }
    println!(
        "GET {PATH} · wrk -t1 -c{connections} -d{seconds}s · {} demo replicas · balancer {threads} thread(s){} · median of {rounds} round(s)\n",
        replicas.len(),
        if nginx.is_some() {
            format!(", nginx {threads} worker(s)")
        } else {
            ", nginx not installed".into()
        },
    );
    for (_, url) in &cases {
        wrk(url, connections, 1);
    }
    let mut measured: Vec<Vec<Figures>> = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        // Each round starts with another case, so no case always runs on a warmer machine.
        for offset in 0..cases.len() {
            let index = (round + offset) % cases.len();
            measured[index].push(wrk(&cases[index].1, connections, seconds));
            recording.drain_records();
            tls.drain_records();
        }
    }
    let figures: Vec<Figures> = measured.into_iter().map(median).collect();
    let of = |label: &str| {
        cases
            .iter()
            .position(|(l, _)| *l == label)
            .map(|i| figures[i])
    };
    let direct = of("direct to r0").expect("measured");
    println!(
        "{:<34} {:>10} {:>9}   against the baselines",
        "", "requests/s", "p99"
    );
    print_row("direct to r0", direct, &[]);
    // Each row against the baselines that say how far it is from what it should reach.
    for (label, bases) in [
        ("nginx, http", &[][..]),
        ("replicheck, http", &["nginx, http"][..]),
        ("replicheck, http, recording", &["nginx, http", "tcp relay (no http)", "replicheck, http"][..]),
        ("nginx, https", &[][..]),
        ("replicheck, https, recording", &["nginx, https"][..]),
        ("tcp relay (no http)", &["nginx, http"][..]),
    ] {
        let Some(measured) = of(label) else { continue };
        let mut against = vec![("direct", direct)];
        against.extend(bases.iter().filter_map(|base| Some((short(base), of(base)?))));
        print_row(label, measured, &against);
    }
    println!();
}

/// The child's side of the memory measure: `users` users of the login scenario, all
/// alive at once, each signing in through the balancer with its own cookie jar.
fn users_child(users: u32, balancer: SocketAddr, authority: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let target = demo_target();
        let login = replicheck::scenario::builtin()
            .into_iter()
            .find(|f| f.name() == "login")
            .and_then(|f| f.bind(&target).ok()?.ok())
            .expect("the login scenario binds to the demo");
        let plan = replicheck::plan::schedule(
            7,
            2,
            RoutingPolicy::Random,
            std::slice::from_ref(&login),
            users,
        );
        let entrance = Entrance {
            addr: balancer,
            authority: Some(CertificateDer::from(
                std::fs::read(authority).expect("the authority file"),
            )),
        };
        let ctx = Arc::new(VuContext::new(
            entrance,
            target.balancer.client_address,
            &[login],
            7,
            tokio::time::Instant::now(),
            Limits::from(target.limits),
            Secrets::default(),
        ));
        let before = resident_kib("VmRSS");
        let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let done = Arc::new(tokio::sync::Barrier::new(plan.vus.len()));
        let mut tasks = tokio::task::JoinSet::new();
        for plan in plan.vus {
            let (ctx, permits, done) = (ctx.clone(), permits.clone(), done.clone());
            tasks.spawn(async move {
                let steps = plan.routes.len();
                let mut user = Stepper::new(&ctx, &plan, Phase::Main);
                for _ in 0..steps {
                    let _permit = permits.acquire().await;
                    user.step().await;
                }
                // Every user keeps its jar until all have signed in.
                done.wait().await;
                let (record, _) = user.finish();
                record.steps.len() == steps
                    && record
                        .steps
                        .iter()
                        .all(|s| matches!(s.outcome, Outcome::Passed))
            });
        }
        let mut passed = 0;
        while let Some(joined) = tasks.join_next().await {
            passed += usize::from(joined.unwrap_or(false));
        }
        println!("{before} {} {passed}", resident_kib("VmHWM"));
    });
}

fn resident_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn memory(cluster: &Cluster, certificates: &Arc<RunCertificates>, scratch: &Path) {
    let counts: Vec<u32> = std::env::var("BENCH_USERS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    if counts.is_empty() {
        return;
    }
    let balancer = Balancer::start(
        BalancerConfig {
            tls: Some(certificates.clone()),
            ..BalancerConfig::local("/healthz/ready", Duration::ZERO)
        },
        &cluster.endpoints(),
    )
    .await
    .expect("balancer starts");
    let authority = scratch.join("authority.der");
    std::fs::write(&authority, certificates.authority().as_ref()).expect("write the authority");
    println!(
        "virtual users alive at once, each signed in over https with its own cookie jar, {IN_FLIGHT} requests in flight at most\n"
    );
    println!(
        "{:>8} {:>14} {:>16} {:>10} {:>8}",
        "users", "peak RSS", "before users", "per user", "signed in"
    );
    for users in counts {
        let output = Command::new(std::env::current_exe().expect("own path"))
            .env("REPLICHECK_BENCH_USERS", users.to_string())
            .env("REPLICHECK_BENCH_BALANCER", balancer.addr().to_string())
            .env("REPLICHECK_BENCH_AUTHORITY", &authority)
            .output()
            .expect("the users' process runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let figures: Vec<u64> = text
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let [before, peak, passed] = figures[..] else {
            println!(
                "{users:>8} the users' process failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            continue;
        };
        println!(
            "{users:>8} {:>11.1} MB {:>13.1} MB {:>7.1} KB {passed:>9}",
            peak as f64 / 1024.0,
            before as f64 / 1024.0,
            peak.saturating_sub(before) as f64 / f64::from(users)
        );
    }
    println!();
}

/// The sockets of the WebSocket measures.
type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn ws_connect(addr: SocketAddr) -> Option<Socket> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let (socket, _) = tokio_tungstenite::client_async(format!("ws://{addr}/live/echo"), tcp).await.ok()?;
    Some(socket)
}

/// Messages per second echoed by `connections` sockets to `addr`, each with one in flight.
async fn echoes_per_second(addr: SocketAddr, connections: usize, seconds: u64) -> f64 {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                let Some(mut socket) = ws_connect(addr).await else { return 0u64 };
                let mut echoed = 0;
                while tokio::time::Instant::now() < until {
                    if socket.send(Message::text("ping")).await.is_err() {
                        break;
                    }
                    match socket.next().await {
                        Some(Ok(Message::Text(_))) => echoed += 1,
                        _ => break,
                    }
                }
                let _ = socket.close(None).await;
                echoed
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap_or(0);
    }
    total as f64 / seconds as f64
}

/// Lets this process (and the children it starts) hold as many sockets as it may.
fn raise_open_files() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let wanted = 65536;
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        return wanted;
    }
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    hard
}

/// The child's side of the idle measure: `count` sockets opened to `addr` and held until
/// its input closes; prints how many opened.
fn idle_child(count: usize, addr: SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let mut sockets = Vec::with_capacity(count);
        for batch in (0..count).collect::<Vec<_>>().chunks(256) {
            let opened = futures_util::future::join_all(batch.iter().map(|_| ws_connect(addr))).await;
            sockets.extend(opened.into_iter().flatten());
        }
        println!("{}", sockets.len());
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
        drop(sockets);
    });
}

/// Resident memory of `pid` (or of its children, for nginx's workers), in KiB.
fn rss_kib(pid: u32, children: bool) -> u64 {
    let read = |pid: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
            .unwrap_or(0)
    };
    if !children {
        return read(&pid.to_string());
    }
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(read)
        .sum()
}

/// Holds `count` idle sockets to `addr` from a child process; returns how many opened and
/// how much `measured()` grew meanwhile.
fn held_idle(count: usize, addr: SocketAddr, measured: impl Fn() -> u64) -> (usize, u64) {
    let before = measured();
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env("REPLICHECK_BENCH_IDLE", count.to_string())
        .env("REPLICHECK_BENCH_WS", addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the sockets' process runs");
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line);
    std::thread::sleep(Duration::from_millis(500));
    let grown = measured().saturating_sub(before);
    drop(child.stdin.take());
    let _ = child.wait();
    (line.trim().parse().unwrap_or(0), grown)
}

async fn websockets(cluster: &Cluster, scratch: &Path) {
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let seconds: u64 = env_or("BENCH_SECONDS", 5);
    let connections: usize = env_or("BENCH_CONNECTIONS", 32);
    let idle: usize = env_or("BENCH_IDLE", 10_000);
    let endpoints = cluster.endpoints();
    let replicas: Vec<SocketAddr> = endpoints.iter().map(|e| e.addr).collect();
    let defaults = BalancerConfig::local("/healthz/ready", Duration::ZERO);
    let config = BalancerConfig { policy: RoutingPolicy::Random, threads: env_or("BENCH_THREADS", defaults.threads), record: true, ..defaults };
    let threads = config.threads;
    let balancer = Balancer::start(config, &endpoints).await.expect("balancer starts");
    let dir = scratch.join("websockets");
    std::fs::create_dir_all(&dir).expect("a directory for nginx");
    let certificates = RunCertificates::generate(&["127.0.0.1".parse().expect("an address")]).expect("certificates");
    let nginx = nginx_binary().map(|binary| start_nginx(&binary, &dir, threads, &replicas, &certificates));
    let mut cases = vec![("direct to r0", replicas[0]), ("replicheck, http, recording", balancer.addr())];
    if let Some(nginx) = &nginx {
        cases.push(("nginx, http", nginx.http));
    }
    println!("WebSocket echo (/live/echo) · {connections} sockets, one message in flight each · {seconds}s · median of {rounds} round(s)\n");
    let mut measured: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        for offset in 0..cases.len() {
            let index = (round + offset) % cases.len();
            measured[index].push(echoes_per_second(cases[index].1, connections, seconds).await);
        }
    }
    let medians: Vec<f64> = measured
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let of = |label: &str| cases.iter().position(|(l, _)| *l == label).map(|i| medians[i]);
    println!("{:<34} {:>10}   against the baselines", "", "messages/s");
    for (index, (label, _)) in cases.iter().enumerate() {
        let mut against = Vec::new();
        if index > 0 {
            against.push(format!("{:.2}x direct", medians[index] / medians[0]));
        }
        if let (true, Some(nginx)) = (label.starts_with("replicheck"), of("nginx, http")) {
            against.push(format!("{:.2}x nginx", medians[index] / nginx));
        }
        println!("{label:<34} {:>10.0}   {}", medians[index], against.join(", "));
    }
    println!();
    if idle == 0 {
        return;
    }
    let allowed = raise_open_files() as usize;
    // Each socket through a proxy takes two descriptors there, and the process has others.
    let fits = allowed.saturating_sub(500) / 2;
    let limited = if idle > fits { format!(" (not {idle}: this process may open {allowed} files, two per socket)") } else { String::new() };
    let idle = idle.min(fits);
    println!("{idle} idle WebSockets held at once, from another process{limited}\n");
    println!("{:<34} {:>8} {:>12} {:>12}", "", "opened", "memory grew", "per socket");
    let own = std::process::id();
    let mut rows = vec![("replicheck (its process)", balancer.addr(), own, false)];
    if let Some(nginx) = &nginx {
        rows.push(("nginx (its workers)", nginx.http, nginx.child.id(), true));
    }
    for (label, addr, pid, children) in rows {
        let (opened, grown) = held_idle(idle, addr, || rss_kib(pid, children));
        println!("{label:<34} {opened:>8} {:>9.1} MB {:>9.2} KB", grown as f64 / 1024.0, grown as f64 / opened.max(1) as f64);
    }
    println!();
}

fn main() {
    if let (Ok(count), Ok(addr)) = (std::env::var("REPLICHECK_BENCH_IDLE"), std::env::var("REPLICHECK_BENCH_WS")) {
        raise_open_files();
        idle_child(count.parse().expect("a count"), addr.parse().expect("an address"));
        return;
    }
    if let Ok(users) = std::env::var("REPLICHECK_BENCH_USERS") {
        let balancer = std::env::var("REPLICHECK_BENCH_BALANCER").expect("balancer address");
        let authority = std::env::var("REPLICHECK_BENCH_AUTHORITY").expect("authority file");
        users_child(
            users.parse().expect("a count"),
            balancer.parse().expect("an address"),
            Path::new(&authority),
        );
        return;
    }
    if which::which("wrk").is_err() {
        eprintln!(
            "the benchmark needs wrk (and nginx for its baseline): apt-get install wrk nginx"
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let scratch = tempfile::tempdir().expect("temp dir");
        let spec = ClusterSpec::new(Arc::new(demo_target()), format!("bench-{}", std::process::id()), scratch.path())
            .replicheck(env!("CARGO_BIN_EXE_replicheck"));
        let cluster = Cluster::start(spec, &Silent)
            .await
            .expect("the demo replicas start");
        let certificates = Arc::new(
            RunCertificates::generate(&["127.0.0.1".parse().expect("an address")])
                .expect("certificates"),
        );
        throughput(&cluster, &certificates, scratch.path()).await;
        if std::env::var("BENCH_ONLY").is_err() {
            websockets(&cluster, scratch.path()).await;
        }
        memory(&cluster, &certificates, scratch.path()).await;
        let _ = std::io::stdout().flush();
        cluster.shutdown().await;
    });
}

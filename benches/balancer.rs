//! What the balancer costs on the hot path: the same load sent straight to one demo
//! replica, then through replicheck's balancer, in the same run. Prints throughput and
//! latency of each and their ratio; nothing is asserted (timings belong here, not in tests).
//!
//! `cargo bench --bench balancer` (env: BENCH_REQUESTS, BENCH_CONCURRENCY)

use std::sync::Arc;
use std::time::{Duration, Instant};

use replicheck::balancer::{Balancer, BalancerConfig, ROUTE_HEADER};
use replicheck::cluster::{BackendKind, Cluster, ClusterSpec};
use replicheck::file::SourceFile;
use replicheck::progress::Silent;
use replicheck::target::Target;

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(client: &reqwest::Client, url: &str, body: Option<&'static [u8]>, requests: usize, concurrency: usize) -> Figures {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(requests / concurrency);
            for _ in 0..requests / concurrency {
                let sent = Instant::now();
                let request = match body {
                    Some(body) => client.put(&url).body(body),
                    None => client.get(&url),
                };
                let response = request.header(ROUTE_HEADER, "r0").send().await.expect("request");
                assert!(response.status().is_success(), "{}", response.status());
                response.bytes().await.expect("body");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("load task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Figures {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let requests = env_usize("BENCH_REQUESTS", 20_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 32);
    let target = Target::from_source(&SourceFile::from_text(
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo/broken.toml"),
        include_str!("../examples/demo/broken.toml"),
    ))
    .expect("demo target");
    let logs = tempfile::tempdir().expect("temp dir");
    let spec = ClusterSpec {
        target: Arc::new(target),
        replicas: 1,
        run_id: format!("bench-{}", std::process::id()),
        logs_dir: logs.path().to_owned(),
        self_exe: env!("CARGO_BIN_EXE_replicheck").into(),
        backend: BackendKind::Process,
        external: None,
    };
    let cluster = Cluster::start(spec, &Silent).await.expect("replica starts");
    let replica = cluster.endpoints()[0].addr;
    let balancer = Balancer::start(BalancerConfig::local("/healthz/ready", Duration::ZERO), &cluster.endpoints())
        .await
        .expect("balancer starts");
    let client = replicheck::client::builder().pool_max_idle_per_host(concurrency).build().expect("client");
    static MIB: [u8; 1 << 20] = [b'x'; 1 << 20];

    println!("{requests} requests, {concurrency} at a time, one demo replica\n");
    println!("{:<44} {:>12} {:>10} {:>10}", "", "requests/s", "p50", "p99");
    let cases: [(&str, &str, Option<&'static [u8]>, usize); 2] =
        [("GET /healthz/live", "/healthz/live", None, requests), ("PUT 1 MiB to /cache/bench", "/cache/bench", Some(&MIB), requests / 20)];
    for (label, path, body, count) in cases {
        // Warm both paths' connection pools first.
        load(&client, &format!("http://{replica}{path}"), body, concurrency * 4, concurrency).await;
        load(&client, &format!("http://{}{path}", balancer.addr()), body, concurrency * 4, concurrency).await;
        let direct = load(&client, &format!("http://{replica}{path}"), body, count, concurrency).await;
        let proxied = load(&client, &format!("http://{}{path}", balancer.addr()), body, count, concurrency).await;
        for (how, figures) in [("direct", &direct), ("through the balancer", &proxied)] {
            println!(
                "{:<44} {:>12.0} {:>10.2?} {:>10.2?}",
                format!("{label}, {how}"),
                figures.per_second,
                figures.p50,
                figures.p99
            );
        }
        println!(
            "{:<44} {:>11.2}x {:>9.2}x {:>9.2}x\n",
            "balancer / direct",
            proxied.per_second / direct.per_second,
            proxied.p50.as_secs_f64() / direct.p50.as_secs_f64(),
            proxied.p99.as_secs_f64() / direct.p99.as_secs_f64()
        );
    }
    drop(balancer);
    cluster.shutdown().await;
}

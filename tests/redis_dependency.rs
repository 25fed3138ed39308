//! The Redis dependency: a real redis-server per run, on a free port, stopped at the end,
//! and a clear error when it is not installed.

mod common;

use replicheck::cluster::dependency::{Redis, ping};
use replicheck::target::Persistence;

fn addr_of(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("redis://").trim_end_matches("/0").parse().expect("an address")
}

#[tokio::test]
async fn redis_starts_on_a_free_port_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let run_id = common::tag("redis");
    let mut redis = Redis::start(&dir.path().join("data"), dir.path(), Persistence::None, &run_id).await.unwrap();
    let addr = addr_of(&redis.url());
    assert!(ping(addr).await);
    redis.stop().await;
    assert!(!ping(addr).await);
    assert!(std::fs::read_to_string(dir.path().join("redis.log")).unwrap().contains("Ready to accept connections"));
}

#[test]
fn a_missing_redis_server_is_a_clear_error_with_the_way_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let tag = common::tag("no-redis");
    let report = dir.path().join("report");
    let output = common::command(&tag, &["run", "examples/demo/fixed-redis.toml", "--report-dir", report.to_str().unwrap()])
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("redis-server is not installed"), "{stderr}");
    assert!(stderr.contains("apt-get install redis-server"), "{stderr}");
    common::assert_no_leftovers(&tag);
}

/// SET then GET over raw RESP, so the test needs no Redis client.
async fn redis_command(addr: std::net::SocketAddr, command: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("*{}\r\n", command.len());
    for part in command {
        request.push_str(&format!("${}\r\n{part}\r\n", part.len()));
    }
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = vec![0u8; 256];
    let n = stream.read(&mut reply).await.unwrap();
    String::from_utf8_lossy(&reply[..n]).into_owned()
}

#[tokio::test]
async fn redis_restarts_on_the_same_port_and_keeps_data_only_with_persistence() {
    for (persistence, survives) in [(Persistence::Aof, true), (Persistence::None, false)] {
        let dir = tempfile::tempdir().unwrap();
        let run_id = common::tag("redis-restart");
        let mut redis = Redis::start(&dir.path().join("data"), dir.path(), persistence, &run_id).await.unwrap();
        let addr = addr_of(&redis.url());
        assert_eq!(redis_command(addr, &["SET", "session:1", "alice"]).await, "+OK\r\n");
        redis.stop().await;
        assert!(!redis.is_running());
        redis.start_again().await.unwrap();
        assert_eq!(addr_of(&redis.url()), addr);
        let value = redis_command(addr, &["GET", "session:1"]).await;
        assert_eq!(value.contains("alice"), survives, "{persistence:?}: {value:?}");
        assert!(dir.path().join("redis#2.log").exists());
        redis.stop().await;
    }
}

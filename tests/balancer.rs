//! The balancer in front of real demo replicas: planned routes, policies, forwarded
//! headers, readiness, upstream failures, streaming and the request record.

mod common;

use std::sync::Arc;
use std::time::Duration;

use replicheck::balancer::policy::RoutingPolicy;
use replicheck::balancer::tls::RunCertificates;
use replicheck::balancer::{Balancer, BalancerConfig, ERROR_HEADER, ROUTE_HEADER, SERVED_BY_HEADER};
use replicheck::cluster::Endpoint;
use replicheck::cluster::replica::{Incarnation, ReplicaId};
use replicheck::cluster::{Cluster, ClusterSpec};
use replicheck::file::SourceFile;
use replicheck::progress::Silent;
use replicheck::step::Template;
use replicheck::target::Target;

struct Fixture {
    cluster: Cluster,
    balancer: Balancer,
    http: reqwest::Client,
    tag: String,
    _logs: tempfile::TempDir,
}

async fn fixture(name: &str, policy: RoutingPolicy, probe_interval: Duration) -> Fixture {
    let config = BalancerConfig {
        policy,
        record: true,
        ..BalancerConfig::local("/healthz/ready", probe_interval)
    };
    fixture_with(name, config).await
}

async fn fixture_with(name: &str, config: BalancerConfig) -> Fixture {
    let tag = common::tag(name);
    let mut target = Target::from_source(&SourceFile::from_text(
        common::root().join("examples/demo/fixed.toml"),
        include_str!("../examples/demo/fixed.toml"),
    ))
    .unwrap();
    target.start.env.insert(common::TAG_VAR.into(), Template::literal(&tag));
    let logs = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(Arc::new(target), common::tag("balancer"), logs.path().to_owned()).replicheck(common::bin());
    let cluster = Cluster::start(spec, &Silent).await.unwrap();
    let balancer = Balancer::start(config, &cluster.endpoints()).await.unwrap();
    let http = replicheck::client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    Fixture {
        cluster,
        balancer,
        http,
        tag,
        _logs: logs,
    }
}

/// A balancer that terminates TLS with certificates made for the run, as a run's does.
async fn tls_fixture(name: &str) -> Fixture {
    let certificates = RunCertificates::generate(&["127.0.0.1".parse().unwrap()]).unwrap();
    let config = BalancerConfig {
        tls: Some(Arc::new(certificates)),
        ..BalancerConfig::local("/healthz/ready", Duration::ZERO)
    };
    fixture_with(name, config).await
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.balancer.addr())
    }

    async fn whoami(&self, route: Option<&str>) -> (String, serde_json::Value) {
        let mut request = self.http.get(self.url("/whoami"));
        if let Some(route) = route {
            request = request.header(ROUTE_HEADER, route);
        }
        let response = request.send().await.unwrap();
        let served_by = response.headers()[SERVED_BY_HEADER].to_str().unwrap().to_owned();
        (served_by, serde_json::from_str(&response.text().await.unwrap()).unwrap())
    }

    async fn finish(self) {
        drop(self.balancer);
        self.cluster.shutdown().await;
        common::assert_no_leftovers(&self.tag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_requests_reach_their_replica_with_forwarded_headers() {
    let f = fixture("planned", RoutingPolicy::RoundRobin, Duration::from_millis(200)).await;
    for route in ["r1", "r0", "r1", "r1"] {
        let (served_by, whoami) = f.whoami(Some(route)).await;
        assert_eq!(served_by, route);
        assert_eq!(whoami["replica"], route);
        // What a TLS-terminating proxy tells the app: the client's scheme, address and host.
        assert_eq!(whoami["scheme"], "https");
        assert_eq!(whoami["client_ip"], "127.0.0.1");
        assert_eq!(whoami["host"], f.balancer.addr().to_string());
    }
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ends_at_the_balancer_with_the_runs_certificate_and_only_its_authority_is_trusted() {
    let f = tls_fixture("tls").await;
    let entrance = f.balancer.entrance();
    let url = entrance.url("/whoami");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusting = entrance.client(replicheck::client::builder()).build().unwrap();
    for route in ["r0", "r1"] {
        let response = trusting.get(&url).header(ROUTE_HEADER, route).send().await.unwrap();
        assert_eq!(response.headers()[SERVED_BY_HEADER], route);
        let whoami: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        // The replica gets plain http from the balancer, and the scheme the client used.
        assert_eq!(whoami["replica"], route);
        assert_eq!(whoami["scheme"], "https");
    }

    // A client that trusts the usual authorities does not trust the run's certificate.
    let ordinary = replicheck::client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let refused = ordinary.get(&url).send().await.unwrap_err();
    assert!(replicheck::errors::chain(&refused).to_lowercase().contains("certificate"), "{refused:?}");
    // Nor does the balancer speak plain http on its https port.
    assert!(f.http.get(format!("http://{}/whoami", f.balancer.addr())).send().await.is_err());
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplanned_requests_follow_the_policy_and_every_request_is_recorded() {
    let mut f = fixture("policy", RoutingPolicy::RoundRobin, Duration::ZERO).await;
    let mut served = Vec::new();
    for _ in 0..4 {
        served.push(f.whoami(None).await.0);
    }
    assert_eq!(served, ["r0", "r1", "r0", "r1"]);
    let records = f.balancer.drain_records();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r.path == "/whoami" && r.status == Some(200) && r.planned.is_none()));
    assert_eq!(records.iter().filter_map(|r| r.served_by).map(|s| s.to_string()).collect::<Vec<_>>(), served);
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unready_replica_is_skipped_until_it_is_ready_again() {
    let mut f = fixture("unready", RoutingPolicy::RoundRobin, Duration::from_millis(100)).await;
    f.cluster.pause(ReplicaId(0)).await.unwrap();
    // A paused replica stops answering its readiness probe.
    let skipped = common::wait_until(Duration::from_secs(10), || f.balancer.upstreams().ready_ids() == [ReplicaId(1)]);
    assert!(skipped, "r0 still counted ready: {:?}", f.balancer.upstreams().ready_ids());
    let (served_by, _) = f.whoami(Some("r0")).await;
    assert_eq!(served_by, "r1", "a request planned for an unready replica goes to a ready one");
    f.cluster.resume(ReplicaId(0)).await.unwrap();
    let back = common::wait_until(Duration::from_secs(10), || f.balancer.upstreams().ready_ids().len() == 2);
    assert!(back);
    assert_eq!(f.whoami(Some("r0")).await.0, "r0");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_gets_a_marked_502_and_no_replica_a_marked_503() {
    // No probes: the balancer keeps routing to the killed replica, as it would before its
    // readiness probe notices.
    let mut f = fixture("dead", RoutingPolicy::RoundRobin, Duration::ZERO).await;
    f.cluster.kill(ReplicaId(1)).await.unwrap();
    let response = f.http.get(f.url("/whoami")).header(ROUTE_HEADER, "r1").send().await.unwrap();
    assert_eq!(response.status(), 502);
    let reason = response.headers()[ERROR_HEADER].to_str().unwrap().to_owned();
    assert!(reason.starts_with("r1 at 127.0.0.1:") && reason.contains(" refused the connection ("), "{reason}");
    for upstream in f.balancer.upstreams().snapshot().iter() {
        upstream.set_ready(false);
    }
    let response = f.http.get(f.url("/whoami")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[ERROR_HEADER], "no ready replica");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_both_ways() {
    let f = fixture("stream", RoutingPolicy::RoundRobin, Duration::ZERO).await;
    let body: String = (0..3 * 1024 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let put = f.http.put(f.url("/cache/big")).header(ROUTE_HEADER, "r0").body(body.clone()).send().await.unwrap();
    assert_eq!(put.status(), 204);
    let got = f.http.get(f.url("/cache/big")).header(ROUTE_HEADER, "r1").send().await.unwrap();
    assert_eq!(got.headers()[SERVED_BY_HEADER], "r1");
    assert!(got.text().await.unwrap() == body, "the body came back changed");
    f.finish().await;
}

/// A balancer that drains a replica before it stops waits for what it relays to end: a
/// response is in flight until its body has passed whole, not once its headers have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_is_in_flight_until_its_body_has_passed() {
    let f = fixture("in-flight", RoutingPolicy::RoundRobin, Duration::ZERO).await;
    let body: String = (0..8 * 1024 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let put = f.http.put(f.url("/cache/big")).header(ROUTE_HEADER, "r0").body(body.clone()).send().await.unwrap();
    assert_eq!(put.status(), 204);
    let r0 = f.cluster.endpoints()[0].replica;
    let in_flight = || f.balancer.upstreams().incarnation(r0).map(|u| u.in_flight());
    let got = f.http.get(f.url("/cache/big")).header(ROUTE_HEADER, "r0").send().await.unwrap();
    assert_eq!(got.status(), 200);
    // The headers are here; the body waits for the client to read it.
    assert_eq!(in_flight(), Some(1));
    assert_eq!(got.text().await.unwrap().len(), body.len());
    assert!(common::wait_until(Duration::from_secs(2), || in_flight() == Some(0)), "{:?}", in_flight());
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_silent_past_the_timeout_is_named_even_when_the_request_was_rerouted_to_it() {
    let config = BalancerConfig {
        answer_within: Some(Duration::from_secs(1)),
        ..BalancerConfig::local("/healthz/ready", Duration::ZERO)
    };
    let f = fixture_with("silent", config).await;
    // r0 is deregistered: what was planned for it goes to r1, which takes 3 s to answer.
    let r0 = f.cluster.endpoint(ReplicaId(0)).unwrap();
    let r1 = f.cluster.endpoint(ReplicaId(1)).unwrap();
    f.balancer.upstreams().remove(r0.replica);
    let response = f.http.get(f.url("/slow?ms=3000")).header(ROUTE_HEADER, "r0").send().await.unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()[SERVED_BY_HEADER], "r1");
    let reason = response.headers()[ERROR_HEADER].to_str().unwrap().to_owned();
    assert_eq!(reason, format!("r1 at {} gave no answer within 1s", r1.addr));
    f.finish().await;
}

/// A WebSocket to `path` through the balancer, routed to `route`, over `stream` (plain TCP
/// or the balancer's TLS); the replica that took it.
async fn websocket<S>(stream: S, url: &str, route: &str) -> (tokio_tungstenite::WebSocketStream<S>, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(ROUTE_HEADER, route.parse().unwrap());
    let (socket, response) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    (socket, response.headers()[SERVED_BY_HEADER].to_str().unwrap().to_owned())
}

/// Sends three messages and reads their echoes: each names the replica that holds the socket.
async fn echoes<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> Vec<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut got = Vec::new();
    for n in 0..3 {
        socket.send(Message::text(format!("hello {n}"))).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
        got.push(reply.into_text().unwrap().to_string());
    }
    got
}

/// A WebSocket stays with the replica its upgrade was routed to, as an L7 balancer's does,
/// and ends when that replica stops: the client sees it close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_tunnelled_to_the_replica_it_was_routed_to_and_ends_when_that_replica_stops() {
    use futures_util::StreamExt;
    let mut f = fixture("websocket", RoutingPolicy::RoundRobin, Duration::ZERO).await;
    let url = format!("ws://{}/live/echo", f.balancer.addr());
    for route in ["r0", "r1"] {
        let stream = tokio::net::TcpStream::connect(f.balancer.addr()).await.unwrap();
        let (mut socket, served_by) = websocket(stream, &url, route).await;
        assert_eq!(served_by, route);
        assert_eq!(echoes(&mut socket).await, [0, 1, 2].map(|n| format!("{route}: hello {n}")));
    }
    let stream = tokio::net::TcpStream::connect(f.balancer.addr()).await.unwrap();
    let (mut socket, _) = websocket(stream, &url, "r1").await;
    f.cluster.kill(ReplicaId(1)).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("the tunnel ended");
    assert!(!matches!(ended, Some(Ok(ref message)) if message.is_text()), "{ended:?}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes_the_balancers_tls() {
    let f = tls_fixture("websocket-tls").await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(f.balancer.entrance().authority.clone().unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(f.balancer.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.unwrap();
    let (mut socket, served_by) = websocket(tls, &format!("wss://{}/live/echo", f.balancer.addr()), "r0").await;
    assert_eq!(served_by, "r0");
    assert_eq!(echoes(&mut socket).await, [0, 1, 2].map(|n| format!("r0: hello {n}")));
    drop(socket);
    f.finish().await;
}

/// Server-sent events pass as the replica sends them: the first arrives alone, before the
/// replica has written the next a second later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_pass_one_at_a_time() {
    let f = fixture("events", RoutingPolicy::RoundRobin, Duration::ZERO).await;
    let mut response = f.http.get(f.url("/live/ticks?n=2&every_ms=1000")).header(ROUTE_HEADER, "r1").send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let first = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert_eq!(first, "data: r1 tick 0\n\n");
    let mut rest = String::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(rest, "data: r1 tick 1\n\n");
    f.finish().await;
}

/// Virtual users hold WebSockets and event streams through the balancer's TLS, on the
/// replica the plan names, and record what went each way and how the connection ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_subscribe_through_the_balancer_and_record_what_arrives_and_how_it_ended() {
    use replicheck::vu::subscribe::{Opening, Subscription, Transport};
    let mut f = tls_fixture("subscribe").await;
    let limits = replicheck::vu::Limits { request_timeout: Duration::from_secs(10), max_body: 1 << 20, max_redirects: 10 };
    let entrance = f.balancer.entrance().clone();
    let origin = entrance.url("");
    let ctx = replicheck::vu::VuContext::new(entrance, "127.0.0.1".parse().unwrap(), &[], 1, tokio::time::Instant::now(), limits, Default::default());
    let opening = |transport, path: &str, route: u16| Opening { transport, path: path.into(), route: ReplicaId(route), headers: vec![("Origin".into(), origin.clone())] };

    let mut socket = Subscription::open(&ctx, opening(Transport::WebSocket, "/live/echo", 1)).await.unwrap();
    assert_eq!(socket.served_by().map(|r| r.id), Some(ReplicaId(1)));
    assert!(socket.send("hello"));
    assert_eq!(socket.until("hello", Duration::from_secs(5)).await.as_deref(), Some("r1: hello"));
    f.cluster.kill(ReplicaId(1)).await.unwrap();
    assert_eq!(socket.until("anything", Duration::from_secs(5)).await, None);
    let record = socket.finish();
    let texts: Vec<(bool, &str)> = record.messages.iter().map(|m| (m.sent, m.text.as_str())).collect();
    assert_eq!(texts, [(true, "hello"), (false, "r1: hello")]);
    assert!(record.ended.is_some(), "{record:?}");

    let mut events = Subscription::open(&ctx, opening(Transport::Events, "/live/ticks?n=2&every_ms=300", 0)).await.unwrap();
    assert_eq!(events.until("tick 1", Duration::from_secs(5)).await.as_deref(), Some("r0 tick 1"));
    assert_eq!(events.until("tick 2", Duration::from_secs(5)).await, None);
    let record = events.finish();
    assert_eq!(record.messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["r0 tick 0", "r0 tick 1"]);
    assert_eq!(record.ended.map(|e| e.how).as_deref(), Some("the stream ended"));

    // A page that is no WebSocket, or no event stream, says what it answered instead.
    let refused = Subscription::open(&ctx, opening(Transport::WebSocket, "/whoami", 0)).await.err().unwrap().to_string();
    assert!(refused.contains("answered 200 OK instead of switching to a WebSocket"), "{refused}");
    let refused = Subscription::open(&ctx, opening(Transport::Events, "/whoami", 0)).await.err().unwrap().to_string();
    assert!(refused.contains("instead of an event stream"), "{refused}");
    // One that never answers is given up in a bounded time.
    let hung = Subscription::open(&ctx, opening(Transport::Events, "/slow?ms=9000", 0)).await.err().unwrap().to_string();
    assert!(hung.contains("/slow?ms=9000: not open within 5s"), "{hung}");

    // A message over the users' cap ends the connection, and says so.
    let small = replicheck::vu::Limits { max_body: 64 << 10, ..limits };
    let ctx = replicheck::vu::VuContext::new(f.balancer.entrance().clone(), "127.0.0.1".parse().unwrap(), &[], 1, tokio::time::Instant::now(), small, Default::default());
    let mut socket = Subscription::open(&ctx, opening(Transport::WebSocket, "/live/echo", 0)).await.unwrap();
    assert!(socket.send(&"x".repeat(64 << 10)));
    assert_eq!(socket.until("anything", Duration::from_secs(5)).await, None);
    let how = socket.finish().ended.map(|e| e.how).unwrap_or_default();
    assert!(how.starts_with("a message over the cap ([limits] max_body)"), "{how}");
    f.finish().await;
}

/// A replica of its own: answers each request with the request line it received and whether
/// a Host came with it. One that `closes` shuts each connection after its first answer,
/// without `Connection: close`, as a server does that closes kept connections the moment
/// it stops; one that does not keeps them until the balancer closes them. Each connection
/// that ended, by either side, is sent on the channel.
async fn own_replica(closes: bool) -> (Endpoint, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, closings) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0; 4096];
                loop {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => {
                                let _ = closed.send(());
                                return;
                            }
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).to_lowercase();
                    head.clear();
                    let line = text.lines().next().unwrap_or_default().to_owned();
                    let body = format!("{line} host={}", text.contains("\r\nhost: "));
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    if stream.write_all(answer.as_bytes()).await.is_err() || closes {
                        drop(stream);
                        let _ = closed.send(());
                        return;
                    }
                }
            });
        }
    });
    (Endpoint { replica: Incarnation::first(ReplicaId(0)), addr }, closings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_closes_each_kept_connection_costs_no_request_and_gets_origin_form_with_a_host() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (endpoint, mut closings) = own_replica(true).await;
    let config = BalancerConfig { threads: 1, ..BalancerConfig::local("/", Duration::ZERO) };
    let balancer = Balancer::start(config, &[endpoint]).await.unwrap();
    let http = replicheck::client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let url = balancer.entrance().url("/again?n=1");
    for _ in 0..200 {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.headers().get(ERROR_HEADER));
        assert_eq!(response.text().await.unwrap(), "get /again?n=1 http/1.1 host=true");
        // Closed before the next request leaves. A connection closed while a request is on
        // its way loses that request: the balancer never sends a written request again,
        // since a replica that had taken it in would then hide a request it cut.
        closings.recv().await.unwrap();
    }
    // An HTTP/1.0 client sends no Host, and a proxy-style one the absolute form.
    for (sent, seen) in [
        ("GET /old HTTP/1.0\r\n\r\n", "get /old http/1.1 host=true"),
        ("GET http://app.example/abs?x=1 HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n", "get /abs?x=1 http/1.1 host=true"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(balancer.addr()).await.unwrap();
        stream.write_all(sent.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.") && answer.contains(" 200 ") && answer.ends_with(seen), "{sent:?} got {answer:?}");
    }
}

/// A kept connection is closed after a second unused: a replica that waits for its open
/// connections before it exits (Node's `server.close()`) is not held up by the balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_kept_unused_for_a_second_is_closed() {
    let (endpoint, mut closings) = own_replica(false).await;
    let config = BalancerConfig { threads: 1, ..BalancerConfig::local("/", Duration::ZERO) };
    let balancer = Balancer::start(config, &[endpoint]).await.unwrap();
    let http = replicheck::client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let started = std::time::Instant::now();
    let response = http.get(balancer.entrance().url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), closings.recv()).await.expect("the kept connection is closed").unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "kept at least a second");
}

//! The run's OTLP/HTTP receiver, and the settings a platform gives each replica to export
//! to it.
//!
//! Each replica is given an endpoint of its own (`OTEL_EXPORTER_OTLP_ENDPOINT=
//! http://HOST:PORT/r1`), so what arrives is attributed by where it was sent, never by
//! what the app says about itself. The receiver keeps, per replica, each export's signal
//! and the resources it named (`service.name`, `service.instance.id`), and a summary of
//! each span; the telemetry inspection reads a window of it (see `check::telemetry`).

pub mod otlp;
pub mod tracecontext;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use indexmap::IndexMap;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::history::{Answer, Question};
use crate::vocab::replica::ReplicaId;
use crate::step::Template;
use crate::target::Target;
use otlp::{Encoding, Named, Signal, SpanSummary};

/// The largest export body read; a batch of a few thousand spans is well under it.
pub const MAX_BODY: usize = 16 << 20;
/// Spans kept per replica; more are counted, not kept.
const MAX_SPANS: usize = 50_000;
/// Refused bodies and paths of stray exports kept; more are not, so that a hostile
/// replica cannot fill the memory.
const MAX_KEPT: usize = 1_000;
/// How long a client may take to send one export.
const READ_WITHIN: Duration = Duration::from_secs(10);

/// The environment a platform that runs an OpenTelemetry collector gives each replica:
/// where to export (over HTTP, often: a short batch delay, so that spans arrive while the
/// run waits), and, unless the target says the app names itself, the service name and the
/// replica's own `service.instance.id`. What the target's own `env` says wins, except the
/// endpoints: they are how exports are attributed. `{otlp_endpoint}` is set per replica.
pub fn platform_env(target: &Target) -> IndexMap<String, Template> {
    let Some(telemetry) = &target.telemetry else { return target.start.env.clone() };
    let mut given: Vec<(String, String)> = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "200"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "2000"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .into();
    let mut resource = None;
    if telemetry.platform_resource {
        given.push(("OTEL_SERVICE_NAME".into(), Template::literal(&telemetry.service_name(target)).raw().to_owned()));
        resource = Some(format!("service.instance.id={}", given_instance_id("{run_id}", "{replica}")));
    }
    let mut env: IndexMap<String, Template> = given.into_iter().map(|(name, value)| (name, template(&value))).collect();
    for (name, value) in &target.start.env {
        match &mut resource {
            // Later entries win in SDKs' parsing: the app's own settings stay.
            Some(resource) if name == "OTEL_RESOURCE_ATTRIBUTES" => *resource = format!("{resource},{}", value.raw()),
            _ => {
                env.insert(name.clone(), value.clone());
            }
        }
    }
    if let Some(resource) = resource {
        env.insert("OTEL_RESOURCE_ATTRIBUTES".into(), template(&resource));
    }
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), template("{otlp_endpoint}"));
    for signal in ["traces", "metrics", "logs"] {
        env.insert(format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.to_uppercase()), template(&format!("{{otlp_endpoint}}/v1/{signal}")));
    }
    env
}

fn template(text: &str) -> Template {
    Template::parse(text).expect("the platform's settings are valid templates")
}

/// The `service.instance.id` the platform gives a replica: the same for its restarts, as
/// a pod's name is for its container's.
pub fn given_instance_id(run_id: &str, replica: impl std::fmt::Display) -> String {
    format!("{run_id}.{replica}")
}

/// The receiver, listening while it lives.
pub struct Receiver {
    exports: Exports,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    /// Listens on a free port of `ip`, where the replicas can reach it. `service_name` is
    /// what the platform names them, if it does.
    pub async fn start(ip: IpAddr, run_id: &str, service_name: Option<String>) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let given = Given {
            run_id: run_id.to_owned(),
            service_name,
            base: format!("http://{addr}"),
        };
        let exports = Exports {
            state: Arc::new(Mutex::new(State::default())),
            given: Arc::new(given),
        };
        let receiving = exports.clone();
        let server = tokio::spawn(crate::server::serve_http1(listener, Some(READ_WITHIN), move |_, request| receive(receiving.clone(), request)));
        Ok(Receiver { exports, server })
    }

    /// The base endpoint of one replica's exports.
    pub fn endpoint(&self, replica: ReplicaId) -> String {
        format!("{}/{replica}", self.exports.given.base)
    }

    pub fn exports(&self) -> Exports {
        self.exports.clone()
    }
}

/// What the platform told the replicas.
#[derive(Debug)]
struct Given {
    run_id: String,
    /// Set when the platform gave `OTEL_SERVICE_NAME` and a `service.instance.id`.
    service_name: Option<String>,
    /// The receiver's base URL as the replicas were given it.
    base: String,
}

async fn receive(exports: Exports, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    // `/r1/v1/traces`; an export to the bare `/v1/traces` names no replica: the app
    // dropped the path of the endpoint it was given, or was given another.
    let routed = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .and_then(|(replica, rest)| Some((replica.parse::<ReplicaId>().ok()?, Signal::of_path(&format!("/{rest}"))?)));
    let Some((replica, signal)) = routed.filter(|_| request.method() == http::Method::POST) else {
        exports.stray(&path);
        return Ok(answer(StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"not a replica's OTLP/HTTP export path")));
    };
    let header = |name: http::header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let encoding = Encoding::of_content_type(header(http::header::CONTENT_TYPE).as_deref());
    let gzipped = header(http::header::CONTENT_ENCODING).is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
    let body = tokio::time::timeout(READ_WITHIN, Limited::new(request.into_body(), MAX_BODY).collect()).await;
    let read = match body {
        Ok(Ok(body)) => otlp::read(signal, encoding, gzipped, &body.to_bytes()),
        Ok(Err(err)) => Err(format!("a body that could not be read: {err}")),
        Err(_) => Err(format!("a body not sent within {}s", READ_WITHIN.as_secs())),
    };
    match read {
        Ok(export) => {
            exports.arrived(replica, signal, export);
            let (content_type, body) = encoding.success();
            Ok(answer(StatusCode::OK, content_type, Bytes::from_static(body)))
        }
        Err(why) => {
            exports.undecodable(replica, signal, &why);
            Ok(answer(StatusCode::BAD_REQUEST, "text/plain", Bytes::from(why)))
        }
    }
}

fn answer(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

/// What has arrived so far, shared by the receiver and whoever reads it.
#[derive(Clone)]
pub struct Exports {
    state: Arc<Mutex<State>>,
    given: Arc<Given>,
}

#[derive(Default)]
struct State {
    replicas: BTreeMap<ReplicaId, Tally>,
    /// Exports to paths that name no replica, by path.
    stray: BTreeMap<String, u32>,
}

#[derive(Default)]
struct Tally {
    arrivals: Vec<Arrival>,
    spans: Vec<(Instant, SpanSummary)>,
    dropped_spans: u64,
    undecodable: Vec<(Instant, String)>,
}

struct Arrival {
    at: Instant,
    signal: Signal,
    resources: Vec<Named>,
    spans: usize,
}

/// A request the telemetry inspection sent with a `traceparent`, to find its spans.
#[derive(Debug, Clone)]
pub struct Probe {
    pub replica: ReplicaId,
    pub trace_id: String,
    /// The page's path, without the query that marks it.
    pub path: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// How far a span may lie outside its request as the run timed it: replicas read the same
/// clock, so only rounding, never another request's span.
const SLACK_MS: f64 = 2.0;

impl Probe {
    /// The probe a traced request's answer stands for, as the inspection recorded it
    /// (None for an answer to any other question); the inspection and the checker both
    /// read probes this way.
    pub fn of(answer: &Answer) -> Option<Probe> {
        (answer.question == Question::TracedRequest).then_some(())?;
        Some(Probe {
            replica: answer.replica.id,
            trace_id: answer.trace_id.clone()?,
            // The page without its query, which carries the marker.
            path: answer.path.split('?').next().unwrap_or(&answer.path).to_owned(),
            start_ms: answer.at_ms,
            end_ms: answer.end_ms?,
        })
    }

    /// Whether a server span of the probe's replica lies within the probe's request, for
    /// the same page when it says which (a readiness probe's span does not count).
    pub fn covers(&self, span: &SpanSeen) -> bool {
        span.server
            && span.path.as_ref().is_none_or(|path| *path == self.path)
            && span.start_ms >= self.start_ms - SLACK_MS
            && span.end_ms <= self.end_ms + SLACK_MS
    }

    /// Whether the span is in the probe's trace, or recorded its marked URL.
    pub fn named_in(&self, span: &SpanSeen) -> bool {
        span.trace_id == self.trace_id || span.marker.as_ref() == Some(&self.trace_id)
    }

    /// Whether the span tells anything about the probe (see `Exports::seen`).
    pub fn told_by(&self, span: &SpanSeen) -> bool {
        self.named_in(span) || self.covers(span)
    }
}

impl Exports {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::locked(&self.state)
    }

    fn arrived(&self, replica: ReplicaId, signal: Signal, export: otlp::Export) {
        let at = Instant::now();
        let mut state = self.state();
        let tally = state.replicas.entry(replica).or_default();
        tally.arrivals.push(Arrival { at, signal, resources: export.resources, spans: export.spans.len() });
        for span in export.spans {
            if tally.spans.len() < MAX_SPANS {
                tally.spans.push((at, span));
            } else {
                tally.dropped_spans += 1;
            }
        }
    }

    fn undecodable(&self, replica: ReplicaId, signal: Signal, why: &str) {
        let mut state = self.state();
        let tally = state.replicas.entry(replica).or_default();
        if tally.undecodable.len() < MAX_KEPT {
            tally.undecodable.push((Instant::now(), format!("{why} (to /v1/{signal:?})").to_lowercase()));
        }
    }

    fn stray(&self, path: &str) {
        let mut state = self.state();
        let path: String = path.chars().take(100).collect();
        if state.stray.len() < MAX_KEPT || state.stray.contains_key(&path) {
            *state.stray.entry(path).or_default() += 1;
        }
    }

    /// What arrived since `since` (the run's start when `None`) from `replicas`, with the
    /// spans that tell about `probes`: those in a probe's trace, those that recorded a
    /// probe's marker, and the server spans of a replica while a probe was at it. Times
    /// are milliseconds since `origin`.
    pub fn seen(&self, since: Option<Instant>, origin: Instant, replicas: &[ReplicaId], probes: &[Probe]) -> Exported {
        let origin_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as f64 - origin.elapsed().as_nanos() as f64;
        let ms = |unix_ns: u64| (unix_ns as f64 - origin_unix_ns) / 1e6;
        let in_window = |at: &Instant| since.is_none_or(|since| *at >= since);
        let state = self.state();
        let mut seen = Exported {
            since_ms: since.map_or(0.0, |since| since.duration_since(origin).as_secs_f64() * 1000.0),
            until_ms: origin.elapsed().as_secs_f64() * 1000.0,
            given_service_name: self.given.service_name.clone(),
            stray: state.stray.iter().map(|(path, count)| StrayExports { path: path.clone(), count: *count }).collect(),
            replicas: Vec::new(),
        };
        for &replica in replicas {
            let mut one = ReplicaSeen {
                replica,
                endpoint: format!("{}/{replica}", self.given.base),
                given_instance_id: self.given.service_name.as_ref().map(|_| given_instance_id(&self.given.run_id, replica)),
                ..ReplicaSeen::default()
            };
            if let Some(tally) = state.replicas.get(&replica) {
                let mut resources: BTreeMap<Named, u32> = BTreeMap::new();
                for arrival in tally.arrivals.iter().filter(|a| in_window(&a.at)) {
                    *match arrival.signal {
                        Signal::Traces => &mut one.traces,
                        Signal::Metrics => &mut one.metrics,
                        Signal::Logs => &mut one.logs,
                    } += 1;
                    one.spans += arrival.spans as u64;
                    for named in &arrival.resources {
                        *resources.entry(named.clone()).or_default() += 1;
                    }
                }
                one.resources = resources.into_iter().map(|(named, exports)| ResourceSeen { named, exports }).collect();
                let undecodable: Vec<_> = tally.undecodable.iter().filter(|(at, _)| in_window(at)).collect();
                one.undecodable = undecodable.len() as u32;
                one.undecodable_why = undecodable.first().map(|(_, why)| why.clone());
                one.spans_not_kept = tally.dropped_spans;
                let mine: Vec<&Probe> = probes.iter().filter(|p| p.replica == replica).collect();
                for (_, span) in tally.spans.iter().filter(|(at, _)| in_window(at)) {
                    let seen = SpanSeen {
                        trace_id: span.trace_id.clone(),
                        parent_span_id: (!span.parent_span_id.is_empty()).then(|| span.parent_span_id.clone()),
                        server: span.server,
                        name: span.name.clone(),
                        start_ms: ms(span.start_unix_ns),
                        end_ms: ms(span.end_unix_ns),
                        marker: span.marker.clone(),
                        path: span.path.clone(),
                    };
                    let tells = probes.iter().any(|p| p.named_in(&seen)) || mine.iter().any(|p| p.covers(&seen));
                    if tells {
                        one.about_probes.push(seen);
                    }
                }
            }
            seen.replicas.push(one);
        }
        seen
    }
}

pub use crate::history::exported::{Exported, ReplicaSeen, ResourceSeen, SpanSeen, StrayExports};

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use prost::Message;

    #[tokio::test]
    async fn exports_are_told_apart_by_the_path_they_came_to_and_what_is_not_otlp_is_counted() {
        let receiver = Receiver::start(IpAddr::from([127, 0, 0, 1]), "run", Some("shop".into())).await.unwrap();
        let origin = Instant::now();
        let client = crate::client::builder().build().unwrap();
        let post = |url: String, body: Vec<u8>| client.post(url).header("content-type", "application/x-protobuf").body(body).send();
        let export = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue { value: Some(any_value::Value::StringValue("shop".into())) }),
                        ..KeyValue::default()
                    }],
                    ..Resource::default()
                }),
                ..ResourceSpans::default()
            }],
        };
        let r1 = receiver.endpoint(ReplicaId(1));
        assert_eq!(post(format!("{r1}/v1/traces"), export.encode_to_vec()).await.unwrap().status(), 200);
        let r0 = receiver.endpoint(ReplicaId(0));
        assert_eq!(post(format!("{r0}/v1/metrics"), b"\xff\xff garbage".to_vec()).await.unwrap().status(), 400);
        assert_eq!(post(format!("{r0}/v1/logs"), vec![0; MAX_BODY + 1]).await.unwrap().status(), 400);
        let base = r0.trim_end_matches("/r0");
        assert_eq!(post(format!("{base}/v1/traces"), export.encode_to_vec()).await.unwrap().status(), 404);

        let seen = receiver.exports().seen(None, origin, &[ReplicaId(0), ReplicaId(1), ReplicaId(2)], &[]);
        let [r0, r1, r2] = &seen.replicas[..] else { panic!("{seen:?}") };
        assert_eq!((r1.traces, r1.exports()), (1, 1));
        assert_eq!(r1.resources[0].named.service_name.as_deref(), Some("shop"));
        assert_eq!(r1.given_instance_id.as_deref(), Some("run.r1"));
        assert_eq!((r0.exports(), r0.undecodable), (0, 2));
        assert!(r0.undecodable_why.as_deref().unwrap().contains("not otlp"), "{r0:?}");
        assert_eq!(r2.exports(), 0);
        assert_eq!(seen.stray.len(), 1);
        assert_eq!((seen.stray[0].path.as_str(), seen.stray[0].count), ("/v1/traces", 1));
        // A later window sees none of it.
        let later = receiver.exports().seen(Some(Instant::now()), origin, &[ReplicaId(1)], &[]);
        assert_eq!(later.replicas[0].exports(), 0);
    }
}

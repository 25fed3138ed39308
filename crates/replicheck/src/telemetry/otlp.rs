//! OTLP/HTTP export bodies (protobuf or JSON, gzipped or not), read into what the receiver
//! keeps: the resources that name the service and the instance, and a summary of each span.

use std::io::Read;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde::{Deserialize, Serialize};

/// The query parameter the telemetry inspection marks its requests with, so that a span
/// that records its URL can be told to be the span of that request.
pub const MARKER: &str = "replicheck-trace";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    /// The signal an OTLP/HTTP path is for (`/v1/traces`).
    pub fn of_path(path: &str) -> Option<Signal> {
        match path {
            "/v1/traces" => Some(Signal::Traces),
            "/v1/metrics" => Some(Signal::Metrics),
            "/v1/logs" => Some(Signal::Logs),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// OTLP/HTTP says protobuf or JSON by `Content-Type`; SDKs send protobuf by default.
    pub fn of_content_type(content_type: Option<&str>) -> Encoding {
        match content_type {
            Some(value) if value.trim_start().starts_with("application/json") => Encoding::Json,
            _ => Encoding::Protobuf,
        }
    }

    /// The body of a successful export's answer: an empty `Export*ServiceResponse`.
    pub fn success(self) -> (&'static str, &'static [u8]) {
        match self {
            Encoding::Protobuf => ("application/x-protobuf", b""),
            Encoding::Json => ("application/json", b"{}"),
        }
    }
}

pub use crate::history::exported::Named;

/// A span, as much of it as the checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanSummary {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a span that started its trace.
    pub parent_span_id: String,
    pub server: bool,
    pub name: String,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// The trace id a marked request carried in its URL, when the span recorded it.
    pub marker: Option<String>,
    /// The request's path, when the span recorded it.
    pub path: Option<String>,
}

/// One export request, read.
#[derive(Debug, Default, PartialEq)]
pub struct Export {
    pub resources: Vec<Named>,
    pub spans: Vec<SpanSummary>,
}

/// Reads one export body of `signal`.
pub fn read(signal: Signal, encoding: Encoding, gzipped: bool, body: &[u8]) -> Result<Export, String> {
    let inflated;
    let body = if gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(super::MAX_BODY as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("a gzipped body that does not inflate: {e}"))?;
        if out.len() > super::MAX_BODY {
            return Err(format!("a gzipped body over {} bytes inflated", super::MAX_BODY));
        }
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    match signal {
        Signal::Traces => {
            let request: ExportTraceServiceRequest = decode(encoding, body)?;
            let mut export = Export::default();
            for resource_spans in request.resource_spans {
                export.resources.push(named(resource_spans.resource.as_ref()));
                for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                    export.spans.push(SpanSummary {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        server: span.kind == SpanKind::Server as i32,
                        marker: marker(&span.attributes),
                        path: path(&span.attributes),
                        name: span.name.chars().take(120).collect(),
                        start_unix_ns: span.start_time_unix_nano,
                        end_unix_ns: span.end_time_unix_nano,
                    });
                }
            }
            Ok(export)
        }
        Signal::Metrics => {
            let request: ExportMetricsServiceRequest = decode(encoding, body)?;
            Ok(Export {
                resources: request.resource_metrics.iter().map(|r| named(r.resource.as_ref())).collect(),
                spans: Vec::new(),
            })
        }
        Signal::Logs => {
            let request: ExportLogsServiceRequest = decode(encoding, body)?;
            Ok(Export {
                resources: request.resource_logs.iter().map(|r| named(r.resource.as_ref())).collect(),
                spans: Vec::new(),
            })
        }
    }
}

fn decode<T: Message + Default + for<'de> Deserialize<'de>>(encoding: Encoding, body: &[u8]) -> Result<T, String> {
    match encoding {
        Encoding::Protobuf => T::decode(body).map_err(|e| format!("a protobuf body that is not OTLP: {e}")),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| format!("a JSON body that is not OTLP: {e}")),
    }
}

fn named(resource: Option<&Resource>) -> Named {
    let attributes = resource.map(|r| r.attributes.as_slice()).unwrap_or_default();
    Named {
        service_name: string_attribute(attributes, "service.name"),
        instance_id: string_attribute(attributes, "service.instance.id"),
    }
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().filter(|kv| kv.key == key).find_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(value) => Some(value.clone()),
        any_value::Value::IntValue(value) => Some(value.to_string()),
        _ => None,
    })
}

/// The trace id after `replicheck-trace=` in any string attribute (`url.query`,
/// `http.target`, `http.url`, ...): instrumentations name the URL's parts differently.
fn marker(attributes: &[KeyValue]) -> Option<String> {
    let needle = format!("{MARKER}=");
    attributes.iter().find_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(value) => {
            let at = value.find(&needle)? + needle.len();
            let id: String = value[at..].chars().take_while(char::is_ascii_hexdigit).take(32).collect();
            (id.len() == 32).then_some(id)
        }
        _ => None,
    })
}

/// The request's path, under the names instrumentations have given it.
fn path(attributes: &[KeyValue]) -> Option<String> {
    let of = |key: &str| string_attribute(attributes, key);
    if let Some(path) = of("url.path") {
        return Some(path);
    }
    if let Some(target) = of("http.target") {
        return target.split('?').next().map(str::to_owned);
    }
    let url = of("url.full").or_else(|| of("http.url"))?;
    url::Url::parse(&url).ok().map(|url| url.path().to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn string(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
            ..KeyValue::default()
        }
    }

    #[test]
    fn protobuf_spans_are_read_with_their_resource_and_the_marker_in_their_url() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string("service.name", "shop"), string("service.instance.id", "shop-0")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![1; 8],
                        kind: SpanKind::Server as i32,
                        name: "GET /".into(),
                        attributes: vec![string("url.query", &format!("{MARKER}={}&x=1", "ab".repeat(16)))],
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let export = read(Signal::Traces, Encoding::Protobuf, false, &request.encode_to_vec()).unwrap();
        assert_eq!(export.resources, vec![Named { service_name: Some("shop".into()), instance_id: Some("shop-0".into()) }]);
        let span = &export.spans[0];
        assert!(span.server);
        assert_eq!(span.trace_id, "ab".repeat(16));
        assert_eq!(span.parent_span_id, "");
        assert_eq!(span.marker.as_deref(), Some("ab".repeat(16).as_str()));
    }

    #[test]
    fn json_as_the_otlp_specification_writes_it_is_read() {
        // Hex ids, camelCase names, enums as numbers, 64-bit integers as strings.
        let body = r#"{"resourceSpans":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"shop"}},
            {"key":"service.instance.id","value":{"stringValue":"pod-7"}}]},
          "scopeSpans":[{"scope":{"name":"x"},"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "parentSpanId":"eee19b7ec3c1b173","name":"GET /","kind":2,
            "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
            "attributes":[{"key":"http.target","value":{"stringValue":"/?replicheck-trace=5b8efff798038103d269b633813fc60c"}}]}]}]}]}"#;
        let export = read(Signal::Traces, Encoding::Json, false, body.as_bytes()).unwrap();
        assert_eq!(export.resources[0].instance_id.as_deref(), Some("pod-7"));
        let span = &export.spans[0];
        assert_eq!(span.parent_span_id, "eee19b7ec3c1b173");
        assert_eq!(span.start_unix_ns, 1_544_712_660_000_000_000);
        assert_eq!(span.marker.as_deref(), Some("5b8efff798038103d269b633813fc60c"));
        assert_eq!(span.path.as_deref(), Some("/"));
    }

    #[test]
    fn gzipped_metrics_name_their_resource_and_garbage_is_refused_with_a_reason() {
        use std::io::Write;
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![opentelemetry_proto::tonic::metrics::v1::ResourceMetrics {
                resource: Some(Resource { attributes: vec![string("service.name", "shop")], ..Resource::default() }),
                ..Default::default()
            }],
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&request.encode_to_vec()).unwrap();
        let export = read(Signal::Metrics, Encoding::Protobuf, true, &gz.finish().unwrap()).unwrap();
        assert_eq!(export.resources[0].service_name.as_deref(), Some("shop"));
        assert_eq!(export.resources[0].instance_id, None);
        let err = read(Signal::Logs, Encoding::Protobuf, false, b"\xff\xff\xff garbage").unwrap_err();
        assert!(err.contains("not OTLP"), "{err}");
        assert!(read(Signal::Traces, Encoding::Protobuf, true, b"not gzip").unwrap_err().contains("inflate"));
    }
}

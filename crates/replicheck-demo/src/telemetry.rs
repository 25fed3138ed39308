//! The demo's OpenTelemetry: a server span per request, exported over OTLP/HTTP by the
//! SDK. Configured, everything comes from the platform's `OTEL_*` environment (endpoint,
//! service name, `service.instance.id`) and each request's span continues its
//! `traceparent`. Misconfigured as apps often are: a service name or an instance id fixed
//! in code, or spans that start traces of their own.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span, SpanKind, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// How the demo exports its spans.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryArgs {
    /// Export a span per request over OTLP/HTTP, where OTEL_EXPORTER_OTLP_ENDPOINT says.
    #[arg(long)]
    pub telemetry: bool,
    /// Misconfiguration: this service name, fixed in code over OTEL_SERVICE_NAME (a target
    /// that gives each replica its own models a name made from the host's).
    #[arg(long)]
    pub telemetry_service_name: Option<String>,
    /// Misconfiguration: this service.instance.id, fixed in code for every replica.
    #[arg(long)]
    pub telemetry_instance_id: Option<String>,
    /// Misconfiguration: start a new trace for every request, ignoring its traceparent.
    #[arg(long)]
    pub telemetry_ignores_traceparent: bool,
}

pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    continues_traces: bool,
}

impl Telemetry {
    /// The SDK set up as `args` say, or `None` when the demo exports nothing.
    pub fn start(args: &TelemetryArgs) -> Result<Option<Arc<Telemetry>>, String> {
        if !args.telemetry {
            return Ok(None);
        }
        // Fails only when a provider was chosen first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The demo exports over plain http to the collector beside it, and its image has no
        // CA store for a default client to load. Built off the async runtime, as blocking
        // clients must be.
        let client = std::thread::spawn(|| reqwest::blocking::Client::builder().tls_certs_only([]).build())
            .join()
            .map_err(|_| "the thread building the OTLP client panicked".to_owned())?
            .map_err(|e| format!("cannot make the OTLP client: {e}"))?;
        // No endpoint here: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .build()
            .map_err(|e| format!("cannot make the OTLP exporter: {e}"))?;
        // The builder starts from the environment: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES.
        let mut resource = Resource::builder();
        if let Some(name) = &args.telemetry_service_name {
            resource = resource.with_service_name(name.clone());
        }
        if let Some(id) = &args.telemetry_instance_id {
            resource = resource.with_attribute(KeyValue::new("service.instance.id", id.clone()));
        }
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
        Ok(Some(Arc::new(Telemetry {
            tracer: provider.tracer("replicheck-demo"),
            provider,
            continues_traces: !args.telemetry_ignores_traceparent,
        })))
    }

    /// Sends what is still buffered; the process is about to exit.
    pub fn flush(&self) {
        let _ = self.provider.shutdown();
    }
}

/// A server span around each request.
pub async fn traced(State(telemetry): State<Arc<Telemetry>>, request: Request, next: Next) -> Response {
    let parent = if telemetry.continues_traces {
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(request.headers()))
    } else {
        Context::new()
    };
    let uri = request.uri();
    let mut attributes = vec![
        KeyValue::new("http.request.method", request.method().to_string()),
        KeyValue::new("url.path", uri.path().to_owned()),
    ];
    if let Some(query) = uri.query() {
        attributes.push(KeyValue::new("url.query", query.to_owned()));
    }
    let mut span = telemetry
        .tracer
        .span_builder(format!("{} {}", request.method(), uri.path()))
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start_with_context(&telemetry.tracer, &parent);
    let response = next.run(request).await;
    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(response.status().as_u16())));
    span.end();
    response
}

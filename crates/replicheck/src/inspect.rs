//! Inspections: questions replicheck asks each replica directly about what it believes.
//!
//! `forwarded-headers` asks the echo endpoint three times per replica: straight from a
//! stranger (the control: the echo reports the connection), through the balancer (does
//! the app believe its proxy's X-Forwarded-*?), and from a stranger forging
//! X-Forwarded-* (does the app believe anyone?). `signing-keys` fetches every replica's
//! key set twice (the control: each replica answers the same each time).
//!
//! `telemetry` sends each replica requests in traces of replicheck's own, through the
//! balancer, then reads what the replicas exported to the run's OTLP receiver: their
//! resources and the spans of those requests (judged in `check::telemetry`).
//!
//! Like experiments, an inspection that shows something runs again.

use std::net::IpAddr;

use cookie_store::CookieStore;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

use crate::balancer::{Entrance, ROUTE_HEADER, SERVED_BY_HEADER};
use crate::vocab::finding::Untested;
use crate::vocab::finding::FindingKind;
use crate::cluster::{BackendKind, Endpoint, Vantage};
use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::history::{Answer, InspectionRun, Phase, Question};
use crate::redact::fingerprint;
use crate::step::CaptureSource;
use crate::target::Target;
use crate::telemetry::tracecontext::{TRACEPARENT, TraceParent};
use crate::telemetry::{Exported, Exports, Probe, otlp};
use crate::vu::capture;
use crate::vu::expect::Response;
use crate::vu::form::Page;

/// What forged headers claim: an address from the documentation range, and https.
pub const FORGED_CLIENT: &str = "203.0.113.7";
pub const FORGED_SCHEME: &str = "https";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum InspectionKind {
    ForwardedHeaders,
    SigningKeys,
    Telemetry,
}

impl InspectionKind {
    pub const ALL: [InspectionKind; 3] = [InspectionKind::ForwardedHeaders, InspectionKind::SigningKeys, InspectionKind::Telemetry];

    pub fn name(self) -> &'static str {
        match self {
            InspectionKind::ForwardedHeaders => "forwarded-headers",
            InspectionKind::SigningKeys => "signing-keys",
            InspectionKind::Telemetry => "telemetry",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn checks(self) -> Vec<FindingKind> {
        match self {
            InspectionKind::ForwardedHeaders => {
                vec![FindingKind::ForwardedProtoIgnored, FindingKind::ForwardedForIgnored, FindingKind::ForwardedHeadersSpoofable]
            }
            InspectionKind::SigningKeys => vec![FindingKind::SigningKeysDivergent],
            InspectionKind::Telemetry => vec![FindingKind::TelemetryUnattributed],
        }
    }

    /// Kinds this inspection looks for that it cannot ask about here, and why.
    pub fn untested(self, target: &Target, vantage: Vantage) -> Vec<Untested> {
        let mut untested = Vec::new();
        let mut add = |kind: FindingKind, reason: &str| untested.push(Untested { kind, reason: reason.into() });
        if self != InspectionKind::ForwardedHeaders {
            return untested;
        }
        let echo = target.echo.as_ref();
        let no_echo = "the target has no [echo] endpoint saying what the app believes";
        if echo.is_none_or(|e| e.client.is_none()) {
            add(FindingKind::ForwardedForIgnored, echo.map_or(no_echo, |_| "the [echo] endpoint does not say which client the app sees"));
        }
        if echo.is_none_or(|e| e.scheme.is_none() && e.client.is_none()) {
            add(FindingKind::ForwardedHeadersSpoofable, no_echo);
        } else if !vantage.tells_strangers_apart() {
            add(
                FindingKind::ForwardedHeadersSpoofable,
                "the replicas see replicheck's every connection come from one address, so a stranger's forged headers cannot be sent",
            );
        }
        if vantage.proxy.is_none() {
            let reason = "the instances do not take replicheck for their proxy (no --known-proxy): what it forwards is rightly ignored";
            untested.retain(|u| u.kind == FindingKind::ForwardedHeadersSpoofable);
            untested.push(Untested { kind: FindingKind::ForwardedProtoIgnored, reason: reason.into() });
            untested.push(Untested { kind: FindingKind::ForwardedForIgnored, reason: reason.into() });
        }
        untested
    }

    pub fn skip_reason(self, target: &Target, backend: BackendKind) -> Option<String> {
        match self {
            InspectionKind::Telemetry if target.telemetry.is_none() => {
                Some("the target declares no [telemetry]: it does not say the app exports OpenTelemetry".into())
            }
            InspectionKind::Telemetry if backend == BackendKind::External => {
                Some("instances that already run were not given replicheck's OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)".into())
            }
            InspectionKind::Telemetry => None,
            // Redirects can show an ignored X-Forwarded-Proto without an echo endpoint.
            InspectionKind::ForwardedHeaders => None,
            InspectionKind::SigningKeys => match &target.token {
                Some(token) if token.jwks.is_some() => None,
                _ => Some("the target publishes no key set ([token] jwks)".into()),
            },
        }
    }
}

/// What an inspection talks to.
pub struct Inspector<'a> {
    pub target: &'a Target,
    pub balancer: Entrance,
    pub endpoints: Vec<Endpoint>,
    /// Where a stranger reaches each replica (`Cluster::stranger_endpoints`).
    pub strangers: Vec<Endpoint>,
    /// How the replicas see the inspector's connections.
    pub vantage: Vantage,
    /// What the replicas exported, when the run receives their telemetry.
    pub telemetry: Option<Exports>,
    pub origin: Instant,
}

pub async fn run(kind: InspectionKind, inspector: &Inspector<'_>, phase: Phase) -> InspectionRun {
    let mut run = InspectionRun {
        inspection: kind.name().to_owned(),
        phase,
        answers: Vec::new(),
        exported: None,
        exported_in_run: None,
        error: None,
    };
    let result = match kind {
        InspectionKind::ForwardedHeaders => forwarded_headers(inspector, &mut run).await,
        InspectionKind::SigningKeys => signing_keys(inspector, &mut run).await,
        InspectionKind::Telemetry => telemetry(inspector, &mut run).await,
    };
    if let Err(err) = result {
        run.error = Some(err);
    }
    run
}

async fn forwarded_headers(inspector: &Inspector<'_>, run: &mut InspectionRun) -> Result<(), String> {
    let Some(echo) = &inspector.target.echo else { return Ok(()) };
    if echo.scheme.is_none() && echo.client.is_none() {
        return Ok(());
    }
    let settings = &inspector.target.balancer;
    let vantage = inspector.vantage;
    // A stranger on this host connects from the untrusted address; one that comes from
    // another network (containers) connects as the host routes it there.
    let from_here = client_from(vantage.local.then_some(settings.untrusted_address))?;
    let from_elsewhere = client_from(None)?;
    let client = inspector
        .balancer
        .client(client_builder(Some(settings.client_address)))
        .build()
        .map_err(|e| format!("cannot make a client on {}: {e}", settings.client_address))?;
    for endpoint in &inspector.endpoints {
        let to = inspector.strangers.iter().find(|s| s.replica == endpoint.replica).map_or(endpoint.addr, |s| s.addr);
        let stranger = if to.ip().is_loopback() { &from_here } else { &from_elsewhere };
        let direct = stranger.get(format!("http://{to}{}", echo.url));
        run.answers.push(ask(inspector, Question::EchoDirect, endpoint.replica, vantage.stranger, &echo.url.0, direct).await);
        // Forged headers from an address the app cannot tell from its proxy are headers
        // from the proxy, which it should believe: nothing to ask.
        if vantage.tells_strangers_apart() {
            let forged = stranger
                .get(format!("http://{to}{}", echo.url))
                .header("x-forwarded-for", FORGED_CLIENT)
                .header("x-forwarded-proto", FORGED_SCHEME)
                .header("x-forwarded-host", "forged.example");
            run.answers.push(ask(inspector, Question::EchoForged, endpoint.replica, vantage.stranger, &echo.url.0, forged).await);
        }
        // An app that does not take replicheck for its proxy rightly ignores what the
        // balancer forwards: nothing to ask.
        if vantage.proxy.is_some() {
            let through = client.get(inspector.balancer.url(&echo.url.0)).header(ROUTE_HEADER, endpoint.replica.id.to_string());
            run.answers.push(ask(inspector, Question::EchoThroughBalancer, endpoint.replica, Some(settings.client_address), &echo.url.0, through).await);
        }
    }
    Ok(())
}

async fn signing_keys(inspector: &Inspector<'_>, run: &mut InspectionRun) -> Result<(), String> {
    let Some(jwks) = inspector.target.token.as_ref().and_then(|t| t.jwks.as_ref()) else { return Ok(()) };
    let vantage = inspector.vantage;
    let client = client_from(vantage.local.then_some(inspector.target.balancer.proxy_address))?;
    for _ in 0..2 {
        for endpoint in &inspector.endpoints {
            let request = client.get(format!("http://{}{}", endpoint.addr, jwks));
            let from = vantage.proxy.or(vantage.stranger);
            run.answers.push(ask(inspector, Question::KeySet, endpoint.replica, from, &jwks.0, request).await);
        }
    }
    Ok(())
}

/// Requests in traces of replicheck's own, sent to each replica through the balancer.
const TRACED_REQUESTS: usize = 3;

/// Sends each replica requests in traces of replicheck's own (the balancer continues each
/// with its span as the parent), each URL marked with its trace id, then reads what the replicas exported until each replica's span of its last
/// request has arrived, or `[telemetry] wait` has passed. A first run reads everything
/// exported since the start; a second only what arrived after it began.
async fn telemetry(inspector: &Inspector<'_>, run: &mut InspectionRun) -> Result<(), String> {
    let Some(settings) = &inspector.target.telemetry else { return Ok(()) };
    let exports = inspector
        .telemetry
        .as_ref()
        .ok_or("the replicas run where replicheck's OTLP receiver cannot be reached (a remote Docker engine), so they were given no endpoint")?;
    let since = (run.phase != Phase::Main).then(Instant::now);
    let client_address = inspector.target.balancer.client_address;
    let client = inspector
        .balancer
        .client(client_builder(Some(client_address)))
        .build()
        .map_err(|e| format!("cannot make a client on {client_address}: {e}"))?;
    let page = settings.page.as_ref().unwrap_or(&inspector.target.chaos.page);
    let mut probes = Vec::new();
    for endpoint in &inspector.endpoints {
        for _ in 0..TRACED_REQUESTS {
            let trace = TraceParent::start();
            let trace_id = trace.trace_hex();
            let separator = if page.0.contains('?') { '&' } else { '?' };
            let path = format!("{}{separator}{}={trace_id}", page.0, otlp::MARKER);
            let request = client
                .get(inspector.balancer.url(&path))
                .header(ROUTE_HEADER, endpoint.replica.id.to_string())
                .header(TRACEPARENT, trace.header());
            let mut answer = ask(inspector, Question::TracedRequest, endpoint.replica, Some(client_address), &path, request).await;
            answer.trace_id = Some(trace_id);
            answer.end_ms = Some(inspector.origin.elapsed().as_secs_f64() * 1000.0);
            probes.extend(Probe::of(&answer));
            run.answers.push(answer);
        }
    }
    let replicas: Vec<ReplicaId> = inspector.endpoints.iter().map(|e| e.replica.id).collect();
    let deadline = crate::clock::deadline(settings.wait);
    loop {
        let seen = exports.seen(since, inspector.origin, &replicas, &probes);
        if Instant::now() >= deadline || last_spans_arrived(&seen, &probes) {
            run.exported = Some(seen);
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Whether every replica's span of its last traced request has arrived: one in its trace,
/// marked by it, or a server span while it was at the replica. Exporters send in order.
fn last_spans_arrived(seen: &Exported, probes: &[Probe]) -> bool {
    seen.replicas.iter().all(|replica| {
        let Some(last) = probes.iter().rfind(|p| p.replica == replica.replica) else { return true };
        replica.about_probes.iter().any(|span| last.told_by(span))
    })
}

/// The scheme the app believes it is served with behind the balancer, when the
/// forwarded-headers inspection asked and every replica answered alike.
pub fn believed_scheme(runs: &[InspectionRun]) -> Option<&str> {
    let mut schemes = runs
        .iter()
        .filter(|run| run.inspection == InspectionKind::ForwardedHeaders.name())
        .flat_map(|run| &run.answers)
        .filter(|answer| answer.question == Question::EchoThroughBalancer)
        .map(|answer| answer.scheme.as_deref());
    let first = schemes.next()??;
    schemes.all(|scheme| scheme == Some(first)).then_some(first)
}

/// A client connecting from `address`, or from wherever the system chooses.
fn client_from(address: Option<IpAddr>) -> Result<reqwest::Client, String> {
    client_builder(address).build().map_err(|e| format!("cannot make a client on {address:?}: {e}"))
}

fn client_builder(address: Option<IpAddr>) -> reqwest::ClientBuilder {
    crate::client::builder()
        .local_address(address)
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
}

/// Sends one question and reads what the answer says.
async fn ask(inspector: &Inspector<'_>, question: Question, replica: Incarnation, from: Option<IpAddr>, path: &str, request: reqwest::RequestBuilder) -> Answer {
    let at_ms = inspector.origin.elapsed().as_secs_f64() * 1000.0;
    let mut answer = Answer {
        question,
        replica,
        from,
        path: path.to_owned(),
        at_ms,
        status: None,
        error: None,
        scheme: None,
        client: None,
        keys: None,
        trace_id: None,
        end_ms: None,
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => {
            answer.error = Some(crate::errors::chain(&err));
            return answer;
        }
    };
    answer.status = Some(response.status().as_u16());
    let headers = response.headers().clone();
    if let Some(served) = headers.get(SERVED_BY_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) {
        answer.replica = served;
    }
    let body = match response.text().await {
        Ok(body) => body,
        Err(err) => {
            answer.error = Some(crate::errors::chain(&err));
            return answer;
        }
    };
    if question == Question::KeySet {
        answer.keys = Some(key_fingerprints(&body));
    } else if let (Some(echo), Question::EchoDirect | Question::EchoThroughBalancer | Question::EchoForged) = (&inspector.target.echo, question) {
        answer.scheme = echo.scheme.as_ref().and_then(|source| read(source, answer.status.unwrap_or(0), &headers, &body));
        answer.client = echo.client.as_ref().and_then(|source| read(source, answer.status.unwrap_or(0), &headers, &body));
    }
    answer
}

fn read(source: &CaptureSource, status: u16, headers: &HeaderMap, body: &str) -> Option<String> {
    let response = Response {
        status,
        path: "/",
        headers,
        body,
    };
    let nowhere = Url::parse("http://127.0.0.1/").ok()?;
    capture::extract(source, &response, &Page::parse(body), &CookieStore::default(), &nowhere)
}

/// One fingerprint per published key, sorted; an answer that is not a key set has none.
fn key_fingerprints(body: &str) -> Vec<String> {
    let Ok(set) = serde_json::from_str::<serde_json::Value>(body) else { return Vec::new() };
    let mut keys: Vec<String> = set["keys"].as_array().into_iter().flatten().map(|key| fingerprint(&key.to_string())).collect();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_compare_by_their_keys_in_any_order() {
        let a = r#"{"keys":[{"kid":"1","x":"aa"},{"kid":"2","x":"bb"}]}"#;
        let b = r#"{"keys":[{"x":"bb","kid":"2"},{"kid":"1","x":"aa"}]}"#;
        assert_eq!(key_fingerprints(a), key_fingerprints(b));
        assert_ne!(key_fingerprints(a), key_fingerprints(r#"{"keys":[{"kid":"3","x":"cc"}]}"#));
        assert!(key_fingerprints("not json").is_empty());
    }
}

//! A relay: one loopback listener per external instance, forwarding every request to it.
//!
//! Through its relay an instance that runs elsewhere (https, a Host name of its own, a
//! password) looks like any local replica to the balancer, the inspections and the
//! probes. The relay is also where the safety limits for a shared deployment hold, because
//! every request replicheck sends to it passes here: the rate limit and the request budget.
//! A WebSocket's handshake the instance accepts becomes a tunnel to it, as through the
//! balancer.
//!
//! Behind a load balancer replicheck cannot bypass (`--via`), every relay forwards to that
//! balancer, reads which instance answered from a response header or a sticky cookie, and
//! sends the request again until it lands on the instance its relay stands for, a bounded
//! number of times. The instances a write reached on the way are reported with the
//! response. A sticky cookie also steers: once an instance's name is known, requests for
//! it carry its cookie and land there the first time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cookie::Cookie;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::header::{AUTHORIZATION, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue, LOCATION, SET_COOKIE};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use url::Url;

use crate::balancer::forwarded::remove_hop_by_hop;
use crate::balancer::tunnel;
use crate::balancer::{ALSO_REACHED_HEADER, ERROR_HEADER, SERVED_BY_HEADER};
use crate::server::serve_http1;
use crate::vocab::replica::{Incarnation, ReplicaId};

/// Requests are buffered (a request sent again must be sent whole); forms and API calls
/// of a flow are far smaller than this.
const MAX_REQUEST_BODY: usize = 8 << 20;

type RelayBody = BoxBody<Bytes, std::io::Error>;

/// What every relay of a run shares: the client, the credentials, the limits and, behind
/// a load balancer, which instance names have been seen.
pub struct Shared {
    client: reqwest::Client,
    authorization: Option<HeaderValue>,
    limiter: Option<DefaultDirectRateLimiter>,
    budget: Option<Budget>,
    attribution: Option<Attribution>,
}

/// The most requests the run may send, all relays together.
struct Budget {
    limit: u64,
    left: AtomicU64,
    /// Requests refused because it ran out.
    refused: AtomicU64,
}

/// Where a load balancer says which instance served.
#[derive(Debug, Clone)]
pub enum InstanceMark {
    /// A response header (nginx: `add_header X-Served-By $upstream_addr`).
    Header(HeaderName),
    /// A sticky-session cookie naming the instance (HAProxy: `cookie SERVERID insert`).
    /// Sending it steers a request to that instance, so nothing has to be sent twice.
    Cookie(String),
}

/// Which instance served a response, read from the load balancer's mark; instance names
/// become replica names in the order they are first seen.
pub struct Attribution {
    mark: InstanceMark,
    names: Mutex<Vec<String>>,
    capacity: usize,
    /// Sends of one request, at most, to land it on its instance.
    attempts: u32,
    /// Requests that landed elsewhere however often they were sent.
    missed: AtomicU64,
}

impl Attribution {
    pub fn new(mark: InstanceMark, instances: u16, attempts: u32) -> Self {
        Self {
            mark,
            names: Mutex::new(Vec::new()),
            capacity: usize::from(instances),
            attempts: attempts.max(1),
            missed: AtomicU64::new(0),
        }
    }

    /// The replica an instance name stands for; `None` for a name beyond the instances
    /// expected (the deployment has more than `--replicas`).
    fn replica(&self, name: &str) -> Option<ReplicaId> {
        let mut names = crate::sync::locked(&self.names);
        if let Some(index) = names.iter().position(|n| n == name) {
            return Some(ReplicaId(index as u16));
        }
        (names.len() < self.capacity).then(|| {
            names.push(name.to_owned());
            ReplicaId(names.len() as u16 - 1)
        })
    }

    fn name_of(&self, id: ReplicaId) -> Option<String> {
        crate::sync::locked(&self.names).get(usize::from(id.0)).cloned()
    }

    /// With a sticky cookie, sets it to the instance `id` stands for, once known; returns
    /// the name sent. The user's own cookies stay as they are.
    fn steer(&self, headers: &mut HeaderMap, id: ReplicaId) -> Option<String> {
        let InstanceMark::Cookie(cookie) = &self.mark else { return None };
        let mut pairs: Vec<String> = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(cookie.as_str()))
            .map(str::to_owned)
            .collect();
        let name = self.name_of(id);
        if let Some(name) = &name {
            pairs.push(format!("{cookie}={name}"));
        }
        headers.remove(COOKIE);
        if let Ok(value) = HeaderValue::from_str(&pairs.join("; "))
            && !pairs.is_empty()
        {
            headers.insert(COOKIE, value);
        }
        name
    }

    /// The instance the response came from: the header, or the sticky cookie the balancer
    /// set (or, when it set none, kept from the request).
    fn served(&self, response: &HeaderMap, sent: Option<String>) -> Option<String> {
        match &self.mark {
            InstanceMark::Header(header) => response.get(header).and_then(|v| v.to_str().ok()).map(str::to_owned),
            InstanceMark::Cookie(cookie) => set_cookie_value(response, cookie).or(sent),
        }
    }

    fn describe(&self) -> String {
        match &self.mark {
            InstanceMark::Header(header) => format!("{header} header"),
            InstanceMark::Cookie(cookie) => format!("{cookie} cookie"),
        }
    }

    /// Requests that could not be landed on their instance and were served by another.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Instance names by replica, as seen so far.
    pub fn names(&self) -> Vec<String> {
        crate::sync::locked(&self.names).clone()
    }
}

pub struct SharedConfig {
    pub insecure: bool,
    pub authorization: Option<HeaderValue>,
    pub max_rps: Option<NonZeroU32>,
    pub max_requests: Option<u64>,
    pub attribution: Option<Attribution>,
}

impl Shared {
    pub fn new(config: SharedConfig) -> Result<Self, String> {
        let client = crate::client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .danger_accept_invalid_certs(config.insecure)
            .build()
            .map_err(|e| format!("cannot make the instances' client: {}", crate::errors::chain(&e)))?;
        Ok(Self {
            client,
            authorization: config.authorization,
            // One request at a time at the allowed pace: no burst above the rate.
            limiter: config.max_rps.map(|rps| RateLimiter::direct(Quota::per_second(rps).allow_burst(NonZeroU32::MIN))),
            budget: config.max_requests.map(|limit| Budget {
                limit,
                left: AtomicU64::new(limit),
                refused: AtomicU64::new(0),
            }),
            attribution: config.attribution,
        })
    }

    pub fn attribution(&self) -> Option<&Attribution> {
        self.attribution.as_ref()
    }

    /// The budget, if it ran out and a request was refused for it.
    pub fn budget_spent(&self) -> Option<u64> {
        self.budget.as_ref().filter(|b| b.refused.load(Ordering::Acquire) > 0).map(|b| b.limit)
    }

    fn take_from_budget(&self) -> bool {
        let Some(budget) = &self.budget else { return true };
        let taken = budget.left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(1)).is_ok();
        if !taken {
            budget.refused.fetch_add(1, Ordering::AcqRel);
        }
        taken
    }
}

impl Destination {
    pub fn new(incarnation: Incarnation, url: Url, host: Option<HeaderValue>, label: String) -> Self {
        let mut names: Vec<String> = url.host_str().map(str::to_ascii_lowercase).into_iter().collect();
        if let Some(host) = host.as_ref().and_then(|h| h.to_str().ok()) {
            names.push(host.rsplit_once(':').map_or(host, |(name, _)| name).to_ascii_lowercase());
        }
        Self {
            incarnation,
            url,
            host,
            label,
            names,
        }
    }
}

/// An absolute redirect to the instance itself, made relative; `None` for any other.
fn own_redirect(location: &str, names: &[String]) -> Option<String> {
    let url = Url::parse(location).ok()?;
    let host = url.host_str()?;
    names.iter().any(|n| n.eq_ignore_ascii_case(host)).then(|| {
        let mut relative = url.path().to_owned();
        if let Some(query) = url.query() {
            relative.push('?');
            relative.push_str(query);
        }
        if let Some(fragment) = url.fragment() {
            relative.push('#');
            relative.push_str(fragment);
        }
        relative
    })
}

/// The response's cookies as the user should get them: without `steering` (replicheck's
/// sticky cookie), and without a `Domain` naming the instance (the cookie becomes the
/// balancer's host-only cookie). A cookie that does not parse passes as it is.
fn rewrite_set_cookies(headers: &mut HeaderMap, names: &[String], steering: Option<&str>) {
    let names_the_instance = |domain: &str| {
        let domain = domain.trim_start_matches('.').to_ascii_lowercase();
        names.iter().any(|n| *n == domain || n.ends_with(&format!(".{domain}")))
    };
    let cookies: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| {
            let Some(mut cookie) = value.to_str().ok().and_then(|text| Cookie::parse(text).ok()) else { return Some(value.clone()) };
            if Some(cookie.name()) == steering {
                return None;
            }
            if !cookie.domain().is_some_and(names_the_instance) {
                return Some(value.clone());
            }
            cookie.unset_domain();
            HeaderValue::from_str(&cookie.to_string()).ok().or_else(|| Some(value.clone()))
        })
        .collect();
    headers.remove(SET_COOKIE);
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie);
    }
}

/// The value a response's `Set-Cookie` gives cookie `name`.
fn set_cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| Cookie::parse(v.to_str().ok()?).ok())
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}

/// Where one relay forwards to.
pub struct Destination {
    pub incarnation: Incarnation,
    pub url: Url,
    /// Sent as `Host` instead of the URL's own.
    pub host: Option<HeaderValue>,
    /// How the instance is named in errors.
    pub label: String,
    /// The host names the instance answers to (lowercase): its URL's, and `host`'s.
    names: Vec<String>,
}

/// A running relay. Dropping it closes its listener and connections.
pub struct Relay {
    addr: SocketAddr,
    _tasks: JoinSet<()>,
}

impl Relay {
    pub async fn start(destination: Destination, shared: Arc<Shared>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new((destination, shared));
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_http1(listener, None, move |_, request| relay(state.clone(), request)));
        Ok(Self { addr, _tasks: tasks })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn relay(state: Arc<(Destination, Arc<Shared>)>, mut request: Request<Incoming>) -> Result<Response<RelayBody>, Infallible> {
    let (destination, shared) = (&state.0, &state.1);
    // A WebSocket's handshake: the instance's 101 becomes a tunnel to it.
    let upgrade = tunnel::requested(request.headers()).map(|protocol| (protocol, hyper::upgrade::on(&mut request)));
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return Ok(refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("request body not relayed: {err}"))),
    };
    let mut url = destination.url.clone();
    let base = destination.url.path().trim_end_matches('/');
    url.set_path(&format!("{base}{}", parts.uri.path()));
    url.set_query(parts.uri.query());
    let mut headers = parts.headers;
    remove_hop_by_hop(&mut headers);
    if let Some((protocol, _)) = &upgrade {
        tunnel::restore(&mut headers, protocol.clone());
    }
    headers.remove(HOST);
    if let Some(host) = &destination.host {
        headers.insert(HOST, host.clone());
    }
    // The flow's own credentials win over the deployment's.
    if let Some(authorization) = &shared.authorization
        && !headers.contains_key(AUTHORIZATION)
    {
        headers.insert(AUTHORIZATION, authorization.clone());
    }
    let attempts = shared.attribution.as_ref().map_or(1, |a| a.attempts);
    let mut landed_elsewhere = None;
    // A write that landed elsewhere changed that instance too (a cache entry put there
    // would hide the very divergence under test): the checker must know.
    let mut also_reached = Vec::new();
    for attempt in 1..=attempts {
        let mut headers = headers.clone();
        let steered = shared.attribution.as_ref().and_then(|a| a.steer(&mut headers, destination.incarnation.id));
        if !shared.take_from_budget() {
            let limit = shared.budget.as_ref().map_or(0, |b| b.limit);
            return Ok(refuse(StatusCode::SERVICE_UNAVAILABLE, format!("the request budget of {limit} is spent (--max-requests)")));
        }
        if let Some(limiter) = &shared.limiter {
            limiter.until_ready().await;
        }
        let sent = shared
            .client
            .request(parts.method.clone(), url.clone())
            .headers(headers)
            .body(body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return Ok(refuse(StatusCode::BAD_GATEWAY, format!("{}: {}", destination.label, crate::errors::chain(&err)))),
        };
        let served = match &shared.attribution {
            None => destination.incarnation,
            Some(attribution) => {
                let Some(name) = attribution.served(response.headers(), steered) else {
                    return Ok(refuse(
                        StatusCode::BAD_GATEWAY,
                        format!("{}: the response has no {} to tell which instance served it", destination.label, attribution.describe()),
                    ));
                };
                match attribution.replica(&name) {
                    Some(id) if id == destination.incarnation.id => destination.incarnation,
                    Some(id) if attempt == attempts => {
                        attribution.missed.fetch_add(1, Ordering::Relaxed);
                        Incarnation::first(id)
                    }
                    other => {
                        if let Some(id) = other
                            && !parts.method.is_safe()
                            && !also_reached.contains(&id)
                        {
                            also_reached.push(id);
                        }
                        landed_elsewhere = Some(other.map_or(name, |id| id.to_string()));
                        continue;
                    }
                }
            }
        };
        // The sticky cookie is replicheck's steering wheel, not the user's.
        let steering = match &shared.attribution {
            Some(Attribution { mark: InstanceMark::Cookie(cookie), .. }) => Some(cookie.as_str()),
            _ => None,
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some((protocol, client_side)) = upgrade
        {
            return Ok(switch(response, served, protocol, client_side).await);
        }
        let mut passed = pass_on(response, served, destination, steering);
        also_reached.retain(|id| *id != served.id);
        if !also_reached.is_empty() {
            let ids: Vec<String> = also_reached.iter().map(ToString::to_string).collect();
            if let Ok(value) = HeaderValue::from_str(&ids.join(",")) {
                passed.headers_mut().insert(ALSO_REACHED_HEADER, value);
            }
        }
        return Ok(passed);
    }
    Ok(refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "{}: could not land the request on {} in {attempts} attempts (last served by {})",
            destination.label,
            destination.incarnation.id,
            landed_elsewhere.unwrap_or_default()
        ),
    ))
}

/// The instance's agreement to switch protocols, passed on; the two connections become one
/// tunnel once the client has it too.
async fn switch(response: reqwest::Response, served: Incarnation, protocol: HeaderValue, client_side: hyper::upgrade::OnUpgrade) -> Response<RelayBody> {
    let mut builder = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    if let Some(headers) = builder.headers_mut() {
        *headers = response.headers().clone();
        remove_hop_by_hop(headers);
        tunnel::restore(headers, protocol);
        if let Ok(value) = HeaderValue::from_str(&served.to_string()) {
            headers.insert(SERVED_BY_HEADER, value);
        }
    }
    let instance_side = match response.upgrade().await {
        Ok(upgraded) => upgraded,
        Err(err) => return refuse(StatusCode::BAD_GATEWAY, format!("the instance agreed to switch protocols but did not: {}", crate::errors::chain(&err))),
    };
    tokio::spawn(tunnel::join(client_side, instance_side, tunnel::IDLE));
    builder.body(BoxBody::new(Full::new(Bytes::new()).map_err(|never| match never {}))).unwrap_or_else(|err| refuse(StatusCode::BAD_GATEWAY, format!("cannot pass the switch on: {err}")))
}

/// The instance's response, streamed, marked with the replica that served it. Like a
/// reverse proxy (nginx's `proxy_redirect` and `proxy_cookie_domain`), it makes the
/// instance's own name in redirects and cookie domains the balancer's, so users stay on
/// the balancer.
fn pass_on(response: reqwest::Response, served: Incarnation, destination: &Destination, steering: Option<&str>) -> Response<RelayBody> {
    let mut builder = Response::builder().status(response.status());
    if let Some(headers) = builder.headers_mut() {
        *headers = response.headers().clone();
        remove_hop_by_hop(headers);
        if let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok()).and_then(|l| own_redirect(l, &destination.names))
            && let Ok(value) = HeaderValue::from_str(&location)
        {
            headers.insert(LOCATION, value);
        }
        rewrite_set_cookies(headers, &destination.names, steering);
        if let Ok(value) = HeaderValue::from_str(&served.to_string()) {
            headers.insert(SERVED_BY_HEADER, value);
        }
    }
    let chunks = futures_util::stream::unfold(Some(response), |response| async move {
        let mut response = response?;
        match response.chunk().await {
            Ok(Some(chunk)) => Some((Ok(Frame::data(chunk)), Some(response))),
            Ok(None) => None,
            // The stream ends after its error.
            Err(err) => Some((Err(std::io::Error::other(err)), None)),
        }
    });
    builder
        .body(BoxBody::new(StreamBody::new(chunks)))
        .unwrap_or_else(|err| refuse(StatusCode::BAD_GATEWAY, format!("cannot pass the response on: {err}")))
}

fn refuse(status: StatusCode, reason: String) -> Response<RelayBody> {
    let mut response = Response::new(BoxBody::new(Full::new(Bytes::from(reason.clone())).map_err(|never| match never {})));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&reason) {
        response.headers_mut().insert(ERROR_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sticky_cookie_steers_and_names_the_instance() {
        let attribution = Attribution::new(InstanceMark::Cookie("SERVERID".into()), 2, 5);
        assert_eq!(attribution.replica("web-b"), Some(ReplicaId(0)));
        assert_eq!(attribution.replica("web-a"), Some(ReplicaId(1)));
        assert_eq!(attribution.replica("web-c"), None, "more instances than expected");
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("demo.auth=x; SERVERID=web-b"));
        assert_eq!(attribution.steer(&mut headers, ReplicaId(1)).as_deref(), Some("web-a"));
        assert_eq!(headers.get(COOKIE).unwrap(), "demo.auth=x; SERVERID=web-a");
        let mut response = HeaderMap::new();
        response.append(SET_COOKIE, HeaderValue::from_static("demo.session=s; Path=/"));
        response.append(SET_COOKIE, HeaderValue::from_static("SERVERID=web-b; Path=/"));
        assert_eq!(attribution.served(&response, Some("web-a".into())).as_deref(), Some("web-b"), "what the balancer set wins");
        rewrite_set_cookies(&mut response, &[], Some("SERVERID"));
        assert_eq!(response.get_all(SET_COOKIE).iter().collect::<Vec<_>>(), ["demo.session=s; Path=/"]);
        assert_eq!(attribution.served(&response, Some("web-a".into())).as_deref(), Some("web-a"), "kept from the request");
    }

    #[test]
    fn redirects_and_cookie_domains_of_the_instance_become_the_balancers() {
        let names = vec!["10.0.0.7".to_owned(), "shop.example".to_owned()];
        assert_eq!(own_redirect("http://10.0.0.7:8080/account?x=1#top", &names).as_deref(), Some("/account?x=1#top"));
        assert_eq!(own_redirect("https://SHOP.example/", &names).as_deref(), Some("/"));
        assert_eq!(own_redirect("https://idp.example/login", &names), None, "another site's redirect stays");
        assert_eq!(own_redirect("/relative", &names), None);
        let mut headers = HeaderMap::new();
        for cookie in ["sid=1; Path=/; Domain=.shop.example; Secure", "a=2; Domain=other.example", "b=3; Domain=le", "c=4; Domain=10.0.0.7"] {
            headers.append(SET_COOKIE, HeaderValue::from_static(cookie));
        }
        rewrite_set_cookies(&mut headers, &names, None);
        let cookies: Vec<&str> = headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cookies, ["sid=1; Secure; Path=/", "a=2; Domain=other.example", "b=3; Domain=le", "c=4"], "a suffix that is no domain of it stays");
    }
}

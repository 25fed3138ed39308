//! Virtual users: each runs one scenario of the plan through the balancer, as a browser
//! would, with its own cookie jar. Many run at once on tokio; together they produce the
//! history.
//!
//! Browser behaviour matters because real frameworks check it: cookies follow RFC 6265,
//! redirects are followed (on the replica that answered the step), and form posts carry
//! same-origin `Origin` and `Referer` headers. The balancer stands for a TLS-terminating
//! proxy, so the origin the app and the cookie jar see is `https://<balancer>`, and
//! `Secure` cookies flow as they would in production.

pub mod capture;
pub mod expect;
pub mod form;
pub mod subscribe;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cookie_store::{CookieStore, RawCookie};
use http::HeaderMap;
use indexmap::IndexMap;
use reqwest::header;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use url::Url;

use crate::balancer::{ALSO_REACHED_HEADER, ERROR_HEADER, Entrance, ROUTE_HEADER, SERVED_BY_HEADER};
use crate::vocab::replica::{Incarnation, ReplicaId};
use crate::history::{Captured, History, Observed, Outcome, Phase, RequestRecord, StepRecord, VuRecord};
use crate::plan::{Load, VuPlan};
use crate::redact::{Secrets, fingerprint};
use crate::scenario::{Scenario, Step};
use crate::shape::Shape;
use crate::step::Vars;
use expect::Response;
use form::Page;

/// Bounds on what a virtual user waits for and reads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Duration,
    pub max_body: usize,
    pub max_redirects: usize,
}

impl From<crate::target::Limits> for Limits {
    fn from(limits: crate::target::Limits) -> Self {
        Self {
            request_timeout: limits.request_timeout,
            max_body: limits.max_body,
            max_redirects: 10,
        }
    }
}

/// What every virtual user of a run shares.
pub struct VuContext {
    pub balancer: Entrance,
    pub scenarios: IndexMap<String, Arc<Scenario>>,
    pub seed: u64,
    /// The run's clock: request times are milliseconds since this instant.
    pub origin: Instant,
    pub limits: Limits,
    /// Secrets known before any request (the target's passwords).
    pub secrets: Secrets,
    /// The scheme of the `Origin` and `Referer` that posts carry: `https`, as a browser
    /// behind the TLS-terminating balancer sends, unless the run adapted users to the
    /// scheme an app believes (see `adapted`).
    pub post_scheme: &'static str,
    http: reqwest::Client,
    /// For subscriptions' event streams: no bound on the whole response.
    streams: reqwest::Client,
    /// Where users connect from.
    client_address: IpAddr,
}

impl VuContext {
    /// Users connect to the balancer from `client_address`, so the app can tell the client
    /// from the proxy in X-Forwarded-For.
    pub fn new(balancer: Entrance, client_address: IpAddr, scenarios: &[Scenario], seed: u64, origin: Instant, limits: Limits, secrets: Secrets) -> Self {
        let client = || {
            balancer
                .client(crate::client::builder())
                .local_address(client_address)
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(2))
        };
        let http = client().timeout(limits.request_timeout).build().unwrap_or_default();
        // An event stream lasts as long as its subscriber waits, which bounds it instead.
        let streams = client().build().unwrap_or_default();
        Self {
            balancer,
            scenarios: scenarios.iter().map(|s| (s.name.clone(), Arc::new(s.clone()))).collect(),
            seed,
            origin,
            limits,
            secrets,
            post_scheme: "https",
            http,
            streams,
            client_address,
        }
    }

    /// Users of another client: connecting to `balancer` (the run's, or a replica straight
    /// as a stranger does) from `client_address`, running `scenarios` of their own.
    pub fn for_client(&self, balancer: Entrance, client_address: IpAddr, scenarios: &[Scenario]) -> Self {
        Self { post_scheme: self.post_scheme, ..Self::new(balancer, client_address, scenarios, self.seed, self.origin, self.limits, self.secrets.clone()) }
    }

    /// The same users, posting with `Origin` and `Referer` in `scheme`: the origin an app
    /// that ignores X-Forwarded-Proto believes it has. A browser never does this; it takes
    /// that one fault away so the cross-replica questions behind it can still be asked.
    pub fn adapted(&self, scheme: &'static str) -> Self {
        Self {
            balancer: self.balancer.clone(),
            scenarios: self.scenarios.clone(),
            seed: self.seed,
            origin: self.origin,
            limits: self.limits,
            secrets: self.secrets.clone(),
            post_scheme: scheme,
            http: self.http.clone(),
            streams: self.streams.clone(),
            client_address: self.client_address,
        }
    }

    fn now_ms(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * 1000.0
    }
}

/// The history of running some virtual users, and the secrets they saw.
pub struct Executed {
    pub history: History,
    pub secrets: Secrets,
}

/// Runs every plan concurrently, at most `concurrency` at a time.
pub async fn execute(ctx: &Arc<VuContext>, plans: Vec<VuPlan>, phase: Phase, concurrency: usize) -> Executed {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for plan in plans {
        let ctx = ctx.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let (record, secrets) = VirtualUser::new(&ctx, &plan).run(phase, None, None).await;
            (vec![record], secrets)
        });
    }
    collect(tasks).await
}

/// Users of a chaos experiment that run up to step `gate`, then wait there until the
/// disruption is done.
#[derive(Debug, Clone)]
pub struct Gated {
    pub plan: VuPlan,
    pub gate: usize,
    /// For how long after the gate a step the app did not answer (a 5xx, no response) is
    /// asked again: after a dependency restart an app may reconnect late, and only its
    /// answer tells whether what the user held survived.
    pub recover: Option<Duration>,
}

/// Starts gated users; they all run at once (an experiment has few). Await
/// `keeper.all_arrived()`, disrupt, `keeper.open()`, then `collect` the tasks.
pub fn spawn_gated(ctx: &Arc<VuContext>, users: Vec<Gated>, phase: Phase) -> (GateKeeper, Users) {
    let (keeper, gate) = GateKeeper::new(users.len());
    let mut tasks = JoinSet::new();
    for user in users {
        let (ctx, gate) = (ctx.clone(), gate.clone());
        tasks.spawn(async move {
            let (record, secrets) = VirtualUser::new(&ctx, &user.plan).run(phase, Some((user.gate, &gate)), user.recover).await;
            (vec![record], secrets)
        });
    }
    (keeper, tasks)
}

/// Starts looping users: each runs a fresh scenario pass (a new user, with its own jar)
/// after another until `stop` turns true, and records every pass.
pub fn spawn_load(ctx: &Arc<VuContext>, load: &Load, phase: Phase, stop: watch::Receiver<bool>) -> Users {
    let mut tasks = JoinSet::new();
    for index in 0..load.vus {
        let (ctx, load, stop) = (ctx.clone(), load.clone(), stop.clone());
        tasks.spawn(async move {
            let mut records = Vec::new();
            let mut secrets = Secrets::default();
            let mut iteration = 0;
            while !*stop.borrow() {
                let steps = |name: &str| ctx.scenarios.get(name).map_or(0, |s| s.steps.len());
                let Some(plan) = load.pass(index, iteration, steps) else { break };
                let (mut record, seen) = VirtualUser::new(&ctx, &plan).run(phase, None, None).await;
                record.iteration = iteration;
                records.push(record);
                secrets.extend(&seen);
                iteration += 1;
                // A user's pause between passes: steady traffic through the disruption
                // without saturating a replica (or a small CI machine) with requests.
                tokio::time::sleep(LOAD_PAUSE).await;
            }
            (records, secrets)
        });
    }
    tasks
}

/// How long a looping user waits between passes.
const LOAD_PAUSE: Duration = Duration::from_millis(100);

/// Running users; each task yields the records of one user (several for a looping one).
pub type Users = JoinSet<(Vec<VuRecord>, Secrets)>;

/// Waits for every user and gathers their records, in user order.
pub async fn collect(mut tasks: Users) -> Executed {
    let mut history = History::default();
    let mut secrets = Secrets::default();
    while let Some(joined) = tasks.join_next().await {
        // A virtual user's own panic is a replicheck bug; its task is lost, the run goes on.
        if let Ok((records, seen)) = joined {
            history.vus.extend(records);
            secrets.extend(&seen);
        }
    }
    history.vus.sort_by_key(|v| (v.vu, v.iteration));
    Executed { history, secrets }
}

/// Held by gated users: they report when they reach their gate (or finish before it),
/// and wait there until it opens.
#[derive(Clone)]
pub struct Gate {
    arrivals: mpsc::UnboundedSender<()>,
    open: watch::Receiver<bool>,
}

/// Held by the experiment: knows when every user is at the gate, and opens it.
pub struct GateKeeper {
    arrivals: mpsc::UnboundedReceiver<()>,
    open: watch::Sender<bool>,
    expected: usize,
}

impl GateKeeper {
    fn new(expected: usize) -> (GateKeeper, Gate) {
        let (arrived, arrivals) = mpsc::unbounded_channel();
        let (open, opened) = watch::channel(false);
        (
            GateKeeper { arrivals, open, expected },
            Gate {
                arrivals: arrived,
                open: opened,
            },
        )
    }

    /// Returns once every user is at the gate or done.
    pub async fn all_arrived(&mut self) {
        for _ in 0..self.expected {
            if self.arrivals.recv().await.is_none() {
                break;
            }
        }
    }

    pub fn open(&self) {
        // No receivers left means every user already finished: nothing to release.
        let _ = self.open.send(true);
    }
}

impl Gate {
    fn arrive(&self) {
        let _ = self.arrivals.send(());
    }

    async fn wait_open(&self) {
        let mut open = self.open.clone();
        // A keeper dropped without opening means the experiment was abandoned: go on.
        let _ = open.wait_for(|open| *open).await;
    }
}

/// A user driven one step at a time, so that a schedule can interleave its steps with
/// other users' and with disruptions (exploration). Like every user it stops at the first
/// step that does not pass.
pub struct Stepper<'a> {
    user: VirtualUser<'a>,
    scenario: Option<Arc<Scenario>>,
    record: VuRecord,
    stopped: bool,
}

impl<'a> Stepper<'a> {
    pub fn new(ctx: &'a VuContext, plan: &'a VuPlan, phase: Phase) -> Self {
        let mut user = VirtualUser::new(ctx, plan);
        let record = user.new_record(phase);
        let scenario = user.begin();
        Self {
            stopped: scenario.is_none(),
            user,
            scenario,
            record,
        }
    }

    /// Runs the user's next step; nothing once the user has stopped or has no step left.
    pub async fn step(&mut self) {
        let index = self.record.steps.len();
        let Some(scenario) = self.scenario.clone().filter(|_| !self.stopped) else { return };
        let Some(step) = scenario.steps.get(index) else { return };
        let route = self.user.plan.routes.get(index).copied().unwrap_or(ReplicaId(0));
        let record = self.user.run_step(index, step, route).await;
        self.stopped = !matches!(record.outcome, Outcome::Passed);
        self.record.steps.push(record);
    }

    pub fn finish(mut self) -> (VuRecord, Secrets) {
        self.user.remember_cookie_values();
        (self.record, self.user.secrets)
    }
}

/// The pause before a step the app did not answer is asked again.
const ASK_AGAIN_AFTER: Duration = Duration::from_millis(300);

/// The page a step ended at, for the next step's `submit_form`.
#[derive(Clone)]
struct LastPage {
    url: Url,
    body: String,
}

/// A request about to be sent.
struct Outgoing {
    method: reqwest::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Body>,
}

/// What a request carries.
enum Body {
    Bytes { content_type: String, bytes: Vec<u8> },
    /// Fields and files, encoded as `multipart/form-data` (with a boundary of its own)
    /// each time the request is sent.
    Multipart { fields: Vec<(String, String)>, files: Vec<File> },
}

/// A file of a multipart request, rendered.
struct File {
    field: String,
    filename: String,
    content: Vec<u8>,
    content_type: String,
}

impl File {
    /// The form of a multipart request, made anew for each send (a form is read once).
    fn form(fields: &[(String, String)], files: &[File]) -> reqwest::multipart::Form {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.clone(), value.clone());
        }
        for file in files {
            let part = reqwest::multipart::Part::bytes(file.content.clone()).file_name(file.filename.clone());
            // Validation refused a type that does not parse; one from code that does not
            // goes as bytes of no particular type.
            let part = match part.mime_str(&file.content_type) {
                Ok(part) => part,
                Err(_) => reqwest::multipart::Part::bytes(file.content.clone()).file_name(file.filename.clone()),
            };
            form = form.part(file.field.clone(), part);
        }
        form
    }
}

/// The final response of a step, after redirects.
struct Final {
    status: u16,
    path: String,
    headers: HeaderMap,
    body: String,
    redirects: Vec<String>,
}

struct VirtualUser<'a> {
    ctx: &'a VuContext,
    plan: &'a VuPlan,
    jar: CookieStore,
    vars: Vars,
    last_page: Option<LastPage>,
    secrets: Secrets,
    origin: Url,
}

impl<'a> VirtualUser<'a> {
    fn new(ctx: &'a VuContext, plan: &'a VuPlan) -> Self {
        let origin = Url::parse(&format!("https://{}/", ctx.balancer.addr)).expect("a socket address is a valid host");
        let mut vars = Vars::new();
        vars.insert("vu".into(), plan.vu.to_string());
        vars.insert("nonce".into(), plan.nonce.clone());
        vars.insert("seed".into(), ctx.seed.to_string());
        Self {
            ctx,
            plan,
            jar: CookieStore::default(),
            vars,
            last_page: None,
            secrets: ctx.secrets.clone(),
            origin,
        }
    }

    /// Runs the user's steps, stopping at the first that does not pass. A gated user
    /// waits at its gate step until the gate opens, and tells the gate it arrived even
    /// when it stops before.
    async fn run(mut self, phase: Phase, gate: Option<(usize, &Gate)>, recover: Option<Duration>) -> (VuRecord, Secrets) {
        let mut record = self.new_record(phase);
        let mut pending_gate = gate;
        self.run_steps(&mut record, &mut pending_gate, recover).await;
        if let Some((_, gate)) = pending_gate {
            gate.arrive();
        }
        self.remember_cookie_values();
        (record, self.secrets)
    }

    /// The user's scenario, with its variables rendered for this user.
    fn begin(&mut self) -> Option<Arc<Scenario>> {
        let scenario = self.ctx.scenarios.get(&self.plan.scenario).cloned()?;
        for (name, template) in &scenario.vars {
            // Scenario variables use only the user's own variables, checked at load time.
            let value = template.render(&self.vars).unwrap_or_default();
            self.vars.insert(name.clone(), value);
        }
        Some(scenario)
    }

    fn new_record(&self, phase: Phase) -> VuRecord {
        VuRecord {
            phase,
            vu: self.plan.vu,
            iteration: 0,
            scenario: self.plan.scenario.clone(),
            steps: Vec::new(),
        }
    }

    async fn run_steps(&mut self, record: &mut VuRecord, gate: &mut Option<(usize, &Gate)>, recover: Option<Duration>) {
        let Some(scenario) = self.begin() else { return };
        let mut recover_until = None;
        for (index, step) in scenario.steps.iter().enumerate() {
            if let Some((at, waiting)) = *gate
                && at == index
            {
                waiting.arrive();
                waiting.wait_open().await;
                *gate = None;
                recover_until = recover.map(crate::clock::deadline);
            }
            let route = self.plan.routes.get(index).copied().unwrap_or(ReplicaId(0));
            let step_record = match recover_until {
                Some(until) => self.run_step_until_answered(index, step, route, until).await,
                None => self.run_step(index, step, route).await,
            };
            let passed = matches!(step_record.outcome, Outcome::Passed);
            record.steps.push(step_record);
            if !passed {
                break;
            }
        }
    }

    /// Runs the step, and again while the app does not answer it, until `until`; the
    /// record keeps every attempt's requests and the last attempt's outcome.
    async fn run_step_until_answered(&mut self, index: usize, step: &Step, route: ReplicaId, until: Instant) -> StepRecord {
        // An error page is no page to submit a form from: each attempt starts where the
        // first did.
        let before = self.last_page.clone();
        let mut record = self.run_step(index, step, route).await;
        while record.unanswered() && Instant::now() < until {
            tokio::time::sleep(ASK_AGAIN_AFTER).await;
            self.last_page = before.clone();
            let again = self.run_step(index, step, route).await;
            let earlier = std::mem::take(&mut record.requests);
            record = again;
            record.requests.splice(0..0, earlier);
        }
        record
    }

    async fn run_step(&mut self, index: usize, step: &Step, route: ReplicaId) -> StepRecord {
        let mut record = StepRecord {
            index,
            name: step.name.clone(),
            planned: route,
            served_by: None,
            also_reached: Vec::new(),
            requests: Vec::new(),
            outcome: Outcome::Passed,
            set_cookies: Vec::new(),
            cookie_shapes: BTreeMap::new(),
            captured: Vec::new(),
        };
        let outgoing = match self.prepare(step) {
            Ok(outgoing) => outgoing,
            Err(reason) => {
                record.outcome = self.failed(step, None, reason);
                return record;
            }
        };
        let exchanged = self.exchange(outgoing, route, &mut record).await;
        record.served_by = record.requests.first().and_then(|r| r.served_by);
        record.set_cookies = record.requests.iter().flat_map(|r| r.set_cookies.iter().cloned()).collect();
        record.set_cookies.dedup();
        let response = match exchanged {
            Ok(response) => response,
            Err(message) => {
                record.outcome = Outcome::Error {
                    message: self.secrets.redact(&message),
                };
                return record;
            }
        };
        // Tokens hide in hidden fields of pages a user never submits; parse once for them
        // and for captures.
        let page = if response.body.contains("<input") { Page::parse(&response.body) } else { Page::default() };
        for value in &page.hidden {
            self.secrets.add(value);
        }
        record.outcome = self.judge(step, &response, &page, &mut record.captured);
        self.last_page = Some(LastPage {
            url: self.public_url(&response.path),
            body: response.body,
        });
        record
    }

    /// Builds the step's request: renders templates, and fills in the form of the
    /// previous page when the step submits one.
    fn prepare(&mut self, step: &Step) -> Result<Outgoing, String> {
        let spec = &step.request;
        let render = |t: &crate::step::Template, vars: &Vars| t.render(vars).map_err(|e| e.to_string());
        let mut headers = spec
            .headers
            .iter()
            .map(|(name, value)| Ok((name.clone(), render(value, &self.vars)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let overrides = spec
            .form
            .iter()
            .map(|(name, value)| Ok((name.clone(), render(value, &self.vars)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let mut method = spec.method.0.clone();
        let (path, fields) = if spec.submit_form {
            let page = self.last_page.as_ref().ok_or("there is no previous page to submit a form from")?;
            let parsed = Page::parse(&page.body);
            let wanted: Vec<String> = overrides.iter().map(|(n, _)| n.clone()).collect();
            let form = parsed
                .pick_form(&wanted)
                .ok_or_else(|| format!("the page at {} has no form to submit", page.url.path()))?;
            // Hidden field values (tokens) must never reach a report.
            for (_, value) in &form.fields {
                self.secrets.add(value);
            }
            method = form.method.clone();
            let action = match &spec.url {
                Some(url) => render(url, &self.vars)?,
                None => match &form.action {
                    Some(action) if !action.is_empty() => self.same_origin_path(&page.url, action).ok_or_else(|| format!("the form posts to another site ({action})"))?,
                    _ => path_and_query(&page.url),
                },
            };
            (action, Some(form.fill(&overrides)))
        } else {
            let url = spec.url.as_ref().ok_or("the request has no url")?;
            (render(url, &self.vars)?, (!overrides.is_empty()).then_some(overrides))
        };
        if !spec.multipart.is_empty() {
            let files = spec
                .multipart
                .iter()
                .map(|(field, file)| {
                    Ok(File {
                        field: field.clone(),
                        filename: render(&file.filename, &self.vars)?,
                        content: render(&file.content, &self.vars)?.into_bytes(),
                        content_type: file.content_type.as_ref().map_or_else(|| "application/octet-stream".into(), |c| c.get_ref().clone()),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let body = Body::Multipart { fields: fields.unwrap_or_default(), files };
            return Ok(self.outgoing(&method, path, headers, Some(body)));
        }
        let body = match (fields, &spec.body) {
            (Some(fields), _) if method != "GET" => {
                let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
                Some(Body::Bytes { content_type: "application/x-www-form-urlencoded".to_owned(), bytes: encoded.into_bytes() })
            }
            (Some(fields), _) => {
                // A GET form puts its fields in the query, as a browser does.
                let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
                let action = path.split('?').next().unwrap_or("/");
                return Ok(self.outgoing("GET", format!("{action}?{query}"), headers, None));
            }
            (None, Some(body)) => {
                let content_type = headers
                    .iter()
                    .position(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                    .map(|i| headers.remove(i).1)
                    .unwrap_or_else(|| "text/plain; charset=utf-8".into());
                Some(Body::Bytes { content_type, bytes: render(body, &self.vars)?.into_bytes() })
            }
            (None, None) => None,
        };
        Ok(self.outgoing(&method, path, headers, body))
    }

    fn outgoing(&self, method: &str, path: String, mut headers: Vec<(String, String)>, body: Option<Body>) -> Outgoing {
        if method != "GET" && method != "HEAD" {
            // Same-origin form posts: frameworks' CSRF checks refuse an https post without them.
            let posted_from = |url: &Url| {
                let mut url = url.clone();
                // https -> http is a change between special schemes, which always succeeds.
                let _ = url.set_scheme(self.ctx.post_scheme);
                url
            };
            let origin = posted_from(&self.origin).as_str().trim_end_matches('/').to_owned();
            let referer = posted_from(self.last_page.as_ref().map_or(&self.origin, |p| &p.url)).to_string();
            headers.push(("Origin".into(), origin));
            headers.push(("Referer".into(), referer));
        }
        Outgoing {
            method: reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET),
            path,
            headers,
            body,
        }
    }

    /// Sends the request and follows its redirects on the same route, recording each.
    async fn exchange(&mut self, mut outgoing: Outgoing, route: ReplicaId, record: &mut StepRecord) -> Result<Final, String> {
        let mut redirects = Vec::new();
        loop {
            let start_ms = self.ctx.now_ms();
            let mut request_record = RequestRecord {
                method: outgoing.method.to_string(),
                // A captured session or token may travel in the URL itself.
                path: self.secrets.redact(&outgoing.path),
                planned: route,
                served_by: None,
                status: None,
                location: None,
                set_cookies: Vec::new(),
                start_ms,
                end_ms: start_ms,
                error: None,
            };
            let sent = self.send(&outgoing, route).await;
            let response = match sent {
                Ok(response) => response,
                Err(message) => {
                    request_record.error = Some(message.clone());
                    request_record.end_ms = self.ctx.now_ms();
                    record.requests.push(request_record);
                    return Err(message);
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            request_record.status = Some(status);
            request_record.served_by = headers
                .get(SERVED_BY_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Incarnation>().ok());
            request_record.set_cookies = self.store_cookies(&headers, &outgoing.path, &mut record.cookie_shapes);
            let also_reached = headers.get(ALSO_REACHED_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            for id in also_reached.split(',').filter_map(|id| id.parse::<ReplicaId>().ok()) {
                if !record.also_reached.contains(&id) {
                    record.also_reached.push(id);
                }
            }
            if let Some(reason) = headers.get(ERROR_HEADER).and_then(|v| v.to_str().ok()) {
                let message = format!("the balancer answered {status}: {reason}");
                request_record.error = Some(message.clone());
                request_record.end_ms = self.ctx.now_ms();
                record.requests.push(request_record);
                return Err(message);
            }
            let location = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
            request_record.location = location.clone();
            let next = location
                .as_deref()
                .filter(|_| is_redirect(status) && redirects.len() < self.ctx.limits.max_redirects)
                .and_then(|location| self.same_origin_path(&self.public_url(&outgoing.path), location));
            if let Some(next_path) = next {
                request_record.end_ms = self.ctx.now_ms();
                record.requests.push(request_record);
                redirects.push(next_path.clone());
                // 303, and 301/302 after a POST, turn into a GET without a body (as browsers do).
                let keep_method = matches!(status, 307 | 308) || outgoing.method == reqwest::Method::GET;
                outgoing = if keep_method {
                    Outgoing { path: next_path, ..outgoing }
                } else {
                    self.outgoing("GET", next_path, Vec::new(), None)
                };
                continue;
            }
            let body = read_body(response, self.ctx.limits).await.map_err(|reason| match request_record.served_by {
                Some(replica) => format!("{replica}: {reason}"),
                None => reason,
            });
            request_record.end_ms = self.ctx.now_ms();
            if let Err(message) = &body {
                request_record.error = Some(message.clone());
            }
            record.requests.push(request_record);
            return Ok(Final {
                status,
                path: outgoing.path,
                headers,
                body: body?,
                redirects,
            });
        }
    }

    async fn send(&self, outgoing: &Outgoing, route: ReplicaId) -> Result<reqwest::Response, String> {
        let url = self.ctx.balancer.url(&outgoing.path);
        let mut request = self
            .ctx
            .http
            .request(outgoing.method.clone(), &url)
            .header(ROUTE_HEADER, route.to_string())
            .header(header::ACCEPT, "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8")
            .header(header::USER_AGENT, concat!("replicheck/", env!("CARGO_PKG_VERSION")));
        let cookies = self.cookie_header(&outgoing.path);
        if !cookies.is_empty() {
            request = request.header(header::COOKIE, cookies);
        }
        for (name, value) in &outgoing.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match &outgoing.body {
            Some(Body::Bytes { content_type, bytes }) => request = request.header(header::CONTENT_TYPE, content_type.as_str()).body(bytes.clone()),
            Some(Body::Multipart { fields, files }) => request = request.multipart(File::form(fields, files)),
            None => {}
        }
        // The balancer answers for itself when it cannot reach the replica; no answer at all
        // is the replica's silence, through the balancer.
        request.send().await.map_err(|err| format!("{route} (through the balancer): {}", describe_error(&err, self.ctx.limits.request_timeout)))
    }

    fn public_url(&self, path: &str) -> Url {
        self.origin.join(path).unwrap_or_else(|_| self.origin.clone())
    }

    /// The path of `location` (resolved against `base`) when it points back at this
    /// service; `None` for another site.
    fn same_origin_path(&self, base: &Url, location: &str) -> Option<String> {
        let target = base.join(location).ok()?;
        // An app that ignores X-Forwarded-Proto redirects to http://: same host, still ours.
        let same = target.host_str() == self.origin.host_str() && target.port_or_known_default() == self.origin.port_or_known_default()
            || (target.scheme() == "http" && target.host_str() == self.origin.host_str() && target.port() == self.origin.port());
        same.then(|| path_and_query(&target))
    }

    fn cookie_header(&self, path: &str) -> String {
        let url = self.public_url(path);
        self.jar.get_request_values(&url).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }

    /// Stores the response's cookies in the jar; returns their names.
    /// Keeps the cookies a response set; returns their names and notes their shapes.
    fn store_cookies(&mut self, headers: &HeaderMap, path: &str, shapes: &mut BTreeMap<String, Shape>) -> Vec<String> {
        let url = self.public_url(path);
        let cookies: Vec<RawCookie<'static>> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| RawCookie::parse(v.to_owned()).ok())
            .collect();
        let names = cookies.iter().map(|c| c.name().to_owned()).collect();
        for cookie in &cookies {
            self.secrets.add(cookie.value());
            shapes.insert(cookie.name().to_owned(), Shape::of(cookie.value()));
        }
        self.jar.store_response_cookies(cookies.into_iter(), &url);
        names
    }

    fn remember_cookie_values(&mut self) {
        let values: Vec<String> = self.jar.iter_any().map(|c| c.value().to_owned()).collect();
        for value in values {
            self.secrets.add(&value);
        }
    }

    /// Captures values, then checks the expectation and the rejection shape.
    fn judge(&mut self, step: &Step, response: &Final, page: &Page, captured: &mut Vec<Captured>) -> Outcome {
        let view = Response {
            status: response.status,
            path: &response.path,
            headers: &response.headers,
            body: &response.body,
        };
        let url = self.public_url(&response.path);
        for capture in &step.captures {
            match capture::extract(&capture.source, &view, page, &self.jar, &url) {
                Some(value) => {
                    self.secrets.add(&value);
                    captured.push(Captured {
                        name: capture.name.clone(),
                        fingerprint: fingerprint(&value),
                        shape: Some(Shape::of(&value)),
                    });
                    self.vars.insert(capture.name.clone(), value);
                }
                None => {
                    let reason = format!("found no {} to capture as `{}`", capture::describe(&capture.source), capture.name);
                    return self.failed(step, Some(response), reason);
                }
            }
        }
        // Being turned away explains a failure better than the clause it breaks.
        if let Some(reject) = &step.reject
            && expect::matches(reject, &view, &self.vars)
        {
            let reason = format!("turned away ({})", expect::describe(reject, &self.vars));
            return self.failed(step, Some(response), reason);
        }
        if let Err(reason) = expect::holds(&step.expect, &view, &self.vars) {
            return self.failed(step, Some(response), reason);
        }
        Outcome::Passed
    }

    fn failed(&mut self, step: &Step, response: Option<&Final>, reason: String) -> Outcome {
        self.remember_cookie_values();
        let mut expected = expect::describe(&step.expect, &self.vars);
        if let Some(reject) = &step.reject {
            expected = format!("{expected}; not turned away ({})", expect::describe(reject, &self.vars));
        }
        let observed = Observed {
            status: response.map(|r| r.status),
            location: response.map(|r| self.secrets.redact(&r.path)),
            redirects: response.map(|r| r.redirects.iter().map(|path| self.secrets.redact(path)).collect()).unwrap_or_default(),
            excerpt: response.map(|r| self.secrets.redact(&excerpt(&r.body))).unwrap_or_default(),
            reason: self.secrets.redact(&reason),
        };
        Outcome::Failed {
            expected: self.secrets.redact(&expected),
            observed,
        }
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Reads at most `max_body` bytes of body; a longer body is an error, not a truncation.
/// The request timeout covers the body too, so a body that trickles in ends on time.
async fn read_body(mut response: reqwest::Response, limits: Limits) -> Result<String, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limits.max_body {
                    return Err(format!("the response body exceeds {} KiB ([limits] max_body)", limits.max_body / 1024));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(String::from_utf8_lossy(&body).into_owned()),
            Err(err) if err.is_timeout() => {
                return Err(format!(
                    "timed out: {} of body arrived within {} ([limits] request_timeout)",
                    bytes(body.len()),
                    humantime::format_duration(limits.request_timeout)
                ));
            }
            Err(err) => return Err(format!("the connection closed after {} of body: {}", bytes(body.len()), crate::errors::chain(&err))),
        }
    }
}

fn bytes(count: usize) -> String {
    if count < 1024 { format!("{count} bytes") } else { format!("{} KiB", count / 1024) }
}

fn describe_error(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    crate::errors::chain(err)
}

/// The first words of a page: its visible text for HTML, the body itself otherwise.
fn excerpt(body: &str) -> String {
    const MAX: usize = 160;
    let looks_html = body.trim_start().starts_with('<');
    let text = if looks_html { form::visible_text(body) } else { body.split_whitespace().collect::<Vec<_>>().join(" ") };
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_visible_text() {
        let html = format!("<html><body><p>Please sign in</p><input type=hidden value=SECRET>{}</body></html>", "x ".repeat(200));
        let text = excerpt(&html);
        assert!(text.starts_with("Please sign in x x"));
        assert!(!text.contains("SECRET"));
        assert!(text.ends_with("...") && text.chars().count() <= 163);
        assert_eq!(excerpt("{\"error\":  \"nope\"}"), "{\"error\": \"nope\"}");
    }
}

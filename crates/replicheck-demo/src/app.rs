//! The demo's pages and endpoints: a login form and a protected page, a form with an
//! antiforgery token, session and cache endpoints, an echo of what the app believes about
//! the request, health endpoints and a slow endpoint; with background work, endpoints
//! that accept orders and invites for it.

use crate::telemetry::Telemetry;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, FromRequest, Json, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::jobs::Intake;
use super::keyring::Keys;
use super::store::Store;

pub struct App {
    pub replica: String,
    pub keys: Keys,
    pub store: Store,
    pub username: String,
    pub password: String,
    pub started: Instant,
    /// Pages answer 503 for this long after start (caches warming, migrations running).
    pub warmup: Duration,
    /// Set on SIGTERM by a graceful shutdown: honest readiness turns 503.
    pub draining: AtomicBool,
    /// Set on SIGTERM by `--shutdown unavailable`: pages answer 503, health endpoints do not.
    pub refusing: AtomicBool,
    pub readiness: ReadinessFlaws,
    pub forwarded: Forwarded,
    pub known_proxy: IpAddr,
    /// Refuse posts whose `Origin` is not the origin the app believes it has, as
    /// frameworks' CSRF checks do (Django's, Rails' origin check).
    pub check_origin: bool,
    pub leak: Option<Leak>,
    /// Where sign-ins are recorded, if anywhere: a file the app must be able to write.
    pub audit_log: Option<std::path::PathBuf>,
    /// Test aid: every page redirects to itself, as a replica broken on its own does.
    pub loops: bool,
    /// Test aid: the process exits by itself once it has served this many pages.
    pub quits_after: Option<u64>,
    pub pages_served: std::sync::atomic::AtomicU64,
    /// Where orders and invites go for the background work, when it is on.
    pub intake: Intake,
    /// Live updates (`--hub`), when they are on.
    pub hub: Option<Arc<crate::hub::Hub>>,
    /// The limit on password-reset requests, when it is on.
    pub limiter: Option<crate::limiter::Limiter>,
    /// Where uploaded files are kept, when uploads are on.
    pub uploads: Option<std::path::PathBuf>,
}

/// Where `--leak-secrets` writes what the app issues.
pub struct Leak {
    pub path: std::path::PathBuf,
    pub lock: std::sync::Mutex<()>,
}

impl App {
    /// Logs and records an issued secret, when asked to (a test aid; never by default).
    fn leak(&self, what: &str, value: &str) {
        let Some(leak) = &self.leak else { return };
        println!("issued {what} {value}");
        let _guard = leak.lock.lock();
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&leak.path) {
            // One write per line: replicas append to the same file at once.
            let _ = file.write_all(format!("{value}\n").as_bytes());
        }
    }
}

/// Whom the app believes about X-Forwarded-For/-Proto/-Host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Forwarded {
    /// The known proxy only (correct).
    KnownProxy,
    /// Anyone: a client can forge its address and scheme.
    TrustAll,
    /// Nobody: behind a proxy the app sees the proxy's address and http.
    Ignore,
}

/// What the app believes about a request.
struct Seen {
    scheme: String,
    client: String,
    host: String,
}

fn seen(app: &App, peer: SocketAddr, headers: &HeaderMap) -> Seen {
    let trusted = match app.forwarded {
        Forwarded::KnownProxy => peer.ip() == app.known_proxy,
        Forwarded::TrustAll => true,
        Forwarded::Ignore => false,
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let forwarded = |name: &str| header(name).filter(|_| trusted);
    Seen {
        scheme: forwarded("x-forwarded-proto").unwrap_or_else(|| "http".into()),
        client: forwarded("x-forwarded-for")
            .and_then(|chain| chain.split(',').next().map(|c| c.trim().to_owned()))
            .unwrap_or_else(|| peer.ip().to_string()),
        host: forwarded("x-forwarded-host").or_else(|| header("host")).unwrap_or_default(),
    }
}

/// The client's address as the app believes it, after its forwarded-header handling.
pub(crate) fn client_of(app: &App, peer: SocketAddr, headers: &HeaderMap) -> String {
    seen(app, peer, headers).client
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Ways readiness can lie, each off in a correctly configured app.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadinessFlaws {
    pub during_warmup: bool,
    pub ignores_store: bool,
    pub ignores_shutdown: bool,
}

impl App {
    fn warming(&self) -> bool {
        self.started.elapsed() < self.warmup
    }
}

type Shared = State<Arc<App>>;

const AUTH_COOKIE: &str = "demo.auth";
const SESSION_COOKIE: &str = "demo.session";
const ANTIFORGERY_COOKIE: &str = "demo.af";
const TOKEN_FIELD: &str = "__csrf";
/// Cache values may be large: the balancer is tested by streaming them through.
const CACHE_VALUE_LIMIT: usize = 16 * 1024 * 1024;

pub fn router(app: Arc<App>, telemetry: Option<Arc<Telemetry>>) -> Router {
    let health = Router::new()
        .route("/healthz/live", get(|| async { "live" }))
        .route("/healthz/ready", get(ready));
    let mut pages = pages();
    if app.intake.orders.is_some() {
        pages = pages.route("/orders", post(accept_order));
    }
    if app.intake.invites.is_some() {
        pages = pages.route("/invites", post(accept_invite));
    }
    if app.hub.is_some() {
        pages = pages
            .route("/hub/publish", post(crate::hub::publish))
            .route("/hub/ws", get(crate::hub::websocket))
            .route("/hub/events", get(crate::hub::events))
            .route("/hub/poll", post(crate::hub::open_poll).get(crate::hub::poll));
    }
    if app.limiter.is_some() {
        pages = pages.route("/password-reset", post(crate::limiter::password_reset));
    }
    if app.uploads.is_some() {
        pages = pages
            .route("/uploads", post(crate::uploads::upload).layer(DefaultBodyLimit::max(crate::uploads::MAX_UPLOAD)))
            .route("/uploads/{name}", get(crate::uploads::download));
    }
    let router = pages
        .route_layer(middleware::from_fn_with_state(app.clone(), same_origin))
        .route_layer(middleware::from_fn_with_state(app.clone(), unavailable))
        .route_layer(middleware::from_fn_with_state(app.clone(), looping))
        .merge(health)
        .with_state(app);
    match telemetry {
        Some(telemetry) => router.layer(middleware::from_fn_with_state(telemetry, crate::telemetry::traced)),
        None => router,
    }
}

fn pages() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/account", get(account))
        .route("/transfer", get(transfer_form).post(transfer))
        .route("/session", get(session_get).post(session_set))
        .route("/cache/{key}", get(cache_get).put(cache_set).layer(DefaultBodyLimit::max(CACHE_VALUE_LIMIT)))
        .route("/whoami", get(whoami))
        .route("/token", axum::routing::post(token))
        .route("/api/me", get(api_me))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/slow", get(slow))
        .route("/live/echo", get(crate::live::echo))
        .route("/live/ticks", get(crate::live::ticks))
}

/// Test aids for replicas that fail by themselves. A replica broken on its own
/// (`--redirect-loop`): every page sends the browser back to itself, so no flow works on it
/// even alone. A replica that crashes under traffic (`--quit-after`): it exits instead of
/// serving one page more than it may.
async fn looping(State(app): Shared, request: Request, next: Next) -> Response {
    let served = app.pages_served.fetch_add(1, Ordering::AcqRel) + 1;
    if app.quits_after.is_some_and(|limit| served > limit) {
        eprintln!("quitting by itself after serving {} pages", served - 1);
        std::process::exit(1);
    }
    if !app.loops {
        return next.run(request).await;
    }
    let here = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    (StatusCode::FOUND, [(header::LOCATION, here)]).into_response()
}

/// Pages answer 503 while the app warms up, and after SIGTERM when it shuts down by
/// refusing them.
async fn unavailable(State(app): Shared, request: Request, next: Next) -> Response {
    if app.warming() {
        return (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response();
    }
    if app.refusing.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    next.run(request).await
}

/// With `check_origin`, a post from another origin than the one the app believes it
/// serves is refused: behind a TLS proxy whose X-Forwarded-Proto it ignores, that is every
/// browser's post.
async fn same_origin(State(app): Shared, ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request, next: Next) -> Response {
    let safe = matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    let origin = request.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let (true, false, Some(origin)) = (app.check_origin, safe, origin) {
        let seen = seen(&app, peer, request.headers());
        let own = format!("{}://{}", seen.scheme, seen.host);
        if origin != own {
            return (StatusCode::FORBIDDEN, format!("cross-origin post refused: Origin {origin} is not {own}")).into_response();
        }
    }
    next.run(request).await
}

async fn index(State(app): Shared) -> Html<String> {
    page(&app, "replicheck demo", r#"<ul><li><a href="/login">Sign in</a></li><li><a href="/account">Account</a></li><li><a href="/transfer">Transfer</a></li><li><a href="/whoami">Who am I</a></li></ul>"#)
}

fn page(app: &App, title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}<footer>served by {}</footer></body></html>",
        app.replica
    ))
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .flatten()
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Secure cookies when the app believes the client used https.
fn set_cookie(app: &App, headers: &HeaderMap, peer: SocketAddr, name: &str, value: String) -> (header::HeaderName, String) {
    app.leak(name, &value);
    let https = seen(app, peer, headers).scheme == "https";
    let cookie = Cookie::build((name.to_owned(), value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(https)
        .build();
    (header::SET_COOKIE, cookie.to_string())
}

/// An antiforgery pair: the cookie and the form token carry the same random id, each
/// protected under its own purpose. The cookie is reused while it is readable.
fn antiforgery_pair(app: &App, headers: &HeaderMap) -> (Option<String>, String) {
    let existing = cookie_value(headers, ANTIFORGERY_COOKIE).and_then(|c| app.keys.ring().unprotect("antiforgery-cookie", &c));
    let (id, new_cookie) = match existing {
        Some(id) => (id, None),
        None => {
            let id: [u8; 16] = rand::random();
            (id.to_vec(), Some(app.keys.ring().protect("antiforgery-cookie", &id)))
        }
    };
    let token = app.keys.ring().protect("antiforgery-form", &id);
    app.leak("antiforgery token", &token);
    (new_cookie, token)
}

fn antiforgery_valid(app: &App, headers: &HeaderMap, token: &str) -> bool {
    let cookie = cookie_value(headers, ANTIFORGERY_COOKIE).and_then(|c| app.keys.ring().unprotect("antiforgery-cookie", &c));
    let form = app.keys.ring().unprotect("antiforgery-form", token);
    matches!((cookie, form), (Some(a), Some(b)) if a == b)
}

fn form_page(app: &App, headers: &HeaderMap, peer: SocketAddr, title: &str, action: &str, fields: &str) -> Response {
    let (cookie, token) = antiforgery_pair(app, headers);
    let html = page(
        app,
        title,
        &format!(r#"<form method="post" action="{action}"><input type="hidden" name="{TOKEN_FIELD}" value="{token}">{fields}<button type="submit">Send</button></form>"#),
    );
    match cookie {
        Some(cookie) => ([set_cookie(app, headers, peer, ANTIFORGERY_COOKIE, cookie)], html).into_response(),
        None => html.into_response(),
    }
}

async fn login_form(State(app): Shared, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    form_page(&app, &headers, peer, "Sign in", "/login", r#"<label>User <input name="username"></label><label>Password <input type="password" name="password"></label>"#)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(rename = "__csrf", default)]
    token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(State(app): Shared, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    if !antiforgery_valid(&app, &headers, &form.token) {
        return (StatusCode::BAD_REQUEST, page(&app, "Bad request", "<p>The antiforgery token could not be validated.</p>")).into_response();
    }
    if form.username != app.username || form.password != app.password {
        return page(&app, "Sign in", "<p>Invalid user name or password.</p>").into_response();
    }
    if let Some(path) = &app.audit_log
        && let Err(err) = audit(path, &format!("{} signed in on {}", form.username, app.replica))
    {
        println!("cannot write the audit log {}: {err}", path.display());
        return (StatusCode::INTERNAL_SERVER_ERROR, page(&app, "Error", "<p>Sign-in could not be recorded.</p>")).into_response();
    }
    let ticket = app.keys.ring().protect("auth", form.username.as_bytes());
    // An absolute URL, as many frameworks build them: the scheme the app believes shows.
    let seen = seen(&app, peer, &headers);
    let account = format!("{}://{}/account", seen.scheme, seen.host);
    ([set_cookie(&app, &headers, peer, AUTH_COOKIE, ticket)], Redirect::to(&account)).into_response()
}

/// Appends a line to the audit log, making its directory if there is none yet.
fn audit(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(file, "{line}")
}

async fn account(State(app): Shared, headers: HeaderMap) -> Response {
    let user = cookie_value(&headers, AUTH_COOKIE)
        .and_then(|c| app.keys.ring().unprotect("auth", &c))
        .and_then(|u| String::from_utf8(u).ok());
    match user {
        Some(user) => page(&app, "Account", &format!("<p>Signed in as {user}</p>")).into_response(),
        None => Redirect::to("/login?ReturnUrl=%2Faccount").into_response(),
    }
}

async fn transfer_form(State(app): Shared, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    form_page(&app, &headers, peer, "Transfer", "/transfer", r#"<label>Amount <input name="amount" value="1"></label>"#)
}

#[derive(Deserialize)]
struct TransferForm {
    #[serde(rename = "__csrf", default)]
    token: String,
    #[serde(default)]
    amount: String,
}

async fn transfer(State(app): Shared, headers: HeaderMap, Form(form): Form<TransferForm>) -> Response {
    if !antiforgery_valid(&app, &headers, &form.token) {
        return (StatusCode::BAD_REQUEST, page(&app, "Bad request", "<p>The antiforgery token could not be validated.</p>")).into_response();
    }
    page(&app, "Transfer", &format!("<p>Transfer accepted: {}</p>", html_escape(&form.amount))).into_response()
}

#[derive(Deserialize)]
struct NoteForm {
    #[serde(default)]
    note: String,
}

async fn session_set(State(app): Shared, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, Form(form): Form<NoteForm>) -> Response {
    let existing = cookie_value(&headers, SESSION_COOKIE).and_then(|c| app.keys.ring().unprotect("session", &c));
    let (id, cookie) = match existing {
        Some(id) => (String::from_utf8_lossy(&id).into_owned(), None),
        None => {
            let id = format!("{:032x}", rand::random::<u128>());
            let cookie = app.keys.ring().protect("session", id.as_bytes());
            (id, Some(cookie))
        }
    };
    if let Err(err) = app.store.set(&format!("session:{id}"), &form.note).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("session store failed: {err}")).into_response();
    }
    let body = page(&app, "Session", "<p>Stored in the session.</p>");
    match cookie {
        Some(cookie) => ([set_cookie(&app, &headers, peer, SESSION_COOKIE, cookie)], body).into_response(),
        None => body.into_response(),
    }
}

async fn session_get(State(app): Shared, headers: HeaderMap) -> Response {
    let id = cookie_value(&headers, SESSION_COOKIE)
        .and_then(|c| app.keys.ring().unprotect("session", &c))
        .map(|id| String::from_utf8_lossy(&id).into_owned());
    let note = match id {
        Some(id) => match app.store.get(&format!("session:{id}")).await {
            Ok(note) => note,
            Err(err) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("session store failed: {err}")).into_response(),
        },
        None => None,
    };
    match note {
        Some(note) => page(&app, "Session", &format!("<p>Session note: {}</p>", html_escape(&note))).into_response(),
        None => page(&app, "Session", "<p>The session is empty.</p>").into_response(),
    }
}

async fn cache_set(State(app): Shared, Path(key): Path<String>, body: String) -> Response {
    match app.store.set(&format!("cache:{key}"), &body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cache failed: {err}")).into_response(),
    }
}

async fn cache_get(State(app): Shared, Path(key): Path<String>) -> Response {
    match app.store.get(&format!("cache:{key}")).await {
        Ok(Some(value)) => value.into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "not cached").into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cache failed: {err}")).into_response(),
    }
}

/// What the app believes about the request.
async fn whoami(State(app): Shared, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    let seen = seen(&app, peer, &headers);
    axum::Json(serde_json::json!({ "replica": app.replica, "scheme": seen.scheme, "client_ip": seen.client, "host": seen.host })).into_response()
}

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// Issues a signed token (JWT) for the user.
async fn token(State(app): Shared, Form(form): Form<Credentials>) -> Response {
    if form.username != app.username || form.password != app.password {
        return (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({ "error": "invalid credentials" }))).into_response();
    }
    let token = app.keys.ring().sign_token(&form.username, unix_now());
    app.leak("access token", &token);
    axum::Json(serde_json::json!({ "access_token": token, "token_type": "Bearer" })).into_response()
}

/// An API that needs a bearer token signed by this replica's key.
async fn api_me(State(app): Shared, headers: HeaderMap) -> Response {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match bearer.and_then(|token| app.keys.ring().verify_token(token, unix_now())) {
        Some(subject) => axum::Json(serde_json::json!({ "sub": subject })).into_response(),
        None => (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({ "error": "invalid token" }))).into_response(),
    }
}

async fn jwks(State(app): Shared) -> Response {
    axum::Json(app.keys.ring().jwks()).into_response()
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: Option<u64>,
}

async fn slow(Query(query): Query<SlowQuery>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(query.ms.unwrap_or(1000).min(60_000))).await;
    "slow done"
}

#[derive(Deserialize)]
struct OrderForm {
    order: String,
}

/// Accepts an order: its receipt is delivered later, by the worker (`--receipts`).
async fn accept_order(State(app): Shared, request: Request) -> Response {
    let form = match posted::<OrderForm>(request).await {
        Ok(form) => form,
        Err(rejection) => return rejection,
    };
    let Some(orders) = &app.intake.orders else { return StatusCode::NOT_FOUND.into_response() };
    match orders.accept(&form.order).await {
        Ok(()) => (StatusCode::ACCEPTED, format!("order accepted by {}", app.replica)).into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, format!("order not accepted: {err}")).into_response(),
    }
}

#[derive(Deserialize)]
struct InviteForm {
    invite: String,
}

/// Accepts an invite into the outbox: a poller sends it later (`--invites`).
async fn accept_invite(State(app): Shared, request: Request) -> Response {
    let form = match posted::<InviteForm>(request).await {
        Ok(form) => form,
        Err(rejection) => return rejection,
    };
    let Some(outbox) = &app.intake.invites else { return StatusCode::NOT_FOUND.into_response() };
    match outbox.accept(&form.invite).await {
        Ok(()) => (StatusCode::ACCEPTED, format!("invite accepted by {}", app.replica)).into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, format!("invite not accepted: {err}")).into_response(),
    }
}

/// A body posted as JSON or as a form, as APIs that serve both browsers and clients take it.
async fn posted<T: DeserializeOwned>(request: Request) -> Result<T, Response> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        Json::<T>::from_request(request, &()).await.map(|Json(body)| body).map_err(IntoResponse::into_response)
    } else {
        Form::<T>::from_request(request, &()).await.map(|Form(body)| body).map_err(IntoResponse::into_response)
    }
}

/// Ready means: warmed up, not draining, and the store answers (unless a flaw says otherwise).
async fn ready(State(app): Shared) -> Response {
    let flaws = app.readiness;
    let unready = if !flaws.ignores_shutdown && app.draining.load(Ordering::Acquire) {
        Some("draining")
    } else if !flaws.during_warmup && app.warming() {
        Some("warming up")
    } else if !flaws.ignores_store && !app.store.ping().await {
        Some("store unreachable")
    } else {
        None
    };
    match unready {
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
        None => "ready".into_response(),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

"""A small Starlette app (not replicheck's demo) served by gunicorn with uvicorn workers
(`gunicorn app:app -k uvicorn.workers.UvicornWorker -w 2`), a pre-fork server: the master
holds the listener, closes it at SIGTERM, and each worker finishes the requests it holds.

Everything a user leaves behind lives in Redis (REDIS_URL), in both modes:
- Starlette's SessionMiddleware keeps a signed cookie (secret from SESSION_SECRET) that
  holds only a session id; the session itself (the signed-in user, the note, the CSRF
  token) is a JSON value in Redis under that id (load_session / save_session below).
- Forms carry a CSRF token kept in the session (field `csrf_token`, refused with 403).
- The cache is Redis too.
So login, session, antiforgery and cache work across replicas in both modes. The accounts
are in PostgreSQL (DATABASE_URL), in a `users` table through SQLAlchemy, made by the Alembic
migration under migrations/ (`python3 -m alembic upgrade head`); a database error answers
503.

Live updates: a hub of WebSocket subscribers (`WebSocketRoute` `/hub/ws`); what a socket
sends, or `POST /hub/publish` (form `message`, an API: no CSRF token), is published to them.
HUB chooses how a message reaches them:
- "memory" (misconfigured, the default): the sockets of this process, in a set, as the
  in-memory connection manager of Starlette's and FastAPI's WebSocket examples. It works in
  one process only, so broken.toml runs one worker (`-w 1`) and scales by replicas; a
  subscriber on one replica never sees what was published through another.
- "redis": published through Redis pub/sub (redis.asyncio). Each worker (gunicorn forks
  them) runs its own relay task, started by the lifespan, subscribed to the channel, writing
  each message to that worker's sockets and subscribing again after losing Redis. At
  SIGTERM uvicorn closes every socket (1012) and the handlers end, so the worker can stop.

A rate limit: slowapi's `Limiter` allows `POST /password-reset` (form `email`, an API: no
CSRF token) 5 times a minute per client, keyed on slowapi's `get_remote_address`, the
client as uvicorn's ProxyHeadersMiddleware made it (`--forwarded-allow-ips`), and answers
429 beyond; its counts are where RATE_LIMIT_STORAGE says: `memory://` (misconfigured, the
default: this worker's memory), or the run's Redis. Uploads: `POST /uploads` (multipart,
field `file`, through python-multipart) is saved under its file name in UPLOAD_DIR, and
`GET /uploads/NAME` answers it.

Misconfigured (broken.toml), the faults are around the app, not in it:
- Every replica runs the migration as it starts (`alembic upgrade head && exec gunicorn`),
  without a lock: replicas started together on an empty database both find it unmigrated,
  and the second fails on the first's table.
- Readiness does not ask the database either (no READINESS_CHECKS_DATABASE).
- Redis without persistence: a Redis restart forgets every session and cache entry.
- No READINESS_CHECKS_REDIS: readiness answers 200 while Redis is down and every page
  that needs it fails.
- `--forwarded-allow-ips '*'`: uvicorn's ProxyHeadersMiddleware believes
  X-Forwarded-For/-Proto from anyone who connects.
- gunicorn closes its listener at SIGTERM, while a Kubernetes-style balancer still
  routes to the replica for a while.
- The rate limit counts in the worker's memory (`memory://`): per replica, forgotten at a
  restart; and since uvicorn believes anyone's X-Forwarded-For, a client that forges a new
  address each try is never limited.
- UPLOAD_DIR is the replica's own disk: another replica has none of its uploads.

Configured (fixed.toml): the migration run once per deployment, before the replicas start
(the target's seed_command), Redis with AOF persistence, readiness 503 when Redis or the
database does not answer (READINESS_CHECKS_REDIS=1, READINESS_CHECKS_DATABASE=1), `--forwarded-allow-ips` the proxy's address only (so
the limit's key is the client behind the proxy, and a stranger's forged header is
ignored), the limit's counts in the run's Redis (RATE_LIMIT_STORAGE), uploads in a
directory every replica shares, and a load balancer that drains the instance before it
gets SIGTERM.

Both: `--graceful-timeout 8` (under the 10s grace) lets the workers finish the requests
in flight after SIGTERM; a Redis error answers 503.
"""
import asyncio
import contextlib
import hashlib
import html
import json
import os
import secrets
import tempfile

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

SESSION_TTL = 24 * 3600
READINESS_CHECKS_REDIS = os.environ.get("READINESS_CHECKS_REDIS") == "1"
READINESS_CHECKS_DATABASE = os.environ.get("READINESS_CHECKS_DATABASE") == "1"
HUB = os.environ.get("HUB", "memory")
HUB_CHANNEL = "starlette-zoo:hub"
if HUB not in ("memory", "redis"):
    raise SystemExit(f'HUB={HUB}: "memory" or "redis"')
UPLOAD_DIR = os.environ["UPLOAD_DIR"]

# The rate limit, per client: memory:// (this worker's) or the run's Redis (redis://...),
# whose sync client slowapi calls in the request; bounded, so a paused Redis cannot hang a
# worker (an error answers 503, as the store's do).
limiter = Limiter(
    key_func=get_remote_address,
    storage_uri=os.environ.get("RATE_LIMIT_STORAGE", "memory://"),
    storage_options={"socket_timeout": 1, "socket_connect_timeout": 0.5}
    if os.environ.get("RATE_LIMIT_STORAGE", "memory://").startswith("redis") else {},
    key_prefix="starlette-zoo",
)

# One client (and connection pool) per worker process: gunicorn imports this module in
# each worker after the fork. A connection broken by a Redis restart is retried once.
store = aioredis.from_url(
    os.environ["REDIS_URL"], decode_responses=True, socket_timeout=1, socket_connect_timeout=0.5,
    retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])


# The accounts' database, one pool per worker; a connection a restart of the server broke
# is found by the ping before use and replaced.
database = create_engine(
    os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1),
    pool_pre_ping=True, connect_args={"connect_timeout": 1})


def password_matches(user, password):
    with database.connect() as db:
        row = db.execute(text("SELECT password_sha256 FROM users WHERE name = :name"), {"name": user}).first()
    return row is not None and secrets.compare_digest(row[0], hashlib.sha256(password.encode()).hexdigest())


def ping_database():
    with database.connect() as db:
        db.execute(text("SELECT 1"))


async def load_session(request):
    sid = request.session.get("sid")
    raw = await store.get(f"session:{sid}") if sid else None
    return json.loads(raw) if raw else {}


async def save_session(request, data, new_id=False):
    sid = request.session.get("sid")
    if new_id or not sid:
        if sid:
            await store.delete(f"session:{sid}")
        sid = request.session["sid"] = secrets.token_urlsafe(24)
    await store.set(f"session:{sid}", json.dumps(data), ex=SESSION_TTL)


async def csrf_field(request, data):
    if "csrf" not in data:
        data["csrf"] = secrets.token_urlsafe(32)
        await save_session(request, data)
    return f'<input type="hidden" name="csrf_token" value="{data["csrf"]}">'


def csrf_refused(form, data):
    sent, expected = form.get("csrf_token", ""), data.get("csrf", "")
    if expected and secrets.compare_digest(sent, expected):
        return None
    return PlainTextResponse("CSRF token missing or incorrect", status_code=403)


def page(title, body):
    return HTMLResponse(f"<!doctype html><html><head><title>{title}</title></head>"
                        f"<body><h1>{title}</h1>{body}</body></html>")


async def home(request):
    return page("Notes", '<p><a href="/login">Log in</a></p>')


async def ready(request):
    if READINESS_CHECKS_REDIS:
        try:
            await store.ping()
        except RedisError:
            return PlainTextResponse("redis not answering", status_code=503)
    if READINESS_CHECKS_DATABASE:
        try:
            await run_in_threadpool(ping_database)
        except SQLAlchemyError:
            return PlainTextResponse("database not answering", status_code=503)
    return PlainTextResponse("ready")


async def slow(request):
    ms = min(int(request.query_params.get("ms", "0")), 60_000)
    await asyncio.sleep(ms / 1000)
    return PlainTextResponse(f"slept {ms} ms")


async def whoami(request):
    # What uvicorn's ProxyHeadersMiddleware (--forwarded-allow-ips) made of the request.
    return JSONResponse({"scheme": request.url.scheme, "client_ip": request.client.host})


async def login_form(request, message=""):
    data = await load_session(request)
    return page("Log in", f"""<p>{html.escape(message)}</p>
<form action="/login" method="post">{await csrf_field(request, data)}
<input name="username"> <input type="password" name="password">
<input type="submit" value="Log in"></form>""")


async def login(request):
    if request.method == "GET":
        return await login_form(request)
    form, data = await request.form(), await load_session(request)
    if refused := csrf_refused(form, data):
        return refused
    user = form.get("username", "")
    if not await run_in_threadpool(password_matches, user, form.get("password", "")):
        return await login_form(request, "Invalid username or password.")
    # A new session id (and CSRF token) for the signed-in user.
    await save_session(request, {"user": user, "csrf": secrets.token_urlsafe(32)}, new_id=True)
    return RedirectResponse("/account", status_code=303)


async def account(request):
    user = (await load_session(request)).get("user")
    if not user:
        return RedirectResponse("/login", status_code=303)
    return page("Account", f"<p>Signed in as {html.escape(user)}</p>")


async def transfer(request):
    data = await load_session(request)
    if request.method == "GET":
        return page("Transfer", f"""<form action="/transfer" method="post">{await csrf_field(request, data)}
<input name="amount" value="1"> <input type="submit" value="Send"></form>""")
    form = await request.form()
    if refused := csrf_refused(form, data):
        return refused
    return page("Transfer", f"<p>Transfer accepted: {html.escape(form.get('amount', ''))}</p>")


async def session_note(request):
    # An API endpoint: no form, no CSRF token.
    data = await load_session(request)
    if request.method == "POST":
        data["note"] = (await request.form()).get("note", "")
        await save_session(request, data)
        return page("Session", "<p>Kept.</p>")
    return page("Session", f"<p>Note: {html.escape(data.get('note', ''))}</p>")


async def cache(request):
    key = "cache:" + request.path_params["key"]
    if request.method == "PUT":
        await store.set(key, (await request.body()).decode())
        return Response(status_code=204)
    value = await store.get(key)
    if value is None:
        return PlainTextResponse("not cached", status_code=404)
    return PlainTextResponse(value)


@limiter.limit("5/minute")
async def password_reset(request):
    """`POST /password-reset` (form `email`): 202; slowapi answers 429 once the client is over
    its limit. An API: no CSRF token."""
    email = (await request.form()).get("email", "")
    return PlainTextResponse(f"If {email} has an account, a reset link is on its way.", status_code=202)


def upload_path(name):
    """The path of an upload: its name alone, no directories, no hidden files."""
    name = os.path.basename(name or "")
    if not name or name.startswith(".") or not all(c.isalnum() or c in "._-" for c in name):
        return None
    return os.path.join(UPLOAD_DIR, name)


async def upload(request):
    """`POST /uploads` (multipart, field `file`): saved under its file name, 201."""
    form = await request.form()
    file = form.get("file")
    if file is None or isinstance(file, str):
        return PlainTextResponse("a file is required (field file)", status_code=400)
    path = upload_path(file.filename)
    if path is None:
        return PlainTextResponse("bad file name", status_code=400)
    content = await file.read()
    os.makedirs(UPLOAD_DIR, exist_ok=True)
    # Written beside, then renamed: a reader never sees half a file.
    with tempfile.NamedTemporaryFile(dir=UPLOAD_DIR, prefix=".upload-", delete=False) as partial:
        partial.write(content)
    os.chmod(partial.name, 0o644)
    os.replace(partial.name, path)
    return PlainTextResponse(f"uploaded {os.path.basename(path)}", status_code=201)


async def uploaded(request):
    """`GET /uploads/NAME`: the file, or 404."""
    path = upload_path(request.path_params["name"])
    if path is None or not os.path.isfile(path):
        return PlainTextResponse("no such upload", status_code=404)
    return FileResponse(path)


# ---- live updates -------------------------------------------------------------------------
SOCKETS = set()  # this worker's subscribers


async def deliver(message):
    """Writes a message to every socket of this worker."""
    for socket in list(SOCKETS):
        try:
            await socket.send_text(message)
        except Exception:  # closed meanwhile
            SOCKETS.discard(socket)


async def publish(message):
    if HUB == "redis":
        await store.publish(HUB_CHANNEL, message)
    else:
        await deliver(message)


async def relay():
    """Messages from Redis to this worker's sockets, subscribed again after losing Redis."""
    while True:
        # Its own connection, which waits for messages as long as none come.
        client = aioredis.from_url(os.environ["REDIS_URL"], decode_responses=True, socket_connect_timeout=0.5)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(HUB_CHANNEL)
            print(f"hub: worker {os.getpid()} subscribed to {HUB_CHANNEL}", flush=True)
            async for message in pubsub.listen():
                if message["type"] == "message":
                    await deliver(message["data"])
            print(f"hub: the subscription to {HUB_CHANNEL} ended; subscribing again", flush=True)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # Redis gone, restarting or refusing: try again
            print(f"hub: lost Redis ({type(err).__name__}: {err}); subscribing again", flush=True)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()
        await asyncio.sleep(0.5)


async def hub_socket(websocket):
    """`/hub/ws`: every message the hub gets; a text message the socket sends is published.
    The handler waits on what the client sends, so it ends as soon as the socket closes,
    uvicorn's close at shutdown included."""
    await websocket.accept()
    SOCKETS.add(websocket)
    try:
        while True:
            message = await websocket.receive_text()
            try:
                await publish(message)
            except RedisError as err:
                print(f"hub: a message from a socket was not published: {err}", flush=True)
    except WebSocketDisconnect:
        pass
    finally:
        SOCKETS.discard(websocket)


async def hub_publish(request):
    """`POST /hub/publish` (form `message`): 202 once handed to the hub (a Redis error: 503)."""
    await publish((await request.form()).get("message", ""))
    return PlainTextResponse("published", status_code=202)


async def store_down(request, exc):
    return PlainTextResponse(f"session/cache store unavailable: {type(exc).__name__}", status_code=503)


async def database_down(request, exc):
    return PlainTextResponse(f"database unavailable: {type(exc).__name__}", status_code=503)


@contextlib.asynccontextmanager
async def lifespan(app):
    # Each worker runs this after the fork: one relay per worker.
    relaying = asyncio.create_task(relay()) if HUB == "redis" else None
    yield
    if relaying:
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying
    await store.aclose()


app = Starlette(
    routes=[
        Route("/", home), Route("/ready", ready), Route("/slow", slow), Route("/whoami", whoami),
        Route("/login", login, methods=["GET", "POST"]), Route("/account", account),
        Route("/transfer", transfer, methods=["GET", "POST"]),
        Route("/session", session_note, methods=["GET", "POST"]),
        Route("/cache/{key}", cache, methods=["GET", "PUT"]),
        WebSocketRoute("/hub/ws", hub_socket), Route("/hub/publish", hub_publish, methods=["POST"]),
        Route("/password-reset", password_reset, methods=["POST"]),
        Route("/uploads", upload, methods=["POST"]), Route("/uploads/{name}", uploaded),
    ],
    middleware=[Middleware(SessionMiddleware, secret_key=os.environ["SESSION_SECRET"])],
    exception_handlers={RedisError: store_down, SQLAlchemyError: database_down, RateLimitExceeded: _rate_limit_exceeded_handler},
    lifespan=lifespan,
)
app.state.limiter = limiter

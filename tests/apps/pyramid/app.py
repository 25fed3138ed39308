#!/usr/bin/env python3
"""A small Pyramid app (not replicheck's demo) with Pyramid's own machinery: a signed
cookie session (SignedCookieSessionFactory), session CSRF tokens (csrf_token field or
X-CSRF-Token header, refused with 400; for https requests Pyramid also checks Origin or
Referer), served by waitress with its own proxy-header handling. The deployment's
environment picks the mode:

Misconfigured (broken.toml: no APP_SECRET, TRUSTED_PROXY, DRAIN_MS; APP_CACHE=memory):
- each process signs sessions (the user, the note, the CSRF token) with its own random
  secret: they are lost on another replica and after a restart;
- the cache is in process memory: per replica, empty after a restart;
- waitress without `trusted_proxy` strips X-Forwarded-* from every request
  (clear_untrusted_proxy_headers, on by default): behind the TLS proxy the app believes
  http and sees the proxy's address. Posts still pass: Pyramid checks Origin only when
  request.scheme is https, so a browser's https Origin is never compared;
- waitress installs no SIGTERM handler: Python's default ends the process at once, the
  listener with it and the requests in flight are cut;
- its OpenTelemetry resource is built by hand (APP_TELEMETRY_NAME=host): the service is
  named after the host and the process, and no service.instance.id is reported.

Configured (fixed.toml): APP_SECRET from the deployment; the cache in a SQLite file all
replicas share; waitress `trusted_proxy` is exactly the proxy (TRUSTED_PROXY) with
`trusted_proxy_headers` x-forwarded-for/-proto/-host, as waitress documents (from
anyone else those headers are stripped); at SIGTERM readiness answers 503 and the server
keeps serving DRAIN_MS, then closes its listener, finishes the requests in flight and
exits 0. Waitress has no graceful stop of its own, so serve_draining runs its event loop.
Its OpenTelemetry resource comes from the environment the platform sets (see traced).

/whoami answers request.remote_addr, which waitress rewrites from the proxy's last
X-Forwarded-For hop; WebOb's request.client_addr would take the first hop, which the
client writes.

    python3 app.py PORT
"""
import atexit
import html
import os
import secrets
import signal
import socket
import sqlite3
import sys
import threading
import time

from pyramid.config import Configurator
from pyramid.csrf import SessionCSRFStoragePolicy, get_csrf_token
from pyramid.httpexceptions import HTTPFound
from pyramid.response import Response
from pyramid.session import SignedCookieSessionFactory
from waitress import serve, wasyncore
from waitress.server import create_server

USERS = {"bob": "hunter22"}
DRAINING = threading.Event()  # set at SIGTERM (configured mode): readiness fails


class MemoryCache:
    def __init__(self):
        self.values, self.lock = {}, threading.Lock()

    def get(self, key):
        with self.lock:
            return self.values.get(key)

    def put(self, key, value):
        with self.lock:
            self.values[key] = value


class SqliteCache:
    def __init__(self, path):
        self.path = path
        with sqlite3.connect(path, timeout=5) as db:
            db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)")

    def get(self, key):
        with sqlite3.connect(self.path, timeout=5) as db:
            row = db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
            return row[0] if row else None

    def put(self, key, value):
        with sqlite3.connect(self.path, timeout=5) as db:
            db.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))


def page(title, body):
    return Response(f"<!doctype html><html><body><h1>{title}</h1>{body}</body></html>")


def index(request):
    return page("Notes", '<p><a href="/login">Log in</a></p>')


def up(request):
    return Response("draining", status=503) if DRAINING.is_set() else Response("up")


def slow(request):
    ms = min(max(int(request.GET.get("ms", "0") or 0), 0), 60_000)
    time.sleep(ms / 1000)
    return Response(f"slept {ms} ms")


def whoami(request):
    return Response(json_body={"scheme": request.scheme, "client_ip": request.remote_addr})


def login_form(request):
    token = get_csrf_token(request)
    return page("Log in", f"""<form action="/login" method="post">
<input type="hidden" name="csrf_token" value="{token}">
<input type="text" name="username"> <input type="password" name="password">
<button type="submit" name="form.submitted" value="Log In">Log In</button></form>""")


def login(request):
    user = request.POST.get("username", "")
    if USERS.get(user) != request.POST.get("password"):
        return page("Log in", "<p>Failed login</p>")
    request.session.invalidate()
    request.session["user"] = user
    return HTTPFound(location="/home")


def home(request):
    user = request.session.get("user")
    if not user:
        return HTTPFound(location="/login")
    return page("Home", f"<p>Hello, {html.escape(user)}</p>")


def transfer_form(request):
    token = get_csrf_token(request)
    return page("Transfer", f"""<form action="/transfer" method="post">
<input type="hidden" name="csrf_token" value="{token}"><input name="amount" value="1">
<button type="submit">Send</button></form>""")


def transfer(request):
    return page("Transfer", f"<p>Transfer accepted: {html.escape(request.POST.get('amount', ''))}</p>")


def keep_note(request):
    request.session["note"] = request.POST.get("note", "")
    return page("Session", "<p>Kept.</p>")


def show_note(request):
    return page("Session", f"<p>Note: {html.escape(request.session.get('note', ''))}</p>")


def write_cache(request):
    CACHE.put(request.matchdict["key"], request.body.decode())
    return Response(status=204)


def read_cache(request):
    value = CACHE.get(request.matchdict["key"])
    return Response(value) if value is not None else Response("not cached", status=404)


def make_app():
    secret = os.environ.get("APP_SECRET") or secrets.token_hex(32)
    with Configurator() as config:
        config.set_session_factory(SignedCookieSessionFactory(secret, httponly=True))
        config.set_csrf_storage_policy(SessionCSRFStoragePolicy())
        config.set_default_csrf_options(require_csrf=True)
        routes = [
            ("index", "/", "GET", index, True),
            ("up", "/up", "GET", up, True),
            ("slow", "/slow", "GET", slow, True),
            ("whoami", "/whoami", "GET", whoami, True),
            ("login_form", "/login", "GET", login_form, True),
            ("login", "/login", "POST", login, True),
            ("home", "/home", "GET", home, True),
            ("transfer_form", "/transfer", "GET", transfer_form, True),
            ("transfer", "/transfer", "POST", transfer, True),
            # The session and cache endpoints stand for an API: no form, no token.
            ("keep_note", "/session", "POST", keep_note, False),
            ("show_note", "/session", "GET", show_note, True),
            ("write_cache", "/cache/{key}", "PUT", write_cache, False),
            ("read_cache", "/cache/{key}", "GET", read_cache, True),
        ]
        for name, path, method, view, csrf in routes:
            config.add_route(name, path, request_method=method)
            config.add_view(view, route_name=name, require_csrf=csrf)
        return config.make_wsgi_app()


def traced(app):
    """OpenTelemetry for the WSGI app, when the platform gives an OTLP endpoint.

    Configured: the SDK's resource from the environment (Resource.create merges
    OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, where the platform puts each replica's
    service.instance.id), a batch exporter that reads OTEL_EXPORTER_OTLP_ENDPOINT, and the
    WSGI middleware, which continues each request's traceparent.
    Misconfigured (APP_TELEMETRY_NAME=host): the resource built by hand, naming the service
    after the host and the process and ignoring what the environment says."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return app
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if os.environ.get("APP_TELEMETRY_NAME") == "host":
        resource = Resource({"service.name": f"pyramid-{socket.gethostname()}-{os.getpid()}"})
    else:
        resource = Resource.create()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # flushes what is buffered at a clean exit
    return OpenTelemetryMiddleware(app)


def serve_draining(app, drain_ms, **adjustments):
    """waitress's event loop, run one poll at a time so that SIGTERM can drain: readiness
    fails at once, the listener stays open drain_ms, then closes, and the loop goes on
    until every request in flight has been answered and sent."""
    socket_map = {}
    server = create_server(app, map=socket_map, **adjustments)
    term = []

    def on_sigterm(signum, frame):
        if not term:
            term.append(time.monotonic())
            DRAINING.set()
            print(f"SIGTERM: readiness fails, serving {drain_ms} ms more", flush=True)

    signal.signal(signal.SIGTERM, on_sigterm)
    listening = True
    while True:
        wasyncore.loop(timeout=0.1, map=socket_map, use_poll=True, count=1)
        if not term:
            continue
        if listening and time.monotonic() - term[0] >= drain_ms / 1000:
            print("closing the listener; finishing the requests in flight", flush=True)
            wasyncore.dispatcher.close(server)  # the listening socket only; the channels stay
            listening = False
        channels = list(server.active_channels.values())
        if not listening and not any(c.requests or c.total_outbufs_len for c in channels):
            break
    server.task_dispatcher.shutdown()
    print("stopped", flush=True)


if __name__ == "__main__":
    spec = os.environ.get("APP_CACHE", "memory")
    CACHE = SqliteCache(spec[len("sqlite:"):]) if spec.startswith("sqlite:") else MemoryCache()
    port = int(sys.argv[1])
    options = {"host": "127.0.0.1", "port": port}
    if os.environ.get("TRUSTED_PROXY"):
        options.update(trusted_proxy=os.environ["TRUSTED_PROXY"],
                       trusted_proxy_headers="x-forwarded-for x-forwarded-proto x-forwarded-host")
    print(f"notes (pyramid) on 127.0.0.1:{port}", flush=True)
    if os.environ.get("DRAIN_MS"):
        serve_draining(traced(make_app()), int(os.environ["DRAIN_MS"]), **options)
    else:
        serve(traced(make_app()), _quiet=True, **options)

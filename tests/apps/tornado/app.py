#!/usr/bin/env python3
"""A small Tornado app (not replicheck's demo) served by Tornado's own HTTPServer, one
process per replica. It uses Tornado's own machinery: `set_signed_cookie` /
`get_current_user` / `@authenticated` for the login, a signed session id cookie for the
session, and `xsrf_cookies=True` (the `_xsrf` double-submit cookie, refused with 403).

Live updates: a hub of `tornado.websocket.WebSocketHandler` subscribers at `/hub/ws`; what
`POST /hub/publish` (form `message`, an API: no _xsrf) or a socket's own text message
publishes reaches them.

Misconfigured (broken.toml: no COOKIE_SECRET, SHARED_DB, TRUSTED_PROXY, DRAIN_MS, HUB_REDIS):
- `cookie_secret` is drawn at random by each process (a common "secrets.token_hex()"
  in the settings): a login or session cookie signed by one replica, or before a
  restart, is refused by the others.
- Sessions and cache live in this process's memory (two dicts).
- `HTTPServer(xheaders=True)`, as the Tornado docs suggest behind a proxy: it believes
  X-Real-Ip / X-Forwarded-For / X-Forwarded-Proto from anyone who connects.
- No SIGTERM handler: Python's default ends the process at once, cutting the requests
  in flight, and the balancer's requests find nobody listening.
- The hub keeps its sockets in a set of this process, as a chat straight from the Tornado
  docs does: a message reaches only the subscribers of the replica it was published through.
- `xsrf_cookies` is fine even so: the `_xsrf` form field is compared with the `_xsrf`
  cookie, not with anything keyed by the secret, so it works on every replica.

Configured (fixed.toml):
- COOKIE_SECRET from the deployment, the same on every replica and every restart.
- SHARED_DB: sessions and cache in a SQLite file every replica shares.
- TRUSTED_PROXY: xheaders is off, and BaseHandler.prepare() applies X-Forwarded-For /
  X-Forwarded-Proto (as xheaders would) only when the peer is the proxy.
- DRAIN_MS: at SIGTERM readiness answers 503, the server keeps serving DRAIN_MS (longer
  than the balancer's deregistration delay), then stops accepting, lets the requests in
  flight finish, and exits 0.
- HUB_REDIS: the hub publishes through Redis pub/sub (redis.asyncio); one relay task per
  process is subscribed to the channel and writes each message to this process's own
  sockets, subscribing again after losing Redis. When the listener stops after SIGTERM,
  the sockets are closed (1001, going away) and the relay ends, so the process can exit.
                                                                    python3 app.py PORT
"""
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sqlite3
import sys
import time

import tornado.escape
import tornado.log
import tornado.web
import tornado.websocket
from tornado.httpserver import HTTPServer
from tornado.netutil import is_valid_ip

USERS = {"bob": "hunter22"}
TRUSTED_PROXY = os.environ.get("TRUSTED_PROXY")
STATE = {"draining": False}
IN_FLIGHT = set()
HUB_CHANNEL = "tornado-zoo:hub"


class MemoryStore(dict):
    """Sessions and cache in this process only."""

    def put(self, key, value):
        self[key] = value


class SqliteStore:
    """Sessions and cache in one SQLite file every replica opens."""

    def __init__(self, path):
        self.path = path
        with self.db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)")

    def db(self):
        return sqlite3.connect(self.path, timeout=5)

    def get(self, key):
        with self.db() as db:
            row = db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key, value):
        with self.db() as db:
            db.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))


STORE = SqliteStore(os.environ["SHARED_DB"]) if os.environ.get("SHARED_DB") else MemoryStore()


class Hub:
    """Live updates: the sockets of this process, and how a message reaches every socket that
    should see it. Without Redis (misconfigured) that is the sockets of this process only."""

    def __init__(self, redis_url=None):
        self.sockets = set()
        self.redis_url = redis_url
        self.relaying = None
        if redis_url:
            import redis.asyncio as aioredis
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.retry import Retry
            # Publishing: a connection broken by a Redis restart is retried once.
            self.redis = aioredis.from_url(
                redis_url, decode_responses=True, socket_timeout=1, socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])

    def start(self):
        if self.redis_url:
            self.relaying = asyncio.ensure_future(self.relay())

    async def publish(self, message):
        if self.redis_url:
            await self.redis.publish(HUB_CHANNEL, message)
        else:
            self.deliver(message)

    def deliver(self, message):
        for socket in list(self.sockets):
            try:
                socket.write_message(message)
            except tornado.websocket.WebSocketClosedError:
                self.sockets.discard(socket)

    async def relay(self):
        """Messages from Redis to this process's sockets, subscribed again after losing Redis."""
        import redis.asyncio as aioredis
        while True:
            # Its own connection, which waits for messages as long as none come.
            client = aioredis.from_url(self.redis_url, decode_responses=True, socket_connect_timeout=0.5)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(HUB_CHANNEL)
                print(f"hub: subscribed to {HUB_CHANNEL}", flush=True)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self.deliver(message["data"])
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

    async def stop(self):
        """Shutdown: every socket is told the server is going away; the relay ends."""
        for socket in list(self.sockets):
            socket.close(1001, "server shutting down")
        if self.relaying:
            self.relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.relaying
            await self.redis.aclose()


HUB = Hub(os.environ.get("HUB_REDIS"))


class BaseHandler(tornado.web.RequestHandler):
    def initialize(self):
        IN_FLIGHT.add(self)

    def on_finish(self):
        IN_FLIGHT.discard(self)

    def on_connection_close(self):
        IN_FLIGHT.discard(self)

    def prepare(self):
        # Configured mode: what xheaders does, for the proxy's connections only.
        if TRUSTED_PROXY and self.request.remote_ip == TRUSTED_PROXY:
            forwarded = self.request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
            if is_valid_ip(forwarded):
                self.request.remote_ip = forwarded
            proto = self.request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip()
            if proto in ("http", "https"):
                self.request.protocol = proto

    def get_current_user(self):
        user = self.get_signed_cookie("user")
        return user.decode() if user else None

    def page(self, title, body):
        self.write(f"<!doctype html><html><head><title>{title}</title></head>"
                   f"<body><h1>{title}</h1>{body}</body></html>")

    # The session: a signed cookie holding a random id, the data in STORE.
    def session(self):
        sid = self.get_signed_cookie("sid")
        data = STORE.get("session:" + sid.decode()) if sid else None
        return json.loads(data) if data else {}

    def save_session(self, data):
        sid = self.get_signed_cookie("sid")
        sid = sid.decode() if sid else secrets.token_urlsafe(24)
        STORE.put("session:" + sid, json.dumps(data))
        self.set_signed_cookie("sid", sid, httponly=True)


class ApiHandler(BaseHandler):
    """The session and cache endpoints stand for an API: no form, no _xsrf token."""

    def check_xsrf_cookie(self):
        pass


class Home(BaseHandler):
    def get(self):
        self.page("Notes", '<p><a href="/login">Log in</a></p>')


class Ready(BaseHandler):
    def get(self):
        if STATE["draining"]:
            self.set_status(503)
            self.finish("draining")
        else:
            self.finish("up")


class Slow(BaseHandler):
    async def get(self):
        ms = min(int(self.get_argument("ms", "0")), 60_000)
        await asyncio.sleep(ms / 1000)
        self.finish(f"slept {ms} ms")


class WhoAmI(BaseHandler):
    def get(self):
        self.finish({"scheme": self.request.protocol, "client_ip": self.request.remote_ip})


class Login(BaseHandler):
    def form(self, message=""):
        self.page("Log in", f"""<p>{tornado.escape.xhtml_escape(message)}</p>
<form action="/login" method="post">{self.xsrf_form_html()}
<input name="username"> <input type="password" name="password">
<input type="submit" value="Log in"></form>""")

    def get(self):
        self.form()

    def post(self):
        user = self.get_body_argument("username", "")
        if user not in USERS or USERS[user] != self.get_body_argument("password", ""):
            return self.form("Invalid username or password.")
        self.set_signed_cookie("user", user, httponly=True)
        self.redirect("/account")


class Account(BaseHandler):
    @tornado.web.authenticated
    def get(self):
        self.page("Account", f"<p>Signed in as {tornado.escape.xhtml_escape(self.current_user)}</p>")


class Transfer(BaseHandler):
    def get(self):
        self.page("Transfer", f"""<form action="/transfer" method="post">{self.xsrf_form_html()}
<input name="amount" value="1"> <input type="submit" value="Send"></form>""")

    def post(self):
        amount = tornado.escape.xhtml_escape(self.get_body_argument("amount", ""))
        self.page("Transfer", f"<p>Transfer accepted: {amount}</p>")


class Session(ApiHandler):
    def get(self):
        note = tornado.escape.xhtml_escape(self.session().get("note", ""))
        self.page("Session", f"<p>Note: {note}</p>")

    def post(self):
        data = self.session()
        data["note"] = self.get_body_argument("note", "")
        self.save_session(data)
        self.page("Session", "<p>Kept.</p>")


class Cache(ApiHandler):
    def get(self, key):
        value = STORE.get("cache:" + key)
        if value is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "text/plain")
        self.finish(value)

    def put(self, key):
        STORE.put("cache:" + key, self.request.body.decode())
        self.set_status(204)


class HubSocket(tornado.websocket.WebSocketHandler):
    """`/hub/ws`: every message the hub gets; a text message the socket sends is published."""

    def open(self):
        HUB.sockets.add(self)

    async def on_message(self, message):
        try:
            await HUB.publish(message)
        except Exception as err:
            print(f"hub: a message from a socket was not published: {err}", flush=True)

    def on_close(self):
        HUB.sockets.discard(self)


class Publish(ApiHandler):
    """`POST /hub/publish` (form `message`): 202 once handed to the hub, 503 if it cannot be."""

    async def post(self):
        try:
            await HUB.publish(self.get_body_argument("message", ""))
        except Exception as err:
            self.set_status(503)
            return self.finish(f"not published: {type(err).__name__}")
        self.set_status(202)
        self.finish("published")


def make_app():
    return tornado.web.Application(
        [(r"/", Home), (r"/up", Ready), (r"/slow", Slow), (r"/whoami", WhoAmI),
         (r"/login", Login), (r"/account", Account), (r"/transfer", Transfer),
         (r"/session", Session), (r"/cache/([^/]+)", Cache),
         (r"/hub/ws", HubSocket), (r"/hub/publish", Publish)],
        cookie_secret=os.environ.get("COOKIE_SECRET") or secrets.token_hex(32),
        xsrf_cookies=True,
        login_url="/login",
    )


async def drain(server, done, drain_ms):
    """SIGTERM: not ready, keep serving while the balancer deregisters us, then stop."""
    STATE["draining"] = True
    print(f"SIGTERM: readiness 503, serving {drain_ms} ms more", flush=True)
    await asyncio.sleep(drain_ms / 1000)
    server.stop()  # closes the listener; requests in progress continue
    await HUB.stop()  # the sockets are told to go; the relay ends
    deadline = time.monotonic() + 5
    while IN_FLIGHT and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    print(f"stopped accepting; {len(IN_FLIGHT)} request(s) left in flight", flush=True)
    await server.close_all_connections()  # the idle keep-alive connections
    done.set()


async def main(port):
    tornado.log.enable_pretty_logging()
    # Misconfigured: xheaders for everyone. Configured: prepare() does it for the proxy.
    server = HTTPServer(make_app(), xheaders=not TRUSTED_PROXY)
    server.listen(port, "127.0.0.1")
    print(f"notes (tornado) on 127.0.0.1:{port}, hub {'through Redis' if HUB.redis_url else 'in this process'}", flush=True)
    HUB.start()
    done = asyncio.Event()
    if os.environ.get("DRAIN_MS"):
        drain_ms = int(os.environ["DRAIN_MS"])
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGTERM, lambda: STATE.setdefault("drain", asyncio.ensure_future(drain(server, done, drain_ms))))
    await done.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

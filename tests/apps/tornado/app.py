#!/usr/bin/env python3
"""A small Tornado app (not replicheck's demo) served by Tornado's own HTTPServer, one
process per replica. It uses Tornado's own machinery: `set_signed_cookie` /
`get_current_user` / `@authenticated` for the login, a signed session id cookie for the
session, and `xsrf_cookies=True` (the `_xsrf` double-submit cookie, refused with 403).

Misconfigured (broken.toml: no COOKIE_SECRET, SHARED_DB, TRUSTED_PROXY, DRAIN_MS):
- `cookie_secret` is drawn at random by each process (a common "secrets.token_hex()"
  in the settings): a login or session cookie signed by one replica, or before a
  restart, is refused by the others.
- Sessions and cache live in this process's memory (two dicts).
- `HTTPServer(xheaders=True)`, as the Tornado docs suggest behind a proxy: it believes
  X-Real-Ip / X-Forwarded-For / X-Forwarded-Proto from anyone who connects.
- No SIGTERM handler: Python's default ends the process at once, cutting the requests
  in flight, and the balancer's requests find nobody listening.
- `xsrf_cookies` is fine even so: the `_xsrf` form field is compared with the `_xsrf`
  cookie, not with anything keyed by the secret, so it works on every replica.

Configured (fixed.toml):
- COOKIE_SECRET from the deployment, the same on every replica and every restart.
- SHARED_DB: sessions and cache in a SQLite file every replica shares.
- TRUSTED_PROXY: xheaders is off, and BaseHandler.prepare() applies X-Forwarded-For /
  X-Forwarded-Proto (as xheaders would) only when the peer is the proxy.
- DRAIN_MS: at SIGTERM readiness answers 503, the server keeps serving DRAIN_MS (longer
  than the balancer's deregistration delay), then stops accepting, lets the requests in
  flight finish, and exits 0.                                       python3 app.py PORT
"""
import asyncio
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
from tornado.httpserver import HTTPServer
from tornado.netutil import is_valid_ip

USERS = {"bob": "hunter22"}
TRUSTED_PROXY = os.environ.get("TRUSTED_PROXY")
STATE = {"draining": False}
IN_FLIGHT = set()


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


def make_app():
    return tornado.web.Application(
        [(r"/", Home), (r"/up", Ready), (r"/slow", Slow), (r"/whoami", WhoAmI),
         (r"/login", Login), (r"/account", Account), (r"/transfer", Transfer),
         (r"/session", Session), (r"/cache/([^/]+)", Cache)],
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
    print(f"notes (tornado) on 127.0.0.1:{port}", flush=True)
    done = asyncio.Event()
    if os.environ.get("DRAIN_MS"):
        drain_ms = int(os.environ["DRAIN_MS"])
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGTERM, lambda: STATE.setdefault("drain", asyncio.ensure_future(drain(server, done, drain_ms))))
    await done.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

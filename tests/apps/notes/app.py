#!/usr/bin/env python3
"""A small web app that is not replicheck's demo, to show the target format fits any app.

Sign-in sets a cookie signed with HMAC-SHA256; /kv/<key> is a cache. Misconfigured (no
APP_SECRET, APP_STORE=memory) each process signs with its own random secret and caches in
its own memory; configured, the secret comes from the environment and the cache is a
SQLite file every process shares, or a PostgreSQL table (APP_STORE=postgresql://...).
/health says ready whatever the store does, unless APP_READY=store: then it asks the store.
With APP_MIGRATE, the PostgreSQL store creates its table as it starts, as a migration tool
run in every replica's entrypoint would: `unguarded` checks for the table and creates it
(two replicas started together both find none, and one fails), `locked` does the same
holding an advisory lock, and `sometimes` races as `unguarded` does except the second time
replicas meet at an empty database (counted in the file APP_LEDGER names): then the later
ones wait for the first, as a race that shows only now and then.
"""
import argparse
import hashlib
import hmac
import json
import os
import secrets
import signal
import sqlite3
import threading
import time
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SECRET = (os.environ.get("APP_SECRET") or secrets.token_hex(32)).encode()
USERS = {"bob": "hunter22"}
LOGIN_PAGE = """<!doctype html><html><body><h1>Notes</h1>{error}
<form method="post" action="/login">
<input name="user"> <input type="password" name="pass"> <button>Sign in</button>
</form></body></html>"""


class MemoryStore:
    def __init__(self):
        self.values, self.lock = {}, threading.Lock()

    def get(self, key):
        with self.lock:
            return self.values.get(key)

    def put(self, key, value):
        with self.lock:
            self.values[key] = value


class SqliteStore:
    def __init__(self, path):
        self.path = path
        with self.connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)")

    def connect(self):
        return sqlite3.connect(self.path, timeout=5)

    def get(self, key):
        with self.connect() as db:
            row = db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
            return row[0] if row else None

    def put(self, key, value):
        with self.connect() as db:
            db.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))


class PostgresStore:
    """The kv table comes from the deployment's schema (postgres.toml seeds it)."""

    def __init__(self, url):
        import psycopg

        self.url, self.psycopg = url, psycopg
        migrate = os.environ.get("APP_MIGRATE")
        if migrate:
            self.migrate(locked=migrate == "locked", sometimes=migrate == "sometimes")

    def migrate(self, locked, sometimes):
        with self.psycopg.connect(self.url, autocommit=True) as db:
            if locked:
                db.execute("SELECT pg_advisory_lock(4242)")
            absent = lambda: db.execute("SELECT to_regclass('kv')").fetchone()[0] is None
            if absent():
                meeting = Ledger(os.environ["APP_LEDGER"]) if sometimes else None
                if meeting and meeting.join() == 2:
                    while absent():
                        time.sleep(0.05)
                    return
                print("migrating: creating table kv", flush=True)
                time.sleep(0.5)  # a migration takes a while: long enough to overlap another's
                try:
                    db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
                finally:
                    if meeting:
                        meeting.leave()
            if locked:
                db.execute("SELECT pg_advisory_unlock(4242)")

    def get(self, key):
        with self.psycopg.connect(self.url, autocommit=True) as db:
            row = db.execute("SELECT v FROM kv WHERE k = %s", (key,)).fetchone()
            return row[0] if row else None

    def put(self, key, value):
        with self.psycopg.connect(self.url, autocommit=True) as db:
            db.execute("INSERT INTO kv (k, v) VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = excluded.v", (key, value))


class Ledger:
    """Migrations of the kv table, in a file every replica writes: a replica that finds the
    table absent opens a migration, or joins the open one, which makes a meeting."""

    def __init__(self, path):
        self.path, self.opened = path, False

    def join(self):
        """Opens a migration, or joins the open one; returns which meeting this is, 0 if none."""
        import fcntl

        with open(self.path, "a+") as ledger:
            fcntl.flock(ledger, fcntl.LOCK_EX)
            ledger.seek(0)
            lines = ledger.read().split()
            if lines and lines[-1] in ("open", "joined"):
                ledger.write("joined\n")
                return " ".join(lines + ["joined"]).replace("open joined", "meeting").count("meeting")
            ledger.write("open\n")
            self.opened = True
            return 0

    def leave(self):
        if self.opened:
            with open(self.path, "a") as ledger:
                ledger.write("done\n")


def open_store(spec):
    if spec.startswith("sqlite:"):
        return SqliteStore(spec[len("sqlite:"):])
    if spec.startswith("postgresql:"):
        return PostgresStore(spec)
    return MemoryStore()


def sign(user):
    return user + "." + hmac.new(SECRET, user.encode(), hashlib.sha256).hexdigest()


def verified_user(value):
    user, _, mac = value.rpartition(".")
    expected = hmac.new(SECRET, user.encode(), hashlib.sha256).hexdigest()
    return user if user and hmac.compare_digest(mac, expected) else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body, content_type="text/html", headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location, headers=()):
        self.reply(303, "", headers=[("Location", location), *headers])

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()

    def user(self):
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        return verified_user(cookie["notes_session"].value) if "notes_session" in cookie else None

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/health":
            try:
                if os.environ.get("APP_READY") == "store":
                    STORE.get("replicheck-health")
                self.reply(200, "ok", "text/plain")
            except Exception as error:
                self.reply(503, f"store unreachable: {error}", "text/plain")
        elif path == "/login":
            self.reply(200, LOGIN_PAGE.format(error=""))
        elif path == "/home":
            user = self.user()
            if user:
                self.reply(200, f"<p>Hello, {user}</p>")
            else:
                self.redirect("/login?next=/home")
        elif path.startswith("/kv/"):
            value = STORE.get(path[len("/kv/"):])
            if value is None:
                self.reply(404, json.dumps({"error": "not found"}), "application/json")
            else:
                self.reply(200, json.dumps({"value": value}), "application/json")
        else:
            self.reply(404, "not found", "text/plain")

    def do_POST(self):
        if urlsplit(self.path).path != "/login":
            return self.reply(404, "not found", "text/plain")
        form = parse_qs(self.body())
        user, password = form.get("user", [""])[0], form.get("pass", [""])[0]
        if USERS.get(user) != password:
            return self.reply(200, LOGIN_PAGE.format(error="<p>Wrong user or password</p>"))
        self.redirect("/home", [("Set-Cookie", f"notes_session={sign(user)}; Path=/; HttpOnly")])

    def do_PUT(self):
        path = urlsplit(self.path).path
        if not path.startswith("/kv/"):
            return self.reply(404, "not found", "text/plain")
        STORE.put(path[len("/kv/"):], self.body())
        self.reply(204, "")

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    STORE = open_store(os.environ.get("APP_STORE", "memory"))
    server = ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("notes listening", flush=True)
    server.serve_forever()

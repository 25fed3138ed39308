#!/usr/bin/env python3
"""A small Pyramid app (not replicheck's demo) with Pyramid's own machinery: a signed
cookie session (SignedCookieSessionFactory) and session CSRF tokens (csrf_token field or
X-CSRF-Token header, refused with 400).

Misconfigured (no APP_SECRET, APP_CACHE=memory) each process signs sessions with its
own random secret and caches in its own memory; configured, the secret comes from the
environment and the cache is a SQLite file every replica shares.

    python3 app.py PORT
"""
import html
import os
import secrets
import sqlite3
import sys
import threading

from pyramid.config import Configurator
from pyramid.csrf import SessionCSRFStoragePolicy, get_csrf_token
from pyramid.httpexceptions import HTTPFound
from pyramid.response import Response
from pyramid.session import SignedCookieSessionFactory
from waitress import serve

USERS = {"bob": "hunter22"}


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
            ("up", "/up", "GET", lambda request: Response("up"), True),
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


if __name__ == "__main__":
    spec = os.environ.get("APP_CACHE", "memory")
    CACHE = SqliteCache(spec[len("sqlite:"):]) if spec.startswith("sqlite:") else MemoryCache()
    port = int(sys.argv[1])
    print(f"notes (pyramid) on 127.0.0.1:{port}", flush=True)
    serve(make_app(), host="127.0.0.1", port=port, _quiet=True)

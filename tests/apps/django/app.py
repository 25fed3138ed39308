#!/usr/bin/env python3
"""A small Django app (not replicheck's demo) whose sessions are opaque ids into a store
on the server and whose every artifact rests on them: the sign-in is a session value, and
the CSRF token is kept in the session (CSRF_USE_SESSIONS), as many Django deployments
configure. Nothing is signed with a key: SECRET_KEY is one value from the deployment in
both modes. Served by waitress, which applies X-Forwarded-* from the proxy only
(`trusted_proxy`). The deployment's environment picks the mode:

Misconfigured (broken.toml: APP_STORE=memory): Django's default cache, LocMemCache, holds
the sessions (SESSION_ENGINE cache) and the app's cache: both live in each process, so a
session id one replica gave is unknown to the next (it answers as to a new visitor, with a
new sessionid once it stores anything), and a restart forgets them all.

Configured (fixed.toml: APP_STORE=DIR on the shared volume): sessions in Django's file
backend and the cache in its FileBasedCache, both in DIR, which every replica shares.

Shutdown: waitress has no graceful stop and Python's default SIGTERM ends the process at
once, so both targets declare a balancer that drains before SIGTERM, as the deployment's
would.

    python3 app.py PORT
"""
import html
import os
import sys
import time

import django
from django.conf import settings

USERS = {"carol": "correct-horse"}
STORE = os.environ.get("APP_STORE", "memory")

if STORE == "memory":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SESSIONS = {"SESSION_ENGINE": "django.contrib.sessions.backends.cache"}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": os.path.join(STORE, "cache")}}
    os.makedirs(os.path.join(STORE, "sessions"), exist_ok=True)
    SESSIONS = {"SESSION_ENGINE": "django.contrib.sessions.backends.file", "SESSION_FILE_PATH": os.path.join(STORE, "sessions")}

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ["APP_SECRET_KEY"],
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.sessions"],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    CSRF_USE_SESSIONS=True,
    CACHES=CACHES,
    **SESSIONS,
)
django.setup()

from django.core.cache import cache  # noqa: E402 (needs the settings above)
from django.http import HttpResponse, HttpResponseNotFound, HttpResponseRedirect, JsonResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_http_methods  # noqa: E402


def page(title, body):
    return HttpResponse(f"<!doctype html><html><body><h1>{title}</h1>{body}</body></html>")


def index(request):
    return page("Ledger", '<p><a href="/accounts/login/">Sign in</a></p>')


def up(request):
    return HttpResponse("up")


def slow(request):
    ms = min(max(int(request.GET.get("ms", "0") or 0), 0), 60_000)
    time.sleep(ms / 1000)
    return HttpResponse(f"slept {ms} ms")


def whoami(request):
    return JsonResponse({"scheme": request.scheme, "client_ip": request.META.get("REMOTE_ADDR")})


def form(action, fields, request):
    return f"""<form action="{action}" method="post">
<input type="hidden" name="csrfmiddlewaretoken" value="{get_token(request)}">{fields}
<button type="submit">Go</button></form>"""


@require_http_methods(["GET", "POST"])
def login(request):
    if request.method == "POST":
        user = request.POST.get("username", "")
        if USERS.get(user) == request.POST.get("password"):
            # As django.contrib.auth's login does: a new session id for the signed-in user.
            request.session.cycle_key()
            request.session["user"] = user
            return HttpResponseRedirect("/accounts/profile/")
    fields = '<input type="text" name="username"> <input type="password" name="password">'
    return page("Sign in", form("/accounts/login/", fields, request))


def profile(request):
    user = request.session.get("user")
    if not user:
        return HttpResponseRedirect("/accounts/login/")
    return page("Profile", f"<p>Signed in as {html.escape(user)}</p>")


@require_http_methods(["GET", "POST"])
def transfer(request):
    if request.method == "POST":
        return page("Transfer", f"<p>Transfer accepted: {html.escape(request.POST.get('amount', ''))}</p>")
    return page("Transfer", form("/transfer", '<input name="amount" value="1">', request))


# The session and cache endpoints stand for an API: no form, no token.
@csrf_exempt
def session_note(request):
    if request.method == "POST":
        request.session["note"] = request.POST.get("note", "")
        return page("Session", "<p>Kept.</p>")
    return page("Session", f"<p>Note: {html.escape(request.session.get('note', ''))}</p>")


@csrf_exempt
def cached(request, key):
    if request.method == "PUT":
        cache.set(f"entry:{key}", request.body.decode(), timeout=None)
        return HttpResponse(status=204)
    value = cache.get(f"entry:{key}")
    return HttpResponse(value) if value is not None else HttpResponseNotFound("not cached")


urlpatterns = [
    path("", index),
    path("up", up),
    path("slow", slow),
    path("whoami", whoami),
    path("accounts/login/", login),
    path("accounts/profile/", profile),
    path("transfer", transfer),
    path("session", session_note),
    path("cache/<str:key>", cached),
]

if __name__ == "__main__":
    from django.core.wsgi import get_wsgi_application
    from waitress import serve

    port = int(sys.argv[1])
    print(f"ledger (django) on 127.0.0.1:{port}", flush=True)
    serve(
        get_wsgi_application(),
        host="127.0.0.1",
        port=port,
        trusted_proxy=os.environ["TRUSTED_PROXY"],
        trusted_proxy_headers="x-forwarded-for x-forwarded-proto x-forwarded-host",
        _quiet=True,
    )

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

Background work, with Django's mailer pointed at the deployment's SMTP server
(EMAIL_HOST, EMAIL_PORT, and a login when EMAIL_HOST_USER is set) and the jobs' tables in
a SQLite database every replica shares (APP_DATABASE), as a "scheduler in the web process"
does it: each process starts a digest thread, which mails "Daily digest #SLOT" at each
second of the wall clock, and an outbox poller, which every 500 ms mails "Welcome" to each
invite `POST /invites` queued.

Misconfigured (APP_DIGEST=every-replica, APP_OUTBOX=unclaimed): every replica mails every
digest, and every poller reads the unsent invites, mails them and then marks them sent, so
the pollers of two replicas both mail what they read at the same tick.

Configured (APP_DIGEST=locked, APP_OUTBOX=claimed): a digest is mailed by the replica
whose INSERT of the slot into a table with a unique key succeeds, and a poller claims each
invite with an atomic UPDATE before mailing it, and only when the UPDATE changed the row.
At SIGTERM waitress stops serving and finishes its requests, and the poller finishes the
invite in hand before the process exits; what it has not claimed stays for the others.

Shutdown: waitress has no graceful stop of its own and Python's default SIGTERM ends the
process at once (the configured mode handles SIGTERM for its outbox only), so both
targets declare a balancer that drains before SIGTERM, as the deployment's would.

    python3 app.py PORT
"""
import html
import os
import signal
import sys
import threading
import time

import django
from django.conf import settings

USERS = {"carol": "correct-horse"}
STORE = os.environ.get("APP_STORE", "memory")
DIGEST = os.environ.get("APP_DIGEST", "every-replica")
OUTBOX = os.environ.get("APP_OUTBOX", "unclaimed")
DIGEST_EVERY = 1.0
POLL_EVERY = 0.5

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
    # The jobs' tables; the busy timeout lets replicas wait their turn to write.
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["APP_DATABASE"], "OPTIONS": {"timeout": 10}}},
    EMAIL_HOST=os.environ["EMAIL_HOST"],
    EMAIL_PORT=int(os.environ["EMAIL_PORT"]),
    EMAIL_HOST_USER=os.environ.get("EMAIL_HOST_USER", ""),
    EMAIL_HOST_PASSWORD=os.environ.get("EMAIL_HOST_PASSWORD", ""),
    EMAIL_TIMEOUT=5,
    DEFAULT_FROM_EMAIL="ledger@example.com",
    **SESSIONS,
)
django.setup()

from django.core.cache import cache  # noqa: E402 (needs the settings above)
from django.core.mail import send_mail  # noqa: E402
from django.db import IntegrityError, connection, models  # noqa: E402
from django.http import HttpResponse, HttpResponseNotFound, HttpResponseRedirect, JsonResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_http_methods, require_POST  # noqa: E402


class Invite(models.Model):
    """The outbox: an invite to mail, and who is mailing it."""

    email = models.CharField(max_length=254)
    created = models.FloatField()
    claimed_by = models.CharField(max_length=64, null=True)
    sent = models.BooleanField(default=False)

    class Meta:
        app_label = "ledger"
        db_table = "outbox"


class DigestLock(models.Model):
    """One row per digest slot: the replica whose insert succeeds mails it."""

    slot = models.BigIntegerField(unique=True)

    class Meta:
        app_label = "ledger"
        db_table = "digest_lock"


def create_tables():
    # What a migration would create; replicas started together create them at once.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id integer PRIMARY KEY AUTOINCREMENT, email varchar(254) NOT NULL,"
            " created real NOT NULL, claimed_by varchar(64) NULL, sent bool NOT NULL DEFAULT 0)"
        )
        cursor.execute("CREATE TABLE IF NOT EXISTS digest_lock (id integer PRIMARY KEY AUTOINCREMENT, slot bigint NOT NULL UNIQUE)")


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


# An API endpoint: no form, no token.
@csrf_exempt
@require_POST
def invite(request):
    Invite.objects.create(email=request.POST.get("email", ""), created=time.time())
    return HttpResponse("invite queued", status=202)


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
    path("invites", invite),
]

# Who claims invites: one process of one replica (a restarted replica is another).
WORKER = f"{os.environ.get('APP_REPLICA', 'ledger')}:{os.getpid()}"
stopping = threading.Event()


def ticks(every):
    """The scheduled instants, each multiple of `every` of the wall clock, as cron fires;
    the instant itself names the run, however late the thread wakes."""
    due = (time.time() // every + 1) * every
    while not stopping.wait(max(due - time.time(), 0)):
        yield due
        due = max(due + every, (time.time() // every + 1) * every)


def digest():
    for due in ticks(DIGEST_EVERY):
        slot = int(due)
        if DIGEST == "locked":
            try:
                DigestLock.objects.create(slot=slot)
            except IntegrityError:
                continue
        try:
            send_mail(f"Daily digest #{slot}", f"Here is what happened in the ledger (slot {slot}).", None, ["team@example.com"])
        except Exception as err:  # noqa: BLE001 (a failed send must not end the scheduler)
            print(f"{WORKER}: digest {slot} not sent: {err}", file=sys.stderr, flush=True)


def welcome(invite):
    # Rendering the mail takes a moment.
    time.sleep(0.05)
    send_mail("Welcome to the ledger", f"Hello {invite.email}, your account is ready.", None, [invite.email])


def poll_unclaimed(due):
    # What was queued by the tick's scheduled instant, as every replica's poller reads it.
    for invite in list(Invite.objects.filter(sent=False, created__lt=due)):
        welcome(invite)
        Invite.objects.filter(id=invite.id).update(sent=True)


def poll_claimed(due):
    for invite in list(Invite.objects.filter(claimed_by__isnull=True)):
        if stopping.is_set():
            return
        if Invite.objects.filter(id=invite.id, claimed_by__isnull=True).update(claimed_by=WORKER) != 1:
            continue
        try:
            welcome(invite)
        except Exception:
            # Handed back for the next tick, of this replica or another.
            Invite.objects.filter(id=invite.id).update(claimed_by=None)
            raise
        Invite.objects.filter(id=invite.id).update(sent=True)


def poll():
    scan = poll_claimed if OUTBOX == "claimed" else poll_unclaimed
    for due in ticks(POLL_EVERY):
        try:
            scan(due)
        except Exception as err:  # noqa: BLE001 (a failed send must not end the poller)
            print(f"{WORKER}: welcome not sent: {err}", file=sys.stderr, flush=True)


def stop(signum, frame):
    stopping.set()
    # waitress's loop ends on SystemExit: it stops serving and waits for its requests.
    raise SystemExit(0)


if __name__ == "__main__":
    from django.core.wsgi import get_wsgi_application
    from waitress import serve

    port = int(sys.argv[1])
    create_tables()
    workers = [threading.Thread(target=job, daemon=True) for job in (digest, poll)]
    for worker in workers:
        worker.start()
    if OUTBOX == "claimed":
        # A claimed invite is this process's alone: it is mailed before the process exits.
        signal.signal(signal.SIGTERM, stop)
    print(f"ledger (django) on 127.0.0.1:{port}", flush=True)
    serve(
        get_wsgi_application(),
        host="127.0.0.1",
        port=port,
        trusted_proxy=os.environ["TRUSTED_PROXY"],
        trusted_proxy_headers="x-forwarded-for x-forwarded-proto x-forwarded-host",
        _quiet=True,
    )
    for worker in workers:
        worker.join(timeout=5)

"""A small app that mails: a daily digest on a schedule, and a welcome mail for each
signup, sent by a poller from an outbox in a directory every replica shares. Standard
library only (http.server, smtplib), so nothing in it was made for replicheck.

Misconfigured (the defaults): every replica runs the digest timer, and every replica's
poller mails what the outbox holds before deleting it. Correct (DIGEST_LOCK=1,
OUTBOX_CLAIM=1): a digest occurrence is mailed by the replica that creates its lock file
first, and a poller claims an outbox entry by renaming it before mailing it."""

import os
import signal
import smtplib
import sys
import threading
import time
import uuid
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PORT = int(sys.argv[1])
REPLICA = os.environ["REPLICA"]
SMTP = (os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
SHARED = os.environ["SHARED_DIR"]
DIGEST_EVERY = 1.0
POLL_EVERY = 0.5
OUTBOX = os.path.join(SHARED, "outbox")
LOCKS = os.path.join(SHARED, "locks")
for directory in (OUTBOX, LOCKS):
    os.makedirs(directory, exist_ok=True)
stopping = threading.Event()


def mail(subject, body, to):
    message = EmailMessage()
    message["From"] = "app@example.com"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP(*SMTP, timeout=5) as smtp:
        smtp.login("app", "mail-password")
        smtp.send_message(message)


def until_next(every):
    """Seconds to the next multiple of `every` of the wall clock, as cron fires."""
    return every - (time.time() % every)


def digest():
    while not stopping.wait(until_next(DIGEST_EVERY)):
        slot = int(time.time() // DIGEST_EVERY)
        if os.environ.get("DIGEST_LOCK") == "1":
            try:
                os.close(os.open(os.path.join(LOCKS, f"digest-{slot}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
        try:
            mail(f"Daily digest #{slot}", f"Here is what happened (slot {slot}).", "team@example.com")
        except OSError as err:
            print(f"{REPLICA}: digest not sent: {err}", file=sys.stderr, flush=True)


def poll():
    while not stopping.wait(until_next(POLL_EVERY)):
        for name in sorted(os.listdir(OUTBOX)):
            path = os.path.join(OUTBOX, name)
            if name.startswith("claimed-"):
                continue
            if os.environ.get("OUTBOX_CLAIM") == "1":
                claimed = os.path.join(OUTBOX, f"claimed-{REPLICA}-{name}")
                try:
                    os.rename(path, claimed)
                except FileNotFoundError:
                    continue
                path = claimed
            try:
                with open(path) as entry:
                    email = entry.read()
            except FileNotFoundError:
                continue
            # Rendering the mail takes a moment.
            time.sleep(0.05)
            try:
                mail("Welcome aboard", f"Hello {email}, your account is ready.", email)
            except OSError as err:
                print(f"{REPLICA}: welcome not sent: {err}", file=sys.stderr, flush=True)
                continue
            try:
                os.remove(path)
            except FileNotFoundError:
                pass


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/up":
            self.answer(503 if stopping.is_set() else 200, "up")
        else:
            self.answer(200, f"mailer {REPLICA}")

    def do_POST(self):
        if self.path != "/signup":
            self.answer(404, "not found")
            return
        length = int(self.headers.get("Content-Length", "0"))
        email = parse_qs(self.rfile.read(length).decode()).get("email", [""])[0]
        entry = os.path.join(OUTBOX, f"{time.time_ns()}-{uuid.uuid4().hex}")
        with open(entry + ".tmp", "w") as out:
            out.write(email)
        os.rename(entry + ".tmp", entry)
        self.answer(202, "welcome mail on its way")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)


def stop(*_):
    stopping.set()
    threading.Thread(target=server.shutdown, daemon=True).start()


signal.signal(signal.SIGTERM, stop)
threading.Thread(target=digest, daemon=True).start()
poller = threading.Thread(target=poll, daemon=True)
poller.start()
server.serve_forever()
# What the poller has in hand is mailed before the process exits; the rest stays queued.
poller.join(timeout=4)

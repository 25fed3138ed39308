#!/usr/bin/env python3
"""A replica that misbehaves on purpose, per path: /hang never answers, /huge sends an
endless body, /trickle sends a small body a byte every half second, /garbage answers with
bytes that are not HTTP, /crash hangs up. /ready, /page and /nap (0.4 s) are fine.

With HOSTILE_QUIT=r1:N in the environment, replica r1 (the second argument) exits by
itself after serving /page N times, as an app that crashes mid-run does; with
HOSTILE_HANG=r1:N it stops answering anything instead, as a deadlocked app does."""
import os
import socketserver
import sys
import threading
import time

QUIT_REPLICA, _, QUIT_AFTER = os.environ.get("HOSTILE_QUIT", "").partition(":")
HANG_REPLICA, _, HANG_AFTER = os.environ.get("HOSTILE_HANG", "").partition(":")
served = 0
hung = threading.Event()
lock = threading.Lock()


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            request += chunk
        path = request.split(b" ", 2)[1].decode()
        if hung.is_set():
            time.sleep(600)
            return
        if path == "/ready":
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        elif path == "/nap":
            time.sleep(0.4)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnap")
        elif path == "/page":
            global served
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\npage")
            replica = sys.argv[2] if len(sys.argv) > 2 else ""
            # Counted, told and acted on under the lock: one thread says it, with one count.
            with lock:
                served += 1
                if replica == QUIT_REPLICA and served >= int(QUIT_AFTER):
                    print(f"giving up after {served} requests", file=sys.stderr, flush=True)
                    os._exit(3)
                if replica == HANG_REPLICA and served == int(HANG_AFTER):
                    print(f"hanging after {served} requests", file=sys.stderr, flush=True)
                    hung.set()
        elif path == "/hang":
            time.sleep(600)
        elif path == "/huge":
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n")
            block = b"x" * 65536
            try:
                while True:
                    self.request.sendall(block)
            except OSError:
                pass
        elif path == "/trickle":
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n")
            try:
                for _ in range(100):
                    self.request.sendall(b"x")
                    time.sleep(0.5)
            except OSError:
                pass
        elif path == "/garbage":
            self.request.sendall(b"\x00\x01\x02 this is not HTTP\r\n\r\n")
        # /crash and anything else: hang up without a word.


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    with Server(("127.0.0.1", int(sys.argv[1])), Handler) as server:
        server.serve_forever()

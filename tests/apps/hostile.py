#!/usr/bin/env python3
"""A replica that misbehaves on purpose, per path: /hang never answers, /huge sends an
endless body, /trickle sends a small body a byte every half second, /garbage answers with
bytes that are not HTTP, /crash hangs up. /ready and /page are fine.

With HOSTILE_QUIT=r1:N in the environment, replica r1 (the second argument) exits by
itself after serving /page N times, as an app that crashes mid-run does."""
import os
import socketserver
import sys
import threading
import time

QUIT_REPLICA, _, QUIT_AFTER = os.environ.get("HOSTILE_QUIT", "").partition(":")
served = 0
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
        if path == "/ready":
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        elif path == "/page":
            global served
            with lock:
                served += 1
                count = served
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\npage")
            if len(sys.argv) > 2 and sys.argv[2] == QUIT_REPLICA and count >= int(QUIT_AFTER):
                print(f"giving up after {count} requests", file=sys.stderr, flush=True)
                os._exit(3)
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

#!/usr/bin/env python3
"""A webhook receiver for textgate's end-to-end tests, on Python's own http.server.

It prints `listening PORT` once, then one JSON line per request it receives:
{"n", "path", "event", "delivery", "signature", "sig_ok", "answered", "body"}.
`sig_ok` is checked here with Python's hmac module against --secret, independently of
textgate's own code. The first --fail requests are answered 500; later ones 200.
"""
import argparse
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver would

    def log_message(self, *a):
        pass

    def do_POST(self):
        global count
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        sig = self.headers.get("X-Textgate-Signature")
        ok = None
        if args.secret:
            want = "sha256=" + hmac.new(args.secret.encode(), raw, hashlib.sha256).hexdigest()
            ok = sig is not None and hmac.compare_digest(sig, want)
        with lock:
            count += 1
            n = count
            status = 500 if n <= args.fail else 200
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            line = {
                "n": n,
                "path": self.path,
                "event": self.headers.get("X-Textgate-Event"),
                "delivery": self.headers.get("X-Textgate-Delivery"),
                "signature": sig,
                "sig_ok": ok,
                "answered": status,
                "body": body,
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
        reply = b"ok" if status == 200 else b"try again"
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--secret", default="")
    p.add_argument("--fail", type=int, default=0)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    sys.stdout.write(f"listening {server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()

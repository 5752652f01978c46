#!/usr/bin/env python3
"""A webhook receiver for textgate's end-to-end tests, on Python's own http.server.

It prints `listening PORT` once, then one JSON line per request it receives:
{"n", "path", "event", "delivery", "signature", "sig_ok", "sig_v2_ok", "answered", "body"}.
`sig_ok` and `sig_v2_ok` are checked here with Python's hmac module against --secret,
independently of textgate's own code; `verify_v2` is how a receiver should check
X-Textgate-Signature-V2 (docs/inbound.md). The first --fail requests are answered 500;
later ones 200, after --delay seconds; with --endless, the 200's body never ends.
"""
import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# How old a signed request may be: older ones are refused, so a captured request cannot be
# played to the receiver again later.
TOLERANCE_SECONDS = 300


def verify_v2(secret, headers, raw, now=None):
    """True when X-Textgate-Signature-V2 is textgate's signature of this request, made at
    most TOLERANCE_SECONDS ago. (A receiver should also refuse a delivery id it has seen.)"""
    header = headers.get("X-Textgate-Signature-V2") or ""
    fields = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    delivery = headers.get("X-Textgate-Delivery") or ""
    try:
        t = int(fields.get("t", ""))
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - t) > TOLERANCE_SECONDS:
        return False
    signed = f"{t}.{delivery}.".encode() + raw
    want = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(fields.get("v1", ""), want)

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
        ok_v2 = None
        if args.secret:
            want = "sha256=" + hmac.new(args.secret.encode(), raw, hashlib.sha256).hexdigest()
            ok = sig is not None and hmac.compare_digest(sig, want)
            ok_v2 = verify_v2(args.secret, self.headers, raw)
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
                "sig_v2_ok": ok_v2,
                "timestamp": self.headers.get("X-Textgate-Timestamp"),
                "answered": status,
                "body": body,
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
        if status == 200 and args.delay:
            time.sleep(args.delay)
        if status == 200 and args.endless:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                return
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
    p.add_argument("--delay", type=float, default=0)
    p.add_argument("--endless", action="store_true")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    sys.stdout.write(f"listening {server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""POST /api/v1/messages from Python's standard library, for bench/clients/run.

    python3 bench/clients/post.py --url http://127.0.0.1:PORT --key KEY [-n 10000] [-c 16] [--from 0]

C threads, each with its own keep-alive http.client connection, send N messages in total (one
recipient, a one-part text, as textgate-bench sends them), then poll /metrics until the server
counts them all as delivered. Prints the lines textgate-bench prints: messages, accepted msg/s,
end to end msg/s, accept latency percentiles. Exits non-zero if a request failed.
"""
import argparse
import http.client
import sys
import threading
import time
import urllib.parse

DELIVERED = 'textgate_messages_final_total{status="delivered"}'


def delivered(host, port):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        if line.startswith(DELIVERED + " "):
            return float(line[len(DELIVERED) + 1:])
    return 0.0


def pct(lat, p):
    # The same rule as textgate-bench: the value at round((n - 1) * p) of the sorted list.
    if not lat:
        return 0.0
    return lat[int((len(lat) - 1) * p + 0.5)] * 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("-c", type=int, default=16)
    ap.add_argument("--from", dest="first", type=int, default=0, help="number of the first message")
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port
    headers = {"Authorization": "Bearer " + a.key, "Content-Type": "application/json"}
    before = delivered(host, port)
    lock = threading.Lock()
    state = {"next": 0}
    lats = []
    errors = [0]

    def worker():
        conn = http.client.HTTPConnection(host, port, timeout=60)
        mine, bad = [], 0
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= a.n:
                break
            j = a.first + i
            body = '{"to":"+1555%07d","body":"Your verification code is %06d"}' % (j % 10_000_000, j % 1_000_000)
            t = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/messages", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 202:
                    mine.append(time.perf_counter() - t)
                else:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.close()
        with lock:
            lats.extend(mine)
            errors[0] += bad

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(a.c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accept_time = time.perf_counter() - start
    accepted = len(lats)
    deadline = time.monotonic() + 300
    while delivered(host, port) - before < accepted:
        if time.monotonic() > deadline:
            sys.exit(f"not all {accepted} messages were delivered within 300 s")
        time.sleep(0.02)
    e2e_time = time.perf_counter() - start
    lats.sort()
    print(f"messages          {accepted} accepted, {errors[0]} errors, concurrency {a.c}")
    print(f"accepted          {accepted / accept_time:.0f} msg/s")
    print(f"end to end        {accepted / e2e_time:.0f} msg/s (all delivered after {e2e_time:.2f} s)")
    print(f"accept latency    p50 {pct(lats, 0.5):.2f} ms, p90 {pct(lats, 0.9):.2f} ms, "
          f"p99 {pct(lats, 0.99):.2f} ms, max {pct(lats, 1.0):.2f} ms")
    if errors[0]:
        sys.exit(f"{errors[0]} requests failed")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The admin API under a client without credentials that holds many connections open.

Starts siesta (given binary) with an admin token, opens N connections from one client — a third
silent, a third trickling a header one byte every 90 ms, a third trickling a body — and while
they are held measures /healthz, /metrics and /admin/idle-status (with the token), one after
another. Prints p50/p99/max per path and how many requests failed (no answer within 2 s).
It reports; it asserts nothing (tests/integration/admin_slow_clients_test.cpp does).

    python3 bench/admin_starvation.py build/sidecar/siesta --connections 200
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netutil import free_port  # noqa: E402

TOKEN = "s3cret-token-0123456789"


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("siesta")
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--requests", type=int, default=60, help="per path")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="siesta-starve-")
    with open(os.path.join(work, "token"), "w") as f:
        f.write(TOKEN + "\n")
    config = {"admin_token_file": os.path.join(work, "token"),
              "services": {"web": {"command": ["sleep", "3600"]}}}
    with open(os.path.join(work, "siesta.json"), "w") as f:
        json.dump(config, f)
    port = free_port()
    log = open(os.path.join(work, "siesta.log"), "w")
    proc = subprocess.Popen([args.siesta, "--config", os.path.join(work, "siesta.json"),
                             "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)

        held = []
        kinds = ["silent", "header", "body"]
        for i in range(args.connections):
            s = socket.create_connection(("127.0.0.1", port))
            kind = kinds[i % 3]
            if kind == "header":
                s.sendall(b"GET /admin/idle-status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            elif kind == "body":
                s.sendall(b"POST /admin/settings HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            held.append((kind, s))
        stop = threading.Event()

        def trickle():
            while not stop.is_set():
                for kind, s in held:
                    try:
                        if kind == "header":
                            s.send(b"a")
                        elif kind == "body":
                            s.send(b" ")
                    except OSError:
                        pass
                time.sleep(0.09)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        time.sleep(0.5)
        results = {p: [] for p in ("/healthz", "/metrics", "/admin/idle-status")}
        failed = {p: 0 for p in results}
        for _ in range(args.requests):
            for path in results:
                t0 = time.perf_counter()
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    c.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
                    r = c.getresponse()
                    r.read()
                    c.close()
                    if r.status != 200:
                        failed[path] += 1
                        continue
                    results[path].append((time.perf_counter() - t0) * 1000)
                except OSError:
                    failed[path] += 1
        stop.set()
        t.join()
        print(f"{args.connections} held connections ({args.connections // 3} silent, "
              f"trickling header and body the rest), {args.requests} requests per path:")
        print("| path | p50 ms | p99 ms | max ms | failed |")
        print("|---|---|---|---|---|")
        for path, ms in results.items():
            print(f"| `{path}` | {percentile(ms, 0.5):.1f} | {percentile(ms, 0.99):.1f} | "
                  f"{max(ms) if ms else float('nan'):.1f} | {failed[path]} |")
        for _, s in held:
            s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()

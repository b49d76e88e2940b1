#!/usr/bin/env python3
"""Soak: siesta's proxy under steady concurrent load for N minutes while its services cycle
through sleep and wake. Reports failed requests (must be 0) and siesta's resident memory and
open file descriptors over time (must stay flat).

Usage: bench/soak.py --build-dir DIR [--minutes 10] [--workers 8]

Three services (bench-upstream processes) with a 1.2 s idle timeout sit behind siesta's ports.
Each worker loops: a burst of requests to one service (keep-alive), then a pause that is
sometimes longer than the timeout, so services keep going to sleep and being woken, often by
several workers at once, and requests arrive while a service is stopping.
"""
import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time


from netutil import free_port, wait_port


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = int(next(line for line in f if line.startswith("VmRSS")).split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    siesta_bin = os.path.join(build, "sidecar", "siesta")
    upstream = os.path.join(build, "bench", "bench-upstream")
    tmp = tempfile.mkdtemp(prefix="siesta-soak-")
    admin = free_port()
    ports = {}
    services = {}
    for name in ("alpha", "beta", "gamma"):
        up, listen = free_port(), free_port()
        ports[name] = listen
        services[name] = {"command": [upstream, "--port", str(up)], "upstream": f"127.0.0.1:{up}",
                          "listen": f"127.0.0.1:{listen}", "idle_timeout_minutes": 0.02,
                          "stop_timeout_seconds": 2}
    config = os.path.join(tmp, "soak.json")
    with open(config, "w") as f:
        json.dump({"listen": f"127.0.0.1:{admin}", "services": services,
                   "state_file": os.path.join(tmp, "state.json")}, f)
    log = open(os.path.join(tmp, "siesta.log"), "wb")
    siesta = subprocess.Popen([siesta_bin, "--config", config, "--log-level", "warn"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_port(admin, proc=siesta)

    stats = {"ok": 0, "failed": 0, "cold": 0}
    failures = []
    lock = threading.Lock()
    stop_at = time.time() + args.minutes * 60

    def worker(seed):
        rnd = random.Random(seed)
        while time.time() < stop_at:
            name = rnd.choice(list(ports))
            conn = http.client.HTTPConnection("127.0.0.1", ports[name], timeout=60)
            for _ in range(rnd.randint(1, 50)):
                try:
                    conn.request("GET", "/")
                    r = conn.getresponse()
                    body = r.read()
                    good = r.status == 200 and body == b"ok\n"
                    cold = r.getheader("X-Siesta-Wake") is not None
                    why = f"{name}: HTTP {r.status} {body[:200]!r}"
                except (OSError, http.client.HTTPException) as e:
                    good, cold, why = False, False, f"{name}: {type(e).__name__}: {e}"
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", ports[name], timeout=60)
                with lock:
                    stats["ok" if good else "failed"] += 1
                    stats["cold"] += 1 if cold else 0
                    if not good and len(failures) < 20:
                        failures.append(why)
            conn.close()
            time.sleep(rnd.choice([0.01, 0.1, 0.5, 1.5, 2.0]))  # some pauses outlast the timeout

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
    for t in threads:
        t.start()
    time.sleep(5)  # past start-up: the baseline
    rss0, fds0 = sample(siesta.pid)
    samples = [(0.0, rss0, fds0)]
    t0 = time.time()
    while time.time() < stop_at:
        time.sleep(min(30, max(0.1, stop_at - time.time())))
        if siesta.poll() is not None:
            print("soak: siesta exited!", file=sys.stderr)
            break
        rss, fds = sample(siesta.pid)
        samples.append((time.time() - t0, rss, fds))
    for t in threads:
        t.join()
    time.sleep(3)  # everything idle: services asleep, connections closed
    rss1, fds1 = sample(siesta.pid)
    samples.append((time.time() - t0, rss1, fds1))
    metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{admin}/metrics"],
                             capture_output=True, text=True).stdout
    sleeps = sum(float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith("siesta_service_sleeps_total{"))
    os.killpg(siesta.pid, signal.SIGTERM)
    siesta.wait(timeout=30)

    print(f"soak: {args.minutes:g} min, {args.workers} workers, 3 services (idle timeout 1.2 s)")
    print(f"requests: {stats['ok'] + stats['failed']}  failed: {stats['failed']}  "
          f"cold (woke a service): {stats['cold']}  sleeps: {sleeps:.0f}")
    print("minute  rss_MB  open_fds")
    for at, rss, fds in samples:
        print(f"{at / 60:6.1f}  {rss:6.1f}  {fds:8d}")
    print(f"rss growth: {rss1 - rss0:+.1f} MB   fd growth: {fds1 - fds0:+d}")
    for f in failures:
        print("failure:", f)
    ok = stats["failed"] == 0 and fds1 <= fds0 and rss1 - rss0 < 5
    print("soak: PASS" if ok else "soak: FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

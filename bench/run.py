#!/usr/bin/env python3
"""siesta's benchmarks: siesta against nginx and against its targets, in one run on one machine.

Usage: bench/run.py --build-dir DIR [--out docs/benchmarks.md] [--rounds N] [--smoke]

DIR holds a build with siesta and the bench programs (bench/run.sh makes a Release one). Each
benchmark runs its variants interleaved over --rounds rounds and reports min / median / max of
the per-round figures; results are ratios or differences against the direct path or nginx
measured in the same round, so they carry over between machines better than absolute numbers.
--smoke runs everything tiny and fast: it checks the harness works, its figures mean nothing.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import dataplane
import netutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build_dir)
        self.siesta = os.path.join(self.build, "sidecar", "siesta")
        self.upstream = os.path.join(self.build, "bench", "bench-upstream")
        self.client = os.path.join(self.build, "bench", "bench-client")
        for exe in (self.siesta, self.upstream, self.client):
            if not os.access(exe, os.X_OK):
                sys.exit(f"bench: {exe} is missing: build with bench/run.sh first")
        self.tmp = tempfile.mkdtemp(prefix="siesta-bench-")
        self.procs = []
        self.results = {}  # section -> list of (label, [values per round], unit, target text, met)
        self.notes = {}
        self.texts = {}  # section -> markdown of its own (the data plane's tables)
        self.took = {}  # section -> seconds

    # --- processes --------------------------------------------------------------------------
    def start(self, name, argv, **kw):
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=ROOT, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def cleanup(self):
        for p in list(self.procs):
            self.stop(p, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers ----------------------------------------------------------------------------
    free_port = staticmethod(netutil.free_port)
    wait_port = staticmethod(netutil.wait_port)

    @staticmethod
    def get(port, path, method="GET", body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()

    def run(self, argv, timeout=600):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])}... failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def start_siesta(self, name, config, state=None):
        admin = self.free_port()
        config = dict(config, listen=f"127.0.0.1:{admin}")
        path = os.path.join(self.tmp, f"{name}.json")
        if state is not None:
            config["state_file"] = os.path.join(self.tmp, f"{name}-state.json")
            with open(config["state_file"], "w") as f:
                json.dump(state, f)
        with open(path, "w") as f:
            json.dump(config, f)
        p = self.start(name, [self.siesta, "--config", path, "--log-level", "warn"])
        try:
            self.wait_port(admin, timeout=120, proc=p)
        except RuntimeError as e:
            with open(os.path.join(self.tmp, f"{name}.log")) as f:
                raise RuntimeError(f"{name}: {e}: {f.read()[-2000:]}") from None
        return p, admin

    def state_of(self, admin, service):
        return json.loads(self.get(admin, f"/admin/services/{service}"))["actual"]

    def wait_state(self, admin, service, want, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.state_of(admin, service) == want:
                return
            time.sleep(0.01)
        raise RuntimeError(f"{service} not {want} after {timeout} s")

    def record(self, section, label, values, unit, target=None, met=None):
        self.results.setdefault(section, []).append((label, values, unit, target, met))

    # --- 1. warm proxy path -----------------------------------------------------------------
    def start_nginx(self, name, workers, http):
        """nginx with `workers` worker processes and `http` (upstreams and servers) as the body
        of its http block; returns its master process once the first `listen` port answers."""
        conf = os.path.join(self.tmp, f"{name}.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes {workers};
daemon off;
pid {self.tmp}/{name}.pid;
error_log {self.tmp}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;  # the default 1000 would close the latency run's connection
  client_body_temp_path {self.tmp}/{name}-body;
  proxy_temp_path {self.tmp}/{name}-proxy;
{http}}}
""")
        p = self.start(name, ["nginx", "-c", conf, "-p", self.tmp, "-e",
                              f"{self.tmp}/{name}-error.log"])
        self.wait_port(int(re.search(r"listen 127\.0\.0\.1:(\d+)", http).group(1)), proc=p)
        return p

    @staticmethod
    def nginx_proxy_location(path, upstream):
        """A reverse-proxy location as a user would write it for a streaming service: HTTP/1.1
        and keep-alive to the upstream, no buffering (siesta does not buffer either)."""
        return f"""    location {path} {{
      proxy_pass http://{upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
"""

    @staticmethod
    def nginx_upstream(name, port, keepalive=128):
        return (f"  upstream {name} {{ server 127.0.0.1:{port}; keepalive {keepalive}; "
                "keepalive_requests 1000000; }\n")

    def nginx(self, port, upstream_port, workers):
        return self.start_nginx("nginx", workers, f"""\
{self.nginx_upstream("u", upstream_port)}  server {{
    listen 127.0.0.1:{port} reuseport;
{self.nginx_proxy_location("/", "u")}  }}
""")

    @staticmethod
    def parse_wrk(out):
        units = {"us": 1e-3, "ms": 1.0, "s": 1e3}
        lat = {}
        for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
            lat[pct] = float(value) * units[unit]
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        if re.search(r"Non-2xx|Socket errors", out):
            raise RuntimeError("wrk saw errors:\n" + out)
        return lat, rps

    def run_wrk(self, port, connections, seconds, path="/"):
        return self.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                         f"http://127.0.0.1:{port}{path}"])

    def wrk(self, port, connections, seconds, path="/"):
        return self.parse_wrk(self.run_wrk(port, connections, seconds, path))

    def interleaved_latency(self, targets, n):
        """Latency at one request at a time, the paths taking turns request by request (one
        keep-alive connection each), so that the machine's noise falls on all of them alike."""
        out = self.run([self.client, "latency", "--ports", ",".join(map(str, targets.values())),
                        "--n", str(n)])
        by_port = {int(port): (float(p50), float(p99))
                   for port, p50, p99 in (line.split() for line in out.splitlines())}
        # In ms, as parse_wrk gives them.
        return {name: {"50": by_port[port][0] / 1000, "99": by_port[port][1] / 1000}
                for name, port in targets.items()}

    def bench_warm(self):
        threads = 2
        up, nginx_port, listen = self.free_port(), self.free_port(), self.free_port()
        config = {"proxy": {"threads": threads}, "services": {"warm": {
            "command": [self.upstream, "--port", str(up)], "upstream": f"127.0.0.1:{up}",
            "listen": f"127.0.0.1:{listen}", "desired": "on", "idle_sleep_enabled": False}}}
        siesta, admin = self.start_siesta("siesta-warm", config)
        self.wait_state(admin, "warm", "running")
        nginx = self.nginx(nginx_port, up, threads)
        targets = {"direct": up, "nginx": nginx_port, "siesta": listen}
        secs = 1 if self.args.smoke else 4
        for port in targets.values():  # warm every path's connections and caches
            self.wrk(port, 8, 1)
        rows = {k: [] for k in ("p50", "p99", "rps")}
        requests = 500 if self.args.smoke else 20000
        for rnd in range(self.args.rounds):
            lat, rps = self.interleaved_latency(targets, requests), {}
            order = list(targets)[rnd % 3:] + list(targets)[:rnd % 3]
            for name in order:
                _, rps[name] = self.wrk(targets[name], 32, secs)
            for pct in ("50", "99"):
                added_n = lat["nginx"][pct] - lat["direct"][pct]
                added_s = lat["siesta"][pct] - lat["direct"][pct]
                rows["p" + pct].append((added_s, added_n, lat["direct"][pct]))
            rows["rps"].append((rps["siesta"], rps["nginx"], rps["direct"]))
        self.stop(nginx)
        self.stop(siesta)
        for pct in ("p50", "p99"):
            ratios = [s / n if n > 0 else float("inf") for s, n, _ in rows[pct]]
            self.record("warm", f"added latency {pct}, siesta ÷ nginx", ratios, "×", "≤ 1.2",
                        statistics.median(ratios) <= 1.2)
            self.record("warm", f"added latency {pct}, siesta", [s * 1000 for s, _, _ in rows[pct]],
                        "µs")
            self.record("warm", f"added latency {pct}, nginx", [n * 1000 for _, n, _ in rows[pct]],
                        "µs")
            self.record("warm", f"latency {pct}, direct", [d * 1000 for _, _, d in rows[pct]], "µs")
        ratios = [s / n for s, n, _ in rows["rps"]]
        self.record("warm", "throughput, siesta ÷ nginx", ratios, "×", "≥ 0.8",
                    statistics.median(ratios) >= 0.8)
        self.record("warm", "throughput, siesta", [s for s, _, _ in rows["rps"]], "req/s")
        self.record("warm", "throughput, nginx", [n for _, n, _ in rows["rps"]], "req/s")
        self.record("warm", "throughput, direct", [d for _, _, d in rows["rps"]], "req/s")

    # --- 2. cold wake -----------------------------------------------------------------------
    def cold_requests(self, port, n):
        out = self.run([self.client, "cold", "--port", str(port), "--n", str(n)])
        rows = [line.split() for line in out.splitlines()]
        if any(code != "200" for _, code in rows):
            raise RuntimeError("cold requests failed: " + out)
        return sorted(float(ms) for ms, _ in rows)

    def bench_cold(self):
        delay_ms = 300
        up, listen, probe = self.free_port(), self.free_port(), self.free_port()
        starts = os.path.join(self.tmp, "cold-starts.log")
        config = {"services": {"cold": {
            "command": [self.upstream, "--port", str(up), "--ready-delay-ms", str(delay_ms),
                        "--start-log", starts],
            "upstream": f"127.0.0.1:{up}", "listen": f"127.0.0.1:{listen}",
            "stop_timeout_seconds": 2}}}
        siesta, admin = self.start_siesta("siesta-cold", config)
        self.wait_state(admin, "cold", "stopped")
        n = 20 if self.args.smoke else 100
        over, ratio, one_start = [], [], []
        for _ in range(self.args.rounds):
            ready = float(self.run([self.client, "ready", "--port", str(probe), "--",
                                    self.upstream, "--port", str(probe), "--ready-delay-ms",
                                    str(delay_ms)]))
            single = self.cold_requests(listen, 1)[0]
            over.append(single - ready)
            self.get(admin, "/admin/services/cold/sleep", method="POST", body=b"")
            self.wait_state(admin, "cold", "stopped")
            before = self.count_lines(starts)
            many = self.cold_requests(listen, n)
            one_start.append(self.count_lines(starts) - before)
            p99 = many[min(len(many) - 1, int(0.99 * len(many)))]
            ratio.append(p99 / single)
            self.get(admin, "/admin/services/cold/sleep", method="POST", body=b"")
            self.wait_state(admin, "cold", "stopped")
        self.stop(siesta)
        self.record("cold", f"time to first byte − own readiness ({delay_ms} ms + process start)",
                    over, "ms", "≤ 50", statistics.median(over) <= 50)
        self.record("cold", f"{n} concurrent cold requests: starts", one_start, "", "= 1",
                    all(s == 1 for s in one_start))
        self.record("cold", f"{n} concurrent: p99 time to first byte ÷ single cold", ratio, "×",
                    "≤ 1.2", statistics.median(ratio) <= 1.2)

    @staticmethod
    def count_lines(path):
        try:
            with open(path) as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    # --- 3. sleep precision -----------------------------------------------------------------
    def bench_precision(self):
        n = 10 if self.args.smoke else 100
        services, ports, stop_logs, timeouts = {}, {}, {}, {}
        for i in range(n):
            name = f"p{i:03d}"
            up, listen = self.free_port(), self.free_port()
            stop_logs[name] = os.path.join(self.tmp, f"{name}.stop")
            timeouts[name] = 1.5 + 0.02 * i  # seconds: deadlines 20 ms apart
            services[name] = {
                "command": [self.upstream, "--port", str(up), "--stop-log", stop_logs[name]],
                "upstream": f"127.0.0.1:{up}", "listen": f"127.0.0.1:{listen}",
                "idle_timeout_minutes": timeouts[name] / 60, "stop_timeout_seconds": 2}
            ports[name] = listen
        siesta, admin = self.start_siesta("siesta-precision", {"services": services})
        per_round = []
        for _ in range(self.args.rounds):
            for log in stop_logs.values():
                if os.path.exists(log):
                    os.unlink(log)
            for name in services:
                self.wait_state(admin, name, "stopped")
            last_use = {}
            for name in services:  # wakes each; its idle time starts when the answer ends
                self.get(ports[name], "/")
                last_use[name] = time.time()
            deadline = time.time() + max(timeouts.values()) + 10
            while time.time() < deadline and not all(map(os.path.exists, stop_logs.values())):
                time.sleep(0.05)
            late = []
            for name, log in stop_logs.items():
                with open(log) as f:
                    stopped = int(f.read().split()[0]) / 1e9
                late.append((stopped - (last_use[name] + timeouts[name])) * 1000)
            late.sort()
            per_round.append(late)
        self.stop(siesta)
        p99 = [r[min(len(r) - 1, int(0.99 * len(r)))] for r in per_round]
        self.record("precision", f"p99 stop lateness over {n} services", p99, "ms", "< 100",
                    max(p99) < 100)
        self.record("precision", "median stop lateness", [statistics.median(r) for r in per_round],
                    "ms")
        self.record("precision", "max stop lateness", [r[-1] for r in per_round], "ms")

    # --- 4. control-plane scale -------------------------------------------------------------
    def timed_get(self, port, path):
        t0 = time.perf_counter()
        body = self.get(port, path)
        return (time.perf_counter() - t0) * 1000, body

    @staticmethod
    def metric(text, name):
        m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
        return float(m.group(1)) if m else None

    def bench_scale(self):
        n = 200 if self.args.smoke else self.args.scale
        # Every service "running": adopted from a state file as one long-lived process, as a
        # restarted siesta adopts what it left; so each has a live idle timer and each model
        # a keep-alive, and every pass decides all of them.
        holder = self.start("holder", ["sleep", "infinity"])
        with open(f"/proc/{holder.pid}/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        now = time.time()
        services = {f"svc-{i:05d}": {"command": ["sleep", "infinity"]} for i in range(n)}
        services["ollama"] = {"command": ["sleep", "infinity"], "model_api": "ollama",
                              "upstream": f"127.0.0.1:{self.free_port()}"}
        models = {f"model-{i:05d}:7b": {"provider": "ollama"} for i in range(n)}
        handle = {"pid": holder.pid, "start_ticks": start_ticks}
        state = {"format": "siesta-state/1", "settings": {},
                 "services": {name: {"last_used": now, "handle": handle} for name in services
                              if name != "ollama"},
                 "models": {name: {"provider": "ollama", "loaded": False, "last_used": now,
                                   "keep_alive_seconds": None} for name in models}}
        config = {"idle_timeout_minutes": 60, "idle_check_interval_minutes": 60,
                  "on_exit": "leave", "services": services, "models": models}
        t0 = time.perf_counter()
        siesta, admin = self.start_siesta("siesta-scale", config, state)
        startup = (time.perf_counter() - t0) * 1000
        time.sleep(2)  # the first monitor pass runs at start-up
        with open(f"/proc/{siesta.pid}/status") as f:
            rest_mb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024
        for _ in range(1000):  # the first pass reconciles every backend
            metrics = self.get(admin, "/metrics").decode()
            if self.metric(metrics, "siesta_monitor_runs_total") >= 1:
                break
            time.sleep(0.01)
        first_pass = self.metric(metrics, "siesta_monitor_last_pass_duration_seconds") * 1000
        status = json.loads(self.get(admin, "/admin/idle-status"))
        running = sum(1 for s in status["services"].values() if s["actual"] == "running")
        idle_ms, metrics_ms, pass_ms = [], [], []
        reps = 3 if self.args.smoke else 10
        for i in range(reps):
            idle_ms.append(self.timed_get(admin, "/admin/idle-status")[0])
            ms, body = self.timed_get(admin, "/metrics")
            metrics_ms.append(ms)
            runs = self.metric(body.decode(), "siesta_monitor_runs_total")
            # A settings change wakes the monitor for a pass over everything.
            self.get(admin, "/admin/settings", method="POST",
                     body=json.dumps({"idle_timeout_minutes": 60 + i}).encode())
            for _ in range(500):
                text = self.get(admin, "/metrics").decode()
                if self.metric(text, "siesta_monitor_runs_total") > runs:
                    break
                time.sleep(0.01)
            pass_ms.append(self.metric(text, "siesta_monitor_last_pass_duration_seconds") * 1000)
        metrics_size = len(body)
        time.sleep(1)
        with open(f"/proc/{siesta.pid}/status") as f:
            rss_mb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024

        def cpu_ticks():
            with open(f"/proc/{siesta.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        idle_window = 2 if self.args.smoke else 10
        before = cpu_ticks()
        time.sleep(idle_window)
        idle_ticks = cpu_ticks() - before
        self.stop(siesta, signal.SIGKILL)
        self.stop(holder, signal.SIGKILL)
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        label = f"{n} services ({running} running) + {n} models"
        self.notes["scale"] = (f"{label}; start-up to a listening admin API {startup:.0f} ms; "
                               f"/metrics is {metrics_size / 1e6:.1f} MB")
        self.record("scale", "monitor pass (decide over everything)", pass_ms, "ms", "< 100",
                    max(pass_ms) < 100)
        self.record("scale", "first monitor pass (reconcile of every backend included)",
                    [first_pass], "ms", "< 100", first_pass < 100)
        self.record("scale", "GET /admin/idle-status", idle_ms, "ms", "< 100", max(idle_ms) < 100)
        self.record("scale", "GET /metrics", metrics_ms, "ms", "< 100", max(metrics_ms) < 100)
        self.record("scale", "resident memory at rest", [rest_mb], "MB", "< 100", rest_mb < 100)
        self.record("scale", "resident memory after the requests above", [rss_mb], "MB")
        self.record("scale", f"CPU while nothing is due, over {idle_window} s",
                    [idle_ticks * tick_ms], "ms", "≈ 0 (≤ 1 tick)", idle_ticks <= 1)

    # --- 5. streaming -----------------------------------------------------------------------
    def stream_delays(self, port, chunks):
        out = self.run([self.client, "stream", "--port", str(port), "--target",
                        f"/stream?chunks={chunks}&interval_us=2000"])
        return sorted(float(x) for x in out.split())

    def bench_stream(self):
        up, nginx_port, listen = self.free_port(), self.free_port(), self.free_port()
        config = {"services": {"stream": {
            "command": [self.upstream, "--port", str(up)], "upstream": f"127.0.0.1:{up}",
            "listen": f"127.0.0.1:{listen}", "desired": "on", "idle_sleep_enabled": False}}}
        siesta, admin = self.start_siesta("siesta-stream", config)
        self.wait_state(admin, "stream", "running")
        nginx = self.nginx(nginx_port, up, 2)
        chunks = 50 if self.args.smoke else 1000
        extra = {"siesta": {"50": [], "99": []}, "nginx": {"50": [], "99": []}}
        for _ in range(self.args.rounds):
            d = {name: self.stream_delays(port, chunks)
                 for name, port in (("direct", up), ("siesta", listen), ("nginx", nginx_port))}

            def pct(v, q):
                return v[min(len(v) - 1, int(q * len(v)))]
            for name in ("siesta", "nginx"):
                for q in ("50", "99"):
                    extra[name][q].append(pct(d[name], int(q) / 100) - pct(d["direct"],
                                                                               int(q) / 100))
        self.stop(nginx)
        self.stop(siesta)
        self.record("stream", f"extra delay per chunk p99, siesta ({chunks} chunks, 2 ms apart)",
                    [x / 1000 for x in extra["siesta"]["99"]], "ms", "< 1",
                    statistics.median(extra["siesta"]["99"]) < 1000)
        self.record("stream", "extra delay per chunk p50, siesta",
                    [x / 1000 for x in extra["siesta"]["50"]], "ms")
        self.record("stream", "extra delay per chunk p99, nginx",
                    [x / 1000 for x in extra["nginx"]["99"]], "ms")

    # --- 6. data plane against nginx (bench/dataplane.py) -------------------------------------
    def bench_dataplane(self):
        dataplane.DataPlane(self).run()

    # --- report -----------------------------------------------------------------------------
    def machine(self):
        cpu = "unknown CPU"
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else cpu
        with open("/proc/meminfo") as f:
            mem = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) // (1024 * 1024)
        nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip() or "unknown"
        if subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True).stdout.strip():
            rev += " with uncommitted changes"
        return (f"{os.cpu_count()} cores ({cpu}), {mem} GiB, {platform.system()} "
                f"{platform.release()}; {nginx_v.replace('nginx version: ', '')}, "
                f"{wrk_v.split(' [')[0]}; siesta {rev}")

    @staticmethod
    def fmt(v):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"

    def report(self, sections):
        titles = {
            "warm": "1. Warm proxy path (latency: one request at a time, the three paths taking turns; throughput: wrk, 32 connections)",
            "cold": "2. Cold wake (a service that listens 300 ms after it starts)",
            "precision": "3. Sleep precision (staggered deadlines 20 ms apart)",
            "scale": "4. Control-plane scale",
            "stream": "5. Streaming (a chunk every 2 ms, each stamped when written)",
            "dataplane": "6. Data plane against nginx (issue 16)",
        }
        fmt = self.fmt
        took = sum(self.took[s] for s in sections)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
                 f"{took / 60:.1f} min, {self.args.rounds} interleaved round(s) each.",
                 f"Machine: {self.machine()}; load average at the end {load}.", ""]
        for section, title in titles.items():
            if section not in sections:
                continue
            lines += [f"### {title}", ""]
            if section in self.notes:
                lines += [self.notes[section] + ".", ""]
            if section in self.texts:
                lines += [self.texts[section], ""]
            if section not in self.results:
                continue
            lines += ["| measure | min | median | max | target | |", "|---|---|---|---|---|---|"]
            for label, values, unit, target, met in self.results[section]:
                u = f" {unit}" if unit else ""
                verdict = "" if met is None else ("met" if met else "**missed**")
                lines.append(f"| {label} | {fmt(min(values))}{u} | "
                             f"{fmt(statistics.median(values))}{u} | {fmt(max(values))}{u} | "
                             f"{target or ''} | {verdict} |")
            lines.append("")
        return "\n".join(lines)


# The sections whose tables each part of docs/benchmarks.md holds: a run rewrites only the parts
# of the sections it ran.
BLOCKS = {"RESULTS": ["warm", "cold", "precision", "scale", "stream"], "DATAPLANE": ["dataplane"]}


def write_doc(path, table, block="RESULTS"):
    """Replaces the part of docs/benchmarks.md between the block's markers with the table."""
    begin, end = f"<!-- {block} BEGIN (bench/run.sh writes this part) -->", f"<!-- {block} END -->"
    text = open(path).read() if os.path.exists(path) else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n{table}\n{end}{tail}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--out", help="markdown file whose RESULTS part gets the table")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scale", type=int, default=10000, help="services and models in the scale bench")
    ap.add_argument("--smoke", action="store_true", help="tiny and fast: checks the harness")
    ap.add_argument("--only", help="comma-separated: warm,cold,precision,scale,stream,dataplane")
    args = ap.parse_args()
    if args.smoke:
        args.rounds = min(args.rounds, 2)
    bench = Bench(args)
    ran = (args.only or ",".join(sum(BLOCKS.values(), []))).split(",")
    try:
        for name in ran:
            print(f"bench: {name} ...", flush=True)
            t0 = time.time()
            getattr(bench, f"bench_{name}")()
            bench.took[name] = time.time() - t0
        tables = {block: bench.report([s for s in sections if s in ran])
                  for block, sections in BLOCKS.items() if set(sections) & set(ran)}
    finally:
        bench.cleanup()
    for block, table in tables.items():
        print(table)
        if args.out:
            write_doc(args.out, table, block)
            print(f"bench: wrote the {block} part of {args.out}")
    missed = [label for rows in bench.results.values() for label, *_, met in rows if met is False]
    if missed and not args.smoke:
        print("bench: targets missed: " + "; ".join(missed))


if __name__ == "__main__":
    main()

"""Section 6 of bench/run.py: siesta's data plane against nginx as a reverse proxy (issue 16).

Both proxies stand in front of the same two upstreams, started once by the harness: an nginx
serving static files (1 KiB, 64 KiB, 1 MiB) and bench-upstream's /stream (NDJSON, 200 chunks
written one by one with no pause between them). siesta with `proxy.threads` 1 and 2 and nginx with
`worker_processes` 1 and 2 run side by side the whole time. Every round measures every (body,
concurrency) point with wrk through each of them and direct, the order rotated from round to
round, so each ratio compares runs made seconds apart. Then, in short runs of their own (counting
costs a little), syscalls per request; and the resident memory an idle keep-alive
connection costs.
"""
import math
import os
import re
import signal
import socket
import statistics
import time

STATIC = [("1 KiB", "/1k", 1024), ("64 KiB", "/64k", 64 * 1024), ("1 MiB", "/1m", 1024 * 1024)]
STREAM_CHUNKS = 200
STREAM = ("NDJSON stream", f"/stream?chunks={STREAM_CHUNKS}&interval_us=0")
# siesta keeps as many idle upstream connections as nginx's `keepalive` (its default is 16), and
# does not bound its new upstream connections (nginx does not; siesta's default bounds them to 4
# awaiting their first answer): the two proxies are compared with the same upstream handling.
POOL = 128
MAX_CONNECTING = 1024


def ratio_cell(values, met):
    """"median (min–max)", the median in bold when the target is not `met`."""
    if not values:
        return "—" if met else "**—**"
    med = statistics.median(values)
    text = f"{med:.2f}" if met else f"**{med:.2f}**"
    return f"{text} ({min(values):.2f}–{max(values):.2f})"


class Target:
    """A path to the upstreams: its port for the static files, for the stream, and the pids whose
    syscalls and memory are the proxy's."""

    def __init__(self, static, stream, pids):
        self.static, self.stream, self.pids = static, stream, pids

    def port(self, path):
        return self.stream if path.startswith("/stream") else self.static


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return total


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def read_response(sock):
    """Reads one response with Content-Length off a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response header")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed in the response body")
        body += chunk


def parse_perf_stat(path):
    """syscall -> calls, from `perf stat -x, -e 'syscalls:sys_enter_*'` output."""
    counts = {}
    with open(path) as f:
        for line in f:
            fields = line.split(",")
            if len(fields) > 2 and fields[0].isdigit() and int(fields[0]) > 0:
                counts[fields[2].removeprefix("syscalls:sys_enter_")] = int(fields[0])
    return counts


class DataPlane:
    def __init__(self, bench):
        self.b = bench
        smoke = bench.args.smoke
        self.threads = [1] if smoke else [1, 2]
        self.conns = [4] if smoke else [1, 16, 64]
        self.bodies = [(label, path) for label, path, _ in STATIC[:1 if smoke else None]]
        self.bodies.append(STREAM)
        self.syscall_conns = 4 if smoke else 16
        self.syscall_seconds = 1 if smoke else 2
        self.idle = 20 if smoke else 1000
        self.loads = []
        self.failures = []
        self.siestas = []  # stopped with SIGTERM at the end, so that they stop their stand-ins

    # --- the processes ----------------------------------------------------------------------
    def start_upstreams(self):
        b = self.b
        www = os.path.join(b.tmp, "www")
        os.makedirs(www, mode=0o755)
        os.chmod(b.tmp, 0o711)  # nginx's workers may run as another user (nobody, www-data)
        for _, path, size in STATIC:
            with open(www + path, "wb") as f:
                f.write(b"x" * (size - 1) + b"\n")
        static, stream = b.free_port(), b.free_port()
        b.start_nginx("upstream-static", 2, f"""\
  sendfile on;
  server {{
    listen 127.0.0.1:{static} reuseport;
    root {www};
  }}
""")
        p = b.start("upstream-stream", [b.upstream, "--port", str(stream), "--threads", "2"])
        b.wait_port(stream, proc=p)
        return Target(static, stream, lambda: [])

    def start_siesta(self, threads, direct):
        """siesta in front of the harness's upstreams: each service's process is a stand-in
        (`sleep`), kept running (desired on), whose readiness is its upstream answering, so
        every proxy under test talks to the very same upstream processes."""
        b = self.b
        ports = {"static": b.free_port(), "stream": b.free_port()}
        services = {name: {"command": ["sleep", "infinity"], "desired": "on",
                           "idle_sleep_enabled": False,
                           "upstream": f"127.0.0.1:{direct.port('/' + name)}",
                           "listen": f"127.0.0.1:{ports[name]}"} for name in ports}
        config = {"proxy": {"threads": threads, "upstream_idle_connections": POOL,
                            "upstream_max_connecting": MAX_CONNECTING},
                  "services": services}
        p, admin = b.start_siesta(f"siesta-dataplane-{threads}", config)
        self.siestas.append(p)
        for name in services:
            b.wait_state(admin, name, "running")
        return Target(ports["static"], ports["stream"], lambda: [p.pid])

    def start_nginx(self, workers, direct):
        b = self.b
        port = b.free_port()
        upstreams = (b.nginx_upstream("static", direct.static, POOL)
                     + b.nginx_upstream("stream", direct.stream, POOL))
        p = b.start_nginx(f"nginx-dataplane-{workers}", workers, f"""\
{upstreams}  server {{
    listen 127.0.0.1:{port} reuseport;
{b.nginx_proxy_location("/", "static")}{b.nginx_proxy_location("/stream", "stream")}  }}
""")
        return Target(port, port, lambda: children(p.pid))

    # --- the measures -----------------------------------------------------------------------
    def rounds(self, targets):
        """{(body, conns, name): [(req/s, p50 ms, p99 ms) per round]}"""
        b = self.b
        for target in targets.values():  # warm every path's connections and caches
            for _, path in self.bodies:
                b.wrk(target.port(path), 16, 1, path)
        points = [(label, path, c) for label, path in self.bodies for c in self.conns]
        names = list(targets)
        runs = {}
        for rnd in range(b.args.rounds):
            t0 = time.time()
            self.loads.append(load1())
            for label, path, c in points[rnd % len(points):] + points[:rnd % len(points)]:
                for name in names[rnd % len(names):] + names[:rnd % len(names)]:
                    try:
                        lat, rps = b.wrk(targets[name].port(path), c, 1, path)
                        # No answer within the run (a 1 MiB body at 64 connections can take
                        # longer): wrk's latency is then of nothing; the latency is "more than".
                        run = (rps, lat["50"], lat["99"]) if rps > 0 else (0, math.inf, math.inf)
                    except RuntimeError as e:  # reported, and left out of the figures
                        self.failures.append(f"{name}, {label}, {c} conns, round {rnd + 1}: "
                                             + " ".join(str(e).split())[:300])
                        run = None
                    runs.setdefault((label, c, name), []).append(run)
            print(f"bench: dataplane round {rnd + 1} of {b.args.rounds}: {time.time() - t0:.0f} s",
                  flush=True)
        self.loads.append(load1())
        return runs

    def syscalls(self, name, target, path):
        """Syscalls per request made by the target's processes (all their threads) under wrk:
        {syscall: calls}, counted by the kernel's syscall tracepoints (perf stat): unlike
        strace, which stops the process at every call and slowed siesta's 1 MiB relay to no
        request completed in 2 s, counting costs the traced process little."""
        b = self.b
        out = os.path.join(b.tmp, f"perf-{name.replace(' ', '-')}-{path[1:5]}.txt")
        perf = b.start("perf", ["perf", "stat", "-x,", "-o", out, "-e", "syscalls:sys_enter_*",
                                "-p", ",".join(map(str, target.pids()))])
        time.sleep(1)  # attached to every thread
        text = b.run_wrk(target.port(path), self.syscall_conns, self.syscall_seconds, path)
        requests = int(re.search(r"(\d+) requests in", text).group(1))
        b.stop(perf, signal.SIGINT)
        counts = parse_perf_stat(out) if os.path.exists(out) else {}
        if requests == 0 or not counts:  # reported as such (no perf_event_open in a container?)
            return None
        return {call: n / requests for call, n in counts.items()}

    def idle_rss(self, target):
        """Text: KiB of the target's resident memory per idle keep-alive connection (after one
        1 KiB request each), or where opening them failed."""
        pids = target.pids()
        before = rss_kib(pids)
        socks = []
        try:
            for i in range(self.idle):
                s = socket.create_connection(("127.0.0.1", target.static), timeout=10)
                socks.append(s)
                s.sendall(b"GET /1k HTTP/1.1\r\nHost: bench\r\n\r\n")
                try:
                    read_response(s)
                except (OSError, RuntimeError) as e:
                    return f"**no answer** to the request on idle connection {i + 1} ({e})"
            time.sleep(0.5)
            after = rss_kib(pids)
        finally:
            for s in socks:
                s.close()
        return f"{(after - before) / self.idle:.1f} KiB"

    def run(self):
        try:
            self.measure()
        finally:
            for p in self.siestas:  # SIGKILL (the harness's cleanup) would leave their services
                self.b.stop(p)

    def measure(self):
        b = self.b
        direct = self.start_upstreams()
        targets = {"direct": direct}
        for n in self.threads:
            targets[f"siesta {n}"] = self.start_siesta(n, direct)
            targets[f"nginx {n}"] = self.start_nginx(n, direct)
        runs = self.rounds(targets)
        print("bench: dataplane idle connections ...", flush=True)
        rss = {name: self.idle_rss(t) for name, t in targets.items() if name != "direct"}
        print("bench: dataplane syscalls ...", flush=True)
        calls = {(name, label): self.syscalls(name, t, path)
                 for label, path in self.bodies for name, t in targets.items() if name != "direct"}
        b.texts["dataplane"] = self.report(runs, calls, rss)

    # --- the report -------------------------------------------------------------------------
    def report(self, runs, calls, rss):
        fmt, rounds = self.b.fmt, self.b.args.rounds
        out = [f"Upstreams: nginx (2 workers, sendfile) serving static files, and bench-upstream's "
               f"`/stream` ({STREAM_CHUNKS} NDJSON chunks, written one by one). Proxies: siesta "
               f"(`proxy.threads` n, `upstream_idle_connections` {POOL}, `upstream_max_connecting` "
               f"{MAX_CONNECTING}) and nginx "
               f"(`worker_processes` n, `keepalive` {POOL}, `proxy_buffering off`). wrk -t1 -cC "
               f"-d1s per point and path, {rounds} rounds, the order rotated each round. Load "
               f"average (1 min) over the rounds: {min(self.loads):.1f}–{max(self.loads):.1f} "
               f"(2 other engineers were compiling on this machine).", ""]
        misses = {"throughput": [], "p50": [], "p99": []}
        points = 0
        for n in self.threads:
            s, g = f"siesta {n}", f"nginx {n}"
            out += [f"**siesta {n} thread(s) against nginx {n} worker(s)** — medians; ratios "
                    "siesta ÷ nginx as median (min–max) of the per-round ratios; \"added\" is "
                    "the proxy's latency minus direct's in the same round; a ratio in bold "
                    "misses its target (throughput ≥ 1.0, added latency ≤ 1.0).", "",
                    "| body | conns | req/s siesta | req/s nginx | req/s direct | throughput ÷ "
                    "| added p50 siesta / nginx | p50 ÷ | added p99 siesta / nginx | p99 ÷ |",
                    "|---|---|---|---|---|---|---|---|---|---|"]
            for label, _ in self.bodies:
                for c in self.conns:
                    # Rounds where a path's wrk run failed are left out of every figure.
                    ok = [i for i, r in enumerate(zip(*(runs[(label, c, x)]
                                                        for x in (s, g, "direct")))) if all(r)]
                    rs, rg, rd = ([runs[(label, c, x)][i] for i in ok] for x in (s, g, "direct"))
                    ratios = [x[0] / y[0] for x, y in zip(rs, rg)]
                    thr_met = bool(ratios) and statistics.median(ratios) >= 1.0
                    thr = ratio_cell(ratios, thr_met)
                    row = [label, str(c)] + [fmt(statistics.median(r[0] for r in x)) if x else "—"
                                             for x in (rs, rg, rd)] + [thr]
                    point = f"{label}, {c} conns, {n} thread(s)"
                    points += 1
                    if not thr_met:  # or no round without a failed run
                        misses["throughput"].append(point)
                    for i, pct in ((1, "p50"), (2, "p99")):
                        add_s = [a[i] - d[i] for a, d in zip(rs, rd)]
                        add_g = [a[i] - d[i] for a, d in zip(rg, rd)]
                        # siesta's added latency ≤ nginx's is its latency ≤ nginx's (the same
                        # direct one): the verdict needs no ratio, which is shown where nginx's
                        # added latency came out positive (noise can make it ≤ 0 at low load).
                        met = bool(ok) and statistics.median(
                            a[i] - g[i] for a, g in zip(rs, rg)) <= 0
                        cell = ratio_cell([x / y for x, y in zip(add_s, add_g) if y > 0], met)
                        added = (f"{fmt(statistics.median(add_s) * 1000)} / "
                                 f"{fmt(statistics.median(add_g) * 1000)} µs") if ok else "—"
                        row += [added, cell]
                        if not met:
                            misses[pct].append(point)
                    out.append("| " + " | ".join(row) + " |")
            out.append("")
        if self.failures:
            out += ["**wrk runs that failed** (left out of the figures above):", ""]
            out += [f"- {f}" for f in self.failures] + [""]
        out += [f"**Syscalls per request** (`perf stat -e 'syscalls:sys_enter_*'` attached to "
                f"the proxy's processes during wrk -c{self.syscall_conns} "
                f"-d{self.syscall_seconds}s, a run of its own; "
                "target: siesta ≤ nginx + 0.5 with as many threads as workers)", "",
                "| body | proxy | syscalls / request | the most frequent, per request |",
                "|---|---|---|---|"]
        over = []
        for label, _ in self.bodies:
            for n in self.threads:
                for name in (f"siesta {n}", f"nginx {n}"):
                    per = calls[(name, label)]
                    if per is None or calls[(f"nginx {n}", label)] is None:
                        out.append(f"| {label} | {name} | — | not counted, for this one or nginx "
                                   f"{n}: no request completed, or perf stat failed |")
                        continue
                    top = sorted(per.items(), key=lambda kv: -kv[1])[:5]
                    total = sum(per.values())
                    if name.startswith("siesta"):
                        limit = sum(calls[(f"nginx {n}", label)].values()) + 0.5
                        if total > limit:
                            over.append(f"{label}, {n} thread(s): {total:.1f} > {limit:.1f}")
                            total_text = f"**{total:.1f}**"
                        else:
                            total_text = f"{total:.1f}"
                    else:
                        total_text = f"{total:.1f}"
                    out.append(f"| {label} | {name} | {total_text} | "
                               + ", ".join(f"{call} {v:.2f}" for call, v in top) + " |")
        out += ["", f"**Resident memory per idle keep-alive connection** ({self.idle} "
                "connections, one 1 KiB request each, then idle; VmRSS after − before, all of "
                "nginx's workers together): " + ", ".join(
                    f"{name} {v}" for name, v in rss.items()) + ".", "",
                "**Against the targets** (medians of this run):", ""]
        for key, what in (("throughput", "throughput ≥ 1.0× nginx's"),
                          ("p50", "added latency p50 ≤ 1.0× nginx's"),
                          ("p99", "added latency p99 ≤ 1.0× nginx's")):
            missed = misses[key]
            out.append(f"- {what}: met at {points - len(missed)} of {points} points"
                       + (f"; missed at {'; '.join(missed)}" if missed else "") + ".")
        big = [p for p in misses["throughput"] if p.startswith("1 MiB")]
        if any(label == "1 MiB" for label, _ in self.bodies):
            out.append("- 1 MiB bodies at ≥ 1.0× nginx's throughput: "
                       + (f"missed at {'; '.join(big)}." if big else "met at every point."))
        out.append("- syscalls per request ≤ nginx's + 0.5: "
                   + (f"missed: {'; '.join(over)}." if over else "met everywhere."))
        out.append("- RSS per idle keep-alive connection: reported above.")
        return "\n".join(out)

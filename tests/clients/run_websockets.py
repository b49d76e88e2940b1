#!/usr/bin/env python3
"""WebSockets through siesta (issue 23) with clients and servers nobody here wrote.

  run_websockets.py SIESTA_BINARY --node-modules DIR [--only SUBSTRING ...] [--keep]

The service is a WebSocket server on the Python `websockets` library (ws_server.py, Debian's
python3-websockets), started by siesta on a wake and stopped when it sleeps. Its clients: the `ws`
npm client (ws_client.js) and headless Chromium (Debian's chromium driven by puppeteer-core,
ws_browser.js) opening a page through siesta whose script uses a WebSocket through siesta.

Cases:
  node-ws/echo                 text and binary messages of 1 B .. 1 MiB echoed exactly (the first
                               handshake wakes the sleeping service)
  node-ws/server-ping          the server's 3 pings reach the client and its pongs come back
  node-ws/server-close         a close from the server reaches the client with its code and reason
  node-ws/client-close         a close from the client reaches the server, whose answer comes back
  node-ws/200-sockets          200 sockets open at once, each echoing; idle-status and /metrics
                               count 200 upgraded connections; all closed, nothing in flight
  node-ws/sleeps-after-last    a service with a 1.2 s idle timeout stays up under 3 open sockets
                               for 3 s, and under the last one after the others close; it sleeps
                               only after the last one closes, not before its idle timeout
  node-ws/client-killed        a client killed with SIGKILL: in flight back to 0 within 100 ms
  chromium/page                a page through siesta; its WebSocket echoes text and binary up to
                               1 MiB and closes cleanly
  nginx/node-ws-echo           nginx in front of siesta proxying the upgrade (its documented
                               WebSocket configuration), the echo case through both
Prints one line per case and "N passed, N failed"; exits 1 on any failure.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Cases, Processes, Siesta, die, free_port, http_get, run_json, start_nginx  # noqa: E402

NAP_MINUTES = 0.02  # 1.2 s: node-ws/sleeps-after-last's service
CLIENT_TIMEOUT = 90

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("siesta")
ap.add_argument("--node-modules", required=True, help="node_modules with ws and puppeteer-core")
ap.add_argument("--chromium", default="/usr/bin/chromium")
ap.add_argument("--only", nargs="*", help="run only the cases whose name contains one of these")
ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
args = ap.parse_args()

procs = Processes("siesta-websockets-")
cases = Cases(args.only)
node_env = dict(os.environ, NODE_PATH=os.path.abspath(args.node_modules))


def fail_if(cond, msg):
    if cond:
        raise AssertionError(msg)


def python_with_websockets():
    """An interpreter that has the websockets library (Debian's python3-websockets)."""
    for py in (sys.executable, "/usr/bin/python3"):
        if subprocess.run([py, "-c", "import websockets"], capture_output=True).returncode == 0:
            return py
    die("the Python websockets library is missing (scripts/install-deps.sh installs "
        "python3-websockets)")


def node(*argv):
    out = run_json(["node", os.path.join(HERE, "ws_client.js"), *argv], CLIENT_TIMEOUT,
                   env=node_env)
    fail_if("error" in out, f"ws client: {out.get('error')}")
    return out


def metric(siesta, sample):
    for line in http_get(siesta.admin, "/metrics").splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def nothing_in_flight(siesta, service, within=1.0):
    siesta.wait_service(service, lambda e: e["in_flight"] == 0 and e["upgraded_connections"] == 0,
                        within, "in_flight and upgraded_connections back to 0")


class Holder:
    """ws_client.js hold: N sockets open until told to close them."""

    def __init__(self, url, n):
        self.p = subprocess.Popen(["node", os.path.join(HERE, "ws_client.js"), "hold", url, str(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=node_env)
        line = self.p.stdout.readline().strip()
        fail_if(line != f"READY {n}", f"hold {n}: {line or 'nothing'} (exit {self.p.poll()})")

    def close_one(self, k):
        self.p.stdin.write("close\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().strip()
        fail_if(line != f"CLOSED {k}", f"expected CLOSED {k}, got {line!r}")

    def close_all(self):
        self.p.stdin.close()
        lines = [l for l in self.p.stdout.read().splitlines() if l.strip()]
        self.p.wait(timeout=CLIENT_TIMEOUT)
        return lines[-1] if lines else ""


# ---- cases ------------------------------------------------------------------------------------

def echo_case(siesta, service, port):
    out = node("echo", f"ws://127.0.0.1:{port}")
    bad = [r for r in out["results"] if not r["same"]]
    fail_if(len(out["results"]) != 12 or bad, f"echo differed: {bad}")
    fail_if(out["close_code"] != 1000, f"close code {out['close_code']}")
    nothing_in_flight(siesta, service)
    return "12 messages, text and binary, 1 B .. 1 MiB"


def ping_case(siesta, port):
    out = node("ping", f"ws://127.0.0.1:{port}")
    fail_if(out["pings"] != 3 or out["word"] != "pinged 3", f"got {out}")
    nothing_in_flight(siesta, "ws")


def server_close_case(siesta, port):
    out = node("server-close", f"ws://127.0.0.1:{port}")
    fail_if(out["first"] != "first", f"got {out}")
    fail_if((out["code"], out["reason"]) != (4000, "server bye"), f"close {out}")
    nothing_in_flight(siesta, "ws")


def client_close_case(siesta, port):
    out = node("client-close", f"ws://127.0.0.1:{port}")
    fail_if((out["code"], out["reason"]) != (4001, "client bye"), f"close {out}")
    nothing_in_flight(siesta, "ws")


def many_case(siesta, port):
    h = Holder(f"ws://127.0.0.1:{port}", 200)
    try:
        entry = siesta.service("ws")
        fail_if((entry["in_flight"], entry["upgraded_connections"]) != (200, 200),
                f"in_flight {entry['in_flight']}, upgraded {entry['upgraded_connections']}")
        open_metric = metric(siesta, 'siesta_proxy_upgraded_connections_open{service="ws"}')
        fail_if(open_metric != 200, f"siesta_proxy_upgraded_connections_open {open_metric}")
    finally:
        last = h.close_all()
    fail_if('"closed":200' not in last, f"hold: {last}")
    nothing_in_flight(siesta, "ws", within=3)


def sleeps_after_last_case(siesta, port):
    timeout_s = NAP_MINUTES * 60
    h = Holder(f"ws://127.0.0.1:{port}", 3)
    try:
        time.sleep(3 * timeout_s)  # a real process: the idle timeout passes, twice over
        entry = siesta.service("nap")
        fail_if(entry["actual"] != "running" or entry["sleep_blocker"] != "in_flight",
                f"with 3 sockets open: {entry['actual']}, blocker {entry['sleep_blocker']}")
        h.close_one(1)
        h.close_one(2)
        time.sleep(2 * timeout_s)
        entry = siesta.service("nap")
        fail_if(entry["actual"] != "running" or entry["upgraded_connections"] != 1,
                f"with 1 socket open: {entry['actual']}, upgraded {entry['upgraded_connections']}")
    finally:
        closing_at = time.time()  # the last socket closes after this, never before
        last = h.close_all()
    fail_if('"closed":3' not in last, f"hold: {last}")
    siesta.wait_service("nap", lambda e: e["actual"] == "stopped", timeout_s + 5,
                        "asleep after the last socket closed")
    took = time.time() - closing_at
    fail_if(took < timeout_s, f"slept {took:.2f} s after the last close, before its timeout")
    return f"slept {took:.1f} s after the last sockets were closed (idle timeout {timeout_s:g} s)"


def killed_case(siesta, port):
    h = Holder(f"ws://127.0.0.1:{port}", 1)
    fail_if(siesta.service("ws")["in_flight"] != 1, "not in flight")
    h.p.send_signal(signal.SIGKILL)
    h.p.wait()
    took = siesta.wait_service("ws", lambda e: e["in_flight"] == 0, 2, "in_flight back to 0")
    fail_if(took > 0.1, f"in flight for {took * 1000:.0f} ms after the client was killed")
    nothing_in_flight(siesta, "ws")
    return f"released {took * 1000:.0f} ms after SIGKILL"


def chromium_case(siesta, port):
    out = run_json(["node", os.path.join(HERE, "ws_browser.js"), f"http://127.0.0.1:{port}/",
                    args.chromium], CLIENT_TIMEOUT, env=node_env)
    fail_if("error" in out, f"chromium: {out.get('error')}")
    fail_if(out["page_status"] != 200, f"page status {out['page_status']}")
    fail_if(not out.get("text_echoed"), f"text not echoed: {out}")
    bad = [m for m in out["messages"] if not m["same"]]
    fail_if(len(out["messages"]) != 5 or bad, f"binary echo differed: {out['messages']}")
    fail_if(out["close_code"] != 1000 or not out["clean"], f"close {out}")
    nothing_in_flight(siesta, "ws")
    return out["browser"]


def nginx_case(siesta, port, nginx_log):
    note = echo_case(siesta, "ws", port)
    ping_case(siesta, port)
    with open(nginx_log, errors="replace") as f:
        errors = [l for l in f if "[error]" in l or "upstream prematurely" in l]
    fail_if(errors, f"nginx logged: {errors[:3]}")
    return note + ", pings"


def main():
    for tool in ("node", "nginx"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            die(f"{tool} not found (scripts/install-deps.sh installs it)")
    if not os.path.exists(args.chromium):
        die(f"{args.chromium} not found (scripts/install-deps.sh installs chromium)")
    for module in ("ws", "puppeteer-core"):
        if not os.path.isdir(os.path.join(args.node_modules, module)):
            die(f"{module} not in {args.node_modules} (npm ci in tests/clients)")
    py = python_with_websockets()
    server = os.path.join(HERE, "ws_server.py")
    services, ports = {}, {}
    for name, idle in (("ws", 600), ("nap", NAP_MINUTES)):
        up, listen = free_port(), free_port()
        services[name] = {"command": [py, server, "--port", str(up)],
                          "upstream": f"127.0.0.1:{up}", "health": "/health",
                          "listen": f"127.0.0.1:{listen}", "idle_timeout_minutes": idle}
        ports[name] = listen
    siesta = Siesta(procs, args.siesta, services)
    port = ports["ws"]

    cases.run("node-ws/echo", echo_case, siesta, "ws", port)
    cases.run("node-ws/server-ping", ping_case, siesta, port)
    cases.run("node-ws/server-close", server_close_case, siesta, port)
    cases.run("node-ws/client-close", client_close_case, siesta, port)
    cases.run("node-ws/200-sockets", many_case, siesta, port)
    cases.run("node-ws/sleeps-after-last", sleeps_after_last_case, siesta, ports["nap"])
    cases.run("node-ws/client-killed", killed_case, siesta, port)
    cases.run("chromium/page", chromium_case, siesta, port)

    # nginx's WebSocket configuration from its documentation: Upgrade and Connection set for
    # the upgrade, HTTP/1.1 to siesta.
    nginx_port = free_port()
    if not args.only or any(o in "nginx/node-ws-echo" for o in args.only):
        start_nginx(procs, [(nginx_port, port,
                             "proxy_set_header Upgrade $http_upgrade;\n"
                             "      proxy_set_header Connection $connection_upgrade;")],
                    extra_http="map $http_upgrade $connection_upgrade { default upgrade; '' ''; }")
    cases.run("nginx/node-ws-echo", nginx_case, siesta, nginx_port,
              os.path.join(procs.tmp, "nginx-error.log"))
    return cases.finish()


if __name__ == "__main__":
    code = 1
    try:
        code = main()
    finally:
        if code:
            print("siesta log (tail):\n" + procs.tail("siesta"), flush=True)
        procs.close(keep=args.keep)
    sys.exit(code)

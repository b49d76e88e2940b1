"""What the client matrix and the differential test share: processes that are always cleaned up,
free ports, a siesta with a generated config, nginx with a generated config, a connection-counting
TCP tap, and a case table that prints one line per case and `N passed, N failed`."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request


_handed_out = set()


def free_port():
    """A port nothing listens on now, never one handed out before in this run: the kernel may
    give a just-closed port again, and two of siesta's listeners on one port are refused (a
    service's listen was the admin API's once: "is already the admin API's listen address")."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_port(port, timeout=20, proc=None, what="port"):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} not listening on {port} after {timeout} s")


def http_get(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def http_post(port, path, data=b"", timeout=30):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def _own_session_dies_with_parent():
    """In the child: a session of its own (so its group can be killed), and SIGTERM when the
    harness dies, even by SIGKILL (ctest's timeout): nothing outlives a test."""
    os.setsid()
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Processes:
    """Every process started here is stopped at the end (SIGTERM, then SIGKILL of its group)."""

    def __init__(self, prefix):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs = []

    def log(self, name):
        return os.path.join(self.tmp, f"{name}.log")

    def start(self, name, argv, **kw):
        p = subprocess.Popen(argv, stdout=open(self.log(name), "w"), stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, preexec_fn=_own_session_dies_with_parent,
                             **kw)
        self.procs.append((name, p))
        return p

    def tail(self, name, n=3000):
        try:
            with open(self.log(name), errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def stop(self, p, timeout=15):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # whatever it left in its group
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.kill()
            p.wait()

    def close(self, keep=False):
        for _, p in reversed(self.procs):
            self.stop(p)
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Siesta:
    """A siesta with a generated config; `services` as in the config file."""

    def __init__(self, procs, binary, services, models=None, check_interval_minutes=0.01):
        self.procs = procs
        self.admin = free_port()
        config = {"listen": f"127.0.0.1:{self.admin}",
                  "idle_check_interval_minutes": check_interval_minutes,
                  "services": services}
        if models:
            config["models"] = models
        path = os.path.join(procs.tmp, "siesta.json")
        with open(path, "w") as f:
            json.dump(config, f, indent=2)
        self.proc = procs.start("siesta", [binary, "--config", path, "--log-level", "info"])
        wait_port(self.admin, timeout=30, proc=self.proc, what="siesta")

    def get(self, path):
        return json.loads(http_get(self.admin, path))

    def service(self, name):
        return self.get("/admin/idle-status")["services"][name]

    def wait_service(self, name, pred, timeout, what):
        """Polls idle-status until pred(entry) holds; returns the seconds it took."""
        t0 = time.time()
        end = t0 + timeout
        while True:
            entry = self.service(name)
            if pred(entry):
                return time.time() - t0
            if time.time() >= end:
                raise AssertionError(f"{what} not within {timeout:g} s; idle-status of {name}: "
                                     f"in_flight={entry.get('in_flight')} actual={entry.get('actual')} "
                                     f"sleep_blocker={entry.get('sleep_blocker')}")
            time.sleep(0.02)

    def wake(self, name):
        http_post(self.admin, f"/admin/services/{name}/wake")


def nginx_config(tmp, servers, extra_http=""):
    """servers: list of (listen_port, upstream_port, extra location directives)."""
    blocks = []
    for i, (listen, upstream, extra) in enumerate(servers):
        blocks.append(f"""
  upstream u{i} {{ server 127.0.0.1:{upstream}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{listen};
    location / {{
      proxy_pass http://u{i};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {extra}
    }}
  }}""")
    return f"""worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 1024; }}
http {{
  access_log {tmp}/nginx-access.log;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  {extra_http}
{''.join(blocks)}
}}
"""


def start_nginx(procs, servers, extra_http="", name="nginx"):
    conf = os.path.join(procs.tmp, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(nginx_config(procs.tmp, servers, extra_http))
    p = procs.start(name, ["nginx", "-c", conf, "-p", procs.tmp, "-e",
                           os.path.join(procs.tmp, "nginx-error.log")])
    for listen, _, _ in servers:
        wait_port(listen, proc=p, what="nginx")
    return p


class Tap:
    """A byte-for-byte TCP relay that counts the connections clients open through it: how the
    matrix checks that a client really reused its connection (fetch cannot tell)."""

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0  # opened
        self.closed = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def reset(self):
        with self.lock:
            self.connections = 0
            self.closed = 0

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state = {"open": 2}
            threading.Thread(target=self.pump, args=(c, u, state), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, state), daemon=True).start()

    def pump(self, a, b, state):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    b.shutdown(socket.SHUT_WR)
                    break
                b.sendall(data)
        except OSError:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        with self.lock:
            state["open"] -= 1
            last = state["open"] == 0
            if last:
                self.closed += 1
        if last:
            a.close()
            b.close()

    def close(self):
        self.sock.close()


class Cases:
    """Runs named cases; one line each, then the totals. A case fails by raising."""

    def __init__(self, only=None):
        self.only = only
        self.passed = []
        self.failed = []

    def run(self, name, fn, *args):
        if self.only and not any(o in name for o in self.only):
            return
        t0 = time.time()
        try:
            note = fn(*args)
            self.passed.append(name)
            print(f"PASS  {name}  ({time.time() - t0:.1f} s){'  ' + note if note else ''}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal
            self.failed.append(name)
            detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc(limit=3)
            detail = detail.strip().replace("\n", "\n      ")
            print(f"FAIL  {name}  ({time.time() - t0:.1f} s)\n      {detail}", flush=True)

    def finish(self):
        print(f"{len(self.passed)} passed, {len(self.failed)} failed", flush=True)
        if self.failed:
            print("failed: " + ", ".join(self.failed), flush=True)
        return 1 if self.failed or not self.passed else 0


def run_all(main, cases, procs, keep):
    """Runs main() (which runs the cases), then prints the totals, siesta's log on a failure,
    and cleans up; returns the exit code. An exception in main() fails the run as "setup"."""
    rc = 1
    try:
        main()
    except Exception as e:  # noqa: BLE001
        cases.failed.append("setup")
        print(f"FAIL  setup: {e}", flush=True)
    finally:
        rc = cases.finish()
        if rc:
            print("--- siesta log (tail) ---\n" + procs.tail("siesta", 4000), flush=True)
        procs.close(keep=keep)
        if keep:
            print(f"work directory kept: {procs.tmp}")
    return rc


def run_json(argv, timeout, stdin_data=None, env=None):
    """Runs a client driver that prints one JSON object on its last stdout line."""
    p = subprocess.run(argv, input=stdin_data, capture_output=True, timeout=timeout, env=env,
                       text=True)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if not lines:
        raise AssertionError(f"{' '.join(argv[:3])}: no result (exit {p.returncode}); "
                             f"stderr: {p.stderr.strip()[-1500:]}")
    try:
        out = json.loads(lines[-1])
    except ValueError:
        raise AssertionError(f"{' '.join(argv[:3])}: bad output (exit {p.returncode}): "
                             f"{p.stdout[-1000:]} stderr: {p.stderr[-1000:]}") from None
    out["_stderr"] = p.stderr
    return out


def die(msg):
    print(f"FAIL: {msg}", flush=True)
    print("0 passed, 1 failed", flush=True)
    sys.exit(1)

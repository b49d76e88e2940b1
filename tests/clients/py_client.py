#!/usr/bin/env python3
"""The client matrix's Python driver: Python's http.client, requests, and the curl command line,
as applications use them, against siesta's proxy port. Same contract as node_client.js: one case
as JSON in argv[1], one JSON line out with what the client saw; run_matrix.py judges it."""
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time

spec = json.loads(sys.argv[1])
T0 = time.monotonic()
base = f"http://127.0.0.1:{spec['port']}"
errors = []


def now():
    return round((time.monotonic() - T0) * 1000, 1)


def piece(i):
    return str(i % 10).encode() * spec.get("piece_bytes", 16384)


def pieces():
    for i in range(spec.get("pieces", 4)):
        if i:
            time.sleep(spec.get("gap_ms", 50) / 1000)
        yield piece(i)


def err(e):
    return f"{type(e).__name__}: {e}"


# ---- http.client: one HTTPConnection; "reused" means its socket object did not change ----
class HttpClient:
    def __init__(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=10)

    def request(self, method, path, body=None, abort_on_first_chunk=False, abort_after_ms=None):
        out = {"status": 0, "chunks": [], "body": "", "error": None}
        sock_before = self.conn.sock
        try:
            if abort_after_ms is not None:
                self.conn.timeout = abort_after_ms / 1000
            if body:
                self.conn.request(method, path, body=pieces(), encode_chunked=True)
            else:
                self.conn.request(method, path)
            out["reused"] = sock_before is not None and self.conn.sock is sock_before
            res = self.conn.getresponse()
            out["status"] = res.status
            out["headers"] = dict(res.getheaders())
            out["t_headers"] = now()
            while True:
                data = res.read1(65536)
                if not data:
                    break
                out["chunks"].append([now(), data.decode()])
                out["body"] += data.decode()
                if abort_on_first_chunk:
                    out["aborted_at"] = now()
                    out["aborted_wall"] = time.time()
                    self.conn.sock.shutdown(socket.SHUT_RDWR)
                    self.conn.close()
                    return out
            res.read()  # read1 leaves a Content-Length response open at its end; this closes it
            out["t_end"] = now()
        except socket.timeout:
            if abort_after_ms is None:
                raise
            out["aborted_at"] = now()
            out["aborted_wall"] = time.time()
            self.conn.close()
        except Exception as e:  # noqa: BLE001
            out["error"] = err(e)
            self.conn.close()
        return out


# ---- requests: one Session; "reused" from urllib3's count of connections it opened ----
class Requests:
    def __init__(self):
        import requests
        self.requests = requests
        self.s = requests.Session()

    def pool_connections(self):
        try:
            pools = self.s.get_adapter(base).poolmanager.pools
            return sum(pools[k].num_connections for k in pools.keys())
        except Exception:  # noqa: BLE001
            return None

    def request(self, method, path, body=None, abort_on_first_chunk=False, abort_after_ms=None):
        out = {"status": 0, "chunks": [], "body": "", "error": None}
        before = self.pool_connections()
        try:
            timeout = (5, abort_after_ms / 1000) if abort_after_ms is not None else 10
            r = self.s.request(method, base + path, data=pieces() if body else None, stream=True,
                               timeout=timeout)
            out["reused"] = before is not None and before > 0 and self.pool_connections() == before
            out["status"] = r.status_code
            out["headers"] = dict(r.headers)
            out["t_headers"] = now()
            for data in r.iter_content(chunk_size=None):
                out["chunks"].append([now(), data.decode()])
                out["body"] += data.decode()
                if abort_on_first_chunk:
                    out["aborted_at"] = now()
                    out["aborted_wall"] = time.time()
                    r.close()
                    self.s.close()
                    return out
            out["t_end"] = now()
        except self.requests.exceptions.ReadTimeout:
            if abort_after_ms is None:
                raise
            out["aborted_at"] = now()
            out["aborted_wall"] = time.time()
            self.s.close()
        except Exception as e:  # noqa: BLE001
            out["error"] = err(e)
        return out


# ---- curl: each case is one curl command line (several URLs or --next share its connection) ----
def curl_cmd(*args):
    return ["curl", "-sS", "--no-progress-meter", "-H", "Expect:", *args]


def run_curl(argv, stdin_pieces=False, abort_on_first_chunk=False):
    """Runs curl, collecting stdout as it arrives with its arrival time."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE if stdin_pieces else subprocess.DEVNULL)
    out = {"chunks": [], "body": "", "error": None}
    if stdin_pieces:
        for data in pieces():
            p.stdin.write(data)
            p.stdin.flush()
        p.stdin.close()
    fd = p.stdout.fileno()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r:
            continue
        data = os.read(fd, 65536)
        if not data:
            break
        out["chunks"].append([now(), data.decode()])
        out["body"] += data.decode()
        if abort_on_first_chunk:
            out["aborted_at"] = now()
            out["aborted_wall"] = time.time()
            p.kill()
            p.wait()
            return out
    out["t_end"] = now()
    p.wait(timeout=10)
    out["exit"] = p.returncode
    out["stderr"] = p.stderr.read().decode()
    if p.returncode:
        out["error"] = f"curl exit {p.returncode}: {out['stderr'].strip()}"
    return out


def split_curl(out, marker):
    """Splits curl's output at the -w markers into [(status, num_connects, body)]."""
    parts = []
    rest = out["body"]
    while marker in rest:
        before, _, after = rest.partition(marker)
        line, _, rest = after.partition("\n")
        status, connects = line.split()
        parts.append({"status": int(status), "connects": int(connects), "body": before})
    return parts


def curl_case(case):
    w = ["-w", "~~~%{http_code} %{num_connects}\n"]
    if case == "plain":
        out = run_curl(curl_cmd(*w, f"{base}/hello", f"{base}/hello"))
        parts = split_curl(out, "~~~")
        return {"responses": [{"status": p["status"], "body": p["body"], "reused": p["connects"] == 0,
                               "error": out["error"]} for p in parts] or [{"status": 0, "error": out["error"]}]}
    if case == "stream":
        out = run_curl(curl_cmd("-N", *w, f"{base}{spec['stream_path']}", f"{base}/hello"))
        parts = split_curl(out, "~~~")
        stream = {"status": parts[0]["status"] if parts else 0, "error": out["error"],
                  "body": parts[0]["body"] if parts else out["body"], "t_end": None,
                  "chunks": []}
        # Only the stream's own pieces (up to the marker), with their times.
        seen = 0
        for t, text in out["chunks"]:
            if seen >= len(stream["body"]):
                if stream["t_end"] is None:
                    stream["t_end"] = t
                break
            stream["chunks"].append([t, text[: len(stream["body"]) - seen]])
            seen += len(text)
            if seen >= len(stream["body"]) and "~~~" in text:
                stream["t_end"] = t
        nxt = parts[1] if len(parts) > 1 else {"status": 0, "body": "", "connects": -1}
        return {"stream": stream, "next": {"status": nxt["status"], "body": nxt["body"],
                                           "reused": nxt["connects"] == 0, "error": out["error"]}}
    if case == "upload":
        out = run_curl(curl_cmd(*w, "-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
                                f"{base}/echo", "--next", *w, f"{base}/hello"), stdin_pieces=True)
        parts = split_curl(out, "~~~")
        up = parts[0] if parts else {"status": 0, "body": ""}
        nxt = parts[1] if len(parts) > 1 else {"status": 0, "body": "", "connects": -1}
        return {"upload": {"status": up["status"], "body": up["body"], "error": out["error"]},
                "next": {"status": nxt["status"], "body": nxt["body"], "reused": nxt["connects"] == 0,
                         "error": out["error"]}}
    if case == "abort_stream":
        out = run_curl(curl_cmd("-N", f"{base}{spec['stream_path']}"), abort_on_first_chunk=True)
        out["status"] = 200 if out["chunks"] else 0
        return {"stream": out}
    if case == "abort_headers":
        t = spec["abort_after_ms"] / 1000
        out = run_curl(curl_cmd("--max-time", f"{t:.3f}", f"{base}{spec['hang_path']}"))
        if out.get("exit") == 28:  # curl's "Operation timed out": the abort we asked for
            out["aborted_at"] = out["t_end"]
            out["aborted_wall"] = time.time()
            out["error"] = None
        return {"hang": out}
    raise ValueError(f"unknown case {case}")


def main():
    client, case = spec["client"], spec["case"]
    if client == "curl":
        result = curl_case(case)
    else:
        c = HttpClient() if client == "http.client" else Requests()
        if case == "plain":
            result = {"responses": [c.request("GET", "/hello")]}
            time.sleep(0.05)
            result["responses"].append(c.request("GET", "/hello"))
        elif case == "stream":
            result = {"stream": c.request("GET", spec["stream_path"])}
            time.sleep(0.05)
            result["next"] = c.request("GET", "/hello")
        elif case == "upload":
            result = {"upload": c.request("POST", "/echo", body=True)}
            time.sleep(0.05)
            result["next"] = c.request("GET", "/hello")
        elif case == "abort_stream":
            result = {"stream": c.request("GET", spec["stream_path"], abort_on_first_chunk=True)}
        elif case == "abort_headers":
            result = {"hang": c.request("GET", spec["hang_path"], abort_after_ms=spec["abort_after_ms"])}
        else:
            raise ValueError(f"unknown case {case}")
    result.update(client=client, case=case, errors=errors)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

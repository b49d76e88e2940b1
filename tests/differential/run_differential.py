#!/usr/bin/env python3
"""Differential test of siesta's HTTP framing against nginx (issue 14).

  run_differential.py SIESTA_BINARY [--only SUBSTRING ...] [--keep]

Each file in corpus/ holds the raw bytes a client sends on one connection (framing edge cases:
CL+TE, repeated and listed Content-Length, Transfer-Encoding variants, Connection naming framing
or proxy headers, pipelining, chunk extensions, trailers, HTTP/1.0, Expect, bare LF, obs-fold,
Host errors). They are sent once through nginx (proxy_http_version 1.1, keep-alive upstream) and
once through siesta, each to a recording upstream: a raw socket server that keeps the exact bytes
it receives and answers every request it can delimit with a fixed response (chunked for targets
containing "chunked-response", else Content-Length).

A proxy's outcome is correct when
  1. the bytes the client received parse as a sequence of responses under Node's llhttp
     (parse_responses.js), nothing left over;
  2. the bytes the upstream received parse strictly (strict_http.py: one framing per message, no
     bare LF, no obs-fold, exactly one Host, ...), unless the proxy gave up on a message midway
     and closed the upstream connection;
  3. the messages forwarded are the client's own under RFC 9112 (the reference parse of the
     client's bytes, strict or lenient where the RFC allows a choice): same method, target, body,
     Host, and X-Forwarded-For / Authorization not lost — so nothing was smuggled, dropped or
     merged;
  4. each forwarded request got the upstream's answer in order, and a request not forwarded got a
     4xx/5xx (or the connection closed when the reference rejects it too).
A case passes when siesta's outcome is correct. nginx's outcome is judged the same way and shown
next to it, as the yardstick. Prints a table and "N passed, N failed"; exits 1 on any failure.
"""
import argparse
import base64
import glob
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "clients"))
from harness import Processes, Siesta, free_port, wait_port  # noqa: E402
from strict_http import parse_requests  # noqa: E402

QUIET_S = 0.5     # the exchange is over when nothing moved for this long...
FIRST_BYTE_S = 3  # ...or nothing came back at all for this long
CASE_CAP_S = 8

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("siesta")
ap.add_argument("--only", nargs="*")
ap.add_argument("--keep", action="store_true")
args = ap.parse_args()


class Recorder:
    """The recording upstream: exact bytes per connection, a fixed answer per request."""

    def __init__(self, name):
        self.name = name
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.mark = 0
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = {"data": bytearray(), "eof": False, "sock": c, "answered": 0}
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self.serve, args=(c, rec), daemon=True).start()

    @staticmethod
    def answer(msg, i):
        if "chunked-response" in msg.target:
            return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                    b"\r\n6\r\nrec-%d\n\r\n0\r\n\r\n" % (i % 10))
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nrec-%d\n" % (i % 10)

    def serve(self, c, rec):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                with self.lock:
                    rec["data"] += data
                    snapshot = bytes(rec["data"])
                msgs, err = parse_requests(snapshot, lenient=True)
                for m in msgs[rec["answered"]:]:
                    c.sendall(self.answer(m, rec["answered"]))
                    rec["answered"] += 1
                if err and not err.startswith("incomplete"):
                    break  # cannot delimit what comes next: close, as a server would
        except OSError:
            pass
        with self.lock:
            rec["eof"] = True
        try:
            c.close()
        except OSError:
            pass

    def begin_case(self):
        with self.lock:
            self.mark = len(self.conns)

    def end_case(self):
        """The connections of this case (bytes and whether they ended), and closes them all."""
        time.sleep(0.1)
        with self.lock:
            mine = self.conns[self.mark:]
            out = [{"data": bytes(r["data"]), "eof": r["eof"]} for r in mine]
            # Every connection ends with its case, nginx's kept-alive ones too: no case's bytes
            # can land on a connection another case opened.
            for r in self.conns:
                if not r["eof"]:
                    try:
                        r["sock"].shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        return out


def exchange(port, data):
    """Sends the raw bytes on a new connection; returns what came back until the peer closed or
    things went quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    got = b""
    start = last = time.time()
    closed = False
    s.settimeout(0.05)
    while time.time() - start < CASE_CAP_S:
        try:
            d = s.recv(65536)
            if not d:
                closed = True
                break
            got += d
            last = time.time()
        except socket.timeout:
            if got and time.time() - last > QUIET_S:
                break
            if not got and time.time() - start > FIRST_BYTE_S:
                break
        except ConnectionResetError:
            closed = True
            break
    s.close()
    return got, closed


def header(msg, name):
    v = msg.values(name)
    return v[0] if v else None


def same_message(client, fwd, proxy_name):
    """Why the forwarded request is not the client's, or None."""
    if (client.method, client.target) != (fwd.method, fwd.target):
        return f"forwarded {fwd.method} {fwd.target} for {client.method} {client.target}"
    if client.body != fwd.body:
        return f"body {fwd.body[:40]!r} forwarded for {client.body[:40]!r}"
    ch, fh = header(client, "host"), header(fwd, "host")
    if ch is not None and (fh is None or fh.lower() != ch.lower()):
        return f"Host {fh!r} forwarded for {ch!r}"
    for name in ("x-forwarded-for", "authorization"):
        cv, fv = header(client, name), header(fwd, name)
        if cv is not None and (fv is None or not fv.startswith(cv)):
            return f"the client's {name} ({cv.decode()!r}) was lost: forwarded {fv!r}"
    return None


def judge(case_bytes, outcome, llhttp):
    """-> (ok, short outcome text, reason)."""
    client_resp, closed, upstream = outcome
    statuses = [r["status"] for r in llhttp["responses"] if r and r["status"] >= 200]
    fwd, fwd_problem = [], None
    for conn in upstream:
        msgs, err = parse_requests(conn["data"], lenient=False)
        fwd += msgs
        if err and not (err.startswith("incomplete") and conn["eof"]):
            fwd_problem = f"the upstream received an unparsable stream: {err} after {len(msgs)} " \
                          f"request(s): {conn['data'][:160]!r}"
    text = ("fwd %d" % len(fwd)) + (" [%s]" % ",".join(map(str, statuses)) if statuses else "") + \
        (" closed" if closed else "")
    if llhttp["error"]:
        return False, text + " BAD-RESPONSE", f"the client's bytes do not parse: {llhttp['error']}; " \
                                              f"received {client_resp[-120:]!r}"
    if llhttp["incomplete"]:
        return False, text + " CUT", f"the last response was cut: {client_resp[-120:]!r}"
    if fwd_problem:
        return False, text + " AMBIGUOUS", fwd_problem
    reasons = []
    for lenient in (False, True):
        ref, ref_err = parse_requests(case_bytes, lenient=lenient)
        mode = "lenient" if lenient else "strict"
        if len(fwd) > len(ref):
            reasons.append(f"{mode}: {len(fwd)} request(s) forwarded, the client sent {len(ref)} "
                           f"valid ({ref_err or 'then nothing'})")
            continue
        why = next((w for w in (same_message(c, f, "") for c, f in zip(ref, fwd)) if w), None)
        if why:
            reasons.append(f"{mode}: {why}")
            continue
        if statuses[:len(fwd)] != [200] * len(fwd):
            reasons.append(f"{mode}: the client got {statuses} for {len(fwd)} forwarded request(s)")
            continue
        extra = statuses[len(fwd):]
        if len(extra) > 1 or (extra and extra[0] < 400):
            reasons.append(f"{mode}: unexpected responses {extra} after the forwarded ones")
            continue
        if len(fwd) < len(ref) and not extra:
            reasons.append(f"{mode}: request {len(fwd) + 1} is valid but was neither forwarded "
                           "nor answered with an error")
            continue
        if len(fwd) == len(ref) and ref_err and not ref_err.startswith("incomplete") \
                and not extra and not closed:
            reasons.append(f"{mode}: request {len(fwd) + 1} is invalid ({ref_err}) and got neither "
                           f"an error nor a close within {FIRST_BYTE_S} s: the client hangs")
            continue
        if len(fwd) == len(ref) and ref_err is None and extra:
            reasons.append(f"{mode}: an error {extra} after every request was forwarded")
            continue
        note = " (stricter)" if len(fwd) < len(ref) else ""
        return True, text + note, ""
    return False, text, "; ".join(reasons)


def nginx_conf(tmp, port, upstream):
    return f"""worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  map $http_host $fwd_host {{ "" $host; default $http_host; }}
  upstream rec {{ server 127.0.0.1:{upstream}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    location / {{
      proxy_pass http://rec;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $fwd_host;
    }}
  }}
}}
"""


def main():
    procs = Processes("siesta-differential-")
    failed = passed = 0
    try:
        files = sorted(glob.glob(os.path.join(HERE, "corpus", "*.http")))
        if args.only:
            files = [f for f in files if any(o in os.path.basename(f) for o in args.only)]
        if not files:
            raise SystemExit("FAIL: no corpus files")
        rec_nginx, rec_siesta = Recorder("nginx"), Recorder("siesta")
        nginx_port, siesta_port = free_port(), free_port()
        conf = os.path.join(procs.tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(procs.tmp, nginx_port, rec_nginx.port))
        p = procs.start("nginx", ["nginx", "-c", conf, "-p", procs.tmp, "-e",
                                  os.path.join(procs.tmp, "nginx-error.log")])
        wait_port(nginx_port, proc=p, what="nginx")
        siesta = Siesta(procs, args.siesta, {"rec": {
            "command": ["sleep", "100000"], "upstream": f"127.0.0.1:{rec_siesta.port}",
            "health": "none", "listen": f"127.0.0.1:{siesta_port}", "desired": "on",
            "idle_sleep_enabled": False}})
        siesta.wait_service("rec", lambda e: e["actual"] == "running", 20, "the service running")

        results = []
        for path in files:
            data = open(path, "rb").read()
            outs = {}

            def run(name, port, rec):
                rec.begin_case()
                got, closed = exchange(port, data)
                outs[name] = (got, closed, rec.end_case())
            threads = [threading.Thread(target=run, args=a) for a in
                       (("nginx", nginx_port, rec_nginx), ("siesta", siesta_port, rec_siesta))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            results.append((os.path.basename(path)[:-5], data, outs))

        streams = [base64.b64encode(outs[n][0]).decode() for _, _, outs in results
                   for n in ("nginx", "siesta")]
        p = subprocess.run(["node", os.path.join(HERE, "parse_responses.js")],
                           input=json.dumps(streams), capture_output=True, text=True, timeout=60)
        if p.returncode:
            raise SystemExit(f"FAIL: parse_responses.js: {p.stderr}")
        parsed = json.loads(p.stdout)

        rows, details = [], []
        for i, (name, data, outs) in enumerate(results):
            ok_n, text_n, why_n = judge(data, outs["nginx"], parsed[2 * i])
            ok_s, text_s, why_s = judge(data, outs["siesta"], parsed[2 * i + 1])
            verdict = "ok" if ok_s else "FAIL"
            if not ok_n:
                verdict += " (nginx: not ok either)"
            rows.append((name, text_n if ok_n else text_n + " !", text_s, verdict))
            if ok_s:
                passed += 1
            else:
                failed += 1
                details.append(f"{name}: siesta: {why_s}")
            if not ok_n:
                details.append(f"{name}: nginx: {why_n}")
        w = [max(len(r[k]) for r in rows + [("case", "nginx", "siesta", "verdict")]) for k in range(4)]
        line = lambda r: "  ".join(str(c).ljust(w[k]) for k, c in enumerate(r))  # noqa: E731
        print(line(("case", "nginx", "siesta", "verdict")))
        print(line(tuple("-" * x for x in w)))
        for r in rows:
            print(line(r))
        if details:
            print("\nWhy:")
            for d in details:
                print("  " + d)
    except SystemExit as e:
        print(e)
        failed += 1
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        print(f"FAIL: {e}")
        failed += 1
    finally:
        procs.close(keep=args.keep)
        if args.keep:
            print(f"work directory kept: {procs.tmp}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


sys.exit(main())

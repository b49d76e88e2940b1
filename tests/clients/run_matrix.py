#!/usr/bin/env python3
"""siesta's client matrix (issue 14): clients nobody here wrote, driven through siesta's proxy
port to real upstreams, asserting on what each client receives.

  run_matrix.py SIESTA_BINARY [--node-modules DIR] [--only SUBSTRING ...] [--keep]

Clients: Node's http module and global fetch (node_client.js), Python's http.client and requests,
and curl (py_client.py); the ollama and openai npm libraries (llm_client.js) against the Ollama
emulator; redis-cli through a TCP-mode service in front of a real redis-server; and nginx in
front of siesta (nginx -> siesta -> upstream, keep-alive on both hops).

Cases for each HTTP client (upstream: upstream.py, Python's own HTTP server):
  plain          two requests on one connection: both answered, the connection reused
  stream         an NDJSON stream arrives piece by piece (the first token long before the last),
                 every token exactly once, then a second request on the same connection works
  upload         a chunked upload (4 x 16 KiB, 50 ms apart) arrives whole, then a second request
                 on the same connection works and the upstream saw no stray bytes
  abort_stream   the client leaves after the first piece of a stream
  abort_headers  the client leaves while the upstream has not answered yet
After an abort the service's in_flight (GET /admin/idle-status) is back to 0 within 1 s, and the
service then sleeps on time (idle timeout after the abort, not before, at most 1.5 s late).
Prints one line per case and "N passed, N failed"; exits 1 on any failure.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Cases, Processes, Siesta, Tap, die, free_port, http_get, run_all, run_json, start_nginx  # noqa: E402

STREAM_N, STREAM_INTERVAL_MS = 10, 100
NAP_MINUTES = 0.04  # 2.4 s: the abort cases' service, which must fall asleep on time after them
CLIENT_TIMEOUT = 40

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("siesta")
ap.add_argument("--node-modules", help="node_modules with the pinned ollama and openai (npm ci)")
ap.add_argument("--only", nargs="*", help="run only the cases whose name contains one of these")
ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
args = ap.parse_args()

procs = Processes("siesta-clients-")
cases = Cases(args.only)
py = sys.executable


# ---- judging what a client saw --------------------------------------------------------------

def fail_if(cond, msg):
    if cond:
        raise AssertionError(msg)


def no_error(r, what):
    fail_if(r.get("fatal"), f"{what}: driver crashed: {r.get('fatal')}")
    fail_if(r.get("error"), f"{what}: client error: {r.get('error')}")


def check_hello(r, what, reused=True):
    no_error(r, what)
    fail_if(r.get("status") != 200 or r.get("body") != "hello\n",
            f"{what}: got status {r.get('status')} body {r.get('body')!r}, want 200 'hello\\n'")
    if reused and r.get("reused") is not None:  # fetch cannot tell; the tap counts for it
        fail_if(not r.get("reused"), f"{what}: the client did not reuse its connection (siesta "
                                     "closed it, or the client dropped it after a protocol error)")


def token_times(stream, sse=False):
    """The tokens of an NDJSON or SSE body in order, each with the time its line completed."""
    out, buf = [], ""
    for t, text in stream["chunks"]:
        buf += text
        while True:
            sep = "\n\n" if sse else "\n"
            if sep not in buf:
                break
            line, buf = buf.split(sep, 1)
            if sse:
                line = line.removeprefix("data: ")
            out.append((t, json.loads(line)["token"]))
    fail_if(buf.strip(), f"stream: trailing bytes after the last token: {buf!r}")
    return out


def check_stream(stream, n=STREAM_N, interval_ms=STREAM_INTERVAL_MS, sse=False):
    no_error(stream, "stream")
    fail_if(stream.get("status") != 200, f"stream: status {stream.get('status')}")
    toks = token_times(stream, sse)
    fail_if([k for _, k in toks] != list(range(n)),
            f"stream: tokens {[k for _, k in toks]}, want 0..{n - 1} once each")
    first, last = toks[0][0], toks[-1][0]
    spread = last - first
    expected = (n - 1) * interval_ms
    # Incremental: the first token arrives long before the last (not buffered up to the end).
    fail_if(spread < 0.6 * expected,
            f"stream: buffered: first token at {first:.0f} ms, last at {last:.0f} ms "
            f"(spread {spread:.0f} ms, the upstream spreads them over {expected} ms)")
    distinct = len({t for t, _ in toks})
    fail_if(distinct < n // 2, f"stream: tokens arrived in only {distinct} pieces")
    return f"first token {first:.0f} ms, last {last:.0f} ms"


def piece_sha(pieces=4, size=16384):
    return hashlib.sha256(b"".join(str(i % 10).encode() * size for i in range(pieces))).hexdigest()


def check_upload(up):
    no_error(up, "upload")
    fail_if(up.get("status") != 200, f"upload: status {up.get('status')} body {up.get('body')!r}")
    echo = json.loads(up["body"])
    fail_if(echo["bytes"] != 4 * 16384 or echo["sha256"] != piece_sha(),
            f"upload: the upstream read {echo['bytes']} bytes (sha {echo['sha256'][:12]}), "
            f"want {4 * 16384} bytes, sha {piece_sha()[:12]}")


# ---- the environment -----------------------------------------------------------------------

class Env:
    pass


env = Env()


def upstream_stats(port):
    return json.loads(http_get(port, "/stats"))


def in_flight_back_and_sleeps(service, aborted_at, client_done_at):
    """After an abort: in_flight back to 0 within 1 s (of the client's exit: the abort itself is
    a little earlier), then the service sleeps on time: its idle timeout after the abort."""
    s = env.siesta
    try:
        s.wait_service(service, lambda e: e["in_flight"] == 0,
                       max(0.0, client_done_at + 1.0 - time.time()),
                       "in_flight back to 0 within 1 s of the abort")
    except AssertionError as e:
        raise AssertionError(f"{e}; the aborted request stays in flight, the service never sleeps")
    idle = NAP_MINUTES * 60
    s.wait_service(service, lambda e: e["actual"] in ("stopping", "stopped"),
                   aborted_at + idle + 1.5 - time.time(),
                   f"{service} asleep by {idle + 1.5:.1f} s after the abort")
    slept_at = time.time() - aborted_at
    fail_if(slept_at < idle - 0.2, f"{service} slept {slept_at:.1f} s after the abort, before its "
                                   f"{idle:.1f} s idle timeout")
    return f"in_flight 0, asleep {slept_at:.1f} s after the abort (idle timeout {idle:.1f} s)"


def ensure_running(service):
    env.siesta.wake(service)
    env.siesta.wait_service(service, lambda e: e["actual"] == "running", 10, f"{service} running")


def driver(client):
    if client in ("http", "fetch"):
        return lambda spec: run_json(["node", os.path.join(HERE, "node_client.js"), json.dumps(spec)],
                                     CLIENT_TIMEOUT)
    return lambda spec: run_json([py, os.path.join(HERE, "py_client.py"), json.dumps(spec)],
                                 CLIENT_TIMEOUT)


def node_env():
    env_ = dict(os.environ)
    env_["NODE_PATH"] = args.node_modules or os.path.join(HERE, "node_modules")
    return env_


LLM_TOKENS, LLM_INTERVAL_MS, MODEL = 8, 100, "llama3.2:3b"


def llm_case(lib, api, stream, tap):
    """The ollama or openai npm library, two calls on one client (one connection pool): both
    answered in full, streams token by token, and the second call on the first one's connection."""
    spec = {"lib": lib, "api": api, "stream": stream, "port": tap.port, "model": MODEL, "repeat": 2}
    tap.reset()
    r = run_json(["node", os.path.join(HERE, "llm_client.js"), json.dumps(spec)], CLIENT_TIMEOUT,
                 env=node_env())
    fail_if(r.get("fatal"), f"driver crashed: {r.get('fatal')}")
    notes = []
    for i, call in enumerate(r["calls"]):
        what = f"call {i + 1}"
        fail_if(call.get("error"), f"{what}: {call.get('error')}")
        if not stream:
            fail_if(call["text"] != "".join(f"t{i}" for i in range(LLM_TOKENS)),
                    f"{what}: text {call['text']!r}")
            continue
        pieces = [(t, text) for t, text in call["pieces"] if text]
        texts = [text for _, text in pieces]
        fail_if(texts != [f"t{k}" for k in range(LLM_TOKENS)],
                f"{what}: streamed pieces {texts}, want t0..t{LLM_TOKENS - 1} once each")
        fail_if(not call.get("done"), f"{what}: the stream did not end with done")
        spread = pieces[-1][0] - pieces[0][0]
        expected = (LLM_TOKENS - 1) * LLM_INTERVAL_MS
        fail_if(spread < 0.6 * expected, f"{what}: buffered: tokens spread over {spread:.0f} ms, "
                                         f"the emulator spreads them over {expected} ms")
        notes.append(f"first token {pieces[0][0] - call['t_start']:.0f} ms, last "
                     f"{pieces[-1][0] - call['t_start']:.0f} ms")
    fail_if(tap.connections != 1, f"{tap.connections} connections reached siesta, want 1 (the "
                                  "library dropped its keep-alive connection after a protocol error)")
    env.siesta.wait_service("ollama", lambda e: e["in_flight"] == 0, 1.0, "in_flight 0 within 1 s")
    m = env.siesta.get("/admin/idle-status")["models"].get(MODEL)
    fail_if(m is None or m["in_flight"] != 0 or not m["loaded"],
            f"model {MODEL} in idle-status: {m}, want loaded with nothing in flight")
    return "; ".join(notes)


def models_listed():
    """The model the libraries used shows in GET /admin/models, tracked from traffic alone."""
    listed = env.siesta.get("/admin/models")
    entries = listed.get("models", listed) if isinstance(listed, dict) else listed
    names = list(entries) if isinstance(entries, dict) else [e.get("name") for e in entries]
    fail_if(MODEL not in names, f"{MODEL} not in GET /admin/models: {listed}")
    one = env.siesta.get(f"/admin/models/{MODEL}")
    fail_if(not one.get("loaded") or one.get("provider") != "ollama",
            f"GET /admin/models/{MODEL}: {one}, want loaded, provider ollama")
    return f"loaded, keep_alive_seconds {one.get('keep_alive_seconds')}"


def http_case(client, case, port, tap, upstream_port, service, via=""):
    """One case of the HTTP matrix. `port` is where the client connects (siesta's port, or a tap
    or nginx in front of it); `tap` counts the connections siesta receives."""
    run = driver(client)
    spec = {"client": client, "case": case, "port": port,
            "stream_path": f"/stream?n={STREAM_N}&interval_ms={STREAM_INTERVAL_MS}",
            "hang_path": "/hang?ms=30000", "abort_after_ms": 300}
    if case.startswith("abort"):
        ensure_running(service)
        if case == "abort_stream":
            spec["stream_path"] = "/stream?n=200&interval_ms=100"
        r = run(spec)
        done = time.time()
        key = "stream" if case == "abort_stream" else "hang"
        fail_if(r.get("fatal"), f"driver crashed: {r.get('fatal')}")
        got = r[key]
        fail_if(got.get("error"), f"client error before the abort: {got.get('error')}")
        fail_if(got.get("aborted_at") is None, f"the client did not abort: {got}")
        if case == "abort_stream":
            fail_if(not got.get("chunks"), "no piece of the stream arrived before the abort")
        else:
            fail_if(got.get("status"), f"the upstream answered ({got.get('status')}) before the abort")
        return in_flight_back_and_sleeps(service, got.get("aborted_wall", done), done)
    before = upstream_stats(upstream_port)
    in_flight_before = env.siesta.service(service)["in_flight"]
    if tap:
        tap.reset()
    r = run(spec)
    fail_if(r.get("fatal"), f"driver crashed: {r.get('fatal')}")
    note = ""
    if case == "plain":
        check_hello(r["responses"][0], "1st request", reused=False)
        check_hello(r["responses"][1], "2nd request")
    elif case == "stream":
        note = check_stream(r["stream"])
        check_hello(r["next"], "request after the stream")
    elif case == "upload":
        check_upload(r["upload"])
        check_hello(r["next"], "request after the chunked upload")
    fail_if(r.get("errors"), f"client errors: {r['errors']}")
    after = upstream_stats(upstream_port)
    fail_if(after["bad_requests"] != before["bad_requests"],
            f"the upstream received {after['bad_requests'] - before['bad_requests']} unparsable "
            "request(s) (stray bytes after a body)")
    if tap and via:
        # nginx keeps its connections to siesta across cases: it may open one, and must close none.
        time.sleep(0.1)
        fail_if(tap.connections > 1 or tap.closed,
                f"nginx opened {tap.connections} and closed {tap.closed} connection(s) to siesta, "
                "want at most 1 and none (its keep-alive connection was dropped)")
    elif tap:
        fail_if(tap.connections != 1, f"{tap.connections} connections reached siesta, want 1 "
                                      "(the keep-alive connection was not reused)")
    env.siesta.wait_service(service, lambda e: e["in_flight"] <= in_flight_before, 1.0,
                            "in_flight back to where it was within 1 s")
    return note


def nginx_errors():
    try:
        with open(os.path.join(procs.tmp, "nginx-error.log"), errors="replace") as f:
            return [l.strip() for l in f if re.search(r"\[(error|crit|alert)\]", l) or
                    ("[warn]" in l and "upstream" in l)]
    except OSError:
        return []


def nginx_case(case, port, tap, upstream_port, service):
    """Node's http client through nginx through siesta; nginx must log no error (an upstream that
    sends data after the final chunk, an invalid header, ...). Aborts: nginx closes its upstream
    connection when the client leaves, so siesta must see the abort through it."""
    before = len(nginx_errors())
    note = http_case("http", case, port, tap, upstream_port, service, via=" from nginx")
    new = nginx_errors()[before:]
    # A client abort is logged by nginx at info level; errors, and warnings about what siesta
    # sent it ("upstream sent data after final chunk"), are failures.
    fail_if(new, "nginx logged: " + " | ".join(new)[-600:])
    return note


def redis_cli(port, *cmd, stdin=None):
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *cmd], input=stdin,
                       capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    fail_if(p.returncode or p.stderr.strip(), f"redis-cli {' '.join(cmd)}: exit {p.returncode} "
                                              f"{p.stderr.strip()}")
    return p.stdout


def redis_sleeps_on_time(ended_at):
    env.siesta.wait_service("redis", lambda e: e["in_flight"] == 0,
                            max(0.0, ended_at + 1.0 - time.time()),
                            "in_flight back to 0 within 1 s of the last connection's end")
    env.siesta.wait_service("redis", lambda e: e["actual"] in ("stopping", "stopped"),
                            ended_at + NAP_MINUTES * 60 + 1.5 - time.time(), "redis asleep on time")
    slept = time.time() - ended_at
    fail_if(slept < NAP_MINUTES * 60 - 0.2, f"redis slept {slept:.1f} s after its last connection")
    return slept


def redis_commands(port):
    """A sleeping redis is woken by redis-cli's connection; commands, and a pipeline of them on
    one connection, are answered; then nothing is in flight and it sleeps on time."""
    env.siesta.wait_service("redis", lambda e: e["actual"] == "stopped", 10, "redis asleep at first")
    t0 = time.time()
    fail_if(redis_cli(port, "PING").strip() != "PONG", "PING through siesta did not answer PONG")
    woke = time.time() - t0
    fail_if(redis_cli(port, "SET", "matrix", "siesta").strip() != "OK", "SET failed")
    fail_if(redis_cli(port, "GET", "matrix").strip() != "siesta", "GET did not read back the value")
    out = redis_cli(port, stdin="SET n 1\nINCR n\nINCRBY n 40\nGET n\n").split()
    fail_if(out != ["OK", "2", "42", "42"], f"a pipeline on one connection answered {out}")
    slept = redis_sleeps_on_time(time.time())
    return f"woke in {woke:.2f} s, asleep {slept:.1f} s after the last command"


def redis_subscribe(port):
    """SUBSCRIBE holds one connection open longer than the idle timeout: the service stays up;
    messages PUBLISHed on other connections arrive one by one; when the subscriber is killed the
    connection's in_flight ends within 1 s and the service sleeps on time."""
    sub = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "SUBSCRIBE", "ch"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        env.siesta.wait_service("redis", lambda e: e["in_flight"] >= 1 and e["actual"] == "running",
                                10, "the subscriber's connection in flight")
        arrivals = []

        def reader():
            for line in sub.stdout:
                if re.fullmatch(r"m\d", line.strip()):
                    arrivals.append((time.time(), line.strip()))
        threading.Thread(target=reader, daemon=True).start()
        time.sleep(0.3)
        for i in range(5):
            out = redis_cli(port, "PUBLISH", "ch", f"m{i}").strip()
            fail_if(out != "1", f"PUBLISH m{i}: {out} subscribers, want 1")
            time.sleep(0.2)
        # Held past the idle timeout: a connection in flight keeps redis up.
        while time.time() < t0 + NAP_MINUTES * 60 + 1.0:
            time.sleep(0.1)
        e = env.siesta.service("redis")
        fail_if(e["actual"] != "running", f"redis went to sleep ({e['actual']}) with a subscriber connected")
        fail_if([m for _, m in arrivals] != [f"m{i}" for i in range(5)],
                f"the subscriber got {[m for _, m in arrivals]}, want m0..m4")
        spread = arrivals[-1][0] - arrivals[0][0]
        fail_if(spread < 0.5, f"messages arrived together (spread {spread:.2f} s), not one by one")
    finally:
        sub.kill()
        sub.wait()
    slept = redis_sleeps_on_time(time.time())
    return f"asleep {slept:.1f} s after the subscriber left"


def redis_abort_blocking(port):
    """redis-cli killed during a BLPOP that nothing answers: in_flight back to 0 within 1 s, sleep
    on time."""
    p = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "BLPOP", "never", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        env.siesta.wait_service("redis", lambda e: e["in_flight"] >= 1 and e["actual"] == "running",
                                10, "the BLPOP connection in flight")
        time.sleep(0.3)
        fail_if(p.poll() is not None, "redis-cli BLPOP ended by itself")
    finally:
        p.kill()
        p.wait()
    slept = redis_sleeps_on_time(time.time())
    return f"asleep {slept:.1f} s after the kill"


# ---- main ----------------------------------------------------------------------------------

def main():
    for tool in ("node", "curl", "nginx", "redis-server", "redis-cli"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            die(f"{tool} not found (scripts/install-deps.sh installs it)")
    upstream = os.path.join(HERE, "upstream.py")
    services, ports = {}, {}

    def service(name, idle_minutes):
        up, listen = free_port(), free_port()
        services[name] = {"command": [py, upstream, "--port", str(up)],
                          "upstream": f"127.0.0.1:{up}", "health": "/hello",
                          "listen": f"127.0.0.1:{listen}", "idle_timeout_minutes": idle_minutes}
        ports[name] = (listen, up)

    clients = ["http", "fetch", "http.client", "requests", "curl"]
    names = {"http": "node-http", "fetch": "node-fetch", "http.client": "python-http.client",
             "requests": "python-requests", "curl": "curl"}
    aborts = ("abort_stream", "abort_headers")
    service("web", 600)
    # Each abort case has a service of its own: one request left in flight must not hide the
    # next case's outcome.
    for client in clients + ["nginx"]:
        for case in aborts:
            service(f"nap-{names.get(client, client)}-{case}", NAP_MINUTES)
    # Ollama (the emulator) as a model server: the model is in no config, siesta tracks it from
    # the libraries' requests alone.
    emu_up, emu_port = free_port(), free_port()
    services["ollama"] = {
        "command": [py, os.path.join(HERE, "..", "support", "ollama_emulator.py"), "--port",
                    str(emu_up), "--load-ms", "100", "--models", MODEL, "--tokens", str(LLM_TOKENS),
                    "--token-interval-ms", str(LLM_INTERVAL_MS)],
        "upstream": f"127.0.0.1:{emu_up}", "health": "/api/version",
        "listen": f"127.0.0.1:{emu_port}", "model_api": "ollama", "idle_timeout_minutes": 600}
    # redis-server behind a TCP-mode service.
    redis_up, redis_port = free_port(), free_port()
    services["redis"] = {
        "command": ["redis-server", "--port", str(redis_up), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no"],
        "upstream": f"127.0.0.1:{redis_up}", "listen": f"127.0.0.1:{redis_port}",
        "protocol": "tcp", "idle_timeout_minutes": NAP_MINUTES}
    env.siesta = Siesta(procs, args.siesta, services)
    ensure_running("web")
    web_tap = Tap(ports["web"][0])

    for client in clients:
        for case in ("plain", "stream", "upload"):
            cases.run(f"{names[client]}/{case}", http_case, client, case, web_tap.port, web_tap,
                      ports["web"][1], "web")
        for case in aborts:
            nap = f"nap-{names[client]}-{case}"
            cases.run(f"{names[client]}/{case}", http_case, client, case, ports[nap][0], None,
                      ports[nap][1], nap)

    # nginx in front of siesta: client -> nginx -> (tap) -> siesta -> upstream, keep-alive on
    # both hops, nginx's default proxy buffering (siesta's X-Accel-Buffering: no must turn it off
    # for streams), request bodies streamed (chunked uploads stay chunked).
    nginx_extra = "proxy_request_buffering off;"
    nginx_tap = Tap(ports["web"][0])
    nginx_web = free_port()
    servers = [(nginx_web, nginx_tap.port, nginx_extra)]
    nginx_ports = {}
    for case in aborts:
        nginx_ports[case] = free_port()
        servers.append((nginx_ports[case], ports[f"nap-nginx-{case}"][0], nginx_extra))
    start_nginx(procs, servers)
    for case in ("plain", "stream", "upload"):
        cases.run(f"nginx-in-front/{case}", nginx_case, case, nginx_web, nginx_tap,
                  ports["web"][1], "web")
    for case in aborts:
        nap = f"nap-nginx-{case}"
        cases.run(f"nginx-in-front/{case}", nginx_case, case, nginx_ports[case], None,
                  ports[nap][1], nap)

    cases.run("redis-cli/commands", redis_commands, redis_port)
    cases.run("redis-cli/subscribe", redis_subscribe, redis_port)
    cases.run("redis-cli/abort-blocking", redis_abort_blocking, redis_port)

    emu_tap = Tap(emu_port)
    for lib, api in (("ollama", "generate"), ("ollama", "chat"), ("openai", "chat.completions")):
        for stream in (False, True):
            cases.run(f"{lib}-npm/{api}{'-stream' if stream else ''}", llm_case, lib, api, stream,
                      emu_tap)
    cases.run("ollama-npm/model-in-admin-models", models_listed)


sys.exit(run_all(main, cases, procs, args.keep))

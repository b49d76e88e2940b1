#!/usr/bin/env python3
"""An Ollama emulator for siesta's tests: Ollama itself cannot run here (no GPU, no models).

It follows the published API (../shared/reference/ollama-api.md) in everything siesta relies on:
  POST /api/generate, /api/chat, /api/embed, /api/embeddings   load, answer (NDJSON streams or
       one object with "stream": false), honour "keep_alive"; a body with only the model loads
       (done_reason "load"); "keep_alive": 0 with no prompt unloads (done_reason "unload")
  POST /v1/chat/completions, /v1/completions, /v1/embeddings   OpenAI-compatible; keep_alive is
       NOT read (the server default applies), streams are Server-Sent Events ending [DONE]
  GET  /api/ps        loaded models with size, size_vram and expires_at (zero time during the
       first request after a load, refreshed only when a request finishes: Ollama's pitfall)
  GET  /api/tags, /api/version
keep_alive: a number is seconds (negative: forever, 0: unload when idle); a string is a Go
duration ("5m", "1h30m", "-1m", "0"); a string without a unit is a 400 as in Ollama. The
keep-alive timer starts when the model's last request ends. Unknown models are a 404
{"error": "model 'x' not found"}.

For the tests only: GET /emulator/requests lists every request body received (to check what siesta
forwarded), and GET /emulator/events lists loads and unloads with their cause.
"""
import argparse
import datetime
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ZERO_TIME = "0001-01-01T00:00:00Z"
FOREVER = float("inf")


def parse_duration(text):
    if text in ("0", "-0"):
        return 0.0
    m = re.fullmatch(r"(-?)((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)", text)
    if not m:
        raise ValueError(f'time: missing unit in duration "{text}"')
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    total = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", m.group(2)))
    return -total if m.group(1) else total


def parse_keep_alive(value):
    """Seconds; FOREVER for negative values."""
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a number or a duration string")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_duration(value)
    else:
        raise ValueError("keep_alive must be a number or a duration string")
    return FOREVER if seconds < 0 else seconds


def iso(ts):
    if ts is None:
        return ZERO_TIME
    if ts == FOREVER:
        ts = time.time() + 292 * 365 * 86400
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class Emulator:
    def __init__(self, models, load_ms, default_keep_alive, size_bytes, events_file=None, fail_unload=False):
        self.events_file = events_file
        self.fail_unload = fail_unload
        self.installed = set(models)
        self.load_s = load_ms / 1000.0
        self.default_keep_alive = default_keep_alive
        self.size = size_bytes
        self.lock = threading.Condition()
        self.loaded = {}  # name -> {"in_flight", "keep_alive", "expires_at", "loading"}
        self.requests = []
        self.events = []
        threading.Thread(target=self.expiry_loop, daemon=True).start()

    def event(self, kind, model, cause):
        e = {"event": kind, "model": model, "cause": cause, "at": time.time()}
        self.events.append(e)
        if self.events_file:
            with open(self.events_file, "a") as f:
                f.write(json.dumps(e) + "\n")

    def expiry_loop(self):
        while True:
            time.sleep(0.02)
            with self.lock:
                now = time.time()
                for name, m in list(self.loaded.items()):
                    if m["in_flight"] == 0 and not m["loading"] and m["expires_at"] is not None \
                            and now >= m["expires_at"]:
                        del self.loaded[name]
                        self.event("unload", name, "expired")

    def begin(self, model, keep_alive):
        """Marks a request on `model` as running, loading it if needed. Returns load seconds."""
        with self.lock:
            m = self.loaded.get(model)
            if m is not None:
                m["in_flight"] += 1
                if keep_alive is not None:
                    m["keep_alive"] = keep_alive
                return 0.0
            m = {"in_flight": 1, "keep_alive": keep_alive if keep_alive is not None else self.default_keep_alive,
                 "expires_at": None, "loading": True}
            self.loaded[model] = m
        time.sleep(self.load_s)
        with self.lock:
            m["loading"] = False
            self.event("load", model, "request")
        return self.load_s

    def end(self, model):
        with self.lock:
            m = self.loaded.get(model)
            if m is None:
                return
            m["in_flight"] -= 1
            if m["in_flight"] == 0:
                if m["keep_alive"] == 0:
                    del self.loaded[model]
                    self.event("unload", model, "keep_alive 0")
                else:
                    m["expires_at"] = FOREVER if m["keep_alive"] == FOREVER else time.time() + m["keep_alive"]

    def unload(self, model):
        with self.lock:
            m = self.loaded.get(model)
            if m is None:
                return
            if m["in_flight"] == 0:
                del self.loaded[model]
                self.event("unload", model, "keep_alive 0")
            else:
                m["keep_alive"] = 0  # after the running request ends

    def ps(self):
        with self.lock:
            out = []
            for name, m in self.loaded.items():
                if m["loading"]:
                    continue
                out.append({"name": name, "model": name, "size": self.size, "digest": "0" * 64,
                            "details": {"parent_model": "", "format": "gguf", "family": "llama",
                                        "families": ["llama"], "parameter_size": "3.2B",
                                        "quantization_level": "Q4_K_M"},
                            "expires_at": iso(m["expires_at"]), "size_vram": self.size,
                            "context_length": 4096})
            out.sort(key=lambda x: x["expires_at"], reverse=True)
            return out


def make_handler(emu, tokens, token_interval):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send_json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def start_stream(self, content_type):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def chunk(self, data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def end_stream(self):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

        def do_GET(self):
            if self.path == "/api/version":
                self.send_json(200, {"version": "0.5.7-emulator"})
            elif self.path == "/api/ps":
                self.send_json(200, {"models": emu.ps()})
            elif self.path == "/api/tags":
                self.send_json(200, {"models": [{"name": n, "model": n, "size": emu.size} for n in sorted(emu.installed)]})
            elif self.path == "/emulator/requests":
                with emu.lock:
                    self.send_json(200, emu.requests)
            elif self.path == "/emulator/events":
                with emu.lock:
                    self.send_json(200, emu.events)
            else:
                self.send_json(404, {"error": "404 page not found"})

        def do_POST(self):
            raw = self.read_body()
            try:
                req = json.loads(raw or b"{}")
            except ValueError as e:
                return self.send_json(400, {"error": f"invalid JSON: {e}"})
            with emu.lock:
                emu.requests.append({"path": self.path, "body": req})
            path = self.path.split("?")[0]
            openai = path.startswith("/v1/")
            if path not in ("/api/generate", "/api/chat", "/api/embed", "/api/embeddings",
                            "/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
                return self.send_json(404, {"error": "404 page not found"})
            model = req.get("model")
            if not model:
                return self.send_json(400, {"error": "model is required"})
            if model not in emu.installed:
                return self.send_json(404, {"error": f"model '{model}' not found"})
            keep_alive = None
            # null is no keep_alive at all: Go's decoder leaves the field unset.
            if not openai and req.get("keep_alive") is not None:
                try:
                    keep_alive = parse_keep_alive(req["keep_alive"])
                except ValueError as e:
                    return self.send_json(400, {"error": str(e)})
            has_work = any(k in req for k in ("prompt", "messages", "input")) and \
                req.get("prompt", None) != "" and req.get("messages", None) != []
            # Unload: no prompt and keep_alive 0.
            if not openai and not has_work and keep_alive == 0:
                if emu.fail_unload:
                    return self.send_json(500, {"error": "unload failed (emulated)"})
                emu.unload(model)
                return self.send_json(200, {"model": model, "created_at": iso(time.time()), "response": "",
                                            "done": True, "done_reason": "unload"})
            load_s = emu.begin(model, keep_alive)
            try:
                if not has_work:
                    return self.send_json(200, {"model": model, "created_at": iso(time.time()), "response": "",
                                                "done": True, "done_reason": "load",
                                                "load_duration": int(load_s * 1e9)})
                stream = req.get("stream", not openai)
                if path in ("/api/embed", "/api/embeddings", "/v1/embeddings") or not stream:
                    return self.send_json(200, {"model": model, "response": "ok " * tokens, "done": True,
                                                "done_reason": "stop", "load_duration": int(load_s * 1e9)})
                if openai:
                    self.start_stream("text/event-stream")
                    for i in range(tokens):
                        self.chunk(b"data: " + json.dumps({"choices": [{"delta": {"content": f"t{i}"}}]}).encode() + b"\n\n")
                        time.sleep(token_interval)
                    self.chunk(b"data: [DONE]\n\n")
                else:
                    self.start_stream("application/x-ndjson")
                    for i in range(tokens):
                        self.chunk(json.dumps({"model": model, "response": f"t{i}", "done": False}).encode() + b"\n")
                        time.sleep(token_interval)
                    self.chunk(json.dumps({"model": model, "response": "", "done": True, "done_reason": "stop",
                                           "load_duration": int(load_s * 1e9), "eval_count": tokens}).encode() + b"\n")
                self.end_stream()
            finally:
                emu.end(model)

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--models", default="llama3.2:3b,qwen2.5:7b", help="installed models, comma-separated")
    ap.add_argument("--load-ms", type=int, default=200, help="time to load a model")
    ap.add_argument("--default-keep-alive", default="5m", help="OLLAMA_KEEP_ALIVE")
    ap.add_argument("--size-bytes", type=int, default=2_000_000_000)
    ap.add_argument("--tokens", type=int, default=5)
    ap.add_argument("--token-interval-ms", type=int, default=20)
    ap.add_argument("--events-file", help="also append each load and unload here, one JSON a line")
    ap.add_argument("--fail-unload", action="store_true", help="answer unloads with 500")
    args = ap.parse_args()
    emu = Emulator(args.models.split(","), args.load_ms, parse_keep_alive(args.default_keep_alive),
                   args.size_bytes, args.events_file, args.fail_unload)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(emu, args.tokens, args.token_interval_ms / 1000))
    server.daemon_threads = True
    print(f"ollama emulator listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

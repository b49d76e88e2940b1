#!/usr/bin/env python3
"""An Ollama emulator for siesta's tests: Ollama itself cannot run here (no GPU, no models).

It follows the published API (../shared/reference/ollama-api.md) in everything siesta relies on:
  POST /api/generate, /api/chat   load, answer (NDJSON streams, or one object with
       "stream": false, after the same generation time), honour "keep_alive"; a body with only
       the model loads (done_reason "load", no timings); "keep_alive": 0 with no prompt unloads
       (done_reason "unload"). Final answers carry Ollama's nanosecond timings (total_duration,
       load_duration, eval_count, ...)
  POST /api/embed (one object, never streamed, with timings), /api/embeddings ({"embedding"})
  POST /v1/chat/completions, /v1/completions, /v1/embeddings   OpenAI-compatible bodies;
       keep_alive is NOT read (the server default applies), streams are Server-Sent Events ending
       [DONE]; errors in OpenAI's shape {"error": {"message", "type", "param", "code"}}
  GET  /api/ps        loaded models with size, size_vram and expires_at (zero time during the
       first request after a load, refreshed only when a request finishes: Ollama's pitfall)
  GET  /api/tags      the installed models (--models), /api/version
keep_alive: a number is seconds (negative: forever, 0: unload when idle); a string is a Go
duration ("5m", "1h30m", "-1m", "+.5h", "0"); null is no keep_alive. Anything else is a 400 with
Go's message, as in Ollama: {"error": "time: missing unit in duration \"300\""},
{"error": "Unsupported type: 'bool'"}. The keep-alive timer starts when the model's last request
ends. A model not in --models is a 404 {"error": "model 'x' not found"}.

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
    """Go's time.ParseDuration, with its error messages."""
    sign = re.match(r"[-+]?", text).group(0)
    rest = text[len(sign):]
    if rest == "0":
        return 0.0
    number = r"(?:\d+\.?\d*|\.\d+)"
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.fullmatch(rf"(?:{number}[^\d.]+)+", rest) and re.findall(rf"({number})([^\d.]+)", rest)
    if not parts:
        if re.fullmatch(rf"(?:{number}[^\d.]+)*{number}", rest):
            raise ValueError(f'time: missing unit in duration "{text}"')
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    for n, u in parts:
        if u not in units:
            raise ValueError(f'time: unknown unit "{u}" in duration "{text}"')
        total += float(n) * units[u]
    return -total if sign == "-" else total


def parse_keep_alive(value):
    """Seconds; FOREVER for negative values."""
    # Ollama's api.Duration: a JSON number is seconds, a string a Go duration; anything else
    # is "Unsupported type" with the Go type json.Unmarshal decoded it to.
    go_types = {bool: "bool", list: "[]interface {}", dict: "map[string]interface {}"}
    if type(value) in go_types:
        raise ValueError(f"Unsupported type: '{go_types[type(value)]}'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_duration(value)
    else:
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
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
        self.installed = set(m for m in models if m)
        self.started = time.time()
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
        """Marks a request on `model` as running, loading it if needed. Returns load seconds:
        like Ollama's load_duration (server/routes.go: checkpointLoaded - checkpointStart around
        scheduleRunner), the time this request waited for a runner: the load it made, or, when
        another request is loading the model, the time it waited for that load (0 when loaded)."""
        t0 = time.time()
        with self.lock:
            m = self.loaded.get(model)
            if m is not None:
                m["in_flight"] += 1
                if keep_alive is not None:
                    m["keep_alive"] = keep_alive
                if not m["loading"]:
                    return 0.0
                while m["loading"]:
                    self.lock.wait(0.01)
                return time.time() - t0
            m = {"in_flight": 1, "keep_alive": keep_alive if keep_alive is not None else self.default_keep_alive,
                 "expires_at": None, "loading": True}
            self.loaded[model] = m
        time.sleep(self.load_s)
        with self.lock:
            m["loading"] = False
            self.lock.notify_all()
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

    @staticmethod
    def details():
        return {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}

    def ps(self):
        with self.lock:
            out = []
            for name, m in self.loaded.items():
                if m["loading"]:
                    continue
                out.append({"name": name, "model": name, "size": self.size, "digest": "0" * 64,
                            "details": self.details(),
                            "expires_at": iso(m["expires_at"]), "size_vram": self.size,
                            "context_length": 4096})
            out.sort(key=lambda x: x["expires_at"], reverse=True)
            return out


class Answer:
    """The bodies Ollama answers with, per route (docs/api.md and docs/openai.md upstream)."""

    def __init__(self, path, model, tokens, load_s, t0):
        self.path, self.model, self.tokens = path, model, tokens
        self.load_s, self.t0 = load_s, t0
        self.created = int(time.time())

    def timings(self):
        total = time.time() - self.t0
        return {"total_duration": int(total * 1e9), "load_duration": int(self.load_s * 1e9),
                "prompt_eval_count": 1, "prompt_eval_duration": 1_000_000,
                "eval_count": self.tokens, "eval_duration": int(max(total - self.load_s, 0) * 1e9)}

    def usage(self):
        return {"prompt_tokens": 1, "completion_tokens": self.tokens, "total_tokens": 1 + self.tokens}

    def text(self):
        return "".join(f"t{i}" for i in range(self.tokens))

    def embedding(self):
        vector = [0.1, 0.2, 0.3]
        if self.path == "/api/embeddings":
            return {"embedding": vector}
        if self.path == "/v1/embeddings":
            return {"object": "list", "data": [{"object": "embedding", "embedding": vector, "index": 0}],
                    "model": self.model, "usage": {"prompt_tokens": 1, "total_tokens": 1}}
        t = self.timings()
        return {"model": self.model, "embeddings": [vector], "total_duration": t["total_duration"],
                "load_duration": t["load_duration"], "prompt_eval_count": 1}

    def openai(self, kind, choice):
        return {"id": "chatcmpl-1" if "chat" in kind else "cmpl-1", "object": kind, "created": self.created,
                "model": self.model, "system_fingerprint": "fp_ollama", "choices": [choice]}

    def whole(self):
        if self.path == "/v1/chat/completions":
            body = self.openai("chat.completion", {"index": 0, "message": {"role": "assistant", "content": self.text()},
                                                   "finish_reason": "stop"})
            body["usage"] = self.usage()
            return body
        if self.path == "/v1/completions":
            body = self.openai("text_completion", {"text": self.text(), "index": 0, "finish_reason": "stop"})
            body["usage"] = self.usage()
            return body
        body = {"model": self.model, "created_at": iso(time.time())}
        if self.path == "/api/chat":
            body["message"] = {"role": "assistant", "content": self.text()}
        else:
            body["response"] = self.text()
        body.update({"done": True, "done_reason": "stop"})
        body.update(self.timings())
        return body

    def sse(self, obj):
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    def piece(self, i):
        if self.path == "/v1/chat/completions":
            return self.sse(self.openai("chat.completion.chunk", {"index": 0, "delta": {"role": "assistant", "content": f"t{i}"},
                                                                  "finish_reason": None}))
        if self.path == "/v1/completions":
            return self.sse(self.openai("text_completion", {"text": f"t{i}", "index": 0, "finish_reason": None}))
        body = {"model": self.model, "created_at": iso(time.time())}
        if self.path == "/api/chat":
            body["message"] = {"role": "assistant", "content": f"t{i}"}
        else:
            body["response"] = f"t{i}"
        body["done"] = False
        return json.dumps(body).encode() + b"\n"

    def last(self):
        if self.path == "/v1/chat/completions":
            return self.sse(self.openai("chat.completion.chunk", {"index": 0, "delta": {"role": "assistant", "content": ""},
                                                                  "finish_reason": "stop"}))
        if self.path == "/v1/completions":
            return self.sse(self.openai("text_completion", {"text": "", "index": 0, "finish_reason": "stop"}))
        body = {"model": self.model, "created_at": iso(time.time())}
        if self.path == "/api/chat":
            body["message"] = {"role": "assistant", "content": ""}
        else:
            body["response"] = ""
        body.update({"done": True, "done_reason": "stop"})
        body.update(self.timings())
        return json.dumps(body).encode() + b"\n"


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
            # Header and body in one write, as Go's net/http sends a small answer.
            self._headers_buffer.append(b"\r\n")
            self.wfile.write(b"".join(self._headers_buffer) + body)
            self._headers_buffer = []

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
                self.send_json(200, {"models": [{"name": n, "model": n, "modified_at": iso(emu.started), "size": emu.size,
                                                 "digest": "0" * 64, "details": emu.details()}
                                                for n in sorted(emu.installed)]})
            elif self.path == "/emulator/requests":
                with emu.lock:
                    self.send_json(200, emu.requests)
            elif self.path == "/emulator/events":
                with emu.lock:
                    self.send_json(200, emu.events)
            else:
                self.send_json(404, {"error": "404 page not found"})

        def send_error(self, status, message, openai):
            # Ollama's own errors are {"error": "..."}; its /v1 routes wrap them the OpenAI way.
            if openai:
                kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
                return self.send_json(status, {"error": {"message": message, "type": kind,
                                                         "param": None, "code": None}})
            return self.send_json(status, {"error": message})

        def do_POST(self):
            raw = self.read_body()
            path = self.path.split("?")[0]
            openai = path.startswith("/v1/")
            try:
                req = json.loads(raw or b"{}")
            except ValueError as e:
                return self.send_error(400, f"invalid JSON: {e}", openai)
            with emu.lock:
                emu.requests.append({"path": self.path, "body": req})
            if path not in ("/api/generate", "/api/chat", "/api/embed", "/api/embeddings",
                            "/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
                return self.send_json(404, {"error": "404 page not found"})
            # The body is decoded before anything else: a bad keep_alive is a 400 even for an
            # unknown model.
            keep_alive = None
            # null is no keep_alive at all: Go's decoder leaves the field unset.
            if not openai and req.get("keep_alive") is not None:
                try:
                    keep_alive = parse_keep_alive(req["keep_alive"])
                except ValueError as e:
                    return self.send_error(400, str(e), openai)
            model = req.get("model")
            if not model:
                return self.send_error(400, "model is required", openai)
            if path == "/v1/embeddings" and req.get("input") is None:
                return self.send_error(400, "invalid input", openai)
            if model not in emu.installed:
                return self.send_error(404, f"model '{model}' not found", openai)
            has_work = any(k in req for k in ("prompt", "messages", "input")) and \
                req.get("prompt", None) != "" and req.get("messages", None) != []
            # Unload: no prompt and keep_alive 0.
            if not openai and not has_work and keep_alive == 0:
                if emu.fail_unload:
                    return self.send_json(500, {"error": "unload failed (emulated)"})
                emu.unload(model)
                return self.send_json(200, {"model": model, "created_at": iso(time.time()), "response": "",
                                            "done": True, "done_reason": "unload"})
            t0 = time.time()
            load_s = emu.begin(model, keep_alive)
            try:
                if not has_work:  # a load: Ollama's answer carries no timings
                    if path == "/api/chat":
                        return self.send_json(200, {"model": model, "created_at": iso(time.time()),
                                                    "message": {"role": "assistant", "content": ""},
                                                    "done": True, "done_reason": "load"})
                    return self.send_json(200, {"model": model, "created_at": iso(time.time()), "response": "",
                                                "done": True, "done_reason": "load"})
                answer = Answer(path, model, tokens, load_s, t0)
                if path in ("/api/embed", "/api/embeddings", "/v1/embeddings"):
                    return self.send_json(200, answer.embedding())  # never streamed
                if not req.get("stream", not openai):
                    time.sleep(tokens * token_interval)  # the tokens are generated all the same
                    return self.send_json(200, answer.whole())
                self.start_stream("text/event-stream" if openai else "application/x-ndjson")
                for i in range(tokens):
                    self.chunk(answer.piece(i))
                    time.sleep(token_interval)
                self.chunk(answer.last())
                if openai:
                    self.chunk(b"data: [DONE]\n\n")
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

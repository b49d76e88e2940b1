#!/usr/bin/env python3
"""A vLLM API emulator for siesta's tests: vLLM itself cannot run here (no GPU, no model).

It follows vLLM's OpenAI-compatible server (`vllm serve`) in everything siesta relies on, read
from the vLLM source (github.com/vllm-project/vllm):

  vllm/entrypoints/serve/dev/api_router.py @ 1b1a3461172c9d6ad8b4f718c70827aeed478bf9
      POST /sleep        level from the query (?level=N, default "1"); answers 200 with an empty
                         body once the engine's sleep returned
      POST /wake_up      optional repeated ?tags=...; 200, empty body
      GET  /is_sleeping  {"is_sleeping": true|false}
      These routes are attached only when VLLM_SERVER_DEV_MODE is set (attach_router returns
      early otherwise): without it they do not exist and FastAPI answers
      404 {"detail": "Not Found"} (here: --no-dev-mode).
  vllm/v1/engine/core.py @ 00080ee13c7a451fce071ccb8d0e94d395acf5a7
      EngineCore.sleep() first pauses the scheduler (pause_scheduler, mode "abort" by default:
      requests in flight are aborted), and "all pause modes queue new adds": a request that
      arrives while the engine sleeps is accepted and waits, unanswered, until a wake_up
      resumes scheduling; wake_up resumes the scheduler only once every tag is awake, and
      is_sleeping() is true while the scheduler is paused or the executor sleeps.
  vllm/v1/engine/async_llm.py @ 00080ee13c7a451fce071ccb8d0e94d395acf5a7
      AsyncLLM.sleep(level, mode="abort") / wake_up(tags) / is_sleeping() forward to the core.
  vllm/entrypoints/openai/engine/protocol.py @ 040a2cc2a6295ea9c313d86526ff90a103eacb3e
      ModelCard {id, object "model", created (int(time.time()) at each answer), owned_by
      "vllm", root, parent, max_model_len, permission: [ModelPermission]}; ModelPermission
      {id "modelperm-<uuid4 hex>", object "model_permission", created, allow_create_engine
      false, allow_sampling true, allow_logprobs true, allow_search_indices false, allow_view
      true, allow_fine_tuning false, organization "*", group null, is_blocking false}
  vllm/entrypoints/openai/models/serving.py @ 00153c8b7948077ebdfc5bfa14e403da41aaea6d
      show_available_models() (GET /v1/models): ModelCard(id=name, max_model_len=the engine's,
      root=the model's path, permission=[ModelPermission()]) per served model
  vllm/frontend/entrypoints/serve/exception_handling/error_response.py
      @ 055e47c28003156421365af985d676fc921cb075
      errors are {"error": {"message", "type", "param", "code": <HTTP status>}}, e.g. type
      "NotFoundError" with code 404 (an unknown model: "The model `x` does not exist.").

So here: a request to /v1/chat/completions, /v1/completions or /v1/embeddings while asleep
waits (no answer) until /wake_up, then is served; one in flight when /sleep arrives is aborted
(the connection is closed without an answer). GET /v1/models lists the served model as vLLM's
ModelCard ({"object": "list", "data": [{"id", "object": "model", "created", "owned_by": "vllm",
"root", "parent", "max_model_len", "permission": [...]}]}), also while asleep (the API server
answers it without the engine). GET /health is 200 with an empty
body.

Test knobs: --wake-ms (time /wake_up takes), --wake-lag-ms (is_sleeping stays true this long
after /wake_up answered: the V0 frontend's FIXME in api_router.py), --fail-wake-up (/wake_up
answers 500 and the engine stays asleep), --no-dev-mode. GET /emulator/events lists what
happened (sleep, wake_up, requests answered and whether the engine was asleep when each arrived).
"""
import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Engine:
    def __init__(self, args):
        self.args = args
        self.cv = threading.Condition()
        self.sleep_level = 0        # 0: awake
        self.awake_at = 0.0         # is_sleeping turns false at this monotonic time (wake lag)
        self.generation = 0         # bumped by each /sleep: requests in flight then are aborted
        self.events = []

    def event(self, **kw):
        with self.cv:
            self.events.append({"t": time.time(), **kw})

    def sleeping(self):
        return self.sleep_level > 0 or time.monotonic() < self.awake_at

    def sleep(self, level):
        with self.cv:
            self.sleep_level = level
            self.generation += 1
            self.cv.notify_all()
        self.event(kind="sleep", level=level)

    def wake_up(self):
        time.sleep(self.args.wake_ms / 1000)
        if self.args.fail_wake_up:
            self.event(kind="wake_up_failed")
            return False
        with self.cv:
            self.sleep_level = 0
            self.awake_at = time.monotonic() + self.args.wake_lag_ms / 1000
            self.cv.notify_all()
        self.event(kind="wake_up")
        return True

    def wait_awake(self):
        """As the paused scheduler: a new request waits until the engine is awake again."""
        with self.cv:
            while self.sleeping():
                self.cv.wait(timeout=0.005)
            return self.generation


def make_handler(engine, args):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send(self, status, body=b"", ctype="application/json"):
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            self.send_response(status)
            if body or status != 200:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, message, etype, param=None):
            self.send(status, {"error": {"message": message, "type": etype, "param": param,
                                         "code": status}})

        def not_found(self):  # FastAPI's answer for a route that is not there
            self.send(404, {"detail": "Not Found"})

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == "/health":
                self.send(200)
            elif url.path == "/v1/models":
                # show_available_models(): one ModelCard per served model, with the engine's
                # max_model_len, root the model's path and one default ModelPermission; created
                # is the time of the answer (its default_factory).
                now = int(time.time())
                self.send(200, {"object": "list", "data": [{
                    "id": args.model, "object": "model", "created": now,
                    "owned_by": "vllm", "root": args.model, "parent": None,
                    "max_model_len": args.max_model_len,
                    "permission": [{
                        "id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission",
                        "created": now, "allow_create_engine": False, "allow_sampling": True,
                        "allow_logprobs": True, "allow_search_indices": False,
                        "allow_view": True, "allow_fine_tuning": False, "organization": "*",
                        "group": None, "is_blocking": False}]}]})
            elif url.path == "/is_sleeping" and args.dev_mode:
                with engine.cv:
                    asleep = engine.sleeping()
                self.send(200, {"is_sleeping": asleep})
            elif url.path == "/emulator/events":
                with engine.cv:
                    self.send(200, list(engine.events))
            else:
                self.not_found()

        def do_POST(self):
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            raw = self.body()
            if url.path == "/sleep" and args.dev_mode:
                level = int(query.get("level", ["1"])[0])
                engine.sleep(level)
                self.send(200)
            elif url.path == "/wake_up" and args.dev_mode:
                if engine.wake_up():
                    self.send(200)
                else:
                    self.error(500, "wake_up failed: CUDA error: out of memory",
                               "InternalServerError")
            elif url.path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
                self.infer(url.path, raw)
            else:
                self.not_found()

        def infer(self, path, raw):
            try:
                req = json.loads(raw or b"{}")
            except ValueError:
                return self.error(400, "Expecting value: line 1 column 1 (char 0)", "BadRequestError")
            model = req.get("model")
            if model != args.model:
                return self.error(404, f"The model `{model}` does not exist.", "NotFoundError",
                                  "model")
            arrived_asleep = engine.sleeping()
            generation = engine.wait_awake()
            time.sleep(args.token_interval_ms / 1000)
            if engine.generation != generation:  # put to sleep meanwhile: aborted
                engine.event(kind="aborted", path=path)
                self.close_connection = True
                return
            engine.event(kind="request", path=path, model=model, arrived_asleep=arrived_asleep)
            rid = uuid.uuid4().hex[:12]
            now = int(time.time())
            if path == "/v1/embeddings":
                return self.send(200, {"object": "list", "model": model,
                                       "data": [{"object": "embedding", "index": 0,
                                                 "embedding": [0.1, 0.2, 0.3]}],
                                       "usage": {"prompt_tokens": 1, "total_tokens": 1}})
            chat = path == "/v1/chat/completions"
            text = "Hello from vLLM"
            if req.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunk(data):
                    line = f"data: {data}\n\n".encode()
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                for i, piece in enumerate(text.split(" ")):
                    piece = piece if i == 0 else " " + piece
                    delta = {"content": piece} if chat else None
                    choice = ({"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
                              if chat else {"index": 0, "text": piece, "logprobs": None,
                                            "finish_reason": None})
                    chunk(json.dumps({"id": f"chatcmpl-{rid}" if chat else f"cmpl-{rid}",
                                      "object": "chat.completion.chunk" if chat else "text_completion",
                                      "created": now, "model": model, "choices": [choice]}))
                last = ({"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"} if chat
                        else {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"})
                chunk(json.dumps({"id": f"chatcmpl-{rid}" if chat else f"cmpl-{rid}",
                                  "object": "chat.completion.chunk" if chat else "text_completion",
                                  "created": now, "model": model, "choices": [last]}))
                chunk("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                return
            usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
            if chat:
                return self.send(200, {"id": f"chatcmpl-{rid}", "object": "chat.completion",
                                       "created": now, "model": model,
                                       "choices": [{"index": 0, "message": {"role": "assistant",
                                                                            "content": text},
                                                    "logprobs": None, "finish_reason": "stop"}],
                                       "usage": usage})
            return self.send(200, {"id": f"cmpl-{rid}", "object": "text_completion",
                                   "created": now, "model": model,
                                   "choices": [{"index": 0, "text": text, "logprobs": None,
                                                "finish_reason": "stop"}],
                                   "usage": usage})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="Qwen/Qwen3-0.6B", help="the served model name")
    ap.add_argument("--no-dev-mode", dest="dev_mode", action="store_false",
                    help="as without VLLM_SERVER_DEV_MODE=1: no /sleep, /wake_up, /is_sleeping")
    ap.add_argument("--wake-ms", type=int, default=50, help="time /wake_up takes")
    ap.add_argument("--wake-lag-ms", type=int, default=0,
                    help="is_sleeping stays true this long after /wake_up answered")
    ap.add_argument("--fail-wake-up", action="store_true", help="/wake_up answers 500")
    ap.add_argument("--token-interval-ms", type=int, default=10)
    ap.add_argument("--max-model-len", type=int, default=4096, help="the engine's context length")
    args = ap.parse_args()
    engine = Engine(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(engine, args))
    server.daemon_threads = True
    print(f"vllm emulator listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The official `openai` npm client (pinned in package-lock.json) through siesta to a vLLM server
(model_api "vllm", with a vllm_sleep tier) and to a plain OpenAI-compatible server (model_api
"openai"), both played by tests/support/vllm_emulator.py (the second without dev mode, as
llama-server or LM Studio: no sleep routes).

  run_openai_servers.py SIESTA_BINARY --node-modules DIR [--keep]

Cases:
  vllm/cold            the first chat completion starts vLLM; streamed and whole answers arrive
  vllm/after-sleep     once the engine sleeps (vllm_sleep, level 1), a streamed completion through
                       the library wakes it: the answer is whole, the engine was awake for it,
                       and siesta counted one wake from vllm_sleep
  vllm/models-asleep   once the engine sleeps again, the library lists the models: siesta
                       answers with the server's own last ModelCard (every field vLLM sends,
                       created not 0, max_model_len), and the engine is not woken
  openai/stream        a streamed chat completion through the "openai" service; its model is
                       tracked from the request (loaded, no keep-alive unload)
Prints one line per case and "N passed, N failed"; exits 1 on any failure.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Cases, Processes, Siesta, free_port, http_get, run_all, run_json  # noqa: E402

EMULATOR = os.path.join(HERE, "..", "support", "vllm_emulator.py")
VLLM_MODEL, LLAMA_MODEL = "Qwen/Qwen3-0.6B", "llama-3.2-1b-instruct"
TEXT = "Hello from vLLM"

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("siesta")
ap.add_argument("--node-modules", required=True, help="node_modules with the pinned openai")
ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
args = ap.parse_args()

procs = Processes("siesta-openai-")
cases = Cases()
node_env = dict(os.environ, NODE_PATH=os.path.abspath(args.node_modules))


def fail_if(cond, msg):
    if cond:
        raise AssertionError(msg)


def npm_openai(port, model, stream):
    spec = {"lib": "openai", "api": "chat.completions", "stream": stream, "port": port,
            "model": model, "repeat": 1}
    r = run_json(["node", os.path.join(HERE, "llm_client.js"), json.dumps(spec)], 40, env=node_env)
    fail_if(r.get("fatal"), f"driver crashed: {r.get('fatal')}")
    call = r["calls"][0]
    fail_if(call.get("error"), f"openai npm: {call.get('error')}")
    fail_if(call["text"] != TEXT, f"text {call['text']!r}, want {TEXT!r}")
    fail_if(not call.get("done"), "the answer did not finish")
    return call


def npm_openai_models(port):
    spec = {"lib": "openai", "api": "models.list", "port": port, "repeat": 1}
    r = run_json(["node", os.path.join(HERE, "llm_client.js"), json.dumps(spec)], 40, env=node_env)
    fail_if(r.get("fatal"), f"driver crashed: {r.get('fatal')}")
    call = r["calls"][0]
    fail_if(call.get("error"), f"openai npm: {call.get('error')}")
    return call["models"]


# vLLM's ModelCard (vllm/entrypoints/openai/engine/protocol.py): every field it sends.
MODEL_CARD = {"id", "object", "created", "owned_by", "root", "parent", "max_model_len",
              "permission"}


def emulator_events(port, kind):
    return [e for e in json.loads(http_get(port, "/emulator/events")) if e["kind"] == kind]


def metric(siesta, sample):
    for line in http_get(siesta.admin, "/metrics").splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def main():
    vllm_up, vllm_port = free_port(), free_port()
    llama_up, llama_port = free_port(), free_port()
    services = {
        "vllm": {"command": [sys.executable, EMULATOR, "--port", str(vllm_up), "--model", VLLM_MODEL],
                 "upstream": f"127.0.0.1:{vllm_up}", "listen": f"127.0.0.1:{vllm_port}",
                 "model_api": "vllm",
                 "sleep_tiers": [{"after_minutes": 0.02, "action": "vllm_sleep", "level": 1},
                                 {"after_minutes": 30, "action": "stop"}]},
        "llama": {"command": [sys.executable, EMULATOR, "--port", str(llama_up), "--model", LLAMA_MODEL,
                              "--no-dev-mode"],
                  "upstream": f"127.0.0.1:{llama_up}", "listen": f"127.0.0.1:{llama_port}",
                  "model_api": "openai", "idle_timeout_minutes": 30},
    }
    siesta = Siesta(procs, args.siesta, services)

    def vllm_cold():
        npm_openai(vllm_port, VLLM_MODEL, stream=False)
        npm_openai(vllm_port, VLLM_MODEL, stream=True)

    def vllm_after_sleep():
        siesta.wait_service("vllm", lambda s: s.get("tier") == "vllm_sleep", 15,
                            "the vllm_sleep tier")
        asleep = json.loads(http_get(vllm_up, "/is_sleeping"))
        fail_if(asleep != {"is_sleeping": True}, f"/is_sleeping {asleep}")
        # The cold case's second call may already have woken it once (the tier is 1.2 s).
        wake_ups = len(emulator_events(vllm_up, "wake_up"))
        sample = 'siesta_service_tier_wakes_total{service="vllm",tier="vllm_sleep"}'
        wakes = metric(siesta, sample) or 0
        t0 = time.time()
        npm_openai(vllm_port, VLLM_MODEL, stream=True)
        took = time.time() - t0
        fail_if(len(emulator_events(vllm_up, "wake_up")) != wake_ups + 1, "want one more /wake_up")
        served = emulator_events(vllm_up, "request")
        fail_if(any(e["arrived_asleep"] for e in served), f"a request reached a sleeping engine: {served}")
        fail_if(metric(siesta, sample) != wakes + 1, f"{sample}: {metric(siesta, sample)}, was {wakes}")
        return f"whole request through the library {took:.3f} s"

    def vllm_models_asleep():
        siesta.wait_service("vllm", lambda s: s.get("tier") == "vllm_sleep", 15,
                            "the vllm_sleep tier")
        wake_ups = len(emulator_events(vllm_up, "wake_up"))
        models = npm_openai_models(vllm_port)
        fail_if(len(models) != 1, f"models {models}")
        m = models[0]
        fail_if(set(m) != MODEL_CARD, f"fields {sorted(m)}, want {sorted(MODEL_CARD)}")
        fail_if(m["id"] != VLLM_MODEL or m["object"] != "model" or m["owned_by"] != "vllm",
                f"model {m}")
        fail_if(not m["created"] or m["created"] > time.time() + 1, f"created {m['created']}")
        fail_if(m["max_model_len"] != 4096, f"max_model_len {m['max_model_len']}")
        fail_if(len(m["permission"]) != 1 or m["permission"][0]["object"] != "model_permission",
                f"permission {m['permission']}")
        fail_if(len(emulator_events(vllm_up, "wake_up")) != wake_ups, "listing woke the engine")
        state = siesta.get("/admin/idle-status")["services"]["vllm"]
        fail_if(state.get("tier") != "vllm_sleep", f"vllm {state}")

    def openai_stream():
        npm_openai(llama_port, LLAMA_MODEL, stream=True)
        m = siesta.get("/admin/idle-status")["models"].get(LLAMA_MODEL)
        fail_if(not m or not m["loaded"] or m["provider"] != "llama",
                f"model {LLAMA_MODEL} in idle-status: {m}")
        fail_if(m["unload_blocker"] != "no_unload_api", f"unload_blocker {m['unload_blocker']}")

    cases.run("vllm/cold", vllm_cold)
    cases.run("vllm/after-sleep", vllm_after_sleep)
    cases.run("vllm/models-asleep", vllm_models_asleep)
    cases.run("openai/stream", openai_stream)


sys.exit(run_all(main, cases, procs, args.keep))

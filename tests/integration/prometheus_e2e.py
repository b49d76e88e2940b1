#!/usr/bin/env python3
"""The observability proof: a real Prometheus scrapes a real siesta running a small workload
(a service that wakes and sleeps, one that stays up, one that never sleeps, a model in use),
then every dashboard panel query and every alert and recording expression is run against it.
Each must answer "success", every panel query must return data, and the dashboards must have
the provisioned structure (fixed uid, schemaVersion 39, datasource variable, unit and
description on every panel)."""
import json, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.parse, urllib.request

siesta_bin, testserver, source = sys.argv[1], sys.argv[2], sys.argv[3]
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(url, data=None):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def wait_for(pred, what, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f"FAIL: timed out waiting for {what}")


# The dashboards' structure.
dashboards = {}
for name in ("siesta-overview.json", "siesta-service.json"):
    d = json.load(open(os.path.join(source, "dashboards", name)))
    dashboards[name] = d
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d.get("uid", "")): fail(f"{name}: bad uid")
    if d.get("schemaVersion") != 39: fail(f"{name}: schemaVersion is not 39")
    if "id" in d or "__inputs" in d: fail(f"{name}: has id or __inputs")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus": fail(f"{name}: no datasource variable")
    # A fleet (docs/fleet.md): an instance variable, and every query selects by it.
    inst = variables.get("instance", {})
    if inst.get("definition") != "label_values(siesta_service_state, instance)" or not inst.get("includeAll"):
        fail(f"{name}: no instance variable")
    for p in d["panels"]:
        where = f'{name}: panel "{p.get("title")}"'
        if not p.get("description"): fail(f"{where}: no description")
        if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"): fail(f"{where}: no unit")
        if p.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}: fail(f"{where}: datasource")
        for t in p["targets"]:
            if not t.get("refId") or not t.get("expr"): fail(f"{where}: target without refId/expr")
            if t.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}: fail(f"{where}: target datasource")
            for metric in re.findall(r'(?<![\w:"])((?:siesta|process)_[a-z0-9_]+|siesta:[a-z0-9_:]+)(\{[^}]*\})?', t["expr"]):
                if 'instance=~"$instance"' not in metric[1]:
                    fail(f"{where}: {metric[0]} not selected by instance")
            for counter in re.findall(r"(siesta_\w+_total|_bucket)", t["expr"]):
                if "rate(" not in t["expr"] and "increase(" not in t["expr"]:
                    fail(f"{where}: counter {counter} outside rate()/increase()")

work = tempfile.mkdtemp(prefix="siesta-prom-")
procs = []
try:
    web_port, cold_port, siesta_port, prom_port = free_port(), free_port(), free_port(), free_port()
    web_listen, cold_listen = free_port(), free_port()
    ollama_port, ollama_listen = free_port(), free_port()
    config = {
        "listen": f"127.0.0.1:{siesta_port}",
        "idle_check_interval_minutes": 0.01,
        # The energy and cost panels: cold has an idle power, sleeps and cold-starts.
        "price_per_kwh": 0.3, "currency": "EUR",
        # The GPU budget's row: web and ollama hold declared sizes, ollama's models size_vram.
        "gpu": {"devices": [{"id": 0, "memory_mib": 24000}]},
        "services": {
            "web": {"command": [testserver, "--port", str(web_port)], "upstream": f"127.0.0.1:{web_port}",
                    "health": "/health", "idle_timeout_minutes": 600,
                    "listen": f"127.0.0.1:{web_listen}", "gpu_memory_mib": 1000},
            "cold": {"command": [testserver, "--port", str(cold_port)], "upstream": f"127.0.0.1:{cold_port}",
                     "health": "/health", "idle_timeout_minutes": 0.02,
                     "listen": f"127.0.0.1:{cold_listen}", "idle_power_watts": 40},
            "redis": {"command": ["sleep", "600"], "idle_sleep_enabled": False, "desired": "on"},
            # The Ollama emulator as a model server: one model stays loaded, one is unloaded.
            "ollama": {"command": ["python3", f"{source}/tests/support/ollama_emulator.py",
                                   "--port", str(ollama_port), "--load-ms", "100",
                                   "--models", "qwen2.5:7b,tiny:1b"],
                       "upstream": f"127.0.0.1:{ollama_port}", "health": "/api/version",
                       "listen": f"127.0.0.1:{ollama_listen}", "idle_timeout_minutes": 600,
                       "gpu_memory_mib": 500},
        },
        "models": {"llama3.2:3b": {"provider": "redis"},
                   "qwen2.5:7b": {"provider": "ollama", "keep_alive_hours": 1},
                   "tiny:1b": {"provider": "ollama", "keep_alive_hours": 0.001,
                               "keep_alive_min_seconds": 0}},
    }
    json.dump(config, open(f"{work}/siesta.json", "w"))
    procs.append(subprocess.Popen([siesta_bin, "--config", f"{work}/siesta.json"],
                                  stdout=open(f"{work}/siesta.log", "w"), stderr=subprocess.STDOUT))
    base = f"http://127.0.0.1:{siesta_port}"
    wait_for(lambda: http(base + "/healthz"), "siesta")

    with open(f"{work}/prometheus.yml", "w") as f:
        f.write(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{source}/alerts/siesta.rules.yml"]
scrape_configs:
  - job_name: siesta
    static_configs: [{{targets: ["127.0.0.1:{siesta_port}"]}}]
""")
    procs.append(subprocess.Popen(
        ["prometheus", f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/data",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=open(f"{work}/prometheus.log", "w"), stderr=subprocess.STDOUT))
    prom = f"http://127.0.0.1:{prom_port}"
    wait_for(lambda: "Prometheus Server is Ready" in http(prom + "/-/ready"), "prometheus", 60)

    # The workload: web stays up and will sleep; redis never sleeps and serves a model in use;
    # cold wakes and falls asleep twice.
    # Requests go through the proxy ports: web is woken by a request, cold by a request and once
    # by the admin API.
    for _ in range(5):
        http(f"http://127.0.0.1:{web_listen}/")
    http(base + "/admin/models/llama3.2:3b/touch", b"")
    # Models through the proxy: loaded (a cold start each), seen in /api/ps with their VRAM;
    # tiny:1b's 3.6 s keep-alive then ends and siesta unloads it.
    for model in ("qwen2.5:7b", "tiny:1b"):
        http(f"http://127.0.0.1:{ollama_listen}/api/generate",
             json.dumps({"model": model, "prompt": "hi", "stream": False}).encode())
    wait_for(lambda: json.loads(http(base + "/admin/models/qwen2.5:7b"))["vram_bytes"], "VRAM from /api/ps")
    wait_for(lambda: not json.loads(http(base + "/admin/models/tiny:1b"))["loaded"], "tiny:1b to unload")
    http(f"http://127.0.0.1:{cold_listen}/")
    wait_for(lambda: json.loads(http(base + "/admin/services/cold"))["actual"] == "stopped", "cold to sleep")
    http(base + "/admin/services/cold/wake", b"")
    wait_for(lambda: json.loads(http(base + "/admin/services/cold"))["actual"] == "stopped", "cold to sleep")
    # Enough scrapes for rate() over the window.
    wait_for(lambda: float(json.loads(http(prom + "/api/v1/query?query=" + urllib.parse.quote(
        'count_over_time(siesta_build_info[5m])')))["data"]["result"][0]["value"][1]) >= 8, "scrapes", 30)

    def query(expr):
        q = urllib.parse.urlencode({"query": expr})
        return json.loads(http(f"{prom}/api/v1/query?{q}"))

    checked = 0
    for name, d in dashboards.items():
        for p in d["panels"]:
            for t in p["targets"]:
                # The overview shows every service; the drill-down is looked at for redis.
                expr = (t["expr"].replace("$__rate_interval", "5m")
                        .replace('=~"$instance"', '=~".+"')
                        .replace('=~"$service"', '=~".+"').replace("$service", "redis"))
                r = query(expr)
                checked += 1
                if r.get("status") != "success":
                    fail(f'{name}: "{p["title"]}": {expr}: {r}')
                elif not r["data"]["result"]:
                    fail(f'{name}: "{p["title"]}": no data for {expr}')
    rules = json.loads(http(prom + "/api/v1/rules"))
    for group in rules["data"]["groups"]:
        for rule in group["rules"]:
            r = query(rule["query"])
            checked += 1
            if r.get("status") != "success":
                fail(f'rule {rule.get("name")}: {rule["query"]}: {r}')
            if rule.get("health") not in ("ok", "unknown"):
                fail(f'rule {rule.get("name")} health {rule.get("health")}: {rule.get("lastError")}')
    # No panel or rule may read a metric siesta does not expose.
    exposed = set(re.findall(r"^([a-z_:]+?)(?:_bucket|_count|_sum)?(?:\{| )", http(base + "/metrics"), re.M))
    exposed |= {"up"}
    texts = [t["expr"] for d in dashboards.values() for p in d["panels"] for t in p["targets"]]
    texts += [r["query"] for g in rules["data"]["groups"] for r in g["rules"]]
    recorded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"] if r["type"] == "recording"}
    for text in texts:
        for metric in re.findall(r'(?<![\w:"])((?:siesta|process)_[a-z0-9_]+|[a-z_]+:[a-z0-9_:]+)', text):
            base_name = re.sub(r"_(bucket|count|sum)$", "", metric)
            if base_name not in exposed and metric not in recorded:
                fail(f"{metric} is read but siesta does not expose it ({text})")
    print(f"checked {checked} queries")
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    if failures:
        print(open(f"{work}/siesta.log").read()[-3000:])
    shutil.rmtree(work, ignore_errors=True)

print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
sys.exit(1 if failures else 0)

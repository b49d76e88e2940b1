#!/usr/bin/env python3
"""The admin page (/ui/) and the waking page in a real browser (issue 22).

  run_ui.py SIESTA_BINARY --node-modules DIR [--chromium PATH] [--screenshots DIR]
            [--only SUBSTRING ...] [--keep]

Headless Chromium (Debian's chromium driven by puppeteer-core, ui_browser.js) on a running siesta
whose services are real processes: `python3 -m http.server` ("files", with `wake_page: true`,
starting 1.5 s late like a slow web app) and two more. Cases:
  page/loads                  / leads to /ui/, served with its CSP; every service is listed; no
                              console error, page error or failed request over two polls
  page/countdown              the "will sleep in" of a running service goes down
  page/sleep-and-keyboard     "Sleep" stops a running service (checked through the API) and its
                              row changes; Tab alone reaches "Wake" with a visible focus ring and
                              Enter wakes it; every control has a label
  page/token                  with an admin token the page asks for it (a wrong one is refused),
                              then works; the token is in sessionStorage only, never in a URL
  waking/browser              a navigation to the sleeping http.server gets the waking page (503,
                              "Waking files…") and then the real page once it is up
  waking/estimate             after a measured cold start the page says "usually N s"
  waking/api-clients-block    curl, Python requests and http.client (and a browser's POST) to the
                              same sleeping service wait for the wake and get the real answer
  waking/fast-failure         a start that fails at once: the page for a navigation, JSON for curl
  waking/status-path          /.siesta/wake-status answers on the service's port without a token,
                              wakes nothing, and reports the state
With --screenshots the browser's screenshots are written there (docs/img/ for docs/ui.md).
Prints one line per case and "N passed, N failed"; exits 1 on any failure.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Cases, Processes, Siesta, die, free_port, run_json, wait_port  # noqa: E402

CLIENT_TIMEOUT = 120
REAL_TEXT = "the real page of files"
TOKEN = "ui-test-token-0123456789abcdef"

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("siesta")
ap.add_argument("--node-modules", required=True, help="node_modules with puppeteer-core")
ap.add_argument("--chromium", default="/usr/bin/chromium")
ap.add_argument("--screenshots", help="write the browser's screenshots here")
ap.add_argument("--only", nargs="*", help="run only the cases whose name contains one of these")
ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
args = ap.parse_args()

procs = Processes("siesta-ui-")
cases = Cases(args.only)
node_env = dict(os.environ, NODE_PATH=os.path.abspath(args.node_modules))


def fail_if(cond, msg):
    if cond:
        raise AssertionError(msg)


def browser(case, **kw):
    out = run_json(["node", os.path.join(HERE, "ui_browser.js"), case, json.dumps(kw),
                    args.chromium], CLIENT_TIMEOUT, env=node_env)
    fail_if("error" in out, f"{case}: {out.get('error')}")
    return out


def services(web_root):
    """files: http.server with the waking page, 1.5 s to start; web, api: plain http.servers."""
    out, ports = {}, {}
    for name in ("files", "web", "api"):
        up, listen = free_port(), free_port()
        delay = "1.5" if name == "files" else "0"
        out[name] = {
            "command": ["sh", "-c", f"sleep {delay}; exec python3 -m http.server --bind "
                                    f"127.0.0.1 --directory {web_root} {up}"],
            "upstream": f"127.0.0.1:{up}", "health": "/", "listen": f"127.0.0.1:{listen}",
            "idle_timeout_minutes": 10, "start_timeout_seconds": 30}
        ports[name] = listen
    out["files"]["wake_page"] = True
    # broken: its start fails at once (the command exits), with the waking page.
    up, listen = free_port(), free_port()
    out["broken"] = {"command": ["sh", "-c", "exit 3"], "upstream": f"127.0.0.1:{up}",
                     "health": "/", "listen": f"127.0.0.1:{listen}", "wake_page": True,
                     "idle_timeout_minutes": 10, "start_timeout_seconds": 5}
    ports["broken"] = listen
    return out, ports


def admin_post(siesta, path, token=None):
    c = http.client.HTTPConnection("127.0.0.1", siesta.admin, timeout=60)
    c.request("POST", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def sleep_service(siesta, name):
    fail_if(admin_post(siesta, f"/admin/services/{name}/sleep") != 200, f"sleep {name}")
    siesta.wait_service(name, lambda s: s["actual"] == "stopped", 10, f"{name} stopped")


def loads_case(siesta, names):
    out = browser("loads", admin=f"http://127.0.0.1:{siesta.admin}", services=names,
                  screenshots=args.screenshots)
    fail_if(sorted(out["listed"]) != sorted(names), f"listed {out['listed']}")
    return f"{len(out['listed'])} services listed"


def settings_case(siesta):
    out = browser("settings", admin=f"http://127.0.0.1:{siesta.admin}")
    return "refused in the form: " + "; ".join(f"{k} ({v})" for k, v in out["refused"].items())


def countdown_case(siesta):
    siesta.wake("web")
    out = browser("countdown", admin=f"http://127.0.0.1:{siesta.admin}", service="web")
    return f"{out['firstText']} -> {out['secondText']}"


def sleep_keyboard_case(siesta):
    siesta.wake("api")
    out = browser("sleep_and_keyboard", admin=f"http://127.0.0.1:{siesta.admin}", service="api",
                  screenshots=args.screenshots)
    fail_if(siesta.service("api")["actual"] != "running", "api not running after the keyboard wake")
    return f"focus outline {out['outline']['style']} {out['outline']['width']}"


def token_case(binary, web_root):
    svc, _ = services(web_root)
    env_token = dict(os.environ, SIESTA_ADMIN_TOKEN=TOKEN)
    admin = free_port()
    path = os.path.join(procs.tmp, "siesta-token.json")
    with open(path, "w") as f:
        json.dump({"listen": f"127.0.0.1:{admin}", "services": {"web": svc["web"]}}, f)
    proc = procs.start("siesta-token", [binary, "--config", path], env=env_token)
    wait_port(admin, timeout=30, proc=proc, what="siesta (token)")
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=60)
    c.request("POST", "/admin/services/web/wake", headers={"Authorization": f"Bearer {TOKEN}"})
    fail_if(c.getresponse().status != 200, "wake with the token")
    c.close()
    browser("token", admin=f"http://127.0.0.1:{admin}", service="web", token=TOKEN,
            screenshots=args.screenshots)
    return "asked, refused a wrong one, worked with the right one"


def waking_case(siesta, ports):
    sleep_service(siesta, "files")
    out = browser("waking", url=f"http://127.0.0.1:{ports['files']}/", service="files",
                  real_text=REAL_TEXT, screenshots=args.screenshots)
    fail_if(siesta.service("files")["actual"] != "running", "files not running after the page")
    return f"{out['heading']!r} then {out['title']!r}"


def estimate_case(siesta, ports):
    sleep_service(siesta, "files")
    c = http.client.HTTPConnection("127.0.0.1", ports["files"], timeout=60)
    c.request("GET", "/", headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate",
                                   "Sec-Fetch-Dest": "document"})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    fail_if(r.status != 503, f"status {r.status}")
    fail_if("(usually " not in body, "no estimate in the page after a measured cold start")
    csp = r.getheader("Content-Security-Policy") or ""
    fail_if("script-src 'self'" not in csp or "unsafe-inline" in csp, f"CSP {csp}")
    siesta.wait_service("files", lambda s: s["actual"] == "running", 30, "files woken by the page")
    usually = body[body.index("(usually "):].split(")")[0] + ")"
    return usually


def api_clients_case(siesta, ports):
    import requests
    url = f"http://127.0.0.1:{ports['files']}/"
    results = []

    def check(name, fn):
        sleep_service(siesta, "files")
        t0 = time.time()
        status, body = fn()
        took = time.time() - t0
        fail_if(status != 200 or REAL_TEXT not in body, f"{name}: {status} {body[:200]!r}")
        fail_if(took < 1.0, f"{name}: answered in {took:.2f} s, before the 1.5 s start")
        results.append(f"{name} {took:.1f} s")

    def curl():
        p = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", url], capture_output=True,
                           text=True, timeout=60)
        body, _, code = p.stdout.rpartition("\n")
        return int(code), body

    def req():
        r = requests.get(url, timeout=60)
        return r.status_code, r.text

    def client():
        c = http.client.HTTPConnection("127.0.0.1", ports["files"], timeout=60)
        c.request("GET", "/")
        r = c.getresponse()
        return r.status, r.read().decode()

    def browser_post():
        # A form's POST from a browser: never the page (it would lose the body).
        c = http.client.HTTPConnection("127.0.0.1", ports["files"], timeout=60)
        c.request("POST", "/", body="a=1", headers={
            "Accept": "text/html", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
            "Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        body = r.read().decode()
        # http.server answers a POST with 501: that it is the server's answer is what counts.
        return (200 if r.status == 501 and "Unsupported method" in body else r.status), REAL_TEXT

    check("curl", curl)
    check("requests", req)
    check("http.client", client)
    check("browser POST", browser_post)
    return ", ".join(results)


def status_path_case(siesta, ports):
    sleep_service(siesta, "files")
    c = http.client.HTTPConnection("127.0.0.1", ports["files"], timeout=10)
    for _ in range(3):
        c.request("GET", "/.siesta/wake-status")
        r = c.getresponse()
        status = json.loads(r.read())
        fail_if(r.status != 200, f"status {r.status}")
        fail_if(status != {"service": "files", "state": "stopped", "ready": False,
                           "expected_seconds": status["expected_seconds"]}, f"{status}")
    c.close()
    time.sleep(0.3)
    fail_if(siesta.service("files")["actual"] != "stopped", "the status path woke the service")
    # A service without the waking page forwards the path to its upstream like any other.
    c = http.client.HTTPConnection("127.0.0.1", ports["web"], timeout=30)
    c.request("GET", "/.siesta/wake-status")
    r = c.getresponse()
    r.read()
    fail_if(r.status != 404 or r.getheader("Server", "").find("SimpleHTTP") < 0,
            f"web: {r.status} {r.getheader('Server')}")
    return f"expected_seconds {status['expected_seconds']}"


def fast_failure_case(siesta, ports):
    """A start that fails within the grace: a navigation still gets the page (which reads the
    error state and offers to try again), an API client the JSON error."""
    def get(headers):
        c = http.client.HTTPConnection("127.0.0.1", ports["broken"], timeout=30)
        c.request("GET", "/", headers=headers)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, r.getheader("Content-Type", ""), body
    status, ctype, body = get({"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
                               "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
    fail_if(status != 503 or not ctype.startswith("text/html") or "siesta-wake" not in body,
            f"navigation: {status} {ctype} {body[:200]!r}")
    fail_if("could not be woken:" in body, f"the page carries the error text: {body[:200]!r}")
    status, ctype, body = get({})
    fail_if(status != 503 or not ctype.startswith("application/json") or
            "could not be woken" not in body, f"API client: {status} {ctype} {body[:200]!r}")
    return "navigation: the waking page; API client: JSON 503"


def main():
    for tool in ("node", "curl"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            die(f"{tool} not found (scripts/install-deps.sh installs it)")
    if not os.path.exists(args.chromium):
        die(f"{args.chromium} not found (scripts/install-deps.sh installs chromium)")
    if not os.path.isdir(os.path.join(args.node_modules, "puppeteer-core")):
        die(f"puppeteer-core not in {args.node_modules} (npm ci in tests/clients)")
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)
    web_root = os.path.join(procs.tmp, "www")
    os.makedirs(web_root)
    with open(os.path.join(web_root, "index.html"), "w") as f:
        f.write(f"<!doctype html><title>files</title><link rel=\"icon\" href=\"data:,\">"
                f"<h1>{REAL_TEXT}</h1>\n")
    svc, ports = services(web_root)
    siesta = Siesta(procs, args.siesta, svc)

    cases.run("page/loads", loads_case, siesta, sorted(svc))
    cases.run("page/countdown", countdown_case, siesta)
    cases.run("page/settings", settings_case, siesta)
    cases.run("page/sleep-and-keyboard", sleep_keyboard_case, siesta)
    cases.run("page/token", token_case, args.siesta, web_root)
    cases.run("waking/browser", waking_case, siesta, ports)
    cases.run("waking/estimate", estimate_case, siesta, ports)
    cases.run("waking/api-clients-block", api_clients_case, siesta, ports)
    cases.run("waking/status-path", status_path_case, siesta, ports)
    cases.run("waking/fast-failure", fast_failure_case, siesta, ports)
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

#!/usr/bin/env python3
"""A stand-in Kubernetes API server for siesta's Kubernetes tests (no real one can run here).

It serves apps/v1 Deployments and StatefulSets over HTTPS, each in its namespace (a list, get or
watch in one namespace sees only that namespace's), their scale subresource, DELETE (a DELETED
watch event and a Status of success), lists and watches (resourceVersion, allowWatchBookmarks,
timeoutSeconds; a bookmark never passes an event the watch has not sent), and the API's errors
(401, 403 with an RBAC message, 404, 409 on a stale resourceVersion, 410 Gone on a watch), in the
shapes of shapes.json, which names the reference page each comes from.

Its workloads are real: a workload with a command runs it (once, on loopback) while its replicas
are above 0, and reports readyReplicas = replicas once the command's port accepts connections,
as a kubelet with a readiness probe would; scaled to 0 the process is stopped.

Certificates are made at start with the openssl command: a CA, a server certificate for
127.0.0.1 and a client certificate (CN siesta-client) that the server accepts.

Control (no auth, under /_stand-in/): POST workloads (create; "namespace" default "default"),
POST scale (someone else's scale), POST auth {"mode": "full"|"role"|"401"|"403"}, POST compact
(forget the history and end open watches: the next watch from an old version gets 410), POST
expire {"always": true|false} (every watch gets 410 at once, as from a server whose history is
always too short), GET requests (what was asked, with when: [method, path, unix time]).

Usage: kube_apiserver.py --dir DIR [--token TOKEN]; prints "PORT <n>" when it listens.
"""
import argparse
import signal
import copy
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = json.load(open(os.path.join(HERE, "shapes.json")))
NAMESPACE = "default"
USER = "system:serviceaccount:default:siesta"
KINDS = {"deployments": "deployment", "statefulsets": "statefulset"}


def fill(value, **subs):
    """The shape with its {placeholders} replaced."""
    if isinstance(value, dict):
        return {k: fill(v, **subs) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, **subs) for v in value]
    if isinstance(value, str):
        for k, v in subs.items():
            value = value.replace("{" + k + "}", str(v))
    return value


def shape(which, **subs):
    return fill(copy.deepcopy(SHAPES[which]["shape"]), **subs)


def make_certs(d):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    # EC keys: RSA key generation takes seconds on a loaded machine.
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    run("req", "-x509", *key, "-nodes", "-days", "2", "-subj", "/CN=stand-in-ca",
        "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt")
    with open(f"{d}/san.ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who, cn, ext in (("server", "kube-apiserver", True), ("client", "siesta-client", False)):
        run("req", *key, "-nodes", "-subj", f"/CN={cn}", "-keyout",
            f"{d}/{who}.key", "-out", f"{d}/{who}.csr")
        args = ["x509", "-req", "-in", f"{d}/{who}.csr", "-CA", f"{d}/ca.crt", "-CAkey",
                f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-out", f"{d}/{who}.crt"]
        if ext:
            args += ["-extfile", f"{d}/san.ext"]
        run(*args)


class Workload:
    def __init__(self, kind, name, labels, annotations, replicas, command, port,
                 namespace=NAMESPACE):
        self.kind, self.name, self.namespace = kind, name, namespace
        self.obj = shape(kind, name=name, namespace=namespace, uid=f"uid-{namespace}-{kind}-{name}",
                         rv="0")
        self.obj["metadata"]["labels"] = dict(labels)
        self.obj["metadata"]["annotations"] = dict(annotations)
        self.obj["spec"]["replicas"] = replicas
        self.command, self.port, self.proc = command, port, None


class State:
    def __init__(self, token):
        self.lock = threading.Condition()
        self.rv = 100
        self.oldest = 100  # the oldest version a watch may start from
        self.epoch = 0  # bumped by compact: open watches end
        self.history = []  # (rv, namespace, plural, event)
        self.workloads = {}  # (namespace, plural, name) -> Workload
        self.expire_always = False
        self.token = token
        self.mode = "full"
        self.requests = []

    def bump(self, plural, w, type_):
        """Records a change of w (lock held): new resourceVersion, an event for the watches."""
        self.rv += 1
        w.obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, w.namespace, plural,
                             {"type": type_, "object": copy.deepcopy(w.obj)}))
        self.lock.notify_all()

    def set_replicas(self, plural, w, n):
        w.obj["spec"]["replicas"] = n
        w.obj["metadata"]["generation"] += 1
        self.bump(plural, w, "MODIFIED")
        threading.Thread(target=self.reconcile, args=(plural, w), daemon=True).start()

    def reconcile(self, plural, w):
        """The controller and kubelet: runs or stops the process, then reports the status."""
        with self.lock:
            want = w.obj["spec"]["replicas"]
        if want > 0 and w.command and (w.proc is None or w.proc.poll() is not None):
            w.proc = subprocess.Popen(w.command, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        if want == 0 and w.proc is not None:
            w.proc.terminate()
            try:
                w.proc.wait(5)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            w.proc = None
        with self.lock:
            if self.workloads.get((w.namespace, plural, w.name)) is not w:
                return  # deleted: no more events of it
            w.obj["status"]["replicas"] = want
            w.obj["status"]["observedGeneration"] = w.obj["metadata"]["generation"]
            self.bump(plural, w, "MODIFIED")
        if want > 0:
            deadline = time.time() + 30
            while time.time() < deadline:
                if w.port is None or port_open(w.port):
                    break
                with self.lock:
                    if w.obj["spec"]["replicas"] != want:
                        return
                time.sleep(0.05)
        with self.lock:
            if w.obj["spec"]["replicas"] != want:
                return
            for k in ("readyReplicas", "availableReplicas", "updatedReplicas"):
                w.obj["status"][k] = want
            self.bump(plural, w, "MODIFIED")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def merge(target, patch):
    """RFC 7386 JSON merge patch."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None
    route_namespace = NAMESPACE

    def log_message(self, *args):
        pass

    def send_json(self, code, doc):
        body = (json.dumps(doc) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    # --- authentication and authorization, as the API server does them ---
    def authorized(self, verb, plural, name, sub):
        st = self.state
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        by_cert = bool(cert) and any(
            ("commonName", "siesta-client") in rdn for rdn in cert.get("subject", ()))
        by_token = self.headers.get("Authorization") == f"Bearer {st.token}"
        if st.mode == "401" or not (by_cert or by_token):
            self.send_json(401, shape("status_401"))
            return False
        namespace = self.route_namespace
        forbidden = st.mode == "403" or (
            st.mode == "role" and sub is None and verb in ("patch", "update"))
        if forbidden:
            resource_path = plural + ("/" + sub if sub else "")
            doc = shape("status_403", resource=plural, name=name or "", user=USER, verb=verb,
                        resource_path=resource_path, namespace=namespace)
            if not name:  # a collection: no name in the message
                doc["message"] = doc["message"].replace(f' "{name}"', "", 1)
                del doc["details"]["name"]
            self.send_json(403, doc)
            return False
        return True

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        # apis/apps/v1/namespaces/NS/PLURAL[/NAME[/scale]]
        if len(parts) < 6 or parts[:4] != ["apis", "apps", "v1", "namespaces"] or \
                parts[5] not in KINDS:
            return None
        self.route_namespace = parts[4]
        name = parts[6] if len(parts) > 6 else None
        sub = parts[7] if len(parts) > 7 else None
        return (parts[4], parts[5], name, sub, query)

    def find(self, namespace, plural, name):
        w = self.state.workloads.get((namespace, plural, name))
        if w is None:
            self.send_json(404, shape("status_404", resource=plural, name=name))
        return w

    def do_GET(self):
        st = self.state
        with st.lock:
            st.requests.append(["GET", self.path, time.time()])
        if self.path.startswith("/_stand-in/requests"):
            with st.lock:
                return self.send_json(200, st.requests)
        r = self.route()
        if r is None:
            return self.send_json(404, shape("status_404", resource="paths", name=self.path))
        namespace, plural, name, sub, query = r
        watching = query.get("watch") in ("1", "true")
        verb = "watch" if watching else ("get" if name else "list")
        if not self.authorized(verb, plural, name, sub):
            return
        if watching:
            return self.watch(namespace, plural, query)
        with st.lock:
            if name is None:
                doc = shape("list", Kind=SHAPES[KINDS[plural]]["shape"]["kind"], rv=st.rv)
                selector = query.get("labelSelector", "")
                for (ns, p, _), w in sorted(st.workloads.items()):
                    if ns != namespace or p != plural or \
                            not matches(w.obj["metadata"]["labels"], selector):
                        continue
                    item = copy.deepcopy(w.obj)
                    del item["kind"], item["apiVersion"]
                    doc["items"].append(item)
                return self.send_json(200, doc)
            w = self.find(namespace, plural, name)
            if w is None:
                return
            return self.send_json(200, self.scale_of(w) if sub == "scale" else w.obj)

    def scale_of(self, w):
        m = w.obj["metadata"]
        doc = shape("scale", name=m["name"], namespace=w.namespace, uid=m["uid"],
                    rv=m["resourceVersion"])
        doc["spec"]["replicas"] = w.obj["spec"]["replicas"]
        doc["status"]["replicas"] = w.obj["status"]["replicas"]
        return doc

    def do_PATCH(self):
        self.write("patch")

    def do_PUT(self):
        self.write("update")

    def write(self, verb):
        st = self.state
        with st.lock:
            st.requests.append([verb.upper(), self.path, time.time()])
        r = self.route()
        if r is None or r[2] is None:
            return self.send_json(405, shape("status_404", resource="paths", name=self.path))
        namespace, plural, name, sub, _ = r
        if not self.authorized(verb, plural, name, sub):
            return
        patch = self.body()
        with st.lock:
            w = self.find(namespace, plural, name)
            if w is None:
                return
            asked_rv = patch.get("metadata", {}).get("resourceVersion")
            if asked_rv is not None and asked_rv != w.obj["metadata"]["resourceVersion"]:
                return self.send_json(409, shape("status_409", resource=plural, name=name))
            if sub == "scale":
                n = patch.get("spec", {}).get("replicas")
                if not isinstance(n, int) or n < 0:
                    return self.send_json(422, shape("status_404", resource=plural, name=name))
                if n != w.obj["spec"]["replicas"]:
                    st.set_replicas(plural, w, n)
                return self.send_json(200, self.scale_of(w))
            annotations = patch.get("metadata", {}).get("annotations")
            if annotations:
                merge(w.obj["metadata"].setdefault("annotations", {}), annotations)
                st.bump(plural, w, "MODIFIED")
            return self.send_json(200, w.obj)

    def watch(self, namespace, plural, query):
        st = self.state
        since = int(query.get("resourceVersion") or 0)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        end = time.time() + int(query.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(doc):
            data = (json.dumps(doc) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        try:
            with st.lock:
                epoch = st.epoch
                if since < st.oldest or st.expire_always:
                    send(shape("status_410", asked=since, oldest=st.oldest))
                    self.wfile.write(b"0\r\n\r\n")
                    return
            kind = SHAPES[KINDS[plural]]["shape"]["kind"]
            last_bookmark = time.time()
            while time.time() < end:
                with st.lock:
                    if st.epoch != epoch:
                        break  # compacted: the client watches again and meets the 410
                    def pending():
                        return [e for rv, ns, p, e in st.history
                                if rv > since and ns == namespace and p == plural]
                    events = pending()
                    if not events:
                        st.lock.wait(0.2)
                        # An event recorded while it waited is sent before any bookmark passes
                        # it: the events and the bookmark's version are read together.
                        events = pending()
                    top = st.rv
                for e in events:
                    send(e)
                    since = int(e["object"]["metadata"]["resourceVersion"])
                if bookmarks and time.time() - last_bookmark > 1:
                    send(shape("bookmark", Kind=kind, rv=top))
                    since = max(since, top)
                    last_bookmark = time.time()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        self.close_connection = True

    def do_DELETE(self):
        st = self.state
        with st.lock:
            st.requests.append(["DELETE", self.path, time.time()])
        r = self.route()
        if r is None or r[2] is None or r[3] is not None:
            return self.send_json(405, shape("status_404", resource="paths", name=self.path))
        namespace, plural, name, _, _ = r
        if not self.authorized("delete", plural, name, None):
            return
        with st.lock:
            w = self.find(namespace, plural, name)
            if w is None:
                return
            del st.workloads[(namespace, plural, name)]
            w.obj["spec"]["replicas"] = 0
            st.bump(plural, w, "DELETED")
        threading.Thread(target=st.reconcile, args=(plural, w), daemon=True).start()
        self.send_json(200, shape("status_success", resource=plural, name=name,
                                  uid=w.obj["metadata"]["uid"]))

    def do_POST(self):
        st = self.state
        doc = self.body()
        if self.path == "/_stand-in/workloads":
            plural = doc["kind"] + "s"
            w = Workload(doc["kind"], doc["name"], doc.get("labels", {}),
                         doc.get("annotations", {}), doc.get("replicas", 1), doc.get("command"),
                         doc.get("port"), doc.get("namespace", NAMESPACE))
            with st.lock:
                st.workloads[(w.namespace, plural, w.name)] = w
                st.bump(plural, w, "ADDED")
            threading.Thread(target=st.reconcile, args=(plural, w), daemon=True).start()
            return self.send_json(201, w.obj)
        if self.path == "/_stand-in/scale":
            kind, name = doc["workload"].split("/")
            with st.lock:
                w = st.workloads[(doc.get("namespace", NAMESPACE), kind + "s", name)]
                st.set_replicas(kind + "s", w, doc["replicas"])
            return self.send_json(200, w.obj)
        if self.path == "/_stand-in/auth":
            with st.lock:
                st.mode = doc["mode"]
            return self.send_json(200, {"mode": st.mode})
        if self.path == "/_stand-in/expire":
            with st.lock:
                st.expire_always = bool(doc.get("always"))
                st.epoch += 1  # open watches end, and meet the 410 when they watch again
                st.lock.notify_all()
            return self.send_json(200, {"always": st.expire_always})
        if self.path == "/_stand-in/compact":
            with st.lock:
                st.oldest = st.rv + 1
                st.epoch += 1
                st.lock.notify_all()
            return self.send_json(200, {"oldest": st.oldest})
        self.send_json(404, shape("status_404", resource="paths", name=self.path))


def matches(labels, selector):
    for term in filter(None, selector.split(",")):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--token", default="stand-in-token")
    args = ap.parse_args()
    make_certs(args.dir)
    state = State(args.token)
    Handler.state = state
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{args.dir}/server.crt", f"{args.dir}/server.key")
    ctx.load_verify_locations(f"{args.dir}/ca.crt")
    ctx.verify_mode = ssl.CERT_OPTIONAL
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    # SIGTERM ends serve_forever with SystemExit, so the workloads' processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        for w in state.workloads.values():
            if w.proc is not None:
                w.proc.kill()


if __name__ == "__main__":
    sys.exit(main())

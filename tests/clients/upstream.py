#!/usr/bin/env python3
"""The HTTP upstream behind siesta in the client matrix (tests/clients/run_matrix.py).

Python's own http.server, so its parser is not siesta's (nor Beast's):
  GET  /hello                               "hello\\n" with Content-Length
  POST /echo   (Content-Length or chunked)  JSON {"bytes", "sha256", "chunked"} of the body it read
  GET  /stream?n=10&interval_ms=100&type=ndjson|sse   n chunks, one every interval_ms, chunked
  GET  /hang?ms=60000                       says nothing for ms, then "late\\n"
  GET  /stats                               JSON: requests served, and requests it could not parse
Every connection is kept alive (HTTP/1.1). A request it cannot parse (for example the stray bytes
of a body that a proxy framed wrongly) is answered 400 and counted in /stats "bad_requests".
"""
import argparse
import hashlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

stats = {"requests": 0, "bad_requests": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_error(self, code, message=None, explain=None):
        with lock:
            stats["bad_requests"] += 1
        super().send_error(code, message, explain)

    def reply(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return data, True
                data += self.rfile.read(size)
                self.rfile.readline(65537)
        return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)), False

    def do_GET(self):
        with lock:
            stats["requests"] += 1
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/hello":
            self.reply(200, b"hello\n")
        elif url.path == "/stats":
            with lock:
                self.reply(200, json.dumps(stats).encode(), "application/json")
        elif url.path == "/hang":
            time.sleep(int(q.get("ms", "60000")) / 1000)
            try:
                self.reply(200, b"late\n")
            except OSError:
                self.close_connection = True
        elif url.path == "/stream":
            n, interval = int(q.get("n", "10")), int(q.get("interval_ms", "100")) / 1000
            sse = q.get("type") == "sse"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if sse else "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                for i in range(n):
                    if i:
                        time.sleep(interval)
                    line = (f'data: {{"token": {i}}}\n\n' if sse else f'{{"token": {i}}}\n').encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:  # the client (through the proxy) left mid-stream
                self.close_connection = True
        else:
            self.reply(404, b"not found\n")

    def do_POST(self):
        with lock:
            stats["requests"] += 1
        body, chunked = self.read_body()
        if urllib.parse.urlsplit(self.path).path != "/echo":
            return self.reply(404, b"not found\n")
        self.reply(200, json.dumps({"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                                    "chunked": chunked}).encode(), "application/json")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"upstream listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Small HTTP stand-ins for the compose test, answering the few requests it makes as the real
servers do: Qdrant (GET /, /readyz, /healthz, /collections) and the Whisper ASR web service
(GET /docs, POST /asr).
    http_standin.py qdrant|whisper HOST PORT
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KIND, HOST, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
ROUTES = {
    "qdrant": {
        "/": {"title": "qdrant - vector search engine", "version": "1.12.4"},
        "/readyz": "all shards are ready",
        "/healthz": "healthz check passed",
        "/collections": {"result": {"collections": []}, "status": "ok", "time": 0.000002},
    },
    "whisper": {
        "/docs": "<html><title>Whisper Asr Webservice</title></html>",
    },
}[KIND]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body):
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in ROUTES:
            self.answer(200, ROUTES[path])
        else:
            self.answer(404, {"status": {"error": "Not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        if KIND == "whisper" and self.path.split("?")[0] == "/asr":
            self.answer(200, {"text": " Hello from the stand-in.", "segments": [], "language": "en"})
        else:
            self.answer(404, {"detail": "Not Found"})

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (KIND, fmt % args))


ThreadingHTTPServer((HOST, PORT), Handler).serve_forever()

#!/usr/bin/env python3
"""A WebSocket service behind siesta for tests/clients/run_websockets.py, built on the Python
`websockets` library (Debian's python3-websockets): siesta starts it on a wake and stops it when
it sleeps, like any web UI with a WebSocket.

  ws_server.py --port PORT

  GET /           an HTML page whose script opens a WebSocket to /echo on the same host (the
                  page headless Chromium opens through siesta); its result is window.result
  GET /health     200
  WS  /echo       echoes every message, text or binary
  WS  /ping       pings the client 3 times, waits for each pong, then sends "pinged 3"
  WS  /close      closes with 4000 "server bye" when it receives "bye please"; echoes otherwise
"""
import argparse
import asyncio
import http

import websockets

PAGE = b"""<!doctype html>
<html><head><title>siesta websocket page</title></head><body>
<script>
(async () => {
  const result = {messages: []};
  try {
    const ws = new WebSocket(`ws://${location.host}/echo`);
    ws.binaryType = "arraybuffer";
    const next = () => new Promise((resolve, reject) => {
      ws.onmessage = (e) => resolve(e.data);
      ws.onclose = (e) => reject(new Error(`closed ${e.code}`));
    });
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    const text = "hello from chromium \\u00e9\\u4e16\\u{1F600}";
    ws.send(text);
    result.text_echoed = (await next()) === text;
    for (const size of [1, 125, 126, 65536, 1 << 20]) {
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i++) bytes[i] = (i * 31 + size) & 255;
      ws.send(bytes);
      const back = new Uint8Array(await next());
      result.messages.push({size, same: back.length === size && back.every((b, i) => b === bytes[i])});
    }
    const closed = new Promise((resolve) => { ws.onclose = (e) => resolve(e); });
    ws.close(1000, "page done");
    const e = await closed;
    result.close_code = e.code;
    result.clean = e.wasClean;
  } catch (err) {
    result.error = String(err);
  }
  window.result = result;
})();
</script></body></html>
"""


async def process_request(path, _headers):
    if path == "/":
        return http.HTTPStatus.OK, [("Content-Type", "text/html; charset=utf-8")], PAGE
    if path == "/health":
        return http.HTTPStatus.OK, [("Content-Type", "text/plain")], b"ok\n"
    return None  # a WebSocket handshake


async def handler(ws):
    if ws.path == "/ping":
        for _ in range(3):
            pong = await ws.ping()
            await asyncio.wait_for(pong, 10)
        await ws.send("pinged 3")
        await ws.wait_closed()
        return
    async for message in ws:
        if ws.path == "/close" and message == "bye please":
            await ws.close(4000, "server bye")
            return
        await ws.send(message)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    async with websockets.serve(handler, "127.0.0.1", args.port, process_request=process_request,
                                max_size=4 << 20, ping_interval=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())

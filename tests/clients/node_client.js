// The client matrix's Node driver: Node's own `http` module and the global `fetch` (undici),
// as applications use them, against siesta's proxy port. run_matrix.py gives one case as JSON:
//   {"client": "http"|"fetch", "case": "plain"|"stream"|"upload"|"abort_stream"|"abort_headers",
//    "port": N, "stream_path": "/stream?...", "pieces": 4, "piece_bytes": 16384, "gap_ms": 50}
// and reads one JSON line back: what the client saw (statuses, bodies, the time each piece of a
// stream arrived, whether the connection was reused, errors). run_matrix.py judges it.
'use strict';
const http = require('http');

const spec = JSON.parse(process.argv[2]);
const t0 = performance.now();
const now = () => Math.round((performance.now() - t0) * 10) / 10;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const base = `http://127.0.0.1:${spec.port}`;
const errors = [];

function piece(i) {
  return Buffer.alloc(spec.piece_bytes || 16384, String(i % 10));
}

// ---- Node's http module: one keep-alive agent with a single socket ----
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
agent.on('free', (socket) => {
  if (!socket._matrixWatched) {
    socket._matrixWatched = true;
    socket.on('error', (e) => errors.push(`socket: ${e.code || ''} ${e.message}`));
  }
});

// Sends one request; resolves with what came back. `onChunk` may abort (returns true).
function httpRequest(method, path, { body, onChunk, abortAfterMs } = {}) {
  return new Promise((resolve) => {
    const out = { status: 0, chunks: [], body: '', reused: false, error: null };
    const req = http.request(`${base}${path}`, { method, agent }, (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      out.t_headers = now();
      res.on('data', (d) => {
        out.chunks.push([now(), d.toString()]);
        out.body += d.toString();
        if (onChunk && onChunk(d)) {
          out.aborted_at = now();
          out.aborted_wall = Date.now() / 1000;
          req.destroy();
          resolve(out);
        }
      });
      res.on('end', () => {
        out.t_end = now();
        resolve(out);
      });
      res.on('error', (e) => {
        if (out.aborted_at === undefined) out.error = `${e.code || ''} ${e.message}`;
        resolve(out);
      });
    });
    req.on('socket', (s) => {
      out.reused = req.reusedSocket;
      out.local_port = s.localPort;
    });
    req.on('error', (e) => {
      if (out.aborted_at === undefined) out.error = `${e.code || ''} ${e.message}`;
      resolve(out);
    });
    if (abortAfterMs !== undefined) {
      setTimeout(() => {
        out.aborted_at = now();
        out.aborted_wall = Date.now() / 1000;
        req.destroy();
        resolve(out);
      }, abortAfterMs);
    }
    if (body) {
      (async () => {
        for (let i = 0; i < body.pieces; i++) {
          req.write(piece(i));
          await sleep(body.gap_ms);
        }
        req.end();
      })();
    } else {
      req.end();
    }
  });
}

// ---- fetch ----
async function fetchRequest(method, path, { body, abortOnFirstChunk, abortAfterMs } = {}) {
  const out = { status: 0, chunks: [], body: '', error: null };
  const controller = new AbortController();
  const init = { method, signal: controller.signal };
  if (body) {
    let i = 0;
    init.duplex = 'half';
    init.body = new ReadableStream({
      async pull(c) {
        if (i === body.pieces) return c.close();
        if (i > 0) await sleep(body.gap_ms);
        c.enqueue(new Uint8Array(piece(i++)));
      },
    });
  }
  let timer;
  if (abortAfterMs !== undefined) {
    timer = setTimeout(() => {
      out.aborted_at = now();
      out.aborted_wall = Date.now() / 1000;
      controller.abort();
    }, abortAfterMs);
  }
  try {
    const res = await fetch(`${base}${path}`, init);
    out.status = res.status;
    out.headers = Object.fromEntries(res.headers);
    out.t_headers = now();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      out.chunks.push([now(), text]);
      out.body += text;
      if (abortOnFirstChunk) {
        out.aborted_at = now();
        out.aborted_wall = Date.now() / 1000;
        controller.abort();
        break;
      }
    }
    out.t_end = now();
  } catch (e) {
    if (out.aborted_at === undefined) {
      out.error = `${e.name}: ${e.message}${e.cause ? ` (cause: ${e.cause.code || ''} ${e.cause.message})` : ''}`;
    }
  } finally {
    clearTimeout(timer);
  }
  return out;
}

async function main() {
  const isHttp = spec.client === 'http';
  const request = isHttp
    ? (m, p, o = {}) => httpRequest(m, p, { ...o, onChunk: o.abortOnFirstChunk ? () => true : undefined })
    : fetchRequest;
  const result = { client: spec.client, case: spec.case };
  const body = { pieces: spec.pieces || 4, gap_ms: spec.gap_ms || 50 };
  switch (spec.case) {
    case 'plain':
      result.responses = [await request('GET', '/hello')];
      await sleep(50);  // undici puts a connection back in its pool a moment after the body ends
      result.responses.push(await request('GET', '/hello'));
      break;
    case 'stream':
      result.stream = await request('GET', spec.stream_path);
      await sleep(50);  // whatever follows the stream on the connection has arrived by now
      result.next = await request('GET', '/hello');
      break;
    case 'upload':
      result.upload = await request('POST', '/echo', { body });
      await sleep(50);
      result.next = await request('GET', '/hello');
      break;
    case 'abort_stream':
      result.stream = await request('GET', spec.stream_path, { abortOnFirstChunk: true });
      break;
    case 'abort_headers':
      result.hang = await request('GET', spec.hang_path, { abortAfterMs: spec.abort_after_ms });
      break;
    default:
      throw new Error(`unknown case ${spec.case}`);
  }
  await sleep(20);
  result.errors = errors;
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ fatal: String(e && e.stack || e), errors }) + '\n', () => process.exit(0));
});

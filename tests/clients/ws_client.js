// The `ws` npm client (pinned in package-lock.json) driven through siesta by run_websockets.py.
// Prints one JSON object on its last stdout line.
//
//   node ws_client.js echo URL          text and binary messages of 1 B .. 1 MiB, each echoed
//   node ws_client.js ping URL          counts the server's pings (answered by ws), then its word
//   node ws_client.js server-close URL  asks the server to close; reports the close code/reason
//   node ws_client.js client-close URL  closes with 4001; reports the code the server echoed
//   node ws_client.js hold URL N        opens N sockets, echoes one message on each, prints
//                                       "READY N"; each stdin line closes one socket ("CLOSED k"),
//                                       stdin's end closes the rest
"use strict";
const WebSocket = require("ws");

const [mode, url, count] = process.argv.slice(2);
const done = (result) => {
  console.log(JSON.stringify(result));
  process.exit(0);
};
const fail = (err) => done({error: String(err && err.stack ? err.stack : err)});
setTimeout(() => fail(`timed out in ${mode}`), 60000).unref();

// `setup` attaches listeners before anything arrives: a server's first frame may come with
// its 101, and be handled before a promise for "open" resolves.
function open(path, setup = () => {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/\/$/, "") + path);
    setup(ws);
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

// The next message, as a Buffer, with whether it was binary.
function next(ws) {
  return new Promise((resolve, reject) => {
    const onClose = (code) => reject(new Error(`closed ${code} while waiting for a message`));
    ws.once("close", onClose);
    ws.once("message", (data, isBinary) => {
      ws.off("close", onClose);
      resolve({data, isBinary});
    });
  });
}

function closed(ws) {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve({code: null, reason: ""});
    ws.once("close", (code, reason) => resolve({code, reason: reason.toString()}));
  });
}

// Deterministic content of `size` bytes: binary, or UTF-8 text with multi-byte characters.
function payload(size, binary) {
  if (binary) return Buffer.from(Array.from({length: size}, (_, i) => (i * 31 + size) & 255));
  const unit = "abcdefghijklmnopqrstuvwxyz é世😀";
  const s = unit.repeat(Math.floor(size / Buffer.byteLength(unit)));
  return s + "a".repeat(size - Buffer.byteLength(s));
}

async function echo() {
  const ws = await open("/echo");
  const results = [];
  for (const binary of [false, true]) {
    for (const size of [1, 125, 126, 65535, 65536, 1 << 20]) {
      const sent = payload(size, binary);
      ws.send(sent, {binary});
      const got = await next(ws);
      const same = got.isBinary === binary && Buffer.compare(got.data, Buffer.from(sent)) === 0;
      results.push({binary, size, same});
    }
  }
  ws.close(1000);
  const c = await closed(ws);
  done({results, close_code: c.code});
}

async function ping() {
  let pings = 0;
  const ws = await open("/ping", (w) => w.on("ping", () => pings++));  // ws answers each
  const word = (await next(ws)).data.toString();
  ws.close(1000);
  await closed(ws);
  done({pings, word});
}

async function serverClose() {
  const ws = await open("/close");
  ws.send("first");
  const first = (await next(ws)).data.toString();
  const c = closed(ws);
  ws.send("bye please");
  done({first, ...(await c)});
}

async function clientClose() {
  const ws = await open("/echo");
  ws.send("x");
  await next(ws);
  const c = closed(ws);
  ws.close(4001, "client bye");
  done(await c);
}

async function hold() {
  const n = Number(count);
  const sockets = await Promise.all(Array.from({length: n}, () => open("/echo")));
  const echoed = await Promise.all(
      sockets.map(async (ws, i) => {
        ws.send(`socket ${i}`);
        return (await next(ws)).data.toString() === `socket ${i}`;
      }));
  console.log(`READY ${echoed.filter(Boolean).length}`);
  let closedCount = 0;
  const closeOne = async () => {
    const ws = sockets[closedCount];
    if (!ws) return;
    closedCount++;
    const c = closed(ws);
    ws.close(1000);
    await c;
    console.log(`CLOSED ${closedCount}`);
  };
  const rl = require("readline").createInterface({input: process.stdin});
  let queue = Promise.resolve();
  rl.on("line", () => {
    queue = queue.then(closeOne);
  });
  rl.on("close", () => {
    queue.then(async () => {
      while (closedCount < n) await closeOne();
      done({opened: n, echoed: echoed.filter(Boolean).length, closed: closedCount});
    });
  });
}

const modes = {echo, ping, "server-close": serverClose, "client-close": clientClose, hold};
if (!modes[mode]) fail(`unknown mode ${mode}`);
modes[mode]().catch(fail);

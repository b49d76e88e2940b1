// The client matrix's LLM-library driver: the official `ollama` and `openai` npm packages (pinned
// in package-lock.json) against siesta's port for an Ollama service. run_matrix.py gives one case:
//   {"lib": "ollama"|"openai", "api": "generate"|"chat"|"chat.completions"|"models.list",
//    "stream": bool, "port": N, "model": "llama3.2:3b", "repeat": 2}
// and reads one JSON line back: for each of `repeat` calls (one client, so one connection pool),
// the text the library produced and the time each streamed piece arrived (for models.list: the
// models it read). Retries are off: a
// failure through siesta must show, not be papered over.
'use strict';

const spec = JSON.parse(process.argv[2]);
const t0 = performance.now();
const now = () => Math.round((performance.now() - t0) * 10) / 10;

async function call(client) {
  const out = { pieces: [], text: '', error: null, t_start: now() };
  const messages = [{ role: 'user', content: 'hello' }];
  if (spec.lib === 'ollama') {
    const req = { model: spec.model, stream: spec.stream };
    if (spec.api === 'generate') req.prompt = 'hello';
    else req.messages = messages;
    const res = await client[spec.api](req);
    const textOf = (m) => (spec.api === 'generate' ? m.response : m.message && m.message.content);
    if (spec.stream) {
      for await (const part of res) {
        out.pieces.push([now(), textOf(part) || '']);
        out.text += textOf(part) || '';
        if (part.done) out.done = true;
      }
    } else {
      out.text = textOf(res);
      out.done = res.done;
    }
  } else if (spec.api === 'models.list') {
    // The model list as the library reads it (one page: OpenAI-compatible servers send all).
    const page = await client.models.list();
    out.models = page.data;
    out.done = true;
  } else {
    const res = await client.chat.completions.create({ model: spec.model, messages, stream: spec.stream });
    if (spec.stream) {
      for await (const chunk of res) {
        const text = (chunk.choices[0] && chunk.choices[0].delta && chunk.choices[0].delta.content) || '';
        out.pieces.push([now(), text]);
        out.text += text;
      }
      out.done = true;
    } else {
      out.text = res.choices[0].message.content;
      out.done = res.choices[0].finish_reason === 'stop';
    }
  }
  out.t_end = now();
  return out;
}

async function main() {
  const base = `http://127.0.0.1:${spec.port}`;
  let client;
  if (spec.lib === 'ollama') {
    const { Ollama } = require('ollama');
    client = new Ollama({ host: base });
  } else {
    const OpenAI = require('openai');
    client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'not-needed', maxRetries: 0, timeout: 20000 });
  }
  const calls = [];
  for (let i = 0; i < (spec.repeat || 1); i++) {
    // undici puts a connection back in its pool a moment after the body ends.
    if (i > 0) await new Promise((r) => setTimeout(r, 50));
    try {
      calls.push(await call(client));
    } catch (e) {
      calls.push({ error: `${e.name}: ${e.message}${e.cause ? ` (cause: ${e.cause.code || ''} ${e.cause.message})` : ''}` });
    }
  }
  process.stdout.write(JSON.stringify({ calls }) + '\n', () => process.exit(0));
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ fatal: String(e && e.stack || e) }) + '\n', () => process.exit(0));
});

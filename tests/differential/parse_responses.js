// The differential test's response oracle: Node's own HTTP parser (llhttp, as Node's http client
// uses it, with no lenient flag) reads the bytes a client received from a proxy.
// stdin: a JSON array of base64 byte streams (one client connection each). stdout: a JSON array
// of {"responses": [{"status", "body_bytes", "keep_alive"}], "error": "HPE_..."|null,
// "incomplete": bool} — error is set when the bytes do not parse as a sequence of responses.
'use strict';
process.noDeprecation = true;  // process.binding('http_parser') is the parser http itself uses
const { HTTPParser } = process.binding('http_parser');

function parse(buf) {
  const out = { responses: [], error: null, incomplete: false };
  const parser = new HTTPParser();
  let current = null;
  parser[HTTPParser.kOnHeadersComplete] = (major, minor, headers, method, url, status, message,
    upgrade, keepAlive) => {
    current = { status, version: `${major}.${minor}`, body_bytes: 0, keep_alive: !!keepAlive };
    return 0;
  };
  parser[HTTPParser.kOnBody] = (b) => {
    if (current) current.body_bytes += b.length;
  };
  parser[HTTPParser.kOnMessageComplete] = () => {
    out.responses.push(current);
    current = null;
  };
  parser.initialize(HTTPParser.RESPONSE, {});
  const r = parser.execute(buf);
  if (r instanceof Error) {
    out.error = `${r.code}: ${r.reason || r.message} (at byte ${r.bytesParsed})`;
  } else {
    const f = parser.finish();  // EOF: completes a close-delimited body, flags a cut one
    if (f instanceof Error) out.error = `${f.code}: ${f.reason || f.message} (at EOF)`;
    if (current !== null) out.incomplete = true;
  }
  return out;
}

let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const streams = JSON.parse(input);
  process.stdout.write(JSON.stringify(streams.map((b) => parse(Buffer.from(b, 'base64')))) + '\n');
});

"""A reference parser for HTTP/1.1 request streams (RFC 9112), the differential test's yardstick.

parse_requests(data, lenient) splits a byte stream into requests the way RFC 9112 says, and stops
at the first request a server must not process:
  strict  (lenient=False): every "MAY reject" of the RFC rejects: bare LF, obs-fold, Content-Length
          and Transfer-Encoding together, a repeated Content-Length even when the values agree.
  lenient (lenient=True): those are read the way the RFC allows instead (LF ends a line, a fold is
          a space, Transfer-Encoding wins over Content-Length and the connection ends after that
          message, identical Content-Length values collapse to one).
Both reject what the RFC says MUST be rejected (a request Transfer-Encoding other than exactly
"chunked", Transfer-Encoding in HTTP/1.0, differing or invalid Content-Length, whitespace before a
colon, a missing or repeated Host in HTTP/1.1, bare CR, chunk sizes that overflow).
A proxy's forwarded stream is judged with the strict rules: what it sends must be unambiguous.
"""
import re

TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
MAX_CHUNK_HEX = 15  # sizes beyond 2^60 are an overflow attack, not a body


class Reject(Exception):
    pass


class Message:
    def __init__(self, method, target, version, headers):
        self.method, self.target, self.version, self.headers = method, target, version, headers
        self.body = b""
        self.trailers = []
        self.framing = "none"

    def values(self, name):
        return [v for n, v in self.headers if n == name]

    def __repr__(self):
        return f"{self.method} {self.target} HTTP/{self.version} body={self.body!r}"


class Stream:
    def __init__(self, data, lenient):
        self.data, self.pos, self.lenient = data, 0, lenient

    def line(self, limit=65536):
        """One line without its end; None when the data ends first."""
        i = self.data.find(b"\n", self.pos)
        if i < 0:
            if len(self.data) - self.pos > limit:
                raise Reject("line too long")
            return None
        raw = self.data[self.pos:i]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        elif not self.lenient:
            raise Reject("bare LF as a line end")
        if b"\r" in raw:
            raise Reject("bare CR")
        self.pos = i + 1
        return raw

    def take(self, n):
        if len(self.data) - self.pos < n:
            return None
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


class Incomplete(Exception):
    pass


def need(x):
    if x is None:
        raise Incomplete()
    return x


def split_list(values):
    out = []
    for v in values:
        out += [p.strip() for p in v.split(b",")]
    return out


def parse_fields(s, allow_fold):
    """Header or trailer fields up to the empty line: [(lowercase name, value)]."""
    fields = []
    while True:
        raw = need(s.line())
        if raw == b"":
            return fields
        if raw[:1] in (b" ", b"\t"):
            if not fields:
                raise Reject("whitespace before the first field")
            if not (allow_fold and s.lenient):
                raise Reject("obs-fold")
            name, value = fields[-1]
            fields[-1] = (name, (value + b" " + raw.strip(b" \t")).strip())
            continue
        name, colon, value = raw.partition(b":")
        if not colon:
            raise Reject(f"field without a colon: {raw[:40]!r}")
        if not TOKEN.match(name):
            raise Reject(f"invalid field name {name[:40]!r} (whitespace before the colon?)")
        value = value.strip(b" \t")
        if any(c < 0x20 and c != 0x09 or c == 0x7F for c in value):
            raise Reject("control character in a field value")
        fields.append((name.decode().lower(), value))


def parse_one(s):
    """One request from the stream, or None at a clean end. Raises Reject or Incomplete."""
    while True:  # empty lines before a request-line are ignored (RFC 9112 2.2)
        if s.pos == len(s.data):
            return None, False
        raw = need(s.line(8192))
        if raw != b"":
            break
    parts = raw.split(b" ")
    if len(parts) != 3 or not TOKEN.match(parts[0]) or not parts[1] or \
            not re.fullmatch(rb"HTTP/1\.[01]", parts[2]):
        raise Reject(f"invalid request-line {raw[:60]!r}")
    if any(c <= 0x20 or c == 0x7F for c in parts[1]):
        raise Reject("invalid request-target")
    msg = Message(parts[0].decode(), parts[1].decode("latin-1"), parts[2][5:].decode(),
                  parse_fields(s, allow_fold=True))
    close_after = False
    hosts = msg.values("host")
    if msg.version == "1.1" and len(hosts) != 1:
        raise Reject(f"HTTP/1.1 request with {len(hosts)} Host fields")
    if len(hosts) > 1:
        raise Reject("two Host fields")
    te = msg.values("transfer-encoding")
    cl = msg.values("content-length")
    if te:
        if msg.version == "1.0":
            raise Reject("Transfer-Encoding in an HTTP/1.0 request")
        codings = [c.lower() for c in split_list(te)]
        if codings != [b"chunked"]:
            raise Reject(f"request Transfer-Encoding {b', '.join(codings).decode()!r} is not exactly chunked")
        if cl:
            if not s.lenient:
                raise Reject("Content-Length and Transfer-Encoding together")
            close_after = True  # RFC 9112 6.1: process by TE, then close
        msg.framing = "chunked"
        body = b""
        while True:
            raw = need(s.line())
            size_text, _, ext = raw.partition(b";")
            if s.lenient:
                size_text = size_text.rstrip(b" \t")  # BWS before an extension
            if not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
                raise Reject(f"invalid chunk size {raw[:40]!r}")
            if len(size_text.lstrip(b"0")) > MAX_CHUNK_HEX:
                raise Reject("chunk size overflows")
            if ext and not re.fullmatch(rb"""[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"""
                                        rb"""(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"[^"]*"))?"""
                                        rb"""(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+"""
                                        rb"""(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"[^"]*"))?)*""", ext):
                raise Reject(f"invalid chunk extension {ext[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                # RFC 9112 5.2's obs-fold rule is for every field line, trailer lines too.
                msg.trailers = parse_fields(s, allow_fold=True)
                break
            body += need(s.take(size))
            end = need(s.line())
            if end != b"":
                raise Reject("chunk data longer than its size")
        msg.body = body
    elif cl:
        values = split_list(cl)
        for v in values:
            if not re.fullmatch(rb"[0-9]+", v):
                raise Reject(f"invalid Content-Length {v[:30]!r}")
        if len(set(int(v) for v in values)) != 1:
            raise Reject("differing Content-Length values")
        if len(values) > 1 and not s.lenient:
            raise Reject("repeated Content-Length")
        n = int(values[0])
        if n > 1 << 40:
            raise Reject("Content-Length too large")
        msg.framing = "content-length"
        msg.body = need(s.take(n))
    tokens = [t.lower() for t in split_list(msg.values("connection"))]
    if b"close" in tokens or (msg.version == "1.0" and b"keep-alive" not in tokens):
        close_after = True
    return msg, close_after


def parse_requests(data, lenient=False):
    """-> (messages, error): messages are the requests a server may process, in order; error is
    None, "incomplete: ..." (the data ends mid-request) or the reason the next request is
    rejected."""
    s = Stream(data, lenient)
    out = []
    while True:
        try:
            msg, close_after = parse_one(s)
        except Reject as e:
            return out, str(e)
        except Incomplete:
            return out, "incomplete request"
        if msg is None:
            return out, None
        out.append(msg)
        if close_after:
            return out, None  # whatever follows is not processed

"""A WSGI app with one path per behaviour the Python tests check (test/python.test.ts, test/supervision.test.ts).

Files the tests create or read (flags, markers, logs, data) are passed as query
parameters; the query is decoded as latin-1 like every other environ string.
A request with an ``X-Dump-Environ`` header gets its environ as JSON, whatever
its path (the environ test compares it with a TypeScript app's).
"""
import hashlib
import io
import json
import os
import sys
import time
from urllib.parse import parse_qsl


def _query(environ):
    return dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True, encoding="latin-1"))


def _text(start_response, body, status="200 OK", content_type="text/plain"):
    if isinstance(body, str):
        body = body.encode("utf-8")
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response, value, status="200 OK"):
    return _text(start_response, json.dumps(value), status, "application/json")


def _wait_for_file(path, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def _append(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


# ---- environ ----

def dump_environ(environ, start_response):
    body = environ["wsgi.input"].read()
    cgi = {k: v for k, v in environ.items() if isinstance(v, str) and not k.startswith("wsgi.")}
    wsgi = {
        "version": list(environ["wsgi.version"]),
        "url_scheme": environ["wsgi.url_scheme"],
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "run_once": environ["wsgi.run_once"],
        "input_terminated": environ.get("wsgi.input_terminated"),
        "input_methods": [m for m in ("read", "readline", "readlines", "__iter__") if hasattr(environ["wsgi.input"], m)],
        "errors_methods": [m for m in ("write", "writelines", "flush") if hasattr(environ["wsgi.errors"], m)],
        "has_file_wrapper": callable(environ.get("wsgi.file_wrapper")),
        "non_str_keys": sorted(k for k, v in environ.items() if not k.startswith("wsgi.") and not isinstance(v, str)),
    }
    return _json(start_response, {"cgi": cgi, "wsgi": wsgi, "body": body.decode("latin-1")})


# ---- request bodies ----

def read_input(environ, start_response):
    """Reads the body with the method named by ?mode=; answers the piece lengths and the hash of their join."""
    q = _query(environ)
    mode = q.get("mode", "read")
    inp = environ["wsgi.input"]
    pieces = []
    if mode == "read":
        pieces.append(inp.read())
    elif mode == "readn":
        n = int(q.get("n", "1000"))
        pieces.extend(iter(lambda: inp.read(n), b""))
    elif mode == "readline":
        pieces.extend(iter(inp.readline, b""))
    elif mode == "readline_limit":
        n = int(q.get("n", "100"))
        pieces.extend(iter(lambda: inp.readline(n), b""))
    elif mode == "readlines":
        pieces.extend(inp.readlines())
    elif mode == "iter":
        for line in inp:
            pieces.append(line)
    elif mode == "mixed":
        pieces.append(inp.read(10))
        pieces.append(inp.readline())
        pieces.append(inp.readline(5))
        pieces.append(next(iter(inp)))
        pieces.append(inp.read(3000))
        pieces.extend(inp.readlines())
    else:
        return _text(start_response, "unknown mode", "400 Bad Request")
    after = [len(inp.read()), len(inp.read(10)), len(inp.readline())]
    data = b"".join(pieces)
    return _json(start_response, {
        "lengths": [len(p) for p in pieces],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "terminated": environ.get("wsgi.input_terminated"),
        "after": after,
    })


def echo(environ, start_response):
    length = environ.get("CONTENT_LENGTH")
    inp = environ["wsgi.input"]
    body = inp.read(int(length)) if length else inp.read()
    return _text(start_response, body, content_type="application/octet-stream")


def no_read(environ, start_response):
    return _text(start_response, "did not read the body")


def upload(environ, start_response):
    """Reads the body in 64 KiB pieces: answers the byte count, the sha256 and the biggest piece."""
    inp = environ["wsgi.input"]
    h = hashlib.sha256()
    size = 0
    biggest = 0
    while True:
        piece = inp.read(65536)
        if not piece:
            break
        h.update(piece)
        size += len(piece)
        biggest = max(biggest, len(piece))
    return _json(start_response, {"size": size, "sha256": h.hexdigest(), "biggest": biggest, "pid": os.getpid()})


# ---- responses ----

def stream(environ, start_response):
    """One chunk, then wait for ?flag= to exist, then a second chunk."""
    flag = _query(environ)["flag"]
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first chunk\n"
        _wait_for_file(flag)
        yield b"second chunk\n"
    return body()


def big(environ, start_response):
    """?bytes= of a repeated pattern in 64 KiB chunks (streamed: no Content-Length); ?buffering=no sends X-Accel-Buffering: no."""
    q = _query(environ)
    left = int(q.get("bytes", str(5 * 1024 * 1024)))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("buffering") == "no":
        headers.append(("X-Accel-Buffering", "no"))
    start_response("200 OK", headers)
    chunk = (b"0123456789abcdef" * 4096)

    def body():
        nonlocal left
        while left > 0:
            piece = chunk[:left]
            left -= len(piece)
            yield piece
    return body()


def write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one,")
    write(b"")
    write(b"two,")
    return [b"three"]


class ClosingBody:
    """An iterable whose close() appends 'closed <id>' to ?marker=."""

    def __init__(self, marker, ident, mode):
        self.marker = marker
        self.ident = ident
        self.mode = mode

    def __iter__(self):
        yield b"part one\n"
        if self.mode == "raise":
            raise RuntimeError("probe: the body iterator raised")
        if self.mode == "slow":
            for i in range(400):
                time.sleep(0.05)
                yield b"tick %d\n" % i
        yield b"part two\n"

    def close(self):
        _append(self.marker, "closed %s" % self.ident)


def closing(environ, start_response):
    q = _query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingBody(q["marker"], q.get("id", "?"), q.get("mode", "normal"))


def file_wrapper(environ, start_response):
    q = _query(environ)
    if "bytesio" in q:
        f = io.BytesIO(b"in-memory " * 1000)
        size = 10000
    else:
        f = open(q["path"], "rb")
        size = os.fstat(f.fileno()).st_size
    offset = int(q.get("offset", "0"))
    f.seek(offset)
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("length") == "1":
        headers.append(("Content-Length", str(size - offset)))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 65536)


def log_lines(environ, start_response):
    tag = _query(environ).get("tag", "x")
    print("print-%s" % tag)
    sys.stderr.write("stderr-%s\n" % tag)
    sys.stderr.flush()
    environ["wsgi.errors"].write("errors-%s\n" % tag)
    environ["wsgi.errors"].flush()
    return _text(start_response, str(os.getpid()))


def raise_error(environ, start_response):
    raise RuntimeError("probe: the app raised before start_response")


# ---- supervision ----

def pid(environ, start_response):
    return _text(start_response, str(os.getpid()))


def crash(environ, start_response):
    os._exit(1)


def hang(environ, start_response):
    time.sleep(100)
    return _text(start_response, "woke up")


def sleep(environ, start_response):
    time.sleep(float(_query(environ).get("s", "1")))
    return _text(start_response, str(os.getpid()))


def append_then_sleep(environ, start_response):
    q = _query(environ)
    _append(q["log"], q["id"])
    time.sleep(float(q.get("s", "0")))
    return _text(start_response, q["id"])


ROUTES = {
    "/input": read_input,
    "/echo": echo,
    "/noread": no_read,
    "/upload": upload,
    "/stream": stream,
    "/big": big,
    "/write": write_callable,
    "/close": closing,
    "/file": file_wrapper,
    "/log": log_lines,
    "/raise": raise_error,
    "/pid": pid,
    "/crash": crash,
    "/hang": hang,
    "/sleep": sleep,
    "/append": append_then_sleep,
}


def application(environ, start_response):
    if "HTTP_X_DUMP_ENVIRON" in environ:
        return dump_environ(environ, start_response)
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        return _text(start_response, "no such probe: %s" % environ["PATH_INFO"], "404 Not Found")
    return route(environ, start_response)

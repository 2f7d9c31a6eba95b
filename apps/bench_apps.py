"""Small WSGI apps for the benchmark suite, chosen by callable name.

    apps/bench_apps.py:hello       13 bytes, "Hello, World!"
    apps/bench_apps.py:body_10k    10 KiB (10240 bytes) of text
    apps/bench_apps.py:echo        the request body back, as application/octet-stream
    apps/bench_apps.py:sleep_10ms  sleeps 10 ms, then "Hello, World!"
    apps/bench_apps.py:stream_100m 100 MiB (104857600 bytes) yielded in 64 KiB chunks
    apps/bench_apps.py:upload      reads the request body in 64 KiB pieces, answers its byte count
    apps/bench_apps.py:router      one of the above by path: /hello /10k /echo /sleep /stream /upload
                                   (anything else: 404)

``application`` is ``hello``. ``router`` lets the benchmark suite (bench/run.ts)
start each server once per scenario and reach every app through it; its cost, a
dict look-up, is the same under every server. Stdlib only; each app does as little as it can so
that the server is what gets measured.
"""
import time

HELLO_BODY = b"Hello, World!"
BODY_10K = (b"0123456789abcdef" * 640)  # 10240 bytes
CHUNK_64K = b"x" * 65536
STREAM_CHUNKS = 1600  # 1600 * 64 KiB = 100 MiB
READ_SIZE = 65536


def _text_headers(length, content_type="text/plain"):
    return [("Content-Type", content_type), ("Content-Length", str(length))]


def _read_chunks(environ):
    """Yields the request body in READ_SIZE pieces (CONTENT_LENGTH, or to EOF when terminated)."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length.isascii() and length.isdigit():
        remaining = int(length)
        while remaining > 0:
            data = stream.read(min(READ_SIZE, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    elif environ.get("wsgi.input_terminated"):
        while True:
            data = stream.read(READ_SIZE)
            if not data:
                break
            yield data


def hello(environ, start_response):
    start_response("200 OK", _text_headers(len(HELLO_BODY)))
    return [HELLO_BODY]


def body_10k(environ, start_response):
    start_response("200 OK", _text_headers(len(BODY_10K)))
    return [BODY_10K]


def echo(environ, start_response):
    body = b"".join(_read_chunks(environ))
    start_response("200 OK", _text_headers(len(body), "application/octet-stream"))
    return [body]


def sleep_10ms(environ, start_response):
    time.sleep(0.010)
    start_response("200 OK", _text_headers(len(HELLO_BODY)))
    return [HELLO_BODY]


def _stream_body():
    for _ in range(STREAM_CHUNKS):
        yield CHUNK_64K


def stream_100m(environ, start_response):
    start_response("200 OK", _text_headers(STREAM_CHUNKS * len(CHUNK_64K), "application/octet-stream"))
    return _stream_body()


def upload(environ, start_response):
    total = 0
    for data in _read_chunks(environ):
        total += len(data)
    body = str(total).encode("ascii")
    start_response("200 OK", _text_headers(len(body)))
    return [body]


def not_found(environ, start_response):
    start_response("404 Not Found", _text_headers(0))
    return [b""]


ROUTES = {
    "/hello": hello,
    "/10k": body_10k,
    "/echo": echo,
    "/sleep": sleep_10ms,
    "/stream": stream_100m,
    "/upload": upload,
}


def router(environ, start_response):
    return ROUTES.get(environ.get("PATH_INFO", ""), not_found)(environ, start_response)


application = hello

"""A small app wrapped in wsgiref.validate.validator, with warnings turned into errors.

Every AssertionError or warning the validator raises (while calling the app,
iterating its body or closing it, or from a __del__ check) is appended to the
file named by $VALIDATOR_LOG as one JSON line {"where", "path", "error"}; the
test expects that file to stay empty, except for /bad, which breaks a rule on
purpose to show the recording works.
"""
import json
import os
import sys
import traceback
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

LOG = os.environ.get("VALIDATOR_LOG", os.devnull)


def _record(where, path):
    with open(LOG, "a") as f:
        f.write(json.dumps({"where": where, "path": path, "error": traceback.format_exc()}) + "\n")


def _unraisable(info):
    with open(LOG, "a") as f:
        f.write(json.dumps({"where": "unraisable", "path": "?", "error": "%r in %r" % (info.exc_value, info.object)}) + "\n")


sys.unraisablehook = _unraisable


def _text(start_response, body):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _read_body(environ):
    inp = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        return inp.read(int(length))
    if environ.get("wsgi.input_terminated"):
        parts = []
        while True:
            piece = inp.read(8192)  # the validator allows read(size) only
            if not piece:
                return b"".join(parts)
            parts.append(piece)
    return b""


def inner(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    if path == "/bad":
        start_response("200 OK", [("X-No-Content-Type", "1")])  # the validator requires Content-Type
        return [b"bad"]
    if method == "POST":
        body = _read_body(environ)
        return _text(start_response, b"got %d bytes: %s" % (len(body), body[:20]))
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            for i in range(3):
                yield b"piece %d\n" % i
        return body()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written, ")
        return [b"returned"]
    return _text(start_response, b"hello validator")


_validated = validator(inner)


class _RecordedBody:
    """Passes the validator's iterator through, recording what it raises."""

    def __init__(self, inner_body, path):
        self._body = inner_body
        self._path = path

    def __iter__(self):
        it = iter(self._body)
        while True:
            try:
                chunk = next(it)
            except StopIteration:
                return
            except BaseException:
                _record("iterate", self._path)
                raise
            yield chunk

    def close(self):
        try:
            self._body.close()
        except BaseException:
            _record("close", self._path)
            raise


def application(environ, start_response):
    path = environ.get("PATH_INFO", "?")
    try:
        body = _validated(environ, start_response)
    except BaseException:
        _record("call", path)
        raise
    return _RecordedBody(body, path)

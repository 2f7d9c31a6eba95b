"""The benchmark app: ``Hello, NAME!`` with NAME from the ``name`` query parameter.

Byte for byte the same answers as apps/hello.ts. The query is decoded like
urllib.parse.parse_qsl on the raw bytes ("+" is a space, bad escapes stay as
typed), then as UTF-8 with U+FFFD for invalid sequences. The first ``name``
wins; an empty value counts as absent.
"""
from urllib.parse import parse_qsl

DEFAULT_BODY = b"Hello, World!"


def _find_name(query):
    # PEP 3333: environ strings carry the raw bytes as latin-1.
    for key, value in parse_qsl(query, keep_blank_values=True, encoding="latin-1"):
        if key.encode("latin-1").decode("utf-8", "replace") == "name":
            return value.encode("latin-1").decode("utf-8", "replace")
    return ""


def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    name = _find_name(query) if query else ""
    body = ("Hello, %s!" % name).encode("utf-8") if name else DEFAULT_BODY
    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return [body]

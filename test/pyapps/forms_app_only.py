"""Defines only `app`: the default lookup falls back to it."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8")])
    return [b"only app"]

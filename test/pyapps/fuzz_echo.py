"""For test/fuzz-server.test.ts: reads the whole wsgi.input, whatever the method, and
answers "PATH LENGTH SHA256HEX" for what it read, so the client can check that the body
it sent arrived whole, and that each answer belongs to its own request."""

import hashlib


def app(environ, start_response):
    digest = hashlib.sha256()
    length = 0
    stream = environ["wsgi.input"]
    for chunk in iter(lambda: stream.read(65536), b""):
        length += len(chunk)
        digest.update(chunk)
    body = ("%s %d %s" % (environ["PATH_INFO"], length, digest.hexdigest())).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

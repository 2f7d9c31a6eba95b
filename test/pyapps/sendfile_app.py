# X-Accel-Redirect / X-Sendfile from a Python app (test/static.test.ts).
import os

SEEN = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    SEEN.append(path)
    if path == "/accel":
        start_response("200 OK", [("Content-Type", "application/pdf"), ("Content-Disposition", "attachment"), ("X-Accel-Redirect", "/_protected/report.pdf")])
        return [b"dropped"]
    if path == "/accel-stream":
        start_response("200 OK", [("Content-Type", "application/pdf"), ("X-Accel-Redirect", "/_protected/report.pdf")])
        return (b"chunk %d" % i for i in range(3))
    if path == "/accel-403":
        start_response("403 Forbidden", [("X-Accel-Redirect", "/_protected/report.pdf")])
        return [b""]
    if path == "/xsendfile":
        start_response("200 OK", [("X-Sendfile", os.path.join(os.environ["SENDFILE_DIR"], "report.pdf"))])
        return [b""]
    body = " ".join(SEEN).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

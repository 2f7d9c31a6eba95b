# A hello app whose import takes BOOT_SLEEP seconds: while it boots, no worker is ready (test/health.test.ts).
import os
import time

time.sleep(float(os.environ.get("BOOT_SLEEP", "0")))


def app(environ, start_response):
    body = ("%s %d" % (environ["PATH_INFO"], os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

# A hello app whose import takes BOOT_SLEEP seconds: while it boots, no worker is ready (test/health.test.ts).
# With BOOT_FAIL set, the import then fails (test/python.test.ts: requests waiting for a boot that fails).
import os
import time

time.sleep(float(os.environ.get("BOOT_SLEEP", "0")))
if os.environ.get("BOOT_FAIL"):
    raise RuntimeError("slow-boot-failure-marker")


def app(environ, start_response):
    body = ("%s %d" % (environ["PATH_INFO"], os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

"""A worker for bench/floor.ts that answers every request without running Python for it.

bunicorn starts it in place of worker.py (bench/null-python is the --python it is given).
It boots as worker.py does (worker.py's own code: channels, READY, the control thread),
then, instead of worker.py's serve loop, answers each REQ frame with the RESPONSE frame
worker.py would send for apps/bench_apps.py:hello: no environ, no app, no start_response,
and one send for all the answers of one read. What is left of a request is what the front
and the channel cost: the floor under any speed-up of the Python side.
"""
import sys

HEAD = b"200 OK\0Content-Type\0text/plain\0Content-Length\x0013"
BODY = b"Hello, World!"


def serve_null(w, self):
    """In place of Worker.serve_inline; w is worker.py's namespace (its frame constants)."""
    HEADER, HEADER_SIZE, HEADER_U32 = w["HEADER"], w["HEADER_SIZE"], w["HEADER_U32"]
    REQ, STOP, STARTED, RESPONSE, ACK_START = w["REQ"], w["STOP"], w["STARTED"], w["RESPONSE"], w["FLAG_ACK_START"]
    answer_tail = HEAD + BODY
    sock = self.sock
    pending = b""
    stopping = False
    while not stopping:
        data = sock.recv(1 << 18)
        if not data:
            return
        pending += data
        out = []
        off = 0
        while len(pending) - off >= HEADER_SIZE:
            length, kind, rid = HEADER.unpack_from(pending, off)
            if len(pending) - off - HEADER_SIZE < length:
                break
            if kind == REQ:
                if pending[off + HEADER_SIZE] & ACK_START:
                    out.append(HEADER.pack(0, STARTED, rid))
                out.append(HEADER_U32.pack(4 + len(answer_tail), RESPONSE, rid, len(HEAD)) + answer_tail)
            elif kind == STOP:
                stopping = True  # the front's graceful stop: nothing is left running once these answers are out
            off += HEADER_SIZE + length
        pending = pending[off:]
        if out:
            sock.sendall(b"".join(out))


def main():
    # worker.py arrives on stdin, as it does for the real bootstrap (bridge.ts pythonRole).
    source = sys.stdin.buffer.read()
    namespace = {"__name__": "bunicorn_worker"}
    exec(compile(source, "bunicorn.py", "exec"), namespace)
    namespace["Worker"].serve_inline = lambda self: serve_null(namespace, self)
    sys.argv = ["bunicorn.py", "bunicorn-worker"]
    namespace["main"]()


if __name__ == "__main__":
    main()

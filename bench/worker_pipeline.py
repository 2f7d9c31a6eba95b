"""Micro-benchmark of worker.py's share of a request: REQ frame → environ → app → RESPONSE
frame, no front. A socketpair stands in for the data channel: this script writes batches
of REQ frames (as the front frames GET /hello) into one end and reads the answers from the
other, while worker.py's own serve loop runs in a forked child. Prints µs per request (wall
time of the batch, which is CPU time here: both ends are busy). Compare runs on the same
machine only (bench/bridge_pipeline.ts is the front's share).

    python bench/worker_pipeline.py [requests] [batch]
"""
import os
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "apps"))
import worker  # noqa: E402
import bench_apps  # noqa: E402

requests = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 25

FIELDS = {
    "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "QUERY_STRING": "", "RAW_URI": "/hello",
    "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "55555", "HTTP_HOST": "127.0.0.1:8000",
    "wsgi.url_scheme": "http", "bunicorn.peer_addr": "127.0.0.1",
}


def req_frame(rid, flags):
    path = b"/hello"
    fields = "\0".join(x for kv in FIELDS.items() for x in kv).encode("latin-1")
    payload = bytes([flags]) + struct.pack("!I", len(path)) + path + struct.pack("!I", len(fields)) + fields
    return worker.HEADER.pack(len(payload), worker.REQ, rid) + payload


front, ours = socket.socketpair()
control_front, control_ours = socket.socketpair()
child = os.fork()
if child == 0:
    front.close()
    w = worker.Worker(ours, control_ours, bench_apps.hello, 1, True)
    threading.Thread(target=w.serve_control, daemon=True).start()
    w.serve_inline()
    os._exit(0)
ours.close()


def worker_cpu_s():
    with open("/proc/%d/stat" % child) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_answers(n):
    """Reads until n RESPONSE frames have arrived (STARTED frames are skipped)."""
    buf = b""
    seen = 0
    while seen < n:
        buf += front.recv(1 << 20)
        off = 0
        while len(buf) - off >= worker.HEADER_SIZE:
            plen, typ, rid = worker.HEADER.unpack_from(buf, off)
            if len(buf) - off - worker.HEADER_SIZE < plen:
                break
            off += worker.HEADER_SIZE + plen
            if typ == worker.RESPONSE:
                seen += 1
        buf = buf[off:]


# The first request of a batch starts at once; the rest wait behind it (ACK_START), as the front sends them.
batch_bytes = b"".join(req_frame(i + 1, 0 if i == 0 else worker.FLAG_ACK_START) for i in range(batch))
for round_no in range(3):
    t0 = time.perf_counter()
    cpu0 = worker_cpu_s()
    done = 0
    while done < requests:
        front.sendall(batch_bytes)
        read_answers(batch)
        done += batch
    wall = time.perf_counter() - t0
    cpu = worker_cpu_s() - cpu0
    print("round %d: %.2f µs/request wall, %.2f µs/request worker CPU" % (round_no + 1, wall / done * 1e6, cpu / done * 1e6))
front.close()  # EOF: the worker exits
os.waitpid(child, 0)

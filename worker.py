"""bunicorn Python worker: runs a WSGI app (PEP 3333) for the Bun front.

The front runs this program with `python -c` (its source on stdin, so no file is
written) with two socketpairs as fd 3 and fd 4, whose other ends only the front holds:
fd 3 is the data channel (requests, bodies, responses, credit, in order), fd 4 the
control channel (CANCEL and ABORT of requests not started, and their answers), read
by a thread of its own so that a request waiting behind a slow one can be taken back
while the app runs. This process imports the app (BUNICORN_APP), sends READY and then
serves requests that arrive as frames. Every frame, in both directions, is a 9-byte header `!IBI`
(payload length, type, request id) followed by the payload. Strings on the wire
are latin-1 (PEP 3333 "bytes as native strings"); "fields" are strings joined
with NUL. A REQ payload is: u8 flags, u32 length + PATH_INFO, u32 length + the
other environ items as fields, then (BODY_INLINE) the whole body as the rest.

Sections:
  1. Constants and frame layouts
  2. Loading the app
  3. wsgi.input (inline and pulled bodies) and wsgi.file_wrapper
  4. Request state and start_response
  5. The worker: frame reading, dispatch, running the app, flow control
  6. Config files and server hooks (the config reader, and the master helper)
  7. Main

The same program has three roles, chosen by its first argument: bunicorn-worker (the
default), bunicorn-config (reads a gunicorn config file once and prints its settings as
JSON) and bunicorn-master (a long-lived process that runs the config file's master hooks,
so module state persists between them as it does in gunicorn's master).

Threading: with BUNICORN_THREADS == 1 the app runs on the thread that reads the
socket; whenever the app needs something from the front (body bytes, ACK
credit) that same thread reads frames until the answer arrives. With T > 1 the
main thread only reads and routes frames, T pool threads run requests in FIFO
order. In both modes the control thread takes back requests that have not started,
and writes on the data channel too: writes there are serialized by a lock. A request
is marked started under the lock that a take-back holds, so it is either started or
taken back, never both; the answer to a take-back goes on the data channel, after
whatever the worker already said of that request.

Standard library only; Python >= 3.9.
"""

import ast
import collections
import importlib
import importlib.machinery
import importlib.util
import io
import json
import os
import queue
import signal
import socket
import stat
import struct
import sys
import threading
import time
import traceback

# ==== 1. Constants and frame layouts ====

# Front -> worker frame types.
REQ, BODY, BODY_EOF, CANCEL, ABORT, ACK, STOP, QUIT = 1, 2, 3, 4, 5, 6, 7, 8
# Worker -> front frame types.
READY, BOOT_ERROR, START, DATA, END, RESPONSE, ERROR, PULL, STARTED, CANCELLED, SENDFILE, LOG_ENVIRON = range(20, 32)
# LOG_ENVIRON: just before a request's final frame (END, RESPONSE, ERROR), and only when
# BUNICORN_LOG_ENVIRON names keys (the access log's {var}e atoms): a JSON object (UTF-8) of
# those keys, lowercased as gunicorn matches them, to str() of the environ's values as the
# app left them; a key the environ lacks is left out (the log shows '-').

# REQ flags.
FLAG_BODY_INLINE = 1
FLAG_BODY_STREAM = 2
FLAG_CHUNKED = 4
FLAG_ACK_START = 8

DATA_FD, CONTROL_FD = 3, 4

HEADER = struct.Struct("!IBI")          # payload length, type, request id
HEADER_SIZE = HEADER.size               # 9
HEADER_U32 = struct.Struct("!IBII")     # header followed by one u32 (PULL, RESPONSE head length)
U32 = struct.Struct("!I")
SENDFILE_RANGE = struct.Struct("!QQ")   # big-endian u64 == (hi u32, lo u32)
SENDFILE_TO_END = 0xFFFFFFFFFFFFFFFF

WINDOW_BYTES = 1 << 20                  # un-ACKed DATA bytes allowed per request
MIN_SEND_BYTES = 64 * 1024              # wait for at least this much credit before sending a piece
PULL_MIN_BYTES = 256 * 1024             # smallest body request sent to the front
PULL_MAX_BYTES = 16 * 1024 * 1024       # largest body request (read(n) with a huge n)
READ_ALL_PULL_BYTES = 1024 * 1024       # PULL size while read() drains the whole body
RESPONSE_MAX_BODY_BYTES = WINDOW_BYTES  # bigger list bodies go out as DATA under flow control
SENDMSG_MIN_BYTES = 64 * 1024           # above this, header and body go out without concatenation
RECV_BUFFER_BYTES = 256 * 1024
CONTROL_RECV_BYTES = 4096
MAX_TAKEN_BACK = 4096                   # take-backs remembered for requests not read yet (or done)
# Signals the front handles: one sent to the whole process group (systemd's KillMode,
# Ctrl-C in a terminal, `timeout`) must act as if sent to the front alone, which tells
# the workers what to do over the data channel.
FRONT_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTTIN", "SIGTTOU", "SIGWINCH")
POLL_AFTER_S = 0.001                    # T == 1: peek at the socket between app steps after this long
PPID_CHECK_S = 1.0


# Each line of an error this program reports itself (not the app's output) starts with this
# on stderr: the front logs those at ERROR, and the app's own stderr lines at INFO.
REPORT_MARK = "\x1e"


def report_error(text):
    sys.stderr.write("".join(REPORT_MARK + line for line in text.splitlines(True)))
    sys.stderr.flush()


# A line a hook logs through server.log or worker.log: this mark, one letter for the level
# (D, I, W, E, C), then the message. The front logs it at that level, untagged.
LOG_MARK = "\x1d"


class ClientDisconnected(OSError):
    """Raised into the app (write(), wsgi.input) after the front sent ABORT."""


class AppLoadError(Exception):
    pass


# ==== 2. Loading the app ====

def prepare_sys_path(env):
    """BUNICORN_CHDIR (or the current directory) first on sys.path, then BUNICORN_PYTHONPATH."""
    # sys.path[0] is where this program came from: worker.py's directory, or "" when the
    # front runs it with `python -c`. Neither is the app's (its directory goes first below).
    script_file = globals().get("__file__")
    script_dir = os.path.dirname(os.path.abspath(script_file)) if script_file else ""
    if sys.path and sys.path[0] == script_dir:
        del sys.path[0]
    chdir = env.get("BUNICORN_CHDIR")
    if chdir:
        os.chdir(chdir)
    front = [os.getcwd()]
    for p in (env.get("BUNICORN_PYTHONPATH") or "").split(os.pathsep):
        if p:
            front.append(os.path.abspath(p))
    for p in front:
        while p in sys.path:
            sys.path.remove(p)
    sys.path[0:0] = front


def _import_target(target):
    """Import `module` or `path/to/file.py`; return the module."""
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise AppLoadError("app file not found: %s" % path)
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = os.path.splitext(os.path.basename(path))[0]
        if not name.isidentifier() or name in sys.modules:
            name = "__bunicorn_app__"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(target)


def _resolve_dotted(module, node, text):
    """Name or attribute chain (`app`, `api.wsgi_app`) evaluated against the module."""
    if isinstance(node, ast.Name):
        try:
            return getattr(module, node.id)
        except AttributeError:
            raise AppLoadError("failed to find attribute %r in %r" % (node.id, module.__name__)) from None
    if isinstance(node, ast.Attribute):
        return getattr(_resolve_dotted(module, node.value, text), node.attr)
    raise AppLoadError("failed to parse %r as an attribute name or function call" % text)


def load_app(spec):
    """`module:callable`, `path/file.py:callable` or `module:factory(literal args)` (like gunicorn)."""
    target, sep, obj = spec.partition(":")
    if not target:
        raise AppLoadError("empty app module in %r" % spec)
    module = _import_target(target)
    if not sep or not obj.strip():
        for name in ("application", "app"):
            app = getattr(module, name, None)
            if app is not None:
                break
        else:
            raise AppLoadError("failed to find 'application' or 'app' in %r" % target)
    else:
        text = obj.strip()
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            raise AppLoadError("failed to parse %r as an attribute name or function call" % text) from None
        if isinstance(node, ast.Call):
            try:
                args = [ast.literal_eval(a) for a in node.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            except ValueError:
                raise AppLoadError("factory arguments must be literals: %r" % text) from None
            factory = _resolve_dotted(module, node.func, text)
            app = factory(*args, **kwargs)
        else:
            app = _resolve_dotted(module, node, text)
    if not callable(app):
        raise AppLoadError("application object %r is not callable" % (spec,))
    return app


# ==== 3. wsgi.input and wsgi.file_wrapper ====

class PulledInput:
    """wsgi.input for BODY_STREAM: bytes are PULLed from the front as the app reads.

    Each PULL asks for at least PULL_MIN_BYTES, so small reads are served from what is
    held here and a round trip to the front carries a large piece. At most what the app
    asked for plus one PULL answer is held in memory. The held bytes are one bytes object
    and an offset, so a read copies only what it returns.
    """

    __slots__ = ("_worker", "_req", "_data", "_pos", "_eof")

    def __init__(self, worker, req):
        self._worker = worker
        self._req = req
        self._data = b""
        self._pos = 0
        self._eof = False

    def _held(self):
        return len(self._data) - self._pos

    def _fill(self, want):
        """Ask the front for up to `want` more bytes; False once the body is complete."""
        if self._eof:
            return False
        req = self._req
        if req.aborted:
            raise ClientDisconnected("client disconnected while the request body was read")
        want = min(max(want, PULL_MIN_BYTES), PULL_MAX_BYTES)
        req.pulling = True
        self._worker.send(HEADER_U32.pack(4, PULL, req.rid, want))
        self._worker.wait(req, _pull_answered)
        if req.aborted:
            raise ClientDisconnected("client disconnected while the request body was read")
        chunks = req.body_chunks
        if chunks:
            rest = self._data[self._pos:] if self._pos < len(self._data) else b""
            self._data = rest + b"".join(chunks) if rest else b"".join(chunks)
            self._pos = 0
            chunks.clear()
        if req.body_eof:
            self._eof = True
        return True

    def _take(self, n):
        pos = self._pos
        n = min(n, len(self._data) - pos)
        if pos == 0 and n == len(self._data):
            data = self._data
        else:
            data = self._data[pos:pos + n]
        self._pos = pos + n
        if self._pos == len(self._data):
            self._data = b""
            self._pos = 0
        return data

    def read(self, size=-1):
        if size is None or size < 0:
            while self._fill(READ_ALL_PULL_BYTES):
                pass
            return self._take(self._held())
        while self._held() < size and self._fill(size - self._held()):
            pass
        return self._take(size)

    def readline(self, size=-1):
        if size is None:
            size = -1
        scan = self._pos
        while True:
            data = self._data
            i = data.find(b"\n", scan)
            if i >= 0:
                n = i + 1 - self._pos
                break
            if 0 <= size <= self._held():
                n = size
                break
            scan_from_end = len(data) - self._pos
            if not self._fill(size - scan_from_end if size >= 0 else PULL_MIN_BYTES):
                n = self._held()
                break
            scan = self._pos + scan_from_end  # _fill moved the held bytes to offset 0
        if 0 <= size < n:
            n = size
        return self._take(n)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self):
        pass


def _pull_answered(req):
    return not req.pulling or req.aborted


def _has_credit(req):
    return req.aborted or WINDOW_BYTES - (req.sent - req.acked) >= req.need


class FileWrapper:
    """wsgi.file_wrapper (PEP 3333, optional platform-specific file handling)."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def _declared_content_length(headers):
    for name, value in headers:
        if name.lower() == "content-length":
            value = value.strip()
            if value.isdigit() and value.isascii():
                return int(value)
            return None
    return None


def find_sendfile_target(filelike, headers):
    """(path bytes, offset, length) when `filelike` is a regular file reachable by path, else None."""
    if isinstance(filelike, io.TextIOBase):
        return None
    try:
        fd = filelike.fileno()
        st = os.fstat(fd)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    name = getattr(filelike, "name", None)
    if not isinstance(name, (str, bytes)):
        try:
            name = os.readlink("/proc/self/fd/%d" % fd)
        except OSError:
            return None
    try:
        path = os.path.abspath(name)
        on_disk = os.stat(path)
    except (OSError, ValueError):
        return None
    if (on_disk.st_dev, on_disk.st_ino) != (st.st_dev, st.st_ino):
        return None  # renamed, replaced, or opened relative to another directory
    try:
        offset = filelike.tell() if hasattr(filelike, "tell") else os.lseek(fd, 0, os.SEEK_CUR)
    except (OSError, ValueError):
        return None
    length = SENDFILE_TO_END
    declared = _declared_content_length(headers)
    if declared is not None:
        length = max(0, min(declared, st.st_size - offset))
    return os.fsencode(path), offset, length


# ==== 4. Request state and start_response ====

class Request:
    __slots__ = (
        "worker", "rid", "flags", "environ",
        "started", "cancelled", "aborted",
        "head", "headers", "head_sent", "used_write",
        "pulling", "body_chunks", "body_eof",
        "sent", "acked", "need", "cond",
    )

    def __init__(self, worker, rid, flags, environ):
        self.worker = worker
        self.rid = rid
        self.flags = flags
        self.environ = environ
        self.started = False
        self.cancelled = False
        self.aborted = False
        self.head = None          # encoded START fields, set by start_response
        self.headers = None
        self.head_sent = False
        self.used_write = False
        self.pulling = False
        self.body_chunks = []
        self.body_eof = False
        self.sent = 0             # DATA bytes sent (only the app's thread writes this)
        self.acked = 0            # DATA bytes ACKed (only the reader writes this)
        self.need = 0
        self.cond = None

    # PEP 3333, "The start_response() Callable"
    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.head is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if type(status) is not str:
            raise TypeError("status must be a str, got %r" % (status,))
        if len(status) < 4 or status[3] != " " or not (status[:3].isdigit() and status[:3].isascii()):
            raise ValueError("status must look like '200 OK', got %r" % (status,))
        if type(headers) is not list:
            raise TypeError("headers must be a list, got %r" % (type(headers).__name__,))
        parts = [status]
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise TypeError("each header must be a (name, value) tuple, got %r" % (item,))
            name, value = item
            if type(name) is not str or type(value) is not str:
                raise TypeError("header names and values must be str, got %r" % (item,))
            parts.append(name)
            parts.append(value)
        joined = "\0".join(parts)
        # NUL would break the frame; CR/LF would allow response splitting.
        if joined.count("\0") != 2 * len(headers) or "\r" in joined or "\n" in joined:
            raise ValueError("control character in status or header: %r" % (parts,))
        self.head = joined.encode("latin-1")
        self.headers = headers
        return self.write

    def write(self, data):
        """The legacy write() callable: sends START if needed, then DATA."""
        if self.head is None:
            raise AssertionError("write() called before start_response()")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("write() takes bytes, got %r" % (type(data).__name__,))
        if self.aborted:
            raise ClientDisconnected("client disconnected")
        self.used_write = True
        worker = self.worker
        if not self.head_sent:
            worker.send_start(self)
        if data:
            worker.send_data(self, data)


# ==== 5. The worker ====

class Worker:
    def __init__(self, sock, control, app, threads, multiprocess):
        self.sock = sock
        self.control = control
        self.taken_back = {}      # rid -> answer, for a CANCEL/ABORT that came before its REQ
        self.tail = b""           # T == 1: the last request's final frame, sent with the next STARTED
        self.app = app
        self.threads = threads
        self.reqs = {}
        self.pending = collections.deque()
        self.stopping = False
        self.inflight = 0
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.rbuf = bytearray(RECV_BUFFER_BYTES)
        self.rview = memoryview(self.rbuf)
        self.rstart = 0
        self.rend = 0
        self.last_recv = time.monotonic()
        self.base_environ = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": False,
            "wsgi.file_wrapper": FileWrapper,
        }
        self.queue = queue.SimpleQueue()
        self.send = self._send_locked  # the control thread writes on the data channel too
        self.wait = self._wait_inline if threads == 1 else self._wait_threaded

    # -- writing --

    def _send_locked(self, data):
        try:
            with self.write_lock:
                self.sock.sendall(data)
        except OSError:
            self.die()

    def send_frame(self, typ, rid, payload=b""):
        n = len(payload)
        if n < SENDMSG_MIN_BYTES:
            self.send(HEADER.pack(n, typ, rid) + payload)
        else:
            self.send_two(HEADER.pack(n, typ, rid), payload)

    def send_two(self, head, body):
        """One frame as two buffers, without copying the body."""
        total = len(head) + len(body)
        try:
            self.write_lock.acquire()
            try:
                sent = self.sock.sendmsg([head, body])
                if sent < total:
                    if sent < len(head):
                        self.sock.sendall(head[sent:])
                        sent = len(head)
                    self.sock.sendall(memoryview(body)[sent - len(head):])
            finally:
                self.write_lock.release()
        except OSError:
            self.die()

    def send_start(self, req):
        if req.head is None:
            raise AssertionError("the app produced a body before calling start_response()")
        self.send_frame(START, req.rid, req.head)
        req.head_sent = True

    def send_data(self, req, data):
        """DATA frames under the per-request window; blocks (reading frames) for ACK credit."""
        n = len(data)
        off = 0
        view = None
        while off < n:
            if req.aborted:
                raise ClientDisconnected("client disconnected")
            credit = WINDOW_BYTES - (req.sent - req.acked)
            left = n - off
            if credit < left and credit < MIN_SEND_BYTES:
                req.need = min(left, MIN_SEND_BYTES)
                self.wait(req, _has_credit)
                continue
            take = left if left <= credit else credit
            if off == 0 and take == n:
                piece = data
            else:
                if view is None:
                    view = memoryview(data)
                piece = view[off:off + take]
            req.sent += take
            if take < SENDMSG_MIN_BYTES:
                self.send(HEADER.pack(take, DATA, req.rid) + bytes(piece))
            else:
                self.send_two(HEADER.pack(take, DATA, req.rid), piece)
            off += take

    def send_error(self, req, text):
        self.send_frame(ERROR, req.rid, text.encode("utf-8", "replace"))

    def die(self):
        """The front is gone (EOF or a failed write): nobody is left to answer."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(0)

    # -- reading --

    def recv(self, block=True):
        """Read once from the socket and dispatch every complete frame. False on EOF."""
        buf = self.rbuf
        start, end = self.rstart, self.rend
        try:
            n = self.sock.recv_into(self.rview[end:], 0, 0 if block else socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            n = 0
        if n == 0:
            return False
        self.last_recv = time.monotonic()
        end += n
        view = self.rview
        dispatch = self.dispatch
        while end - start >= HEADER_SIZE:
            plen, typ, rid = HEADER.unpack_from(buf, start)
            stop = start + HEADER_SIZE + plen
            if stop > end:
                break
            payload = view[start + HEADER_SIZE:stop].tobytes()
            start = stop
            self.rstart, self.rend = start, end
            dispatch(typ, rid, payload)
        if start == end:
            self.rstart = self.rend = 0
        else:
            self.rstart, self.rend = start, end
            self._make_room()
        return True

    def _make_room(self):
        """Ensure the partial frame at rstart fits in the buffer after it (so recv_into has room)."""
        start, end = self.rstart, self.rend
        size = len(self.rbuf)
        if end - start >= HEADER_SIZE:
            frame_size = HEADER_SIZE + HEADER.unpack_from(self.rbuf, start)[0]
        else:
            frame_size = HEADER_SIZE
        if start + frame_size <= size:
            return
        if frame_size <= size:
            self.rbuf[0:end - start] = self.rview[start:end].tobytes()  # may overlap: copy first
        else:
            new = bytearray(max(frame_size, size * 2))
            new[0:end - start] = self.rview[start:end]
            self.rview.release()
            self.rbuf = new
            self.rview = memoryview(new)
        self.rstart, self.rend = 0, end - start

    def poll(self):
        """T == 1: handle frames already waiting (CANCEL, ABORT, ACK) without blocking."""
        if time.monotonic() - self.last_recv >= POLL_AFTER_S:
            if not self.recv(block=False):
                self.die()

    def _wait_inline(self, req, predicate):
        while not predicate(req):
            if not self.recv(block=True):
                self.die()

    def _wait_threaded(self, req, predicate):
        with self.lock:
            while not predicate(req):
                if req.cond is None:
                    req.cond = threading.Condition(self.lock)
                req.cond.wait()

    # -- dispatch (the reading thread) --

    def dispatch(self, typ, rid, payload):
        if typ == REQ:
            self.on_req(rid, payload)
            return
        if typ == STOP:
            with self.lock:
                self.stopping = True
            return
        with self.lock:
            req = self.reqs.get(rid)
            if req is None:
                return  # a late frame for a finished, cancelled or unknown request
            if typ == ACK:
                req.acked += U32.unpack_from(payload)[0]
            elif typ == BODY:
                if req.pulling:
                    req.body_chunks.append(payload)
                    req.pulling = False
            elif typ == BODY_EOF:
                req.body_eof = True
                req.pulling = False
            elif typ == CANCEL or typ == ABORT:
                answer = self._take_back(req, typ)
                if answer is not None:
                    self.send_frame(answer, rid)
                return
            else:
                return
            if req.cond is not None:
                req.cond.notify_all()

    def _take_back(self, req, typ):
        """CANCEL or ABORT of a known request (lock held): the frame to answer, if any.

        One that has not started is dropped: CANCELLED (the front re-sends it elsewhere)
        or END (ABORT: its client is gone). A started one only learns of an ABORT."""
        if typ == ABORT:
            req.aborted = True
        if not req.started:
            self._drop(req)
            return CANCELLED if typ == CANCEL else END
        if req.cond is not None:
            req.cond.notify_all()
        return None

    # -- the control channel (its own thread) --

    def serve_control(self):
        """Take back requests that have not started, even while the app runs on the data thread."""
        buf = b""
        while True:
            try:
                chunk = self.control.recv(CONTROL_RECV_BYTES)
            except OSError:
                chunk = b""
            if not chunk:
                return  # the front is gone: the data channel tells the other threads
            buf += chunk
            while len(buf) >= HEADER_SIZE:
                plen, typ, rid = HEADER.unpack_from(buf)
                if len(buf) < HEADER_SIZE + plen:
                    break
                buf = buf[HEADER_SIZE + plen:]
                if typ == CANCEL or typ == ABORT:
                    self.on_control(typ, rid)
                elif typ == QUIT:
                    self.quit_now()

    def quit_now(self):
        """The front's quick stop (SIGINT, SIGQUIT): worker_int (gunicorn's), then exit at once."""
        hooks = getattr(self, "hooks", None)
        if hooks is not None:
            hooks.call("worker_int", hooks.worker)
        self.die()

    def on_control(self, typ, rid):
        with self.lock:
            req = self.reqs.get(rid)
            if req is None:
                # Not read yet: it waits in the data channel (behind a running app, with T == 1).
                # Or already done: then the answer below comes after its end and is ignored.
                self.taken_back[rid] = True
                if len(self.taken_back) > MAX_TAKEN_BACK:
                    del self.taken_back[next(iter(self.taken_back))]
                answer = CANCELLED if typ == CANCEL else END
            else:
                answer = self._take_back(req, typ)
        if answer is not None:
            self.send_frame(answer, rid)

    def _drop(self, req):
        """Forget a request that never started (lock held)."""
        req.cancelled = True
        del self.reqs[req.rid]
        self.inflight -= 1
        if self.threads == 1:
            try:
                self.pending.remove(req)
            except ValueError:
                pass

    def on_req(self, rid, p):
        # u8 flags, u32 + PATH_INFO (may hold NUL), u32 + fields k\0v\0..., then the inline body (rest).
        flags = p[0]
        path_end = 5 + U32.unpack_from(p, 1)[0]
        fields_end = path_end + 4 + U32.unpack_from(p, path_end)[0]
        environ = self.base_environ.copy()
        if fields_end > path_end + 4:
            it = iter(p[path_end + 4:fields_end].decode("latin-1").split("\0"))
            environ.update(zip(it, it))
        environ["PATH_INFO"] = p[5:path_end].decode("latin-1")
        if flags & FLAG_BODY_INLINE:
            environ["wsgi.input"] = io.BytesIO(p[fields_end:])
        req = Request(self, rid, flags, environ)
        if flags & FLAG_BODY_STREAM:
            environ["wsgi.input"] = PulledInput(self, req)
        elif not flags & FLAG_BODY_INLINE:
            environ["wsgi.input"] = io.BytesIO(b"")
        if flags & FLAG_CHUNKED:
            environ["wsgi.input_terminated"] = True
        with self.lock:
            if self.taken_back.pop(rid, None) is not None:
                return  # taken back (and answered) over the control channel before it was read
            self.reqs[rid] = req
            self.inflight += 1
            if self.threads == 1:
                self.pending.append(req)
        if self.threads > 1:
            self.queue.put(req)

    # -- running the app --

    def run_request(self, req):
        result = None
        error = None
        try:
            result = self.app(req.environ, req.start_response)
            t = type(result)
            if (t is list or t is tuple) and not req.used_write:
                if req.head is None:
                    raise AssertionError("the app returned without calling start_response()")
                body = b"".join(result)
                if len(body) <= RESPONSE_MAX_BODY_BYTES:
                    if req.aborted:
                        self.send_last(req, HEADER.pack(0, END, req.rid))  # after ABORT only END/ERROR are wanted
                    else:
                        self._send_response(req, body)
                    return
                result = (body,)
            self._stream(req, result)
        except Exception:
            error = traceback.format_exc()
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                close_error = traceback.format_exc()
                if error is None and not req.head_sent:
                    error = close_error
                else:
                    # The front never hears of this one: report it here.
                    report_error("close() of the app's iterable raised:\n" + close_error)
        if req.aborted or error is None:
            self.send_last(req, HEADER.pack(0, END, req.rid))
        else:
            self.send_error(req, error)

    def send_last(self, req, frame):
        """A request's final frame (small). T == 1: held, to go out in one write with the
        next request's STARTED (or alone, before this thread waits for anything)."""
        if self.threads == 1:
            self.tail += frame
        else:
            self.send(frame)

    def send_last_two(self, req, head, body):
        """A final RESPONSE too big to hold: now, as two buffers."""
        self.send_two(head, body)

    def flush_tail(self):
        if self.tail:
            tail, self.tail = self.tail, b""
            self.send(tail)

    def _send_response(self, req, body):
        head = req.head
        hl = len(head)
        bl = len(body)
        req.sent = bl  # (no DATA follows a RESPONSE: this only tells post_request what was sent)
        framed = HEADER_U32.pack(4 + hl + bl, RESPONSE, req.rid, hl)
        if bl < SENDMSG_MIN_BYTES:
            self.send_last(req, b"".join((framed, head, body)))
        else:
            self.send_last_two(req, framed + head, body)
        req.head_sent = True

    def _stream(self, req, result):
        if type(result) is FileWrapper and not req.used_write:
            target = find_sendfile_target(result.filelike, req.headers or ())
            if target is not None and req.head is not None:
                path, offset, length = target
                self.send_start(req)
                self.send_frame(SENDFILE, req.rid, SENDFILE_RANGE.pack(offset, length) + path)
                return
        inline = self.threads == 1
        for chunk in result:
            if inline:
                self.poll()
            if req.aborted:
                return
            if type(chunk) is not bytes and not isinstance(chunk, (bytearray, memoryview)):
                raise TypeError("the app must yield bytes, got %r" % (type(chunk).__name__,))
            if not chunk:
                continue
            if not req.head_sent:
                self.send_start(req)
            self.send_data(req, chunk)
        if not req.head_sent and not req.aborted:
            self.send_start(req)

    # -- loops --

    def serve_inline(self):
        """T == 1: read frames and run queued requests on this thread."""
        pending = self.pending
        lock = self.lock
        finished = None
        while True:
            if pending:
                self.poll()  # an ABORT may wait unread
            # One locked step per request: forget the one just run, start the next (a take-back
            # on the control thread holds the same lock, so a request is started or taken back).
            with lock:
                if finished is not None:
                    del self.reqs[finished.rid]
                    self.inflight -= 1
                    finished = None
                req = pending.popleft() if pending else None
                if req is not None:
                    req.started = True
            if req is not None:
                out = self.tail
                if req.flags & FLAG_ACK_START:
                    out += HEADER.pack(0, STARTED, req.rid)
                if out:
                    self.tail = b""
                    self.send(out)
                try:
                    self.run_request(req)
                finally:
                    finished = req
                continue
            self.flush_tail()
            if self.stopping:
                return
            # Sleep in recv, no busy-polling for the next request: where the front and the
            # workers share few cores, a spin takes CPU the front needs. Measured on 2 cores
            # with a 50 µs spin: 2 µs more worker CPU per request, 5% fewer requests per
            # second at 50 connections and 30% fewer at 4; only a lone client gained (p50
            # 86 µs against 121 µs).
            if not self.recv(block=True):
                self.die()

    def serve_threaded(self):
        """T > 1: this thread routes frames; a pool of threads runs requests."""
        for i in range(self.threads):
            threading.Thread(target=self._pool_thread, name="bunicorn-%d" % i, daemon=True).start()
        while True:
            with self.lock:
                if self.stopping and self.inflight == 0:
                    return
            if not self.recv(block=True):
                with self.lock:
                    if self.stopping and self.inflight == 0:
                        return
                self.die()

    def _pool_thread(self):
        while True:
            req = self.queue.get()
            with self.lock:
                if req.cancelled:
                    continue
                req.started = True
            if req.flags & FLAG_ACK_START:
                self.send_frame(STARTED, req.rid)
            try:
                self.run_request(req)
            except BaseException:
                report_error(traceback.format_exc())
                self.die()
            with self.lock:
                self.reqs.pop(req.rid, None)
                self.inflight -= 1
                wake = self.stopping and self.inflight == 0
            if wake:
                try:
                    self.sock.shutdown(socket.SHUT_RD)  # the reader's recv returns EOF
                except OSError:
                    pass


class HookedWorker(Worker):
    """A worker whose config file defines pre_request or post_request: run around each
    request with gunicorn's arguments. A subclass, so the plain worker pays nothing."""

    def run_request(self, req):
        hooks = self.hooks
        view = None
        if hooks.pre_request is not None:
            view = RequestView(req.environ)
            try:
                hooks.pre_request(hooks.worker, view)
            except Exception:
                # gunicorn: an exception in pre_request fails the request (500).
                self.send_error(req, traceback.format_exc())
                return
        Worker.run_request(self, req)
        if hooks.post_request is not None:
            try:
                hooks.post_request(hooks.worker, view or RequestView(req.environ), req.environ, ResponseView(req))
            except Exception:
                report_error("post_request hook raised:\n" + traceback.format_exc())


class ReportingWorker(Worker):
    """A worker whose requests end with LOG_ENVIRON before their final frame: the access
    log format names environ keys ({var}e) that only this process knows once the app ran
    (REMOTE_USER set by a middleware). A subclass, so the plain worker pays nothing for it.

    Nothing else is held in the T == 1 tail when a final frame is sent (the previous
    request's tail went out with this one's start), so sending LOG_ENVIRON at once, ahead
    of an ERROR or a large RESPONSE, keeps it just before them."""

    def __init__(self, sock, control, app, threads, multiprocess, log_keys):
        Worker.__init__(self, sock, control, app, threads, multiprocess)
        self.log_keys = log_keys

    def log_frame(self, req):
        wanted = self.log_keys
        found = {}
        for key, value in req.environ.items():
            lower = key.lower()
            if lower in wanted:  # gunicorn matches {var}e lowercased; the last such key wins
                found[lower] = value if type(value) is str else str(value)
        payload = json.dumps(found).encode("utf-8", "replace")
        return HEADER.pack(len(payload), LOG_ENVIRON, req.rid) + payload

    def send_last(self, req, frame):
        Worker.send_last(self, req, self.log_frame(req) + frame)

    def send_last_two(self, req, head, body):
        self.send_two(self.log_frame(req) + head, body)

    def send_error(self, req, text):
        self.send(self.log_frame(req))
        Worker.send_error(self, req, text)


# ==== 6. Config files and server hooks ====

WORKER_HOOKS = ("post_fork", "post_worker_init", "pre_request", "post_request", "worker_int", "worker_abort", "worker_exit")
MASTER_HOOKS = ("on_starting", "on_reload", "when_ready", "pre_fork", "child_exit", "nworkers_changed", "on_exit", "pre_exec")
ABORT_REPORT_S = 1.0                    # the front's SIGKILL follows its SIGABRT after this grace


def load_config_module(location):
    """A gunicorn config file (a path, "file:PATH") or "python:MODULE", executed as gunicorn does."""
    if location.startswith("python:"):
        sys.path.insert(0, os.getcwd())
        return importlib.import_module(location[len("python:"):])
    filename = location[len("file:"):] if location.startswith("file:") else location
    loader = importlib.machinery.SourceFileLoader("__config__", filename)
    spec = importlib.util.spec_from_file_location("__config__", filename, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["__config__"] = module
    spec.loader.exec_module(module)
    return module


def describe_config_error(err):
    """"line N: SomeError: message" for the config file's own line (not the loader's)."""
    line = getattr(err, "lineno", None) if isinstance(err, SyntaxError) else None
    this_program = traceback.extract_stack(limit=1)[0].filename  # bunicorn.py (or worker.py)
    for frame in traceback.extract_tb(err.__traceback__):
        if not frame.filename.startswith("<") and frame.filename != this_program:
            line = frame.lineno
    text = traceback.format_exception_only(type(err), err)[-1].strip()
    return ("line %d: " % line if line else "") + text


def _encode_setting(value):
    if callable(value) and not isinstance(value, type):
        return {"$callable": getattr(value, "__name__", type(value).__name__)}
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return {"$nonjson": type(value).__name__}


def read_config_main(location, known):
    """bunicorn-config: the file's known settings as JSON on stdout (callables as {"$callable"}),
    and the plain-data names that are no setting (a typo like `worker = 4`)."""
    out, sys.stdout = sys.stdout, sys.stderr  # what the file prints is not the answer
    try:
        module = load_config_module(location)
    except BaseException as err:
        out.write(json.dumps({"error": describe_config_error(err)}))
        return
    values, unknown = {}, []
    plain = (str, int, float, bool, list, tuple, dict, type(None))
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if name in known:
            values[name] = _encode_setting(value)
        elif isinstance(value, plain):
            unknown.append(name)
    out.write(json.dumps({"values": values, "unknown": unknown}))


class ReadOnly:
    """The views hooks get of gunicorn's objects: reading works, assigning raises."""

    def __setattr__(self, name, value):
        raise AttributeError("bunicorn passes hooks read-only views; %r cannot be set" % name)


class HookLog(ReadOnly):
    """server.log / worker.log: lines go to the front's error log at their level."""

    def _emit(self, letter, msg, args):
        text = (msg % args) if args else str(msg)
        sys.stderr.write("".join(LOG_MARK + letter + line + "\n" for line in text.splitlines() or [""]))
        sys.stderr.flush()

    def debug(self, msg, *args, **kw): self._emit("D", msg, args)
    def info(self, msg, *args, **kw): self._emit("I", msg, args)
    def warning(self, msg, *args, **kw): self._emit("W", msg, args)
    warn = warning
    def error(self, msg, *args, **kw): self._emit("E", msg, args)
    def critical(self, msg, *args, **kw): self._emit("C", msg, args)

    def exception(self, msg, *args, **kw):
        self._emit("E", (msg % args if args else str(msg)) + "\n" + traceback.format_exc(), ())


class ConfigView(ReadOnly):
    """server.cfg: the settings in effect, by gunicorn's names (cfg.workers, cfg.bind, ...)."""

    def __init__(self, settings):
        object.__setattr__(self, "_settings", settings)

    def __getattr__(self, name):
        try:
            return self._settings[name]
        except KeyError:
            raise AttributeError("no setting %r" % name) from None


class ServerView(ReadOnly):
    """gunicorn's arbiter as hooks see it: cfg, log, num_workers, pid (the front's)."""

    def __init__(self, cfg, num_workers, pid):
        object.__setattr__(self, "cfg", cfg)
        object.__setattr__(self, "log", HookLog())
        object.__setattr__(self, "num_workers", num_workers)
        object.__setattr__(self, "pid", pid)


class WorkerView(ReadOnly):
    """A worker as hooks see it: pid (None before it exists), age (its spawn number), log."""

    def __init__(self, pid, age, alive=True):
        object.__setattr__(self, "pid", pid)
        object.__setattr__(self, "age", age)
        object.__setattr__(self, "alive", alive)
        object.__setattr__(self, "log", HookLog())


class RequestView(ReadOnly):
    """pre_request's and post_request's req: method, uri, path, query, version, headers."""

    def __init__(self, environ):
        set_ = object.__setattr__
        set_(self, "method", environ.get("REQUEST_METHOD"))
        set_(self, "uri", environ.get("RAW_URI"))
        set_(self, "path", environ.get("PATH_INFO"))
        set_(self, "query", environ.get("QUERY_STRING"))
        set_(self, "version", tuple(int(p) for p in environ.get("SERVER_PROTOCOL", "HTTP/1.1")[5:].split(".")))
        headers = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers.append((key[5:].replace("_", "-"), value))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                headers.append((key.replace("_", "-"), value))
        set_(self, "headers", headers)


class ResponseView(ReadOnly):
    """post_request's resp: status ("200 OK"), status_code, headers, sent (body bytes)."""

    def __init__(self, req):
        parts = req.head.decode("latin-1").split("\0") if req.head is not None else ["500 Internal Server Error"]
        set_ = object.__setattr__
        set_(self, "status", parts[0])
        set_(self, "status_code", int(parts[0][:3]))
        set_(self, "headers", list(zip(parts[1::2], parts[2::2])))
        set_(self, "sent", req.sent)


class WorkerHooks:
    """The config file's worker hooks, with the views they are called with."""

    def __init__(self, module, env):
        for name in WORKER_HOOKS:
            hook = getattr(module, name, None) if module is not None else None
            setattr(self, name, hook if callable(hook) else None)
        settings = json.loads(env.get("BUNICORN_SETTINGS") or "{}")
        self.server = ServerView(ConfigView(settings), int(env.get("BUNICORN_NUM_WORKERS") or "1"), int(env.get("BUNICORN_FRONT_PID") or "0"))
        self.worker = WorkerView(os.getpid(), int(env.get("BUNICORN_WORKER_ID") or "0"))

    def call(self, name, *args):
        """Run a hook; an exception is reported (never raised into the worker)."""
        hook = getattr(self, name)
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:
            report_error("%s hook raised:\n%s" % (name, traceback.format_exc()))


def load_worker_hooks(env):
    location = env.get("BUNICORN_CONFIG")
    return WorkerHooks(load_config_module(location) if location else None, env)


def install_abort_report(hooks):
    """On the front's SIGABRT (a request ran past --timeout): log where every thread is,
    run worker_abort, exit. The front kills the worker if this takes longer than its grace."""
    def on_abort(signum, frame):
        frames = sys._current_frames()
        names = {t.ident: t.name for t in threading.enumerate()}
        text = ["WORKER TIMEOUT: where each thread was (pid %d):" % os.getpid()]
        for ident, stack in frames.items():
            text.append("Thread %s (%s), most recent call last:" % (names.get(ident, "?"), ident))
            text.append("".join(traceback.format_stack(stack)).rstrip())
        report_error("\n".join(text))
        hooks.call("worker_abort", hooks.worker)
        sys.stdout.flush()
        os._exit(1)
    signal.signal(signal.SIGABRT, on_abort)


def master_main(env):
    """bunicorn-master: runs the config file's master hooks for the front, one JSON line
    each way per hook ({"id", "hook", "args"} in, {"id", "ok"} or {"id", "error"} out), on
    the socketpair at fd 3. Module state persists between hooks, as in gunicorn's master.

    With --preload it also imports the app once and forks the workers from itself, so they
    share its memory copy-on-write: {"id", "spawn": {env}} comes with the worker's two
    socketpairs as SCM_RIGHTS on fd 4, and is answered {"id", "pid"}; each worker's exit
    is relayed as {"exited": pid, "code"}. It dies with the front (EOF here, or its pid gone)."""
    channel = socket.socket(fileno=DATA_FD)
    stream = channel.makefile("rwb", buffering=0)
    write_lock = threading.Lock()

    def answer(obj):
        with write_lock:
            stream.write(json.dumps(obj).encode() + b"\n")

    module = app = None
    try:
        if env.get("BUNICORN_CONFIG"):
            module = load_config_module(env["BUNICORN_CONFIG"])
    except BaseException as err:
        answer({"id": 0, "error": describe_config_error(err)})
        return
    if env.get("BUNICORN_PRELOAD") == "1":
        try:
            prepare_sys_path(env)
            app = load_app(env.get("BUNICORN_APP", ""))
        except BaseException:
            answer({"id": 0, "error": traceback.format_exc(), "boot_error": True})
            return
    settings = ConfigView(json.loads(env.get("BUNICORN_SETTINGS") or "{}"))
    front_pid = int(env.get("BUNICORN_FRONT_PID") or "0")
    children = ChildReaper(answer)
    answer({"id": 0, "ok": True, "pid": os.getpid()})
    for line in stream:
        command = json.loads(line)
        if "spawn" in command:
            pid = fork_worker(socket.socket(fileno=os.dup(CONTROL_FD)), command["spawn"], (module, app), children)
            answer({"id": command["id"], "pid": pid})
            continue
        args = command.get("args") or {}
        server = ServerView(settings, args.get("num_workers", 0), front_pid)
        reply = {"id": command["id"], "ok": True}
        hook = getattr(module, command["hook"], None)
        if callable(hook):
            try:
                hook(*_master_hook_args(command["hook"], server, args))
            except Exception:
                reply = {"id": command["id"], "error": traceback.format_exc()}
        answer(reply)


class ChildReaper:
    """Waits for the forked workers (a thread of the master helper) and tells the front how each ended."""

    def __init__(self, answer):
        self.answer = answer
        self.count = 0
        self.cond = threading.Condition()
        threading.Thread(target=self._reap, name="bunicorn-reaper", daemon=True).start()

    def add(self):
        with self.cond:
            self.count += 1
            self.cond.notify()

    def _reap(self):
        while True:
            with self.cond:
                while self.count == 0:
                    self.cond.wait()
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                continue
            with self.cond:
                self.count -= 1
            code = os.waitstatus_to_exitcode(status)
            self.answer({"exited": pid, "code": code if code >= 0 else None, "signal": -code if code < 0 else None})


def fork_worker(fd_channel, env_overrides, preloaded, children):
    """A worker forked from the preloaded app, on the two socketpairs the front just sent."""
    _, fds, _, _ = socket.recv_fds(fd_channel, 1, 2)
    fd_channel.close()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # The helper's own channels are fd 3 and 4: the worker's replace them (dup2 closes them here).
            os.dup2(fds[0], DATA_FD)
            os.dup2(fds[1], CONTROL_FD)
            for fd in fds:
                if fd not in (DATA_FD, CONTROL_FD):
                    os.close(fd)
            os.environ.update(env_overrides)
            worker_main(os.environ, preloaded)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            report_error(traceback.format_exc())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    for fd in fds:
        os.close(fd)
    children.add()
    return pid


def _master_hook_args(name, server, args):
    """gunicorn's arguments for each master hook."""
    if name in ("pre_fork", "child_exit"):
        w = args.get("worker") or {}
        return (server, WorkerView(w.get("pid"), w.get("age"), w.get("alive", name == "pre_fork")))
    if name == "nworkers_changed":
        return (server, args.get("new_value"), args.get("old_value"))
    return (server,)


# ==== 7. Main ====

def _watch_parent(ppid):
    while True:
        time.sleep(PPID_CHECK_S)
        if os.getppid() != ppid:
            os._exit(0)


def ignore_front_signals():
    for name in FRONT_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def main():
    env = os.environ
    role = sys.argv[1] if len(sys.argv) > 1 else "bunicorn-worker"
    if role == "bunicorn-config":
        read_config_main(sys.argv[2], set(sys.argv[3].split(",")))
        return
    ignore_front_signals()
    try:
        sys.stdout.reconfigure(line_buffering=True)  # app prints reach the front's log promptly
    except (AttributeError, ValueError):
        pass
    if role == "bunicorn-master":
        threading.Thread(target=_watch_parent, args=(os.getppid(), ), name="bunicorn-ppid", daemon=True).start()
        master_main(env)
        return
    worker_main(env)


def worker_main(env, preloaded=None):
    """A worker on the front's socketpairs at fd 3 and 4. The app is imported here, or with
    --preload (`preloaded`: the config module and the app) before the master helper forked us."""
    threading.Thread(target=_watch_parent, args=(os.getppid(), ), name="bunicorn-ppid", daemon=True).start()
    try:
        sock = socket.socket(fileno=DATA_FD)
        control = socket.socket(fileno=CONTROL_FD)
    except OSError as e:
        sys.stderr.write("bunicorn worker: fd %d and %d must be the front's socketpairs: %r\n" % (DATA_FD, CONTROL_FD, e))
        sys.exit(1)

    try:
        threads = max(1, int(env.get("BUNICORN_THREADS") or "1"))
        if preloaded is None:
            prepare_sys_path(env)
            hooks = load_worker_hooks(env)
            hooks.call("post_fork", hooks.server, hooks.worker)
            app = load_app(env.get("BUNICORN_APP", ""))
        else:
            module, app = preloaded
            hooks = WorkerHooks(module, env)
            hooks.call("post_fork", hooks.server, hooks.worker)
    except BaseException:
        # The traceback goes to the front once, in BOOT_ERROR (stderr only if that fails).
        text = traceback.format_exc()
        payload = text.encode("utf-8", "replace")
        try:
            sock.sendall(HEADER.pack(len(payload), BOOT_ERROR, 0) + payload)
        except OSError:
            report_error(text)
        sys.stdout.flush()
        os._exit(1)

    multiprocess = env.get("BUNICORN_MULTIPROCESS") == "1"
    log_keys = json.loads(env.get("BUNICORN_LOG_ENVIRON") or "[]")
    worker = make_worker(sock, control, app, threads, multiprocess, log_keys, hooks)
    install_abort_report(hooks)
    hooks.call("post_worker_init", hooks.worker)
    threading.Thread(target=worker.serve_control, name="bunicorn-control", daemon=True).start()
    worker.send_frame(READY, 0, str(os.getpid()).encode("ascii"))
    try:
        if threads == 1:
            worker.serve_inline()
        else:
            worker.serve_threaded()
    finally:
        hooks.call("worker_exit", hooks.server, hooks.worker)
    sock.close()
    sys.exit(0)


def make_worker(sock, control, app, threads, multiprocess, log_keys, hooks):
    """The plain Worker unless the access log or a request hook needs more of it."""
    bases = []
    if hooks.pre_request is not None or hooks.post_request is not None:
        bases.append(HookedWorker)
    if log_keys:
        bases.append(ReportingWorker)
    cls = Worker if not bases else bases[0] if len(bases) == 1 else type("HookedReportingWorker", tuple(bases), {})
    worker = cls.__new__(cls)
    Worker.__init__(worker, sock, control, app, threads, multiprocess)
    worker.hooks = hooks
    if log_keys:
        worker.log_keys = frozenset(log_keys)
    return worker


if __name__ == "__main__":
    main()

// The Python worker protocol, tested against worker.py with this file playing the front:
// a spawned `python3 worker.py` with its two socketpairs (fd 3 data, fd 4 control), and
// raw frames in both directions. The frame numbers come from bridge.ts, the front's side.
import { test, expect, afterEach } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CONTROL_FD, DATA_FD, FRAME, FRAME_HEADER_BYTES, REQ_FLAG, encodeFrame as encodeTypedFrame } from "../bridge.ts";

const WORKER_PY = join(import.meta.dir, "..", "worker.py");

const { REQ, BODY, BODY_EOF, CANCEL, ABORT, ACK, STOP, READY, BOOT_ERROR, START, DATA, END, RESPONSE, ERROR,
  PULL, STARTED, CANCELLED, SENDFILE, LOG_ENVIRON } = FRAME;
const { BODY_INLINE: FLAG_BODY_INLINE, BODY_STREAM: FLAG_BODY_STREAM, CHUNKED: FLAG_CHUNKED, ACK_START: FLAG_ACK_START } = REQ_FLAG;
const WINDOW_BYTES = 1 << 20;

interface Frame { type: number; id: number; payload: Buffer }

function encodeFrame(type: number, id: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  return encodeTypedFrame(type as any, id, payload);
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

interface ReqSpec { method?: string; path?: string; query?: string; headers?: Record<string, string>; extra?: Record<string, string>; flags?: number; body?: Uint8Array }

/** REQ payload: u8 flags, u32 len + PATH_INFO, u32 len + fields k\0v\0..., then the inline body (the rest). */
function encodeReq(spec: ReqSpec): Buffer {
  const env: Record<string, string> = {
    REQUEST_METHOD: spec.method ?? "GET",
    SCRIPT_NAME: "",
    QUERY_STRING: spec.query ?? "",
    SERVER_NAME: "127.0.0.1",
    SERVER_PORT: "8000",
    SERVER_PROTOCOL: "HTTP/1.1",
    REMOTE_ADDR: "127.0.0.1",
    REMOTE_PORT: "50000",
    ...spec.headers,
    ...spec.extra,
  };
  let flags = spec.flags ?? 0;
  if (spec.body) flags |= FLAG_BODY_INLINE;
  const path = Buffer.from(spec.path ?? "/", "latin1");
  const fields = Buffer.from(Object.entries(env).flat().join("\0"), "latin1");
  const parts = [Buffer.from([flags]), u32(path.length), path, u32(fields.length), fields];
  if (spec.body) parts.push(Buffer.from(spec.body));
  return Buffer.concat(parts);
}

/** Split NUL-joined latin-1 fields. */
function splitFields(b: Uint8Array): string[] {
  return Buffer.from(b).toString("latin1").split("\0");
}

function parseStart(payload: Buffer): { status: string; headers: [string, string][] } {
  const [status, ...rest] = splitFields(payload);
  const headers: [string, string][] = [];
  for (let i = 0; i < rest.length; i += 2) headers.push([rest[i]!, rest[i + 1]!]);
  return { status: status!, headers };
}

function parseResponse(payload: Buffer) {
  const headLen = payload.readUInt32BE(0);
  return { ...parseStart(payload.subarray(4, 4 + headLen)), body: payload.subarray(4 + headLen) };
}

const frameName = (t: number) => Object.entries(FRAME).find(([, v]) => v === t)?.[0] ?? String(t);

/** A fake front: listens, spawns the worker, records frames, answers PULLs and ACKs on request. */
class FakeFront {
  dir: string;
  proc!: ReturnType<typeof Bun.spawn>;
  stderr = "";
  stdout = "";
  received: Frame[] = [];          // every frame, in arrival order
  unread: Frame[] = [];            // not yet consumed by next()
  pulls: { id: number; max: number }[] = [];
  bodies = new Map<number, Buffer>();  // id -> body still to serve to PULLs
  autoAck = true;
  dataBytes = new Map<number, number>();
  closed = false;
  private sock: any = null;
  private control: any = null;
  private inbuf: Buffer = Buffer.alloc(0);
  private outq: Buffer[] = [];
  private waiters: (() => void)[] = [];
  private connected!: Promise<void>;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "bunicorn-wp-"));
  }

  async start(appSource: string, opts: { app?: string; threads?: number; env?: Record<string, string>; files?: Record<string, string>; viaShell?: boolean } = {}) {
    writeFileSync(join(this.dir, "wpapp.py"), appSource);
    for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(join(this.dir, name), text);
    // viaShell: the worker's parent is a shell that can be killed on its own (parent-change test).
    const cmd = opts.viaShell ? ["sh", "-c", `python3 '${WORKER_PY}' & wait`] : ["python3", WORKER_PY];
    this.proc = Bun.spawn(cmd, {
      cwd: this.dir,
      stdio: ["ignore", "pipe", "pipe", "socket-fd", "socket-fd"],
      env: {
        ...process.env,
        BUNICORN_APP: opts.app ?? "wpapp",
        BUNICORN_THREADS: String(opts.threads ?? 1),
        BUNICORN_WORKER_ID: "1",
        BUNICORN_MULTIPROCESS: "1",
        BUNICORN_CHDIR: this.dir,
        ...opts.env,
      },
    } as any);
    const front = this;
    const fds = (this.proc as any).stdio as number[];
    this.connected = (async () => {
      this.sock = await (Bun.connect as any)({
        fd: fds[DATA_FD],
        socket: {
          data(_s: unknown, chunk: Buffer) { front.onData(Buffer.from(chunk)); },
          drain() { front.flush(); },
          close() { front.closed = true; front.wake(); },
          error() {},
        },
      });
      this.control = await (Bun.connect as any)({ fd: fds[CONTROL_FD], socket: { data() {}, close() {}, error() {} } });
      this.flush();
    })();
    this.collect(this.proc.stdout as ReadableStream<Uint8Array>, "stdout");
    this.collect(this.proc.stderr as ReadableStream<Uint8Array>, "stderr");
    front_registry.push(this);
    return this;
  }

  private async collect(stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") {
    const dec = new TextDecoder();
    for await (const chunk of stream) this[key] += dec.decode(chunk);
  }

  /** Wait for READY; returns the pid it carries. */
  async ready(): Promise<number> {
    const f = await this.next();
    if (f.type !== READY) throw new Error(`expected READY, got ${frameName(f.type)}: ${f.payload}\n${this.stderr}`);
    return Number(f.payload.toString("latin1"));
  }

  private onData(chunk: Buffer) {
    this.inbuf = this.inbuf.length ? Buffer.concat([this.inbuf, chunk]) : chunk;
    while (this.inbuf.length >= 9) {
      const len = this.inbuf.readUInt32BE(0);
      if (this.inbuf.length < 9 + len) break;
      const f: Frame = { type: this.inbuf.readUInt8(4), id: this.inbuf.readUInt32BE(5), payload: Buffer.from(this.inbuf.subarray(9, 9 + len)) };
      this.inbuf = this.inbuf.subarray(9 + len);
      this.onFrame(f);
    }
  }

  private onFrame(f: Frame) {
    this.received.push(f);
    if (f.type === PULL) {
      const max = f.payload.readUInt32BE(0);
      this.pulls.push({ id: f.id, max });
      const body = this.bodies.get(f.id);
      if (body) {
        if (body.length === 0) {
          this.bodies.delete(f.id);
          this.send(BODY_EOF, f.id);
        } else {
          // Answer with less than asked now and then, as a real front may.
          const n = Math.min(max, body.length, 200_000);
          this.send(BODY, f.id, body.subarray(0, n));
          this.bodies.set(f.id, body.subarray(n));
        }
      }
      return;
    }
    if (f.type === DATA) {
      this.dataBytes.set(f.id, (this.dataBytes.get(f.id) ?? 0) + f.payload.length);
      if (this.autoAck) this.send(ACK, f.id, u32(f.payload.length));
    }
    this.unread.push(f);
    this.wake();
  }

  private wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  send(type: number, id: number, payload?: Uint8Array) {
    this.outq.push(encodeFrame(type, id, payload));
    this.flush();
  }

  sendRaw(bytes: Buffer) {
    this.outq.push(bytes);
    this.flush();
  }

  /** A take-back (CANCEL, ABORT) over the control channel, read even while an app runs. */
  sendControl(type: number, id: number) {
    this.control.write(encodeFrame(type, id));
  }

  sendReq(id: number, spec: ReqSpec) {
    this.send(REQ, id, encodeReq(spec));
  }

  private flush() {
    while (this.sock && this.outq.length) {
      const head = this.outq[0]!;
      const n = this.sock.write(head);
      if (n < 0) return;
      if (n < head.length) { this.outq[0] = head.subarray(n); return; }
      this.outq.shift();
    }
  }

  async connectedNow() { await this.connected; }

  /** The next unread frame matching `pred` (default: any), in arrival order. */
  async next(pred: (f: Frame) => boolean = () => true, timeoutMs = 4000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.unread.findIndex(pred);
      if (i >= 0) return this.unread.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a frame; unread: ${this.unread.map((f) => `${frameName(f.type)}#${f.id}`).join(",")}\nstderr:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Frames for `id` until (and including) END, ERROR or RESPONSE. */
  async collectResponse(id: number): Promise<Frame[]> {
    const out: Frame[] = [];
    for (;;) {
      const f = await this.next((f) => f.id === id);
      out.push(f);
      if (f.type === END || f.type === ERROR || f.type === RESPONSE) return out;
    }
  }

  closeSocket() { this.sock?.end(); }

  stop() {
    try { this.proc?.kill(9); } catch {}
    try { this.sock?.terminate(); this.control?.terminate(); } catch {}
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const front_registry: FakeFront[] = [];
afterEach(() => {
  while (front_registry.length) front_registry.pop()!.stop();
});

async function startWorker(appSource: string, opts: Parameters<FakeFront["start"]>[1] = {}) {
  const front = await new FakeFront().start(appSource, opts);
  await front.ready();
  return front;
}

const HELLO_APP = `
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Two", "a b")])
    return [b"Hello, ", b"World!"]
`;

test("READY carries the pid, then a GET gets one RESPONSE frame", async () => {
  const front = await new FakeFront().start(HELLO_APP);
  expect(await front.ready()).toBe(front.proc.pid);
  front.sendReq(7, { path: "/" });
  const f = await front.next();
  expect([frameName(f.type), f.id]).toEqual(["RESPONSE", 7]);
  const r = parseResponse(f.payload);
  expect(r.status).toBe("200 OK");
  expect(r.headers).toEqual([["Content-Type", "text/plain"], ["X-Two", "a b"]]);
  expect(r.body.toString()).toBe("Hello, World!");
});

test("pipelined REQs (T=1) are answered in order", async () => {
  const front = await startWorker(`
def application(environ, start_response):
    start_response("200 OK", [])
    return [environ["PATH_INFO"].encode()]
`);
  for (let i = 1; i <= 8; i++) front.sendReq(i, { path: `/r${i}` });
  for (let i = 1; i <= 8; i++) {
    const f = await front.next();
    expect([frameName(f.type), f.id, parseResponse(f.payload).body.toString()]).toEqual(["RESPONSE", i, `/r${i}`]);
  }
});

const ENVIRON_APP = `
import json
def application(environ, start_response):
    out = {}
    for k, v in environ.items():
        out[k] = [type(v).__name__, v if isinstance(v, (str, bool, int, tuple)) else None]
    out["PATH_INFO_BYTES"] = ["list", list(environ["PATH_INFO"].encode("latin-1"))]
    out["input_has"] = ["list", [m for m in ("read", "readline", "readlines", "__iter__") if hasattr(environ["wsgi.input"], m)]]
    out["errors_is_stderr"] = ["bool", environ["wsgi.errors"] is __import__("sys").stderr]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(out).encode()]
`;

test("environ: native str CGI values, wsgi.* keys (T=1, multiprocess=1)", async () => {
  const front = await startWorker(ENVIRON_APP);
  front.sendReq(1, { path: "/caf\xe9/a%2Fb", query: "x=1", headers: { HTTP_HOST: "example.com", HTTP_X_LATIN: "\xff\xfe" }, extra: { "wsgi.url_scheme": "https" } });
  const f = await front.next();
  expect(frameName(f.type)).toBe("RESPONSE");
  const env = JSON.parse(parseResponse(f.payload).body.toString());
  for (const k of ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "HTTP_HOST", "HTTP_X_LATIN", "REMOTE_ADDR"]) {
    expect([k, env[k][0]]).toEqual([k, "str"]);
  }
  expect(env.PATH_INFO_BYTES[1]).toEqual([...Buffer.from("/caf\xe9/a%2Fb", "latin1")]);
  expect(env.HTTP_X_LATIN[1]).toBe("\xff\xfe");
  expect(env.QUERY_STRING[1]).toBe("x=1");
  expect(env["wsgi.version"]).toEqual(["tuple", [1, 0]]);
  expect(env["wsgi.url_scheme"]).toEqual(["str", "https"]);
  expect(env["wsgi.multithread"]).toEqual(["bool", false]);
  expect(env["wsgi.multiprocess"]).toEqual(["bool", true]);
  expect(env["wsgi.run_once"]).toEqual(["bool", false]);
  expect(env["wsgi.input_terminated"]).toEqual(["bool", false]);
  expect(env["wsgi.file_wrapper"][0]).toBe("type");
  expect(env.errors_is_stderr[1]).toBe(true);
  expect(env.input_has[1]).toEqual(["read", "readline", "readlines", "__iter__"]);

  // Without a scheme field it defaults to http; CHUNKED sets wsgi.input_terminated.
  front.sendReq(2, { method: "POST", flags: FLAG_CHUNKED, body: new Uint8Array(0) });
  const env2 = JSON.parse(parseResponse((await front.next()).payload).body.toString());
  expect(env2["wsgi.url_scheme"]).toEqual(["str", "http"]);
  expect(env2["wsgi.input_terminated"]).toEqual(["bool", true]);
});

test("environ with T=2: wsgi.multithread is True", async () => {
  const front = await startWorker(ENVIRON_APP, { threads: 2, env: { BUNICORN_MULTIPROCESS: "0" } });
  front.sendReq(1, {});
  const env = JSON.parse(parseResponse((await front.next()).payload).body.toString());
  expect(env["wsgi.multithread"]).toEqual(["bool", true]);
  expect(env["wsgi.multiprocess"]).toEqual(["bool", false]);
});

const STREAM_APP = `
import os, time
class Body:
    def __init__(self, n, size, delay=0.0):
        self.n, self.size, self.delay = n, size, delay
    def __iter__(self):
        for i in range(self.n):
            if self.delay:
                time.sleep(self.delay)
            yield bytes([65 + i % 26]) * self.size
    def close(self):
        open(os.path.join(os.getcwd(), "closed-" + self.tag), "w").close()

def application(environ, start_response):
    q = dict(p.split("=") for p in environ["QUERY_STRING"].split("&"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    body = Body(int(q["n"]), int(q["size"]), float(q.get("delay", "0")))
    body.tag = q["tag"]
    return body
`;

test("a generator response arrives as START, DATA per chunk, END; close() was called", async () => {
  const front = await startWorker(STREAM_APP);
  front.sendReq(3, { query: "n=3&size=5&tag=a" });
  const frames = await front.collectResponse(3);
  expect(frames.map((f) => frameName(f.type))).toEqual(["START", "DATA", "DATA", "DATA", "END"]);
  expect(parseStart(frames[0]!.payload)).toEqual({ status: "200 OK", headers: [["Content-Type", "text/plain"]] });
  expect(frames.slice(1, 4).map((f) => f.payload.toString())).toEqual(["AAAAA", "BBBBB", "CCCCC"]);
  expect(existsSync(join(front.dir, "closed-a"))).toBe(true);
});

test("write() sends START then DATA; empty chunks are skipped", async () => {
  const front = await startWorker(`
def application(environ, start_response):
    write = start_response("201 Created", [("A", "1")])
    write(b"one")
    write(b"")
    return [b"", b"two"]
`);
  front.sendReq(1, {});
  const frames = await front.collectResponse(1);
  expect(frames.map((f) => [frameName(f.type), f.type === START ? parseStart(f.payload).status : f.payload.toString()])).toEqual([
    ["START", "201 Created"], ["DATA", "one"], ["DATA", "two"], ["END", ""],
  ]);
});

test("BODY_STREAM: the body is PULLed in pieces as the app reads it (3 MiB, read(n))", async () => {
  const front = await startWorker(`
import hashlib
def application(environ, start_response):
    h = hashlib.sha256()
    inp = environ["wsgi.input"]
    total = 0
    while True:
        chunk = inp.read(100000)
        if not chunk:
            break
        assert len(chunk) <= 100000
        total += len(chunk)
        h.update(chunk)
    start_response("200 OK", [])
    return [("%d %s" % (total, h.hexdigest())).encode()]
`);
  const body = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 10)) & 255;
  front.bodies.set(5, body);
  front.sendReq(5, { method: "POST", flags: FLAG_BODY_STREAM, headers: { CONTENT_LENGTH: String(body.length) } });
  const f = await front.next();
  expect(frameName(f.type)).toBe("RESPONSE");
  const expected = `${body.length} ${createHash("sha256").update(body).digest("hex")}`;
  expect(parseResponse(f.payload).body.toString()).toBe(expected);
  const pulls = front.pulls.filter((p) => p.id === 5);
  expect(pulls.length).toBeGreaterThan(15);                     // never the whole body at once
  expect(Math.max(...pulls.map((p) => p.max))).toBeLessThan(1024 * 1024);
  expect(Math.min(...pulls.map((p) => p.max))).toBeGreaterThanOrEqual(64 * 1024);
});

test("BODY_STREAM: read() with no size drains to BODY_EOF; no PULL before the app reads", async () => {
  const front = await startWorker(`
def application(environ, start_response):
    path = environ["PATH_INFO"]
    data = environ["wsgi.input"].read() if path == "/read" else b"untouched"
    start_response("200 OK", [])
    return [data]
`);
  front.bodies.set(1, Buffer.from("x".repeat(300_000)));
  front.sendReq(1, { method: "POST", path: "/read", flags: FLAG_BODY_STREAM | FLAG_CHUNKED });
  expect(parseResponse((await front.next()).payload).body.length).toBe(300_000);
  front.bodies.set(2, Buffer.from("never read"));
  front.sendReq(2, { method: "POST", path: "/skip", flags: FLAG_BODY_STREAM });
  expect(parseResponse((await front.next()).payload).body.toString()).toBe("untouched");
  expect(front.pulls.filter((p) => p.id === 2)).toEqual([]);
});

const LINES_APP = `
import json
def application(environ, start_response):
    inp = environ["wsgi.input"]
    out = {
        "first": inp.readline().decode(),
        "limited": inp.readline(3).decode(),
        "rest_of_line": inp.readline().decode(),
        "iterated": [],
    }
    for line in inp:
        out["iterated"].append(line.decode())
        if len(out["iterated"]) == 2:
            break
    out["readlines"] = [l.decode() for l in inp.readlines()]
    out["after"] = inp.read().decode()
    start_response("200 OK", [])
    return [json.dumps(out).encode()]
`;
const LINES_BODY = "line one\nabcdef\nit1\nit2\nr1\nr2\nlast-no-newline";
const LINES_EXPECT = {
  first: "line one\n", limited: "abc", rest_of_line: "def\n", iterated: ["it1\n", "it2\n"],
  readlines: ["r1\n", "r2\n", "last-no-newline"], after: "",
};

test("3000 pipelined REQs of varied sizes and a 700 KB inline body (read buffer compaction and growth)", async () => {
  const front = await startWorker(`
import hashlib
def application(environ, start_response):
    start_response("200 OK", [])
    return [environ["PATH_INFO"].encode(), b" ", hashlib.sha256(environ["wsgi.input"].read()).hexdigest()[:8].encode()]
`);
  const n = 3000;
  const frames: Buffer[] = [];
  for (let i = 1; i <= n; i++) frames.push(encodeFrame(REQ, i, encodeReq({ path: `/p${i}`, headers: { HTTP_X_PAD: "x".repeat(i % 400) } })));
  const big = Buffer.alloc(700_000, 3);
  frames.push(encodeFrame(REQ, n + 1, encodeReq({ method: "POST", path: "/big", body: big })));
  front.sendRaw(Buffer.concat(frames));
  const empty = createHash("sha256").update(Buffer.alloc(0)).digest("hex").slice(0, 8);
  for (let i = 1; i <= n; i++) {
    const f = await front.next();
    expect([f.id, parseResponse(f.payload).body.toString()]).toEqual([i, `/p${i} ${empty}`]);
  }
  const f = await front.next();
  expect([f.id, parseResponse(f.payload).body.toString()]).toEqual([n + 1, `/big ${createHash("sha256").update(big).digest("hex").slice(0, 8)}`]);
});

test("a list body over 1 MiB goes out as START, DATA..., END under flow control", async () => {
  const front = await startWorker(`
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"a" * (3 * 1024 * 1024 + 5)]
`);
  front.sendReq(1, {});
  const frames = await front.collectResponse(1);
  expect(frameName(frames[0]!.type)).toBe("START");
  expect(frameName(frames.at(-1)!.type)).toBe("END");
  expect(frames.slice(1, -1).every((f) => f.type === DATA)).toBe(true);
  expect(front.dataBytes.get(1)).toBe(3 * 1024 * 1024 + 5);
});

test("inline body: readline, readline(limit), iteration, readlines", async () => {
  const front = await startWorker(LINES_APP);
  front.sendReq(1, { method: "POST", body: Buffer.from(LINES_BODY), headers: { CONTENT_LENGTH: String(LINES_BODY.length) } });
  const f = await front.next();
  expect(frameName(f.type)).toBe("RESPONSE");
  expect(JSON.parse(parseResponse(f.payload).body.toString())).toEqual(LINES_EXPECT);
});

test("streamed body: readline, readline(limit), iteration, readlines", async () => {
  const front = await startWorker(LINES_APP);
  front.bodies.set(1, Buffer.from(LINES_BODY));
  front.sendReq(1, { method: "POST", flags: FLAG_BODY_STREAM | FLAG_CHUNKED });
  const f = await front.next();
  expect(frameName(f.type)).toBe("RESPONSE");
  expect(JSON.parse(parseResponse(f.payload).body.toString())).toEqual(LINES_EXPECT);
});

test("inline body containing NULs, and an empty last environ value", async () => {
  const front = await startWorker(`
import hashlib
def application(environ, start_response):
    start_response("200 OK", [("X-Empty", environ["HTTP_X_EMPTY"] or "-")])
    return [hashlib.sha256(environ["wsgi.input"].read()).hexdigest().encode()]
`);
  const body = Buffer.from([0, 0, 0, 5, 0, 1, 2, 0, 0, 0, 0]);
  front.sendReq(1, { method: "POST", body, headers: { HTTP_X_EMPTY: "" } });
  const r = parseResponse((await front.next()).payload);
  expect(r.body.toString()).toBe(createHash("sha256").update(body).digest("hex"));
  expect(r.headers).toEqual([["X-Empty", "-"]]);
});

test("start_response called twice without exc_info -> ERROR", async () => {
  const front = await startWorker(`
def application(environ, start_response):
    start_response("200 OK", [])
    start_response("500 Oops", [])
    return [b"no"]
`);
  front.sendReq(1, {});
  const f = await front.next();
  expect(frameName(f.type)).toBe("ERROR");
  expect(f.payload.toString()).toContain("AssertionError");
});

test("start_response with exc_info before the head is sent replaces the status", async () => {
  const front = await startWorker(`
import sys
def application(environ, start_response):
    start_response("200 OK", [("A", "1")])
    try:
        raise ValueError("x")
    except ValueError:
        start_response("500 Internal Server Error", [("B", "2")], sys.exc_info())
    return [b"replaced"]
`);
  front.sendReq(1, {});
  const r = parseResponse((await front.next()).payload);
  expect([r.status, r.headers, r.body.toString()]).toEqual(["500 Internal Server Error", [["B", "2"]], "replaced"]);
});

test("bad status, bad header types and CR/LF in headers -> ERROR", async () => {
  const front = await startWorker(`
def application(environ, start_response):
    kind = environ["PATH_INFO"]
    if kind == "/bytes-status":
        start_response(b"200 OK", [])
    elif kind == "/no-reason":
        start_response("200", [])
    elif kind == "/tuple-headers":
        start_response("200 OK", (("A", "b"),))
    elif kind == "/bytes-value":
        start_response("200 OK", [("A", b"b")])
    elif kind == "/crlf":
        start_response("200 OK", [("A", "b\\r\\nSet-Cookie: x=1")])
    elif kind == "/str-body":
        start_response("200 OK", [])
        return ["text"]
    elif kind == "/no-start":
        return [b"x"]
    return [b"ok"]
`);
  const kinds = ["/bytes-status", "/no-reason", "/tuple-headers", "/bytes-value", "/crlf", "/str-body", "/no-start"];
  kinds.forEach((k, i) => front.sendReq(i + 1, { path: k }));
  for (let i = 0; i < kinds.length; i++) {
    const f = await front.next();
    expect([kinds[i], frameName(f.type), f.id]).toEqual([kinds[i], "ERROR", i + 1]);
  }
});

test("an exception before START -> ERROR frame with the traceback (logged once, by the front, not on stderr)", async () => {
  const front = await startWorker(`
def application(environ, start_response):
    raise RuntimeError("boom-before-start")
`);
  front.sendReq(4, { path: "/fail", query: "q=1" });
  const f = await front.next();
  expect([frameName(f.type), f.id]).toEqual(["ERROR", 4]);
  expect(f.payload.toString()).toContain("Traceback");
  expect(f.payload.toString()).toContain("RuntimeError: boom-before-start");
  await Bun.sleep(200);
  expect(front.stderr).not.toContain("boom-before-start");
  // The worker keeps serving.
  front.sendReq(5, {});
  expect(frameName((await front.next()).type)).toBe("ERROR");
});

test("an exception after START -> START, DATA, ERROR; close() still called", async () => {
  const front = await startWorker(`
import os
class Body:
    def __iter__(self):
        yield b"part"
        raise ValueError("mid-stream")
    def close(self):
        open("closed-mid", "w").close()
def application(environ, start_response):
    start_response("200 OK", [])
    return Body()
`);
  front.sendReq(1, {});
  const frames = await front.collectResponse(1);
  expect(frames.map((f) => frameName(f.type))).toEqual(["START", "DATA", "ERROR"]);
  expect(frames[2]!.payload.toString()).toContain("ValueError: mid-stream");
  expect(existsSync(join(front.dir, "closed-mid"))).toBe(true);
});

test("flow control: a 5 MiB generator stops after 1 MiB of DATA until ACKs arrive", async () => {
  const front = await startWorker(STREAM_APP);
  front.autoAck = false;
  front.sendReq(9, { query: "n=80&size=65536&tag=fc" });
  await front.next((f) => f.id === 9 && f.type === START);
  // Wait until the window is full, then make sure nothing more comes.
  for (let i = 0; i < 200 && (front.dataBytes.get(9) ?? 0) < WINDOW_BYTES; i++) await Bun.sleep(10);
  await Bun.sleep(300);
  expect(front.dataBytes.get(9)).toBe(WINDOW_BYTES);
  expect(front.received.some((f) => f.id === 9 && f.type === END)).toBe(false);
  // ACK what arrived; the worker sends exactly as much again.
  front.send(ACK, 9, u32(WINDOW_BYTES));
  for (let i = 0; i < 200 && (front.dataBytes.get(9) ?? 0) < 2 * WINDOW_BYTES; i++) await Bun.sleep(10);
  await Bun.sleep(100);
  expect(front.dataBytes.get(9)).toBe(2 * WINDOW_BYTES);
  // From now on ACK everything, including what is outstanding.
  front.autoAck = true;
  front.send(ACK, 9, u32(WINDOW_BYTES));
  await front.next((f) => f.id === 9 && f.type === END);
  expect(front.dataBytes.get(9)).toBe(80 * 65536);
  expect(existsSync(join(front.dir, "closed-fc"))).toBe(true);
});

test("ABORT stops the iteration, calls close() and ends with END", async () => {
  const front = await startWorker(STREAM_APP);
  front.sendReq(2, { query: "n=1000&size=10&delay=0.01&tag=ab" });
  await front.next((f) => f.id === 2 && f.type === DATA);
  front.send(ABORT, 2);
  const last = await front.next((f) => f.id === 2 && (f.type === END || f.type === ERROR));
  expect(frameName(last.type)).toBe("END");
  expect(existsSync(join(front.dir, "closed-ab"))).toBe(true);
  expect(front.dataBytes.get(2)!).toBeLessThan(1000 * 10);
});

test("ABORT while blocked on flow control unblocks the worker", async () => {
  const front = await startWorker(STREAM_APP);
  front.autoAck = false;
  front.sendReq(2, { query: "n=100&size=65536&tag=ab2" });
  for (let i = 0; i < 200 && (front.dataBytes.get(2) ?? 0) < WINDOW_BYTES; i++) await Bun.sleep(10);
  front.send(ABORT, 2);
  const last = await front.next((f) => f.id === 2 && (f.type === END || f.type === ERROR));
  expect(frameName(last.type)).toBe("END");
  expect(existsSync(join(front.dir, "closed-ab2"))).toBe(true);
  // Still serving.
  front.sendReq(3, { query: "n=1&size=1&tag=after" });
  expect((await front.collectResponse(3)).map((f) => frameName(f.type))).toEqual(["START", "DATA", "END"]);
});

const SLEEP_APP = `
import time, os
def application(environ, start_response):
    open("ran-" + environ["PATH_INFO"].strip("/"), "w").close()
    time.sleep(float(environ["QUERY_STRING"] or "0"))
    start_response("200 OK", [])
    return [environ["PATH_INFO"].encode()]
`;

test("CANCEL over the control channel while the app runs (T=1): CANCELLED comes before the running request ends", async () => {
  const front = await startWorker(SLEEP_APP);
  front.sendReq(1, { path: "/first", query: "0.6", flags: FLAG_ACK_START });
  expect([frameName((await front.next()).type)]).toEqual(["STARTED"]);
  front.sendReq(2, { path: "/second", flags: FLAG_ACK_START });
  front.sendControl(CANCEL, 2);
  const frames = [await front.next(), await front.next()];
  // The app of request 1 still sleeps when request 2 is given back: the front can send it elsewhere.
  expect(frames.map((f) => [frameName(f.type), f.id])).toEqual([["CANCELLED", 2], ["RESPONSE", 1]]);
  expect(existsSync(join(front.dir, "ran-second"))).toBe(false);
  // CANCEL of a finished request is answered after its end, and the worker goes on.
  front.sendControl(CANCEL, 1);
  front.sendReq(3, { path: "/third" });
  const after = [await front.next(), await front.next()].map((f) => [frameName(f.type), f.id]);
  expect(after).toContainEqual(["RESPONSE", 3]);
  expect(existsSync(join(front.dir, "ran-second"))).toBe(false);
});

test("CANCEL over the control channel of a started request changes nothing; ABORT of a waiting one ends it unrun", async () => {
  const front = await startWorker(SLEEP_APP);
  front.sendReq(1, { path: "/first", query: "0.3", flags: FLAG_ACK_START });
  expect(frameName((await front.next()).type)).toBe("STARTED");
  front.sendReq(2, { path: "/second", flags: FLAG_ACK_START });
  front.sendControl(CANCEL, 1);
  front.sendControl(ABORT, 2);
  const frames = [await front.next(), await front.next()].map((f) => [frameName(f.type), f.id]);
  expect(frames).toEqual([["END", 2], ["RESPONSE", 1]]);
  await Bun.sleep(100);
  expect(existsSync(join(front.dir, "ran-second"))).toBe(false);
  expect(front.unread.map((f) => frameName(f.type))).toEqual([]);
});

test("CANCEL on the data channel (T=1) is read only between requests: CANCELLED after the running one", async () => {
  const front = await startWorker(SLEEP_APP);
  front.sendReq(1, { path: "/first", query: "0.4" });
  await Bun.sleep(100);
  front.sendReq(2, { path: "/second" });
  front.send(CANCEL, 2);
  const frames = [await front.next(), await front.next()];
  expect(frames.map((f) => [frameName(f.type), f.id])).toEqual([["RESPONSE", 1], ["CANCELLED", 2]]);
  expect(existsSync(join(front.dir, "ran-second"))).toBe(false);
});

test("ACK_START -> STARTED when the request is picked up, before its response", async () => {
  const front = await startWorker(SLEEP_APP);
  front.sendReq(1, { path: "/a", query: "0.2", flags: FLAG_ACK_START });
  front.sendReq(2, { path: "/b", flags: FLAG_ACK_START });
  const frames = [await front.next(), await front.next(), await front.next(), await front.next()];
  expect(frames.map((f) => [frameName(f.type), f.id])).toEqual([["STARTED", 1], ["RESPONSE", 1], ["STARTED", 2], ["RESPONSE", 2]]);
});

test("T=2 runs two requests at the same time", async () => {
  // A barrier that only opens when both requests are inside the app at once.
  const front = await startWorker(`
import threading
barrier = threading.Barrier(2, timeout=3)
def application(environ, start_response):
    barrier.wait()
    start_response("200 OK", [])
    return [threading.current_thread().name.encode()]
`, { threads: 2 });
  front.sendReq(1, { flags: FLAG_ACK_START });
  front.sendReq(2, { flags: FLAG_ACK_START });
  const frames = [await front.next(), await front.next(), await front.next(), await front.next()];
  expect(frames.filter((f) => f.type === STARTED).map((f) => f.id).sort()).toEqual([1, 2]);
  const responses = frames.filter((f) => f.type === RESPONSE);
  expect(responses.length).toBe(2);
  const names = new Set(responses.map((f) => parseResponse(f.payload).body.toString()));
  expect(names.size).toBe(2);
});

test("T=2: CANCEL of a queued request -> CANCELLED", async () => {
  const front = await startWorker(SLEEP_APP, { threads: 2 });
  front.sendReq(1, { path: "/s1", query: "0.3" });
  front.sendReq(2, { path: "/s2", query: "0.3" });
  front.sendReq(3, { path: "/s3" });
  front.sendControl(CANCEL, 3);
  const got = [await front.next(), await front.next(), await front.next()].map((f) => [frameName(f.type), f.id]);
  expect(got).toContainEqual(["CANCELLED", 3]);
  expect(got).toContainEqual(["RESPONSE", 1]);
  expect(got).toContainEqual(["RESPONSE", 2]);
});

test("T=2 flow control and PULL", async () => {
  const front = await startWorker(`
import hashlib
def application(environ, start_response):
    if environ["PATH_INFO"] == "/echo":
        digest = hashlib.sha256(environ["wsgi.input"].read()).hexdigest().encode()
        start_response("200 OK", [])
        return [digest]
    start_response("200 OK", [])
    return (bytes([i]) * 65536 for i in range(40))
`, { threads: 2 });
  front.autoAck = false;
  front.sendReq(1, { path: "/big" });
  for (let i = 0; i < 200 && (front.dataBytes.get(1) ?? 0) < WINDOW_BYTES; i++) await Bun.sleep(10);
  // While request 1 is blocked, request 2 runs on the other thread.
  const body = Buffer.alloc(500_000, 7);
  front.bodies.set(2, body);
  front.sendReq(2, { method: "POST", path: "/echo", flags: FLAG_BODY_STREAM });
  const r2 = await front.next((f) => f.id === 2);
  expect(parseResponse(r2.payload).body.toString()).toBe(createHash("sha256").update(body).digest("hex"));
  expect(front.dataBytes.get(1)).toBe(WINDOW_BYTES);
  front.autoAck = true;
  front.send(ACK, 1, u32(WINDOW_BYTES));
  await front.next((f) => f.id === 1 && f.type === END);
  expect(front.dataBytes.get(1)).toBe(40 * 65536);
});

test("import error -> BOOT_ERROR with the traceback (once: not on stderr too), exit code 1", async () => {
  const front = await new FakeFront().start(`import no_such_module_xyz\n`);
  const f = await front.next();
  expect(frameName(f.type)).toBe("BOOT_ERROR");
  expect(f.payload.toString()).toContain("ModuleNotFoundError");
  expect(f.payload.toString()).toContain("no_such_module_xyz");
  expect(await front.proc.exited).toBe(1);
  await Bun.sleep(50);
  expect(front.stderr).not.toContain("no_such_module_xyz");
  expect(front.stdout).toBe("");
});

test("missing callable -> BOOT_ERROR, exit code 1", async () => {
  const front = await new FakeFront().start(`x = 1\n`);
  const f = await front.next();
  expect(frameName(f.type)).toBe("BOOT_ERROR");
  expect(f.payload.toString()).toContain("application");
  expect(await front.proc.exited).toBe(1);
});

test("app specs: module:callable, module:factory(args), path/file.py, default `app`", async () => {
  const factory = `
def create_app(greeting, punct="!"):
    def app(environ, start_response):
        start_response("200 OK", [])
        return [(greeting + punct).encode()]
    return app
def other(environ, start_response):
    start_response("200 OK", [])
    return [b"other"]
`;
  const cases: [string, string][] = [
    ['wpapp:create_app("hi", punct="?")', "hi?"],
    ["wpapp:other", "other"],
    ["sub/fileapp.py", "file"],
    ["sub/fileapp.py:app", "file"],
  ];
  for (const [spec, want] of cases) {
    const front = new FakeFront();
    mkdirSync(join(front.dir, "sub"));
    await front.start(factory, {
      app: spec,
      files: { "sub/fileapp.py": `import helper\napp = helper.make()\n`, "sub/helper.py": `def make():\n    def a(e, s):\n        s("200 OK", [])\n        return [b"file"]\n    return a\n` },
    });
    await front.ready();
    front.sendReq(1, {});
    const f = await front.next();
    expect([spec, parseResponse(f.payload).body.toString()]).toEqual([spec, want]);
    front.stop();
  }
});

test("BUNICORN_PYTHONPATH and BUNICORN_CHDIR put directories on sys.path", async () => {
  const front = new FakeFront();
  mkdirSync(join(front.dir, "libs"));
  await front.start(`
import os, sys, extra_lib
def application(environ, start_response):
    start_response("200 OK", [])
    return [(os.getcwd() + "|" + extra_lib.VALUE).encode()]
`, { env: { BUNICORN_PYTHONPATH: join(front.dir, "libs") }, files: { "libs/extra_lib.py": "VALUE = 'lib'\n" } });
  await front.ready();
  front.sendReq(1, {});
  const body = parseResponse((await front.next()).payload).body.toString();
  expect(body.endsWith("|lib")).toBe(true);
  expect(body.split("|")[0]).toContain("bunicorn-wp-");
});

test("a parent change (the front's process gone, socket still open) -> the worker exits", async () => {
  const front = new FakeFront();
  await front.start(HELLO_APP, { viaShell: true });
  const workerPid = await front.ready();
  try {
    expect(workerPid).not.toBe(front.proc.pid);
    front.proc.kill(9);  // the shell: the worker is re-parented
    for (let i = 0; i < 300 && !front.closed; i++) await Bun.sleep(10);
    expect(front.closed).toBe(true);
  } finally {
    try { process.kill(workerPid, 9); } catch {}
  }
});

test("EOF on the socket -> the worker exits", async () => {
  const front = await startWorker(HELLO_APP);
  front.closeSocket();
  const code = await Promise.race([front.proc.exited, Bun.sleep(3000).then(() => "still running")]);
  expect(code).toBe(0);
});

test("EOF while a request is running -> the worker exits", async () => {
  const front = await startWorker(STREAM_APP);
  front.autoAck = false;
  front.sendReq(1, { query: "n=100&size=65536&tag=eof" });
  for (let i = 0; i < 200 && (front.dataBytes.get(1) ?? 0) < WINDOW_BYTES; i++) await Bun.sleep(10);
  front.closeSocket();
  const code = await Promise.race([front.proc.exited, Bun.sleep(3000).then(() => "still running")]);
  expect(code).toBe(0);
});

test("STOP finishes in-flight work, then exits 0", async () => {
  for (const threads of [1, 3]) {
    const front = await startWorker(SLEEP_APP, { threads });
    front.sendReq(1, { path: "/a", query: "0.2" });
    front.sendReq(2, { path: "/b", query: "0.1" });
    await Bun.sleep(50);
    front.send(STOP, 0);
    const ids = [(await front.next()).id, (await front.next()).id].sort();
    expect(ids).toEqual([1, 2]);
    const code = await Promise.race([front.proc.exited, Bun.sleep(3000).then(() => "still running")]);
    expect([threads, code]).toEqual([threads, 0]);
    front.stop();
  }
});

const FILE_APP = `
import io, os
def application(environ, start_response):
    kind = environ["PATH_INFO"]
    if kind == "/file":
        f = open("data.bin", "rb")
        f.seek(10)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 4096)
    if kind == "/file-cl":
        f = open(os.path.abspath("data.bin"), "rb")
        f.read(5)
        start_response("200 OK", [("Content-Length", "20")])
        return environ["wsgi.file_wrapper"](f)
    if kind == "/bytesio":
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"0123456789"), 4)
`;

test("wsgi.file_wrapper over a real file -> START, SENDFILE(path, offset, length), END", async () => {
  const front = await startWorker(FILE_APP, { files: { "data.bin": "x".repeat(1000) } });
  front.sendReq(1, { path: "/file" });
  let frames = await front.collectResponse(1);
  expect(frames.map((f) => frameName(f.type))).toEqual(["START", "SENDFILE", "END"]);
  let p = frames[1]!.payload;
  expect([p.readUInt32BE(0), p.readUInt32BE(4), p.readUInt32BE(8), p.readUInt32BE(12)]).toEqual([0, 10, 0xffffffff, 0xffffffff]);
  expect(p.subarray(16).toString()).toBe(join(front.dir, "data.bin"));

  front.sendReq(2, { path: "/file-cl" });
  frames = await front.collectResponse(2);
  expect(frames.map((f) => frameName(f.type))).toEqual(["START", "SENDFILE", "END"]);
  p = frames[1]!.payload;
  expect([p.readUInt32BE(0), p.readUInt32BE(4), p.readUInt32BE(8), p.readUInt32BE(12)]).toEqual([0, 5, 0, 20]);

  front.sendReq(3, { path: "/bytesio" });
  frames = await front.collectResponse(3);
  expect(frames.map((f) => [frameName(f.type), f.type === DATA ? f.payload.toString() : ""])).toEqual([
    ["START", ""], ["DATA", "0123"], ["DATA", "4567"], ["DATA", "89"], ["END", ""],
  ]);
});

const LOG_ENVIRON_APP = `
def application(environ, start_response):
    environ["REMOTE_USER"] = "alice"
    environ["Mixed_Case"] = 42
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise ValueError("boom")
    start_response("200 OK", [])
    if path == "/stream":
        return iter([b"a", b"b"])
    if path == "/big":
        return [b"x" * 100000]
    return [b"ok"]
`;

for (const threads of [1, 4]) {
  test(`BUNICORN_LOG_ENVIRON (T=${threads}): LOG_ENVIRON just before each final frame (END, RESPONSE, ERROR), lowercased keys, str() values, absent keys left out`, async () => {
    const front = await startWorker(LOG_ENVIRON_APP, { threads, env: { BUNICORN_LOG_ENVIRON: JSON.stringify(["remote_user", "mixed_case", "request_method", "no_such"]) } });
    const expected = { remote_user: "alice", mixed_case: "42", request_method: "GET" };
    for (const [id, path, final] of [[1, "/", "RESPONSE"], [2, "/stream", "END"], [3, "/raise", "ERROR"], [4, "/big", "RESPONSE"], [5, "/", "RESPONSE"]] as const) {
      front.sendReq(id, { path });
      const frames = await front.collectResponse(id);
      const names = frames.map((f) => frameName(f.type));
      expect(names.slice(-2)).toEqual(["LOG_ENVIRON", final]);
      expect(names.filter((n) => n === "LOG_ENVIRON").length).toBe(1);
      expect(JSON.parse(frames.at(-2)!.payload.toString("utf8"))).toEqual(expected);
    }
  });
}

test("without BUNICORN_LOG_ENVIRON no LOG_ENVIRON frame is sent (the default format costs nothing)", async () => {
  const front = await startWorker(LOG_ENVIRON_APP);
  for (const [id, path] of [[1, "/"], [2, "/stream"], [3, "/raise"]] as const) {
    front.sendReq(id, { path });
    await front.collectResponse(id);
  }
  expect(front.received.some((f) => f.type === LOG_ENVIRON)).toBe(false);
});

test("stdout carries only what the app prints", async () => {
  const front = await startWorker(`
def application(environ, start_response):
    print("hello from the app")
    start_response("200 OK", [])
    return [b""]
`);
  front.sendReq(1, {});
  await front.next();
  for (let i = 0; i < 50 && !front.stdout.includes("\n"); i++) await Bun.sleep(20);
  expect(front.stdout).toBe("hello from the app\n");
});

test("worker.py and bridge.ts agree on every frame type, REQ flag, the header layout and the fds", () => {
  const script = `
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("bunicorn_worker", sys.argv[1])
w = importlib.util.module_from_spec(spec)
spec.loader.exec_module(w)
names = ${JSON.stringify(Object.keys(FRAME))}
flags = ${JSON.stringify(Object.keys(REQ_FLAG))}
print(json.dumps({
  "frames": {n: getattr(w, n) for n in names},
  "flags": {n: getattr(w, "FLAG_" + n) for n in flags},
  "header": [w.HEADER.format, w.HEADER_SIZE],
  "fds": [w.DATA_FD, w.CONTROL_FD],
  "frame_names": sorted(n for n in dir(w) if n.isupper() and isinstance(getattr(w, n), int) and n in names),
}))`;
  const out = Bun.spawnSync(["python3", "-c", script, WORKER_PY]);
  expect(out.stderr.toString()).toBe("");
  const py = JSON.parse(out.stdout.toString());
  expect(py.frames).toEqual({ ...FRAME });
  expect(py.flags).toEqual({ ...REQ_FLAG });
  // "!IBI": big-endian u32 payload length, u8 type, u32 request id.
  expect(py.header).toEqual(["!IBI", FRAME_HEADER_BYTES]);
  expect(py.fds).toEqual([DATA_FD, CONTROL_FD]);
  // A frame type the TypeScript side does not know would show up here as a missing name.
  const src = require("node:fs").readFileSync(WORKER_PY, "utf8") as string;
  const declared = [...src.matchAll(/^([A-Z_, ]+) = (?:\d+(?:, \d+)*|range\(\d+, \d+\))$/gm)]
    .flatMap((m) => m[1]!.split(",").map((n) => n.trim()))
    .filter((n) => !n.startsWith("FLAG_") && !/_(BYTES|S|FD)$/.test(n) && n !== "DATA_FD");
  expect(declared.sort()).toEqual(Object.keys(FRAME).sort());
  // The mark on the lines of errors the worker reports itself (bridge.ts forwardLine reads it).
  expect(src).toContain('REPORT_MARK = "\\x1e"');
  expect(require("node:fs").readFileSync(join(import.meta.dir, "..", "bridge.ts"), "utf8")).toContain('const REPORT_MARK = "\\x1e";');
});

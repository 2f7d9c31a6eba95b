/**
 * The Python bridge: the front's side of worker.py. It runs Python WSGI apps in supervised
 * worker processes and is the app stage of every exchange whose app is Python.
 *
 * Each worker is a `python -c` process with two socketpairs as fd 3 and fd 4, made by
 * Bun.spawn and known to nobody else (no name on disk or in the abstract namespace that
 * another local user could connect to first):
 *   - the data channel (fd 3): requests, bodies, responses, credit, in order;
 *   - the control channel (fd 4): take-backs (CANCEL, ABORT of a request not started), read
 *     by a thread of their own in the worker, so a request waiting behind a slow one can be
 *     taken back even while the app runs on the thread that reads the data channel.
 *
 * A request's life here: queued (in this pool) → sent (in a worker, not started: it can
 * still be taken back, and is re-sent with its whole body if its worker dies) → started
 * (the app runs it: never re-sent; if its worker dies it gets 502).
 *
 * Sections:
 *   1. The frame protocol (the twin of worker.py §1; test/bridge.protocol.test.ts checks they agree)
 *   2. What the bridge needs of an exchange
 *   3. Worker handles: one process, its channels, frames in and out
 *   4. The pool: requests in, frames from workers, a request's life
 *   5. Supervision: spawn, keep the count, back off, reap, murder, reload
 */

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
// @ts-expect-error: Bun imports the file as text (and embeds it in the binary); TypeScript has no type for .py
import WORKER_SOURCE from "./worker.py" with { type: "text" };
import type { AccessLogNeeds, AppStage, Config, Logger, RequestHead, StatsdClient } from "./server.ts";
import { closeFd, makeSocketPair, sendFds } from "./systemd.ts";

// ==== 1. The frame protocol ====
// Every frame: a 9-byte header (u32 payload length, u8 type, u32 request id), then the payload.

export const FRAME = {
  // front → worker
  REQ: 1, BODY: 2, BODY_EOF: 3, CANCEL: 4, ABORT: 5, ACK: 6, STOP: 7,
  // On the control channel, a quick stop (SIGINT, SIGQUIT): run worker_int, exit now.
  QUIT: 8,
  // worker → front
  READY: 20, BOOT_ERROR: 21, START: 22, DATA: 23, END: 24, RESPONSE: 25, ERROR: 26,
  PULL: 27, STARTED: 28, CANCELLED: 29, SENDFILE: 30,
  // Just before a request's final frame, only when BUNICORN_LOG_ENVIRON names keys (the
  // access log's {var}e atoms): a JSON object (UTF-8), lowercased key → str(value) as the
  // app left the environ; absent keys are left out.
  LOG_ENVIRON: 31,
} as const;
type Frame = (typeof FRAME)[keyof typeof FRAME];

/** REQ flags (the payload's first byte). */
export const REQ_FLAG = { BODY_INLINE: 1, BODY_STREAM: 2, CHUNKED: 4, ACK_START: 8 } as const;
export const FRAME_HEADER_BYTES = 9;
/** The worker's fds for its two channels (Bun.spawn's stdio entries 3 and 4). */
export const DATA_FD = 3, CONTROL_FD = 4;

/**
 * Payloads smaller than this are copied into their frame and small frames are joined into
 * one write (one syscall per turn); larger ones are written from the bytes they are in, as
 * copying into fresh memory costs more than the extra write (page faults on new buffers).
 */
const COPY_PAYLOAD_BELOW_BYTES = 64 * 1024;
/** A channel's scratch buffer for small frames (grows for one bigger frame), and what counts as small. */
const SCRATCH_BYTES = 64 * 1024;
const SMALL_PIECE_BYTES = 4 * 1024;
const NO_PIECES: readonly Uint8Array[] = [];
/**
 * A body that is all here when the request is dispatched, and not larger than this, travels
 * inside REQ (as the pieces it came in; see COPY_PAYLOAD_BELOW_BYTES): the worker then
 * never waits on a PULL. The request keeps these pieces until the app starts, so it can be
 * re-sent whole to another worker. The same as the most a connection reads ahead of its app.
 */
const MAX_INLINE_BODY_BYTES = 1024 * 1024;

/** One frame as a buffer of its own (the writer's frame() puts frames into its scratch instead). */
export function encodeFrame(type: Frame, id: number, payload: Uint8Array | null = null): Buffer {
  const length = payload === null ? 0 : payload.length;
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + length);
  writeFrameHeader(frame, 0, type, id, length);
  if (payload !== null) frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

function writeFrameHeader(buf: Buffer, off: number, type: Frame, id: number, payloadLength: number): void {
  buf.writeUInt32BE(payloadLength, off);
  buf[off + 4] = type;
  buf.writeUInt32BE(id, off + 5);
}

/**
 * Writes s at off as latin-1 (PEP 3333's native strings: one byte per character) and
 * returns the offset after it. A plain loop: for the short keys and values of an environ it
 * is several times faster than building one string and writing that (measured).
 */
function writeLatin1(buf: Buffer, off: number, s: string): number {
  for (let i = 0; i < s.length; i++) buf[off++] = s.charCodeAt(i);
  return off;
}

/**
 * The last RESPONSE head decoded. Most apps answer alike request after request, so the
 * next head is compared as bytes and, when it is the same, its decoding is used again. The
 * headers array is then shared by those exchanges: nothing writes into a RESPONSE's headers
 * (only START's, in takeBufferingChoice, which never come from here).
 */
const lastResponseHead = { bytes: Buffer.alloc(0), decoded: null as [string, [string, string][]] | null };

function decodeResponseHeadAt(buf: Buffer, start: number, end: number): [string, [string, string][]] {
  const last = lastResponseHead;
  const n = end - start;
  if (last.decoded !== null && last.bytes.length === n && buf.compare(last.bytes, 0, n, start, end) === 0) return last.decoded;
  last.decoded = decodeResponseHead(buf.toString("latin1", start, end));
  last.bytes = Buffer.from(buf.subarray(start, end)); // a copy: the read's buffer goes on to other uses
  return last.decoded;
}

/** "status\0name\0value\0…" → [status, headers]. */
function decodeResponseHead(text: string): [string, [string, string][]] {
  const parts = text.split("\0");
  const headers: [string, string][] = [];
  for (let i = 1; i + 1 < parts.length; i += 2) headers.push([parts[i], parts[i + 1]]);
  return [parts[0], headers];
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/**
 * Splits a channel's byte stream into frames. The reads that make up an incomplete frame
 * are kept as they came and joined once, when the frame is whole: a 1 MiB frame arriving
 * in 64 KiB reads is copied once, not sixteen times.
 */
export class FrameReader {
  private inbox: Buffer[] = [];
  private inboxBytes = 0;
  private inboxNeeds = 0; // bytes of the incomplete frame (or of a header, until it is known)

  /** Calls `each` with every whole frame in the bytes so far: its type, id, and where its payload is in `buf`. */
  read(bytes: Buffer, each: (type: Frame, id: number, buf: Buffer, start: number, end: number) => void): void {
    let buf = bytes;
    if (this.inboxBytes > 0) {
      this.inbox.push(bytes);
      this.inboxBytes += bytes.length;
      if (this.inboxBytes < this.inboxNeeds) return;
      buf = Buffer.concat(this.inbox, this.inboxBytes);
      this.inbox = [];
      this.inboxBytes = 0;
    }
    let off = 0;
    while (buf.length - off >= FRAME_HEADER_BYTES) {
      const length = buf.readUInt32BE(off);
      if (buf.length - off - FRAME_HEADER_BYTES < length) break;
      const type = buf[off + 4] as Frame;
      const id = buf.readUInt32BE(off + 5);
      const start = off + FRAME_HEADER_BYTES;
      off = start + length;
      each(type, id, buf, start, off);
    }
    if (off < buf.length) {
      const rest = buf.subarray(off);
      this.inbox = [rest];
      this.inboxBytes = rest.length;
      this.inboxNeeds = rest.length >= FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES + rest.readUInt32BE(0) : FRAME_HEADER_BYTES;
    }
  }
}

// ==== 2. What the bridge needs of an exchange ====

/** The part of an exchange (server.ts) that an app stage drives: the request, its body, the response. */
export interface AppExchange {
  readonly head: RequestHead;
  readonly environ: Record<string, any>;
  readonly isDone: boolean;
  readonly isAborted: boolean;
  /** Called once when the client is gone or the exchange was cut. */
  onAbort: (() => void) | null;
  knownLength: number;
  /** "METHOD target VERSION", for logs. */
  describe(): string;
  /** For the access log, set only when its format asks: the worker's pid (`p`) and the environ it reported (`{var}e`). */
  workerPid: number;
  workerEnviron: Record<string, string> | null;
  // The request body.
  /** Request bytes received and not yet read: the body's, then any pipelined request's. */
  readonly bufferedBytes: number;
  readReceivedBody(max: number): { pieces: Uint8Array[]; bytes: number; isEnd: boolean };
  whenBodyReadable(cb: () => void): void;
  // The response.
  setResponse(status: string, headers: [string, string][]): void;
  writeBody(chunk: Uint8Array): void;
  endResponse(): void;
  failApp(err: unknown): void;
  failWith(status: number, detail: string, extraHeaders?: [string, string][]): void;
  /** Hand what is queued to the client's socket now. */
  flush(): void;
  readonly isBackedUp: boolean;
  whenDrained(cb: () => void): void;
}

export interface PythonStage extends AppStage {
  /** Start the master helper (as `owner`, when --user/--group name one) if the config file has master hooks, and run on_starting. */
  startHooks(owner?: { uid: number; gid: number } | null): Promise<void>;
  /** Run a master hook (when_ready, on_exit, pre_exec...) if the config file defines it; resolves when it returned. */
  runHook(name: string, args?: Record<string, unknown>): Promise<void>;
  /** Start the workers and wait until each has imported the app. */
  boot(): Promise<void>;
  /** No new workers from now on: the server is draining (SIGTERM) or stopping. */
  beginDrain(): void;
  /** A new generation of workers; settles once each has booted or failed to (the old ones retire as new ones are ready). */
  reload(): Promise<void>;
  addWorker(): void;
  removeWorker(): void;
  /** Every worker stops gracefully and none replaces it (SIGWINCH when daemonized); addWorker starts one again. */
  stopWorkers(): void;
  /** For `bunicorn ctl workers`: each worker process, in start order. */
  describeWorkers(): WorkerReport[];
  /** Workers ready to take a request now (--health-path: 200 while at least one is). */
  readyWorkers(): number;
  /** Read-only counts for --metrics-bind. */
  stats(): PoolStats;
}

/** Why a worker was replaced: its death, its --timeout, its --max-requests, or a SIGHUP reload. */
export type RestartReason = "crash" | "timeout" | "max-requests" | "reload";

export interface PoolStats {
  workers: Record<"booting" | "ready" | "retiring", number>;
  /** Requests waiting for a worker: in the pool's queue, or sent to a worker that has not started them. */
  queued: number;
  restarts: Readonly<Record<RestartReason, number>>;
  /** Answers the bridge gave instead of the app's. */
  faults: Readonly<Record<502 | 503 | 504, number>>;
  /** Bytes of streamed answers held in temporary files now. */
  spooledFileBytes: number;
}

export interface WorkerReport { id: number; pid: number; generation: number; state: string; busy: number; served: number; age_s: number }

/** A worker that could not load the app at start-up: the server exits with gunicorn's status 3. */
export class WorkerBootError extends Error {}

export class PythonError extends Error {
  constructor(readonly traceback: string) {
    super(traceback.trimEnd().split("\n").pop() ?? "Python exception");
    this.stack = traceback.trimEnd();
  }
}

function describeError(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}

// ==== 3. Worker handles ====

/** SENDFILE reads the file in pieces this big, pausing while the client is backed up. */
const SENDFILE_PIECE_BYTES = 256 * 1024;
/**
 * Requests a worker may hold beyond its threads. They wait in the worker's socket, so it
 * starts the next one without a round trip (one-at-a-time caps near 19k/s, bun-notes.md).
 * 16 rather than 4: with 50 clients on 2 workers, 4 left the workers waiting on wake-ups
 * (~15k/s against ~21k/s, hello app, 2 cores); more than 16 gained nothing.
 */
const PIPELINE_DEPTH = 16;
/** Pipeline only behind requests younger than this; older ones may hang, so we take back what waits behind them. */
const PIPELINE_MAX_AGE_MS = 50;
/**
 * `python -c WORKER_BOOTSTRAP bunicorn-worker`: reads worker.py from stdin and runs it as
 * __main__ (tracebacks name it bunicorn.py); the argument is its role, and names the process in ps
 * (bunicorn-worker, or bunicorn-master for the helper that runs master hooks).
 */
const WORKER_ARGV0 = "bunicorn-worker";
const WORKER_BOOTSTRAP = 'import sys; exec(compile(sys.stdin.buffer.read(), "bunicorn.py", "exec"))';

/** `python -c BOOTSTRAP ROLE ARGS...`: worker.py in one of its roles (it arrives on stdin: pythonProgram()). */
export function pythonRole(python: string, role: string, args: string[] = []): string[] {
  return [python, "-c", WORKER_BOOTSTRAP, role, ...args];
}

/** worker.py's source, for the stdin of a pythonRole process. */
export function pythonProgram(): Buffer {
  return Buffer.from(WORKER_SOURCE);
}
/** After a worker's process exits, how long its data channel may take to deliver its last frames (a BOOT_ERROR). */
const EXIT_SETTLE_MS = 200;

type RequestState = "queued" | "sent" | "started";

/** One request on its way through a worker. */
class PyRequest {
  state: RequestState = "queued";
  worker: PyWorker | null = null;
  startedAt = 0;
  isCancelSent = false;
  /** The whole body, kept while the request can still be re-sent (inline bodies only). */
  body: readonly Uint8Array[] | null = null;
  sendfile: Promise<void> | null = null;
  /** A streamed answer held for the client (nginx's proxy_buffering); null: credit follows the client. */
  spool: ResponseSpool | null = null;
  constructor(readonly id: number, readonly ex: AppExchange) {}
}

// -- Answers held for slow clients --

/** The --response-buffer-* bounds, in bytes. */
interface SpoolLimits { memoryBytes: number; fileBytes: number; totalFileBytes: number }

/** The temporary-file bytes of every answer held now, against --response-buffer-total. */
const spooledFileBytes = { now: 0 };

/**
 * A streamed answer the front takes from its worker as fast as the worker makes it, and
 * gives the client as fast as the client reads it, so a slow reader never holds a worker
 * (nginx's proxy_buffering). Up to `memoryBytes` wait in memory, then up to `fileBytes` in a
 * temporary file (mode 0600, unlinked at once: nothing is left even after kill -9 of the
 * front), all answers' files together within `totalFileBytes`. Past those bounds the
 * worker's credit is held back until the client catches up: the backpressure of old.
 */
class ResponseSpool {
  /** In order: bytes in memory, or the length of bytes in the file. */
  private readonly segments: (Uint8Array | number)[] = [];
  private memoryBytes = 0;
  private fd = -1;
  private fileEnd = 0;
  private fileStart = 0;
  private withheld: number[] = []; // credit not yet given back (past the bounds)
  private isReading = false;
  private isWaitingForDrain = false;
  private onEnd: (() => void) | null = null;
  private isClosed = false;

  constructor(private readonly ex: AppExchange, private readonly limits: SpoolLimits,
              private readonly write: (chunk: Uint8Array) => void, private readonly giveCredit: (bytes: number) => void) {}

  /** A DATA payload from the worker. */
  push(data: Uint8Array): void {
    if (this.isClosed) return;
    const n = data.length;
    if (this.segments.length === 0 && !this.ex.isBackedUp) {
      this.write(data); // straight through: the client keeps up
      this.giveCredit(n);
    } else if (this.fileEnd === this.fileStart && this.memoryBytes + n <= this.limits.memoryBytes) {
      this.keepInMemory(data);
      this.giveCredit(n);
    } else if (this.canSpill(n)) {
      fs.writeSync(this.fd, data, 0, n, this.fileEnd);
      this.fileEnd += n;
      spooledFileBytes.now += n;
      this.segments.push(n);
      this.giveCredit(n);
    } else {
      this.keepInMemory(data); // past every bound: held, and its credit with it
      this.withheld.push(n);
    }
    this.pump();
  }

  /** The worker is done: the answer ends once the client has the rest. */
  end(onEnd: () => void): void {
    this.onEnd = onEnd;
    this.pump();
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    spooledFileBytes.now -= this.fileEnd - this.fileStart;
    this.fileStart = this.fileEnd;
    if (this.fd !== -1) fs.close(this.fd, () => {});
    this.fd = -1;
  }

  private keepInMemory(data: Uint8Array): void {
    // A copy: the payload is a view into the worker channel's read buffer (up to 512 KiB),
    // which the view would keep alive for as long as the client takes.
    this.segments.push(Buffer.from(data));
    this.memoryBytes += data.length;
  }

  private canSpill(n: number): boolean {
    if (this.fileEnd - this.fileStart + n > this.limits.fileBytes || spooledFileBytes.now + n > this.limits.totalFileBytes) return false;
    if (this.fd === -1) {
      const file = path.join(os.tmpdir(), `bunicorn-spool-${process.pid}-${Math.random().toString(36).slice(2)}`);
      try {
        this.fd = fs.openSync(file, "wx+", 0o600);
        fs.unlinkSync(file);
      } catch {
        return false; // no temporary file: hold it in memory and let the worker wait
      }
    }
    return true;
  }

  /** Give the client what it can take now; read the file without blocking the event loop. */
  private pump(): void {
    const ex = this.ex;
    while (this.segments.length > 0 && !this.isReading && !this.isClosed) {
      if (ex.isDone || ex.isAborted) return this.close();
      if (ex.isBackedUp) return this.waitForDrain();
      const next = this.segments[0];
      if (typeof next !== "number") {
        this.segments.shift();
        this.memoryBytes -= next.length;
        this.write(next);
        this.releaseCredit();
        continue;
      }
      this.isReading = true;
      const piece = Buffer.allocUnsafe(next);
      fs.read(this.fd, piece, 0, next, this.fileStart, (err) => {
        this.isReading = false;
        if (this.isClosed) return;
        if (err !== null) return this.ex.failApp(err);
        this.segments.shift();
        this.fileStart += next;
        spooledFileBytes.now -= next;
        this.write(piece);
        this.pump();
      });
      return;
    }
    if (this.segments.length === 0 && this.onEnd !== null && !this.isClosed) {
      const onEnd = this.onEnd;
      this.onEnd = null;
      this.close();
      onEnd();
    }
  }

  private waitForDrain(): void {
    if (this.isWaitingForDrain) return;
    this.isWaitingForDrain = true;
    this.ex.whenDrained(() => {
      this.isWaitingForDrain = false;
      this.pump();
    });
  }

  /** Credit held back past the bounds goes to the worker once memory is within them again. */
  private releaseCredit(): void {
    while (this.withheld.length > 0 && this.memoryBytes <= this.limits.memoryBytes) this.giveCredit(this.withheld.shift()!);
  }
}

/** X-Accel-Buffering: no (nginx's header) turns the hold off for one answer: streams, server-sent events. */
function takeBufferingChoice(headers: [string, string][]): boolean {
  for (let i = 0; i < headers.length; i++) {
    if (headers[i][0].toLowerCase() !== "x-accel-buffering") continue;
    const isOff = headers[i][1].toLowerCase() === "no";
    headers.splice(i, 1); // for the front, as nginx hides it from the client
    return !isOff;
  }
  return true;
}

/** "dying": killed for a timeout and given ABORT_GRACE_MS to report where it was stuck. */
type WorkerState = "booting" | "ready" | "retiring" | "dying" | "dead";

/** A worker's process: spawned by this process (Bun.spawn), or forked by the --preload helper. */
interface WorkerProcess {
  readonly pid: number;
  kill(signal?: NodeJS.Signals): void;
}

/** How a worker's process ended, for the log. */
interface ExitStatus { code: number | null; signal: string | null }

/**
 * Buffered writes of frames to one channel, in order, one write per turn of the event loop.
 * Small frames are written back to back into a scratch buffer that is used again once the
 * socket has taken it all (a request costs no allocation of its own); big payloads are
 * queued as they are (views into the client's bytes: a body is never copied on its way).
 */
export class FrameWriter {
  socket: import("bun").Socket<unknown> | null = null;
  private scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private used = 0; // scratch bytes holding frames
  private sealed = 0; // of those, the ones already in the outbox (as a view)
  private outbox: Uint8Array[] = [];
  private isFlushQueued = false;
  private isWriteBlocked = false; // a write fell short: the rest goes on drain

  /** Room for `n` bytes of frames at the returned offset of scratch; they go out at the end of this turn. */
  reserve(n: number): number {
    if (this.used + n > this.scratch.length) this.renewScratch(n);
    const off = this.used;
    this.used += n;
    this.queueFlush();
    return off;
  }

  /** One frame: its header, then the payload's pieces (copied when small; a big payload's pieces are queued as they are). */
  frame(type: Frame, id: number, pieces: readonly Uint8Array[], length: number): void {
    const isBig = length >= COPY_PAYLOAD_BELOW_BYTES;
    const off = this.reserve(FRAME_HEADER_BYTES + (isBig ? 0 : length));
    writeFrameHeader(this.scratch, off, type, id, length);
    this.putPayload(pieces, isBig, off + FRAME_HEADER_BYTES);
  }

  /** A REQ frame: u8 flags, u32 + PATH_INFO (may hold NUL), u32 + the other environ items as k\0v\0…, then the inline body. */
  request(id: number, flags: number, environ: Record<string, string>, body: readonly Uint8Array[], bodyBytes: number): void {
    const path = environ.PATH_INFO;
    let fieldBytes = 0;
    for (const key in environ) if (key !== "PATH_INFO") fieldBytes += key.length + environ[key].length + 2;
    if (fieldBytes > 0) fieldBytes--; // no NUL after the last value
    const headBytes = 1 + 4 + path.length + 4 + fieldBytes;
    const isBig = headBytes + bodyBytes >= COPY_PAYLOAD_BELOW_BYTES;
    let off = this.reserve(FRAME_HEADER_BYTES + headBytes + (isBig ? 0 : bodyBytes));
    const buf = this.scratch;
    writeFrameHeader(buf, off, FRAME.REQ, id, headBytes + bodyBytes);
    off += FRAME_HEADER_BYTES;
    buf[off] = flags;
    buf.writeUInt32BE(path.length, off + 1);
    off = writeLatin1(buf, off + 5, path);
    buf.writeUInt32BE(fieldBytes, off);
    off += 4;
    const fieldsEnd = off + fieldBytes;
    for (const key in environ) {
      if (key === "PATH_INFO") continue;
      off = writeLatin1(buf, off, key);
      buf[off++] = 0;
      off = writeLatin1(buf, off, environ[key]);
      if (off < fieldsEnd) buf[off++] = 0;
    }
    this.putPayload(body, isBig, off);
  }

  /** A frame's payload pieces: copied into scratch at off (reserved for them), or, when the payload is big, queued as they are. */
  private putPayload(pieces: readonly Uint8Array[], isBig: boolean, off: number): void {
    if (isBig) {
      for (const piece of pieces) this.queue(piece);
      return;
    }
    const buf = this.scratch;
    for (const piece of pieces) {
      buf.set(piece, off);
      off += piece.length;
    }
  }

  /** Bytes that follow what is queued (a big frame's payload piece): small ones copied into scratch, others kept as they are. */
  queue(bytes: Uint8Array): void {
    if (bytes.length < SMALL_PIECE_BYTES) {
      const off = this.reserve(bytes.length);
      this.scratch.set(bytes, off);
      return;
    }
    this.seal();
    this.outbox.push(bytes);
    this.queueFlush();
  }

  private queueFlush(): void {
    if (!this.isFlushQueued) {
      // Frames made in one turn of the event loop go out in one write: setImmediate runs
      // after every socket callback of the turn (a microtask would run after each one),
      // so the requests of many clients reach a worker together, with one wake-up.
      this.isFlushQueued = true;
      setImmediate(this.flushQueued);
    }
  }

  /** The frames in scratch so far go to the outbox, as a view, ahead of what is queued next. */
  private seal(): void {
    if (this.used > this.sealed) {
      this.outbox.push(this.scratch.subarray(this.sealed, this.used));
      this.sealed = this.used;
    }
  }

  /** A fresh scratch buffer; views of the old one in the outbox keep it alive until written. */
  private renewScratch(atLeast: number): void {
    this.seal();
    this.scratch = Buffer.allocUnsafe(Math.max(SCRATCH_BYTES, atLeast));
    this.used = this.sealed = 0;
  }

  private readonly flushQueued = (): void => {
    this.isFlushQueued = false;
    if (!this.isWriteBlocked) this.writeOutbox();
  };

  onDrain(): void {
    this.isWriteBlocked = false;
    this.writeOutbox();
  }

  private writeOutbox(): void {
    const socket = this.socket;
    if (socket === null) return;
    this.seal();
    const outbox = this.outbox;
    let i = 0;
    while (i < outbox.length) {
      const data = outbox[i];
      const written = socket.write(data);
      if (written < 0) return; // closed: the worker's end is handled by the pool
      if (written < data.length) {
        outbox[i] = data.subarray(written);
        outbox.splice(0, i);
        this.isWriteBlocked = true;
        // What is left may be a view of scratch; new frames go after it (used only goes back to 0 below).
        return;
      }
      i++;
    }
    outbox.length = 0;
    this.used = this.sealed = 0; // all taken: scratch is free again
  }
}

/** One Python process, its two channels, and the requests it holds (in the order sent: the order it runs them). */
class PyWorker {
  state: WorkerState = "booting";
  readonly requests = new Map<number, PyRequest>();
  /** Of those, the started ones (the app is running them), oldest first: each is added when it starts, so startedAt only grows. */
  readonly running: PyRequest[] = [];
  served = 0;
  readyAt = 0;
  exit: ExitStatus | null = null;
  /** Why the front killed it, if it did (then its death is no failed start). */
  killedFor: string | null = null;
  /** Why it was retired, when it is replaced (not when TTOU or a stop retires it). */
  retiredFor: RestartReason | null = null;
  hasBootError = false;
  isDataClosed = false;
  readonly data = new FrameWriter();
  readonly control = new FrameWriter();
  readonly reader = new FrameReader();
  readonly controlReader = new FrameReader();
  readonly booted: Promise<void>;
  resolveBoot!: () => void;
  rejectBoot!: (reason: string) => void;

  constructor(readonly id: number, readonly generation: number, readonly maxRequests: number,
              readonly proc: WorkerProcess, readonly spawnedAt: number) {
    this.booted = new Promise<void>((resolve, reject) => { this.resolveBoot = resolve; this.rejectBoot = reject; });
    this.booted.catch(() => {});
  }

  get pid(): number { return this.proc.pid; }
  get busy(): number { return this.requests.size; }

  send(type: Frame, id: number, payload: Uint8Array | null = null): void {
    if (this.state !== "dead") this.data.frame(type, id, payload === null ? NO_PIECES : [payload], payload === null ? 0 : payload.length);
  }

  sendControl(type: Frame, id: number): void {
    if (this.state !== "dead") this.control.frame(type, id, NO_PIECES, 0);
  }

  /** A frame whose payload is the pieces in order; large ones are queued as they are, not copied. */
  sendPieces(type: Frame, id: number, pieces: Uint8Array[], length: number): void {
    if (this.state !== "dead") this.data.frame(type, id, pieces, length);
  }

  sendRequest(id: number, flags: number, environ: Record<string, string>, body: readonly Uint8Array[], bodyBytes: number): void {
    if (this.state !== "dead") this.data.request(id, flags, environ, body, bodyBytes);
  }

  /** Every started request is younger than PIPELINE_MAX_AGE_MS: what waits behind them will soon run. */
  isYoung(now: number): boolean {
    // This runs for each busy worker at each dispatch: only the oldest is looked at.
    const oldest = this.running[0];
    return oldest === undefined || now - oldest.startedAt <= PIPELINE_MAX_AGE_MS;
  }

  describe(): string {
    return `worker ${this.id} (pid ${this.pid})`;
  }
}

// ==== 4. The pool ====

class PythonWorkerPool implements PythonStage {
  private readonly workers = new Set<PyWorker>();
  private readonly queue: PyRequest[] = [];
  /** Requests whose body is still arriving (isBodyStillArriving): in no queue yet, but waiting all the same. */
  private readonly awaitingBody = new Set<PyRequest>();
  /** Requests sent to a worker that has not started them: they wait there, and count against --backlog. */
  private waitingInWorkers = 0;
  private nextWorkerId = 1;
  private nextRequestId = 1;
  private generation = 1;
  private isDraining = false;
  private isBooted = false;
  private readonly python: string;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private readonly backoff = new SpawnBackoff();
  private spawnTimer: ReturnType<typeof setTimeout> | null = null;
  /** The last boot traceback logged: the same one is said once, not at every retry. */
  private lastBootError = "";
  /** --statsd-host: the last gunicorn.workers gauge sent, and when gunicorn.backlog was. */
  private lastWorkersGauge = -1;
  private lastBacklogAt = 0;

  private readonly spoolLimits: SpoolLimits;
  private master: MasterHooks | null = null;
  /** Workers being started whose pre_fork hook has not returned yet (they count as live). */
  private startsPending = 0;

  constructor(private readonly config: Config, private readonly log: Logger, private readonly logNeeds: AccessLogNeeds) {
    this.python = choosePython(config);
    this.spoolLimits = { memoryBytes: config.responseBufferMemoryBytes, fileBytes: config.responseBufferFileBytes, totalFileBytes: config.responseBufferTotalBytes };
    process.on("exit", () => this.killAll());
  }

  // -- requests in --

  handle(ex: AppExchange): void {
    if (this.queue.length + this.waitingInWorkers >= this.config.backlog) {
      // --backlog counts every request waiting for the app, in this queue or inside a worker.
      this.refuse(ex, `all ${this.config.backlog} places of --backlog are taken`);
      return;
    }
    const request = new PyRequest(this.nextRequestId, ex);
    this.nextRequestId = this.nextRequestId >= 0xffffffff ? 1 : this.nextRequestId + 1;
    ex.onAbort = () => this.onClientGone(request);
    if (this.isBodyStillArriving(ex)) return this.queueOnceBodyArrived(request);
    this.queue.push(request);
    this.dispatch();
  }

  /**
   * A body of known length up to --request-buffer is received whole before its request
   * waits for a worker (nginx's proxy_request_buffering), so a slow uploader never holds
   * one. Larger and chunked bodies stream as the app reads them; so does one whose client
   * waits for 100 Continue (the app decides whether it wants the body).
   */
  private isBodyStillArriving(ex: AppExchange): boolean {
    const head = ex.head;
    return !head.chunked && head.contentLength > 0 && head.contentLength <= this.config.requestBufferBytes &&
      !head.expectContinue && ex.bufferedBytes < head.contentLength;
  }

  private queueOnceBodyArrived(request: PyRequest): void {
    const ex = request.ex;
    this.awaitingBody.add(request);
    ex.whenBodyReadable(() => {
      this.awaitingBody.delete(request);
      if (ex.isAborted || ex.isDone) return;
      if (this.isBodyStillArriving(ex)) return this.queueOnceBodyArrived(request);
      this.queue.push(request);
      this.dispatch();
    });
  }

  /** Hand queued requests to workers with a free thread, least busy first. */
  private dispatch(): void {
    while (this.queue.length > 0) {
      const worker = this.pickWorker();
      if (worker === null) return;
      const request = this.queue.shift()!;
      if (request.ex.isAborted || request.ex.isDone) continue;
      this.sendRequest(worker, request);
    }
  }

  /** A worker with a free thread, least busy first; else one whose pipeline has room behind young requests. */
  private pickWorker(): PyWorker | null {
    const threads = this.config.threads;
    let now = -1;
    let best: PyWorker | null = null;
    for (const w of this.workers) {
      if (w.state !== "ready" || w.busy >= threads + PIPELINE_DEPTH) continue;
      if (w.maxRequests > 0 && w.served + w.busy >= w.maxRequests) continue; // --max-requests: never hand it more
      if (w.busy >= threads && !w.isYoung(now < 0 ? (now = performance.now()) : now)) continue;
      if (best === null || w.busy < best.busy) best = w;
    }
    return best;
  }

  private sendRequest(worker: PyWorker, request: PyRequest): void {
    const ex = request.ex;
    let flags = 0;
    if (request.body === null && !ex.head.expectContinue) request.body = this.takeBodyIfComplete(ex);
    // A body that is all here travels with the request (and stays here until it starts); anything else is pulled.
    const inline = request.body ?? NO_PIECES;
    let inlineBytes = 0;
    for (const piece of inline) inlineBytes += piece.length;
    if (inlineBytes > 0) flags |= REQ_FLAG.BODY_INLINE;
    else if (request.body === null) flags |= REQ_FLAG.BODY_STREAM;
    if (ex.head.chunked) flags |= REQ_FLAG.CHUNKED;
    // Of a worker's requests, those sent while it has a free thread start at once (the worker
    // runs them in order); one sent behind others asks the worker to say when it starts.
    const startsAtOnce = worker.busy < this.config.threads;
    if (!startsAtOnce) flags |= REQ_FLAG.ACK_START;
    request.worker = worker;
    request.isCancelSent = false;
    if (this.logNeeds.isPidLogged) ex.workerPid = worker.pid;
    worker.requests.set(request.id, request);
    if (startsAtOnce) this.markStarted(request);
    else {
      request.state = "sent";
      this.waitingInWorkers++;
    }
    worker.sendRequest(request.id, flags, ex.environ, inline, inlineBytes);
  }

  /** The whole body, in the pieces it came in, if it is all here and not large; null when it must be streamed. */
  private takeBodyIfComplete(ex: AppExchange): readonly Uint8Array[] | null {
    const head = ex.head;
    if (!head.chunked && head.contentLength <= 0) return NO_PIECES;
    if (head.chunked || head.contentLength > MAX_INLINE_BODY_BYTES || ex.bufferedBytes < head.contentLength) return null;
    const { pieces, isEnd } = ex.readReceivedBody(Infinity);
    return isEnd ? pieces : null; // (always the end: every byte is here)
  }

  /** The app has the request now: it can no longer be taken back or re-sent. */
  private markStarted(request: PyRequest): void {
    if (request.state === "started") return;
    if (request.state === "sent") this.waitingInWorkers--;
    request.state = "started";
    request.startedAt = performance.now();
    request.body = null;
    request.worker?.running.push(request);
  }

  /** The request leaves its worker (answered, taken back, or its worker died). */
  private detach(request: PyRequest): void {
    const worker = request.worker;
    if (worker === null) return;
    worker.requests.delete(request.id);
    if (request.state === "sent") this.waitingInWorkers--;
    if (request.state === "started") {
      const running = worker.running;
      const i = running.indexOf(request); // among the few started: at most --threads, and usually the first
      if (i !== -1) running.splice(i, 1);
    }
    request.worker = null;
    request.state = "queued";
  }

  /** Every answer the bridge gives instead of the app's, by status (for metrics); each is logged. */
  readonly faults = { 502: 0, 503: 0, 504: 0 };
  private refusedSinceLog = 0;
  private refusalLogTimer: ReturnType<typeof setTimeout> | null = null;
  private refusalReason = "";

  private fail(ex: AppExchange, status: 502 | 504): void {
    this.faults[status]++;
    ex.failWith(status, "");
  }

  /** 503 with Retry-After; counted in one log line per second and reason (an overload must not also flood the log). */
  private refuse(ex: AppExchange, why: string): void {
    this.faults[503]++;
    if (why !== this.refusalReason) this.logRefusals(); // one line per reason
    this.refusalReason = why;
    this.refusedSinceLog++;
    ex.failWith(503, "", [["Retry-After", "1"]]);
    this.refusalLogTimer ??= setTimeout(() => this.logRefusals(), 1000);
  }

  private logRefusals(): void {
    if (this.refusalLogTimer !== null) clearTimeout(this.refusalLogTimer);
    this.refusalLogTimer = null;
    if (this.refusedSinceLog === 0) return;
    this.log.warning(`${this.refusedSinceLog} request(s) answered 503: ${this.refusalReason}`);
    this.refusedSinceLog = 0;
  }

  private onClientGone(request: PyRequest): void {
    request.spool?.close();
    const worker = request.worker;
    if (worker === null) {
      // Still queued (or its body still arriving): drop it before it reaches a worker.
      const i = this.queue.indexOf(request);
      if (i !== -1) this.queue.splice(i, 1);
      this.awaitingBody.delete(request);
      return;
    }
    // Not started: the control channel reaches the worker even while its app runs.
    // Started: the data channel, where the app may be waiting for body bytes or credit.
    if (request.state === "sent") worker.sendControl(FRAME.ABORT, request.id);
    else worker.send(FRAME.ABORT, request.id);
  }

  // -- frames from workers --

  private onWorkerData(worker: PyWorker, reader: FrameReader, bytes: Buffer): void {
    reader.read(bytes, (type, id, buf, start, end) => {
      try {
        this.onFrame(worker, type, id, buf, start, end);
      } catch (err) {
        this.log.error(`bad frame ${type} from ${worker.describe()}: ${describeError(err)}`);
      }
    });
  }

  /** One frame from a worker; its payload is buf[start, end). */
  private onFrame(worker: PyWorker, type: Frame, id: number, buf: Buffer, start: number, end: number): void {
    if (type === FRAME.RESPONSE) return this.onResponse(worker, id, buf, start, end); // the common case first
    const payload = buf.subarray(start, end);
    if (type === FRAME.READY) return this.onReady(worker);
    if (type === FRAME.BOOT_ERROR) return this.onBootError(worker, payload.toString("utf8"));
    const request = worker.requests.get(id);
    if (request === undefined) return; // an answer for a request already settled (504, client gone)
    const ex = request.ex;
    switch (type) {
      case FRAME.STARTED:
        this.markStarted(request);
        if (ex.isAborted) worker.send(FRAME.ABORT, id); // its ABORT went by control before it started
        return;
      case FRAME.START: {
        const [status, headers] = decodeResponseHead(payload.toString("latin1"));
        if (takeBufferingChoice(headers) && this.spoolLimits.memoryBytes + this.spoolLimits.fileBytes > 0) {
          request.spool = new ResponseSpool(ex, this.spoolLimits,
            (chunk) => { this.respond(request, () => ex.writeBody(chunk)); ex.flush(); },
            (bytes) => worker.send(FRAME.ACK, id, u32(bytes)));
        }
        return this.respond(request, () => ex.setResponse(status, headers));
      }
      case FRAME.DATA:
        if (request.spool !== null) return request.spool.push(payload);
        this.respond(request, () => ex.writeBody(payload));
        ex.flush(); // now, so that the ACK below waits for the socket to take these bytes
        // Credit goes back once the client socket has taken the bytes: that is the backpressure.
        return ex.whenDrained(() => worker.send(FRAME.ACK, id, u32(payload.length)));
      case FRAME.END:
        if (request.sendfile !== null) {
          request.sendfile.then(() => this.finishRequest(worker, request));
          return;
        }
        if (request.spool !== null) {
          // The worker is free now; the answer ends when the client has taken the rest.
          const spool = request.spool;
          this.settle(worker, request);
          return spool.end(() => this.respond(request, () => ex.endResponse()));
        }
        return this.finishRequest(worker, request);
      case FRAME.ERROR:
        request.spool?.close();
        ex.failApp(new PythonError(payload.toString("utf8")));
        return this.settle(worker, request);
      case FRAME.PULL:
        return this.answerPull(worker, request, payload.readUInt32BE(0));
      case FRAME.CANCELLED:
        // Taken back before it started: it goes first in line, to any worker, with its body.
        this.detach(request);
        this.stopIfRetiredAndIdle(worker); // its last request may be this one
        if (!ex.isAborted && !ex.isDone) this.queue.unshift(request);
        return this.dispatch();
      case FRAME.SENDFILE:
        request.sendfile = this.sendFile(request, payload);
        return;
      case FRAME.LOG_ENVIRON:
        ex.workerEnviron = JSON.parse(payload.toString("utf8"));
        return;
    }
  }

  /** A whole answer in one frame: u32 head length, the head ("status\0name\0value…"), the body. */
  private onResponse(worker: PyWorker, id: number, buf: Buffer, start: number, end: number): void {
    const request = worker.requests.get(id);
    if (request === undefined) return; // an answer for a request already settled (504, client gone)
    const ex = request.ex;
    const bodyStart = start + 4 + buf.readUInt32BE(start);
    const [status, headers] = decodeResponseHeadAt(buf, start + 4, bodyStart);
    const body = buf.subarray(bodyStart, end);
    this.respond(request, () => {
      ex.setResponse(status, headers);
      ex.knownLength = body.length;
      ex.writeBody(body);
      ex.endResponse();
    });
    this.settle(worker, request);
  }

  private finishRequest(worker: PyWorker, request: PyRequest): void {
    this.respond(request, () => request.ex.endResponse());
    this.settle(worker, request);
  }

  /** Run a response step unless the client is gone; an app's bad status or header becomes its 500. */
  private respond(request: PyRequest, step: () => void): void {
    const ex = request.ex;
    if (ex.isDone || ex.isAborted) return;
    try {
      step();
    } catch (err) {
      ex.failApp(err);
      request.worker?.send(FRAME.ABORT, request.id);
    }
  }

  /** The worker is done with a request: free its thread, recycle it if it has served enough. */
  private settle(worker: PyWorker, request: PyRequest): void {
    const hasRun = request.state === "started"; // not one taken back unstarted (its client left)
    this.detach(request);
    if (hasRun) worker.served++;
    if (worker.maxRequests > 0 && worker.served >= worker.maxRequests && worker.state === "ready") {
      this.log.info(`${worker.describe()} served ${worker.served} requests; recycling`);
      this.retire(worker, "max-requests");
      this.manageWorkers();
    }
    this.stopIfRetiredAndIdle(worker);
    this.dispatch();
  }

  private answerPull(worker: PyWorker, request: PyRequest, max: number): void {
    const ex = request.ex;
    if (ex.isAborted || ex.isDone) return worker.send(FRAME.BODY_EOF, request.id);
    // Everything already received, up to max, goes in one BODY frame: the worker takes one
    // BODY per PULL, and a round trip per socket read would cap uploads far below the wire.
    const { pieces, bytes, isEnd } = ex.readReceivedBody(max);
    if (bytes > 0) worker.sendPieces(FRAME.BODY, request.id, pieces, bytes);
    if (isEnd) worker.send(FRAME.BODY_EOF, request.id);
    else if (bytes === 0 && !ex.isAborted && !ex.isDone) ex.whenBodyReadable(() => this.answerPull(worker, request, max));
  }

  /** wsgi.file_wrapper: the front reads the file itself, in pieces, as the client takes them. */
  private async sendFile(request: PyRequest, payload: Buffer): Promise<void> {
    const ex = request.ex;
    const offset = payload.readUInt32BE(0) * 2 ** 32 + payload.readUInt32BE(4);
    const hi = payload.readUInt32BE(8), lo = payload.readUInt32BE(12);
    const toEnd = hi === 0xffffffff && lo === 0xffffffff;
    const file = Buffer.from(payload.subarray(16)); // the path's raw bytes, as the OS knows them
    let fd = -1;
    try {
      fd = fs.openSync(file, "r");
      let left = toEnd ? Infinity : hi * 2 ** 32 + lo;
      let position = offset;
      const piece = Buffer.allocUnsafe(SENDFILE_PIECE_BYTES);
      while (left > 0 && !ex.isAborted && !ex.isDone) {
        const n = fs.readSync(fd, piece, 0, Math.min(piece.length, left), position);
        if (n === 0) break;
        position += n;
        left -= n;
        this.respond(request, () => ex.writeBody(Buffer.from(piece.subarray(0, n))));
        if (ex.isBackedUp) await new Promise<void>((resolve) => ex.whenDrained(resolve));
      }
    } catch (err) {
      ex.failApp(err);
    } finally {
      if (fd !== -1) fs.closeSync(fd);
    }
  }

  // ==== 5. Supervision ====

  /** Start every worker and wait until each has imported the app; a worker that cannot is a WorkerBootError. */
  async boot(): Promise<void> {
    const first = await Promise.all(Array.from({ length: this.config.workers }, () => this.startWorker()));
    try {
      await Promise.all(first.map((w) => w.booted));
    } catch (reason) {
      this.log.critical(`Worker failed to boot: ${String(reason)}`);
      await this.stop(false);
      throw new WorkerBootError(String(reason));
    }
    this.isBooted = true;
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.manageWorkers(); // one that was ready may have died while the others booted
  }

  /** Workers that serve or will: the count --workers (and TTIN/TTOU) keeps. */
  private liveCount(): number {
    let n = this.startsPending;
    for (const w of this.workers) if (w.state === "ready" || w.state === "booting") n++;
    return n;
  }

  /**
   * The one place that keeps the number of workers: starts what is missing, now or, after
   * failures, when the backoff allows (gunicorn's manage_workers, with a backoff it lacks).
   */
  private manageWorkers(): void {
    if (this.isDraining || !this.isBooted) return;
    while (this.liveCount() < this.config.workers) {
      const wait = this.backoff.msUntilNextSpawn(performance.now());
      if (wait > 0) {
        this.spawnTimer ??= setTimeout(() => { this.spawnTimer = null; this.manageWorkers(); }, wait);
        return;
      }
      this.backoff.noteSpawn(performance.now());
      void this.startWorker();
    }
  }

  // -- server hooks (the config file's; README "Server hooks") --

  async startHooks(owner: { uid: number; gid: number } | null = null): Promise<void> {
    if (!this.config.preloadApp && !this.config.hooks.some((h) => MASTER_HOOKS.includes(h))) return;
    this.master = await MasterHooks.start(this.python, this.config, this.log, (line, fd) => this.forwardLine("[master helper] ", line, fd), owner);
    await this.runHook("on_starting");
  }

  runHook(name: string, args: Record<string, unknown> = {}): Promise<void> {
    if (this.master === null || !this.config.hooks.includes(name)) return Promise.resolve();
    return this.master.run(name, { num_workers: this.config.workers, ...args });
  }

  /** pre_fork (when the config file has it) then the spawn: synchronous when there is no hook. */
  private startWorker(): PyWorker | Promise<PyWorker> {
    const hasPreFork = this.master !== null && this.config.hooks.includes("pre_fork");
    if (!hasPreFork && !this.config.preloadApp) return this.spawnWorker();
    const id = this.nextWorkerId++;
    this.startsPending++;
    return this.runHook("pre_fork", { worker: { pid: null, age: id } }).then(async () => {
      try {
        return this.config.preloadApp ? await this.forkWorker(id) : this.spawnWorker(id);
      } finally {
        this.startsPending--;
      }
    });
  }

  /** What a worker is told in its environment (worker.py reads BUNICORN_*). */
  private workerEnv(id: number): Record<string, string> {
    const env: Record<string, string> = {
      BUNICORN_APP: this.config.app,
      BUNICORN_THREADS: String(this.config.threads),
      BUNICORN_WORKER_ID: String(id),
      BUNICORN_MULTIPROCESS: this.config.workers > 1 ? "1" : "0",
      BUNICORN_NUM_WORKERS: String(this.config.workers),
      BUNICORN_FRONT_PID: String(process.pid),
      PYTHONUNBUFFERED: "1",
    };
    // Only a config file with worker hooks is run again in each worker (to find them).
    if (this.config.configFile !== null && this.config.hooks.some((h) => WORKER_HOOKS.includes(h))) {
      env.BUNICORN_CONFIG = this.config.configFile;
      env.BUNICORN_SETTINGS = JSON.stringify(this.config.hookSettings);
    }
    // Only a format with {var}e atoms makes the worker report anything (worker.py ReportingWorker).
    if (this.logNeeds.environKeys.length > 0) env.BUNICORN_LOG_ENVIRON = JSON.stringify(this.logNeeds.environKeys);
    Object.assign(env, appPathEnv(this.config));
    return env;
  }

  private requestBudget(): number {
    const jitter = this.config.maxRequestsJitter > 0 ? Math.floor(Math.random() * (this.config.maxRequestsJitter + 1)) : 0;
    return this.config.maxRequests > 0 ? this.config.maxRequests + jitter : 0;
  }

  private spawnWorker(id = this.nextWorkerId++): PyWorker {
    const env = { ...(process.env as Record<string, string>), ...this.workerEnv(id) };
    let worker!: PyWorker;
    // The worker program arrives on stdin (it is inside this binary), so no file is written;
    // fd 3 and fd 4 are socketpairs: only this process holds their other ends.
    const proc = Bun.spawn(pythonRole(this.python, WORKER_ARGV0), {
      env,
      stdio: [pythonProgram(), "pipe", "pipe", "socket-fd", "socket-fd"],
      onExit: (_p: unknown, code: number | null, signal: number | string | null) => this.onWorkerExit(worker, { code, signal: signal === null ? null : String(signal) }),
    } as any) as import("bun").Subprocess;
    worker = new PyWorker(id, this.generation, this.requestBudget(), proc, performance.now());
    this.workers.add(worker);
    const fds = (proc as unknown as { stdio: (number | null)[] }).stdio;
    this.connectChannel(worker, worker.data, worker.reader, fds[DATA_FD]!, true);
    this.connectChannel(worker, worker.control, worker.controlReader, fds[CONTROL_FD]!, false);
    const tag = `[worker ${worker.id} pid ${worker.pid}] `;
    forwardOutput(proc.stdout as ReadableStream<Uint8Array>, (line) => this.forwardLine(tag, line, 1));
    forwardOutput(proc.stderr as ReadableStream<Uint8Array>, (line) => this.forwardLine(tag, line, 2));
    this.log.info(`Booting worker with pid: ${proc.pid}`);
    return worker;
  }

  /**
   * --preload: the master helper forks the worker from the app it imported, onto two
   * socketpairs made here (sent to it with SCM_RIGHTS): the same channels as a spawned
   * worker's, and still nobody else's. Its output comes through the helper's.
   */
  private async forkWorker(id: number): Promise<PyWorker> {
    const [data, dataForWorker] = makeSocketPair();
    const [control, controlForWorker] = makeSocketPair();
    let pid: number;
    try {
      pid = await this.master!.fork([dataForWorker, controlForWorker], this.workerEnv(id));
    } finally {
      closeFd(dataForWorker);
      closeFd(controlForWorker);
    }
    const proc: WorkerProcess = { pid, kill: (signal = "SIGTERM") => { try { process.kill(pid, signal); } catch { /* gone */ } } };
    const worker = new PyWorker(id, this.generation, this.requestBudget(), proc, performance.now());
    this.workers.add(worker);
    this.master!.whenExited(pid, (exit) => this.onWorkerExit(worker, exit));
    this.connectChannel(worker, worker.data, worker.reader, data, true);
    this.connectChannel(worker, worker.control, worker.controlReader, control, false);
    this.log.info(`Booting worker with pid: ${pid} (forked from the preloaded app)`);
    return worker;
  }

  private connectChannel(worker: PyWorker, writer: FrameWriter, reader: FrameReader, fd: number, isData: boolean): void {
    const pool = this;
    void (Bun.connect as any)({
      fd,
      socket: {
        open(socket: import("bun").Socket<unknown>) {
          writer.socket = socket;
          writer.onDrain(); // frames queued before the socket was ready
        },
        data(_socket: unknown, bytes: Buffer) { pool.onWorkerData(worker, reader, bytes); },
        drain() { writer.onDrain(); },
        close() { if (isData) pool.onDataChannelClosed(worker); },
        error() {},
      },
    });
  }


  /**
   * An error worker.py reports itself (REPORT_MARK) goes to the error log at ERROR. The app's
   * own output is no error: with --capture-output it goes to the error log at INFO, tagged
   * with the worker (gunicorn's capture_output); without, to this process's stdout or stderr
   * as the app wrote it (gunicorn's workers inherit them).
   */
  private forwardLine(tag: string, line: string, fd: 1 | 2): void {
    if (fd === 2 && line.startsWith(REPORT_MARK)) return this.log.error(tag + line.slice(REPORT_MARK.length));
    if (fd === 2 && line.startsWith(LOG_MARK)) return logAtLevel(this.log, line[1], line.slice(2)); // a hook's server.log/worker.log
    if (this.config.captureOutput) return this.log.captured(tag + line);
    try {
      fs.writeSync(fd, line + "\n");
    } catch {
      // a closed stdout must not take the server down
    }
  }

  private onReady(worker: PyWorker): void {
    if (worker.state !== "booting") return;
    worker.state = "ready";
    worker.readyAt = performance.now();
    worker.resolveBoot();
    if (this.lastBootError !== "" && worker.generation === this.generation) {
      this.log.info(`${worker.describe()} loaded the app: the code on disk loads again`);
      this.lastBootError = "";
    }
    // A new generation (SIGHUP) takes over one old worker for each new one ready.
    if (worker.generation === this.generation) {
      const old = [...this.workers].find((w) => w.generation < this.generation && w.state === "ready");
      if (old !== undefined) this.retire(old, "reload");
    }
    this.dispatch();
  }

  /** The app does not load in this worker: said once per distinct traceback, not at every retry. */
  private onBootError(worker: PyWorker, traceback: string): void {
    worker.hasBootError = true;
    const reason = `${worker.describe()} could not load the app '${this.config.app}':\n${traceback.trimEnd()}`;
    if (this.isBooted) {
      if (traceback !== this.lastBootError) {
        const serving = [...this.workers].filter((w) => w.state === "ready").length;
        this.log.error(`The code on disk does not load; the ${serving} running worker(s) keep serving. ${reason}`);
      } else {
        this.log.debug(`The code on disk still does not load (${worker.describe()})`);
      }
      this.lastBootError = traceback;
    }
    worker.rejectBoot(reason);
  }

  private retire(worker: PyWorker, reason: RestartReason | null = null): void {
    worker.state = "retiring";
    worker.retiredFor = reason;
    this.stopIfRetiredAndIdle(worker);
  }

  /** A retired worker is told to exit once it holds no request (answered or taken back). */
  private stopIfRetiredAndIdle(worker: PyWorker): void {
    if (worker.state === "retiring" && worker.busy === 0) worker.send(FRAME.STOP, 0);
  }

  private onWorkerExit(worker: PyWorker, exit: ExitStatus): void {
    worker.exit = exit;
    // Its last frames (a BOOT_ERROR) may still be in the data channel: reap once it is read.
    if (worker.isDataClosed) this.reap(worker);
    else setTimeout(() => this.reap(worker), EXIT_SETTLE_MS);
  }

  /** The data channel closes when the process exits (often just before we hear of the exit), or when it closed it itself. */
  private onDataChannelClosed(worker: PyWorker): void {
    worker.isDataClosed = true;
    if (worker.exit !== null) return this.reap(worker);
    // Useless without its channel: make sure it ends, and reap with its real exit status.
    try { worker.proc.kill("SIGKILL"); } catch { /* already gone */ }
    setTimeout(() => this.reap(worker), EXIT_SETTLE_MS);
  }

  /**
   * A worker stuck past --timeout: SIGABRT first, so it logs where each thread is and runs
   * worker_abort (gunicorn's order), then SIGKILL after ABORT_GRACE_MS. What it had started
   * gets 502 now; what it had not is re-sent once it is gone (it could still start it until then).
   */
  private abort(worker: PyWorker, why: string): void {
    if (worker.state === "dead" || worker.state === "dying") return;
    worker.state = "dying";
    worker.killedFor = why;
    for (const request of [...worker.running]) {
      this.detach(request);
      request.spool?.close();
      if (!request.ex.isAborted && !request.ex.isDone) this.fail(request.ex, 502);
    }
    try { worker.proc.kill("SIGABRT"); } catch { /* already gone */ }
    setTimeout(() => { try { worker.proc.kill("SIGKILL"); } catch { /* gone */ } }, ABORT_GRACE_MS);
    this.manageWorkers();
    this.dispatch();
  }

  /** Kill a worker at once (SIGKILL); reap follows from its exit. */
  private murder(worker: PyWorker, why: string): void {
    if (worker.state === "dead") return;
    worker.killedFor = why;
    try { worker.proc.kill("SIGKILL"); } catch { /* already gone */ }
    this.reap(worker);
  }

  /** A worker is gone: settle what it held (502 for what had started, re-send what had not), log how it died, keep the count. */
  private reap(worker: PyWorker): void {
    if (worker.state === "dead") return;
    const previous = worker.state;
    worker.state = "dead";
    try { worker.proc.kill("SIGKILL"); } catch { /* already gone */ }
    worker.data.socket?.end();
    worker.control.socket?.end();
    this.workers.delete(worker);
    this.countRestart(worker, previous);
    const requeue: PyRequest[] = [];
    let failed = 0;
    for (const request of [...worker.requests.values()]) {
      const hadStarted = request.state === "started";
      this.detach(request);
      request.spool?.close();
      if (request.ex.isAborted || request.ex.isDone) continue;
      if (hadStarted) {
        // It may have run: answering 502 is honest; running it again is not.
        this.fail(request.ex, 502);
        failed++;
      } else {
        requeue.push(request); // never started: another worker serves it, with its whole body
      }
    }
    this.queue.unshift(...requeue);
    void this.runHook("child_exit", { worker: { pid: worker.pid, age: worker.id, alive: false } });
    const how = worker.killedFor !== null ? `was killed: ${worker.killedFor}` : describeExit(worker.exit);
    const now = performance.now();
    const outcome = (failed > 0 ? `; ${failed} request(s) it was running got 502` : "") +
      (requeue.length > 0 ? `; ${requeue.length} not yet started went to other workers` : "");
    if (previous === "booting") {
      worker.rejectBoot(`${worker.describe()} ${how} before it was ready`);
      if (this.isBooted && !worker.hasBootError) this.log.error(`${worker.describe()} ${how} before it was ready`);
      this.backoff.noteFailure(now);
    } else if (previous === "ready" || previous === "dying" || failed > 0) {
      this.log.error(`${worker.describe()} died: it ${how} after ${((now - worker.readyAt) / 1000).toFixed(1)} s${outcome}`);
      if (worker.killedFor === null && now - worker.readyAt < STABLE_AFTER_MS) this.backoff.noteFailure(now);
    }
    if (this.backoff.failures > 0 && now === this.backoff.lastFailureAt && !this.isDraining) {
      this.log.warning(`${this.backoff.failures} worker start(s) failed in a row; the next start waits ${(this.backoff.delayMs() / 1000).toFixed(1)} s`);
    }
    this.manageWorkers();
    this.dispatch();
  }

  readonly restarts: Record<RestartReason, number> = { crash: 0, timeout: 0, "max-requests": 0, reload: 0 };

  /** A worker gone, by why it is replaced; none while stopping (nothing replaces it then). */
  private countRestart(worker: PyWorker, previous: WorkerState): void {
    if (this.isDraining) return;
    if (worker.killedFor !== null) this.restarts.timeout++; // murder's one cause
    else if (previous === "retiring") { if (worker.retiredFor !== null) this.restarts[worker.retiredFor]++; }
    else this.restarts.crash++;
  }

  readyWorkers(): number {
    let n = 0;
    for (const w of this.workers) if (w.state === "ready") n++;
    return n;
  }

  stats(): PoolStats {
    const workers = { booting: 0, ready: 0, retiring: 0 };
    for (const w of this.workers) if (w.state !== "dead") workers[w.state === "dying" ? "retiring" : w.state]++;
    return { workers, queued: this.queue.length + this.waitingInWorkers, restarts: this.restarts, faults: this.faults, spooledFileBytes: spooledFileBytes.now };
  }

  /** Every tick: --timeout, take-backs from behind slow requests, the end of a backoff once workers are stable, metrics. */
  private tick(): void {
    const now = performance.now();
    if (this.log.metrics !== null) this.sendMetrics(this.log.metrics, now);
    const limit = this.config.timeoutS * 1000;
    for (const worker of [...this.workers]) {
      if (worker.state === "dead" || worker.state === "dying") continue;
      if (worker.state === "ready" && now - worker.readyAt >= STABLE_AFTER_MS && worker.spawnedAt > this.backoff.lastFailureAt) this.backoff.reset();
      this.recallWaiting(worker, now);
      if (limit > 0) this.murderTimedOut(worker, now, limit);
    }
  }

  /**
   * gunicorn's arbiter metrics: gunicorn.workers when the count changes, and with
   * --enable-backlog-metric gunicorn.backlog once a second (its loop's pace). Our backlog is
   * the requests waiting for a worker (see --backlog), not the kernel's listen queue.
   */
  private sendMetrics(metrics: StatsdClient, now: number): void {
    const live = this.liveCount();
    if (live !== this.lastWorkersGauge) metrics.gauge("gunicorn.workers", (this.lastWorkersGauge = live));
    if (this.config.enableBacklogMetric && now - this.lastBacklogAt >= 1000) {
      this.lastBacklogAt = now;
      metrics.histogram("gunicorn.backlog", this.queue.length + this.waitingInWorkers);
    }
  }

  /** --timeout: a request running too long gets 504; its worker is killed and replaced. */
  private murderTimedOut(worker: PyWorker, now: number, limit: number): void {
    const request = worker.running[0]; // the oldest: if it is in time, all are
    if (request === undefined || now - request.startedAt < limit) return;
    this.log.critical(`WORKER TIMEOUT (pid:${worker.pid}) on ${request.ex.describe()} after ${this.config.timeoutS}s`);
    this.detach(request);
    this.fail(request.ex, 504);
    this.abort(worker, "a request timed out");
  }

  /** Requests waiting behind ones that run long may wait behind a hang: take them back (over the control channel). */
  private recallWaiting(worker: PyWorker, now: number): void {
    if (worker.busy <= this.config.threads || worker.isYoung(now)) return;
    for (const r of worker.requests.values()) {
      if (r.state !== "sent" || r.isCancelSent) continue;
      r.isCancelSent = true;
      worker.sendControl(FRAME.CANCEL, r.id);
    }
  }

  reload(): Promise<void> {
    if (this.isDraining) return Promise.resolve();
    this.generation++;
    this.log.info(`Reloading: starting ${this.config.workers} new workers`);
    // A new worker that fails to boot says why once (onBootError); the old ones keep serving.
    // on_reload first (when the config file has it); settles once the new generation has booted.
    return this.runHook("on_reload").then(async () => {
      const fresh = await Promise.all(Array.from({ length: this.config.workers }, () => this.startWorker()));
      await Promise.allSettled(fresh.map((w) => w.booted));
    });
  }

  describeWorkers(): WorkerReport[] {
    const now = performance.now();
    return [...this.workers].map((w) => ({ id: w.id, pid: w.pid, generation: w.generation, state: w.state, busy: w.busy, served: w.served, age_s: Math.round((now - w.spawnedAt) / 1000) }));
  }

  stopWorkers(): void {
    this.config.workers = 0;
    this.log.info("Number of workers: 0");
    for (const w of this.workers) if (w.state === "ready" || w.state === "booting") this.retire(w);
  }

  addWorker(): void {
    this.config.workers++;
    this.log.info(`Number of workers: ${this.config.workers}`);
    void this.runHook("nworkers_changed", { new_value: this.config.workers, old_value: this.config.workers - 1 });
    this.manageWorkers();
  }

  removeWorker(): void {
    if (this.config.workers <= 1) return;
    this.config.workers--;
    this.log.info(`Number of workers: ${this.config.workers}`);
    void this.runHook("nworkers_changed", { new_value: this.config.workers, old_value: this.config.workers + 1 });
    const victim = [...this.workers].filter((w) => w.state === "ready").sort((a, b) => a.busy - b.busy)[0];
    if (victim !== undefined) this.retire(victim);
  }

  beginDrain(): void {
    this.isDraining = true;
    if (this.spawnTimer !== null) clearTimeout(this.spawnTimer);
  }

  /** Graceful: workers finish what they hold and exit; otherwise (or past 3 s) they are killed. */
  async stop(graceful: boolean): Promise<void> {
    this.beginDrain();
    if (this.ticker !== null) clearInterval(this.ticker);
    // Every request still waiting for a worker gets its 503 now, and the log says so now: the
    // process may exit right after this (a failed boot), before the refusal log's timer.
    for (const request of this.queue.splice(0)) this.refuse(request.ex, "the server is stopping");
    for (const request of this.awaitingBody) this.refuse(request.ex, "the server is stopping");
    this.awaitingBody.clear();
    this.logRefusals();
    for (const worker of this.workers) {
      if (graceful) this.retire(worker);
      else worker.sendControl(FRAME.QUIT, 0); // worker_int, then exit; killed below if it does not
    }
    const deadline = Date.now() + (graceful ? 3000 : 500);
    while (this.workers.size > 0 && Date.now() < deadline) await Bun.sleep(10);
    this.killAll();
  }

  private killAll(): void {
    for (const worker of this.workers) {
      try { worker.proc.kill("SIGKILL"); } catch { /* gone */ }
    }
  }
}

// -- The master helper: the config file's master hooks --

/** Hooks run in the master helper, and those run in each worker (worker.py's lists). */
const MASTER_HOOKS = ["on_starting", "on_reload", "when_ready", "pre_fork", "child_exit", "nworkers_changed", "on_exit", "pre_exec"];
const WORKER_HOOKS = ["post_fork", "post_worker_init", "pre_request", "post_request", "worker_int", "worker_abort", "worker_exit"];
/** worker.py LOG_MARK: a line a hook logged through server.log or worker.log, then its level letter. */
const LOG_MARK = "\x1d";
/** After SIGABRT, how long a timed-out worker has to log its threads' tracebacks and run worker_abort. */
const ABORT_GRACE_MS = 1000;
/** A master hook that has not returned by then is logged and no longer waited for. */
const HOOK_TIMEOUT_MS = 30_000;

function logAtLevel(log: Logger, letter: string, text: string): void {
  if (letter === "D") log.debug(text);
  else if (letter === "I") log.info(text);
  else if (letter === "W") log.warning(text);
  else if (letter === "C") log.critical(text);
  else log.error(text);
}

/** A process's stdout or stderr, line by line. */
async function forwardOutput(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let partial = "";
  try {
    for await (const bytes of stream) {
      partial += decoder.decode(bytes, { stream: true });
      let nl: number;
      while ((nl = partial.indexOf("\n")) !== -1) {
        onLine(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
      }
    }
  } catch { /* the process is gone */ }
  if (partial !== "") onLine(partial);
}

/**
 * One long-lived Python process (worker.py's bunicorn-master role) that executed the config
 * file once and runs its master hooks when asked, so module state persists between hooks as
 * in gunicorn's master. One JSON line each way per hook over a socketpair (fd 3).
 */
class MasterHooks {
  private nextId = 1;
  private readonly waiting = new Map<number, (answer: { ok?: boolean; error?: string; pid?: number }) => void>();
  /** --preload: the helper's end for passing fds; forked workers' exits, by pid (one may come before its fork's answer). */
  private fdChannel = -1;
  private readonly exitWaiters = new Map<number, (exit: ExitStatus) => void>();
  private readonly earlyExits = new Map<number, ExitStatus>();
  private partial = "";
  private socket: import("bun").Socket<unknown> | null = null;

  private constructor(private readonly proc: import("bun").Subprocess, private readonly log: Logger) {}

  static async start(python: string, config: Config, log: Logger, onOutput: (line: string, fd: 1 | 2) => void, owner: { uid: number; gid: number } | null): Promise<MasterHooks> {
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      BUNICORN_SETTINGS: JSON.stringify(config.hookSettings),
      BUNICORN_FRONT_PID: String(process.pid),
      PYTHONUNBUFFERED: "1",
    };
    if (config.hooks.length > 0 && config.configFile !== null) env.BUNICORN_CONFIG = config.configFile;
    if (config.preloadApp) {
      // gunicorn's --preload: the app is imported once, here, before any worker exists.
      env.BUNICORN_PRELOAD = "1";
      env.BUNICORN_APP = config.app;
      Object.assign(env, appPathEnv(config));
    }
    const proc = Bun.spawn(pythonRole(python, "bunicorn-master"), {
      env, stdio: [pythonProgram(), "pipe", "pipe", "socket-fd", "socket-fd"], ...(owner !== null ? { uid: owner.uid, gid: owner.gid } : {}),
    } as any) as import("bun").Subprocess;
    void forwardOutput(proc.stdout as ReadableStream<Uint8Array>, (line) => onOutput(line, 1));
    void forwardOutput(proc.stderr as ReadableStream<Uint8Array>, (line) => onOutput(line, 2));
    const hooks = new MasterHooks(proc, log);
    process.on("exit", () => hooks.stop()); // after on_exit, the last hook, has run
    const loaded = new Promise<{ ok?: boolean; error?: string }>((resolve) => hooks.waiting.set(0, resolve));
    const fd = (proc as unknown as { stdio: number[] }).stdio[DATA_FD];
    hooks.socket = await (Bun.connect as any)({
      fd,
      socket: {
        data(_s: unknown, bytes: Buffer) { hooks.onData(bytes); },
        close() { hooks.onClose(); },
        error() {},
      },
    });
    hooks.fdChannel = (proc as unknown as { stdio: number[] }).stdio[CONTROL_FD];
    const answer = await loaded;
    if ((answer as { boot_error?: boolean }).boot_error) throw new WorkerBootError(`--preload: the app '${config.app}' could not be imported:\n${answer.error!.trimEnd()}`);
    if (answer.error !== undefined) throw new Error(`the master helper could not run the config file: ${answer.error}`);
    log.info(`Master hooks run in pid ${proc.pid}`);
    return hooks;
  }

  run(hook: string, args: Record<string, unknown>): Promise<void> {
    const id = this.nextId++;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        this.log.error(`the ${hook} hook has not returned after ${HOOK_TIMEOUT_MS / 1000} s; going on without it`);
        resolve();
      }, HOOK_TIMEOUT_MS);
      this.waiting.set(id, (answer) => {
        clearTimeout(timer);
        if (answer.error !== undefined) this.log.error(`the ${hook} hook raised:\n${answer.error.trimEnd()}`);
        resolve();
      });
      if (this.socket === null || this.socket.write(JSON.stringify({ id, hook, args }) + "\n") < 0) this.waiting.get(id)?.({ error: "the master helper is gone" });
    });
  }

  /** --preload: fork a worker onto these two fds (its data and control channels); resolves with its pid. */
  fork(fds: number[], env: Record<string, string>): Promise<number> {
    const id = this.nextId++;
    return new Promise<number>((resolve, reject) => {
      this.waiting.set(id, (answer) => (answer.pid !== undefined ? resolve(answer.pid) : reject(new Error(answer.error ?? "no pid"))));
      try {
        sendFds(this.fdChannel, fds); // before the command: the helper reads them when it reads it
      } catch (err) {
        this.waiting.delete(id);
        return reject(err);
      }
      if (this.socket === null || this.socket.write(JSON.stringify({ id, spawn: env }) + "\n") < 0) this.waiting.get(id)?.({ error: "the master helper is gone" });
    });
  }

  whenExited(pid: number, cb: (exit: ExitStatus) => void): void {
    const early = this.earlyExits.get(pid);
    if (early !== undefined) {
      this.earlyExits.delete(pid);
      return cb(early);
    }
    this.exitWaiters.set(pid, cb);
  }

  private onChildExited(pid: number, exit: ExitStatus): void {
    const cb = this.exitWaiters.get(pid);
    this.exitWaiters.delete(pid);
    if (cb !== undefined) cb(exit);
    else this.earlyExits.set(pid, exit);
  }

  private onData(bytes: Buffer): void {
    this.partial += bytes.toString("utf8");
    let nl: number;
    while ((nl = this.partial.indexOf("\n")) !== -1) {
      const answer = JSON.parse(this.partial.slice(0, nl));
      this.partial = this.partial.slice(nl + 1);
      if (answer.exited !== undefined) {
        this.onChildExited(answer.exited, { code: answer.code, signal: answer.signal === null ? null : signalName(answer.signal) });
        continue;
      }
      const resolve = this.waiting.get(answer.id);
      this.waiting.delete(answer.id);
      resolve?.(answer);
    }
  }

  private onClose(): void {
    this.socket = null;
    for (const [id, resolve] of [...this.waiting]) {
      this.waiting.delete(id);
      resolve({ error: "the master helper exited" });
    }
  }

  stop(): void {
    try { this.proc.kill("SIGKILL"); } catch { /* gone */ }
  }
}

/** worker.py REPORT_MARK: starts each stderr line of an error the worker reports itself. */
const REPORT_MARK = "\x1e";
/** How often the pool checks timeouts and take-backs; timeouts fire within one tick of their due time. */
const TICK_MS = 250;
/** A worker that dies sooner than this after it was ready counts as a failed start (a crash on every first request). */
const STABLE_AFTER_MS = 10_000;
/** The first wait after a failed start, doubled at each failure in a row, up to the cap. */
const BACKOFF_FIRST_MS = 250;
const BACKOFF_CAP_MS = 30_000;

/**
 * Exponential backoff for worker starts after failures (a boot error, or a death soon after
 * boot), so an app that crashes at once costs a few starts a minute, not a few hundred.
 * gunicorn has none: it respawned 182 times in 10 s for such an app (1.6 CPU-s).
 */
class SpawnBackoff {
  failures = 0;
  lastFailureAt = -Infinity;
  private lastSpawnAt = -Infinity;

  noteFailure(now: number): void {
    this.failures++;
    this.lastFailureAt = now;
  }

  noteSpawn(now: number): void {
    this.lastSpawnAt = now;
  }

  reset(): void {
    this.failures = 0;
  }

  delayMs(): number {
    return this.failures === 0 ? 0 : Math.min(BACKOFF_FIRST_MS * 2 ** (this.failures - 1), BACKOFF_CAP_MS);
  }

  msUntilNextSpawn(now: number): number {
    return Math.max(0, Math.max(this.lastSpawnAt, this.lastFailureAt) + this.delayMs() - now);
  }
}

/** 9 → "SIGKILL": the helper relays a forked worker's signal by number. */
function signalName(n: number): string {
  const entry = Object.entries(os.constants.signals).find(([, v]) => v === n);
  return entry !== undefined ? entry[0] : `signal ${n}`;
}

function describeExit(exit: ExitStatus | null): string {
  if (exit === null) return "closed its channel";
  if (exit.signal !== null) return `was killed by signal ${exit.signal}` + (exit.signal === "SIGKILL" ? " (out of memory?)" : "");
  return `exited with code ${exit.code}`;
}

/** Where the app is imported from (worker.py prepare_sys_path): --chdir and --pythonpath, absolute. */
function appPathEnv(config: Config): Record<string, string> {
  const env: Record<string, string> = {};
  if (config.chdir !== null) env.BUNICORN_CHDIR = path.resolve(config.chdir);
  if (config.pythonpath.length > 0) env.BUNICORN_PYTHONPATH = config.pythonpath.map((p) => path.resolve(p)).join(path.delimiter);
  return env;
}

/** --python, else the active virtualenv's, else python3 on PATH. */
export function choosePython(config: Config): string {
  if (config.python !== null) return config.python;
  const venv = process.env.VIRTUAL_ENV;
  if (venv && fs.existsSync(path.join(venv, "bin", "python"))) return path.join(venv, "bin", "python");
  return "python3";
}

/** `logNeeds`: what the access log format asks of the workers (nothing, when there is no access log). */
export function createPythonStage(config: Config, log: Logger, logNeeds: AccessLogNeeds = { environKeys: [], isPidLogged: false }): PythonStage {
  return new PythonWorkerPool(config, log, logNeeds);
}

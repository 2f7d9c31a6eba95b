// Socket-level test helpers: a raw TCP client that writes exact bytes and
// parses the exact bytes it gets back, in-process servers on port 0, and
// server subprocesses found by the `Listening at:` line of their error log.
//
// Everything started here is registered on start; `cleanUp()` (call it from
// afterEach/afterAll) destroys clients, stops in-process servers and kills
// subprocesses by their own pid.
import type { Socket, Subprocess } from "bun";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Config, type WsgiApp, startServer } from "../server.ts";

export const ROOT = join(import.meta.dir, "..");
export const SERVER_TS = join(ROOT, "server.ts");

// ==== Parsing responses ====

/** One response as it came off the wire. */
export interface HttpResponse {
  statusLine: string; // without CRLF
  status: number;
  /** Header fields in wire order, names as sent. */
  headers: [string, string][];
  /** The head exactly as received, blank line included. */
  head: string;
  /** The body with chunked framing removed. */
  body: Buffer;
  /** The body bytes exactly as received (chunk framing included). */
  rawBody: Buffer;
  framing: "none" | "length" | "chunked" | "close";
  /** False when the connection closed before the framing said the body ended. */
  isComplete: boolean;
}

export function headerValues(res: HttpResponse, name: string): string[] {
  const lower = name.toLowerCase();
  return res.headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
}

/** The only value of a header; undefined when absent; throws when repeated. */
export function header(res: HttpResponse, name: string): string | undefined {
  const values = headerValues(res, name);
  if (values.length > 1) throw new Error(`header ${name} appears ${values.length} times`);
  return values[0];
}

type ChunkedResult = { body: Buffer; end: number } | null;

/** Decode a chunked body starting at `start`; null when it is not all there yet. */
function decodeChunked(buf: Buffer, start: number): ChunkedResult {
  const parts: Buffer[] = [];
  let pos = start;
  for (;;) {
    const lineEnd = buf.indexOf("\r\n", pos);
    if (lineEnd === -1) return null;
    const sizeText = buf.toString("latin1", pos, lineEnd).split(";")[0];
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new Error(`bad chunk size line ${JSON.stringify(buf.toString("latin1", pos, lineEnd))}`);
    const size = parseInt(sizeText, 16);
    pos = lineEnd + 2;
    if (size === 0) {
      // trailer section, then the blank line
      for (;;) {
        const end = buf.indexOf("\r\n", pos);
        if (end === -1) return null;
        if (end === pos) return { body: Buffer.concat(parts), end: end + 2 };
        pos = end + 2;
      }
    }
    if (buf.length < pos + size + 2) return null;
    parts.push(buf.subarray(pos, pos + size));
    if (buf[pos + size] !== 0x0d || buf[pos + size + 1] !== 0x0a) throw new Error("chunk data not followed by CRLF");
    pos += size + 2;
  }
}

/**
 * Parse as many responses as `buf` holds. `methods` are the request methods in
 * order (HEAD answers have no body); 1xx answers are interim and use no method.
 * With `isClosed`, a body cut short is returned with isComplete false, and a
 * body without length ends at the close.
 */
export function parseResponses(buf: Buffer, methods: string[] = [], isClosed = false): { responses: HttpResponse[]; rest: Buffer } {
  const responses: HttpResponse[] = [];
  let pos = 0;
  let finals = 0;
  while (pos < buf.length) {
    const headEnd = buf.indexOf("\r\n\r\n", pos);
    if (headEnd === -1) break;
    const head = buf.toString("latin1", pos, headEnd + 4);
    const lines = head.slice(0, -4).split("\r\n");
    const statusLine = lines[0];
    const m = /^HTTP\/1\.[01] (\d{3}) /.exec(statusLine + " ");
    if (m === null) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
    const status = Number(m[1]);
    const headers = lines.slice(1).map((l): [string, string] => {
      const colon = l.indexOf(":");
      if (colon <= 0) throw new Error(`bad header line ${JSON.stringify(l)}`);
      return [l.slice(0, colon), l.slice(colon + 1).trim()];
    });
    const bodyStart = headEnd + 4;
    const base = { statusLine, status, headers, head };
    const get = (n: string) => headers.find(([k]) => k.toLowerCase() === n)?.[1];
    if (status < 200) {
      responses.push({ ...base, body: Buffer.alloc(0), rawBody: Buffer.alloc(0), framing: "none", isComplete: true });
      pos = bodyStart;
      continue;
    }
    const method = methods[finals] ?? "GET";
    if (method === "HEAD" || status === 204 || status === 304) {
      responses.push({ ...base, body: Buffer.alloc(0), rawBody: Buffer.alloc(0), framing: "none", isComplete: true });
      pos = bodyStart;
      finals++;
      continue;
    }
    const te = get("transfer-encoding");
    const cl = get("content-length");
    if (te !== undefined && te.toLowerCase() === "chunked") {
      const decoded = decodeChunked(buf, bodyStart);
      if (decoded === null) {
        if (!isClosed) break;
        const rawBody = buf.subarray(bodyStart);
        responses.push({ ...base, body: Buffer.alloc(0), rawBody, framing: "chunked", isComplete: false });
        pos = buf.length;
        break;
      }
      responses.push({ ...base, body: decoded.body, rawBody: buf.subarray(bodyStart, decoded.end), framing: "chunked", isComplete: true });
      pos = decoded.end;
    } else if (cl !== undefined) {
      const length = Number(cl);
      if (buf.length < bodyStart + length) {
        if (!isClosed) break;
        const rawBody = buf.subarray(bodyStart);
        responses.push({ ...base, body: rawBody, rawBody, framing: "length", isComplete: false });
        pos = buf.length;
        break;
      }
      const rawBody = buf.subarray(bodyStart, bodyStart + length);
      responses.push({ ...base, body: rawBody, rawBody, framing: "length", isComplete: true });
      pos = bodyStart + length;
    } else {
      if (!isClosed) break;
      const rawBody = buf.subarray(bodyStart);
      responses.push({ ...base, body: rawBody, rawBody, framing: "close", isComplete: true });
      pos = buf.length;
    }
    finals++;
  }
  return { responses, rest: buf.subarray(pos) };
}

// ==== Raw client ====

const clients = new Set<RawClient>();

export interface RawClientOptions {
  host?: string;
  /**
   * Keep our side open after the server's FIN, so a test can still write (as a pipelining
   * client may) and then half-close itself with end(). Off by default: like most clients we
   * then close as soon as the server has (Bun's default), so the server never waits on us.
   */
  allowHalfOpen?: boolean;
}

/**
 * The one raw TCP client of the tests. It writes exact bytes (strings are sent as latin-1,
 * queued and resumed on drain) and keeps every byte it receives; it parses what came back,
 * whole (`responses`) or one response after another on a kept-alive connection
 * (`request`/`nextResponse`). `events` logs, in order, what the kernel reported besides
 * data: "eof" for the server's FIN, "error:ECONNRESET" (or another code) for a reset, and
 * "close" when the socket is gone, so a test can tell a clean close from a reset.
 * `pause()` stops reading (the server's writes then back up), `resume()` reads again.
 */
export class RawClient {
  private chunks: Buffer[] = [];
  private receivedBytes = 0;
  private joined: Buffer | null = null;
  private waiters = new Set<() => void>();
  private outgoing: Buffer | null = null;
  private hasShutDown = false;
  private isFinSent = false;
  private isDestroyed = false;
  /** What happened besides data, in order: "eof", "error:CODE", "close". */
  readonly events: string[] = [];
  isClosed = false;
  hasPeerEnded = false;
  socket!: Socket<undefined>;
  /** Called with each piece of data as it arrives (in addition to keeping it, unless `keepData` is false). */
  onData: ((data: Buffer) => void) | null = null;
  keepData = true;

  static async connect(port: number, opts: RawClientOptions = {}): Promise<RawClient> {
    const client = new RawClient();
    client.socket = await Bun.connect<undefined>({
      hostname: opts.host ?? "127.0.0.1",
      port,
      allowHalfOpen: opts.allowHalfOpen ?? false,
      socket: {
        data(_s, data) { client.received(data); },
        drain() { client.writeOutgoing(); client.notify(); },
        end() { client.hasPeerEnded = true; client.events.push("eof"); client.notify(); },
        close(_s, err) { client.closed(err); },
        error(_s, err) { client.logError(err); client.isClosed = true; client.notify(); },
      },
    });
    clients.add(client);
    return client;
  }

  private closed(err: Error | undefined): void {
    if (err) {
      this.logError(err);
    } else if (this.hasShutDown && !this.hasPeerEnded && !this.isDestroyed) {
      // Once we have half-closed, Bun reports the server's FIN as close() with no error and no
      // end() first (a reset still comes as ECONNRESET); our side only reads, so a clean close
      // is that FIN.
      this.hasPeerEnded = true;
      this.events.push("eof");
    }
    this.isClosed = true;
    this.events.push("close");
    this.notify();
  }

  private logError(err: Error): void {
    const event = `error:${(err as NodeJS.ErrnoException).code ?? err.message}`;
    if (this.events.at(-1) !== event) this.events.push(event); // Bun may report one error to both error() and close()
  }

  private received(data: Buffer): void {
    this.receivedBytes += data.length;
    if (this.keepData) {
      this.chunks.push(Buffer.from(data)); // the callback's buffer may be reused
      this.joined = null;
    }
    this.onData?.(data);
    this.notify();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Everything received so far (less the answers `nextResponse` has taken). */
  get bytes(): Buffer {
    this.joined ??= Buffer.concat(this.chunks);
    return this.joined;
  }

  /** Bytes received over the connection's life. */
  get byteCount(): number {
    return this.receivedBytes;
  }

  get text(): string {
    return this.bytes.toString("latin1");
  }

  /** True once the server closed or half-closed the connection. */
  get isDone(): boolean {
    return this.isClosed || this.hasPeerEnded;
  }

  get hasEof(): boolean {
    return this.events.includes("eof");
  }

  /** The events, "close" left out: ["eof"] for a clean close, ["error:ECONNRESET"] for a reset. */
  get endEvents(): string[] {
    return this.events.filter((e) => e !== "close");
  }

  /** Bytes written but not yet taken by the kernel. */
  get pendingWriteBytes(): number {
    return this.outgoing?.length ?? 0;
  }

  /** Queue exact bytes; what the kernel does not take now goes out on drain. */
  write(data: string | Uint8Array): void {
    const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : Buffer.from(data);
    this.outgoing = this.outgoing === null ? bytes : Buffer.concat([this.outgoing, bytes]);
    this.writeOutgoing();
  }

  /** Wait until everything written went to the kernel (or the connection is closed); false on timeout. */
  flush(timeoutMs = 10_000): Promise<boolean> {
    return this.waitUntil(() => this.outgoing === null || this.isClosed, timeoutMs);
  }

  private writeOutgoing(): void {
    if (this.isClosed) return;
    if (this.outgoing !== null) {
      const n = this.socket.write(this.outgoing);
      if (n < 0) return;
      this.outgoing = n >= this.outgoing.length ? null : this.outgoing.subarray(n);
    }
    if (this.outgoing === null && this.hasShutDown && !this.isFinSent) {
      this.isFinSent = true;
      this.socket.shutdown();
    }
  }

  /** Wait until `predicate` holds (checked on every event); false on timeout. */
  waitUntil(predicate: () => boolean, timeoutMs = 3000): Promise<boolean> {
    if (predicate()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!predicate()) return;
        done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(ok);
      };
      this.waiters.add(check);
    });
  }

  /** Wait for the server to close (or half-close); false on timeout. */
  waitForClose(timeoutMs = 3000): Promise<boolean> {
    return this.waitUntil(() => this.isDone, timeoutMs);
  }

  /** Wait for the server's FIN or a reset; false on timeout. */
  waitForEnd(timeoutMs = 3000): Promise<boolean> {
    return this.waitUntil(() => this.endEvents.length > 0, timeoutMs);
  }

  /** Parse what has arrived so far. */
  responses(methods: string[] = []): HttpResponse[] {
    return parseResponses(this.bytes, methods, this.isDone).responses;
  }

  /** Wait until `count` final (non-1xx) responses are complete, or the connection is done; returns all responses parsed. */
  async readResponses(count: number, methods: string[] = [], timeoutMs = 3000): Promise<HttpResponse[]> {
    const finals = () => this.responses(methods).filter((r) => r.status >= 200).length;
    await this.waitUntil(() => this.isDone || finals() >= count, timeoutMs);
    return this.responses(methods);
  }

  /**
   * Wait for the next complete final response and take it (and any 1xx before it) out of
   * `bytes`, so a kept-alive connection is read one answer at a time; throws when the
   * connection closes first or on timeout.
   */
  async nextResponse(method = "GET", timeoutMs = 10_000): Promise<HttpResponse> {
    let found: { final: HttpResponse; rest: Buffer } | null = null;
    const check = () => {
      const { responses, rest } = parseResponses(this.bytes, [method], this.isDone);
      const final = responses.find((r) => r.status >= 200);
      if (final !== undefined && final.isComplete) found = { final, rest };
      return found !== null || this.isDone;
    };
    const isSettled = await this.waitUntil(check, timeoutMs);
    if (found === null) {
      throw new Error(isSettled ? `connection closed before the response (${this.bytes.length} bytes pending)` : "timed out waiting for a response");
    }
    const { final, rest } = found as { final: HttpResponse; rest: Buffer };
    this.chunks = rest.length > 0 ? [Buffer.from(rest)] : [];
    this.joined = null;
    return final;
  }

  /** Send `METHOD target HTTP/1.1` with `Host: t` on this connection and take its response (see nextResponse). */
  request(target: string, method = "GET", timeoutMs = 10_000): Promise<HttpResponse> {
    if (this.isDone) return Promise.reject(new Error("connection closed"));
    this.write(`${method} ${target} HTTP/1.1\r\nHost: t\r\n\r\n`);
    return this.nextResponse(method, timeoutMs);
  }

  /** Stop reading: the kernel's buffers fill and the server's writes back up. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Half-close: no more bytes from us (after those already queued). */
  end(): void {
    this.hasShutDown = true;
    this.writeOutgoing(); // shuts down once the queued bytes are out
  }

  /** Close at once, without waiting for unsent bytes. */
  destroy(): void {
    this.isDestroyed = true;
    if (!this.isClosed) this.socket.terminate();
    this.isClosed = true;
    clients.delete(this);
  }
}

export interface ExchangeResult {
  bytes: Buffer;
  text: string;
  responses: HttpResponse[];
  /** The server closed the connection before we gave up waiting. */
  isClosed: boolean;
}

/**
 * Connect, write `request` in one write, collect the answer until the server
 * closes or `count` final responses are complete, then close our side.
 */
export async function exchange(port: number, request: string | Uint8Array, opts: { count?: number; methods?: string[]; timeoutMs?: number } = {}): Promise<ExchangeResult> {
  const client = await RawClient.connect(port);
  client.write(request);
  const count = opts.count ?? 1;
  await client.readResponses(count, opts.methods ?? [], opts.timeoutMs ?? 3000);
  // When the expected responses are here, give a close that follows them a moment to arrive.
  if (!client.isDone) await client.waitForClose(100);
  const result = { bytes: client.bytes, text: client.text, responses: client.responses(opts.methods ?? []), isClosed: client.isDone };
  client.destroy();
  return result;
}

// ==== In-process servers ====

type RunningServer = ReturnType<typeof startServer>;
const servers = new Set<RunningServer>();

/** startServer on 127.0.0.1:0 with `app`; logs only critical lines unless asked. Returns the port too. */
export function serve(app: WsgiApp, options: Partial<Config> = {}): RunningServer & { port: number } {
  const running = startServer({ binds: ["127.0.0.1:0"], handler: app, logLevel: "critical", ...options });
  servers.add(running);
  return Object.assign(running, { port: running.ports[0] });
}

// ==== Subprocesses ====

const processes = new Set<Subprocess>();

export interface ServerProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  pid: number;
  port: number;
  stderr(): string;
  stdout(): string;
  /** Wait until the error log (stderr) or stdout matches; false on timeout. */
  waitForOutput(pattern: RegExp, stream?: "stderr" | "stdout", timeoutMs?: number): Promise<boolean>;
  exited: Promise<number>;
}

/** Read a stream to the end in the background, appending to `into.text`. */
function collect(stream: ReadableStream<Uint8Array>, into: { text: string }, onChange: () => void): void {
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      into.text += decoder.decode(chunk, { stream: true });
      onChange();
    }
  })().catch(() => {});
}

/**
 * Spawn `bun server.ts ...args` (or `cmd`) and wait for `Listening at: http://127.0.0.1:PORT`
 * in its error log. Rejects (with the log) when it exits first or takes too long.
 */
export async function spawnServer(args: string[], opts: { cmd?: string[]; env?: Record<string, string>; cwd?: string; readyTimeoutMs?: number; detached?: boolean; errorLogFile?: string } = {}): Promise<ServerProcess> {
  const cmd = [...(opts.cmd ?? [process.execPath, SERVER_TS]), ...args];
  const proc = Bun.spawn(cmd, {
    detached: opts.detached ?? false, // true: its own process group, for signals sent to a whole group
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  processes.add(proc);
  void proc.exited.then(() => processes.delete(proc));
  const err = { text: "" }, out = { text: "" };
  const waiters = new Set<() => void>();
  const notify = () => { for (const w of [...waiters]) w(); };
  collect(proc.stderr, err, notify);
  collect(proc.stdout, out, notify);
  let hasExited = false;
  void proc.exited.then(() => { hasExited = true; notify(); });

  // With --error-logfile FILE the error log is that file (read whenever asked: after a rename, the new one).
  const logFile = opts.errorLogFile;
  const readErrorLog = () => (logFile === undefined ? err.text : existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
  const waitForOutput = (pattern: RegExp, stream: "stderr" | "stdout" = "stderr", timeoutMs = 5000): Promise<boolean> =>
    new Promise((resolve) => {
      const text = () => (stream === "stderr" ? readErrorLog() : out.text);
      const check = () => {
        if (pattern.test(text())) finish(true);
        else if (hasExited) finish(false);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const poll = logFile === undefined ? null : setInterval(check, 20);
      const finish = (ok: boolean) => { clearTimeout(timer); if (poll !== null) clearInterval(poll); waiters.delete(check); resolve(ok); };
      waiters.add(check);
      check();
    });

  const ready = await waitForOutput(/Listening at: https?:\/\/127\.0\.0\.1:(\d+)/, "stderr", opts.readyTimeoutMs ?? 10_000);
  if (!ready) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw new Error(`server did not start: ${cmd.join(" ")}\nstderr:\n${readErrorLog()}\nstdout:\n${out.text}`);
  }
  const port = Number(/Listening at: https?:\/\/127\.0\.0\.1:(\d+)/.exec(readErrorLog())![1]);
  return {
    proc, pid: proc.pid, port,
    stderr: readErrorLog,
    stdout: () => out.text,
    waitForOutput,
    exited: proc.exited,
  };
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

/** Run `bun server.ts ...args` to completion (a command that should not serve). */
export async function runCli(args: string[], opts: { cmd?: string[]; timeoutMs?: number; cwd?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  const proc = Bun.spawn([...(opts.cmd ?? [process.execPath, SERVER_TS]), ...args], {
    cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdin: "ignore", stdout: "pipe", stderr: "pipe",
  });
  processes.add(proc);
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 10_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  processes.delete(proc);
  return { code, stdout, stderr };
}

/** VmRSS of a process in bytes (Linux). */
export function readRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

// ==== Cleanup ====

/** Destroy clients, stop in-process servers (not gracefully), kill subprocesses by pid. */
export async function cleanUp(): Promise<void> {
  for (const c of [...clients]) c.destroy();
  clients.clear();
  const stops = [...servers].map((s) => s.stop(false).catch(() => {}));
  servers.clear();
  await Promise.all(stops);
  const exits: Promise<unknown>[] = [];
  for (const p of [...processes]) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill("SIGKILL"); // Subprocess.kill signals this process's own pid
      exits.push(p.exited);
    }
  }
  processes.clear();
  await Promise.all(exits);
}

/** A promise with its resolve function outside (for "the app has started" signals). */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

export const sleep = (ms: number) => Bun.sleep(ms);

// ==== Small TypeScript apps and requests shared by the socket tests ====

export const HOST = "Host: t\r\n";
/** A GET of `target` with a Host line and any `extra` header lines. */
export const get = (target: string, extra = "") => `GET ${target} HTTP/1.1\r\n${HOST}${extra}\r\n`;

/** Answers with the path it saw (PATH_INFO, then ":" and the body for a POST), after 150 ms for /slow. */
export const pathApp: WsgiApp = async (environ, start) => {
  if (environ.PATH_INFO === "/slow") await sleep(150);
  const body = Buffer.from(environ.PATH_INFO + (environ.REQUEST_METHOD === "POST" ? ":" + Buffer.from(environ["wsgi.input"].read()).toString() : ""));
  start("200 OK", [["Content-Type", "text/plain"]]);
  return [body];
};

/** An app answering "PATH_INFO:body" that counts its calls (tests check it never ran for a refused request). */
export function countingEchoApp(): { app: WsgiApp; calls: number } {
  const counter = {
    calls: 0,
    app: ((environ, start) => {
      counter.calls++;
      const body = Buffer.concat([Buffer.from(environ.PATH_INFO + ":"), Buffer.from(environ["wsgi.input"].read())]);
      start("200 OK", [["Content-Type", "text/plain"]]);
      return [body];
    }) as WsgiApp,
  };
  return counter;
}

// Helpers for the tests that run Python apps under a real bunicorn process
// (python.test.ts, supervision.test.ts, frameworks.test.ts): start a server
// with the test virtualenv's Python, find its worker processes in /proc,
// stop it by its own pid and check that no worker outlives it, one request
// per connection, and load over kept-alive connections (helpers.ts RawClient).
import { afterAll, afterEach, beforeAll } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type HttpResponse, RawClient, type ServerProcess, cleanUp, exchange, sleep, spawnServer } from "./helpers.ts";

export const PYTHON = join(import.meta.dir, "..", ".venv", "bin", "python");
export const PYAPPS = join(import.meta.dir, "pyapps");

// ==== Processes ====

/** Pids whose parent is `pid` (the PPid line of /proc/PID/status). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, "utf8");
      const m = /^PPid:\s+(\d+)$/m.exec(status);
      if (m !== null && Number(m[1]) === pid) out.push(Number(name));
    } catch {
      // gone while we looked
    }
  }
  return out.sort((a, b) => a - b);
}

/** Live (not zombie) python worker processes of a front. */
export function workerPids(frontPid: number): number[] {
  return childPids(frontPid).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "latin1").includes("bunicorn-worker") && isAlive(p);
    } catch {
      return false;
    }
  });
}

/** True while the process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return !/^State:\s+Z/m.test(status);
  } catch {
    return false;
  }
}

/** Poll `predicate` every 20 ms until it holds; false after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (predicate()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
}

export interface PyServer extends ServerProcess {
  /** Worker pids seen over the server's life (so they can be checked after the front is gone). */
  seenWorkers: Set<number>;
  /** The current live worker pids (also remembered in seenWorkers). */
  workers(): number[];
}

const running = new Set<PyServer>();

/**
 * `bun server.ts APP -b 127.0.0.1:0 --python .venv/bin/python ...args`, ready when it
 * prints `Workers ready:` (it listens first, then boots its workers, so `Listening at:`
 * comes before any worker is up). Bytecode writing is off so test/pyapps stays clean
 * and an edited app file is always re-read.
 */
export async function startPy(app: string, args: string[] = [], opts: { env?: Record<string, string>; cwd?: string; detached?: boolean } = {}): Promise<PyServer> {
  const server = await spawnServer([app, "-b", "127.0.0.1:0", "--python", PYTHON, ...args], {
    env: { PYTHONDONTWRITEBYTECODE: "1", ...opts.env },
    cwd: opts.cwd,
    detached: opts.detached,
    readyTimeoutMs: 20_000,
  });
  if (!(await server.waitForOutput(/\] Workers ready: /, "stderr", 20_000))) {
    server.proc.kill("SIGKILL");
    await server.exited;
    throw new Error(`workers did not boot: ${app} ${args.join(" ")}\nstderr:\n${server.stderr()}`);
  }
  const seenWorkers = new Set<number>();
  const py: PyServer = Object.assign(server, {
    seenWorkers,
    workers(): number[] {
      const pids = workerPids(server.pid);
      for (const p of pids) seenWorkers.add(p);
      return pids;
    },
  });
  py.workers();
  running.add(py);
  return py;
}

/**
 * Send `signal` to the front (by its pid; SIGKILL if it has not exited after
 * `killAfterMs`), wait for it to exit, then give its workers `graceMs` to exit.
 * Returns the exit code and the workers still alive (those are then killed by
 * pid, so nothing is left behind either way).
 */
export async function stopPy(server: PyServer, signal: NodeJS.Signals = "SIGKILL", graceMs = 3000, killAfterMs = 15_000): Promise<{ code: number | null; survivors: number[] }> {
  running.delete(server);
  server.workers();
  let code: number | null = server.proc.exitCode;
  if (code === null && server.proc.signalCode === null) {
    server.proc.kill(signal);
    const timer = setTimeout(() => server.proc.kill("SIGKILL"), killAfterMs);
    code = await server.exited;
    clearTimeout(timer);
  }
  const watched = [...server.seenWorkers];
  await waitFor(() => watched.every((p) => !isAlive(p)), graceMs);
  const survivors = watched.filter(isAlive);
  for (const p of survivors) {
    try { process.kill(p, "SIGKILL"); } catch { /* gone */ }
  }
  return { code, survivors };
}

/** For afterEach: stop every server still running (SIGQUIT: at once); throws when a worker outlived its front. */
export async function stopAllPy(): Promise<void> {
  const problems: string[] = [];
  for (const server of [...running]) {
    const { survivors } = await stopPy(server, "SIGQUIT", 3000, 3000);
    if (survivors.length > 0) problems.push(`workers ${survivors.join(", ")} outlived front ${server.pid}`);
  }
  if (problems.length > 0) throw new Error(problems.join("; "));
}

/**
 * The hooks a file of Python server tests needs: a temp dir for the file (handed to
 * `setDir`, removed at the end), and after each test every server stopped by its pid.
 */
export function usePyFixture(prefix: string, setDir: (dir: string) => void): void {
  let dir = "";
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), prefix)); setDir(dir); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    try {
      await stopAllPy();
    } finally {
      await cleanUp();
    }
  });
}

/** Watch a server's workers in the background (every 50 ms) so short-lived ones are seen too. */
export function trackWorkers(server: PyServer): () => void {
  const timer = setInterval(() => { try { server.workers(); } catch { /* racing /proc */ } }, 50);
  return () => clearInterval(timer);
}

// ==== Requests ====

/** One request on its own connection (`Connection: close`); the parsed response. */
export async function request(port: number, target: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array; timeoutMs?: number } = {}): Promise<HttpResponse> {
  const method = opts.method ?? "GET";
  const body = opts.body === undefined ? null : typeof opts.body === "string" ? Buffer.from(opts.body, "latin1") : Buffer.from(opts.body);
  let head = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n`;
  for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`;
  if (body !== null && !Object.keys(opts.headers ?? {}).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) {
    head += `Content-Length: ${body.length}\r\n`;
  }
  head += "\r\n";
  const bytes = body === null ? Buffer.from(head, "latin1") : Buffer.concat([Buffer.from(head, "latin1"), body]);
  const result = await exchange(port, bytes, { methods: [method], timeoutMs: opts.timeoutMs ?? 5000 });
  const final = result.responses.filter((r) => r.status >= 200);
  if (final.length === 0) throw new Error(`no response to ${method} ${target}; got ${JSON.stringify(result.text.slice(0, 300))}`);
  return final[0];
}

export const bodyText = (res: HttpResponse) => res.body.toString("utf8");

export interface LoadResult {
  ok: number;
  failures: string[];
  /** Bodies of the 200 answers, in completion order. */
  bodies: string[];
}

/**
 * `concurrency` keep-alive connections sending `target` until `total` requests were
 * sent or `shouldStop()` is true. A non-200 answer or a connection closed under a
 * request is a failure; a connection the server closed after an answer is reopened.
 * `result` is filled as answers come, so a test can watch the load's progress.
 */
export async function runLoad(port: number, opts: { target: string | (() => string); concurrency: number; total?: number; shouldStop?: () => boolean }, result: LoadResult = { ok: 0, failures: [], bodies: [] }): Promise<LoadResult> {
  let sent = 0;
  const nextTarget = () => (typeof opts.target === "string" ? opts.target : opts.target());
  const more = () => (opts.total === undefined || sent < opts.total) && !(opts.shouldStop?.() ?? false);
  const loop = async () => {
    let conn: RawClient | null = null;
    try {
      while (more()) {
        sent++;
        try {
          if (conn === null || conn.isDone) conn = await RawClient.connect(port);
          const res = await conn.request(nextTarget());
          const text = res.body.toString("utf8");
          if (res.status === 200) {
            result.ok++;
            result.bodies.push(text);
          } else {
            result.failures.push(`${res.status}: ${text.slice(0, 100)}`);
          }
          if (/^connection:\s*close$/im.test(res.head)) { conn.destroy(); conn = null; }
        } catch (err) {
          result.failures.push(String(err));
          conn?.destroy();
          conn = null;
        }
      }
    } finally {
      conn?.destroy();
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, loop));
  return result;
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** True when something accepts connections on the port. */
export async function isListening(port: number): Promise<boolean> {
  try {
    (await RawClient.connect(port)).destroy();
    return true;
  } catch {
    return false;
  }
}

/** Lines of the error log that came from a worker: `[worker ID pid PID] text`. */
export function workerLogLines(stderr: string): { id: number; pid: number; text: string }[] {
  const out: { id: number; pid: number; text: string }[] = [];
  for (const m of stderr.matchAll(/\[worker (\d+) pid (\d+)\] (.*)$/gm)) out.push({ id: Number(m[1]), pid: Number(m[2]), text: m[3] });
  return out;
}

export function fileText(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

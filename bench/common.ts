// What the benchmarks share (bench/run.ts, bench/ts.ts, bench/python.ts):
// starting servers and stopping them by their own pid (with a check that none of
// their child processes is left), waiting until they answer, sampling the memory
// of their process trees, running wrk, alternating rounds A B C A B C ... with
// medians and min–max, and a main with a watchdog and signal handling.
import fs from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..");
export const HOST = "127.0.0.1";
export const STARTUP_TIMEOUT_MS = 15_000;
export const STOP_GRACE_MS = 5_000;
export const WRK_SLACK_MS = 15_000; // beyond the run's own duration
const APT_TIMEOUT_MS = 300_000;
const STDERR_TAIL_BYTES = 4_000;
const ORPHAN_WAIT_MS = 3_000; // for a server's children to go after the server itself has exited
/** The longest stopping the servers can take (they are stopped together). */
export const STOP_BUDGET_MS = STOP_GRACE_MS + ORPHAN_WAIT_MS;

export class BenchError extends Error {}

// ---- options ----

export function parsePositiveInt(flag: string, value: string | undefined, usage: string, allowZero = false): number {
  if (value === undefined || !/^[0-9]+$/.test(value) || (!allowZero && Number(value) === 0)) {
    throw new BenchError(`${flag} needs a ${allowZero ? "non-negative" : "positive"} integer, got ${value ?? "nothing"}\n${usage}`);
  }
  return Number(value);
}

// ---- processes ----

/** A process as /proc shows it; the start time tells it apart from a later one with the same pid. */
export interface ProcInfo {
  pid: number;
  startTime: string;
  cmdline: string;
}

function readStat(pid: number): { state: string; ppid: number; startTime: string } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the ")" that closes comm: state ppid pgrp ... with starttime the 20th field.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0], ppid: Number(fields[1]), startTime: fields[19] };
  } catch {
    return null;
  }
}

function readCmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
  } catch {
    return "?";
  }
}

/** Children of every process now, by parent pid. Linux only; elsewhere empty. */
type ProcessTable = Map<number, { pid: number; startTime: string }[]>;

function processTable(): ProcessTable {
  const children: ProcessTable = new Map();
  let entries: string[];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return children;
  }
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = readStat(pid);
    if (stat === null) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push({ pid, startTime: stat.startTime });
    children.set(stat.ppid, list);
  }
  return children;
}

/** Every descendant of a pid (children, their children, ...) in a process table. */
export function descendantsOf(rootPid: number, table: ProcessTable = processTable()): ProcInfo[] {
  const found: ProcInfo[] = [];
  const queue = [rootPid];
  while (queue.length > 0) {
    for (const child of table.get(queue.shift()!) ?? []) {
      found.push({ ...child, cmdline: readCmdline(child.pid) });
      queue.push(child.pid);
    }
  }
  return found;
}

/** The same process (pid and start time) still exists and is not a zombie. */
function isStillRunning(proc: ProcInfo): boolean {
  const stat = readStat(proc.pid);
  return stat !== null && stat.startTime === proc.startTime && stat.state !== "Z";
}

function killIfSame(proc: ProcInfo): void {
  if (!isStillRunning(proc)) return;
  try {
    process.kill(proc.pid, "SIGKILL");
  } catch {
    // gone in between
  }
}

function isRunning(child: Bun.Subprocess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

// ---- memory ----

function rssBytes(pid: number): number {
  try {
    const match = /^VmRSS:\s+([0-9]+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0; // gone in between
  }
}

/** Resident memory of a process and all its descendants now, in bytes. */
export function treeRssBytes(rootPid: number, table: ProcessTable = processTable()): number {
  return [rootPid, ...descendantsOf(rootPid, table).map((p) => p.pid)].reduce((sum, pid) => sum + rssBytes(pid), 0);
}

const RSS_SAMPLE_MS = 150;

/**
 * Samples the whole process tree of each server every RSS_SAMPLE_MS and keeps
 * the largest sum seen since the last `resetPeaks` (one /proc scan a sample, for all).
 */
export class RssSampler {
  private peaks = new Map<Server, number>();
  private timer: ReturnType<typeof setInterval>;

  constructor(private servers: Server[]) {
    this.sample();
    this.timer = setInterval(() => this.sample(), RSS_SAMPLE_MS);
  }

  resetPeaks(): void {
    this.peaks.clear();
    this.sample();
  }

  peak(server: Server): number | null {
    return this.peaks.get(server) ?? null;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sample(): void {
    const table = processTable();
    for (const server of this.servers) {
      if (!isRunning(server.child)) continue;
      const rss = treeRssBytes(server.child.pid, table);
      this.peaks.set(server, Math.max(rss, this.peaks.get(server) ?? 0));
    }
  }
}

/** Busy and total CPU time of the whole machine so far (jiffies), from /proc/stat; null elsewhere. */
function cpuTimes(): { busy: number; total: number } | null {
  try {
    const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    return { busy: total - fields[3] - fields[4], total }; // less idle and iowait
  } catch {
    return null;
  }
}

const QUIET_WINDOW_MS = 500;
const QUIET_BUSY_FRACTION = 0.2;

/**
 * Waits (at most maxMs) until the machine has been mostly idle for a moment: servers
 * that answer before all their workers have booted would otherwise take CPU from
 * the first server measured.
 */
export async function waitForQuietCpu(maxMs: number): Promise<void> {
  const deadline = Date.now() + maxMs;
  let before = cpuTimes();
  while (before !== null && Date.now() < deadline) {
    await Bun.sleep(QUIET_WINDOW_MS);
    const after = cpuTimes();
    if (after === null || (after.busy - before.busy) <= QUIET_BUSY_FRACTION * (after.total - before.total)) return;
    before = after;
  }
}

export function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

// ---- child processes ----

export interface Server {
  label: string;
  child: Bun.Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  stderrTail: string;
  /** Its descendants as last seen (refreshed when it is stopped). */
  descendants: ProcInfo[];
  /** It speaks HTTPS with this certificate (PEM), trusted by the probes; null: plain HTTP. */
  https: { ca: string } | null;
}

const servers: Server[] = [];
/** Other children (wrk, clients, helpers) to kill when the benchmark is stopped. */
const helpers = new Set<Bun.Subprocess>();
let isStopping = false; // after a signal: errors from killed children are expected
/** Child processes of servers that outlived them (and were killed here). */
export const leftovers: { server: string; proc: ProcInfo }[] = [];

export function stopping(): boolean {
  return isStopping;
}

/** Once stopping has begun (a signal), nothing new is started: it would outlive the cleanup. */
function refuseWhileStopping(): void {
  if (isStopping) throw new BenchError("stopping");
}

export interface HelperOptions {
  timeoutMs: number; // killed (SIGKILL) after this
  stdin?: "pipe" | "ignore";
  env?: Record<string, string>;
  cwd?: string;
}

/** Spawns a helper process (its output piped) that is also killed when the benchmark stops. */
export function spawnHelper(cmd: string[], options: HelperOptions): Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe"> {
  refuseWhileStopping();
  const child = Bun.spawn(cmd, {
    cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdin: options.stdin ?? "ignore", stdout: "pipe", stderr: "pipe",
    timeout: options.timeoutMs, killSignal: "SIGKILL",
  });
  helpers.add(child);
  void child.exited.then(() => helpers.delete(child));
  return child;
}

/** Keeps the last bytes a server wrote, and keeps its pipes drained so it never blocks on them. */
async function drainOutput(server: Server, stream: ReadableStream<Uint8Array>): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    server.stderrTail = (server.stderrTail + decoder.decode(chunk, { stream: true })).slice(-STDERR_TAIL_BYTES);
  }
}

export function findFreePort(): number {
  const listener = Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

export interface StartOptions {
  env?: Record<string, string>;
  cwd?: string; // default: the repository root
  /** Every bind is HTTPS with this certificate (PEM text). */
  https?: { ca: string };
}

export function startServer(label: string, cmd: string[], port: number, options: StartOptions = {}): Server {
  refuseWhileStopping();
  const child = Bun.spawn(cmd, { cwd: options.cwd ?? ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: options.env ?? process.env });
  const server: Server = { label, child, port, stderrTail: "", descendants: [], https: options.https ?? null };
  servers.push(server);
  void drainOutput(server, child.stdout);
  void drainOutput(server, child.stderr);
  return server;
}

/** Why a server is no longer running (with the end of what it wrote), or null while it runs. */
export function exitReason(server: Server): string | null {
  if (isRunning(server.child)) return null;
  const lastLine = server.stderrTail.trim().split("\n").at(-1) ?? "";
  return `exited (${server.child.exitCode ?? server.child.signalCode})${lastLine ? `: ${lastLine}` : ""}`;
}

/** Tells whether an answer is the one expected; anything else is a reason to wait on. */
export type AnswerCheck = (status: number, body: string) => boolean;

export function expectBody(expected: string): AnswerCheck {
  return (status, body) => status === 200 && body === expected;
}

export interface Probe {
  path: string;
  method?: string;
  body?: Uint8Array;
  isExpected: AnswerCheck;
}

/** The scheme, host and port of a server's bind. */
export function originOf(server: Pick<Server, "port" | "https">): string {
  return `${server.https ? "https" : "http"}://${HOST}:${server.port}`;
}

/** Asks once; returns null when the answer is the expected one, else what was wrong. Over HTTPS it trusts only the server's own certificate. */
export async function probeOnce(server: Pick<Server, "port" | "https">, probe: Probe, timeoutMs = 1_000): Promise<string | null> {
  try {
    const res = await fetch(`${originOf(server)}${probe.path}`, {
      method: probe.method ?? "GET", body: probe.body, signal: AbortSignal.timeout(timeoutMs),
      ...(server.https ? { tls: { ca: server.https.ca } } : {}),
    });
    const body = await res.text();
    return probe.isExpected(res.status, body) ? null : `answered ${res.status} ${JSON.stringify(body.slice(0, 100))}${body.length > 100 ? ` (${body.length} chars)` : ""}`;
  } catch (err) {
    // Bun's fetch errors carry a code (ECONNRESET, ...) and a long hint; the code says it.
    const code = (err as { code?: unknown }).code;
    return typeof code === "string" && code !== "" ? code : String(err);
  }
}

/** Polls until the server gives the expected answer at path. */
export async function waitUntilAnswering(server: Server, path: string, isExpected: AnswerCheck): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  let lastProblem = "no answer";
  while (Date.now() < deadline) {
    const exited = exitReason(server);
    if (exited) throw new BenchError(`${server.label} ${exited} before answering:\n${server.stderrTail}`);
    const problem = await probeOnce(server, { path, isExpected });
    if (problem === null) return;
    lastProblem = problem;
    await Bun.sleep(100);
  }
  throw new BenchError(`${server.label} did not answer on ${originOf(server)}${path} within ${STARTUP_TIMEOUT_MS} ms (${lastProblem}):\n${server.stderrTail}`);
}

/**
 * Stops one server by its pid: SIGTERM, then SIGKILL after a grace period. Then
 * waits for the child processes it had to go; any left are killed by their pid
 * and recorded in `leftovers`.
 */
export async function stopServer(server: Server): Promise<void> {
  const { child } = server;
  if (isRunning(child)) {
    server.descendants = descendantsOf(child.pid);
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    await child.exited;
    clearTimeout(timer);
  }
  const deadline = Date.now() + ORPHAN_WAIT_MS;
  let left = server.descendants.filter(isStillRunning);
  while (left.length > 0 && Date.now() < deadline) {
    await Bun.sleep(50);
    left = left.filter(isStillRunning);
  }
  for (const proc of left) {
    leftovers.push({ server: server.label, proc });
    killIfSame(proc);
  }
  server.descendants = [];
}

function killHelpers(): void {
  for (const child of helpers) child.kill("SIGKILL");
}

export async function stopEverything(): Promise<void> {
  isStopping = true;
  killHelpers();
  await Promise.all(servers.map(stopServer));
}

/** Last resort when the process exits some other way: kill what is left, synchronously. */
export function killEverythingNow(): void {
  killHelpers();
  for (const server of servers) {
    const { child } = server;
    const running = isRunning(child);
    const descendants = running ? descendantsOf(child.pid) : server.descendants;
    if (running) child.kill("SIGKILL");
    for (const proc of descendants) killIfSame(proc);
  }
}

/** Reads a child's output line by line; `next` waits for the next line, up to a deadline. */
export class LineReader {
  private lines: string[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    void this.pump(stream);
  }

  async next(timeoutMs: number): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0 && !this.ended && Date.now() < deadline) {
      await Promise.race([new Promise<void>((resolve) => (this.waiter = resolve)), Bun.sleep(deadline - Date.now())]);
    }
    return this.lines.shift() ?? null;
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop()!;
      this.lines.push(...parts.filter((line) => line.trim() !== ""));
      this.wake();
    }
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }
}

// ---- environment ----

/** This process's environment without a virtualenv or Python path of its own, which would change what the servers load. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && key !== "VIRTUAL_ENV" && key !== "PYTHONPATH" && key !== "PYTHONHOME") env[key] = value;
  }
  return env;
}

/** Runs a command to its end (killed at timeoutMs). */
export async function runCommand(cmd: string[], timeoutMs: number, env: Record<string, string> = cleanEnv()): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnHelper(cmd, { timeoutMs, env });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

/** A command line as shown to people: bun for this Bun, paths relative to the repository. */
export function shown(cmd: string[]): string {
  return cmd.map((a) => (a === process.execPath ? "bun" : a.replaceAll(ROOT + "/", ""))).join(" ");
}

// ---- wrk ----

/** Returns the path of wrk, installing it with apt-get when it is missing. */
export async function ensureWrk(): Promise<string> {
  const found = Bun.which("wrk");
  if (found) return found;
  const sudo = process.getuid?.() === 0 ? [] : Bun.which("sudo") ? ["sudo", "-n"] : null;
  if (sudo !== null && Bun.which("apt-get")) {
    console.error("bench: wrk not found; installing it with apt-get");
    const env = { ...cleanEnv(), DEBIAN_FRONTEND: "noninteractive" };
    const install = [...sudo, "apt-get", "install", "-y", "--no-install-recommends", "wrk"];
    if ((await runCommand(install, APT_TIMEOUT_MS, env)).code !== 0) {
      await runCommand([...sudo, "apt-get", "update"], APT_TIMEOUT_MS, env);
      await runCommand(install, APT_TIMEOUT_MS, env);
    }
  }
  const installed = Bun.which("wrk");
  if (installed) return installed;
  throw new BenchError("bench: wrk is not installed and could not be installed with apt-get (needs root or passwordless sudo).\n"
    + "Install it (Debian/Ubuntu: `sudo apt-get install wrk`; elsewhere see https://github.com/wg/wrk) and run again.");
}

export interface WrkResult {
  requestsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers. */
  errors: number;
  problems: string[]; // the same, as wrk words them
}

const LATENCY_UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function latencyMs(output: string, percentile: string): number | null {
  const match = new RegExp(`^\\s*${percentile}%\\s+([0-9.]+)(us|ms|s|m)\\s*$`, "m").exec(output);
  return match ? Number(match[1]) * LATENCY_UNIT_MS[match[2]] : null;
}

export function parseWrkOutput(output: string): WrkResult {
  const rate = /^Requests\/sec:\s+([0-9.]+)/m.exec(output);
  if (!rate) throw new BenchError(`could not find Requests/sec in wrk output:\n${output}`);
  const problems: string[] = [];
  let errors = 0;
  const socketErrors = /^\s*Socket errors:(.*)$/m.exec(output);
  if (socketErrors) {
    problems.push(`socket errors:${socketErrors[1]}`);
    errors += [...socketErrors[1].matchAll(/[0-9]+/g)].reduce((sum, m) => sum + Number(m[0]), 0);
  }
  const non2xx = /^\s*Non-2xx or 3xx responses:\s*([0-9]+)/m.exec(output);
  if (non2xx) {
    problems.push(`${non2xx[1]} non-2xx answers`);
    errors += Number(non2xx[1]);
  }
  return { requestsPerSec: Number(rate[1]), p50Ms: latencyMs(output, "50"), p99Ms: latencyMs(output, "99"), errors, problems };
}

export interface WrkLoad {
  connections: number;
  path: string;
  /** A wrk Lua script (for a POST and its body), or none for a GET. */
  script?: string;
}

/** wrk against one server; over HTTPS (an https:// URL) it does one TLS handshake per connection and keeps it alive. */
export async function runWrk(wrk: string, server: Pick<Server, "port" | "https">, durationS: number, load: WrkLoad): Promise<WrkResult> {
  const script = load.script ? ["-s", load.script] : [];
  const cmd = [wrk, "-t1", `-c${load.connections}`, `-d${durationS}s`, "--latency", ...script, `${originOf(server)}${load.path}`];
  const child = spawnHelper(cmd, { timeoutMs: durationS * 1000 + WRK_SLACK_MS });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new BenchError(`wrk exited ${code ?? child.signalCode}: ${(stdout + stderr).trim().split("\n").at(-1)}`);
  return parseWrkOutput(stdout);
}

// ---- rounds ----

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function formatRate(value: number): string {
  return `${Math.round(value).toLocaleString("en-US")} req/s`;
}

/** What one server did over the rounds of one measurement. */
export interface Rounds<T> {
  server: Server;
  samples: T[];
  /** Why it was dropped from the rounds (it failed a run, or exited), or null. */
  failure: string | null;
}

export interface AlternateOptions<T> {
  rounds: number;
  warmup: boolean;
  /** One run of one server; throws BenchError when the server failed it. */
  measure: (server: Server, isWarmup: boolean) => Promise<T>;
  /** A sample as printed in the round's line. */
  describe: (sample: T) => string;
  /** Called after the warm-up, before the first round. */
  beforeRounds?: () => void | Promise<void>;
  log?: (line: string) => void;
}

/**
 * A warm-up of each server, then rounds A B C, A B C, ... so that a drift of the
 * machine hits all alike. Prints a line a round. A server that fails a run (or
 * has exited) is dropped from the later rounds, with the reason; the others go on.
 */
export async function alternate<T>(servers: Server[], options: AlternateOptions<T>): Promise<Rounds<T>[]> {
  const log = options.log ?? console.log;
  const results: Rounds<T>[] = servers.map((server) => ({ server, samples: [], failure: exitReason(server) }));
  const attempt = async (result: Rounds<T>, isWarmup: boolean): Promise<T | null> => {
    result.failure ??= exitReason(result.server);
    if (result.failure !== null) return null;
    try {
      return await options.measure(result.server, isWarmup);
    } catch (err) {
      if (!(err instanceof BenchError) || stopping()) throw err;
      result.failure = exitReason(result.server) ?? err.message;
      return null;
    }
  };
  if (options.warmup) for (const result of results) await attempt(result, true);
  await options.beforeRounds?.();
  for (let round = 1; round <= options.rounds; round++) {
    const parts: string[] = [];
    for (const result of results) {
      if (result.failure !== null) continue;
      const sample = await attempt(result, false);
      if (sample !== null) result.samples.push(sample);
      parts.push(`${result.server.label} ${sample !== null ? options.describe(sample) : `failed: ${result.failure}`}`);
    }
    log(`  round ${round}: ${parts.join(" | ")}`);
  }
  return results;
}

export interface WrkRoundOptions extends WrkLoad {
  durationS: number;
  rounds: number;
  warmupS: number;
  beforeRounds?: () => void | Promise<void>;
}

export function describeWrk(result: WrkResult): string {
  return `${formatRate(result.requestsPerSec)}${result.problems.length ? ` [${result.problems.join("; ")}]` : ""}`;
}

/** Alternating wrk rounds over all the servers (see `alternate`). */
export function wrkRounds(wrk: string, servers: Server[], options: WrkRoundOptions, log?: (line: string) => void): Promise<Rounds<WrkResult>[]> {
  return alternate(servers, {
    rounds: options.rounds,
    warmup: options.warmupS > 0,
    measure: (server, isWarmup) => runWrk(wrk, server, isWarmup ? options.warmupS : options.durationS, options),
    describe: describeWrk,
    beforeRounds: options.beforeRounds,
    log,
  });
}

function summarize(label: string, rates: number[]): string {
  return `${label.padEnd(10)} median ${formatRate(median(rates))} (min–max ${formatRate(Math.min(...rates))} – ${formatRate(Math.max(...rates))})`;
}

/** Two servers, A B A B ...: prints each round, the medians with min–max, errors, and the ratio A/B. */
export async function runAlternatingRounds(wrk: string, a: Server, b: Server, options: WrkRoundOptions): Promise<void> {
  const results = await wrkRounds(wrk, [a, b], options);
  for (const { server, failure } of results) {
    if (failure !== null) throw new BenchError(`${server.label} failed: ${failure}`);
  }
  const [ratesA, ratesB] = results.map((r) => r.samples.map((s) => s.requestsPerSec));
  const problemRounds = results.reduce((n, r) => n + r.samples.filter((s) => s.errors > 0).length, 0);
  console.log(summarize(a.label, ratesA));
  console.log(summarize(b.label, ratesB));
  console.log(problemRounds ? `non-2xx/socket errors: in ${problemRounds} runs (see above)` : "non-2xx/socket errors: none");
  console.log(`ratio ${a.label}/${b.label} (medians): ${(median(ratesA) / median(ratesB)).toFixed(3)}`);
}

// ---- main ----

export function printError(err: unknown): void {
  console.error(err instanceof BenchError ? err.message : err);
}

/**
 * Runs a benchmark under a watchdog of budgetMs, stopping every server at the end,
 * on error, and on SIGINT/SIGTERM. Returns the exit code: 1 on error or when a
 * server left a child process behind.
 */
export async function runGuarded(budgetMs: number, run: () => Promise<void>): Promise<number> {
  const watchdog = setTimeout(() => {
    console.error(`bench: gave up after ${budgetMs} ms`);
    killEverythingNow();
    process.exit(1);
  }, budgetMs);
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.on(signal, () => {
      console.error(`bench: ${signal}, stopping servers`);
      void stopEverything().finally(() => process.exit(code));
    });
  }
  process.on("exit", killEverythingNow);
  let code = 0;
  try {
    await run();
  } catch (err) {
    if (!isStopping) printError(err);
    code = 1;
  } finally {
    await stopEverything();
    clearTimeout(watchdog);
  }
  for (const { server, proc } of leftovers) {
    console.error(`bench: ${server} left pid ${proc.pid} (${proc.cmdline}) running after it stopped; killed it`);
    code = 1;
  }
  return code;
}

export interface BenchMain<Options, Prepared> {
  /** Throws BenchError on a bad argument (exit 2). */
  parse: (argv: string[]) => Options;
  /** Installs and checks what the run needs (exit 1 when it fails); each step bounded by its own timeout. */
  prepare: (options: Options) => Promise<Prepared>;
  budgetMs: (options: Options, prepared: Prepared) => number;
  run: (options: Options, prepared: Prepared) => Promise<void>;
}

/** The main of every benchmark here: options, preparation, then the run under runGuarded. Returns the exit code. */
export async function benchMain<Options, Prepared>(main: BenchMain<Options, Prepared>): Promise<number> {
  let options: Options;
  try {
    options = main.parse(process.argv.slice(2));
  } catch (err) {
    printError(err);
    return 2;
  }
  let prepared: Prepared;
  try {
    prepared = await main.prepare(options);
  } catch (err) {
    printError(err);
    return 1;
  }
  return runGuarded(main.budgetMs(options, prepared), () => main.run(options, prepared));
}

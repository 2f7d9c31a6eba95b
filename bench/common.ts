// What the wrk benchmarks share (bench/ts.ts, bench/python.ts): starting servers
// and stopping them by their own pid (with a check that none of their child
// processes is left), waiting until they answer, running wrk, alternating rounds
// A B A B with medians and min–max, and a main with a watchdog and signal handling.
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

/** Every descendant of a pid now (children, their children, ...). Linux only; elsewhere none. */
export function descendantsOf(rootPid: number): ProcInfo[] {
  let entries: string[];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return [];
  }
  const children = new Map<number, { pid: number; startTime: string }[]>();
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = readStat(pid);
    if (stat === null) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push({ pid, startTime: stat.startTime });
    children.set(stat.ppid, list);
  }
  const found: ProcInfo[] = [];
  const queue = [rootPid];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift()!) ?? []) {
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

// ---- servers ----

export interface Server {
  label: string;
  child: Bun.Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  stderrTail: string;
  /** Its descendants as last seen (refreshed when it is stopped). */
  descendants: ProcInfo[];
}

const servers: Server[] = [];
let isStopping = false; // after a signal: errors from killed children are expected
let wrkChild: Bun.Subprocess | null = null;
/** Child processes of servers that outlived them (and were killed here). */
export const leftovers: { server: string; proc: ProcInfo }[] = [];

export function stopping(): boolean {
  return isStopping;
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

export function startServer(label: string, cmd: string[], port: number, env?: Record<string, string>): Server {
  const child = Bun.spawn(cmd, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe", env: env ?? process.env });
  const server: Server = { label, child, port, stderrTail: "", descendants: [] };
  servers.push(server);
  void drainOutput(server, child.stdout);
  void drainOutput(server, child.stderr);
  return server;
}

/** Tells whether an answer is the one expected; anything else is a reason to wait on. */
export type AnswerCheck = (status: number, body: string) => boolean;

export function expectBody(expected: string): AnswerCheck {
  return (status, body) => status === 200 && body === expected;
}

/** Polls until the server gives the expected answer at path. */
export async function waitUntilAnswering(server: Server, path: string, isExpected: AnswerCheck): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  const url = `http://${HOST}:${server.port}${path}`;
  let lastProblem = "no answer";
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new BenchError(`${server.label} exited (${server.child.exitCode ?? server.child.signalCode}) before answering:\n${server.stderrTail}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      const body = await res.text();
      if (isExpected(res.status, body)) return;
      lastProblem = `answered ${res.status} ${JSON.stringify(body.slice(0, 100))}`;
    } catch (err) {
      lastProblem = String(err);
    }
    await Bun.sleep(100);
  }
  throw new BenchError(`${server.label} did not answer on ${url} within ${STARTUP_TIMEOUT_MS} ms (${lastProblem}):\n${server.stderrTail}`);
}

/**
 * Stops one server by its pid: SIGTERM, then SIGKILL after a grace period. Then
 * waits for the child processes it had to go; any left are killed by their pid
 * and recorded in `leftovers`.
 */
export async function stopServer(server: Server): Promise<void> {
  const { child } = server;
  if (child.exitCode === null && child.signalCode === null) {
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

export async function stopEverything(): Promise<void> {
  isStopping = true;
  wrkChild?.kill("SIGKILL");
  await Promise.all(servers.map(stopServer));
}

/** Last resort when the process exits some other way: kill what is left, synchronously. */
export function killEverythingNow(): void {
  wrkChild?.kill("SIGKILL");
  for (const server of servers) {
    const { child } = server;
    const running = child.exitCode === null && child.signalCode === null;
    const descendants = running ? descendantsOf(child.pid) : server.descendants;
    if (running) child.kill("SIGKILL");
    for (const proc of descendants) killIfSame(proc);
  }
}

// ---- wrk ----

async function runQuietly(cmd: string[], timeoutMs: number): Promise<boolean> {
  const child = Bun.spawn(cmd, { stdout: "inherit", stderr: "inherit", timeout: timeoutMs, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  return (await child.exited) === 0;
}

/** Returns the path of wrk, installing it with apt-get when it is missing. */
export async function ensureWrk(): Promise<string> {
  const found = Bun.which("wrk");
  if (found) return found;
  const sudo = process.getuid?.() === 0 ? [] : Bun.which("sudo") ? ["sudo", "-n"] : null;
  if (sudo !== null && Bun.which("apt-get")) {
    console.error("bench: wrk not found; installing it with apt-get");
    const install = [...sudo, "apt-get", "install", "-y", "--no-install-recommends", "wrk"];
    if (!(await runQuietly(install, APT_TIMEOUT_MS))) {
      await runQuietly([...sudo, "apt-get", "update"], APT_TIMEOUT_MS);
      await runQuietly(install, APT_TIMEOUT_MS);
    }
  }
  const installed = Bun.which("wrk");
  if (installed) return installed;
  throw new BenchError("bench: wrk is not installed and could not be installed with apt-get (needs root or passwordless sudo).\n"
    + "Install it (Debian/Ubuntu: `sudo apt-get install wrk`; elsewhere see https://github.com/wg/wrk) and run again.");
}

export interface WrkResult {
  requestsPerSec: number;
  problems: string[]; // socket errors and non-2xx answers, as wrk reports them
}

export function parseWrkOutput(output: string): WrkResult {
  const rate = /^Requests\/sec:\s+([0-9.]+)/m.exec(output);
  if (!rate) throw new BenchError(`could not find Requests/sec in wrk output:\n${output}`);
  const problems: string[] = [];
  const socketErrors = /^\s*Socket errors:(.*)$/m.exec(output);
  if (socketErrors) problems.push(`socket errors:${socketErrors[1]}`);
  const non2xx = /^\s*Non-2xx or 3xx responses:\s*([0-9]+)/m.exec(output);
  if (non2xx) problems.push(`${non2xx[1]} non-2xx answers`);
  return { requestsPerSec: Number(rate[1]), problems };
}

export async function runWrk(wrk: string, port: number, durationS: number, connections: number, path = "/"): Promise<WrkResult> {
  const cmd = [wrk, "-t1", `-c${connections}`, `-d${durationS}s`, `http://${HOST}:${port}${path}`];
  const child = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", timeout: durationS * 1000 + WRK_SLACK_MS, killSignal: "SIGKILL" });
  wrkChild = child;
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  wrkChild = null;
  if (code !== 0) throw new BenchError(`${cmd.join(" ")} exited ${code}:\n${stdout}${stderr}`);
  return parseWrkOutput(stdout);
}

// ---- report ----

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function formatRate(value: number): string {
  return `${Math.round(value).toLocaleString("en-US")} req/s`;
}

export function summarize(label: string, rates: number[]): string {
  return `${label.padEnd(10)} median ${formatRate(median(rates))} (min–max ${formatRate(Math.min(...rates))} – ${formatRate(Math.max(...rates))})`;
}

export interface RoundOptions {
  durationS: number;
  rounds: number;
  warmupS: number;
  connections: number;
  path: string;
  /** Called after the warm-up, before the first round. */
  beforeRounds?: () => void | Promise<void>;
}

/** Warm-up of each, then rounds A B A B ...; prints each round, the medians with min–max, and the ratio A/B. */
export async function runAlternatingRounds(wrk: string, a: Server, b: Server, options: RoundOptions): Promise<void> {
  if (options.warmupS > 0) {
    await runWrk(wrk, a.port, options.warmupS, options.connections, options.path);
    await runWrk(wrk, b.port, options.warmupS, options.connections, options.path);
  }
  await options.beforeRounds?.();
  const ratesA: number[] = [];
  const ratesB: number[] = [];
  let problemRounds = 0;
  for (let round = 1; round <= options.rounds; round++) {
    const resultA = await runWrk(wrk, a.port, options.durationS, options.connections, options.path);
    const resultB = await runWrk(wrk, b.port, options.durationS, options.connections, options.path);
    ratesA.push(resultA.requestsPerSec);
    ratesB.push(resultB.requestsPerSec);
    const notes = [...resultA.problems.map((p) => `${a.label} ${p}`), ...resultB.problems.map((p) => `${b.label} ${p}`)];
    if (notes.length) problemRounds++;
    console.log(`round ${round}: ${a.label} ${formatRate(resultA.requestsPerSec)} | ${b.label} ${formatRate(resultB.requestsPerSec)}${notes.length ? `  [${notes.join("; ")}]` : ""}`);
  }
  console.log(summarize(a.label, ratesA));
  console.log(summarize(b.label, ratesB));
  console.log(problemRounds ? `non-2xx/socket errors: in ${problemRounds} of ${options.rounds} rounds (see above)` : "non-2xx/socket errors: none");
  console.log(`ratio ${a.label}/${b.label} (medians): ${(median(ratesA) / median(ratesB)).toFixed(3)}`);
}

// ---- main ----

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
    if (!isStopping) console.error(err instanceof BenchError ? err.message : err);
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

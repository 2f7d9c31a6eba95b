// bunicorn with a TypeScript app against a plain Bun.serve, both answering
// "Hello, World!", measured with wrk in alternating rounds (A B A B ...) so
// that drift on the machine hits both alike. Prints each round, the medians
// with min–max, and the ratio bunicorn / Bun.serve.
//
//   bun bench/ts.ts [--duration 5] [--rounds 3] [--warmup 1] [--connections 50]
//                   [--server server.ts | dist/bunicorn] [--app apps/hello.ts] [-- EXTRA SERVER FLAGS]
//
// Both servers are started here and stopped by their own pid at the end, on
// error, and on SIGINT/SIGTERM. Every step has a deadline, and a watchdog
// bounds the whole run. wrk is installed with apt-get when missing.
import { join, resolve } from "node:path";

const ROOT = join(import.meta.dir, "..");
const HOST = "127.0.0.1";
const EXPECTED_BODY = "Hello, World!";
const STARTUP_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;
const WRK_SLACK_MS = 15_000; // beyond the run's own duration
const APT_TIMEOUT_MS = 300_000;
const STDERR_TAIL_BYTES = 4_000;

class BenchError extends Error {}

// ---- options ----

interface Options {
  durationS: number;
  rounds: number;
  warmupS: number;
  connections: number;
  server: string;
  app: string;
  extraServerArgs: string[];
}

const USAGE = "usage: bun bench/ts.ts [--duration S] [--rounds N] [--warmup S] [--connections N] [--server server.ts|dist/bunicorn] [--app apps/hello.ts] [-- SERVER FLAGS]";

function parsePositiveInt(flag: string, value: string | undefined, allowZero = false): number {
  if (value === undefined || !/^[0-9]+$/.test(value) || (!allowZero && Number(value) === 0)) {
    throw new BenchError(`${flag} needs a ${allowZero ? "non-negative" : "positive"} integer, got ${value ?? "nothing"}\n${USAGE}`);
  }
  return Number(value);
}

function parseOptions(argv: string[]): Options {
  const options: Options = { durationS: 5, rounds: 3, warmupS: 1, connections: 50, server: "server.ts", app: "apps/hello.ts", extraServerArgs: [] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    switch (flag) {
      case "--duration": options.durationS = parsePositiveInt(flag, value); i++; break;
      case "--rounds": options.rounds = parsePositiveInt(flag, value); i++; break;
      case "--warmup": options.warmupS = parsePositiveInt(flag, value, true); i++; break;
      case "--connections": options.connections = parsePositiveInt(flag, value); i++; break;
      case "--server": options.server = value ?? ""; i++; break;
      case "--app": options.app = value ?? ""; i++; break;
      case "--": options.extraServerArgs = argv.slice(i + 1); i = argv.length; break;
      case "-h":
      case "--help": console.log(USAGE); process.exit(0);
      default: throw new BenchError(`unknown argument ${flag}\n${USAGE}`);
    }
  }
  if (!options.server || !options.app) throw new BenchError(USAGE);
  return options;
}

// ---- child processes ----

interface Server {
  label: string;
  child: Bun.Subprocess<"ignore", "pipe", "pipe">;
  port: number;
  stderrTail: string;
}

const servers: Server[] = [];
let isStopping = false; // after a signal: errors from killed children are expected
let wrkChild: Bun.Subprocess | null = null;

/** Keeps the last bytes a server wrote, and keeps its pipes drained so it never blocks on them. */
async function drainOutput(server: Server, stream: ReadableStream<Uint8Array>): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    server.stderrTail = (server.stderrTail + decoder.decode(chunk, { stream: true })).slice(-STDERR_TAIL_BYTES);
  }
}

function findFreePort(): number {
  const listener = Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

function startServer(label: string, cmd: string[]): Server {
  const child = Bun.spawn(cmd, { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const server: Server = { label, child, port: 0, stderrTail: "" };
  servers.push(server);
  void drainOutput(server, child.stdout);
  void drainOutput(server, child.stderr);
  return server;
}

/** Polls until the server answers "Hello, World!" with 200. */
async function waitUntilAnswering(server: Server): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  const url = `http://${HOST}:${server.port}/`;
  let lastProblem = "no answer";
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new BenchError(`${server.label} exited (${server.child.exitCode ?? server.child.signalCode}) before answering:\n${server.stderrTail}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      const body = await res.text();
      if (res.status === 200 && body === EXPECTED_BODY) return;
      lastProblem = `answered ${res.status} ${JSON.stringify(body.slice(0, 100))}`;
    } catch (err) {
      lastProblem = String(err);
    }
    await Bun.sleep(100);
  }
  throw new BenchError(`${server.label} did not answer on ${url} within ${STARTUP_TIMEOUT_MS} ms (${lastProblem}):\n${server.stderrTail}`);
}

/** Stops one server by its pid: SIGTERM, then SIGKILL after a grace period. */
async function stopServer(server: Server): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
  await child.exited;
  clearTimeout(timer);
}

async function stopEverything(): Promise<void> {
  isStopping = true;
  wrkChild?.kill("SIGKILL");
  await Promise.all(servers.map(stopServer));
}

/** Last resort when the process exits some other way: kill what is left, synchronously. */
function killEverythingNow(): void {
  wrkChild?.kill("SIGKILL");
  for (const { child } of servers) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

// ---- wrk ----

async function runQuietly(cmd: string[], timeoutMs: number): Promise<boolean> {
  const child = Bun.spawn(cmd, { stdout: "inherit", stderr: "inherit", timeout: timeoutMs, env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  return (await child.exited) === 0;
}

/** Returns the path of wrk, installing it with apt-get when it is missing. */
async function ensureWrk(): Promise<string> {
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

interface WrkResult {
  requestsPerSec: number;
  problems: string[]; // socket errors and non-2xx answers, as wrk reports them
}

function parseWrkOutput(output: string): WrkResult {
  const rate = /^Requests\/sec:\s+([0-9.]+)/m.exec(output);
  if (!rate) throw new BenchError(`could not find Requests/sec in wrk output:\n${output}`);
  const problems: string[] = [];
  const socketErrors = /^\s*Socket errors:(.*)$/m.exec(output);
  if (socketErrors) problems.push(`socket errors:${socketErrors[1]}`);
  const non2xx = /^\s*Non-2xx or 3xx responses:\s*([0-9]+)/m.exec(output);
  if (non2xx) problems.push(`${non2xx[1]} non-2xx answers`);
  return { requestsPerSec: Number(rate[1]), problems };
}

async function runWrk(wrk: string, port: number, durationS: number, connections: number): Promise<WrkResult> {
  const cmd = [wrk, "-t1", `-c${connections}`, `-d${durationS}s`, `http://${HOST}:${port}/`];
  const child = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", timeout: durationS * 1000 + WRK_SLACK_MS, killSignal: "SIGKILL" });
  wrkChild = child;
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  wrkChild = null;
  if (code !== 0) throw new BenchError(`${cmd.join(" ")} exited ${code}:\n${stdout}${stderr}`);
  return parseWrkOutput(stdout);
}

// ---- report ----

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function formatRate(value: number): string {
  return `${Math.round(value).toLocaleString("en-US")} req/s`;
}

function summarize(label: string, rates: number[]): string {
  return `${label.padEnd(10)} median ${formatRate(median(rates))} (min–max ${formatRate(Math.min(...rates))} – ${formatRate(Math.max(...rates))})`;
}

// ---- main ----

function bunicornCommand(options: Options, port: number): string[] {
  const server = resolve(ROOT, options.server);
  const prefix = /\.[cm]?[jt]s$/.test(server) ? [process.execPath, server] : [server];
  return [...prefix, options.app, "-b", `${HOST}:${port}`, ...options.extraServerArgs];
}

async function runBench(options: Options, wrk: string): Promise<void> {
  const bunicornPort = findFreePort();
  const baselinePort = findFreePort();
  const bunicornCmd = bunicornCommand(options, bunicornPort);
  const bunicorn = startServer("bunicorn", bunicornCmd);
  bunicorn.port = bunicornPort;
  const baseline = startServer("Bun.serve", [process.execPath, join(ROOT, "bench", "bunserve_hello.ts"), String(baselinePort)]);
  baseline.port = baselinePort;
  await Promise.all([waitUntilAnswering(bunicorn), waitUntilAnswering(baseline)]);

  console.log(`bench/ts.ts: Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs`);
  console.log(`  A bunicorn:  ${bunicornCmd.map((a) => (a === process.execPath ? "bun" : a.replace(ROOT + "/", ""))).join(" ")}`);
  console.log(`  B Bun.serve: bench/bunserve_hello.ts`);
  console.log(`  wrk -t1 -c${options.connections} -d${options.durationS}s, ${options.rounds} rounds A B, ${options.warmupS}s warm-up each`);
  if (options.warmupS > 0) {
    await runWrk(wrk, bunicorn.port, options.warmupS, options.connections);
    await runWrk(wrk, baseline.port, options.warmupS, options.connections);
  }

  const rates: Record<"bunicorn" | "baseline", number[]> = { bunicorn: [], baseline: [] };
  for (let round = 1; round <= options.rounds; round++) {
    const a = await runWrk(wrk, bunicorn.port, options.durationS, options.connections);
    const b = await runWrk(wrk, baseline.port, options.durationS, options.connections);
    rates.bunicorn.push(a.requestsPerSec);
    rates.baseline.push(b.requestsPerSec);
    const notes = [...a.problems.map((p) => `bunicorn ${p}`), ...b.problems.map((p) => `Bun.serve ${p}`)];
    console.log(`round ${round}: bunicorn ${formatRate(a.requestsPerSec)} | Bun.serve ${formatRate(b.requestsPerSec)}${notes.length ? `  [${notes.join("; ")}]` : ""}`);
  }
  console.log(summarize("bunicorn", rates.bunicorn));
  console.log(summarize("Bun.serve", rates.baseline));
  console.log(`ratio bunicorn/Bun.serve (medians): ${(median(rates.bunicorn) / median(rates.baseline)).toFixed(3)}`);
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(err instanceof BenchError ? err.message : err);
    return 2;
  }
  let wrk: string;
  try {
    wrk = await ensureWrk(); // bounded by its own apt-get timeouts
  } catch (err) {
    console.error(err instanceof BenchError ? err.message : err);
    return 1;
  }
  // Warm-up and rounds, plus startup, stopping and a margin.
  const budgetMs = (options.warmupS * 2 + options.durationS * 2 * options.rounds) * 1000
    + (2 * options.rounds + 2) * WRK_SLACK_MS + STARTUP_TIMEOUT_MS + STOP_GRACE_MS;
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
  try {
    await runBench(options, wrk);
    return 0;
  } catch (err) {
    if (!isStopping) console.error(err instanceof BenchError ? err.message : err);
    return 1;
  } finally {
    await stopEverything();
    clearTimeout(watchdog);
  }
}

process.exit(await main());

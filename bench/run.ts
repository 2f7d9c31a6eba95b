// The benchmark suite: `bun run bench`. bunicorn against gunicorn, granian,
// uWSGI and waitress (and, for its TypeScript apps, against a plain Bun.serve)
// in the scenarios of bench/scenarios.ts, on 127.0.0.1 only.
//
//   bun run bench [--quick] [--scenarios hello,10k,...] [--servers bunicorn,gunicorn,...]
//                 [--rounds N] [--duration S] [--warmup S] [--out NAME]
//
// It sets up what it needs: wrk (apt-get, when missing) and the virtualenv
// bench/.venv with the pinned servers (bench/venv.ts). For each scenario it starts
// every server with the same processes × threads (bench/servers.ts), waits until
// each answers, measures in alternating rounds (A B C A B C ...), samples the
// memory of each server's process tree, and stops each server by its own pid.
// Tables go to stdout as it goes, and to bench/results/NAME.md, .json and .svg
// (NAME: latest, or quick with --quick) after every scenario. Every step has a
// deadline, and a watchdog sized to the plan bounds the whole run.
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import {
  BenchError, LineReader, ROOT, RssSampler, STOP_BUDGET_MS, benchMain, cleanEnv, ensureWrk, findFreePort, formatBytes, waitForQuietCpu,
  alternate, parsePositiveInt, probeOnce, shown, spawnHelper, startServer, stopServer, stopping, treeRssBytes, waitUntilAnswering, wrkRounds,
  type Probe, type Rounds, type Server, type WrkResult,
} from "./common.ts";
import {
  SCENARIOS, SCENARIO_NAMES, IDLE_CONNECTIONS,
  type IdleMeasurement, type Measurement, type Scenario, type ScenarioName, type StreamMeasurement, type WrkMeasurement,
} from "./scenarios.ts";
import {
  CONNECTION_CAP, IDLE_KEEP_ALIVE_S, NO_TLS, PYTHON_LAUNCHERS, SERVER_LABELS, SERVER_NAMES, bunServe, bunicornStatic, bunicornTs, ensureStaticFiles, granianStatic,
  makeThrowawayCert, nginxStatic, type Launch, type ServerName, type TlsCert,
} from "./servers.ts";
import { ensureVenv, PINS, type VenvInfo } from "./venv.ts";
import {
  evaluateTargets, reportMarkdown, scenarioMarkdown, setRatios, spread, targetsMarkdown,
  type IdleDetail, type MeasurementResult, type ScenarioResult, type ServerResult, type SuiteReport,
} from "./report.ts";
import { reportSvg } from "./svg.ts";

const RESULTS_DIR = join(ROOT, "bench", "results");
const PROBE_TIMEOUT_MS = 5_000;
const STREAM_TIMEOUT_MS = 60_000; // one 100 MiB transfer
const IDLE_SETTLE_MS = 500; // after the idle connections are open, before their memory is read
const IDLE_REPORT_SLACK_MS = 15_000; // beyond the helper's own setup timeout
const IDLE_HOLD_S = 900; // the idle helper exits by itself after this, whatever happens
const HELPER_STOP_MS = 2_000;
const SETTLE_MAX_MS = 5_000; // after the servers answer, for their last workers to finish booting

// ---- options ----

interface Options {
  scenarios: ScenarioName[];
  servers: ServerName[];
  quick: boolean;
  rounds: number;
  durationS: number;
  warmupS: number;
  /** Seconds for a server to take the idle connections. */
  idleSetupS: number;
  out: string;
}

// 3 rounds of 2 s: the whole default suite takes about 6 minutes on the 2-core machine
// (3 s rounds would come to about 8).
const DEFAULTS = { rounds: 3, durationS: 2, warmupS: 1, idleSetupS: 15, out: "latest" };
const QUICK = { rounds: 1, durationS: 1, warmupS: 0, idleSetupS: 10, out: "quick" };

const USAGE = `usage: bun run bench [--quick] [--scenarios ${SCENARIO_NAMES.join(",")}] [--servers ${SERVER_NAMES.join(",")}]
                     [--rounds N] [--duration S] [--warmup S] [--out NAME]
  default: every scenario and server; ${DEFAULTS.warmupS} s warm-up, then ${DEFAULTS.rounds} rounds × ${DEFAULTS.durationS} s; results in bench/results/${DEFAULTS.out}.*
  --quick: ${QUICK.rounds} round of ${QUICK.durationS} s per server per scenario, no warm-up (a smoke check); results in bench/results/${QUICK.out}.*`;

function parseList<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T[] {
  const names = (value ?? "").split(",").map((n) => n.trim()).filter(Boolean);
  const unknown = names.filter((n) => !allowed.includes(n as T));
  if (names.length === 0 || unknown.length > 0) {
    throw new BenchError(`${flag} takes a comma-separated list of ${allowed.join(", ")}; got ${value === undefined ? "nothing" : JSON.stringify(value)}\n${USAGE}`);
  }
  return allowed.filter((n) => names.includes(n)); // in the suite's order
}

function parseOptions(argv: string[]): Options {
  const quick = argv.includes("--quick");
  const options: Options = { scenarios: [...SCENARIO_NAMES], servers: [...SERVER_NAMES], quick, ...(quick ? QUICK : DEFAULTS) };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    switch (flag) {
      case "--quick": break;
      case "--scenarios": options.scenarios = parseList(flag, value, SCENARIO_NAMES); i++; break;
      case "--servers": options.servers = parseList(flag, value, SERVER_NAMES); i++; break;
      case "--rounds": options.rounds = parsePositiveInt(flag, value, USAGE); i++; break;
      case "--duration": options.durationS = parsePositiveInt(flag, value, USAGE); i++; break;
      case "--warmup": options.warmupS = parsePositiveInt(flag, value, USAGE, true); i++; break;
      case "--out":
        if (!value || !/^[A-Za-z0-9_.-]+$/.test(value)) throw new BenchError(`--out needs a file name (letters, digits, _ . -), got ${value ?? "nothing"}\n${USAGE}`);
        options.out = value; i++; break;
      case "-h":
      case "--help": console.log(USAGE); process.exit(0);
      default: throw new BenchError(`unknown argument ${flag}\n${USAGE}`);
    }
  }
  if (!options.scenarios.some((name) => serversOf(SCENARIOS[name], options).length > 0)) {
    throw new BenchError(`none of the servers ${options.servers.join(", ")} runs in the scenarios ${options.scenarios.join(", ")} (Bun.serve runs only in ts, nginx only in static; uWSGI and waitress are not in static or tls)\n${USAGE}`);
  }
  return options;
}

function serversOf(scenario: Scenario, options: Options): ServerName[] {
  return scenario.servers.filter((s) => options.servers.includes(s));
}

// ---- the plan ----

// Rough costs of the steps, from runs on the 2-core machine; they size the watchdog.
const SCENARIO_OVERHEAD_S = 3; // starting and stopping the servers
const WRK_RUN_OVERHEAD_S = 0.1;
const STREAM_TRANSFER_S = 0.5; // 100 MiB at 200 MB/s
// The default plan comes to about 390 s; the watchdog then ends it before 10 minutes.
const WATCHDOG_FACTOR = 1.4;
const WATCHDOG_MARGIN_S = 30;

function wrkSeconds(servers: number, o: Options, warmup: boolean): number {
  const warm = warmup && o.warmupS > 0 ? o.warmupS + WRK_RUN_OVERHEAD_S : 0;
  return servers * (warm + o.rounds * (o.durationS + WRK_RUN_OVERHEAD_S));
}

function measurementSeconds(m: Measurement, servers: number, o: Options): number {
  switch (m.kind) {
    case "wrk": return wrkSeconds(servers, o, true);
    case "stream": return servers * (o.rounds + (o.warmupS > 0 ? 1 : 0)) * STREAM_TRANSFER_S;
    // Some servers take the whole setup time to open the idle connections (or never manage).
    case "idle": return wrkSeconds(servers, o, true) + servers * o.idleSetupS / 2 + wrkSeconds(servers, o, false);
  }
}

function scenarioSeconds(scenario: Scenario, o: Options): number {
  const servers = serversOf(scenario, o).length;
  if (servers === 0) return 0;
  return SCENARIO_OVERHEAD_S + scenario.measurements.reduce((sum, m) => sum + measurementSeconds(m, servers, o), 0);
}

function plannedSeconds(o: Options): number {
  return o.scenarios.reduce((sum, name) => sum + scenarioSeconds(SCENARIOS[name], o), 0);
}

// ---- preparation ----

interface Prepared {
  wrk: string;
  venv: VenvInfo | null; // null when no Python scenario runs
  report: SuiteReport;
}

function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1].trim() ?? os.cpus()[0]?.model ?? "unknown CPU";
  } catch {
    return os.cpus()[0]?.model ?? "unknown CPU";
  }
}

function commandOutput(cmd: string[]): string {
  try {
    const result = Bun.spawnSync(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe", timeout: 5_000 });
    return (result.stdout.toString() + result.stderr.toString()).trim();
  } catch {
    return "";
  }
}

/** The commit of the bunicorn measured, and whether server.ts or worker.py differed from it. */
function bunicornRevision(): string {
  const head = commandOutput(["git", "rev-parse", "--short", "HEAD"]) || "unknown";
  const dirty = commandOutput(["git", "status", "--porcelain", "--", "server.ts", "worker.py"]);
  return dirty ? `${head} + uncommitted changes` : head;
}

function versionsOf(wrk: string, venv: VenvInfo | null): Record<string, string> {
  const versions: Record<string, string> = { bunicorn: bunicornRevision(), Bun: Bun.version };
  if (venv) {
    versions.Python = venv.python;
    const labels: Record<keyof typeof PINS, string> = { gunicorn: "gunicorn", flask: "Flask", granian: "granian", uwsgi: "uWSGI", waitress: "waitress" };
    for (const [name, label] of Object.entries(labels)) versions[label] = venv.versions[name as keyof typeof PINS] ?? "?";
  }
  versions.wrk = /^wrk (\S+)/.exec(commandOutput([wrk, "-v"]))?.[1] ?? "?";
  return versions;
}

async function prepare(options: Options): Promise<Prepared> {
  const wrk = await ensureWrk(); // bounded by its own apt-get timeouts
  const needsPython = options.scenarios.some((name) => SCENARIOS[name].app !== "ts" && serversOf(SCENARIOS[name], options).length > 0);
  const venv = needsPython ? await ensureVenv() : null; // bounded by its own venv and pip timeouts
  const report: SuiteReport = {
    date: new Date().toISOString().replace(/\.[0-9]+Z$/, "Z"),
    machine: { cpu: cpuModel(), cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), os: `${os.type()} ${os.release()}`,
      loadAverage: os.loadavg()[0],
    },
    versions: versionsOf(wrk, venv),
    settings: {
      quick: options.quick, rounds: options.rounds, durationS: options.durationS, warmupS: options.warmupS,
      idleConnections: IDLE_CONNECTIONS, scenarios: options.scenarios, servers: options.servers,
    },
    plannedSeconds: Math.round(plannedSeconds(options)),
    wallSeconds: null,
    scenarios: [],
    targets: [],
  };
  return { wrk, venv, report };
}

function budgetMs(options: Options): number {
  return Math.round((plannedSeconds(options) * WATCHDOG_FACTOR + WATCHDOG_MARGIN_S) * 1000);
}

// ---- servers of a scenario ----

interface Entrant {
  name: ServerName;
  launch: Launch;
  server: Server;
  /** Why it is out of the scenario (it did not start), or null. */
  failure: string | null;
  rssAtStart: number | null;
}

function launchFor(scenario: Scenario, name: ServerName, port: number, tls: TlsCert | null): Launch {
  if (tls && typeof scenario.app === "string") throw new BenchError(`the ${scenario.name} scenario has no HTTPS setup`);
  if (scenario.app === "ts") return name === "bunserve" ? bunServe(port) : bunicornTs("apps/hello.ts", port);
  if (scenario.app === "static") {
    ensureStaticFiles();
    if (name === "bunicorn") return bunicornStatic(port);
    if (name === "granian") return granianStatic(port);
    if (name === "nginx") return nginxStatic(port);
    throw new BenchError(`${name} has no static files of its own here`);
  }
  if (name === "bunserve" || name === "nginx") throw new BenchError(`${name} serves only the ts or static scenario`);
  return PYTHON_LAUNCHERS[name](scenario.app, scenario.sizing, port, tls);
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const line = text.trim().split("\n")[0];
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/** Starts every server of the scenario at once and waits for each; one that does not answer is stopped and marked failed. */
async function startEntrants(scenario: Scenario, names: ServerName[], tls: TlsCert | null): Promise<Entrant[]> {
  const entrants = names.map((name): Entrant => {
    const port = findFreePort();
    const launch = launchFor(scenario, name, port, tls);
    const server = startServer(SERVER_LABELS[name], launch.cmd, port, { cwd: launch.cwd, env: cleanEnv(), ...(tls ? { https: { ca: tls.pem } } : {}) });
    return { name, launch, server, failure: null, rssAtStart: null };
  });
  await Promise.all(entrants.map(async (e) => {
    try {
      await waitUntilAnswering(e.server, scenario.ready.path, scenario.ready.isExpected);
      e.rssAtStart = treeRssBytes(e.server.child.pid);
    } catch (err) {
      if (stopping()) throw err;
      e.failure = `did not start: ${firstLine(err)}`;
      console.log(`  ${SERVER_LABELS[e.name]} ${e.failure}`);
      await stopServer(e.server);
    }
  }));
  return entrants;
}

// ---- measurements ----

interface Context {
  options: Options;
  wrk: string;
  sampler: RssSampler;
  /** The wrk Lua script that POSTs a body of so many bytes. */
  postScript: (bytes: number) => string;
  /** The run's throwaway certificate, made on first use (once per run) in its temporary folder. */
  tlsCert: () => Promise<TlsCert>;
}

/** What one server's rounds come to, in the measurement's unit. */
interface Summary {
  values: number[];
  p50Ms: number | null;
  p99Ms: number | null;
  errors: number;
}

function medianOrNull(values: (number | null)[]): number | null {
  return spread(values.filter((v): v is number => v !== null))?.median ?? null;
}

function summarizeWrk(samples: WrkResult[]): Summary {
  return {
    values: samples.map((s) => s.requestsPerSec),
    p50Ms: medianOrNull(samples.map((s) => s.p50Ms)),
    p99Ms: medianOrNull(samples.map((s) => s.p99Ms)),
    errors: samples.reduce((sum, s) => sum + s.errors, 0),
  };
}

function serverResult(entrant: Entrant, failure: string | null, summary: Summary | null, ctx: Context): ServerResult {
  return {
    server: entrant.name, label: SERVER_LABELS[entrant.name], failure,
    value: summary ? spread(summary.values) : null,
    p50Ms: summary?.p50Ms ?? null, p99Ms: summary?.p99Ms ?? null, errors: summary?.errors ?? 0,
    peakRssBytes: entrant.failure === null ? ctx.sampler.peak(entrant.server) : null,
    ratio: null,
  };
}

/**
 * Checks each running server's answer to the measurement's probe; returns those that
 * answered right, and marks the others with the reason (a server that cannot do a
 * scenario is reported as failed, and the suite goes on).
 */
async function probeEntrants(entrants: Entrant[], probe: Probe | null): Promise<{ live: Entrant[]; failures: Map<Entrant, string> }> {
  const failures = new Map<Entrant, string>();
  const live: Entrant[] = [];
  for (const e of entrants) {
    if (e.failure !== null) {
      failures.set(e, e.failure);
      continue;
    }
    const problem = probe ? await probeOnce(e.server, probe, PROBE_TIMEOUT_MS) : null;
    if (problem === null) live.push(e);
    else failures.set(e, `${probe!.method ?? "GET"} ${probe!.path} before the rounds: ${problem}`);
  }
  return { live, failures };
}

/** Results in the entrants' order: the failed ones with their reason, the others from their rounds. */
function collect<T>(entrants: Entrant[], failures: Map<Entrant, string>, rounds: Rounds<T>[], summarize: (samples: T[]) => Summary, ctx: Context): ServerResult[] {
  return entrants.map((e) => {
    const r = rounds.find((x) => x.server === e.server);
    if (!r) return serverResult(e, failures.get(e) ?? "not run", null, ctx);
    return serverResult(e, r.failure, summarize(r.samples), ctx);
  });
}

function wrkOptions(m: WrkMeasurement | IdleMeasurement, ctx: Context, warmup = true) {
  const postBytes = m.kind === "wrk" ? m.postBytes : undefined;
  const { rounds, durationS, warmupS } = ctx.options;
  return { ...m.load, script: postBytes === undefined ? undefined : ctx.postScript(postBytes), rounds, durationS, warmupS: warmup ? warmupS : 0 };
}

async function measureWrk(m: WrkMeasurement, entrants: Entrant[], ctx: Context): Promise<ServerResult[]> {
  const { live, failures } = await probeEntrants(entrants, m.probe);
  const rounds = await wrkRounds(ctx.wrk, live.map((e) => e.server), wrkOptions(m, ctx));
  return collect(entrants, failures, rounds, summarizeWrk, ctx);
}

interface StreamSample {
  mbPerSec: number;
}

/** One 100 MiB transfer by bench/stream_client.ts, in its own process (timed there, from connect to the last byte). */
async function streamOnce(server: Server, m: StreamMeasurement): Promise<StreamSample> {
  const cmd = [process.execPath, join(ROOT, "bench", "stream_client.ts"), m.mode, String(server.port), m.path, String(m.bytes)];
  const child = spawnHelper(cmd, { timeoutMs: STREAM_TIMEOUT_MS });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) {
    const why = child.signalCode ? `no answer within ${STREAM_TIMEOUT_MS / 1000} s` : (stdout + stderr).trim().split("\n")[0];
    throw new BenchError(`${m.mode} failed: ${why}`);
  }
  const { bytes, seconds } = JSON.parse(stdout) as { bytes: number; seconds: number };
  return { mbPerSec: bytes / 1e6 / seconds };
}

async function measureStream(m: StreamMeasurement, entrants: Entrant[], ctx: Context): Promise<ServerResult[]> {
  const { live, failures } = await probeEntrants(entrants, null);
  const rounds = await alternate(live.map((e) => e.server), {
    rounds: ctx.options.rounds,
    warmup: ctx.options.warmupS > 0,
    measure: (server) => streamOnce(server, m),
    describe: (s) => `${s.mbPerSec.toFixed(0)} MB/s`,
  });
  const summarize = (samples: StreamSample[]): Summary => ({ values: samples.map((s) => s.mbPerSec), p50Ms: null, p99Ms: null, errors: 0 });
  return collect(entrants, failures, rounds, summarize, ctx);
}

// ---- idle connections ----

/** A bench/idle_conns.ts process holding idle connections to one server. */
interface IdleHolder {
  child: Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe">;
  lines: LineReader;
  detail: IdleDetail;
}

function noIdle(firstError: string): IdleDetail {
  return { alone: null, established: 0, failedToOpen: 0, firstError, setupMs: null, openAtEnd: null, rssBeforeBytes: null, rssWithIdleBytes: null, bytesPerIdleConn: null };
}

/** Opens the idle connections to one server and reads its memory before and after. */
async function holdIdle(server: Server, path: string, ctx: Context): Promise<IdleHolder> {
  const rssBefore = treeRssBytes(server.child.pid);
  const { idleSetupS } = ctx.options;
  const cmd = [process.execPath, join(ROOT, "bench", "idle_conns.ts"), String(server.port), String(IDLE_CONNECTIONS), path, String(idleSetupS), String(IDLE_HOLD_S)];
  const child = spawnHelper(cmd, { stdin: "pipe", timeoutMs: IDLE_HOLD_S * 1000 + HELPER_STOP_MS });
  const lines = new LineReader(child.stdout);
  const report = parseHelperLine<{ open: number; failed: number; ms: number; firstError: string }>(await lines.next(idleSetupS * 1000 + IDLE_REPORT_SLACK_MS));
  if (report === null) {
    return { child, lines, detail: noIdle(`idle_conns.ts gave no report: ${(await stderrOf(child)).split("\n")[0]}`) };
  }
  await Bun.sleep(IDLE_SETTLE_MS);
  const rssWith = treeRssBytes(server.child.pid);
  const detail: IdleDetail = {
    alone: null, established: report.open, failedToOpen: report.failed, firstError: report.firstError, setupMs: report.ms, openAtEnd: null,
    rssBeforeBytes: rssBefore, rssWithIdleBytes: rssWith, bytesPerIdleConn: report.open > 0 ? (rssWith - rssBefore) / report.open : null,
  };
  console.log(`  ${server.label}: ${report.open.toLocaleString("en-US")} idle connections open in ${report.ms} ms`
    + `${report.failed ? `, ${report.failed} failed (${report.firstError})` : ""}; RSS ${formatBytes(rssBefore)} → ${formatBytes(rssWith)}`);
  return { child, lines, detail };
}

/** A JSON line of bench/idle_conns.ts, or null when there was none (or something else). */
function parseHelperLine<T>(line: string | null): T | null {
  try {
    return line === null ? null : (JSON.parse(line) as T);
  } catch {
    return null;
  }
}

async function stderrOf(child: Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe">): Promise<string> {
  child.kill("SIGKILL");
  return (await new Response(child.stderr).text()).trim();
}

/** How many of its connections are still open (none closed by the server), then stops the helper by its pid. */
async function releaseIdle(holder: IdleHolder): Promise<void> {
  if (holder.detail.setupMs !== null && holder.child.stdin) {
    holder.child.stdin.write("count\n");
    holder.child.stdin.flush();
    holder.detail.openAtEnd = parseHelperLine<{ open: number }>(await holder.lines.next(HELPER_STOP_MS * 2))?.open ?? null;
  }
  holder.child.kill("SIGTERM");
  await Promise.race([holder.child.exited, Bun.sleep(HELPER_STOP_MS)]);
  holder.child.kill("SIGKILL");
}

async function measureIdle(m: IdleMeasurement, entrants: Entrant[], ctx: Context): Promise<ServerResult[]> {
  const { live, failures } = await probeEntrants(entrants, m.probe);
  const servers = live.map((e) => e.server);
  console.log("  hello alone:");
  const alone = await wrkRounds(ctx.wrk, servers, wrkOptions(m, ctx));
  const holders = new Map<Server, IdleHolder>();
  try {
    for (const r of alone) if (r.failure === null) holders.set(r.server, await holdIdle(r.server, m.idlePath, ctx));
    console.log(`  hello with the idle connections held:`);
    const withIdle = await wrkRounds(ctx.wrk, [...holders.keys()], wrkOptions(m, ctx, false));
    for (const holder of holders.values()) await releaseIdle(holder);
    const results = collect(entrants, failures, withIdle, summarizeWrk, ctx);
    for (const [i, e] of entrants.entries()) {
      const a = alone.find((r) => r.server === e.server);
      const holder = holders.get(e.server);
      if (a?.failure) results[i].failure = a.failure;
      if (!a) continue;
      results[i].idle = { ...(holder?.detail ?? noIdle("")), alone: spread(a.samples.map((s) => s.requestsPerSec)) };
      results[i].errors += summarizeWrk(a.samples).errors;
    }
    return results;
  } finally {
    for (const holder of holders.values()) holder.child.kill("SIGKILL"); // already gone unless something failed
  }
}

async function measure(m: Measurement, entrants: Entrant[], ctx: Context): Promise<MeasurementResult> {
  console.log(`- ${m.name}: ${m.title}`);
  ctx.sampler.resetPeaks();
  const results = m.kind === "wrk" ? await measureWrk(m, entrants, ctx)
    : m.kind === "stream" ? await measureStream(m, entrants, ctx)
    : await measureIdle(m, entrants, ctx);
  setRatios(results);
  return { name: m.name, title: m.title, kind: m.kind, unit: m.kind === "stream" ? "MB/s" : "req/s", results };
}

// ---- the suite ----

async function runScenario(scenario: Scenario, names: ServerName[], ctx: Omit<Context, "sampler">): Promise<ScenarioResult> {
  const started = performance.now();
  console.log(`\n== ${scenario.name}: ${scenario.title} (${names.map((n) => SERVER_LABELS[n]).join(", ")})`);
  const entrants = await startEntrants(scenario, names, scenario.tls ? await ctx.tlsCert() : null);
  await waitForQuietCpu(SETTLE_MAX_MS);
  const sampler = new RssSampler(entrants.filter((e) => e.failure === null).map((e) => e.server));
  try {
    const measurements: MeasurementResult[] = [];
    for (const m of scenario.measurements) measurements.push(await measure(m, entrants, { ...ctx, sampler }));
    return {
      name: scenario.name, title: scenario.title, measurements, skipped: null, seconds: (performance.now() - started) / 1000,
      servers: entrants.map((e) => ({ label: SERVER_LABELS[e.name], shape: e.launch.shape, command: shown(e.launch.cmd), rssAtStartBytes: e.rssAtStart })),
    };
  } finally {
    sampler.stop();
    await Promise.all(entrants.map((e) => stopServer(e.server)));
  }
}

function skippedScenario(scenario: Scenario, why: string): ScenarioResult {
  return { name: scenario.name, title: scenario.title, servers: [], measurements: [], skipped: why, seconds: 0 };
}

/** The wrk Lua scripts that POST a body, made once in a temporary folder. */
function postScripts(dir: string): (bytes: number) => string {
  return (bytes) => {
    const path = join(dir, `post_${bytes}.lua`);
    if (!fs.existsSync(path)) {
      fs.writeFileSync(path, `wrk.method = "POST"\nwrk.body = string.rep("x", ${bytes})\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);
    }
    return path;
  };
}

function notes(): string[] {
  return [
    "Every server gets the same processes × threads in a scenario (listed with each); bunicorn has its one Bun front process besides its Python workers; waitress, one process, gets as many threads in all.",
    "Access logs are off everywhere: bunicorn, gunicorn and waitress log no requests by default; granian `--no-access-log`; uWSGI `--disable-logging`.",
    "Modes: gunicorn `-k gthread`; granian `--interface wsgi --http 1`; uWSGI `--master` with its HTTP router (`--http` + `--http-keepalive`): with `--http11-socket` a kept-alive connection holds its worker until `--socket-timeout` (4 s), so 2 workers serve 2 of wrk's 50 connections and the other 48 wait (measured: a third connection waited 4,000 ms). uWSGI's router gets `--http-buffer-size 32768`: with its default (4 KiB) a 10 KiB answer goes out in pieces that each wait 40 ms for a delayed ACK (1,100 req/s instead of 7,500); with 64 KiB, 1 in 4 POSTs of 1 MiB was reset.",
    `Connection caps are ${CONNECTION_CAP.toLocaleString("en-US")} everywhere (bunicorn's default; gunicorn \`--worker-connections\`, granian \`--backpressure\` per worker, waitress \`--connection-limit\` with \`--asyncore-use-poll\`); uWSGI \`--listen 1024\`.`,
    `idle: idle timeouts raised to ${IDLE_KEEP_ALIVE_S} s (bunicorn and gunicorn \`--keep-alive\`, uWSGI \`--http-timeout\`, waitress \`--channel-timeout\`); granian has no keep-alive timeout of its own but ends idle connections after \`--http1-header-read-timeout\`, set to its maximum, 60 s. Each idle connection is opened by bench/idle_conns.ts (a separate process), asks GET /hello once, then stays idle; \"open → at end\" counts those answered and those still open after the loaded rounds. Memory per idle connection = (RSS with them − RSS just before) / connections opened.`,
    "wrk `-t1 --latency`; p50/p99 are the medians of the rounds' percentiles; errors are wrk's socket errors (connect, read, write, timeout) plus non-2xx answers, over all rounds. Peak RSS: the largest sum of VmRSS over the server's whole process tree, sampled every 150 ms during that measurement (all servers of a scenario run side by side, idle but for their own rounds).",
    "The 2 cores are shared by wrk (one thread), the server measured, and anything else running on the machine; servers alternate round by round so that drift hits all alike, but single rounds vary by ±30% here: read the medians with their min–max.",
    `tls: every bind is HTTPS only, with one self-signed RSA-2048 certificate for 127.0.0.1 made by \`openssl req -x509\` once per run (valid 1 day, in a temporary folder removed at the end): bunicorn and gunicorn \`--certfile\`/\`--keyfile\`, granian \`--ssl-certificate\`/\`--ssl-keyfile\`; wrk does one handshake per connection and keeps the 50 connections alive, so this measures TLS record encryption more than handshakes. Left out: waitress (${NO_TLS.waitress}) and uWSGI (${NO_TLS.uwsgi}).`,
    "stream: MB/s = 10⁶ bytes/s, one transfer at a time on one connection, timed by bench/stream_client.ts from the connect to the last byte of the answer.",
  ];
}

function writeResults(report: SuiteReport, out: string): void {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const base = join(RESULTS_DIR, out);
  fs.writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + "\n");
  fs.writeFileSync(`${base}.md`, reportMarkdown(report, notes()));
  fs.writeFileSync(`${base}.svg`, reportSvg(report));
}

async function runSuite(options: Options, prepared: Prepared): Promise<void> {
  const { report } = prepared;
  const budget = budgetMs(options);
  const deadline = Date.now() + budget - STOP_BUDGET_MS;
  console.log(`bench: ${Object.entries(report.versions).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  console.log(`bench: ${report.machine.cpu}, ${report.machine.cores} cores, load average ${report.machine.loadAverage.toFixed(2)}; plan ~${report.plannedSeconds} s, watchdog ${Math.round(budget / 1000)} s; results in bench/results/${options.out}.*`);
  const scriptsDir = fs.mkdtempSync(join(os.tmpdir(), "bunicorn-bench-"));
  try {
    let cert: Promise<TlsCert> | null = null;
    const ctx = { options, wrk: prepared.wrk, postScript: postScripts(scriptsDir), tlsCert: () => (cert ??= makeThrowawayCert(scriptsDir)) };
    for (const name of options.scenarios) {
      const scenario = SCENARIOS[name];
      const names = serversOf(scenario, options);
      if (names.length === 0) continue;
      // Rather than be cut off by the watchdog, leave out what no longer fits in its time.
      const result = Date.now() + scenarioSeconds(scenario, options) * 1000 > deadline
        ? skippedScenario(scenario, "not enough time left under the watchdog")
        : await runScenario(scenario, names, ctx);
      report.scenarios.push(result);
      console.log("\n" + scenarioMarkdown(result));
      writeResults(report, options.out);
    }
  } finally {
    fs.rmSync(scriptsDir, { recursive: true, force: true });
  }
  report.targets = evaluateTargets(report);
  report.wallSeconds = Math.round(performance.now() / 1000);
  writeResults(report, options.out);
  console.log(targetsMarkdown(report.targets));
  console.log(`bench: wall time ${report.wallSeconds} s; wrote bench/results/${options.out}.md, .json and .svg`);
}

process.exit(await benchMain({
  parse: parseOptions,
  prepare,
  budgetMs,
  run: runSuite,
}));

// bunicorn with a Python WSGI app against gunicorn (gthread workers) serving the
// same app with the same processes × threads, measured with wrk in alternating
// rounds (A B A B ...) so that drift on the machine hits both alike. Prints each
// round, the medians with min–max, non-2xx/socket errors, and the ratio
// bunicorn / gunicorn.
//
//   bun bench/python.ts [--duration 5] [--rounds 3] [--warmup 1] [--connections 50]
//                       [--workers 2] [--threads 1] [--app hello|flask]
//
// hello: apps/hello.py, wrk on /.  flask: bench/flask_app.py, wrk on /items/42.
// Both servers run the interpreter of the virtualenv bench/.venv, which is made
// here (with `python3 -m venv`, or $BENCH_PYTHON -m venv) and given pinned
// gunicorn and flask from pip when they are missing. Both servers are started
// here and stopped by their own pid at the end, on error, and on SIGINT/SIGTERM,
// and then none of their worker processes may be left. Every step has a
// deadline, and a watchdog bounds the whole run. wrk is installed with apt-get
// when missing. The machinery shared with bench/ts.ts is in bench/common.ts.
import { join, resolve } from "node:path";
import fs from "node:fs";
import {
  BenchError, HOST, ROOT, STARTUP_TIMEOUT_MS, STOP_BUDGET_MS, WRK_SLACK_MS,
  type AnswerCheck, type Server,
  descendantsOf, ensureWrk, expectBody, findFreePort, parsePositiveInt, runAlternatingRounds, runGuarded, startServer, waitUntilAnswering,
} from "./common.ts";

const PINS = { gunicorn: "27.0.1", flask: "3.1.3" } as const;
const VENV = join(ROOT, "bench", ".venv");
const VENV_PYTHON = join(VENV, "bin", "python");
const VENV_GUNICORN = join(VENV, "bin", "gunicorn");
const VENV_TIMEOUT_MS = 60_000;
const PIP_TIMEOUT_MS = 300_000;
const PROBE_TIMEOUT_MS = 30_000;
const WORKER_COUNT_WAIT_MS = 5_000;

// ---- options ----

type AppName = "hello" | "flask";

interface Options {
  durationS: number;
  rounds: number;
  warmupS: number;
  connections: number;
  workers: number;
  threads: number;
  app: AppName;
}

const USAGE = "usage: bun bench/python.ts [--duration S] [--rounds N] [--warmup S] [--connections N] [--workers N] [--threads N] [--app hello|flask]";

function parseOptions(argv: string[]): Options {
  const options: Options = { durationS: 5, rounds: 3, warmupS: 1, connections: 50, workers: 2, threads: 1, app: "hello" };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    switch (flag) {
      case "--duration": options.durationS = parsePositiveInt(flag, value, USAGE); i++; break;
      case "--rounds": options.rounds = parsePositiveInt(flag, value, USAGE); i++; break;
      case "--warmup": options.warmupS = parsePositiveInt(flag, value, USAGE, true); i++; break;
      case "--connections": options.connections = parsePositiveInt(flag, value, USAGE); i++; break;
      case "-w":
      case "--workers": options.workers = parsePositiveInt(flag, value, USAGE); i++; break;
      case "--threads": options.threads = parsePositiveInt(flag, value, USAGE); i++; break;
      case "--app":
        if (value !== "hello" && value !== "flask") throw new BenchError(`--app needs hello or flask, got ${value ?? "nothing"}\n${USAGE}`);
        options.app = value; i++; break;
      case "-h":
      case "--help": console.log(USAGE); process.exit(0);
      default: throw new BenchError(`unknown argument ${flag}\n${USAGE}`);
    }
  }
  return options;
}

// ---- the apps ----

interface AppSetup {
  bunicornApp: string; // APP argument of bunicorn, relative to the repo root
  gunicornChdir: string; // --chdir of gunicorn, relative to the repo root
  gunicornApp: string;
  path: string; // what wrk asks for
  isExpected: AnswerCheck;
}

const APPS: Record<AppName, AppSetup> = {
  hello: {
    bunicornApp: "apps/hello.py",
    gunicornChdir: "apps",
    gunicornApp: "hello:application",
    path: "/",
    isExpected: expectBody("Hello, World!"),
  },
  flask: {
    bunicornApp: "bench/flask_app.py:app",
    gunicornChdir: "bench",
    gunicornApp: "flask_app:app",
    path: "/items/42",
    isExpected: (status, body) => {
      if (status !== 200) return false;
      try {
        const item = JSON.parse(body);
        return item?.id === 42 && item?.name === "item-42" && Object.keys(item).length === 2;
      } catch {
        return false;
      }
    },
  },
};

// ---- the virtualenv ----

/** This process's environment without a virtualenv or Python path of its own, which would change what the servers load. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && key !== "VIRTUAL_ENV" && key !== "PYTHONPATH" && key !== "PYTHONHOME") env[key] = value;
  }
  return env;
}

async function run(cmd: string[], timeoutMs: number, quiet: boolean): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = Bun.spawn(cmd, {
    cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: quiet ? "pipe" : "inherit", timeout: timeoutMs, killSignal: "SIGKILL",
    env: { ...cleanEnv(), PIP_DISABLE_PIP_VERSION_CHECK: "1" },
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    child.stderr instanceof ReadableStream ? new Response(child.stderr).text() : Promise.resolve(""),
    child.exited,
  ]);
  return { code, stdout, stderr };
}

/** Versions of the pinned packages in the virtualenv (null: its interpreter does not run), and its Python's. */
async function probeVenv(): Promise<{ python: string; versions: Record<string, string | null> } | null> {
  if (!fs.existsSync(VENV_PYTHON)) return null;
  const script = [
    "import importlib.metadata as m, platform, json",
    "def v(n):",
    "    try: return m.version(n)",
    "    except m.PackageNotFoundError: return None",
    `print(json.dumps({"python": platform.python_version(), "versions": {n: v(n) for n in ${JSON.stringify(Object.keys(PINS))}}}))`,
  ].join("\n");
  const result = await run([VENV_PYTHON, "-c", script], PROBE_TIMEOUT_MS, true);
  if (result.code !== 0) return null;
  try {
    return JSON.parse(result.stdout);
  } catch {
    return null;
  }
}

function hasPins(probe: Awaited<ReturnType<typeof probeVenv>>): boolean {
  return probe !== null && Object.entries(PINS).every(([name, version]) => probe.versions[name] === version);
}

/** Makes bench/.venv with the pinned gunicorn and flask unless it is there already; returns its Python version. */
async function ensureVenv(): Promise<string> {
  let probe = await probeVenv();
  if (hasPins(probe)) return probe!.python;
  if (probe === null) {
    const base = process.env.BENCH_PYTHON ?? "python3";
    console.error(`bench: making the virtualenv bench/.venv with ${base}`);
    const made = await run([base, "-m", "venv", "--clear", VENV], VENV_TIMEOUT_MS, false);
    if (made.code !== 0) throw new BenchError(`bench: \`${base} -m venv bench/.venv\` failed (exit ${made.code}); set BENCH_PYTHON to a Python 3 with venv`);
  }
  const pins = Object.entries(PINS).map(([name, version]) => `${name}==${version}`);
  console.error(`bench: installing ${pins.join(" ")} into bench/.venv with pip`);
  const installed = await run([VENV_PYTHON, "-m", "pip", "install", "--quiet", ...pins], PIP_TIMEOUT_MS, false);
  if (installed.code !== 0) throw new BenchError(`bench: pip install ${pins.join(" ")} failed (exit ${installed.code})`);
  probe = await probeVenv();
  if (!hasPins(probe)) throw new BenchError(`bench: bench/.venv still lacks ${pins.join(" ")} after pip install (has ${JSON.stringify(probe?.versions ?? null)})`);
  return probe!.python;
}

// ---- main ----

function bunicornCommand(options: Options, app: AppSetup, port: number): string[] {
  return [process.execPath, resolve(ROOT, "server.ts"), app.bunicornApp,
    "-w", String(options.workers), "--threads", String(options.threads),
    "--python", VENV_PYTHON, "-b", `${HOST}:${port}`];
}

function gunicornCommand(options: Options, app: AppSetup, port: number): string[] {
  return [VENV_GUNICORN, "-k", "gthread", "-w", String(options.workers), "--threads", String(options.threads),
    "-b", `${HOST}:${port}`, "--chdir", app.gunicornChdir, app.gunicornApp];
}

function shown(cmd: string[]): string {
  return cmd.map((a) => (a === process.execPath ? "bun" : a.replace(ROOT + "/", ""))).join(" ");
}

/** How many processes the server has below it now (its Python workers). */
function workerCount(server: Server): number {
  return descendantsOf(server.child.pid).length;
}

async function runBench(options: Options, wrk: string, pythonVersion: string): Promise<void> {
  const app = APPS[options.app];
  const bunicornPort = findFreePort();
  const gunicornPort = findFreePort();
  const bunicornCmd = bunicornCommand(options, app, bunicornPort);
  const gunicornCmd = gunicornCommand(options, app, gunicornPort);
  const env = cleanEnv();
  const bunicorn = startServer("bunicorn", bunicornCmd, bunicornPort, env);
  const gunicorn = startServer("gunicorn", gunicornCmd, gunicornPort, env);
  await Promise.all([waitUntilAnswering(bunicorn, app.path, app.isExpected), waitUntilAnswering(gunicorn, app.path, app.isExpected)]);

  const pins = Object.entries(PINS).filter(([name]) => name === "gunicorn" || options.app === "flask").map(([n, v]) => `${n} ${v}`);
  console.log(`bench/python.ts: Bun ${Bun.version}, Python ${pythonVersion} (bench/.venv), ${pins.join(", ")}, ${navigator.hardwareConcurrency} CPUs`);
  console.log(`  A bunicorn: ${shown(bunicornCmd)}`);
  console.log(`  B gunicorn: ${shown(gunicornCmd)}`);
  console.log(`  wrk -t1 -c${options.connections} -d${options.durationS}s http://${HOST}:PORT${app.path}, ${options.rounds} rounds A B, ${options.warmupS}s warm-up each`);
  // Counted after the warm-up, and given a few seconds more: gunicorn's later workers may still be booting.
  const countWorkers = async () => {
    const deadline = Date.now() + WORKER_COUNT_WAIT_MS;
    let a = workerCount(bunicorn);
    let b = workerCount(gunicorn);
    while ((a !== options.workers || b !== options.workers) && Date.now() < deadline) {
      await Bun.sleep(100);
      a = workerCount(bunicorn);
      b = workerCount(gunicorn);
    }
    const threads = `${options.threads} thread${options.threads === 1 ? "" : "s"}`;
    console.log(`  processes × threads: bunicorn 1 Bun process (all HTTP) + ${a} Python workers × ${threads}; `
      + `gunicorn 1 master + ${b} workers × ${threads} (gthread: HTTP in the workers)`);
    if (a !== options.workers || b !== options.workers) console.log(`  warning: expected ${options.workers} workers under each server`);
  };
  await runAlternatingRounds(wrk, bunicorn, gunicorn, { ...options, path: app.path, beforeRounds: countWorkers });
  const a = workerCount(bunicorn);
  const b = workerCount(gunicorn);
  if (a !== options.workers || b !== options.workers) console.log(`warning: at the end bunicorn has ${a} and gunicorn ${b} workers (expected ${options.workers})`);
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
  let pythonVersion: string;
  try {
    wrk = await ensureWrk(); // bounded by its own apt-get timeouts
    pythonVersion = await ensureVenv(); // bounded by its own venv and pip timeouts
  } catch (err) {
    console.error(err instanceof BenchError ? err.message : err);
    return 1;
  }
  // Warm-up and rounds, plus startup, stopping and a margin.
  const budgetMs = (options.warmupS * 2 + options.durationS * 2 * options.rounds) * 1000
    + (2 * options.rounds + 2) * WRK_SLACK_MS + STARTUP_TIMEOUT_MS + WORKER_COUNT_WAIT_MS + STOP_BUDGET_MS;
  return runGuarded(budgetMs, () => runBench(options, wrk, pythonVersion));
}

process.exit(await main());

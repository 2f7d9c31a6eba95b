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
// Both servers run the interpreter of the virtualenv bench/.venv (bench/venv.ts
// makes it, with the pinned servers, when it is missing). Both are started here
// and stopped by their own pid at the end, on error, and on SIGINT/SIGTERM, and
// then none of their worker processes may be left. Every step has a deadline,
// and a watchdog bounds the whole run. wrk is installed with apt-get when
// missing. The whole suite (bun run bench, bench/run.ts) compares more servers.
import { BenchError, benchMain, descendantsOf, ensureWrk, expectBody, parsePositiveInt, type AnswerCheck, type Server } from "./common.ts";
import { PAIR_DEFAULTS, PAIR_USAGE, pairBudgetMs, parsePairArgs, runPair, type PairOptions } from "./pair.ts";
import { FLASK_APP, isFlaskItem } from "./scenarios.ts";
import { PYTHON_LAUNCHERS, type PythonApp, type Sizing } from "./servers.ts";
import { ensureVenv, PINS } from "./venv.ts";

const WORKER_COUNT_WAIT_MS = 5_000;

type AppName = "hello" | "flask";

interface Options extends PairOptions {
  workers: number;
  threads: number;
  app: AppName;
}

const USAGE = `usage: bun bench/python.ts ${PAIR_USAGE} [--workers N] [--threads N] [--app hello|flask]`;

function parseOptions(argv: string[]): Options {
  const options: Options = { ...PAIR_DEFAULTS, workers: 2, threads: 1, app: "hello" };
  parsePairArgs(argv, options, USAGE, (flag, value) => {
    switch (flag) {
      case "-w":
      case "--workers": options.workers = parsePositiveInt(flag, value, USAGE); return 2;
      case "--threads": options.threads = parsePositiveInt(flag, value, USAGE); return 2;
      case "--app":
        if (value !== "hello" && value !== "flask") throw new BenchError(`--app needs hello or flask, got ${value ?? "nothing"}\n${USAGE}`);
        options.app = value; return 2;
      default: return 0;
    }
  });
  return options;
}

const APPS: Record<AppName, { app: PythonApp; path: string; isExpected: AnswerCheck }> = {
  hello: { app: { file: "apps/hello.py", callable: "application" }, path: "/", isExpected: expectBody("Hello, World!") },
  flask: { app: FLASK_APP, path: "/items/42", isExpected: isFlaskItem },
};

/** How many processes the server has below it now (its Python workers). */
function workerCount(server: Server): number {
  return descendantsOf(server.child.pid).length;
}

/** Waits (a few seconds at most: gunicorn's later workers may still be booting) for each server to have its workers. */
async function checkWorkers(expected: number, servers: Server[]): Promise<void> {
  const deadline = Date.now() + WORKER_COUNT_WAIT_MS;
  let counts = servers.map(workerCount);
  while (counts.some((n) => n !== expected) && Date.now() < deadline) {
    await Bun.sleep(100);
    counts = servers.map(workerCount);
  }
  console.log(`  workers: ${servers.map((s, i) => `${s.label} ${counts[i]}`).join(", ")}`);
  if (counts.some((n) => n !== expected)) console.log(`  warning: expected ${expected} workers under each server`);
}

await benchMain({
  parse: parseOptions,
  prepare: async () => ({ wrk: await ensureWrk(), venv: await ensureVenv() }), // each bounded by its own timeouts
  budgetMs: (options) => pairBudgetMs(options, WORKER_COUNT_WAIT_MS),
  run: (options, { wrk, venv }) => {
    const { app, path, isExpected } = APPS[options.app];
    const sizing: Sizing = { workers: options.workers, threads: options.threads, holdIdle: false };
    const pins = [`gunicorn ${PINS.gunicorn}`, ...(options.app === "flask" ? [`flask ${PINS.flask}`] : [])];
    return runPair(wrk,
      { label: "bunicorn", launch: (port) => PYTHON_LAUNCHERS.bunicorn(app, sizing, port) },
      { label: "gunicorn", launch: (port) => PYTHON_LAUNCHERS.gunicorn(app, sizing, port) },
      {
        path, isExpected, beforeRounds: (a, b) => checkWorkers(options.workers, [a, b]),
        title: `bench/python.ts: Bun ${Bun.version}, Python ${venv.python} (bench/.venv), ${pins.join(", ")}, ${navigator.hardwareConcurrency} CPUs`,
      },
      options);
  },
}).then((code) => process.exit(code));

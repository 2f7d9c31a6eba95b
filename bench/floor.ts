// The floor under the Python side's speed work: bunicorn whose workers answer without
// running any Python for a request (bench/null_worker.py: no environ, no app, one send per
// read of the channel) against granian running apps/bench_apps.py:hello for real, with the
// same processes (2 workers × 1 thread), over HTTPS (the tls scenario's setup) or, with
// --plain, HTTP. What bunicorn does per request here is the front's share and the channel's:
// if it is still behind granian, no worker-side change can put bunicorn ahead on this machine.
//
//   bun bench/floor.ts [--plain] [--duration 5] [--rounds 3] [--warmup 1] [--connections 50]
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { benchMain, ensureWrk, expectBody, ROOT } from "./common.ts";
import { PAIR_DEFAULTS, PAIR_USAGE, pairBudgetMs, parsePairArgs, runPair, type PairOptions } from "./pair.ts";
import { makeThrowawayCert, PYTHON_LAUNCHERS, type Launch, type PythonApp, type Sizing, type TlsFiles } from "./servers.ts";
import { ensureVenv, PINS } from "./venv.ts";

const HELLO: PythonApp = { file: "apps/bench_apps.py", callable: "router" };
const SIZING: Sizing = { workers: 2, threads: 1, holdIdle: false };
/** The --python that starts bench/null_worker.py as each worker (bench/.venv's interpreter for the rest). */
const NULL_PYTHON = join(ROOT, "bench", "null-python");

interface Options extends PairOptions { plain: boolean }

const USAGE = `usage: bun bench/floor.ts [--plain] ${PAIR_USAGE}`;

function parseOptions(argv: string[]): Options {
  const options: Options = { ...PAIR_DEFAULTS, plain: false };
  parsePairArgs(argv, options, USAGE, (flag) => {
    if (flag !== "--plain") return 0;
    options.plain = true;
    return 1;
  });
  return options;
}

/** bunicorn's launch for the suite, with null-python in place of bench/.venv's python. */
function bunicornNull(port: number, tls: TlsFiles | null): Launch {
  const launch = PYTHON_LAUNCHERS.bunicorn(HELLO, SIZING, port, tls);
  const cmd = [...launch.cmd];
  cmd[cmd.indexOf("--python") + 1] = NULL_PYTHON;
  return { cmd, shape: `${launch.shape}, answering without the app (bench/null_worker.py)` };
}

await benchMain({
  parse: parseOptions,
  prepare: async () => ({ wrk: await ensureWrk(), venv: await ensureVenv() }),
  budgetMs: (options) => pairBudgetMs(options),
  run: async (options, { wrk, venv }) => {
    // The certificate's directory is made here, where it is removed, and only for HTTPS.
    const certDir = options.plain ? null : fs.mkdtempSync(join(os.tmpdir(), "bunicorn-floor-"));
    try {
      const tls = certDir === null ? null : await makeThrowawayCert(certDir);
      await runPair(wrk,
        { label: "bunicorn (null workers)", launch: (port) => bunicornNull(port, tls) },
        { label: "granian", launch: (port) => PYTHON_LAUNCHERS.granian(HELLO, SIZING, port, tls) },
        {
          path: "/hello", isExpected: expectBody("Hello, World!"), ...(tls ? { https: { ca: tls.pem } } : {}),
          title: `bench/floor.ts (${tls ? "HTTPS" : "HTTP"}): Bun ${Bun.version}, Python ${venv.python} (bench/.venv), granian ${PINS.granian}, ${navigator.hardwareConcurrency} CPUs`,
        },
        options);
    } finally {
      if (certDir !== null) fs.rmSync(certDir, { recursive: true, force: true });
    }
  },
}).then((code) => process.exit(code));

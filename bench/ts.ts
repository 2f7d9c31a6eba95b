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
// The machinery shared with bench/python.ts is in bench/common.ts.
import { join, resolve } from "node:path";
import {
  BenchError, HOST, ROOT, STARTUP_TIMEOUT_MS, STOP_BUDGET_MS, WRK_SLACK_MS,
  ensureWrk, expectBody, findFreePort, parsePositiveInt, runAlternatingRounds, runGuarded, startServer, waitUntilAnswering,
} from "./common.ts";

const EXPECTED_BODY = "Hello, World!";

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

function parseOptions(argv: string[]): Options {
  const options: Options = { durationS: 5, rounds: 3, warmupS: 1, connections: 50, server: "server.ts", app: "apps/hello.ts", extraServerArgs: [] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    switch (flag) {
      case "--duration": options.durationS = parsePositiveInt(flag, value, USAGE); i++; break;
      case "--rounds": options.rounds = parsePositiveInt(flag, value, USAGE); i++; break;
      case "--warmup": options.warmupS = parsePositiveInt(flag, value, USAGE, true); i++; break;
      case "--connections": options.connections = parsePositiveInt(flag, value, USAGE); i++; break;
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
  const bunicorn = startServer("bunicorn", bunicornCmd, bunicornPort);
  const baseline = startServer("Bun.serve", [process.execPath, join(ROOT, "bench", "bunserve_hello.ts"), String(baselinePort)], baselinePort);
  await Promise.all([waitUntilAnswering(bunicorn, "/", expectBody(EXPECTED_BODY)), waitUntilAnswering(baseline, "/", expectBody(EXPECTED_BODY))]);

  console.log(`bench/ts.ts: Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs`);
  console.log(`  A bunicorn:  ${bunicornCmd.map((a) => (a === process.execPath ? "bun" : a.replace(ROOT + "/", ""))).join(" ")}`);
  console.log(`  B Bun.serve: bench/bunserve_hello.ts`);
  console.log(`  wrk -t1 -c${options.connections} -d${options.durationS}s, ${options.rounds} rounds A B, ${options.warmupS}s warm-up each`);
  await runAlternatingRounds(wrk, bunicorn, baseline, { ...options, path: "/" });
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
    + (2 * options.rounds + 2) * WRK_SLACK_MS + STARTUP_TIMEOUT_MS + STOP_BUDGET_MS;
  return runGuarded(budgetMs, () => runBench(options, wrk));
}

process.exit(await main());

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
// bounds the whole run. wrk is installed with apt-get when missing. The whole
// suite (bun run bench, bench/run.ts) has this comparison as its `ts` scenario.
import { resolve } from "node:path";
import { BenchError, ROOT, benchMain, ensureWrk, expectBody } from "./common.ts";
import { PAIR_DEFAULTS, PAIR_USAGE, pairBudgetMs, parsePairArgs, runPair, type PairOptions } from "./pair.ts";
import { bunServe, bunicornTs } from "./servers.ts";

interface Options extends PairOptions {
  server: string;
  app: string;
  extraServerArgs: string[];
}

const USAGE = `usage: bun bench/ts.ts ${PAIR_USAGE} [--server server.ts|dist/bunicorn] [--app apps/hello.ts] [-- SERVER FLAGS]`;

function parseOptions(argv: string[]): Options {
  const options: Options = { ...PAIR_DEFAULTS, server: "server.ts", app: "apps/hello.ts", extraServerArgs: [] };
  const separator = argv.indexOf("--");
  if (separator >= 0) options.extraServerArgs = argv.slice(separator + 1);
  parsePairArgs(separator >= 0 ? argv.slice(0, separator) : argv, options, USAGE, (flag, value) => {
    if (flag !== "--server" && flag !== "--app") return 0;
    if (!value) throw new BenchError(`${flag} needs a value\n${USAGE}`);
    options[flag === "--server" ? "server" : "app"] = value;
    return 2;
  });
  return options;
}

await benchMain({
  parse: parseOptions,
  prepare: () => ensureWrk(), // bounded by its own apt-get timeouts
  budgetMs: (options) => pairBudgetMs(options),
  run: (options, wrk) => runPair(wrk,
    { label: "bunicorn", launch: (port) => bunicornTs(options.app, port, resolve(ROOT, options.server), options.extraServerArgs) },
    { label: "Bun.serve", launch: bunServe },
    { path: "/", isExpected: expectBody("Hello, World!"), title: `bench/ts.ts: Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs` },
    options),
}).then((code) => process.exit(code));

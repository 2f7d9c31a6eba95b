// The quick two-server comparisons (bench/ts.ts, bench/python.ts): their common
// flags, and the run itself: start both, wait until both answer, then wrk in
// alternating rounds A B A B ... with the medians, min–max and ratio A/B.
import {
  BenchError, STARTUP_TIMEOUT_MS, STOP_BUDGET_MS, WRK_SLACK_MS,
  cleanEnv, findFreePort, parsePositiveInt, runAlternatingRounds, shown, startServer, waitUntilAnswering,
  type AnswerCheck, type Server,
} from "./common.ts";
import type { Launch } from "./servers.ts";

export interface PairOptions {
  durationS: number;
  rounds: number;
  warmupS: number;
  connections: number;
}

export const PAIR_DEFAULTS: PairOptions = { durationS: 5, rounds: 3, warmupS: 1, connections: 50 };
export const PAIR_USAGE = "[--duration S] [--rounds N] [--warmup S] [--connections N]";

/** Takes the flags every pair benchmark has; returns false for any other flag. */
export function parsePairFlag(options: PairOptions, flag: string, value: string | undefined, usage: string): boolean {
  switch (flag) {
    case "--duration": options.durationS = parsePositiveInt(flag, value, usage); return true;
    case "--rounds": options.rounds = parsePositiveInt(flag, value, usage); return true;
    case "--warmup": options.warmupS = parsePositiveInt(flag, value, usage, true); return true;
    case "--connections": options.connections = parsePositiveInt(flag, value, usage); return true;
    default: return false;
  }
}

/** Parses argv with the pair flags and `other` for the rest (it returns how many arguments it took, 0 for none). */
export function parsePairArgs(argv: string[], options: PairOptions, usage: string, other: (flag: string, value: string | undefined) => number): void {
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === "-h" || flag === "--help") {
      console.log(usage);
      process.exit(0);
    }
    if (parsePairFlag(options, flag, value, usage)) {
      i++;
      continue;
    }
    const taken = other(flag, value);
    if (taken === 0) throw new BenchError(`unknown argument ${flag}\n${usage}`);
    i += taken - 1;
  }
}

/** Warm-up and rounds, plus startup, stopping and extraMs. */
export function pairBudgetMs(o: PairOptions, extraMs = 0): number {
  return (o.warmupS * 2 + o.durationS * 2 * o.rounds) * 1000 + (2 * o.rounds + 2) * WRK_SLACK_MS + STARTUP_TIMEOUT_MS + STOP_BUDGET_MS + extraMs;
}

export interface PairSide {
  label: string;
  /** Builds its command for a port. */
  launch: (port: number) => Launch;
}

export interface PairRun {
  path: string;
  isExpected: AnswerCheck;
  /** The first line printed, before the commands. */
  title: string;
  beforeRounds?: (a: Server, b: Server) => void | Promise<void>;
  /** Both servers speak HTTPS with this certificate (PEM), which the probes trust. */
  https?: { ca: string };
}

export async function runPair(wrk: string, a: PairSide, b: PairSide, run: PairRun, options: PairOptions): Promise<void> {
  const [serverA, serverB] = [a, b].map((side) => {
    const port = findFreePort();
    const launch = side.launch(port);
    return { server: startServer(side.label, launch.cmd, port, { cwd: launch.cwd, env: cleanEnv(), https: run.https }), launch };
  });
  await Promise.all([serverA, serverB].map(({ server }) => waitUntilAnswering(server, run.path, run.isExpected)));
  console.log(run.title);
  for (const [letter, { server, launch }] of [["A", serverA], ["B", serverB]] as const) {
    console.log(`  ${letter} ${server.label}: ${shown(launch.cmd)}  (${launch.shape})`);
  }
  console.log(`  wrk -t1 -c${options.connections} -d${options.durationS}s ${run.path}, ${options.rounds} rounds A B, ${options.warmupS}s warm-up each`);
  await runAlternatingRounds(wrk, serverA.server, serverB.server, {
    ...options, path: run.path, beforeRounds: () => run.beforeRounds?.(serverA.server, serverB.server),
  });
}

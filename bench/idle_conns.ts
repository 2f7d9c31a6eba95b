// Holds idle keep-alive connections to a server, for the `idle` scenario of bench/run.ts.
//
//   bun bench/idle_conns.ts PORT COUNT PATH SETUP_TIMEOUT_S HOLD_S
//
// Opens COUNT connections to 127.0.0.1:PORT (PARALLEL at a time, so the listen
// backlog is not what is tested); on each it sends one GET PATH and reads the
// whole answer, so that it is a real kept-alive connection, and then leaves it
// idle. Prints one JSON line when setup is over:
//   {"event":"established","open":N,"failed":F,"ms":T,"firstError":"..."}
// and, for each line "count" read on stdin, {"event":"count","open":N}: how many
// are still open (not closed by the server). Whatever has not answered within
// SETUP_TIMEOUT_S counts as failed and is closed. It is stopped by its pid; and
// it exits by itself after HOLD_S seconds, so it can never be left behind for long.
import { Connection, requestHead } from "./raw_http.ts";

const HOST = "127.0.0.1";
const PARALLEL = 100;

const [port, count, path, setupTimeoutS, holdS] = ((argv) => {
  const [portArg, countArg, pathArg, setupArg, holdArg] = argv;
  const numbers = [portArg, countArg, setupArg, holdArg].map(Number);
  if (pathArg === undefined || numbers.some((n) => !Number.isInteger(n) || n <= 0)) {
    console.error("usage: bun bench/idle_conns.ts PORT COUNT PATH SETUP_TIMEOUT_S HOLD_S");
    process.exit(2);
  }
  return [numbers[0], numbers[1], pathArg, numbers[2], numbers[3]] as const;
})(process.argv.slice(2));

const open: Connection[] = [];
let failed = 0;
let firstError = "";
let setupOver = false;

function fail(err: unknown, connections = 1): void {
  failed += connections;
  firstError ||= err instanceof Error ? err.message : String(err);
}

/** Opens one connection and has one request answered on it; it then stays open, idle. */
async function establish(): Promise<void> {
  let conn: Connection | null = null;
  try {
    conn = await Connection.open(HOST, port);
    await conn.writeAll(Buffer.from(requestHead("GET", HOST, port, path)));
    const response = await conn.nextResponse();
    if (response.status !== 200) throw new Error(`answered ${response.status}`);
    if (setupOver) throw new Error("answered after the setup timeout");
    open.push(conn);
  } catch (err) {
    conn?.close();
    if (!setupOver) fail(err);
  }
}

async function establishAll(): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count && !setupOver) {
      next++;
      await establish();
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, count) }, lane));
}

function stillOpen(): number {
  return open.filter((conn) => conn.isOpen).length;
}

async function answerCounts(): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of Bun.stdin.stream()) {
    pending += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      if (pending.slice(0, newline).trim() === "count") console.log(JSON.stringify({ event: "count", open: stillOpen() }));
      pending = pending.slice(newline + 1);
    }
  }
}

setTimeout(() => process.exit(0), holdS * 1000);
const started = performance.now();
await Promise.race([establishAll(), Bun.sleep(setupTimeoutS * 1000)]);
setupOver = true;
const unanswered = count - open.length - failed;
if (unanswered > 0) fail(`not answered within ${setupTimeoutS} s`, unanswered);
console.log(JSON.stringify({ event: "established", open: stillOpen(), failed, ms: Math.round(performance.now() - started), firstError }));
await answerCounts();

// End-to-end fuzzing: a real bunicorn process (`-w 2`, test/pyapps/fuzz_echo.py, which
// answers "PATH LENGTH SHA256" for the body it read) gets seeded, mutated requests over
// real sockets: valid ones, heads with bytes flipped/inserted/deleted/duplicated, bad
// framing, truncated bodies and pipelined pairs, on fresh connections and several to a
// kept-alive connection. Checked for every exchange:
//   - it ends (answered, or closed by the server) before EXCHANGE_TIMEOUT_MS: else a hang;
//   - every response starts with a clean `HTTP/1.1 NNN Reason` line, NNN in ALLOWED_STATUSES,
//     and nothing but whole responses comes back;
//   - a valid request gets 200 naming its own path and exactly the length and sha256 sent;
//   - bad framing and truncated bodies never get a 2xx, and bad framing ends the connection;
// and at the end: the front is alive and answers a plain GET, with the same worker pids.
//
// Reproduce: FUZZ_SEED=<seed> bun test test/fuzz-server.test.ts (FUZZ_CASES=<n> to change
// the count, FUZZ_CASE=<i> to run case i alone). Case i uses its own PRNG seeded from (seed, i).

import { createHash } from "node:crypto";
import { afterAll, expect, test } from "bun:test";
import { RawClient, cleanUp, parseResponses } from "./helpers.ts";
import { Rng, fromBytes, mutate, toBytes } from "./fuzzing.ts";
import { type PyServer, request, startPy, stopPy } from "./pyhelpers.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 0xb0c0_0008) >>> 0;
const CASE_COUNT = Number(process.env.FUZZ_CASES ?? 2000);
const ONLY_CASE = process.env.FUZZ_CASE === undefined ? null : Number(process.env.FUZZ_CASE);
/** Clients at once: enough to keep both workers busy and requests queued, few enough for 2 cores. */
const LANES = 8;
/**
 * An exchange that has not ended after this long is a hang. Well above the server's
 * --header-timeout (HEADER_TIMEOUT_S), so a server that waits for its own timeout is not
 * counted as hung, only one that never answers or closes.
 */
const EXCHANGE_TIMEOUT_MS = 6000;
const HEADER_TIMEOUT_S = "1";
const MAX_FAILURES_REPORTED = 20;
const FUZZ_TIMEOUT_MS = 90_000;

/** The app always answers 200; the rest are the front's own answers to bad requests. 5xx from the app side (500, 502, 503, 504) count as failures. */
const ALLOWED_STATUSES = new Set([100, 200, 400, 408, 413, 414, 417, 431, 501, 505]);
const STATUS_LINE = /^HTTP\/1\.1 (\d{3}) [\x21-\x7e][\x20-\x7e]*$/;

const seedFor = (i: number) => (SEED ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0;

// ==== Building requests ====

interface Built {
  /** The bytes to send. */
  bytes: Uint8Array;
  /** Where the head ends in `bytes` (the body, framing included, follows). */
  headBytes: number;
  path: string;
  /** What the app must report for this request when the body arrives whole. */
  expect: string;
}

function randomBody(rng: Rng): Uint8Array {
  const r = rng.float();
  // Mostly small; some past the worker's inline limit (1 MiB), which are pulled in pieces.
  const size = r < 0.6 ? rng.int(300) : r < 0.9 ? 300 + rng.int(20_000) : r < 0.98 ? 20_000 + rng.int(200_000) : 1_048_576 + rng.int(300_000);
  const body = new Uint8Array(size);
  for (let k = 0; k < size; k++) body[k] = rng.int(256);
  return body;
}

/** Chunked framing with random chunk sizes, sometimes an extension or a trailer (RFC 9112 §7.1). */
function chunked(rng: Rng, body: Uint8Array): Uint8Array {
  const parts: string[] = [];
  for (let off = 0; off < body.length; ) {
    const n = Math.min(body.length - off, 1 + rng.int(rng.isChance(0.5) ? 64 : 70_000));
    const ext = rng.isChance(0.1) ? ";x=y" : "";
    parts.push(`${n.toString(16)}${ext}\r\n`, fromBytes(body.subarray(off, off + n)), "\r\n");
    off += n;
  }
  parts.push("0\r\n", rng.isChance(0.1) ? "X-Trailer: t\r\n" : "", "\r\n");
  return toBytes(parts.join(""));
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A valid request: GET without a body, or POST/PUT with a Content-Length or chunked body. */
function buildValid(rng: Rng, path: string, opts: { isLast: boolean }): Built {
  const method = rng.pick(["GET", "POST", "POST", "PUT"]);
  const body = method === "GET" ? new Uint8Array(0) : randomBody(rng);
  const isChunked = method !== "GET" && rng.isChance(0.3);
  let head = `${method} ${path}${rng.isChance(0.3) ? "?q=1&r=%20" : ""} HTTP/1.1\r\nHost: fuzz.example\r\n`;
  if (rng.isChance(0.5)) head += "User-Agent: fuzz/1.0\r\nAccept: */*\r\n";
  if (method !== "GET") head += isChunked ? "Transfer-Encoding: chunked\r\n" : `Content-Length: ${body.length}\r\n`;
  if (method !== "GET" && rng.isChance(0.1)) head += "Expect: 100-continue\r\n"; // and the body right away (RFC 9110 §10.1.1 allows it)
  if (opts.isLast) head += "Connection: close\r\n";
  head += "\r\n";
  const framed = isChunked ? chunked(rng, body) : body;
  const headBytes = toBytes(head);
  const bytes = new Uint8Array(headBytes.length + framed.length);
  bytes.set(headBytes);
  bytes.set(framed, headBytes.length);
  return { bytes, headBytes: headBytes.length, path, expect: `${path} ${body.length} ${sha256(body)}` };
}

/** Framings a server must refuse (RFC 9112 §6.1, §6.3, §7.1): none may reach the app as a whole body. */
const BAD_FRAMINGS: { name: string; head: string; body: string }[] = [
  { name: "Content-Length and Transfer-Encoding", head: "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", body: "5\r\nhello\r\n0\r\n\r\n" },
  { name: "two different Content-Lengths", head: "Content-Length: 5\r\nContent-Length: 6\r\n", body: "hello!" },
  { name: "a Content-Length list", head: "Content-Length: 5, 6\r\n", body: "hello!" },
  { name: "a negative Content-Length", head: "Content-Length: -1\r\n", body: "x" },
  { name: "a Content-Length with a sign", head: "Content-Length: +5\r\n", body: "hello" },
  { name: "a hex Content-Length", head: "Content-Length: 0x5\r\n", body: "hello" },
  { name: "chunked not last", head: "Transfer-Encoding: chunked, gzip\r\n", body: "5\r\nhello\r\n0\r\n\r\n" },
  { name: "a bad chunk size", head: "Transfer-Encoding: chunked\r\n", body: "zz\r\nhello\r\n0\r\n\r\n" },
  { name: "a chunk size of 30 hex digits", head: "Transfer-Encoding: chunked\r\n", body: `${"f".repeat(30)}\r\nhello\r\n0\r\n\r\n` },
  { name: "chunk data longer than its size", head: "Transfer-Encoding: chunked\r\n", body: "3\r\nhello\r\n0\r\n\r\n" },
  { name: "a chunk size line with a bare LF", head: "Transfer-Encoding: chunked\r\n", body: "5\nhello\r\n0\r\n\r\n" },
  { name: "a space before the colon", head: "Content-Length : 5\r\n", body: "hello" },
];

function buildBadFraming(rng: Rng, path: string): { built: Built; name: string } {
  const bad = rng.pick(BAD_FRAMINGS);
  const text = `POST ${path} HTTP/1.1\r\nHost: fuzz.example\r\n${bad.head}\r\n`;
  const bytes = toBytes(text + bad.body);
  return { built: { bytes, headBytes: text.length, path, expect: "" }, name: bad.name };
}

/** The head mutated, the body as it was: the framing the head now says may no longer match it. */
function mutateHead(rng: Rng, built: Built): Uint8Array {
  const head = built.bytes.subarray(0, built.headBytes);
  const mutated = mutate(rng, head, [head]);
  const out = new Uint8Array(mutated.length + built.bytes.length - built.headBytes);
  out.set(mutated);
  out.set(built.bytes.subarray(built.headBytes), mutated.length);
  return out;
}

/** Whole, or in pieces of random size (each its own write, a turn of the event loop apart). */
function splitForWrites(rng: Rng, bytes: Uint8Array): Uint8Array[] {
  if (rng.isChance(0.6)) return [bytes];
  const pieces: Uint8Array[] = [];
  const maxPiece = rng.pick([1, 7, 100, 4096, 65_536]);
  for (let off = 0; off < bytes.length && pieces.length < 40; ) {
    const n = pieces.length === 39 ? bytes.length - off : 1 + rng.int(maxPiece);
    pieces.push(bytes.subarray(off, off + n));
    off += n;
  }
  return pieces;
}

const openConns = new Set<RawClient>();

async function sendPieces(rng: Rng, conn: RawClient, bytes: Uint8Array): Promise<void> {
  for (const piece of splitForWrites(rng, bytes)) {
    conn.write(piece);
    await new Promise((r) => setImmediate(r));
  }
}

// ==== Checking what came back ====

interface Outcome {
  problems: string[];
  statuses: number[];
  /** Bodies of the final responses, in order. */
  bodies: string[];
}

/** Parse and check every response in `bytes`; with `isClosed`, leftover bytes are a problem. */
function checkResponses(bytes: Buffer, isClosed: boolean): Outcome {
  const problems: string[] = [];
  let parsed: ReturnType<typeof parseResponses>;
  try {
    parsed = parseResponses(bytes, [], isClosed);
  } catch (err) {
    return { problems: [`unparseable response: ${String(err)} in ${JSON.stringify(bytes.toString("latin1").slice(0, 200))}`], statuses: [], bodies: [] };
  }
  const statuses: number[] = [];
  const bodies: string[] = [];
  for (const res of parsed.responses) {
    if (!STATUS_LINE.test(res.statusLine)) problems.push(`unclean status line ${JSON.stringify(res.statusLine)}`);
    if (!ALLOWED_STATUSES.has(res.status)) problems.push(`status ${res.status} (${JSON.stringify(res.body.toString("latin1").slice(0, 120))})`);
    if (!res.isComplete) problems.push(`response ${res.status} cut short`);
    if (res.status >= 200) {
      statuses.push(res.status);
      bodies.push(res.body.toString("latin1"));
    }
  }
  if (isClosed && parsed.rest.length > 0) problems.push(`bytes after the last response: ${JSON.stringify(parsed.rest.toString("latin1").slice(0, 120))}`);
  return { problems, statuses, bodies };
}

/** Wait until `count` final responses (or the server closes, when `count` is null); a timeout is a hang. */
async function awaitAnswers(conn: RawClient, from: number, count: number | null, what: string): Promise<Outcome> {
  const finals = () => {
    try {
      return parseResponses(conn.bytes.subarray(from), [], false).responses.filter((r) => r.status >= 200).length;
    } catch {
      return Infinity; // garbage: checkResponses says what
    }
  };
  const isEnded = await conn.waitUntil(() => conn.isDone || (count !== null && finals() >= count), EXCHANGE_TIMEOUT_MS);
  const outcome = checkResponses(conn.bytes.subarray(from), conn.isDone);
  if (!isEnded) outcome.problems.push(`hang: ${what} neither answered nor closed after ${EXCHANGE_TIMEOUT_MS} ms (${conn.bytes.subarray(from).length} bytes received)`);
  return outcome;
}

function expectAnswers(outcome: Outcome, expected: string[]): void {
  if (outcome.statuses.length !== expected.length || outcome.statuses.some((s) => s !== 200)) {
    outcome.problems.push(`expected ${expected.length} × 200, got [${outcome.statuses.join(", ")}]`);
  }
  expected.forEach((want, k) => {
    const got = outcome.bodies[k];
    if (got !== undefined && outcome.statuses[k] === 200 && got !== want) outcome.problems.push(`answer ${k + 1}: app read ${JSON.stringify(got)}, sent ${JSON.stringify(want)}`);
  });
}

function expectNo2xx(outcome: Outcome, why: string): void {
  if (outcome.statuses.some((s) => s >= 200 && s < 300)) outcome.problems.push(`${why} got [${outcome.statuses.join(", ")}]`);
}

// ==== Cases ====

type Kind = "valid" | "pipelined" | "mutated-head" | "bad-framing" | "truncated" | "keep-alive";
const KINDS: Kind[] = ["valid", "valid", "pipelined", "mutated-head", "mutated-head", "mutated-head", "bad-framing", "truncated", "keep-alive"];

interface CaseResult {
  kind: Kind;
  label: string;
  /** What was sent, for the report. */
  sent: Uint8Array[];
  problems: string[];
  statuses: number[];
}

async function runCase(port: number, i: number): Promise<CaseResult> {
  const rng = new Rng(seedFor(i));
  const kind = KINDS[i % KINDS.length]!;
  const conn = await RawClient.connect(port);
  openConns.add(conn);
  const result: CaseResult = { kind, label: kind, sent: [], problems: [], statuses: [] };
  const take = (o: Outcome) => { result.problems.push(...o.problems); result.statuses.push(...o.statuses); };
  try {
    switch (kind) {
      case "valid": {
        const shouldHalfClose = rng.isChance(0.5);
        const req = buildValid(rng, `/c${i}`, { isLast: !shouldHalfClose });
        result.sent.push(req.bytes);
        await sendPieces(rng, conn, req.bytes);
        if (shouldHalfClose) conn.end();
        const outcome = await awaitAnswers(conn, 0, null, "a valid request");
        expectAnswers(outcome, [req.expect]);
        take(outcome);
        break;
      }
      case "pipelined": {
        const first = buildValid(rng, `/c${i}a`, { isLast: false });
        const second = buildValid(rng, `/c${i}b`, { isLast: true });
        const both = Buffer.concat([first.bytes, second.bytes]);
        result.sent.push(both);
        await sendPieces(rng, conn, both);
        const outcome = await awaitAnswers(conn, 0, null, "a pipelined pair");
        expectAnswers(outcome, [first.expect, second.expect]);
        take(outcome);
        break;
      }
      case "mutated-head": {
        const bytes = mutateHead(rng, buildValid(rng, `/c${i}`, { isLast: rng.isChance(0.5) }));
        result.sent.push(bytes);
        await sendPieces(rng, conn, bytes);
        conn.end(); // nothing more is coming: the server must answer what it has, or close
        take(await awaitAnswers(conn, 0, null, "a mutated request"));
        break;
      }
      case "bad-framing": {
        const { built, name } = buildBadFraming(rng, `/c${i}`);
        result.label = `bad-framing: ${name}`;
        result.sent.push(built.bytes);
        await sendPieces(rng, conn, built.bytes);
        // No half-close: after a framing error the server cannot find the next request, so it must close.
        const outcome = await awaitAnswers(conn, 0, null, `${name} (the server must close)`);
        expectNo2xx(outcome, name);
        take(outcome);
        break;
      }
      case "truncated": {
        let req = buildValid(rng, `/c${i}`, { isLast: true });
        while (req.bytes.length === req.headBytes) req = buildValid(rng, `/c${i}`, { isLast: true }); // one with a body
        const cut = req.headBytes + rng.int(req.bytes.length - req.headBytes);
        const bytes = req.bytes.subarray(0, cut);
        result.label = `truncated at ${cut - req.headBytes} of ${req.bytes.length - req.headBytes} body bytes`;
        result.sent.push(bytes);
        await sendPieces(rng, conn, bytes);
        conn.end();
        const outcome = await awaitAnswers(conn, 0, null, "a truncated body");
        expectNo2xx(outcome, "a truncated body");
        take(outcome);
        break;
      }
      case "keep-alive": {
        const count = 3 + rng.int(6);
        const endsMutated = rng.isChance(0.3);
        for (let k = 0; k < count && !conn.isDone; k++) {
          const from = conn.bytes.length;
          const isLast = k === count - 1;
          const req = buildValid(rng, `/c${i}-${k}`, { isLast: isLast && !endsMutated });
          if (isLast && endsMutated) {
            const bytes = mutateHead(rng, req);
            result.sent.push(bytes);
            await sendPieces(rng, conn, bytes);
            conn.end();
            take(await awaitAnswers(conn, from, null, `mutated request ${k + 1} of ${count} on a kept-alive connection`));
          } else {
            result.sent.push(req.bytes);
            await sendPieces(rng, conn, req.bytes);
            const outcome = await awaitAnswers(conn, from, 1, `request ${k + 1} of ${count} on a kept-alive connection`);
            expectAnswers(outcome, [req.expect]);
            take(outcome);
            if (outcome.problems.length > 0) break;
          }
        }
        break;
      }
    }
  } finally {
    conn.destroy();
    openConns.delete(conn);
  }
  return result;
}

function show(sent: Uint8Array[]): string {
  return sent.map((b) => JSON.stringify(fromBytes(b.subarray(0, 300))) + (b.length > 300 ? `… (${b.length} bytes)` : "")).join(" then ");
}

// ==== The run ====

let server: PyServer | null = null;
afterAll(async () => {
  for (const c of openConns) c.destroy();
  if (server !== null) await stopPy(server, "SIGKILL");
  await cleanUp();
});

test(
  `fuzz over sockets: ${ONLY_CASE === null ? CASE_COUNT : 1} mutated requests to a Python app on 2 workers (FUZZ_SEED=${SEED})`,
  async () => {
    server = await startPy("test/pyapps/fuzz_echo.py", ["-w", "2", "--header-timeout", HEADER_TIMEOUT_S]);
    const workersBefore = server.workers();
    expect(workersBefore.length).toBe(2);

    const failures: string[] = [];
    const tally: Record<string, number> = {};
    const note = (key: string) => { tally[key] = (tally[key] ?? 0) + 1; };
    const indexes = ONLY_CASE === null ? Array.from({ length: CASE_COUNT }, (_, i) => i) : [ONLY_CASE];
    let next = 0;
    const lane = async () => {
      while (next < indexes.length) {
        const i = indexes[next++]!;
        const r = await runCase(server!.port, i);
        note(r.kind);
        for (const s of r.statuses) note(String(s));
        if (r.problems.length > 0) {
          note("failed");
          if (failures.length < MAX_FAILURES_REPORTED) failures.push(`FUZZ_SEED=${SEED} FUZZ_CASE=${i} (${r.label}): ${r.problems.join("; ")}\n    sent: ${show(r.sent)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: LANES }, lane));

    const pidsAfter = server.workers();
    const isFrontAlive = server.proc.exitCode === null && server.proc.signalCode === null;
    let finalGet = "no answer";
    if (isFrontAlive) {
      try {
        const res = await request(server.port, "/after-fuzz");
        finalGet = `${res.status} ${res.body.toString("latin1")}`;
      } catch (err) {
        finalGet = String(err);
      }
    }
    console.error(`fuzz-server: seed ${SEED}, ${JSON.stringify(tally)}`);
    if (failures.length > 0) console.error(`fuzz-server failures (reproduce with FUZZ_SEED=${SEED} FUZZ_CASE=<i>):\n  ${failures.join("\n  ")}`);
    expect({ isFrontAlive, finalGet, pidsAfter, failures }).toEqual({
      isFrontAlive: true,
      finalGet: `200 /after-fuzz 0 ${sha256(new Uint8Array(0))}`,
      pidsAfter: workersBefore,
      failures: [],
    });
  },
  FUZZ_TIMEOUT_MS,
);

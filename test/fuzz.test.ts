// Fuzzing the sans-IO RequestParser: random and mutated requests, each fed in
// random-sized pieces to a fresh parser. Checks that nothing escapes feed/next,
// that events follow the grammar (head body* end)* [error], that next() loops
// settle, that heads satisfy the invariants the server relies on (RFC 9112
// §6.3 framing, RFC 9110 §5.5 values), and that the result does not depend on
// how the bytes were split.
//
// Reproduce: FUZZ_SEED=<seed> bun test test/fuzz.test.ts (FUZZ_INPUTS=<n> to change the count).
// Each failure names the input index; input i uses its own PRNG seeded from (seed, i).

import { expect, test } from "bun:test";
import { RequestParser, type ParseEvent, type RequestHead } from "../server.ts";
import { Rng, TOKENS, fromBytes, mutate, toBytes } from "./fuzzing.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_2024) >>> 0;
const INPUT_COUNT = Number(process.env.FUZZ_INPUTS ?? 100_000);
const MAX_FAILURES_REPORTED = 20;
const FUZZ_TIMEOUT_MS = 60_000;

const ERROR_STATUSES = new Set([400, 413, 414, 417, 431, 501, 505]);
const EVENT_KINDS = new Set(["need-more", "head", "body", "end", "error"]);

const seedFor = (i: number) => (SEED ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;

// ---------------------------------------------------------------------------
// Corpus of valid requests (with the number of requests each holds)
// ---------------------------------------------------------------------------

const CORPUS: { text: string; requests: number }[] = [
  { text: "GET / HTTP/1.1\r\nHost: h\r\n\r\n", requests: 1 },
  { text: "GET /search?q=a+b&x=%20 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: fuzz/1.0\r\n\r\n", requests: 1 },
  { text: "HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", requests: 1 },
  { text: "POST /submit HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world", requests: 1 },
  { text: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", requests: 1 },
  { text: "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", requests: 1 },
  { text: "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nA;ext=1\r\n0123456789\r\n1;q=\"x y\"\r\n!\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n", requests: 1 },
  { text: "PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n\r\n\0\xff", requests: 1 },
  { text: "GET / HTTP/1.0\r\n\r\n", requests: 1 },
  { text: "GET /old HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", requests: 1 },
  { text: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", requests: 1 },
  { text: "GET http://example.com/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", requests: 1 },
  { text: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", requests: 1 },
  { text: "\r\nGET /lead HTTP/1.1\r\nHost: h\r\nX-A: \t a\tb \r\nX-B:\r\nX-Obs: caf\xe9\r\n\r\n", requests: 1 },
  {
    text:
      "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n" +
      "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
      "POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n" +
      "GET /4 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    requests: 4,
  },
  {
    text: `GET /many HTTP/1.1\r\nHost: h\r\n${Array.from({ length: 30 }, (_, i) => `X-Field-${i}: value ${i}\r\n`).join("")}\r\n`,
    requests: 1,
  },
  { text: "DELETE /item/7?force=1 HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 1\r\nConnection: keep-alive, Upgrade\r\n\r\nx", requests: 1 },
];

const CORPUS_BYTES = CORPUS.map((c) => toBytes(c.text));

// ---------------------------------------------------------------------------
// Input generation
// ---------------------------------------------------------------------------

type Kind = "corpus" | "random" | "tokens" | "mutated";

function generate(rng: Rng, i: number): { kind: Kind; bytes: Uint8Array; corpusIndex: number } {
  const corpusIndex = rng.int(CORPUS.length);
  switch (i % 20) {
    case 0:
      return { kind: "corpus", bytes: CORPUS_BYTES[corpusIndex]!, corpusIndex };
    case 1: {
      const bytes = new Uint8Array(rng.int(257));
      for (let k = 0; k < bytes.length; k++) bytes[k] = rng.int(256);
      return { kind: "random", bytes, corpusIndex };
    }
    case 2: {
      let s = "";
      for (let k = 1 + rng.int(40); k > 0; k--) s += rng.pick(TOKENS);
      return { kind: "tokens", bytes: toBytes(s), corpusIndex };
    }
    default:
      return { kind: "mutated", bytes: mutate(rng, CORPUS_BYTES[corpusIndex]!, CORPUS_BYTES), corpusIndex };
  }
}

/** Splits bytes into pieces: whole, byte by byte, or random sizes. */
function split(rng: Rng, bytes: Uint8Array): Uint8Array[] {
  const style = rng.int(4);
  if (style === 0) return [bytes];
  if (style === 1) return Array.from({ length: bytes.length }, (_, k) => bytes.subarray(k, k + 1));
  const maxPiece = rng.pick([2, 4, 16, 64]);
  const pieces: Uint8Array[] = [];
  for (let off = 0; off < bytes.length; ) {
    const n = rng.int(maxPiece + 1); // zero-length pieces too
    pieces.push(bytes.subarray(off, off + n));
    off += n;
  }
  return pieces;
}

// ---------------------------------------------------------------------------
// Checking one run
// ---------------------------------------------------------------------------

const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^(?:[^\0-\x08\x0a-\x1f\x7f\t ](?:[^\0-\x08\x0a-\x1f\x7f]*[^\0-\x08\x0a-\x1f\x7f\t ])?)?$/;

/** Problems with a head that a server would act on (smuggling-relevant invariants). */
function checkHead(h: RequestHead): string[] {
  const bad: string[] = [];
  if (typeof h.method !== "string" || !TCHAR.test(h.method)) bad.push(`method ${JSON.stringify(h.method)} is not a token`);
  if (h.version !== "HTTP/1.0" && h.version !== "HTTP/1.1") bad.push(`version ${JSON.stringify(h.version)}`);
  if (typeof h.target !== "string" || h.target.length === 0 || /[\0-\x20\x7f]/.test(h.target)) bad.push(`target ${JSON.stringify(h.target)}`);
  if (typeof h.path !== "string" || typeof h.query !== "string") bad.push("path/query not strings");
  else if (h.target.startsWith("/") && h.target !== h.path && h.target !== `${h.path}?${h.query}`) bad.push(`path ${JSON.stringify(h.path)} + query ${JSON.stringify(h.query)} != target ${JSON.stringify(h.target)}`);
  if (!Array.isArray(h.headers)) bad.push("headers not an array");
  else {
    for (const f of h.headers) {
      if (!Array.isArray(f) || f.length !== 2) bad.push(`header entry ${JSON.stringify(f)}`);
      else if (!TCHAR.test(f[0]) || f[0] !== f[0].toLowerCase()) bad.push(`header name ${JSON.stringify(f[0])}`);
      else if (typeof f[1] !== "string" || !FIELD_VALUE.test(f[1]) || /[^\0-\xff]/.test(f[1])) bad.push(`header value ${JSON.stringify(f[1])}`);
    }
    const hosts = h.headers.filter((f) => f[0] === "host").length;
    if (hosts > 1 || (h.version === "HTTP/1.1" && hosts !== 1)) bad.push(`${hosts} Host fields on ${h.version}`); // RFC 9112 §3.2
    const hasCL = h.headers.some((f) => f[0] === "content-length");
    const hasTE = h.headers.some((f) => f[0] === "transfer-encoding");
    if (h.contentLength >= 0 && !hasCL) bad.push("contentLength without a Content-Length field");
    if (hasCL && hasTE) bad.push("both Content-Length and Transfer-Encoding accepted"); // RFC 9112 §6.3 (strict)
    if (h.chunked !== hasTE) bad.push(`chunked=${h.chunked} but Transfer-Encoding ${hasTE ? "present" : "absent"}`);
    if (hasCL && h.contentLength < 0) bad.push("Content-Length field but contentLength -1");
  }
  if (!Number.isSafeInteger(h.contentLength) || h.contentLength < -1) bad.push(`contentLength ${h.contentLength}`);
  if (h.chunked && h.contentLength !== -1) bad.push("chunked with a contentLength");
  if (h.chunked && h.version === "HTTP/1.0") bad.push("chunked on HTTP/1.0"); // RFC 9112 §6.1
  if (typeof h.keepAlive !== "boolean" || typeof h.expectContinue !== "boolean" || typeof h.chunked !== "boolean") bad.push("flag not boolean");
  return bad;
}

interface RunResult {
  /** completed messages as "head json|body" plus an open one as "head json|..." */
  messages: string[];
  final: string;
  problems: string[];
}

/** Feeds pieces to a fresh parser, checking every event. Never throws: exceptions become problems. */
function run(pieces: Uint8Array[], totalBytes: number): RunResult {
  const problems: string[] = [];
  const messages: string[] = [];
  const maxEvents = totalBytes * 2 + 10;
  let events = 0;
  let open: { head: RequestHead; json: string; bodyBytes: number; body: string[] } | null = null;
  let error: { status: number; code: string } | null = null;
  let fed = 0;
  const parser = new RequestParser();

  let hasThrown = false;
  const call = <T>(what: string, f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      hasThrown = true;
      problems.push(`${what} threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      return undefined;
    }
  };

  outer: for (const piece of pieces) {
    call("feed", () => parser.feed(piece));
    if (hasThrown) break;
    fed += piece.length;
    for (;;) {
      const ev = call("next", () => parser.next()) as ParseEvent | undefined;
      if (hasThrown) break outer;
      if (!ev || typeof ev !== "object" || !EVENT_KINDS.has(ev.kind)) {
        problems.push(`unknown event ${JSON.stringify(ev)}`);
        break outer;
      }
      if (ev.kind === "need-more") break;
      if (++events > maxEvents) {
        problems.push(`more than ${maxEvents} events (next() loop does not settle)`);
        break outer;
      }
      if (ev.kind === "head") {
        if (open) problems.push("head while a message is open");
        problems.push(...checkHead(ev.head));
        open = { head: ev.head, json: JSON.stringify(ev.head), bodyBytes: 0, body: [] };
      } else if (ev.kind === "body") {
        if (!open) problems.push("body outside a message");
        else if (!(ev.data instanceof Uint8Array)) problems.push("body data is not a Uint8Array");
        else {
          open.bodyBytes += ev.data.length;
          open.body.push(fromBytes(ev.data));
          if (open.head.contentLength >= 0 && open.bodyBytes > open.head.contentLength) problems.push(`body passes Content-Length ${open.head.contentLength}`);
        }
      } else if (ev.kind === "end") {
        if (!open) problems.push("end outside a message");
        else {
          const { head } = open;
          if (!head.chunked && open.bodyBytes !== Math.max(head.contentLength, 0)) problems.push(`end after ${open.bodyBytes} body bytes, Content-Length ${head.contentLength}`);
          messages.push(`${open.json}|${open.body.join("")}`);
          open = null;
        }
      } else {
        if (!ERROR_STATUSES.has(ev.status)) problems.push(`error status ${ev.status}`);
        if (typeof ev.code !== "string" || typeof ev.message !== "string") problems.push("error without code/message strings");
        error = { status: ev.status, code: ev.code };
        // every later call returns the same error, also after more bytes
        const again = call("next after error", () => parser.next());
        call("feed after error", () => parser.feed(toBytes("GET / HTTP/1.1\r\nHost: h\r\n\r\n")));
        const later = call("next after error+feed", () => parser.next());
        for (const e of [again, later]) {
          if (e && (e.kind !== "error" || e.status !== ev.status || e.code !== ev.code)) problems.push(`after error ${ev.status}, next() gave ${JSON.stringify(e)}`);
        }
        break outer;
      }
    }
    const buffered = call("bufferedBytes", () => parser.bufferedBytes);
    if (buffered !== undefined && (!Number.isSafeInteger(buffered) || buffered < 0 || buffered > fed)) problems.push(`bufferedBytes ${buffered} with ${fed} fed`);
  }
  if (open) messages.push(`${open.json}|...`); // body of an unfinished message depends on the split
  return { messages, final: error ? `error ${error.status}` : "need-more", problems };
}

function show(bytes: Uint8Array): string {
  return JSON.stringify(fromBytes(bytes));
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

test(
  `fuzz: ${INPUT_COUNT} random and mutated requests (FUZZ_SEED=${SEED})`,
  () => {
    const failures: string[] = [];
    const tally = { corpus: 0, random: 0, tokens: 0, mutated: 0, heads: 0, errors: 0 } as Record<string, number>;
    const fail = (i: number, kind: Kind, bytes: Uint8Array, what: string) => {
      if (failures.length < MAX_FAILURES_REPORTED) failures.push(`FUZZ_SEED=${SEED} input #${i} (${kind}) ${show(bytes)}\n    ${what}`);
      else failures.length === MAX_FAILURES_REPORTED && failures.push("... (more failures not shown)");
    };

    for (let i = 0; i < INPUT_COUNT; i++) {
      const rng = new Rng(seedFor(i));
      const { kind, bytes, corpusIndex } = generate(rng, i);
      tally[kind]!++;
      const pieces = split(rng, bytes);
      const result = run(pieces, bytes.length);
      tally.heads! += result.messages.length;
      if (result.final !== "need-more") tally.errors!++;
      for (const p of result.problems) fail(i, kind, bytes, p);

      if (kind === "corpus") {
        // differential: a valid request parses the same whole, byte by byte and in random pieces
        const expected = CORPUS[corpusIndex]!.requests;
        if (result.final !== "need-more" || result.messages.length !== expected) {
          fail(i, kind, bytes, `valid corpus request gave ${result.final} after ${result.messages.length}/${expected} requests`);
        }
        const whole = run([bytes], bytes.length);
        const byByte = run(Array.from({ length: bytes.length }, (_, k) => bytes.subarray(k, k + 1)), bytes.length);
        for (const [label, other] of [["random pieces", result], ["byte by byte", byByte]] as const) {
          if (JSON.stringify(other.messages) !== JSON.stringify(whole.messages) || other.final !== whole.final) {
            fail(i, kind, bytes, `whole vs ${label} differ:\n      whole: ${JSON.stringify(whole)}\n      ${label}: ${JSON.stringify(other)}`);
          }
        }
      } else if ((kind === "tokens" || i % 5 === 3) && pieces.length > 1) {
        // differential on mutated input: the split must not change what parses or how it fails
        const whole = run([bytes], bytes.length);
        if (JSON.stringify(result.messages) !== JSON.stringify(whole.messages) || result.final !== whole.final) {
          fail(i, kind, bytes, `whole vs ${pieces.length} pieces differ:\n      whole: ${whole.final} ${JSON.stringify(whole.messages)}\n      pieces: ${result.final} ${JSON.stringify(result.messages)}`);
        }
      }
    }

    if (failures.length) console.error(`fuzz failures (reproduce with FUZZ_SEED=${SEED}):\n  ${failures.join("\n  ")}`);
    console.error(`fuzz: seed ${SEED}, ${JSON.stringify(tally)}`);
    expect(failures).toEqual([]);
  },
  FUZZ_TIMEOUT_MS,
);

// Static files (static.ts): the sans-IO rules as tables of cases with one runner each,
// then the same cases and the HTTP behaviour over real sockets (an in-process server on
// port 0, a raw client), then X-Accel-Redirect / X-Sendfile from TypeScript and Python apps.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  type ConditionalHeaders, type Coding, type RangeChoice, type Validators,
  chooseCoding, chooseRange, evaluateConditionals, parseHttpDate, parseMapping, resolveRequestPath,
} from "../static.ts";
import type { WsgiApp } from "../server.ts";
import { RawClient, cleanUp, exchange, header, serve } from "./helpers.ts";
import { PYAPPS, request, startPy, stopAllPy } from "./pyhelpers.ts";

// ==== Paths (RFC 3986 §2.1 percent-encoding, §3.3 segments, §5.2.4 dot segments) ====

type PathCase = { name: string; path: string; expect: string[] | "dir" | 400 | 404 };
const PREFIX = "/static";
const PATH_CASES: PathCase[] = [
  // valid
  { name: "a file", path: "/static/a.txt", expect: ["a.txt"] },
  { name: "a nested file", path: "/static/sub/b.css", expect: ["sub", "b.css"] },
  { name: "RFC 3986 §2.1: %41 is A", path: "/static/%41.txt", expect: ["A.txt"] },
  { name: "UTF-8 name, percent-encoded", path: "/static/caf%C3%A9.txt", expect: ["café.txt"] },
  { name: "RFC 8615: /.well-known/ is served", path: "/static/.well-known/security.txt", expect: [".well-known", "security.txt"] },
  { name: "a name with dots inside", path: "/static/a..b.txt", expect: ["a..b.txt"] },
  { name: "the root directory", path: "/static/", expect: "dir" },
  { name: "a sub-directory", path: "/static/sub/", expect: "dir" },
  // invalid: escapes (all 404, so a scanner learns nothing)
  { name: "RFC 3986 §5.2.4: ..", path: "/static/../server.ts", expect: 404 },
  { name: ".. deeper", path: "/static/sub/../../server.ts", expect: 404 },
  { name: "%2e%2e", path: "/static/%2e%2e/server.ts", expect: 404 },
  { name: "%2E%2E upper case", path: "/static/%2E%2E/server.ts", expect: 404 },
  { name: ".%2e mixed", path: "/static/.%2e/server.ts", expect: 404 },
  { name: "%2e. mixed", path: "/static/%2e./server.ts", expect: 404 },
  { name: "a trailing ..", path: "/static/sub/..", expect: 404 },
  { name: "a lone .", path: "/static/./a.txt", expect: 404 },
  { name: "%2e alone", path: "/static/%2e/a.txt", expect: 404 },
  { name: "encoded slash %2F", path: "/static/..%2Fserver.ts", expect: 404 },
  { name: "encoded slash %2f lower", path: "/static/sub%2fb.css", expect: 404 },
  { name: "%2e%2e%2f together", path: "/static/%2e%2e%2fserver.ts", expect: 404 },
  { name: "encoded backslash %5C", path: "/static/..%5Cserver.ts", expect: 404 },
  { name: "NUL %00", path: "/static/a.txt%00.png", expect: 404 },
  { name: "double-encoded %252e stays a name (decoded once)", path: "/static/%252e%252e/x", expect: ["%2e%2e", "x"] },
  { name: "empty segment //", path: "/static//etc/passwd", expect: 404 },
  { name: "empty segment inside", path: "/static/sub//b.css", expect: 404 },
  { name: "dotfile", path: "/static/.env", expect: 404 },
  { name: "encoded dotfile %2eenv", path: "/static/%2eenv", expect: 404 },
  { name: "dot directory", path: "/static/.git/config", expect: 404 },
  { name: ".well-known only at the top", path: "/static/sub/.well-known/x", expect: 404 },
  { name: "a dotfile inside .well-known", path: "/static/.well-known/.secret", expect: 404 },
  { name: "not UTF-8 (%FF)", path: "/static/%FF.txt", expect: 404 },
  { name: "overlong UTF-8 for '.' (%C0%AE%C0%AE)", path: "/static/%C0%AE%C0%AE/server.ts", expect: 404 },
  { name: "overlong UTF-8 for '/' (%C0%AF)", path: "/static/..%C0%AFserver.ts", expect: 404 },
  { name: "not under the prefix", path: "/staticx/a.txt", expect: 404 },
  { name: "the prefix without its slash", path: "/static", expect: 404 },
  // invalid: not a path at all (400)
  { name: "RFC 3986 §2.1: % without hex", path: "/static/%zz.txt", expect: 400 },
  { name: "% at the end", path: "/static/a%", expect: 400 },
  { name: "% with one digit", path: "/static/a%4", expect: 400 },
];

describe("resolveRequestPath (cases as data)", () => {
  test("rejections outnumber acceptances", () => {
    const accepted = PATH_CASES.filter((c) => Array.isArray(c.expect) || c.expect === "dir").length;
    expect(PATH_CASES.length - accepted).toBeGreaterThan(accepted);
  });
  for (const c of PATH_CASES) {
    test(c.name, () => {
      const v = resolveRequestPath(c.path, PREFIX);
      if (typeof c.expect === "number") {
        expect(v.ok ? "accepted" : v.status).toBe(c.expect);
      } else if (c.expect === "dir") {
        expect(v.ok && v.isDirectory).toBe(true);
      } else {
        expect(v.ok ? v.segments : v.code).toEqual(c.expect);
        expect(v.ok && v.isDirectory).toBe(false);
      }
    });
  }
});

describe("parseMapping", () => {
  const cases: [string, [string, string] | "error"][] = [
    ["/static=./public", ["/static", "./public"]],
    ["/static/=/srv/www", ["/static", "/srv/www"]],
    ["/a/b=/d", ["/a/b", "/d"]],
    ["static=./public", "error"],
    ["/static", "error"],
    ["/static=", "error"],
    ["/st%41tic=/d", "error"],
    ["/a/../b=/d", "error"],
    ["/a//b=/d", "error"],
  ];
  for (const [value, want] of cases) test(value, () => {
    const got = parseMapping(value);
    expect(typeof got === "string" ? "error" : got).toEqual(want);
  });
});

// ==== Conditional requests (RFC 9110 §13.1, §13.2.2 precedence) ====

const V: Validators = { etag: '"a-1"', lastModifiedS: Date.UTC(2024, 0, 10, 12, 0, 0) / 1000 };
const DATE_AT = "Wed, 10 Jan 2024 12:00:00 GMT";
const DATE_BEFORE = "Tue, 09 Jan 2024 12:00:00 GMT";
const DATE_AFTER = "Thu, 11 Jan 2024 12:00:00 GMT";
type CondCase = { name: string; method?: string; h: ConditionalHeaders; expect: "serve" | 304 | 412 };
const COND_CASES: CondCase[] = [
  { name: "no conditionals", h: {}, expect: "serve" },
  { name: "§13.1.2 If-None-Match equal → 304", h: { ifNoneMatch: '"a-1"' }, expect: 304 },
  { name: "§13.1.2 weak comparison: W/ matches", h: { ifNoneMatch: 'W/"a-1"' }, expect: 304 },
  { name: "§13.1.2 in a list", h: { ifNoneMatch: '"x", "a-1"' }, expect: 304 },
  { name: "§13.1.2 * matches", h: { ifNoneMatch: "*" }, expect: 304 },
  { name: "§13.1.2 other tag → serve", h: { ifNoneMatch: '"b-2"' }, expect: "serve" },
  { name: "§13.1.2 unquoted garbage does not match", h: { ifNoneMatch: "a-1" }, expect: "serve" },
  { name: "§13.1.2 not a read: 412", method: "POST", h: { ifNoneMatch: '"a-1"' }, expect: 412 },
  { name: "§13.1.3 If-Modified-Since at Last-Modified → 304", h: { ifModifiedSince: DATE_AT }, expect: 304 },
  { name: "§13.1.3 after → 304", h: { ifModifiedSince: DATE_AFTER }, expect: 304 },
  { name: "§13.1.3 before → serve", h: { ifModifiedSince: DATE_BEFORE }, expect: "serve" },
  { name: "§13.1.3 unparsable date is ignored", h: { ifModifiedSince: "yesterday" }, expect: "serve" },
  { name: "§13.1.3 ignored for POST", method: "POST", h: { ifModifiedSince: DATE_AFTER }, expect: "serve" },
  { name: "§13.2.2 If-None-Match wins over If-Modified-Since (no match, date would say 304)", h: { ifNoneMatch: '"b"', ifModifiedSince: DATE_AFTER }, expect: "serve" },
  { name: "§13.2.2 If-None-Match match, date before: still 304", h: { ifNoneMatch: '"a-1"', ifModifiedSince: DATE_BEFORE }, expect: 304 },
  { name: "§13.1.1 If-Match equal → serve", h: { ifMatch: '"a-1"' }, expect: "serve" },
  { name: "§13.1.1 If-Match * → serve", h: { ifMatch: "*" }, expect: "serve" },
  { name: "§13.1.1 If-Match other → 412", h: { ifMatch: '"b"' }, expect: 412 },
  { name: "§13.1.1 strong comparison: W/ never matches", h: { ifMatch: 'W/"a-1"' }, expect: 412 },
  { name: "§13.1.4 If-Unmodified-Since before → 412", h: { ifUnmodifiedSince: DATE_BEFORE }, expect: 412 },
  { name: "§13.1.4 If-Unmodified-Since at → serve", h: { ifUnmodifiedSince: DATE_AT }, expect: "serve" },
  { name: "§13.2.2 If-Match wins over If-Unmodified-Since", h: { ifMatch: '"a-1"', ifUnmodifiedSince: DATE_BEFORE }, expect: "serve" },
  { name: "§13.2.2 If-Match fails before If-None-Match is looked at", h: { ifMatch: '"b"', ifNoneMatch: '"a-1"' }, expect: 412 },
];
describe("evaluateConditionals (cases as data)", () => {
  for (const c of COND_CASES) test(c.name, () => expect(evaluateConditionals(c.method ?? "GET", c.h, V)).toBe(c.expect));
  test("IMF-fixdate only (RFC 9110 §5.6.7)", () => {
    expect(parseHttpDate(DATE_AT)).toBe(V.lastModifiedS);
    for (const bad of ["Wednesday, 10-Jan-24 12:00:00 GMT", "Wed Jan 10 12:00:00 2024", "Wed, 31 Feb 2024 12:00:00 GMT", "Xyz, 10 Jan 2024 12:00:00 GMT", "Wed, 10 Jan 2024 12:00:00 UTC"]) {
      expect(Number.isNaN(parseHttpDate(bad))).toBe(true);
    }
  });
});

// ==== Range (RFC 9110 §14) ====

type RangeCase = { name: string; method?: string; h: ConditionalHeaders; expect: RangeChoice };
const WHOLE = { kind: "whole" } as const, NONE = { kind: "unsatisfiable" } as const;
const part = (start: number, end: number) => ({ kind: "part", start, end }) as const;
const RANGE_CASES: RangeCase[] = [
  { name: "no Range", h: {}, expect: WHOLE },
  { name: "§14.1.2 first bytes", h: { range: "bytes=0-9" }, expect: part(0, 9) },
  { name: "§14.1.2 open end", h: { range: "bytes=90-" }, expect: part(90, 99) },
  { name: "§14.1.2 suffix", h: { range: "bytes=-10" }, expect: part(90, 99) },
  { name: "§14.1.2 suffix longer than the file", h: { range: "bytes=-500" }, expect: part(0, 99) },
  { name: "§14.1.2 end past the file is clipped", h: { range: "bytes=50-500" }, expect: part(50, 99) },
  { name: "§14.1 unit is case-insensitive", h: { range: "Bytes=0-0" }, expect: part(0, 0) },
  { name: "§5.6.1 OWS and empty elements", h: { range: "bytes= 1-2 ," }, expect: part(1, 2) },
  { name: "§14.1.2 start at the size → 416", h: { range: "bytes=100-" }, expect: NONE },
  { name: "§14.1.2 suffix of 0 → 416", h: { range: "bytes=-0" }, expect: NONE },
  { name: "§14.2 several ranges → whole", h: { range: "bytes=0-1,5-6" }, expect: WHOLE },
  { name: "several, all unsatisfiable → 416", h: { range: "bytes=200-300,400-" }, expect: NONE },
  { name: "§14.2 another unit is ignored", h: { range: "items=0-1" }, expect: WHOLE },
  { name: "last < first: invalid set, ignored", h: { range: "bytes=9-1" }, expect: WHOLE },
  { name: "not digits: ignored", h: { range: "bytes=a-b" }, expect: WHOLE },
  { name: "a lone dash: ignored", h: { range: "bytes=-" }, expect: WHOLE },
  { name: "minus sign: ignored", h: { range: "bytes=--1" }, expect: WHOLE },
  { name: "no '=': ignored", h: { range: "bytes 0-1" }, expect: WHOLE },
  { name: "16 digits (past 2^53): ignored", h: { range: "bytes=0-1234567890123456" }, expect: WHOLE },
  { name: "empty set: ignored", h: { range: "bytes=" }, expect: WHOLE },
  { name: "§14.2 HEAD ignores Range", method: "HEAD", h: { range: "bytes=0-9" }, expect: WHOLE },
  { name: "§13.1.5 If-Range with our tag → part", h: { range: "bytes=0-9", ifRange: '"a-1"' }, expect: part(0, 9) },
  { name: "§13.1.5 If-Range other tag → whole", h: { range: "bytes=0-9", ifRange: '"b"' }, expect: WHOLE },
  { name: "§13.1.5 If-Range weak tag never matches", h: { range: "bytes=0-9", ifRange: 'W/"a-1"' }, expect: WHOLE },
  { name: "§13.1.5 If-Range with our date → part", h: { range: "bytes=0-9", ifRange: DATE_AT }, expect: part(0, 9) },
  { name: "§13.1.5 If-Range other date → whole", h: { range: "bytes=0-9", ifRange: DATE_AFTER }, expect: WHOLE },
];
describe("chooseRange (cases as data, a 100-byte file)", () => {
  for (const c of RANGE_CASES) test(c.name, () => expect(chooseRange(c.method ?? "GET", c.h, 100, V)).toEqual(c.expect));
  test("an empty file: any range is unsatisfiable", () => expect(chooseRange("GET", { range: "bytes=0-" }, 0, V)).toEqual(NONE));
});

// ==== Accept-Encoding (RFC 9110 §12.5.3) ====

const BOTH: Coding[] = ["br", "gzip"];
const CODING_CASES: { name: string; ae: string | undefined; available?: Coding[]; expect: Coding | null }[] = [
  { name: "no header: identity", ae: undefined, expect: null },
  { name: "gzip", ae: "gzip", expect: "gzip" },
  { name: "br preferred on a tie", ae: "gzip, br", expect: "br" },
  { name: "q decides", ae: "br;q=0.5, gzip;q=0.8", expect: "gzip" },
  { name: "q=0 is not acceptable", ae: "br;q=0, gzip", expect: "gzip" },
  { name: "all q=0", ae: "br;q=0, gzip;q=0", expect: null },
  { name: "* stands for the rest", ae: "*", expect: "br" },
  { name: "* with br refused", ae: "br;q=0, *;q=0.5", expect: "gzip" },
  { name: "identity rated above", ae: "identity, gzip;q=0.5", expect: null },
  { name: "x-gzip is gzip (§8.4.1.3)", ae: "x-gzip", expect: "gzip" },
  { name: "upper case names and Q", ae: "GZIP;Q=1", expect: "gzip" },
  { name: "a bad qvalue counts as 0", ae: "br;q=2, gzip;q=0.1", expect: "gzip" },
  { name: "only what exists", ae: "br", available: ["gzip"], expect: null },
  { name: "nothing exists", ae: "br, gzip", available: [], expect: null },
  { name: "empty header: identity", ae: "", expect: null },
];
describe("chooseCoding (cases as data)", () => {
  for (const c of CODING_CASES) test(c.name, () => expect(chooseCoding(c.ae, c.available ?? BOTH)).toBe(c.expect));
});

// ==== Over real sockets ====

let root = "";
let outside = "";
const BIG_BYTES = 16 * 1024 * 1024;
let big: Buffer;
beforeAll(() => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "bunicorn-static-"));
  root = path.join(base, "public");
  outside = path.join(base, "private");
  fs.mkdirSync(path.join(root, "sub"), { recursive: true });
  fs.mkdirSync(path.join(root, ".well-known"));
  fs.mkdirSync(path.join(root, "docs"));
  fs.mkdirSync(path.join(root, ".git"));
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(root, "a.txt"), "0123456789abcdefghij");
  fs.writeFileSync(path.join(root, "A.txt"), "upper");
  fs.writeFileSync(path.join(root, "café.txt"), "café");
  fs.writeFileSync(path.join(root, "a..b.txt"), "dots");
  fs.writeFileSync(path.join(root, "sub", "b.css"), "b{}");
  fs.writeFileSync(path.join(root, ".well-known", "security.txt"), "Contact: x");
  fs.writeFileSync(path.join(root, ".well-known", ".secret"), "no");
  fs.writeFileSync(path.join(root, ".env"), "SECRET=1");
  fs.writeFileSync(path.join(root, ".git", "config"), "[core]");
  fs.writeFileSync(path.join(root, "docs", "index.html"), "<p>docs</p>");
  fs.writeFileSync(path.join(root, "app.js"), "plain js");
  fs.writeFileSync(path.join(root, "app.js.gz"), "gz bytes");
  fs.writeFileSync(path.join(root, "app.js.br"), "br bytes");
  fs.writeFileSync(path.join(outside, "secret.txt"), "outside");
  fs.symlinkSync(path.join(outside, "secret.txt"), path.join(root, "leak.txt"));
  fs.symlinkSync(outside, path.join(root, "leakdir"));
  fs.symlinkSync(path.join(root, "a.txt"), path.join(root, "inside-link.txt"));
  fs.symlinkSync(path.join(root, ".env"), path.join(root, "env-link.txt"));
  big = Buffer.alloc(BIG_BYTES);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
  fs.writeFileSync(path.join(root, "big.bin"), big);
  fs.writeFileSync(path.join(outside, "report.pdf"), "%PDF-report");
  fs.writeFileSync(path.join(outside, "server.ts"), "never");
});
afterEach(cleanUp);
afterAll(async () => {
  await stopAllPy();
  fs.rmSync(path.dirname(root), { recursive: true, force: true });
});

/** The app behind the static stage: says it was reached, or answers with an internal redirect. */
const APP: WsgiApp = (environ, startResponse) => {
  const p: string = environ.PATH_INFO;
  if (p === "/download") {
    startResponse("200 OK", [["Content-Type", "application/pdf"], ["Content-Disposition", 'attachment; filename="r.pdf"'], ["X-Accel-Redirect", "/_protected/report.pdf"], ["Cache-Control", "private"], ["X-App-Only", "1"]]);
    return ["the app's own body, dropped"];
  }
  if (p === "/escape") {
    startResponse("200 OK", [["X-Accel-Redirect", "/_protected/%2e%2e/public/a.txt"]]);
    return [""];
  }
  if (p === "/sendfile") {
    startResponse("200 OK", [["X-Sendfile", path.join(outside, "report.pdf")]]);
    return [""];
  }
  if (p === "/sendfile-outside") {
    startResponse("200 OK", [["X-Sendfile", path.join(root, "a.txt")]]);
    return [""];
  }
  startResponse("200 OK", [["Content-Type", "text/plain"]]);
  return [`app saw ${p}`];
};

function serveStatic(extra: Record<string, unknown> = {}) {
  return serve(APP, { staticMaps: [`/static=${root}`], sendfileRoots: [`/_protected=${outside}`], staticIndex: true, ...extra });
}

async function get(port: number, target: string, headers: Record<string, string> = {}, method = "GET") {
  let head = `${method} ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  const r = await exchange(port, head + "\r\n", { methods: [method], timeoutMs: 5000 });
  return r.responses[0];
}

describe("static files over sockets", () => {
  test("every path case gives the same verdict on the wire (valid: the file; invalid: 404/400, never the app)", async () => {
    const { port } = serveStatic();
    for (const c of PATH_CASES) {
      const res = await get(port, c.path);
      if (c.name === "not under the prefix") {
        expect(res.body.toString()).toBe("app saw /staticx/a.txt"); // another path: the app's
      } else if (typeof c.expect === "number") {
        expect([c.name, res.status]).toEqual([c.name, c.expect]);
        expect(res.body.toString()).not.toContain("app saw");
      } else if (c.expect === "dir") {
        expect([c.name, res.status]).toEqual([c.name, 404]); // no index.html in those directories
      } else if (c.name.includes("double-encoded")) {
        expect(res.status).toBe(404); // a name "%2e%2e": no such file
      } else {
        expect([c.name, res.status]).toEqual([c.name, 200]);
        expect(res.body.toString()).toBe(fs.readFileSync(path.join(root, ...c.expect), "utf8"));
      }
    }
  });

  test("symlinks leaving the root are missing; inside the root they work; a link to a dotfile is a dotfile", async () => {
    const { port } = serveStatic();
    expect((await get(port, "/static/leak.txt")).status).toBe(404);
    expect((await get(port, "/static/leakdir/secret.txt")).status).toBe(404);
    expect((await get(port, "/static/env-link.txt")).status).toBe(404);
    const ok = await get(port, "/static/inside-link.txt");
    expect([ok.status, ok.body.toString()]).toEqual([200, "0123456789abcdefghij"]);
  });

  test("missing → 404; other paths reach the app; a sendfile root is never served directly", async () => {
    const { port } = serveStatic();
    expect((await get(port, "/static/nope.txt")).status).toBe(404);
    expect((await get(port, "/other")).body.toString()).toBe("app saw /other");
    const direct = await get(port, "/_protected/report.pdf");
    expect(direct.status).toBe(404);
    expect(direct.body.toString()).not.toContain("PDF");
  });

  test("GET: Content-Type, Content-Length, strong ETag, Last-Modified, Cache-Control, Accept-Ranges", async () => {
    const { port } = serveStatic({ staticMaxAgeS: 3600 });
    const res = await get(port, "/static/sub/b.css");
    expect(res.status).toBe(200);
    expect(header(res, "content-type")).toBe("text/css; charset=utf-8");
    expect(header(res, "content-length")).toBe("3");
    expect(header(res, "etag")).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(parseHttpDate(header(res, "last-modified")!)).toBe(Math.floor(fs.statSync(path.join(root, "sub", "b.css")).mtimeMs / 1000));
    expect(header(res, "cache-control")).toBe("public, max-age=3600");
    expect(header(res, "accept-ranges")).toBe("bytes");
    const noAge = await get(serveStatic().port, "/static/sub/b.css");
    expect(header(noAge, "cache-control")).toBeUndefined();
  });

  test("HEAD: the GET's headers, no body; POST: 405 with Allow", async () => {
    const { port } = serveStatic();
    const res = await get(port, "/static/a.txt", {}, "HEAD");
    expect([res.status, header(res, "content-length"), res.body.length]).toEqual([200, "20", 0]);
    const post = await get(port, "/static/a.txt", { "Content-Length": "0" }, "POST");
    expect([post.status, header(post, "allow")]).toEqual([405, "GET, HEAD"]);
  });

  test("RFC 9110 §13: If-None-Match and If-Modified-Since → 304 without a body; a stale tag → 200", async () => {
    const { port } = serveStatic();
    const first = await get(port, "/static/a.txt");
    const etag = header(first, "etag")!, lm = header(first, "last-modified")!;
    const byTag = await get(port, "/static/a.txt", { "If-None-Match": etag });
    expect([byTag.status, byTag.body.length, header(byTag, "etag")]).toEqual([304, 0, etag]);
    expect((await get(port, "/static/a.txt", { "If-Modified-Since": lm })).status).toBe(304);
    expect((await get(port, "/static/a.txt", { "If-None-Match": '"stale"', "If-Modified-Since": lm })).status).toBe(200);
    expect((await get(port, "/static/a.txt", { "If-Match": '"stale"' })).status).toBe(412);
  });

  test("RFC 9110 §14: one range → 206 with Content-Range; unsatisfiable → 416; several → 200 whole; If-Range", async () => {
    const { port } = serveStatic();
    const r = await get(port, "/static/a.txt", { Range: "bytes=2-5" });
    expect([r.status, header(r, "content-range"), r.body.toString()]).toEqual([206, "bytes 2-5/20", "2345"]);
    const suffix = await get(port, "/static/a.txt", { Range: "bytes=-3" });
    expect([suffix.status, suffix.body.toString()]).toEqual([206, "hij"]);
    const bad = await get(port, "/static/a.txt", { Range: "bytes=20-" });
    expect([bad.status, header(bad, "content-range")]).toEqual([416, "bytes */20"]);
    const multi = await get(port, "/static/a.txt", { Range: "bytes=0-1,4-5" });
    expect([multi.status, multi.body.toString()]).toEqual([200, "0123456789abcdefghij"]);
    const etag = header(r, "etag")!;
    expect((await get(port, "/static/a.txt", { Range: "bytes=0-0", "If-Range": etag })).status).toBe(206);
    expect((await get(port, "/static/a.txt", { Range: "bytes=0-0", "If-Range": '"old"' })).status).toBe(200);
  });

  test("precompressed siblings by Accept-Encoding q-values, with Vary and a tag per variant", async () => {
    const { port } = serveStatic();
    const br = await get(port, "/static/app.js", { "Accept-Encoding": "gzip, br" });
    expect([br.body.toString(), header(br, "content-encoding"), header(br, "vary")]).toEqual(["br bytes", "br", "Accept-Encoding"]);
    expect(header(br, "content-type")).toBe("text/javascript; charset=utf-8");
    const gz = await get(port, "/static/app.js", { "Accept-Encoding": "br;q=0.1, gzip" });
    expect([gz.body.toString(), header(gz, "content-encoding")]).toEqual(["gz bytes", "gzip"]);
    const plain = await get(port, "/static/app.js");
    expect([plain.body.toString(), header(plain, "content-encoding"), header(plain, "vary")]).toEqual(["plain js", undefined, "Accept-Encoding"]);
    expect(new Set([header(br, "etag"), header(gz, "etag"), header(plain, "etag")]).size).toBe(3);
    // The siblings are not reachable as a coding of a file they do not belong to, nor in place of a 404.
    expect((await get(port, "/static/a.txt", { "Accept-Encoding": "gzip" })).body.toString()).toBe("0123456789abcdefghij");
  });

  test("index.html for a directory (with --static-index), a redirect to the slash, 404 without the flag", async () => {
    const { port } = serveStatic();
    const res = await get(port, "/static/docs/");
    expect([res.status, res.body.toString()]).toEqual([200, "<p>docs</p>"]);
    const redirect = await get(port, "/static/docs?x=1");
    expect([redirect.status, header(redirect, "location")]).toEqual([301, "/static/docs/?x=1"]);
    expect((await get(serveStatic({ staticIndex: false }).port, "/static/docs/")).status).toBe(404);
  });

  test("a large file streams whole and byte-exact, and a client that stops reading holds it back (backpressure)", async () => {
    const { port, server } = serveStatic({ metricsBind: "127.0.0.1:0" }); // for its count of bytes sent
    const metrics = server.metrics!;
    const client = await RawClient.connect(port);
    client.pause();
    client.write("GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    // While the client reads nothing, the kernel's buffers fill and the front stops reading the
    // file: what it holds unsent stays within about two pieces (256 KiB each), not the file.
    let sent = -1;
    for (let i = 0; i < 100 && sent !== metrics.bytesOut; i++) {
      sent = metrics.bytesOut;
      await Bun.sleep(30);
    }
    expect(sent).toBeLessThan(BIG_BYTES / 2);
    const unsent = [...server.conns].reduce((n, c) => n + c.unsentBytes, 0);
    expect(unsent).toBeGreaterThan(0); // it is backed up
    expect(unsent).toBeLessThanOrEqual(2 * 256 * 1024);
    client.resume();
    const [res] = await client.readResponses(1, ["GET"], 10_000).then(() => client.responses(["GET"]));
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(BIG_BYTES);
    expect(Buffer.compare(res.body, big)).toBe(0);
    // and a range from the middle of it
    const mid = await get(port, "/static/big.bin", { Range: `bytes=${BIG_BYTES / 2}-${BIG_BYTES / 2 + 7}` });
    expect(mid.body).toEqual(big.subarray(BIG_BYTES / 2, BIG_BYTES / 2 + 8));
  });

  test("a file changed on disk is sent as it is now (the small-file cache checks size and mtime), with a new ETag", async () => {
    const { port } = serveStatic();
    const file = path.join(root, "changing.txt");
    fs.writeFileSync(file, "first");
    const a = await get(port, "/static/changing.txt");
    expect(a.body.toString()).toBe("first");
    fs.writeFileSync(file, "second!");
    const b = await get(port, "/static/changing.txt");
    expect(b.body.toString()).toBe("second!");
    expect(header(b, "etag")).not.toBe(header(a, "etag"));
    fs.rmSync(file);
    expect((await get(port, "/static/changing.txt")).status).toBe(404);
  });

  test("bad flags: a missing directory is a start-up error", () => {
    expect(() => serve(APP, { staticMaps: [`/static=${root}/nope`] })).toThrow(/--static-map .*no such directory/);
  });
});

describe("X-Accel-Redirect and X-Sendfile (TypeScript app)", () => {
  test("the app's status and its Content-Type, Content-Disposition and cache headers are kept; its body is not sent", async () => {
    const { port } = serveStatic();
    const res = await get(port, "/download");
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("%PDF-report");
    expect(header(res, "content-type")).toBe("application/pdf");
    expect(header(res, "content-disposition")).toBe('attachment; filename="r.pdf"');
    expect(header(res, "cache-control")).toBe("private");
    expect(header(res, "x-accel-redirect")).toBeUndefined();
    expect(header(res, "etag")).toBeDefined();
  });

  test("Range and conditionals apply as for static files", async () => {
    const { port } = serveStatic();
    const r = await get(port, "/download", { Range: "bytes=0-3" });
    expect([r.status, r.body.toString(), header(r, "content-range")]).toEqual([206, "%PDF", "bytes 0-3/11"]);
    const etag = header(r, "etag")!;
    expect((await get(port, "/download", { "If-None-Match": etag })).status).toBe(304);
  });

  test("escapes from the sendfile root and X-Sendfile outside every root → 404", async () => {
    const { port } = serveStatic();
    expect((await get(port, "/escape")).status).toBe(404);
    expect((await get(port, "/sendfile-outside")).status).toBe(404);
    const ok = await get(port, "/sendfile");
    expect([ok.status, ok.body.toString()]).toEqual([200, "%PDF-report"]);
  });

  test("without --sendfile-root the header is the app's own and passes through", async () => {
    const { port } = serve(APP, { staticMaps: [`/static=${root}`] });
    const res = await get(port, "/download");
    expect(res.body.toString()).toBe("the app's own body, dropped");
    expect(header(res, "x-accel-redirect")).toBe("/_protected/report.pdf");
  });
});

describe("X-Accel-Redirect and X-Sendfile (Python app)", () => {
  test("a Python app's answer, whole or streamed, is replaced by the file; static paths never reach Python", async () => {
    const py = await startPy(path.join(PYAPPS, "sendfile_app.py") + ":app", ["-w", "1", "--static-map", `/static=${root}`, "--sendfile-root", `/_protected=${outside}`],
      { env: { SENDFILE_DIR: outside } });
    const whole = await request(py.port, "/accel");
    expect([whole.status, whole.body.toString(), header(whole, "content-disposition")]).toEqual([200, "%PDF-report", "attachment"]);
    const streamed = await request(py.port, "/accel-stream", { headers: { Range: "bytes=5-" } });
    expect([streamed.status, streamed.body.toString()]).toEqual([206, "report"]);
    const sendfile = await request(py.port, "/xsendfile");
    expect([sendfile.status, sendfile.body.toString(), header(sendfile, "content-type")]).toEqual([200, "%PDF-report", "application/pdf"]);
    const status = await request(py.port, "/accel-403");
    expect([status.status, status.body.toString()]).toEqual([403, "%PDF-report"]);
    const s = await request(py.port, "/static/a.txt");
    expect(s.body.toString()).toBe("0123456789abcdefghij");
    // The app counts what it saw: no static path among them.
    const seen = await request(py.port, "/seen");
    expect(seen.body.toString()).not.toContain("/static");
  });
});

// The tasks API (apps/tasks.ts, apps/tasks.py) as data: one scenario of
// requests with the answer each must get. The cases run in order against a
// fresh app (ids start at 1), so later cases rely on earlier ones.
//
// Runners: test/apps.test.ts calls both apps in-process. To run the list over
// a real server, send `toRequestBytes(c.request)` on a socket (or use fetch
// with the same method, target and body), parse the answer into a
// `CaseResponse`, and call `checkTaskCase`: it returns the list of mismatches.

// ---- requests and responses, shared with hello.cases.ts ----

/** One request as a client sends it. */
export interface CaseRequest {
  method: string;
  /** Request-target as on the wire: path, then optionally "?query". Percent-escapes stay escaped; a char above 0x7f stands for one raw byte (latin-1). */
  target: string;
  /** Request body; a string is sent as UTF-8. */
  body?: string | Uint8Array;
  /** Sends the body with Transfer-Encoding: chunked (no Content-Length). */
  isChunked?: boolean;
  contentType?: string;
}

/** The answer as received: status code, header fields in order, body bytes. */
export interface CaseResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
}

export interface TaskCase {
  name: string;
  request: CaseRequest;
  expect: {
    status: number;
    /** The body parsed as JSON must deep-equal this (and Content-Type must be application/json). */
    json?: unknown;
    /** Header values by name (any case); null means the header must be absent. */
    headers?: Record<string, string | null>;
    /** The body must be empty. */
    isEmpty?: boolean;
  };
}

export function bodyBytes(request: CaseRequest): Uint8Array {
  const body = request.body ?? "";
  return typeof body === "string" ? new TextEncoder().encode(body) : body;
}

function latin1Bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

/** A complete HTTP/1.1 request (with `Connection: close`) for sending on a raw socket. */
export function toRequestBytes(request: CaseRequest, host = "127.0.0.1"): Uint8Array {
  const body = bodyBytes(request);
  const hasBody = request.body !== undefined;
  let head = `${request.method} ${request.target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n`;
  if (request.contentType) head += `Content-Type: ${request.contentType}\r\n`;
  if (request.isChunked) head += "Transfer-Encoding: chunked\r\n";
  else if (hasBody) head += `Content-Length: ${body.length}\r\n`;
  head += "\r\n";
  const parts = [latin1Bytes(head)];
  if (request.isChunked) {
    // Two chunks when there is something to split, to exercise de-chunking.
    const half = body.length >> 1;
    for (const piece of [body.subarray(0, half), body.subarray(half)]) {
      if (piece.length === 0) continue;
      parts.push(latin1Bytes(`${piece.length.toString(16)}\r\n`), piece, latin1Bytes("\r\n"));
    }
    parts.push(latin1Bytes("0\r\n\r\n"));
  } else {
    parts.push(body);
  }
  return Buffer.concat(parts);
}

export function findHeader(headers: [string, string][], name: string): string | null {
  const lower = name.toLowerCase();
  for (const [key, value] of headers) if (key.toLowerCase() === lower) return value;
  return null;
}

function isDeepEqual(a: unknown, b: unknown): boolean {
  return Bun.deepEquals(a, b, true);
}

/**
 * Mismatches between a response and a case (empty when it passes).
 * `isBodyStripped`: the response went through a server, which sends no body for HEAD.
 */
export function checkTaskCase(c: TaskCase, res: CaseResponse, isBodyStripped = false): string[] {
  const problems: string[] = [];
  const { expect } = c;
  if (res.status !== expect.status) problems.push(`status ${res.status}, expected ${expect.status}`);
  const isHeadStripped = isBodyStripped && c.request.method === "HEAD";
  const contentLength = findHeader(res.headers, "content-length");
  if (contentLength !== null && !isHeadStripped && contentLength !== String(res.body.length)) {
    problems.push(`Content-Length ${contentLength} but ${res.body.length} body bytes`);
  }
  if (expect.json !== undefined) {
    const contentType = findHeader(res.headers, "content-type");
    if (contentType !== "application/json") problems.push(`Content-Type ${contentType}, expected application/json`);
    if (contentLength === null) problems.push("no Content-Length");
    if (!isHeadStripped) {
      const text = new TextDecoder().decode(res.body);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        problems.push(`body is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
      }
      if (parsed !== undefined && !isDeepEqual(parsed, expect.json)) {
        problems.push(`body ${text.slice(0, 300)}, expected ${JSON.stringify(expect.json)}`);
      }
    }
  }
  if (expect.isEmpty && res.body.length !== 0) problems.push(`body has ${res.body.length} bytes, expected none`);
  for (const [name, want] of Object.entries(expect.headers ?? {})) {
    const got = findHeader(res.headers, name);
    if (got !== want) problems.push(`header ${name}: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
  return problems;
}

// ---- the scenario ----

const JSON_TYPE = "application/json";
const COLLECTION_ALLOW = "GET, POST";
const ITEM_ALLOW = "GET, PUT, PATCH, DELETE";
const NOT_FOUND = { error: "not found" };
const INVALID_JSON = { error: "invalid JSON" };
const TITLE_REQUIRED = { error: "title is required" };
const TITLE_NOT_STRING = { error: "title must be a string" };
const DONE_NOT_BOOLEAN = { error: "done must be a boolean" };
const NOT_OBJECT = { error: "body must be a JSON object" };
const NOT_ALLOWED = { error: "method not allowed" };

const UNICODE_TITLE = "café ✓ 🎉 \u2028 \u0001 \"q\" \\";

function get(name: string, target: string, status: number, json?: unknown): TaskCase {
  return { name, request: { method: "GET", target }, expect: { status, json } };
}

function send(name: string, method: string, target: string, body: string | Uint8Array, status: number, json: unknown, headers?: Record<string, string | null>): TaskCase {
  return { name, request: { method, target, body, contentType: JSON_TYPE }, expect: { status, json, headers } };
}

function notAllowed(method: string, target: string, allow: string): TaskCase {
  return { name: `${method} ${target} -> 405`, request: { method, target }, expect: { status: 405, json: NOT_ALLOWED, headers: { Allow: allow } } };
}

export const TASK_CASES: readonly TaskCase[] = [
  get("empty list at start", "/tasks", 200, []),
  send("create", "POST", "/tasks", `{"title":"write parser"}`, 201, { id: 1, title: "write parser", done: false }, { Location: "/tasks/1" }),
  send("create with done", "POST", "/tasks", `{"title": "ship", "done": true}`, 201, { id: 2, title: "ship", done: true }, { Location: "/tasks/2" }),
  get("list in id order", "/tasks", 200, [{ id: 1, title: "write parser", done: false }, { id: 2, title: "ship", done: true }]),
  get("get one", "/tasks/1", 200, { id: 1, title: "write parser", done: false }),
  get("query string is ignored", "/tasks/2?verbose=1", 200, { id: 2, title: "ship", done: true }),
  get("percent-encoded id is decoded by the server", "/tasks/%31", 200, { id: 1, title: "write parser", done: false }),
  { name: "HEAD like GET", request: { method: "HEAD", target: "/tasks/1" }, expect: { status: 200, json: { id: 1, title: "write parser", done: false } } },

  // Unknown resources.
  get("unknown id", "/tasks/3", 404, NOT_FOUND),
  get("non-integer id", "/tasks/abc", 404, NOT_FOUND),
  get("id with leading zero", "/tasks/01", 404, NOT_FOUND),
  get("negative id", "/tasks/-1", 404, NOT_FOUND),
  get("decimal id", "/tasks/1.0", 404, NOT_FOUND),
  get("id too long", "/tasks/1234567890123456", 404, NOT_FOUND),
  get("empty id", "/tasks/", 404, NOT_FOUND),
  get("trailing slash after id", "/tasks/1/", 404, NOT_FOUND),
  get("sub-path", "/tasks/1/extra", 404, NOT_FOUND),
  get("root", "/", 404, NOT_FOUND),
  get("other path", "/task", 404, NOT_FOUND),
  get("paths are case-sensitive", "/TASKS", 404, NOT_FOUND),
  send("POST to another path", "POST", "/other", `{"title":"x"}`, 404, NOT_FOUND),

  // Bodies that are not JSON objects.
  send("truncated JSON", "POST", "/tasks", `{"title":`, 400, INVALID_JSON),
  { name: "no body", request: { method: "POST", target: "/tasks" }, expect: { status: 400, json: INVALID_JSON } },
  send("invalid UTF-8", "POST", "/tasks", new Uint8Array([0x7b, 0x22, 0x74, 0x69, 0x74, 0x6c, 0x65, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), 400, INVALID_JSON),
  send("UTF-8 BOM is not JSON", "POST", "/tasks", `\ufeff{"title":"x"}`, 400, INVALID_JSON),
  send("NaN is not JSON", "POST", "/tasks", `{"title":"x","done":NaN}`, 400, INVALID_JSON),
  send("Infinity is not JSON", "POST", "/tasks", `{"title":"x","n":Infinity}`, 400, INVALID_JSON),
  send("single quotes are not JSON", "POST", "/tasks", `{'title':'x'}`, 400, INVALID_JSON),
  send("trailing garbage", "POST", "/tasks", `{"title":"x"} x`, 400, INVALID_JSON),
  send("array body", "POST", "/tasks", `[{"title":"x"}]`, 400, NOT_OBJECT),
  send("string body", "POST", "/tasks", `"x"`, 400, NOT_OBJECT),
  send("null body", "POST", "/tasks", `null`, 400, NOT_OBJECT),

  // Field validation.
  send("missing title", "POST", "/tasks", `{}`, 400, TITLE_REQUIRED),
  send("empty title", "POST", "/tasks", `{"title":""}`, 400, TITLE_REQUIRED),
  send("number title", "POST", "/tasks", `{"title":5}`, 400, TITLE_NOT_STRING),
  send("null title", "POST", "/tasks", `{"title":null}`, 400, TITLE_NOT_STRING),
  send("string done", "POST", "/tasks", `{"title":"x","done":"yes"}`, 400, DONE_NOT_BOOLEAN),
  send("number done", "POST", "/tasks", `{"title":"x","done":1}`, 400, DONE_NOT_BOOLEAN),
  send("null done", "POST", "/tasks", `{"title":"x","done":null}`, 400, DONE_NOT_BOOLEAN),
  get("failed creates made nothing", "/tasks", 200, [{ id: 1, title: "write parser", done: false }, { id: 2, title: "ship", done: true }]),

  // PUT replaces.
  send("PUT replaces, done defaults to false", "PUT", "/tasks/2", `{"title":"ship it"}`, 200, { id: 2, title: "ship it", done: false }),
  send("PUT needs a title", "PUT", "/tasks/2", `{"done":true}`, 400, TITLE_REQUIRED),
  send("PUT with bad JSON", "PUT", "/tasks/2", `nope`, 400, INVALID_JSON),
  send("PUT to unknown id (checked before the body)", "PUT", "/tasks/99", `nope`, 404, NOT_FOUND),
  send("PUT ignores id in body", "PUT", "/tasks/1", `{"id":7,"title":"parser","done":true}`, 200, { id: 1, title: "parser", done: true }),

  // PATCH updates what is present.
  send("PATCH done only", "PATCH", "/tasks/2", `{"done":true}`, 200, { id: 2, title: "ship it", done: true }),
  send("PATCH title only", "PATCH", "/tasks/2", `{"title":"ship v1"}`, 200, { id: 2, title: "ship v1", done: true }),
  send("PATCH with empty object changes nothing", "PATCH", "/tasks/2", `{}`, 200, { id: 2, title: "ship v1", done: true }),
  send("PATCH empty title", "PATCH", "/tasks/2", `{"title":""}`, 400, TITLE_REQUIRED),
  send("PATCH null title", "PATCH", "/tasks/2", `{"title":null}`, 400, TITLE_NOT_STRING),
  send("PATCH string done", "PATCH", "/tasks/2", `{"done":"false"}`, 400, DONE_NOT_BOOLEAN),
  send("PATCH array body", "PATCH", "/tasks/2", `[]`, 400, NOT_OBJECT),
  send("PATCH unknown id", "PATCH", "/tasks/99", `{"done":true}`, 404, NOT_FOUND),
  get("failed updates changed nothing", "/tasks/2", 200, { id: 2, title: "ship v1", done: true }),

  // Titles survive JSON both ways; extra fields are dropped.
  send("non-ASCII and escaped title", "POST", "/tasks", JSON.stringify({ title: UNICODE_TITLE }), 201, { id: 3, title: UNICODE_TITLE, done: false }, { Location: "/tasks/3" }),
  send("lone surrogate in title", "POST", "/tasks", `{"title":"\\ud800x"}`, 201, { id: 4, title: "\ud800x", done: false }),
  send("extra fields ignored", "POST", "/tasks", `{"title":"x","id":77,"extra":[1]}`, 201, { id: 5, title: "x", done: false }, { Location: "/tasks/5" }),
  send("whitespace title is not empty", "POST", "/tasks", `{"title":" "}`, 201, { id: 6, title: " ", done: false }),
  { name: "chunked body (no Content-Length)", request: { method: "POST", target: "/tasks", body: `{"title":"chunked","done":true}`, isChunked: true, contentType: JSON_TYPE }, expect: { status: 201, json: { id: 7, title: "chunked", done: true }, headers: { Location: "/tasks/7" } } },
  { name: "no Content-Type needed", request: { method: "POST", target: "/tasks", body: `{"title":"plain"}` }, expect: { status: 201, json: { id: 8, title: "plain", done: false } } },

  // DELETE.
  { name: "DELETE -> 204 without body or length", request: { method: "DELETE", target: "/tasks/5" }, expect: { status: 204, isEmpty: true, headers: { "Content-Type": null, "Content-Length": null } } },
  get("deleted is gone", "/tasks/5", 404, NOT_FOUND),
  { name: "DELETE again -> 404", request: { method: "DELETE", target: "/tasks/5" }, expect: { status: 404, json: NOT_FOUND } },
  send("ids are not reused", "POST", "/tasks", `{"title":"after delete"}`, 201, { id: 9, title: "after delete", done: false }, { Location: "/tasks/9" }),

  // Wrong methods.
  notAllowed("PUT", "/tasks", COLLECTION_ALLOW),
  notAllowed("PATCH", "/tasks", COLLECTION_ALLOW),
  notAllowed("DELETE", "/tasks", COLLECTION_ALLOW),
  notAllowed("OPTIONS", "/tasks", COLLECTION_ALLOW),
  notAllowed("POST", "/tasks/1", ITEM_ALLOW),
  notAllowed("POST", "/tasks/99", ITEM_ALLOW), // the method is checked before the id exists
  notAllowed("OPTIONS", "/tasks/1", ITEM_ALLOW),
  notAllowed("patch", "/tasks/1", ITEM_ALLOW), // methods are case-sensitive (RFC 9110 §9.1)
  notAllowed("BREW", "/tasks", COLLECTION_ALLOW),

  get("final list", "/tasks", 200, [
    { id: 1, title: "parser", done: true },
    { id: 2, title: "ship v1", done: true },
    { id: 3, title: UNICODE_TITLE, done: false },
    { id: 4, title: "\ud800x", done: false },
    { id: 6, title: " ", done: false },
    { id: 7, title: "chunked", done: true },
    { id: 8, title: "plain", done: false },
    { id: 9, title: "after delete", done: false },
  ]),
];

// Parser cases as data (style guide (c)): each case is raw request bytes and
// either the requests it must parse into or the status it must be rejected
// with. One runner feeds every case whole, byte by byte, split in two at every
// offset, all bytes as separate buffers before the first read, and followed by
// a pipelined request, and expects the same result every time.
//
// Where the RFCs leave a choice (MAY / SHOULD) the cases take the strict one;
// the case name says so with "strict".

import { describe, expect, test } from "bun:test";
import { RequestParser, type ParseEvent, type ParserLimits, type RequestHead } from "../server.ts";

// ---------------------------------------------------------------------------
// Case types and helpers
// ---------------------------------------------------------------------------

/** A request the case must parse into: the head plus its whole body (latin-1). */
interface ExpectedRequest extends RequestHead {
  body: string;
  /** head fields the spec leaves open for this case (not compared) */
  unchecked?: (keyof RequestHead)[];
}

interface Rejection {
  status: number;
  code?: string;
  /** requests that must complete before the error (pipelined cases) */
  before?: ExpectedRequest[];
  /** the failing request's head is emitted before the error (body errors) */
  isAfterHead?: boolean;
}

interface Case {
  name: string;
  /** latin-1 string, written with explicit \r\n */
  bytes: string;
  expect: ExpectedRequest[] | Rejection;
  limits?: Partial<ParserLimits>;
}

/** An expected request with the usual defaults; path and query come from the target. */
function req(p: Partial<ExpectedRequest>): ExpectedRequest {
  const target = p.target ?? "/";
  const q = target.indexOf("?");
  const version = p.version ?? "HTTP/1.1";
  return {
    method: "GET",
    target,
    path: q < 0 ? target : target.slice(0, q),
    query: q < 0 ? "" : target.slice(q + 1),
    version,
    headers: [["host", "h"]],
    contentLength: -1,
    chunked: false,
    keepAlive: version === "HTTP/1.1",
    expectContinue: false,
    body: "",
    ...p,
  };
}

const reject = (status: number, more: Omit<Rejection, "status"> = {}): Rejection => ({ status, ...more });

function toBytes(latin1: string): Uint8Array {
  const out = new Uint8Array(latin1.length);
  for (let i = 0; i < latin1.length; i++) {
    const c = latin1.charCodeAt(i);
    if (c > 0xff) throw new Error(`case bytes must be latin-1, got U+${c.toString(16)} at ${i}`);
    out[i] = c;
  }
  return out;
}

function fromBytes(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

const H = "Host: h\r\n";
const POST_CHUNKED = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
const CHUNKED_HEAD = req({ method: "POST", headers: [["host", "h"], ["transfer-encoding", "chunked"]], chunked: true });
const chunked = (body: string): ExpectedRequest => ({ ...CHUNKED_HEAD, body });
const postCL = (n: number) => `POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${n}\r\n\r\n`;
const clReq = (body: string, headers?: [string, string][]) =>
  req({ method: "POST", headers: headers ?? [["host", "h"], ["content-length", String(body.length)]], contentLength: body.length, body });
const TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// ---------------------------------------------------------------------------
// Accept cases
// ---------------------------------------------------------------------------

const ACCEPT: Case[] = [
  // --- request line (RFC 9112 §3) ---
  { name: "RFC 9112 §3: simple GET", bytes: `GET / HTTP/1.1\r\n${H}\r\n`, expect: [req({})] },
  {
    name: "RFC 9112 §3.2.1: origin-form with query",
    bytes: `GET /search?q=a+b&x=%20 HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ target: "/search?q=a+b&x=%20", path: "/search", query: "q=a+b&x=%20" })],
  },
  {
    name: "RFC 9112 §3.2.1: '?' with empty query",
    bytes: `GET /a? HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ target: "/a?", path: "/a", query: "" })],
  },
  {
    name: "RFC 9112 §3.2.1: query splits at the first '?' only",
    bytes: `GET /a?b?c=/d HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ target: "/a?b?c=/d", path: "/a", query: "b?c=/d" })],
  },
  {
    name: "RFC 9112 §3.2.1: percent-encoded path stays raw",
    bytes: `GET /a%2Fb%20c HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ target: "/a%2Fb%20c", path: "/a%2Fb%20c" })],
  },
  {
    name: "RFC 9112 §3.2.1: every URI character allowed in path and query",
    bytes: `GET /a-._~!$&'()*+,;=:@/%41?q=/?:@-._~!$&'()*+,;= HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ target: "/a-._~!$&'()*+,;=:@/%41?q=/?:@-._~!$&'()*+,;=", path: "/a-._~!$&'()*+,;=:@/%41", query: "q=/?:@-._~!$&'()*+,;=" })],
  },
  {
    name: "RFC 9112 §3: 1000-byte target under the default limit",
    bytes: `GET /${"a".repeat(1000)} HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ target: `/${"a".repeat(1000)}` })],
  },
  {
    name: "RFC 9112 §3: method is a case-sensitive token (lowercase kept)",
    bytes: `get / HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ method: "get" })],
  },
  {
    name: "RFC 9110 §5.6.2: method made of every tchar",
    bytes: `${TCHARS} / HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ method: TCHARS })],
  },
  { name: "RFC 9112 §3: HEAD", bytes: `HEAD /x HTTP/1.1\r\n${H}\r\n`, expect: [req({ method: "HEAD", target: "/x" })] },
  { name: "RFC 9112 §3: DELETE", bytes: `DELETE /x/1 HTTP/1.1\r\n${H}\r\n`, expect: [req({ method: "DELETE", target: "/x/1" })] },
  {
    name: "RFC 9112 §3: PUT with a body",
    bytes: `PUT /f HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`,
    expect: [req({ method: "PUT", target: "/f", headers: [["host", "h"], ["content-length", "3"]], contentLength: 3, body: "abc" })],
  },
  {
    name: "RFC 9112 §3.2.4: OPTIONS * (asterisk-form)",
    bytes: `OPTIONS * HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ method: "OPTIONS", target: "*", path: "*", query: "" })],
  },
  {
    name: "RFC 9112 §3.2.1: OPTIONS with origin-form",
    bytes: `OPTIONS /x HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ method: "OPTIONS", target: "/x" })],
  },
  {
    name: "RFC 9112 §3.2.3: CONNECT with authority-form",
    bytes: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    expect: [req({ method: "CONNECT", target: "example.com:443", headers: [["host", "example.com:443"]], unchecked: ["path", "query"] })],
  },
  {
    name: "RFC 9112 §3.2.2: absolute-form, path and query extracted",
    bytes: "GET http://example.com/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    expect: [req({ target: "http://example.com/a/b?x=1", path: "/a/b", query: "x=1", headers: [["host", "example.com"]] })],
  },
  {
    name: "RFC 9112 §3.2.2: absolute-form without a path has path /",
    bytes: "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
    expect: [req({ target: "http://example.com", path: "/", query: "", headers: [["host", "example.com"]] })],
  },
  {
    name: "RFC 9112 §3.2.2: absolute-form with a query but no path",
    bytes: "GET http://example.com?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    expect: [req({ target: "http://example.com?x=1", path: "/", query: "x=1", headers: [["host", "example.com"]] })],
  },
  {
    name: "RFC 9112 §3.2.2: absolute-form https with a port",
    bytes: "GET https://example.com:8443/p?q HTTP/1.1\r\nHost: example.com:8443\r\n\r\n",
    expect: [req({ target: "https://example.com:8443/p?q", path: "/p", query: "q", headers: [["host", "example.com:8443"]] })],
  },
  {
    name: "RFC 9112 §3.2.2: absolute-form scheme is case-insensitive (RFC 3986 §3.1)",
    bytes: "GET HTTP://example.com/p HTTP/1.1\r\nHost: example.com\r\n\r\n",
    expect: [req({ target: "HTTP://example.com/p", path: "/p", headers: [["host", "example.com"]] })],
  },

  // --- versions and Connection (RFC 9112 §2.3, §9.3, §9.6) ---
  {
    name: "RFC 9112 §3.2: HTTP/1.0 without Host is accepted, not persistent",
    bytes: "GET / HTTP/1.0\r\n\r\n",
    expect: [req({ version: "HTTP/1.0", headers: [], keepAlive: false })],
  },
  {
    name: "RFC 9112 §9.3: HTTP/1.0 with Host, not persistent",
    bytes: `GET /x HTTP/1.0\r\n${H}\r\n`,
    expect: [req({ target: "/x", version: "HTTP/1.0", keepAlive: false })],
  },
  {
    name: "RFC 9112 §9.3: HTTP/1.0 Connection: keep-alive persists",
    bytes: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    expect: [req({ version: "HTTP/1.0", headers: [["connection", "keep-alive"]], keepAlive: true })],
  },
  {
    name: "RFC 9110 §7.6.1: HTTP/1.0 Connection tokens are case-insensitive (Keep-Alive)",
    bytes: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    expect: [req({ version: "HTTP/1.0", headers: [["connection", "Keep-Alive"]], keepAlive: true })],
  },
  {
    name: "RFC 9110 §7.6.1: HTTP/1.0 keep-alive inside a token list",
    bytes: "GET / HTTP/1.0\r\nConnection: foo,  keep-alive ,bar\r\n\r\n",
    expect: [req({ version: "HTTP/1.0", headers: [["connection", "foo,  keep-alive ,bar"]], keepAlive: true })],
  },
  {
    name: "RFC 9112 §9.6: HTTP/1.0 keep-alive and close: close wins",
    bytes: "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
    expect: [req({ version: "HTTP/1.0", headers: [["connection", "keep-alive, close"]], keepAlive: false })],
  },
  {
    name: "RFC 9112 §9.3: HTTP/1.0 keep-alive with a Content-Length body",
    bytes: "POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
    expect: [req({ method: "POST", version: "HTTP/1.0", headers: [["connection", "keep-alive"], ["content-length", "2"]], keepAlive: true, contentLength: 2, body: "hi" })],
  },
  {
    name: "RFC 9112 §9.6: HTTP/1.1 Connection: close",
    bytes: `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["connection", "close"]], keepAlive: false })],
  },
  {
    name: "RFC 9110 §7.6.1: HTTP/1.1 Connection: CLOSE (case-insensitive)",
    bytes: `GET / HTTP/1.1\r\n${H}Connection: CLOSE\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["connection", "CLOSE"]], keepAlive: false })],
  },
  {
    name: "RFC 9110 §7.6.1: HTTP/1.1 close inside a token list",
    bytes: `GET / HTTP/1.1\r\n${H}Connection: upgrade , close\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["connection", "upgrade , close"]], keepAlive: false })],
  },
  {
    name: "RFC 9112 §9.3: HTTP/1.1 Connection: keep-alive persists",
    bytes: `GET / HTTP/1.1\r\n${H}Connection: keep-alive\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["connection", "keep-alive"]], keepAlive: true })],
  },
  {
    name: "RFC 9110 §7.6.1: HTTP/1.1 'closed' is not the close token",
    bytes: `GET / HTTP/1.1\r\n${H}Connection: closed\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["connection", "closed"]], keepAlive: true })],
  },
  {
    name: "RFC 9110 §5.6.1: empty list elements in Connection are ignored",
    bytes: `GET / HTTP/1.1\r\n${H}Connection: ,, close ,\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["connection", ",, close ,"]], keepAlive: false })],
  },
  {
    name: "RFC 9110 §5.3: close in a second Connection field line",
    bytes: `GET / HTTP/1.1\r\n${H}Connection: foo\r\nConnection: close\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["connection", "foo"], ["connection", "close"]], keepAlive: false })],
  },

  // --- leading empty lines (RFC 9112 §2.2) ---
  { name: "RFC 9112 §2.2: one empty line before the request-line is ignored", bytes: `\r\nGET / HTTP/1.1\r\n${H}\r\n`, expect: [req({})] },
  { name: "RFC 9112 §2.2: several empty lines before the request-line are ignored", bytes: `\r\n\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`, expect: [req({})] },

  // --- field lines (RFC 9112 §5, RFC 9110 §5.5) ---
  {
    name: "RFC 9110 §5.5: HTAB inside a value is kept",
    bytes: `GET / HTTP/1.1\r\n${H}X-A: a\tb\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", "a\tb"]] })],
  },
  {
    name: "RFC 9112 §5: leading and trailing SP/HTAB trimmed from values",
    bytes: `GET / HTTP/1.1\r\n${H}X-A: \t a b \t \r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", "a b"]] })],
  },
  {
    name: "RFC 9112 §5: no whitespace after the colon",
    bytes: `GET / HTTP/1.1\r\n${H}X-A:v\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", "v"]] })],
  },
  {
    name: "RFC 9110 §5.5: empty value",
    bytes: `GET / HTTP/1.1\r\n${H}X-A:\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", ""]] })],
  },
  {
    name: "RFC 9112 §5: whitespace-only value becomes empty",
    bytes: `GET / HTTP/1.1\r\n${H}X-A: \t \r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", ""]] })],
  },
  {
    name: "RFC 9110 §5.5: obs-text bytes kept as latin-1",
    bytes: `GET / HTTP/1.1\r\n${H}X-A: caf\xe9 \x80\xff\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", "caf\xe9 \x80\xff"]] })],
  },
  {
    name: "RFC 9110 §5.5: whitespace inside a value is kept",
    bytes: `GET / HTTP/1.1\r\n${H}X-A: a  \t b\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", "a  \t b"]] })],
  },
  {
    name: "RFC 9110 §5.5: colons, quotes and commas inside a value",
    bytes: `GET / HTTP/1.1\r\n${H}X-A: a:b::c; "q,r"\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", 'a:b::c; "q,r"']] })],
  },
  {
    name: "RFC 9110 §5.1: names lower-cased, wire order and duplicates kept",
    bytes: `GET / HTTP/1.1\r\nX-Dup: 1\r\nHOST: h\r\nAccept: */*\r\nx-dup: 2\r\n\r\n`,
    expect: [req({ headers: [["x-dup", "1"], ["host", "h"], ["accept", "*/*"], ["x-dup", "2"]] })],
  },
  {
    name: "RFC 9110 §5.6.2: field name made of every tchar",
    bytes: `GET / HTTP/1.1\r\n${H}${TCHARS}: v\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], [TCHARS.toLowerCase(), "v"]] })],
  },
  {
    name: "RFC 9112 §5: 50 fields under the default limit",
    bytes: `GET / HTTP/1.1\r\n${H}${Array.from({ length: 49 }, (_, i) => `X-F${i}: ${i}\r\n`).join("")}\r\n`,
    expect: [req({ headers: [["host", "h"], ...Array.from({ length: 49 }, (_, i): [string, string] => [`x-f${i}`, String(i)])] })],
  },
  {
    name: "RFC 9112 §3.2: Host with a port",
    bytes: "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    expect: [req({ headers: [["host", "example.com:8080"]] })],
  },
  {
    name: "RFC 9112 §3.2: Host with an IPv6 literal",
    bytes: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    expect: [req({ headers: [["host", "[::1]:8080"]] })],
  },
  {
    name: "RFC 9112 §3.2 / RFC 3986 §3.2.3: Host with an empty port",
    bytes: "GET / HTTP/1.1\r\nHost: h:\r\n\r\n",
    expect: [req({ headers: [["host", "h:"]] })],
  },
  {
    name: "RFC 9112 §3.2: empty Host value is valid",
    bytes: "GET / HTTP/1.1\r\nHost:\r\n\r\n",
    expect: [req({ headers: [["host", ""]] })],
  },

  // --- Content-Length (RFC 9112 §6.2, RFC 9110 §8.6) ---
  { name: "RFC 9112 §6.2: Content-Length body", bytes: `${postCL(5)}hello`, expect: [clReq("hello")] },
  { name: "RFC 9112 §6.2: Content-Length: 0", bytes: postCL(0), expect: [clReq("")] },
  {
    name: "RFC 9110 §5.5: SP around a Content-Length value is trimmed",
    bytes: `POST / HTTP/1.1\r\n${H}Content-Length:  5  \r\n\r\nhello`,
    expect: [clReq("hello", [["host", "h"], ["content-length", "5"]])],
  },
  {
    name: "RFC 9110 §5.5: HTAB around a Content-Length value is trimmed",
    bytes: `POST / HTTP/1.1\r\n${H}Content-Length:\t5\t\r\n\r\nhello`,
    expect: [clReq("hello", [["host", "h"], ["content-length", "5"]])],
  },
  {
    name: "RFC 9110 §8.6: Content-Length with leading zeros",
    bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 005\r\n\r\nhello`,
    expect: [clReq("hello", [["host", "h"], ["content-length", "005"]])],
  },
  {
    name: "RFC 9110 §8.6: two identical Content-Length field lines",
    bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`,
    expect: [clReq("hello", [["host", "h"], ["content-length", "5"], ["content-length", "5"]])],
  },
  // RFC 9110 §5.3 makes two field lines and one list the same message, so both forms of the
  // same value repeated are taken as that value (RFC 9110 §8.6 allows it; h11 does the same).
  {
    name: "RFC 9110 §8.6: Content-Length list '5, 5' (the same value repeated)",
    bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello`,
    expect: [clReq("hello", [["host", "h"], ["content-length", "5, 5"]])],
  },
  {
    name: "RFC 9110 §8.6: Content-Length list '5,5' and a third line '5'",
    bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 5,5\r\nContent-Length: 5\r\n\r\nhello`,
    expect: [clReq("hello", [["host", "h"], ["content-length", "5,5"], ["content-length", "5"]])],
  },
  {
    name: "RFC 9112 §6.2: body bytes are opaque (CRLF, NUL, 0xff)",
    bytes: `${postCL(8)}\r\n\0\xff\r\n\r\n`,
    expect: [clReq("\r\n\0\xff\r\n\r\n")],
  },
  {
    name: "RFC 9112 §6.3: a body that looks like a request is not parsed as one",
    bytes: `${postCL(18)}GET / HTTP/1.1\r\n\r\n`,
    expect: [clReq("GET / HTTP/1.1\r\n\r\n")],
  },
  {
    name: "RFC 9112 §6.3: GET with a Content-Length body",
    bytes: `GET / HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nhi`,
    expect: [req({ headers: [["host", "h"], ["content-length", "2"]], contentLength: 2, body: "hi" })],
  },

  // --- Transfer-Encoding and chunked (RFC 9112 §6.1, §7) ---
  { name: "RFC 9112 §7.1: chunked body", bytes: `${POST_CHUNKED}5\r\nhello\r\n0\r\n\r\n`, expect: [chunked("hello")] },
  {
    name: "RFC 9112 §7: transfer-coding names are case-insensitive (Chunked)",
    bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    expect: [{ ...chunked("hello"), headers: [["host", "h"], ["transfer-encoding", "Chunked"]] }],
  },
  {
    name: "RFC 9112 §7: transfer-coding names are case-insensitive (CHUNKED)",
    bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n`,
    expect: [{ ...chunked(""), headers: [["host", "h"], ["transfer-encoding", "CHUNKED"]] }],
  },
  {
    name: "RFC 9110 §5.5: OWS around chunked is trimmed",
    bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: \t chunked \r\n\r\n0\r\n\r\n`,
    expect: [chunked("")],
  },
  {
    name: "RFC 9110 §5.6.1: empty list elements in Transfer-Encoding are ignored",
    bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: , chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    expect: [{ ...chunked("hello"), headers: [["host", "h"], ["transfer-encoding", ", chunked"]] }],
  },
  {
    name: "RFC 9112 §7.1: several chunks",
    bytes: `${POST_CHUNKED}5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n`,
    expect: [chunked("hello world")],
  },
  { name: "RFC 9112 §7.1: empty chunked body", bytes: `${POST_CHUNKED}0\r\n\r\n`, expect: [chunked("")] },
  {
    name: "RFC 9112 §7.1: uppercase hex chunk size",
    bytes: `${POST_CHUNKED}A\r\n0123456789\r\n0\r\n\r\n`,
    expect: [chunked("0123456789")],
  },
  {
    name: "RFC 9112 §7.1: lowercase hex chunk size",
    bytes: `${POST_CHUNKED}1f\r\n${"x".repeat(31)}\r\n0\r\n\r\n`,
    expect: [chunked("x".repeat(31))],
  },
  {
    name: "RFC 9112 §7.1: chunk size with leading zeros",
    bytes: `${POST_CHUNKED}0005\r\nhello\r\n000\r\n\r\n`,
    expect: [chunked("hello")],
  },
  {
    name: "RFC 9112 §7.1: chunk size of exactly 16 hex digits",
    bytes: `${POST_CHUNKED}0000000000000005\r\nhello\r\n0\r\n\r\n`,
    expect: [chunked("hello")],
  },
  {
    name: "RFC 9112 §7.1: last chunk written with 16 zeros",
    bytes: `${POST_CHUNKED}5\r\nhello\r\n0000000000000000\r\n\r\n`,
    expect: [chunked("hello")],
  },
  {
    name: "RFC 9112 §7.1: chunk data containing CRLF",
    bytes: `${POST_CHUNKED}4\r\n\r\n\r\n\r\n0\r\n\r\n`,
    expect: [chunked("\r\n\r\n")],
  },
  {
    name: "RFC 9112 §7.1: chunk data that looks like a last chunk",
    bytes: `${POST_CHUNKED}3\r\n0\r\n\r\n0\r\n\r\n`,
    expect: [chunked("0\r\n")],
  },
  {
    name: "RFC 9112 §7.1: chunk data with NUL and 0xff",
    bytes: `${POST_CHUNKED}3\r\n\0\xff\x80\r\n0\r\n\r\n`,
    expect: [chunked("\0\xff\x80")],
  },
  { name: "RFC 9112 §7.1.1: chunk extension ;a=b", bytes: `${POST_CHUNKED}5;a=b\r\nhello\r\n0\r\n\r\n`, expect: [chunked("hello")] },
  { name: "RFC 9112 §7.1.1: quoted chunk extension ;a=\"q\"", bytes: `${POST_CHUNKED}5;a="q"\r\nhello\r\n0\r\n\r\n`, expect: [chunked("hello")] },
  {
    name: "RFC 9112 §7.1.1: quoted extension with quoted-pair and separators",
    bytes: `${POST_CHUNKED}5;a="x\\"; y=z\t"\r\nhello\r\n0\r\n\r\n`,
    expect: [chunked("hello")],
  },
  { name: "RFC 9112 §7.1.1: extension name without value", bytes: `${POST_CHUNKED}5;a\r\nhello\r\n0\r\n\r\n`, expect: [chunked("hello")] },
  { name: "RFC 9112 §7.1.1: several extensions", bytes: `${POST_CHUNKED}5;a=b;c;d="e"\r\nhello\r\n0\r\n\r\n`, expect: [chunked("hello")] },
  { name: "RFC 9112 §7.1.1: BWS around ';' and '=' in extensions", bytes: `${POST_CHUNKED}5 ; a = b\r\nhello\r\n0\r\n\r\n`, expect: [chunked("hello")] },
  { name: "RFC 9112 §7.1.1: extension on the last chunk", bytes: `${POST_CHUNKED}5\r\nhello\r\n0;x=y\r\n\r\n`, expect: [chunked("hello")] },
  {
    name: "RFC 9112 §7.1.2: trailer field parsed and dropped",
    bytes: `${POST_CHUNKED}5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n`,
    expect: [chunked("hello")],
  },
  {
    name: "RFC 9112 §7.1.2: several trailer fields dropped",
    bytes: `${POST_CHUNKED}0\r\nX-T: 1\r\nX-U:\r\nHost: other\r\n\r\n`,
    expect: [chunked("")],
  },

  // --- Expect (RFC 9110 §10.1.1) ---
  {
    name: "RFC 9110 §10.1.1: Expect: 100-continue",
    bytes: `POST / HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello`,
    expect: [clReq("hello", [["host", "h"], ["expect", "100-continue"], ["content-length", "5"]])].map((r) => ({ ...r, expectContinue: true })),
  },
  {
    name: "RFC 9110 §10.1.1: 100-continue is case-insensitive",
    bytes: `POST / HTTP/1.1\r\n${H}Expect: 100-Continue\r\nContent-Length: 5\r\n\r\nhello`,
    expect: [clReq("hello", [["host", "h"], ["expect", "100-Continue"], ["content-length", "5"]])].map((r) => ({ ...r, expectContinue: true })),
  },
  {
    name: "RFC 9110 §10.1.1: 100-continue with a chunked body",
    bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    expect: [{ ...chunked("hello"), headers: [["host", "h"], ["transfer-encoding", "chunked"], ["expect", "100-continue"]], expectContinue: true }],
  },
  {
    name: "RFC 9110 §10.1.1: 100-continue in an HTTP/1.0 request is ignored",
    bytes: "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    expect: [req({ method: "POST", version: "HTTP/1.0", headers: [["expect", "100-continue"], ["content-length", "5"]], contentLength: 5, body: "hello", expectContinue: false })],
  },

  // --- pipelining (RFC 9112 §9.3.2) ---
  {
    name: "RFC 9112 §9.3.2: two pipelined GETs",
    bytes: `GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ target: "/1" }), req({ target: "/2" })],
  },
  {
    name: "RFC 9112 §9.3.2: Content-Length, chunked and bodiless requests pipelined",
    bytes: `${postCL(5)}hello${POST_CHUNKED}3\r\nabc\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n${H}\r\n`,
    expect: [clReq("hello"), chunked("abc"), req({ target: "/3" })],
  },
  {
    name: "RFC 9112 §2.2: empty line between pipelined requests is ignored",
    bytes: `${postCL(2)}hi\r\nGET /2 HTTP/1.1\r\n${H}\r\n`,
    expect: [clReq("hi"), req({ target: "/2" })],
  },

  // --- limits at or under the configured values ---
  {
    name: "limits: request line under maxRequestLineBytes (414 limit)",
    limits: { maxRequestLineBytes: 40 },
    bytes: `GET /abcdefghij HTTP/1.1\r\n${H}\r\n`,
    expect: [req({ target: "/abcdefghij" })],
  },
  {
    name: "limits: exactly maxHeaderFields fields (431 limit)",
    limits: { maxHeaderFields: 3 },
    bytes: `GET / HTTP/1.1\r\n${H}X-A: 1\r\nX-B: 2\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", "1"], ["x-b", "2"]] })],
  },
  {
    name: "limits: field line under maxHeaderFieldBytes (431 limit)",
    limits: { maxHeaderFieldBytes: 40 },
    bytes: `GET / HTTP/1.1\r\n${H}X-A: ${"v".repeat(20)}\r\n\r\n`,
    expect: [req({ headers: [["host", "h"], ["x-a", "v".repeat(20)]] })],
  },
  {
    name: "limits: Content-Length equal to maxBodyBytes (413 limit)",
    limits: { maxBodyBytes: 10 },
    bytes: `${postCL(10)}0123456789`,
    expect: [clReq("0123456789")],
  },
  {
    name: "limits: chunked body equal to maxBodyBytes (413 limit)",
    limits: { maxBodyBytes: 10 },
    bytes: `${POST_CHUNKED}5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n`,
    expect: [chunked("helloworld")],
  },
];

// ---------------------------------------------------------------------------
// Reject cases
// ---------------------------------------------------------------------------

const BAD_REQUEST = reject(400);
const afterHead = (status: number) => reject(status, { isAfterHead: true });
const withHost = (line: string) => `${line}\r\n${H}\r\n`;
const withField = (field: string) => `GET / HTTP/1.1\r\n${H}${field}\r\n\r\n`;
const withCL = (value: string) => `POST / HTTP/1.1\r\n${H}Content-Length: ${value}\r\n\r\nhello`;
const withTE = (value: string) => `POST / HTTP/1.1\r\n${H}Transfer-Encoding: ${value}\r\n\r\n5\r\nhello\r\n0\r\n\r\n`;

const REJECT: Case[] = [
  // --- request line (RFC 9112 §3) ---
  { name: "RFC 9112 §3: two spaces after the method", bytes: withHost("GET  / HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: two spaces before the version", bytes: withHost("GET /  HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: space before the method", bytes: withHost(" GET / HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: HTAB as separator (strict)", bytes: withHost("GET\t/\tHTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: space in the target", bytes: withHost("GET /a b HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: missing version", bytes: withHost("GET /"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: empty version after a space", bytes: withHost("GET / "), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: method only", bytes: withHost("GET"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: missing target", bytes: withHost("GET HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: trailing space after the version", bytes: withHost("GET / HTTP/1.1 "), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3: lowercase http/1.1 (HTTP-name is case-sensitive)", bytes: withHost("GET / http/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3: mixed-case Http/1.1", bytes: withHost("GET / Http/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3: HTTPS/1.1 is not an HTTP-version", bytes: withHost("GET / HTTPS/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3: HTTP/1.10 (two minor digits) is malformed", bytes: withHost("GET / HTTP/1.10"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3: HTTP/01.1 (two major digits) is malformed", bytes: withHost("GET / HTTP/01.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3: HTTP/1 without minor is malformed", bytes: withHost("GET / HTTP/1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3: HTTP/11 without dot is malformed", bytes: withHost("GET / HTTP/11"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3: HTTP/a.b is malformed", bytes: withHost("GET / HTTP/a.b"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3: HTTP/1.1x is malformed", bytes: withHost("GET / HTTP/1.1x"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.3 / RFC 9110 §15.6.6: HTTP/2.0 is unsupported (505)", bytes: withHost("GET / HTTP/2.0"), expect: reject(505) },
  { name: "RFC 9110 §15.6.6: HTTP/0.9 written as a version is unsupported (505)", bytes: withHost("GET / HTTP/0.9"), expect: reject(505) },
  { name: "RFC 9110 §15.6.6: HTTP/1.2 is unsupported (505)", bytes: withHost("GET / HTTP/1.2"), expect: reject(505) },
  { name: "RFC 9110 §15.6.6: HTTP/3.0 is unsupported (505)", bytes: withHost("GET / HTTP/3.0"), expect: reject(505) },
  { name: "RFC 9110 §15.6.6: HTTP/9.9 is unsupported (505)", bytes: withHost("GET / HTTP/9.9"), expect: reject(505) },
  { name: "RFC 9110 §5.6.2: method with '(' is not a token", bytes: withHost("G(T / HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.6.2: method with '@' is not a token", bytes: withHost("GET@ / HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.6.2: method with a 0x80 byte is not a token", bytes: withHost("G\x80T / HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.6.2: method with NUL is not a token", bytes: withHost("G\0T / HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2.4: '*' target with GET", bytes: withHost("GET * HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2.4: '*x' is not asterisk-form", bytes: withHost("OPTIONS *x HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2.3: authority-form with GET", bytes: withHost("GET example.com:80 HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2.3: CONNECT with origin-form", bytes: withHost("CONNECT / HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2.3: CONNECT authority-form without a port", bytes: withHost("CONNECT example.com HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: target in no form (no leading '/')", bytes: withHost("GET foo HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: NUL in the target", bytes: withHost("GET /a\0b HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: DEL in the target", bytes: withHost("GET /a\x7fb HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: HTAB in the target", bytes: withHost("GET /a\tb HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: raw 0x80+ bytes in the target (strict)", bytes: withHost("GET /caf\xe9 HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2.1: fragment in the target (strict)", bytes: withHost("GET /a#frag HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9110 §4.2.4: userinfo in an absolute-form target (strict)", bytes: withHost("GET http://u:p@h/ HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: target starting with '?'", bytes: withHost("GET ?a HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9110 §4.2.1: absolute-form http URI with an empty host", bytes: withHost("GET http:///a HTTP/1.1"), expect: BAD_REQUEST },
  { name: "RFC 9112 §3: no space between target and version", bytes: withHost("GET /HTTP/1.1"), expect: BAD_REQUEST },

  // --- line endings (RFC 9112 §2.2) ---
  { name: "RFC 9112 §2.2: bare LF ends the request line", bytes: `GET / HTTP/1.1\n${H}\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: bare CR inside the request line", bytes: `GET / HTTP/1.1\r\r\n${H}\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: bare CR ends the request line", bytes: `GET / HTTP/1.1\rHost: h\r\n\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: bare LF as leading empty line", bytes: `\nGET / HTTP/1.1\r\n${H}\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: bare CR as leading empty line", bytes: `\rGET / HTTP/1.1\r\n${H}\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: CR CR LF as leading empty line", bytes: `\r\r\nGET / HTTP/1.1\r\n${H}\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: whitespace-only line before the request-line", bytes: ` \r\nGET / HTTP/1.1\r\n${H}\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: bare LF ends a field line", bytes: `GET / HTTP/1.1\r\nHost: h\nX-A: v\r\n\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: bare LF as the final empty line", bytes: `GET / HTTP/1.1\r\n${H}\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: bare CR as the final empty line", bytes: `GET / HTTP/1.1\r\n${H}\rX`, expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: bare CR inside a value", bytes: withField("X-A: a\rb"), expect: BAD_REQUEST },
  { name: "RFC 9112 §2.2: whitespace between the start-line and the first field (strict)", bytes: `GET / HTTP/1.1\r\n X-A: v\r\n${H}\r\n`, expect: BAD_REQUEST },

  // --- field lines (RFC 9112 §5, RFC 9110 §5.5) ---
  { name: "RFC 9112 §5.2: obs-fold with SP (strict)", bytes: `GET / HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §5.2: obs-fold with HTAB (strict)", bytes: `GET / HTTP/1.1\r\n${H}X-A: a\r\n\tb\r\n\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §5.1: SP between name and colon", bytes: withField("X-A : v"), expect: BAD_REQUEST },
  { name: "RFC 9112 §5.1: HTAB between name and colon", bytes: withField("X-A\t: v"), expect: BAD_REQUEST },
  { name: "RFC 9112 §5.1: SP before colon on Host", bytes: "GET / HTTP/1.1\r\nHost : h\r\n\r\n", expect: BAD_REQUEST },
  { name: "RFC 9110 §5.6.2: space inside a field name", bytes: withField("X A: v"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.6.2: '(' in a field name", bytes: withField("X(: v"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.6.2: '/' in a field name", bytes: withField("X/A: v"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.6.2: '\"' in a field name", bytes: withField('X"A: v'), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.6.2: 0x80 byte in a field name", bytes: withField("X\x80A: v"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.6.2: NUL in a field name", bytes: withField("X\0A: v"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.1: empty field name", bytes: withField(": v"), expect: BAD_REQUEST },
  { name: "RFC 9112 §5: field line without a colon", bytes: withField("X-A v"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.5: NUL in a value", bytes: withField("X-A: a\0b"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.5: 0x01 in a value", bytes: withField("X-A: a\x01b"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.5: 0x1f in a value", bytes: withField("X-A: a\x1fb"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.5: DEL in a value", bytes: withField("X-A: a\x7fb"), expect: BAD_REQUEST },
  { name: "RFC 9110 §5.5: trailing NUL in a value", bytes: withField("X-A: v\0"), expect: BAD_REQUEST },

  // --- Host (RFC 9112 §3.2) ---
  { name: "RFC 9112 §3.2: HTTP/1.1 without Host", bytes: "GET / HTTP/1.1\r\nX-A: v\r\n\r\n", expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: two Host field lines", bytes: `GET / HTTP/1.1\r\n${H}Host: h\r\n\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: two different Host field lines on HTTP/1.0", bytes: "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: Host with a space is invalid", bytes: "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: Host with a non-numeric port is invalid", bytes: "GET / HTTP/1.1\r\nHost: h:x\r\n\r\n", expect: BAD_REQUEST },
  { name: "RFC 9112 §3.2: Host with a '/' is invalid", bytes: "GET / HTTP/1.1\r\nHost: h/p\r\n\r\n", expect: BAD_REQUEST },

  // --- Content-Length (RFC 9112 §6.3, RFC 9110 §8.6) ---
  { name: "RFC 9110 §8.6: Content-Length +5", bytes: withCL("+5"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length -1", bytes: withCL("-1"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length 0x5", bytes: withCL("0x5"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length '5 5'", bytes: withCL("5 5"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length '5\\t5'", bytes: withCL("5\t5"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length list '5, 6'", bytes: withCL("5, 6"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length list '5,' (empty element, strict)", bytes: withCL("5,"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length list ', 5' (empty element, strict)", bytes: withCL(", 5"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length list '5,,5' (empty element, strict)", bytes: withCL("5,,5"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length list '5, +5'", bytes: withCL("5, +5"), expect: BAD_REQUEST },
  { name: "RFC 9112 §6.3: Content-Length '5' then a line '5, 6'", bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5, 6\r\n\r\nhello!`, expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: empty Content-Length", bytes: withCL(""), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length 'abc'", bytes: withCL("abc"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length 5.0", bytes: withCL("5.0"), expect: BAD_REQUEST },
  { name: "RFC 9110 §8.6: Content-Length 1e3", bytes: withCL("1e3"), expect: BAD_REQUEST },
  { name: "RFC 9112 §6.3: two different Content-Length field lines", bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, expect: BAD_REQUEST },
  { name: "RFC 9112 §6.3: Content-Length with 16 digits overflows (400)", bytes: withCL("1000000000000000"), expect: BAD_REQUEST },
  { name: "RFC 9112 §6.3: Content-Length with 20 digits overflows (400)", bytes: withCL("18446744073709551621"), expect: BAD_REQUEST },
  { name: "RFC 9110 §15.5.14: 15-digit Content-Length over the default body limit (413)", bytes: withCL("999999999999999"), expect: reject(413) },

  // --- Transfer-Encoding (RFC 9112 §6.1, §6.3) ---
  { name: "RFC 9110 §5.5: vertical tab after chunked (CTL in value)", bytes: withTE("chunked\x0b"), expect: BAD_REQUEST },
  { name: "RFC 9112 §6.1: gzip, chunked is not supported (501)", bytes: withTE("gzip, chunked"), expect: reject(501) },
  { name: "RFC 9112 §6.3: chunked, gzip (chunked not final: 400)", bytes: withTE("chunked, gzip"), expect: BAD_REQUEST },
  { name: "RFC 9112 §6.3: gzip alone (chunked not final: 400)", bytes: withTE("gzip"), expect: BAD_REQUEST },
  { name: "RFC 9112 §6.3: chunked then gzip on two field lines (chunked not final: 400)", bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §6.1: chunked, chunked (chunked twice is invalid framing)", bytes: withTE("chunked, chunked"), expect: BAD_REQUEST },
  { name: "RFC 9112 §6.1: chunked on two field lines (chunked twice)", bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §6.1: gzip, chunked, chunked (chunked twice)", bytes: withTE("gzip, chunked, chunked"), expect: BAD_REQUEST },
  { name: "RFC 9112 §6.3: identity alone (chunked not final: 400)", bytes: withTE("identity"), expect: BAD_REQUEST },
  { name: "RFC 9112 §6.1: identity, chunked is not supported (501)", bytes: withTE("identity, chunked"), expect: reject(501) },
  { name: "RFC 9112 §6.1: gzip and chunked on two field lines (501)", bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, expect: reject(501) },
  { name: "RFC 9112 §6.3: Transfer-Encoding and Content-Length (strict)", bytes: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §6.3: Content-Length then Transfer-Encoding (strict)", bytes: `POST / HTTP/1.1\r\n${H}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, expect: BAD_REQUEST },
  { name: "RFC 9112 §6.1: Transfer-Encoding on HTTP/1.0", bytes: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", expect: BAD_REQUEST },
  { name: "RFC 9112 §6.1: Transfer-Encoding on HTTP/1.0 with Content-Length", bytes: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", expect: BAD_REQUEST },

  // --- chunked body (RFC 9112 §7.1) ---
  { name: "RFC 9112 §7.1: chunk size 0x5", bytes: `${POST_CHUNKED}0x5\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: chunk size +5", bytes: `${POST_CHUNKED}+5\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: chunk size -5", bytes: `${POST_CHUNKED}-5\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: space before the chunk size", bytes: `${POST_CHUNKED} 5\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: space after the chunk size (no extension)", bytes: `${POST_CHUNKED}5 \r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: empty chunk size line", bytes: `${POST_CHUNKED}\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: non-hex chunk size", bytes: `${POST_CHUNKED}g\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: chunk size with 17 hex digits", bytes: `${POST_CHUNKED}00000000000000005\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: chunk size line ends with bare LF", bytes: `${POST_CHUNKED}5\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: data not followed by CRLF", bytes: `${POST_CHUNKED}5\r\nhelloX0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: data followed by bare LF", bytes: `${POST_CHUNKED}5\r\nhello\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: data followed by bare CR", bytes: `${POST_CHUNKED}5\r\nhello\r0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: data longer than the chunk size", bytes: `${POST_CHUNKED}3\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: last chunk line ends with bare LF", bytes: `${POST_CHUNKED}0\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.1: empty extension name", bytes: `${POST_CHUNKED}5;\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.1: empty extension value", bytes: `${POST_CHUNKED}5;a=\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.1: unterminated quoted extension", bytes: `${POST_CHUNKED}5;a="q\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.1: space inside an extension name", bytes: `${POST_CHUNKED}5;a b\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.1: extension without a name", bytes: `${POST_CHUNKED}5;=b\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.1: junk after an extension value", bytes: `${POST_CHUNKED}5;a=b c\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.1: NUL in an extension", bytes: `${POST_CHUNKED}5;a=\0\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.1: CTL inside a quoted extension", bytes: `${POST_CHUNKED}5;a="\x01"\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.1: '/' in an unquoted extension value", bytes: `${POST_CHUNKED}5;a=b/c\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1: vertical tab after the chunk size", bytes: `${POST_CHUNKED}5\x0b\r\nhello\r\n0\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.2: trailer line without a colon", bytes: `${POST_CHUNKED}0\r\nbad trailer\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.2: trailer with SP before the colon", bytes: `${POST_CHUNKED}0\r\nX-T : 1\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.2: trailer with NUL in the value", bytes: `${POST_CHUNKED}0\r\nX-T: a\0b\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.2: trailer with obs-fold (strict)", bytes: `${POST_CHUNKED}0\r\nX-T: a\r\n b\r\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.2: trailer line ending with bare LF", bytes: `${POST_CHUNKED}0\r\nX-T: 1\n\r\n`, expect: afterHead(400) },
  { name: "RFC 9112 §7.1.2: trailer section ending with bare LF", bytes: `${POST_CHUNKED}0\r\nX-T: 1\r\n\n`, expect: afterHead(400) },

  // --- Expect (RFC 9110 §10.1.1) ---
  { name: "RFC 9110 §10.1.1: Expect: foo (417)", bytes: `POST / HTTP/1.1\r\n${H}Expect: foo\r\nContent-Length: 5\r\n\r\nhello`, expect: reject(417) },
  { name: "RFC 9110 §10.1.1: Expect: 100-continuex (417)", bytes: `POST / HTTP/1.1\r\n${H}Expect: 100-continuex\r\nContent-Length: 5\r\n\r\nhello`, expect: reject(417) },
  { name: "RFC 9110 §10.1.1: Expect: 200-ok (417)", bytes: `POST / HTTP/1.1\r\n${H}Expect: 200-ok\r\nContent-Length: 5\r\n\r\nhello`, expect: reject(417) },
  { name: "RFC 9110 §10.1.1: Expect with an extra member (417, strict)", bytes: `POST / HTTP/1.1\r\n${H}Expect: 100-continue, foo\r\nContent-Length: 5\r\n\r\nhello`, expect: reject(417) },

  // --- limits ---
  {
    name: "limits: request line over maxRequestLineBytes (414)",
    limits: { maxRequestLineBytes: 32 },
    bytes: withHost(`GET /${"a".repeat(60)} HTTP/1.1`),
    expect: reject(414),
  },
  {
    name: "limits: unterminated request line over maxRequestLineBytes (414 without CRLF)",
    limits: { maxRequestLineBytes: 32 },
    bytes: `GET /${"a".repeat(100)}`,
    expect: reject(414),
  },
  {
    name: "limits: more than maxHeaderFields fields (431)",
    limits: { maxHeaderFields: 3 },
    bytes: `GET / HTTP/1.1\r\n${H}X-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n`,
    expect: reject(431),
  },
  {
    name: "limits: field line over maxHeaderFieldBytes (431)",
    limits: { maxHeaderFieldBytes: 32 },
    bytes: withField(`X-Long: ${"v".repeat(60)}`),
    expect: reject(431),
  },
  {
    name: "limits: unterminated field line over maxHeaderFieldBytes (431 without CRLF)",
    limits: { maxHeaderFieldBytes: 32 },
    bytes: `GET / HTTP/1.1\r\n${H}X-Long: ${"v".repeat(100)}`,
    expect: reject(431),
  },
  {
    name: "limits: trailer field line over maxHeaderFieldBytes (431, our policy)",
    limits: { maxHeaderFieldBytes: 32 },
    bytes: `${POST_CHUNKED}0\r\nX-T: ${"v".repeat(60)}\r\n\r\n`,
    expect: afterHead(431),
  },
  {
    name: "limits: Content-Length over maxBodyBytes, decided from the head (413)",
    limits: { maxBodyBytes: 10 },
    bytes: postCL(11),
    expect: reject(413),
  },
  {
    name: "limits: one chunk over maxBodyBytes (413)",
    limits: { maxBodyBytes: 10 },
    bytes: `${POST_CHUNKED}b\r\nhello world\r\n0\r\n\r\n`,
    expect: afterHead(413),
  },
  {
    name: "limits: chunks summing over maxBodyBytes (413)",
    limits: { maxBodyBytes: 10 },
    bytes: `${POST_CHUNKED}6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n`,
    expect: afterHead(413),
  },
  {
    name: "limits: huge declared chunk size over maxBodyBytes (413)",
    limits: { maxBodyBytes: 10 },
    bytes: `${POST_CHUNKED}ffff\r\n${"a".repeat(11)}`,
    expect: afterHead(413),
  },

  // --- errors after earlier pipelined requests (RFC 9112 §9.3.2) ---
  {
    name: "RFC 9112 §9.3.2: valid request, then a malformed one",
    bytes: `GET /1 HTTP/1.1\r\n${H}\r\nGET / HTTP/1.1\r\nX-A : v\r\n${H}\r\n`,
    expect: reject(400, { before: [req({ target: "/1" })] }),
  },
  {
    name: "RFC 9112 §6.3: bytes after a Content-Length body parse as the next request",
    bytes: `${postCL(3)}hello\r\n\r\n`,
    expect: reject(400, { before: [clReq("hel")] }),
  },
  {
    name: "RFC 9112 §9.3.2: valid chunked request, then an unsupported version",
    bytes: `${POST_CHUNKED}0\r\n\r\nGET / HTTP/2.0\r\n${H}\r\n`,
    expect: reject(505, { before: [chunked("")] }),
  },
];

// ---------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------

const HEAD_FIELDS = ["method", "target", "path", "query", "version", "headers", "contentLength", "chunked", "keepAlive", "expectContinue"] as const;
const ERROR_STATUSES = new Set([400, 413, 414, 417, 431, 501, 505]);
const PIPELINED_TAIL = "GET /next HTTP/1.1\r\nHost: n\r\n\r\n";
const PIPELINED_HEAD = req({ target: "/next", headers: [["host", "n"]] });

interface Message {
  head: Record<string, unknown>;
  body: string;
  isEnded: boolean;
}

/** Feeds a parser and records what it reports, checking the event order as it goes. */
class Recorder {
  readonly parser: RequestParser;
  readonly messages: Message[] = [];
  readonly violations: string[] = [];
  error: { status: number; code: string } | null = null;
  #bodyParts: string[] = [];

  constructor(limits?: Partial<ParserLimits>) {
    this.parser = new RequestParser(limits);
  }

  get endedCount(): number {
    return this.messages.filter((m) => m.isEnded).length;
  }

  feed(bytes: Uint8Array): void {
    this.parser.feed(bytes);
    this.drain();
  }

  /** Calls next() until need-more or an error; after an error, checks the error repeats. */
  drain(): void {
    const maxEvents = 10_000 + this.parser.bufferedBytes * 4;
    for (let i = 0; i < maxEvents; i++) {
      const ev: ParseEvent = this.parser.next();
      if (this.error) {
        if (ev.kind !== "error" || ev.status !== this.error.status || ev.code !== this.error.code) {
          this.violations.push(`after error ${this.error.status}, next() gave ${showEvent(ev)}`);
        }
        return;
      }
      if (!this.#record(ev)) return;
    }
    this.violations.push(`next() did not reach need-more within ${maxEvents} calls`);
  }

  /** Records one event; false when the drain loop must stop. */
  #record(ev: ParseEvent): boolean {
    const current = this.messages.at(-1);
    const isInMessage = current !== undefined && !current.isEnded;
    switch (ev.kind) {
      case "need-more":
        return false;
      case "head":
        if (isInMessage) this.violations.push("head while a message is open");
        this.messages.push({ head: pickHead(ev.head), body: "", isEnded: false });
        this.#bodyParts = [];
        return true;
      case "body":
        if (!isInMessage) this.violations.push("body outside a message");
        else this.#bodyParts.push(fromBytes(ev.data));
        return true;
      case "end":
        if (!isInMessage) this.violations.push("end outside a message");
        else {
          current.body = this.#bodyParts.join("");
          current.isEnded = true;
        }
        return true;
      case "error":
        if (!ERROR_STATUSES.has(ev.status)) this.violations.push(`unexpected error status ${ev.status}`);
        if (typeof ev.code !== "string" || typeof ev.message !== "string") this.violations.push("error without code/message strings");
        this.error = { status: ev.status, code: ev.code };
        // RFC-independent contract: the same error again, before and after more bytes.
        this.drain();
        this.parser.feed(toBytes(PIPELINED_TAIL));
        this.drain();
        return false;
      default:
        this.violations.push(`unknown event ${showEvent(ev)}`);
        return false;
    }
  }
}

function showEvent(ev: unknown): string {
  return JSON.stringify(ev, (_k, v) => (v instanceof Uint8Array ? fromBytes(v) : v));
}

function pickHead(head: RequestHead): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of HEAD_FIELDS) out[k] = head[k];
  return out;
}

function expectedMessage(r: ExpectedRequest, actual?: Message): Message {
  const head: Record<string, unknown> = {};
  for (const k of HEAD_FIELDS) head[k] = r.unchecked?.includes(k) && actual ? actual.head[k] : r[k];
  return { head, body: r.body, isEnded: true };
}

type Feeding = { mode: string; pieces: Uint8Array[] };

function feedings(bytes: Uint8Array): Feeding[] {
  const out: Feeding[] = [{ mode: "whole", pieces: [bytes] }];
  out.push({ mode: "byte by byte", pieces: Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1)) });
  for (let k = 0; k <= bytes.length; k++) out.push({ mode: `split at ${k}`, pieces: [bytes.subarray(0, k), bytes.subarray(k)] });
  return out;
}

/** What a run produced, in the shape compared against the expectation. */
function summarize(rec: Recorder, mode: string, isReject: boolean) {
  return {
    mode,
    // for a rejected request the body seen before the error depends on the split; only its head is compared
    messages: rec.messages.map((m) => (isReject && !m.isEnded ? { ...m, body: "<partial>" } : m)),
    error: rec.error ? rec.error.status : null,
    violations: rec.violations,
  };
}

function expectedSummary(c: Case, rec: Recorder, mode: string, extra: ExpectedRequest[]) {
  if (Array.isArray(c.expect)) {
    const all = [...c.expect, ...extra];
    return { mode, messages: all.map((r, i) => expectedMessage(r, rec.messages[i])), error: null, violations: [] };
  }
  const before = (c.expect.before ?? []).map((r, i) => expectedMessage(r, rec.messages[i]));
  // The failing request's head (if any) is checked only for presence.
  const failing = c.expect.isAfterHead ? [{ head: rec.messages[before.length]?.head ?? "<missing head>", body: "<partial>", isEnded: false }] : [];
  return { mode, messages: [...before, ...failing], error: c.expect.status, violations: [] };
}

function runCase(c: Case): void {
  const isReject = !Array.isArray(c.expect);
  const bytes = toBytes(c.bytes);
  const total = isReject ? 0 : (c.expect as ExpectedRequest[]).length;

  for (const { mode, pieces } of feedings(bytes)) {
    const rec = new Recorder(c.limits);
    let fed = 0;
    for (const piece of pieces) {
      rec.feed(piece);
      fed += piece.length;
      // need-more until enough bytes: the last request ends only with the last byte
      if (!isReject && fed < bytes.length && rec.endedCount >= total) {
        rec.violations.push(`all ${total} request(s) ended after ${fed} of ${bytes.length} bytes`);
      }
    }
    if (!isReject && mode === "whole" && rec.parser.bufferedBytes !== 0) rec.violations.push(`bufferedBytes ${rec.parser.bufferedBytes} after a complete parse`);
    expect(summarize(rec, mode, isReject)).toEqual(expectedSummary(c, rec, mode, []));
  }

  // Every byte fed as its own buffer before the first next(): the parser holds them
  // queued and must join them exactly as if they had come in one piece.
  const queued = new Recorder(c.limits);
  for (let i = 0; i < bytes.length; i++) queued.parser.feed(bytes.subarray(i, i + 1));
  if (queued.parser.bufferedBytes !== bytes.length) queued.violations.push(`bufferedBytes ${queued.parser.bufferedBytes} of ${bytes.length} fed`);
  queued.drain();
  if (!isReject && queued.parser.bufferedBytes !== 0) queued.violations.push(`bufferedBytes ${queued.parser.bufferedBytes} after a complete parse`);
  expect(summarize(queued, "fed byte by byte, read once", isReject)).toEqual(expectedSummary(c, queued, "fed byte by byte, read once", []));

  // (d) followed by a pipelined request: accepted cases parse it too, rejected ones stay rejected.
  const tailed = new Uint8Array([...bytes, ...toBytes(PIPELINED_TAIL)]);
  for (const { mode, pieces } of feedings(tailed).slice(0, 2)) {
    const rec = new Recorder(c.limits);
    for (const piece of pieces) rec.feed(piece);
    const label = `pipelined, ${mode}`;
    expect(summarize(rec, label, isReject)).toEqual(expectedSummary(c, rec, label, isReject ? [] : [PIPELINED_HEAD]));
  }
}

describe("RequestParser accepts", () => {
  for (const c of ACCEPT) test(c.name, () => runCase(c));
});

describe("RequestParser rejects", () => {
  for (const c of REJECT) test(`${c.name} -> ${(c.expect as Rejection).status}`, () => runCase(c));
});

describe("RequestParser contract", () => {
  test("case list has at least as many rejections as acceptances", () => {
    expect(REJECT.length).toBeGreaterThanOrEqual(ACCEPT.length);
  });

  test("a fresh parser needs more and buffers nothing", () => {
    const p = new RequestParser();
    expect(p.next()).toEqual({ kind: "need-more" });
    expect(p.bufferedBytes).toBe(0);
  });

  test("a partial head is need-more; bufferedBytes never exceeds what was fed", () => {
    const p = new RequestParser();
    const partial = toBytes("GET / HTTP/1.1\r\nHost: h");
    p.feed(partial);
    expect(p.next()).toEqual({ kind: "need-more" });
    expect(p.next()).toEqual({ kind: "need-more" });
    expect(p.bufferedBytes).toBeGreaterThanOrEqual(0);
    expect(p.bufferedBytes).toBeLessThanOrEqual(partial.length);
    p.feed(toBytes("\r\n\r\n"));
    expect(p.next().kind).toBe("head");
    expect(p.next()).toEqual({ kind: "end" });
    expect(p.next()).toEqual({ kind: "need-more" });
    expect(p.bufferedBytes).toBe(0);
  });

  test("feed copies: reusing the caller's buffer after feed does not change the parse", () => {
    const p = new RequestParser();
    const wire = toBytes(`POST /x HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`);
    const scratch = new Uint8Array(7);
    const seen = { head: "", body: "", ends: 0, errors: 0 };
    for (let off = 0; off < wire.length; off += scratch.length) {
      const n = Math.min(scratch.length, wire.length - off);
      scratch.set(wire.subarray(off, off + n));
      p.feed(scratch.subarray(0, n));
      for (let ev = p.next(); ev.kind !== "need-more"; ev = p.next()) {
        if (ev.kind === "error") {
          seen.errors++;
          break;
        }
        if (ev.kind === "head") seen.head = `${ev.head.method} ${ev.head.target} ${ev.head.contentLength}`;
        if (ev.kind === "body") seen.body += fromBytes(ev.data);
        if (ev.kind === "end") seen.ends++;
      }
      scratch.fill(0x58); // 'X': the parser must not read the caller's buffer after feed returns
    }
    expect(seen).toEqual({ head: "POST /x 5", body: "hello", ends: 1, errors: 0 });
  });

  test("an endless chunk extension is rejected, not buffered forever", () => {
    const p = new RequestParser();
    p.feed(toBytes(`${POST_CHUNKED}5;a=`));
    expect(p.next().kind).toBe("head");
    let last: ParseEvent = p.next();
    for (let i = 0; i < 1024 && last.kind !== "error"; i++) {
      p.feed(toBytes("b".repeat(1024)));
      last = p.next();
      while (last.kind === "body") last = p.next();
    }
    expect(last.kind).toBe("error");
    if (last.kind === "error") expect([400, 413, 431]).toContain(last.status);
  });

  test("an endless trailer line is rejected, not buffered forever", () => {
    const p = new RequestParser();
    p.feed(toBytes(`${POST_CHUNKED}0\r\nX-T: `));
    expect(p.next().kind).toBe("head");
    let last: ParseEvent = p.next();
    for (let i = 0; i < 1024 && last.kind !== "error"; i++) {
      p.feed(toBytes("v".repeat(1024)));
      last = p.next();
    }
    expect(last.kind).toBe("error");
    if (last.kind === "error") expect([400, 431]).toContain(last.status);
  });

  test("RFC 9112 §2.2: an endless run of empty lines is consumed, not buffered", () => {
    const p = new RequestParser();
    for (let i = 0; i < 1000; i++) {
      p.feed(toBytes("\r\n".repeat(512)));
      const ev = p.next();
      if (ev.kind === "error") return expect(ev.status).toBe(400); // rejecting a flood is fine too
      expect(ev).toEqual({ kind: "need-more" });
      expect(p.bufferedBytes).toBeLessThan(64);
    }
  });

  test("after an error every later next() is the same error, never a head", () => {
    const p = new RequestParser();
    p.feed(toBytes(`GET / HTTP/1.1\r\n${H}X-A : v\r\n\r\n`));
    const first = p.next();
    expect(first.kind).toBe("error");
    for (let i = 0; i < 5; i++) {
      p.feed(toBytes(`GET /ok HTTP/1.1\r\n${H}\r\n`));
      expect(p.next()).toEqual(first);
      expect(p.next()).toEqual(first);
    }
  });
});

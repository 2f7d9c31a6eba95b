#!/usr/bin/env bun
/**
 * bunicorn: a WSGI server on Bun.
 *
 * One process owns every HTTP connection (Bun.listen raw sockets); a request goes
 * parse → environ → app → serialize → write, then keep-alive or close. Apps written
 * in TypeScript run in this process; Python WSGI apps run in supervised worker
 * processes that speak a small framed protocol over socketpairs (bridge.ts, worker.py).
 *
 * Sections (`grep -n "^// ====" server.ts`), in the order of a request's life; the
 * indented parts live inside a class and open with a `// ----` banner there:
 *    1. Constants and limits                 6. Parse the request (RequestParser)
 *    2. Errors                                    - Body framing
 *    3. Bytes and grammar                    7. Environ
 *    4. Listen and accept (Server)           8. start_response and the app (app stages)
 *    5. Connection state (Conn)              9. Serialize the response (Exchange)
 *         - Write and backpressure          10. Logging
 *         - Reading requests; keep-alive,   11. Config and CLI
 *           close, timeouts                 12. Main
 * Python workers are in bridge.ts (the front's side, an app stage) and worker.py; what
 * systemd and --user need from libc (socket activation, sd_notify, getpwnam) is in systemd.ts.
 * Static files and files an app names with X-Accel-Redirect / X-Sendfile are in static.ts
 * (an app stage before the app's); --health-path is HealthStage (section 8), metrics section 10.
 *
 * Two rules hold throughout: parsing and serializing do no I/O (the parser is fed
 * bytes and returns events), and a connection's state changes only in section 5.
 */

import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type AppExchange, type PythonStage, WorkerBootError, choosePython, createPythonStage, pythonProgram, pythonRole } from "./bridge.ts";
import { type InheritedSocket, type Notifier, lookUpGroup, lookUpUser, monotonicMicros, takeListenFds, takeNotifySocket } from "./systemd.ts";
import { type InternalRedirect, StaticStage, findInternalRedirect, openRoots, parseMapping } from "./static.ts";

// ==== 1. Constants and limits ====

export const VERSION = "0.1.0";
export const SERVER_HEADER = `bunicorn/${VERSION}`;

/** gunicorn's defaults where gunicorn has the flag; ours otherwise. */
export const DEFAULTS = {
  binds: ["127.0.0.1:8000"],
  limitRequestLine: 4094, // bytes of the request line, CRLF excluded (→ 414)
  limitRequestFields: 100, // header fields per request (→ 431)
  limitRequestFieldSize: 8190, // bytes of one field line (→ 431)
  limitRequestBody: 1024 * 1024 * 1024, // bytes (→ 413)
  headerTimeoutS: 10, // from a request's first byte to its blank line (→ 408)
  keepAliveS: 5, // idle seconds between requests on a kept-alive connection
  maxConnections: 20_000,
  // Slow clients (nginx's proxy_request_buffering / proxy_buffering, our own flags): bytes.
  requestBufferBytes: 1024 * 1024, // a body up to this is received whole before a worker gets it (at most what a connection reads ahead)
  responseBufferMemoryBytes: 256 * 1024, // of a streamed answer held in memory for a slow client
  responseBufferFileBytes: 1024 * 1024 * 1024, // then held in a temporary file (nginx's proxy_max_temp_file_size)
  responseBufferTotalBytes: 4 * 1024 * 1024 * 1024, // in all temporary files together
  gracefulTimeoutS: 30,
  /**
   * After SIGTERM, with --health-path: seconds of 503 on the health path, everything else
   * still served, before the listeners close. A load balancer needs its check interval
   * times its fall count to see it (HAProxy's default: 2 s × 3 = 6 s; AWS ALB: 5 s × 2 = 10 s
   * at best); 5 s suits a checker that looks every second or two. Without --health-path: 0.
   */
  drainDelayS: 5,
  timeoutS: 30, // a Python request running longer → 504, worker replaced
  maxRequests: 0,
  maxRequestsJitter: 0,
  backlog: 2048,
  threads: 1,
};

/** Longest chunk-size line we read, extensions included (RFC 9112 §7.1.1 sets no bound). */
const MAX_CHUNK_LINE_BYTES = 4096;
/** 16 hex digits is 64 bits; h11 allows 20. More is never a real chunk. */
const MAX_CHUNK_SIZE_DIGITS = 16;
/** Content-Length with more digits than this is beyond 2^53 and cannot be exact in a JS number. */
const MAX_CONTENT_LENGTH_DIGITS = 15;
/** Bytes a paused connection may buffer ahead (pipelined requests) before we stop reading it. */
const MAX_BUFFERED_AHEAD_BYTES = 1024 * 1024;
/** Response bytes gathered before a write is forced. */
const OUTBOX_FLUSH_BYTES = 64 * 1024;
/** How often deadlines are checked; timeouts fire within one tick of their due time. */
const TIMER_TICK_MS = 250;
/** Exit status when a worker cannot load the app at start-up (gunicorn's WORKER_BOOT_ERROR). */
const EXIT_WORKER_BOOT_ERROR = 3;
/**
 * Lingering close (nginx's lingering_close): after the last byte of an answer we send FIN
 * (socket.shutdown) and keep reading, discarding what the client still sends, for at most
 * this long before closing. Closing with unread bytes in the kernel buffer makes Linux send
 * RST, and a client that gets RST may lose the answer it had not read yet (RFC 9112 §9.6).
 * nginx waits up to 30 s (lingering_time); 2 s covers what was in flight when our FIN left.
 */
const LINGER_MS = 2000;
/**
 * Bytes discarded while lingering before we close anyway: a few socket buffers' worth
 * (loopback autotuning lets several MiB be in flight). More is a client that keeps sending
 * after our FIN; reading it for LINGER_MS would only spend CPU on it.
 */
const LINGER_MAX_DISCARD_BYTES = 8 * 1024 * 1024;

// ==== 2. Errors ====

/** A request we refuse: the status to answer and a stable code for logs and tests. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const REASONS: Record<number, string> = {
  100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 408: "Request Timeout",
  413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
  431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
  502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

// ==== 3. Bytes and grammar ====

const CR = 0x0d, LF = 0x0a, SP = 0x20, HTAB = 0x09, COLON = 0x3a, SEMI = 0x3b, EQUALS = 0x3d, DQUOTE = 0x22, BACKSLASH = 0x5c;

/** tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA (RFC 9110 §5.6.2) */
const IS_TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") IS_TCHAR[c.charCodeAt(0)] = 1;

/** field-vchar / SP / HTAB (RFC 9110 §5.5): everything but CTLs (0x00-0x1F except HTAB) and DEL. */
const IS_FIELD_CHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) IS_FIELD_CHAR[c] = (c >= 0x20 && c !== 0x7f) || c === HTAB ? 1 : 0;

/** Bytes of a request-target: visible ASCII except '#' (RFC 9112 §3.2; a fragment is never sent). */
const IS_TARGET_CHAR = new Uint8Array(256);
for (let c = 0x21; c < 0x7f; c++) IS_TARGET_CHAR[c] = c === 0x23 ? 0 : 1;

/** qdtext = HTAB / SP / 0x21 / 0x23-0x5B / 0x5D-0x7E / obs-text (RFC 9110 §5.6.4) */
const IS_QDTEXT = new Uint8Array(256);
for (let c = 0; c < 256; c++) IS_QDTEXT[c] = c === HTAB || c === SP || c === 0x21 || (c >= 0x23 && c <= 0x7e && c !== BACKSLASH) || c >= 0x80 ? 1 : 0;

const HEX_VALUE = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX_VALUE[0x30 + c] = c;
for (let c = 0; c < 6; c++) HEX_VALUE[0x41 + c] = HEX_VALUE[0x61 + c] = 10 + c;

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!IS_TCHAR[s.charCodeAt(i)]) return false;
  return true;
}

function isOws(c: number): boolean {
  return c === SP || c === HTAB;
}

/** A string of decimal digits only; -1 when empty, not all digits, or too long to be exact. */
function parseDigits(s: string): number {
  if (s.length === 0 || s.length > MAX_CONTENT_LENGTH_DIGITS) return -1;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * Content-Length = 1*DIGIT (RFC 9110 §8.6), or that one value repeated as a list ("5, 5"), which
 * RFC 9110 §8.6 lets a recipient take as the value; -1 for anything else, empty elements included.
 */
function parseContentLength(value: string): number {
  const n = parseDigits(value);
  if (n >= 0 || value.indexOf(",") === -1) return n;
  let first = -1;
  for (const element of value.split(",")) {
    const m = parseDigits(trimOws(element));
    if (m < 0 || (first !== -1 && m !== first)) return -1;
    first = m;
  }
  return first;
}

/** Strip SP and HTAB only (RFC 9110 §5.5 OWS): String.prototype.trim removes far more. */
function trimOws(s: string): string {
  let a = 0, b = s.length;
  while (a < b && isOws(s.charCodeAt(a))) a++;
  while (b > a && isOws(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** Split a comma-separated list (RFC 9110 §5.6.1), dropping empty elements as the RFC asks. */
function splitList(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(",")) {
    const item = trimOws(part);
    if (item.length > 0) out.push(item);
  }
  return out;
}

function latin1(buf: Buffer, start: number, end: number): string {
  return (buf as Buffer & { latin1Slice(s: number, e: number): string }).latin1Slice(start, end);
}

const ASCII_LOWER_CACHE = new Map<string, string>();
/** Header names are tokens (ASCII), so toLowerCase is exact; cached because the same few names recur. */
function lowerName(name: string): string {
  let lower = ASCII_LOWER_CACHE.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (ASCII_LOWER_CACHE.size < 2048) ASCII_LOWER_CACHE.set(name, lower);
  }
  return lower;
}

/** The usual methods and header names, found by their bytes: no string is made for them per request. */
const COMMON_METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"];
const COMMON_FIELD_NAMES = [
  "host", "user-agent", "accept", "accept-encoding", "accept-language", "connection", "content-length",
  "content-type", "cookie", "referer", "cache-control", "origin", "authorization", "upgrade-insecure-requests",
  "x-forwarded-for", "x-forwarded-proto", "x-request-id", "if-none-match", "if-modified-since", "transfer-encoding",
  "expect", "pragma", "te", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-dest",
];
const METHODS_BY_LENGTH = groupByLength(COMMON_METHODS);
const FIELD_NAMES_BY_LENGTH = groupByLength(COMMON_FIELD_NAMES);

function groupByLength(words: string[]): string[][] {
  const table: string[][] = [];
  for (const w of words) (table[w.length] ??= []).push(w);
  return table;
}

function internMethod(buf: Buffer, start: number, end: number): string {
  const candidates = METHODS_BY_LENGTH[end - start];
  if (candidates !== undefined) {
    for (const m of candidates) {
      let i = 0;
      while (i < m.length && buf[start + i] === m.charCodeAt(i)) i++;
      if (i === m.length) return m;
    }
  }
  return latin1(buf, start, end);
}

/** A header name, lower-cased (names are tokens: ASCII, so folding 'A'-'Z' is exact). */
function internFieldName(buf: Buffer, start: number, end: number): string {
  const candidates = FIELD_NAMES_BY_LENGTH[end - start];
  if (candidates !== undefined) {
    for (const name of candidates) {
      let i = 0;
      while (i < name.length && (buf[start + i] | 0x20) === name.charCodeAt(i)) i++;
      // `| 0x20` maps only letters onto lower case here: the other bytes of these names are '-'.
      if (i === name.length) return name;
    }
  }
  return lowerName(latin1(buf, start, end));
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---- Addresses and trusted peers (--forwarded-allow-ips, --proxy-allow-from) ----

/** An IP address as bytes: 4 for IPv4, 16 for IPv6 (an IPv4-mapped IPv6 address is taken as IPv4). */
type IpBytes = Uint8Array;

/** Decimal digits only, at most 5 (ports, prefix lengths, octets); -1 otherwise. */
function parseSmallDecimal(s: string): number {
  return s.length > 5 ? -1 : parseDigits(s);
}

/** dotted-quad IPv4 (RFC 3986 §3.2.2 dec-octet: no leading zeros, each ≤ 255), else null. */
export function parseIPv4(s: string): IpBytes | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (p.length > 3 || (p.length > 1 && p.charCodeAt(0) === 0x30)) return null;
    const n = parseSmallDecimal(p);
    if (n < 0 || n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** RFC 4291 §2.2 text forms: eight groups of 1-4 hex digits, at most one "::", an IPv4 tail; else null (no zone ids). */
export function parseIPv6(s: string): IpBytes | null {
  if (s.length < 2 || s.length > 45) return null;
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const hasGap = halves.length === 2;
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const tail = hasGap && halves[1] !== "" ? halves[1].split(":") : [];
  const all = hasGap ? [...head, ...tail] : head;
  // A dotted quad may only end the address (after "::" when there is one).
  const lastIsText = hasGap && tail.length === 0;
  const words: number[] = [];
  for (let i = 0; i < all.length; i++) {
    const g = all[i];
    if (i === all.length - 1 && !lastIsText && g.indexOf(".") !== -1) {
      // RFC 4291 §2.2 form 3: the low 32 bits as a dotted quad.
      const v4 = parseIPv4(g);
      if (v4 === null) return null;
      words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      continue;
    }
    if (g.length === 0 || g.length > 4) return null;
    let n = 0;
    for (let j = 0; j < g.length; j++) {
      const c = g.charCodeAt(j);
      const h = c < 256 ? HEX_VALUE[c] : -1;
      if (h < 0) return null;
      n = n * 16 + h;
    }
    words.push(n);
  }
  // "::" stands for one or more zero groups (RFC 4291 §2.2 form 2), so with it at most 7 are written.
  if (hasGap ? words.length > 7 : words.length !== 8) return null;
  const headWords = hasGap ? head.length : 8;
  const out = new Uint8Array(16);
  for (let i = 0; i < words.length; i++) {
    const at = i < headWords ? i : 8 - (words.length - i);
    out[at * 2] = words[i] >> 8;
    out[at * 2 + 1] = words[i] & 0xff;
  }
  return out;
}

/** IPv4 or IPv6 (no brackets); an IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes IPv4. */
export function parseIp(s: string): IpBytes | null {
  if (s.indexOf(":") === -1) return parseIPv4(s);
  const v6 = parseIPv6(s);
  return v6 !== null && isIPv4Mapped(v6) ? v6.subarray(12) : v6;
}

/** ::ffff:0:0/96 (RFC 4291 §2.5.5.2). */
function isIPv4Mapped(b: IpBytes): boolean {
  if (b.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** The canonical text of an address (RFC 5952 §4 for IPv6: lower case, the longest run of 2+ zero groups as "::", the first on a tie). */
export function formatIp(b: IpBytes): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (isIPv4Mapped(b)) return formatIp(b.subarray(12));
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  let bestStart = -1, bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(":");
  return hex.slice(0, bestStart).join(":") + "::" + hex.slice(bestStart + bestLen).join(":");
}

interface Network { bytes: IpBytes; prefixBits: number }

/**
 * A list of addresses and CIDR networks ("127.0.0.1,::1,10.0.0.0/8"), or "*" for any:
 * who may set the client's address and scheme (gunicorn's --forwarded-allow-ips) or
 * send a PROXY header (--proxy-allow-from). An empty list trusts no one.
 */
export class AddressList {
  private constructor(readonly isAny: boolean, private readonly networks: Network[], readonly text: string) {}

  /** Throws an Error naming the entry that is not an address or network. */
  static parse(text: string): AddressList {
    const networks: Network[] = [];
    let isAny = false;
    for (const entry of splitList(text)) {
      if (entry === "*") { isAny = true; continue; }
      const slash = entry.indexOf("/");
      const written = parseIPv6OrV4(slash === -1 ? entry : entry.slice(0, slash));
      if (written === null) throw new Error(`'${entry}' is not an IP address or network`);
      const maxBits = written.length * 8;
      const bits = slash === -1 ? maxBits : parseSmallDecimal(entry.slice(slash + 1));
      if (bits < 0 || bits > maxBits) throw new Error(`'${entry}': the prefix length must be 0 to ${maxBits}`);
      // ::ffff:10.0.0.0/104 is 10.0.0.0/8: peers are compared as IPv4 once mapped (parseIp).
      if (isIPv4Mapped(written) && bits >= 96) networks.push({ bytes: written.subarray(12), prefixBits: bits - 96 });
      else networks.push({ bytes: written, prefixBits: bits });
    }
    return new AddressList(isAny, networks, text);
  }

  get isEmpty(): boolean {
    return !this.isAny && this.networks.length === 0;
  }

  has(address: string): boolean {
    if (this.isAny) return true;
    const bytes = parseIp(address);
    if (bytes === null) return false;
    for (const n of this.networks) if (isInNetwork(bytes, n)) return true;
    return false;
  }
}

/** As written, a mapped IPv6 address kept as 16 bytes (its prefix length counts 128 bits). */
function parseIPv6OrV4(s: string): IpBytes | null {
  return s.indexOf(":") === -1 ? parseIPv4(s) : parseIPv6(s);
}

function isInNetwork(b: IpBytes, n: Network): boolean {
  if (b.length !== n.bytes.length) return false;
  let bits = n.prefixBits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((b[i] & mask) !== (n.bytes[i] & mask)) return false;
  }
  return true;
}

// ==== 4. Listen and accept ====
// The Server: its listeners (Bun.listen handlers only delegate to Conn), the accepted
// connections and the parked ones, the deadline ticker, and the graceful stop.

/** Everything a connection needs from the server it belongs to. */
export class Server {
  readonly conns = new Set<Conn>();
  readonly parked: Conn[] = [];
  readonly parserLimits: ParserLimits;
  readonly errorStream: ReturnType<typeof makeErrorStream>;
  readonly ports: number[] = [];
  /** Connections still reading their PROXY header or in their TLS handshake. */
  readonly preambles = new Set<Preamble>();
  /** The TLS options new connections get: replaced by reloadCertificates (SIGHUP). Null: plain HTTP. */
  tlsOptions: TlsOptions | null = null;
  readonly proxyMode: ProxyMode;
  readonly proxyAllowFrom: AddressList;
  /** Null when --forwarded-allow-ips is empty: no header is looked at. */
  readonly forwarded: ForwardedPolicy | null;
  tlsHandlers: object = {};
  isShuttingDown = false;
  /** SIGTERM with --drain-delay: --health-path answers 503 while everything else is still served. */
  isDraining = false;
  /** Set when --sendfile-root is: app answers naming a file go to it (Exchange.setResponse). */
  sendfileStage: StaticStage | null = null;
  /** Workers ready now (a TypeScript app is always ready: 1). */
  readyWorkers: () => number = () => 1;
  /** Counted only with --metrics-bind: off, the hot path pays one null check per counting site. */
  readonly metrics: Metrics | null;
  metricsListener: { stop(): void } | null = null;
  now = Date.now();
  private listeners: { stop(closeActive?: boolean): void }[] = [];
  private ticker: ReturnType<typeof setInterval> | null = null;
  private inFlightCount = 0;
  private readonly accessFormat: AccessFormat;
  constructor(readonly config: Config, readonly app: AppStage, readonly log: Logger, private readonly accessLog = openAccessLog(config)) {
    this.accessFormat = compileAccessFormat(config.accessLogFormat);
    this.parserLimits = {
      maxRequestLineBytes: config.limitRequestLine,
      maxHeaderFields: config.limitRequestFields,
      maxHeaderFieldBytes: config.limitRequestFieldSize,
      maxBodyBytes: config.limitRequestBody,
    };
    this.errorStream = makeErrorStream(log);
    this.metrics = config.metricsBind !== null ? new Metrics() : null;
    if (config.certfile !== null) {
      this.tlsOptions = loadTlsOptions(config);
      checkCiphers(this.tlsOptions);
    }
    this.proxyMode = config.proxyProtocol;
    this.proxyAllowFrom = AddressList.parse(config.proxyAllowIps);
    const trusted = AddressList.parse(config.forwardedAllowIps);
    this.forwarded = trusted.isEmpty ? null : new ForwardedPolicy(trusted, secureHeadersFrom(JSON.parse(config.secureSchemeHeaders)));
  }

  /**
   * SIGHUP: read the certificate and key again for the connections accepted from now on
   * (open ones keep theirs). One that does not load leaves the current one in force.
   */
  reloadCertificates(): void {
    if (this.tlsOptions === null) return;
    try {
      const options = loadTlsOptions(this.config);
      checkCiphers(options);
      this.tlsOptions = options;
      this.log.info(`TLS: certificate reloaded from ${this.config.certfile}`);
    } catch (err) {
      this.log.error(`TLS: keeping the current certificate: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Exchanges between their head and their end, on every connection. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  exchangeStarted(): void {
    this.inFlightCount++;
  }

  exchangeEnded(): void {
    this.inFlightCount--;
  }

  logAccess(ex: Exchange): void {
    this.metrics?.countExchange(ex);
    if (this.accessLog !== null) this.accessLog.write(formatAccessLine(this.accessFormat, ex));
    if (this.log.metrics !== null) this.log.metrics.noteRequest(ex);
  }

  /** Bind --bind's addresses, or take the sockets systemd passed (then --bind is not used, as in gunicorn). */
  listen(inherited: InheritedSocket[] = []): void {
    const server = this;
    const handlers = {
      open(socket: Socket) { server.acceptConnection(socket); },
      data(socket: Socket, bytes: Buffer) { socket.data?.onData(bytes); },
      drain(socket: Socket) { socket.data?.onDrain(); },
      end(socket: Socket) { socket.data?.onPeerEnd(); },
      close(socket: Socket) { socket.data?.onClose(); },
      error(socket: Socket, err: Error) { server.log.debug(`socket error: ${err.message}`); },
    };
    // The upgraded (TLS) half of each connection: a Preamble until its handshake, then its Conn.
    this.tlsHandlers = {
      open() {},
      handshake(socket: Socket, ok: boolean, err: Error | null) {
        const d = socket.data as unknown;
        if (d instanceof Preamble) d.onHandshake(socket, ok, err as { code?: string } | null);
      },
      data(socket: Socket, bytes: Buffer) { socket.data?.onData(bytes); },
      drain(socket: Socket) { socket.data?.onDrain(); },
      end(socket: Socket) { socket.data?.onPeerEnd(); },
      close(socket: Socket) { socket.data?.onClose(); },
      error(socket: Socket, err: Error) { server.log.debug(`TLS socket error: ${err.message}`); },
    };
    try {
      if (inherited.length > 0) for (const socket of inherited) this.listenOnInherited(socket, handlers);
      else for (const bind of this.config.binds) this.listenOn(parseBind(bind), handlers);
    } catch (err) {
      // One bind refused: release the others, so a start that failed holds no port.
      for (const listener of this.listeners) listener.stop(true);
      this.listeners = [];
      this.ports.length = 0;
      throw err;
    }
    this.ticker = setInterval(() => this.checkDeadlines(), TIMER_TICK_MS);
  }

  /** Bind one address; a refusal is a StartupError naming the address and the reason (EADDRINUSE, EACCES, ENOENT...). */
  private listenOn(address: BindAddress, handlers: object): void {
    let listener: { port: number; stop(closeActive?: boolean): void };
    try {
      if ("unix" in address) {
        removeStaleUnixSocket(address.unix);
        listener = Bun.listen<Conn | undefined>({ unix: address.unix, socket: handlers, allowHalfOpen: true } as any);
      } else {
        listener = Bun.listen<Conn | undefined>({ hostname: address.hostname, port: address.port, socket: handlers, allowHalfOpen: true } as any);
      }
    } catch (err) {
      if (err instanceof StartupError) throw err;
      throw new StartupError(`cannot listen on ${formatBindAddress(address)}: ${describeOsError(err)}`);
    }
    this.listeners.push(listener);
    if ("unix" in address) {
      this.ports.push(0);
      this.log.info(`Listening at: unix:${address.unix}${this.tlsOptions === null ? "" : " (TLS)"}`);
    } else {
      this.ports.push(listener.port);
      this.log.info(`Listening at: ${this.tlsOptions === null ? "http" : "https"}://${formatBindAddress({ ...address, port: listener.port })}`);
    }
  }

  /** A socket systemd listens on for us (socket activation): Bun.listen({ fd }), which bun-types lacks. */
  private listenOnInherited(socket: InheritedSocket, handlers: object): void {
    let listener: { stop(closeActive?: boolean): void };
    try {
      listener = Bun.listen<Conn | undefined>({ fd: socket.fd, socket: handlers, allowHalfOpen: true } as any);
    } catch (err) {
      throw new StartupError(`cannot listen on the socket systemd passed as fd ${socket.fd} (${socket.address}): ${describeOsError(err)}`);
    }
    this.listeners.push(listener);
    this.ports.push(socket.isUnix ? 0 : Number(socket.address.slice(socket.address.lastIndexOf(":") + 1)));
    this.log.info(`Listening at: ${socket.isUnix ? socket.address : `http://${socket.address}`} (systemd socket ${socket.name}, fd ${socket.fd})`);
  }

  private acceptConnection(socket: Socket): void {
    const local = socket as any;
    const info: ConnectionInfo = {
      remoteAddr: socket.remoteAddress ?? "",
      remotePort: local.remotePort ?? 0,
      serverName: local.localAddress ?? "localhost",
      serverPort: local.localPort ?? 0,
      scheme: "http",
      peerAddr: null,
      peerPort: null,
      tlsVersion: null,
      clientSubject: null,
      isTrustedProxy: null,
    };
    if (this.proxyMode === "off" && this.tlsOptions === null) return this.admitConnection(socket, info, null);
    // A PROXY header first (it fixes remoteAddr), then the TLS handshake: the Preamble; the Conn after.
    const preamble = new Preamble(socket, this, info);
    socket.data = preamble as any;
    if (this.isShuttingDown) return preamble.close();
    this.preambles.add(preamble);
    preamble.start();
  }

  forgetPreamble(preamble: Preamble): void {
    this.preambles.delete(preamble);
  }

  /** A connection ready for HTTP (after its PROXY header and TLS handshake, if any); `rest` is what came after the PROXY header. */
  admitConnection(socket: Socket, info: ConnectionInfo, rest: Uint8Array | null): void {
    const conn = new Conn(socket, this, info);
    socket.data = conn;
    if (this.metrics !== null) this.metrics.connectionsAccepted++;
    if (this.isShuttingDown) {
      if (this.metrics !== null) this.metrics.connectionsRefused++;
      return conn.close();
    }
    if (this.conns.size >= this.config.maxConnections) {
      // Over the limit: hold the connection unread, like a listen backlog, until one closes.
      conn.park();
      this.parked.push(conn);
      if (rest !== null && rest.length > 0) conn.onData(asBuffer(rest)); // held in its parser until unparked
      return;
    }
    this.conns.add(conn);
    conn.setDeadline("header", this.config.headerTimeoutS);
    if (rest !== null && rest.length > 0) conn.onData(asBuffer(rest));
  }

  forgetParkedConnection(conn: Conn): void {
    const i = this.parked.indexOf(conn);
    if (i !== -1) this.parked.splice(i, 1);
  }

  /** A connection closed: its slot goes to the longest-parked connection still open. */
  forgetConnection(conn: Conn): void {
    this.conns.delete(conn);
    while (this.parked.length > 0 && this.conns.size < this.config.maxConnections && !this.isShuttingDown) {
      const next = this.parked.shift()!;
      if (next.isClosed) continue;
      this.conns.add(next);
      next.unpark();
    }
  }

  private checkDeadlines(): void {
    this.now = Date.now();
    for (const conn of this.conns) {
      if (conn.deadline !== 0 && this.now >= conn.deadline) conn.onDeadline();
    }
    for (const preamble of this.preambles) if (this.now >= preamble.deadline) preamble.onDeadline();
  }

  /** Stop accepting; let in-flight requests finish within the graceful timeout (or cut them when not graceful). */
  async stop(graceful = true): Promise<void> {
    if (this.isShuttingDown && graceful) return;
    this.isShuttingDown = true;
    for (const l of this.listeners) l.stop(false);
    if (this.metrics !== null) this.metrics.connectionsRefused += this.parked.length;
    for (const conn of [...this.parked]) conn.close();
    for (const preamble of [...this.preambles]) preamble.close();
    for (const conn of [...this.conns]) {
      if (conn.exchange === null) conn.closeWhenWritten();
      else conn.closeAfterThisResponse();
    }
    const deadline = Date.now() + (graceful ? this.config.gracefulTimeoutS * 1000 : 0);
    while (this.conns.size > 0 && Date.now() < deadline) await Bun.sleep(20);
    for (const conn of [...this.conns]) conn.close();
    if (this.ticker !== null) clearInterval(this.ticker);
    await this.app.stop(graceful);
    this.metricsListener?.stop();
    this.accessLog?.flush();
    this.log.metrics?.close();
    this.log.flush();
  }
}

/**
 * A socket file left by an earlier run makes the bind fail with EADDRINUSE, so it goes;
 * anything else at that path is the user's file and is never deleted (gunicorn refuses it too).
 */
function removeStaleUnixSocket(file: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(file);
  } catch {
    return; // not there (or not reachable: the bind will say why)
  }
  if (!stat.isSocket()) throw new StartupError(`cannot listen on unix:${file}: the path exists and is not a socket`);
  fs.unlinkSync(file);
}

// ---- The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2), sans-IO ----

export type ProxyMode = "off" | "v1" | "v2" | "auto";
export const PROXY_MODES: readonly ProxyMode[] = ["off", "v1", "v2", "auto"];
export type ProxyHeader =
  | { kind: "need-more" }
  | { kind: "error"; reason: string }
  /** `source` null: keep the connection's own addresses (v1 UNKNOWN, v2 LOCAL, v2 UNSPEC). */
  | { kind: "done"; consumed: number; source: { addr: string; port: number } | null };

/** proxy-protocol.txt §2.1: "a receiver may reject an incomplete line which does not contain the CRLF sequence in the first 107 characters". */
const PROXY_V1_MAX_BYTES = 107;
/** proxy-protocol.txt §2.2: the 12-byte signature "\r\n\r\n\0\r\nQUIT\n". */
const PROXY_V2_SIGNATURE = Uint8Array.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const PROXY_V1_PREFIX = Uint8Array.from([0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]); // "PROXY "
/**
 * A v2 header's address block and TLVs: the spec allows up to 65535, HAProxy sends a few hundred
 * bytes at most (addresses, ALPN, authority, SSL TLVs); more is not a proxy we know.
 */
const PROXY_V2_MAX_PAYLOAD_BYTES = 4096;
const NEED_MORE_PROXY: ProxyHeader = { kind: "need-more" };
const proxyError = (reason: string): ProxyHeader => ({ kind: "error", reason });

/** Whether the bytes so far are a prefix of `pattern` ("so-far"), start with all of it ("yes"), or differ ("no"). */
function matchesPrefix(buf: Uint8Array, pattern: Uint8Array): "yes" | "no" | "so-far" {
  const n = Math.min(buf.length, pattern.length);
  for (let i = 0; i < n; i++) if (buf[i] !== pattern[i]) return "no";
  return buf.length >= pattern.length ? "yes" : "so-far";
}

/**
 * Reads the PROXY header at the start of a connection, fed the bytes received so far.
 * Every mode but "off" requires the header (proxy-protocol.txt §1: a receiver must not
 * guess); "auto" takes either version, told apart by their first byte.
 */
export function parseProxyHeader(buf: Uint8Array, mode: Exclude<ProxyMode, "off">): ProxyHeader {
  const v1 = mode !== "v2" ? matchesPrefix(buf, PROXY_V1_PREFIX) : "no";
  const v2 = mode !== "v1" ? matchesPrefix(buf, PROXY_V2_SIGNATURE) : "no";
  if (v1 === "yes") return parseProxyV1(buf);
  if (v2 === "yes") return parseProxyV2(buf);
  if (v1 === "so-far" || v2 === "so-far") return NEED_MORE_PROXY;
  return proxyError(mode === "auto" ? "no PROXY header" : `no PROXY ${mode} header`);
}

/**
 * proxy-protocol.txt §2.1: "PROXY" SP ( "TCP4" | "TCP6" ) SP src SP dst SP sport SP dport CRLF,
 * one space each, ports in decimal without leading zeros; or "PROXY UNKNOWN", anything, CRLF.
 */
function parseProxyV1(buf: Uint8Array): ProxyHeader {
  let end = -1;
  const limit = Math.min(buf.length, PROXY_V1_MAX_BYTES);
  for (let i = PROXY_V1_PREFIX.length; i < limit; i++) {
    const c = buf[i];
    if (c === CR) {
      if (i + 1 >= buf.length) return NEED_MORE_PROXY;
      if (buf[i + 1] !== LF) return proxyError("PROXY v1 line: CR without LF");
      end = i;
      break;
    }
    // The line is US-ASCII printable text (§2.1); a bare LF or a control byte is not a PROXY line.
    if (c < 0x20 || c > 0x7e) return proxyError("PROXY v1 line: a byte that is not printable ASCII");
  }
  if (end === -1) return buf.length >= PROXY_V1_MAX_BYTES ? proxyError("PROXY v1 line longer than 107 bytes") : NEED_MORE_PROXY;
  const parts = Buffer.from(buf.buffer, buf.byteOffset, end).toString("latin1").split(" ");
  const consumed = end + 2;
  // §2.1: with UNKNOWN "the receiver must ignore anything presented before the CRLF".
  if (parts[1] === "UNKNOWN") return { kind: "done", consumed, source: null };
  if (parts[1] !== "TCP4" && parts[1] !== "TCP6") return proxyError("PROXY v1 line: the protocol is not TCP4, TCP6 or UNKNOWN");
  if (parts.length !== 6) return proxyError("PROXY v1 line: not five fields after PROXY");
  const parse = parts[1] === "TCP4" ? parseIPv4 : parseIPv6;
  const src = parse(parts[2]), dst = parse(parts[3]);
  const sport = parseProxyPort(parts[4]), dport = parseProxyPort(parts[5]);
  if (src === null || dst === null) return proxyError(`PROXY v1 line: an address that is not ${parts[1] === "TCP4" ? "IPv4" : "IPv6"}`);
  if (sport < 0 || dport < 0) return proxyError("PROXY v1 line: a port that is not 0-65535");
  return { kind: "done", consumed, source: { addr: formatIp(src), port: sport } };
}

/** §2.1: a port is 0-65535 in decimal, no leading zero. */
function parseProxyPort(s: string): number {
  if (s.length > 1 && s.charCodeAt(0) === 0x30) return -1;
  const n = parseSmallDecimal(s);
  return n > 65535 ? -1 : n;
}

/** §2.2: signature(12) ver_cmd(1) fam(1) len(2, network order), then the address block and TLVs. */
function parseProxyV2(buf: Uint8Array): ProxyHeader {
  if (buf.length < 16) return NEED_MORE_PROXY;
  const verCmd = buf[12], family = buf[13];
  const length = (buf[14] << 8) | buf[15];
  // "The receiver must drop connections presenting unexpected values here."
  if (verCmd >> 4 !== 2) return proxyError("PROXY v2 header: the version is not 2");
  const command = verCmd & 0x0f;
  if (command > 1) return proxyError("PROXY v2 header: the command is neither LOCAL nor PROXY");
  if (length > PROXY_V2_MAX_PAYLOAD_BYTES) return proxyError(`PROXY v2 header: ${length} bytes of addresses and TLVs (at most ${PROXY_V2_MAX_PAYLOAD_BYTES})`);
  if (buf.length < 16 + length) return NEED_MORE_PROXY;
  const consumed = 16 + length;
  // LOCAL: the proxy's own connection (a health check): "the receiver must use the real connection endpoints".
  if (command === 0) return { kind: "done", consumed, source: null };
  const p = buf.subarray(16, consumed);
  switch (family) {
    case 0x11: // TCP over IPv4: src(4) dst(4) sport(2) dport(2)
      if (length < 12) return proxyError("PROXY v2 header: TCP4 address block shorter than 12 bytes");
      return { kind: "done", consumed, source: { addr: formatIp(p.subarray(0, 4)), port: (p[8] << 8) | p[9] } };
    case 0x21: // TCP over IPv6: src(16) dst(16) sport(2) dport(2)
      if (length < 36) return proxyError("PROXY v2 header: TCP6 address block shorter than 36 bytes");
      return { kind: "done", consumed, source: { addr: formatIp(p.subarray(0, 16)), port: (p[32] << 8) | p[33] } };
    case 0x00: // UNSPEC: "the receiver should ignore address information"
      return { kind: "done", consumed, source: null };
    default: // UDP and unix sockets never carry HTTP to us
      return proxyError(`PROXY v2 header: address family and transport 0x${family.toString(16).padStart(2, "0")} is not TCP`);
  }
}

// ---- TLS (--certfile, --keyfile, --ca-certs, --cert-reqs, --ciphers) ----
// Every listener is plain; each accepted connection is upgraded with socket.upgradeTLS()
// (after its PROXY header, when there is one) with the TLS options in force at that moment.
// So SIGHUP's new certificate reaches every new connection on every kind of listener
// (TCP, unix, an inherited fd), and open connections keep the context they started with.
// Measured against Bun.listen({ tls }): the same req/s on keep-alive, and the same new
// handshakes per second once the PEM text is read into memory (a Bun.file() read per
// connection cost 2-3x).

/** What Bun.listen's and upgradeTLS's `tls` take; PEM text read at start and on SIGHUP. */
interface TlsOptions {
  key: string;
  cert: string;
  ca?: string;
  requestCert: boolean;
  rejectUnauthorized: boolean;
  ciphers?: string;
  /** RFC 7301 wire format: one length-prefixed name. */
  ALPNProtocols: string;
}

/** gunicorn's --cert-reqs: ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED. */
export const CERT_REQS = { none: 0, optional: 1, required: 2 } as const;

function readPem(flag: string, file: string): string {
  try {
    return fs.readFileSync(file, "latin1");
  } catch (err) {
    throw new StartupError(`${flag} ${file}: cannot read: ${describeOsError(err)}`);
  }
}

/**
 * Read and check the key, certificate and CA files: each must parse, and the certificate
 * must be the key's. Throws a StartupError naming the file (never printing its contents).
 */
export function loadTlsOptions(config: Config): TlsOptions {
  const key = readPem("--keyfile", config.keyfile!);
  const cert = readPem("--certfile", config.certfile!);
  let x509: crypto.X509Certificate;
  try {
    x509 = new crypto.X509Certificate(cert);
  } catch {
    throw new StartupError(`--certfile ${config.certfile}: not a PEM certificate`);
  }
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(key);
  } catch {
    throw new StartupError(`--keyfile ${config.keyfile}: not a PEM private key (or it is encrypted)`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw new StartupError(`--certfile ${config.certfile} and --keyfile ${config.keyfile} do not match: the certificate is not for this key`);
  const options: TlsOptions = {
    key, cert,
    requestCert: config.certReqs !== CERT_REQS.none,
    rejectUnauthorized: false, // checked in the handshake handler, to tell "none sent" from "not trusted" (cert_reqs 1)
    ALPNProtocols: "\x08http/1.1",
  };
  if (config.caCerts !== null) {
    options.ca = readPem("--ca-certs", config.caCerts);
    try {
      new crypto.X509Certificate(options.ca);
    } catch {
      throw new StartupError(`--ca-certs ${config.caCerts}: not a PEM certificate`);
    }
  }
  if (config.ciphers !== null) options.ciphers = config.ciphers;
  return options;
}

/** The cipher list is checked by OpenSSL when a context is made: one throwaway listener makes one. */
function checkCiphers(options: TlsOptions): void {
  if (options.ciphers === undefined) return;
  try {
    Bun.listen({ hostname: "127.0.0.1", port: 0, tls: options, socket: { data() {} } } as any).stop(true);
  } catch (err) {
    throw new StartupError(`--ciphers ${options.ciphers}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** RFC 4514-style text of a subject ({CN: "alice", O: "Example"} → "CN=alice,O=Example"). */
function formatDistinguishedName(subject: Record<string, string | string[]> | undefined): string {
  if (subject === undefined) return "";
  const parts: string[] = [];
  for (const [k, v] of Object.entries(subject)) for (const one of Array.isArray(v) ? v : [v]) parts.push(`${k}=${one.replace(/([,+"\\<>;=])/g, "\\$1")}`);
  return parts.join(",");
}

/** The first byte of a TLS record carrying a handshake message (RFC 8446 §5.1, ContentType handshake = 22). */
const TLS_HANDSHAKE_RECORD = 0x16;
/** What nginx answers a plain-HTTP request on its TLS port (its 497 goes out as 400). */
const PLAIN_HTTP_ON_TLS_PORT = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 52\r\nConnection: close\r\n\r\nThe plain HTTP request was sent to the HTTPS port.\r\n";

type PreambleState = "PROXY_HEADER" | "FIRST_TLS_BYTES" | "HANDSHAKE" | "DONE";

/**
 * A connection before its Conn exists: its PROXY header being read, then its TLS handshake.
 * Both are counted against --header-timeout (a client stalled in either is closed at it),
 * and nothing reaches the app until both succeed. After upgradeTLS() the plain socket keeps
 * calling its handlers with the ciphertext (oven-sh/bun#26297): in state HANDSHAKE or DONE
 * those calls are ignored here, and the TLS socket's handlers carry the connection.
 */
export class Preamble {
  private state: PreambleState;
  private buffered: Buffer | null = null;
  private current: Socket;
  readonly deadline: number;

  constructor(private readonly socket: Socket, private readonly server: Server, private readonly info: ConnectionInfo) {
    this.current = socket;
    this.deadline = server.now + server.config.headerTimeoutS * 1000;
    this.state = server.proxyMode !== "off" ? "PROXY_HEADER" : "FIRST_TLS_BYTES";
  }

  /** From the accept: a peer that may not send a PROXY header is refused before a byte is read. */
  start(): void {
    if (this.state === "PROXY_HEADER" && !this.server.proxyAllowFrom.has(this.info.remoteAddr)) {
      this.refuse(`${this.info.remoteAddr} is not in --proxy-allow-from`);
    }
  }

  onData(bytes: Buffer): void {
    if (this.state !== "PROXY_HEADER" && this.state !== "FIRST_TLS_BYTES") return;
    const buf = this.buffered === null ? Buffer.from(bytes) : Buffer.concat([this.buffered, bytes]);
    this.buffered = buf;
    if (this.state === "FIRST_TLS_BYTES") return this.startTls(buf);
    const header = parseProxyHeader(buf, this.server.proxyMode as Exclude<ProxyMode, "off">);
    if (header.kind === "need-more") return;
    if (header.kind === "error") return this.refuse(header.reason);
    if (header.source !== null) {
      this.info.peerAddr = this.info.remoteAddr;
      this.info.peerPort = this.info.remotePort;
      this.info.remoteAddr = header.source.addr;
      this.info.remotePort = header.source.port;
    }
    const rest = buf.subarray(header.consumed);
    this.buffered = null;
    if (this.server.tlsOptions === null) return this.admit(this.socket, rest);
    this.state = "FIRST_TLS_BYTES";
    if (rest.length > 0) this.startTls(rest);
  }

  /** The first bytes after any PROXY header: a TLS ClientHello goes to upgradeTLS with them; plain HTTP gets nginx's 400. */
  private startTls(first: Buffer): void {
    if (first[0] !== TLS_HANDSHAKE_RECORD) {
      this.state = "DONE";
      this.server.log.debug(`plain HTTP from ${this.info.remoteAddr} on a TLS port: 400`);
      this.socket.write(PLAIN_HTTP_ON_TLS_PORT);
      this.socket.end();
      return;
    }
    this.state = "HANDSHAKE";
    this.buffered = null;
    try {
      const pair = (this.socket as any).upgradeTLS({ tls: this.server.tlsOptions, socket: this.server.tlsHandlers, data: this, initialData: first });
      this.current = pair[1];
    } catch (err) {
      this.refuse(`TLS upgrade failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Bun's handshake callback: `ok` false is a failed handshake; the client certificate is checked here (cert_reqs). */
  onHandshake(tlsSocket: Socket, ok: boolean, err: { code?: string; message?: string } | null): void {
    if (this.state !== "HANDSHAKE") return;
    this.current = tlsSocket;
    if (!ok) return this.refuse(`TLS handshake failed: ${err?.code ?? err?.message ?? "unknown"}`);
    const s = tlsSocket as any;
    const certReqs = this.server.config.certReqs;
    if (certReqs !== CERT_REQS.none) {
      const peer = s.getPeerCertificate?.();
      const hasCert = peer !== undefined && peer !== null && Object.keys(peer).length > 0;
      // ssl.CERT_REQUIRED: a verified certificate; ssl.CERT_OPTIONAL: none, or a verified one.
      if (!s.authorized && (certReqs === CERT_REQS.required || hasCert)) {
        return this.refuse(`client certificate refused: ${hasCert ? (err?.code ?? "not verified") : "none sent"}`);
      }
      if (s.authorized && hasCert) this.info.clientSubject = formatDistinguishedName(peer.subject);
    }
    this.info.scheme = "https";
    this.info.tlsVersion = s.getTLSVersion?.() ?? "TLS";
    this.admit(tlsSocket, null);
  }

  private admit(socket: Socket, rest: Uint8Array | null): void {
    this.state = "DONE";
    this.server.forgetPreamble(this);
    this.server.admitConnection(socket, this.info, rest);
  }

  onDeadline(): void {
    this.refuse(this.state === "PROXY_HEADER" ? "no complete PROXY header within --header-timeout" : "no TLS handshake within --header-timeout");
  }

  onDrain(): void {}

  onPeerEnd(): void {
    if (this.state !== "DONE") this.close();
  }

  onClose(): void {
    if (this.state !== "DONE") this.state = "DONE";
    this.server.forgetPreamble(this);
  }

  close(): void {
    this.state = "DONE";
    this.server.forgetPreamble(this);
    this.current.terminate();
    if (this.current !== this.socket) this.socket.terminate();
  }

  /** Nothing is answered (no HTTP was spoken yet): the reason goes to the debug log, the connection is closed. */
  private refuse(reason: string): void {
    this.server.log.debug(`connection from ${this.info.peerAddr ?? this.info.remoteAddr} closed: ${reason}`);
    this.close();
  }
}

// ==== 5. Connection state ====
// What socket.data holds: a Conn, with its state, parser, exchange, unsent bytes and one deadline.
// Its state changes here and nowhere else, through Conn.transition.

type Deadline = "none" | "header" | "body" | "idle" | "linger";

/** How an exchange ended: the response whole, the response cut, or the client gone first. */
type ExchangeEnding = "finished" | "aborted" | "client-gone";

/**
 * Where a connection is in its life. Every change goes through Conn.transition, which
 * refuses an edge missing from CONN_TRANSITIONS (h11's _state.py: a missing entry is a bug).
 * Facts that hold in several states stay flags beside it: the peer's FIN (hasPeerEnded),
 * reading paused for backpressure (isPaused), unsent bytes (pending), the request body's progress.
 */
type ConnState =
  | "READING_HEAD" // no exchange: waiting for, or reading, the next request head
  | "IN_EXCHANGE" // a request is with the app: its body is read, its response written (`exchange` is set)
  | "WRITING_LAST" // no more requests are read: what is queued goes out, then FIN
  | "LINGERING" // FIN sent: what the client still sends is read and dropped (RFC 9112 §9.6)
  | "PARKED" // accepted over --max-connections: held unread until a connection closes
  | "CLOSED"; // the socket is gone

const CONN_TRANSITIONS: { readonly [from in ConnState]: readonly ConnState[] } = {
  READING_HEAD: ["IN_EXCHANGE", "WRITING_LAST", "PARKED", "CLOSED"],
  IN_EXCHANGE: ["READING_HEAD", "WRITING_LAST", "CLOSED"],
  WRITING_LAST: ["LINGERING", "CLOSED"],
  LINGERING: ["CLOSED"],
  PARKED: ["READING_HEAD", "CLOSED"],
  CLOSED: [],
};

/** One client connection: its parser, its exchange in progress, its unsent bytes and its one deadline. */
export class Conn {
  readonly parser: RequestParser;
  exchange: Exchange | null = null;
  private state: ConnState = "READING_HEAD";
  private isClosingAfterResponse = false;
  deadline = 0;
  deadlineKind: Deadline = "none";
  private outbox: Chunk[] = [];
  private outboxBytes = 0;
  private isFlushQueued = false;
  private pending: Uint8Array | null = null;
  private lastDrainAt = 0;
  private drainWaiters: (() => void)[] = [];
  private isPumping = false;
  private isPaused = false;
  private discardedBytes = 0;
  private hasPeerEnded = false;
  private exchangeBytesFlushed = false;
  private isBodyDone = true;
  private hasSentContinue = false;
  private bodyLeftover: Uint8Array | null = null;
  private bodyWaiter: (() => void) | null = null;

  constructor(readonly socket: Socket, readonly server: Server, readonly info: ConnectionInfo) {
    this.parser = new RequestParser(server.parserLimits);
  }

  get isBackedUp(): boolean {
    return this.pending !== null;
  }

  /** Bytes the socket has not taken yet (what backpressure bounds). */
  get unsentBytes(): number {
    return (this.pending?.length ?? 0) + this.outboxBytes;
  }

  get isClosed(): boolean {
    return this.state === "CLOSED";
  }

  get isParked(): boolean {
    return this.state === "PARKED";
  }

  /** No more requests are read: the last bytes are going out, or went out and we linger. */
  private get isEnding(): boolean {
    return this.state === "WRITING_LAST" || this.state === "LINGERING";
  }

  private transition(to: ConnState): void {
    if (!CONN_TRANSITIONS[this.state].includes(to)) throw new Error(`connection state ${this.state} → ${to} is not an allowed transition`);
    this.state = to;
  }

  get shouldCloseAfterResponse(): boolean {
    return this.isClosingAfterResponse;
  }

  /** The response in progress is the last on this connection (its head then says `Connection: close`). */
  closeAfterThisResponse(): void {
    this.isClosingAfterResponse = true;
  }

  get hasNoBodyLeft(): boolean {
    return this.isBodyDone && this.bodyLeftover === null;
  }

  // ---- Write and backpressure ----
  // socket.write() takes what the kernel accepts and drops the rest (../shared/bun-notes.md):
  // what it did not take waits in `pending` and goes out on `drain`. While anything is
  // pending the app is not asked for more, so a slow reader never makes us hold more than
  // about one flush of its response.

  whenDrained(cb: () => void): void {
    if (this.pending === null) cb();
    else this.drainWaiters.push(cb);
  }

  /** Text we made ourselves (status lines, framing): ASCII, so its length is its byte length. */
  enqueueAscii(text: string): void {
    this.enqueue(text, text.length);
  }

  /** Queue bytes for the socket; `byteLength` must be exact (strings go out as UTF-8). */
  enqueue(data: Chunk, byteLength: number): void {
    this.outbox.push(data);
    this.outboxBytes += byteLength;
    if (this.outboxBytes >= OUTBOX_FLUSH_BYTES) this.flush();
    else if (!this.isFlushQueued && !this.isPumping) {
      // (Inside pumpRequests the flush comes when the loop ends: one write for all it answered.)
      // What one turn of the event loop gathered goes out at its end: a streamed chunk
      // is never held back waiting for the next (PEP 3333: no delaying a yielded block).
      this.isFlushQueued = true;
      queueMicrotask(this.flushQueued);
    }
  }

  private readonly flushQueued = (): void => {
    this.isFlushQueued = false;
    this.flush();
  };

  discardOutbox(): void {
    this.outbox = [];
    this.outboxBytes = 0;
  }

  hasSentBytesOf(ex: Exchange): boolean {
    return ex === this.exchange && this.exchangeBytesFlushed;
  }

  /** Hand the gathered bytes to the socket in one write. */
  flush(): void {
    const outbox = this.outbox;
    if (outbox.length === 0 || this.isClosed) return;
    const byteLength = this.outboxBytes;
    this.outbox = [];
    this.outboxBytes = 0;
    if (this.exchange !== null) this.exchangeBytesFlushed = true;
    const data = outbox.length === 1 ? outbox[0] : joinChunks(outbox, byteLength);
    if (this.pending !== null) {
      this.pending = Buffer.concat([this.pending, typeof data === "string" ? Buffer.from(data) : data]);
      return;
    }
    this.writeNow(data, byteLength);
  }

  private writeNow(data: Chunk, byteLength: number): void {
    const written = this.socket.write(data);
    if (written < 0) return; // closed; the close handler cleans up
    const metrics = this.server.metrics;
    if (metrics !== null) metrics.bytesOut += written;
    if (written < byteLength) {
      const bytes = typeof data === "string" ? Buffer.from(data) : data;
      this.pending = bytes.subarray(written);
      this.lastDrainAt = this.server.now;
    }
  }

  /** A 1xx response: after whatever of the previous response is still unsent, never inside it. */
  private sendInterim(text: string): void {
    if (this.pending !== null) this.pending = Buffer.concat([this.pending, Buffer.from(text)]);
    else this.writeNow(text, text.length);
  }

  onDrain(): void {
    const pending = this.pending;
    if (pending !== null) {
      const written = this.socket.write(pending);
      if (written < 0) return;
      const metrics = this.server.metrics;
      if (metrics !== null) metrics.bytesOut += written;
      if (written > 0) this.lastDrainAt = this.server.now;
      if (written < pending.length) {
        this.pending = pending.subarray(written);
        return;
      }
      this.pending = null;
    }
    if (this.isEnding) return this.closeLingering();
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of waiters) cb();
  }

  // ---- Reading requests; keep-alive, close, timeouts (RFC 9112 §9) ----

  onData(bytes: Buffer): void {
    const metrics = this.server.metrics;
    if (metrics !== null) metrics.bytesIn += bytes.length;
    if (this.isEnding || this.isClosed) return this.discard(bytes.length); // after the last answer nothing more is read (RFC 9112 §9.6)
    this.parser.feedOwned(bytes);
    if (this.isParked) return;
    if (this.bodyWaiter !== null) {
      this.setDeadline("body", this.server.config.headerTimeoutS);
      const waiter = this.bodyWaiter;
      this.bodyWaiter = null;
      waiter();
    } else if (this.state === "READING_HEAD") {
      this.pumpRequests();
    }
    this.applyReadBackpressure();
  }

  /** Stop reading a client that sends faster than its requests are consumed; resume when caught up. */
  private applyReadBackpressure(): void {
    if (this.state === "CLOSED") return; // nothing left to pause or resume
    // While ending, everything that arrives is read and dropped: unread bytes would turn the close into RST.
    const isFull = !this.isEnding && this.parser.bufferedBytes > MAX_BUFFERED_AHEAD_BYTES;
    if (isFull && !this.isPaused) {
      this.isPaused = true;
      this.socket.pause();
    } else if (!isFull && this.isPaused && !this.isParked) {
      this.isPaused = false;
      this.socket.resume();
    }
  }

  /** Read requests while none is in progress: pipelined requests are answered in order (RFC 9112 §9.3.2). */
  pumpRequests(): void {
    if (this.isPumping) return;
    this.isPumping = true;
    try {
      while (this.state === "READING_HEAD") {
        if (this.server.isShuttingDown && this.parser.bufferedBytes === 0) return this.closeWhenWritten();
        const event = this.parser.next();
        if (event.kind === "head") {
          // RFC 9110 §9.3.6: any 2xx to CONNECT turns the connection into a tunnel; we are no
          // proxy, so the front refuses it before an app (TypeScript or Python) can answer.
          if (event.head.method === "CONNECT") return this.reject(501, "CONNECT is not supported: this server is not a proxy");
          let forwarded: ForwardedClient | null = null;
          if (this.server.forwarded !== null) {
            try {
              forwarded = this.server.forwarded.read(event.head.headers, this.info);
            } catch (err) {
              if (err instanceof HttpError) return this.reject(err.status, err.message);
              throw err;
            }
          }
          this.startExchange(event.head, forwarded);
          continue;
        }
        if (event.kind === "need-more") {
          // Every complete request it sent is answered; a head cut by the client's FIN can never
          // complete, and there is no one to answer it for: close now, not at the header timeout.
          if (this.hasPeerEnded) return this.closeAfterFlush();
          if (this.parser.isInHead && this.deadlineKind !== "header") this.setDeadline("header", this.server.config.headerTimeoutS);
          return;
        }
        if (event.kind === "error") {
          this.server.metrics?.countParseError(event.code);
          return this.reject(event.status, event.message);
        }
        return this.reject(400, "unexpected body bytes"); // unreachable: bodies belong to an exchange
      }
    } finally {
      this.isPumping = false;
      this.flush();
      this.applyReadBackpressure();
    }
  }

  private startExchange(head: RequestHead, forwarded: ForwardedClient | null): void {
    this.setDeadline("none", 0);
    this.exchangeBytesFlushed = false;
    this.hasSentContinue = false;
    this.bodyLeftover = null;
    this.isBodyDone = !head.chunked && head.contentLength <= 0;
    if (this.isBodyDone) this.parser.next(); // the "end" of a bodiless request
    const ex = new Exchange(this, head, this.server, forwarded);
    this.exchange = ex;
    this.transition("IN_EXCHANGE");
    this.server.exchangeStarted();
    try {
      this.server.app.handle(ex);
    } catch (err) {
      ex.failApp(err);
    }
  }

  /**
   * Request body bytes for the exchange in progress, at most `max`: data, null at the end,
   * or undefined when the caller must wait for onBodyReadable. The first read answers
   * `Expect: 100-continue` (RFC 9110 §10.1.1), so a client is never asked for a body the
   * app does not want.
   */
  readBody(max: number): Uint8Array | null | undefined {
    const ex = this.exchange;
    if (ex === null) return null;
    if (this.bodyLeftover !== null) {
      const data = this.bodyLeftover;
      this.bodyLeftover = data.length > max ? data.subarray(max) : null;
      return data.length > max ? data.subarray(0, max) : data;
    }
    if (this.isBodyDone) return null;
    if (ex.head.expectContinue && !this.hasSentContinue && !ex.isHeadCommitted) {
      this.hasSentContinue = true;
      this.sendInterim("HTTP/1.1 100 Continue\r\n\r\n");
    }
    const event = this.parser.next();
    switch (event.kind) {
      case "body":
        if (event.data.length > max) {
          this.bodyLeftover = event.data.subarray(max);
          return event.data.subarray(0, max);
        }
        return event.data;
      case "end":
        this.isBodyDone = true;
        this.applyReadBackpressure();
        return null;
      case "need-more":
        this.applyReadBackpressure();
        if (this.hasPeerEnded) {
          ex.failWith(400, "");
          ex.abort();
        }
        return undefined;
      case "error":
        this.server.metrics?.countParseError(event.code);
        this.server.log.debug(`bad request body from ${this.info.remoteAddr}: ${event.message}`);
        ex.failWith(event.status, "");
        ex.abort();
        return undefined;
      case "head":
        throw new Error("unreachable: a head inside a body");
    }
  }

  /**
   * The body bytes received so far, at most `max`, in the pieces they came in; `isEnd`
   * once the body is complete. No pieces and no end: wait for onBodyReadable.
   */
  readReceivedBody(max: number): { pieces: Uint8Array[]; bytes: number; isEnd: boolean } {
    const pieces: Uint8Array[] = [];
    let bytes = 0;
    while (bytes < max) {
      const data = this.readBody(Math.max(1, max - bytes));
      if (data === undefined) break;
      if (data === null) return { pieces, bytes, isEnd: true };
      pieces.push(data);
      bytes += data.length;
    }
    return { pieces, bytes, isEnd: false };
  }

  onBodyReadable(cb: () => void): void {
    this.bodyWaiter = cb;
    this.setDeadline("body", this.server.config.headerTimeoutS);
  }

  /** The response is complete: keep the connection for the next request, or close it. */
  finishExchange(ex: Exchange): void {
    if (ex === this.exchange) this.endExchange(ex, "finished");
  }

  /** The response cannot be completed honestly: cut the connection so it cannot look whole. */
  abortExchange(ex: Exchange): void {
    if (ex === this.exchange) this.endExchange(ex, "aborted");
  }

  /**
   * The one place an exchange ends, however it ended: logged once, released, counted out
   * of the server's in-flight exchanges; then the connection goes on as the ending says.
   */
  private endExchange(ex: Exchange, ending: ExchangeEnding): void {
    // A client gone after the app was done: that exchange was logged when it was done.
    if (ending !== "client-gone" || !ex.isDone) this.server.logAccess(ex);
    this.exchange = null;
    this.bodyWaiter = null;
    this.server.exchangeEnded();
    switch (ending) {
      case "finished":
        return this.readNextRequestOrClose();
      case "aborted":
        this.flush();
        return this.close();
      case "client-gone":
        return ex.abort(); // stop the app: no one is left to answer
    }
  }

  /** After a whole response: RFC 9112 §9.3 persistence, unless this response was the last. */
  private readNextRequestOrClose(): void {
    if (!this.isBodyDone && !this.skipUnreadBody()) this.closeAfterThisResponse();
    this.flush();
    if (this.shouldCloseAfterResponse) return this.closeAfterFlush();
    this.transition("READING_HEAD");
    this.setDeadline("idle", this.server.config.keepAliveS);
    if (!this.isPumping) this.pumpRequests(); // (inside pumpRequests its loop reads the next one)
  }

  /** Skip the part of a body the app did not read, if it is all here already; else we must close. */
  private skipUnreadBody(): boolean {
    this.bodyLeftover = null;
    for (;;) {
      const event = this.parser.next();
      if (event.kind === "end") return (this.isBodyDone = true);
      if (event.kind !== "body") return false;
    }
  }

  private reject(status: number, message: string): void {
    this.server.log.debug(`rejected request from ${this.info.remoteAddr}: ${status} ${message}`);
    this.discardOutbox();
    this.enqueueAscii(serializeRejection(status, message));
    this.flush();
    this.closeAfterFlush();
  }

  /** No more requests are read: send what is queued, then close with FIN (a lingering close). */
  private closeAfterFlush(): void {
    // Already ending (Server.stop asks every connection): its linger deadline must stand.
    if (this.isEnding) return;
    this.transition("WRITING_LAST");
    this.setDeadline("none", 0);
    this.applyReadBackpressure(); // a paused socket would keep unread bytes in the kernel
    if (this.pending === null) this.closeLingering();
  }

  /**
   * The last byte is written: half-close (FIN), then read and drop what the client still
   * sends until its own FIN, LINGER_MS or LINGER_MAX_DISCARD_BYTES, whichever comes first.
   * socket.end() alone closes at once, and Linux answers unread or later bytes with RST.
   */
  private closeLingering(): void {
    if (this.state !== "WRITING_LAST") return;
    if (this.hasPeerEnded) return void this.socket.end(); // its FIN came after all its bytes: none are unread
    this.transition("LINGERING");
    this.socket.shutdown();
    this.setDeadline("linger", LINGER_MS / 1000);
  }

  /** Bytes that arrive after the last answer: dropped, and counted against the linger cap. */
  private discard(byteLength: number): void {
    this.discardedBytes += byteLength;
    if (this.state === "LINGERING" && this.discardedBytes > LINGER_MAX_DISCARD_BYTES) this.socket.end();
  }

  setDeadline(kind: Deadline, seconds: number): void {
    this.deadlineKind = kind;
    this.deadline = kind === "none" ? 0 : this.server.now + seconds * 1000;
  }

  onDeadline(): void {
    const kind = this.deadlineKind;
    if (kind === "idle" && this.pending !== null) {
      // The client is still reading the last response: it is not idle, unless it stopped
      // taking bytes for --timeout seconds (then it would hold the unsent body forever).
      const timeoutS = this.server.config.timeoutS; // 0: no timeout (gunicorn's meaning)
      if (timeoutS === 0 || this.server.now - this.lastDrainAt < timeoutS * 1000) {
        return this.setDeadline("idle", this.server.config.keepAliveS);
      }
      this.setDeadline("none", 0);
      return this.close(); // that response can never be completed: cut it (RST)
    }
    this.setDeadline("none", 0);
    switch (kind) {
      case "header":
        // In the head even when every line so far was whole (and consumed): RFC 9110 §15.5.9.
        if (this.parser.isInHead) return this.reject(408, "request head not received in time");
        break;
      case "body":
        if (this.exchange !== null) {
          const ex = this.exchange;
          ex.failWith(408, "");
          ex.abort();
          return;
        }
        break;
      case "linger":
        return void this.socket.end(); // what the client sent in LINGER_MS was read; close now
    }
    this.closeAfterFlush(); // idle, or never sent a byte: nothing is owed, so FIN (RFC 9112 §9.5)
  }

  /** The client half-closed: finish what it asked for, then close (allowHalfOpen keeps the answer deliverable). */
  onPeerEnd(): void {
    this.hasPeerEnded = true;
    if (this.state === "LINGERING") return void this.socket.end(); // both sides are done: a clean close
    if (this.bodyWaiter !== null) {
      const waiter = this.bodyWaiter;
      this.bodyWaiter = null;
      waiter();
    } else if (this.state === "READING_HEAD") {
      this.pumpRequests();
    }
  }

  /** Close once the bytes already written are delivered (a finished response is never cut), with FIN. */
  closeWhenWritten(): void {
    this.closeAfterFlush();
  }

  close(): void {
    if (this.isClosed) return;
    this.socket.terminate();
    this.onClose();
  }

  onClose(): void {
    if (this.state === "CLOSED") return;
    const wasParked = this.state === "PARKED";
    this.transition("CLOSED");
    this.pending = null;
    this.drainWaiters = [];
    this.bodyWaiter = null;
    if (this.exchange !== null) this.endExchange(this.exchange, "client-gone");
    if (wasParked) this.server.forgetParkedConnection(this);
    else this.server.forgetConnection(this);
  }

  /** Over --max-connections: hold the connection unread, like a listen backlog, until unpark. */
  park(): void {
    this.transition("PARKED");
    this.socket.pause();
  }

  unpark(): void {
    this.transition("READING_HEAD");
    this.socket.resume();
    this.setDeadline("header", this.server.config.headerTimeoutS);
    this.pumpRequests();
  }
}

type Socket = import("bun").Socket<Conn | undefined>;

const UTF8 = new TextEncoder();

/** Chunks → one string when all are strings, else one buffer (strings written as UTF-8). */
function joinChunks(chunks: Chunk[], byteLength: number): Chunk {
  let isAllStrings = true;
  for (const c of chunks) if (typeof c !== "string") { isAllStrings = false; break; }
  if (isAllStrings) return chunks.join("");
  const out = new Uint8Array(byteLength);
  let off = 0;
  for (const c of chunks) {
    if (typeof c !== "string") {
      out.set(c, off);
      off += c.length;
    } else if (off === 0) {
      off = UTF8.encodeInto(c, out).written; // at offset 0 no view of `out` is needed
    } else {
      off = writeShortAscii(out, off, c);
    }
  }
  return off === byteLength ? out : out.subarray(0, off);
}

/**
 * Writes c at off and returns the offset after it. Chunk-size lines and CRLFs are short
 * ASCII and are copied by hand: a typed-array view for encodeInto costs more than they do.
 */
function writeShortAscii(out: Uint8Array, off: number, c: string): number {
  if (c.length <= 16) {
    let i = 0;
    while (i < c.length && c.charCodeAt(i) < 0x80) out[off + i] = c.charCodeAt(i++);
    if (i === c.length) return off + i;
  }
  return off + UTF8.encodeInto(c, out.subarray(off)).written;
}

// ==== 6. Parse the request: head, then body framing ====

export interface ParserLimits {
  maxRequestLineBytes: number;
  maxHeaderFields: number;
  maxHeaderFieldBytes: number;
  maxBodyBytes: number;
}

export interface RequestHead {
  method: string;
  target: string;
  path: string;
  query: string;
  version: "HTTP/1.0" | "HTTP/1.1";
  headers: [name: string, value: string][];
  contentLength: number;
  chunked: boolean;
  keepAlive: boolean;
  expectContinue: boolean;
}

export type ParseEvent =
  | { kind: "need-more" }
  | { kind: "head"; head: RequestHead }
  | { kind: "body"; data: Uint8Array }
  | { kind: "end" }
  | { kind: "error"; status: number; code: string; message: string };

const NEED_MORE: ParseEvent = Object.freeze({ kind: "need-more" });
const END: ParseEvent = Object.freeze({ kind: "end" });

type ParserState =
  | "REQUEST_LINE" // before and in the request line (leading empty lines skipped)
  | "FIELDS" // header field lines until the blank line
  | "BODY_LENGTH" // Content-Length bytes left
  | "CHUNK_SIZE" // chunk-size [ chunk-ext ] CRLF
  | "CHUNK_DATA" // chunk bytes left
  | "CHUNK_DATA_END" // the CRLF after chunk data
  | "TRAILERS" // trailer field lines until the blank line
  | "HEAD_DONE" // head returned; framing decides the next state
  | "ERROR";

/**
 * Incremental, sans-IO HTTP/1.1 request parser (RFC 9112). Feed bytes, then call
 * next() until "need-more". Each complete line is consumed as soon as it is read, so
 * feeding byte by byte costs no more than feeding whole. After an error every call
 * returns the same error: nothing after a bad request is ever read as a request.
 */
export class RequestParser {
  private readonly limits: ParserLimits;
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  // Buffers fed while `buf` still had bytes: joined to it only when a step needs more
  // than `buf` holds, so a body arriving in many reads is handed out without recopying.
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private state: ParserState = "REQUEST_LINE";
  private error: ParseEvent | null = null;
  // The head being read.
  private head: RequestHead | null = null;
  private fieldCount = 0;
  // The body being read.
  private bodyLeft = 0;
  private bodyTotal = 0;

  constructor(limits: Partial<ParserLimits> = {}) {
    this.limits = {
      maxRequestLineBytes: limits.maxRequestLineBytes ?? DEFAULTS.limitRequestLine,
      maxHeaderFields: limits.maxHeaderFields ?? DEFAULTS.limitRequestFields,
      maxHeaderFieldBytes: limits.maxHeaderFieldBytes ?? DEFAULTS.limitRequestFieldSize,
      maxBodyBytes: limits.maxBodyBytes ?? DEFAULTS.limitRequestBody,
    };
  }

  get bufferedBytes(): number {
    return this.buf.length - this.pos + this.queuedBytes;
  }

  /** True between a request's first byte and its blank line (the header timeout runs then). */
  get isInHead(): boolean {
    return (this.state === "REQUEST_LINE" && this.bufferedBytes > 0) || this.state === "FIELDS";
  }

  /** Append bytes (copied: the caller may reuse its buffer, and body views handed out must not change). */
  feed(bytes: Uint8Array): void {
    this.feedOwned(Buffer.from(bytes));
  }

  /** Append a buffer the caller gives up (the server's sockets hand over fresh ones): no copy. */
  feedOwned(bytes: Buffer): void {
    if (bytes.length === 0 || this.state === "ERROR") return;
    if (this.pos >= this.buf.length && this.queue.length === 0) {
      this.buf = bytes;
      this.pos = 0;
    } else {
      this.queue.push(bytes);
      this.queuedBytes += bytes.length;
    }
  }

  next(): ParseEvent {
    for (;;) {
      const event = this.step();
      if (event !== NEED_MORE || this.queue.length === 0) return event;
      this.takeQueued();
    }
  }

  /** Moves the next queued buffer into `buf`, after what is left of it. */
  private takeQueued(): void {
    const bytes = this.queue.shift()!;
    this.queuedBytes -= bytes.length;
    this.buf = this.pos >= this.buf.length ? bytes : Buffer.concat([this.buf.subarray(this.pos), bytes]);
    this.pos = 0;
  }

  private step(): ParseEvent {
    switch (this.state) {
      case "REQUEST_LINE":
      case "FIELDS":
        return this.readHead();
      case "HEAD_DONE":
        return this.startBody();
      case "BODY_LENGTH":
        return this.readLengthBody();
      case "CHUNK_SIZE":
      case "CHUNK_DATA":
      case "CHUNK_DATA_END":
      case "TRAILERS":
        return this.readChunked();
      case "ERROR":
        return this.error!;
    }
  }

  private fail(status: number, code: string, message: string): ParseEvent {
    this.state = "ERROR";
    this.error = { kind: "error", status, code, message };
    this.buf = Buffer.alloc(0);
    this.pos = 0;
    this.queue = [];
    this.queuedBytes = 0;
    return this.error;
  }

  /**
   * Find the next CRLF-terminated line. Returns the index of its CR, -1 when the
   * line is incomplete, or -2 for a bare CR or bare LF (RFC 9112 §2.2: we reject
   * rather than guess, since peers disagreeing on line ends is how smuggling starts).
   */
  private findLineEnd(maxLineBytes: number): number {
    const buf = this.buf, end = buf.length;
    let i = this.pos;
    while (i < end) {
      const c = buf[i];
      if (c === CR) break;
      if (c === LF) return -2;
      i++;
    }
    if (i >= end - 1) return i - this.pos > maxLineBytes ? -3 : -1;
    return buf[i + 1] === LF ? i : -2;
  }

  private readHead(): ParseEvent {
    for (;;) {
      const isRequestLine = this.state === "REQUEST_LINE";
      const max = isRequestLine ? this.limits.maxRequestLineBytes : this.limits.maxHeaderFieldBytes;
      const cr = this.findLineEnd(max);
      if (cr === -1) return NEED_MORE;
      if (cr === -2) return this.fail(400, "BARE_CR_OR_LF", "line ends must be CRLF");
      const start = this.pos;
      if (cr === -3 || cr - start > max) {
        return isRequestLine
          ? this.fail(414, "REQUEST_LINE_TOO_LONG", "request line too long")
          : this.fail(431, "FIELD_TOO_LARGE", "header field too large");
      }
      this.pos = cr + 2;
      if (isRequestLine) {
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
        if (cr === start) continue;
        const err = this.parseRequestLine(start, cr);
        if (err) return err;
        this.state = "FIELDS";
        continue;
      }
      if (cr === start) return this.finishHead();
      const err = this.parseFieldLine(start, cr, this.head!.headers);
      if (err) return err;
    }
  }

  /** request-line = method SP request-target SP HTTP-version (RFC 9112 §3), nothing more. */
  private parseRequestLine(start: number, end: number): ParseEvent | null {
    const buf = this.buf;
    let sp1 = start;
    while (sp1 < end && IS_TCHAR[buf[sp1]]) sp1++;
    if (sp1 >= end || buf[sp1] !== SP) return this.fail(400, sp1 === start || sp1 >= end ? "BAD_REQUEST_LINE" : "BAD_METHOD", "malformed request line");
    if (sp1 === start) return this.fail(400, "BAD_METHOD", "method is not a token");
    let sp2 = sp1 + 1;
    while (sp2 < end && IS_TARGET_CHAR[buf[sp2]]) sp2++;
    if (sp2 >= end || buf[sp2] !== SP) return this.fail(400, "BAD_TARGET", "invalid byte in request target");
    if (sp2 === sp1 + 1) return this.fail(400, "BAD_TARGET", "empty request target");
    const version = this.parseVersion(sp2 + 1, end);
    if (typeof version !== "string") return version;
    const method = internMethod(buf, start, sp1);
    const target = latin1(buf, sp1 + 1, sp2);
    const form = splitTarget(method, target);
    if (form === null) return this.fail(400, "BAD_TARGET", "request target not allowed for this method");
    this.head = {
      method, target, path: form[0], query: form[1], version, headers: [],
      contentLength: -1, chunked: false, keepAlive: version === "HTTP/1.1", expectContinue: false,
    };
    this.fieldCount = 0;
    return null;
  }

  /** HTTP-version = "HTTP" "/" DIGIT "." DIGIT (RFC 9112 §2.3); we serve 1.0 and 1.1. */
  private parseVersion(start: number, end: number): "HTTP/1.0" | "HTTP/1.1" | ParseEvent {
    const b = this.buf;
    const wellFormed = end - start === 8 && b[start] === 0x48 && b[start + 1] === 0x54 && b[start + 2] === 0x54 &&
      b[start + 3] === 0x50 && b[start + 4] === 0x2f && HEX_VALUE[b[start + 5]] >= 0 && b[start + 5] <= 0x39 &&
      b[start + 6] === 0x2e && HEX_VALUE[b[start + 7]] >= 0 && b[start + 7] <= 0x39;
    if (!wellFormed) return this.fail(400, "BAD_VERSION", "malformed HTTP version");
    if (b[start + 5] === 0x31 && b[start + 7] === 0x31) return "HTTP/1.1";
    if (b[start + 5] === 0x31 && b[start + 7] === 0x30) return "HTTP/1.0";
    return this.fail(505, "VERSION_NOT_SUPPORTED", "only HTTP/1.0 and HTTP/1.1 are served");
  }

  /** field-line = field-name ":" OWS field-value OWS (RFC 9112 §5). */
  private parseFieldLine(start: number, end: number, into: [string, string][]): ParseEvent | null {
    const buf = this.buf;
    // RFC 9112 §5.2: obs-fold is rejected; a line starting with whitespace is one.
    if (isOws(buf[start])) return this.fail(400, "OBS_FOLD", "obsolete line folding");
    if (++this.fieldCount > this.limits.maxHeaderFields) {
      return this.fail(431, "TOO_MANY_FIELDS", "too many header fields");
    }
    // RFC 9112 §5.1: the name is a token, then the colon, with no whitespace between.
    let colon = start;
    while (colon < end && IS_TCHAR[buf[colon]]) colon++;
    if (colon >= end || buf[colon] !== COLON) {
      return colon < end ? this.fail(400, "BAD_FIELD_NAME", "header name is not a token") : this.fail(400, "BAD_FIELD", "header field without a colon");
    }
    if (colon === start) return this.fail(400, "BAD_FIELD_NAME", "header name is not a token");
    let a = colon + 1, b = end;
    while (a < b && isOws(buf[a])) a++;
    while (b > a && isOws(buf[b - 1])) b--;
    for (let i = a; i < b; i++) {
      if (!IS_FIELD_CHAR[buf[i]]) return this.fail(400, "BAD_FIELD_VALUE", "invalid byte in header value");
    }
    into.push([internFieldName(buf, start, colon), latin1(buf, a, b)]);
    return null;
  }

  /** The blank line: apply the message-level rules, then hand the head out. */
  private finishHead(): ParseEvent {
    const head = this.head!;
    const err = applyHeadRules(head, this.limits.maxBodyBytes);
    if (err) return this.fail(err.status, err.code, err.message);
    this.state = "HEAD_DONE";
    return { kind: "head", head };
  }

  // ---- Body framing (RFC 9112 §6) ----

  /** RFC 9112 §6.3: chunked, else Content-Length, else no body (requests are never close-delimited). */
  private startBody(): ParseEvent {
    const head = this.head!;
    this.bodyTotal = 0;
    if (head.chunked) {
      this.state = "CHUNK_SIZE";
      return this.readChunked();
    }
    if (head.contentLength > 0) {
      this.bodyLeft = head.contentLength;
      this.state = "BODY_LENGTH";
      return this.readLengthBody();
    }
    return this.endMessage();
  }

  private endMessage(): ParseEvent {
    this.state = "REQUEST_LINE";
    this.head = null;
    return END;
  }

  private takeBody(max: number): Uint8Array {
    const n = Math.min(max, this.buf.length - this.pos);
    const data = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return data;
  }

  private readLengthBody(): ParseEvent {
    if (this.bodyLeft === 0) return this.endMessage();
    if (this.pos >= this.buf.length) return NEED_MORE;
    const data = this.takeBody(this.bodyLeft);
    this.bodyLeft -= data.length;
    return { kind: "body", data };
  }

  /** chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 §7.1). */
  private readChunked(): ParseEvent {
    for (;;) {
      switch (this.state) {
        case "CHUNK_SIZE": {
          const cr = this.findLineEnd(MAX_CHUNK_LINE_BYTES);
          if (cr === -1) return NEED_MORE;
          if (cr < 0 || cr - this.pos > MAX_CHUNK_LINE_BYTES) return this.fail(400, "BAD_CHUNK", "malformed chunk size line");
          const size = this.parseChunkSizeLine(this.pos, cr);
          if (typeof size !== "number") return size;
          this.pos = cr + 2;
          if (size === 0) {
            this.state = "TRAILERS";
            this.fieldCount = 0;
            continue;
          }
          this.bodyLeft = size;
          this.state = "CHUNK_DATA";
          continue;
        }
        case "CHUNK_DATA": {
          if (this.pos >= this.buf.length) return NEED_MORE;
          const data = this.takeBody(this.bodyLeft);
          this.bodyLeft -= data.length;
          if (this.bodyLeft === 0) this.state = "CHUNK_DATA_END";
          return { kind: "body", data };
        }
        case "CHUNK_DATA_END": {
          if (this.buf.length - this.pos < 2) {
            if (this.buf.length > this.pos && this.buf[this.pos] !== CR) return this.fail(400, "BAD_CHUNK", "chunk data not followed by CRLF");
            return NEED_MORE;
          }
          if (this.buf[this.pos] !== CR || this.buf[this.pos + 1] !== LF) return this.fail(400, "BAD_CHUNK", "chunk data not followed by CRLF");
          this.pos += 2;
          this.state = "CHUNK_SIZE";
          continue;
        }
        case "TRAILERS": {
          // RFC 9112 §7.1.2: trailer fields are read with the header rules, then dropped.
          const cr = this.findLineEnd(this.limits.maxHeaderFieldBytes);
          if (cr === -1) return NEED_MORE;
          if (cr === -2) return this.fail(400, "BARE_CR_OR_LF", "line ends must be CRLF");
          if (cr === -3 || cr - this.pos > this.limits.maxHeaderFieldBytes) return this.fail(431, "FIELD_TOO_LARGE", "trailer field too large");
          const start = this.pos;
          this.pos = cr + 2;
          if (cr === start) return this.endMessage();
          const err = this.parseFieldLine(start, cr, []);
          if (err) return err;
          continue;
        }
        default:
          throw new Error(`unreachable parser state ${this.state}`);
      }
    }
  }

  /** chunk-size [ chunk-ext ]: HEXDIG only, then ( BWS ";" BWS name [ BWS "=" BWS value ] )* (RFC 9112 §7.1.1). */
  private parseChunkSizeLine(start: number, end: number): number | ParseEvent {
    const buf = this.buf;
    let i = start, size = 0;
    while (i < end && HEX_VALUE[buf[i]] >= 0) {
      if (i - start >= MAX_CHUNK_SIZE_DIGITS) return this.fail(400, "BAD_CHUNK", "chunk size too long");
      size = size * 16 + HEX_VALUE[buf[i]];
      i++;
    }
    if (i === start) return this.fail(400, "BAD_CHUNK", "chunk size is not hex");
    if (!this.isValidChunkExtensions(i, end)) return this.fail(400, "BAD_CHUNK", "malformed chunk extension");
    this.bodyTotal += size;
    if (this.bodyTotal > this.limits.maxBodyBytes) return this.fail(413, "BODY_TOO_LARGE", "request body too large");
    return size;
  }

  private isValidChunkExtensions(i: number, end: number): boolean {
    const buf = this.buf;
    const skipBws = () => { while (i < end && isOws(buf[i])) i++; };
    const skipToken = () => { const s = i; while (i < end && IS_TCHAR[buf[i]]) i++; return i > s; };
    for (;;) {
      // BWS is allowed only before a ";" (RFC 9112 §7.1.1): "5 " alone is not a chunk size.
      if (i === end) return true;
      skipBws();
      if (buf[i] !== SEMI || i === end) return false;
      i++;
      skipBws();
      if (!skipToken()) return false;
      if (i === end) return true;
      const afterName = i;
      skipBws();
      if (buf[i] === SEMI) continue;
      if (buf[i] !== EQUALS || (i === end && i !== afterName)) return false;
      i++;
      skipBws();
      if (buf[i] === DQUOTE) {
        i++;
        for (;;) {
          if (i >= end) return false;
          const c = buf[i];
          if (c === DQUOTE) { i++; break; }
          if (c === BACKSLASH) {
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            if (i + 1 >= end || !(IS_QDTEXT[buf[i + 1]] || buf[i + 1] === DQUOTE || buf[i + 1] === BACKSLASH)) return false;
            i += 2;
            continue;
          }
          if (!IS_QDTEXT[c]) return false;
          i++;
        }
      } else if (!skipToken()) {
        return false;
      }
    }
  }
}

/**
 * The request-target forms of RFC 9112 §3.2: origin-form for every method, "*" for
 * OPTIONS only, authority-form for CONNECT only, absolute-form for any method.
 * Returns [path, query] or null when the form is not allowed.
 */
function splitTarget(method: string, target: string): [string, string] | null {
  if (method === "CONNECT") {
    // authority-form = uri-host ":" port; never a path.
    const colon = target.lastIndexOf(":");
    if (target[0] === "/" || colon <= 0 || parseDigits(target.slice(colon + 1)) < 0) return null;
    return ["", ""];
  }
  if (target === "*") return method === "OPTIONS" ? ["*", ""] : null;
  let pathAndQuery = target;
  if (target.charCodeAt(0) !== 0x2f) {
    // RFC 9110 §4.2.4: userinfo ("user:pass@") in an http(s) URI is not allowed.
    const scheme = /^https?:\/\/[^/?@]+(?=[/?]|$)/i.exec(target);
    if (scheme === null) return null;
    pathAndQuery = target.slice(scheme[0].length);
    if (pathAndQuery.charCodeAt(0) !== 0x2f) pathAndQuery = "/" + pathAndQuery;
  }
  const q = pathAndQuery.indexOf("?");
  return q === -1 ? [pathAndQuery, ""] : [pathAndQuery.slice(0, q), pathAndQuery.slice(q + 1)];
}

/** Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2): reg-name, IPv4 or an IP-literal. */
const HOST_PATTERN = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/;
function isValidHost(value: string): boolean {
  return HOST_PATTERN.test(value);
}

/** Message-level rules on a complete head: Host, framing, Expect, Connection. */
function applyHeadRules(head: RequestHead, maxBodyBytes: number): HttpError | null {
  let hosts = 0, contentLength = -1;
  let transferCodings: string[] | null = null;
  for (const [name, value] of head.headers) {
    switch (name) {
      case "host":
        // RFC 9112 §3.2: an invalid Host value is answered with 400.
        if (!isValidHost(value)) return new HttpError(400, "BAD_HOST", "invalid Host header");
        hosts++;
        break;
      case "content-length": {
        // RFC 9110 §8.6: digits only, or one value repeated. Two field lines are the same as one
        // list (RFC 9110 §5.3), so both forms agree; different values are refused (RFC 9112 §6.3 ¶5).
        const n = parseContentLength(value);
        if (n < 0) return new HttpError(400, "BAD_CONTENT_LENGTH", "invalid Content-Length");
        if (contentLength !== -1 && contentLength !== n) return new HttpError(400, "BAD_CONTENT_LENGTH", "conflicting Content-Length");
        contentLength = n;
        break;
      }
      case "transfer-encoding":
        transferCodings ??= [];
        for (const coding of splitList(value)) {
          if (!isToken(coding)) return new HttpError(400, "BAD_TRANSFER_ENCODING", "invalid Transfer-Encoding");
          transferCodings.push(coding.toLowerCase());
        }
        break;
      case "expect":
        // RFC 9110 §10.1.1: 100-continue is the only expectation; a 1.0 request's is ignored.
        if (value.toLowerCase() !== "100-continue") return new HttpError(417, "EXPECTATION_FAILED", "unsupported expectation");
        head.expectContinue = head.version === "HTTP/1.1";
        break;
      case "connection":
        for (const option of splitList(value)) {
          const o = option.toLowerCase();
          if (o === "close") head.keepAlive = false;
          else if (o === "keep-alive" && head.version === "HTTP/1.0") head.keepAlive = true;
        }
        break;
    }
  }
  // RFC 9112 §3.2: a 1.1 request has exactly one Host; more than one is always refused.
  if (hosts > 1 || (hosts === 0 && head.version === "HTTP/1.1")) return new HttpError(400, "BAD_HOST", "exactly one Host header is required");
  if (transferCodings !== null) {
    // RFC 9112 §6.1: Transfer-Encoding is 1.1-only; with Content-Length it is a smuggling attempt.
    if (head.version === "HTTP/1.0") return new HttpError(400, "TRANSFER_ENCODING_ON_1_0", "Transfer-Encoding in an HTTP/1.0 request");
    if (contentLength !== -1) return new HttpError(400, "LENGTH_AND_CHUNKED", "both Content-Length and Transfer-Encoding");
    // RFC 9112 §6.1: a sender MUST NOT apply chunked more than once; such framing is invalid, not unsupported.
    if (transferCodings.indexOf("chunked") !== transferCodings.lastIndexOf("chunked")) {
      return new HttpError(400, "CHUNKED_TWICE", "chunked transfer coding applied more than once");
    }
    // RFC 9112 §6.3 ¶4: unless chunked is the last coding the body's length cannot be known: 400 (MUST).
    if (transferCodings[transferCodings.length - 1] !== "chunked") {
      return new HttpError(400, "CHUNKED_NOT_FINAL", "chunked is not the final transfer coding");
    }
    // RFC 9112 §6.1: a coding the server does not understand (gzip, chunked) SHOULD get 501.
    if (transferCodings.length !== 1) {
      return new HttpError(501, "UNSUPPORTED_TRANSFER_CODING", "only chunked transfer coding is supported");
    }
    head.chunked = true;
    // RFC 9112 §9.6 ¶6: a chunked request the server cannot frame otherwise forces close on error only.
  }
  if (contentLength > maxBodyBytes) return new HttpError(413, "BODY_TOO_LARGE", "request body too large");
  head.contentLength = contentLength;
  if (!head.chunked && contentLength <= 0) head.expectContinue = false;
  return null;
}

// ==== 7. Environ ====

export interface ConnectionInfo {
  remoteAddr: string;
  remotePort: number;
  serverName: string;
  serverPort: number;
  scheme: "http" | "https";
  /** The socket's own peer, when a PROXY header or trusted forwarded headers named another client. */
  peerAddr: string | null;
  peerPort: number | null;
  /** "TLSv1.3" and such on a TLS connection, else null. */
  tlsVersion: string | null;
  /** The verified client certificate's subject ("CN=alice,O=Example"), with --cert-reqs 1 or 2. */
  clientSubject: string | null;
  /** Whether the peer is in --forwarded-allow-ips: decided at its first forwarded header. */
  isTrustedProxy: boolean | null;
}

const ENVIRON_KEY_CACHE = new Map<string, string>();
/** "user-agent" → "HTTP_USER_AGENT" (PEP 3333 / CGI §4.1.18). */
function environKey(name: string): string {
  let key = ENVIRON_KEY_CACHE.get(name);
  if (key === undefined) {
    key = "HTTP_" + name.toUpperCase().replaceAll("-", "_");
    if (ENVIRON_KEY_CACHE.size < 2048) ENVIRON_KEY_CACHE.set(name, key);
  }
  return key;
}

/** %XX → the byte, as a latin-1 char; a '%' not followed by two hex digits stays as it is. */
export function percentDecodeLatin1(s: string): string {
  if (s.indexOf("%") === -1) return s;
  let out = "";
  let last = 0;
  for (let i = 0; i + 2 < s.length; i++) {
    if (s.charCodeAt(i) !== 0x25) continue;
    const c1 = s.charCodeAt(i + 1), c2 = s.charCodeAt(i + 2);
    if (c1 > 0xff || c2 > 0xff || HEX_VALUE[c1] < 0 || HEX_VALUE[c2] < 0) continue;
    out += s.slice(last, i) + String.fromCharCode(HEX_VALUE[c1] * 16 + HEX_VALUE[c2]);
    i += 2;
    last = i + 1;
  }
  return out + s.slice(last);
}

/**
 * The CGI part of the PEP 3333 environ: native strings carrying bytes as latin-1.
 * The wsgi.* keys are added by whoever runs the app (this process or a Python worker).
 */
export function buildEnviron(head: RequestHead, conn: ConnectionInfo, scriptName: string, forwarded: ForwardedClient | null = null): Record<string, string> {
  let pathInfo = percentDecodeLatin1(head.path);
  if (scriptName !== "" && (pathInfo === scriptName || pathInfo.startsWith(scriptName + "/"))) {
    pathInfo = pathInfo.slice(scriptName.length);
  }
  const environ: Record<string, string> = {
    REQUEST_METHOD: head.method,
    SCRIPT_NAME: scriptName,
    PATH_INFO: pathInfo,
    QUERY_STRING: head.query,
    RAW_URI: head.target,
    SERVER_NAME: conn.serverName,
    SERVER_PORT: String(conn.serverPort),
    SERVER_PROTOCOL: head.version,
    SERVER_SOFTWARE: SERVER_HEADER,
    REMOTE_ADDR: conn.remoteAddr,
    REMOTE_PORT: String(conn.remotePort),
    "wsgi.url_scheme": conn.scheme,
  };
  if (conn.peerAddr !== null) {
    environ["bunicorn.peer_addr"] = conn.peerAddr;
    environ["bunicorn.peer_port"] = String(conn.peerPort);
  }
  if (conn.clientSubject !== null) environ.SSL_CLIENT_S_DN = conn.clientSubject;
  if (forwarded !== null) applyForwarded(environ, forwarded, conn);
  for (const [name, value] of head.headers) {
    // A '_' in a name would map onto the same key as '-': X_Forwarded_For could pose as
    // X-Forwarded-For, so such headers are dropped (as nginx and gunicorn ≥ 22 do).
    if (name.indexOf("_") !== -1) continue;
    if (name === "content-length") {
      // Repeats were checked to be one value (applyHeadRules): the app gets the value that framed
      // the body, never "5, 5", which no app can read as a length.
      environ.CONTENT_LENGTH ??= value.indexOf(",") === -1 ? value : String(head.contentLength);
      continue;
    }
    let key: string;
    if (name === "content-type") key = "CONTENT_TYPE";
    else key = environKey(name);
    const previous = environ[key];
    // RFC 9110 §5.3: repeated fields combine with ", "; Cookie uses "; " (RFC 6265 §5.4).
    environ[key] = previous === undefined ? value : previous + (name === "cookie" ? "; " : ", ") + value;
  }
  return environ;
}

/** A trusted proxy's word on the client: REMOTE_ADDR/REMOTE_PORT and wsgi.url_scheme, the peer kept in bunicorn.peer_*. */
function applyForwarded(environ: Record<string, string>, forwarded: ForwardedClient, conn: ConnectionInfo): void {
  if (forwarded.scheme !== null) environ["wsgi.url_scheme"] = forwarded.scheme;
  if (forwarded.addr === null) return;
  environ["bunicorn.peer_addr"] ??= conn.remoteAddr;
  environ["bunicorn.peer_port"] ??= String(conn.remotePort);
  environ.REMOTE_ADDR = forwarded.addr;
  if (forwarded.port !== null) environ.REMOTE_PORT = String(forwarded.port);
}

// ---- The client behind trusted proxies (X-Forwarded-For, X-Forwarded-Proto, RFC 7239 Forwarded) ----
// Only a peer in --forwarded-allow-ips is believed. Unlike gunicorn (which sets only
// wsgi.url_scheme) we also set REMOTE_ADDR, as Werkzeug's ProxyFix or nginx's realip would:
// apps behind a proxy need no middleware. The peer's own address stays in bunicorn.peer_addr.

/** gunicorn's default secure_scheme_headers: a header (lower-cased here), and the value that means https. */
export const SECURE_SCHEME_HEADERS: Readonly<Record<string, string>> = {
  "x-forwarded-protocol": "ssl",
  "x-forwarded-proto": "https",
  "x-forwarded-ssl": "on",
};

export interface ForwardedClient {
  /** The client's address, when the headers named one; null leaves the peer's. */
  addr: string | null;
  /** Its port, when the header gave one (RFC 7239 §6: for="[..]:port"); null leaves the peer's. */
  port: number | null;
  scheme: "http" | "https" | null;
}

type Hop = { addr: string; port: number | null };

/** RFC 7239 §6 node = nodename [ ":" node-port ]; only IP nodes name a client ("unknown" and obfuscated names do not). */
function parseForwardedNode(value: string): Hop | null {
  let host = value, portText: string | null = null;
  if (value.charCodeAt(0) === 0x5b) { // "[" IPv6address "]"
    const close = value.indexOf("]");
    if (close === -1) return null;
    host = value.slice(1, close);
    const rest = value.slice(close + 1);
    if (rest !== "") {
      if (rest.charCodeAt(0) !== COLON) return null;
      portText = rest.slice(1);
    }
    if (parseIPv6(host) === null) return null;
  } else {
    const colon = value.indexOf(":");
    if (colon !== -1) { host = value.slice(0, colon); portText = value.slice(colon + 1); }
    if (parseIPv4(host) === null) return null;
  }
  const ip = parseIp(host)!;
  if (portText === null) return { addr: formatIp(ip), port: null };
  const port = parseProxyPort(portText); // node-port = port / obfport: an obfuscated port names none
  return port < 0 ? { addr: formatIp(ip), port: null } : { addr: formatIp(ip), port };
}

/**
 * RFC 7239 §4: Forwarded = 1#forwarded-element, forwarded-element = [ pair ] *( ";" [ pair ] ),
 * pair = token "=" value, value = token / quoted-string (RFC 9110 §5.6.4). Empty list elements
 * are dropped (RFC 9110 §5.6.1). Null when malformed.
 */
function parseForwardedElements(value: string): Map<string, string>[] | null {
  const elements: Map<string, string>[] = [];
  let current = new Map<string, string>();
  const n = value.length;
  let i = 0;
  const skipOws = () => { while (i < n && isOws(value.charCodeAt(i))) i++; };
  for (;;) {
    skipOws();
    const nameStart = i;
    while (i < n && IS_TCHAR[value.charCodeAt(i)] === 1 && value.charCodeAt(i) < 256) i++;
    if (i > nameStart) {
      const key = value.slice(nameStart, i).toLowerCase();
      if (value.charCodeAt(i) !== EQUALS) return null;
      i++;
      let v: string;
      if (value.charCodeAt(i) === DQUOTE) {
        i++;
        v = "";
        for (;;) {
          if (i >= n) return null;
          const c = value.charCodeAt(i);
          if (c === DQUOTE) { i++; break; }
          if (c === BACKSLASH) { if (i + 1 >= n) return null; v += value[i + 1]; i += 2; continue; }
          if (c > 255 || IS_QDTEXT[c] !== 1) return null;
          v += value[i++];
        }
      } else {
        const start = i;
        while (i < n && value.charCodeAt(i) < 256 && IS_TCHAR[value.charCodeAt(i)] === 1) i++;
        if (i === start) return null;
        v = value.slice(start, i);
      }
      if (current.has(key)) return null; // RFC 7239 §4: a parameter at most once per element
      current.set(key, v);
    }
    skipOws();
    if (i >= n) {
      if (current.size > 0) elements.push(current);
      return elements;
    }
    const c = value.charCodeAt(i++);
    if (c === SEMI) continue;
    if (c !== 0x2c) return null;
    if (current.size > 0) elements.push(current);
    current = new Map();
  }
}

/**
 * The client behind a chain of proxies: each proxy appends the address it got the request
 * from, so only entries added by our trusted proxies can be believed. Walk from the right
 * and take the first hop that is not itself trusted; with "*" every hop is trusted and the
 * left-most is taken. A hop that names no address (malformed, "unknown", obfuscated) ends
 * the walk: the last believable hop is the client. Returns the index chosen, or -1.
 */
function pickClientIndex(hops: (Hop | null)[], trusted: AddressList): number {
  let chosen = -1;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i];
    if (hop === null) return chosen;
    chosen = i;
    if (!trusted.has(hop.addr)) return i;
  }
  return chosen;
}

/**
 * What a trusted peer's headers say of the client (names lower-cased, as the parser hands
 * them). RFC 7239 Forwarded, when present, wins over X-Forwarded-For, and its scheme is the
 * proto= of the element that named the client. Contradictory scheme headers are a 400
 * (gunicorn's InvalidSchemeHeaders). The caller applies this only for a trusted peer.
 */
export function readForwarded(headers: [string, string][], trusted: AddressList, secureHeaders: ReadonlyMap<string, string> = DEFAULT_SECURE_HEADERS): ForwardedClient {
  let scheme: "http" | "https" | null = null;
  const setScheme = (s: "http" | "https") => {
    if (scheme !== null && scheme !== s) throw new HttpError(400, "INVALID_SCHEME_HEADERS", "contradictory scheme headers");
    scheme = s;
  };
  let forwarded: string | null = null;
  let xff: string | null = null;
  for (const [name, value] of headers) {
    // RFC 9110 §5.3: repeated fields are one comma-separated list.
    if (name === "forwarded") forwarded = forwarded === null ? value : forwarded + "," + value;
    else if (name === "x-forwarded-for") xff = xff === null ? value : xff + "," + value;
    const secure = secureHeaders.get(name);
    if (secure !== undefined) setScheme(trimOws(value).toLowerCase() === secure ? "https" : "http");
  }
  let client: Hop | null = null;
  if (forwarded !== null) {
    const elements = parseForwardedElements(forwarded);
    if (elements !== null && elements.length > 0) {
      const hops = elements.map((e) => { const node = e.get("for"); return node === undefined ? null : parseForwardedNode(node); });
      const at = pickClientIndex(hops, trusted);
      if (at !== -1) {
        client = hops[at];
        const proto = elements[at].get("proto")?.toLowerCase(); // RFC 7239 §5.4, URI scheme names are case-insensitive (RFC 3986 §3.1)
        if (proto === "https" || proto === "http") setScheme(proto);
      }
    }
  } else if (xff !== null) {
    const hops = splitList(xff).map((part): Hop | null => { const ip = parseIp(part); return ip === null ? null : { addr: formatIp(ip), port: null }; });
    const at = pickClientIndex(hops, trusted);
    if (at !== -1) client = hops[at];
  }
  return { addr: client?.addr ?? null, port: client?.port ?? null, scheme };
}

/** Lower-cased names (a config file may write "X-FORWARDED-PROTO", as gunicorn's default does); values compared lower-cased. */
export function secureHeadersFrom(dict: Record<string, string>): Map<string, string> {
  const map = new Map<string, string>();
  for (const [k, v] of Object.entries(dict)) map.set(k.toLowerCase(), v.toLowerCase());
  return map;
}
const DEFAULT_SECURE_HEADERS = secureHeadersFrom(SECURE_SCHEME_HEADERS);

/**
 * --forwarded-allow-ips and secure_scheme_headers, applied per request. With none of the
 * headers present (the usual case) it costs one Set lookup per header and allocates nothing;
 * whether the peer is trusted is decided once per connection.
 */
export class ForwardedPolicy {
  private readonly names: Set<string>;
  constructor(readonly trusted: AddressList, readonly secureHeaders: ReadonlyMap<string, string>) {
    this.names = new Set(["forwarded", "x-forwarded-for", ...secureHeaders.keys()]);
  }

  /** Null when nothing changes: no such header, or a peer that is not trusted. Throws HttpError 400. */
  read(headers: [string, string][], info: ConnectionInfo): ForwardedClient | null {
    let isPresent = false;
    for (let i = 0; i < headers.length; i++) if (this.names.has(headers[i][0])) { isPresent = true; break; }
    if (!isPresent) return null;
    info.isTrustedProxy ??= this.trusted.has(info.remoteAddr);
    if (!info.isTrustedProxy) return null;
    return readForwarded(headers, this.trusted, this.secureHeaders);
  }
}

// ==== 8. start_response and the app (app stages, TypeScript apps) ====

export type Chunk = Uint8Array | string;
export type WriteFn = (chunk: Chunk) => void;
export type StartResponse = (status: string, headers: [string, string][], excInfo?: unknown) => WriteFn;
export type AppBody = (Iterable<Chunk> | AsyncIterable<Chunk>) & { close?: () => void };
export type Environ = Record<string, any>;
export type WsgiApp = (environ: Environ, startResponse: StartResponse) => AppBody | Promise<AppBody>;

/** wsgi.input for a TypeScript app: the whole body, already received (within --limit-request-body). */
export class BytesInput {
  private pos = 0;
  constructor(private readonly body: Uint8Array) {}

  read(n?: number): Uint8Array {
    const end = n === undefined || n < 0 ? this.body.length : Math.min(this.body.length, this.pos + n);
    const out = this.body.subarray(this.pos, end);
    this.pos = end;
    return out;
  }

  readline(limit = -1): Uint8Array {
    const nl = this.body.indexOf(LF, this.pos);
    let end = nl === -1 ? this.body.length : nl + 1;
    if (limit >= 0) end = Math.min(end, this.pos + limit);
    const out = this.body.subarray(this.pos, end);
    this.pos = end;
    return out;
  }

  readlines(): Uint8Array[] {
    return [...this];
  }

  *[Symbol.iterator](): Iterator<Uint8Array> {
    for (let line = this.readline(); line.length > 0; line = this.readline()) yield line;
  }
}

/** wsgi.errors: lines written by the app go to the error log. */
function makeErrorStream(log: Logger): { write(s: string): void; writelines(lines: string[]): void; flush(): void } {
  let partial = "";
  return {
    write(s: string) {
      partial += s;
      let nl: number;
      while ((nl = partial.indexOf("\n")) !== -1) {
        log.error(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
      }
    },
    writelines(lines: string[]) { for (const l of lines) this.write(l); },
    flush() { if (partial) { log.error(partial); partial = ""; } },
  };
}

/** Byte length of a chunk as it will go on the wire (strings are sent as UTF-8). */
function chunkByteLength(chunk: Chunk): number {
  return typeof chunk === "string" ? Buffer.byteLength(chunk) : chunk.byteLength;
}

function isThenable(x: unknown): x is PromiseLike<unknown> {
  return x !== null && typeof x === "object" && typeof (x as any).then === "function";
}

/**
 * One run of a TypeScript app for one exchange, PEP 3333 style: call it, then pull its
 * body chunk by chunk, pausing while the client socket is backed up, and call close()
 * once whatever happens. A class rather than closures: this runs once per request.
 */
class TypeScriptAppRun {
  private result: AppBody | null = null;
  private isClosed = false;
  private isIterationDone = false;
  private iterator: Iterator<Chunk> | null = null;
  private asyncIterator: AsyncIterator<Chunk> | null = null;
  readonly write: WriteFn = (chunk) => this.ex.writeBody(chunk);
  readonly startResponse: StartResponse = (status, headers, excInfo) => {
    const ex = this.ex;
    if (excInfo !== undefined && excInfo !== null) {
      // PEP 3333: with exc_info after the headers went out, re-raise.
      if (ex.isHeadCommitted) throw excInfo;
    } else if (ex.hasResponse) {
      throw new Error("start_response called a second time without exc_info (PEP 3333)");
    }
    ex.setResponse(status, headers);
    return this.write;
  };

  constructor(private readonly ex: Exchange, private readonly server: Server) {}

  run(app: WsgiApp, body: Uint8Array): void {
    const environ = this.ex.environ;
    environ["wsgi.version"] = [1, 0];
    environ["wsgi.input"] = new BytesInput(body);
    environ["wsgi.errors"] = this.server.errorStream;
    environ["wsgi.multithread"] = false;
    environ["wsgi.multiprocess"] = false;
    environ["wsgi.run_once"] = false;
    // The body is whole before the app runs, so reading to EOF is always safe.
    environ["wsgi.input_terminated"] = true;
    this.ex.onAbort = () => this.closeResult();
    try {
      const value = app(environ, this.startResponse);
      if (isThenable(value)) value.then((v) => this.consume(v), (err) => this.fail(err));
      else this.consume(value);
    } catch (err) {
      this.fail(err);
    }
  }

  private consume(value: unknown): void {
    const result = (this.result = value as AppBody);
    if (Array.isArray(result)) return this.writeArrayBody(result);
    if (result !== null && typeof result === "object") {
      if (typeof (result as any)[Symbol.iterator] === "function") {
        this.iterator = (result as Iterable<Chunk>)[Symbol.iterator]();
        return this.pumpSyncIterator();
      }
      if (typeof (result as any)[Symbol.asyncIterator] === "function") {
        this.asyncIterator = (result as AsyncIterable<Chunk>)[Symbol.asyncIterator]();
        void this.pumpAsyncIterator(this.asyncIterator);
        return;
      }
    }
    this.fail(new TypeError("the app must return an iterable of Uint8Array or string chunks (PEP 3333)"));
  }

  /** The whole body is known: give it a Content-Length (as gunicorn does for one-item lists). */
  private writeArrayBody(chunks: Chunk[]): void {
    const ex = this.ex;
    try {
      if (!ex.isHeadCommitted) {
        let total = ex.bytesWritten;
        for (const c of chunks) total += chunkByteLength(c);
        ex.knownLength = total;
      }
      for (const c of chunks) ex.writeBody(c);
      this.finish();
    } catch (err) {
      this.fail(err);
    }
  }

  private readonly pumpSyncIterator = (): void => {
    const ex = this.ex, it = this.iterator!;
    try {
      for (;;) {
        if (ex.isAborted) return this.closeResult();
        const r = it.next();
        if (r.done) {
          this.isIterationDone = true;
          return this.finish();
        }
        ex.writeBody(r.value);
        if (ex.conn.isBackedUp) return ex.conn.whenDrained(this.pumpSyncIterator);
      }
    } catch (err) {
      this.fail(err);
    }
  };

  private async pumpAsyncIterator(it: AsyncIterator<Chunk>): Promise<void> {
    const ex = this.ex;
    try {
      for (;;) {
        if (ex.isAborted) return this.closeResult();
        const r = await it.next();
        if (r.done) {
          this.isIterationDone = true;
          return this.finish();
        }
        ex.writeBody(r.value);
        if (ex.conn.isBackedUp) await new Promise<void>((resolve) => ex.conn.whenDrained(resolve));
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private finish(): void {
    if (this.ex.isDone) return this.closeResult();
    try {
      this.ex.endResponse();
    } finally {
      this.closeResult();
    }
  }

  private fail(err: unknown): void {
    this.closeResult();
    this.ex.failApp(err);
  }

  private closeResult(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (!this.isIterationDone) {
      // An iterator stopped early runs its finally blocks only through return(): the
      // TypeScript twin of Python's generator.close(), which PEP 3333's close() relies on.
      try {
        this.iterator?.return?.();
        this.asyncIterator?.return?.()?.catch?.(() => {});
      } catch (err) {
        this.server.log.error(`return() of the app's body raised: ${describeError(err)}`);
      }
    }
    try {
      this.result?.close?.();
    } catch (err) {
      this.server.log.error(`close() of the app's body raised: ${describeError(err)}`);
    }
  }
}

function describeError(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}

/** The app stage: where an exchange goes once its head is parsed. */
// Static files and request buffering are stages before the app: each an AppStage that
// answers the exchange itself or hands it to the next, ending at the app's stage.
export interface AppStage {
  handle(ex: Exchange): void;
  stop(graceful: boolean): Promise<void>;
}

/** The TypeScript app stage: read the whole body (within the limit), then run the app in-process. */
class TypeScriptStage implements AppStage {
  constructor(private readonly app: WsgiApp, private readonly server: () => Server) {}

  handle(ex: Exchange): void {
    const conn = ex.conn;
    if (conn.hasNoBodyLeft) return new TypeScriptAppRun(ex, this.server()).run(this.app, EMPTY_BODY);
    const chunks: Uint8Array[] = [];
    const readMore = (): void => {
      const { pieces, isEnd } = conn.readReceivedBody(Infinity);
      chunks.push(...pieces);
      if (!isEnd) {
        if (!ex.isDone && !ex.isAborted) conn.onBodyReadable(readMore);
        return;
      }
      const body = chunks.length === 1 ? chunks[0] : chunks.length === 0 ? EMPTY_BODY : Buffer.concat(chunks);
      new TypeScriptAppRun(ex, this.server()).run(this.app, body);
    };
    readMore();
  }

  async stop(): Promise<void> {}
}

const EMPTY_BODY = new Uint8Array(0);

/**
 * --health-path: answered here, in front of every other stage, so a health check never
 * waits in the queue for a Python worker. 200 while at least one worker is ready; 503 while
 * none is, and from SIGTERM on (the --drain-delay before the listeners close), so a load
 * balancer takes this server out of rotation while it still serves what it is sent.
 */
class HealthStage implements AppStage {
  constructor(private readonly next: AppStage, private readonly healthPath: string, private readonly server: () => Server) {}

  handle(ex: Exchange): void {
    if (ex.head.path !== this.healthPath) return this.next.handle(ex);
    const server = this.server();
    const ready = server.readyWorkers();
    const why = server.isDraining || server.isShuttingDown ? "draining" : ready === 0 ? "no worker ready" : "";
    const body = Buffer.from(why === "" ? `ok: ${ready} worker(s) ready\n` : `unavailable: ${why}\n`);
    // no-store: a cached 200 would hide the drain from a checker behind a cache.
    ex.setResponse(why === "" ? "200 OK" : "503 Service Unavailable",
      [["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", String(body.length)], ["Cache-Control", "no-store"]]);
    ex.writeBody(body);
    ex.endResponse();
  }

  stop(graceful: boolean): Promise<void> {
    return this.next.stop(graceful);
  }
}

// ==== 9. Serialize the response (Exchange) ====

let cachedDateSecond = -1;
let cachedDate = "";
/** IMF-fixdate (RFC 9110 §5.6.7), computed at most once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== cachedDateSecond) {
    cachedDateSecond = second;
    cachedDate = new Date(now).toUTCString();
  }
  return cachedDate;
}

/** Headers an app must not send (PEP 3333 "hop-by-hop"); the server owns the connection's framing. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade"]);

/** What the app asked for, checked: a bad status or header is the app's error (→ 500), never on the wire. */
interface CheckedResponse {
  status: number;
  statusLine: string;
  headerLines: string;
  contentLength: number;
  hasDate: boolean;
  hasServer: boolean;
  wantsClose: boolean;
}

/** Whether s may be sent as a field value or reason phrase: latin-1 (one byte a char), no CTLs but HTAB. */
function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || !IS_FIELD_CHAR[c]) return false;
  }
  return true;
}

/** The decimal digit at s[i], or -1000 (so any sum with it is out of range). */
function digitAt(s: string, i: number): number {
  const d = s.charCodeAt(i) - 0x30;
  return d >= 0 && d <= 9 ? d : -1000;
}

function checkResponse(status: unknown, headers: unknown): CheckedResponse {
  // PEP 3333: status is "NNN Reason-Phrase"; RFC 9112 §4: reason = *( HTAB / SP / VCHAR / obs-text ).
  if (typeof status !== "string" || status.length < 4 || status.charCodeAt(3) !== SP || !isFieldValue(status)) {
    throw new TypeError(`invalid status line from app: ${JSON.stringify(status)}`);
  }
  const code = digitAt(status, 0) * 100 + digitAt(status, 1) * 10 + digitAt(status, 2);
  if (code < 200 || code > 599) throw new TypeError(`invalid status code from app: ${JSON.stringify(status)}`);
  if (!Array.isArray(headers)) throw new TypeError("response headers must be a list of [name, value] pairs");
  let headerLines = "", contentLength = -1, hasDate = false, hasServer = false, wantsClose = false;
  for (let i = 0; i < headers.length; i++) {
    const pair: unknown = headers[i];
    if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError("each response header must be a [name, value] pair");
    const name: unknown = pair[0], value: unknown = pair[1];
    if (typeof name !== "string" || !isToken(name)) throw new TypeError(`invalid response header name: ${JSON.stringify(name)}`);
    if (typeof value !== "string" || !isFieldValue(value)) throw new TypeError(`invalid value for response header ${name}`);
    const lower = lowerName(name);
    if (HOP_BY_HOP.has(lower)) {
      if (lower === "connection" && splitList(value.toLowerCase()).includes("close")) wantsClose = true;
      continue;
    }
    if (lower === "content-length") {
      const n = parseDigits(trimOws(value));
      if (n < 0 || (contentLength !== -1 && n !== contentLength)) throw new TypeError(`invalid Content-Length from app: ${JSON.stringify(value)}`);
      if (contentLength !== -1) continue;
      contentLength = n;
      if (code === 204) continue; // RFC 9110 §8.6: never on a 204
    } else if (lower === "date") hasDate = true;
    else if (lower === "server") hasServer = true;
    headerLines += name + ": " + value + "\r\n";
  }
  return { status: code, statusLine: status, headerLines, contentLength, hasDate, hasServer, wantsClose };
}

/**
 * The last response head checked and encoded. An app answers most requests of a route with
 * the same status and headers, so while they match the last ones (compared string by
 * string, no rule skipped for a different value), the checked result and its bytes are reused.
 */
const lastHead = {
  status: null as unknown,
  names: [] as unknown[],
  values: [] as unknown[],
  checked: null as CheckedResponse | null,
  framing: "",
  date: "",
  connection: -1,
  bytes: new Uint8Array(0),
};

function checkResponseCached(status: unknown, headers: unknown): CheckedResponse {
  if (lastHead.checked !== null && status === lastHead.status && isSameHeaders(headers)) return lastHead.checked;
  const checked = checkResponse(status, headers);
  const pairs = headers as [string, string][]; // checkResponse threw unless it is a list of string pairs
  lastHead.status = status;
  lastHead.names = pairs.map((pair) => pair[0]);
  lastHead.values = pairs.map((pair) => pair[1]);
  lastHead.checked = checked;
  lastHead.connection = -1; // the bytes are for the previous checked result
  return checked;
}

function isSameHeaders(headers: unknown): boolean {
  if (!Array.isArray(headers) || headers.length !== lastHead.names.length) return false;
  for (let i = 0; i < headers.length; i++) {
    const pair: unknown = headers[i];
    if (!Array.isArray(pair) || pair.length !== 2 || pair[0] !== lastHead.names[i] || pair[1] !== lastHead.values[i]) return false;
  }
  return true;
}

const CONNECTION_DEFAULT = 0, CONNECTION_CLOSE = 1, CONNECTION_KEEP_ALIVE = 2;
const CONNECTION_LINES = ["", "Connection: close\r\n", "Connection: keep-alive\r\n"];

/** The head's bytes: the status line, the app's headers, then framing, Date, Server and Connection as needed. */
function encodeHead(checked: CheckedResponse, framing: string, date: string, connection: number): Uint8Array {
  if (checked === lastHead.checked && connection === lastHead.connection && framing === lastHead.framing && date === lastHead.date) {
    return lastHead.bytes;
  }
  let text = "HTTP/1.1 " + checked.statusLine + "\r\n" + checked.headerLines + framing;
  if (date !== "") text += "Date: " + date + "\r\n";
  if (!checked.hasServer) text += "Server: " + SERVER_HEADER + "\r\n";
  text += CONNECTION_LINES[connection] + "\r\n";
  const bytes = Buffer.from(text, "latin1"); // an ASCII head is the same in latin-1
  if (checked === lastHead.checked) {
    lastHead.framing = framing;
    lastHead.date = date;
    lastHead.connection = connection;
    lastHead.bytes = bytes; // shared by later responses: nothing writes into a queued chunk
  }
  return bytes;
}

/** A request we refuse before any app runs: short plain text, then close (RFC 9112 §9.6). */
function serializeRejection(status: number, message: string): string {
  const body = `${REASONS[status] ?? "Error"}: ${message}\n`;
  return `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\n` +
    `Date: ${httpDate()}\r\nServer: ${SERVER_HEADER}\r\nConnection: close\r\n\r\n${body}`;
}

/**
 * One request and its response. The app stage (a TypeScript app here, a Python worker
 * in bridge.ts) calls setResponse, writeBody and endResponse or failApp; the exchange
 * turns them into bytes with the right framing and hands them to its connection.
 */
const NO_HEADERS: [string, string][] = [];

export class Exchange implements AppExchange {
  environ: Environ;
  onAbort: (() => void) | null = null;
  knownLength = -1; // set by a runner that knows the whole body's size
  bytesWritten = 0;
  isDone = false;
  isAborted = false;
  private response: [string, [string, string][]] | null = null;
  private committed = false;
  private declaredLength = -1;
  private isChunked = false;
  private hasNoBody = false;
  private status = 0;
  /** The app answered with X-Accel-Redirect / X-Sendfile: its body is dropped, the file is sent at its end. */
  private redirect: InternalRedirect | null = null;
  readonly startedAt = performance.now();
  /** For the access log: the Python worker that served it (`p`) and the environ it reported (`{var}e`), when the format asks. */
  workerPid = 0;
  workerEnviron: Record<string, string> | null = null;

  constructor(readonly conn: Conn, readonly head: RequestHead, readonly server: Server, forwarded: ForwardedClient | null = null) {
    this.environ = buildEnviron(head, conn.info, server.config.rootPath, forwarded);
  }

  get hasResponse(): boolean { return this.response !== null; }
  get isHeadCommitted(): boolean { return this.committed; }
  get statusCode(): number { return this.status; }
  /** The app's response headers (for `{header}o`). */
  get responseHeaders(): [string, string][] { return this.response === null ? NO_HEADERS : this.response[1]; }
  /** Body bytes that went to the client (`%(b)s`): none for HEAD, 204 and 304, whatever the app produced. */
  get bodyBytesSent(): number { return this.hasNoBody || this.head.method === "HEAD" ? 0 : this.bytesWritten; }

  setResponse(status: string, headers: [string, string][]): void {
    this.response = [status, headers];
    // --sendfile-root: the one hook for TypeScript and Python answers alike (bridge.ts calls this for START and RESPONSE).
    const sendfile = this.server.sendfileStage;
    if (sendfile !== null && !this.committed) this.redirect = findInternalRedirect(status, headers);
  }

  /** The head goes out with the first body bytes (PEP 3333: not before), framing chosen then. */
  private commitHead(): void {
    if (this.response === null) throw new Error("the app wrote a body before calling start_response");
    const checked = checkResponseCached(this.response[0], this.response[1]);
    const head = this.head, conn = this.conn;
    this.status = checked.status;
    // RFC 9110 §6.4.1: no body for HEAD, 204 and 304.
    this.hasNoBody = head.method === "HEAD" || checked.status === 204 || checked.status === 304;
    let framing = "";
    if (checked.contentLength >= 0) {
      this.declaredLength = checked.contentLength;
    } else if (this.knownLength === 0 && head.method === "HEAD") {
      // RFC 9110 §9.3.2: a HEAD answer carries the length GET would have, or none. An app that
      // skips the body for HEAD says nothing of that length, so "Content-Length: 0" would be a lie.
    } else if (this.knownLength >= 0 && checked.status !== 204 && checked.status !== 304) {
      this.declaredLength = this.knownLength;
      framing = "Content-Length: " + this.knownLength + "\r\n";
    } else if (checked.status === 204 || checked.status === 304) {
      this.declaredLength = 0;
    } else if (head.version === "HTTP/1.1") {
      this.isChunked = true;
      framing = "Transfer-Encoding: chunked\r\n";
    } else {
      conn.closeAfterThisResponse(); // HTTP/1.0 without a length: the close ends the body
    }
    // --keep-alive 0 is gunicorn's "keep-alive off": every response closes its connection.
    if (checked.wantsClose || !head.keepAlive || conn.server.isShuttingDown || conn.server.config.keepAliveS === 0) conn.closeAfterThisResponse();
    const connection = conn.shouldCloseAfterResponse ? CONNECTION_CLOSE : head.version === "HTTP/1.0" ? CONNECTION_KEEP_ALIVE : CONNECTION_DEFAULT;
    const bytes = encodeHead(checked, framing, checked.hasDate ? "" : httpDate(), connection);
    this.committed = true;
    conn.enqueue(bytes, bytes.length);
  }

  /** Append body bytes; never past a declared Content-Length (the excess is dropped and the connection closed). */
  writeBody(chunk: Chunk): void {
    if (this.isDone || this.isAborted || this.redirect !== null) return;
    if (typeof chunk !== "string" && !(chunk instanceof Uint8Array)) {
      throw new TypeError("body chunks must be Uint8Array or string");
    }
    let length = chunkByteLength(chunk);
    if (length === 0) return; // PEP 3333: empty chunks are skipped, and do not send the head
    if (!this.committed) this.commitHead();
    if (this.hasNoBody) { this.bytesWritten += length; return; }
    if (this.declaredLength >= 0 && this.bytesWritten + length > this.declaredLength) {
      const room = this.declaredLength - this.bytesWritten;
      this.server.log.error(`${requestLine(this.head)}: the app sent more than its Content-Length of ${this.declaredLength}; the excess is dropped`);
      this.conn.closeAfterThisResponse();
      if (room <= 0) return;
      chunk = (typeof chunk === "string" ? Buffer.from(chunk) : chunk).subarray(0, room);
      length = room;
    }
    this.bytesWritten += length;
    if (this.isChunked) {
      const sizeLine = length.toString(16) + "\r\n";
      this.conn.enqueue(sizeLine, sizeLine.length);
      this.conn.enqueue(chunk, length);
      this.conn.enqueue("\r\n", 2);
    } else {
      this.conn.enqueue(chunk, length);
    }
  }

  endResponse(): void {
    if (this.isDone || this.isAborted) return;
    if (this.redirect !== null) {
      // The app's answer is over (its body dropped): now the file it named, under its status and headers.
      const redirect = this.redirect;
      this.redirect = null;
      this.response = null;
      this.bytesWritten = 0;
      this.knownLength = -1;
      return this.server.sendfileStage!.sendRedirected(this, redirect);
    }
    if (!this.committed) {
      if (this.knownLength < 0) this.knownLength = this.bytesWritten;
      this.commitHead();
    }
    if (!this.hasNoBody && this.declaredLength >= 0 && this.bytesWritten < this.declaredLength) {
      // The body ran short of its Content-Length: the client must not mistake it for whole.
      this.server.log.error(`${requestLine(this.head)}: the app sent ${this.bytesWritten} of its Content-Length of ${this.declaredLength} bytes; closing`);
      this.isDone = true;
      this.conn.abortExchange(this);
      return;
    }
    if (this.isChunked && !this.hasNoBody) this.conn.enqueue("0\r\n\r\n", 5);
    this.isDone = true;
    this.conn.finishExchange(this);
  }

  /** The app raised (or broke a rule). Before the head went out: an error response; after: abort. */
  failApp(err: unknown, status = 500): void {
    if (this.isDone || this.isAborted) return;
    this.server.log.error(`Error handling request ${requestLine(this.head)}\n${describeError(err)}`);
    this.failWith(status, this.server.config.exposeTracebacks ? describeError(err) : "");
  }

  failWith(status: number, detail: string, extraHeaders: [string, string][] = []): void {
    if (this.isDone || this.isAborted) return;
    this.isDone = true;
    if (this.conn.hasSentBytesOf(this)) {
      this.conn.abortExchange(this);
      return;
    }
    this.status = status;
    this.conn.discardOutbox();
    this.conn.closeAfterThisResponse();
    const reason = REASONS[status] ?? "Error";
    const body = detail === "" ? `${reason}\n` : `${reason}\n\n${detail}\n`;
    const bytes = Buffer.from(body);
    this.bytesWritten = bytes.length;
    this.conn.enqueueAscii(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${bytes.length}\r\n` +
        extraHeaders.map(([n, v]) => `${n}: ${v}\r\n`).join("") +
        `Date: ${httpDate()}\r\nServer: ${SERVER_HEADER}\r\nConnection: close\r\n\r\n`);
    if (this.head.method !== "HEAD") this.conn.enqueue(bytes, bytes.length);
    this.conn.finishExchange(this);
  }

  /** The client went away (or the exchange was cut): stop the app and release it. */
  abort(): void {
    if (this.isAborted) return;
    this.isAborted = true;
    const onAbort = this.onAbort;
    this.onAbort = null;
    onAbort?.();
  }

  // What an app stage in another file (bridge.ts) reaches through AppExchange: the
  // exchange's own connection, never another's.
  describe(): string { return requestLine(this.head); }
  get bufferedBytes(): number { return this.conn.parser.bufferedBytes; }
  readReceivedBody(max: number): { pieces: Uint8Array[]; bytes: number; isEnd: boolean } { return this.conn.readReceivedBody(max); }
  whenBodyReadable(cb: () => void): void { this.conn.onBodyReadable(cb); }
  flush(): void { this.conn.flush(); }
  get isBackedUp(): boolean { return this.conn.isBackedUp; }
  whenDrained(cb: () => void): void { this.conn.whenDrained(cb); }
}

function requestLine(head: RequestHead): string {
  return `${head.method} ${head.target} ${head.version}`;
}

// ==== 10. Logging ====

const LOG_LEVELS = ["debug", "info", "warning", "error", "critical"] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

/** Lines to a file descriptor, gathered and written at most every 100 ms (an access log line per request must not cost a syscall). */
export class LineSink {
  /** Sinks writing to a named file: what SIGUSR1 reopens. */
  static readonly files = new Set<LineSink>();
  private lines: string[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  constructor(private fd: number, private readonly isBuffered: boolean, private readonly file: string | null = null) {
    if (file !== null) LineSink.files.add(this);
  }

  /** `-` is stdout; a file is opened for appending, and failing to names the flag, the file and the reason (exit 2). */
  static open(target: string, flag: string): LineSink {
    if (target === "-") return new LineSink(1, true);
    try {
      return new LineSink(fs.openSync(target, "a"), true, path.resolve(target));
    } catch (err) {
      throw new StartupError(`${flag} ${target}: cannot open for writing: ${describeOsError(err)}`);
    }
  }

  /**
   * SIGUSR1 (gunicorn's reopen_files, what logrotate's postrotate sends): what is buffered goes
   * to the old file, then the name is opened again, so lines after it go to the new file.
   * Failing to open it (a directory the dropped user may not write in) keeps the old file.
   */
  reopen(): string | null {
    if (this.file === null) return null;
    this.flush();
    let fd: number;
    try {
      fd = fs.openSync(this.file, "a");
    } catch (err) {
      return `${this.file}: cannot reopen, still writing to the old file: ${describeOsError(err)}`;
    }
    const old = this.fd;
    this.fd = fd;
    fs.closeSync(old);
    return null;
  }

  write(line: string): void {
    if (!this.isBuffered) {
      fs.writeSync(this.fd, line + "\n");
      return;
    }
    this.lines.push(line);
    this.timer ??= setTimeout(() => this.flush(), 100);
  }

  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.lines.length === 0) return;
    const text = this.lines.join("\n") + "\n";
    this.lines = [];
    try {
      fs.writeSync(this.fd, text);
    } catch {
      // a closed stdout must not take the server down
    }
  }
}

function logTimestamp(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** gunicorn's error-log line: `[time] [pid] [LEVEL] message`. */
export class Logger {
  private threshold: number;
  /** --statsd-host: gunicorn counts warnings, errors and criticals (gunicorn.log.LEVEL), whatever --log-level. */
  metrics: StatsdClient | null = null;
  constructor(private readonly sink: LineSink, level: LogLevel) {
    this.threshold = LOG_LEVELS.indexOf(level);
  }
  /** A HUP that re-read a changed loglevel. */
  setLevel(level: LogLevel) { this.threshold = LOG_LEVELS.indexOf(level); }
  private emit(level: LogLevel, message: string): void {
    if (this.metrics !== null && level !== "debug" && level !== "info") this.metrics.increment(`gunicorn.log.${level}`);
    if (LOG_LEVELS.indexOf(level) < this.threshold) return;
    this.sink.write(`[${logTimestamp()}] [${process.pid}] [${level.toUpperCase()}] ${message}`);
  }
  debug(m: string) { this.emit("debug", m); }
  info(m: string) { this.emit("info", m); }
  warning(m: string) { this.emit("warning", m); }
  error(m: string) { this.emit("error", m); }
  critical(m: string) { this.emit("critical", m); }
  /** The app's output under --capture-output: INFO, but written whatever --log-level (gunicorn writes it to the file unfiltered). */
  captured(m: string) { this.sink.write(`[${logTimestamp()}] [${process.pid}] [INFO] ${m}`); }
  flush() { this.sink.flush(); }
}

/** The error log: stderr (unbuffered, so a crash loses nothing) or a file. */
function openErrorLog(config: Config): Logger {
  const sink = config.errorLogfile === "-" ? new LineSink(2, false) : LineSink.open(config.errorLogfile, "--error-logfile");
  return new Logger(sink, config.logLevel);
}

/** SIGUSR1: reopen every log file. The workers write nothing themselves (their output comes through the front), so they have none. */
function reopenLogFiles(log: Logger): void {
  const problems = [...LineSink.files].map((sink) => sink.reopen()).filter((p) => p !== null);
  log.info("Reopened the log files");
  for (const p of problems) log.error(p);
}

function openAccessLog(config: Config): LineSink | null {
  return config.accessLogfile === null ? null : LineSink.open(config.accessLogfile, "--access-logfile");
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** gunicorn's default access format (gunicorn/config.py AccessLogFormat). */
const GUNICORN_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"';
/** `--access-logformat json`: every fixed atom, in the order of gunicorn's docs. */
const JSON_DEFAULT_ATOMS = ["h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "M", "D", "L", "p"];
/** Atoms whose JSON value is a number (the text format prints the same digits). */
const NUMERIC_ATOMS = new Set(["s", "B", "b", "T", "M", "D", "L"]);

/** What an atom reads: the exchange, and the moment the line is written. null is a missing value ('-'). */
interface AccessContext { ex: Exchange; now: Date; elapsedUs: number }
type AtomReader = (c: AccessContext) => string | number | null;

/**
 * gunicorn's atoms (gunicorn/glogging.py `atoms()`), read from the exchange. Where the app
 * may have changed the environ (PATH_INFO, REMOTE_USER), a Python app's copy is in its
 * worker: only `{var}e` asks the worker for it (AccessLogNeeds); the others read the front's.
 */
const FIXED_ATOMS: Record<string, AtomReader> = {
  h: (c) => c.ex.environ.REMOTE_ADDR ?? null,
  l: () => "-",
  u: (c) => readBasicAuthUser(c.ex.environ.HTTP_AUTHORIZATION),
  t: (c) => formatClfTime(c.now),
  r: (c) => requestLine(c.ex.head),
  m: (c) => c.ex.head.method,
  U: (c) => c.ex.environ.PATH_INFO ?? null,
  q: (c) => c.ex.environ.QUERY_STRING ?? null,
  H: (c) => c.ex.head.version,
  s: (c) => c.ex.statusCode || null,
  B: (c) => c.ex.bodyBytesSent,
  // CLF's b is '-' for no body, but gunicorn's is `resp.sent is not None and str(resp.sent) or '-'`, and
  // str(0) is "0", which is truthy: gunicorn writes 0, so we do.
  b: (c) => c.ex.bodyBytesSent,
  f: (c) => c.ex.environ.HTTP_REFERER ?? null,
  a: (c) => c.ex.environ.HTTP_USER_AGENT ?? null,
  T: (c) => Math.floor(c.elapsedUs / 1e6),
  M: (c) => Math.floor(c.elapsedUs / 1e3),
  D: (c) => c.elapsedUs,
  L: (c) => `${Math.floor(c.elapsedUs / 1e6)}.${String(c.elapsedUs % 1e6).padStart(6, "0")}`,
  p: (c) => `<${c.ex.workerPid || process.pid}>`,
};

/** `[01/Dec/2026:10:00:00 +0000]`: gunicorn's strftime('[%d/%b/%Y:%H:%M:%S %z]'), in UTC. */
function formatClfTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `[${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000]`;
}

/** gunicorn's `_get_user`: the user of `Authorization: Basic`, else null. */
function readBasicAuthUser(authorization: string | undefined): string | null {
  if (authorization === undefined || !authorization.toLowerCase().startsWith("basic")) return null;
  const space = authorization.indexOf(" ");
  if (space === -1) return null;
  const encoded = authorization.slice(space + 1).trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded) || encoded.length % 4 !== 0) return null; // b64decode would raise
  const decoded = Buffer.from(encoded, "base64");
  const colon = decoded.indexOf(0x3a);
  const user = colon === -1 ? decoded : decoded.subarray(0, colon);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(user);
  } catch {
    return null; // not UTF-8: gunicorn logs it at debug and shows '-'
  }
}

/**
 * `{name}i`, `{name}o`, `{name}e`: gunicorn lowercases the whole key, so `{X-Request-Id}i`
 * and `{x-request-id}I` are the same atom; a repeated header shows its last value (its dict).
 */
function readBraceAtom(key: string): AtomReader | null {
  const m = /^\{(.*)\}([ioe])$/.exec(key.toLowerCase());
  if (m === null) return null;
  const name = m[1];
  if (m[2] === "i") return (c) => lastValue(c.ex.head.headers, name);
  if (m[2] === "o") return (c) => lastValue(c.ex.responseHeaders, name);
  return (c) => readEnvironAtom(c.ex, name);
}

function lastValue(headers: [string, string][], lowerName: string): string | null {
  for (let i = headers.length - 1; i >= 0; i--) if (headers[i][0].toLowerCase() === lowerName) return headers[i][1];
  return null;
}

/** The environ as the app left it: a Python worker reports it (lowercased keys); a TypeScript app's is ours. */
function readEnvironAtom(ex: Exchange, lowerKey: string): string | null {
  if (ex.workerEnviron !== null) return ex.workerEnviron[lowerKey] ?? null;
  let value: string | null = null;
  for (const key in ex.environ) if (key.toLowerCase() === lowerKey) value = String(ex.environ[key]);
  return value;
}

/** What a Python worker must report per request for the format: nothing (and no bytes) unless `{var}e` is used. */
export interface AccessLogNeeds {
  /** Lowercased environ keys of the `{var}e` atoms. */
  environKeys: string[];
  /** `p`: the pool notes which worker served each request. */
  isPidLogged: boolean;
}

/** A compiled --access-logformat: literal text and atoms in order, or the JSON keys. */
export interface AccessFormat {
  isJson: boolean;
  parts: (string | { key: string; read: AtomReader })[];
  needs: AccessLogNeeds;
}

/** A setting's value that cannot work (a format that does not compile, a statsd address we cannot reach): exit 2. */
class InvalidSettingValue extends Error {}

/**
 * gunicorn applies the format with Python's `%` and a dict: `%(atom)s` and `%%` are all its
 * users write. Other conversions (`%(s)d`, `%-10(h)s`) and a stray `%` are refused at start
 * (gunicorn would log a traceback on every request instead). `json` and `json:ATOM,ATOM`
 * are bunicorn's: one JSON object a line, keyed by atom name.
 */
export function compileAccessFormat(format: string): AccessFormat {
  const parts: AccessFormat["parts"] = [];
  if (format === "json" || format.startsWith("json:")) {
    const keys = format === "json" ? JSON_DEFAULT_ATOMS : format.slice(5).split(",").map((k) => k.trim());
    if (keys.some((k) => k === "")) throw new InvalidSettingValue("json: expects atoms separated by commas, e.g. json:h,r,s,{x-request-id}i");
    for (const key of keys) parts.push({ key, read: readAtom(key) });
    return { isJson: true, parts, needs: findNeeds(keys) };
  }
  const keys: string[] = [];
  let literal = "";
  for (let i = 0; i < format.length; i++) {
    if (format[i] !== "%") { literal += format[i]; continue; }
    if (format[i + 1] === "%") { literal += "%"; i++; continue; }
    const close = format[i + 1] === "(" ? format.indexOf(")", i + 2) : -1;
    if (close === -1 || format[close + 1] !== "s") {
      throw new InvalidSettingValue(`expected %(atom)s or %% at offset ${i}, got '${format.slice(i, i + 12)}'`);
    }
    const key = format.slice(i + 2, close);
    if (literal !== "") parts.push(literal);
    literal = "";
    parts.push({ key, read: readAtom(key) });
    keys.push(key);
    i = close + 1;
  }
  if (literal !== "") parts.push(literal);
  return { isJson: false, parts, needs: findNeeds(keys) };
}

/** An atom gunicorn does not know reads as '-' (its SafeAtoms), as does a header or variable that is absent. */
function readAtom(key: string): AtomReader {
  return FIXED_ATOMS[key] ?? readBraceAtom(key) ?? (() => null);
}

function findNeeds(keys: string[]): AccessLogNeeds {
  const environKeys = new Set<string>();
  for (const key of keys) {
    const m = /^\{(.*)\}e$/.exec(key.toLowerCase());
    if (m !== null) environKeys.add(m[1]);
  }
  return { environKeys: [...environKeys], isPidLogged: keys.includes("p") };
}

/** A SETTINGS check from a parser: the InvalidSettingValue it throws is the refusal (exit 2). */
function refusedBy(parse: (value: string) => unknown): (value: string) => string | null {
  return (value) => {
    try {
      parse(value);
      return null;
    } catch (err) {
      if (err instanceof InvalidSettingValue) return err.message;
      throw err;
    }
  };
}

/** --access-logformat's check in the SETTINGS table: a format that cannot compile exits 2. */
const refuseAccessFormat = refusedBy(compileAccessFormat);

/**
 * One access-log line. Text: gunicorn's SafeAtoms escaping, which turns `"` into `\"` and
 * nothing else (so a line reads the same as gunicorn's). JSON: JSON.stringify escapes
 * everything a parser needs; numbers stay numbers, missing values are null.
 */
export function formatAccessLine(format: AccessFormat, ex: Exchange, now = new Date()): string {
  const c: AccessContext = { ex, now, elapsedUs: Math.max(0, Math.round((performance.now() - ex.startedAt) * 1000)) };
  let line = "";
  if (format.isJson) {
    for (const part of format.parts as { key: string; read: AtomReader }[]) {
      const v = part.read(c);
      // L is a string of digits ("0.001234"): a JSON number as it stands.
      const value = v === null ? "null" : NUMERIC_ATOMS.has(part.key) ? String(v) : JSON.stringify(String(v));
      line += (line === "" ? "{" : ",") + JSON.stringify(part.key) + ":" + value;
    }
    return line + "}";
  }
  for (const part of format.parts) {
    if (typeof part === "string") { line += part; continue; }
    const v = part.read(c);
    line += v === null ? "-" : typeof v === "string" ? v.replaceAll('"', '\\"') : String(v);
  }
  return line + describeTransport(ex);
}

/**
 * After gunicorn's atoms (so its format stays byte for byte), what gunicorn's log cannot say:
 * the socket's peer when a PROXY header or a trusted proxy named another client (%(h)s is
 * that client, REMOTE_ADDR as the app saw it), and the TLS version.
 */
function describeTransport(ex: Exchange): string {
  const peer = ex.environ["bunicorn.peer_addr"];
  const tls = ex.conn.info.tlsVersion;
  if (peer === undefined && tls === null) return "";
  return (peer !== undefined ? ` peer=${peer}` : "") + (tls !== null ? ` tls=${tls}` : "");
}

/**
 * Most metric lines one datagram carries: lines of one event-loop turn are joined with
 * newlines (statsd and DogStatsD read several per packet) up to 1432 bytes, the payload
 * that fits a 1500-byte Ethernet frame over IPv6 without fragments (statsd's own advice).
 */
const STATSD_MAX_PACKET_BYTES = 1432;

/**
 * gunicorn's statsd instrumentation (gunicorn/instrument/statsd.py): the same metric names,
 * prefix rule and DogStatsD tags, over UDP. Lines of one event-loop turn go out together;
 * a send that fails (no listener: ECONNREFUSED) is dropped, as statsd over UDP expects.
 */
export class StatsdClient {
  private lines: string[] = [];
  private isFlushQueued = false;
  private readonly prefix: string;
  private readonly suffix: string;
  private socket: { send(data: string): boolean; close(): void } | null = null;

  constructor(private readonly host: string, private readonly port: number, prefix: string, tags: string) {
    // gunicorn: sub(r"^(.+[^.]+)\.*$", "\g<1>.", prefix): one trailing dot (none added to a 1-character prefix).
    this.prefix = prefix.replace(/^(.+[^.]+)\.*$/, "$1.");
    this.suffix = tags === "" ? "" : `|#${tags}`;
  }

  /** The socket is connected once (the host resolved once, as gunicorn's connect() does); lines sent before it is wait for it. */
  async open(): Promise<void> {
    try {
      // An ICMP "port unreachable" comes back as an error on the socket: ignored, or it would end the process.
      this.socket = await Bun.udpSocket({ connect: { hostname: this.host, port: this.port }, socket: { error() {} } });
      this.queueFlush();
    } catch {
      this.socket = null; // unresolvable: metrics are dropped, the server serves on
    }
  }

  increment(name: string, value = 1): void { this.push(`${name}:${value}|c|@1.0`); }
  gauge(name: string, value: number): void { this.push(`${name}:${value}|g`); }
  histogram(name: string, value: number): void { this.push(`${name}:${value}|h`); }
  /** Milliseconds as Python prints a float (`5.0`, `1.234`), as gunicorn sends them. */
  timer(name: string, ms: number): void { this.push(`${name}:${Number.isInteger(ms) ? ms + ".0" : ms}|ms`); }

  /** gunicorn's access(): duration, the request counter, and one counter per status. */
  noteRequest(ex: Exchange): void {
    const us = Math.max(0, Math.round((performance.now() - ex.startedAt) * 1000));
    this.timer("gunicorn.request.duration", us / 1000);
    this.increment("gunicorn.requests");
    if (ex.statusCode !== 0) this.increment(`gunicorn.request.status.${ex.statusCode}`);
  }

  private push(line: string): void {
    this.lines.push(this.prefix + line + this.suffix);
    this.queueFlush();
  }

  private queueFlush(): void {
    if (this.isFlushQueued || this.lines.length === 0) return;
    this.isFlushQueued = true;
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.isFlushQueued = false;
    if (this.socket === null) return;
    let packet = "";
    for (const line of this.lines) {
      if (packet !== "" && packet.length + 1 + line.length > STATSD_MAX_PACKET_BYTES) {
        this.send(packet);
        packet = "";
      }
      packet += (packet === "" ? "" : "\n") + line;
    }
    if (packet !== "") this.send(packet);
    this.lines = [];
  }

  private send(packet: string): void {
    try {
      this.socket!.send(packet);
    } catch {
      // ECONNREFUSED (nobody listening yet) and the like: a metric lost, never an error
    }
  }

  close(): void {
    this.flush();
    this.socket?.close();
  }
}

/** --statsd-host HOST:PORT (port 8125 when omitted, as gunicorn's default); null when unset. Unix datagram sockets are refused: Bun has none. */
function parseStatsdHost(value: string): { host: string; port: number } {
  if (value.startsWith("unix:")) throw new InvalidSettingValue("unix datagram sockets are not supported (Bun's UDP sockets are IP only); use HOST:PORT");
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+))(?::([0-9]{1,5}))?$/.exec(value);
  const port = m?.[3] === undefined ? 8125 : parseDigits(m[3]);
  if (m === null || port < 1 || port > 65535) throw new InvalidSettingValue(`expected HOST:PORT, got '${value}'`);
  return { host: m[1] ?? m[2], port };
}

const refuseStatsdHost = refusedBy(parseStatsdHost);

/** The statsd client the flags ask for, or null. */
async function openStatsd(config: Config): Promise<StatsdClient | null> {
  if (config.statsdHost === null) return null;
  const { host, port } = parseStatsdHost(config.statsdHost);
  const client = new StatsdClient(host, port, config.statsdPrefix, config.dogstatsdTags);
  await client.open();
  return client;
}

// Metrics, beside the access log: counted from the same ended exchange that
// Server.logAccess is given (Conn.endExchange is the one place that calls it). The hot
// path costs a few increments into typed arrays indexed by small integers; names and
// labels are built only when /metrics is read.

/** Methods with a label of their own; any other is "other" (a label per method a client invents would grow without bound). */
const METRIC_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"] as const;
const METRIC_METHOD_INDEX: Record<string, number> = { GET: 0, HEAD: 1, POST: 2, PUT: 3, DELETE: 4, PATCH: 5, OPTIONS: 6 };
/** Status classes; "none": the client went away before any answer. */
const METRIC_STATUS_CLASSES = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"] as const;
/** Metrics.requests is method-major: the count for method m and class c is at m * STATUS_CLASS_COUNT + c. */
const STATUS_CLASS_COUNT = METRIC_STATUS_CLASSES.length;
/** Seconds; Prometheus client libraries' default buckets, with 1 ms and 2.5 ms for a front that answers in under one. */
const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics {
  /** method × status class */
  readonly requests = new Float64Array(METRIC_METHODS.length * METRIC_STATUS_CLASSES.length);
  /** Per bucket, not cumulative (made cumulative when read); the last is +Inf. */
  readonly latency = new Float64Array(LATENCY_BUCKETS_S.length + 1);
  latencySumS = 0;
  bytesIn = 0;
  bytesOut = 0;
  connectionsAccepted = 0;
  connectionsRefused = 0;
  /** By the parser's stable code: on the error path only. */
  readonly parseErrors = new Map<string, number>();

  countExchange(ex: Exchange): void {
    const method = ex.head.method;
    const m = method === "GET" ? 0 : METRIC_METHOD_INDEX[method] ?? METRIC_METHODS.length - 1; // "other"
    const status = ex.statusCode;
    const cls = status >= 100 && status < 600 ? (status / 100) | 0 : 0;
    this.requests[m * STATUS_CLASS_COUNT + cls]++;
    const seconds = (performance.now() - ex.startedAt) / 1000;
    this.latencySumS += seconds;
    let b = 0;
    while (b < LATENCY_BUCKETS_S.length && seconds > LATENCY_BUCKETS_S[b]) b++;
    this.latency[b]++;
  }

  countParseError(code: string): void {
    this.parseErrors.set(code, (this.parseErrors.get(code) ?? 0) + 1);
  }
}

/**
 * The Prometheus text exposition format (version 0.0.4): one HELP and TYPE per family,
 * counters named _total, durations in seconds, sizes in bytes (Prometheus naming conventions).
 */
export function renderMetrics(server: Server, pool: PythonStage | null): string {
  const m = server.metrics!; // made whenever --metrics-bind is set
  const out: string[] = [];
  const family = (name: string, type: string, help: string, samples: [labels: string, value: number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) out.push(`${name}${labels === "" ? "" : `{${labels}}`} ${value}`);
  };
  const reqs: [string, number][] = [];
  METRIC_METHODS.forEach((method, i) => METRIC_STATUS_CLASSES.forEach((cls, j) => {
    if (m.requests[i * STATUS_CLASS_COUNT + j] > 0) reqs.push([`method="${method}",status="${cls}"`, m.requests[i * STATUS_CLASS_COUNT + j]]);
  }));
  family("bunicorn_requests_total", "counter", "Requests ended, by method and status class (none: the client left before an answer).", reqs);
  out.push("# HELP bunicorn_request_duration_seconds From a request's head parsed to its answer's end.", "# TYPE bunicorn_request_duration_seconds histogram");
  let cumulative = 0;
  LATENCY_BUCKETS_S.forEach((le, i) => { cumulative += m.latency[i]; out.push(`bunicorn_request_duration_seconds_bucket{le="${le}"} ${cumulative}`); });
  cumulative += m.latency[LATENCY_BUCKETS_S.length];
  out.push(`bunicorn_request_duration_seconds_bucket{le="+Inf"} ${cumulative}`, `bunicorn_request_duration_seconds_sum ${m.latencySumS}`, `bunicorn_request_duration_seconds_count ${cumulative}`);
  const stats = pool?.stats() ?? null;
  family("bunicorn_requests_in_flight", "gauge", "Requests between their head and their answer's end.", [["", server.inFlight]]);
  family("bunicorn_requests_queued", "gauge", "Requests waiting for a Python worker to start them.", [["", stats?.queued ?? 0]]);
  family("bunicorn_connections_open", "gauge", "Client connections open (parked ones included).", [["", server.conns.size + server.parked.length]]);
  family("bunicorn_connections_parked", "gauge", "Connections held unread over --max-connections.", [["", server.parked.length]]);
  family("bunicorn_connections_accepted_total", "counter", "Client connections accepted.", [["", m.connectionsAccepted]]);
  family("bunicorn_connections_refused_total", "counter", "Connections closed unserved (accepted while stopping, or still parked at the stop).", [["", m.connectionsRefused]]);
  family("bunicorn_workers", "gauge", "Python workers by state.", stats === null ? [] :
    (["booting", "ready", "retiring"] as const).map((st) => [`state="${st}"`, stats.workers[st]]));
  family("bunicorn_worker_restarts_total", "counter", "Python workers replaced, by reason.", stats === null ? [] :
    (["crash", "timeout", "max-requests", "reload"] as const).map((r) => [`reason="${r}"`, stats.restarts[r]]));
  family("bunicorn_bridge_answers_total", "counter", "Answers the front gave instead of the app's (502 worker died, 503 backlog full, 504 timeout).", stats === null ? [] :
    ([502, 503, 504] as const).map((st) => [`status="${st}"`, stats.faults[st]]));
  family("bunicorn_parse_errors_total", "counter", "Requests refused by the parser, by its stable code.",
    [...m.parseErrors].map(([code, n]) => [`code="${code}"`, n]));
  family("bunicorn_received_bytes_total", "counter", "Bytes read from clients.", [["", m.bytesIn]]);
  family("bunicorn_sent_bytes_total", "counter", "Bytes written to clients.", [["", m.bytesOut]]);
  family("bunicorn_spooled_bytes", "gauge", "Bytes of answers held in temporary files for slow clients now.", [["", stats?.spooledFileBytes ?? 0]]);
  return out.join("\n") + "\n";
}

/** --metrics-bind: the exposition on a listener of its own (never on the app's port, where the app owns every path). */
function serveMetrics(bind: string, server: Server, pool: PythonStage | null): { port: number; stop(): void } {
  const address = parseBind(bind);
  if ("unix" in address) throw new StartupError(`--metrics-bind ${bind}: a unix socket is not supported here; use HOST:PORT`);
  let listener: ReturnType<typeof Bun.serve>;
  try {
    listener = Bun.serve({
      hostname: address.hostname, port: address.port,
      fetch: (req) => new URL(req.url).pathname === "/metrics"
        ? new Response(renderMetrics(server, pool), { headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" } })
        : new Response("Not Found: metrics are at /metrics\n", { status: 404 }),
    });
  } catch (err) {
    throw new StartupError(`--metrics-bind ${bind}: cannot listen: ${describeOsError(err)}`);
  }
  server.log.info(`Metrics at: http://${formatBindAddress({ ...address, port: listener.port! })}/metrics`);
  return { port: listener.port!, stop: () => listener.stop(true) };
}

// ==== 11. Config and CLI ====

export interface Config {
  app: string;
  binds: string[];
  workers: number;
  threads: number;
  timeoutS: number;
  gracefulTimeoutS: number;
  keepAliveS: number;
  headerTimeoutS: number;
  maxRequests: number;
  maxRequestsJitter: number;
  backlog: number;
  limitRequestLine: number;
  limitRequestFields: number;
  limitRequestFieldSize: number;
  limitRequestBody: number;
  maxConnections: number;
  requestBufferBytes: number;
  responseBufferMemoryBytes: number;
  responseBufferFileBytes: number;
  responseBufferTotalBytes: number;
  /** --static-map URL_PREFIX=DIR, as given (static.ts parses and opens them). */
  staticMaps: string[];
  /** --sendfile-root URL_PREFIX=DIR: files an app may name in X-Accel-Redirect / X-Sendfile. */
  sendfileRoots: string[];
  /** Cache-Control max-age of static files; 0: no Cache-Control. */
  staticMaxAgeS: number;
  /** Answer a directory's URL ("/static/docs/") with its index.html. */
  staticIndex: boolean;
  healthPath: string | null;
  /** After SIGTERM: seconds --health-path answers 503 while all else is served, before the listeners close. */
  drainDelayS: number;
  metricsBind: string | null;
  accessLogfile: string | null;
  errorLogfile: string;
  logLevel: LogLevel;
  rootPath: string;
  chdir: string | null;
  pythonpath: string[];
  python: string | null;
  exposeTracebacks: boolean;
  /** -c: the config file read (or python:MODULE); null when none. */
  configFile: string | null;
  /** --preload: import the app once, in the master helper, and fork the workers from it. */
  preloadApp: boolean;
  /** The server hooks the config file defines (gunicorn's names). */
  hooks: string[];
  /** What hooks see as server.cfg: the settings in effect by gunicorn's names (set by main when there are hooks). */
  hookSettings: Record<string, unknown>;
  workerClass: string;
  pidfile: string | null;
  /** null: leave the inherited umask alone. */
  umask: number | null;
  /** -e KEY=VALUE, set in this process's environment (the workers inherit it). */
  rawEnv: string[];
  daemon: boolean;
  /** --reload: poll the app's Python files and reload the workers (as SIGHUP) when one changes. */
  reload: boolean;
  reloadEngine: string;
  /** --reload-extra-file: more files to watch, as glob patterns. */
  reloadExtraFiles: string[];
  /** -u/-g: when started as root, switch to these after binding and opening logs (name or number); null: stay. */
  user: string | null;
  group: string | null;
  initgroups: boolean;
  /** --control-socket: where `bunicorn ctl` reaches this server (a unix socket, mode 0600); null: none. */
  controlSocket: string | null;
  checkConfig: boolean;
  printConfig: boolean;
  accessLogFormat: string;
  captureOutput: boolean;
  statsdHost: string | null;
  statsdPrefix: string;
  dogstatsdTags: string;
  enableBacklogMetric: boolean;
  // TLS (gunicorn's SSL settings): on when certfile is set.
  certfile: string | null;
  keyfile: string | null;
  caCerts: string | null;
  /** 0 none, 1 optional, 2 required (ssl.CERT_*). */
  certReqs: number;
  ciphers: string | null;
  // Proxies
  /** Comma-separated addresses and networks, or "*". */
  forwardedAllowIps: string;
  /** A JSON object, header → value meaning https (a config-file dict in gunicorn). */
  secureSchemeHeaders: string;
  proxyProtocol: ProxyMode;
  proxyAllowIps: string;
}

export function defaultConfig(): Config {
  return {
    app: "",
    binds: [...DEFAULTS.binds],
    workers: navigator.hardwareConcurrency || 1,
    threads: DEFAULTS.threads,
    timeoutS: DEFAULTS.timeoutS,
    gracefulTimeoutS: DEFAULTS.gracefulTimeoutS,
    keepAliveS: DEFAULTS.keepAliveS,
    headerTimeoutS: DEFAULTS.headerTimeoutS,
    maxRequests: DEFAULTS.maxRequests,
    maxRequestsJitter: DEFAULTS.maxRequestsJitter,
    backlog: DEFAULTS.backlog,
    limitRequestLine: DEFAULTS.limitRequestLine,
    limitRequestFields: DEFAULTS.limitRequestFields,
    limitRequestFieldSize: DEFAULTS.limitRequestFieldSize,
    limitRequestBody: DEFAULTS.limitRequestBody,
    maxConnections: DEFAULTS.maxConnections,
    requestBufferBytes: DEFAULTS.requestBufferBytes,
    responseBufferMemoryBytes: DEFAULTS.responseBufferMemoryBytes,
    responseBufferFileBytes: DEFAULTS.responseBufferFileBytes,
    responseBufferTotalBytes: DEFAULTS.responseBufferTotalBytes,
    staticMaps: [],
    sendfileRoots: [],
    staticMaxAgeS: 0,
    staticIndex: false,
    healthPath: null,
    drainDelayS: DEFAULTS.drainDelayS,
    metricsBind: null,
    accessLogfile: null,
    errorLogfile: "-",
    logLevel: "info",
    // gunicorn reads SCRIPT_NAME from the environment as the default root path.
    rootPath: process.env.SCRIPT_NAME ?? "",
    chdir: null,
    pythonpath: [],
    python: null,
    exposeTracebacks: false,
    configFile: null,
    preloadApp: false,
    hooks: [],
    hookSettings: {},
    workerClass: "sync",
    pidfile: null,
    umask: null,
    rawEnv: [],
    daemon: false,
    reload: false,
    reloadEngine: "auto",
    reloadExtraFiles: [],
    user: null,
    group: null,
    initgroups: false,
    controlSocket: null,
    checkConfig: false,
    printConfig: false,
    accessLogFormat: GUNICORN_ACCESS_LOG_FORMAT,
    captureOutput: false,
    statsdHost: null,
    statsdPrefix: "",
    dogstatsdTags: "",
    enableBacklogMetric: false,
    certfile: null,
    keyfile: null,
    caCerts: null,
    certReqs: 0,
    ciphers: null,
    forwardedAllowIps: "127.0.0.1,::1",
    secureSchemeHeaders: JSON.stringify({ "X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on" }),
    proxyProtocol: "off",
    proxyAllowIps: "127.0.0.1,::1",
  };
}

export class UsageError extends Error {}

/**
 * The flags are well-formed but the machine refuses them (a busy port, a missing
 * directory, an unwritable log file). Found before any worker starts; exit 2.
 */
export class StartupError extends Error {}

/** Reasons for the errno codes start-up meets (listen, open, stat), worded like strerror. */
const OS_ERROR_REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this machine",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ENOTDIR: "a component of the path is not a directory",
  EISDIR: "is a directory",
  EROFS: "read-only file system",
  ENAMETOOLONG: "name too long",
};

function describeOsError(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code in OS_ERROR_REASONS) return OS_ERROR_REASONS[code];
  return err instanceof Error ? err.message : String(err);
}

/** --chdir must name a directory we may enter: the workers change to it before importing the app. */
function checkChdir(config: Config): void {
  if (config.chdir === null) return;
  const dir = path.resolve(config.chdir);
  try {
    if (!fs.statSync(dir).isDirectory()) throw new StartupError(`--chdir ${config.chdir}: not a directory`);
    fs.accessSync(dir, fs.constants.X_OK);
  } catch (err) {
    if (err instanceof StartupError) throw err;
    throw new StartupError(`--chdir ${config.chdir}: ${describeOsError(err)}`);
  }
}

type FlagKind = "list" | "count" | "seconds" | "string" | "level" | "bool" | "octal" | "env" | "paths" | "hook";
type SettingStatus = "supported" | "warned" | "refused";
type SettingKey = keyof Config | "version" | "help";

/**
 * One row per setting: gunicorn's 119, by gunicorn's name, then bunicorn's own (name null).
 * This one list drives the command line, GUNICORN_CMD_ARGS, the config file, validation,
 * --help, --print-config and the README's settings table (test/config.test.ts checks that
 * the README agrees with it). The rule for what bunicorn does not implement: warn only where
 * ignoring the setting changes nothing the app sees, nothing logged and nothing about
 * security; otherwise refuse, saying why and what to use instead.
 */
export interface SettingSpec {
  /** gunicorn's name (config files, --print-config); null for bunicorn's own flags. */
  name: string | null;
  flags: string[];
  status: SettingStatus;
  kind: FlagKind;
  key?: SettingKey;
  min?: number;
  max?: number;
  /** Supported: the --help line. Warned or refused: why, and what to use instead (the message printed). */
  help: string;
  /** Where bunicorn's meaning or default differs from gunicorn's on purpose (the README says so). */
  differs?: string;
  /** Values meaning gunicorn's default: accepted without a word even where the setting is warned or refused. */
  accepts?: string[];
  /** A supported setting's value that bunicorn refuses, and why. */
  refuseValue?: (value: string) => string | null;
  /** The value of the flag given alone (followed by another flag or by nothing): --proxy-protocol means auto. */
  bareValue?: string;
}

const NO_ASGI = "only for -k asgi; bunicorn runs WSGI apps only";
const NO_H2 = "bunicorn speaks HTTP/1.1 only; put an HTTP/2 proxy in front";
const NO_DIRTY = "bunicorn has no dirty arbiters; run long tasks in a task queue (Celery, RQ) or a separate service";
const NO_SYSLOG = "bunicorn does not write to syslog; log to stderr (--error-logfile -) and let journald or the platform collect it";
const STRICT_PARSER = "bunicorn's HTTP parser is strict (RFC 9112) and offers no such leniency; fix the client";

const supported = (name: string | null, flags: string[], key: SettingKey, kind: FlagKind, help: string, more: Partial<SettingSpec> = {}): SettingSpec =>
  ({ name, flags, key, kind, help, status: "supported", ...more });
const warned = (name: string, flags: string[], kind: FlagKind, help: string, more: Partial<SettingSpec> = {}): SettingSpec =>
  ({ name, flags, kind, help, status: "warned", ...more });
const refused = (name: string, flags: string[], kind: FlagKind, help: string, more: Partial<SettingSpec> = {}): SettingSpec =>
  ({ name, flags, kind, help, status: "refused", ...more });
/** A server hook: a callable in the config file, run where HOOK_PLACES says (README: "Server hooks"). */
const hook = (name: string): SettingSpec => supported(name, [], "hooks", "hook", `a callable in the config file: ${HOOK_PLACES[name]}`);
const HOOK_PLACES: Record<string, string> = {
  on_starting: "master helper, before the front listens",
  when_ready: "master helper, once the front listens (before the workers boot)",
  on_reload: "master helper, on SIGHUP, before the new workers start",
  pre_fork: "master helper, before each worker starts (worker.pid is None)",
  post_fork: "the worker, before it imports the app",
  post_worker_init: "the worker, after it imported the app",
  pre_request: "the worker, before each request (an exception: 500)",
  post_request: "the worker, after each request",
  worker_int: "the worker, on a quick stop (SIGINT, SIGQUIT)",
  worker_abort: "the worker, when a request passed --timeout (after its threads' tracebacks are logged)",
  worker_exit: "the worker, as it exits after a graceful stop",
  child_exit: "master helper, after a worker exited",
  nworkers_changed: "master helper, after SIGTTIN/SIGTTOU changed the count",
  on_exit: "master helper, just before the front exits",
  pre_exec: "master helper, before a new front is started by SIGUSR2",
};

const WORKER_CLASSES_OK = ["sync", "gthread", "gunicorn.workers.sync.SyncWorker", "gunicorn.workers.gthread.ThreadWorker"];

/** -k: bunicorn's workers are gunicorn's sync workers, with --threads as gthread's; every other class is refused. */
function refuseWorkerClass(value: string): string | null {
  if (WORKER_CLASSES_OK.includes(value)) return null;
  if (/gevent|eventlet|tornado/.test(value)) return `bunicorn has no ${value} worker; use --threads`;
  if (/asgi|uvicorn/i.test(value)) return `bunicorn runs WSGI apps only, so it has no ${value} worker; use an ASGI server`;
  return `bunicorn has no '${value}' worker; use -k sync or -k gthread (with --threads)`;
}

export const SETTINGS: SettingSpec[] = [
  // Config File
  supported("config", ["-c", "--config"], "configFile", "string", "gunicorn config file (Python) or python:MODULE [./gunicorn.conf.py if present]"),
  supported("wsgi_app", [], "app", "string", "the APP, when the command line names none"),
  // Server Socket
  supported("bind", ["-b", "--bind"], "binds", "list", "HOST:PORT, [IPv6]:PORT or unix:PATH to listen on (repeatable) [127.0.0.1:8000, or 0.0.0.0:$PORT]"),
  supported("backlog", ["--backlog"], "backlog", "count", "requests that may wait for a busy Python worker; beyond, 503 [2048]", {
    min: 1, differs: "gunicorn: the kernel's listen queue. bunicorn: requests waiting for a free Python worker, answered 503 beyond it; the kernel's queue stays at Bun's default (Bun.listen takes no backlog, so it has no flag yet)",
  }),
  // Worker Processes
  // 512 as a sanity bound: far past what any machine runs usefully, and a typo like -w 4000 would fork thousands of Pythons.
  supported("workers", ["-w", "--workers"], "workers", "count", "Python worker processes, at most 512 [$WEB_CONCURRENCY, else CPU cores]", {
    min: 1, max: 512, differs: "default: the number of CPU cores (gunicorn: 1). The front never blocks on a worker, so a worker per core is the useful minimum; $WEB_CONCURRENCY still wins",
  }),
  supported("worker_class", ["-k", "--worker-class"], "workerClass", "string", "sync or gthread (bunicorn's workers: gthread when --threads > 1) [sync]", { refuseValue: refuseWorkerClass }),
  supported("threads", ["--threads"], "threads", "count", "app threads in each Python worker [1]", { min: 1 }),
  warned("worker_connections", ["--worker-connections"], "count", "the front holds every connection, not the workers; its limit is --max-connections", { accepts: ["1000"] }),
  supported("max_requests", ["--max-requests"], "maxRequests", "count", "recycle a Python worker after this many requests (0: never) [0]", { min: 0 }),
  supported("max_requests_jitter", ["--max-requests-jitter"], "maxRequestsJitter", "count", "add up to this many to --max-requests per worker [0]", { min: 0 }),
  supported("timeout", ["-t", "--timeout"], "timeoutS", "seconds", "a Python request running longer gets 504 and its worker is replaced (0: no timeout) [30]", {
    min: 0, differs: "gunicorn kills a worker silent for this long; bunicorn times each request, answers 504 and replaces the worker. 0 is no timeout in both",
  }),
  supported("graceful_timeout", ["--graceful-timeout"], "gracefulTimeoutS", "seconds", "on SIGTERM, seconds for in-flight requests to finish [30]", { min: 0 }),
  supported("keepalive", ["--keep-alive"], "keepAliveS", "seconds", "idle seconds a kept-alive connection waits for its next request (0: keep-alive off) [5]", {
    min: 0, differs: "default 5 s (gunicorn: 2 s). gunicorn's sync workers do no keep-alive at all; bunicorn's front holds idle connections cheaply, and 5 s outlasts the gap between a browser's requests. 0: keep-alive off, as in gunicorn: every response says Connection: close and the connection closes after it",
  }),
  // Security
  supported("limit_request_line", ["--limit-request-line"], "limitRequestLine", "count", "bytes of the request line, 0 for 8190 (→ 414) [4094]", { min: 0, max: 8190 }),
  supported("limit_request_fields", ["--limit-request-fields"], "limitRequestFields", "count", "header fields per request, 0 for 32768 (→ 431) [100]", { min: 0, max: 32768 }),
  supported("limit_request_field_size", ["--limit-request-field_size", "--limit-request-field-size"], "limitRequestFieldSize", "count", "bytes of one header field line, 0 for unlimited (→ 431) [8190]", { min: 0 }),
  // Debugging
  supported("reload", ["--reload"], "reload", "bool", "reload the workers (as SIGHUP) when a .py file of the app changes; development only", {
    differs: "watches the .py files under --chdir (or the working directory) and --pythonpath, not the modules imported; Python apps only",
  }),
  supported("reload_engine", ["--reload-engine"], "reloadEngine", "string", "auto, poll or inotify: bunicorn always polls, once a second [auto]", {
    refuseValue: (v) => (["auto", "poll", "inotify"].includes(v) ? null : `expected auto, poll or inotify, got '${v}'`),
    differs: "every engine polls the files' mtimes once a second",
  }),
  supported("reload_extra_files", ["--reload-extra-file"], "reloadExtraFiles", "list", "with --reload, also watch these files (glob patterns, repeatable)"),
  refused("spew", ["--spew"], "bool", "bunicorn does not trace every executed line; use python -m trace or a debugger"),
  supported("check_config", ["--check-config"], "checkConfig", "bool", "check the configuration and the start-up checks, then exit (0: fine, 2: not)", {
    differs: "does not import a Python app (gunicorn does); a TypeScript app is loaded",
  }),
  supported("print_config", ["--print-config"], "printConfig", "bool", "print the settings in effect, by gunicorn's names, then exit"),
  // Server Mechanics
  supported("preload_app", ["--preload"], "preloadApp", "bool", "import the app once, in the master helper, and fork the workers from it: they share its memory copy-on-write. SIGHUP then forks new workers from the same import (no new code, as in gunicorn); --reload and code changes need a restart", {
    differs: "the app is imported in a Python helper process, not in the server itself (the server is Bun); workers' output comes through the helper's",
  }),
  warned("sendfile", ["--no-sendfile"], "bool", "clients get the same bytes either way"),
  warned("reuse_port", ["--reuse-port"], "bool", "one process holds the listening socket, so there is nothing to share it with"),
  supported("chdir", ["--chdir"], "chdir", "string", "directory to change to before loading the app"),
  supported("daemon", ["-D", "--daemon"], "daemon", "bool", "detach from the terminal and run in the background", {
    differs: "Bun cannot fork: bunicorn starts itself again, detached, with stdio on /dev/null",
  }),
  supported("raw_env", ["-e", "--env"], "rawEnv", "env", "KEY=VALUE set in the environment of the server and the app (repeatable)"),
  supported("pidfile", ["-p", "--pid"], "pidfile", "string", "write the server's pid to this file (removed at exit); a file naming a live process stops the start"),
  warned("worker_tmp_dir", ["--worker-tmp-dir"], "string", "bunicorn's workers heartbeat over their socket, not through a temp file"),
  supported("user", ["-u", "--user"], "user", "string", "when started as root: after binding, switch the server and its workers to this user (name or uid)", {
    differs: "the front switches too (gunicorn's master stays root), after binding its ports and opening its logs and certificates",
  }),
  supported("group", ["-g", "--group"], "group", "string", "with --user or alone: switch to this group (name or gid) [the user's group]"),
  supported("umask", ["-m", "--umask"], "umask", "octal", "file mode mask for files the server creates (unix sockets, logs, pid file): 0o22, 0x12 or 18 [inherited]", {
    differs: "unset (inherited) by default; gunicorn's default 0 applies only with --daemon",
  }),
  supported("initgroups", ["--initgroups"], "initgroups", "bool", "with --user: also take the user's supplementary groups from /etc/group [none]"),
  warned("tmp_upload_dir", [], "string", "gunicorn does not use it either (request bodies are streamed)"),
  supported("secure_scheme_headers", [], "secureSchemeHeaders", "string", "config file only: a dict of header → value that means https, from a trusted peer [X-FORWARDED-PROTOCOL: ssl, X-FORWARDED-PROTO: https, X-FORWARDED-SSL: on]", { refuseValue: refuseSecureSchemeHeaders }),
  supported("forwarded_allow_ips", ["--forwarded-allow-ips"], "forwardedAllowIps", "string", "addresses and CIDR networks (or *) whose X-Forwarded-For/-Proto, Forwarded and secure_scheme_headers are believed [$FORWARDED_ALLOW_IPS, else 127.0.0.1,::1]", {
    refuseValue: refuseAddressList,
    differs: "from a trusted peer, X-Forwarded-For (or RFC 7239 Forwarded) also sets REMOTE_ADDR (the right-most untrusted hop; with * the left-most), which gunicorn leaves alone: no ProxyFix middleware needed. The peer's own address is in bunicorn.peer_addr",
  }),
  // Logging
  supported("accesslog", ["--access-logfile"], "accessLogfile", "string", "access log file, '-' for stdout [off]"),
  warned("disable_redirect_access_to_syslog", ["--disable-redirect-access-to-syslog"], "bool", "bunicorn never sends the access log to syslog"),
  supported("access_log_format", ["--access-logformat"], "accessLogFormat", "string", "access log format: gunicorn's %(atom)s atoms, or json (every atom) or json:ATOM,ATOM [gunicorn's default]", {
    refuseValue: refuseAccessFormat,
    differs: "t is in UTC (+0000; gunicorn: local time). A format gunicorn would fail on at every request (%(s)d, a stray %) is refused at start. json and json:ATOMS are bunicorn's: one JSON object a line, keys named as the atoms, numbers as numbers, missing values null",
  }),
  supported("errorlog", ["--error-logfile", "--log-file"], "errorLogfile", "string", "error log file, '-' for stderr [-]"),
  supported("loglevel", ["--log-level"], "logLevel", "level", "debug, info, warning, error or critical [info]"),
  supported("capture_output", ["--capture-output"], "captureOutput", "bool", "send the app's stdout and stderr (print()) to the error log [off: to the server's stdout and stderr]", {
    differs: "captured lines are tagged [INFO] [worker N pid P] (gunicorn writes them raw), also with --error-logfile - (gunicorn then does nothing)",
  }),
  refused("logger_class", ["--logger-class"], "string", "bunicorn's logger cannot be replaced by a Python class; use --error-logfile, --access-logfile and --log-level", { accepts: ["gunicorn.glogging.Logger"] }),
  refused("logconfig", ["--log-config"], "string", "bunicorn does not read Python logging configuration files; use --error-logfile, --access-logfile and --log-level"),
  refused("logconfig_dict", [], "string", "bunicorn does not read Python logging configuration; use errorlog, accesslog and loglevel"),
  refused("logconfig_json", ["--log-config-json"], "string", "bunicorn does not read Python logging configuration files; use --error-logfile, --access-logfile and --log-level"),
  refused("syslog_addr", ["--log-syslog-to"], "string", NO_SYSLOG, { accepts: ["udp://localhost:514"] }),
  refused("syslog", ["--log-syslog"], "bool", NO_SYSLOG),
  refused("syslog_prefix", ["--log-syslog-prefix"], "string", NO_SYSLOG),
  refused("syslog_facility", ["--log-syslog-facility"], "string", NO_SYSLOG, { accepts: ["user"] }),
  warned("enable_stdio_inheritance", ["-R", "--enable-stdio-inheritance"], "bool", "the workers' output always reaches the front's stdout and stderr (or, with --capture-output, the error log), unbuffered"),
  supported("statsd_host", ["--statsd-host"], "statsdHost", "string", "HOST[:PORT] of a statsd server to send gunicorn's metrics to, over UDP [port 8125]", {
    refuseValue: refuseStatsdHost, differs: "no unix: datagram sockets (Bun's UDP is IP only); metrics of one event-loop turn share a packet, one per line",
  }),
  supported("dogstatsd_tags", ["--dogstatsd-tags"], "dogstatsdTags", "string", "comma-separated DogStatsD tags for every metric (tag:value,...)"),
  supported("statsd_prefix", ["--statsd-prefix"], "statsdPrefix", "string", "prefix of every statsd metric name (a '.' is added)"),
  supported("enable_backlog_metric", ["--enable-backlog-metric"], "enableBacklogMetric", "bool", "send gunicorn.backlog once a second (with --statsd-host)", {
    differs: "the requests waiting for a Python worker (see backlog), not the kernel's listen queue",
  }),
  // Process Naming
  warned("proc_name", ["-n", "--name"], "string", "bunicorn does not rename its processes (ps shows bunicorn and bunicorn-worker)"),
  warned("default_proc_name", [], "string", "bunicorn does not rename its processes"),
  supported("pythonpath", ["--pythonpath"], "pythonpath", "paths", "comma-separated directories to add to the Python path"),
  refused("paste", ["--paste", "--paster"], "string", "bunicorn does not read PasteDeploy files; name the app as module:loadapp_result, e.g. a module calling paste.deploy.loadapp('config:FILE')"),
  // Server Hooks (callables in the config file)
  hook("on_starting"), hook("on_reload"), hook("when_ready"), hook("pre_fork"), hook("post_fork"), hook("post_worker_init"),
  hook("worker_int"), hook("worker_abort"), hook("pre_exec"), hook("pre_request"), hook("post_request"), hook("child_exit"),
  hook("worker_exit"), hook("nworkers_changed"), hook("on_exit"),
  refused("ssl_context", [], "string", "bunicorn builds its TLS context itself; use certfile, keyfile, ca_certs, cert_reqs and ciphers"),
  supported("proxy_protocol", ["--proxy-protocol"], "proxyProtocol", "string", "PROXY protocol header required on every connection: off, v1, v2 or auto (the flag alone: auto) [off]", {
    bareValue: "auto",
    refuseValue: (v) => ((PROXY_MODES as readonly string[]).includes(v) ? null : `expected off, v1, v2 or auto, got '${v}'`),
  }),
  supported("proxy_allow_ips", ["--proxy-allow-from"], "proxyAllowIps", "string", "addresses and CIDR networks (or *) that may send a PROXY header; others are closed [127.0.0.1,::1]", { refuseValue: refuseAddressList }),
  refused("protocol", ["--protocol"], "string", "bunicorn speaks HTTP only; point the proxy at it over HTTP (nginx proxy_pass)", { accepts: ["http"] }),
  warned("uwsgi_allow_ips", ["--uwsgi-allow-from"], "string", "only for --protocol uwsgi, which bunicorn refuses", { accepts: ["127.0.0.1,::1"] }),
  // SSL
  supported("keyfile", ["--keyfile"], "keyfile", "string", "PEM private key for TLS (with --certfile) [off]"),
  supported("certfile", ["--certfile"], "certfile", "string", "PEM certificate (chain) for TLS on every bind; SIGHUP reads it again [off]"),
  refused("ssl_version", ["--ssl-version"], "string", "bunicorn always negotiates TLS 1.2 or 1.3 and refuses older versions", { accepts: ["2", "17", "TLS", "TLS_SERVER", "PROTOCOL_TLS", "PROTOCOL_TLS_SERVER"] }),
  supported("cert_reqs", ["--cert-reqs"], "certReqs", "count", "client certificates: 0 none, 1 optional (verified if sent), 2 required [0]", { min: 0, max: 2 }),
  supported("ca_certs", ["--ca-certs"], "caCerts", "string", "PEM CA certificates that client certificates are verified against"),
  warned("suppress_ragged_eofs", ["--suppress-ragged-eofs"], "bool", "a TLS client that closes without close_notify is treated as closed either way"),
  warned("do_handshake_on_connect", ["--do-handshake-on-connect"], "bool", "the TLS handshake always completes before the request is read"),
  supported("ciphers", ["--ciphers"], "ciphers", "string", "OpenSSL cipher list for TLS 1.2 [OpenSSL's default]"),
  // HTTP/2
  refused("http_protocols", ["--http-protocols"], "string", NO_H2, { accepts: ["h1"] }),
  refused("http2_cleartext", ["--http2-cleartext"], "string", NO_H2, { accepts: ["off"] }),
  refused("http2_max_concurrent_streams", ["--http2-max-concurrent-streams"], "string", NO_H2, { accepts: ["100"] }),
  refused("http2_initial_window_size", ["--http2-initial-window-size"], "string", NO_H2, { accepts: ["65535"] }),
  refused("http2_max_frame_size", ["--http2-max-frame-size"], "string", NO_H2, { accepts: ["16384"] }),
  refused("http2_max_header_list_size", ["--http2-max-header-list-size"], "string", NO_H2, { accepts: ["65536"] }),
  refused("raw_paste_global_conf", ["--paste-global"], "list", "bunicorn does not read PasteDeploy files (see --paste)"),
  refused("permit_obsolete_folding", ["--permit-obsolete-folding"], "bool", STRICT_PARSER),
  refused("strip_header_spaces", ["--strip-header-spaces"], "bool", STRICT_PARSER),
  refused("permit_unconventional_http_method", ["--permit-unconventional-http-method"], "bool", STRICT_PARSER),
  refused("permit_unconventional_http_version", ["--permit-unconventional-http-version"], "bool", STRICT_PARSER),
  refused("casefold_http_method", ["--casefold-http-method"], "bool", STRICT_PARSER),
  refused("forwarder_headers", ["--forwarder-headers"], "string", "bunicorn does not take SCRIPT_NAME or PATH_INFO from request headers; use --root-path", { accepts: ["SCRIPT_NAME,PATH_INFO"] }),
  refused("header_map", ["--header-map"], "string", "bunicorn always drops header names with '_' (gunicorn's 'drop'), so X_Forwarded_For cannot pose as X-Forwarded-For", { accepts: ["drop"] }),
  warned("asgi_loop", ["--asgi-loop"], "string", NO_ASGI, { accepts: ["auto"] }),
  warned("asgi_lifespan", ["--asgi-lifespan"], "string", NO_ASGI, { accepts: ["auto"] }),
  warned("asgi_disconnect_grace_period", ["--asgi-disconnect-grace-period"], "string", NO_ASGI, { accepts: ["3"] }),
  warned("http_parser", ["--http-parser"], "string", "bunicorn has one HTTP parser of its own (in the front)", { accepts: ["auto"] }),
  supported("root_path", ["--root-path"], "rootPath", "string", "SCRIPT_NAME of the app, stripped from PATH_INFO [$SCRIPT_NAME or empty]"),
  // Dirty Arbiters
  refused("dirty_apps", ["--dirty-app"], "list", NO_DIRTY),
  refused("dirty_workers", ["--dirty-workers"], "string", NO_DIRTY, { accepts: ["0"] }),
  refused("dirty_timeout", ["--dirty-timeout"], "string", NO_DIRTY, { accepts: ["300"] }),
  refused("dirty_threads", ["--dirty-threads"], "string", NO_DIRTY, { accepts: ["1"] }),
  refused("dirty_graceful_timeout", ["--dirty-graceful-timeout"], "string", NO_DIRTY, { accepts: ["30"] }),
  refused("on_dirty_starting", [], "string", NO_DIRTY),
  refused("dirty_post_fork", [], "string", NO_DIRTY),
  refused("dirty_worker_init", [], "string", NO_DIRTY),
  refused("dirty_worker_exit", [], "string", NO_DIRTY),
  // Control
  supported("control_socket", ["--control-socket"], "controlSocket", "string", "unix socket (mode 0600) for bunicorn ctl status|workers|reload|add|remove [none]", {
    differs: "none unless given (gunicorn 25 makes gunicorn.ctl by default); bunicorn ctl takes --control-socket PATH too",
  }),
  refused("control_socket_mode", ["--control-socket-mode"], "string", "bunicorn's control socket is always mode 0600: only the user the server runs as may open it", { accepts: ["384", "0o600", "600"] }),
  warned("control_socket_disable", ["--no-control-socket"], "bool", "bunicorn has a control socket only when --control-socket names one"),
  // bunicorn's own
  supported(null, ["--header-timeout"], "headerTimeoutS", "seconds", "seconds for a request head (and each gap in its body) to arrive, else 408 [10]", { min: 0.001 }),
  supported(null, ["--limit-request-body"], "limitRequestBody", "count", "bytes of a request body (→ 413) [1073741824]", { min: 0 }),
  supported(null, ["--max-connections"], "maxConnections", "count", "open client connections; beyond, new ones wait unserved [20000]", { min: 1 }),
  supported(null, ["--request-buffer"], "requestBufferBytes", "count", "bytes of a request body received whole before a Python worker gets it; larger and chunked bodies stream (0: off) [1048576]", { min: 0, max: 1024 * 1024 }),
  supported(null, ["--response-buffer-memory"], "responseBufferMemoryBytes", "count", "bytes of a streamed Python answer held in memory for a slow client [262144]", { min: 0 }),
  supported(null, ["--response-buffer-file"], "responseBufferFileBytes", "count", "then bytes held in a temporary file (0600, unlinked at once; 0: none) [1073741824]", { min: 0 }),
  supported(null, ["--response-buffer-total"], "responseBufferTotalBytes", "count", "bytes in all such temporary files together; past the bounds the worker waits for the client [4294967296]", { min: 0 }),
  supported(null, ["--static-map"], "staticMaps", "list", "URL_PREFIX=DIR: the front serves GET/HEAD under the prefix from DIR itself (repeatable)", { refuseValue: refuseMapping }),
  supported(null, ["--static-max-age"], "staticMaxAgeS", "count", "Cache-Control: public, max-age=N on static files (0: no Cache-Control) [0]", { min: 0 }),
  supported(null, ["--static-index"], "staticIndex", "bool", "answer a static directory's URL with its index.html"),
  supported(null, ["--sendfile-root"], "sendfileRoots", "list", "URL_PREFIX=DIR: files an app may send with X-Accel-Redirect: URL_PREFIX/... or X-Sendfile: PATH; never served directly (repeatable)", { refuseValue: refuseMapping }),
  supported(null, ["--health-path"], "healthPath", "string", "PATH answered by the front: 200 while a worker is ready, 503 when none is or while draining", { refuseValue: (v) => (v.startsWith("/") && !/[?#%\s]/.test(v) ? null : `expected a path like /healthz, got '${v}'`) }),
  supported(null, ["--drain-delay"], "drainDelayS", "seconds", "on SIGTERM, seconds --health-path answers 503 while all else is served, before the listeners close (0: none) [5 with --health-path]", { min: 0 }),
  supported(null, ["--metrics-bind"], "metricsBind", "string", "HOST:PORT of a listener serving Prometheus metrics at /metrics [off]"),
  supported(null, ["--python"], "python", "string", "Python interpreter (also reads the config file) [$VIRTUAL_ENV/bin/python, else python3]"),
  supported(null, ["--expose-tracebacks"], "exposeTracebacks", "bool", "put the traceback in 500 responses (development only)"),
  supported(null, ["-v", "--version"], "version", "bool", "print the version and exit"),
  supported(null, ["-h", "--help"], "help", "bool", "show this help and exit"),
];

/** --forwarded-allow-ips, --proxy-allow-from: a comma-separated list of addresses, networks or "*". */
function refuseAddressList(value: string): string | null {
  try {
    AddressList.parse(value);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** secure_scheme_headers: a dict of header names to values (strings), as gunicorn reads it. */
function refuseSecureSchemeHeaders(value: string): string | null {
  let dict: unknown;
  try {
    dict = JSON.parse(value);
  } catch {
    return `expected a dict of header names to values, got '${value}'`;
  }
  if (!isObject(dict)) return "expected a dict of header names to values";
  for (const [k, v] of Object.entries(dict)) {
    if (!isToken(k)) return `'${k}' is not a header name`;
    if (typeof v !== "string") return `the value for '${k}' must be a string`;
  }
  return null;
}

function refuseMapping(value: string): string | null {
  const parsed = parseMapping(value);
  return typeof parsed === "string" ? parsed : null;
}

/** Set in the detached copy that --daemon starts, so it does not detach again; removed before anything reads the environment. */
const DAEMON_CHILD_ENV = "BUNICORN_DAEMON_CHILD";


export function usage(): string {
  const rows = SETTINGS.filter((s) => s.status === "supported" && s.flags.length > 0).map((s) => {
    const value = s.kind === "bool" ? "" : s.kind === "level" ? " LEVEL" : s.kind === "count" || s.kind === "seconds" || s.kind === "octal" ? " N" : " VALUE";
    return `  ${(s.flags.join(", ") + value).padEnd(34)} ${s.help}`;
  });
  return `usage: bunicorn [options] APP
       bunicorn ctl --control-socket PATH status|workers|reload|add|remove

APP is a Python WSGI app (module:callable, path/to/file.py:callable, module:create_app())
or a TypeScript app (path/to/app.ts, path/to/app.ts:export).

Settings come from, last wins: defaults ($WEB_CONCURRENCY, $PORT), the config file
(-c FILE, else ./gunicorn.conf.py), $GUNICORN_CMD_ARGS, the command line. gunicorn's
other flags are accepted with a warning or refused with the reason (see the README).

options:
${rows.join("\n")}
`;
}

/** One value for one setting, from one source, before validation. */
interface Assignment {
  spec: SettingSpec;
  /** How the source named it, for messages: `-w`, `GUNICORN_CMD_ARGS: --workers`, `gunicorn.conf.py: workers`. */
  label: string;
  raw: string | string[] | boolean;
  source: string;
}

/** The command line as argparse reads gunicorn's: `-w4`, `-w 4`, `--workers=4`, `--work=4` (a unique prefix), `-De X=1` (grouped short flags). */
function readArgv(argv: string[], source: string, labelPrefix = ""): { assignments: Assignment[]; apps: string[] } {
  const assignments: Assignment[] = [];
  const apps: string[] = [];
  const push = (spec: SettingSpec, flag: string, raw: string | boolean) => assignments.push({ spec, label: labelPrefix + flag, raw, source });
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") { apps.push(...argv.slice(i + 1)); break; }
    if (!arg.startsWith("-") || arg === "-") { apps.push(arg); continue; }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const typed = eq === -1 ? arg : arg.slice(0, eq);
      const { spec, flag } = findLongFlag(typed, labelPrefix);
      if (spec.kind === "bool") {
        if (eq !== -1) throw new UsageError(`${labelPrefix}${flag} takes no value`);
        push(spec, flag, true);
      } else if (eq !== -1) {
        push(spec, flag, arg.slice(eq + 1));
      } else if (spec.bareValue !== undefined && (i + 1 >= argv.length || argv[i + 1].startsWith("-"))) {
        push(spec, flag, spec.bareValue);
      } else {
        if (i + 1 >= argv.length) throw new UsageError(`${labelPrefix}${flag} needs a value`);
        push(spec, flag, argv[++i]);
      }
      continue;
    }
    // Short flags: each letter a flag, until one that takes a value takes the rest (or the next word).
    for (let j = 1; j < arg.length; j++) {
      const flag = "-" + arg[j];
      const spec = SETTINGS.find((s) => s.flags.includes(flag));
      if (spec === undefined) throw new UsageError(`${labelPrefix}unrecognized option '${j === 1 ? arg : flag}'`);
      if (spec.kind === "bool") { push(spec, flag, true); continue; }
      let rest = arg.slice(j + 1);
      if (rest.startsWith("=")) rest = rest.slice(1); // -w=4, as argparse reads it
      if (rest === "" && j + 1 === arg.length) {
        if (i + 1 >= argv.length) throw new UsageError(`${labelPrefix}${flag} needs a value`);
        rest = argv[++i];
      }
      push(spec, flag, rest);
      break;
    }
  }
  return { assignments, apps };
}

/** An exact long flag, else the one setting whose flags start with what was typed (argparse's allow_abbrev). */
function findLongFlag(typed: string, labelPrefix: string): { spec: SettingSpec; flag: string } {
  const exact = SETTINGS.find((s) => s.flags.includes(typed));
  if (exact !== undefined) return { spec: exact, flag: typed };
  const matches = SETTINGS.filter((s) => s.flags.some((f) => f.startsWith("--") && f.startsWith(typed)));
  if (matches.length === 1) return { spec: matches[0], flag: matches[0].flags.find((f) => f.startsWith(typed))! };
  if (matches.length > 1) {
    const names = matches.flatMap((s) => s.flags.filter((f) => f.startsWith(typed)));
    throw new UsageError(`${labelPrefix}ambiguous option: ${typed} could match ${names.join(", ")}`);
  }
  throw new UsageError(`${labelPrefix}unrecognized option '${typed}'`);
}

/**
 * POSIX shell words, as Python's shlex.split reads GUNICORN_CMD_ARGS: blanks separate,
 * '...' is literal, "..." keeps \" \\ \$ \` escapes, a backslash outside quotes escapes
 * the next character. An unclosed quote is an error.
 */
export function splitShellWords(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === "\\") {
      if (i + 1 < text.length) word += text[++i];
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end === -1) throw new UsageError("GUNICORN_CMD_ARGS: no closing quotation");
      word += text.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === "\\" && j + 1 < text.length && '"\\$`'.includes(text[j + 1])) j++;
        word += text[j];
      }
      if (j >= text.length) throw new UsageError("GUNICORN_CMD_ARGS: no closing quotation");
      i = j;
    } else {
      word += c;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** What the config file reader (worker.py's bunicorn-config role) reports. */
export interface ConfigFileValues {
  file: string;
  /** Known settings only: JSON values, `{"$callable": name}` or `{"$nonjson": type}`. */
  values: Record<string, unknown>;
  /** Plain-data names that are no setting (a typo like `worker = 4`). */
  unknown: string[];
}

/** A config file's values as assignments; a value of the wrong shape names the file and the setting (exit 2). */
function readFileValues(file: ConfigFileValues): Assignment[] {
  const assignments: Assignment[] = [];
  for (const [name, value] of Object.entries(file.values)) {
    const spec = SETTINGS.find((s) => s.name === name)!;
    const label = `${file.file}: ${name}`;
    if (isObject(value) && "$callable" in value) {
      if (spec.kind === "hook" || spec.name === "ssl_context") { assignments.push({ spec, label, raw: "<callable>", source: file.file }); continue; }
      throw new UsageError(`${label}: is a Python callable; bunicorn reads plain values only`);
    }
    if (isObject(value) && "$nonjson" in value) throw new UsageError(`${label}: a ${String(value.$nonjson)} value; bunicorn reads strings, numbers, booleans, lists and dicts`);
    if (value === null || value === undefined) continue; // None: gunicorn's default
    assignments.push({ spec, label, raw: fileValueToRaw(spec, label, value), source: file.file });
  }
  return assignments;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Python values → the strings the command line would have given (gunicorn's validators accept both). */
function fileValueToRaw(spec: SettingSpec, label: string, value: unknown): string | string[] | boolean {
  const scalar = (v: unknown): string => {
    if (typeof v === "string") return v;
    if (typeof v === "number" && spec.kind !== "string" && spec.kind !== "list") return String(v);
    if (typeof v === "number") return String(v);
    throw new UsageError(`${label}: expected a string or a number, got ${JSON.stringify(v)}`);
  };
  if (spec.kind === "bool") {
    if (typeof value === "boolean") return value;
    if (typeof value === "string" && /^(true|false)$/i.test(value)) return value.toLowerCase() === "true";
    throw new UsageError(`${label}: expected True or False, got ${JSON.stringify(value)}`);
  }
  if (spec.kind === "list" || spec.kind === "env" || spec.kind === "paths") {
    if (Array.isArray(value)) return value.map(scalar);
    return spec.kind === "paths" ? scalar(value) : [scalar(value)];
  }
  if (typeof value === "boolean") throw new UsageError(`${label}: expected a value, got ${value ? "True" : "False"}`);
  if (isObject(value) || Array.isArray(value)) return JSON.stringify(value);
  return scalar(value);
}

/** A warned or refused setting's value that means gunicorn's default (or "off"): nothing to say. */
function isDefaultValue(spec: SettingSpec, raw: string | string[] | boolean): boolean {
  if (raw === false || raw === "" || raw === "{}" || raw === "[]") return true;
  if (Array.isArray(raw) && raw.length === 0) return true;
  const text = Array.isArray(raw) ? raw.join(",") : String(raw);
  return spec.accepts?.includes(text) ?? false;
}

type ParsedConfig = Config & { showVersion: boolean; showHelp: boolean; warnings: string[] };

/** Apply assignments in order (each source replaces, not extends, an earlier source's list). */
function applyAssignments(result: ParsedConfig, assignments: Assignment[]): void {
  const listSource = new Map<string, string>();
  for (const a of assignments) {
    const { spec } = a;
    if (spec.status !== "supported") {
      if (isDefaultValue(spec, a.raw)) continue;
      if (spec.status === "refused") throw new UsageError(`${a.label}: ${spec.help}`);
      result.warnings.push(`${a.label} ignored: ${spec.help}`);
      continue;
    }
    if (spec.key === "version") { result.showVersion = a.raw === true; continue; }
    if (spec.key === "help") { result.showHelp = a.raw === true; continue; }
    if (spec.kind === "hook") {
      if (a.raw !== "<callable>") throw new UsageError(`${a.label}: a server hook must be a function`);
      if (!result.hooks.includes(spec.name!)) result.hooks.push(spec.name!);
      continue;
    }
    const key = spec.key!;
    if (typeof a.raw === "boolean") { (result as any)[key] = a.raw; continue; }
    const raws = Array.isArray(a.raw) ? a.raw : [a.raw];
    for (const raw of raws) {
      const refusal = spec.refuseValue?.(raw);
      if (refusal) throw new UsageError(`${a.label}: ${refusal}`);
    }
    if (spec.kind === "list" || spec.kind === "env" || spec.kind === "paths") {
      if (listSource.get(key) !== a.source) { (result as any)[key] = []; listSource.set(key, a.source); }
      const values = spec.kind === "paths" ? raws.flatMap((r) => r.split(",")).filter((p) => p !== "") : raws;
      for (const v of values) (result as any)[key].push(parseFlagValue(spec, a.label, v));
    } else {
      (result as any)[key] = parseFlagValue(spec, a.label, raws[0]);
    }
  }
}

function parseFlagValue(spec: SettingSpec, flag: string, raw: string): number | string {
  switch (spec.kind) {
    case "count": {
      const n = parseDigits(raw);
      if (n < 0) throw new UsageError(`${flag}: expected a whole number, got '${raw}'`);
      if (spec.min !== undefined && n < spec.min) throw new UsageError(`${flag}: must be at least ${spec.min}, got ${n}`);
      if (spec.max !== undefined && n > spec.max) throw new UsageError(`${flag}: must be at most ${spec.max}, got ${n}`);
      return n;
    }
    case "seconds": {
      if (!/^[0-9]{1,9}(\.[0-9]{1,6})?$/.test(raw)) throw new UsageError(`${flag}: expected seconds (e.g. 30 or 0.5), got '${raw}'`);
      const n = Number(raw);
      // Where gunicorn gives 0 a meaning (no timeout, no keep-alive) min is 0; elsewhere 0 would mean "at once".
      if (spec.min === undefined && n <= 0) throw new UsageError(`${flag}: must be more than 0, got '${raw}'`);
      return n;
    }
    case "octal": {
      // Python's int(x, 0), as gunicorn reads --umask: 0o22, 0x12, 18 (a leading 0 alone is refused, as Python does).
      const m = /^(?:0[oO]([0-7]{1,4})|0[xX]([0-9a-fA-F]{1,3})|(0|[1-9][0-9]{0,3}))$/.exec(raw);
      const n = m === null ? -1 : m[1] !== undefined ? Number.parseInt(m[1], 8) : m[2] !== undefined ? Number.parseInt(m[2], 16) : parseDigits(m[3]);
      if (n < 0 || n > 0o777) throw new UsageError(`${flag}: expected a file mode mask like 0o22 (0 to 0o777), got '${raw}'`);
      return n;
    }
    case "env":
      if (!/^[^=]+=/.test(raw)) throw new UsageError(`${flag}: expected KEY=VALUE, got '${raw}'`);
      return raw;
    case "level":
      if (!(LOG_LEVELS as readonly string[]).includes(raw.toLowerCase())) {
        throw new UsageError(`${flag}: expected one of ${LOG_LEVELS.join(", ")}, got '${raw}'`);
      }
      return raw.toLowerCase();
    default:
      if (raw === "") throw new UsageError(`${flag}: expected a value`);
      return raw;
  }
}

/** gunicorn's defaults that come from the environment: $WEB_CONCURRENCY workers, bind 0.0.0.0:$PORT. */
function readEnvironmentDefaults(env: Record<string, string | undefined>): Assignment[] {
  const assignments: Assignment[] = [];
  const spec = (name: string) => SETTINGS.find((s) => s.name === name)!;
  if (env.WEB_CONCURRENCY !== undefined) assignments.push({ spec: spec("workers"), label: "WEB_CONCURRENCY", raw: env.WEB_CONCURRENCY, source: "environment" });
  if (env.FORWARDED_ALLOW_IPS !== undefined) assignments.push({ spec: spec("forwarded_allow_ips"), label: "FORWARDED_ALLOW_IPS", raw: env.FORWARDED_ALLOW_IPS, source: "environment" });
  if (env.PORT !== undefined) assignments.push({ spec: spec("bind"), label: "PORT", raw: [`0.0.0.0:${env.PORT}`], source: "environment" });
  return assignments;
}

export interface ConfigSources {
  env?: Record<string, string | undefined>;
  file?: ConfigFileValues | null;
}

/**
 * argv (without the program), the environment and the config file's values into a Config,
 * in gunicorn's order: defaults < config file < GUNICORN_CMD_ARGS < command line.
 * A bad flag or value is a UsageError (exit 2); what is ignored is in `warnings`.
 */
export function parseArgs(argv: string[], sources: ConfigSources = {}): ParsedConfig {
  const env = sources.env ?? {};
  const result: ParsedConfig = { ...defaultConfig(), showVersion: false, showHelp: false, warnings: [] };
  const cli = readArgv(argv, "command line");
  const fromEnv = readArgv(splitShellWords(env.GUNICORN_CMD_ARGS ?? ""), "GUNICORN_CMD_ARGS", "GUNICORN_CMD_ARGS: ");
  if (fromEnv.apps.length > 0) result.warnings.push(`GUNICORN_CMD_ARGS: ignored ${fromEnv.apps.join(" ")} (as gunicorn does): the APP goes on the command line`);
  if (sources.file) {
    for (const name of sources.file.unknown) result.warnings.push(`${sources.file.file}: unknown setting '${name}' ignored`);
  }
  applyAssignments(result, [
    ...readEnvironmentDefaults(env),
    ...(sources.file ? readFileValues(sources.file) : []),
    ...fromEnv.assignments,
    ...cli.assignments,
  ]);
  if (result.showHelp || result.showVersion) return result;
  if (cli.apps.length > 1) throw new UsageError(`expected one APP, got ${cli.apps.length}: ${cli.apps.join(" ")}`);
  if (cli.apps.length === 1) result.app = cli.apps[0];
  if (result.app === "") throw new UsageError("missing APP (e.g. myproject.wsgi:application or apps/hello.ts)");
  for (const bind of result.binds) parseBind(bind);
  if (result.reload && isTypeScriptAppSpec(result.app)) {
    throw new UsageError("--reload: for Python apps only (a TypeScript app runs in the server's own process); use bun --watch");
  }
  if (result.rootPath !== "" && (!result.rootPath.startsWith("/") || result.rootPath.endsWith("/"))) {
    throw new UsageError(`--root-path: must start with '/' and not end with '/', got '${result.rootPath}'`);
  }
  if ((result.certfile === null) !== (result.keyfile === null)) {
    throw new UsageError(result.certfile === null ? "--keyfile needs --certfile" : "--certfile needs --keyfile");
  }
  if (result.certfile === null && (result.caCerts !== null || result.certReqs !== 0 || result.ciphers !== null)) {
    throw new UsageError("--ca-certs, --cert-reqs and --ciphers need --certfile and --keyfile (TLS)");
  }
  if (result.certReqs !== 0 && result.caCerts === null) throw new UsageError("--cert-reqs 1 or 2 needs --ca-certs to verify client certificates against");
  if (result.limitRequestLine === 0) result.limitRequestLine = 8190;
  if (result.limitRequestFields === 0) result.limitRequestFields = 32768;
  if (result.limitRequestFieldSize === 0) result.limitRequestFieldSize = Number.MAX_SAFE_INTEGER;
  return result;
}

/** The config file to read: -c (command line, then GUNICORN_CMD_ARGS), else ./gunicorn.conf.py when it exists. */
function chooseConfigFile(argv: string[], env: Record<string, string | undefined>): { location: string; isExplicit: boolean } | null {
  const last = (assignments: Assignment[], key: SettingKey) => assignments.filter((a) => a.spec.key === key).at(-1)?.raw as string | undefined;
  const cli = readArgv(argv, "command line").assignments;
  const fromEnv = readArgv(splitShellWords(env.GUNICORN_CMD_ARGS ?? ""), "GUNICORN_CMD_ARGS", "GUNICORN_CMD_ARGS: ").assignments;
  const explicit = last(cli, "configFile") ?? last(fromEnv, "configFile");
  if (explicit !== undefined) return { location: explicit, isExplicit: true };
  return fs.existsSync("gunicorn.conf.py") ? { location: "./gunicorn.conf.py", isExplicit: false } : null;
}

/** The interpreter that reads the config file is the workers' (--python, then $VIRTUAL_ENV, then python3). */
function choosePythonForConfig(argv: string[], env: Record<string, string | undefined>): string {
  const python = [...readArgv(splitShellWords(env.GUNICORN_CMD_ARGS ?? ""), "GUNICORN_CMD_ARGS").assignments, ...readArgv(argv, "command line").assignments]
    .filter((a) => a.spec.key === "python").at(-1)?.raw as string | undefined;
  return choosePython({ ...defaultConfig(), python: python ?? null });
}

/**
 * Run the config file in a short-lived `python -c` (worker.py's bunicorn-config role: the
 * file runs as gunicorn runs it, and one JSON object comes back on stdout: the known
 * settings' values, the unknown plain-data names, or the error; the file's own prints go to
 * stderr). A file that is missing, does not parse or raises names the file and the error (exit 2).
 */
async function readConfigFile(location: string, python: string): Promise<ConfigFileValues> {
  const filename = location.startsWith("file:") ? location.slice(5) : location;
  if (!location.startsWith("python:") && !fs.existsSync(filename)) throw new UsageError(`config file ${location}: no such file`);
  if (Bun.which(python) === null && !fs.existsSync(python)) {
    throw new UsageError(`config file ${location}: no Python interpreter to read it: ${python} not found (use --python PATH)`);
  }
  const names = SETTINGS.flatMap((s) => (s.name === null ? [] : [s.name])).join(",");
  const proc = Bun.spawn(pythonRole(python, "bunicorn-config", [location, names]), { stdin: pythonProgram(), stdout: "pipe", stderr: "inherit" });
  const [text, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  let report: { error?: string; values?: Record<string, unknown>; unknown?: string[] };
  try {
    report = JSON.parse(text);
  } catch {
    throw new UsageError(`config file ${location}: ${python} could not read it (exit status ${code})`);
  }
  if (report.error !== undefined) throw new UsageError(`config file ${location}: ${report.error}`);
  return { file: location, values: report.values ?? {}, unknown: report.unknown ?? [] };
}

/** parseArgs with the config file read first (when there is one): what main() calls. */
export async function loadConfig(argv: string[], env: Record<string, string | undefined>): Promise<ParsedConfig> {
  // --help and --version answer without reading anything else (as argparse's actions do).
  if (argv.some((a) => a === "-h" || a === "--help" || a === "-v" || a === "--version")) return parseArgs(argv);
  const chosen = chooseConfigFile(argv, env);
  if (chosen === null) return parseArgs(argv, { env });
  const python = choosePythonForConfig(argv, env);
  if (!chosen.isExplicit && Bun.which(python) === null && !fs.existsSync(python)) {
    // A TypeScript app with a gunicorn.conf.py beside it and no Python: say so, and go on.
    const config = parseArgs(argv, { env });
    config.warnings.push(`${chosen.location} not read: no Python interpreter (${python}) to run it (use --python PATH)`);
    return config;
  }
  const config = parseArgs(argv, { env, file: await readConfigFile(chosen.location, python) });
  config.configFile ??= chosen.location; // ./gunicorn.conf.py found by itself: the hooks run it again
  return config;
}

/** --print-config: every setting that lands in Config, by gunicorn's name, as gunicorn prints them. */
export function formatConfig(config: Config): string {
  const show = (v: unknown): string => {
    if (v === null) return "None";
    if (typeof v === "boolean") return v ? "True" : "False";
    if (Array.isArray(v)) return `[${v.map((x) => `'${String(x)}'`).join(", ")}]`;
    return String(v);
  };
  const values = settingsByName(config);
  const width = Math.max(...Object.keys(values).map((name) => name.length));
  return Object.entries(values).map(([name, v]) => `${name.padEnd(width)} = ${show(name === "umask" && config.umask !== null ? `0o${config.umask.toString(8)}` : v)}`).join("\n") + "\n";
}

/** Every setting that lands in Config, by gunicorn's name, sorted: --print-config, and server.cfg in hooks. */
export function settingsByName(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const rows = SETTINGS.filter((s) => s.name !== null && s.key !== undefined && s.kind !== "hook").sort((a, b) => a.name!.localeCompare(b.name!));
  for (const s of rows) out[s.name!] = (config as any)[s.key!];
  return out;
}

type BindAddress = { unix: string } | { hostname: string; port: number };

/** `unix:PATH`, `HOST:PORT` or `[IPv6]:PORT`, as in --bind. */
function formatBindAddress(address: BindAddress): string {
  if ("unix" in address) return `unix:${address.unix}`;
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return `${host}:${address.port}`;
}

export function parseBind(bind: string): BindAddress {
  if (bind.startsWith("unix:")) {
    const path = bind.slice(5);
    if (path === "") throw new UsageError(`--bind: empty unix socket path in '${bind}'`);
    return { unix: path };
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):([0-9]{1,5})$/.exec(bind) ?? /^()([A-Za-z0-9.-]+)()$/.exec(bind);
  if (m === null) throw new UsageError(`--bind: expected HOST:PORT, [IPv6]:PORT or unix:PATH, got '${bind}'`);
  const hostname = m[1] || m[2] || "0.0.0.0";
  const port = m[3] === "" ? 8000 : parseDigits(m[3]);
  if (port < 0 || port > 65535) throw new UsageError(`--bind: port out of range in '${bind}'`);
  return { hostname, port };
}

// ==== 12. Main ====

export function isTypeScriptAppSpec(spec: string): boolean {
  return /\.(ts|tsx|js|mjs|cjs|jsx)(:[A-Za-z_$][\w$]*)?$/.test(spec);
}

/** `path/to/app.ts` (default export) or `path/to/app.ts:name`. */
export async function loadTypeScriptApp(spec: string): Promise<WsgiApp> {
  const m = /^(.*?)(?::([A-Za-z_$][\w$]*))?$/.exec(spec)!;
  const file = path.resolve(m[1]);
  const exportName = m[2] ?? "default";
  let module: Record<string, unknown>;
  try {
    module = await import(file);
  } catch (err) {
    throw new UsageError(`cannot load app '${spec}': importing ${file} failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const app = module[exportName];
  if (typeof app !== "function") {
    const found = Object.keys(module).filter((k) => typeof module[k] === "function");
    throw new UsageError(`cannot load app '${spec}': ${file} has no function export '${exportName}'` +
      (found.length > 0 ? ` (function exports: ${found.join(", ")})` : ""));
  }
  return app as WsgiApp;
}

export interface RunningServer {
  server: Server;
  ports: number[];
  stop(graceful?: boolean): Promise<void>;
}

/**
 * Start serving in this process: for tests, and for main(). `app` is a TypeScript app or a ready app stage.
 * main() passes the logs it opened up front; otherwise they are opened here.
 */
export function startServer(options: Partial<Config> & { app?: string; handler?: WsgiApp; stage?: AppStage; logger?: Logger; accessLog?: LineSink | null; inherited?: InheritedSocket[] }): RunningServer {
  const config: Config = { ...defaultConfig(), ...options } as Config;
  const log = options.logger ?? openErrorLog(config);
  let server: Server;
  // The stages, outermost first: health, static files, the app's (section 8).
  let stage = options.stage ?? new TypeScriptStage(options.handler!, () => server);
  const pool = options.stage !== undefined && "readyWorkers" in options.stage ? (options.stage as PythonStage) : null;
  let staticStage: StaticStage | null = null;
  if (config.staticMaps.length > 0 || config.sendfileRoots.length > 0) {
    try {
      stage = staticStage = new StaticStage(stage, config);
    } catch (err) {
      throw new StartupError(err instanceof Error ? err.message : String(err));
    }
  }
  if (config.healthPath !== null) stage = new HealthStage(stage, config.healthPath, () => server);
  server = new Server(config, stage, log, options.accessLog === undefined ? openAccessLog(config) : options.accessLog);
  if (staticStage?.hasInternalRoots) server.sendfileStage = staticStage;
  if (pool !== null) server.readyWorkers = () => pool.readyWorkers();
  server.listen(options.inherited);
  if (config.metricsBind !== null) {
    try {
      server.metricsListener = serveMetrics(config.metricsBind, server, pool);
    } catch (err) {
      void server.stop(false);
      throw err;
    }
  }
  return { server, ports: server.ports, stop: (graceful = true) => server.stop(graceful) };
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === "ctl") return runControlClient(argv.slice(1));
  const isDaemonChild = process.env[DAEMON_CHILD_ENV] === "1";
  delete process.env[DAEMON_CHILD_ENV]; // the app must not see it
  // First, before any child (the config reader) could inherit them: systemd's variables are ours alone.
  const service = takeServiceManager();
  let config: ParsedConfig;
  try {
    config = await loadConfig(argv, process.env);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bunicorn: error: ${err.message}\n(see bunicorn --help)\n`);
    process.exit(2);
  }
  if (config.showHelp) { process.stdout.write(usage()); return; }
  if (config.showVersion) { process.stdout.write(`bunicorn ${VERSION} (bun ${Bun.version})\n`); return; }
  if (config.printConfig) {
    for (const w of config.warnings) process.stderr.write(`bunicorn: warning: ${w}\n`);
    process.stdout.write(formatConfig(config));
    return;
  }
  applyProcessSettings(config);
  if (config.hooks.length > 0) {
    if (isTypeScriptAppSpec(config.app)) {
      process.stderr.write(`bunicorn: error: ${config.configFile}: server hooks (${config.hooks.join(", ")}) run with Python apps only\n`);
      process.exit(2);
    }
    config.hookSettings = settingsByName(config);
  }
  const owner = exitOnStartupError(() => chooseOwner(config));
  const { log, accessLog } = exitOnStartupError(() => checkMachine(config, config.daemon && !isDaemonChild));
  log.metrics = await openStatsd(config);
  for (const w of config.warnings) log.warning(w);
  if (config.daemon && !isDaemonChild) return startDetached(log);
  const context: MainContext = { argv, config, lastRead: structuredClone(config), log, service, owner, isDaemon: isDaemonChild };
  if (isTypeScriptAppSpec(config.app)) {
    let handler: WsgiApp;
    try {
      handler = await loadTypeScriptApp(config.app);
    } catch (err) {
      process.stderr.write(`bunicorn: error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(2);
    }
    if (config.checkConfig) return exitAfterCheck(log);
    const signals = installSignalHandlers(context);
    const running = listenOrExit(() => startServer({ ...config, handler, logger: log, accessLog, inherited: service.sockets }), log);
    exitOnStartupError(() => startControlSocket(context, signals.control), log);
    dropPrivileges(owner, config, log);
    signals.serve(running);
    signals.stageReady();
  } else {
    if (config.checkConfig) return exitAfterCheck(log);
    await startPythonStage(context, accessLog);
  }
}

/** What main() hands to the steps after the config: the logs, systemd's sockets and notify socket, the user to become. */
interface MainContext {
  argv: string[];
  /** The settings in effect (TTIN/TTOU change `workers` here). */
  config: Config;
  /** The settings as last read (at start, then at each HUP): what a HUP compares the file with. */
  lastRead: Config;
  log: Logger;
  service: ServiceManager;
  owner: Owner | null;
  isDaemon: boolean;
}

// ---- systemd ----

/** What systemd (or systemd-socket-activate) passed: listening sockets, and where to report readiness. */
interface ServiceManager {
  sockets: InheritedSocket[];
  notifier: Notifier | null;
}

/** LISTEN_* and NOTIFY_SOCKET, taken out of the environment (sd_listen_fds(3), sd_notify(3)); malformed ones exit 2. */
function takeServiceManager(): ServiceManager {
  try {
    return { sockets: takeListenFds(process.env), notifier: takeNotifySocket(process.env) };
  } catch (err) {
    exitWithStartupError(err instanceof Error ? err.message : String(err));
  }
}

// ---- user and group ----

/** The uid and gid -u/-g name, resolved before anything starts, so a typo exits 2 before a port is bound. */
interface Owner { uid: number; gid: number; userName: string | null }

function chooseOwner(config: Config): Owner | null {
  if (config.user === null && config.group === null) return null;
  let uid = process.getuid!(), gid = process.getgid!(), userName: string | null = null;
  if (config.user !== null) {
    const entry = lookUpUser(config.user);
    if (entry === null) throw new StartupError(`--user ${config.user}: no such user`);
    ({ uid, gid, name: userName } = entry);
  }
  if (config.group !== null) {
    const found = lookUpGroup(config.group);
    if (found === null) throw new StartupError(`--group ${config.group}: no such group`);
    gid = found;
  }
  const isSame = uid === process.getuid!() && gid === process.getgid!();
  if (!isSame && process.geteuid!() !== 0) {
    throw new StartupError(`--user/--group: only root can switch to uid ${uid} gid ${gid} (running as uid ${process.getuid!()})`);
  }
  return isSame ? null : { uid, gid, userName };
}

/**
 * -u/-g/--initgroups, once the ports are bound, the logs open and (issue 9) the certificates read:
 * from here on nothing runs as root, and every worker started later inherits the user. gunicorn's
 * util.set_owner_process does the same for its workers (supplementary groups: the user's with
 * --initgroups, else only the group itself, so root's group 0 is not kept); its master stays root, ours does not.
 */
function dropPrivileges(owner: Owner | null, config: Config, log: Logger): void {
  if (owner === null) return;
  // A unix socket bound as root must be reachable by the user it now serves as (gunicorn's sock.py chowns it too).
  const unixPaths = [...config.binds.filter((b) => b.startsWith("unix:")).map((b) => b.slice(5)), ...(config.controlSocket !== null ? [config.controlSocket] : [])];
  for (const file of unixPaths) {
    try { fs.chownSync(file, owner.uid, owner.gid); } catch { /* systemd's socket, or gone */ }
  }
  try {
    if (config.initgroups && owner.userName !== null) (process as unknown as { initgroups(user: string, group: number): void }).initgroups(owner.userName, owner.gid); // bun-types lacks it
    else process.setgroups!([owner.gid]);
    process.setgid!(owner.gid);
    process.setuid!(owner.uid);
  } catch (err) {
    log.critical(`cannot switch to uid ${owner.uid} gid ${owner.gid}: ${describeOsError(err)}`);
    log.flush();
    process.exit(1);
  }
  log.info(`Running as uid ${owner.uid} gid ${owner.gid}${owner.userName !== null ? ` (${owner.userName})` : ""}`);
}

/** --umask and -e apply to this process, before any file is created: the workers inherit both (gunicorn sets them in its arbiter). */
function applyProcessSettings(config: Config): void {
  if (config.umask !== null) process.umask(config.umask);
  for (const pair of config.rawEnv) {
    const eq = pair.indexOf("=");
    process.env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
}

function exitAfterCheck(log: Logger): void {
  log.info("Configuration OK");
  log.flush();
  process.exit(0);
}

/**
 * --daemon: Bun cannot fork, so the server starts itself again, detached (its own session),
 * with stdio on /dev/null as gunicorn's daemonize leaves it, and this process exits 0.
 * The copy reads the same command line, environment and config file.
 */
function startDetached(log: Logger): void {
  // In a compiled binary argv[1] is the embedded entry (/$bunfs/...), which the binary runs by itself.
  const isCompiled = process.argv[1]?.startsWith("/$bunfs/") ?? false;
  const cmd = [process.execPath, ...process.argv.slice(isCompiled ? 2 : 1)];
  const child = Bun.spawn(cmd, { detached: true, stdio: ["ignore", "ignore", "ignore"], env: { ...process.env, [DAEMON_CHILD_ENV]: "1" } });
  child.unref();
  log.info(`Daemonized: pid ${child.pid}`);
  log.flush();
  process.exit(0);
}

/**
 * What the flags name must exist and be usable, checked before anything starts: --chdir, both
 * logs, the pid file. The pid file is the server's own: --check-config leaves it alone, and
 * the --daemon parent only checks it (the detached server writes it).
 */
function checkMachine(config: Config, isDaemonParent: boolean): { log: Logger; accessLog: LineSink | null } {
  checkChdir(config);
  try {
    openRoots(config.staticMaps, "--static-map");
    openRoots(config.sendfileRoots, "--sendfile-root");
  } catch (err) {
    throw new StartupError(err instanceof Error ? err.message : String(err));
  }
  const opened = { log: openErrorLog(config), accessLog: openAccessLog(config) };
  if (config.pidfile !== null && !config.checkConfig) {
    refuseIfRunning(config.pidfile);
    if (!isDaemonParent) writePidfile(config.pidfile);
  }
  return opened;
}

/** gunicorn's Pidfile.validate: a pid file naming a live process (not this one) means a server already runs. */
function refuseIfRunning(file: string): void {
  let text: string;
  try {
    text = fs.readFileSync(file, "latin1");
  } catch {
    return; // no file yet (or unreadable: writing it says why)
  }
  const match = /^([0-9]{1,10})\n?$/.exec(text);
  if (match === null) return; // not a pid: overwritten, as gunicorn does
  const pid = Number(match[1]);
  if (pid === 0 || pid === process.pid || !isProcessAlive(pid)) return; // stale: taken over
  throw new StartupError(`--pid ${file}: already running on PID ${pid} (or the pid file is stale: remove it if no server runs)`);
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // alive, but another user's
  }
}

/** gunicorn's --pid: the pid and a newline; removed at exit if it still holds our pid (a new server may have taken it over). */
function writePidfile(file: string): void {
  const mine = `${process.pid}\n`;
  try {
    fs.writeFileSync(file, mine);
  } catch (err) {
    throw new StartupError(`--pid ${file}: cannot write: ${describeOsError(err)}`);
  }
  process.on("exit", () => {
    try {
      if (fs.readFileSync(file, "utf8") === mine) fs.unlinkSync(file);
    } catch {
      // already gone
    }
  });
}

/** Run a start-up step; a StartupError is the user's to fix, so its message, not a stack trace, and exit 2. */
function exitOnStartupError<T>(step: () => T, log?: Logger): T {
  try {
    return step();
  } catch (err) {
    if (!(err instanceof StartupError)) throw err;
    exitWithStartupError(err.message, log);
  }
}

function exitWithStartupError(message: string, log?: Logger): never {
  process.stderr.write(`bunicorn: error: ${message}\n`);
  log?.flush();
  process.exit(2);
}

/**
 * Listen first, then boot the workers, in gunicorn's order: a refused bind is reported
 * before any worker exists, and connections that arrive during the boot wait in the
 * pool's queue until a worker is ready.
 */
async function startPythonStage(context: MainContext, accessLog: LineSink | null): Promise<void> {
  const { config, log } = context;
  const python = choosePython(config);
  if (Bun.which(python) === null && !fs.existsSync(python)) {
    exitWithStartupError(`Python interpreter not found: ${python} (use --python PATH)`);
  }
  const pool = createPythonStage(config, log, accessLog === null ? undefined : compileAccessFormat(config.accessLogFormat).needs);
  const signals = installSignalHandlers(context, pool);
  await startHooksOrExit(pool, log, context.owner); // on_starting: before anything listens, as in gunicorn
  const running = listenOrExit(() => startServer({ ...config, stage: pool, logger: log, accessLog, inherited: context.service.sockets }), log);
  exitOnStartupError(() => startControlSocket(context, signals.control), log);
  dropPrivileges(context.owner, config, log); // before the first worker exists: they are born as the user
  signals.serve(running);
  await pool.runHook("when_ready");
  try {
    await pool.boot();
  } catch (err) {
    if (running.server.isShuttingDown) return; // a signal stopped the boot: the shutdown in progress exits
    log.flush();
    // gunicorn's WORKER_BOOT_ERROR: the app cannot start, so restarting the server will not help.
    process.exit(err instanceof WorkerBootError ? EXIT_WORKER_BOOT_ERROR : 1);
  }
  // The first moment a request is served without waiting; tests (and operators) wait for it.
  log.info(`Workers ready: ${config.workers}`);
  signals.stageReady();
  if (config.reload) watchForReload(config, log, signals.reload);
}

/** The master helper runs the config file again (and imports the app with --preload); if that fails, nothing can start. */
async function startHooksOrExit(pool: PythonStage, log: Logger, owner: Owner | null): Promise<void> {
  try {
    await pool.startHooks(owner); // the helper runs as --user/--group from its start
  } catch (err) {
    log.critical(err instanceof Error ? err.message : String(err));
    log.flush();
    await pool.stop(false);
    process.exit(err instanceof WorkerBootError ? EXIT_WORKER_BOOT_ERROR : 1); // --preload: the app does not import
  }
}

/** A refused bind is the user's to fix (exit 2); anything else thrown while starting is ours (exit 1). */
function listenOrExit(start: () => RunningServer, log: Logger): RunningServer {
  try {
    return exitOnStartupError(start, log);
  } catch (err) {
    log.critical(`cannot start serving: ${err instanceof Error ? err.message : String(err)}`);
    log.flush();
    process.exit(1);
  }
}

/**
 * Signals, with gunicorn's meanings (https://docs.gunicorn.org/en/stable/signals.html):
 *   TERM        graceful stop: stop accepting, in-flight requests finish within --graceful-timeout
 *   INT, QUIT   quick stop: connections closed and workers killed at once
 *   HUP         reload: the config file read again (what can change live is applied), then a
 *               new generation of workers; the old ones retire as the new ones are ready
 *   TTIN, TTOU  one worker more, one fewer
 *   USR1        reopen the log files (logrotate)
 *   USR2        gunicorn's binary upgrade: not done, logged (see the README)
 *   WINCH       when daemonized, the workers stop gracefully and the front stays; else ignored
 * Every signal gunicorn handles is handled here, so none kills the server by its default action.
 *
 * Installed before the server listens: a signal sent as soon as "Listening at" appears must
 * find its handler (SIGTTIN's default action would stop the process). A stop asked for
 * before `serve` is called waits for it; HUP, TTIN, TTOU and WINCH sent while the first
 * workers boot wait for `stageReady` (as gunicorn's arbiter queues them until its loop
 * runs), so the boot never sees its own workers retired. Handlers only start the work.
 *
 * systemd (sd_notify(3), Type=notify or notify-reload): READY=1 once the first workers
 * serve; RELOADING=1 with MONOTONIC_USEC when a reload starts and READY=1 when its workers
 * have booted; STOPPING=1 when a stop starts; WATCHDOG=1 while the event loop runs.
 */
function installSignalHandlers(context: MainContext, stage?: PythonStage): { serve(running: RunningServer): void; stageReady(): void; reload(why: string): void; control(command: string): ControlAnswer } {
  const { log, isDaemon } = context;
  const notifier = context.service.notifier;
  let running: RunningServer | null = null;
  let stopAsked: [signal: string, graceful: boolean] | null = null;
  let isStopping = false;
  let isStageReady = false;
  const waitingForStage: (() => void)[] = [];
  const onStageSignal = (name: string, act: () => void) => () => {
    log.info(`Handling signal: ${name}`);
    if (isStageReady) act();
    else waitingForStage.push(act);
  };
  const shutdown = async (signal: string, graceful: boolean) => {
    if (isStopping && graceful) return;
    if (running === null) {
      stopAsked = [signal, graceful];
      return;
    }
    isStopping = true;
    notifier?.send("STOPPING=1");
    const config = running.server.config;
    // --drain-delay: the health path says 503 while everything else is served, so a load balancer
    // stops sending here before the listeners close (SIGTERM only: INT and QUIT are for people).
    const drainS = graceful && signal === "term" && config.healthPath !== null ? config.drainDelayS : 0;
    if (drainS > 0) {
      running.server.isDraining = true;
      log.info(`Handling signal: term; ${config.healthPath} answers 503 for ${drainS}s (--drain-delay) before the listeners close`);
      await Bun.sleep(drainS * 1000);
    }
    stage?.beginDrain(); // a worker that dies from now on is not replaced
    log.info(`Handling signal: ${signal}; ${graceful ? `finishing in-flight requests (up to ${running.server.config.gracefulTimeoutS}s)` : "stopping now"}`);
    await running.stop(graceful);
    await stage?.runHook("on_exit");
    log.info("Shutting down: Master");
    log.flush();
    process.exit(0);
  };
  const reload = async (why: string) => {
    if (isStopping || running === null) return;
    notifier?.send(`RELOADING=1\nMONOTONIC_USEC=${monotonicMicros()}`);
    await rereadConfigFile(context, running);
    // Certificates after the config and before the workers, read as the --user the front now runs as.
    running.server.reloadCertificates();
    await stage?.reload();
    log.info(`Reloaded (${why})`);
    if (!isStopping) notifier?.send("READY=1");
  };
  process.on("SIGTERM", () => void shutdown("term", true));
  process.on("SIGINT", () => void shutdown("int", false));
  process.on("SIGQUIT", () => void shutdown("quit", false));
  process.on("SIGHUP", onStageSignal("hup", () => void reload("SIGHUP")));
  process.on("SIGTTIN", onStageSignal("ttin", () => stage?.addWorker()));
  process.on("SIGTTOU", onStageSignal("ttou", () => stage?.removeWorker()));
  process.on("SIGUSR1", () => {
    log.info("Handling signal: usr1");
    reopenLogFiles(log);
  });
  process.on("SIGUSR2", () => {
    log.warning("Handling signal: usr2; ignored: bunicorn does not re-execute itself for a binary upgrade. " +
      "Restart it instead (under systemd socket activation the listening socket stays open meanwhile)");
  });
  process.on("SIGWINCH", () => {
    // gunicorn's handle_winch: only a daemon has no terminal whose resizing sends WINCH.
    if (!isDaemon) return log.debug("Handling signal: winch; ignored (not daemonized)");
    onStageSignal("winch", () => { log.info("graceful stop of workers"); stage?.stopWorkers(); })();
  });
  return {
    serve(server: RunningServer) {
      running = server;
      if (stopAsked !== null) void shutdown(...stopAsked);
    },
    stageReady() {
      isStageReady = true;
      for (const act of waitingForStage.splice(0)) act();
      notifier?.send(`READY=1\nMAINPID=${process.pid}`);
      notifier?.startWatchdog();
    },
    reload: (why: string) => void reload(why),
    // `bunicorn ctl`: the same actions as the signals, and what the signals cannot tell.
    control(command: string): ControlAnswer {
      if (running === null || !isStageReady) return { error: "the server is starting; try again" };
      if (isStopping) return { error: "the server is stopping" };
      const { config } = context;
      switch (command) {
        case "status":
          return { pid: process.pid, version: VERSION, workers: config.workers, connections: running.server.conns.size, in_flight: running.server.inFlight, uid: process.getuid!() };
        case "workers":
          return { workers: stage?.describeWorkers() ?? [] };
        case "reload":
          log.info("Handling ctl: reload");
          void reload("bunicorn ctl");
          return { ok: true, reloading: true };
        case "add":
        case "remove":
          if (stage === undefined) return { error: "a TypeScript app runs in the server itself: it has no workers" };
          log.info(`Handling ctl: ${command}`);
          if (command === "add") stage.addWorker();
          else stage.removeWorker();
          return { ok: true, workers: config.workers };
        default:
          return { error: `unknown command '${command}' (expected ${CONTROL_COMMANDS.join(", ")})` };
      }
    },
  };
}

// ---- bunicorn ctl ----
// In the spirit of gunicorn 25's gunicornc: one command per connection, a line in, one JSON
// line out, over a unix socket of mode 0600 owned by the user the server runs as (after
// --user, chowned to it), so only that user (and root) may open it.

const CONTROL_COMMANDS = ["status", "workers", "reload", "add", "remove"] as const;
type ControlAnswer = Record<string, unknown>;

function startControlSocket(context: MainContext, answer: (command: string) => ControlAnswer): void {
  const file = context.config.controlSocket;
  if (file === null) return;
  removeStaleUnixSocket(file);
  const umask = process.umask(0o177); // born 0600: no moment when another user could connect
  try {
    Bun.listen<{ text: string }>({
      unix: file,
      socket: {
        open(s) { s.data = { text: "" }; },
        data(s, bytes) {
          s.data.text += bytes.toString("utf8");
          const nl = s.data.text.indexOf("\n");
          if (nl === -1) {
            if (s.data.text.length > 256) s.end(JSON.stringify({ error: "command too long" }) + "\n");
            return;
          }
          s.end(JSON.stringify(answer(s.data.text.slice(0, nl).trim())) + "\n");
        },
        error() {},
      },
    });
  } catch (err) {
    throw new StartupError(`--control-socket ${file}: cannot listen: ${describeOsError(err)}`);
  } finally {
    process.umask(umask);
  }
  fs.chmodSync(file, 0o600);
  process.on("exit", () => { try { fs.unlinkSync(file); } catch { /* gone, or not ours to remove */ } });
  context.log.info(`Control socket: ${file}`);
}

/** `bunicorn ctl [--control-socket PATH] COMMAND`: prints the server's JSON answer; exit 1 when it reports an error, 2 on bad usage. */
async function runControlClient(args: string[]): Promise<void> {
  let file = "", command = "";
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--control-socket" || args[i] === "-s") file = args[++i] ?? "";
    else if (args[i].startsWith("--control-socket=")) file = args[i].slice("--control-socket=".length);
    else if (command === "") command = args[i];
    else command = "\0"; // two commands
  }
  if (file === "" || !(CONTROL_COMMANDS as readonly string[]).includes(command)) {
    process.stderr.write(`bunicorn: error: usage: bunicorn ctl --control-socket PATH ${CONTROL_COMMANDS.join("|")}\n`);
    process.exit(2);
  }
  let reply = "";
  try {
    await new Promise<void>((resolve, reject) => {
      Bun.connect({
        unix: file,
        socket: {
          open(s) { s.write(command + "\n"); },
          data(_s, bytes) { reply += bytes.toString("utf8"); },
          close() { resolve(); },
          error(_s, err) { reject(err); },
          connectError(_s, err) { reject(err); },
        },
      }).catch(reject);
    });
  } catch (err) {
    process.stderr.write(`bunicorn: error: ctl: cannot reach ${file}: ${describeOsError(err)}\n`);
    process.exit(1);
  }
  process.stdout.write(reply);
  process.exit(/"error":/.test(reply) ? 1 : 0);
}

/**
 * Settings a HUP applies from a re-read config file: the ones the pool reads when it starts a worker
 * (the reload starts new ones) or at each request or tick. The others (binds, user, limits the
 * parser was built with, the app...) need a restart.
 */
const LIVE_SETTINGS = ["workers", "threads", "timeoutS", "gracefulTimeoutS", "keepAliveS", "headerTimeoutS", "maxRequests", "maxRequestsJitter", "backlog", "logLevel"] as const;

/**
 * HUP reads the config file again, as gunicorn's reload does. A setting the file changed since
 * it was last read is applied when it can change live (LIVE_SETTINGS), else logged as needing a
 * restart; comparing with the last read, not with what runs, keeps TTIN/TTOU's count. A file that
 * no longer parses changes nothing (logged), and the reload goes on with the settings in effect.
 */
async function rereadConfigFile(context: MainContext, running: RunningServer): Promise<void> {
  const { config, log } = context;
  let fresh: ParsedConfig;
  try {
    fresh = await loadConfig(context.argv, process.env);
  } catch (err) {
    log.error(`Reloading: the config is not re-read: ${err instanceof Error ? err.message : String(err)}; the settings in effect stay`);
    return;
  }
  const last = context.lastRead;
  for (const spec of SETTINGS) {
    const key = spec.key as keyof Config | undefined;
    if (spec.status !== "supported" || key === undefined || !(key in fresh)) continue;
    if (JSON.stringify(fresh[key]) === JSON.stringify(last[key])) continue;
    if ((LIVE_SETTINGS as readonly string[]).includes(key)) {
      for (const target of [config, running.server.config]) (target as any)[key] = fresh[key];
      if (key === "logLevel") log.setLevel(fresh.logLevel);
      log.info(`Reloading: ${spec.name} = ${JSON.stringify(fresh[key])}`);
    } else {
      log.warning(`Reloading: ${spec.name ?? spec.flags[0]} changed; it takes effect on restart`);
    }
  }
  context.lastRead = fresh;
}

/**
 * --reload (development only): every second, the mtimes of the .py files under --chdir (else the
 * working directory) and --pythonpath, and of --reload-extra-file's globs; a change, a new file
 * or a removed one reloads the workers the way SIGHUP does. gunicorn's poll engine watches the
 * imported modules instead; the front cannot see those, so the app's tree stands in for them.
 */
function watchForReload(config: Config, log: Logger, reload: (why: string) => void): void {
  const roots = [config.chdir ?? ".", ...config.pythonpath].map((d) => path.resolve(d));
  const isSkipped = (rel: string) => rel.split("/").some((part) => part === "__pycache__" || part === "node_modules" || part === "site-packages" || part.startsWith("."));
  const scan = (): Map<string, number> => {
    const seen = new Map<string, number>();
    const add = (file: string) => {
      try { seen.set(file, fs.statSync(file).mtimeMs); } catch { /* gone between scan and stat */ }
    };
    for (const root of roots) {
      for (const rel of new Bun.Glob("**/*.py").scanSync({ cwd: root, onlyFiles: true })) if (!isSkipped(rel)) add(path.join(root, rel));
    }
    for (const pattern of config.reloadExtraFiles) {
      const isAbsolute = pattern.startsWith("/");
      for (const rel of new Bun.Glob(isAbsolute ? pattern.slice(1) : pattern).scanSync({ cwd: isAbsolute ? "/" : process.cwd(), onlyFiles: true, dot: true })) {
        add(path.resolve(isAbsolute ? "/" : process.cwd(), rel));
      }
    }
    return seen;
  };
  let known = scan();
  log.info(`Reload: watching ${known.size} files (development only)`);
  const timer = setInterval(() => {
    const now = scan();
    const changed = [...now].filter(([f, m]) => known.get(f) !== m).map(([f]) => f);
    const removed = [...known.keys()].filter((f) => !now.has(f));
    known = now;
    if (changed.length + removed.length === 0) return;
    log.info(`Worker reloading: ${[...changed, ...removed].map((f) => path.relative(process.cwd(), f) || f).join(", ")} modified`);
    reload("--reload");
  }, RELOAD_POLL_MS);
  timer.unref?.();
}
/** gunicorn's poll reloader checks once a second too (gunicorn/reloader.py, Reloader.interval). */
const RELOAD_POLL_MS = 1000;

if (import.meta.main) {
  await main(process.argv.slice(2));
}

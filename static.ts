/**
 * Static files served by the front (--static-map), and files an app asks the front to
 * send (--sendfile-root with X-Accel-Redirect or X-Sendfile), as nginx does for Django.
 *
 * Sections:
 *   1. Limits and tables
 *   2. Paths: a request path to the parts of a file name under a root (sans-IO)
 *   3. Validators, conditional requests, ranges, content codings (sans-IO)
 *   4. Finding the file (the only metadata I/O)
 *   5. The static stage: answer mapped paths, pass the rest on; send a file in pieces
 *
 * Everything that decides (sections 2 and 3) takes strings and numbers and returns a
 * verdict, and is tested by tables of cases (test/static.test.ts). Only sections 4 and 5
 * touch the disk.
 */

import fs from "node:fs";
import path from "node:path";
import type { AppStage, Exchange } from "./server.ts";

// ==== 1. Limits and tables ====

/**
 * A file is read and written in pieces this big, each read awaited (fs.promises: the event
 * loop never waits on the disk) and the next one started only when the socket has taken the
 * last (Exchange.isBackedUp): a connection holds at most about two pieces of its file.
 * 256 KiB as bridge.ts's SENDFILE_PIECE_BYTES; 64 KiB pieces cost ~15% more CPU per MiB.
 */
const FILE_PIECE_BYTES = 256 * 1024;

/** Content-Type by lower-cased extension; anything else is application/octet-stream (RFC 9110 §8.3). */
const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8", ".json": "application/json",
  ".map": "application/json", ".txt": "text/plain; charset=utf-8", ".csv": "text/csv; charset=utf-8",
  ".xml": "application/xml", ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp", ".avif": "image/avif", ".ico": "image/x-icon",
  ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf", ".pdf": "application/pdf",
  ".wasm": "application/wasm", ".zip": "application/zip", ".gz": "application/gzip", ".mp4": "video/mp4",
  ".webm": "video/webm", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".wav": "audio/wav", ".md": "text/markdown; charset=utf-8",
  ".webmanifest": "application/manifest+json", ".bin": "application/octet-stream",
};

export function contentTypeFor(fileName: string): string {
  return CONTENT_TYPES[path.extname(fileName).toLowerCase()] ?? "application/octet-stream";
}

// ==== 2. Paths ====

/** Why a path is refused: 404 for every escape (a scanner learns nothing), 400 for bytes that are not a path at all. */
export type PathVerdict =
  | { ok: true; segments: string[]; isDirectory: boolean }
  | { ok: false; status: 400 | 404; code: string };

const HEX = (c: number): number => (c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1);
const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true });

/**
 * The part of a request path (as sent: percent-encoded, no query) after `prefix`, as file
 * name segments, or why it is refused. The rules, checked on each segment of the encoded
 * path (RFC 3986 §3.3: "/" separates segments; an encoded "%2F" is data inside a segment):
 *   - a "%" not followed by two hex digits is not a path (RFC 3986 §2.1) → 400;
 *   - a segment that decodes to contain "/", "\" or NUL (%2F, %5C, %00) → 404: no file name
 *     holds them, and a later decoding step (ours or a library's) must not turn them into separators;
 *   - "." and ".." (plain or encoded, %2e%2E) → 404: we never resolve dot segments
 *     (RFC 3986 §5.2.4 is for references, not for reaching outside a directory);
 *   - an empty segment ("a//b") → 404;
 *   - a segment starting with "." (dotfiles: .env, .git) → 404, except a first segment ".well-known" (RFC 8615);
 *   - bytes that are not UTF-8 → 404 (file names here are UTF-8).
 * A trailing "/" asks for the directory (its index.html, when allowed).
 */
export function resolveRequestPath(requestPath: string, prefix: string): PathVerdict {
  // prefix has no trailing "/" ("" for the root); the path must be prefix + "/" + rest.
  if (!requestPath.startsWith(prefix) || requestPath.charCodeAt(prefix.length) !== 0x2f) return { ok: false, status: 404, code: "NOT_UNDER_PREFIX" };
  const rest = requestPath.slice(prefix.length + 1);
  const isDirectory = rest === "" || rest.endsWith("/");
  const raw = rest === "" ? [] : (isDirectory ? rest.slice(0, -1) : rest).split("/");
  const segments: string[] = [];
  for (let s = 0; s < raw.length; s++) {
    const bytes: number[] = [];
    const seg = raw[s];
    for (let i = 0; i < seg.length; i++) {
      const c = seg.charCodeAt(i);
      if (c === 0x25) {
        const hi = i + 2 < seg.length ? HEX(seg.charCodeAt(i + 1)) : -1, lo = i + 2 < seg.length ? HEX(seg.charCodeAt(i + 2)) : -1;
        if (hi < 0 || lo < 0) return { ok: false, status: 400, code: "BAD_PERCENT_ESCAPE" };
        bytes.push(hi * 16 + lo);
        i += 2;
      } else if (c > 0xff) {
        return { ok: false, status: 400, code: "NOT_A_PATH_BYTE" }; // the parser gives latin-1 strings: unreachable from the wire
      } else {
        bytes.push(c);
      }
    }
    if (bytes.length === 0) return { ok: false, status: 404, code: "EMPTY_SEGMENT" };
    if (bytes.includes(0x2f) || bytes.includes(0x5c)) return { ok: false, status: 404, code: "ENCODED_SEPARATOR" };
    if (bytes.includes(0)) return { ok: false, status: 404, code: "NUL_BYTE" };
    let name: string;
    try {
      name = UTF8_STRICT.decode(new Uint8Array(bytes));
    } catch {
      return { ok: false, status: 404, code: "NOT_UTF8" };
    }
    if (name === "." || name === "..") return { ok: false, status: 404, code: "DOT_SEGMENT" };
    if (name.charCodeAt(0) === 0x2e && !(s === 0 && name === ".well-known")) return { ok: false, status: 404, code: "DOTFILE" };
    segments.push(name);
  }
  return { ok: true, segments, isDirectory };
}

/** `--static-map /static=./public` → ["/static", "./public"]; a message when malformed. */
export function parseMapping(value: string): [prefix: string, dir: string] | string {
  const eq = value.indexOf("=");
  if (eq === -1) return `expected URL_PREFIX=DIR, got '${value}'`;
  let prefix = value.slice(0, eq);
  const dir = value.slice(eq + 1);
  if (!prefix.startsWith("/")) return `the URL prefix must start with '/', got '${prefix}'`;
  if (prefix.endsWith("/")) prefix = prefix.slice(0, -1);
  if (/[%?#\s]/.test(prefix) || prefix.split("/").slice(1).some((s) => s === "" || s === "." || s === "..")) return `the URL prefix must be plain path segments, got '${value.slice(0, eq)}'`;
  if (dir === "") return `expected a directory after '=', got '${value}'`;
  return [prefix, dir];
}

// ==== 3. Validators, conditional requests, ranges, content codings ====

export interface Validators {
  /** Strong (RFC 9110 §8.8.3): see makeEtag. */
  etag: string;
  /** Seconds since the epoch, whole (HTTP dates have one-second resolution, RFC 9110 §5.6.7). */
  lastModifiedS: number;
}

/**
 * A strong ETag from the file's size and modification time in nanoseconds, and the coding
 * of the variant sent (a .br and a .gz sibling are other representations and need other tags,
 * RFC 9110 §8.8.3.3). Strong, not weak, because If-Range works only with a strong validator
 * (RFC 9110 §13.1.5) and resuming downloads is what ranges are for; it is as strong as nginx's
 * (size + mtime), and a file rewritten with the same size within one nanosecond tick is the
 * one case it misses.
 */
export function makeEtag(size: number, mtimeNs: bigint, coding: string): string {
  return `"${size.toString(16)}-${mtimeNs.toString(16)}${coding === "" ? "" : "-" + coding}"`;
}

/** Entity tags in a list (If-None-Match, If-Match), as sent; "*" alone is returned as ["*"] (RFC 9110 §13.1.1). */
function splitEntityTags(value: string): string[] {
  const tags: string[] = [];
  let i = 0;
  while (i < value.length) {
    const c = value.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x2c) { i++; continue; }
    if (c === 0x2a) { tags.push("*"); i++; continue; }
    const start = i;
    if (value.startsWith("W/", i)) i += 2;
    if (value.charCodeAt(i) !== 0x22) return tags; // not an entity-tag: stop reading the list
    const close = value.indexOf('"', i + 1);
    if (close === -1) return tags;
    tags.push(value.slice(start, close + 1));
    i = close + 1;
  }
  return tags;
}

const opaque = (tag: string): string => (tag.startsWith("W/") ? tag.slice(2) : tag);

/** RFC 9110 §13.1.2 If-None-Match: weak comparison (W/"x" matches "x"). */
function matchesAnyWeak(value: string, etag: string): boolean {
  for (const tag of splitEntityTags(value)) if (tag === "*" || opaque(tag) === opaque(etag)) return true;
  return false;
}

/** RFC 9110 §13.1.1 If-Match: strong comparison (a weak tag never matches). */
function matchesAnyStrong(value: string, etag: string): boolean {
  for (const tag of splitEntityTags(value)) if (tag === "*" || (!tag.startsWith("W/") && tag === etag)) return true;
  return false;
}

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/**
 * An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110 §5.6.7) in seconds, or NaN.
 * Only that form: RFC 9110 §13.1.3 lets a recipient ignore a date it cannot parse, and the
 * obsolete forms come from no client still in use.
 */
export function parseHttpDate(value: string): number {
  const m = /^([A-Z][a-z]{2}), ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$/.exec(value);
  if (m === null || !DAYS.includes(m[1])) return NaN;
  const month = MONTHS.indexOf(m[3]);
  if (month === -1) return NaN;
  const ms = Date.UTC(Number(m[4]), month, Number(m[2]), Number(m[5]), Number(m[6]), Number(m[7]));
  return Number.isNaN(ms) || new Date(ms).getUTCDate() !== Number(m[2]) ? NaN : ms / 1000;
}

export interface ConditionalHeaders {
  ifMatch?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  ifUnmodifiedSince?: string;
  ifRange?: string;
  range?: string;
}

/**
 * RFC 9110 §13.2.2, in its order: If-Match (else If-Unmodified-Since) → 412; If-None-Match
 * (else If-Modified-Since, GET and HEAD only) → 304 for GET/HEAD, 412 otherwise; then Range,
 * which If-Range may disable. "serve" is 200 or 206 as `chooseRange` then says.
 */
export function evaluateConditionals(method: string, h: ConditionalHeaders, v: Validators): "serve" | 304 | 412 {
  if (h.ifMatch !== undefined) {
    if (!matchesAnyStrong(h.ifMatch, v.etag)) return 412;
  } else if (h.ifUnmodifiedSince !== undefined) {
    const t = parseHttpDate(h.ifUnmodifiedSince);
    if (!Number.isNaN(t) && v.lastModifiedS > t) return 412;
  }
  const isRead = method === "GET" || method === "HEAD";
  if (h.ifNoneMatch !== undefined) {
    if (matchesAnyWeak(h.ifNoneMatch, v.etag)) return isRead ? 304 : 412;
  } else if (h.ifModifiedSince !== undefined && isRead) {
    const t = parseHttpDate(h.ifModifiedSince);
    if (!Number.isNaN(t) && v.lastModifiedS <= t) return 304;
  }
  return "serve";
}

export type RangeChoice = { kind: "whole" } | { kind: "part"; start: number; end: number } | { kind: "unsatisfiable" };

/**
 * Range for a GET of `size` bytes (RFC 9110 §14.2): one satisfiable byte range → that part
 * (206); a valid range set none of whose ranges is satisfiable → 416 (§15.5.17); several
 * ranges → the whole (200: §14.2 lets a server ignore Range, and multipart/byteranges is
 * rarely worth its cost); anything unparsable or another unit → the whole (§14.2: ignore).
 * If-Range (§13.1.5) with a tag other than our strong one, or a date other than our
 * Last-Modified exactly, means the client's copy is stale: the whole.
 */
export function chooseRange(method: string, h: ConditionalHeaders, size: number, v: Validators): RangeChoice {
  if (method !== "GET" || h.range === undefined) return { kind: "whole" };
  if (h.ifRange !== undefined) {
    const ir = h.ifRange;
    if (ir.startsWith('"') || ir.startsWith("W/")) {
      if (ir !== v.etag) return { kind: "whole" }; // strong comparison: a weak tag never matches
    } else if (parseHttpDate(ir) !== v.lastModifiedS) {
      return { kind: "whole" };
    }
  }
  // ranges-specifier = range-unit "=" range-set; the unit is case-insensitive (§14.1).
  const r = h.range;
  if (r.length < 6 || r.slice(0, 6).toLowerCase() !== "bytes=") return { kind: "whole" };
  const specs = r.slice(6).split(",");
  let satisfiable: { start: number; end: number } | null = null;
  let count = 0;
  for (const rawSpec of specs) {
    const spec = stripOws(rawSpec);
    if (spec === "") continue; // §5.6.1: empty list elements are ignored
    count++;
    const m = /^([0-9]{0,15})-([0-9]{0,15})$/.exec(spec);
    if (m === null || (m[1] === "" && m[2] === "")) return { kind: "whole" }; // not a range-set: ignore the header
    let start: number, end: number;
    if (m[1] === "") {
      // suffix-range: the last N bytes (§14.1.2); N = 0 is unsatisfiable
      const n = Number(m[2]);
      if (n === 0 || size === 0) continue;
      start = Math.max(0, size - n);
      end = size - 1;
    } else {
      start = Number(m[1]);
      if (m[2] !== "" && Number(m[2]) < start) return { kind: "whole" }; // invalid int-range: the set is invalid (§14.1.2)
      if (start >= size) continue; // unsatisfiable (§14.1.2)
      end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    }
    satisfiable ??= { start, end };
  }
  if (count === 0) return { kind: "whole" };
  if (count > 1) return satisfiable === null ? { kind: "unsatisfiable" } : { kind: "whole" };
  return satisfiable === null ? { kind: "unsatisfiable" } : { kind: "part", ...satisfiable };
}

function stripOws(s: string): string {
  let a = 0, b = s.length;
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return s.slice(a, b);
}

/** The content codings we can send precompressed, best first when the client rates them equally. */
export type Coding = "br" | "gzip";
const SIBLING_SUFFIX: Record<Coding, string> = { br: ".br", gzip: ".gz" };

/**
 * The coding to send, from Accept-Encoding (RFC 9110 §12.5.3) and the siblings that exist:
 * the available coding with the highest q (q=0 is "not acceptable"), "*" standing for any
 * coding not named, br before gzip on a tie; null for identity (none acceptable, none
 * available, no header, or identity rated above them all). An unparsable q counts as q=0.
 */
export function chooseCoding(acceptEncoding: string | undefined, available: readonly Coding[]): Coding | null {
  if (acceptEncoding === undefined || available.length === 0) return null;
  const q = new Map<string, number>();
  for (const element of acceptEncoding.split(",")) {
    const parts = element.split(";");
    const name = stripOws(parts[0]).toLowerCase();
    if (name === "") continue;
    let weight = 1;
    for (let i = 1; i < parts.length; i++) {
      const p = stripOws(parts[i]);
      if (p.length > 2 && (p[0] === "q" || p[0] === "Q") && p[1] === "=") {
        // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) (§12.4.2)
        weight = /^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$/.test(p.slice(2)) ? Number(p.slice(2)) : 0;
      }
    }
    q.set(name === "x-gzip" ? "gzip" : name, weight); // x-gzip is gzip (§8.4.1.3)
  }
  const star = q.get("*");
  // identity is acceptable by default (§12.5.3) but only competes when the client rates it.
  const identity = q.get("identity") ?? 0;
  let best: Coding | null = null, bestQ = 0;
  for (const coding of available) {
    const w = q.get(coding) ?? star ?? 0;
    if (w > bestQ) { best = coding; bestQ = w; }
  }
  if (best === null) return null;
  return bestQ >= identity ? best : null;
}

// ==== 4. Finding the file ====

export interface FoundFile {
  /** The real path, inside the root's real path. */
  file: string;
  size: number;
  mtimeNs: bigint;
  contentType: string;
}

/** A mapped root: its URL prefix and the real path of its directory (symlinks resolved once, at start). */
export interface StaticRoot {
  prefix: string;
  dir: string;
  realDir: string;
}

export function openRoots(mappings: string[], flag: string): StaticRoot[] {
  return mappings.map((m) => {
    const parsed = parseMapping(m);
    if (typeof parsed === "string") throw new Error(`${flag}: ${parsed}`);
    const [prefix, dir] = parsed;
    let realDir: string;
    try {
      realDir = fs.realpathSync(path.resolve(dir));
      if (!fs.statSync(realDir).isDirectory()) throw new Error("not a directory");
    } catch (err) {
      throw new Error(`${flag} ${m}: ${(err as { code?: string }).code === "ENOENT" ? "no such directory" : err instanceof Error ? err.message : String(err)}`);
    }
    return { prefix, dir, realDir };
  });
}

/**
 * The regular file these segments name under root, or null. Symlinks are followed only while
 * the real path stays inside the root's real path: one that leaves it is as missing as a file
 * that is not there. realpath and stat are metadata calls (served from the kernel's dentry
 * and inode caches for any file read recently); the file's bytes are read asynchronously.
 */
export function findFile(root: StaticRoot, segments: string[], isDirectory: boolean, withIndex: boolean): FoundFile | "redirect" | null {
  const named = path.join(root.realDir, ...segments, isDirectory ? "index.html" : "");
  if (isDirectory && !withIndex) return null;
  const found = statInside(root, named);
  if (found === null) return null;
  if (found.isDirectory()) {
    // "/docs" that is a directory: its index is at "/docs/" (relative links resolve against that).
    return withIndex && !isDirectory && statInside(root, path.join(named, "index.html"))?.isFile() ? "redirect" : null;
  }
  if (!found.isFile()) return null;
  return { file: found.real, size: Number(found.size), mtimeNs: found.mtimeNs, contentType: contentTypeFor(named) };
}

function statInside(root: StaticRoot, file: string): (fs.BigIntStats & { real: string }) | null {
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch {
    return null;
  }
  if (real !== root.realDir && !real.startsWith(root.realDir + path.sep)) return null;
  // A dotfile reached through a symlink is still a dotfile.
  if (real.slice(root.realDir.length).split(path.sep).some((s, i) => s.startsWith(".") && !(i === 1 && s === ".well-known"))) return null;
  try {
    return Object.assign(fs.statSync(real, { bigint: true }), { real });
  } catch {
    return null;
  }
}

/** The precompressed sibling of a found file for this coding, if it is a regular file inside the root. */
function findSibling(root: StaticRoot, found: FoundFile, coding: Coding): FoundFile | null {
  // Most files have no sibling: a stat that does not throw answers that cheaply (realpathSync throws on a missing file).
  if (fs.statSync(found.file + SIBLING_SUFFIX[coding], { throwIfNoEntry: false }) === undefined) return null;
  const st = statInside(root, found.file + SIBLING_SUFFIX[coding]);
  if (st === null || !st.isFile()) return null;
  return { file: st.real, size: Number(st.size), mtimeNs: st.mtimeNs, contentType: found.contentType };
}

// ==== 5. The static stage ====

/**
 * Files up to this size are sent from memory once read, while their size and modification
 * time stay what they were when read (checked by the stat every request makes anyway).
 * One piece: a file that fits is read with one readFile and written with one writeBody.
 */
const CACHED_FILE_MAX_BYTES = FILE_PIECE_BYTES;
/** All cached files together; the least recently sent go first. */
const FILE_CACHE_BUDGET_BYTES = 32 * 1024 * 1024;

class SmallFileCache {
  private readonly entries = new Map<string, { size: number; mtimeNs: bigint; bytes: Buffer }>();
  private totalBytes = 0;

  get(found: FoundFile): Buffer | null {
    const e = this.entries.get(found.file);
    if (e === undefined) return null;
    if (e.size !== found.size || e.mtimeNs !== found.mtimeNs) {
      this.entries.delete(found.file);
      this.totalBytes -= e.size;
      return null;
    }
    this.entries.delete(found.file); // to the end: most recently sent
    this.entries.set(found.file, e);
    return e.bytes;
  }

  put(found: FoundFile, bytes: Buffer): void {
    if (bytes.length !== found.size || this.entries.has(found.file)) return; // changed while read, or raced
    for (const [file, e] of this.entries) {
      if (this.totalBytes + bytes.length <= FILE_CACHE_BUDGET_BYTES) break;
      this.entries.delete(file);
      this.totalBytes -= e.size;
    }
    this.entries.set(found.file, { size: found.size, mtimeNs: found.mtimeNs, bytes });
    this.totalBytes += bytes.length;
  }
}

export interface StaticOptions {
  staticMaps: string[];
  sendfileRoots: string[];
  staticMaxAgeS: number;
  staticIndex: boolean;
}

/** What an app answered with X-Accel-Redirect or X-Sendfile: its status and the headers it keeps. */
export interface InternalRedirect {
  status: string;
  headers: [string, string][];
  /** X-Accel-Redirect's URI path, or X-Sendfile's file path. */
  target: string;
  isSendfile: boolean;
}

/** Headers of the app's answer kept on the file's answer (nginx keeps these too); the rest describe the app's own body. */
const KEPT_FROM_APP = new Set(["content-type", "content-disposition", "cache-control", "expires", "set-cookie", "content-language", "x-robots-tag", "link"]);

/**
 * The app stage in front of the app's: answers GET and HEAD under each --static-map prefix
 * itself (the app never sees them), refuses direct requests under a --sendfile-root prefix
 * (404: internal, as nginx's `internal;`), and passes everything else on.
 */
export class StaticStage implements AppStage {
  readonly statics: StaticRoot[];
  readonly internals: StaticRoot[];
  private readonly cache = new SmallFileCache();
  constructor(private readonly next: AppStage, private readonly options: StaticOptions) {
    this.statics = openRoots(options.staticMaps, "--static-map");
    this.internals = openRoots(options.sendfileRoots, "--sendfile-root");
  }

  get hasInternalRoots(): boolean {
    return this.internals.length > 0;
  }

  handle(ex: Exchange): void {
    const p = ex.head.path;
    for (const root of this.internals) {
      if (isUnder(p, root.prefix)) return this.answerError(ex, 404);
    }
    for (const root of this.statics) {
      if (isUnder(p, root.prefix)) return this.serveStatic(ex, root);
    }
    this.next.handle(ex);
  }

  async stop(graceful: boolean): Promise<void> {
    await this.next.stop(graceful);
  }

  private serveStatic(ex: Exchange, root: StaticRoot): void {
    const method = ex.head.method;
    if (method !== "GET" && method !== "HEAD") return this.answerError(ex, 405, [["Allow", "GET, HEAD"]]);
    const verdict = resolveRequestPath(ex.head.path, root.prefix);
    if (!verdict.ok) return this.answerError(ex, verdict.status);
    const found = findFile(root, verdict.segments, verdict.isDirectory, this.options.staticIndex);
    if (found === null) return this.answerError(ex, 404);
    if (found === "redirect") {
      const location = ex.head.path + "/" + (ex.head.query === "" ? "" : "?" + ex.head.query);
      return this.answer(ex, "301 Moved Permanently", [["Location", location], ["Content-Length", "0"]]);
    }
    const headers: [string, string][] = [["Content-Type", found.contentType]];
    if (this.options.staticMaxAgeS > 0) headers.push(["Cache-Control", `public, max-age=${this.options.staticMaxAgeS}`]);
    void this.sendFound(ex, root, found, "200 OK", headers);
  }

  /**
   * An app's answer named a file (called by the exchange once the app's answer is over; its
   * body was dropped). Outside every --sendfile-root, or missing: 404, as nginx answers.
   */
  sendRedirected(ex: Exchange, r: InternalRedirect): void {
    let root: StaticRoot | undefined, verdict: PathVerdict;
    if (r.isSendfile) {
      // X-Sendfile: a file path, which must lie inside one of the roots' directories.
      const abs = path.resolve(r.target);
      root = this.internals.find((x) => abs.startsWith(path.resolve(x.dir) + path.sep) || abs.startsWith(x.realDir + path.sep));
      const base = root === undefined ? "" : abs.startsWith(root.realDir + path.sep) ? root.realDir : path.resolve(root.dir);
      const rel = abs.slice(base.length);
      verdict = root === undefined ? { ok: false, status: 404, code: "OUTSIDE_ROOTS" } :
        resolveRequestPath(root.prefix + rel.split("/").map((s) => encodeURIComponent(s)).join("/"), root.prefix);
    } else {
      const q = r.target.indexOf("?");
      const target = q === -1 ? r.target : r.target.slice(0, q);
      root = this.internals.find((x) => isUnder(target, x.prefix));
      verdict = root === undefined ? { ok: false, status: 404, code: "OUTSIDE_ROOTS" } : resolveRequestPath(target, root.prefix);
    }
    if (root === undefined || !verdict.ok || verdict.isDirectory) {
      ex.server.log.error(`${ex.describe()}: the app's ${r.isSendfile ? "X-Sendfile" : "X-Accel-Redirect"} '${r.target}' names no file under a --sendfile-root`);
      return this.answerError(ex, 404);
    }
    const found = findFile(root, verdict.segments, false, false);
    if (found === null || found === "redirect") return this.answerError(ex, 404);
    const kept = r.headers.filter(([n]) => KEPT_FROM_APP.has(n.toLowerCase()));
    if (!kept.some(([n]) => n.toLowerCase() === "content-type")) kept.unshift(["Content-Type", found.contentType]);
    void this.sendFound(ex, root, found, r.status, kept);
  }

  /** Conditionals, coding and range decided; then the head, and the body in pieces. */
  private async sendFound(ex: Exchange, root: StaticRoot, found: FoundFile, status: string, headers: [string, string][]): Promise<void> {
    const h = conditionalHeaders(ex);
    const method = ex.head.method;
    // A non-2xx answer from the app (a 403 page as a file, say) is sent whole, unconditionally.
    const isSuccess = status.charCodeAt(0) === 0x32;
    const available: Coding[] = [];
    if (isSuccess) for (const c of ["br", "gzip"] as const) if (findSibling(root, found, c) !== null) available.push(c);
    const coding = chooseCoding(h.acceptEncoding, available);
    const file = coding === null ? found : findSibling(root, found, coding) ?? found;
    const v: Validators = { etag: makeEtag(file.size, file.mtimeNs, coding ?? ""), lastModifiedS: Number(file.mtimeNs / 1_000_000_000n) };
    headers.push(["ETag", v.etag], ["Last-Modified", new Date(v.lastModifiedS * 1000).toUTCString()]);
    if (available.length > 0) headers.push(["Vary", "Accept-Encoding"]);
    if (coding !== null) headers.push(["Content-Encoding", coding]);
    if (isSuccess) {
      const cond = evaluateConditionals(method, h, v);
      if (cond === 304) return this.answer(ex, "304 Not Modified", headers.filter(([n]) => n !== "Content-Type" && n !== "Content-Encoding"));
      if (cond === 412) return this.answerError(ex, 412);
    }
    const range = isSuccess ? chooseRange(method, h, file.size, v) : { kind: "whole" as const };
    headers.push(["Accept-Ranges", "bytes"]);
    if (range.kind === "unsatisfiable") {
      return this.answer(ex, "416 Range Not Satisfiable", [["Content-Range", `bytes */${file.size}`], ["Content-Length", "0"]]);
    }
    let start = 0, end = file.size - 1;
    if (range.kind === "part") {
      ({ start, end } = range);
      status = "206 Partial Content";
      headers.push(["Content-Range", `bytes ${start}-${end}/${file.size}`]);
    }
    const length = end - start + 1;
    headers.push(["Content-Length", String(length)]);
    ex.setResponse(status, headers);
    if (method === "HEAD" || length === 0) return ex.endResponse();
    if (file.size <= CACHED_FILE_MAX_BYTES) return this.sendSmallFile(ex, file, start, length);
    await this.streamFile(ex, file.file, start, length);
  }

  /** A file of one piece: from the cache, or read whole (asynchronously) and cached. */
  private async sendSmallFile(ex: Exchange, file: FoundFile, start: number, length: number): Promise<void> {
    let bytes = this.cache.get(file);
    if (bytes === null) {
      try {
        bytes = await fs.promises.readFile(file.file);
      } catch (err) {
        return ex.failApp(err);
      }
      this.cache.put(file, bytes);
      // Changed between stat and read: the head already promised `length` bytes; endResponse cuts a short body.
      if (bytes.length !== file.size) bytes = bytes.subarray(0, Math.min(bytes.length, file.size));
    }
    if (ex.isAborted || ex.isDone) return;
    ex.writeBody(start === 0 && length === bytes.length ? bytes : bytes.subarray(start, start + length));
    ex.endResponse();
  }

  /** The bytes [start, start+length) of a file, read piece by piece, each after the socket took the last. */
  private async streamFile(ex: Exchange, file: string, start: number, length: number): Promise<void> {
    let fh: fs.promises.FileHandle | null = null;
    try {
      fh = await fs.promises.open(file, "r");
      let position = start, left = length;
      while (left > 0 && !ex.isAborted && !ex.isDone) {
        const piece = Buffer.allocUnsafe(Math.min(FILE_PIECE_BYTES, left));
        const { bytesRead } = await fh.read(piece, 0, piece.length, position);
        if (bytesRead === 0) break; // the file shrank under us: endResponse sees the short body and cuts the connection
        position += bytesRead;
        left -= bytesRead;
        ex.writeBody(bytesRead === piece.length ? piece : piece.subarray(0, bytesRead));
        if (ex.isBackedUp) await new Promise<void>((resolve) => ex.whenDrained(resolve));
      }
      if (!ex.isAborted) ex.endResponse();
    } catch (err) {
      ex.failApp(err);
    } finally {
      await fh?.close().catch(() => {});
    }
  }

  private answer(ex: Exchange, status: string, headers: [string, string][]): void {
    ex.setResponse(status, headers);
    ex.endResponse();
  }

  private answerError(ex: Exchange, status: 404 | 400 | 405 | 412, extra: [string, string][] = []): void {
    const text = { 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 412: "Precondition Failed" }[status];
    const body = Buffer.from(text + "\n");
    ex.setResponse(`${status} ${text}`, [["Content-Type", "text/plain; charset=utf-8"], ["Content-Length", String(body.length)], ...extra]);
    ex.writeBody(body);
    ex.endResponse();
  }
}

/**
 * X-Accel-Redirect (nginx) or X-Sendfile (Apache's mod_xsendfile) in an app's answer, or null.
 * Called for every answer while a --sendfile-root is configured, so it only compares names.
 */
export function findInternalRedirect(status: string, headers: [string, string][]): InternalRedirect | null {
  for (let i = 0; i < headers.length; i++) {
    const pair = headers[i];
    if (!Array.isArray(pair) || typeof pair[0] !== "string" || typeof pair[1] !== "string") return null; // checkResponse will say why
    const n = pair[0].length;
    if (n !== 16 && n !== 10) continue;
    const lower = pair[0].toLowerCase();
    if (lower !== "x-accel-redirect" && lower !== "x-sendfile") continue;
    // Header values are latin-1 strings of the bytes sent; a file path is UTF-8.
    const target = lower === "x-sendfile" ? Buffer.from(pair[1], "latin1").toString("utf8") : pair[1];
    return { status, headers, target, isSendfile: lower === "x-sendfile" };
  }
  return null;
}

function isUnder(requestPath: string, prefix: string): boolean {
  return requestPath.startsWith(prefix) && (requestPath.length === prefix.length || requestPath.charCodeAt(prefix.length) === 0x2f);
}

function conditionalHeaders(ex: Exchange): ConditionalHeaders & { acceptEncoding?: string } {
  const h: ConditionalHeaders & { acceptEncoding?: string } = {};
  for (const [name, value] of ex.head.headers) {
    switch (name) {
      case "if-match": h.ifMatch = h.ifMatch === undefined ? value : h.ifMatch + ", " + value; break;
      case "if-none-match": h.ifNoneMatch = h.ifNoneMatch === undefined ? value : h.ifNoneMatch + ", " + value; break;
      case "if-modified-since": h.ifModifiedSince = value; break;
      case "if-unmodified-since": h.ifUnmodifiedSince = value; break;
      case "if-range": h.ifRange = value; break;
      // Two Range fields are not one range (RFC 9110 §5.3 does not let a singleton field be combined): treat as several.
      case "range": h.range = h.range === undefined ? value : h.range + "," + value; break;
      case "accept-encoding": h.acceptEncoding = h.acceptEncoding === undefined ? value : h.acceptEncoding + ", " + value; break;
    }
  }
  return h;
}

// The example apps, in-process (no server): each shared case list runs
// against the TypeScript app through a fake environ, and against the Python
// app through a small driver run by python3 (wrapped in wsgiref.validate where
// PEP 3333 allows it). Each case must meet its expectation, and the two
// languages must answer byte for byte the same (status line, header list,
// body).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { WsgiApp } from "../server.ts";
import helloApp from "../apps/hello.ts";
import { app as tasksApp, reset as resetTasks } from "../apps/tasks.ts";
import { HELLO_CASES, checkHelloCase } from "./hello.cases.ts";
import { type CaseRequest, type CaseResponse, TASK_CASES, bodyBytes, checkTaskCase } from "./tasks.cases.ts";

const APPS_DIR = join(import.meta.dir, "..", "apps");
const PYTHON = process.env.BUNICORN_PYTHON ?? "python3";

/** What an app answered, exactly: for comparing the two languages. */
interface AppResult {
  statusLine: string;
  headers: [string, string][];
  body: Uint8Array;
}

function toCaseResponse(result: AppResult): CaseResponse {
  return { status: Number(result.statusLine.slice(0, 3)), headers: result.headers, body: result.body };
}

// ---- a fake environ for calling TS apps directly ----

class FakeInput {
  #data: Uint8Array;
  #offset = 0;
  constructor(data: Uint8Array) {
    this.#data = data;
  }
  read(n?: number): Uint8Array {
    const end = n === undefined || n < 0 ? this.#data.length : Math.min(this.#data.length, this.#offset + n);
    const out = this.#data.slice(this.#offset, end);
    this.#offset = end;
    return out;
  }
  readline(limit?: number): Uint8Array {
    const newline = this.#data.indexOf(0x0a, this.#offset);
    let end = newline < 0 ? this.#data.length : newline + 1;
    if (limit !== undefined && limit >= 0) end = Math.min(end, this.#offset + limit);
    return this.read(end - this.#offset);
  }
  readlines(): Uint8Array[] {
    const lines: Uint8Array[] = [];
    for (let line = this.readline(); line.length > 0; line = this.readline()) lines.push(line);
    return lines;
  }
  *[Symbol.iterator](): Iterator<Uint8Array> {
    yield* this.readlines();
  }
}

/** Percent-decodes a path into a latin-1 string of the bytes (PEP 3333 PATH_INFO). */
function decodePath(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The CGI part of the environ, as plain strings (shared with the Python driver). */
function buildCgiEnviron(request: CaseRequest): Record<string, string> {
  const query = request.target.indexOf("?");
  const environ: Record<string, string> = {
    REQUEST_METHOD: request.method,
    SCRIPT_NAME: "",
    PATH_INFO: decodePath(query < 0 ? request.target : request.target.slice(0, query)),
    QUERY_STRING: query < 0 ? "" : request.target.slice(query + 1),
    SERVER_NAME: "127.0.0.1",
    SERVER_PORT: "8000",
    SERVER_PROTOCOL: "HTTP/1.1",
    REMOTE_ADDR: "127.0.0.1",
    REMOTE_PORT: "50000",
    HTTP_HOST: "127.0.0.1:8000",
  };
  if (request.contentType) environ.CONTENT_TYPE = request.contentType;
  if (request.body !== undefined && !request.isChunked) environ.CONTENT_LENGTH = String(bodyBytes(request).length);
  if (request.isChunked) environ.HTTP_TRANSFER_ENCODING = "chunked";
  return environ;
}

async function callTsApp(app: WsgiApp, request: CaseRequest): Promise<AppResult> {
  const environ = {
    ...buildCgiEnviron(request),
    "wsgi.version": [1, 0],
    "wsgi.url_scheme": "http",
    "wsgi.input": new FakeInput(bodyBytes(request)),
    "wsgi.errors": { write(s: string) { process.stderr.write(s); }, flush() {} },
    "wsgi.multithread": false,
    "wsgi.multiprocess": false,
    "wsgi.run_once": false,
    "wsgi.input_terminated": request.isChunked === true,
  };
  let statusLine: string | undefined;
  let headers: [string, string][] = [];
  const chunks: Uint8Array[] = [];
  const toBytes = (chunk: Uint8Array | string) => (typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk);
  const body = await app(environ, (status, responseHeaders) => {
    statusLine = status;
    headers = responseHeaders;
    return (chunk) => void chunks.push(toBytes(chunk));
  });
  try {
    if (Symbol.asyncIterator in body) for await (const chunk of body) chunks.push(toBytes(chunk));
    else for (const chunk of body) chunks.push(toBytes(chunk));
  } finally {
    body.close?.();
  }
  if (statusLine === undefined) throw new Error("the app never called start_response");
  return { statusLine, headers, body: Buffer.concat(chunks) };
}

// ---- the Python side ----

const PYTHON_DRIVER = String.raw`
import base64, hashlib, importlib.util, io, json, sys, warnings
from wsgiref.validate import validator

sys.dont_write_bytecode = True
warnings.simplefilter("ignore")  # validate warns about unusual methods; the cases use some on purpose

job = json.load(sys.stdin)
spec = importlib.util.spec_from_file_location("app_under_test", job["file"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
if job.get("reset"):
    module.reset()

results = []
for call in job["calls"]:
    app = getattr(module, call["callable"])
    body_in = base64.b64decode(call["body"])
    environ = dict(call["environ"])
    environ.update({
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body_in),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": False,
        "wsgi.run_once": False, "wsgi.input_terminated": call["chunked"],
    })
    # wsgiref.validate insists on read(n); a chunked body is read to its end with read().
    if not call["chunked"]:
        app = validator(app)
    started = []
    digest = hashlib.sha256()
    kept = []
    size = 0
    def take(chunk):
        global size
        digest.update(chunk)
        size += len(chunk)
        if size <= 1 << 20:
            kept.append(chunk)
    def start_response(status, headers, exc_info=None):
        started.append((status, [list(h) for h in headers]))
        return take
    iterable = app(environ, start_response)
    try:
        for chunk in iterable:
            take(chunk)
    finally:
        if hasattr(iterable, "close"):
            iterable.close()
    status, headers = started[-1]
    results.append({
        "status": status, "headers": headers, "size": size, "sha256": digest.hexdigest(),
        "body": base64.b64encode(b"".join(kept)).decode("ascii") if size <= 1 << 20 else None,
    })
json.dump(results, sys.stdout)
`;

interface PythonCall {
  callable: string;
  request: CaseRequest;
}

interface PythonResult extends AppResult {
  size: number;
  sha256: string;
}

let tempDir = "";
let driverPath = "";

beforeAll(() => {
  tempDir = mkdtempSync(join(tmpdir(), "bunicorn-apps-test-"));
  driverPath = join(tempDir, "driver.py");
  writeFileSync(driverPath, PYTHON_DRIVER);
});

afterAll(() => {
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});

/** Runs the calls in order against one fresh import of a Python app file. */
async function callPythonApp(file: string, calls: PythonCall[], shouldReset = false): Promise<PythonResult[]> {
  const job = {
    file: join(APPS_DIR, file),
    reset: shouldReset,
    calls: calls.map(({ callable, request }) => ({
      callable,
      environ: buildCgiEnviron(request),
      body: Buffer.from(bodyBytes(request)).toString("base64"),
      chunked: request.isChunked === true,
    })),
  };
  const child = Bun.spawn([PYTHON, driverPath], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  child.stdin.write(JSON.stringify(job));
  child.stdin.end();
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(`python driver for ${file} exited ${code}:\n${stderr}`);
  const raw: { status: string; headers: [string, string][]; size: number; sha256: string; body: string | null }[] = JSON.parse(stdout);
  return raw.map((r) => ({
    statusLine: r.status,
    headers: r.headers,
    size: r.size,
    sha256: r.sha256,
    body: r.body === null ? new Uint8Array(0) : new Uint8Array(Buffer.from(r.body, "base64")),
  }));
}

function expectSameAnswer(ts: AppResult, py: AppResult): void {
  expect(py.statusLine).toBe(ts.statusLine);
  expect(py.headers).toEqual(ts.headers);
  expect(Buffer.from(py.body).toString("latin1")).toBe(Buffer.from(ts.body).toString("latin1"));
}

// ---- tasks ----

describe("tasks app", () => {
  const tsResults: AppResult[] = [];
  let pyResults: PythonResult[] = [];

  beforeAll(async () => {
    resetTasks();
    for (const c of TASK_CASES) tsResults.push(await callTsApp(tasksApp, c.request));
    pyResults = await callPythonApp("tasks.py", TASK_CASES.map((c) => ({ callable: "application", request: c.request })), true);
  });

  TASK_CASES.forEach((c, i) => {
    test(`${c.request.method} ${c.request.target}: ${c.name}`, () => {
      expect(checkTaskCase(c, toCaseResponse(tsResults[i]))).toEqual([]);
      expect(checkTaskCase(c, toCaseResponse(pyResults[i]))).toEqual([]);
      expectSameAnswer(tsResults[i], pyResults[i]);
    });
  });

  test("reset() restarts ids at 1", async () => {
    resetTasks();
    const created = await callTsApp(tasksApp, { method: "POST", target: "/tasks", body: `{"title":"again"}` });
    expect(new TextDecoder().decode(created.body)).toBe(`{"id":1,"title":"again","done":false}`);
    resetTasks();
  });
});

// ---- hello ----

describe("hello app", () => {
  const tsResults: AppResult[] = [];
  let pyResults: PythonResult[] = [];

  beforeAll(async () => {
    for (const c of HELLO_CASES) tsResults.push(await callTsApp(helloApp, c.request));
    pyResults = await callPythonApp("hello.py", HELLO_CASES.map((c) => ({ callable: "application", request: c.request })));
  });

  HELLO_CASES.forEach((c, i) => {
    test(`${c.request.target}: ${c.name}`, () => {
      expect(checkHelloCase(c, toCaseResponse(tsResults[i]))).toEqual([]);
      expect(checkHelloCase(c, toCaseResponse(pyResults[i]))).toEqual([]);
      expectSameAnswer(tsResults[i], pyResults[i]);
    });
  });
});

// ---- bench_apps.py ----

describe("bench_apps.py", () => {
  const HELLO = "Hello, World!";
  const upload = new Uint8Array(200_000).fill(0x61);
  const calls: (PythonCall & { check: (r: PythonResult) => void })[] = [
    { callable: "hello", request: { method: "GET", target: "/" }, check: (r) => expect(Buffer.from(r.body).toString()).toBe(HELLO) },
    { callable: "application", request: { method: "GET", target: "/" }, check: (r) => expect(Buffer.from(r.body).toString()).toBe(HELLO) },
    { callable: "body_10k", request: { method: "GET", target: "/" }, check: (r) => expect(r.size).toBe(10240) },
    { callable: "echo", request: { method: "POST", target: "/", body: "ping \u00e9" }, check: (r) => expect(Buffer.from(r.body).toString()).toBe("ping \u00e9") },
    { callable: "echo", request: { method: "POST", target: "/", body: "chunked body", isChunked: true }, check: (r) => expect(Buffer.from(r.body).toString()).toBe("chunked body") },
    { callable: "echo", request: { method: "GET", target: "/" }, check: (r) => expect(r.size).toBe(0) },
    { callable: "sleep_10ms", request: { method: "GET", target: "/" }, check: (r) => expect(Buffer.from(r.body).toString()).toBe(HELLO) },
    { callable: "stream_100m", request: { method: "GET", target: "/" }, check: (r) => expect(r.size).toBe(100 * 1024 * 1024) },
    { callable: "upload", request: { method: "POST", target: "/", body: upload }, check: (r) => expect(Buffer.from(r.body).toString()).toBe("200000") },
    { callable: "upload", request: { method: "POST", target: "/", body: upload, isChunked: true }, check: (r) => expect(Buffer.from(r.body).toString()).toBe("200000") },
  ];

  test("each app answers 200 with a correct Content-Length", async () => {
    const results = await callPythonApp("bench_apps.py", calls);
    calls.forEach((call, i) => {
      const r = results[i];
      expect(r.statusLine).toBe("200 OK");
      expect(r.headers.find(([k]) => k === "Content-Length")?.[1]).toBe(String(r.size));
      call.check(r);
    });
  }, 30_000);
});

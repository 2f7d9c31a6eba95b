// Python WSGI apps served by a real bunicorn process (`bun server.ts APP ...
// --python .venv/bin/python`), over real sockets: how APP is found, boot
// failures, the environ a Python app sees (compared key by key with a
// TypeScript app's), wsgi.input on streamed bodies, streamed responses,
// write(), close(), wsgi.file_wrapper, worker output in the error log,
// 100-continue, and the shared tasks case list. Every server is stopped by
// its pid after each test, and no worker may outlive it.
import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RawClient, exchange, header, sleep, spawnServer } from "./helpers.ts";
import { PYAPPS, type PyServer, bodyText, fileText, freePort, isListening, request, startPy, stopPy, waitFor, workerLogLines, usePyFixture } from "./pyhelpers.ts";
import { TASK_CASES, checkTaskCase, toRequestBytes } from "./tasks.cases.ts";

const PROBE = "test/pyapps/probe.py";

let dir = "";
usePyFixture("bunicorn-py-", (d) => { dir = d; });

/** Stop a server with SIGTERM and check it exits 0 and leaves no worker. */
async function stopCleanly(server: PyServer): Promise<void> {
  const { code, survivors } = await stopPy(server, "SIGTERM");
  expect(code).toBe(0);
  expect(survivors).toEqual([]);
}

/** Bytes a process has read through read(2) and friends (/proc/PID/io rchar). */
function readRchar(pid: number): number {
  return Number(/^rchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"))![1]);
}

// ==== APP forms and boot failures ====

describe("APP forms", () => {
  test("module:callable with --chdir picks the named callable", async () => {
    const [a, b] = await Promise.all([
      startPy("forms_both:app", ["--chdir", PYAPPS, "-w", "1"]),
      startPy("forms_both:application", ["--chdir", PYAPPS, "-w", "1"]),
    ]);
    expect(bodyText(await request(a.port, "/"))).toBe("app");
    expect(bodyText(await request(b.port, "/"))).toBe("application");
    await Promise.all([stopCleanly(a), stopCleanly(b)]);
  }, 30_000);

  test("path/file.py:callable, relative to the working directory and absolute", async () => {
    const [a, b] = await Promise.all([
      startPy("test/pyapps/forms_both.py:app", ["-w", "1"]),
      startPy(`${PYAPPS}/forms_factory.py:create_app()`, ["-w", "1"]),
    ]);
    expect(bodyText(await request(a.port, "/"))).toBe("app");
    expect(bodyText(await request(b.port, "/"))).toBe("made by factory");
  }, 30_000);

  test("without a callable: `application` first, then `app`", async () => {
    const [both, appOnly] = await Promise.all([
      startPy("forms_both", ["--chdir", PYAPPS, "-w", "1"]),
      startPy("forms_app_only", ["--chdir", PYAPPS, "-w", "1"]),
    ]);
    expect(bodyText(await request(both.port, "/"))).toBe("application");
    expect(bodyText(await request(appOnly.port, "/"))).toBe("only app");
  }, 30_000);

  test("module:create_app() factory, with and without literal arguments", async () => {
    const [plain, withArgs] = await Promise.all([
      startPy("forms_factory:create_app()", ["--chdir", PYAPPS, "-w", "1"]),
      startPy(`forms_factory:create_app('custom', greeting="built for")`, ["--chdir", PYAPPS, "-w", "1"]),
    ]);
    expect(bodyText(await request(plain.port, "/"))).toBe("made by factory");
    expect(bodyText(await request(withArgs.port, "/"))).toBe("built for custom");
  }, 30_000);

  /**
   * Run a server whose workers must fail to boot; returns its exit code and error log. It
   * listens before booting (gunicorn's order), so check it never said it was ready and let the port go.
   * `whileBooting` runs meanwhile (with the port), e.g. to send requests that must wait for the boot.
   */
  async function bootFailure(app: string, extra: string[] = [], options: { env?: Record<string, string>; whileBooting?: (port: number) => Promise<void> } = {}): Promise<{ code: number | null; stderr: string }> {
    const port = freePort();
    const proc = Bun.spawn([process.execPath, "server.ts", app, "-b", `127.0.0.1:${port}`, "-w", "2", "--python", join(import.meta.dir, "..", ".venv", "bin", "python"), ...extra], {
      cwd: join(import.meta.dir, ".."), stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1", ...options.env },
    });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    const stderrText = new Response(proc.stderr).text();
    try {
      await options.whileBooting?.(port);
    } catch (err) {
      proc.kill("SIGKILL");
      throw err;
    }
    const [stderr, code] = await Promise.all([stderrText, proc.exited]);
    clearTimeout(timer);
    expect(await isListening(port)).toBe(false);
    expect(stderr).not.toContain("Workers ready:");
    return { code, stderr };
  }

  test("an import error: the Python traceback on stderr once, every time; exit 3 (gunicorn's worker boot error)", async () => {
    // Four runs at once: the traceback must not depend on whether the worker's exit or its
    // last frame is seen first.
    const runs = await Promise.all([1, 2, 3, 4].map(() => bootFailure("broken", ["--chdir", PYAPPS])));
    for (const { code, stderr } of runs) {
      expect(code).toBe(3);
      expect(stderr.split("Traceback (most recent call last):").length - 1).toBe(1);
      expect(stderr).toContain("in _helper_that_fails");
      expect(stderr).toContain("RuntimeError: broken-app-import-marker");
    }
  }, 30_000);

  test("requests waiting for a boot that fails get 503 (a queued GET, a POST whose body is still arriving) and the log counts them", async () => {
    const { code, stderr } = await bootFailure("slow_boot:app", ["--chdir", PYAPPS], {
      env: { BOOT_SLEEP: "1.5", BOOT_FAIL: "1" },
      whileBooting: async (port) => {
        const deadline = Date.now() + 5000; // it listens before the workers boot
        while (!(await isListening(port)) && Date.now() < deadline) await sleep(50);
        const queued = await RawClient.connect(port);
        queued.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        const halfBody = await RawClient.connect(port);
        halfBody.write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
        for (const client of [queued, halfBody]) {
          expect(await client.waitForClose(10_000)).toBe(true);
          expect(client.text).toStartWith("HTTP/1.1 503 Service Unavailable\r\n");
          expect(client.text).toContain("\r\nRetry-After: 1\r\n");
        }
      },
    });
    expect(code).toBe(3);
    expect(stderr).toContain("RuntimeError: slow-boot-failure-marker");
    expect(stderr).toMatch(/\[WARNING\] 2 request\(s\) answered 503: the server is stopping/);
  }, 30_000);

  test("a missing module or attribute also exits 3 with the reason", async () => {
    const [missingModule, missingAttr] = await Promise.all([
      bootFailure("no_such_module_xyz:app", ["--chdir", PYAPPS]),
      bootFailure("forms_both:no_such_callable", ["--chdir", PYAPPS]),
    ]);
    expect(missingModule.code).toBe(3);
    expect(missingModule.stderr).toContain("ModuleNotFoundError: No module named 'no_such_module_xyz'");
    expect(missingAttr.code).toBe(3);
    expect(missingAttr.stderr).toContain("no_such_callable");
  }, 30_000);
});

// ==== The environ ====

describe("environ", () => {
  const rawRequest = () =>
    Buffer.from(
      "POST /root/a%20b/%FF/caf%C3%A9/x%2Fy?x=1&y=%20z+w&e= HTTP/1.1\r\n" +
        "Host: example.test:8080\r\n" +
        "X-Dump-Environ: 1\r\n" +
        "Content-Type: text/plain; charset=latin-1\r\n" +
        "Content-Length: 5\r\n" +
        "X-Multi: a\r\n" +
        "X-Multi: b\r\n" +
        "Cookie: a=1\r\n" +
        "Cookie: b=2\r\n" +
        "X-Latin: caf\xe9\r\n" +
        "X_Underscore: dropped\r\n" +
        "User-Agent: probe/1.0\r\n" +
        "Accept:   */*   \r\n" +
        "Connection: close\r\n\r\nhello",
      "latin1",
    );

  test("a Python app sees the same CGI values as a TypeScript app, key by key", async () => {
    const [py, ts] = await Promise.all([
      startPy(PROBE, ["-w", "1", "--root-path", "/root"]),
      spawnServer(["test/pyapps/environ_dump.ts", "-b", "127.0.0.1:0", "--root-path", "/root"]),
    ]);
    const pyRes = (await exchange(py.port, rawRequest())).responses[0];
    const tsRes = (await exchange(ts.port, rawRequest())).responses[0];
    expect(pyRes.status).toBe(200);
    expect(tsRes.status).toBe(200);
    const p = JSON.parse(pyRes.body.toString("utf8"));
    const t = JSON.parse(tsRes.body.toString("utf8"));

    // What PEP 3333 and the request say, checked on the Python side.
    expect(p.cgi.PATH_INFO).toBe("/a b/\xff/caf\xc3\xa9/x/y"); // percent-decoded, each byte one latin-1 char
    expect(p.cgi.SCRIPT_NAME).toBe("/root");
    expect(p.cgi.QUERY_STRING).toBe("x=1&y=%20z+w&e=");
    expect(p.cgi.REQUEST_METHOD).toBe("POST");
    expect(p.cgi.SERVER_PROTOCOL).toBe("HTTP/1.1");
    expect(p.cgi.CONTENT_TYPE).toBe("text/plain; charset=latin-1");
    expect(p.cgi.CONTENT_LENGTH).toBe("5");
    expect(p.cgi.HTTP_HOST).toBe("example.test:8080");
    expect(p.cgi.HTTP_X_MULTI).toBe("a, b");
    expect(p.cgi.HTTP_COOKIE).toBe("a=1; b=2");
    expect(p.cgi.HTTP_X_LATIN).toBe("caf\xe9");
    expect(p.cgi.HTTP_ACCEPT).toBe("*/*");
    expect(p.cgi.REMOTE_ADDR).toBe("127.0.0.1");
    expect(p.cgi.SERVER_PORT).toBe(String(py.port));
    expect(p.cgi.REMOTE_PORT).toMatch(/^[1-9]\d*$/);
    expect("HTTP_X_UNDERSCORE" in p.cgi).toBe(false);
    expect("HTTP_CONTENT_TYPE" in p.cgi).toBe(false);
    expect("HTTP_CONTENT_LENGTH" in p.cgi).toBe(false);
    expect(p.body).toBe("hello");
    expect(p.wsgi).toEqual({
      version: [1, 0],
      url_scheme: "http",
      multithread: false,
      multiprocess: false,
      run_once: false,
      input_terminated: false,
      input_methods: ["read", "readline", "readlines", "__iter__"],
      errors_methods: ["write", "writelines", "flush"],
      has_file_wrapper: true,
      non_str_keys: [],
    });

    // The same request to the TypeScript app: the same keys and values, except the per-socket ports.
    expect(Object.keys(p.cgi).sort()).toEqual(Object.keys(t.cgi).sort());
    for (const key of Object.keys(t.cgi)) {
      if (key === "SERVER_PORT") {
        expect(t.cgi[key]).toBe(String(ts.port));
      } else if (key === "REMOTE_PORT") {
        expect(t.cgi[key]).toMatch(/^[1-9]\d*$/);
      } else {
        expect([key, p.cgi[key]]).toEqual([key, t.cgi[key]]);
      }
    }
    expect(p.wsgi.url_scheme).toBe(t.wsgi.url_scheme);
    expect(p.wsgi.non_str_keys).toEqual(t.wsgi.non_str_keys);
    expect(p.body).toBe(t.body);
  }, 30_000);

  test("wsgi.multithread follows --threads, wsgi.multiprocess follows -w", async () => {
    const [threaded, multi] = await Promise.all([
      startPy(PROBE, ["-w", "1", "--threads", "2"]),
      startPy(PROBE, ["-w", "2", "--threads", "1"]),
    ]);
    const dump = async (port: number) =>
      JSON.parse(bodyText(await request(port, "/", { headers: { "X-Dump-Environ": "1" } }))).wsgi;
    const t = await dump(threaded.port);
    expect([t.multithread, t.multiprocess]).toEqual([true, false]);
    const m = await dump(multi.port);
    expect([m.multithread, m.multiprocess]).toEqual([false, true]);
  }, 30_000);
});

// ==== wsgi.input ====

/** A body of ~200 KB of lines of varied length (with bytes 0xff and CR), the last one without LF. */
function makeLinesBody(): Buffer {
  const parts: string[] = [];
  for (let i = 0; i < 2000; i++) parts.push(`line ${i} ${"x".repeat((i * 37) % 180)}${i % 97 === 0 ? "\xff\r" : ""}\n`);
  parts.push("tail without newline");
  return Buffer.from(parts.join(""), "latin1");
}

/** io.BytesIO semantics, to compute what each read mode must return. */
class BytesReader {
  pos = 0;
  constructor(readonly data: Buffer) {}
  read(n = -1): Buffer {
    const end = n < 0 ? this.data.length : Math.min(this.data.length, this.pos + n);
    const out = this.data.subarray(this.pos, end);
    this.pos = end;
    return out;
  }
  readline(limit = -1): Buffer {
    const nl = this.data.indexOf(0x0a, this.pos);
    let end = nl === -1 ? this.data.length : nl + 1;
    if (limit >= 0) end = Math.min(end, this.pos + limit);
    return this.read(end - this.pos);
  }
  readlines(): Buffer[] {
    const out: Buffer[] = [];
    for (let l = this.readline(); l.length > 0; l = this.readline()) out.push(l);
    return out;
  }
}

function expectedLengths(body: Buffer, mode: string): number[] {
  const r = new BytesReader(body);
  const pieces: Buffer[] = [];
  const until = (f: () => Buffer) => { for (let p = f(); p.length > 0; p = f()) pieces.push(p); };
  switch (mode) {
    case "read": pieces.push(r.read()); break;
    case "readn": until(() => r.read(1000)); break;
    case "readline": until(() => r.readline()); break;
    case "readline_limit": until(() => r.readline(100)); break;
    case "readlines": case "iter": pieces.push(...r.readlines()); break;
    case "mixed":
      pieces.push(r.read(10), r.readline(), r.readline(5), r.readline(), r.read(3000), ...r.readlines());
      break;
  }
  return pieces.map((p) => p.length);
}

/** Send a chunked POST in many chunks of varied size, with pauses, and return the parsed answer. */
async function postChunked(port: number, target: string, body: Buffer): Promise<any> {
  const client = await RawClient.connect(port);
  client.write(`POST ${target} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`);
  const sizes = [1, 9, 100, 4096, 65536, 70000, 333];
  let off = 0;
  for (let i = 0; off < body.length; i++) {
    const n = Math.min(sizes[i % sizes.length], body.length - off);
    client.write(Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), body.subarray(off, off + n), Buffer.from("\r\n")]));
    off += n;
    if (i % 5 === 0) await sleep(10);
  }
  client.write("0\r\n\r\n");
  const [res] = await client.readResponses(1, ["POST"], 10_000);
  client.destroy();
  expect(res?.status).toBe(200);
  return JSON.parse(bodyText(res));
}

describe("wsgi.input", () => {
  const body = makeLinesBody();
  const sha = createHash("sha256").update(body).digest("hex");

  test("read(), read(n), readline(), readline(n), readlines(), iteration on a chunked POST", async () => {
    const server = await startPy(PROBE, ["-w", "1"]);
    for (const mode of ["read", "readn", "readline", "readline_limit", "readlines", "iter", "mixed"]) {
      const got = await postChunked(server.port, `/input?mode=${mode}&n=${mode === "readn" ? 1000 : 100}`, body);
      expect({ mode, ...got }).toEqual({
        mode,
        lengths: expectedLengths(body, mode),
        size: body.length,
        sha256: sha,
        terminated: true, // PEP 3333 extension: a chunked body ends at EOF
        after: [0, 0, 0],
      });
    }
  }, 30_000);

  test("bodies around the inline limit (1 MiB: sent with the request above it: pulled) arrive whole", async () => {
    const server = await startPy(PROBE, ["-w", "1"]);
    const MiB = 1024 * 1024;
    for (const size of [MiB - 1, MiB, MiB + 1, 3 * MiB + 7]) {
      const big = Buffer.alloc(size);
      for (let i = 0; i < size; i++) big[i] = (i * 31 + (i >> 13)) & 0xff;
      const bigSha = createHash("sha256").update(big).digest("hex");
      for (const mode of ["read", "readn"]) {
        const res = await request(server.port, `/input?mode=${mode}&n=1000`, { method: "POST", body: big });
        expect(res.status).toBe(200);
        expect({ size, mode, ...JSON.parse(bodyText(res)) }).toEqual({
          size, mode, lengths: expectedLengths(big, mode), sha256: bigSha, terminated: false, after: [0, 0, 0],
        });
      }
    }
  }, 30_000);

  test("a large Content-Length body read line by line is not marked input_terminated", async () => {
    const server = await startPy(PROBE, ["-w", "1", "--threads", "2"]);
    const res = await request(server.port, "/input?mode=readlines", { method: "POST", body });
    expect(res.status).toBe(200);
    expect(JSON.parse(bodyText(res))).toEqual({
      lengths: expectedLengths(body, "readlines"), size: body.length, sha256: sha, terminated: false, after: [0, 0, 0],
    });
  }, 30_000);
});

// ==== Responses ====

describe("responses", () => {
  let server: PyServer;
  const probe = async () => { server = await startPy(PROBE, ["-w", "1"]); };

  test("a streamed body reaches the client chunk by chunk", async () => {
    await probe();
    const flag = join(dir, "stream-flag");
    const client = await RawClient.connect(server.port);
    client.write(`GET /stream?flag=${flag} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`);
    // The app will not yield its second chunk until the flag exists: the first must arrive alone.
    expect(await client.waitUntil(() => client.text.includes("first chunk\n"), 5000)).toBe(true);
    await sleep(300);
    expect(client.text).not.toContain("second chunk");
    writeFileSync(flag, "");
    const [res] = await client.readResponses(1, ["GET"], 5000);
    expect(res.status).toBe(200);
    expect(header(res, "transfer-encoding")).toBe("chunked");
    expect(bodyText(res)).toBe("first chunk\nsecond chunk\n");
  }, 20_000);

  test("write() returned by start_response, then the returned iterable", async () => {
    await probe();
    const res = await request(server.port, "/write");
    expect(res.status).toBe(200);
    expect(bodyText(res)).toBe("one,two,three");
  }, 20_000);

  test("close() of the returned iterable is always called: done, raised, client gone", async () => {
    await probe();
    const marker = join(dir, "close-marker");
    const normal = await request(server.port, `/close?marker=${marker}&id=normal`);
    expect(bodyText(normal)).toBe("part one\npart two\n");
    expect(await waitFor(() => fileText(marker).includes("closed normal\n"), 3000)).toBe(true);

    // Raised after the head went out: the response is cut short, and close() still runs.
    const raised = await exchange(server.port, `GET /close?marker=${marker}&id=raised&mode=raise HTTP/1.1\r\nHost: t\r\n\r\n`, { timeoutMs: 5000 });
    // Either the head was on the wire (then the body is cut short) or it was not yet (then a whole 500).
    const first = raised.responses[0];
    expect(raised.isClosed).toBe(true);
    expect(first === undefined ? "nothing" : `${first.status} ${first.isComplete ? "complete" : "cut"}`).toMatch(/^(200 cut|500 complete)$/);
    if (first?.status === 200) expect(first.rawBody.toString("latin1")).toContain("part one\n");
    expect(await waitFor(() => fileText(marker).includes("closed raised\n"), 3000)).toBe(true);

    // The client leaves in the middle of a slow body.
    const client = await RawClient.connect(server.port);
    client.write(`GET /close?marker=${marker}&id=gone&mode=slow HTTP/1.1\r\nHost: t\r\n\r\n`);
    expect(await client.waitUntil(() => client.text.includes("tick 2"), 5000)).toBe(true);
    client.destroy();
    expect(await waitFor(() => fileText(marker).includes("closed gone\n"), 3000)).toBe(true);

    // Each close() ran once, and the worker still serves.
    expect(fileText(marker).split("\n").filter(Boolean).sort()).toEqual(["closed gone", "closed normal", "closed raised"]);
    expect((await request(server.port, "/pid")).status).toBe(200);
  }, 30_000);

  test("wsgi.file_wrapper over a real file sends the file's bytes", async () => {
    await probe();
    const file = join(dir, "data.bin");
    const data = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(file, data);
    // The front sends a real file itself (SENDFILE): the worker reads next to none of it.
    const [workerPid] = server.workers();
    const rcharBefore = readRchar(workerPid);
    const withLength = await request(server.port, `/file?path=${file}&length=1`);
    expect(withLength.status).toBe(200);
    expect(header(withLength, "content-length")).toBe(String(data.length));
    expect(withLength.body.equals(data)).toBe(true);
    expect(readRchar(workerPid) - rcharBefore).toBeLessThan(data.length / 4);

    const chunked = await request(server.port, `/file?path=${file}`);
    expect(header(chunked, "transfer-encoding")).toBe("chunked");
    expect(chunked.body.length).toBe(data.length);
    expect(chunked.body.equals(data)).toBe(true);

    // From the file's current position (the app seeked before wrapping it).
    const fromOffset = await request(server.port, `/file?path=${file}&offset=1000`);
    expect(fromOffset.body.equals(data.subarray(1000))).toBe(true);
    const fromOffsetWithLength = await request(server.port, `/file?path=${file}&offset=1000&length=1`);
    expect(header(fromOffsetWithLength, "content-length")).toBe(String(data.length - 1000));
    expect(fromOffsetWithLength.body.equals(data.subarray(1000))).toBe(true);

    // A file-like object without a file descriptor is iterated.
    const inMemory = await request(server.port, "/file?bytesio=1");
    expect(bodyText(inMemory)).toBe("in-memory ".repeat(1000));
  }, 30_000);

  test("--capture-output: print(), sys.stderr and wsgi.errors lines reach the error log, tagged with the worker", async () => {
    server = await startPy(PROBE, ["-w", "1", "--capture-output"]);
    const tag = `t${Date.now()}`;
    const res = await request(server.port, `/log?tag=${tag}`);
    const pid = Number(bodyText(res));
    expect(server.workers()).toContain(pid);
    for (const text of [`print-${tag}`, `stderr-${tag}`, `errors-${tag}`]) {
      expect(await server.waitForOutput(new RegExp(`\\[worker \\d+ pid ${pid}\\] ${text}$`, "m"), "stderr", 3000)).toBe(true);
    }
    const lines = workerLogLines(server.stderr()).filter((l) => l.text.endsWith(tag));
    expect(lines.map((l) => l.text).sort()).toEqual([`errors-${tag}`, `print-${tag}`, `stderr-${tag}`]);
    expect(new Set(lines.map((l) => l.pid))).toEqual(new Set([pid]));
  }, 20_000);

  test("Expect: 100-continue gets 100 Continue only when the app reads the body", async () => {
    await probe();
    const reader = await RawClient.connect(server.port);
    reader.write("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n");
    expect(await reader.waitUntil(() => reader.text.includes("\r\n\r\n"), 5000)).toBe(true);
    expect(reader.text).toBe("HTTP/1.1 100 Continue\r\n\r\n");
    reader.write("hello world");
    const answers = await reader.readResponses(1, ["POST"], 5000);
    expect(answers.map((r) => r.status)).toEqual([100, 200]);
    expect(bodyText(answers[1])).toBe("hello world");

    const ignorer = await RawClient.connect(server.port);
    ignorer.write("POST /noread HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n");
    const [res] = await ignorer.readResponses(1, ["POST"], 5000);
    expect(res?.status).toBe(200);
    expect(bodyText(res)).toBe("did not read the body");
    expect(ignorer.text).not.toContain("100 Continue");
  }, 20_000);

  test("an exception before start_response is a 500, with the traceback in the error log", async () => {
    await probe();
    const res = await request(server.port, "/raise");
    expect(res.status).toBe(500);
    expect(bodyText(res)).not.toContain("RuntimeError"); // no --expose-tracebacks
    expect(await server.waitForOutput(/RuntimeError: probe: the app raised before start_response/, "stderr", 3000)).toBe(true);
    expect((await request(server.port, "/pid")).status).toBe(200);
  }, 20_000);
});

// ==== The shared tasks case list ====

test("apps/tasks.py over a real server passes the shared tasks case list", async () => {
  const server = await startPy("apps/tasks.py", ["-w", "1"]);
  const problems: string[] = [];
  for (const c of TASK_CASES) {
    const result = await exchange(server.port, toRequestBytes(c.request), { methods: [c.request.method], timeoutMs: 5000 });
    const res = result.responses.find((r) => r.status >= 200);
    if (res === undefined) {
      problems.push(`${c.name}: no response`);
      continue;
    }
    for (const p of checkTaskCase(c, { status: res.status, headers: res.headers, body: res.body }, true)) problems.push(`${c.name}: ${p}`);
  }
  expect(problems).toEqual([]);
  await stopCleanly(server);
}, 60_000);


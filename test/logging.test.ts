// Section 14 (Logging) over real processes: every access-log atom side by side with
// gunicorn 27 from .venv (the same app, the same requests, each atom compared; only the
// time, the durations and the pid are masked, after their form is checked), the same
// cases against a TypeScript app, the json format, --capture-output and the levels of
// worker output, --log-level, and statsd packets caught by a real UDP listener.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, spawnServer, type ServerProcess } from "./helpers.ts";
import { request, startPy, stopPy, usePyFixture, waitFor, type PyServer } from "./pyhelpers.ts";

const GUNICORN = join(ROOT, ".venv", "bin", "gunicorn");

let dir = "";
usePyFixture("bunicorn-log-", (d) => { dir = d; });

/** REMOTE_USER is set by a middleware: `{remote_user}e` must be the environ as the app left it. */
const LOG_APP_PY = `
import sys

def inner(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/empty":
        start_response("204 No Content", [("X-Out", "none")])
        return [b""]
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"nope"]
    if path == "/output":
        print("printed-" + environ["QUERY_STRING"])
        sys.stderr.write("stderr-" + environ["QUERY_STRING"] + "\\n")
        sys.stderr.flush()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Out", 'say "hi"'), ("X-Twice", "1"), ("X-Twice", "2")])
    return [b"hello ", b"world"]

def app(environ, start_response):
    environ["REMOTE_USER"] = "alice"
    return inner(environ, start_response)
`;

const LOG_APP_TS = `
export default function app(environ: Record<string, any>, startResponse: any) {
  environ.REMOTE_USER = "alice";
  const path = environ.PATH_INFO;
  if (path === "/empty") { startResponse("204 No Content", [["X-Out", "none"]]); return [""]; }
  if (path === "/missing") { startResponse("404 Not Found", [["Content-Type", "text/plain"]]); return ["nope"]; }
  startResponse("200 OK", [["Content-Type", "text/plain"], ["X-Out", 'say "hi"'], ["X-Twice", "1"], ["X-Twice", "2"]]);
  return ["hello ", "world"];
}
`;

/** Every atom, labelled; brace atoms in both cases (gunicorn lowercases the key), a missing header, an unknown atom, %%. */
const EVERY_ATOM = [
  "h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "M", "D", "L", "p",
  "{X-Req}i", "{x-req}I", "{x-out}o", "{X-Twice}o", "{REMOTE_USER}e", "{remote_user}e", "{request_method}e", "{x-none}i", "{x-none}o", "{no_such}e", "zz",
].map((a) => `${a}=%(${a})s`).join("|") + "|pct=%%";

const BASIC_BOB = `Basic ${Buffer.from("bob:pw").toString("base64")}`;

/** The requests, each on its own connection. */
const CASES: { name: string; method?: string; target: string; headers?: Record<string, string>; body?: string }[] = [
  { name: "GET with a query, quotes and a backslash in headers, Basic auth", target: "/a%20b/c?x=1&y=2",
    headers: { "User-Agent": 'agent "quoted" \\ back', Referer: "http://ref/", "X-Req": 'r"1', Authorization: BASIC_BOB } },
  { name: "HEAD: no body bytes sent", method: "HEAD", target: "/a", headers: { "User-Agent": "ua" } },
  { name: "204: b is '-'", target: "/empty" },
  { name: "404 without User-Agent or Referer", target: "/missing" },
  { name: "POST with a body; Authorization that is not Basic", method: "POST", target: "/a?", body: "data", headers: { Authorization: "Bearer xyz" } },
];

async function sendCases(port: number): Promise<void> {
  for (const c of CASES) await request(port, c.target, { method: c.method, headers: c.headers, body: c.body });
}

/** Check the form of what must differ (time, durations, pid), then mask it. */
function maskAtoms(line: string): string {
  const atoms = new Map(line.split("|").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] as const));
  expect(atoms.get("t")).toMatch(/^\[\d\d\/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\/\d{4}:\d\d:\d\d:\d\d \+0000\]$/);
  for (const k of ["T", "M", "D"]) expect(atoms.get(k)).toMatch(/^\d+$/);
  expect(atoms.get("L")).toMatch(/^\d+\.\d{6}$/);
  expect(atoms.get("p")).toMatch(/^<\d+>$/);
  return line.replace(/\|t=[^|]*/, "|t=T").replace(/\|T=\d+\|M=\d+\|D=\d+\|L=[\d.]+\|p=<\d+>/, "|T|M|D|L|p");
}

function pidsIn(lines: string[]): number[] {
  return lines.map((l) => Number(/\|p=<(\d+)>/.exec(l)![1]));
}

async function accessLines(server: { stdout(): string }, count: number): Promise<string[]> {
  const lines = () => server.stdout().split("\n").filter((l) => l.startsWith("h="));
  await waitFor(() => lines().length >= count, 5000);
  return lines();
}

async function stopProcess(server: ServerProcess): Promise<void> {
  server.proc.kill("SIGTERM");
  const timer = setTimeout(() => server.proc.kill("SIGKILL"), 10_000);
  await server.exited;
  clearTimeout(timer);
}

describe("the access log, atom by atom, side by side with gunicorn", () => {
  let gunicornLines: string[] = [];
  let gunicornPids: number[] = [];

  beforeAll(async () => {
    writeFileSync(join(dir, "logapp.py"), LOG_APP_PY);
    writeFileSync(join(dir, "logapp.ts"), LOG_APP_TS);
    const gunicorn = await spawnServer(["logapp:app", "-b", "127.0.0.1:0", "-w", "1", "--access-logfile", "-", "--access-logformat", EVERY_ATOM], {
      cmd: [GUNICORN], cwd: dir, env: { TZ: "UTC", PYTHONDONTWRITEBYTECODE: "1" },
    });
    try {
      await sendCases(gunicorn.port);
      const lines = await accessLines(gunicorn, CASES.length);
      gunicornPids = pidsIn(lines);
      gunicornLines = lines.map(maskAtoms);
    } finally {
      await stopProcess(gunicorn);
    }
    expect(gunicornLines.length).toBe(CASES.length);
  }, 30_000);

  test("a Python app: every atom as gunicorn writes it; p is the pid of the worker that served", async () => {
    const server = await startPy("logapp:app", ["-w", "1", "--access-logfile", "-", "--access-logformat", EVERY_ATOM], { cwd: dir });
    try {
      await sendCases(server.port);
      const lines = await accessLines(server, CASES.length);
      const workers = server.workers();
      for (const pid of pidsIn(lines)) expect(workers).toContain(pid);
      expect(pidsIn(lines)).not.toContain(server.pid);
      const masked = lines.map(maskAtoms);
      for (let i = 0; i < CASES.length; i++) expect({ case: CASES[i].name, line: masked[i] }).toEqual({ case: CASES[i].name, line: gunicornLines[i] });
    } finally {
      await stopPy(server, "SIGTERM");
    }
    expect(gunicornPids.length).toBe(CASES.length);
  }, 30_000);

  test("a Python app with --threads 4: the environ still comes back with each request", async () => {
    const server = await startPy("logapp:app", ["-w", "1", "--threads", "4", "--access-logfile", "-", "--access-logformat", EVERY_ATOM], { cwd: dir });
    try {
      await sendCases(server.port);
      expect((await accessLines(server, CASES.length)).map(maskAtoms)).toEqual(gunicornLines);
    } finally {
      await stopPy(server, "SIGTERM");
    }
  }, 30_000);

  test("a TypeScript app: the same atoms; p is the front's pid", async () => {
    const server = await spawnServer([join(dir, "logapp.ts"), "-b", "127.0.0.1:0", "--access-logfile", "-", "--access-logformat", EVERY_ATOM]);
    try {
      await sendCases(server.port);
      const lines = await accessLines(server, CASES.length);
      expect(pidsIn(lines)).toEqual(CASES.map(() => server.pid));
      expect(lines.map(maskAtoms)).toEqual(gunicornLines);
    } finally {
      await stopProcess(server);
    }
  }, 30_000);

  test("gunicorn's default format, byte for byte but the time", async () => {
    const lines: Record<string, string[]> = {};
    for (const name of ["gunicorn", "bunicorn"] as const) {
      const server = name === "gunicorn"
        ? await spawnServer(["logapp:app", "-b", "127.0.0.1:0", "-w", "1", "--access-logfile", "-"], { cmd: [GUNICORN], cwd: dir, env: { TZ: "UTC" } })
        : await startPy("logapp:app", ["-w", "1", "--access-logfile", "-"], { cwd: dir });
      try {
        await sendCases(server.port);
        const read = () => server.stdout().split("\n").filter((l) => l.startsWith("127.0.0.1 "));
        await waitFor(() => read().length >= CASES.length, 5000);
        lines[name] = read().map((l) => l.replace(/\[[^\]]+\]/, "[T]"));
      } finally {
        await stopProcess(server);
      }
    }
    expect(lines.bunicorn).toEqual(lines.gunicorn);
    expect(lines.bunicorn[0]).toBe('127.0.0.1 - bob [T] "GET /a%20b/c?x=1&y=2 HTTP/1.1" 200 11 "http://ref/" "agent \\"quoted\\" \\ back"');
  }, 30_000);
});

describe("--access-logformat json", () => {
  test("one JSON object a line, keyed by atom; values escaped, numbers as numbers, missing values null", async () => {
    writeFileSync(join(dir, "logapp.py"), LOG_APP_PY);
    const server = await startPy("logapp:app", ["-w", "1", "--access-logfile", "-", "--access-logformat", "json"], { cwd: dir });
    let entries: Record<string, unknown>[] = [];
    try {
      await request(server.port, "/a?x=1", { headers: { "User-Agent": 'q"uote \\ back\ttab é', Authorization: BASIC_BOB } });
      await request(server.port, "/missing");
      const read = () => server.stdout().split("\n").filter((l) => l.startsWith("{"));
      await waitFor(() => read().length >= 2, 5000);
      entries = read().map((l) => JSON.parse(l));
    } finally {
      await stopPy(server, "SIGTERM");
    }
    expect(Object.keys(entries[0])).toEqual(["h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "M", "D", "L", "p"]);
    expect(entries[0]).toMatchObject({ h: "127.0.0.1", l: "-", u: "bob", r: "GET /a?x=1 HTTP/1.1", m: "GET", U: "/a", q: "x=1", H: "HTTP/1.1", s: 200, B: 11, b: 11, f: null, a: 'q"uote \\ back\ttab é' });
    expect(typeof entries[0].L).toBe("number");
    expect(entries[0].p).toMatch(/^<\d+>$/);
    expect(entries[1]).toMatchObject({ u: null, r: "GET /missing HTTP/1.1", s: 404, B: 4, b: 4, a: null });
  }, 30_000);

  test("json:ATOMS picks the keys, brace atoms included ({var}e from the worker)", async () => {
    writeFileSync(join(dir, "logapp.py"), LOG_APP_PY);
    const server = await startPy("logapp:app", ["-w", "1", "--access-logfile", "-", "--access-logformat", "json:s,{x-req}i,{REMOTE_USER}e,{x-out}o,{none}i"], { cwd: dir });
    let line = "";
    try {
      await request(server.port, "/a", { headers: { "X-Req": 'a"b' } });
      await waitFor(() => server.stdout().includes("{"), 5000);
      line = server.stdout().split("\n").find((l) => l.startsWith("{"))!;
    } finally {
      await stopPy(server, "SIGTERM");
    }
    expect(line).toBe('{"s":200,"{x-req}i":"a\\"b","{REMOTE_USER}e":"alice","{x-out}o":"say \\"hi\\"","{none}i":null}');
  }, 30_000);

  test("a format that cannot work exits 2 before serving, naming the flag", async () => {
    const proc = Bun.spawn([process.execPath, join(ROOT, "server.ts"), "logapp:app", "--access-logformat", "%(h)d"], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(2);
    expect(stderr).toContain("--access-logformat: expected %(atom)s or %% at offset 0, got '%(h)d'");
  });
});

describe("worker output, --capture-output and --log-level", () => {
  beforeAll(() => writeFileSync(join(dir, "logapp.py"), LOG_APP_PY));

  test("without --capture-output the app's print() and stderr lines reach the server's stdout and stderr as written (gunicorn's inherited stdio)", async () => {
    const server = await startPy("logapp:app", ["-w", "1"], { cwd: dir });
    try {
      await request(server.port, "/output?plain");
      expect(await server.waitForOutput(/^printed-plain$/m, "stdout", 5000)).toBe(true);
      expect(await server.waitForOutput(/^stderr-plain$/m, "stderr", 5000)).toBe(true);
      expect(server.stderr()).not.toMatch(/\] printed-plain/);
    } finally {
      await stopPy(server, "SIGTERM");
    }
  }, 30_000);

  test("--capture-output: both go to the error log at INFO with the worker's tag, not ERROR", async () => {
    const server = await startPy("logapp:app", ["-w", "1", "--capture-output"], { cwd: dir });
    try {
      await request(server.port, "/output?cap");
      const [pid] = server.workers();
      for (const text of ["printed-cap", "stderr-cap"]) {
        expect(await server.waitForOutput(new RegExp(`\\[INFO\\] \\[worker \\d+ pid ${pid}\\] ${text}$`, "m"), "stderr", 5000)).toBe(true);
      }
      expect(server.stdout()).not.toContain("printed-cap");
      expect(server.stderr()).not.toMatch(/\[ERROR\].*-cap/);
    } finally {
      await stopPy(server, "SIGTERM");
    }
  }, 30_000);

  test("close() raising after the response: the worker's report is ERROR, tagged, line by line", async () => {
    writeFileSync(join(dir, "closeapp.py"), `
class Body:
    def __iter__(self):
        yield b"ok"
    def close(self):
        raise RuntimeError("close-boom")

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body()
`);
    const server = await startPy("closeapp:app", ["-w", "1"], { cwd: dir });
    try {
      await request(server.port, "/");
      expect(await server.waitForOutput(/\[ERROR\] \[worker \d+ pid \d+\] RuntimeError: close-boom$/m, "stderr", 5000)).toBe(true);
      expect(server.stderr()).toMatch(/\[ERROR\] \[worker \d+ pid \d+\] close\(\) of the app's iterable raised:$/m);
      expect(server.stderr()).not.toContain("\x1e");
    } finally {
      await stopPy(server, "SIGTERM");
    }
  }, 30_000);
});

describe("--log-level", () => {
  test("filters the error log as gunicorn's levels do: warning keeps WARNING and up, drops INFO; captured app output is kept", async () => {
    writeFileSync(join(dir, "logapp.py"), LOG_APP_PY);
    const logfile = join(dir, "error-warning.log");
    // Not ready by "Listening at" (an INFO line): wait until it answers.
    const proc = Bun.spawn([process.execPath, join(ROOT, "server.ts"), "logapp:app", "-b", "127.0.0.1:0", "-w", "1", "--python", join(ROOT, ".venv", "bin", "python"),
      "--log-level", "warning", "--error-logfile", logfile, "--capture-output", "-n", "name", "-b", "unix:" + join(dir, "lvl.sock")], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    try {
      const ok = await waitFor(() => { try { return readFileSync(logfile, "utf8").includes("ignored"); } catch { return false; } }, 10_000);
      expect(ok).toBe(true);
      let answered = false;
      for (let i = 0; i < 100 && !answered; i++) {
        const r = Bun.spawnSync(["curl", "-s", "--unix-socket", join(dir, "lvl.sock"), "http://x/output?lvl"]);
        answered = r.stdout.toString() === "hello world";
        if (!answered) await Bun.sleep(100);
      }
      expect(answered).toBe(true);
      await waitFor(() => readFileSync(logfile, "utf8").includes("printed-lvl"), 5000);
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
    }
    const text = readFileSync(logfile, "utf8");
    expect(text).toMatch(/\[WARNING\] -n ignored/);
    expect(text).not.toMatch(/\[INFO\] (Listening at|Booting worker)/);
    expect(text).toMatch(/\[INFO\] \[worker \d+ pid \d+\] printed-lvl$/m);
  }, 30_000);
});

describe("statsd, caught by a UDP listener", () => {
  let received: string[] = [];
  let listener: { port: number; close(): void };
  beforeAll(async () => {
    listener = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data(_s, data) { received.push(...Buffer.from(data).toString("ascii").split("\n")); } } });
  });
  afterAll(() => listener.close());

  test("gunicorn's metric names, the prefix with its dot, the DogStatsD tags", async () => {
    received = [];
    writeFileSync(join(dir, "logapp.py"), LOG_APP_PY);
    const server: PyServer = await startPy("logapp:app", ["-w", "2", "--statsd-host", `127.0.0.1:${listener.port}`, "--statsd-prefix", "app..", "--dogstatsd-tags", "env:test,team:web", "--enable-backlog-metric"], { cwd: dir });
    try {
      await request(server.port, "/a");
      await request(server.port, "/a");
      await request(server.port, "/missing");
      await waitFor(() => received.filter((l) => l.includes("gunicorn.requests:")).length >= 3 && received.some((l) => l.includes("gunicorn.workers:")) && received.some((l) => l.includes("gunicorn.backlog:")), 5000);
    } finally {
      await stopPy(server, "SIGTERM");
    }
    const tags = "|#env:test,team:web";
    const count = (line: string) => received.filter((l) => l === line).length;
    expect(count(`app.gunicorn.requests:1|c|@1.0${tags}`)).toBe(3);
    expect(count(`app.gunicorn.request.status.200:1|c|@1.0${tags}`)).toBe(2);
    expect(count(`app.gunicorn.request.status.404:1|c|@1.0${tags}`)).toBe(1);
    expect(received.filter((l) => /^app\.gunicorn\.request\.duration:\d+\.\d+\|ms\|#env:test,team:web$/.test(l)).length).toBe(3);
    expect(received).toContain(`app.gunicorn.workers:2|g${tags}`);
    expect(received.some((l) => /^app\.gunicorn\.backlog:\d+\|h\|#env:test,team:web$/.test(l))).toBe(true);
  }, 30_000);

  test("gunicorn.log.LEVEL counts warnings and errors; no prefix or tags when unset", async () => {
    received = [];
    // -n is warned: one warning at start-up. A request to a path that raises is an ERROR.
    writeFileSync(join(dir, "raiseapp.py"), `def app(environ, start_response):\n    raise ValueError("boom")\n`);
    const server = await startPy("raiseapp:app", ["-w", "1", "-n", "name", "--statsd-host", `127.0.0.1:${listener.port}`], { cwd: dir });
    try {
      expect((await request(server.port, "/")).status).toBe(500);
      await waitFor(() => received.includes("gunicorn.log.error:1|c|@1.0") && received.includes("gunicorn.log.warning:1|c|@1.0"), 5000);
    } finally {
      await stopPy(server, "SIGTERM");
    }
    expect(received).toContain("gunicorn.log.warning:1|c|@1.0");
    expect(received).toContain("gunicorn.log.error:1|c|@1.0");
    expect(received).toContain("gunicorn.request.status.500:1|c|@1.0");
  }, 30_000);

  test("nobody listening: the server serves on (a lost metric is no error)", async () => {
    const idle = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
    const port = idle.port;
    idle.close();
    writeFileSync(join(dir, "logapp.py"), LOG_APP_PY);
    const server = await startPy("logapp:app", ["-w", "1", "--statsd-host", `127.0.0.1:${port}`], { cwd: dir });
    try {
      for (let i = 0; i < 3; i++) expect((await request(server.port, "/a")).status).toBe(200);
      await Bun.sleep(300);
      expect((await request(server.port, "/a")).status).toBe(200);
      expect(server.stderr()).not.toMatch(/ECONNREFUSED|\[ERROR\]/);
    } finally {
      await stopPy(server, "SIGTERM");
    }
  }, 30_000);
});

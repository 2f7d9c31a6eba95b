// The command line, as a subprocess: usage errors exit 2 with a message on
// stderr, the access log line, graceful shutdown on SIGTERM, quick on SIGINT and SIGQUIT.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../server.ts";
import { RawClient, cleanUp, exchange, header, runCli, spawnServer } from "./helpers.ts";
import { PYTHON } from "./pyhelpers.ts";

afterEach(cleanUp);

let dir = "";
let slowApp = "";
let throwingApp = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "bunicorn-cli-"));
  throwingApp = join(dir, "throwing.ts");
  writeFileSync(throwingApp, `throw new Error("load-time failure");\nexport default () => [];\n`);
  slowApp = join(dir, "slow.ts");
  // Says on the error log when it starts, then takes 800 ms to answer.
  writeFileSync(slowApp, `export default async function app(environ: any, start: any) {
  environ["wsgi.errors"].write("slow request started\\n");
  await Bun.sleep(800);
  start("200 OK", [["Content-Type", "text/plain"]]);
  return ["slow done"];
}
`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("informational flags", () => {
  test("--version prints the version and exits 0", async () => {
    const r = await runCli(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith(`bunicorn ${VERSION}`);
  });

  test("--help prints usage and exits 0", async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await runCli([flag]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("usage: bunicorn");
      expect(r.stdout).toContain("--bind");
    }
  });
});

describe("bad input → a message on stderr and exit code 2", () => {
  const cases: [string, string[], RegExp][] = [
    ["an unknown flag", ["--no-such-flag", "apps/hello.ts"], /no-such-flag/],
    ["--workers x", ["--workers", "x", "apps/hello.ts"], /--workers/],
    ["--limit-request-line -1", ["--limit-request-line", "-1", "apps/hello.ts"], /--limit-request-line/],
    ["--keep-alive abc", ["--keep-alive", "abc", "apps/hello.ts"], /--keep-alive/],
    ["-w above 512", ["-w", "513", "apps/hello.py"], /-w: must be at most 512, got 513/],
    ["--bind nonsense:port", ["--bind", "nonsense:port", "apps/hello.ts"], /nonsense:port/],
    ["a flag without its value", ["apps/hello.ts", "--bind"], /--bind/],
    ["a missing APP", ["-b", "127.0.0.1:0"], /APP/],
    ["an unloadable TS app", ["-b", "127.0.0.1:0", "apps/nope.ts"], /nope\.ts/],
    ["a TS app without the named export", ["-b", "127.0.0.1:0", "apps/hello.ts:nope"], /nope/],
    ["a TS app that throws while loading", ["-b", "127.0.0.1:0", "THROWING_APP"], /load-time failure/],
  ];
  for (const [name, args, message] of cases) {
    test(name, async () => {
      const r = await runCli(args.map((a) => (a === "THROWING_APP" ? throwingApp : a)));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toContain("Listening at");
      expect(r.stdout).toBe("");
    });
  }
});

describe("start-up checks → the thing, the reason and exit code 2, before any worker boots", () => {
  // DIR is a temp directory, FILE a regular file in it: neither is a log file or a --chdir we can use.
  const py = ["apps/hello.py", "-w", "2", "--python", PYTHON, "-b", "127.0.0.1:0"];
  const cases: [string, string[], RegExp][] = [
    ["--chdir a missing directory", [...py, "--chdir", "/nonexistent-dir"], /^bunicorn: error: --chdir \/nonexistent-dir: no such file or directory$/m],
    ["--chdir a file", [...py, "--chdir", "FILE"], /^bunicorn: error: --chdir \S+\/file\.txt: not a directory$/m],
    ["--access-logfile in a missing directory", [...py, "--access-logfile", "/nonexistent-dir/access.log"],
      /^bunicorn: error: --access-logfile \/nonexistent-dir\/access\.log: cannot open for writing: no such file or directory$/m],
    ["--error-logfile in a missing directory", [...py, "--error-logfile", "/nonexistent-dir/error.log"],
      /^bunicorn: error: --error-logfile \/nonexistent-dir\/error\.log: cannot open for writing: no such file or directory$/m],
    ["--access-logfile a directory", ["apps/hello.ts", "-b", "127.0.0.1:0", "--access-logfile", "DIR"], /^bunicorn: error: --access-logfile \S+: cannot open for writing: is a directory$/m],
    ["--log-file a directory", ["apps/hello.ts", "-b", "127.0.0.1:0", "--log-file", "DIR"], /^bunicorn: error: --error-logfile \S+: cannot open for writing: is a directory$/m],
  ];
  for (const [name, args, message] of cases) {
    test(name, async () => {
      writeFileSync(join(dir, "file.txt"), "not a directory\n");
      const r = await runCli(args.map((a) => (a === "DIR" ? dir : a === "FILE" ? join(dir, "file.txt") : a)));
      expect(r.stderr).toMatch(message);
      expect(r.code).toBe(2);
      expect(r.stderr).not.toContain("Booting worker");
      expect(r.stderr).not.toContain("Listening at");
      expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
    });
  }

  /** A port something else holds: listening on port 0 in this process. */
  function holdPort(): { port: number; release(): void } {
    const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    return { port: listener.port, release: () => listener.stop(true) };
  }

  for (const app of ["apps/hello.py", "apps/hello.ts"]) {
    test(`a port in use (${app}): named with the reason, and no worker ever started`, async () => {
      const busy = holdPort();
      try {
        const r = await runCli([app, "-w", "2", "--python", PYTHON, "-b", `127.0.0.1:${busy.port}`]);
        expect(r.stderr).toMatch(new RegExp(`^bunicorn: error: cannot listen on 127\\.0\\.0\\.1:${busy.port}: address already in use$`, "m"));
        expect(r.code).toBe(2);
        expect(r.stderr).not.toContain("Booting worker");
        expect(r.stderr).not.toMatch(/^\s+at /m);
      } finally {
        busy.release();
      }
    });
  }

  test("a port in use as the second --bind: exit 2, no worker started", async () => {
    const busy = holdPort();
    const free = holdPort();
    free.release(); // a port that was free a moment ago: the first bind takes it
    try {
      const r = await runCli(["apps/hello.py", "--python", PYTHON, "-b", `127.0.0.1:${free.port}`, "-b", `127.0.0.1:${busy.port}`]);
      expect(r.stderr).toContain(`bunicorn: error: cannot listen on 127.0.0.1:${busy.port}: address already in use`);
      expect(r.code).toBe(2);
      expect(r.stderr).not.toContain("Booting worker");
    } finally {
      busy.release();
    }
  });

  test("a unix socket in a missing directory", async () => {
    const r = await runCli(["apps/hello.py", "--python", PYTHON, "-b", "unix:/nonexistent-dir/bunicorn.sock"]);
    expect(r.stderr).toMatch(/^bunicorn: error: cannot listen on unix:\/nonexistent-dir\/bunicorn\.sock: no such file or directory$/m);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain("Booting worker");
  });

  test("a unix socket path that is a regular file: refused, and the file is kept", async () => {
    const file = join(dir, "precious.txt");
    writeFileSync(file, "keep me\n");
    const r = await runCli(["apps/hello.ts", "-b", `unix:${file}`]);
    expect(r.stderr).toContain(`bunicorn: error: cannot listen on unix:${file}: the path exists and is not a socket`);
    expect(r.code).toBe(2);
    expect(readFileSync(file, "utf8")).toBe("keep me\n");
  });

  // Root may bind ports below 1024, so the permission case can only run as another user.
  test.skipIf(process.getuid?.() === 0)("a privileged port", async () => {
    const r = await runCli(["apps/hello.py", "--python", PYTHON, "-b", "127.0.0.1:1"]);
    expect(r.stderr).toMatch(/^bunicorn: error: cannot listen on 127\.0\.0\.1:1: permission denied$/m);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain("Booting worker");
  });

  // As root every file is writable, so the permission case can only run as another user.
  test.skipIf(process.getuid?.() === 0)("--access-logfile in a directory we may not write", async () => {
    const locked = join(dir, "locked");
    mkdirSync(locked, { mode: 0o500 });
    const r = await runCli(["apps/hello.ts", "-b", "127.0.0.1:0", "--access-logfile", join(locked, "access.log")]);
    expect(r.stderr).toMatch(/--access-logfile \S+: cannot open for writing: permission denied$/m);
    expect(r.code).toBe(2);
  });
});

test("listens before the workers boot: a request sent while they import the app is answered once they are ready", async () => {
  // The app's import waits for a gate file, so the request is surely sent before any worker is ready.
  const gate = join(dir, "gate");
  const app = join(dir, "gated_app.py");
  writeFileSync(app, `import os, time
while not os.path.exists(${JSON.stringify(gate)}):
    time.sleep(0.01)

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served after boot"]
`);
  const server = await spawnServer([`${app}:app`, "-b", "127.0.0.1:0", "-w", "2", "--python", PYTHON]);
  const client = await RawClient.connect(server.port);
  client.write("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  expect(await server.waitForOutput(/Booting worker[^]*Booting worker/)).toBe(true);
  expect(server.stderr()).not.toContain("Workers ready");
  expect(client.byteCount).toBe(0);
  writeFileSync(gate, "");
  expect(await client.waitForClose(10_000)).toBe(true);
  const responses = client.responses();
  expect(responses.map((r) => r.statusLine)).toEqual(["HTTP/1.1 200 OK"]);
  expect(responses[0].body.toString()).toBe("served after boot");
  expect(await server.waitForOutput(/Workers ready: 2/)).toBe(true);
  server.proc.kill("SIGTERM");
  expect(await server.exited).toBe(0);
}, 20_000);

test("--access-logfile - prints a gunicorn-style combined log line on stdout", async () => {
  const server = await spawnServer(["-b", "127.0.0.1:0", "--access-logfile", "-", "apps/hello.ts"]);
  const r = await exchange(server.port, "GET /?name=Bun HTTP/1.1\r\nHost: t\r\nUser-Agent: test-agent/1.0\r\nReferer: http://ref.example/\r\n\r\n");
  expect(r.responses[0].body.toString()).toBe("Hello, Bun!");
  expect(await server.waitForOutput(/\n/, "stdout", 3000)).toBe(true);
  const line = server.stdout().split("\n")[0];
  expect(line).toMatch(
    /^127\.0\.0\.1 - - \[\d{2}\/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "GET \/\?name=Bun HTTP\/1\.1" 200 11 "http:\/\/ref\.example\/" "test-agent\/1\.0"$/,
  );
});

/** A server with a slow request under way, sent `signal`; returns once the client's connection closed. */
async function signalDuringSlowRequest(signal: NodeJS.Signals) {
  const server = await spawnServer(["-b", "127.0.0.1:0", slowApp]);
  const client = await RawClient.connect(server.port);
  client.write("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
  expect(await server.waitForOutput(/slow request started/)).toBe(true);
  server.proc.kill(signal);
  expect(await client.waitForClose(5000)).toBe(true);
  return { server, client };
}

describe("graceful shutdown", () => {
  for (const signal of ["SIGTERM"] as const) {
    test(`${signal} during a slow request: the request completes, then the process exits 0`, async () => {
      const { server, client } = await signalDuringSlowRequest(signal);
      const responses = client.responses();
      expect(responses.length).toBe(1);
      expect(responses[0].statusLine).toBe("HTTP/1.1 200 OK");
      expect(responses[0].isComplete).toBe(true);
      expect(responses[0].body.toString()).toBe("slow done");
      expect(header(responses[0], "Connection")).toBe("close");
      expect(await server.exited).toBe(0);
    }, 10_000);
  }
});

// gunicorn's INT and QUIT are a quick shutdown (docs.gunicorn.org, "Signal Handling"); before
// issue 12 bunicorn's SIGINT was graceful, like TERM.
describe("quick shutdown", () => {
  for (const signal of ["SIGINT", "SIGQUIT"] as const) {
    test(`${signal} during a slow request: the connection closes unanswered and the process exits 0`, async () => {
      const { server, client } = await signalDuringSlowRequest(signal);
      expect(client.responses().length).toBe(0);
      expect(await server.exited).toBe(0);
      expect(server.stderr()).toContain(`Handling signal: ${signal.slice(3).toLowerCase()}; stopping now`);
    }, 10_000);
  }
});

test("--reload with a TypeScript app: exit 2 (it runs in the server's own process)", async () => {
  const r = await runCli(["--reload", "-b", "127.0.0.1:0", "apps/hello.ts"]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain("--reload: for Python apps only");
});
